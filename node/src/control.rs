//! The console's control channel: typed requests and responses over the node's Unix socket.
//!
//! Framing is one JSON document per line. The client opens with a [`Hello`] naming the protocol
//! version; the daemon answers with its own [`HelloReply`] or refuses. The socket lives in the data
//! directory with mode 0600, so only the node's own user can talk to it. Every line is capped
//! ([`MAX_CONTROL_LINE_BYTES`]); a malformed request gets an [`ControlResponse::Error`] and the
//! connection stays usable.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quickfreeze_proto::payload::{Payload, Status};
use serde::{Deserialize, Serialize};

/// Version of the control protocol.
pub const CONTROL_PROTOCOL_VERSION: u32 = 1;
/// Name in the hello line.
pub const CONTROL_PROTOCOL_NAME: &str = "quickfreeze-control";
/// Longest line either side accepts.
pub const MAX_CONTROL_LINE_BYTES: usize = 4 * 1024 * 1024;

/// The first line a client sends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Always [`CONTROL_PROTOCOL_NAME`].
    pub protocol: String,
    /// The client's [`CONTROL_PROTOCOL_VERSION`].
    pub version: u32,
}

/// The daemon's answer to [`Hello`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HelloReply {
    /// The daemon's protocol version.
    pub version: u32,
    /// The node's id.
    pub node_id: String,
    /// Set when the daemon refuses the client's version.
    pub error: Option<String>,
}

/// Most items in one [`ControlRequest::SubmitBatch`].
pub const MAX_SUBMIT_BATCH: usize = 64;

/// One submission of a [`ControlRequest::SubmitBatch`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitItem {
    /// Country code (the point of contact) or node id.
    pub recipient: String,
    /// The message.
    pub payload: Payload,
}

