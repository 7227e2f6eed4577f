//! Drawing the console: a pure function of [`App`] onto a ratatui [`Frame`].
//!
//! Laid out for 80×24 first (an SSH session on a duty laptop): a header line, a node line (or the
//! red "not reachable" banner), the inbox and the outbox side by side, a status line and a line of
//! key hints. Larger terminals get wider summary columns; smaller ones get less, never a panic.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, List, ListItem, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::app::{
    clean, editor_height, short, App, Compose, ComposeStage, DetailView, Dialog, Link, Pane,
    ReplyForm, GROUNDS, STATUS_CHOICES,
};
use crate::control::{InboxRow, MessageDetail, OutboxRow};
use crate::text::age;
use quickfreeze_proto::form_view;
use quickfreeze_proto::forms::FormKind;
use quickfreeze_proto::i18n::Language;
use quickfreeze_proto::payload::Payload;

/// Colour of a priority: red for emergency, yellow for urgent.
pub fn priority_style(priority: &str) -> Style {
    match priority {
        "emergency" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        "urgent" => Style::new().fg(Color::Yellow),
        _ => Style::new(),
    }
}

fn priority_tag(priority: &str) -> &'static str {
    match priority {
        "emergency" => "EMR",
        "urgent" => "URG",
        _ => "rtn",
    }
}

fn kind_tag(kind: &str) -> &'static str {
    match kind {
        "preservation" => "pres",
        "traffic-data" => "traf",
        "emergency" => "emer",
        "status" => "stat",
        "free-text" => "text",
        _ => "?",
    }
}

/// Draws the whole console.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < 20 || area.height < 6 {
        frame.render_widget(
            Paragraph::new("terminal too small for the console").wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [header, node, body, notice, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, frame, header);
    render_node_line(app, frame, node);
    match &app.detail {
        Some(view) => render_detail(view, app.language, frame, body),
        None => render_lists(app, frame, body),
    }
    if let Some(item) = &app.notice {
        let style = if item.error {
            Style::new().fg(Color::White).bg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        frame.render_widget(Paragraph::new(item.text.as_str()).style(style), notice);
    }
    frame.render_widget(
        Paragraph::new(key_hints(app)).style(Style::new().add_modifier(Modifier::DIM)),
        keys,
    );
    match &app.dialog {
        Some(Dialog::Help) => render_help(frame, body),
        Some(Dialog::Reply(form)) => render_reply(form, frame, body),
        Some(Dialog::Compose(compose)) => render_compose(app, compose, frame, body),
        None => {}
    }
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(
        " quickfreeze ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if let Some(report) = &app.report {
        spans.push(Span::raw(format!(
            "│ {} {} │ {} peer{} up │ roster #{} ",
            clean(&report.country),
            clean(&report.role),
            report.connected_peers,
            if report.connected_peers == 1 { "" } else { "s" },
            report.roster_serial,
        )));
    }
    spans.push(Span::raw(format!("│ {}", clean(&app.officer))));
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().fg(Color::White).bg(Color::Blue)),
        area,
    );
}

fn render_node_line(app: &App, frame: &mut Frame, area: Rect) {
    let (text, style) = match &app.link {
        Link::Down(reason) => (
            format!(
                " NODE NOT REACHABLE, reconnecting every second: {}",
                clean(reason)
            ),
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        ),
        Link::Connecting => (" connecting to the node…".to_string(), Style::new()),
        Link::Up(_) => match &app.report {
            Some(crate::control::StatusReport {
                disk_low: Some(refusal),
                ..
            }) => (
                format!(" DISK LOW: {}", clean(refusal)),
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            ),
            Some(report) if report.roster_expires_soon => (
                format!(
                    " ROSTER EXPIRES {}: ask the roster authority for a new one",
                    clean(&report.roster_expires_at)
                ),
                Style::new().fg(Color::Black).bg(Color::Yellow),
            ),
            Some(report) => {
                let [emergency, urgent, routine] = report.outbox_pending;
                (
                    format!(
                        " inbox {} ({} not acknowledged) · outbox {} undelivered · key {}",
                        report.inbox_total,
                        report.inbox_unacknowledged,
                        emergency + urgent + routine,
                        clean(&report.fingerprint),
                    ),
                    Style::new(),
                )
            }
            None => (" waiting for the node's status…".to_string(), Style::new()),
        },
    };
    frame.render_widget(Paragraph::new(text).style(style), area);
}

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().add_modifier(Modifier::DIM)
    };
    Block::new()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        ))
}

