//! Scripted scenarios: one fault story each, told step by step instead of drawn from the seed.
//!
//! The random runs find what nobody thought of; these pin down the stories everybody must be
//! able to rely on (a recipient that is offline and comes back, a relay that holds and forwards,
//! a partition that heals, a crash between the store and the receipt, the same message arriving
//! directly and through a relay, a message that expires). Each is a normal simulation (same
//! cores, same network, same invariant checkers running throughout) whose workload and faults
//! come from a list of timed [`Step`]s (a [`Script`], which the configuration carries), followed by its own [`Scenario::check`] on the report:
//! the checkers prove nothing went wrong, the check proves the story really happened (the relay
//! did carry it, the duplicate did arrive and was suppressed, ...).
//!
//! Small worlds keep the stories readable: node `0` is the sender "A", node `1` the recipient
//! "B". With four members there are no address-less members, so who can dial whom is plain.

use super::config::{FaultLevel, SimConfig};
use super::report::SimReport;
use super::script::Script;
pub use super::script::{Action, Step, Who};

/// A named story: its world, its steps, and what must be true of the report afterwards.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name on the command line.
    pub name: &'static str,
    /// One line for `simnet scenario --list`.
    pub summary: &'static str,
    /// Member nodes.
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Message lifetime override (virtual ms), for the expiry story.
    pub lifetime_ms: Option<u64>,
    /// When the safety phase ends (everything heals, crashed nodes restart).
    pub heal_at_ms: u64,
    /// The script.
    pub steps: Vec<Step>,
    /// What the report must show, beyond the invariants every run checks.
    pub check: fn(&SimReport) -> Result<(), String>,
}

impl Scenario {
    /// The simulation configuration that plays this scenario with `seed` (which still draws
    /// latencies, jitter, roster countries and relays).
    pub fn config(&self, seed: u64) -> SimConfig {
        let mut config = SimConfig::new(seed, self.nodes, self.relays, 0, FaultLevel::None);
        config.duration_ms = self.heal_at_ms;
        config.acknowledge_probability = 0.0;
        if let Some(lifetime_ms) = self.lifetime_ms {
            config.message_lifetime_ms = Some(lifetime_ms);
            config.expect_all_delivered = false;
        }
        config.scenario = Some(Script {
            name: self.name,
            nodes: self.nodes,
            steps: self.steps.clone(),
        });
        config
    }
}

fn step(at_ms: u64, action: Action) -> Step {
    Step { at_ms, action }
}

fn expect(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}

fn all_delivered(report: &SimReport, count: u64) -> Result<(), String> {
    expect(
        report.accepted == count && report.delivered == count,
        || {
            format!(
                "expected {count} accepted and delivered, got {} accepted, {} delivered",
                report.accepted, report.delivered
            )
        },
    )
}

const A: usize = 0;
const B: usize = 1;
/// The member revoked in the revocation story.
const C: usize = 2;
const D: usize = 3;
const E: usize = 4;
/// The spread bound of the idle-network story: well under the 15 s gossip interval, so only a
/// node that tells its connections at once (push on change) meets it.
const IDLE_SPREAD_BOUND_MS: u64 = 5_000;
/// Grace given to rotated-out keys in the rotation story: longer than the story, so every
/// envelope and receipt in flight may use the old keys.
const ROTATION_GRACE_MS: u64 = 30 * 60 * 1000;

