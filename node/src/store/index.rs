//! Index trees beside the outbox and inbox records, so that what the console and the deadline
//! check ask for costs the same with a thousand or a million stored messages.
//!
//! # What is indexed
//!
//! Every key below is the full answer (values are empty), written by the same sled transaction
//! as the record it indexes, so that a crash at any moment leaves records and indexes that agree
//! (sled makes a transaction atomic across trees; [`Store::flush`] makes it durable with the
//! rest of the group commit):
//!
//! - [`TREE_INBOX_BY_ID`]: message id ‖ sender, for lookups and id-prefix range scans of the
//!   inbox (the outbox is keyed by id already, so a prefix scan there is a plain range scan);
//! - [`TREE_INBOX_BY_TIME`]: received-at (big-endian ms) ‖ sender ‖ id, newest first for paging;
//! - [`TREE_OUTBOX_BY_TIME`]: created-at ‖ id, likewise;
//! - [`TREE_OPEN_OUTBOX`]: ids of outbox entries not in a final state (the receipt clock);
//! - [`TREE_UNACKNOWLEDGED`]: sender ‖ id of requests no officer has acknowledged yet;
//! - [`TREE_OPEN_REQUESTS`]: sender ‖ id of received requests without a substantive status reply
//!   yet (the acknowledge and status clocks run only on these). A request is answered when one
//!   of the ids in its `replies` is a substantive status reply in the outbox; writing a reply
//!   re-judges the request it references (the core lists a reply in the `replies` of exactly
//!   the request it references, so the two views agree);
//! - [`TREE_THREADS`]: thread root ‖ direction ‖ sender ‖ id, one case thread as one range;
//! - counters in the meta tree: stored inbox and outbox entries and unacknowledged requests.
//!
//! "Open" sets shrink as officers act, so the deadline check and `status` cost grows with the
//! work still to do, never with history.
//!
//! # Rebuilding
//!
//! [`KEY_INDEX_VERSION`] in the meta tree says the indexes are complete. A store written before
//! indexes existed (or whose indexes a crash interrupted while being rebuilt) has none: opening
//! it rebuilds them from the records, writing the marker last.

use std::collections::{BTreeMap, BTreeSet};

use quickfreeze_keys::NodeId;
use quickfreeze_proto::core::{awaits_acknowledgement, InboxEntry, OutboxEntry, StoreError};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::MessageId;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::{decode_entry, sender_key, sled_error, StoredEntry, TREE_INBOX, TREE_OUTBOX};

/// Inbox: message id ‖ sender.
pub const TREE_INBOX_BY_ID: &str = "index/inbox-by-id";
/// Inbox: received-at ‖ sender ‖ message id.
pub const TREE_INBOX_BY_TIME: &str = "index/inbox-by-time";
/// Outbox: created-at ‖ message id.
pub const TREE_OUTBOX_BY_TIME: &str = "index/outbox-by-time";
/// Outbox ids not in a final state.
pub const TREE_OPEN_OUTBOX: &str = "index/open-outbox";
/// Inbox sender ‖ id of requests awaiting an officer's acknowledgement.
pub const TREE_UNACKNOWLEDGED: &str = "index/unacknowledged";
/// Inbox sender ‖ id of requests without a substantive status reply.
pub const TREE_OPEN_REQUESTS: &str = "index/open-requests";
/// Thread root ‖ direction (0 inbound, 1 outbound) ‖ sender (zeros for outbound) ‖ id.
pub const TREE_THREADS: &str = "index/threads";
/// Key in the meta tree of the index format; absent means "rebuild at open".
pub const KEY_INDEX_VERSION: &[u8] = b"index_version";
/// The index layout this code writes.
pub const INDEX_VERSION: u32 = 1;

const COUNT_INBOX: &[u8] = b"count/inbox";
const COUNT_OUTBOX: &[u8] = b"count/outbox";
const COUNT_UNACKNOWLEDGED: &[u8] = b"count/unacknowledged";

