//! What one live run looks like: its size, rate, faults, seed, and how the nodes retry.

use std::path::PathBuf;
use std::time::Duration;

use quickfreeze_node::testnet::NodeCommand;

use crate::fault_level::FaultLevel;

/// Settings of one live run.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Member nodes.
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Requests to submit.
    pub messages: usize,
    /// Requests per second (the bursts average to this).
    pub rate: f64,
    /// Fault level.
    pub faults: FaultLevel,
    /// Seed of the workload and the fault schedule.
    pub seed: u64,
    /// Length of the faulty phase (default: the workload's length plus a quarter, at least 10 s).
    pub duration: Option<Duration>,
    /// How to start a node.
    pub node_command: NodeCommand,
    /// Where the data directories go (default: a temporary directory, removed afterwards).
    pub work_dir: Option<PathBuf>,
    /// Where `report.json`-style files and the histogram go.
    pub report_dir: Option<PathBuf>,
    /// Longest wait for convergence after the heal.
    pub converge_timeout: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Retry quickly (200 ms base, 1.5 s cap, 2 s custody re-check) instead of the production
    /// defaults (1 s base, 60 s cap, 60 s custody re-check, reconnect probe every second).
    pub short_retries: bool,
    /// Lifetime of routine messages on every node, seconds (default: the production 14 days).
    /// With a few seconds, routine requests (about 15 % of the workload) and status replies to
    /// them expire when their recipient stays out of reach, and the run checks that each such
    /// expiry was reported.
    pub routine_lifetime_s: Option<u64>,
    /// The nodes' `retry.reconnect_probe_ms` (default: the node's default; 0 turns the probe
    /// off, to measure what it buys).
    pub reconnect_probe_ms: Option<u64>,
}

impl LiveConfig {
    /// A run with defaults for everything but the sizes.
    pub fn new(
        nodes: usize,
        relays: usize,
        messages: usize,
        rate: f64,
        faults: FaultLevel,
        seed: u64,
        node_command: NodeCommand,
    ) -> LiveConfig {
        LiveConfig {
            nodes,
            relays,
            messages,
            rate,
            faults,
            seed,
            duration: None,
            node_command,
            work_dir: None,
            report_dir: None,
            converge_timeout: Duration::from_secs(120),
            progress: false,
            short_retries: false,
            routine_lifetime_s: None,
            reconnect_probe_ms: None,
        }
    }

    pub(super) fn fault_phase(&self) -> Duration {
        self.duration.unwrap_or_else(|| {
            let workload = self.messages as f64 / self.rate.max(0.1);
            Duration::from_secs_f64((workload * 1.25 + 2.0).max(10.0))
        })
    }

    /// The command line that repeats this run.
    pub fn command_line(&self) -> String {
        let faults = match self.faults {
            FaultLevel::None => "none",
            FaultLevel::Mild => "mild",
            FaultLevel::Harsh => "harsh",
        };
        let mut line = format!(
            "simnet live --nodes {} --relays {} --messages {} --rate {} --faults {faults} --seed {}",
            self.nodes, self.relays, self.messages, self.rate, self.seed
        );
        if let Some(duration) = self.duration {
            line.push_str(&format!(" --duration {}", duration.as_secs_f64()));
        }
        if self.short_retries {
            line.push_str(" --short-retries");
        }
        if let Some(lifetime) = self.routine_lifetime_s {
            line.push_str(&format!(" --routine-lifetime-s {lifetime}"));
        }
        if let Some(probe) = self.reconnect_probe_ms {
            line.push_str(&format!(" --reconnect-probe-ms {probe}"));
        }
        line
    }
}
