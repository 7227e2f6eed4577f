//! Showing what happened: log lines, counters and the operator's alert hook for each core event
//! once its commit has returned.

use quickfreeze_keys::{NodeId, Timestamp};
use quickfreeze_proto::core::Event;
use quickfreeze_proto::MessageId;
use tracing::{debug, error, info, warn};

use super::Daemon;
use crate::network::ledger::Offense;

/// Deliveries kept in the testing delivery log between two drains.
const MAX_DELIVERY_LOG: usize = 100_000;

/// Latency samples kept for the percentiles.
const MAX_LATENCY_SAMPLES: usize = 200_000;

/// Undelivered messages whose acceptance instant is tracked (the outbox limit is lower).
const MAX_TRACKED_ACCEPTED: usize = 100_000;

const MAX_RUNNING_HOOKS: usize = 8;

impl Daemon {
    pub(super) fn on_core_event(&mut self, event: Event) {
        let roster = self.core.roster();
        let country = |node: &NodeId| {
            roster
                .member(node)
                .map_or_else(|| "??".to_string(), |member| member.country.to_string())
        };
        match &event {
            Event::Accepted {
                message_id,
                recipient,
                priority,
                ..
            } => {
                self.metrics.accepted += 1;
                if self.accepted_at.len() < MAX_TRACKED_ACCEPTED {
                    self.accepted_at
                        .insert(*message_id, std::time::Instant::now());
                }
                info!(%message_id, to = %country(recipient), %priority, "accepted");
            }
            Event::Sent {
                message_id,
                to,
                via_relay,
                ..
            } => {
                info!(%message_id, to = %country(to), via_relay, "sent");
            }
            Event::Custody {
                message_id, relay, ..
            } => {
                info!(%message_id, relay = %relay, "relay took custody");
            }
            Event::Delivered {
                message_id,
                recipient,
                received_at,
                latency_ms,
                ..
            } => {
                info!(%message_id, to = %country(recipient), %received_at, latency_ms, "delivered");
                let message_id = *message_id;
                self.metrics.delivered += 1;
                self.telemetry.delivered += 1;
                self.telemetry
                    .time_to_receipt
                    .observe(*latency_ms as f64 / 1000.0);
                if self.fault_injection {
                    if self.delivery_log.len() >= MAX_DELIVERY_LOG {
                        self.delivery_log.pop_front();
                        self.delivery_log_overflowed += 1;
                    }
                    let unix_us = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| {
                            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
                        });
                    self.delivery_log.push_back((message_id, unix_us));
                }
                if let Some(at) = self.accepted_at.remove(&message_id) {
                    if self.latencies_us.len() >= MAX_LATENCY_SAMPLES {
                        self.latencies_us.pop_front();
                    }
                    self.latencies_us
                        .push_back(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                if let Some(waiters) = self.waiters.remove(&message_id) {
                    let response = self.delivered_response(&message_id);
                    for waiter in waiters {
                        let _ = waiter.send(response.clone());
                    }
                }
            }
            Event::Expired {
                message_id,
                recipient,
                priority,
                ..
            } => {
                self.metrics.expired += 1;
                self.telemetry.expired += 1;
                self.accepted_at.remove(message_id);
                error!(%message_id, to = %country(recipient), %priority, "EXPIRED UNDELIVERED: contact the recipient by phone");
                self.alert(
                    "expired",
                    Some(*message_id),
                    Some(*priority),
                    Some(*recipient),
                    "expired without a delivery receipt",
                );
            }
            Event::Rejected {
                message_id,
                by,
                reason,
                ..
            } => {
                error!(%message_id, by = %country(by), %reason, "REFUSED by the recipient");
                self.telemetry.rejected += 1;
                self.alert("rejected", Some(*message_id), None, Some(*by), reason);
            }
            Event::Received {
                sender,
                message_id,
                priority,
                kind,
                via_relay,
                reannounced,
                handling,
                ..
            } => {
                let conditions = handling.as_ref().map(|h| h.marker()).unwrap_or_default();
                if *reannounced {
                    // One summary line was logged at start; the detail is for the console and,
                    // for the first few, the alert hook.
                    debug!(%message_id, from = %country(sender), %priority, %kind, relayed = via_relay.is_some(), "STILL UNACKNOWLEDGED after restart");
                    if self.reannounce_alerts_left == 0 {
                        return;
                    }
                    self.reannounce_alerts_left -= 1;
                } else {
                    self.metrics.received += 1;
                    self.telemetry.received += 1;
                    let what = if crate::deadlines::is_request(*kind) {
                        "NEW REQUEST in the inbox"
                    } else {
                        // Status replies and follow-ups are read, not acknowledged.
                        "new message in the inbox"
                    };
                    info!(%message_id, from = %country(sender), %priority, %kind, relayed = via_relay.is_some(), %conditions, "{what}");
                }
                self.alert(
                    if *reannounced {
                        "unacknowledged"
                    } else {
                        "received"
                    },
                    Some(*message_id),
                    Some(*priority),
                    Some(*sender),
                    &kind.to_string(),
                );
            }
            Event::StatusReceived {
                references,
                from,
                status,
            } => {
                info!(%references, from = %country(from), %status, "status update received");
                self.alert(
                    "status",
                    Some(*references),
                    None,
                    Some(*from),
                    &status.to_string(),
                );
            }
            // A member's refused frames, receipts and rosters are counted per peer by the network
            // and summarised in one rate-limited line: a peer must not set our log volume.
            Event::InboundRejected { from, reason } => {
                debug!(from = %from, %reason, "refused inbound frame");
                self.note_misbehaviour(from, Offense::JunkFrame);
            }
            Event::ReceiptRejected {
                message_id,
                from,
                reason,
            } => {
                debug!(%message_id, from = %from, %reason, "receipt did not verify");
                self.note_misbehaviour(from, Offense::JunkFrame);
            }
            Event::RelayHolding {
                sender,
                recipient,
                message_id,
            } => {
                info!(%message_id, from = %country(sender), to = %country(recipient), "relay: holding");
            }
            Event::RelayDelivered {
                sender,
                recipient,
                message_id,
            } => {
                info!(%message_id, from = %country(sender), to = %country(recipient), "relay: delivered");
            }
            Event::RelayFailed {
                sender,
                recipient,
                message_id,
                reason,
            } => {
                error!(%message_id, from = %country(sender), to = %country(recipient), %reason, "relay: gave up");
                self.alert(
                    "relay-failed",
                    Some(*message_id),
                    None,
                    Some(*recipient),
                    reason,
                );
            }
            Event::RosterUpdated { serial } => {
                info!(serial, "roster updated");
                self.take_up_rotated_keys();
                self.refresh_allowed_peers(Timestamp::now());
            }
            Event::RevocationApplied {
                serial,
                revoked,
                reason,
            } => {
                let list = super::audit_facts::revoked_list(revoked);
                error!(serial, revoked = %list, %reason, "revocation notice applied: revoked members are refused from now on");
                self.alert(
                    "revocation",
                    None,
                    None,
                    revoked.first().map(|(node, _)| *node),
                    &format!("revocation serial {serial}: {list}: {reason}"),
                );
                self.refresh_allowed_peers(Timestamp::now());
            }
            Event::RevocationRejected { from, reason } => {
                if *from == self.core.node_id() {
                    warn!(%reason, "revocation notice refused");
                } else {
                    debug!(from = %from, %reason, "revocation notice offered by a peer refused");
                    self.note_misbehaviour(from, Offense::JunkFrame);
                }
            }
            Event::RosterRejected { from, reason } => {
                debug!(from = %from, %reason, "roster offered by a peer refused");
                self.note_misbehaviour(from, Offense::JunkFrame);
            }
            Event::StoreFailed { reason } => {
                error!(%reason, "store failure");
                self.alert("store-failed", None, None, None, reason);
            }
        }
    }

    fn note_misbehaviour(&mut self, from: &NodeId, offense: Offense) {
        if let Some(peer) = super::roster::peer_of(self.core.roster(), from) {
            self.network.note_misbehaviour(peer, offense);
        }
    }

    pub(super) fn alert(
        &mut self,
        kind: &str,
        message_id: Option<MessageId>,
        priority: Option<quickfreeze_proto::Priority>,
        peer: Option<NodeId>,
        detail: &str,
    ) {
        let Some((program, args)) = self.alert_hook.split_first() else {
            return;
        };
        if self.hooks.len() >= MAX_RUNNING_HOOKS {
            error!(kind, "alert hook backlog: {MAX_RUNNING_HOOKS} hooks still running, this alert was not run");
            return;
        }
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("QF_EVENT", kind)
            .env(
                "QF_MESSAGE_ID",
                message_id.map(|id| id.to_string()).unwrap_or_default(),
            )
            .env(
                "QF_PRIORITY",
                priority.map(|p| p.to_string()).unwrap_or_default(),
            )
            .env("QF_PEER", peer.map(|p| p.to_string()).unwrap_or_default())
            .env("QF_DETAIL", detail)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        let program = program.clone();
        self.hooks.spawn(async move {
            match command.status().await {
                Ok(status) if status.success() => {}
                Ok(status) => error!(%program, %status, "alert hook failed"),
                Err(error) => error!(%program, %error, "alert hook could not be started"),
            }
        });
    }
}
