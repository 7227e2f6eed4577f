//! Tests of [`SledStore`]: a model-based comparison with [`MemoryStore`] across flushes and
//! restarts, a real `kill -9` of a writing process, and clear errors for a foreign format
//! version, hand-corrupted values and a damaged database.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quickfreeze_keys::codec;
use quickfreeze_keys::{Digest32, NodeId, Signature, Timestamp};
use quickfreeze_node::audit::{AuditFacts, AuditKind, AuditLog};
use quickfreeze_node::deadlines::{breaches, DeadlineConfig};
use quickfreeze_node::store::{
    Found, SledStore, StoreOpenError, StoreOptions, SyncMode, CHECKSUM_BYTES, FORMAT_VERSION,
    KEY_FORMAT_VERSION, KEY_INDEX_VERSION, KEY_ROSTER, TREE_INBOX, TREE_INBOX_BY_TIME, TREE_META,
    TREE_OPEN_REQUESTS, TREE_OUTBOX, TREE_RELAY,
};
use quickfreeze_proto::core::{
    InboxEntry, MemoryStore, OutboxEntry, OutboxState, RelayEntry, RelayState, Store,
};
use quickfreeze_proto::payload::{
    example_free_text, example_preservation, example_status, Payload, Status,
};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Large enough to land in one of sled's blob files (over ~128 KiB).
const BLOB_SIZED: usize = 200 * 1024;

fn temp_dir() -> tempfile::TempDir {
    // On the real disk (not a tmpfs), so syncs cost what they cost.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create a temporary directory")
}

fn options(sync: SyncMode) -> StoreOptions {
    StoreOptions {
        sync,
        ..StoreOptions::default()
    }
}

fn open(dir: &Path, sync: SyncMode) -> SledStore {
    // sled releases its file lock when its flusher thread exits, a moment after the last handle
    // is dropped; a reopen in the same process right after a drop can still find it held (a
    // new process, the real restart, never does). Wait for it, briefly.
    for _ in 0..200 {
        match SledStore::open(dir, &options(sync)) {
            Err(StoreOpenError::Locked { .. }) => std::thread::sleep(Duration::from_millis(10)),
            other => return other.expect("open the store"),
        }
    }
    SledStore::open(dir, &options(sync)).expect("open the store (still locked after 2 s)")
}

// ---------------------------------------------------------------------------------------------
// Entries built from the real types (the store does not interpret envelopes or digests).

fn receipt(message_id: MessageId, sender: NodeId, kind: ReceiptKind, at: u64) -> Receipt {
    Receipt {
        body: ReceiptBody {
            message_id,
            envelope_digest: Digest32([3; 32]),
            sender,
            recipient: NodeId([4; 32]),
            signer: NodeId([5; 32]),
            received_at: Timestamp(at),
            kind,
        },
        signature: Signature([0; 64]),
    }
}

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes
}

/// Small envelopes: a blob-sized `Vec<u8>` takes ~10 ms to decode in an unoptimised test build,
/// and the model test lists every entry after every operation. Blob-sized values are covered by
/// large rosters here (stored raw) and by the kill and blob tests.
fn random_envelope(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let len = rng.random_range(0..100usize);
    let fill = rng.random_range(0..=255u8);
    let mut bytes = vec![fill; len];
    if let Some(first) = bytes.first_mut() {
        *first = rng.random_range(0..=255u8);
    }
    bytes
}

/// Mostly free text; now and then a status reply (substantive or not) about a pooled id, to a
/// pooled sender, so that the open-request index has replies to follow.
fn random_outbox_payload(rng: &mut ChaCha8Rng, message_id: MessageId) -> (NodeId, Payload) {
    if rng.random_bool(0.4) {
        let (recipient, references) = reply_target(&message_id);
        let mut update = example_status(references);
        if rng.random_bool(0.5) {
            update.status = Status::AcknowledgedByOfficer;
        }
        (recipient, Payload::Status(update))
    } else {
        (
            NodeId([rng.random_range(0..=255u8); 32]),
            Payload::FreeText(example_free_text()),
        )
    }
}

fn random_outbox(rng: &mut ChaCha8Rng, message_id: MessageId) -> OutboxEntry {
    let (recipient, payload) = random_outbox_payload(rng, message_id);
    let at = Timestamp(rng.random_range(0..1_000_000u64));
    let state = match rng.random_range(0..6u32) {
        0 => OutboxState::Accepted,
        1 => OutboxState::Sent,
        2 => OutboxState::Custody {
            relay: NodeId([9; 32]),
            at,
        },
        3 => OutboxState::Delivered { at },
        4 => OutboxState::Expired { at },
        _ => OutboxState::Rejected {
            at,
            reason: String::from("not competent"),
        },
    };
    OutboxEntry {
        message_id,
        recipient,
        priority: Priority::Urgent,
        kind: payload.kind(),
        payload,
        summary: format!("summary {}", rng.random_range(0..1000u32)),
        created_at: Timestamp(rng.random_range(0..1_000_000u64)),
        expires_at: Timestamp(2_000_000),
        envelope: random_envelope(rng),
        digest: Digest32([rng.random_range(0..=255u8); 32]),
        state,
        attempts: rng.random_range(0..10u32),
        direct_failures: rng.random_range(0..10u32),
        relay_attempts: rng.random_range(0..3u32),
        custody_receipt: rng
            .random_bool(0.3)
            .then(|| receipt(message_id, NodeId([1; 32]), ReceiptKind::Custody, 17)),
        delivery_receipt: rng
            .random_bool(0.3)
            .then(|| receipt(message_id, NodeId([1; 32]), ReceiptKind::Delivered, 18)),
        status_history: Vec::new(),
        last_error: rng
            .random_bool(0.2)
            .then(|| String::from("connection refused")),
    }
}

