//! The router and its handlers.
//!
//! Every page but the login page needs a session cookie; every POST needs the session's CSRF
//! token in the form (the login form carries a token bound to a short-lived login cookie).
//! Bodies are read as bytes under [`super::MAX_FORM_BYTES`] and parsed strictly
//! ([`super::form`]). Ids are checked before they reach the node. Each action is sent to the
//! node under the logged-in officer's name, and logins, logouts and sends are recorded in the
//! node's audit trail ([`ControlRequest::OfficerAction`]).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use quickfreeze_proto::forms::FormKind;
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::{Attachment, FieldError};

use super::backend::Backend;
use super::compose;
use super::form::FormData;
use super::officers::{self, Officers};
use super::pages::{self, Viewer};
use super::sessions::{self, Locked, LoginLimiter, Session, Sessions};
use crate::control::{ControlRequest, ControlResponse, InboxRow, MessageQuery, OutboxRow};

/// The session cookie.
pub const SESSION_COOKIE: &str = "qf_session";
/// The login-form cookie (CSRF protection of the login form itself).
pub const LOGIN_COOKIE: &str = "qf_login";
/// Rows shown in each list.
pub const LIST_LIMIT: usize = 100;
/// How often the live view asks the node for changes.
pub const LIVE_POLL: Duration = Duration::from_secs(1);

struct Inner {
    backend: Arc<dyn Backend>,
    data_dir: PathBuf,
    secure_cookies: bool,
    sessions: Mutex<Sessions>,
    limiter: Mutex<LoginLimiter>,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

impl WebState {
    /// State for a console that reaches the node through `backend` and reads officer accounts
    /// from `data_dir`. `secure_cookies` marks cookies `Secure` (when served over TLS).
    pub fn new(backend: Arc<dyn Backend>, data_dir: &Path, secure_cookies: bool) -> WebState {
        WebState {
            inner: Arc::new(Inner {
                backend,
                data_dir: data_dir.to_path_buf(),
                secure_cookies,
                sessions: Mutex::new(Sessions::default()),
                limiter: Mutex::new(LoginLimiter::default()),
            }),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        self.inner
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn call(&self, request: ControlRequest) -> Result<ControlResponse, String> {
        let backend = self.inner.backend.clone();
        match tokio::task::spawn_blocking(move || backend.request(request)).await {
            Ok(Ok(ControlResponse::Error { message })) => Err(message),
            Ok(result) => result,
            Err(_) => Err("the request to the node failed inside the console".into()),
        }
    }

    /// Records an officer's action in the node's audit trail; a failure is logged, not fatal
    /// (the action itself already reached the node under the officer's name).
    async fn audit(&self, officer: &str, action: &str, message_id: Option<&str>) {
        let request = ControlRequest::OfficerAction {
            officer: officer.to_string(),
            action: action.to_string(),
            message_id: message_id.map(str::to_string),
        };
        if let Err(error) = self.call(request).await {
            tracing::warn!(officer, action, %error, "could not record the officer's action in the audit trail");
        }
    }

    /// The officers' language from the node's `node.toml` (read per page, so a changed setting
    /// shows without a restart); English, with a warning in the log, when it cannot be read.
    fn language(&self) -> Language {
        crate::config::configured_language(&self.inner.data_dir).unwrap_or_else(|error| {
            tracing::warn!(%error, "the node's language setting cannot be read; showing English");
            Language::En
        })
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
        let secure = if self.inner.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let age = max_age
            .map(|age| format!("; Max-Age={age}"))
            .unwrap_or_default();
        let text = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}{age}");
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

/// The console's routes.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route("/message/{id}", get(message))
        .route("/message/{id}/json", get(message_json))
        .route("/message/{id}/attachment/{index}", get(attachment))
        .route("/message/{id}/evidence", get(evidence))
        .route("/message/{id}/ack", post(acknowledge))
        .route("/message/{id}/reply", post(reply))
        .route("/compose", get(compose_menu))
        .route("/compose/{kind}", get(compose_page).post(compose_send))
        .route("/status", get(status))
        .route("/stats", get(stats))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(super::MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A response that set its own (stricter) policy keeps it: attachment downloads.
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// A logged-in officer, for one request.
struct Officer {
    token: String,
    session: Session,
}

impl Officer {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            officer: &self.session.officer,
            csrf: &self.session.csrf,
        }
    }
}

/// The session of this request, if its cookie names an open session whose officer still has
/// the same account.
fn officer(state: &WebState, headers: &HeaderMap, touch: bool) -> Option<Officer> {
    let token = cookie_value(headers, SESSION_COOKIE)?;
    let now = Instant::now();
    let session = if touch {
        state.sessions().touch(&token, now)?
    } else {
        state.sessions().peek(&token, now)?
    };
    let current = Officers::load(&state.inner.data_dir).ok()?;
    if current.hash_of(&session.officer) != Some(session.password_hash.as_str()) {
        state.sessions().close(&token);
        return None;
    }
    Some(Officer { token, session })
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

fn refusal(status: StatusCode, viewer: Option<&Viewer<'_>>, text: &str) -> Response {
    page(status, pages::message_page("Refused", viewer, text))
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// A page that needs a session: the officer, or the redirect to the login page.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished page; it is returned once per request, not passed around"
)]
fn need_officer(state: &WebState, headers: &HeaderMap) -> Result<Officer, Response> {
    officer(state, headers, true).ok_or_else(to_login)
}

/// A form post: the officer, the parsed form, with its CSRF token checked against the session.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished page; it is returned once per request, not passed around"
)]
fn need_form(
    state: &WebState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Officer, FormData), Response> {
    let Some(officer) = officer(state, headers, true) else {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            None,
            "Your session has ended (logged out, idle too long, or the account changed). Log in again; nothing was sent.",
        ));
    };
    let form = match FormData::parse(body) {
        Ok(form) => form,
        Err(problem) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                Some(&officer.viewer()),
                &problem,
            ))
        }
    };
    if !sessions::same(form.get("csrf"), &officer.session.csrf) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            Some(&officer.viewer()),
            "The form's security token does not belong to your session, so nothing was done. Reload the page and try again.",
        ));
    }
    Ok((officer, form))
}

