//! Wire-level integration tests: tampering, addressing and time rules, golden byte vectors,
//! property tests of the decoders, and regression tests for what fuzzing found.
//!
//! # Golden vectors
//!
//! `tests/golden/*.hex` pin the exact bytes of one envelope per payload kind, a delivery receipt, a
//! custody receipt, a batch, each example payload and the signed roster, all built from fixed seeds
//! (deterministic identities, a seeded RNG for every ephemeral key, fixed times and message ids).
//! Ed25519 signatures are deterministic and so are X25519 and ChaCha20-Poly1305 given the seeded
//! RNG, so the bytes are stable: any difference means the wire format changed.
//!
//! A missing vector file is an error, unless the environment variable `QF_BLESS=1` is set: then
//! the test writes it. To re-bless after a deliberate format change, delete the files and run
//!
//! ```text
//! QF_BLESS=1 cargo test -p quickfreeze-proto --test wire golden
//! ```
//!
//! A file that exists is never overwritten: a mismatch always fails. `fuzz/seed-corpus.sh`
//! turns these files into the fuzzers' seed corpora.

use std::path::PathBuf;
use std::sync::LazyLock;

use proptest::collection::vec;
use proptest::prelude::*;
use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{
    AuthorityKey, CountryCode, Digest32, EncryptionKey, Identity, NodeId, Signature, SignedRoster,
    Timestamp,
};
use quickfreeze_proto::core::{Core, CoreConfig, MemoryStore, Store};
use quickfreeze_proto::envelope::{
    digest_bytes, open, seal, seal_bytes, verify_outer, AcceptPolicy, Envelope, EnvelopeHeader,
    OpenError, SealParams, ENVELOPE_VERSION, MAX_ENVELOPE_BYTES,
};
use quickfreeze_proto::frame::{Batch, Frame, MAX_FRAMES_PER_BATCH};
use quickfreeze_proto::payload::{
    example_emergency, example_free_text, example_preservation, example_status,
    example_traffic_data, EvidentialUse, Payload, Status, StatusUpdate,
};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptError, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

// ---------------------------------------------------------------------------------------------
// Fixture: a small roster of deterministic identities
// ---------------------------------------------------------------------------------------------

const START: Timestamp = Timestamp(1_795_000_000_000);
const HOUR_MS: u64 = 3600 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// When the tests open things: an hour after every envelope was created.
const NOW: Timestamp = Timestamp(START.0 + HOUR_MS);

/// The relay serving B and C.
const RELAY: u8 = 0;
/// The sender (point of contact, BE).
const A: u8 = 1;
/// The recipient (point of contact, DE).
const B: u8 = 2;
/// A third point of contact (FR).
const C: u8 = 3;
/// A relay in the roster that serves nobody.
const IDLE_RELAY: u8 = 4;
/// A point of contact (JP) whose membership starts ten days after `START`.
const LATE: u8 = 5;
/// A point of contact (US) whose membership ended an hour before `START`.
const RETIRED: u8 = 6;
/// Never in the roster.
const OUTSIDER: u8 = 9;

fn generate_identity(index: u8) -> Identity {
    let mut seed = [0u8; 32];
    seed[0] = index;
    seed[1] = 0x77;
    Identity::generate(&mut ChaCha20Rng::from_seed(seed))
}

/// Identities 0..10, generated once (key generation costs more than a failed open).
static IDENTITIES: LazyLock<Vec<Identity>> =
    LazyLock::new(|| (0..10).map(generate_identity).collect());

fn identity(index: u8) -> &'static Identity {
    &IDENTITIES[usize::from(index)]
}

fn id(index: u8) -> NodeId {
    identity(index).node_id()
}

fn member(index: u8, country: &str, role: Role, relays: &[u8]) -> Member {
    let who = identity(index);
    Member {
        node_id: who.node_id(),
        signing_key: None,
        previous_keys: Vec::new(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("wire test node {index}"),
        role,
        encryption_key: EncryptionKey(who.encryption_public()),
        addresses: vec![format!("/ip4/127.0.0.1/tcp/{}", 4000 + u16::from(index))],
        relays: relays.iter().map(|relay| id(*relay)).collect(),
        valid_from: Timestamp(START.0 - 30 * DAY_MS),
        valid_until: Timestamp(START.0 + 365 * DAY_MS),
        on_duty_contact: "+00 555 0100".into(),
    }
}

struct World {
    roster: Roster,
    signed_roster: Vec<u8>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let mut late = member(LATE, "JP", Role::PointOfContact, &[]);
    late.valid_from = Timestamp(START.0 + 10 * DAY_MS);
    let mut retired = member(RETIRED, "US", Role::PointOfContact, &[]);
    retired.valid_until = Timestamp(START.0 - HOUR_MS);
    let roster = Roster {
        network: "wire-tests".into(),
        serial: 7,
        issued_at: Timestamp(START.0 - DAY_MS),
        expires_at: Timestamp(START.0 + 90 * DAY_MS),
        threshold: 1,
        authorities: vec![authority().public()],
        members: vec![
            member(RELAY, "NL", Role::Relay, &[]),
            member(A, "BE", Role::PointOfContact, &[]),
            member(B, "DE", Role::PointOfContact, &[RELAY]),
            member(C, "FR", Role::PointOfContact, &[RELAY]),
            member(IDLE_RELAY, "NL", Role::Relay, &[]),
            late,
            retired,
        ],
    };
    let mut signed = SignedRoster::new(&roster).expect("valid roster");
    signed.sign(&authority(), None).expect("sign");
    World {
        signed_roster: signed.to_bytes().expect("encode"),
        roster,
    }
});

fn authority() -> AuthorityKey {
    AuthorityKey::generate(&mut ChaCha20Rng::from_seed([0xAA; 32]))
}

fn roster() -> &'static Roster {
    &WORLD.roster
}

fn roster_member(index: u8) -> &'static Member {
    roster().member(&id(index)).expect("in roster")
}

fn policy() -> AcceptPolicy {
    AcceptPolicy::default()
}

