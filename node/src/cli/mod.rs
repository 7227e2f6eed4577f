//! The `quickfreeze` command line: the clap command tree, dispatch to one module per command
//! group, and logging set-up.
//!
//! Roster and identity commands work on files ([`setup`], [`key`]); `roster install` and `roster
//! revoke --install` also hand the result to a running node ([`revoke`]). `run` starts the daemon
//! ([`node`]).
//! Every console command (`send`, `inbox`, `outbox`, `show`, `ack`, `reply`, `peers`, `status`)
//! talks to the running daemon through its control socket; `--json` prints the daemon's typed
//! answer for scripts. `audit` and `stats` also work on a stopped node's store ([`audit`],
//! [`stats`]), and so does `evidence export` ([`evidence`]; `evidence verify` needs only the
//! file). `console` is the interactive terminal UI over the same socket.
//! Errors are one line naming the file or field and what to do, and a non-zero exit.

#[macro_use]
pub(crate) mod out;
mod access;
mod audit;
mod case;
mod evidence;
mod key;
mod messages;
mod node;
mod revoke;
mod setup;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use quickfreeze_proto::forms::FormKind;

use crate::control::{ControlClient, ControlRequest, ControlResponse};

pub use audit::AuditCommand;
pub use evidence::EvidenceCommand;
pub use key::KeyCommand;
pub use messages::{FilterArgs, ReplyArgs};
pub use revoke::RevokeArgs;
pub use setup::{AuthorityCommand, InitArgs, RosterCommand};

/// quickfreeze: urgent preservation requests between 24/7 points of contact.
#[derive(Debug, Parser)]
#[command(name = "quickfreeze", version, about)]
pub struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info` or `quickfreeze_node=debug`. Default: `info` for
    /// `run`, `warn` otherwise.
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// Log lines as human text or JSON lines (one object per line, for log shippers). Colour
    /// only when stderr is a terminal.
    #[arg(
        long,
        global = true,
        env = "QUICKFREEZE_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: crate::logging::LogFormat,
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
    /// This node's keys: `key rotate` makes new ones with a grace window for the old.
    #[command(subcommand)]
    Key(KeyCommand),
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
    /// The inbox: one row per case thread, overdue first, then newest; filters and paging.
    Inbox {
        /// Only messages no officer has acknowledged (same as --state new).
        #[arg(long)]
        unacknowledged: bool,
        /// Filters and paging.
        #[command(flatten)]
        filter: messages::FilterArgs,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// The outbox: one row per case thread with its latest status, and why an undelivered
    /// message has not arrived; filters and paging.
    Outbox {
        /// Filters and paging.
        #[command(flatten)]
        filter: messages::FilterArgs,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// What the next shift must know: what came in, what is open, what is overdue, who did what.
    Handover {
        /// The period to cover: an age such as 12h, or an RFC 3339 time.
        #[arg(long, default_value = "12h")]
        since: String,
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
    /// Evidence for a court: export a case's signed evidence file, or verify one offline.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// The live console for the officer on duty: inbox and outbox side by side, acknowledge,
    /// reply, compose. Needs a terminal (80×24 is enough); `?` inside shows the keys.
    Console {
        /// The node's data directory (holds the control socket).
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
        /// Your name, sent with acknowledgements and replies (asked for at start when not given).
        #[arg(long, env = "QUICKFREEZE_OFFICER")]
        officer: Option<String>,
    },
    /// Check this node's installation: config, key file mode, roster expiry, free disk, listen
    /// ports, whether it runs, clock skew, and reachability of every roster member. Prints
    /// OK/WARN/FAIL with what to fix; exits non-zero on any FAIL.
    Doctor {
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the console and for each connection to a roster member.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Start a small local network, send a real request, and show its receipt.
    Demo {
        /// Keep the demo's files here instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The duty officer's console in a browser (beside the node, over its control socket).
    Web(crate::web::WebArgs),
    /// Officer accounts of the web console: add, remove, passwd.
    #[command(subcommand)]
    Officer(crate::web::OfficerCommand),
}

/// Sets up logging to stderr.
pub fn init_tracing(cli: &Cli) {
    let default = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    // The subscriber is set up in `crate::logging`: no colour off a terminal, JSON on request.
    if let Err(error) = crate::logging::init(cli.log_format, cli.log.as_deref(), default) {
        eprintln!("warning: {error}");
    }
}

/// Runs one command.
pub fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => setup::init(args),
        Command::Authority(command) => setup::authority(command),
        Command::Key(command) => key::key(command),
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
            unacknowledged,
            filter,
            target,
        } => messages::inbox(&filter, unacknowledged, &target),
        Command::Outbox { filter, target } => messages::outbox(&filter, &target),
        Command::Handover { since, target } => case::handover(&since, &target),
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
        Command::Evidence(command) => evidence::evidence(command),
        Command::Stats { since, target } => stats::stats(&since, &target),
        Command::Console { data_dir, officer } => {
            let officer = match officer.filter(|name| !name.trim().is_empty()) {
                Some(name) => name,
                None => ask_officer_name()?,
            };
            crate::console::run(&data_dir, &officer)
        }
        Command::Demo { dir } => crate::demo::run_demo(dir),
        Command::Web(args) => crate::web::execute(args),
        Command::Officer(command) => crate::web::officer_command(command),
        Command::Doctor {
            data_dir,
            json,
            timeout,
        } => crate::doctor::command(
            &data_dir,
            json,
            std::time::Duration::from_secs(timeout.max(1)),
        ),
    }
}

/// Asks for the officer's name once per console session: acknowledgements and replies carry
/// it, and there is no anonymous default.
fn ask_officer_name() -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() || !std::io::stdout().is_terminal() {
        bail!("the console needs a terminal (and your name: --officer NAME or QUICKFREEZE_OFFICER); for scripts use `quickfreeze inbox`, `outbox`, `show`, `ack` and `reply`");
    }
    for _ in 0..3 {
        eprint!("Your name (sent with your acknowledgements and replies): ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let name = line.trim();
        if !name.is_empty() {
            return Ok(name.to_string());
        }
    }
    bail!("no name given; start the console again with --officer NAME")
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
