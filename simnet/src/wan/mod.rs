//! `simnet wan`: real quickfreeze node processes over a real (namespaced) network with WAN
//! round-trip times and packet loss; submit → verified-receipt latency on warm and cold
//! connections and throughput, for a pair and through a relay.
//!
//! ```text
//!  de (sender) ─veth─┐                    ┌─veth─ fr  (pair recipient)
//!                    ├─ middle namespace ─┤
//!  relay ──────veth──┘  delaying relay    └─veth─ nl  (no address: reached through `relay`)
//!                       + nftables loss
//! ```
//!
//! Every node runs in its own network namespace ([`netns`]); every roster address points at the
//! delaying TCP relay ([`proxy`]) in the middle namespace, which forwards to the node after half
//! the RTT each way (plus jitter), so every node-to-node byte crosses the WAN once. Loss comes
//! from nftables in the middle (real drops, real TCP retransmissions). For each RTT × loss cell
//! and each topology the harness measures:
//!
//! - **cold**: the sender's connections are cut at the relay before each request, so each one
//!   pays dial + Noise + yamux + the request;
//! - **warm**: requests paced well below capacity on an open connection;
//! - **throughput**: a burst submitted by several console clients at once, first submission to
//!   last verified receipt;
//!
//! and checks exactly-once: every submitted message is delivered (its receipt verified at the
//! sender), appears once in the recipient's inbox, and the recipient stored it once. Latency is
//! taken from the submitting console call (wall clock just before it) to the instant the sender
//! verified and stored the receipt (the daemon's delivery log), so it includes the console round
//! trip and the acceptance commit.
//!
//! Targets (issue 17): warm p50 ≤ 1 RTT + 3 ms; p99 ≤ 3 RTT at 1 % loss; no loss and no
//! duplicate at 5 % loss. The run prints a markdown table and fails only on loss or duplicates
//! (latency targets are reported, not enforced: the shared machine's load moves them).

pub mod netns;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use hdrhistogram::Histogram;
use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{AuthorityKey, SignedRoster};
use quickfreeze_node::config::files;
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_node::testnet::{console, NodeCommand, NodePlan, NodeProcess, Testnet};
use quickfreeze_proto::payload::{example_preservation, Payload};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use netns::WanNet;

/// Port every node listens on inside its namespace.
const NODE_PORT: u16 = 4100;
/// First port of the delaying relay (node `i` behind `RELAY_PORT + i`).
const RELAY_PORT: u16 = 9000;
/// Node indexes.
const SENDER: usize = 0;
const PAIR_RECIPIENT: usize = 1;
const RELAY: usize = 2;
const RELAYED_RECIPIENT: usize = 3;
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `simnet wan` options.
#[derive(Args, Debug, Clone)]
pub struct WanArgs {
    /// Round-trip times to measure, ms (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "50,150,300")]
    pub rtt_ms: Vec<u64>,
    /// Loss rates to measure, percent of packets in each direction (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
    pub loss: Vec<u8>,
    /// Jitter added to each direction's delay, uniform in [0, J] ms (order is kept).
    #[arg(long, default_value_t = 2)]
    pub jitter_ms: u64,
    /// Topologies: `pair` (sender → recipient) and/or `relay` (sender → relay → a recipient
    /// with no address).
    #[arg(long, value_delimiter = ',', default_value = "pair,relay")]
    pub topology: Vec<Topology>,
    /// Warm-connection requests per cell.
    #[arg(long, default_value_t = 100)]
    pub warm: usize,
    /// Warm requests per second (paced, one console request each).
    #[arg(long, default_value_t = 10.0)]
    pub warm_rate: f64,
    /// Cold-connection requests per cell (each after the sender's connections are cut).
    #[arg(long, default_value_t = 8)]
    pub cold: usize,
    /// Requests in the throughput burst per cell.
    #[arg(long, default_value_t = 300)]
    pub burst: usize,
    /// Console clients submitting the burst.
    #[arg(long, default_value_t = 4)]
    pub burst_clients: usize,
    /// The short form CI runs: RTT 50 ms, 5 % loss, pair only, 150 warm + 100 burst + 4 cold
    /// (overrides the lists above).
    #[arg(long)]
    pub short: bool,
    /// Keep the nodes' data directories here instead of a temporary directory.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The quickfreeze binary to run (default: `quickfreeze` next to this binary, else this
    /// binary re-executing the node CLI).
    #[arg(long)]
    pub node_binary: Option<PathBuf>,
    /// Internal: run the delaying relay with this control socket (the harness starts it in the
    /// middle namespace).
    #[arg(long, hide = true)]
    pub serve_proxy: Option<PathBuf>,
    /// Internal: the relay's forwards, LISTEN=TARGET.
    #[arg(long, hide = true)]
    pub forward: Vec<proxy::Forward>,
}

