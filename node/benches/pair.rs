//! Two nodes on loopback, durability on: sustained requests per second with verified receipts,
//! and submit → verified-receipt latency at 10 %, 50 % and 90 % of that rate, with and without
//! group commit.
//!
//! `cargo bench -p quickfreeze-node --bench pair -- --help` lists the options (`--messages N`,
//! `--clients C`, `--seconds S`, `--sync flush|flush-and-sync-data`, `--saturated-only`,
//! `--batch B` / `--rate-batch B`: submissions per console request at saturation / in the paced
//! runs, `--floor-samples N`, `--floor-only`). Each node is a real daemon (libp2p over loopback
//! TCP, sled in a temp dir, the control socket); officers are simulated by `C` console
//! connections that submit 2 KiB preservation requests. Latency is measured inside the sending
//! daemon from the moment a request is accepted to the moment its delivery receipt is verified;
//! throughput counts verified receipts per second.
//!
//! The floor (`support/floor.rs`: crypto + codec path, fdatasync, sled group commit, raw TCP
//! request + receipt) is measured in the same process before and after the runs, and every row
//! is printed again as ratios to the mean of the two: delivered ÷ realistic ceiling, CPU per
//! request ÷ crypto + codec floor, p50 and p99 ÷ raw TCP request + receipt p50.

#[path = "support/floor.rs"]
mod floor;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use quickfreeze_node::config::{files, NodeConfig};
use quickfreeze_node::control::{
    ControlClient, ControlRequest, ControlResponse, Metrics, SubmitItem,
};
use quickfreeze_node::daemon;
use quickfreeze_node::store::SyncMode;
use quickfreeze_node::testnet::{NodePlan, Testnet};
use quickfreeze_proto::payload::{example_preservation, Payload};

/// Two daemons on loopback, durability on, every figure beside the floor measured in the same
/// run.
#[derive(Parser, Debug)]
#[command(name = "pair")]
struct Options {
    /// Requests at saturation.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Console connections submitting at once.
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Length of each paced run (10/50/90 % of the maximum), seconds.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Durability of a commit: `flush` or `flush-and-sync-data`.
    #[arg(long, default_value = "flush-and-sync-data", value_parser = parse_sync)]
    sync: SyncMode,
    /// Submissions per console request at saturation (1: `submit`; more: `submit-batch`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Submissions per console request in the paced runs (10/50/90 % of the maximum).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    rate_batch: u64,
    /// Only the saturated run with group commit on (for profiling).
    #[arg(long)]
    saturated_only: bool,
    /// Samples per floor measurement (measured before and after the runs).
    #[arg(long, default_value_t = 400)]
    floor_samples: usize,
    /// Only measure and print the floor.
    #[arg(long)]
    floor_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Passed by `cargo test --benches`: nothing to run.
    #[arg(long, hide = true)]
    test: bool,
    /// Asked by `cargo test --benches`: there are no tests to list.
    #[arg(long, hide = true)]
    list: bool,
}

fn parse_sync(value: &str) -> Result<SyncMode, String> {
    match value {
        "flush" => Ok(SyncMode::Flush),
        "flush-and-sync-data" => Ok(SyncMode::FlushAndSyncData),
        other => Err(format!(
            "`{other}`: use `flush` (survives a process crash) or `flush-and-sync-data` (survives power loss)"
        )),
    }
}

