//! The plaintext payloads carried inside sealed envelopes: what one point of contact actually asks
//! of, or tells, another.
//!
//! Five kinds travel on the network (see the domain notes): urgent preservation requests (Budapest
//! Convention Art. 29), traffic-data disclosures (Art. 30), emergency disclosure requests (Second
//! Additional Protocol, CETS 224 Art. 9), status updates answering a request, and free-text
//! follow-up. Each type has one serde shape that serves both the TOML form a duty officer edits
//! (see [`crate::forms`]) and the canonical binary encoding through [`quickfreeze_keys::codec`]:
//! fields that read better as text in a form (message ids, attachment bytes) switch on
//! `is_human_readable`, exactly like the key crate's timestamps and digests.
//!
//! [`Payload::validate`] checks a payload completely and reports every missing or malformed field
//! in one pass, so an officer at 03:00 fixes the form once instead of once per mistake.

use std::fmt;
use std::net::IpAddr;

use quickfreeze_keys::codec::{self, CodecError};
use quickfreeze_keys::types::{CountryCode, Digest32, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{MessageId, Priority};

/// Largest encoded payload accepted by [`Payload::to_bytes`] and [`Payload::from_bytes`] (1 MiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1024 * 1024;
/// Limit for names, references, addresses and other one-line text, in UTF-8 bytes.
pub const MAX_SHORT_TEXT_BYTES: usize = 512;
/// Limit for narrative text (facts, descriptions, explanations), in UTF-8 bytes.
pub const MAX_LONG_TEXT_BYTES: usize = 64 * 1024;
/// Most data identifiers one preservation request may list.
pub const MAX_DATA_IDENTIFIERS: usize = 64;
/// Most attachments one preservation request may carry.
pub const MAX_ATTACHMENTS: usize = 8;
/// Largest single attachment, in bytes.
pub const MAX_ATTACHMENT_BYTES: usize = 256 * 1024;
/// Shortest preservation period a request may ask for (Art. 29(7)).
pub const MIN_PRESERVATION_DAYS: u32 = 60;
/// The preservation period a new request asks for unless the officer changes it.
pub const DEFAULT_PRESERVATION_DAYS: u32 = 90;
/// Longest line [`Payload::summary`] returns, in characters.
pub const SUMMARY_MAX_CHARS: usize = 80;

/// The last instant RFC 3339 text can express (9999-12-31T23:59:59.999Z). `Timestamp`'s text
/// form panics beyond it, so validation rejects later times and summaries never print them.
const LATEST_WRITABLE_MILLIS: u64 = 253_402_300_799_999;

/// Bytes bincode spends on the variant tag of [`Payload`]; a request body may use the rest.
const PAYLOAD_TAG_BYTES: u64 = 4;

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

// ---------------------------------------------------------------------------------------------
// Shared header
// ---------------------------------------------------------------------------------------------

/// What every request carries: who asks, in which case, how urgently, in which language, and
/// whom to call back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeader {
    /// The requesting side's own case reference, quoted back in every reply.
    pub case_reference: String,
    /// How urgent the request is.
    #[serde(default)]
    pub urgency: Priority,
    /// Language of the free text, a BCP 47 tag such as `en` or `pt-BR`. English is always accepted.
    #[serde(default = "default_language")]
    pub language: String,
    /// The authority seeking the measure (Art. 29(2)(a)).
    pub requesting_authority: String,
    /// The officer on duty whom the other side can reach about this request.
    pub contact: OnDutyContact,
}

fn default_language() -> String {
    String::from("en")
}

/// The officer on duty for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDutyContact {
    /// Name, in any script.
    pub name: String,
    /// A phone number that is answered now, with the country code.
    pub phone: String,
    /// An e-mail address for follow-up.
    pub email: String,
}

// ---------------------------------------------------------------------------------------------
// Preservation request (Art. 29)
// ---------------------------------------------------------------------------------------------

/// An expedited preservation request ("quick freeze"), Budapest Convention Art. 29(2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreservationRequest {
    /// Case, urgency, language, the requesting authority (Art. 29(2)(a)) and the contact.
    pub header: RequestHeader,
    /// The offence under investigation (Art. 29(2)(b)).
    pub offence: String,
    /// A brief summary of the related facts (Art. 29(2)(b)).
    pub facts_summary: String,
    /// The stored computer data to be preserved (Art. 29(2)(c)).
    pub data_to_preserve: String,
    /// How that data relates to the offence (Art. 29(2)(c)).
    pub relationship_to_offence: String,
    /// The custodian of the data, if known (Art. 29(2)(d)).
    #[serde(default, with = "optional_text")]
    pub custodian: Option<String>,
    /// The service provider holding the data, if known (Art. 29(2)(d)).
    #[serde(default, with = "optional_text")]
    pub service_provider: Option<String>,
    /// The location of the computer system, if known (Art. 29(2)(d)).
    #[serde(default, with = "optional_text")]
    pub system_location: Option<String>,
    /// Why the preservation is necessary (Art. 29(2)(e)).
    pub necessity: String,
    /// That the requesting party intends to submit a mutual assistance request for search,
    /// seizure or disclosure of the data (Art. 29(2)(f)). Must be true.
    pub mla_intent: bool,
    /// The concrete identifiers of the data: addresses, accounts, domains, ...
    #[serde(default)]
    pub data_identifiers: Vec<DataIdentifier>,
    /// Days the data should be kept; at least [`MIN_PRESERVATION_DAYS`] (Art. 29(7)).
    #[serde(default = "default_preservation_days")]
    pub preservation_days: u32,
    /// Small files sent with the request (log extracts, hash lists).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

fn default_preservation_days() -> u32 {
    DEFAULT_PRESERVATION_DAYS
}

/// One identifier of the data to preserve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataIdentifier {
    /// An IP address seen at a given time (without the time an address identifies nobody).
    IpAddress {
        /// IPv4 or IPv6 address.
        address: String,
        /// Source port, needed behind carrier-grade NAT.
        #[serde(default)]
        port: Option<u16>,
        /// When the address was seen: RFC 3339 with a zone (`Z` or `+hh:mm`).
        timestamp: String,
    },
    /// An account at a service.
    Account {
        /// The service, e.g. `mail.example.org`.
        service: String,
        /// User name, customer number or other account identifier.
        identifier: String,
    },
    /// An e-mail address.
    Email {
        /// The address.
        address: String,
    },
    /// A domain name.
    Domain {
        /// The name.
        name: String,
    },
    /// A URL (may be written defanged, e.g. `hxxps://`).
    Url {
        /// The URL.
        url: String,
    },
    /// Anything else that identifies the data.
    Other {
        /// A description of the identifier.
        description: String,
    },
}

/// A small file sent with a request, with its SHA-256 so it can be checked and cited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// File name, without directories.
    pub name: String,
    /// Media type, e.g. `text/csv`.
    pub media_type: String,
    /// SHA-256 of `bytes`.
    pub sha256: Digest32,
    /// The content (hex in text forms), at most [`MAX_ATTACHMENT_BYTES`].
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// An attachment with its digest computed from `bytes`.
    pub fn new(name: impl Into<String>, media_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        Attachment {
            name: name.into(),
            media_type: media_type.into(),
            sha256: sha256(&bytes),
            bytes,
        }
    }
}

fn sha256(bytes: &[u8]) -> Digest32 {
    Digest32(Sha256::digest(bytes).into())
}