fn render_lists(app: &App, frame: &mut Frame, area: Rect) {
    // The selected row in full underneath, where the columns had to cut it short.
    let preview_height = if area.height >= 12 { 4 } else { 0 };
    let [area, preview] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(preview_height)]).areas(area);
    if preview_height > 0 {
        render_preview(app, frame, preview);
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    // Only requests wait for an acknowledgement; status replies are merely unread.
    let unacknowledged = app
        .inbox
        .iter()
        .filter(|row| row.awaits_acknowledgement && !row.acknowledged)
        .count();
    let inbox_overdue = app
        .inbox
        .iter()
        .filter(|row| !row.overdue.is_empty())
        .count();
    let inbox_title = if inbox_overdue > 0 {
        format!(
            " Inbox {} ({unacknowledged} new, {inbox_overdue} DUE) ",
            app.inbox.len()
        )
    } else {
        format!(" Inbox {} ({unacknowledged} new) ", app.inbox.len())
    };
    let open = app
        .outbox
        .iter()
        .filter(|row| matches!(row.state.as_str(), "accepted" | "sent" | "custody"))
        .count();
    let outbox_overdue = app
        .outbox
        .iter()
        .filter(|row| !row.overdue.is_empty())
        .count();
    let outbox_title = if outbox_overdue > 0 {
        format!(
            " Outbox {} ({open} in transit, {outbox_overdue} late) ",
            app.outbox.len()
        )
    } else {
        format!(" Outbox {} ({open} in transit) ", app.outbox.len())
    };
    render_table(
        frame,
        left,
        pane_block(inbox_title, app.focus == Pane::Inbox),
        ["pri", "cc", "kind", "age", "ack", "summary"],
        [3, 2, 4, 5, 3],
        app.inbox.iter().map(inbox_row).collect(),
        (app.focus == Pane::Inbox).then_some(app.inbox_selection.index),
        "no messages received",
    );
    render_table(
        frame,
        right,
        pane_block(outbox_title, app.focus == Pane::Outbox),
        ["pri", "cc", "state", "age", "last status / summary"],
        [3, 2, 9, 5],
        app.outbox.iter().map(outbox_row).collect(),
        (app.focus == Pane::Outbox).then_some(app.outbox_selection.index),
        "nothing sent",
    );
}

