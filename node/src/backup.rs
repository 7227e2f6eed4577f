//! Backup files: a consistent copy of a node's data directory (store, audit trail, config,
//! roster, revocations, officer accounts, and the key file only when asked) in one versioned,
//! checksummed file, and the restore of such a file into a new data directory.
//!
//! # The file
//!
//! Two text lines a person can read with `head -2` (the format and whether the file holds
//! private keys), then binary records `tag (1 byte) ‖ length (u64, big-endian) ‖ body`:
//!
//! - `H` the header, JSON ([`BackupHeader`]);
//! - `F` a file of the data directory: `u16` name length ‖ name (relative, `/`-separated) ‖
//!   `u32` mode ‖ contents;
//! - `T` a sled tree: its name; the `E` records after it belong to it;
//! - `E` one entry: `u32` key length ‖ key ‖ value;
//! - `Z` the trailer, JSON ([`BackupCounts`]), followed by the SHA-256 of every byte before
//!   those 32 bytes, and the end of the file.
//!
//! A file without its trailer, with bytes after it, or whose hash differs is refused before
//! anything is written ([`verify`]), so a truncated or damaged backup is never half-restored.
//!
//! # Written atomically
//!
//! [`write_atomically`] writes `NAME.partial-PID` beside the target (mode 0600: even without
//! keys a backup holds the decrypted evidence of every request), `fsync`s it, renames it to
//! the target and `fsync`s the directory. A process killed mid-way leaves at most a
//! `.partial-` file, never a file under the target's name that looks complete.
//!
//! # Consistent while the node runs
//!
//! The running daemon takes the snapshot itself ([`Snapshot::take`]) on its loop, which is the
//! only writer of the store, at the end of a turn once that turn's events are audit records and
//! written: the store and the audit trail are copied at one instant between loop turns, so
//! every message the audit trail names is in the copy and the reverse. The copy can include writes whose group
//! commit is still running (a message received but not yet acknowledged to its sender); after
//! a restore such a message is simply there, and the sender's retry is answered as a duplicate.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::files;

/// The backup file format this code writes and reads.
pub const BACKUP_FORMAT: u32 = 1;
/// First line of every backup file (followed by a space and the format number).
pub const MAGIC_LINE: &str = "quickfreeze backup format";
/// Largest single record (a file or a store entry) the reader accepts.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;
/// Largest data-directory file copied into a backup.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Prefix of the files the running daemon writes into its data directory for `backup` to
/// collect (never themselves backed up).
pub const STAGING_PREFIX: &str = ".backup-";

const KEYS_LINE_WITH: &str =
    "keys: INCLUDED - this file holds the node's PRIVATE KEYS; keep it like the key file\n";
const KEYS_LINE_WITHOUT: &str =
    "keys: not included - restore node.key from the key backup after restoring this file\n";

/// What a backup says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// [`BACKUP_FORMAT`].
    pub format: u32,
    /// When the snapshot was taken (milliseconds since the epoch).
    pub created_at_ms: u64,
    /// The node's id (from its key file or its roster entry), when known.
    pub node_id: Option<String>,
    /// Whether the node's key file is in the backup.
    pub with_keys: bool,
    /// The store's format version ([`crate::store::FORMAT_VERSION`] of the writer).
    pub store_format: u32,
    /// The quickfreeze release that wrote it.
    pub written_by: String,
}

/// What a backup holds, written in its trailer and checked on reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCounts {
    /// Files of the data directory.
    pub files: u64,
    /// sled trees.
    pub trees: u64,
    /// Store entries, all trees together.
    pub entries: u64,
    /// Entries of the inbox tree.
    pub inbox: u64,
    /// Entries of the outbox tree.
    pub outbox: u64,
}

