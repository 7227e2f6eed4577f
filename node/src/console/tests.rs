//! The console without a terminal: keys and daemon answers go into [`App`], the screen comes out of
//! ratatui's `TestBackend` at 80×24 and is checked as text and colours.

use quickfreeze_keys::Timestamp;
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::{
    example_emergency, example_preservation, Payload, RefusalGround, Status,
};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{line_of_field, App, Command, ComposeStage, Dialog, Link};
use super::render::render;
use crate::control::{
    ControlRequest, ControlResponse, InboxRow, MessageDetail, OutboxRow, PeerRow, ReceiptView,
    StatusReport, StatusView,
};

const EMERGENCY_ID: &str = "9f1c2a7be0d44c55a1e2f3a4b5c6d7e8";
const URGENT_ID: &str = "3b7e99d0c1a24f6e8d7c6b5a49382716";
const ROUTINE_ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const SENT_ID: &str = "c4d5e6f708192a3b4c5d6e7f80912a3b";

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(ch: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(ch), KeyModifiers::CONTROL)
}

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.handle_key(key(code))
}

fn type_text(app: &mut App, text: &str) {
    for ch in text.chars() {
        let code = if ch == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(ch)
        };
        app.handle_key(key(code));
    }
}

fn inbox_row(
    id: &str,
    country: &str,
    kind: &str,
    priority: &str,
    acknowledged: bool,
    age_s: u64,
    summary: &str,
) -> InboxRow {
    InboxRow {
        message_id: id.into(),
        sender: format!("node-of-{country}"),
        country: country.into(),
        kind: kind.into(),
        priority: priority.into(),
        received_at: "2026-11-24T03:00:07Z".into(),
        age_s,
        acknowledged,
        summary: summary.into(),
        via_relay: None,
        overdue: Vec::new(),
        thread: id.into(),
        thread_messages: 1,
        latest: None,
        awaits_acknowledgement: kind != "status" && kind != "free-text",
        conditions: None,
    }
}

fn outbox_row(
    id: &str,
    country: &str,
    priority: &str,
    state: &str,
    age_s: u64,
    status: Option<&str>,
) -> OutboxRow {
    OutboxRow {
        message_id: id.into(),
        recipient: format!("node-of-{country}"),
        country: country.into(),
        kind: "preservation".into(),
        priority: priority.into(),
        state: state.into(),
        created_at: "2026-11-23T21:14:00Z".into(),
        age_s,
        attempts: 1,
        summary: "NL-OM-2026-311: preserve 2 identifier(s): phishing kit".into(),
        last_error: None,
        latest_status: status.map(str::to_string),
        overdue: Vec::new(),
        thread: id.into(),
        thread_messages: 1,
        why: None,
    }
}

fn report() -> StatusReport {
    StatusReport {
        node_id: "12D3KooWFrNode".into(),
        fingerprint: "fr:5e2a-91c0-77d4".into(),
        country: "FR".into(),
        role: "point-of-contact".into(),
        network: "t-cy".into(),
        roster_serial: 3,
        roster_expires_at: "2027-02-01T00:00:00Z".into(),
        roster_expires_soon: false,
        outbox_pending: [0, 1, 0],
        inbox_total: 3,
        inbox_unacknowledged: 2,
        relay_pending: 0,
        relay_bytes: 0,
        connected_peers: 2,
        listen_addresses: vec![],
        store_flushes: 0,
        roster_expires_in_s: 70 * 24 * 3600,
        overdue: [0, 0, 0],
        overdue_items: Vec::new(),
        key_file_age_s: Some(3600),
        metrics_address: None,
        revocation_serial: 0,
        revocations: Vec::new(),
        disk_free_bytes: None,
        disk_low: None,
        disk_low_water_bytes: None,
    }
}

fn peers() -> Vec<PeerRow> {
    let peer = |id: &str, country: &str, role: &str, connected| PeerRow {
        node_id: id.into(),
        country: country.into(),
        authority_name: format!("{country} 24/7 point of contact"),
        role: role.into(),
        connected,
        consecutive_failures: 0,
        retry_at: None,
        misbehaviour: Default::default(),
    };
    vec![
        peer("12D3KooWFrNode", "FR", "point-of-contact", true),
        peer("12D3KooWDeNode", "DE", "point-of-contact", true),
        peer("12D3KooWBeRelay", "BE", "relay", true),
        peer("12D3KooWNlNode", "NL", "point-of-contact", false),
    ]
}

