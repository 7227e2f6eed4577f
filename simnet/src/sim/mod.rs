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
mod hostile;
pub mod invariants;
mod network;
pub mod report;
pub mod scenario;
pub mod sweep;
pub(crate) mod workload;
mod world;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{NodeId, SignedRoster, Timestamp};
use quickfreeze_proto::core::{
    Core, CoreConfig, Event, MemoryStore, OutboxState, RelayState, Store, SubmitError,
};
use quickfreeze_proto::frame::{Batch, Frame};
use quickfreeze_proto::payload::PayloadKind;
use quickfreeze_proto::receipt::ReceiptKind;
use quickfreeze_proto::{MessageId, Priority};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

pub use config::{FaultLevel, FaultProfile, SimConfig};
pub use invariants::{Invariant, Violation};
pub use report::{LatencySummary, SimReport};
pub use scenario::Scenario;
pub use workload::MARKER_PREFIX;

use hostile::Hostile;
use invariants::{check_relay_blind, MessageKey, MessageTruth, Truth};
use network::{base_latency_ms, CutDirection, EventQueue, Partitions, Request, SimEvent};
use workload::PlannedMessage;
use world::{NodeKind, World, START};

/// A node woken this many times at one virtual instant is livelocked.
const MAX_WAKES_PER_INSTANT: u32 = 10_000;
/// An officer whose node is down tries again this much later.
const OFFICER_RETRY_MS: u64 = 5_000;
/// Most rejection reasons kept in the report.
const MAX_REJECTION_SAMPLES: usize = 10;

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

struct SimNode {
    kind: NodeKind,
    core: Option<Core<MemoryStore>>,
    store_while_down: Option<MemoryStore>,
    incarnation: u32,
    wake_at_ms: Option<u64>,
    skew_ms: i64,
    /// (instant, wakes at it): the livelock guard.
    wakes_at_instant: (u64, u32),
}

impl SimNode {
    fn store(&self) -> Option<&MemoryStore> {
        match &self.core {
            Some(core) => Some(core.store()),
            None => self.store_while_down.as_ref(),
        }
    }
}

/// One run's whole state.
struct Simulator {
    config: SimConfig,
    world: World,
    core_config: CoreConfig,
    nodes: Vec<SimNode>,
    queue: EventQueue,
    partitions: Partitions,
    now_ms: u64,
    liveness: bool,
    plan: Vec<PlannedMessage>,
    pending_submissions: usize,
    pending_acknowledgements: usize,
    net_rng: ChaCha8Rng,
    fault_rng: ChaCha8Rng,
    officer_rng: ChaCha8Rng,
    hostile_rng: ChaCha8Rng,
    hostile: Option<Hostile>,
    truth: Truth,
    /// Connections opened by members without addresses: (opener, peer) → usable until (ms).
    connections: BTreeMap<(usize, usize), u64>,
    report: SimReport,
    digest: Sha256,
    converged_at_ms: Option<u64>,
    last_finished_at_ms: u64,
    /// (priority, submit → delivered) of every delivered message.
    latencies_ms: Vec<(Priority, u64)>,
    /// Cuts made by scenario steps (ended by `Action::MendAll`).
    scripted_cuts: Vec<u64>,
    /// Per node: crash after the next stored message, staying down this long (scenarios).
    crash_after_store: Vec<Option<u64>>,
}

fn harness(at_ms: u64, detail: impl Into<String>) -> Violation {
    Violation {
        invariant: Invariant::Harness,
        at_ms,
        detail: detail.into(),
    }
}

fn uniform(rng: &mut ChaCha8Rng, min: u64, max: u64) -> u64 {
    if max <= min {
        min
    } else {
        rng.random_range(min..=max)
    }
}

