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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use quickfreeze_keys::roster::{Role, Roster};
use quickfreeze_keys::{CountryCode, Fingerprint, Identity, NodeId, SignedRoster, Timestamp};
use quickfreeze_proto::core::{Core, Event, OutboxState, Store, Transmit};
use quickfreeze_proto::frame::{MAX_BATCH_BYTES, PROTOCOL_ID};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::receipt::{Receipt, ReceiptKind};
use quickfreeze_proto::MessageId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::audit::{AuditFacts, AuditKind, AuditLog};
use crate::config::{files, NodeConfig};
use crate::control::{
    ControlRequest, ControlResponse, Hello, HelloReply, InboxRow, MessageDetail, Metrics,
    OutboxRow, PeerRow, ReceiptView, StatusReport, StatusView, CONTROL_PROTOCOL_NAME,
    CONTROL_PROTOCOL_VERSION, MAX_CONTROL_LINE_BYTES, MAX_SUBMIT_BATCH,
};
use crate::network::{LinkFault, Network, NetworkConfig, NetworkEvent};
use crate::store::{FlushDone, SledStore};

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
    /// The network.
    #[error("network: {0}")]
    Network(String),
    /// The control socket.
    #[error("control socket {path}: {message}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Loads the roster the node should use: the newer of the one in the store (verified when it was
/// stored) and the operator-installed file (verified against the pin, or as an update).
pub fn load_roster(
    data_dir: &Path,
    store: &SledStore,
    now: Timestamp,
) -> Result<(Roster, Vec<u8>), DaemonError> {
    let stored = store
        .get_roster()
        .map_err(|error| DaemonError::Store(error.to_string()))?
        .map(|bytes| -> Result<(Roster, Vec<u8>), DaemonError> {
            let signed = SignedRoster::from_bytes(&bytes).map_err(|error| DaemonError::Roster(format!("stored roster: {error}")))?;
            let roster = signed
                .verify_self(now)
                .map_err(|error| DaemonError::Roster(format!("stored roster: {error}; install a current one with `quickfreeze roster install`")))?;
            Ok((roster, bytes))
        })
        .transpose()?;
    let file_path = data_dir.join(files::ROSTER);
    let file = match std::fs::read(&file_path) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(DaemonError::Roster(format!(
                "{}: {error}",
                file_path.display()
            )))
        }
    };
    match (stored, file) {
        (None, None) => Err(DaemonError::Roster(format!(
            "no roster: install one with `quickfreeze roster install --data-dir {} FILE`",
            data_dir.display()
        ))),
        (Some(stored), None) => Ok(stored),
        (stored, Some(bytes)) => {
            let signed = SignedRoster::from_bytes(&bytes).map_err(|error| {
                DaemonError::Roster(format!("{}: {error}", file_path.display()))
            })?;
            match stored {
                Some((current, current_bytes)) => {
                    let offered = signed.roster_unverified().map_err(|error| {
                        DaemonError::Roster(format!("{}: {error}", file_path.display()))
                    })?;
                    if offered.serial <= current.serial {
                        return Ok((current, current_bytes));
                    }
                    let roster = signed.verify_update(&current, now).map_err(|error| {
                        DaemonError::Roster(format!("{}: {error}", file_path.display()))
                    })?;
                    Ok((roster, bytes))
                }
                None => {
                    let pin = read_pin(data_dir)?;
                    let roster = signed.verify_pinned(&pin, now).map_err(|error| {
                        DaemonError::Roster(format!("{}: {error}", file_path.display()))
                    })?;
                    Ok((roster, bytes))
                }
            }
        }
    }
}

/// Reads the pinned authority-set fingerprint.
pub fn read_pin(data_dir: &Path) -> Result<Fingerprint, DaemonError> {
    let path = data_dir.join(files::PIN);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        DaemonError::Roster(format!(
            "{}: {error}; pin the roster authorities with `quickfreeze roster install --authority-set FINGERPRINT`",
            path.display()
        ))
    })?;
    text.trim()
        .parse()
        .map_err(|error: String| DaemonError::Roster(format!("{}: {error}", path.display())))
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
    /// Counts on-the-spot deadline checks, so that an older periodic scan is not applied.
    deadline_generation: u64,
    /// What ended turns produced that waits for the next group commit to begin.
    waiting: Outputs,
    /// What the running group commit covers, released when it returns.
    in_commit: Outputs,
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
}

/// The result of a periodic deadline check run off the loop.
struct DeadlineScan {
    /// `Daemon::deadline_generation` when it started.
    generation: u64,
    now: Timestamp,
    found: Result<Vec<(crate::deadlines::Breach, Option<quickfreeze_keys::Digest32>)>, String>,
}

/// What a turn produced that acknowledges something, held until a commit covers it.
#[derive(Default)]
struct Outputs {
    responses: Vec<(ResponseChannel<Vec<u8>>, Vec<u8>)>,
    replies: Vec<(oneshot::Sender<ControlResponse>, ControlResponse)>,
    transmits: Vec<Transmit>,
    events: Vec<Event>,
    overdue: Vec<crate::deadlines::Breach>,
}

impl Outputs {
    fn is_empty(&self) -> bool {
        self.responses.is_empty()
            && self.replies.is_empty()
            && self.transmits.is_empty()
            && self.events.is_empty()
            && self.overdue.is_empty()
    }
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

/// Refused-inbound audit records kept per peer and minute; the rest are counted and the count
/// is written into the next record for that peer.
const MAX_REFUSED_AUDIT_PER_MINUTE: u32 = 20;

/// Deliveries kept in the testing delivery log between two drains.
const MAX_DELIVERY_LOG: usize = 100_000;

/// Latency samples kept for the percentiles.
const MAX_LATENCY_SAMPLES: usize = 200_000;
/// Undelivered messages whose acceptance instant is tracked (the outbox limit is lower).
const MAX_TRACKED_ACCEPTED: usize = 100_000;

const MAX_WAITERS: usize = 1024;
/// How often the links to this node's own relays are checked (and re-dialled if down).
const RELAY_LINK_CHECK: Duration = Duration::from_secs(10);
const MAX_RUNNING_HOOKS: usize = 8;

fn allowed_peers(roster: &Roster, me: NodeId) -> Vec<(PeerId, Vec<Multiaddr>)> {
    roster
        .members
        .iter()
        .filter(|member| member.node_id != me)
        .filter_map(|member| {
            let peer = member.node_id.to_peer_id().ok()?;
            let addresses = member
                .addresses
                .iter()
                .filter_map(|text| match text.parse::<Multiaddr>() {
                    Ok(address) => Some(address),
                    Err(error) => {
                        warn!(member = %member.node_id, address = %text, %error, "roster address is not a multiaddr; skipped");
                        None
                    }
                })
                .collect();
            Some((peer, addresses))
        })
        .collect()
}

impl Daemon {
    fn prepare(config: &NodeConfig) -> Result<Daemon, DaemonError> {
        let data_dir = config.data_dir.clone();
        let identity = Identity::read_key_file(&data_dir.join(files::KEY))?;
        let me = identity.node_id();
        let keypair = identity.to_libp2p_keypair();
        let store = SledStore::open(&data_dir.join(files::STORE), &config.store_options())
            .map_err(|error| DaemonError::Store(error.to_string()))?;
        let audit =
            AuditLog::open(&store).map_err(|error| DaemonError::Store(error.to_string()))?;
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
        // A crash between storing a message and showing it must not hide it: every recent
        // unacknowledged message is announced (and alerted) again.
        let reannounced = core
            .announce_unacknowledged(now)
            .map_err(|error| DaemonError::Store(error.to_string()))?;
        if reannounced > 0 {
            info!(
                reannounced,
                "messages received before the restart still await acknowledgement"
            );
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
        network.set_allowed_peers(allowed_peers(core.roster(), me));
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
            deadline_generation: 0,
            waiting: Outputs::default(),
            in_commit: Outputs::default(),
            fault_injection: config.testing.fault_injection,
            delivery_log: std::collections::VecDeque::new(),
            delivery_log_overflowed: 0,
            duplicates_suppressed: 0,
            probe: crate::probe::ReconnectProbe::new(
                config.retry.reconnect_probe_ms,
                config.retry.reconnect_probe_max_dials,
            ),
        };
        if let Some((serial, network)) = roster_installed {
            // Made durable by the first group commit of the loop, like every other record.
            let mut facts = AuditFacts::new(AuditKind::RosterInstalled);
            facts.detail = format!("roster `{network}` serial {serial} installed by the operator");
            daemon.record(now, facts);
        }
        Ok(daemon)
    }

