//! What a run reports: counters, latency percentiles, convergence, the run digest.
//!
//! The simulator fills a [`SimReport`] as it goes and completes it at the end. The same struct
//! is printed as a human summary ([`SimReport::summary`]) and written as JSON (`--json FILE`).
//! Everything in it except `wall_clock_ms` is a pure function of the configuration and seed; the
//! `digest` (SHA-256 over the ordered log of simulation and core events) is what the
//! determinism test compares.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::invariants::Violation;
use crate::fault_level::FaultLevel;
use crate::percentiles::Percentiles;

/// Virtual submit → delivered latency, over delivered messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Delivered messages measured.
    pub samples: usize,
    /// Median.
    pub p50_ms: u64,
    /// 95th percentile.
    pub p95_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Slowest.
    pub max_ms: u64,
    /// Mean.
    pub mean_ms: u64,
}

impl LatencySummary {
    /// Nearest-rank percentiles of `samples_ms` (HDR histogram, three significant figures:
    /// exact below 2,048 ms); the mean and the maximum are exact.
    pub fn from_samples(samples_ms: Vec<u64>) -> LatencySummary {
        if samples_ms.is_empty() {
            return LatencySummary::default();
        }
        let count = samples_ms.len();
        let mean_ms = samples_ms.iter().sum::<u64>() / count as u64;
        let percentiles = Percentiles::of(samples_ms);
        LatencySummary {
            samples: count,
            p50_ms: percentiles.p50,
            p95_ms: percentiles.p95,
            p99_ms: percentiles.p99,
            max_ms: percentiles.max,
            mean_ms,
        }
    }
}

