//! Integration tests of the transport layer: real `Network`s on loopback TCP with port 0.
//!
//! Each test drives its nodes from the test's own task with `tokio::select!` over their
//! `next_event()` futures (no spawned tasks, which also exercises cancel-safety), and waits for
//! events under a bounded deadline instead of sleeping.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use libp2p::{request_response::OutboundRequestId, Multiaddr, PeerId};
use quickfreeze_keys::{Identity, NodeId};
use quickfreeze_node::network::{
    Network, NetworkConfig, NetworkError, NetworkEvent, DEFAULT_MAX_FRAME_BYTES,
};
use tokio::time::{timeout_at, Instant};

/// Upper bound for one phase of a test; on loopback each phase takes milliseconds.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

fn loopback_config() -> NetworkConfig {
    NetworkConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..NetworkConfig::default()
    }
}

fn phase_deadline() -> Instant {
    Instant::now() + PHASE_TIMEOUT
}

/// Starts a node with a fresh quickfreeze identity and waits until it knows its bound address.
async fn start(config: NetworkConfig) -> Network {
    let identity = Identity::generate_from_os();
    let mut network = Network::new(identity.to_libp2p_keypair(), config).unwrap();
    // The libp2p identity is the roster's node id.
    assert_eq!(
        NodeId::from_peer_id(&network.local_peer_id()),
        Some(identity.node_id())
    );
    let deadline = phase_deadline();
    loop {
        let event = timeout_at(deadline, network.next_event())
            .await
            .expect("timed out waiting for a listen address");
        if let NetworkEvent::Listening { address } = event {
            assert!(address.to_string().starts_with("/ip4/127.0.0.1/tcp/"));
            assert!(!address.to_string().ends_with("/tcp/0"));
            break;
        }
    }
    assert!(!network.listen_addresses().is_empty());
    network
}

/// A node as a roster entry: its peer id and where it listens.
fn member(network: &Network) -> (PeerId, Vec<Multiaddr>) {
    (network.local_peer_id(), network.listen_addresses())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    A,
    B,
}

/// The next event of either node. Dropping the losing `next_event()` future is safe.
async fn next_of_two(a: &mut Network, b: &mut Network, deadline: Instant) -> (Node, NetworkEvent) {
    let next = async {
        tokio::select! {
            event = a.next_event() => (Node::A, event),
            event = b.next_event() => (Node::B, event),
        }
    };
    timeout_at(deadline, next)
        .await
        .expect("timed out waiting for network events")
}

/// Two started nodes that allow each other.
async fn connected_pair(config_a: NetworkConfig, config_b: NetworkConfig) -> (Network, Network) {
    let mut a = start(config_a).await;
    let mut b = start(config_b).await;
    a.set_allowed_peers([member(&b)]);
    b.set_allowed_peers([member(&a)]);
    (a, b)
}

/// Sends one request from A to B, has B echo it back reversed, and returns A's response.
async fn round_trip(a: &mut Network, b: &mut Network, request: Vec<u8>) -> Vec<u8> {
    let (a_id, b_id) = (a.local_peer_id(), b.local_peer_id());
    let sent_id = a.send_request(b_id, request.clone()).unwrap();
    let deadline = phase_deadline();
    loop {
        match next_of_two(a, b, deadline).await {
            (
                Node::B,
                NetworkEvent::InboundRequest {
                    peer,
                    frame,
                    channel,
                },
            ) => {
                assert_eq!(peer, a_id);
                assert_eq!(frame, request);
                b.send_response(channel, frame.into_iter().rev().collect())
                    .unwrap();
            }
            (
                Node::A,
                NetworkEvent::Response {
                    peer,
                    request_id,
                    frame,
                },
            ) => {
                assert_eq!((peer, request_id), (b_id, sent_id));
                return frame;
            }
            (
                node,
                event @ (NetworkEvent::OutboundFailure { .. } | NetworkEvent::RejectedPeer { .. }),
            ) => {
                panic!("unexpected event at {node:?}: {event:?}")
            }
            _ => {}
        }
    }
}

/// 1. Two members exchange a 1 KiB request and its response, byte for byte.
#[tokio::test]
async fn request_and_response_arrive_intact() {
    let (mut a, mut b) = connected_pair(loopback_config(), loopback_config()).await;
    let request: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();

    let response = round_trip(&mut a, &mut b, request.clone()).await;

    assert_eq!(response, request.iter().rev().copied().collect::<Vec<u8>>());
    assert_eq!(a.connected_peers(), vec![b.local_peer_id()]);
}