/// A console request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// Validate, seal and queue a message. `recipient` is a country code or a node id.
    Submit {
        /// Country code (the point of contact) or node id.
        recipient: String,
        /// The message (boxed: it dwarfs every other request).
        payload: Box<Payload>,
    },
    /// Several submissions in one request, for a system that forwards requests in bulk: each item
    /// is validated, sealed and stored on its own, exactly as [`ControlRequest::Submit`], and all
    /// are made durable by the same group commit. At most [`MAX_SUBMIT_BATCH`] items.
    SubmitBatch {
        /// The submissions, answered in this order.
        items: Vec<SubmitItem>,
    },
    /// Newest inbox entries.
    Inbox {
        /// At most this many.
        limit: usize,
    },
    /// Newest outbox entries.
    Outbox {
        /// At most this many.
        limit: usize,
    },
    /// One message in full.
    Show {
        /// Message id (hex).
        message_id: String,
    },
    /// Officer acknowledgement of an inbox message.
    Ack {
        /// Message id (hex).
        message_id: String,
        /// Who acknowledges.
        officer: String,
    },
    /// Status update about an inbox message.
    Reply {
        /// Message id (hex).
        message_id: String,
        /// The status.
        status: Status,
        /// Free-text note.
        note: String,
        /// Who replies.
        officer: String,
    },
    /// Peers and their state.
    Peers,
    /// The node at a glance.
    Status,
    /// Delivery latency and store figures since start (or the last reset).
    Metrics {
        /// Clear the figures after reading them.
        reset: bool,
    },
    /// The figures behind the Prometheus endpoint.
    MetricsSnapshot,
    /// Efficiency statistics per counterpart country.
    Stats {
        /// Requests created or received at or after this time (milliseconds since the epoch).
        since_ms: u64,
    },
    /// Verify the audit log's hash chain.
    AuditVerify {
        /// A head hash (hex) recorded earlier that must still be in the chain.
        expect_head: Option<String>,
        /// A signed head kept by a witness (hex of its bytes, as in a head file): the chain
        /// must still hold it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        witness: Option<String>,
    },
    /// Write a consistent backup of the node into a staging file in its data directory
    /// (`.backup-…`, mode 0600), for `quickfreeze backup` to verify, copy and remove.
    /// Answered with [`ControlResponse::BackupWritten`].
    Backup {
        /// Include the key file.
        with_keys: bool,
    },
    /// One page of audit records at or after a time.
    AuditExport {
        /// Records at or after this time (milliseconds since the epoch).
        since_ms: u64,
        /// Continue after this sequence number (the previous page's `next_after`).
        after: Option<u64>,
        /// At most this many records (the node caps it).
        limit: usize,
    },
    /// [`ControlRequest::AuditExport`] narrowed to one message or to every thread of a case.
    AuditExportFiltered {
        /// Records at or after this time (milliseconds since the epoch).
        since_ms: u64,
        /// Continue after this sequence number (the previous page's `next_after`).
        after: Option<u64>,
        /// At most this many records (the node caps it).
        limit: usize,
        /// Only the records of this message (an id or a unique prefix of at least 6 hex digits).
        message: Option<String>,
        /// Only the records of the messages of this case reference (requests, their statuses).
        case: Option<String>,
    },
    /// Build the evidence file of a message's thread (see the `evidence` module), signed by
    /// this node now.
    EvidenceExport {
        /// The message: an id or a unique prefix of at least 6 hex digits.
        message_id: String,
    },
    /// Test harnesses only (refused unless the config has `[testing] fault_injection = true`):
    /// inject a fault on the links to `peers` (node ids), replacing any earlier one on them.
    /// All flags off and no delay removes the fault.
    Fault {
        /// Node ids of the peers.
        peers: Vec<String>,
        /// Fail every request to them.
        drop_outbound: bool,
        /// Drop every request and response from them.
        drop_inbound: bool,
        /// Hold everything from them this long.
        delay_ms: u64,
    },
    /// Test harnesses only: remove every injected fault.
    FaultClear,
    /// Test harnesses only: the delivery log (message id and the wall-clock instant its receipt
    /// was verified, for every delivery since start or the last drain) and the duplicates this
    /// node answered without storing again.
    DeliveryLog {
        /// Clear the log and the counter after reading them.
        drain: bool,
    },
    /// Inbox rows matching a filter, one page of them; one row per thread unless `flat`.
    /// Answered with [`ControlResponse::InboxPage`].
    InboxQuery {
        /// The filter and the page.
        #[serde(default)]
        query: Box<MessageQuery>,
    },
    /// Outbox rows matching a filter, one page of them; one row per thread unless `flat`.
    /// Answered with [`ControlResponse::OutboxPage`].
    OutboxQuery {
        /// The filter and the page.
        #[serde(default)]
        query: Box<MessageQuery>,
    },
    /// Wait until an outbox message is delivered (or the timeout passes).
    WaitDelivered {
        /// Message id (hex).
        message_id: String,
        /// How long to wait.
        timeout_ms: u64,
    },
    /// Record an officer's action taken outside the daemon (a web console login, logout or
    /// send) in the audit trail under the officer's name.
    OfficerAction {
        /// The officer.
        officer: String,
        /// What they did, in words (the daemon cuts it to the audit detail limit).
        action: String,
        /// The message concerned, if any (hex).
        message_id: Option<String>,
    },
    /// Install a signed roster into the running node (verified as an update of the one in use).
    InstallRoster {
        /// The signed roster's bytes, hex.
        signed_hex: String,
    },
    /// Apply a signed revocation notice in the running node and pass it on.
    ApplyRevocation {
        /// The signed notice's bytes, hex.
        signed_hex: String,
    },
}