/// A file of the data directory, as backed up.
#[derive(Clone, Debug)]
pub struct FileCopy {
    /// Path relative to the data directory, `/`-separated.
    pub name: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// A sled tree as backed up: its name and its entries in key order.
pub type TreeCopy = (Vec<u8>, Vec<(sled::IVec, sled::IVec)>);

/// Everything a backup holds, taken at one instant.
pub struct Snapshot {
    /// The header to write.
    pub header: BackupHeader,
    /// The data directory's files.
    pub files: Vec<FileCopy>,
    /// Every sled tree with its entries, in key order.
    pub trees: Vec<TreeCopy>,
}

/// Why a backup or restore failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The backup file is not complete or not intact.
    #[error("{} is not a usable quickfreeze backup: {reason}. Nothing was restored; use another copy of the backup (or make a new one)", path.display())]
    Damaged {
        /// The backup file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backup was written by a newer release.
    #[error("{} was written by a newer quickfreeze ({what}); upgrade quickfreeze to restore it", path.display())]
    Newer {
        /// The backup file.
        path: PathBuf,
        /// Which version is too new.
        what: String,
    },
    /// Anything else, already phrased for the operator.
    #[error("{0}")]
    Other(String),
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

impl Snapshot {
    /// Copies the data directory's files (the key file only `with_keys`) and every tree of the
    /// open store. The caller guarantees that nothing writes the store meanwhile (the daemon's
    /// loop, or sled's lock on a stopped node's store).
    pub fn take(
        data_dir: &Path,
        db: &sled::Db,
        with_keys: bool,
        node_id: Option<String>,
        now_ms: u64,
    ) -> Result<Snapshot, BackupError> {
        let files = collect_files(data_dir, with_keys)?;
        let mut trees = Vec::new();
        for name in db.tree_names() {
            let tree = db
                .open_tree(&name)
                .map_err(|error| BackupError::Other(format!("reading the store: {error}")))?;
            let mut entries = Vec::new();
            for item in tree.iter() {
                let (key, value) = item.map_err(|error| {
                    BackupError::Other(format!(
                        "reading tree {} of the store: {error}",
                        String::from_utf8_lossy(&name)
                    ))
                })?;
                entries.push((key, value));
            }
            trees.push((name.to_vec(), entries));
        }
        Ok(Snapshot {
            header: BackupHeader {
                format: BACKUP_FORMAT,
                created_at_ms: now_ms,
                node_id,
                with_keys,
                store_format: crate::store::FORMAT_VERSION,
                written_by: env!("CARGO_PKG_VERSION").to_string(),
            },
            files,
            trees,
        })
    }

    /// Writes the snapshot to `out` atomically (see the module's documentation).
    pub fn write_to(&self, out: &Path) -> Result<BackupCounts, BackupError> {
        write_atomically(out, |writer| self.encode(writer))
    }

    fn encode(&self, writer: &mut dyn Write) -> Result<BackupCounts, BackupError> {
        let mut out = HashingWriter::new(writer);
        let keys_line = if self.header.with_keys {
            KEYS_LINE_WITH
        } else {
            KEYS_LINE_WITHOUT
        };
        out.put(format!("{MAGIC_LINE} {BACKUP_FORMAT}\n").as_bytes())?;
        out.put(keys_line.as_bytes())?;
        let header = serde_json::to_vec(&self.header)
            .map_err(|error| BackupError::Other(format!("encoding the header: {error}")))?;
        out.record(b'H', &[&header])?;
        let mut counts = BackupCounts::default();
        for file in &self.files {
            let name = file.name.as_bytes();
            let name_len = u16::try_from(name.len())
                .map_err(|_| BackupError::Other(format!("file name too long: {}", file.name)))?;
            out.record(
                b'F',
                &[
                    &name_len.to_be_bytes(),
                    name,
                    &file.mode.to_be_bytes(),
                    &file.bytes,
                ],
            )?;
            counts.files += 1;
        }
        for (name, entries) in &self.trees {
            out.record(b'T', &[name])?;
            counts.trees += 1;
            for (key, value) in entries {
                let key_len = u32::try_from(key.len())
                    .map_err(|_| BackupError::Other("a store key is too long".into()))?;
                out.record(b'E', &[&key_len.to_be_bytes(), key, value])?;
                counts.entries += 1;
                match name.as_slice() {
                    n if n == crate::store::TREE_INBOX.as_bytes() => counts.inbox += 1,
                    n if n == crate::store::TREE_OUTBOX.as_bytes() => counts.outbox += 1,
                    _ => {}
                }
            }
        }
        let trailer = serde_json::to_vec(&counts)
            .map_err(|error| BackupError::Other(format!("encoding the trailer: {error}")))?;
        out.record(b'Z', &[&trailer])?;
        let digest = out.hasher.clone().finalize();
        out.inner
            .write_all(&digest)
            .map_err(|error| BackupError::Other(format!("writing the backup: {error}")))?;
        Ok(counts)
    }
}

/// The data directory's files that belong in a backup: everything except the store (copied
/// from sled instead), the control socket, the daemon's staging files, log files (`*.log`: a
/// node started by a harness logs there; they are not state) and, unless `with_keys`, the key
/// file. Sub-directories (revocations) are walked; symlinks and special files skipped.
fn collect_files(data_dir: &Path, with_keys: bool) -> Result<Vec<FileCopy>, BackupError> {
    let mut found = Vec::new();
    walk(data_dir, "", with_keys, &mut found)?;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn walk(
    dir: &Path,
    prefix: &str,
    with_keys: bool,
    found: &mut Vec<FileCopy>,
) -> Result<(), BackupError> {
    let entries = fs::read_dir(dir).map_err(io_error("reading the directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("reading the directory", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let relative = format!("{prefix}{name}");
        let top = prefix.is_empty();
        if top
            && (name == files::STORE
                || name == files::SOCKET
                || name.starts_with(STAGING_PREFIX)
                || name.ends_with(".log")
                || (name == files::KEY && !with_keys))
        {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(io_error("reading the file type of", &path))?;
        if kind.is_dir() {
            walk(&path, &format!("{relative}/"), with_keys, found)?;
        } else if kind.is_file() {
            let metadata = entry.metadata().map_err(io_error("reading", &path))?;
            if metadata.len() > MAX_FILE_BYTES {
                return Err(BackupError::Other(format!(
                    "{} is {} bytes, more than the {MAX_FILE_BYTES} a data-directory file may have in a backup; move it out of the data directory",
                    path.display(),
                    metadata.len()
                )));
            }
            let bytes = fs::read(&path).map_err(io_error("reading", &path))?;
            found.push(FileCopy {
                name: relative,
                mode: metadata.permissions().mode() & 0o777,
                bytes,
            });
        }
    }
    Ok(())
}

/// Writes `out` through `write` into `NAME.partial-PID` beside it (mode 0600), syncs, renames
/// and syncs the directory. On any failure the partial file is removed.
pub fn write_atomically<T>(
    out: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let file_name = out
        .file_name()
        .ok_or_else(|| BackupError::Other(format!("{} names no file", out.display())))?;
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if out.exists() {
        return Err(BackupError::Other(format!(
            "{} exists already; choose a new file name (a backup never overwrites one)",
            out.display()
        )));
    }
    let mut partial_name = file_name.to_os_string();
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = dir.join(partial_name);
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_error("creating", &partial))?;
        let mut buffered = BufWriter::new(file);
        let value = write(&mut buffered)?;
        let file = buffered.into_inner().map_err(|error| BackupError::Io {
            what: "writing",
            path: partial.clone(),
            source: error.into_error(),
        })?;
        file.sync_all().map_err(io_error("syncing", &partial))?;
        drop(file);
        fs::rename(&partial, out).map_err(io_error("renaming the finished backup to", out))?;
        File::open(&dir)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error("syncing the directory", &dir))?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// Writes records and hashes every byte.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
}

impl<'a> HashingWriter<'a> {
    fn new(inner: &'a mut dyn Write) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hasher.update(bytes);
        self.inner
            .write_all(bytes)
            .map_err(|error| BackupError::Other(format!("writing the backup: {error}")))
    }

    fn record(&mut self, tag: u8, parts: &[&[u8]]) -> Result<(), BackupError> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        self.put(&[tag])?;
        self.put(&(len as u64).to_be_bytes())?;
        for part in parts {
            self.put(part)?;
        }
        Ok(())
    }
}

/// One record read back from a backup.
pub enum Record {
    /// A data-directory file.
    File(FileCopy),
    /// The start of a tree.
    Tree(Vec<u8>),
    /// An entry of the last tree.
    Entry(Vec<u8>, Vec<u8>),
}

/// Reads a backup, checking the format, every record's bounds and, at the end, the trailer and
/// the checksum. `each` sees every record as it is read: callers that write must first run
/// [`verify`] (a damaged file is only known to be damaged at its end).
pub fn read(
    path: &Path,
    mut each: impl FnMut(Record) -> Result<(), BackupError>,
) -> Result<(BackupHeader, BackupCounts), BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io_error("opening", path))?;
    let total = file.metadata().map_err(io_error("reading", path))?.len();
    let mut reader = HashingReader {
        inner: BufReader::new(file),
        hasher: Sha256::new(),
        read: 0,
    };
    let first = reader.line(200).map_err(&damaged)?;
    let Some(version) = first.strip_prefix(MAGIC_LINE) else {
        return Err(damaged(
            "it does not start with the quickfreeze backup header (is it a backup at all?)".into(),
        ));
    };
    let version: u32 = version
        .trim()
        .parse()
        .map_err(|_| damaged(format!("unreadable format line {first:?}")))?;
    if version > BACKUP_FORMAT {
        return Err(BackupError::Newer {
            path: path.to_path_buf(),
            what: format!("backup format {version}; this release reads format {BACKUP_FORMAT}"),
        });
    }
    if version != BACKUP_FORMAT {
        return Err(damaged(format!("unknown backup format {version}")));
    }
    let keys_line = reader.line(200).map_err(&damaged)?;
    let keys_said = format!("{keys_line}\n");
    let mut header: Option<BackupHeader> = None;
    let mut counts = BackupCounts::default();
    let mut tree: Option<Vec<u8>> = None;
    loop {
        let mut head = [0u8; 9];
        reader
            .exact(&mut head)
            .map_err(|_| damaged("it ends before its trailer: the file is truncated".into()))?;
        let tag = head[0];
        let len = u64::from_be_bytes(head[1..].try_into().expect("8 bytes"));
        if len > MAX_RECORD_BYTES || len > total.saturating_sub(reader.read) {
            return Err(damaged(format!(
                "a record claims {len} bytes, more than the file has left: the file is truncated or damaged"
            )));
        }
        let mut body = vec![0u8; len as usize];
        reader
            .exact(&mut body)
            .map_err(|_| damaged("it ends inside a record: the file is truncated".into()))?;
        match tag {
            b'H' if header.is_none() => {
                let parsed: BackupHeader = serde_json::from_slice(&body)
                    .map_err(|error| damaged(format!("unreadable header: {error}")))?;
                let line = if parsed.with_keys {
                    KEYS_LINE_WITH
                } else {
                    KEYS_LINE_WITHOUT
                };
                if line != keys_said {
                    return Err(damaged(
                        "its keys line and its header disagree about whether it holds keys".into(),
                    ));
                }
                if parsed.store_format > crate::store::FORMAT_VERSION {
                    return Err(BackupError::Newer {
                        path: path.to_path_buf(),
                        what: format!(
                            "store format {}; this release reads store format {}",
                            parsed.store_format,
                            crate::store::FORMAT_VERSION
                        ),
                    });
                }
                header = Some(parsed);
            }
            _ if header.is_none() => {
                return Err(damaged("the first record is not the header".into()))
            }
            b'F' => {
                if body.len() < 6 {
                    return Err(damaged("a file record is too short".into()));
                }
                let name_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                if body.len() < 6 + name_len {
                    return Err(damaged("a file record is too short".into()));
                }
                let name = std::str::from_utf8(&body[2..2 + name_len])
                    .map_err(|_| damaged("a file name is not UTF-8".into()))?
                    .to_string();
                if !safe_relative(&name) {
                    return Err(damaged(format!("unsafe file name {name:?}")));
                }
                let mode = u32::from_be_bytes(
                    body[2 + name_len..6 + name_len]
                        .try_into()
                        .expect("4 bytes"),
                );
                let bytes = body[6 + name_len..].to_vec();
                counts.files += 1;
                each(Record::File(FileCopy {
                    name,
                    mode: mode & 0o777,
                    bytes,
                }))?;
            }
            b'T' => {
                counts.trees += 1;
                tree = Some(body.clone());
                each(Record::Tree(body))?;
            }
            b'E' => {
                let Some(name) = &tree else {
                    return Err(damaged("a store entry before any tree".into()));
                };
                if body.len() < 4 {
                    return Err(damaged("a store entry is too short".into()));
                }
                let key_len = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
                if body.len() < 4 + key_len {
                    return Err(damaged("a store entry is too short".into()));
                }
                counts.entries += 1;
                if name.as_slice() == crate::store::TREE_INBOX.as_bytes() {
                    counts.inbox += 1;
                } else if name.as_slice() == crate::store::TREE_OUTBOX.as_bytes() {
                    counts.outbox += 1;
                }
                let value = body.split_off(4 + key_len);
                let key = body[4..].to_vec();
                each(Record::Entry(key, value))?;
            }
            b'Z' => {
                let expected = reader.hasher.clone().finalize();
                let mut digest = [0u8; 32];
                reader.inner.read_exact(&mut digest).map_err(|_| {
                    damaged("it ends inside its checksum: the file is truncated".into())
                })?;
                if digest[..] != expected[..] {
                    return Err(damaged(
                        "its SHA-256 checksum does not match: the file was damaged".into(),
                    ));
                }
                let mut rest = [0u8; 1];
                if reader
                    .inner
                    .read(&mut rest)
                    .map_err(io_error("reading", path))?
                    != 0
                {
                    return Err(damaged("there are bytes after its end".into()));
                }
                let said: BackupCounts = serde_json::from_slice(&body)
                    .map_err(|error| damaged(format!("unreadable trailer: {error}")))?;
                if said != counts {
                    return Err(damaged(format!(
                        "its trailer lists {said:?} but the file holds {counts:?}"
                    )));
                }
                let header = header.expect("checked above");
                return Ok((header, counts));
            }
            other => return Err(damaged(format!("unknown record kind {other}"))),
        }
    }
}

