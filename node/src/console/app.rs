//! The console's state machine: no terminal, no socket, no clock of its own.
//!
//! [`App::handle_key`] turns a key press into [`Command`]s (requests for the daemon, a bell, quit);
//! [`App::apply`] takes the daemon's answer. The loop in [`super::run`] does the IO in between and
//! tells the state about the connection with [`App::connected`] and [`App::disconnected`]. Tests
//! drive exactly these calls and look at the rendered screen.

use std::collections::HashSet;

use quickfreeze_keys::Timestamp;
use quickfreeze_proto::forms::{self, FormError, FormKind};
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::{parse_zoned_time, Payload, RefusalGround, Status};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::editor::Editor;
use crate::control::{
    ControlRequest, ControlResponse, InboxRow, MessageDetail, MessageQuery, OutboxRow, PeerRow,
    StatusReport,
};

/// Rows asked for on every refresh.
pub const LIST_LIMIT: usize = 500;

/// Something the loop must do for the state machine.
#[derive(Clone, Debug)]
pub enum Command {
    /// Send this request to the daemon and hand the answer to [`App::apply`].
    Request(ControlRequest),
    /// Ring the terminal bell.
    Bell,
    /// Leave the console.
    Quit,
}

/// Which list has the focus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    /// Messages received.
    Inbox,
    /// Messages sent.
    Outbox,
}

/// The link to the daemon as the console last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// Not tried yet.
    Connecting,
    /// Talking to the node with this id.
    Up(String),
    /// The last attempt failed.
    Down(String),
}

/// The line above the key hints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What to say.
    pub text: String,
    /// Shown in red.
    pub error: bool,
}

/// Where the console saves attachments unless told otherwise (relative to its working directory).
pub const DEFAULT_ATTACHMENTS_DIR: &str = "quickfreeze-attachments";

/// The status replies an officer can pick, in menu order: (name, label).
pub const STATUS_CHOICES: [(&str, &str); 7] = [
    ("acknowledged", "acknowledged by officer"),
    ("preserved", "preserved (reference, until)"),
    ("partially-executed", "partially executed"),
    ("refused", "refused (ground, explanation)"),
    ("more-information-needed", "more information needed"),
    ("forwarded", "forwarded to central authority"),
    ("data-not-available", "data not available (Art. 29(6))"),
];

/// Refusal grounds in menu order (Art. 29(5)).
pub const GROUNDS: [RefusalGround; 6] = [
    RefusalGround::PoliticalOffence,
    RefusalGround::Sovereignty,
    RefusalGround::Security,
    RefusalGround::PublicOrder,
    RefusalGround::OtherEssentialInterests,
    RefusalGround::Other,
];

/// One input of the reply form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// What to type.
    pub label: &'static str,
    /// What was typed.
    pub value: String,
    /// Must not stay empty.
    pub required: bool,
    /// A refusal ground picked with ←/→ instead of typed.
    pub ground: Option<usize>,
    /// The complaint, if the last send attempt found one.
    pub error: Option<String>,
}

impl Field {
    fn text(label: &'static str, required: bool) -> Field {
        Field {
            label,
            value: String::new(),
            required,
            ground: None,
            error: None,
        }
    }
}

/// The reply dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyForm {
    /// The inbox message answered.
    pub message_id: String,
    /// Where the requester is, for the dialog title.
    pub country: String,
    /// Index into [`STATUS_CHOICES`].
    pub choice: usize,
    /// `None` while picking the status; the fields once picked.
    pub fields: Option<Vec<Field>>,
    /// Focused field.
    pub focus: usize,
}

/// Where the compose dialog is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComposeStage {
    /// Picking the form (index into [`FormKind::ALL`]).
    Kind(usize),
    /// Picking the recipient (index into the recipient list).
    Recipient(usize),
    /// Editing the form text.
    Edit,
}

/// A problem with the form being edited, placed on a line where we can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 0-based line of the form text it is about.
    pub line: Option<usize>,
    /// What is wrong.
    pub text: String,
}

/// The compose dialog.
#[derive(Clone, Debug)]
pub struct Compose {
    /// Where it is.
    pub stage: ComposeStage,
    /// The form.
    pub kind: FormKind,
    /// Country code or node id.
    pub recipient: String,
    /// The text.
    pub editor: Editor,
    /// Everything wrong with the text, refreshed on every edit.
    pub problems: Vec<Problem>,
    /// The parsed payload when there are no problems.
    pub payload: Option<Payload>,
    /// Submitted, waiting for the daemon's answer.
    pub sending: bool,
    /// Esc was pressed once on an edited draft.
    pub confirm_discard: bool,
    /// The text as the template gave it, to tell whether anything was typed.
    pristine: String,
}

/// Modal windows over the lists or the detail.
#[derive(Clone, Debug)]
pub enum Dialog {
    /// Key bindings.
    Help,
    /// Reply with a status.
    Reply(ReplyForm),
    /// Compose a new request.
    Compose(Box<Compose>),
}

/// One message opened in full.
#[derive(Clone, Debug)]
pub struct DetailView {
    /// Which.
    pub message_id: String,
    /// The daemon's answer, once it came.
    pub detail: Option<Box<MessageDetail>>,
    /// Lines scrolled.
    pub scroll: u16,
}