fn random_inbox(rng: &mut ChaCha8Rng, sender: NodeId, message_id: MessageId) -> InboxEntry {
    InboxEntry {
        sender,
        message_id,
        priority: Priority::Routine,
        received_at: Timestamp(rng.random_range(0..1_000_000u64)),
        created_at: Timestamp(rng.random_range(0..1_000_000u64)),
        via_relay: rng.random_bool(0.3).then_some(NodeId([8; 32])),
        envelope: random_envelope(rng),
        digest: Digest32([rng.random_range(0..=255u8); 32]),
        payload: if rng.random_bool(0.5) {
            Payload::Preservation(example_preservation())
        } else {
            Payload::FreeText(example_free_text())
        },
        receipt: receipt(message_id, sender, ReceiptKind::Delivered, 42),
        acknowledged_at: rng
            .random_bool(0.5)
            .then(|| Timestamp(rng.random_range(0..1_000_000u64))),
        // As the core does: a request lists only the replies that reference it.
        replies: (0..ID_POOL)
            .map(pool_id)
            .filter(|reply| reply_target(reply) == (sender, message_id))
            .filter(|_| rng.random_bool(0.7))
            .collect(),
    }
}

fn random_relay(rng: &mut ChaCha8Rng, sender: NodeId, message_id: MessageId) -> RelayEntry {
    let state = match rng.random_range(0..4u32) {
        0 => RelayState::Holding,
        1 => RelayState::ReceiptPending {
            receipt: receipt(message_id, sender, ReceiptKind::Delivered, 7),
        },
        2 => RelayState::Done,
        _ => RelayState::Failed {
            reason: String::from("expired"),
        },
    };
    RelayEntry {
        sender,
        message_id,
        recipient: NodeId([6; 32]),
        priority: Priority::Emergency,
        received_at: Timestamp(rng.random_range(0..1_000_000u64)),
        expires_at: Timestamp(2_000_000),
        envelope: rng.random_bool(0.7).then(|| random_envelope(rng)),
        digest: Digest32([rng.random_range(0..=255u8); 32]),
        custody_receipt: receipt(message_id, sender, ReceiptKind::Custody, 6),
        state,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Model-based: SledStore must behave exactly like MemoryStore.

const ID_POOL: u8 = 12;
const SENDER_POOL: u8 = 3;

fn pick_id(rng: &mut ChaCha8Rng) -> MessageId {
    pool_id(rng.random_range(0..ID_POOL))
}

fn pool_id(n: u8) -> MessageId {
    let mut bytes = [0xA5; 16];
    bytes[15] = n;
    MessageId(bytes)
}

/// The request (sender, id) a status reply with pooled id `reply` answers, fixed per id as in
/// the real node, where a reply is written once about one request.
fn reply_target(reply: &MessageId) -> (NodeId, MessageId) {
    let n = reply.0[15];
    (
        NodeId([n % SENDER_POOL + 1; 32]),
        pool_id((n + 1) % ID_POOL),
    )
}

fn pick_sender(rng: &mut ChaCha8Rng) -> NodeId {
    NodeId([rng.random_range(1..=SENDER_POOL); 32])
}

/// The indexes agree with the records, the counters with the model, and the deadline check
/// over the open items finds exactly what a check over the whole store finds.
fn assert_indexes(model: &MemoryStore, sled: &SledStore, context: &str) {
    if let Err(problem) = sled.indexes().check() {
        panic!("{problem} {context}");
    }
    let outbox = model.outbox_entries().expect("model outbox");
    let inbox = model.inbox_entries().expect("model inbox");
    let counts = sled.history_counts().expect("counts");
    assert_eq!(counts.outbox, outbox.len() as u64, "outbox count {context}");
    assert_eq!(counts.inbox, inbox.len() as u64, "inbox count {context}");
    let unacknowledged = inbox
        .iter()
        .filter(|entry| {
            entry.acknowledged_at.is_none()
                && quickfreeze_proto::core::awaits_acknowledgement(&entry.payload)
        })
        .count();
    assert_eq!(
        counts.inbox_unacknowledged, unacknowledged as u64,
        "unacknowledged count {context}"
    );
    // Late enough that every clock has run out: every open item is a breach.
    let config = DeadlineConfig::default();
    for now in [Timestamp(1_000_000), Timestamp(30 * 24 * 3600 * 1000)] {
        let all = breaches(now, &outbox, &inbox, &config);
        let (open_outbox, open_inbox) = sled.indexes().deadline_items().expect("deadline items");
        let from_index = breaches(now, &open_outbox, &open_inbox, &config);
        assert_eq!(from_index, all, "deadline check over open items {context}");
    }
}

fn assert_same(model: &MemoryStore, sled: &SledStore, rng: &mut ChaCha8Rng, context: &str) {
    assert_indexes(model, sled, context);
    let mut outbox_model = model.outbox_entries().expect("model outbox");
    let mut outbox_sled = sled.outbox_entries().expect("sled outbox");
    outbox_model.sort_by_key(|entry| entry.message_id);
    outbox_sled.sort_by_key(|entry| entry.message_id);
    assert_eq!(outbox_model, outbox_sled, "outbox differs {context}");

    let mut inbox_model = model.inbox_entries().expect("model inbox");
    let mut inbox_sled = sled.inbox_entries().expect("sled inbox");
    inbox_model.sort_by_key(|entry| (entry.sender, entry.message_id));
    inbox_sled.sort_by_key(|entry| (entry.sender, entry.message_id));
    assert_eq!(inbox_model, inbox_sled, "inbox differs {context}");

    let mut relay_model = model.relay_entries().expect("model relay");
    let mut relay_sled = sled.relay_entries().expect("sled relay");
    relay_model.sort_by_key(|entry| (entry.sender, entry.message_id));
    relay_sled.sort_by_key(|entry| (entry.sender, entry.message_id));
    assert_eq!(relay_model, relay_sled, "relay differs {context}");

    assert_eq!(
        model.get_roster().expect("model roster"),
        sled.get_roster().expect("sled roster"),
        "roster differs {context}"
    );

    // Point lookups, hits and misses alike.
    for _ in 0..3 {
        let id = pick_id(rng);
        let sender = pick_sender(rng);
        assert_eq!(
            model.get_outbox(&id).expect("model get"),
            sled.get_outbox(&id).expect("sled get"),
            "get_outbox {id} {context}"
        );
        assert_eq!(
            model.get_inbox(&sender, &id).expect("model get"),
            sled.get_inbox(&sender, &id).expect("sled get"),
            "get_inbox {context}"
        );
        assert_eq!(
            model.get_relay(&sender, &id).expect("model get"),
            sled.get_relay(&sender, &id).expect("sled get"),
            "get_relay {context}"
        );
    }
}

/// The console helpers agree with the model's data.
fn assert_helpers(model: &MemoryStore, sled: &SledStore) {
    let mut outbox = model.outbox_entries().expect("model outbox");
    outbox.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.message_id.cmp(&a.message_id))
    });
    outbox.truncate(5);
    assert_eq!(sled.outbox_page(5).expect("outbox page"), outbox);

    let page = sled.inbox_page(7).expect("inbox page");
    assert!(page.len() <= 7);
    assert!(page
        .windows(2)
        .all(|pair| pair[0].received_at >= pair[1].received_at));
    assert_eq!(
        page.len(),
        model.inbox_entries().expect("model inbox").len().min(7)
    );

    for n in 0..ID_POOL {
        let mut bytes = [0xA5; 16];
        bytes[15] = n;
        let id = MessageId(bytes);
        let expected = match model.get_outbox(&id).expect("model get") {
            Some(entry) => Some(Found::Outbox(Box::new(entry))),
            None => model
                .inbox_entries()
                .expect("model inbox")
                .into_iter()
                .find(|entry| entry.message_id == id)
                .map(|entry| Found::Inbox(Box::new(entry))),
        };
        assert_eq!(sled.find_message(&id).expect("find"), expected, "find {id}");
    }

    for sender in 1..=SENDER_POOL {
        let sender = NodeId([sender; 32]);
        let relay: Vec<_> = model
            .relay_entries()
            .expect("model relay")
            .into_iter()
            .filter(|entry| entry.sender == sender)
            .collect();
        assert_eq!(sled.relay_entries_from(&sender).expect("relay from"), relay);
        let inbox: Vec<_> = model
            .inbox_entries()
            .expect("model inbox")
            .into_iter()
            .filter(|entry| entry.sender == sender)
            .collect();
        assert_eq!(sled.inbox_entries_from(&sender).expect("inbox from"), inbox);
    }
}

