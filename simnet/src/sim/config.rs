//! What one deterministic run looks like: its size, its seed and the faults it injects.
//!
//! A [`SimConfig`] is plain data. [`SimConfig::new`] fills every knob from a [`FaultLevel`]
//! (`none`, `mild`, `harsh`) through [`FaultProfile::for_level`]; tests and the CLI may then
//! override single fields. Every probability is per event (per request, per response, per
//! submission) and every duration is in virtual milliseconds (`_ms`), so a profile reads as a
//! description of the network it simulates.

use quickfreeze_proto::core::InjectedBugs;
use serde::Serialize;

use super::script::Script;
pub use crate::fault_level::FaultLevel;

/// The knobs of the fault injector. All of them act during the safety phase only; the liveness
/// phase keeps latency and jitter and turns everything else off.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultProfile {
    /// Smallest one-way base latency of a link.
    pub latency_min_ms: u64,
    /// Largest one-way base latency of a link (each link's base is fixed by the seed).
    pub latency_max_ms: u64,
    /// Extra random delay per packet, 0..=jitter; larger than latency differences it reorders.
    pub jitter_ms: u64,
    /// Probability that a request is lost on the way (the sender times out).
    pub request_loss: f64,
    /// Probability that a response is lost on the way back (the work was done; the sender times out).
    pub response_loss: f64,
    /// Probability that a request is delivered twice (the second response is discarded).
    pub request_duplication: f64,
    /// Mean virtual time between the starts of two partitions (0: no partitions).
    pub partition_interval_ms: u64,
    /// Shortest partition.
    pub partition_min_ms: u64,
    /// Longest partition.
    pub partition_max_ms: u64,
    /// Partitions active at once, at most.
    pub max_partitions: usize,
    /// Expected crashes per member node during the safety phase (0: no crashes).
    pub crashes_per_node: f64,
    /// Shortest time a crashed node stays down.
    pub downtime_min_ms: u64,
    /// Longest time a crashed node stays down.
    pub downtime_max_ms: u64,
    /// Expected relay outages per relay during the safety phase.
    pub outages_per_relay: f64,
    /// Shortest relay outage.
    pub outage_min_ms: u64,
    /// Longest relay outage.
    pub outage_max_ms: u64,
    /// Probability that a node dies while handling a request, after the core ran but before the
    /// shell flushed (the `kill -9` between write and fsync).
    pub crash_during_request: f64,
    /// Probability that a sender dies right after `submit`, before the flush (the officer never
    /// heard "accepted", so the message may be lost).
    pub crash_after_submit: f64,
    /// Mean virtual time between two attacks of the hostile member (0: no hostile member).
    pub hostile_interval_ms: u64,
    /// Largest clock offset of a node from true time, either way.
    pub clock_skew_ms: u64,
    /// Key rotations during the safety phase: a random member or relay runs `key rotate` and
    /// the authority issues the roster naming its new keys (old keys valid for an hour).
    pub rotations: u32,
    /// Revocations during the safety phase: the authority revokes a random member (never the
    /// same one twice) and a random running member installs the notice. Messages from or to a
    /// revoked member may then end refused, or never: the checkers excuse them.
    pub revocations: u32,
}

impl FaultProfile {
    /// The profile for a level.
    pub fn for_level(level: FaultLevel) -> FaultProfile {
        let none = FaultProfile {
            latency_min_ms: 5,
            latency_max_ms: 150,
            jitter_ms: 0,
            request_loss: 0.0,
            response_loss: 0.0,
            request_duplication: 0.0,
            partition_interval_ms: 0,
            partition_min_ms: 0,
            partition_max_ms: 0,
            max_partitions: 0,
            crashes_per_node: 0.0,
            downtime_min_ms: 0,
            downtime_max_ms: 0,
            outages_per_relay: 0.0,
            outage_min_ms: 0,
            outage_max_ms: 0,
            crash_during_request: 0.0,
            crash_after_submit: 0.0,
            hostile_interval_ms: 0,
            clock_skew_ms: 0,
            rotations: 0,
            revocations: 0,
        };
        match level {
            FaultLevel::None => none,
            FaultLevel::Mild => FaultProfile {
                jitter_ms: 30,
                request_loss: 0.02,
                response_loss: 0.02,
                request_duplication: 0.01,
                partition_interval_ms: 60_000,
                partition_min_ms: 5_000,
                partition_max_ms: 30_000,
                max_partitions: 1,
                crashes_per_node: 0.05,
                downtime_min_ms: 1_000,
                downtime_max_ms: 30_000,
                outages_per_relay: 0.2,
                outage_min_ms: 10_000,
                outage_max_ms: 60_000,
                crash_during_request: 0.0,
                crash_after_submit: 0.0,
                hostile_interval_ms: 1_000,
                clock_skew_ms: 2_000,
                rotations: 1,
                revocations: 0,
                ..none
            },
            FaultLevel::Harsh => FaultProfile {
                jitter_ms: 250,
                request_loss: 0.10,
                response_loss: 0.10,
                request_duplication: 0.05,
                partition_interval_ms: 15_000,
                partition_min_ms: 5_000,
                partition_max_ms: 120_000,
                max_partitions: 3,
                crashes_per_node: 0.4,
                downtime_min_ms: 1_000,
                downtime_max_ms: 180_000,
                outages_per_relay: 1.0,
                outage_min_ms: 60_000,
                outage_max_ms: 300_000,
                crash_during_request: 0.005,
                crash_after_submit: 0.01,
                hostile_interval_ms: 100,
                clock_skew_ms: 30_000,
                rotations: 2,
                // Off by default so the standard sweeps can still demand that every accepted
                // message is delivered; `sweep_with_revocations_holds_every_invariant` turns it on.
                revocations: 0,
                ..none
            },
        }
    }
}

