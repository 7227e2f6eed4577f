//! Message commands against the running node: `template`, `send`, `inbox`, `outbox`, `show`,
//! `ack` and `reply`, with their tables and the detail view.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use quickfreeze_keys::Timestamp;
use quickfreeze_proto::form_view;
use quickfreeze_proto::forms::{self, FormKind};
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::{Attachment, Payload, RefusalGround, Status};

use super::{print_json, request, unexpected, Target};
use crate::control::{
    ControlClient, ControlRequest, ControlResponse, InboxRow, MessageDetail, MessageQuery,
    OutboxRow, ReceiptView, ThreadItem,
};
use crate::text::age;

/// `reply` arguments.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// Message id.
    pub id: String,
    /// preserved, partially-executed, refused, more-information-needed, forwarded, data-not-available, acknowledged.
    #[arg(long)]
    pub status: String,
    /// Your name.
    #[arg(long)]
    pub officer: String,
    /// Note for the requester.
    #[arg(long, default_value = "")]
    pub note: String,
    /// preserved: your preservation reference.
    #[arg(long)]
    pub reference: Option<String>,
    /// preserved: when the preservation ends (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// refused: political-offence, sovereignty, security, public-order, other-essential-interests, other.
    #[arg(long)]
    pub ground: Option<String>,
    /// forwarded: the authority it went to.
    #[arg(long)]
    pub authority: Option<String>,
    /// Which node, and output format.
    #[command(flatten)]
    pub target: Target,
}

/// `template`: prints a commented form, its help in the chosen language.
pub(super) fn template(kind: FormKind, lang: Option<Language>, data_dir: &Path) -> Result<()> {
    let language = language_for(lang, data_dir)?;
    out!("{}", forms::template_in(kind, language));
    Ok(())
}

/// The language asked for on the command line, else the node's configured one.
fn language_for(lang: Option<Language>, data_dir: &Path) -> Result<Language> {
    match lang {
        Some(language) => Ok(language),
        None => Ok(crate::config::configured_language(data_dir)?),
    }
}

/// Width of the text rendering of a form in `show`.
const SHOW_WIDTH: usize = 80;

/// Filters and paging shared by `inbox` and `outbox`; the daemon applies them.
#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// Only this case reference (the requesting side's).
    #[arg(long = "case")]
    pub case: Option<String>,
    /// Only messages from/to this country (ISO code, e.g. FR).
    #[arg(long)]
    pub country: Option<String>,
    /// Only this kind: preservation, traffic-data, emergency, status, free-text.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this priority: emergency, urgent, routine.
    #[arg(long)]
    pub priority: Option<String>,
    /// Only this state. inbox: new, acknowledged, overdue. outbox: accepted, sent, custody,
    /// delivered, expired, rejected, undelivered, overdue.
    #[arg(long)]
    pub state: Option<String>,
    /// Only at or after this time: RFC 3339 or an age such as 12h, 30m, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only before this time: RFC 3339 or an age such as 12h.
    #[arg(long)]
    pub until: Option<String>,
    /// Only rows whose summary holds every one of these words.
    #[arg(long)]
    pub text: Option<String>,
    /// Rows per page.
    #[arg(long, default_value_t = crate::control::DEFAULT_PAGE_ROWS)]
    pub limit: usize,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: usize,
    /// Start after this row id (the "next page" hint printed below a full page).
    #[arg(long)]
    pub after: Option<String>,
    /// One row per message instead of one per case thread.
    #[arg(long)]
    pub flat: bool,
}

impl FilterArgs {
    /// The daemon's query for these arguments.
    pub fn query(&self) -> Result<MessageQuery> {
        let now = Timestamp::now();
        let time = |flag: &str, text: &Option<String>| -> Result<Option<u64>> {
            text.as_deref()
                .map(|text| {
                    crate::audit::parse_since(text, now)
                        .map(|at| at.0)
                        .map_err(|error| anyhow!("--{flag} `{text}`: {error}"))
                })
                .transpose()
        };
        Ok(MessageQuery {
            case: self.case.clone(),
            country: self.country.clone(),
            kind: self.kind.clone(),
            priority: self.priority.clone(),
            state: self.state.clone(),
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
            text: self.text.clone(),
            limit: self.limit,
            page: self.page,
            after: self.after.clone(),
            flat: self.flat,
        })
    }
}

/// `inbox`: one row per case thread (or per message with --flat), overdue first, then newest.
pub(super) fn inbox(filter: &FilterArgs, unacknowledged: bool, target: &Target) -> Result<()> {
    let mut query = filter.query()?;
    if unacknowledged && query.state.is_none() {
        query.state = Some("new".into());
    }
    let response = request(
        target,
        &ControlRequest::InboxQuery {
            query: Box::new(query),
        },
    )?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::InboxPage {
        rows,
        total,
        next_after,
    } = response
    else {
        return unexpected(response);
    };
    print_inbox_table(&rows);
    print_page_footer(rows.len(), total, next_after.as_deref());
    Ok(())
}

