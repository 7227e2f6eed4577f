//! The deterministic simulation (`simnet sim`): many real delivery cores, one virtual network,
//! virtual time, injected faults, continuous invariant checks. Modelled on TigerBeetle's VOPR.
//!
//! Data flow. [`run`] builds the [`world`] (identities, signed roster), plans the [`workload`],
//! schedules the fault injector's events and the heal, then pops [`network::SimEvent`]s in
//! (virtual time, sequence) order until the run is over. Each member node and relay is a real
//! `quickfreeze_proto::core::Core` over a `MemoryStore`, driven exactly as the daemon drives it:
//!
//! 1. an input (`submit`, `acknowledge`, `handle_timeout`, `handle_request`, `handle_response`,
//!    `handle_request_failed`) with the node's own clock (true time plus its skew);
//! 2. `store.flush()` – before anything produced since the last flush leaves the node;
//! 3. the events are shown (checked against the ground truth, counted, hashed into the digest),
//!    the response and the transmits go onto the virtual network, and the node's next wake-up is
//!    scheduled from `poll_timeout`.
//!
//! Every transmit gets exactly one outcome: its response after the links' latency, or a failure
//! when the request timeout expires (lost request, lost response, partition, dead peer).
//! Outcomes addressed to a crashed incarnation are dropped, as a dead process's connections die
//! with it. A crash takes the store out of the core and drops every unflushed write
//! (`MemoryStore::crash`); the restart rebuilds the core from that store, the same identity and
//! the roster stored in it.
//!
//! Phases. The *safety* phase runs the workload under faults for `duration_ms`. Then the *heal*:
//! partitions end, crashed nodes restart, the hostile member stops, loss and duplication stop.
//! The *liveness* phase runs until every accepted message is delivered or expired (failing after
//! `liveness_max_ms`), then a quiet period checks that the network settles. The first violated
//! invariant ends the run with the seed printed, so it can be replayed exactly.

pub mod config;
mod engine;
mod hostile;
pub mod invariants;
mod network;
pub mod report;
pub mod scenario;
pub mod script;
pub mod sweep;
pub(crate) mod workload;
mod world;

use std::fmt;
use std::time::Instant;

pub use config::{FaultLevel, FaultProfile, SimConfig};
pub use invariants::{Invariant, Violation};
pub use report::{LatencySummary, SimReport};
pub use scenario::Scenario;
pub use workload::MARKER_PREFIX;

use engine::Simulator;

/// A failed run: the seed to replay it, the violation, and the figures up to the failure.
#[derive(Debug)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// What broke.
    pub violation: Violation,
    /// The report up to the failure.
    pub report: Box<SimReport>,
    /// The command line that replays the run.
    pub reproduce: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} {}\nreproduce: {}",
            self.seed, self.violation, self.reproduce
        )
    }
}

impl std::error::Error for SimFailure {}

/// Runs one simulation. `Ok` when every invariant held; the report has the figures either way.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let started = Instant::now();
    let mut simulator = match Simulator::new(config.clone()) {
        Ok(simulator) => simulator,
        Err(violation) => {
            return Err(SimFailure {
                seed: config.seed,
                violation,
                report: Box::new(SimReport {
                    seed: config.seed,
                    ..SimReport::default()
                }),
                reproduce: config.command_line(),
            })
        }
    };
    let result = simulator.run_to_end();
    let mut report = simulator.finish_report();
    report.wall_clock_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(()) => Ok(report),
        Err(violation) => {
            report.violation = Some(violation.clone());
            Err(SimFailure {
                seed: config.seed,
                violation,
                report: Box::new(report),
                reproduce: config.command_line(),
            })
        }
    }
}

/// Plays a scripted scenario with `seed`: the run must hold every invariant and then show the
/// story happened as written ([`Scenario::check`]).
pub fn run_scenario(scenario: &Scenario, seed: u64) -> Result<SimReport, SimFailure> {
    let config = scenario.config(seed);
    let report = run(&config)?;
    match (scenario.check)(&report) {
        Ok(()) => Ok(report),
        Err(detail) => {
            let violation = Violation {
                invariant: Invariant::Scenario,
                at_ms: report.end_at_ms,
                detail: format!("{}: {detail}", scenario.name),
            };
            let mut report = report;
            report.violation = Some(violation.clone());
            Err(SimFailure {
                seed,
                violation,
                report: Box::new(report),
                reproduce: config.command_line(),
            })
        }
    }
}