fn check_id(id: &str) -> Result<(), String> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(
            "That is not a message id (32 hex digits). Open messages from the inbox or outbox."
                .into(),
        )
    }
}

fn node_problem(viewer: &Viewer<'_>, problem: &str) -> Response {
    let status = if problem.contains("no message")
        || problem.contains("unknown")
        || problem.contains("not found")
        || problem.contains("No message")
        || problem.contains("does not hold")
    {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_GATEWAY
    };
    refusal(status, Some(viewer), &format!("The node said: {problem}"))
}

async fn not_found(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let officer = officer(&state, &headers, false);
    let viewer = officer.as_ref().map(Officer::viewer);
    page(
        StatusCode::NOT_FOUND,
        pages::message_page("Not found", viewer.as_ref(), "There is no such page."),
    )
}

// ---------------------------------------------------------------------------------------------
// Login and logout
// ---------------------------------------------------------------------------------------------

async fn login_page(State(state): State<WebState>) -> Response {
    let token = sessions::random_token();
    let mut response = page(StatusCode::OK, pages::login(&token, None, ""));
    response.headers_mut().insert(
        header::SET_COOKIE,
        state.cookie(LOGIN_COOKIE, &token, "/login", Some(3600)),
    );
    response
}

fn login_again(state: &WebState, status: StatusCode, error: &str, name: &str) -> Response {
    let token = sessions::random_token();
    let mut response = page(status, pages::login(&token, Some(error), name));
    response.headers_mut().insert(
        header::SET_COOKIE,
        state.cookie(LOGIN_COOKIE, &token, "/login", Some(3600)),
    );
    response
}

/// A hash to verify against when the account does not exist, so that a wrong name takes as long
/// as a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        officers::hash_password("not a real account, only for timing").unwrap_or_default()
    })
}