fn setup(root: &Path, group_commit: bool, options: &Options) -> Vec<PathBuf> {
    let plans = [
        NodePlan::point_of_contact("de", "DE").expect("plan"),
        NodePlan::point_of_contact("fr", "FR").expect("plan"),
    ];
    let net = Testnet::build(root, "bench", &plans, None, |_, config| {
        config.store.group_commit = group_commit;
        config.store.sync = options.sync;
        // The clients plus the harness's own metrics connections.
        config.limits.max_console_connections = options.clients as usize + 4;
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

fn mean_commit_us(before: &Metrics, after: &Metrics) -> f64 {
    let commits = after
        .store_flushes
        .saturating_sub(before.store_flushes)
        .max(1);
    after
        .store_flush_micros
        .saturating_sub(before.store_flush_micros) as f64
        / commits as f64
}

/// Submits `total` requests from `options.clients` connections, `options.batch` per console
/// request; `rate_per_s = 0` means as fast as possible.
fn submit(dir: &Path, options: &Options, total: u64, rate_per_s: f64) -> Duration {
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let batch = if rate_per_s > 0.0 {
        options.rate_batch
    } else {
        options.batch
    }
    .max(1);
    let threads: Vec<_> = (0..options.clients)
        .map(|client_index| {
            let dir = dir.to_path_buf();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut client =
                    ControlClient::connect(&dir, Duration::from_secs(60)).expect("console");
                let item = SubmitItem {
                    recipient: "FR".into(),
                    payload: Payload::Preservation(example_preservation()),
                };
                let mut mine = 0u64;
                loop {
                    let first = sent.fetch_add(batch, Ordering::Relaxed);
                    if first >= total {
                        break;
                    }
                    let count = batch.min(total - first);
                    if rate_per_s > 0.0 {
                        let due = started + Duration::from_secs_f64(first as f64 / rate_per_s);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let request = if count == 1 {
                        ControlRequest::Submit {
                            recipient: item.recipient.clone(),
                            payload: Box::new(item.payload.clone()),
                        }
                    } else {
                        ControlRequest::SubmitBatch {
                            items: vec![item.clone(); count as usize],
                        }
                    };
                    match client.request(&request).expect("submit") {
                        ControlResponse::Submitted { .. } => mine += 1,
                        ControlResponse::SubmittedBatch { results } => {
                            for result in results {
                                match result {
                                    ControlResponse::Submitted { .. } => mine += 1,
                                    other => panic!("client {client_index}: {other:?}"),
                                }
                            }
                        }
                        other => panic!("client {client_index}: {other:?}"),
                    }
                }
                mine
            })
        })
        .collect();
    let accepted: u64 = threads
        .into_iter()
        .map(|thread| thread.join().expect("client"))
        .sum();
    assert_eq!(accepted, total, "every submission accepted");
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

/// CPU time this process has used (user + system, all threads: both daemons, their libp2p and
/// sled threads, and the console clients), from `/proc/self/stat`. Linux reports it in USER_HZ
/// ticks, which the kernel ABI fixes at 100 per second.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // plain numbers. utime and stime are fields 14 and 15, so the 12th and 13th after it.
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse().expect("stat field"))
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

struct Row {
    label: String,
    /// CPU of the whole process per delivered request, in microseconds.
    cpu_us_per_request: f64,
    /// Mean duration of the sending node's group commits in this row, in microseconds.
    commit_us: f64,
    offered_per_s: f64,
    delivered_per_s: f64,
    metrics: Metrics,
    flushes_per_message: f64,
}

fn run_mode(group_commit: bool, options: &Options) -> Vec<Row> {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = setup(root.path(), group_commit, options);
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
    submit(de, options, 500, 0.0);
    wait_delivered(de, 500);
    metrics(de, true);
    let mut rows = Vec::new();

    // Saturation.
    let fr_before = metrics(fr, false);
    let de_before = metrics(de, false);
    let cpu_before = process_cpu();
    let started = Instant::now();
    submit(de, options, options.messages, 0.0);
    let done = wait_delivered(de, options.messages);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu_before).as_secs_f64();
    let fr_after = metrics(fr, true);
    let max_rate = options.messages as f64 / elapsed;
    let flushes = (done.store_flushes + fr_after.store_flushes - fr_before.store_flushes) as f64;
    rows.push(Row {
        label: "saturated".into(),
        cpu_us_per_request: cpu * 1e6 / options.messages as f64,
        commit_us: mean_commit_us(&de_before, &done),
        offered_per_s: 0.0,
        delivered_per_s: max_rate,
        flushes_per_message: flushes / options.messages as f64,
        metrics: metrics(de, true),
    });
    let _ = done;

    let fractions: &[f64] = if options.saturated_only {
        &[]
    } else {
        &[0.1, 0.5, 0.9]
    };
    for &fraction in fractions {
        let rate = max_rate * fraction;
        let total = ((rate * options.seconds as f64) as u64).max(50);
        let de_before = metrics(de, false);
        let before = de_before.store_flushes + metrics(fr, false).store_flushes;
        let cpu_before = process_cpu();
        let started = Instant::now();
        submit(de, options, total, rate);
        wait_delivered(de, total);
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu_before).as_secs_f64();
        let after_de = metrics(de, true);
        let after_fr = metrics(fr, true);
        rows.push(Row {
            label: format!("{:.0} % of max", fraction * 100.0),
            cpu_us_per_request: cpu * 1e6 / total as f64,
            commit_us: mean_commit_us(&de_before, &after_de),
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
    let options = Options::parse();
    if options.list || options.test {
        // `cargo test --benches` runs bench binaries with `--test` (and asks them to `--list`
        // their tests); this one has none.
        return;
    }
    let floor_dir = tempfile::tempdir().expect("tempdir");
    let before = floor::measure(floor_dir.path(), options.floor_samples);
    println!("floor before the runs (same filesystem as the nodes' stores):\n");
    println!("{}", before.table());
    if options.floor_only {
        return;
    }
    println!(
        "two nodes, {} console clients, {} / {} submission(s) per console request (saturated / paced), {} messages at saturation, sync = {:?}",
        options.clients, options.batch, options.rate_batch, options.messages, options.sync
    );
    println!("| group commit | load | offered req/s | delivered req/s | p50 ms | p90 ms | p99 ms | max ms | flushes per message (both nodes) | mean commit µs (sender) | CPU µs per request (whole process) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let modes: &[bool] = if options.saturated_only {
        &[true]
    } else {
        &[true, false]
    };
    let mut all = Vec::new();
    for &group_commit in modes {
        for row in run_mode(group_commit, &options) {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.0} | {:.0} |",
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
                row.commit_us,
                row.cpu_us_per_request,
            );
            all.push((group_commit, row));
        }
    }
    let after = floor::measure(floor_dir.path(), options.floor_samples);
    println!("\nfloor after the runs:\n");
    println!("{}", after.table());
    let floor = before.mean(&after);
    println!(
        "\nratios to the floor (mean of before and after: crypto + codec {:.0} µs, raw TCP request + receipt p50 {:.0} µs, ceiling {:.0} req/s):\n",
        floor.crypto_path.p50_us,
        floor.tcp_request_receipt.p50_us,
        floor.ceiling_per_s()
    );
    println!("| group commit | load | delivered ÷ ceiling | CPU per request ÷ crypto+codec | p50 ÷ raw TCP p50 | p99 ÷ raw TCP p50 |");
    println!("|---|---|---:|---:|---:|---:|");
    for (group_commit, row) in &all {
        let tcp_us = floor.tcp_request_receipt.p50_us;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} |",
            if *group_commit { "on" } else { "off" },
            row.label,
            row.delivered_per_s / floor.ceiling_per_s(),
            row.cpu_us_per_request / floor.crypto_path.p50_us,
            row.metrics.latency_p50_us as f64 / tcp_us,
            row.metrics.latency_p99_us as f64 / tcp_us,
        );
    }
}