// ---------------------------------------------------------------------------------------------
// Traffic-data disclosure (Art. 30)
// ---------------------------------------------------------------------------------------------

/// Expedited disclosure of preserved traffic data, Art. 30: enough to identify a service provider
/// in another state and the path of the communication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficDataDisclosure {
    /// Case, urgency, language, the disclosing authority and the contact.
    pub header: RequestHeader,
    /// The preservation request this disclosure follows from.
    #[serde(default, with = "optional_text")]
    pub references: Option<MessageId>,
    /// The service provider in the other state that was involved in the transmission.
    pub service_provider: String,
    /// Where that provider is, if known.
    #[serde(default, with = "optional_text")]
    pub provider_country: Option<CountryCode>,
    /// The traffic data disclosed.
    pub traffic_data: String,
    /// The path of the communication, as far as it is known.
    pub path_description: String,
}

// ---------------------------------------------------------------------------------------------
// Emergency disclosure request (CETS 224 Art. 9)
// ---------------------------------------------------------------------------------------------

/// A request for expedited disclosure of stored data in an emergency: a significant and imminent
/// risk to the life or safety of a natural person (Second Additional Protocol, CETS 224 Art. 9).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyDisclosureRequest {
    /// Case, language, the competent authority and the contact; urgency must be emergency.
    pub header: RequestHeader,
    /// That the request is made under the Protocol. Must be true.
    pub protocol_statement: bool,
    /// The service provider(s) holding the data; at least one.
    #[serde(default)]
    pub service_providers: Vec<ServiceProvider>,
    /// The offence(s) under investigation.
    pub offences: String,
    /// The legal provisions that define them.
    pub legal_provisions: String,
    /// The applicable penalties.
    pub penalties: String,
    /// The facts that show the significant and imminent risk to life or safety.
    pub emergency_facts: String,
    /// How the data sought relates to the emergency.
    pub data_relation: String,
    /// A detailed description of the data sought.
    pub data_sought: String,
    /// Special procedural instructions (confidentiality, form of the answer), if any.
    #[serde(default, with = "optional_text")]
    pub procedural_instructions: Option<String>,
    /// Any other information that may help.
    #[serde(default, with = "optional_text")]
    pub other_information: Option<String>,
}

/// A service provider named in an emergency request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProvider {
    /// The provider's name.
    pub name: String,
    /// Its postal or registered address.
    pub address: String,
}

// ---------------------------------------------------------------------------------------------
// Status update
// ---------------------------------------------------------------------------------------------

/// The requested side's answer about what happened to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    /// The message id of the request this answers.
    #[serde(with = "id_text")]
    pub references: MessageId,
    /// The requesting side's case reference, quoted back.
    pub case_reference: String,
    /// What happened.
    pub status: Status,
    /// Anything else to say; may be empty.
    #[serde(default)]
    pub note: String,
    /// The officer who sends the update, in any script.
    pub officer: String,
    /// How urgently the update should travel.
    #[serde(default)]
    pub priority: Priority,
}

impl StatusUpdate {
    /// True for everything except a bare acknowledgement: the requested side did or decided
    /// something.
    pub fn is_substantive(&self) -> bool {
        !matches!(self.status, Status::AcknowledgedByOfficer)
    }
}

/// What happened to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Status {
    /// An officer has read the request and is acting on it.
    AcknowledgedByOfficer,
    /// The data is preserved.
    Preserved {
        /// The requested side's reference for the preservation order.
        reference: String,
        /// When the preservation ends unless extended.
        expires_at: Timestamp,
    },
    /// Part of the request was executed.
    PartiallyExecuted {
        /// What was done and what was not, and why.
        explanation: String,
    },
    /// The request was refused (Art. 29(5)).
    Refused {
        /// The ground for refusal.
        ground: RefusalGround,
        /// Why, in words.
        explanation: String,
    },
    /// The request cannot be executed without more information.
    MoreInformationNeeded {
        /// What the requesting side must answer.
        questions: String,
    },
    /// The request was forwarded to the central authority.
    ForwardedToCentralAuthority {
        /// Which authority.
        authority: String,
    },
    /// Preservation will not ensure the data's future availability, or the data is gone
    /// (Art. 29(6)).
    DataNotAvailable {
        /// What is known about the data.
        explanation: String,
    },
}

impl Status {
    fn describe(&self, officer: &str) -> String {
        match self {
            Status::AcknowledgedByOfficer => format!("acknowledged by {officer}"),
            Status::Preserved {
                reference,
                expires_at,
            } => {
                if expires_at.as_millis() > LATEST_WRITABLE_MILLIS {
                    return format!("preserved as {reference} (expiry date unreadable)");
                }
                let expiry = expires_at.to_rfc3339();
                let date = expiry.get(..10).unwrap_or(&expiry);
                format!("preserved as {reference} until {date}")
            }
            Status::PartiallyExecuted { explanation } => {
                format!("partially executed: {explanation}")
            }
            Status::Refused { ground, .. } => format!("refused ({ground})"),
            Status::MoreInformationNeeded { questions } => {
                format!("more information needed: {questions}")
            }
            Status::ForwardedToCentralAuthority { authority } => {
                format!("forwarded to {authority}")
            }
            Status::DataNotAvailable { explanation } => {
                format!("data not available: {explanation}")
            }
        }
    }
}

/// Grounds on which preservation may be refused (Art. 29(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalGround {
    /// The offence is a political offence or connected with one.
    PoliticalOffence,
    /// Execution would prejudice sovereignty.
    Sovereignty,
    /// Execution would prejudice security.
    Security,
    /// Execution would prejudice public order (ordre public).
    PublicOrder,
    /// Execution would prejudice other essential interests.
    OtherEssentialInterests,
    /// Any other ground, explained in words.
    Other,
}

impl fmt::Display for Status {
    /// One line for tables and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::AcknowledgedByOfficer => write!(f, "acknowledged by officer"),
            Status::Preserved {
                reference,
                expires_at,
            } => {
                write!(f, "preserved (reference {reference}, until {expires_at})")
            }
            Status::PartiallyExecuted { explanation } => {
                write!(f, "partially executed: {explanation}")
            }
            Status::Refused {
                ground,
                explanation,
            } => write!(f, "refused ({ground}): {explanation}"),
            Status::MoreInformationNeeded { questions } => {
                write!(f, "more information needed: {questions}")
            }
            Status::ForwardedToCentralAuthority { authority } => {
                write!(f, "forwarded to central authority {authority}")
            }
            Status::DataNotAvailable { explanation } => {
                write!(f, "data not available: {explanation}")
            }
        }
    }
}

