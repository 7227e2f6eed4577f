//! Scheduling: priority order within a batch, and per-peer backoff capped and reset when the peer
//! returns.

use super::*;

#[test]
fn emergency_goes_before_routine_in_one_batch() {
    let mut net = net(2);
    let routine = net.submit(1, 2, Payload::FreeText(example_free_text()));
    let emergency = net.submit(1, 2, Payload::Emergency(example_emergency()));
    let now = net.now;
    net.core(1).handle_timeout(now);
    let transmit = net.core(1).poll_transmit().expect("one batch");
    let batch = Batch::from_bytes(&transmit.bytes).expect("batch");
    let ids: Vec<MessageId> = batch
        .frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Deliver(envelope) => Some(envelope.header.message_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![emergency, routine]);
}
#[test]
fn backoff_is_capped_and_reset_when_the_peer_returns() {
    let config = CoreConfig {
        retry_cap_ms: 8_000,
        ..CoreConfig::default()
    };
    let mut net = net_with(2, config);
    net.crash(0);
    net.crash(2);
    net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(120_000);
    let recipient = net.nodes[2].id;
    let now = net.now;
    let (_, failures, retry_at) = net
        .core(1)
        .peer_backoff()
        .into_iter()
        .find(|(peer, _, _)| *peer == recipient)
        .expect("peer state");
    assert!(failures >= 4);
    assert!(
        retry_at.millis_since(now) <= 8_000,
        "backoff exceeded its cap"
    );
    net.core(1).handle_peer_seen(now, recipient);
    let (_, failures, retry_at) = net
        .core(1)
        .peer_backoff()
        .into_iter()
        .find(|(peer, _, _)| *peer == recipient)
        .expect("peer state");
    assert_eq!(failures, 0);
    assert!(retry_at <= now);
}
