//! Bounded, visible logs: what members and strangers do wrong is counted per peer (per address
//! for strangers) and written as at most one summary line per interval, whatever its volume.
//!
//! Real `Network`s on loopback TCP, driven from the test's own (current-thread) task, with the
//! log output captured by a subscriber installed for this thread only.

#![allow(clippy::unwrap_used)]

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId};
use quickfreeze_keys::Identity;
use quickfreeze_node::network::{
    guard::Source, ledger::Offense, Network, NetworkConfig, NetworkEvent,
};
use tokio::time::{timeout_at, Instant};

/// The summary interval in these tests (the default is 60 s).
const INTERVAL: Duration = Duration::from_secs(2);
const JUNK_FRAMES: u64 = 10_000;
const OVERSIZED_FRAMES: u64 = 50;
const B_MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Requests A keeps in flight at once.
const WINDOW: u64 = 64;

/// Captured log output, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Logs at the node's default level (INFO) into `captured`, for this thread only.
fn capture_logs(captured: &Captured) -> tracing::subscriber::DefaultGuard {
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

async fn start(config: NetworkConfig) -> Network {
    let identity = Identity::generate_from_os();
    let mut network = Network::new(identity.to_libp2p_keypair(), config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event = timeout_at(deadline, network.next_event()).await.unwrap();
        if matches!(event, NetworkEvent::Listening { .. }) {
            return network;
        }
    }
}

fn config(max_request_bytes: usize) -> NetworkConfig {
    NetworkConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        max_request_bytes,
        summary_interval: INTERVAL,
        ..NetworkConfig::default()
    }
}

fn member(network: &Network) -> (PeerId, Vec<Multiaddr>) {
    (network.local_peer_id(), network.listen_addresses())
}

