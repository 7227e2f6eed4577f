//! The CI profile of `simnet live`: real node processes (this crate's `simnet` binary running
//! the quickfreeze node CLI), 20 members and 2 relays, a few hundred requests under the harsh
//! fault schedule (kills, relay outages, link cuts both ways and one way, a slow link, an
//! isolated member, a hostile member), ending with a partition, an isolated relay and a dead
//! member that only the heal lifts. The nodes run the production retry policy (60 s cap) and
//! routine messages live 3 s, so some expire across the partition. Every invariant must hold;
//! convergence after the heal must be quick. `QF_LIVE_SEED` replays a seed.

use std::path::PathBuf;
use std::time::Duration;

use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_node::testnet::{console, NodeCommand, NodePlan, NodeProcess, Testnet};
use quickfreeze_simnet::live::{self, LiveConfig};
use quickfreeze_simnet::sim::FaultLevel;

fn node_command() -> NodeCommand {
    NodeCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_simnet")),
        prefix: vec!["__quickfreeze".into()],
    }
}

#[test]
fn twenty_nodes_under_harsh_faults_deliver_everything_exactly_once() {
    let seed: u64 = std::env::var("QF_LIVE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(11);
    let report_dir = tempfile::tempdir().expect("tempdir");
    let mut config = LiveConfig::new(20, 2, 300, 60.0, FaultLevel::Harsh, seed, node_command());
    config.report_dir = Some(report_dir.path().to_path_buf());
    config.converge_timeout = Duration::from_secs(60);
    config.routine_lifetime_s = Some(3);
    let report = live::run(&config).expect("live run starts");
    eprint!("{}", report.summary());
    assert!(report.ok(), "seed={seed}: {:#?}", report.violations);
    // The heal had work: a partition, a relay and a member still cut off, messages waiting.
    let (a, b) = report.at_heal.partition_sides;
    assert!(a > 0 && b > 0 && report.partitions == 1, "{a}+{b}");
    assert!(report.at_heal.isolated_relay.is_some() && report.at_heal.nodes_down >= 1);
    assert!(
        report.at_heal.pending > 0,
        "nothing was pending at the heal"
    );
    // Production backoff reaches tens of seconds across the partition; only the reconnect probe
    // brings convergence down to seconds (bound kept loose for a loaded CI machine).
    assert!(
        report.converge_after_heal_s < 10.0,
        "converged {} s after the heal",
        report.converge_after_heal_s
    );
    assert_eq!(report.expired_reported, report.expired);
    if seed == 11 {
        assert!(
            report.expired > 0,
            "no routine message expired across the partition"
        );
    }
    assert_eq!(report.undelivered, 0);
    assert!(report.accepted >= 300, "{} accepted", report.accepted);
    assert_eq!(report.delivered + report.expired, report.accepted);
    assert!(
        report.kills >= 2 && report.link_cuts >= 2,
        "faults were injected"
    );
    assert!(report.hostile.sent.values().sum::<u64>() > 0);
    assert!(report.latency.samples > 0);
    assert!(report_dir.path().join("latency.svg").is_file());
    assert!(report_dir.path().join("report.json").is_file());
}

#[test]
fn fault_requests_are_refused_unless_the_config_enables_them() {
    let root = tempfile::tempdir().expect("tempdir");
    let plans = [
        NodePlan::point_of_contact("de", "DE").expect("plan"),
        NodePlan::point_of_contact("fr", "FR").expect("plan"),
    ];
    let net = Testnet::build(root.path(), "refuse", &plans, Some(1), |index, config| {
        config.testing.fault_injection = index == 1;
    })
    .expect("network");
    let command = node_command();
    let de = NodeProcess::start(&command, &net.nodes[0].data_dir, Duration::from_secs(30))
        .expect("de starts");
    let fr = NodeProcess::start(&command, &net.nodes[1].data_dir, Duration::from_secs(30))
        .expect("fr starts");
    let fault = ControlRequest::Fault {
        peers: vec![net.nodes[1].node_id.to_string()],
        drop_outbound: true,
        drop_inbound: true,
        delay_ms: 0,
    };
    let timeout = Duration::from_secs(10);
    match console(&de.data_dir, &fault, timeout).expect("answer") {
        ControlResponse::Error { message } => assert!(message.contains("fault injection")),
        other => panic!("a production node accepted a fault request: {other:?}"),
    }
    match console(
        &de.data_dir,
        &ControlRequest::DeliveryLog { drain: false },
        timeout,
    )
    .expect("answer")
    {
        ControlResponse::Error { .. } => {}
        other => panic!("a production node served its delivery log: {other:?}"),
    }
    let fault = ControlRequest::Fault {
        peers: vec![net.nodes[0].node_id.to_string()],
        drop_outbound: true,
        drop_inbound: false,
        delay_ms: 0,
    };
    match console(&fr.data_dir, &fault, timeout).expect("answer") {
        ControlResponse::FaultsSet { faulty_peers } => assert_eq!(faulty_peers, 1),
        other => panic!("the test node refused: {other:?}"),
    }
    let bad = ControlRequest::Fault {
        peers: vec!["not-a-node-id".into()],
        drop_outbound: true,
        drop_inbound: false,
        delay_ms: 0,
    };
    assert!(matches!(
        console(&fr.data_dir, &bad, timeout).expect("answer"),
        ControlResponse::Error { .. }
    ));
}
