//! Trust that changes while the simulation runs: the connections members keep to their relays
//! (over which serials are gossiped and notices pushed), new roster serials and revocation
//! notices installed at one node, how long each takes to reach every node, and the checker
//! that nothing from a revoked member is accepted by a node after its notice arrived there.

use std::collections::BTreeSet;

use quickfreeze_keys::{NodeId, Revocation, SignedRevocation, SignedRoster};
use quickfreeze_proto::core::Store;

use crate::sim::invariants::{Invariant, Violation};
use crate::sim::world::{self, NodeKind, START};

use super::{harness, Simulator};

/// A change installed at one node, and when each node first held it.
#[derive(Clone, Debug)]
pub(super) struct SpreadWatch {
    /// The serial that must arrive.
    pub(super) serial: u64,
    /// When it was installed (virtual ms).
    pub(super) started_ms: u64,
    /// Per node: when it first held the serial (or a higher one).
    pub(super) reached: Vec<Option<u64>>,
}

impl SpreadWatch {
    fn new(serial: u64, started_ms: u64, nodes: usize) -> SpreadWatch {
        SpreadWatch {
            serial,
            started_ms,
            reached: vec![None; nodes],
        }
    }

    /// Virtual ms from the install until the last node held it, once all do.
    fn spread_ms(&self, counted: &[bool]) -> Option<u64> {
        let mut last = self.started_ms;
        for (reached, counted) in self.reached.iter().zip(counted) {
            if *counted {
                last = last.max((*reached)?);
            }
        }
        Some(last - self.started_ms)
    }
}

impl Simulator {
    /// Node `node` (just started or restarted) and each neighbour that is up tell each other
    /// they are connected, as libp2p's `Connected` does for the daemon.
    pub(super) fn connect_neighbours(&mut self, node: usize) -> Result<(), Violation> {
        if !self.config.model_connections || self.nodes[node].core.is_none() {
            return Ok(());
        }
        for peer in self.world.neighbours(node) {
            if self.nodes[peer].core.is_none() {
                continue;
            }
            for (this, other) in [(node, peer), (peer, node)] {
                let now = self.local_now(this);
                let other_id = self.world.ids[other];
                self.core_mut(this)?.handle_connected(now, other_id);
                self.flush(this)?;
                self.release(this)?;
            }
        }
        Ok(())
    }

    /// Node `node` went down: its neighbours see the connection close.
    pub(super) fn disconnect_neighbours(&mut self, node: usize) {
        if !self.config.model_connections {
            return;
        }
        let id = self.world.ids[node];
        for peer in self.world.neighbours(node) {
            if let Some(core) = self.nodes[peer].core.as_mut() {
                core.handle_disconnected(id);
            }
        }
    }

    /// The roster authority issues the next serial (same members) and node `at`'s operator
    /// installs it; a node that is down finds it in its store at restart.
    pub(super) fn install_new_roster(&mut self, at: usize) -> Result<(), Violation> {
        let at_ms = self.now_ms;
        let mut roster = self.world.roster.clone();
        roster.serial += 1;
        let signed = SignedRoster::new(&roster)
            .and_then(|mut signed| {
                signed.sign(&world::authority(self.config.seed), None)?;
                signed.to_bytes()
            })
            .map_err(|error| harness(at_ms, format!("new roster: {error}")))?;
        self.world.roster = roster;
        self.world.signed_roster = signed.clone();
        self.report.roster_updates += 1;
        self.roster_watch = Some(SpreadWatch::new(
            self.world.roster.serial,
            at_ms,
            self.nodes.len(),
        ));
        if self.nodes[at].core.is_some() {
            let now = self.local_now(at);
            self.core_mut(at)?
                .install_roster(now, &signed)
                .map_err(|error| {
                    harness(at_ms, format!("node {at} refused the roster: {error}"))
                })?;
            self.flush(at)?;
            self.release(at)?;
        } else if let Some(store) = self.nodes[at].store_while_down.as_mut() {
            store
                .put_roster(&signed)
                .map_err(|error| harness(at_ms, error.to_string()))?;
        }
        Ok(())
    }

