//! The `simnet` binary: parses the command line and hands over to the library.
//!
//! `simnet sim …` runs one deterministic simulation, prints the human summary, optionally
//! writes the JSON report, and exits non-zero (printing `seed=…` and the replay command) when an
//! invariant is violated.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use quickfreeze_simnet::sim::{self, FaultLevel, SimConfig};

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
    #[arg(long)]
    seed: Option<u64>,
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
    /// Draw the relays of members without addresses at random instead of giving them all the
    /// same relays (exposes the relay-only receipt gap; see the crate docs).
    #[arg(long)]
    relay_only_random_relays: bool,
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

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => run_sim(args),
    }
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
    config.relay_only_share_relays = !args.relay_only_random_relays;
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
