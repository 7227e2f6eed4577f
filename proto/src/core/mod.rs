//! The sans-IO delivery core: outbox, retries, relay hand-off and custody, receipts,
//! de-duplication, expiry and roster spread, as one state machine per node.
//!
//! Inputs, each with the current time: [`Core::submit`] / [`Core::acknowledge`] /
//! [`Core::reply`] (the officer), [`Core::handle_request`] (a peer's batch; returns the response
//! bytes), [`Core::handle_response`] / [`Core::handle_request_failed`] (the outcome of a batch
//! this node sent), [`Core::handle_peer_seen`] (a connection came up) and
//! [`Core::handle_timeout`]. Outputs: [`Core::poll_transmit`], [`Core::poll_event`] and
//! [`Core::poll_timeout`].
//!
//! The core never touches a socket, a clock, OS randomness or a disk: it is handed `now`, owns a
//! seeded RNG (ephemeral keys and retry jitter) and writes through the [`Store`] trait. The shell
//! must flush the store before it sends any response or transmit, or shows any event, produced
//! since the previous flush; that single rule gives "durable before acknowledged".
//!
//! This file holds the state ([`Core`]), its read-only views, the output queues and the small
//! helpers every room uses. The rooms add `impl Core` blocks; each uses only rooms listed
//! before it, so there is no circle among them:
//!
//! - `config`, `event`, `work`, [`store`]: plain types (tunables, what the shell hears, units of
//!   pending work, the storage trait).
//! - `schedule`: the timetable: priority-ordered due jobs, per-peer backoff with jitter, in-flight
//!   limits and batches put on the transmit queue.
//! - `outbox`: the sender's side: officer commands seal and store a message; the next hop is
//!   chosen; receipts move it to custody or delivered; expiry and rejection end it.
//! - `custody`: the relay role: held envelopes, their limits, forwarding to the recipient and
//!   carrying the delivery receipt back to the sender.
//! - `roster_sync`: peers tell their roster serial; a newer signed roster is fetched and checked.
//! - `start`: building a core over a store and reloading the work a restart resumes.
//! - `transmit`: `handle_timeout` turns due jobs (outbox and custody) into batches per peer.
//! - `receive`: a peer's request batch, frame by frame: de-dup, open, validate, store, sign the
//!   receipt; hand-offs go to `custody`, forwarded receipts to `outbox`.
//! - `answer`: the outcome of a batch this node sent: answers and failures, fed back to `outbox`,
//!   `custody`, `roster_sync` and the backoff in `schedule`.

mod answer;
mod config;
mod custody;
mod event;
mod outbox;
mod receive;
mod roster_sync;
mod schedule;
mod start;
pub mod store;
mod transmit;
mod work;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quickfreeze_keys::roster::Roster;
use quickfreeze_keys::{Identity, NodeId, Timestamp};
use rand_chacha::ChaCha20Rng;

use crate::envelope::OpenError;
use crate::frame::{Batch, Frame};
use crate::ids::{MessageId, Priority};

pub use config::{CoreConfig, InjectedBugs};
pub use event::{Event, Transmit};
pub use outbox::SubmitError;
pub use start::Reannounced;
pub use store::{
    InboxEntry, MemoryStore, OutboxEntry, OutboxState, RelayEntry, RelayState, StatusRecord, Store,
    StoreError,
};
use work::{InFlight, Job, PeerState};

/// Snapshot of queue sizes, for `status` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSizes {
    /// Undelivered outbox entries by priority (routine, urgent, emergency).
    pub outbox_pending: [usize; 3],
    /// Relay entries still held or carrying a receipt.
    pub relay_pending: usize,
    /// Bytes the relay holds.
    pub relay_bytes: u64,
    /// Requests in flight.
    pub in_flight: usize,
}

/// The delivery state machine of one node.
pub struct Core<S: Store> {
    identity: Identity,
    me: NodeId,
    roster: Roster,
    signed_roster: Vec<u8>,
    config: CoreConfig,
    store: S,
    rng: ChaCha20Rng,
    outbox: BTreeMap<MessageId, OutboxEntry>,
    relay: BTreeMap<(NodeId, MessageId), RelayEntry>,
    relay_bytes_by_sender: BTreeMap<NodeId, (usize, u64)>,
    relay_bytes_total: u64,
    due: BTreeSet<(Timestamp, Reverse<Priority>, Job)>,
    due_at: BTreeMap<Job, (Timestamp, Priority)>,
    blocked: BTreeMap<NodeId, BTreeSet<(Reverse<Priority>, Job)>>,
    busy: BTreeSet<Job>,
    peers: BTreeMap<NodeId, PeerState>,
    in_flight: BTreeMap<u64, InFlight>,
    next_request_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    deferred_inbox: Vec<InboxEntry>,
}

impl<S: Store> Core<S> {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The roster in use.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The signed roster in use.
    pub fn signed_roster(&self) -> &[u8] {
        &self.signed_roster
    }

    /// The store (for queries and for the shell's flush).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (the shell flushes through this).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back (for simulated crashes).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Queue sizes now.
    pub fn queue_sizes(&self) -> QueueSizes {
        let mut sizes = QueueSizes::default();
        for entry in self.outbox.values() {
            sizes.outbox_pending[entry.priority as usize] += 1;
        }
        sizes.relay_pending = self
            .relay
            .values()
            .filter(|entry| {
                matches!(
                    entry.state,
                    RelayState::Holding | RelayState::ReceiptPending { .. }
                )
            })
            .count();
        sizes.relay_bytes = self.relay_bytes_total;
        sizes.in_flight = self.in_flight.len();
        sizes
    }

    /// Next transmission for the shell.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the shell.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Only used by [`InjectedBugs::receipt_before_store`].
    fn write_deferred(&mut self) {
        for entry in std::mem::take(&mut self.deferred_inbox) {
            if let Err(error) = self.store.put_inbox(&entry) {
                self.push_event(Event::StoreFailed {
                    reason: error.to_string(),
                });
            }
        }
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= self.config.max_queued_events {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn response(&self, frames: Vec<Frame>) -> Vec<u8> {
        Batch::new(self.roster.serial, frames)
            .to_bytes()
            .unwrap_or_default()
    }

    fn reject_inbound(&mut self, from: NodeId, message_id: MessageId, error: &OpenError) -> Frame {
        self.push_event(Event::InboundRejected {
            from,
            reason: format!("message {message_id}: {error}"),
        });
        Frame::refused(message_id, error.is_permanent(), error.to_string())
    }

    fn store_failed(&mut self, message_id: MessageId, error: StoreError) -> Frame {
        self.push_event(Event::StoreFailed {
            reason: error.to_string(),
        });
        Frame::refused(
            message_id,
            false,
            "temporary storage failure at the receiver",
        )
    }
}

#[cfg(test)]
mod tests;
