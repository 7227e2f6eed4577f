//! The console's read-only views of the node: inbox, outbox, one message, peers, status, the
//! Prometheus snapshot and the load-test metrics.

use std::collections::BTreeMap;
use std::path::Path;

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{NodeId, Timestamp};
use quickfreeze_proto::core::{OutboxState, Store};
use quickfreeze_proto::receipt::{Receipt, ReceiptKind};
use quickfreeze_proto::MessageId;

use super::Daemon;
use crate::config::files;
use crate::control::{
    ControlResponse, MessageDetail, Metrics, PeerRow, ReceiptView, StatusReport, StatusView,
};

/// `to - from` in whole seconds, negative when `to` is earlier.
fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    let seconds = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    if to >= from {
        seconds(to.millis_since(from))
    } else {
        -seconds(from.millis_since(to))
    }
}

/// Seconds since the node's key file was last modified (written by `init` or a rotation).
pub(crate) fn key_file_age_s(data_dir: &Path) -> Option<u64> {
    let modified = std::fs::metadata(data_dir.join(files::KEY))
        .and_then(|metadata| metadata.modified())
        .ok()?;
    Some(
        std::time::SystemTime::now()
            .duration_since(modified)
            .map_or(0, |age| age.as_secs()),
    )
}

impl Daemon {
    pub(super) fn metrics_report(&mut self, reset: bool) -> ControlResponse {
        let mut samples: Vec<u64> = self.latencies_us.iter().copied().collect();
        samples.sort_unstable();
        let percentile = |p: usize| -> u64 {
            if samples.is_empty() {
                0
            } else {
                samples[((samples.len() - 1) * p) / 100]
            }
        };
        let stats = self.core.store().stats();
        let mut metrics = self.metrics.clone();
        metrics.latency_p50_us = percentile(50);
        metrics.latency_p90_us = percentile(90);
        metrics.latency_p99_us = percentile(99);
        metrics.latency_max_us = samples.last().copied().unwrap_or(0);
        metrics.latency_samples = samples.len() as u64;
        metrics.store_flushes = stats.flushes;
        metrics.store_flush_micros = stats.flush_micros_total;
        if reset {
            self.metrics = Metrics::default();
            self.latencies_us.clear();
        }
        ControlResponse::Metrics { metrics }
    }

    /// The other node and the envelope digest of a message, from the outbox or the inbox.
    pub(super) fn message_facts(
        &self,
        id: &MessageId,
    ) -> (Option<NodeId>, Option<quickfreeze_keys::Digest32>) {
        let store = self.core.store();
        if let Ok(Some(entry)) = store.get_outbox(id) {
            return (Some(entry.recipient), Some(entry.digest));
        }
        match store.find_message(id) {
            Ok(Some(crate::store::Found::Inbox(entry))) => (Some(entry.sender), Some(entry.digest)),
            _ => (None, None),
        }
    }

    pub(super) fn country(&self, node: &NodeId) -> String {
        self.core
            .roster()
            .member(node)
            .map_or_else(|| "??".to_string(), |member| member.country.to_string())
    }

    fn receipt_view(&self, receipt: &Receipt) -> ReceiptView {
        ReceiptView {
            kind: match receipt.body.kind {
                ReceiptKind::Delivered => "delivered".into(),
                ReceiptKind::Custody => "custody".into(),
            },
            signer: receipt.body.signer.to_string(),
            signer_country: self.country(&receipt.body.signer),
            received_at: receipt.body.received_at.to_rfc3339(),
            envelope_digest: receipt.body.envelope_digest.to_string(),
            verified: receipt.verify(self.core.roster(), Timestamp::now()).is_ok(),
        }
    }

