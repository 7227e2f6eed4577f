//! The simulator's state and its main loop: the nodes, the event queue, the clocks, and how a
//! core is driven (input, flush, then release). The event handlers live in the submodules:
//! [`wire`] (requests and responses on the virtual network), [`officer`] (submissions and what
//! the cores tell their officers), [`faults`] (crashes, outages, partitions, the hostile member,
//! scenario steps and the heal) and [`checks`] (sweeps, the final checks and the report).

mod checks;
mod faults;
mod officer;
mod trust;
mod wire;

use std::collections::{BTreeMap, BTreeSet};

use quickfreeze_keys::NodeId;

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{SignedRoster, Timestamp};
use quickfreeze_proto::core::{Core, CoreConfig, Event, MemoryStore, Store};
use quickfreeze_proto::Priority;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::sim::config::SimConfig;
use crate::sim::invariants::{Invariant, Violation};
use crate::sim::report::SimReport;
use crate::sim::script;
use crate::sim::workload::{self, MARKER_PREFIX};

use crate::sim::hostile::Hostile;
use crate::sim::invariants::Truth;
use crate::sim::network::{base_latency_ms, EventQueue, Partitions, SimEvent};
use crate::sim::workload::PlannedMessage;
use crate::sim::world::{self, NodeKind, World, START};

/// A node woken this many times at one virtual instant is livelocked.
pub(super) const MAX_WAKES_PER_INSTANT: u32 = 10_000;
/// An officer whose node is down tries again this much later.
pub(super) const OFFICER_RETRY_MS: u64 = 5_000;
/// Most rejection reasons kept in the report.
pub(super) const MAX_REJECTION_SAMPLES: usize = 10;

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
pub(super) struct Simulator {
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
    /// The last roster installed at one node, and where it has arrived.
    roster_watch: Option<trust::SpreadWatch>,
    /// The last revocation notice, and where it has arrived.
    revocation_watch: Option<trust::SpreadWatch>,
    /// Per node: the members it holds a notice revoking.
    revoked_known: Vec<BTreeSet<NodeId>>,
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
    pub(super) fn new(config: SimConfig) -> Result<Simulator, Violation> {
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
            roster_watch: None,
            revocation_watch: None,
            revoked_known: vec![BTreeSet::new(); node_count],
        };
        for index in 0..node_count {
            if simulator.nodes[index].kind != NodeKind::Hostile {
                let core = simulator.build_core(index, MemoryStore::new())?;
                simulator.nodes[index].core = Some(core);
                simulator.release(index)?;
            }
        }
        // Each relay connects to its members once all are up (each pair once).
        for index in 0..node_count {
            if simulator.nodes[index].kind == NodeKind::Relay {
                simulator.connect_neighbours(index)?;
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
        if self.config.scenario.is_none() {
            let mut trust_rng = world::stream(self.config.seed, "trust");
            for _ in 0..profile.rotations {
                let at_ms = trust_rng.random_range(0..duration_ms);
                self.queue.push(at_ms, SimEvent::ChaosRotate);
            }
            for _ in 0..profile.revocations {
                let at_ms = trust_rng.random_range(0..duration_ms);
                self.queue.push(at_ms, SimEvent::ChaosRevoke);
            }
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
                    .filter(|(_, step)| !matches!(step.action, script::Action::Send { .. }))
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

    pub(super) fn run_to_end(&mut self) -> Result<(), Violation> {
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
            SimEvent::ChaosRotate => self.on_chaos_rotate(),
            SimEvent::ChaosRevoke => self.on_chaos_revoke(),
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
            world::identity_rotated(self.config.seed, index, self.world.rotations[index]),
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
        self.note_trust(node);
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
        SimEvent::ChaosRotate => 15,
        SimEvent::ChaosRevoke => 16,
    }
}
