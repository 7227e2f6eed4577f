//! Unit tests of the delivery core over a tiny synchronous virtual network.
//!
//! `Net` delivers each transmit at once (or fails it when the link is cut or the peer is down),
//! flushes every store before answers leave, and steps virtual time to the earliest timeout. The
//! full hostile simulation lives in the `simnet` crate; these tests pin individual rules.

use std::collections::BTreeSet;

use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{
    AuthorityKey, CountryCode, EncryptionKey, Identity, NodeId, SignedRoster, Timestamp,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::envelope::Envelope;
use crate::payload::{example_emergency, example_free_text, example_preservation, Payload, Status};

const START: Timestamp = Timestamp(1_795_000_000_000);
const DAY_MS: u64 = 24 * 3600 * 1000;

fn identity(index: usize) -> Identity {
    let mut seed = [0u8; 32];
    seed[0] = index as u8;
    seed[1] = 0xA5;
    Identity::generate(&mut ChaCha20Rng::from_seed(seed))
}

struct Node {
    core: Option<Core<MemoryStore>>,
    store_if_down: Option<MemoryStore>,
    id: NodeId,
}

struct Net {
    now: Timestamp,
    nodes: Vec<Node>,
    roster: Roster,
    signed: Vec<u8>,
    cut: BTreeSet<(usize, usize)>,
    events: Vec<(usize, Event)>,
    config: CoreConfig,
}

/// Node 0 is a relay; nodes 1.. are points of contact that name it as their relay.
fn net(points_of_contact: usize) -> Net {
    net_with(points_of_contact, CoreConfig::default())
}

fn net_with(points_of_contact: usize, config: CoreConfig) -> Net {
    let countries = ["BE", "DE", "FR", "JP", "US", "BR", "KE", "NO"];
    let relay = identity(0);
    let mut members = Vec::new();
    for (index, country) in countries.iter().enumerate().take(points_of_contact + 1) {
        let who = identity(index);
        members.push(Member {
            node_id: who.node_id(),
            country: CountryCode::parse(country).expect("valid"),
            authority_name: format!("node {index}"),
            role: if index == 0 {
                Role::Relay
            } else {
                Role::PointOfContact
            },
            encryption_key: EncryptionKey(who.encryption_public()),
            addresses: vec![format!("/memory/{index}")],
            relays: if index == 0 {
                vec![]
            } else {
                vec![relay.node_id()]
            },
            valid_from: Timestamp(START.0 - DAY_MS),
            valid_until: Timestamp(START.0 + 365 * DAY_MS),
            on_duty_contact: "duty@example.org".into(),
        });
    }
    let authority = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]));
    let roster = Roster {
        network: "unit".into(),
        serial: 1,
        issued_at: START,
        expires_at: Timestamp(START.0 + 90 * DAY_MS),
        threshold: 1,
        authorities: vec![authority.public()],
        members,
    };
    let mut signed = SignedRoster::new(&roster).expect("valid roster");
    signed.sign(&authority, None).expect("sign");
    let signed = signed.to_bytes().expect("encode");
    let mut net = Net {
        now: START,
        nodes: Vec::new(),
        roster,
        signed,
        cut: BTreeSet::new(),
        events: Vec::new(),
        config,
    };
    for index in 0..=points_of_contact {
        let core = net.build(index, MemoryStore::new());
        net.nodes.push(Node {
            id: core.node_id(),
            core: Some(core),
            store_if_down: None,
        });
    }
    net
}

impl Net {
    fn build(&self, index: usize, store: MemoryStore) -> Core<MemoryStore> {
        Core::new(
            identity(index),
            self.roster.clone(),
            self.signed.clone(),
            self.config.clone(),
            store,
            [index as u8; 32],
        )
        .expect("core")
    }

    fn core(&mut self, index: usize) -> &mut Core<MemoryStore> {
        self.nodes[index].core.as_mut().expect("node is up")
    }

    fn index_of(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .expect("member")
    }

    fn crash(&mut self, index: usize) {
        let core = self.nodes[index].core.take().expect("up");
        let mut store = core.into_store();
        store.crash();
        self.nodes[index].store_if_down = Some(store);
    }

    fn restart(&mut self, index: usize) {
        let store = self.nodes[index].store_if_down.take().expect("down");
        let core = self.build(index, store);
        self.nodes[index].core = Some(core);
    }

    fn submit(&mut self, from: usize, to: usize, payload: Payload) -> MessageId {
        let now = self.now;
        let to_id = self.nodes[to].id;
        let id = self
            .core(from)
            .submit(now, to_id, payload)
            .expect("accepted");
        self.core(from).store_mut().flush().expect("flush");
        id
    }