/// A console at 03:01 on a busy night: an emergency just arrived, an urgent request is waiting,
/// one routine message is done; one request of ours is in transit and one was preserved.
fn night_app() -> App {
    let mut app = App::new("Officer Martin");
    app.now = Timestamp(1_795_402_860_000);
    app.connected("12D3KooWFrNode");
    app.apply(ControlResponse::Status {
        report: Box::new(report()),
    });
    app.apply(ControlResponse::Inbox {
        rows: vec![
            inbox_row(
                ROUTINE_ID,
                "NL",
                "free-text",
                "routine",
                true,
                7_380,
                "NL-OM-2026-311: Log format at Example Hosting",
            ),
            inbox_row(
                URGENT_ID,
                "DE",
                "preservation",
                "urgent",
                false,
                2_520,
                "HTCU-2026-0412: preserve 5 identifier(s): ransomware attack",
            ),
            inbox_row(
                EMERGENCY_ID,
                "DE",
                "emergency",
                "emergency",
                false,
                54,
                "HTCU-2026-0977: EMERGENCY: Kidnapping for ransom; threat to kill",
            ),
        ],
    });
    app.apply(ControlResponse::Outbox {
        rows: vec![
            outbox_row(
                SENT_ID,
                "NL",
                "urgent",
                "delivered",
                20_760,
                Some("preserved (reference NL-PRES-88, until 2027-02-21T00:00:00Z)"),
            ),
            outbox_row(
                "77aa88bb99cc00dd11ee22ff33aa44bb",
                "DE",
                "urgent",
                "sent",
                12,
                None,
            ),
        ],
    });
    app
}

fn draw(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| render(app, frame)).expect("draw");
    terminal.backend().buffer().clone()
}

fn lines(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

fn screen(app: &App) -> String {
    lines(&draw(app, 80, 24)).join("\n")
}

/// Row and column where `needle` starts on screen.
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    lines(buffer).iter().enumerate().find_map(|(y, line)| {
        line.find(needle).map(|byte| {
            let x = line[..byte].chars().count();
            (x as u16, y as u16)
        })
    })
}

#[test]
fn lists_side_by_side_at_80x24_with_priority_colours_and_waiting_work_first() {
    let app = night_app();
    let buffer = draw(&app, 80, 24);
    let text = lines(&buffer);
    assert!(text[0].contains("FR point-of-contact"), "{}", text[0]);
    assert!(
        text[0].contains("2 peers up") && text[0].contains("roster #3"),
        "{}",
        text[0]
    );
    assert!(text[0].contains("│ Officer Martin"), "{}", text[0]);
    assert!(
        text[1].contains("inbox 3 (2 not acknowledged)"),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains("Inbox 3 (2 new)") && text[2].contains("Outbox 2 (1 in transit)"),
        "{}",
        text[2]
    );
    // Unacknowledged first, emergency before urgent, the acknowledged routine one last.
    let (_, emergency_y) = find(&buffer, "EMR").expect("emergency row");
    let (_, urgent_y) = find(&buffer, "URG DE pres").expect("urgent row");
    let (_, routine_y) = find(&buffer, "rtn NL").expect("routine row");
    assert!(
        emergency_y < urgent_y && urgent_y < routine_y,
        "{}",
        text.join("\n")
    );
    // Colours: red for emergency, yellow for urgent, on every cell of the row's text.
    let (x, y) = find(&buffer, "EMR").expect("emergency");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    assert_eq!(buffer[(x + 8, y)].fg, Color::Red, "kind column");
    assert_eq!(buffer[(x + 30, y)].fg, Color::Red, "summary column");
    let (x, y) = find(&buffer, "URG DE pres").expect("urgent");
    assert_eq!(buffer[(x, y)].fg, Color::Yellow);
    let (x, y) = find(&buffer, "rtn NL").expect("routine");
    assert_eq!(buffer[(x, y)].fg, Color::Reset);
    // The outbox shows the latest status instead of the summary.
    assert!(find(&buffer, "delivered").is_some());
    assert!(find(&buffer, "preserved").is_some(), "{}", text.join("\n"));
    // Nothing wider than the terminal, and the key line at the bottom.
    assert!(text[23].contains("q quit"), "{}", text[23]);
}

#[test]
fn only_a_new_emergency_or_urgent_arrival_rings_the_bell() {
    let mut app = night_app(); // the first load never rings
    let mut rows = app.inbox.clone();
    // Unchanged: no bell.
    assert!(!rings(
        &app.apply(ControlResponse::Inbox { rows: rows.clone() })
    ));
    // A new routine message: no bell.
    rows.push(inbox_row(
        "11111111111111111111111111111111",
        "NL",
        "free-text",
        "routine",
        false,
        1,
        "hello",
    ));
    assert!(!rings(
        &app.apply(ControlResponse::Inbox { rows: rows.clone() })
    ));
    // A new emergency: one bell and a red line naming it.
    rows.push(inbox_row(
        "22222222222222222222222222222222",
        "PT",
        "emergency",
        "emergency",
        false,
        1,
        "PJ-77: EMERGENCY: threat to kill",
    ));
    let commands = app.apply(ControlResponse::Inbox { rows: rows.clone() });
    assert_eq!(
        commands
            .iter()
            .filter(|c| matches!(c, Command::Bell))
            .count(),
        1
    );
    let notice = app.notice.clone().expect("notice");
    assert!(
        notice.error && notice.text.contains("NEW EMERGENCY from PT: PJ-77"),
        "{notice:?}"
    );
    assert!(screen(&app)
        .lines()
        .nth(22)
        .unwrap_or("")
        .contains("NEW EMERGENCY"));
    // The same rows again: silence.
    assert!(!rings(&app.apply(ControlResponse::Inbox { rows })));
}

