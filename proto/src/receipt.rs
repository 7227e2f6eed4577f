//! Signed receipts: proof that a relay took custody of an envelope or that its recipient stored it.
//!
//! A receipt names the message id, the SHA-256 of the exact envelope bytes, the original sender
//! (so a relay knows where to carry it back), the signer, the time the signer stored the envelope,
//! and the kind. The sender accepts a delivery receipt only if it is signed by the envelope's
//! recipient and names the digest the sender recorded; a custody receipt only if signed by one of
//! the recipient's relays.

use quickfreeze_keys::codec::{self, CodecError};
use quickfreeze_keys::roster::{Role, Roster};
use quickfreeze_keys::{Digest32, Identity, NodeId, Signature, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ids::MessageId;

/// Domain separation for receipt signatures.
pub const RECEIPT_SIGNING_CONTEXT: &[u8] = b"quickfreeze/receipt/v1\0";
/// Receipts are small; anything larger is not one.
pub const MAX_RECEIPT_BYTES: u64 = 512;

/// What a receipt attests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiptKind {
    /// The recipient stored the envelope durably.
    Delivered,
    /// A relay stored the envelope durably and will deliver it.
    Custody,
}

/// The signed part of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The message.
    pub message_id: MessageId,
    /// SHA-256 of the envelope bytes the signer stored.
    pub envelope_digest: Digest32,
    /// The envelope's sender (where the receipt must go).
    pub sender: NodeId,
    /// The envelope's recipient.
    pub recipient: NodeId,
    /// Who signed: the recipient, or a relay for custody receipts.
    pub signer: NodeId,
    /// When the signer stored the envelope.
    pub received_at: Timestamp,
    /// Delivered or custody.
    pub kind: ReceiptKind,
}

/// A receipt and its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// What is attested.
    pub body: ReceiptBody,
    /// The signer's Ed25519 signature over the context and the encoded body.
    pub signature: Signature,
}

/// Why a receipt was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ReceiptError {
    /// Not decodable.
    #[error("malformed receipt: {0}")]
    Malformed(#[from] CodecError),
    /// The signer is not a roster member.
    #[error("receipt signer {0} is not a roster member")]
    UnknownSigner(NodeId),
    /// A delivery receipt not signed by the recipient, or custody not by one of its relays.
    #[error("receipt signer {signer} may not sign a {kind:?} receipt for recipient {recipient}")]
    WrongSigner {
        /// Who signed.
        signer: NodeId,
        /// The recipient.
        recipient: NodeId,
        /// The kind.
        kind: ReceiptKind,
    },
    /// Signature does not verify.
    #[error("receipt signature of {0} does not verify")]
    BadSignature(NodeId),
    /// The receipt is for other bytes than the sender sent.
    #[error("receipt does not match the envelope that was sent")]
    Mismatch,
    /// The signer's validity window does not cover the time the receipt arrived.
    #[error("receipt signer {0} is not a valid member now")]
    SignerNotValidNow(NodeId),
}

fn signing_message(body: &ReceiptBody) -> Vec<u8> {
    let mut message = RECEIPT_SIGNING_CONTEXT.to_vec();
    // Fixed-size fields only; the limit is never reached.
    message.extend_from_slice(&codec::encode(body, MAX_RECEIPT_BYTES).unwrap_or_default());
    message
}

impl Receipt {
    /// Signs `body` with `signer` (whose node id must be `body.signer`).
    pub fn sign(signer: &Identity, body: ReceiptBody) -> Receipt {
        let signature = Signature(signer.sign(&signing_message(&body)));
        Receipt { body, signature }
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self, MAX_RECEIPT_BYTES).unwrap_or_default()
    }

    /// Decodes untrusted bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        Ok(codec::decode(bytes, MAX_RECEIPT_BYTES)?)
    }

    /// Verifies the signature and that the signer may sign this kind of receipt for this
    /// recipient. Does not compare with what was sent: see [`Receipt::verify_for`]. The signer's
    /// current key is believed, and a rotated-out key until its grace ends at `now`.
    pub fn verify(&self, roster: &Roster, now: Timestamp) -> Result<(), ReceiptError> {
        let body = &self.body;
        let signer = roster
            .member(&body.signer)
            .ok_or(ReceiptError::UnknownSigner(body.signer))?;
        let allowed = match body.kind {
            ReceiptKind::Delivered => body.signer == body.recipient,
            ReceiptKind::Custody => {
                signer.role == Role::Relay
                    && roster
                        .member(&body.recipient)
                        .is_some_and(|recipient| recipient.relays.contains(&body.signer))
            }
        };
        if !allowed {
            return Err(ReceiptError::WrongSigner {
                signer: body.signer,
                recipient: body.recipient,
                kind: body.kind,
            });
        }
        if !signer.verify_at(&signing_message(body), &self.signature.0, now) {
            return Err(ReceiptError::BadSignature(body.signer));
        }
        Ok(())
    }

    /// Verifies the receipt and that it is for exactly the envelope the sender recorded.
    pub fn verify_for(
        &self,
        roster: &Roster,
        now: Timestamp,
        message_id: &MessageId,
        sender: &NodeId,
        recipient: &NodeId,
        envelope_digest: &Digest32,
    ) -> Result<(), ReceiptError> {
        self.verify(roster, now)?;
        let body = &self.body;
        if body.message_id != *message_id
            || body.sender != *sender
            || body.recipient != *recipient
            || body.envelope_digest != *envelope_digest
        {
            return Err(ReceiptError::Mismatch);
        }
        Ok(())
    }
}
