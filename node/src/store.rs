//! [`SledStore`]: the durable implementation of the delivery core's [`Store`] trait, one sled
//! database per node.
//!
//! # What "flushed" promises
//!
//! The core writes through the [`Store`] trait as it works; those writes are visible to later
//! reads at once but are not yet safe. [`Store::flush`] is the *group commit*: when it returns
//! `Ok`, every write made before it is durable in the sense of the configured [`SyncMode`]:
//!
//! - [`SyncMode::Flush`] survives the death of the **process** (`kill -9`, a panic, the OOM
//!   killer). sled's `flush()` hands the log to the kernel (`write` + `sync_file_range`), so once
//!   it returns the data lives in the operating system's page cache and reaches the disk even if
//!   the process never runs another instruction. It does **not** survive a power cut, a kernel
//!   crash or a VM being reset: `sync_file_range` commits neither file metadata nor the drive's
//!   volatile cache, so records acknowledged as flushed can still vanish.
//! - [`SyncMode::FlushAndSyncData`] (the default) survives that too. After sled's `flush()` the
//!   store calls `sync_data()` (`fdatasync`) on sled's `db` file, and on every new file in its
//!   `blobs` directory (sled writes values larger than about 128 KiB, such as big envelopes, to
//!   separate blob files that it never syncs itself) together with that directory. Once this
//!   returns, the data is on stable storage as far as the operating system and the drive report.
//!
//! The node acknowledges nothing (console "accepted", delivery receipts, custody receipts,
//! "delivered") before the flush that covers it has returned `Ok`: that is invariant 1,
//! "durable before acknowledged".
//!
//! # Why one flush per loop turn
//!
//! An `fdatasync` costs a fraction of a millisecond on a good SSD and several milliseconds on
//! slow or networked disks; one per message would cap throughput at a few hundred or thousand
//! messages per second per node and burn IO for nothing. The daemon instead lets the core do all
//! the work of one turn of its event loop (every request, response and timer that is ready),
//! then calls [`Store::flush`] **once**, and only then releases the responses, receipts and
//! console answers of that turn. The cost of the sync is shared by everything in the batch, and
//! under load batches grow by themselves (more work is ready while the previous sync runs).
//! A flush with nothing written since the last one does no IO at all.
//!
//! Flushes come from one caller at a time: sled 0.34's `flush_async` deadlocks under concurrent
//! callers (sled #1308), so this type only ever uses the blocking `flush()`, behind a mutex. The
//! daemon splits a flush in three ([`SledStore::begin_flush`], [`FlushJob::run`] on a blocking
//! thread, [`SledStore::end_flush`]) so that its loop keeps writing while the disk syncs; what a
//! flush promises covers the writes made before it *began*.
//!
//! # Layout
//!
//! Trees ([`TREE_OUTBOX`], [`TREE_INBOX`], [`TREE_RELAY`], [`TREE_META`]):
//!
//! - outbox: key = message id (16 bytes);
//! - inbox and relay: key = sender node id (32 bytes) ‖ message id (16 bytes), so the entries of
//!   one sender are one contiguous range;
//! - meta: [`KEY_ROSTER`] (the signed roster), the signed revocation notices under
//!   [`PREFIX_REVOCATION`], [`KEY_AUDIT_HEAD`] (the node's latest signed audit head, see
//!   `crate::audit_head`) and [`KEY_FORMAT_VERSION`] (a codec encoded `u32`,
//!   [`FORMAT_VERSION`], the one value kept without a checksum so that any release can read it).
//!
//! Index trees beside the outbox and inbox (open items, time order, id prefixes, threads,
//! counters) are described in [`index`]; each is written in the same sled transaction as the
//! record it indexes, and rebuilt at open when its marker is missing.
//!
//! Values are entries encoded with [`quickfreeze_keys::codec`], limited to
//! [`MAX_STORED_VALUE_BYTES`], inside a **checksummed record envelope** (format 2): the first
//! [`CHECKSUM_BYTES`] bytes are the CRC-32 (IEEE) of the tree's name, the key and the payload
//! ([`seal_value`] / [`open_value`], the one place every tree's values pass through, so that a
//! tree added later gets it too). A value whose checksum fails, that does not decode, or that
//! decodes to an entry whose ids do not match its key, is reported as a [`StoreError`] naming the
//! tree and the key in hex, never decoded as something else; a database sled reports as corrupt
//! when opening is a [`StoreOpenError::Corrupt`] that tells the operator what to do. Neither ever
//! panics. The checksum covers the key, so a value moved under another key fails it too. It
//! detects damage (flipped bytes, torn writes), not a forger: the audit chain and its signed head
//! cover that.
//!
//! # Format versions
//!
//! - 1: values are the bare codec encoding.
//! - 2 (this release): values are sealed with their checksum. A format-1 store is migrated when
//!   it is opened ([`SledStore::open`]): every value is checked as format 1 (it must decode and
//!   belong under its key; otherwise nothing is changed and the store is refused, naming the
//!   record) and rewritten sealed, together with the new version, in one sled transaction over
//!   all trees, then flushed. A crash before the flush leaves format 1 (the migration runs again);
//!   the version changes with the records, never before them.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use quickfreeze_keys::codec;
use quickfreeze_keys::NodeId;
use quickfreeze_proto::core::{InboxEntry, OutboxEntry, RelayEntry, Store, StoreError};
use quickfreeze_proto::MessageId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod index;

pub use index::{
    thread_root, HistoryCounts, Indexes, INDEX_VERSION, KEY_INDEX_VERSION, TREE_INBOX_BY_ID,
    TREE_INBOX_BY_TIME, TREE_OPEN_OUTBOX, TREE_OPEN_REQUESTS, TREE_OUTBOX_BY_TIME, TREE_THREADS,
    TREE_UNACKNOWLEDGED,
};