impl fmt::Display for RefusalGround {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalGround::PoliticalOffence => "political offence",
            RefusalGround::Sovereignty => "sovereignty",
            RefusalGround::Security => "security",
            RefusalGround::PublicOrder => "public order",
            RefusalGround::OtherEssentialInterests => "other essential interests",
            RefusalGround::Other => "other",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Free text
// ---------------------------------------------------------------------------------------------

/// Free-text follow-up or technical advice between points of contact (Art. 35(1)(a)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeText {
    /// The message this follows up, if any.
    #[serde(default, with = "optional_text")]
    pub references: Option<MessageId>,
    /// The case it concerns, if any.
    #[serde(default, with = "optional_text")]
    pub case_reference: Option<String>,
    /// One-line subject.
    pub subject: String,
    /// The text.
    pub body: String,
    /// How urgently it should travel.
    #[serde(default)]
    pub priority: Priority,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// One missing or malformed field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `header.contact.phone` or `data_identifiers[1].timestamp`.
    pub field: String,
    /// What is wrong, in words an officer can act on.
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Every problem found in a payload (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The paths of the fields with problems, in the order they were found.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|error| error.field.as_str()).collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Parses an RFC 3339 date-time that states its zone (`2026-11-23T02:41:00Z`,
/// `2026-11-23T03:41:00.250+01:00`) and returns the instant in UTC.
///
/// Stricter than [`Timestamp::parse_rfc3339`], which also takes "weak" forms without a zone: a log
/// time without a zone can be an hour or more off, and that is enough to identify the wrong
/// subscriber behind a shared address.
pub fn parse_zoned_time(text: &str) -> Result<Timestamp, String> {
    let complaint = || {
        format!(
            "`{text}` is not an RFC 3339 time with a zone, such as 2026-11-23T02:41:00Z or \
             2026-11-23T03:41:00+01:00"
        )
    };
    let trimmed = text.trim();
    let (local, offset_minutes) = if let Some(local) = trimmed.strip_suffix(['Z', 'z']) {
        (local, 0i64)
    } else {
        let split = trimmed.len().checked_sub(6).ok_or_else(complaint)?;
        let (local, zone) = (
            trimmed.get(..split).ok_or_else(complaint)?,
            trimmed.get(split..).ok_or_else(complaint)?.as_bytes(),
        );
        let sign = match zone.first() {
            Some(b'+') => 1i64,
            Some(b'-') => -1i64,
            _ => return Err(complaint()),
        };
        let hours = two_digits(zone.get(1..3)).ok_or_else(complaint)?;
        let minutes = two_digits(zone.get(4..6)).ok_or_else(complaint)?;
        if zone.get(3) != Some(&b':') || hours > 23 || minutes > 59 {
            return Err(complaint());
        }
        (local, sign * (hours * 60 + minutes))
    };
    // `YYYY-MM-DDTHH:MM:SS` optionally followed by `.` and at least one digit, nothing else.
    let bytes = local.as_bytes();
    if bytes.len() < 19 || !matches!(bytes.get(10), Some(b'T' | b't')) {
        return Err(complaint());
    }
    match bytes.get(19..) {
        Some([]) => {}
        Some([b'.', fraction @ ..])
            if !fraction.is_empty() && fraction.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(complaint()),
    }
    let as_utc = format!("{}Z", local.to_ascii_uppercase());
    let wall = Timestamp::parse_rfc3339(&as_utc).map_err(|_| complaint())?;
    let shift = offset_minutes * 60_000;
    let millis = i128::from(wall.as_millis()) - i128::from(shift);
    u64::try_from(millis)
        .map(Timestamp)
        .map_err(|_| format!("`{text}` is before 1970"))
}

fn two_digits(bytes: Option<&[u8]>) -> Option<i64> {
    match bytes? {
        [tens, units] if tens.is_ascii_digit() && units.is_ascii_digit() => {
            Some(i64::from(tens - b'0') * 10 + i64::from(units - b'0'))
        }
        _ => None,
    }
}

/// Which length limit and which characters a text field allows.
#[derive(Clone, Copy)]
enum Text {
    /// One line: at most [`MAX_SHORT_TEXT_BYTES`], no control characters.
    Short,
    /// Narrative: at most [`MAX_LONG_TEXT_BYTES`], line breaks and tabs allowed.
    Long,
}

/// Collects field problems during one validation pass.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn report(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// Checks limits and characters of text that may be empty; returns whether it was acceptable.
    fn text(&mut self, field: &str, value: &str, kind: Text) -> bool {
        let (limit, allowed) = match kind {
            Text::Short => (MAX_SHORT_TEXT_BYTES, "one line of text"),
            Text::Long => (MAX_LONG_TEXT_BYTES, "text"),
        };
        if value.len() > limit {
            self.report(
                field,
                format!("is {} bytes long; the limit is {limit} bytes", value.len()),
            );
            return false;
        }
        let bad = value.chars().any(|c| match kind {
            Text::Short => c.is_control(),
            Text::Long => c.is_control() && !matches!(c, '\n' | '\r' | '\t'),
        });
        if bad {
            self.report(
                field,
                format!("contains control characters; write {allowed} only"),
            );
            return false;
        }
        true
    }

    /// Text that must be filled in; returns whether it was acceptable.
    fn required(&mut self, field: &str, value: &str, kind: Text) -> bool {
        if value.trim().is_empty() {
            self.report(field, "is empty; it must be filled in");
            return false;
        }
        self.text(field, value, kind)
    }

    /// Text that may be left out.
    fn optional(&mut self, field: &str, value: Option<&str>, kind: Text) {
        if let Some(value) = value {
            self.text(field, value, kind);
        }
    }

    /// Fails if `value` encodes, inside a [`Payload`], to more than [`MAX_PAYLOAD_BYTES`].
    fn encoded_size<T: Serialize>(&mut self, value: &T) {
        if let Err(error) = codec::encode(value, MAX_PAYLOAD_BYTES - PAYLOAD_TAG_BYTES) {
            let problem = match error {
                CodecError::TooLarge { .. } => format!(
                    "the whole message is larger than {MAX_PAYLOAD_BYTES} bytes; send fewer or \
                     smaller attachments or shorten the text"
                ),
                CodecError::Malformed(reason) => format!("cannot be encoded: {reason}"),
            };
            self.report("(message)", problem);
        }
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    fn header(&mut self, header: &RequestHeader) {
        self.required("header.case_reference", &header.case_reference, Text::Short);
        self.language("header.language", &header.language);
        self.required(
            "header.requesting_authority",
            &header.requesting_authority,
            Text::Short,
        );
        let contact = &header.contact;
        self.required("header.contact.name", &contact.name, Text::Short);
        if self.required("header.contact.phone", &contact.phone, Text::Short) {
            let digits = contact.phone.chars().filter(char::is_ascii_digit).count();
            if digits < 5 {
                self.report(
                    "header.contact.phone",
                    format!(
                        "`{}` is not a phone number; write it with the country code, e.g. +31 70 555 0100",
                        contact.phone
                    ),
                );
            }
        }
        self.email("header.contact.email", &contact.email);
    }

    fn language(&mut self, field: &str, language: &str) {
        let valid = !language.is_empty()
            && language.len() <= 35
            && language.split('-').all(|part| {
                !part.is_empty()
                    && part.len() <= 8
                    && part.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            && language
                .bytes()
                .take_while(|b| *b != b'-')
                .all(|b| b.is_ascii_alphabetic());
        if !valid {
            self.report(
                field,
                format!(
                    "`{language}` is not a language tag; write a code such as \"en\", \"fr\" or \
                     \"pt-BR\" (English is always accepted)"
                ),
            );
        }
    }

    fn email(&mut self, field: &str, address: &str) {
        if !self.required(field, address, Text::Short) {
            return;
        }
        let trimmed = address.trim();
        let mut parts = trimmed.split('@');
        let valid = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty()
        ) && !trimmed.chars().any(char::is_whitespace);
        if !valid {
            self.report(
                field,
                format!("`{address}` is not an e-mail address (name@domain)"),
            );
        }
    }

    fn data_identifier(&mut self, prefix: &str, identifier: &DataIdentifier) {
        match identifier {
            DataIdentifier::IpAddress {
                address,
                port,
                timestamp,
            } => {
                let field = format!("{prefix}.address");
                if self.required(&field, address, Text::Short)
                    && address.trim().parse::<IpAddr>().is_err()
                {
                    self.report(field, format!("`{address}` is not an IPv4 or IPv6 address"));
                }
                if *port == Some(0) {
                    self.report(
                        format!("{prefix}.port"),
                        "port 0 is not a real port; leave the port out if it is not known",
                    );
                }
                let field = format!("{prefix}.timestamp");
                if self.required(&field, timestamp, Text::Short) {
                    if let Err(problem) = parse_zoned_time(timestamp) {
                        self.report(field, problem);
                    }
                }
            }
            DataIdentifier::Account {
                service,
                identifier,
            } => {
                self.required(&format!("{prefix}.service"), service, Text::Short);
                self.required(&format!("{prefix}.identifier"), identifier, Text::Short);
            }
            DataIdentifier::Email { address } => {
                self.email(&format!("{prefix}.address"), address);
            }
            DataIdentifier::Domain { name } => {
                let field = format!("{prefix}.name");
                if self.required(&field, name, Text::Short)
                    && (name.trim().chars().any(char::is_whitespace)
                        || !name.contains('.')
                        || name.contains('/')
                        || name.contains('@'))
                {
                    self.report(
                        field,
                        format!("`{name}` is not a domain name such as example.org"),
                    );
                }
            }
            DataIdentifier::Url { url } => {
                let field = format!("{prefix}.url");
                if self.required(&field, url, Text::Long)
                    && url.trim().chars().any(char::is_whitespace)
                {
                    self.report(field, "a URL cannot contain spaces or line breaks");
                }
            }
            DataIdentifier::Other { description } => {
                self.required(&format!("{prefix}.description"), description, Text::Long);
            }
        }
    }

    fn attachment(&mut self, prefix: &str, attachment: &Attachment) {
        let field = format!("{prefix}.name");
        if self.required(&field, &attachment.name, Text::Short)
            && (attachment.name.contains(['/', '\\'])
                || matches!(attachment.name.trim(), "." | ".."))
        {
            self.report(field, "write a file name only, without directories");
        }
        let field = format!("{prefix}.media_type");
        if self.required(&field, &attachment.media_type, Text::Short) {
            let mut parts = attachment.media_type.trim().split('/');
            let valid = matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(kind), Some(subtype), None) if !kind.is_empty() && !subtype.is_empty()
            ) && !attachment.media_type.trim().contains(char::is_whitespace);
            if !valid {
                self.report(
                    field,
                    format!(
                        "`{}` is not a media type such as text/csv or application/pdf",
                        attachment.media_type
                    ),
                );
            }
        }
        if attachment.bytes.len() > MAX_ATTACHMENT_BYTES {
            self.report(
                format!("{prefix}.bytes"),
                format!(
                    "is {} bytes; an attachment may have at most {MAX_ATTACHMENT_BYTES} bytes",
                    attachment.bytes.len()
                ),
            );
        }
        let actual = sha256(&attachment.bytes);
        if actual != attachment.sha256 {
            self.report(
                format!("{prefix}.sha256"),
                format!(
                    "does not match the content: the content's SHA-256 is {actual}, the form says {}",
                    attachment.sha256
                ),
            );
        }
    }
}

impl PreservationRequest {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        check.header(&self.header);
        check.required("offence", &self.offence, Text::Long);
        check.required("facts_summary", &self.facts_summary, Text::Long);
        check.required("data_to_preserve", &self.data_to_preserve, Text::Long);
        check.required(
            "relationship_to_offence",
            &self.relationship_to_offence,
            Text::Long,
        );
        check.optional("custodian", self.custodian.as_deref(), Text::Short);
        check.optional(
            "service_provider",
            self.service_provider.as_deref(),
            Text::Short,
        );
        check.optional(
            "system_location",
            self.system_location.as_deref(),
            Text::Short,
        );
        check.required("necessity", &self.necessity, Text::Long);
        if !self.mla_intent {
            check.report(
                "mla_intent",
                "must be true: a preservation request has to state that a mutual assistance \
                 request will follow (Art. 29(2)(f))",
            );
        }
        if self.data_identifiers.is_empty() {
            check.report(
                "data_identifiers",
                "list at least one identifier of the data (IP address and time, account, e-mail, \
                 domain, URL or other)",
            );
        } else if self.data_identifiers.len() > MAX_DATA_IDENTIFIERS {
            check.report(
                "data_identifiers",
                format!(
                    "lists {} identifiers; at most {MAX_DATA_IDENTIFIERS} fit in one request, send \
                     the rest in another",
                    self.data_identifiers.len()
                ),
            );
        }
        for (index, identifier) in self.data_identifiers.iter().enumerate() {
            check.data_identifier(&format!("data_identifiers[{index}]"), identifier);
        }
        if self.preservation_days < MIN_PRESERVATION_DAYS {
            check.report(
                "preservation_days",
                format!(
                    "is {}; preservation lasts at least {MIN_PRESERVATION_DAYS} days (Art. 29(7))",
                    self.preservation_days
                ),
            );
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            check.report(
                "attachments",
                format!(
                    "has {} attachments; at most {MAX_ATTACHMENTS} are allowed",
                    self.attachments.len()
                ),
            );
        }
        for (index, attachment) in self.attachments.iter().enumerate() {
            check.attachment(&format!("attachments[{index}]"), attachment);
        }
        check.encoded_size(self);
        check.finish()
    }
}