/// Selection in a list, by message id so it survives refreshes that reorder rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Row index.
    pub index: usize,
    /// The selected row's message id.
    pub id: Option<String>,
}

/// What the last action was, to word its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    Ack(String),
    Reply(String, &'static str),
    Submit(String),
}

/// Everything the console shows.
#[derive(Debug)]
pub struct App {
    /// The officer's name, sent with acknowledgements and replies.
    pub officer: String,
    /// Wall-clock time as the loop last set it (for default dates).
    pub now: Timestamp,
    /// Terminal size as the loop last saw it.
    pub size: (u16, u16),
    /// The link.
    pub link: Link,
    /// The node at a glance.
    pub report: Option<StatusReport>,
    /// Inbox rows, in display order.
    pub inbox: Vec<InboxRow>,
    /// Outbox rows, in display order.
    pub outbox: Vec<OutboxRow>,
    /// Roster members, for the recipient list.
    pub peers: Vec<PeerRow>,
    /// Focused list.
    pub focus: Pane,
    /// Inbox selection.
    pub inbox_selection: Selection,
    /// Outbox selection.
    pub outbox_selection: Selection,
    /// The status line.
    pub notice: Option<Notice>,
    /// The opened message.
    pub detail: Option<DetailView>,
    /// The modal window.
    pub dialog: Option<Dialog>,
    /// Inbox ids seen so far; `None` until the first inbox answer (which never rings).
    seen: Option<HashSet<String>>,
    pending: Option<Pending>,
    quit: bool,
    /// The `/` search: only rows holding every word (id, country, kind, priority, summary).
    pub search: Option<String>,
    /// True while the officer types the search.
    pub searching: bool,
    /// Where `s` in the message view saves attachments: a folder per message below it
    /// (`--attachments-dir`, default `quickfreeze-attachments` in the working directory).
    pub attachments_dir: std::path::PathBuf,
    /// The language of labels in the message view (`language` in node.toml).
    pub language: Language,
}

/// Whether a list row holds every word of the search (case-insensitive).
pub fn matches_search(search: Option<&str>, fields: &[&str]) -> bool {
    let Some(search) = search else {
        return true;
    };
    let haystack = fields.join(" ").to_lowercase();
    search
        .split_whitespace()
        .all(|word| haystack.contains(&word.to_lowercase()))
}

fn rank(priority: &str) -> u8 {
    match priority {
        "emergency" => 0,
        "urgent" => 1,
        _ => 2,
    }
}

fn outbox_open(state: &str) -> bool {
    matches!(state, "accepted" | "sent" | "custody")
}

impl App {
    /// A console for `officer`, not yet connected.
    pub fn new(officer: impl Into<String>) -> App {
        App {
            officer: officer.into(),
            now: Timestamp(0),
            size: (80, 24),
            link: Link::Connecting,
            report: None,
            inbox: Vec::new(),
            outbox: Vec::new(),
            peers: Vec::new(),
            focus: Pane::Inbox,
            inbox_selection: Selection::default(),
            outbox_selection: Selection::default(),
            notice: None,
            detail: None,
            dialog: None,
            seen: None,
            pending: None,
            quit: false,
            search: None,
            searching: false,
            attachments_dir: std::path::PathBuf::from(DEFAULT_ATTACHMENTS_DIR),
            language: Language::default(),
        }
    }

    /// True once the officer asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The requests of one refresh: lists, status, and the opened message.
    pub fn refresh(&self) -> Vec<Command> {
        let mut commands = vec![
            Command::Request(ControlRequest::Status),
            // One row per case thread; the opened message shows the whole thread.
            Command::Request(ControlRequest::InboxQuery {
                query: Box::new(MessageQuery {
                    limit: LIST_LIMIT,
                    ..MessageQuery::default()
                }),
            }),
            Command::Request(ControlRequest::OutboxQuery {
                query: Box::new(MessageQuery {
                    limit: LIST_LIMIT,
                    ..MessageQuery::default()
                }),
            }),
        ];
        if let Some(view) = &self.detail {
            commands.push(Command::Request(ControlRequest::Show {
                message_id: view.message_id.clone(),
            }));
        }
        commands
    }

    /// The loop reached the node with id `node_id`.
    pub fn connected(&mut self, node_id: &str) {
        if matches!(self.link, Link::Down(_)) {
            self.say("connection to the node restored", false);
        }
        self.link = Link::Up(node_id.to_string());
    }

    /// The loop could not reach the node.
    pub fn disconnected(&mut self, reason: &str) {
        self.link = Link::Down(reason.to_string());
    }

    /// A request the officer made could not be sent at all (node unreachable).
    pub fn request_failed(&mut self, request: &ControlRequest, reason: &str) {
        let what = match request {
            ControlRequest::Submit { .. } => "the request was NOT sent",
            ControlRequest::Ack { .. } => "NOT acknowledged",
            ControlRequest::Reply { .. } => "the status was NOT sent",
            ControlRequest::Show { .. } => "cannot open the message",
            _ => return, // refreshes: the banner says it
        };
        if let Some(Dialog::Compose(compose)) = &mut self.dialog {
            compose.sending = false;
        }
        self.pending = None;
        self.say(&format!("{what}: {reason}"), true);
    }