/// Which rows of `inbox` or `outbox` to show, and which page of them. Every field is optional
/// (an empty query is "everything, newest first, one row per thread, first page of 50").
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MessageQuery {
    /// The requesting side's case reference (exact, case-insensitive).
    pub case: Option<String>,
    /// The other side's country code.
    pub country: Option<String>,
    /// Payload kind: preservation, traffic-data, emergency, status, free-text.
    pub kind: Option<String>,
    /// Priority: emergency, urgent, routine.
    pub priority: Option<String>,
    /// Inbox: new, acknowledged, overdue. Outbox: accepted, sent, custody, delivered, expired,
    /// rejected, undelivered (anything without a delivery receipt), overdue.
    pub state: Option<String>,
    /// Received (inbox) or accepted (outbox) at or after this time, milliseconds since the epoch.
    pub since_ms: Option<u64>,
    /// ... and before this time.
    pub until_ms: Option<u64>,
    /// Every word must appear in the summary (case-insensitive).
    pub text: Option<String>,
    /// Rows per page (0: the default, 50).
    pub limit: usize,
    /// Page number, from 1 (0 counts as 1).
    pub page: usize,
    /// Start after the row with this id (or unique prefix); overrides `page`.
    pub after: Option<String>,
    /// One row per message instead of one per thread.
    pub flat: bool,
}

/// Rows per page when a [`MessageQuery`] names none.
pub const DEFAULT_PAGE_ROWS: usize = 50;

/// One message of a thread, for `show` and the console.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadItem {
    /// Message id.
    pub message_id: String,
    /// "outbound" (this node sent it) or "inbound".
    pub direction: String,
    /// When it was created (outbound) or stored here (inbound), RFC 3339.
    pub at: String,
    /// The node that signed it.
    pub signed_by: String,
    /// That node's country.
    pub country: String,
    /// Payload kind.
    pub kind: String,
    /// The officer named in it (status replies), if any.
    pub officer: Option<String>,
    /// What it says, in one line.
    pub summary: String,
    /// Outbound: delivery state. Inbound: new / read.
    pub state: String,
}

/// A row of `inbox`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InboxRow {
    /// Message id.
    pub message_id: String,
    /// Sender node id.
    pub sender: String,
    /// Sender's country.
    pub country: String,
    /// Payload kind.
    pub kind: String,
    /// Priority.
    pub priority: String,
    /// When it was stored here (RFC 3339).
    pub received_at: String,
    /// Seconds since it was received.
    pub age_s: u64,
    /// Whether an officer acknowledged it.
    pub acknowledged: bool,
    /// One-line summary.
    pub summary: String,
    /// Relay that brought it.
    pub via_relay: Option<String>,
    /// Deadline clocks that ran out for it (`acknowledge`, `status`); overdue rows come first.
    #[serde(default)]
    pub overdue: Vec<String>,
    /// The id of the thread's first message (the request); equal to `message_id` for a request.
    #[serde(default)]
    pub thread: String,
    /// Messages in the thread (thread views), else 1.
    #[serde(default)]
    pub thread_messages: usize,
    /// The thread's latest state in words ("preserved by FR, officer J. Doe"), if anything
    /// happened after the first message.
    #[serde(default)]
    pub latest: Option<String>,
    /// Whether an officer must acknowledge it: requests only, never status replies.
    #[serde(default)]
    pub awaits_acknowledgement: bool,
    /// The sender's conditions on use as a compact marker (`[case-only,no-onward,...]`), for
    /// requests; `show` prints them in full.
    #[serde(default)]
    pub conditions: Option<String>,
}

/// A row of `outbox`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxRow {
    /// Message id.
    pub message_id: String,
    /// Recipient node id.
    pub recipient: String,
    /// Recipient's country.
    pub country: String,
    /// Payload kind.
    pub kind: String,
    /// Priority.
    pub priority: String,
    /// accepted / sent / custody / delivered / expired / rejected.
    pub state: String,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// Seconds since it was accepted.
    pub age_s: u64,
    /// Transmissions so far.
    pub attempts: u32,
    /// One-line summary.
    pub summary: String,
    /// Last failure.
    pub last_error: Option<String>,
    /// Latest status reported by the recipient.
    pub latest_status: Option<String>,
    /// Deadline clocks that ran out for it (`receipt`); overdue rows come first.
    #[serde(default)]
    pub overdue: Vec<String>,
    /// The id of the thread's first message.
    #[serde(default)]
    pub thread: String,
    /// Messages in the thread (thread views), else 1.
    #[serde(default)]
    pub thread_messages: usize,
    /// Why it is not delivered yet, in words (None once delivered).
    #[serde(default)]
    pub why: Option<String>,
}