/// Which path a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Sender → recipient, one WAN hop.
    Pair,
    /// Sender → relay → recipient (which has no address), two WAN hops each way.
    Relay,
}

impl Topology {
    fn recipient(self) -> usize {
        match self {
            Topology::Pair => PAIR_RECIPIENT,
            Topology::Relay => RELAYED_RECIPIENT,
        }
    }

    /// The peer the sender talks to.
    fn first_hop(self) -> usize {
        match self {
            Topology::Pair => PAIR_RECIPIENT,
            Topology::Relay => RELAY,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Topology::Pair => "pair",
            Topology::Relay => "relay",
        }
    }
}

/// Latency figures of one phase, milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Latency {
    fn of(samples_us: &[u64]) -> Latency {
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        for sample in samples_us {
            histogram.saturating_record((*sample).max(1));
        }
        if samples_us.is_empty() {
            return Latency::default();
        }
        Latency {
            count: samples_us.len(),
            p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: histogram.max() as f64 / 1000.0,
        }
    }
}

/// One RTT × loss × topology cell.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    /// Topology.
    pub topology: Topology,
    /// Round-trip time, ms.
    pub rtt_ms: u64,
    /// Loss, percent per direction.
    pub loss_percent: u8,
    /// Cold-connection latency.
    pub cold: Latency,
    /// Warm-connection latency.
    pub warm: Latency,
    /// Burst latency (queueing included).
    pub burst: Latency,
    /// Burst throughput: delivered requests per second, first submission to last receipt.
    pub throughput_per_s: f64,
    /// Requests submitted in the cell.
    pub submitted: usize,
    /// Of those, delivered with a verified receipt.
    pub delivered: usize,
    /// Recipient inbox entries for them (must equal `submitted`).
    pub inbox_entries: usize,
    /// Messages the recipient stored in the cell (must equal `submitted`).
    pub recipient_stored: u64,
    /// Duplicate deliveries the recipient (and relay) answered from the store without storing
    /// again: retransmissions at the message layer, harmless.
    pub duplicates_answered: u64,
    /// Packets the loss rule dropped during the cell.
    pub packets_dropped: u64,
    /// Warm p50 ≤ RTT (or 2 RTT through a relay) + 3 ms.
    pub warm_p50_met: bool,
    /// Warm p99 ≤ 3 RTT (6 through a relay).
    pub warm_p99_met: bool,
    /// Everything delivered exactly once.
    pub exactly_once: bool,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct WanReport {
    /// Cells in run order.
    pub cells: Vec<Cell>,
    /// Jitter per direction, ms.
    pub jitter_ms: u64,
    /// Load average at the start and the end.
    pub load_average: (String, String),
    /// The command that repeats the run.
    pub command: String,
}

impl WanReport {
    /// Whether every cell delivered everything exactly once.
    pub fn ok(&self) -> bool {
        self.cells.iter().all(|cell| cell.exactly_once)
    }

