//! The outcome of a batch this node sent: each answer frame is matched to the item it answers and
//! handed to its room (`outbox` for receipts and refusals of messages, `custody` for relayed
//! envelopes and carried receipts, `roster_sync` for a fetched roster); a failed request or a
//! missing answer marks the peer failed in `schedule` and reschedules each item.

use quickfreeze_keys::{NodeId, Timestamp};

use super::work::{Item, Job};
use super::{Core, Event, OutboxState, Store};
use crate::frame::{Batch, Frame};

impl<S: Store> Core<S> {
    /// Handles the response to request `request_id`.
    pub fn handle_response(&mut self, now: Timestamp, request_id: u64, bytes: &[u8]) {
        let Some(flight) = self.in_flight.remove(&request_id) else {
            return;
        };
        self.request_finished(now, flight.peer);
        let answers = match Batch::from_bytes(bytes) {
            Ok(batch) => {
                self.note_roster_serial(flight.peer, batch.roster_serial);
                batch.frames
            }
            Err(error) => {
                self.push_event(Event::InboundRejected {
                    from: flight.peer,
                    reason: format!("bad response: {error}"),
                });
                Vec::new()
            }
        };
        if !answers.is_empty() {
            self.peer_succeeded(now, flight.peer);
        } else {
            self.peer_failed(now, flight.peer);
        }
        let mut answers = answers.into_iter();
        for item in flight.items {
            match answers.next() {
                Some(answer) => self.handle_answer(now, flight.peer, item, answer),
                None => self.item_failed(now, flight.peer, item, "no answer from peer".into()),
            }
        }
    }

    /// Request `request_id` failed (timeout, connection refused or closed).
    pub fn handle_request_failed(&mut self, now: Timestamp, request_id: u64, reason: &str) {
        let Some(flight) = self.in_flight.remove(&request_id) else {
            return;
        };
        self.request_finished(now, flight.peer);
        self.peer_failed(now, flight.peer);
        for item in flight.items {
            self.item_failed(now, flight.peer, item, reason.to_string());
        }
    }

