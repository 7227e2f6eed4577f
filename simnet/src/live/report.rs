//! The live run's report: figures, verdicts, the human summary, the latency histogram's
//! buckets (drawn by `plot`) and the per-process resource sampling from `/proc`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::hostile::HostileStats;
use crate::percentiles::Percentiles;

/// Submit → verified delivery receipt, over every sample the delivery logs gave.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub samples: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples_us` (HDR histogram, three significant figures);
    /// the maximum is exact.
    pub fn of(samples_us: &[u64]) -> Latency {
        let percentiles = Percentiles::of(samples_us.iter().copied());
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            samples: samples_us.len(),
            p50_ms: ms(percentiles.p50),
            p95_ms: ms(percentiles.p95),
            p99_ms: ms(percentiles.p99),
            max_ms: ms(percentiles.max),
        }
    }
}

/// Resource use of the node processes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resources {
    /// Highest sum of every node process's RSS at one sample, MiB.
    pub peak_rss_sum_mib: f64,
    /// Highest RSS of one node process, MiB.
    pub peak_rss_max_node_mib: f64,
    /// CPU seconds (user + system) used by all node processes together.
    pub cpu_seconds: f64,
    /// The same, as a share of the machine's cores over the run (1.0 = every core busy).
    pub cpu_share_of_machine: f64,
    /// Samples taken.
    pub samples: u64,
}

/// The state of the network when the faulty phase ended.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AtHealReport {
    /// Members and relays on each side of the partition that the heal lifted (0, 0: none).
    pub partition_sides: (usize, usize),
    /// Seconds into the faulty phase the partition began.
    pub partition_from_s: f64,
    /// The relay cut from everyone until the heal.
    pub isolated_relay: Option<usize>,
    /// Nodes down when the faulty phase ended (restarted by the heal).
    pub nodes_down: usize,
    /// Node pairs with a link fault still active (each direction counted once per node).
    pub faulty_links: usize,
    /// Undelivered outbox entries plus relay entries (held messages, receipts being carried)
    /// over every node, just before the heal: the work the convergence had to finish. The
    /// nodes that were down are counted as they came back up.
    pub pending: usize,
    /// Of `pending`, what the nodes that were down held.
    pub pending_on_nodes_down: usize,
}

/// Everything a live run measured and checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveReport {
    /// The seed.
    pub seed: u64,
    /// Member nodes, relays.
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Fault level.
    pub faults: String,
    /// Requests the workload planned.
    pub planned: usize,
    /// Requests (and status replies) the nodes acknowledged as accepted.
    pub accepted: usize,
    /// Status replies among them.
    pub status_replies: usize,
    /// Submissions refused or never acknowledged (node down through every retry).
    pub not_accepted: usize,
    /// Submissions whose answer was lost (node killed mid-request); they may or may not exist.
    pub ambiguous: usize,
    /// Accepted and delivered (receipt verified at the sender, entry in the recipient's inbox).
    pub delivered: usize,
    /// Accepted and expired undelivered (reported to the operator as an expiry).
    pub expired: usize,
    /// Accepted and neither: must be zero.
    pub undelivered: usize,
    /// Duplicate deliveries and hand-offs the nodes answered from their stores (a lower bound:
    /// a node killed before the harness read its counter loses the count).
    pub duplicates_suppressed: u64,
    /// Transmissions beyond the first, summed over every accepted message (from the outboxes).
    pub retries: u64,
    /// Messages handed to a relay at least once.
    pub relay_handoffs: u64,
    /// Messages that reached their recipient through a relay.
    pub delivered_via_relay: u64,
    /// Submit → verified receipt.
    pub latency: Latency,
    /// Delivered requests per second, first submission to last verified receipt.
    pub throughput_per_s: f64,
    /// Node kills (kill -9) and restarts.
    pub kills: u64,
    /// Relay outages.
    pub relay_outages: u64,
    /// Link cuts: both directions, one direction.
    pub link_cuts: u64,
    /// One-way cuts among them.
    pub one_way_cuts: u64,
    /// Slowed links.
    pub slow_links: u64,
    /// Nodes isolated from everyone at once.
    pub isolations: u64,
    /// Partitions (the final one, still active at the heal).
    pub partitions: u64,
    /// What was still broken when the faulty phase ended, and what the heal had to clear.
    pub at_heal: AtHealReport,
    /// What the hostile member sent and got.
    pub hostile: HostileStats,
    /// Seconds from the end of the final heal until every outbox and relay was idle.
    pub converge_after_heal_s: f64,
    /// Seconds the heal itself took (restart the dead nodes, lift every fault on every node).
    pub heal_s: f64,
    /// Pending work over all nodes after the heal: (seconds since the heal, pending), about
    /// every 100 ms of polling.
    pub converge_curve: Vec<(f64, usize)>,
    /// The nodes (index, pending) still busy at the last poll before convergence: what the
    /// tail of the convergence waited on.
    pub last_busy: Vec<(usize, usize)>,
    /// Retry settings of the nodes: `production` (1 s base, 60 s cap, reconnect probe) or
    /// `short` (the old 200 ms / 1.5 s harness setting).
    pub retries_profile: String,
    /// Lifetime of routine messages, seconds (None: the production default).
    pub routine_lifetime_s: Option<u64>,
    /// Expired messages whose expiry the sender recorded in its audit trail (the record the
    /// operator's alert comes with).
    pub expired_reported: usize,
    /// Dials the reconnect probes started (read at the end; a killed node loses its count).
    pub probe_dials: u64,
    /// Whether convergence happened within the bound.
    pub converged: bool,
    /// Resource use.
    pub resources: Resources,
    /// Seconds: start-up of all nodes, the faulty phase, the whole run.
    pub startup_s: f64,
    /// Faulty phase length.
    pub fault_phase_s: f64,
    /// Whole run.
    pub wall_clock_s: f64,
    /// Latency histogram: upper bound in ms → count.
    pub histogram: Vec<(f64, u64)>,
    /// Every violated invariant (empty on success).
    pub violations: Vec<String>,
    /// The command line that repeats the run.
    pub reproduce: String,
}

