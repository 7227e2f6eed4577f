//! Attachments and conditions on use against real nodes (daemons in-process, the CLI as a
//! process): `send --attach` fills in name, media type and digest; the recipient's
//! `show --save-attachments` writes hostile names safely, never overwriting and never following a
//! planted symbolic link; the sender's conditions on use are shown boxed at the top of `show`,
//! marked in `inbox`, and named in the recipient's `audit export`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{
    example_preservation, Attachment, EvidentialUse, OnwardTransmission, Payload,
    PreservationRequest,
};

use common::{ask, fixture, run, send_and_wait, wait_delivered};

/// Runs the CLI off the runtime's threads (the daemons share them).
async fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let dir: PathBuf = dir.to_path_buf();
    let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    args.push("--data-dir".into());
    args.push(dir.display().to_string());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&dir, &args)
    })
    .await
    .expect("cli")
}

fn text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn strict_request(case: &str) -> PreservationRequest {
    let mut request = example_preservation();
    request.header.case_reference = case.into();
    request.attachments.clear();
    request.header.handling.onward_transmission = OnwardTransmission::Forbidden;
    request.header.handling.evidential_use = EvidentialUse::IntelligenceOnly;
    request.header.handling.free_text =
        Some("Do not contact the hosting provider's abuse desk.".into());
    request
}

