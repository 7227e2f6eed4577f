//! The sender's side of a message, from the officer's command to its end.
//!
//! `submit` / `reply` / `acknowledge` validate, seal and store a new outbox entry and schedule it;
//! `prepare_outbox` picks the next hop (the recipient directly, or after failures one of its
//! relays) when the job is due; receipts coming back (in an answer, or forwarded by a relay) move
//! the entry to custody or delivered; expiry and a permanent refusal end it, each with an event.

use std::collections::BTreeMap;

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{NodeId, Timestamp};

use super::work::{Item, Job};
use super::{Core, Event, OutboxEntry, OutboxState, Store, StoreError};
use crate::envelope::{self, digest_bytes, Envelope, SealParams};
use crate::frame::Frame;
use crate::ids::MessageId;
use crate::payload::{Payload, Status, StatusUpdate, ValidationErrors};
use crate::receipt::{Receipt, ReceiptKind};

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is incomplete or malformed; every problem is listed.
    #[error("the request is not complete:\n{0}")]
    Invalid(ValidationErrors),
    /// No such member.
    #[error("{0} is not in the roster")]
    UnknownRecipient(NodeId),
    /// The member cannot receive requests.
    #[error("{0} cannot receive messages now (membership not valid, or it is a relay)")]
    RecipientUnavailable(NodeId),
    /// Outbox full.
    #[error("the outbox already holds {0} undelivered messages; wait for deliveries or raise max_outbox_pending")]
    OutboxFull(usize),
    /// Sealing failed.
    #[error("cannot seal: {0}")]
    Seal(#[from] envelope::SealError),
    /// Store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The referenced message is not in the inbox.
    #[error("no message {0} in the inbox")]
    NoSuchMessage(MessageId),
}

impl<S: Store> Core<S> {
    /// Seals and stores a new message for `recipient`. The shell must flush before telling the
    /// officer it was accepted.
    pub fn submit(
        &mut self,
        now: Timestamp,
        recipient: NodeId,
        payload: Payload,
    ) -> Result<MessageId, SubmitError> {
        payload.validate().map_err(SubmitError::Invalid)?;
        self.submit_unvalidated(now, recipient, payload)
    }

    pub(super) fn submit_unvalidated(
        &mut self,
        now: Timestamp,
        recipient: NodeId,
        payload: Payload,
    ) -> Result<MessageId, SubmitError> {
        let member = self
            .roster
            .member(&recipient)
            .ok_or(SubmitError::UnknownRecipient(recipient))?;
        if member.role == Role::Relay || !member.is_valid_at(now) || recipient == self.me {
            return Err(SubmitError::RecipientUnavailable(recipient));
        }
        if self.outbox.len() >= self.config.max_outbox_pending {
            return Err(SubmitError::OutboxFull(self.outbox.len()));
        }
        let priority = payload.priority();
        let message_id = MessageId::random(&mut self.rng);
        let kind = payload.kind();
        let summary = payload.summary();
        let params = SealParams {
            message_id,
            created_at: now,
            expires_at: now.plus_ms(self.config.lifetime_ms(priority)),
            priority,
        };
        let member = member.clone();
        let sealed = envelope::seal(&self.identity, &member, &payload, params, &mut self.rng)?;
        let bytes = sealed.to_bytes();
        let entry = OutboxEntry {
            message_id,
            recipient,
            priority,
            kind,
            summary,
            payload,
            created_at: now,
            expires_at: params.expires_at,
            digest: digest_bytes(&bytes),
            envelope: bytes,
            state: OutboxState::Accepted,
            attempts: 0,
            direct_failures: 0,
            relay_attempts: 0,
            custody_receipt: None,
            delivery_receipt: None,
            status_history: Vec::new(),
            last_error: None,
        };
        let digest = entry.digest;
        self.store.put_outbox(&entry)?;
        self.outbox.insert(message_id, entry);
        self.schedule(Job::Outbox(message_id), now, priority);
        self.push_event(Event::Accepted {
            message_id,
            recipient,
            priority,
            digest,
            kind,
        });
        Ok(message_id)
    }

