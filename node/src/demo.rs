//! `quickfreeze demo`: a small local network that sends a real request and shows its receipt.
//!
//! Four nodes run in this process on loopback TCP, each with its own key file, sled database and
//! control socket: points of contact for DE, FR and NL, and a relay run by a central authority in
//! BE. The demo signs a roster, starts the nodes, and drives them through the same console client
//! the `quickfreeze` commands use: DE sends an emergency request to FR and shows FR's signed
//! delivery receipt; then, with NL offline, DE sends a preservation request that the relay takes
//! into custody (custody receipt), NL comes back, the relay delivers it (NL's delivery receipt
//! reaches DE through the relay), and NL's officer replies that the data is preserved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{AuthorityKey, CountryCode, Timestamp};
use quickfreeze_proto::payload::{example_emergency, example_preservation, Payload, Status};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::config::{files, NodeConfig};
use crate::control::{ControlClient, ControlRequest, ControlResponse, MessageDetail, ReceiptView};
use crate::daemon::{self, RunningNode};
use crate::testnet::{NodePlan, Testnet};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The demo's nodes: directory label, country, what the officer reads, role.
const SPECS: [(&str, &str, &str, Role); 4] = [
    ("be", "BE", "Central authority relay (BE)", Role::Relay),
    (
        "de",
        "DE",
        "24/7 point of contact (DE)",
        Role::PointOfContact,
    ),
    (
        "fr",
        "FR",
        "24/7 point of contact (FR)",
        Role::PointOfContact,
    ),
    (
        "nl",
        "NL",
        "24/7 point of contact (NL)",
        Role::PointOfContact,
    ),
];

/// Quick retries so the demo's offline node is found again within seconds.
fn quick_retries(config: &mut NodeConfig) {
    config.retry.base_ms = 200;
    config.retry.cap_ms = 2_000;
    config.retry.relay_after_failures = 1;
    config.retry.custody_recheck_ms = 2_000;
}

fn load_config(dir: &Path) -> Result<NodeConfig> {
    NodeConfig::load(&dir.join(files::CONFIG))
        .with_context(|| format!("reading the demo config in {}", dir.display()))
}

