//! What goes into the audit trail: the record of each core event, records kept per peer and
//! minute for refused input, and the append that stops the turn when it fails.

use quickfreeze_keys::{CountryCode, NodeId, Timestamp};
use quickfreeze_proto::core::Event;
use quickfreeze_proto::MessageId;
use tracing::error;

use super::Daemon;
use crate::audit::{AuditFacts, AuditKind};

/// Refused-inbound audit records kept per peer and minute; the rest are counted and the count
/// is written into the next record for that peer.
const MAX_REFUSED_AUDIT_PER_MINUTE: u32 = 20;

/// A status as a short label for the audit log: its kind and, for refusals, the ground. Never
/// the explanation text.
pub(crate) fn status_label(status: &quickfreeze_proto::payload::Status) -> String {
    use quickfreeze_proto::payload::Status;
    match status {
        Status::AcknowledgedByOfficer => "acknowledged".into(),
        Status::Preserved { .. } => "preserved".into(),
        Status::PartiallyExecuted { .. } => "partially-executed".into(),
        Status::Refused { ground, .. } => format!("refused ({ground})"),
        Status::MoreInformationNeeded { .. } => "more-information-needed".into(),
        Status::ForwardedToCentralAuthority { .. } => "forwarded".into(),
        Status::DataNotAvailable { .. } => "data-not-available".into(),
    }
}

impl Daemon {
    /// Appends one audit record; a failure is kept and stops the turn before its commit.
    pub(super) fn record(&mut self, now: Timestamp, facts: AuditFacts) {
        if self.audit_error.is_some() {
            return;
        }
        let kind = facts.kind;
        if let Err(error) = self.audit.append(now, facts) {
            error!(%error, %kind, "audit record could not be written");
            self.audit_error = Some(error.to_string());
        }
    }

