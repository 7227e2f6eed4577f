//! Group commit and release: what a turn produced is set aside, covered by a group commit that
//! began after the turn's writes, and let go only when that commit has returned `Ok`
//! (invariant 1, durable before acknowledged).

use libp2p::request_response::ResponseChannel;
use quickfreeze_keys::Timestamp;
use quickfreeze_proto::core::{Event, Transmit};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::warn;

use super::pipeline::{CommitFailed, CommitTicket, GroupCommit, Staged};
use super::{Daemon, DaemonError};
use crate::control::ControlResponse;
use crate::store::{FlushDone, FlushJob, SledStore};

/// What a turn produced that acknowledges something, held until a commit covers it.
#[derive(Default)]
pub(super) struct Outputs {
    responses: Vec<(ResponseChannel<Vec<u8>>, Vec<u8>)>,
    replies: Vec<(oneshot::Sender<ControlResponse>, ControlResponse)>,
    transmits: Vec<Transmit>,
    events: Vec<Event>,
    overdue: Vec<crate::deadlines::Breach>,
}

impl Staged for Outputs {
    fn absorb(&mut self, mut other: Outputs) {
        self.responses.append(&mut other.responses);
        self.replies.append(&mut other.replies);
        self.transmits.append(&mut other.transmits);
        self.events.append(&mut other.events);
        self.overdue.append(&mut other.overdue);
    }

    fn is_empty(&self) -> bool {
        self.responses.is_empty()
            && self.replies.is_empty()
            && self.transmits.is_empty()
            && self.events.is_empty()
            && self.overdue.is_empty()
    }
}

/// A group commit whose IO runs on a blocking thread.
pub(super) struct RunningCommit {
    /// Hand back to [`CommitPipeline::finished`](super::pipeline::CommitPipeline::finished) with the outcome.
    pub(super) ticket: CommitTicket,
    /// The IO (`FlushJob::run`).
    pub(super) io: JoinHandle<FlushDone>,
}

/// The sled store's group commit, as the pipeline sees it.
impl GroupCommit for SledStore {
    type Job = FlushJob;
    type Done = FlushDone;

    fn begin_commit(&mut self) -> Result<Option<FlushJob>, String> {
        self.begin_flush().map_err(|error| error.to_string())
    }

    fn end_commit(&mut self, done: FlushDone) -> Result<(), String> {
        self.end_flush(done).map_err(|error| error.to_string())
    }
}

impl Daemon {
    /// Ends a loop turn. The order is the point:
    ///
    /// 1. take the core's events and append their audit records (on-command records such as
    ///    "acknowledged" or "opened" were appended while the command ran);
    /// 2. set aside everything of this turn that acknowledges anything: responses to peers
    ///    (receipts), console replies, new transmissions, and the events and alerts to show.
    ///
    /// What is set aside leaves only after a group commit that *began after* this turn's writes
    /// has returned `Ok` (see [`Daemon::start_flush`], [`Daemon::flush_finished`] and
    /// [`CommitPipeline`](super::pipeline::CommitPipeline)): that is
    /// invariant 1, durable before acknowledged. The commit runs on a blocking thread, so the loop
    /// goes on taking input while the disk syncs; the next commit covers everything written
    /// meanwhile, which is how commits grow under load.
    ///
    /// Events the core raises while transmissions are handed to the network (a send that fails at
    /// once) stay queued in the core and are taken by the next turn, under the next commit.
    pub(super) fn end_turn(&mut self) -> Result<(), DaemonError> {
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
        let mut outputs = Outputs {
            responses: std::mem::take(&mut self.pending_responses),
            replies: std::mem::take(&mut self.pending_replies),
            transmits: Vec::new(),
            events,
            overdue: std::mem::take(&mut self.pending_overdue),
        };
        while let Some(transmit) = self.core.poll_transmit() {
            outputs.transmits.push(transmit);
        }
        self.commit.stage(outputs);
        Ok(())
    }

    /// Begins the group commit for what waits, unless one is running already (what waits then
    /// goes with the next). With nothing written since the last commit began, what waits is
    /// already covered by a finished commit and leaves at once. Returns the running commit.
    /// The bookkeeping is [`CommitPipeline`](super::pipeline::CommitPipeline)'s; this adds the audit block and the thread.
    pub(super) fn start_flush(&mut self) -> Result<Option<RunningCommit>, DaemonError> {
        // The audit records of every turn this commit covers go in first, as one block.
        self.audit
            .write_pending(self.core.store_mut())
            .map_err(|error| {
                DaemonError::Store(format!("audit log write failed, stopping: {error}"))
            })?;
        // The signed head of the chain this commit makes durable goes with it (see
        // `crate::audit_head`).
        let head = self.audit.head();
        let signed = if self.last_signed != Some(head) {
            let signed = crate::audit_head::SignedHead::sign(
                self.core.identity(),
                head.0,
                head.1,
                Timestamp::now(),
            );
            self.core
                .store_mut()
                .put_audit_head(&signed.to_bytes())
                .map_err(|error| {
                    DaemonError::Store(format!("audit head write failed, stopping: {error}"))
                })?;
            self.last_signed = Some(head);
            Some(signed)
        } else {
            None
        };
        let begun = self
            .commit
            .begin(self.core.store_mut())
            .map_err(|CommitFailed(error)| {
                DaemonError::Store(format!("group commit failed, stopping: {error}"))
            })?;
        self.release(begun.release);
        if begun.commit.is_some() {
            if let Some(signed) = signed {
                self.head_in_commit = Some(signed);
            }
        }
        Ok(begun.commit.map(|(ticket, job)| RunningCommit {
            ticket,
            io: tokio::task::spawn_blocking(move || job.run()),
        }))
    }

    /// The running commit returned: on success, release what it covers. On failure nothing it
    /// covered may leave (that would acknowledge what is not durable) and the node stops.
    pub(super) fn flush_finished(
        &mut self,
        ticket: CommitTicket,
        done: Result<FlushDone, tokio::task::JoinError>,
    ) -> Result<(), DaemonError> {
        let done = done.unwrap_or_else(|error| {
            FlushDone::lost(format!("the group commit thread failed: {error}"))
        });
        let covered = self
            .commit
            .finished(self.core.store_mut(), ticket, done)
            .map_err(|CommitFailed(error)| {
                DaemonError::Store(format!("group commit failed, stopping: {error}"))
            })?;
        if let Some(signed) = self.head_in_commit.take() {
            // The head is durable in the store now; its copy outside sled's files lets the next
            // start notice a store recovered to an earlier state.
            let path = self.data_dir.join(crate::audit_head::HEAD_FILE);
            if let Err(error) = signed.write_file(&path) {
                warn!(path = %path.display(), %error, "the audit head file could not be written");
            }
        }
        self.release(covered);
        Ok(())
    }

    /// Whether anything waits for a commit.
    pub(super) fn has_waiting(&self) -> bool {
        self.commit.has_waiting() || self.audit.has_pending() || self.core.store().is_dirty()
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
            let sent = self
                .peer_in_use
                .get(&transmit.to)
                .copied()
                .or_else(|| super::roster::peer_of(self.core.roster(), &transmit.to))
                .ok_or_else(|| format!("{} has no usable PeerId", transmit.to))
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
}