    /// `s` in the message view: saves its attachments into a folder named after the message
    /// below [`App::attachments_dir`], with the same safety as `show --save-attachments`.
    pub fn save_attachments(&mut self) {
        let Some(detail) = self.detail.as_ref().and_then(|view| view.detail.as_deref()) else {
            self.say(
                "the message is still loading; press s again in a moment",
                false,
            );
            return;
        };
        let attachments = detail
            .payload
            .as_ref()
            .map(crate::cli::payload_attachments)
            .unwrap_or_default();
        if attachments.is_empty() {
            self.say("this message has no attachments", false);
            return;
        }
        let dir = self.attachments_dir.join(short(&detail.message_id));
        match crate::attachments::save_all(&dir, attachments) {
            Ok(saved) => {
                let text = format!(
                    "saved {} attachment(s), sha256 verified, into {}",
                    saved.len(),
                    dir.display()
                );
                self.say(&text, false);
            }
            Err(error) => self.say(&format!("attachments not saved: {error:#}"), true),
        }
    }

    fn say(&mut self, text: &str, error: bool) {
        self.notice = Some(Notice {
            text: clean(text),
            error,
        });
    }

    // -----------------------------------------------------------------------------------------
    // Answers
    // -----------------------------------------------------------------------------------------

    /// Takes one answer from the daemon; returns follow-up commands (a bell, a refresh).
    pub fn apply(&mut self, response: ControlResponse) -> Vec<Command> {
        match response {
            ControlResponse::Inbox { rows } | ControlResponse::InboxPage { rows, .. } => {
                return self.apply_inbox(rows)
            }
            ControlResponse::Outbox { mut rows } | ControlResponse::OutboxPage { mut rows, .. } => {
                let search = self.search.clone();
                rows.retain(|row| {
                    matches_search(
                        search.as_deref(),
                        &[&row.message_id, &row.country, &row.kind, &row.priority, &row.state, &row.summary],
                    )
                });
                // Overdue first, then open work (highest priority first), then finished; newest
                // first within.
                rows.sort_by_key(|row| {
                    (
                        row.overdue.is_empty(),
                        !outbox_open(&row.state),
                        rank(&row.priority),
                        row.age_s,
                    )
                });
                self.outbox = rows;
                let ids: Vec<&str> = self.outbox.iter().map(|r| r.message_id.as_str()).collect();
                reselect(&mut self.outbox_selection, &ids);
            }
            ControlResponse::Status { report } => self.report = Some(*report),
            ControlResponse::Peers { rows } => {
                self.peers = rows;
            }
            ControlResponse::Message { detail } => {
                if let Some(view) = &mut self.detail {
                    if view.message_id == detail.message_id {
                        view.detail = Some(detail);
                    }
                }
            }
            ControlResponse::Acknowledged { status_message_id } => {
                let id = match self.pending.take() {
                    Some(Pending::Ack(id)) => short(&id),
                    _ => "the message".into(),
                };
                match status_message_id {
                    Some(status) => self.say(
                        &format!(
                            "acknowledged {id}; the requester is told by status message {}",
                            short(&status)
                        ),
                        false,
                    ),
                    None => self.say(&format!("{id} was already acknowledged"), false),
                }
                return self.refresh();
            }
            ControlResponse::MarkedRead { message_id } => {
                self.pending = None;
                self.say(
                    &format!(
                        "{} marked read; nothing is sent back for a status reply",
                        short(&message_id)
                    ),
                    false,
                );
                return self.refresh();
            }
            ControlResponse::Replied { status_message_id } => {
                let (id, label) = match self.pending.take() {
                    Some(Pending::Reply(id, label)) => (short(&id), label),
                    _ => ("the message".into(), "status"),
                };
                if matches!(self.dialog, Some(Dialog::Reply(_))) {
                    self.dialog = None;
                }
                self.say(
                    &format!(
                        "status `{label}` for {id} queued as message {}",
                        short(&status_message_id)
                    ),
                    false,
                );
                return self.refresh();
            }
            ControlResponse::Submitted {
                message_id,
                country,
                ..
            } => {
                self.pending = None;
                if matches!(self.dialog, Some(Dialog::Compose(_))) {
                    self.dialog = None;
                }
                self.focus = Pane::Outbox;
                self.outbox_selection.id = Some(message_id.clone());
                self.say(
                    &format!(
                        "accepted {} for {country}: stored and queued; watch its state in the outbox",
                        short(&message_id)
                    ),
                    false,
                );
                return self.refresh();
            }
            ControlResponse::Error { message } => {
                let what = match self.pending.take() {
                    Some(Pending::Ack(_)) => "acknowledge failed",
                    Some(Pending::Reply(..)) => "reply failed",
                    Some(Pending::Submit(_)) => "the request was NOT sent",
                    None => "the node said",
                };
                if let Some(Dialog::Compose(compose)) = &mut self.dialog {
                    compose.sending = false;
                }
                self.say(&format!("{what}: {message}"), true);
            }
            ControlResponse::Delivered { .. }
            | ControlResponse::NotYetDelivered { .. }
            | ControlResponse::Metrics { .. }
            | ControlResponse::MetricsSnapshot { .. }
            | ControlResponse::Stats { .. }
            | ControlResponse::AuditVerified { .. }
            | ControlResponse::AuditPage { .. }
            | ControlResponse::BackupWritten { .. }
            | ControlResponse::Evidence { .. }
            | ControlResponse::FaultsSet { .. }
            | ControlResponse::RosterInstalled { .. }
            | ControlResponse::RevocationApplied { .. }
            | ControlResponse::DeliveryLog { .. }
            | ControlResponse::ActionRecorded
            // The console submits one request at a time.
            | ControlResponse::SubmittedBatch { .. } => {}
        }
        Vec::new()
    }