    /// The audit record of a core event (`None` for events that are not audited).
    pub(super) fn audit_facts(&mut self, now: Timestamp, event: &Event) -> Option<AuditFacts> {
        let refused = match event {
            Event::InboundRejected { from, reason } => {
                Some((None, *from, format!("frame: {reason}")))
            }
            Event::ReceiptRejected {
                message_id,
                from,
                reason,
            } => Some((Some(*message_id), *from, format!("receipt: {reason}"))),
            Event::RosterRejected { from, reason } => {
                Some((None, *from, format!("roster: {reason}")))
            }
            Event::RevocationRejected { from, reason } => {
                Some((None, *from, format!("revocation notice: {reason}")))
            }
            _ => None,
        };
        if let Some((message_id, from, detail)) = refused {
            let detail = self.refused_detail(now, from, detail)?;
            return Some(AuditFacts {
                kind: AuditKind::RefusedInbound,
                message_id,
                peer: Some(from),
                country: Some(self.country(&from)),
                envelope_digest: None,
                detail,
            });
        }
        let facts = |kind: AuditKind,
                     message_id: Option<MessageId>,
                     peer: Option<NodeId>,
                     digest: Option<quickfreeze_keys::Digest32>,
                     detail: String| AuditFacts {
            kind,
            message_id,
            peer,
            country: peer.map(|peer| self.country(&peer)),
            envelope_digest: digest,
            detail,
        };
        let record = match event {
            Event::Accepted {
                message_id,
                recipient,
                priority,
                digest,
                kind,
            } => facts(
                AuditKind::Submitted,
                Some(*message_id),
                Some(*recipient),
                Some(*digest),
                format!("{priority} {kind}"),
            ),
            Event::Sent {
                message_id,
                to,
                via_relay,
                digest,
            } => facts(
                AuditKind::Sent,
                Some(*message_id),
                Some(*to),
                Some(*digest),
                if *via_relay { "to a relay" } else { "direct" }.into(),
            ),
            Event::Custody {
                message_id,
                relay,
                digest,
            } => facts(
                AuditKind::Custody,
                Some(*message_id),
                Some(*relay),
                Some(*digest),
                "custody receipt verified".into(),
            ),
            Event::Delivered {
                message_id,
                recipient,
                received_at,
                latency_ms,
                digest,
            } => facts(
                AuditKind::Delivered,
                Some(*message_id),
                Some(*recipient),
                Some(*digest),
                format!("delivery receipt verified; stored by the recipient at {received_at}, {latency_ms} ms after submission"),
            ),
            Event::Expired {
                message_id,
                recipient,
                priority,
                digest,
            } => facts(
                AuditKind::Expired,
                Some(*message_id),
                Some(*recipient),
                Some(*digest),
                format!("{priority}: expired without a delivery receipt"),
            ),
            Event::Rejected {
                message_id,
                by,
                reason,
                digest,
            } => facts(
                AuditKind::Rejected,
                Some(*message_id),
                Some(*by),
                Some(*digest),
                format!("refused by the recipient: {reason}"),
            ),
            Event::Received {
                sender,
                message_id,
                priority,
                kind,
                via_relay,
                digest,
                handling,
                reannounced: false,
            } => {
                let digest = Some(*digest);
                let relay = via_relay.map_or_else(String::new, |relay| {
                    format!(" via relay {relay}")
                });
                // The conditions as codes only: the sender's free text is content and stays out
                // of the trail (the marker says `+note` when there is one).
                let conditions = handling
                    .as_ref()
                    .map(|handling| format!("; conditions on use {}", handling.marker()))
                    .unwrap_or_default();
                facts(
                    AuditKind::Received,
                    Some(*message_id),
                    Some(*sender),
                    digest,
                    format!("{priority} {kind}{relay}{conditions}"),
                )
            }
            Event::Received {
                reannounced: true, ..
            } => return None,
            Event::StatusReceived {
                references,
                from,
                status,
            } => facts(
                AuditKind::StatusReceived,
                Some(*references),
                Some(*from),
                None,
                status_label(status),
            ),
            Event::InboundRejected { .. }
            | Event::ReceiptRejected { .. }
            | Event::RosterRejected { .. }
            | Event::RevocationRejected { .. } => return None,
            Event::RosterUpdated { serial } => facts(
                AuditKind::RosterUpdated,
                None,
                None,
                None,
                format!("roster serial {serial} verified and in use"),
            ),
            Event::RevocationApplied {
                serial,
                revoked,
                reason,
            } => facts(
                AuditKind::RevocationApplied,
                None,
                None,
                None,
                format!(
                    "revocation notice serial {serial} applied; revoked: {}; reason: {reason}",
                    revoked_list(revoked)
                ),
            ),
            Event::RelayHolding {
                sender,
                recipient,
                message_id,
            } => facts(
                AuditKind::RelayHolding,
                Some(*message_id),
                Some(*sender),
                None,
                format!("held for {} ({recipient})", self.country(recipient)),
            ),
            Event::RelayDelivered {
                sender,
                recipient,
                message_id,
            } => facts(
                AuditKind::RelayDelivered,
                Some(*message_id),
                Some(*sender),
                None,
                format!("delivered to {} ({recipient})", self.country(recipient)),
            ),
            Event::RelayFailed {
                sender,
                recipient,
                message_id,
                reason,
            } => facts(
                AuditKind::RelayFailed,
                Some(*message_id),
                Some(*sender),
                None,
                format!("for {} ({recipient}): {reason}", self.country(recipient)),
            ),
            Event::StoreFailed { .. } => return None,
        };
        Some(record)
    }

    /// The detail of a refused-inbound record, or `None` when this peer already has
    /// [`MAX_REFUSED_AUDIT_PER_MINUTE`] records this minute (the log line still appears).
    fn refused_detail(&mut self, now: Timestamp, peer: NodeId, detail: String) -> Option<String> {
        let minute = now.0 / 60_000;
        if self.refused_audit.len() > 1024 {
            self.refused_audit.retain(|_, (at, _, _)| *at == minute);
        }
        let slot = self.refused_audit.entry(peer).or_insert((minute, 0, 0));
        if slot.0 != minute {
            *slot = (minute, 0, slot.2);
        }
        if slot.1 >= MAX_REFUSED_AUDIT_PER_MINUTE {
            slot.2 = slot.2.saturating_add(1);
            return None;
        }
        slot.1 += 1;
        let suppressed = std::mem::take(&mut slot.2);
        Some(if suppressed > 0 {
            format!(
                "{detail} ({suppressed} earlier refusals from this peer not recorded one by one)"
            )
        } else {
            detail
        })
    }
}

/// "DE (12D3…), FR (12D3…)" or "no member of the roster in use".
pub(crate) fn revoked_list(revoked: &[(NodeId, CountryCode)]) -> String {
    if revoked.is_empty() {
        return "no member of the roster in use".to_string();
    }
    revoked
        .iter()
        .map(|(node, country)| format!("{country} ({node})"))
        .collect::<Vec<_>>()
        .join(", ")
}
