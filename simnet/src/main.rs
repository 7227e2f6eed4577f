//! The `simnet` binary: parses the command line and hands over to the library.
//!
//! `simnet sim …` runs one deterministic simulation (or, with `--seeds A..B`, one per seed on
//! all cores), prints the human summary, optionally writes the JSON report, and exits non-zero
//! (printing the seed and the replay command) when an invariant is violated. `simnet scenario`
//! plays the scripted fault stories; `simnet plot-scaling` draws the scaling plot from live
//! report directories.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use quickfreeze_node::testnet::NodeCommand;
use quickfreeze_simnet::live;
use quickfreeze_simnet::sim::{self, scenario, sweep, FaultLevel, SimConfig};

/// Simulate a quickfreeze network.
#[derive(Parser, Debug)]
#[command(name = "simnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Deterministic simulation: real delivery cores on a virtual network in virtual time.
    Sim(SimArgs),
    /// Live simulation: real quickfreeze node processes on loopback, real kill -9, link faults,
    /// a hostile member; checks delivery from the nodes' own stores.
    Live(LiveArgs),
    /// Scripted fault stories (offline recipient, relay custody, partition, crash before the
    /// receipt, duplicate paths, expiry), each checked for what must have happened.
    Scenario(ScenarioArgs),
    /// WAN benchmark: real node processes in network namespaces behind a delaying relay and
    /// nftables loss; latency (warm, cold), throughput and exactly-once per RTT × loss (root).
    Wan(quickfreeze_simnet::wan::WanArgs),
    /// Draws the scaling plot (latency percentiles, peak RSS and CPU over node count) as SVG
    /// from the report directories of several `simnet live --report-dir DIR` runs.
    PlotScaling(PlotScalingArgs),
}

#[derive(Args, Debug)]
struct PlotScalingArgs {
    /// Where to write the SVG.
    #[arg(long)]
    out: PathBuf,
    /// Report directories, each holding the `report.json` of one live run.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct LiveArgs {
    /// Measure trust spread instead of delivery: on the idle network, install the next roster
    /// serial at one node and time until every node's `status` shows it, then the same for a
    /// revocation notice (no workload, no faults).
    #[arg(long)]
    spread: bool,
    /// With --spread: how long each change may take before it counts as not spread.
    #[arg(long, default_value_t = 60)]
    spread_timeout_s: u64,
    /// Member nodes (points of contact), one process each.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Relays, one process each.
    #[arg(long, default_value_t = 2)]
    relays: usize,
    /// Requests to submit (status replies come on top).
    #[arg(long, default_value_t = 300)]
    messages: usize,
    /// Requests per second, on average (they come in bursts).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Fault level: none, mild or harsh.
    #[arg(long, default_value = "mild")]
    faults: FaultLevel,
    /// The seed of the workload and the fault schedule; random (and printed) when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the faulty phase in seconds (default: the workload's span plus a quarter).
    #[arg(long)]
    duration: Option<f64>,
    /// Longest wait for convergence after the final heal, seconds.
    #[arg(long, default_value_t = 120)]
    converge_timeout: u64,
    /// Directory for report.json, summary.txt and latency.svg.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Also write the JSON report to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the nodes' data directories here instead of a temporary directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The quickfreeze binary to run (default: `quickfreeze` next to this binary, else this
    /// binary re-executing the same node CLI).
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Nodes retry quickly (200 ms base, 1.5 s cap) instead of with the production defaults
    /// (1 s base, 60 s cap, reconnect probe every second).
    #[arg(long)]
    short_retries: bool,
    /// Routine messages (about 15 % of requests, and status replies to them) expire this many
    /// seconds after submission on every node, so expiry happens live; each expired message
    /// must have been reported to the operator (the sender's audit trail shows it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=5_184_000))]
    routine_lifetime_s: Option<u64>,
    /// The nodes' reconnect probe interval in ms (0: off, to measure what the probe buys;
    /// default: the node's default).
    #[arg(long)]
    reconnect_probe_ms: Option<u64>,
}

#[derive(Args, Debug)]
struct ScenarioArgs {
    /// Scenario name, or `all` (see --list).
    #[arg(default_value = "all")]
    name: String,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Seed for latencies, countries and relay choice (the story itself is fixed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Debug)]
struct SimArgs {
    /// Member nodes (points of contact; central authorities beyond the number of countries).
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Relays.
    #[arg(long, default_value_t = 3)]
    relays: usize,
    /// Messages submitted during the safety phase (status replies come on top).
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// The seed; a random one is chosen (and printed) when omitted.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep many seeds: `A..B` (B excluded) or `A..=B`; prints every failing seed.
    #[arg(long)]
    seeds: Option<String>,
    /// Worker threads for a sweep (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Fault level: none, mild or harsh.
    #[arg(long, default_value = "mild")]
    faults: FaultLevel,
    /// Length of the safety phase in virtual milliseconds.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Override every message lifetime (virtual ms) to exercise expiry; the run then accepts
    /// expired messages (with their events) instead of requiring 100 % delivery.
    #[arg(long)]
    lifetime_ms: Option<u64>,
    /// Share of members without addresses, reachable only through their relays.
    #[arg(long, default_value_t = 0.04)]
    relay_only_fraction: f64,
    /// Let anyone reach members without addresses (turns off the dial-limit model).
    #[arg(long)]
    no_dial_limits: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Demonstration only: run a deliberately broken shell that answers before flushing, to
    /// see the durability checker catch it.
    #[arg(long, hide = true)]
    bug_skip_flush_before_respond: bool,
}

/// The hidden first argument under which this binary runs the quickfreeze node CLI itself (so a
/// live run works from `cargo test` without a separately built `quickfreeze` binary).
const NODE_SUBCOMMAND: &str = "__quickfreeze";

