//! `simnet live --spread`: how long a change of trust takes to reach every node of an idle
//! live network.
//!
//! Starts the nodes and relays as a normal live run does (real processes on loopback, no
//! faults, no workload), waits until every member holds its connections to its relays, then:
//!
//! 1. signs the next roster serial (same members) with the network's authority key and installs
//!    it at member 0 (`roster install` into the running node); polls every node's `status` until
//!    each shows the new serial;
//! 2. signs a revocation notice for the last member and hands it to member 0 (`roster revoke
//!    --install`); polls until every node but the revoked one shows it.
//!
//! Each time runs from just before the install request to the poll that saw the last node take
//! it; polling walks all nodes in turn, so the resolution is one sweep (reported).

use std::path::Path;
use std::time::{Duration, Instant};

use quickfreeze_keys::{AuthorityKey, Revocation, SignedRevocation, SignedRoster, Timestamp};
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse, StatusReport};
use quickfreeze_node::testnet::NodeProcess;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use super::config::LiveConfig;
use super::network::build_network;

const CONSOLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a spread measurement found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpreadReport {
    /// Member nodes.
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Seconds to start every node.
    pub startup_s: f64,
    /// Seconds until every member held its relay connections.
    pub settle_s: f64,
    /// Milliseconds from `roster install` at one node to every node showing the serial.
    pub roster_spread_ms: Option<f64>,
    /// Milliseconds from the notice at one node to every other node showing it.
    pub revocation_spread_ms: Option<f64>,
    /// Longest poll sweep over all nodes (the resolution of the figures above).
    pub poll_sweep_max_ms: f64,
    /// How long each step was allowed.
    pub timeout_s: u64,
}

impl SpreadReport {
    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let show = |value: Option<f64>| {
            value.map_or_else(
                || format!("not everywhere within {} s", self.timeout_s),
                |ms| format!("{ms:.0} ms"),
            )
        };
        format!(
            "spread     {} nodes + {} relays, idle; startup {:.1} s, relay links up after {:.1} s\n\
             roster     new serial at one node -> every node: {}\n\
             revocation notice at one node -> every other node: {}\n\
             resolution one status sweep over all nodes, at most {:.0} ms\n",
            self.nodes,
            self.relays,
            self.startup_s,
            self.settle_s,
            show(self.roster_spread_ms),
            show(self.revocation_spread_ms),
            self.poll_sweep_max_ms,
        )
    }
}

fn ask(dir: &Path, request: &ControlRequest) -> Result<ControlResponse, String> {
    let mut client =
        ControlClient::connect(dir, CONSOLE_TIMEOUT).map_err(|error| error.to_string())?;
    client.request(request).map_err(|error| error.to_string())
}

fn status(dir: &Path) -> Option<StatusReport> {
    match ask(dir, &ControlRequest::Status) {
        Ok(ControlResponse::Status { report }) => Some(*report),
        _ => None,
    }
}