/// Whether `key` of the meta tree is one of the indexes' own (the marker or a counter): derived
/// data kept without the record checksum, which [`Indexes::check`] verifies against the records.
pub(crate) fn is_index_meta_key(key: &[u8]) -> bool {
    key == KEY_INDEX_VERSION || key.starts_with(b"count/")
}

// Positions in `Indexes::trees`.
const OUTBOX: usize = 0;
const INBOX: usize = 1;
const META: usize = 2;
const INBOX_BY_ID: usize = 3;
const INBOX_BY_TIME: usize = 4;
const OUTBOX_BY_TIME: usize = 5;
const OPEN_OUTBOX: usize = 6;
const UNACKNOWLEDGED: usize = 7;
const OPEN_REQUESTS: usize = 8;
const THREADS: usize = 9;
const INDEX_TREES: [&str; 7] = [
    TREE_INBOX_BY_ID,
    TREE_INBOX_BY_TIME,
    TREE_OUTBOX_BY_TIME,
    TREE_OPEN_OUTBOX,
    TREE_UNACKNOWLEDGED,
    TREE_OPEN_REQUESTS,
    TREE_THREADS,
];

/// How much history a store holds, from counters kept in the same transactions as the records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HistoryCounts {
    /// Inbox entries stored.
    pub inbox: u64,
    /// Outbox entries stored.
    pub outbox: u64,
    /// Received requests no officer has acknowledged yet.
    pub inbox_unacknowledged: u64,
}

/// The record trees and their index trees, shared by the store and its readers (sled trees are
/// shared handles).
#[derive(Clone)]
pub struct Indexes {
    /// Behind an `Arc`: the store and every reader share one set of handles, and the store
    /// stays small.
    trees: std::sync::Arc<[sled::Tree; 10]>,
}

/// A received message is a request that starts the officers' clocks.
fn is_request(payload: &Payload) -> bool {
    crate::deadlines::is_request(payload.kind())
}

fn inbox_by_id_key(entry: &InboxEntry) -> Vec<u8> {
    let mut key = entry.message_id.0.to_vec();
    key.extend_from_slice(&entry.sender.0);
    key
}

fn inbox_time_key(entry: &InboxEntry) -> Vec<u8> {
    let mut key = entry.received_at.0.to_be_bytes().to_vec();
    key.extend_from_slice(&entry.sender.0);
    key.extend_from_slice(&entry.message_id.0);
    key
}

fn outbox_time_key(entry: &OutboxEntry) -> Vec<u8> {
    let mut key = entry.created_at.0.to_be_bytes().to_vec();
    key.extend_from_slice(&entry.message_id.0);
    key
}

fn thread_key(root: &MessageId, sender: Option<&NodeId>, id: &MessageId) -> Vec<u8> {
    let mut key = root.0.to_vec();
    key.push(u8::from(sender.is_none()));
    key.extend_from_slice(&sender.map_or([0u8; 32], |sender| sender.0));
    key.extend_from_slice(&id.0);
    key
}

fn inbox_thread_key(entry: &InboxEntry) -> Vec<u8> {
    let root = thread_root(entry.message_id, &entry.payload);
    thread_key(&root, Some(&entry.sender), &entry.message_id)
}

fn outbox_thread_key(entry: &OutboxEntry) -> Vec<u8> {
    let root = thread_root(entry.message_id, &entry.payload);
    thread_key(&root, None, &entry.message_id)
}

/// The first message of the thread `payload` belongs to: the referenced request for a status
/// reply, the message itself otherwise.
pub fn thread_root(message_id: MessageId, payload: &Payload) -> MessageId {
    match payload {
        Payload::Status(update) => update.references,
        _ => message_id,
    }
}

fn unacknowledged(entry: &InboxEntry) -> bool {
    entry.acknowledged_at.is_none() && awaits_acknowledgement(&entry.payload)
}

fn substantive_reply(entry: &OutboxEntry) -> bool {
    matches!(&entry.payload, Payload::Status(update) if update.is_substantive())
}

fn read_counter(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_be_bytes)
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort(error: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(error)
}