fn client(dir: &Path) -> Result<ControlClient> {
    for _ in 0..100 {
        match ControlClient::connect(dir, Duration::from_secs(30)) {
            Ok(client) => return Ok(client),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Ok(ControlClient::connect(dir, Duration::from_secs(30))?)
}

fn submit(dir: &Path, to: &str, payload: Payload) -> Result<String> {
    match client(dir)?.request(&ControlRequest::Submit {
        recipient: to.into(),
        payload: Box::new(payload),
    })? {
        ControlResponse::Submitted { message_id, .. } => Ok(message_id),
        ControlResponse::Error { message } => bail!("submit refused: {message}"),
        other => bail!("unexpected answer: {other:?}"),
    }
}

fn wait_delivered(dir: &Path, message_id: &str, seconds: u64) -> Result<(ReceiptView, u64)> {
    let mut console = client(dir)?;
    console.set_timeout(Duration::from_secs(seconds + 5))?;
    match console.request(&ControlRequest::WaitDelivered {
        message_id: message_id.into(),
        timeout_ms: seconds * 1000,
    })? {
        ControlResponse::Delivered {
            receipt,
            latency_ms,
            ..
        } => Ok((receipt, latency_ms)),
        other => bail!("no delivery receipt within {seconds} s: {other:?}"),
    }
}

fn wait_for_detail(
    dir: &Path,
    message_id: &str,
    done: impl Fn(&MessageDetail) -> bool,
) -> Result<MessageDetail> {
    for _ in 0..300 {
        if let ControlResponse::Message { detail } =
            client(dir)?.request(&ControlRequest::Show {
                message_id: message_id.into(),
            })?
        {
            if done(&detail) {
                return Ok(*detail);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("message {message_id} did not reach the expected state within 30 s")
}

fn print_receipt(receipt: &ReceiptView, latency_ms: u64) {
    println!(
        "    signed {} receipt from {} after {latency_ms} ms",
        receipt.kind, receipt.signer_country
    );
    println!("      signer   {}", receipt.signer);
    println!("      stored   {}", receipt.received_at);
    println!("      envelope sha256 {}", receipt.envelope_digest);
    println!(
        "      signature {}",
        if receipt.verified {
            "verified against the roster"
        } else {
            "DOES NOT VERIFY"
        }
    );
}

/// Runs the demo. With `dir`, keeps the files there; otherwise uses a temporary directory.
pub fn run_demo(dir: Option<PathBuf>) -> Result<()> {
    let temp;
    let base = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("quickfreeze-demo-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!(
        "quickfreeze demo: four nodes on loopback, files in {}",
        base.display()
    );
    for (label, ..) in SPECS {
        let dir = base.join(label);
        if dir.join(files::KEY).exists() {
            bail!("{} already holds a node; use an empty --dir", dir.display());
        }
    }
    let plans = SPECS
        .iter()
        .map(|(label, country, _, role)| {
            Ok(NodePlan {
                label: (*label).to_owned(),
                country: CountryCode::parse(country).map_err(|error| anyhow!(error))?,
                role: *role,
                relays: if *role == Role::Relay {
                    vec![]
                } else {
                    vec![0]
                },
                dialable: true,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rng = ChaCha20Rng::from_rng(&mut rand::rng());
    let authority = AuthorityKey::generate(&mut rng);
    let net = Testnet::build_signed_by(
        &base,
        "quickfreeze-demo",
        &plans,
        &mut rng,
        &authority,
        |_, config| quick_retries(config),
    )
    .map_err(|error| anyhow!("cannot write the demo network: {error}"))?;
    println!(
        "roster serial 1 signed by the roster authority {} (authority set {})",
        authority.public().fingerprint(),
        net.roster.authority_set_fingerprint()
    );
    for (node, (_, _, name, _)) in net.nodes.iter().zip(SPECS) {
        println!(
            "  {}  {:<30}  {:<28}  {}",
            node.country, name, node.listen, node.node_id
        );
    }
    let dirs: Vec<&Path> = net
        .nodes
        .iter()
        .map(|node| node.data_dir.as_path())
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut running: Vec<Option<RunningNode>> = Vec::new();
    for dir in &dirs {
        let config = load_config(dir)?;
        running.push(Some(runtime.block_on(daemon::start(config))?));
    }
    let result = (|| -> Result<()> {
        let (de, fr, nl) = (dirs[1], dirs[2], dirs[3]);

        println!("\n1. DE sends an emergency disclosure request (CETS 224 Art. 9) to FR, which is online");
        let message_id = submit(de, "FR", Payload::Emergency(example_emergency()))?;
        println!(
            "    accepted as {message_id} (stored durably at DE before this line was printed)"
        );
        let (receipt, latency_ms) = wait_delivered(de, &message_id, 30)?;
        print_receipt(&receipt, latency_ms);
        match client(fr)?.request(&ControlRequest::Ack {
            message_id: message_id.clone(),
            officer: "Officer Martin".into(),
        })? {
            ControlResponse::Acknowledged { .. } => {
                println!("    FR's officer on duty acknowledges it")
            }
            other => bail!("acknowledge failed: {other:?}"),
        }

        println!(
            "\n2. NL is offline; DE sends an urgent preservation request (Budapest Art. 29) to NL"
        );
        let nl_index = 3;
        if let Some(node) = running[nl_index].take() {
            runtime.block_on(node.stop())?;
        }
        let preservation = submit(de, "NL", Payload::Preservation(example_preservation()))?;
        println!("    accepted as {preservation}");
        let custody = wait_for_detail(de, &preservation, |detail| {
            detail.receipts.iter().any(|r| r.kind == "custody")
        })?;
        println!("    direct delivery fails; the BE relay takes custody of the sealed envelope (it cannot read it):");
        for receipt in custody.receipts.iter().filter(|r| r.kind == "custody") {
            print_receipt(receipt, 0);
        }

        println!("\n3. NL comes back; the relay delivers and carries NL's receipt back to DE");
        running[nl_index] = Some(runtime.block_on(daemon::start(load_config(nl)?))?);
        let (receipt, latency_ms) = wait_delivered(de, &preservation, 60)?;
        print_receipt(&receipt, latency_ms);
        match client(nl)?.request(&ControlRequest::Inbox { limit: 10 })? {
            ControlResponse::Inbox { rows } => {
                for row in rows {
                    println!(
                        "    NL inbox: {} {} from {}: {}{}",
                        row.priority,
                        row.kind,
                        row.country,
                        row.summary,
                        if row.via_relay.is_some() {
                            " (via relay)"
                        } else {
                            ""
                        }
                    );
                }
            }
            other => bail!("unexpected answer: {other:?}"),
        }

        println!("\n4. NL's officer preserves the data and replies; DE sees the status");
        let until = Timestamp::now().plus_ms(90 * DAY_MS);
        match client(nl)?.request(&ControlRequest::Reply {
            message_id: preservation.clone(),
            status: Status::Preserved {
                reference: "NL-PRES-2026-0412".into(),
                expires_at: until,
            },
            note: "Preserved at the hosting provider; awaiting your MLA request.".into(),
            officer: "Officer de Vries".into(),
        })? {
            ControlResponse::Replied { .. } => {}
            other => bail!("reply failed: {other:?}"),
        }
        let detail = wait_for_detail(de, &preservation, |detail| {
            !detail.status_history.is_empty()
        })?;
        for status in &detail.status_history {
            println!("    DE outbox: {}", status.status);
            println!(
                "      by {} at {}: {}",
                status.officer, status.received_at, status.note
            );
        }
        Ok(())
    })();
    for node in running.into_iter().flatten() {
        if let Err(error) = runtime.block_on(node.stop()) {
            eprintln!("warning: a demo node stopped with an error: {error}");
        }
    }
    result?;
    println!("\ndemo finished: every request delivered exactly once, with signed receipts.");
    Ok(())
}
