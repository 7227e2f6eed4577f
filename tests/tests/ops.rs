//! Running in production, tested on the real binary: logs without colour off a terminal and as
//! JSON lines, systemd notifications (READY, WATCHDOG, STOPPING) over a real notify socket,
//! `quickfreeze doctor` finding each problem it checks for, and the packaged example config.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quickfreeze_keys::{AuthorityKey, SignedRoster, Timestamp};
use quickfreeze_node::config::{files, NodeConfig};
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_node::doctor::{self, Level, Options};
use quickfreeze_node::testnet::{self, NodeCommand, NodePlan, NodeProcess, Testnet};
use rand::SeedableRng;

const DAY_MS: u64 = 24 * 3600 * 1000;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickfreeze-under-test"))
}

/// A child process that is killed and reaped however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// SIGTERM (what systemd sends), then waits for the exit within `timeout`.
    fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Two points of contact (fr, de) under `root`; nothing runs yet.
fn two_nodes(root: &Path) -> Testnet {
    let plans = [
        NodePlan::point_of_contact("fr", "FR").expect("plan"),
        NodePlan::point_of_contact("de", "DE").expect("plan"),
    ];
    Testnet::build(root, "ops-test", &plans, None, |_, _| {}).expect("testnet")
}

/// Starts `quickfreeze run` for `data_dir` with extra environment, stderr into `log`.
fn spawn_run(data_dir: &Path, log: &Path, env: &[(&str, &str)]) -> Guard {
    let log = std::fs::File::create(log).expect("log file");
    let mut command = Command::new(binary());
    command
        .args(["run", "--data-dir"])
        .arg(data_dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("QUICKFREEZE_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    Guard(command.spawn().expect("spawn quickfreeze run"))
}

/// Waits until the node's console answers a status request.
fn wait_console(data_dir: &Path, child: &mut Guard, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(ControlResponse::Status { .. }) =
            testnet::console(data_dir, &ControlRequest::Status, Duration::from_secs(5))
        {
            return;
        }
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!(
                "node exited ({status}) before its console answered:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "console did not answer in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn text_logs_carry_no_colour_off_a_terminal_and_json_logs_are_json_lines() {
    let root = tempfile::tempdir().expect("tempdir");
    let net = two_nodes(root.path());
    let data_dir = &net.nodes[0].data_dir;

    let text_log = root.path().join("text.log");
    let mut node = spawn_run(data_dir, &text_log, &[]);
    wait_console(data_dir, &mut node, &text_log);
    assert!(node.terminate(Duration::from_secs(30)).success());
    let text = std::fs::read(&text_log).expect("read log");
    let text_str = String::from_utf8_lossy(&text);
    assert!(text_str.contains("node started"), "{text_str}");
    assert!(
        !text.contains(&0x1b),
        "ESC byte (ANSI colour) in a log written to a file:\n{text_str}"
    );

    let json_log = root.path().join("json.log");
    let mut node = spawn_run(data_dir, &json_log, &[("QUICKFREEZE_LOG_FORMAT", "json")]);
    wait_console(data_dir, &mut node, &json_log);
    assert!(node.terminate(Duration::from_secs(30)).success());
    let json = std::fs::read_to_string(&json_log).expect("read log");
    let mut messages = Vec::new();
    for line in json.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        // Every line has these; `message` only events that have one (some carry fields only).
        for field in ["timestamp", "level", "target"] {
            assert!(value.get(field).is_some(), "no `{field}` in {line}");
        }
        if let Some(message) = value.get("message").and_then(|message| message.as_str()) {
            messages.push(message.to_owned());
        }
    }
    assert!(
        messages.iter().any(|message| message == "node started"),
        "{json}"
    );
    assert!(
        messages.iter().any(|message| message == "node stopped"),
        "{json}"
    );
    assert!(!json.contains('\u{1b}'));

    // stderr is the journal (JOURNAL_STREAM names its device and inode): no timestamp of our
    // own, journald adds one. Named for another file, it is not the journal: timestamps stay.
    let journal_log = root.path().join("journal.log");
    std::fs::write(&journal_log, b"").expect("create");
    let metadata = std::fs::metadata(&journal_log).expect("stat");
    let stream = {
        use std::os::unix::fs::MetadataExt;
        format!("{}:{}", metadata.dev(), metadata.ino())
    };
    for (stream, stamped) in [(stream.as_str(), false), ("1:1", true)] {
        let mut node = spawn_run(data_dir, &journal_log, &[("JOURNAL_STREAM", stream)]);
        wait_console(data_dir, &mut node, &journal_log);
        assert!(node.terminate(Duration::from_secs(30)).success());
        let text = std::fs::read_to_string(&journal_log).expect("read log");
        let started = text
            .lines()
            .find(|line| line.contains("node started"))
            .unwrap_or_else(|| panic!("no start line in {text}"));
        let year = Timestamp::now().to_rfc3339()[..4].to_owned();
        assert_eq!(
            started.trim_start().starts_with(&year),
            stamped,
            "JOURNAL_STREAM={stream}: {started}"
        );
    }

    // A bad --log-format is refused with the choices named.
    let output = Command::new(binary())
        .args(["--log-format", "yaml", "status", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("yaml") && stderr.contains("json"),
        "{stderr}"
    );
}

#[test]
fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    let root = tempfile::tempdir().expect("tempdir");
    let net = two_nodes(root.path());
    let data_dir = &net.nodes[0].data_dir;
    let socket_path = root.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let log = root.path().join("node.log");
    let socket_text = socket_path.to_str().expect("utf-8 path");
    // WatchdogSec=1s: a ping at least every 0.5 s.
    let mut node = spawn_run(
        data_dir,
        &log,
        &[("NOTIFY_SOCKET", socket_text), ("WATCHDOG_USEC", "1000000")],
    );

    let mut heard: Vec<String> = Vec::new();
    let receive_until = |heard: &mut Vec<String>, done: &dyn Fn(&[String]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buffer = [0u8; 4096];
        while !done(heard) {
            assert!(
                Instant::now() < deadline,
                "heard only {heard:?}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            if let Ok(length) = socket.recv(&mut buffer) {
                let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
                heard.extend(datagram.lines().map(str::to_owned));
            }
        }
    };
    receive_until(&mut heard, &|heard| {
        heard.iter().any(|line| line == "READY=1")
    });
    // Ready means the console answers and the listen address is up.
    let response = testnet::console(data_dir, &ControlRequest::Status, Duration::from_secs(5))
        .expect("console answers once READY=1 was sent");
    let ControlResponse::Status { report } = response else {
        panic!("unexpected {response:?}");
    };
    assert!(!report.listen_addresses.is_empty());
    assert!(
        heard
            .iter()
            .any(|line| line.starts_with("STATUS=") && line.contains("ready")),
        "{heard:?}"
    );
    let ready_at = heard.len();
    receive_until(&mut heard, &|heard| {
        heard[ready_at..]
            .iter()
            .filter(|line| *line == "WATCHDOG=1")
            .count()
            >= 2
    });
    assert!(
        !heard[..ready_at].iter().any(|line| line == "WATCHDOG=1"),
        "watchdog pinged before READY: {heard:?}"
    );
    // Drain what came meanwhile, then stop as systemd would.
    let status = node.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    receive_until(&mut heard, &|heard| {
        heard.iter().any(|line| line == "STOPPING=1")
    });
}

fn finding<'a>(report: &'a doctor::Report, check: &str) -> &'a doctor::Finding {
    report
        .find(check)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no `{check}` finding in:\n{}", report.to_text()))
}

fn quick() -> Options {
    Options {
        // Free space depends on the machine; the disk check has its own test below.
        disk_warn_bytes: 0,
        disk_fail_bytes: 0,
        timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

#[test]
fn doctor_on_a_healthy_stopped_node_and_its_unreachable_peer() {
    let root = tempfile::tempdir().expect("tempdir");
    let net = two_nodes(root.path());
    let data_dir = &net.nodes[0].data_dir;
    let report = doctor::examine(data_dir, &quick());
    let text = report.to_text();
    for check in [
        "config",
        "key-file",
        "roster",
        "roster-entry",
        "disk",
        "port",
    ] {
        assert_eq!(finding(&report, check).level, Level::Ok, "{check}:\n{text}");
    }
    // Never started: no store yet, not running; no clock figures without a node.
    assert_eq!(finding(&report, "files").level, Level::Warn, "{text}");
    assert_eq!(finding(&report, "node").level, Level::Warn, "{text}");
    let skew = finding(&report, "clock-skew");
    assert_eq!(skew.level, Level::Skip);
    assert!(skew.detail.contains("not available"), "{text}");
    // The only other member is down: nobody reachable at all is this host's problem.
    let reach = finding(&report, "reach DE");
    assert_eq!(reach.level, Level::Fail, "{text}");
    assert!(
        reach.fix.as_deref().unwrap_or("").contains("firewall"),
        "{text}"
    );

    // Something accepts connections on DE's address now: reachable.
    let de_port = net.nodes[1]
        .listen
        .rsplit('/')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .expect("port");
    let _listener = std::net::TcpListener::bind(("127.0.0.1", de_port)).expect("bind DE port");
    let report = doctor::examine(data_dir, &quick());
    assert_eq!(
        finding(&report, "reach DE").level,
        Level::Ok,
        "{}",
        report.to_text()
    );
    assert_eq!(report.fail, 0, "{}", report.to_text());
}

#[test]
fn doctor_fails_an_open_key_file_a_taken_port_and_a_moved_config() {
    let root = tempfile::tempdir().expect("tempdir");
    let net = two_nodes(root.path());
    let data_dir = &net.nodes[0].data_dir;
    let key = data_dir.join(files::KEY);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let port = net.nodes[0]
        .listen
        .rsplit('/')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .expect("port");
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take the port");
    let report = doctor::examine(data_dir, &quick());
    let text = report.to_text();
    let key_finding = finding(&report, "key-file");
    assert_eq!(key_finding.level, Level::Fail, "{text}");
    assert_eq!(
        key_finding.fix.as_deref(),
        Some(format!("chmod 600 {}", key.display()).as_str())
    );
    let port_finding = finding(&report, "port");
    assert_eq!(port_finding.level, Level::Fail, "{text}");
    assert!(
        port_finding.detail.contains("in use by another process"),
        "{text}"
    );
    assert!(
        port_finding
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("ss -ltnp"),
        "{text}"
    );
    drop(squatter);

    // The binary: text on stdout, non-zero exit, and the same findings as JSON.
    let output = Command::new(binary())
        .args(["doctor", "--timeout", "2", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run doctor");
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL  key-file"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("check(s) failed"),
        "{output:?}"
    );
    let output = Command::new(binary())
        .args(["doctor", "--json", "--timeout", "2", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run doctor --json");
    assert!(!output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert!(json["fail"].as_u64().unwrap_or(0) >= 1, "{json}");
    assert!(json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|finding| finding["check"] == "key-file" && finding["level"] == "fail"));

    // A copy of the data directory whose node.toml still names the original by an absolute
    // path (as configs written before `data_dir = "."` did).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let copy = root.path().join("fr-copy");
    let status = Command::new("cp")
        .arg("-a")
        .arg(data_dir)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let copied_config = copy.join("node.toml");
    let text = std::fs::read_to_string(&copied_config).expect("copied config");
    let absolute = format!("data_dir = {:?}", data_dir.display().to_string());
    let rewritten: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("data_dir") {
                absolute.clone()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        rewritten.contains(&absolute),
        "config names its data_dir:\n{text}"
    );
    std::fs::write(&copied_config, rewritten + "\n").expect("rewrite config");
    let report = doctor::examine(&copy, &quick());
    let config = finding(&report, "config");
    assert_eq!(config.level, Level::Fail, "{}", report.to_text());
    // The config loader itself refuses such a copy; its message says what to write.
    let advice = format!("{} {}", config.detail, config.fix.as_deref().unwrap_or(""));
    assert!(advice.contains("data_dir = \".\""), "{advice}");
}

/// Re-signs node 0's roster with a different validity window, by `authority` as its only
/// authority.
fn install_roster_window(
    net: &Testnet,
    authority: &AuthorityKey,
    issued: Timestamp,
    expires: Timestamp,
) {
    let mut roster = net.roster.clone();
    roster.authorities = vec![authority.public()];
    roster.issued_at = issued;
    roster.expires_at = expires;
    let mut signed = SignedRoster::new(&roster).expect("roster");
    signed.sign(authority, None).expect("sign");
    std::fs::write(
        net.nodes[0].data_dir.join(files::ROSTER),
        signed.to_bytes().expect("encode"),
    )
    .expect("write roster");
}

#[test]
fn doctor_warns_of_a_roster_expiring_within_14_days_and_fails_an_expired_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(13);
    let authority = AuthorityKey::generate(&mut rng);
    let plans = [
        NodePlan::point_of_contact("fr", "FR").expect("plan"),
        NodePlan::point_of_contact("de", "DE").expect("plan"),
    ];
    let net = Testnet::build_signed_by(
        root.path(),
        "ops-test",
        &plans,
        &mut rng,
        &authority,
        |_, _| {},
    )
    .expect("testnet");
    let data_dir = &net.nodes[0].data_dir;
    let now = Timestamp::now();

    install_roster_window(
        &net,
        &authority,
        Timestamp(now.0 - DAY_MS),
        now.plus_ms(10 * DAY_MS),
    );
    let report = doctor::examine(data_dir, &quick());
    let roster = finding(&report, "roster");
    assert_eq!(roster.level, Level::Warn, "{}", report.to_text());
    assert!(
        roster.detail.contains("in 9 days") || roster.detail.contains("in 10 days"),
        "{}",
        roster.detail
    );
    assert!(roster.fix.is_some());

    install_roster_window(
        &net,
        &authority,
        Timestamp(now.0 - 3 * DAY_MS),
        Timestamp(now.0 - DAY_MS),
    );
    let report = doctor::examine(data_dir, &quick());
    let roster = finding(&report, "roster");
    assert_eq!(roster.level, Level::Fail, "{}", report.to_text());
    assert!(roster.detail.contains("expired"), "{}", roster.detail);

    // A roster signed by someone else is refused as such, expired or not.
    let stranger = AuthorityKey::generate(&mut rng);
    install_roster_window(
        &net,
        &stranger,
        Timestamp(now.0 - DAY_MS),
        now.plus_ms(30 * DAY_MS),
    );
    let report = doctor::examine(data_dir, &quick());
    let roster = finding(&report, "roster");
    assert_eq!(roster.level, Level::Fail, "{}", report.to_text());
    assert!(!roster.detail.contains("expired"), "{}", roster.detail);
}

#[test]
fn doctor_judges_free_disk_against_its_thresholds() {
    let root = tempfile::tempdir().expect("tempdir");
    let net = two_nodes(root.path());
    let data_dir = &net.nodes[0].data_dir;
    let level = |warn: u64, fail: u64| {
        let report = doctor::examine(
            data_dir,
            &Options {
                disk_warn_bytes: warn,
                disk_fail_bytes: fail,
                ..quick()
            },
        );
        let disk = finding(&report, "disk");
        assert!(disk.detail.contains("MiB free"), "{}", disk.detail);
        disk.level
    };
    assert_eq!(level(0, 0), Level::Ok);
    assert_eq!(level(u64::MAX, 0), Level::Warn);
    assert_eq!(level(u64::MAX, u64::MAX), Level::Fail);
}

#[test]
fn doctor_on_a_running_node_sees_it_and_its_port() {
    let root = tempfile::tempdir().expect("tempdir");
    let net = two_nodes(root.path());
    let data_dir = &net.nodes[0].data_dir;
    let _node = NodeProcess::start(
        &NodeCommand::binary(&binary()),
        data_dir,
        Duration::from_secs(60),
    )
    .expect("node starts");
    let report = doctor::examine(data_dir, &quick());
    let text = report.to_text();
    assert_eq!(finding(&report, "node").level, Level::Ok, "{text}");
    let port = finding(&report, "port");
    assert_eq!(port.level, Level::Ok, "{text}");
    assert!(port.detail.contains("held by this node"), "{text}");
    assert_eq!(finding(&report, "files").level, Level::Ok, "{text}");
    let skew = finding(&report, "clock-skew");
    assert_eq!(skew.level, Level::Skip);
    assert!(skew.detail.contains("does not report"), "{text}");
}

#[test]
fn packaged_example_config_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/node.toml");
    let example = NodeConfig::load(&path).expect("packaging/node.toml loads");
    let as_value = |config: &NodeConfig| {
        let mut value = toml::Value::try_from(config).expect("serialise");
        if let Some(table) = value.as_table_mut() {
            table.remove("data_dir");
        }
        value
    };
    assert_eq!(
        as_value(&example),
        as_value(&NodeConfig::default()),
        "packaging/node.toml no longer matches the defaults: regenerate it from `quickfreeze init` (see packaging/README.md)"
    );
    assert_eq!(example.data_dir, path.parent().expect("dir").join("."));
}
