//! Integrity of a node's data, checked as a whole: every stored record against its checksum,
//! the store against the audit trail, and the audit trail against its signed heads. Used by
//! `quickfreeze store verify` (full decode) and by every start of the node (checksums and keys).
//!
//! The cross-check, both ways:
//!
//! - **what the audit says exists must exist.** A message the trail records as submitted, sent,
//!   taken into custody, delivered, expired, rejected or answered with a status must be in the
//!   outbox; one it records as received must be in the inbox. The daemon writes a turn's audit
//!   records *after* that turn's store writes, in the same group commit, so a crash can never
//!   leave a record without its message: a missing message is damage (lost data, a store
//!   recovered to an earlier state, a record removed).
//! - **every stored message has its record.** A crash between storing a message and writing its
//!   record (both wait for the same commit, the record is written later) can leave a message
//!   without its record; nothing was acknowledged then. That is not damage: it is listed as
//!   *unrecorded*, and the node appends the missing record at its next start.
//!
//! Then the signed heads (`crate::audit_head`): the one stored with the last commit, the head
//! file beside the store, and an optional witness must each verify and still be in the chain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use quickfreeze_keys::roster::{Roster, SignedRoster};
use quickfreeze_keys::NodeId;
use quickfreeze_proto::core::Store;
use quickfreeze_proto::MessageId;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditKind, AuditLog, VerifyReport};
use crate::audit_head::{SignedHead, HEAD_FILE};
use crate::store::{DamagedRecord, SledStore};

/// A message the audit trail names that the store does not hold (intact).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingMessage {
    /// `outbox` or `inbox`.
    pub tree: String,
    /// The message id (hex).
    pub message_id: String,
    /// The sender, for an inbox message.
    pub sender: Option<String>,
    /// The first audit record naming it, and its kind.
    pub audit_seq: u64,
    /// What that record says happened.
    pub audit_kind: AuditKind,
}

/// A stored message without its audit record (a crash remnant; see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnrecordedMessage {
    /// `outbox` or `inbox`.
    pub tree: String,
    /// The message id (hex).
    pub message_id: String,
    /// The sender, for an inbox message.
    pub sender: Option<String>,
}

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityReport {
    /// Intact outbox, inbox and relay records.
    pub outbox: u64,
    /// See `outbox`.
    pub inbox: u64,
    /// See `outbox`.
    pub relay: u64,
    /// Records that failed their checksum (or did not decode, or sit under the wrong key).
    pub damaged: Vec<DamagedRecord>,
    /// Messages the audit trail names that are not in the store.
    pub missing: Vec<MissingMessage>,
    /// Stored messages without their audit record (not damage).
    pub unrecorded: Vec<UnrecordedMessage>,
    /// The hash chain.
    pub audit: VerifyReport,
    /// Signed heads that do not verify or are no longer in the chain (damage).
    pub head_problems: Vec<String>,
    /// What was checked about signed heads, and what could not be (not damage).
    pub head_notes: Vec<String>,
}

impl IntegrityReport {
    /// Whether anything is damaged or lost (unrecorded messages and notes are not).
    pub fn is_damaged(&self) -> bool {
        !self.damaged.is_empty()
            || !self.missing.is_empty()
            || !self.audit.ok()
            || !self.head_problems.is_empty()
    }

    /// One line per problem, for a log line or an error message.
    pub fn problems(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for record in &self.damaged {
            lines.push(format!(
                "damaged record in tree `{}` under key {}: {}",
                record.tree, record.key, record.problem
            ));
        }
        for message in &self.missing {
            lines.push(format!(
                "message {}{} is missing from the {}, although audit record {} says `{}`",
                message.message_id,
                message
                    .sender
                    .as_ref()
                    .map_or_else(String::new, |sender| format!(" from {sender}")),
                message.tree,
                message.audit_seq,
                message.audit_kind
            ));
        }
        if let (Some(seq), Some(problem)) = (self.audit.first_bad, &self.audit.problem) {
            lines.push(format!(
                "the audit chain is broken at record {seq}: {problem}"
            ));
        }
        lines.extend(self.head_problems.iter().cloned());
        lines
    }
}

/// The roster held in `store`, unverified (only to tell the node's keys).
fn stored_roster(store: &SledStore) -> Option<Roster> {
    let bytes = store.get_roster().ok()??;
    SignedRoster::from_bytes(&bytes)
        .and_then(|signed| signed.roster_unverified())
        .ok()
}

/// Checks one signed head: its signature, its node, and that the chain still holds it.
fn check_head(
    what: &str,
    head: &SignedHead,
    node: Option<&NodeId>,
    roster: Option<&Roster>,
    log: &AuditLog,
) -> Result<String, String> {
    head.verify(roster)
        .map_err(|error| format!("the {what} is not valid: {error}"))?;
    if let Some(node) = node {
        if head.node != *node {
            return Err(format!(
                "the {what} is of node {}, not of this node ({node})",
                head.node
            ));
        }
    }
    head.check_chain(log)
        .map_err(|error| format!("the {what} does not match the audit chain: {error}"))?;
    Ok(format!(
        "the {what} ({} records, signed at {}) is in the chain",
        head.records, head.at
    ))
}

