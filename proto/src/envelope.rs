//! Sealed, signed envelopes: what crosses the network and what relays store.
//!
//! Sealing is encrypt-then-sign:
//! 1. an ephemeral X25519 key agrees a secret with the recipient's static X25519 key from the roster;
//! 2. HKDF-SHA256 derives a one-time ChaCha20-Poly1305 key, with the encoded header (and the
//!    recipient's key) as context, so the key is bound to this exact header;
//! 3. the payload is encrypted with the header as associated data;
//! 4. the sender signs `ENVELOPE_SIGNING_CONTEXT || header || ciphertext` with its Ed25519 key.
//!
//! The recipient is inside the signed header, so an envelope cannot be re-addressed; a relay can
//! check the outer signature and the sender's membership ([`verify_outer`]) without any secret key
//! and without learning the content. Because every key is used for exactly one message, the AEAD
//! nonce can be fixed.

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use quickfreeze_keys::codec::{self, CodecError};
use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{Digest32, EncryptionKey, Identity, NodeId, Signature, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ids::{MessageId, Priority};
use crate::payload::{Payload, MAX_PAYLOAD_BYTES};

/// Current envelope format version. The version byte leads every encoded envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// Largest encoded envelope accepted: the payload limit plus header, AEAD tag and signature.
pub const MAX_ENVELOPE_BYTES: u64 = MAX_PAYLOAD_BYTES + 4096;
/// Domain separation for envelope signatures.
pub const ENVELOPE_SIGNING_CONTEXT: &[u8] = b"quickfreeze/envelope/v1\0";
const HKDF_SALT: &[u8] = b"quickfreeze/seal/v1";

/// Everything about an envelope except the ciphertext and signature. Signed, and used as AEAD
/// associated data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeHeader {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub version: u8,
    /// Stable across retries and relay hops.
    pub message_id: MessageId,
    /// Who sealed and signed it.
    pub sender: NodeId,
    /// Who can open it.
    pub recipient: NodeId,
    /// When the sender created it.
    pub created_at: Timestamp,
    /// After this nobody delivers or accepts it.
    pub expires_at: Timestamp,
    /// Queue priority (visible to relays so they can order their queues).
    pub priority: Priority,
    /// The sender's one-time X25519 public key.
    pub ephemeral_key: EncryptionKey,
}

/// A sealed message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The signed header.
    pub header: EnvelopeHeader,
    /// ChaCha20-Poly1305 ciphertext of the encoded [`Payload`], tag appended.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// The sender's Ed25519 signature.
    pub signature: Signature,
}

/// Why an envelope was refused. Each is a value: nothing a peer sends can panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum OpenError {
    /// The bytes are not an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] CodecError),
    /// Made by another format version.
    #[error("envelope version {0} is not supported")]
    UnsupportedVersion(u8),
    /// The sender is not in the roster.
    #[error("sender {0} is not a member of the roster")]
    UnknownSender(NodeId),
    /// The sender's membership is not valid at this time.
    #[error("sender {0} is not a valid member at this time")]
    SenderNotValid(NodeId),
    /// The recipient is not in the roster.
    #[error("recipient {0} is not a member of the roster")]
    UnknownRecipient(NodeId),
    /// The signature does not verify.
    #[error("signature of sender {0} does not verify")]
    BadSignature(NodeId),
    /// Addressed to someone else.
    #[error("envelope is addressed to {0}, not to this node")]
    NotForMe(NodeId),
    /// Past its expiry.
    #[error("envelope expired at {0}")]
    Expired(Timestamp),
    /// Created further in the future than the clock-skew bound allows.
    #[error("envelope claims creation at {created_at}, more than {max_skew_ms} ms ahead of this node's clock")]
    FromTheFuture {
        /// Its creation time.
        created_at: Timestamp,
        /// The allowed skew.
        max_skew_ms: u64,
    },
    /// Expiry before creation, or a lifetime longer than allowed.
    #[error("envelope lifetime is invalid")]
    InvalidLifetime,
    /// The ciphertext does not decrypt (tampered, or sealed to another key).
    #[error("envelope does not decrypt")]
    DecryptionFailed,
    /// The plaintext is not a valid payload.
    #[error("payload is malformed: {0}")]
    PayloadMalformed(CodecError),
}

