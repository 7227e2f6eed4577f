//! Commands about the node itself: `run` (the daemon, until Ctrl-C or SIGTERM), `status` and
//! `peers`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::{print_json, request, unexpected, Target};
use crate::config::{files, NodeConfig};
use crate::control::{ControlRequest, ControlResponse};
use crate::text::age;

/// `run`: starts the daemon and runs it until a shutdown signal.
pub(super) fn run(config: Option<PathBuf>, data_dir: PathBuf) -> Result<()> {
    let path = config.unwrap_or_else(|| data_dir.join(files::CONFIG));
    let config = NodeConfig::load(&path)?;
    // After a shutdown signal the node has this long to stop cleanly (it bounds its last
    // commits by the same timeout); then the process exits regardless.
    let grace = Duration::from_secs(config.store.commit_timeout_s.saturating_mul(2) + 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The signal is awaited by a task of its own, not inside the daemon's loop, so that SIGTERM
    // works even if the loop is stuck (in sled, on a failing disk).
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(());
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            tracing::error!(
                "the node did not stop within {} s of the shutdown signal (a stalled disk?); exiting without a clean stop. Everything acknowledged was already on disk",
                grace.as_secs()
            );
            std::process::exit(EXIT_STALLED);
        });
    });
    let result = runtime.block_on(async {
        // systemd readiness, watchdog and stop notice (no-ops without NOTIFY_SOCKET).
        let _supervisor = crate::service::supervise(config.data_dir.clone(), config.listen.len());
        let shutdown = crate::service::stopping_after(async {
            let _ = stop_rx.await;
        });
        crate::daemon::run(config, shutdown).await
    });
    match result {
        Ok(()) => Ok(()),
        Err(error @ crate::daemon::DaemonError::Stalled(_)) => {
            // A commit thread is stuck in sled: neither it nor the runtime can be joined.
            // The message was logged and alerted by the daemon.
            runtime.shutdown_background();
            eprintln!("error: {error}");
            std::process::exit(EXIT_STALLED);
        }
        Err(error) => Err(error.into()),
    }
}

/// Exit status of `run` when a commit stalled (or the node would not stop after a signal).
const EXIT_STALLED: i32 = 75;

/// `peers`: roster members, connections and backoff.
pub(super) fn peers(target: &Target) -> Result<()> {
    let response = request(target, &ControlRequest::Peers)?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::Peers { rows } = response else {
        return unexpected(response);
    };
    outln!(
        "{:<2}  {:<18}  {:<9}  {:>8}  {:<20}  node",
        "cc",
        "role",
        "connected",
        "failures",
        "retry at"
    );
    for row in rows {
        outln!(
            "{:<2}  {:<18}  {:<9}  {:>8}  {:<20}  {}",
            row.country,
            row.role,
            if row.connected { "yes" } else { "no" },
            row.consecutive_failures,
            row.retry_at.as_deref().unwrap_or("-"),
            row.node_id
        );
        if !row.misbehaviour.is_empty() {
            let counts: Vec<String> = row
                .misbehaviour
                .iter()
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect();
            outln!("    refused from {}: {}", row.country, counts.join(", "));
        }
    }
    Ok(())
}

/// `status`: the node at a glance.
pub(super) fn status(target: &Target) -> Result<()> {
    let response = request(target, &ControlRequest::Status)?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::Status { report } = response else {
        return unexpected(response);
    };
    outln!(
        "node         {} ({}, {})",
        report.node_id,
        report.country,
        report.role
    );
    outln!("fingerprint  {}", report.fingerprint);
    outln!(
        "network      {} roster serial {} (expires {})",
        report.network,
        report.roster_serial,
        report.roster_expires_at
    );
    if report.roster_expires_in_s < 0 {
        outln!("WARNING      the roster has EXPIRED: install a current one with `quickfreeze roster install`");
    } else if report.roster_expires_soon {
        outln!(
            "WARNING      the roster expires in {}: ask the roster authority for a new one",
            age(report.roster_expires_in_s.unsigned_abs())
        );
    }
    if let Some(seconds) = report.key_file_age_s {
        outln!("key file     written {} ago", age(seconds));
    }
    outln!(
        "outbox       {} emergency, {} urgent, {} routine undelivered",
        report.outbox_pending[0],
        report.outbox_pending[1],
        report.outbox_pending[2]
    );
    outln!(
        "inbox        {} messages, {} not acknowledged",
        report.inbox_total,
        report.inbox_unacknowledged
    );
    if report.role == "relay" {
        outln!(
            "relay        {} held, {} bytes",
            report.relay_pending,
            report.relay_bytes
        );
    }
    for notice in &report.revocations {
        outln!(
            "revocations  serial {} ({}): {}: {}",
            notice.serial,
            notice.issued_at,
            notice
                .nodes
                .iter()
                .chain(&notice.keys)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            notice.reason
        );
    }
    if let Some(refusal) = &report.disk_low {
        outln!("DISK LOW     {refusal}");
    } else if let Some(free) = report.disk_free_bytes {
        outln!("disk         {} MiB free", free / (1024 * 1024));
    }
    outln!("peers        {} connected", report.connected_peers);
    outln!("listening    {}", report.listen_addresses.join(", "));
    if let Some(address) = &report.metrics_address {
        outln!("metrics      http://{address}/metrics");
    }
    let [t1, t2, t3] = report.overdue;
    if t1 + t2 + t3 == 0 {
        outln!("deadlines    nothing overdue");
    } else {
        outln!(
            "OVERDUE      {t1} without delivery receipt (T1), {t2} not acknowledged (T2), {t3} without substantive status (T3)"
        );
        for row in &report.overdue_items {
            outln!(
                "  {:<11}  {:<9}  {:<2}  {}  overdue {}  ({})",
                row.clock,
                row.priority,
                row.country,
                row.message_id,
                age(row.overdue_s),
                row.meaning
            );
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate.recv() => {},
        }
    }
}
