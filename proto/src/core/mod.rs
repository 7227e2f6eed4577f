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

pub mod store;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quickfreeze_keys::roster::{Role, Roster};
use quickfreeze_keys::{Identity, NodeId, SignedRoster, Timestamp};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::envelope::{self, digest_bytes, AcceptPolicy, Envelope, OpenError, SealParams};
use crate::frame::{Batch, Frame, MAX_BATCH_BYTES, MAX_FRAMES_PER_BATCH};
use crate::ids::{MessageId, Priority};
use crate::payload::{Payload, PayloadKind, Status, StatusUpdate, ValidationErrors};
use crate::receipt::{Receipt, ReceiptBody, ReceiptKind};
pub use store::{
    InboxEntry, MemoryStore, OutboxEntry, OutboxState, RelayEntry, RelayState, StatusRecord, Store,
    StoreError,
};

/// Tunables of the core. Every limit is named here; see the field docs for defaults.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// First retry delay (default 1 s); doubles per consecutive failure to a peer.
    pub retry_base_ms: u64,
    /// Longest retry delay (default 60 s): minutes, never days, so a returning peer is found fast.
    pub retry_cap_ms: u64,
    /// Failed direct attempts before handing a message to the recipient's relays (default 2).
    pub relay_after_failures: u32,
    /// While a relay has custody, how often the sender still tries the recipient directly.
    pub custody_recheck_ms: u64,
    /// Requests in flight to one peer (default 8).
    pub max_in_flight_per_peer: usize,
    /// Undelivered messages this node may hold in its outbox (default 10,000).
    pub max_outbox_pending: usize,
    /// Messages a relay holds for one sender (default 2,000).
    pub relay_max_messages_per_sender: usize,
    /// Bytes a relay holds for one sender (default 256 MiB).
    pub relay_max_bytes_per_sender: u64,
    /// Bytes a relay holds in total (default 2 GiB).
    pub relay_max_bytes_total: u64,
    /// Lifetime of new messages by priority: emergency (default 1 day).
    pub lifetime_emergency_ms: u64,
    /// Urgent (default 3 days).
    pub lifetime_urgent_ms: u64,
    /// Routine (default 14 days).
    pub lifetime_routine_ms: u64,
    /// How long after a message's expiry a relay keeps carrying its delivery receipt back.
    pub receipt_grace_ms: u64,
    /// Clock skew and lifetime limits for accepting envelopes.
    pub accept: AcceptPolicy,
    /// Events kept for the shell before the oldest are dropped (default 100,000).
    pub max_queued_events: usize,
    /// After a restart, unacknowledged messages received this long before are shown again
    /// (default 24 h; older ones are in the inbox and overdue anyway).
    pub reannounce_window_ms: u64,
    /// Deliberate bugs, for proving that the simulator's invariant checkers can fail. All off by
    /// default; nothing but tests sets them.
    pub injected_bugs: InjectedBugs,
}

/// Deliberate bugs a test can switch on to show that a checker catches them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InjectedBugs {
    /// Treat every delivered envelope as new (no de-duplication on message id).
    pub skip_dedup: bool,
    /// Sign and return the receipt, but write the inbox entry only at the next input, so a crash
    /// in between loses a message whose receipt the sender holds.
    pub receipt_before_store: bool,
    /// Accept envelopes whose signature does not verify.
    pub skip_signature_check: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        const HOUR_MS: u64 = 3600 * 1000;
        CoreConfig {
            retry_base_ms: 1000,
            retry_cap_ms: 60 * 1000,
            relay_after_failures: 2,
            custody_recheck_ms: 60 * 1000,
            max_in_flight_per_peer: 8,
            max_outbox_pending: 10_000,
            relay_max_messages_per_sender: 2_000,
            relay_max_bytes_per_sender: 256 * 1024 * 1024,
            relay_max_bytes_total: 2 * 1024 * 1024 * 1024,
            lifetime_emergency_ms: 24 * HOUR_MS,
            lifetime_urgent_ms: 3 * 24 * HOUR_MS,
            lifetime_routine_ms: 14 * 24 * HOUR_MS,
            receipt_grace_ms: 7 * 24 * HOUR_MS,
            accept: AcceptPolicy::default(),
            max_queued_events: 100_000,
            reannounce_window_ms: 24 * HOUR_MS,
            injected_bugs: InjectedBugs::default(),
        }
    }
}

