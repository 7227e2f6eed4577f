//! The daemon: one task that owns the libp2p network, the delivery core and the sled store.
//!
//! Each turn of the loop takes one input (shutdown, a console command, a network event, the end
//! of a group commit, or the core's timeout), then drains whatever else is ready without waiting.
//! What the turn produced that acknowledges anything — responses to peers (which carry
//! receipts), answers to the console ("accepted"), new transmissions, events — is held back
//! until a **group commit** (`SledStore::begin_flush`) that began after the turn's writes has
//! returned. The commit's IO runs on a blocking thread while the loop goes on working, so turns
//! that arrive during one commit are covered together by the next one (a two-stage pipeline:
//! the CPU work of the next batch overlaps the disk sync of the current one). No
//! acknowledgement of any kind leaves the node before the state it acknowledges is on disk.
//!
//! Console connections are served by small tasks that forward typed requests to the loop over a
//! bounded channel and wait on a oneshot for the answer; they never touch the core themselves.
//!
//! # Rooms
//!
//! This module holds the [`Daemon`] state, its preparation and the public entry points
//! ([`start`], [`run`], [`RunningNode`]). The rest is split by job, each an `impl Daemon` block:
//! [`event_loop`] (the loop and network inputs), [`commit`] (group commit and release),
//! [`audit_facts`], [`events`] (log lines and alerts), [`commands`] (console dispatch),
//! [`views`] (console read views), [`deadline_checks`], [`faults`], [`socket`] (control socket
//! server), [`roster`] (which roster to start with) and [`backup`] (a consistent backup while
//! running).

mod audit_facts;
mod backup;
mod commands;
mod commit;
mod deadline_checks;
mod disk;
mod event_loop;
mod events;
mod faults;
pub(crate) mod find;
mod keys;
mod pipeline;
mod roster;
mod socket;
mod views;

pub use roster::{load_roster, read_pin};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::Multiaddr;
use quickfreeze_keys::{Identity, NodeId, Timestamp};
use quickfreeze_proto::core::{Core, Store};
use quickfreeze_proto::frame::{MAX_BATCH_BYTES, PROTOCOL_ID};
use quickfreeze_proto::MessageId;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::warn;

