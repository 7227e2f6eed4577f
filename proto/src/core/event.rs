//! What the core hands back to the shell: [`Event`]s for the officer, log, metrics and alert
//! hook, and [`Transmit`]s (encoded batches) to send to a peer.
//!
//! The rooms push them onto the core's output queues; the shell drains them with
//! `poll_event` / `poll_transmit`, after flushing the store.

use quickfreeze_keys::{CountryCode, NodeId, Timestamp};

use crate::ids::{MessageId, Priority};
use crate::payload::{PayloadKind, Status};

/// Something the officer, the log, metrics or the alert hook should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A submitted message is stored (shown once the store has flushed).
    Accepted {
        /// Message.
        message_id: MessageId,
        /// For whom.
        recipient: NodeId,
        /// Priority.
        priority: Priority,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
        /// Payload kind.
        kind: PayloadKind,
    },
    /// First transmission of a message.
    Sent {
        /// Message.
        message_id: MessageId,
        /// To whom it went (the recipient or a relay).
        to: NodeId,
        /// Whether `to` is a relay.
        via_relay: bool,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
    },
    /// A relay took custody.
    Custody {
        /// Message.
        message_id: MessageId,
        /// Relay.
        relay: NodeId,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
    },
    /// The recipient's delivery receipt was verified and stored.
    Delivered {
        /// Message.
        message_id: MessageId,
        /// Recipient.
        recipient: NodeId,
        /// When the recipient stored it.
        received_at: Timestamp,
        /// Milliseconds from acceptance to this event.
        latency_ms: u64,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
    },
    /// A message expired without a delivery receipt.
    Expired {
        /// Message.
        message_id: MessageId,
        /// Recipient.
        recipient: NodeId,
        /// Priority.
        priority: Priority,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
    },
    /// The recipient refused a message for good.
    Rejected {
        /// Message.
        message_id: MessageId,
        /// Who refused.
        by: NodeId,
        /// Their reason.
        reason: String,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
    },
    /// A new message is in the inbox.
    Received {
        /// Sender.
        sender: NodeId,
        /// Message.
        message_id: MessageId,
        /// Priority.
        priority: Priority,
        /// Payload kind.
        kind: PayloadKind,
        /// Relay that brought it, if any.
        via_relay: Option<NodeId>,
        /// SHA-256 of the envelope (what receipts and the audit trail refer to).
        digest: quickfreeze_keys::Digest32,
        /// The sender's conditions on use (requests only), for the operator's log and the audit
        /// trail.
        handling: Option<crate::payload::Handling>,
        /// Shown again after a restart because no officer has acknowledged it yet
        /// ([`Core::announce_unacknowledged`]); the first showing may have been lost in a crash.
        reannounced: bool,
    },
    /// A status update arrived about one of our messages.
    StatusReceived {
        /// Our message.
        references: MessageId,
        /// From.
        from: NodeId,
        /// The new status.
        status: Status,
    },
    /// Something a peer sent was refused (forgery, tampering, wrong recipient, expired, garbage).
    InboundRejected {
        /// The peer that sent it.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// A receipt did not verify.
    ReceiptRejected {
        /// Message it claimed to be for.
        message_id: MessageId,
        /// The peer that sent it.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// Relay role: took custody of a message.
    RelayHolding {
        /// Sender.
        sender: NodeId,
        /// Recipient.
        recipient: NodeId,
        /// Message.
        message_id: MessageId,
    },
    /// Relay role: delivered a held message.
    RelayDelivered {
        /// Sender.
        sender: NodeId,
        /// Recipient.
        recipient: NodeId,
        /// Message.
        message_id: MessageId,
    },
    /// Relay role: gave up on a held message (expired or refused by the recipient).
    RelayFailed {
        /// Sender.
        sender: NodeId,
        /// Recipient.
        recipient: NodeId,
        /// Message.
        message_id: MessageId,
        /// Why.
        reason: String,
    },
    /// A newer roster was verified and is now in use.
    RosterUpdated {
        /// Its serial.
        serial: u64,
    },
    /// A revocation notice was verified and applied: the members it names are refused from now
    /// on, their connections are to be closed, and what a relay held from them was discarded.
    RevocationApplied {
        /// The notice's serial.
        serial: u64,
        /// Members of the roster in use that it revokes, with their countries.
        revoked: Vec<(NodeId, CountryCode)>,
        /// The authorities' reason.
        reason: String,
    },
    /// A revocation notice (offered by a peer or the operator) was refused.
    RevocationRejected {
        /// The peer, or this node when the operator offered it.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// A roster offered by a peer was refused.
    RosterRejected {
        /// The peer.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// The store failed; the input was not applied.
    StoreFailed {
        /// What failed.
        reason: String,
    },
}

/// A batch for the shell to send to a peer as one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Core's id for this request; report its outcome with the same id.
    pub request_id: u64,
    /// The peer.
    pub to: NodeId,
    /// Encoded [`Batch`].
    pub bytes: Vec<u8>,
}
