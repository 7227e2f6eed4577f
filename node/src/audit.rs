//! The audit trail: an append-only, hash-chained record of what happened to every message.
//!
//! # What is recorded
//!
//! One [`AuditRecord`] per fact an auditor or a case file may need: a request submitted, sent,
//! taken into custody by a relay, delivered, received, opened by an officer (`show`),
//! acknowledged, a status sent or received, expiry, a refusal by the recipient (with its reason),
//! a refused inbound frame, a roster installed or updated, a deadline breached. Each record
//! carries a sequence number, the time, the kind, the message id, the other node and its country,
//! the envelope digest and a short detail written by this node (a reason, a status name, a clock).
//! **The content of a request never enters the log**: no case facts, no data descriptions, no
//! notes. Officer names appear for acknowledgements and status replies, because "who did it" is
//! what an audit is for.
//!
//! # The chain
//!
//! Records live in their own sled tree ([`TREE_AUDIT`]) of the node's database, in *blocks*: one
//! sled value holds the records appended between two group commits (at most
//! [`MAX_RECORDS_PER_BLOCK`]), keyed by the sequence number of its first record in big-endian
//! bytes so that sled's key order is the sequence order. (One sled insert per record cost as much
//! CPU as the rest of the store's writes together at a few thousand messages per second; a block
//! per commit makes it one insert per commit.) Each record stores its body and
//!
//! `hash = SHA-256(AUDIT_DOMAIN_TAG ‖ hash of the previous record ‖ canonical encoding of the body)`
//!
//! where the first record's "previous hash" is 32 zero bytes and the canonical encoding is
//! [`quickfreeze_keys::codec::encode`] of [`AuditBody`]. [`verify_chain`] walks the records in
//! key order and recomputes every hash: an edited byte, a removed record or two records swapped
//! all break the chain at a sequence number it reports.
//!
//! Two limits, stated plainly. A record deleted **from the end** leaves a shorter, perfectly
//! consistent chain; it is detected only against a head hash recorded earlier (`audit verify
//! --expect-head`, e.g. the head written into the shift log each morning). And someone able to
//! rewrite the database can rebuild the whole chain after an edit; again only an earlier head
//! kept elsewhere reveals it.
//!
//! # Durability
//!
//! The daemon appends the records of a loop turn in memory and writes them as one block
//! ([`AuditLog::write_pending`]) immediately *before* the group commit that covers that turn
//! begins, so the record of a change is durable exactly when the change is, and nothing is
//! acknowledged to anyone before both are on disk.

use std::collections::BTreeSet;

use quickfreeze_keys::{codec, Digest32, NodeId, Timestamp};
use quickfreeze_proto::MessageId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use crate::audit_view::{AuditKind, AuditLine, VerifyReport};
use crate::control::{ControlRequest, ControlResponse};
use crate::store::SledStore;
use quickfreeze_proto::core::StoreError;

/// Name of the sled tree holding the audit records.
pub const TREE_AUDIT: &str = "audit";
/// Domain separation for the record hashes (changing it changes every hash).
pub const AUDIT_DOMAIN_TAG: &[u8] = b"quickfreeze-audit-record-v1";
/// Largest encoded record the log writes or reads.
pub const MAX_AUDIT_RECORD_BYTES: u64 = 8 * 1024;
/// Most records in one stored block.
pub const MAX_RECORDS_PER_BLOCK: usize = 256;
/// Largest encoded block.
pub const MAX_AUDIT_BLOCK_BYTES: u64 = MAX_RECORDS_PER_BLOCK as u64 * MAX_AUDIT_RECORD_BYTES + 16;
/// Longest `detail` kept in a record (longer text is cut, with a marker).
pub const MAX_DETAIL_CHARS: usize = 400;
/// Most records one export page carries over the control socket.
pub const MAX_EXPORT_PAGE: usize = 1_000;

/// The facts a caller hands to [`AuditLog::append`]; the log adds sequence number and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFacts {
    /// What happened.
    pub kind: AuditKind,
    /// The message concerned.
    pub message_id: Option<MessageId>,
    /// The other node (recipient, sender, relay or offending peer).
    pub peer: Option<NodeId>,
    /// Its country, from the roster.
    pub country: Option<String>,
    /// SHA-256 of the envelope concerned.
    pub envelope_digest: Option<Digest32>,
    /// Short text written by this node: a reason, a status name, a clock. Never request content.
    pub detail: String,
}

