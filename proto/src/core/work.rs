//! The units of pending work the core keeps: scheduled jobs, the items of one batch in flight, and
//! what the core knows about each peer (backoff, requests in flight).
//!
//! Plain data with no behaviour: `schedule` orders and times them, `transmit` and `answer` create
//! and finish them.

use quickfreeze_keys::{NodeId, Timestamp};

use crate::ids::MessageId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Job {
    Outbox(MessageId),
    RelayDeliver(NodeId, MessageId),
    RelayReceipt(NodeId, MessageId),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Item {
    Outbox {
        message_id: MessageId,
        via_relay: bool,
    },
    RelayDeliver(NodeId, MessageId),
    RelayReceipt(NodeId, MessageId),
    RosterRequest,
    Serials,
    RevocationRequest,
    RevocationPush,
}

#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) peer: NodeId,
    pub(super) items: Vec<Item>,
}

#[derive(Debug, Default, Clone)]
pub(super) struct PeerState {
    pub(super) consecutive_failures: u32,
    pub(super) retry_at: Timestamp,
    pub(super) in_flight: usize,
    pub(super) roster_request_pending: bool,
    pub(super) revocation_request_pending: bool,
}