/// The on-disk format this code reads and writes. A format-1 store is migrated when opened;
/// a store with another version is refused.
pub const FORMAT_VERSION: u32 = 2;

/// Bytes of checksum in front of every stored value (format 2).
pub const CHECKSUM_BYTES: usize = 4;

/// Largest encoded value the store writes or decodes (an inbox entry holds an envelope of up to
/// about 1 MiB plus its decrypted payload, so this is generous).
pub const MAX_STORED_VALUE_BYTES: u64 = 8 * 1024 * 1024;

/// Default sled cache: small, because dozens of nodes run in one simulation.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// Name of the outbox tree (messages this node sent).
pub const TREE_OUTBOX: &str = "outbox";
/// Name of the inbox tree (messages this node received).
pub const TREE_INBOX: &str = "inbox";
/// Name of the relay tree (messages this node holds for its members).
pub const TREE_RELAY: &str = "relay";
/// Name of the meta tree (roster, format version).
pub const TREE_META: &str = "meta";
/// Key of the signed roster in [`TREE_META`].
pub const KEY_ROSTER: &[u8] = b"roster";
/// Prefix of the keys of signed revocation notices in [`TREE_META`] (followed by the SHA-256 of
/// the notice's body).
pub const PREFIX_REVOCATION: &[u8] = b"revocation/";
/// Key of the format version in [`TREE_META`].
pub const KEY_FORMAT_VERSION: &[u8] = b"format_version";
/// Key of the node's latest signed audit head in [`TREE_META`] (written with each group commit
/// that adds audit records).
pub const KEY_AUDIT_HEAD: &[u8] = b"audit_head";
/// Key in [`TREE_META`] set when a format-1 store was migrated: its audit records were never
/// signed, and until the node signs its first head `audit verify` does not expect one.
pub const KEY_MIGRATED_UNSIGNED: &[u8] = b"migrated_unsigned";

/// sled's background flusher interval.
///
/// We keep the flusher (sled's default, 500 ms) rather than `flush_every_ms(None)`, although our
/// durability comes only from the explicit group commit in [`Store::flush`]:
/// - in sled 0.34.7 that thread is the only caller of segment garbage collection
///   (`PageCache::attempt_gc`); without it the `db` file never reclaims space from overwritten
///   entries and grows without bound;
/// - it is harmless to correctness: it only moves data to disk sooner (and `sync_all`s), and it
///   is not the `flush_async` path that deadlocks (sled #1308);
/// - its cost is one mostly sleeping thread per database, acceptable even with dozens of nodes in
///   one simulation.
const BACKGROUND_FLUSH_MS: u64 = 500;

/// How far [`Store::flush`] goes. Appears in the node's TOML config as `flush` or
/// `flush-and-sync-data`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// sled's `flush()` only: flushed writes survive a process crash (`kill -9`) but not a power
    /// loss or kernel crash.
    Flush,
    /// sled's `flush()`, then `sync_data()` on its files: flushed writes also survive a power
    /// loss. The default.
    #[default]
    FlushAndSyncData,
}

/// How to open a [`SledStore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// sled's page cache size in bytes (default [`DEFAULT_CACHE_CAPACITY_BYTES`], 16 MiB). It
    /// bounds the cache, not the process's memory use.
    pub cache_capacity_bytes: u64,
    /// Durability of each flush (default [`SyncMode::FlushAndSyncData`]).
    pub sync: SyncMode,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            sync: SyncMode::default(),
        }
    }
}

/// Why a store could not be opened. Every message says which directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// sled found damaged data (or crashed) while recovering the database.
    #[error(
        "the message store in {} is damaged: {detail}. Stop the node and do not delete or edit \
         that directory: keep a copy of it exactly as it is, then restore the directory from \
         your latest backup, or contact support and give them the copy",
        path.display()
    )]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The store was written by a release with another on-disk format.
    #[error(
        "the message store in {} has format version {found}, but this quickfreeze release reads \
         only format version {supported}. Run the release that wrote it, or migrate the store; \
         this node wrote no data to it",
        path.display()
    )]
    UnsupportedVersion {
        /// The store's directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this code reads.
        supported: u32,
    },
    /// Another process holds the database.
    #[error(
        "the message store in {} is in use by another process (is another quickfreeze node \
         running with this data directory?): {detail}",
        path.display()
    )]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// sled's message.
        detail: String,
    },
    /// Any other failure (permissions, disk full, not a directory…).
    #[error("cannot open the message store in {}: {detail}", path.display())]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Counters of the group commits done so far (since this store was opened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Flushes that wrote something (each one group commit).
    pub flushes: u64,
    /// Calls to [`Store::flush`] with nothing written since the previous one (no IO done).
    pub idle_flushes: u64,
    /// Total time spent in the flushes that wrote something, in microseconds.
    pub flush_micros_total: u64,
    /// Duration of the latest flush that wrote something, in microseconds.
    pub last_flush_micros: u64,
}

/// What [`SledStore::check_records`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordCheck {
    /// Ids of the outbox entries whose records are intact.
    pub outbox: std::collections::BTreeSet<MessageId>,
    /// (sender, message id) of the inbox entries whose records are intact.
    pub inbox: std::collections::BTreeSet<(NodeId, MessageId)>,
    /// Intact relay entries.
    pub relay: u64,
    /// Records that failed their checksum, did not decode or sit under the wrong key.
    pub damaged: Vec<DamagedRecord>,
}

/// One damaged record, by tree and key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedRecord {
    /// The sled tree.
    pub tree: String,
    /// The key, in hex.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A message found by [`SledStore::find_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A message this node sent.
    Outbox(Box<OutboxEntry>),
    /// A message this node received.
    Inbox(Box<InboxEntry>),
}

