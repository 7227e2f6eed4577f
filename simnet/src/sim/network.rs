//! The virtual network: a single event queue in virtual time, per-link latency, and partitions.
//!
//! Everything that happens in a run is a [`SimEvent`] in one [`EventQueue`], ordered by
//! (virtual time in ms, insertion sequence number). The sequence number breaks ties, so the
//! order is total and a run replays exactly from its seed. Requests and responses are events
//! too: a transmit becomes a `RequestArrive` after the link's latency plus jitter (jitter larger
//! than the latency difference of two packets reorders them), and every request ends in exactly
//! one `Outcome` for its sender: the response, or a failure after the request timeout.
//!
//! Links have a base latency fixed by the seed and the pair of nodes (symmetric, no table:
//! N = 500 would need 250,000 entries). [`Partitions`] holds the cuts in force: a cut separates
//! one side from the rest in both directions (symmetric) or in one direction only (asymmetric).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A request on the wire.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) from: usize,
    pub(crate) from_incarnation: u32,
    pub(crate) to: usize,
    pub(crate) request_id: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) sent_at_ms: u64,
    /// A network-made copy: it is processed, but its response is discarded.
    pub(crate) duplicate: bool,
}

/// Something that happens at a virtual instant.
#[derive(Debug)]
pub(crate) enum SimEvent {
    /// A node's core asked to be woken (`poll_timeout`).
    Wake { node: usize },
    /// The workload: an officer submits message `index` of the plan.
    Submit { index: usize },
    /// An officer acknowledges a received message (sends a status update back).
    Acknowledge {
        node: usize,
        sender: usize,
        message_id: quickfreeze_proto::MessageId,
    },
    /// A request reaches its destination.
    RequestArrive(Box<Request>),
    /// The one outcome of a request, reported to its sender.
    Outcome {
        node: usize,
        incarnation: u32,
        request_id: u64,
        response: Option<Vec<u8>>,
    },
    /// Fault injector: crash some member node now.
    ChaosCrash,
    /// Fault injector: take some relay down now.
    ChaosRelayOutage,
    /// Fault injector: start a partition now.
    ChaosPartition,
    /// A random node rotates its keys.
    ChaosRotate,
    /// The authority revokes a random member.
    ChaosRevoke,
    /// A partition ends.
    PartitionEnd { id: u64 },
    /// A crashed node comes back (if it is still down from that crash).
    Restart { node: usize, incarnation: u32 },
    /// The hostile member acts.
    Hostile,
    /// End of the safety phase: heal everything.
    Heal,
    /// Periodic sweep of the invariant checkers.
    Check,
    /// A scripted scenario's step (by index).
    Script { step: usize },
}

struct Scheduled {
    at_ms: u64,
    sequence: u64,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.sequence) == (other.at_ms, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse for earliest first.
        (other.at_ms, other.sequence).cmp(&(self.at_ms, self.sequence))
    }
}

/// The run's single timeline.
#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    next_sequence: u64,
}

impl EventQueue {
    pub(crate) fn push(&mut self, at_ms: u64, event: SimEvent) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.heap.push(Scheduled {
            at_ms,
            sequence,
            event,
        });
    }

    /// The earliest event, with its time and sequence number.
    pub(crate) fn pop(&mut self) -> Option<(u64, u64, SimEvent)> {
        self.heap
            .pop()
            .map(|scheduled| (scheduled.at_ms, scheduled.sequence, scheduled.event))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// SplitMix64: a fixed, fast mixing function for per-link constants.
pub(crate) fn mix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// Base one-way latency of the link between `a` and `b` (the same both ways).
pub(crate) fn base_latency_ms(seed: u64, a: usize, b: usize, min_ms: u64, max_ms: u64) -> u64 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let key = mix64(seed ^ mix64(((low as u64) << 32) | high as u64));
    min_ms + key % (max_ms - min_ms + 1)
}

