//! Checking an evidence file offline, on any machine: every digest, every signature against the
//! roster in the file, the roster against the authority set, each receipt against the exact
//! envelope bytes, the audit chain up to the signed head; and saying in plain words what is
//! proven and by whom. The first failure is returned, naming the part that failed.

use std::collections::BTreeSet;
use std::fmt;

use quickfreeze_keys::codec;
use quickfreeze_keys::roster::{Member, Roster, SignedRoster};
use quickfreeze_keys::{Digest32, Fingerprint, NodeId, Signature, Timestamp};
use quickfreeze_proto::envelope::{digest_bytes, verify_outer, AcceptPolicy, Envelope};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::receipt::{Receipt, ReceiptKind};
use quickfreeze_proto::MessageId;
use serde::Serialize;

use super::{
    audit_head_signing_message, decode, manifest_signing_message, parse_node_hex, sha256_hex,
    Bundle, PartRole, MAX_AUDIT_RECORDS,
};
use crate::audit::{chain_hash, AuditRecord, MAX_AUDIT_RECORD_BYTES};

/// What failed, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The part of the file: `file`, `page`, `manifest`, `roster`, a part name, `audit`.
    pub part: String,
    /// What is wrong, in words.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.part, self.problem)
    }
}

impl std::error::Error for Finding {}

fn fail<T>(part: impl Into<String>, problem: impl Into<String>) -> Result<T, Finding> {
    Err(Finding {
        part: part.into(),
        problem: problem.into(),
    })
}

/// A file that verified: what it proves, sentence by sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The request the file is about.
    pub message_id: String,
    /// Its case reference.
    pub case_reference: Option<String>,
    /// The fingerprint of the roster's authority set (compare it out of band when it was not
    /// given).
    pub authority_set: String,
    /// Whether it was compared with a fingerprint given by the person verifying.
    pub authority_set_checked: bool,
    /// What is proven, and by whom.
    pub statements: Vec<String>,
}

/// Names a member the way a court reads it: country, authority, and key fingerprint.
fn who(roster: &Roster, node: &NodeId) -> String {
    match roster.member(node) {
        Some(member) => describe(member),
        None => format!("node {node} (not in the roster)"),
    }
}

fn describe(member: &Member) -> String {
    format!(
        "{}'s {} ({}), key {}",
        member.country,
        match member.role {
            quickfreeze_keys::roster::Role::Relay => "relay",
            _ => "node",
        },
        member.authority_name,
        member.node_id.fingerprint()
    )
}

fn at(ms: u64) -> String {
    Timestamp(ms).to_rfc3339()
}

/// One message of the thread, checked.
struct Checked {
    id: MessageId,
    envelope: Envelope,
    payload: Option<Payload>,
}