/// The counts "N <words> from <who>" in the summary lines, summed over lines.
fn summed(lines: &[String], words: &str, who: &str) -> u64 {
    lines
        .iter()
        .flat_map(|line| line.split([':', ';', ',']))
        .filter(|part| part.contains(words) && part.contains(who))
        .filter_map(|part| part.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A member sends 10,000 frames the application refuses and 50 over the size limit: the node
/// writes a bounded number of lines, and the summary lines carry the exact counts.
#[tokio::test]
async fn ten_thousand_junk_frames_cost_a_few_summary_lines() {
    let captured = Captured::default();
    let _logs = capture_logs(&captured);
    // A may send up to 1 MiB; B accepts 16 KiB.
    let mut a = start(config(1024 * 1024)).await;
    let mut b = start(config(B_MAX_REQUEST_BYTES)).await;
    a.set_allowed_peers([member(&b)]);
    b.set_allowed_peers([member(&a)]);
    b.set_peer_labels([(a.local_peer_id(), "DE".to_owned())]);
    let (a_id, b_id) = (a.local_peer_id(), b.local_peer_id());
    let started = Instant::now();

    let (mut sent, mut answered, mut failed) = (0u64, 0u64, 0u64);
    let total = JUNK_FRAMES + OVERSIZED_FRAMES;
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered + failed < total {
        while sent < total && sent - answered - failed < WINDOW {
            // Every 201st request is oversized, the rest are junk.
            let frame = if sent % 201 == 200 && sent / 201 < OVERSIZED_FRAMES {
                vec![0xee; B_MAX_REQUEST_BYTES + 1]
            } else {
                b"not a quickfreeze message".to_vec()
            };
            a.send_request(b_id, frame).unwrap();
            sent += 1;
        }
        let next = async {
            tokio::select! {
                event = a.next_event() => (true, event),
                event = b.next_event() => (false, event),
            }
        };
        match timeout_at(deadline, next)
            .await
            .expect("the exchange stalled")
        {
            (false, NetworkEvent::InboundRequest { peer, channel, .. }) => {
                // What the daemon does with a frame its core refuses: count it, answer it.
                assert_eq!(peer, a_id);
                b.note_misbehaviour(peer, Offense::JunkFrame);
                b.send_response(channel, b"refused".to_vec()).unwrap();
            }
            (true, NetworkEvent::Response { .. }) => answered += 1,
            (true, NetworkEvent::OutboundFailure { .. }) => failed += 1,
            (_, event @ NetworkEvent::RejectedPeer { .. }) => panic!("{event:?}"),
            _ => {}
        }
    }
    assert_eq!(answered, JUNK_FRAMES);
    assert_eq!(failed, OVERSIZED_FRAMES);

    // The counts are there at once, for `peers` and metrics.
    let counts = b.misbehaviour_of(&a_id);
    assert_eq!(counts.get(&Offense::JunkFrame), Some(&JUNK_FRAMES));
    let report = b.report();
    assert_eq!(report.total(Offense::JunkFrame), JUNK_FRAMES);

    // Oversized frames are counted as their streams fail; the summary lines follow within an
    // interval. Drive B until the lines account for everything (or the deadline passes).
    let deadline = Instant::now() + 4 * INTERVAL + Duration::from_secs(10);
    loop {
        let lines = captured.lines();
        let junk = summed(&lines, "junk frames", "member DE");
        let oversized = summed(&lines, "oversized frames", "member DE");
        if junk == JUNK_FRAMES && oversized == OVERSIZED_FRAMES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "summaries incomplete: {junk} junk, {oversized} oversized; counts {:?}; log:\n{}",
            b.report(),
            lines.join("\n")
        );
        let _ = timeout_at(Instant::now() + Duration::from_millis(200), async {
            tokio::select! {
                _ = a.next_event() => {},
                _ = b.next_event() => {},
            }
        })
        .await;
    }
    assert_eq!(
        b.misbehaviour_of(&a_id).get(&Offense::OversizedFrame),
        Some(&OVERSIZED_FRAMES)
    );

    let elapsed = started.elapsed();
    let lines = captured.lines();
    let summaries = lines
        .iter()
        .filter(|line| line.contains("WARN") && line.contains("in the last"))
        .count();
    // One at the first event, then at most one per interval.
    let bound = usize::try_from(elapsed.as_secs() / INTERVAL.as_secs()).unwrap() + 2;
    eprintln!(
        "{} log lines ({summaries} summaries) for {} refused frames in {elapsed:?}:\n{}",
        lines.len(),
        JUNK_FRAMES + OVERSIZED_FRAMES,
        lines.join("\n")
    );
    assert!(summaries <= bound, "{summaries} summaries > {bound}");
    assert!(
        lines.len() <= bound + 5,
        "{} log lines for {} refused frames",
        lines.len(),
        JUNK_FRAMES + OVERSIZED_FRAMES
    );
}

/// Strangers (valid libp2p peers, not in the roster) dialling repeatedly: each refusal is
/// counted per source address, and only a few reach the owner as events to log.
#[tokio::test]
async fn refused_dials_are_counted_per_address_and_sampled() {
    const STRANGERS: usize = 12;
    let captured = Captured::default();
    let _logs = capture_logs(&captured);
    let mut b = start(config(B_MAX_REQUEST_BYTES)).await;
    let started = Instant::now();
    let nobody = Identity::generate_from_os().node_id().to_peer_id().unwrap();
    b.set_allowed_peers([(nobody, Vec::new())]);
    // One after the other, as one stranger redialling would (simultaneous handshakes from one
    // address beyond the pending limit are refused earlier and counted as such).
    let mut rejected_events = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let loopback = Source::V4(std::net::Ipv4Addr::LOCALHOST);
    let mut strangers = Vec::new();
    for index in 0..STRANGERS {
        let mut stranger = start(config(B_MAX_REQUEST_BYTES)).await;
        stranger.set_allowed_peers([member(&b)]);
        stranger.dial(b.local_peer_id()).unwrap();
        loop {
            let refused = b
                .report()
                .by_address
                .get(&loopback)
                .and_then(|counts| counts.get(&Offense::RefusedDial).copied())
                .unwrap_or(0);
            if refused > index as u64 {
                assert_eq!(refused, index as u64 + 1);
                break;
            }
            let next = async {
                tokio::select! {
                    event = b.next_event() => Some(event),
                    _ = stranger.next_event() => None,
                }
            };
            let Ok(event) = timeout_at(deadline, next).await else {
                panic!(
                    "refusal {index} not counted: {:?}; log:\n{}",
                    b.report(),
                    captured.lines().join("\n")
                );
            };
            match event {
                Some(NetworkEvent::RejectedPeer { .. }) => rejected_events += 1,
                Some(
                    event @ (NetworkEvent::InboundRequest { .. } | NetworkEvent::Connected { .. }),
                ) => panic!("a stranger got in: {event:?}"),
                _ => {}
            }
        }
        // Kept until the end, so that no stranger's port is reused by the next.
        strangers.push(stranger);
    }
    // At most 3 per interval reach the owner (who logs each); the rest are only counted.
    let intervals = started.elapsed().as_secs() / INTERVAL.as_secs() + 1;
    assert!(
        rejected_events >= 1 && rejected_events <= 3 * intervals,
        "{rejected_events} RejectedPeer events for {STRANGERS} refusals in {intervals} intervals"
    );
    // Nobody was charged as a member.
    assert!(b.report().by_member.is_empty());
}