impl LiveReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok() { "PASSED" } else { "FAILED" };
        let _ = writeln!(
            out,
            "live run {verdict}: seed={} nodes={} relays={} faults={}",
            self.seed, self.nodes, self.relays, self.faults
        );
        let _ = writeln!(
            out,
            "  accepted {} ({} status replies; {} not accepted, {} ambiguous) delivered {} expired {} ({} reported) undelivered {}",
            self.accepted, self.status_replies, self.not_accepted, self.ambiguous,
            self.delivered, self.expired, self.expired_reported, self.undelivered
        );
        let _ = writeln!(
            out,
            "  duplicates suppressed {} retries {} relay hand-offs {} delivered via relay {}",
            self.duplicates_suppressed, self.retries, self.relay_handoffs, self.delivered_via_relay
        );
        let _ = writeln!(
            out,
            "  submit→receipt ms: p50 {:.1} p95 {:.1} p99 {:.1} max {:.1} ({} samples); throughput {:.1} req/s",
            self.latency.p50_ms, self.latency.p95_ms, self.latency.p99_ms, self.latency.max_ms,
            self.latency.samples, self.throughput_per_s
        );
        let _ = writeln!(
            out,
            "  faults: {} kills, {} relay outages, {} link cuts ({} one-way), {} slow links, {} isolations, {} partitions; hostile sent {} (answered {}, failed {})",
            self.kills, self.relay_outages, self.link_cuts, self.one_way_cuts, self.slow_links,
            self.isolations, self.partitions, self.hostile.sent.values().sum::<u64>(), self.hostile.answered,
            self.hostile.failed
        );
        let _ = writeln!(
            out,
            "  at the heal: partition {}+{} nodes (from {:.1} s), isolated relay {}, {} nodes down, {} faulty links; {} pending ({} on nodes that were down)",
            self.at_heal.partition_sides.0, self.at_heal.partition_sides.1,
            self.at_heal.partition_from_s,
            self.at_heal.isolated_relay.map_or("none".to_owned(), |relay| relay.to_string()),
            self.at_heal.nodes_down, self.at_heal.faulty_links, self.at_heal.pending,
            self.at_heal.pending_on_nodes_down
        );
        let _ = writeln!(
            out,
            "  converged {} s after the final heal (heal took {} s; {} retries, routine lifetime {}; {} probe dials){}",
            round2(self.converge_after_heal_s),
            round2(self.heal_s),
            self.retries_profile,
            self.routine_lifetime_s.map_or("default".to_owned(), |s| format!("{s} s")),
            self.probe_dials,
            if self.converged {
                ""
            } else {
                " (NOT within the bound)"
            }
        );
        let _ = writeln!(
            out,
            "  peak RSS {:.0} MiB total, {:.1} MiB largest node; CPU {:.1} s ({:.0} % of the machine); start-up {:.1} s, faulty phase {:.1} s, run {:.1} s",
            self.resources.peak_rss_sum_mib, self.resources.peak_rss_max_node_mib,
            self.resources.cpu_seconds, self.resources.cpu_share_of_machine * 100.0,
            self.startup_s, self.fault_phase_s, self.wall_clock_s
        );
        for violation in self.violations.iter().take(20) {
            let _ = writeln!(out, "  VIOLATION: {violation}");
        }
        if self.violations.len() > 20 {
            let _ = writeln!(out, "  … and {} more", self.violations.len() - 20);
        }
        let _ = writeln!(out, "  reproduce: {}", self.reproduce);
        out
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Log-spaced latency buckets (upper bounds, ms) and their counts.
pub fn histogram(samples_us: &[u64]) -> Vec<(f64, u64)> {
    // 0.25 ms … ~64 s, four buckets per doubling.
    let bounds: Vec<f64> = (0..73)
        .map(|step| 0.25 * 2f64.powf(f64::from(step) / 4.0))
        .collect();
    let mut counts = vec![0u64; bounds.len()];
    for sample in samples_us {
        let ms = *sample as f64 / 1000.0;
        let index = bounds
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(bounds.len() - 1);
        counts[index] += 1;
    }
    let first = counts.iter().position(|count| *count > 0).unwrap_or(0);
    let last = counts.iter().rposition(|count| *count > 0).unwrap_or(0);
    bounds
        .into_iter()
        .zip(counts)
        .skip(first)
        .take(last + 1 - first)
        .collect()
}