/// The durable store of one node: a sled database in one directory. See the module docs for
/// what each flush guarantees.
///
/// A failed flush is final for this instance: after an `fsync` error Linux may already have
/// dropped the unwritten pages, so a retry could report success for data that is gone. Every
/// later [`Store::flush`] therefore fails, and the daemon must stop acknowledging and restart.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    outbox: sled::Tree,
    inbox: sled::Tree,
    relay: sled::Tree,
    meta: sled::Tree,
    /// The index trees (see [`Indexes`]), written in the same transaction as each record.
    indexes: Indexes,
    sync: SyncMode,
    /// The IO of a group commit; shared with a [`FlushJob`] running on another thread.
    committer: Arc<Mutex<Committer>>,
    /// Something was written since the last flush began.
    dirty: bool,
    /// Why a flush failed. After a failed `fsync` the kernel may have dropped the dirty pages and
    /// a retry would "succeed" without the data, so every later flush fails with this reason.
    failed: Option<String>,
    stats: StoreStats,
}

/// What a group commit needs: sled's handle and the files to sync. Behind a mutex so that at
/// most one commit runs at a time (sled 0.34's flushes must not race each other, sled #1308).
struct Committer {
    path: PathBuf,
    db: sled::Db,
    /// sled's `db` file, opened again for `sync_data` (only in [`SyncMode::FlushAndSyncData`]).
    db_file: Option<File>,
    /// Blob files already synced (only in [`SyncMode::FlushAndSyncData`]).
    synced_blobs: HashSet<OsString>,
}

/// A group commit begun by [`SledStore::begin_flush`]: it covers every write made to the store
/// before it began (and possibly some made after). [`FlushJob::run`] does the IO and may run on
/// another thread while the store takes new writes; [`SledStore::end_flush`] records the outcome.
#[must_use = "a begun flush must be run and ended"]
pub struct FlushJob {
    committer: Arc<Mutex<Committer>>,
}

/// The outcome of [`FlushJob::run`], for [`SledStore::end_flush`].
#[derive(Debug)]
pub struct FlushDone {
    result: Result<(), StoreError>,
    micros: u64,
}

impl FlushJob {
    /// sled's `flush()`, then (in [`SyncMode::FlushAndSyncData`]) blobs and the `db` file.
    /// Blocks for the duration of the IO.
    pub fn run(self) -> FlushDone {
        let start = Instant::now();
        let result = match self.committer.lock() {
            Ok(mut committer) => committer.commit(),
            Err(_) => Err(StoreError(
                "an earlier group commit panicked; restart the node".into(),
            )),
        };
        FlushDone {
            result,
            micros: micros_since(start),
        }
    }
}

impl FlushDone {
    /// A flush that could not run at all (its thread was lost), so that the store records it as
    /// failed.
    pub fn lost(reason: impl Into<String>) -> FlushDone {
        FlushDone {
            result: Err(StoreError(reason.into())),
            micros: 0,
        }
    }
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .field("dirty", &self.dirty)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// See [`SledStore::reader`].
#[derive(Clone)]
pub struct StoreReader {
    outbox: sled::Tree,
    inbox: sled::Tree,
    indexes: Indexes,
}

impl StoreReader {
    /// All outbox entries.
    pub fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        list_entries(self.outbox.iter())
    }

    /// All inbox entries.
    pub fn inbox_entries(&self) -> Result<Vec<InboxEntry>, StoreError> {
        list_entries(self.inbox.iter())
    }

    /// The store's indexes (see [`Indexes`]).
    pub fn indexes(&self) -> &Indexes {
        &self.indexes
    }
}

/// An entry type kept in one tree under a key derived from its own ids.
trait StoredEntry: Serialize + DeserializeOwned {
    const TREE: &'static str;
    fn key(&self) -> Vec<u8>;
    /// Writes the encoded record (and, for the outbox and inbox, its index keys in the same
    /// transaction).
    fn write(&self, store: &SledStore, key: Vec<u8>, bytes: Vec<u8>) -> Result<(), StoreError>;
}

impl StoredEntry for OutboxEntry {
    const TREE: &'static str = TREE_OUTBOX;
    fn key(&self) -> Vec<u8> {
        outbox_key(&self.message_id).to_vec()
    }
    fn write(&self, store: &SledStore, key: Vec<u8>, bytes: Vec<u8>) -> Result<(), StoreError> {
        store.indexes.put_outbox(&key, &bytes, self)
    }
}

impl StoredEntry for InboxEntry {
    const TREE: &'static str = TREE_INBOX;
    fn key(&self) -> Vec<u8> {
        sender_key(&self.sender, &self.message_id).to_vec()
    }
    fn write(&self, store: &SledStore, key: Vec<u8>, bytes: Vec<u8>) -> Result<(), StoreError> {
        store.indexes.put_inbox(&key, &bytes, self)
    }
}

impl StoredEntry for RelayEntry {
    const TREE: &'static str = TREE_RELAY;
    fn key(&self) -> Vec<u8> {
        sender_key(&self.sender, &self.message_id).to_vec()
    }
    fn write(&self, store: &SledStore, key: Vec<u8>, bytes: Vec<u8>) -> Result<(), StoreError> {
        store
            .relay
            .insert(key, bytes)
            .map_err(|error| sled_error("write", TREE_RELAY, error))?;
        Ok(())
    }
}

fn outbox_key(message_id: &MessageId) -> [u8; 16] {
    message_id.0
}

fn sender_key(sender: &NodeId, message_id: &MessageId) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..32].copy_from_slice(&sender.0);
    key[32..].copy_from_slice(&message_id.0);
    key
}