fn tx_decode<T: StoredEntry>(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(bytes) => decode_entry::<T>(key, &bytes).map(Some).map_err(abort),
        None => Ok(None),
    }
}

fn tx_add(tree: &TransactionalTree, key: &[u8], delta: i64) -> TxResult<()> {
    if delta == 0 {
        return Ok(());
    }
    let now = read_counter(tree.get(key)?.as_deref());
    let next = now.saturating_add_signed(delta);
    tree.insert(key, next.to_be_bytes().to_vec())?;
    Ok(())
}

fn tx_set(tree: &TransactionalTree, key: Vec<u8>, present: bool) -> TxResult<()> {
    if present {
        tree.insert(key, Vec::new())?;
    } else {
        tree.remove(key)?;
    }
    Ok(())
}

/// Whether `entry` is a request still waiting for a substantive status reply, judged with the
/// outbox as `outbox_has` sees it.
fn open_request(
    entry: &InboxEntry,
    mut is_substantive_reply: impl FnMut(&MessageId) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    if !is_request(&entry.payload) {
        return Ok(false);
    }
    for reply in &entry.replies {
        if is_substantive_reply(reply)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn tx_open_request(tx: &[TransactionalTree], entry: &InboxEntry) -> TxResult<bool> {
    let mut failure = None;
    let open = open_request(entry, |reply| {
        match tx_decode::<OutboxEntry>(&tx[OUTBOX], &reply.0) {
            Ok(found) => Ok(found.as_ref().is_some_and(substantive_reply)),
            Err(error) => {
                failure = Some(error);
                Ok(false)
            }
        }
    })
    .map_err(abort)?;
    match failure {
        Some(error) => Err(error),
        None => Ok(open),
    }
}

fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => sled_error("write", "index", error),
    }
}

/// A consistency check's finding: which index disagrees with the records, and how.
fn mismatch(tree: &str, expected: &BTreeSet<Vec<u8>>, found: &BTreeSet<Vec<u8>>) -> String {
    let missing = expected.difference(found).count();
    let extra = found.difference(expected).count();
    format!("index `{tree}` disagrees with the records: {missing} keys missing, {extra} extra")
}

impl Indexes {
    /// Opens the index trees of `db` beside the given record trees.
    pub(super) fn open(
        db: &sled::Db,
        outbox: &sled::Tree,
        inbox: &sled::Tree,
        meta: &sled::Tree,
    ) -> sled::Result<Indexes> {
        let open = |name: &str| db.open_tree(name);
        Ok(Indexes {
            trees: std::sync::Arc::new([
                outbox.clone(),
                inbox.clone(),
                meta.clone(),
                open(TREE_INBOX_BY_ID)?,
                open(TREE_INBOX_BY_TIME)?,
                open(TREE_OUTBOX_BY_TIME)?,
                open(TREE_OPEN_OUTBOX)?,
                open(TREE_UNACKNOWLEDGED)?,
                open(TREE_OPEN_REQUESTS)?,
                open(TREE_THREADS)?,
            ]),
        })
    }

    fn tree(&self, index: usize) -> &sled::Tree {
        &self.trees[index]
    }