impl OpenError {
    /// Whether retrying the same envelope can ever succeed (false for forgeries, tampering,
    /// wrong addressing and expiry; true only for clock skew, which may resolve).
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            OpenError::FromTheFuture { .. } | OpenError::SenderNotValid(_)
        )
    }

    /// Whether a newer roster could make the same envelope acceptable: the sender or recipient
    /// is new, or a key rotated (a signature by a key, or sealing to a key, that only the newer
    /// roster lists).
    pub fn may_pass_with_newer_roster(&self) -> bool {
        matches!(
            self,
            OpenError::UnknownSender(_)
                | OpenError::UnknownRecipient(_)
                | OpenError::SenderNotValid(_)
                | OpenError::BadSignature(_)
                | OpenError::DecryptionFailed
        )
    }
}

/// Why an envelope could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The payload does not encode within the limit.
    #[error("payload too large: {0}")]
    Payload(#[from] CodecError),
    /// The recipient's key is a low-order point; the roster is broken.
    #[error("recipient {0} has an unusable encryption key")]
    WeakRecipientKey(NodeId),
}

/// Limits and tolerances for accepting envelopes.
#[derive(Clone, Copy, Debug)]
pub struct AcceptPolicy {
    /// How far ahead of our clock a creation time may be.
    pub max_clock_skew_ms: u64,
    /// Longest lifetime (expires_at - created_at) accepted.
    pub max_lifetime_ms: u64,
}

impl Default for AcceptPolicy {
    fn default() -> Self {
        AcceptPolicy {
            max_clock_skew_ms: 5 * 60 * 1000,
            max_lifetime_ms: 60 * 24 * 3600 * 1000,
        }
    }
}

impl Envelope {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Envelopes come from `seal` (bounded payload) or from a decoded batch (bounded by the
        // batch limit, far below this one), so encoding cannot hit the limit. Receivers refuse
        // any envelope whose bytes exceed MAX_ENVELOPE_BYTES.
        codec::encode(self, 64 * MAX_ENVELOPE_BYTES).unwrap_or_default()
    }

    /// Decodes an envelope from untrusted bytes (size-limited, trailing bytes rejected).
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, OpenError> {
        if let Some(&version) = bytes.first() {
            if version != ENVELOPE_VERSION {
                return Err(OpenError::UnsupportedVersion(version));
            }
        }
        Ok(codec::decode(bytes, MAX_ENVELOPE_BYTES)?)
    }

    /// SHA-256 of the canonical bytes: what receipts refer to.
    pub fn digest(&self) -> Digest32 {
        digest_bytes(&self.to_bytes())
    }
}

/// SHA-256 of some bytes as a [`Digest32`].
pub fn digest_bytes(bytes: &[u8]) -> Digest32 {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&Sha256::digest(bytes));
    Digest32(digest)
}

fn header_bytes(header: &EnvelopeHeader) -> Vec<u8> {
    // The header has fixed-size fields only; encoding cannot exceed this limit.
    codec::encode(header, 1024).unwrap_or_default()
}

fn signing_message(header: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(ENVELOPE_SIGNING_CONTEXT.len() + 8 + header.len() + ciphertext.len());
    message.extend_from_slice(ENVELOPE_SIGNING_CONTEXT);
    message.extend_from_slice(&(header.len() as u64).to_le_bytes());
    message.extend_from_slice(header);
    message.extend_from_slice(ciphertext);
    message
}

fn derive_key(shared: &[u8; 32], header: &[u8], recipient_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), shared);
    let mut info = Vec::with_capacity(header.len() + 32);
    info.extend_from_slice(header);
    info.extend_from_slice(recipient_key);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
    hkdf.expand(&info, &mut *key)
        .unwrap_or_else(|_| unreachable!("32-byte HKDF output is always valid"));
    key
}

