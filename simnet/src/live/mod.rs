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

mod faults;
pub mod hostile;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::types::iso_country_codes;
use quickfreeze_keys::Timestamp;
use quickfreeze_keys::{CountryCode, NodeId};
use quickfreeze_node::audit::{AuditKind, AuditLog, MAX_EXPORT_PAGE};
use quickfreeze_node::config::{files, RetrySection};
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_node::store::{SledStore, StoreOptions};
use quickfreeze_node::testnet::{NodeCommand, NodePlan, NodeProcess, Testnet};
use quickfreeze_proto::core::{OutboxState, Store};
use quickfreeze_proto::payload::{Payload, Status};
use quickfreeze_proto::receipt::ReceiptKind;
use quickfreeze_proto::MessageId;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::workload::{self, WorkKind, MARKER_PREFIX};
use crate::sim::FaultLevel;
use faults::{FaultAction, LinkRule};
pub use report::LiveReport;

/// Settings of one live run.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Member nodes.
    pub nodes: usize,
    /// Relays.
    pub relays: usize,
    /// Requests to submit.
    pub messages: usize,
    /// Requests per second (the bursts average to this).
    pub rate: f64,
    /// Fault level.
    pub faults: FaultLevel,
    /// Seed of the workload and the fault schedule.
    pub seed: u64,
    /// Length of the faulty phase (default: the workload's length plus a quarter, at least 10 s).
    pub duration: Option<Duration>,
    /// How to start a node.
    pub node_command: NodeCommand,
    /// Where the data directories go (default: a temporary directory, removed afterwards).
    pub work_dir: Option<PathBuf>,
    /// Where `report.json`-style files and the histogram go.
    pub report_dir: Option<PathBuf>,
    /// Longest wait for convergence after the heal.
    pub converge_timeout: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Retry quickly (200 ms base, 1.5 s cap, 2 s custody re-check) instead of the production
    /// defaults (1 s base, 60 s cap, 60 s custody re-check, reconnect probe every second).
    pub short_retries: bool,
    /// Lifetime of routine messages on every node, seconds (default: the production 14 days).
    /// With a few seconds, routine requests (about 15 % of the workload) and status replies to
    /// them expire when their recipient stays out of reach, and the run checks that each such
    /// expiry was reported.
    pub routine_lifetime_s: Option<u64>,
    /// The nodes' `retry.reconnect_probe_ms` (default: the node's default; 0 turns the probe
    /// off, to measure what it buys).
    pub reconnect_probe_ms: Option<u64>,
}

impl LiveConfig {
    /// A run with defaults for everything but the sizes.
    pub fn new(
        nodes: usize,
        relays: usize,
        messages: usize,
        rate: f64,
        faults: FaultLevel,
        seed: u64,
        node_command: NodeCommand,
    ) -> LiveConfig {
        LiveConfig {
            nodes,
            relays,
            messages,
            rate,
            faults,
            seed,
            duration: None,
            node_command,
            work_dir: None,
            report_dir: None,
            converge_timeout: Duration::from_secs(120),
            progress: false,
            short_retries: false,
            routine_lifetime_s: None,
            reconnect_probe_ms: None,
        }
    }

    fn fault_phase(&self) -> Duration {
        self.duration.unwrap_or_else(|| {
            let workload = self.messages as f64 / self.rate.max(0.1);
            Duration::from_secs_f64((workload * 1.25 + 2.0).max(10.0))
        })
    }

    /// The command line that repeats this run.
    pub fn command_line(&self) -> String {
        let faults = match self.faults {
            FaultLevel::None => "none",
            FaultLevel::Mild => "mild",
            FaultLevel::Harsh => "harsh",
        };
        let mut line = format!(
            "simnet live --nodes {} --relays {} --messages {} --rate {} --faults {faults} --seed {}",
            self.nodes, self.relays, self.messages, self.rate, self.seed
        );
        if let Some(duration) = self.duration {
            line.push_str(&format!(" --duration {}", duration.as_secs_f64()));
        }
        if self.short_retries {
            line.push_str(" --short-retries");
        }
        if let Some(lifetime) = self.routine_lifetime_s {
            line.push_str(&format!(" --routine-lifetime-s {lifetime}"));
        }
        if let Some(probe) = self.reconnect_probe_ms {
            line.push_str(&format!(" --reconnect-probe-ms {probe}"));
        }
        line
    }
}