    /// Writes an encoded outbox record and its index keys in one transaction.
    pub(super) fn put_outbox(
        &self,
        key: &[u8],
        bytes: &[u8],
        entry: &OutboxEntry,
    ) -> Result<(), StoreError> {
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        trees
            .as_slice()
            .transaction(|tx| {
                let old = tx_decode::<OutboxEntry>(&tx[OUTBOX], key)?;
                tx[OUTBOX].insert(key, bytes)?;
                if let Some(old) = &old {
                    tx[OUTBOX_BY_TIME].remove(outbox_time_key(old))?;
                    tx[THREADS].remove(outbox_thread_key(old))?;
                }
                tx[OUTBOX_BY_TIME].insert(outbox_time_key(entry), Vec::new())?;
                tx[THREADS].insert(outbox_thread_key(entry), Vec::new())?;
                tx_set(&tx[OPEN_OUTBOX], key.to_vec(), !entry.state.is_final())?;
                if old.is_none() {
                    tx_add(&tx[META], COUNT_OUTBOX, 1)?;
                }
                // A status reply may close (or, rewritten, reopen) the request it answers.
                let mut answered: Vec<[u8; 48]> = Vec::new();
                for reply in old.iter().chain(std::iter::once(entry)) {
                    if let Payload::Status(update) = &reply.payload {
                        let request_key = sender_key(&reply.recipient, &update.references);
                        if !answered.contains(&request_key) {
                            answered.push(request_key);
                        }
                    }
                }
                for request_key in answered {
                    if let Some(request) = tx_decode::<InboxEntry>(&tx[INBOX], &request_key)? {
                        let open = tx_open_request(tx, &request)?;
                        tx_set(&tx[OPEN_REQUESTS], request_key.to_vec(), open)?;
                    }
                }
                Ok(())
            })
            .map_err(transaction_error)
    }

    /// Writes an encoded inbox record and its index keys in one transaction.
    pub(super) fn put_inbox(
        &self,
        key: &[u8],
        bytes: &[u8],
        entry: &InboxEntry,
    ) -> Result<(), StoreError> {
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        trees
            .as_slice()
            .transaction(|tx| {
                let old = tx_decode::<InboxEntry>(&tx[INBOX], key)?;
                tx[INBOX].insert(key, bytes)?;
                if let Some(old) = &old {
                    tx[INBOX_BY_TIME].remove(inbox_time_key(old))?;
                    tx[THREADS].remove(inbox_thread_key(old))?;
                }
                tx[INBOX_BY_ID].insert(inbox_by_id_key(entry), Vec::new())?;
                tx[INBOX_BY_TIME].insert(inbox_time_key(entry), Vec::new())?;
                tx[THREADS].insert(inbox_thread_key(entry), Vec::new())?;
                tx_set(&tx[UNACKNOWLEDGED], key.to_vec(), unacknowledged(entry))?;
                let open = tx_open_request(tx, entry)?;
                tx_set(&tx[OPEN_REQUESTS], key.to_vec(), open)?;
                if old.is_none() {
                    tx_add(&tx[META], COUNT_INBOX, 1)?;
                }
                let was = old.as_ref().is_some_and(unacknowledged);
                tx_add(
                    &tx[META],
                    COUNT_UNACKNOWLEDGED,
                    i64::from(unacknowledged(entry)) - i64::from(was),
                )?;
                Ok(())
            })
            .map_err(transaction_error)
    }

    /// Whether the indexes are complete (the marker is present).
    pub(super) fn complete(&self) -> Result<bool, StoreError> {
        Ok(self
            .tree(META)
            .get(KEY_INDEX_VERSION)
            .map_err(|error| sled_error("read", "meta", error))?
            .is_some())
    }

    /// Rebuilds every index and counter from the records, then writes the marker. The caller
    /// flushes.
    pub(super) fn rebuild(&self) -> Result<(), StoreError> {
        let meta = self.tree(META);
        meta.remove(KEY_INDEX_VERSION)
            .map_err(|error| sled_error("write", "meta", error))?;
        for position in INBOX_BY_ID..=THREADS {
            self.tree(position)
                .clear()
                .map_err(|error| sled_error("clear", INDEX_TREES[position - INBOX_BY_ID], error))?;
        }
        let expected = self.expected()?;
        for (position, keys) in &expected.sets {
            let tree = self.tree(*position);
            for key in keys {
                tree.insert(key.as_slice(), Vec::new())
                    .map_err(|error| sled_error("write", "index", error))?;
            }
        }
        for (key, value) in [
            (COUNT_INBOX, expected.counts.inbox),
            (COUNT_OUTBOX, expected.counts.outbox),
            (COUNT_UNACKNOWLEDGED, expected.counts.inbox_unacknowledged),
        ] {
            meta.insert(key, value.to_be_bytes().to_vec())
                .map_err(|error| sled_error("write", "meta", error))?;
        }
        meta.insert(KEY_INDEX_VERSION, INDEX_VERSION.to_be_bytes().to_vec())
            .map_err(|error| sled_error("write", "meta", error))?;
        Ok(())
    }