use crate::audit::{AuditFacts, AuditKind, AuditLog};
use crate::config::{files, NodeConfig};
use crate::control::{ControlRequest, ControlResponse, Metrics};
use crate::network::{Network, NetworkConfig};
use crate::store::SledStore;
use commit::Outputs;
use pipeline::CommitPipeline;
use roster::allowed_peers;
use socket::bind_control_socket;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The key file.
    #[error(transparent)]
    Key(#[from] quickfreeze_keys::KeyError),
    /// The roster.
    #[error("{0}")]
    Roster(String),
    /// The store.
    #[error("{0}")]
    Store(String),
    /// The key file is not there (e.g. a data directory restored from a backup made without
    /// `--with-keys`).
    #[error("the key file {} is missing, so this node cannot sign or open anything and does not start. If this data directory was restored from a backup made without --with-keys, copy the node's key file from your key backup to that path and `chmod 600` it. Do not run `init` here: a new key is a different node that the roster does not know", .0.display())]
    MissingKey(PathBuf),
    /// The network.
    #[error("network: {0}")]
    Network(String),
    /// A group commit did not return within `store.commit_timeout_s`: the disk is full or
    /// failing. The process must exit without dropping the store (sled's drop would flush, and
    /// block again).
    #[error("{0}")]
    Stalled(String),
    /// The control socket.
    #[error("control socket {path}: {message}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A console command waiting for the loop.
struct Command {
    request: ControlRequest,
    reply: oneshot::Sender<ControlResponse>,
}

/// A running node, for tests and the demo.
pub struct RunningNode {
    /// The node's id.
    pub node_id: NodeId,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where its Prometheus endpoint listens (the bound address, so port 0 is resolved).
    pub metrics_address: Option<std::net::SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl RunningNode {
    /// Stops the node cleanly and waits for it.
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task
            .await
            .map_err(|error| DaemonError::Network(format!("node task failed: {error}")))?
    }
}

/// Starts a node in this process (tests, demo); `quickfreeze run` uses [`run`] directly.
pub async fn start(config: NodeConfig) -> Result<RunningNode, DaemonError> {
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let daemon = Daemon::prepare(&config)?;
    let node_id = daemon.core.node_id();
    let metrics_address = daemon.metrics_address;
    let data_dir = config.data_dir.clone();
    let task = tokio::spawn(async move {
        daemon
            .run(async {
                let _ = shutdown_rx.await;
            })
            .await
    });
    Ok(RunningNode {
        node_id,
        data_dir,
        metrics_address,
        shutdown: Some(shutdown_tx),
        task,
    })
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    Daemon::prepare(&config)?.run(shutdown).await
}

struct Daemon {
    core: Core<SledStore>,
    network: Network,
    data_dir: PathBuf,
    fingerprint: String,
    alert_hook: Vec<String>,
    max_console_connections: usize,
    listener: Option<UnixListener>,
    socket_path: PathBuf,
    requests: BTreeMap<OutboundRequestId, u64>,
    pending_responses: Vec<(ResponseChannel<Vec<u8>>, Vec<u8>)>,
    pending_replies: Vec<(oneshot::Sender<ControlResponse>, ControlResponse)>,
    waiters: BTreeMap<MessageId, Vec<oneshot::Sender<ControlResponse>>>,
    connected: BTreeSet<NodeId>,
    /// The PeerId each connected member is connected under: during a key rotation's grace it
    /// may be the member's old one (the roster names the new one, but the member has not
    /// restarted onto it yet), and requests to it go over that connection.
    peer_in_use: BTreeMap<NodeId, libp2p::PeerId>,
    /// When `maintain_keys` last looked for grace windows that ended.
    keys_checked_at: Timestamp,
    listen_addresses: Vec<String>,
    hooks: JoinSet<()>,
    group_commit: bool,
    metrics: Metrics,
    /// When each undelivered message was accepted, for submit → receipt latency.
    accepted_at: BTreeMap<MessageId, std::time::Instant>,
    latencies_us: std::collections::VecDeque<u64>,
    /// The hash-chained audit trail, in the same database as the core's state.
    audit: AuditLog,
    /// The first audit write that failed this turn: the turn then stops before its commit.
    audit_error: Option<String>,
    /// The Prometheus listener, bound in `prepare` and served from `run`.
    metrics_listener: Option<std::net::TcpListener>,
    metrics_address: Option<std::net::SocketAddr>,
    /// Figures for the Prometheus endpoint; never reset.
    telemetry: Telemetry,
    /// Deadline clocks and what was raised.
    deadline_config: crate::deadlines::DeadlineConfig,
    tracker: crate::deadlines::Tracker,
    /// Breaches found this turn, shown (log, alert hook) after the commit.
    pending_overdue: Vec<crate::deadlines::Breach>,
    /// `backup` requests of this turn, taken at its end (see `backup.rs`).
    backups_waiting: Vec<(bool, oneshot::Sender<ControlResponse>)>,
    /// Counts on-the-spot deadline checks, so that an older periodic scan is not applied.
    deadline_generation: u64,
    /// What ended turns produced, waiting for a group commit or covered by the running one.
    commit: CommitPipeline<Outputs>,
    /// Refused-inbound records per peer in the current minute, to keep a hostile member from
    /// filling the audit log: (minute start, recorded, suppressed).
    refused_audit: BTreeMap<NodeId, (u64, u32, u32)>,
    /// `[testing] fault_injection`: accept fault requests, keep the delivery log.
    fault_injection: bool,
    delivery_log: std::collections::VecDeque<(MessageId, u64)>,
    delivery_log_overflowed: u64,
    duplicates_suppressed: u64,
    /// Dials backed-off peers that work waits on (see `crate::probe`).
    probe: crate::probe::ReconnectProbe,
    /// Messages announced again after a restart that still get an alert hook run of their own;
    /// the rest are covered by the one summary alert.
    reannounce_alerts_left: usize,
    /// The summary alert for messages still unacknowledged at start, run when the loop starts.
    startup_alert: Option<String>,
    /// Free space on the data directory against the low-water mark.
    disk: disk::DiskWatch,
    /// Submissions and inbound batches refused for low disk space since start.
    metrics_disk_refusals: u64,
    /// How long one group commit may take (`store.commit_timeout_s`).
    commit_timeout: std::time::Duration,
    /// (records, head) of the latest signed audit head put in the store.
    last_signed: Option<(u64, quickfreeze_keys::Digest32)>,
    /// The signed head the running commit covers: written to the head file once it returned.
    head_in_commit: Option<crate::audit_head::SignedHead>,
}

/// The error (and log lines, and alert hook run) for a node that refuses to start on a damaged
/// store (invariant 10: never run on quietly with less than was acknowledged).
fn refuse_damaged_store(
    config: &NodeConfig,
    report: &crate::integrity::IntegrityReport,
) -> DaemonError {
    let problems = report.problems();
    for problem in &problems {
        tracing::error!("STORE DAMAGED: {problem}");
    }
    let detail = format!(
        "the node refuses to start: the data in {} is damaged or lost ({} problem{}; first: {}). Run `quickfreeze store verify --data-dir {}` for the full list, keep a copy of the data directory exactly as it is, and restore it from your latest backup, or contact support with the copy",
        config.data_dir.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.first().map_or("", String::as_str),
        config.data_dir.display(),
    );
    if let Some((program, args)) = config.alert_hook.split_first() {
        // Not waited for: the process is about to exit, and the hook outlives it.
        let started = std::process::Command::new(program)
            .args(args)
            .env("QF_EVENT", "store-damaged")
            .env("QF_DETAIL", &detail)
            .stdin(std::process::Stdio::null())
            .spawn();
        if let Err(error) = started {
            tracing::error!(%program, %error, "alert hook could not be started");
        }
    }
    DaemonError::Store(detail)
}

/// Per-message alert hook runs for messages announced again after a restart (the summary alert
/// covers all of them).
const MAX_REANNOUNCE_ALERTS: usize = 5;

/// "N messages not yet acknowledged, oldest …", or `None` when there are none.
fn unacknowledged_summary(
    now: Timestamp,
    reannounced: &quickfreeze_proto::core::Reannounced,
) -> Option<String> {
    let (at, oldest) = reannounced.oldest?;
    Some(format!(
        "{} message{} received before the restart not yet acknowledged, oldest {} received {} ago ({at}); see `quickfreeze inbox --unacknowledged`",
        reannounced.count,
        if reannounced.count == 1 { "" } else { "s" },
        oldest,
        crate::text::age(now.0.saturating_sub(at.0) / 1000),
    ))
}

/// Counters and histograms since start, for the Prometheus endpoint.
#[derive(Debug)]
struct Telemetry {
    delivered: u64,
    expired: u64,
    rejected: u64,
    received: u64,
    time_to_receipt: crate::prometheus::Histogram,
    time_to_acknowledge: crate::prometheus::Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            delivered: 0,
            expired: 0,
            rejected: 0,
            received: 0,
            time_to_receipt: crate::prometheus::Histogram::new(&crate::prometheus::RECEIPT_BUCKETS),
            time_to_acknowledge: crate::prometheus::Histogram::new(&crate::prometheus::ACK_BUCKETS),
        }
    }
}