    /// One round: timeouts, then every transmit delivered or failed. Returns whether anything moved.
    fn round(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for index in 0..self.nodes.len() {
            if let Some(core) = self.nodes[index].core.as_mut() {
                if core.poll_timeout().is_some_and(|at| at <= now) {
                    core.handle_timeout(now);
                }
                core.store_mut().flush().expect("flush");
            }
        }
        for from in 0..self.nodes.len() {
            let transmits: Vec<Transmit> = match self.nodes[from].core.as_mut() {
                Some(core) => std::iter::from_fn(|| core.poll_transmit()).collect(),
                None => Vec::new(),
            };
            for transmit in transmits {
                moved = true;
                let to = self.index_of(transmit.to);
                let from_id = self.nodes[from].id;
                let reachable = !self.cut.contains(&(from, to)) && self.nodes[to].core.is_some();
                if !reachable {
                    self.core(from)
                        .handle_request_failed(now, transmit.request_id, "unreachable");
                    continue;
                }
                let response = self.core(to).handle_request(now, from_id, &transmit.bytes);
                self.core(to).store_mut().flush().expect("flush");
                if self.cut.contains(&(to, from)) {
                    self.core(from).handle_request_failed(
                        now,
                        transmit.request_id,
                        "response lost",
                    );
                } else {
                    self.core(from)
                        .handle_response(now, transmit.request_id, &response);
                }
                self.core(from).store_mut().flush().expect("flush");
            }
        }
        for index in 0..self.nodes.len() {
            if let Some(core) = self.nodes[index].core.as_mut() {
                while let Some(event) = core.poll_event() {
                    self.events.push((index, event));
                }
            }
        }
        moved
    }

    /// Runs rounds, stepping time to the next timeout, until `until` or nothing is left to do.
    fn run_for(&mut self, duration_ms: u64) {
        let until = self.now.plus_ms(duration_ms);
        for _ in 0..100_000 {
            if self.round() {
                continue;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|node| node.core.as_ref().and_then(Core::poll_timeout))
                .min();
            match next {
                Some(at) if at <= until => self.now = at.max(self.now),
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("network did not settle");
    }

    fn outbox_state(&mut self, from: usize, id: MessageId) -> OutboxState {
        self.core(from)
            .store()
            .get_outbox(&id)
            .expect("store")
            .expect("entry")
            .state
    }

    fn inbox_count(&mut self, at: usize, sender: usize, id: MessageId) -> usize {
        let sender = self.nodes[sender].id;
        self.core(at)
            .store()
            .inbox_entries()
            .expect("store")
            .iter()
            .filter(|entry| entry.sender == sender && entry.message_id == id)
            .count()
    }

    fn inbox_count_down(&self, at: usize) -> usize {
        self.nodes[at]
            .store_if_down
            .as_ref()
            .expect("down")
            .inbox_entries()
            .expect("store")
            .len()
    }

    fn has_event(&self, node: usize, wanted: impl Fn(&Event) -> bool) -> bool {
        self.events
            .iter()
            .any(|(index, event)| *index == node && wanted(event))
    }
}

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

#[test]
fn a_newer_roster_spreads_through_ordinary_traffic() {
    let mut net = net(2);
    // Re-sign the same membership as serial 2 and give it to node 1 only.
    let authority = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]));
    let mut newer = net.roster.clone();
    newer.serial = 2;
    let mut signed = SignedRoster::new(&newer).expect("valid");
    signed.sign(&authority, None).expect("sign");
    let bytes = signed.to_bytes().expect("encode");
    let store = net.nodes[1].core.take().expect("up").into_store();
    let core = Core::new(
        identity(1),
        newer,
        bytes,
        net.config.clone(),
        store,
        [1; 32],
    )
    .expect("core");
    net.nodes[1].core = Some(core);
    assert_eq!(net.core(2).roster().serial, 1);
    net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(2_000);
    assert_eq!(net.core(2).roster().serial, 2);
    assert!(net.has_event(2, |event| matches!(
        event,
        Event::RosterUpdated { serial: 2 }
    )));
    // Node 2 now advertises serial 2 and node 0 (the relay) picks it up when they talk.
    net.submit(2, 1, Payload::FreeText(example_free_text()));
    net.run_for(2_000);
    // A forged "newer" roster is refused and the node keeps serial 2.
    let forger = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([7; 32]));
    let mut forged = net.roster.clone();
    forged.serial = 3;
    forged.authorities = vec![forger.public()];
    let mut signed = SignedRoster::new(&forged).expect("valid");
    signed.sign(&forger, None).expect("sign");
    let bytes = signed.to_bytes().expect("encode");
    let now = net.now;
    let from = net.nodes[1].id;
    net.core(2).offered_roster(now, from, &bytes);
    assert_eq!(net.core(2).roster().serial, 2);
    assert!(std::iter::from_fn(|| net.core(2).poll_event())
        .any(|event| matches!(event, Event::RosterRejected { .. })));
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
    let announced = net.core(2).announce_unacknowledged(now).expect("store");
    assert_eq!(announced, 1, "only the unacknowledged message");
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
