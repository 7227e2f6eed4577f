//! Building the live network (identities, roster, node configs, processes), applying one
//! fault to the running nodes, and sampling their resource use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::types::iso_country_codes;
use quickfreeze_keys::CountryCode;
use quickfreeze_node::config::RetrySection;
use quickfreeze_node::testnet::{NodePlan, NodeProcess, Testnet};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::LiveConfig;
use super::faults;
use super::faults::{FaultAction, LinkRule};
use super::report::{self, LiveReport};
use super::shared::{Job, Shared};

/// Generates the network: `nodes` points of contact, `relays` relays, and (with faults) the
/// hostile member last. Each member gets one or two relays.
pub(super) fn build_network(
    root: &Path,
    config: &LiveConfig,
    hostile: bool,
) -> Result<Testnet, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6e65_7477);
    let mut countries: Vec<&'static str> = iso_country_codes().collect();
    countries.shuffle(&mut rng);
    let total = config.nodes + config.relays + usize::from(hostile);
    if total > countries.len() {
        return Err(format!(
            "at most {} nodes: one country each",
            countries.len()
        ));
    }
    let mut plans = Vec::with_capacity(total);
    for (index, country) in countries.iter().enumerate().take(total) {
        let country = CountryCode::parse(country)?;
        let (label, role) = if index < config.nodes {
            (format!("node{index:03}"), Role::PointOfContact)
        } else if index < config.nodes + config.relays {
            (format!("relay{:02}", index - config.nodes), Role::Relay)
        } else {
            ("hostile".to_owned(), Role::PointOfContact)
        };
        let relays = if role == Role::PointOfContact && config.relays > 0 {
            let first = config.nodes + rng.random_range(0..config.relays);
            let mut relays = vec![first];
            if config.relays > 1 && rng.random_bool(0.5) {
                let second = config.nodes + rng.random_range(0..config.relays);
                if second != first {
                    relays.push(second);
                }
            }
            relays
        } else {
            Vec::new()
        };
        plans.push(NodePlan {
            label,
            country,
            role,
            relays,
            dialable: true,
        });
    }
    Testnet::build(root, "simnet-live", &plans, Some(config.seed), |_, node| {
        // The production retry policy (and reconnect probe) unless asked otherwise: what
        // converges here converges in the field.
        node.retry = RetrySection::default();
        if config.short_retries {
            node.retry.base_ms = 200;
            node.retry.cap_ms = 1_500;
            node.retry.custody_recheck_ms = 2_000;
        }
        if let Some(lifetime) = config.routine_lifetime_s {
            node.lifetime.routine_s = lifetime;
        }
        if let Some(probe) = config.reconnect_probe_ms {
            node.retry.reconnect_probe_ms = probe;
        }
        node.store.cache_capacity_bytes = 4 * 1024 * 1024;
        node.testing.fault_injection = true;
    })
}

pub(super) fn apply_fault(
    shared: &Arc<Shared>,
    action: FaultAction,
    report: &mut LiveReport,
    down: &mut BTreeSet<usize>,
    restarts: &mut Vec<std::thread::JoinHandle<()>>,
) {
    match action {
        FaultAction::Kill { node, relay } => {
            if shared.kill(node) {
                down.insert(node);
                if relay {
                    report.relay_outages += 1;
                } else {
                    report.kills += 1;
                }
            }
        }
        FaultAction::Restart { node } => {
            if down.remove(&node) {
                let shared = shared.clone();
                restarts.push(std::thread::spawn(move || {
                    // A failed restart is retried at the heal.
                    let _ = shared.restart(node);
                }));
            }
        }
        FaultAction::Links {
            id,
            links,
            on,
            counts,
        } => {
            let mut touched: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
            for (a, b, a_rule, b_rule) in links {
                for (node, peer, rule) in [(a, b, a_rule), (b, a, b_rule)] {
                    if rule != LinkRule::default() {
                        shared.set_layer(node, peer, id, on.then_some(rule));
                        touched.entry(node).or_default().insert(peer);
                    }
                }
            }
            for (node, peers) in touched {
                if shared.slots[node].up.load(Ordering::Relaxed) {
                    shared.apply_rules(node, &peers);
                }
            }
            if on {
                match counts {
                    faults::Counts::Cut => report.link_cuts += 1,
                    faults::Counts::OneWay => {
                        report.link_cuts += 1;
                        report.one_way_cuts += 1;
                    }
                    faults::Counts::Slow => report.slow_links += 1,
                    faults::Counts::Isolation => report.isolations += 1,
                    faults::Counts::Partition => report.partitions += 1,
                }
            }
        }
    }
}

/// Every half second: RSS and CPU of the node processes; every second: the delivery logs.
pub(super) fn monitor(shared: &Shared) -> report::Resources {
    let mut sampler = report::ProcSampler::default();
    let mut rng = ChaCha8Rng::seed_from_u64(shared.seed ^ 0x7265_706c);
    let mut tick = 0u64;
    let (job_tx, job_rx) = mpsc::channel::<(Instant, Job)>();
    while !shared.stop.load(Ordering::Relaxed) {
        let pids: Vec<u32> = shared
            .slots
            .iter()
            .filter_map(|slot| {
                slot.process
                    .lock()
                    .ok()
                    .and_then(|process| process.as_ref().map(NodeProcess::pid))
            })
            .collect();
        sampler.sample(&pids);
        if tick.is_multiple_of(2) {
            shared.drain_logs(&mut rng, &job_tx);
            // Replies go through the retry queue, which the main loop feeds to the submitters.
            while let Ok((at, job)) = job_rx.try_recv() {
                if let Ok(sender) = shared.retry_tx.lock() {
                    let _ = sender.send((at, job));
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    sampler.resources
}
