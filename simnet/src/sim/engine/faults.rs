//! Faults as the simulator applies them: crashes and restarts, relay outages, partitions, the
//! hostile member's attacks, scripted scenario steps, and the heal that ends them.

use quickfreeze_keys::roster::PreviousKeys;
use quickfreeze_keys::{EncryptionKey, SignedRoster, Timestamp};
use quickfreeze_proto::core::Store;
use quickfreeze_proto::frame::{Batch, Frame};
use rand::RngExt;

use crate::sim::invariants::{Invariant, Violation};
use crate::sim::script;

use super::{harness, uniform, SimNode, Simulator};
use crate::sim::network::{CutDirection, Request, SimEvent};
use crate::sim::world::{self, NodeKind, World, START};

impl Simulator {
    /// One scripted scenario step.
    pub(super) fn on_script(&mut self, step: usize) -> Result<(), Violation> {
        use script::{Action, Who};
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
            Action::Rotate { who, grace_ms } => {
                for node in resolve(&who, &self.world) {
                    self.rotate(node, grace_ms)?;
                }
            }
            Action::NewRoster { at } => self.install_new_roster(at)?,
            Action::Revoke { who, at } => self.revoke(who, at)?,
        }
        Ok(())
    }

    // ----- faults ------------------------------------------------------------------------

    pub(super) fn crash(&mut self, node: usize) -> Result<(), Violation> {
        let Some(core) = self.nodes[node].core.take() else {
            return Ok(());
        };
        let mut store = core.into_store();
        store.crash();
        self.disconnect_neighbours(node);
        self.nodes[node].incarnation += 1;
        self.nodes[node].wake_at_ms = None;
        self.report.crashes += 1;
        self.record(&[self.now_ms, node as u64, 0xC4A5]);
        let node_id = self.world.ids[node];
        let checked = self.truth.check_durable(node, node_id, &store);
        self.nodes[node].store_while_down = Some(store);
        checked.map_err(|(invariant, detail)| self.violation(invariant, detail))
    }

    pub(super) fn restart(&mut self, node: usize) -> Result<(), Violation> {
        let Some(store) = self.nodes[node].store_while_down.take() else {
            return Ok(());
        };
        let core = self.build_core(node, store)?;
        self.nodes[node].core = Some(core);
        self.report.restarts += 1;
        self.release(node)?;
        self.connect_neighbours(node)
    }

    /// A random member or relay rotates its keys (old keys valid for an hour, far beyond what
    /// is in flight, so nothing may be lost).
    pub(super) fn on_chaos_rotate(&mut self) -> Result<(), Violation> {
        if self.liveness {
            return Ok(());
        }
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|index| {
                self.nodes[*index].kind != NodeKind::Hostile
                    && !self.truth.revoked.contains(index)
                    && self.world.rotations[*index] < 4
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let node = candidates[self.fault_rng.random_range(0..candidates.len())];
        self.rotate(node, 3_600_000)
    }

    /// The authority revokes a random member (not yet revoked) and a running member installs
    /// the notice.
    pub(super) fn on_chaos_revoke(&mut self) -> Result<(), Violation> {
        if self.liveness {
            return Ok(());
        }
        let members: Vec<usize> = (0..self.nodes.len())
            .filter(|index| {
                self.nodes[*index].kind == NodeKind::Member && !self.truth.revoked.contains(index)
            })
            .collect();
        if members.len() < 3 {
            return Ok(());
        }
        let who = members[self.fault_rng.random_range(0..members.len())];
        let installers: Vec<usize> = members
            .iter()
            .copied()
            .filter(|index| *index != who && self.nodes[*index].core.is_some())
            .collect();
        if installers.is_empty() {
            return Ok(());
        }
        let at = installers[self.fault_rng.random_range(0..installers.len())];
        self.revoke(who, at)
    }

    /// `key rotate` at `node`, then the next roster serial naming its new keys (old ones valid
    /// for `grace_ms`), stored at the node; a running node restarts on the new keys.
    pub(super) fn rotate(&mut self, node: usize, grace_ms: u64) -> Result<(), Violation> {
        let was_up = self.nodes[node].core.is_some();
        if was_up {
            self.crash(node)?;
        }
        self.world.rotations[node] = self.world.rotations[node].saturating_add(1);
        let rotated = world::identity_rotated(self.config.seed, node, self.world.rotations[node]);
        let until = self.local_now(node).plus_ms(grace_ms);
        let mut roster = self.world.roster.clone();
        roster.serial += 1;
        let node_id = self.world.ids[node];
        let at_ms = self.now_ms;
        let entry = roster
            .members
            .iter_mut()
            .find(|member| member.node_id == node_id)
            .ok_or_else(|| harness(at_ms, format!("node {node} is not in the roster")))?;
        // Keys rotated out earlier stay listed until their own grace ends.
        let now = self.local_now(node);
        entry
            .previous_keys
            .retain(|previous| previous.valid_until > now);
        entry.previous_keys.push(PreviousKeys {
            signing_key: entry.current_signing_key(),
            encryption_key: entry.encryption_key,
            valid_until: until,
        });
        entry.signing_key = Some(rotated.newest_signing_key());
        entry.encryption_key = EncryptionKey(rotated.newest_encryption_public());
        let signed = SignedRoster::new(&roster)
            .and_then(|mut signed| {
                signed.sign(&world::authority(self.config.seed), None)?;
                signed.to_bytes()
            })
            .map_err(|error| harness(at_ms, format!("rotated roster: {error}")))?;
        if let Some(store) = self.nodes[node].store_while_down.as_mut() {
            store
                .put_roster(&signed)
                .map_err(|error| harness(at_ms, error.to_string()))?;
        }
        self.world.roster = roster;
        self.world.signed_roster = signed;
        self.report.rotations += 1;
        if was_up {
            self.restart(node)?;
        }
        Ok(())
    }

    pub(super) fn crash_for(&mut self, node: usize, down_ms: u64) -> Result<(), Violation> {
        self.crash(node)?;
        let incarnation = self.nodes[node].incarnation;
        self.queue.push(
            self.now_ms + down_ms,
            SimEvent::Restart { node, incarnation },
        );
        Ok(())
    }

    pub(super) fn pick_up_node(&mut self, kind: NodeKind) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|index| self.nodes[*index].kind == kind && self.nodes[*index].core.is_some())
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.fault_rng.random_range(0..candidates.len())])
    }

    pub(super) fn on_chaos_crash(&mut self) -> Result<(), Violation> {
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

    pub(super) fn on_chaos_relay_outage(&mut self) -> Result<(), Violation> {
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

    pub(super) fn on_chaos_partition(&mut self) {
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

    pub(super) fn on_hostile(&mut self) -> Result<(), Violation> {
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

    pub(super) fn on_hostile_outcome(
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

    pub(super) fn on_heal(&mut self) -> Result<(), Violation> {
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
}
