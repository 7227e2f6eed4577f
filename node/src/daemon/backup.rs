//! `quickfreeze backup` on a running node: the snapshot is taken on the loop (the store's only
//! writer) at the end of a turn, after the turn's events have become audit records and those
//! records are written, i.e. at the boundary the next group commit covers: store and audit
//! trail are copied at one instant (a message in the inbox without its "received" record, or
//! the reverse, cannot be in a backup); the file is written on a blocking thread into a staging file in
//! the data directory (the only place a hardened service may write), which the CLI verifies,
//! copies to where the operator asked and removes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use quickfreeze_keys::Timestamp;
use tokio::sync::oneshot;

use super::Daemon;
use crate::backup::{Snapshot, STAGING_PREFIX};
use crate::control::ControlResponse;

/// Staging files older than this are left-overs of a `backup` command that was killed; the next
/// backup removes them.
const STALE_STAGING: Duration = Duration::from_secs(3600);

static BACKUPS: AtomicU64 = AtomicU64::new(0);

impl Daemon {
    /// Starts the backups asked for during this turn (called after `end_turn`).
    pub(super) fn start_waiting_backups(&mut self) {
        for (with_keys, reply) in std::mem::take(&mut self.backups_waiting) {
            self.start_backup(with_keys, reply);
        }
    }

    /// Takes a snapshot now and answers `reply` once its file is written and synced.
    fn start_backup(&mut self, with_keys: bool, reply: oneshot::Sender<ControlResponse>) {
        let error = |message: String| ControlResponse::Error { message };
        if let Err(failure) = self.audit.write_pending(self.core.store_mut()) {
            self.audit_error = Some(failure.to_string());
            let _ = reply.send(error(format!(
                "the audit log cannot be written, so no backup was made: {failure}"
            )));
            return;
        }
        self.remove_stale_staging();
        let node_id = self.core.node_id().to_string();
        let taken = tokio::task::block_in_place(|| {
            Snapshot::take(
                &self.data_dir,
                self.core.store().database(),
                with_keys,
                Some(node_id),
                Timestamp::now().0,
            )
        });
        let snapshot = match taken {
            Ok(snapshot) => snapshot,
            Err(failure) => {
                let _ = reply.send(error(format!("no backup was made: {failure}")));
                return;
            }
        };
        let number = BACKUPS.fetch_add(1, Ordering::Relaxed);
        let path = self.data_dir.join(format!(
            "{STAGING_PREFIX}{}-{number}.qfb",
            std::process::id()
        ));
        tracing::info!(with_keys, path = %path.display(), "backup snapshot taken; writing it");
        tokio::task::spawn_blocking(move || {
            let response = match snapshot.write_to(&path) {
                Ok(counts) => ControlResponse::BackupWritten {
                    path: path.display().to_string(),
                    counts,
                },
                Err(failure) => error(format!("the backup could not be written: {failure}")),
            };
            let _ = reply.send(response);
        });
    }

    /// Removes staging files a killed `backup` command left behind.
    fn remove_stale_staging(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(STAGING_PREFIX))
                && entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .ok()
                    .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                    .is_some_and(|age| age > STALE_STAGING);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