fn run_model(seed: u64, operations: usize, sync: SyncMode) {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = MemoryStore::new();
    let mut sled = open(dir.path(), sync);
    let mut restarts = 0;
    for step in 0..operations {
        let choice = rng.random_range(0..100u32);
        let what = match choice {
            0..=24 => {
                let id = pick_id(&mut rng);
                let entry = random_outbox(&mut rng, id);
                model.put_outbox(&entry).expect("model put");
                sled.put_outbox(&entry).expect("sled put");
                "put_outbox"
            }
            25..=49 => {
                let (sender, id) = (pick_sender(&mut rng), pick_id(&mut rng));
                let entry = random_inbox(&mut rng, sender, id);
                model.put_inbox(&entry).expect("model put");
                sled.put_inbox(&entry).expect("sled put");
                "put_inbox"
            }
            50..=69 => {
                let (sender, id) = (pick_sender(&mut rng), pick_id(&mut rng));
                let entry = random_relay(&mut rng, sender, id);
                model.put_relay(&entry).expect("model put");
                sled.put_relay(&entry).expect("sled put");
                "put_relay"
            }
            70..=79 => {
                let (sender, id) = (pick_sender(&mut rng), pick_id(&mut rng));
                model.remove_relay(&sender, &id).expect("model remove");
                sled.remove_relay(&sender, &id).expect("sled remove");
                "remove_relay"
            }
            80..=84 => {
                // Now and then large enough for a sled blob file (cheap to compare: raw bytes).
                let len = if rng.random_range(0..8u32) == 0 {
                    BLOB_SIZED
                } else {
                    rng.random_range(0..2000usize)
                };
                let roster = random_bytes(&mut rng, len);
                model.put_roster(&roster).expect("model roster");
                sled.put_roster(&roster).expect("sled roster");
                "put_roster"
            }
            85..=94 => {
                model.flush().expect("model flush");
                sled.flush().expect("sled flush");
                "flush"
            }
            _ => {
                // Restart only right after a flush: then sled and the model agree on what
                // survives (the model keeps exactly the flushed state).
                model.flush().expect("model flush");
                sled.flush().expect("sled flush");
                assert_eq!(model.unflushed_writes(), 0);
                drop(sled);
                model.crash();
                sled = open(dir.path(), sync);
                restarts += 1;
                "restart"
            }
        };
        assert_same(
            &model,
            &sled,
            &mut rng,
            &format!("after step {step} ({what}), seed {seed}"),
        );
    }
    assert_helpers(&model, &sled);
    assert!(restarts > 0, "seed {seed} never restarted");
}