async fn login(
    State(state): State<WebState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match FormData::parse(&body) {
        Ok(form) => form,
        Err(problem) => return login_again(&state, StatusCode::BAD_REQUEST, &problem, ""),
    };
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !sessions::same(form.get("csrf"), &expected) {
        return login_again(
            &state,
            StatusCode::FORBIDDEN,
            "The login form's security token is missing or wrong (cookies off, or the form came from elsewhere). Try again from this page.",
            "",
        );
    }
    let name = form.get("name").trim().to_string();
    let password = form.get("password").to_string();
    let now = Instant::now();
    if let Err(locked) = state.limiter().check(&name, client.ip(), now) {
        let (what, wait) = match locked {
            Locked::Account(wait) => ("this account", wait),
            Locked::Address(wait) => ("this computer", wait),
        };
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let mut response = login_again(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins for {what}. Try again in {minutes} min, or ask the node's administrator to check the account."),
            &name,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    let accounts = match Officers::load(&state.inner.data_dir) {
        Ok(accounts) => accounts,
        Err(error) => {
            return login_again(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("The officer accounts cannot be read: {error:#}"),
                &name,
            )
        }
    };
    let hash = accounts.hash_of(&name).map(str::to_string);
    let check_hash = hash.clone().unwrap_or_else(|| dummy_hash().to_string());
    let verified =
        tokio::task::spawn_blocking(move || officers::verify_password(&check_hash, &password))
            .await
            .unwrap_or(false);
    let Some(hash) = hash.filter(|_| verified) else {
        state.limiter().failed(&name, client.ip(), now);
        tracing::warn!(officer = %name, client = %client.ip(), "failed web console login");
        return login_again(
            &state,
            StatusCode::UNAUTHORIZED,
            "Wrong officer name or password.",
            &name,
        );
    };
    state.limiter().succeeded(&name);
    let token = state.sessions().open(&name, &hash, now);
    state
        .audit(&name, "logged in to the web console", None)
        .await;
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        state.cookie(SESSION_COOKIE, &token, "/", None),
    );
    headers.append(
        header::SET_COOKIE,
        state.cookie(LOGIN_COOKIE, "", "/login", Some(0)),
    );
    response
}

async fn logout(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> Response {
    let (officer, _) = match need_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    state.sessions().close(&officer.token);
    state
        .audit(
            &officer.session.officer,
            "logged out of the web console",
            None,
        )
        .await;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        state.cookie(SESSION_COOKIE, "", "/", Some(0)),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Inbox, outbox and live updates
// ---------------------------------------------------------------------------------------------

/// One row per case thread (the request, with the thread's size and latest state), overdue
/// first, as the terminal console's `inbox`/`outbox` show them.
fn thread_query() -> Box<MessageQuery> {
    Box::new(MessageQuery {
        limit: LIST_LIMIT,
        flat: false,
        ..MessageQuery::default()
    })
}

async fn lists(state: &WebState) -> Result<(Vec<InboxRow>, Vec<OutboxRow>), String> {
    let inbox = match state
        .call(ControlRequest::InboxQuery {
            query: thread_query(),
        })
        .await?
    {
        ControlResponse::InboxPage { rows, .. } => rows,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let outbox = match state
        .call(ControlRequest::OutboxQuery {
            query: thread_query(),
        })
        .await?
    {
        ControlResponse::OutboxPage { rows, .. } => rows,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    Ok((inbox, outbox))
}

const NOTICES: [(&str, &str); 4] = [
    ("acknowledged", "Acknowledged; the requester is told."),
    ("replied", "Status sent to the requester."),
    ("sent", "Accepted: stored durably and queued for delivery."),
    ("already", "It was already acknowledged."),
];

fn notice(query: &HashMap<String, String>) -> Option<&'static str> {
    let done = query.get("done")?;
    NOTICES
        .iter()
        .find(|(key, _)| key == done)
        .map(|(_, text)| *text)
}

async fn home(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    match lists(&state).await {
        Ok((inbox, outbox)) => page(
            StatusCode::OK,
            pages::home(&officer.viewer(), &inbox, &outbox, notice(&query)),
        ),
        Err(problem) => node_problem(&officer.viewer(), &problem),
    }
}

/// What changes the live view: everything but the ages (which tick every second).
fn fingerprint(inbox: &[InboxRow], outbox: &[OutboxRow]) -> String {
    let mut text = String::new();
    for row in inbox {
        text.push_str(&format!(
            "i{}{}{:?}{}{:?};",
            row.message_id, row.acknowledged, row.overdue, row.thread_messages, row.latest
        ));
    }
    for row in outbox {
        text.push_str(&format!(
            "o{}{}{:?}{:?}{:?}{}{:?};",
            row.message_id,
            row.state,
            row.latest_status,
            row.last_error,
            row.overdue,
            row.thread_messages,
            row.why
        ));
    }
    text
}

struct Live {
    state: WebState,
    token: String,
    first: bool,
    ended: bool,
    last: String,
    seen: HashSet<String>,
}

async fn next_event(mut live: Live) -> Option<(Result<Event, Infallible>, Live)> {
    if live.ended {
        return None;
    }
    loop {
        if !live.first {
            tokio::time::sleep(LIVE_POLL).await;
        }
        let alive = live
            .state
            .sessions()
            .peek(&live.token, Instant::now())
            .is_some();
        if !alive {
            live.ended = true;
            return Some((
                Ok(Event::default().event("logout").data("session ended")),
                live,
            ));
        }
        let Ok((inbox, outbox)) = lists(&live.state).await else {
            live.first = false;
            continue;
        };
        let print = fingerprint(&inbox, &outbox);
        if !live.first && print == live.last {
            continue;
        }
        let fresh: Vec<&InboxRow> = inbox
            .iter()
            .filter(|row| !live.seen.contains(&row.message_id))
            .filter(|row| row.priority == "emergency" && !row.acknowledged)
            .collect();
        let alert = if live.first || fresh.is_empty() {
            None
        } else {
            let from: Vec<&str> = fresh.iter().map(|row| row.country.as_str()).collect();
            Some(format!("New EMERGENCY request from {}", from.join(", ")))
        };
        live.seen
            .extend(inbox.iter().map(|row| row.message_id.clone()));
        live.first = false;
        live.last = print;
        let data = serde_json::json!({
            "inbox": pages::inbox_rows(&inbox).into_string(),
            "outbox": pages::outbox_rows(&outbox).into_string(),
            "alert": alert,
        });
        return Some((
            Ok(Event::default().event("update").data(data.to_string())),
            live,
        ));
    }
}

async fn events(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some(officer) = officer(&state, &headers, false) else {
        return refusal(StatusCode::FORBIDDEN, None, "Log in first.");
    };
    let live = Live {
        state,
        token: officer.token,
        first: true,
        ended: false,
        last: String::new(),
        seen: HashSet::new(),
    };
    Sse::new(futures::stream::unfold(live, next_event))
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// One message: view, download, acknowledge, reply
// ---------------------------------------------------------------------------------------------

async fn show(state: &WebState, id: &str) -> Result<Box<crate::control::MessageDetail>, String> {
    match state
        .call(ControlRequest::Show {
            message_id: id.to_string(),
        })
        .await?
    {
        ControlResponse::Message { detail } => Ok(detail),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

async fn message(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    if let Err(problem) = check_id(&id) {
        return refusal(StatusCode::BAD_REQUEST, Some(&officer.viewer()), &problem);
    }
    match show(&state, &id).await {
        Ok(detail) => page(
            StatusCode::OK,
            pages::message(
                &officer.viewer(),
                &detail,
                notice(&query),
                &FormData::default(),
                &[],
                state.language(),
            ),
        ),
        Err(problem) => node_problem(&officer.viewer(), &problem),
    }
}

async fn message_json(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    if let Err(problem) = check_id(&id) {
        return refusal(StatusCode::BAD_REQUEST, Some(&officer.viewer()), &problem);
    }
    match show(&state, &id).await {
        Ok(detail) => {
            let body = serde_json::to_string_pretty(&detail).unwrap_or_default();
            let disposition = format!("attachment; filename=\"message-{id}.json\"");
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&disposition)
                            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(problem) => node_problem(&officer.viewer(), &problem),
    }
}

/// The attachments a payload carries (only preservation requests carry files today; a kind that
/// gains attachments is added here and its files become downloadable).
pub fn attachments(payload: &quickfreeze_proto::payload::Payload) -> &[Attachment] {
    crate::cli::payload_attachments(payload)
}

/// A file name that is safe in a `Content-Disposition` header and on any file system: ASCII
/// letters, digits, `.`, `-` and `_`, no leading dot, at most 100 characters; anything else
/// becomes `_`. An empty result becomes `attachment-N`.
pub fn safe_filename(name: &str, index: usize) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut safe: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    while safe.starts_with('.') {
        safe.remove(0);
    }
    if safe.trim_matches('_').is_empty() {
        safe = format!("attachment-{}", index + 1);
    }
    safe
}

/// The file name of a case's evidence bundle: the first 8 hex digits of the id asked for.
pub fn evidence_filename(id: &str) -> String {
    let short: String = id.chars().take(8).collect();
    format!("{short}.evidence.html")
}

/// The evidence bundle as a download: never rendered in the console's origin (it is a full HTML
/// page with the signed data inside), sniffing off, sandboxed if a browser opens it anyway.
pub fn evidence_download(id: &str, file: String) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", evidence_filename(id));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'; style-src 'unsafe-inline'"),
            ),
        ],
        file,
    )
        .into_response()
}

/// GET /message/{id}/evidence: asks the node for the case's evidence bundle over the control
/// socket (as `quickfreeze evidence export` does), checks it before it leaves (a file that does
/// not verify is not served), records the download under the officer's name and serves it.
async fn evidence(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    if let Err(problem) = check_id(&id) {
        return refusal(StatusCode::BAD_REQUEST, Some(&officer.viewer()), &problem);
    }
    let file = match state
        .call(ControlRequest::EvidenceExport {
            message_id: id.clone(),
        })
        .await
    {
        Ok(ControlResponse::Evidence { file }) => file,
        Ok(other) => {
            return node_problem(&officer.viewer(), &format!("unexpected answer {other:?}"))
        }
        Err(problem) => return node_problem(&officer.viewer(), &problem),
    };
    let (file, checked) = match tokio::task::spawn_blocking(move || {
        let checked = crate::evidence::verify(file.as_bytes(), None).map(|_| ());
        (file, checked)
    })
    .await
    {
        Ok(done) => done,
        Err(_) => {
            return node_problem(
                &officer.viewer(),
                "the evidence file could not be checked inside the console",
            )
        }
    };
    if let Err(finding) = checked {
        tracing::error!(message_id = %id, %finding, "the node produced an evidence file that does not verify");
        return refusal(
            StatusCode::BAD_GATEWAY,
            Some(&officer.viewer()),
            &format!("The node produced an evidence file that does not verify ({finding}), so it is not served. Report this to the node's administrator."),
        );
    }
    state
        .audit(
            &officer.session.officer,
            &format!(
                "downloaded the evidence bundle ({})",
                evidence_filename(&id)
            ),
            Some(&id),
        )
        .await;
    evidence_download(&id, file)
}

async fn attachment(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath((id, index)): UrlPath<(String, String)>,
) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    if let Err(problem) = check_id(&id) {
        return refusal(StatusCode::BAD_REQUEST, Some(&officer.viewer()), &problem);
    }
    let Ok(index) = index.parse::<usize>() else {
        return refusal(
            StatusCode::BAD_REQUEST,
            Some(&officer.viewer()),
            "That is not an attachment number. Open attachments from the message's page.",
        );
    };
    let detail = match show(&state, &id).await {
        Ok(detail) => detail,
        Err(problem) => return node_problem(&officer.viewer(), &problem),
    };
    let Some(file) = detail
        .payload
        .as_ref()
        .and_then(|payload| attachments(payload).get(index))
    else {
        return refusal(
            StatusCode::NOT_FOUND,
            Some(&officer.viewer()),
            "This message has no such attachment. Open attachments from the message's page.",
        );
    };
    if Attachment::new("", "", file.bytes.clone()).sha256 != file.sha256 {
        return refusal(
            StatusCode::CONFLICT,
            Some(&officer.viewer()),
            "The attachment's content does not match its SHA-256 in the signed request, so it is not served. Ask the sender to send it again.",
        );
    }
    let name = safe_filename(&file.name, index);
    state
        .audit(
            &officer.session.officer,
            &format!("downloaded attachment {} ({name})", index + 1),
            Some(&id),
        )
        .await;
    // Always a download, never shown in the browser: whatever the sender declared, the bytes go
    // out as an opaque file, with sniffing off and a sandbox if a browser renders it anyway.
    let disposition = format!("attachment; filename=\"{name}\"");
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'"),
            ),
        ],
        file.bytes.clone(),
    )
        .into_response()
}

