//! Delivery and the receive path: receipts, retries answered from the inbox, refusals of
//! tampered, garbage, invalid or expired messages, status updates and de-duplication.

use super::*;

#[test]
fn direct_delivery_yields_a_verified_receipt() {
    let mut net = net(2);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(1000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Delivered { .. }
    ));
    assert_eq!(net.inbox_count(2, 1, id), 1);
    assert!(net.has_event(
        1,
        |event| matches!(event, Event::Delivered { message_id, .. } if *message_id == id)
    ));
    assert!(net.has_event(
        2,
        |event| matches!(event, Event::Received { message_id, .. } if *message_id == id)
    ));
    let entry = net
        .core(1)
        .store()
        .get_outbox(&id)
        .expect("store")
        .expect("entry");
    let receipt = entry.delivery_receipt.expect("receipt kept");
    assert_eq!(receipt.body.envelope_digest, entry.digest);
}
#[test]
fn lost_responses_cause_retries_but_one_inbox_entry() {
    let mut net = net(2);
    // Requests reach node 2, but its answers are lost: the sender must retry with the same id.
    net.cut.insert((2, 1));
    // No relay path either, so only direct retries happen.
    net.cut.insert((1, 0));
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(30_000);
    assert!(!matches!(
        net.outbox_state(1, id),
        OutboxState::Delivered { .. }
    ));
    let attempts = net
        .core(1)
        .store()
        .get_outbox(&id)
        .expect("store")
        .expect("entry")
        .attempts;
    assert!(attempts >= 2, "expected retries, saw {attempts}");
    assert_eq!(net.inbox_count(2, 1, id), 1);
    net.cut.clear();
    net.run_for(120_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Delivered { .. }
    ));
    assert_eq!(net.inbox_count(2, 1, id), 1);
}
#[test]
fn expiry_is_reported_never_silent() {
    let config = CoreConfig {
        lifetime_urgent_ms: 10_000,
        ..CoreConfig::default()
    };
    let mut net = net_with(2, config);
    net.crash(2);
    net.crash(0);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(20_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Expired { .. }
    ));
    assert!(net.has_event(
        1,
        |event| matches!(event, Event::Expired { message_id, .. } if *message_id == id)
    ));
}
#[test]
fn tampered_envelope_is_refused_and_not_stored() {
    let mut net = net(2);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    let entry = net
        .core(1)
        .store()
        .get_outbox(&id)
        .expect("store")
        .expect("entry");
    let mut envelope = Envelope::from_bytes(&entry.envelope).expect("decode");
    let last = envelope.ciphertext.len() - 1;
    envelope.ciphertext[last] ^= 1;
    let batch = Batch::new(1, vec![Frame::Deliver(envelope)])
        .to_bytes()
        .expect("encode");
    let from = net.nodes[1].id;
    let now = net.now;
    let response = net.core(2).handle_request(now, from, &batch);
    let answer = Batch::from_bytes(&response).expect("response");
    assert!(matches!(
        answer.frames.as_slice(),
        [Frame::Refused {
            permanent: true,
            ..
        }]
    ));
    assert!(net
        .core(2)
        .store()
        .inbox_entries()
        .expect("store")
        .is_empty());
    let rejected = std::iter::from_fn(|| net.core(2).poll_event())
        .any(|event| matches!(event, Event::InboundRejected { .. }));
    assert!(rejected);
}
#[test]
fn garbage_request_is_answered_with_a_refusal() {
    let mut net = net(1);
    let from = net.nodes[0].id;
    let now = net.now;
    for garbage in [
        &b""[..],
        &[1u8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F][..],
        &[7u8; 300][..],
    ] {
        let response = net.core(1).handle_request(now, from, garbage);
        let answer = Batch::from_bytes(&response).expect("a refusal is still a batch");
        assert!(matches!(answer.frames.as_slice(), [Frame::Refused { .. }]));
    }
}
#[test]
fn status_update_reaches_the_senders_outbox_history() {
    let mut net = net(2);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(1000);
    let sender = net.nodes[1].id;
    let now = net.now;
    net.core(2)
        .acknowledge(now, sender, id, "Officer Tanaka")
        .expect("ack")
        .expect("first ack");
    net.core(2).store_mut().flush().expect("flush");
    net.run_for(1000);
    let entry = net
        .core(1)
        .store()
        .get_outbox(&id)
        .expect("store")
        .expect("entry");
    assert_eq!(entry.status_history.len(), 1);
    assert_eq!(
        entry.status_history[0].update.status,
        Status::AcknowledgedByOfficer
    );
    // A second acknowledgement sends nothing new.
    assert_eq!(
        net.core(2)
            .acknowledge(now, sender, id, "again")
            .expect("ack"),
        None
    );
}
#[test]
fn acknowledging_a_status_reply_marks_it_read_and_sends_nothing() {
    let mut net = net(2);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(1000);
    let (requester, requested) = (net.nodes[1].id, net.nodes[2].id);
    let now = net.now;
    net.core(2)
        .acknowledge(now, requester, id, "Officer Tanaka")
        .expect("ack")
        .expect("the request's acknowledgement is sent");
    net.core(2).store_mut().flush().expect("flush");
    net.run_for(1000);
    // The requester now holds the status reply in its inbox.
    let inbox = net.core(1).store().inbox_entries().expect("store");
    let [status] = inbox.as_slice() else {
        panic!("one status reply expected, found {inbox:?}");
    };
    assert!(!crate::core::awaits_acknowledgement(&status.payload));
    // An unread status reply is not "waiting for acknowledgement": a restart does not announce it.
    let now = net.now;
    assert_eq!(net.core(1).announce_unacknowledged(now).expect("store"), 0);
    let outbox_before = net.core(1).store().outbox_entries().expect("store").len();
    let now = net.now;
    assert_eq!(
        net.core(1)
            .acknowledge(now, requested, status.message_id, "Officer Weber")
            .expect("ack"),
        None,
        "acknowledging a status reply must not send anything"
    );
    let read = net
        .core(1)
        .store()
        .get_inbox(&requested, &status.message_id)
        .expect("store")
        .expect("entry");
    assert!(read.acknowledged_at.is_some(), "marked read locally");
    assert_eq!(
        net.core(1).store().outbox_entries().expect("store").len(),
        outbox_before,
        "nothing new queued at the requester"
    );
    net.core(1).store_mut().flush().expect("flush");
    net.run_for(2000);
    // Nothing new at the requested side: its inbox still holds only the request.
    assert_eq!(net.core(2).store().inbox_entries().expect("store").len(), 1);
}
#[test]
fn invalid_request_names_every_missing_field() {
    let mut net = net(2);
    let mut request = example_preservation();
    request.offence.clear();
    request.necessity.clear();
    let now = net.now;
    let to = net.nodes[2].id;
    match net.core(1).submit(now, to, Payload::Preservation(request)) {
        Err(SubmitError::Invalid(errors)) => assert!(errors.0.len() >= 2),
        other => panic!("expected validation errors, got {other:?}"),
    }
}
#[test]
fn injected_dedup_bug_produces_a_duplicate_received_event() {
    // The control for the simulator's checker: with de-duplication off, a lost answer and a retry
    // make the recipient announce the same message twice.
    let config = CoreConfig {
        injected_bugs: InjectedBugs {
            skip_dedup: true,
            ..InjectedBugs::default()
        },
        ..CoreConfig::default()
    };
    let mut net = net_with(2, config);
    net.cut.insert((2, 1));
    net.cut.insert((1, 0));
    let id = net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(10_000);
    let received = net
        .events
        .iter()
        .filter(|(node, event)| {
            *node == 2 && matches!(event, Event::Received { message_id, .. } if *message_id == id)
        })
        .count();
    assert!(
        received >= 2,
        "expected the bug to show, saw {received} Received events"
    );
}
#[test]
fn a_message_refused_because_it_expired_on_the_way_ends_expired_not_rejected() {
    let config = CoreConfig {
        lifetime_urgent_ms: 10_000,
        ..CoreConfig::default()
    };
    let mut net = net_with(2, config);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    // Sent just before the end of its life, it arrives just after.
    let sent_at = net.now.plus_ms(9_999);
    net.core(1).handle_timeout(sent_at);
    let transmit = net.core(1).poll_transmit().expect("a transmit");
    let arrived_at = net.now.plus_ms(10_050);
    let from = net.nodes[1].id;
    let answer = net
        .core(2)
        .handle_request(arrived_at, from, &transmit.bytes);
    assert_eq!(net.inbox_count(2, 1, id), 0, "refused as expired");
    net.core(1)
        .handle_response(arrived_at, transmit.request_id, &answer);
    net.core(1).store_mut().flush().expect("flush");
    net.round();
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Expired { .. }
    ));
    assert!(net.has_event(
        1,
        |event| matches!(event, Event::Expired { message_id, .. } if *message_id == id)
    ));
    assert!(!net.has_event(1, |event| matches!(event, Event::Rejected { .. })));
}