/// The checksum of a value stored under `key` in `tree`.
fn checksum(tree: &str, key: &[u8], payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(tree.as_bytes());
    hasher.update(&[0]);
    hasher.update(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    hasher.update(key);
    hasher.update(payload);
    hasher.finalize().to_le_bytes()
}

/// The stored form of `payload` under `key` in `tree`: its checksum, then the payload. Every
/// value the store writes goes through this (see the module docs).
pub fn seal_value(tree: &str, key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(CHECKSUM_BYTES + payload.len());
    stored.extend_from_slice(&checksum(tree, key, payload));
    stored.extend_from_slice(payload);
    stored
}

/// The payload of a value read under `key` in `tree`, if its checksum holds; otherwise an error
/// naming the tree and the key, logged.
pub fn open_value<'a>(tree: &str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
    let problem = if stored.len() < CHECKSUM_BYTES {
        format!("{} bytes, shorter than its checksum", stored.len())
    } else {
        let (sum, payload) = stored.split_at(CHECKSUM_BYTES);
        if sum == checksum(tree, key, payload) {
            return Ok(payload);
        }
        format!(
            "its checksum does not match ({} bytes): the record is damaged",
            stored.len()
        )
    };
    tracing::error!(tree, key = %hex::encode(key), "{problem}");
    Err(StoreError(format!(
        "corrupt value in tree `{tree}` under key {}: {problem}; run `quickfreeze store verify`, \
         then {OPERATOR_ADVICE}",
        hex::encode(key)
    )))
}

const OPERATOR_ADVICE: &str = "stop the node, keep a copy of the data directory as it is, and \
     restore it from a backup or contact support";

/// A sled failure during `operation` on `tree`, as a [`StoreError`].
fn sled_error(operation: &str, tree: &str, error: sled::Error) -> StoreError {
    match error {
        sled::Error::Corruption { at, .. } => {
            tracing::error!(tree, ?at, "sled reports corrupt data during {operation}");
            StoreError(format!(
                "{operation} in tree `{tree}`: sled found corrupt data (at {at:?}); {OPERATOR_ADVICE}"
            ))
        }
        other => StoreError(format!("{operation} in tree `{tree}`: {other}")),
    }
}

/// Decodes the value stored under `key` and checks that it belongs there.
fn decode_entry<T: StoredEntry>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |what: String| {
        tracing::error!(tree = T::TREE, key = %hex::encode(key), "{what}");
        StoreError(format!(
            "corrupt value in tree `{}` under key {}: {what}; {OPERATOR_ADVICE}",
            T::TREE,
            hex::encode(key)
        ))
    };
    let payload = open_value(T::TREE, key, bytes)?;
    let entry: T = codec::decode(payload, MAX_STORED_VALUE_BYTES)
        .map_err(|error| corrupt(format!("{} bytes do not decode: {error}", bytes.len())))?;
    if entry.key() != key {
        return Err(corrupt(format!(
            "the entry decodes but belongs under key {}",
            hex::encode(entry.key())
        )));
    }
    Ok(entry)
}

fn get_entry<T: StoredEntry>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
    match tree
        .get(key)
        .map_err(|error| sled_error("read", T::TREE, error))?
    {
        Some(bytes) => decode_entry(key, &bytes).map(Some),
        None => Ok(None),
    }
}

