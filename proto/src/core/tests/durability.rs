//! Durable before acknowledged: a crash loses only what was never flushed, and a message stored
//! but never shown is announced again after a restart.

use super::*;

#[test]
fn crash_before_flush_loses_only_unacknowledged_work() {
    let mut net = net(2);
    let now = net.now;
    let to = net.nodes[2].id;
    // Submitted but not flushed: the officer never heard "accepted", so losing it is allowed.
    let lost = net
        .core(1)
        .submit(now, to, Payload::FreeText(example_free_text()))
        .expect("accepted");
    net.crash(1);
    net.restart(1);
    assert!(net
        .core(1)
        .store()
        .get_outbox(&lost)
        .expect("store")
        .is_none());
    // Flushed: must survive and be delivered after the restart.
    let kept = net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.crash(1);
    net.restart(1);
    net.run_for(5_000);
    assert!(matches!(
        net.outbox_state(1, kept),
        OutboxState::Delivered { .. }
    ));
}
#[test]
fn a_message_stored_but_never_shown_before_a_crash_is_announced_after_restart() {
    let mut net = net(3);
    let shown = net.submit(3, 2, Payload::Preservation(example_preservation()));
    net.run_for(1000);
    let (now, sender) = (net.now, net.nodes[3].id);
    net.core(2)
        .acknowledge(now, sender, shown, "duty officer")
        .expect("ack");
    net.core(2).store_mut().flush().expect("flush");
    net.events.clear();
    // Node 1 sends; node 2 stores and flushes, then dies before its events are shown.
    let id = net.submit(1, 2, Payload::Emergency(example_emergency()));
    net.core(1).handle_timeout(now);
    let transmit = net.core(1).poll_transmit().expect("a transmit");
    let from = net.nodes[1].id;
    let _receipt_never_sent = net.core(2).handle_request(now, from, &transmit.bytes);
    net.core(2).store_mut().flush().expect("flush");
    net.crash(2);
    assert_eq!(net.inbox_count_down(2), 2, "both messages are durable");
    net.restart(2);
    let announced = net
        .core(2)
        .announce_unacknowledged_summary(now)
        .expect("store");
    assert_eq!(announced.count, 1, "only the unacknowledged message");
    assert_eq!(
        announced.oldest.map(|(_, oldest)| oldest),
        Some(id),
        "the summary names the oldest unacknowledged message"
    );
    let events: Vec<Event> = std::iter::from_fn(|| net.core(2).poll_event()).collect();
    assert!(
        events.iter().any(|event| matches!(event,
            Event::Received { message_id, reannounced: true, .. } if *message_id == id)),
        "{events:?}"
    );
    // Outside the window nothing is announced again.
    let later = now.plus_ms(net.config.reannounce_window_ms + 1);
    assert_eq!(
        net.core(2).announce_unacknowledged(later).expect("store"),
        0
    );
}