#[allow(clippy::too_many_arguments)]
fn render_table<const N: usize, const W: usize>(
    frame: &mut Frame,
    area: Rect,
    block: Block<'static>,
    titles: [&'static str; N],
    widths: [u16; W],
    rows: Vec<Row<'static>>,
    selected: Option<usize>,
    empty: &'static str,
) {
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                empty,
                Style::new().add_modifier(Modifier::DIM),
            ))
            .block(block),
            area,
        );
        return;
    }
    let mut constraints: Vec<Constraint> = widths.iter().map(|w| Constraint::Length(*w)).collect();
    constraints.push(Constraint::Fill(1));
    let header = Row::new(titles.map(Cell::from))
        .style(Style::new().add_modifier(Modifier::UNDERLINED | Modifier::DIM));
    let table = Table::new(rows, constraints)
        .header(header)
        .column_spacing(1)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ratatui::widgets::TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_preview(app: &App, frame: &mut Frame, area: Rect) {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let (title, style, lines) = match app.focus {
        Pane::Inbox => match app.inbox.get(app.inbox_selection.index) {
            Some(row) => (
                format!(
                    " {} · {} from {} ",
                    row.priority.to_uppercase(),
                    row.kind,
                    clean(&row.country)
                ),
                priority_style(&row.priority),
                vec![
                    Line::from(clean(&row.summary)),
                    Line::from(Span::styled(
                        format!(
                            "received {}{} · {} · {}",
                            clean(&row.received_at),
                            row.via_relay
                                .as_deref()
                                .map(|relay| format!(" via relay {}", short(&clean(relay))))
                                .unwrap_or_default(),
                            if row.acknowledged {
                                "acknowledged"
                            } else {
                                "NOT acknowledged: a acknowledges"
                            },
                            short(&row.message_id)
                        ),
                        dim,
                    )),
                ],
            ),
            None => (String::new(), Style::new(), Vec::new()),
        },
        Pane::Outbox => match app.outbox.get(app.outbox_selection.index) {
            Some(row) => {
                let mut lines = vec![Line::from(clean(&row.summary))];
                let status = row
                    .latest_status
                    .as_deref()
                    .map(|status| format!("status: {}", clean(status)))
                    .or_else(|| {
                        row.last_error
                            .as_deref()
                            .map(|error| format!("last try: {}", clean(error)))
                    });
                lines.push(Line::from(Span::styled(
                    format!(
                        "{} · sent {} · {} attempt(s) · {}",
                        clean(&row.state),
                        clean(&row.created_at),
                        row.attempts,
                        short(&row.message_id)
                    ),
                    dim,
                )));
                if let Some(status) = status {
                    lines.insert(1, Line::from(status));
                }
                (
                    format!(
                        " {} · {} to {} ",
                        row.priority.to_uppercase(),
                        row.kind,
                        clean(&row.country)
                    ),
                    priority_style(&row.priority),
                    lines,
                )
            }
            None => (String::new(), Style::new(), Vec::new()),
        },
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(dim)
        .title(Span::styled(title, style));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn inbox_row(row: &InboxRow) -> Row<'static> {
    let mut style = priority_style(&row.priority);
    if !row.acknowledged {
        style = style.add_modifier(Modifier::BOLD);
    }
    Row::new([
        Cell::from(priority_tag(&row.priority)),
        Cell::from(clean(&row.country)),
        Cell::from(kind_tag(&row.kind)),
        Cell::from(format!("{:>5}", age(row.age_s))),
        Cell::from(if !row.overdue.is_empty() {
            "DUE"
        } else if row.acknowledged {
            "ack"
        } else {
            "NEW"
        }),
        Cell::from(clean(&row.summary)),
    ])
    .style(style)
}

fn outbox_row(row: &OutboxRow) -> Row<'static> {
    let mut style = priority_style(&row.priority);
    if matches!(row.state.as_str(), "expired" | "rejected") {
        style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
    }
    let text = match &row.latest_status {
        Some(status) => status.clone(),
        None => row.summary.clone(),
    };
    Row::new([
        Cell::from(priority_tag(&row.priority)),
        Cell::from(clean(&row.country)),
        Cell::from(if row.overdue.is_empty() {
            clean(&row.state)
        } else {
            format!("!{}", clean(&row.state))
        }),
        Cell::from(format!("{:>5}", age(row.age_s))),
        Cell::from(clean(&text)),
    ])
    .style(style)
}

/// Width the content of an opened message is laid out for: the body of an 80-column terminal
/// less its frame.
const CONTENT_WIDTH: usize = 78;

