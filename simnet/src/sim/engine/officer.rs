//! The officers at each node and what the cores tell them: submissions (retried while the node
//! is down), acknowledgements, and every core event checked against the ground truth.

use quickfreeze_keys::NodeId;
use quickfreeze_proto::core::{Event, MemoryStore, OutboxState, Store, SubmitError};
use quickfreeze_proto::payload::PayloadKind;
use quickfreeze_proto::MessageId;
use rand::RngExt;
use sha2::Digest;

use crate::sim::invariants::{Invariant, Violation};
use crate::sim::workload;

use super::{harness, Simulator, MAX_REJECTION_SAMPLES, OFFICER_RETRY_MS};
use crate::sim::hostile::Hostile;
use crate::sim::invariants::{MessageKey, MessageTruth};
use crate::sim::network::SimEvent;

impl Simulator {
    // ----- officers ----------------------------------------------------------------------

    pub(super) fn on_submit(&mut self, index: usize) -> Result<(), Violation> {
        let planned = self.plan[index].clone();
        let sender = planned.sender;
        if self.nodes[sender].core.is_none() {
            // The officer's console is down with the node: try again shortly.
            self.queue
                .push(self.now_ms + OFFICER_RETRY_MS, SimEvent::Submit { index });
            return Ok(());
        }
        self.pending_submissions -= 1;
        let now = self.local_now(sender);
        let recipient = self.world.ids[planned.recipient];
        let payload = workload::payload(planned.kind, &planned.marker);
        let message_id = match self.core_mut(sender)?.submit(now, recipient, payload) {
            Ok(message_id) => message_id,
            Err(_) if self.involves_revoked(sender, planned.recipient) => {
                // The sender's node refuses to send to a member it knows is revoked.
                self.report.submissions_refused_revoked += 1;
                return Ok(());
            }
            Err(error) => {
                return Err(harness(
                    self.now_ms,
                    format!("node {sender} refused a planned submission: {error}"),
                ))
            }
        };
        self.officer_sent(sender, planned.recipient, message_id, false)
    }

    /// After a successful `submit` (or acknowledgement reply): record the truth, maybe crash
    /// before the flush, otherwise flush and count the message as accepted.
    pub(super) fn officer_sent(
        &mut self,
        sender: usize,
        recipient: usize,
        message_id: MessageId,
        is_status: bool,
    ) -> Result<(), Violation> {
        let key = (self.world.ids[sender], message_id);
        let entry = self
            .core_mut(sender)?
            .store()
            .get_outbox(&message_id)
            .map_err(|error| harness(self.now_ms, error.to_string()))?
            .ok_or_else(|| harness(self.now_ms, format!("submitted {message_id} is not stored")))?;
        if self.truth.messages.contains_key(&key) {
            return Err(harness(
                self.now_ms,
                format!("node {sender} reused message id {message_id}"),
            ));
        }
        self.truth.messages.insert(
            key,
            MessageTruth {
                sender,
                recipient,
                digest: entry.digest,
                priority: entry.priority,
                submitted_at_ms: self.now_ms,
                expires_at: entry.expires_at,
                accepted: false,
                received: false,
                delivered_at_ms: None,
                expired: false,
                rejected: None,
                finished: false,
                transmissions: 0,
                excused: false,
            },
        );
        self.truth.sent_by[sender].push(key);
        let crash_probability = self.config.profile.crash_after_submit;
        if !self.liveness
            && crash_probability > 0.0
            && self.fault_rng.random_bool(crash_probability)
        {
            // The officer pressed send and the power went: never acknowledged, may be lost.
            self.report.crashes_after_submit += 1;
            self.report.submissions_lost_before_accept += 1;
            return self.crash(sender);
        }
        self.flush(sender)?;
        if let Some(truth) = self.truth.messages.get_mut(&key) {
            truth.accepted = true;
        }
        self.truth.unfinished += 1;
        self.truth.excuse_if_revoked(&key);
        self.report.accepted += 1;
        if is_status {
            self.report.accepted_status_updates += 1;
        }
        self.release(sender)
    }

