//! The `quickfreeze` command line: identity and roster tooling, the daemon, and the console.
//!
//! Roster and identity commands work on files. `run` starts the daemon. Every console command
//! (`send`, `inbox`, `outbox`, `show`, `ack`, `reply`, `peers`, `status`) talks to the running
//! daemon through its control socket; `--json` prints the daemon's typed answer for scripts.
//! `console` is the interactive terminal UI over the same socket.
//! Errors are one line naming the file or field and what to do, and a non-zero exit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use quickfreeze_keys::roster::{Member, Role, Roster, SignedRoster};
use quickfreeze_keys::{
    AuthorityKey, AuthorityPublicKey, CountryCode, EncryptionKey, Fingerprint, Identity, Timestamp,
};
use quickfreeze_proto::forms::{self, FormKind};
use quickfreeze_proto::payload::{RefusalGround, Status};

use crate::config::{files, NodeConfig};
use crate::control::{ControlClient, ControlRequest, ControlResponse, MessageDetail, ReceiptView};

const DAY_MS: u64 = 24 * 3600 * 1000;

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
    /// The duty officer's console in a browser (beside the node, over its control socket).
    Web(crate::web::WebArgs),
    /// Officer accounts of the web console: add, remove, passwd.
    #[command(subcommand)]
    Officer(crate::web::OfficerCommand),
}

/// `init` arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Data directory to create.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// ISO 3166-1 alpha-2 country code.
    #[arg(long)]
    pub country: String,
    /// The authority that runs this node.
    #[arg(long)]
    pub name: String,
    /// point-of-contact, relay or central-authority.
    #[arg(long, default_value = "point-of-contact")]
    pub role: Role,
    /// Listen address(es); they go into the member entry too.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4100")]
    pub listen: Vec<String>,
    /// Public address(es) others dial, if different from --listen.
    #[arg(long)]
    pub address: Vec<String>,
    /// On-duty contact (phone / e-mail).
    #[arg(long, default_value = "see national 24/7 directory")]
    pub contact: String,
    /// Days the member entry is valid.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u64,
    /// Pin the roster authority set (fingerprint from `roster show`).
    #[arg(long)]
    pub authority_set: Option<Fingerprint>,
}