/// The lines of an opened message: who, state, receipts, status history, then the content as a
/// labelled form in `language` (see `quickfreeze_proto::form_view`).
pub fn detail_lines(detail: &MessageDetail, language: Language) -> Vec<Line<'static>> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let label = |name: &str| Span::styled(format!("{name:<10}"), bold);
    let mut lines = Vec::new();
    if let Some(handling) = detail.payload.as_ref().and_then(Payload::handling) {
        let style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
        for line in handling.render_box(74) {
            lines.push(Line::from(Span::styled(clean(&line), style)));
        }
    }
    let (from_to, direction) = if detail.direction == "outbound" {
        ("to", "sent")
    } else {
        ("from", "received")
    };
    lines.push(Line::from(vec![
        label("message"),
        Span::raw(format!("{} ({direction})", clean(&detail.message_id))),
    ]));
    lines.push(Line::from(vec![
        label(from_to),
        Span::raw(format!(
            "{} ({})",
            clean(&detail.country),
            clean(&detail.peer)
        )),
    ]));
    lines.push(Line::from(vec![
        label("priority"),
        Span::styled(clean(&detail.priority), priority_style(&detail.priority)),
    ]));
    lines.push(Line::from(vec![
        label("state"),
        Span::raw(clean(&detail.state)),
    ]));
    if let Some(error) = &detail.last_error {
        lines.push(Line::from(vec![
            label("last try"),
            Span::styled(clean(error), Style::new().fg(Color::Red)),
        ]));
    }
    lines.push(Line::from(Span::styled("receipts", bold)));
    if detail.receipts.is_empty() {
        lines.push(Line::from("  none yet"));
    }
    for receipt in &detail.receipts {
        let verified = if receipt.verified {
            Span::styled("signature verified", Style::new().fg(Color::Green))
        } else {
            Span::styled(
                "SIGNATURE DOES NOT VERIFY",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )
        };
        lines.push(Line::from(vec![
            Span::raw(format!(
                "  {} by {} at {}, ",
                clean(&receipt.kind),
                clean(&receipt.signer_country),
                clean(&receipt.received_at)
            )),
            verified,
        ]));
        lines.push(Line::from(format!(
            "    envelope sha256 {}",
            clean(&receipt.envelope_digest)
        )));
    }
    if !detail.status_history.is_empty() {
        lines.push(Line::from(Span::styled("status history", bold)));
        for status in &detail.status_history {
            lines.push(Line::from(format!(
                "  {}  {}  by {}",
                clean(&status.received_at),
                clean(&status.status.to_string()),
                clean(&status.officer)
            )));
            if !status.note.is_empty() {
                lines.push(Line::from(format!("    note: {}", clean(&status.note))));
            }
        }
    }
    if !detail.replies.is_empty() {
        lines.push(Line::from(vec![
            Span::styled("replies sent ", bold),
            Span::raw(
                detail
                    .replies
                    .iter()
                    .map(|id| clean(id))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ]));
    }
    if detail.thread.len() > 1 {
        lines.push(Line::from(Span::styled(
            format!("thread ({} messages, oldest first)", detail.thread.len()),
            bold,
        )));
        for item in &detail.thread {
            let officer = item
                .officer
                .as_deref()
                .map(|officer| format!(" · {}", clean(officer)))
                .unwrap_or_default();
            lines.push(Line::from(format!(
                "  {} {} {} {} · {}{officer}",
                clean(&item.at),
                if item.direction == "outbound" {
                    "→"
                } else {
                    "←"
                },
                clean(&item.country),
                short(&item.message_id),
                clean(&item.state),
            )));
            lines.push(Line::from(format!("    {}", clean(&item.summary))));
        }
    }
    let attachments = detail
        .payload
        .as_ref()
        .map(crate::cli::payload_attachments)
        .unwrap_or_default();
    if !attachments.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("attachments ({}; s saves them)", attachments.len()),
            bold,
        )));
        for (index, attachment) in attachments.iter().enumerate() {
            lines.push(Line::from(format!(
                "  {}. {}  {}  {} bytes",
                index + 1,
                clean(&attachment.name),
                clean(&attachment.media_type),
                attachment.bytes.len()
            )));
        }
    }
    match &detail.payload {
        Some(payload) => {
            let view = form_view::render(payload, language);
            let text = view.to_text(CONTENT_WIDTH);
            let mut text_lines = text.lines();
            // Title and section titles in bold, rows as they are.
            if let Some(title) = text_lines.next() {
                lines.push(Line::from(Span::styled(clean(title), bold)));
            }
            for line in text_lines {
                if line.is_empty() || line.starts_with(' ') {
                    lines.push(Line::from(clean(line)));
                } else {
                    lines.push(Line::from(Span::styled(clean(line), bold)));
                }
            }
        }
        None => {
            lines.push(Line::from(Span::styled("content", bold)));
            lines.push(Line::from("  (not stored)"));
        }
    }
    lines
}

