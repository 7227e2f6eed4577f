//! The harness's state shared between its threads: one slot per node process, the submissions
//! and their outcomes, the delivery times, and the counters the progress display reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quickfreeze_keys::NodeId;
use quickfreeze_node::testnet::{NodeCommand, NodeProcess};

use super::faults::LinkRule;

/// Whether a node is a member or a relay (the hostile member has no process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Member,
    Relay,
}

pub(super) struct Slot {
    pub(super) kind: Kind,
    pub(super) data_dir: PathBuf,
    pub(super) node_id: NodeId,
    pub(super) process: Mutex<Option<NodeProcess>>,
    /// Up and answering its console.
    pub(super) up: AtomicBool,
    /// A restart is in progress.
    pub(super) restarting: AtomicBool,
    /// Injected fault layers on this node: peer index → layer id → rule (re-applied after a
    /// restart). The node gets the union of a peer's layers.
    pub(super) rules: Mutex<BTreeMap<usize, BTreeMap<u32, LinkRule>>>,
}

#[derive(Clone, Debug)]
pub(super) struct Submission {
    pub(super) marker: Option<String>,
    pub(super) sender: usize,
    pub(super) recipient: usize,
    pub(super) submit_unix_us: u64,
    pub(super) message_id: Option<String>,
    pub(super) status_reply: bool,
    pub(super) failed: Option<String>,
    pub(super) ambiguous: bool,
    pub(super) attempts: u32,
    pub(super) reply_attempts: u32,
}

pub(super) enum Job {
    Request { index: usize },
    Reply { index: usize },
}

pub(super) struct Shared {
    pub(super) slots: Vec<Slot>,
    pub(super) submissions: Mutex<Vec<Submission>>,
    /// Message id → submission index.
    pub(super) by_id: Mutex<BTreeMap<String, usize>>,
    /// Message id → wall-clock µs its receipt was verified (first report).
    pub(super) deliveries: Mutex<BTreeMap<String, u64>>,
    pub(super) duplicates: Mutex<u64>,
    pub(super) node_command: NodeCommand,
    pub(super) seed: u64,
    /// Jobs that failed and wait to be tried again.
    pub(super) retry_tx: Mutex<mpsc::Sender<(Instant, Job)>>,
    pub(super) jobs_done: AtomicUsize,
    pub(super) jobs_total: AtomicUsize,
    pub(super) replies_open: AtomicBool,
    /// The faulty phase is over: an officer whose node is down gives up instead of trying
    /// again (a node left down until the heal would otherwise hold the heal back).
    pub(super) closing: AtomicBool,
    pub(super) stop: AtomicBool,
}

pub(super) const SUBMITTERS: usize = 8;
/// Console requests in parallel when the heal lifts every fault and while convergence is polled.
pub(super) const HEAL_LANES: usize = 8;
pub(super) const OFFICER_RETRY: Duration = Duration::from_secs(1);
pub(super) const MAX_SUBMIT_ATTEMPTS: u32 = 20;
pub(super) const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds, to the millisecond (for the report).
pub(super) fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

pub(super) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}
