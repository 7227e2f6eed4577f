//! Trust that changes while the network runs: a roster installed at one node reaches every node
//! of an idle network; a revocation notice is applied at once, refuses the revoked sender at
//! receive time whatever `created_at` says, makes a relay discard what it holds from it, spreads
//! to connected members, and survives a restart. Each spread and refusal rule also has a test
//! that switches on the matching `InjectedBugs` flag and sees the rule fail.

use quickfreeze_keys::{Revocation, SignedRevocation};

use super::*;

fn authority() -> AuthorityKey {
    AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]))
}

/// Relay links as the daemon keeps them: every point of contact connected to the relay (node 0)
/// and nothing else, so points of contact only hear of each other through the relay.
fn connect_star(net: &mut Net) {
    let now = net.now;
    let relay = net.nodes[0].id;
    for index in 1..net.nodes.len() {
        let id = net.nodes[index].id;
        net.core(index).handle_connected(now, relay);
        net.core(0).handle_connected(now, id);
    }
}

fn newer_roster(net: &Net, serial: u64) -> Vec<u8> {
    let mut newer = net.roster.clone();
    newer.serial = serial;
    mark(&mut newer, serial);
    let mut signed = SignedRoster::new(&newer).expect("valid");
    signed.sign(&authority(), None).expect("sign");
    signed.to_bytes().expect("encode")
}

/// A visible change, so serial `serial` is a different roster, not a re-signature.
fn mark(roster: &mut Roster, serial: u64) {
    for member in &mut roster.members {
        member.on_duty_contact = format!("duty-{serial}@example.org");
    }
}

fn notice(net: &Net, serial: u64, revoked: &[usize], signers: &[&AuthorityKey]) -> Vec<u8> {
    let revocation = Revocation {
        network: net.roster.network.clone(),
        serial,
        issued_at: net.now,
        nodes: revoked.iter().map(|index| net.nodes[*index].id).collect(),
        keys: vec![],
        reason: "key copied from a decommissioned server".into(),
    };
    let mut signed = SignedRevocation::new(&revocation).expect("valid");
    for key in signers {
        signed.sign(key, &net.roster).expect("sign");
    }
    signed.to_bytes().expect("encode")
}

fn serials(net: &mut Net) -> Vec<u64> {
    (0..net.nodes.len())
        .map(|index| net.core(index).roster().serial)
        .collect()
}

#[test]
fn an_installed_roster_reaches_every_node_of_an_idle_network() {
    let mut net = net(3);
    connect_star(&mut net);
    net.run_for(1_000);
    let bytes = newer_roster(&net, 2);
    let now = net.now;
    assert_eq!(net.core(2).install_roster(now, &bytes), Ok(2));
    // Installing the same roster again is not an error.
    assert_eq!(net.core(2).install_roster(now, &bytes), Ok(2));
    net.run_for(1_000);
    assert_eq!(serials(&mut net), vec![2, 2, 2, 2]);
    for index in 0..4 {
        assert!(net.has_event(index, |event| matches!(
            event,
            Event::RosterUpdated { serial: 2 }
        )));
        assert_eq!(net.core(index).signed_roster(), bytes.as_slice());
        assert_eq!(
            net.core(index).store().get_roster().expect("store"),
            Some(bytes.clone())
        );
    }
}

#[test]
fn a_member_that_connects_later_learns_the_newer_roster_at_connect() {
    let mut net = net(2);
    let bytes = newer_roster(&net, 2);
    let now = net.now;
    net.core(0).install_roster(now, &bytes).expect("installed");
    net.run_for(1_000);
    assert_eq!(serials(&mut net), vec![2, 1, 1]);
    connect_star(&mut net);
    net.run_for(1_000);
    assert_eq!(serials(&mut net), vec![2, 2, 2]);
}

#[test]
fn the_roster_does_not_spread_without_serial_gossip() {
    // The deliberately broken build: nobody tells its serials, so an idle network stays behind.
    let config = CoreConfig {
        injected_bugs: InjectedBugs {
            no_serial_gossip: true,
            ..InjectedBugs::default()
        },
        ..CoreConfig::default()
    };
    let mut net = net_with(3, config);
    connect_star(&mut net);
    let bytes = newer_roster(&net, 2);
    let now = net.now;
    net.core(2).install_roster(now, &bytes).expect("installed");
    net.run_for(60_000);
    assert_eq!(serials(&mut net), vec![1, 1, 2, 1]);
}