/// Every built-in scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "roster-spread-idle",
            summary: "no request traffic at all; a new roster installed at A reaches every member and the relay, through the relay's connections, within 5 s",
            nodes: 8,
            relays: 1,
            lifetime_ms: None,
            heal_at_ms: 120_000,
            steps: vec![step(1_000, Action::NewRoster { at: A })],
            check: |report| {
                expect(report.roster_updates == 1, || {
                    format!("expected 1 roster install, saw {}", report.roster_updates)
                })?;
                expect(report.accepted == 0, || {
                    format!("the network was meant to be idle, {} accepted", report.accepted)
                })?;
                match report.roster_spread_ms {
                    Some(spread_ms) if spread_ms < IDLE_SPREAD_BOUND_MS => Ok(()),
                    Some(spread_ms) => Err(format!(
                        "the roster took {spread_ms} ms to reach every node, the bound is {IDLE_SPREAD_BOUND_MS} ms"
                    )),
                    None => Err("the roster never reached every node".into()),
                }
            },
        },
        Scenario {
            name: "revocation-mid-traffic",
            summary: "C is revoked while its request waits at B's relay and others flow; the relay discards C's, nobody takes C's after the notice, everything else is delivered once",
            nodes: 6,
            relays: 1,
            lifetime_ms: None,
            heal_at_ms: 300_000,
            steps: vec![
                step(0, Action::Crash(Who::Node(B))),
                step(0, Action::CutLink { from: C, to: B }),
                step(0, Action::CutLink { from: A, to: B }),
                step(1_000, Action::Send { from: C, to: B }),
                step(1_000, Action::Send { from: A, to: B }),
                step(2_000, Action::Send { from: C, to: D }),
                step(30_000, Action::Revoke { who: C, at: A }),
                step(35_000, Action::Send { from: C, to: D }),
                step(35_000, Action::Send { from: A, to: D }),
                step(35_000, Action::Send { from: E, to: D }),
                step(60_000, Action::Restart(Who::Node(B))),
            ],
            check: |report| {
                expect(report.revocations == 1, || {
                    format!("expected 1 revocation, saw {}", report.revocations)
                })?;
                expect(report.accepted == 6 && report.excused_revoked == 3, || {
                    format!(
                        "expected 6 accepted of which 3 from C, got {} and {}",
                        report.accepted, report.excused_revoked
                    )
                })?;
                // A→B, A→D, E→D and C's request sent before the notice.
                expect(report.delivered == 4, || {
                    format!("expected 4 delivered, got {}", report.delivered)
                })?;
                expect(report.relay_discards_revoked >= 1, || {
                    "B's relay never discarded the request it held from C".into()
                })?;
                match report.revocation_spread_ms {
                    // B is down until 60 s: 30 s after the notice, plus its reconnection.
                    Some(spread_ms) if spread_ms < 35_000 => Ok(()),
                    Some(spread_ms) => Err(format!(
                        "the notice took {spread_ms} ms to reach every node (B is back 30 s after it)"
                    )),
                    None => Err("the notice never reached every node".into()),
                }
            },
        },
        Scenario {
            name: "rotation-in-flight",
            summary: "while A's request waits at B's relay, A, the relay and B each rotate their keys; it is delivered once and the receipt verifies, and a second request after the rotations too",
            nodes: 4,
            relays: 1,
            lifetime_ms: None,
            heal_at_ms: 400_000,
            steps: vec![
                step(0, Action::Crash(Who::Node(B))),
                step(0, Action::CutLink { from: A, to: B }),
                step(1_000, Action::Send { from: A, to: B }),
                step(
                    30_000,
                    Action::Rotate {
                        who: Who::Node(A),
                        grace_ms: ROTATION_GRACE_MS,
                    },
                ),
                step(
                    40_000,
                    Action::Rotate {
                        who: Who::RelaysOf(B),
                        grace_ms: ROTATION_GRACE_MS,
                    },
                ),
                step(
                    50_000,
                    Action::Rotate {
                        who: Who::Node(B),
                        grace_ms: ROTATION_GRACE_MS,
                    },
                ),
                step(90_000, Action::Restart(Who::Node(B))),
                step(150_000, Action::Send { from: A, to: B }),
            ],
            check: |report| {
                all_delivered(report, 2)?;
                expect(report.rotations == 3, || {
                    format!("expected 3 rotations, saw {}", report.rotations)
                })?;
                expect(report.custody_receipts >= 1, || {
                    "the first request never waited at the relay".into()
                })?;
                expect(report.latency.max_ms < 399_000, || {
                    "delivery only happened after the final heal".into()
                })
            },
        },
        Scenario {
            name: "recipient-offline",
            summary: "B is down when A sends (no relays); A retries and B gets it once it is back",
            nodes: 4,
            relays: 0,
            lifetime_ms: None,
            heal_at_ms: 300_000,
            steps: vec![
                step(0, Action::Crash(Who::Node(B))),
                step(1_000, Action::Send { from: A, to: B }),
                step(90_000, Action::Restart(Who::Node(B))),
            ],
            check: |report| {
                all_delivered(report, 1)?;
                expect(report.retries >= 2, || {
                    format!("A should have retried, retries {}", report.retries)
                })?;
                expect(
                    report.latency.max_ms >= 89_000 && report.latency.max_ms < 299_000,
                    || {
                        format!(
                            "delivered after B came back and before the final heal, took {} ms",
                            report.latency.max_ms
                        )
                    },
                )
            },
        },
        Scenario {
            name: "relay-holds-and-forwards",
            summary: "B is down and A can never reach it directly; B's relay takes custody and delivers when B is back",
            nodes: 4,
            relays: 2,
            lifetime_ms: None,
            heal_at_ms: 400_000,
            steps: vec![
                step(0, Action::Crash(Who::Node(B))),
                step(0, Action::CutLink { from: A, to: B }),
                step(1_000, Action::Send { from: A, to: B }),
                step(120_000, Action::Restart(Who::Node(B))),
            ],
            check: |report| {
                all_delivered(report, 1)?;
                expect(report.custody_receipts >= 1, || {
                    "A never got a custody receipt from a relay".into()
                })?;
                expect(
                    report.received_via_relay == 1 && report.relay_deliveries >= 1,
                    || {
                        format!(
                            "B should have got it through its relay: via relay {}, relay deliveries {}",
                            report.received_via_relay, report.relay_deliveries
                        )
                    },
                )?;
                expect(report.latency.max_ms < 399_000, || {
                    "the relay only delivered after the final heal".into()
                })
            },
        },
        Scenario {
            name: "partition-heals",
            summary: "the network splits in two (no relays); messages inside a side flow, across it wait for the mend",
            nodes: 6,
            relays: 0,
            lifetime_ms: None,
            heal_at_ms: 300_000,
            steps: vec![
                step(0, Action::Isolate(vec![0, 1, 2])),
                step(1_000, Action::Send { from: 0, to: 1 }),
                step(1_000, Action::Send { from: 0, to: 3 }),
                step(1_000, Action::Send { from: 4, to: 1 }),
                step(1_000, Action::Send { from: 2, to: 5 }),
                step(60_000, Action::MendAll),
            ],
            check: |report| {
                all_delivered(report, 4)?;
                // Three of the four cross the cut: the median waits for the mend.
                expect(report.latency.p50_ms >= 59_000, || {
                    format!(
                        "messages across the cut arrived before the mend: p50 {} ms",
                        report.latency.p50_ms
                    )
                })?;
                expect(report.latency.max_ms < 299_000, || {
                    "delivery waited for the final heal instead of the mend".into()
                })
            },
        },
        Scenario {
            name: "crash-between-store-and-receipt",
            summary: "B stores A's message durably and dies before its receipt leaves; A retries and B shows it once",
            nodes: 4,
            relays: 0,
            lifetime_ms: None,
            heal_at_ms: 300_000,
            steps: vec![
                step(
                    0,
                    Action::CrashAfterStore {
                        node: B,
                        down_ms: 30_000,
                    },
                ),
                step(1_000, Action::Send { from: A, to: B }),
            ],
            check: |report| {
                all_delivered(report, 1)?;
                expect(report.crashes == 1, || {
                    format!("expected exactly the scripted crash, got {}", report.crashes)
                })?;
                expect(report.duplicates_suppressed >= 1, || {
                    "A's retry should have reached B as a suppressed duplicate".into()
                })
            },
        },
        Scenario {
            name: "duplicate-direct-and-relay",
            summary: "B's answers to A are lost, so A also hands the message to B's relay; B shows it once",
            nodes: 4,
            relays: 2,
            lifetime_ms: None,
            heal_at_ms: 300_000,
            steps: vec![
                step(0, Action::CutLink { from: B, to: A }),
                step(1_000, Action::Send { from: A, to: B }),
            ],
            check: |report| {
                all_delivered(report, 1)?;
                expect(report.relay_deliveries >= 1, || {
                    "the relay never delivered its copy".into()
                })?;
                expect(report.received_via_relay == 0, || {
                    "the direct copy should have been shown first".into()
                })?;
                expect(report.duplicates_suppressed >= 1, || {
                    "the relay's copy was not suppressed as a duplicate".into()
                })?;
                expect(report.latency.max_ms < 299_000, || {
                    "the receipt only came back after the final heal".into()
                })
            },
        },
        Scenario {
            name: "expiry-with-event",
            summary: "B stays down past the message's lifetime; A's officer gets an expiry event, nothing vanishes",
            nodes: 4,
            relays: 1,
            lifetime_ms: Some(60_000),
            heal_at_ms: 200_000,
            steps: vec![
                step(0, Action::Crash(Who::Node(B))),
                step(1_000, Action::Send { from: A, to: B }),
            ],
            check: |report| {
                expect(
                    report.accepted == 1 && report.expired == 1 && report.delivered == 0,
                    || {
                        format!(
                            "expected 1 accepted and expired, got {} accepted, {} expired, {} delivered",
                            report.accepted, report.expired, report.delivered
                        )
                    },
                )
            },
        },
    ]
}

/// The built-in scenario called `name`.
pub fn by_name(name: &str) -> Option<Scenario> {
    all().into_iter().find(|scenario| scenario.name == name)
}
