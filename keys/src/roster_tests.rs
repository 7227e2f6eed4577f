//! Tests of the roster acceptance rules, one per rule in the list.

use crate::identity::{AuthorityKey, Identity};
use crate::roster::{Member, Role, Roster, RosterError, SignedRoster};
use crate::types::{CountryCode, EncryptionKey, Timestamp};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn now() -> Timestamp {
    Timestamp(1_795_000_000_000)
}

fn member(identity: &Identity, country: &str, role: Role, relays: Vec<crate::NodeId>) -> Member {
    Member {
        node_id: identity.node_id(),
        signing_key: None,
        previous_keys: Vec::new(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("{country} 24/7 point of contact"),
        role,
        encryption_key: EncryptionKey(identity.encryption_public()),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        relays,
        valid_from: Timestamp(now().0 - DAY_MS),
        valid_until: Timestamp(now().0 + 365 * DAY_MS),
        on_duty_contact: "+49 611 55-0".into(),
    }
}

struct Fixture {
    authorities: Vec<AuthorityKey>,
    roster: Roster,
}

fn fixture(threshold: u8) -> Fixture {
    let mut rng = rand::rng();
    let authorities: Vec<AuthorityKey> = (0..3).map(|_| AuthorityKey::generate(&mut rng)).collect();
    let relay = Identity::generate(&mut rng);
    let de = Identity::generate(&mut rng);
    let fr = Identity::generate(&mut rng);
    let roster = Roster {
        network: "test-net".into(),
        serial: 1,
        issued_at: now(),
        expires_at: Timestamp(now().0 + 30 * DAY_MS),
        threshold,
        authorities: authorities.iter().map(AuthorityKey::public).collect(),
        members: vec![
            member(&relay, "BE", Role::Relay, vec![]),
            member(&de, "DE", Role::PointOfContact, vec![relay.node_id()]),
            member(&fr, "FR", Role::PointOfContact, vec![relay.node_id()]),
        ],
    };
    Fixture {
        authorities,
        roster,
    }
}

fn signed_by(roster: &Roster, keys: &[&AuthorityKey], previous: Option<&Roster>) -> SignedRoster {
    let mut signed = SignedRoster::new(roster).expect("valid roster");
    for key in keys {
        signed.sign(key, previous).expect("sign");
    }
    signed
}

#[test]
fn k_of_n_round_trip_through_bytes() {
    let f = fixture(2);
    let signed = signed_by(&f.roster, &[&f.authorities[0], &f.authorities[2]], None);
    let bytes = signed.to_bytes().expect("encode");
    let decoded = SignedRoster::from_bytes(&bytes).expect("decode");
    let pin = f.roster.authority_set_fingerprint();
    assert_eq!(decoded.verify_pinned(&pin, now()), Ok(f.roster.clone()));
}

#[test]
fn signing_twice_gives_the_same_bytes() {
    let f = fixture(2);
    let a = signed_by(&f.roster, &[&f.authorities[0], &f.authorities[1]], None);
    let b = signed_by(
        &f.roster,
        &[&f.authorities[1], &f.authorities[0], &f.authorities[1]],
        None,
    );
    assert_eq!(a.to_bytes(), b.to_bytes());
}

#[test]
fn k_minus_one_signatures_rejected() {
    let f = fixture(2);
    let signed = signed_by(&f.roster, &[&f.authorities[0]], None);
    assert!(matches!(
        signed.verify_self(now()),
        Err(RosterError::NotEnoughSignatures {
            valid: 1,
            required: 2,
            ..
        })
    ));
}

#[test]
fn signature_by_non_authority_does_not_count() {
    let f = fixture(1);
    let outsider = AuthorityKey::generate(&mut rand::rng());
    let mut signed = SignedRoster::new(&f.roster).expect("valid");
    assert!(matches!(
        signed.sign(&outsider, None),
        Err(RosterError::NotAnAuthority(_))
    ));
    // Forge the entry by hand: a valid signature by a key outside the set.
    let mut message = crate::roster::ROSTER_SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(&signed.body);
    signed.signatures.push(crate::roster::RosterSignature {
        authority: outsider.public(),
        signature: crate::Signature(outsider.sign(&message)),
    });
    assert!(matches!(
        signed.verify_self(now()),
        Err(RosterError::NotEnoughSignatures {
            valid: 0,
            ignored: 1,
            ..
        })
    ));
}

#[test]
fn every_flipped_byte_is_rejected() {
    let f = fixture(2);
    let signed = signed_by(&f.roster, &[&f.authorities[0], &f.authorities[1]], None);
    let bytes = signed.to_bytes().expect("encode");
    let pin = f.roster.authority_set_fingerprint();
    for index in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut tampered = bytes.clone();
            tampered[index] ^= bit;
            let result =
                SignedRoster::from_bytes(&tampered).and_then(|s| s.verify_pinned(&pin, now()));
            assert!(
                result.is_err(),
                "flipping bit {bit:#x} of byte {index} was accepted"
            );
        }
    }
}

#[test]
fn rollback_and_same_serial_rejected() {
    let f = fixture(1);
    let mut older = f.roster.clone();
    older.serial = 0;
    let signed = signed_by(&older, &[&f.authorities[0]], None);
    assert!(matches!(
        signed.verify_update(&f.roster, now()),
        Err(RosterError::Rollback {
            held: 1,
            offered: 0
        })
    ));
    let same = signed_by(&f.roster, &[&f.authorities[0]], None);
    assert!(matches!(
        same.verify_update(&f.roster, now()),
        Err(RosterError::Rollback { .. })
    ));
    let mut newer = f.roster.clone();
    newer.serial = 2;
    let signed = signed_by(&newer, &[&f.authorities[0]], None);
    assert_eq!(signed.verify_update(&f.roster, now()), Ok(newer));
}