/// Samples RSS and CPU of the node processes from `/proc` (Linux; elsewhere every read fails
/// and the figures stay zero).
#[derive(Default)]
pub(crate) struct ProcSampler {
    /// Last CPU ticks seen per pid (a killed process keeps its last figure).
    cpu_ticks: BTreeMap<u32, u64>,
    pub(crate) resources: Resources,
}

/// `/proc/PID/stat` counts CPU in clock ticks: USER_HZ is 100 on every Linux target.
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcSampler {
    /// One sample over `pids`.
    pub(crate) fn sample(&mut self, pids: &[u32]) {
        let mut sum_kib = 0u64;
        for pid in pids {
            let Some(rss_kib) = rss_kib(*pid) else {
                continue;
            };
            sum_kib += rss_kib;
            self.resources.peak_rss_max_node_mib = self
                .resources
                .peak_rss_max_node_mib
                .max(rss_kib as f64 / 1024.0);
            if let Some(ticks) = cpu_ticks(*pid) {
                self.cpu_ticks.insert(*pid, ticks);
            }
        }
        self.resources.peak_rss_sum_mib =
            self.resources.peak_rss_sum_mib.max(sum_kib as f64 / 1024.0);
        self.resources.samples += 1;
        self.resources.cpu_seconds = self.cpu_ticks.values().sum::<u64>() as f64 / TICKS_PER_SECOND;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_histogram_cover_every_sample() {
        let samples: Vec<u64> = (1..=1000).map(|ms| ms * 1000).collect();
        let latency = Latency::of(&samples);
        assert_eq!(latency.samples, 1000);
        assert!((latency.p50_ms - 500.0).abs() < 1.5);
        assert!((latency.max_ms - 1000.0).abs() < 0.01);
        let histogram = histogram(&samples);
        assert_eq!(histogram.iter().map(|(_, count)| count).sum::<u64>(), 1000);
        let report = LiveReport {
            latency,
            histogram,
            ..LiveReport::default()
        };
        let svg = super::super::plot::histogram_svg(&report).expect("drawn");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("p50 500"), "the median is marked: {svg}");
    }

    #[test]
    fn this_process_can_be_sampled() {
        let mut sampler = ProcSampler::default();
        sampler.sample(&[std::process::id()]);
        if cfg!(target_os = "linux") {
            assert!(sampler.resources.peak_rss_sum_mib > 0.0);
        }
    }
}
