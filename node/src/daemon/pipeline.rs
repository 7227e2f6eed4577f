//! The commit pipeline: the bookkeeping that keeps invariant 1 (durable before acknowledged) in
//! the loop, apart from sockets, libp2p and sled so that a unit test can drive it by hand.
//!
//! A turn of the loop writes to the store and produces outputs that acknowledge those writes
//! (console answers, responses carrying receipts, transmissions, events). The loop hands them to
//! [`CommitPipeline::stage`]. [`CommitPipeline::begin`] starts a group commit of every write made
//! so far and moves what was staged under it; [`CommitPipeline::finished`] takes the commit's
//! outcome and gives back what that commit covers, and only on success. What is staged while a
//! commit runs waits for the *next* commit: the running one began before those writes. When
//! nothing was written since the last commit began, what waits depends only on writes that a
//! returned commit covers, and leaves at once. After any failure nothing leaves, ever: the
//! daemon stops.
//!
//! The store side is the [`GroupCommit`] trait (implemented by the sled store in
//! `daemon::commit`, and by a fake in the tests below whose commits the test completes).

/// Outputs that wait for a commit: gathered across turns, released together.
pub(super) trait Staged: Default {
    /// Appends `other` after what is already held.
    fn absorb(&mut self, other: Self);
    /// Whether nothing is held.
    fn is_empty(&self) -> bool;
}

/// A store whose writes become durable through group commits begun and ended one at a time.
pub(super) trait GroupCommit {
    /// The IO of one commit (run by the caller, possibly on another thread).
    type Job;
    /// The outcome of a job.
    type Done;
    /// Begins a commit of every write made so far; `Ok(None)` when nothing was written since
    /// the last commit began (no IO needed).
    fn begin_commit(&mut self) -> Result<Option<Self::Job>, String>;
    /// Records a job's outcome: `Ok` means every write made before it began is durable.
    fn end_commit(&mut self, done: Self::Done) -> Result<(), String>;
}

/// Names the running commit; handed back to [`CommitPipeline::finished`] with its outcome.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a begun commit must be run and handed back to `finished`"]
pub(super) struct CommitTicket(u64);

/// What [`CommitPipeline::begin`] did.
pub(super) struct Begun<J, T> {
    /// What may leave now: staged outputs already covered by a returned commit (empty unless
    /// nothing was written since the last commit began).
    pub(super) release: T,
    /// The commit that began, to run and then hand to [`CommitPipeline::finished`].
    pub(super) commit: Option<(CommitTicket, J)>,
}

/// A group commit failed (or was misused): nothing it or a later one covers may leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommitFailed(pub(super) String);

/// Staged outputs, the running commit and what it covers. See the module comment.
pub(super) struct CommitPipeline<T> {
    /// Staged since the running commit (if any) began.
    waiting: T,
    /// The running commit's ticket number and what it covers.
    running: Option<(u64, T)>,
    next_ticket: u64,
    /// Why a commit failed; from then on nothing is released.
    failed: Option<String>,
}

impl<T: Staged> Default for CommitPipeline<T> {
    fn default() -> Self {
        CommitPipeline {
            waiting: T::default(),
            running: None,
            next_ticket: 0,
            failed: None,
        }
    }
}

impl<T: Staged> CommitPipeline<T> {
    /// Sets aside what a turn produced. Call after the turn's writes: a commit begun later
    /// covers them.
    pub(super) fn stage(&mut self, outputs: T) {
        self.waiting.absorb(outputs);
    }