fn render_detail(view: &DetailView, language: Language, frame: &mut Frame, area: Rect) {
    let Some(detail) = view.detail.as_deref() else {
        let block = pane_block(format!(" {} ", short(&view.message_id)), true);
        frame.render_widget(Paragraph::new("loading…").block(block), area);
        return;
    };
    let emergency = detail.priority == "emergency";
    let mut block = pane_block(
        format!(
            " {} {} {} ",
            if detail.direction == "outbound" {
                "to"
            } else {
                "from"
            },
            clean(&detail.country),
            short(&detail.message_id)
        ),
        true,
    );
    if emergency {
        block = block.border_style(Style::new().fg(Color::Red));
    }
    let paragraph = Paragraph::new(detail_lines(detail, language)).wrap(Wrap { trim: false });
    let inner = block.inner(area);
    let scroll = view.scroll.min(max_scroll(&paragraph, inner));
    frame.render_widget(paragraph.block(block).scroll((scroll, 0)), area);
}

fn max_scroll(paragraph: &Paragraph, inner: Rect) -> u16 {
    let total = paragraph.line_count(inner.width);
    u16::try_from(total.saturating_sub(usize::from(inner.height))).unwrap_or(u16::MAX)
}

/// How far the opened message can scroll in a terminal of `size`: the last line at the bottom.
pub fn detail_max_scroll(detail: &MessageDetail, size: (u16, u16), language: Language) -> u16 {
    // The body is the terminal less four lines, less the frame.
    let inner = Rect::new(0, 0, size.0.saturating_sub(2), size.1.saturating_sub(6));
    max_scroll(
        &Paragraph::new(detail_lines(detail, language)).wrap(Wrap { trim: false }),
        inner,
    )
}

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// Key bindings, for the help window and the README.
pub const HELP: [(&str, &str); 17] = [
    ("Tab ←/→", "switch between inbox and outbox"),
    ("↑/↓ j/k", "move; PgUp/PgDn, Home/End"),
    ("Enter", "open the message: content, receipts, status"),
    ("a", "acknowledge a request (status: mark read)"),
    ("/", "search; Enter applies, Esc clears"),
    ("r", "reply with a status"),
    ("n", "new request from a template"),
    ("u / F5", "refresh now (it refreshes every second)"),
    ("Esc / q", "close the message or dialog"),
    ("?", "this help"),
    ("q", "quit (from the lists); Ctrl+C anywhere"),
    ("", ""),
    ("compose", "type in the form; errors show below,"),
    ("", "`!` marks their lines; Ctrl+E jumps there"),
    ("Ctrl+S", "send (only when the form is valid)"),
    ("Esc Esc", "discard the draft"),
    ("reply", "↑/↓ status, Enter; Tab field, Enter sends"),
];

fn render_help(frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{key:<9}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    let rect = popup(area, 60, HELP.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        rect,
    );
}