fn rings(commands: &[Command]) -> bool {
    commands.iter().any(|c| matches!(c, Command::Bell))
}

#[test]
fn the_selection_stays_on_its_message_when_rows_arrive_and_move() {
    let mut app = night_app();
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected_id().as_deref(), Some(URGENT_ID));
    let mut rows = app.inbox.clone();
    rows.push(inbox_row(
        "33333333333333333333333333333333",
        "IT",
        "emergency",
        "emergency",
        false,
        0,
        "new one",
    ));
    app.apply(ControlResponse::Inbox { rows });
    // The new emergency sorts above, the cursor stays on the urgent request.
    assert_eq!(app.selected_id().as_deref(), Some(URGENT_ID));
    assert_eq!(app.inbox_selection.index, 2);
    // Moving past the ends stops there.
    for _ in 0..10 {
        press(&mut app, KeyCode::Down);
    }
    assert_eq!(app.selected_id().as_deref(), Some(ROUTINE_ID));
    press(&mut app, KeyCode::Home);
    assert_eq!(app.inbox_selection.index, 0);
    // Tab moves to the outbox, where in-transit work comes first.
    press(&mut app, KeyCode::Tab);
    assert_eq!(
        app.selected_id().as_deref(),
        Some("77aa88bb99cc00dd11ee22ff33aa44bb")
    );
}

fn emergency_detail() -> MessageDetail {
    MessageDetail {
        direction: "inbound".into(),
        message_id: EMERGENCY_ID.into(),
        peer: "12D3KooWDeNode".into(),
        country: "DE".into(),
        priority: "emergency".into(),
        state: "new".into(),
        payload: Some(Payload::Emergency(example_emergency())),
        receipts: vec![ReceiptView {
            kind: "delivered".into(),
            signer: "12D3KooWFrNode".into(),
            signer_country: "FR".into(),
            received_at: "2026-11-24T03:00:07Z".into(),
            envelope_digest: "ab".repeat(32),
            verified: true,
        }],
        status_history: vec![],
        replies: vec![],
        last_error: None,
        thread: vec![],
    }
}

#[test]
fn s_in_a_message_lists_and_saves_its_attachments() {
    let folder = tempfile::tempdir().expect("tempdir");
    let mut app = night_app();
    app.attachments_dir = folder.path().join("saved");
    press(&mut app, KeyCode::Enter);
    // Still loading: nothing to save yet, and nothing is written.
    press(&mut app, KeyCode::Char('s'));
    assert!(!app.attachments_dir.exists());
    let mut detail = emergency_detail();
    let mut request = quickfreeze_proto::payload::example_preservation();
    request.attachments = vec![
        quickfreeze_proto::payload::Attachment::new("../log.csv", "text/csv", b"a,b\n".to_vec()),
        quickfreeze_proto::payload::Attachment::new("log.csv", "text/csv", b"c,d\n".to_vec()),
    ];
    detail.payload = Some(Payload::Preservation(request));
    app.apply(ControlResponse::Message {
        detail: Box::new(detail),
    });
    let mut text = screen(&app);
    for _ in 0..30 {
        press(&mut app, KeyCode::Down);
        text.push_str(&screen(&app));
    }
    assert!(text.contains("attachments (2; s saves them)"), "{text}");
    press(&mut app, KeyCode::Char('s'));
    let notice = app.notice.as_ref().expect("notice");
    assert!(!notice.error, "{}", notice.text);
    assert!(
        notice.text.contains("saved 2 attachment(s)"),
        "{}",
        notice.text
    );
    let dir = app.attachments_dir.join(&EMERGENCY_ID[..8]);
    assert_eq!(
        std::fs::read(dir.join("log.csv")).expect("present"),
        b"a,b\n"
    );
    assert_eq!(
        std::fs::read(dir.join("log (2).csv")).expect("present"),
        b"c,d\n"
    );
    // Saving again never overwrites.
    press(&mut app, KeyCode::Char('s'));
    assert!(dir.join("log (3).csv").exists());
    assert_eq!(
        std::fs::read(dir.join("log.csv")).expect("present"),
        b"a,b\n"
    );
}