fn list_entries<T: StoredEntry>(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<T>, StoreError> {
    entries
        .map(|item| {
            let (key, value) = item.map_err(|error| sled_error("scan", T::TREE, error))?;
            decode_entry(&key, &value)
        })
        .collect()
}

/// Maps sled's open errors to what the operator needs to know.
fn open_error(path: &Path, error: sled::Error) -> StoreOpenError {
    let path = path.to_path_buf();
    match error {
        sled::Error::Corruption { at, .. } => StoreOpenError::Corrupt {
            path,
            detail: format!("sled found corrupt data at {at:?}"),
        },
        sled::Error::Io(io_error) if io_error.to_string().contains("could not acquire lock") => {
            StoreOpenError::Locked {
                path,
                detail: io_error.to_string(),
            }
        }
        other => StoreOpenError::Io {
            path,
            detail: other.to_string(),
        },
    }
}

fn io_open_error(path: &Path, what: &str, error: io::Error) -> StoreOpenError {
    StoreOpenError::Io {
        path: path.to_path_buf(),
        detail: format!("{what}: {error}"),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        String::from("(no message)")
    }
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// A new store is stamped with [`FORMAT_VERSION`]; an existing one must carry exactly that
    /// version. Recovery after a crash happens here (sled replays its log); damage found while
    /// doing so is [`StoreOpenError::Corrupt`], never a panic.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<SledStore, StoreOpenError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(Some(BACKGROUND_FLUSH_MS));
        // sled 0.34 has assertions on its recovery path; a database damaged in a way it does not
        // expect can panic there instead of returning `Corruption`. Report that the same way.
        let db = match panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
            Ok(Ok(db)) => db,
            Ok(Err(error)) => return Err(open_error(dir, error)),
            Err(payload) => {
                return Err(StoreOpenError::Corrupt {
                    path: dir.to_path_buf(),
                    detail: format!(
                        "sled stopped with an internal error while recovering: {}",
                        panic_text(payload.as_ref())
                    ),
                })
            }
        };
        let open_tree = |name: &str| db.open_tree(name).map_err(|error| open_error(dir, error));
        let outbox = open_tree(TREE_OUTBOX)?;
        let inbox = open_tree(TREE_INBOX)?;
        let relay = open_tree(TREE_RELAY)?;
        let meta = open_tree(TREE_META)?;
        let indexes =
            Indexes::open(&db, &outbox, &inbox, &meta).map_err(|error| open_error(dir, error))?;

        let db_file = match options.sync {
            SyncMode::Flush => None,
            SyncMode::FlushAndSyncData => {
                Some(File::open(dir.join("db")).map_err(|error| {
                    io_open_error(dir, "opening sled's db file to sync it", error)
                })?)
            }
        };
        let mut store = SledStore {
            path: dir.to_path_buf(),
            db: db.clone(),
            outbox,
            inbox,
            relay,
            meta,
            indexes,
            sync: options.sync,
            committer: Arc::new(Mutex::new(Committer {
                path: dir.to_path_buf(),
                db,
                db_file,
                synced_blobs: HashSet::new(),
            })),
            dirty: false,
            failed: None,
            stats: StoreStats::default(),
        };
        store.check_format_version()?;
        store.ensure_indexes()?;
        if store.sync == SyncMode::FlushAndSyncData {
            // Make the directory entries sled created (db, conf, blobs) durable, once.
            File::open(dir)
                .and_then(|directory| directory.sync_all())
                .map_err(|error| io_open_error(dir, "syncing the store directory", error))?;
        }
        tracing::info!(
            path = %dir.display(),
            recovered = store.db.was_recovered(),
            sync = ?store.sync,
            "message store opened"
        );
        Ok(store)
    }

    fn check_format_version(&mut self) -> Result<(), StoreOpenError> {
        let path = self.path.clone();
        let stored = self
            .meta
            .get(KEY_FORMAT_VERSION)
            .map_err(|error| open_error(&path, error))?;
        match stored {
            Some(bytes) => {
                let found: u32 =
                    codec::decode(&bytes, 16).map_err(|error| StoreOpenError::Corrupt {
                        path: path.clone(),
                        detail: format!(
                            "the format version ({}) does not decode: {error}",
                            hex::encode(&bytes)
                        ),
                    })?;
                if found == FORMAT_VERSION {
                    Ok(())
                } else if found == 1 {
                    self.migrate_from_format_1()
                } else {
                    Err(StoreOpenError::UnsupportedVersion {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    })
                }
            }
            None => {
                let empty = [&self.outbox, &self.inbox, &self.relay, &self.meta]
                    .iter()
                    .all(|tree| tree.is_empty());
                if !empty {
                    return Err(StoreOpenError::Corrupt {
                        path,
                        detail: String::from("it holds data but no format version"),
                    });
                }
                let bytes = codec::encode(&FORMAT_VERSION, 16).map_err(|error| {
                    io_open_error(
                        &path,
                        "encoding the format version",
                        io::Error::other(error),
                    )
                })?;
                self.meta
                    .insert(KEY_FORMAT_VERSION, bytes)
                    .map_err(|error| open_error(&path, error))?;
                // A new store's (empty) indexes are complete: the marker rides with the stamp.
                self.indexes.rebuild().map_err(|error| StoreOpenError::Io {
                    path: path.clone(),
                    detail: error.0.clone(),
                })?;
                self.dirty = true;
                self.flush().map_err(|error| StoreOpenError::Io {
                    path,
                    detail: error.0,
                })
            }
        }
    }

    /// Rewrites a format-1 store in format 2 (see the module docs): every value is checked as
    /// format 1 first (nothing is changed if one fails, and the error names it), then all are
    /// rewritten sealed, with the new version, in one transaction over the four trees, and
    /// flushed.
    fn migrate_from_format_1(&mut self) -> Result<(), StoreOpenError> {
        let path = self.path.clone();
        let started = Instant::now();
        let damaged = |tree: &str, key: &[u8], what: String| StoreOpenError::Corrupt {
            path: path.clone(),
            detail: format!(
                "while migrating it from format 1, the value under key {} in tree `{tree}` {what}; \
                 nothing was changed",
                hex::encode(key)
            ),
        };
        fn check_v1<T: StoredEntry>(key: &[u8], value: &[u8]) -> Result<(), String> {
            let entry: T = codec::decode(value, MAX_STORED_VALUE_BYTES)
                .map_err(|error| format!("does not decode: {error}"))?;
            if entry.key() != key {
                return Err(format!("belongs under key {}", hex::encode(entry.key())));
            }
            Ok(())
        }
        type Check = fn(&[u8], &[u8]) -> Result<(), String>;
        let trees: [(&str, &sled::Tree, Check); 3] = [
            (TREE_OUTBOX, &self.outbox, check_v1::<OutboxEntry>),
            (TREE_INBOX, &self.inbox, check_v1::<InboxEntry>),
            (TREE_RELAY, &self.relay, check_v1::<RelayEntry>),
        ];
        // Rewrites per tree: outbox, inbox, relay, meta.
        let mut rewrites: [Vec<(sled::IVec, Vec<u8>)>; 4] = Default::default();
        for (index, (name, tree, check)) in trees.iter().enumerate() {
            for item in tree.iter() {
                let (key, value) = item.map_err(|error| open_error(&path, error))?;
                check(&key, &value).map_err(|what| damaged(name, &key, what))?;
                let sealed = seal_value(name, &key, &value);
                rewrites[index].push((key, sealed));
            }
        }
        for item in self.meta.iter() {
            let (key, value) = item.map_err(|error| open_error(&path, error))?;
            if key.as_ref() == KEY_FORMAT_VERSION || index::is_index_meta_key(&key) {
                continue;
            }
            let sealed = seal_value(TREE_META, &key, &value);
            rewrites[3].push((key, sealed));
        }
        let version = codec::encode(&FORMAT_VERSION, 16).map_err(|error| {
            io_open_error(
                &path,
                "encoding the format version",
                io::Error::other(error),
            )
        })?;
        let records: usize = rewrites.iter().map(Vec::len).sum();
        let marker = seal_value(TREE_META, KEY_MIGRATED_UNSIGNED, &[1]);
        use sled::Transactional;
        (&self.outbox, &self.inbox, &self.relay, &self.meta)
            .transaction(|(outbox, inbox, relay, meta)| {
                for (tree, list) in [outbox, inbox, relay, meta].into_iter().zip(&rewrites) {
                    for (key, value) in list {
                        tree.insert(key, value.as_slice())?;
                    }
                }
                meta.insert(KEY_MIGRATED_UNSIGNED, marker.as_slice())?;
                meta.insert(KEY_FORMAT_VERSION, version.as_slice())?;
                Ok(())
            })
            .map_err(
                |error: sled::transaction::TransactionError<()>| match error {
                    sled::transaction::TransactionError::Storage(error) => open_error(&path, error),
                    sled::transaction::TransactionError::Abort(()) => StoreOpenError::Io {
                        path: path.clone(),
                        detail: "the migration from format 1 was aborted".into(),
                    },
                },
            )?;
        self.dirty = true;
        self.flush().map_err(|error| StoreOpenError::Io {
            path: path.clone(),
            detail: format!("flushing the migration from format 1: {}", error.0),
        })?;
        tracing::warn!(
            path = %path.display(),
            records,
            ms = started.elapsed().as_millis() as u64,
            "message store migrated from format 1 to format {FORMAT_VERSION} (checksummed records)"
        );
        Ok(())
    }

    /// Rebuilds the indexes from the records if their marker is missing (a store written before
    /// they existed, or a rebuild cut short), and makes the result durable.
    fn ensure_indexes(&mut self) -> Result<(), StoreOpenError> {
        let path = self.path.clone();
        let failed = |error: StoreError| StoreOpenError::Io {
            path: path.clone(),
            detail: format!("rebuilding the message indexes: {}", error.0),
        };
        if self.indexes.complete().map_err(failed)? {
            return Ok(());
        }
        let start = Instant::now();
        self.indexes.rebuild().map_err(failed)?;
        self.dirty = true;
        self.flush().map_err(failed)?;
        tracing::info!(
            path = %path.display(),
            millis = start.elapsed().as_millis() as u64,
            "message indexes built"
        );
        Ok(())
    }

    /// A checksummed value of the meta tree.
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .meta
            .get(key)
            .map_err(|error| sled_error("read", TREE_META, error))?
        {
            Some(stored) => open_value(TREE_META, key, &stored).map(|value| Some(value.to_vec())),
            None => Ok(None),
        }
    }

    /// Stores the node's latest signed audit head (encoded by `crate::audit_head`); the next
    /// group commit makes it durable. A store migrated from format 1 then expects signed heads.
    pub fn put_audit_head(&mut self, signed: &[u8]) -> Result<(), StoreError> {
        self.dirty = true;
        self.meta
            .insert(
                KEY_AUDIT_HEAD,
                seal_value(TREE_META, KEY_AUDIT_HEAD, signed),
            )
            .map_err(|error| sled_error("write", TREE_META, error))?;
        self.meta
            .remove(KEY_MIGRATED_UNSIGNED)
            .map_err(|error| sled_error("write", TREE_META, error))?;
        Ok(())
    }

    /// The latest signed audit head stored with a commit, if any.
    pub fn get_audit_head(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_meta(KEY_AUDIT_HEAD)
    }

    /// Whether this store was migrated from format 1 and has no signed audit head yet.
    pub fn migrated_unsigned(&self) -> Result<bool, StoreError> {
        self.meta
            .contains_key(KEY_MIGRATED_UNSIGNED)
            .map_err(|error| sled_error("read", TREE_META, error))
    }

    /// Reads every value of the outbox, inbox, relay and meta trees and checks its checksum
    /// (and, with `decode`, that it decodes and belongs under its key). Returns what the
    /// cross-check with the audit trail needs: the keys present, and every damaged record.
    pub fn check_records(&self, decode: bool) -> RecordCheck {
        let mut check = RecordCheck::default();
        let mut damaged = |tree: &str, key: &[u8], error: String| {
            check.damaged.push(DamagedRecord {
                tree: tree.to_string(),
                key: hex::encode(key),
                problem: error,
            });
        };
        for item in self.outbox.iter() {
            match item {
                Err(error) => damaged(TREE_OUTBOX, b"", sled_error("scan", TREE_OUTBOX, error).0),
                Ok((key, value)) => {
                    let result = if decode {
                        decode_entry::<OutboxEntry>(&key, &value).map(|_| ())
                    } else {
                        open_value(TREE_OUTBOX, &key, &value).map(|_| ())
                    };
                    match (result, <[u8; 16]>::try_from(key.as_ref())) {
                        (Ok(()), Ok(id)) => {
                            check.outbox.insert(MessageId(id));
                        }
                        (Err(error), _) => damaged(TREE_OUTBOX, &key, error.0),
                        (Ok(()), Err(_)) => {
                            damaged(TREE_OUTBOX, &key, "the key is not a message id".into())
                        }
                    }
                }
            }
        }
        for (name, tree) in [(TREE_INBOX, &self.inbox), (TREE_RELAY, &self.relay)] {
            for item in tree.iter() {
                match item {
                    Err(error) => damaged(name, b"", sled_error("scan", name, error).0),
                    Ok((key, value)) => {
                        let result = match (decode, name == TREE_INBOX) {
                            (true, true) => decode_entry::<InboxEntry>(&key, &value).map(|_| ()),
                            (true, false) => decode_entry::<RelayEntry>(&key, &value).map(|_| ()),
                            (false, _) => open_value(name, &key, &value).map(|_| ()),
                        };
                        let ids = (key.len() == 48).then(|| {
                            let mut sender = [0u8; 32];
                            let mut id = [0u8; 16];
                            sender.copy_from_slice(&key[..32]);
                            id.copy_from_slice(&key[32..]);
                            (NodeId(sender), MessageId(id))
                        });
                        match (result, ids) {
                            (Ok(()), Some(ids)) if name == TREE_INBOX => {
                                check.inbox.insert(ids);
                            }
                            (Ok(()), Some(_)) => check.relay += 1,
                            (Err(error), _) => damaged(name, &key, error.0),
                            (Ok(()), None) => {
                                damaged(name, &key, "the key is not sender ‖ message id".into())
                            }
                        }
                    }
                }
            }
        }
        for item in self.meta.iter() {
            match item {
                Err(error) => damaged(TREE_META, b"", sled_error("scan", TREE_META, error).0),
                Ok((key, value)) => {
                    // The index marker and counters are derived data, checked against the
                    // records by `Indexes::check`.
                    if key.as_ref() == KEY_FORMAT_VERSION || index::is_index_meta_key(&key) {
                        continue;
                    }
                    if let Err(error) = open_value(TREE_META, &key, &value) {
                        damaged(TREE_META, &key, error.0);
                    }
                }
            }
        }
        check
    }

    /// The store's indexes (see [`Indexes`]): open items, time order, id prefixes, threads.
    pub fn indexes(&self) -> &Indexes {
        &self.indexes
    }

    /// How many messages the store holds, from counters (no scan).
    pub fn history_counts(&self) -> Result<HistoryCounts, StoreError> {
        self.indexes.counts()
    }

    /// Opens (or creates) another tree of this database, for records kept beside the core's
    /// state (the audit log). Writes to it are made durable by [`Store::flush`] only if the
    /// writer also calls [`SledStore::note_write`].
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(name)
            .map_err(|error| sled_error("open", name, error))
    }

    /// Begins a group commit of every write made so far, for [`FlushJob::run`] to carry out
    /// (possibly on another thread, while new writes arrive) and [`SledStore::end_flush`] to
    /// conclude. `None` when nothing was written since the previous flush began (no IO needed).
    /// At most one job should be running at a time: a second waits for the first.
    ///
    /// Fails if an earlier flush failed: nothing written since can be made durable by this
    /// process.
    pub fn begin_flush(&mut self) -> Result<Option<FlushJob>, StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError(format!(
                "an earlier flush failed ({reason}); nothing written since can be made durable \
                 by this process: restart the node"
            )));
        }
        if !self.dirty {
            self.stats.idle_flushes += 1;
            return Ok(None);
        }
        // Writes from now on need the next flush.
        self.dirty = false;
        Ok(Some(FlushJob {
            committer: self.committer.clone(),
        }))
    }

    /// Records the outcome of a job from [`SledStore::begin_flush`]. `Ok` means every write made
    /// before that job began is durable; an error is final for this instance.
    pub fn end_flush(&mut self, done: FlushDone) -> Result<(), StoreError> {
        if let Err(error) = done.result {
            tracing::error!(path = %self.path.display(), %error, "group commit failed");
            self.failed = Some(error.0.clone());
            return Err(error);
        }
        self.stats.flushes += 1;
        self.stats.last_flush_micros = done.micros;
        self.stats.flush_micros_total = self.stats.flush_micros_total.saturating_add(done.micros);
        Ok(())
    }

    /// Whether something was written since the last flush began.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Tells the store that a tree obtained from [`SledStore::open_tree`] was written, so that
    /// the next [`Store::flush`] commits it.
    pub fn note_write(&mut self) {
        self.dirty = true;
    }

    /// The whole sled database, for a backup to read every tree (see [`crate::backup`]).
    pub fn database(&self) -> &sled::Db {
        &self.db
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability of each flush.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// Flush counters since opening.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Bytes sled uses on disk (its log and blobs; typically 2–3× the raw data).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db
            .size_on_disk()
            .map_err(|error| sled_error("size_on_disk", "*", error))
    }

    /// The `limit` newest outbox entries, newest first by `created_at` (ties by message id,
    /// descending). One range scan of the time index.
    pub fn outbox_page(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.indexes.outbox_newest(None, limit, |_| false)
    }

    /// The `limit` newest inbox entries, newest first by `received_at` (ties by sender, then
    /// message id, descending). One range scan of the time index.
    pub fn inbox_page(&self, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        self.indexes.inbox_newest(None, limit, |_| false)
    }

    /// A message by id: the outbox entry if this node sent it, else the first inbox entry (in
    /// sender order) with that id, else `None`. Two key lookups.
    pub fn find_message(&self, message_id: &MessageId) -> Result<Option<Found>, StoreError> {
        if let Some(entry) = self.get_outbox(message_id)? {
            return Ok(Some(Found::Outbox(Box::new(entry))));
        }
        Ok(self
            .indexes
            .inbox_by_id(message_id)?
            .map(|entry| Found::Inbox(Box::new(entry))))
    }

    /// A read-only view of the outbox and inbox for another thread (sled's trees are shared
    /// handles): it sees every write made so far, durable or not.
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            outbox: self.outbox.clone(),
            inbox: self.inbox.clone(),
            indexes: self.indexes.clone(),
        }
    }

    /// The relay entries held for messages from `sender` (one range scan over the relay tree),
    /// in message id order. For per-sender storage limits.
    pub fn relay_entries_from(&self, sender: &NodeId) -> Result<Vec<RelayEntry>, StoreError> {
        list_entries(self.relay.scan_prefix(sender.0))
    }

    /// The inbox entries received from `sender` (one range scan), in message id order.
    pub fn inbox_entries_from(&self, sender: &NodeId) -> Result<Vec<InboxEntry>, StoreError> {
        list_entries(self.inbox.scan_prefix(sender.0))
    }

    fn put_entry<T: StoredEntry>(&mut self, entry: &T) -> Result<(), StoreError> {
        let key = entry.key();
        let bytes = codec::encode(entry, MAX_STORED_VALUE_BYTES).map_err(|error| {
            StoreError(format!(
                "cannot store the entry for key {} in tree `{}`: {error}",
                hex::encode(&key),
                T::TREE
            ))
        })?;
        let sealed = seal_value(T::TREE, &key, &bytes);
        self.dirty = true;
        entry.write(self, key, sealed)
    }
}

