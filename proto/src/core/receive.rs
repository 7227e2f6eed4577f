//! The receive path: a peer's request batch, frame by frame.
//!
//! A `Deliver` frame is de-duplicated on (sender, message id), opened (signature, recipient,
//! expiry, decryption), validated, stored and only then answered with a signed delivery receipt
//! (a duplicate gets the original receipt). A status update also lands in the history of the
//! outbox entry it answers. Hand-offs go to `custody`, forwarded receipts to `outbox`, roster
//! requests are answered with the signed roster.

use quickfreeze_keys::{NodeId, Timestamp};

use super::{Core, Event, InboxEntry, StatusRecord, Store};
use crate::envelope::{self, digest_bytes, Envelope, OpenError};
use crate::frame::{Batch, Frame};
use crate::ids::MessageId;
use crate::payload::{Payload, StatusUpdate};
use crate::receipt::{Receipt, ReceiptBody, ReceiptKind};

impl<S: Store> Core<S> {
    /// Handles a request batch from `from` (a roster member, authenticated by the transport).
    /// Returns the response bytes, which the shell sends only after flushing the store.
    pub fn handle_request(&mut self, now: Timestamp, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        self.write_deferred();
        let batch = match Batch::from_bytes(bytes) {
            Ok(batch) => batch,
            Err(error) => {
                self.push_event(Event::InboundRejected {
                    from,
                    reason: error.to_string(),
                });
                return self.response(vec![Frame::refused(
                    MessageId([0; 16]),
                    true,
                    error.to_string(),
                )]);
            }
        };
        self.handle_peer_seen(now, from);
        self.note_roster_serial(from, batch.roster_serial);
        self.peer_roster_ahead = batch.roster_serial > self.roster.serial;
        let answers = batch
            .frames
            .into_iter()
            .map(|frame| self.handle_frame(now, from, frame))
            .collect();
        self.peer_roster_ahead = false;
        self.response(answers)
    }

    pub(super) fn handle_frame(&mut self, now: Timestamp, from: NodeId, frame: Frame) -> Frame {
        match frame {
            Frame::Deliver(envelope) => self.receive_envelope(now, from, envelope),
            Frame::Handoff(envelope) => self.take_custody(now, from, envelope),
            Frame::Receipt(receipt) => self.receive_forwarded_receipt(now, from, receipt),
            Frame::RosterRequest => Frame::Roster(self.signed_roster.clone()),
            Frame::Serials { revocation_serial } => {
                self.note_revocation_serial(from, revocation_serial);
                Frame::Serials {
                    revocation_serial: self.revocation_serial(),
                }
            }
            Frame::RevocationRequest { after } => self.notices_after(after),
            Frame::Revocations(notices) => {
                self.offered_revocations(from, notices);
                Frame::Serials {
                    revocation_serial: self.revocation_serial(),
                }
            }
            Frame::Ack(_) | Frame::Refused { .. } | Frame::Roster(_) | Frame::Ignored => {
                Frame::Ignored
            }
        }
    }