    async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let me = self.core.node_id();
        info!(node = %me, data_dir = %self.data_dir.display(), roster_serial = self.core.roster().serial, "node started");
        let (command_tx, mut command_rx) = mpsc::channel::<Command>(64);
        let mut tasks = JoinSet::new();
        if let Some(listener) = self.listener.take() {
            let limit = Arc::new(Semaphore::new(self.max_console_connections));
            tasks.spawn(accept_console(listener, command_tx.clone(), limit, me));
        }
        if let Some(listener) = self.metrics_listener.take() {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    info!(address = ?self.metrics_address, "metrics endpoint listening");
                    let commands = command_tx.clone();
                    let snapshot = move || {
                        let commands = commands.clone();
                        async move {
                            let (reply, answer) = oneshot::channel();
                            commands
                                .send(Command {
                                    request: ControlRequest::MetricsSnapshot,
                                    reply,
                                })
                                .await
                                .ok()?;
                            match answer.await.ok()? {
                                ControlResponse::MetricsSnapshot { snapshot } => Some(*snapshot),
                                _ => None,
                            }
                        }
                    };
                    tasks.spawn(crate::prometheus::serve(listener, snapshot));
                }
                Err(error) => error!(%error, "metrics endpoint could not start"),
            }
        }
        drop(command_tx);
        tokio::pin!(shutdown);
        // Links to this node's own relays are kept up: a relay can only deliver to a member
        // without addresses over a connection the member opened, and a relay that sees us
        // connect retries what it holds for us at once instead of on its backoff schedule.
        let mut relay_links = tokio::time::interval(RELAY_LINK_CHECK);
        relay_links.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline_tick = tokio::time::interval(Duration::from_millis(
            self.deadline_config.check_interval_ms,
        ));
        deadline_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The running group commit, if any (see `end_turn`).
        let mut flush: Option<JoinHandle<FlushDone>> = None;
        // The running periodic deadline check, if any.
        let mut deadline_scan: Option<JoinHandle<DeadlineScan>> = None;
        let probing = self.probe.enabled();
        let probe_tick = tokio::time::sleep(self.probe.next_delay());
        tokio::pin!(probe_tick);
        let result = loop {
            let now = Timestamp::now();
            let wake = self.core.poll_timeout();
            let sleep = async move {
                match wake {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.millis_since(now))).await
                    }
                    None => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                done = async { flush.as_mut().expect("guarded by is_some").await }, if flush.is_some() => {
                    flush = None;
                    if let Err(error) = self.flush_finished(done) {
                        break Err(error);
                    }
                }
                Some(command) = command_rx.recv() => self.on_command(command),
                event = self.network.next_event() => self.on_network(event),
                _ = relay_links.tick() => self.keep_relay_links(),
                () = &mut probe_tick, if probing => {
                    self.probe_reconnect();
                    let next = tokio::time::Instant::now() + self.probe.next_delay();
                    probe_tick.as_mut().reset(next);
                }
                _ = deadline_tick.tick(), if deadline_scan.is_none() => {
                    deadline_scan = Some(self.start_deadline_scan(Timestamp::now()));
                }
                done = async { deadline_scan.as_mut().expect("guarded by is_some").await }, if deadline_scan.is_some() => {
                    deadline_scan = None;
                    self.deadline_scan_finished(done);
                }
                () = sleep => {}
            }
            // Group commit: take whatever else is ready, then flush once for all of it.
            let extra_inputs = if self.group_commit { 256 } else { 0 };
            for _ in 0..extra_inputs {
                if let Ok(command) = command_rx.try_recv() {
                    self.on_command(command);
                    continue;
                }
                match self.network.next_event().now_or_never() {
                    Some(event) => self.on_network(event),
                    None => break,
                }
            }
            let now = Timestamp::now();
            if self.core.poll_timeout().is_some_and(|at| at <= now) {
                self.core.handle_timeout(now);
            }
            if let Err(error) = self.end_turn() {
                break Err(error);
            }
            if flush.is_none() && self.has_waiting() {
                match self.start_flush() {
                    Ok(started) => flush = started,
                    Err(error) => break Err(error),
                }
            }
        };
        let result = match result {
            // A clean stop still answers what this process made durable or can make durable.
            Ok(()) => self.final_flush(flush.take()).await,
            Err(error) => Err(error),
        };
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let _ = std::fs::remove_file(&self.socket_path);
        // Give running alert hooks a moment; they are not killed mid-page.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.hooks.join_next().await.is_some() {}
        })
        .await;
        if let Err(error) = &result {
            error!(%error, "node stopped on an error");
        } else {
            info!(node = %me, "node stopped");
        }
        result
    }

    /// On a clean stop: waits for the running commit, then commits and releases what is left.
    async fn final_flush(
        &mut self,
        running: Option<JoinHandle<FlushDone>>,
    ) -> Result<(), DaemonError> {
        if let Some(running) = running {
            self.flush_finished(running.await)?;
        }
        self.end_turn()?;
        if let Some(running) = self.start_flush()? {
            self.flush_finished(running.await)?;
        }
        Ok(())
    }

    /// Dials every relay the roster names for this node that it is not connected to.
    fn keep_relay_links(&mut self) {
        let me = self.core.node_id();
        let relays: Vec<NodeId> = self
            .core
            .roster()
            .member(&me)
            .map(|member| member.relays.clone())
            .unwrap_or_default();
        for relay in relays {
            if self.connected.contains(&relay) || relay == me {
                continue;
            }
            let Ok(peer) = relay.to_peer_id() else {
                continue;
            };
            if let Err(error) = self.network.dial(peer) {
                debug!(%relay, %error, "cannot dial our relay now; will try again");
            }
        }
    }

    /// Dials the backed-off peers that pending work waits on and that are not connected (at
    /// most the configured number per tick; see `crate::probe`). A dial that connects is
    /// reported as `Connected`, which resets the peer's backoff in the core and retries its
    /// work at once; one that fails changes nothing.
    fn probe_reconnect(&mut self) {
        let waiting = self.core.peers_awaiting_reconnect(Timestamp::now());
        if waiting.is_empty() {
            return;
        }
        let roster = self.core.roster();
        let connected = &self.connected;
        let picked = self
            .probe
            .pick(std::time::Instant::now(), &waiting, |node| {
                connected.contains(node)
                    || roster
                        .member(node)
                        .is_none_or(|member| member.addresses.is_empty())
            });
        for node in picked {
            let Ok(peer) = node.to_peer_id() else {
                continue;
            };
            match self.network.dial(peer) {
                Ok(()) => self.metrics.probe_dials += 1,
                Err(error) => debug!(%node, %error, "reconnect probe: cannot dial now"),
            }
        }
    }

    /// Ends a loop turn. The order is the point:
    ///
    /// 1. take the core's events and append their audit records (on-command records such as
    ///    "acknowledged" or "opened" were appended while the command ran);
    /// 2. set aside everything of this turn that acknowledges anything: responses to peers
    ///    (receipts), console replies, new transmissions, and the events and alerts to show.
    ///
    /// What is set aside leaves only after a group commit that *began after* this turn's writes
    /// has returned `Ok` (see [`Daemon::start_flush`] and [`Daemon::flush_finished`]): that is
    /// invariant 1, durable before acknowledged. The commit runs on a blocking thread, so the loop
    /// goes on taking input while the disk syncs; the next commit covers everything written
    /// meanwhile, which is how commits grow under load.
    ///
    /// Events the core raises while transmissions are handed to the network (a send that fails at
    /// once) stay queued in the core and are taken by the next turn, under the next commit.
    fn end_turn(&mut self) -> Result<(), DaemonError> {
        self.metrics.loop_turns += 1;
        let mut events = Vec::new();
        while let Some(event) = self.core.poll_event() {
            events.push(event);
        }
        let now = Timestamp::now();
        for event in &events {
            if let Some(facts) = self.audit_facts(now, event) {
                self.record(now, facts);
            }
        }
        if let Some(error) = self.audit_error.take() {
            // Nothing of this turn may leave without its audit record.
            return Err(DaemonError::Store(format!(
                "audit log write failed, stopping: {error}"
            )));
        }
        let waiting = &mut self.waiting;
        waiting.responses.append(&mut self.pending_responses);
        waiting.replies.append(&mut self.pending_replies);
        while let Some(transmit) = self.core.poll_transmit() {
            waiting.transmits.push(transmit);
        }
        waiting.events.extend(events);
        waiting.overdue.append(&mut self.pending_overdue);
        Ok(())
    }

    /// Begins the group commit for what waits, unless one is running already (what waits then
    /// goes with the next). With nothing written since the last commit began, what waits is
    /// already covered by a finished commit and leaves at once. Returns the running commit.
    fn start_flush(&mut self) -> Result<Option<JoinHandle<FlushDone>>, DaemonError> {
        // The audit records of every turn this commit covers go in first, as one block.
        self.audit
            .write_pending(self.core.store_mut())
            .map_err(|error| {
                DaemonError::Store(format!("audit log write failed, stopping: {error}"))
            })?;
        let job = self.core.store_mut().begin_flush().map_err(|error| {
            DaemonError::Store(format!("group commit failed, stopping: {error}"))
        })?;
        match job {
            None => {
                let ready = std::mem::take(&mut self.waiting);
                self.release(ready);
                Ok(None)
            }
            Some(job) => {
                self.in_commit = std::mem::take(&mut self.waiting);
                Ok(Some(tokio::task::spawn_blocking(move || job.run())))
            }
        }
    }

    /// The running commit returned: on success, release what it covers.
    fn flush_finished(
        &mut self,
        done: Result<FlushDone, tokio::task::JoinError>,
    ) -> Result<(), DaemonError> {
        let done = done.unwrap_or_else(|error| {
            FlushDone::lost(format!("the group commit thread failed: {error}"))
        });
        if let Err(error) = self.core.store_mut().end_flush(done) {
            // Nothing it covered may leave: that would acknowledge what is not durable.
            return Err(DaemonError::Store(format!(
                "group commit failed, stopping: {error}"
            )));
        }
        let covered = std::mem::take(&mut self.in_commit);
        self.release(covered);
        Ok(())
    }

    /// Whether anything waits for a commit.
    fn has_waiting(&self) -> bool {
        !self.waiting.is_empty() || self.audit.has_pending() || self.core.store().is_dirty()
    }

    /// Lets go of what a finished commit covers: responses, console replies, transmissions,
    /// then the events (log lines, alert hook) and overdue alerts.
    fn release(&mut self, outputs: Outputs) {
        let Outputs {
            responses,
            replies,
            transmits,
            events,
            overdue,
        } = outputs;
        for (channel, response) in responses {
            if let Err(error) = self.network.send_response(channel, response) {
                warn!(%error, "response could not be sent (peer gone); it will retry");
            }
        }
        for (reply, response) in replies {
            let _ = reply.send(response);
        }
        let now = Timestamp::now();
        for transmit in transmits {
            let sent = transmit
                .to
                .to_peer_id()
                .map_err(|error| error.to_string())
                .and_then(|peer| {
                    self.network
                        .send_request(peer, transmit.bytes)
                        .map_err(|error| error.to_string())
                });
            match sent {
                Ok(outbound) => {
                    self.requests.insert(outbound, transmit.request_id);
                }
                Err(error) => self
                    .core
                    .handle_request_failed(now, transmit.request_id, &error),
            }
        }
        for event in events {
            self.on_core_event(event);
        }
        for breach in overdue {
            let country = self.country(&breach.peer);
            warn!(message_id = %breach.message_id, peer = %country, priority = %breach.priority, clock = %breach.clock, overdue_s = breach.overdue_ms / 1000, "OVERDUE: {}", breach.clock.describe());
            self.alert(
                "overdue",
                Some(breach.message_id),
                Some(breach.priority),
                Some(breach.peer),
                &format!("{}: {}", breach.clock, breach.clock.describe()),
            );
        }
        while self.hooks.try_join_next().is_some() {}
    }

    /// Re-evaluates the deadline clocks; breaches not raised before get an audit record now
    /// and are shown after this turn's commit.
    fn check_deadlines(&mut self, now: Timestamp) {
        // Anything a periodic scan already running has read is older than this.
        self.deadline_generation += 1;
        let store = self.core.store();
        let (outbox, inbox) = match (store.outbox_entries(), store.inbox_entries()) {
            (Ok(outbox), Ok(inbox)) => (outbox, inbox),
            (Err(error), _) | (_, Err(error)) => {
                error!(%error, "deadline check could not read the store");
                return;
            }
        };
        let found = crate::deadlines::breaches(now, &outbox, &inbox, &self.deadline_config);
        let found = crate::deadlines::with_digests(found, &outbox, &inbox);
        self.apply_deadlines(now, found);
    }

    /// Starts the periodic deadline check on a blocking thread (it decodes the whole outbox and
    /// inbox, which grows with history and must not stall the loop).
    fn start_deadline_scan(&self, now: Timestamp) -> JoinHandle<DeadlineScan> {
        let reader = self.core.store().reader();
        let config = self.deadline_config.clone();
        let generation = self.deadline_generation;
        tokio::task::spawn_blocking(move || DeadlineScan {
            generation,
            now,
            found: crate::deadlines::scan(now, &reader, &config).map_err(|error| error.to_string()),
        })
    }

    /// A periodic scan returned. Dropped if an on-the-spot check (acknowledge, reply) ran since
    /// it started: its view is older, and applying it could raise a cleared breach again.
    fn deadline_scan_finished(&mut self, done: Result<DeadlineScan, tokio::task::JoinError>) {
        match done {
            Err(error) => error!(%error, "deadline check failed"),
            Ok(scan) if scan.generation != self.deadline_generation => {}
            Ok(DeadlineScan {
                found: Err(error), ..
            }) => error!(%error, "deadline check could not read the store"),
            Ok(DeadlineScan {
                now,
                found: Ok(found),
                ..
            }) => self.apply_deadlines(now, found),
        }
    }

    /// Raises the breaches not raised before: an audit record now, shown after the commit.
    fn apply_deadlines(
        &mut self,
        now: Timestamp,
        found: Vec<(crate::deadlines::Breach, Option<quickfreeze_keys::Digest32>)>,
    ) {
        let mut digests: BTreeMap<_, _> = found
            .iter()
            .map(|(breach, digest)| (breach.key(), *digest))
            .collect();
        let breaches = found.into_iter().map(|(breach, _)| breach).collect();
        for breach in self.tracker.update(breaches) {
            let digest = digests.remove(&breach.key()).flatten();
            self.record(
                now,
                AuditFacts {
                    kind: AuditKind::Overdue,
                    message_id: Some(breach.message_id),
                    peer: Some(breach.peer),
                    country: Some(self.country(&breach.peer)),
                    envelope_digest: digest,
                    detail: format!(
                        "{} {}: due {}",
                        breach.priority,
                        breach.clock.describe(),
                        breach.due_at
                    ),
                },
            );
            self.pending_overdue.push(breach);
        }
    }

    /// Appends one audit record; a failure is kept and stops the turn before its commit.
    fn record(&mut self, now: Timestamp, facts: AuditFacts) {
        if self.audit_error.is_some() {
            return;
        }
        let kind = facts.kind;
        if let Err(error) = self.audit.append(now, facts) {
            error!(%error, %kind, "audit record could not be written");
            self.audit_error = Some(error.to_string());
        }
    }

    /// The audit record of a core event (`None` for events that are not audited).
    fn audit_facts(&mut self, now: Timestamp, event: &Event) -> Option<AuditFacts> {
        let refused = match event {
            Event::InboundRejected { from, reason } => {
                Some((None, *from, format!("frame: {reason}")))
            }
            Event::ReceiptRejected {
                message_id,
                from,
                reason,
            } => Some((Some(*message_id), *from, format!("receipt: {reason}"))),
            Event::RosterRejected { from, reason } => {
                Some((None, *from, format!("roster: {reason}")))
            }
            _ => None,
        };
        if let Some((message_id, from, detail)) = refused {
            let detail = self.refused_detail(now, from, detail)?;
            return Some(AuditFacts {
                kind: AuditKind::RefusedInbound,
                message_id,
                peer: Some(from),
                country: Some(self.country(&from)),
                envelope_digest: None,
                detail,
            });
        }
        let facts = |kind: AuditKind,
                     message_id: Option<MessageId>,
                     peer: Option<NodeId>,
                     digest: Option<quickfreeze_keys::Digest32>,
                     detail: String| AuditFacts {
            kind,
            message_id,
            peer,
            country: peer.map(|peer| self.country(&peer)),
            envelope_digest: digest,
            detail,
        };
        let record = match event {
            Event::Accepted {
                message_id,
                recipient,
                priority,
                digest,
                kind,
            } => facts(
                AuditKind::Submitted,
                Some(*message_id),
                Some(*recipient),
                Some(*digest),
                format!("{priority} {kind}"),
            ),
            Event::Sent {
                message_id,
                to,
                via_relay,
                digest,
            } => facts(
                AuditKind::Sent,
                Some(*message_id),
                Some(*to),
                Some(*digest),
                if *via_relay { "to a relay" } else { "direct" }.into(),
            ),
            Event::Custody {
                message_id,
                relay,
                digest,
            } => facts(
                AuditKind::Custody,
                Some(*message_id),
                Some(*relay),
                Some(*digest),
                "custody receipt verified".into(),
            ),
            Event::Delivered {
                message_id,
                recipient,
                received_at,
                latency_ms,
                digest,
            } => facts(
                AuditKind::Delivered,
                Some(*message_id),
                Some(*recipient),
                Some(*digest),
                format!("delivery receipt verified; stored by the recipient at {received_at}, {latency_ms} ms after submission"),
            ),
            Event::Expired {
                message_id,
                recipient,
                priority,
                digest,
            } => facts(
                AuditKind::Expired,
                Some(*message_id),
                Some(*recipient),
                Some(*digest),
                format!("{priority}: expired without a delivery receipt"),
            ),
            Event::Rejected {
                message_id,
                by,
                reason,
                digest,
            } => facts(
                AuditKind::Rejected,
                Some(*message_id),
                Some(*by),
                Some(*digest),
                format!("refused by the recipient: {reason}"),
            ),
            Event::Received {
                sender,
                message_id,
                priority,
                kind,
                via_relay,
                digest,
                reannounced: false,
            } => {
                let digest = Some(*digest);
                let relay = via_relay.map_or_else(String::new, |relay| {
                    format!(" via relay {relay}")
                });
                facts(
                    AuditKind::Received,
                    Some(*message_id),
                    Some(*sender),
                    digest,
                    format!("{priority} {kind}{relay}"),
                )
            }
            Event::Received {
                reannounced: true, ..
            } => return None,
            Event::StatusReceived {
                references,
                from,
                status,
            } => facts(
                AuditKind::StatusReceived,
                Some(*references),
                Some(*from),
                None,
                status_label(status),
            ),
            Event::InboundRejected { .. }
            | Event::ReceiptRejected { .. }
            | Event::RosterRejected { .. } => return None,
            Event::RosterUpdated { serial } => facts(
                AuditKind::RosterUpdated,
                None,
                None,
                None,
                format!("roster serial {serial} received from a peer and in use"),
            ),
            Event::RelayHolding {
                sender,
                recipient,
                message_id,
            } => facts(
                AuditKind::RelayHolding,
                Some(*message_id),
                Some(*sender),
                None,
                format!("held for {} ({recipient})", self.country(recipient)),
            ),
            Event::RelayDelivered {
                sender,
                recipient,
                message_id,
            } => facts(
                AuditKind::RelayDelivered,
                Some(*message_id),
                Some(*sender),
                None,
                format!("delivered to {} ({recipient})", self.country(recipient)),
            ),
            Event::RelayFailed {
                sender,
                recipient,
                message_id,
                reason,
            } => facts(
                AuditKind::RelayFailed,
                Some(*message_id),
                Some(*sender),
                None,
                format!("for {} ({recipient}): {reason}", self.country(recipient)),
            ),
            Event::StoreFailed { .. } => return None,
        };
        Some(record)
    }

    /// The detail of a refused-inbound record, or `None` when this peer already has
    /// [`MAX_REFUSED_AUDIT_PER_MINUTE`] records this minute (the log line still appears).
    fn refused_detail(&mut self, now: Timestamp, peer: NodeId, detail: String) -> Option<String> {
        let minute = now.0 / 60_000;
        if self.refused_audit.len() > 1024 {
            self.refused_audit.retain(|_, (at, _, _)| *at == minute);
        }
        let slot = self.refused_audit.entry(peer).or_insert((minute, 0, 0));
        if slot.0 != minute {
            *slot = (minute, 0, slot.2);
        }
        if slot.1 >= MAX_REFUSED_AUDIT_PER_MINUTE {
            slot.2 = slot.2.saturating_add(1);
            return None;
        }
        slot.1 += 1;
        let suppressed = std::mem::take(&mut slot.2);
        Some(if suppressed > 0 {
            format!(
                "{detail} ({suppressed} earlier refusals from this peer not recorded one by one)"
            )
        } else {
            detail
        })
    }

    fn on_network(&mut self, event: NetworkEvent) {
        let now = Timestamp::now();
        match event {
            NetworkEvent::Listening { address } => {
                info!(%address, "listening");
                self.listen_addresses.push(address.to_string());
            }
            NetworkEvent::Connected { peer } => {
                if let Some(node) = NodeId::from_peer_id(&peer) {
                    self.connected.insert(node);
                    self.core.handle_peer_seen(now, node);
                }
            }
            NetworkEvent::Disconnected { peer } => {
                if let Some(node) = NodeId::from_peer_id(&peer) {
                    self.connected.remove(&node);
                }
            }
            NetworkEvent::InboundRequest {
                peer,
                frame,
                channel,
            } => {
                let Some(node) = NodeId::from_peer_id(&peer)
                    .filter(|node| self.core.roster().member(node).is_some())
                else {
                    warn!(%peer, "request from a peer outside the roster dropped");
                    return;
                };
                if self.fault_injection {
                    self.count_duplicates(&frame);
                }
                let response = self.core.handle_request(now, node, &frame);
                self.pending_responses.push((channel, response));
            }
            NetworkEvent::Response {
                request_id, frame, ..
            } => {
                if let Some(core_id) = self.requests.remove(&request_id) {
                    self.core.handle_response(now, core_id, &frame);
                }
            }
            NetworkEvent::OutboundFailure {
                peer,
                request_id,
                error,
            } => {
                if let Some(core_id) = self.requests.remove(&request_id) {
                    info!(%peer, %error, "request failed; will retry");
                    self.core.handle_request_failed(now, core_id, &error);
                }
            }
            NetworkEvent::RejectedPeer { peer, reason } => {
                warn!(%peer, %reason, "connection from a non-member refused");
            }
        }
    }

    fn on_core_event(&mut self, event: Event) {
        let roster = self.core.roster();
        let country = |node: &NodeId| {
            roster
                .member(node)
                .map_or_else(|| "??".to_string(), |member| member.country.to_string())
        };
        match &event {
            Event::Accepted {
                message_id,
                recipient,
                priority,
                ..
            } => {
                self.metrics.accepted += 1;
                if self.accepted_at.len() < MAX_TRACKED_ACCEPTED {
                    self.accepted_at
                        .insert(*message_id, std::time::Instant::now());
                }
                info!(%message_id, to = %country(recipient), %priority, "accepted");
            }
            Event::Sent {
                message_id,
                to,
                via_relay,
                ..
            } => {
                info!(%message_id, to = %country(to), via_relay, "sent");
            }
            Event::Custody {
                message_id, relay, ..
            } => {
                info!(%message_id, relay = %relay, "relay took custody");
            }
            Event::Delivered {
                message_id,
                recipient,
                received_at,
                latency_ms,
                ..
            } => {
                info!(%message_id, to = %country(recipient), %received_at, latency_ms, "delivered");
                let message_id = *message_id;
                self.metrics.delivered += 1;
                self.telemetry.delivered += 1;
                self.telemetry
                    .time_to_receipt
                    .observe(*latency_ms as f64 / 1000.0);
                if self.fault_injection {
                    if self.delivery_log.len() >= MAX_DELIVERY_LOG {
                        self.delivery_log.pop_front();
                        self.delivery_log_overflowed += 1;
                    }
                    let unix_us = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| {
                            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
                        });
                    self.delivery_log.push_back((message_id, unix_us));
                }
                if let Some(at) = self.accepted_at.remove(&message_id) {
                    if self.latencies_us.len() >= MAX_LATENCY_SAMPLES {
                        self.latencies_us.pop_front();
                    }
                    self.latencies_us
                        .push_back(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                if let Some(waiters) = self.waiters.remove(&message_id) {
                    let response = self.delivered_response(&message_id);
                    for waiter in waiters {
                        let _ = waiter.send(response.clone());
                    }
                }
            }
            Event::Expired {
                message_id,
                recipient,
                priority,
                ..
            } => {
                self.metrics.expired += 1;
                self.telemetry.expired += 1;
                self.accepted_at.remove(message_id);
                error!(%message_id, to = %country(recipient), %priority, "EXPIRED UNDELIVERED: contact the recipient by phone");
                self.alert(
                    "expired",
                    Some(*message_id),
                    Some(*priority),
                    Some(*recipient),
                    "expired without a delivery receipt",
                );
            }
            Event::Rejected {
                message_id,
                by,
                reason,
                ..
            } => {
                error!(%message_id, by = %country(by), %reason, "REFUSED by the recipient");
                self.telemetry.rejected += 1;
                self.alert("rejected", Some(*message_id), None, Some(*by), reason);
            }
            Event::Received {
                sender,
                message_id,
                priority,
                kind,
                via_relay,
                reannounced,
                ..
            } => {
                let what = if *reannounced {
                    "STILL UNACKNOWLEDGED after restart"
                } else {
                    self.metrics.received += 1;
                    self.telemetry.received += 1;
                    "NEW REQUEST in the inbox"
                };
                info!(%message_id, from = %country(sender), %priority, %kind, relayed = via_relay.is_some(), "{what}");
                self.alert(
                    if *reannounced {
                        "unacknowledged"
                    } else {
                        "received"
                    },
                    Some(*message_id),
                    Some(*priority),
                    Some(*sender),
                    &kind.to_string(),
                );
            }
            Event::StatusReceived {
                references,
                from,
                status,
            } => {
                info!(%references, from = %country(from), %status, "status update received");
                self.alert(
                    "status",
                    Some(*references),
                    None,
                    Some(*from),
                    &status.to_string(),
                );
            }
            Event::InboundRejected { from, reason } => {
                warn!(from = %from, %reason, "refused inbound frame");
            }
            Event::ReceiptRejected {
                message_id,
                from,
                reason,
            } => {
                warn!(%message_id, from = %from, %reason, "receipt did not verify");
            }
            Event::RelayHolding {
                sender,
                recipient,
                message_id,
            } => {
                info!(%message_id, from = %country(sender), to = %country(recipient), "relay: holding");
            }
            Event::RelayDelivered {
                sender,
                recipient,
                message_id,
            } => {
                info!(%message_id, from = %country(sender), to = %country(recipient), "relay: delivered");
            }
            Event::RelayFailed {
                sender,
                recipient,
                message_id,
                reason,
            } => {
                error!(%message_id, from = %country(sender), to = %country(recipient), %reason, "relay: gave up");
                self.alert(
                    "relay-failed",
                    Some(*message_id),
                    None,
                    Some(*recipient),
                    reason,
                );
            }
            Event::RosterUpdated { serial } => {
                info!(serial, "roster updated");
                let peers = allowed_peers(self.core.roster(), self.core.node_id());
                self.network.set_allowed_peers(peers);
            }
            Event::RosterRejected { from, reason } => {
                warn!(from = %from, %reason, "roster offered by a peer refused");
            }
            Event::StoreFailed { reason } => {
                error!(%reason, "store failure");
                self.alert("store-failed", None, None, None, reason);
            }
        }
    }

    fn alert(
        &mut self,
        kind: &str,
        message_id: Option<MessageId>,
        priority: Option<quickfreeze_proto::Priority>,
        peer: Option<NodeId>,
        detail: &str,
    ) {
        let Some((program, args)) = self.alert_hook.split_first() else {
            return;
        };
        if self.hooks.len() >= MAX_RUNNING_HOOKS {
            error!(kind, "alert hook backlog: {MAX_RUNNING_HOOKS} hooks still running, this alert was not run");
            return;
        }
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("QF_EVENT", kind)
            .env(
                "QF_MESSAGE_ID",
                message_id.map(|id| id.to_string()).unwrap_or_default(),
            )
            .env(
                "QF_PRIORITY",
                priority.map(|p| p.to_string()).unwrap_or_default(),
            )
            .env("QF_PEER", peer.map(|p| p.to_string()).unwrap_or_default())
            .env("QF_DETAIL", detail)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        let program = program.clone();
        self.hooks.spawn(async move {
            match command.status().await {
                Ok(status) if status.success() => {}
                Ok(status) => error!(%program, %status, "alert hook failed"),
                Err(error) => error!(%program, %error, "alert hook could not be started"),
            }
        });
    }

    fn resolve_recipient(&self, text: &str) -> Result<NodeId, String> {
        let roster = self.core.roster();
        if text.len() == 2 {
            let country = CountryCode::parse(text)?;
            return roster
                .by_country(country)
                .map(|member| member.node_id)
                .ok_or_else(|| {
                    format!(
                        "no member for country {country} in roster serial {}",
                        roster.serial
                    )
                });
        }
        let node: NodeId = text
            .parse()
            .map_err(|error: quickfreeze_keys::KeyError| error.to_string())?;
        roster
            .member(&node)
            .map(|member| member.node_id)
            .ok_or_else(|| format!("{node} is not in roster serial {}", roster.serial))
    }

    /// Validates, seals and stores one submission; the answer leaves after the group commit.
    fn submit(&mut self, now: Timestamp, recipient: &str, payload: Payload) -> ControlResponse {
        match self.resolve_recipient(recipient) {
            Err(message) => ControlResponse::Error { message },
            Ok(node) => match self.core.submit(now, node, payload) {
                Ok(message_id) => ControlResponse::Submitted {
                    message_id: message_id.to_string(),
                    recipient: node.to_string(),
                    country: self.country(&node),
                },
                Err(error) => ControlResponse::Error {
                    message: error.to_string(),
                },
            },
        }
    }

    fn on_command(&mut self, command: Command) {
        let Command { request, reply } = command;
        let now = Timestamp::now();
        let response = match request {
            ControlRequest::Submit { recipient, payload } => self.submit(now, &recipient, *payload),
            ControlRequest::SubmitBatch { items } => {
                if items.len() > MAX_SUBMIT_BATCH {
                    ControlResponse::Error {
                        message: format!(
                            "a batch holds at most {MAX_SUBMIT_BATCH} submissions, this one {}; split it",
                            items.len()
                        ),
                    }
                } else {
                    let results = items
                        .into_iter()
                        .map(|item| self.submit(now, &item.recipient, item.payload))
                        .collect();
                    ControlResponse::SubmittedBatch { results }
                }
            }
            ControlRequest::Inbox { limit } => self.inbox(now, limit),
            ControlRequest::Outbox { limit } => self.outbox(now, limit),
            ControlRequest::Show { message_id } => {
                let response = self.show(&message_id);
                if let ControlResponse::Message { detail } = &response {
                    if let Ok(id) = detail.message_id.parse::<MessageId>() {
                        let (peer, digest) = self.message_facts(&id);
                        self.record(
                            now,
                            AuditFacts {
                                kind: AuditKind::Opened,
                                message_id: Some(id),
                                peer,
                                country: peer.map(|peer| self.country(&peer)),
                                envelope_digest: digest,
                                detail: format!(
                                    "{} message opened at the console",
                                    detail.direction
                                ),
                            },
                        );
                    }
                }
                response
            }
            ControlRequest::Ack {
                message_id,
                officer,
            } => match self.find_inbox_sender(&message_id) {
                Err(message) => ControlResponse::Error { message },
                Ok((sender, id)) => match self.core.acknowledge(now, sender, id, &officer) {
                    Ok(reply) => {
                        if let Some(status_id) = reply {
                            if let Ok(Some(entry)) = self.core.store().get_inbox(&sender, &id) {
                                self.telemetry
                                    .time_to_acknowledge
                                    .observe(now.millis_since(entry.received_at) as f64 / 1000.0);
                            }
                            let (_, digest) = self.message_facts(&id);
                            self.record(
                                now,
                                AuditFacts {
                                    kind: AuditKind::Acknowledged,
                                    message_id: Some(id),
                                    peer: Some(sender),
                                    country: Some(self.country(&sender)),
                                    envelope_digest: digest,
                                    detail: format!(
                                        "acknowledged by officer {officer}; status message {status_id}"
                                    ),
                                },
                            );
                        }
                        // Clear T2 in `status` at once rather than at the next tick.
                        self.check_deadlines(now);
                        ControlResponse::Acknowledged {
                            status_message_id: reply.map(|id| id.to_string()),
                        }
                    }
                    Err(error) => ControlResponse::Error {
                        message: error.to_string(),
                    },
                },
            },
            ControlRequest::Reply {
                message_id,
                status,
                note,
                officer,
            } => match self.find_inbox_sender(&message_id) {
                Err(message) => ControlResponse::Error { message },
                Ok((sender, id)) => {
                    let label = status_label(&status);
                    let who = officer.clone();
                    match self.core.reply(now, sender, id, status, note, officer) {
                        Ok(reply) => {
                            let (_, digest) = self.message_facts(&id);
                            self.record(
                                now,
                                AuditFacts {
                                    kind: AuditKind::StatusSent,
                                    message_id: Some(id),
                                    peer: Some(sender),
                                    country: Some(self.country(&sender)),
                                    envelope_digest: digest,
                                    detail: format!(
                                        "{label} by officer {who}; status message {reply}"
                                    ),
                                },
                            );
                            self.check_deadlines(now);
                            ControlResponse::Replied {
                                status_message_id: reply.to_string(),
                            }
                        }
                        Err(error) => ControlResponse::Error {
                            message: error.to_string(),
                        },
                    }
                }
            },
            ControlRequest::Peers => self.peers(),
            ControlRequest::MetricsSnapshot => self.snapshot(now),
            ControlRequest::Stats { since_ms } => {
                let roster = self.core.roster();
                tokio::task::block_in_place(|| {
                    crate::stats::answer(self.core.store(), roster, Timestamp(since_ms))
                })
            }
            request @ (ControlRequest::AuditVerify { .. } | ControlRequest::AuditExport { .. }) => {
                // The records of this turn so far are read too (they become durable with its
                // commit, like everything else the answer reports).
                match self.audit.write_pending(self.core.store_mut()) {
                    Err(error) => {
                        self.audit_error = Some(error.to_string());
                        ControlResponse::Error {
                            message: format!("the audit log cannot be written: {error}"),
                        }
                    }
                    Ok(()) => {
                        tokio::task::block_in_place(|| crate::audit::answer(&self.audit, &request))
                    }
                }
            }
            ControlRequest::Fault {
                peers,
                drop_outbound,
                drop_inbound,
                delay_ms,
            } => self.inject_fault(&peers, drop_outbound, drop_inbound, delay_ms),
            ControlRequest::FaultClear => {
                if self.fault_injection {
                    self.network.clear_link_faults();
                    ControlResponse::FaultsSet { faulty_peers: 0 }
                } else {
                    fault_injection_refused()
                }
            }
            ControlRequest::DeliveryLog { drain } => self.delivery_log_report(drain),
            ControlRequest::Metrics { reset } => self.metrics_report(reset),
            ControlRequest::Status => self.status(now),
            ControlRequest::WaitDelivered { message_id, .. } => {
                let id = match message_id.parse::<MessageId>() {
                    Ok(id) => id,
                    Err(message) => {
                        self.pending_replies
                            .push((reply, ControlResponse::Error { message }));
                        return;
                    }
                };
                match self.core.store().get_outbox(&id) {
                    Ok(Some(entry)) if matches!(entry.state, OutboxState::Delivered { .. }) => {
                        self.delivered_response(&id)
                    }
                    Ok(Some(_)) => {
                        self.waiters.retain(|_, list| {
                            list.retain(|sender| !sender.is_closed());
                            !list.is_empty()
                        });
                        let waiting: usize = self.waiters.values().map(Vec::len).sum();
                        if waiting >= MAX_WAITERS {
                            ControlResponse::Error {
                                message: format!(
                                    "{MAX_WAITERS} consoles are already waiting; try again later"
                                ),
                            }
                        } else {
                            self.waiters.entry(id).or_default().push(reply);
                            return;
                        }
                    }
                    Ok(None) => ControlResponse::Error {
                        message: format!("no message {id} in the outbox"),
                    },
                    Err(error) => ControlResponse::Error {
                        message: error.to_string(),
                    },
                }
            }
            ControlRequest::OfficerAction {
                officer,
                action,
                message_id,
            } => self.record_officer_action(now, &officer, &action, message_id.as_deref()),
        };
        self.pending_replies.push((reply, response));
    }

    /// Records an action an officer took in a console outside the daemon (the web console's
    /// logins, logouts and sends) in the audit trail, under the officer's name.
    fn record_officer_action(
        &mut self,
        now: Timestamp,
        officer: &str,
        action: &str,
        message_id: Option<&str>,
    ) -> ControlResponse {
        let id = match message_id.map(str::parse::<MessageId>).transpose() {
            Ok(id) => id,
            Err(message) => return ControlResponse::Error { message },
        };
        let (peer, digest) = match &id {
            Some(id) => self.message_facts(id),
            None => (None, None),
        };
        let clean = |text: &str| -> String { text.chars().filter(|c| !c.is_control()).collect() };
        self.record(
            now,
            AuditFacts {
                kind: AuditKind::OfficerAction,
                message_id: id,
                peer,
                country: peer.map(|peer| self.country(&peer)),
                envelope_digest: digest,
                detail: format!("officer {}: {}", clean(officer), clean(action)),
            },
        );
        ControlResponse::ActionRecorded
    }

    /// Counts the deliveries and hand-offs in an inbound batch that the store already holds
    /// (testing only: it decodes the batch a second time).
    fn count_duplicates(&mut self, frame: &[u8]) {
        use quickfreeze_proto::frame::{Batch, Frame};
        let Ok(batch) = Batch::from_bytes(frame) else {
            return;
        };
        let store = self.core.store();
        for frame in &batch.frames {
            let seen = match frame {
                Frame::Deliver(envelope) => matches!(
                    store.get_inbox(&envelope.header.sender, &envelope.header.message_id),
                    Ok(Some(_))
                ),
                Frame::Handoff(envelope) => matches!(
                    store.get_relay(&envelope.header.sender, &envelope.header.message_id),
                    Ok(Some(_))
                ),
                _ => false,
            };
            if seen {
                self.duplicates_suppressed += 1;
            }
        }
    }

    fn inject_fault(
        &mut self,
        peers: &[String],
        drop_outbound: bool,
        drop_inbound: bool,
        delay_ms: u64,
    ) -> ControlResponse {
        if !self.fault_injection {
            return fault_injection_refused();
        }
        let mut parsed = Vec::with_capacity(peers.len());
        for text in peers {
            let peer = text
                .parse::<NodeId>()
                .map_err(|error| error.to_string())
                .and_then(|node| node.to_peer_id().map_err(|error| error.to_string()));
            match peer {
                Ok(peer) => parsed.push(peer),
                Err(message) => {
                    return ControlResponse::Error {
                        message: format!("peer `{text}`: {message}"),
                    }
                }
            }
        }
        let fault = LinkFault {
            drop_outbound,
            drop_inbound,
            delay_ms,
        };
        for peer in parsed {
            self.network.set_link_fault(peer, fault);
            if drop_outbound || drop_inbound {
                // A cut link takes its requests in flight with it.
                self.network.disconnect(peer);
            }
        }
        let faulty_peers = self
            .core
            .roster()
            .members
            .iter()
            .filter_map(|member| member.node_id.to_peer_id().ok())
            .filter(|peer| self.network.link_fault(peer) != LinkFault::default())
            .count();
        ControlResponse::FaultsSet { faulty_peers }
    }

    fn delivery_log_report(&mut self, drain: bool) -> ControlResponse {
        if !self.fault_injection {
            return fault_injection_refused();
        }
        let entries = self
            .delivery_log
            .iter()
            .map(|(message_id, unix_us)| crate::control::DeliveryLogEntry {
                message_id: message_id.to_string(),
                delivered_unix_us: *unix_us,
            })
            .collect();
        let response = ControlResponse::DeliveryLog {
            entries,
            overflowed: self.delivery_log_overflowed,
            duplicates_suppressed: self.duplicates_suppressed,
        };
        if drain {
            self.delivery_log.clear();
            self.delivery_log_overflowed = 0;
            self.duplicates_suppressed = 0;
        }
        response
    }

    fn metrics_report(&mut self, reset: bool) -> ControlResponse {
        let mut samples: Vec<u64> = self.latencies_us.iter().copied().collect();
        samples.sort_unstable();
        let percentile = |p: usize| -> u64 {
            if samples.is_empty() {
                0
            } else {
                samples[((samples.len() - 1) * p) / 100]
            }
        };
        let stats = self.core.store().stats();
        let mut metrics = self.metrics.clone();
        metrics.latency_p50_us = percentile(50);
        metrics.latency_p90_us = percentile(90);
        metrics.latency_p99_us = percentile(99);
        metrics.latency_max_us = samples.last().copied().unwrap_or(0);
        metrics.latency_samples = samples.len() as u64;
        metrics.store_flushes = stats.flushes;
        metrics.store_flush_micros = stats.flush_micros_total;
        if reset {
            self.metrics = Metrics::default();
            self.latencies_us.clear();
        }
        ControlResponse::Metrics { metrics }
    }

    /// The other node and the envelope digest of a message, from the outbox or the inbox.
    fn message_facts(
        &self,
        id: &MessageId,
    ) -> (Option<NodeId>, Option<quickfreeze_keys::Digest32>) {
        let store = self.core.store();
        if let Ok(Some(entry)) = store.get_outbox(id) {
            return (Some(entry.recipient), Some(entry.digest));
        }
        match store.find_message(id) {
            Ok(Some(crate::store::Found::Inbox(entry))) => (Some(entry.sender), Some(entry.digest)),
            _ => (None, None),
        }
    }

    fn country(&self, node: &NodeId) -> String {
        self.core
            .roster()
            .member(node)
            .map_or_else(|| "??".to_string(), |member| member.country.to_string())
    }

    fn receipt_view(&self, receipt: &Receipt) -> ReceiptView {
        ReceiptView {
            kind: match receipt.body.kind {
                ReceiptKind::Delivered => "delivered".into(),
                ReceiptKind::Custody => "custody".into(),
            },
            signer: receipt.body.signer.to_string(),
            signer_country: self.country(&receipt.body.signer),
            received_at: receipt.body.received_at.to_rfc3339(),
            envelope_digest: receipt.body.envelope_digest.to_string(),
            verified: receipt.verify(self.core.roster()).is_ok(),
        }
    }

    fn delivered_response(&self, message_id: &MessageId) -> ControlResponse {
        let mut stored = self.core.store().get_outbox(message_id);
        if let Ok(Some(entry)) = &mut stored {
            self.overlay_live_state(entry);
        }
        match stored {
            Ok(Some(entry)) => match (&entry.state, &entry.delivery_receipt) {
                (OutboxState::Delivered { .. }, Some(receipt)) => ControlResponse::Delivered {
                    message_id: message_id.to_string(),
                    receipt: self.receipt_view(receipt),
                    latency_ms: receipt.body.received_at.millis_since(entry.created_at),
                },
                (state, _) => ControlResponse::NotYetDelivered {
                    message_id: message_id.to_string(),
                    state: state.name().into(),
                },
            },
            Ok(None) => ControlResponse::Error {
                message: format!("no message {message_id} in the outbox"),
            },
            Err(error) => ControlResponse::Error {
                message: error.to_string(),
            },
        }
    }

    fn find_inbox_sender(&self, text: &str) -> Result<(NodeId, MessageId), String> {
        let id: MessageId = text.parse()?;
        let entries = self
            .core
            .store()
            .inbox_entries()
            .map_err(|error| error.to_string())?;
        entries
            .iter()
            .find(|entry| entry.message_id == id)
            .map(|entry| (entry.sender, id))
            .ok_or_else(|| format!("no message {id} in the inbox"))
    }

    fn inbox(&self, now: Timestamp, limit: usize) -> ControlResponse {
        let mut entries = match self.core.store().inbox_entries() {
            Ok(entries) => entries,
            Err(error) => {
                return ControlResponse::Error {
                    message: error.to_string(),
                }
            }
        };
        let overdue = self.tracker.by_message();
        // Overdue first, then newest first.
        entries.sort_by_key(|entry| {
            (
                !overdue.contains_key(&entry.message_id),
                std::cmp::Reverse(entry.received_at),
            )
        });
        let rows = entries
            .iter()
            .take(limit)
            .map(|entry| InboxRow {
                message_id: entry.message_id.to_string(),
                sender: entry.sender.to_string(),
                country: self.country(&entry.sender),
                kind: entry.payload.kind().to_string(),
                priority: entry.priority.to_string(),
                received_at: entry.received_at.to_rfc3339(),
                age_s: now.millis_since(entry.received_at) / 1000,
                acknowledged: entry.acknowledged_at.is_some(),
                summary: entry.payload.summary(),
                via_relay: entry.via_relay.map(|relay| relay.to_string()),
                overdue: overdue
                    .get(&entry.message_id)
                    .map(|clocks| clocks.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            })
            .collect();
        ControlResponse::Inbox { rows }
    }

    /// The store's copy of an unfinished message can lag the core's (a first transmission is not
    /// written); the console shows the live state and attempt count.
    fn overlay_live_state(&self, entry: &mut quickfreeze_proto::core::OutboxEntry) {
        if let Some(live) = self.core.unfinished_outbox(&entry.message_id) {
            entry.state = live.state.clone();
            entry.attempts = live.attempts;
        }
    }

    fn outbox(&self, now: Timestamp, limit: usize) -> ControlResponse {
        let mut entries = match self.core.store().outbox_entries() {
            Ok(mut entries) => {
                for entry in &mut entries {
                    self.overlay_live_state(entry);
                }
                entries
            }
            Err(error) => {
                return ControlResponse::Error {
                    message: error.to_string(),
                }
            }
        };
        let overdue = self.tracker.by_message();
        entries.sort_by_key(|entry| {
            (
                !overdue.contains_key(&entry.message_id),
                std::cmp::Reverse(entry.created_at),
            )
        });
        let rows = entries
            .iter()
            .take(limit)
            .map(|entry| OutboxRow {
                message_id: entry.message_id.to_string(),
                recipient: entry.recipient.to_string(),
                country: self.country(&entry.recipient),
                kind: entry.kind.to_string(),
                priority: entry.priority.to_string(),
                state: entry.state.name().into(),
                created_at: entry.created_at.to_rfc3339(),
                age_s: now.millis_since(entry.created_at) / 1000,
                attempts: entry.attempts,
                summary: entry.summary.clone(),
                last_error: entry.last_error.clone(),
                latest_status: entry
                    .status_history
                    .last()
                    .map(|record| record.update.status.to_string()),
                overdue: overdue
                    .get(&entry.message_id)
                    .map(|clocks| clocks.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            })
            .collect();
        ControlResponse::Outbox { rows }
    }

    fn show(&self, text: &str) -> ControlResponse {
        let id: MessageId = match text.parse() {
            Ok(id) => id,
            Err(message) => return ControlResponse::Error { message },
        };
        let store = self.core.store();
        if let Ok(Some(mut entry)) = store.get_outbox(&id) {
            self.overlay_live_state(&mut entry);
            let payload = Some(entry.payload.clone());
            let mut receipts = Vec::new();
            if let Some(receipt) = &entry.custody_receipt {
                receipts.push(self.receipt_view(receipt));
            }
            if let Some(receipt) = &entry.delivery_receipt {
                receipts.push(self.receipt_view(receipt));
            }
            return ControlResponse::Message {
                detail: Box::new(MessageDetail {
                    direction: "outbound".into(),
                    message_id: id.to_string(),
                    peer: entry.recipient.to_string(),
                    country: self.country(&entry.recipient),
                    priority: entry.priority.to_string(),
                    state: entry.state.name().into(),
                    payload,
                    receipts,
                    status_history: entry
                        .status_history
                        .iter()
                        .map(|record| StatusView {
                            received_at: record.received_at.to_rfc3339(),
                            status: record.update.status.clone(),
                            note: record.update.note.clone(),
                            officer: record.update.officer.clone(),
                        })
                        .collect(),
                    replies: Vec::new(),
                    last_error: entry.last_error.clone(),
                }),
            };
        }
        let entries = match store.inbox_entries() {
            Ok(entries) => entries,
            Err(error) => {
                return ControlResponse::Error {
                    message: error.to_string(),
                }
            }
        };
        match entries.into_iter().find(|entry| entry.message_id == id) {
            Some(entry) => ControlResponse::Message {
                detail: Box::new(MessageDetail {
                    direction: "inbound".into(),
                    message_id: id.to_string(),
                    peer: entry.sender.to_string(),
                    country: self.country(&entry.sender),
                    priority: entry.priority.to_string(),
                    state: if entry.acknowledged_at.is_some() {
                        "acknowledged"
                    } else {
                        "new"
                    }
                    .into(),
                    receipts: vec![self.receipt_view(&entry.receipt)],
                    payload: Some(entry.payload),
                    status_history: Vec::new(),
                    replies: entry.replies.iter().map(ToString::to_string).collect(),
                    last_error: None,
                }),
            },
            None => ControlResponse::Error {
                message: format!("no message {id} in the outbox or inbox"),
            },
        }
    }

    fn peers(&self) -> ControlResponse {
        let me = self.core.node_id();
        let backoff: BTreeMap<NodeId, (u32, Timestamp)> = self
            .core
            .peer_backoff()
            .into_iter()
            .map(|(peer, failures, at)| (peer, (failures, at)))
            .collect();
        let now = Timestamp::now();
        let rows = self
            .core
            .roster()
            .members
            .iter()
            .filter(|member| member.node_id != me)
            .map(|member| {
                let (failures, retry_at) = backoff
                    .get(&member.node_id)
                    .copied()
                    .unwrap_or((0, Timestamp(0)));
                PeerRow {
                    node_id: member.node_id.to_string(),
                    country: member.country.to_string(),
                    authority_name: member.authority_name.clone(),
                    role: member.role.to_string(),
                    connected: self.connected.contains(&member.node_id),
                    consecutive_failures: failures,
                    retry_at: (retry_at > now).then(|| retry_at.to_rfc3339()),
                }
            })
            .collect();
        ControlResponse::Peers { rows }
    }

    /// The figures for one Prometheus scrape.
    fn snapshot(&self, now: Timestamp) -> ControlResponse {
        let sizes = self.core.queue_sizes();
        let roster = self.core.roster();
        let overdue = self.tracker.counts();
        ControlResponse::MetricsSnapshot {
            snapshot: Box::new(crate::prometheus::Snapshot {
                connected_peers: self.connected.len() as u64,
                outbox_pending: [
                    sizes.outbox_pending[2] as u64,
                    sizes.outbox_pending[1] as u64,
                    sizes.outbox_pending[0] as u64,
                ],
                relay_held: sizes.relay_pending as u64,
                relay_held_bytes: sizes.relay_bytes,
                delivered_total: self.telemetry.delivered,
                expired_total: self.telemetry.expired,
                rejected_total: self.telemetry.rejected,
                received_total: self.telemetry.received,
                time_to_receipt: self.telemetry.time_to_receipt.clone(),
                time_to_acknowledge: self.telemetry.time_to_acknowledge.clone(),
                roster_serial: roster.serial,
                roster_expires_in_s: seconds_between(now, roster.expires_at),
                key_file_age_s: key_file_age_s(&self.data_dir),
                overdue: overdue.map(|count| count as u64),
            }),
        }
    }

    fn status(&self, now: Timestamp) -> ControlResponse {
        let roster = self.core.roster();
        let me = self.core.node_id();
        let member = roster.member(&me);
        let sizes = self.core.queue_sizes();
        let (inbox_total, inbox_unacknowledged) = match self.core.store().inbox_entries() {
            Ok(entries) => (
                entries.len(),
                entries
                    .iter()
                    .filter(|entry| entry.acknowledged_at.is_none())
                    .count(),
            ),
            Err(_) => (0, 0),
        };
        const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
        ControlResponse::Status {
            report: Box::new(StatusReport {
                node_id: me.to_string(),
                fingerprint: self.fingerprint.clone(),
                country: member.map_or_else(String::new, |member| member.country.to_string()),
                role: member
                    .map_or(Role::PointOfContact, |member| member.role)
                    .to_string(),
                network: roster.network.clone(),
                roster_serial: roster.serial,
                roster_expires_at: roster.expires_at.to_rfc3339(),
                roster_expires_soon: roster.expires_at.millis_since(now) < WEEK_MS,
                outbox_pending: [
                    sizes.outbox_pending[2],
                    sizes.outbox_pending[1],
                    sizes.outbox_pending[0],
                ],
                inbox_total,
                inbox_unacknowledged,
                relay_pending: sizes.relay_pending,
                relay_bytes: sizes.relay_bytes,
                connected_peers: self.connected.len(),
                listen_addresses: self.listen_addresses.clone(),
                store_flushes: self.core.store().stats().flushes,
                roster_expires_in_s: seconds_between(now, roster.expires_at),
                overdue: self.tracker.counts(),
                overdue_items: self
                    .tracker
                    .current()
                    .iter()
                    .take(100)
                    .map(|breach| crate::control::OverdueRow {
                        clock: breach.clock.to_string(),
                        meaning: breach.clock.describe().into(),
                        message_id: breach.message_id.to_string(),
                        peer: breach.peer.to_string(),
                        country: self.country(&breach.peer),
                        priority: breach.priority.to_string(),
                        due_at: breach.due_at.to_rfc3339(),
                        overdue_s: now.millis_since(breach.due_at) / 1000,
                    })
                    .collect(),
                key_file_age_s: key_file_age_s(&self.data_dir),
                metrics_address: self.metrics_address.map(|address| address.to_string()),
            }),
        }
    }
}

fn fault_injection_refused() -> ControlResponse {
    ControlResponse::Error {
        message: "fault injection is disabled on this node; it is for test networks only \
                  (`[testing] fault_injection = true` in node.toml)"
            .into(),
    }
}

fn bind_control_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let socket_error = |message: String| DaemonError::Socket {
        path: path.to_path_buf(),
        message,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(socket_error(
                "another quickfreeze node is already running with this data directory".into(),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|error| socket_error(format!("cannot remove the stale socket: {error}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|error| socket_error(error.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| socket_error(error.to_string()))?;
    Ok(listener)
}

async fn accept_console(
    listener: UnixListener,
    commands: mpsc::Sender<Command>,
    limit: Arc<Semaphore>,
    me: NodeId,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let commands = commands.clone();
                connections.spawn(async move {
                    if let Err(error) = serve_console(stream, commands, me).await {
                        info!(%error, "console connection ended");
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                let mut stream = stream;
                let reply = HelloReply {
                    version: CONTROL_PROTOCOL_VERSION,
                    node_id: me.to_string(),
                    error: Some("too many console connections; try again".into()),
                };
                if let Ok(mut line) = serde_json::to_vec(&reply) {
                    line.push(b'\n');
                    let _ = stream.write_all(&line).await;
                }
            }
        }
    }
}

async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_CONTROL_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > MAX_CONTROL_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "control line too long",
        ));
    }
    Ok(Some(line))
}

async fn write_json<T: serde::Serialize>(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await
}

async fn serve_console(
    stream: UnixStream,
    commands: mpsc::Sender<Command>,
    me: NodeId,
) -> std::io::Result<()> {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let Some(line) = read_line(&mut reader).await? else {
        return Ok(());
    };
    let hello: Result<Hello, _> = serde_json::from_slice(&line);
    let error = match &hello {
        Ok(hello) if hello.protocol == CONTROL_PROTOCOL_NAME && hello.version == CONTROL_PROTOCOL_VERSION => None,
        Ok(hello) => Some(format!(
            "console speaks {} version {}, this node speaks {CONTROL_PROTOCOL_NAME} version {CONTROL_PROTOCOL_VERSION}; use the quickfreeze binary of the same release",
            hello.protocol, hello.version
        )),
        Err(error) => Some(format!("expected a hello line: {error}")),
    };
    write_json(
        &mut write_half,
        &HelloReply {
            version: CONTROL_PROTOCOL_VERSION,
            node_id: me.to_string(),
            error: error.clone(),
        },
    )
    .await?;
    if error.is_some() {
        return Ok(());
    }
    while let Some(line) = read_line(&mut reader).await? {
        let response = match serde_json::from_slice::<ControlRequest>(&line) {
            Err(error) => ControlResponse::Error {
                message: format!("malformed request: {error}"),
            },
            Ok(request) => {
                let wait = match &request {
                    ControlRequest::WaitDelivered {
                        message_id,
                        timeout_ms,
                    } => Some((message_id.clone(), *timeout_ms)),
                    _ => None,
                };
                let (reply, answer) = oneshot::channel();
                if commands.send(Command { request, reply }).await.is_err() {
                    return Ok(());
                }
                match wait {
                    None => answer.await.unwrap_or(ControlResponse::Error {
                        message: "the node is shutting down".into(),
                    }),
                    Some((message_id, timeout_ms)) => {
                        match tokio::time::timeout(Duration::from_millis(timeout_ms), answer).await
                        {
                            Ok(answer) => answer.unwrap_or(ControlResponse::Error {
                                message: "the node is shutting down".into(),
                            }),
                            Err(_) => ControlResponse::NotYetDelivered {
                                message_id,
                                state: "not delivered within the wait".into(),
                            },
                        }
                    }
                }
            }
        };
        write_json(&mut write_half, &response).await?;
    }
    Ok(())
}

/// A status as a short label for the audit log: its kind and, for refusals, the ground. Never
/// the explanation text.
pub(crate) fn status_label(status: &quickfreeze_proto::payload::Status) -> String {
    use quickfreeze_proto::payload::Status;
    match status {
        Status::AcknowledgedByOfficer => "acknowledged".into(),
        Status::Preserved { .. } => "preserved".into(),
        Status::PartiallyExecuted { .. } => "partially-executed".into(),
        Status::Refused { ground, .. } => format!("refused ({ground})"),
        Status::MoreInformationNeeded { .. } => "more-information-needed".into(),
        Status::ForwardedToCentralAuthority { .. } => "forwarded".into(),
        Status::DataNotAvailable { .. } => "data-not-available".into(),
    }
}

/// `to - from` in whole seconds, negative when `to` is earlier.
fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    let seconds = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    if to >= from {
        seconds(to.millis_since(from))
    } else {
        -seconds(from.millis_since(to))
    }
}

/// Seconds since the node's key file was last modified (written by `init` or a rotation).
pub(crate) fn key_file_age_s(data_dir: &Path) -> Option<u64> {
    let modified = std::fs::metadata(data_dir.join(files::KEY))
        .and_then(|metadata| metadata.modified())
        .ok()?;
    Some(
        std::time::SystemTime::now()
            .duration_since(modified)
            .map_or(0, |age| age.as_secs()),
    )
}