impl Committer {
    /// sled's `flush()`, then (in [`SyncMode::FlushAndSyncData`]) blobs and the `db` file.
    fn commit(&mut self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map_err(|error| sled_error("flush", "*", error))?;
        if self.db_file.is_some() {
            // Blobs first: the log may refer to them.
            self.sync_new_blobs()
                .map_err(|error| StoreError(format!("syncing sled's blob files: {error}")))?;
        }
        if let Some(file) = &self.db_file {
            file.sync_data()
                .map_err(|error| StoreError(format!("syncing sled's db file: {error}")))?;
        }
        Ok(())
    }

    /// Syncs blob files written since the last sync, then the blob directory if any were new.
    fn sync_new_blobs(&mut self) -> io::Result<()> {
        let blobs_dir = self.path.join("blobs");
        let mut present = HashSet::new();
        let mut synced_any = false;
        for item in fs::read_dir(&blobs_dir)? {
            let item = item?;
            let name = item.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(item.path()) {
                    Ok(file) => file.sync_data()?,
                    // sled's garbage collector removed it meanwhile.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&blobs_dir)?.sync_all()?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}

impl Store for SledStore {
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.put_entry(entry)
    }

    fn get_outbox(&self, message_id: &MessageId) -> Result<Option<OutboxEntry>, StoreError> {
        get_entry(&self.outbox, &outbox_key(message_id))
    }

    fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        list_entries(self.outbox.iter())
    }

    fn put_inbox(&mut self, entry: &InboxEntry) -> Result<(), StoreError> {
        self.put_entry(entry)
    }

    fn get_inbox(
        &self,
        sender: &NodeId,
        message_id: &MessageId,
    ) -> Result<Option<InboxEntry>, StoreError> {
        get_entry(&self.inbox, &sender_key(sender, message_id))
    }

    fn inbox_entries(&self) -> Result<Vec<InboxEntry>, StoreError> {
        list_entries(self.inbox.iter())
    }

    fn unfinished_outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.indexes.open_outbox()
    }

    fn unacknowledged_inbox_entries(&self) -> Result<Vec<InboxEntry>, StoreError> {
        self.indexes.unacknowledged()
    }

    fn put_relay(&mut self, entry: &RelayEntry) -> Result<(), StoreError> {
        self.put_entry(entry)
    }

    fn get_relay(
        &self,
        sender: &NodeId,
        message_id: &MessageId,
    ) -> Result<Option<RelayEntry>, StoreError> {
        get_entry(&self.relay, &sender_key(sender, message_id))
    }

    fn remove_relay(&mut self, sender: &NodeId, message_id: &MessageId) -> Result<(), StoreError> {
        self.dirty = true;
        self.relay
            .remove(sender_key(sender, message_id))
            .map_err(|error| sled_error("remove", TREE_RELAY, error))?;
        Ok(())
    }

    fn relay_entries(&self) -> Result<Vec<RelayEntry>, StoreError> {
        list_entries(self.relay.iter())
    }

    fn put_roster(&mut self, signed: &[u8]) -> Result<(), StoreError> {
        if signed.len() as u64 > MAX_STORED_VALUE_BYTES {
            return Err(StoreError(format!(
                "cannot store a roster of {} bytes (limit {MAX_STORED_VALUE_BYTES})",
                signed.len()
            )));
        }
        self.dirty = true;
        self.meta
            .insert(KEY_ROSTER, seal_value(TREE_META, KEY_ROSTER, signed))
            .map_err(|error| sled_error("write", TREE_META, error))?;
        Ok(())
    }

    fn get_roster(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_meta(KEY_ROSTER)
    }

    fn put_revocation(&mut self, id: &[u8; 32], signed: &[u8]) -> Result<(), StoreError> {
        if signed.len() as u64 > MAX_STORED_VALUE_BYTES {
            return Err(StoreError(format!(
                "cannot store a revocation notice of {} bytes (limit {MAX_STORED_VALUE_BYTES})",
                signed.len()
            )));
        }
        let mut key = PREFIX_REVOCATION.to_vec();
        key.extend_from_slice(id);
        let sealed = seal_value(TREE_META, &key, signed);
        self.dirty = true;
        self.meta
            .insert(key, sealed)
            .map_err(|error| sled_error("write", TREE_META, error))?;
        Ok(())
    }

    fn revocations(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.meta
            .scan_prefix(PREFIX_REVOCATION)
            .map(|item| {
                let (key, value) = item.map_err(|error| sled_error("read", TREE_META, error))?;
                open_value(TREE_META, &key, &value).map(<[u8]>::to_vec)
            })
            .collect()
    }

    /// The group commit: sled's `flush()` and, in [`SyncMode::FlushAndSyncData`], `sync_data()`
    /// on sled's files. Does nothing if nothing was written since the last successful flush.
    ///
    /// Once a flush has failed, every later one fails too (see [`SledStore`]): the node must stop
    /// acknowledging and be restarted, which recovers exactly what reached the disk.
    fn flush(&mut self) -> Result<(), StoreError> {
        match self.begin_flush()? {
            None => Ok(()),
            Some(job) => self.end_flush(job.run()),
        }
    }
}
