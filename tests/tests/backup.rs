//! `quickfreeze backup` and `quickfreeze restore` with the real binary: a backup taken while
//! requests flow holds every message the node had at that moment and an audit trail that agrees
//! with its store; the restored node (after its key is put back) starts and delivers; keys go
//! in only with --with-keys; a backup killed mid-way never leaves a complete-looking file; a
//! truncated or damaged backup and a non-empty target directory are refused.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quickfreeze_node::audit::{AuditKind, AuditLine};
use quickfreeze_node::backup;
use quickfreeze_node::config::files;
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_free_text, Payload};

use common::{console, run, run_ok, NodeProcess};

fn inbox_ids(dir: &Path) -> BTreeSet<String> {
    match console(dir, &ControlRequest::Inbox { limit: 10_000 }) {
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The message ids of the audit records of `kind` in a (stopped) data directory.
fn audit_ids(dir: &Path, kind: AuditKind) -> BTreeSet<String> {
    let dir_text = dir.display().to_string();
    let export = run_ok(
        dir,
        &["audit", "export", "--since", "30d", "--data-dir", &dir_text],
    );
    export
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str::<AuditLine>(line).expect("audit line"))
        .filter(|line| line.kind == kind)
        .filter_map(|line| line.message_id)
        .collect()
}

/// Runs `quickfreeze run` on a directory that must refuse to start; returns its output.
fn run_expecting_refusal(dir: &Path) -> String {
    let mut child = Command::new(common::binary())
        .args(["run", "--data-dir", &dir.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the node started on {} although it must refuse",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    assert!(!output.status.success(), "run must fail: {}", text(&output));
    text(&output)
}

#[test]
fn a_backup_while_requests_flow_restores_every_message_it_had() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "backup", &["DE", "FR"]);
    let (de_dir, fr_dir) = (dirs[0].clone(), dirs[1].clone());
    let de = NodeProcess::start(&de_dir);
    let fr = NodeProcess::start(&fr_dir);

    // Requests flow from DE to FR while the backups are taken.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (de_dir, stop) = (de_dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 30 {
                sent.push(submit(&de_dir, "FR", &format!("request {n}")));
                n += 1;
                std::thread::sleep(Duration::from_millis(15));
            }
            sent
        })
    };
    wait_for("FR receives some requests", Duration::from_secs(60), || {
        inbox_ids(&fr_dir).len() >= 10
    });
    // Everything FR had before the backup began must be in the backup.
    let before = inbox_ids(&fr_dir);
    let fr_backup = root.path().join("fr.qfb");
    let de_backup = root.path().join("de.qfb");
    let fr_out = run_ok(
        root.path(),
        &[
            "backup",
            "--data-dir",
            &fr_dir.display().to_string(),
            "--out",
            &fr_backup.display().to_string(),
        ],
    );
    let de_out = run_ok(
        root.path(),
        &[
            "backup",
            "--with-keys",
            "--data-dir",
            &de_dir.display().to_string(),
            "--out",
            &de_backup.display().to_string(),
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let sent: BTreeSet<String> = sender.join().expect("sender").into_iter().collect();
    wait_for("FR receives every request", Duration::from_secs(90), || {
        inbox_ids(&fr_dir) == sent
    });

    // Keys: said on the terminal, in the file's first lines, and by the file's mode.
    assert!(fr_out.contains("running node"), "{fr_out}");
    assert!(fr_out.contains("KEYS         NOT INCLUDED"), "{fr_out}");
    assert!(de_out.contains("KEYS         INCLUDED"), "{de_out}");
    let head = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).expect("read")[..200])
            .lines()
            .nth(1)
            .expect("keys line")
            .to_string()
    };
    assert!(head(&fr_backup).starts_with("keys: not included"));
    assert!(head(&de_backup).starts_with("keys: INCLUDED"));
    assert_eq!(mode(&de_backup), 0o600);
    assert_eq!(mode(&fr_backup), 0o600);
    let (header, counts) = backup::verify(&fr_backup).expect("fr backup verifies");
    assert!(!header.with_keys);
    // No staging file is left in the running node's directory.
    let staging: Vec<_> = std::fs::read_dir(&fr_dir)
        .expect("dir")
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(backup::STAGING_PREFIX)
        })
        .collect();
    assert!(staging.is_empty(), "staging files left: {staging:?}");

    // Restore FR's backup: it holds no key, and says what to do.
    let restored = root.path().join("fr-restored");
    let restore_out = run_ok(
        root.path(),
        &[
            "restore",
            &fr_backup.display().to_string(),
            "--data-dir",
            &restored.display().to_string(),
        ],
    );
    assert!(
        restore_out.contains("OK           audit verify"),
        "{restore_out}"
    );
    assert!(restore_out.contains("NOT IN THIS BACKUP"), "{restore_out}");
    assert!(!restored.join(files::KEY).exists());
    let refusal = run_expecting_refusal(&restored);
    assert!(
        refusal.contains("key file") && refusal.contains("missing"),
        "{refusal}"
    );

    // The store and the audit trail of the backup agree: every message in the restored inbox
    // was recorded as received, and every received record's message is in the inbox.
    let audited = audit_ids(&restored, AuditKind::Received);
    let verify = run_ok(
        &restored,
        &[
            "audit",
            "verify",
            "--data-dir",
            &restored.display().to_string(),
        ],
    );
    assert!(verify.contains("OK"), "{verify}");

    // Put the key back as the operator would, stop the original, start the restored node.
    fr.kill9();
    std::fs::copy(fr_dir.join(files::KEY), restored.join(files::KEY)).expect("key");
    std::fs::set_permissions(
        restored.join(files::KEY),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let restored_node = NodeProcess::start(&restored);
    let restored_inbox = inbox_ids(&restored);
    let missing: Vec<_> = before.difference(&restored_inbox).collect();
    assert!(
        missing.is_empty(),
        "messages FR had before the backup are missing after restore: {missing:?}"
    );
    assert!(
        restored_inbox.is_subset(&sent),
        "the restore invented messages"
    );
    assert_eq!(restored_inbox, audited, "store and audit trail disagree");
    assert_eq!(counts.inbox as usize, restored_inbox.len());
    eprintln!(
        "backup under traffic: {} sent, {} in FR before the backup, {} in the backup, all present after restore",
        sent.len(),
        before.len(),
        restored_inbox.len()
    );

    // The restored node delivers.
    let after = submit(&de_dir, "FR", "after the restore");
    wait_for(
        "the restored node receives a new request",
        Duration::from_secs(60),
        || inbox_ids(&restored).contains(&after),
    );
    drop(restored_node);
    drop(de);

    // DE's backup holds its key, restored owner-only.
    let de_restored = root.path().join("de-restored");
    let de_restore_out = run_ok(
        root.path(),
        &[
            "restore",
            &de_backup.display().to_string(),
            "--data-dir",
            &de_restored.display().to_string(),
        ],
    );
    assert!(
        de_restore_out.contains("KEYS         restored"),
        "{de_restore_out}"
    );
    assert_eq!(mode(&de_restored.join(files::KEY)), 0o600);
    assert_eq!(
        std::fs::read(de_restored.join(files::KEY)).expect("key"),
        std::fs::read(de_dir.join(files::KEY)).expect("key")
    );
}

