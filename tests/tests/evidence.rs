//! Evidence for a court, end to end: DE asks FR to preserve data, FR's node receipts it and FR
//! answers "preserved"; DE exports the case's evidence file with the CLI while its node runs;
//! the file verifies with the CLI in a fresh directory (no data directory, no network), fails
//! with a named part when bytes are flipped, and `audit export --case` keeps only the case.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use quickfreeze_keys::Timestamp;
use quickfreeze_node::control::{ControlRequest, ControlResponse, MessageQuery};
use quickfreeze_proto::payload::{example_preservation, Payload, Status};

use common::{ask, fixture, run, send_and_wait};

/// Runs the CLI off the runtime's threads (the daemons share them), in `cwd`.
async fn cli(cwd: &Path, args: Vec<String>) -> std::process::Output {
    let cwd: PathBuf = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&cwd, &args)
    })
    .await
    .expect("cli")
}

fn text(output: &std::process::Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits (bounded) until `dir`'s inbox holds a message.
async fn wait_inbox(dir: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let query = MessageQuery {
            flat: true,
            ..MessageQuery::default()
        };
        if let ControlResponse::InboxPage { rows, .. } = ask(
            dir,
            ControlRequest::InboxQuery {
                query: Box::new(query),
            },
        )
        .await
        {
            if !rows.is_empty() {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status never reached {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_exported_at_the_sender_verifies_anywhere_and_any_changed_byte_fails() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let _de = fixture.start(0).await;
    let _fr = fixture.start(1).await;
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    let mut request = example_preservation();
    request.header.case_reference = "DE-BKA-88".into();
    let id = send_and_wait(de_dir, "FR", Payload::Preservation(request)).await;
    let ControlResponse::Replied { status_message_id } = ask(
        fr_dir,
        ControlRequest::Reply {
            message_id: id[..8].into(),
            status: Status::Preserved {
                reference: "FR-OCLCTIC-2026-311".into(),
                expires_at: Timestamp::now().plus_ms(90 * 24 * 3600 * 1000),
            },
            note: String::new(),
            officer: "Insp. Martin".into(),
        },
    )
    .await
    else {
        panic!("FR could not reply");
    };
    common::wait_delivered(fr_dir, &status_message_id).await;
    wait_inbox(de_dir).await;

    // Export at the sender, through its running node, by an 8-digit prefix.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let file = out_dir.path().join("case-88.evidence.html");
    let output = cli(
        de_dir,
        vec![
            "evidence".into(),
            "export".into(),
            id[..8].into(),
            "--out".into(),
            file.display().to_string(),
            "--data-dir".into(),
            de_dir.display().to_string(),
        ],
    )
    .await;
    assert!(output.status.success(), "export failed: {}", text(&output));
    assert!(text(&output).contains("written to"), "{}", text(&output));

    // Verify in a fresh directory: only the file, the binary and the fingerprint.
    let fresh = tempfile::tempdir().expect("fresh");
    std::fs::copy(&file, fresh.path().join("case.html")).expect("copy");
    let pin = fixture.roster.authority_set_fingerprint().to_string();
    let output = cli(
        fresh.path(),
        vec![
            "evidence".into(),
            "verify".into(),
            "case.html".into(),
            "--authority-set".into(),
            pin.clone(),
        ],
    )
    .await;
    let said = text(&output);
    assert!(output.status.success(), "verify failed: {said}");
    let fr_key = fixture.identities[1].node_id().fingerprint().to_string();
    let de_key = fixture.identities[0].node_id().fingerprint().to_string();
    assert!(said.contains("VERIFIED"), "{said}");
    assert!(
        said.contains(&format!(
            "FR's node (FR point-of-contact), key {fr_key}, signed at"
        )) && said.contains("that it stored this exact envelope"),
        "{said}"
    );
    assert!(
        said.contains(&format!("FR's node (FR point-of-contact), key {fr_key}, signed the envelope of message {status_message_id}")),
        "the status reply and its signer: {said}"
    );
    assert!(
        said.contains(&format!(
            "DE's node (DE point-of-contact), key {de_key}, signed this file"
        )),
        "{said}"
    );
    assert!(
        said.contains("chain without a break up to the head"),
        "{said}"
    );
    assert!(!said.contains("WARNING"), "{said}");

    // Any changed byte fails and says what. Every byte is flipped in the unit tests; here a
    // stride over the real file, shifted so that page and data are both hit.
    let bytes = std::fs::read(&file).expect("read");
    let stride = (bytes.len() / 1500).max(1);
    let mut tried = 0;
    for index in (0..bytes.len()).step_by(stride).chain([0, bytes.len() - 1]) {
        let mut changed = bytes.clone();
        changed[index] ^= 0x01;
        let finding = quickfreeze_node::evidence::verify(&changed, None).expect_err(&format!(
            "flipping byte {index} of {} still verifies",
            bytes.len()
        ));
        assert!(!finding.part.is_empty() && !finding.problem.is_empty());
        tried += 1;
    }
    assert!(tried > 1000, "{tried}");
    // And the CLI names it: a flipped byte in the middle of the request's envelope.
    let text_file = String::from_utf8(bytes.clone()).expect("utf8");
    let envelope_at = text_file
        .find("/envelope\",\"role\":\"envelope\",\"hex\":\"")
        .expect("envelope part")
        + 60;
    let mut changed = bytes.clone();
    changed[envelope_at] = if changed[envelope_at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    std::fs::write(fresh.path().join("changed.html"), &changed).expect("write");
    let output = cli(
        fresh.path(),
        vec![
            "evidence".into(),
            "verify".into(),
            "changed.html".into(),
            "--authority-set".into(),
            pin,
        ],
    )
    .await;
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("NOT VERIFIED") && said.contains("/envelope"),
        "{said}"
    );

    // The audit export for the case keeps the request's and the status's records only.
    let output = cli(
        de_dir,
        vec![
            "audit".into(),
            "export".into(),
            "--since".into(),
            "1h".into(),
            "--case".into(),
            "DE-BKA-88".into(),
            "--data-dir".into(),
            de_dir.display().to_string(),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let message = line["message_id"].as_str().unwrap_or_default();
        assert!(message == id || message == status_message_id, "{line}");
    }
}