fn params(message_byte: u8, priority: Priority) -> SealParams {
    SealParams {
        message_id: MessageId([message_byte; 16]),
        created_at: START,
        expires_at: Timestamp(START.0 + 3 * DAY_MS),
        priority,
    }
}

/// A seeded RNG for ephemeral keys: each envelope gets its own so vectors are independent.
fn rng(seed_byte: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed_byte; 32])
}

fn seal_from(
    sender: u8,
    recipient: &Member,
    payload: &Payload,
    params: SealParams,
    seed: u8,
) -> Envelope {
    seal(identity(sender), recipient, payload, params, &mut rng(seed)).expect("seal")
}

fn preservation_envelope() -> Envelope {
    let payload = Payload::Preservation(example_preservation());
    seal_from(
        A,
        roster_member(B),
        &payload,
        params(0x11, payload.priority()),
        0x11,
    )
}

fn open_by(index: u8, envelope: &Envelope) -> Result<Payload, OpenError> {
    open(identity(index), roster(), envelope, NOW, &policy()).map(|(_, payload)| payload)
}

fn bytes_open_by(index: u8, bytes: &[u8]) -> Result<Payload, OpenError> {
    open_by(index, &Envelope::from_bytes(bytes)?)
}

fn delivered_receipt(envelope: &Envelope) -> Receipt {
    Receipt::sign(
        identity(B),
        ReceiptBody {
            message_id: envelope.header.message_id,
            envelope_digest: envelope.digest(),
            sender: envelope.header.sender,
            recipient: envelope.header.recipient,
            signer: id(B),
            received_at: NOW,
            kind: ReceiptKind::Delivered,
        },
    )
}

fn custody_receipt(envelope: &Envelope, relay: u8) -> Receipt {
    Receipt::sign(
        identity(relay),
        ReceiptBody {
            message_id: envelope.header.message_id,
            envelope_digest: envelope.digest(),
            sender: envelope.header.sender,
            recipient: envelope.header.recipient,
            signer: id(relay),
            received_at: NOW,
            kind: ReceiptKind::Custody,
        },
    )
}

fn verify_for_envelope(receipt: &Receipt, envelope: &Envelope) -> Result<(), ReceiptError> {
    receipt.verify_for(
        roster(),
        NOW,
        &envelope.header.message_id,
        &envelope.header.sender,
        &envelope.header.recipient,
        &envelope.digest(),
    )
}

/// Re-signs a (modified) header and ciphertext with `signer`'s key, as an attacker holding that
/// key could.
fn resign(envelope: &mut Envelope, signer: u8) {
    let header = quickfreeze_keys::codec::encode(&envelope.header, 1024).expect("header");
    let mut message = quickfreeze_proto::envelope::ENVELOPE_SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(&(header.len() as u64).to_le_bytes());
    message.extend_from_slice(&header);
    message.extend_from_slice(&envelope.ciphertext);
    envelope.signature = Signature(identity(signer).sign(&message));
}

// ---------------------------------------------------------------------------------------------
// Tampering: every single-bit flip of an encoded envelope or receipt is refused
// ---------------------------------------------------------------------------------------------

/// Flip masks tried at every byte: the lowest and the highest bit.
const FLIPS: [u8; 2] = [0x01, 0x80];

#[test]
fn every_bit_flip_of_an_envelope_is_refused() {
    let envelope = preservation_envelope();
    let bytes = envelope.to_bytes();
    assert!(
        bytes.len() > 1500,
        "a realistic request: {} bytes",
        bytes.len()
    );
    assert_eq!(
        bytes_open_by(B, &bytes).expect("untampered opens"),
        Payload::Preservation(example_preservation())
    );
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for index in 0..bytes.len() {
        for mask in FLIPS {
            let mut tampered = bytes.clone();
            tampered[index] ^= mask;
            let result = std::panic::catch_unwind(|| bytes_open_by(B, &tampered));
            match result {
                Err(_) => panic!("open panicked on a flip of {mask:#04x} at byte {index}"),
                Ok(Ok(_)) => panic!("a flip of {mask:#04x} at byte {index} still opened"),
                Ok(Err(error)) => {
                    let kind = format!("{error:?}");
                    let kind = kind.split(['(', ' ', '{']).next().unwrap_or("").to_string();
                    *outcomes.entry(kind).or_default() += 1;
                }
            }
        }
    }
    // Every region of the encoding was hit: the version byte, decoding, signature, lifetime.
    assert!(outcomes.contains_key("UnsupportedVersion"), "{outcomes:?}");
    assert!(outcomes.contains_key("Malformed"), "{outcomes:?}");
    assert!(outcomes.contains_key("BadSignature"), "{outcomes:?}");
    eprintln!(
        "{} flips of {} bytes refused: {outcomes:?}",
        2 * bytes.len(),
        bytes.len()
    );
}