/// 2. A non-member's connection is cut by the gate and its request never reaches the
///    application; once admitted it gets through, and removing it again cuts the link.
#[tokio::test]
async fn non_member_is_rejected_until_admitted() {
    let mut b = start(loopback_config()).await;
    let mut c = start(loopback_config()).await;
    let (b_id, c_id) = (b.local_peer_id(), c.local_peer_id());
    // B's roster holds some other member, not C; C believes B is reachable.
    let other_member = Identity::generate_from_os().node_id().to_peer_id().unwrap();
    b.set_allowed_peers([(other_member, Vec::new())]);
    c.set_allowed_peers([member(&b)]);

    // Locally, sending to a non-member is refused outright.
    assert!(matches!(
        b.send_request(c_id, b"x".to_vec()),
        Err(NetworkError::PeerNotAllowed { peer }) if peer == c_id
    ));
    assert!(matches!(
        b.dial(c_id),
        Err(NetworkError::PeerNotAllowed { .. })
    ));

    let rejected_request = c.send_request(b_id, b"let me in".to_vec()).unwrap();
    let (mut b_rejected, mut c_failed) = (false, false);
    let deadline = phase_deadline();
    while !(b_rejected && c_failed) {
        // Node::A is B here, Node::B is C.
        match next_of_two(&mut b, &mut c, deadline).await {
            (Node::A, NetworkEvent::RejectedPeer { peer, .. }) => {
                assert_eq!(peer, c_id);
                b_rejected = true;
            }
            (
                Node::A,
                event @ (NetworkEvent::InboundRequest { .. } | NetworkEvent::Connected { .. }),
            ) => {
                panic!("B let the non-member in: {event:?}")
            }
            (
                Node::B,
                NetworkEvent::OutboundFailure {
                    peer, request_id, ..
                },
            ) => {
                assert_eq!((peer, request_id), (b_id, rejected_request));
                c_failed = true;
            }
            (Node::B, event @ NetworkEvent::Response { .. }) => {
                panic!("C got an answer from B: {event:?}")
            }
            _ => {}
        }
    }
    assert!(!b.connected_peers().contains(&c_id));

    // B admits C: the same request now gets through.
    b.set_allowed_peers([(other_member, Vec::new()), member(&c)]);
    let response = round_trip(&mut c, &mut b, b"let me in".to_vec()).await;
    assert_eq!(response, b"ni em tel");

    // B drops C from its roster: the live connection is closed on both sides.
    b.set_allowed_peers([(other_member, Vec::new())]);
    let (mut b_saw_close, mut c_saw_close) = (false, false);
    let deadline = phase_deadline();
    while !(b_saw_close && c_saw_close) {
        match next_of_two(&mut b, &mut c, deadline).await {
            (Node::A, NetworkEvent::Disconnected { peer }) if peer == c_id => b_saw_close = true,
            (Node::B, NetworkEvent::Disconnected { peer }) if peer == b_id => c_saw_close = true,
            (_, event @ NetworkEvent::InboundRequest { .. }) => panic!("unexpected {event:?}"),
            _ => {}
        }
    }
    assert!(b.connected_peers().is_empty());
}

/// 3. Frame size limits, enforced by the receiving codec on the length prefix: a request one byte
///    over the receiver's limit and a response one byte over the requester's limit both fail at
///    the requester and never reach the other application; frames at the limits are delivered.
///    A sender also refuses locally to send beyond its own limit.
#[tokio::test]
async fn frames_over_the_limit_are_refused_and_at_the_limit_delivered() {
    const B_MAX_REQUEST_BYTES: usize = 64 * 1024;
    const A_MAX_RESPONSE_BYTES: usize = 1024;
    let a_config = NetworkConfig {
        max_response_bytes: A_MAX_RESPONSE_BYTES,
        ..loopback_config()
    };
    let b_config = NetworkConfig {
        max_request_bytes: B_MAX_REQUEST_BYTES,
        ..loopback_config()
    };
    let (mut a, mut b) = connected_pair(a_config, b_config).await;
    let b_id = b.local_peer_id();

    // Over A's own request limit: refused before anything is sent.
    assert!(matches!(
        a.send_request(b_id, vec![0; DEFAULT_MAX_FRAME_BYTES + 1]),
        Err(NetworkError::FrameTooLarge { size_bytes, max_bytes })
            if size_bytes == DEFAULT_MAX_FRAME_BYTES + 1 && max_bytes == DEFAULT_MAX_FRAME_BYTES
    ));

    // Within A's limit but one byte over B's, and exactly at B's limit.
    let request_over = a
        .send_request(b_id, vec![1; B_MAX_REQUEST_BYTES + 1])
        .unwrap();
    let request_at = a.send_request(b_id, vec![2; B_MAX_REQUEST_BYTES]).unwrap();
    // Small requests whose answers are exactly at, and one byte over, A's response limit.
    let response_at = a.send_request(b_id, b"answer at".to_vec()).unwrap();
    let response_over = a.send_request(b_id, b"answer over".to_vec()).unwrap();

    let mut outcomes: HashMap<OutboundRequestId, &str> = HashMap::new();
    let deadline = phase_deadline();
    while outcomes.len() < 4 {
        match next_of_two(&mut a, &mut b, deadline).await {
            (Node::B, NetworkEvent::InboundRequest { frame, channel, .. }) => {
                let answer_bytes = match frame.as_slice() {
                    b"answer at" => A_MAX_RESPONSE_BYTES,
                    b"answer over" => A_MAX_RESPONSE_BYTES + 1,
                    _ => {
                        assert_eq!(
                            frame,
                            vec![2; B_MAX_REQUEST_BYTES],
                            "an oversized request got through"
                        );
                        8
                    }
                };
                b.send_response(channel, vec![3; answer_bytes]).unwrap();
            }
            (
                Node::A,
                NetworkEvent::Response {
                    request_id, frame, ..
                },
            ) => {
                assert!(frame.len() <= A_MAX_RESPONSE_BYTES);
                assert!(outcomes.insert(request_id, "response").is_none());
            }
            (Node::A, NetworkEvent::OutboundFailure { request_id, .. }) => {
                assert!(outcomes.insert(request_id, "failure").is_none());
            }
            (node, event @ NetworkEvent::RejectedPeer { .. }) => {
                panic!("unexpected event at {node:?}: {event:?}")
            }
            _ => {}
        }
    }
    assert_eq!(outcomes[&request_over], "failure");
    assert_eq!(outcomes[&request_at], "response");
    assert_eq!(outcomes[&response_at], "response");
    assert_eq!(outcomes[&response_over], "failure");
}