#[test]
fn store_matches_memory_model_across_flushes_and_restarts() {
    let start = Instant::now();
    for seed in 0..6u64 {
        let sync = if seed % 2 == 0 {
            SyncMode::FlushAndSyncData
        } else {
            SyncMode::Flush
        };
        run_model(seed, 300, sync);
    }
    println!(
        "model test: 6 seeds × 300 operations in {:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A real kill -9 of a process that writes and flushes.

const CHILD_DIR_ENV: &str = "QF_STORE_CHILD";
const CHILD_START_ENV: &str = "QF_STORE_CHILD_START";
const CHILD_SYNC_ENV: &str = "QF_STORE_CHILD_SYNC";
const CHILD_TEST: &str = "store_kill_test_child_writer";

fn numbered_id(n: u64) -> MessageId {
    let mut bytes = [0x5A; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    MessageId(bytes)
}

fn numbered_sender(n: u64) -> NodeId {
    NodeId([(n % 5) as u8 + 1; 32])
}

/// Entry `n` of the kill test: outbox, inbox or relay by `n % 3`, every 100th blob-sized.
enum Numbered {
    Outbox(Box<OutboxEntry>),
    Inbox(Box<InboxEntry>),
    Relay(Box<RelayEntry>),
}

fn numbered_entry(n: u64) -> Numbered {
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let id = numbered_id(n);
    let sender = numbered_sender(n);
    let envelope = if n % 100 == 7 {
        vec![(n % 251) as u8; BLOB_SIZED]
    } else {
        vec![(n % 251) as u8; 300]
    };
    match n % 3 {
        0 => {
            let mut entry = random_outbox(&mut rng, id);
            entry.envelope = envelope;
            Numbered::Outbox(Box::new(entry))
        }
        1 => {
            let mut entry = random_inbox(&mut rng, sender, id);
            entry.envelope = envelope;
            Numbered::Inbox(Box::new(entry))
        }
        _ => {
            let mut entry = random_relay(&mut rng, sender, id);
            entry.envelope = Some(envelope);
            Numbered::Relay(Box::new(entry))
        }
    }
}

fn put_numbered(store: &mut SledStore, n: u64) {
    match numbered_entry(n) {
        Numbered::Outbox(entry) => store.put_outbox(&entry),
        Numbered::Inbox(entry) => store.put_inbox(&entry),
        Numbered::Relay(entry) => store.put_relay(&entry),
    }
    .expect("write a numbered entry");
}

fn assert_numbered_present(store: &SledStore, n: u64) {
    let id = numbered_id(n);
    let sender = numbered_sender(n);
    match numbered_entry(n) {
        Numbered::Outbox(entry) => assert_eq!(
            store.get_outbox(&id).expect("read back"),
            Some(*entry),
            "outbox entry {n} lost"
        ),
        Numbered::Inbox(entry) => assert_eq!(
            store.get_inbox(&sender, &id).expect("read back"),
            Some(*entry),
            "inbox entry {n} lost"
        ),
        Numbered::Relay(entry) => assert_eq!(
            store.get_relay(&sender, &id).expect("read back"),
            Some(*entry),
            "relay entry {n} lost"
        ),
    }
}

/// Runs only as the child of `store_loses_nothing_flushed_on_kill_minus_nine`: writes numbered entries,
/// flushes every 10 and reports each flushed count on stdout, until killed.
#[test]
fn store_kill_test_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START_ENV)
        .expect("start env var")
        .parse()
        .expect("start is a number");
    let sync = match std::env::var(CHILD_SYNC_ENV).as_deref() {
        Ok("flush") => SyncMode::Flush,
        _ => SyncMode::FlushAndSyncData,
    };
    let mut store = open(Path::new(&dir), sync);
    let mut stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = start;
    // Bounded, in case the parent died without killing us.
    while Instant::now() < deadline {
        for _ in 0..10 {
            put_numbered(&mut store, n);
            n += 1;
        }
        store.flush().expect("flush");
        writeln!(stdout, "flushed {}", n - start).expect("report");
        stdout.flush().expect("flush stdout");
    }
}

/// SIGKILL's number (9 on every Unix; libc is not a dependency of this crate).
const SIGKILL: i32 = 9;

#[test]
fn store_loses_nothing_flushed_on_kill_minus_nine() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let started = Instant::now();
    let dir = temp_dir();
    let exe = std::env::current_exe().expect("path of this test binary");
    let mut rng = ChaCha8Rng::seed_from_u64(0x9_4111);
    // Ranges of entry numbers acknowledged as flushed, over all rounds.
    let mut confirmed: Vec<std::ops::Range<u64>> = Vec::new();
    for round in 0..6u64 {
        let start = round * 1_000_000;
        let kill_after = rng.random_range(1..=30u64) * 10;
        let extra_delay = Duration::from_micros(rng.random_range(0..3000u64));
        let sync = if round % 2 == 0 {
            "flush-and-sync-data"
        } else {
            "flush"
        };
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_START_ENV, start.to_string())
            .env(CHILD_SYNC_ENV, sync)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child writer");
        let stdout = child.stdout.take().expect("child stdout");
        let mut flushed = 0;
        // Keep the pipe open until the child is dead: a closed pipe would make its next report
        // fail (EPIPE) and end it by a panic, a clean unwind instead of a kill.
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("read child stdout");
            if let Some(count) = line.strip_prefix("flushed ") {
                flushed = count.parse().expect("a count");
                if flushed >= kill_after {
                    break;
                }
            }
        }
        assert!(
            flushed >= kill_after,
            "round {round}: the child stopped after reporting {flushed} flushed entries"
        );
        // Land the kill somewhere in the middle of the next batches.
        std::thread::sleep(extra_delay);
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "round {round}: the child must die by SIGKILL, not {status}"
        );
        drop(lines);
        confirmed.push(start..start + flushed);

        let store = SledStore::open(dir.path(), &options(SyncMode::Flush))
            .unwrap_or_else(|error| panic!("round {round}: reopen after kill -9 failed: {error}"));
        for range in &confirmed {
            for n in range.clone() {
                assert_numbered_present(&store, n);
            }
        }
        // The indexes went into the same transactions as the records: they agree after any kill.
        if let Err(problem) = store.indexes().check() {
            panic!("round {round}: after kill -9: {problem}");
        }
        // Whatever else survived (unflushed writes may or may not) must decode too.
        let total = store.outbox_entries().expect("outbox decodes").len()
            + store.inbox_entries().expect("inbox decodes").len()
            + store.relay_entries().expect("relay decodes").len();
        let expected: u64 = confirmed.iter().map(|range| range.end - range.start).sum();
        assert!(total as u64 >= expected);
        println!(
            "round {round} ({sync}): killed after {flushed} flushed (+{extra_delay:?}); \
             {expected} confirmed, {total} present"
        );
    }
    println!("kill -9 test: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 3. Clear errors, never panics.

#[test]
fn store_refuses_other_format_version_clearly() {
    let dir = temp_dir();
    drop(open(dir.path(), SyncMode::Flush));
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        let meta = raw.open_tree(TREE_META).expect("meta tree");
        let stored = meta
            .get(KEY_FORMAT_VERSION)
            .expect("read")
            .expect("a new store is stamped");
        assert_eq!(
            codec::decode::<u32>(&stored, 16).expect("a u32"),
            FORMAT_VERSION
        );
        let other = codec::encode(&(FORMAT_VERSION + 6), 16).expect("encode");
        meta.insert(KEY_FORMAT_VERSION, other).expect("write");
        raw.flush().expect("flush");
    }
    let error = SledStore::open(dir.path(), &StoreOptions::default()).expect_err("refused");
    assert!(
        matches!(error, StoreOpenError::UnsupportedVersion { found, supported, .. }
            if found == FORMAT_VERSION + 6 && supported == FORMAT_VERSION),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("format version {}", FORMAT_VERSION + 6)),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn store_reports_corrupt_value_with_tree_and_key() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let id = MessageId([0x11; 16]);
    let other_id = MessageId([0x22; 16]);
    let sender = NodeId([7; 32]);
    {
        let mut store = open(dir.path(), SyncMode::Flush);
        store.put_outbox(&random_outbox(&mut rng, id)).expect("put");
        store
            .put_outbox(&random_outbox(&mut rng, other_id))
            .expect("put");
        store
            .put_inbox(&random_inbox(&mut rng, sender, id))
            .expect("put");
        store.flush().expect("flush");
    }
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        // Garbage under a valid outbox key.
        raw.open_tree(TREE_OUTBOX)
            .expect("outbox tree")
            .insert(id.0, &b"\xffgarbage, not an entry"[..])
            .expect("write");
        // A valid inbox entry stored under the wrong key.
        let inbox = raw.open_tree(TREE_INBOX).expect("inbox tree");
        let mut wrong_key = [0u8; 48];
        wrong_key[..32].copy_from_slice(&[8; 32]);
        wrong_key[32..].copy_from_slice(&other_id.0);
        let valid = inbox.iter().next().expect("one entry").expect("read").1;
        inbox.insert(wrong_key, valid).expect("write");
        raw.flush().expect("flush");
    }
    let store = open(dir.path(), SyncMode::Flush);
    let error = store.get_outbox(&id).expect_err("corrupt value");
    assert!(error.0.contains("`outbox`"), "{error}");
    assert!(error.0.contains(&hex::encode(id.0)), "{error}");
    let error = store.outbox_entries().expect_err("listing hits it too");
    assert!(error.0.contains("`outbox`"), "{error}");
    assert!(store.find_message(&id).is_err());
    // The untouched entry still reads.
    assert!(store.get_outbox(&other_id).expect("intact").is_some());

    // The checksum covers the key: a value moved under another key fails it.
    let error = store.inbox_entries().expect_err("misplaced entry");
    assert!(error.0.contains("`inbox`"), "{error}");
    assert!(error.0.contains("checksum"), "{error}");
    assert!(error.0.contains(&hex::encode([8u8; 32])), "{error}");
    assert!(store.get_inbox(&sender, &id).expect("intact").is_some());
}

