//! The officer's case against real nodes (daemons in-process, the CLI as a process): one thread
//! per case at both ends, acknowledging a status reply sends nothing (no ping-pong), id
//! prefixes, filters with paging, the outbox saying why a request has not arrived, and the
//! shift handover.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use quickfreeze_node::control::{
    ControlRequest, ControlResponse, InboxRow, MessageQuery, OutboxRow,
};
use quickfreeze_proto::payload::{example_preservation, Payload, Status};

use common::{ask, fixture, run, send_and_wait};

async fn inbox(dir: &Path, query: MessageQuery) -> (Vec<InboxRow>, usize, Option<String>) {
    match ask(
        dir,
        ControlRequest::InboxQuery {
            query: Box::new(query),
        },
    )
    .await
    {
        ControlResponse::InboxPage {
            rows,
            total,
            next_after,
        } => (rows, total, next_after),
        other => panic!("inbox query failed: {other:?}"),
    }
}

async fn outbox(dir: &Path, query: MessageQuery) -> Vec<OutboxRow> {
    match ask(
        dir,
        ControlRequest::OutboxQuery {
            query: Box::new(query),
        },
    )
    .await
    {
        ControlResponse::OutboxPage { rows, .. } => rows,
        other => panic!("outbox query failed: {other:?}"),
    }
}

fn flat() -> MessageQuery {
    MessageQuery {
        flat: true,
        ..MessageQuery::default()
    }
}