#[test]
fn enter_opens_the_whole_message_and_it_scrolls() {
    let mut app = night_app();
    let commands = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(&commands[..], [Command::Request(ControlRequest::Show { message_id })] if message_id == EMERGENCY_ID)
    );
    assert!(screen(&app).contains("loading"));
    // While it is open, every refresh also re-reads it (receipts and status arrive live).
    assert!(app
        .refresh()
        .iter()
        .any(|c| matches!(c, Command::Request(ControlRequest::Show { .. }))));
    app.apply(ControlResponse::Message {
        detail: Box::new(emergency_detail()),
    });
    let buffer = draw(&app, 80, 24);
    let text = lines(&buffer).join("\n");
    assert!(text.contains("from DE 9f1c2a7b"), "{text}");
    assert!(
        text.contains("delivered by FR at 2026-11-24T03:00:07Z, signature verified"),
        "{text}"
    );
    // The sender's conditions on use come first, before who sent it.
    let conditions = text.find("CONDITIONS ON USE").expect("conditions box");
    assert!(
        conditions < text.find("message   ").expect("message line"),
        "{text}"
    );
    assert!(
        text.contains("Onward transmission: only with the sender's prior consent"),
        "{text}"
    );
    // The content is the labelled form, not TOML field names.
    assert!(text.contains("EMERGENCY DISCLOSURE REQUEST"), "{text}");
    assert!(!text.contains("emergency_facts"), "{text}");
    // An emergency gets a red frame.
    let (_, y) = find(&buffer, "from DE").expect("title");
    assert_eq!(buffer[(0, y)].fg, Color::Red);
    // Scrolling reaches the end of the content.
    for _ in 0..60 {
        press(&mut app, KeyCode::Down);
    }
    assert!(
        screen(&app).contains("duty-officer@htcu.example.org"),
        "{}",
        screen(&app)
    );
    // An outbound message shows its status history.
    let mut outbound = emergency_detail();
    outbound.direction = "outbound".into();
    outbound.status_history = vec![StatusView {
        received_at: "2026-11-24T03:20:00Z".into(),
        status: Status::AcknowledgedByOfficer,
        note: "on it".into(),
        officer: "KOKin Weber".into(),
    }];
    if let Some(view) = &mut app.detail {
        view.scroll = 0;
    }
    app.apply(ControlResponse::Message {
        detail: Box::new(outbound),
    });
    let text = screen(&app);
    assert!(text.contains("status history"), "{text}");
    assert!(
        text.contains("acknowledged by officer  by KOKin Weber"),
        "{text}"
    );
    // Esc goes back to the lists.
    press(&mut app, KeyCode::Esc);
    assert!(app.detail.is_none());
    assert!(screen(&app).contains("Inbox 3"));
}

#[test]
fn acknowledge_names_the_officer_and_a_daemon_error_lands_on_the_status_line() {
    let mut app = night_app();
    let commands = press(&mut app, KeyCode::Char('a'));
    match &commands[..] {
        [Command::Request(ControlRequest::Ack {
            message_id,
            officer,
        })] => {
            assert_eq!(message_id, EMERGENCY_ID);
            assert_eq!(officer, "Officer Martin");
        }
        other => panic!("{other:?}"),
    }
    // The daemon refuses: its words, in red, on the status line; nothing else changes.
    let follow_up = app.apply(ControlResponse::Error {
        message: "no inbox message 9f1c2a7b… (was it purged?)".into(),
    });
    assert!(follow_up.is_empty());
    let buffer = draw(&app, 80, 24);
    let text = lines(&buffer);
    assert!(
        text[22].contains("acknowledge failed: no inbox message 9f1c2a7b"),
        "{}",
        text[22]
    );
    assert_eq!(buffer[(2, 22)].bg, Color::Red);
    assert!(text[2].contains("Inbox 3"));
    // A success says so and refreshes at once.
    press(&mut app, KeyCode::Char('a'));
    let follow_up = app.apply(ControlResponse::Acknowledged {
        status_message_id: Some("5555aaaa5555aaaa5555aaaa5555aaaa".into()),
    });
    assert!(follow_up
        .iter()
        .any(|c| matches!(c, Command::Request(ControlRequest::InboxQuery { .. }))));
    assert!(screen(&app)
        .contains("acknowledged 9f1c2a7b; the requester is told by status message 5555aaaa"));
    // Acknowledge from the outbox is refused with a hint, without asking the daemon.
    press(&mut app, KeyCode::Tab);
    assert!(press(&mut app, KeyCode::Char('a')).is_empty());
    assert!(screen(&app).contains("press Tab to switch"));
}

