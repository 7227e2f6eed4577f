//! Tests of the revocation notice rules: k of the held roster's authorities, same network,
//! content limits, and a golden vector that pins the format.

use crate::identity::{AuthorityKey, Identity, NodeId};
use crate::revocation::{
    Revocation, RevocationError, SignedRevocation, MAX_REVOKED_PER_NOTICE,
    SIGNED_REVOCATION_VERSION,
};
use crate::roster::{Member, Role, Roster};
use crate::types::{CountryCode, EncryptionKey, Timestamp};

const DAY_MS: u64 = 24 * 3600 * 1000;
const NOW: Timestamp = Timestamp(1_795_000_000_000);

fn member(identity: &Identity, country: &str) -> Member {
    Member {
        node_id: identity.node_id(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("{country} 24/7 point of contact"),
        role: Role::PointOfContact,
        encryption_key: EncryptionKey(identity.encryption_public()),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        relays: vec![],
        valid_from: Timestamp(NOW.0 - DAY_MS),
        valid_until: Timestamp(NOW.0 + 365 * DAY_MS),
        on_duty_contact: "+49 611 55-0".into(),
        signing_key: None,
        previous_keys: Vec::new(),
    }
}

struct Fixture {
    authorities: Vec<AuthorityKey>,
    roster: Roster,
    de: Identity,
}

fn fixture(threshold: u8) -> Fixture {
    let mut rng = rand::rng();
    let authorities: Vec<AuthorityKey> = (0..3).map(|_| AuthorityKey::generate(&mut rng)).collect();
    let de = Identity::generate(&mut rng);
    let fr = Identity::generate(&mut rng);
    let roster = Roster {
        network: "test-net".into(),
        serial: 1,
        issued_at: NOW,
        expires_at: Timestamp(NOW.0 + 30 * DAY_MS),
        threshold,
        authorities: authorities.iter().map(AuthorityKey::public).collect(),
        members: vec![member(&de, "DE"), member(&fr, "FR")],
    };
    Fixture {
        authorities,
        roster,
        de,
    }
}

fn notice(network: &str, nodes: Vec<NodeId>) -> Revocation {
    Revocation {
        network: network.into(),
        serial: 7,
        issued_at: NOW,
        nodes,
        keys: vec![],
        reason: "key file copied from a decommissioned server".into(),
    }
}

fn signed(revocation: &Revocation, roster: &Roster, keys: &[&AuthorityKey]) -> SignedRevocation {
    let mut signed = SignedRevocation::new(revocation).expect("valid notice");
    for key in keys {
        signed.sign(key, roster).expect("sign");
    }
    signed
}

#[test]
fn k_signatures_verify_through_bytes_and_name_the_member() {
    let f = fixture(2);
    let revocation = notice("test-net", vec![f.de.node_id()]);
    let bytes = signed(
        &revocation,
        &f.roster,
        &[&f.authorities[0], &f.authorities[2]],
    )
    .to_bytes()
    .expect("encode");
    let verified = SignedRevocation::from_bytes(&bytes)
        .expect("decode")
        .verify(&f.roster)
        .expect("verifies");
    assert_eq!(verified, revocation);
    assert!(verified.revokes(&f.roster.members[0]));
    assert!(!verified.revokes(&f.roster.members[1]));
}

#[test]
fn k_minus_one_signatures_are_refused() {
    let f = fixture(2);
    let revocation = notice("test-net", vec![f.de.node_id()]);
    let one = signed(&revocation, &f.roster, &[&f.authorities[1]]);
    assert_eq!(
        one.verify(&f.roster),
        Err(RevocationError::NotEnoughSignatures {
            valid: 1,
            required: 2
        })
    );
}

#[test]
fn a_notice_for_another_network_is_refused() {
    let f = fixture(1);
    let revocation = notice("other-net", vec![f.de.node_id()]);
    let notice = signed(&revocation, &f.roster, &[&f.authorities[0]]);
    assert!(matches!(
        notice.verify(&f.roster),
        Err(RevocationError::WrongNetwork { .. })
    ));
}

#[test]
fn outsiders_cannot_sign_and_forged_signatures_fail() {
    let f = fixture(1);
    let outsider = AuthorityKey::generate(&mut rand::rng());
    let revocation = notice("test-net", vec![f.de.node_id()]);
    let mut notice = SignedRevocation::new(&revocation).expect("valid");
    assert!(matches!(
        notice.sign(&outsider, &f.roster),
        Err(RevocationError::NotAnAuthority(_))
    ));
    notice.sign(&f.authorities[0], &f.roster).expect("sign");
    notice.body[3] ^= 1;
    assert!(notice.verify(&f.roster).is_err());
}

#[test]
fn a_key_revocation_revokes_the_member_holding_it() {
    let f = fixture(1);
    let mut revocation = notice("test-net", vec![]);
    revocation.keys = vec![f.de.encryption_public()];
    assert!(revocation.revokes(&f.roster.members[0]));
    assert!(!revocation.revokes(&f.roster.members[1]));
}

#[test]
fn content_limits_are_enforced() {
    let f = fixture(1);
    let empty = notice("test-net", vec![]);
    assert!(matches!(
        SignedRevocation::new(&empty),
        Err(RevocationError::Invalid(_))
    ));
    let too_many = notice("test-net", vec![f.de.node_id(); MAX_REVOKED_PER_NOTICE + 1]);
    assert!(matches!(
        SignedRevocation::new(&too_many),
        Err(RevocationError::Invalid(_))
    ));
    let mut no_reason = notice("test-net", vec![f.de.node_id()]);
    no_reason.reason = "  ".into();
    assert!(SignedRevocation::new(&no_reason).is_err());
    let mut zero = notice("test-net", vec![f.de.node_id()]);
    zero.serial = 0;
    assert!(SignedRevocation::new(&zero).is_err());
    assert!(matches!(
        SignedRevocation::from_bytes(&[SIGNED_REVOCATION_VERSION + 1, 0, 0]),
        Err(RevocationError::UnsupportedVersion(_))
    ));
    let huge = vec![SIGNED_REVOCATION_VERSION; 64 * 1024];
    assert!(SignedRevocation::from_bytes(&huge).is_err());
}

/// Pins the wire format of an (unsigned) notice: version, body length, body fields in order,
/// signature count. A change here breaks every node's stored notices and peers' decoding.
#[test]
fn golden_unsigned_notice_bytes() {
    let revocation = Revocation {
        network: "n".into(),
        serial: 2,
        issued_at: Timestamp(3),
        nodes: vec![NodeId([4; 32])],
        keys: vec![[5; 32]],
        reason: "r".into(),
    };
    let bytes = SignedRevocation::new(&revocation)
        .expect("valid")
        .to_bytes()
        .expect("encode");
    let mut body = Vec::new();
    body.extend_from_slice(&1u64.to_le_bytes());
    body.push(b'n');
    body.extend_from_slice(&2u64.to_le_bytes());
    body.extend_from_slice(&3u64.to_le_bytes());
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&[4; 32]);
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&[5; 32]);
    body.extend_from_slice(&1u64.to_le_bytes());
    body.push(b'r');
    let mut expected = vec![SIGNED_REVOCATION_VERSION];
    expected.extend_from_slice(&(body.len() as u64).to_le_bytes());
    expected.extend_from_slice(&body);
    expected.extend_from_slice(&0u64.to_le_bytes());
    assert_eq!(hex::encode(&bytes), hex::encode(&expected));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any subset of the three authorities, plus optionally a signature by a key outside the
        /// roster (valid for its own key) and a tampered one: the notice verifies exactly when
        /// nothing is tampered and at least k roster authorities signed; an outsider never counts.
        #[test]
        fn a_notice_verifies_only_with_k_authority_signatures(
            threshold in 1u8..=3,
            signers in proptest::collection::btree_set(0usize..3, 0..=3),
            outsider in any::<bool>(),
            tamper in any::<bool>(),
        ) {
            let f = fixture(threshold);
            let revocation = notice("test-net", vec![f.de.node_id()]);
            let keys: Vec<&AuthorityKey> = signers.iter().map(|index| &f.authorities[*index]).collect();
            let mut notice = signed(&revocation, &f.roster, &keys);
            if outsider {
                let stranger = AuthorityKey::generate(&mut rand::rng());
                let mut theirs = f.roster.clone();
                theirs.authorities.push(stranger.public());
                notice.sign(&stranger, &theirs).expect("signs for its own roster");
            }
            let tampered = tamper && !notice.signatures.is_empty();
            if tampered {
                notice.signatures[0].signature.0[0] ^= 1;
            }
            let through_bytes = SignedRevocation::from_bytes(&notice.to_bytes().expect("encode"))
                .expect("decode");
            let result = through_bytes.verify(&f.roster);
            let enough = signers.len() >= usize::from(threshold);
            prop_assert_eq!(result.is_ok(), enough && !tampered, "{:?}", result);
            if !tampered && !enough {
                prop_assert_eq!(
                    result,
                    Err(RevocationError::NotEnoughSignatures {
                        valid: signers.len(),
                        required: usize::from(threshold),
                    })
                );
            }
        }

        /// A notice revokes a member exactly when it names its node id, node key or encryption
        /// key, and nobody else.
        #[test]
        fn a_notice_revokes_exactly_whom_it_names(
            by_node in any::<bool>(),
            by_encryption_key in any::<bool>(),
        ) {
            let f = fixture(1);
            let target = &f.roster.members[0];
            let other = &f.roster.members[1];
            let mut revocation = notice("test-net", Vec::new());
            if by_node {
                revocation.nodes.push(target.node_id);
            }
            if by_encryption_key || !by_node {
                revocation.keys.push(target.encryption_key.0);
            }
            prop_assert!(revocation.revokes(target));
            prop_assert!(!revocation.revokes(other));
        }
    }
}
