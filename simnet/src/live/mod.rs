//! The live simulation (`simnet live`): real quickfreeze nodes on loopback under real faults.
//!
//! ```text
//! simnet live --nodes 100 --relays 4 --messages 2000 --rate 100 --faults harsh --seed 7 \
//!     --report-dir live-report --json live-report/report.json
//! ```
//!
//! # Processes, not in-process swarms
//!
//! Every node and relay is a child process running the real daemon (`quickfreeze run`; by
//! default the `quickfreeze` binary next to `simnet`, else `simnet` itself re-executing the same
//! CLI through a hidden subcommand, see `--node-binary`). That buys real `kill -9` (sled's
//! recovery, half-written group commits, lost in-memory state), per-process RSS and CPU from
//! `/proc`, and no shared runtime or allocator between nodes. It fits: an idle node is about
//! 10–20 MB RSS (sled cache set to 4 MiB here), so 100 nodes take about 1–2 GiB of the 24 GiB,
//! and each process has one tokio runtime with two workers and a sled flusher thread, which the
//! kernel schedules fine on two cores as long as they are mostly idle; 100 processes start in a
//! few seconds. In-process swarms would share one tokio runtime and one allocator (one node's
//! burst delays all others), could not be killed mid-write, and would hit the per-process fd
//! limit sooner (see the pitfalls).
//!
//! # Faults (drawn from the seed; see [`faults`])
//!
//! - **kill -9** of a member and a restart after 0.3–3 s (`Child::kill` is SIGKILL);
//! - **relay outages**: a relay killed for seconds;
//! - **link cuts**, both directions or one, and **slow links** (50–400 ms), through the daemon's
//!   test-only `fault` console request, refused unless the node's config has
//!   `[testing] fault_injection = true`: a cut link holds no connection (the network layer
//!   refuses to dial it and closes connections across it), a one-way cut is a peer that cannot
//!   be dialled by the other, a slow link holds messages back
//!   (`quickfreeze_node::network::LinkFault`). Faults are layers, so they may overlap; the
//!   harness re-applies a node's faults when it restarts;
//! - **isolation**: one member cut from everyone for seconds;
//! - with harsh faults, three that only the heal lifts: a **partition** of members and relays
//!   into two sides from about the middle of the submissions on, **one relay isolated**, and a
//!   **member killed and left down**;
//! - **a hostile member** (see [`hostile`]): the harness itself, on the roster, flooding members
//!   with garbage and forged frames.
//!
//! # Workload
//!
//! `--messages` requests at `--rate` per second in bursts (a hot sender or a hot recipient),
//! between random countries: mostly urgent preservation requests, some emergencies, urgent
//! traffic-data disclosures and routine follow-ups (the simulator's mix), submitted through each
//! node's console socket by eight submitter threads; an officer whose node is down tries again a
//! second later (up to 20 times). About one delivered request in six gets a status reply from
//! the recipient's officer. Every payload carries a unique case reference `QFSIM-CASE-…`.
//!
//! The nodes run the production retry policy (1 s doubling to a 60 s cap, custody re-check every
//! 60 s) and the daemon's reconnect probe; `--short-retries` restores the old 200 ms / 1.5 s
//! harness setting and `--reconnect-probe-ms 0` turns the probe off, to measure what each buys.
//! `--routine-lifetime-s` makes routine messages expire after seconds, so expiry happens live.
//!
//! # The end
//!
//! Heal: the hostile member stopped; the work still pending counted on every node (that is the
//! work convergence has to do); every dead node restarted; then every fault lifted on every
//! node at once. Then the harness polls every node's status until no outbox holds undelivered
//! work and no relay holds anything (bounded by `--converge-timeout`); that time is "converge
//! after heal". Then every node is killed and its sled store opened by the harness, and the
//! invariants are checked from the stores themselves:
//!
//! - every accepted message is delivered (its outbox entry is `delivered` with a delivery
//!   receipt that verifies against the roster, signed by the recipient, for that message and
//!   envelope digest) and sits in the recipient's inbox, or is expired and the sender's audit
//!   trail holds its `expired` record (written in the same group commit as the expiry, before
//!   the log line and the alert hook: the operator was told). Anything else at the end is a
//!   violation;
//! - the recipient's inbox holds it exactly once and no other inbox holds it;
//! - every inbox entry is something the harness submitted (its case reference, sender and
//!   recipient match a submission, or it is a status reply) — nothing forged was accepted, and
//!   nothing from the hostile member;
//! - relays hold no inbox or outbox, and no byte of any file in a relay's store contains the
//!   case-reference marker (no plaintext);
//! - the hostile member never got a receipt for a forgery.
//!
//! Latency is measured from just before the harness sends `submit` to the instant the sender's
//! daemon verified the delivery receipt (its test-only delivery log, read every second).

