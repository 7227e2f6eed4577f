//! The audit trail as the console sees it: the kinds of record, one record as an export line,
//! and the outcome of a chain check. It sits below both [`crate::audit`] (which writes and
//! verifies the log, and answers the console's audit requests) and [`crate::control`] (whose
//! responses carry these types), so that neither imports the other in a circle. Reached from
//! outside the crate as `quickfreeze_node::audit::{AuditKind, AuditLine, VerifyReport}`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a record says happened. New kinds are only ever appended (the encoding is the index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// An officer's message was stored in the outbox.
    Submitted,
    /// First transmission of a message (direct or to a relay).
    Sent,
    /// A relay signed a custody receipt.
    Custody,
    /// The recipient's delivery receipt was verified.
    Delivered,
    /// A message arrived in the inbox.
    Received,
    /// An officer opened a message (`show`).
    Opened,
    /// An officer acknowledged an inbox message.
    Acknowledged,
    /// A status update was sent about an inbox message.
    StatusSent,
    /// A status update arrived about one of our messages.
    StatusReceived,
    /// A message expired without a delivery receipt.
    Expired,
    /// The recipient refused one of our messages.
    Rejected,
    /// A frame, receipt or roster from a peer was refused.
    RefusedInbound,
    /// The operator installed a roster (seen at start-up).
    RosterInstalled,
    /// A newer roster arrived from a peer and is in use.
    RosterUpdated,
    /// A deadline passed (see `deadlines`).
    Overdue,
    /// Relay role: took custody of a message for a member.
    RelayHolding,
    /// Relay role: delivered a held message.
    RelayDelivered,
    /// Relay role: gave up on a held message.
    RelayFailed,
    /// An officer acted through a console outside the daemon (web login, logout, send).
    OfficerAction,
    /// A revocation notice signed by the roster authorities was applied.
    RevocationApplied,
}

impl AuditKind {
    /// The kebab-case name used in exports and logs.
    pub fn name(self) -> &'static str {
        match self {
            AuditKind::Submitted => "submitted",
            AuditKind::Sent => "sent",
            AuditKind::Custody => "custody",
            AuditKind::Delivered => "delivered",
            AuditKind::Received => "received",
            AuditKind::Opened => "opened",
            AuditKind::Acknowledged => "acknowledged",
            AuditKind::StatusSent => "status-sent",
            AuditKind::StatusReceived => "status-received",
            AuditKind::Expired => "expired",
            AuditKind::Rejected => "rejected",
            AuditKind::RefusedInbound => "refused-inbound",
            AuditKind::RosterInstalled => "roster-installed",
            AuditKind::RosterUpdated => "roster-updated",
            AuditKind::Overdue => "overdue",
            AuditKind::RelayHolding => "relay-holding",
            AuditKind::RelayDelivered => "relay-delivered",
            AuditKind::RelayFailed => "relay-failed",
            AuditKind::OfficerAction => "officer-action",
            AuditKind::RevocationApplied => "revocation-applied",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record as one JSON line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// Sequence number.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Milliseconds since the epoch (exact).
    pub at_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// Message id (hex).
    pub message_id: Option<String>,
    /// The other node.
    pub peer: Option<String>,
    /// Its country.
    pub country: Option<String>,
    /// SHA-256 of the envelope (hex).
    pub envelope_digest: Option<String>,
    /// Detail.
    pub detail: String,
    /// Chain hash of this record (hex).
    pub hash: String,
}

/// The outcome of [`crate::audit::verify_chain`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records that verified before the first problem (all of them when `first_bad` is `None`).
    pub records: u64,
    /// Hash of the last good record (hex; 64 zeros for an empty log).
    pub head: String,
    /// Sequence number of the first record that is missing, altered or out of place.
    pub first_bad: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
    /// With `--expect-head`: whether that hash is a record of the verified chain.
    pub expected_head_found: Option<bool>,
    /// Signed heads (the node's own, its head file, a witness's) that do not verify or that
    /// the chain no longer holds: it was cut at its end or rewritten.
    #[serde(default)]
    pub head_problems: Vec<String>,
    /// What was checked about signed heads, and what could not be.
    #[serde(default)]
    pub head_notes: Vec<String>,
}

impl VerifyReport {
    /// The chain verified and, if a head was expected, it was found.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
            && self.expected_head_found != Some(false)
            && self.head_problems.is_empty()
    }
}
