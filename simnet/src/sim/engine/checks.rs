//! The end of a run: periodic sweeps over every store, the liveness verdict, the final checks
//! over every store, and the report with its digest.

use quickfreeze_proto::core::{OutboxState, RelayState, Store};
use quickfreeze_proto::Priority;
use sha2::Digest;

use crate::sim::invariants::{Invariant, Violation};
use crate::sim::report::{LatencySummary, SimReport};

use super::{harness, role_name, Simulator};
use crate::sim::invariants::check_relay_blind;
use crate::sim::world::NodeKind;

impl Simulator {
    // ----- sweeps and the end ------------------------------------------------------------

    /// Periodic sweep: every inbox against the truth, every relay for plaintext.
    pub(super) fn sweep(&self) -> Result<(), Violation> {
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(store) = node.store() else {
                continue;
            };
            match node.kind {
                NodeKind::Relay => check_relay_blind(index, store)
                    .map_err(|detail| self.violation(Invariant::RelayBlind, detail))?,
                NodeKind::Member => {
                    let entries = store
                        .inbox_entries()
                        .map_err(|error| harness(self.now_ms, error.to_string()))?;
                    for entry in &entries {
                        self.truth
                            .check_inbox_entry(
                                index,
                                |truth| truth.recipient,
                                entry,
                                node.core.is_some(),
                            )
                            .map_err(|(invariant, detail)| self.violation(invariant, detail))?;
                    }
                }
                NodeKind::Hostile => {}
            }
        }
        Ok(())
    }

    pub(super) fn liveness_failure(&self) -> Violation {
        let stuck: Vec<String> = self
            .truth
            .messages
            .iter()
            .filter(|(_, truth)| truth.accepted && !truth.finished)
            .take(5)
            .map(|(key, truth)| {
                let state = self.nodes[truth.sender]
                    .store()
                    .and_then(|store| store.get_outbox(&key.1).ok().flatten())
                    .map_or_else(
                        || "missing".to_string(),
                        |entry| {
                            let custody = match &entry.state {
                                OutboxState::Custody { relay, .. } => {
                                    format!(" at relay {:?}", self.world.index_of.get(relay))
                                }
                                _ => String::new(),
                            };
                            format!(
                                "{}{custody} after {} attempts, last error {:?}",
                                entry.state.name(),
                                entry.attempts,
                                entry.last_error
                            )
                        },
                    );
                let describe = |index: usize| {
                    format!(
                        "node {index} ({}, relays {:?})",
                        if self.world.dialable[index] {
                            "dialable"
                        } else {
                            "no addresses"
                        },
                        self.world.relays_of[index]
                    )
                };
                format!(
                    "{} {} -> {}: {state}",
                    key.1,
                    describe(truth.sender),
                    describe(truth.recipient)
                )
            })
            .collect();
        self.violation(
            Invariant::Liveness,
            format!(
                "{} accepted messages unfinished {} ms after the heal ({} submissions and {} \
                 acknowledgements pending); first: {}",
                self.truth.unfinished,
                self.config.liveness_max_ms,
                self.pending_submissions,
                self.pending_acknowledgements,
                stuck.join("; ")
            ),
        )
    }

    pub(super) fn final_checks(&mut self) -> Result<(), Violation> {
        self.sweep()?;
        // Invariants 3, 5, 6 over every accepted message.
        for (key, truth) in &self.truth.messages {
            if !truth.accepted || truth.excused {
                // Excused: from or to a revoked member, refused from the notice on.
                continue;
            }
            let Some(store) = self.nodes[truth.sender].store() else {
                return Err(harness(self.now_ms, "a node is still down at the end"));
            };
            let Some(entry) = store
                .get_outbox(&key.1)
                .map_err(|error| harness(self.now_ms, error.to_string()))?
            else {
                return Err(self.violation(
                    Invariant::Durability,
                    format!(
                        "accepted message {} vanished from node {}",
                        key.1, truth.sender
                    ),
                ));
            };
            match &entry.state {
                OutboxState::Delivered { .. } => {
                    let receipt = entry.delivery_receipt.as_ref().ok_or_else(|| {
                        self.violation(
                            Invariant::ReceiptValid,
                            format!("{} delivered without a stored receipt", key.1),
                        )
                    })?;
                    receipt
                        .verify_for(
                            &self.world.roster,
                            // Judged as when it arrived: a rotated-out key is refused only
                            // after its grace, not retroactively.
                            receipt.body.received_at,
                            &key.1,
                            &key.0,
                            &entry.recipient,
                            &entry.digest,
                        )
                        .map_err(|error| {
                            self.violation(
                                Invariant::ReceiptValid,
                                format!("{}: stored receipt does not verify: {error}", key.1),
                            )
                        })?;
                    if truth.delivered_at_ms.is_none() {
                        return Err(self.violation(
                            Invariant::Liveness,
                            format!("{} is delivered but its officer was never told", key.1),
                        ));
                    }
                    let held = self.nodes[truth.recipient]
                        .store()
                        .and_then(|store| store.get_inbox(&key.0, &key.1).ok().flatten());
                    if held.is_none() {
                        return Err(self.violation(
                            Invariant::Durability,
                            format!(
                                "{} is delivered, but recipient node {} does not hold it",
                                key.1, truth.recipient
                            ),
                        ));
                    }
                }
                OutboxState::Expired { .. } if truth.expired => {}
                OutboxState::Rejected { .. } if truth.rejected.is_some() => {}
                other => {
                    return Err(self.violation(
                        Invariant::Liveness,
                        format!(
                            "{} from node {} ended {} without the matching event",
                            key.1,
                            truth.sender,
                            other.name()
                        ),
                    ))
                }
            }
            if self.config.expect_all_delivered && truth.delivered_at_ms.is_none() {
                return Err(self.violation(
                    Invariant::Liveness,
                    format!(
                        "{} from node {} to node {} was not delivered (expired {}, rejected {:?})",
                        key.1, truth.sender, truth.recipient, truth.expired, truth.rejected
                    ),
                ));
            }
        }
        // Quiescence: after the quiet period nothing is left to do, except receipts a relay
        // cannot carry back because their sender has no addresses (see `relay_receipts_stranded`).
        let mut stranded = 0;
        let revoked_ids: Vec<_> = self
            .truth
            .revoked
            .iter()
            .map(|index| self.world.ids[*index])
            .collect();
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            if self.truth.revoked.contains(&index) {
                // A revoked member keeps trying to send what nobody will take until it expires.
                continue;
            }
            let pending: usize = if revoked_ids.is_empty() {
                core.queue_sizes().outbox_pending.iter().sum()
            } else {
                core.store()
                    .outbox_entries()
                    .map_err(|error| harness(self.now_ms, error.to_string()))?
                    .iter()
                    .filter(|entry| {
                        !entry.state.is_final() && !revoked_ids.contains(&entry.recipient)
                    })
                    .count()
            };
            let mut relay_pending = 0;
            for entry in core
                .store()
                .relay_entries()
                .map_err(|error| harness(self.now_ms, error.to_string()))?
            {
                if revoked_ids.contains(&entry.sender) || revoked_ids.contains(&entry.recipient) {
                    continue;
                }
                match entry.state {
                    RelayState::Holding => relay_pending += 1,
                    RelayState::ReceiptPending { .. } => {
                        let dialable = self
                            .world
                            .index_of
                            .get(&entry.sender)
                            .is_some_and(|sender| self.world.dialable[*sender]);
                        if dialable {
                            relay_pending += 1;
                        } else {
                            stranded += 1;
                        }
                    }
                    RelayState::Done | RelayState::Failed { .. } => {}
                }
            }
            if pending > 0 || relay_pending > 0 {
                return Err(self.violation(
                    Invariant::Quiescence,
                    format!(
                        "node {index} ({}) still has {pending} outbox and {relay_pending} relay \
                         entries pending {} ms after convergence",
                        role_name(&self.world, index),
                        self.config.quiesce_ms
                    ),
                ));
            }
        }
        self.report.relay_receipts_stranded = stranded;
        Ok(())
    }

    pub(in crate::sim) fn finish_report(&mut self) -> SimReport {
        self.report_spread();
        let mut report = self.report.clone();
        for truth in self.truth.messages.values() {
            if !truth.accepted {
                continue;
            }
            if truth.excused {
                report.excused_revoked += 1;
            }
            if truth.delivered_at_ms.is_some() {
                report.delivered += 1;
            } else if truth.expired {
                report.expired += 1;
            } else if truth.rejected.is_some() {
                report.rejected += 1;
            } else {
                report.undelivered += 1;
            }
            report.retries += u64::from(truth.transmissions.saturating_sub(1));
        }
        if let Some(hostile) = &self.hostile {
            report.hostile_attacks = hostile
                .sent
                .iter()
                .map(|(kind, count)| ((*kind).to_string(), *count))
                .collect();
        }
        report.latency =
            LatencySummary::from_samples(self.latencies_ms.iter().map(|(_, ms)| *ms).collect());
        for priority in [Priority::Emergency, Priority::Urgent, Priority::Routine] {
            let samples: Vec<u64> = self
                .latencies_ms
                .iter()
                .filter(|(of, _)| *of == priority)
                .map(|(_, ms)| *ms)
                .collect();
            if !samples.is_empty() {
                report
                    .latency_by_priority
                    .insert(priority.to_string(), LatencySummary::from_samples(samples));
            }
        }
        report.converged = self.converged_at_ms.is_some();
        report.convergence_after_heal_ms = self
            .converged_at_ms
            .map(|_| self.last_finished_at_ms.saturating_sub(report.heal_at_ms));
        report.end_at_ms = self.now_ms;
        let mut digest = self.digest.clone();
        for figure in [
            report.accepted,
            report.delivered,
            report.expired,
            report.duplicates_suppressed,
            report.retries,
            report.requests_sent,
        ] {
            digest.update(figure.to_le_bytes());
        }
        report.digest = hex::encode(digest.finalize());
        report
    }
}
