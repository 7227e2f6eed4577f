//! The plaintext payloads carried inside sealed envelopes: what one point of contact actually asks
//! of, or tells, another.
//!
//! Five kinds travel on the network (see the domain notes): urgent preservation requests (Budapest
//! Convention Art. 29), traffic-data disclosures (Art. 30), emergency disclosure requests (Second
//! Additional Protocol, CETS 224 Art. 9), status updates answering a request, and free-text
//! follow-up. Each type has one serde shape that serves both the TOML form a duty officer edits
//! (see the crate's `forms` module) and the canonical binary encoding through
//! [`quickfreeze_keys::codec`]: fields that read better as text in a form (message ids, attachment
//! bytes) switch on `is_human_readable`, exactly like the key crate's timestamps and digests.
//!
//! [`Payload::validate`] checks a payload completely and reports every missing or malformed field
//! in one pass, so an officer at 03:00 fixes the form once instead of once per mistake.
//!
//! The rooms, each using only those listed before it:
//!
//! - `limits`: every named size and count limit of a payload.
//! - `text`: serde adapters that write ids, optional values and bytes as text in a form and
//!   natively in the binary encoding.
//! - `handling`: the sender's conditions on use (handling codes) and their English wording.
//! - `types`: the request and answer structs (what is on the wire, field by field).
//! - `validate`: [`ValidationErrors`] and the checker behind every `validate` method.
//! - `examples`: complete, valid, fictitious payloads for templates, docs and tests.
//! - this file: the [`Payload`] enum that carries one of them, its kind, priority, one-line
//!   summary and binary encoding.
//!
//! Data flows one way: bytes or a form are decoded into the types, `validate` checks them, and
//! only then does the core seal or show them.

use std::fmt;

use quickfreeze_keys::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

use crate::Priority;

mod examples;
mod handling;
mod limits;
mod text;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use examples::{
    example_emergency, example_free_text, example_preservation, example_status,
    example_traffic_data,
};
pub use handling::{
    english as handling_english, english_labels as handling_english_labels, EvidentialUse,
    Handling, HandlingLine, OnwardTransmission, HANDLING_TITLE,
};
pub use limits::{
    DEFAULT_PRESERVATION_DAYS, MAX_ATTACHMENTS, MAX_ATTACHMENTS_TOTAL_BYTES, MAX_ATTACHMENT_BYTES,
    MAX_DATA_IDENTIFIERS, MAX_HANDLING_TEXT_BYTES, MAX_LONG_TEXT_BYTES, MAX_PAYLOAD_BYTES,
    MAX_SHORT_TEXT_BYTES, MIN_PRESERVATION_DAYS, SUMMARY_MAX_CHARS,
};
pub use types::{
    Attachment, DataIdentifier, EmergencyDisclosureRequest, FreeText, OnDutyContact,
    PreservationRequest, RefusalGround, RequestHeader, ServiceProvider, Status, StatusUpdate,
    TrafficDataDisclosure,
};
pub use validate::{parse_zoned_time, FieldError, ValidationErrors};

// ---------------------------------------------------------------------------------------------
// The payload enum
// ---------------------------------------------------------------------------------------------

/// Everything that can travel inside a sealed envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a node holds a handful of decoded payloads at a time; boxing would only complicate matching"
)]
pub enum Payload {
    /// An urgent request to preserve stored computer data (Art. 29).
    Preservation(PreservationRequest),
    /// Traffic data disclosed while executing a preservation (Art. 30).
    TrafficData(TrafficDataDisclosure),
    /// A request for disclosure in an emergency (CETS 224 Art. 9).
    Emergency(EmergencyDisclosureRequest),
    /// The requested side's answer about what happened to a request.
    Status(StatusUpdate),
    /// Free-text follow-up or technical advice (Art. 35(1)(a)).
    FreeText(FreeText),
}

/// The kind of a [`Payload`], for tables, statistics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    /// [`Payload::Preservation`].
    Preservation,
    /// [`Payload::TrafficData`].
    TrafficData,
    /// [`Payload::Emergency`].
    Emergency,
    /// [`Payload::Status`].
    Status,
    /// [`Payload::FreeText`].
    FreeText,
}

impl PayloadKind {
    /// Every kind, in declaration order.
    pub const ALL: [PayloadKind; 5] = [
        PayloadKind::Preservation,
        PayloadKind::TrafficData,
        PayloadKind::Emergency,
        PayloadKind::Status,
        PayloadKind::FreeText,
    ];