#[test]
fn reply_picks_a_status_checks_required_fields_and_sends_it() {
    let mut app = night_app();
    press(&mut app, KeyCode::Down); // the urgent preservation request
    press(&mut app, KeyCode::Char('r'));
    let text = screen(&app);
    assert!(text.contains("reply to DE 3b7e99d0"), "{text}");
    assert!(text.contains("4 refused (ground, explanation)"), "{text}");
    press(&mut app, KeyCode::Char('4'));
    assert!(screen(&app).contains("< political offence >"));
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right); // public order
                                     // Enter with the explanation empty: no request, the field is marked.
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&app).contains("✗ required"), "{}", screen(&app));
    type_text(&mut app, "the account belongs to a journalist");
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "see our letter");
    let commands = press(&mut app, KeyCode::Enter);
    match &commands[..] {
        [Command::Request(ControlRequest::Reply {
            message_id,
            status,
            note,
            officer,
        })] => {
            assert_eq!(message_id, URGENT_ID);
            assert_eq!(
                status,
                &Status::Refused {
                    ground: RefusalGround::PublicOrder,
                    explanation: "the account belongs to a journalist".into()
                }
            );
            assert_eq!(note, "see our letter");
            assert_eq!(officer, "Officer Martin");
        }
        other => panic!("{other:?}"),
    }
    // Stays open until the daemon answers, then closes with a confirmation.
    assert!(matches!(app.dialog, Some(Dialog::Reply(_))));
    app.apply(ControlResponse::Replied {
        status_message_id: "6666bbbb6666bbbb6666bbbb6666bbbb".into(),
    });
    assert!(app.dialog.is_none());
    assert!(screen(&app).contains("status `refused` for 3b7e99d0 queued as message 6666bbbb"));
}

#[test]
fn reply_preserved_defaults_to_ninety_days_and_rejects_a_bad_date() {
    let mut app = night_app();
    press(&mut app, KeyCode::Char('r'));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter); // preserved
    type_text(&mut app, "FR-PRES-2026-17");
    press(&mut app, KeyCode::Tab);
    // 90 days after 2026-11-24 is 2027-02-22.
    assert!(screen(&app).contains("2027-02-2"), "{}", screen(&app));
    for _ in 0..10 {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "next week");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(
        screen(&app).contains("not an RFC 3339 time"),
        "{}",
        screen(&app)
    );
    for _ in 0..9 {
        press(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "2027-03-01");
    let commands = press(&mut app, KeyCode::Enter);
    match &commands[..] {
        [Command::Request(ControlRequest::Reply {
            status:
                Status::Preserved {
                    reference,
                    expires_at,
                },
            ..
        })] => {
            assert_eq!(reference, "FR-PRES-2026-17");
            assert_eq!(expires_at.to_rfc3339(), "2027-03-01T00:00:00Z");
        }
        other => panic!("{other:?}"),
    }
    // A daemon error keeps the dialog open and says why.
    app.apply(ControlResponse::Error {
        message: "reference too long".into(),
    });
    assert!(matches!(app.dialog, Some(Dialog::Reply(_))));
    assert!(screen(&app).contains("reply failed: reference too long"));
}

#[test]
fn compose_validates_inline_and_sends_only_a_valid_form() {
    let mut app = night_app();
    let commands = press(&mut app, KeyCode::Char('n'));
    assert!(matches!(
        &commands[..],
        [Command::Request(ControlRequest::Peers)]
    ));
    app.apply(ControlResponse::Peers { rows: peers() });
    assert!(screen(&app).contains("which form?"));
    press(&mut app, KeyCode::Enter); // preservation
    let text = screen(&app);
    // Ourselves and the relay are not offered.
    assert!(
        text.contains("DE ● DE 24/7") && text.contains("NL ○ NL 24/7"),
        "{text}"
    );
    assert!(!text.contains("FR ●") && !text.contains("BE"), "{text}");
    press(&mut app, KeyCode::Enter); // DE
    let text = screen(&app);
    assert!(text.contains("preservation to DE"), "{text}");
    assert!(text.contains("problem(s)"), "{text}");
    // The blank template's problems are listed, with `!` in the gutter of their lines.
    assert!(text.contains("offence: "), "{text}");
    let Some(Dialog::Compose(compose)) = &app.dialog else {
        panic!("compose closed");
    };
    let offence_line = compose
        .problems
        .iter()
        .find(|p| p.text.starts_with("offence"))
        .and_then(|p| p.line)
        .expect("offence line");
    assert_eq!(compose.editor.lines()[offence_line], "offence = \"\"");
    // Ctrl+S on an invalid form sends nothing and says why.
    assert!(app.handle_key(ctrl('s')).is_empty());
    assert!(screen(&app).contains("not sent:"), "{}", screen(&app));
    // Ctrl+E jumps to the first problem; fixing one field removes its complaint.
    app.handle_key(ctrl('e'));
    let Some(Dialog::Compose(compose)) = &app.dialog else {
        panic!()
    };
    let first = compose.editor.row();
    assert_eq!(Some(first), compose.problems.iter().find_map(|p| p.line));
    // A TOML syntax error names its line.
    press(&mut app, KeyCode::End);
    type_text(&mut app, " oops");
    let Some(Dialog::Compose(compose)) = &app.dialog else {
        panic!()
    };
    assert_eq!(compose.problems.len(), 1);
    assert_eq!(compose.problems[0].line, Some(first));
    for _ in 0..5 {
        press(&mut app, KeyCode::Backspace);
    }
    // Replace the whole text with a filled-in form (as a paste), then send.
    let Some(Dialog::Compose(compose)) = &mut app.dialog else {
        panic!()
    };
    compose.editor = super::editor::Editor::new("");
    let form = toml::to_string(&example_preservation()).expect("form");
    app.paste(&form);
    let text = screen(&app);
    assert!(
        text.contains("valid: Ctrl+S sends") && text.contains("no problems"),
        "{text}"
    );
    let commands = app.handle_key(ctrl('s'));
    match &commands[..] {
        [Command::Request(ControlRequest::Submit { recipient, payload })] => {
            assert_eq!(recipient, "DE");
            assert_eq!(**payload, Payload::Preservation(example_preservation()));
        }
        other => panic!("{other:?}"),
    }
    // Keys while sending do nothing; the answer closes the dialog and focuses the outbox.
    assert!(press(&mut app, KeyCode::Char('x')).is_empty());
    app.apply(ControlResponse::Submitted {
        message_id: "abcdef0123456789abcdef0123456789".into(),
        recipient: "12D3KooWDeNode".into(),
        country: "DE".into(),
    });
    assert!(app.dialog.is_none());
    assert!(screen(&app).contains("accepted abcdef01 for DE"));
}