/// One deadline breach, for `status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OverdueRow {
    /// receipt (T1), acknowledge (T2) or status (T3).
    pub clock: String,
    /// What it means.
    pub meaning: String,
    /// Message id.
    pub message_id: String,
    /// The other node.
    pub peer: String,
    /// Its country.
    pub country: String,
    /// Priority.
    pub priority: String,
    /// When the clock ran out (RFC 3339).
    pub due_at: String,
    /// Seconds since then.
    pub overdue_s: u64,
}

/// A receipt, for display.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptView {
    /// delivered / custody.
    pub kind: String,
    /// Who signed.
    pub signer: String,
    /// Signer's country.
    pub signer_country: String,
    /// When the signer stored the envelope (RFC 3339).
    pub received_at: String,
    /// SHA-256 of the envelope (hex).
    pub envelope_digest: String,
    /// Whether the signature verified against the current roster when shown.
    pub verified: bool,
}

/// A status update, for display.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusView {
    /// When it arrived.
    pub received_at: String,
    /// The status.
    pub status: Status,
    /// The note.
    pub note: String,
    /// The officer.
    pub officer: String,
}

/// One message in full.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageDetail {
    /// "outbound" or "inbound".
    pub direction: String,
    /// Message id.
    pub message_id: String,
    /// The other side.
    pub peer: String,
    /// Its country.
    pub country: String,
    /// Priority.
    pub priority: String,
    /// State (outbound) or acknowledged/new (inbound).
    pub state: String,
    /// The content.
    pub payload: Option<Payload>,
    /// Receipts.
    pub receipts: Vec<ReceiptView>,
    /// Status updates received about it (outbound).
    pub status_history: Vec<StatusView>,
    /// Status replies sent about it (inbound).
    pub replies: Vec<String>,
    /// Last failure (outbound).
    pub last_error: Option<String>,
    /// The whole thread this message belongs to, oldest first (request, acknowledgements,
    /// status replies, follow-ups), at this end.
    #[serde(default)]
    pub thread: Vec<ThreadItem>,
}

/// A row of `peers`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRow {
    /// Node id.
    pub node_id: String,
    /// Country.
    pub country: String,
    /// Authority.
    pub authority_name: String,
    /// Role.
    pub role: String,
    /// Whether a connection is up.
    pub connected: bool,
    /// Consecutive failed requests.
    pub consecutive_failures: u32,
    /// When the next attempt is allowed (RFC 3339), if backing off.
    pub retry_at: Option<String>,
    /// What this node refused from the member since it started, by kind (`junk_frame`,
    /// `oversized_frame`, `truncated_frame`, `stalled_stream`, `extra_connection`, ...): the
    /// counts behind the network's rate-limited summary lines.
    #[serde(default)]
    pub misbehaviour: std::collections::BTreeMap<String, u64>,
}

