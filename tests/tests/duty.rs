//! The duty officer's tools against real nodes: the audit trail (through the console and, with
//! the node stopped, on the store directly), deadlines in `status`, the Prometheus endpoint and
//! the statistics.

mod common;

use std::time::Duration;

use quickfreeze_node::audit::{AuditKind, AuditLine};
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_preservation, Payload, Status};

use common::{ask, fixture, run, send_and_wait};

async fn export(dir: &std::path::Path) -> Vec<AuditLine> {
    match ask(
        dir,
        ControlRequest::AuditExport {
            since_ms: 0,
            after: None,
            limit: 1_000,
        },
    )
    .await
    {
        ControlResponse::AuditPage { lines, next_after } => {
            assert_eq!(next_after, None);
            lines
        }
        other => panic!("export failed: {other:?}"),
    }
}

async fn wait_for_status(dir: &std::path::Path, id: &str, count: usize) {
    for _ in 0..400 {
        if let ControlResponse::Message { detail } = ask(
            dir,
            ControlRequest::Show {
                message_id: id.into(),
            },
        )
        .await
        {
            if detail.status_history.len() >= count {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no status update arrived for {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_records_a_request_s_life_and_survives_tampering_checks() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    let id = send_and_wait(de_dir, "FR", Payload::Preservation(example_preservation())).await;

    // FR's officer opens, acknowledges and answers it.
    assert!(matches!(
        ask(
            fr_dir,
            ControlRequest::Show {
                message_id: id.clone()
            }
        )
        .await,
        ControlResponse::Message { .. }
    ));
    assert!(matches!(
        ask(
            fr_dir,
            ControlRequest::Ack {
                message_id: id.clone(),
                officer: "Insp. Martin".into()
            }
        )
        .await,
        ControlResponse::Acknowledged {
            status_message_id: Some(_)
        }
    ));
    assert!(matches!(
        ask(
            fr_dir,
            ControlRequest::Reply {
                message_id: id.clone(),
                status: Status::DataNotAvailable {
                    explanation: "SECRET-EXPLANATION-TEXT".into()
                },
                note: "SECRET-NOTE-TEXT".into(),
                officer: "Insp. Martin".into(),
            }
        )
        .await,
        ControlResponse::Replied { .. }
    ));
    wait_for_status(de_dir, &id, 2).await;

    // Statistics from both sides, through the console.
    let ControlResponse::Stats { rows } = ask(de_dir, ControlRequest::Stats { since_ms: 0 }).await
    else {
        panic!("stats failed");
    };
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].country.as_str(), rows[0].sent), ("FR", 1));
    assert!(rows[0].median_receipt_s.is_some() && rows[0].median_their_status_s.is_some());
    let ControlResponse::Stats { rows } = ask(fr_dir, ControlRequest::Stats { since_ms: 0 }).await
    else {
        panic!("stats failed");
    };
    assert_eq!((rows[0].country.as_str(), rows[0].received), ("DE", 1));
    assert!(rows[0].median_our_ack_s.is_some() && rows[0].median_our_status_s.is_some());

    let fr_lines = export(fr_dir).await;
    let kinds_of = |lines: &[AuditLine]| {
        lines
            .iter()
            .filter(|line| line.message_id.as_deref() == Some(id.as_str()))
            .map(|line| line.kind)
            .collect::<Vec<_>>()
    };
    let fr_kinds = kinds_of(&fr_lines);
    for kind in [
        AuditKind::Received,
        AuditKind::Opened,
        AuditKind::Acknowledged,
        AuditKind::StatusSent,
    ] {
        assert!(fr_kinds.contains(&kind), "FR lacks {kind}: {fr_kinds:?}");
    }
    assert_eq!(fr_lines[0].kind, AuditKind::RosterInstalled);
    let de_lines = export(de_dir).await;
    let de_kinds = kinds_of(&de_lines);
    for kind in [
        AuditKind::Submitted,
        AuditKind::Sent,
        AuditKind::Delivered,
        AuditKind::StatusReceived,
    ] {
        assert!(de_kinds.contains(&kind), "DE lacks {kind}: {de_kinds:?}");
    }
    // Ids, digests and metadata only: none of the request's or the reply's words.
    let text = serde_json::to_string(&(&fr_lines, &de_lines)).expect("json");
    for secret in [
        "SECRET-EXPLANATION-TEXT",
        "SECRET-NOTE-TEXT",
        "hospital",
        "HTCU-2026-0412",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the audit log");
    }
    let received = fr_lines
        .iter()
        .find(|line| line.kind == AuditKind::Received)
        .expect("received");
    assert_eq!(received.country.as_deref(), Some("DE"));
    assert!(received.envelope_digest.is_some());

    let report = match ask(
        fr_dir,
        ControlRequest::AuditVerify {
            expect_head: None,
            witness: None,
        },
    )
    .await
    {
        ControlResponse::AuditVerified { report } => report,
        other => panic!("verify failed: {other:?}"),
    };
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, fr_lines.len() as u64);
    let head = report.head.clone();

    // The real binary, through the running node's socket.
    let fr_text = fr_dir.to_str().expect("utf-8 path");
    let online = run(fr_dir, &["audit", "verify", "--data-dir", fr_text]);
    assert!(online.status.success(), "{online:?}");
    assert!(String::from_utf8_lossy(&online.stdout).contains(&head));

    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");

    // Node stopped: the binary opens the store itself.
    let offline = run(
        fr_dir,
        &[
            "audit",
            "verify",
            "--data-dir",
            fr_text,
            "--expect-head",
            &head,
        ],
    );
    assert!(offline.status.success(), "{offline:?}");
    assert!(String::from_utf8_lossy(&offline.stderr).contains("reading its store directly"));
    let out = fr_dir.join("case-file.jsonl");
    let exported = run(
        fr_dir,
        &[
            "audit",
            "export",
            "--since",
            "1d",
            "--data-dir",
            fr_text,
            "--out",
            out.to_str().expect("utf-8"),
        ],
    );
    assert!(exported.status.success(), "{exported:?}");
    let written = std::fs::read_to_string(&out).expect("export file");
    assert_eq!(written.lines().count(), fr_lines.len());
    let parsed: AuditLine =
        serde_json::from_str(written.lines().next().expect("line")).expect("json");
    assert_eq!(parsed.seq, 0);

    // Remove record 2 behind the node's back: verify names it and fails.
    {
        let store = quickfreeze_node::store::SledStore::open(
            &fr_dir.join("store"),
            &quickfreeze_node::store::StoreOptions::default(),
        )
        .expect("open store");
        let log = quickfreeze_node::audit::AuditLog::open(&store).expect("log");
        log.tree()
            .remove(quickfreeze_node::audit::audit_key(2))
            .expect("remove");
        log.tree().flush().expect("flush");
    }
    let tampered = run(fr_dir, &["audit", "verify", "--data-dir", fr_text]);
    assert!(!tampered.status.success());
    let stderr = String::from_utf8_lossy(&tampered.stderr);
    assert!(stderr.contains("from record 2"), "{stderr}");
}