    /// The kebab-case name: `preservation`, `traffic-data`, `emergency`, `status`, `free-text`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Preservation => "preservation",
            PayloadKind::TrafficData => "traffic-data",
            PayloadKind::Emergency => "emergency",
            PayloadKind::Status => "status",
            PayloadKind::FreeText => "free-text",
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Payload {
    /// Which kind of payload this is.
    pub fn kind(&self) -> PayloadKind {
        match self {
            Payload::Preservation(_) => PayloadKind::Preservation,
            Payload::TrafficData(_) => PayloadKind::TrafficData,
            Payload::Emergency(_) => PayloadKind::Emergency,
            Payload::Status(_) => PayloadKind::Status,
            Payload::FreeText(_) => PayloadKind::FreeText,
        }
    }

    /// How urgently the payload must be delivered and handled. Emergency disclosure requests are
    /// always [`Priority::Emergency`], whatever their header says.
    pub fn priority(&self) -> Priority {
        match self {
            Payload::Preservation(request) => request.header.urgency,
            Payload::TrafficData(disclosure) => disclosure.header.urgency,
            Payload::Emergency(_) => Priority::Emergency,
            Payload::Status(update) => update.priority,
            Payload::FreeText(text) => text.priority,
        }
    }

    /// The case reference of the requesting side, when the payload carries one.
    pub fn case_reference(&self) -> Option<&str> {
        match self {
            Payload::Preservation(request) => Some(&request.header.case_reference),
            Payload::TrafficData(disclosure) => Some(&disclosure.header.case_reference),
            Payload::Emergency(request) => Some(&request.header.case_reference),
            Payload::Status(update) => Some(&update.case_reference),
            Payload::FreeText(text) => text.case_reference.as_deref(),
        }
    }

    /// The sender's conditions on use; every request carries them, status updates and free text
    /// do not.
    pub fn handling(&self) -> Option<&Handling> {
        match self {
            Payload::Preservation(request) => Some(&request.header.handling),
            Payload::TrafficData(disclosure) => Some(&disclosure.header.handling),
            Payload::Emergency(request) => Some(&request.header.handling),
            Payload::Status(_) | Payload::FreeText(_) => None,
        }
    }

    /// One line for a table: the case reference and a short description, at most
    /// [`SUMMARY_MAX_CHARS`] characters, with line breaks and control characters flattened.
    pub fn summary(&self) -> String {
        let description = match self {
            Payload::Preservation(request) => format!(
                "preserve {} identifier(s): {}",
                request.data_identifiers.len(),
                request.offence
            ),
            Payload::TrafficData(disclosure) => {
                let country = disclosure
                    .provider_country
                    .map(|country| format!(" ({country})"))
                    .unwrap_or_default();
                format!(
                    "traffic data: provider {}{country}",
                    disclosure.service_provider
                )
            }
            Payload::Emergency(request) => format!("EMERGENCY: {}", request.offences),
            Payload::Status(update) => update.status.describe(&update.officer),
            Payload::FreeText(text) => text.subject.clone(),
        };
        let case = self
            .case_reference()
            .map(|case| one_line(case, 32))
            .filter(|case| !case.is_empty());
        let line = match case {
            Some(case) => format!("{case}: {description}"),
            None => description,
        };
        one_line(&line, SUMMARY_MAX_CHARS)
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        match self {
            Payload::Preservation(request) => request.validate(),
            Payload::TrafficData(disclosure) => disclosure.validate(),
            Payload::Emergency(request) => request.validate(),
            Payload::Status(update) => update.validate(),
            Payload::FreeText(text) => text.validate(),
        }
    }

    /// The canonical binary encoding; fails if it would exceed [`MAX_PAYLOAD_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self, MAX_PAYLOAD_BYTES)
    }

    /// Decodes a payload, refusing anything over [`MAX_PAYLOAD_BYTES`] or malformed. Never panics.
    /// The result is not validated: call [`Payload::validate`] before acting on it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Payload, CodecError> {
        codec::decode(bytes, MAX_PAYLOAD_BYTES)
    }
}

/// Flattens whitespace and control characters to single spaces and cuts to `max_chars`
/// characters, marking a cut with `…`.
fn one_line(text: &str, max_chars: usize) -> String {
    let words = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty());
    let mut flat = String::new();
    for word in words {
        if !flat.is_empty() {
            flat.push(' ');
        }
        flat.push_str(word);
        if flat.len() > 4 * max_chars {
            break;
        }
    }
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let mut cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}