impl Daemon {
    fn prepare(config: &NodeConfig) -> Result<Daemon, DaemonError> {
        let data_dir = config.data_dir.clone();
        let key_path = data_dir.join(files::KEY);
        if !key_path.exists() {
            return Err(DaemonError::MissingKey(key_path));
        }
        let identity = Identity::read_key_file(&key_path)?;
        let me = identity.node_id();
        let store = SledStore::open(&data_dir.join(files::STORE), &config.store_options())
            .map_err(|error| DaemonError::Store(error.to_string()))?;
        let audit =
            AuditLog::open(&store).map_err(|error| DaemonError::Store(error.to_string()))?;
        // Invariant 10: a store that lost or damaged what it acknowledged is said, not run on.
        let integrity = crate::integrity::check(&store, &audit, &data_dir, None, false);
        if integrity.is_damaged() {
            return Err(refuse_damaged_store(config, &integrity));
        }
        let last_signed = store
            .get_audit_head()
            .ok()
            .flatten()
            .and_then(|bytes| crate::audit_head::SignedHead::from_bytes(&bytes).ok())
            .map(|head| (head.records, head.head));
        let now = Timestamp::now();
        let stored_roster = store
            .get_roster()
            .map_err(|error| DaemonError::Store(error.to_string()))?;
        let (roster, signed) = load_roster(&data_dir, &store, now)?;
        let roster_installed = (stored_roster.as_deref() != Some(signed.as_slice()))
            .then(|| (roster.serial, roster.network.clone()));
        if roster.member(&me).is_none() {
            return Err(DaemonError::Roster(format!(
                "this node ({me}) is not in roster serial {}; give the roster authority the entry printed by `quickfreeze init`",
                roster.serial
            )));
        }
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let mut core = Core::new(identity, roster, signed, config.core_config(), store, seed)
            .map_err(|error| DaemonError::Store(error.to_string()))?;
        roster::apply_installed_revocations(&data_dir, &mut core);
        // Key rotation: the core now uses the key pair the roster names for this node; pairs
        // whose grace has ended are erased from the key file before the node goes online.
        core.forget_expired_keys(now);
        if core.take_keys_changed() {
            keys::persist_key_file(&data_dir, &core, now)?;
        }
        if let Some(member) = core.roster().member(&me) {
            let named = member.current_signing_key();
            if core.identity().signing_key() != named {
                return Err(DaemonError::Roster(format!(
                    "roster serial {} names signing key {named} for this node, but its key file does not hold that key; install the roster that matches this node's keys, or restore the key file the rotation wrote",
                    core.roster().serial
                )));
            }
        }
        let keypair = core.identity().to_libp2p_keypair();
        // A crash between storing a message and showing it must not hide it: every recent
        // unacknowledged message is announced (and alerted) again.
        // One summary line, however many: the inbox (console) and the alert hook carry the
        // detail (44,949 lines once buried everything else in the log).
        let reannounced = core
            .announce_unacknowledged_summary(now)
            .map_err(|error| DaemonError::Store(error.to_string()))?;
        let unacknowledged_summary = unacknowledged_summary(now, &reannounced);
        if let Some(summary) = &unacknowledged_summary {
            warn!(count = reannounced.count, "{summary}");
        }
        let listen = config
            .listen
            .iter()
            .map(|text| {
                text.parse::<Multiaddr>().map_err(|error| {
                    DaemonError::Network(format!("listen address `{text}`: {error}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let network_config = NetworkConfig {
            listen_addresses: listen,
            max_request_bytes: MAX_BATCH_BYTES as usize,
            max_response_bytes: MAX_BATCH_BYTES as usize,
            protocol: libp2p::StreamProtocol::new(PROTOCOL_ID),
            ..NetworkConfig::default()
        };
        let mut network = Network::new(keypair, network_config)
            .map_err(|error| DaemonError::Network(error.to_string()))?;
        network.set_allowed_peers(allowed_peers(core.roster(), me, now));
        network.set_peer_labels(roster::peer_labels(core.roster(), now));
        let socket_path = data_dir.join(files::SOCKET);
        let listener = bind_control_socket(&socket_path)?;
        let (metrics_listener, metrics_address) = match &config.metrics_listen {
            None => (None, None),
            Some(text) => {
                let problem = |error: String| {
                    DaemonError::Network(format!("metrics_listen = \"{text}\": {error}"))
                };
                let address: std::net::SocketAddr = text
                    .parse()
                    .map_err(|error: std::net::AddrParseError| problem(error.to_string()))?;
                let listener = std::net::TcpListener::bind(address)
                    .map_err(|error| problem(format!("cannot listen: {error}")))?;
                listener
                    .set_nonblocking(true)
                    .map_err(|error| problem(error.to_string()))?;
                let bound = listener
                    .local_addr()
                    .map_err(|error| problem(error.to_string()))?;
                (Some(listener), Some(bound))
            }
        };
        let mut daemon = Daemon {
            fingerprint: me.fingerprint().to_string(),
            core,
            network,
            data_dir,
            alert_hook: config.alert_hook.clone(),
            max_console_connections: config.limits.max_console_connections,
            listener: Some(listener),
            socket_path,
            requests: BTreeMap::new(),
            pending_responses: Vec::new(),
            pending_replies: Vec::new(),
            waiters: BTreeMap::new(),
            connected: BTreeSet::new(),
            peer_in_use: BTreeMap::new(),
            keys_checked_at: now,
            listen_addresses: Vec::new(),
            hooks: JoinSet::new(),
            group_commit: config.store.group_commit,
            metrics: Metrics::default(),
            accepted_at: BTreeMap::new(),
            latencies_us: std::collections::VecDeque::new(),
            audit,
            audit_error: None,
            refused_audit: BTreeMap::new(),
            metrics_listener,
            metrics_address,
            telemetry: Telemetry::default(),
            deadline_config: config.deadlines.clone(),
            tracker: crate::deadlines::Tracker::default(),
            pending_overdue: Vec::new(),
            backups_waiting: Vec::new(),
            deadline_generation: 0,
            commit: CommitPipeline::default(),
            fault_injection: config.testing.fault_injection,
            delivery_log: std::collections::VecDeque::new(),
            delivery_log_overflowed: 0,
            duplicates_suppressed: 0,
            reannounce_alerts_left: MAX_REANNOUNCE_ALERTS,
            disk: disk::DiskWatch::new(&config.data_dir, &config.store),
            metrics_disk_refusals: 0,
            commit_timeout: std::time::Duration::from_secs(config.store.commit_timeout_s),
            startup_alert: unacknowledged_summary,
            last_signed,
            head_in_commit: None,
            probe: crate::probe::ReconnectProbe::new(
                config.retry.reconnect_probe_ms,
                config.retry.reconnect_probe_max_dials,
            ),
        };
        for message in &integrity.unrecorded {
            // A crash fell between storing the message and writing its record (nothing was
            // acknowledged then): the record is written now, saying so.
            let Ok(message_id) = message.message_id.parse::<MessageId>() else {
                continue;
            };
            let (kind, peer) = match &message.sender {
                Some(sender) => (AuditKind::Received, sender.parse::<NodeId>().ok()),
                None => (AuditKind::Submitted, None),
            };
            let mut facts = AuditFacts::new(kind);
            facts.message_id = Some(message_id);
            facts.peer = peer;
            facts.detail = "recorded at start: the message was stored but its record was lost in a crash before the commit".into();
            daemon.record(now, facts);
        }
        if !integrity.unrecorded.is_empty() {
            warn!(
                count = integrity.unrecorded.len(),
                "messages stored without their audit record (a crash before the commit) were recorded at start"
            );
        }
        if let Some((serial, network)) = roster_installed {
            // Made durable by the first group commit of the loop, like every other record.
            let mut facts = AuditFacts::new(AuditKind::RosterInstalled);
            facts.detail = format!("roster `{network}` serial {serial} installed by the operator");
            daemon.record(now, facts);
        }
        Ok(daemon)
    }
}
