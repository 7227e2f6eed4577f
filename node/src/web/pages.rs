//! The console's HTML, written with maud (checked and compiled into the binary; every value is
//! escaped). No external assets: the style sheet and the few lines of script (live updates over
//! server-sent events, and the emergency sound) are inline.
//!
//! Accessibility: every input has a label and its help and error are tied to it with
//! `aria-describedby`; errors are also listed at the top with links to the fields; emergency rows
//! say "EMERGENCY" in text, not only in colour; contrast is at least 7:1; everything is reachable
//! with the keyboard with a visible focus ring; text grows on a wall screen.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use quickfreeze_proto::form_view;
use quickfreeze_proto::forms::FormKind;
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::{FieldError, Handling, HANDLING_TITLE};

use super::compose::{self, Input};
use super::form::FormData;
use crate::control::{InboxRow, MessageDetail, OutboxRow, PeerRow, StatusReport};
use crate::stats::CountryStats;

const STYLE: &str = r#"
:root { --fg:#111; --bg:#fff; --muted:#444; --line:#888; --em-bg:#fde8e8; --em-fg:#7a0000; --accent:#0b3d91; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
@media (min-width: 1800px) { body { font-size: 22px; } }
header.top { display:flex; flex-wrap:wrap; gap:1em; align-items:center; padding:.5em 1em; background:#0b3d91; color:#fff; }
header.top a, header.top button { color:#fff; }
header.top nav a { margin-right: 1em; font-weight: 600; }
header.top .who { margin-left:auto; }
main { padding: 1em; max-width: 110em; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus, textarea:focus { outline: 3px solid #e8a000; outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5em; }
th, td { text-align: left; padding: .35em .5em; border-bottom: 1px solid var(--line); vertical-align: top; }
tr.emergency { background: var(--em-bg); color: var(--em-fg); font-weight: 700; border-left: 6px solid var(--em-fg); }
tr.emergency a { color: var(--em-fg); }
.badge { display:inline-block; padding: 0 .4em; border: 2px solid currentColor; border-radius: 4px; font-weight: 700; }
.muted { color: var(--muted); }
.error { color: #8b0000; font-weight: 600; }
.notice { border: 2px solid var(--accent); padding: .5em 1em; margin-bottom: 1em; }
.errors { border: 3px solid #8b0000; padding: .5em 1em; margin-bottom: 1em; }
label { display:block; font-weight: 600; margin-top: .8em; }
.help { display:block; color: var(--muted); font-size: .9em; }
input[type=text], input[type=password], input[type=number], select, textarea { font: inherit; padding: .3em; width: 100%; max-width: 40em; border: 2px solid #555; }
input[aria-invalid=true], textarea[aria-invalid=true], select[aria-invalid=true] { border-color: #8b0000; background: #fff4f4; }
textarea { min-height: 5em; }
fieldset { border: 1px solid var(--line); margin: 1em 0; padding: .5em 1em; }
legend { font-weight: 700; }
button { font: inherit; padding: .35em 1em; border: 2px solid #0b3d91; background: #0b3d91; color: #fff; cursor: pointer; }
button.link { background: none; border: none; text-decoration: underline; padding: 0; }
dl.payload dt { font-weight: 700; margin-top: .5em; }
dl.payload dd { margin-left: 1.5em; white-space: pre-wrap; }
dl.payload dd.written { border-left: 3px solid var(--line); padding-left: .5em; }
.conditions { border: 5px double #7a4a00; background: #fff8e1; color: #111; padding: .5em 1em; margin: 0 0 1.5em; max-width: 60em; }
.conditions h2 { margin: 0 0 .3em; color: #7a4a00; letter-spacing: .05em; }
.conditions dt { font-weight: 700; margin-top: .3em; }
.conditions dd { margin-left: 1.5em; white-space: pre-wrap; }
.columns { display: grid; grid-template-columns: 1fr; gap: 1em; }
@media (min-width: 1400px) { .columns { grid-template-columns: 1fr 1fr; } }
.sr-only { position:absolute; left:-10000px; width:1px; height:1px; overflow:hidden; }
"#;

const LIVE_SCRIPT: &str = r#"
(function () {
  var live = document.getElementById('live');
  function beep() {
    try {
      var ctx = new (window.AudioContext || window.webkitAudioContext)();
      [0, 0.5].forEach(function (at) {
        var osc = ctx.createOscillator();
        osc.frequency.value = 880;
        osc.connect(ctx.destination);
        osc.start(ctx.currentTime + at);
        osc.stop(ctx.currentTime + at + 0.3);
      });
    } catch (e) { /* the browser blocks sound until the page is used: the banner still shows */ }
  }
  var source = new EventSource('/events');
  source.addEventListener('update', function (event) {
    var data = JSON.parse(event.data);
    document.getElementById('inbox-body').innerHTML = data.inbox;
    document.getElementById('outbox-body').innerHTML = data.outbox;
    live.textContent = 'Live. Last change ' + new Date().toLocaleTimeString() + '.';
    if (data.alert) {
      document.getElementById('alert').textContent = data.alert;
      document.getElementById('alert').hidden = false;
      beep();
    }
  });
  source.addEventListener('logout', function () { window.location.href = '/login'; });
  source.onerror = function () { live.textContent = 'Connection to the console lost; retrying.'; };
})();
"#;

const REPLY_SCRIPT: &str = r#"
(function () {
  var select = document.getElementById('f-status');
  function show() {
    document.querySelectorAll('[data-for]').forEach(function (el) {
      el.hidden = el.getAttribute('data-for').split(' ').indexOf(select.value) < 0;
    });
  }
  select.addEventListener('change', show);
  show();
})();
"#;

/// What the layout needs to know about the logged-in officer.
pub struct Viewer<'a> {
    /// The officer's name.
    pub officer: &'a str,
    /// The session's CSRF token (for the logout form).
    pub csrf: &'a str,
}

/// The frame around every page.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · quickfreeze" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.top {
                    strong { "quickfreeze" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            a href="/" { "Inbox and outbox" }
                            a href="/compose" { "Compose" }
                            a href="/status" { "Status" }
                            a href="/stats" { "Statistics" }
                        }
                        span.who {
                            "Officer: " strong #officer { (viewer.officer) } " "
                            form method="post" action="/logout" style="display:inline" {
                                input type="hidden" name="csrf" value=(viewer.csrf);
                                button.link #logout type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The login page.
pub fn login(csrf: &str, error: Option<&str>, name: &str) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            @if let Some(error) = error {
                p.errors #login-error role="alert" { (error) }
            }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="name" { "Officer name" }
                input #name type="text" name="name" value=(name) autocomplete="username" autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password";
                p { button #login type="submit" { "Log in" } }
            }
            p.muted { "Accounts are made on the node's machine with " code { "quickfreeze officer add NAME" } "." }
        },
    )
}

/// A page that only says something (errors, refusals).
pub fn message_page(title: &str, viewer: Option<&Viewer<'_>>, text: &str) -> Markup {
    layout(
        title,
        viewer,
        html! { p.errors #problem role="alert" { (text) } p { a href="/" { "Back to the inbox" } } },
    )
}

fn age(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d", seconds / 86_400),
    }
}

/// Under a thread row: how many messages the case has and its latest state.
fn thread_note(messages: usize, latest: Option<&str>) -> Markup {
    html! {
        @if messages > 1 || latest.is_some() {
            br;
            span.muted.thread {
                @if messages > 1 { (messages) " messages in this case" }
                @if let Some(latest) = latest { @if messages > 1 { " · " } "latest: " (latest) }
            }
        }
    }
}

/// The rows of the inbox table (one per case thread).
pub fn inbox_rows(rows: &[InboxRow]) -> Markup {
    html! {
        @if rows.is_empty() { tr { td.muted colspan="7" { "Nothing has arrived." } } }
        @for row in rows {
            @let emergency = row.priority == "emergency";
            tr.emergency[emergency] data-id=(row.message_id) {
                td { @if emergency { span.badge { "EMERGENCY" } } @else { (row.priority) } }
                td { (row.country) }
                td { (row.kind) }
                td {
                    a href={ "/message/" (row.message_id) } { (row.summary) }
                    (thread_note(row.thread_messages, row.latest.as_deref()))
                }
                td { (age(row.age_s)) " ago" }
                td {
                    @if row.acknowledged { "acknowledged" }
                    @else if row.awaits_acknowledgement { strong { "NOT acknowledged" } }
                    @else { "unread" }
                }
                td { @if !row.overdue.is_empty() { strong { "overdue: " (row.overdue.join(", ")) } } }
            }
        }
    }
}

/// The rows of the outbox table.
pub fn outbox_rows(rows: &[OutboxRow]) -> Markup {
    html! {
        @if rows.is_empty() { tr { td.muted colspan="7" { "Nothing sent yet." } } }
        @for row in rows {
            @let emergency = row.priority == "emergency";
            tr.emergency[emergency] data-id=(row.message_id) {
                td { @if emergency { span.badge { "EMERGENCY" } } @else { (row.priority) } }
                td { (row.country) }
                td { (row.kind) }
                td {
                    a href={ "/message/" (row.message_id) } { (row.summary) }
                    (thread_note(row.thread_messages, None))
                }
                td { (age(row.age_s)) " ago" }
                td {
                    (row.state)
                    @if let Some(why) = &row.why { br; span.error { "why: " (why) } }
                    @if let Some(status) = &row.latest_status { br; span.muted { "latest: " (status) } }
                    @if let Some(error) = &row.last_error { br; span.error { (error) } }
                }
                td { @if !row.overdue.is_empty() { strong { "overdue: " (row.overdue.join(", ")) } } }
            }
        }
    }
}

/// The home page: inbox and outbox, live.
pub fn home(
    viewer: &Viewer<'_>,
    inbox: &[InboxRow],
    outbox: &[OutboxRow],
    notice: Option<&str>,
) -> Markup {
    layout(
        "Inbox and outbox",
        Some(viewer),
        html! {
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            p.errors #alert role="alert" hidden { }
            p.muted #live aria-live="polite" { "Connecting for live updates…" }
            div.columns {
                section aria-labelledby="inbox-title" {
                    h2 #inbox-title { "Inbox" }
                    table {
                        thead { tr { th { "Priority" } th { "From" } th { "Kind" } th { "Summary" } th { "Received" } th { "Officer" } th { "Deadlines" } } }
                        tbody #inbox-body { (inbox_rows(inbox)) }
                    }
                }
                section aria-labelledby="outbox-title" {
                    h2 #outbox-title { "Outbox" }
                    table {
                        thead { tr { th { "Priority" } th { "To" } th { "Kind" } th { "Summary" } th { "Sent" } th { "State" } th { "Deadlines" } } }
                        tbody #outbox-body { (outbox_rows(outbox)) }
                    }
                }
            }
            script { (PreEscaped(LIVE_SCRIPT)) }
        },
    )
}

fn field_id(name: &str) -> String {
    let mut id = String::from("f-");
    id.extend(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }),
    );
    id
}

fn errors_for<'a>(errors: &'a [FieldError], name: &str) -> Vec<&'a FieldError> {
    errors.iter().filter(|error| error.field == name).collect()
}

/// Draws one input with its label, help and errors.
fn input(field: &compose::Field, form: &FormData, errors: &[FieldError]) -> Markup {
    let id = field_id(&field.name);
    let mine = errors_for(errors, &field.name);
    let invalid = if mine.is_empty() { None } else { Some("true") };
    let described = format!("{id}-help {id}-error");
    let value = form.get(&field.name);
    html! {
        div.field {
            @if field.input == Input::Check {
                label for=(id) {
                    input id=(id) type="checkbox" name=(field.name) value="true" checked[value == "true"] aria-invalid=[invalid] aria-describedby=(described);
                    " " (field.label)
                }
            } @else {
                label for=(id) { (field.label) }
            }
            span.help id={ (id) "-help" } { (field.help) }
            @match field.input {
                Input::Text => { input id=(id) type="text" name=(field.name) value=(value) aria-invalid=[invalid] aria-describedby=(described); }
                Input::Number => { input id=(id) type="text" inputmode="numeric" name=(field.name) value=(value) aria-invalid=[invalid] aria-describedby=(described); }
                Input::Area => { textarea id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) { (value) } }
                Input::Check => {}
                Input::Priority => {
                    select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) {
                        @for option in ["routine", "urgent", "emergency"] { option value=(option) selected[value == option] { (option) } }
                    }
                }
                Input::Status => {
                    select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) {
                        @for (option, label, needs) in compose::STATUSES {
                            option value=(option) selected[value == option] { (label) " — needs " (needs) }
                        }
                    }
                }
                Input::Ground => {
                    select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) {
                        option value="" { "(only when refused)" }
                        @for (option, label) in compose::GROUNDS { option value=(option) selected[value == option] { (label) } }
                    }
                }
                Input::Onward => {
                    select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) {
                        @for (option, label) in compose::ONWARD { option value=(option) selected[value == option] { (label) } }
                    }
                }
                Input::EvidentialUse => {
                    select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) {
                        @for (option, label) in compose::EVIDENTIAL_USE { option value=(option) selected[value == option] { (label) } }
                    }
                }
                Input::IdentifierKind => {
                    select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=(described) {
                        @for (option, label) in [("ip-address", "IP address and time"), ("account", "Account at a service"), ("email", "E-mail address"), ("domain", "Domain name"), ("url", "URL"), ("other", "Other")] {
                            option value=(option) selected[value == option] { (label) }
                        }
                    }
                }
            }
            span.error id={ (id) "-error" } {
                @for error in &mine { (error.problem) " " }
            }
        }
    }
}