async fn acknowledge(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let (officer, _) = match need_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Err(problem) = check_id(&id) {
        return refusal(StatusCode::BAD_REQUEST, Some(&officer.viewer()), &problem);
    }
    let request = ControlRequest::Ack {
        message_id: id.clone(),
        officer: officer.session.officer.clone(),
    };
    match state.call(request).await {
        Ok(ControlResponse::Acknowledged { status_message_id }) => {
            let done = if status_message_id.is_some() {
                "acknowledged"
            } else {
                "already"
            };
            Redirect::to(&format!("/message/{id}?done={done}")).into_response()
        }
        Ok(other) => node_problem(&officer.viewer(), &format!("unexpected answer {other:?}")),
        Err(problem) => node_problem(&officer.viewer(), &problem),
    }
}

async fn reply(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let (officer, form) = match need_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Err(problem) = check_id(&id) {
        return refusal(StatusCode::BAD_REQUEST, Some(&officer.viewer()), &problem);
    }
    let (status, note) = match compose::status_from_form(&form) {
        Ok(found) => found,
        Err(errors) => {
            return match show(&state, &id).await {
                Ok(detail) => page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    pages::message(
                        &officer.viewer(),
                        &detail,
                        None,
                        &form,
                        &errors,
                        state.language(),
                    ),
                ),
                Err(problem) => node_problem(&officer.viewer(), &problem),
            };
        }
    };
    let request = ControlRequest::Reply {
        message_id: id.clone(),
        status,
        note,
        officer: officer.session.officer.clone(),
    };
    match state.call(request).await {
        Ok(ControlResponse::Replied { .. }) => {
            Redirect::to(&format!("/message/{id}?done=replied")).into_response()
        }
        Ok(other) => node_problem(&officer.viewer(), &format!("unexpected answer {other:?}")),
        Err(problem) => node_problem(&officer.viewer(), &problem),
    }
}

