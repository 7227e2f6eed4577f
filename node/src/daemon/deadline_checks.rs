//! The glue between the loop and the deadline clocks (`crate::deadlines`): on-the-spot checks,
//! the periodic scan off the loop, and raising new breaches.

use std::collections::BTreeMap;

use quickfreeze_keys::Timestamp;
use tokio::task::JoinHandle;
use tracing::error;

use super::Daemon;
use crate::audit::{AuditFacts, AuditKind};

/// The result of a periodic deadline check run off the loop.
pub(super) struct DeadlineScan {
    /// `Daemon::deadline_generation` when it started.
    generation: u64,
    now: Timestamp,
    found: Result<Vec<(crate::deadlines::Breach, Option<quickfreeze_keys::Digest32>)>, String>,
}

impl Daemon {
    /// Re-evaluates the deadline clocks; breaches not raised before get an audit record now
    /// and are shown after this turn's commit.
    pub(super) fn check_deadlines(&mut self, now: Timestamp) {
        // Anything a periodic scan already running has read is older than this.
        self.deadline_generation += 1;
        let store = self.core.store();
        // Only the open items (unfinished outbox, unanswered requests): the cost follows the
        // work still to do, not the history, so acknowledge and reply can run it on the loop.
        let (outbox, inbox) = match store.indexes().deadline_items() {
            Ok(items) => items,
            Err(error) => {
                error!(%error, "deadline check could not read the store");
                return;
            }
        };
        let found = crate::deadlines::breaches(now, &outbox, &inbox, &self.deadline_config);
        let found = crate::deadlines::with_digests(found, &outbox, &inbox);
        self.apply_deadlines(now, found);
    }

    /// Starts the periodic deadline check on a blocking thread (it reads only the open items,
    /// but their number is set by the officers' backlog, so it stays off the loop).
    pub(super) fn start_deadline_scan(&self, now: Timestamp) -> JoinHandle<DeadlineScan> {
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
    pub(super) fn deadline_scan_finished(
        &mut self,
        done: Result<DeadlineScan, tokio::task::JoinError>,
    ) {
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
}