    fn apply_inbox(&mut self, mut rows: Vec<InboxRow>) -> Vec<Command> {
        let mut commands = Vec::new();
        let search = self.search.clone();
        rows.retain(|row| {
            matches_search(
                search.as_deref(),
                &[
                    &row.message_id,
                    &row.country,
                    &row.kind,
                    &row.priority,
                    &row.summary,
                ],
            )
        });
        if let Some(seen) = &mut self.seen {
            let mut alarming: Vec<&InboxRow> = rows
                .iter()
                .filter(|row| !seen.contains(&row.message_id))
                .filter(|row| {
                    !row.acknowledged && row.awaits_acknowledgement && rank(&row.priority) < 2
                })
                .collect();
            alarming.sort_by_key(|row| rank(&row.priority));
            if let Some(first) = alarming.first() {
                let text = format!(
                    "NEW {} from {}: {}{}",
                    first.priority.to_uppercase(),
                    first.country,
                    first.summary,
                    match alarming.len() {
                        1 => String::new(),
                        n => format!(" (+{} more)", n - 1),
                    }
                );
                let error = first.priority == "emergency";
                commands.push(Command::Bell);
                self.notice = Some(Notice {
                    text: clean(&text),
                    error,
                });
            }
            seen.extend(rows.iter().map(|row| row.message_id.clone()));
        } else {
            self.seen = Some(rows.iter().map(|row| row.message_id.clone()).collect());
        }
        // Overdue first, then waiting for an officer, most urgent first, newest first within.
        rows.sort_by_key(|row| {
            (
                row.overdue.is_empty(),
                row.acknowledged,
                rank(&row.priority),
                row.age_s,
            )
        });
        self.inbox = rows;
        let ids: Vec<&str> = self.inbox.iter().map(|r| r.message_id.as_str()).collect();
        reselect(&mut self.inbox_selection, &ids);
        commands
    }

    // -----------------------------------------------------------------------------------------
    // Keys
    // -----------------------------------------------------------------------------------------