    /// What every index should hold, computed from the records (decodes everything: for the
    /// rebuild and the consistency check only).
    fn expected(&self) -> Result<Expected, StoreError> {
        let mut sets: BTreeMap<usize, BTreeSet<Vec<u8>>> = (INBOX_BY_ID..=THREADS)
            .map(|position| (position, BTreeSet::new()))
            .collect();
        let mut counts = HistoryCounts::default();
        let mut substantive = BTreeSet::new();
        for item in self.tree(OUTBOX).iter() {
            let (key, value) = item.map_err(|error| sled_error("scan", TREE_OUTBOX, error))?;
            let entry: OutboxEntry = decode_entry(&key, &value)?;
            counts.outbox += 1;
            let add = |sets: &mut BTreeMap<usize, BTreeSet<Vec<u8>>>, position, key| {
                sets.entry(position).or_default().insert(key);
            };
            add(&mut sets, OUTBOX_BY_TIME, outbox_time_key(&entry));
            add(&mut sets, THREADS, outbox_thread_key(&entry));
            if !entry.state.is_final() {
                add(&mut sets, OPEN_OUTBOX, key.to_vec());
            }
            if substantive_reply(&entry) {
                substantive.insert(entry.message_id);
            }
        }
        for item in self.tree(INBOX).iter() {
            let (key, value) = item.map_err(|error| sled_error("scan", TREE_INBOX, error))?;
            let entry: InboxEntry = decode_entry(&key, &value)?;
            counts.inbox += 1;
            let mut add = |position, key| {
                sets.entry(position).or_default().insert(key);
            };
            add(INBOX_BY_ID, inbox_by_id_key(&entry));
            add(INBOX_BY_TIME, inbox_time_key(&entry));
            add(THREADS, inbox_thread_key(&entry));
            if unacknowledged(&entry) {
                counts.inbox_unacknowledged += 1;
                add(UNACKNOWLEDGED, key.to_vec());
            }
            if open_request(&entry, |reply| Ok(substantive.contains(reply)))? {
                add(OPEN_REQUESTS, key.to_vec());
            }
        }
        Ok(Expected { sets, counts })
    }

