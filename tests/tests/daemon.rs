//! Daemons started in this process (real libp2p on loopback, real sled in temp dirs): roster
//! spread, hostile members, the alert hook, and the demo scenario as a test.

mod common;

use std::path::Path;
use std::time::Duration;

use libp2p::Multiaddr;
use quickfreeze_keys::roster::Role;
use quickfreeze_keys::Timestamp;
use quickfreeze_node::config::{files, NodeConfig};
use quickfreeze_node::control::{ControlRequest, ControlResponse, SubmitItem, MAX_SUBMIT_BATCH};
use quickfreeze_node::network::{Network, NetworkConfig, NetworkEvent};
use quickfreeze_proto::envelope::Envelope;
use quickfreeze_proto::frame::{Batch, Frame};
use quickfreeze_proto::payload::{example_free_text, example_preservation, Payload};

use common::{ask, fixture, send_and_wait, wait_delivered};

const DAY_MS: u64 = 24 * 3600 * 1000;

async fn roster_serial(dir: &Path) -> u64 {
    match ask(dir, ControlRequest::Status).await {
        ControlResponse::Status { report } => report.roster_serial,
        other => panic!("status failed: {other:?}"),
    }
}

/// Bounded wait (generous: the default suite runs this beside CPU-bound tests) until the node
/// in `dir` runs roster `serial`.
async fn wait_for_serial(dir: &Path, serial: u64) {
    let mut seen = 0;
    for _ in 0..600 {
        seen = roster_serial(dir).await;
        if seen == serial {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        serial,
        "{} did not pick up serial {serial}",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_update_spreads_to_every_node() {
    let fixture = fixture(&["DE", "FR", "NL"], vec![]);
    let mut nodes = Vec::new();
    for index in 0..3 {
        nodes.push(fixture.start(index).await);
    }
    // DE's operator installs serial 2 and restarts DE; FR and NL learn it from traffic alone.
    let mut newer = fixture.roster.clone();
    newer.serial = 2;
    fixture.install(&newer, Some(0));
    let de = nodes.remove(0);
    de.stop().await.expect("stop");
    let de = fixture.start(0).await;
    assert_eq!(roster_serial(&fixture.dirs[0]).await, 2);
    send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::FreeText(example_free_text()),
    )
    .await;
    // FR fetches serial 2 from DE after DE's request arrived (a separate exchange that may end
    // after the delivery): wait for it, so that FR's next request carries serial 2 to NL.
    wait_for_serial(&fixture.dirs[1], 2).await;
    send_and_wait(
        &fixture.dirs[1],
        "NL",
        Payload::FreeText(example_free_text()),
    )
    .await;
    for dir in &fixture.dirs {
        wait_for_serial(dir, 2).await;
    }
    de.stop().await.expect("stop");
    for node in nodes {
        node.stop().await.expect("stop");
    }
}

/// A member without addresses (it listens nowhere) is reachable only over the links it opens.
/// It keeps one to its relay, so the relay can deliver what others hand it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_nobody_can_dial_gets_its_mail_through_its_relay() {
    let mut fixture = fixture(&["DE", "FR", "NL"], vec![]);
    let relay = fixture.identities[2].node_id();
    fixture.roster.members[2].role = Role::Relay;
    fixture.roster.members[1].addresses.clear();
    fixture.roster.members[1].relays = vec![relay];
    let roster = fixture.roster.clone();
    fixture.install(&roster, None);
    let fr_config = fixture.dirs[1].join(files::CONFIG);
    let mut config = NodeConfig::load(&fr_config).expect("config");
    config.listen.clear();
    std::fs::write(&fr_config, toml::to_string(&config).expect("config")).expect("config");
    let mut nodes = Vec::new();
    for index in [2, 1, 0] {
        nodes.push(fixture.start(index).await);
    }
    send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::Preservation(example_preservation()),
    )
    .await;
    for node in nodes {
        node.stop().await.expect("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_is_refused_and_the_node_keeps_serving() {
    // Three members: DE and FR run daemons; XX (here BR) is a member whose node misbehaves.
    let fixture = fixture(&["DE", "FR", "BR"], vec![]);
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let first = send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::Preservation(example_preservation()),
    )
    .await;

    let hostile_identity = &fixture.identities[2];
    let mut hostile = Network::new(
        hostile_identity.to_libp2p_keypair(),
        NetworkConfig {
            listen_addresses: vec![fixture.addresses[2].parse::<Multiaddr>().expect("address")],
            ..NetworkConfig::default()
        },
    )
    .expect("network");
    let fr_peer = fixture.roster.members[1]
        .node_id
        .to_peer_id()
        .expect("peer");
    let fr_address: Multiaddr = fixture.addresses[1].parse().expect("address");
    hostile.set_allowed_peers([(fr_peer, vec![fr_address])]);

    // 1: garbage bytes. 2: FR's own stored envelope from DE, replayed with one ciphertext bit
    // flipped. 3: a truncated batch.
    let stored = match ask(
        &fixture.dirs[0],
        ControlRequest::Show {
            message_id: first.clone(),
        },
    )
    .await
    {
        ControlResponse::Message { detail } => detail,
        other => panic!("show failed: {other:?}"),
    };
    assert_eq!(stored.direction, "outbound");
    let sealed = {
        // Seal a fresh envelope from the hostile member to FR, then tamper with it.
        let fr_member = fixture.roster.members[1].clone();
        let params = quickfreeze_proto::envelope::SealParams {
            message_id: quickfreeze_proto::MessageId([7; 16]),
            created_at: Timestamp::now(),
            expires_at: Timestamp::now().plus_ms(DAY_MS),
            priority: quickfreeze_proto::Priority::Urgent,
        };
        let mut envelope = quickfreeze_proto::envelope::seal(
            hostile_identity,
            &fr_member,
            &Payload::FreeText(example_free_text()),
            params,
            &mut rand::rng(),
        )
        .expect("seal");
        let last = envelope.ciphertext.len() - 1;
        envelope.ciphertext[last] ^= 1;
        envelope
    };
    let tampered = Batch::new(1, vec![Frame::Deliver(sealed.clone())])
        .to_bytes()
        .expect("encode");
    let mut truncated = tampered.clone();
    truncated.truncate(truncated.len() / 2);
    let frames = vec![vec![0xFFu8; 512], tampered, truncated];
    let mut answers = Vec::new();
    for frame in frames {
        hostile.send_request(fr_peer, frame).expect("send");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while answers.len() < 3 {
        let event = tokio::time::timeout_at(deadline, hostile.next_event())
            .await
            .expect("answers in time");
        match event {
            NetworkEvent::Response { frame, .. } => {
                answers.push(Batch::from_bytes(&frame).expect("a refusal is a batch"))
            }
            NetworkEvent::OutboundFailure { error, .. } => {
                panic!("hostile request failed instead of being refused: {error}")
            }
            _ => {}
        }
    }
    for answer in &answers {
        assert!(
            matches!(
                answer.frames.as_slice(),
                [Frame::Refused {
                    permanent: true,
                    ..
                }]
            ),
            "expected a permanent refusal, got {answer:?}"
        );
    }
    // FR's `peers` names what it refused from BR, and nothing from DE.
    let ControlResponse::Peers { rows: peers } = ask(&fixture.dirs[1], ControlRequest::Peers).await
    else {
        panic!("peers failed");
    };
    let refused_from = |country: &str| -> u64 {
        peers
            .iter()
            .find(|row| row.country == country)
            .map(|row| row.misbehaviour.values().sum())
            .unwrap_or_else(|| panic!("no {country} row in {peers:?}"))
    };
    assert!(
        refused_from("BR") >= 1,
        "BR's refused frames are counted: {peers:?}"
    );
    assert_eq!(refused_from("DE"), 0, "{peers:?}");
    // The Prometheus exposition shows the same counts, labelled by member (not by address).
    let ControlResponse::MetricsSnapshot { snapshot } =
        ask(&fixture.dirs[1], ControlRequest::MetricsSnapshot).await
    else {
        panic!("metrics snapshot failed");
    };
    let text = quickfreeze_node::prometheus::render(&snapshot);
    let br = peers
        .iter()
        .find(|row| row.country == "BR")
        .expect("BR row");
    for (kind, count) in &br.misbehaviour {
        let line = format!(
            "quickfreeze_member_misbehaviour_total{{peer=\"{}\",country=\"BR\",kind=\"{kind}\"}} {count}",
            br.node_id
        );
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }
    assert!(
        !text.contains("country=\"DE\""),
        "DE did nothing wrong: {text}"
    );
    // Nothing from the hostile member reached FR's inbox; FR still serves DE.
    let ControlResponse::Inbox { rows } =
        ask(&fixture.dirs[1], ControlRequest::Inbox { limit: 100 }).await
    else {
        panic!("inbox failed");
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].country, "DE");
    assert!(Envelope::from_bytes(&sealed.to_bytes()).is_ok());
    send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::FreeText(example_free_text()),
    )
    .await;
    drop(hostile);
    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_submission_answers_each_item_and_refuses_only_the_bad_ones() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let good = |payload: Payload| SubmitItem {
        recipient: "FR".into(),
        payload,
    };
    let mut invalid = example_preservation();
    invalid.header.case_reference.clear();
    let items = vec![
        good(Payload::Preservation(example_preservation())),
        SubmitItem {
            recipient: "XX".into(),
            payload: Payload::Preservation(example_preservation()),
        },
        good(Payload::Preservation(invalid)),
        good(Payload::FreeText(example_free_text())),
    ];
    let results = match ask(&fixture.dirs[0], ControlRequest::SubmitBatch { items }).await {
        ControlResponse::SubmittedBatch { results } => results,
        other => panic!("batch refused: {other:?}"),
    };
    assert_eq!(results.len(), 4, "one answer per item: {results:?}");
    let accepted: Vec<String> = results
        .iter()
        .filter_map(|result| match result {
            ControlResponse::Submitted { message_id, .. } => Some(message_id.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(results[0], ControlResponse::Submitted { .. }));
    assert!(
        matches!(&results[1], ControlResponse::Error { message } if message.contains("XX")),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], ControlResponse::Error { .. }),
        "{:?}",
        results[2]
    );
    assert!(matches!(results[3], ControlResponse::Submitted { .. }));
    for message_id in accepted {
        wait_delivered(&fixture.dirs[0], &message_id).await;
    }
    // Over the limit: refused whole, nothing stored.
    let too_many = vec![good(Payload::FreeText(example_free_text())); MAX_SUBMIT_BATCH + 1];
    match ask(
        &fixture.dirs[0],
        ControlRequest::SubmitBatch { items: too_many },
    )
    .await
    {
        ControlResponse::Error { message } => assert!(message.contains("split"), "{message}"),
        other => panic!("an oversized batch was accepted: {other:?}"),
    }
    match ask(&fixture.dirs[0], ControlRequest::Outbox { limit: 1000 }).await {
        ControlResponse::Outbox { rows } => assert_eq!(rows.len(), 2, "{rows:?}"),
        other => panic!("outbox: {other:?}"),
    }
    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_hook_runs_for_a_new_request() {
    let root = tempfile::tempdir().expect("tempdir");
    let log = root.path().join("alerts.log");
    let hook = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "echo \"$QF_EVENT $QF_PRIORITY $QF_MESSAGE_ID\" >> {}",
            log.display()
        ),
    ];
    let fixture = fixture(&["DE", "FR"], hook);
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let id = send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::Preservation(example_preservation()),
    )
    .await;
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(&format!("received urgent {id}")),
        "alert log: {text:?}"
    );
    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");
}