#[test]
fn a_refused_submit_keeps_the_draft_and_esc_twice_discards_it() {
    let mut app = night_app();
    press(&mut app, KeyCode::Char('n'));
    app.apply(ControlResponse::Peers { rows: peers() });
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter); // emergency
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter); // NL
    let Some(Dialog::Compose(compose)) = &mut app.dialog else {
        panic!()
    };
    assert_eq!(compose.stage, ComposeStage::Edit);
    compose.editor = super::editor::Editor::new("");
    app.paste(&toml::to_string(&example_emergency()).expect("form"));
    assert_eq!(app.handle_key(ctrl('s')).len(), 1);
    app.apply(ControlResponse::Error {
        message: "NL is not in the roster".into(),
    });
    assert!(screen(&app).contains("the request was NOT sent: NL is not in the roster"));
    assert!(matches!(app.dialog, Some(Dialog::Compose(_))));
    press(&mut app, KeyCode::Esc);
    assert!(
        screen(&app).contains("Esc again discards"),
        "{}",
        screen(&app)
    );
    press(&mut app, KeyCode::Esc);
    assert!(app.dialog.is_none());
}

#[test]
fn the_banner_shows_while_the_node_is_gone_and_clears_when_it_is_back() {
    let mut app = night_app();
    app.disconnected("the node closed the connection");
    let buffer = draw(&app, 80, 24);
    let text = lines(&buffer);
    assert!(text[1].contains("NODE NOT REACHABLE"), "{}", text[1]);
    assert!(
        text[1].contains("the node closed the connection"),
        "{}",
        text[1]
    );
    assert_eq!(buffer[(1, 1)].bg, Color::Red);
    // The last known lists stay on screen.
    assert!(text[2].contains("Inbox 3"));
    // An action while it is down fails visibly, without a panic.
    app.request_failed(
        &ControlRequest::Ack {
            message_id: EMERGENCY_ID.into(),
            officer: "x".into(),
        },
        "no node is running",
    );
    assert!(screen(&app).contains("NOT acknowledged: no node is running"));
    app.connected("12D3KooWFrNode");
    assert_eq!(app.link, Link::Up("12D3KooWFrNode".into()));
    let text = screen(&app);
    assert!(!text.contains("NODE NOT REACHABLE"));
    assert!(text.contains("connection to the node restored"), "{text}");
}

#[test]
fn hostile_text_from_the_network_cannot_reach_the_terminal() {
    let mut app = night_app();
    let mut rows = app.inbox.clone();
    rows.push(inbox_row(
        "44444444444444444444444444444444",
        "X\u{1b}[2J",
        "weird\u{7}",
        "nonsense",
        false,
        u64::MAX,
        "\u{1b}]0;owned\u{7}\u{1b}[31mred\nnewline",
    ));
    app.apply(ControlResponse::Inbox { rows });
    let mut detail = emergency_detail();
    detail.country = "\u{1b}[5m".into();
    detail.receipts[0].signer_country = "\u{9b}31m".into();
    for buffer in [draw(&app, 80, 24), draw(&app, 200, 50)] {
        for cell in buffer.content() {
            assert!(
                !cell.symbol().chars().any(char::is_control),
                "control character on screen"
            );
        }
    }
    press(&mut app, KeyCode::Enter);
    app.apply(ControlResponse::Message {
        detail: Box::new(detail),
    });
    for cell in draw(&app, 80, 24).content() {
        assert!(!cell.symbol().chars().any(char::is_control));
    }
}