    /// The markdown table.
    pub fn table(&self) -> String {
        let mut text = String::from(
            "| path | RTT ms | loss % | warm p50 / p99 ms | target p50 / p99 | cold p50 / p99 ms | burst req/s | burst p50 / p99 ms | delivered exactly once | packets dropped | duplicates answered |\n|---|---:|---:|---|---|---|---:|---|---|---:|---:|\n",
        );
        for cell in &self.cells {
            let hops = if cell.topology == Topology::Relay {
                2
            } else {
                1
            };
            let p50_target = (hops * cell.rtt_ms + 3) as f64;
            let p99_target = (3 * hops * cell.rtt_ms) as f64;
            text.push_str(&format!(
                "| {} | {} | {} | {:.1} / {:.1} | ≤ {:.0} {} / ≤ {:.0} {} | {:.1} / {:.1} | {:.0} | {:.1} / {:.1} | {} / {} {} | {} | {} |\n",
                cell.topology.name(),
                cell.rtt_ms,
                cell.loss_percent,
                cell.warm.p50_ms,
                cell.warm.p99_ms,
                p50_target,
                if cell.warm_p50_met { "met" } else { "**missed**" },
                p99_target,
                if cell.warm_p99_met { "met" } else { "**missed**" },
                cell.cold.p50_ms,
                cell.cold.p99_ms,
                cell.throughput_per_s,
                cell.burst.p50_ms,
                cell.burst.p99_ms,
                cell.delivered,
                cell.submitted,
                if cell.exactly_once { "yes" } else { "**NO**" },
                cell.packets_dropped,
                cell.duplicates_answered,
            ));
        }
        text
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// Runs `simnet wan` (or, with `--serve-proxy`, the delaying relay). Returns whether every cell
/// delivered exactly once.
pub fn main(args: WanArgs, node: NodeCommand) -> Result<bool, String> {
    if let Some(control) = &args.serve_proxy {
        proxy::serve(&args.forward, control)?;
        return Ok(true);
    }
    let mut args = args;
    if args.short {
        args.rtt_ms = vec![50];
        args.loss = vec![5];
        args.topology = vec![Topology::Pair];
        args.warm = 150;
        args.warm_rate = 20.0;
        args.burst = 100;
        args.cold = 4;
    }
    netns::preflight()?;
    let swept = netns::sweep_stale();
    if swept > 0 {
        eprintln!("removed {swept} namespace(s) left by an earlier run that was killed");
    }
    netns::install_interrupt_cleanup()?;
    let report = run(&args, &node)?;
    println!("{}", report.table());
    println!(
        "jitter ≤ {} ms per direction; load average {} at the start, {} at the end\n{}",
        report.jitter_ms, report.load_average.0, report.load_average.1, report.command
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?;
        std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    if report.ok() {
        println!("OK: every request delivered exactly once");
    } else {
        println!("FAILED: a request was lost or duplicated (see the table)");
    }
    Ok(report.ok())
}

fn command_line(args: &WanArgs) -> String {
    if args.short {
        return "simnet wan --short".into();
    }
    let list = |values: Vec<String>| values.join(",");
    format!(
        "simnet wan --rtt-ms {} --loss {} --jitter-ms {} --topology {} --warm {} --warm-rate {} --cold {} --burst {} --burst-clients {}",
        list(args.rtt_ms.iter().map(u64::to_string).collect()),
        list(args.loss.iter().map(u8::to_string).collect()),
        args.jitter_ms,
        list(args.topology.iter().map(|t| t.name().to_owned()).collect()),
        args.warm,
        args.warm_rate,
        args.cold,
        args.burst,
        args.burst_clients
    )
}

/// The nodes, the relay process and the namespaces, torn down in that order on drop.
struct World {
    nodes: Vec<NodeProcess>,
    proxy: Option<std::process::Child>,
    dirs: Vec<PathBuf>,
    /// Declared last: dropped after the processes in it are gone.
    net: WanNet,
}

impl Drop for World {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill9();
        }
        if let Some(proxy) = &mut self.proxy {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
    }
}

fn in_namespace(node: &NodeCommand, namespace: &str) -> NodeCommand {
    let mut prefix: Vec<std::ffi::OsString> = vec![
        "netns".into(),
        "exec".into(),
        namespace.into(),
        node.program.clone().into_os_string(),
    ];
    prefix.extend(node.prefix.iter().cloned());
    NodeCommand {
        program: PathBuf::from("ip"),
        prefix,
    }
}

fn build(args: &WanArgs, root: &Path, node: &NodeCommand) -> Result<World, String> {
    let mut relayed = NodePlan::point_of_contact("nl", "NL")?;
    relayed.dialable = false;
    relayed.relays = vec![RELAY];
    let mut relay = NodePlan::point_of_contact("relay", "LU")?;
    relay.role = Role::Relay;
    let plans = [
        NodePlan::point_of_contact("de", "DE")?,
        NodePlan::point_of_contact("fr", "FR")?,
        relay,
        relayed,
    ];
    let mut rng = ChaCha20Rng::from_rng(&mut rand::rng());
    let authority = AuthorityKey::generate(&mut rng);
    let capacity = args.burst.max(args.warm) * 4 + 1000;
    let testnet = Testnet::build_signed_by(
        root,
        "wan",
        &plans,
        &mut rng,
        &authority,
        |index, config| {
            config.listen = vec![format!("/ip4/{}/tcp/{NODE_PORT}", WanNet::node_ip(index))];
            config.testing.fault_injection = true;
            config.limits.max_outbox_pending = capacity;
            config.limits.max_console_connections = args.burst_clients + 8;
        },
    )?;
    // Every roster address points at the delaying relay in front of the node.
    let mut roster = testnet.roster.clone();
    for (index, member) in roster.members.iter_mut().enumerate() {
        if !member.addresses.is_empty() {
            member.addresses = vec![format!(
                "/ip4/{}/tcp/{}",
                WanNet::middle_ip(index),
                RELAY_PORT + index as u16
            )];
        }
    }
    let mut signed = SignedRoster::new(&roster).map_err(|error| error.to_string())?;
    signed
        .sign(&authority, None)
        .map_err(|error| error.to_string())?;
    let bytes = signed.to_bytes().map_err(|error| error.to_string())?;
    for member in &testnet.nodes {
        std::fs::write(member.data_dir.join(files::ROSTER), &bytes)
            .map_err(|error| format!("{}: {error}", member.data_dir.display()))?;
    }

    let net = WanNet::create(plans.len())?;
    let mut world = World {
        nodes: Vec::new(),
        proxy: None,
        dirs: testnet.nodes.iter().map(|n| n.data_dir.clone()).collect(),
        net,
    };
    let control = root.join("wan-relay.sock");
    let me = std::env::current_exe().map_err(|error| format!("locating simnet: {error}"))?;
    let mut command = std::process::Command::new("ip");
    command
        .args(["netns", "exec", &world.net.middle])
        .arg(&me)
        .args(["wan", "--serve-proxy"])
        .arg(&control);
    for index in 0..plans.len() {
        command.arg("--forward").arg(format!(
            "{}:{}={}:{NODE_PORT}",
            WanNet::middle_ip(index),
            RELAY_PORT + index as u16,
            WanNet::node_ip(index)
        ));
    }
    let log = std::fs::File::create(root.join("wan-relay.log"))
        .map_err(|error| format!("relay log: {error}"))?;
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|error| format!("starting the delaying relay: {error}"))?;
    netns::register_child(child.id());
    world.proxy = Some(child);
    proxy::ProxyControl::connect(&control, Duration::from_secs(20))?;
    for (index, dir) in world.dirs.clone().iter().enumerate() {
        let command = in_namespace(node, &world.net.nodes[index]);
        let process = NodeProcess::start(&command, dir, Duration::from_secs(60))?;
        netns::register_child(process.pid());
        world.nodes.push(process);
    }
    Ok(world)
}

fn run(args: &WanArgs, node: &NodeCommand) -> Result<WanReport, String> {
    if args.rtt_ms.is_empty() || args.loss.is_empty() || args.topology.is_empty() {
        return Err("give at least one --rtt-ms, one --loss and one --topology".into());
    }
    if args.warm_rate <= 0.0 {
        return Err("--warm-rate must be above 0".into());
    }
    let load_start = load_average();
    let temp;
    let root = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
            temp.path().to_path_buf()
        }
    };
    let world = build(args, &root, node)?;
    let mut control = proxy::ProxyControl::connect(&root.join("wan-relay.sock"), CONSOLE_TIMEOUT)?;
    let mut cells = Vec::new();
    for &topology in &args.topology {
        for &rtt_ms in &args.rtt_ms {
            for &loss in &args.loss {
                eprintln!("{} RTT {rtt_ms} ms loss {loss} %", topology.name());
                let cell = measure_cell(args, &world, &mut control, topology, rtt_ms, loss)?;
                eprintln!(
                    "  warm p50 {:.1} ms p99 {:.1} ms, cold p50 {:.1} ms, burst {:.0}/s, exactly once: {}",
                    cell.warm.p50_ms,
                    cell.warm.p99_ms,
                    cell.cold.p50_ms,
                    cell.throughput_per_s,
                    cell.exactly_once
                );
                cells.push(cell);
            }
        }
    }
    drop(world);
    Ok(WanReport {
        cells,
        jitter_ms: args.jitter_ms,
        load_average: (load_start, load_average()),
        command: command_line(args),
    })
}