impl TrafficDataDisclosure {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        check.header(&self.header);
        check.required("service_provider", &self.service_provider, Text::Short);
        check.required("traffic_data", &self.traffic_data, Text::Long);
        check.required("path_description", &self.path_description, Text::Long);
        check.encoded_size(self);
        check.finish()
    }
}

impl EmergencyDisclosureRequest {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        check.header(&self.header);
        if self.header.urgency != Priority::Emergency {
            check.report(
                "header.urgency",
                format!(
                    "is \"{}\"; an emergency disclosure request always has urgency \"emergency\"",
                    self.header.urgency
                ),
            );
        }
        if !self.protocol_statement {
            check.report(
                "protocol_statement",
                "must be true: the request has to state that it is made under the Second \
                 Additional Protocol (CETS 224 Art. 9)",
            );
        }
        if self.service_providers.is_empty() {
            check.report(
                "service_providers",
                "name at least one service provider that holds the data",
            );
        }
        for (index, provider) in self.service_providers.iter().enumerate() {
            check.required(
                &format!("service_providers[{index}].name"),
                &provider.name,
                Text::Short,
            );
            check.required(
                &format!("service_providers[{index}].address"),
                &provider.address,
                Text::Short,
            );
        }
        check.required("offences", &self.offences, Text::Long);
        check.required("legal_provisions", &self.legal_provisions, Text::Long);
        check.required("penalties", &self.penalties, Text::Long);
        check.required("emergency_facts", &self.emergency_facts, Text::Long);
        check.required("data_relation", &self.data_relation, Text::Long);
        check.required("data_sought", &self.data_sought, Text::Long);
        check.optional(
            "procedural_instructions",
            self.procedural_instructions.as_deref(),
            Text::Long,
        );
        check.optional(
            "other_information",
            self.other_information.as_deref(),
            Text::Long,
        );
        check.encoded_size(self);
        check.finish()
    }
}

