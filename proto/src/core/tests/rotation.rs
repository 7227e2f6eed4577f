//! Key rotation with traffic in flight: an outbox entry signed with the sender's old key, an
//! envelope a relay holds sealed to the recipient's old key, and receipts travelling back all
//! complete after the sender, the recipient or the relay rotates; after the grace the old keys
//! are refused.

use quickfreeze_keys::roster::PreviousKeys;

use super::*;

const GRACE_MS: u64 = DAY_MS;

impl Net {
    /// Node `index` runs `key rotate` and restarts (its store kept); the authority issues the
    /// next roster serial naming its new keys, with the old ones valid for `grace_ms` from now,
    /// and every running node takes it as a roster update from `index`.
    fn rotate_and_publish(&mut self, index: usize, grace_ms: u64) {
        self.rotate(index, grace_ms, true);
    }

    /// As [`Net::rotate_and_publish`]; with `spread` false only the rotated node holds the new
    /// roster at first (the others must fetch it from its batches).
    fn rotate(&mut self, index: usize, grace_ms: u64, spread: bool) {
        self.crash(index);
        self.rotations[index] += 1;
        let rotated = identity_rotated(index, self.rotations[index]);
        let until = self.now.plus_ms(grace_ms);
        let mut roster = self.roster.clone();
        roster.serial += 1;
        let entry = roster
            .members
            .iter_mut()
            .find(|member| member.node_id == rotated.node_id())
            .expect("member");
        entry.previous_keys.push(PreviousKeys {
            signing_key: entry.current_signing_key(),
            encryption_key: entry.encryption_key,
            valid_until: until,
        });
        entry.signing_key = Some(rotated.newest_signing_key());
        entry.encryption_key = EncryptionKey(rotated.newest_encryption_public());
        let authority = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]));
        let mut signed = SignedRoster::new(&roster).expect("valid rotated roster");
        signed.sign(&authority, None).expect("sign");
        self.signed = signed.to_bytes().expect("encode");
        self.roster = roster;
        let now = self.now;
        let from = self.nodes[index].id;
        let bytes = self.signed.clone();
        for node in (0..self.nodes.len()).filter(|_| spread) {
            if let Some(core) = self.nodes[node].core.as_mut() {
                core.offered_roster(now, from, &bytes);
                assert_eq!(core.roster().serial, self.roster.serial, "node {node}");
            }
        }
        self.restart(index);
        assert_eq!(
            self.core(index).identity().signing_key(),
            rotated.newest_signing_key(),
            "the restarted node uses the keys its roster names"
        );
    }

    fn delivered(&mut self, from: usize, id: MessageId) -> bool {
        matches!(self.outbox_state(from, id), OutboxState::Delivered { .. })
    }
}

#[test]
fn envelope_held_by_the_relay_reaches_a_recipient_that_rotated() {
    let mut net = net(2);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Emergency(example_emergency()));
    net.run_for(20_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Custody { .. }
    ));
    // The relay holds ciphertext sealed to FR's old key; FR rotates meanwhile.
    net.restart(2);
    net.cut.insert((0, 2));
    net.cut.insert((1, 2));
    net.rotate_and_publish(2, GRACE_MS);
    net.cut.clear();
    net.run_for(120_000);
    assert_eq!(
        net.inbox_count(2, 1, id),
        1,
        "opened with the old key in grace"
    );
    assert!(
        net.delivered(1, id),
        "receipt signed with FR's new key verified"
    );
    // New mail is sealed to the new key and is delivered too.
    let after = net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(60_000);
    assert_eq!(net.inbox_count(2, 1, after), 1);
    assert!(net.delivered(1, after));
}

#[test]
fn after_the_grace_an_envelope_sealed_to_the_old_key_is_refused() {
    let mut net = net(2);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Emergency(example_emergency()));
    net.run_for(20_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Custody { .. }
    ));
    net.restart(2);
    net.cut.insert((0, 2));
    net.cut.insert((1, 2));
    // A grace that has already ended: the recipient forgets its old key at once.
    net.rotate_and_publish(2, 0);
    assert_eq!(net.core(2).identity().key_pair_count(), 2);
    // The shell's periodic call (the daemon's every 10 s) erases it.
    let now = net.now;
    net.core(2).forget_expired_keys(now);
    assert_eq!(
        net.core(2).identity().key_pair_count(),
        1,
        "old pair erased"
    );
    assert!(
        net.core(2).take_keys_changed(),
        "the shell is told to rewrite the key file"
    );
    net.cut.clear();
    net.run_for(120_000);
    assert_eq!(net.inbox_count(2, 1, id), 0);
    assert!(!net.delivered(1, id));
    assert!(net.has_event(2, |event| matches!(
        event,
        Event::InboundRejected { reason, .. } if reason.contains("does not decrypt")
    )));
}

#[test]
fn outbox_entry_signed_with_the_old_key_completes_after_the_sender_rotates() {
    let mut net = net(2);
    net.cut.insert((1, 0));
    net.cut.insert((1, 2));
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(5_000);
    assert!(!net.delivered(1, id));
    // DE's stored envelope carries the old signature; DE rotates before it gets through.
    net.rotate_and_publish(1, GRACE_MS);
    net.cut.clear();
    net.run_for(120_000);
    assert_eq!(
        net.inbox_count(2, 1, id),
        1,
        "old signature believed in grace"
    );
    assert!(net.delivered(1, id));
    // Mail signed with the new key.
    let after = net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(60_000);
    assert!(net.delivered(1, after));
    assert_eq!(net.inbox_count(2, 1, after), 1);
}

#[test]
fn after_the_grace_an_envelope_signed_with_the_old_key_is_refused() {
    let mut net = net(2);
    net.cut.insert((1, 0));
    net.cut.insert((1, 2));
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(5_000);
    net.rotate_and_publish(1, 1_000);
    net.run_for(2_000);
    net.cut.clear();
    net.run_for(120_000);
    assert_eq!(net.inbox_count(2, 1, id), 0);
    assert!(net.has_event(2, |event| matches!(
        event,
        Event::InboundRejected { reason, .. } if reason.contains("does not verify")
    )));
}

#[test]
fn a_relay_that_rotates_while_holding_mail_delivers_it_and_carries_the_receipt_back() {
    let mut net = net(2);
    net.crash(2);
    let id = net.submit(1, 2, Payload::Emergency(example_emergency()));
    net.run_for(20_000);
    assert!(matches!(
        net.outbox_state(1, id),
        OutboxState::Custody { .. }
    ));
    // The custody receipt was signed with the relay's old key; the relay rotates while holding.
    net.crash(1);
    net.rotate_and_publish(0, GRACE_MS);
    net.restart(2);
    net.run_for(5_000);
    assert_eq!(net.inbox_count(2, 1, id), 1);
    net.restart(1);
    net.run_for(120_000);
    assert!(net.delivered(1, id));
    assert_eq!(net.inbox_count(2, 1, id), 1, "exactly once");
}

#[test]
fn a_sender_whose_new_key_only_its_own_roster_lists_is_refused_for_now_not_for_good() {
    let mut net = net(2);
    net.rotate(1, GRACE_MS, false);
    assert_eq!(net.core(2).roster().serial, 1);
    let id = net.submit(1, 2, Payload::Preservation(example_preservation()));
    net.run_for(120_000);
    // FR saw DE's newer serial, fetched the roster, and DE's retry got through.
    assert_eq!(net.core(2).roster().serial, 2);
    assert_eq!(net.inbox_count(2, 1, id), 1);
    assert!(net.delivered(1, id));
    assert!(!net.has_event(1, |event| matches!(event, Event::Rejected { .. })));
}