/// Rewrites the config of member `index` before it starts.
fn configure(
    fixture: &common::Fixture,
    index: usize,
    change: impl FnOnce(&mut quickfreeze_node::config::NodeConfig),
) {
    use quickfreeze_node::config::{files, NodeConfig};
    let path = fixture.dirs[index].join(files::CONFIG);
    let mut config = NodeConfig::load(&path).expect("config");
    change(&mut config);
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
}

async fn status(dir: &std::path::Path) -> quickfreeze_node::control::StatusReport {
    match ask(dir, ControlRequest::Status).await {
        ControlResponse::Status { report } => *report,
        other => panic!("status failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_request_turns_overdue_once_and_clears_on_acknowledgement() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    // A one-second T2 for urgent requests, checked every 100 ms (the clock logic itself is tested
    // with a virtual clock in `deadlines`; this checks the daemon's wiring).
    configure(&fixture, 1, |config| {
        config.deadlines.acknowledge.urgent_s = 1;
        config.deadlines.check_interval_ms = 100;
    });
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let fr_dir = &fixture.dirs[1];
    let id = send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::Preservation(example_preservation()),
    )
    .await;
    let mut report = status(fr_dir).await;
    for _ in 0..100 {
        if report.overdue[1] > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        report = status(fr_dir).await;
    }
    assert_eq!(report.overdue, [0, 1, 0], "{report:?}");
    assert_eq!(report.overdue_items[0].message_id, id);
    assert_eq!(report.overdue_items[0].country, "DE");
    let ControlResponse::Inbox { rows } = ask(fr_dir, ControlRequest::Inbox { limit: 10 }).await
    else {
        panic!("inbox failed");
    };
    assert_eq!(rows[0].overdue, vec!["acknowledge".to_string()]);
    // Several more checks pass: still one audit record.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let overdue_records = export(fr_dir)
        .await
        .into_iter()
        .filter(|line| line.kind == AuditKind::Overdue)
        .count();
    assert_eq!(overdue_records, 1, "raised once");

    ask(
        fr_dir,
        ControlRequest::Ack {
            message_id: id.clone(),
            officer: "Insp. Martin".into(),
        },
    )
    .await;
    assert_eq!(status(fr_dir).await.overdue, [0, 0, 0], "cleared at once");
    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");
}

/// One HTTP/1.1 request over a plain TcpStream; returns status line and body.
fn http(address: std::net::SocketAddr, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// Parses the text exposition into `series → value`, checking every line's shape.
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "{line}"
        );
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().expect("a number")
        };
        values.insert(series.to_string(), value);
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_is_scraped_and_counts_a_delivery() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    configure(&fixture, 0, |config| {
        config.metrics_listen = Some("127.0.0.1:0".into());
    });
    let de = fixture.start(0).await;
    let fr = fixture.start(1).await;
    let address = de.metrics_address.expect("metrics enabled");
    let scrape = move || {
        tokio::task::spawn_blocking(move || {
            let (status, body) = http(address, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
            assert_eq!(status, "HTTP/1.1 200 OK");
            parse_exposition(&body)
        })
    };
    let before = scrape().await.expect("join");
    assert_eq!(before["quickfreeze_delivered_total"], 0.0);
    assert_eq!(before["quickfreeze_roster_serial"], 1.0);
    assert!(before["quickfreeze_roster_expires_in_seconds"] > 29.0 * 86_400.0);
    assert!(before.contains_key("quickfreeze_key_file_age_seconds"));
    assert_eq!(before["quickfreeze_overdue{clock=\"receipt\"}"], 0.0);

    send_and_wait(
        &fixture.dirs[0],
        "FR",
        Payload::Preservation(example_preservation()),
    )
    .await;
    let after = scrape().await.expect("join");
    assert_eq!(after["quickfreeze_delivered_total"], 1.0);
    assert_eq!(after["quickfreeze_time_to_receipt_seconds_count"], 1.0);
    assert_eq!(
        after["quickfreeze_time_to_receipt_seconds_bucket{le=\"+Inf\"}"],
        1.0
    );
    assert_eq!(
        after["quickfreeze_outbox_pending{priority=\"urgent\"}"],
        0.0
    );
    assert!(after["quickfreeze_connected_peers"] >= 1.0);

    let (not_found, _) =
        tokio::task::spawn_blocking(move || http(address, "GET / HTTP/1.1\r\n\r\n"))
            .await
            .expect("join");
    assert_eq!(not_found, "HTTP/1.1 404 Not Found");
    let (wrong_method, _) =
        tokio::task::spawn_blocking(move || http(address, "POST /metrics HTTP/1.1\r\n\r\n"))
            .await
            .expect("join");
    assert_eq!(wrong_method, "HTTP/1.1 405 Method Not Allowed");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    let (too_large, _) = tokio::task::spawn_blocking(move || http(address, &huge))
        .await
        .expect("join");
    assert_eq!(too_large, "HTTP/1.1 431 Request Header Fields Too Large");

    let report = status(&fixture.dirs[0]).await;
    assert_eq!(report.metrics_address, Some(address.to_string()));
    de.stop().await.expect("stop");
    fr.stop().await.expect("stop");
}