    /// Compares every index and counter with what the records say; `Err` names the first index
    /// that disagrees. Decodes the whole store: for tests and `store verify`.
    pub fn check(&self) -> Result<(), String> {
        if !self.complete().map_err(|error| error.0)? {
            return Err("the indexes are incomplete (no index marker)".into());
        }
        let expected = self.expected().map_err(|error| error.0)?;
        for (position, keys) in &expected.sets {
            let found: BTreeSet<Vec<u8>> = self
                .tree(*position)
                .iter()
                .keys()
                .map(|key| key.map(|key| key.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(|error| error.to_string())?;
            if &found != keys {
                return Err(mismatch(INDEX_TREES[position - INBOX_BY_ID], keys, &found));
            }
        }
        let counts = self.counts().map_err(|error| error.0)?;
        if counts != expected.counts {
            return Err(format!(
                "the history counters disagree with the records: stored {counts:?}, records {:?}",
                expected.counts
            ));
        }
        Ok(())
    }

    /// The counters: no scan.
    pub fn counts(&self) -> Result<HistoryCounts, StoreError> {
        let meta = self.tree(META);
        let read = |key: &[u8]| -> Result<u64, StoreError> {
            Ok(read_counter(
                meta.get(key)
                    .map_err(|error| sled_error("read", "meta", error))?
                    .as_deref(),
            ))
        };
        Ok(HistoryCounts {
            inbox: read(COUNT_INBOX)?,
            outbox: read(COUNT_OUTBOX)?,
            inbox_unacknowledged: read(COUNT_UNACKNOWLEDGED)?,
        })
    }

    fn outbox_by_id(&self, id: &[u8]) -> Result<Option<OutboxEntry>, StoreError> {
        match self
            .tree(OUTBOX)
            .get(id)
            .map_err(|error| sled_error("read", TREE_OUTBOX, error))?
        {
            Some(bytes) => decode_entry(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn inbox_by_key(&self, key: &[u8]) -> Result<Option<InboxEntry>, StoreError> {
        match self
            .tree(INBOX)
            .get(key)
            .map_err(|error| sled_error("read", TREE_INBOX, error))?
        {
            Some(bytes) => decode_entry(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn keys(&self, position: usize) -> impl Iterator<Item = Result<sled::IVec, StoreError>> {
        self.tree(position)
            .iter()
            .keys()
            .map(move |key| key.map_err(|error| sled_error("scan", "index", error)))
    }

    /// Outbox entries not in a final state.
    pub fn open_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut entries = Vec::new();
        for key in self.keys(OPEN_OUTBOX) {
            if let Some(entry) = self.outbox_by_id(&key?)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Received requests no officer has acknowledged yet.
    pub fn unacknowledged(&self) -> Result<Vec<InboxEntry>, StoreError> {
        let mut entries = Vec::new();
        for key in self.keys(UNACKNOWLEDGED) {
            if let Some(entry) = self.inbox_by_key(&key?)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// What the deadline check needs, and no more: the unfinished outbox, the received requests
    /// without a substantive status reply, and the status replies those requests list. The
    /// breaches found in it are exactly those found in the whole store.
    pub fn deadline_items(&self) -> Result<(Vec<OutboxEntry>, Vec<InboxEntry>), StoreError> {
        let mut outbox = self.open_outbox()?;
        let mut have: BTreeSet<MessageId> = outbox.iter().map(|entry| entry.message_id).collect();
        let mut inbox = Vec::new();
        for key in self.keys(OPEN_REQUESTS) {
            let Some(entry) = self.inbox_by_key(&key?)? else {
                continue;
            };
            for reply in &entry.replies {
                if have.insert(*reply) {
                    if let Some(found) = self.outbox_by_id(&reply.0)? {
                        outbox.push(found);
                    }
                }
            }
            inbox.push(entry);
        }
        Ok((outbox, inbox))
    }

    /// The inbox entry with id `id` (the first by sender if several senders used it).
    pub fn inbox_by_id(&self, id: &MessageId) -> Result<Option<InboxEntry>, StoreError> {
        for key in self.tree(INBOX_BY_ID).scan_prefix(id.0).keys() {
            let key = key.map_err(|error| sled_error("scan", TREE_INBOX_BY_ID, error))?;
            if key.len() == 48 {
                let sender = NodeId(key[16..].try_into().expect("32 bytes"));
                if let Some(entry) = self.inbox_by_key(&sender_key(&sender, id))? {
                    return Ok(Some(entry));
                }
            }
        }
        Ok(None)
    }

    /// Every outbox and inbox id that starts with the hex digits `prefix` (a range scan of each
    /// id-keyed tree; case-insensitive; at most `limit` ids).
    pub fn ids_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<MessageId>, StoreError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        let whole = &prefix[..prefix.len() - prefix.len() % 2];
        let bytes = hex::decode(whole)
            .map_err(|error| StoreError(format!("`{prefix}` is not hex digits: {error}")))?;
        let mut found = BTreeSet::new();
        for position in [OUTBOX, INBOX_BY_ID] {
            for key in self.tree(position).scan_prefix(&bytes).keys() {
                let key = key.map_err(|error| sled_error("scan", "index", error))?;
                let Ok(id) = <[u8; 16]>::try_from(&key[..16.min(key.len())]) else {
                    continue;
                };
                let id = MessageId(id);
                if id.to_string().starts_with(&prefix) {
                    found.insert(id);
                    if found.len() >= limit {
                        return Ok(found.into_iter().collect());
                    }
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Up to `limit` inbox entries, newest first by received-at, starting strictly after the
    /// entry `after` (sender, id) in that order, skipping those `skip` says to.
    pub fn inbox_newest(
        &self,
        after: Option<&InboxEntry>,
        limit: usize,
        mut skip: impl FnMut(&MessageId) -> bool,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let tree = self.tree(INBOX_BY_TIME);
        let keys: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = match after {
            Some(after) => Box::new(tree.range(..inbox_time_key(after)).keys().rev()),
            None => Box::new(tree.iter().keys().rev()),
        };
        let mut entries = Vec::new();
        for key in keys {
            if entries.len() >= limit {
                break;
            }
            let key = key.map_err(|error| sled_error("scan", TREE_INBOX_BY_TIME, error))?;
            if key.len() != 56 {
                continue;
            }
            let id = MessageId(key[40..].try_into().expect("16 bytes"));
            if skip(&id) {
                continue;
            }
            let sender = NodeId(key[8..40].try_into().expect("32 bytes"));
            if let Some(entry) = self.inbox_by_key(&sender_key(&sender, &id))? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// As [`Indexes::inbox_newest`], for the outbox by created-at.
    pub fn outbox_newest(
        &self,
        after: Option<&OutboxEntry>,
        limit: usize,
        mut skip: impl FnMut(&MessageId) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let tree = self.tree(OUTBOX_BY_TIME);
        let keys: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = match after {
            Some(after) => Box::new(tree.range(..outbox_time_key(after)).keys().rev()),
            None => Box::new(tree.iter().keys().rev()),
        };
        let mut entries = Vec::new();
        for key in keys {
            if entries.len() >= limit {
                break;
            }
            let key = key.map_err(|error| sled_error("scan", TREE_OUTBOX_BY_TIME, error))?;
            if key.len() != 24 {
                continue;
            }
            let id = MessageId(key[8..].try_into().expect("16 bytes"));
            if skip(&id) {
                continue;
            }
            if let Some(entry) = self.outbox_by_id(&id.0)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Inbox entries received at or after `since` and outbox entries created at or after it:
    /// one range scan of each time index (for statistics over a window).
    pub fn since(
        &self,
        since: quickfreeze_keys::Timestamp,
    ) -> Result<(Vec<OutboxEntry>, Vec<InboxEntry>), StoreError> {
        let start = since.0.to_be_bytes();
        let mut outbox = Vec::new();
        for key in self.tree(OUTBOX_BY_TIME).range(start..).keys() {
            let key = key.map_err(|error| sled_error("scan", TREE_OUTBOX_BY_TIME, error))?;
            if let Some(entry) = self.outbox_by_id(&key[8..])? {
                outbox.push(entry);
            }
        }
        let mut inbox = Vec::new();
        for key in self.tree(INBOX_BY_TIME).range(start..).keys() {
            let key = key.map_err(|error| sled_error("scan", TREE_INBOX_BY_TIME, error))?;
            if let Some(entry) = self.inbox_by_key(&key[8..])? {
                inbox.push(entry);
            }
        }
        Ok((outbox, inbox))
    }

    /// Every message of the thread whose first message is `root`: (inbound, outbound).
    pub fn thread(
        &self,
        root: &MessageId,
    ) -> Result<(Vec<InboxEntry>, Vec<OutboxEntry>), StoreError> {
        let mut inbound = Vec::new();
        let mut outbound = Vec::new();
        for key in self.tree(THREADS).scan_prefix(root.0).keys() {
            let key = key.map_err(|error| sled_error("scan", TREE_THREADS, error))?;
            if key.len() != 65 {
                continue;
            }
            let id = MessageId(key[49..].try_into().expect("16 bytes"));
            if key[16] == 0 {
                let sender = NodeId(key[17..49].try_into().expect("32 bytes"));
                if let Some(entry) = self.inbox_by_key(&sender_key(&sender, &id))? {
                    inbound.push(entry);
                }
            } else if let Some(entry) = self.outbox_by_id(&id.0)? {
                outbound.push(entry);
            }
        }
        Ok((inbound, outbound))
    }
}

struct Expected {
    sets: BTreeMap<usize, BTreeSet<Vec<u8>>>,
    counts: HistoryCounts,
}
