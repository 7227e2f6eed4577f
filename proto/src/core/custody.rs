//! The relay role: holding envelopes for members that cannot always be reached, within limits
//! per sender and in total, forwarding them to the recipient, and carrying the recipient's
//! delivery receipt back to the sender.
//!
//! Data flow: `receive` hands a `Frame::Handoff` to `take_custody`, which stores the envelope
//! and answers with a custody receipt; `transmit` asks this room for the frame of a due relay job;
//! `answer` reports the recipient's receipt (`relay_delivered`) or a refusal (`relay_fail`).
//! A relay only ever sees ciphertext: it verifies the outer signature and membership, not content.

use quickfreeze_keys::roster::Role;
use quickfreeze_keys::{NodeId, Timestamp};

use super::work::{Item, Job};
use super::{Core, Event, RelayEntry, RelayState, Store};
use crate::envelope::{self, digest_bytes, Envelope};
use crate::frame::Frame;
use crate::ids::MessageId;
use crate::receipt::{Receipt, ReceiptBody, ReceiptKind};

impl<S: Store> Core<S> {
    pub(super) fn take_custody(
        &mut self,
        now: Timestamp,
        from: NodeId,
        envelope: Envelope,
    ) -> Frame {
        let header = envelope.header.clone();
        let my_role = self.roster.member(&self.me).map(|member| member.role);
        if my_role != Some(Role::Relay) {
            return Frame::refused(header.message_id, true, "this node is not a relay");
        }
        if let Err(error) =
            envelope::verify_outer(&self.roster, &envelope, now, &self.config.accept)
        {
            return self.reject_inbound(from, header.message_id, &error);
        }
        if from != header.sender {
            return Frame::refused(
                header.message_id,
                true,
                "only the sender may hand an envelope to a relay",
            );
        }
        let serves = self
            .roster
            .member(&header.recipient)
            .is_some_and(|member| member.relays.contains(&self.me));
        if !serves {
            return Frame::refused(
                header.message_id,
                true,
                "this relay does not hold mail for that recipient",
            );
        }
        let key = (header.sender, header.message_id);
        let bytes = envelope.to_bytes();
        if bytes.is_empty() || bytes.len() as u64 > envelope::MAX_ENVELOPE_BYTES {
            return Frame::refused(
                header.message_id,
                true,
                "envelope larger than the protocol limit",
            );
        }
        let digest = digest_bytes(&bytes);
        let existing = match self.relay.get(&key) {
            Some(entry) => Some(entry.clone()),
            None => match self.store.get_relay(&key.0, &key.1) {
                Ok(entry) => entry,
                Err(error) => return self.store_failed(header.message_id, error),
            },
        };
        if let Some(existing) = existing {
            if existing.digest == digest {
                return match existing.state {
                    RelayState::ReceiptPending { receipt } => {
                        // The sender is asking again, so it is reachable now: hand it the
                        // recipient's receipt in the answer and push it again as well.
                        self.schedule(Job::RelayReceipt(key.0, key.1), now, existing.priority);
                        Frame::Receipt(receipt)
                    }
                    _ => Frame::Receipt(existing.custody_receipt),
                };
            }
            return Frame::refused(
                header.message_id,
                true,
                "message id reused with different content",
            );
        }
        let (count, held) = self
            .relay_bytes_by_sender
            .get(&header.sender)
            .copied()
            .unwrap_or_default();
        let size = bytes.len() as u64;
        if count >= self.config.relay_max_messages_per_sender
            || held + size > self.config.relay_max_bytes_per_sender
            || self.relay_bytes_total + size > self.config.relay_max_bytes_total
        {
            self.push_event(Event::InboundRejected {
                from,
                reason: format!("relay storage limit reached for sender {}", header.sender),
            });
            return Frame::refused(
                header.message_id,
                false,
                "relay storage limit reached; retry later",
            );
        }
        let custody_receipt = Receipt::sign(
            &self.identity,
            ReceiptBody {
                message_id: header.message_id,
                envelope_digest: digest,
                sender: header.sender,
                recipient: header.recipient,
                signer: self.me,
                received_at: now,
                kind: ReceiptKind::Custody,
            },
        );
        let entry = RelayEntry {
            sender: header.sender,
            message_id: header.message_id,
            recipient: header.recipient,
            priority: header.priority,
            received_at: now,
            expires_at: header.expires_at,
            envelope: Some(bytes),
            digest,
            custody_receipt: custody_receipt.clone(),
            state: RelayState::Holding,
        };
        if let Err(error) = self.store.put_relay(&entry) {
            return self.store_failed(header.message_id, error);
        }
        self.account_relay(&entry, true);
        self.relay.insert(key, entry);
        self.schedule(Job::RelayDeliver(key.0, key.1), now, header.priority);
        self.push_event(Event::RelayHolding {
            sender: header.sender,
            recipient: header.recipient,
            message_id: header.message_id,
        });
        Frame::Receipt(custody_receipt)
    }