/// A stopped node with a few messages and a large extra file (so that writing a backup takes
/// long enough to be killed in the middle).
fn stopped_node(root: &Path) -> PathBuf {
    let dirs = common::network(root, "backup-kill", &["DE", "FR"]);
    let (de_dir, fr_dir) = (dirs[0].clone(), dirs[1].clone());
    {
        let _de = NodeProcess::start(&de_dir);
        let _fr = NodeProcess::start(&fr_dir);
        let ids: BTreeSet<String> = (0..5)
            .map(|n| submit(&de_dir, "FR", &format!("request {n}")))
            .collect();
        wait_for("FR receives 5", Duration::from_secs(60), || {
            inbox_ids(&fr_dir) == ids
        });
    }
    let filler: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(fr_dir.join("attachments-archive.bin"), filler).expect("filler");
    fr_dir
}

#[test]
fn a_killed_backup_never_leaves_a_complete_looking_file_and_damage_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let fr_dir = stopped_node(root.path());
    let dir_text = fr_dir.display().to_string();

    // kill -9 of the backup process at different moments.
    let (mut absent, mut complete, mut partial_seen) = (0, 0, 0);
    for (attempt, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80, 160, 320]
        .into_iter()
        .enumerate()
    {
        let out = root.path().join(format!("killed-{attempt}.qfb"));
        let mut child = Command::new(common::binary())
            .args(["backup", "--data-dir", &dir_text, "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SIGKILL (std's kill), then reap.
        let _ = child.kill();
        let _ = child.wait();
        let partials = std::fs::read_dir(root.path())
            .expect("dir")
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("killed-{attempt}.qfb.partial-"))
            })
            .count();
        partial_seen += partials;
        if out.exists() {
            backup::verify(&out).unwrap_or_else(|error| {
                panic!(
                    "a backup killed after {delay_ms} ms left {} that does not verify: {error}",
                    out.display()
                )
            });
            complete += 1;
        } else {
            absent += 1;
        }
    }
    eprintln!(
        "kill -9 during backup: {absent} left no backup ({partial_seen} partial files), {complete} finished and verify"
    );
    assert_eq!(absent + complete, 9);

    // A finished backup; then damaged copies of it are refused and leave nothing behind.
    let good = root.path().join("good.qfb");
    let output = run(
        root.path(),
        &[
            "backup",
            "--data-dir",
            &dir_text,
            "--out",
            &good.display().to_string(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("stopped node"), "{}", text(&output));
    let bytes = std::fs::read(&good).expect("read");
    let damaged = root.path().join("damaged.qfb");
    let target = root.path().join("never-restored");
    for (what, content) in [
        ("half", bytes[..bytes.len() / 2].to_vec()),
        ("all but the last byte", bytes[..bytes.len() - 1].to_vec()),
        ("one flipped byte", {
            let mut flipped = bytes.clone();
            let at = bytes.len() / 3;
            flipped[at] ^= 0x01;
            flipped
        }),
    ] {
        std::fs::write(&damaged, &content).expect("write");
        let output = run(
            root.path(),
            &[
                "restore",
                &damaged.display().to_string(),
                "--data-dir",
                &target.display().to_string(),
            ],
        );
        let said = text(&output);
        assert!(
            !output.status.success(),
            "{what}: restore must fail: {said}"
        );
        assert!(
            said.contains("not a usable quickfreeze backup"),
            "{what}: {said}"
        );
        assert!(
            said.contains("truncated") || said.contains("checksum"),
            "{what}: {said}"
        );
        assert!(
            !target.exists(),
            "{what}: a refused restore left {}",
            target.display()
        );
    }

    // A non-empty directory is never overwritten.
    let busy = root.path().join("busy");
    std::fs::create_dir_all(&busy).expect("dir");
    std::fs::write(busy.join("notes.txt"), "keep me").expect("write");
    let output = run(
        root.path(),
        &[
            "restore",
            &good.display().to_string(),
            "--data-dir",
            &busy.display().to_string(),
        ],
    );
    assert!(!output.status.success());
    assert!(text(&output).contains("not empty"), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).expect("kept"),
        "keep me"
    );
    // And an existing backup file is never overwritten either.
    let output = run(
        root.path(),
        &[
            "backup",
            "--data-dir",
            &dir_text,
            "--out",
            &good.display().to_string(),
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("exists already"),
        "{}",
        text(&output)
    );

    // The good one restores, and its audit trail verifies.
    let restored = root.path().join("restored");
    let said = run_ok(
        root.path(),
        &[
            "restore",
            &good.display().to_string(),
            "--data-dir",
            &restored.display().to_string(),
        ],
    );
    assert!(said.contains("OK           audit verify"), "{said}");
    assert_eq!(
        std::fs::read(restored.join("attachments-archive.bin")).expect("file"),
        std::fs::read(fr_dir.join("attachments-archive.bin")).expect("file")
    );
}