    pub(super) fn on_acknowledge(
        &mut self,
        node: usize,
        sender: usize,
        message_id: MessageId,
    ) -> Result<(), Violation> {
        if self.nodes[node].core.is_none() {
            self.queue.push(
                self.now_ms + OFFICER_RETRY_MS,
                SimEvent::Acknowledge {
                    node,
                    sender,
                    message_id,
                },
            );
            return Ok(());
        }
        self.pending_acknowledgements -= 1;
        let now = self.local_now(node);
        let sender_id = self.world.ids[sender];
        let result = self.core_mut(node)?.acknowledge(
            now,
            sender_id,
            message_id,
            "Duty officer (simulated)",
        );
        match result {
            Ok(Some(reply)) => self.officer_sent(node, sender, reply, true),
            Ok(None) => {
                self.flush(node)?;
                self.release(node)
            }
            Err(SubmitError::NoSuchMessage(_)) => Err(self.violation(
                Invariant::Durability,
                format!(
                    "node {node} showed message {message_id} from node {sender} as received, \
                     but it is no longer in the inbox"
                ),
            )),
            Err(_) if self.involves_revoked(node, sender) => {
                self.report.submissions_refused_revoked += 1;
                Ok(())
            }
            Err(error) => Err(harness(
                self.now_ms,
                format!("node {node} cannot acknowledge {message_id}: {error}"),
            )),
        }
    }

    // ----- what the cores say --------------------------------------------------------------

