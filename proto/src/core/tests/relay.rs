//! Relays: mail for an unreachable recipient goes through its relay, and a peer seen again
//! (recipient or relay) takes the work that waited for it at once.

use super::*;

#[test]
fn unreachable_recipient_gets_mail_through_the_relay() {
    let mut net = net(2);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Emergency(example_emergency()));
    net.run_for(20_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Custody { .. }
    ));
    // The sender goes away too; the relay must deliver and carry the receipt back later.
    net.crash(1);
    net.restart(2);
    net.run_for(5_000);
    assert_eq!(net.inbox_count(2, 1, id), 1);
    net.restart(1);
    net.run_for(120_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Delivered { .. }
    ));
    assert_eq!(net.inbox_count(2, 1, id), 1);
    // The relay kept ciphertext only: the case reference appears nowhere in its store.
    let relay_entries = net.core(0).store().relay_entries().expect("store");
    assert_eq!(relay_entries.len(), 1);
    let marker = example_emergency().header.case_reference;
    for entry in relay_entries {
        let text = format!("{entry:?}");
        assert!(!text.contains(&marker));
    }
}
/// Runs until node 1's message `id` waits for the relay's turn (the alternation points at the
/// relay and the relay is backing off), in steps of one second at most.
fn run_until_relay_turn_is_waiting(net: &mut Net, id: MessageId) {
    let relay = net.nodes[0].id;
    for _ in 0..600 {
        net.run_for(1_000);
        let entry = net
            .core(1)
            .store()
            .get_outbox(&id)
            .expect("store")
            .expect("entry");
        let relay_turn = entry.direct_failures >= net.config.relay_after_failures
            && entry.relay_attempts <= entry.direct_failures - net.config.relay_after_failures;
        let now = net.now;
        let relay_backing_off = net
            .core(1)
            .peer_backoff()
            .iter()
            .any(|(peer, _, retry_at)| *peer == relay && *retry_at > now);
        if relay_turn && relay_backing_off && entry.direct_failures >= 3 {
            return;
        }
    }
    panic!("the relay's turn never came");
}

#[test]
fn peers_awaiting_reconnect_lists_backed_off_peers_that_work_waits_on() {
    let mut net = net(3);
    let now = net.now;
    assert!(net.core(1).peers_awaiting_reconnect(now).is_empty());
    net.crash(0);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Emergency(example_emergency()));
    run_until_relay_turn_is_waiting(&mut net, id);
    let now = net.now;
    let (relay, recipient, bystander) = (net.nodes[0].id, net.nodes[2].id, net.nodes[3].id);
    let waiting = net.core(1).peers_awaiting_reconnect(now);
    assert!(
        waiting.contains(&(relay, Priority::Emergency))
            && waiting.contains(&(recipient, Priority::Emergency)),
        "{waiting:?}"
    );
    assert!(waiting.iter().all(|(peer, _)| *peer != bystander));
    // Nobody else has work: their lists stay empty.
    assert!(net.core(3).peers_awaiting_reconnect(now).is_empty());
    // Once the message is delivered nothing waits any more, backoff or not.
    net.restart(2);
    net.core(1).handle_peer_seen(now, recipient);
    net.round();
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Delivered { .. }
    ));
    assert!(net.core(1).peers_awaiting_reconnect(now).is_empty());
}

#[test]
fn a_recipient_seen_again_is_tried_at_once_even_on_the_relays_turn() {
    // Long backoff: without the reset nothing would move for up to a minute.
    let mut net = net(2);
    net.crash(0);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    run_until_relay_turn_is_waiting(&mut net, id);
    // The recipient comes back (the relay stays down) and the sender sees it connect: the
    // message goes direct at once, not after the relay's backoff.
    net.restart(2);
    let (now, recipient) = (net.now, net.nodes[2].id);
    net.core(1).handle_peer_seen(now, recipient);
    net.round();
    assert_eq!(net.now, now, "no time passed");
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Delivered { .. }
    ));
    assert_eq!(net.inbox_count(2, 1, id), 1);
}

#[test]
fn a_relay_seen_again_takes_the_work_that_waited_for_it() {
    let mut net = net(2);
    net.crash(0);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    run_until_relay_turn_is_waiting(&mut net, id);
    // The relay comes back (the recipient stays down) and the sender sees it connect: the
    // hand-off waiting for the relay's backoff goes now.
    net.restart(0);
    let (now, relay) = (net.now, net.nodes[0].id);
    net.core(1).handle_peer_seen(now, relay);
    net.round();
    assert_eq!(net.now, now, "no time passed");
    assert!(
        matches!(net.outbox_state(1, id), OutboxState::Custody { relay: by, .. } if by == relay)
    );
}
