//! Integrity you can check, on the real binary: a store damaged the way the issue found it
//! (sled's snapshot removed, bytes of `store/db` flipped) does not start silently, and
//! `store verify` names the damage; an intact store verifies, and `audit verify` checks the
//! node's signed head and a witness copy of it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quickfreeze_node::audit_head::HEAD_FILE;
use quickfreeze_node::config::files;
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_free_text, Payload};

use common::{console, run, NodeProcess};

fn inbox_count(dir: &Path) -> usize {
    match console(dir, &ControlRequest::Inbox { limit: 1000 }) {
        ControlResponse::Inbox { rows } => rows.len(),
        other => panic!("inbox: {other:?}"),
    }
}

fn submit(dir: &Path, to: &str, n: usize) {
    let mut text = example_free_text();
    text.subject = format!("request {n}");
    match console(
        dir,
        &ControlRequest::Submit {
            recipient: to.into(),
            payload: Box::new(Payload::FreeText(text)),
        },
    ) {
        ControlResponse::Submitted { .. } => {}
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

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_damaged_store_does_not_start_silently_and_store_verify_names_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "integrity", &["DE", "FR"]);
    let (de_dir, fr_dir) = (dirs[0].clone(), dirs[1].clone());
    let fr_arg = fr_dir.to_str().expect("utf-8 path");
    let _de = NodeProcess::start(&de_dir);
    let witness = root.path().join("witness-head");
    {
        let fr = NodeProcess::start(&fr_dir);
        for n in 0..30 {
            submit(&de_dir, "FR", n);
        }
        wait_for("FR receives all 30", Duration::from_secs(90), || {
            inbox_count(&fr_dir) == 30
        });
        // A running node's chain holds its signed head; keep a copy as a witness would.
        let output = run(root.path(), &["audit", "verify", "--data-dir", fr_arg]);
        assert!(output.status.success(), "{}", text(&output));
        std::fs::copy(fr_dir.join(HEAD_FILE), &witness).expect("witness copy");
        fr.kill9();
    }
    // Stopped and intact: both checks pass, and the witness copy is in the chain.
    let output = run(root.path(), &["store", "verify", "--data-dir", fr_arg]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("inbox        30 records intact"),
        "{}",
        text(&output)
    );
    let witness_arg = witness.to_str().expect("utf-8");
    let output = run(
        root.path(),
        &[
            "audit",
            "verify",
            "--data-dir",
            fr_arg,
            "--witness",
            witness_arg,
        ],
    );
    assert!(output.status.success(), "{}", text(&output));

    // The reproduction: sled's snapshot gone and 8 bytes of its log flipped.
    let store = fr_dir.join(files::STORE);
    for item in std::fs::read_dir(&store).expect("store dir") {
        let path = item.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if name.starts_with("snap.") {
            std::fs::remove_file(&path).expect("remove snapshot");
        }
    }
    let db = store.join("db");
    let mut bytes = std::fs::read(&db).expect("read db");
    // Inside the written log (sled's files are mostly data up to their last record).
    let used = bytes.iter().rposition(|byte| *byte != 0).expect("data");
    let at = used / 2;
    for byte in &mut bytes[at..at + 8] {
        *byte ^= 0xa5;
    }
    std::fs::write(&db, &bytes).expect("write db");

    let output = run(root.path(), &["store", "verify", "--data-dir", fr_arg]);
    let said = text(&output);
    let code = output.status.code();
    assert!(
        code == Some(3) || code == Some(1),
        "store verify must report the damage, got {code:?}: {said}"
    );
    assert!(said.to_lowercase().contains("damaged"), "{said}");
    eprintln!("store verify on the damaged store ({code:?}):\n{said}");

    // The node refuses to start on it, saying so (and what to do).
    let mut child = Command::new(common::binary())
        .args(["run", "--data-dir", fr_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node started on a damaged store and kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("output");
    let said = text(&output);
    assert!(!status.success(), "{said}");
    assert!(said.to_lowercase().contains("damaged"), "{said}");
    assert!(said.contains("backup"), "{said}");
    eprintln!("run on the damaged store ({status}):\n{said}");
}