/// Verifies an evidence file. `authority_set`: the roster authority's fingerprint, obtained out
/// of band; without it, the fingerprint found is returned to be compared by a person.
pub fn verify(bytes: &[u8], authority_set: Option<&Fingerprint>) -> Result<Verified, Finding> {
    let decoded = decode(bytes).map_err(|error| Finding {
        part: "file".into(),
        problem: error.to_string(),
    })?;
    let bundle = &decoded.bundle;
    let manifest = &bundle.manifest;
    let exported_at = Timestamp(manifest.exported_at_ms);
    let parts = check_parts(bundle)?;
    if decoded.rendering_sha256.to_string() != manifest.rendering_sha256 {
        return fail(
            "page",
            "the printable page was changed after export (its SHA-256 is not the one in the signed manifest)",
        );
    }

    // The roster, and the authority set behind it.
    let roster_bytes = parts
        .iter()
        .find(|(name, role, _)| *role == PartRole::Roster && name == "roster")
        .map(|(_, _, bytes)| bytes.as_slice())
        .ok_or_else(|| Finding {
            part: "roster".into(),
            problem: "the file carries no roster".into(),
        })?;
    let signed = SignedRoster::from_bytes(roster_bytes).map_err(|error| Finding {
        part: "roster".into(),
        problem: error.to_string(),
    })?;
    let roster = match authority_set {
        Some(pinned) => signed.verify_pinned(pinned, exported_at),
        None => signed.verify_self(exported_at),
    }
    .map_err(|error| Finding {
        part: "roster".into(),
        problem: format!(
            "{error} (checked at the export time, {})",
            at(exported_at.0)
        ),
    })?;
    let fingerprint = roster.authority_set_fingerprint();
    let mut statements = vec![format!(
        "The roster of network `{}`, serial {}, issued {}, is signed by at least {} of its {} roster authorities, authority set {}{}.",
        roster.network,
        roster.serial,
        at(roster.issued_at.0),
        roster.threshold,
        roster.authorities.len(),
        fingerprint,
        if authority_set.is_some() {
            ", the fingerprint you gave"
        } else {
            " (NOT compared: get the roster authority's fingerprint by another channel and compare it, or pass --authority-set)"
        }
    )];

    // The exporter's signature over the manifest, and over the audit head.
    let exporter = parse_node_hex(&manifest.exporter).map_err(|problem| Finding {
        part: "manifest".into(),
        problem,
    })?;
    let exporter_member = roster.member(&exporter).ok_or_else(|| Finding {
        part: "manifest".into(),
        problem: format!("the exporter {exporter} is not in the roster"),
    })?;
    let signature: Signature = bundle.signature.parse().map_err(|problem| Finding {
        part: "manifest".into(),
        problem,
    })?;
    if !exporter_member.verify_at(
        &manifest_signing_message(manifest),
        &signature.0,
        exported_at,
    ) {
        return fail(
            "manifest",
            format!(
                "the exporter's signature does not verify with the key of {}",
                describe(exporter_member)
            ),
        );
    }
    let exporter_name = describe(exporter_member);
    statements.push(format!(
        "{exporter_name}, signed this file at {} (by its clock): every part below is exactly what it exported, and so is the printable page.",
        at(exported_at.0)
    ));

    // The messages of the thread.
    let mut checked: Vec<Checked> = Vec::new();
    for (name, role, bytes) in &parts {
        let Some(rest) = name.strip_prefix("message/") else {
            continue;
        };
        let mut pieces = rest.splitn(2, '/');
        let id: MessageId =
            pieces
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|problem: String| Finding {
                    part: name.clone(),
                    problem,
                })?;
        match (role, pieces.next().unwrap_or_default()) {
            (PartRole::Envelope, "envelope") => {
                let envelope = check_envelope(name, &roster, bytes, &id)?;
                statements.push(format!(
                    "{}, signed the envelope of message {id} (SHA-256 {}), created at {} by its clock, addressed to {}.",
                    who(&roster, &envelope.header.sender),
                    digest_bytes(bytes),
                    at(envelope.header.created_at.0),
                    who(&roster, &envelope.header.recipient),
                ));
                checked.push(Checked {
                    id,
                    envelope,
                    payload: None,
                });
            }
            (PartRole::Plaintext, "plaintext") => {
                let current = checked
                    .last_mut()
                    .filter(|message| message.id == id)
                    .ok_or_else(|| Finding {
                        part: name.clone(),
                        problem: "a plaintext without its envelope before it".into(),
                    })?;
                let payload = Payload::from_bytes(bytes).map_err(|error| Finding {
                    part: name.clone(),
                    problem: format!("not a payload: {error}"),
                })?;
                if payload.priority() != current.envelope.header.priority {
                    return fail(
                        name.clone(),
                        format!(
                            "its priority ({}) is not the envelope's ({})",
                            payload.priority(),
                            current.envelope.header.priority
                        ),
                    );
                }
                let side = if current.envelope.header.recipient == exporter {
                    "received and opened with its key"
                } else if current.envelope.header.sender == exporter {
                    "sealed"
                } else {
                    "holds"
                };
                statements.push(format!(
                    "{exporter_name}, states under its signature that the envelope of message {id}, which it {side}, carries this {} (plaintext SHA-256 {}). Only the recipient's key can open the envelope, so this binding rests on the exporter's signature together with the signatures on the envelope and its receipts.",
                    payload.kind(),
                    sha256_hex(bytes),
                ));
                current.payload = Some(payload);
            }
            (PartRole::Receipt, kind) if kind.starts_with("receipt/") => {
                let current = checked
                    .last()
                    .filter(|message| message.id == id)
                    .ok_or_else(|| Finding {
                        part: name.clone(),
                        problem: "a receipt without its envelope before it".into(),
                    })?;
                let envelope_bytes = current.envelope.to_bytes();
                statements.push(check_receipt(
                    name,
                    &roster,
                    bytes,
                    &current.envelope,
                    &envelope_bytes,
                )?);
            }
            _ => {
                return fail(name.clone(), format!("unexpected part of role {role:?}"));
            }
        }
    }
    let root: MessageId = manifest.message_id.parse().map_err(|problem| Finding {
        part: "manifest".into(),
        problem,
    })?;
    match checked.first() {
        Some(first) if first.id == root => {}
        _ => {
            return fail(
                "manifest",
                format!("the file does not start with request {root}"),
            )
        }
    }
    let mut payloads = Vec::with_capacity(checked.len());
    for message in &checked {
        match &message.payload {
            Some(payload) => payloads.push(payload),
            None => {
                return fail(
                    format!("message/{}/plaintext", message.id),
                    "the file carries no plaintext for this envelope",
                )
            }
        }
    }
    for (message, payload) in checked.iter().zip(&payloads).skip(1) {
        if let Payload::Status(update) = payload {
            if update.references != root {
                return fail(
                    format!("message/{}/plaintext", message.id),
                    format!("this status answers {}, not {root}", update.references),
                );
            }
        }
    }
    if manifest.case_reference.as_deref() != payloads[0].case_reference() {
        return fail("manifest", "the case reference is not the request's");
    }

    // The audit records and the signed head.
    let ids: BTreeSet<MessageId> = checked.iter().map(|message| message.id).collect();
    statements.push(check_audit(
        bundle,
        &parts,
        &roster,
        &exporter,
        &exporter_name,
        &ids,
    )?);

    Ok(Verified {
        message_id: root.to_string(),
        case_reference: manifest.case_reference.clone(),
        authority_set: fingerprint.to_string(),
        authority_set_checked: authority_set.is_some(),
        statements,
    })
}

