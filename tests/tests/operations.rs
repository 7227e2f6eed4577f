//! Operating the real binary: a copied data directory runs on its own store, a closed stdout
//! ends a command quietly with its result, and a restart logs one summary line for the
//! messages not yet acknowledged (not one line each).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quickfreeze_node::config::files;
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_free_text, example_preservation, Payload};

use common::{console, run, NodeProcess};

fn inbox_ids(dir: &Path) -> Vec<String> {
    match console(dir, &ControlRequest::Inbox { limit: 1000 }) {
        ControlResponse::Inbox { rows } => rows.into_iter().map(|row| row.message_id).collect(),
        other => panic!("inbox: {other:?}"),
    }
}

fn submit(dir: &Path, to: &str, subject: &str) -> String {
    let mut text = example_free_text();
    text.subject = subject.into();
    match console(
        dir,
        &ControlRequest::Submit {
            recipient: to.into(),
            payload: Box::new(Payload::FreeText(text)),
        },
    ) {
        ControlResponse::Submitted { message_id, .. } => message_id,
        other => panic!("submit: {other:?}"),
    }
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_copied_data_directory_runs_on_its_own_store() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "copy", &["DE", "FR"]);
    let (de_dir, fr_dir) = (dirs[0].clone(), dirs[1].clone());
    let de = NodeProcess::start(&de_dir);
    {
        let fr = NodeProcess::start(&fr_dir);
        let first = submit(&de_dir, "FR", "before the copy");
        wait_for(
            "FR receives the first request",
            Duration::from_secs(60),
            || inbox_ids(&fr_dir) == vec![first.clone()],
        );
        fr.kill9();
    }
    let copy = root.path().join("backup-fr");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&fr_dir)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let _ = std::fs::remove_file(copy.join("node.log"));

    // The copy runs on its own store: what it receives is not in the original's.
    let second = {
        let copy_node = NodeProcess::start(&copy);
        let second = submit(&de_dir, "FR", "to the copy");
        wait_for(
            "the copy receives the second request",
            Duration::from_secs(60),
            || inbox_ids(&copy).len() == 2,
        );
        assert!(inbox_ids(&copy).contains(&second));
        copy_node.kill9();
        second
    };
    {
        let original = NodeProcess::start(&fr_dir);
        let ids = inbox_ids(&original.data_dir);
        assert_eq!(ids.len(), 1, "the original store is untouched: {ids:?}");
        assert!(!ids.contains(&second));
        original.kill9();
    }

    // An old-style config in the copy that names the original absolutely is refused, saying what
    // to do, instead of running on the original's store.
    let config = copy.join(files::CONFIG);
    let text = std::fs::read_to_string(&config).expect("config");
    let stale = text.replacen(
        "data_dir = \".\"",
        &format!("data_dir = \"{}\"", fr_dir.display()),
        1,
    );
    assert_ne!(stale, text, "the test network writes data_dir = \".\"");
    std::fs::write(&config, stale).expect("config");
    let output = run(
        root.path(),
        &["run", "--data-dir", copy.to_str().expect("utf-8")],
    );
    assert!(!output.status.success(), "a stale data_dir must be refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data_dir = \".\""), "{stderr}");
    assert!(stderr.contains("copied or moved"), "{stderr}");
    drop(de);
}

/// Spawns `quickfreeze ARGS` with a stdout pipe whose reading end is closed at once.
fn run_with_closed_stdout(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(common::binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader goes away, as `| head -1` does after one line
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (child.wait().expect("wait"), stderr)
}

#[test]
fn a_closed_stdout_ends_commands_quietly_with_their_result() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "pipe", &["DE", "FR"]);
    let de = NodeProcess::start(&dirs[0]);
    let fr = NodeProcess::start(&dirs[1]);
    let form = root.path().join("request.toml");
    std::fs::write(
        &form,
        toml::to_string(&example_preservation()).expect("form"),
    )
    .expect("form");
    let de_dir = dirs[0].to_str().expect("utf-8");
    let form_path = form.to_str().expect("utf-8");
    let (status, stderr) = run_with_closed_stdout(
        root.path(),
        &[
            "send",
            form_path,
            "--to",
            "FR",
            "--wait",
            "60",
            "--data-dir",
            de_dir,
        ],
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        status.success(),
        "send --wait with a closed stdout: {status}; {stderr}"
    );
    // It was sent exactly once and delivered.
    wait_for("FR holds the request", Duration::from_secs(30), || {
        inbox_ids(&fr.data_dir).len() == 1
    });
    for args in [
        vec!["status", "--data-dir", de_dir],
        vec!["outbox", "--data-dir", de_dir],
        vec!["template", "preservation"],
    ] {
        let (status, stderr) = run_with_closed_stdout(root.path(), &args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(status.success(), "{args:?}: {status}; {stderr}");
    }
    assert_eq!(inbox_ids(&fr.data_dir).len(), 1, "nothing sent twice");
    drop((de, fr));
}

#[test]
fn a_restart_logs_one_summary_line_for_unacknowledged_messages() {
    const COUNT: usize = 12;
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "summary", &["DE", "FR"]);
    let de = NodeProcess::start(&dirs[0]);
    let fr = NodeProcess::start(&dirs[1]);
    // Requests: only they wait for an officer's acknowledgement (status replies and free-text
    // follow-ups are read, not acknowledged, and are not announced again).
    for _ in 0..COUNT {
        match console(
            &dirs[0],
            &ControlRequest::Submit {
                recipient: "FR".into(),
                payload: Box::new(Payload::Preservation(example_preservation())),
            },
        ) {
            ControlResponse::Submitted { .. } => {}
            other => panic!("submit: {other:?}"),
        }
    }
    wait_for("FR holds every request", Duration::from_secs(60), || {
        inbox_ids(&dirs[1]).len() == COUNT
    });
    fr.kill9();
    let log_path = dirs[1].join("node.log");
    let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
    let fr = NodeProcess::start(&dirs[1]);
    let log = std::fs::read_to_string(&log_path).expect("log");
    let restart = &log[before..];
    let summaries: Vec<&str> = restart
        .lines()
        .filter(|line| line.contains("not yet acknowledged"))
        .collect();
    assert_eq!(summaries.len(), 1, "one summary line:\n{restart}");
    assert!(
        summaries[0].contains(&format!("{COUNT} messages")),
        "{}",
        summaries[0]
    );
    assert!(summaries[0].contains("oldest"), "{}", summaries[0]);
    assert!(
        !restart.contains("STILL UNACKNOWLEDGED"),
        "no line per message at the default level:\n{restart}"
    );
    // The detail stays with the console.
    match console(&dirs[1], &ControlRequest::Status) {
        ControlResponse::Status { report } => assert_eq!(report.inbox_unacknowledged, COUNT),
        other => panic!("status: {other:?}"),
    }
    drop((de, fr));
}