#[test]
fn periodic_gossip_repairs_a_lost_tell() {
    let mut net = net(2);
    connect_star(&mut net);
    net.run_for(1_000);
    // The relay's links are cut while it learns the roster, so its tells are lost.
    net.cut.insert((0, 1));
    net.cut.insert((0, 2));
    let bytes = newer_roster(&net, 2);
    let now = net.now;
    net.core(0).install_roster(now, &bytes).expect("installed");
    net.run_for(1_000);
    assert_eq!(serials(&mut net), vec![2, 1, 1]);
    net.cut.clear();
    net.run_for(net.config.serial_gossip_interval_ms * 2 + 1_000);
    assert_eq!(serials(&mut net), vec![2, 2, 2]);
}

#[test]
fn an_install_that_is_not_an_update_is_refused_and_changes_nothing() {
    let mut net = net(1);
    let now = net.now;
    let same_serial = net.signed.clone();
    let mut other = net.roster.clone();
    mark(&mut other, 1);
    let mut signed = SignedRoster::new(&other).expect("valid");
    signed.sign(&authority(), None).expect("sign");
    let other = signed.to_bytes().expect("encode");
    assert_eq!(net.core(1).install_roster(now, &same_serial), Ok(1));
    assert!(matches!(
        net.core(1).install_roster(now, &other),
        Err(quickfreeze_keys::RosterError::Rollback { .. })
    ));
    let forger = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([7; 32]));
    let mut forged = net.roster.clone();
    forged.serial = 5;
    let mut signed = SignedRoster::new(&forged).expect("valid");
    signed.sign(&forger, None).expect_err("not an authority");
    forged.authorities = vec![forger.public()];
    let mut signed = SignedRoster::new(&forged).expect("valid");
    signed.sign(&forger, None).expect("sign");
    let forged = signed.to_bytes().expect("encode");
    assert!(net.core(1).install_roster(now, &forged).is_err());
    assert_eq!(net.core(1).roster().serial, 1);
}

/// Node 2's message is created and sealed, then (while it waits on a cut link) node 2 is revoked
/// at node 1: node 1 refuses it on arrival although `created_at` is before the revocation.
fn revoked_sender_run(config: CoreConfig) -> (Net, MessageId) {
    let mut net = net_with(2, config);
    net.cut.insert((2, 1));
    net.cut.insert((2, 0));
    let id = net.submit(2, 1, Payload::FreeText(example_free_text()));
    net.run_for(2_000);
    let bytes = notice(&net, 1, &[2], &[&authority()]);
    assert_eq!(net.core(1).apply_revocation(None, &bytes), Ok(Some(1)));
    net.run_for(1_000);
    net.cut.clear();
    net.run_for(30_000);
    (net, id)
}

#[test]
fn a_revoked_sender_is_refused_at_receive_time_even_if_created_earlier() {
    let (mut net, id) = revoked_sender_run(CoreConfig::default());
    assert_eq!(net.inbox_count(1, 2, id), 0);
    let revoked = net.nodes[2].id;
    assert!(net.core(1).roster().member(&revoked).is_none());
    assert_eq!(net.core(1).revocation_serial(), 1);
    assert!(net.has_event(1, |event| matches!(
        event,
        Event::RevocationApplied { serial: 1, revoked, .. } if revoked.len() == 1
    )));
    assert!(!matches!(
        net.outbox_state(2, id),
        OutboxState::Delivered { .. }
    ));
}

#[test]
fn ignoring_revocations_lets_the_revoked_sender_through() {
    // The deliberately broken build accepts the message the test above refuses.
    let config = CoreConfig {
        injected_bugs: InjectedBugs {
            ignore_revocations: true,
            ..InjectedBugs::default()
        },
        ..CoreConfig::default()
    };
    let (mut net, id) = revoked_sender_run(config);
    assert_eq!(net.inbox_count(1, 2, id), 1);
}

#[test]
fn a_revocation_survives_a_restart() {
    let mut net = net(2);
    let bytes = notice(&net, 3, &[2], &[&authority()]);
    net.core(1).apply_revocation(None, &bytes).expect("applied");
    net.core(1).store_mut().flush().expect("flush");
    net.crash(1);
    net.restart(1);
    assert_eq!(net.core(1).revocation_serial(), 3);
    let revoked = net.nodes[2].id;
    assert!(net.core(1).roster().member(&revoked).is_none());
    let id = net.submit(2, 1, Payload::FreeText(example_free_text()));
    net.run_for(30_000);
    assert_eq!(net.inbox_count(1, 2, id), 0);
}