impl Simulator {
    fn new(config: SimConfig) -> Result<Simulator, Violation> {
        config.validate().map_err(|error| harness(0, error))?;
        let world = world::build_world(&config).map_err(|error| harness(0, error))?;
        let mut core_config = CoreConfig {
            injected_bugs: config.injected_bugs.clone(),
            ..CoreConfig::default()
        };
        if let Some(lifetime_ms) = config.message_lifetime_ms {
            core_config.lifetime_emergency_ms = lifetime_ms;
            core_config.lifetime_urgent_ms = lifetime_ms;
            core_config.lifetime_routine_ms = lifetime_ms;
        }
        let mut fault_rng = world::stream(config.seed, "faults");
        let skew_max = i64::try_from(config.profile.clock_skew_ms).unwrap_or(i64::MAX / 4);
        let mut nodes = Vec::with_capacity(world.kinds.len());
        for kind in &world.kinds {
            let skew_ms = if skew_max > 0 && *kind != NodeKind::Hostile {
                fault_rng.random_range(-skew_max..=skew_max)
            } else {
                0
            };
            nodes.push(SimNode {
                kind: *kind,
                core: None,
                store_while_down: None,
                incarnation: 0,
                wake_at_ms: None,
                skew_ms,
                wakes_at_instant: (0, 0),
            });
        }
        let plan = match &config.scenario {
            Some(scenario) => scenario
                .sends()
                .enumerate()
                .map(|(index, (at_ms, sender, recipient, kind))| PlannedMessage {
                    at_ms,
                    sender,
                    recipient,
                    kind,
                    marker: format!("{MARKER_PREFIX}{:016x}-{index:06}", config.seed),
                })
                .collect(),
            None => workload::plan(
                &mut world::stream(config.seed, "workload"),
                config.seed,
                world.members(),
                config.messages,
                config.duration_ms,
            ),
        };
        let hostile = world
            .hostile
            .map(|index| Hostile::new(index, world::identity(config.seed, index), config.seed));
        let report = SimReport {
            seed: config.seed,
            nodes: config.nodes,
            relays: config.relays,
            relay_only_members: world.relay_only,
            hostile_member: hostile.is_some(),
            faults: Some(config.faults),
            duration_ms: config.duration_ms,
            messages_planned: plan.len(),
            ..SimReport::default()
        };
        let node_count = nodes.len();
        let mut simulator = Simulator {
            net_rng: world::stream(config.seed, "network"),
            officer_rng: world::stream(config.seed, "officers"),
            hostile_rng: world::stream(config.seed, "hostile"),
            fault_rng,
            pending_submissions: plan.len(),
            plan,
            config,
            world,
            core_config,
            nodes,
            queue: EventQueue::default(),
            partitions: Partitions::default(),
            now_ms: 0,
            liveness: false,
            pending_acknowledgements: 0,
            hostile,
            truth: Truth::new(node_count),
            connections: BTreeMap::new(),
            report,
            digest: Sha256::new(),
            converged_at_ms: None,
            last_finished_at_ms: 0,
            latencies_ms: Vec::new(),
            scripted_cuts: Vec::new(),
            crash_after_store: vec![None; node_count],
        };
        for index in 0..node_count {
            if simulator.nodes[index].kind != NodeKind::Hostile {
                let core = simulator.build_core(index, MemoryStore::new())?;
                simulator.nodes[index].core = Some(core);
                simulator.release(index)?;
            }
        }
        simulator.schedule_initial_events();
        Ok(simulator)
    }

