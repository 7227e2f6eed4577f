//! The store's share of a message: writing one inbox entry (a 2 KiB envelope and its decrypted
//! payload), and the group commit that makes a batch of them durable (`sled` flush plus
//! `fdatasync`), for batches of 1, 8 and 64 entries.
//!
//! `cargo bench -p quickfreeze-node --bench store`. The database lives under the target
//! directory, on the real disk, so the sync costs what it costs on this machine.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use quickfreeze_keys::{Digest32, NodeId, Signature, Timestamp};
use quickfreeze_node::store::{SledStore, StoreOptions, SyncMode};
use quickfreeze_proto::core::{InboxEntry, Store};
use quickfreeze_proto::payload::{example_preservation, Payload};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};

fn entry(counter: u64) -> InboxEntry {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&counter.to_be_bytes());
    let message_id = MessageId(id);
    let sender = NodeId([7; 32]);
    InboxEntry {
        sender,
        message_id,
        priority: Priority::Urgent,
        received_at: Timestamp(1_795_000_000_000),
        created_at: Timestamp(1_795_000_000_000),
        via_relay: None,
        envelope: vec![0x5A; 2048],
        digest: Digest32([3; 32]),
        payload: Payload::Preservation(example_preservation()),
        receipt: Receipt {
            body: ReceiptBody {
                message_id,
                envelope_digest: Digest32([3; 32]),
                sender,
                recipient: NodeId([4; 32]),
                signer: NodeId([4; 32]),
                received_at: Timestamp(1_795_000_000_000),
                kind: ReceiptKind::Delivered,
            },
            signature: Signature([0; 64]),
        },
        acknowledged_at: None,
        replies: Vec::new(),
    }
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let options = StoreOptions {
        sync: SyncMode::FlushAndSyncData,
        ..StoreOptions::default()
    };
    let mut store = SledStore::open(dir.path(), &options).expect("open the store");
    let mut counter = 0u64;
    let mut group = c.benchmark_group("store");
    group.bench_function("put_inbox (no flush)", |b| {
        b.iter_batched(
            || {
                counter += 1;
                entry(counter)
            },
            |entry| store.put_inbox(black_box(&entry)).expect("put"),
            BatchSize::SmallInput,
        )
    });
    for batch in [1u64, 8, 64] {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("{batch} x put_inbox + group commit"), |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|_| {
                            counter += 1;
                            entry(counter)
                        })
                        .collect::<Vec<_>>()
                },
                |entries| {
                    for entry in &entries {
                        store.put_inbox(entry).expect("put");
                    }
                    store.flush().expect("flush");
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = store
}
criterion_main!(benches);
