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
use quickfreeze_keys::roster::{Member, Role, Roster, SignedRoster};
use quickfreeze_keys::{AuthorityKey, CountryCode, EncryptionKey, Identity, NodeId, Timestamp};
use quickfreeze_proto::payload::{example_emergency, example_preservation, Payload, Status};

use crate::config::{files, NodeConfig};
use crate::control::{ControlClient, ControlRequest, ControlResponse, MessageDetail, ReceiptView};
use crate::daemon::{self, RunningNode};

const DAY_MS: u64 = 24 * 3600 * 1000;

struct DemoNode {
    country: &'static str,
    name: &'static str,
    role: Role,
    dir: PathBuf,
    port: u16,
    id: NodeId,
}

fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn config_for(node: &DemoNode) -> NodeConfig {
    let mut config = NodeConfig {
        data_dir: node.dir.clone(),
        listen: vec![format!("/ip4/127.0.0.1/tcp/{}", node.port)],
        ..NodeConfig::default()
    };
    // Quick retries so the demo's offline node is found again within seconds.
    config.retry.base_ms = 200;
    config.retry.cap_ms = 2_000;
    config.retry.relay_after_failures = 1;
    config.retry.custody_recheck_ms = 2_000;
    config
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
    let mut rng = rand::rng();
    let authority = AuthorityKey::generate(&mut rng);
    let specs = [
        ("BE", "Central authority relay (BE)", Role::Relay),
        ("DE", "24/7 point of contact (DE)", Role::PointOfContact),
        ("FR", "24/7 point of contact (FR)", Role::PointOfContact),
        ("NL", "24/7 point of contact (NL)", Role::PointOfContact),
    ];
    let mut nodes = Vec::new();
    let mut identities = Vec::new();
    for (country, name, role) in specs {
        let dir = base.join(country.to_lowercase());
        if dir.join(files::KEY).exists() {
            bail!("{} already holds a node; use an empty --dir", dir.display());
        }
        std::fs::create_dir_all(&dir)?;
        let identity = Identity::generate(&mut rng);
        identity.write_key_file(&dir.join(files::KEY))?;
        nodes.push(DemoNode {
            country,
            name,
            role,
            dir,
            port: free_port()?,
            id: identity.node_id(),
        });
        identities.push(identity);
    }
    let now = Timestamp::now();
    let relay = nodes[0].id;
    let members = nodes
        .iter()
        .zip(&identities)
        .map(|(node, identity)| -> Result<Member> {
            Ok(Member {
                node_id: node.id,
                country: CountryCode::parse(node.country).map_err(|error| anyhow!(error))?,
                authority_name: node.name.into(),
                role: node.role,
                encryption_key: EncryptionKey(identity.encryption_public()),
                addresses: vec![format!("/ip4/127.0.0.1/tcp/{}", node.port)],
                relays: if node.role == Role::Relay {
                    vec![]
                } else {
                    vec![relay]
                },
                valid_from: Timestamp(now.0 - DAY_MS),
                valid_until: now.plus_ms(365 * DAY_MS),
                on_duty_contact: format!("duty officer {}, +00 000 000", node.country),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let roster = Roster {
        network: "quickfreeze-demo".into(),
        serial: 1,
        issued_at: now,
        expires_at: now.plus_ms(30 * DAY_MS),
        threshold: 1,
        authorities: vec![authority.public()],
        members,
    };
    let mut signed = SignedRoster::new(&roster)?;
    signed.sign(&authority, None)?;
    let signed_bytes = signed.to_bytes()?;
    let pin = roster.authority_set_fingerprint();
    for node in &nodes {
        std::fs::write(node.dir.join(files::ROSTER), &signed_bytes)?;
        std::fs::write(node.dir.join(files::PIN), format!("{pin}\n"))?;
    }
    println!(
        "roster serial 1 signed by the roster authority {} (authority set {pin})",
        authority.public().fingerprint()
    );
    for node in &nodes {
        println!(
            "  {}  {:<30}  127.0.0.1:{:<5}  {}",
            node.country, node.name, node.port, node.id
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut running: Vec<Option<RunningNode>> = Vec::new();
    for node in &nodes {
        running.push(Some(
            runtime.block_on(async { daemon::start(config_for(node)).await })?,
        ));
    }
    let result = (|| -> Result<()> {
        let (de, fr, nl) = (&nodes[1], &nodes[2], &nodes[3]);

        println!("\n1. DE sends an emergency disclosure request (CETS 224 Art. 9) to FR, which is online");
        let message_id = submit(&de.dir, "FR", Payload::Emergency(example_emergency()))?;
        println!(
            "    accepted as {message_id} (stored durably at DE before this line was printed)"
        );
        let (receipt, latency_ms) = wait_delivered(&de.dir, &message_id, 30)?;
        print_receipt(&receipt, latency_ms);
        match client(&fr.dir)?.request(&ControlRequest::Ack {
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
        let preservation = submit(&de.dir, "NL", Payload::Preservation(example_preservation()))?;
        println!("    accepted as {preservation}");
        let custody = wait_for_detail(&de.dir, &preservation, |detail| {
            detail.receipts.iter().any(|r| r.kind == "custody")
        })?;
        println!("    direct delivery fails; the BE relay takes custody of the sealed envelope (it cannot read it):");
        for receipt in custody.receipts.iter().filter(|r| r.kind == "custody") {
            print_receipt(receipt, 0);
        }

        println!("\n3. NL comes back; the relay delivers and carries NL's receipt back to DE");
        running[nl_index] = Some(runtime.block_on(async { daemon::start(config_for(nl)).await })?);
        let (receipt, latency_ms) = wait_delivered(&de.dir, &preservation, 60)?;
        print_receipt(&receipt, latency_ms);
        match client(&nl.dir)?.request(&ControlRequest::Inbox { limit: 10 })? {
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
        match client(&nl.dir)?.request(&ControlRequest::Reply {
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
        let detail = wait_for_detail(&de.dir, &preservation, |detail| {
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
