//! Finding things: the one id resolver every command uses (full ids and unique prefixes of at
//! least [`MIN_ID_PREFIX`] hex digits), case threads built from the `references` of status
//! replies, and the inbox/outbox filters with paging behind `InboxQuery` and `OutboxQuery`.

use std::collections::{BTreeMap, BTreeSet};

use quickfreeze_keys::{NodeId, Timestamp};
use quickfreeze_proto::core::{
    awaits_acknowledgement, InboxEntry, OutboxEntry, OutboxState, Store,
};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::MessageId;

use super::Daemon;
use crate::control::{
    ControlResponse, InboxRow, MessageQuery, OutboxRow, ThreadItem, DEFAULT_PAGE_ROWS,
};

/// Fewest hex digits of an id a command accepts.
pub(crate) const MIN_ID_PREFIX: usize = 6;

/// Most ids an ambiguous prefix error names.
const MAX_PREFIX_MATCHES: usize = 20;

/// Resolves `text` (a full 32-digit id or a unique prefix of at least [`MIN_ID_PREFIX`] hex
/// digits) against `known`, with an error that tells the officer what to do.
pub(crate) fn resolve_id(
    text: &str,
    known: impl IntoIterator<Item = MessageId>,
) -> Result<MessageId, String> {
    let wanted = text.trim().to_ascii_lowercase();
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{text}` is not a message id: give the id or its first {MIN_ID_PREFIX} or more hex digits"
        ));
    }
    if wanted.len() > 32 {
        return Err(format!(
            "`{text}` is longer than a message id (32 hex digits)"
        ));
    }
    if wanted.len() < MIN_ID_PREFIX {
        return Err(format!(
            "`{text}` is too short: give at least {MIN_ID_PREFIX} hex digits of the message id"
        ));
    }
    let matches: BTreeSet<MessageId> = known
        .into_iter()
        .filter(|id| id.to_string().starts_with(&wanted))
        .collect();
    match matches.len() {
        0 => Err(format!(
            "no message {wanted}{} in the outbox or inbox",
            if wanted.len() < 32 { "…" } else { "" }
        )),
        1 => Ok(*matches.iter().next().expect("one match")),
        _ => Err(format!(
            "ambiguous: `{wanted}` matches {}; give more digits",
            matches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub(crate) use crate::store::thread_root;

/// Whether `summary` holds every word of `words` (case-insensitive).
fn text_matches(summary: &str, words: &str) -> bool {
    let summary = summary.to_lowercase();
    words
        .split_whitespace()
        .all(|word| summary.contains(&word.to_lowercase()))
}

fn same(wanted: &Option<String>, value: &str) -> bool {
    wanted
        .as_deref()
        .is_none_or(|wanted| wanted.trim().eq_ignore_ascii_case(value))
}

fn in_window(query: &MessageQuery, at: Timestamp) -> bool {
    query.since_ms.is_none_or(|since| at.0 >= since)
        && query.until_ms.is_none_or(|until| at.0 < until)
}

/// One page of `rows` (already sorted), by `after` (an id or prefix of a row) or page number.
fn page<T>(
    rows: Vec<T>,
    query: &MessageQuery,
    id_of: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, usize, Option<String>), String> {
    let total = rows.len();
    let limit = if query.limit == 0 {
        DEFAULT_PAGE_ROWS
    } else {
        query.limit
    };
    let start = match &query.after {
        Some(after) => {
            let after = after.trim().to_ascii_lowercase();
            if after.len() < MIN_ID_PREFIX {
                return Err(format!(
                    "--after `{after}` is too short: give at least {MIN_ID_PREFIX} hex digits of a row's id"
                ));
            }
            let found: Vec<usize> = rows
                .iter()
                .enumerate()
                .filter(|(_, row)| id_of(row).starts_with(&after))
                .map(|(index, _)| index)
                .collect();
            match found.as_slice() {
                [index] => index + 1,
                [] => return Err(format!("--after `{after}`: no such row in this listing (it may no longer match the filter)")),
                _ => return Err(format!("--after `{after}` is ambiguous: give more digits")),
            }
        }
        None => query.page.max(1).saturating_sub(1).saturating_mul(limit),
    };
    let rows: Vec<T> = rows.into_iter().skip(start).collect();
    let more = rows.len() > limit;
    let rows: Vec<T> = rows.into_iter().take(limit).collect();
    let next_after = if more {
        rows.last().map(|row| id_of(row).to_string())
    } else {
        None
    };
    Ok((rows, total, next_after))
}

/// Everything this node holds, grouped into threads.
struct Threads {
    inbox: Vec<InboxEntry>,
    outbox: Vec<OutboxEntry>,
    /// Root → (inbox indexes, outbox indexes).
    members: BTreeMap<MessageId, (Vec<usize>, Vec<usize>)>,
}

impl Threads {
    fn build(inbox: Vec<InboxEntry>, outbox: Vec<OutboxEntry>) -> Threads {
        let mut members: BTreeMap<MessageId, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (index, entry) in inbox.iter().enumerate() {
            members
                .entry(thread_root(entry.message_id, &entry.payload))
                .or_default()
                .0
                .push(index);
        }
        for (index, entry) in outbox.iter().enumerate() {
            members
                .entry(thread_root(entry.message_id, &entry.payload))
                .or_default()
                .1
                .push(index);
        }
        Threads {
            inbox,
            outbox,
            members,
        }
    }

    fn size(&self, root: &MessageId) -> usize {
        self.members
            .get(root)
            .map_or(1, |(inbox, outbox)| inbox.len() + outbox.len())
    }

    fn root_is_inbound(&self, root: &MessageId) -> bool {
        self.members.get(root).is_some_and(|(inbox, _)| {
            inbox
                .iter()
                .any(|index| self.inbox[*index].message_id == *root)
        })
    }

    fn root_is_outbound(&self, root: &MessageId) -> bool {
        self.members.get(root).is_some_and(|(_, outbox)| {
            outbox
                .iter()
                .any(|index| self.outbox[*index].message_id == *root)
        })
    }
}

impl Daemon {
    /// The one resolver for every command that takes a message id: a full id, or a unique
    /// prefix of at least [`MIN_ID_PREFIX`] hex digits (the console's 8-digit ids work). A
    /// prefix is a range scan of the id-keyed trees, whatever the history.
    pub(super) fn resolve_message_id(&self, text: &str) -> Result<MessageId, String> {
        let trimmed = text.trim();
        if trimmed.len() == 32 {
            if let Ok(id) = trimmed.parse::<MessageId>() {
                return Ok(id);
            }
        }
        // The resolver's own checks (hex, length) first, so its errors stay the same.
        if let Err(message) = resolve_id(text, std::iter::empty()) {
            if !message.starts_with("no message") {
                return Err(message);
            }
        }
        let known = self
            .core
            .store()
            .indexes()
            .ids_with_prefix(trimmed, MAX_PREFIX_MATCHES)
            .map_err(|error| error.to_string())?;
        resolve_id(text, known)
    }

    fn threads(&self) -> Result<Threads, String> {
        let store = self.core.store();
        let inbox = store.inbox_entries().map_err(|error| error.to_string())?;
        let mut outbox = store.outbox_entries().map_err(|error| error.to_string())?;
        for entry in &mut outbox {
            self.overlay_live_state(entry);
        }
        Ok(Threads::build(inbox, outbox))
    }

    /// The thread `id` belongs to, oldest first.
    pub(super) fn thread_of(&self, id: &MessageId) -> Vec<ThreadItem> {
        // One range scan of the thread index, whatever the history.
        let store = self.core.store();
        let root = match store.indexes().inbox_by_id(id) {
            Ok(Some(entry)) => thread_root(entry.message_id, &entry.payload),
            _ => match store.get_outbox(id) {
                Ok(Some(entry)) => thread_root(entry.message_id, &entry.payload),
                _ => *id,
            },
        };
        let Ok((inbox, mut outbox)) = store.indexes().thread(&root) else {
            return Vec::new();
        };
        for entry in &mut outbox {
            self.overlay_live_state(entry);
        }
        let me = self.core.node_id();
        let mut items: Vec<(Timestamp, ThreadItem)> = Vec::new();
        for entry in &inbox {
            items.push((
                entry.received_at,
                ThreadItem {
                    message_id: entry.message_id.to_string(),
                    direction: "inbound".into(),
                    at: entry.received_at.to_rfc3339(),
                    signed_by: entry.sender.to_string(),
                    country: self.country(&entry.sender),
                    kind: entry.payload.kind().to_string(),
                    officer: officer_of(&entry.payload),
                    summary: entry.payload.summary(),
                    state: if entry.acknowledged_at.is_some() {
                        if awaits_acknowledgement(&entry.payload) {
                            "acknowledged"
                        } else {
                            "read"
                        }
                    } else {
                        "new"
                    }
                    .into(),
                },
            ));
        }
        for entry in &outbox {
            items.push((
                entry.created_at,
                ThreadItem {
                    message_id: entry.message_id.to_string(),
                    direction: "outbound".into(),
                    at: entry.created_at.to_rfc3339(),
                    signed_by: me.to_string(),
                    country: self.country(&me),
                    kind: entry.kind.to_string(),
                    officer: officer_of(&entry.payload),
                    summary: entry.summary.clone(),
                    state: entry.state.name().into(),
                },
            ));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.message_id.cmp(&b.1.message_id)));
        items.into_iter().map(|(_, item)| item).collect()
    }

    /// An unfiltered flat inbox page: overdue rows first (their number is bounded by the open
    /// items), then the rest newest first straight from the time index. Costs the page, not the
    /// history (a page number N reads N pages; `--after` seeks).
    fn inbox_flat_page(&self, now: Timestamp, query: &MessageQuery) -> ControlResponse {
        match self.inbox_flat_rows(now, query) {
            Ok((rows, total, next_after)) => ControlResponse::InboxPage {
                rows,
                total,
                next_after,
            },
            Err(message) => ControlResponse::Error { message },
        }
    }

    fn inbox_flat_rows(
        &self,
        now: Timestamp,
        query: &MessageQuery,
    ) -> Result<(Vec<InboxRow>, usize, Option<String>), String> {
        let indexes = self.core.store().indexes();
        let text = |error: quickfreeze_proto::core::StoreError| error.to_string();
        let limit = if query.limit == 0 {
            DEFAULT_PAGE_ROWS
        } else {
            query.limit
        };
        let overdue = self.tracker.by_message();
        let (entries, more) = flat_entries(
            query,
            limit,
            &overdue,
            |id| indexes.inbox_by_id(id).map_err(text),
            |prefix| {
                indexes
                    .ids_with_prefix(prefix, MAX_PREFIX_MATCHES)
                    .map_err(text)
            },
            |after, wanted, skip| indexes.inbox_newest(after, wanted, skip).map_err(text),
        )?;
        let rows: Vec<InboxRow> = entries
            .iter()
            .take(limit)
            .map(|entry| self.flat_inbox_row(now, entry, &overdue))
            .collect();
        let next_after = if more {
            rows.last().map(|row| row.message_id.clone())
        } else {
            None
        };
        let total = indexes.counts().map_err(text)?.inbox;
        Ok((
            rows,
            usize::try_from(total).unwrap_or(usize::MAX),
            next_after,
        ))
    }

    fn flat_inbox_row(
        &self,
        now: Timestamp,
        entry: &InboxEntry,
        overdue: &BTreeMap<MessageId, Vec<crate::deadlines::Clock>>,
    ) -> InboxRow {
        InboxRow {
            message_id: entry.message_id.to_string(),
            sender: entry.sender.to_string(),
            country: self.country(&entry.sender),
            kind: entry.payload.kind().to_string(),
            priority: entry.priority.to_string(),
            received_at: entry.received_at.to_rfc3339(),
            age_s: now.millis_since(entry.received_at) / 1000,
            acknowledged: entry.acknowledged_at.is_some(),
            summary: entry.payload.summary(),
            via_relay: entry.via_relay.map(|relay| relay.to_string()),
            overdue: overdue
                .get(&entry.message_id)
                .map(|clocks| clocks.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            thread: thread_root(entry.message_id, &entry.payload).to_string(),
            thread_messages: 1,
            latest: None,
            awaits_acknowledgement: awaits_acknowledgement(&entry.payload),
            conditions: entry.payload.handling().map(|handling| handling.marker()),
        }
    }

    /// As [`Self::inbox_flat_page`], for the outbox.
    fn outbox_flat_page(&self, now: Timestamp, query: &MessageQuery) -> ControlResponse {
        match self.outbox_flat_rows(now, query) {
            Ok((rows, total, next_after)) => ControlResponse::OutboxPage {
                rows,
                total,
                next_after,
            },
            Err(message) => ControlResponse::Error { message },
        }
    }

    fn outbox_flat_rows(
        &self,
        now: Timestamp,
        query: &MessageQuery,
    ) -> Result<(Vec<OutboxRow>, usize, Option<String>), String> {
        let store = self.core.store();
        let indexes = store.indexes();
        let text = |error: quickfreeze_proto::core::StoreError| error.to_string();
        let limit = if query.limit == 0 {
            DEFAULT_PAGE_ROWS
        } else {
            query.limit
        };
        let overdue = self.tracker.by_message();
        let (mut entries, more) = flat_entries(
            query,
            limit,
            &overdue,
            |id| store.get_outbox(id).map_err(text),
            |prefix| {
                indexes
                    .ids_with_prefix(prefix, MAX_PREFIX_MATCHES)
                    .map_err(text)
            },
            |after, wanted, skip| indexes.outbox_newest(after, wanted, skip).map_err(text),
        )?;
        let backoff: BTreeMap<NodeId, (u32, Timestamp)> = self
            .core
            .peer_backoff()
            .into_iter()
            .map(|(peer, failures, at)| (peer, (failures, at)))
            .collect();
        let rows: Vec<OutboxRow> = entries
            .iter_mut()
            .map(|entry| {
                self.overlay_live_state(entry);
                OutboxRow {
                    message_id: entry.message_id.to_string(),
                    recipient: entry.recipient.to_string(),
                    country: self.country(&entry.recipient),
                    kind: entry.kind.to_string(),
                    priority: entry.priority.to_string(),
                    state: entry.state.name().into(),
                    created_at: entry.created_at.to_rfc3339(),
                    age_s: now.millis_since(entry.created_at) / 1000,
                    attempts: entry.attempts,
                    summary: entry.summary.clone(),
                    last_error: entry.last_error.clone(),
                    latest_status: entry.status_history.last().map(|record| {
                        format!(
                            "{} (officer {})",
                            record.update.status, record.update.officer
                        )
                    }),
                    overdue: overdue
                        .get(&entry.message_id)
                        .map(|clocks| clocks.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    thread: thread_root(entry.message_id, &entry.payload).to_string(),
                    thread_messages: 1,
                    why: self.why_undelivered(entry, &backoff, now),
                }
            })
            .collect();
        let next_after = if more {
            rows.last().map(|row| row.message_id.clone())
        } else {
            None
        };
        let total = indexes.counts().map_err(text)?.outbox;
        Ok((
            rows,
            usize::try_from(total).unwrap_or(usize::MAX),
            next_after,
        ))
    }

    /// The latest message of a thread after its first, in words ("FR: preserved …").
    fn latest_in_thread(&self, threads: &Threads, root: &MessageId) -> Option<String> {
        let (inbox, outbox) = threads.members.get(root)?;
        let me = self.core.node_id();
        let inbound = inbox
            .iter()
            .map(|index| &threads.inbox[*index])
            .filter(|entry| entry.message_id != *root)
            .map(|entry| (entry.received_at, entry.sender, entry.payload.summary()));
        let outbound = outbox
            .iter()
            .map(|index| &threads.outbox[*index])
            .filter(|entry| entry.message_id != *root)
            .map(|entry| (entry.created_at, me, entry.summary.clone()));
        inbound
            .chain(outbound)
            .max_by_key(|(at, _, _)| *at)
            .map(|(_, from, summary)| format!("{}: {summary}", self.country(&from)))
    }

    /// `InboxQuery`: one row per thread with an inbound message (or per message when flat),
    /// filtered and paged.
    pub(super) fn inbox_query(&self, now: Timestamp, query: &MessageQuery) -> ControlResponse {
        if query.flat && unfiltered(query) {
            return self.inbox_flat_page(now, query);
        }
        let threads = match self.threads() {
            Ok(threads) => threads,
            Err(message) => return ControlResponse::Error { message },
        };
        let overdue = self.tracker.by_message();
        let mut rows: Vec<(bool, Timestamp, InboxRow)> = Vec::new();
        let mut seen_roots = BTreeSet::new();
        // Newest first, so a thread without an inbound root is represented by its latest reply.
        let mut order: Vec<usize> = (0..threads.inbox.len()).collect();
        order.sort_by_key(|index| std::cmp::Reverse(threads.inbox[*index].received_at));
        for index in order {
            let entry = &threads.inbox[index];
            let root = thread_root(entry.message_id, &entry.payload);
            let (shown, acknowledged) = if query.flat {
                (entry, entry.acknowledged_at.is_some())
            } else if threads.root_is_inbound(&root) {
                if entry.message_id != root {
                    continue;
                }
                (entry, entry.acknowledged_at.is_some())
            } else {
                if !seen_roots.insert(root) {
                    continue;
                }
                let all_read = threads.members.get(&root).is_none_or(|(inbox, _)| {
                    inbox
                        .iter()
                        .all(|index| threads.inbox[*index].acknowledged_at.is_some())
                });
                (entry, all_read)
            };
            let clocks: Vec<String> = overdue
                .get(&shown.message_id)
                .map(|clocks| clocks.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let row = InboxRow {
                message_id: shown.message_id.to_string(),
                sender: shown.sender.to_string(),
                country: self.country(&shown.sender),
                kind: shown.payload.kind().to_string(),
                priority: shown.priority.to_string(),
                received_at: shown.received_at.to_rfc3339(),
                age_s: now.millis_since(shown.received_at) / 1000,
                acknowledged,
                summary: shown.payload.summary(),
                via_relay: shown.via_relay.map(|relay| relay.to_string()),
                overdue: clocks,
                thread: root.to_string(),
                thread_messages: if query.flat { 1 } else { threads.size(&root) },
                latest: if query.flat {
                    None
                } else if threads.root_is_inbound(&root) {
                    self.latest_in_thread(&threads, &root)
                } else {
                    // The row is the latest inbound reply; say what it answers.
                    threads
                        .outbox
                        .iter()
                        .find(|entry| entry.message_id == root)
                        .map(|entry| format!("reply to your {}", entry.summary))
                },
                awaits_acknowledgement: awaits_acknowledgement(&shown.payload),
                conditions: shown.payload.handling().map(|handling| handling.marker()),
            };
            if !self.inbox_row_matches(query, shown, &row) {
                continue;
            }
            rows.push((row.overdue.is_empty(), shown.received_at, row));
        }
        rows.sort_by_key(|(not_overdue, at, _)| (*not_overdue, std::cmp::Reverse(*at)));
        let rows = rows.into_iter().map(|(_, _, row)| row).collect();
        match page(rows, query, |row: &InboxRow| row.message_id.as_str()) {
            Ok((rows, total, next_after)) => ControlResponse::InboxPage {
                rows,
                total,
                next_after,
            },
            Err(message) => ControlResponse::Error { message },
        }
    }

    fn inbox_row_matches(&self, query: &MessageQuery, entry: &InboxEntry, row: &InboxRow) -> bool {
        let state_ok = match query.state.as_deref().map(str::trim) {
            None => true,
            Some("new") => !row.acknowledged,
            Some("acknowledged" | "read") => row.acknowledged,
            Some("overdue") => !row.overdue.is_empty(),
            Some(_) => false,
        };
        state_ok
            && same(&query.country, &row.country)
            && same(&query.kind, &row.kind)
            && same(&query.priority, &row.priority)
            && query.case.as_deref().is_none_or(|case| {
                entry
                    .payload
                    .case_reference()
                    .is_some_and(|reference| reference.trim().eq_ignore_ascii_case(case.trim()))
            })
            && in_window(query, entry.received_at)
            && query
                .text
                .as_deref()
                .is_none_or(|words| text_matches(&row.summary, words))
    }

    /// `OutboxQuery`: one row per thread this node started (our replies to inbound requests are
    /// in those threads, shown by `inbox`), or per message when flat; filtered and paged.
    pub(super) fn outbox_query(&self, now: Timestamp, query: &MessageQuery) -> ControlResponse {
        if query.flat && unfiltered(query) {
            return self.outbox_flat_page(now, query);
        }
        let threads = match self.threads() {
            Ok(threads) => threads,
            Err(message) => return ControlResponse::Error { message },
        };
        let overdue = self.tracker.by_message();
        let backoff: BTreeMap<NodeId, (u32, Timestamp)> = self
            .core
            .peer_backoff()
            .into_iter()
            .map(|(peer, failures, at)| (peer, (failures, at)))
            .collect();
        let mut rows: Vec<(bool, Timestamp, OutboxRow)> = Vec::new();
        for entry in &threads.outbox {
            let root = thread_root(entry.message_id, &entry.payload);
            if !query.flat && root != entry.message_id && threads.root_is_inbound(&root) {
                continue;
            }
            let row = OutboxRow {
                message_id: entry.message_id.to_string(),
                recipient: entry.recipient.to_string(),
                country: self.country(&entry.recipient),
                kind: entry.kind.to_string(),
                priority: entry.priority.to_string(),
                state: entry.state.name().into(),
                created_at: entry.created_at.to_rfc3339(),
                age_s: now.millis_since(entry.created_at) / 1000,
                attempts: entry.attempts,
                summary: entry.summary.clone(),
                last_error: entry.last_error.clone(),
                latest_status: entry.status_history.last().map(|record| {
                    format!(
                        "{} (officer {})",
                        record.update.status, record.update.officer
                    )
                }),
                overdue: overdue
                    .get(&entry.message_id)
                    .map(|clocks| clocks.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                thread: root.to_string(),
                thread_messages: if query.flat || !threads.root_is_outbound(&root) {
                    1
                } else {
                    threads.size(&root)
                },
                why: self.why_undelivered(entry, &backoff, now),
            };
            if !self.outbox_row_matches(query, entry, &row) {
                continue;
            }
            rows.push((row.overdue.is_empty(), entry.created_at, row));
        }
        rows.sort_by_key(|(not_overdue, at, _)| (*not_overdue, std::cmp::Reverse(*at)));
        let rows = rows.into_iter().map(|(_, _, row)| row).collect();
        match page(rows, query, |row: &OutboxRow| row.message_id.as_str()) {
            Ok((rows, total, next_after)) => ControlResponse::OutboxPage {
                rows,
                total,
                next_after,
            },
            Err(message) => ControlResponse::Error { message },
        }
    }

    fn outbox_row_matches(
        &self,
        query: &MessageQuery,
        entry: &OutboxEntry,
        row: &OutboxRow,
    ) -> bool {
        let state_ok = match query.state.as_deref().map(str::trim) {
            None => true,
            Some("undelivered") => !matches!(entry.state, OutboxState::Delivered { .. }),
            Some("overdue") => !row.overdue.is_empty(),
            Some(state) => state == row.state,
        };
        state_ok
            && same(&query.country, &row.country)
            && same(&query.kind, &row.kind)
            && same(&query.priority, &row.priority)
            && query.case.as_deref().is_none_or(|case| {
                entry
                    .payload
                    .case_reference()
                    .is_some_and(|reference| reference.trim().eq_ignore_ascii_case(case.trim()))
            })
            && in_window(query, entry.created_at)
            && query
                .text
                .as_deref()
                .is_none_or(|words| text_matches(&row.summary, words))
    }

    /// Why an outgoing message has not reached its recipient, in words; None once delivered.
    fn why_undelivered(
        &self,
        entry: &OutboxEntry,
        backoff: &BTreeMap<NodeId, (u32, Timestamp)>,
        now: Timestamp,
    ) -> Option<String> {
        let cc = self.country(&entry.recipient);
        let tries = match entry.attempts {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        let error = entry
            .last_error
            .as_deref()
            .map(|error| format!("; last error: {error}"))
            .unwrap_or_default();
        let peer = if self.connected.contains(&entry.recipient) {
            format!("{cc} is connected now")
        } else {
            match backoff.get(&entry.recipient) {
                Some((failures, retry_at)) if *failures > 0 => format!(
                    "{cc} unreachable ({failures} failed tries in a row{})",
                    if *retry_at > now {
                        format!(", next try {}", retry_at.to_rfc3339())
                    } else {
                        String::new()
                    }
                ),
                _ => format!("{cc} not connected"),
            }
        };
        match &entry.state {
            OutboxState::Delivered { .. } => None,
            OutboxState::Accepted => Some(format!(
                "queued since {}, not transmitted yet; {peer}",
                entry.created_at.to_rfc3339()
            )),
            OutboxState::Sent => Some(format!(
                "not reached since {}: {tries}, {peer}{error}",
                entry.created_at.to_rfc3339()
            )),
            OutboxState::Custody { relay, at } => Some(format!(
                "at the relay {} ({relay}) since {}, not yet delivered to {cc}; {peer}",
                self.country(relay),
                at.to_rfc3339()
            )),
            OutboxState::Expired { at } => Some(format!(
                "expired undelivered at {} after {tries}{error}; use the phone",
                at.to_rfc3339()
            )),
            OutboxState::Rejected { reason, .. } => Some(format!("refused by {cc}: {reason}")),
        }
    }
}

/// A query with no filter: its rows come straight from the time indexes.
fn unfiltered(query: &MessageQuery) -> bool {
    query.case.is_none()
        && query.country.is_none()
        && query.kind.is_none()
        && query.priority.is_none()
        && query.state.is_none()
        && query.since_ms.is_none()
        && query.until_ms.is_none()
        && query.text.is_none()
}

/// A stored entry as a flat listing pages it: its id and the time it is ordered by.
trait FlatEntry {
    fn id(&self) -> MessageId;
    fn listed_at(&self) -> Timestamp;
}

impl FlatEntry for InboxEntry {
    fn id(&self) -> MessageId {
        self.message_id
    }
    fn listed_at(&self) -> Timestamp {
        self.received_at
    }
}

impl FlatEntry for OutboxEntry {
    fn id(&self) -> MessageId {
        self.message_id
    }
    fn listed_at(&self) -> Timestamp {
        self.created_at
    }
}

/// The entries of one flat page, and whether more follow: the overdue ones first (newest
/// first), then the rest newest first from the time index (`newest(after, wanted, skip)`, which
/// leaves out what `skip` says: the overdue ones, already shown), from where the page number or
/// `--after` says. Reads the page, not the history.
fn flat_entries<E: FlatEntry>(
    query: &MessageQuery,
    limit: usize,
    overdue: &BTreeMap<MessageId, Vec<crate::deadlines::Clock>>,
    get: impl Fn(&MessageId) -> Result<Option<E>, String>,
    prefix: impl FnOnce(&str) -> Result<Vec<MessageId>, String>,
    newest: impl FnOnce(Option<&E>, usize, &mut dyn FnMut(&MessageId) -> bool) -> Result<Vec<E>, String>,
) -> Result<(Vec<E>, bool), String> {
    let mut late = Vec::new();
    for id in overdue.keys() {
        if let Some(entry) = get(id)? {
            late.push(entry);
        }
    }
    late.sort_by_key(|entry| std::cmp::Reverse(entry.listed_at()));
    let start = flat_start(query, limit, &late, FlatEntry::id, prefix, &get)?;
    // The overdue rows to show (from the start or the cursor on), then how many of the
    // time-ordered rest to skip, or the entry the rest follows.
    let (mut entries, skip, after) = match start {
        Start::Overdue(index) => (late.split_off(index + 1), 0, None),
        Start::Skip(skip) => (late, skip, None),
        Start::After(after) => (Vec::new(), 0, Some(after)),
    };
    let wanted = skip
        .saturating_add(limit)
        .saturating_add(1)
        .saturating_sub(entries.len());
    let mut skip_late = |id: &MessageId| overdue.contains_key(id);
    entries.extend(newest(after.as_ref(), wanted, &mut skip_late)?);
    let mut entries: Vec<E> = entries.into_iter().skip(skip).collect();
    let more = entries.len() > limit;
    entries.truncate(limit);
    Ok((entries, more))
}

/// Where a flat page starts: within the overdue rows (shown first), or in the time index after
/// the given entry, or at the newest entry after skipping some.
enum Start<T> {
    Overdue(usize),
    After(T),
    Skip(usize),
}

/// Resolves `--after` for a flat page: first among the overdue rows (by `id_of`), then among
/// the ids the store knows (`lookup`). The errors match [`page`]'s.
fn flat_start<T, E>(
    query: &MessageQuery,
    limit: usize,
    overdue: &[T],
    id_of: impl Fn(&T) -> MessageId,
    candidates: impl FnOnce(&str) -> Result<Vec<MessageId>, String>,
    mut lookup: impl FnMut(&MessageId) -> Result<Option<E>, String>,
) -> Result<Start<E>, String> {
    let Some(after) = &query.after else {
        return Ok(Start::Skip(
            query.page.max(1).saturating_sub(1).saturating_mul(limit),
        ));
    };
    let after = after.trim().to_ascii_lowercase();
    if after.len() < MIN_ID_PREFIX {
        return Err(format!(
            "--after `{after}` is too short: give at least {MIN_ID_PREFIX} hex digits of a row's id"
        ));
    }
    if !after.chars().all(|c| c.is_ascii_hexdigit()) || after.len() > 32 {
        return Err(format!(
            "--after `{after}`: no such row in this listing (it may no longer match the filter)"
        ));
    }
    let mut found: Vec<Start<E>> = overdue
        .iter()
        .enumerate()
        .filter(|(_, row)| id_of(row).to_string().starts_with(&after))
        .map(|(index, _)| Start::Overdue(index))
        .collect();
    for id in candidates(&after)? {
        if overdue.iter().any(|row| id_of(row) == id) {
            continue;
        }
        if let Some(entry) = lookup(&id)? {
            found.push(Start::After(entry));
        }
    }
    match found.len() {
        1 => Ok(found.pop().expect("one")),
        0 => Err(format!(
            "--after `{after}`: no such row in this listing (it may no longer match the filter)"
        )),
        _ => Err(format!("--after `{after}` is ambiguous: give more digits")),
    }
}

/// The officer a payload names, if it names one.
fn officer_of(payload: &Payload) -> Option<String> {
    match payload {
        Payload::Status(update) => Some(update.officer.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: &str) -> MessageId {
        hex.parse().expect("id")
    }

    #[test]
    fn a_unique_prefix_resolves_and_a_full_id_too() {
        let a = id("0123456789abcdef0123456789abcdef");
        let b = id("0123ff6789abcdef0123456789abcdef");
        assert_eq!(resolve_id("012345", [a, b]), Ok(a));
        assert_eq!(resolve_id("0123FF67", [a, b]), Ok(b));
        assert_eq!(resolve_id(&a.to_string(), [a, b]), Ok(a));
    }

    #[test]
    fn an_ambiguous_prefix_names_every_match() {
        let a = id("abcdef00000000000000000000000000");
        let b = id("abcdef11111111111111111111111111");
        let error = resolve_id("abcdef", [a, b]).expect_err("ambiguous");
        assert!(error.starts_with("ambiguous"), "{error}");
        assert!(
            error.contains(&a.to_string()) && error.contains(&b.to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_short_or_wrong_id_gets_a_clear_error() {
        let a = id("abcdef00000000000000000000000000");
        let short = resolve_id("abcde", [a]).expect_err("too short");
        assert!(short.contains("at least 6 hex digits"), "{short}");
        let not_hex = resolve_id("xyz12345", [a]).expect_err("not hex");
        assert!(not_hex.contains("not a message id"), "{not_hex}");
        let missing = resolve_id("123456", [a]).expect_err("none");
        assert!(missing.contains("no message 123456"), "{missing}");
    }

    #[test]
    fn text_filter_needs_every_word() {
        assert!(text_matches(
            "[CASE-1] preserve 2 identifier(s): Fraud",
            "fraud case-1"
        ));
        assert!(!text_matches(
            "[CASE-1] preserve: fraud",
            "fraud ransomware"
        ));
    }

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let rows: Vec<String> = (0..7).map(|n| format!("{n:06}aa")).collect();
        let mut query = MessageQuery {
            limit: 3,
            ..MessageQuery::default()
        };
        let (first, total, next) = page(rows.clone(), &query, |row| row.as_str()).expect("page");
        assert_eq!((first.len(), total), (3, 7));
        query.after = next;
        let (second, _, next) = page(rows.clone(), &query, |row| row.as_str()).expect("page");
        assert_eq!(second, rows[3..6].to_vec());
        query.after = next;
        let (third, _, next) = page(rows.clone(), &query, |row| row.as_str()).expect("page");
        assert_eq!((third, next), (rows[6..].to_vec(), None));
        query.after = None;
        query.page = 2;
        let (by_number, _, _) = page(rows.clone(), &query, |row| row.as_str()).expect("page");
        assert_eq!(by_number, rows[3..6].to_vec());
    }
}