fn submit_one(client: &mut ControlClient, recipient: &str) -> Result<(String, u64), String> {
    let submitted_us = unix_us();
    match client
        .request(&ControlRequest::Submit {
            recipient: recipient.to_owned(),
            payload: Box::new(Payload::Preservation(example_preservation())),
        })
        .map_err(|error| format!("submit: {error}"))?
    {
        ControlResponse::Submitted { message_id, .. } => Ok((message_id, submitted_us)),
        other => Err(format!("submit refused: {other:?}")),
    }
}

/// Drains the sender's delivery log into `delivered` until every id in `waiting` is there.
fn wait_delivered(
    dir: &Path,
    waiting: &BTreeMap<String, u64>,
    delivered: &mut BTreeMap<String, u64>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match console(
            dir,
            &ControlRequest::DeliveryLog { drain: true },
            CONSOLE_TIMEOUT,
        )
        .map_err(|error| format!("delivery log: {error}"))?
        {
            ControlResponse::DeliveryLog { entries, .. } => {
                for entry in entries {
                    delivered.insert(entry.message_id, entry.delivered_unix_us);
                }
            }
            other => return Err(format!("delivery log: {other:?}")),
        }
        if waiting.keys().all(|id| delivered.contains_key(id)) || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn latencies(submitted: &BTreeMap<String, u64>, delivered: &BTreeMap<String, u64>) -> Vec<u64> {
    submitted
        .iter()
        .filter_map(|(id, at)| delivered.get(id).map(|done| done.saturating_sub(*at)))
        .collect()
}

/// Waits until the sender no longer shows `peer` as connected (after a cut), at most 5 s.
fn wait_disconnected(dir: &Path, peer: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let connected = match console(dir, &ControlRequest::Peers, CONSOLE_TIMEOUT)
            .map_err(|error| format!("peers: {error}"))?
        {
            ControlResponse::Peers { rows } => {
                rows.iter().any(|row| row.node_id == peer && row.connected)
            }
            other => return Err(format!("peers: {other:?}")),
        };
        if !connected || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn metric_received(dir: &Path) -> Result<(u64, u64), String> {
    let received = match console(
        dir,
        &ControlRequest::Metrics { reset: false },
        CONSOLE_TIMEOUT,
    )
    .map_err(|error| format!("metrics: {error}"))?
    {
        ControlResponse::Metrics { metrics } => metrics.received,
        other => return Err(format!("metrics: {other:?}")),
    };
    let duplicates = match console(
        dir,
        &ControlRequest::DeliveryLog { drain: false },
        CONSOLE_TIMEOUT,
    )
    .map_err(|error| format!("delivery log: {error}"))?
    {
        ControlResponse::DeliveryLog {
            duplicates_suppressed,
            ..
        } => duplicates_suppressed,
        other => return Err(format!("delivery log: {other:?}")),
    };
    Ok((received, duplicates))
}

fn inbox_ids(dir: &Path) -> Result<Vec<String>, String> {
    match console(
        dir,
        &ControlRequest::Inbox { limit: usize::MAX },
        CONSOLE_TIMEOUT,
    )
    .map_err(|error| format!("inbox: {error}"))?
    {
        ControlResponse::Inbox { rows } => Ok(rows.into_iter().map(|row| row.message_id).collect()),
        other => Err(format!("inbox: {other:?}")),
    }
}

fn node_id(world: &World, index: usize) -> Result<String, String> {
    let key = quickfreeze_keys::Identity::read_key_file(&world.dirs[index].join(files::KEY))
        .map_err(|error| error.to_string())?;
    Ok(key.node_id().to_string())
}

fn measure_cell(
    args: &WanArgs,
    world: &World,
    control: &mut proxy::ProxyControl,
    topology: Topology,
    rtt_ms: u64,
    loss: u8,
) -> Result<Cell, String> {
    let rtt = Duration::from_millis(rtt_ms);
    control.set_delay(rtt, Duration::from_millis(args.jitter_ms))?;
    world.net.set_loss(loss)?;
    let sender_dir = &world.dirs[SENDER];
    let recipient_dir = &world.dirs[topology.recipient()];
    let recipient_country = match topology {
        Topology::Pair => "FR",
        Topology::Relay => "NL",
    };
    let first_hop = node_id(world, topology.first_hop())?;
    let (stored_before, duplicates_before) = metric_received(recipient_dir)?;
    let relay_duplicates_before = metric_received(&world.dirs[RELAY])?.1;
    let dropped_before = world.net.dropped_packets();
    // Settle whatever the last cell left in flight.
    let mut delivered = BTreeMap::new();
    wait_delivered(sender_dir, &BTreeMap::new(), &mut delivered, Duration::ZERO)?;
    delivered.clear();
    let patience = Duration::from_secs(60) + rtt * 200;
    let sender_ip = WanNet::node_ip(SENDER);

    // Cold: the sender's connections are cut before each request.
    let mut cold = BTreeMap::new();
    let mut client = ControlClient::connect(sender_dir, CONSOLE_TIMEOUT)
        .map_err(|error| format!("console: {error}"))?;
    for _ in 0..args.cold {
        control.cut(&sender_ip)?;
        wait_disconnected(sender_dir, &first_hop)?;
        let (id, at) = submit_one(&mut client, recipient_country)?;
        cold.insert(id, at);
        let mut one = BTreeMap::new();
        one.insert(cold.keys().last().cloned().unwrap_or_default(), at);
        wait_delivered(sender_dir, &one, &mut delivered, patience)?;
    }

    // Warm: one request to open the connection, then paced requests.
    let (id, at) = submit_one(&mut client, recipient_country)?;
    let mut opener = BTreeMap::new();
    opener.insert(id, at);
    wait_delivered(sender_dir, &opener, &mut delivered, patience)?;
    let mut warm = BTreeMap::new();
    let started = Instant::now();
    for index in 0..args.warm {
        let due = started + Duration::from_secs_f64(index as f64 / args.warm_rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (id, at) = submit_one(&mut client, recipient_country)?;
        warm.insert(id, at);
    }
    wait_delivered(sender_dir, &warm, &mut delivered, patience)?;

    // Burst: several clients at once.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let burst_started_us = unix_us();
    let threads: Vec<_> = (0..args.burst_clients.max(1))
        .map(|_| {
            let dir = sender_dir.clone();
            let next = next.clone();
            let total = args.burst;
            std::thread::spawn(move || -> Result<Vec<(String, u64)>, String> {
                let mut client = ControlClient::connect(&dir, CONSOLE_TIMEOUT)
                    .map_err(|error| format!("console: {error}"))?;
                let mut mine = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    mine.push(submit_one(&mut client, recipient_country)?);
                }
                Ok(mine)
            })
        })
        .collect();
    let mut burst = BTreeMap::new();
    for thread in threads {
        let mine = thread
            .join()
            .map_err(|_| "a burst client panicked".to_owned())??;
        burst.extend(mine);
    }
    wait_delivered(sender_dir, &burst, &mut delivered, patience)?;
    let burst_done_us = burst
        .keys()
        .filter_map(|id| delivered.get(id))
        .max()
        .copied()
        .unwrap_or(burst_started_us);
    let throughput_per_s = burst
        .keys()
        .filter(|id| delivered.contains_key(*id))
        .count() as f64
        / ((burst_done_us.saturating_sub(burst_started_us)) as f64 / 1e6).max(1e-6);

    // Exactly once.
    let mut all: BTreeSet<String> = cold.keys().cloned().collect();
    all.extend(opener.keys().cloned());
    all.extend(warm.keys().cloned());
    all.extend(burst.keys().cloned());
    let delivered_count = all.iter().filter(|id| delivered.contains_key(*id)).count();
    // The recipient stores before its receipt leaves, so by now everything delivered is in.
    let inbox = inbox_ids(recipient_dir)?;
    let inbox_entries = inbox.iter().filter(|id| all.contains(*id)).count();
    let inbox_distinct: BTreeSet<&String> = inbox.iter().filter(|id| all.contains(*id)).collect();
    let (stored_after, duplicates_after) = metric_received(recipient_dir)?;
    let relay_duplicates_after = metric_received(&world.dirs[RELAY])?.1;
    let recipient_stored = stored_after.saturating_sub(stored_before);
    let exactly_once = delivered_count == all.len()
        && inbox_entries == all.len()
        && inbox_distinct.len() == all.len()
        && recipient_stored == all.len() as u64;

    let hops = if topology == Topology::Relay { 2 } else { 1 };
    let warm_latency = Latency::of(&latencies(&warm, &delivered));
    Ok(Cell {
        topology,
        rtt_ms,
        loss_percent: loss,
        cold: Latency::of(&latencies(&cold, &delivered)),
        warm_p50_met: warm_latency.p50_ms <= (hops * rtt_ms + 3) as f64,
        warm_p99_met: warm_latency.p99_ms <= (3 * hops * rtt_ms) as f64,
        warm: warm_latency,
        burst: Latency::of(&latencies(&burst, &delivered)),
        throughput_per_s,
        submitted: all.len(),
        delivered: delivered_count,
        inbox_entries,
        recipient_stored,
        duplicates_answered: duplicates_after.saturating_sub(duplicates_before)
            + relay_duplicates_after.saturating_sub(relay_duplicates_before),
        packets_dropped: world.net.dropped_packets().saturating_sub(dropped_before),
        exactly_once,
    })
}