    /// Records the officer's acknowledgement of an inbox message and sends the sender an
    /// "acknowledged by officer" status. Returns the id of that status message (None if the
    /// message was already acknowledged, or is a status reply: those are only marked read, see
    /// [`awaits_acknowledgement`]).
    pub fn acknowledge(
        &mut self,
        now: Timestamp,
        sender: NodeId,
        message_id: MessageId,
        officer: &str,
    ) -> Result<Option<MessageId>, SubmitError> {
        let entry = self
            .store
            .get_inbox(&sender, &message_id)?
            .ok_or(SubmitError::NoSuchMessage(message_id))?;
        if entry.acknowledged_at.is_some() {
            return Ok(None);
        }
        if !awaits_acknowledgement(&entry.payload) {
            // A status reply (or follow-up) is read, not answered: acknowledging it sends nothing
            // back, or the two sides would acknowledge each other's acknowledgements for ever.
            let mut entry = entry;
            entry.acknowledged_at = Some(now);
            self.store.put_inbox(&entry)?;
            return Ok(None);
        }
        let status = Status::AcknowledgedByOfficer;
        let reply = self.reply(
            now,
            sender,
            message_id,
            status,
            String::new(),
            officer.to_string(),
        )?;
        let mut entry = self
            .store
            .get_inbox(&sender, &message_id)?
            .ok_or(SubmitError::NoSuchMessage(message_id))?;
        entry.acknowledged_at = Some(now);
        self.store.put_inbox(&entry)?;
        Ok(Some(reply))
    }

    /// Sends a status update about an inbox message back to its sender.
    pub fn reply(
        &mut self,
        now: Timestamp,
        sender: NodeId,
        message_id: MessageId,
        status: Status,
        note: String,
        officer: String,
    ) -> Result<MessageId, SubmitError> {
        let mut entry = self
            .store
            .get_inbox(&sender, &message_id)?
            .ok_or(SubmitError::NoSuchMessage(message_id))?;
        let case_reference = match &entry.payload {
            Payload::Preservation(request) => request.header.case_reference.clone(),
            Payload::TrafficData(request) => request.header.case_reference.clone(),
            Payload::Emergency(request) => request.header.case_reference.clone(),
            Payload::Status(update) => update.case_reference.clone(),
            Payload::FreeText(text) => text.case_reference.clone().unwrap_or_default(),
        };
        let update = StatusUpdate {
            references: message_id,
            case_reference,
            status,
            note,
            officer,
            priority: entry.priority,
        };
        let payload = Payload::Status(update);
        payload.validate().map_err(SubmitError::Invalid)?;
        let reply = self.submit_unvalidated(now, sender, payload)?;
        entry.replies.push(reply);
        self.store.put_inbox(&entry)?;
        Ok(reply)
    }

    /// The live entry of an unfinished outgoing message. It can be ahead of the store's copy,
    /// which is not rewritten for a first transmission (see `prepare_outbox`).
    pub fn unfinished_outbox(&self, message_id: &MessageId) -> Option<&OutboxEntry> {
        self.outbox.get(message_id)
    }

