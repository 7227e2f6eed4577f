//! Criterion benchmarks of the per-message crypto and codec path, beside their physical floor.
//!
//! What a message costs: the sender seals a 2 KiB preservation request, the recipient opens it and
//! signs a delivery receipt, the sender verifies the receipt. Batches of 64 small frames and the
//! payload codec are measured separately, and raw Ed25519 and X25519 operations give the floor
//! (`/work/shared/performance-floor.md`). Run with
//!
//! ```text
//! cargo bench -p quickfreeze-proto --bench crypto -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signer, Verifier};
use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{
    AuthorityKey, CountryCode, EncryptionKey, Identity, SignedRoster, Timestamp,
};
use quickfreeze_proto::envelope::{open, seal, AcceptPolicy, Envelope, SealParams};
use quickfreeze_proto::frame::{Batch, Frame};
use quickfreeze_proto::payload::{example_preservation, Payload};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const START: Timestamp = Timestamp(1_795_000_000_000);
const DAY_MS: u64 = 24 * 3600 * 1000;
const NOW: Timestamp = Timestamp(START.0 + 1000);
/// Encoded size of the benchmarked request.
const PAYLOAD_BYTES: usize = 2048;

fn identity(index: u8) -> Identity {
    Identity::generate(&mut ChaCha20Rng::from_seed([index; 32]))
}

struct Setup {
    sender: Identity,
    recipient: Identity,
    roster: Roster,
    payload: Payload,
    params: SealParams,
    policy: AcceptPolicy,
}