/// The outcome and figures of one deterministic run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Member nodes.
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Members without addresses (reachable through relays only).
    pub relay_only_members: usize,
    /// Whether a hostile member took part.
    pub hostile_member: bool,
    /// Fault level.
    pub faults: Option<FaultLevel>,
    /// Safety phase length.
    pub duration_ms: u64,

    /// Planned submissions.
    pub messages_planned: usize,
    /// Submissions lost because the sender crashed before the flush (never acknowledged).
    pub submissions_lost_before_accept: u64,
    /// Messages acknowledged as accepted (flushed), status updates included.
    pub accepted: u64,
    /// Of which status updates sent by acknowledging officers.
    pub accepted_status_updates: u64,
    /// Accepted messages shown delivered with a verified receipt.
    pub delivered: u64,
    /// Accepted messages shown expired (without a delivery receipt).
    pub expired: u64,
    /// Accepted messages refused for good by their recipient.
    pub rejected: u64,
    /// Accepted messages that were never finished.
    pub undelivered: u64,
    /// Messages that reached their recipient through a relay.
    pub received_via_relay: u64,
    /// Messages that first reached their recipient as a replay by the hostile member.
    pub received_via_hostile_replay: u64,
    /// Status updates that reached the original sender's outbox history.
    pub status_updates_received: u64,

    /// Deliver frames that arrived at a recipient already holding the message (answered from
    /// the inbox, stored nothing): retries, network duplicates, second paths, replays.
    pub duplicates_suppressed: u64,
    /// Hand-offs that arrived at a relay already holding the message.
    pub relay_duplicate_handoffs: u64,
    /// Deliver/Handoff transmissions by senders beyond each message's first.
    pub retries: u64,
    /// Handoff frames senders sent to relays.
    pub relay_handoffs: u64,
    /// Messages relays took custody of.
    pub relay_custody_taken: u64,
    /// Custody receipts senders verified.
    pub custody_receipts: u64,
    /// Messages relays delivered to their recipients.
    pub relay_deliveries: u64,
    /// Relay entries given up (expired or refused).
    pub relay_failures: u64,
    /// Delivery receipts relays still hold at the end for senders without addresses: the relay
    /// cannot reach them and retries until expiry plus the grace period (the sender learned of
    /// the delivery another way).
    pub relay_receipts_stranded: u64,

    /// Attacks by the hostile member, by kind.
    pub hostile_attacks: BTreeMap<String, u64>,
    /// Rejection events (inbound, receipt, roster) nodes raised against the hostile member.
    pub forgeries_rejected: u64,
    /// Frames of hostile attacks answered with a refusal.
    pub hostile_frames_refused: u64,
    /// Hostile requests that got an answer.
    pub hostile_requests_answered: u64,
    /// Hostile requests that got none (target down or cut off, answer lost).
    pub hostile_requests_failed: u64,
    /// Rejection events raised against honest peers (should be rare; samples below).
    pub honest_rejections: u64,
    /// Up to ten reasons of honest rejections and relay failures.
    pub rejection_samples: Vec<String>,

    /// Requests transmitted by cores.
    pub requests_sent: u64,
    /// Requests lost on the way.
    pub requests_lost: u64,
    /// Responses lost on the way back.
    pub responses_lost: u64,
    /// Requests the network delivered twice.
    pub requests_duplicated: u64,
    /// Requests to a member without addresses from a peer it had no connection with.
    pub requests_undialable: u64,
    /// Requests that ended in a failure (timeout) at their sender.
    pub requests_failed: u64,
    /// Outcomes dropped because their sender crashed in between.
    pub outcomes_dropped_after_crash: u64,

    /// Crashes of member nodes and relays (all kinds).
    pub crashes: u64,
    /// Of which in the middle of handling a request, before the flush.
    pub crashes_during_request: u64,
    /// Of which right after a submission, before the flush.
    pub crashes_after_submit: u64,
    /// Of which relay outages.
    pub relay_outages: u64,
    /// Key rotations (scripted).
    pub rotations: u64,
    /// Restarts.
    pub restarts: u64,
    /// New roster serials installed at one node (scripted).
    pub roster_updates: u64,
    /// Revocation notices signed and installed at one node.
    pub revocations: u64,
    /// Virtual ms from the last roster install until every node held it (None: never).
    pub roster_spread_ms: Option<u64>,
    /// Virtual ms from the last notice until every node but the revoked held it (None: never).
    pub revocation_spread_ms: Option<u64>,
    /// Submissions and acknowledgements a node refused because a member was revoked.
    pub submissions_refused_revoked: u64,
    /// Accepted messages from or to a revoked member (need not be delivered).
    pub excused_revoked: u64,
    /// Entries relays discarded because their sender was revoked.
    pub relay_discards_revoked: u64,
    /// Partitions started.
    pub partitions: u64,

    /// Submit → delivered, virtual.
    pub latency: LatencySummary,
    /// The same by priority (emergency, urgent, routine).
    pub latency_by_priority: BTreeMap<String, LatencySummary>,
    /// Virtual time of the heal (end of the safety phase).
    pub heal_at_ms: u64,
    /// Whether every accepted message finished in the liveness phase.
    pub converged: bool,
    /// From the heal until the last accepted message finished (0 if all were done before).
    pub convergence_after_heal_ms: Option<u64>,
    /// Virtual time the run ended.
    pub end_at_ms: u64,
    /// Simulation events processed.
    pub events_processed: u64,
    /// Wall-clock time of the run.
    pub wall_clock_ms: u64,
    /// SHA-256 over the ordered event log: equal for equal seeds.
    pub digest: String,
    /// The first invariant violation, if any.
    pub violation: Option<Violation>,
}

