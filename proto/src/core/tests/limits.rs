//! Named limits: the outbox and the relay storage per sender refuse work beyond them.

use super::*;

#[test]
fn outbox_limit_is_enforced() {
    let config = CoreConfig {
        max_outbox_pending: 3,
        ..CoreConfig::default()
    };
    let mut net = net_with(2, config);
    for _ in 0..3 {
        net.submit(1, 2, Payload::FreeText(example_free_text()));
    }
    let now = net.now;
    let to = net.nodes[2].id;
    let error = net
        .core(1)
        .submit(now, to, Payload::FreeText(example_free_text()))
        .expect_err("full");
    assert!(matches!(error, SubmitError::OutboxFull(3)));
}
#[test]
fn relay_limit_per_sender_is_enforced() {
    let config = CoreConfig {
        relay_max_messages_per_sender: 2,
        ..CoreConfig::default()
    };
    let mut net = net_with(2, config);
    net.crash(2);
    let ids: Vec<MessageId> = (0..4)
        .map(|_| net.submit(1, 2, Payload::FreeText(example_free_text())))
        .collect();
    net.run_for(20_000);
    let custody = ids
        .iter()
        .filter(|id| matches!(net.outbox_state(1, **id), OutboxState::Custody { .. }))
        .count();
    assert_eq!(custody, 2);
    assert_eq!(net.core(0).queue_sizes().relay_pending, 2);
    // When the recipient returns everything is delivered, directly or by the relay.
    net.restart(2);
    net.run_for(300_000);
    for id in ids {
        assert!(matches!(
            net.outbox_state(1, id),
            OutboxState::Delivered { .. }
        ));
        assert_eq!(net.inbox_count(2, 1, id), 1);
    }
}