fn error_summary(errors: &[FieldError], known: &[String]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.errors #form-errors role="alert" tabindex="-1" {
                p { strong { "The form needs corrections (" (errors.len()) "):" } }
                ul {
                    @for error in errors {
                        li {
                            @if known.contains(&error.field) {
                                a href={ "#" (field_id(&error.field)) } { (error.field) } ": " (error.problem)
                            } @else {
                                (error.field) ": " (error.problem)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The list of forms to compose.
pub fn compose_menu(viewer: &Viewer<'_>) -> Markup {
    layout(
        "Compose",
        Some(viewer),
        html! {
            ul {
                @for kind in compose::COMPOSE_KINDS {
                    li { a href={ "/compose/" (kind.as_str()) } { (compose::title(kind)) } }
                }
            }
            p.muted { "A status about a request you received is quickest from that request's page (Reply), which fills in its id and case reference." }
        },
    )
}

/// A compose form, blank or with the officer's values and the problems found.
pub fn compose_form(
    viewer: &Viewer<'_>,
    kind: FormKind,
    form: &FormData,
    errors: &[FieldError],
    countries: &[String],
) -> Markup {
    let sections = compose::sections(kind);
    let mut known: Vec<String> = sections
        .iter()
        .flat_map(|(_, fields)| fields.iter().map(|f| f.name.clone()))
        .collect();
    known.push("recipient".into());
    let recipient_errors = errors_for(errors, "recipient");
    let recipient_invalid = if recipient_errors.is_empty() {
        None
    } else {
        Some("true")
    };
    layout(
        compose::title(kind),
        Some(viewer),
        html! {
            (error_summary(errors, &known))
            form method="post" action={ "/compose/" (kind.as_str()) } novalidate {
                input type="hidden" name="csrf" value=(viewer.csrf);
                fieldset {
                    legend { "Recipient" }
                    label for="f-recipient" { "Country (its point of contact) or node id" }
                    span.help #f-recipient-help { "Members: " (countries.join(", ")) }
                    input #f-recipient type="text" name="recipient" list="countries" value=(form.get("recipient")) aria-invalid=[recipient_invalid] aria-describedby="f-recipient-help f-recipient-error";
                    datalist #countries { @for country in countries { option value=(country) {} } }
                    span.error #f-recipient-error { @for error in &recipient_errors { (error.problem) } }
                }
                @for (title, fields) in &sections {
                    fieldset {
                        legend { (title) }
                        @for field in fields { (input(field, form, errors)) }
                    }
                }
                p { button #send type="submit" { "Check and send" } }
            }
        },
    )
}

/// The case thread a message belongs to: every message of the case at this end, oldest first,
/// who sent it, when, what it says, and its state. Everything listed was accepted only with a
/// valid signature of a roster member (inbound) or signed by this node (outbound).
fn thread_view(detail: &MessageDetail) -> Markup {
    html! {
        @if !detail.thread.is_empty() {
            h2 #thread-title { "Case thread (" (detail.thread.len()) " messages)" }
            table #thread aria-labelledby="thread-title" {
                thead { tr { th { "When" } th { "From" } th { "Signature" } th { "Kind" } th { "Officer" } th { "What" } th { "State" } } }
                tbody {
                    @for item in &detail.thread {
                        @let current = item.message_id == detail.message_id;
                        @let outbound = item.direction == "outbound";
                        tr.current[current] aria-current=[current.then_some("true")] data-id=(item.message_id) {
                            td { (item.at) }
                            td { @if outbound { "this node → " (detail.country) } @else { (item.country) } " " span.muted { (item.signed_by) } }
                            td { @if outbound { "signed here" } @else { "verified on arrival" } }
                            td { (item.kind) }
                            td { (item.officer.as_deref().unwrap_or("—")) }
                            td { @if current { strong { (item.summary) } } @else { a href={ "/message/" (item.message_id) } { (item.summary) } } }
                            td { (item.state) }
                        }
                    }
                }
            }
        }
    }
}

/// A catalogue text in `language`, or `english` when no catalogue defines `key` (the handling
/// wording exists in English only until the catalogues carry it).
fn say(language: Language, key: &str, english: &str) -> String {
    if language.has(key) {
        language.text(key).to_string()
    } else if Language::En.has(key) {
        Language::En.text(key).to_string()
    } else {
        english.to_string()
    }
}

/// The sender's CONDITIONS ON USE as a bordered block for the top of a message page: every
/// condition labelled, the sender's own free text shown as written.
pub fn conditions_block(handling: &Handling, language: Language) -> Markup {
    html! {
        section.conditions #conditions aria-labelledby="conditions-title" {
            h2 #conditions-title { (say(language, HANDLING_TITLE.0, HANDLING_TITLE.1)) }
            dl {
                @for line in handling.labelled() {
                    dt { (say(language, line.label_key, line.label)) }
                    dd {
                        @match line.value_key {
                            Some(key) => { (say(language, key, &line.value)) }
                            None => { (line.value) }
                        }
                    }
                }
            }
        }
    }
}

/// One message in full, with the acknowledge and reply forms for received requests.
pub fn message(
    viewer: &Viewer<'_>,
    detail: &MessageDetail,
    notice: Option<&str>,
    reply: &FormData,
    reply_errors: &[FieldError],
    language: Language,
) -> Markup {
    let view = detail
        .payload
        .as_ref()
        .map(|payload| form_view::render(payload, language));
    let conditions = detail
        .payload
        .as_ref()
        .and_then(|payload| payload.handling());
    let inbound = detail.direction == "inbound";
    let emergency = detail.priority == "emergency";
    let title = match &detail.payload {
        Some(payload) => format!(
            "{} {} {}",
            if inbound { "From" } else { "To" },
            detail.country,
            payload.kind()
        ),
        None => format!("Message {}", detail.message_id),
    };
    let known: Vec<String> = [
        "status",
        "reference",
        "expires_at",
        "ground",
        "explanation",
        "questions",
        "authority",
        "note",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let status_fields: [(&str, &str, &str, &str); 6] = [
        ("reference", "Your preservation reference", "preserved", "text"),
        ("expires_at", "Preserved until (RFC 3339 with a zone, e.g. 2027-02-21T00:00:00Z)", "preserved", "text"),
        ("explanation", "Explanation", "partially-executed refused data-not-available", "area"),
        ("questions", "Questions the requester must answer", "more-information-needed", "area"),
        ("authority", "Central authority it was forwarded to", "forwarded-to-central-authority", "text"),
        ("note", "Note (optional, any status)", "acknowledged-by-officer preserved partially-executed refused more-information-needed forwarded-to-central-authority data-not-available", "area"),
    ];
    layout(
        &title,
        Some(viewer),
        html! {
            @if let Some(notice) = notice { p.notice #notice role="status" { (notice) } }
            @if let Some(handling) = conditions { (conditions_block(handling, language)) }
            table {
                tbody {
                    tr.emergency[emergency] { th scope="row" { "Priority" } td { @if emergency { span.badge { "EMERGENCY" } } @else { (detail.priority) } } }
                    tr { th scope="row" { "Message id" } td { code #message-id { (detail.message_id) } } }
                    tr { th scope="row" { (if inbound { "From" } else { "To" }) } td { (detail.country) " " span.muted { (detail.peer) } } }
                    tr { th scope="row" { "State" } td #state { (detail.state) } }
                    @if let Some(error) = &detail.last_error { tr { th scope="row" { "Last failure" } td.error { (error) } } }
                }
            }
            p { a #download href={ "/message/" (detail.message_id) "/json" } download { "Download this message with its receipts (JSON)" } }
            p { a #evidence href={ "/message/" (detail.message_id) "/evidence" } download { "Download the case's evidence bundle (one self-checking file for a court: the signed messages, receipts, roster and audit records)" } }
            h2 { "Content" }
            @match &view {
                None => { p.muted { "The content is not available on this node." } }
                Some(view) => {
                    div #content lang=(language.code()) {
                        p #form-title { strong { (view.title) } }
                        @for section in &view.sections {
                            h3 { (section.title) }
                            dl.payload {
                                @for row in &section.rows {
                                    dt { (row.label) }
                                    // The sender's own words: not translated, in the language they declared.
                                    dd.written[row.free_text] { (row.value) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(payload) = &detail.payload {
                @let files = super::routes::attachments(payload);
                @if !files.is_empty() {
                    h2 { "Attachments" }
                    ul #attachments {
                        @for (index, file) in files.iter().enumerate() {
                            li {
                                a href={ "/message/" (detail.message_id) "/attachment/" (index) } download { (super::routes::safe_filename(&file.name, index)) }
                                " — " (file.media_type) ", " (bytes(file.bytes.len() as u64)) ", SHA-256 " code { (file.sha256) }
                                " " span.muted { "(downloaded as a file, never opened in the browser)" }
                            }
                        }
                    }
                }
            }
            (thread_view(detail))
            h2 { "Receipts" }
            @if detail.receipts.is_empty() { p.muted { "No receipt yet." } }
            @else {
                table {
                    thead { tr { th { "Kind" } th { "Signed by" } th { "Stored at" } th { "Signature" } th { "Envelope SHA-256" } } }
                    tbody {
                        @for receipt in &detail.receipts {
                            tr {
                                td { (receipt.kind) }
                                td { (receipt.signer_country) " " span.muted { (receipt.signer) } }
                                td { (receipt.received_at) }
                                td { @if receipt.verified { "verified" } @else { strong.error { "NOT verified" } } }
                                td { code { (receipt.envelope_digest) } }
                            }
                        }
                    }
                }
            }
            @if !detail.status_history.is_empty() {
                h2 { "Status updates received" }
                ul { @for status in &detail.status_history { li { (status.received_at) ": " strong { (status.status.to_string()) } " — " (status.officer) @if !status.note.is_empty() { " (" (status.note) ")" } } } }
            }
            @if !detail.replies.is_empty() {
                h2 { "Status messages sent about it (ids)" }
                ul #replies { @for reply in &detail.replies { li { (reply) } } }
            }
            @if inbound {
                h2 { "Acknowledge" }
                @if detail.state == "acknowledged" { p #acknowledged { "Acknowledged." } }
                @else {
                    form method="post" action={ "/message/" (detail.message_id) "/ack" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button #ack type="submit" { "Acknowledge as " (viewer.officer) }
                    }
                }
                h2 #reply-title { "Reply with a status" }
                (error_summary(reply_errors, &known))
                form method="post" action={ "/message/" (detail.message_id) "/reply" } novalidate aria-labelledby="reply-title" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    label for="f-status" { "Status" }
                    select #f-status name="status" aria-describedby="f-status-error" {
                        @for (value, label, needs) in compose::STATUSES {
                            option value=(value) selected[reply.get("status") == value] { (label) " — needs " (needs) }
                        }
                    }
                    span.error #f-status-error { @for error in errors_for(reply_errors, "status") { (error.problem) } }
                    div data-for="refused" {
                        label for="f-ground" { "Ground for refusal" }
                        select #f-ground name="ground" aria-describedby="f-ground-error" {
                            option value="" { "(choose)" }
                            @for (value, label) in compose::GROUNDS { option value=(value) selected[reply.get("ground") == value] { (label) } }
                        }
                        span.error #f-ground-error { @for error in errors_for(reply_errors, "ground") { (error.problem) } }
                    }
                    @for (name, label, statuses, kind) in status_fields {
                        @let id = field_id(name);
                        @let mine = errors_for(reply_errors, name);
                        @let invalid = if mine.is_empty() { None } else { Some("true") };
                        div data-for=(statuses) {
                            label for=(id) { (label) }
                            @if kind == "area" {
                                textarea id=(id) name=(name) aria-invalid=[invalid] aria-describedby={ (id) "-error" } { (reply.get(name)) }
                            } @else {
                                input id=(id) type="text" name=(name) value=(reply.get(name)) aria-invalid=[invalid] aria-describedby={ (id) "-error" };
                            }
                            span.error id={ (id) "-error" } { @for error in &mine { (error.problem) } }
                        }
                    }
                    p { button #send-reply type="submit" { "Send status as " (viewer.officer) } }
                }
                script { (PreEscaped(REPLY_SCRIPT)) }
            }
        },
    )
}

/// Bytes in words (binary units, one decimal).
fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The disk row of the status page: free space against the low-water mark, and the refusal
/// while below it.
pub fn disk_line(report: &StatusReport) -> Markup {
    html! {
        @match report.disk_free_bytes {
            None => { span.muted { "free space not measured (the check is off, or not measured yet)" } }
            Some(free) => {
                (bytes(free)) " free"
                @if let Some(mark) = report.disk_low_water_bytes { ", low-water mark " (bytes(mark)) }
            }
        }
        @if let Some(refusal) = &report.disk_low {
            " " strong.error role="alert" { "DISK LOW: " (refusal) }
        } @else if report.disk_free_bytes.is_some() {
            " " span { "(ok)" }
        }
    }
}

/// The node at a glance.
pub fn status(viewer: &Viewer<'_>, report: &StatusReport, peers: &[PeerRow]) -> Markup {
    layout(
        "Status",
        Some(viewer),
        html! {
            table {
                tbody {
                    tr { th scope="row" { "Node" } td { (report.country) " " (report.role) " " span.muted { (report.node_id) } } }
                    tr { th scope="row" { "Network" } td { (report.network) } }
                tr #disk { th scope="row" { "Disk" } td { (disk_line(report)) } }
                    tr #roster { th scope="row" { "Roster" } td {
                        "serial " (report.roster_serial) ", expires " (report.roster_expires_at) " "
                        @if report.roster_expires_in_s < 0 { strong.error { "EXPIRED " (age(report.roster_expires_in_s.unsigned_abs())) " ago: members may refuse this node; install a new roster" } }
                        @else { span.muted { "(in " (age(report.roster_expires_in_s.unsigned_abs())) ")" } }
                        @if report.roster_expires_soon && report.roster_expires_in_s >= 0 { " " strong.error { "EXPIRES SOON: ask the roster authority for a new one" } } } }
                    @if report.revocation_serial > 0 { tr { th scope="row" { "Revocations" } td { (report.revocations.len()) " in force (serial " (report.revocation_serial) ")" } } }
                    tr { th scope="row" { "Inbox" } td { (report.inbox_total) " messages, " (report.inbox_unacknowledged) " not acknowledged" } }
                    tr { th scope="row" { "Outbox pending" } td { (report.outbox_pending[0]) " emergency, " (report.outbox_pending[1]) " urgent, " (report.outbox_pending[2]) " routine" } }
                    tr { th scope="row" { "Overdue" } td { (report.overdue[0]) " without receipt, " (report.overdue[1]) " not acknowledged, " (report.overdue[2]) " without status" } }
                    tr { th scope="row" { "Peers connected" } td { (report.connected_peers) } }
                    tr { th scope="row" { "Relay role" } td { (report.relay_pending) " held, " (report.relay_bytes) " bytes" } }
                    tr { th scope="row" { "Listening on" } td { (report.listen_addresses.join(", ")) } }
                }
            }
            @if !report.overdue_items.is_empty() {
                h2 { "Overdue" }
                table {
                    thead { tr { th { "Clock" } th { "Message" } th { "Country" } th { "Priority" } th { "Overdue for" } } }
                    tbody { @for item in &report.overdue_items {
                        tr.emergency[item.priority == "emergency"] { td { (item.meaning) } td { a href={ "/message/" (item.message_id) } { code { (item.message_id) } } } td { (item.country) } td { (item.priority) } td { (age(item.overdue_s)) } }
                    } }
                }
            }
            h2 { "Peers" }
            table {
                thead { tr { th { "Country" } th { "Authority" } th { "Role" } th { "Connection" } th { "Failures" } } }
                tbody { @for peer in peers {
                    tr { td { (peer.country) } td { (peer.authority_name) } td { (peer.role) } td { @if peer.connected { "up" } @else { "down" } @if let Some(at) = &peer.retry_at { " (retry at " (at) ")" } } td { (peer.consecutive_failures) } }
                } }
            }
        },
    )
}

fn seconds(value: Option<f64>) -> String {
    value
        .map(|s| age(s.round() as u64))
        .unwrap_or_else(|| "—".into())
}

/// Statistics per counterpart country.
pub fn stats(viewer: &Viewer<'_>, rows: &[CountryStats]) -> Markup {
    layout(
        "Statistics (last 30 days)",
        Some(viewer),
        html! {
            @if rows.is_empty() { p.muted { "No requests in the last 30 days." } }
            @else {
                table {
                    thead { tr { th { "Country" } th { "Sent" } th { "Received" } th { "Median to receipt" } th { "Their ack" } th { "Our ack" } th { "Their status" } th { "Our status" } th { "Refusals received" } th { "Refusals given" } } }
                    tbody { @for row in rows {
                        tr {
                            td { (row.country) } td { (row.sent) } td { (row.received) }
                            td { (seconds(row.median_receipt_s)) } td { (seconds(row.median_their_ack_s)) } td { (seconds(row.median_our_ack_s)) }
                            td { (seconds(row.median_their_status_s)) } td { (seconds(row.median_our_status_s)) }
                            td { @for (ground, count) in &row.refusals_received { (ground) ": " (count) " " } }
                            td { @for (ground, count) in &row.refusals_given { (ground) ": " (count) " " } }
                        }
                    } }
                }
            }
        },
    )
}
