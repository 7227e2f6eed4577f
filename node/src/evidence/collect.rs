//! Gathering a case from a node's store into an evidence file: the thread's messages (exact
//! envelope bytes, plaintext, receipts), the signed roster, the audit records from the case's
//! first record to the head, the signed head, and the exporter's signature over the manifest.

use std::collections::BTreeSet;

use quickfreeze_keys::codec;
use quickfreeze_keys::{Digest32, Identity, Signature, Timestamp};
use quickfreeze_proto::core::{InboxEntry, OutboxEntry, Store};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::MessageId;

use super::{
    encode_file, manifest_signing_message, node_hex, render, rendering_digest, sha256_hex,
    sign_audit_head, Bundle, Manifest, Part, PartDigest, PartRole, FORMAT, MAX_AUDIT_RECORDS,
};
use crate::audit::{AuditRecord, MAX_AUDIT_BLOCK_BYTES};
use crate::daemon::find::{resolve_id, thread_root};
use crate::store::SledStore;

/// What an export reads: the node's store and audit tree, its identity (to sign) and its signed
/// roster (the one in force, which lists the keys that signed).
pub struct EvidenceSource<'a> {
    /// The node's store.
    pub store: &'a SledStore,
    /// The audit log's tree (every pending record written to it).
    pub audit: &'a sled::Tree,
    /// The node's keys.
    pub identity: &'a Identity,
    /// The signed roster the node holds, as exchanged.
    pub signed_roster: &'a [u8],
}

/// One message of the thread, as this node holds it.
struct Held {
    id: MessageId,
    created_at: Timestamp,
    envelope: Vec<u8>,
    payload: Payload,
    receipts: Vec<Vec<u8>>,
}

impl From<&OutboxEntry> for Held {
    fn from(entry: &OutboxEntry) -> Held {
        Held {
            id: entry.message_id,
            created_at: entry.created_at,
            envelope: entry.envelope.clone(),
            payload: entry.payload.clone(),
            receipts: entry
                .custody_receipt
                .iter()
                .chain(entry.delivery_receipt.iter())
                .map(|receipt| receipt.to_bytes())
                .collect(),
        }
    }
}

impl From<&InboxEntry> for Held {
    fn from(entry: &InboxEntry) -> Held {
        Held {
            id: entry.message_id,
            created_at: entry.created_at,
            envelope: entry.envelope.clone(),
            payload: entry.payload.clone(),
            receipts: vec![entry.receipt.to_bytes()],
        }
    }
}

