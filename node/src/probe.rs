//! Reconnect probing: which backed-off peers to dial on each tick.
//!
//! After failures the core waits before it tries a peer again, doubling up to `retry.cap_ms`
//! (a minute by default), and resets that wait the moment the peer is seen
//! ([`quickfreeze_proto::core::Core::handle_peer_seen`], called on every new connection). A peer
//! that comes back after a partition or a restart does not announce itself to everyone that
//! holds work for it, so without help that work would wait out the rest of its backoff. Every
//! tick (`retry.reconnect_probe_ms`, jittered) the daemon therefore dials the peers that pending
//! work waits on and that are backing off and not connected
//! ([`quickfreeze_proto::core::Core::peers_awaiting_reconnect`]). A dial is cheap and changes no
//! state in the core: if it fails nothing happens (the backoff runs on), if it succeeds the
//! connection is reported as usual and the work is retried at once.
//!
//! At most `retry.reconnect_probe_max_dials` peers are dialled per tick, so a large roster with
//! many peers down cannot turn into a dial storm; emergency work first, then the peers probed
//! least recently, so every waiting peer gets its turn. libp2p does not start a second dial to a
//! peer while one is under way, so a slow dial is not stacked by later ticks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quickfreeze_keys::NodeId;
use quickfreeze_proto::ids::Priority;
use rand::RngExt;

/// The probe's settings and its memory of when each peer was last dialled.
#[derive(Debug)]
pub(crate) struct ReconnectProbe {
    interval: Duration,
    max_dials: usize,
    last_dialled: BTreeMap<NodeId, Instant>,
}

impl ReconnectProbe {
    /// A probe ticking about every `interval_ms` (0: off), dialling at most `max_dials` per tick.
    pub(crate) fn new(interval_ms: u64, max_dials: usize) -> ReconnectProbe {
        ReconnectProbe {
            interval: Duration::from_millis(interval_ms),
            max_dials,
            last_dialled: BTreeMap::new(),
        }
    }

    /// Whether probing is on.
    pub(crate) fn enabled(&self) -> bool {
        !self.interval.is_zero() && self.max_dials > 0
    }

    /// Time until the next tick: uniform in [½, 1] of the interval, so nodes that lost the same
    /// peer do not all dial it in the same instant.
    pub(crate) fn next_delay(&self) -> Duration {
        let full = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if full == 0 {
            return Duration::from_secs(3600);
        }
        Duration::from_millis(full / 2 + rand::rng().random_range(0..=full / 2))
    }

    /// Picks this tick's dials from `waiting` (the core's list: peer and the highest priority
    /// of the work waiting on it), leaving out peers `skip` names (connected, no address).
    pub(crate) fn pick(
        &mut self,
        now: Instant,
        waiting: &[(NodeId, Priority)],
        skip: impl Fn(&NodeId) -> bool,
    ) -> Vec<NodeId> {
        // Forget peers nothing waits on any more: the map stays within the roster's size.
        self.last_dialled
            .retain(|peer, _| waiting.iter().any(|(waiting, _)| waiting == peer));
        let mut candidates: Vec<(Priority, Option<Instant>, NodeId)> = waiting
            .iter()
            .filter(|(peer, _)| !skip(peer))
            .map(|(peer, priority)| (*priority, self.last_dialled.get(peer).copied(), *peer))
            .collect();
        // Highest priority first; within it, never dialled first, then the longest ago.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let picked: Vec<NodeId> = candidates
            .into_iter()
            .take(self.max_dials)
            .map(|(_, _, peer)| peer)
            .collect();
        for peer in &picked {
            self.last_dialled.insert(*peer, now);
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use quickfreeze_keys::Identity;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn peers(count: usize) -> Vec<NodeId> {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        (0..count)
            .map(|_| Identity::generate(&mut rng).node_id())
            .collect()
    }

    #[test]
    fn at_most_max_dials_per_tick_and_every_waiting_peer_gets_its_turn() {
        let peers = peers(10);
        let waiting: Vec<(NodeId, Priority)> =
            peers.iter().map(|peer| (*peer, Priority::Urgent)).collect();
        let mut probe = ReconnectProbe::new(1000, 4);
        let start = Instant::now();
        let mut seen = std::collections::BTreeSet::new();
        for tick in 0..3u64 {
            let picked = probe.pick(start + Duration::from_secs(tick), &waiting, |_| false);
            assert_eq!(picked.len(), 4);
            seen.extend(picked);
        }
        assert_eq!(seen.len(), 10, "three ticks of four reach all ten peers");
    }

    #[test]
    fn emergency_first_and_skipped_peers_are_not_dialled() {
        let peers = peers(4);
        let waiting = vec![
            (peers[0], Priority::Routine),
            (peers[1], Priority::Urgent),
            (peers[2], Priority::Emergency),
            (peers[3], Priority::Emergency),
        ];
        let mut probe = ReconnectProbe::new(1000, 2);
        let picked = probe.pick(Instant::now(), &waiting, |peer| *peer == peers[3]);
        assert_eq!(picked, vec![peers[2], peers[1]]);
        assert!(probe.pick(Instant::now(), &[], |_| false).is_empty());
        assert!(
            probe.last_dialled.is_empty(),
            "forgets peers nothing waits on"
        );
    }

    #[test]
    fn ticks_are_jittered_within_half_to_one_interval_and_zero_is_off() {
        let probe = ReconnectProbe::new(1000, 8);
        assert!(probe.enabled());
        let delays: Vec<Duration> = (0..200).map(|_| probe.next_delay()).collect();
        assert!(delays
            .iter()
            .all(|delay| *delay >= Duration::from_millis(500)
                && *delay <= Duration::from_millis(1000)));
        assert!(delays.iter().any(|delay| *delay != delays[0]), "jittered");
        assert!(!ReconnectProbe::new(0, 8).enabled());
        assert!(!ReconnectProbe::new(1000, 0).enabled());
    }
}
