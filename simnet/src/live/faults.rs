//! The fault schedule of a live run, drawn up front from the seed.
//!
//! Per level, over the faulty phase of length D (times uniform in 5 %–85 % of D, so the last
//! faults end before the heal):
//!
//! | fault | mild | harsh |
//! |---|---|---|
//! | kill -9 a member, restart after | N/12 (≥ 1), 0.3–2 s | N/5 (≥ 2), 0.3–3 s |
//! | relay outage | one relay, 2–4 s | every relay once, 2–6 s |
//! | link cut (both directions) | N/10 (≥ 1), 1–4 s | N/4 (≥ 2), 1–6 s |
//! | one-way cut | — | N/8 (≥ 1), 1–6 s |
//! | slow link, 50–400 ms | N/20 (≥ 1), 2–6 s | N/10 (≥ 1), 2–8 s |
//! | one member isolated from everyone | — | 1, 3–8 s |
//! | hostile member flooding forged frames | 10 frames/s | 40 frames/s |
//!
//! Faults may overlap (a cut link to a killed node, two cuts on one pair); the harness applies
//! them in time order and the heal clears whatever is left.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::FaultLevel;

/// What one node does to the traffic of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkRule {
    pub(crate) drop_outbound: bool,
    pub(crate) drop_inbound: bool,
    pub(crate) delay_ms: u64,
}

/// How a link change is counted in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counts {
    Cut,
    OneWay,
    Slow,
    Restore,
}

/// One scheduled fault or its end.
#[derive(Clone, Debug)]
pub(crate) enum FaultAction {
    /// kill -9.
    Kill { node: usize, relay: bool },
    /// Start again.
    Restart { node: usize },
    /// Set node `a`'s rule for `b` and `b`'s rule for `a`.
    Link {
        a: usize,
        b: usize,
        a_rule: LinkRule,
        b_rule: LinkRule,
        counts: Counts,
    },
    /// Cut (or restore) every link of `node`, on its side.
    Isolate {
        node: usize,
        peers: Vec<usize>,
        on: bool,
    },
}

fn count(level: FaultLevel, members: usize, mild: usize, harsh: usize, min: usize) -> usize {
    match level {
        FaultLevel::None => 0,
        FaultLevel::Mild if mild == 0 => 0,
        FaultLevel::Mild => (members / mild).max(min),
        FaultLevel::Harsh if harsh == 0 => 0,
        FaultLevel::Harsh => (members / harsh).max(min),
    }
}

/// The schedule, sorted by time. Members are `0..members`, relays follow.
pub(crate) fn plan(
    seed: u64,
    level: FaultLevel,
    members: usize,
    relays: usize,
    phase: Duration,
) -> Vec<(Duration, FaultAction)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6661_756c);
    let span = phase.as_secs_f64();
    let harsh = level == FaultLevel::Harsh;
    let mut events = Vec::new();
    let at = |rng: &mut ChaCha8Rng, lasting: (f64, f64)| {
        let start = rng.random_range(0.05 * span..0.85 * span);
        let end = (start + rng.random_range(lasting.0..lasting.1)).min(0.95 * span);
        (Duration::from_secs_f64(start), Duration::from_secs_f64(end))
    };
    let pair = |rng: &mut ChaCha8Rng| {
        let a = rng.random_range(0..members);
        (a, (a + rng.random_range(1..members)) % members)
    };
    for _ in 0..count(level, members, 12, 5, if harsh { 2 } else { 1 }) {
        let node = rng.random_range(0..members);
        let (start, end) = at(&mut rng, (0.3, if harsh { 3.0 } else { 2.0 }));
        events.push((start, FaultAction::Kill { node, relay: false }));
        events.push((end, FaultAction::Restart { node }));
    }
    let outages = match level {
        FaultLevel::None => 0,
        FaultLevel::Mild => relays.min(1),
        FaultLevel::Harsh => relays,
    };
    for relay in 0..outages {
        let node = members + relay;
        let (start, end) = at(&mut rng, (2.0, if harsh { 6.0 } else { 4.0 }));
        events.push((start, FaultAction::Kill { node, relay: true }));
        events.push((end, FaultAction::Restart { node }));
    }
    let cut = LinkRule {
        drop_outbound: true,
        drop_inbound: true,
        delay_ms: 0,
    };
    for _ in 0..count(level, members, 10, 4, if harsh { 2 } else { 1 }) {
        let (a, b) = pair(&mut rng);
        let (start, end) = at(&mut rng, (1.0, if harsh { 6.0 } else { 4.0 }));
        events.push((start, link(a, b, cut, cut, Counts::Cut)));
        events.push((end, restore(a, b)));
    }
    for _ in 0..count(level, members, 0, 8, 1) {
        // a → b is lost: a cannot send to b, and b drops everything from a (including the
        // answers to its own requests, which cross the cut direction).
        let (a, b) = pair(&mut rng);
        let (start, end) = at(&mut rng, (1.0, 6.0));
        let a_rule = LinkRule {
            drop_outbound: true,
            ..LinkRule::default()
        };
        let b_rule = LinkRule {
            drop_inbound: true,
            ..LinkRule::default()
        };
        events.push((start, link(a, b, a_rule, b_rule, Counts::OneWay)));
        events.push((end, restore(a, b)));
    }
    for _ in 0..count(level, members, 20, 10, 1) {
        let (a, b) = pair(&mut rng);
        let (start, end) = at(&mut rng, (2.0, if harsh { 8.0 } else { 6.0 }));
        let slow = LinkRule {
            delay_ms: rng.random_range(50..400),
            ..LinkRule::default()
        };
        events.push((start, link(a, b, slow, slow, Counts::Slow)));
        events.push((end, restore(a, b)));
    }
    if harsh {
        let node = rng.random_range(0..members);
        let peers: Vec<usize> = (0..members + relays).filter(|peer| *peer != node).collect();
        let (start, end) = at(&mut rng, (3.0, 8.0));
        events.push((
            start,
            FaultAction::Isolate {
                node,
                peers: peers.clone(),
                on: true,
            },
        ));
        events.push((
            end,
            FaultAction::Isolate {
                node,
                peers,
                on: false,
            },
        ));
    }
    events.sort_by_key(|(at, _)| *at);
    events
}

fn link(a: usize, b: usize, a_rule: LinkRule, b_rule: LinkRule, counts: Counts) -> FaultAction {
    FaultAction::Link {
        a,
        b,
        a_rule,
        b_rule,
        counts,
    }
}

fn restore(a: usize, b: usize) -> FaultAction {
    link(
        a,
        b,
        LinkRule::default(),
        LinkRule::default(),
        Counts::Restore,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_a_function_of_the_seed_and_ends_before_the_heal() {
        let phase = Duration::from_secs(30);
        let one = plan(5, FaultLevel::Harsh, 20, 2, phase);
        let two = plan(5, FaultLevel::Harsh, 20, 2, phase);
        assert_eq!(format!("{one:?}"), format!("{two:?}"));
        assert!(one.iter().all(|(at, _)| *at <= phase));
        assert!(plan(5, FaultLevel::None, 20, 2, phase).is_empty());
        let kills = one
            .iter()
            .filter(|(_, action)| matches!(action, FaultAction::Kill { relay: false, .. }))
            .count();
        assert_eq!(kills, 4);
    }
}