/// Every part decodes, matches its manifest entry (name, role, length, SHA-256), and names are
/// unique.
fn check_parts(bundle: &Bundle) -> Result<Vec<(String, PartRole, Vec<u8>)>, Finding> {
    let manifest = &bundle.manifest;
    if manifest.parts.len() != bundle.parts.len() {
        return fail(
            "manifest",
            format!(
                "it lists {} parts, the file carries {}",
                manifest.parts.len(),
                bundle.parts.len()
            ),
        );
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(bundle.parts.len());
    for (part, listed) in bundle.parts.iter().zip(&manifest.parts) {
        if part.name != listed.name || part.role != listed.role {
            return fail(
                part.name.clone(),
                format!("the manifest lists `{}` in its place", listed.name),
            );
        }
        if !names.insert(part.name.clone()) {
            return fail(part.name.clone(), "the file carries this part twice");
        }
        let bytes = hex::decode(&part.hex).map_err(|error| Finding {
            part: part.name.clone(),
            problem: format!("not hex: {error}"),
        })?;
        if bytes.len() as u64 != listed.length || sha256_hex(&bytes) != listed.sha256 {
            return fail(
                part.name.clone(),
                "its bytes are not the ones the manifest's SHA-256 names: the part was changed",
            );
        }
        out.push((part.name.clone(), part.role, bytes));
    }
    Ok(out)
}

fn check_envelope(
    name: &str,
    roster: &Roster,
    bytes: &[u8],
    id: &MessageId,
) -> Result<Envelope, Finding> {
    let envelope = Envelope::from_bytes(bytes).map_err(|error| Finding {
        part: name.into(),
        problem: error.to_string(),
    })?;
    if envelope.to_bytes() != bytes {
        return fail(name, "the envelope bytes are not in canonical form");
    }
    if envelope.header.message_id != *id {
        return fail(
            name,
            format!(
                "the envelope is message {}, not {id}",
                envelope.header.message_id
            ),
        );
    }
    // Checked as of its creation: the sender's key and membership as the roster lists them.
    verify_outer(
        roster,
        &envelope,
        envelope.header.created_at,
        &AcceptPolicy::default(),
    )
    .map_err(|error| Finding {
        part: name.into(),
        problem: error.to_string(),
    })?;
    Ok(envelope)
}

fn check_receipt(
    name: &str,
    roster: &Roster,
    bytes: &[u8],
    envelope: &Envelope,
    envelope_bytes: &[u8],
) -> Result<String, Finding> {
    let receipt = Receipt::from_bytes(bytes).map_err(|error| Finding {
        part: name.into(),
        problem: error.to_string(),
    })?;
    if receipt.to_bytes() != bytes {
        return fail(name, "the receipt bytes are not in canonical form");
    }
    let header = &envelope.header;
    let digest = digest_bytes(envelope_bytes);
    receipt
        .verify_for(
            roster,
            receipt.body.received_at,
            &header.message_id,
            &header.sender,
            &header.recipient,
            &digest,
        )
        .map_err(|error| Finding {
            part: name.into(),
            problem: error.to_string(),
        })?;
    let body = &receipt.body;
    Ok(match body.kind {
        ReceiptKind::Delivered => format!(
            "{}, signed at {} that it stored this exact envelope (message {}, SHA-256 {digest}).",
            who(roster, &body.signer),
            at(body.received_at.0),
            body.message_id,
        ),
        ReceiptKind::Custody => format!(
            "{}, signed at {} that it held this exact envelope (message {}, SHA-256 {digest}) to deliver it.",
            who(roster, &body.signer),
            at(body.received_at.0),
            body.message_id,
        ),
    })
}

fn check_audit(
    bundle: &Bundle,
    parts: &[(String, PartRole, Vec<u8>)],
    roster: &Roster,
    exporter: &NodeId,
    exporter_name: &str,
    ids: &BTreeSet<MessageId>,
) -> Result<String, Finding> {
    let manifest = &bundle.manifest;
    let bytes = parts
        .iter()
        .find(|(name, role, _)| *role == PartRole::AuditRecords && name == "audit/records")
        .map(|(_, _, bytes)| bytes)
        .ok_or_else(|| Finding {
            part: "audit/records".into(),
            problem: "the file carries no audit records".into(),
        })?;
    let records: Vec<AuditRecord> = codec::decode(
        bytes,
        (MAX_AUDIT_RECORDS as u64 + 1) * MAX_AUDIT_RECORD_BYTES,
    )
    .map_err(|error| Finding {
        part: "audit/records".into(),
        problem: format!("not audit records: {error}"),
    })?;
    let mut previous: Digest32 =
        manifest
            .audit_previous_hash
            .parse()
            .map_err(|problem| Finding {
                part: "manifest".into(),
                problem,
            })?;
    let mut expected_seq: Option<u64> = None;
    let mut case = Vec::new();
    for record in &records {
        let seq = record.body.seq;
        if expected_seq.is_some_and(|expected| expected != seq) {
            return fail(
                "audit/records",
                format!(
                    "record {seq} follows record {}: records are missing or out of order",
                    seq.wrapping_sub(1)
                ),
            );
        }
        let hash = chain_hash(&previous, &record.body).map_err(|problem| Finding {
            part: "audit/records".into(),
            problem,
        })?;
        if hash != record.hash {
            return fail(
                "audit/records",
                format!("record {seq} does not chain to the record before it: it was altered"),
            );
        }
        if record.body.message_id.is_some_and(|id| ids.contains(&id)) {
            case.push(seq);
        }
        previous = hash;
        expected_seq = Some(seq + 1);
    }
    if case != manifest.audit_case_records {
        return fail(
            "audit/records",
            "the records of the case are not the ones the manifest lists",
        );
    }
    let head = &manifest.audit_head;
    let last = records.last().ok_or_else(|| Finding {
        part: "audit/records".into(),
        problem: "no records".into(),
    })?;
    if head.seq != last.body.seq || head.hash != last.hash.to_string() {
        return fail(
            "audit head",
            format!(
                "the records end at record {} ({}), not at the signed head, record {} ({})",
                last.body.seq, last.hash, head.seq, head.hash
            ),
        );
    }
    if parse_node_hex(&head.signer).ok() != Some(*exporter) {
        return fail("audit head", "it is not signed by the exporter");
    }
    let signature: Signature = head.signature.parse().map_err(|problem| Finding {
        part: "audit head".into(),
        problem,
    })?;
    let signed_at = Timestamp(head.signed_at_ms);
    let signer = roster.member(exporter).ok_or_else(|| Finding {
        part: "audit head".into(),
        problem: "the signer is not in the roster".into(),
    })?;
    if !signer.verify_at(
        &audit_head_signing_message(head.seq, &last.hash, signed_at),
        &signature.0,
        signed_at,
    ) {
        return fail("audit head", "the signature does not verify");
    }
    let first = records.first().map_or(0, |record| record.body.seq);
    Ok(format!(
        "The audit trail of {exporter_name}: records {first}–{} ({} records, {} of them about this case: {}) chain without a break up to the head, record {} (hash {}), which it signed at {}.",
        last.body.seq,
        records.len(),
        case.len(),
        case.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        head.seq,
        head.hash,
        at(head.signed_at_ms),
    ))
}