#[test]
fn every_view_draws_at_any_size_without_panicking() {
    let sizes = [
        (80, 24),
        (200, 60),
        (40, 12),
        (20, 6),
        (19, 5),
        (1, 1),
        (0, 0),
    ];
    let mut views: Vec<App> = Vec::new();
    views.push(App::new("x"));
    views.push(night_app());
    let mut help = night_app();
    press(&mut help, KeyCode::Char('?'));
    views.push(help);
    let mut detail = night_app();
    press(&mut detail, KeyCode::Enter);
    detail.apply(ControlResponse::Message {
        detail: Box::new(emergency_detail()),
    });
    views.push(detail);
    let mut reply = night_app();
    press(&mut reply, KeyCode::Char('r'));
    views.push(night_app_with(|app| {
        press(app, KeyCode::Char('r'));
        press(app, KeyCode::Char('4'));
    }));
    views.push(reply);
    views.push(night_app_with(|app| {
        press(app, KeyCode::Char('n'));
    }));
    views.push(night_app_with(|app| {
        press(app, KeyCode::Char('n'));
        press(app, KeyCode::Enter);
    }));
    views.push(night_app_with(|app| {
        press(app, KeyCode::Char('n'));
        app.apply(ControlResponse::Peers { rows: peers() });
        press(app, KeyCode::Enter);
        press(app, KeyCode::Enter);
        for _ in 0..40 {
            press(app, KeyCode::Down);
        }
        type_text(app, "Ιωάννης 漢字 and a very long line that goes well past the right edge of an eighty column terminal");
    }));
    for app in &mut views {
        for (width, height) in sizes {
            app.size = (width, height);
            let _ = draw(app, width, height);
        }
    }
}

fn night_app_with(setup: impl FnOnce(&mut App)) -> App {
    let mut app = night_app();
    setup(&mut app);
    app
}

#[test]
fn help_lists_the_keys_and_q_quits_from_the_lists_only() {
    let mut app = night_app();
    press(&mut app, KeyCode::Char('?'));
    let text = screen(&app);
    assert!(
        text.contains("acknowledge a request (status: mark read)"),
        "{text}"
    );
    assert!(text.contains("search; Enter applies"), "{text}");
    assert!(text.contains("Ctrl+S"), "{text}");
    press(&mut app, KeyCode::Char('q')); // closes the help, does not quit
    assert!(!app.should_quit());
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('q')); // closes the message
    assert!(!app.should_quit() && app.detail.is_none());
    let commands = press(&mut app, KeyCode::Char('q'));
    assert!(app.should_quit());
    assert!(matches!(&commands[..], [Command::Quit]));
    // Ctrl+C quits from anywhere, even mid-compose.
    let mut app = night_app();
    press(&mut app, KeyCode::Char('n'));
    assert!(matches!(&app.handle_key(ctrl('c'))[..], [Command::Quit]));
}

#[test]
fn validation_errors_are_placed_on_their_lines() {
    let form = "# comment mentioning offence\noffence = \"\"\n\n[header]\ncase_reference = \"\"\n\n[header.contact]\nphone = \"\"\n\n[[data_identifiers]]\nemail = { address = \"\" }\n\n[[data_identifiers]]\nip-address = { address = \"\", timestamp = \"\" }\n";
    assert_eq!(line_of_field(form, "offence"), Some(1));
    assert_eq!(line_of_field(form, "header.case_reference"), Some(4));
    assert_eq!(line_of_field(form, "header.contact.phone"), Some(7));
    assert_eq!(
        line_of_field(form, "data_identifiers[1].timestamp"),
        Some(13)
    );
    assert_eq!(line_of_field(form, "data_identifiers[0]"), Some(9));
    assert_eq!(line_of_field(form, "data_identifiers[1]"), Some(12));
    assert_eq!(line_of_field(form, "nowhere"), None);
    assert_eq!(line_of_field(form, ""), None);
    assert_eq!(line_of_field("", "a.b[x].c"), None);
}

/// The capture in README.md is this screen; the test fails if they drift apart.
#[test]
fn the_readme_capture_is_what_the_console_draws() {
    let mut app = night_app();
    app.apply(ControlResponse::Inbox {
        rows: {
            let mut rows = app.inbox.clone();
            rows.push(inbox_row(
                "55555555555555555555555555555555",
                "PT",
                "emergency",
                "emergency",
                false,
                4,
                "PJ-2026-1187: EMERGENCY: Extortion; threat to publish",
            ));
            rows
        },
    });
    let capture = screen(&app);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let block = readme
        .split("<!-- console-capture -->")
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .unwrap_or_default();
    assert_eq!(
        block, capture,
        "README capture is out of date; the console now draws:\n{capture}"
    );
}