fn member(who: &Identity, country: &str) -> Member {
    Member {
        node_id: who.node_id(),
        signing_key: None,
        previous_keys: Vec::new(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("bench {country}"),
        role: Role::PointOfContact,
        encryption_key: EncryptionKey(who.encryption_public()),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        relays: vec![],
        valid_from: Timestamp(START.0 - DAY_MS),
        valid_until: Timestamp(START.0 + 365 * DAY_MS),
        on_duty_contact: "+00 555 0100".into(),
    }
}

/// The example preservation request, padded so that it encodes to exactly 2 KiB.
fn preservation_2k() -> Payload {
    let mut request = example_preservation();
    let base = Payload::Preservation(request.clone())
        .to_bytes()
        .expect("encode")
        .len();
    assert!(base <= PAYLOAD_BYTES, "example is {base} bytes");
    request
        .facts_summary
        .push_str(&" details".repeat(PAYLOAD_BYTES)[..PAYLOAD_BYTES - base]);
    let payload = Payload::Preservation(request);
    assert_eq!(payload.to_bytes().expect("encode").len(), PAYLOAD_BYTES);
    payload
}

fn setup() -> Setup {
    let sender = identity(1);
    let recipient = identity(2);
    let roster = Roster {
        network: "bench".into(),
        serial: 1,
        issued_at: START,
        expires_at: Timestamp(START.0 + 90 * DAY_MS),
        threshold: 1,
        authorities: vec![],
        members: vec![member(&sender, "BE"), member(&recipient, "DE")],
    };
    Setup {
        sender,
        recipient,
        roster,
        payload: preservation_2k(),
        params: SealParams {
            message_id: MessageId([7; 16]),
            created_at: START,
            expires_at: Timestamp(START.0 + 3 * DAY_MS),
            priority: Priority::Urgent,
        },
        policy: AcceptPolicy::default(),
    }
}

impl Setup {
    fn recipient_member(&self) -> &Member {
        self.roster
            .member(&self.recipient.node_id())
            .expect("member")
    }

    fn seal(&self, rng: &mut ChaCha20Rng) -> Envelope {
        seal(
            &self.sender,
            self.recipient_member(),
            &self.payload,
            self.params,
            rng,
        )
        .expect("seal")
    }

    fn receipt_body(&self, envelope: &Envelope) -> ReceiptBody {
        ReceiptBody {
            message_id: envelope.header.message_id,
            envelope_digest: envelope.digest(),
            sender: envelope.header.sender,
            recipient: envelope.header.recipient,
            signer: self.recipient.node_id(),
            received_at: NOW,
            kind: ReceiptKind::Delivered,
        }
    }
}

fn envelope_benches(c: &mut Criterion) {
    let setup = setup();
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let envelope = setup.seal(&mut rng);
    let envelope_bytes = envelope.to_bytes();

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_2KiB", |b| b.iter(|| black_box(setup.seal(&mut rng))));
    group.bench_function("seal_2KiB_to_bytes", |b| {
        b.iter(|| black_box(setup.seal(&mut rng).to_bytes()))
    });
    group.bench_function("open_2KiB", |b| {
        b.iter(|| {
            black_box(
                open(
                    &setup.recipient,
                    &setup.roster,
                    black_box(&envelope),
                    NOW,
                    &setup.policy,
                )
                .expect("open"),
            )
        })
    });
    group.bench_function("from_bytes_open_sign_receipt_2KiB", |b| {
        b.iter(|| {
            let envelope = Envelope::from_bytes(black_box(&envelope_bytes)).expect("decode");
            let opened = open(
                &setup.recipient,
                &setup.roster,
                &envelope,
                NOW,
                &setup.policy,
            )
            .expect("open");
            black_box(opened);
            black_box(Receipt::sign(&setup.recipient, setup.receipt_body(&envelope)).to_bytes())
        })
    });
    group.bench_function("whole_path_seal_open_receipt_verify", |b| {
        b.iter(|| {
            let wire = setup.seal(&mut rng).to_bytes();
            let envelope = Envelope::from_bytes(&wire).expect("decode");
            open(
                &setup.recipient,
                &setup.roster,
                &envelope,
                NOW,
                &setup.policy,
            )
            .expect("open");
            let receipt = Receipt::sign(&setup.recipient, setup.receipt_body(&envelope));
            let receipt = Receipt::from_bytes(&receipt.to_bytes()).expect("decode");
            receipt
                .verify_for(
                    &setup.roster,
                    NOW,
                    &envelope.header.message_id,
                    &envelope.header.sender,
                    &envelope.header.recipient,
                    &quickfreeze_proto::envelope::digest_bytes(&wire),
                )
                .expect("verify");
        })
    });
    group.finish();
}

fn receipt_benches(c: &mut Criterion) {
    let setup = setup();
    let envelope = setup.seal(&mut ChaCha20Rng::from_seed([43; 32]));
    let body = setup.receipt_body(&envelope);
    let receipt = Receipt::sign(&setup.recipient, body.clone());
    let receipt_bytes = receipt.to_bytes();
    let digest = envelope.digest();

    let mut group = c.benchmark_group("receipt");
    group.bench_function("sign", |b| {
        b.iter(|| black_box(Receipt::sign(&setup.recipient, black_box(body.clone()))))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(receipt.verify(&setup.roster, NOW)).expect("verify"))
    });
    group.bench_function("from_bytes_verify_for", |b| {
        b.iter(|| {
            Receipt::from_bytes(black_box(&receipt_bytes))
                .expect("decode")
                .verify_for(
                    &setup.roster,
                    NOW,
                    &envelope.header.message_id,
                    &envelope.header.sender,
                    &envelope.header.recipient,
                    &digest,
                )
                .expect("verify")
        })
    });
    group.finish();
}