fn print_inbox_table(rows: &[InboxRow]) {
    outln!(
        "{:<32}  {:<2}  {:<12}  {:<9}  {:<5}  {:>7}  {:>3}  summary",
        "id",
        "cc",
        "kind",
        "priority",
        "ack",
        "age",
        "msg"
    );
    for row in rows {
        let ack = match (row.awaits_acknowledgement, row.acknowledged) {
            (true, true) => "yes",
            (true, false) => "NO",
            (false, true) => "read",
            (false, false) => "new",
        };
        outln!(
            "{:<32}  {:<2}  {:<12}  {:<9}  {:<5}  {:>7}  {:>3}  {}",
            row.message_id,
            row.country,
            row.kind,
            row.priority,
            ack,
            age(row.age_s),
            row.thread_messages.max(1),
            overdue_marker(&row.overdue, &row.summary)
        );
        if let Some(conditions) = &row.conditions {
            outln!("{:<34}conditions on use: {conditions}", "");
        }
        if let Some(latest) = &row.latest {
            outln!("{:<34}latest: {latest}", "");
        }
    }
}

/// "Showing 50 of 120; next page: --after ID", or nothing when everything is shown.
fn print_page_footer(shown: usize, total: usize, next_after: Option<&str>) {
    if let Some(after) = next_after {
        outln!("({shown} of {total} shown; next page: --after {after})");
    } else if shown < total {
        outln!("({shown} of {total} shown)");
    }
}

/// The outbox's state column in words: never "sent" for a message that reached nobody.
pub(crate) fn outbox_state_label(state: &str) -> &'static str {
    match state {
        "accepted" => "queued",
        "sent" => "NOT REACHED",
        "custody" => "at relay",
        "delivered" => "delivered",
        "expired" => "EXPIRED",
        "rejected" => "REFUSED",
        _ => "unknown",
    }
}

/// `outbox`: one row per thread this node started, with the latest status and, for
/// undelivered messages, why.
pub(super) fn outbox(filter: &FilterArgs, target: &Target) -> Result<()> {
    let query = filter.query()?;
    let response = request(
        target,
        &ControlRequest::OutboxQuery {
            query: Box::new(query),
        },
    )?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::OutboxPage {
        rows,
        total,
        next_after,
    } = response
    else {
        return unexpected(response);
    };
    print_outbox_table(&rows);
    print_page_footer(rows.len(), total, next_after.as_deref());
    Ok(())
}

fn print_outbox_table(rows: &[OutboxRow]) {
    outln!(
        "{:<32}  {:<2}  {:<12}  {:<9}  {:<11}  {:>7}  summary",
        "id",
        "cc",
        "kind",
        "priority",
        "state",
        "age"
    );
    for row in rows {
        outln!(
            "{:<32}  {:<2}  {:<12}  {:<9}  {:<11}  {:>7}  {}",
            row.message_id,
            row.country,
            row.kind,
            row.priority,
            outbox_state_label(&row.state),
            age(row.age_s),
            overdue_marker(&row.overdue, &row.summary)
        );
        if let Some(status) = &row.latest_status {
            outln!("{:<34}latest status: {status}", "");
        }
        if let Some(why) = &row.why {
            outln!("{:<34}why: {why}", "");
        }
    }
}

/// `show`: one message in full.
pub(super) fn show(
    id: String,
    save_into: Option<&Path>,
    lang: Option<Language>,
    target: &Target,
) -> Result<()> {
    let language = language_for(lang, &target.data_dir)?;
    let response = request(target, &ControlRequest::Show { message_id: id })?;
    let Some(dir) = save_into else {
        if target.json {
            return print_json(&response);
        }
        return match response {
            ControlResponse::Message { detail } => {
                print_detail(&detail, language);
                Ok(())
            }
            other => unexpected(other),
        };
    };
    let ControlResponse::Message { detail } = response else {
        return unexpected(response);
    };
    let attachments = detail
        .payload
        .as_ref()
        .map(payload_attachments)
        .unwrap_or_default();
    let saved = crate::attachments::save_all(dir, attachments)?;
    if target.json {
        return print_json(&serde_json::json!({ "message": detail, "saved": saved }));
    }
    print_detail(&detail, language);
    if saved.is_empty() {
        outln!("this message has no attachments; nothing saved");
    }
    for entry in &saved {
        outln!(
            "saved {} ({} bytes, sha256 verified) as {}",
            entry.original_name.escape_debug(),
            entry.bytes,
            entry.path.display()
        );
    }
    Ok(())
}