/// Checks `store` and `log` of the node in `data_dir` (see the module docs). With `decode`,
/// every record is decoded as well as checksummed (`store verify`); without, only checksums
/// and keys (the start-up check, cheaper). `witness`: a head kept outside the node.
pub fn check(
    store: &SledStore,
    log: &AuditLog,
    data_dir: &Path,
    witness: Option<&SignedHead>,
    decode: bool,
) -> IntegrityReport {
    let records = store.check_records(decode);
    let audit = log.verify(None);

    // What the audit trail says exists, and what it recorded as stored.
    let mut missing = BTreeMap::new();
    let mut submitted = BTreeSet::new();
    let mut received = BTreeSet::new();
    let mut head_problems = Vec::new();
    let mut head_notes = Vec::new();
    let walked = log.for_each_record(|record| {
        let body = &record.body;
        let Some(id) = body.message_id else { return };
        let (tree, present) = match body.kind {
            AuditKind::Submitted
            | AuditKind::Sent
            | AuditKind::Custody
            | AuditKind::Delivered
            | AuditKind::Expired
            | AuditKind::Rejected
            | AuditKind::StatusReceived => ("outbox", records.outbox.contains(&id)),
            AuditKind::Received => match body.peer {
                Some(sender) => ("inbox", records.inbox.contains(&(sender, id))),
                None => return,
            },
            _ => return,
        };
        match body.kind {
            AuditKind::Submitted => {
                submitted.insert(id);
            }
            AuditKind::Received => {
                if let Some(sender) = body.peer {
                    received.insert((sender, id));
                }
            }
            _ => {}
        }
        if !present {
            let sender = (tree == "inbox").then_some(body.peer).flatten();
            missing
                .entry((tree, sender, id))
                .or_insert((body.seq, body.kind));
        }
    });
    if let Err(error) = walked {
        head_problems.push(format!("the audit trail could not be read: {error}"));
    }
    let missing = missing
        .into_iter()
        .map(
            |((tree, sender, id), (audit_seq, audit_kind)): (
                (&str, Option<NodeId>, MessageId),
                _,
            )| MissingMessage {
                tree: tree.to_string(),
                message_id: id.to_string(),
                sender: sender.map(|sender| sender.to_string()),
                audit_seq,
                audit_kind,
            },
        )
        .collect();
    let mut unrecorded: Vec<UnrecordedMessage> = records
        .outbox
        .iter()
        .filter(|id| !submitted.contains(*id))
        .map(|id| UnrecordedMessage {
            tree: "outbox".into(),
            message_id: id.to_string(),
            sender: None,
        })
        .collect();
    unrecorded.extend(
        records
            .inbox
            .iter()
            .filter(|key| !received.contains(*key))
            .map(|(sender, id)| UnrecordedMessage {
                tree: "inbox".into(),
                message_id: id.to_string(),
                sender: Some(sender.to_string()),
            }),
    );

    let (problems, notes) = check_heads(store, log, data_dir, witness);
    head_problems.extend(problems);
    head_notes.extend(notes);

    IntegrityReport {
        outbox: records.outbox.len() as u64,
        inbox: records.inbox.len() as u64,
        relay: records.relay,
        damaged: records.damaged,
        missing,
        unrecorded,
        audit,
        head_problems,
        head_notes,
    }
}

/// The signed heads of the node in `data_dir` (the one stored with the last commit, the head
/// file) and an optional witness's, each checked against `log`: (problems, notes).
pub fn check_heads(
    store: &SledStore,
    log: &AuditLog,
    data_dir: &Path,
    witness: Option<&SignedHead>,
) -> (Vec<String>, Vec<String>) {
    let mut head_problems = Vec::new();
    let mut head_notes = Vec::new();
    let roster = stored_roster(store);
    let (log_records, _) = log.head();
    let stored_head = match store.get_audit_head() {
        Err(error) => {
            head_problems.push(format!("the signed audit head in the store: {error}"));
            None
        }
        Ok(None) => {
            if log_records > 0 && !store.migrated_unsigned().unwrap_or(false) {
                head_problems.push(format!(
                    "the store holds {log_records} audit records but no signed audit head: it was removed"
                ));
            } else {
                head_notes.push(
                    "no signed audit head yet (the node signs one at its next commit)".into(),
                );
            }
            None
        }
        Ok(Some(bytes)) => match SignedHead::from_bytes(&bytes) {
            Err(error) => {
                head_problems.push(format!("the signed audit head in the store: {error}"));
                None
            }
            Ok(head) => Some(head),
        },
    };
    let node = stored_head.as_ref().map(|head| head.node);
    if let Some(head) = &stored_head {
        match check_head("signed head in the store", head, None, roster.as_ref(), log) {
            Ok(note) => head_notes.push(note),
            Err(problem) => head_problems.push(problem),
        }
    }
    let head_file = data_dir.join(HEAD_FILE);
    if head_file.exists() {
        match SignedHead::read_file(&head_file) {
            Err(error) => head_notes.push(format!(
                "the head file could not be read ({error}); it is rewritten at the next commit"
            )),
            Ok(head) => match check_head("head file", &head, node.as_ref(), roster.as_ref(), log) {
                Ok(note) => head_notes.push(note),
                Err(problem) => head_problems.push(problem),
            },
        }
    } else if log_records > 0 {
        head_notes.push(format!(
            "no head file ({HEAD_FILE}) in the data directory; the node writes it at its next commit"
        ));
    }
    if let Some(witness) = witness {
        match check_head(
            "witness's head",
            witness,
            node.as_ref(),
            roster.as_ref(),
            log,
        ) {
            Ok(note) => head_notes.push(note),
            Err(problem) => head_problems.push(problem),
        }
    }
    (head_problems, head_notes)
}