impl AuditFacts {
    /// Facts of `kind` with nothing else filled in.
    pub fn new(kind: AuditKind) -> AuditFacts {
        AuditFacts {
            kind,
            message_id: None,
            peer: None,
            country: None,
            envelope_digest: None,
            detail: String::new(),
        }
    }
}

/// The hashed part of a record, in its canonical field order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBody {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// When the node recorded it.
    pub at: Timestamp,
    /// What happened.
    pub kind: AuditKind,
    /// The message concerned.
    pub message_id: Option<MessageId>,
    /// The other node.
    pub peer: Option<NodeId>,
    /// Its country.
    pub country: Option<String>,
    /// SHA-256 of the envelope concerned.
    pub envelope_digest: Option<Digest32>,
    /// Short text written by this node.
    pub detail: String,
}

/// One stored record: the body and the chain hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The hashed facts.
    pub body: AuditBody,
    /// `SHA-256(tag ‖ previous hash ‖ encode(body))`.
    pub hash: Digest32,
}

impl From<&AuditRecord> for AuditLine {
    fn from(record: &AuditRecord) -> AuditLine {
        let body = &record.body;
        AuditLine {
            seq: body.seq,
            at: body.at.to_rfc3339(),
            at_ms: body.at.0,
            kind: body.kind,
            message_id: body.message_id.map(|id| id.to_string()),
            peer: body.peer.map(|peer| peer.to_string()),
            country: body.country.clone(),
            envelope_digest: body.envelope_digest.map(|digest| digest.to_string()),
            detail: body.detail.clone(),
            hash: record.hash.to_string(),
        }
    }
}

/// The chain hash of `body` after `previous`.
pub fn chain_hash(previous: &Digest32, body: &AuditBody) -> Result<Digest32, String> {
    let encoded = codec::encode(body, MAX_AUDIT_RECORD_BYTES)
        .map_err(|error| format!("audit record {} does not encode: {error}", body.seq))?;
    let mut hasher = Sha256::new();
    hasher.update(AUDIT_DOMAIN_TAG);
    hasher.update(previous.0);
    hasher.update(&encoded);
    Ok(Digest32(hasher.finalize().into()))
}

/// The key of record `seq`.
pub fn audit_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Checks a log given as `(key, value)` pairs in key order, stopping at the first problem.
///
/// `expect_head`, if given, must be the hash of one of the records that verified; a missing
/// tail (records deleted from the end) is detected only this way.
pub fn verify_chain<I>(items: I, expect_head: Option<&Digest32>) -> VerifyReport
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), String>>,
{
    let mut previous = Digest32([0; 32]);
    let mut expected_seq = 0u64;
    let mut found_head = false;
    let mut problem = None;
    for item in items {
        let (key, value) = match item {
            Ok(pair) => pair,
            Err(error) => {
                problem = Some(format!("the log could not be read: {error}"));
                break;
            }
        };
        let key_seq = match <[u8; 8]>::try_from(key.as_slice()) {
            Ok(bytes) => u64::from_be_bytes(bytes),
            Err(_) => {
                problem = Some(format!(
                    "a key of {} bytes ({}) is not a sequence number",
                    key.len(),
                    hex::encode(&key)
                ));
                break;
            }
        };
        if key_seq != expected_seq {
            problem = Some(if key_seq > expected_seq {
                format!(
                    "record {expected_seq} is missing (the next one stored is {key_seq}): records were removed"
                )
            } else {
                format!("record {key_seq} is stored out of order")
            });
            break;
        }
        let records: Vec<AuditRecord> = match codec::decode(&value, MAX_AUDIT_BLOCK_BYTES) {
            Ok(records) => records,
            Err(error) => {
                problem = Some(format!(
                    "the block of records from {key_seq} does not decode ({error}): it was altered"
                ));
                break;
            }
        };
        if records.is_empty() || records.len() > MAX_RECORDS_PER_BLOCK {
            problem = Some(format!(
                "the block of records from {key_seq} holds {} records: it was altered",
                records.len()
            ));
            break;
        }
        for record in records {
            if record.body.seq != expected_seq {
                problem = Some(format!(
                    "record {expected_seq} says it is record {}: records were moved or swapped",
                    record.body.seq
                ));
                break;
            }
            match chain_hash(&previous, &record.body) {
                Ok(hash) if hash == record.hash => {}
                Ok(_) => {
                    problem = Some(format!(
                        "record {expected_seq} does not match its hash chain: it, or the record before it, was altered"
                    ));
                    break;
                }
                Err(error) => {
                    problem = Some(error);
                    break;
                }
            }
            if expect_head == Some(&record.hash) {
                found_head = true;
            }
            previous = record.hash;
            expected_seq += 1;
        }
        if problem.is_some() {
            break;
        }
    }
    let first_bad = problem.as_ref().map(|_| expected_seq);
    VerifyReport {
        records: expected_seq,
        head: previous.to_string(),
        first_bad,
        problem,
        expected_head_found: expect_head.map(|_| found_head),
        head_problems: Vec::new(),
        head_notes: Vec::new(),
    }
}

