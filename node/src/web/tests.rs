//! Unit tests of the web console's router, called without a socket (`tower::ServiceExt::oneshot`)
//! against a fake node that records what it was asked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use quickfreeze_proto::payload::Status;
use tower::ServiceExt;

use super::backend::Backend;
use super::officers::{hash_password, Officers};
use super::routes::{router, WebState, LOGIN_COOKIE, SESSION_COOKIE};
use super::sessions::{MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS};
use crate::control::{ControlRequest, ControlResponse, InboxRow, MessageDetail, PeerRow};

const KNOWN: &str = "0123456789abcdef0123456789abcdef";
const ANA_PASSWORD: &str = "ana-password-1";
const BOB_PASSWORD: &str = "bob-password-1";

#[derive(Default)]
struct FakeNode {
    asked: Mutex<Vec<ControlRequest>>,
}

impl FakeNode {
    fn asked(&self) -> Vec<ControlRequest> {
        self.asked.lock().expect("lock").clone()
    }
}

impl Backend for FakeNode {
    fn request(&self, request: ControlRequest) -> Result<ControlResponse, String> {
        self.asked.lock().expect("lock").push(request.clone());
        Ok(match request {
            ControlRequest::Inbox { .. } => ControlResponse::Inbox { rows: inbox() },
            ControlRequest::InboxQuery { query } => {
                assert!(!query.flat, "the web lists one row per case thread");
                ControlResponse::InboxPage {
                    rows: inbox(),
                    total: 1,
                    next_after: None,
                }
            }
            ControlRequest::OutboxQuery { .. } => ControlResponse::OutboxPage {
                rows: Vec::new(),
                total: 0,
                next_after: None,
            },
            ControlRequest::Show { message_id }
                if message_id == WITH_FILES || message_id == TAMPERED =>
            {
                ControlResponse::Message {
                    detail: Box::new(with_files(&message_id)),
                }
            }
            ControlRequest::Outbox { .. } => ControlResponse::Outbox { rows: Vec::new() },
            ControlRequest::Show { message_id } if message_id == KNOWN => {
                ControlResponse::Message {
                    detail: Box::new(MessageDetail {
                        direction: "inbound".into(),
                        message_id,
                        peer: "peer".into(),
                        country: "FR".into(),
                        priority: "emergency".into(),
                        state: "new".into(),
                        payload: Some(quickfreeze_proto::payload::Payload::Emergency(
                            quickfreeze_proto::payload::example_emergency(),
                        )),
                        receipts: Vec::new(),
                        status_history: Vec::new(),
                        replies: Vec::new(),
                        last_error: None,
                        thread: Vec::new(),
                    }),
                }
            }
            ControlRequest::Show { message_id } => ControlResponse::Error {
                message: format!("no message {message_id} in the inbox or outbox"),
            },
            ControlRequest::Ack { .. } => ControlResponse::Acknowledged {
                status_message_id: Some("ff".repeat(16)),
            },
            ControlRequest::Reply { .. } => ControlResponse::Replied {
                status_message_id: "ee".repeat(16),
            },
            ControlRequest::Submit { .. } => ControlResponse::Submitted {
                message_id: "dd".repeat(16),
                recipient: "peer".into(),
                country: "FR".into(),
            },
            ControlRequest::Peers => ControlResponse::Peers {
                rows: vec![PeerRow {
                    node_id: "peer".into(),
                    country: "FR".into(),
                    authority_name: "FR 24/7".into(),
                    role: "point-of-contact".into(),
                    connected: true,
                    consecutive_failures: 0,
                    retry_at: None,
                    misbehaviour: Default::default(),
                }],
            },
            ControlRequest::OfficerAction { .. } => ControlResponse::ActionRecorded,
            ControlRequest::Status => ControlResponse::Status {
                report: Box::new(low_disk_report()),
            },
            ControlRequest::Stats { .. } => ControlResponse::Stats { rows: Vec::new() },
            ControlRequest::EvidenceExport { message_id } if message_id == KNOWN => {
                ControlResponse::Evidence {
                    file: NOT_A_BUNDLE.into(),
                }
            }
            ControlRequest::EvidenceExport { message_id } => ControlResponse::Error {
                message: format!("no message {message_id} in the outbox or inbox"),
            },
            other => ControlResponse::Error {
                message: format!("the fake node does not answer {other:?}"),
            },
        })
    }
}

