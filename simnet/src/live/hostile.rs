//! The hostile member of a live run: a roster member whose node is compromised.
//!
//! It is the harness itself, running a real libp2p swarm through `quickfreeze_node::network`
//! with the member's own key, so the nodes let it connect (it is on the roster). It sends, to
//! random members: garbage bytes, truncated batches, envelopes re-labelled with another member as
//! sender (the signature no longer matches), envelopes with a flipped ciphertext byte, genuine
//! envelopes of its own delivered to the wrong recipient, genuine envelopes already expired, and
//! delivery receipts forged in another member's name. None of these may be answered with a
//! receipt; every answer is decoded and a receipt for a forgery is recorded as a violation.
//! The inbox check after the run (nothing from the hostile member in any inbox) is the other half.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::Multiaddr;
use quickfreeze_keys::roster::Member;
use quickfreeze_keys::{Identity, NodeId, Timestamp};
use quickfreeze_node::network::{Network, NetworkConfig, NetworkEvent};
use quickfreeze_proto::envelope::{seal, Envelope, SealParams};
use quickfreeze_proto::frame::{Batch, Frame, MAX_BATCH_BYTES, PROTOCOL_ID};
use quickfreeze_proto::payload::{example_free_text, Payload};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::{MessageId, Priority};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HOUR_MS: u64 = 3600 * 1000;

/// What the hostile member did and what came back.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HostileStats {
    /// Frames sent, by kind of attack.
    pub sent: BTreeMap<String, u64>,
    /// Answers received (refusals, mostly).
    pub answered: u64,
    /// Requests that failed (dropped, connection closed, node down).
    pub failed: u64,
    /// Forgeries answered with a receipt: must stay empty.
    pub violations: Vec<String>,
}

