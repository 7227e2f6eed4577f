//! The hostile member: a roster member whose node is compromised.
//!
//! It has no core. During the safety phase the simulator asks it for an attack every so often
//! ([`Hostile::attack`]) and delivers the bytes over the virtual network like any request. It
//! sees some ciphertext on the wire ([`Hostile::observe_envelope`], [`Hostile::observe_receipt`]:
//! a compromised relay operator or an on-path observer would), and it abuses what it sees:
//! garbage and oversized batches, envelopes with a flipped byte, envelopes re-signed under its
//! own name (stolen ciphertext, re-addressed), envelopes forged in another member's name
//! (including decryptable ones that only the signature check stops), envelopes from the future or already expired, hand-offs that are not its to make, forged and
//! tampered receipts, a roster-serial bait followed by a forged roster, and replays of genuine
//! envelopes and receipts (which must be harmless: de-duplicated, never a second inbox entry).
//!
//! Each attack says whether every frame of it must be refused; the simulator checks the answer
//! and fails the run if a forgery is ever answered with a receipt or an ack.

use std::collections::{BTreeMap, VecDeque};

use quickfreeze_keys::codec;
use quickfreeze_keys::roster::SignedRoster;
use quickfreeze_keys::{Identity, NodeId, Signature, Timestamp};
use quickfreeze_proto::envelope::{
    self, digest_bytes, Envelope, EnvelopeHeader, SealParams, ENVELOPE_SIGNING_CONTEXT,
};
use quickfreeze_proto::frame::{Batch, Frame, MAX_FRAMES_PER_BATCH};
use quickfreeze_proto::payload::{example_free_text, Payload};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;

use super::world::{NodeKind, World};

const RING_CAPACITY: usize = 32;
const HOUR_MS: u64 = 3600 * 1000;

/// One attack, ready to send.
pub(crate) struct Attack {
    pub(crate) to: usize,
    pub(crate) bytes: Vec<u8>,
    pub(crate) kind: &'static str,
    /// Every frame must be answered with a refusal.
    pub(crate) must_be_refused: bool,
}