fn codec_benches(c: &mut Criterion) {
    let setup = setup();
    let envelope = setup.seal(&mut ChaCha20Rng::from_seed([44; 32]));
    let receipt = Receipt::sign(&setup.recipient, setup.receipt_body(&envelope));
    let frames: Vec<Frame> = (0..64u8)
        .map(|index| match index % 4 {
            0 | 1 => Frame::Receipt(receipt.clone()),
            2 => Frame::Ack(MessageId([index; 16])),
            _ => Frame::refused(MessageId([index; 16]), false, "retry later"),
        })
        .collect();
    let batch = Batch::new(3, frames);
    let batch_bytes = batch.to_bytes().expect("encode");
    let payload_bytes = setup.payload.to_bytes().expect("encode");
    let envelope_bytes = envelope.to_bytes();

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(batch_bytes.len() as u64));
    group.bench_function("batch_encode_64_small_frames", |b| {
        b.iter(|| black_box(black_box(&batch).to_bytes().expect("encode")))
    });
    group.bench_function("batch_decode_64_small_frames", |b| {
        b.iter(|| black_box(Batch::from_bytes(black_box(&batch_bytes)).expect("decode")))
    });
    group.throughput(Throughput::Bytes(envelope_bytes.len() as u64));
    // The ciphertext is a `Vec<u8>`, which serde hands to bincode one element at a time.
    group.bench_function("envelope_to_bytes_2KiB", |b| {
        b.iter(|| black_box(black_box(&envelope).to_bytes()))
    });
    group.bench_function("envelope_from_bytes_2KiB", |b| {
        b.iter(|| black_box(Envelope::from_bytes(black_box(&envelope_bytes)).expect("decode")))
    });
    group.bench_function("sha256_2KiB", |b| {
        b.iter(|| {
            black_box(quickfreeze_proto::envelope::digest_bytes(black_box(
                &envelope_bytes,
            )))
        })
    });
    group.throughput(Throughput::Bytes(payload_bytes.len() as u64));
    group.bench_function("payload_to_bytes_2KiB", |b| {
        b.iter(|| black_box(black_box(&setup.payload).to_bytes().expect("encode")))
    });
    group.bench_function("payload_from_bytes_2KiB", |b| {
        b.iter(|| black_box(Payload::from_bytes(black_box(&payload_bytes)).expect("decode")))
    });
    group.bench_function("payload_validate_2KiB", |b| {
        b.iter(|| black_box(black_box(&setup.payload).validate()).expect("valid"))
    });
    group.finish();
}

fn floor_benches(c: &mut Criterion) {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let verifying = signing.verifying_key();
    let message = [0x5Au8; 64];
    let signature = signing.sign(&message);
    let long_message = vec![0x5Au8; 2300];
    let long_signature = signing.sign(&long_message);
    let secret = x25519_dalek::StaticSecret::from([6; 32]);
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([7; 32]));

    let mut group = c.benchmark_group("floor");
    group.bench_function("ed25519_sign_64B", |b| {
        b.iter(|| black_box(signing.sign(black_box(&message))))
    });
    group.bench_function("ed25519_verify_64B", |b| {
        b.iter(|| {
            verifying
                .verify(black_box(&message), &signature)
                .expect("ok")
        })
    });
    group.bench_function("ed25519_verify_strict_64B", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(&message), &signature)
                .expect("ok")
        })
    });
    group.bench_function("ed25519_sign_2300B", |b| {
        b.iter(|| black_box(signing.sign(black_box(&long_message))))
    });
    group.bench_function("ed25519_verify_strict_2300B", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(&long_message), &long_signature)
                .expect("ok")
        })
    });
    group.bench_function("x25519_dh", |b| {
        b.iter(|| black_box(secret.diffie_hellman(black_box(&public))))
    });
    group.bench_function("x25519_ephemeral_keygen_and_dh", |b| {
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        b.iter_batched(
            || x25519_dalek::EphemeralSecret::random_from_rng(&mut rng),
            |ephemeral| {
                let public_half = x25519_dalek::PublicKey::from(&ephemeral);
                black_box(public_half);
                black_box(ephemeral.diffie_hellman(&public))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn roster_benches(c: &mut Criterion) {
    let setup = setup();
    let authority = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]));
    let mut current = setup.roster.clone();
    current.authorities = vec![authority.public()];
    let mut newer = current.clone();
    newer.serial += 1;
    let mut signed = SignedRoster::new(&newer).expect("valid roster");
    signed.sign(&authority, None).expect("sign");
    let genuine = signed.to_bytes().expect("encode");
    // The same valid signature repeated: accepted today (see wire.rs, duplicate_roster_signatures).
    let copies = 100;
    signed.signatures = vec![signed.signatures[0].clone(); copies];
    let padded = signed.to_bytes().expect("encode");

    let mut group = c.benchmark_group("roster");
    group.bench_function("verify_update_1_signature", |b| {
        b.iter(|| {
            SignedRoster::from_bytes(black_box(&genuine))
                .and_then(|signed| signed.verify_update(&current, NOW))
                .expect("valid")
        })
    });
    group.bench_function("verify_update_100_duplicate_signatures", |b| {
        b.iter(|| {
            SignedRoster::from_bytes(black_box(&padded))
                .and_then(|signed| signed.verify_update(&current, NOW))
                .expect("accepted today")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    roster_benches,
    envelope_benches,
    receipt_benches,
    codec_benches,
    floor_benches
);
criterion_main!(benches);