/// 4. 200 requests in flight at once (sent before any connection exists) each arrive exactly once
///    and each gets its own response back.
#[tokio::test]
async fn two_hundred_requests_in_flight_arrive_exactly_once() {
    const REQUESTS: u32 = 200;
    let (mut a, mut b) = connected_pair(loopback_config(), loopback_config()).await;
    let b_id = b.local_peer_id();

    let mut outstanding: HashMap<OutboundRequestId, u32> = HashMap::new();
    for index in 0..REQUESTS {
        let mut frame = index.to_be_bytes().to_vec();
        frame.resize(512, 0xab);
        let request_id = a.send_request(b_id, frame).unwrap();
        outstanding.insert(request_id, index);
    }

    let mut received: HashSet<u32> = HashSet::new();
    let deadline = phase_deadline();
    while !outstanding.is_empty() {
        match next_of_two(&mut a, &mut b, deadline).await {
            (Node::B, NetworkEvent::InboundRequest { frame, channel, .. }) => {
                let index = u32::from_be_bytes(frame[..4].try_into().unwrap());
                assert!(received.insert(index), "request {index} delivered twice");
                b.send_response(channel, index.to_be_bytes().to_vec())
                    .unwrap();
            }
            (
                Node::A,
                NetworkEvent::Response {
                    request_id, frame, ..
                },
            ) => {
                let index = outstanding
                    .remove(&request_id)
                    .expect("a response for an unknown or already answered request");
                assert_eq!(frame, index.to_be_bytes());
            }
            (
                node,
                event @ (NetworkEvent::OutboundFailure { .. } | NetworkEvent::RejectedPeer { .. }),
            ) => {
                panic!("unexpected event at {node:?}: {event:?}")
            }
            _ => {}
        }
    }
    assert_eq!(received.len(), REQUESTS as usize);
}

/// 5. After `disconnect` cuts the link, the next request dials again and succeeds.
#[tokio::test]
async fn request_after_disconnect_redials() {
    let (mut a, mut b) = connected_pair(loopback_config(), loopback_config()).await;
    let (a_id, b_id) = (a.local_peer_id(), b.local_peer_id());
    round_trip(&mut a, &mut b, b"first".to_vec()).await;

    a.disconnect(b_id);
    let (mut a_saw_close, mut b_saw_close) = (false, false);
    let deadline = phase_deadline();
    while !(a_saw_close && b_saw_close) {
        match next_of_two(&mut a, &mut b, deadline).await {
            (Node::A, NetworkEvent::Disconnected { peer }) if peer == b_id => a_saw_close = true,
            (Node::B, NetworkEvent::Disconnected { peer }) if peer == a_id => b_saw_close = true,
            _ => {}
        }
    }
    assert!(a.connected_peers().is_empty());
    assert!(b.connected_peers().is_empty());

    let response = round_trip(&mut a, &mut b, b"second".to_vec()).await;
    assert_eq!(response, b"dnoces");
    assert_eq!(a.connected_peers(), vec![b_id]);
}