    pub(super) fn prepare_outbox(
        &mut self,
        now: Timestamp,
        message_id: MessageId,
    ) -> Option<(NodeId, Frame, Item, usize)> {
        let entry = self.outbox.get(&message_id)?;
        if now >= entry.expires_at {
            self.finish_outbox(message_id, OutboxState::Expired { at: now });
            return None;
        }
        let recipient = self.roster.member(&entry.recipient)?;
        let relays: Vec<NodeId> = recipient
            .relays
            .iter()
            .copied()
            .filter(|relay| *relay != self.me && self.roster.member(relay).is_some())
            .collect();
        let direct_possible = !recipient.addresses.is_empty();
        let in_custody = matches!(entry.state, OutboxState::Custody { .. });
        let mut use_relay = !in_custody
            && !relays.is_empty()
            && (!direct_possible || entry.direct_failures >= self.config.relay_after_failures)
            // Alternate with direct attempts so a recipient that comes back is reached directly.
            && (!direct_possible || entry.relay_attempts <= entry.direct_failures.saturating_sub(self.config.relay_after_failures));
        if use_relay && direct_possible {
            // The relay's turn, but the relay is backing off and the recipient is not (it was
            // just seen, or its backoff ended first): go direct rather than wait for the relay.
            let relay = relays[(entry.relay_attempts as usize) % relays.len()];
            if self.backing_off(now, relay) && !self.backing_off(now, entry.recipient) {
                use_relay = false;
            }
        }
        let envelope = Envelope::from_bytes(&entry.envelope).ok()?;
        let size = entry.envelope.len();
        let (peer, frame, via_relay) = if use_relay {
            let relay = relays[(entry.relay_attempts as usize) % relays.len()];
            (relay, Frame::Handoff(envelope), true)
        } else if direct_possible {
            (entry.recipient, Frame::Deliver(envelope), false)
        } else if let OutboxState::Custody { relay, .. } = entry.state {
            // Relay-only recipient already in custody: ask the relay again. It answers a repeated
            // hand-off with the delivery receipt once it has one, which is how a sender that
            // nobody can dial (and whose own relays differ from the recipient's) learns of it.
            (relay, Frame::Handoff(envelope), true)
        } else {
            // Relay-only recipient without usable relays: keep checking until expiry.
            let at = now
                .plus_ms(self.config.custody_recheck_ms)
                .min(entry.expires_at);
            let priority = entry.priority;
            self.schedule(Job::Outbox(message_id), at, priority);
            return None;
        };
        let (priority, deadline) = (entry.priority, entry.expires_at);
        if self.wait_for_peer(now, peer, Job::Outbox(message_id), priority, deadline) {
            return None;
        }
        let entry = self.outbox.get_mut(&message_id)?;
        entry.attempts += 1;
        if via_relay {
            entry.relay_attempts += 1;
        }
        if entry.state == OutboxState::Accepted {
            // Not written to the store: on the usual path the delivery receipt follows within
            // milliseconds and its write records the outcome, and a failed attempt writes the
            // entry (state, attempts, error) in `item_failed`. After a crash an entry still
            // "accepted" is transmitted again, which is what "sent" would have led to as well.
            // [`Core::unfinished_outbox`] shows the live state meanwhile.
            entry.state = OutboxState::Sent;
            let digest = entry.digest;
            self.push_event(Event::Sent {
                message_id,
                to: peer,
                via_relay,
                digest,
            });
        }
        Some((
            peer,
            frame,
            Item::Outbox {
                message_id,
                via_relay,
            },
            size,
        ))
    }