#[test]
fn every_bit_flip_of_a_receipt_is_refused() {
    let envelope = preservation_envelope();
    for receipt in [
        delivered_receipt(&envelope),
        custody_receipt(&envelope, RELAY),
    ] {
        let bytes = receipt.to_bytes();
        verify_for_envelope(&Receipt::from_bytes(&bytes).expect("decode"), &envelope)
            .expect("untampered verifies");
        for index in 0..bytes.len() {
            for mask in FLIPS {
                let mut tampered = bytes.clone();
                tampered[index] ^= mask;
                let result = std::panic::catch_unwind(|| {
                    Receipt::from_bytes(&tampered)
                        .and_then(|receipt| verify_for_envelope(&receipt, &envelope))
                });
                match result {
                    Err(_) => panic!("receipt check panicked on {mask:#04x} at byte {index}"),
                    Ok(Ok(())) => panic!("receipt flipped {mask:#04x} at byte {index} verified"),
                    Ok(Err(_)) => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Addressing, membership and time
// ---------------------------------------------------------------------------------------------

#[test]
fn sealed_for_b_cannot_be_opened_by_c() {
    let envelope = preservation_envelope();
    assert_eq!(open_by(C, &envelope), Err(OpenError::NotForMe(id(B))));
    assert_eq!(open_by(A, &envelope), Err(OpenError::NotForMe(id(B))));
}

#[test]
fn re_addressing_breaks_the_signature_and_cannot_be_re_signed() {
    let envelope = preservation_envelope();
    // A relay or B changes the recipient to C and hands it to C.
    let mut readdressed = envelope.clone();
    readdressed.header.recipient = id(C);
    assert_eq!(
        open_by(C, &readdressed),
        Err(OpenError::BadSignature(id(A)))
    );
    // Re-signing as A needs A's key: every other key gives a signature that does not verify.
    for forger in [B, C, RELAY, OUTSIDER] {
        let mut forged = readdressed.clone();
        resign(&mut forged, forger);
        assert_eq!(
            open_by(C, &forged),
            Err(OpenError::BadSignature(id(A))),
            "forged by {forger}"
        );
    }
    // B can claim the message as its own and send it on to C, but C cannot decrypt it: the
    // ciphertext was sealed to B's key and bound to the original header.
    let mut passed_on = readdressed.clone();
    passed_on.header.sender = id(B);
    resign(&mut passed_on, B);
    assert_eq!(open_by(C, &passed_on), Err(OpenError::DecryptionFailed));
    // Swapping in a fresh ephemeral key does not help either.
    passed_on.header.ephemeral_key = EncryptionKey(identity(C).encryption_public());
    resign(&mut passed_on, B);
    assert_eq!(open_by(C, &passed_on), Err(OpenError::DecryptionFailed));
}

#[test]
fn expired_envelopes_are_refused() {
    let envelope = preservation_envelope();
    let expires_at = envelope.header.expires_at;
    let b = identity(B);
    let at = |now: Timestamp| open(b, roster(), &envelope, now, &policy()).map(|_| ());
    assert_eq!(at(Timestamp(expires_at.0 - 1)), Ok(()));
    assert_eq!(at(expires_at), Err(OpenError::Expired(expires_at)));
    assert_eq!(
        at(expires_at.plus_ms(1)),
        Err(OpenError::Expired(expires_at))
    );
    assert!(OpenError::Expired(expires_at).is_permanent());
}

#[test]
fn envelopes_from_the_future_are_refused_but_may_be_retried() {
    let skew = policy().max_clock_skew_ms;
    let payload = Payload::FreeText(example_free_text());
    let created_at = NOW.plus_ms(skew + 1);
    let mut sealed_params = params(0x21, Priority::Routine);
    sealed_params.created_at = created_at;
    sealed_params.expires_at = created_at.plus_ms(DAY_MS);
    let envelope = seal_from(A, roster_member(B), &payload, sealed_params, 2);
    let error = open_by(B, &envelope).expect_err("from the future");
    assert_eq!(
        error,
        OpenError::FromTheFuture {
            created_at,
            max_skew_ms: skew
        }
    );
    assert!(!error.is_permanent());
    // Exactly at the skew bound it is accepted.
    sealed_params.created_at = NOW.plus_ms(skew);
    let envelope = seal_from(A, roster_member(B), &payload, sealed_params, 3);
    assert_eq!(open_by(B, &envelope), Ok(payload));
}

#[test]
fn impossible_lifetimes_are_refused() {
    let payload = Payload::FreeText(example_free_text());
    let mut backwards = params(0x22, Priority::Routine);
    backwards.expires_at = backwards.created_at;
    let envelope = seal_from(A, roster_member(B), &payload, backwards, 4);
    assert_eq!(open_by(B, &envelope), Err(OpenError::InvalidLifetime));
    let mut too_long = params(0x23, Priority::Routine);
    too_long.expires_at = too_long.created_at.plus_ms(policy().max_lifetime_ms + 1);
    let envelope = seal_from(A, roster_member(B), &payload, too_long, 5);
    assert_eq!(open_by(B, &envelope), Err(OpenError::InvalidLifetime));
}

#[test]
fn unknown_sender_is_refused() {
    let payload = Payload::FreeText(example_free_text());
    let envelope = seal_from(
        OUTSIDER,
        roster_member(B),
        &payload,
        params(0x24, Priority::Routine),
        6,
    );
    assert_eq!(
        open_by(B, &envelope),
        Err(OpenError::UnknownSender(id(OUTSIDER)))
    );
    assert_eq!(
        verify_outer(roster(), &envelope, NOW, &policy()).map(|member| member.node_id),
        Err(OpenError::UnknownSender(id(OUTSIDER)))
    );
}

#[test]
fn unknown_recipient_is_refused() {
    let payload = Payload::FreeText(example_free_text());
    let outsider = member(OUTSIDER, "CA", Role::PointOfContact, &[]);
    let envelope = seal_from(A, &outsider, &payload, params(0x25, Priority::Routine), 7);
    assert_eq!(
        verify_outer(roster(), &envelope, NOW, &policy()).map(|member| member.node_id),
        Err(OpenError::UnknownRecipient(id(OUTSIDER)))
    );
    assert_eq!(
        open(identity(OUTSIDER), roster(), &envelope, NOW, &policy()).map(|_| ()),
        Err(OpenError::UnknownRecipient(id(OUTSIDER)))
    );
}

#[test]
fn sender_outside_its_validity_window_is_refused() {
    let payload = Payload::FreeText(example_free_text());
    // Not valid yet.
    let envelope = seal_from(
        LATE,
        roster_member(B),
        &payload,
        params(0x26, Priority::Routine),
        8,
    );
    let error = open_by(B, &envelope).expect_err("not yet valid");
    assert_eq!(error, OpenError::SenderNotValid(id(LATE)));
    assert!(!error.is_permanent());
    // Ended before the message was created.
    let envelope = seal_from(
        RETIRED,
        roster_member(B),
        &payload,
        params(0x27, Priority::Routine),
        9,
    );
    assert_eq!(
        open_by(B, &envelope),
        Err(OpenError::SenderNotValid(id(RETIRED)))
    );
    // Relays carry mail but never author it.
    let envelope = seal_from(
        RELAY,
        roster_member(B),
        &payload,
        params(0x28, Priority::Routine),
        10,
    );
    assert_eq!(
        open_by(B, &envelope),
        Err(OpenError::SenderNotValid(id(RELAY)))
    );
}

/// Trust is judged now (invariant 7): the sender's window is checked when the envelope arrives,
/// not at the `created_at` the sender wrote, so a member whose `valid_until` has passed cannot be
/// believed again by back-dating `created_at` into its old window. Relays refuse it the same way.
#[test]
fn a_retired_member_cannot_send_by_back_dating() {
    let payload = Payload::FreeText(example_free_text());
    let mut backdated = params(0x29, Priority::Routine);
    backdated.created_at = Timestamp(START.0 - 2 * HOUR_MS);
    backdated.expires_at = Timestamp(START.0 + 3 * DAY_MS);
    let envelope = seal_from(RETIRED, roster_member(B), &payload, backdated, 11);
    assert!(!roster_member(RETIRED).is_valid_at(NOW));
    assert!(roster_member(RETIRED).is_valid_at(envelope.header.created_at));
    assert_eq!(
        open_by(B, &envelope),
        Err(OpenError::SenderNotValid(id(RETIRED)))
    );
    assert_eq!(
        verify_outer(roster(), &envelope, NOW, &policy()).map(|_| ()),
        Err(OpenError::SenderNotValid(id(RETIRED)))
    );
}

#[test]
fn relays_verify_without_a_secret_key_and_refuse_tampering() {
    let envelope = preservation_envelope();
    let sender = verify_outer(roster(), &envelope, NOW, &policy()).expect("valid outer");
    assert_eq!(sender.node_id, id(A));
    let mut tampered = envelope.clone();
    let middle = tampered.ciphertext.len() / 2;
    tampered.ciphertext[middle] ^= 1;
    assert_eq!(
        verify_outer(roster(), &tampered, NOW, &policy()).map(|_| ()),
        Err(OpenError::BadSignature(id(A)))
    );
    let mut bumped = envelope.clone();
    bumped.header.priority = Priority::Emergency;
    assert_eq!(
        verify_outer(roster(), &bumped, NOW, &policy()).map(|_| ()),
        Err(OpenError::BadSignature(id(A)))
    );
    let mut extended = envelope.clone();
    extended.header.expires_at = extended.header.expires_at.plus_ms(DAY_MS);
    assert_eq!(
        verify_outer(roster(), &extended, NOW, &policy()).map(|_| ()),
        Err(OpenError::BadSignature(id(A)))
    );
    let mut truncated = envelope.clone();
    truncated.ciphertext.pop();
    assert_eq!(
        verify_outer(roster(), &truncated, NOW, &policy()).map(|_| ()),
        Err(OpenError::BadSignature(id(A)))
    );
    let mut other_version = envelope;
    other_version.header.version = ENVELOPE_VERSION + 1;
    assert_eq!(
        verify_outer(roster(), &other_version, NOW, &policy()).map(|_| ()),
        Err(OpenError::UnsupportedVersion(ENVELOPE_VERSION + 1))
    );
}

#[test]
fn a_valid_signature_over_a_forged_ciphertext_does_not_decrypt() {
    // A (or anyone holding A's key) re-signs a modified ciphertext: the outer check passes, the
    // AEAD tag does not.
    let mut envelope = preservation_envelope();
    envelope.ciphertext[0] ^= 1;
    resign(&mut envelope, A);
    assert!(verify_outer(roster(), &envelope, NOW, &policy()).is_ok());
    assert_eq!(open_by(B, &envelope), Err(OpenError::DecryptionFailed));
}

/// The handling codes are inside the signed, encrypted payload: changing one condition in
/// transit (here "with consent" into "may be used as evidence") breaks the sender's signature,
/// and even an envelope re-signed by a key holder fails the AEAD tag; nobody on the path can
/// loosen the sender's conditions.
#[test]
fn a_changed_handling_code_breaks_the_signature() {
    let original = example_preservation();
    let mut loosened = original.clone();
    loosened.header.handling.evidential_use = EvidentialUse::MayBeUsedAsEvidence;
    let before = Payload::Preservation(original).to_bytes().expect("encode");
    let after = Payload::Preservation(loosened).to_bytes().expect("encode");
    assert_eq!(before.len(), after.len());
    let differing: Vec<usize> = (0..before.len())
        .filter(|&index| before[index] != after[index])
        .collect();
    assert_eq!(
        differing.len(),
        1,
        "one condition is one byte of the payload"
    );
    let at = differing[0];

    // The stream cipher maps plaintext byte `at` to ciphertext byte `at`: an attacker who knows
    // the layout flips exactly the bits that turn the condition into the looser one.
    let mut envelope = preservation_envelope();
    envelope.ciphertext[at] ^= before[at] ^ after[at];
    assert!(
        verify_outer(roster(), &envelope, NOW, &policy()).is_err(),
        "the sender's signature covers the ciphertext that holds the conditions"
    );
    assert!(open_by(B, &envelope).is_err());
    resign(&mut envelope, A);
    assert_eq!(open_by(B, &envelope), Err(OpenError::DecryptionFailed));
}

#[test]
fn receipts_from_the_wrong_signer_are_refused() {
    let envelope = preservation_envelope();
    assert_eq!(
        verify_for_envelope(&delivered_receipt(&envelope), &envelope),
        Ok(())
    );
    assert_eq!(
        verify_for_envelope(&custody_receipt(&envelope, RELAY), &envelope),
        Ok(())
    );
    // C signs a delivery receipt for B's message.
    let mut body = delivered_receipt(&envelope).body;
    body.signer = id(C);
    let by_c = Receipt::sign(identity(C), body.clone());
    assert_eq!(
        verify_for_envelope(&by_c, &envelope),
        Err(ReceiptError::WrongSigner {
            signer: id(C),
            recipient: id(B),
            kind: ReceiptKind::Delivered
        })
    );
    // C signs but claims B signed.
    body.signer = id(B);
    let claimed = Receipt::sign(identity(C), body);
    assert_eq!(
        verify_for_envelope(&claimed, &envelope),
        Err(ReceiptError::BadSignature(id(B)))
    );
    // A relay that does not serve B.
    assert_eq!(
        verify_for_envelope(&custody_receipt(&envelope, IDLE_RELAY), &envelope),
        Err(ReceiptError::WrongSigner {
            signer: id(IDLE_RELAY),
            recipient: id(B),
            kind: ReceiptKind::Custody
        })
    );
    // B itself cannot sign custody (it is not a relay), the relay cannot sign delivery.
    let mut body = custody_receipt(&envelope, RELAY).body;
    body.signer = id(B);
    assert!(matches!(
        verify_for_envelope(&Receipt::sign(identity(B), body), &envelope),
        Err(ReceiptError::WrongSigner { .. })
    ));
    let mut body = delivered_receipt(&envelope).body;
    body.signer = id(RELAY);
    assert!(matches!(
        verify_for_envelope(&Receipt::sign(identity(RELAY), body), &envelope),
        Err(ReceiptError::WrongSigner { .. })
    ));
    // Not a member at all.
    let mut body = delivered_receipt(&envelope).body;
    body.signer = id(OUTSIDER);
    body.recipient = id(OUTSIDER);
    assert_eq!(
        Receipt::sign(identity(OUTSIDER), body).verify(roster(), NOW),
        Err(ReceiptError::UnknownSigner(id(OUTSIDER)))
    );
}

#[test]
fn receipts_for_other_bytes_do_not_match() {
    let envelope = preservation_envelope();
    let receipt = delivered_receipt(&envelope);
    let check = |message_id: MessageId, sender: NodeId, digest: Digest32| {
        receipt.verify_for(roster(), NOW, &message_id, &sender, &id(B), &digest)
    };
    let digest = envelope.digest();
    assert_eq!(check(envelope.header.message_id, id(A), digest), Ok(()));
    assert_eq!(
        check(MessageId([0x12; 16]), id(A), digest),
        Err(ReceiptError::Mismatch)
    );
    assert_eq!(
        check(envelope.header.message_id, id(C), digest),
        Err(ReceiptError::Mismatch)
    );
    assert_eq!(
        check(envelope.header.message_id, id(A), digest_bytes(b"other")),
        Err(ReceiptError::Mismatch)
    );
    assert_eq!(
        receipt.verify_for(
            roster(),
            NOW,
            &envelope.header.message_id,
            &id(A),
            &id(C),
            &digest
        ),
        Err(ReceiptError::Mismatch)
    );
}

// ---------------------------------------------------------------------------------------------
// Golden vectors
// ---------------------------------------------------------------------------------------------

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(format!("{name}.hex"))
}

/// Compares `bytes` with the vector file `name`, writing it when missing and `QF_BLESS=1`.
/// Returns the bytes read from the file (so the caller decodes the file, not its own output).
fn check_golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = golden_path(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored = hex::decode(text.trim()).expect("golden file is hex");
            if stored != bytes {
                let first = stored
                    .iter()
                    .zip(bytes)
                    .position(|(left, right)| left != right)
                    .unwrap_or(stored.len().min(bytes.len()));
                panic!(
                    "{}: the encoding changed ({} bytes stored, {} bytes now, first difference at \
                     byte {first}). If the format change is deliberate, delete the file and run \
                     with QF_BLESS=1.",
                    path.display(),
                    stored.len(),
                    bytes.len()
                );
            }
            stored
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("QF_BLESS").as_deref() == Ok("1") {
                std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
                std::fs::write(&path, format!("{}\n", hex::encode(bytes))).expect("write");
                eprintln!("blessed {}", path.display());
                bytes.to_vec()
            } else {
                panic!(
                    "{} is missing; run with QF_BLESS=1 to create it",
                    path.display()
                );
            }
        }
        Err(error) => panic!("{}: {error}", path.display()),
    }
}

/// The five golden envelopes: (name, sender, recipient, payload, message byte, rng seed).
fn golden_envelopes() -> Vec<(&'static str, u8, u8, Payload, Envelope)> {
    let preservation_id = MessageId([0x11; 16]);
    let mut traffic = example_traffic_data();
    traffic.references = Some(preservation_id);
    let cases: Vec<(&str, u8, u8, Payload, u8)> = vec![
        (
            "preservation",
            A,
            B,
            Payload::Preservation(example_preservation()),
            0x11,
        ),
        ("traffic-data", B, A, Payload::TrafficData(traffic), 0x12),
        (
            "emergency",
            A,
            B,
            Payload::Emergency(example_emergency()),
            0x13,
        ),
        (
            "status",
            B,
            A,
            Payload::Status(example_status(preservation_id)),
            0x14,
        ),
        (
            "free-text",
            A,
            B,
            Payload::FreeText(example_free_text()),
            0x15,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, from, to, payload, message_byte)| {
            let envelope = seal_from(
                from,
                roster_member(to),
                &payload,
                params(message_byte, payload.priority()),
                message_byte,
            );
            (name, from, to, payload, envelope)
        })
        .collect()
}

fn golden_batch() -> Batch {
    let envelopes = golden_envelopes();
    let free_text = envelopes[4].4.clone();
    let preservation = &envelopes[0].4;
    Batch::new(
        7,
        vec![
            Frame::Deliver(free_text.clone()),
            Frame::Handoff(free_text),
            Frame::Receipt(delivered_receipt(preservation)),
            Frame::Ack(MessageId([0x11; 16])),
            Frame::refused(MessageId([0x12; 16]), true, "envelope expired"),
            Frame::RosterRequest,
            Frame::Roster(WORLD.signed_roster.clone()),
            Frame::Ignored,
        ],
    )
}

#[test]
fn golden_envelopes_are_stable_and_open() {
    for (name, _, to, payload, envelope) in golden_envelopes() {
        let stored = check_golden(&format!("envelope-{name}"), &envelope.to_bytes());
        let decoded = Envelope::from_bytes(&stored).expect("decode golden envelope");
        assert_eq!(decoded, envelope);
        assert_eq!(open_by(to, &decoded), Ok(payload), "{name}");
    }
}

#[test]
fn golden_receipts_are_stable_and_verify() {
    let envelope = preservation_envelope();
    let envelope_bytes = envelope.to_bytes();
    for (name, receipt) in [
        ("receipt-delivered", delivered_receipt(&envelope)),
        ("receipt-custody", custody_receipt(&envelope, RELAY)),
    ] {
        let stored = check_golden(name, &receipt.to_bytes());
        let decoded = Receipt::from_bytes(&stored).expect("decode golden receipt");
        assert_eq!(decoded, receipt);
        assert_eq!(
            decoded.verify_for(
                roster(),
                NOW,
                &MessageId([0x11; 16]),
                &id(A),
                &id(B),
                &digest_bytes(&envelope_bytes)
            ),
            Ok(()),
            "{name}"
        );
    }
}

#[test]
fn golden_batch_is_stable_and_decodes() {
    let batch = golden_batch();
    let stored = check_golden("batch", &batch.to_bytes().expect("encode"));
    let decoded = Batch::from_bytes(&stored).expect("decode golden batch");
    assert_eq!(decoded, batch);
    assert_eq!(decoded.to_bytes().expect("re-encode"), stored);
    for frame in &decoded.frames {
        match frame {
            Frame::Deliver(envelope) | Frame::Handoff(envelope) => {
                assert!(open_by(B, envelope).is_ok());
            }
            Frame::Receipt(receipt) => assert_eq!(receipt.verify(roster(), NOW), Ok(())),
            Frame::Roster(bytes) => {
                let signed = SignedRoster::from_bytes(bytes).expect("roster");
                assert_eq!(signed.verify_self(NOW).as_ref(), Ok(roster()));
            }
            _ => {}
        }
    }
}

#[test]
fn golden_payloads_and_roster_are_stable() {
    for (name, _, _, payload, _) in golden_envelopes() {
        let stored = check_golden(
            &format!("payload-{name}"),
            &payload.to_bytes().expect("encode"),
        );
        let decoded = Payload::from_bytes(&stored).expect("decode golden payload");
        assert_eq!(decoded, payload);
        assert_eq!(decoded.validate(), Ok(()), "{name}");
    }
    let stored = check_golden("signed-roster", &WORLD.signed_roster);
    let signed = SignedRoster::from_bytes(&stored).expect("decode golden roster");
    assert_eq!(signed.verify_self(NOW).as_ref(), Ok(roster()));
}

#[test]
fn sealing_is_deterministic_given_the_rng_and_fresh_otherwise() {
    let payload = Payload::FreeText(example_free_text());
    let once = seal_from(
        A,
        roster_member(B),
        &payload,
        params(1, Priority::Routine),
        42,
    );
    let twice = seal_from(
        A,
        roster_member(B),
        &payload,
        params(1, Priority::Routine),
        42,
    );
    assert_eq!(once.to_bytes(), twice.to_bytes());
    let other = seal_from(
        A,
        roster_member(B),
        &payload,
        params(1, Priority::Routine),
        43,
    );
    assert_ne!(once.header.ephemeral_key, other.header.ephemeral_key);
    assert_ne!(once.ciphertext, other.ciphertext);
}

// ---------------------------------------------------------------------------------------------
// Property tests: decoders never panic, valid batches round-trip
// ---------------------------------------------------------------------------------------------

static GOLDEN_BATCH_BYTES: LazyLock<Vec<u8>> =
    LazyLock::new(|| golden_batch().to_bytes().expect("encode"));
static ENVELOPE_BYTES: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let payload = Payload::FreeText(example_free_text());
    seal_from(
        A,
        roster_member(B),
        &payload,
        params(0x31, Priority::Routine),
        12,
    )
    .to_bytes()
});
static RECEIPT_BYTES: LazyLock<Vec<u8>> =
    LazyLock::new(|| delivered_receipt(&preservation_envelope()).to_bytes());

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Xor(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
    /// Overwrite 8 bytes with a little-endian u64 (hits length prefixes and timestamps).
    Word(prop::sample::Index, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Xor(at, mask)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set(at, value)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::Insert(at, value)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => (any::<prop::sample::Index>(), prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 32), any::<u64>()])
            .prop_map(|(at, word)| Mutation::Word(at, word)),
    ]
}

fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            Mutation::Xor(at, mask) => {
                let index = at.index(bytes.len());
                bytes[index] ^= mask;
            }
            Mutation::Set(at, value) => {
                let index = at.index(bytes.len());
                bytes[index] = *value;
            }
            Mutation::Insert(at, value) => {
                let index = at.index(bytes.len() + 1);
                bytes.insert(index, *value);
            }
            Mutation::Remove(at) => {
                let index = at.index(bytes.len());
                bytes.remove(index);
            }
            Mutation::Truncate(at) => {
                let index = at.index(bytes.len());
                bytes.truncate(index);
            }
            Mutation::Word(at, word) => {
                let index = at.index(bytes.len());
                for (offset, byte) in word.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(index + offset) {
                        *slot = *byte;
                    }
                }
            }
        }
    }
    bytes
}

fn arb_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(MessageId)
}

fn arb_node() -> impl Strategy<Value = NodeId> {
    prop_oneof![(0u8..8).prop_map(id), any::<[u8; 32]>().prop_map(NodeId),]
}

fn arb_priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Routine),
        Just(Priority::Urgent),
        Just(Priority::Emergency)
    ]
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        (arb_id(), arb_node(), arb_node(), any::<u64>(), any::<u64>()),
        (arb_priority(), any::<[u8; 32]>(), vec(any::<u8>(), 0..300)),
        (any::<[u8; 32]>(), any::<[u8; 32]>()),
    )
        .prop_map(
            |(
                (message_id, sender, recipient, created, expires),
                (priority, ephemeral, ciphertext),
                (sig_low, sig_high),
            )| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&sig_low);
                signature[32..].copy_from_slice(&sig_high);
                Envelope {
                    header: EnvelopeHeader {
                        version: ENVELOPE_VERSION,
                        message_id,
                        sender,
                        recipient,
                        created_at: Timestamp(created),
                        expires_at: Timestamp(expires),
                        priority,
                        ephemeral_key: EncryptionKey(ephemeral),
                    },
                    ciphertext,
                    signature: Signature(signature),
                }
            },
        )
}

