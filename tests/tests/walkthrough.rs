//! Runs the README's roster walk-through exactly as written (with free ports in place of the
//! example ones), then starts two of its nodes and sends a request through the console.

mod common;

use std::path::Path;
use std::process::Command;

use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::example_preservation;

use common::{console, free_port, run, run_ok, NodeProcess};

/// The shell blocks of the walk-through section of README.md, in order.
fn readme_walkthrough() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = readme
        .split("## Setting up a network by hand")
        .nth(1)
        .expect("walk-through section");
    let section = section.split("\n## ").next().expect("section end");
    let blocks: Vec<&str> = section
        .split("```sh")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or(""))
        .collect();
    assert!(blocks.len() >= 2, "README walk-through blocks missing");
    // The first two blocks set the network up; the third is the console tour (needs running nodes).
    format!("{}\n{}", blocks[0], blocks[1])
}

#[test]
fn readme_walkthrough_runs_as_written_and_a_request_is_delivered() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut script = readme_walkthrough();
    // The test binary instead of a release build, and free ports instead of 4101-4103.
    script = script.replace("cargo build --release -p quickfreeze-node\n", "");
    script = script.replace(
        "qf=$PWD/target/release/quickfreeze",
        &format!("qf={}", common::binary().display()),
    );
    let ports = [free_port(), free_port(), free_port()];
    for (example, port) in ["4101", "4102", "4103"].iter().zip(ports) {
        script = script.replace(&format!("tcp/{example}"), &format!("tcp/{port}"));
    }
    let output = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(root.path())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walk-through failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("OK: roster `walkthrough` serial 1 with 3 members, 2 of 2"),
        "{stdout}"
    );
    assert!(stdout.contains("installed roster serial 1"), "{stdout}");

    let walk = root.path().join("walk");
    // One signature is not enough for a 2-of-2 roster.
    run_ok(
        &walk,
        &[
            "roster",
            "sign",
            "--in",
            "roster.toml",
            "--key",
            "authority-a.key",
            "--out",
            "half.signed",
        ],
    );
    let half = run(&walk, &["roster", "verify", "half.signed"]);
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr)
        .contains("1 valid authority signature(s), 2 required"));

    // Start DE and FR and send a real request from the console.
    let de = NodeProcess::start(&walk.join("de"));
    let fr = NodeProcess::start(&walk.join("fr"));
    let form = toml::to_string(&example_preservation()).expect("form");
    std::fs::write(walk.join("request.toml"), form).expect("write form");
    let sent = run_ok(
        &walk,
        &[
            "send",
            "request.toml",
            "--to",
            "FR",
            "--wait",
            "30",
            "--data-dir",
            "de",
        ],
    );
    assert!(sent.contains("accepted"), "{sent}");
    assert!(sent.contains("delivered in"), "{sent}");
    assert!(sent.contains("signature verified"), "{sent}");
    match console(&fr.data_dir, &ControlRequest::Inbox { limit: 10 }) {
        ControlResponse::Inbox { rows } => {
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].country, "DE");
            assert!(!rows[0].acknowledged);
        }
        other => panic!("unexpected {other:?}"),
    }
    let inbox = run_ok(&walk, &["inbox", "--data-dir", "fr"]);
    assert!(inbox.contains("preservation"), "{inbox}");
    drop(de);
    drop(fr);
}

#[test]
fn bad_inputs_get_one_line_errors_not_panics() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    // Missing file.
    let output = run(dir, &["roster", "verify", "nope.signed"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: nope.signed"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    // Malformed TOML.
    std::fs::write(dir.join("bad.toml"), "network = \n").expect("write");
    let output = run(dir, &["roster", "show", "bad.toml"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.toml"));
    // Bad country code.
    let output = run(
        dir,
        &["init", "--data-dir", "x", "--country", "XX", "--name", "n"],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an ISO 3166-1 alpha-2"));
    // Tampered signed roster.
    let key = run_ok(dir, &["authority", "keygen", "--out", "a.key"]);
    run_ok(
        dir,
        &[
            "init",
            "--data-dir",
            "de",
            "--country",
            "DE",
            "--name",
            "DE",
        ],
    );
    let member = run_ok(
        dir,
        &[
            "init",
            "--data-dir",
            "fr",
            "--country",
            "FR",
            "--name",
            "FR",
        ],
    );
    run_ok(
        dir,
        &[
            "roster",
            "new",
            "--network",
            "t",
            "--authority",
            key.trim(),
            "--threshold",
            "1",
            "--out",
            "r.toml",
        ],
    );
    let mut text = std::fs::read_to_string(dir.join("r.toml")).expect("read");
    text.push_str(&member);
    std::fs::write(dir.join("r.toml"), text).expect("write");
    run_ok(
        dir,
        &[
            "roster", "sign", "--in", "r.toml", "--key", "a.key", "--out", "r.signed",
        ],
    );
    run_ok(dir, &["roster", "verify", "r.signed"]);
    let mut bytes = std::fs::read(dir.join("r.signed")).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(dir.join("t.signed"), bytes).expect("write");
    let output = run(dir, &["roster", "verify", "t.signed"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: t.signed"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // A key file others can read is refused with the chmod to run.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("a.key"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let output = run(
        dir,
        &[
            "roster", "sign", "--in", "r.toml", "--key", "a.key", "--out", "x.signed",
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("chmod 600"));
    // The console without a running node.
    let output = run(dir, &["status", "--data-dir", "de"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no node is running"), "{stderr}");
}