    /// The roster authority signs a notice revoking member `who`; node `at`'s operator installs
    /// it (at once if the node is up, otherwise when it is back).
    pub(super) fn revoke(&mut self, who: usize, at: usize) -> Result<(), Violation> {
        let at_ms = self.now_ms;
        if self.truth.revoked.contains(&who) {
            return Ok(());
        }
        self.world.revocation_serial += 1;
        let revocation = Revocation {
            network: self.world.roster.network.clone(),
            serial: self.world.revocation_serial,
            issued_at: START.plus_ms(self.now_ms),
            nodes: vec![self.world.ids[who]],
            keys: Vec::new(),
            reason: format!("simulated compromise of node {who}"),
        };
        let bytes = SignedRevocation::new(&revocation)
            .and_then(|mut signed| {
                signed.sign(&world::authority(self.config.seed), &self.world.roster)?;
                signed.to_bytes()
            })
            .map_err(|error| harness(at_ms, format!("revocation notice: {error}")))?;
        self.report.revocations += 1;
        self.revocation_watch = Some(SpreadWatch::new(
            self.world.revocation_serial,
            at_ms,
            self.nodes.len(),
        ));
        self.truth.excuse_member(who);
        if self.nodes[at].core.is_none() {
            self.restart(at)?;
        }
        self.core_mut(at)?
            .apply_revocation(None, &bytes)
            .map_err(|error| harness(at_ms, format!("node {at} refused the notice: {error}")))?;
        self.flush(at)?;
        self.release(at)
    }

    /// After a node's outputs were released: note which roster and notices it now holds, and
    /// which members it has learnt are revoked.
    pub(super) fn note_trust(&mut self, node: usize) {
        let Some(core) = self.nodes[node].core.as_ref() else {
            return;
        };
        let roster_serial = core.roster().serial;
        let revocation_serial = core.revocation_serial();
        let now_ms = self.now_ms;
        if let Some(watch) = self.roster_watch.as_mut() {
            if roster_serial >= watch.serial && watch.reached[node].is_none() {
                watch.reached[node] = Some(now_ms);
            }
        }
        if let Some(watch) = self.revocation_watch.as_mut() {
            if revocation_serial >= watch.serial && watch.reached[node].is_none() {
                watch.reached[node] = Some(now_ms);
            }
        }
        let known: BTreeSet<NodeId> = self
            .world
            .roster
            .members
            .iter()
            .filter(|member| core.revocations().any(|notice| notice.revokes(member)))
            .map(|member| member.node_id)
            .collect();
        self.revoked_known[node] = known;
    }

    /// Invariant 7: node `node` must not take a message from `sender` once it holds a notice
    /// revoking it.
    pub(super) fn check_not_revoked(
        &self,
        node: usize,
        sender: NodeId,
        what: &str,
    ) -> Result<(), Violation> {
        if self.revoked_known[node].contains(&sender) {
            let index = self
                .world
                .index_of
                .get(&sender)
                .map_or_else(|| sender.to_string(), |index| index.to_string());
            return Err(self.violation(
                Invariant::Revoked,
                format!(
                    "node {node} {what} from node {index} after it held the notice revoking it"
                ),
            ));
        }
        Ok(())
    }

    /// Whether either node is a revoked member (their traffic may be refused).
    pub(super) fn involves_revoked(&self, one: usize, other: usize) -> bool {
        self.truth.revoked.contains(&one) || self.truth.revoked.contains(&other)
    }

    /// Fills the spread figures of the report.
    pub(super) fn report_spread(&mut self) {
        let counted: Vec<bool> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                node.kind != NodeKind::Hostile && !self.truth.revoked.contains(&index)
            })
            .collect();
        self.report.roster_spread_ms = self
            .roster_watch
            .as_ref()
            .and_then(|watch| watch.spread_ms(&counted));
        self.report.revocation_spread_ms = self
            .revocation_watch
            .as_ref()
            .and_then(|watch| watch.spread_ms(&counted));
    }
}