/// Whether a node is a member or a relay (the hostile member has no process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Member,
    Relay,
}

struct Slot {
    kind: Kind,
    data_dir: PathBuf,
    node_id: NodeId,
    process: Mutex<Option<NodeProcess>>,
    /// Up and answering its console.
    up: AtomicBool,
    /// A restart is in progress.
    restarting: AtomicBool,
    /// Injected fault layers on this node: peer index → layer id → rule (re-applied after a
    /// restart). The node gets the union of a peer's layers.
    rules: Mutex<BTreeMap<usize, BTreeMap<u32, LinkRule>>>,
}

#[derive(Clone, Debug)]
struct Submission {
    marker: Option<String>,
    sender: usize,
    recipient: usize,
    submit_unix_us: u64,
    message_id: Option<String>,
    status_reply: bool,
    failed: Option<String>,
    ambiguous: bool,
    attempts: u32,
    reply_attempts: u32,
}

enum Job {
    Request { index: usize },
    Reply { index: usize },
}

struct Shared {
    slots: Vec<Slot>,
    submissions: Mutex<Vec<Submission>>,
    /// Message id → submission index.
    by_id: Mutex<BTreeMap<String, usize>>,
    /// Message id → wall-clock µs its receipt was verified (first report).
    deliveries: Mutex<BTreeMap<String, u64>>,
    duplicates: Mutex<u64>,
    node_command: NodeCommand,
    seed: u64,
    /// Jobs that failed and wait to be tried again.
    retry_tx: Mutex<mpsc::Sender<(Instant, Job)>>,
    jobs_done: AtomicUsize,
    jobs_total: AtomicUsize,
    replies_open: AtomicBool,
    /// The faulty phase is over: an officer whose node is down gives up instead of trying
    /// again (a node left down until the heal would otherwise hold the heal back).
    closing: AtomicBool,
    stop: AtomicBool,
}

const SUBMITTERS: usize = 8;
/// Console requests in parallel when the heal lifts every fault and while convergence is polled.
const HEAL_LANES: usize = 8;
const OFFICER_RETRY: Duration = Duration::from_secs(1);
const MAX_SUBMIT_ATTEMPTS: u32 = 20;
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds, to the millisecond (for the report).
fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

impl Shared {
    fn request(&self, node: usize, request: &ControlRequest) -> Result<ControlResponse, String> {
        let slot = &self.slots[node];
        let mut client = ControlClient::connect(&slot.data_dir, CONSOLE_TIMEOUT)
            .map_err(|error| error.to_string())?;
        client.request(request).map_err(|error| error.to_string())
    }