#[test]
fn the_demo_shows_custody_delivery_and_status() {
    let output = std::process::Command::new(common::binary())
        .arg("demo")
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("signed custody receipt from BE"),
        "{stdout}"
    );
    assert!(
        stdout.contains("signed delivered receipt from NL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DE outbox: preserved (reference NL-PRES-2026-0412"),
        "{stdout}"
    );
    assert!(stdout.contains("(via relay)"), "{stdout}");
}

/// DE's backoff for FR after a cut: (consecutive failures, the earliest instant the next
/// attempt may come, as a lower bound: `peers` shows whole seconds).
async fn backoff_of(dir: &Path, peer: &str) -> (u32, Option<Timestamp>) {
    let ControlResponse::Peers { rows } = ask(dir, ControlRequest::Peers).await else {
        panic!("peers refused");
    };
    let row = rows
        .into_iter()
        .find(|row| row.node_id == peer)
        .expect("peer listed");
    let retry_at = row
        .retry_at
        .map(|text| Timestamp::parse_rfc3339(&text).expect("rfc 3339"));
    (row.consecutive_failures, retry_at)
}

async fn fault(dir: &Path, peer: &str, cut: bool) {
    let request = ControlRequest::Fault {
        peers: vec![peer.to_owned()],
        drop_outbound: cut,
        drop_inbound: cut,
        delay_ms: 0,
    };
    assert!(matches!(
        ask(dir, request).await,
        ControlResponse::FaultsSet { .. }
    ));
}

