//! The loop itself: one task that waits for the next input (shutdown, end of a group commit,
//! console command, network event, timers), drains what else is ready, ends the turn and starts
//! the next group commit; plus the network inputs and the links it keeps up on its own.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use quickfreeze_keys::{NodeId, Timestamp};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use super::commit::RunningCommit;
use super::deadline_checks::DeadlineScan;
use super::socket::accept_console;
use super::{Command, Daemon, DaemonError};
use crate::control::{ControlRequest, ControlResponse};
use crate::network::NetworkEvent;

/// How often the links to this node's own relays are checked (and re-dialled if down).
const RELAY_LINK_CHECK: Duration = Duration::from_secs(10);

impl Daemon {
    pub(super) async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let me = self.core.node_id();
        info!(node = %me, data_dir = %self.data_dir.display(), roster_serial = self.core.roster().serial, "node started");
        if let Some(summary) = self.startup_alert.take() {
            self.alert("unacknowledged-summary", None, None, None, &summary);
        }
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
        let mut flush: Option<RunningCommit> = None;
        // The running periodic deadline check, if any.
        let mut deadline_scan: Option<JoinHandle<DeadlineScan>> = None;
        let probing = self.probe.enabled();
        // Free space is measured at least once a second, so that the node resumes by itself
        // when space returns even while nothing arrives.
        let mut disk_tick = tokio::time::interval(Duration::from_secs(1));
        disk_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the running group commit must have returned (the watchdog).
        let mut flush_deadline = tokio::time::Instant::now();
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
                done = async { (&mut flush.as_mut().expect("guarded by is_some").io).await }, if flush.is_some() => {
                    let ticket = flush.take().expect("guarded by is_some").ticket;
                    if let Err(error) = self.flush_finished(ticket, done) {
                        break Err(error);
                    }
                }
                () = tokio::time::sleep_until(flush_deadline), if flush.is_some() => {
                    break Err(self.commit_stalled("a group commit"));
                }
                Some(command) = command_rx.recv() => self.on_command(command),
                event = self.network.next_event() => self.on_network(event),
                _ = relay_links.tick() => {
                    self.keep_relay_links();
                    self.maintain_keys();
                }
                _ = disk_tick.tick() => self.check_disk(std::time::Instant::now()),
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
            // Backups asked for in this turn see everything it did, audit records included.
            self.start_waiting_backups();
            if flush.is_none() && self.has_waiting() {
                match self.start_flush() {
                    Ok(started) => {
                        flush_deadline = tokio::time::Instant::now() + self.commit_timeout;
                        flush = started;
                    }
                    Err(error) => break Err(error),
                }
            }
        };
        let result = match result {
            // A clean stop still answers what this process made durable or can make durable.
            Ok(()) => self.final_flush(flush.take()).await,
            Err(error) => Err(error),
        };
        match &result {
            // A stalled commit has alerted already.
            Ok(()) | Err(DaemonError::Stalled(_)) => {}
            Err(error) => {
                let detail = format!("the node stopped on an error: {error}");
                self.alert("node-stopped", None, None, None, &detail);
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if !matches!(result, Err(DaemonError::Stalled(_))) {
            // On a stalled disk even this unlink could block; the next start replaces the socket.
            let _ = std::fs::remove_file(&self.socket_path);
        }
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
        if matches!(result, Err(DaemonError::Stalled(_))) {
            // The store's drop would flush and block on the same disk: leave it to the exit of
            // the process (everything acknowledged was flushed by an earlier commit).
            std::mem::forget(self);
        }
        result
    }

    /// On a clean stop: waits for the running commit, then commits and releases what is left,
    /// each within the commit bound (a stalled disk must not keep the node from stopping).
    async fn final_flush(&mut self, running: Option<RunningCommit>) -> Result<(), DaemonError> {
        if let Some(running) = running {
            let done = tokio::time::timeout(self.commit_timeout, running.io)
                .await
                .map_err(|_| self.commit_stalled("the group commit running at shutdown"))?;
            self.flush_finished(running.ticket, done)?;
        }
        self.end_turn()?;
        if let Some(running) = self.start_flush()? {
            let done = tokio::time::timeout(self.commit_timeout, running.io)
                .await
                .map_err(|_| self.commit_stalled("the last group commit at shutdown"))?;
            self.flush_finished(running.ticket, done)?;
        }
        Ok(())
    }

    /// A commit did not return within the bound: log, alert, and give the error that stops
    /// the node. Nothing that commit covered was acknowledged, so nothing acknowledged is lost.
    fn commit_stalled(&mut self, what: &str) -> DaemonError {
        let free = self.disk.space().map_or_else(
            || "unknown".to_string(),
            |space| format!("{} MiB", space.free / (1024 * 1024)),
        );
        let message = format!(
            "{what} did not finish within {} s (disk full or failing? {free} free on {} at the last check); stopping the node. Nothing it covered was acknowledged; free space or fix the disk, then start the node again",
            self.commit_timeout.as_secs(),
            self.data_dir.display()
        );
        error!("{message}");
        self.alert("commit-stalled", None, None, None, &message);
        DaemonError::Stalled(message)
    }

    /// Measures free space (at most every 250 ms); logs, counts and alerts when it crosses the
    /// low-water mark either way.
    pub(super) fn check_disk(&mut self, now: std::time::Instant) {
        let crossing = self.disk.refresh(now);
        if self.disk.failures == 1 {
            warn!(data_dir = %self.data_dir.display(), "cannot measure free space on the data directory");
        }
        match crossing {
            Some(super::disk::Crossing::BecameLow) => {
                let message = self.disk.refusal().unwrap_or_default();
                error!("DISK LOW: {message}; refusing new submissions and incoming deliveries (senders keep retrying) until space returns");
                self.alert("disk-low", None, None, None, &message);
            }
            Some(super::disk::Crossing::Recovered) => {
                let free = self
                    .disk
                    .space()
                    .map_or(0, |space| space.free / (1024 * 1024));
                info!(free_mib = free, "disk space is back above the low-water mark; accepting submissions and deliveries again");
                self.alert(
                    "disk-ok",
                    None,
                    None,
                    None,
                    &format!(
                        "{free} MiB free on {}; accepting again",
                        self.data_dir.display()
                    ),
                );
            }
            None => {}
        }
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
            let Some(peer) = super::roster::peer_of(self.core.roster(), &relay) else {
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
            let Some(peer) = super::roster::peer_of(self.core.roster(), &node) else {
                continue;
            };
            match self.network.dial(peer) {
                Ok(()) => self.metrics.probe_dials += 1,
                Err(error) => debug!(%node, %error, "reconnect probe: cannot dial now"),
            }
        }
    }

    fn on_network(&mut self, event: NetworkEvent) {
        let now = Timestamp::now();
        match event {
            NetworkEvent::Listening { address } => {
                info!(%address, "listening");
                self.listen_addresses.push(address.to_string());
            }
            NetworkEvent::Connected { peer } => {
                if let Some(node) = super::roster::node_of(self.core.roster(), &peer, now) {
                    self.connected.insert(node);
                    self.peer_in_use.insert(node, peer);
                    self.core.handle_connected(now, node);
                }
            }
            NetworkEvent::Disconnected { peer } => {
                // Also after a grace ended, when the old PeerId no longer maps to the member.
                self.peer_in_use.retain(|_, in_use| *in_use != peer);
                if let Some(node) = super::roster::node_of(self.core.roster(), &peer, now) {
                    self.connected.remove(&node);
                    self.core.handle_disconnected(node);
                }
            }
            NetworkEvent::InboundRequest {
                peer,
                frame,
                channel,
            } => {
                let Some(node) = super::roster::node_of(self.core.roster(), &peer, now) else {
                    warn!(%peer, "request from a peer outside the roster dropped");
                    return;
                };
                if self.fault_injection {
                    self.count_duplicates(&frame);
                }
                self.check_disk(std::time::Instant::now());
                if let Some(reason) = self.disk.refusal() {
                    // Retryable: the sender keeps the message and tries again; nothing is
                    // stored, so no receipt leaves.
                    self.metrics_disk_refusals += 1;
                    let response =
                        super::disk::refuse_batch(self.core.roster().serial, &frame, &reason);
                    self.pending_responses.push((channel, response));
                    return;
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
}
