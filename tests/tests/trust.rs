//! Trust changes on a running network of real nodes (in-process daemons, real libp2p on
//! loopback, real sled, the real CLI for `roster install` and `roster revoke`): a roster installed
//! at one point of contact of an idle network reaches every node's `status` within 10 s, and a
//! revocation notice installed at one node spreads, after which the revoked member's next
//! request is not delivered.

use std::path::Path;
use std::time::{Duration, Instant};

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::AuthorityKey;
use quickfreeze_node::config::files;
use quickfreeze_node::control::{ControlRequest, ControlResponse, StatusReport};
use quickfreeze_node::daemon::{self, RunningNode};
use quickfreeze_node::testnet::{NodePlan, Testnet};
use quickfreeze_proto::payload::{example_free_text, Payload};

mod common;
use common::{ask, run_ok, send_and_wait};

/// How long a change may take to reach every node of a small idle network.
const SPREAD_LIMIT: Duration = Duration::from_secs(10);

struct Net {
    _root: tempfile::TempDir,
    authority: AuthorityKey,
    net: Testnet,
}

/// A relay (BE) and three points of contact (DE, FR, NL) that name it as their relay, so each
/// keeps a connection to it and nothing else: the only paths are through the relay.
fn relay_star() -> Net {
    let root = tempfile::tempdir().expect("tempdir");
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let authority = AuthorityKey::generate(&mut rng);
    let mut plans = vec![NodePlan {
        role: Role::Relay,
        ..NodePlan::point_of_contact("be", "BE").expect("plan")
    }];
    for country in ["DE", "FR", "NL"] {
        plans.push(NodePlan {
            relays: vec![0],
            ..NodePlan::point_of_contact(&country.to_lowercase(), country).expect("plan")
        });
    }
    let net = Testnet::build_signed_by(
        root.path(),
        "trust-tests",
        &plans,
        &mut rng,
        &authority,
        |_, config| {
            config.retry.base_ms = 100;
            config.retry.cap_ms = 1_000;
        },
    )
    .expect("test network");
    Net {
        _root: root,
        authority,
        net,
    }
}

async fn start_all(net: &Testnet) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for node in &net.nodes {
        let config = quickfreeze_node::config::NodeConfig::load(&node.data_dir.join(files::CONFIG))
            .expect("config");
        nodes.push(daemon::start(config).await.expect("node starts"));
    }
    nodes
}

async fn status(dir: &Path) -> StatusReport {
    match ask(dir, ControlRequest::Status).await {
        ControlResponse::Status { report } => *report,
        other => panic!("status failed: {other:?}"),
    }
}