    pub(super) fn receive_envelope(
        &mut self,
        now: Timestamp,
        from: NodeId,
        envelope: Envelope,
    ) -> Frame {
        let header = envelope.header.clone();
        let bytes = envelope.to_bytes();
        if bytes.is_empty() || bytes.len() as u64 > envelope::MAX_ENVELOPE_BYTES {
            return Frame::refused(
                header.message_id,
                true,
                "envelope larger than the protocol limit",
            );
        }
        let digest = digest_bytes(&bytes);
        let existing = if self.config.injected_bugs.skip_dedup {
            Ok(None)
        } else {
            self.store.get_inbox(&header.sender, &header.message_id)
        };
        match existing {
            Ok(Some(existing)) => {
                if existing.digest == digest {
                    // A retry or a second path: answer with the original receipt, store nothing.
                    return Frame::Receipt(existing.receipt);
                }
                return self.reject_inbound(
                    from,
                    header.message_id,
                    &OpenError::Malformed(quickfreeze_keys::codec::CodecError::Malformed(
                        "message id reused with different content".into(),
                    )),
                );
            }
            Ok(None) => {}
            Err(error) => return self.store_failed(header.message_id, error),
        }
        let opened = envelope::open(
            &self.identity,
            &self.roster,
            &envelope,
            now,
            &self.config.accept,
        );
        let payload = match opened {
            Ok((_, payload)) => payload,
            Err(OpenError::BadSignature(_)) if self.config.injected_bugs.skip_signature_check => {
                let Ok((_, plaintext)) = envelope::open_bytes_unverified(&self.identity, &envelope)
                else {
                    return Frame::refused(header.message_id, true, "does not decrypt");
                };
                match Payload::from_bytes(&plaintext) {
                    Ok(payload) => payload,
                    Err(_) => return Frame::refused(header.message_id, true, "payload malformed"),
                }
            }
            Err(error) => return self.reject_inbound(from, header.message_id, &error),
        };
        // The sender's node validated it on submit; a payload that fails here is a broken or
        // hostile peer, and storing it would put something in the inbox the console cannot show.
        if let Err(errors) = payload.validate() {
            let reason = format!(
                "the request fails validation: {}",
                errors.to_string().replace('\n', "; ")
            );
            self.push_event(Event::InboundRejected {
                from,
                reason: reason.clone(),
            });
            return Frame::refused(header.message_id, true, reason);
        }
        let via_relay = (from != header.sender).then_some(from);
        let receipt = Receipt::sign(
            &self.identity,
            ReceiptBody {
                message_id: header.message_id,
                envelope_digest: digest,
                sender: header.sender,
                recipient: self.me,
                signer: self.me,
                received_at: now,
                kind: ReceiptKind::Delivered,
            },
        );
        let kind = payload.kind();
        let handling = payload.handling().cloned();
        let status_update = match &payload {
            Payload::Status(update) => Some(update.clone()),
            _ => None,
        };
        let entry = InboxEntry {
            sender: header.sender,
            message_id: header.message_id,
            priority: header.priority,
            received_at: now,
            created_at: header.created_at,
            via_relay,
            envelope: bytes,
            digest,
            payload,
            receipt: receipt.clone(),
            acknowledged_at: None,
            replies: Vec::new(),
        };
        if self.config.injected_bugs.receipt_before_store {
            self.deferred_inbox.push(entry);
        } else if let Err(error) = self.store.put_inbox(&entry) {
            return self.store_failed(header.message_id, error);
        }
        self.push_event(Event::Received {
            sender: header.sender,
            message_id: header.message_id,
            priority: header.priority,
            kind,
            via_relay,
            digest,
            handling,
            reannounced: false,
        });
        if let Some(update) = status_update {
            self.record_status(now, header.sender, header.message_id, update);
        }
        Frame::Receipt(receipt)
    }

    pub(super) fn record_status(
        &mut self,
        now: Timestamp,
        from: NodeId,
        carrier: MessageId,
        update: StatusUpdate,
    ) {
        let references = update.references;
        let entry = self
            .outbox
            .get(&references)
            .cloned()
            .or_else(|| self.store.get_outbox(&references).ok().flatten());
        let Some(mut entry) = entry else {
            return;
        };
        // Only the recipient of our message may report on it.
        if entry.recipient != from {
            return;
        }
        let status = update.status.clone();
        entry.status_history.push(StatusRecord {
            received_at: now,
            message_id: carrier,
            update,
        });
        if let Err(error) = self.store.put_outbox(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
            return;
        }
        if let Some(live) = self.outbox.get_mut(&references) {
            live.status_history = entry.status_history.clone();
        }
        self.push_event(Event::StatusReceived {
            references,
            from,
            status,
        });
    }
}
