//! Tests of key rotation: the two roster formats, the grace rules for previous keys, and the
//! key file of a node that rotated.

use proptest::prelude::*;

use crate::codec;
use crate::identity::{AuthorityKey, Identity, KEY_FILE_VERSION_ROTATED};
use crate::roster::{
    wire, Member, PreviousKeys, Role, Roster, RosterError, SignedRoster, MAX_PREVIOUS_KEYS,
    MAX_SIGNED_ROSTER_BYTES, SIGNED_ROSTER_VERSION, SIGNED_ROSTER_VERSION_ROTATED,
};
use crate::types::{CountryCode, EncryptionKey, Timestamp};
use crate::NodeId;

const DAY_MS: u64 = 24 * 3600 * 1000;
const NOW: Timestamp = Timestamp(1_795_000_000_000);
const GRACE_END: Timestamp = Timestamp(NOW.0 + 7 * DAY_MS);

fn member(identity: &Identity, country: &str) -> Member {
    Member {
        node_id: identity.node_id(),
        signing_key: None,
        previous_keys: Vec::new(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("{country} 24/7 point of contact"),
        role: Role::PointOfContact,
        encryption_key: EncryptionKey(identity.encryption_public()),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        relays: vec![],
        valid_from: Timestamp(NOW.0 - DAY_MS),
        valid_until: Timestamp(NOW.0 + 365 * DAY_MS),
        on_duty_contact: "+49 611 55-0".into(),
    }
}

/// The member entry `key rotate` asks the authority to publish: new keys current, the old ones
/// as previous keys until `GRACE_END`.
fn rotated_member(identity: &Identity, country: &str) -> Member {
    let mut entry = member(identity, country);
    entry.signing_key = Some(identity.newest_signing_key());
    entry.encryption_key = EncryptionKey(identity.newest_encryption_public());
    entry.previous_keys = identity
        .older_keys()
        .into_iter()
        .map(|held| PreviousKeys {
            signing_key: held.signing_key,
            encryption_key: EncryptionKey(held.encryption_key),
            valid_until: GRACE_END,
        })
        .collect();
    entry
}

fn roster(members: Vec<Member>, authority: &AuthorityKey) -> Roster {
    Roster {
        network: "rotation-net".into(),
        serial: 1,
        issued_at: NOW,
        expires_at: Timestamp(NOW.0 + 30 * DAY_MS),
        threshold: 1,
        authorities: vec![authority.public()],
        members,
    }
}

fn signed(roster: &Roster, authority: &AuthorityKey) -> SignedRoster {
    let mut signed = SignedRoster::new(roster).expect("valid roster");
    signed.sign(authority, None).expect("sign");
    signed
}

#[test]
fn unrotated_roster_keeps_the_first_format_byte_for_byte() {
    let authority = AuthorityKey::generate(&mut rand::rng());
    let de = Identity::generate_from_os();
    let plain = roster(vec![member(&de, "DE")], &authority);
    let signed = signed(&plain, &authority);
    assert_eq!(signed.version, SIGNED_ROSTER_VERSION);
    // The first format is exactly the layout signed before rotation existed.
    let legacy = codec::encode(&wire::RosterV1::from(&plain), MAX_SIGNED_ROSTER_BYTES)
        .expect("encode legacy");
    assert_eq!(signed.body, legacy);
}

#[test]
fn rotated_roster_uses_format_two_and_verifies_through_bytes_and_toml() {
    let authority = AuthorityKey::generate(&mut rand::rng());
    let mut de = Identity::generate_from_os();
    de.rotate(&mut rand::rng()).expect("rotate");
    let fr = Identity::generate_from_os();
    let content = roster(
        vec![rotated_member(&de, "DE"), member(&fr, "FR")],
        &authority,
    );
    let signed = signed(&content, &authority);
    assert_eq!(signed.version, SIGNED_ROSTER_VERSION_ROTATED);
    let bytes = signed.to_bytes().expect("encode");
    let decoded = SignedRoster::from_bytes(&bytes).expect("decode");
    let pin = content.authority_set_fingerprint();
    assert_eq!(decoded.verify_pinned(&pin, NOW), Ok(content.clone()));
    let text = content.to_toml();
    assert!(text.contains("previous_keys"), "{text}");
    assert_eq!(Roster::from_toml(&text), Ok(content));
}

#[test]
fn format_two_without_a_rotation_is_refused() {
    let authority = AuthorityKey::generate(&mut rand::rng());
    let de = Identity::generate_from_os();
    let plain = roster(vec![member(&de, "DE")], &authority);
    let mut signed = SignedRoster::new(&plain).expect("valid");
    signed.version = SIGNED_ROSTER_VERSION_ROTATED;
    signed.body =
        codec::encode(&wire::RosterV2::from(&plain), MAX_SIGNED_ROSTER_BYTES).expect("encode v2");
    assert!(matches!(
        signed.roster_unverified(),
        Err(RosterError::InvalidText(reason)) if reason.contains("format 1")
    ));
}

#[test]
fn old_keys_are_believed_until_the_grace_ends_and_not_after() {
    let mut de = Identity::generate_from_os();
    let old_signature = de.sign(b"preserve");
    let old_key = de.signing_key();
    de.rotate(&mut rand::rng()).expect("rotate");
    let entry = rotated_member(&de, "DE");
    assert!(de.follow_roster(&entry.current_signing_key(), &[(old_key, GRACE_END)]));
    let new_signature = de.sign(b"preserve");
    assert_ne!(old_signature, new_signature);

    assert!(entry.verify_at(b"preserve", &new_signature, NOW));
    assert!(entry.verify_at(b"preserve", &old_signature, NOW));
    assert!(entry.verify_at(b"preserve", &old_signature, Timestamp(GRACE_END.0 - 1)));
    assert!(!entry.verify_at(b"preserve", &old_signature, GRACE_END));
    assert!(entry.verify_at(b"preserve", &new_signature, GRACE_END));
    assert!(!entry.verify_at(b"preservE", &new_signature, NOW));

    let authority = AuthorityKey::generate(&mut rand::rng());
    let content = roster(vec![entry], &authority);
    // A connection from the old PeerId is the same member during the grace only.
    assert_eq!(
        content
            .member_by_signing_key(&old_key, NOW)
            .map(|m| m.node_id),
        Some(de.node_id())
    );
    assert!(content.member_by_signing_key(&old_key, GRACE_END).is_none());
    assert_eq!(
        content
            .member_by_signing_key(&de.signing_key(), GRACE_END)
            .map(|m| m.node_id),
        Some(de.node_id())
    );
}

#[test]
fn a_signing_key_belongs_to_one_member_once() {
    let authority = AuthorityKey::generate(&mut rand::rng());
    let de = Identity::generate_from_os();
    let fr = Identity::generate_from_os();
    let mut thief = member(&fr, "FR");
    thief.previous_keys.push(PreviousKeys {
        signing_key: de.node_id(),
        encryption_key: EncryptionKey(de.encryption_public()),
        valid_until: GRACE_END,
    });
    let error = SignedRoster::new(&roster(vec![member(&de, "DE"), thief], &authority))
        .expect_err("a key listed for two members");
    assert!(
        matches!(error, RosterError::SharedSigningKey { .. }),
        "{error}"
    );

    let mut crowded = member(&de, "DE");
    crowded.signing_key = Some(Identity::generate_from_os().node_id());
    for _ in 0..=MAX_PREVIOUS_KEYS {
        let old = Identity::generate_from_os();
        crowded.previous_keys.push(PreviousKeys {
            signing_key: old.node_id(),
            encryption_key: EncryptionKey(old.encryption_public()),
            valid_until: GRACE_END,
        });
    }
    assert!(matches!(
        SignedRoster::new(&roster(vec![crowded], &authority)),
        Err(RosterError::TooMany {
            what: "previous_keys",
            ..
        })
    ));
}

#[test]
fn rotation_waits_for_the_roster_then_switches_and_forgets_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.key");
    let mut identity = Identity::generate_from_os();
    identity.write_key_file(&path).expect("write");
    let node_id = identity.node_id();
    let old_key = identity.signing_key();
    let old_encryption = identity.encryption_public();

    identity.rotate(&mut rand::rng()).expect("rotate");
    // Until the roster carries the new keys the node keeps signing with the old ones.
    assert_eq!(identity.signing_key(), old_key);
    assert_eq!(identity.encryption_public(), old_encryption);
    assert_ne!(identity.newest_signing_key(), old_key);
    identity.replace_key_file(&path).expect("replace");
    let text = std::fs::read_to_string(&path).expect("read text");
    assert!(text.contains(&format!("version = {KEY_FILE_VERSION_ROTATED}")));

    let mut reloaded = Identity::read_key_file(&path).expect("read rotated file");
    assert_eq!(reloaded.node_id(), node_id);
    assert_eq!(reloaded.key_pair_count(), 2);
    // Following a roster that still lists the old key keeps using it.
    reloaded.follow_roster(&old_key, &[]);
    assert_eq!(reloaded.signing_key(), old_key);
    assert_eq!(reloaded.decryption_keys_at(NOW).count(), 2);

    let new_key = reloaded.newest_signing_key();
    assert!(reloaded.follow_roster(&new_key, &[(old_key, GRACE_END)]));
    assert_eq!(reloaded.signing_key(), new_key);
    assert_eq!(reloaded.node_id(), node_id, "the node id never changes");
    assert_eq!(reloaded.decryption_keys_at(NOW).count(), 2);
    assert_eq!(reloaded.erase_expired(NOW), 0);
    reloaded.replace_key_file(&path).expect("replace");
    let text = std::fs::read_to_string(&path).expect("read text");
    assert!(text.contains("valid_until"), "{text}");

    assert_eq!(reloaded.decryption_keys_at(GRACE_END).count(), 1);
    assert_eq!(reloaded.erase_expired(GRACE_END), 1);
    reloaded.replace_key_file(&path).expect("replace");
    let last = Identity::read_key_file(&path).expect("read");
    assert_eq!(last.key_pair_count(), 1);
    assert_eq!(last.node_id(), node_id);
    assert_eq!(last.signing_key(), new_key);
}