/// Parses `--since`: an RFC 3339 time, or an age such as `30d`, `12h`, `90m`, `45s` before `now`.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    let unit_ms = match text.chars().last() {
        Some('d') => Some(24 * 3600 * 1000),
        Some('h') => Some(3600 * 1000),
        Some('m') => Some(60 * 1000),
        Some('s') => Some(1000),
        _ => None,
    };
    if let Some(unit_ms) = unit_ms {
        if let Ok(count) = text[..text.len() - 1].parse::<u64>() {
            // Ten years is more than any store holds; larger numbers are typos.
            if count > 3_660 * 24 * 3600 * 1000 / unit_ms {
                return Err(format!(
                    "`{text}` reaches back more than ten years; give a date instead"
                ));
            }
            return Ok(Timestamp(now.0.saturating_sub(count * unit_ms)));
        }
    }
    Timestamp::parse_rfc3339(text).map_err(|_| {
        format!("`{text}` is neither an age such as 30d, 12h, 90m or 45s nor an RFC 3339 time such as 2026-11-01T00:00:00Z")
    })
}

fn cut_detail(detail: String) -> String {
    if detail.chars().count() <= MAX_DETAIL_CHARS {
        return detail;
    }
    let mut cut: String = detail.chars().take(MAX_DETAIL_CHARS).collect();
    cut.push_str("…[cut]");
    cut
}

fn tree_error(operation: &str, error: sled::Error) -> StoreError {
    StoreError(format!("{operation} in tree `{TREE_AUDIT}`: {error}"))
}

/// The audit log of one node: a sled tree plus the position of its head.
pub struct AuditLog {
    tree: sled::Tree,
    next_seq: u64,
    head: Digest32,
    /// Appended, not yet written to the tree (see [`AuditLog::write_pending`]).
    pending: Vec<AuditRecord>,
}

impl AuditLog {
    /// Opens the log in `store`'s database and finds its head.
    ///
    /// A last record that does not decode does not stop the node (an officer must still be able
    /// to work): the log continues after it, chaining from the hash of its raw bytes, and
    /// `audit verify` reports the damaged record.
    pub fn open(store: &SledStore) -> Result<AuditLog, StoreError> {
        let tree = store.open_tree(TREE_AUDIT)?;
        let last = tree.last().map_err(|error| tree_error("read", error))?;
        let (next_seq, head) = match last {
            None => (0, Digest32([0; 32])),
            Some((key, value)) => {
                let seq = <[u8; 8]>::try_from(key.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| {
                        StoreError(format!(
                            "tree `{TREE_AUDIT}` holds a key that is not a sequence number ({}); run `quickfreeze audit verify`",
                            hex::encode(&key)
                        ))
                    })?;
                match codec::decode::<Vec<AuditRecord>>(&value, MAX_AUDIT_BLOCK_BYTES) {
                    Ok(records) if !records.is_empty() => {
                        let last = &records[records.len() - 1];
                        (last.body.seq.saturating_add(1), last.hash)
                    }
                    result => {
                        let error = match result {
                            Err(error) => error.to_string(),
                            Ok(_) => "empty block".to_string(),
                        };
                        tracing::error!(seq, %error, "the last block of audit records is damaged; the log continues after it; run `quickfreeze audit verify`");
                        (
                            seq.saturating_add(1),
                            Digest32(Sha256::digest(&value).into()),
                        )
                    }
                }
            }
        };
        Ok(AuditLog {
            tree,
            next_seq,
            head,
            pending: Vec::new(),
        })
    }