mod check;
mod config;
mod faults;
pub mod hostile;
mod network;
mod nodes;
mod officers;
pub mod plot;
mod progress;
pub mod report;
mod shared;
pub mod spread;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_node::testnet::NodeProcess;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::fault_level::FaultLevel;
pub use config::LiveConfig;
pub use report::LiveReport;

use check::check_stores;
use network::{apply_fault, build_network, monitor};
use officers::plan_workload;
use progress::Progress;
use shared::{round_ms, Job, Kind, Shared, Slot, Submission, HEAL_LANES, SUBMITTERS};

/// Runs one live simulation and checks it. `Err` only when the run could not be set up; a
/// violated invariant is in the report (`report.ok()` is false).
pub fn run(config: &LiveConfig) -> Result<LiveReport, String> {
    let started = Instant::now();
    if config.nodes < 2 {
        return Err("a live run needs at least 2 member nodes".into());
    }
    let temp;
    let root = match &config.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|error| error.to_string())?;
            temp.path().to_path_buf()
        }
    };
    let hostile_on = config.faults != FaultLevel::None;
    let net = build_network(&root, config, hostile_on)?;
    let members = config.nodes;
    let total = config.nodes + config.relays;
    let slots: Vec<Slot> = net.nodes[..total]
        .iter()
        .enumerate()
        .map(|(index, node)| Slot {
            kind: if index < members {
                Kind::Member
            } else {
                Kind::Relay
            },
            data_dir: node.data_dir.clone(),
            node_id: node.node_id,
            process: Mutex::new(None),
            up: AtomicBool::new(false),
            restarting: AtomicBool::new(false),
            rules: Mutex::new(BTreeMap::new()),
        })
        .collect();
    let (retry_tx, retry_rx) = mpsc::channel::<(Instant, Job)>();
    let shared = Arc::new(Shared {
        slots,
        submissions: Mutex::new(Vec::new()),
        by_id: Mutex::new(BTreeMap::new()),
        deliveries: Mutex::new(BTreeMap::new()),
        duplicates: Mutex::new(0),
        node_command: config.node_command.clone(),
        seed: config.seed,
        retry_tx: Mutex::new(retry_tx.clone()),
        jobs_done: AtomicUsize::new(0),
        jobs_total: AtomicUsize::new(config.messages),
        replies_open: AtomicBool::new(true),
        closing: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let mut progress = Progress::new(config.progress);
    let mut report = LiveReport {
        seed: config.seed,
        nodes: config.nodes,
        relays: config.relays,
        faults: format!("{:?}", config.faults).to_lowercase(),
        planned: config.messages,
        reproduce: config.command_line(),
        retries_profile: match (config.short_retries, config.reconnect_probe_ms) {
            (true, _) => "short".into(),
            (false, Some(0)) => "production, probe off".into(),
            (false, Some(ms)) => format!("production, probe every {ms} ms"),
            (false, None) => "production".into(),
        },
        routine_lifetime_s: config.routine_lifetime_s,
        ..LiveReport::default()
    };

    // Start every node: spawn all, then wait for each console.
    let mut spawned = Vec::with_capacity(total);
    for slot in &shared.slots {
        spawned.push(NodeProcess::spawn(&config.node_command, &slot.data_dir)?);
    }
    for (index, mut process) in spawned.into_iter().enumerate() {
        process.wait_ready(Duration::from_secs(120))?;
        let slot = &shared.slots[index];
        if let Ok(mut slot_process) = slot.process.lock() {
            *slot_process = Some(process);
        }
        slot.up.store(true, Ordering::Relaxed);
        progress.show("starting", index + 1, total, "");
    }
    report.startup_s = started.elapsed().as_secs_f64();

    // Resource sampler and delivery-log reader.
    let sampler = {
        let shared = shared.clone();
        std::thread::spawn(move || monitor(&shared))
    };
    // Hostile member.
    let hostile_stop = Arc::new(AtomicBool::new(false));
    let hostile_stats = Arc::new(Mutex::new(hostile::HostileStats::default()));
    let hostile_thread = if hostile_on {
        let identity = net.identity(total)?;
        let targets = net.roster.members[..members].to_vec();
        let rate = if config.faults == FaultLevel::Harsh {
            40.0
        } else {
            10.0
        };
        let (stop, stats, seed) = (hostile_stop.clone(), hostile_stats.clone(), config.seed);
        let serial = net.roster.serial;
        Some(std::thread::spawn(move || {
            hostile::run(identity, serial, targets, rate, seed, stop, stats)
        }))
    } else {
        None
    };

    // Submitter threads.
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let shared = shared.clone();
            let job_rx = job_rx.clone();
            std::thread::spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(receiver) => receiver.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => shared.submit(job),
                    Err(_) => return,
                }
            })
        })
        .collect();

    // The faulty phase: the workload and the fault schedule on one clock.
    let planned = plan_workload(config.seed, members, config.messages, config.rate);
    if let Ok(mut submissions) = shared.submissions.lock() {
        for plan in &planned {
            submissions.push(Submission {
                marker: Some(plan.marker.clone()),
                sender: plan.sender,
                recipient: plan.recipient,
                submit_unix_us: 0,
                message_id: None,
                status_reply: false,
                failed: None,
                ambiguous: false,
                attempts: 0,
                reply_attempts: 0,
            });
        }
    }
    let phase = config.fault_phase();
    let workload_span = Duration::from_secs_f64(config.messages as f64 / config.rate.max(0.1));
    let (mut schedule, at_heal) = faults::plan(
        config.seed,
        config.faults,
        members,
        config.relays,
        phase,
        workload_span,
    );
    schedule.reverse();
    report.at_heal.partition_sides = (at_heal.sides[0].len(), at_heal.sides[1].len());
    report.at_heal.partition_from_s = at_heal.partition_from.as_secs_f64();
    report.at_heal.isolated_relay = at_heal.isolated_relay;
    let mut next_plan = 0;
    let mut waiting: BinaryHeap<std::cmp::Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiting_jobs: BTreeMap<u64, Job> = BTreeMap::new();
    let mut job_seq = 0u64;
    let mut restarts = Vec::new();
    let phase_start = Instant::now();
    let mut down: BTreeSet<usize> = BTreeSet::new();
    loop {
        let elapsed = phase_start.elapsed();
        let closing = elapsed >= phase;
        if closing {
            shared.closing.store(true, Ordering::Relaxed);
        }
        while next_plan < planned.len() && planned[next_plan].at <= elapsed {
            let _ = job_tx.send(Job::Request { index: next_plan });
            next_plan += 1;
        }
        while let Ok((at, job)) = retry_rx.try_recv() {
            job_seq += 1;
            waiting.push(std::cmp::Reverse((at, job_seq)));
            waiting_jobs.insert(job_seq, job);
        }
        while let Some(std::cmp::Reverse((at, seq))) = waiting.peek().copied() {
            // Once the phase is over, an officer's last try goes at once.
            if at > Instant::now() && !closing {
                break;
            }
            waiting.pop();
            if let Some(job) = waiting_jobs.remove(&seq) {
                let _ = job_tx.send(job);
            }
        }
        while schedule.last().is_some_and(|(at, _)| *at <= elapsed) {
            let Some((_, action)) = schedule.pop() else {
                break;
            };
            apply_fault(&shared, action, &mut report, &mut down, &mut restarts);
        }
        restarts.retain(|handle: &std::thread::JoinHandle<()>| !handle.is_finished());
        let done = shared.jobs_done.load(Ordering::Relaxed);
        let jobs_total = shared.jobs_total.load(Ordering::Relaxed);
        let delivered = shared.deliveries.lock().map(|d| d.len()).unwrap_or(0);
        progress.show(
            "faults",
            done,
            jobs_total,
            &format!(
                "submitted · {delivered} receipts · {} down · {:.0}/{:.0} s",
                shared
                    .slots
                    .iter()
                    .filter(|slot| !slot.up.load(Ordering::Relaxed))
                    .count(),
                elapsed.as_secs_f64(),
                phase.as_secs_f64()
            ),
        );
        let workload_done = next_plan >= planned.len() && waiting.is_empty() && done >= jobs_total;
        if elapsed >= phase && workload_done {
            break;
        }
        if elapsed >= phase + Duration::from_secs(120) {
            report.violations.push(
                "the workload could not be submitted within two minutes after the faulty phase"
                    .into(),
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report.fault_phase_s = phase_start.elapsed().as_secs_f64();

    // Heal: no more replies, the hostile member stops, every node up, every fault lifted.
    shared.replies_open.store(false, Ordering::Relaxed);
    hostile_stop.store(true, Ordering::Relaxed);
    for handle in restarts {
        let _ = handle.join();
    }
    let heal_start = Instant::now();
    // First what is still broken, and the work that waits on it.
    report.at_heal.faulty_links = shared
        .slots
        .iter()
        .map(|slot| slot.rules.lock().map_or(0, |rules| rules.len()))
        .sum();
    let dead: Vec<usize> = (0..total)
        .filter(|index| !shared.slots[*index].up.load(Ordering::Relaxed))
        .collect();
    report.at_heal.nodes_down = dead.len();
    report.at_heal.pending = shared
        .pending_everywhere(total)
        .into_iter()
        .filter_map(|(_, pending)| pending)
        .sum();
    // The dead come back (with their faults, as after any restart) ...
    for index in dead {
        match shared.restart(index) {
            Ok(()) => {
                let pending = shared.pending(index).unwrap_or(0);
                report.at_heal.pending += pending;
                report.at_heal.pending_on_nodes_down += pending;
            }
            Err(error) => report
                .violations
                .push(format!("node {index} did not restart at the heal: {error}")),
        }
    }
    // ... then every fault is lifted, on all nodes at about the same moment.
    for slot in &shared.slots {
        if let Ok(mut rules) = slot.rules.lock() {
            rules.clear();
        }
    }
    std::thread::scope(|scope| {
        for lane in 0..HEAL_LANES {
            let shared = &shared;
            scope.spawn(move || {
                for index in (lane..total).step_by(HEAL_LANES) {
                    if shared.slots[index].up.load(Ordering::Relaxed) {
                        let _ = shared.request(index, &ControlRequest::FaultClear);
                    }
                }
            });
        }
    });
    let healed = Instant::now();
    report.heal_s = healed.duration_since(heal_start).as_secs_f64();
    // Convergence: every outbox finished, every relay idle.
    let converge_deadline = healed + config.converge_timeout;
    let mut last_busy: Vec<(usize, usize)> = Vec::new();
    loop {
        let mut busy = 0usize;
        let mut unknown = 0usize;
        let mut busy_nodes = Vec::new();
        for (index, pending) in shared.pending_everywhere(total) {
            match pending {
                Some(0) => {}
                Some(pending) => {
                    busy += pending;
                    busy_nodes.push((index, pending));
                }
                None => unknown += 1,
            }
        }
        let since_heal = healed.elapsed().as_secs_f64();
        if report
            .converge_curve
            .last()
            .is_none_or(|(at, _)| since_heal - at >= 0.1)
        {
            report.converge_curve.push((round_ms(since_heal), busy));
        }
        if busy == 0 && unknown == 0 {
            report.converged = true;
            report.converge_curve.push((round_ms(since_heal), 0));
            report.last_busy = last_busy;
            break;
        }
        last_busy = busy_nodes;
        if Instant::now() > converge_deadline {
            report.violations.push(format!(
                "not converged {} s after the heal: {busy} messages still pending, {unknown} nodes not answering",
                config.converge_timeout.as_secs()
            ));
            report.last_busy = last_busy;
            break;
        }
        progress.show("converge", 0, 1, &format!("{busy} pending"));
        std::thread::sleep(Duration::from_millis(20));
    }
    report.converge_after_heal_s = healed.elapsed().as_secs_f64();
    progress.finish();

    // Final delivery-log read and probe counts, then stop everything.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    shared.drain_logs(&mut rng, &mpsc::channel().0);
    report.probe_dials = (0..total)
        .filter_map(|index| {
            match shared.request(index, &ControlRequest::Metrics { reset: false }) {
                Ok(ControlResponse::Metrics { metrics }) => Some(metrics.probe_dials),
                _ => None,
            }
        })
        .sum();
    shared.stop.store(true, Ordering::Relaxed);
    drop(job_tx);
    for submitter in submitters {
        let _ = submitter.join();
    }
    if let Some(handle) = hostile_thread {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => report
                .violations
                .push(format!("hostile member could not run: {error}")),
            Err(_) => report.violations.push("hostile member panicked".into()),
        }
    }
    let resources = sampler.join().unwrap_or_default();
    for slot in &shared.slots {
        slot.up.store(false, Ordering::Relaxed);
        if let Ok(mut process) = slot.process.lock() {
            if let Some(mut process) = process.take() {
                let _ = process.kill9();
            }
        }
    }
    report.resources = resources;
    report.resources.cpu_share_of_machine = report.resources.cpu_seconds
        / (started.elapsed().as_secs_f64()
            * std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    report.hostile = hostile_stats
        .lock()
        .map(|stats| stats.clone())
        .unwrap_or_default();
    report
        .violations
        .extend(report.hostile.violations.iter().cloned());
    report.duplicates_suppressed = shared.duplicates.lock().map(|d| *d).unwrap_or(0);

    check_stores(&shared, &net, &mut report);
    report.wall_clock_s = started.elapsed().as_secs_f64();
    if let Some(dir) = &config.report_dir {
        write_report_files(dir, &report)?;
    }
    Ok(report)
}

fn write_report_files(dir: &Path, report: &LiveReport) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).map_err(|error| error.to_string())?;
    std::fs::write(dir.join("report.json"), json)
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    std::fs::write(dir.join("latency.svg"), plot::histogram_svg(report)?)
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    std::fs::write(dir.join("summary.txt"), report.summary())
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    Ok(())
}