#[test]
fn store_reports_damaged_database_with_operator_advice() {
    let dir = temp_dir();
    drop(open(dir.path(), SyncMode::Flush));
    // sled's `conf` file, damaged: sled reports `Corruption` when it reads it back.
    std::fs::write(
        dir.path().join("conf"),
        b"this is not sled's config\n\0\0\0\0",
    )
    .expect("damage conf");
    let error = SledStore::open(dir.path(), &StoreOptions::default()).expect_err("refused");
    assert!(matches!(error, StoreOpenError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    for advice in ["Stop the node", "keep a copy", "backup", "support"] {
        assert!(
            message.contains(advice),
            "`{advice}` missing from: {message}"
        );
    }
}

#[test]
fn store_in_use_is_refused_to_second_opener() {
    let dir = temp_dir();
    let _first = open(dir.path(), SyncMode::Flush);
    let error = SledStore::open(dir.path(), &StoreOptions::default()).expect_err("locked");
    assert!(matches!(error, StoreOpenError::Locked { .. }), "{error:?}");
}

#[test]
fn store_options_read_from_toml() {
    let options: StoreOptions =
        toml::from_str("sync = \"flush\"\ncache_capacity_bytes = 1048576").expect("parse");
    assert_eq!(options.sync, SyncMode::Flush);
    assert_eq!(options.cache_capacity_bytes, 1 << 20);
    let defaults: StoreOptions = toml::from_str("").expect("parse");
    assert_eq!(defaults, StoreOptions::default());
    assert_eq!(defaults.sync, SyncMode::FlushAndSyncData);
    let synced: StoreOptions = toml::from_str("sync = \"flush-and-sync-data\"").expect("parse");
    assert_eq!(synced.sync, SyncMode::FlushAndSyncData);
    assert!(toml::from_str::<StoreOptions>("sync = \"fsync\"").is_err());
}

#[test]
fn store_idle_flushes_do_no_io_and_stats_count_commits() {
    let dir = temp_dir();
    let mut store = open(dir.path(), SyncMode::FlushAndSyncData);
    let before = store.stats();
    store.flush().expect("idle flush");
    assert_eq!(store.stats().flushes, before.flushes);
    assert_eq!(store.stats().idle_flushes, before.idle_flushes + 1);
    store.put_roster(b"signed roster").expect("put");
    store.flush().expect("flush");
    assert_eq!(store.stats().flushes, before.flushes + 1);
    assert!(store.size_on_disk().expect("size") > 0);
}

/// The daemon's pipelined commit: a flush covers what was written before it began; writes made
/// while it runs need (and get) the next one; both survive a reopen.
#[test]
fn a_flush_running_on_another_thread_covers_what_came_before_it_and_the_next_covers_the_rest() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let first = random_outbox(&mut rng, numbered_id(1));
    let second = random_outbox(&mut rng, numbered_id(2));
    {
        let mut store = open(dir.path(), SyncMode::FlushAndSyncData);
        store.put_outbox(&first).expect("put");
        let job = store
            .begin_flush()
            .expect("begin")
            .expect("something to commit");
        assert!(!store.is_dirty(), "the begun flush covers the first write");
        let running = std::thread::spawn(move || job.run());
        store.put_outbox(&second).expect("put while the flush runs");
        assert!(
            store.is_dirty(),
            "a write during the flush needs the next one"
        );
        store
            .end_flush(running.join().expect("flush thread"))
            .expect("flush");
        let next = store
            .begin_flush()
            .expect("begin")
            .expect("the second write");
        store.end_flush(next.run()).expect("flush");
        assert!(
            store.begin_flush().expect("begin").is_none(),
            "nothing left"
        );
        assert_eq!(store.stats().flushes, 3, "format stamp + two commits");
    }
    let store = open(dir.path(), SyncMode::FlushAndSyncData);
    assert_eq!(
        store.get_outbox(&first.message_id).expect("read"),
        Some(first)
    );
    assert_eq!(
        store.get_outbox(&second.message_id).expect("read"),
        Some(second)
    );
}

/// A begun flush that fails is final, like a blocking one.
#[test]
fn a_failed_background_flush_stops_every_later_flush() {
    let dir = temp_dir();
    let mut store = open(dir.path(), SyncMode::FlushAndSyncData);
    std::fs::remove_dir_all(dir.path().join("blobs")).expect("remove blobs");
    store.put_roster(b"roster 1").expect("put");
    let job = store.begin_flush().expect("begin").expect("job");
    let done = std::thread::spawn(move || job.run())
        .join()
        .expect("thread");
    assert!(store.end_flush(done).is_err(), "the sync fails");
    std::fs::create_dir(dir.path().join("blobs")).expect("restore blobs");
    store.put_roster(b"roster 2").expect("put");
    let error = match store.begin_flush() {
        Err(error) => error,
        Ok(_) => panic!("a later flush must not begin"),
    };
    assert!(error.0.contains("restart the node"), "{error}");
}

#[test]
fn store_keeps_blob_sized_values_across_restart() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let sender = NodeId([2; 32]);
    let mut entry = random_inbox(&mut rng, sender, MessageId([0x33; 16]));
    entry.envelope = vec![0xEE; BLOB_SIZED];
    {
        let mut store = open(dir.path(), SyncMode::FlushAndSyncData);
        store.put_inbox(&entry).expect("put");
        store.flush().expect("flush");
        // sled keeps values this large in separate blob files, which the store syncs itself.
        let blobs = std::fs::read_dir(dir.path().join("blobs"))
            .expect("blobs directory")
            .count();
        assert!(
            blobs > 0,
            "expected a blob file for a {BLOB_SIZED}-byte value"
        );
    }
    let store = open(dir.path(), SyncMode::FlushAndSyncData);
    assert_eq!(
        store.get_inbox(&sender, &entry.message_id).expect("read"),
        Some(entry)
    );
}

