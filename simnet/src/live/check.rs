//! The checks after the run, from the nodes' own sled stores: every accepted message delivered
//! exactly once or expired with the operator told, nothing forged accepted, relays blind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quickfreeze_keys::NodeId;
use quickfreeze_keys::Timestamp;
use quickfreeze_node::audit::{AuditKind, AuditLog, MAX_EXPORT_PAGE};
use quickfreeze_node::config::files;
use quickfreeze_node::store::{SledStore, StoreOptions};
use quickfreeze_node::testnet::Testnet;
use quickfreeze_proto::core::{OutboxState, Store};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::receipt::ReceiptKind;
use quickfreeze_proto::MessageId;

use super::report::{self, LiveReport};
use super::shared::{Kind, Shared, Submission};
use crate::sim::workload::MARKER_PREFIX;

/// The invariants, from the nodes' own stores (every node is stopped by now).
pub(super) fn check_stores(shared: &Shared, net: &Testnet, report: &mut LiveReport) {
    let options = StoreOptions {
        cache_capacity_bytes: 4 * 1024 * 1024,
        ..StoreOptions::default()
    };
    let submissions = shared
        .submissions
        .lock()
        .map(|submissions| submissions.clone())
        .unwrap_or_default();
    let deliveries = shared
        .deliveries
        .lock()
        .map(|deliveries| deliveries.clone())
        .unwrap_or_default();
    let index_of: BTreeMap<NodeId, usize> = shared
        .slots
        .iter()
        .enumerate()
        .map(|(index, slot)| (slot.node_id, index))
        .collect();
    let mut outboxes = Vec::new();
    let mut inboxes = Vec::new();
    // Per node: messages whose expiry its audit trail records (written in the same group
    // commit as the expiry itself, before the log line and the alert hook).
    let mut expiries: Vec<BTreeSet<MessageId>> = Vec::new();
    for (index, slot) in shared.slots.iter().enumerate() {
        let store = match SledStore::open(&slot.data_dir.join(files::STORE), &options) {
            Ok(store) => store,
            Err(error) => {
                report.violations.push(format!(
                    "node {index}: store does not open after the run: {error}"
                ));
                outboxes.push(Vec::new());
                inboxes.push(Vec::new());
                expiries.push(BTreeSet::new());
                continue;
            }
        };
        let outbox = store.outbox_entries().unwrap_or_default();
        let inbox = store.inbox_entries().unwrap_or_default();
        if slot.kind == Kind::Member {
            match recorded_expiries(&store) {
                Ok(ids) => expiries.push(ids),
                Err(error) => {
                    report.violations.push(format!(
                        "node {index}: audit trail unreadable after the run: {error}"
                    ));
                    expiries.push(BTreeSet::new());
                }
            }
        } else {
            expiries.push(BTreeSet::new());
        }
        if slot.kind == Kind::Relay {
            if !inbox.is_empty() || !outbox.is_empty() {
                report.violations.push(format!(
                    "relay {index} holds {} inbox and {} outbox entries",
                    inbox.len(),
                    outbox.len()
                ));
            }
            for entry in store.relay_entries().unwrap_or_default() {
                if entry
                    .envelope
                    .as_deref()
                    .is_some_and(|bytes| contains(bytes, MARKER_PREFIX.as_bytes()))
                {
                    report.violations.push(format!(
                        "relay {index} stores plaintext of {}",
                        entry.message_id
                    ));
                }
            }
            drop(store);
            if let Some(file) = file_with_marker(&slot.data_dir.join(files::STORE)) {
                report.violations.push(format!(
                    "relay {index}: {} contains the case-reference marker in clear",
                    file.display()
                ));
            }
        }
        outboxes.push(outbox);
        inboxes.push(inbox);
    }

    // Inbox side: exactly once, and only what the harness submitted.
    let by_id = shared
        .by_id
        .lock()
        .map(|by_id| by_id.clone())
        .unwrap_or_default();
    let mut inbox_count: BTreeMap<String, usize> = BTreeMap::new();
    let mut markers: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for submission in &submissions {
        if let Some(marker) = &submission.marker {
            markers.insert(marker, (submission.sender, submission.recipient));
        }
    }
    for (node, inbox) in inboxes.iter().enumerate() {
        for entry in inbox {
            *inbox_count.entry(entry.message_id.to_string()).or_default() += 1;
            if entry.via_relay.is_some() {
                report.delivered_via_relay += 1;
            }
            let sender = index_of.get(&entry.sender).copied();
            if let Payload::Status(update) = &entry.payload {
                // A status reply: about a request this node sent to the replying member.
                let about = by_id
                    .get(&update.references.to_string())
                    .map(|index| &submissions[*index]);
                if !about
                    .is_some_and(|about| Some(about.recipient) == sender && about.sender == node)
                {
                    report.violations.push(format!(
                        "node {node}: status {} from {} answers nothing this node sent it (forged?)",
                        entry.message_id, entry.sender
                    ));
                }
                continue;
            }
            match entry.payload.case_reference() {
                Some(marker) if markers.get(marker) == sender.map(|sender| (sender, node)).as_ref() => {}
                _ => report.violations.push(format!(
                    "node {node}: inbox entry {} from {} was never submitted by the harness (forged?)",
                    entry.message_id, entry.sender
                )),
            }
        }
    }
    for (id, count) in &inbox_count {
        if *count > 1 {
            report
                .violations
                .push(format!("message {id} is in {count} inboxes"));
        }
    }

    // Sender side: every accepted message delivered (receipt verified) or expired.
    let mut latencies = Vec::new();
    let mut first_submit = u64::MAX;
    let mut last_receipt = 0u64;
    let mut delivered_requests = 0usize;
    for submission in &submissions {
        if submission.failed.is_some() && submission.message_id.is_none() {
            report.not_accepted += 1;
            continue;
        }
        let Some(id) = &submission.message_id else {
            report.not_accepted += 1;
            continue;
        };
        if submission.ambiguous {
            report.ambiguous += 1;
        }
        report.accepted += 1;
        if submission.status_reply {
            report.status_replies += 1;
        }
        let entry = outboxes[submission.sender]
            .iter()
            .find(|entry| entry.message_id.to_string() == *id);
        let Some(entry) = entry else {
            report.undelivered += 1;
            report.violations.push(format!(
                "message {id} was accepted by node {} but is not in its outbox",
                submission.sender
            ));
            continue;
        };
        report.retries += u64::from(entry.attempts.saturating_sub(1));
        if entry.relay_attempts > 0 {
            report.relay_handoffs += 1;
        }
        match &entry.state {
            OutboxState::Delivered { .. } => {
                let recipient = shared.slots[submission.recipient].node_id;
                let receipt_ok = entry.delivery_receipt.as_ref().is_some_and(|receipt| {
                    receipt
                        .verify(&net.roster, receipt.body.received_at)
                        .is_ok()
                        && receipt.body.kind == ReceiptKind::Delivered
                        && receipt.body.signer == recipient
                        && receipt.body.message_id == entry.message_id
                        && receipt.body.envelope_digest == entry.digest
                });
                if !receipt_ok {
                    report
                        .violations
                        .push(format!("message {id}: delivery receipt missing or invalid"));
                }
                if inbox_count.get(id).copied().unwrap_or(0) != 1
                    || !inboxes[submission.recipient]
                        .iter()
                        .any(|inbox| inbox.message_id == entry.message_id)
                {
                    report.violations.push(format!(
                        "message {id}: receipted but not exactly once in node {}'s inbox",
                        submission.recipient
                    ));
                }
                report.delivered += 1;
                if !submission.status_reply {
                    delivered_requests += 1;
                    if let Some(at) = deliveries.get(id) {
                        if submission.submit_unix_us > 0 && *at >= submission.submit_unix_us {
                            latencies.push(at - submission.submit_unix_us);
                        }
                        first_submit = first_submit.min(submission.submit_unix_us);
                        last_receipt = last_receipt.max(*at);
                    }
                }
            }
            OutboxState::Expired { .. } => {
                // It may have reached the recipient before its receipt was lost (at most once:
                // the inbox check above); what matters here is that the operator was told.
                report.expired += 1;
                let recorded = expiries[submission.sender].contains(&entry.message_id);
                if recorded {
                    report.expired_reported += 1;
                }
                if let Some(violation) = unfinished(id, submission, &entry.state, recorded) {
                    report.violations.push(violation);
                }
            }
            other => {
                report.undelivered += 1;
                if let Some(violation) = unfinished(id, submission, other, false) {
                    report.violations.push(violation);
                }
            }
        }
    }
    report.latency = report::Latency::of(&latencies);
    report.histogram = report::histogram(&latencies);
    if last_receipt > first_submit {
        report.throughput_per_s =
            delivered_requests as f64 / ((last_receipt - first_submit) as f64 / 1e6);
    }
}

