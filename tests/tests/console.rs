//! The real `quickfreeze console` under a pseudo-terminal, against real nodes: an emergency request
//! arrives, the officer sees it, acknowledges it with `a`, the sender's node gets the status, `q`
//! quits with exit status 0 and the terminal is given back (main screen, cursor shown, cooked mode).

mod common;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_emergency, Payload};

use common::{console, NodeProcess};

/// Output of the console so far, and the screen a terminal would show.
struct Screen {
    parser: vt100::Parser,
    raw: Vec<u8>,
    output: mpsc::Receiver<Vec<u8>>,
}

impl Screen {
    /// Reads output until `done(screen text)` holds; panics with the screen after `seconds`.
    fn wait_for(&mut self, what: &str, seconds: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let text = self.parser.screen().contents();
            if done(&text) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; screen:\n{text}"
            );
            if let Ok(bytes) = self
                .output
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                self.parser.process(&bytes);
                self.raw.extend_from_slice(&bytes);
            }
        }
    }

    /// Everything still buffered, until the pty closes or `seconds` pass.
    fn drain(&mut self, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            match self.output.recv_timeout(Duration::from_millis(100)) {
                Ok(bytes) => {
                    self.parser.process(&bytes);
                    self.raw.extend_from_slice(&bytes);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

fn local_flags(master: &dyn portable_pty::MasterPty) -> libc::tcflag_t {
    master
        .get_termios()
        .expect("termios of the pty")
        .local_flags
        .bits()
}

#[test]
fn the_console_shows_an_arriving_emergency_acknowledges_it_and_quits_cleanly() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = common::network(root.path(), "console-test", &["DE", "FR"]);
    let de = NodeProcess::start(&dirs[0]);
    let fr = NodeProcess::start(&dirs[1]);

    // DE sends an emergency request to FR and waits for FR's signed delivery receipt.
    let message_id = match console(
        &de.data_dir,
        &ControlRequest::Submit {
            recipient: "FR".into(),
            payload: Box::new(Payload::Emergency(example_emergency())),
        },
    ) {
        ControlResponse::Submitted { message_id, .. } => message_id,
        other => panic!("submit: {other:?}"),
    };
    let mut client = ControlClient::connect(&de.data_dir, Duration::from_secs(30)).expect("DE");
    match client
        .request(&ControlRequest::WaitDelivered {
            message_id: message_id.clone(),
            timeout_ms: 20_000,
        })
        .expect("wait")
    {
        ControlResponse::Delivered { .. } => {}
        other => panic!("not delivered: {other:?}"),
    }

    // FR's officer opens the console in an 80x24 terminal.
    let pty = native_pty_system();
    let pair = pty
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let cooked = local_flags(&*pair.master);
    assert_ne!(
        cooked & libc::ICANON,
        0,
        "a fresh pty starts in cooked mode"
    );
    let mut command = CommandBuilder::new(common::binary());
    command.args(["console", "--officer", "Officer Martin", "--data-dir"]);
    command.arg(&fr.data_dir);
    command.env("TERM", "xterm-256color");
    command.cwd(root.path());
    let mut child = pair.slave.spawn_command(command).expect("spawn console");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("reader");
    let mut writer = pair.master.take_writer().expect("writer");
    let (sender, output) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(read) = reader.read(&mut buffer) {
            if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        parser: vt100::Parser::new(
            std::num::NonZeroU16::new(24).expect("rows"),
            std::num::NonZeroU16::new(80).expect("cols"),
            0,
        ),
        raw: Vec::new(),
        output,
    };

    let text = screen.wait_for("the inbox with the emergency", 20, |text| {
        text.contains("Inbox 1 (1 new)") && text.contains("HTCU-2026-0977")
    });
    assert!(text.contains("FR point-of-contact"), "{text}");
    assert!(text.contains("1 peer up"), "{text}");
    assert!(text.contains("EMR DE emer"), "{text}");
    assert!(screen.parser.screen().alternate_screen());
    assert_eq!(
        local_flags(&*pair.master) & (libc::ICANON | libc::ECHO),
        0,
        "raw mode while the console runs"
    );

    // A second emergency arrives while the console is open: the bell rings and the status line
    // names it.
    match console(
        &de.data_dir,
        &ControlRequest::Submit {
            recipient: "FR".into(),
            payload: Box::new(Payload::Emergency(example_emergency())),
        },
    ) {
        ControlResponse::Submitted { .. } => {}
        other => panic!("second submit: {other:?}"),
    }
    let before = screen.raw.len();
    screen.wait_for("the new-arrival line", 15, |text| {
        text.contains("NEW EMERGENCY from DE") && text.contains("Inbox 2 (2 new)")
    });
    assert!(
        screen.raw[before..].contains(&0x07),
        "no bell for the new emergency"
    );

    // `a` acknowledges the selected one; FR's node records it and DE's node receives the status.
    writer.write_all(b"j").expect("type j"); // the first request, now second in the list
    writer.flush().expect("flush");
    writer.write_all(b"a").expect("type a");
    writer.flush().expect("flush");
    screen.wait_for("the acknowledgement", 10, |text| {
        text.contains("acknowledged") && text.contains("requester is told")
    });
    match console(&fr.data_dir, &ControlRequest::Inbox { limit: 10 }) {
        ControlResponse::Inbox { rows } => {
            let first = rows
                .iter()
                .find(|row| row.message_id == message_id)
                .expect("row");
            assert!(first.acknowledged, "{rows:?}");
            assert_eq!(rows.iter().filter(|row| row.acknowledged).count(), 1);
        }
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let ControlResponse::Message { detail } = console(
            &de.data_dir,
            &ControlRequest::Show {
                message_id: message_id.clone(),
            },
        ) {
            if let Some(status) = detail.status_history.first() {
                assert_eq!(status.officer, "Officer Martin");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "DE never saw the acknowledgement"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // `q` quits: exit 0, and the terminal is as it was.
    writer.write_all(b"q").expect("type q");
    writer.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "console did not quit on q");
        std::thread::sleep(Duration::from_millis(20));
    };
    screen.drain(2);
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !screen.parser.screen().alternate_screen(),
        "still on the alternate screen"
    );
    assert!(!screen.parser.screen().hide_cursor(), "cursor left hidden");
    assert!(
        !screen.parser.screen().bracketed_paste(),
        "bracketed paste left on"
    );
    assert_eq!(
        local_flags(&*pair.master) & (libc::ICANON | libc::ECHO | libc::ISIG),
        cooked & (libc::ICANON | libc::ECHO | libc::ISIG),
        "terminal modes not restored"
    );
    drop(writer);
    drop(de);
    drop(fr);
}

#[test]
fn the_console_refuses_to_run_without_a_terminal() {
    let root = tempfile::tempdir().expect("tempdir");
    let output = common::run(root.path(), &["console", "--data-dir", "."]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}