fn arb_receipt() -> impl Strategy<Value = Receipt> {
    (
        (
            arb_id(),
            any::<[u8; 32]>(),
            arb_node(),
            arb_node(),
            arb_node(),
        ),
        (
            any::<u64>(),
            any::<bool>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        ),
    )
        .prop_map(
            |((message_id, digest, sender, recipient, signer), (at, custody, low, high))| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&low);
                signature[32..].copy_from_slice(&high);
                Receipt {
                    body: ReceiptBody {
                        message_id,
                        envelope_digest: Digest32(digest),
                        sender,
                        recipient,
                        signer,
                        received_at: Timestamp(at),
                        kind: if custody {
                            ReceiptKind::Custody
                        } else {
                            ReceiptKind::Delivered
                        },
                    },
                    signature: Signature(signature),
                }
            },
        )
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        arb_envelope().prop_map(Frame::Deliver),
        arb_envelope().prop_map(Frame::Handoff),
        arb_receipt().prop_map(Frame::Receipt),
        arb_id().prop_map(Frame::Ack),
        (arb_id(), any::<bool>(), ".{0,80}").prop_map(|(message_id, permanent, reason)| {
            Frame::Refused {
                message_id,
                permanent,
                reason,
            }
        }),
        Just(Frame::RosterRequest),
        vec(any::<u8>(), 0..200).prop_map(Frame::Roster),
        Just(Frame::Ignored),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn batch_decoding_arbitrary_bytes_never_panics(
        versioned in any::<bool>(),
        bytes in vec(any::<u8>(), 0..2048),
    ) {
        let mut input = bytes;
        if versioned {
            input.insert(0, 1);
        }
        if let Ok(batch) = Batch::from_bytes(&input) {
            // Whatever decodes is canonical: it re-encodes to the same bytes.
            prop_assert_eq!(batch.to_bytes().expect("re-encode"), input);
        }
    }

    #[test]
    fn mutated_batches_never_panic_and_stay_canonical(mutations in vec(mutation(), 1..6)) {
        let input = mutate(&GOLDEN_BATCH_BYTES, &mutations);
        if let Ok(batch) = Batch::from_bytes(&input) {
            prop_assert!(batch.frames.len() <= MAX_FRAMES_PER_BATCH);
            prop_assert_eq!(batch.to_bytes().expect("re-encode"), input);
        }
    }

    #[test]
    fn arbitrary_bytes_never_open(
        versioned in any::<bool>(),
        bytes in vec(any::<u8>(), 0..2048),
    ) {
        let mut input = bytes;
        if versioned {
            input.insert(0, ENVELOPE_VERSION);
        }
        let result = Envelope::from_bytes(&input)
            .and_then(|envelope| open(identity(B), roster(), &envelope, NOW, &policy()));
        prop_assert!(result.is_err());
    }

    #[test]
    fn mutated_envelopes_never_open(mutations in vec(mutation(), 1..6)) {
        let input = mutate(&ENVELOPE_BYTES, &mutations);
        prop_assume!(input != *ENVELOPE_BYTES);
        let result = Envelope::from_bytes(&input)
            .and_then(|envelope| open(identity(B), roster(), &envelope, NOW, &policy()));
        prop_assert!(result.is_err());
    }

    #[test]
    fn arbitrary_and_mutated_receipts_never_verify(
        bytes in vec(any::<u8>(), 0..400),
        mutations in vec(mutation(), 1..6),
    ) {
        if let Ok(receipt) = Receipt::from_bytes(&bytes) {
            prop_assert!(receipt.verify(roster(), NOW).is_err());
        }
        let input = mutate(&RECEIPT_BYTES, &mutations);
        prop_assume!(input != *RECEIPT_BYTES);
        if let Ok(receipt) = Receipt::from_bytes(&input) {
            prop_assert!(receipt.verify(roster(), NOW).is_err());
        }
    }

    #[test]
    fn batches_round_trip(
        serial in any::<u64>(),
        frames in vec(arb_frame(), 0..=MAX_FRAMES_PER_BATCH),
    ) {
        let batch = Batch::new(serial, frames);
        let bytes = batch.to_bytes().expect("encode");
        prop_assert_eq!(Batch::from_bytes(&bytes).expect("decode"), batch);
    }

    #[test]
    fn random_envelopes_round_trip_and_never_verify(envelope in arb_envelope()) {
        let bytes = envelope.to_bytes();
        prop_assert_eq!(Envelope::from_bytes(&bytes).expect("decode"), envelope.clone());
        prop_assert!(verify_outer(roster(), &envelope, NOW, &policy()).is_err());
    }
}