/// The node at a glance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusReport {
    /// Node id.
    pub node_id: String,
    /// Fingerprint of the node key.
    pub fingerprint: String,
    /// Country.
    pub country: String,
    /// Role.
    pub role: String,
    /// Network name.
    pub network: String,
    /// Roster serial in use.
    pub roster_serial: u64,
    /// Roster expiry (RFC 3339).
    pub roster_expires_at: String,
    /// True when the roster expires within 7 days.
    pub roster_expires_soon: bool,
    /// Undelivered outbox messages: emergency, urgent, routine.
    pub outbox_pending: [usize; 3],
    /// Inbox messages in total.
    pub inbox_total: usize,
    /// Inbox messages not yet acknowledged by an officer.
    pub inbox_unacknowledged: usize,
    /// Relay role: messages held or receipts being carried back.
    pub relay_pending: usize,
    /// Relay role: bytes held.
    pub relay_bytes: u64,
    /// Peers with a connection up.
    pub connected_peers: usize,
    /// Addresses the node listens on.
    pub listen_addresses: Vec<String>,
    /// Group commits so far.
    pub store_flushes: u64,
    /// Seconds until the roster expires (negative: expired).
    #[serde(default)]
    pub roster_expires_in_s: i64,
    /// Overdue messages per clock: receipt (T1), acknowledge (T2), status (T3).
    #[serde(default)]
    pub overdue: [usize; 3],
    /// The overdue messages, most urgent first (at most 100).
    #[serde(default)]
    pub overdue_items: Vec<OverdueRow>,
    /// Seconds since the key file was last written (its creation, or a key rotation).
    #[serde(default)]
    pub key_file_age_s: Option<u64>,
    /// Where the Prometheus endpoint listens, if enabled.
    #[serde(default)]
    pub metrics_address: Option<String>,
    /// Highest serial of the revocation notices in force (0: none).
    #[serde(default)]
    pub revocation_serial: u64,
    /// The revocation notices in force, lowest serial first.
    #[serde(default)]
    pub revocations: Vec<RevocationRow>,
    /// Bytes free on the data directory's filesystem at the last measurement.
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
    /// While free space is below the low-water mark: the refusal given to submissions and
    /// incoming deliveries.
    #[serde(default)]
    pub disk_low: Option<String>,
    /// The low-water mark the free space is compared with, in bytes (None: the check is off or
    /// nothing was measured yet).
    #[serde(default)]
    pub disk_low_water_bytes: Option<u64>,
}

/// A revocation notice in force, for `status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevocationRow {
    /// Its serial.
    pub serial: u64,
    /// When the authorities issued it (RFC 3339).
    pub issued_at: String,
    /// Revoked node ids.
    pub nodes: Vec<String>,
    /// Revoked public keys (hex).
    pub keys: Vec<String>,
    /// The authorities' reason.
    pub reason: String,
}

/// Delivery figures measured inside the daemon.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metrics {
    /// Messages accepted from the console.
    pub accepted: u64,
    /// Delivery receipts verified.
    pub delivered: u64,
    /// Messages expired undelivered.
    pub expired: u64,
    /// Inbound messages stored.
    pub received: u64,
    /// Accepted → verified delivery receipt, microseconds: median.
    pub latency_p50_us: u64,
    /// 90th percentile.
    pub latency_p90_us: u64,
    /// 99th percentile.
    pub latency_p99_us: u64,
    /// Maximum.
    pub latency_max_us: u64,
    /// Latency samples behind the percentiles (the most recent ones, bounded).
    pub latency_samples: u64,
    /// Group commits that wrote something.
    pub store_flushes: u64,
    /// Time spent flushing, microseconds.
    pub store_flush_micros: u64,
    /// Loop turns (each ends with one flush call).
    pub loop_turns: u64,
    /// Dials started by the reconnect probe (peers that work waited on while they were backing
    /// off and not connected).
    #[serde(default)]
    pub probe_dials: u64,
}

