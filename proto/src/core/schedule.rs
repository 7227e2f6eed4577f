//! The core's timetable: jobs due by time and then priority (emergency first), per-peer backoff
//! with jitter (capped in minutes, reset as soon as the peer is seen), the limit of requests in
//! flight per peer, and the batches put on the transmit queue.
//!
//! Data flow: rooms call `schedule` / `unschedule` for their jobs; `transmit` takes what is due;
//! `answer` reports a peer's success or failure back here, which sets its next retry.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use quickfreeze_keys::{NodeId, Timestamp};
use rand::RngExt;

use super::work::{InFlight, Item, Job};
use super::{Core, Event, OutboxState, Store, Transmit};
use crate::frame::{Batch, Frame};
use crate::ids::Priority;

impl<S: Store> Core<S> {
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

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let job = self.due.first().map(|(at, _, _)| *at);
        match (job, self.gossip_timeout()) {
            (Some(job), Some(gossip)) => Some(job.min(gossip)),
            (job, gossip) => job.or(gossip),
        }
    }

    pub(super) fn schedule(&mut self, job: Job, at: Timestamp, priority: Priority) {
        if let Some((old_at, old_priority)) = self.due_at.remove(&job) {
            self.due.remove(&(old_at, Reverse(old_priority), job));
        }
        self.due.insert((at, Reverse(priority), job));
        self.due_at.insert(job, (at, priority));
    }

    pub(super) fn unschedule(&mut self, job: Job) {
        if let Some((at, priority)) = self.due_at.remove(&job) {
            self.due.remove(&(at, Reverse(priority), job));
        }
    }

    pub(super) fn job_priority(&self, job: &Job) -> Priority {
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
    pub(super) fn job_peers(&self, job: &Job) -> Vec<NodeId> {
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

    pub(super) fn backing_off(&self, now: Timestamp, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|state| state.retry_at > now)
    }

    pub(super) fn backoff_ms(&mut self, failures: u32) -> u64 {
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

    pub(super) fn peer_failed(&mut self, now: Timestamp, peer: NodeId) {
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

    pub(super) fn peer_succeeded(&mut self, now: Timestamp, peer: NodeId) {
        self.handle_peer_seen(now, peer);
    }

    pub(super) fn request_finished(&mut self, now: Timestamp, peer: NodeId) {
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

    pub(super) fn send(&mut self, peer: NodeId, frames: Vec<Frame>, items: Vec<Item>) {
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

    pub(super) fn release(&mut self, item: Item) {
        let job = match item {
            Item::Outbox { message_id, .. } => Job::Outbox(message_id),
            Item::RelayDeliver(sender, id) => Job::RelayDeliver(sender, id),
            Item::RelayReceipt(sender, id) => Job::RelayReceipt(sender, id),
            Item::RosterRequest
            | Item::Serials
            | Item::RevocationRequest
            | Item::RevocationPush => return,
        };
        self.busy.remove(&job);
        let priority = self.job_priority(&job);
        self.schedule(job, Timestamp(0), priority);
    }

    /// If `peer` is backing off, reschedules `job` for when it may be tried and returns true.
    /// `deadline` caps the wait so that expiry is noticed on time.
    pub(super) fn wait_for_peer(
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
    pub(super) fn refusal_delay(&mut self, attempts: u32) -> u64 {
        self.backoff_ms(attempts.clamp(1, 30))
    }
}