    /// A pasted block of text (bracketed paste): goes into the focused text input, if any.
    pub fn paste(&mut self, text: &str) -> Vec<Command> {
        match &mut self.dialog {
            Some(Dialog::Compose(compose)) if compose.stage == ComposeStage::Edit => {
                compose.editor.insert_str(text);
                compose.confirm_discard = false;
                revalidate(compose);
                let height = editor_height(self.size.1);
                compose.editor.keep_visible(height);
            }
            Some(Dialog::Reply(form)) => {
                if let Some(field) = form.fields.as_mut().and_then(|f| f.get_mut(form.focus)) {
                    if field.ground.is_none() {
                        field
                            .value
                            .extend(text.chars().filter(|c| !c.is_control()).take(4096));
                    }
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// One key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Command::Quit];
        }
        if let Some(notice) = &self.notice {
            if !notice.error {
                self.notice = None;
            }
        }
        if self.searching {
            return self.search_key(key);
        }
        match self.dialog.take() {
            Some(Dialog::Help) => Vec::new(), // any key closes it
            Some(Dialog::Reply(form)) => self.reply_key(form, key),
            Some(Dialog::Compose(compose)) => self.compose_key(compose, key),
            None => {
                if self.detail.is_some() {
                    self.detail_key(key)
                } else {
                    self.list_key(key)
                }
            }
        }
    }

    /// A key while the `/` search is typed: Enter applies it, Esc clears it.
    fn search_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let mut text = self.search.take().unwrap_or_default();
        match key.code {
            KeyCode::Enter => {
                self.searching = false;
                let words = text.trim().to_string();
                if words.is_empty() {
                    self.say("search cleared", false);
                } else {
                    self.say(
                        &format!("showing rows with: {words} (/ then Esc clears)"),
                        false,
                    );
                    self.search = Some(words);
                }
                return self.refresh();
            }
            KeyCode::Esc => {
                self.searching = false;
                self.say("search cleared", false);
                return self.refresh();
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(ch) if !ch.is_control() && text.chars().count() < 80 => text.push(ch),
            _ => {}
        }
        self.notice = Some(Notice {
            text: format!("/{text}"),
            error: false,
        });
        self.search = Some(text);
        Vec::new()
    }

    fn list_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let page = self.size.1.saturating_sub(8).max(1) as isize;
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return vec![Command::Quit];
            }
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right => {
                self.focus = match self.focus {
                    Pane::Inbox => Pane::Outbox,
                    Pane::Outbox => Pane::Inbox,
                };
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-page),
            KeyCode::PageDown => self.move_selection(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2),
            KeyCode::Enter => {
                if let Some(id) = self.selected_id() {
                    self.detail = Some(DetailView {
                        message_id: id.clone(),
                        detail: None,
                        scroll: 0,
                    });
                    return vec![Command::Request(ControlRequest::Show { message_id: id })];
                }
                self.say("nothing to open: the list is empty", false);
            }
            KeyCode::Char('/') => {
                self.searching = true;
                self.search = Some(String::new());
                self.notice = Some(Notice {
                    text: "/".into(),
                    error: false,
                });
            }
            KeyCode::Char('a') => return self.ack_selected(),
            KeyCode::Char('r') => self.open_reply(),
            KeyCode::Char('n') | KeyCode::Char('c') => return self.open_compose(),
            KeyCode::Char('?') | KeyCode::F(1) => self.dialog = Some(Dialog::Help),
            KeyCode::Char('u') | KeyCode::F(5) => return self.refresh(),
            KeyCode::Esc => self.notice = None,
            _ => {}
        }
        Vec::new()
    }

    fn detail_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let page = self.size.1.saturating_sub(6).max(1);
        match key.code {
            KeyCode::Char('a') => return self.ack_selected(),
            KeyCode::Char('r') => {
                self.open_reply();
                return Vec::new();
            }
            KeyCode::Char('n') | KeyCode::Char('c') => return self.open_compose(),
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.dialog = Some(Dialog::Help);
                return Vec::new();
            }
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Backspace => {
                self.detail = None;
                return Vec::new();
            }
            KeyCode::Char('s') => {
                self.save_attachments();
                return Vec::new();
            }
            _ => {}
        }
        let Some(view) = &mut self.detail else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => view.scroll = view.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => view.scroll = view.scroll.saturating_add(1),
            KeyCode::PageUp => view.scroll = view.scroll.saturating_sub(page),
            KeyCode::PageDown | KeyCode::Char(' ') => {
                view.scroll = view.scroll.saturating_add(page)
            }
            KeyCode::Home | KeyCode::Char('g') => view.scroll = 0,
            KeyCode::End | KeyCode::Char('G') => view.scroll = u16::MAX,
            _ => {}
        }
        // Never past the last line, so the way back up starts at once.
        if let Some(detail) = view.detail.as_deref() {
            view.scroll = view.scroll.min(super::render::detail_max_scroll(
                detail,
                self.size,
                self.language,
            ));
        }
        Vec::new()
    }

    fn move_selection(&mut self, delta: isize) {
        let (selection, ids): (&mut Selection, Vec<&str>) = match self.focus {
            Pane::Inbox => (
                &mut self.inbox_selection,
                self.inbox.iter().map(|r| r.message_id.as_str()).collect(),
            ),
            Pane::Outbox => (
                &mut self.outbox_selection,
                self.outbox.iter().map(|r| r.message_id.as_str()).collect(),
            ),
        };
        if ids.is_empty() {
            return;
        }
        let index = selection
            .index
            .saturating_add_signed(delta)
            .min(ids.len() - 1);
        selection.index = index;
        selection.id = Some(ids[index].to_string());
    }

    /// The message id under the cursor of the focused list.
    pub fn selected_id(&self) -> Option<String> {
        match self.focus {
            Pane::Inbox => self
                .inbox
                .get(self.inbox_selection.index)
                .map(|row| row.message_id.clone()),
            Pane::Outbox => self
                .outbox
                .get(self.outbox_selection.index)
                .map(|row| row.message_id.clone()),
        }
    }

    /// The inbox message an action applies to: the opened one, or the selected inbox row.
    fn target_inbox(&self) -> Result<(String, String), &'static str> {
        if let Some(view) = &self.detail {
            return match self.inbox.iter().find(|r| r.message_id == view.message_id) {
                Some(row) => Ok((row.message_id.clone(), row.country.clone())),
                None => match view.detail.as_deref() {
                    Some(detail) if detail.direction == "inbound" => {
                        Ok((detail.message_id.clone(), detail.country.clone()))
                    }
                    _ => Err("only received messages can be acknowledged or answered"),
                },
            };
        }
        if self.focus != Pane::Inbox {
            return Err("acknowledge and reply work on the inbox: press Tab to switch");
        }
        self.inbox
            .get(self.inbox_selection.index)
            .map(|row| (row.message_id.clone(), row.country.clone()))
            .ok_or("the inbox is empty")
    }

    fn ack_selected(&mut self) -> Vec<Command> {
        match self.target_inbox() {
            Ok((id, _)) => {
                self.pending = Some(Pending::Ack(id.clone()));
                vec![Command::Request(ControlRequest::Ack {
                    message_id: id,
                    officer: self.officer.clone(),
                })]
            }
            Err(why) => {
                self.say(why, true);
                Vec::new()
            }
        }
    }

    fn open_reply(&mut self) {
        match self.target_inbox() {
            Ok((message_id, country)) => {
                self.dialog = Some(Dialog::Reply(ReplyForm {
                    message_id,
                    country,
                    choice: 0,
                    fields: None,
                    focus: 0,
                }));
            }
            Err(why) => self.say(why, true),
        }
    }

    fn open_compose(&mut self) -> Vec<Command> {
        let kind = FormKind::Preservation;
        let template = forms::template_in(kind, self.language);
        self.dialog = Some(Dialog::Compose(Box::new(Compose {
            stage: ComposeStage::Kind(0),
            kind,
            recipient: String::new(),
            editor: Editor::new(&template),
            problems: Vec::new(),
            payload: None,
            sending: false,
            confirm_discard: false,
            pristine: template,
        })));
        vec![Command::Request(ControlRequest::Peers)]
    }

    // -----------------------------------------------------------------------------------------
    // Reply dialog
    // -----------------------------------------------------------------------------------------

    fn reply_key(&mut self, mut form: ReplyForm, key: KeyEvent) -> Vec<Command> {
        let Some(fields) = &mut form.fields else {
            match key.code {
                KeyCode::Esc => return Vec::new(),
                KeyCode::Up | KeyCode::Char('k') => form.choice = form.choice.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => {
                    form.choice = (form.choice + 1).min(STATUS_CHOICES.len() - 1)
                }
                KeyCode::Char(digit @ '1'..='7') => {
                    form.choice = (digit as usize) - ('1' as usize);
                    form.fields = Some(self.fields_for(form.choice));
                }
                KeyCode::Enter => form.fields = Some(self.fields_for(form.choice)),
                _ => {}
            }
            self.dialog = Some(Dialog::Reply(form));
            return Vec::new();
        };
        let count = fields.len();
        match key.code {
            KeyCode::Esc => {
                form.fields = None;
                form.focus = 0;
            }
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % count,
            KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + count - 1) % count,
            KeyCode::Left | KeyCode::Right if fields[form.focus].ground.is_some() => {
                let ground = fields[form.focus].ground.unwrap_or(0);
                let next = if key.code == KeyCode::Left {
                    (ground + GROUNDS.len() - 1) % GROUNDS.len()
                } else {
                    (ground + 1) % GROUNDS.len()
                };
                fields[form.focus].ground = Some(next);
            }
            KeyCode::Backspace => {
                fields[form.focus].value.pop();
            }
            KeyCode::Char(ch)
                if fields[form.focus].ground.is_none() && fields[form.focus].value.len() < 4096 =>
            {
                fields[form.focus].value.push(ch);
            }
            KeyCode::Enter => match build_status(form.choice, fields) {
                Ok((status, note)) => {
                    let label = STATUS_CHOICES[form.choice].0;
                    self.pending = Some(Pending::Reply(form.message_id.clone(), label));
                    let command = Command::Request(ControlRequest::Reply {
                        message_id: form.message_id.clone(),
                        status,
                        note,
                        officer: self.officer.clone(),
                    });
                    // Stays open until the daemon answers; closes on `Replied`.
                    self.dialog = Some(Dialog::Reply(form));
                    return vec![command];
                }
                Err(first) => {
                    form.focus = first;
                    self.say("the status needs corrections (marked in the form)", true);
                }
            },
            _ => {}
        }
        self.dialog = Some(Dialog::Reply(form));
        Vec::new()
    }

    fn fields_for(&self, choice: usize) -> Vec<Field> {
        let note = Field::text("note (optional)", false);
        let mut fields = match STATUS_CHOICES[choice].0 {
            "preserved" => {
                let mut until = Field::text("preserved until (date or RFC 3339)", true);
                // Default: the Convention's 90 usual days from today.
                let date = self.now.plus_ms(90 * 24 * 3600 * 1000).to_rfc3339();
                until.value = date.get(..10).unwrap_or(&date).to_string();
                vec![Field::text("your preservation reference", true), until]
            }
            "partially-executed" => vec![Field::text("what was done and what was not", true)],
            "refused" => vec![
                Field {
                    ground: Some(0),
                    ..Field::text("ground (Art. 29(5)) ←/→", true)
                },
                Field::text("explanation", true),
            ],
            "more-information-needed" => vec![Field::text("questions for the requester", true)],
            "forwarded" => vec![Field::text("central authority forwarded to", true)],
            "data-not-available" => vec![Field::text("what is known about the data", true)],
            _ => Vec::new(),
        };
        fields.push(note);
        fields
    }

    // -----------------------------------------------------------------------------------------
    // Compose dialog
    // -----------------------------------------------------------------------------------------

    /// Countries (points of contact and central authorities) a request can go to.
    pub fn recipients(&self) -> Vec<&PeerRow> {
        let own = self.report.as_ref().map(|report| report.node_id.as_str());
        self.peers
            .iter()
            .filter(|peer| Some(peer.node_id.as_str()) != own && peer.role != "relay")
            .collect()
    }

    fn compose_key(&mut self, mut compose: Box<Compose>, key: KeyEvent) -> Vec<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match compose.stage.clone() {
            ComposeStage::Kind(index) => match key.code {
                KeyCode::Esc => return Vec::new(),
                KeyCode::Up | KeyCode::Char('k') => {
                    compose.stage = ComposeStage::Kind(index.saturating_sub(1))
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    compose.stage = ComposeStage::Kind((index + 1).min(FormKind::ALL.len() - 1))
                }
                KeyCode::Enter => {
                    let kind = FormKind::ALL[index];
                    if kind != compose.kind {
                        compose.kind = kind;
                        compose.pristine = forms::template_in(kind, self.language);
                        compose.editor = Editor::new(&compose.pristine);
                    }
                    compose.stage = ComposeStage::Recipient(0);
                }
                _ => {}
            },
            ComposeStage::Recipient(index) => {
                let count = self.recipients().len();
                match key.code {
                    KeyCode::Esc => compose.stage = ComposeStage::Kind(0),
                    KeyCode::Up | KeyCode::Char('k') => {
                        compose.stage = ComposeStage::Recipient(index.saturating_sub(1))
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        compose.stage =
                            ComposeStage::Recipient((index + 1).min(count.saturating_sub(1)))
                    }
                    KeyCode::Enter => match self.recipients().get(index) {
                        Some(peer) => {
                            compose.recipient = peer.country.clone();
                            compose.stage = ComposeStage::Edit;
                            revalidate(&mut compose);
                        }
                        None => {
                            self.say("no recipients known yet: the node has not answered", true);
                            self.dialog = Some(Dialog::Compose(compose));
                            return vec![Command::Request(ControlRequest::Peers)];
                        }
                    },
                    _ => {}
                }
            }
            ComposeStage::Edit => {
                if compose.sending {
                    // Waiting for the daemon: keys would edit a form already submitted.
                    self.dialog = Some(Dialog::Compose(compose));
                    return Vec::new();
                }
                let was_confirming = std::mem::take(&mut compose.confirm_discard);
                let editor = &mut compose.editor;
                let page = editor_height(self.size.1) as isize;
                let mut edited = false;
                match key.code {
                    KeyCode::Esc => {
                        if was_confirming || compose.editor.text() == compose.pristine {
                            self.say("draft discarded", false);
                            return Vec::new();
                        }
                        compose.confirm_discard = true;
                    }
                    KeyCode::Char('s') if ctrl => {
                        return self.submit(compose);
                    }
                    KeyCode::Char('e') if ctrl => {
                        // Jump to the first line with a problem.
                        if let Some(line) = compose.problems.iter().find_map(|p| p.line) {
                            editor.goto_line(line);
                        }
                    }
                    KeyCode::Char(ch) if !ctrl => {
                        editor.insert(ch);
                        edited = true;
                    }
                    KeyCode::Enter => {
                        editor.insert('\n');
                        edited = true;
                    }
                    KeyCode::Tab => {
                        editor.insert('\t');
                        edited = true;
                    }
                    KeyCode::Backspace => {
                        editor.backspace();
                        edited = true;
                    }
                    KeyCode::Delete => {
                        editor.delete();
                        edited = true;
                    }
                    KeyCode::Left => editor.left(),
                    KeyCode::Right => editor.right(),
                    KeyCode::Up => editor.vertical(-1),
                    KeyCode::Down => editor.vertical(1),
                    KeyCode::PageUp => editor.vertical(-page),
                    KeyCode::PageDown => editor.vertical(page),
                    KeyCode::Home => editor.home(),
                    KeyCode::End => editor.end(),
                    _ => {}
                }
                if edited {
                    revalidate(&mut compose);
                }
                compose.editor.keep_visible(page as usize);
            }
        }
        self.dialog = Some(Dialog::Compose(compose));
        Vec::new()
    }

    fn submit(&mut self, mut compose: Box<Compose>) -> Vec<Command> {
        revalidate(&mut compose);
        let Some(payload) = compose.payload.clone() else {
            let count = compose.problems.len();
            self.say(
                &format!("not sent: {count} problem(s) in the form; Ctrl+E jumps to the first"),
                true,
            );
            self.dialog = Some(Dialog::Compose(compose));
            return Vec::new();
        };
        compose.sending = true;
        let recipient = compose.recipient.clone();
        self.pending = Some(Pending::Submit(recipient.clone()));
        self.say(&format!("sending to {recipient}…"), false);
        self.dialog = Some(Dialog::Compose(compose));
        vec![Command::Request(ControlRequest::Submit {
            recipient,
            payload: Box::new(payload),
        })]
    }
}