#[test]
fn a_node_holds_a_bounded_number_of_key_pairs() {
    let mut identity = Identity::generate_from_os();
    let mut rotations = 0;
    while identity.rotate(&mut rand::rng()).is_ok() {
        rotations += 1;
        assert!(rotations < 100, "rotation is never refused");
    }
    assert_eq!(
        identity.key_pair_count(),
        crate::identity::MAX_HELD_KEY_PAIRS
    );
}

fn node_id_of(identity: &Identity) -> NodeId {
    identity.node_id()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the grace end and the time of judging, an old key's signature is believed
    /// exactly while `now < valid_until`; the current key always; the member never changes.
    #[test]
    fn grace_rule_holds(grace_ms in 0u64..30 * DAY_MS, at_ms in 0u64..60 * DAY_MS) {
        let mut identity = Identity::generate_from_os();
        let old_signature = identity.sign(b"msg");
        let old_key = identity.signing_key();
        identity.rotate(&mut rand::rng()).expect("rotate");
        let until = Timestamp(NOW.0 + grace_ms);
        let mut entry = rotated_member(&identity, "DE");
        entry.previous_keys[0].valid_until = until;
        identity.follow_roster(&entry.current_signing_key(), &[(old_key, until)]);
        let at = Timestamp(NOW.0 + at_ms);
        prop_assert_eq!(entry.verify_at(b"msg", &old_signature, at), at < until);
        prop_assert!(entry.verify_at(b"msg", &identity.sign(b"msg"), at));
        prop_assert_eq!(entry.has_signing_key_at(&old_key, at), at < until);
        prop_assert_eq!(identity.decryption_keys_at(at).count(), if at < until { 2 } else { 1 });
        prop_assert_eq!(entry.node_id, node_id_of(&identity));
    }
}