    /// Records in the log, and the hash of the last one.
    pub fn head(&self) -> (u64, Digest32) {
        (self.next_seq, self.head)
    }

    /// Appends one record in memory. [`AuditLog::write_pending`] must write it before the group
    /// commit that is to cover it begins.
    pub fn append(&mut self, at: Timestamp, facts: AuditFacts) -> Result<AuditRecord, StoreError> {
        let body = AuditBody {
            seq: self.next_seq,
            at,
            kind: facts.kind,
            message_id: facts.message_id,
            peer: facts.peer,
            country: facts.country,
            envelope_digest: facts.envelope_digest,
            detail: cut_detail(facts.detail),
        };
        let hash = chain_hash(&self.head, &body).map_err(StoreError)?;
        let record = AuditRecord { body, hash };
        self.pending.push(record.clone());
        self.next_seq += 1;
        self.head = hash;
        Ok(record)
    }

    /// Whether records wait for [`AuditLog::write_pending`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the appended records to the tree, as blocks of at most [`MAX_RECORDS_PER_BLOCK`],
    /// and marks the store as written so that its next flush makes them durable. On failure the
    /// records stay pending (the daemon stops: nothing may leave without its record).
    pub fn write_pending(&mut self, store: &mut SledStore) -> Result<(), StoreError> {
        while !self.pending.is_empty() {
            let count = self.pending.len().min(MAX_RECORDS_PER_BLOCK);
            let block = &self.pending[..count];
            let bytes = codec::encode(&block, MAX_AUDIT_BLOCK_BYTES)
                .map_err(|error| StoreError(format!("audit block does not encode: {error}")))?;
            store.note_write();
            self.tree
                .insert(audit_key(block[0].body.seq), bytes)
                .map_err(|error| tree_error("write", error))?;
            self.pending.drain(..count);
        }
        Ok(())
    }

    /// Verifies the whole log (see [`verify_chain`]).
    pub fn verify(&self, expect_head: Option<&Digest32>) -> VerifyReport {
        verify_chain(
            self.tree.iter().map(|item| {
                item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                    .map_err(|error| error.to_string())
            }),
            expect_head,
        )
    }

    /// Up to `limit` records (at most [`MAX_EXPORT_PAGE`]) at or after `since`, starting after
    /// sequence number `after` (exclusive). Returns them and the sequence number to continue
    /// after, if more may follow.
    pub fn export_page(
        &self,
        since: Timestamp,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<AuditLine>, Option<u64>), StoreError> {
        self.export_page_of(since, after, limit, None)
    }

    /// [`AuditLog::export_page`] keeping only the records about one of `only` (when given).
    pub fn export_page_of(
        &self,
        since: Timestamp,
        after: Option<u64>,
        limit: usize,
        only: Option<&BTreeSet<MessageId>>,
    ) -> Result<(Vec<AuditLine>, Option<u64>), StoreError> {
        let limit = limit.clamp(1, MAX_EXPORT_PAGE);
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        // Begin at the block holding `start`: the last one keyed at or before it.
        let first_key = self
            .tree
            .range(..=audit_key(start))
            .next_back()
            .transpose()
            .map_err(|error| tree_error("scan", error))?
            .map_or(audit_key(start).to_vec(), |(key, _)| key.to_vec());
        let mut lines = Vec::new();
        for item in self.tree.range(first_key..) {
            let (key, value) = item.map_err(|error| tree_error("scan", error))?;
            let key_seq = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            let records: Vec<AuditRecord> =
                codec::decode(&value, MAX_AUDIT_BLOCK_BYTES).map_err(|error| {
                    StoreError(format!(
                    "the audit records from {key_seq} do not decode ({error}); run `quickfreeze audit verify`"
                ))
                })?;
            for record in records {
                if record.body.seq < start || record.body.at < since {
                    continue;
                }
                if let Some(only) = only {
                    if !record.body.message_id.is_some_and(|id| only.contains(&id)) {
                        continue;
                    }
                }
                lines.push(AuditLine::from(&record));
                if lines.len() >= limit {
                    return Ok((lines, Some(record.body.seq)));
                }
            }
        }
        Ok((lines, None))
    }