impl CoreConfig {
    fn lifetime_ms(&self, priority: Priority) -> u64 {
        match priority {
            Priority::Emergency => self.lifetime_emergency_ms,
            Priority::Urgent => self.lifetime_urgent_ms,
            Priority::Routine => self.lifetime_routine_ms,
        }
    }
}

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

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is incomplete or malformed; every problem is listed.
    #[error("the request is not complete:\n{0}")]
    Invalid(ValidationErrors),
    /// No such member.
    #[error("{0} is not in the roster")]
    UnknownRecipient(NodeId),
    /// The member cannot receive requests.
    #[error("{0} cannot receive messages now (membership not valid, or it is a relay)")]
    RecipientUnavailable(NodeId),
    /// Outbox full.
    #[error("the outbox already holds {0} undelivered messages; wait for deliveries or raise max_outbox_pending")]
    OutboxFull(usize),
    /// Sealing failed.
    #[error("cannot seal: {0}")]
    Seal(#[from] envelope::SealError),
    /// Store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The referenced message is not in the inbox.
    #[error("no message {0} in the inbox")]
    NoSuchMessage(MessageId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Outbox(MessageId),
    RelayDeliver(NodeId, MessageId),
    RelayReceipt(NodeId, MessageId),
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Outbox {
        message_id: MessageId,
        via_relay: bool,
    },
    RelayDeliver(NodeId, MessageId),
    RelayReceipt(NodeId, MessageId),
    RosterRequest,
}

#[derive(Debug)]
struct InFlight {
    peer: NodeId,
    items: Vec<Item>,
}

#[derive(Debug, Default, Clone)]
struct PeerState {
    consecutive_failures: u32,
    retry_at: Timestamp,
    in_flight: usize,
    roster_request_pending: bool,
}

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
    /// Builds a core over `store`, reloading any pending work it holds.
    ///
    /// `signed_roster` must be the bytes `roster` was verified from; the caller verifies it
    /// (against the pinned set, or as an update of the stored one) before calling.
    pub fn new(
        identity: Identity,
        roster: Roster,
        signed_roster: Vec<u8>,
        config: CoreConfig,
        store: S,
        rng_seed: [u8; 32],
    ) -> Result<Core<S>, StoreError> {
        let me = identity.node_id();
        let mut core = Core {
            identity,
            me,
            roster,
            signed_roster,
            config,
            store,
            rng: ChaCha20Rng::from_seed(rng_seed),
            outbox: BTreeMap::new(),
            relay: BTreeMap::new(),
            relay_bytes_by_sender: BTreeMap::new(),
            relay_bytes_total: 0,
            due: BTreeSet::new(),
            due_at: BTreeMap::new(),
            blocked: BTreeMap::new(),
            busy: BTreeSet::new(),
            peers: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_request_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            deferred_inbox: Vec::new(),
        };
        if core.store.get_roster()?.as_deref() != Some(core.signed_roster.as_slice()) {
            let bytes = core.signed_roster.clone();
            core.store.put_roster(&bytes)?;
        }
        for entry in core.store.outbox_entries()? {
            if !entry.state.is_final() {
                core.schedule(Job::Outbox(entry.message_id), Timestamp(0), entry.priority);
                core.outbox.insert(entry.message_id, entry);
            }
        }
        for entry in core.store.relay_entries()? {
            let key = (entry.sender, entry.message_id);
            let job = match entry.state {
                RelayState::Holding => Job::RelayDeliver(key.0, key.1),
                RelayState::ReceiptPending { .. } => Job::RelayReceipt(key.0, key.1),
                RelayState::Done | RelayState::Failed { .. } => {
                    // Finished: the store keeps it to answer duplicates; memory holds only work.
                    continue;
                }
            };
            core.account_relay(&entry, true);
            core.schedule(job, Timestamp(0), entry.priority);
            core.relay.insert(key, entry);
        }
        Ok(core)
    }

    /// Shows the officer again (as [`Event::Received`] with `reannounced`) every message that
    /// arrived within `CoreConfig::reannounce_window_ms` before `now` and that no officer has
    /// acknowledged. A message is stored and flushed before its receipt leaves, but its event is
    /// shown after that, so a crash in between would otherwise leave it in the inbox unseen.
    /// Shells call this once after [`Core::new`]; it returns how many it announced.
    pub fn announce_unacknowledged(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        let since = Timestamp(now.0.saturating_sub(self.config.reannounce_window_ms));
        let mut announced = 0;
        for entry in self.store.inbox_entries()? {
            if entry.acknowledged_at.is_some() || entry.received_at < since {
                continue;
            }
            announced += 1;
            self.push_event(Event::Received {
                sender: entry.sender,
                message_id: entry.message_id,
                priority: entry.priority,
                kind: entry.payload.kind(),
                via_relay: entry.via_relay,
                digest: entry.digest,
                reannounced: true,
            });
        }
        Ok(announced)
    }

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

    /// Backoff state of the peers this node has talked to: (peer, consecutive failures, retry at).
    pub fn peer_backoff(&self) -> Vec<(NodeId, u32, Timestamp)> {
        self.peers
            .iter()
            .map(|(peer, state)| (*peer, state.consecutive_failures, state.retry_at))
            .collect()
    }

    /// The peers this node is backing off from (`retry_at` after `now`) while pending work waits
    /// on them, each with the highest priority of that work; emergency first, then the longest
    /// wait. Work waits on a peer when its next attempt may go there: a message's recipient, and
    /// its relays while no relay holds it; a held message's recipient; a carried receipt's
    /// sender. Requests in flight do not count.
    ///
    /// A shell that opens a connection to one of them and reports it with
    /// [`Core::handle_peer_seen`] gets that work retried at once instead of at the end of the
    /// backoff (up to `retry_cap_ms`). The core does no IO: which of these to dial, and how
    /// many at a time, is the shell's choice.
    pub fn peers_awaiting_reconnect(&self, now: Timestamp) -> Vec<(NodeId, Priority)> {
        let mut waiting: BTreeMap<NodeId, Priority> = BTreeMap::new();
        for (job, (_, priority)) in &self.due_at {
            for peer in self.job_peers(job) {
                let backing_off = self
                    .peers
                    .get(&peer)
                    .is_some_and(|state| state.retry_at > now);
                if backing_off {
                    let highest = waiting.entry(peer).or_insert(*priority);
                    *highest = (*highest).max(*priority);
                }
            }
        }
        let mut peers: Vec<(NodeId, Priority)> = waiting.into_iter().collect();
        peers.sort_by_key(|(peer, priority)| {
            let retry_at = self.peers.get(peer).map_or(now, |state| state.retry_at);
            (Reverse(*priority), Reverse(retry_at), *peer)
        });
        peers
    }

    // ----- officer commands -------------------------------------------------------------

    /// Seals and stores a new message for `recipient`. The shell must flush before telling the
    /// officer it was accepted.
    pub fn submit(
        &mut self,
        now: Timestamp,
        recipient: NodeId,
        payload: Payload,
    ) -> Result<MessageId, SubmitError> {
        payload.validate().map_err(SubmitError::Invalid)?;
        self.submit_unvalidated(now, recipient, payload)
    }

    fn submit_unvalidated(
        &mut self,
        now: Timestamp,
        recipient: NodeId,
        payload: Payload,
    ) -> Result<MessageId, SubmitError> {
        let member = self
            .roster
            .member(&recipient)
            .ok_or(SubmitError::UnknownRecipient(recipient))?;
        if member.role == Role::Relay || !member.is_valid_at(now) || recipient == self.me {
            return Err(SubmitError::RecipientUnavailable(recipient));
        }
        if self.outbox.len() >= self.config.max_outbox_pending {
            return Err(SubmitError::OutboxFull(self.outbox.len()));
        }
        let priority = payload.priority();
        let message_id = MessageId::random(&mut self.rng);
        let kind = payload.kind();
        let summary = payload.summary();
        let params = SealParams {
            message_id,
            created_at: now,
            expires_at: now.plus_ms(self.config.lifetime_ms(priority)),
            priority,
        };
        let member = member.clone();
        let sealed = envelope::seal(&self.identity, &member, &payload, params, &mut self.rng)?;
        let bytes = sealed.to_bytes();
        let entry = OutboxEntry {
            message_id,
            recipient,
            priority,
            kind,
            summary,
            payload,
            created_at: now,
            expires_at: params.expires_at,
            digest: digest_bytes(&bytes),
            envelope: bytes,
            state: OutboxState::Accepted,
            attempts: 0,
            direct_failures: 0,
            relay_attempts: 0,
            custody_receipt: None,
            delivery_receipt: None,
            status_history: Vec::new(),
            last_error: None,
        };
        let digest = entry.digest;
        self.store.put_outbox(&entry)?;
        self.outbox.insert(message_id, entry);
        self.schedule(Job::Outbox(message_id), now, priority);
        self.push_event(Event::Accepted {
            message_id,
            recipient,
            priority,
            digest,
            kind,
        });
        Ok(message_id)
    }

    /// Records the officer's acknowledgement of an inbox message and sends the sender an
    /// "acknowledged by officer" status. Returns the id of that status message (None if the
    /// message was already acknowledged).
    pub fn acknowledge(
        &mut self,
        now: Timestamp,
        sender: NodeId,
        message_id: MessageId,
        officer: &str,
    ) -> Result<Option<MessageId>, SubmitError> {
        let entry = self
            .store
            .get_inbox(&sender, &message_id)?
            .ok_or(SubmitError::NoSuchMessage(message_id))?;
        if entry.acknowledged_at.is_some() {
            return Ok(None);
        }
        let status = Status::AcknowledgedByOfficer;
        let reply = self.reply(
            now,
            sender,
            message_id,
            status,
            String::new(),
            officer.to_string(),
        )?;
        let mut entry = self
            .store
            .get_inbox(&sender, &message_id)?
            .ok_or(SubmitError::NoSuchMessage(message_id))?;
        entry.acknowledged_at = Some(now);
        self.store.put_inbox(&entry)?;
        Ok(Some(reply))
    }

    /// Sends a status update about an inbox message back to its sender.
    pub fn reply(
        &mut self,
        now: Timestamp,
        sender: NodeId,
        message_id: MessageId,
        status: Status,
        note: String,
        officer: String,
    ) -> Result<MessageId, SubmitError> {
        let mut entry = self
            .store
            .get_inbox(&sender, &message_id)?
            .ok_or(SubmitError::NoSuchMessage(message_id))?;
        let case_reference = match &entry.payload {
            Payload::Preservation(request) => request.header.case_reference.clone(),
            Payload::TrafficData(request) => request.header.case_reference.clone(),
            Payload::Emergency(request) => request.header.case_reference.clone(),
            Payload::Status(update) => update.case_reference.clone(),
            Payload::FreeText(text) => text.case_reference.clone().unwrap_or_default(),
        };
        let update = StatusUpdate {
            references: message_id,
            case_reference,
            status,
            note,
            officer,
            priority: entry.priority,
        };
        let payload = Payload::Status(update);
        payload.validate().map_err(SubmitError::Invalid)?;
        let reply = self.submit_unvalidated(now, sender, payload)?;
        entry.replies.push(reply);
        self.store.put_inbox(&entry)?;
        Ok(reply)
    }

    // ----- network inputs ---------------------------------------------------------------

    /// A connection to `peer` came up: reset its backoff and make its work due now.
    pub fn handle_peer_seen(&mut self, now: Timestamp, peer: NodeId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.consecutive_failures == 0 && state.retry_at <= now {
            return;
        }
        state.consecutive_failures = 0;
        state.retry_at = now;
        // Everything waiting on this peer becomes due now (a job whose next attempt turns out to
        // go elsewhere just waits again for that peer).
        let jobs: Vec<(Job, Priority)> = self
            .due_at
            .iter()
            .filter(|(job, _)| self.job_peers(job).contains(&peer))
            .map(|(job, (_, priority))| (*job, *priority))
            .collect();
        for (job, priority) in jobs {
            self.schedule(job, now, priority);
        }
    }

    /// Handles a request batch from `from` (a roster member, authenticated by the transport).
    /// Returns the response bytes, which the shell sends only after flushing the store.
    pub fn handle_request(&mut self, now: Timestamp, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        self.write_deferred();
        let batch = match Batch::from_bytes(bytes) {
            Ok(batch) => batch,
            Err(error) => {
                self.push_event(Event::InboundRejected {
                    from,
                    reason: error.to_string(),
                });
                return self.response(vec![Frame::refused(
                    MessageId([0; 16]),
                    true,
                    error.to_string(),
                )]);
            }
        };
        self.handle_peer_seen(now, from);
        self.note_roster_serial(from, batch.roster_serial);
        let answers = batch
            .frames
            .into_iter()
            .map(|frame| self.handle_frame(now, from, frame))
            .collect();
        self.response(answers)
    }

    /// Handles the response to request `request_id`.
    pub fn handle_response(&mut self, now: Timestamp, request_id: u64, bytes: &[u8]) {
        let Some(flight) = self.in_flight.remove(&request_id) else {
            return;
        };
        self.request_finished(now, flight.peer);
        let answers = match Batch::from_bytes(bytes) {
            Ok(batch) => {
                self.note_roster_serial(flight.peer, batch.roster_serial);
                batch.frames
            }
            Err(error) => {
                self.push_event(Event::InboundRejected {
                    from: flight.peer,
                    reason: format!("bad response: {error}"),
                });
                Vec::new()
            }
        };
        if !answers.is_empty() {
            self.peer_succeeded(now, flight.peer);
        } else {
            self.peer_failed(now, flight.peer);
        }
        let mut answers = answers.into_iter();
        for item in flight.items {
            match answers.next() {
                Some(answer) => self.handle_answer(now, flight.peer, item, answer),
                None => self.item_failed(now, flight.peer, item, "no answer from peer".into()),
            }
        }
    }

    /// Request `request_id` failed (timeout, connection refused or closed).
    pub fn handle_request_failed(&mut self, now: Timestamp, request_id: u64, reason: &str) {
        let Some(flight) = self.in_flight.remove(&request_id) else {
            return;
        };
        self.request_finished(now, flight.peer);
        self.peer_failed(now, flight.peer);
        for item in flight.items {
            self.item_failed(now, flight.peer, item, reason.to_string());
        }
    }

    /// Advances time: expires what is overdue and transmits what is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.write_deferred();
        let mut ready: Vec<(Reverse<Priority>, Timestamp, Job)> = Vec::new();
        while let Some(&(at, priority, job)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            self.due_at.remove(&job);
            ready.push((priority, at, job));
        }
        // Highest priority first; within a priority, oldest first.
        ready.sort();
        let mut per_peer: BTreeMap<NodeId, Vec<(Job, Frame, Item, usize)>> = BTreeMap::new();
        let mut order: Vec<NodeId> = Vec::new();
        for (Reverse(priority), _, job) in ready {
            let Some((peer, frame, item, size)) = self.prepare(now, job) else {
                continue;
            };
            let _ = priority;
            if !per_peer.contains_key(&peer) {
                order.push(peer);
            }
            per_peer
                .entry(peer)
                .or_default()
                .push((job, frame, item, size));
        }
        for peer in order {
            let Some(work) = per_peer.remove(&peer) else {
                continue;
            };
            let mut work = work.into_iter().peekable();
            while work.peek().is_some() {
                let in_flight = self.peers.get(&peer).map_or(0, |state| state.in_flight);
                if in_flight >= self.config.max_in_flight_per_peer {
                    // Park the rest until a request to this peer completes.
                    for (job, _, _, _) in work.by_ref() {
                        let priority = self.job_priority(&job);
                        self.blocked
                            .entry(peer)
                            .or_default()
                            .insert((Reverse(priority), job));
                    }
                    break;
                }
                let mut frames = Vec::new();
                let mut items = Vec::new();
                let mut bytes = 0usize;
                while let Some((_, _, _, size)) = work.peek() {
                    if frames.len() >= MAX_FRAMES_PER_BATCH
                        || (!frames.is_empty()
                            && (bytes + size) as u64 > MAX_BATCH_BYTES - 64 * 1024)
                    {
                        break;
                    }
                    let Some((job, frame, item, size)) = work.next() else {
                        break;
                    };
                    self.busy.insert(job);
                    bytes += size;
                    frames.push(frame);
                    items.push(item);
                }
                self.send(peer, frames, items);
            }
        }
    }

    /// The live entry of an unfinished outgoing message. It can be ahead of the store's copy,
    /// which is not rewritten for a first transmission (see `prepare_outbox`).
    pub fn unfinished_outbox(&self, message_id: &MessageId) -> Option<&OutboxEntry> {
        self.outbox.get(message_id)
    }

    /// Next transmission for the shell.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the shell.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.due.first().map(|(at, _, _)| *at)
    }

    // ----- internals ---------------------------------------------------------------------

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

    fn schedule(&mut self, job: Job, at: Timestamp, priority: Priority) {
        if let Some((old_at, old_priority)) = self.due_at.remove(&job) {
            self.due.remove(&(old_at, Reverse(old_priority), job));
        }
        self.due.insert((at, Reverse(priority), job));
        self.due_at.insert(job, (at, priority));
    }

    fn unschedule(&mut self, job: Job) {
        if let Some((at, priority)) = self.due_at.remove(&job) {
            self.due.remove(&(at, Reverse(priority), job));
        }
    }

    fn job_priority(&self, job: &Job) -> Priority {
        match job {
            Job::Outbox(id) => self
                .outbox
                .get(id)
                .map_or(Priority::Routine, |entry| entry.priority),
            Job::RelayDeliver(sender, id) | Job::RelayReceipt(sender, id) => self
                .relay
                .get(&(*sender, *id))
                .map_or(Priority::Routine, |entry| entry.priority),
        }
    }

    /// The peers a job's next attempt may go to (see `prepare_outbox` for the choice): the
    /// recipient and, until a relay has custody, the recipient's relays; once in custody, the
    /// recipient if it can be dialled, else the custody relay.
    fn job_peers(&self, job: &Job) -> Vec<NodeId> {
        match job {
            Job::Outbox(id) => {
                let Some(entry) = self.outbox.get(id) else {
                    return Vec::new();
                };
                let member = self.roster.member(&entry.recipient);
                let direct_possible = member.is_some_and(|member| !member.addresses.is_empty());
                match entry.state {
                    OutboxState::Custody { relay, .. } if !direct_possible => vec![relay],
                    OutboxState::Custody { .. } => vec![entry.recipient],
                    _ => {
                        let mut peers = vec![entry.recipient];
                        if let Some(member) = member {
                            peers.extend(member.relays.iter().filter(|relay| **relay != self.me));
                        }
                        peers
                    }
                }
            }
            Job::RelayDeliver(sender, id) => self
                .relay
                .get(&(*sender, *id))
                .map(|entry| vec![entry.recipient])
                .unwrap_or_default(),
            Job::RelayReceipt(sender, _) => vec![*sender],
        }
    }

    fn backing_off(&self, now: Timestamp, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|state| state.retry_at > now)
    }

    fn backoff_ms(&mut self, failures: u32) -> u64 {
        let exponent = failures.saturating_sub(1).min(20);
        let full = self
            .config
            .retry_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.config.retry_cap_ms)
            .max(1);
        // Jitter in [full/2, full]: peers that failed together do not retry together.
        full / 2 + self.rng.random_range(0..=full / 2)
    }

    fn peer_failed(&mut self, now: Timestamp, peer: NodeId) {
        let failures = {
            let state = self.peers.entry(peer).or_default();
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.consecutive_failures
        };
        let delay = self.backoff_ms(failures);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.retry_at = now.plus_ms(delay);
        }
    }

    fn peer_succeeded(&mut self, now: Timestamp, peer: NodeId) {
        self.handle_peer_seen(now, peer);
    }

    fn request_finished(&mut self, now: Timestamp, peer: NodeId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        if let Some(parked) = self.blocked.remove(&peer) {
            for (Reverse(priority), job) in parked {
                if !self.busy.contains(&job) {
                    self.schedule(job, now, priority);
                }
            }
        }
    }

    fn send(&mut self, peer: NodeId, frames: Vec<Frame>, items: Vec<Item>) {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let bytes = match Batch::new(self.roster.serial, frames).to_bytes() {
            Ok(bytes) => bytes,
            Err(error) => {
                // Cannot happen with the size accounting above; never lose the work if it does.
                self.push_event(Event::StoreFailed {
                    reason: format!("cannot encode batch: {error}"),
                });
                for item in items {
                    self.release(item);
                }
                return;
            }
        };
        self.peers.entry(peer).or_default().in_flight += 1;
        self.in_flight.insert(request_id, InFlight { peer, items });
        self.transmits.push_back(Transmit {
            request_id,
            to: peer,
            bytes,
        });
    }

    fn release(&mut self, item: Item) {
        let job = match item {
            Item::Outbox { message_id, .. } => Job::Outbox(message_id),
            Item::RelayDeliver(sender, id) => Job::RelayDeliver(sender, id),
            Item::RelayReceipt(sender, id) => Job::RelayReceipt(sender, id),
            Item::RosterRequest => return,
        };
        self.busy.remove(&job);
        let priority = self.job_priority(&job);
        self.schedule(job, Timestamp(0), priority);
    }

    /// Builds the frame for a due job, or finishes the job (expiry) and returns None.
    fn prepare(&mut self, now: Timestamp, job: Job) -> Option<(NodeId, Frame, Item, usize)> {
        if self.busy.contains(&job) {
            return None;
        }
        match job {
            Job::Outbox(message_id) => self.prepare_outbox(now, message_id),
            Job::RelayDeliver(sender, message_id) => {
                let entry = self.relay.get(&(sender, message_id))?;
                if now >= entry.expires_at {
                    self.relay_fail(
                        sender,
                        message_id,
                        "expired before the recipient could be reached".into(),
                    );
                    return None;
                }
                let (recipient, priority, deadline) =
                    (entry.recipient, entry.priority, entry.expires_at);
                if self.wait_for_peer(now, recipient, job, priority, deadline) {
                    return None;
                }
                let entry = self.relay.get(&(sender, message_id))?;
                let envelope = Envelope::from_bytes(entry.envelope.as_ref()?).ok()?;
                let size = entry.held_bytes() as usize;
                Some((
                    entry.recipient,
                    Frame::Deliver(envelope),
                    Item::RelayDeliver(sender, message_id),
                    size,
                ))
            }
            Job::RelayReceipt(sender, message_id) => {
                let entry = self.relay.get(&(sender, message_id))?;
                if now >= entry.expires_at.plus_ms(self.config.receipt_grace_ms) {
                    self.relay_fail(
                        sender,
                        message_id,
                        "sender unreachable until the receipt grace period ended".into(),
                    );
                    return None;
                }
                let priority = entry.priority;
                let deadline = entry.expires_at.plus_ms(self.config.receipt_grace_ms);
                if self.wait_for_peer(now, sender, job, priority, deadline) {
                    return None;
                }
                let entry = self.relay.get(&(sender, message_id))?;
                let RelayState::ReceiptPending { receipt } = &entry.state else {
                    return None;
                };
                Some((
                    sender,
                    Frame::Receipt(receipt.clone()),
                    Item::RelayReceipt(sender, message_id),
                    256,
                ))
            }
        }
    }

    fn prepare_outbox(
        &mut self,
        now: Timestamp,
        message_id: MessageId,
    ) -> Option<(NodeId, Frame, Item, usize)> {
        let entry = self.outbox.get(&message_id)?;
        if now >= entry.expires_at {
            self.finish_outbox(message_id, OutboxState::Expired { at: now });
            return None;
        }
        let recipient = self.roster.member(&entry.recipient)?;
        let relays: Vec<NodeId> = recipient
            .relays
            .iter()
            .copied()
            .filter(|relay| *relay != self.me && self.roster.member(relay).is_some())
            .collect();
        let direct_possible = !recipient.addresses.is_empty();
        let in_custody = matches!(entry.state, OutboxState::Custody { .. });
        let mut use_relay = !in_custody
            && !relays.is_empty()
            && (!direct_possible || entry.direct_failures >= self.config.relay_after_failures)
            // Alternate with direct attempts so a recipient that comes back is reached directly.
            && (!direct_possible || entry.relay_attempts <= entry.direct_failures.saturating_sub(self.config.relay_after_failures));
        if use_relay && direct_possible {
            // The relay's turn, but the relay is backing off and the recipient is not (it was
            // just seen, or its backoff ended first): go direct rather than wait for the relay.
            let relay = relays[(entry.relay_attempts as usize) % relays.len()];
            if self.backing_off(now, relay) && !self.backing_off(now, entry.recipient) {
                use_relay = false;
            }
        }
        let envelope = Envelope::from_bytes(&entry.envelope).ok()?;
        let size = entry.envelope.len();
        let (peer, frame, via_relay) = if use_relay {
            let relay = relays[(entry.relay_attempts as usize) % relays.len()];
            (relay, Frame::Handoff(envelope), true)
        } else if direct_possible {
            (entry.recipient, Frame::Deliver(envelope), false)
        } else if let OutboxState::Custody { relay, .. } = entry.state {
            // Relay-only recipient already in custody: ask the relay again. It answers a repeated
            // hand-off with the delivery receipt once it has one, which is how a sender that
            // nobody can dial (and whose own relays differ from the recipient's) learns of it.
            (relay, Frame::Handoff(envelope), true)
        } else {
            // Relay-only recipient without usable relays: keep checking until expiry.
            let at = now
                .plus_ms(self.config.custody_recheck_ms)
                .min(entry.expires_at);
            let priority = entry.priority;
            self.schedule(Job::Outbox(message_id), at, priority);
            return None;
        };
        let (priority, deadline) = (entry.priority, entry.expires_at);
        if self.wait_for_peer(now, peer, Job::Outbox(message_id), priority, deadline) {
            return None;
        }
        let entry = self.outbox.get_mut(&message_id)?;
        entry.attempts += 1;
        if via_relay {
            entry.relay_attempts += 1;
        }
        if entry.state == OutboxState::Accepted {
            // Not written to the store: on the usual path the delivery receipt follows within
            // milliseconds and its write records the outcome, and a failed attempt writes the
            // entry (state, attempts, error) in `item_failed`. After a crash an entry still
            // "accepted" is transmitted again, which is what "sent" would have led to as well.
            // [`Core::unfinished_outbox`] shows the live state meanwhile.
            entry.state = OutboxState::Sent;
            let digest = entry.digest;
            self.push_event(Event::Sent {
                message_id,
                to: peer,
                via_relay,
                digest,
            });
        }
        Some((
            peer,
            frame,
            Item::Outbox {
                message_id,
                via_relay,
            },
            size,
        ))
    }

    /// If `peer` is backing off, reschedules `job` for when it may be tried and returns true.
    /// `deadline` caps the wait so that expiry is noticed on time.
    fn wait_for_peer(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        job: Job,
        priority: Priority,
        deadline: Timestamp,
    ) -> bool {
        let retry_at = self.peers.get(&peer).map_or(now, |state| state.retry_at);
        if retry_at > now {
            self.schedule(job, retry_at.min(deadline), priority);
            true
        } else {
            false
        }
    }

    /// Delay before retrying a job whose peer answered but refused for now (so a peer that
    /// keeps saying "later" is not hammered).
    fn refusal_delay(&mut self, attempts: u32) -> u64 {
        self.backoff_ms(attempts.clamp(1, 30))
    }

    fn finish_outbox(&mut self, message_id: MessageId, state: OutboxState) {
        let Some(mut entry) = self.outbox.remove(&message_id) else {
            return;
        };
        self.unschedule(Job::Outbox(message_id));
        self.busy.remove(&Job::Outbox(message_id));
        let event = match &state {
            OutboxState::Expired { .. } => Some(Event::Expired {
                message_id,
                recipient: entry.recipient,
                priority: entry.priority,
                digest: entry.digest,
            }),
            _ => None,
        };
        entry.state = state;
        if let Err(error) = self.store.put_outbox(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        if let Some(event) = event {
            self.push_event(event);
        }
    }

    fn relay_fail(&mut self, sender: NodeId, message_id: MessageId, reason: String) {
        let key = (sender, message_id);
        self.unschedule(Job::RelayDeliver(sender, message_id));
        self.unschedule(Job::RelayReceipt(sender, message_id));
        let Some(entry) = self.relay.get(&key).cloned() else {
            return;
        };
        self.account_relay(&entry, false);
        let mut entry = entry;
        entry.envelope = None;
        entry.state = RelayState::Failed {
            reason: reason.clone(),
        };
        if let Err(error) = self.store.put_relay(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        self.push_event(Event::RelayFailed {
            sender,
            recipient: entry.recipient,
            message_id,
            reason,
        });
        self.relay.remove(&key);
    }

    fn account_relay(&mut self, entry: &RelayEntry, add: bool) {
        let bytes = entry.held_bytes();
        let counts = self.relay_bytes_by_sender.entry(entry.sender).or_default();
        if add {
            counts.0 += 1;
            counts.1 += bytes;
            self.relay_bytes_total += bytes;
        } else {
            counts.0 = counts.0.saturating_sub(1);
            counts.1 = counts.1.saturating_sub(bytes);
            self.relay_bytes_total = self.relay_bytes_total.saturating_sub(bytes);
        }
    }

    fn note_roster_serial(&mut self, peer: NodeId, serial: u64) {
        if serial <= self.roster.serial {
            return;
        }
        let state = self.peers.entry(peer).or_default();
        if state.roster_request_pending || state.in_flight >= self.config.max_in_flight_per_peer {
            return;
        }
        state.roster_request_pending = true;
        self.send(peer, vec![Frame::RosterRequest], vec![Item::RosterRequest]);
    }

    fn item_failed(&mut self, now: Timestamp, peer: NodeId, item: Item, reason: String) {
        match item {
            Item::Outbox {
                message_id,
                via_relay,
            } => {
                self.busy.remove(&Job::Outbox(message_id));
                let peer_backing_off = self
                    .peers
                    .get(&peer)
                    .is_some_and(|state| state.retry_at > now);
                let custody_recheck_ms = self.config.custody_recheck_ms;
                let Some(entry) = self.outbox.get_mut(&message_id) else {
                    return;
                };
                entry.last_error = Some(format!("{peer}: {reason}"));
                if !via_relay {
                    entry.direct_failures += 1;
                }
                let (priority, attempts, expires_at) =
                    (entry.priority, entry.attempts, entry.expires_at);
                let in_custody = matches!(entry.state, OutboxState::Custody { .. });
                // Persist the attempt count and last error so `outbox`/`show` tell the truth.
                let snapshot = entry.clone();
                if let Err(error) = self.store.put_outbox(&snapshot) {
                    self.push_event(Event::StoreFailed {
                        reason: error.to_string(),
                    });
                }
                // `prepare_outbox` picks the next target (recipient or relay) and waits out that
                // target's backoff; a peer that answered "not now" gets a per-message delay.
                let at = if in_custody {
                    now.plus_ms(custody_recheck_ms)
                } else if peer_backing_off {
                    now
                } else {
                    now.plus_ms(self.refusal_delay(attempts))
                };
                self.schedule(Job::Outbox(message_id), at.min(expires_at), priority);
            }
            Item::RelayDeliver(sender, message_id) | Item::RelayReceipt(sender, message_id) => {
                let job = match item {
                    Item::RelayDeliver(..) => Job::RelayDeliver(sender, message_id),
                    _ => Job::RelayReceipt(sender, message_id),
                };
                self.busy.remove(&job);
                let retry_at = self.peers.get(&peer).map_or(now, |state| state.retry_at);
                let retry_base_ms = self.config.retry_base_ms;
                if let Some(entry) = self.relay.get(&(sender, message_id)) {
                    let priority = entry.priority;
                    self.schedule(job, retry_at.max(now.plus_ms(retry_base_ms)), priority);
                }
            }
            Item::RosterRequest => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.roster_request_pending = false;
                }
            }
        }
    }

    fn handle_answer(&mut self, now: Timestamp, peer: NodeId, item: Item, answer: Frame) {
        match (item, answer) {
            (Item::Outbox { message_id, .. }, Frame::Receipt(receipt)) => {
                self.outbox_receipt(now, peer, message_id, receipt);
            }
            (
                Item::Outbox {
                    message_id,
                    via_relay,
                },
                Frame::Refused {
                    permanent, reason, ..
                },
            ) => {
                let outbox = self
                    .outbox
                    .get(&message_id)
                    .map(|entry| (entry.recipient, entry.digest, entry.expires_at));
                if let Some((recipient, digest, expires_at)) =
                    outbox.filter(|(recipient, _, _)| permanent && !via_relay && *recipient == peer)
                {
                    self.busy.remove(&Job::Outbox(message_id));
                    if now >= expires_at {
                        // Sent just before its end and refused as expired on arrival: that is an
                        // expiry, and the officer must hear "expired, use the phone", not that
                        // the recipient refused the request.
                        self.finish_outbox(message_id, OutboxState::Expired { at: now });
                        return;
                    }
                    self.finish_outbox(
                        message_id,
                        OutboxState::Rejected {
                            at: now,
                            reason: reason.clone(),
                        },
                    );
                    self.push_event(Event::Rejected {
                        message_id,
                        by: recipient,
                        reason,
                        digest,
                    });
                } else {
                    self.item_failed(now, peer, item, reason);
                }
            }
            (Item::RelayDeliver(sender, message_id), Frame::Receipt(receipt)) => {
                self.busy.remove(&Job::RelayDeliver(sender, message_id));
                self.relay_delivered(now, peer, sender, message_id, receipt);
            }
            (
                Item::RelayDeliver(sender, message_id),
                Frame::Refused {
                    permanent: true,
                    reason,
                    ..
                },
            ) => {
                self.busy.remove(&Job::RelayDeliver(sender, message_id));
                self.relay_fail(sender, message_id, format!("recipient refused: {reason}"));
            }
            (Item::RelayReceipt(sender, message_id), Frame::Ack(acked)) if acked == message_id => {
                self.busy.remove(&Job::RelayReceipt(sender, message_id));
                if let Some(entry) = self.relay.get(&(sender, message_id)).cloned() {
                    let mut entry = entry;
                    entry.state = RelayState::Done;
                    if let Err(error) = self.store.put_relay(&entry) {
                        self.push_event(Event::StoreFailed {
                            reason: error.to_string(),
                        });
                    }
                    self.relay.remove(&(sender, message_id));
                }
            }
            (Item::RosterRequest, Frame::Roster(bytes)) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.roster_request_pending = false;
                }
                self.offered_roster(now, peer, &bytes);
            }
            (
                Item::RelayReceipt(sender, message_id),
                Frame::Refused {
                    permanent: true,
                    reason,
                    ..
                },
            ) => {
                self.busy.remove(&Job::RelayReceipt(sender, message_id));
                self.relay_fail(
                    sender,
                    message_id,
                    format!("sender refused the receipt: {reason}"),
                );
            }
            (item, other) => {
                let reason = match other {
                    Frame::Refused { reason, .. } => reason,
                    other => format!("unexpected answer {}", frame_name(&other)),
                };
                self.item_failed(now, peer, item, reason);
            }
        }
    }

    fn outbox_receipt(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        message_id: MessageId,
        receipt: Receipt,
    ) {
        self.busy.remove(&Job::Outbox(message_id));
        let Some(entry) = self.outbox.get(&message_id).cloned().or_else(|| {
            // A late delivery receipt for a message that already expired still counts.
            self.store.get_outbox(&message_id).ok().flatten()
        }) else {
            return;
        };
        if let Err(error) = receipt.verify_for(
            &self.roster,
            &message_id,
            &self.me,
            &entry.recipient,
            &entry.digest,
        ) {
            self.push_event(Event::ReceiptRejected {
                message_id,
                from: peer,
                reason: error.to_string(),
            });
            if self.outbox.contains_key(&message_id) {
                let priority = entry.priority;
                let at = now.plus_ms(self.config.retry_base_ms);
                self.schedule(Job::Outbox(message_id), at, priority);
            }
            return;
        }
        match receipt.body.kind {
            ReceiptKind::Delivered => {
                self.mark_delivered(now, entry, receipt);
            }
            ReceiptKind::Custody => {
                let Some(live) = self.outbox.get_mut(&message_id) else {
                    return;
                };
                let priority = live.priority;
                if live.custody_receipt.is_none() {
                    live.state = OutboxState::Custody {
                        relay: receipt.body.signer,
                        at: receipt.body.received_at,
                    };
                    live.custody_receipt = Some(receipt.clone());
                    let snapshot = live.clone();
                    if let Err(error) = self.store.put_outbox(&snapshot) {
                        self.push_event(Event::StoreFailed {
                            reason: error.to_string(),
                        });
                    }
                    self.push_event(Event::Custody {
                        message_id,
                        relay: receipt.body.signer,
                        digest: snapshot.digest,
                    });
                }
                let at = now
                    .plus_ms(self.config.custody_recheck_ms)
                    .min(snapshot_expiry(&self.outbox, &message_id));
                self.schedule(Job::Outbox(message_id), at, priority);
            }
        }
    }

    /// Records a verified delivery receipt (once; a late one after expiry still counts).
    fn mark_delivered(&mut self, now: Timestamp, mut entry: OutboxEntry, receipt: Receipt) {
        if matches!(entry.state, OutboxState::Delivered { .. }) {
            return;
        }
        let message_id = entry.message_id;
        let received_at = receipt.body.received_at;
        entry.delivery_receipt = Some(receipt);
        let (recipient, created_at, digest) = (entry.recipient, entry.created_at, entry.digest);
        self.outbox.insert(message_id, entry);
        self.finish_outbox(message_id, OutboxState::Delivered { at: received_at });
        self.push_event(Event::Delivered {
            message_id,
            recipient,
            received_at,
            latency_ms: now.millis_since(created_at),
            digest,
        });
    }

    fn relay_delivered(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        sender: NodeId,
        message_id: MessageId,
        receipt: Receipt,
    ) {
        let key = (sender, message_id);
        let Some(entry) = self.relay.get(&key).cloned() else {
            return;
        };
        let checked = if receipt.body.kind == ReceiptKind::Delivered {
            receipt.verify_for(
                &self.roster,
                &message_id,
                &sender,
                &entry.recipient,
                &entry.digest,
            )
        } else {
            Err(crate::receipt::ReceiptError::Mismatch)
        };
        if let Err(error) = checked {
            self.push_event(Event::ReceiptRejected {
                message_id,
                from: peer,
                reason: error.to_string(),
            });
            let at = now.plus_ms(self.config.retry_base_ms);
            self.schedule(Job::RelayDeliver(sender, message_id), at, entry.priority);
            return;
        }
        self.account_relay(&entry, false);
        let mut entry = entry;
        entry.envelope = None;
        entry.state = RelayState::ReceiptPending { receipt };
        if let Err(error) = self.store.put_relay(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        self.push_event(Event::RelayDelivered {
            sender,
            recipient: entry.recipient,
            message_id,
        });
        let priority = entry.priority;
        self.relay.insert(key, entry);
        self.schedule(Job::RelayReceipt(sender, message_id), now, priority);
    }

    fn offered_roster(&mut self, now: Timestamp, peer: NodeId, bytes: &[u8]) {
        let result = SignedRoster::from_bytes(bytes)
            .and_then(|signed| signed.verify_update(&self.roster, now));
        match result {
            Ok(roster) => {
                let serial = roster.serial;
                self.roster = roster;
                self.signed_roster = bytes.to_vec();
                if let Err(error) = self.store.put_roster(bytes) {
                    self.push_event(Event::StoreFailed {
                        reason: error.to_string(),
                    });
                }
                self.push_event(Event::RosterUpdated { serial });
            }
            Err(error) => self.push_event(Event::RosterRejected {
                from: peer,
                reason: error.to_string(),
            }),
        }
    }

    fn handle_frame(&mut self, now: Timestamp, from: NodeId, frame: Frame) -> Frame {
        match frame {
            Frame::Deliver(envelope) => self.receive_envelope(now, from, envelope),
            Frame::Handoff(envelope) => self.take_custody(now, from, envelope),
            Frame::Receipt(receipt) => self.receive_forwarded_receipt(now, from, receipt),
            Frame::RosterRequest => Frame::Roster(self.signed_roster.clone()),
            Frame::Ack(_) | Frame::Refused { .. } | Frame::Roster(_) | Frame::Ignored => {
                Frame::Ignored
            }
        }
    }

    fn reject_inbound(&mut self, from: NodeId, message_id: MessageId, error: &OpenError) -> Frame {
        self.push_event(Event::InboundRejected {
            from,
            reason: format!("message {message_id}: {error}"),
        });
        Frame::refused(message_id, error.is_permanent(), error.to_string())
    }

    fn receive_envelope(&mut self, now: Timestamp, from: NodeId, envelope: Envelope) -> Frame {
        let header = envelope.header.clone();
        let bytes = envelope.to_bytes();
        if bytes.is_empty() || bytes.len() as u64 > envelope::MAX_ENVELOPE_BYTES {
            return Frame::refused(
                header.message_id,
                true,
                "envelope larger than the protocol limit",
            );
        }
        let digest = digest_bytes(&bytes);
        let existing = if self.config.injected_bugs.skip_dedup {
            Ok(None)
        } else {
            self.store.get_inbox(&header.sender, &header.message_id)
        };
        match existing {
            Ok(Some(existing)) => {
                if existing.digest == digest {
                    // A retry or a second path: answer with the original receipt, store nothing.
                    return Frame::Receipt(existing.receipt);
                }
                return self.reject_inbound(
                    from,
                    header.message_id,
                    &OpenError::Malformed(quickfreeze_keys::codec::CodecError::Malformed(
                        "message id reused with different content".into(),
                    )),
                );
            }
            Ok(None) => {}
            Err(error) => return self.store_failed(header.message_id, error),
        }
        let opened = envelope::open(
            &self.identity,
            &self.roster,
            &envelope,
            now,
            &self.config.accept,
        );
        let payload = match opened {
            Ok((_, payload)) => payload,
            Err(OpenError::BadSignature(_)) if self.config.injected_bugs.skip_signature_check => {
                let Ok((_, plaintext)) = envelope::open_bytes_unverified(&self.identity, &envelope)
                else {
                    return Frame::refused(header.message_id, true, "does not decrypt");
                };
                match Payload::from_bytes(&plaintext) {
                    Ok(payload) => payload,
                    Err(_) => return Frame::refused(header.message_id, true, "payload malformed"),
                }
            }
            Err(error) => return self.reject_inbound(from, header.message_id, &error),
        };
        // The sender's node validated it on submit; a payload that fails here is a broken or
        // hostile peer, and storing it would put something in the inbox the console cannot show.
        if let Err(errors) = payload.validate() {
            let reason = format!(
                "the request fails validation: {}",
                errors.to_string().replace('\n', "; ")
            );
            self.push_event(Event::InboundRejected {
                from,
                reason: reason.clone(),
            });
            return Frame::refused(header.message_id, true, reason);
        }
        let via_relay = (from != header.sender).then_some(from);
        let receipt = Receipt::sign(
            &self.identity,
            ReceiptBody {
                message_id: header.message_id,
                envelope_digest: digest,
                sender: header.sender,
                recipient: self.me,
                signer: self.me,
                received_at: now,
                kind: ReceiptKind::Delivered,
            },
        );
        let kind = payload.kind();
        let status_update = match &payload {
            Payload::Status(update) => Some(update.clone()),
            _ => None,
        };
        let entry = InboxEntry {
            sender: header.sender,
            message_id: header.message_id,
            priority: header.priority,
            received_at: now,
            created_at: header.created_at,
            via_relay,
            envelope: bytes,
            digest,
            payload,
            receipt: receipt.clone(),
            acknowledged_at: None,
            replies: Vec::new(),
        };
        if self.config.injected_bugs.receipt_before_store {
            self.deferred_inbox.push(entry);
        } else if let Err(error) = self.store.put_inbox(&entry) {
            return self.store_failed(header.message_id, error);
        }
        self.push_event(Event::Received {
            sender: header.sender,
            message_id: header.message_id,
            priority: header.priority,
            kind,
            via_relay,
            digest,
            reannounced: false,
        });
        if let Some(update) = status_update {
            self.record_status(now, header.sender, header.message_id, update);
        }
        Frame::Receipt(receipt)
    }

    fn record_status(
        &mut self,
        now: Timestamp,
        from: NodeId,
        carrier: MessageId,
        update: StatusUpdate,
    ) {
        let references = update.references;
        let entry = self
            .outbox
            .get(&references)
            .cloned()
            .or_else(|| self.store.get_outbox(&references).ok().flatten());
        let Some(mut entry) = entry else {
            return;
        };
        // Only the recipient of our message may report on it.
        if entry.recipient != from {
            return;
        }
        let status = update.status.clone();
        entry.status_history.push(StatusRecord {
            received_at: now,
            message_id: carrier,
            update,
        });
        if let Err(error) = self.store.put_outbox(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
            return;
        }
        if let Some(live) = self.outbox.get_mut(&references) {
            live.status_history = entry.status_history.clone();
        }
        self.push_event(Event::StatusReceived {
            references,
            from,
            status,
        });
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

    fn take_custody(&mut self, now: Timestamp, from: NodeId, envelope: Envelope) -> Frame {
        let header = envelope.header.clone();
        let my_role = self.roster.member(&self.me).map(|member| member.role);
        if my_role != Some(Role::Relay) {
            return Frame::refused(header.message_id, true, "this node is not a relay");
        }
        if let Err(error) =
            envelope::verify_outer(&self.roster, &envelope, now, &self.config.accept)
        {
            return self.reject_inbound(from, header.message_id, &error);
        }
        if from != header.sender {
            return Frame::refused(
                header.message_id,
                true,
                "only the sender may hand an envelope to a relay",
            );
        }
        let serves = self
            .roster
            .member(&header.recipient)
            .is_some_and(|member| member.relays.contains(&self.me));
        if !serves {
            return Frame::refused(
                header.message_id,
                true,
                "this relay does not hold mail for that recipient",
            );
        }
        let key = (header.sender, header.message_id);
        let bytes = envelope.to_bytes();
        if bytes.is_empty() || bytes.len() as u64 > envelope::MAX_ENVELOPE_BYTES {
            return Frame::refused(
                header.message_id,
                true,
                "envelope larger than the protocol limit",
            );
        }
        let digest = digest_bytes(&bytes);
        let existing = match self.relay.get(&key) {
            Some(entry) => Some(entry.clone()),
            None => match self.store.get_relay(&key.0, &key.1) {
                Ok(entry) => entry,
                Err(error) => return self.store_failed(header.message_id, error),
            },
        };
        if let Some(existing) = existing {
            if existing.digest == digest {
                return match existing.state {
                    RelayState::ReceiptPending { receipt } => {
                        // The sender is asking again, so it is reachable now: hand it the
                        // recipient's receipt in the answer and push it again as well.
                        self.schedule(Job::RelayReceipt(key.0, key.1), now, existing.priority);
                        Frame::Receipt(receipt)
                    }
                    _ => Frame::Receipt(existing.custody_receipt),
                };
            }
            return Frame::refused(
                header.message_id,
                true,
                "message id reused with different content",
            );
        }
        let (count, held) = self
            .relay_bytes_by_sender
            .get(&header.sender)
            .copied()
            .unwrap_or_default();
        let size = bytes.len() as u64;
        if count >= self.config.relay_max_messages_per_sender
            || held + size > self.config.relay_max_bytes_per_sender
            || self.relay_bytes_total + size > self.config.relay_max_bytes_total
        {
            self.push_event(Event::InboundRejected {
                from,
                reason: format!("relay storage limit reached for sender {}", header.sender),
            });
            return Frame::refused(
                header.message_id,
                false,
                "relay storage limit reached; retry later",
            );
        }
        let custody_receipt = Receipt::sign(
            &self.identity,
            ReceiptBody {
                message_id: header.message_id,
                envelope_digest: digest,
                sender: header.sender,
                recipient: header.recipient,
                signer: self.me,
                received_at: now,
                kind: ReceiptKind::Custody,
            },
        );
        let entry = RelayEntry {
            sender: header.sender,
            message_id: header.message_id,
            recipient: header.recipient,
            priority: header.priority,
            received_at: now,
            expires_at: header.expires_at,
            envelope: Some(bytes),
            digest,
            custody_receipt: custody_receipt.clone(),
            state: RelayState::Holding,
        };
        if let Err(error) = self.store.put_relay(&entry) {
            return self.store_failed(header.message_id, error);
        }
        self.account_relay(&entry, true);
        self.relay.insert(key, entry);
        self.schedule(Job::RelayDeliver(key.0, key.1), now, header.priority);
        self.push_event(Event::RelayHolding {
            sender: header.sender,
            recipient: header.recipient,
            message_id: header.message_id,
        });
        Frame::Receipt(custody_receipt)
    }

    fn receive_forwarded_receipt(
        &mut self,
        now: Timestamp,
        from: NodeId,
        receipt: Receipt,
    ) -> Frame {
        let message_id = receipt.body.message_id;
        if receipt.body.sender != self.me || receipt.body.kind != ReceiptKind::Delivered {
            return Frame::refused(
                message_id,
                true,
                "receipt is not for a message this node sent",
            );
        }
        let entry = self
            .outbox
            .get(&message_id)
            .cloned()
            .or_else(|| self.store.get_outbox(&message_id).ok().flatten());
        let Some(entry) = entry else {
            return Frame::refused(message_id, true, "no such message in the outbox");
        };
        if let Err(error) = receipt.verify_for(
            &self.roster,
            &message_id,
            &self.me,
            &entry.recipient,
            &entry.digest,
        ) {
            self.push_event(Event::ReceiptRejected {
                message_id,
                from,
                reason: error.to_string(),
            });
            return Frame::refused(message_id, true, error.to_string());
        }
        self.mark_delivered(now, entry, receipt);
        Frame::Ack(message_id)
    }
}

fn snapshot_expiry(outbox: &BTreeMap<MessageId, OutboxEntry>, message_id: &MessageId) -> Timestamp {
    outbox
        .get(message_id)
        .map_or(Timestamp(u64::MAX), |entry| entry.expires_at)
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Deliver(_) => "deliver",
        Frame::Handoff(_) => "handoff",
        Frame::Receipt(_) => "receipt",
        Frame::Ack(_) => "ack",
        Frame::Refused { .. } => "refused",
        Frame::RosterRequest => "roster-request",
        Frame::Roster(_) => "roster",
        Frame::Ignored => "ignored",
    }
}

#[cfg(test)]
mod tests;