/// The attachments a payload carries (only preservation requests carry any).
pub(crate) fn payload_attachments(payload: &Payload) -> &[Attachment] {
    match payload {
        Payload::Preservation(request) => &request.attachments,
        _ => &[],
    }
}

/// `ack`: acknowledges an inbox message as the officer on duty.
pub(super) fn ack(id: String, officer: String, target: &Target) -> Result<()> {
    let response = request(
        target,
        &ControlRequest::Ack {
            message_id: id.clone(),
            officer,
        },
    )?;
    if target.json {
        return print_json(&response);
    }
    match response {
        ControlResponse::Acknowledged {
            status_message_id: Some(status),
        } => {
            outln!("acknowledged {id}; the requester is told by status message {status}");
            Ok(())
        }
        ControlResponse::Acknowledged {
            status_message_id: None,
        } => {
            outln!("{id} was already acknowledged");
            Ok(())
        }
        ControlResponse::MarkedRead { message_id } => {
            outln!(
                "{message_id} marked read; nothing is sent back for a status reply or follow-up"
            );
            Ok(())
        }
        other => unexpected(other),
    }
}

/// The summary, prefixed with the overdue clocks if any.
fn overdue_marker(overdue: &[String], summary: &str) -> String {
    if overdue.is_empty() {
        summary.to_string()
    } else {
        format!("OVERDUE({}) {summary}", overdue.join(","))
    }
}

fn print_receipt(receipt: &ReceiptView) {
    outln!(
        "  {} receipt signed by {} ({}) at {}, envelope sha256 {}{}",
        receipt.kind,
        receipt.signer_country,
        receipt.signer,
        receipt.received_at,
        receipt.envelope_digest,
        if receipt.verified {
            ", signature verified"
        } else {
            ", SIGNATURE DOES NOT VERIFY"
        }
    );
}

fn print_detail(detail: &MessageDetail, language: Language) {
    if let Some(handling) = detail.payload.as_ref().and_then(Payload::handling) {
        if detail.direction == "outbound" {
            outln!("your conditions on use, signed with this request:");
        }
        for line in handling.render_box(78) {
            outln!("{line}");
        }
    }
    outln!("message   {} ({})", detail.message_id, detail.direction);
    let label = if detail.direction == "outbound" {
        "to"
    } else {
        "from"
    };
    outln!("{label:<9} {} ({})", detail.country, detail.peer);
    outln!("priority  {}", detail.priority);
    outln!("state     {}", detail.state);
    if let Some(error) = &detail.last_error {
        outln!("last try  {error}");
    }
    outln!("receipts:");
    for receipt in &detail.receipts {
        print_receipt(receipt);
    }
    if !detail.status_history.is_empty() {
        outln!("status history:");
        for status in &detail.status_history {
            outln!(
                "  {}  {}  by {}  {}",
                status.received_at,
                status.status,
                status.officer,
                status.note
            );
        }
    }
    if !detail.replies.is_empty() {
        outln!("replies sent: {}", detail.replies.join(", "));
    }
    print_thread(&detail.thread);
    if let Some(payload) = &detail.payload {
        let attachments = payload_attachments(payload).len();
        if attachments > 0 {
            outln!("attachments ({attachments}; listed in the form below; save them with --save-attachments DIR)");
        }
        outln!();
        out!(
            "{}",
            form_view::render(payload, language).to_text(SHOW_WIDTH)
        );
    }
}