// ---------------------------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------------------------

async fn compose_menu(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match need_officer(&state, &headers) {
        Ok(officer) => page(StatusCode::OK, pages::compose_menu(&officer.viewer())),
        Err(response) => response,
    }
}

fn compose_kind(text: &str) -> Option<FormKind> {
    compose::COMPOSE_KINDS
        .into_iter()
        .find(|kind| kind.as_str() == text)
}

async fn countries(state: &WebState) -> Vec<String> {
    let mut list: Vec<String> = match state.call(ControlRequest::Peers).await {
        Ok(ControlResponse::Peers { rows }) => rows
            .into_iter()
            .filter(|peer| peer.role == "point-of-contact" || peer.role == "central-authority")
            .map(|peer| peer.country)
            .collect(),
        _ => Vec::new(),
    };
    list.sort();
    list.dedup();
    list
}

async fn compose_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    let Some(kind) = compose_kind(&kind) else {
        return refusal(
            StatusCode::NOT_FOUND,
            Some(&officer.viewer()),
            "There is no such form; choose one from Compose.",
        );
    };
    let form = compose::defaults(kind, &officer.session.officer);
    let countries = countries(&state).await;
    page(
        StatusCode::OK,
        pages::compose_form(&officer.viewer(), kind, &form, &[], &countries),
    )
}