    pub(super) fn delivered_response(&self, message_id: &MessageId) -> ControlResponse {
        let mut stored = self.core.store().get_outbox(message_id);
        if let Ok(Some(entry)) = &mut stored {
            self.overlay_live_state(entry);
        }
        match stored {
            Ok(Some(entry)) => match (&entry.state, &entry.delivery_receipt) {
                (OutboxState::Delivered { .. }, Some(receipt)) => ControlResponse::Delivered {
                    message_id: message_id.to_string(),
                    receipt: self.receipt_view(receipt),
                    latency_ms: receipt.body.received_at.millis_since(entry.created_at),
                },
                (state, _) => ControlResponse::NotYetDelivered {
                    message_id: message_id.to_string(),
                    state: state.name().into(),
                },
            },
            Ok(None) => ControlResponse::Error {
                message: format!("no message {message_id} in the outbox"),
            },
            Err(error) => ControlResponse::Error {
                message: error.to_string(),
            },
        }
    }

    /// `Inbox { limit }`, the flat listing older clients ask for: the same rows as an unfiltered
    /// flat query (one builder for every inbox listing), overdue first, then newest.
    pub(super) fn inbox(&self, now: Timestamp, limit: usize) -> ControlResponse {
        match self.inbox_query(now, &flat_query(limit)) {
            ControlResponse::InboxPage { rows, .. } => ControlResponse::Inbox { rows },
            other => other,
        }
    }

    /// The store's copy of an unfinished message can lag the core's (a first transmission is not
    /// written); the console shows the live state and attempt count.
    pub(super) fn overlay_live_state(&self, entry: &mut quickfreeze_proto::core::OutboxEntry) {
        if let Some(live) = self.core.unfinished_outbox(&entry.message_id) {
            entry.state = live.state.clone();
            entry.attempts = live.attempts;
        }
    }

    /// `Outbox { limit }`: as [`Self::inbox`], through the one outbox query.
    pub(super) fn outbox(&self, now: Timestamp, limit: usize) -> ControlResponse {
        match self.outbox_query(now, &flat_query(limit)) {
            ControlResponse::OutboxPage { rows, .. } => ControlResponse::Outbox { rows },
            other => other,
        }
    }

    pub(super) fn show(&self, text: &str) -> ControlResponse {
        let id: MessageId = match self.resolve_message_id(text) {
            Ok(id) => id,
            Err(message) => return ControlResponse::Error { message },
        };
        let thread = self.thread_of(&id);
        let store = self.core.store();
        if let Ok(Some(mut entry)) = store.get_outbox(&id) {
            self.overlay_live_state(&mut entry);
            let payload = Some(entry.payload.clone());
            let mut receipts = Vec::new();
            if let Some(receipt) = &entry.custody_receipt {
                receipts.push(self.receipt_view(receipt));
            }
            if let Some(receipt) = &entry.delivery_receipt {
                receipts.push(self.receipt_view(receipt));
            }
            return ControlResponse::Message {
                detail: Box::new(MessageDetail {
                    direction: "outbound".into(),
                    message_id: id.to_string(),
                    peer: entry.recipient.to_string(),
                    country: self.country(&entry.recipient),
                    priority: entry.priority.to_string(),
                    state: entry.state.name().into(),
                    payload,
                    receipts,
                    status_history: entry
                        .status_history
                        .iter()
                        .map(|record| StatusView {
                            received_at: record.received_at.to_rfc3339(),
                            status: record.update.status.clone(),
                            note: record.update.note.clone(),
                            officer: record.update.officer.clone(),
                        })
                        .collect(),
                    replies: Vec::new(),
                    last_error: entry.last_error.clone(),
                    thread,
                }),
            };
        }
        let found = match store.indexes().inbox_by_id(&id) {
            Ok(found) => found,
            Err(error) => {
                return ControlResponse::Error {
                    message: error.to_string(),
                }
            }
        };
        match found {
            Some(entry) => ControlResponse::Message {
                detail: Box::new(MessageDetail {
                    direction: "inbound".into(),
                    message_id: id.to_string(),
                    peer: entry.sender.to_string(),
                    country: self.country(&entry.sender),
                    priority: entry.priority.to_string(),
                    state: match (
                        entry.acknowledged_at.is_some(),
                        quickfreeze_proto::core::awaits_acknowledgement(&entry.payload),
                    ) {
                        (true, true) => "acknowledged",
                        (true, false) => "read",
                        (false, _) => "new",
                    }
                    .into(),
                    receipts: vec![self.receipt_view(&entry.receipt)],
                    payload: Some(entry.payload),
                    status_history: Vec::new(),
                    replies: entry.replies.iter().map(ToString::to_string).collect(),
                    last_error: None,
                    thread,
                }),
            },
            None => ControlResponse::Error {
                message: format!("no message {id} in the outbox or inbox"),
            },
        }
    }