impl StatusUpdate {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        if self.references == MessageId([0; 16]) {
            check.report(
                "references",
                "fill in the message id of the request this update answers",
            );
        }
        check.required("case_reference", &self.case_reference, Text::Short);
        match &self.status {
            Status::AcknowledgedByOfficer => {}
            Status::Preserved {
                reference,
                expires_at,
            } => {
                check.required("status.reference", reference, Text::Short);
                if *expires_at == Timestamp(0) {
                    check.report("status.expires_at", "fill in when the preservation ends");
                } else if expires_at.as_millis() > LATEST_WRITABLE_MILLIS {
                    check.report("status.expires_at", "is after the year 9999");
                }
            }
            Status::PartiallyExecuted { explanation }
            | Status::Refused { explanation, .. }
            | Status::DataNotAvailable { explanation } => {
                check.required("status.explanation", explanation, Text::Long);
            }
            Status::MoreInformationNeeded { questions } => {
                check.required("status.questions", questions, Text::Long);
            }
            Status::ForwardedToCentralAuthority { authority } => {
                check.required("status.authority", authority, Text::Short);
            }
        }
        check.text("note", &self.note, Text::Long);
        check.required("officer", &self.officer, Text::Short);
        check.encoded_size(self);
        check.finish()
    }
}

impl FreeText {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        check.optional(
            "case_reference",
            self.case_reference.as_deref(),
            Text::Short,
        );
        check.required("subject", &self.subject, Text::Short);
        check.required("body", &self.body, Text::Long);
        check.encoded_size(self);
        check.finish()
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

// ---------------------------------------------------------------------------------------------
// Serde adapters: text in forms, native values in the binary encoding
// ---------------------------------------------------------------------------------------------

/// `Option<T>` written as text in human-readable formats, where a blank string means "none" (so a
/// form can say `custodian = ""`), and natively in binary formats.
mod optional_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + Display,
        S: Serializer,
    {
        if serializer.is_human_readable() {
            match value {
                Some(value) => serializer.serialize_some(&value.to_string()),
                None => serializer.serialize_none(),
            }
        } else {
            value.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: Deserialize<'de> + FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        if deserializer.is_human_readable() {
            match Option::<String>::deserialize(deserializer)? {
                Some(text) if !text.trim().is_empty() => {
                    text.parse().map(Some).map_err(de::Error::custom)
                }
                _ => Ok(None),
            }
        } else {
            Option::<T>::deserialize(deserializer)
        }
    }
}

/// A [`MessageId`](crate::MessageId) as 32 hex digits in human-readable formats, 16 bytes in
/// binary ones.
mod id_text {
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use crate::MessageId;

