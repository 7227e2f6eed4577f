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
mod backup;
mod case;
mod evidence;
mod key;
mod messages;
pub(crate) use messages::payload_attachments;
mod node;
mod revoke;
mod setup;
mod stats;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use quickfreeze_proto::forms::FormKind;
use quickfreeze_proto::i18n::Language;

use crate::control::{ControlClient, ControlRequest, ControlResponse};

pub use audit::AuditCommand;
pub use evidence::EvidenceCommand;
pub use key::KeyCommand;
pub use messages::{FilterArgs, ReplyArgs};
pub use revoke::RevokeArgs;
pub use setup::{AuthorityCommand, InitArgs, RosterCommand};
pub use store::{Damaged, StoreCommand, EXIT_DAMAGED};

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
        /// The language of the help comments: en, fr, de, es or pt (default: `language` in the
        /// node's node.toml, else en). Field names stay the same in every language.
        #[arg(long, value_name = "CODE")]
        lang: Option<Language>,
        /// The node's data directory, whose node.toml names the default language.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
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
        /// Attach this file (repeat for several; preservation requests; at most 8 files,
        /// 256 KiB each, 768 KiB together). Name, media type and SHA-256 are filled in.
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
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
        /// Save the message's attachments into this directory (created if missing), under safe
        /// names, never overwriting a file, after checking each SHA-256.
        #[arg(long, value_name = "DIR")]
        save_attachments: Option<PathBuf>,
        /// The language of labels: en, fr, de, es or pt (default: `language` in node.toml, else
        /// en). What the sender wrote is shown as written.
        #[arg(long, value_name = "CODE")]
        lang: Option<Language>,
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
    /// Write a consistent backup of the node (store, audit trail, config, roster, revocations,
    /// officer accounts) into one checksummed file, while it runs or while it is stopped. The
    /// private keys go in only with --with-keys.
    Backup {
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
        /// The backup file to write (must not exist; written mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Also back up the node's key file (the file then holds its PRIVATE KEYS).
        #[arg(long)]
        with_keys: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new (or empty) data directory, then check it: config, store
    /// format, audit chain. Says what to do about the key file when the backup holds none.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new data directory (must not exist or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The message store: `store verify` checks it whole against its checksums and the audit
    /// trail (node stopped).
    #[command(subcommand)]
    Store(StoreCommand),
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
        /// Where `s` in a message saves its attachments (one folder per message below it).
        #[arg(long, env = "QUICKFREEZE_ATTACHMENTS_DIR", default_value = crate::console::app::DEFAULT_ATTACHMENTS_DIR)]
        attachments_dir: PathBuf,
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
        Command::Template {
            kind,
            lang,
            data_dir,
        } => messages::template(kind, lang, &data_dir),
        Command::Send {
            file,
            to,
            kind,
            wait,
            attach,
            target,
        } => messages::send(&file, &to, kind, wait, &attach, &target),
        Command::Inbox {
            unacknowledged,
            filter,
            target,
        } => messages::inbox(&filter, unacknowledged, &target),
        Command::Outbox { filter, target } => messages::outbox(&filter, &target),
        Command::Handover { since, target } => case::handover(&since, &target),
        Command::Show {
            id,
            save_attachments,
            lang,
            target,
        } => messages::show(id, save_attachments.as_deref(), lang, &target),
        Command::Ack {
            id,
            officer,
            target,
        } => messages::ack(id, officer, &target),
        Command::Reply(args) => messages::reply(args),
        Command::Peers { target } => node::peers(&target),
        Command::Status { target } => node::status(&target),
        Command::Audit(command) => audit::audit(command),
        Command::Store(command) => store::store(command),
        Command::Evidence(command) => evidence::evidence(command),
        Command::Stats { since, target } => stats::stats(&since, &target),
        Command::Console {
            data_dir,
            officer,
            attachments_dir,
        } => {
            let officer = match officer.filter(|name| !name.trim().is_empty()) {
                Some(name) => name,
                None => ask_officer_name()?,
            };
            crate::console::run(&data_dir, &officer, attachments_dir)
        }
        Command::Backup {
            data_dir,
            out,
            with_keys,
            json,
        } => backup::backup(&data_dir, &out, with_keys, json),
        Command::Restore {
            file,
            data_dir,
            json,
        } => backup::restore(&file, &data_dir, json),
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