/// Which way a partition cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CutDirection {
    /// Nothing crosses between the side and the rest.
    Both,
    /// The side cannot send to the rest; the rest can still reach the side.
    OutOfSide,
    /// The rest cannot send to the side; the side can still reach the rest.
    IntoSide,
}

struct Cut {
    id: u64,
    side: Vec<bool>,
    /// The other side; `None` means everyone not on `side`.
    other: Option<Vec<bool>>,
    direction: CutDirection,
}

/// The partitions in force.
#[derive(Default)]
pub(crate) struct Partitions {
    cuts: Vec<Cut>,
    next_id: u64,
}

impl Partitions {
    /// Adds a cut; returns its id.
    pub(crate) fn add(&mut self, side: Vec<bool>, direction: CutDirection) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.cuts.push(Cut {
            id,
            side,
            other: None,
            direction,
        });
        id
    }

    /// Adds a cut between `side` and `other` only (everyone else still talks to both).
    pub(crate) fn add_between(
        &mut self,
        side: Vec<bool>,
        other: Vec<bool>,
        direction: CutDirection,
    ) -> u64 {
        let id = self.add(side, direction);
        if let Some(cut) = self.cuts.last_mut() {
            cut.other = Some(other);
        }
        id
    }

    pub(crate) fn remove(&mut self, id: u64) {
        self.cuts.retain(|cut| cut.id != id);
    }

    pub(crate) fn clear(&mut self) {
        self.cuts.clear();
    }

    pub(crate) fn active(&self) -> usize {
        self.cuts.len()
    }

    /// Whether a packet from `from` to `to` is dropped by some cut.
    pub(crate) fn blocks(&self, from: usize, to: usize) -> bool {
        self.cuts.iter().any(|cut| {
            let in_side = |node: usize| cut.side.get(node).copied().unwrap_or(false);
            let in_other = |node: usize| match &cut.other {
                Some(other) => other.get(node).copied().unwrap_or(false),
                None => !in_side(node),
            };
            let outward = in_side(from) && in_other(to);
            let inward = in_other(from) && in_side(to);
            match cut.direction {
                CutDirection::Both => outward || inward,
                CutDirection::OutOfSide => outward,
                CutDirection::IntoSide => inward,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_orders_by_time_then_sequence() {
        let mut queue = EventQueue::default();
        queue.push(5, SimEvent::Check);
        queue.push(1, SimEvent::Heal);
        queue.push(5, SimEvent::Hostile);
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| queue.pop())
            .map(|(at, sequence, _)| (at, sequence))
            .collect();
        assert_eq!(order, vec![(1, 1), (5, 0), (5, 2)]);
    }

    #[test]
    fn cuts_block_the_right_directions() {
        let mut partitions = Partitions::default();
        let id = partitions.add(vec![true, false, false], CutDirection::OutOfSide);
        assert!(partitions.blocks(0, 1));
        assert!(!partitions.blocks(1, 0));
        assert!(!partitions.blocks(1, 2));
        partitions.remove(id);
        partitions.add(vec![true, false, false], CutDirection::Both);
        assert!(partitions.blocks(0, 1) && partitions.blocks(1, 0));
        partitions.clear();
        assert!(!partitions.blocks(0, 1));
    }

    #[test]
    fn a_cut_between_two_sides_leaves_third_parties_alone() {
        let mut partitions = Partitions::default();
        partitions.add_between(
            vec![true, false, false],
            vec![false, true, false],
            CutDirection::OutOfSide,
        );
        assert!(partitions.blocks(0, 1));
        assert!(!partitions.blocks(1, 0));
        assert!(!partitions.blocks(0, 2) && !partitions.blocks(2, 1));
    }

    #[test]
    fn latency_is_symmetric_and_in_range() {
        for a in 0..20 {
            for b in 0..20 {
                let latency = base_latency_ms(7, a, b, 5, 150);
                assert_eq!(latency, base_latency_ms(7, b, a, 5, 150));
                assert!((5..=150).contains(&latency));
            }
        }
    }
}