/// Waits (bounded) until `dir`'s inbox shows `id`.
async fn wait_in_inbox(dir: &Path, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let ControlResponse::Message { .. } = ask(
            dir,
            ControlRequest::Show {
                message_id: id.into(),
            },
        )
        .await
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never reached the inbox of {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_round_trip_with_hostile_names_and_conditions_are_shown_and_audited() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let _de = fixture.start(0).await;
    let _fr = fixture.start(1).await;
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    let work = tempfile::tempdir().expect("tempdir");

    // 1. The officer's form and files: two files share a base name, one is a hidden-looking name.
    let form = work.path().join("request.toml");
    std::fs::write(
        &form,
        toml::to_string(&strict_request("DE-BKA-ATT-1")).expect("form"),
    )
    .expect("write form");
    std::fs::create_dir(work.path().join("a")).expect("mkdir");
    std::fs::create_dir(work.path().join("b")).expect("mkdir");
    let log = b"time,source,destination\n2026-11-22T22:58:03Z,10.20.0.14,203.0.113.7:443\n";
    let first = work.path().join("a/firewall.csv");
    let second = work.path().join("b/firewall.csv");
    let hidden = work.path().join("..notes.txt");
    std::fs::write(&first, log).expect("write");
    std::fs::write(&second, b"second,file\n").expect("write");
    std::fs::write(&hidden, b"plain notes").expect("write");

    // Limits are named before anything is sent.
    let big = work.path().join("disk.img");
    std::fs::write(&big, vec![0u8; 300 * 1024]).expect("write");
    let (_, stderr) = text(
        &cli(
            de_dir,
            &[
                "send",
                form.to_str().expect("present"),
                "--to",
                "FR",
                "--attach",
                big.to_str().expect("present"),
            ],
        )
        .await,
    );
    assert!(stderr.contains("262144 bytes"), "{stderr}");

    let output = cli(
        de_dir,
        &[
            "send",
            form.to_str().expect("present"),
            "--to",
            "FR",
            "--attach",
            first.to_str().expect("present"),
            "--attach",
            second.to_str().expect("present"),
            "--attach",
            hidden.to_str().expect("present"),
            "--json",
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "send failed: {stdout}\n{stderr}");
    let submitted: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let id = submitted
        .pointer("/submitted/message_id")
        .or_else(|| submitted.get("message_id"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no message id in {stdout}"))
        .to_string();
    wait_delivered(de_dir, &id).await;
    wait_in_inbox(fr_dir, &id).await;

    // 2. What arrived carries the filled-in names, media types and digests.
    let ControlResponse::Message { detail } = ask(
        fr_dir,
        ControlRequest::Show {
            message_id: id.clone(),
        },
    )
    .await
    else {
        panic!("show failed");
    };
    let Some(Payload::Preservation(request)) = &detail.payload else {
        panic!("not a preservation request: {:?}", detail.payload);
    };
    let names: Vec<&str> = request
        .attachments
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["firewall.csv", "firewall.csv", "notes.txt"]);
    assert_eq!(request.attachments[0].media_type, "text/csv");
    assert_eq!(request.attachments[2].media_type, "text/plain");
    assert_eq!(
        request.attachments[0],
        Attachment::new("firewall.csv", "text/csv", log.to_vec())
    );

    // 3. The recipient saves them: a file already there is kept, a planted symlink not followed.
    let save = work.path().join("saved");
    std::fs::create_dir(&save).expect("mkdir");
    std::fs::write(save.join("firewall.csv"), b"the officer's own file").expect("write");
    let outside = work.path().join("outside.txt");
    std::os::unix::fs::symlink(&outside, save.join("notes.txt")).expect("symlink");
    let output = cli(
        fr_dir,
        &[
            "show",
            &id[..8],
            "--save-attachments",
            save.to_str().expect("present"),
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "show failed: {stdout}\n{stderr}");
    assert_eq!(
        std::fs::read(save.join("firewall.csv")).expect("present"),
        b"the officer's own file"
    );
    assert_eq!(
        std::fs::read(save.join("firewall (2).csv")).expect("present"),
        log
    );
    assert_eq!(
        std::fs::read(save.join("firewall (3).csv")).expect("present"),
        b"second,file\n"
    );
    assert_eq!(
        std::fs::read(save.join("notes (2).txt")).expect("present"),
        b"plain notes"
    );
    assert!(!outside.exists(), "the planted symbolic link was followed");
    assert!(stdout.contains("sha256 verified"), "{stdout}");

    // 4. The conditions on use come first, boxed, in words.
    let first_lines: Vec<&str> = stdout.lines().take(12).collect();
    assert!(first_lines[1].contains("CONDITIONS ON USE"), "{stdout}");
    let header = first_lines.join("\n");
    assert!(
        header.contains("Onward transmission: FORBIDDEN"),
        "{stdout}"
    );
    assert!(header.contains("INTELLIGENCE ONLY"), "{stdout}");
    assert!(header.contains("abuse desk"), "{stdout}");
    let message_line = stdout
        .lines()
        .position(|line| line.starts_with("message "))
        .expect("present");
    let box_end = stdout
        .lines()
        .position(|line| line.contains("Answers:"))
        .expect("present");
    assert!(box_end < message_line, "{stdout}");
    assert!(stdout.contains("attachments (3"), "{stdout}");

    // 5. Names only a peer could send (the sender's CLI never produces them) are made safe.
    let mut hostile = strict_request("DE-BKA-ATT-2");
    hostile.attachments = vec![
        Attachment::new("CON", "text/plain", b"device".to_vec()),
        Attachment::new(".bashrc", "text/plain", b"dotfile".to_vec()),
        Attachment::new(
            "invoice\u{202E}fdp.exe",
            "application/pdf",
            b"bidi".to_vec(),
        ),
        Attachment::new(
            format!("{}.txt", "n".repeat(400)),
            "text/plain",
            b"long".to_vec(),
        ),
        Attachment::new("a:b?.txt", "text/plain", b"windows".to_vec()),
    ];
    let hostile_id = send_and_wait(de_dir, "FR", Payload::Preservation(hostile)).await;
    wait_in_inbox(fr_dir, &hostile_id).await;
    let hostile_dir = work.path().join("hostile");
    let output = cli(
        fr_dir,
        &[
            "show",
            &hostile_id,
            "--save-attachments",
            hostile_dir.to_str().expect("present"),
            "--json",
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "show failed: {stdout}\n{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let saved: Vec<String> = answer["saved"]
        .as_array()
        .expect("saved list")
        .iter()
        .map(|entry| entry["path"].as_str().expect("present").to_string())
        .collect();
    assert_eq!(saved.len(), 5);
    for path in &saved {
        let path = Path::new(path);
        assert_eq!(path.parent(), Some(hostile_dir.as_path()));
        let name = path.file_name().expect("present").to_string_lossy();
        assert!(name.len() <= 120, "{name}");
        assert!(!name.starts_with('.'), "{name}");
        assert!(!name.contains(['\u{202E}', ':', '?']), "{name}");
    }
    assert!(hostile_dir.join("_CON").exists());
    assert!(hostile_dir.join("bashrc").exists());

    // 6. The inbox marks the conditions; the audit trail names them (codes, not the free text).
    let (stdout, _) = text(&cli(fr_dir, &["inbox"]).await);
    assert!(
        stdout.contains("conditions on use: [case-only,no-onward,intel-only,channel,+note]"),
        "{stdout}"
    );
    let output = cli(fr_dir, &["audit", "export", "--since", "1h"]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "audit export failed: {stderr}");
    let received = stdout
        .lines()
        .find(|line| line.contains(&id) && line.contains("received"))
        .unwrap_or_else(|| panic!("no received record for {id}:\n{stdout}"));
    assert!(
        received.contains("conditions on use [case-only,no-onward,intel-only,channel,+note]"),
        "{received}"
    );
    assert!(
        !stdout.contains("abuse desk"),
        "the free text must stay out of the trail"
    );
}
