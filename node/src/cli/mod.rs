//! The `quickfreeze` command line: the clap command tree, dispatch to one module per command
//! group, and logging set-up.
//!
//! Roster and identity commands work on files ([`setup`]). `run` starts the daemon ([`node`]).
//! Every console command (`send`, `inbox`, `outbox`, `show`, `ack`, `reply`, `peers`, `status`)
//! talks to the running daemon through its control socket; `--json` prints the daemon's typed
//! answer for scripts. `audit` and `stats` also work on a stopped node's store ([`audit`],
//! [`stats`]). `console` is the interactive terminal UI over the same socket.
//! Errors are one line naming the file or field and what to do, and a non-zero exit.

#[macro_use]
pub(crate) mod out;
mod access;
mod audit;
mod messages;
mod node;
mod setup;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use quickfreeze_proto::forms::FormKind;

use crate::control::{ControlClient, ControlRequest, ControlResponse};

pub use audit::AuditCommand;
pub use messages::ReplyArgs;
pub use setup::{AuthorityCommand, InitArgs, RosterCommand};

/// quickfreeze: urgent preservation requests between 24/7 points of contact.
#[derive(Debug, Parser)]
#[command(name = "quickfreeze", version, about)]
pub struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info` or `quickfreeze_node=debug`. Default: `info` for
    /// `run`, `warn` otherwise.
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the console finds the daemon.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The node's data directory (holds the control socket).
    #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node identity and print the member entry to give to the roster authority.
    Init(InitArgs),
    /// Roster authority keys.
    #[command(subcommand)]
    Authority(AuthorityCommand),
    /// Write, sign, verify, show and install rosters.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Run the node daemon.
    Run {
        /// The node's config file (default: DATA_DIR/node.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data directory, when no --config is given.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
    /// Print a commented request form to fill in: preservation, traffic, emergency, status, free-text.
    Template {
        /// The kind of form.
        kind: FormKind,
    },
    /// Validate a filled-in form, submit it, and print its message id.
    Send {
        /// The filled-in form (TOML).
        file: PathBuf,
        /// The recipient: a country code (its point of contact) or a node id.
        #[arg(long)]
        to: String,
        /// The form kind (default: from the file).
        #[arg(long)]
        kind: Option<FormKind>,
        /// Wait up to this many seconds for the signed delivery receipt.
        #[arg(long, num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// The inbox, newest first.
    Inbox {
        /// Rows to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages no officer has acknowledged.
        #[arg(long)]
        unacknowledged: bool,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// The outbox, newest first.
    Outbox {
        /// Rows to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages in this state (accepted, sent, custody, delivered, expired, rejected).
        #[arg(long)]
        state: Option<String>,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// One message in full, with its receipts and status history.
    Show {
        /// Message id.
        id: String,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// Acknowledge an inbox message as the officer on duty (tells the requester).
    Ack {
        /// Message id.
        id: String,
        /// Your name.
        #[arg(long)]
        officer: String,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// Send a status update about an inbox message to its requester.
    Reply(ReplyArgs),
    /// Roster members, connections and backoff.
    Peers {
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// The node at a glance.
    Status {
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// Efficiency statistics per counterpart country: requests sent and received, median times
    /// to delivery receipt, acknowledgement and first substantive status, refusals by ground.
    Stats {
        /// An age such as 30d, 12h, or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// The audit trail: check its hash chain, or export it for a case file.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The live console for the officer on duty: inbox and outbox side by side, acknowledge,
    /// reply, compose. Needs a terminal (80×24 is enough); `?` inside shows the keys.
    Console {
        /// The node's data directory (holds the control socket).
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
        /// Your name, sent with acknowledgements and replies (default: $USER).
        #[arg(long, env = "QUICKFREEZE_OFFICER")]
        officer: Option<String>,
    },
    /// Start a small local network, send a real request, and show its receipt.
    Demo {
        /// Keep the demo's files here instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Sets up logging to stderr.
pub fn init_tracing(cli: &Cli) {
    let default = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = match &cli.log {
        Some(filter) => tracing_subscriber::EnvFilter::new(filter),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs one command.
pub fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => setup::init(args),
        Command::Authority(command) => setup::authority(command),
        Command::Roster(command) => setup::roster(command),
        Command::Run { config, data_dir } => node::run(config, data_dir),
        Command::Template { kind } => messages::template(kind),
        Command::Send {
            file,
            to,
            kind,
            wait,
            target,
        } => messages::send(&file, &to, kind, wait, &target),
        Command::Inbox {
            limit,
            unacknowledged,
            target,
        } => messages::inbox(limit, unacknowledged, &target),
        Command::Outbox {
            limit,
            state,
            target,
        } => messages::outbox(limit, state, &target),
        Command::Show { id, target } => messages::show(id, &target),
        Command::Ack {
            id,
            officer,
            target,
        } => messages::ack(id, officer, &target),
        Command::Reply(args) => messages::reply(args),
        Command::Peers { target } => node::peers(&target),
        Command::Status { target } => node::status(&target),
        Command::Audit(command) => audit::audit(command),
        Command::Stats { since, target } => stats::stats(&since, &target),
        Command::Console { data_dir, officer } => {
            let officer = officer
                .or_else(|| std::env::var("USER").ok())
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| "officer on duty".to_string());
            crate::console::run(&data_dir, &officer)
        }
        Command::Demo { dir } => crate::demo::run_demo(dir),
    }
}

/// Prints an answer as pretty JSON (`--json`).
fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The error for an answer the command did not expect (the daemon's own message if it sent one).
fn unexpected(response: ControlResponse) -> Result<()> {
    match response {
        ControlResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

/// One request to the running node over its control socket.
fn request(target: &Target, request: &ControlRequest) -> Result<ControlResponse> {
    let mut client = ControlClient::connect(&target.data_dir, Duration::from_secs(30))?;
    Ok(client.request(request)?)
}
