//! What a long history costs the store: builds stores of N messages fast (through the store
//! layer, no network, with realistic record sizes and a realistic mix of states) and measures
//! the operations `status`, the deadline check, `stats`, listings and id lookups rest on, plus
//! opening the store, the writes a delivery makes on top of that history, disk and RSS.
//!
//! `cargo bench -p quickfreeze-node --bench history` (10k and 100k messages), or with the sizes
//! named: `cargo bench -p quickfreeze-node --bench history -- 10000 100000 1000000`. Prints a
//! Markdown table for BENCHMARKS.md. The stores live under the target directory and are removed
//! afterwards.
//!
//! The mix: half the messages received, half sent. Of the received ones 70 % are requests (2 KiB
//! envelopes), the rest status replies and free text; every request but the newest 100 is
//! acknowledged and answered with a status reply of ours. Of the sent requests all but the
//! newest 50 are delivered. So the open items (the officers' backlog) are the same at every
//! size, as on a real node whose officers keep up, while the history grows.

use std::path::Path;
use std::time::{Duration, Instant};

use quickfreeze_keys::{Digest32, NodeId, Signature, Timestamp};
use quickfreeze_node::deadlines::{breaches, DeadlineConfig};
use quickfreeze_node::store::{SledStore, StoreOptions, SyncMode};
use quickfreeze_proto::core::{
    InboxEntry, OutboxEntry, OutboxState, RelayEntry, RelayState, Store,
};
use quickfreeze_proto::payload::{
    example_free_text, example_preservation, example_status, Payload,
};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};

const START_MS: u64 = 1_795_000_000_000;
/// Requests left unacknowledged / undelivered at every size.
const OPEN_INBOX: u64 = 100;
const OPEN_OUTBOX: u64 = 50;
const ENVELOPE_BYTES: usize = 2048;
/// One message received and one sent every minute: 10k messages span 3.5 days, 1M a year.
const SPACING_MS: u64 = 60_000;

fn id(kind: u8, n: u64) -> MessageId {
    let mut bytes = [0u8; 16];
    // Spread ids like random ones (a prefix lookup is then realistic), but reproducibly.
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(kind);
    bytes[..8].copy_from_slice(&mixed.to_be_bytes());
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    bytes[15] ^= kind;
    MessageId(bytes)
}

fn sender(n: u64) -> NodeId {
    NodeId([(n % 40) as u8 + 1; 32])
}

fn receipt(message_id: MessageId, from: NodeId, at: u64) -> Receipt {
    Receipt {
        body: ReceiptBody {
            message_id,
            envelope_digest: Digest32([3; 32]),
            sender: from,
            recipient: NodeId([99; 32]),
            signer: NodeId([99; 32]),
            received_at: Timestamp(at),
            kind: ReceiptKind::Delivered,
        },
        signature: Signature([5; 64]),
    }
}

fn inbox_entry(n: u64, total: u64) -> InboxEntry {
    let at = START_MS + n * SPACING_MS;
    let from = sender(n);
    let message_id = id(1, n);
    let request = n % 10 < 7;
    let payload = if request {
        Payload::Preservation(example_preservation())
    } else if n % 10 < 9 {
        Payload::Status(example_status(id(2, n)))
    } else {
        Payload::FreeText(example_free_text())
    };
    let open = n + OPEN_INBOX >= total;
    InboxEntry {
        sender: from,
        message_id,
        priority: if n.is_multiple_of(50) {
            Priority::Emergency
        } else {
            Priority::Urgent
        },
        received_at: Timestamp(at),
        created_at: Timestamp(at - 200),
        via_relay: None,
        envelope: vec![0x5A; ENVELOPE_BYTES],
        digest: Digest32([3; 32]),
        payload,
        receipt: receipt(message_id, from, at),
        acknowledged_at: (!open).then_some(Timestamp(at + 60_000)),
        replies: if request && !open {
            vec![id(3, n)]
        } else {
            Vec::new()
        },
    }
}

/// Our status reply to received request `n`.
fn reply_entry(n: u64) -> OutboxEntry {
    let at = START_MS + n * SPACING_MS + 60_000;
    let mut entry = outbox_entry(n, u64::MAX);
    entry.message_id = id(3, n);
    entry.recipient = sender(n);
    entry.payload = Payload::Status(example_status(id(1, n)));
    entry.kind = entry.payload.kind();
    entry.created_at = Timestamp(at);
    entry.state = OutboxState::Delivered {
        at: Timestamp(at + 300),
    };
    entry
}

fn outbox_entry(n: u64, total: u64) -> OutboxEntry {
    let at = START_MS + n * SPACING_MS + 500;
    let payload = Payload::Preservation(example_preservation());
    let open = n + OPEN_OUTBOX >= total;
    OutboxEntry {
        message_id: id(4, n),
        recipient: sender(n + 7),
        priority: Priority::Urgent,
        kind: payload.kind(),
        summary: payload.summary(),
        payload,
        created_at: Timestamp(at),
        expires_at: Timestamp(at + 7 * 24 * 3600 * 1000),
        envelope: vec![0xA5; ENVELOPE_BYTES],
        digest: Digest32([4; 32]),
        state: if open {
            OutboxState::Sent
        } else {
            OutboxState::Delivered {
                at: Timestamp(at + 400),
            }
        },
        attempts: 1,
        direct_failures: 0,
        relay_attempts: 0,
        custody_receipt: None,
        delivery_receipt: (!open).then(|| receipt(id(4, n), NodeId([99; 32]), at + 400)),
        status_history: Vec::new(),
        last_error: None,
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        sync: SyncMode::Flush,
        ..StoreOptions::default()
    }
}