fn render_reply(form: &ReplyForm, frame: &mut Frame, area: Rect) {
    let title = format!(
        " reply to {} {} ",
        clean(&form.country),
        short(&form.message_id)
    );
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(Color::Cyan))
        .title(title);
    match &form.fields {
        None => {
            let rect = popup(area, 50, STATUS_CHOICES.len() as u16 + 3);
            frame.render_widget(Clear, rect);
            let items: Vec<ListItem> = STATUS_CHOICES
                .iter()
                .enumerate()
                .map(|(index, (_, label))| {
                    let style = if index == form.choice {
                        Style::new().add_modifier(Modifier::REVERSED)
                    } else {
                        Style::new()
                    };
                    ListItem::new(format!("{} {label}", index + 1)).style(style)
                })
                .collect();
            let [list, hint] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)])
                .areas(block.inner(rect));
            frame.render_widget(block, rect);
            frame.render_widget(List::new(items), list);
            frame.render_widget(
                Paragraph::new("↑/↓ or 1-7, Enter picks, Esc cancels")
                    .style(Style::new().add_modifier(Modifier::DIM)),
                hint,
            );
        }
        Some(fields) => {
            let errors = fields.iter().filter(|f| f.error.is_some()).count() as u16;
            let rect = popup(area, 70, fields.len() as u16 * 2 + errors * 2 + 4);
            frame.render_widget(Clear, rect);
            let mut lines = vec![Line::from(Span::styled(
                format!("status: {}", STATUS_CHOICES[form.choice].1),
                Style::new().add_modifier(Modifier::BOLD),
            ))];
            for (index, field) in fields.iter().enumerate() {
                let focused = index == form.focus;
                let marker = if focused { "▶ " } else { "  " };
                lines.push(Line::from(format!("{marker}{}:", field.label)));
                let value = match field.ground {
                    Some(ground) => format!("< {} >", GROUNDS[ground.min(GROUNDS.len() - 1)]),
                    None => clean(&field.value),
                };
                let style = if focused {
                    Style::new().add_modifier(Modifier::REVERSED)
                } else {
                    Style::new().add_modifier(Modifier::UNDERLINED)
                };
                lines.push(Line::from(vec![
                    Span::raw("    "),
                    Span::styled(format!("{value} "), style),
                ]));
                if let Some(error) = &field.error {
                    lines.push(Line::from(Span::styled(
                        format!("    ✗ {}", clean(error)),
                        Style::new().fg(Color::Red),
                    )));
                }
            }
            lines.push(Line::from(Span::styled(
                "Tab next field · Enter sends · Esc back",
                Style::new().add_modifier(Modifier::DIM),
            )));
            frame.render_widget(
                Paragraph::new(lines)
                    .block(block)
                    .wrap(Wrap { trim: false }),
                rect,
            );
        }
    }
}

fn render_compose(app: &App, compose: &Compose, frame: &mut Frame, area: Rect) {
    match &compose.stage {
        ComposeStage::Kind(selected) => {
            let items: Vec<ListItem> = FormKind::ALL
                .iter()
                .enumerate()
                .map(|(index, kind)| {
                    let style = if index == *selected {
                        Style::new().add_modifier(Modifier::REVERSED)
                    } else {
                        Style::new()
                    };
                    ListItem::new(kind.as_str()).style(style)
                })
                .collect();
            let rect = popup(area, 40, FormKind::ALL.len() as u16 + 2);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                List::new(items).block(
                    Block::new()
                        .borders(Borders::ALL)
                        .title(" new request: which form? "),
                ),
                rect,
            );
        }
        ComposeStage::Recipient(selected) => {
            let recipients = app.recipients();
            let mut items: Vec<ListItem> = recipients
                .iter()
                .enumerate()
                .map(|(index, peer)| {
                    let style = if index == *selected {
                        Style::new().add_modifier(Modifier::REVERSED)
                    } else {
                        Style::new()
                    };
                    ListItem::new(format!(
                        "{} {} {}",
                        clean(&peer.country),
                        if peer.connected { "●" } else { "○" },
                        clean(&peer.authority_name)
                    ))
                    .style(style)
                })
                .collect();
            if items.is_empty() {
                items.push(ListItem::new("waiting for the roster…"));
            }
            let height = (items.len() as u16 + 2).min(area.height);
            let rect = popup(area, 60, height);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                List::new(items).block(
                    Block::new()
                        .borders(Borders::ALL)
                        .title(format!(" {} to whom? (● connected) ", compose.kind)),
                ),
                rect,
            );
        }
        ComposeStage::Edit => render_editor(app, compose, frame, area),
    }
}