#[test]
fn notices_that_do_not_verify_are_refused_with_an_event() {
    let mut net = net(2);
    let unsigned = notice(&net, 1, &[2], &[]);
    assert!(matches!(
        net.core(1).apply_revocation(None, &unsigned),
        Err(quickfreeze_keys::RevocationError::NotEnoughSignatures {
            valid: 0,
            required: 1
        })
    ));
    let forger = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([7; 32]));
    let mut other_roster = net.roster.clone();
    other_roster.authorities = vec![forger.public()];
    let revocation = Revocation {
        network: net.roster.network.clone(),
        serial: 1,
        issued_at: net.now,
        nodes: vec![net.nodes[2].id],
        keys: vec![],
        reason: "forged".into(),
    };
    let mut forged = SignedRevocation::new(&revocation).expect("valid");
    forged.sign(&forger, &other_roster).expect("sign");
    let forged = forged.to_bytes().expect("encode");
    assert!(net.core(1).apply_revocation(None, &forged).is_err());
    let mut elsewhere = revocation.clone();
    elsewhere.network = "another-network".into();
    let mut signed = SignedRevocation::new(&elsewhere).expect("valid");
    signed.sign(&authority(), &net.roster).expect("sign");
    let elsewhere = signed.to_bytes().expect("encode");
    assert!(matches!(
        net.core(1).apply_revocation(None, &elsewhere),
        Err(quickfreeze_keys::RevocationError::WrongNetwork { .. })
    ));
    let revoked = net.nodes[2].id;
    assert!(net.core(1).roster().member(&revoked).is_some());
    assert_eq!(net.core(1).revocation_serial(), 0);
    net.run_for(10);
    assert!(net.has_event(1, |event| matches!(event, Event::RevocationRejected { .. })));
}

#[test]
fn a_relay_discards_what_it_holds_from_a_revoked_sender() {
    let mut net = net(2);
    net.crash(2);
    let id = net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(20_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Custody { .. }
    ));
    assert_eq!(net.core(0).queue_sizes().relay_pending, 1);
    let bytes = notice(&net, 1, &[1], &[&authority()]);
    net.core(0).apply_revocation(None, &bytes).expect("applied");
    assert_eq!(net.core(0).queue_sizes().relay_pending, 0);
    assert_eq!(net.core(0).queue_sizes().relay_bytes, 0);
    net.run_for(10);
    assert!(net.has_event(0, |event| matches!(
        event,
        Event::RelayFailed { message_id, .. } if *message_id == id
    )));
    let sender = net.nodes[1].id;
    let entry = net
        .core(0)
        .store()
        .get_relay(&sender, &id)
        .expect("store")
        .expect("kept to answer duplicates");
    assert!(matches!(entry.state, RelayState::Failed { .. }));
    assert!(entry.envelope.is_none());
    // The relay no longer forwards it when the recipient comes back.
    net.restart(2);
    net.run_for(5_000);
    assert!(!net.has_event(0, |event| matches!(
        event,
        Event::RelayDelivered { message_id, .. } if *message_id == id
    )));
}

#[test]
fn a_revocation_spreads_to_every_connected_member_and_to_late_joiners() {
    let mut net = net(3);
    // Node 3 is not connected yet.
    let now = net.now;
    let relay = net.nodes[0].id;
    for index in 1..3 {
        let id = net.nodes[index].id;
        net.core(index).handle_connected(now, relay);
        net.core(0).handle_connected(now, id);
    }
    let bytes = notice(&net, 4, &[3], &[&authority()]);
    net.core(1).apply_revocation(None, &bytes).expect("applied");
    net.run_for(1_000);
    let held: Vec<u64> = (0..3)
        .map(|index| net.core(index).revocation_serial())
        .collect();
    assert_eq!(held, vec![4, 4, 4]);
    // A late joiner that is not itself revoked learns it when it connects.
    let mut net = net_with(3, CoreConfig::default());
    let bytes = notice(&net, 4, &[2], &[&authority()]);
    net.core(0).apply_revocation(None, &bytes).expect("applied");
    net.run_for(1_000);
    assert_eq!(net.core(1).revocation_serial(), 0);
    let now = net.now;
    let relay = net.nodes[0].id;
    let id = net.nodes[1].id;
    net.core(1).handle_connected(now, relay);
    net.core(0).handle_connected(now, id);
    net.run_for(1_000);
    assert_eq!(net.core(1).revocation_serial(), 4);
    let revoked = net.nodes[2].id;
    assert!(net.core(1).roster().member(&revoked).is_none());
}

