//! systemd integration for `quickfreeze run` under `Type=notify`: readiness, watchdog pings and
//! the stop notice, through the `sd-notify` crate. Every function is a no-op when systemd did
//! not ask for notifications (`NOTIFY_SOCKET` unset), so the node runs the same anywhere else.
//!
//! The node is declared ready (`READY=1`) only once its console answers a status request and it
//! listens on every configured address: the store is open, the loop runs and peers can connect.
//! The watchdog (`WATCHDOG=1`, every half `WatchdogSec=`) is fed only while the daemon's loop
//! answers a console request within that half interval, so a node whose loop hangs (a commit
//! stuck on a full disk, say) stops feeding it and systemd restarts it, instead of being kept
//! "alive" by a timer that knows nothing of the loop. `STOPPING=1` goes out as soon as the stop
//! signal arrives.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::control::{ControlClient, ControlRequest, ControlResponse};

/// How often readiness is polled while the node starts.
const READY_POLL: Duration = Duration::from_millis(100);

/// Whether systemd asked for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "could not notify systemd");
    }
}

/// Tells systemd the node is ready, with a one-line status for `systemctl status`.
pub fn notify_ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the node is stopping.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Waits for `shutdown`, then tells systemd the node is stopping. Wrap the daemon's shutdown
/// future in it.
pub async fn stopping_after(shutdown: impl Future<Output = ()>) {
    shutdown.await;
    notify_stopping();
}

/// The readiness and watchdog task of one node; ends when dropped.
pub struct Supervisor {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the readiness and watchdog task for the node with `data_dir` that listens on
/// `listen_count` configured addresses. Call it from inside the runtime, next to the daemon;
/// does nothing without `NOTIFY_SOCKET`.
pub fn supervise(data_dir: PathBuf, listen_count: usize) -> Supervisor {
    if !enabled() {
        return Supervisor { task: None };
    }
    let watchdog = sd_notify::watchdog_enabled();
    Supervisor {
        task: Some(tokio::spawn(run(data_dir, listen_count, watchdog))),
    }
}

/// One console request on a fresh connection, off the runtime's threads.
async fn ask(
    data_dir: &Path,
    request: ControlRequest,
    timeout: Duration,
) -> Option<ControlResponse> {
    let data_dir = data_dir.to_path_buf();
    let answer = tokio::task::spawn_blocking(move || {
        ControlClient::connect(&data_dir, timeout).and_then(|mut client| client.request(&request))
    });
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(Ok(response))) => Some(response),
        Ok(Ok(Err(error))) => {
            debug!(%error, "console probe failed");
            None
        }
        _ => None,
    }
}

async fn run(data_dir: PathBuf, listen_count: usize, watchdog: Option<Duration>) {
    loop {
        if let Some(ControlResponse::Status { report }) =
            ask(&data_dir, ControlRequest::Status, Duration::from_secs(5)).await
        {
            if report.listen_addresses.len() >= listen_count {
                notify_ready(&format!(
                    "node {} ready; listening on {}",
                    report.fingerprint,
                    report.listen_addresses.join(", ")
                ));
                break;
            }
        }
        tokio::time::sleep(READY_POLL).await;
    }
    let Some(interval) = watchdog else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(50));
    let mut missed = 0u32;
    loop {
        tokio::time::sleep(period).await;
        // Metrics are answered from memory by the loop: cheap, whatever the history holds.
        match ask(&data_dir, ControlRequest::Metrics { reset: false }, period).await {
            Some(ControlResponse::Metrics { .. }) => {
                missed = 0;
                send(&[NotifyState::Watchdog]);
            }
            _ => {
                missed += 1;
                if missed == 1 {
                    warn!(
                        "the node's loop did not answer its console within {period:?}; the systemd watchdog is not fed and restarts the node after WatchdogSec unless it recovers"
                    );
                }
            }
        }
    }
}
