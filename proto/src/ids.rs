//! Identifiers and small enums used across the wire format and the core.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A message id: 16 random bytes chosen once by the sender and kept across every retry, relay hop
/// and restart, so the recipient can de-duplicate on it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> MessageId {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        MessageId(bytes)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", hex::encode(self.0))
    }
}

impl std::str::FromStr for MessageId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| format!("`{text}` is not a message id (32 hex digits)"))?;
        Ok(MessageId(bytes))
    }
}

/// How urgent a message is. Ordered: `Emergency > Urgent > Routine`, and every queue serves the
/// higher priority first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// Follow-ups, advice, status replies that nothing waits on.
    Routine,
    /// The normal case for a preservation request: data may be deleted within hours or days.
    #[default]
    Urgent,
    /// A significant and imminent risk to the life or safety of a person (CETS 224 Art. 9).
    Emergency,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Emergency => "emergency",
        })
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "routine" => Ok(Priority::Routine),
            "urgent" => Ok(Priority::Urgent),
            "emergency" => Ok(Priority::Emergency),
            other => Err(format!(
                "`{other}` is not a priority; use emergency, urgent or routine"
            )),
        }
    }
}
