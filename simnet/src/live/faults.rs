//! The fault schedule of a live run, drawn up front from the seed.
//!
//! Per level, over the faulty phase of length D (W ≤ D is the span over which requests are
//! submitted). The transient faults start in 5 %–85 % of D and end by 95 % of it; the harsh
//! level adds faults that are still active when the phase ends, so that the heal has real work
//! to do: the partition starts while about half of the requests are still to be submitted, so
//! requests across it pile up in outboxes and relays until the heal.
//!
//! | fault | mild | harsh |
//! |---|---|---|
//! | kill -9 a member, restart after | N/12 (≥ 1), 0.3–2 s | N/5 (≥ 2), 0.3–3 s |
//! | relay outage | one relay, 2–4 s | every relay once, 2–6 s |
//! | link cut (both directions) | N/10 (≥ 1), 1–4 s | N/4 (≥ 2), 1–6 s |
//! | one-way cut: a cannot dial b, b can dial a | — | N/8 (≥ 1), 1–6 s |
//! | slow link, 50–400 ms | N/20 (≥ 1), 2–6 s | N/10 (≥ 1), 2–8 s |
//! | one member isolated from everyone | — | 1, 3–8 s |
//! | hostile member flooding forged frames | 10 frames/s | 40 frames/s |
//! | **partition**: members and relays split in two sides, no link across, from 40–60 % of the submission span (W, the workload's length) **until the heal** | — | 1 |
//! | **one relay isolated** from everyone, from 60–75 % of D **until the heal** | — | 1 (with ≥ 2 relays) |
//! | **member killed and left down until the heal**, from 70–90 % of D | — | N/50 (≥ 1) |
//!
//! Link faults are layers: each has an id, and a node's rule for a peer is the union of the
//! layers active on that link (cut if any layer cuts it, the longest delay of any layer). Ending
//! a fault removes its own layer only, so a short cut that ends inside the partition does not
//! reopen a link the partition still cuts. Kills and restarts are independent of links: a
//! restarted node gets its active layers again.
//!
//! What a cut means at the node (see `quickfreeze_node::network::LinkFault`): a cut link has
//! both flags on both ends, so no connection can exist across it (as with a real partition, TCP
//! needs both directions) and requests in flight on it fail. A one-way cut is a peer that can
//! dial but cannot be dialled: `a` cannot open a connection to `b`, while a connection `b` opens
//! carries traffic both ways; `a`'s messages for `b` wait for such a connection, or go through
//! `b`'s relays.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fault_level::FaultLevel;

/// What one node does to the traffic of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LinkRule {
    pub(crate) drop_outbound: bool,
    pub(crate) drop_inbound: bool,
    pub(crate) delay_ms: u64,
}

impl LinkRule {
    /// Both directions lost: no connection across.
    pub(crate) const CUT: LinkRule = LinkRule {
        drop_outbound: true,
        drop_inbound: true,
        delay_ms: 0,
    };

    /// The rule of two layers on one link together.
    pub(crate) fn union(self, other: LinkRule) -> LinkRule {
        LinkRule {
            drop_outbound: self.drop_outbound || other.drop_outbound,
            drop_inbound: self.drop_inbound || other.drop_inbound,
            delay_ms: self.delay_ms.max(other.delay_ms),
        }
    }
}

/// How a link fault is counted in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counts {
    Cut,
    OneWay,
    Slow,
    Isolation,
    Partition,
}

/// One link of a fault layer: nodes `a` and `b`, `a`'s rule for `b`, and `b`'s rule for `a`.
pub(crate) type Link = (usize, usize, LinkRule, LinkRule);

/// One scheduled fault or its end.
#[derive(Clone, Debug)]
pub(crate) enum FaultAction {
    /// kill -9.
    Kill { node: usize, relay: bool },
    /// Start again.
    Restart { node: usize },
    /// Adds (`on`) or removes fault layer `id` on `links`.
    Links {
        id: u32,
        links: Vec<Link>,
        on: bool,
        counts: Counts,
    },
}