fn main() -> anyhow::Result<ExitCode> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == NODE_SUBCOMMAND)
    {
        let args = std::iter::once(std::ffi::OsString::from("quickfreeze"))
            .chain(std::env::args_os().skip(2));
        let cli = quickfreeze_node::cli::Cli::parse_from(args);
        quickfreeze_node::cli::init_tracing(&cli);
        return Ok(match quickfreeze_node::cli::execute(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        });
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Live(args) => run_live(args),
        Command::Sim(args) => run_sim(args),
        Command::Scenario(args) => run_scenarios(args),
        Command::PlotScaling(args) => plot_scaling(&args),
        Command::Wan(args) => {
            let node = node_command(args.node_binary.clone())?;
            let ok = quickfreeze_simnet::wan::main(args, node).map_err(anyhow::Error::msg)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn plot_scaling(args: &PlotScalingArgs) -> anyhow::Result<ExitCode> {
    let rows = live::plot::read_scaling_rows(&args.dirs).map_err(anyhow::Error::msg)?;
    let svg = live::plot::scaling_svg(&rows).map_err(anyhow::Error::msg)?;
    std::fs::write(&args.out, svg).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{} runs plotted to {}", rows.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn node_command(explicit: Option<PathBuf>) -> anyhow::Result<NodeCommand> {
    let me = std::env::current_exe().context("locating this binary")?;
    if let Some(path) = explicit {
        // `--node-binary` naming a simnet binary: it runs the node CLI under the hidden command.
        let is_simnet = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("simnet"));
        return Ok(if is_simnet {
            NodeCommand {
                program: path,
                prefix: vec![NODE_SUBCOMMAND.into()],
            }
        } else {
            NodeCommand::binary(&path)
        });
    }
    let sibling = me.with_file_name("quickfreeze");
    Ok(if sibling.is_file() {
        NodeCommand::binary(&sibling)
    } else {
        NodeCommand {
            program: me,
            prefix: vec![NODE_SUBCOMMAND.into()],
        }
    })
}

fn run_live(args: LiveArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    });
    let command = node_command(args.node_binary)?;
    eprintln!("seed={seed} node binary: {}", command.program.display());
    let mut config = live::LiveConfig::new(
        args.nodes,
        args.relays,
        args.messages,
        args.rate,
        args.faults,
        seed,
        command,
    );
    config.duration = args.duration.map(std::time::Duration::from_secs_f64);
    config.converge_timeout = std::time::Duration::from_secs(args.converge_timeout);
    config.report_dir = args.report_dir;
    config.work_dir = args.work_dir;
    config.progress = !args.quiet;
    config.short_retries = args.short_retries;
    config.routine_lifetime_s = args.routine_lifetime_s;
    config.reconnect_probe_ms = args.reconnect_probe_ms;
    if args.spread {
        let timeout = std::time::Duration::from_secs(args.spread_timeout_s);
        let report = live::spread::measure(&config, timeout).map_err(anyhow::Error::msg)?;
        print!("{}", report.summary());
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let spread = report.roster_spread_ms.is_some() && report.revocation_spread_ms.is_some();
        return Ok(if spread {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let report = live::run(&config).map_err(anyhow::Error::msg)?;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_scenarios(args: ScenarioArgs) -> anyhow::Result<ExitCode> {
    let all = scenario::all();
    if args.list {
        for scenario in &all {
            println!("{:<34} {}", scenario.name, scenario.summary);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let chosen: Vec<_> = if args.name == "all" {
        all
    } else {
        match scenario::by_name(&args.name) {
            Some(scenario) => vec![scenario],
            None => anyhow::bail!(
                "there is no scenario `{}`; `simnet scenario --list` shows them",
                args.name
            ),
        }
    };
    let mut failed = 0;
    for scenario in &chosen {
        match sim::run_scenario(scenario, args.seed) {
            Ok(report) => println!(
                "ok      {:<34} delivered {} expired {} relay deliveries {} duplicates suppressed {}",
                scenario.name,
                report.delivered,
                report.expired,
                report.relay_deliveries,
                report.duplicates_suppressed
            ),
            Err(failure) => {
                failed += 1;
                println!("FAILED  {:<34} {failure}", scenario.name);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_sweep(config: &SimConfig, seeds: &str, args: &SimArgs) -> anyhow::Result<ExitCode> {
    let range = sweep::parse_seed_range(seeds).map_err(anyhow::Error::msg)?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let total = range.end - range.start;
    let every = (total / 20).max(1);
    let progress = move |runs: u64, failed: u64| {
        if runs.is_multiple_of(every) || runs == total {
            eprintln!("  {runs}/{total} seeds run, {failed} failed");
        }
    };
    let report = sweep::sweep(config, range, jobs, &progress);
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    });
    let mut config = SimConfig::new(seed, args.nodes, args.relays, args.messages, args.faults);
    if let Some(duration_ms) = args.duration_ms {
        config.duration_ms = duration_ms;
    }
    if let Some(lifetime_ms) = args.lifetime_ms {
        config.message_lifetime_ms = Some(lifetime_ms);
        config.expect_all_delivered = false;
    }
    config.bug_skip_flush_before_respond = args.bug_skip_flush_before_respond;
    config.relay_only_fraction = args.relay_only_fraction;
    config.model_dial_limits = !args.no_dial_limits;
    if let Some(seeds) = &args.seeds {
        return run_sweep(&config, seeds, &args);
    }
    eprintln!("seed={seed}");
    let (report, code) = match sim::run(&config) {
        Ok(report) => (report, ExitCode::SUCCESS),
        Err(failure) => {
            eprintln!("FAILED {failure}");
            (*failure.report, ExitCode::FAILURE)
        }
    };
    print!("{}", report.summary());
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(code)
}