    /// Whether staged outputs wait for a commit to begin.
    pub(super) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether a commit is running (the loop knows from its own handle; the tests ask).
    #[cfg(test)]
    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Begins a commit of every write made so far, covering what is staged. With a commit
    /// running, does nothing (what waits goes with the next one). With nothing written since the
    /// last commit began, begins none and releases what waits (that commit has returned `Ok`).
    pub(super) fn begin<S: GroupCommit>(
        &mut self,
        store: &mut S,
    ) -> Result<Begun<S::Job, T>, CommitFailed> {
        if let Some(reason) = &self.failed {
            return Err(CommitFailed(reason.clone()));
        }
        if self.running.is_some() {
            return Ok(Begun {
                release: T::default(),
                commit: None,
            });
        }
        match store.begin_commit() {
            Err(reason) => Err(self.fail(reason)),
            Ok(None) => Ok(Begun {
                release: std::mem::take(&mut self.waiting),
                commit: None,
            }),
            Ok(Some(job)) => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.running = Some((ticket, std::mem::take(&mut self.waiting)));
                Ok(Begun {
                    release: T::default(),
                    commit: Some((CommitTicket(ticket), job)),
                })
            }
        }
    }

    /// The running commit returned `done`: on success, gives back what it covers (and nothing
    /// staged since it began). On failure releases nothing, now or later.
    pub(super) fn finished<S: GroupCommit>(
        &mut self,
        store: &mut S,
        ticket: CommitTicket,
        done: S::Done,
    ) -> Result<T, CommitFailed> {
        let ended = store.end_commit(done);
        if let Some(reason) = &self.failed {
            return Err(CommitFailed(reason.clone()));
        }
        let covered = match self.running.take() {
            Some((running, covered)) if running == ticket.0 => covered,
            other => {
                self.running = other;
                return Err(self.fail(format!(
                    "commit {} ended, but the running one is {:?}; this is a bug in the daemon",
                    ticket.0,
                    self.running.as_ref().map(|(running, _)| *running)
                )));
            }
        };
        match ended {
            Ok(()) => Ok(covered),
            Err(reason) => Err(self.fail(reason)),
        }
    }

    /// Records a failure and drops everything held: it must never leave.
    fn fail(&mut self, reason: String) -> CommitFailed {
        self.failed = Some(reason.clone());
        self.waiting = T::default();
        self.running = None;
        CommitFailed(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output acknowledging write number `write` of the fake store (0: acknowledges only
    /// what earlier writes hold, e.g. an answer read from the store).
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Ack {
        name: String,
        write: u64,
    }

    impl Staged for Vec<Ack> {
        fn absorb(&mut self, mut other: Self) {
            self.append(&mut other);
        }
        fn is_empty(&self) -> bool {
            Vec::is_empty(self)
        }
    }

    /// A store whose commits the test completes by hand: writes are numbered from 1; a commit
    /// covers the writes made before it began and makes them durable when it ends `Ok`.
    #[derive(Default)]
    struct FakeStore {
        writes: u64,
        dirty: bool,
        durable: u64,
        fail_begin: Option<String>,
    }

    /// A commit's IO: the writes it covers.
    struct Job {
        upto: u64,
    }

    impl GroupCommit for FakeStore {
        type Job = Job;
        type Done = Result<u64, String>;
        fn begin_commit(&mut self) -> Result<Option<Job>, String> {
            if let Some(reason) = &self.fail_begin {
                return Err(reason.clone());
            }
            if !self.dirty {
                return Ok(None);
            }
            self.dirty = false;
            Ok(Some(Job { upto: self.writes }))
        }
        fn end_commit(&mut self, done: Result<u64, String>) -> Result<(), String> {
            let upto = done?;
            self.durable = self.durable.max(upto);
            Ok(())
        }
    }

    /// The loop's side: a store, the pipeline, the running commit and what left, checked for
    /// durability at the moment it leaves.
    #[derive(Default)]
    struct Harness {
        store: FakeStore,
        pipeline: CommitPipeline<Vec<Ack>>,
        running: Option<(CommitTicket, Job)>,
        released: Vec<String>,
        violations: Vec<String>,
    }

    impl Harness {
        /// One turn: optionally a write, then its output staged.
        fn turn(&mut self, name: &str, writes: bool) {
            let write = if writes {
                self.store.writes += 1;
                self.store.dirty = true;
                self.store.writes
            } else {
                self.store.writes
            };
            self.pipeline.stage(vec![Ack {
                name: name.into(),
                write,
            }]);
        }

        fn release(&mut self, outputs: Vec<Ack>) {
            for ack in outputs {
                if ack.write > self.store.durable {
                    self.violations.push(format!(
                        "{} released with write {} while only writes up to {} are durable",
                        ack.name, ack.write, self.store.durable
                    ));
                }
                self.released.push(ack.name);
            }
        }

        /// Begins a commit as the loop does (at the end of a turn, when none runs).
        fn begin(&mut self) -> Result<(), CommitFailed> {
            let begun = self.pipeline.begin(&mut self.store)?;
            self.release(begun.release);
            if let Some(commit) = begun.commit {
                assert!(self.running.is_none(), "two commits running at once");
                self.running = Some(commit);
            }
            Ok(())
        }

        /// The running commit returns `ok` or fails.
        fn finish(&mut self, ok: bool) -> Result<(), CommitFailed> {
            let (ticket, job) = self.running.take().expect("a commit is running");
            let done = if ok {
                Ok(job.upto)
            } else {
                Err("disk on fire".to_string())
            };
            let covered = self.pipeline.finished(&mut self.store, ticket, done)?;
            self.release(covered);
            Ok(())
        }

        fn assert_no_violation(&self) {
            assert!(
                self.violations.is_empty(),
                "released before durable: {:#?}",
                self.violations
            );
        }
    }

    #[test]
    fn an_output_leaves_only_when_its_commit_has_returned() {
        let mut h = Harness::default();
        h.turn("accepted", true);
        h.begin().expect("begin");
        assert!(h.pipeline.is_running());
        assert!(h.released.is_empty(), "left before its commit returned");
        // More turns that find nothing new still do not release it.
        h.begin().expect("begin while running");
        assert!(h.released.is_empty(), "left before its commit returned");
        h.finish(true).expect("finish");
        assert_eq!(h.released, ["accepted"]);
        h.assert_no_violation();
    }

    #[test]
    fn input_during_a_commit_leaves_after_the_next_commit_not_the_running_one() {
        let mut h = Harness::default();
        h.turn("receipt-1", true);
        h.begin().expect("begin 1");
        // Input arrives and is handled while commit 1 syncs.
        h.turn("receipt-2", true);
        h.begin().expect("begin while 1 runs");
        h.finish(true).expect("finish 1");
        assert_eq!(
            h.released,
            ["receipt-1"],
            "commit 1 covers only what came before it"
        );
        assert!(h.pipeline.has_waiting());
        h.begin().expect("begin 2");
        assert_eq!(
            h.released,
            ["receipt-1"],
            "receipt-2 left before commit 2 returned"
        );
        h.finish(true).expect("finish 2");
        assert_eq!(h.released, ["receipt-1", "receipt-2"]);
        h.assert_no_violation();
    }

    #[test]
    fn a_turn_without_writes_during_a_commit_waits_for_it_then_leaves() {
        let mut h = Harness::default();
        h.turn("accepted", true);
        h.begin().expect("begin");
        // A console answer read from the store: it reports the write commit 1 covers.
        h.turn("show", false);
        h.begin().expect("begin while running");
        assert!(
            h.released.is_empty(),
            "an answer left before its commit returned"
        );
        h.finish(true).expect("finish");
        assert_eq!(h.released, ["accepted"]);
        h.begin().expect("nothing new to commit");
        assert_eq!(h.released, ["accepted", "show"]);
        assert!(
            !h.pipeline.is_running(),
            "no IO needed for a turn without writes"
        );
        h.assert_no_violation();
    }

    #[test]
    fn a_failed_commit_releases_nothing_now_or_later() {
        let mut h = Harness::default();
        h.turn("accepted", true);
        h.begin().expect("begin");
        h.turn("later", true);
        let failed = h.finish(false).expect_err("the commit failed");
        assert_eq!(failed, CommitFailed("disk on fire".into()));
        assert!(h.released.is_empty(), "released after a failed commit");
        assert!(h.begin().is_err(), "a new commit began after a failure");
        h.turn("even-later", false);
        assert!(h.begin().is_err(), "a new commit began after a failure");
        assert!(h.released.is_empty(), "released after a failed commit");
    }

    #[test]
    fn a_commit_that_cannot_begin_releases_nothing() {
        let mut h = Harness::default();
        h.turn("accepted", true);
        h.store.fail_begin = Some("earlier flush failed".into());
        assert_eq!(
            h.begin().expect_err("cannot begin"),
            CommitFailed("earlier flush failed".into())
        );
        h.store.fail_begin = None;
        assert!(h.begin().is_err(), "the pipeline forgot the failure");
        assert!(h.released.is_empty());
    }

    #[test]
    fn a_ticket_that_is_not_the_running_commit_is_refused() {
        let mut store = FakeStore::default();
        let mut pipeline = CommitPipeline::<Vec<Ack>>::default();
        store.writes = 1;
        store.dirty = true;
        pipeline.stage(vec![Ack {
            name: "accepted".into(),
            write: 1,
        }]);
        let begun = pipeline.begin(&mut store).expect("begin");
        let (ticket, job) = begun.commit.expect("a commit began");
        let wrong = CommitTicket(ticket.0 + 1);
        assert!(pipeline.finished(&mut store, wrong, Ok(job.upto)).is_err());
        assert!(pipeline.finished(&mut store, ticket, Ok(job.upto)).is_err());
    }

    /// Random interleavings of turns (with and without writes), commit starts and commit ends:
    /// nothing leaves before durable, everything leaves once, in the order it was staged.
    #[test]
    fn random_interleavings_release_everything_once_in_order_and_only_when_durable() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _round in 0..50 {
            let mut h = Harness::default();
            let mut staged = Vec::new();
            for step in 0..400 {
                match next() % 4 {
                    0 | 1 => {
                        let name = format!("out-{step}");
                        h.turn(&name, next() % 3 != 0);
                        staged.push(name);
                    }
                    2 => {
                        if h.running.is_none() {
                            h.begin().expect("begin");
                        }
                    }
                    _ => {
                        if h.running.is_some() {
                            h.finish(true).expect("finish");
                        }
                    }
                }
                h.assert_no_violation();
            }
            // Drain as the loop does on a clean stop.
            if h.running.is_some() {
                h.finish(true).expect("finish");
            }
            h.begin().expect("begin");
            if h.running.is_some() {
                h.finish(true).expect("finish");
            }
            h.assert_no_violation();
            assert_eq!(h.released, staged, "lost, duplicated or reordered outputs");
        }
    }
}