/// Why an accepted message's final state at its sender breaks "every message ends delivered, or
/// expired with the operator told"; `None` when it does not. A delivered message's receipt and
/// inbox entry are checked separately.
pub(super) fn unfinished(
    id: &str,
    submission: &Submission,
    state: &OutboxState,
    expiry_recorded: bool,
) -> Option<String> {
    match state {
        OutboxState::Delivered { .. } => None,
        OutboxState::Expired { .. } if expiry_recorded => None,
        OutboxState::Expired { .. } => Some(format!(
            "message {id} from node {} to node {} expired without an `expired` record in the sender's audit trail (the operator was never told)",
            submission.sender, submission.recipient
        )),
        other => Some(format!(
            "message {id} from node {} to node {} ended `{}`: neither delivered nor expired",
            submission.sender,
            submission.recipient,
            other.name()
        )),
    }
}

/// The message ids of every `expired` record in a node's audit trail.
pub(super) fn recorded_expiries(store: &SledStore) -> Result<BTreeSet<MessageId>, String> {
    let log = AuditLog::open(store).map_err(|error| error.to_string())?;
    let mut ids = BTreeSet::new();
    let mut after = None;
    loop {
        let (lines, next) = log
            .export_page(Timestamp(0), after, MAX_EXPORT_PAGE)
            .map_err(|error| error.to_string())?;
        for line in lines {
            if line.kind == AuditKind::Expired {
                if let Some(id) = line.message_id.and_then(|id| id.parse().ok()) {
                    ids.insert(id);
                }
            }
        }
        match next {
            Some(seq) => after = Some(seq),
            None => return Ok(ids),
        }
    }
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The first file under `dir` whose bytes contain the case-reference marker.
pub(super) fn file_with_marker(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = file_with_marker(&path) {
                return Some(found);
            }
        } else if std::fs::read(&path)
            .ok()
            .is_some_and(|bytes| contains(&bytes, MARKER_PREFIX.as_bytes()))
        {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> Submission {
        Submission {
            marker: None,
            sender: 1,
            recipient: 2,
            submit_unix_us: 0,
            message_id: Some("m".into()),
            status_reply: false,
            failed: None,
            ambiguous: false,
            attempts: 1,
            reply_attempts: 0,
        }
    }

    #[test]
    fn a_message_must_end_delivered_or_expired_with_the_operator_told() {
        let submission = submission();
        let delivered = OutboxState::Delivered { at: Timestamp(5) };
        let expired = OutboxState::Expired { at: Timestamp(5) };
        assert_eq!(unfinished("m", &submission, &delivered, false), None);
        assert_eq!(unfinished("m", &submission, &expired, true), None);
        // Expired, but nothing in the audit trail: the operator was never told.
        let silent = unfinished("m", &submission, &expired, false).expect("a violation");
        assert!(silent.contains("never told"), "{silent}");
        // Still under way at the end: neither delivered nor expired, whatever the audit says.
        for state in [OutboxState::Accepted, OutboxState::Sent] {
            let open = unfinished("m", &submission, &state, true).expect("a violation");
            assert!(open.contains("neither delivered nor expired"), "{open}");
        }
    }
}