/// Waits until `check` holds for the status of every node in `dirs`; returns how long it took.
async fn wait_all(dirs: &[&Path], check: impl Fn(&StatusReport) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for dir in dirs {
            if !check(&status(dir).await) {
                all = false;
                break;
            }
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < SPREAD_LIMIT,
            "not every node got there within {SPREAD_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until every point of contact holds its relay link, so the network is idle
/// but connected as it is in service.
async fn wait_relay_links(dirs: &[&Path]) {
    let started = Instant::now();
    for dir in &dirs[1..] {
        while status(dir).await.connected_peers == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "relay links never came up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_installed_at_one_idle_node_reaches_every_status_within_ten_seconds() {
    let fixture = relay_star();
    let nodes = start_all(&fixture.net).await;
    let dirs: Vec<&Path> = fixture
        .net
        .nodes
        .iter()
        .map(|node| node.data_dir.as_path())
        .collect();
    wait_relay_links(&dirs).await;
    for dir in &dirs {
        assert_eq!(status(dir).await.roster_serial, 1);
    }
    let mut newer = fixture.net.roster.clone();
    newer.serial = 2;
    newer.members[1].on_duty_contact = "+49 611 55-2".into();
    let mut signed = quickfreeze_keys::SignedRoster::new(&newer).expect("roster");
    signed.sign(&fixture.authority, None).expect("sign");
    let file = fixture.net.root.join("roster-2.signed");
    std::fs::write(&file, signed.to_bytes().expect("encode")).expect("write");
    // Installed at DE, a point of contact: it reaches the others only through the relay.
    let printed = run_ok(
        dirs[1],
        &[
            "roster",
            "install",
            file.to_str().expect("utf-8"),
            "--data-dir",
            dirs[1].to_str().expect("utf-8"),
        ],
    );
    assert!(
        printed.contains("running node switched to roster serial 2"),
        "{printed}"
    );
    let took = wait_all(&dirs, |report| report.roster_serial == 2).await;
    eprintln!(
        "roster serial 2 reached all {} nodes in {took:?}",
        dirs.len()
    );
    for node in nodes {
        node.stop().await.expect("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_spreads_and_the_revoked_members_next_request_is_refused() {
    let fixture = relay_star();
    let nodes = start_all(&fixture.net).await;
    let dirs: Vec<&Path> = fixture
        .net
        .nodes
        .iter()
        .map(|node| node.data_dir.as_path())
        .collect();
    wait_relay_links(&dirs).await;
    // Before: FR's requests to DE are delivered.
    send_and_wait(dirs[2], "DE", Payload::FreeText(example_free_text())).await;

    let work = fixture.net.root.join("authority");
    std::fs::create_dir_all(&work).expect("dir");
    let key = work.join("authority.key");
    fixture.authority.write_key_file(&key).expect("key file");
    let notice = work.join("revoke-fr.notice");
    let roster_file = dirs[1].join(files::ROSTER);
    let printed = run_ok(
        &work,
        &[
            "roster",
            "revoke",
            "--member",
            "FR",
            "--reason",
            "server seized; key presumed copied",
            "--serial",
            "7",
            "--key",
            key.to_str().expect("utf-8"),
            "--roster",
            roster_file.to_str().expect("utf-8"),
            "--out",
            notice.to_str().expect("utf-8"),
        ],
    );
    assert!(printed.contains("complete"), "{printed}");
    // Installed at NL; it must reach DE and the relay by itself.
    let printed = run_ok(
        &work,
        &[
            "roster",
            "revoke",
            "--install",
            notice.to_str().expect("utf-8"),
            "--data-dir",
            dirs[3].to_str().expect("utf-8"),
        ],
    );
    assert!(printed.contains("applied revocation serial 7"), "{printed}");
    assert!(printed.contains("FR ("), "{printed}");
    let others = [dirs[0], dirs[1], dirs[3]];
    let took = wait_all(&others, |report| report.revocation_serial == 7).await;
    eprintln!(
        "revocation serial 7 reached the {} other nodes in {took:?}",
        others.len()
    );
    let report = status(dirs[1]).await;
    assert_eq!(report.revocations.len(), 1);
    assert_eq!(
        report.revocations[0].reason,
        "server seized; key presumed copied"
    );

    // After: FR's next request to DE is refused, by FR's own node (it holds the notice too) or
    // by DE and the relay; in no case is it delivered.
    let submitted = ask(
        dirs[2],
        ControlRequest::Submit {
            recipient: "DE".into(),
            payload: Box::new(Payload::FreeText(example_free_text())),
        },
    )
    .await;
    if let ControlResponse::Submitted { message_id, .. } = submitted {
        let answer = ask(
            dirs[2],
            ControlRequest::WaitDelivered {
                message_id: message_id.clone(),
                timeout_ms: 5_000,
            },
        )
        .await;
        assert!(
            !matches!(answer, ControlResponse::Delivered { .. }),
            "a revoked member's request was delivered: {answer:?}"
        );
        let inbox = ask(dirs[1], ControlRequest::Inbox { limit: 100 }).await;
        assert!(
            !format!("{inbox:?}").contains(&message_id),
            "DE stored it: {inbox:?}"
        );
    }
    for node in nodes {
        node.stop().await.expect("stop");
    }
}