/// Checks a backup from end to end without writing anything.
pub fn verify(path: &Path) -> Result<(BackupHeader, BackupCounts), BackupError> {
    read(path, |_| Ok(()))
}

/// A name restored into the data directory must stay inside it.
fn safe_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

struct HashingReader {
    inner: BufReader<File>,
    hasher: Sha256,
    read: u64,
}

impl HashingReader {
    fn exact(&mut self, buffer: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buffer)?;
        self.hasher.update(&*buffer);
        self.read += buffer.len() as u64;
        Ok(())
    }

    fn line(&mut self, max: usize) -> Result<String, String> {
        let mut line = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            self.exact(&mut byte)
                .map_err(|_| "it ends inside its first lines: the file is truncated".to_string())?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
            if line.len() > max {
                return Err("it does not start with the quickfreeze backup header".into());
            }
        }
        String::from_utf8(line).map_err(|_| "its first lines are not text".to_string())
    }
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    /// The backup's header.
    pub header: BackupHeader,
    /// What it held.
    pub counts: BackupCounts,
}

/// Restores `backup` into `data_dir`, which must not exist or be empty. The file is verified
/// from end to end first; nothing is written when it is damaged. On a failure while writing,
/// what was written is removed again.
pub fn restore(backup: &Path, data_dir: &Path) -> Result<Restored, BackupError> {
    if data_dir.exists() {
        let mut entries = fs::read_dir(data_dir).map_err(io_error("reading", data_dir))?;
        if entries.next().is_some() {
            return Err(BackupError::Other(format!(
                "{} is not empty; restore into a new or empty directory (a restore never overwrites a data directory)",
                data_dir.display()
            )));
        }
    }
    verify(backup)?;
    let created = !data_dir.exists();
    fs::create_dir_all(data_dir).map_err(io_error("creating", data_dir))?;
    let result = write_restore(backup, data_dir);
    if result.is_err() {
        // Leave the directory as it was found: empty (or absent).
        if let Ok(entries) = fs::read_dir(data_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        if created {
            let _ = fs::remove_dir(data_dir);
        }
    }
    result
}

fn write_restore(backup: &Path, data_dir: &Path) -> Result<Restored, BackupError> {
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_error("setting the mode of", data_dir))?;
    let store_dir = data_dir.join(files::STORE);
    let db = sled::Config::new()
        .path(&store_dir)
        .open()
        .map_err(|error| BackupError::Other(format!("creating the store: {error}")))?;
    let store_error =
        |error: sled::Error| BackupError::Other(format!("writing the store: {error}"));
    let mut tree: Option<sled::Tree> = None;
    let (header, counts) = read(backup, |record| {
        match record {
            Record::File(file) => {
                let path = data_dir.join(&file.name);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
                }
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(file.mode)
                    .open(&path)
                    .map_err(io_error("creating", &path))?;
                out.write_all(&file.bytes)
                    .and_then(|()| out.sync_all())
                    .map_err(io_error("writing", &path))?;
                // The mode of the original, whatever the umask.
                fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
                    .map_err(io_error("setting the mode of", &path))?;
            }
            Record::Tree(name) => tree = Some(db.open_tree(name).map_err(store_error)?),
            Record::Entry(key, value) => {
                let tree = tree
                    .as_ref()
                    .ok_or_else(|| BackupError::Other("a store entry before any tree".into()))?;
                tree.insert(key, value).map_err(store_error)?;
            }
        }
        Ok(())
    })?;
    db.flush().map_err(store_error)?;
    drop(tree);
    drop(db);
    File::open(data_dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("syncing", data_dir))?;
    Ok(Restored { header, counts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let data = dir.join("data");
        fs::create_dir_all(data.join("revocations")).expect("test step");
        fs::write(data.join("node.toml"), "data_dir = \".\"\n").expect("test step");
        fs::write(data.join(files::KEY), "secret").expect("test step");
        fs::set_permissions(data.join(files::KEY), fs::Permissions::from_mode(0o600))
            .expect("test step");
        fs::write(data.join("revocations/one"), "notice").expect("test step");
        let db = sled::Config::new()
            .path(data.join(files::STORE))
            .open()
            .expect("test step");
        let inbox = db.open_tree(crate::store::TREE_INBOX).expect("test step");
        for i in 0u32..50 {
            inbox
                .insert(i.to_be_bytes(), vec![i as u8; 100])
                .expect("test step");
        }
        let out = dir.join("b.qfb");
        let snapshot = Snapshot::take(&data, &db, false, None, 1).expect("test step");
        snapshot.write_to(&out).expect("test step");
        out
    }

    #[test]
    fn round_trip_keeps_files_and_entries_and_leaves_out_the_key() {
        let dir = tempfile::tempdir().expect("test step");
        let out = sample(dir.path());
        let mode = fs::metadata(&out).expect("test step").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (header, counts) = verify(&out).expect("test step");
        assert!(!header.with_keys);
        assert_eq!((counts.files, counts.inbox), (2, 50));
        let target = dir.path().join("restored");
        restore(&out, &target).expect("test step");
        assert!(!target.join(files::KEY).exists());
        assert_eq!(
            fs::read(target.join("revocations/one")).expect("test step"),
            b"notice"
        );
        let db = sled::open(target.join(files::STORE)).expect("test step");
        let inbox = db.open_tree(crate::store::TREE_INBOX).expect("test step");
        assert_eq!(inbox.len(), 50);
        assert_eq!(
            inbox
                .get(7u32.to_be_bytes())
                .expect("test step")
                .expect("test step"),
            vec![7u8; 100]
        );
    }

    #[test]
    fn every_truncation_and_a_flipped_byte_are_refused() {
        let dir = tempfile::tempdir().expect("test step");
        let out = sample(dir.path());
        let bytes = fs::read(&out).expect("test step");
        let cut = dir.path().join("cut.qfb");
        for len in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
            fs::write(&cut, &bytes[..len]).expect("test step");
            let error = verify(&cut).expect_err("must fail");
            assert!(
                matches!(error, BackupError::Damaged { .. }),
                "cut at {len}: {error}"
            );
        }
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        fs::write(&cut, &flipped).expect("test step");
        assert!(verify(&cut)
            .expect_err("must fail")
            .to_string()
            .contains("checksum"));
        let target = dir.path().join("never");
        assert!(restore(&cut, &target).is_err());
        assert!(
            !target.exists(),
            "a damaged backup must leave nothing behind"
        );
    }

    #[test]
    fn restore_refuses_a_non_empty_directory_and_an_existing_output() {
        let dir = tempfile::tempdir().expect("test step");
        let out = sample(dir.path());
        let target = dir.path().join("busy");
        fs::create_dir_all(&target).expect("test step");
        fs::write(target.join("something"), "x").expect("test step");
        let error = restore(&out, &target).expect_err("must fail").to_string();
        assert!(error.contains("not empty"), "{error}");
        let again = write_atomically(&out, |_| Ok(()))
            .expect_err("must fail")
            .to_string();
        assert!(again.contains("exists already"), "{again}");
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(safe_relative("revocations/a"));
        for name in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"] {
            assert!(!safe_relative(name), "{name}");
        }
    }
}
