//! End-to-end tests of the deterministic simulation: real cores, virtual network, faults.
//!
//! Sizes are chosen so the whole file runs in well under a minute in debug mode on two cores.
//! The big run (500 nodes, 2,000 messages) is `#[ignore]`d; run it with
//! `cargo test -p quickfreeze-simnet --release -- --ignored`.

use quickfreeze_proto::core::InjectedBugs;
use quickfreeze_simnet::sim::{self, FaultLevel, Invariant, SimConfig, SimReport};

fn run_ok(config: &SimConfig) -> SimReport {
    match sim::run(config) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}\n{}", failure.report.summary()),
    }
}

#[test]
fn fault_free_run_delivers_everything() {
    let config = SimConfig::new(1, 10, 2, 60, FaultLevel::None);
    let report = run_ok(&config);
    assert!(report.accepted >= 60, "{}", report.summary());
    assert_eq!(report.delivered, report.accepted);
    assert_eq!(report.undelivered + report.expired + report.rejected, 0);
    assert_eq!(report.crashes, 0);
    assert_eq!(report.requests_failed, 0);
    // One member is relay-only, so some mail must have gone through a relay.
    assert!(report.relay_only_members >= 1);
    assert!(report.relay_deliveries > 0, "{}", report.summary());
    assert!(report.status_updates_received > 0);
    assert_eq!(report.convergence_after_heal_ms, Some(0));
}

#[test]
fn harsh_faults_hold_every_invariant() {
    for seed in [1, 2, 3] {
        let config = SimConfig::new(seed, 60, 4, 300, FaultLevel::Harsh);
        let report = run_ok(&config);
        let summary = report.summary();
        assert_eq!(report.delivered, report.accepted, "{summary}");
        assert!(report.crashes > 0, "{summary}");
        assert!(report.partitions > 0, "{summary}");
        assert!(report.retries > 0, "{summary}");
        assert!(report.duplicates_suppressed > 0, "{summary}");
        assert!(report.relay_custody_taken > 0, "{summary}");
        assert!(report.forgeries_rejected > 0, "{summary}");
        assert!(report.hostile_frames_refused > 0, "{summary}");
        assert!(report.converged, "{summary}");
    }
}

#[test]
fn same_seed_same_digest_different_seed_different_digest() {
    let config = SimConfig::new(42, 16, 2, 80, FaultLevel::Mild);
    let first = run_ok(&config);
    let second = run_ok(&config);
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.requests_sent, second.requests_sent);
    assert_eq!(first.latency, second.latency);
    let other = run_ok(&SimConfig { seed: 43, ..config });
    assert_ne!(first.digest, other.digest);
}

#[test]
fn short_lifetimes_end_expired_with_an_event_never_silently() {
    let mut config = SimConfig::new(3, 24, 2, 120, FaultLevel::Harsh);
    config.message_lifetime_ms = Some(60_000);
    config.expect_all_delivered = false;
    let report = run_ok(&config);
    let summary = report.summary();
    assert!(report.expired > 0, "{summary}");
    assert!(report.delivered > 0, "{summary}");
    assert_eq!(report.undelivered, 0, "{summary}");
    assert_eq!(
        report.delivered + report.expired + report.rejected,
        report.accepted,
        "{summary}"
    );
}

/// The checker can fail: a shell that answers before it flushes loses acknowledged messages
/// when it crashes at the wrong moment, and the durability invariant must say so. The same
/// seed with the correct shell passes.
#[test]
fn skipping_the_flush_before_responding_is_caught() {
    let broken = |seed| {
        let mut config = SimConfig::new(seed, 20, 2, 120, FaultLevel::Harsh);
        config.bug_skip_flush_before_respond = true;
        config
    };
    let caught =
        (1..=8).find_map(|seed| sim::run(&broken(seed)).err().map(|failure| (seed, failure)));
    let Some((seed, failure)) = caught else {
        panic!("no seed in 1..=8 caught the shell that answers before flushing");
    };
    assert_eq!(
        failure.violation.invariant,
        Invariant::Durability,
        "unexpected failure: {failure}"
    );
    assert!(failure.to_string().contains(&format!("seed={seed}")));
    run_ok(&SimConfig {
        bug_skip_flush_before_respond: false,
        ..broken(seed)
    });
}