    fn schedule_initial_events(&mut self) {
        for index in 0..self.plan.len() {
            let at_ms = self.plan[index].at_ms;
            self.queue.push(at_ms, SimEvent::Submit { index });
        }
        let duration_ms = self.config.duration_ms;
        let profile = self.config.profile.clone();
        let members = self.world.members() as f64;
        let crashes = poisson_count(&mut self.fault_rng, profile.crashes_per_node * members);
        for _ in 0..crashes {
            let at_ms = self.fault_rng.random_range(0..duration_ms);
            self.queue.push(at_ms, SimEvent::ChaosCrash);
        }
        let outages = poisson_count(
            &mut self.fault_rng,
            profile.outages_per_relay * self.config.relays as f64,
        );
        for _ in 0..outages {
            let at_ms = self.fault_rng.random_range(0..duration_ms);
            self.queue.push(at_ms, SimEvent::ChaosRelayOutage);
        }
        if profile.partition_interval_ms > 0 && profile.max_partitions > 0 {
            let at_ms = uniform(&mut self.fault_rng, 0, profile.partition_interval_ms);
            self.queue.push(at_ms, SimEvent::ChaosPartition);
        }
        if self.hostile.is_some() {
            let at_ms = uniform(&mut self.hostile_rng, 0, profile.hostile_interval_ms);
            self.queue.push(at_ms, SimEvent::Hostile);
        }
        let scripted: Vec<(usize, u64)> = self
            .config
            .scenario
            .iter()
            .flat_map(|scenario| {
                scenario
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(_, step)| !matches!(step.action, scenario::Action::Send { .. }))
                    .map(|(index, step)| (index, step.at_ms))
            })
            .collect();
        for (step, at_ms) in scripted {
            self.queue.push(at_ms, SimEvent::Script { step });
        }
        self.queue.push(duration_ms, SimEvent::Heal);
        self.queue
            .push(self.config.check_interval_ms.max(1), SimEvent::Check);
    }

    // ----- the loop ----------------------------------------------------------------------

    fn run_to_end(&mut self) -> Result<(), Violation> {
        let mut events: u64 = 0;
        let mut heal_at_ms = None;
        while let Some((at_ms, sequence, event)) = self.queue.pop() {
            if let Some(heal) = heal_at_ms {
                match self.converged_at_ms {
                    Some(converged) if at_ms > converged + self.config.quiesce_ms => break,
                    None if at_ms > heal + self.config.liveness_max_ms => {
                        self.now_ms = heal + self.config.liveness_max_ms;
                        return Err(self.liveness_failure());
                    }
                    _ => {}
                }
            }
            events += 1;
            self.report.events_processed = events;
            if events > self.config.max_events {
                return Err(self.violation(
                    Invariant::Livelock,
                    format!(
                        "event budget of {} exceeded ({} events queued)",
                        self.config.max_events,
                        self.queue.len()
                    ),
                ));
            }
            self.now_ms = at_ms;
            self.record(&[at_ms, sequence, event_code(&event)]);
            if matches!(event, SimEvent::Heal) {
                heal_at_ms = Some(at_ms);
            }
            self.handle(event)?;
            if self.liveness && self.converged_at_ms.is_none() && self.is_converged() {
                self.converged_at_ms = Some(self.now_ms);
            }
        }
        self.report.end_at_ms = self.now_ms;
        if self.converged_at_ms.is_none() {
            return Err(self.liveness_failure());
        }
        self.final_checks()
    }

    fn handle(&mut self, event: SimEvent) -> Result<(), Violation> {
        match event {
            SimEvent::Wake { node } => self.on_wake(node),
            SimEvent::Submit { index } => self.on_submit(index),
            SimEvent::Acknowledge {
                node,
                sender,
                message_id,
            } => self.on_acknowledge(node, sender, message_id),
            SimEvent::RequestArrive(request) => self.on_request(*request),
            SimEvent::Outcome {
                node,
                incarnation,
                request_id,
                response,
            } => self.on_outcome(node, incarnation, request_id, response),
            SimEvent::ChaosCrash => self.on_chaos_crash(),
            SimEvent::ChaosRelayOutage => self.on_chaos_relay_outage(),
            SimEvent::ChaosPartition => {
                self.on_chaos_partition();
                Ok(())
            }
            SimEvent::PartitionEnd { id } => {
                self.partitions.remove(id);
                Ok(())
            }
            SimEvent::Restart { node, incarnation } => {
                if self.nodes[node].core.is_none() && self.nodes[node].incarnation == incarnation {
                    self.restart(node)?;
                }
                Ok(())
            }
            SimEvent::Hostile => self.on_hostile(),
            SimEvent::Heal => self.on_heal(),
            SimEvent::Script { step } => self.on_script(step),
            SimEvent::Check => {
                self.sweep()?;
                let next = self.now_ms + self.config.check_interval_ms.max(1);
                self.queue.push(next, SimEvent::Check);
                Ok(())
            }
        }
    }

    fn is_converged(&self) -> bool {
        self.pending_submissions == 0
            && self.pending_acknowledgements == 0
            && self.truth.unfinished == 0
    }

    fn violation(&self, invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            at_ms: self.now_ms,
            detail: detail.into(),
        }
    }

    fn record(&mut self, fields: &[u64]) {
        for field in fields {
            self.digest.update(field.to_le_bytes());
        }
    }

    // ----- clocks ------------------------------------------------------------------------

    fn local_now(&self, node: usize) -> Timestamp {
        let local =
            i128::from(START.0) + i128::from(self.now_ms) + i128::from(self.nodes[node].skew_ms);
        Timestamp(u64::try_from(local.max(0)).unwrap_or(u64::MAX))
    }

    fn to_global_ms(&self, node: usize, at: Timestamp) -> u64 {
        // i128: `at` may be far in the future (u64::MAX means "never" to some callers).
        let global = i128::from(at.0) - i128::from(START.0) - i128::from(self.nodes[node].skew_ms);
        u64::try_from(global.max(i128::from(self.now_ms))).unwrap_or(u64::MAX)
    }

    /// Whether `from` has a way to open a request to `to` (addresses, or a live connection
    /// `to` opened: to its own relays always, to others for a while after it used them).
    fn can_reach(&self, from: usize, to: usize) -> bool {
        !self.config.model_dial_limits
            || self.world.dialable[to]
            || self.world.relays_of[to].contains(&from)
            || self
                .connections
                .get(&(to, from))
                .is_some_and(|until_ms| *until_ms >= self.now_ms)
    }

    fn latency_ms(&mut self, from: usize, to: usize) -> u64 {
        let profile = &self.config.profile;
        let base = base_latency_ms(
            self.config.seed,
            from,
            to,
            profile.latency_min_ms,
            profile.latency_max_ms,
        );
        let jitter_ms = profile.jitter_ms;
        base + uniform(&mut self.net_rng, 0, jitter_ms)
    }

    // ----- driving cores -----------------------------------------------------------------

    fn build_core(&self, index: usize, store: MemoryStore) -> Result<Core<MemoryStore>, Violation> {
        let now = self.local_now(index);
        let stored = store
            .get_roster()
            .map_err(|error| harness(self.now_ms, error.to_string()))?;
        // A restarting node trusts the roster in its own store, verified against the pinned
        // authority set: exactly what the daemon does at start-up.
        let (roster, signed) = match stored {
            Some(bytes) => {
                let roster = SignedRoster::from_bytes(&bytes)
                    .and_then(|signed| signed.verify_pinned(&self.world.pinned, now))
                    .map_err(|error| {
                        harness(
                            self.now_ms,
                            format!("node {index}: stored roster does not verify: {error}"),
                        )
                    })?;
                (roster, bytes)
            }
            None => (self.world.roster.clone(), self.world.signed_roster.clone()),
        };
        let incarnation = u64::from(self.nodes[index].incarnation);
        // A fresh RNG per incarnation: a restarted process never replays its message ids.
        let rng_seed = world::derive_seed(
            self.config.seed,
            "core",
            ((index as u64) << 32) | incarnation,
        );
        let mut core = Core::new(
            world::identity(self.config.seed, index),
            roster,
            signed,
            self.core_config.clone(),
            store,
            rng_seed,
        )
        .map_err(|error| harness(self.now_ms, format!("node {index}: core: {error}")))?;
        core.announce_unacknowledged(now)
            .map_err(|error| harness(self.now_ms, format!("node {index}: core: {error}")))?;
        Ok(core)
    }

    fn core_mut(&mut self, node: usize) -> Result<&mut Core<MemoryStore>, Violation> {
        let at_ms = self.now_ms;
        self.nodes[node]
            .core
            .as_mut()
            .ok_or_else(|| harness(at_ms, format!("node {node} is down")))
    }

    fn flush(&mut self, node: usize) -> Result<(), Violation> {
        let at_ms = self.now_ms;
        self.core_mut(node)?
            .store_mut()
            .flush()
            .map_err(|error| harness(at_ms, error.to_string()))
    }

    /// Shows the node's events, sends its transmits and schedules its next wake-up. The caller
    /// has flushed (except in the deliberately broken mode).
    fn release(&mut self, node: usize) -> Result<(), Violation> {
        let Some(core) = self.nodes[node].core.as_mut() else {
            return Ok(());
        };
        let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
        let transmits: Vec<_> = std::iter::from_fn(|| core.poll_transmit()).collect();
        for event in events {
            self.on_core_event(node, event)?;
        }
        for transmit in transmits {
            self.transmit(node, transmit.to, transmit.request_id, transmit.bytes)?;
        }
        self.schedule_wake(node);
        Ok(())
    }

    fn schedule_wake(&mut self, node: usize) {
        let Some(core) = self.nodes[node].core.as_ref() else {
            return;
        };
        let Some(at) = core.poll_timeout() else {
            return;
        };
        let at_ms = self.to_global_ms(node, at);
        match self.nodes[node].wake_at_ms {
            Some(existing) if existing <= at_ms => {}
            _ => {
                self.nodes[node].wake_at_ms = Some(at_ms);
                self.queue.push(at_ms, SimEvent::Wake { node });
            }
        }
    }

    fn on_wake(&mut self, node: usize) -> Result<(), Violation> {
        if self.nodes[node].core.is_none() || self.nodes[node].wake_at_ms != Some(self.now_ms) {
            return Ok(()); // stale
        }
        self.nodes[node].wake_at_ms = None;
        let (instant, count) = self.nodes[node].wakes_at_instant;
        let count = if instant == self.now_ms { count + 1 } else { 1 };
        self.nodes[node].wakes_at_instant = (self.now_ms, count);
        if count > MAX_WAKES_PER_INSTANT {
            return Err(self.violation(
                Invariant::Livelock,
                format!("node {node} woke {count} times at one instant"),
            ));
        }
        let now = self.local_now(node);
        let core = self.core_mut(node)?;
        if core.poll_timeout().is_some_and(|at| at <= now) {
            core.handle_timeout(now);
        }
        self.flush(node)?;
        self.release(node)
    }

    // ----- the network -------------------------------------------------------------------

    fn transmit(
        &mut self,
        node: usize,
        to: NodeId,
        request_id: u64,
        bytes: Vec<u8>,
    ) -> Result<(), Violation> {
        let Some(&to) = self.world.index_of.get(&to) else {
            return Err(harness(
                self.now_ms,
                format!("node {node} transmitted to {to}, who is not in the roster"),
            ));
        };
        self.report.requests_sent += 1;
        self.record(&[node as u64, to as u64, request_id, bytes.len() as u64]);
        if !self.world.dialable[node] {
            // The connection this node opens stays usable for a while after the exchange.
            let until_ms =
                self.now_ms + self.config.request_timeout_ms + self.config.connection_idle_ms;
            self.connections.insert((node, to), until_ms);
        }
        self.count_transmissions(node, &bytes)?;
        let incarnation = self.nodes[node].incarnation;
        let deadline_ms = self.now_ms + self.config.request_timeout_ms;
        let profile = &self.config.profile;
        let (loss, duplication) = (profile.request_loss, profile.request_duplication);
        if !self.liveness && loss > 0.0 && self.net_rng.random_bool(loss) {
            self.report.requests_lost += 1;
            self.queue.push(
                deadline_ms,
                SimEvent::Outcome {
                    node,
                    incarnation,
                    request_id,
                    response: None,
                },
            );
            return Ok(());
        }
        let arrive_ms = self.now_ms + self.latency_ms(node, to);
        if !self.liveness && duplication > 0.0 && self.net_rng.random_bool(duplication) {
            self.report.requests_duplicated += 1;
            let later_ms = arrive_ms + uniform(&mut self.net_rng, 0, 1_000);
            self.queue.push(
                later_ms,
                SimEvent::RequestArrive(Box::new(Request {
                    from: node,
                    from_incarnation: incarnation,
                    to,
                    request_id,
                    bytes: bytes.clone(),
                    sent_at_ms: self.now_ms,
                    duplicate: true,
                })),
            );
        }
        self.queue.push(
            arrive_ms,
            SimEvent::RequestArrive(Box::new(Request {
                from: node,
                from_incarnation: incarnation,
                to,
                request_id,
                bytes,
                sent_at_ms: self.now_ms,
                duplicate: false,
            })),
        );
        Ok(())
    }

    /// Counts each sender's Deliver/Handoff transmissions of its own messages (for retries).
    fn count_transmissions(&mut self, node: usize, bytes: &[u8]) -> Result<(), Violation> {
        let batch = Batch::from_bytes(bytes).map_err(|error| {
            harness(
                self.now_ms,
                format!("node {node} transmitted an undecodable batch: {error}"),
            )
        })?;
        let me = self.world.ids[node];
        for frame in &batch.frames {
            let (Frame::Deliver(envelope) | Frame::Handoff(envelope)) = frame else {
                continue;
            };
            if matches!(frame, Frame::Handoff(_)) {
                self.report.relay_handoffs += 1;
            }
            if envelope.header.sender == me {
                if let Some(truth) = self
                    .truth
                    .messages
                    .get_mut(&(me, envelope.header.message_id))
                {
                    truth.transmissions += 1;
                }
            }
        }
        Ok(())
    }

    fn fail_request(&mut self, request: &Request) {
        if request.duplicate {
            return;
        }
        let deadline_ms = (request.sent_at_ms + self.config.request_timeout_ms).max(self.now_ms);
        self.queue.push(
            deadline_ms,
            SimEvent::Outcome {
                node: request.from,
                incarnation: request.from_incarnation,
                request_id: request.request_id,
                response: None,
            },
        );
    }

    fn on_request(&mut self, request: Request) -> Result<(), Violation> {
        let to = request.to;
        if self.nodes[to].kind == NodeKind::Hostile {
            let answer = match (&mut self.hostile, self.liveness) {
                (Some(hostile), false) => hostile.answer(&mut self.hostile_rng, &self.world),
                _ => None,
            };
            match answer {
                Some(bytes) => self.respond(&request, bytes),
                None => self.fail_request(&request),
            }
            return Ok(());
        }
        if self.nodes[to].core.is_none() || self.partitions.blocks(request.from, to) {
            self.fail_request(&request);
            return Ok(());
        }
        if !self.can_reach(request.from, to) {
            self.report.requests_undialable += 1;
            self.fail_request(&request);
            return Ok(());
        }
        self.inspect_request(&request);
        let now = self.local_now(to);
        let from_id = self.world.ids[request.from];
        let response = self
            .core_mut(to)?
            .handle_request(now, from_id, &request.bytes);
        let bug = self.config.bug_skip_flush_before_respond;
        let crash_probability = self.config.profile.crash_during_request;
        let crash = !self.liveness
            && crash_probability > 0.0
            && self.fault_rng.random_bool(crash_probability);
        if bug {
            // Deliberately wrong: the answer and the events leave before the flush.
            self.respond(&request, response.clone());
            self.release(to)?;
        }
        if crash {
            // kill -9 between the core's writes and the shell's flush.
            self.report.crashes_during_request += 1;
            self.crash(to)?;
            if !bug {
                self.fail_request(&request);
            }
            return Ok(());
        }
        self.flush(to)?;
        if let Some(down_ms) = self.crash_after_store[to] {
            let carries_message = Batch::from_bytes(&request.bytes).is_ok_and(|batch| {
                batch
                    .frames
                    .iter()
                    .any(|frame| matches!(frame, Frame::Deliver(_) | Frame::Handoff(_)))
            });
            if carries_message {
                // Scripted: stored and flushed, then dead before the receipt leaves.
                self.crash_after_store[to] = None;
                self.fail_request(&request);
                return self.crash_for(to, down_ms);
            }
        }
        if !bug {
            self.respond(&request, response);
        }
        self.release(to)
    }

    /// One scripted scenario step.
    fn on_script(&mut self, step: usize) -> Result<(), Violation> {
        use scenario::{Action, Who};
        let Some(action) = self
            .config
            .scenario
            .as_ref()
            .and_then(|scenario| scenario.steps.get(step))
            .map(|step| step.action.clone())
        else {
            return Err(harness(self.now_ms, format!("no scenario step {step}")));
        };
        let resolve = |who: &Who, world: &World| match who {
            Who::Node(node) => vec![*node],
            Who::RelaysOf(node) => world.relays_of[*node].clone(),
        };
        match action {
            Action::Send { .. } => {}
            Action::Crash(who) => {
                for node in resolve(&who, &self.world) {
                    self.crash(node)?;
                }
            }
            Action::Restart(who) => {
                for node in resolve(&who, &self.world) {
                    self.restart(node)?;
                }
            }
            Action::Isolate(nodes) => {
                let mut side = vec![false; self.nodes.len()];
                for node in nodes {
                    side[node] = true;
                }
                let id = self.partitions.add(side, CutDirection::Both);
                self.scripted_cuts.push(id);
                self.report.partitions += 1;
            }
            Action::CutLink { from, to } => {
                let mut side = vec![false; self.nodes.len()];
                let mut other = vec![false; self.nodes.len()];
                side[from] = true;
                other[to] = true;
                let id = self
                    .partitions
                    .add_between(side, other, CutDirection::OutOfSide);
                self.scripted_cuts.push(id);
                self.report.partitions += 1;
            }
            Action::MendAll => {
                for id in std::mem::take(&mut self.scripted_cuts) {
                    self.partitions.remove(id);
                }
            }
            Action::CrashAfterStore { node, down_ms } => {
                self.crash_after_store[node] = Some(down_ms);
            }
        }
        Ok(())
    }

    /// Duplicate and hand-off accounting, and what the hostile member gets to see.
    fn inspect_request(&mut self, request: &Request) {
        if Some(request.from) == self.world.hostile {
            return;
        }
        let Ok(batch) = Batch::from_bytes(&request.bytes) else {
            return;
        };
        let Some(store) = self.nodes[request.to].store() else {
            return;
        };
        let mut duplicates = 0;
        let mut relay_duplicates = 0;
        for frame in &batch.frames {
            match frame {
                Frame::Deliver(envelope) => {
                    let header = &envelope.header;
                    if matches!(
                        store.get_inbox(&header.sender, &header.message_id),
                        Ok(Some(_))
                    ) {
                        duplicates += 1;
                    }
                }
                Frame::Handoff(envelope) => {
                    let header = &envelope.header;
                    if matches!(
                        store.get_relay(&header.sender, &header.message_id),
                        Ok(Some(_))
                    ) {
                        relay_duplicates += 1;
                    }
                }
                _ => {}
            }
        }
        self.report.duplicates_suppressed += duplicates;
        self.report.relay_duplicate_handoffs += relay_duplicates;
        if let Some(hostile) = self.hostile.as_mut() {
            for frame in &batch.frames {
                match frame {
                    Frame::Deliver(envelope) | Frame::Handoff(envelope) => {
                        hostile.observe_envelope(envelope)
                    }
                    Frame::Receipt(receipt) => hostile.observe_receipt(receipt),
                    _ => {}
                }
            }
        }
    }

    /// The response leaves node `request.to`: note the receipts it releases, then put it on
    /// the wire (or lose it).
    fn respond(&mut self, request: &Request, bytes: Vec<u8>) {
        let responder = request.to;
        if self.nodes[responder].kind != NodeKind::Hostile {
            if let Ok(batch) = Batch::from_bytes(&bytes) {
                let me = self.world.ids[responder];
                for frame in &batch.frames {
                    let Frame::Receipt(receipt) = frame else {
                        continue;
                    };
                    if receipt.body.signer != me {
                        continue;
                    }
                    let key = (receipt.body.sender, receipt.body.message_id);
                    match receipt.body.kind {
                        ReceiptKind::Delivered => {
                            self.truth.released_delivery[responder].insert(key);
                        }
                        ReceiptKind::Custody => {
                            self.truth.released_custody[responder].insert(key);
                        }
                    }
                    if let Some(hostile) = self.hostile.as_mut() {
                        hostile.observe_receipt(receipt);
                    }
                }
            }
        }
        if request.duplicate {
            return; // the network's copy: its answer goes nowhere
        }
        let loss = self.config.profile.response_loss;
        if !self.liveness && loss > 0.0 && self.net_rng.random_bool(loss) {
            self.report.responses_lost += 1;
            self.fail_request(request);
            return;
        }
        if self.partitions.blocks(responder, request.from) {
            self.fail_request(request);
            return;
        }
        let arrive_ms = self.now_ms + self.latency_ms(responder, request.from);
        if arrive_ms > request.sent_at_ms + self.config.request_timeout_ms {
            self.fail_request(request);
            return;
        }
        self.queue.push(
            arrive_ms,
            SimEvent::Outcome {
                node: request.from,
                incarnation: request.from_incarnation,
                request_id: request.request_id,
                response: Some(bytes),
            },
        );
    }

    fn on_outcome(
        &mut self,
        node: usize,
        incarnation: u32,
        request_id: u64,
        response: Option<Vec<u8>>,
    ) -> Result<(), Violation> {
        if Some(node) == self.world.hostile {
            return self.on_hostile_outcome(request_id, response);
        }
        if self.nodes[node].core.is_none() || self.nodes[node].incarnation != incarnation {
            self.report.outcomes_dropped_after_crash += 1;
            return Ok(());
        }
        let now = self.local_now(node);
        let core = self.core_mut(node)?;
        match response {
            Some(bytes) => core.handle_response(now, request_id, &bytes),
            None => {
                core.handle_request_failed(now, request_id, "request timed out");
                self.report.requests_failed += 1;
            }
        }
        self.flush(node)?;
        self.release(node)
    }

    // ----- officers ----------------------------------------------------------------------

    fn on_submit(&mut self, index: usize) -> Result<(), Violation> {
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
    fn officer_sent(
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
        self.report.accepted += 1;
        if is_status {
            self.report.accepted_status_updates += 1;
        }
        self.release(sender)
    }

    fn on_acknowledge(
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
            Err(error) => Err(harness(
                self.now_ms,
                format!("node {node} cannot acknowledge {message_id}: {error}"),
            )),
        }
    }

    // ----- what the cores say --------------------------------------------------------------

    fn on_core_event(&mut self, node: usize, event: Event) -> Result<(), Violation> {
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
                self.on_received(node, sender, message_id, kind, via_relay)
            }
            Event::StatusReceived { .. } => {
                self.report.status_updates_received += 1;
                Ok(())
            }
            Event::InboundRejected { from, reason }
            | Event::ReceiptRejected { from, reason, .. }
            | Event::RosterRejected { from, reason } => {
                if Some(from) == hostile_id {
                    self.report.forgeries_rejected += 1;
                } else {
                    self.report.honest_rejections += 1;
                    self.sample_rejection(format!("node {node}: {reason}"));
                }
                Ok(())
            }
            Event::RelayHolding { .. } => {
                self.report.relay_custody_taken += 1;
                Ok(())
            }
            Event::RelayDelivered { .. } => {
                self.report.relay_deliveries += 1;
                Ok(())
            }
            Event::RelayFailed {
                message_id, reason, ..
            } => {
                self.report.relay_failures += 1;
                self.sample_rejection(format!("relay {node}: {message_id}: {reason}"));
                Ok(())
            }
            Event::RosterUpdated { serial } => Err(self.violation(
                Invariant::ForgeryAccepted,
                format!(
                    "node {node} switched to roster serial {serial}; only serial {} was ever signed",
                    self.world.roster.serial
                ),
            )),
            Event::StoreFailed { reason } => Err(harness(
                self.now_ms,
                format!("node {node}: store failed: {reason}"),
            )),
        }
    }

    fn sample_rejection(&mut self, text: String) {
        if self.report.rejection_samples.len() < MAX_REJECTION_SAMPLES {
            self.report.rejection_samples.push(text);
        }
    }

    fn recipient_store(&self, recipient: usize) -> Option<&MemoryStore> {
        self.nodes[recipient].store()
    }

    fn on_delivered(&mut self, node: usize, message_id: MessageId) -> Result<(), Violation> {
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

    fn on_received(
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

    // ----- faults ------------------------------------------------------------------------

    fn crash(&mut self, node: usize) -> Result<(), Violation> {
        let Some(core) = self.nodes[node].core.take() else {
            return Ok(());
        };
        let mut store = core.into_store();
        store.crash();
        self.nodes[node].incarnation += 1;
        self.nodes[node].wake_at_ms = None;
        self.report.crashes += 1;
        self.record(&[self.now_ms, node as u64, 0xC4A5]);
        let node_id = self.world.ids[node];
        let checked = self.truth.check_durable(node, node_id, &store);
        self.nodes[node].store_while_down = Some(store);
        checked.map_err(|(invariant, detail)| self.violation(invariant, detail))
    }

    fn restart(&mut self, node: usize) -> Result<(), Violation> {
        let Some(store) = self.nodes[node].store_while_down.take() else {
            return Ok(());
        };
        let core = self.build_core(node, store)?;
        self.nodes[node].core = Some(core);
        self.report.restarts += 1;
        self.release(node)
    }

    fn crash_for(&mut self, node: usize, down_ms: u64) -> Result<(), Violation> {
        self.crash(node)?;
        let incarnation = self.nodes[node].incarnation;
        self.queue.push(
            self.now_ms + down_ms,
            SimEvent::Restart { node, incarnation },
        );
        Ok(())
    }

    fn pick_up_node(&mut self, kind: NodeKind) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|index| self.nodes[*index].kind == kind && self.nodes[*index].core.is_some())
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.fault_rng.random_range(0..candidates.len())])
    }

    fn on_chaos_crash(&mut self) -> Result<(), Violation> {
        if self.liveness {
            return Ok(());
        }
        let Some(node) = self.pick_up_node(NodeKind::Member) else {
            return Ok(());
        };
        let profile = &self.config.profile;
        let (min, max) = (profile.downtime_min_ms, profile.downtime_max_ms);
        let down_ms = uniform(&mut self.fault_rng, min, max);
        self.crash_for(node, down_ms)
    }

    fn on_chaos_relay_outage(&mut self) -> Result<(), Violation> {
        if self.liveness {
            return Ok(());
        }
        let Some(node) = self.pick_up_node(NodeKind::Relay) else {
            return Ok(());
        };
        let profile = &self.config.profile;
        let (min, max) = (profile.outage_min_ms, profile.outage_max_ms);
        let down_ms = uniform(&mut self.fault_rng, min, max);
        self.report.relay_outages += 1;
        self.crash_for(node, down_ms)
    }

    fn on_chaos_partition(&mut self) {
        if self.liveness {
            return;
        }
        let profile = self.config.profile.clone();
        if self.partitions.active() < profile.max_partitions {
            let count = self.nodes.len();
            let honest = |index: usize, nodes: &[SimNode]| nodes[index].kind != NodeKind::Hostile;
            let mut side = vec![false; count];
            let roll = self.fault_rng.random_range(0..100u32);
            let direction = match roll {
                0..40 => {
                    // Isolate one node (a member or a relay).
                    let node = self.fault_rng.random_range(0..count);
                    side[node] = honest(node, &self.nodes);
                    CutDirection::Both
                }
                40..70 => CutDirection::Both,
                70..85 => CutDirection::OutOfSide,
                _ => CutDirection::IntoSide,
            };
            if roll >= 40 {
                let percent = self.fault_rng.random_range(10..=50u32);
                for (index, slot) in side.iter_mut().enumerate() {
                    *slot = honest(index, &self.nodes)
                        && self.fault_rng.random_range(0..100u32) < percent;
                }
            }
            let id = self.partitions.add(side, direction);
            let length_ms = uniform(
                &mut self.fault_rng,
                profile.partition_min_ms,
                profile.partition_max_ms,
            );
            self.queue
                .push(self.now_ms + length_ms, SimEvent::PartitionEnd { id });
            self.report.partitions += 1;
        }
        let interval = profile.partition_interval_ms;
        let next_ms =
            self.now_ms + uniform(&mut self.fault_rng, interval / 2, interval * 3 / 2).max(1);
        self.queue.push(next_ms, SimEvent::ChaosPartition);
    }

    fn on_hostile(&mut self) -> Result<(), Violation> {
        if self.liveness {
            return Ok(());
        }
        let Some(hostile) = self.hostile.as_mut() else {
            return Ok(());
        };
        let index = hostile.index;
        let now = Timestamp(START.0 + self.now_ms);
        if let Some(attack) = hostile.attack(&mut self.hostile_rng, &self.world, now) {
            let request_id = hostile.next_request_id();
            hostile
                .pending
                .insert(request_id, (attack.kind, attack.must_be_refused));
            let arrive_ms = self.now_ms + self.latency_ms(index, attack.to);
            self.queue.push(
                arrive_ms,
                SimEvent::RequestArrive(Box::new(Request {
                    from: index,
                    from_incarnation: 0,
                    to: attack.to,
                    request_id,
                    bytes: attack.bytes,
                    sent_at_ms: self.now_ms,
                    duplicate: false,
                })),
            );
        }
        let interval = self.config.profile.hostile_interval_ms;
        let next_ms =
            self.now_ms + uniform(&mut self.hostile_rng, interval / 2, interval * 3 / 2).max(1);
        self.queue.push(next_ms, SimEvent::Hostile);
        Ok(())
    }

    fn on_hostile_outcome(
        &mut self,
        request_id: u64,
        response: Option<Vec<u8>>,
    ) -> Result<(), Violation> {
        let Some(hostile) = self.hostile.as_mut() else {
            return Ok(());
        };
        let Some((kind, must_be_refused)) = hostile.pending.remove(&request_id) else {
            return Ok(());
        };
        let Some(bytes) = response else {
            self.report.hostile_requests_failed += 1;
            return Ok(());
        };
        self.report.hostile_requests_answered += 1;
        let Ok(batch) = Batch::from_bytes(&bytes) else {
            return Err(harness(
                self.now_ms,
                format!("a core answered the hostile `{kind}` with an undecodable batch"),
            ));
        };
        for frame in &batch.frames {
            match frame {
                Frame::Refused { .. } => self.report.hostile_frames_refused += 1,
                other if must_be_refused => {
                    return Err(self.violation(
                        Invariant::ForgeryAccepted,
                        format!("hostile `{kind}` was answered with {other:?}"),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_heal(&mut self) -> Result<(), Violation> {
        self.liveness = true;
        self.report.heal_at_ms = self.now_ms;
        self.partitions.clear();
        for node in 0..self.nodes.len() {
            if self.nodes[node].kind != NodeKind::Hostile && self.nodes[node].core.is_none() {
                self.restart(node)?;
            }
        }
        Ok(())
    }

    // ----- sweeps and the end ------------------------------------------------------------

    /// Periodic sweep: every inbox against the truth, every relay for plaintext.
    fn sweep(&self) -> Result<(), Violation> {
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

    fn liveness_failure(&self) -> Violation {
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

    fn final_checks(&mut self) -> Result<(), Violation> {
        self.sweep()?;
        // Invariants 3, 5, 6 over every accepted message.
        for (key, truth) in &self.truth.messages {
            if !truth.accepted {
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
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            let pending: usize = core.queue_sizes().outbox_pending.iter().sum();
            let mut relay_pending = 0;
            for entry in core
                .store()
                .relay_entries()
                .map_err(|error| harness(self.now_ms, error.to_string()))?
            {
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

    fn finish_report(&mut self) -> SimReport {
        let mut report = self.report.clone();
        for truth in self.truth.messages.values() {
            if !truth.accepted {
                continue;
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

fn role_name(world: &World, index: usize) -> String {
    world.roster.member(&world.ids[index]).map_or_else(
        || "unknown".to_string(),
        |member| match member.role {
            Role::Relay => "relay".to_string(),
            role => role.to_string(),
        },
    )
}

/// A Poisson-distributed count with mean `mean` (Knuth's method; small means only, capped).
fn poisson_count(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 50.0 {
        // Normal approximation is overkill here: the mean is what matters for load.
        return mean.round() as u64;
    }
    let limit = (-mean).exp();
    let mut product: f64 = rng.random::<f64>();
    let mut count = 0;
    while product > limit && count < 10_000 {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

fn event_code(event: &SimEvent) -> u64 {
    match event {
        SimEvent::Wake { node } => 1 | (*node as u64) << 8,
        SimEvent::Submit { index } => 2 | (*index as u64) << 8,
        SimEvent::Acknowledge { node, .. } => 3 | (*node as u64) << 8,
        SimEvent::RequestArrive(request) => {
            4 | (request.from as u64) << 8 | (request.to as u64) << 32
        }
        SimEvent::Outcome { node, response, .. } => {
            5 | (*node as u64) << 8 | u64::from(response.is_some()) << 40
        }
        SimEvent::ChaosCrash => 6,
        SimEvent::ChaosRelayOutage => 7,
        SimEvent::ChaosPartition => 8,
        SimEvent::PartitionEnd { id } => 9 | id << 8,
        SimEvent::Restart { node, .. } => 10 | (*node as u64) << 8,
        SimEvent::Hostile => 11,
        SimEvent::Heal => 12,
        SimEvent::Check => 13,
        SimEvent::Script { step } => 14 | (*step as u64) << 8,
    }
}