#[test]
fn too_many_frames_are_refused() {
    let batch = Batch::new(1, vec![Frame::Ignored; MAX_FRAMES_PER_BATCH + 1]);
    let bytes = batch.to_bytes().expect("encode");
    assert!(Batch::from_bytes(&bytes).is_err());
    let batch = Batch::new(1, vec![Frame::Ignored; MAX_FRAMES_PER_BATCH]);
    let bytes = batch.to_bytes().expect("encode");
    assert_eq!(Batch::from_bytes(&bytes), Ok(batch));
}

// ---------------------------------------------------------------------------------------------
// Findings: inputs that expose bugs (ignored tests assert the fix; the others pin today)
// ---------------------------------------------------------------------------------------------

/// An envelope inside a batch is bounded only by the batch limit (~4.3 MB), not by
/// `MAX_ENVELOPE_BYTES` (~1 MiB). A member can therefore hand a relay a correctly signed envelope
/// that is larger than any envelope the relay will ever decode again.
fn oversized_handoff(ciphertext_bytes: usize) -> (Envelope, Vec<u8>) {
    // seal_bytes does not bound the plaintext; a hostile member's own code needs no seal at all.
    let plaintext = vec![0x20u8; ciphertext_bytes - 16];
    let sealed = seal_bytes(
        identity(A),
        roster_member(B),
        &plaintext,
        params(0x41, Priority::Urgent),
        &mut rng(41),
    )
    .expect("seal");
    let batch = Batch::new(7, vec![Frame::Handoff(sealed.clone())]);
    (sealed, batch.to_bytes().expect("fits in a batch"))
}

