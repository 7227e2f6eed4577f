//! `handover`: what the next shift must know, from the running node — what came in, what is
//! still open at either end, what is overdue, and which officer did what.

use anyhow::{anyhow, bail, Result};
use quickfreeze_keys::Timestamp;
use serde::Serialize;

use super::{print_json, request, Target};
use crate::audit::{AuditKind, AuditLine};
use crate::control::{
    ControlRequest, ControlResponse, InboxRow, MessageQuery, OutboxRow, OverdueRow,
};
use crate::text::age;

/// Most rows of each section a handover reads.
const HANDOVER_ROWS: usize = 500;
/// Most audit pages a handover reads.
const HANDOVER_AUDIT_PAGES: usize = 20;

/// A shift handover.
#[derive(Debug, Serialize)]
pub(crate) struct Handover {
    /// Start of the period (RFC 3339).
    pub(crate) since: String,
    /// Messages received in the period, one per message.
    pub(crate) came_in: Vec<InboxRow>,
    /// Requests received (any time) that are not acknowledged, or have had no status beyond
    /// the acknowledgement.
    pub(crate) open_inbound: Vec<InboxRow>,
    /// Requests sent (any time) that are undelivered or have no status from the recipient yet.
    pub(crate) open_outbound: Vec<OutboxRow>,
    /// Deadline breaches now.
    pub(crate) overdue: Vec<OverdueRow>,
    /// What officers did in the period (acknowledgements, replies, reads), from the audit trail.
    pub(crate) actions: Vec<AuditLine>,
}

fn inbox_rows(target: &Target, query: MessageQuery) -> Result<Vec<InboxRow>> {
    match request(
        target,
        &ControlRequest::InboxQuery {
            query: Box::new(query),
        },
    )? {
        ControlResponse::InboxPage { rows, .. } => Ok(rows),
        other => refused(other),
    }
}

fn outbox_rows(target: &Target, query: MessageQuery) -> Result<Vec<OutboxRow>> {
    match request(
        target,
        &ControlRequest::OutboxQuery {
            query: Box::new(query),
        },
    )? {
        ControlResponse::OutboxPage { rows, .. } => Ok(rows),
        other => refused(other),
    }
}

/// Whether an audit record is something an officer did.
fn is_officer_action(line: &AuditLine) -> bool {
    matches!(
        line.kind,
        AuditKind::Acknowledged | AuditKind::StatusSent | AuditKind::Opened
    ) && line.detail.contains("officer")
}

/// Gathers the handover from the node.
pub(crate) fn gather(since: Timestamp, target: &Target) -> Result<Handover> {
    let came_in = inbox_rows(
        target,
        MessageQuery {
            since_ms: Some(since.0),
            flat: true,
            limit: HANDOVER_ROWS,
            ..MessageQuery::default()
        },
    )?;
    let open_inbound = inbox_rows(
        target,
        MessageQuery {
            limit: HANDOVER_ROWS,
            ..MessageQuery::default()
        },
    )?
    .into_iter()
    .filter(|row| row.awaits_acknowledgement && (!row.acknowledged || row.thread_messages <= 2))
    .collect();
    let open_outbound = outbox_rows(
        target,
        MessageQuery {
            limit: HANDOVER_ROWS,
            ..MessageQuery::default()
        },
    )?
    .into_iter()
    .filter(|row| {
        row.kind != "status"
            && (row.state != "delivered"
                || row.latest_status.is_none()
                || row
                    .latest_status
                    .as_deref()
                    .is_some_and(|status| status.starts_with("acknowledged")))
    })
    .collect();
    let overdue = match request(target, &ControlRequest::Status)? {
        ControlResponse::Status { report } => report.overdue_items,
        other => return refused(other),
    };
    let mut actions = Vec::new();
    let mut after = None;
    for _ in 0..HANDOVER_AUDIT_PAGES {
        let response = request(
            target,
            &ControlRequest::AuditExport {
                since_ms: since.0,
                after,
                limit: 1000,
            },
        )?;
        let ControlResponse::AuditPage { lines, next_after } = response else {
            return refused(response);
        };
        actions.extend(lines.into_iter().filter(is_officer_action));
        after = next_after;
        if after.is_none() {
            break;
        }
    }
    Ok(Handover {
        since: since.to_rfc3339(),
        came_in,
        open_inbound,
        open_outbound,
        overdue,
        actions,
    })
}

/// The error for an answer a handover did not expect.
fn refused<T>(response: ControlResponse) -> Result<T> {
    match response {
        ControlResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

/// `handover --since 12h`.
pub(super) fn handover(since: &str, target: &Target) -> Result<()> {
    let since = crate::audit::parse_since(since, Timestamp::now())
        .map_err(|error| anyhow!("--since `{since}`: {error}"))?;
    let handover = gather(since, target)?;
    if target.json {
        return print_json(&handover);
    }
    print_handover(&handover);
    Ok(())
}

fn print_handover(handover: &Handover) {
    outln!("Handover since {}", handover.since);
    outln!();
    outln!("CAME IN ({})", handover.came_in.len());
    for row in &handover.came_in {
        outln!(
            "  {}  {}  {:<12} {:<9} {:>7} ago  {}",
            short(&row.message_id),
            row.country,
            row.kind,
            row.priority,
            age(row.age_s),
            row.summary
        );
    }
    outln!();
    outln!("OPEN, RECEIVED ({})", handover.open_inbound.len());
    for row in &handover.open_inbound {
        let state = if row.acknowledged {
            "acknowledged, no status sent yet"
        } else {
            "NOT ACKNOWLEDGED"
        };
        outln!(
            "  {}  {}  {:<12} {}  {}",
            short(&row.message_id),
            row.country,
            row.kind,
            state,
            row.summary
        );
    }
    outln!();
    outln!("OPEN, SENT ({})", handover.open_outbound.len());
    for row in &handover.open_outbound {
        let state = row
            .why
            .clone()
            .or_else(|| row.latest_status.clone())
            .unwrap_or_else(|| "delivered, no answer yet".into());
        outln!(
            "  {}  {}  {:<12} {}  {}",
            short(&row.message_id),
            row.country,
            row.kind,
            row.summary,
            state
        );
    }
    outln!();
    outln!("OVERDUE ({})", handover.overdue.len());
    for row in &handover.overdue {
        outln!(
            "  {}  {}  {} ({} overdue)",
            short(&row.message_id),
            row.country,
            row.meaning,
            age(row.overdue_s)
        );
    }
    outln!();
    outln!("WHO DID WHAT ({})", handover.actions.len());
    for line in &handover.actions {
        outln!(
            "  {}  {}  {}",
            line.at,
            line.message_id.as_deref().map_or("-", short),
            line.detail
        );
    }
}

/// The first 8 digits of an id: what the console shows, and enough for every command.
fn short(id: &str) -> &str {
    &id[..8.min(id.len())]
}