#[test]
fn store_refuses_to_flush_again_after_a_failed_flush() {
    let dir = temp_dir();
    let mut store = open(dir.path(), SyncMode::FlushAndSyncData);
    // Make the blob sync fail: its directory is gone.
    std::fs::remove_dir_all(dir.path().join("blobs")).expect("remove blobs");
    store.put_roster(b"roster 1").expect("put");
    let error = store.flush().expect_err("the sync fails");
    assert!(error.0.contains("blob"), "{error}");
    std::fs::create_dir(dir.path().join("blobs")).expect("restore blobs");
    store.put_roster(b"roster 2").expect("put");
    let error = store
        .flush()
        .expect_err("a later flush must not pretend to succeed");
    assert!(error.0.contains("restart the node"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// 4. Integrity: checksums on every record, migration from format 1, the cross-check with the
//    audit trail.

#[test]
fn every_flipped_byte_of_a_record_is_named_by_tree_and_key() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let id = MessageId([0x31; 16]);
    {
        let mut store = open(dir.path(), SyncMode::Flush);
        store.put_outbox(&random_outbox(&mut rng, id)).expect("put");
        store.flush().expect("flush");
    }
    let original = {
        let raw = sled::open(dir.path()).expect("raw sled");
        let value = raw
            .open_tree(TREE_OUTBOX)
            .expect("tree")
            .get(id.0)
            .expect("read")
            .expect("there")
            .to_vec();
        raw.flush().expect("flush");
        value
    };
    // Every single-bit change anywhere in the value (checksum or payload) is caught, including
    // changes that would still decode as a (different) entry.
    let store = open(dir.path(), SyncMode::Flush);
    let tree = store.open_tree(TREE_OUTBOX).expect("tree");
    for index in 0..original.len() {
        let mut value = original.clone();
        value[index] ^= 0x04;
        tree.insert(id.0, value).expect("tamper");
        let error = store.get_outbox(&id).expect_err("caught");
        assert!(error.0.contains("`outbox`"), "byte {index}: {error}");
        assert!(
            error.0.contains(&hex::encode(id.0)),
            "byte {index}: {error}"
        );
        let check = store.check_records(true);
        assert_eq!(check.damaged.len(), 1, "byte {index}");
        assert_eq!(check.damaged[0].tree, TREE_OUTBOX);
        assert_eq!(check.damaged[0].key, hex::encode(id.0));
        assert!(check.outbox.is_empty());
    }
    tree.insert(id.0, original).expect("restore");
    assert!(store.get_outbox(&id).expect("intact again").is_some());
    assert!(store.check_records(true).damaged.is_empty());
}

/// Turns the store in `dir` into a format-1 store: every value without its checksum, version 1.
fn downgrade_to_format_1(dir: &Path) {
    let raw = sled::open(dir).expect("raw sled");
    for name in [TREE_OUTBOX, TREE_INBOX, TREE_RELAY, TREE_META] {
        let tree = raw.open_tree(name).expect("tree");
        for item in tree.iter() {
            let (key, value) = item.expect("read");
            if key.as_ref() == KEY_FORMAT_VERSION {
                continue;
            }
            tree.insert(key, &value[CHECKSUM_BYTES..]).expect("write");
        }
    }
    raw.open_tree(TREE_META)
        .expect("meta")
        .insert(
            KEY_FORMAT_VERSION,
            codec::encode(&1u32, 16).expect("encode"),
        )
        .expect("write");
    raw.flush().expect("flush");
}

#[test]
fn a_format_1_store_is_migrated_once_and_reads_the_same() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let sender = NodeId([7; 32]);
    let (outbox, inbox, relay) = {
        let mut store = open(dir.path(), SyncMode::Flush);
        for n in 0..20u8 {
            store
                .put_outbox(&random_outbox(&mut rng, MessageId([n; 16])))
                .expect("put");
            store
                .put_inbox(&random_inbox(&mut rng, sender, MessageId([n; 16])))
                .expect("put");
        }
        store
            .put_relay(&random_relay(&mut rng, sender, MessageId([1; 16])))
            .expect("put");
        store.put_roster(b"a signed roster").expect("roster");
        store.flush().expect("flush");
        (
            store.outbox_entries().expect("list"),
            store.inbox_entries().expect("list"),
            store.relay_entries().expect("list"),
        )
    };
    downgrade_to_format_1(dir.path());
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        let roster = raw
            .open_tree(TREE_META)
            .expect("meta")
            .get(KEY_ROSTER)
            .expect("read")
            .expect("there");
        assert_eq!(
            &roster[..],
            b"a signed roster",
            "format 1 keeps values bare"
        );
    }
    let store = open(dir.path(), SyncMode::Flush);
    assert_eq!(store.outbox_entries().expect("list"), outbox);
    assert_eq!(store.inbox_entries().expect("list"), inbox);
    assert_eq!(store.relay_entries().expect("list"), relay);
    assert_eq!(
        store.get_roster().expect("roster").as_deref(),
        Some(&b"a signed roster"[..])
    );
    assert!(store.migrated_unsigned().expect("read"));
    let check = store.check_records(true);
    assert!(check.damaged.is_empty(), "{:?}", check.damaged);
    assert_eq!(check.outbox.len(), 20);
    drop(store);
    // Migrated for good: the values now carry checksums and the version says 2.
    let raw = sled::open(dir.path()).expect("raw sled");
    let version = raw
        .open_tree(TREE_META)
        .expect("meta")
        .get(KEY_FORMAT_VERSION)
        .expect("read")
        .expect("there");
    assert_eq!(
        codec::decode::<u32>(&version, 16).expect("u32"),
        FORMAT_VERSION
    );
    let roster = raw
        .open_tree(TREE_META)
        .expect("meta")
        .get(KEY_ROSTER)
        .expect("read")
        .expect("there");
    assert_eq!(&roster[CHECKSUM_BYTES..], b"a signed roster");
}