/// `authority` commands.
#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Generate an authority signing key (mode 0600) and print its public key.
    Keygen {
        /// Key file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `roster` commands.
#[derive(Debug, Subcommand)]
pub enum RosterCommand {
    /// Write a roster skeleton (TOML) to fill with the members printed by `init`.
    New {
        /// Network name.
        #[arg(long)]
        network: String,
        /// Serial number (must grow with every roster).
        #[arg(long, default_value_t = 1)]
        serial: u64,
        /// Authority public keys (hex, from `authority keygen`).
        #[arg(long = "authority", required = true)]
        authorities: Vec<AuthorityPublicKey>,
        /// Signatures required.
        #[arg(long)]
        threshold: u8,
        /// Days until the roster expires.
        #[arg(long, default_value_t = 90)]
        valid_days: u64,
        /// File to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add this authority's signature (to a TOML roster or an already signed one).
    Sign {
        /// Roster TOML or signed roster.
        #[arg(long = "in")]
        input: PathBuf,
        /// Authority key file.
        #[arg(long)]
        key: PathBuf,
        /// The roster it replaces, when the authority set rotates.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Signed roster to write (may be the input).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a signed roster.
    Verify {
        /// Signed roster.
        file: PathBuf,
        /// Pinned authority-set fingerprint to check against.
        #[arg(long)]
        authority_set: Option<Fingerprint>,
        /// The roster it must be a valid update of.
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Show a roster (signed or TOML).
    Show {
        /// Roster file.
        file: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a signed roster and install it into a node's data directory.
    Install {
        /// Signed roster.
        file: PathBuf,
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Pin the authority set (required the first time).
        #[arg(long)]
        authority_set: Option<Fingerprint>,
    },
}

/// `audit` commands. Both work whether the node runs (through its console socket) or not (on
/// its store directly).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; name the first record that was edited, removed or reordered,
    /// and print the number of records and the head hash.
    ///
    /// Records deleted from the END of the log leave a shorter chain that is consistent on its
    /// own: that is only detected against a head hash recorded earlier. Keep the printed head
    /// somewhere else (the shift log, a ticket) and pass it back with --expect-head.
    Verify {
        /// A head hash printed by an earlier `audit verify`; it must still be in the chain.
        #[arg(long, value_name = "HEX")]
        expect_head: Option<String>,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// Write the records since a time as JSON lines (ids, digests, metadata; never content).
    Export {
        /// An age such as 30d, 12h, 90m, or an RFC 3339 time such as 2026-11-01T00:00:00Z.
        #[arg(long)]
        since: String,
        /// Write to this file (created new, mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
}

/// `reply` arguments.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// Message id.
    pub id: String,
    /// preserved, partially-executed, refused, more-information-needed, forwarded, data-not-available, acknowledged.
    #[arg(long)]
    pub status: String,
    /// Your name.
    #[arg(long)]
    pub officer: String,
    /// Note for the requester.
    #[arg(long, default_value = "")]
    pub note: String,
    /// preserved: your preservation reference.
    #[arg(long)]
    pub reference: Option<String>,
    /// preserved: when the preservation ends (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// refused: political-offence, sovereignty, security, public-order, other-essential-interests, other.
    #[arg(long)]
    pub ground: Option<String>,
    /// forwarded: the authority it went to.
    #[arg(long)]
    pub authority: Option<String>,
    /// Which node, and output format.
    #[command(flatten)]
    pub target: Target,
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
        Command::Init(args) => init(args),
        Command::Authority(AuthorityCommand::Keygen { out }) => {
            let key = AuthorityKey::generate(&mut rand::rng());
            key.write_key_file(&out)?;
            // The public key alone on stdout, so scripts can capture it; the rest is for people.
            eprintln!(
                "authority key written to {} (mode 0600); keep it offline",
                out.display()
            );
            eprintln!("fingerprint: {}", key.public().fingerprint());
            println!("{}", key.public());
            Ok(())
        }
        Command::Roster(command) => roster(command),
        Command::Run { config, data_dir } => {
            let path = config.unwrap_or_else(|| data_dir.join(files::CONFIG));
            let config = NodeConfig::load(&path)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                crate::daemon::run(config, shutdown_signal())
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
        Command::Web(args) => crate::web::execute(args),
        Command::Officer(command) => crate::web::officer_command(command),
        Command::Template { kind } => {
            print!("{}", forms::template(kind));
            Ok(())
        }
        Command::Send {
            file,
            to,
            kind,
            wait,
            target,
        } => send(&file, &to, kind, wait, &target),
        Command::Inbox {
            limit,
            unacknowledged,
            target,
        } => {
            let response = request(&target, &ControlRequest::Inbox { limit })?;
            if target.json {
                return print_json(&response);
            }
            let ControlResponse::Inbox { rows } = response else {
                return unexpected(response);
            };
            println!(
                "{:<32}  {:<2}  {:<12}  {:<9}  {:<5}  {:>7}  summary",
                "id", "cc", "kind", "priority", "ack", "age"
            );
            for row in rows
                .iter()
                .filter(|row| !unacknowledged || !row.acknowledged)
            {
                println!(
                    "{:<32}  {:<2}  {:<12}  {:<9}  {:<5}  {:>7}  {}",
                    row.message_id,
                    row.country,
                    row.kind,
                    row.priority,
                    if row.acknowledged { "yes" } else { "NO" },
                    age(row.age_s),
                    overdue_marker(&row.overdue, &row.summary)
                );
            }
            Ok(())
        }
        Command::Outbox {
            limit,
            state,
            target,
        } => {
            let response = request(&target, &ControlRequest::Outbox { limit })?;
            if target.json {
                return print_json(&response);
            }
            let ControlResponse::Outbox { rows } = response else {
                return unexpected(response);
            };
            println!(
                "{:<32}  {:<2}  {:<12}  {:<9}  {:<9}  {:>7}  summary",
                "id", "cc", "kind", "priority", "state", "age"
            );
            for row in rows
                .iter()
                .filter(|row| state.as_deref().is_none_or(|wanted| row.state == wanted))
            {
                println!(
                    "{:<32}  {:<2}  {:<12}  {:<9}  {:<9}  {:>7}  {}",
                    row.message_id,
                    row.country,
                    row.kind,
                    row.priority,
                    row.state,
                    age(row.age_s),
                    overdue_marker(&row.overdue, &row.summary)
                );
            }
            Ok(())
        }
        Command::Show { id, target } => {
            let response = request(&target, &ControlRequest::Show { message_id: id })?;
            if target.json {
                return print_json(&response);
            }
            match response {
                ControlResponse::Message { detail } => {
                    print_detail(&detail);
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Ack {
            id,
            officer,
            target,
        } => {
            let response = request(
                &target,
                &ControlRequest::Ack {
                    message_id: id.clone(),
                    officer,
                },
            )?;
            if target.json {
                return print_json(&response);
            }
            match response {
                ControlResponse::Acknowledged {
                    status_message_id: Some(status),
                } => {
                    println!("acknowledged {id}; the requester is told by status message {status}");
                    Ok(())
                }
                ControlResponse::Acknowledged {
                    status_message_id: None,
                } => {
                    println!("{id} was already acknowledged");
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Reply(args) => reply(args),
        Command::Peers { target } => {
            let response = request(&target, &ControlRequest::Peers)?;
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
        Command::Status { target } => {
            let response = request(&target, &ControlRequest::Status)?;
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
        Command::Audit(command) => audit(command),
        Command::Stats { since, target } => stats(&since, &target),
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

/// The summary, prefixed with the overdue clocks if any.
fn overdue_marker(overdue: &[String], summary: &str) -> String {
    if overdue.is_empty() {
        summary.to_string()
    } else {
        format!("OVERDUE({}) {summary}", overdue.join(","))
    }
}

/// An age for tables: `42s`, `12m`, `3h05m`, `2d`.
pub(crate) fn age(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m", seconds / 60),
        3600..=86_399 => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{}d", seconds / 86_400),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn unexpected(response: ControlResponse) -> Result<()> {
    match response {
        ControlResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

fn request(target: &Target, request: &ControlRequest) -> Result<ControlResponse> {
    let mut client = ControlClient::connect(&target.data_dir, Duration::from_secs(30))?;
    Ok(client.request(request)?)
}

fn print_receipt(receipt: &ReceiptView) {
    println!(
        "  {} receipt signed by {} ({}) at {}, envelope sha256 {}{}",
        receipt.kind,
        receipt.signer_country,
        receipt.signer,
        receipt.received_at,
        receipt.envelope_digest,
        if receipt.verified {
            ", signature verified"
        } else {
            ", SIGNATURE DOES NOT VERIFY"
        }
    );
}

fn print_detail(detail: &MessageDetail) {
    println!("message   {} ({})", detail.message_id, detail.direction);
    let label = if detail.direction == "outbound" {
        "to"
    } else {
        "from"
    };
    println!("{label:<9} {} ({})", detail.country, detail.peer);
    println!("priority  {}", detail.priority);
    println!("state     {}", detail.state);
    if let Some(error) = &detail.last_error {
        println!("last try  {error}");
    }
    println!("receipts:");
    for receipt in &detail.receipts {
        print_receipt(receipt);
    }
    if !detail.status_history.is_empty() {
        println!("status history:");
        for status in &detail.status_history {
            println!(
                "  {}  {}  by {}  {}",
                status.received_at, status.status, status.officer, status.note
            );
        }
    }
    if !detail.replies.is_empty() {
        println!("replies sent: {}", detail.replies.join(", "));
    }
    if let Some(payload) = &detail.payload {
        println!("content:");
        match toml::to_string_pretty(payload) {
            Ok(text) => {
                for line in text.lines() {
                    println!("  {line}");
                }
            }
            Err(_) => println!("  {payload:?}"),
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

fn detect_kind(text: &str) -> Option<FormKind> {
    // Each form has a field no other form has.
    let table: toml::Table = text.parse().ok()?;
    if table.contains_key("mla_intent") || table.contains_key("data_to_preserve") {
        Some(FormKind::Preservation)
    } else if table.contains_key("protocol_statement") || table.contains_key("emergency_facts") {
        Some(FormKind::Emergency)
    } else if table.contains_key("traffic_data") {
        Some(FormKind::TrafficData)
    } else if table.contains_key("status") {
        Some(FormKind::Status)
    } else if table.contains_key("subject") || table.contains_key("body") {
        Some(FormKind::FreeText)
    } else {
        None
    }
}

fn send(
    file: &Path,
    to: &str,
    kind: Option<FormKind>,
    wait: Option<u64>,
    target: &Target,
) -> Result<()> {
    let text = read_text(file)?;
    let kind = match kind.or_else(|| detect_kind(&text)) {
        Some(kind) => kind,
        None => bail!("{}: cannot tell which form this is; pass --kind preservation|traffic|emergency|status|free-text", file.display()),
    };
    let payload =
        forms::parse_form(kind, &text).map_err(|error| anyhow!("{}: {error}", file.display()))?;
    let response = request(
        target,
        &ControlRequest::Submit {
            recipient: to.to_string(),
            payload: Box::new(payload),
        },
    )?;
    let ControlResponse::Submitted {
        message_id,
        recipient,
        country,
    } = response
    else {
        return unexpected(response);
    };
    if target.json && wait.is_none() {
        return print_json(&ControlResponse::Submitted {
            message_id,
            recipient,
            country,
        });
    }
    if !target.json {
        println!("accepted {message_id} for {country} ({recipient}); stored durably and queued");
    }
    let Some(seconds) = wait else {
        return Ok(());
    };
    let mut client = ControlClient::connect(&target.data_dir, Duration::from_secs(seconds + 5))?;
    let response = client.request(&ControlRequest::WaitDelivered {
        message_id: message_id.clone(),
        timeout_ms: seconds * 1000,
    })?;
    if target.json {
        return print_json(&response);
    }
    match response {
        ControlResponse::Delivered {
            receipt,
            latency_ms,
            ..
        } => {
            println!("delivered in {latency_ms} ms:");
            print_receipt(&receipt);
            Ok(())
        }
        ControlResponse::NotYetDelivered { state, .. } => {
            bail!("no delivery receipt within {seconds} s ({state}); the node keeps trying — watch `quickfreeze outbox`")
        }
        other => unexpected(other),
    }
}

fn reply(args: ReplyArgs) -> Result<()> {
    let status = match args.status.as_str() {
        "acknowledged" => Status::AcknowledgedByOfficer,
        "preserved" => {
            let reference = args.reference.clone().ok_or_else(|| anyhow!("--status preserved needs --reference"))?;
            let until = args.until.clone().ok_or_else(|| anyhow!("--status preserved needs --until (RFC 3339)"))?;
            let expires_at = Timestamp::parse_rfc3339(&until).map_err(|error| anyhow!("--until: {error}"))?;
            Status::Preserved { reference, expires_at }
        }
        "partially-executed" => Status::PartiallyExecuted { explanation: args.note.clone() },
        "refused" => {
            let ground = match args.ground.as_deref() {
                Some("political-offence") => RefusalGround::PoliticalOffence,
                Some("sovereignty") => RefusalGround::Sovereignty,
                Some("security") => RefusalGround::Security,
                Some("public-order") => RefusalGround::PublicOrder,
                Some("other-essential-interests") => RefusalGround::OtherEssentialInterests,
                Some("other") => RefusalGround::Other,
                Some(other) => bail!("--ground `{other}`: use political-offence, sovereignty, security, public-order, other-essential-interests or other"),
                None => bail!("--status refused needs --ground (Art. 29(5))"),
            };
            Status::Refused { ground, explanation: args.note.clone() }
        }
        "more-information-needed" => Status::MoreInformationNeeded { questions: args.note.clone() },
        "forwarded" => Status::ForwardedToCentralAuthority {
            authority: args.authority.clone().ok_or_else(|| anyhow!("--status forwarded needs --authority"))?,
        },
        "data-not-available" => Status::DataNotAvailable { explanation: args.note.clone() },
        other => bail!("--status `{other}`: use preserved, partially-executed, refused, more-information-needed, forwarded, data-not-available or acknowledged"),
    };
    let response = request(
        &args.target,
        &ControlRequest::Reply {
            message_id: args.id.clone(),
            status,
            note: args.note,
            officer: args.officer,
        },
    )?;
    if args.target.json {
        return print_json(&response);
    }
    match response {
        ControlResponse::Replied { status_message_id } => {
            println!("status sent for {} as message {status_message_id}", args.id);
            Ok(())
        }
        other => unexpected(other),
    }
}

fn init(args: InitArgs) -> Result<()> {
    let country =
        CountryCode::parse(&args.country).map_err(|error| anyhow!("--country: {error}"))?;
    if args.role == Role::Relay && args.authority_set.is_none() {
        // Fine: relays pin like everyone else, possibly later.
    }
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot set mode 0700", dir.display()))?;
    }
    let key_path = dir.join(files::KEY);
    let identity = Identity::generate_from_os();
    identity.write_key_file(&key_path)?;
    let config_path = dir.join(files::CONFIG);
    if !config_path.exists() {
        let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        std::fs::write(
            &config_path,
            NodeConfig::commented_toml(&absolute, &args.listen),
        )
        .with_context(|| format!("{}: cannot write", config_path.display()))?;
    }
    if let Some(pin) = args.authority_set {
        std::fs::write(dir.join(files::PIN), format!("{pin}\n"))?;
    }
    let now = Timestamp::now();
    let member = Member {
        node_id: identity.node_id(),
        country,
        authority_name: args.name,
        role: args.role,
        encryption_key: EncryptionKey(identity.encryption_public()),
        addresses: if args.address.is_empty() {
            args.listen
        } else {
            args.address
        },
        relays: Vec::new(),
        valid_from: now,
        valid_until: now.plus_ms(args.valid_days * DAY_MS),
        on_duty_contact: args.contact,
    };
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        members: [&'a Member; 1],
    }
    eprintln!("identity created in {} (key file mode 0600)", dir.display());
    eprintln!("node id:     {}", identity.node_id());
    eprintln!("fingerprint: {}", identity.node_id().fingerprint());
    eprintln!("give the entry below to the roster authority (public keys only); add `relays = [...]` if relays hold mail for you:");
    print!("{}", toml::to_string(&Entry { members: [&member] })?);
    Ok(())
}

fn load_signed(path: &Path) -> Result<SignedRoster> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    SignedRoster::from_bytes(&bytes).map_err(|error| anyhow!("{}: {error}", path.display()))
}

fn load_any_roster(path: &Path) -> Result<(Roster, Option<SignedRoster>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if let Ok(roster) = Roster::from_toml(text) {
            return Ok((roster, None));
        }
        if text.trim_start().starts_with(['#', '[']) || text.contains('=') {
            // It looks like TOML: report the TOML error, not a binary one.
            let error = Roster::from_toml(text)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            bail!("{}: {error}", path.display());
        }
    }
    let signed =
        SignedRoster::from_bytes(&bytes).map_err(|error| anyhow!("{}: {error}", path.display()))?;
    let roster = signed
        .roster_unverified()
        .map_err(|error| anyhow!("{}: {error}", path.display()))?;
    Ok((roster, Some(signed)))
}

fn roster(command: RosterCommand) -> Result<()> {
    match command {
        RosterCommand::New {
            network,
            serial,
            authorities,
            threshold,
            valid_days,
            out,
        } => {
            let now = Timestamp::now();
            let roster = Roster {
                network,
                serial,
                issued_at: now,
                expires_at: now.plus_ms(valid_days * DAY_MS),
                threshold,
                authorities,
                members: Vec::new(),
            };
            if out.exists() {
                bail!("{}: already exists; choose another --out", out.display());
            }
            let text = format!(
                "# quickfreeze roster, serial {}. Append the [[members]] entries printed by `quickfreeze init`,\n\
                 # set each member's `relays`, then sign with `quickfreeze roster sign`.\n{}",
                roster.serial,
                // Members are appended as [[members]] tables, so no inline `members = []`.
                roster
                    .to_toml()
                    .lines()
                    .filter(|line| line.trim() != "members = []")
                    .map(|line| format!("{line}\n"))
                    .collect::<String>()
            );
            std::fs::write(&out, text)
                .with_context(|| format!("{}: cannot write", out.display()))?;
            println!(
                "wrote {}; authority set fingerprint {}",
                out.display(),
                roster.authority_set_fingerprint()
            );
            Ok(())
        }
        RosterCommand::Sign {
            input,
            key,
            previous,
            out,
        } => {
            let key = AuthorityKey::read_key_file(&key)?;
            let (roster, signed) = load_any_roster(&input)?;
            let mut signed = match signed {
                Some(signed) => signed,
                None => SignedRoster::new(&roster)
                    .map_err(|error| anyhow!("{}: {error}", input.display()))?,
            };
            let previous = previous
                .map(|path| {
                    load_signed(&path).and_then(|signed| {
                        signed
                            .roster_unverified()
                            .map_err(|error| anyhow!("{}: {error}", path.display()))
                    })
                })
                .transpose()?;
            signed
                .sign(&key, previous.as_ref())
                .map_err(|error| anyhow!("{error}"))?;
            std::fs::write(&out, signed.to_bytes()?)
                .with_context(|| format!("{}: cannot write", out.display()))?;
            println!(
                "signed roster serial {} as {}; {} signature(s), {} required; written to {}",
                roster.serial,
                key.public().fingerprint(),
                signed.signatures.len(),
                roster.threshold,
                out.display()
            );
            Ok(())
        }
        RosterCommand::Verify {
            file,
            authority_set,
            previous,
        } => {
            let signed = load_signed(&file)?;
            let now = Timestamp::now();
            let roster = match (authority_set, previous) {
                (_, Some(previous)) => {
                    let previous = load_signed(&previous)?
                        .roster_unverified()
                        .map_err(|error| anyhow!("{error}"))?;
                    signed.verify_update(&previous, now)
                }
                (Some(pin), None) => signed.verify_pinned(&pin, now),
                (None, None) => signed.verify_self(now),
            }
            .map_err(|error| anyhow!("{}: {error}", file.display()))?;
            println!(
                "OK: roster `{}` serial {} with {} members, {} of {} authority signatures required, valid until {}",
                roster.network,
                roster.serial,
                roster.members.len(),
                roster.threshold,
                roster.authorities.len(),
                roster.expires_at
            );
            println!(
                "authority set fingerprint {}",
                roster.authority_set_fingerprint()
            );
            Ok(())
        }
        RosterCommand::Show { file, json } => {
            let (roster, signed) = load_any_roster(&file)?;
            if json {
                return print_json(&roster);
            }
            println!(
                "roster `{}` serial {}, issued {}, expires {}",
                roster.network, roster.serial, roster.issued_at, roster.expires_at
            );
            println!(
                "authorities: {} of {} required; set fingerprint {}",
                roster.threshold,
                roster.authorities.len(),
                roster.authority_set_fingerprint()
            );
            for key in &roster.authorities {
                println!("  {}  {}", key.fingerprint(), key);
            }
            if let Some(signed) = signed {
                println!("signatures: {}", signed.signatures.len());
            } else {
                println!("signatures: none (TOML form)");
            }
            println!(
                "{:<2}  {:<18}  {:<24}  {:<52}  authority",
                "cc", "role", "fingerprint", "node"
            );
            for member in &roster.members {
                println!(
                    "{:<2}  {:<18}  {:<24}  {:<52}  {}",
                    member.country,
                    member.role,
                    member.node_id.fingerprint(),
                    member.node_id,
                    member.authority_name
                );
            }
            Ok(())
        }
        RosterCommand::Install {
            file,
            data_dir,
            authority_set,
        } => {
            let signed = load_signed(&file)?;
            let pin_path = data_dir.join(files::PIN);
            let pin = match (authority_set, std::fs::read_to_string(&pin_path).ok()) {
                (Some(given), Some(existing)) => {
                    let existing: Fingerprint = existing.trim().parse().map_err(|error: String| anyhow!("{}: {error}", pin_path.display()))?;
                    if existing != given {
                        bail!("{}: this node already pins authority set {existing}; refusing to re-pin to {given}", pin_path.display());
                    }
                    given
                }
                (Some(given), None) => given,
                (None, Some(existing)) => existing.trim().parse().map_err(|error: String| anyhow!("{}: {error}", pin_path.display()))?,
                (None, None) => bail!("no authority set pinned for {}; pass --authority-set FINGERPRINT (read it to the roster authority over the phone)", data_dir.display()),
            };
            let now = Timestamp::now();
            let target = data_dir.join(files::ROSTER);
            let roster = match std::fs::read(&target)
                .ok()
                .and_then(|bytes| SignedRoster::from_bytes(&bytes).ok())
                .and_then(|current| current.roster_unverified().ok())
            {
                Some(current) => signed.verify_update(&current, now),
                None => signed.verify_pinned(&pin, now),
            }
            .map_err(|error| anyhow!("{}: {error}", file.display()))?;
            std::fs::write(&pin_path, format!("{pin}\n"))?;
            std::fs::write(&target, signed.to_bytes()?)
                .with_context(|| format!("{}: cannot write", target.display()))?;
            println!(
                "installed roster serial {} into {}",
                roster.serial,
                data_dir.display()
            );
            Ok(())
        }
    }
}

/// How a console command that can also work offline reaches the node's data.
enum Access {
    /// The node runs: ask it.
    Daemon(ControlClient),
    /// It does not: the store, opened directly (sled's lock keeps a node from starting meanwhile).
    Direct {
        store: crate::store::SledStore,
        log: crate::audit::AuditLog,
    },
}

impl Access {
    /// Connects to the running node, or opens its store when none runs.
    fn open(data_dir: &Path) -> Result<Access> {
        use crate::control::ClientError;
        match ControlClient::connect(data_dir, Duration::from_secs(120)) {
            Ok(client) => Ok(Access::Daemon(client)),
            Err(ClientError::NoSocket { .. } | ClientError::NotRunning { .. }) => {
                let store_dir = data_dir.join(files::STORE);
                if !store_dir.is_dir() {
                    bail!(
                        "no node is running with data directory {} and it holds no store ({} does not exist); pass the node's --data-dir",
                        data_dir.display(),
                        store_dir.display()
                    );
                }
                let config_path = data_dir.join(files::CONFIG);
                let options = if config_path.exists() {
                    NodeConfig::load(&config_path)?.store_options()
                } else {
                    crate::store::StoreOptions::default()
                };
                let store = crate::store::SledStore::open(&store_dir, &options).map_err(|error| {
                    anyhow!("the node is not running and its store could not be opened directly: {error}")
                })?;
                let log = crate::audit::AuditLog::open(&store)?;
                eprintln!(
                    "note: no node is running with {}; reading its store directly",
                    data_dir.display()
                );
                Ok(Access::Direct { store, log })
            }
            Err(other) => Err(other.into()),
        }
    }

    fn request(&mut self, request: &ControlRequest) -> Result<ControlResponse> {
        match self {
            Access::Daemon(client) => Ok(client.request(request)?),
            Access::Direct { store, log } => Ok(match request {
                ControlRequest::AuditVerify { .. } | ControlRequest::AuditExport { .. } => {
                    crate::audit::answer(log, request)
                }
                ControlRequest::Stats { since_ms } => {
                    use quickfreeze_proto::core::Store;
                    let roster = store
                        .get_roster()?
                        .ok_or_else(|| anyhow!("the store holds no roster yet"))
                        .and_then(|bytes| {
                            SignedRoster::from_bytes(&bytes)
                                .and_then(|signed| signed.roster_unverified())
                                .map_err(|error| anyhow!("the stored roster: {error}"))
                        })?;
                    crate::stats::answer(store, &roster, Timestamp(*since_ms))
                }
                _ => ControlResponse::Error {
                    message: "this command needs the running node".into(),
                },
            }),
        }
    }
}

fn audit(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify {
            expect_head,
            target,
        } => {
            let mut access = Access::open(&target.data_dir)?;
            let response = access.request(&ControlRequest::AuditVerify {
                expect_head: expect_head.clone(),
            })?;
            let ControlResponse::AuditVerified { report } = response else {
                return unexpected(response);
            };
            if target.json {
                print_json(&report)?;
            } else {
                println!("records      {}", report.records);
                println!("head         {}", report.head);
            }
            if let (Some(seq), Some(problem)) = (report.first_bad, &report.problem) {
                bail!("the audit log is NOT intact from record {seq}: {problem}. Keep a copy of the data directory as it is and report it");
            }
            if report.expected_head_found == Some(false) {
                bail!(
                    "head {} is not in the log: records were removed from its end, or the log was rewritten. Keep a copy of the data directory as it is and report it",
                    expect_head.unwrap_or_default()
                );
            }
            if !target.json {
                println!(
                    "OK           the hash chain is intact{}",
                    if expect_head.is_some() {
                        " and contains the expected head"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        AuditCommand::Export {
            since,
            out,
            data_dir,
        } => {
            let since = crate::audit::parse_since(&since, Timestamp::now())
                .map_err(|error| anyhow!("--since: {error}"))?;
            let mut writer: Box<dyn std::io::Write> = match &out {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)
                        .with_context(|| {
                            format!("{}: cannot create (it must not exist yet)", path.display())
                        })?;
                    Box::new(std::io::BufWriter::new(file))
                }
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut access = Access::open(&data_dir)?;
            let mut after = None;
            let mut written = 0u64;
            loop {
                let response = access.request(&ControlRequest::AuditExport {
                    since_ms: since.0,
                    after,
                    limit: crate::audit::MAX_EXPORT_PAGE,
                })?;
                let ControlResponse::AuditPage { lines, next_after } = response else {
                    return unexpected(response);
                };
                for line in &lines {
                    serde_json::to_writer(&mut writer, line)?;
                    writer.write_all(b"\n")?;
                    written += 1;
                }
                match next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            writer.flush()?;
            if let Some(path) = out {
                eprintln!(
                    "{written} records since {since} written to {}",
                    path.display()
                );
            }
            Ok(())
        }
    }
}

fn stats(since: &str, target: &Target) -> Result<()> {
    let since = crate::audit::parse_since(since, Timestamp::now())
        .map_err(|error| anyhow!("--since: {error}"))?;
    let mut access = Access::open(&target.data_dir)?;
    let response = access.request(&ControlRequest::Stats { since_ms: since.0 })?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::Stats { rows } = response else {
        return unexpected(response);
    };
    let time = |value: Option<f64>| {
        value.map_or_else(|| "-".to_string(), |seconds| age(seconds.round() as u64))
    };
    println!("requests since {since}; times are medians");
    println!(
        "{:<2}  {:>5}  {:>5}  {:>8}  {:>9}  {:>9}  {:>11}  {:>11}  refusals",
        "cc", "sent", "recv", "receipt", "their ack", "our ack", "their status", "our status"
    );
    for row in &rows {
        let refusals = |map: &std::collections::BTreeMap<String, u64>| {
            map.iter()
                .map(|(ground, count)| format!("{ground} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut refused = Vec::new();
        if !row.refusals_received.is_empty() {
            refused.push(format!("by them: {}", refusals(&row.refusals_received)));
        }
        if !row.refusals_given.is_empty() {
            refused.push(format!("by us: {}", refusals(&row.refusals_given)));
        }
        println!(
            "{:<2}  {:>5}  {:>5}  {:>8}  {:>9}  {:>9}  {:>11}  {:>11}  {}",
            row.country,
            row.sent,
            row.received,
            time(row.median_receipt_s),
            time(row.median_their_ack_s),
            time(row.median_our_ack_s),
            time(row.median_their_status_s),
            time(row.median_our_status_s),
            if refused.is_empty() {
                "-".to_string()
            } else {
                refused.join("; ")
            }
        );
    }
    if rows.is_empty() {
        println!("(no requests sent or received in that time)");
    }
    Ok(())
}