/// Polls every node in `dirs` until `holds` is true of each (or `timeout`); the time since
/// `started` of the sweep that saw the last one, and the longest sweep.
fn wait_everywhere(
    dirs: &[&Path],
    started: Instant,
    timeout: Duration,
    holds: impl Fn(&StatusReport) -> bool,
) -> (Option<f64>, f64) {
    let mut done = vec![false; dirs.len()];
    let mut sweep_max_ms: f64 = 0.0;
    while started.elapsed() < timeout {
        let sweep = Instant::now();
        for (index, dir) in dirs.iter().enumerate() {
            if !done[index] {
                done[index] = status(dir).is_some_and(|report| holds(&report));
            }
        }
        sweep_max_ms = sweep_max_ms.max(sweep.elapsed().as_secs_f64() * 1000.0);
        if done.iter().all(|done| *done) {
            return (Some(started.elapsed().as_secs_f64() * 1000.0), sweep_max_ms);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (None, sweep_max_ms)
}

/// Runs the measurement (see the module docs). `Err` when the network could not be set up.
pub fn measure(config: &LiveConfig, timeout: Duration) -> Result<SpreadReport, String> {
    if config.nodes < 3 {
        return Err("a spread measurement needs at least 3 member nodes".into());
    }
    let temp = tempfile::tempdir().map_err(|error| error.to_string())?;
    let root = match &config.work_dir {
        Some(dir) => dir.clone(),
        None => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&root).map_err(|error| format!("{}: {error}", root.display()))?;
    let net = build_network(&root, config, false)?;
    // `Testnet::build` signs with the first key of the seeded stream: the same key here.
    let authority = AuthorityKey::generate(&mut ChaCha20Rng::seed_from_u64(config.seed));
    let started = Instant::now();
    let mut processes = Vec::with_capacity(net.nodes.len());
    for node in &net.nodes {
        processes.push(NodeProcess::spawn(&config.node_command, &node.data_dir)?);
    }
    let result = (|| {
        for process in &mut processes {
            process.wait_ready(Duration::from_secs(120))?;
        }
        let mut report = SpreadReport {
            nodes: config.nodes,
            relays: config.relays,
            startup_s: started.elapsed().as_secs_f64(),
            timeout_s: timeout.as_secs(),
            ..SpreadReport::default()
        };
        // Idle and settled: every member connected to each of its relays.
        let settle = Instant::now();
        let relay_ids: Vec<String> = net.nodes[config.nodes..]
            .iter()
            .map(|node| node.node_id.to_string())
            .collect();
        let member_dirs: Vec<&Path> = net.nodes[..config.nodes]
            .iter()
            .map(|node| node.data_dir.as_path())
            .collect();
        let mut settled = vec![false; member_dirs.len()];
        while settle.elapsed() < timeout && !settled.iter().all(|done| *done) {
            for (index, dir) in member_dirs.iter().enumerate() {
                if settled[index] {
                    continue;
                }
                settled[index] = match ask(dir, &ControlRequest::Peers) {
                    Ok(ControlResponse::Peers { rows }) => rows
                        .iter()
                        .filter(|row| relay_ids.contains(&row.node_id))
                        .filter(|row| {
                            net.roster.members[index]
                                .relays
                                .iter()
                                .any(|relay| relay.to_string() == row.node_id)
                        })
                        .all(|row| row.connected),
                    _ => false,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        report.settle_s = settle.elapsed().as_secs_f64();
        let all_dirs: Vec<&Path> = net
            .nodes
            .iter()
            .map(|node| node.data_dir.as_path())
            .collect();
        let installer = net.nodes[0].data_dir.as_path();

        // 1. A new roster serial at member 0.
        let mut roster = net.roster.clone();
        roster.serial += 1;
        let serial = roster.serial;
        let mut signed = SignedRoster::new(&roster).map_err(|error| error.to_string())?;
        signed
            .sign(&authority, None)
            .map_err(|error| error.to_string())?;
        let bytes = signed.to_bytes().map_err(|error| error.to_string())?;
        let install = Instant::now();
        match ask(
            installer,
            &ControlRequest::InstallRoster {
                signed_hex: hex::encode(&bytes),
            },
        )? {
            ControlResponse::RosterInstalled { .. } => {}
            other => return Err(format!("roster install refused: {other:?}")),
        }
        let (spread, sweep) = wait_everywhere(&all_dirs, install, timeout, |status| {
            status.roster_serial >= serial
        });
        report.roster_spread_ms = spread;
        report.poll_sweep_max_ms = sweep;

        // 2. A notice revoking the last member, at member 0.
        let revoked = config.nodes - 1;
        let revocation = Revocation {
            network: roster.network.clone(),
            serial: 1,
            issued_at: Timestamp::now(),
            nodes: vec![net.nodes[revoked].node_id],
            keys: Vec::new(),
            reason: "simnet live --spread: measured revocation".into(),
        };
        let mut notice = SignedRevocation::new(&revocation).map_err(|error| error.to_string())?;
        notice
            .sign(&authority, &roster)
            .map_err(|error| error.to_string())?;
        let bytes = notice.to_bytes().map_err(|error| error.to_string())?;
        let others: Vec<&Path> = all_dirs
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != revoked)
            .map(|(_, dir)| *dir)
            .collect();
        let apply = Instant::now();
        match ask(
            installer,
            &ControlRequest::ApplyRevocation {
                signed_hex: hex::encode(&bytes),
            },
        )? {
            ControlResponse::RevocationApplied { .. } => {}
            other => return Err(format!("revocation refused: {other:?}")),
        }
        let (spread, sweep) = wait_everywhere(&others, apply, timeout, |status| {
            status.revocation_serial >= 1
        });
        report.revocation_spread_ms = spread;
        report.poll_sweep_max_ms = report.poll_sweep_max_ms.max(sweep);
        Ok(report)
    })();
    for process in &mut processes {
        let _ = process.kill9();
    }
    result
}