#[test]
fn a_damaged_format_1_store_is_refused_unchanged_naming_the_record() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let id = MessageId([0x44; 16]);
    {
        let mut store = open(dir.path(), SyncMode::Flush);
        store.put_outbox(&random_outbox(&mut rng, id)).expect("put");
        store.flush().expect("flush");
    }
    downgrade_to_format_1(dir.path());
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        raw.open_tree(TREE_OUTBOX)
            .expect("outbox")
            .insert(id.0, &b"\xffnot an entry"[..])
            .expect("tamper");
        raw.flush().expect("flush");
    }
    let error = loop {
        match SledStore::open(dir.path(), &options(SyncMode::Flush)) {
            Err(StoreOpenError::Locked { .. }) => std::thread::sleep(Duration::from_millis(10)),
            other => break other.expect_err("refused"),
        }
    };
    let message = error.to_string();
    assert!(matches!(error, StoreOpenError::Corrupt { .. }), "{message}");
    assert!(message.contains(&hex::encode(id.0)), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    let raw = sled::open(dir.path()).expect("raw sled");
    let version = raw
        .open_tree(TREE_META)
        .expect("meta")
        .get(KEY_FORMAT_VERSION)
        .expect("read")
        .expect("there");
    assert_eq!(codec::decode::<u32>(&version, 16).expect("u32"), 1);
}

