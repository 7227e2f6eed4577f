//! Two nodes on loopback, durability on: sustained requests per second with verified receipts,
//! and submit → verified-receipt latency at 10 %, 50 % and 90 % of that rate, with and without
//! group commit.
//!
//! `cargo bench -p quickfreeze-node --bench pair` (options after `--`: `--messages N`,
//! `--clients C`, `--seconds S`, `--sync flush|flush-and-sync-data`). Each node is a real daemon
//! (libp2p over loopback TCP, sled in a temp dir, the control socket); officers are simulated by
//! `C` console connections that submit 2 KiB preservation requests. Latency is measured inside the
//! sending daemon from the moment a request is accepted to the moment its delivery receipt is
//! verified; throughput counts verified receipts per second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quickfreeze_node::config::{files, NodeConfig};
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse, Metrics};
use quickfreeze_node::daemon;
use quickfreeze_node::store::SyncMode;
use quickfreeze_node::testnet::{NodePlan, Testnet};
use quickfreeze_proto::payload::{example_preservation, Payload};

struct Options {
    messages: u64,
    clients: u64,
    seconds: u64,
    sync: SyncMode,
}

fn options() -> Options {
    let mut options = Options {
        messages: 20_000,
        clients: 8,
        seconds: 8,
        sync: SyncMode::FlushAndSyncData,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--messages" => options.messages = value.parse().expect("--messages N"),
            "--clients" => options.clients = value.parse().expect("--clients C"),
            "--seconds" => options.seconds = value.parse().expect("--seconds S"),
            "--sync" => {
                options.sync = match value.as_str() {
                    "flush" => SyncMode::Flush,
                    _ => SyncMode::FlushAndSyncData,
                }
            }
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

fn setup(root: &Path, group_commit: bool, sync: SyncMode) -> Vec<PathBuf> {
    let plans = [
        NodePlan::point_of_contact("de", "DE").expect("plan"),
        NodePlan::point_of_contact("fr", "FR").expect("plan"),
    ];
    let net = Testnet::build(root, "bench", &plans, None, |_, config| {
        config.store.group_commit = group_commit;
        config.store.sync = sync;
        config.limits.max_outbox_pending = 1_000_000;
        config.limits.max_in_flight_per_peer = 16;
    })
    .expect("test network");
    net.nodes.into_iter().map(|node| node.data_dir).collect()
}

fn metrics(dir: &Path, reset: bool) -> Metrics {
    let mut client = ControlClient::connect(dir, Duration::from_secs(30)).expect("console");
    match client
        .request(&ControlRequest::Metrics { reset })
        .expect("metrics")
    {
        ControlResponse::Metrics { metrics } => metrics,
        other => panic!("unexpected {other:?}"),
    }
}

/// Submits from `clients` connections; `rate_per_s = 0` means as fast as possible.
fn submit(dir: &Path, clients: u64, total: u64, rate_per_s: f64) -> Duration {
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client_index| {
            let dir = dir.to_path_buf();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut client =
                    ControlClient::connect(&dir, Duration::from_secs(60)).expect("console");
                let request = ControlRequest::Submit {
                    recipient: "FR".into(),
                    payload: Box::new(Payload::Preservation(example_preservation())),
                };
                let mut mine = 0u64;
                loop {
                    let number = sent.fetch_add(1, Ordering::Relaxed);
                    if number >= total {
                        break;
                    }
                    if rate_per_s > 0.0 {
                        let due = started + Duration::from_secs_f64(number as f64 / rate_per_s);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    match client.request(&request).expect("submit") {
                        ControlResponse::Submitted { .. } => mine += 1,
                        other => panic!("client {client_index}: {other:?}"),
                    }
                }
                mine
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client");
    }
    started.elapsed()
}

fn wait_delivered(dir: &Path, target: u64) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = metrics(dir, false);
        if now.delivered >= target {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {target} delivered",
            now.delivered
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Row {
    label: String,
    offered_per_s: f64,
    delivered_per_s: f64,
    metrics: Metrics,
    flushes_per_message: f64,
}

fn run_mode(group_commit: bool, options: &Options) -> Vec<Row> {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = setup(root.path(), group_commit, options.sync);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let nodes: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let config = NodeConfig::load(&dir.join(files::CONFIG)).expect("config");
            runtime.block_on(daemon::start(config)).expect("start")
        })
        .collect();
    let de = &dirs[0];
    let fr = &dirs[1];
    // Warm up: connections, caches.
    submit(de, options.clients, 500, 0.0);
    wait_delivered(de, 500);
    metrics(de, true);
    let mut rows = Vec::new();

    // Saturation.
    let fr_before = metrics(fr, false);
    let started = Instant::now();
    submit(de, options.clients, options.messages, 0.0);
    let done = wait_delivered(de, options.messages);
    let elapsed = started.elapsed().as_secs_f64();
    let fr_after = metrics(fr, true);
    let max_rate = options.messages as f64 / elapsed;
    let flushes = (done.store_flushes + fr_after.store_flushes - fr_before.store_flushes) as f64;
    rows.push(Row {
        label: "saturated".into(),
        offered_per_s: 0.0,
        delivered_per_s: max_rate,
        flushes_per_message: flushes / options.messages as f64,
        metrics: metrics(de, true),
    });
    let _ = done;

    for fraction in [0.1, 0.5, 0.9] {
        let rate = max_rate * fraction;
        let total = ((rate * options.seconds as f64) as u64).max(50);
        let before = metrics(de, false).store_flushes + metrics(fr, false).store_flushes;
        let started = Instant::now();
        submit(de, options.clients, total, rate);
        wait_delivered(de, total);
        let elapsed = started.elapsed().as_secs_f64();
        let after_de = metrics(de, true);
        let after_fr = metrics(fr, true);
        rows.push(Row {
            label: format!("{:.0} % of max", fraction * 100.0),
            offered_per_s: rate,
            delivered_per_s: total as f64 / elapsed,
            flushes_per_message: (after_de.store_flushes + after_fr.store_flushes - before) as f64
                / total as f64,
            metrics: after_de,
        });
    }
    for node in nodes {
        runtime.block_on(node.stop()).expect("stop");
    }
    rows
}

fn main() {
    let options = options();
    if std::env::args().any(|arg| arg == "--list") {
        // `cargo test --benches` asks bench binaries to list their tests; there are none.
        return;
    }
    if std::env::args().any(|arg| arg == "--test" || arg == "--bench")
        && std::env::args().any(|arg| arg == "--test")
    {
        return;
    }
    println!(
        "two nodes, {} console clients, {} messages at saturation, sync = {:?}",
        options.clients, options.messages, options.sync
    );
    println!("| group commit | load | offered req/s | delivered req/s | p50 ms | p90 ms | p99 ms | max ms | flushes per message (both nodes) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for group_commit in [true, false] {
        for row in run_mode(group_commit, &options) {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} |",
                if group_commit { "on" } else { "off" },
                row.label,
                if row.offered_per_s > 0.0 {
                    format!("{:.0}", row.offered_per_s)
                } else {
                    "max".into()
                },
                row.delivered_per_s,
                row.metrics.latency_p50_us as f64 / 1000.0,
                row.metrics.latency_p90_us as f64 / 1000.0,
                row.metrics.latency_p99_us as f64 / 1000.0,
                row.metrics.latency_max_us as f64 / 1000.0,
                row.flushes_per_message,
            );
        }
    }
}