/// Everything one run needs. One seed derives every random choice.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: same seed and config, same run, same digest.
    pub seed: u64,
    /// Member nodes (points of contact, then central authorities once countries run out).
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Submissions in the workload (status replies from acknowledgements come on top).
    pub messages: usize,
    /// The fault level the profile came from.
    pub faults: FaultLevel,
    /// The fault knobs.
    pub profile: FaultProfile,
    /// Length of the safety phase (faults on, workload submitted).
    pub duration_ms: u64,
    /// Longest the liveness phase may take after the heal before the run fails.
    pub liveness_max_ms: u64,
    /// How long the network keeps running after convergence, to check it falls quiet.
    pub quiesce_ms: u64,
    /// After this long without a response the simulated transport reports the request failed.
    pub request_timeout_ms: u64,
    /// Share of members without addresses (at least one when there are relays and 5+ nodes).
    pub relay_only_fraction: f64,
    /// Model what a transport can dial: a member without addresses is reachable only over a
    /// connection it opened itself (the ones it keeps to its own relays, or one it used within
    /// `connection_idle_ms`). Off: anyone can reach anyone, as if every member were dialable.
    pub model_dial_limits: bool,
    /// Model the connections the daemon keeps (each member with its relays) and tell the cores
    /// when they come up and go down, so serial gossip and notice pushes flow with no traffic.
    pub model_connections: bool,
    /// How long a connection a member opened stays usable after its last request.
    pub connection_idle_ms: u64,
    /// Overrides every message lifetime (emergency, urgent, routine) when set, to exercise expiry.
    pub message_lifetime_ms: Option<u64>,
    /// Probability that an officer acknowledges a received request (sends a status update back).
    pub acknowledge_probability: f64,
    /// Virtual time between two full sweeps of the continuous invariant checks.
    pub check_interval_ms: u64,
    /// Fail the run unless every accepted message is delivered (true unless lifetimes are short).
    pub expect_all_delivered: bool,
    /// Upper bound on simulation events, so a livelock ends the run instead of hanging it.
    pub max_events: u64,
    /// A scripted story instead of the random workload and faults (see `scenario`, `script`).
    pub scenario: Option<Script>,
    /// TEST ONLY: deliberate bugs inside the core (passed through to `CoreConfig`), to prove
    /// the checkers catch a core that skips de-duplication, signature checks or the store write.
    pub injected_bugs: InjectedBugs,
    /// TEST ONLY: a deliberately broken shell that sends responses (and shows events) before it
    /// flushes the store. The durability checker must catch it.
    pub bug_skip_flush_before_respond: bool,
}

impl SimConfig {
    /// A configuration with the defaults for `faults`.
    pub fn new(
        seed: u64,
        nodes: usize,
        relays: usize,
        messages: usize,
        faults: FaultLevel,
    ) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            relays,
            messages,
            faults,
            profile: FaultProfile::for_level(faults),
            duration_ms: 300_000,
            liveness_max_ms: 600_000,
            quiesce_ms: 300_000,
            request_timeout_ms: 10_000,
            relay_only_fraction: 0.04,
            model_dial_limits: true,
            model_connections: true,
            connection_idle_ms: 30_000,
            message_lifetime_ms: None,
            acknowledge_probability: 0.3,
            check_interval_ms: 30_000,
            expect_all_delivered: true,
            max_events: 50_000_000,
            scenario: None,
            injected_bugs: InjectedBugs::default(),
            bug_skip_flush_before_respond: false,
        }
    }

    /// Checks the sizes before anything is built.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 {
            return Err("a simulation needs at least 2 nodes".into());
        }
        if self.nodes + self.relays + 1 > quickfreeze_keys::roster::MAX_MEMBERS {
            return Err(format!(
                "{} nodes + {} relays + 1 hostile member exceed the roster limit of {} members",
                self.nodes,
                self.relays,
                quickfreeze_keys::roster::MAX_MEMBERS
            ));
        }
        if self.duration_ms == 0 {
            return Err("the safety phase needs a duration above 0 ms".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("the request timeout must be above 0 ms".into());
        }
        if self.profile.latency_min_ms > self.profile.latency_max_ms {
            return Err("latency_min_ms is above latency_max_ms".into());
        }
        if let Some(scenario) = &self.scenario {
            scenario.validate()?;
        }
        Ok(())
    }

    /// The `simnet sim` command line that replays this configuration (options the CLI has).
    pub fn command_line(&self) -> String {
        if let Some(scenario) = &self.scenario {
            return format!("simnet scenario {} --seed {}", scenario.name, self.seed);
        }
        let mut line = format!(
            "simnet sim --seed {} --nodes {} --relays {} --messages {} --faults {} --duration-ms {}",
            self.seed, self.nodes, self.relays, self.messages, self.faults, self.duration_ms
        );
        if let Some(lifetime_ms) = self.message_lifetime_ms {
            line.push_str(&format!(" --lifetime-ms {lifetime_ms}"));
        }
        if self.relay_only_fraction != 0.04 {
            line.push_str(&format!(
                " --relay-only-fraction {}",
                self.relay_only_fraction
            ));
        }
        if !self.model_dial_limits {
            line.push_str(" --no-dial-limits");
        }
        if self.bug_skip_flush_before_respond {
            line.push_str(" --bug-skip-flush-before-respond");
        }
        line
    }

    /// Whether the run has a hostile member.
    pub fn hostile_enabled(&self) -> bool {
        self.profile.hostile_interval_ms > 0
    }
}
