//! Turning due work into requests: [`Core::handle_timeout`] takes every due job, highest priority
//! first, lets its room build the frame (`outbox` for messages, `custody` for held envelopes and
//! carried receipts, or finish it on expiry), groups frames per peer into batches within the
//! frame and byte limits, and parks what exceeds the per-peer in-flight limit.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use quickfreeze_keys::{NodeId, Timestamp};

use super::work::{Item, Job};
use super::{Core, Store};
use crate::frame::{Frame, MAX_BATCH_BYTES, MAX_FRAMES_PER_BATCH};
use crate::ids::Priority;

impl<S: Store> Core<S> {
    /// Advances time: expires what is overdue and transmits what is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.write_deferred();
        self.gossip_if_due(now);
        self.forget_expired_keys(now);
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

    /// Builds the frame for a due job, or finishes the job (expiry) and returns None.
    pub(super) fn prepare(
        &mut self,
        now: Timestamp,
        job: Job,
    ) -> Option<(NodeId, Frame, Item, usize)> {
        if self.busy.contains(&job) {
            return None;
        }
        match job {
            Job::Outbox(message_id) => self.prepare_outbox(now, message_id),
            Job::RelayDeliver(sender, message_id) => {
                self.prepare_relay_deliver(now, sender, message_id)
            }
            Job::RelayReceipt(sender, message_id) => {
                self.prepare_relay_receipt(now, sender, message_id)
            }
        }
    }
}