/// What the fake node answers for [`KNOWN`]'s evidence bundle: a page that is not a bundle.
const NOT_A_BUNDLE: &str = "<!DOCTYPE html><p>not an evidence bundle</p>";
const WITH_FILES: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TAMPERED: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn inbox() -> Vec<InboxRow> {
    vec![InboxRow {
        message_id: KNOWN.into(),
        sender: "peer".into(),
        country: "FR".into(),
        kind: "emergency".into(),
        priority: "emergency".into(),
        received_at: "2026-12-01T00:00:00Z".into(),
        age_s: 5,
        acknowledged: false,
        summary: "FR-1: EMERGENCY: kidnapping".into(),
        via_relay: None,
        overdue: Vec::new(),
        thread: KNOWN.into(),
        thread_messages: 1,
        latest: None,
        awaits_acknowledgement: true,
        conditions: None,
    }]
}

/// A received preservation request with two files (one with a hostile name and HTML content)
/// in a thread of three messages; under [`TAMPERED`] the second file's bytes do not match their
/// signed digest.
fn with_files(id: &str) -> MessageDetail {
    use quickfreeze_proto::payload::{example_preservation, Attachment, Payload};
    let mut request = example_preservation();
    request.attachments = vec![
        Attachment::new("logs.csv", "text/csv", b"time,ip\n1,192.0.2.1\n".to_vec()),
        Attachment::new(
            "../../<script>evil\".html",
            "text/html",
            b"<script>alert(1)</script>".to_vec(),
        ),
    ];
    if id == TAMPERED {
        request.attachments[1].bytes = b"<p>swapped</p>".to_vec();
    }
    let item =
        |message_id: &str, direction: &str, kind: &str, officer: Option<&str>, summary: &str| {
            crate::control::ThreadItem {
                message_id: message_id.into(),
                direction: direction.into(),
                at: "2026-12-01T00:00:00Z".into(),
                signed_by: "peer".into(),
                country: "FR".into(),
                kind: kind.into(),
                officer: officer.map(str::to_string),
                summary: summary.into(),
                state: "read".into(),
            }
        };
    MessageDetail {
        direction: "inbound".into(),
        message_id: id.into(),
        peer: "peer".into(),
        country: "FR".into(),
        priority: "urgent".into(),
        state: "new".into(),
        payload: Some(Payload::Preservation(request)),
        receipts: Vec::new(),
        status_history: Vec::new(),
        replies: Vec::new(),
        last_error: None,
        thread: vec![
            item(
                id,
                "inbound",
                "preservation",
                None,
                "FR-7: preserve the logs",
            ),
            item(
                &"cc".repeat(16),
                "outbound",
                "status",
                Some("ana"),
                "preserved P-1 until 2027-03-01",
            ),
            item(
                &"dd".repeat(16),
                "inbound",
                "free-text",
                None,
                "thank you, MLA follows",
            ),
        ],
    }
}

