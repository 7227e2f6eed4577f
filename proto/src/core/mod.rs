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
//! - `revocations`: authority-signed revocation notices: verified, stored, applied at once
//!   (the revoked members leave the roster in use, a relay discards what it holds from them) and
//!   passed to every connected member.
//! - `roster_sync`: peers tell their roster and revocation serials (at connect and periodically,
//!   and in every batch); a newer signed roster or notice is fetched, checked and passed on; an
//!   operator's roster is installed into the running core.
//! - `rotation`: which of the node's key pairs it uses (the one its roster entry names), and
//!   forgetting rotated-out pairs once their grace ends.
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
mod revocations;
mod roster_sync;
mod rotation;
mod schedule;
mod start;
pub mod store;
mod transmit;
mod work;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quickfreeze_keys::roster::Roster;
use quickfreeze_keys::Revocation;
use quickfreeze_keys::{Digest32, Identity, NodeId, Timestamp};
use rand_chacha::ChaCha20Rng;

use crate::envelope::OpenError;
use crate::frame::{Batch, Frame};
use crate::ids::{MessageId, Priority};
use crate::receipt::{Receipt, ReceiptError};

pub use config::{CoreConfig, InjectedBugs};
pub use event::{Event, Transmit};
pub use outbox::{awaits_acknowledgement, SubmitError};
pub use revocations::MAX_HELD_REVOCATIONS;
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
    revocations: Vec<HeldRevocation>,
    connected: BTreeSet<NodeId>,
    gossip_at: Timestamp,
    /// The key pairs changed and the shell should rewrite the key file.
    keys_changed: bool,
    /// While a peer's batch is handled: the peer announced a newer roster than ours, so a
    /// refusal that a newer roster could lift (a key rotated in it) is answered as temporary.
    peer_roster_ahead: bool,
}

/// A revocation notice this node verified and applies.
#[derive(Clone, Debug)]
pub(crate) struct HeldRevocation {
    pub(crate) revocation: Revocation,
    pub(crate) bytes: Vec<u8>,
    pub(crate) body_digest: [u8; 32],
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
        // Key rotation: a peer with a newer roster may sign with, or seal to, keys ours does not
        // list yet. Refusing that for good would lose the message; we fetch the roster instead
        // (`note_roster_serial`) and the peer retries.
        let permanent =
            error.is_permanent() && !(self.peer_roster_ahead && error.may_pass_with_newer_roster());
        Frame::refused(message_id, permanent, error.to_string())
    }

    /// A receipt checked the way every received receipt is: the signer must be a member whose
    /// window covers `now` (the time the bytes arrived, invariant 7) and the signature and
    /// content must match the message.
    fn verify_receipt_now(
        &self,
        now: Timestamp,
        receipt: &Receipt,
        message_id: &MessageId,
        sender: &NodeId,
        recipient: &NodeId,
        digest: &Digest32,
    ) -> Result<(), ReceiptError> {
        let signer = receipt.body.signer;
        if let Some(member) = self.roster.member(&signer) {
            if !member.is_valid_at(now) {
                return Err(ReceiptError::SignerNotValidNow(signer));
            }
        }
        receipt.verify_for(&self.roster, now, message_id, sender, recipient, digest)
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
