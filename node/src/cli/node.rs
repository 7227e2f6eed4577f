//! Commands about the node itself: `run` (the daemon, until Ctrl-C or SIGTERM), `status` and
//! `peers`.

use std::path::PathBuf;

use anyhow::Result;

use super::{print_json, request, unexpected, Target};
use crate::config::{files, NodeConfig};
use crate::control::{ControlRequest, ControlResponse};
use crate::text::age;

/// `run`: starts the daemon and runs it until a shutdown signal.
pub(super) fn run(config: Option<PathBuf>, data_dir: PathBuf) -> Result<()> {
    let path = config.unwrap_or_else(|| data_dir.join(files::CONFIG));
    let config = NodeConfig::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // systemd readiness, watchdog and stop notice (no-ops without NOTIFY_SOCKET).
        let _supervisor = crate::service::supervise(config.data_dir.clone(), config.listen.len());
        let shutdown = crate::service::stopping_after(shutdown_signal());
        crate::daemon::run(config, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })
}

/// `peers`: roster members, connections and backoff.
pub(super) fn peers(target: &Target) -> Result<()> {
    let response = request(target, &ControlRequest::Peers)?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::Peers { rows } = response else {
        return unexpected(response);
    };
    println!(
        "{:<2}  {:<18}  {:<9}  {:>8}  {:<20}  node",
        "cc", "role", "connected", "failures", "retry at"
    );
    for row in rows {
        println!(
            "{:<2}  {:<18}  {:<9}  {:>8}  {:<20}  {}",
            row.country,
            row.role,
            if row.connected { "yes" } else { "no" },
            row.consecutive_failures,
            row.retry_at.unwrap_or_else(|| "-".into()),
            row.node_id
        );
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
    println!(
        "node         {} ({}, {})",
        report.node_id, report.country, report.role
    );
    println!("fingerprint  {}", report.fingerprint);
    println!(
        "network      {} roster serial {} (expires {})",
        report.network, report.roster_serial, report.roster_expires_at
    );
    if report.roster_expires_in_s < 0 {
        println!("WARNING      the roster has EXPIRED: install a current one with `quickfreeze roster install`");
    } else if report.roster_expires_soon {
        println!(
            "WARNING      the roster expires in {}: ask the roster authority for a new one",
            age(report.roster_expires_in_s.unsigned_abs())
        );
    }
    if let Some(seconds) = report.key_file_age_s {
        println!("key file     written {} ago", age(seconds));
    }
    println!(
        "outbox       {} emergency, {} urgent, {} routine undelivered",
        report.outbox_pending[0], report.outbox_pending[1], report.outbox_pending[2]
    );
    println!(
        "inbox        {} messages, {} not acknowledged",
        report.inbox_total, report.inbox_unacknowledged
    );
    if report.role == "relay" {
        println!(
            "relay        {} held, {} bytes",
            report.relay_pending, report.relay_bytes
        );
    }
    for notice in &report.revocations {
        println!(
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
    println!("peers        {} connected", report.connected_peers);
    println!("listening    {}", report.listen_addresses.join(", "));
    if let Some(address) = &report.metrics_address {
        println!("metrics      http://{address}/metrics");
    }
    let [t1, t2, t3] = report.overdue;
    if t1 + t2 + t3 == 0 {
        println!("deadlines    nothing overdue");
    } else {
        println!(
            "OVERDUE      {t1} without delivery receipt (T1), {t2} not acknowledged (T2), {t3} without substantive status (T3)"
        );
        for row in &report.overdue_items {
            println!(
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