/// The faults still active when the faulty phase ends, as planned (the report shows them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AtHeal {
    /// Members and relays on each side of the final partition (empty: none).
    pub(crate) sides: [Vec<usize>; 2],
    /// When the partition starts.
    pub(crate) partition_from: Duration,
    /// The relay isolated until the heal.
    pub(crate) isolated_relay: Option<usize>,
    /// Members killed and left down until the heal.
    pub(crate) down: Vec<usize>,
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

/// The schedule, sorted by time, and what of it is still active at the heal. Members are
/// `0..members`, relays follow.
pub(crate) fn plan(
    seed: u64,
    level: FaultLevel,
    members: usize,
    relays: usize,
    phase: Duration,
    workload: Duration,
) -> (Vec<(Duration, FaultAction)>, AtHeal) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6661_756c);
    let span = phase.as_secs_f64();
    let harsh = level == FaultLevel::Harsh;
    let mut events = Vec::new();
    let mut next_id = 0u32;
    let mut layer = |events: &mut Vec<(Duration, FaultAction)>,
                     (start, end): (Duration, Option<Duration>),
                     links: Vec<Link>,
                     counts: Counts| {
        next_id += 1;
        events.push((
            start,
            FaultAction::Links {
                id: next_id,
                links: links.clone(),
                on: true,
                counts,
            },
        ));
        if let Some(end) = end {
            events.push((
                end,
                FaultAction::Links {
                    id: next_id,
                    links,
                    on: false,
                    counts,
                },
            ));
        }
    };
    let at = |rng: &mut ChaCha8Rng, lasting: (f64, f64)| {
        let start = rng.random_range(0.05 * span..0.85 * span);
        let end = (start + rng.random_range(lasting.0..lasting.1)).min(0.95 * span);
        (Duration::from_secs_f64(start), Duration::from_secs_f64(end))
    };
    let pair = |rng: &mut ChaCha8Rng| {
        let a = rng.random_range(0..members);
        (a, (a + rng.random_range(1..members)) % members)
    };
    let mut killed = Vec::new();
    for _ in 0..count(level, members, 12, 5, if harsh { 2 } else { 1 }) {
        let node = rng.random_range(0..members);
        killed.push(node);
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
    for _ in 0..count(level, members, 10, 4, if harsh { 2 } else { 1 }) {
        let (a, b) = pair(&mut rng);
        let (start, end) = at(&mut rng, (1.0, if harsh { 6.0 } else { 4.0 }));
        let links = vec![(a, b, LinkRule::CUT, LinkRule::CUT)];
        layer(&mut events, (start, Some(end)), links, Counts::Cut);
    }
    for _ in 0..count(level, members, 0, 8, 1) {
        // a cannot dial b; b can dial a, and then the connection works both ways.
        let (a, b) = pair(&mut rng);
        let (start, end) = at(&mut rng, (1.0, 6.0));
        let a_rule = LinkRule {
            drop_outbound: true,
            ..LinkRule::default()
        };
        let links = vec![(a, b, a_rule, LinkRule::default())];
        layer(&mut events, (start, Some(end)), links, Counts::OneWay);
    }
    for _ in 0..count(level, members, 20, 10, 1) {
        let (a, b) = pair(&mut rng);
        let (start, end) = at(&mut rng, (2.0, if harsh { 8.0 } else { 6.0 }));
        let slow = LinkRule {
            delay_ms: rng.random_range(50..400),
            ..LinkRule::default()
        };
        layer(
            &mut events,
            (start, Some(end)),
            vec![(a, b, slow, slow)],
            Counts::Slow,
        );
    }
    let isolate = |node: usize| -> Vec<Link> {
        (0..members + relays)
            .filter(|peer| *peer != node)
            .map(|peer| (node, peer, LinkRule::CUT, LinkRule::CUT))
            .collect()
    };
    let mut at_heal = AtHeal::default();
    if harsh {
        let node = rng.random_range(0..members);
        let (start, end) = at(&mut rng, (3.0, 8.0));
        layer(
            &mut events,
            (start, Some(end)),
            isolate(node),
            Counts::Isolation,
        );

        // The final partition, still active at the heal: both sides keep submitting, so work
        // piles up in outboxes and in the relays on the senders' side.
        let mut shuffled: Vec<usize> = (0..members).collect();
        shuffled.shuffle(&mut rng);
        let cut = rng
            .random_range((members * 2 / 5).max(1)..=(members * 3 / 5).max(1))
            .min(members - 1);
        let mut sides = [shuffled[..cut].to_vec(), shuffled[cut..].to_vec()];
        let mut relay_order: Vec<usize> = (members..members + relays).collect();
        relay_order.shuffle(&mut rng);
        for (index, relay) in relay_order.into_iter().enumerate() {
            sides[index % 2].push(relay);
        }
        for side in &mut sides {
            side.sort_unstable();
        }
        let submitting = workload.min(phase).as_secs_f64().max(0.001);
        let from = Duration::from_secs_f64(rng.random_range(0.4 * submitting..0.6 * submitting));
        let links: Vec<Link> = sides[0]
            .iter()
            .flat_map(|a| {
                sides[1]
                    .iter()
                    .map(move |b| (*a, *b, LinkRule::CUT, LinkRule::CUT))
            })
            .collect();
        layer(&mut events, (from, None), links, Counts::Partition);
        at_heal.sides = sides;
        at_heal.partition_from = from;

        // One relay cut from everyone, on top of the partition, until the heal.
        if relays >= 2 {
            let relay = members + rng.random_range(0..relays);
            let from = Duration::from_secs_f64(rng.random_range(0.6 * span..0.75 * span));
            layer(&mut events, (from, None), isolate(relay), Counts::Isolation);
            at_heal.isolated_relay = Some(relay);
        }

        // Members killed and left down: the heal restarts them, and their outboxes (and the
        // work others hold for them) are part of what must converge. Chosen among members no
        // transient kill touches, so no scheduled restart brings them back early.
        let spared: Vec<usize> = (0..members).filter(|node| !killed.contains(node)).collect();
        for _ in 0..(members / 50).max(1).min(spared.len()) {
            let node = spared[rng.random_range(0..spared.len())];
            let when = Duration::from_secs_f64(rng.random_range(0.7 * span..0.9 * span));
            events.push((when, FaultAction::Kill { node, relay: false }));
            if !at_heal.down.contains(&node) {
                at_heal.down.push(node);
            }
        }
    }
    // Stable: a fault and its end never share an instant out of order.
    events.sort_by_key(|(at, _)| *at);
    (events, at_heal)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Replays the schedule's link layers and kills up to the end of the phase.
    fn state_at_end(
        schedule: &[(Duration, FaultAction)],
    ) -> (BTreeMap<(usize, usize), LinkRule>, BTreeSet<usize>) {
        let mut layers: BTreeMap<u32, Vec<Link>> = BTreeMap::new();
        let mut down = BTreeSet::new();
        for (_, action) in schedule {
            match action {
                FaultAction::Kill { node, .. } => {
                    down.insert(*node);
                }
                FaultAction::Restart { node } => {
                    down.remove(node);
                }
                FaultAction::Links { id, links, on, .. } => {
                    if *on {
                        layers.insert(*id, links.clone());
                    } else {
                        layers.remove(id);
                    }
                }
            }
        }
        let mut rules: BTreeMap<(usize, usize), LinkRule> = BTreeMap::new();
        for links in layers.values() {
            for (a, b, a_rule, b_rule) in links {
                let rule = rules.entry((*a, *b)).or_default();
                *rule = rule.union(*a_rule);
                let rule = rules.entry((*b, *a)).or_default();
                *rule = rule.union(*b_rule);
            }
        }
        (rules, down)
    }

    #[test]
    fn schedule_is_a_function_of_the_seed() {
        let phase = Duration::from_secs(30);
        let (one, heal_one) = plan(5, FaultLevel::Harsh, 20, 2, phase, phase / 2);
        let (two, heal_two) = plan(5, FaultLevel::Harsh, 20, 2, phase, phase / 2);
        assert_eq!(format!("{one:?}"), format!("{two:?}"));
        assert_eq!(heal_one, heal_two);
        assert!(one.iter().all(|(at, _)| *at <= phase));
        assert!(plan(5, FaultLevel::None, 20, 2, phase, phase / 2)
            .0
            .is_empty());
        let kills = one
            .iter()
            .filter(|(_, action)| matches!(action, FaultAction::Kill { relay: false, .. }))
            .count();
        assert_eq!(kills, 4 + 1, "transient kills plus one left down");
    }

    #[test]
    fn the_harsh_schedule_leaves_a_partition_a_relay_and_a_dead_member_for_the_heal() {
        let phase = Duration::from_secs(30);
        for seed in 0..20 {
            let (schedule, at_heal) = plan(seed, FaultLevel::Harsh, 20, 4, phase, phase / 2);
            let (rules, down) = state_at_end(&schedule);
            // Every member and relay is on exactly one side, and both sides hold members.
            let mut all: Vec<usize> = at_heal.sides.concat();
            all.sort_unstable();
            assert_eq!(all, (0..24).collect::<Vec<_>>(), "seed {seed}");
            for side in &at_heal.sides {
                assert!(side.iter().any(|node| *node < 20), "seed {seed}: {side:?}");
                assert!(
                    side.iter().any(|node| *node >= 20),
                    "seed {seed}: a relay each side"
                );
            }
            // Still cut at the end, whatever shorter faults came and went on those links.
            for a in &at_heal.sides[0] {
                for b in &at_heal.sides[1] {
                    let rule = rules.get(&(*a, *b)).copied().unwrap_or_default();
                    assert!(
                        rule.drop_outbound && rule.drop_inbound,
                        "seed {seed}: {a}-{b} open at the heal"
                    );
                }
            }
            let relay = at_heal.isolated_relay.expect("an isolated relay");
            for peer in (0..24).filter(|peer| *peer != relay) {
                let rule = rules.get(&(peer, relay)).copied().unwrap_or_default();
                assert!(rule.drop_outbound && rule.drop_inbound, "seed {seed}");
            }
            assert!(!at_heal.down.is_empty());
            assert!(
                at_heal.down.iter().all(|node| down.contains(node)),
                "seed {seed}"
            );
            assert!(
                at_heal.partition_from < phase.mul_f64(0.3),
                "while half of the requests are still to come"
            );
        }
    }

    #[test]
    fn ending_a_short_cut_inside_the_partition_keeps_the_partition() {
        let rule = LinkRule::CUT.union(LinkRule::default());
        assert_eq!(rule, LinkRule::CUT);
        let slow = LinkRule {
            delay_ms: 300,
            ..LinkRule::default()
        };
        assert_eq!(
            slow.union(LinkRule::CUT),
            LinkRule {
                delay_ms: 300,
                ..LinkRule::CUT
            }
        );
        // Seen through the schedule: a transient cut on a pair across the partition ends
        // during it, and the pair is still cut at the end (checked for many seeds above).
        let phase = Duration::from_secs(60);
        let crossing_ends = (0..50u64)
            .filter(|seed| {
                let (schedule, at_heal) = plan(*seed, FaultLevel::Harsh, 20, 2, phase, phase / 2);
                schedule.iter().any(|(at, action)| match action {
                    FaultAction::Links {
                        on: false,
                        links,
                        counts: Counts::Cut,
                        ..
                    } => {
                        *at > at_heal.partition_from
                            && links.iter().any(|(a, b, _, _)| {
                                at_heal.sides[0].contains(a) != at_heal.sides[0].contains(b)
                            })
                    }
                    _ => false,
                })
            })
            .count();
        assert!(
            crossing_ends > 0,
            "no seed exercises a cut ending inside the partition"
        );
    }
}