fn relay_core() -> Core<MemoryStore> {
    Core::new(
        generate_identity(RELAY),
        roster().clone(),
        WORLD.signed_roster.clone(),
        CoreConfig::default(),
        MemoryStore::new(),
        [3; 32],
    )
    .expect("relay core")
}

/// Regression, fixed (proto::envelope / proto::core): an envelope larger than `2 * MAX_ENVELOPE_BYTES` arrives
/// inside a batch, passes `verify_outer`, and `Envelope::to_bytes()` silently returns an empty
/// vector (`unwrap_or_default`). The relay then signs a custody receipt over SHA-256 of *nothing*,
/// stores zero bytes (so the per-sender byte quota is not charged) and can never forward it.
#[test]
fn relay_custody_of_an_envelope_larger_than_twice_the_limit() {
    let (envelope, batch) = oversized_handoff(2 * MAX_ENVELOPE_BYTES as usize + 1024);
    let decoded = Batch::from_bytes(&batch).expect("the batch decoder accepts it");
    let Frame::Handoff(decoded) = &decoded.frames[0] else {
        panic!("handoff")
    };
    assert!(verify_outer(roster(), decoded, NOW, &policy()).is_ok());
    // Expected: an envelope either encodes to its bytes, or is refused at decoding.
    assert!(
        !decoded.to_bytes().is_empty(),
        "to_bytes() returned an empty vector for a {}-byte ciphertext",
        envelope.ciphertext.len()
    );
}

