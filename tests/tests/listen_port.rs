//! A listen port that another node already holds stops the node with a clear error, instead of
//! both nodes sharing the port (libp2p listens with `SO_REUSEPORT`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::fixture;
use quickfreeze_keys::Identity;
use quickfreeze_node::{
    config::{files, NodeConfig},
    daemon,
    network::{Network, NetworkConfig, NetworkError, NetworkEvent},
};
use tokio::time::{timeout_at, Instant};

/// Two `Network`s on one port: the second is refused, and the first keeps its port.
#[tokio::test]
async fn a_second_network_on_a_taken_port_is_refused() {
    let config = NetworkConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..NetworkConfig::default()
    };
    let mut first = Network::new(Identity::generate_from_os().to_libp2p_keypair(), config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let address = loop {
        if let NetworkEvent::Listening { address } =
            timeout_at(deadline, first.next_event()).await.unwrap()
        {
            break address;
        }
    };

    let taken = NetworkConfig {
        listen_addresses: vec![address.clone()],
        ..NetworkConfig::default()
    };
    let error = Network::new(Identity::generate_from_os().to_libp2p_keypair(), taken)
        .err()
        .expect("a second network listened on a port the first holds");
    assert!(
        matches!(&error, NetworkError::AddressInUse { address: refused, .. } if *refused == address),
        "{error}"
    );
    assert!(error.to_string().contains("already in use"), "{error}");
    assert_eq!(first.listen_addresses(), vec![address]);
}

/// The real daemon: FR configured with DE's port does not start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_configured_with_a_taken_port_stops_with_a_clear_error() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let de = fixture.start(0).await;
    let mut fr_config = NodeConfig::load(&fixture.dirs[1].join(files::CONFIG)).unwrap();
    fr_config.listen = vec![fixture.addresses[0].clone()];
    let error = daemon::start(fr_config)
        .await
        .err()
        .expect("FR started on DE's port");
    let text = error.to_string();
    assert!(text.contains("already in use"), "{text}");
    assert!(text.contains(&fixture.addresses[0]), "{text}");
    de.stop().await.unwrap();
}