/// Builds the evidence file for the thread of message `id_text` (an id or a unique prefix of at
/// least 6 hex digits) at time `now`. Errors are sentences for the officer.
pub fn collect(
    source: &EvidenceSource<'_>,
    id_text: &str,
    now: Timestamp,
) -> Result<String, String> {
    let outbox = source
        .store
        .outbox_entries()
        .map_err(|error| error.to_string())?;
    let inbox = source
        .store
        .inbox_entries()
        .map_err(|error| error.to_string())?;
    let id = resolve_id(
        id_text,
        outbox
            .iter()
            .map(|entry| entry.message_id)
            .chain(inbox.iter().map(|entry| entry.message_id)),
    )?;
    let payload_of = |id: &MessageId| {
        outbox
            .iter()
            .find(|entry| entry.message_id == *id)
            .map(|entry| &entry.payload)
            .or_else(|| {
                inbox
                    .iter()
                    .find(|entry| entry.message_id == *id)
                    .map(|entry| &entry.payload)
            })
    };
    let root = payload_of(&id).map_or(id, |payload| thread_root(id, payload));
    let mut held: Vec<Held> = outbox
        .iter()
        .filter(|entry| thread_root(entry.message_id, &entry.payload) == root)
        .map(Held::from)
        .chain(
            inbox
                .iter()
                .filter(|entry| thread_root(entry.message_id, &entry.payload) == root)
                .map(Held::from),
        )
        .collect();
    if !held.iter().any(|message| message.id == root) {
        return Err(format!(
            "message {id} answers request {root}, which this node does not hold; export that request's thread on the node that holds it"
        ));
    }
    // The request first, then the rest of the thread in the order it was written.
    held.sort_by_key(|message| (message.id != root, message.created_at, message.id));
    let case_reference = payload_of(&root)
        .and_then(Payload::case_reference)
        .map(str::to_string);

    let mut parts = vec![Part {
        name: "roster".into(),
        role: PartRole::Roster,
        hex: hex::encode(source.signed_roster),
    }];
    for message in &held {
        let base = format!("message/{}", message.id);
        parts.push(Part {
            name: format!("{base}/envelope"),
            role: PartRole::Envelope,
            hex: hex::encode(&message.envelope),
        });
        let plaintext = message.payload.to_bytes().map_err(|error| {
            format!(
                "message {}: its plaintext does not encode: {error}",
                message.id
            )
        })?;
        parts.push(Part {
            name: format!("{base}/plaintext"),
            role: PartRole::Plaintext,
            hex: hex::encode(plaintext),
        });
        for (index, receipt) in message.receipts.iter().enumerate() {
            parts.push(Part {
                name: format!("{base}/receipt/{index}"),
                role: PartRole::Receipt,
                hex: hex::encode(receipt),
            });
        }
    }

    let ids: BTreeSet<MessageId> = held.iter().map(|message| message.id).collect();
    let audit = audit_segment(source.audit, &ids)?;
    let head = audit
        .records
        .last()
        .ok_or("the audit trail is empty: there is nothing to prove the case's history with")?;
    let audit_head = sign_audit_head(source.identity, head.body.seq, &head.hash, now);
    let records_bytes = codec::encode(&audit.records, u64::MAX)
        .map_err(|error| format!("the audit records do not encode: {error}"))?;
    parts.push(Part {
        name: "audit/records".into(),
        role: PartRole::AuditRecords,
        hex: hex::encode(records_bytes),
    });

    let mut manifest = Manifest {
        format: FORMAT.into(),
        message_id: root.to_string(),
        case_reference,
        exporter: node_hex(&source.identity.node_id()),
        exported_at_ms: now.0,
        parts: parts
            .iter()
            .map(|part| {
                // The hex was written just above from bytes; decoding it back cannot fail.
                let bytes = hex::decode(&part.hex).unwrap_or_default();
                PartDigest {
                    name: part.name.clone(),
                    role: part.role,
                    sha256: sha256_hex(&bytes),
                    length: bytes.len() as u64,
                }
            })
            .collect(),
        audit_previous_hash: audit.previous.to_string(),
        audit_case_records: audit.case_records,
        audit_head,
        rendering_sha256: String::new(),
    };
    let (before, after) = render::page(&manifest, &parts)?;
    manifest.rendering_sha256 = rendering_digest(&before, &after).to_string();
    let signature = Signature(source.identity.sign(&manifest_signing_message(&manifest)));
    let bundle = Bundle {
        manifest,
        signature: signature.to_string(),
        parts,
    };
    Ok(encode_file(&before, &bundle, &after))
}

/// The audit records from the first that concerns `ids` to the head, and the chain hash
/// before them.
struct Segment {
    previous: Digest32,
    records: Vec<AuditRecord>,
    case_records: Vec<u64>,
}

fn audit_segment(tree: &sled::Tree, ids: &BTreeSet<MessageId>) -> Result<Segment, String> {
    // Before the case's first record: the last record seen and the hash before it.
    let mut previous = Digest32([0; 32]);
    let mut last: Option<(Digest32, AuditRecord)> = None;
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut case_records = Vec::new();
    for item in tree.iter() {
        let (key, value) = item.map_err(|error| format!("reading the audit trail: {error}"))?;
        let block: Vec<AuditRecord> = codec::decode(&value, MAX_AUDIT_BLOCK_BYTES).map_err(|error| {
            format!(
                "the audit records from key {} do not decode ({error}); run `quickfreeze audit verify`",
                hex::encode(&key)
            )
        })?;
        for record in block {
            let concerns = record
                .body
                .message_id
                .is_some_and(|message| ids.contains(&message));
            if records.is_empty() && !concerns {
                let before = previous;
                previous = record.hash;
                last = Some((before, record));
                continue;
            }
            if concerns {
                case_records.push(record.body.seq);
            }
            records.push(record);
            if records.len() > MAX_AUDIT_RECORDS {
                return Err(format!(
                    "more than {MAX_AUDIT_RECORDS} audit records were written since this case began; the bundle would be too large to check. Export the case's records with `quickfreeze audit export --message ID` instead"
                ));
            }
        }
    }
    if records.is_empty() {
        // No record names the case: carry the head alone, so that the signed head can still be
        // checked against it.
        if let Some((before, head)) = last {
            return Ok(Segment {
                previous: before,
                records: vec![head],
                case_records,
            });
        }
    }
    Ok(Segment {
        previous,
        records,
        case_records,
    })
}