/// Waits (bounded) until `dir`'s inbox holds `count` messages.
async fn wait_inbox(dir: &Path, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (rows, _, _) = inbox(dir, flat()).await;
        if rows.len() >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbox of {} holds {} messages, {count} expected",
            dir.display(),
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn preservation(case: &str, offence: &str) -> Payload {
    let mut request = example_preservation();
    request.header.case_reference = case.into();
    request.offence = offence.into();
    Payload::Preservation(request)
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_is_one_thread_at_both_ends_and_acknowledging_a_status_sends_nothing() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let _de = fixture.start(0).await;
    let _fr = fixture.start(1).await;
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    let id = send_and_wait(de_dir, "FR", preservation("DE-BKA-77", "ransomware")).await;
    let short = &id[..8];

    // Prefixes: the console's 8 digits work; too short and blank officers are refused clearly.
    match ask(
        fr_dir,
        ControlRequest::Ack {
            message_id: id[..5].into(),
            officer: "Insp. Martin".into(),
        },
    )
    .await
    {
        ControlResponse::Error { message } => assert!(message.contains("at least 6"), "{message}"),
        other => panic!("a 5-digit prefix must be refused: {other:?}"),
    }
    match ask(
        fr_dir,
        ControlRequest::Ack {
            message_id: short.into(),
            officer: "  ".into(),
        },
    )
    .await
    {
        ControlResponse::Error { message } => assert!(message.contains("name"), "{message}"),
        other => panic!("an anonymous acknowledgement must be refused: {other:?}"),
    }
    assert!(matches!(
        ask(
            fr_dir,
            ControlRequest::Ack {
                message_id: short.into(),
                officer: "Insp. Martin".into(),
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
                message_id: id[..6].into(),
                status: Status::DataNotAvailable {
                    explanation: "logs kept 7 days only".into()
                },
                note: String::new(),
                officer: "Insp. Martin".into(),
            }
        )
        .await,
        ControlResponse::Replied { .. }
    ));
    wait_inbox(de_dir, 2).await;

    // DE: both status replies are one thread row about the request; neither waits for an ack.
    let (rows, _, _) = inbox(de_dir, MessageQuery::default()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].thread, id);
    assert_eq!(rows[0].thread_messages, 3);
    assert!(!rows[0].awaits_acknowledgement);
    let ControlResponse::Status { report } = ask(de_dir, ControlRequest::Status).await else {
        panic!("status failed");
    };
    assert_eq!(
        report.inbox_unacknowledged, 0,
        "status replies are not requests"
    );
    let de_outbox = outbox(de_dir, MessageQuery::default()).await;
    assert_eq!(de_outbox.len(), 1);
    assert_eq!(de_outbox[0].thread_messages, 3);
    assert!(de_outbox[0].latest_status.is_some());
    assert_eq!(de_outbox[0].why, None, "delivered: nothing to explain");

    // No ping-pong: acknowledging each status reply marks it read and queues nothing.
    let (statuses, _, _) = inbox(de_dir, flat()).await;
    assert_eq!(statuses.len(), 2);
    for status in &statuses {
        match ask(
            de_dir,
            ControlRequest::Ack {
                message_id: status.message_id[..8].into(),
                officer: "KHK Weber".into(),
            },
        )
        .await
        {
            ControlResponse::MarkedRead { message_id } => {
                assert_eq!(message_id, status.message_id)
            }
            other => panic!("acknowledging a status reply must only mark it read: {other:?}"),
        }
    }
    assert_eq!(outbox(de_dir, flat()).await.len(), 1, "DE queued nothing");
    let (rows, _, _) = inbox(de_dir, MessageQuery::default()).await;
    assert!(rows[0].acknowledged, "the thread row reads as read");
    let (fr_inbox, _, _) = inbox(fr_dir, flat()).await;
    assert_eq!(fr_inbox.len(), 1, "FR received nothing new: {fr_inbox:?}");

    // FR: its two replies are in the request's thread, not outbox rows of their own.
    assert!(outbox(fr_dir, MessageQuery::default()).await.is_empty());
    assert_eq!(outbox(fr_dir, flat()).await.len(), 2);
    let (rows, _, _) = inbox(fr_dir, MessageQuery::default()).await;
    assert_eq!((rows.len(), rows[0].thread_messages), (1, 3));
    assert!(rows[0]
        .latest
        .as_deref()
        .is_some_and(|l| l.starts_with("FR:")));

    // `show` by prefix prints the whole thread at both ends, signed by which node.
    for dir in [de_dir, fr_dir] {
        let ControlResponse::Message { detail } = ask(
            dir,
            ControlRequest::Show {
                message_id: short.into(),
            },
        )
        .await
        else {
            panic!("show failed");
        };
        assert_eq!(detail.message_id, id);
        assert_eq!(detail.thread.len(), 3, "{:?}", detail.thread);
        assert_eq!(detail.thread[0].message_id, id, "the request comes first");
        assert!(detail.thread[1..]
            .iter()
            .all(|item| item.officer.as_deref() == Some("Insp. Martin")));
        assert!(detail.thread.iter().all(|item| !item.signed_by.is_empty()));
    }
    let output = cli(de_dir, &["show", short]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("thread (3 messages"), "{text}");

    // The handover names who did what.
    let output = cli(fr_dir, &["handover", "--since", "12h"]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for section in [
        "CAME IN (1)",
        "OPEN, RECEIVED (0)",
        "OVERDUE",
        "WHO DID WHAT",
    ] {
        assert!(text.contains(section), "no `{section}` in:\n{text}");
    }
    assert!(
        text.contains("acknowledged by officer Insp. Martin"),
        "{text}"
    );
    let output = cli(de_dir, &["handover", "--since", "12h"]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("marked read by officer KHK Weber"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_and_outbox_filter_and_page_in_the_daemon() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let _de = fixture.start(0).await;
    let _fr = fixture.start(1).await;
    let (de_dir, fr_dir) = (&fixture.dirs[0], &fixture.dirs[1]);
    for (case, offence) in [
        ("CASE-A", "fraud"),
        ("CASE-B", "ransomware attack"),
        ("CASE-B", "ransomware extortion"),
    ] {
        send_and_wait(de_dir, "FR", preservation(case, offence)).await;
    }
    let count = |query: MessageQuery| async move { inbox(fr_dir, query).await.1 };
    assert_eq!(count(MessageQuery::default()).await, 3);
    let case_b = MessageQuery {
        case: Some("case-b".into()),
        ..MessageQuery::default()
    };
    assert_eq!(count(case_b).await, 2);
    let words = MessageQuery {
        text: Some("RANSOMWARE extortion".into()),
        ..MessageQuery::default()
    };
    assert_eq!(count(words).await, 1);
    for (country, expected) in [("DE", 3), ("NL", 0)] {
        let query = MessageQuery {
            country: Some(country.into()),
            ..MessageQuery::default()
        };
        assert_eq!(count(query).await, expected, "country {country}");
    }
    let emergency = MessageQuery {
        kind: Some("emergency".into()),
        ..MessageQuery::default()
    };
    assert_eq!(count(emergency).await, 0);
    let new = MessageQuery {
        state: Some("new".into()),
        ..MessageQuery::default()
    };
    assert_eq!(count(new).await, 3);
    let future = MessageQuery {
        since_ms: Some(quickfreeze_keys::Timestamp::now().0 + 3_600_000),
        ..MessageQuery::default()
    };
    assert_eq!(count(future).await, 0);

    // Paging: two rows, then the third after the hint, and nothing lost or repeated.
    let (first, total, next) = inbox(
        fr_dir,
        MessageQuery {
            limit: 2,
            ..MessageQuery::default()
        },
    )
    .await;
    assert_eq!((first.len(), total), (2, 3));
    let (second, _, last) = inbox(
        fr_dir,
        MessageQuery {
            limit: 2,
            after: next,
            ..MessageQuery::default()
        },
    )
    .await;
    assert_eq!((second.len(), last), (1, None));
    assert!(first
        .iter()
        .all(|row| row.message_id != second[0].message_id));

    // The CLI passes the same filters.
    let output = cli(fr_dir, &["inbox", "--case", "CASE-A", "--json"]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["total"], 1, "{text}");
    let delivered = MessageQuery {
        state: Some("delivered".into()),
        ..MessageQuery::default()
    };
    assert_eq!(outbox(de_dir, delivered).await.len(), 3);
    let undelivered = MessageQuery {
        state: Some("undelivered".into()),
        ..MessageQuery::default()
    };
    assert!(outbox(de_dir, undelivered).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_says_why_a_request_has_not_arrived_and_never_calls_it_sent() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let _de = fixture.start(0).await; // FR never starts
    let de_dir = &fixture.dirs[0];
    let ControlResponse::Submitted { message_id, .. } = ask(
        de_dir,
        ControlRequest::Submit {
            recipient: "FR".into(),
            payload: Box::new(preservation("DE-BKA-9", "fraud")),
        },
    )
    .await
    else {
        panic!("submit failed");
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let rows = outbox(de_dir, MessageQuery::default()).await;
        if let Some(row) = rows.into_iter().find(|row| row.attempts >= 2) {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.message_id, message_id);
    let why = row.why.expect("an undelivered row says why");
    assert!(
        why.contains("not reached since") && why.contains("attempts"),
        "{why}"
    );
    let output = cli(de_dir, &["outbox"]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("NOT REACHED") && text.contains("why: not reached since"),
        "{text}"
    );
    let row_line = text
        .lines()
        .find(|line| line.starts_with(&message_id))
        .expect("the request's row");
    assert!(
        !row_line.split_whitespace().any(|word| word == "sent"),
        "`sent` shown for a request that reached nobody:\n{text}"
    );
}