/// Cuts DE–FR, lets DE back off from FR until its next attempt is at least 2 s away, heals,
/// and returns (whether the request was delivered within 1.2 s of the heal, the time to
/// delivery from the heal). Retries start at 400 ms and are capped at 30 s.
async fn delivery_after_heal(probe_ms: u64) -> (bool, Duration) {
    let fixture = fixture(&["DE", "FR"], vec![]);
    for dir in &fixture.dirs {
        let path = dir.join(files::CONFIG);
        let mut config = NodeConfig::load(&path).expect("config");
        config.retry.base_ms = 400;
        config.retry.cap_ms = 30_000;
        config.retry.reconnect_probe_ms = probe_ms;
        config.testing.fault_injection = true;
        std::fs::write(&path, toml::to_string(&config).expect("config")).expect("config");
    }
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    let de_id = fixture.identities[0].node_id().to_string();
    let fr_id = fixture.identities[1].node_id().to_string();
    fault(de_dir, &fr_id, true).await;
    fault(fr_dir, &de_id, true).await;
    let ControlResponse::Submitted { message_id, .. } = ask(
        de_dir,
        ControlRequest::Submit {
            recipient: "FR".into(),
            payload: Box::new(Payload::Preservation(example_preservation())),
        },
    )
    .await
    else {
        panic!("submit refused");
    };
    // Back off until the next attempt is at least 2 s away (the 5th failure or later).
    let mut waited = 0;
    let next_attempt = loop {
        let (failures, retry_at) = backoff_of(de_dir, &fr_id).await;
        let now = Timestamp::now();
        if let Some(at) = retry_at.filter(|at| failures >= 4 && at.millis_since(now) >= 2_000) {
            break at;
        }
        waited += 1;
        assert!(
            waited < 600,
            "DE never backed off from FR ({failures} failures)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    fault(de_dir, &fr_id, false).await;
    fault(fr_dir, &de_id, false).await;
    let healed = std::time::Instant::now();
    let healed_at = Timestamp::now();
    assert!(
        next_attempt.millis_since(healed_at) >= 1_500,
        "too slow to heal"
    );
    let quick = matches!(
        ask(
            de_dir,
            ControlRequest::WaitDelivered {
                message_id: message_id.clone(),
                timeout_ms: 1_200,
            },
        )
        .await,
        ControlResponse::Delivered { .. }
    );
    // Delivered in the end either way: DE's own retry comes within the 30 s cap.
    match ask(
        de_dir,
        ControlRequest::WaitDelivered {
            message_id,
            timeout_ms: 40_000,
        },
    )
    .await
    {
        ControlResponse::Delivered { receipt, .. } => assert!(receipt.verified),
        other => panic!("not delivered after the heal: {other:?}"),
    }
    let took = healed.elapsed();
    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");
    (quick, took)
}

/// After a partition heals, the reconnect probe finds the peer long before the backoff ends:
/// DE's next attempt was at least 1.5 s after the heal, so only the probe (every 100–200 ms)
/// can deliver within 1.2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconnect_probe_delivers_soon_after_a_heal_despite_a_long_backoff() {
    let (quick, took) = delivery_after_heal(200).await;
    assert!(quick, "delivered only {took:?} after the heal");
}

/// The control: without the probe the same message waits for DE's backoff (so the test above
/// measures the probe, not something else that reconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_probe_a_healed_peer_waits_for_the_backoff() {
    let (quick, took) = delivery_after_heal(0).await;
    assert!(
        !quick,
        "delivered {took:?} after the heal without the probe"
    );
    assert!(took >= Duration::from_millis(1_200), "{took:?}");
}