/// What the caller decides about a new envelope.
#[derive(Clone, Copy, Debug)]
pub struct SealParams {
    /// The message id (fresh for a new message).
    pub message_id: MessageId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry time.
    pub expires_at: Timestamp,
    /// Priority.
    pub priority: Priority,
}

/// Seals `payload` for `recipient`. The RNG supplies the ephemeral key: the OS RNG in the daemon,
/// a seeded one in the simulator.
pub fn seal<R: rand::CryptoRng + ?Sized>(
    sender: &Identity,
    recipient: &Member,
    payload: &Payload,
    params: SealParams,
    rng: &mut R,
) -> Result<Envelope, SealError> {
    let plaintext = Zeroizing::new(payload.to_bytes()?);
    seal_bytes(sender, recipient, &plaintext, params, rng)
}

/// Seals already-encoded plaintext (exposed for tests and benchmarks).
pub fn seal_bytes<R: rand::CryptoRng + ?Sized>(
    sender: &Identity,
    recipient: &Member,
    plaintext: &[u8],
    params: SealParams,
    rng: &mut R,
) -> Result<Envelope, SealError> {
    let ephemeral = x25519_dalek::EphemeralSecret::random_from_rng(rng);
    let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral);
    let shared =
        ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(recipient.encryption_key.0));
    if !shared.was_contributory() {
        return Err(SealError::WeakRecipientKey(recipient.node_id));
    }
    let header = EnvelopeHeader {
        version: ENVELOPE_VERSION,
        message_id: params.message_id,
        sender: sender.node_id(),
        recipient: recipient.node_id,
        created_at: params.created_at,
        expires_at: params.expires_at,
        priority: params.priority,
        ephemeral_key: EncryptionKey(ephemeral_public.to_bytes()),
    };
    let header_encoded = header_bytes(&header);
    let key = derive_key(
        shared.as_bytes(),
        &header_encoded,
        &recipient.encryption_key.0,
    );
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let ciphertext = cipher
        .encrypt(
            &Nonce::default(),
            AeadPayload {
                msg: plaintext,
                aad: &header_encoded,
            },
        )
        .map_err(|_| {
            SealError::Payload(CodecError::TooLarge {
                len: plaintext.len(),
                limit: MAX_PAYLOAD_BYTES,
            })
        })?;
    let signature = Signature(sender.sign(&signing_message(&header_encoded, &ciphertext)));
    Ok(Envelope {
        header,
        ciphertext,
        signature,
    })
}

/// Checks what anyone holding the roster can check, without a secret key: version, sender and
/// recipient membership, signature, lifetime and expiry. Relays call this before taking custody.
pub fn verify_outer<'r>(
    roster: &'r Roster,
    envelope: &Envelope,
    now: Timestamp,
    policy: &AcceptPolicy,
) -> Result<&'r Member, OpenError> {
    let header = &envelope.header;
    if header.version != ENVELOPE_VERSION {
        return Err(OpenError::UnsupportedVersion(header.version));
    }
    let sender = roster
        .member(&header.sender)
        .ok_or(OpenError::UnknownSender(header.sender))?;
    // Trust is judged now (invariant 7): the sender's window is checked at the time this node
    // receives the bytes, never at the `created_at` the sender wrote, so back-dating cannot
    // revive a retired member.
    if sender.role == Role::Relay || !sender.is_valid_at(now) {
        return Err(OpenError::SenderNotValid(header.sender));
    }
    roster
        .member(&header.recipient)
        .ok_or(OpenError::UnknownRecipient(header.recipient))?;
    let message = signing_message(&header_bytes(header), &envelope.ciphertext);
    // Key rotation: the sender's current key, or a previous key still in its grace at `now`.
    if !sender.verify_at(&message, &envelope.signature.0, now) {
        return Err(OpenError::BadSignature(header.sender));
    }
    if header.expires_at <= header.created_at
        || header.expires_at.millis_since(header.created_at) > policy.max_lifetime_ms
    {
        return Err(OpenError::InvalidLifetime);
    }
    if now >= header.expires_at {
        return Err(OpenError::Expired(header.expires_at));
    }
    if header.created_at > now.plus_ms(policy.max_clock_skew_ms) {
        return Err(OpenError::FromTheFuture {
            created_at: header.created_at,
            max_skew_ms: policy.max_clock_skew_ms,
        });
    }
    Ok(sender)
}