#[test]
fn binary_runs_and_writes_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_simnet"))
        .args([
            "sim",
            "--nodes",
            "6",
            "--relays",
            "1",
            "--messages",
            "20",
            "--seed",
            "5",
            "--faults",
            "mild",
            "--duration-ms",
            "60000",
            "--json",
        ])
        .arg(&path)
        .output()
        .expect("run simnet");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("all invariants held"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("json written"))
            .expect("valid json");
    assert_eq!(json["seed"], 5);
    assert_eq!(json["delivered"], json["accepted"]);
    assert!(json["latency"]["p99_ms"].is_u64());
}

/// The full-size run: `cargo test -p quickfreeze-simnet --release -- --ignored`.
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn five_hundred_nodes_two_thousand_messages_harsh() {
    for seed in [1, 2] {
        let config = SimConfig::new(seed, 500, 12, 2_000, FaultLevel::Harsh);
        let report = run_ok(&config);
        assert_eq!(report.delivered, report.accepted, "{}", report.summary());
    }
}

/// Half the members have no addresses and their relays are drawn at random, so a message between
/// two of them is often held by a relay the sender cannot be reached from. The sender's repeated
/// hand-off must still bring its delivery receipt home (this seed left a message in custody
/// before the core answered repeated hand-offs with the receipt).
#[test]
fn address_less_senders_get_their_receipts_through_foreign_relays() {
    let mut config = SimConfig::new(2, 20, 4, 100, FaultLevel::Harsh);
    config.relay_only_fraction = 0.5;
    let report = run_ok(&config);
    assert!(report.relay_custody_taken > 0, "{}", report.summary());
    assert_eq!(report.delivered, report.accepted, "{}", report.summary());
}

/// The core's own deliberate bugs (`CoreConfig::injected_bugs`) are each caught by the checker
/// that guards against them, within a few seeds.
#[test]
fn injected_core_bugs_are_caught() {
    type Case = (&'static str, fn(&mut InjectedBugs), &'static [Invariant]);
    let cases: [Case; 3] = [
        (
            "skip_dedup",
            |bugs| bugs.skip_dedup = true,
            &[Invariant::ExactlyOnce],
        ),
        (
            "receipt_before_store",
            |bugs| bugs.receipt_before_store = true,
            &[Invariant::Durability],
        ),
        (
            "skip_signature_check",
            |bugs| bugs.skip_signature_check = true,
            &[Invariant::Authentic, Invariant::ForgeryAccepted],
        ),
    ];
    for (name, inject, expected) in cases {
        let caught = (1..=5).find_map(|seed| {
            let mut config = SimConfig::new(seed, 12, 2, 60, FaultLevel::Harsh);
            config.duration_ms = 120_000;
            inject(&mut config.injected_bugs);
            sim::run(&config).err()
        });
        let failure = caught.unwrap_or_else(|| panic!("{name} was not caught in seeds 1..=5"));
        println!("{name}: {failure}");
        assert!(
            expected.contains(&failure.violation.invariant),
            "{name} caught by the wrong checker: {failure}"
        );
    }
}

/// Every scripted scenario tells its story (checked by `Scenario::check`) with every invariant
/// holding, under a few seeds (which move latencies, countries and relay choices).
#[test]
fn every_scripted_scenario_happens_as_written() {
    for scenario in sim::scenario::all() {
        for seed in 1..=4 {
            if let Err(failure) = sim::run_scenario(&scenario, seed) {
                panic!("{failure}\n{}", failure.report.summary());
            }
        }
    }
}

/// A scenario whose story does not happen fails loudly: the expiry story cannot be told when
/// the recipient is up the whole time.
#[test]
fn a_scenario_whose_story_does_not_happen_fails() {
    let mut scenario = sim::scenario::by_name("expiry-with-event").expect("built in");
    scenario
        .steps
        .retain(|step| !matches!(step.action, sim::scenario::Action::Crash(_)));
    let failure = sim::run_scenario(&scenario, 1).expect_err("nothing expires");
    assert_eq!(
        failure.violation.invariant,
        Invariant::Scenario,
        "{failure}"
    );
}