/// Writes `messages` messages of history (half received, half sent, plus our replies).
fn build(dir: &Path, messages: u64) -> Duration {
    let started = Instant::now();
    let mut store = SledStore::open(dir, &options()).expect("open a new store");
    let half = messages / 2;
    for n in 0..half {
        let received = inbox_entry(n, half);
        let answered = !received.replies.is_empty();
        store.put_inbox(&received).expect("write");
        if answered {
            store.put_outbox(&reply_entry(n)).expect("write");
        }
        store.put_outbox(&outbox_entry(n, half)).expect("write");
        if n % 1000 == 999 {
            store.flush().expect("commit");
        }
    }
    store.flush().expect("commit");
    started.elapsed()
}

/// Median wall time of `runs` calls of `work`.
fn median(runs: usize, mut work: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn du_mib(dir: &Path) -> f64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|items| {
                items
                    .flatten()
                    .map(|item| match item.metadata() {
                        Ok(meta) if meta.is_dir() => walk(&item.path()),
                        Ok(meta) => meta.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

fn measure(messages: u64) -> Vec<String> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let built = build(dir.path(), messages);
    // sled releases its lock a moment after the last handle drops.
    std::thread::sleep(Duration::from_millis(300));
    let opened = Instant::now();
    let mut store = SledStore::open(dir.path(), &options()).expect("reopen");
    // What a starting core reads: the unfinished outbox, the relay queue and the unacknowledged
    // inbox.
    let resumed = store.unfinished_outbox_entries().expect("read").len()
        + store.unacknowledged_inbox_entries().expect("read").len()
        + store.relay_entries().expect("read").len();
    let open_time = opened.elapsed();
    assert_eq!(resumed as u64, OPEN_INBOX * 7 / 10 + OPEN_OUTBOX);

    let counts = median(200, || {
        std::hint::black_box(store.history_counts().expect("counts"));
    });
    let config = DeadlineConfig::default();
    let now = Timestamp(START_MS + (messages / 2) * SPACING_MS);
    let mut found = 0;
    let deadline = median(20, || {
        let (outbox, inbox) = store.indexes().deadline_items().expect("open items");
        found = breaches(now, &outbox, &inbox, &config).len();
    });
    assert!(found > 0, "the open requests are overdue by now");
    let newest = median(50, || {
        assert_eq!(store.inbox_page(50).expect("page").len(), 50);
    });
    let middle = inbox_entry(messages / 4, messages / 2);
    let cursor = median(50, || {
        let page = store
            .indexes()
            .inbox_newest(Some(&middle), 50, |_| false)
            .expect("page");
        assert_eq!(page.len(), 50);
    });
    let wanted = id(1, messages / 3).to_string();
    let prefix = median(200, || {
        let found = store
            .indexes()
            .ids_with_prefix(&wanted[..8], 20)
            .expect("prefix");
        assert!(!found.is_empty());
    });
    let day = Timestamp(now.0.saturating_sub(24 * 3600 * 1000));
    let stats_window = median(5, || {
        let (outbox, inbox) = store.indexes().since(day).expect("window");
        std::hint::black_box((outbox.len(), inbox.len()));
    });
    // A delivery on top of the history: one inbox write (with its indexes), then acknowledge
    // and reply, committed 10 at a time, as a busy loop would.
    let extra = 2_000u64;
    let started = Instant::now();
    for n in 0..extra {
        let k = messages + n;
        let mut received = inbox_entry(k, u64::MAX);
        received.acknowledged_at = None;
        received.replies.clear();
        store.put_inbox(&received).expect("deliver");
        if n % 10 == 9 {
            store.flush().expect("commit");
        }
    }
    store.flush().expect("commit");
    let per_delivery = started.elapsed() / extra as u32;
    // The same, written as relay entries (one plain insert each, no index): the same-run
    // baseline for what the indexes add to a delivery's write.
    let started = Instant::now();
    for n in 0..extra {
        let k = messages + extra + n;
        let received = inbox_entry(k, u64::MAX);
        store
            .put_relay(&RelayEntry {
                sender: received.sender,
                message_id: received.message_id,
                recipient: NodeId([99; 32]),
                priority: received.priority,
                received_at: received.received_at,
                expires_at: Timestamp(received.received_at.0 + 3_600_000),
                envelope: Some(received.envelope),
                digest: received.digest,
                custody_receipt: received.receipt,
                state: RelayState::Holding,
            })
            .expect("hold");
        if n % 10 == 9 {
            store.flush().expect("commit");
        }
    }
    store.flush().expect("commit");
    let per_plain = started.elapsed() / extra as u32;
    let rss = rss_mib();
    let disk = du_mib(dir.path());
    drop(store);
    vec![
        messages.to_string(),
        format!("{:.1}", built.as_secs_f64()),
        ms(open_time),
        ms(counts),
        ms(deadline),
        ms(newest),
        ms(cursor),
        ms(prefix),
        ms(stats_window),
        format!("{:.1}", per_delivery.as_secs_f64() * 1e6),
        format!("{:.1}", per_plain.as_secs_f64() * 1e6),
        format!("{rss:.0}"),
        format!("{disk:.0}"),
    ]
}

fn main() {
    let mut sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .filter_map(|arg| arg.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    println!(
        "| messages | build s | open + resume ms | status counts ms | deadline check ms | \
         inbox newest 50 ms | inbox page at cursor ms | id prefix ms | stats last day ms | \
         delivery write µs | plain write µs | RSS MiB | disk MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for messages in sizes {
        println!("| {} |", measure(messages).join(" | "));
    }
}