    /// The hash of record `seq`, if the log holds it (one block read).
    pub fn record_hash(&self, seq: u64) -> Result<Option<Digest32>, StoreError> {
        let Some((key, value)) = self
            .tree
            .range(..=audit_key(seq))
            .next_back()
            .transpose()
            .map_err(|error| tree_error("scan", error))?
        else {
            return Ok(None);
        };
        let records: Vec<AuditRecord> =
            codec::decode(&value, MAX_AUDIT_BLOCK_BYTES).map_err(|error| {
                StoreError(format!(
                    "the audit block under key {} does not decode ({error}); run `quickfreeze audit verify`",
                    hex::encode(&key)
                ))
            })?;
        Ok(records
            .iter()
            .find(|record| record.body.seq == seq)
            .map(|record| record.hash))
    }

    /// Calls `visit` with every record that decodes, in order; blocks that do not decode are
    /// skipped (`verify` reports them).
    pub fn for_each_record(&self, mut visit: impl FnMut(&AuditRecord)) -> Result<(), StoreError> {
        for item in self.tree.iter() {
            let (_, value) = item.map_err(|error| tree_error("scan", error))?;
            if let Ok(records) = codec::decode::<Vec<AuditRecord>>(&value, MAX_AUDIT_BLOCK_BYTES) {
                records.iter().for_each(&mut visit);
            }
        }
        Ok(())
    }

    /// The raw tree (tests tamper with it through this).
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }
}

/// Answers the audit requests of the control protocol from `log`: the daemon calls this for its
/// console, and the CLI calls it on the store directly when no node runs.
///
/// `audit verify` also checks the node's signed heads and, if given, a witness's head (see
/// `crate::audit_head`); `data_dir` is where the head file lives.
pub fn answer(
    log: &AuditLog,
    store: &SledStore,
    data_dir: &std::path::Path,
    request: &ControlRequest,
) -> ControlResponse {
    match request {
        ControlRequest::AuditVerify {
            expect_head,
            witness,
        } => {
            let witness = match witness.as_deref().map(|text| {
                hex::decode(text)
                    .map_err(|error| error.to_string())
                    .and_then(|bytes| crate::audit_head::SignedHead::from_bytes(&bytes))
            }) {
                None => None,
                Some(Ok(head)) => Some(head),
                Some(Err(message)) => {
                    return ControlResponse::Error {
                        message: format!("--witness: {message}"),
                    }
                }
            };
            match expect_head
                .as_deref()
                .map(str::parse::<Digest32>)
                .transpose()
            {
                Err(message) => ControlResponse::Error {
                    message: format!("--expect-head: {message}"),
                },
                Ok(expected) => {
                    let mut report = log.verify(expected.as_ref());
                    let (problems, notes) =
                        crate::integrity::check_heads(store, log, data_dir, witness.as_ref());
                    report.head_problems = problems;
                    report.head_notes = notes;
                    ControlResponse::AuditVerified { report }
                }
            }
        }
        ControlRequest::AuditExport {
            since_ms,
            after,
            limit,
        } => match log.export_page(Timestamp(*since_ms), *after, *limit) {
            Ok((lines, next_after)) => ControlResponse::AuditPage { lines, next_after },
            Err(error) => ControlResponse::Error {
                message: error.to_string(),
            },
        },
        ControlRequest::AuditExportFiltered {
            since_ms,
            after,
            limit,
            message,
            case,
        } => {
            let only = match message_filter(store, message.as_deref(), case.as_deref()) {
                Ok(only) => only,
                Err(message) => return ControlResponse::Error { message },
            };
            match log.export_page_of(Timestamp(*since_ms), *after, *limit, only.as_ref()) {
                Ok((lines, next_after)) => ControlResponse::AuditPage { lines, next_after },
                Err(error) => ControlResponse::Error {
                    message: error.to_string(),
                },
            }
        }
        _ => ControlResponse::Error {
            message: "not an audit request".into(),
        },
    }
}

