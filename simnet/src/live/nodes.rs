//! Driving the node processes: console requests, fault layers, pending work, kill -9 and
//! restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_node::testnet::NodeProcess;

use super::faults::LinkRule;
use super::shared::{Shared, CONSOLE_TIMEOUT, HEAL_LANES};

impl Shared {
    pub(super) fn request(
        &self,
        node: usize,
        request: &ControlRequest,
    ) -> Result<ControlResponse, String> {
        let slot = &self.slots[node];
        let mut client = ControlClient::connect(&slot.data_dir, CONSOLE_TIMEOUT)
            .map_err(|error| error.to_string())?;
        client.request(request).map_err(|error| error.to_string())
    }

    /// Sends node `node` its current rules for `peers` (after a restart, or a change): the
    /// union of each peer's layers, one console request per distinct rule.
    pub(super) fn apply_rules(&self, node: usize, peers: &BTreeSet<usize>) {
        let slot = &self.slots[node];
        let mut by_rule: BTreeMap<LinkRule, Vec<String>> = BTreeMap::new();
        if let Ok(rules) = slot.rules.lock() {
            for peer in peers {
                let rule = rules.get(peer).map_or(LinkRule::default(), |layers| {
                    layers
                        .values()
                        .fold(LinkRule::default(), |all, rule| all.union(*rule))
                });
                by_rule
                    .entry(rule)
                    .or_default()
                    .push(self.slots[*peer].node_id.to_string());
            }
        }
        for (rule, peers) in by_rule {
            let _ = self.request(
                node,
                &ControlRequest::Fault {
                    peers,
                    drop_outbound: rule.drop_outbound,
                    drop_inbound: rule.drop_inbound,
                    delay_ms: rule.delay_ms,
                },
            );
        }
    }

    /// Adds (`Some`) or removes layer `id` of node `node`'s rule for `peer`; the caller applies.
    pub(super) fn set_layer(&self, node: usize, peer: usize, id: u32, rule: Option<LinkRule>) {
        if let Ok(mut rules) = self.slots[node].rules.lock() {
            match rule {
                Some(rule) => {
                    rules.entry(peer).or_default().insert(id, rule);
                }
                None => {
                    if let Some(layers) = rules.get_mut(&peer) {
                        layers.remove(&id);
                        if layers.is_empty() {
                            rules.remove(&peer);
                        }
                    }
                }
            }
        }
    }

    /// [`Shared::pending`] of nodes `0..total`, asked in parallel so that one round over a
    /// hundred busy nodes takes a fraction of a second (the convergence time is only as precise
    /// as a round is short).
    pub(super) fn pending_everywhere(&self, total: usize) -> Vec<(usize, Option<usize>)> {
        let mut all: Vec<(usize, Option<usize>)> = std::thread::scope(|scope| {
            let lanes: Vec<_> = (0..HEAL_LANES)
                .map(|lane| {
                    scope.spawn(move || {
                        (lane..total)
                            .step_by(HEAL_LANES)
                            .map(|index| (index, self.pending(index)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            lanes
                .into_iter()
                .flat_map(|lane| lane.join().unwrap_or_default())
                .collect()
        });
        all.sort_unstable();
        all
    }

    /// Undelivered outbox entries plus relay entries of node `node`, if it answers.
    pub(super) fn pending(&self, node: usize) -> Option<usize> {
        match self.request(node, &ControlRequest::Status) {
            Ok(ControlResponse::Status { report }) => {
                Some(report.outbox_pending.iter().sum::<usize>() + report.relay_pending)
            }
            _ => None,
        }
    }

    pub(super) fn kill(&self, node: usize) -> bool {
        let slot = &self.slots[node];
        if slot.restarting.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(mut process) = slot.process.lock() else {
            return false;
        };
        match process.as_mut() {
            Some(running) => {
                slot.up.store(false, Ordering::Relaxed);
                let _ = running.kill9();
                *process = None;
                true
            }
            None => false,
        }
    }

    /// Starts the node again and re-applies its faults; blocks until it answers.
    pub(super) fn restart(&self, node: usize) -> Result<(), String> {
        let slot = &self.slots[node];
        if slot.up.load(Ordering::Relaxed) || slot.restarting.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let result =
            NodeProcess::start(&self.node_command, &slot.data_dir, Duration::from_secs(60));
        let outcome = match result {
            Ok(process) => {
                if let Ok(mut slot_process) = slot.process.lock() {
                    *slot_process = Some(process);
                }
                // Up first: a fault layer added from now on is applied by its own action.
                slot.up.store(true, Ordering::Relaxed);
                let peers: BTreeSet<usize> = slot
                    .rules
                    .lock()
                    .map(|rules| rules.keys().copied().collect())
                    .unwrap_or_default();
                self.apply_rules(node, &peers);
                Ok(())
            }
            Err(error) => Err(error),
        };
        slot.restarting.store(false, Ordering::Relaxed);
        outcome
    }
}