    pub(super) fn item_failed(&mut self, now: Timestamp, peer: NodeId, item: Item, reason: String) {
        match item {
            Item::Outbox {
                message_id,
                via_relay,
            } => {
                self.busy.remove(&Job::Outbox(message_id));
                let peer_backing_off = self
                    .peers
                    .get(&peer)
                    .is_some_and(|state| state.retry_at > now);
                let custody_recheck_ms = self.config.custody_recheck_ms;
                let Some(entry) = self.outbox.get_mut(&message_id) else {
                    return;
                };
                entry.last_error = Some(format!("{peer}: {reason}"));
                if !via_relay {
                    entry.direct_failures += 1;
                }
                let (priority, attempts, expires_at) =
                    (entry.priority, entry.attempts, entry.expires_at);
                let in_custody = matches!(entry.state, OutboxState::Custody { .. });
                // Persist the attempt count and last error so `outbox`/`show` tell the truth.
                let snapshot = entry.clone();
                if let Err(error) = self.store.put_outbox(&snapshot) {
                    self.push_event(Event::StoreFailed {
                        reason: error.to_string(),
                    });
                }
                // `prepare_outbox` picks the next target (recipient or relay) and waits out that
                // target's backoff; a peer that answered "not now" gets a per-message delay.
                let at = if in_custody {
                    now.plus_ms(custody_recheck_ms)
                } else if peer_backing_off {
                    now
                } else {
                    now.plus_ms(self.refusal_delay(attempts))
                };
                self.schedule(Job::Outbox(message_id), at.min(expires_at), priority);
            }
            Item::RelayDeliver(sender, message_id) | Item::RelayReceipt(sender, message_id) => {
                let job = match item {
                    Item::RelayDeliver(..) => Job::RelayDeliver(sender, message_id),
                    _ => Job::RelayReceipt(sender, message_id),
                };
                self.busy.remove(&job);
                let retry_at = self.peers.get(&peer).map_or(now, |state| state.retry_at);
                let retry_base_ms = self.config.retry_base_ms;
                if let Some(entry) = self.relay.get(&(sender, message_id)) {
                    let priority = entry.priority;
                    self.schedule(job, retry_at.max(now.plus_ms(retry_base_ms)), priority);
                }
            }
            Item::RosterRequest => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.roster_request_pending = false;
                }
            }
            Item::RevocationRequest => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.revocation_request_pending = false;
                }
            }
            // Told again at the next interval or connection.
            Item::Serials | Item::RevocationPush => {}
        }
    }

    pub(super) fn handle_answer(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        item: Item,
        answer: Frame,
    ) {
        match (item, answer) {
            (Item::Outbox { message_id, .. }, Frame::Receipt(receipt)) => {
                self.outbox_receipt(now, peer, message_id, receipt);
            }
            (
                Item::Outbox {
                    message_id,
                    via_relay,
                },
                Frame::Refused {
                    permanent, reason, ..
                },
            ) => {
                let outbox = self
                    .outbox
                    .get(&message_id)
                    .map(|entry| (entry.recipient, entry.digest, entry.expires_at));
                if let Some((recipient, digest, expires_at)) =
                    outbox.filter(|(recipient, _, _)| permanent && !via_relay && *recipient == peer)
                {
                    self.busy.remove(&Job::Outbox(message_id));
                    if now >= expires_at {
                        // Sent just before its end and refused as expired on arrival: that is an
                        // expiry, and the officer must hear "expired, use the phone", not that
                        // the recipient refused the request.
                        self.finish_outbox(message_id, OutboxState::Expired { at: now });
                        return;
                    }
                    self.finish_outbox(
                        message_id,
                        OutboxState::Rejected {
                            at: now,
                            reason: reason.clone(),
                        },
                    );
                    self.push_event(Event::Rejected {
                        message_id,
                        by: recipient,
                        reason,
                        digest,
                    });
                } else {
                    self.item_failed(now, peer, item, reason);
                }
            }
            (Item::RelayDeliver(sender, message_id), Frame::Receipt(receipt)) => {
                self.busy.remove(&Job::RelayDeliver(sender, message_id));
                self.relay_delivered(now, peer, sender, message_id, receipt);
            }
            (
                Item::RelayDeliver(sender, message_id),
                Frame::Refused {
                    permanent: true,
                    reason,
                    ..
                },
            ) => {
                self.busy.remove(&Job::RelayDeliver(sender, message_id));
                self.relay_fail(sender, message_id, format!("recipient refused: {reason}"));
            }
            (Item::RelayReceipt(sender, message_id), Frame::Ack(acked)) if acked == message_id => {
                self.relay_receipt_acknowledged(sender, message_id);
            }
            (Item::Serials | Item::RevocationPush, Frame::Serials { revocation_serial }) => {
                self.note_revocation_serial(peer, revocation_serial);
            }
            (Item::RevocationRequest, Frame::Revocations(notices)) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.revocation_request_pending = false;
                }
                self.offered_revocations(peer, notices);
            }
            (Item::RosterRequest, Frame::Roster(bytes)) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.roster_request_pending = false;
                }
                self.offered_roster(now, peer, &bytes);
            }
            (
                Item::RelayReceipt(sender, message_id),
                Frame::Refused {
                    permanent: true,
                    reason,
                    ..
                },
            ) => {
                self.busy.remove(&Job::RelayReceipt(sender, message_id));
                self.relay_fail(
                    sender,
                    message_id,
                    format!("sender refused the receipt: {reason}"),
                );
            }
            (item, other) => {
                let reason = match other {
                    Frame::Refused { reason, .. } => reason,
                    other => format!("unexpected answer {}", frame_name(&other)),
                };
                self.item_failed(now, peer, item, reason);
            }
        }
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Deliver(_) => "deliver",
        Frame::Handoff(_) => "handoff",
        Frame::Receipt(_) => "receipt",
        Frame::Ack(_) => "ack",
        Frame::Refused { .. } => "refused",
        Frame::RosterRequest => "roster-request",
        Frame::Roster(_) => "roster",
        Frame::Ignored => "ignored",
        Frame::Serials { .. } => "serials",
        Frame::RevocationRequest { .. } => "revocation-request",
        Frame::Revocations(_) => "revocations",
    }
}