    /// Sends node `node` its current rules for `peers` (after a restart, or a change): the
    /// union of each peer's layers, one console request per distinct rule.
    fn apply_rules(&self, node: usize, peers: &BTreeSet<usize>) {
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
    fn set_layer(&self, node: usize, peer: usize, id: u32, rule: Option<LinkRule>) {
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
    fn pending_everywhere(&self, total: usize) -> Vec<(usize, Option<usize>)> {
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
    fn pending(&self, node: usize) -> Option<usize> {
        match self.request(node, &ControlRequest::Status) {
            Ok(ControlResponse::Status { report }) => {
                Some(report.outbox_pending.iter().sum::<usize>() + report.relay_pending)
            }
            _ => None,
        }
    }

    fn kill(&self, node: usize) -> bool {
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
    fn restart(&self, node: usize) -> Result<(), String> {
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

    fn retry(&self, job: Job) {
        if let Ok(sender) = self.retry_tx.lock() {
            let _ = sender.send((Instant::now() + OFFICER_RETRY, job));
        }
    }

    /// One submission attempt, on a submitter thread.
    fn submit(&self, job: Job) {
        let (index, request) = match &job {
            Job::Request { index } | Job::Reply { index } => {
                let Ok(mut submissions) = self.submissions.lock() else {
                    return;
                };
                let submission = &mut submissions[*index];
                if matches!(job, Job::Request { .. }) {
                    submission.attempts += 1;
                    submission.submit_unix_us = unix_us();
                } else {
                    submission.reply_attempts += 1;
                }
                let request = match (&job, &submission.marker) {
                    (Job::Request { .. }, Some(marker)) => {
                        let kind = kind_of(marker);
                        ControlRequest::Submit {
                            recipient: self.slots[submission.recipient].node_id.to_string(),
                            payload: Box::new(workload::payload(kind, marker)),
                        }
                    }
                    _ => ControlRequest::Reply {
                        message_id: submission.message_id.clone().unwrap_or_default(),
                        status: Status::AcknowledgedByOfficer,
                        note: "on it".into(),
                        officer: "duty officer".into(),
                    },
                };
                let node = match &job {
                    Job::Request { .. } => submission.sender,
                    Job::Reply { .. } => submission.recipient,
                };
                (*index, (node, request))
            }
        };
        let (node, request) = request;
        let outcome = match ControlClient::connect(&self.slots[node].data_dir, CONSOLE_TIMEOUT) {
            Err(error) => Err((false, error.to_string())),
            Ok(mut client) => match client.request(&request) {
                Ok(response) => Ok(response),
                Err(error) => Err((true, error.to_string())),
            },
        };
        let Ok(mut submissions) = self.submissions.lock() else {
            return;
        };
        match (outcome, job) {
            (Ok(ControlResponse::Submitted { message_id, .. }), Job::Request { index }) => {
                submissions[index].message_id = Some(message_id.clone());
                if let Ok(mut by_id) = self.by_id.lock() {
                    by_id.insert(message_id, index);
                }
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(ControlResponse::Replied { status_message_id }), Job::Reply { index }) => {
                let original = submissions[index].clone();
                let reply_index = submissions.len();
                submissions.push(Submission {
                    marker: None,
                    sender: original.recipient,
                    recipient: original.sender,
                    submit_unix_us: unix_us(),
                    message_id: Some(status_message_id.clone()),
                    status_reply: true,
                    failed: None,
                    ambiguous: false,
                    attempts: 1,
                    reply_attempts: 0,
                });
                if let Ok(mut by_id) = self.by_id.lock() {
                    by_id.insert(status_message_id, reply_index);
                }
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(response), job) => {
                // Refused by the node (outbox full, …): the officer hears it at once.
                let index = match job {
                    Job::Request { index } | Job::Reply { index } => index,
                };
                if matches!(job, Job::Request { .. }) {
                    submissions[index].failed = Some(format!("{response:?}"));
                }
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
            }
            (Err((sent, error)), job) => {
                let request_index = match &job {
                    Job::Request { index } => Some(*index),
                    Job::Reply { .. } => None,
                };
                if let Some(index) = request_index {
                    // The request may have reached the node before it died.
                    submissions[index].ambiguous |= sent;
                }
                let attempts = if request_index.is_some() {
                    submissions[index].attempts
                } else {
                    submissions[index].reply_attempts
                };
                let closing =
                    self.closing.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed);
                if attempts < MAX_SUBMIT_ATTEMPTS && !closing {
                    drop(submissions);
                    self.retry(job);
                } else {
                    if let Some(index) = request_index {
                        submissions[index].failed = Some(error);
                    }
                    self.jobs_done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads (and clears) every live node's delivery log; schedules some status replies.
    fn drain_logs(&self, rng: &mut ChaCha8Rng, job_tx: &mpsc::Sender<(Instant, Job)>) {
        for (node, slot) in self.slots.iter().enumerate() {
            if !slot.up.load(Ordering::Relaxed) {
                continue;
            }
            let Ok(ControlResponse::DeliveryLog {
                entries,
                duplicates_suppressed,
                ..
            }) = self.request(node, &ControlRequest::DeliveryLog { drain: true })
            else {
                continue;
            };
            if let Ok(mut duplicates) = self.duplicates.lock() {
                *duplicates += duplicates_suppressed;
            }
            let mut fresh = Vec::new();
            if let Ok(mut deliveries) = self.deliveries.lock() {
                for entry in entries {
                    if !deliveries.contains_key(&entry.message_id) {
                        fresh.push(entry.message_id.clone());
                    }
                    deliveries
                        .entry(entry.message_id)
                        .or_insert(entry.delivered_unix_us);
                }
            }
            if !self.replies_open.load(Ordering::Relaxed) {
                continue;
            }
            let by_id = self
                .by_id
                .lock()
                .map(|by_id| by_id.clone())
                .unwrap_or_default();
            for id in fresh {
                let Some(index) = by_id.get(&id) else {
                    continue;
                };
                let is_request = self
                    .submissions
                    .lock()
                    .map(|submissions| !submissions[*index].status_reply)
                    .unwrap_or(false);
                if is_request && rng.random_range(0..6u32) == 0 {
                    self.jobs_total.fetch_add(1, Ordering::Relaxed);
                    let _ = job_tx.send((Instant::now(), Job::Reply { index: *index }));
                }
            }
        }
    }
}

fn kind_of(marker: &str) -> WorkKind {
    // The kind is encoded in the marker's last character so a retry rebuilds the same payload.
    match marker.chars().last() {
        Some('E') => WorkKind::Emergency,
        Some('T') => WorkKind::TrafficData,
        Some('F') => WorkKind::FreeText,
        _ => WorkKind::Preservation,
    }
}

struct Planned {
    at: Duration,
    sender: usize,
    recipient: usize,
    marker: String,
}

/// The workload: `messages` requests over `messages / rate` seconds, in bursts.
fn plan_workload(seed: u64, members: usize, messages: usize, rate: f64) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x776f_726b);
    let span = messages as f64 / rate.max(0.1);
    let mut planned = Vec::with_capacity(messages);
    let mut index = 0;
    while index < messages {
        let burst = rng.random_range(1..=8usize).min(messages - index);
        let at = rng.random_range(0.0..span.max(0.001));
        let hot_sender = rng.random_range(0..members);
        let hot_recipient = rng.random_range(0..members);
        let sender_burst = rng.random_bool(0.5);
        for _ in 0..burst {
            let (sender, recipient) = if sender_burst {
                (
                    hot_sender,
                    (hot_sender + rng.random_range(1..members)) % members,
                )
            } else {
                (
                    (hot_recipient + rng.random_range(1..members)) % members,
                    hot_recipient,
                )
            };
            let kind = match rng.random_range(0..100u32) {
                0..70 => 'P',
                70..80 => 'E',
                80..85 => 'T',
                _ => 'F',
            };
            planned.push(Planned {
                at: Duration::from_secs_f64(at + rng.random_range(0.0..0.5)),
                sender,
                recipient,
                marker: format!("{MARKER_PREFIX}{seed:016x}-{index:06}-{kind}"),
            });
            index += 1;
        }
    }
    planned.sort_by_key(|planned| planned.at);
    planned
}

/// A tiny progress bar on stderr (a line every five seconds when stderr is not a terminal).
struct Progress {
    enabled: bool,
    terminal: bool,
    last: Instant,
}

impl Progress {
    fn show(&mut self, phase: &str, done: usize, total: usize, detail: &str) {
        if !self.enabled {
            return;
        }
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
        let line = format!("{phase:<10} [{bar}] {done}/{total} {detail}");
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r{line:<110}");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    fn finish(&mut self) {
        if self.enabled && self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}

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
    let mut progress = Progress {
        enabled: config.progress,
        terminal: std::io::stderr().is_terminal(),
        last: Instant::now() - Duration::from_secs(60),
    };
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

/// Generates the network: `nodes` points of contact, `relays` relays, and (with faults) the
/// hostile member last. Each member gets one or two relays.
fn build_network(root: &Path, config: &LiveConfig, hostile: bool) -> Result<Testnet, String> {
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

fn apply_fault(
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
fn monitor(shared: &Shared) -> report::Resources {
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

/// The invariants, from the nodes' own stores (every node is stopped by now).
fn check_stores(shared: &Shared, net: &Testnet, report: &mut LiveReport) {
    let options = StoreOptions {
        cache_capacity_bytes: 4 * 1024 * 1024,
        ..StoreOptions::default()
    };
    let submissions = shared
        .submissions
        .lock()
        .map(|submissions| submissions.clone())
        .unwrap_or_default();
    let deliveries = shared
        .deliveries
        .lock()
        .map(|deliveries| deliveries.clone())
        .unwrap_or_default();
    let index_of: BTreeMap<NodeId, usize> = shared
        .slots
        .iter()
        .enumerate()
        .map(|(index, slot)| (slot.node_id, index))
        .collect();
    let mut outboxes = Vec::new();
    let mut inboxes = Vec::new();
    // Per node: messages whose expiry its audit trail records (written in the same group
    // commit as the expiry itself, before the log line and the alert hook).
    let mut expiries: Vec<BTreeSet<MessageId>> = Vec::new();
    for (index, slot) in shared.slots.iter().enumerate() {
        let store = match SledStore::open(&slot.data_dir.join(files::STORE), &options) {
            Ok(store) => store,
            Err(error) => {
                report.violations.push(format!(
                    "node {index}: store does not open after the run: {error}"
                ));
                outboxes.push(Vec::new());
                inboxes.push(Vec::new());
                expiries.push(BTreeSet::new());
                continue;
            }
        };
        let outbox = store.outbox_entries().unwrap_or_default();
        let inbox = store.inbox_entries().unwrap_or_default();
        if slot.kind == Kind::Member {
            match recorded_expiries(&store) {
                Ok(ids) => expiries.push(ids),
                Err(error) => {
                    report.violations.push(format!(
                        "node {index}: audit trail unreadable after the run: {error}"
                    ));
                    expiries.push(BTreeSet::new());
                }
            }
        } else {
            expiries.push(BTreeSet::new());
        }
        if slot.kind == Kind::Relay {
            if !inbox.is_empty() || !outbox.is_empty() {
                report.violations.push(format!(
                    "relay {index} holds {} inbox and {} outbox entries",
                    inbox.len(),
                    outbox.len()
                ));
            }
            for entry in store.relay_entries().unwrap_or_default() {
                if entry
                    .envelope
                    .as_deref()
                    .is_some_and(|bytes| contains(bytes, MARKER_PREFIX.as_bytes()))
                {
                    report.violations.push(format!(
                        "relay {index} stores plaintext of {}",
                        entry.message_id
                    ));
                }
            }
            drop(store);
            if let Some(file) = file_with_marker(&slot.data_dir.join(files::STORE)) {
                report.violations.push(format!(
                    "relay {index}: {} contains the case-reference marker in clear",
                    file.display()
                ));
            }
        }
        outboxes.push(outbox);
        inboxes.push(inbox);
    }

    // Inbox side: exactly once, and only what the harness submitted.
    let by_id = shared
        .by_id
        .lock()
        .map(|by_id| by_id.clone())
        .unwrap_or_default();
    let mut inbox_count: BTreeMap<String, usize> = BTreeMap::new();
    let mut markers: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for submission in &submissions {
        if let Some(marker) = &submission.marker {
            markers.insert(marker, (submission.sender, submission.recipient));
        }
    }
    for (node, inbox) in inboxes.iter().enumerate() {
        for entry in inbox {
            *inbox_count.entry(entry.message_id.to_string()).or_default() += 1;
            if entry.via_relay.is_some() {
                report.delivered_via_relay += 1;
            }
            let sender = index_of.get(&entry.sender).copied();
            if let Payload::Status(update) = &entry.payload {
                // A status reply: about a request this node sent to the replying member.
                let about = by_id
                    .get(&update.references.to_string())
                    .map(|index| &submissions[*index]);
                if !about
                    .is_some_and(|about| Some(about.recipient) == sender && about.sender == node)
                {
                    report.violations.push(format!(
                        "node {node}: status {} from {} answers nothing this node sent it (forged?)",
                        entry.message_id, entry.sender
                    ));
                }
                continue;
            }
            match entry.payload.case_reference() {
                Some(marker) if markers.get(marker) == sender.map(|sender| (sender, node)).as_ref() => {}
                _ => report.violations.push(format!(
                    "node {node}: inbox entry {} from {} was never submitted by the harness (forged?)",
                    entry.message_id, entry.sender
                )),
            }
        }
    }
    for (id, count) in &inbox_count {
        if *count > 1 {
            report
                .violations
                .push(format!("message {id} is in {count} inboxes"));
        }
    }

    // Sender side: every accepted message delivered (receipt verified) or expired.
    let mut latencies = Vec::new();
    let mut first_submit = u64::MAX;
    let mut last_receipt = 0u64;
    let mut delivered_requests = 0usize;
    for submission in &submissions {
        if submission.failed.is_some() && submission.message_id.is_none() {
            report.not_accepted += 1;
            continue;
        }
        let Some(id) = &submission.message_id else {
            report.not_accepted += 1;
            continue;
        };
        if submission.ambiguous {
            report.ambiguous += 1;
        }
        report.accepted += 1;
        if submission.status_reply {
            report.status_replies += 1;
        }
        let entry = outboxes[submission.sender]
            .iter()
            .find(|entry| entry.message_id.to_string() == *id);
        let Some(entry) = entry else {
            report.undelivered += 1;
            report.violations.push(format!(
                "message {id} was accepted by node {} but is not in its outbox",
                submission.sender
            ));
            continue;
        };
        report.retries += u64::from(entry.attempts.saturating_sub(1));
        if entry.relay_attempts > 0 {
            report.relay_handoffs += 1;
        }
        match &entry.state {
            OutboxState::Delivered { .. } => {
                let recipient = shared.slots[submission.recipient].node_id;
                let receipt_ok = entry.delivery_receipt.as_ref().is_some_and(|receipt| {
                    receipt.verify(&net.roster).is_ok()
                        && receipt.body.kind == ReceiptKind::Delivered
                        && receipt.body.signer == recipient
                        && receipt.body.message_id == entry.message_id
                        && receipt.body.envelope_digest == entry.digest
                });
                if !receipt_ok {
                    report
                        .violations
                        .push(format!("message {id}: delivery receipt missing or invalid"));
                }
                if inbox_count.get(id).copied().unwrap_or(0) != 1
                    || !inboxes[submission.recipient]
                        .iter()
                        .any(|inbox| inbox.message_id == entry.message_id)
                {
                    report.violations.push(format!(
                        "message {id}: receipted but not exactly once in node {}'s inbox",
                        submission.recipient
                    ));
                }
                report.delivered += 1;
                if !submission.status_reply {
                    delivered_requests += 1;
                    if let Some(at) = deliveries.get(id) {
                        if submission.submit_unix_us > 0 && *at >= submission.submit_unix_us {
                            latencies.push(at - submission.submit_unix_us);
                        }
                        first_submit = first_submit.min(submission.submit_unix_us);
                        last_receipt = last_receipt.max(*at);
                    }
                }
            }
            OutboxState::Expired { .. } => {
                // It may have reached the recipient before its receipt was lost (at most once:
                // the inbox check above); what matters here is that the operator was told.
                report.expired += 1;
                let recorded = expiries[submission.sender].contains(&entry.message_id);
                if recorded {
                    report.expired_reported += 1;
                }
                if let Some(violation) = unfinished(id, submission, &entry.state, recorded) {
                    report.violations.push(violation);
                }
            }
            other => {
                report.undelivered += 1;
                if let Some(violation) = unfinished(id, submission, other, false) {
                    report.violations.push(violation);
                }
            }
        }
    }
    report.latency = report::Latency::of(&latencies);
    report.histogram = report::histogram(&latencies);
    if last_receipt > first_submit {
        report.throughput_per_s =
            delivered_requests as f64 / ((last_receipt - first_submit) as f64 / 1e6);
    }
}

/// Why an accepted message's final state at its sender breaks "every message ends delivered, or
/// expired with the operator told"; `None` when it does not. A delivered message's receipt and
/// inbox entry are checked separately.
fn unfinished(
    id: &str,
    submission: &Submission,
    state: &OutboxState,
    expiry_recorded: bool,
) -> Option<String> {
    match state {
        OutboxState::Delivered { .. } => None,
        OutboxState::Expired { .. } if expiry_recorded => None,
        OutboxState::Expired { .. } => Some(format!(
            "message {id} from node {} to node {} expired without an `expired` record in the sender's audit trail (the operator was never told)",
            submission.sender, submission.recipient
        )),
        other => Some(format!(
            "message {id} from node {} to node {} ended `{}`: neither delivered nor expired",
            submission.sender,
            submission.recipient,
            other.name()
        )),
    }
}

/// The message ids of every `expired` record in a node's audit trail.
fn recorded_expiries(store: &SledStore) -> Result<BTreeSet<MessageId>, String> {
    let log = AuditLog::open(store).map_err(|error| error.to_string())?;
    let mut ids = BTreeSet::new();
    let mut after = None;
    loop {
        let (lines, next) = log
            .export_page(Timestamp(0), after, MAX_EXPORT_PAGE)
            .map_err(|error| error.to_string())?;
        for line in lines {
            if line.kind == AuditKind::Expired {
                if let Some(id) = line.message_id.and_then(|id| id.parse().ok()) {
                    ids.insert(id);
                }
            }
        }
        match next {
            Some(seq) => after = Some(seq),
            None => return Ok(ids),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The first file under `dir` whose bytes contain the case-reference marker.
fn file_with_marker(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = file_with_marker(&path) {
                return Some(found);
            }
        } else if std::fs::read(&path)
            .ok()
            .is_some_and(|bytes| contains(&bytes, MARKER_PREFIX.as_bytes()))
        {
            return Some(path);
        }
    }
    None
}

fn write_report_files(dir: &Path, report: &LiveReport) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).map_err(|error| error.to_string())?;
    std::fs::write(dir.join("report.json"), json)
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    std::fs::write(dir.join("latency.svg"), report::histogram_svg(report))
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    std::fs::write(dir.join("summary.txt"), report.summary())
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> Submission {
        Submission {
            marker: None,
            sender: 1,
            recipient: 2,
            submit_unix_us: 0,
            message_id: Some("m".into()),
            status_reply: false,
            failed: None,
            ambiguous: false,
            attempts: 1,
            reply_attempts: 0,
        }
    }

    #[test]
    fn a_message_must_end_delivered_or_expired_with_the_operator_told() {
        let submission = submission();
        let delivered = OutboxState::Delivered { at: Timestamp(5) };
        let expired = OutboxState::Expired { at: Timestamp(5) };
        assert_eq!(unfinished("m", &submission, &delivered, false), None);
        assert_eq!(unfinished("m", &submission, &expired, true), None);
        // Expired, but nothing in the audit trail: the operator was never told.
        let silent = unfinished("m", &submission, &expired, false).expect("a violation");
        assert!(silent.contains("never told"), "{silent}");
        // Still under way at the end: neither delivered nor expired, whatever the audit says.
        for state in [OutboxState::Accepted, OutboxState::Sent] {
            let open = unfinished("m", &submission, &state, true).expect("a violation");
            assert!(open.contains("neither delivered nor expired"), "{open}");
        }
    }
}
