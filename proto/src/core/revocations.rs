//! Revocation notices in the core: verified against the roster in use, stored, applied at once
//! and passed on.
//!
//! Applying a notice removes the members it revokes from the roster in use (the *effective*
//! roster: the verified signed roster minus every revoked member, and minus revoked relays in
//! members' relay lists). Every check that asks "is this a member?" (envelopes, receipts, relay
//! custody, which peers may connect) then refuses them from that moment, whatever `created_at`
//! the sender wrote (invariant 7). A relay discards what it holds from a revoked sender, with a
//! `RelayFailed` event each. The notice is stored durably before anything leaves (the shell's
//! flush rule) and pushed to every connected member.

use quickfreeze_keys::{CountryCode, NodeId, RevocationError, SignedRevocation};
use sha2::{Digest, Sha256};

use super::work::Item;
use super::{Core, Event, HeldRevocation, Store, StoreError};
use crate::frame::{Frame, MAX_REVOCATIONS_PER_FRAME};

/// Most revocation notices a node holds.
pub const MAX_HELD_REVOCATIONS: usize = 1024;

fn body_digest(body: &[u8]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&Sha256::digest(body));
    digest
}

impl<S: Store> Core<S> {
    /// The revocation notices in force, lowest serial first.
    pub fn revocations(&self) -> impl Iterator<Item = &quickfreeze_keys::Revocation> {
        self.revocations.iter().map(|held| &held.revocation)
    }

    /// The highest serial among the notices held (0: none).
    pub fn revocation_serial(&self) -> u64 {
        self.revocations
            .iter()
            .map(|held| held.revocation.serial)
            .max()
            .unwrap_or(0)
    }

    /// Verifies a signed notice against the roster in use and applies it (see the module docs).
    /// `from` is the peer that passed it on (`None`: this node's operator). Returns
    /// `Ok(Some(serial))` when it was new, `Ok(None)` when this node already held it.
    pub fn apply_revocation(
        &mut self,
        from: Option<NodeId>,
        bytes: &[u8],
    ) -> Result<Option<u64>, RevocationError> {
        let result = self.apply_revocation_inner(from, bytes);
        if let Err(error) = &result {
            self.push_event(Event::RevocationRejected {
                from: from.unwrap_or(self.me),
                reason: error.to_string(),
            });
        }
        result
    }

    fn apply_revocation_inner(
        &mut self,
        from: Option<NodeId>,
        bytes: &[u8],
    ) -> Result<Option<u64>, RevocationError> {
        let signed = SignedRevocation::from_bytes(bytes)?;
        let revocation = signed.verify(&self.roster)?;
        let digest = body_digest(&signed.body);
        if self
            .revocations
            .iter()
            .any(|held| held.body_digest == digest)
        {
            return Ok(None);
        }
        if self.revocations.len() >= MAX_HELD_REVOCATIONS {
            return Err(RevocationError::Invalid(format!(
                "this node already holds {MAX_HELD_REVOCATIONS} notices; renew the roster without the revoked members"
            )));
        }
        if let Err(error) = self.store.put_revocation(&digest, bytes) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
            return Err(RevocationError::Invalid(format!(
                "cannot store the notice: {error}"
            )));
        }
        let serial = revocation.serial;
        let reason = revocation.reason.clone();
        self.revocations.push(HeldRevocation {
            revocation,
            bytes: bytes.to_vec(),
            body_digest: digest,
        });
        self.revocations
            .sort_by_key(|held| (held.revocation.serial, held.body_digest));
        let revoked = self.enforce_revocations(&reason);
        self.push_event(Event::RevocationApplied {
            serial,
            revoked,
            reason,
        });
        let peers: Vec<NodeId> = self
            .connected
            .iter()
            .copied()
            .filter(|peer| Some(*peer) != from && self.roster.member(peer).is_some())
            .collect();
        for peer in peers {
            let frame = Frame::Revocations(vec![serde_bytes::ByteBuf::from(bytes.to_vec())]);
            self.send(peer, vec![frame], vec![Item::RevocationPush]);
        }
        Ok(Some(serial))
    }

    /// Removes every revoked member from the roster in use and discards what this relay holds
    /// from them. Returns the members removed now.
    pub(super) fn enforce_revocations(&mut self, reason: &str) -> Vec<(NodeId, CountryCode)> {
        if self.config.injected_bugs.ignore_revocations {
            return Vec::new();
        }
        let named: Vec<(NodeId, CountryCode)> = self
            .roster
            .members
            .iter()
            .filter(|member| {
                self.revocations
                    .iter()
                    .any(|held| held.revocation.revokes(member))
            })
            .map(|member| (member.node_id, member.country))
            .collect();
        if named.is_empty() {
            return named;
        }
        let revoked: Vec<NodeId> = named.iter().map(|(node, _)| *node).collect();
        self.roster
            .members
            .retain(|member| !revoked.contains(&member.node_id));
        for member in &mut self.roster.members {
            member.relays.retain(|relay| !revoked.contains(relay));
        }
        self.connected.retain(|peer| !revoked.contains(peer));
        let held: Vec<(NodeId, crate::MessageId)> = self
            .relay
            .keys()
            .filter(|(sender, _)| revoked.contains(sender))
            .copied()
            .collect();
        for (sender, message_id) in held {
            self.relay_fail(
                sender,
                message_id,
                format!("sender revoked by the roster authorities: {reason}"),
            );
        }
        named
    }

    /// Reloads the stored notices at start (each was verified when it was stored).
    pub(super) fn load_revocations(&mut self) -> Result<(), StoreError> {
        for bytes in self.store.revocations()? {
            let Ok(signed) = SignedRevocation::from_bytes(&bytes) else {
                continue;
            };
            let Ok(revocation) = signed.revocation_unverified() else {
                continue;
            };
            if revocation.network != self.roster.network {
                continue;
            }
            self.revocations.push(HeldRevocation {
                revocation,
                body_digest: body_digest(&signed.body),
                bytes,
            });
        }
        self.revocations
            .sort_by_key(|held| (held.revocation.serial, held.body_digest));
        self.enforce_revocations("stored revocation notice");
        Ok(())
    }

    /// The notices with a serial above `after`, at most [`MAX_REVOCATIONS_PER_FRAME`].
    pub(super) fn notices_after(&self, after: u64) -> Frame {
        Frame::Revocations(
            self.revocations
                .iter()
                .filter(|held| held.revocation.serial > after)
                .take(MAX_REVOCATIONS_PER_FRAME)
                .map(|held| serde_bytes::ByteBuf::from(held.bytes.clone()))
                .collect(),
        )
    }

    /// Notices a peer sent (pushed, or the answer to a request).
    pub(super) fn offered_revocations(&mut self, peer: NodeId, notices: Vec<serde_bytes::ByteBuf>) {
        for bytes in notices.into_iter().take(MAX_REVOCATIONS_PER_FRAME) {
            let _ = self.apply_revocation(Some(peer), &bytes);
        }
    }

    pub(super) fn note_revocation_serial(&mut self, peer: NodeId, serial: u64) {
        let mine = self.revocation_serial();
        if serial <= mine {
            return;
        }
        let state = self.peers.entry(peer).or_default();
        if state.revocation_request_pending || state.in_flight >= self.config.max_in_flight_per_peer
        {
            return;
        }
        state.revocation_request_pending = true;
        self.send(
            peer,
            vec![Frame::RevocationRequest { after: mine }],
            vec![Item::RevocationRequest],
        );
    }
}
