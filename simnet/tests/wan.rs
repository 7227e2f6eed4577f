//! The short WAN benchmark CI runs: `simnet wan --short` (RTT 50 ms, 5 % loss, a pair, about
//! 250 requests) must deliver every request exactly once and leave no namespace behind.
//!
//! Needs root and `ip` (iproute2) and `nft` (nftables). Without them it fails and says what to
//! install, unless `QF_SKIP_NETNS_TESTS=1`.

use std::process::Command;
use std::time::{Duration, Instant};

fn available(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|output| output.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn namespaces() -> String {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn short_wan_run_delivers_exactly_once_and_cleans_up() {
    let missing: Vec<&str> = [
        (!is_root()).then_some("root (network namespaces)"),
        (!available("ip", "-V")).then_some("`ip` (apt-get install -y iproute2)"),
        (!available("nft", "--version")).then_some("`nft` (apt-get install -y nftables)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        if std::env::var("QF_SKIP_NETNS_TESTS").as_deref() == Ok("1") {
            eprintln!(
                "skipped (QF_SKIP_NETNS_TESTS=1): missing {}",
                missing.join(", ")
            );
            return;
        }
        panic!(
            "the WAN test needs {}; install them, or set QF_SKIP_NETNS_TESTS=1 to skip it",
            missing.join(", ")
        );
    }
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_simnet"))
        .args(["wan", "--short"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run simnet wan --short");
    let tag = format!("qfw{}", child.id());
    let output = child
        .wait_with_output()
        .expect("wait for simnet wan --short");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The harness names every namespace `qfw<its pid>m` or `qfw<its pid>n<i>`.
    let left: Vec<String> = namespaces()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix(&tag)
                .is_some_and(|rest| rest.starts_with(['m', 'n']))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        output.status.success(),
        "simnet wan --short failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("OK: every request delivered exactly once"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("| pair | 50 | 5 |"),
        "the table has the cell: {stdout}"
    );
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the short form must stay short: {:?}",
        started.elapsed()
    );
}
