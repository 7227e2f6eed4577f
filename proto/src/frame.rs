//! Frames and batches: the unit one node hands another in a single libp2p request or response.
//!
//! A request carries a [`Batch`] of up to [`MAX_FRAMES_PER_BATCH`] frames and the response carries
//! one answer frame per request frame, in order. The receiving node sends its response only after
//! its store has flushed everything the batch changed, so a response is a durable hop-level
//! acknowledgement. Every batch also carries the sender's roster serial, which is how a newer
//! roster spreads: a node that sees a higher serial asks that peer for it.

use quickfreeze_keys::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, MAX_ENVELOPE_BYTES};
use crate::ids::MessageId;
use crate::receipt::Receipt;

/// The libp2p protocol id; the trailing number is the frame format version.
pub const PROTOCOL_ID: &str = "/quickfreeze/msg/1";
/// Version byte that leads every batch.
pub const BATCH_VERSION: u8 = 1;
/// Most frames in one batch.
pub const MAX_FRAMES_PER_BATCH: usize = 64;
/// Largest encoded batch: four full-size envelopes, plus room for many small frames.
pub const MAX_BATCH_BYTES: u64 = 4 * MAX_ENVELOPE_BYTES + 64 * 1024;
/// Longest refusal reason carried on the wire.
pub const MAX_REASON_BYTES: usize = 512;

/// One unit of work or one answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// An envelope for the receiving node itself (from its sender, or from a relay).
    Deliver(Envelope),
    /// An envelope for a relay to hold until it can deliver it to `envelope.header.recipient`.
    Handoff(Envelope),
    /// A signed receipt: the answer to `Deliver`/`Handoff`, or, in a request, a relay carrying
    /// the recipient's delivery receipt back to the original sender.
    Receipt(Receipt),
    /// Answer to a `Receipt` request frame: stored.
    Ack(MessageId),
    /// Answer to a frame that was not accepted.
    Refused {
        /// The message concerned (zero when the frame could not be attributed).
        message_id: MessageId,
        /// True when retrying cannot help.
        permanent: bool,
        /// Why, for the operator's log.
        reason: String,
    },
    /// Please send me your signed roster.
    RosterRequest,
    /// A signed roster (answer to `RosterRequest`).
    Roster(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Answer to a frame this node had no use for (e.g. `Ack` in a request).
    Ignored,
    // New kinds go below this line only: bincode numbers variants in order, so appending keeps
    // the bytes of every frame above identical (the golden vectors check it).
    /// "The highest revocation serial I hold" (the batch carries the roster serial). Sent as a
    /// request when a connection comes up and periodically on open connections, and as the
    /// answer to it, so a newer roster or revocation spreads without message traffic.
    Serials {
        /// Highest serial of the revocation notices the sender holds (0: none).
        revocation_serial: u64,
    },
    /// Please send me your revocation notices with a serial above `after`.
    RevocationRequest {
        /// Highest serial the asking node holds.
        after: u64,
    },
    /// Signed revocation notices: pushed to every connected member when a node applies one, and
    /// the answer to `RevocationRequest`. At most [`MAX_REVOCATIONS_PER_FRAME`].
    Revocations(Vec<serde_bytes::ByteBuf>),
}

/// Most revocation notices carried in one [`Frame::Revocations`].
pub const MAX_REVOCATIONS_PER_FRAME: usize = 32;

impl Frame {
    /// A refusal with a bounded reason.
    pub fn refused(message_id: MessageId, permanent: bool, reason: impl Into<String>) -> Frame {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Frame::Refused {
            message_id,
            permanent,
            reason,
        }
    }
}

/// What travels in one request or response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// [`BATCH_VERSION`].
    pub version: u8,
    /// The roster serial the sending node holds.
    pub roster_serial: u64,
    /// The frames.
    pub frames: Vec<Frame>,
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Not decodable within the limits.
    #[error("malformed batch: {0}")]
    Malformed(#[from] CodecError),
    /// Another version.
    #[error("batch version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Empty input.
    #[error("empty batch")]
    Empty,
    /// Too many frames.
    #[error("batch has {0} frames, the limit is {MAX_FRAMES_PER_BATCH}")]
    TooManyFrames(usize),
}

impl Batch {
    /// A batch of `frames` from a node holding roster `roster_serial`.
    pub fn new(roster_serial: u64, frames: Vec<Frame>) -> Batch {
        Batch {
            version: BATCH_VERSION,
            roster_serial,
            frames,
        }
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self, MAX_BATCH_BYTES)
    }

    /// Decodes untrusted bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Batch, BatchError> {
        match bytes.first() {
            None => return Err(BatchError::Empty),
            Some(&version) if version != BATCH_VERSION => {
                return Err(BatchError::UnsupportedVersion(version))
            }
            Some(_) => {}
        }
        let batch: Batch = codec::decode(bytes, MAX_BATCH_BYTES)?;
        if batch.frames.len() > MAX_FRAMES_PER_BATCH {
            return Err(BatchError::TooManyFrames(batch.frames.len()));
        }
        Ok(batch)
    }
}