/// Regression (same root cause, observable end to end): the relay core answers with a custody receipt
/// whose digest is SHA-256 of the empty string, although it can never deliver the envelope.
#[test]
fn relay_core_refuses_envelopes_it_cannot_forward() {
    for size in [
        MAX_ENVELOPE_BYTES as usize + 1024, // stored, but never decodable again
        2 * MAX_ENVELOPE_BYTES as usize + 1024, // stored as zero bytes
    ] {
        let (_, batch) = oversized_handoff(size);
        let mut relay = relay_core();
        let response = relay.handle_request(NOW, id(A), &batch);
        let response = Batch::from_bytes(&response).expect("response");
        match &response.frames[0] {
            Frame::Refused { .. } => {}
            Frame::Receipt(receipt) => panic!(
                "relay took custody of a {size}-byte ciphertext it cannot forward \
                 (receipt digest {}, empty-input digest {})",
                receipt.body.envelope_digest,
                digest_bytes(&[])
            ),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// Regression, fixed (proto::core): a received payload used to be stored without `validate()`.
/// A status update whose preservation ends after year 9999 then sat in the inbox, and since
/// `Timestamp` renders such times as `after-year-9999(…)`, which its own human-readable
/// deserializer refuses, the console (JSON) could not show that message. Now the recipient
/// refuses it for good, says why, and stores nothing.
#[test]
fn a_received_payload_that_fails_validation_is_refused_not_stored() {
    let mut update: StatusUpdate = example_status(MessageId([0x11; 16]));
    update.status = Status::Preserved {
        reference: "PRES-1".into(),
        expires_at: Timestamp(u64::MAX),
    };
    let payload = Payload::Status(update);
    assert!(payload.validate().is_err(), "validation refuses it");
    assert!(
        human_readable_round_trip(&payload).is_err(),
        "and it would not survive the console's JSON"
    );
    let envelope = seal_from(
        B,
        roster_member(A),
        &payload,
        params(0x51, Priority::Urgent),
        51,
    );
    let mut recipient = Core::new(
        generate_identity(A),
        roster().clone(),
        WORLD.signed_roster.clone(),
        CoreConfig::default(),
        MemoryStore::new(),
        [5; 32],
    )
    .expect("core");
    let batch = Batch::new(1, vec![Frame::Deliver(envelope)])
        .to_bytes()
        .expect("batch");
    let response = recipient.handle_request(NOW, id(B), &batch);
    let response = Batch::from_bytes(&response).expect("response");
    match &response.frames[0] {
        Frame::Refused {
            permanent, reason, ..
        } => {
            assert!(*permanent);
            assert!(reason.contains("fails validation"), "{reason}");
            assert!(
                reason.contains("expires_at") || reason.contains("status"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(recipient.store().inbox_entries().expect("store").is_empty());
}

/// `serde_json` is not a dependency of proto; TOML exercises the same human-readable `Timestamp`
/// code path (`to_rfc3339` out, `parse_rfc3339` in).
fn human_readable_round_trip(payload: &Payload) -> Result<Payload, String> {
    let text = toml::to_string(payload).map_err(|error| error.to_string())?;
    toml::from_str(&text).map_err(|error| format!("{error} in {text:?}"))
}

/// A newer roster (serial 8), correctly signed, with its one valid signature repeated `copies`
/// times. Anyone who has seen the genuine update can build this; no key is needed.
fn padded_roster_update(copies: usize) -> SignedRoster {
    let mut newer = roster().clone();
    newer.serial += 1;
    let mut signed = SignedRoster::new(&newer).expect("valid");
    signed.sign(&authority(), None).expect("sign");
    let one = signed.signatures[0].clone();
    signed.signatures = vec![one; copies];
    signed
}

/// BUG (keys::roster): `SignedRoster` does not require its signatures to be sorted and unique
/// (the doc says they are "sorted by authority key so that the bytes are canonical"), so the same
/// valid signature can be repeated until the 4 MiB limit (~40,000 copies). Every copy is
/// verified, twice per `signers()` call (`AuthorityPublicKey::verify` runs `verify` and then
/// `verify_strict`), and `verify_update` calls `signers()` twice: four Ed25519 verifications per
/// copy. A member that relays a genuine roster update padded this way makes every node that
/// fetches it from them spend seconds of CPU on its single core thread, and, once accepted, the
/// padded bytes are what those nodes store and serve to others.
#[test]
fn duplicate_roster_signatures_are_refused() {
    let padded = padded_roster_update(2);
    assert!(
        padded.verify_update(roster(), NOW).is_err(),
        "a signed roster with the same signature twice was accepted"
    );
}
