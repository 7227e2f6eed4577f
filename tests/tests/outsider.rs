//! A keyless outsider cannot lock a node: while hundreds of silent TCP connections (no Noise
//! handshake) are held open against a running node from one address, and reopened as the node
//! drops them, a member still connects and gets its delivery receipt within 2 s.
//!
//! Real daemons in this process, real sockets on loopback. The outsider holds 200 connections
//! from 127.0.0.2 and another 100 from 127.0.0.3 (to show the bound is per source address); the
//! member dials from 127.0.0.1, as a member on another machine would from its own address. (A
//! member behind the very address the outsider uses, e.g. one NAT, is not protected by a
//! per-address bound; the total bound and the handshake deadline still limit the damage.)

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{ask, fixture, wait_delivered};
use quickfreeze_node::{
    config::{files, NodeConfig},
    control::{ControlRequest, ControlResponse},
    daemon,
};
use quickfreeze_proto::payload::{example_free_text, Payload};
use tokio::{io::AsyncReadExt, net::TcpSocket};

/// Silent connections the outsider keeps open from its main address.
const SILENT_FROM_MAIN: usize = 200;
/// And from a second address.
const SILENT_FROM_SECOND: usize = 100;

/// Counters of the outsider, shared by its connection tasks.
#[derive(Default)]
struct Flood {
    stop: AtomicBool,
    /// Connections the kernel completed (each counts once, reconnections too).
    opened: AtomicUsize,
    /// Connections the node closed (the outsider then reconnects).
    dropped: AtomicUsize,
    /// Connections open right now.
    open: AtomicUsize,
}

/// One silent connection from `source`, reopened whenever the node drops it, until `stop`.
async fn hold_silent_connection(source: Ipv4Addr, target: SocketAddr, flood: Arc<Flood>) {
    while !flood.stop.load(Ordering::Relaxed) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await
        else {
            // The node's accept queue is full: that is pressure too; try again.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        flood.opened.fetch_add(1, Ordering::Relaxed);
        flood.open.fetch_add(1, Ordering::Relaxed);
        // Say nothing; wait until the node closes (EOF or reset) or the test ends.
        let mut byte = [0u8; 1];
        loop {
            tokio::select! {
                read = stream.read(&mut byte) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        flood.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if flood.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        flood.open.fetch_sub(1, Ordering::Relaxed);
        // Reconnect at once, as an attacker would; a millisecond keeps the test's own CPU use
        // sane on a shared machine.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Stops the flood when dropped, also when an assertion fails.
struct StopOnDrop(Arc<Flood>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_silent_connections_do_not_lock_members_out() {
    // The nodes' log, shown if the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("OUTSIDER_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .with_test_writer()
        .try_init();
    let fixture = fixture(&["DE", "FR"], vec![]);
    // FR is the target; DE, the member, dials from 127.0.0.1.
    let fr = fixture.start(1).await;
    let fr_listen: SocketAddr = {
        let text = &fixture.addresses[1];
        let mut parts = text.split('/');
        let ip = parts.nth(2).unwrap();
        let port = parts.nth(1).unwrap();
        format!("{ip}:{port}").parse().unwrap()
    };
    let de_config = NodeConfig::load(&fixture.dirs[0].join(files::CONFIG)).unwrap();

    let flood = Arc::new(Flood::default());
    let _stop = StopOnDrop(flood.clone());
    let mut tasks = Vec::new();
    for (source, count) in [
        (Ipv4Addr::new(127, 0, 0, 2), SILENT_FROM_MAIN),
        (Ipv4Addr::new(127, 0, 0, 3), SILENT_FROM_SECOND),
    ] {
        for _ in 0..count {
            tasks.push(tokio::spawn(hold_silent_connection(
                source,
                fr_listen,
                flood.clone(),
            )));
        }
    }

    // Wait until the outsider holds its connections and the node is already dropping some (so
    // every pending slot the outsider can get is taken and being re-taken).
    let deadline = Instant::now() + Duration::from_secs(30);
    while flood.open.load(Ordering::Relaxed) < SILENT_FROM_MAIN
        || flood.dropped.load(Ordering::Relaxed) < SILENT_FROM_MAIN
    {
        assert!(
            Instant::now() < deadline,
            "the flood did not build up: {} open, {} dropped",
            flood.open.load(Ordering::Relaxed),
            flood.dropped.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The member starts now, with no connection to FR yet, and sends.
    let de = daemon::start(de_config).await.unwrap();
    let dropped_before = flood.dropped.load(Ordering::Relaxed);
    // The most connections the outsider held open at once while the member was delivering.
    let most_open = Arc::new(AtomicUsize::new(0));
    let delivering = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (flood, most_open, delivering) = (flood.clone(), most_open.clone(), delivering.clone());
        async move {
            while delivering.load(Ordering::Relaxed) {
                most_open.fetch_max(flood.open.load(Ordering::Relaxed), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let started = Instant::now();
    let ControlResponse::Submitted { message_id, .. } = ask(
        &fixture.dirs[0],
        ControlRequest::Submit {
            recipient: "FR".into(),
            payload: Box::new(Payload::FreeText(example_free_text())),
        },
    )
    .await
    else {
        panic!("submit refused");
    };
    wait_delivered(&fixture.dirs[0], &message_id).await;
    let elapsed = started.elapsed();
    delivering.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let (open, opened, dropped) = (
        most_open.load(Ordering::Relaxed),
        flood.opened.load(Ordering::Relaxed),
        flood.dropped.load(Ordering::Relaxed),
    );
    eprintln!(
        "delivery receipt after {elapsed:?} with up to {open} silent connections open, \
         {opened} opened and {dropped} dropped by the node so far"
    );
    // The outsider kept up its connections during the delivery (at some instants some are
    // between a drop and their reconnection), and the node was still dropping them.
    assert!(
        open >= SILENT_FROM_MAIN,
        "the flood was not held during the delivery: {open} open"
    );
    assert!(
        dropped > dropped_before,
        "the outsider was not reconnecting during the delivery"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "the member waited {elapsed:?} for its receipt"
    );

    flood.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    de.stop().await.unwrap();
    fr.stop().await.unwrap();
}
