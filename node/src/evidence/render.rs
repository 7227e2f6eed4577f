//! The printable page of an evidence file: a self-contained HTML document (no scripts to run, no
//! external fonts, styles or images) laid out for A4 paper, showing the case as the exporter
//! holds it and how to check it.
//!
//! The content is the labelled form (`quickfreeze_proto::form_view`, in English: a court file
//! may be read far from the officer's desk), and the sender's conditions on use are shown
//! prominently at the top ([`handling_codes`]).

use maud::{html, Markup, DOCTYPE};
use quickfreeze_keys::codec;
use quickfreeze_keys::roster::{Roster, SignedRoster};
use quickfreeze_keys::{NodeId, Timestamp};
use quickfreeze_proto::envelope::{digest_bytes, Envelope};
use quickfreeze_proto::form_view;
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::receipt::{Receipt, ReceiptKind};

use super::{parse_node_hex, Manifest, Part, PartRole, MAX_AUDIT_RECORDS};
use crate::audit::{AuditRecord, MAX_AUDIT_RECORD_BYTES};

const STYLE: &str = "
@page { size: A4; margin: 18mm 15mm; }
body { font-family: 'DejaVu Serif', Georgia, serif; font-size: 10.5pt; color: #000; background: #fff; max-width: 180mm; margin: 1em auto; }
h1 { font-size: 16pt; margin: 0 0 .3em; }
h2 { font-size: 13pt; border-bottom: 1px solid #000; margin-top: 1.4em; }
h3 { font-size: 11pt; margin-bottom: .3em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; page-break-inside: auto; }
tr { page-break-inside: avoid; }
th, td { border: 1px solid #777; padding: 2px 4px; text-align: left; vertical-align: top; }
th { background: #eee; width: 28%; }
code, .mono { font-family: 'DejaVu Sans Mono', monospace; font-size: 8.5pt; word-break: break-all; }
.box { border: 2px solid #000; padding: .5em .8em; margin: .8em 0; }
.codes { border: 3px double #000; padding: .5em .8em; font-weight: bold; }
.case { font-weight: bold; }
.message { page-break-inside: avoid; }
";

/// The page before and after the data block.
pub fn page(manifest: &Manifest, parts: &[Part]) -> Result<(String, String), String> {
    let content = Content::decode(parts)?;
    let title = format!(
        "Evidence: request {}{}",
        manifest.message_id,
        manifest
            .case_reference
            .as_ref()
            .map(|case| format!(", case {case}"))
            .unwrap_or_default()
    );
    let exporter = parse_node_hex(&manifest.exporter)?;
    let body = html! {
        h1 { (title) }
        div.box {
            p { "Exported by " strong { (who(&content.roster, &exporter)) } " at "
                (at(manifest.exported_at_ms)) " (its clock)." }
            p { "This page is the readable form of the signed data inside this same file. To check \
                 every signature, on any computer, without access to the network:" }
            p { code { "quickfreeze evidence verify THIS-FILE.html --authority-set "
                (content.roster.authority_set_fingerprint()) } }
            p { "Compare the authority-set fingerprint above with the one the roster authority \
                 publishes (by another channel) before relying on the result. Changing any \
                 character of this file makes the check fail." }
        }
        @let codes = content.messages.first().map(|message| handling_codes(&message.payload)).unwrap_or_default();
        @if !codes.is_empty() {
            div.codes {
                p { "Conditions on use set by the sender:" }
                ul { @for code in &codes { li { (code) } } }
            }
        }
        h2 { "The thread" }
        @for message in &content.messages {
            (message_section(&content.roster, message))
        }
        h2 { "Audit trail of " (who(&content.roster, &exporter)) }
        p { "Records " (content.audit.first().map_or(0, |record| record.body.seq)) "–"
            (manifest.audit_head.seq) "; those in bold concern this case, the others link the \
            hash chain to the head, which the exporter signed at " (at(manifest.audit_head.signed_at_ms))
            " (head hash " code { (manifest.audit_head.hash) } ")." }
        table {
            tr { th style="width:8%" { "No." } th style="width:22%" { "Time (UTC)" } th style="width:15%" { "What" } th { "Detail" } }
            @for record in &content.audit {
                @let concerns = manifest.audit_case_records.contains(&record.body.seq);
                tr class=[concerns.then_some("case")] {
                    td { (record.body.seq) }
                    td { (at(record.body.at.0)) }
                    td { (record.body.kind.name()) }
                    td {
                        @if let Some(country) = &record.body.country { (country) " · " }
                        @if let Some(id) = &record.body.message_id { span.mono { (id) } " · " }
                        (record.body.detail)
                    }
                }
            }
        }
        h2 { "Contents of this file" }
        table {
            tr { th { "Part" } th style="width:12%" { "Bytes" } th { "SHA-256" } }
            @for part in &manifest.parts {
                tr { td.mono { (part.name) } td { (part.length) } td.mono { (part.sha256) } }
            }
        }
    };
    let before = format!(
        "{}<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{}",
        DOCTYPE.into_string(),
        html! { (title) }.into_string(),
        body.into_string()
    );
    Ok((before, "</body></html>\n".into()))
}

struct Message {
    envelope: Envelope,
    envelope_digest: String,
    payload: Payload,
    receipts: Vec<Receipt>,
}

struct Content {
    roster: Roster,
    messages: Vec<Message>,
    audit: Vec<AuditRecord>,
}

impl Content {
    fn decode(parts: &[Part]) -> Result<Content, String> {
        let mut roster = None;
        let mut messages: Vec<Message> = Vec::new();
        let mut audit = Vec::new();
        let mut pending_envelope: Option<(Envelope, String)> = None;
        for part in parts {
            let bytes =
                hex::decode(&part.hex).map_err(|error| format!("{}: {error}", part.name))?;
            let context = |error: String| format!("{}: {error}", part.name);
            match part.role {
                PartRole::Roster => {
                    roster = Some(
                        SignedRoster::from_bytes(&bytes)
                            .and_then(|signed| signed.roster_unverified())
                            .map_err(|error| context(error.to_string()))?,
                    );
                }
                PartRole::Envelope => {
                    let envelope =
                        Envelope::from_bytes(&bytes).map_err(|error| context(error.to_string()))?;
                    pending_envelope = Some((envelope, digest_bytes(&bytes).to_string()));
                }
                PartRole::Plaintext => {
                    let payload =
                        Payload::from_bytes(&bytes).map_err(|error| context(error.to_string()))?;
                    let (envelope, envelope_digest) = pending_envelope
                        .take()
                        .ok_or_else(|| context("plaintext without an envelope".into()))?;
                    messages.push(Message {
                        envelope,
                        envelope_digest,
                        payload,
                        receipts: Vec::new(),
                    });
                }
                PartRole::Receipt => {
                    let receipt =
                        Receipt::from_bytes(&bytes).map_err(|error| context(error.to_string()))?;
                    messages
                        .last_mut()
                        .ok_or_else(|| context("receipt without a message".into()))?
                        .receipts
                        .push(receipt);
                }
                PartRole::AuditRecords => {
                    audit = codec::decode(
                        &bytes,
                        (MAX_AUDIT_RECORDS as u64 + 1) * MAX_AUDIT_RECORD_BYTES,
                    )
                    .map_err(|error| context(error.to_string()))?;
                }
            }
        }
        Ok(Content {
            roster: roster.ok_or("no roster")?,
            messages,
            audit,
        })
    }
}

fn at(ms: u64) -> String {
    Timestamp(ms).to_rfc3339()
}

fn who(roster: &Roster, node: &NodeId) -> String {
    match roster.member(node) {
        Some(member) => format!(
            "{} — {} (key {})",
            member.country,
            member.authority_name,
            member.node_id.fingerprint()
        ),
        None => format!("node {node}"),
    }
}

fn message_section(roster: &Roster, message: &Message) -> Markup {
    let header = &message.envelope.header;
    html! {
        div.message {
            h3 { (message.payload.kind()) " " span.mono { (header.message_id) } }
            table {
                tr { th { "From" } td { (who(roster, &header.sender)) } }
                tr { th { "To" } td { (who(roster, &header.recipient)) } }
                tr { th { "Created (sender's clock)" } td { (at(header.created_at.0)) } }
                tr { th { "Expires" } td { (at(header.expires_at.0)) } }
                tr { th { "Priority" } td { (header.priority) } }
                tr { th { "Envelope SHA-256" } td.mono { (message.envelope_digest) } }
                tr { th { "Sender's signature" } td.mono { (message.envelope.signature) } }
                @for receipt in &message.receipts {
                    tr {
                        th { @match receipt.body.kind {
                            ReceiptKind::Delivered => "Delivery receipt",
                            ReceiptKind::Custody => "Custody receipt (relay)",
                        } }
                        td { "Signed by " (who(roster, &receipt.body.signer)) ": stored at "
                            (at(receipt.body.received_at.0)) br; span.mono { (receipt.signature) } }
                    }
                }
            }
            @let view = form_view::render(&message.payload, Language::En);
            p { strong { (view.title) } }
            @for section in &view.sections {
                table {
                    caption { (section.title) }
                    @for row in &section.rows {
                        tr { th { (row.label) } td style="white-space: pre-wrap" { (row.value) } }
                    }
                }
            }
        }
    }
}

/// The sender's conditions on use, when the payload carries them, as "label: value" lines.
pub fn handling_codes(payload: &Payload) -> Vec<String> {
    payload
        .handling()
        .map(|handling| {
            handling
                .labelled()
                .into_iter()
                .map(|line| format!("{}: {}", line.label, line.value))
                .collect()
        })
        .unwrap_or_default()
}