/// The compromised member's state.
pub(crate) struct Hostile {
    pub(crate) index: usize,
    identity: Identity,
    /// The run seed, to seal "in another member's name": sealing needs only the recipient's
    /// public key, so the hostile can produce a well-formed envelope claiming any sender; only
    /// the signature is out of its reach.
    seed: u64,
    envelopes: VecDeque<Envelope>,
    receipts: VecDeque<Receipt>,
    observed: u64,
    /// Attacks sent, by kind.
    pub(crate) sent: BTreeMap<&'static str, u64>,
    /// Attacks in flight: request id → (kind, must be refused).
    pub(crate) pending: BTreeMap<u64, (&'static str, bool)>,
    next_request_id: u64,
}

impl Hostile {
    pub(crate) fn new(index: usize, identity: Identity, seed: u64) -> Hostile {
        Hostile {
            index,
            identity,
            seed,
            envelopes: VecDeque::new(),
            receipts: VecDeque::new(),
            observed: 0,
            sent: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request_id: 1,
        }
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// Keeps some of the envelopes that cross the network.
    pub(crate) fn observe_envelope(&mut self, envelope: &Envelope) {
        self.observed += 1;
        if !self.observed.is_multiple_of(4) {
            return;
        }
        if self.envelopes.len() >= RING_CAPACITY {
            self.envelopes.pop_front();
        }
        self.envelopes.push_back(envelope.clone());
    }

    /// Keeps some of the receipts that cross the network.
    pub(crate) fn observe_receipt(&mut self, receipt: &Receipt) {
        if self.receipts.len() >= RING_CAPACITY {
            self.receipts.pop_front();
        }
        self.receipts.push_back(receipt.clone());
    }

    pub(crate) fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Signs `header` and `ciphertext` as the hostile member (the format `envelope::seal` uses).
    fn resign(&self, header: EnvelopeHeader, ciphertext: Vec<u8>) -> Envelope {
        let header_bytes = codec::encode(&header, 1024).unwrap_or_default();
        let mut message = ENVELOPE_SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
        message.extend_from_slice(&header_bytes);
        message.extend_from_slice(&ciphertext);
        let signature = Signature(self.identity.sign(&message));
        Envelope {
            header,
            ciphertext,
            signature,
        }
    }

    /// A correctly sealed envelope from the hostile member with the given times.
    fn own_envelope(
        &self,
        rng: &mut ChaCha8Rng,
        world: &World,
        recipient: usize,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Option<Envelope> {
        let member = world.roster.member(&world.ids[recipient])?;
        let mut text = example_free_text();
        text.case_reference = Some("HOSTILE-FORGERY".into());
        let params = SealParams {
            message_id: MessageId::random(rng),
            created_at,
            expires_at,
            priority: Priority::Routine,
        };
        envelope::seal(
            &self.identity,
            member,
            &Payload::FreeText(text),
            params,
            rng,
        )
        .ok()
    }

    fn batch(serial: u64, frames: Vec<Frame>) -> Vec<u8> {
        Batch::new(serial, frames).to_bytes().unwrap_or_default()
    }

    fn random_member(rng: &mut ChaCha8Rng, world: &World) -> usize {
        loop {
            let index = rng.random_range(0..world.kinds.len());
            if world.kinds[index] == NodeKind::Member {
                return index;
            }
        }
    }

    fn relay_of(rng: &mut ChaCha8Rng, world: &World, recipient: &NodeId) -> Option<usize> {
        let relays = &world.roster.member(recipient)?.relays;
        if relays.is_empty() {
            return None;
        }
        world
            .index_of
            .get(&relays[rng.random_range(0..relays.len())])
            .copied()
    }

    /// Picks and builds the next attack. `now` is the hostile node's clock.
    pub(crate) fn attack(
        &mut self,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: Timestamp,
    ) -> Option<Attack> {
        let serial = world.roster.serial;
        let captured = (!self.envelopes.is_empty())
            .then(|| self.envelopes[rng.random_range(0..self.envelopes.len())].clone());
        let roll = rng.random_range(0..17u32);
        let attack = match (roll, captured) {
            (0, _) | (1..=9, None) => {
                let mut bytes = vec![0u8; rng.random_range(0..2_000)];
                rng.fill_bytes(&mut bytes);
                if rng.random_bool(0.5) && !bytes.is_empty() {
                    bytes[0] = quickfreeze_proto::frame::BATCH_VERSION;
                }
                Attack {
                    to: Self::random_member(rng, world),
                    bytes,
                    kind: "garbage",
                    must_be_refused: true,
                }
            }
            (1, _) => {
                let frames = vec![Frame::RosterRequest; MAX_FRAMES_PER_BATCH + 1];
                Attack {
                    to: Self::random_member(rng, world),
                    bytes: Self::batch(serial, frames),
                    kind: "too-many-frames",
                    must_be_refused: true,
                }
            }
            (2, Some(mut envelope)) => {
                let to = *world.index_of.get(&envelope.header.recipient)?;
                if envelope.ciphertext.is_empty() {
                    return None;
                }
                let at = rng.random_range(0..envelope.ciphertext.len());
                envelope.ciphertext[at] ^= 1 << rng.random_range(0..8);
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "tampered-ciphertext",
                    must_be_refused: true,
                }
            }
            (3, Some(mut envelope)) => {
                let to = *world.index_of.get(&envelope.header.recipient)?;
                // Every branch really changes the signed header.
                match rng.random_range(0..3) {
                    0 => {
                        envelope.header.priority = match envelope.header.priority {
                            Priority::Emergency => Priority::Routine,
                            _ => Priority::Emergency,
                        }
                    }
                    1 => envelope.header.expires_at = envelope.header.expires_at.plus_ms(1),
                    _ => envelope.header.message_id.0[0] ^= 0x80,
                }
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "tampered-header",
                    must_be_refused: true,
                }
            }
            (4, _) => {
                let to = Self::random_member(rng, world);
                let mut envelope = self.own_envelope(rng, world, to, now, now.plus_ms(HOUR_MS))?;
                // Claim another member sent it; the signature is still the hostile's.
                let victim = Self::random_member(rng, world);
                if victim == to {
                    return None;
                }
                envelope.header.sender = world.ids[victim];
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "forged-sender",
                    must_be_refused: true,
                }
            }
            (5, Some(envelope)) => {
                let to = *world.index_of.get(&envelope.header.recipient)?;
                let mut header = envelope.header.clone();
                header.sender = self.node_id();
                let forged = self.resign(header, envelope.ciphertext);
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(forged)]),
                    kind: "resigned-stolen-ciphertext",
                    must_be_refused: true,
                }
            }
            (6, Some(envelope)) => {
                let to = Self::random_member(rng, world);
                if world.ids[to] == envelope.header.recipient {
                    return None;
                }
                let mut header = envelope.header.clone();
                header.sender = self.node_id();
                header.recipient = world.ids[to];
                let forged = self.resign(header, envelope.ciphertext);
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(forged)]),
                    kind: "readdressed",
                    must_be_refused: true,
                }
            }
            (7, _) => {
                let to = Self::random_member(rng, world);
                let created = now.plus_ms(HOUR_MS);
                let envelope =
                    self.own_envelope(rng, world, to, created, created.plus_ms(HOUR_MS))?;
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "from-the-future",
                    must_be_refused: true,
                }
            }
            (8, _) => {
                let to = Self::random_member(rng, world);
                let created = Timestamp(now.0.saturating_sub(20 * HOUR_MS));
                let expires = Timestamp(now.0.saturating_sub(HOUR_MS));
                let envelope = self.own_envelope(rng, world, to, created, expires)?;
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "expired",
                    must_be_refused: true,
                }
            }
            (9, Some(mut envelope)) => {
                let to = Self::relay_of(rng, world, &envelope.header.recipient)?;
                if !envelope.ciphertext.is_empty() {
                    let at = rng.random_range(0..envelope.ciphertext.len());
                    envelope.ciphertext[at] ^= 0x01;
                }
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Handoff(envelope)]),
                    kind: "handoff-tampered",
                    must_be_refused: true,
                }
            }
            (10, Some(envelope)) => {
                let to = Self::relay_of(rng, world, &envelope.header.recipient)?;
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Handoff(envelope)]),
                    kind: "handoff-not-sender",
                    must_be_refused: true,
                }
            }
            (11, Some(envelope)) => {
                let header = &envelope.header;
                let to = *world.index_of.get(&header.sender)?;
                let impersonate = rng.random_bool(0.5);
                let body = ReceiptBody {
                    message_id: header.message_id,
                    envelope_digest: digest_bytes(&envelope.to_bytes()),
                    sender: header.sender,
                    recipient: header.recipient,
                    signer: if impersonate {
                        header.recipient
                    } else {
                        self.node_id()
                    },
                    received_at: now,
                    kind: ReceiptKind::Delivered,
                };
                let receipt = Receipt::sign(&self.identity, body);
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Receipt(receipt)]),
                    kind: "forged-receipt",
                    must_be_refused: true,
                }
            }
            (12, _) if !self.receipts.is_empty() => {
                let mut receipt = self.receipts[rng.random_range(0..self.receipts.len())].clone();
                let to = *world.index_of.get(&receipt.body.sender)?;
                receipt.body.received_at = receipt.body.received_at.plus_ms(1);
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Receipt(receipt)]),
                    kind: "tampered-receipt",
                    must_be_refused: true,
                }
            }
            (13, _) => Attack {
                to: Self::random_member(rng, world),
                bytes: Self::batch(serial + 1_000, vec![Frame::RosterRequest]),
                kind: "roster-bait",
                must_be_refused: false,
            },
            (14, Some(envelope)) => {
                let to = *world.index_of.get(&envelope.header.recipient)?;
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "replay-genuine",
                    must_be_refused: false,
                }
            }
            (15, _) if !self.receipts.is_empty() => {
                let receipt = self.receipts[rng.random_range(0..self.receipts.len())].clone();
                let to = *world.index_of.get(&receipt.body.sender)?;
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Receipt(receipt)]),
                    kind: "replay-receipt",
                    must_be_refused: false,
                }
            }
            (16, _) => {
                // A perfectly decryptable envelope "from" another member with a signature that
                // is not theirs: only the signature check stands between it and the inbox.
                let to = Self::random_member(rng, world);
                let victim = Self::random_member(rng, world);
                if victim == to {
                    return None;
                }
                let member = world.roster.member(&world.ids[to])?;
                let mut text = example_free_text();
                text.case_reference = Some("HOSTILE-FORGERY".into());
                let params = SealParams {
                    message_id: MessageId::random(rng),
                    created_at: now,
                    expires_at: now.plus_ms(HOUR_MS),
                    priority: Priority::Routine,
                };
                let sealer = super::world::identity(self.seed, victim);
                let mut envelope =
                    envelope::seal(&sealer, member, &Payload::FreeText(text), params, rng).ok()?;
                envelope.signature = Signature(self.identity.sign(&envelope.ciphertext));
                Attack {
                    to,
                    bytes: Self::batch(serial, vec![Frame::Deliver(envelope)]),
                    kind: "decryptable-forgery",
                    must_be_refused: true,
                }
            }
            _ => return None,
        };
        *self.sent.entry(attack.kind).or_default() += 1;
        Some(attack)
    }

    /// What the hostile member answers when an honest node asks it something (after the
    /// roster bait, nodes ask it for its roster): a forged roster, garbage, or nothing at all.
    pub(crate) fn answer(&mut self, rng: &mut ChaCha8Rng, world: &World) -> Option<Vec<u8>> {
        let serial = world.roster.serial + 1_000;
        match rng.random_range(0..4u32) {
            0 => {
                // The real roster with a higher serial and the old signatures: must not verify.
                let mut signed = SignedRoster::from_bytes(&world.signed_roster).ok()?;
                let mut roster = signed.roster_unverified().ok()?;
                roster.serial = serial;
                signed.body = roster.canonical_bytes().ok()?;
                let forged = signed.to_bytes().ok()?;
                Some(Self::batch(serial, vec![Frame::Roster(forged)]))
            }
            1 => {
                let mut bytes = vec![0u8; rng.random_range(0..600)];
                rng.fill_bytes(&mut bytes);
                Some(Self::batch(serial, vec![Frame::Roster(bytes)]))
            }
            2 => {
                let mut bytes = vec![0u8; rng.random_range(0..600)];
                rng.fill_bytes(&mut bytes);
                Some(bytes)
            }
            _ => None,
        }
    }
}