    pub(super) fn on_core_event(&mut self, node: usize, event: Event) -> Result<(), Violation> {
        let (code, message_id) = match &event {
            Event::Accepted { message_id, .. } => (1, Some(*message_id)),
            Event::Sent { message_id, .. } => (2, Some(*message_id)),
            Event::Custody { message_id, .. } => (3, Some(*message_id)),
            Event::Delivered { message_id, .. } => (4, Some(*message_id)),
            Event::Expired { message_id, .. } => (5, Some(*message_id)),
            Event::Rejected { message_id, .. } => (6, Some(*message_id)),
            Event::Received { message_id, .. } => (7, Some(*message_id)),
            Event::StatusReceived { references, .. } => (8, Some(*references)),
            Event::InboundRejected { .. } => (9, None),
            Event::ReceiptRejected { message_id, .. } => (10, Some(*message_id)),
            Event::RelayHolding { message_id, .. } => (11, Some(*message_id)),
            Event::RelayDelivered { message_id, .. } => (12, Some(*message_id)),
            Event::RelayFailed { message_id, .. } => (13, Some(*message_id)),
            Event::RosterUpdated { .. } => (14, None),
            Event::RosterRejected { .. } => (15, None),
            Event::StoreFailed { .. } => (16, None),
            Event::RevocationApplied { .. } => (17, None),
            Event::RevocationRejected { .. } => (18, None),
        };
        self.record(&[self.now_ms, node as u64, code]);
        if let Some(message_id) = message_id {
            self.digest.update(message_id.0);
        }
        let hostile_id = self.hostile.as_ref().map(Hostile::node_id);
        match event {
            Event::Accepted { .. } | Event::Sent { .. } => Ok(()),
            Event::Custody { .. } => {
                self.report.custody_receipts += 1;
                Ok(())
            }
            Event::Delivered { message_id, .. } => self.on_delivered(node, message_id),
            Event::Expired { message_id, .. } => {
                let key = (self.world.ids[node], message_id);
                let now = self.local_now(node);
                let expires_at = self.truth.messages.get(&key).map(|truth| truth.expires_at);
                if let Some(expires_at) = expires_at.filter(|expires_at| now < *expires_at) {
                    return Err(self.violation(
                        Invariant::Liveness,
                        format!(
                            "node {node} expired {message_id} at {now}, before its expiry {expires_at}"
                        ),
                    ));
                }
                match self.truth.messages.get_mut(&key) {
                    Some(truth) => truth.expired = true,
                    None => {
                        return Err(self.violation(
                            Invariant::Authentic,
                            format!("node {node} expired {message_id}, which it never sent"),
                        ))
                    }
                }
                if self.truth.finish(&key) {
                    self.last_finished_at_ms = self.now_ms;
                }
                Ok(())
            }
            Event::Rejected {
                message_id, reason, ..
            } => {
                let key = (self.world.ids[node], message_id);
                if let Some(truth) = self.truth.messages.get_mut(&key) {
                    truth.rejected = Some(reason.clone());
                }
                self.sample_rejection(format!("node {node}: {message_id} rejected: {reason}"));
                if self.truth.finish(&key) {
                    self.last_finished_at_ms = self.now_ms;
                }
                Ok(())
            }
            Event::Received {
                sender,
                message_id,
                kind,
                via_relay,
                reannounced,
                ..
            } => {
                if reannounced && self.truth.shown_received[node].contains(&(sender, message_id)) {
                    // Shown before the restart: a reminder, not a second delivery.
                    return Ok(());
                }
                if !reannounced {
                    self.check_not_revoked(node, sender, "took a message")?;
                }
                self.on_received(node, sender, message_id, kind, via_relay)
            }
            Event::StatusReceived { .. } => {
                self.report.status_updates_received += 1;
                Ok(())
            }
            Event::InboundRejected { from, reason }
            | Event::ReceiptRejected { from, reason, .. }
            | Event::RosterRejected { from, reason }
            | Event::RevocationRejected { from, reason } => {
                if Some(from) == hostile_id {
                    self.report.forgeries_rejected += 1;
                } else {
                    self.report.honest_rejections += 1;
                    self.sample_rejection(format!("node {node}: {reason}"));
                }
                Ok(())
            }
            Event::RelayHolding { sender, .. } => {
                self.check_not_revoked(node, sender, "took custody of a message")?;
                self.report.relay_custody_taken += 1;
                Ok(())
            }
            Event::RelayDelivered { .. } => {
                self.report.relay_deliveries += 1;
                Ok(())
            }
            Event::RelayFailed {
                message_id,
                reason,
                sender,
                ..
            } => {
                self.report.relay_failures += 1;
                if self
                    .world
                    .index_of
                    .get(&sender)
                    .is_some_and(|index| self.truth.revoked.contains(index))
                {
                    self.report.relay_discards_revoked += 1;
                }
                self.sample_rejection(format!("relay {node}: {message_id}: {reason}"));
                Ok(())
            }
            // Scripted key rotations sign serials 2, 3, ... in order (the world's roster is the
            // newest); anything above that was never signed.
            Event::RosterUpdated { serial } if serial <= self.world.roster.serial => Ok(()),
            Event::RosterUpdated { serial } => Err(self.violation(
                Invariant::ForgeryAccepted,
                format!(
                    "node {node} switched to roster serial {serial}; only serials up to {} were ever signed",
                    self.world.roster.serial
                ),
            )),
            Event::RevocationApplied { serial, .. } if serial <= self.world.revocation_serial => {
                self.note_trust(node);
                Ok(())
            }
            Event::RevocationApplied { serial, .. } => Err(self.violation(
                Invariant::ForgeryAccepted,
                format!(
                    "node {node} applied revocation serial {serial}; only serials up to {} were ever signed",
                    self.world.revocation_serial
                ),
            )),
            Event::StoreFailed { reason } => Err(harness(
                self.now_ms,
                format!("node {node}: store failed: {reason}"),
            )),
        }
    }

    pub(super) fn sample_rejection(&mut self, text: String) {
        if self.report.rejection_samples.len() < MAX_REJECTION_SAMPLES {
            self.report.rejection_samples.push(text);
        }
    }

    pub(super) fn recipient_store(&self, recipient: usize) -> Option<&MemoryStore> {
        self.nodes[recipient].store()
    }