#[test]
fn overdue_rows_sort_first_and_are_marked() {
    let mut app = night_app();
    let mut late = inbox_row(
        ROUTINE_ID,
        "NL",
        "preservation",
        "routine",
        false,
        90_000,
        "NL-OM-2026-999: preserve 1 identifier(s): overdue",
    );
    late.overdue = vec!["acknowledge".into()];
    let mut fresh = inbox_row(
        EMERGENCY_ID,
        "DE",
        "emergency",
        "emergency",
        false,
        60,
        "HTCU-2026-0413: fresh emergency",
    );
    fresh.overdue.clear();
    app.apply(ControlResponse::Inbox {
        rows: vec![fresh, late],
    });
    assert_eq!(app.inbox[0].message_id, ROUTINE_ID, "the overdue row leads");
    let buffer = draw(&app, 80, 24);
    let text = lines(&buffer).join("\n");
    assert!(text.contains("1 DUE"), "{text}");
    let (_, late_y) = find(&buffer, "rtn NL").expect("overdue row");
    let (_, emergency_y) = find(&buffer, "EMR").expect("emergency row");
    assert!(late_y < emergency_y, "{text}");
    assert!(lines(&buffer)[late_y as usize].contains("DUE"), "{text}");
}

#[test]
fn slash_search_keeps_only_matching_rows_and_esc_clears_it() {
    let mut app = App::new("Officer Weber");
    let rows = vec![
        inbox_row(
            "aa11bb22cc33dd44ee55ff6600112233",
            "DE",
            "preservation",
            "urgent",
            false,
            60,
            "DE-BKA-1: preserve 1 identifier(s): ransomware",
        ),
        inbox_row(
            "bb11bb22cc33dd44ee55ff6600112233",
            "NL",
            "emergency",
            "emergency",
            false,
            30,
            "NL-OM-7: EMERGENCY: extortion",
        ),
    ];
    app.apply(ControlResponse::Inbox { rows: rows.clone() });
    assert_eq!(app.inbox.len(), 2);
    for key in ['/', 'r', 'a', 'n', 's', 'o', 'm'] {
        app.handle_key(KeyEvent::new(KeyCode::Char(key), KeyModifiers::NONE));
    }
    assert!(app.searching);
    let refresh = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(!app.searching);
    assert!(!refresh.is_empty(), "applying a search refreshes the lists");
    app.apply(ControlResponse::Inbox { rows: rows.clone() });
    assert_eq!(app.inbox.len(), 1);
    assert_eq!(app.inbox[0].country, "DE");
    app.handle_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE));
    app.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    app.apply(ControlResponse::Inbox { rows });
    assert_eq!(app.inbox.len(), 2, "Esc clears the search");
}

#[test]
fn an_unread_status_reply_neither_rings_nor_counts_as_waiting() {
    let mut app = App::new("Officer Weber");
    app.apply(ControlResponse::Inbox { rows: Vec::new() });
    let status = inbox_row(
        "cc11bb22cc33dd44ee55ff6600112233",
        "FR",
        "status",
        "emergency",
        false,
        5,
        "NL-OM-7: acknowledged by J. Martin",
    );
    let commands = app.apply(ControlResponse::Inbox { rows: vec![status] });
    assert!(
        !commands.iter().any(|c| matches!(c, Command::Bell)),
        "a status reply is not a new request"
    );
}

#[test]
fn the_message_view_speaks_the_configured_language_within_80_columns() {
    let mut app = night_app();
    app.language = Language::De;
    press(&mut app, KeyCode::Enter);
    app.apply(ControlResponse::Message {
        detail: Box::new(emergency_detail()),
    });
    let mut seen = String::new();
    for _ in 0..60 {
        let buffer = draw(&app, 80, 24);
        seen.push_str(&lines(&buffer).join("\n"));
        press(&mut app, KeyCode::Down);
    }
    assert!(
        seen.contains("ERSUCHEN UM OFFENLEGUNG IN EINEM NOTFALL"),
        "{seen}"
    );
    assert!(seen.contains("Tatsachen zum Notfall"), "{seen}");
    assert!(seen.contains("Nach dem Protokoll gestellt"), "{seen}");
    // What the sender wrote stays as written.
    assert!(seen.contains("Kidnapping for ransom"), "{seen}");
    // Every content line fits the pane: none is wrapped by the widget (a wrapped row would
    // start at the left border without the form's indent or a title).
    let detail = emergency_detail();
    let content = super::render::detail_lines(&detail, Language::De)
        .into_iter()
        .skip_while(|line| !line.to_string().starts_with("ERSUCHEN"))
        .collect::<Vec<_>>();
    assert!(content.len() > 20, "{content:?}");
    for line in content {
        assert!(line.width() <= 78, "{line:?}");
    }
}