    pub(super) fn relay_fail(&mut self, sender: NodeId, message_id: MessageId, reason: String) {
        let key = (sender, message_id);
        self.unschedule(Job::RelayDeliver(sender, message_id));
        self.unschedule(Job::RelayReceipt(sender, message_id));
        let Some(entry) = self.relay.get(&key).cloned() else {
            return;
        };
        self.account_relay(&entry, false);
        let mut entry = entry;
        entry.envelope = None;
        entry.state = RelayState::Failed {
            reason: reason.clone(),
        };
        if let Err(error) = self.store.put_relay(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        self.push_event(Event::RelayFailed {
            sender,
            recipient: entry.recipient,
            message_id,
            reason,
        });
        self.relay.remove(&key);
    }

    pub(super) fn account_relay(&mut self, entry: &RelayEntry, add: bool) {
        let bytes = entry.held_bytes();
        let counts = self.relay_bytes_by_sender.entry(entry.sender).or_default();
        if add {
            counts.0 += 1;
            counts.1 += bytes;
            self.relay_bytes_total += bytes;
        } else {
            counts.0 = counts.0.saturating_sub(1);
            counts.1 = counts.1.saturating_sub(bytes);
            self.relay_bytes_total = self.relay_bytes_total.saturating_sub(bytes);
        }
    }

    pub(super) fn relay_delivered(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        sender: NodeId,
        message_id: MessageId,
        receipt: Receipt,
    ) {
        let key = (sender, message_id);
        let Some(entry) = self.relay.get(&key).cloned() else {
            return;
        };
        let checked = if receipt.body.kind == ReceiptKind::Delivered {
            receipt.verify_for(
                &self.roster,
                now,
                &message_id,
                &sender,
                &entry.recipient,
                &entry.digest,
            )
        } else {
            Err(crate::receipt::ReceiptError::Mismatch)
        };
        if let Err(error) = checked {
            self.push_event(Event::ReceiptRejected {
                message_id,
                from: peer,
                reason: error.to_string(),
            });
            let at = now.plus_ms(self.config.retry_base_ms);
            self.schedule(Job::RelayDeliver(sender, message_id), at, entry.priority);
            return;
        }
        self.account_relay(&entry, false);
        let mut entry = entry;
        entry.envelope = None;
        entry.state = RelayState::ReceiptPending { receipt };
        if let Err(error) = self.store.put_relay(&entry) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        self.push_event(Event::RelayDelivered {
            sender,
            recipient: entry.recipient,
            message_id,
        });
        let priority = entry.priority;
        self.relay.insert(key, entry);
        self.schedule(Job::RelayReceipt(sender, message_id), now, priority);
    }

    /// The frame forwarding a held envelope to its recipient, once the recipient is not backing
    /// off; fails the relay entry instead when the message expired before it could be delivered.
    pub(super) fn prepare_relay_deliver(
        &mut self,
        now: Timestamp,
        sender: NodeId,
        message_id: MessageId,
    ) -> Option<(NodeId, Frame, Item, usize)> {
        let entry = self.relay.get(&(sender, message_id))?;
        if now >= entry.expires_at {
            self.relay_fail(
                sender,
                message_id,
                "expired before the recipient could be reached".into(),
            );
            return None;
        }
        let (recipient, priority, deadline) = (entry.recipient, entry.priority, entry.expires_at);
        if self.wait_for_peer(
            now,
            recipient,
            Job::RelayDeliver(sender, message_id),
            priority,
            deadline,
        ) {
            return None;
        }
        let entry = self.relay.get(&(sender, message_id))?;
        let envelope = Envelope::from_bytes(entry.envelope.as_ref()?).ok()?;
        let size = entry.held_bytes() as usize;
        Some((
            entry.recipient,
            Frame::Deliver(envelope),
            Item::RelayDeliver(sender, message_id),
            size,
        ))
    }

    /// The frame carrying the recipient's delivery receipt back to the sender, until the receipt
    /// grace period after the message's expiry ends.
    pub(super) fn prepare_relay_receipt(
        &mut self,
        now: Timestamp,
        sender: NodeId,
        message_id: MessageId,
    ) -> Option<(NodeId, Frame, Item, usize)> {
        let entry = self.relay.get(&(sender, message_id))?;
        if now >= entry.expires_at.plus_ms(self.config.receipt_grace_ms) {
            self.relay_fail(
                sender,
                message_id,
                "sender unreachable until the receipt grace period ended".into(),
            );
            return None;
        }
        let priority = entry.priority;
        let deadline = entry.expires_at.plus_ms(self.config.receipt_grace_ms);
        if self.wait_for_peer(
            now,
            sender,
            Job::RelayReceipt(sender, message_id),
            priority,
            deadline,
        ) {
            return None;
        }
        let entry = self.relay.get(&(sender, message_id))?;
        let RelayState::ReceiptPending { receipt } = &entry.state else {
            return None;
        };
        Some((
            sender,
            Frame::Receipt(receipt.clone()),
            Item::RelayReceipt(sender, message_id),
            256,
        ))
    }

    /// The sender acknowledged the carried receipt: the relay's work for this message is done
    /// (the store keeps the entry to answer a repeated hand-off).
    pub(super) fn relay_receipt_acknowledged(&mut self, sender: NodeId, message_id: MessageId) {
        self.busy.remove(&Job::RelayReceipt(sender, message_id));
        if let Some(entry) = self.relay.get(&(sender, message_id)).cloned() {
            let mut entry = entry;
            entry.state = RelayState::Done;
            if let Err(error) = self.store.put_relay(&entry) {
                self.push_event(Event::StoreFailed {
                    reason: error.to_string(),
                });
            }
            self.relay.remove(&(sender, message_id));
        }
    }
}