    pub(super) fn on_delivered(
        &mut self,
        node: usize,
        message_id: MessageId,
    ) -> Result<(), Violation> {
        let me = self.world.ids[node];
        let key = (me, message_id);
        let Some(truth) = self.truth.messages.get(&key).cloned() else {
            return Err(self.violation(
                Invariant::Authentic,
                format!("node {node} was shown {message_id} delivered, but never sent it"),
            ));
        };
        if !truth.accepted {
            return Err(harness(
                self.now_ms,
                format!("node {node}: {message_id} delivered before it was accepted"),
            ));
        }
        let entry = self
            .core_mut(node)?
            .store()
            .get_outbox(&message_id)
            .map_err(|error| harness(self.now_ms, error.to_string()))?;
        let problem = match &entry {
            None => Some("no outbox entry".to_string()),
            Some(entry) if !matches!(entry.state, OutboxState::Delivered { .. }) => {
                Some(format!("outbox state is {}", entry.state.name()))
            }
            Some(entry) => match &entry.delivery_receipt {
                None => Some("no delivery receipt stored".to_string()),
                Some(receipt) => receipt
                    .verify_for(
                        &self.world.roster,
                        receipt.body.received_at,
                        &message_id,
                        &me,
                        &entry.recipient,
                        &entry.digest,
                    )
                    .err()
                    .map(|error| format!("stored receipt does not verify: {error}"))
                    .or_else(|| {
                        (entry.digest != truth.digest)
                            .then(|| "outbox digest differs from the submitted one".to_string())
                    }),
            },
        };
        if let Some(problem) = problem {
            return Err(self.violation(
                Invariant::ReceiptValid,
                format!("node {node} was shown {message_id} delivered: {problem}"),
            ));
        }
        // A delivery receipt means the recipient holds the message durably.
        let held = self
            .recipient_store(truth.recipient)
            .and_then(|store| store.get_inbox(&me, &message_id).ok().flatten());
        if held.is_none_or(|entry| entry.digest != truth.digest) {
            return Err(self.violation(
                Invariant::Durability,
                format!(
                    "node {node} holds a delivery receipt for {message_id}, but recipient node {} \
                     does not hold the message",
                    truth.recipient
                ),
            ));
        }
        if let Some(truth) = self.truth.messages.get_mut(&key) {
            if truth.delivered_at_ms.is_none() {
                truth.delivered_at_ms = Some(self.now_ms);
                let latency_ms = self.now_ms.saturating_sub(truth.submitted_at_ms);
                self.latencies_ms.push((truth.priority, latency_ms));
            }
        }
        if self.truth.finish(&key) {
            self.last_finished_at_ms = self.now_ms;
        }
        Ok(())
    }

    pub(super) fn on_received(
        &mut self,
        node: usize,
        sender: NodeId,
        message_id: MessageId,
        kind: PayloadKind,
        via_relay: Option<NodeId>,
    ) -> Result<(), Violation> {
        let key: MessageKey = (sender, message_id);
        if !self.truth.shown_received[node].insert(key) {
            return Err(self.violation(
                Invariant::ExactlyOnce,
                format!("node {node} was shown message {message_id} from {sender} twice"),
            ));
        }
        let entry = self
            .core_mut(node)?
            .store()
            .get_inbox(&sender, &message_id)
            .map_err(|error| harness(self.now_ms, error.to_string()))?;
        let Some(entry) = entry else {
            return Err(self.violation(
                Invariant::Durability,
                format!("node {node} was shown {message_id} received, but its inbox lacks it"),
            ));
        };
        let recipient_of = |truth: &MessageTruth| truth.recipient;
        self.truth
            .check_inbox_entry(node, recipient_of, &entry, true)
            .map_err(|(invariant, detail)| self.violation(invariant, detail))?;
        if let Some(truth) = self.truth.messages.get_mut(&key) {
            truth.received = true;
        }
        match via_relay.and_then(|via| self.world.index_of.get(&via).copied()) {
            Some(via) if Some(via) == self.world.hostile => {
                self.report.received_via_hostile_replay += 1
            }
            Some(_) => self.report.received_via_relay += 1,
            None => {}
        }
        let acknowledgeable = matches!(
            kind,
            PayloadKind::Preservation | PayloadKind::Emergency | PayloadKind::TrafficData
        );
        let probability = self.config.acknowledge_probability;
        if acknowledgeable && probability > 0.0 && self.officer_rng.random_bool(probability) {
            let Some(&sender_index) = self.world.index_of.get(&sender) else {
                return Ok(());
            };
            let delay_ms = self.officer_rng.random_range(2_000..60_000);
            self.pending_acknowledgements += 1;
            self.queue.push(
                self.now_ms + delay_ms,
                SimEvent::Acknowledge {
                    node,
                    sender: sender_index,
                    message_id,
                },
            );
        }
        Ok(())
    }
}