fn record(log: &mut AuditLog, kind: AuditKind, id: MessageId, peer: Option<NodeId>) {
    let mut facts = AuditFacts::new(kind);
    facts.message_id = Some(id);
    facts.peer = peer;
    log.append(Timestamp(1_000), facts).expect("append");
}

#[test]
fn the_store_is_cross_checked_with_the_audit_trail_both_ways() {
    let data_dir = temp_dir();
    let store_dir = data_dir.path().join("store");
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let sender = NodeId([7; 32]);
    let mut store = open(&store_dir, SyncMode::Flush);
    let mut log = AuditLog::open(&store).expect("log");
    for n in 0..5u8 {
        let id = MessageId([n; 16]);
        store.put_outbox(&random_outbox(&mut rng, id)).expect("put");
        record(&mut log, AuditKind::Submitted, id, Some(NodeId([1; 32])));
        record(&mut log, AuditKind::Delivered, id, Some(NodeId([1; 32])));
        store
            .put_inbox(&random_inbox(&mut rng, sender, id))
            .expect("put");
        record(&mut log, AuditKind::Received, id, Some(sender));
    }
    log.write_pending(&mut store).expect("write");
    store.flush().expect("flush");
    let report = quickfreeze_node::integrity::check(&store, &log, data_dir.path(), None, true);
    assert!(report.missing.is_empty(), "{report:?}");
    assert!(report.unrecorded.is_empty(), "{report:?}");
    assert!(report.damaged.is_empty(), "{report:?}");
    assert_eq!((report.outbox, report.inbox), (5, 5));

    // A message the audit says was received is gone; one stored without its record.
    let inbox = store.open_tree(TREE_INBOX).expect("tree");
    let mut key = sender.0.to_vec();
    key.extend_from_slice(&[3; 16]);
    inbox.remove(&key).expect("remove");
    store
        .put_inbox(&random_inbox(&mut rng, sender, MessageId([9; 16])))
        .expect("put");
    // And one outbox record damaged.
    let outbox = store.open_tree(TREE_OUTBOX).expect("tree");
    let mut value = outbox
        .get([1u8; 16])
        .expect("read")
        .expect("there")
        .to_vec();
    let last = value.len() - 1;
    value[last] ^= 0xff;
    outbox.insert([1u8; 16], value).expect("tamper");

    let report = quickfreeze_node::integrity::check(&store, &log, data_dir.path(), None, true);
    assert!(report.is_damaged());
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].tree, TREE_OUTBOX);
    // The damaged outbox record counts as missing for the audit records that name it.
    let missing: Vec<(String, String)> = report
        .missing
        .iter()
        .map(|message| (message.tree.clone(), message.message_id.clone()))
        .collect();
    assert_eq!(
        missing,
        vec![
            ("inbox".to_string(), MessageId([3; 16]).to_string()),
            ("outbox".to_string(), MessageId([1; 16]).to_string()),
        ]
    );
    assert_eq!(report.unrecorded.len(), 1, "{report:?}");
    assert_eq!(
        report.unrecorded[0].message_id,
        MessageId([9; 16]).to_string()
    );
    let problems = report.problems().join("\n");
    assert!(
        problems.contains(&MessageId([3; 16]).to_string()),
        "{problems}"
    );
    assert!(problems.contains("says `received`"), "{problems}");
}

// Indexes: rebuilt at open when their marker is missing; damage to them is named.

/// A store with `count` inbox and outbox entries from the model test's generators.
fn filled_store(dir: &Path, count: usize, seed: u64) -> (SledStore, MemoryStore) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = MemoryStore::new();
    let mut store = open(dir, SyncMode::Flush);
    for _ in 0..count {
        let id = pick_id(&mut rng);
        let entry = random_outbox(&mut rng, id);
        model.put_outbox(&entry).expect("model put");
        store.put_outbox(&entry).expect("put outbox");
        let (sender, id) = (pick_sender(&mut rng), pick_id(&mut rng));
        let entry = random_inbox(&mut rng, sender, id);
        model.put_inbox(&entry).expect("model put");
        store.put_inbox(&entry).expect("put inbox");
    }
    store.flush().expect("flush");
    model.flush().expect("model flush");
    (store, model)
}

#[test]
fn store_rebuilds_missing_indexes_at_open() {
    let dir = temp_dir();
    let (store, model) = filled_store(dir.path(), 40, 7);
    assert_indexes(&model, &store, "before");
    // An older store: no marker, and an index tree emptied (as a store written before indexes
    // existed would have it).
    let meta = store.open_tree(TREE_META).expect("meta");
    meta.remove(KEY_INDEX_VERSION).expect("remove the marker");
    let open_requests = store.open_tree(TREE_OPEN_REQUESTS).expect("index tree");
    open_requests.clear().expect("clear an index");
    let mut store = store;
    store.note_write();
    store.flush().expect("flush");
    assert!(store.indexes().check().is_err(), "the check must see it");
    drop((meta, open_requests, store));
    let store = open(dir.path(), SyncMode::Flush);
    assert_indexes(&model, &store, "after the rebuild at open");
}

#[test]
fn store_index_check_names_the_index_that_disagrees() {
    let dir = temp_dir();
    let (store, _model) = filled_store(dir.path(), 20, 8);
    let by_time = store.open_tree(TREE_INBOX_BY_TIME).expect("index tree");
    let first = by_time.first().expect("read").expect("one key").0;
    by_time.remove(first).expect("remove");
    let problem = store.indexes().check().expect_err("a missing key is found");
    assert!(
        problem.contains(TREE_INBOX_BY_TIME) && problem.contains("1 keys missing"),
        "{problem}"
    );
}