/// Runs the hostile member until `stop` is set: `rate` attacks per second at members in
/// `targets` (their roster entries). Blocks; run it on its own thread.
pub(crate) fn run(
    identity: Identity,
    roster_serial: u64,
    targets: Vec<Member>,
    rate: f64,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<HostileStats>>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async move {
        let config = NetworkConfig {
            max_request_bytes: MAX_BATCH_BYTES as usize,
            max_response_bytes: MAX_BATCH_BYTES as usize,
            protocol: libp2p::StreamProtocol::new(PROTOCOL_ID),
            request_timeout: Duration::from_secs(10),
            ..NetworkConfig::default()
        };
        let mut network = Network::new(identity.to_libp2p_keypair(), config)
            .map_err(|error| error.to_string())?;
        let mut allowed = Vec::new();
        for member in &targets {
            let peer = member
                .node_id
                .to_peer_id()
                .map_err(|error| error.to_string())?;
            let addresses: Vec<Multiaddr> = member
                .addresses
                .iter()
                .filter_map(|text| text.parse().ok())
                .collect();
            allowed.push((peer, addresses));
        }
        network.set_allowed_peers(allowed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut forger = Forger {
            identity,
            roster_serial,
            targets,
        };
        let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
        let mut ticker = tokio::time::interval(period);
        let mut pending: BTreeMap<libp2p::request_response::OutboundRequestId, &'static str> =
            BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = ticker.tick() => {
                    // Bounded: never more than 64 attacks in flight.
                    if pending.len() >= 64 {
                        continue;
                    }
                    let (to, kind, bytes) = forger.attack(&mut rng);
                    let Ok(peer) = to.to_peer_id() else { continue };
                    if let Ok(id) = network.send_request(peer, bytes) {
                        pending.insert(id, kind);
                        if let Ok(mut stats) = stats.lock() {
                            *stats.sent.entry(kind.to_owned()).or_default() += 1;
                        }
                    }
                }
                event = network.next_event() => {
                    let Ok(mut stats) = stats.lock() else { continue };
                    match event {
                        NetworkEvent::Response { request_id, frame, peer } => {
                            stats.answered += 1;
                            let kind = pending.remove(&request_id).unwrap_or("?");
                            if let Ok(batch) = Batch::from_bytes(&frame) {
                                if batch.frames.iter().any(|frame| matches!(frame, Frame::Receipt(_))) {
                                    stats.violations.push(format!(
                                        "{peer} answered the forgery `{kind}` with a receipt"
                                    ));
                                }
                            }
                        }
                        NetworkEvent::OutboundFailure { request_id, .. } => {
                            pending.remove(&request_id);
                            stats.failed += 1;
                        }
                        NetworkEvent::InboundRequest { .. } => {
                            // Dropping the channel: the hostile member answers nobody.
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    })
}

struct Forger {
    identity: Identity,
    roster_serial: u64,
    targets: Vec<Member>,
}

impl Forger {
    fn pick(&self, rng: &mut ChaCha8Rng) -> &Member {
        &self.targets[rng.random_range(0..self.targets.len())]
    }

    fn envelope(
        &self,
        rng: &mut ChaCha8Rng,
        to: &Member,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Option<Envelope> {
        let mut text = example_free_text();
        text.subject = "hostile".into();
        let params = SealParams {
            message_id: MessageId::random(rng),
            created_at,
            expires_at,
            priority: Priority::Urgent,
        };
        seal(
            &self.identity,
            to,
            &Payload::FreeText(text),
            params,
            &mut rand::rng(),
        )
        .ok()
    }

    fn batch(&self, frames: Vec<Frame>) -> Vec<u8> {
        Batch::new(self.roster_serial, frames)
            .to_bytes()
            .unwrap_or_default()
    }

    /// One attack: the target, its kind, the request bytes.
    fn attack(&mut self, rng: &mut ChaCha8Rng) -> (NodeId, &'static str, Vec<u8>) {
        let to = self.pick(rng).clone();
        let now = Timestamp::now();
        let fresh = |forger: &Forger, rng: &mut ChaCha8Rng| {
            forger.envelope(rng, &to, now, now.plus_ms(HOUR_MS))
        };
        let (kind, bytes) = match rng.random_range(0..7u32) {
            0 => {
                let mut bytes = vec![0u8; rng.random_range(1..600)];
                rng.fill_bytes(&mut bytes);
                ("garbage", bytes)
            }
            1 => match fresh(self, rng) {
                Some(envelope) => {
                    let mut bytes = self.batch(vec![Frame::Deliver(envelope)]);
                    bytes.truncate(bytes.len() / 2);
                    ("truncated-batch", bytes)
                }
                None => ("garbage", vec![0xff; 8]),
            },
            2 => match fresh(self, rng) {
                Some(mut envelope) => {
                    // Claims to come from another member: the signature no longer matches.
                    let other = self.pick(rng).node_id;
                    envelope.header.sender = other;
                    (
                        "impersonated-sender",
                        self.batch(vec![Frame::Deliver(envelope)]),
                    )
                }
                None => ("garbage", vec![0xff; 8]),
            },
            3 => match fresh(self, rng) {
                Some(mut envelope) => {
                    if let Some(byte) = envelope.ciphertext.first_mut() {
                        *byte ^= 0x01;
                    }
                    (
                        "tampered-ciphertext",
                        self.batch(vec![Frame::Deliver(envelope)]),
                    )
                }
                None => ("garbage", vec![0xff; 8]),
            },
            4 => {
                // Genuine and signed, but sealed for someone else.
                let other = self.pick(rng).clone();
                match self.envelope(rng, &other, now, now.plus_ms(HOUR_MS)) {
                    Some(envelope) if other.node_id != to.node_id => (
                        "wrong-recipient",
                        self.batch(vec![Frame::Deliver(envelope)]),
                    ),
                    _ => ("garbage", vec![0x00; 3]),
                }
            }
            5 => {
                let created = Timestamp(now.0.saturating_sub(48 * HOUR_MS));
                let expired = Timestamp(now.0.saturating_sub(24 * HOUR_MS));
                match self.envelope(rng, &to, created, expired) {
                    Some(envelope) => ("expired", self.batch(vec![Frame::Deliver(envelope)])),
                    None => ("garbage", vec![0xff; 8]),
                }
            }
            _ => {
                // A delivery receipt "from" another member, signed with the hostile key.
                let claimed = self.pick(rng).node_id;
                let body = ReceiptBody {
                    message_id: MessageId::random(rng),
                    envelope_digest: quickfreeze_proto::envelope::digest_bytes(b"forged"),
                    sender: to.node_id,
                    recipient: claimed,
                    signer: claimed,
                    received_at: now,
                    kind: ReceiptKind::Delivered,
                };
                let receipt = Receipt::sign(&self.identity, body);
                ("forged-receipt", self.batch(vec![Frame::Receipt(receipt)]))
            }
        };
        (to.node_id, kind, bytes)
    }
}