struct Harness {
    dir: tempfile::TempDir,
    node: Arc<FakeNode>,
    state: WebState,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut officers = Officers::default();
    for (name, password) in [("ana", ANA_PASSWORD), ("bob", BOB_PASSWORD)] {
        officers
            .officers
            .insert(name.into(), hash_password(password).expect("hash"));
    }
    officers.save(dir.path()).expect("save");
    let node = Arc::new(FakeNode::default());
    let state = WebState::new(node.clone(), dir.path(), false);
    Harness { dir, node, state }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Harness {
    fn app(&self, from: &str) -> Router {
        let address: SocketAddr = format!("{from}:40000").parse().expect("address");
        router(self.state.clone()).layer(MockConnectInfo(address))
    }

    async fn send(&self, from: &str, request: Request<Body>) -> Reply {
        let response = self.app(from).oneshot(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Reply {
        let mut request = Request::get(path);
        if let Some(session) = session {
            request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={session}"));
        }
        self.send("127.0.0.1", request.body(Body::empty()).expect("request"))
            .await
    }

    async fn post(&self, path: &str, session: &str, body: impl Into<Body>) -> Reply {
        let request = Request::post(path)
            .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.into())
            .expect("request");
        self.send("127.0.0.1", request).await
    }

    /// Attempts a login from `from`; returns the reply.
    async fn try_login(&self, from: &str, name: &str, password: &str) -> Reply {
        let page = self
            .send(
                from,
                Request::get("/login").body(Body::empty()).expect("request"),
            )
            .await;
        let token = cookie(&page, LOGIN_COOKIE).expect("login cookie");
        assert_eq!(csrf_in(&page.body), token);
        let body = format!(
            "csrf={token}&name={}&password={}",
            super::form::encode(name),
            super::form::encode(password)
        );
        let request = Request::post("/login")
            .header(header::COOKIE, format!("{LOGIN_COOKIE}={token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(from, request).await
    }

    /// Logs in and returns (session cookie, CSRF token).
    async fn login(&self, name: &str, password: &str) -> (String, String) {
        let reply = self.try_login("127.0.0.1", name, password).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        let session = cookie(&reply, SESSION_COOKIE).expect("session cookie");
        let home = self.get("/", Some(&session)).await;
        assert_eq!(home.status, StatusCode::OK);
        (session, csrf_in(&home.body))
    }
}

fn cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .and_then(|value| value.split(';').next())
        .and_then(|pair| pair.split_once('='))
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

#[tokio::test]
async fn login_sets_a_strict_http_only_session_and_shows_the_inbox() {
    let h = harness();
    let reply = h.try_login("127.0.0.1", "ana", ANA_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let set_cookie = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(SESSION_COOKIE))
        .expect("session cookie")
        .to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP on loopback: no Secure flag"
    );
    let session = cookie(&reply, SESSION_COOKIE).expect("cookie");
    let home = h.get("/", Some(&session)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("EMERGENCY") && home.body.contains("class=\"emergency\""));
    assert!(home
        .body
        .contains("Officer: <strong id=\"officer\">ana</strong>"));
    assert!(home.headers.get(header::CONTENT_SECURITY_POLICY).is_some());
    // The login was recorded under the officer's name.
    assert!(h.node.asked().iter().any(|r| matches!(r,
        ControlRequest::OfficerAction { officer, action, .. } if officer == "ana" && action.contains("logged in"))));
}

#[tokio::test]
async fn wrong_passwords_unknown_names_and_forged_login_forms_are_refused() {
    let h = harness();
    let reply = h.try_login("127.0.0.1", "ana", "not-her-password").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Wrong officer name or password"));
    assert!(cookie(&reply, SESSION_COOKIE).is_none());
    let reply = h.try_login("127.0.0.1", "mallory", ANA_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A login form posted without the login cookie (e.g. from another site) is refused.
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf=abc&name=ana&password={ANA_PASSWORD}"
        )))
        .expect("request");
    let reply = h.send("127.0.0.1", request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(cookie(&reply, SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn pages_need_a_session() {
    let h = harness();
    for path in [
        "/",
        "/message/0123456789abcdef0123456789abcdef",
        "/compose",
        "/status",
        "/stats",
    ] {
        let reply = h.get(path, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            reply.headers.get(header::LOCATION).expect("location"),
            "/login"
        );
        let reply = h.get(path, Some("forged-session")).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
    }
    let reply = h
        .post(&format!("/message/{KNOWN}/ack"), "forged", "csrf=x")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::Ack { .. })));
    let reply = h.get("/events", None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn actions_need_the_sessions_own_csrf_token_and_carry_the_officers_name() {
    let h = harness();
    let (ana, ana_csrf) = h.login("ana", ANA_PASSWORD).await;
    let (bob, _) = h.login("bob", BOB_PASSWORD).await;
    // No token, a forged token, and another officer's token are all refused.
    for body in [
        "".to_string(),
        "csrf=forged".to_string(),
        format!("csrf={ana_csrf}"),
    ] {
        let reply = h
            .post(&format!("/message/{KNOWN}/ack"), &bob, body.clone())
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{body}");
        assert!(reply.body.contains("security token"));
    }
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::Ack { .. })));
    let reply = h
        .post(
            &format!("/message/{KNOWN}/ack"),
            &ana,
            format!("csrf={ana_csrf}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(h.node.asked().iter().any(|r| matches!(r,
        ControlRequest::Ack { message_id, officer } if message_id == KNOWN && officer == "ana")));
}