/// One verified delivery, for test harnesses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryLogEntry {
    /// Message id.
    pub message_id: String,
    /// When the delivery receipt was verified and flushed, microseconds since the Unix epoch.
    pub delivered_unix_us: u64,
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ControlResponse {
    /// Stored durably and queued.
    Submitted {
        /// Message id.
        message_id: String,
        /// Recipient node id.
        recipient: String,
        /// Recipient country.
        country: String,
    },
    /// One answer per item of a [`ControlRequest::SubmitBatch`], in order: each
    /// [`ControlResponse::Submitted`] or [`ControlResponse::Error`].
    SubmittedBatch {
        /// The answers.
        results: Vec<ControlResponse>,
    },
    /// Inbox rows.
    Inbox {
        /// Rows, newest first.
        rows: Vec<InboxRow>,
    },
    /// Outbox rows.
    Outbox {
        /// Rows, newest first.
        rows: Vec<OutboxRow>,
    },
    /// One message.
    Message {
        /// The message.
        detail: Box<MessageDetail>,
    },
    /// Acknowledged.
    Acknowledged {
        /// The status message sent to the requester (None if it was already acknowledged).
        status_message_id: Option<String>,
    },
    /// A status reply was acknowledged: marked read here, nothing sent (no acknowledgement of
    /// an acknowledgement).
    MarkedRead {
        /// Message id.
        message_id: String,
    },
    /// One page of inbox rows for [`ControlRequest::InboxQuery`].
    InboxPage {
        /// Rows: overdue first, then newest first.
        rows: Vec<InboxRow>,
        /// Rows matching the filter, over all pages.
        total: usize,
        /// Pass as `after` for the next page; None on the last one.
        next_after: Option<String>,
    },
    /// One page of outbox rows for [`ControlRequest::OutboxQuery`].
    OutboxPage {
        /// Rows: overdue first, then newest first.
        rows: Vec<OutboxRow>,
        /// Rows matching the filter, over all pages.
        total: usize,
        /// Pass as `after` for the next page; None on the last one.
        next_after: Option<String>,
    },
    /// Reply queued.
    Replied {
        /// The status message id.
        status_message_id: String,
    },
    /// Peers.
    Peers {
        /// Rows.
        rows: Vec<PeerRow>,
    },
    /// Status.
    Status {
        /// The report.
        report: Box<StatusReport>,
    },
    /// The message is delivered.
    Delivered {
        /// Message id.
        message_id: String,
        /// The delivery receipt.
        receipt: ReceiptView,
        /// Milliseconds from acceptance to the verified receipt.
        latency_ms: u64,
    },
    /// Not delivered within the wait.
    NotYetDelivered {
        /// Message id.
        message_id: String,
        /// Its state.
        state: String,
    },
    /// Figures since start or the last reset.
    Metrics {
        /// The figures.
        metrics: Metrics,
    },
    /// The figures behind the Prometheus endpoint.
    MetricsSnapshot {
        /// The figures.
        snapshot: Box<crate::prometheus::Snapshot>,
    },
    /// Statistics per country.
    Stats {
        /// One row per counterpart country.
        rows: Vec<crate::stats::CountryStats>,
    },
    /// A backup was written (see [`ControlRequest::Backup`]).
    BackupWritten {
        /// The staging file in the data directory.
        path: String,
        /// What it holds.
        counts: crate::backup::BackupCounts,
    },
    /// The audit chain was checked.
    AuditVerified {
        /// What was found.
        report: crate::audit_view::VerifyReport,
    },
    /// A page of audit records.
    AuditPage {
        /// Records, in sequence order.
        lines: Vec<crate::audit_view::AuditLine>,
        /// Ask again with `after` set to this for more; `None` when done.
        next_after: Option<u64>,
    },
    /// An evidence file, ready to be written as it is.
    Evidence {
        /// The file's text (an HTML page with its signed data block).
        file: String,
    },
    /// The running node verified and now uses this roster.
    RosterInstalled {
        /// Its serial.
        serial: u64,
    },
    /// The running node verified and applies the notice.
    RevocationApplied {
        /// The notice's serial.
        serial: u64,
        /// False when the node already held it.
        new: bool,
        /// Members of the roster in use it revokes ("DE (12D3…)").
        revoked: Vec<String>,
    },
    /// Faults injected (or cleared).
    FaultsSet {
        /// Peers with a fault now.
        faulty_peers: usize,
    },
    /// The delivery log.
    DeliveryLog {
        /// Deliveries, oldest first.
        entries: Vec<DeliveryLogEntry>,
        /// Deliveries dropped from the log because it was full (not drained in time).
        overflowed: u64,
        /// Duplicate deliveries and hand-offs answered from the store without storing again.
        duplicates_suppressed: u64,
    },
    /// An [`ControlRequest::OfficerAction`] was recorded.
    ActionRecorded,
    /// The request failed.
    Error {
        /// What went wrong and what to do.
        message: String,
    },
}