#[test]
fn expired_rejected() {
    let f = fixture(1);
    let signed = signed_by(&f.roster, &[&f.authorities[0]], None);
    let later = f.roster.expires_at;
    assert!(matches!(
        signed.verify_self(later),
        Err(RosterError::Expired { .. })
    ));
}

#[test]
fn authority_rotation_needs_k_of_the_old_set() {
    let f = fixture(2);
    let mut rng = rand::rng();
    let new_keys: Vec<AuthorityKey> = (0..2).map(|_| AuthorityKey::generate(&mut rng)).collect();
    let mut rotated = f.roster.clone();
    rotated.serial = 2;
    rotated.authorities = new_keys.iter().map(AuthorityKey::public).collect();
    rotated.threshold = 2;

    // Only the new set signs: rejected.
    let only_new = signed_by(&rotated, &[&new_keys[0], &new_keys[1]], Some(&f.roster));
    assert!(matches!(
        only_new.verify_update(&f.roster, now()),
        Err(RosterError::NotEnoughSignatures {
            valid: 0,
            required: 2,
            ..
        })
    ));
    // New set plus one old key: still short of k = 2 of the old set.
    let one_old = signed_by(
        &rotated,
        &[&new_keys[0], &new_keys[1], &f.authorities[0]],
        Some(&f.roster),
    );
    assert!(matches!(
        one_old.verify_update(&f.roster, now()),
        Err(RosterError::NotEnoughSignatures { valid: 1, .. })
    ));
    // k of the old set and k of the new set: accepted.
    let both = signed_by(
        &rotated,
        &[
            &new_keys[0],
            &new_keys[1],
            &f.authorities[0],
            &f.authorities[2],
        ],
        Some(&f.roster),
    );
    assert_eq!(both.verify_update(&f.roster, now()), Ok(rotated.clone()));
    // k of the old set alone, new set silent: rejected (the new set never agreed).
    let old_only = signed_by(
        &rotated,
        &[&f.authorities[0], &f.authorities[1]],
        Some(&f.roster),
    );
    assert!(matches!(
        old_only.verify_update(&f.roster, now()),
        Err(RosterError::NotEnoughSignatures { .. })
    ));
}

#[test]
fn duplicate_member_rejected() {
    let mut f = fixture(1);
    let copy = f.roster.members[1].clone();
    f.roster.members.push(copy);
    assert!(matches!(
        f.roster.validate(),
        Err(RosterError::DuplicateMember(_))
    ));
}

#[test]
fn two_points_of_contact_for_one_country_rejected() {
    let mut f = fixture(1);
    let other = Identity::generate_from_os();
    f.roster
        .members
        .push(member(&other, "DE", Role::PointOfContact, vec![]));
    assert!(matches!(
        f.roster.validate(),
        Err(RosterError::DuplicateCountry(_))
    ));
    // A central authority in the same country is fine.
    f.roster.members.last_mut().expect("pushed").role = Role::CentralAuthority;
    assert_eq!(f.roster.validate(), Ok(()));
}

#[test]
fn relay_must_exist_and_be_a_relay() {
    let mut f = fixture(1);
    let fr = f.roster.members[2].node_id;
    f.roster.members[1].relays = vec![fr];
    assert!(matches!(
        f.roster.validate(),
        Err(RosterError::NotARelay {
            role: Role::PointOfContact,
            ..
        })
    ));
    f.roster.members[1].relays = vec![Identity::generate_from_os().node_id()];
    assert!(matches!(
        f.roster.validate(),
        Err(RosterError::UnknownRelay { .. })
    ));
}

#[test]
fn pinned_set_mismatch_rejected() {
    let f = fixture(1);
    let other = fixture(1);
    let signed = signed_by(&f.roster, &[&f.authorities[0]], None);
    let wrong_pin = other.roster.authority_set_fingerprint();
    assert!(matches!(
        signed.verify_pinned(&wrong_pin, now()),
        Err(RosterError::AuthoritySetMismatch { .. })
    ));
}

#[test]
fn bad_threshold_rejected() {
    let mut f = fixture(1);
    f.roster.threshold = 4;
    assert!(matches!(
        f.roster.validate(),
        Err(RosterError::InvalidThreshold { .. })
    ));
    f.roster.threshold = 0;
    assert!(matches!(
        f.roster.validate(),
        Err(RosterError::InvalidThreshold { .. })
    ));
}

#[test]
fn toml_round_trip_and_lookups() {
    let f = fixture(1);
    let text = f.roster.to_toml();
    assert!(text.contains("country = \"DE\""), "{text}");
    let parsed = Roster::from_toml(&text).expect("parse");
    assert_eq!(parsed, f.roster);
    let de = parsed
        .by_country(CountryCode::parse("DE").expect("valid"))
        .expect("DE");
    assert_eq!(parsed.relays_for(&de.node_id).len(), 1);
    assert!(Roster::from_toml(&text.replace("\"DE\"", "\"XX\"")).is_err());
}

#[test]
fn unsupported_version_named() {
    let f = fixture(1);
    let mut bytes = signed_by(&f.roster, &[&f.authorities[0]], None)
        .to_bytes()
        .expect("encode");
    bytes[0] = 9;
    assert_eq!(
        SignedRoster::from_bytes(&bytes),
        Err(RosterError::UnsupportedVersion(9))
    );
}