#[tokio::test]
async fn logins_are_rate_limited_per_account_and_per_address() {
    let h = harness();
    for _ in 0..MAX_FAILURES_PER_ACCOUNT {
        let reply = h.try_login("127.0.0.1", "ana", "wrong-password").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is not checked now.
    let reply = h.try_login("127.0.0.1", "ana", ANA_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.headers.get(header::RETRY_AFTER).is_some());
    assert!(reply
        .body
        .contains("Too many failed logins for this account"));
    // Bob is not locked out by attacks on Ana.
    assert_eq!(
        h.try_login("127.0.0.1", "bob", BOB_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );

    // One address guessing many names is locked as an address.
    for i in 0..MAX_FAILURES_PER_ADDRESS {
        let reply = h
            .try_login("127.0.0.9", &format!("guess{i}"), "wrong-password")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = h.try_login("127.0.0.9", "bob", BOB_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.body.contains("this computer"));
    assert_eq!(
        h.try_login("127.0.0.2", "bob", BOB_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn oversized_bodies_bad_utf8_and_bad_ids_are_refused() {
    let h = harness();
    let (ana, csrf) = h.login("ana", ANA_PASSWORD).await;
    let big = format!("csrf={csrf}&note={}", "a".repeat(super::MAX_FORM_BYTES + 1));
    let reply = h.post(&format!("/message/{KNOWN}/reply"), &ana, big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let mut bad = format!("csrf={csrf}&status=data-not-available&explanation=").into_bytes();
    bad.extend_from_slice(b"\xff\xfe");
    let reply = h.post(&format!("/message/{KNOWN}/reply"), &ana, bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("UTF-8"));
    let reply = h
        .post(
            &format!("/message/{KNOWN}/reply"),
            &ana,
            format!("csrf={csrf}&status=data-not-available&explanation=%C3%28"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::Reply { .. })));

    let reply = h.get("/message/not-an-id", Some(&ana)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("32 hex digits"));
    let reply = h
        .get(&format!("/message/{}", "ab".repeat(16)), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("no message"));
    let reply = h
        .post("/message/zz/ack", &ana, format!("csrf={csrf}"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = h.get("/compose/no-such-form", Some(&ana)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h.get("/no/such/page", Some(&ana)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reply_names_missing_fields_then_sends_under_the_officers_name() {
    let h = harness();
    let (ana, csrf) = h.login("ana", ANA_PASSWORD).await;
    let reply = h
        .post(
            &format!("/message/{KNOWN}/reply"),
            &ana,
            format!("csrf={csrf}&status=preserved&reference=P-7"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("id=\"f-expires-at-error\">the end of the preservation is required"),
        "{}",
        reply.body
    );
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::Reply { .. })));
    let reply = h
        .post(&format!("/message/{KNOWN}/reply"), &ana, format!("csrf={csrf}&status=preserved&reference=P-7&expires_at=2027-03-01T00%3A00%3A00Z&note=ok"))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(h.node.asked().iter().any(|r| matches!(r,
        ControlRequest::Reply { officer, status: Status::Preserved { reference, .. }, note, .. }
            if officer == "ana" && reference == "P-7" && note == "ok")));
}

#[tokio::test]
async fn compose_shows_errors_by_field_then_sends() {
    let h = harness();
    let (ana, csrf) = h.login("ana", ANA_PASSWORD).await;
    let form = h.get("/compose/free-text", Some(&ana)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("<label for=\"f-subject\">"));
    // No subject and a malformed reference.
    let body =
        format!("csrf={csrf}&recipient=FR&priority=routine&subject=&body=hello&references=xyz");
    let reply = h.post("/compose/free-text", &ana, body).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("id=\"f-references-error\">`xyz` is not a message id"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("id=\"f-subject-error\">"));
    assert!(reply.body.contains("aria-invalid=\"true\""));
    assert!(
        reply.body.contains("value=\"FR\""),
        "the officer's input is kept"
    );
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::Submit { .. })));
    let body = format!("csrf={csrf}&recipient=FR&priority=routine&subject=Follow-up&body=hello");
    let reply = h.post("/compose/free-text", &ana, body).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let asked = h.node.asked();
    assert!(asked
        .iter()
        .any(|r| matches!(r, ControlRequest::Submit { recipient, .. } if recipient == "FR")));
    assert!(asked.iter().any(|r| matches!(r,
        ControlRequest::OfficerAction { officer, message_id: Some(_), .. } if officer == "ana")));
}

#[tokio::test]
async fn logout_and_account_changes_end_the_session() {
    let h = harness();
    let (ana, csrf) = h.login("ana", ANA_PASSWORD).await;
    // Logout needs the token too.
    assert_eq!(
        h.post("/logout", &ana, "csrf=forged").await.status,
        StatusCode::FORBIDDEN
    );
    let reply = h.post("/logout", &ana, format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(h.get("/", Some(&ana)).await.status, StatusCode::SEE_OTHER);

    let (bob, _) = h.login("bob", BOB_PASSWORD).await;
    let mut officers = Officers::load(h.dir.path()).expect("load");
    officers.officers.remove("bob");
    officers.save(h.dir.path()).expect("save");
    assert_eq!(h.get("/", Some(&bob)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_message_downloads_as_json() {
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    let page = h.get(&format!("/message/{KNOWN}"), Some(&ana)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Acknowledge as ana"));
    let reply = h.get(&format!("/message/{KNOWN}/json"), Some(&ana)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let disposition = reply
        .headers
        .get(header::CONTENT_DISPOSITION)
        .expect("disposition");
    assert!(disposition
        .to_str()
        .expect("text")
        .contains(&format!("message-{KNOWN}.json")));
    let detail: MessageDetail = serde_json::from_str(&reply.body).expect("json");
    assert_eq!(detail.message_id, KNOWN);
}

#[tokio::test]
async fn all_five_kinds_can_be_composed_and_a_status_update_is_checked_then_signed_by_the_officer()
{
    let h = harness();
    let (ana, csrf) = h.login("ana", ANA_PASSWORD).await;
    let menu = h.get("/compose", Some(&ana)).await;
    for kind in [
        "emergency",
        "preservation",
        "traffic",
        "status",
        "free-text",
    ] {
        assert!(
            menu.body.contains(&format!("href=\"/compose/{kind}\"")),
            "{kind} missing from the menu"
        );
        let form = h.get(&format!("/compose/{kind}"), Some(&ana)).await;
        assert_eq!(form.status, StatusCode::OK, "{kind}");
    }
    let form = h.get("/compose/status", Some(&ana)).await;
    assert!(form.body.contains("<select id=\"f-status\""));
    assert!(form.body.contains("<select id=\"f-ground\""));

    // "Preserved" without its reference, "refused" would need a ground; no request id.
    let body = format!(
        "csrf={csrf}&recipient=FR&priority=urgent&case_reference=FR-1&status=preserved&expires_at=2027-03-01T00%3A00%3A00Z"
    );
    let reply = h.post("/compose/status", &ana, body).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("id=\"f-reference-error\">your preservation reference is required"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("id=\"f-references-error\">fill in the message id"),
        "{}",
        reply.body
    );
    let body = format!("csrf={csrf}&recipient=FR&references={KNOWN}&case_reference=FR-1&status=refused&explanation=no");
    let reply = h.post("/compose/status", &ana, body).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply
        .body
        .contains("id=\"f-ground-error\">choose the ground"));
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::Submit { .. })));

    // A forged officer name in the form is replaced by the session's.
    let body = format!("csrf={csrf}&recipient=FR&references={KNOWN}&case_reference=FR-1&priority=urgent&status=preserved&reference=P-9&expires_at=2027-03-01T00%3A00%3A00Z&officer=mallory");
    let reply = h.post("/compose/status", &ana, body).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let sent = h.node.asked().into_iter().find_map(|r| match r {
        ControlRequest::Submit { payload, .. } => Some(*payload),
        _ => None,
    });
    match sent {
        Some(quickfreeze_proto::payload::Payload::Status(update)) => {
            assert_eq!(update.officer, "ana");
            assert_eq!(update.references.to_string(), KNOWN);
            assert_eq!(update.case_reference, "FR-1");
            assert!(
                matches!(update.status, Status::Preserved { ref reference, .. } if reference == "P-9")
            );
        }
        other => panic!("expected a status update to be submitted, got {other:?}"),
    }
}

/// A node below its low-water mark, with an expired roster and one overdue request.
fn low_disk_report() -> crate::control::StatusReport {
    crate::control::StatusReport {
        node_id: "12D3KooWNlNode".into(),
        fingerprint: "nl:0000".into(),
        country: "NL".into(),
        role: "point-of-contact".into(),
        network: "t-cy".into(),
        roster_serial: 4,
        roster_expires_at: "2026-11-30T00:00:00Z".into(),
        roster_expires_soon: true,
        outbox_pending: [1, 0, 0],
        inbox_total: 1,
        inbox_unacknowledged: 1,
        relay_pending: 0,
        relay_bytes: 0,
        connected_peers: 1,
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/4100".into()],
        store_flushes: 9,
        roster_expires_in_s: -2 * 3600,
        overdue: [0, 1, 0],
        overdue_items: vec![crate::control::OverdueRow {
            clock: "acknowledge".into(),
            meaning: "not acknowledged by an officer in time".into(),
            message_id: KNOWN.into(),
            peer: "peer".into(),
            country: "FR".into(),
            priority: "emergency".into(),
            due_at: "2026-12-01T00:00:00Z".into(),
            overdue_s: 120,
        }],
        key_file_age_s: Some(3600),
        metrics_address: None,
        revocation_serial: 0,
        revocations: Vec::new(),
        disk_free_bytes: Some(10 * 1024 * 1024),
        disk_low: Some("free space is below the low-water mark; free some space".into()),
        disk_low_water_bytes: Some(64 * 1024 * 1024),
    }
}

#[tokio::test]
async fn the_status_page_shows_disk_against_its_mark_roster_expiry_peers_and_overdue() {
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    let page = h.get("/status", Some(&ana)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("10.0 MiB free, low-water mark 64.0 MiB"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("DISK LOW: free space is below"),
        "{}",
        page.body
    );
    assert!(page.body.contains("EXPIRED 2 h"), "{}", page.body);
    assert!(page.body.contains("FR 24/7"), "peers are listed");
    assert!(
        page.body.contains(&format!("href=\"/message/{KNOWN}\"")),
        "overdue rows link to the message"
    );
}

#[tokio::test]
async fn the_message_page_shows_the_case_thread_and_the_attachments() {
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    let page = h.get(&format!("/message/{WITH_FILES}"), Some(&ana)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Case thread (3 messages)"),
        "{}",
        page.body
    );
    // The other messages of the case link to their own pages; this one is marked, not linked.
    assert!(page
        .body
        .contains(&format!("href=\"/message/{}\"", "cc".repeat(16))));
    assert!(page.body.contains("verified on arrival"));
    assert!(page.body.contains("aria-current=\"true\""));
    assert!(!page
        .body
        .contains(&format!("href=\"/message/{WITH_FILES}\"")));
    // Files are links, with safe names, and their hex is not dumped into the content list.
    assert!(page
        .body
        .contains(&format!("href=\"/message/{WITH_FILES}/attachment/0\"")));
    assert!(page.body.contains(">logs.csv</a>"));
    assert!(
        page.body.contains(">_script_evil_.html</a>"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("3c7363726970743e"),
        "attachment bytes shown as hex"
    );
    // The inbox lists case threads.
    assert!(h
        .node
        .asked()
        .iter()
        .all(|r| !matches!(r, ControlRequest::Inbox { .. })));
}

#[tokio::test]
async fn attachments_download_as_files_never_as_pages_and_bad_requests_are_refused() {
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    let reply = h
        .get(&format!("/message/{WITH_FILES}/attachment/1"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let header_text = |name: header::HeaderName| {
        reply
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        header_text(header::CONTENT_TYPE),
        "application/octet-stream"
    );
    assert_eq!(
        header_text(header::CONTENT_DISPOSITION),
        "attachment; filename=\"_script_evil_.html\""
    );
    assert_eq!(header_text(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(header_text(header::CONTENT_SECURITY_POLICY).starts_with("sandbox"));
    assert_eq!(reply.body, "<script>alert(1)</script>");
    assert!(
        h.node.asked().iter().any(|r| matches!(r,
        ControlRequest::OfficerAction { officer, action, message_id: Some(id) }
            if officer == "ana" && action.contains("downloaded attachment 2") && id == WITH_FILES))
    );

    // Not logged in, a bad number, no such file, no such message, a bad id.
    let reply = h
        .get(&format!("/message/{WITH_FILES}/attachment/0"), None)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let reply = h
        .get(&format!("/message/{WITH_FILES}/attachment/x"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = h
        .get(&format!("/message/{WITH_FILES}/attachment/2"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("no such attachment"));
    let reply = h
        .get(&format!("/message/{KNOWN}/attachment/0"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h
        .get(
            &format!("/message/{}/attachment/0", "ab".repeat(16)),
            Some(&ana),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h.get("/message/zz/attachment/0", Some(&ana)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // Bytes that do not match the signed digest are not served.
    let reply = h
        .get(&format!("/message/{TAMPERED}/attachment/1"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(!reply.body.contains("swapped"));
}

#[test]
fn file_names_are_made_safe() {
    use super::routes::safe_filename;
    assert_eq!(safe_filename("logs.csv", 0), "logs.csv");
    assert_eq!(safe_filename("../../etc/passwd", 0), "passwd");
    assert_eq!(safe_filename("C:\\x\\évidence 1.pdf", 0), "_vidence_1.pdf");
    assert_eq!(safe_filename(".htaccess", 0), "htaccess");
    assert_eq!(safe_filename("\"\r\n", 4), "attachment-5");
    assert_eq!(safe_filename("", 0), "attachment-1");
    assert_eq!(safe_filename(&"a".repeat(500), 0).len(), 100);
}

#[tokio::test]
async fn the_conditions_on_use_stand_first_and_the_content_is_the_labelled_form() {
    use quickfreeze_proto::form_view;
    use quickfreeze_proto::i18n::Language;
    use quickfreeze_proto::payload::{example_emergency, EvidentialUse, Payload};
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    let page = h.get(&format!("/message/{KNOWN}"), Some(&ana)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let at = |needle: &str| {
        page.body
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not on the page: {}", page.body))
    };
    // A bordered block, before the message's details and its content.
    let block = at("<section class=\"conditions\" id=\"conditions\"");
    assert!(at("CONDITIONS ON USE") > block);
    assert!(block < at("Message id"));
    assert!(block < at("<h2>Content</h2>"));
    let payload = Payload::Emergency(example_emergency());
    let handling = payload.handling().expect("a request carries conditions");
    assert_eq!(handling.evidential_use, EvidentialUse::WithConsent);
    assert!(at("not as evidence without the sender") < at("Message id"));
    // The content: the labelled form's title, sections and labels, not TOML field names.
    let view = form_view::render(&payload, Language::En);
    assert!(at(&format!("<strong>{}</strong>", view.title)) > at("<h2>Content</h2>"));
    for section in &view.sections {
        at(&format!("<h3>{}</h3>", section.title));
    }
    assert!(
        !page.body.contains("Case reference › "),
        "the old field dump"
    );

    // In the node's configured language.
    std::fs::write(h.dir.path().join("node.toml"), "language = \"de\"\n").expect("node.toml");
    let page = h.get(&format!("/message/{KNOWN}"), Some(&ana)).await;
    let german = form_view::render(&payload, Language::De);
    assert_ne!(german.title, view.title);
    assert!(page.body.contains(&german.title), "{}", page.body);
    assert!(page.body.contains("lang=\"de\""));
    assert!(page.body.contains("id=\"conditions\""));

    // A message without conditions (free text) has no block.
    let mut detail = with_files(WITH_FILES);
    detail.payload = Some(Payload::FreeText(
        quickfreeze_proto::payload::example_free_text(),
    ));
    let html = super::pages::message(
        &super::pages::Viewer {
            officer: "ana",
            csrf: "t",
        },
        &detail,
        None,
        &super::form::FormData::default(),
        &[],
        Language::En,
    )
    .into_string();
    assert!(!html.contains("id=\"conditions\""));
    assert!(html.contains("<h2>Content</h2>"));
}

#[tokio::test]
async fn the_evidence_bundle_is_refused_without_a_session_for_bad_or_unknown_ids_and_when_it_does_not_verify(
) {
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    let page = h.get(&format!("/message/{KNOWN}"), Some(&ana)).await;
    assert!(page
        .body
        .contains(&format!("href=\"/message/{KNOWN}/evidence\"")));
    // No session, a forged one, and the session of an officer whose account was removed.
    let (bob, _) = h.login("bob", BOB_PASSWORD).await;
    let mut officers = Officers::load(h.dir.path()).expect("load");
    officers.officers.remove("bob");
    officers.save(h.dir.path()).expect("save");
    for session in [None, Some("forged-session"), Some(bob.as_str())] {
        let reply = h.get(&format!("/message/{KNOWN}/evidence"), session).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{session:?}");
        assert_eq!(
            reply.headers.get(header::LOCATION).expect("location"),
            "/login"
        );
    }
    assert!(!h
        .node
        .asked()
        .iter()
        .any(|r| matches!(r, ControlRequest::EvidenceExport { .. })));
    // A bad id never reaches the node; an unknown one is a 404.
    let reply = h.get("/message/zz/evidence", Some(&ana)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let unknown = "ab".repeat(16);
    let reply = h
        .get(&format!("/message/{unknown}/evidence"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert!(reply.body.contains("no message"));
    // A file that does not verify is not served, and no download is recorded.
    let reply = h
        .get(&format!("/message/{KNOWN}/evidence"), Some(&ana))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    assert!(reply.body.contains("does not verify"));
    assert!(!reply.body.contains("not an evidence bundle"));
    assert!(reply.headers.get(header::CONTENT_DISPOSITION).is_none());
    let asked = h.node.asked();
    assert_eq!(
        asked
            .iter()
            .filter(|r| matches!(r, ControlRequest::EvidenceExport { .. }))
            .count(),
        2
    );
    assert!(!asked.iter().any(|r| matches!(r,
        ControlRequest::OfficerAction { action, .. } if action.contains("evidence"))));
}

#[tokio::test]
async fn the_evidence_bundle_goes_out_as_a_named_download_never_as_a_page() {
    use super::routes::evidence_download;
    let response = evidence_download(KNOWN, "<!DOCTYPE html><p>bundle</p>".into());
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        text(header::CONTENT_DISPOSITION),
        "attachment; filename=\"01234567.evidence.html\""
    );
    assert_eq!(text(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(text(header::CONTENT_SECURITY_POLICY).starts_with("sandbox"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"<!DOCTYPE html><p>bundle</p>");
}

#[tokio::test]
async fn the_request_forms_offer_the_conditions_on_use_preset_to_the_standard_ones() {
    let h = harness();
    let (ana, _) = h.login("ana", ANA_PASSWORD).await;
    for kind in ["emergency", "preservation", "traffic"] {
        let form = h.get(&format!("/compose/{kind}"), Some(&ana)).await;
        assert_eq!(form.status, StatusCode::OK, "{kind}");
        let body = &form.body;
        assert!(
            body.contains(
                "id=\"f-header-handling-use-limited-to-case\" type=\"checkbox\" name=\"header.handling.use_limited_to_case\" value=\"true\" checked"
            ),
            "{kind}: {body}"
        );
        assert!(
            body.contains("id=\"f-header-handling-reply-channel-only\" type=\"checkbox\" name=\"header.handling.reply_channel_only\" value=\"true\" checked"),
            "{kind}"
        );
        assert!(
            body.contains("<select id=\"f-header-handling-onward-transmission\""),
            "{kind}"
        );
        assert!(
            body.contains("<option value=\"with-consent\" selected>Only with our prior consent")
        );
        assert!(body.contains(
            "<option value=\"with-consent\" selected>Not as evidence without our prior consent"
        ));
        assert!(body.contains("<option value=\"forbidden\">Forbidden"));
        assert!(body.contains("name=\"header.handling.free_text\""));
    }
    let form = h.get("/compose/free-text", Some(&ana)).await;
    assert!(!form.body.contains("header.handling"));
}