/// Rows of the compose editor on a terminal `height` rows high (shared with the renderer).
pub fn editor_height(height: u16) -> usize {
    // Title, problems box (5), status and key lines, borders.
    usize::from(height.saturating_sub(10).max(3))
}

fn reselect(selection: &mut Selection, ids: &[&str]) {
    if ids.is_empty() {
        *selection = Selection::default();
        return;
    }
    if let Some(index) = selection
        .id
        .as_deref()
        .and_then(|id| ids.iter().position(|candidate| *candidate == id))
    {
        selection.index = index;
    } else {
        selection.index = selection.index.min(ids.len() - 1);
        selection.id = Some(ids[selection.index].to_string());
    }
}

/// The first 8 hex digits of an id, enough to tell messages apart on screen.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Text from the network or the node made safe for the terminal: control characters (escape
/// sequences a hostile sender might plant) become `�`, line breaks become spaces.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|ch| match ch {
            '\n' | '\r' | '\t' => ' ',
            ch if ch.is_control() => '\u{fffd}',
            ch => ch,
        })
        .collect()
}

fn build_status(choice: usize, fields: &mut [Field]) -> Result<(Status, String), usize> {
    let mut first_error = None;
    for (index, field) in fields.iter_mut().enumerate() {
        field.value = field.value.trim().to_string();
        field.error = (field.required && field.ground.is_none() && field.value.is_empty())
            .then(|| "required".to_string());
        if field.error.is_some() && first_error.is_none() {
            first_error = Some(index);
        }
    }
    let value = |index: usize| {
        fields
            .get(index)
            .map(|f| f.value.clone())
            .unwrap_or_default()
    };
    let note = fields.last().map(|f| f.value.clone()).unwrap_or_default();
    let status = match STATUS_CHOICES[choice].0 {
        "preserved" => {
            let text = value(1);
            let parsed = if text.len() == 10 {
                parse_zoned_time(&format!("{text}T00:00:00Z"))
            } else {
                parse_zoned_time(&text)
            };
            match parsed {
                Ok(expires_at) => Status::Preserved {
                    reference: value(0),
                    expires_at,
                },
                Err(problem) => {
                    if fields[1].error.is_none() {
                        fields[1].error = Some(problem);
                    }
                    return Err(first_error.unwrap_or(1));
                }
            }
        }
        "partially-executed" => Status::PartiallyExecuted {
            explanation: value(0),
        },
        "refused" => Status::Refused {
            ground: GROUNDS[fields[0].ground.unwrap_or(0).min(GROUNDS.len() - 1)],
            explanation: value(1),
        },
        "more-information-needed" => Status::MoreInformationNeeded {
            questions: value(0),
        },
        "forwarded" => Status::ForwardedToCentralAuthority {
            authority: value(0),
        },
        "data-not-available" => Status::DataNotAvailable {
            explanation: value(0),
        },
        _ => Status::AcknowledgedByOfficer,
    };
    match first_error {
        Some(index) => Err(index),
        None => Ok((status, note)),
    }
}