impl ControlResponse {
    /// The answer to [`ControlRequest::Stats`]: the rows, or the store's error.
    pub fn from_stats(rows: Result<Vec<crate::stats::CountryStats>, String>) -> ControlResponse {
        match rows {
            Ok(rows) => ControlResponse::Stats { rows },
            Err(message) => ControlResponse::Error { message },
        }
    }
}

/// Why the console could not talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket: the node has never run here, or the data dir is wrong.
    #[error("no node is running with data directory {dir}: {socket} does not exist; start it with `quickfreeze run --config {dir}/node.toml`")]
    NoSocket {
        /// The data dir.
        dir: String,
        /// The socket path.
        socket: String,
    },
    /// A stale socket.
    #[error("the node with data directory {dir} is not running (nobody listens on {socket}); start it with `quickfreeze run --config {dir}/node.toml`")]
    NotRunning {
        /// The data dir.
        dir: String,
        /// The socket path.
        socket: String,
    },
    /// Other IO problems.
    #[error("control socket {socket}: {source}")]
    Io {
        /// The socket path.
        socket: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The daemon answered something unexpected.
    #[error("the node answered something this console does not understand: {0}")]
    Protocol(String),
}

/// A blocking console client.
pub struct ControlClient {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The node's id, from the hello exchange.
    pub node_id: String,
}

impl ControlClient {
    /// Connects to the daemon whose data directory is `data_dir` and exchanges hellos.
    pub fn connect(data_dir: &Path, timeout: Duration) -> Result<ControlClient, ClientError> {
        let socket = data_dir.join(crate::config::files::SOCKET);
        let dir = data_dir.display().to_string();
        let socket_text = socket.display().to_string();
        if !socket.exists() {
            return Err(ClientError::NoSocket {
                dir,
                socket: socket_text,
            });
        }
        let stream = UnixStream::connect(&socket).map_err(|source| match source.kind() {
            std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                dir: dir.clone(),
                socket: socket_text.clone(),
            },
            _ => ClientError::Io {
                socket: socket_text.clone(),
                source,
            },
        })?;
        let io = |source| ClientError::Io {
            socket: socket_text.clone(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut client = ControlClient {
            socket,
            reader: BufReader::new(stream),
            writer,
            node_id: String::new(),
        };
        let hello = Hello {
            protocol: CONTROL_PROTOCOL_NAME.into(),
            version: CONTROL_PROTOCOL_VERSION,
        };
        client.write_line(&hello)?;
        let reply: HelloReply = client.read_line()?;
        if let Some(error) = reply.error {
            return Err(ClientError::Protocol(error));
        }
        client.node_id = reply.node_id;
        Ok(client)
    }

    /// Sets how long to wait for an answer.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|source| ClientError::Io {
                socket: self.socket.display().to_string(),
                source,
            })
    }

    /// Sends one request and reads its answer.
    pub fn request(&mut self, request: &ControlRequest) -> Result<ControlResponse, ClientError> {
        self.write_line(request)?;
        self.read_line()
    }

    fn write_line<T: Serialize>(&mut self, value: &T) -> Result<(), ClientError> {
        let mut line =
            serde_json::to_vec(value).map_err(|error| ClientError::Protocol(error.to_string()))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|source| ClientError::Io {
                socket: self.socket.display().to_string(),
                source,
            })
    }

    fn read_line<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, ClientError> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_CONTROL_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| ClientError::Io {
                socket: self.socket.display().to_string(),
                source,
            })?;
        if read == 0 {
            return Err(ClientError::Protocol(
                "the node closed the connection".into(),
            ));
        }
        if line.len() > MAX_CONTROL_LINE_BYTES {
            return Err(ClientError::Protocol(
                "answer longer than the line limit".into(),
            ));
        }
        serde_json::from_slice(&line).map_err(|error| ClientError::Protocol(error.to_string()))
    }
}