/// The messages `audit export --message/--case` keeps: the one message, or every message whose
/// thread's request carries the case reference (the request, its statuses and follow-ups).
/// `None` when neither is given.
pub fn message_filter(
    store: &SledStore,
    message: Option<&str>,
    case: Option<&str>,
) -> Result<Option<BTreeSet<MessageId>>, String> {
    use crate::daemon::find::{resolve_id, thread_root};
    use quickfreeze_proto::core::Store;
    if message.is_none() && case.is_none() {
        return Ok(None);
    }
    let outbox = store.outbox_entries().map_err(|error| error.to_string())?;
    let inbox = store.inbox_entries().map_err(|error| error.to_string())?;
    let all = outbox
        .iter()
        .map(|entry| (entry.message_id, &entry.payload))
        .chain(inbox.iter().map(|entry| (entry.message_id, &entry.payload)));
    let mut only = BTreeSet::new();
    if let Some(text) = message {
        only.insert(resolve_id(text, all.clone().map(|(id, _)| id))?);
    }
    if let Some(case) = case {
        let wanted = case.trim();
        let roots: BTreeSet<MessageId> = all
            .clone()
            .filter(|(_, payload)| payload.case_reference() == Some(wanted))
            .map(|(id, payload)| thread_root(id, payload))
            .collect();
        if roots.is_empty() {
            return Err(format!(
                "no message with case reference `{wanted}` in the outbox or inbox (the reference must match exactly)"
            ));
        }
        let in_case: BTreeSet<MessageId> = all
            .filter(|(id, payload)| roots.contains(&thread_root(*id, payload)))
            .map(|(id, _)| id)
            .collect();
        if message.is_some() {
            only.retain(|id| in_case.contains(id));
            if only.is_empty() {
                return Err(format!("that message is not part of case `{wanted}`"));
            }
        } else {
            only = in_case;
        }
    }
    Ok(Some(only))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SledStore, StoreOptions, SyncMode};
    use quickfreeze_proto::core::Store;

    fn facts(kind: AuditKind, n: u8) -> AuditFacts {
        AuditFacts {
            kind,
            message_id: Some(MessageId([n; 16])),
            peer: Some(NodeId([n; 32])),
            country: Some("FR".into()),
            envelope_digest: Some(Digest32([n; 32])),
            detail: format!("detail {n}"),
        }
    }

    fn log_with(records: u8) -> (tempfile::TempDir, SledStore, AuditLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions {
            sync: SyncMode::Flush,
            ..StoreOptions::default()
        };
        let mut store = SledStore::open(&dir.path().join("store"), &options).expect("store");
        let mut log = AuditLog::open(&store).expect("log");
        for n in 0..records {
            log.append(Timestamp(1_000 + u64::from(n)), facts(AuditKind::Sent, n))
                .expect("append");
            // One block per record, so that the tests below can tamper with single records.
            log.write_pending(&mut store).expect("write");
        }
        store.flush().expect("flush");
        (dir, store, log)
    }

    #[test]
    fn an_untouched_log_verifies_and_reopens_at_its_head() {
        let (_dir, store, log) = log_with(5);
        let report = log.verify(None);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, 5);
        assert_eq!(report.head, log.head().1.to_string());
        let reopened = AuditLog::open(&store).expect("reopen");
        assert_eq!(reopened.head(), log.head());
    }

    #[test]
    fn an_edited_byte_is_found_with_its_sequence_number() {
        let (_dir, _store, log) = log_with(6);
        let mut value = log
            .tree()
            .get(audit_key(3))
            .expect("read")
            .expect("there")
            .to_vec();
        // The detail text is near the end; flip a bit in it so the record still decodes.
        let index = value.len() - 40;
        value[index] ^= 0x01;
        log.tree().insert(audit_key(3), value).expect("tamper");
        let report = log.verify(None);
        assert_eq!(report.first_bad, Some(3), "{report:?}");
        assert_eq!(report.records, 3);
    }

    #[test]
    fn every_single_byte_edit_is_found() {
        let (_dir, _store, log) = log_with(3);
        let original = log
            .tree()
            .get(audit_key(1))
            .expect("read")
            .expect("there")
            .to_vec();
        for index in 0..original.len() {
            let mut value = original.clone();
            value[index] ^= 0x80;
            log.tree().insert(audit_key(1), value).expect("tamper");
            let report = log.verify(None);
            assert_eq!(report.first_bad, Some(1), "byte {index}: {report:?}");
        }
    }

    #[test]
    fn a_removed_record_is_found() {
        let (_dir, _store, log) = log_with(6);
        log.tree().remove(audit_key(2)).expect("delete");
        let report = log.verify(None);
        assert_eq!(report.first_bad, Some(2), "{report:?}");
        assert!(report.problem.as_deref().unwrap_or("").contains("missing"));
    }

    #[test]
    fn swapped_records_are_found() {
        let (_dir, _store, log) = log_with(6);
        let a = log.tree().get(audit_key(1)).expect("read").expect("there");
        let b = log.tree().get(audit_key(4)).expect("read").expect("there");
        log.tree().insert(audit_key(1), b).expect("swap");
        log.tree().insert(audit_key(4), a).expect("swap");
        let report = log.verify(None);
        assert_eq!(report.first_bad, Some(1), "{report:?}");
    }

    #[test]
    fn a_renumbered_record_breaks_the_hash() {
        let (_dir, _store, log) = log_with(4);
        let mut block: Vec<AuditRecord> = codec::decode(
            &log.tree().get(audit_key(2)).expect("read").expect("there"),
            MAX_AUDIT_BLOCK_BYTES,
        )
        .expect("decode");
        block[0].body.detail = "rewritten".into();
        log.tree()
            .insert(
                audit_key(2),
                codec::encode(&block, MAX_AUDIT_BLOCK_BYTES).expect("encode"),
            )
            .expect("tamper");
        assert_eq!(log.verify(None).first_bad, Some(2));
    }

    #[test]
    fn a_deleted_tail_is_found_only_against_an_earlier_head() {
        let (_dir, _store, log) = log_with(5);
        let earlier_head = log.head().1;
        log.tree().remove(audit_key(4)).expect("delete tail");
        let plain = log.verify(None);
        assert!(plain.ok(), "a shorter chain is consistent on its own");
        assert_eq!(plain.records, 4);
        let against = log.verify(Some(&earlier_head));
        assert_eq!(against.expected_head_found, Some(false));
        assert!(!against.ok());
        // A head that is still in the chain is found.
        let (_dir2, _store2, intact) = log_with(5);
        let head = intact.head().1;
        assert_eq!(intact.verify(Some(&head)).expected_head_found, Some(true));
    }

    #[test]
    fn export_pages_and_filters_by_time() {
        let (_dir, _store, log) = log_with(10);
        let (lines, next) = log.export_page(Timestamp(1_003), None, 4).expect("page");
        assert_eq!(
            lines.iter().map(|line| line.seq).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        let (rest, done) = log.export_page(Timestamp(1_003), next, 100).expect("page");
        assert_eq!(rest.len(), 3);
        assert_eq!(done, None);
        assert_eq!(lines[0].kind, AuditKind::Sent);
        let json = serde_json::to_string(&lines[0]).expect("json");
        assert!(json.contains("\"kind\":\"sent\""), "{json}");
    }

    /// Blocks of 4, 3 and 5 records (keys 0, 4, 7), as the daemon writes them per commit.
    fn log_in_blocks() -> (tempfile::TempDir, SledStore, AuditLog) {
        let (dir, mut store, mut log) = log_with(0);
        let mut n = 0u8;
        for size in [4, 3, 5] {
            for _ in 0..size {
                log.append(Timestamp(1_000 + u64::from(n)), facts(AuditKind::Sent, n))
                    .expect("append");
                n += 1;
            }
            assert!(log.has_pending());
            log.write_pending(&mut store).expect("write");
            assert!(!log.has_pending());
        }
        store.flush().expect("flush");
        (dir, store, log)
    }

    #[test]
    fn records_written_in_blocks_verify_reopen_and_export_across_blocks() {
        let (_dir, store, log) = log_in_blocks();
        assert_eq!(log.tree().len(), 3, "one sled value per block");
        let report = log.verify(None);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, 12);
        let reopened = AuditLog::open(&store).expect("reopen");
        assert_eq!(reopened.head(), log.head());
        // Pages that start and end inside blocks.
        let (first, next) = log.export_page(Timestamp(0), Some(1), 4).expect("page");
        assert_eq!(
            first.iter().map(|line| line.seq).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        let (rest, done) = log.export_page(Timestamp(0), next, 100).expect("page");
        assert_eq!(
            rest.iter().map(|line| line.seq).collect::<Vec<_>>(),
            (6..12).collect::<Vec<_>>()
        );
        assert_eq!(done, None);
    }

    #[test]
    fn every_byte_edit_inside_a_block_is_found() {
        let (_dir, _store, log) = log_in_blocks();
        let original = log
            .tree()
            .get(audit_key(4))
            .expect("read")
            .expect("block of 4..7")
            .to_vec();
        for index in 0..original.len() {
            let mut value = original.clone();
            value[index] ^= 0x80;
            log.tree().insert(audit_key(4), value).expect("tamper");
            let report = log.verify(None);
            let bad = report.first_bad.expect("found");
            assert!((4..7).contains(&bad), "byte {index}: {report:?}");
        }
    }

    #[test]
    fn a_removed_block_or_a_record_dropped_from_one_is_found() {
        let (_dir, _store, log) = log_in_blocks();
        let block = log.tree().get(audit_key(4)).expect("read").expect("there");
        log.tree().remove(audit_key(4)).expect("delete");
        let report = log.verify(None);
        assert_eq!(report.first_bad, Some(4), "{report:?}");
        let mut records: Vec<AuditRecord> =
            codec::decode(&block, MAX_AUDIT_BLOCK_BYTES).expect("decode");
        records.remove(1);
        log.tree()
            .insert(
                audit_key(4),
                codec::encode(&records, MAX_AUDIT_BLOCK_BYTES).expect("encode"),
            )
            .expect("tamper");
        let report = log.verify(None);
        assert_eq!(report.first_bad, Some(5), "{report:?}");
        let empty: Vec<AuditRecord> = Vec::new();
        log.tree()
            .insert(
                audit_key(4),
                codec::encode(&empty, MAX_AUDIT_BLOCK_BYTES).expect("encode"),
            )
            .expect("tamper");
        assert_eq!(log.verify(None).first_bad, Some(4));
    }

    #[test]
    fn more_records_than_a_block_holds_are_split_across_blocks() {
        let (_dir, mut store, mut log) = log_with(0);
        for n in 0..(MAX_RECORDS_PER_BLOCK + 10) {
            log.append(
                Timestamp(n as u64),
                facts(AuditKind::Received, (n % 200) as u8),
            )
            .expect("append");
        }
        log.write_pending(&mut store).expect("write");
        assert_eq!(log.tree().len(), 2);
        let report = log.verify(None);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, MAX_RECORDS_PER_BLOCK as u64 + 10);
    }

    #[test]
    fn long_details_are_cut() {
        let (_dir, mut store, mut log) = log_with(0);
        let mut facts = AuditFacts::new(AuditKind::Rejected);
        facts.detail = "x".repeat(10_000);
        let record = log.append(Timestamp(5), facts).expect("append");
        log.write_pending(&mut store).expect("write");
        assert!(record.body.detail.chars().count() < MAX_DETAIL_CHARS + 10);
        assert!(log.verify(None).ok());
    }

    #[test]
    fn since_accepts_ages_and_dates() {
        let now = Timestamp(100 * 24 * 3600 * 1000);
        assert_eq!(
            parse_since("30d", now),
            Ok(Timestamp(70 * 24 * 3600 * 1000))
        );
        assert_eq!(
            parse_since("2h", now),
            Ok(Timestamp(now.0 - 2 * 3600 * 1000))
        );
        assert!(parse_since("1970-01-02T00:00:00Z", now).is_ok());
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("99999999d", now).is_err());
        assert!(parse_since("", now).is_err());
    }
}