/// The CI sweep: 100 seeds, 50 nodes, the harsh profile. Longer sweeps run on demand:
/// `simnet sim --seeds 1..1001 --nodes 100 --faults harsh` (see BENCHMARKS.md).
#[test]
fn sweep_of_100_seeds_at_50_nodes_harsh_holds_every_invariant() {
    let base = SimConfig::new(0, 50, 4, 100, FaultLevel::Harsh);
    let jobs = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let report = sim::sweep::sweep(&base, 1..101, jobs, &|_, _| {});
    assert_eq!(report.runs, 100);
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert_eq!(report.passed, 100);
    assert!(
        report.delivered > 0 && report.delivered == report.accepted,
        "{}",
        report.summary()
    );
}

/// The rotation story fails on a recipient that forgets its rotated-out key at once: the
/// envelope its relay holds, sealed to that key, can then never be opened.
#[test]
fn rotation_story_fails_when_the_recipient_forgets_its_old_key_at_once() {
    let scenario = sim::scenario::by_name("rotation-in-flight").expect("built in");
    let mut config = scenario.config(1);
    config.injected_bugs.forget_rotated_keys_at_once = true;
    match sim::run(&config) {
        Err(failure) => println!("caught: {failure}"),
        Ok(report) => {
            let verdict = (scenario.check)(&report);
            assert!(
                verdict.is_err(),
                "the broken rotation went unnoticed:\n{}",
                report.summary()
            );
            println!("caught by the story's check: {verdict:?}");
        }
    }
}

/// Runs `name` with `inject` switched on and asserts the story fails: by a checker during the
/// run, or by the story's own check on the report.
fn story_fails_with(name: &str, inject: fn(&mut InjectedBugs)) {
    let scenario = sim::scenario::by_name(name).expect("built in");
    let mut config = scenario.config(1);
    inject(&mut config.injected_bugs);
    match sim::run(&config) {
        Err(failure) => println!("{name}: caught: {failure}"),
        Ok(report) => {
            let verdict = (scenario.check)(&report);
            assert!(
                verdict.is_err(),
                "{name}: the broken core went unnoticed:\n{}",
                report.summary()
            );
            println!("{name}: caught by the story's check: {verdict:?}");
        }
    }
}

/// The trust stories hold on the real core, over several seeds.
#[test]
fn trust_stories_hold() {
    for name in ["roster-spread-idle", "revocation-mid-traffic"] {
        let scenario = sim::scenario::by_name(name).expect("built in");
        for seed in 1..=3 {
            let report = sim::run(&scenario.config(seed))
                .unwrap_or_else(|failure| panic!("{name} seed {seed}: {failure}"));
            if let Err(why) = (scenario.check)(&report) {
                panic!("{name} seed {seed}: {why}\n{}", report.summary());
            }
            println!(
                "{name} seed {seed}: roster spread {:?} ms, revocation spread {:?} ms",
                report.roster_spread_ms, report.revocation_spread_ms
            );
        }
    }
}

/// A core that never tells its serials cannot spread a roster on an idle network.
#[test]
fn roster_spread_story_fails_without_serial_gossip() {
    story_fails_with("roster-spread-idle", |bugs| bugs.no_serial_gossip = true);
}

/// A core that stores notices but keeps believing the revoked member fails the story.
#[test]
fn revocation_story_fails_when_revocations_are_ignored() {
    story_fails_with("revocation-mid-traffic", |bugs| {
        bugs.ignore_revocations = true
    });
}

/// The invariant sweep with key rotations and revocations in the harsh fault mix: every checker
/// holds (nothing taken from a revoked member after its notice arrived at a node), and every
/// message neither from nor to a revoked member is delivered.
#[test]
fn sweep_with_rotations_and_revocations_holds_every_invariant() {
    let mut revoked_runs = 0;
    for seed in 1..=6 {
        let mut config = SimConfig::new(seed, 20, 2, 100, FaultLevel::Harsh);
        config.profile.rotations = 3;
        config.profile.revocations = 2;
        let report = sim::run(&config).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(report.rotations >= 1, "{}", report.summary());
        if report.revocations > 0 {
            revoked_runs += 1;
        }
        // The checker demanded delivery of every message not excused; the count agrees.
        assert!(
            report.delivered + report.excused_revoked >= report.accepted,
            "{}",
            report.summary()
        );
    }
    assert!(
        revoked_runs >= 3,
        "revocations rarely happened: {revoked_runs} of 6 runs"
    );
}