    pub(super) fn peers(&self) -> ControlResponse {
        let me = self.core.node_id();
        let backoff: BTreeMap<NodeId, (u32, Timestamp)> = self
            .core
            .peer_backoff()
            .into_iter()
            .map(|(peer, failures, at)| (peer, (failures, at)))
            .collect();
        let now = Timestamp::now();
        let rows = self
            .core
            .roster()
            .members
            .iter()
            .filter(|member| member.node_id != me)
            .map(|member| {
                let (failures, retry_at) = backoff
                    .get(&member.node_id)
                    .copied()
                    .unwrap_or((0, Timestamp(0)));
                PeerRow {
                    node_id: member.node_id.to_string(),
                    country: member.country.to_string(),
                    authority_name: member.authority_name.clone(),
                    role: member.role.to_string(),
                    connected: self.connected.contains(&member.node_id),
                    consecutive_failures: failures,
                    retry_at: (retry_at > now).then(|| retry_at.to_rfc3339()),
                    misbehaviour: member
                        .current_signing_key()
                        .to_peer_id()
                        .map(|peer| {
                            self.network
                                .misbehaviour_of(&peer)
                                .into_iter()
                                .filter(|(_, count)| *count > 0)
                                .map(|(offense, count)| (offense.name().to_string(), count))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        ControlResponse::Peers { rows }
    }

    /// Per member and kind, what this node refused from it (the counts `peers` shows).
    fn member_misbehaviour(&self) -> Vec<crate::prometheus::MemberMisbehaviour> {
        let me = self.core.node_id();
        let mut rows = Vec::new();
        for member in &self.core.roster().members {
            if member.node_id == me {
                continue;
            }
            let Ok(peer) = member.current_signing_key().to_peer_id() else {
                continue;
            };
            for (offense, count) in self.network.misbehaviour_of(&peer) {
                if count > 0 {
                    rows.push(crate::prometheus::MemberMisbehaviour {
                        peer: member.node_id.to_string(),
                        country: member.country.to_string(),
                        kind: offense.name().to_string(),
                        count,
                    });
                }
            }
        }
        rows
    }

    /// The figures for one Prometheus scrape.
    pub(super) fn snapshot(&self, now: Timestamp) -> ControlResponse {
        let sizes = self.core.queue_sizes();
        let roster = self.core.roster();
        let overdue = self.tracker.counts();
        ControlResponse::MetricsSnapshot {
            snapshot: Box::new(crate::prometheus::Snapshot {
                connected_peers: self.connected.len() as u64,
                outbox_pending: [
                    sizes.outbox_pending[2] as u64,
                    sizes.outbox_pending[1] as u64,
                    sizes.outbox_pending[0] as u64,
                ],
                relay_held: sizes.relay_pending as u64,
                relay_held_bytes: sizes.relay_bytes,
                delivered_total: self.telemetry.delivered,
                expired_total: self.telemetry.expired,
                rejected_total: self.telemetry.rejected,
                received_total: self.telemetry.received,
                time_to_receipt: self.telemetry.time_to_receipt.clone(),
                time_to_acknowledge: self.telemetry.time_to_acknowledge.clone(),
                roster_serial: roster.serial,
                roster_expires_in_s: seconds_between(now, roster.expires_at),
                key_file_age_s: key_file_age_s(&self.data_dir),
                overdue: overdue.map(|count| count as u64),
                disk_free_bytes: self.disk.space().map(|space| space.free),
                disk_low: u64::from(self.disk.refusal().is_some()),
                disk_refusals_total: self.metrics_disk_refusals,
                member_misbehaviour: self.member_misbehaviour(),
                stranger_refusals: self
                    .network
                    .stranger_totals()
                    .into_iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(offense, count)| (offense.name().to_string(), count))
                    .collect(),
            }),
        }
    }

    pub(super) fn status(&self, now: Timestamp) -> ControlResponse {
        let roster = self.core.roster();
        let me = self.core.node_id();
        let member = roster.member(&me);
        let sizes = self.core.queue_sizes();
        // Counters kept with the records: no scan, whatever the history.
        let (inbox_total, inbox_unacknowledged) = match self.core.store().history_counts() {
            Ok(counts) => (
                usize::try_from(counts.inbox).unwrap_or(usize::MAX),
                usize::try_from(counts.inbox_unacknowledged).unwrap_or(usize::MAX),
            ),
            Err(_) => (0, 0),
        };
        const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
        ControlResponse::Status {
            report: Box::new(StatusReport {
                node_id: me.to_string(),
                fingerprint: self.fingerprint.clone(),
                country: member.map_or_else(String::new, |member| member.country.to_string()),
                role: member
                    .map_or(Role::PointOfContact, |member| member.role)
                    .to_string(),
                network: roster.network.clone(),
                roster_serial: roster.serial,
                roster_expires_at: roster.expires_at.to_rfc3339(),
                roster_expires_soon: roster.expires_at.millis_since(now) < WEEK_MS,
                outbox_pending: [
                    sizes.outbox_pending[2],
                    sizes.outbox_pending[1],
                    sizes.outbox_pending[0],
                ],
                inbox_total,
                inbox_unacknowledged,
                relay_pending: sizes.relay_pending,
                relay_bytes: sizes.relay_bytes,
                connected_peers: self.connected.len(),
                listen_addresses: self.listen_addresses.clone(),
                store_flushes: self.core.store().stats().flushes,
                roster_expires_in_s: seconds_between(now, roster.expires_at),
                revocation_serial: self.core.revocation_serial(),
                revocations: self
                    .core
                    .revocations()
                    .map(|notice| crate::control::RevocationRow {
                        serial: notice.serial,
                        issued_at: notice.issued_at.to_rfc3339(),
                        nodes: notice.nodes.iter().map(ToString::to_string).collect(),
                        keys: notice.keys.iter().map(hex::encode).collect(),
                        reason: notice.reason.clone(),
                    })
                    .collect(),
                overdue: self.tracker.counts(),
                overdue_items: self
                    .tracker
                    .current()
                    .iter()
                    .take(100)
                    .map(|breach| crate::control::OverdueRow {
                        clock: breach.clock.to_string(),
                        meaning: breach.clock.describe().into(),
                        message_id: breach.message_id.to_string(),
                        peer: breach.peer.to_string(),
                        country: self.country(&breach.peer),
                        priority: breach.priority.to_string(),
                        due_at: breach.due_at.to_rfc3339(),
                        overdue_s: now.millis_since(breach.due_at) / 1000,
                    })
                    .collect(),
                key_file_age_s: key_file_age_s(&self.data_dir),
                metrics_address: self.metrics_address.map(|address| address.to_string()),
                disk_free_bytes: self.disk.space().map(|space| space.free),
                disk_low: self.disk.refusal(),
                disk_low_water_bytes: self
                    .disk
                    .space()
                    .map(|space| space.mark)
                    .filter(|mark| *mark > 0),
            }),
        }
    }
}

/// Every row, one per message, the first `limit` of them.
fn flat_query(limit: usize) -> crate::control::MessageQuery {
    crate::control::MessageQuery {
        flat: true,
        // A page of at least one row: the query reads 0 as "the default page".
        limit: limit.max(1),
        ..crate::control::MessageQuery::default()
    }
}