fn render_editor(app: &App, compose: &Compose, frame: &mut Frame, area: Rect) {
    frame.render_widget(Clear, area);
    let state = if compose.sending {
        "sending…".to_string()
    } else if compose.payload.is_some() {
        "valid: Ctrl+S sends".to_string()
    } else {
        format!("{} problem(s)", compose.problems.len())
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(Color::Cyan))
        .title(format!(
            " {} to {} · line {} · {state} ",
            compose.kind,
            clean(&compose.recipient),
            compose.editor.row() + 1
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = editor_height(app.size.1).min(usize::from(inner.height.saturating_sub(1)));
    let [text_area, problems_area] =
        Layout::vertical([Constraint::Length(height as u16), Constraint::Min(0)]).areas(inner);
    let problem_lines: std::collections::HashSet<usize> =
        compose.problems.iter().filter_map(|p| p.line).collect();
    let gutter = 5u16;
    let text_width = usize::from(text_area.width.saturating_sub(gutter)).max(1);
    let editor = &compose.editor;
    let left = editor.col().saturating_sub(text_width - 1);
    let lines: Vec<Line> = editor
        .lines()
        .iter()
        .enumerate()
        .skip(editor.top())
        .take(height)
        .map(|(number, text)| {
            let marked = problem_lines.contains(&number);
            let gutter_text = format!("{:>3}{} ", number + 1, if marked { "!" } else { " " });
            let gutter_style = if marked {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::new().add_modifier(Modifier::DIM)
            };
            let visible: String = text.chars().skip(left).take(text_width).collect();
            let text_style = if text.trim_start().starts_with('#') {
                Style::new().fg(Color::DarkGray)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(gutter_text, gutter_style),
                Span::styled(visible, text_style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), text_area);
    // The cursor, where the terminal supports showing it.
    let cursor_line = &editor.lines()[editor.row().min(editor.lines().len() - 1)];
    let before: String = cursor_line
        .chars()
        .skip(left)
        .take(editor.col().saturating_sub(left))
        .collect();
    let x = text_area.x + gutter + Span::raw(before).width() as u16;
    let y = text_area.y + (editor.row().saturating_sub(editor.top())) as u16;
    if x < text_area.right() && y < text_area.bottom() && !compose.sending {
        frame.set_cursor_position((x, y));
    }
    // Problems: the one on the cursor's line first.
    let mut problems: Vec<&super::app::Problem> = compose.problems.iter().collect();
    problems.sort_by_key(|p| (p.line != Some(editor.row()), p.line.unwrap_or(usize::MAX)));
    let mut lines = vec![Line::from(Span::styled(
        if compose.confirm_discard {
            "Esc again discards this draft; any other key keeps it".to_string()
        } else if problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("problems ({}), Ctrl+E jumps to the first:", problems.len())
        },
        Style::new().add_modifier(Modifier::UNDERLINED).fg(
            if problems.is_empty() && !compose.confirm_discard {
                Color::Green
            } else {
                Color::Red
            },
        ),
    ))];
    for problem in problems {
        let at = problem
            .line
            .map(|line| format!("{:>3}! ", line + 1))
            .unwrap_or_else(|| "     ".into());
        lines.push(Line::from(vec![
            Span::styled(at, Style::new().fg(Color::Red)),
            Span::raw(problem.text.replace('\n', " ")),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), problems_area);
}

fn key_hints(app: &App) -> String {
    match &app.dialog {
        Some(Dialog::Help) => " any key closes the help".into(),
        Some(Dialog::Reply(form)) if form.fields.is_none() => {
            " ↑/↓ pick a status · Enter choose · Esc cancel".into()
        }
        Some(Dialog::Reply(_)) => " Tab next field · ←/→ ground · Enter send · Esc back".into(),
        Some(Dialog::Compose(compose)) => match compose.stage {
            ComposeStage::Edit => {
                " Ctrl+S send · Ctrl+E first problem · Esc discard · arrows/PgUp/PgDn move".into()
            }
            _ => " ↑/↓ choose · Enter next · Esc back".into(),
        },
        None if app.detail.is_some() => {
            " ↑/↓ scroll · a ack · r reply · s save files · Esc back · ? help".into()
        }
        None => " Tab pane · Enter open · a ack · r reply · n new · ? help · q quit".into(),
    }
}
