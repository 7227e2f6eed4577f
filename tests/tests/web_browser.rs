//! The web console in a real browser: a two-node test network, `quickfreeze web` beside the
//! first node, and headless Chromium driven over WebDriver (chromedriver) with fantoccini.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`).
//! Without chromedriver the test fails and says how to install it, unless
//! `QF_SKIP_BROWSER_TESTS=1` is set. Screenshots of every page go to
//! `target/web-screenshots/`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_emergency, Payload};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "duty-room-password";
/// Longest wait for anything in the browser or the network.
const DEADLINE: Duration = Duration::from_secs(60);

/// A child process killed with its whole process group when dropped (chromedriver starts
/// Chromium, which starts more).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.0.id()))
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command) -> Group {
    Group(command.process_group(0).spawn().expect("spawn"))
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write png");
}

/// Waits (bounded) until `check` holds.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits (bounded) until the element matching `css` shows text containing `needle`: a click
/// that submits a form may return before the next page is there.
async fn wait_text(client: &Client, css: &str, needle: &str) {
    let start = Instant::now();
    loop {
        let text = text_of(client, css).await;
        if text.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for `{needle}` in {css}; it shows `{text}`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(client: &Client, id: &str, value: &str) {
    let element = client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    element.clear().await.expect("clear");
    element.send_keys(value).await.expect("type");
}

async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

fn start_web(data_dir: &Path) -> (Group, String) {
    let mut child = spawn_group(
        Command::new(common::binary())
            .args(["web", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("web console prints its address");
    let url = line
        .trim()
        .strip_prefix("web console listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim_end_matches('/')
        .to_string();
    (child, url)
}

fn add_officer(data_dir: &Path, name: &str) {
    let mut child = Command::new(common::binary())
        .args(["officer", "add", name, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("officer add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn start_browser(downloads: &Path, profile: &Path) -> Option<(Group, Client)> {
    if !Path::new(CHROMEDRIVER).exists() {
        if std::env::var("QF_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
            eprintln!("skipping the browser test: QF_SKIP_BROWSER_TESTS=1 and no {CHROMEDRIVER}");
            return None;
        }
        panic!(
            "the web console's browser test needs Chromium and chromedriver: run \
             `apt-get install -y chromium chromium-driver` (Debian), or set \
             QF_SKIP_BROWSER_TESTS=1 to skip it"
        );
    }
    let port = common::free_port();
    let driver = spawn_group(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Some((driver, client)),
            Err(error) => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "chromedriver did not start: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_works_a_case_in_the_browser() {
    let root = tempfile::tempdir().expect("tempdir");
    let downloads = root.path().join("downloads");
    let profile = root.path().join("chromium-profile");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let Some((_driver, client)) = start_browser(&downloads, &profile).await else {
        return;
    };
    let dirs = common::network(root.path(), "web-tests", &["NL", "FR"]);
    // The low-water mark in percent follows the machine's disk (2 % of a large shared disk is
    // gigabytes); this test is about the console, so only the fixed 64 MiB mark applies.
    for dir in &dirs {
        let config = dir.join("node.toml");
        let mut table: toml::Table = std::fs::read_to_string(&config)
            .expect("node.toml")
            .parse()
            .expect("toml");
        let store = table
            .entry("store")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        store
            .as_table_mut()
            .expect("[store] is a table")
            .insert("low_water_percent".into(), toml::Value::Integer(0));
        std::fs::write(&config, table.to_string()).expect("node.toml");
    }
    let _nl = common::NodeProcess::start(&dirs[0]);
    let _fr = common::NodeProcess::start(&dirs[1]);
    add_officer(&dirs[0], "Ana de Vries");
    let (_web, base) = start_web(&dirs[0]);

    // A wrong password is refused.
    client
        .goto(&format!("{base}/login"))
        .await
        .expect("login page");
    screenshot(&client, "01-login").await;
    fill(&client, "name", "Ana de Vries").await;
    fill(&client, "password", "not the password").await;
    click(&client, "login").await;
    wait_text(&client, "#login-error", "Wrong officer name or password").await;
    screenshot(&client, "02-login-refused").await;

    // The right one opens the inbox.
    fill(&client, "name", "Ana de Vries").await;
    fill(&client, "password", PASSWORD).await;
    click(&client, "login").await;
    wait_text(&client, "#officer", "Ana de Vries").await;
    wait_until("the live view to connect", || async {
        text_of(&client, "#live").await.starts_with("Live")
    })
    .await;
    // Marks this page: if the browser reloads it, the mark is gone.
    client
        .execute("window.qfMark = 42; return 1;", vec![])
        .await
        .expect("mark");

    // An emergency arrives from FR and shows up without a reload.
    let message_id = match common::console(
        &dirs[1],
        &ControlRequest::Submit {
            recipient: "NL".into(),
            payload: Box::new(Payload::Emergency(example_emergency())),
        },
    ) {
        ControlResponse::Submitted { message_id, .. } => message_id,
        other => panic!("FR could not submit: {other:?}"),
    };
    let row = format!("tr[data-id='{message_id}']");
    wait_until("the emergency to appear in the inbox", || async {
        client.find(Locator::Css(&row)).await.is_ok()
    })
    .await;
    let mark = client
        .execute("return window.qfMark;", vec![])
        .await
        .expect("mark");
    assert_eq!(mark, serde_json::json!(42), "the page was reloaded");
    let class = client
        .find(Locator::Css(&row))
        .await
        .expect("row")
        .attr("class")
        .await
        .expect("class");
    assert_eq!(class.as_deref(), Some("emergency"));
    wait_text(&client, "#alert", "New EMERGENCY request from FR").await;
    screenshot(&client, "03-emergency-arrived").await;

    // Open it and acknowledge.
    client
        .find(Locator::Css(&format!("{row} a")))
        .await
        .expect("link")
        .click()
        .await
        .expect("open");
    wait_text(&client, "#message-id", &message_id).await;
    // The sender's conditions on use stand first, above the details and the labelled form.
    wait_text(&client, "#conditions", "CONDITIONS ON USE").await;
    wait_text(
        &client,
        "#conditions",
        "only with the sender's prior consent",
    )
    .await;
    wait_text(&client, "#content", "Art. 9").await;
    screenshot(&client, "04-message").await;
    click(&client, "ack").await;
    wait_text(&client, "#notice", "Acknowledged").await;
    assert!(client.find(Locator::Id("acknowledged")).await.is_ok());

    // Reply with a status: first without what it needs, then complete.
    client
        .find(Locator::Css("#f-status option[value='preserved']"))
        .await
        .expect("option")
        .click()
        .await
        .expect("select");
    fill(&client, "f-reference", "NL-PRES-7").await;
    click(&client, "send-reply").await;
    wait_text(&client, "#f-expires-at-error", "required").await;
    fill(&client, "f-expires-at", "2027-03-01T00:00:00Z").await;
    click(&client, "send-reply").await;
    wait_text(&client, "#notice", "Status sent").await;
    // The acknowledgement and the status each went out as a status message.
    let replies = client
        .find_all(Locator::Css("#replies li"))
        .await
        .expect("replies");
    assert_eq!(replies.len(), 2);
    // The case thread: the request, the acknowledgement and the status, oldest first.
    let thread = client
        .find_all(Locator::Css("#thread tbody tr"))
        .await
        .expect("thread rows");
    assert_eq!(
        thread.len(),
        3,
        "the case thread lists request, acknowledgement, status"
    );
    wait_text(&client, "#thread", "verified on arrival").await;
    screenshot(&client, "05-acknowledged-and-replied").await;

    // Download the message with its receipts.
    click(&client, "download").await;
    let file = downloads.join(format!("message-{message_id}.json"));
    wait_until("the download", || async { file.exists() }).await;
    let detail: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("download")).expect("json");
    assert_eq!(detail["message_id"], serde_json::json!(message_id));

    // Download the case's evidence bundle: the file checks offline, as `evidence verify` would.
    click(&client, "evidence").await;
    let bundle = downloads.join(format!("{}.evidence.html", &message_id[..8]));
    wait_until("the evidence bundle", || async { bundle.exists() }).await;
    // Chromium writes to a temporary name and renames when done; the final name is complete.
    let verified =
        quickfreeze_node::evidence::verify(&std::fs::read(&bundle).expect("evidence bundle"), None)
            .expect("the downloaded evidence bundle verifies");
    assert_eq!(verified.message_id, message_id);

    // Compose a preservation request with a wrong time, see the error by the field, fix, send.
    client
        .goto(&format!("{base}/compose/preservation"))
        .await
        .expect("compose");
    for (id, value) in [
        ("f-recipient", "FR"),
        ("f-header-case-reference", "NL-2026-0412"),
        (
            "f-header-requesting-authority",
            "Public Prosecutor, The Hague",
        ),
        ("f-header-contact-phone", "+31 70 555 0100"),
        ("f-header-contact-email", "duty@example.org"),
        ("f-offence", "Ransomware attack on a hospital"),
        ("f-facts-summary", "Files encrypted on 23 November."),
        ("f-data-to-preserve", "Subscriber data and connection logs"),
        (
            "f-relationship-to-offence",
            "The address ran the attack's control server",
        ),
        ("f-necessity", "The provider deletes logs after 7 days"),
        ("f-data-identifiers-0--value", "203.0.113.7"),
        ("f-data-identifiers-0--timestamp", "yesterday at three"),
    ] {
        fill(&client, id, value).await;
    }
    click(&client, "f-mla-intent").await;
    click(&client, "send").await;
    wait_text(
        &client,
        "#f-data-identifiers-0--timestamp-error",
        "RFC 3339",
    )
    .await;
    wait_text(&client, "#form-errors", "data_identifiers[0].timestamp").await;
    screenshot(&client, "06-compose-inline-error").await;
    fill(
        &client,
        "f-data-identifiers-0--timestamp",
        "2026-11-23T02:41:00Z",
    )
    .await;
    click(&client, "send").await;
    wait_text(&client, "#notice", "Accepted").await;
    let sent_id = text_of(&client, "#message-id").await;
    assert_eq!(sent_id.len(), 32);
    common::console(
        &dirs[0],
        &ControlRequest::WaitDelivered {
            message_id: sent_id.clone(),
            timeout_ms: 30_000,
        },
    );
    client.refresh().await.expect("reload");
    screenshot(&client, "07-sent").await;

    // A forged CSRF token is refused and nothing happens.
    client.goto(&base).await.expect("home");
    client
        .execute(
            "document.querySelector('form[action=\"/logout\"] input[name=csrf]').value = 'forged'; return 1;",
            vec![],
        )
        .await
        .expect("forge");
    click(&client, "logout").await;
    wait_text(&client, "#problem", "security token").await;
    screenshot(&client, "08-csrf-refused").await;

    for (path, name) in [
        ("/status", "09-status"),
        ("/stats", "10-statistics"),
        ("/", "11-inbox"),
    ] {
        client.goto(&format!("{base}{path}")).await.expect("page");
        wait_text(&client, "#officer", "Ana de Vries").await;
        screenshot(&client, name).await;
    }

    // The audit trail names the officer.
    let ControlResponse::AuditPage { lines, .. } = common::console(
        &dirs[0],
        &ControlRequest::AuditExport {
            since_ms: 0,
            after: None,
            limit: 1000,
        },
    ) else {
        panic!("audit export");
    };
    let trail = serde_json::to_string(&lines).expect("json");
    assert!(trail.contains("officer Ana de Vries: logged in to the web console"));
    assert!(trail.contains("acknowledged by officer Ana de Vries"));
    assert!(trail.contains("officer Ana de Vries: downloaded the evidence bundle"));

    // Log out: the session is gone.
    click(&client, "logout").await;
    client.goto(&base).await.expect("home");
    assert!(client
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/login"));
    client.close().await.expect("close the browser");
}