impl SimReport {
    /// A multi-line human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let faults = self
            .faults
            .map_or_else(|| "?".to_string(), |faults| faults.to_string());
        let _ = writeln!(
            out,
            "simnet sim: seed={} nodes={} relays={} (relay-only members {}, hostile member {}) faults={} duration={} ms",
            self.seed,
            self.nodes,
            self.relays,
            self.relay_only_members,
            if self.hostile_member { "yes" } else { "no" },
            faults,
            self.duration_ms
        );
        let _ = writeln!(
            out,
            "  messages   planned {}  accepted {} (status updates {})  lost before accept {}",
            self.messages_planned,
            self.accepted,
            self.accepted_status_updates,
            self.submissions_lost_before_accept
        );
        let _ = writeln!(
            out,
            "  outcome    delivered {}  expired {}  rejected {}  undelivered {}",
            self.delivered, self.expired, self.rejected, self.undelivered
        );
        let _ = writeln!(
            out,
            "  delivery   via relay {}  duplicates suppressed {}  relay duplicate hand-offs {}  retries {}",
            self.received_via_relay,
            self.duplicates_suppressed,
            self.relay_duplicate_handoffs,
            self.retries
        );
        let _ = writeln!(
            out,
            "  relays     hand-offs {}  custody taken {}  custody receipts {}  relay deliveries {}  relay failures {}  receipts stranded {}",
            self.relay_handoffs,
            self.relay_custody_taken,
            self.custody_receipts,
            self.relay_deliveries,
            self.relay_failures,
            self.relay_receipts_stranded
        );
        let _ = writeln!(
            out,
            "  status     updates received {}",
            self.status_updates_received
        );
        let attacks: u64 = self.hostile_attacks.values().sum();
        let _ = writeln!(
            out,
            "  hostile    attacks {} (answered {}, unanswered {})  forgeries rejected (events) {}  frames refused {}  replays that delivered first {}",
            attacks,
            self.hostile_requests_answered,
            self.hostile_requests_failed,
            self.forgeries_rejected,
            self.hostile_frames_refused,
            self.received_via_hostile_replay
        );
        let _ = writeln!(
            out,
            "  network    requests {}  lost {}  responses lost {}  duplicated {}  undialable {}  failed {}  partitions {}",
            self.requests_sent,
            self.requests_lost,
            self.responses_lost,
            self.requests_duplicated,
            self.requests_undialable,
            self.requests_failed,
            self.partitions
        );
        let _ = writeln!(
            out,
            "  crashes    {} (mid-request {}, after submit {}, relay outages {})  restarts {}",
            self.crashes,
            self.crashes_during_request,
            self.crashes_after_submit,
            self.relay_outages,
            self.restarts
        );
        let _ = writeln!(
            out,
            "  latency    p50 {} ms  p95 {} ms  p99 {} ms  max {} ms  (n={})",
            self.latency.p50_ms,
            self.latency.p95_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.latency.samples
        );
        for (priority, latency) in &self.latency_by_priority {
            let _ = writeln!(
                out,
                "    {priority:<9} p50 {} ms  p95 {} ms  max {} ms  (n={})",
                latency.p50_ms, latency.p95_ms, latency.max_ms, latency.samples
            );
        }
        let convergence = self
            .convergence_after_heal_ms
            .map_or_else(|| "never".to_string(), |ms| format!("{ms} ms"));
        let _ = writeln!(
            out,
            "  liveness   heal at {} ms  converged after heal {}  end at {} ms",
            self.heal_at_ms, convergence, self.end_at_ms
        );
        if self.honest_rejections > 0 || !self.rejection_samples.is_empty() {
            let _ = writeln!(
                out,
                "  notes      honest rejections {}; samples: {}",
                self.honest_rejections,
                self.rejection_samples.join(" | ")
            );
        }
        let _ = writeln!(
            out,
            "  run        events {}  wall clock {} ms  digest {}",
            self.events_processed, self.wall_clock_ms, self.digest
        );
        match &self.violation {
            None => {
                let _ = writeln!(out, "  result     all invariants held");
            }
            Some(violation) => {
                let _ = writeln!(out, "  result     FAILED seed={}: {violation}", self.seed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let summary = LatencySummary::from_samples((1..=100).collect());
        assert_eq!(summary.p50_ms, 50);
        assert_eq!(summary.p95_ms, 95);
        assert_eq!(summary.p99_ms, 99);
        assert_eq!(summary.max_ms, 100);
        assert_eq!(LatencySummary::from_samples(vec![7]).p99_ms, 7);
        assert_eq!(LatencySummary::from_samples(Vec::new()).samples, 0);
    }
}