/// Verifies and decrypts an envelope addressed to `me`.
pub fn open<'r>(
    me: &Identity,
    roster: &'r Roster,
    envelope: &Envelope,
    now: Timestamp,
    policy: &AcceptPolicy,
) -> Result<(&'r Member, Payload), OpenError> {
    let (sender, plaintext) = open_bytes(me, roster, envelope, now, policy)?;
    let payload = Payload::from_bytes(&plaintext).map_err(OpenError::PayloadMalformed)?;
    Ok((sender, payload))
}

/// [`open`] without decoding the payload (exposed for tests and benchmarks).
pub fn open_bytes<'r>(
    me: &Identity,
    roster: &'r Roster,
    envelope: &Envelope,
    now: Timestamp,
    policy: &AcceptPolicy,
) -> Result<(&'r Member, Zeroizing<Vec<u8>>), OpenError> {
    let sender = verify_outer(roster, envelope, now, policy)?;
    if envelope.header.recipient != me.node_id() {
        return Err(OpenError::NotForMe(envelope.header.recipient));
    }
    let plaintext = decrypt_at(me, envelope, now)?;
    Ok((sender, Zeroizing::new(plaintext)))
}

/// Decrypts without checking the signature, membership or expiry. Exists only so that the
/// simulator can prove its forgery checker catches a core that skips verification
/// ([`crate::core::InjectedBugs::skip_signature_check`]); never call it elsewhere.
#[doc(hidden)]
pub fn open_bytes_unverified(
    me: &Identity,
    envelope: &Envelope,
) -> Result<((), Zeroizing<Vec<u8>>), OpenError> {
    Ok(((), Zeroizing::new(decrypt(me, envelope)?)))
}

/// The AEAD half of opening with the active key only (used where no time is at hand).
fn decrypt(me: &Identity, envelope: &Envelope) -> Result<Vec<u8>, OpenError> {
    let header_encoded = header_bytes(&envelope.header);
    let shared = me.diffie_hellman(&envelope.header.ephemeral_key.0);
    decrypt_with(&shared, &me.encryption_public(), &header_encoded, envelope)
}

/// The AEAD half of opening: derive the one-time key from one of our static keys and the
/// ephemeral key. The header names no key, so (key rotation) the active key is tried first and
/// then each rotated-out key still in its grace at `now`; a wrong key fails the AEAD tag, so
/// trying is safe and at most a few X25519 operations.
fn decrypt_at(me: &Identity, envelope: &Envelope, now: Timestamp) -> Result<Vec<u8>, OpenError> {
    let header_encoded = header_bytes(&envelope.header);
    for key in me.decryption_keys_at(now) {
        let shared = key.diffie_hellman(&envelope.header.ephemeral_key.0);
        if let Ok(plaintext) = decrypt_with(&shared, &key.public(), &header_encoded, envelope) {
            return Ok(plaintext);
        }
    }
    Err(OpenError::DecryptionFailed)
}

fn decrypt_with(
    shared: &[u8; 32],
    our_public: &[u8; 32],
    header_encoded: &[u8],
    envelope: &Envelope,
) -> Result<Vec<u8>, OpenError> {
    let key = derive_key(shared, header_encoded, our_public);
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    cipher
        .decrypt(
            &Nonce::default(),
            AeadPayload {
                msg: &envelope.ciphertext,
                aad: header_encoded,
            },
        )
        .map_err(|_| OpenError::DecryptionFailed)
}