/// The case thread, oldest first: who said what, when, signed by which node.
fn print_thread(thread: &[ThreadItem]) {
    if thread.len() < 2 {
        return;
    }
    outln!("thread ({} messages, oldest first):", thread.len());
    for item in thread {
        let arrow = if item.direction == "outbound" {
            "sent"
        } else {
            "received"
        };
        let officer = item
            .officer
            .as_deref()
            .map(|officer| format!(" officer {officer};"))
            .unwrap_or_default();
        outln!(
            "  {}  {arrow:<8} {}  {:<12} {:<12}{officer} {}",
            item.at,
            &item.message_id[..8.min(item.message_id.len())],
            item.kind,
            item.state,
            item.summary
        );
        outln!(
            "{:<14}signed by {} node {}",
            "",
            item.country,
            item.signed_by
        );
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

fn detect_kind(text: &str) -> Option<FormKind> {
    // Each form has a field no other form has.
    let table: toml::Table = text.parse().ok()?;
    if table.contains_key("mla_intent") || table.contains_key("data_to_preserve") {
        Some(FormKind::Preservation)
    } else if table.contains_key("protocol_statement") || table.contains_key("emergency_facts") {
        Some(FormKind::Emergency)
    } else if table.contains_key("traffic_data") {
        Some(FormKind::TrafficData)
    } else if table.contains_key("status") {
        Some(FormKind::Status)
    } else if table.contains_key("subject") || table.contains_key("body") {
        Some(FormKind::FreeText)
    } else {
        None
    }
}

pub(super) fn send(
    file: &Path,
    to: &str,
    kind: Option<FormKind>,
    wait: Option<u64>,
    attach: &[PathBuf],
    target: &Target,
) -> Result<()> {
    let text = read_text(file)?;
    let kind = match kind.or_else(|| detect_kind(&text)) {
        Some(kind) => kind,
        None => bail!("{}: cannot tell which form this is; pass --kind preservation|traffic|emergency|status|free-text", file.display()),
    };
    let mut payload =
        forms::parse_form(kind, &text).map_err(|error| anyhow!("{}: {error}", file.display()))?;
    if !attach.is_empty() {
        let Payload::Preservation(request) = &mut payload else {
            bail!(
                "--attach: a {} carries no attachments; only preservation requests do (send the \
                 files with a preservation request, or describe them in the text)",
                payload.kind()
            );
        };
        let files = crate::attachments::read_files(attach, request.attachments.len())?;
        request.attachments.extend(files);
        payload
            .validate()
            .map_err(|errors| anyhow!("{} with the attached files: {errors}", file.display()))?;
    }
    let response = request(
        target,
        &ControlRequest::Submit {
            recipient: to.to_string(),
            payload: Box::new(payload),
        },
    )?;
    let ControlResponse::Submitted {
        message_id,
        recipient,
        country,
    } = response
    else {
        return unexpected(response);
    };
    if target.json && wait.is_none() {
        return print_json(&ControlResponse::Submitted {
            message_id,
            recipient,
            country,
        });
    }
    if !target.json {
        outln!("accepted {message_id} for {country} ({recipient}); stored durably and queued");
    }
    let Some(seconds) = wait else {
        return Ok(());
    };
    let mut client = ControlClient::connect(&target.data_dir, Duration::from_secs(seconds + 5))?;
    let response = client.request(&ControlRequest::WaitDelivered {
        message_id: message_id.clone(),
        timeout_ms: seconds * 1000,
    })?;
    if target.json {
        return print_json(&response);
    }
    match response {
        ControlResponse::Delivered {
            receipt,
            latency_ms,
            ..
        } => {
            outln!("delivered in {latency_ms} ms:");
            print_receipt(&receipt);
            Ok(())
        }
        ControlResponse::NotYetDelivered { state, .. } => {
            bail!("no delivery receipt within {seconds} s ({state}); the node keeps trying — watch `quickfreeze outbox`")
        }
        other => unexpected(other),
    }
}

pub(super) fn reply(args: ReplyArgs) -> Result<()> {
    let status = match args.status.as_str() {
        "acknowledged" => Status::AcknowledgedByOfficer,
        "preserved" => {
            let reference = args.reference.clone().ok_or_else(|| anyhow!("--status preserved needs --reference"))?;
            let until = args.until.clone().ok_or_else(|| anyhow!("--status preserved needs --until (RFC 3339)"))?;
            let expires_at = Timestamp::parse_rfc3339(&until).map_err(|error| anyhow!("--until: {error}"))?;
            Status::Preserved { reference, expires_at }
        }
        "partially-executed" => Status::PartiallyExecuted { explanation: args.note.clone() },
        "refused" => {
            let ground = match args.ground.as_deref() {
                Some("political-offence") => RefusalGround::PoliticalOffence,
                Some("sovereignty") => RefusalGround::Sovereignty,
                Some("security") => RefusalGround::Security,
                Some("public-order") => RefusalGround::PublicOrder,
                Some("other-essential-interests") => RefusalGround::OtherEssentialInterests,
                Some("other") => RefusalGround::Other,
                Some(other) => bail!("--ground `{other}`: use political-offence, sovereignty, security, public-order, other-essential-interests or other"),
                None => bail!("--status refused needs --ground (Art. 29(5))"),
            };
            Status::Refused { ground, explanation: args.note.clone() }
        }
        "more-information-needed" => Status::MoreInformationNeeded { questions: args.note.clone() },
        "forwarded" => Status::ForwardedToCentralAuthority {
            authority: args.authority.clone().ok_or_else(|| anyhow!("--status forwarded needs --authority"))?,
        },
        "data-not-available" => Status::DataNotAvailable { explanation: args.note.clone() },
        other => bail!("--status `{other}`: use preserved, partially-executed, refused, more-information-needed, forwarded, data-not-available or acknowledged"),
    };
    let response = request(
        &args.target,
        &ControlRequest::Reply {
            message_id: args.id.clone(),
            status,
            note: args.note,
            officer: args.officer,
        },
    )?;
    if args.target.json {
        return print_json(&response);
    }
    match response {
        ControlResponse::Replied { status_message_id } => {
            outln!("status sent for {} as message {status_message_id}", args.id);
            Ok(())
        }
        other => unexpected(other),
    }
}