    pub(super) fn finish_outbox(&mut self, message_id: MessageId, state: OutboxState) {
        let Some(mut entry) = self.outbox.remove(&message_id) else {
            return;
        };
        self.unschedule(Job::Outbox(message_id));
        self.busy.remove(&Job::Outbox(message_id));
        let event = match &state {
            OutboxState::Expired { .. } => Some(Event::Expired {
                message_id,
                recipient: entry.recipient,
                priority: entry.priority,
                digest: entry.digest,
            }),
            _ => None,
        };
        entry.state = state;
        if let Err(error) = self.store.put_outbox(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        if let Some(event) = event {
            self.push_event(event);
        }
    }

    pub(super) fn outbox_receipt(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        message_id: MessageId,
        receipt: Receipt,
    ) {
        self.busy.remove(&Job::Outbox(message_id));
        let Some(entry) = self.outbox.get(&message_id).cloned().or_else(|| {
            // A late delivery receipt for a message that already expired still counts.
            self.store.get_outbox(&message_id).ok().flatten()
        }) else {
            return;
        };
        if let Err(error) = self.verify_receipt_now(
            now,
            &receipt,
            &message_id,
            &self.me,
            &entry.recipient,
            &entry.digest,
        ) {
            self.push_event(Event::ReceiptRejected {
                message_id,
                from: peer,
                reason: error.to_string(),
            });
            if self.outbox.contains_key(&message_id) {
                let priority = entry.priority;
                let at = now.plus_ms(self.config.retry_base_ms);
                self.schedule(Job::Outbox(message_id), at, priority);
            }
            return;
        }
        match receipt.body.kind {
            ReceiptKind::Delivered => {
                self.mark_delivered(now, entry, receipt);
            }
            ReceiptKind::Custody => {
                let Some(live) = self.outbox.get_mut(&message_id) else {
                    return;
                };
                let priority = live.priority;
                if live.custody_receipt.is_none() {
                    live.state = OutboxState::Custody {
                        relay: receipt.body.signer,
                        at: receipt.body.received_at,
                    };
                    live.custody_receipt = Some(receipt.clone());
                    let snapshot = live.clone();
                    if let Err(error) = self.store.put_outbox(&snapshot) {
                        self.push_event(Event::StoreFailed {
                            reason: error.to_string(),
                        });
                    }
                    self.push_event(Event::Custody {
                        message_id,
                        relay: receipt.body.signer,
                        digest: snapshot.digest,
                    });
                }
                let at = now
                    .plus_ms(self.config.custody_recheck_ms)
                    .min(snapshot_expiry(&self.outbox, &message_id));
                self.schedule(Job::Outbox(message_id), at, priority);
            }
        }
    }

    /// Records a verified delivery receipt (once; a late one after expiry still counts).
    pub(super) fn mark_delivered(
        &mut self,
        now: Timestamp,
        mut entry: OutboxEntry,
        receipt: Receipt,
    ) {
        if matches!(entry.state, OutboxState::Delivered { .. }) {
            return;
        }
        let message_id = entry.message_id;
        let received_at = receipt.body.received_at;
        entry.delivery_receipt = Some(receipt);
        let (recipient, created_at, digest) = (entry.recipient, entry.created_at, entry.digest);
        self.outbox.insert(message_id, entry);
        self.finish_outbox(message_id, OutboxState::Delivered { at: received_at });
        self.push_event(Event::Delivered {
            message_id,
            recipient,
            received_at,
            latency_ms: now.millis_since(created_at),
            digest,
        });
    }

    pub(super) fn receive_forwarded_receipt(
        &mut self,
        now: Timestamp,
        from: NodeId,
        receipt: Receipt,
    ) -> Frame {
        let message_id = receipt.body.message_id;
        if receipt.body.sender != self.me || receipt.body.kind != ReceiptKind::Delivered {
            return Frame::refused(
                message_id,
                true,
                "receipt is not for a message this node sent",
            );
        }
        let entry = self
            .outbox
            .get(&message_id)
            .cloned()
            .or_else(|| self.store.get_outbox(&message_id).ok().flatten());
        let Some(entry) = entry else {
            return Frame::refused(message_id, true, "no such message in the outbox");
        };
        if let Err(error) = self.verify_receipt_now(
            now,
            &receipt,
            &message_id,
            &self.me,
            &entry.recipient,
            &entry.digest,
        ) {
            self.push_event(Event::ReceiptRejected {
                message_id,
                from,
                reason: error.to_string(),
            });
            // A receipt signed with a key only a newer roster lists: temporary (see
            // `reject_inbound`).
            return Frame::refused(message_id, !self.peer_roster_ahead, error.to_string());
        }
        self.mark_delivered(now, entry, receipt);
        Frame::Ack(message_id)
    }
}

fn snapshot_expiry(outbox: &BTreeMap<MessageId, OutboxEntry>, message_id: &MessageId) -> Timestamp {
    outbox
        .get(message_id)
        .map_or(Timestamp(u64::MAX), |entry| entry.expires_at)
}

/// Whether an officer's acknowledgement of `payload` is owed to its sender: true for requests
/// (preservation, traffic data, emergency) only. Status replies and free-text follow-ups are
/// read, not acknowledged: acknowledging one marks it read here and sends nothing.
pub fn awaits_acknowledgement(payload: &Payload) -> bool {
    matches!(
        payload,
        Payload::Preservation(_) | Payload::TrafficData(_) | Payload::Emergency(_)
    )
}