/// Property tests of the revocation rules in the core: whatever the arrival time and whatever
/// `created_at` the sender wrote, nothing from a revoked member is taken; notices apply once and
/// give the same state in any order.
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::{Batch, Frame};

    /// Node 2 seals a request to node 1 (held back by a cut link) and the sealed bytes.
    fn sealed_from_2_to_1(net: &mut Net) -> (MessageId, Vec<u8>) {
        net.cut.insert((2, 1));
        net.cut.insert((2, 0));
        let id = net.submit(2, 1, Payload::FreeText(example_free_text()));
        let entry = net
            .core(2)
            .store()
            .get_outbox(&id)
            .expect("store")
            .expect("accepted");
        (id, entry.envelope)
    }

    /// Hands `envelope` to node 1 as if node `from` delivered it at `at`; the answer frame.
    fn deliver(net: &mut Net, from: usize, envelope: &[u8], at: Timestamp) -> Frame {
        let envelope = Envelope::from_bytes(envelope).expect("decodes");
        let serial = net.roster.serial;
        let bytes = Batch::new(serial, vec![Frame::Deliver(envelope)])
            .to_bytes()
            .expect("encode");
        let from = net.nodes[from].id;
        let answer = net.core(1).handle_request(at, from, &bytes);
        net.core(1).store_mut().flush().expect("flush");
        let mut batch = Batch::from_bytes(&answer).expect("answer decodes");
        batch.frames.remove(0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Sealed before the notice, arriving any time after it (directly or through the relay,
        /// node 0): refused, and never in the inbox. Without the notice the same bytes are taken.
        #[test]
        fn nothing_from_a_revoked_member_is_taken_at_any_arrival_time(
            sealed_before_ms in 0u64..3_600_000,
            arrives_after_ms in 0u64..2 * 3_600_000,
            through_relay in any::<bool>(),
        ) {
            let mut net = net(2);
            let (id, envelope) = sealed_from_2_to_1(&mut net);
            let bytes = notice(&net, 1, &[2], &[&authority()]);
            let revoked_at = Timestamp(net.now.0 + sealed_before_ms);
            prop_assert_eq!(net.core(1).apply_revocation(None, &bytes), Ok(Some(1)));
            let at = Timestamp(revoked_at.0 + arrives_after_ms);
            let from = if through_relay { 0 } else { 2 };
            let answer = deliver(&mut net, from, &envelope, at);
            prop_assert!(
                matches!(answer, Frame::Refused { .. }),
                "revoked sender's envelope answered with {:?}",
                answer
            );
            prop_assert_eq!(net.inbox_count(1, 2, id), 0);
        }

        /// The control: the same envelope at the same time, with no notice, is taken once.
        #[test]
        fn without_the_notice_the_same_envelope_is_taken(arrives_after_ms in 0u64..3_600_000) {
            let mut net = net(2);
            let (id, envelope) = sealed_from_2_to_1(&mut net);
            let at = Timestamp(net.now.0 + arrives_after_ms);
            let answer = deliver(&mut net, 2, &envelope, at);
            prop_assert!(matches!(answer, Frame::Receipt(_)), "answered {:?}", answer);
            prop_assert_eq!(net.inbox_count(1, 2, id), 1);
        }

        /// Notices revoking any members, applied in any order and any number of times: each is
        /// new exactly once, and the end state (highest serial, who is still a member, what is
        /// stored) is the same as applying them once in serial order.
        #[test]
        fn notices_apply_once_and_in_any_order(
            revoked in proptest::collection::vec(proptest::collection::btree_set(1usize..=4, 1..=2), 1..=4),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 1..=12),
        ) {
            let base = net(4);
            let notices: Vec<Vec<u8>> = revoked
                .iter()
                .enumerate()
                .map(|(index, who)| {
                    let who: Vec<usize> = who.iter().copied().collect();
                    notice(&base, index as u64 + 1, &who, &[&authority()])
                })
                .collect();
            // In order, once each.
            let mut reference = net(4);
            for bytes in &notices {
                prop_assert!(matches!(reference.core(1).apply_revocation(None, bytes), Ok(Some(_))));
            }
            // Shuffled, with repeats, then every one again so each has been seen.
            let mut shuffled = net(4);
            let mut new_count = 0;
            let picks = order
                .iter()
                .map(|pick| pick.index(notices.len()))
                .chain(0..notices.len());
            for pick in picks {
                match shuffled.core(1).apply_revocation(None, &notices[pick]) {
                    Ok(Some(_)) => new_count += 1,
                    Ok(None) => {}
                    Err(error) => prop_assert!(false, "a valid notice was refused: {}", error),
                }
            }
            prop_assert_eq!(new_count, notices.len());
            prop_assert_eq!(
                shuffled.core(1).revocation_serial(),
                reference.core(1).revocation_serial()
            );
            let members = |net: &mut Net| -> Vec<NodeId> {
                net.core(1).roster().members.iter().map(|member| member.node_id).collect()
            };
            prop_assert_eq!(members(&mut shuffled), members(&mut reference));
            let mut stored_a = shuffled.core(1).store().revocations().expect("store");
            let mut stored_b = reference.core(1).store().revocations().expect("store");
            stored_a.sort();
            stored_b.sort();
            prop_assert_eq!(stored_a, stored_b);
        }
    }
}