fn revalidate(compose: &mut Compose) {
    let text = compose.editor.text();
    match forms::parse_form(compose.kind, &text) {
        Ok(payload) => {
            compose.payload = Some(payload);
            compose.problems.clear();
        }
        Err(FormError::Toml { line, message }) => {
            compose.payload = None;
            compose.problems = vec![Problem {
                line: line.map(|line| line.saturating_sub(1)),
                text: clean(&message),
            }];
        }
        Err(FormError::Invalid(errors)) => {
            compose.payload = None;
            compose.problems = errors
                .0
                .iter()
                .map(|error| Problem {
                    line: line_of_field(&text, &error.field),
                    text: clean(&error.to_string()),
                })
                .collect();
        }
    }
}

/// The 0-based line of a form where the field at `path` (`header.contact.phone`,
/// `data_identifiers[1].timestamp`, `mla_intent`) is written, when it can be found.
pub fn line_of_field(text: &str, path: &str) -> Option<usize> {
    // Split into (name, index) segments; the last one is the key, the rest name its table.
    let segments: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|segment| match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (segment, None),
        })
        .collect();
    let (&(leaf, leaf_index), table) = segments.split_last()?;
    if leaf.is_empty() || table.iter().any(|(name, _)| name.is_empty()) {
        return None;
    }
    // A path ending in `name[n]` points at the n-th `[[name]]` block itself.
    let (table_path, table_index, key) = match leaf_index {
        Some(index) => {
            let mut names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            names.push(leaf);
            (names.join("."), Some(index), None)
        }
        None => {
            let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            let index = table.last().and_then(|(_, index)| *index);
            (names.join("."), index, Some(leaf))
        }
    };
    let mut occurrences: std::collections::HashMap<String, usize> = Default::default();
    let mut in_target = table_path.is_empty();
    let mut header_line = None;
    let mut fallback = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|rest| rest.split_once("]]"))
            .map(|(name, _)| name.trim())
        {
            let seen = occurrences.entry(name.to_string()).or_insert(0);
            in_target = name == table_path && table_index.is_none_or(|wanted| wanted == *seen);
            *seen += 1;
        } else if let Some(name) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .map(|(name, _)| name.trim())
        {
            in_target = name == table_path;
        } else if in_target {
            if let Some(key) = key {
                let head = trimmed.split('=').next().unwrap_or("").trim();
                if head == key {
                    return Some(number);
                }
                if fallback.is_none() && trimmed.contains(key) {
                    fallback = Some(number);
                }
            }
            continue;
        } else {
            continue;
        }
        if in_target && header_line.is_none() {
            header_line = Some(number);
            if key.is_none() {
                return header_line;
            }
        }
    }
    fallback.or(header_line)
}