    pub(super) fn serialize<S: Serializer>(
        id: &MessageId,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(id)
        } else {
            id.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MessageId, D::Error> {
        if deserializer.is_human_readable() {
            String::deserialize(deserializer)?
                .parse()
                .map_err(de::Error::custom)
        } else {
            MessageId::deserialize(deserializer)
        }
    }
}

/// Bytes as hex in human-readable formats, as a length-prefixed byte string in binary ones.
mod hex_bytes {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(digits).map_err(|error| de::Error::custom(format!("not hex: {error}")))
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------------------------

/// 2027-02-21T00:00:00Z: the expiry in [`example_status`], 90 days after the example request.
const EXAMPLE_EXPIRY: Timestamp = Timestamp(1_803_168_000_000);

fn example_header(case_reference: &str, urgency: Priority) -> RequestHeader {
    RequestHeader {
        case_reference: case_reference.to_string(),
        urgency,
        language: String::from("en"),
        requesting_authority: String::from(
            "National High-Tech Crime Unit, 24/7 point of contact (fictitious)",
        ),
        contact: OnDutyContact {
            name: String::from("Insp. Anna de Vries"),
            phone: String::from("+31 70 555 0142"),
            email: String::from("duty-officer@htcu.example.org"),
        },
    }
}

/// A complete, valid, fictitious preservation request: a ransomware attack on a hospital whose
/// data was exfiltrated to a rented server abroad.
pub fn example_preservation() -> PreservationRequest {
    let log_extract = b"time,source,destination,bytes\n\
2026-11-22T22:58:03Z,10.20.0.14,203.0.113.7:443,40265318400\n\
2026-11-22T23:04:51Z,10.20.0.14,203.0.113.7:443,1288490188\n"
        .to_vec();
    PreservationRequest {
        header: example_header("HTCU-2026-0412", Priority::Urgent),
        offence: String::from(
            "Ransomware attack on a regional hospital: illegal access, data interference and \
             system interference (Budapest Convention Arts. 2, 4 and 5) and extortion",
        ),
        facts_summary: String::from(
            "On 22 November 2026 at about 23:10 UTC the hospital's file servers were encrypted. \
             Before encryption about 41 GB of patient records were copied to a rented virtual \
             server. The ransom note threatens publication on 25 November 2026.",
        ),
        data_to_preserve: String::from(
            "Subscriber and payment details of the customer renting the server, connection logs \
             (source addresses and ports) from 15 to 23 November 2026, and a snapshot of the \
             virtual server's disk.",
        ),
        relationship_to_offence: String::from(
            "The hospital's firewall logs (attached) show the stolen data being sent to this \
             server minutes before the encryption started.",
        ),
        custodian: Some(String::from("Example Hosting B.V.")),
        service_provider: Some(String::from("Example Hosting B.V. (AS64500)")),
        system_location: Some(String::from("Data centre in Frankfurt am Main")),
        necessity: String::from(
            "The provider deletes connection logs after 7 days, and this group usually wipes its \
             staging servers within 48 hours of the ransom deadline.",
        ),
        mla_intent: true,
        data_identifiers: vec![
            DataIdentifier::IpAddress {
                address: String::from("203.0.113.7"),
                port: Some(443),
                timestamp: String::from("2026-11-22T23:04:51Z"),
            },
            DataIdentifier::Account {
                service: String::from("Example Hosting customer portal"),
                identifier: String::from("cust-558213"),
            },
            DataIdentifier::Email {
                address: String::from("r.koval@example.org"),
            },
            DataIdentifier::Domain {
                name: String::from("restore-files.example.net"),
            },
            DataIdentifier::Url {
                url: String::from("https://restore-files.example.net/negotiate/7f3a"),
            },
        ],
        preservation_days: DEFAULT_PRESERVATION_DAYS,
        attachments: vec![Attachment::new(
            "firewall-extract.csv",
            "text/csv",
            log_extract,
        )],
    }
}

/// A complete, valid, fictitious traffic-data disclosure (Art. 30): the requested side found that
/// the connections came through a VPN provider in a third country. `references` is `None`; set it
/// to the preservation request's message id.
pub fn example_traffic_data() -> TrafficDataDisclosure {
    let mut header = example_header("HTCU-2026-0412", Priority::Urgent);
    header.requesting_authority =
        String::from("Federal Cybercrime Centre, 24/7 point of contact (fictitious)");
    header.contact = OnDutyContact {
        name: String::from("KOKin Jonas Weber"),
        phone: String::from("+49 611 555 0199"),
        email: String::from("24-7@cybercrime.example.net"),
    };
    TrafficDataDisclosure {
        header,
        references: None,
        service_provider: String::from("Example VPN ehf."),
        provider_country: CountryCode::parse("IS").ok(),
        traffic_data: String::from(
            "All administrative logins to the server at 203.0.113.7 between 15 and 23 November \
             2026 came from 198.51.100.23, an exit address of Example VPN ehf.",
        ),
        path_description: String::from(
            "198.51.100.23 (Example VPN ehf., IS) -> 203.0.113.7:22 (Example Hosting B.V., \
             Frankfurt). The customer's own address is known only to the VPN provider.",
        ),
    }
}

/// A complete, valid, fictitious emergency disclosure request (CETS 224 Art. 9): a kidnapping with
/// a threat to kill the victim.
pub fn example_emergency() -> EmergencyDisclosureRequest {
    EmergencyDisclosureRequest {
        header: example_header("HTCU-2026-0977", Priority::Emergency),
        protocol_statement: true,
        service_providers: vec![ServiceProvider {
            name: String::from("Example Messaging Ltd."),
            address: String::from("1 Example Quay, Dublin (fictitious)"),
        }],
        offences: String::from("Kidnapping for ransom; threat to kill"),
        legal_provisions: String::from("Criminal Code Arts. 282 and 285 (fictitious)"),
        penalties: String::from("Up to 15 years' imprisonment"),
        emergency_facts: String::from(
            "A 34-year-old man was abducted on 23 November 2026. The kidnappers sent a video of \
             him from the account below at 01:12 UTC and threaten to kill him by 18:00 UTC today \
             unless a ransom is paid.",
        ),
        data_relation: String::from(
            "The kidnappers use this account to contact the family; its recent login addresses \
             are the only lead to where the victim is held.",
        ),
        data_sought: String::from(
            "Subscriber information and the IP addresses and ports of all logins to account \
             +31 6 5550 1234 since 22 November 2026 00:00 UTC.",
        ),
        procedural_instructions: Some(String::from(
            "Do not notify the account holder. Answer by phone to the contact above, then in \
             writing.",
        )),
        other_information: None,
    }
}

/// A complete, valid, fictitious status update: the data was preserved for 90 days.
pub fn example_status(references: MessageId) -> StatusUpdate {
    StatusUpdate {
        references,
        case_reference: String::from("HTCU-2026-0412"),
        status: Status::Preserved {
            reference: String::from("PRES-2026-0981"),
            expires_at: EXAMPLE_EXPIRY,
        },
        note: String::from(
            "Preservation order served on Example Hosting B.V. at 04:20 UTC; disk snapshot taken.",
        ),
        officer: String::from("KOKin Jonas Weber"),
        priority: Priority::Urgent,
    }
}

/// A complete, valid, fictitious free-text message: technical advice about a provider's logs.
pub fn example_free_text() -> FreeText {
    FreeText {
        references: None,
        case_reference: Some(String::from("HTCU-2026-0412")),
        subject: String::from("Log format at Example Hosting"),
        body: String::from(
            "Example Hosting records connection times in local time (CET) without a zone. When \
             you send the MLA request, give times in UTC and we will convert them.",
        ),
        priority: Priority::Routine,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn some_id() -> MessageId {
        MessageId([0x5a; 16])
    }

    fn all_examples() -> Vec<Payload> {
        let mut traffic = example_traffic_data();
        traffic.references = Some(some_id());
        let mut free_text = example_free_text();
        free_text.references = Some(some_id());
        vec![
            Payload::Preservation(example_preservation()),
            Payload::TrafficData(traffic),
            Payload::TrafficData(example_traffic_data()),
            Payload::Emergency(example_emergency()),
            Payload::Status(example_status(some_id())),
            Payload::FreeText(free_text),
            Payload::FreeText(example_free_text()),
        ]
    }

    fn field_set(errors: &ValidationErrors) -> BTreeSet<&str> {
        errors.0.iter().map(|error| error.field.as_str()).collect()
    }

    #[test]
    fn every_example_validates() {
        for payload in all_examples() {
            assert_eq!(payload.validate(), Ok(()), "{}", payload.kind());
        }
    }

    #[test]
    fn example_expiry_is_the_documented_date() {
        assert_eq!(
            Timestamp::parse_rfc3339("2027-02-21T00:00:00Z"),
            Ok(EXAMPLE_EXPIRY)
        );
    }

    #[test]
    fn kinds_and_priorities() {
        let kinds: Vec<String> = PayloadKind::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            kinds,
            [
                "preservation",
                "traffic-data",
                "emergency",
                "status",
                "free-text"
            ]
        );
        let mut emergency = example_emergency();
        emergency.header.urgency = Priority::Routine;
        assert_eq!(
            Payload::Emergency(emergency).priority(),
            Priority::Emergency
        );
        assert_eq!(
            Payload::Preservation(example_preservation()).priority(),
            Priority::Urgent
        );
        assert_eq!(
            Payload::FreeText(example_free_text()).priority(),
            Priority::Routine
        );
        for payload in all_examples() {
            let kind = payload.kind();
            assert!(PayloadKind::ALL.contains(&kind));
        }
    }

    #[test]
    fn summaries_are_one_bounded_line() {
        for payload in all_examples() {
            let summary = payload.summary();
            assert!(summary.chars().count() <= SUMMARY_MAX_CHARS, "{summary}");
            assert!(!summary.contains('\n'));
            assert!(summary.starts_with("HTCU-2026-"), "{summary}");
        }
        let status = Payload::Status(example_status(some_id())).summary();
        assert_eq!(
            status,
            "HTCU-2026-0412: preserved as PRES-2026-0981 until 2027-02-21"
        );
        let mut text = example_free_text();
        text.case_reference = None;
        text.subject = "line one\nline\ttwo ".repeat(20);
        let summary = Payload::FreeText(text).summary();
        assert!(summary.starts_with("line one line two line one"));
        assert!(summary.ends_with('…'));
        assert_eq!(summary.chars().count(), SUMMARY_MAX_CHARS);
    }

    #[test]
    fn substantive_status() {
        let mut update = example_status(some_id());
        assert!(update.is_substantive());
        update.status = Status::AcknowledgedByOfficer;
        assert!(!update.is_substantive());
        assert_eq!(update.validate(), Ok(()));
    }

    #[test]
    fn preservation_reports_every_problem_at_once() {
        let mut request = example_preservation();
        request.header.contact.phone = String::new();
        request.header.contact.email = String::from("duty@@example.org");
        request.header.language = String::from("en_GB");
        request.offence = String::from("   ");
        request.mla_intent = false;
        request.preservation_days = 30;
        request.facts_summary = "x".repeat(MAX_LONG_TEXT_BYTES + 1);
        request.data_identifiers[1] = DataIdentifier::IpAddress {
            address: String::from("999.0.113.7"),
            port: Some(0),
            timestamp: String::from("2026-11-22 23:04:51"),
        };
        request.data_identifiers[2] = DataIdentifier::Email {
            address: String::from("no-at-sign.example.org"),
        };
        request.attachments[0].bytes.push(b'!');
        let errors = request.validate().expect_err("several problems");
        let expected: BTreeSet<&str> = [
            "header.contact.phone",
            "header.contact.email",
            "header.language",
            "offence",
            "facts_summary",
            "mla_intent",
            "preservation_days",
            "data_identifiers[1].address",
            "data_identifiers[1].port",
            "data_identifiers[1].timestamp",
            "data_identifiers[2].address",
            "attachments[0].sha256",
        ]
        .into_iter()
        .collect();
        assert_eq!(field_set(&errors), expected, "{errors}");
        assert_eq!(errors.0.len(), expected.len(), "one problem per field");
        assert_eq!(errors.to_string().lines().count(), expected.len());
    }

    #[test]
    fn preservation_without_identifiers_or_with_too_many() {
        let mut request = example_preservation();
        request.data_identifiers.clear();
        let errors = request.validate().expect_err("no identifiers");
        assert_eq!(field_set(&errors), BTreeSet::from(["data_identifiers"]));

        let mut request = example_preservation();
        request.data_identifiers = vec![
            DataIdentifier::Domain {
                name: String::from("example.org")
            };
            MAX_DATA_IDENTIFIERS + 1
        ];
        let errors = request.validate().expect_err("too many");
        assert_eq!(field_set(&errors), BTreeSet::from(["data_identifiers"]));
    }

    #[test]
    fn attachment_limits() {
        let mut request = example_preservation();
        request.attachments =
            vec![Attachment::new("a.txt", "text/plain", b"a".to_vec()); MAX_ATTACHMENTS + 1];
        request.attachments[0] = Attachment::new(
            "big.bin",
            "application/octet-stream",
            vec![0; MAX_ATTACHMENT_BYTES + 1],
        );
        request.attachments[1].name = String::from("../../etc/passwd");
        request.attachments[2].media_type = String::from("text");
        let errors = request.validate().expect_err("limits");
        assert_eq!(
            field_set(&errors),
            BTreeSet::from([
                "attachments",
                "attachments[0].bytes",
                "attachments[1].name",
                "attachments[2].media_type",
            ]),
            "{errors}"
        );
    }

    #[test]
    fn a_valid_looking_request_that_does_not_fit_the_payload_limit_is_reported() {
        let mut request = example_preservation();
        request.attachments = (0..MAX_ATTACHMENTS)
            .map(|index| {
                Attachment::new(
                    format!("part{index}.bin"),
                    "application/octet-stream",
                    vec![7; MAX_ATTACHMENT_BYTES],
                )
            })
            .collect();
        let errors = request.validate().expect_err("too large");
        assert_eq!(field_set(&errors), BTreeSet::from(["(message)"]));
        assert!(matches!(
            Payload::Preservation(request).to_bytes(),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn emergency_requires_emergency_urgency_and_the_protocol_statement() {
        let mut request = example_emergency();
        request.header.urgency = Priority::Urgent;
        request.protocol_statement = false;
        request.service_providers.push(ServiceProvider {
            name: String::new(),
            address: String::from("somewhere"),
        });
        request.procedural_instructions = Some(String::from("bell\u{7}"));
        let errors = request.validate().expect_err("problems");
        assert_eq!(
            field_set(&errors),
            BTreeSet::from([
                "header.urgency",
                "protocol_statement",
                "service_providers[1].name",
                "procedural_instructions",
            ])
        );
        request.service_providers.clear();
        let errors = request.validate().expect_err("problems");
        assert!(field_set(&errors).contains("service_providers"));
    }

    #[test]
    fn status_and_free_text_problems() {
        let mut update = example_status(MessageId([0; 16]));
        update.officer = String::from(" ");
        update.status = Status::Refused {
            ground: RefusalGround::PublicOrder,
            explanation: String::new(),
        };
        let errors = update.validate().expect_err("problems");
        assert_eq!(
            field_set(&errors),
            BTreeSet::from(["references", "officer", "status.explanation"])
        );
        update.status = Status::Preserved {
            reference: String::from("P-1"),
            expires_at: Timestamp(u64::MAX),
        };
        let errors = update.validate().expect_err("problems");
        assert!(field_set(&errors).contains("status.expires_at"));
        assert!(Payload::Status(update).summary().contains("unreadable"));

        let text = FreeText {
            references: None,
            case_reference: Some("x".repeat(MAX_SHORT_TEXT_BYTES + 1)),
            subject: String::from("two\nlines"),
            body: String::new(),
            priority: Priority::Routine,
        };
        let errors = text.validate().expect_err("problems");
        assert_eq!(
            field_set(&errors),
            BTreeSet::from(["case_reference", "subject", "body"])
        );
    }

    #[test]
    fn names_in_other_scripts_are_accepted() {
        let mut request = example_preservation();
        request.header.contact.name = String::from("Ιωάννης Παπαδόπουλος");
        request.header.requesting_authority = String::from("警察庁 サイバー警察局");
        request.facts_summary = String::from("Сервер был зашифрован.\nДанные похищены.");
        assert_eq!(request.validate(), Ok(()));
        let mut update = example_status(some_id());
        update.officer = String::from("محمد عبد الله");
        assert_eq!(update.validate(), Ok(()));
    }

    #[test]
    fn zoned_times() {
        let utc = parse_zoned_time("2026-11-23T02:41:00Z").expect("utc");
        assert_eq!(parse_zoned_time("2026-11-23T03:41:00+01:00"), Ok(utc));
        assert_eq!(parse_zoned_time("2026-11-22T21:41:00-05:00"), Ok(utc));
        assert_eq!(parse_zoned_time("2026-11-23t02:41:00z"), Ok(utc));
        assert_eq!(
            parse_zoned_time("2026-11-23T02:41:00.250Z"),
            Ok(utc.plus_ms(250))
        );
        for weak in [
            "2026-11-23T02:41:00",
            "2026-11-23 02:41:00Z",
            "2026-11-23T02:41:00ZZ",
            "2026-11-23T02:41:00.Z",
            "2026-11-23T02:41Z",
            "2026-11-23T02:41:00+0100",
            "2026-11-23T02:41:00+24:00",
            "2026-11-23T02:41:00+01:60",
            "1970-01-01T00:30:00+01:00",
            "yesterday",
            "",
            "é",
            "2026-11-23T02:41:00+01:0é",
        ] {
            assert!(parse_zoned_time(weak).is_err(), "{weak}");
        }
    }

    #[test]
    fn ip_identifiers() {
        let mut check = Checker::default();
        for (index, address) in ["203.0.113.7", "2001:db8::7", " 198.51.100.1 "]
            .iter()
            .enumerate()
        {
            check.data_identifier(
                &format!("ids[{index}]"),
                &DataIdentifier::IpAddress {
                    address: address.to_string(),
                    port: None,
                    timestamp: String::from("2026-11-23T03:41:00+01:00"),
                },
            );
        }
        assert!(check.errors.is_empty(), "{:?}", check.errors);
        check.data_identifier(
            "ids[9]",
            &DataIdentifier::IpAddress {
                address: String::from("203.0.113"),
                port: None,
                timestamp: String::from("2026-11-23T03:41:00+01:00"),
            },
        );
        assert_eq!(check.errors.len(), 1);
        assert_eq!(check.errors[0].field, "ids[9].address");
    }

    #[test]
    fn every_kind_round_trips_through_the_codec() {
        for payload in all_examples() {
            let bytes = payload.to_bytes().expect("encode");
            assert_eq!(Payload::from_bytes(&bytes), Ok(payload));
        }
    }

    #[test]
    fn every_kind_round_trips_through_toml() {
        for payload in all_examples() {
            let text = toml::to_string(&payload).expect("render");
            let back: Payload = toml::from_str(&text).expect("parse");
            assert_eq!(back, payload, "{text}");
        }
    }

    #[test]
    fn oversized_input_is_refused() {
        let bytes = vec![0u8; usize::try_from(MAX_PAYLOAD_BYTES).expect("fits") + 1];
        assert!(matches!(
            Payload::from_bytes(&bytes),
            Err(CodecError::TooLarge { .. })
        ));
        let text = FreeText {
            body: "x".repeat(usize::try_from(MAX_PAYLOAD_BYTES).expect("fits")),
            ..example_free_text()
        };
        assert!(matches!(
            Payload::FreeText(text).to_bytes(),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_and_truncated_bytes_are_malformed() {
        let mut bytes = Payload::Status(example_status(some_id()))
            .to_bytes()
            .expect("encode");
        bytes.push(0);
        assert!(matches!(
            Payload::from_bytes(&bytes),
            Err(CodecError::Malformed(_))
        ));
        bytes.truncate(bytes.len() - 2);
        assert!(matches!(
            Payload::from_bytes(&bytes),
            Err(CodecError::Malformed(_))
        ));
    }

    // --- property tests -----------------------------------------------------------------------

    fn arb_priority() -> impl Strategy<Value = Priority> {
        prop_oneof![
            Just(Priority::Routine),
            Just(Priority::Urgent),
            Just(Priority::Emergency)
        ]
    }

    fn arb_id() -> impl Strategy<Value = MessageId> {
        any::<[u8; 16]>().prop_map(MessageId)
    }

    prop_compose! {
        fn arb_header()(
            case_reference in any::<String>(),
            urgency in arb_priority(),
            language in any::<String>(),
            requesting_authority in any::<String>(),
            name in any::<String>(),
            phone in any::<String>(),
            email in any::<String>(),
        ) -> RequestHeader {
            RequestHeader {
                case_reference,
                urgency,
                language,
                requesting_authority,
                contact: OnDutyContact { name, phone, email },
            }
        }
    }

    fn arb_identifier() -> impl Strategy<Value = DataIdentifier> {
        prop_oneof![
            (any::<String>(), any::<Option<u16>>(), any::<String>()).prop_map(
                |(address, port, timestamp)| DataIdentifier::IpAddress {
                    address,
                    port,
                    timestamp
                }
            ),
            (any::<String>(), any::<String>()).prop_map(|(service, identifier)| {
                DataIdentifier::Account {
                    service,
                    identifier,
                }
            }),
            any::<String>().prop_map(|address| DataIdentifier::Email { address }),
            any::<String>().prop_map(|name| DataIdentifier::Domain { name }),
            any::<String>().prop_map(|url| DataIdentifier::Url { url }),
            any::<String>().prop_map(|description| DataIdentifier::Other { description }),
        ]
    }

    prop_compose! {
        fn arb_attachment()(
            name in any::<String>(),
            media_type in any::<String>(),
            sha256 in any::<[u8; 32]>(),
            bytes in vec(any::<u8>(), 0..512),
        ) -> Attachment {
            Attachment { name, media_type, sha256: Digest32(sha256), bytes }
        }
    }

    prop_compose! {
        fn arb_preservation()(
            header in arb_header(),
            (offence, facts_summary, data_to_preserve, relationship_to_offence, necessity) in
                (any::<String>(), any::<String>(), any::<String>(), any::<String>(), any::<String>()),
            (custodian, service_provider, system_location) in
                (any::<Option<String>>(), any::<Option<String>>(), any::<Option<String>>()),
            mla_intent in any::<bool>(),
            data_identifiers in vec(arb_identifier(), 0..6),
            preservation_days in any::<u32>(),
            attachments in vec(arb_attachment(), 0..3),
        ) -> PreservationRequest {
            PreservationRequest {
                header,
                offence,
                facts_summary,
                data_to_preserve,
                relationship_to_offence,
                custodian,
                service_provider,
                system_location,
                necessity,
                mla_intent,
                data_identifiers,
                preservation_days,
                attachments,
            }
        }
    }

    fn arb_ground() -> impl Strategy<Value = RefusalGround> {
        prop_oneof![
            Just(RefusalGround::PoliticalOffence),
            Just(RefusalGround::Sovereignty),
            Just(RefusalGround::Security),
            Just(RefusalGround::PublicOrder),
            Just(RefusalGround::OtherEssentialInterests),
            Just(RefusalGround::Other),
        ]
    }

    fn arb_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::AcknowledgedByOfficer),
            (any::<String>(), any::<u64>()).prop_map(|(reference, millis)| Status::Preserved {
                reference,
                expires_at: Timestamp(millis)
            }),
            any::<String>().prop_map(|explanation| Status::PartiallyExecuted { explanation }),
            (arb_ground(), any::<String>()).prop_map(|(ground, explanation)| Status::Refused {
                ground,
                explanation
            }),
            any::<String>().prop_map(|questions| Status::MoreInformationNeeded { questions }),
            any::<String>().prop_map(|authority| Status::ForwardedToCentralAuthority { authority }),
            any::<String>().prop_map(|explanation| Status::DataNotAvailable { explanation }),
        ]
    }

    prop_compose! {
        fn arb_status_update()(
            references in arb_id(),
            case_reference in any::<String>(),
            status in arb_status(),
            note in any::<String>(),
            officer in any::<String>(),
            priority in arb_priority(),
        ) -> StatusUpdate {
            StatusUpdate { references, case_reference, status, note, officer, priority }
        }
    }

    prop_compose! {
        fn arb_free_text()(
            references in proptest::option::of(arb_id()),
            case_reference in any::<Option<String>>(),
            subject in any::<String>(),
            body in any::<String>(),
            priority in arb_priority(),
        ) -> FreeText {
            FreeText { references, case_reference, subject, body, priority }
        }
    }

    fn round_trip(payload: &Payload) -> Result<(), TestCaseError> {
        let bytes = payload
            .to_bytes()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&Payload::from_bytes(&bytes), &Ok(payload.clone()));
        // Validation and summaries never panic, whatever the content.
        let _ = payload.validate();
        prop_assert!(payload.summary().chars().count() <= SUMMARY_MAX_CHARS);
        Ok(())
    }

    proptest! {
        #[test]
        fn preservation_round_trips(request in arb_preservation()) {
            round_trip(&Payload::Preservation(request))?;
        }

        #[test]
        fn status_round_trips(update in arb_status_update()) {
            round_trip(&Payload::Status(update))?;
        }

        #[test]
        fn free_text_round_trips(text in arb_free_text()) {
            round_trip(&Payload::FreeText(text))?;
        }

        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
            let _ = Payload::from_bytes(&bytes);
        }

        #[test]
        fn random_bytes_after_a_valid_tag_never_panic(
            tag in 0u32..5,
            rest in vec(any::<u8>(), 0..2048),
        ) {
            let mut bytes = tag.to_le_bytes().to_vec();
            bytes.extend_from_slice(&rest);
            if let Ok(payload) = Payload::from_bytes(&bytes) {
                let _ = payload.validate();
                let _ = payload.summary();
            }
        }

        #[test]
        fn mutated_encodings_never_panic(
            which in 0usize..7,
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let examples = all_examples();
            let mut bytes = examples[which % examples.len()].to_bytes().expect("encode");
            for (index, byte) in edits {
                let position = index.index(bytes.len());
                bytes[position] = byte;
            }
            if let Ok(payload) = Payload::from_bytes(&bytes) {
                let _ = payload.validate();
                let _ = payload.summary();
            }
        }

        #[test]
        fn zoned_time_parser_never_panics(text in any::<String>()) {
            let _ = parse_zoned_time(&text);
        }
    }
}