async fn compose_send(
    State(state): State<WebState>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    body: Bytes,
) -> Response {
    let (officer, mut form) = match need_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    // A status update carries the name of the officer who sends it: the one logged in.
    form.set("officer", &officer.session.officer);
    let Some(kind) = compose_kind(&kind) else {
        return refusal(
            StatusCode::NOT_FOUND,
            Some(&officer.viewer()),
            "There is no such form; choose one from Compose.",
        );
    };
    let recipient = form.get("recipient").trim().to_string();
    let mut errors = Vec::new();
    if recipient.is_empty() {
        errors.push(FieldError {
            field: "recipient".into(),
            problem: "choose the country to send to".into(),
        });
    }
    let payload = match compose::payload_from_form(kind, &form) {
        Ok(payload) => Some(payload),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    let Some(payload) = payload.filter(|_| errors.is_empty()) else {
        return compose_again(&state, &officer, kind, &form, &errors).await;
    };
    match state
        .call(ControlRequest::Submit {
            recipient,
            payload: Box::new(payload),
        })
        .await
    {
        Ok(ControlResponse::Submitted { message_id, .. }) => {
            state
                .audit(
                    &officer.session.officer,
                    &format!("sent a {} request from the web console", kind.as_str()),
                    Some(&message_id),
                )
                .await;
            Redirect::to(&format!("/message/{message_id}?done=sent")).into_response()
        }
        Ok(other) => node_problem(&officer.viewer(), &format!("unexpected answer {other:?}")),
        Err(problem) => {
            let errors = [FieldError {
                field: "recipient".into(),
                problem: format!("the node refused: {problem}"),
            }];
            compose_again(&state, &officer, kind, &form, &errors).await
        }
    }
}

/// The compose form again, with the officer's values and what is wrong with them.
async fn compose_again(
    state: &WebState,
    officer: &Officer,
    kind: FormKind,
    form: &FormData,
    errors: &[FieldError],
) -> Response {
    let countries = countries(state).await;
    page(
        StatusCode::UNPROCESSABLE_ENTITY,
        pages::compose_form(&officer.viewer(), kind, form, errors, &countries),
    )
}

// ---------------------------------------------------------------------------------------------
// Status and statistics
// ---------------------------------------------------------------------------------------------

async fn status(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    let report = match state.call(ControlRequest::Status).await {
        Ok(ControlResponse::Status { report }) => report,
        Ok(other) => {
            return node_problem(&officer.viewer(), &format!("unexpected answer {other:?}"))
        }
        Err(problem) => return node_problem(&officer.viewer(), &problem),
    };
    let peers = match state.call(ControlRequest::Peers).await {
        Ok(ControlResponse::Peers { rows }) => rows,
        _ => Vec::new(),
    };
    page(
        StatusCode::OK,
        pages::status(&officer.viewer(), &report, &peers),
    )
}

async fn stats(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let officer = match need_officer(&state, &headers) {
        Ok(officer) => officer,
        Err(response) => return response,
    };
    let since_ms = quickfreeze_keys::Timestamp::now()
        .as_millis()
        .saturating_sub(30 * 24 * 3600 * 1000);
    match state.call(ControlRequest::Stats { since_ms }).await {
        Ok(ControlResponse::Stats { rows }) => {
            page(StatusCode::OK, pages::stats(&officer.viewer(), &rows))
        }
        Ok(other) => node_problem(&officer.viewer(), &format!("unexpected answer {other:?}")),
        Err(problem) => node_problem(&officer.viewer(), &problem),
    }
}
