//! The request and answer types that travel inside a sealed envelope, field by field, with the
//! serde shape shared by the binary encoding and the TOML forms.
//!
//! Pure data: the `validate` room checks these values, `text` supplies the serde adapters named
//! here, and the `Payload` enum in the parent module carries exactly one of them.

use std::fmt;

use quickfreeze_keys::types::{CountryCode, Digest32, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::handling::Handling;
use super::limits::{DEFAULT_PRESERVATION_DAYS, LATEST_WRITABLE_MILLIS};
use super::text::{hex_bytes, id_text, optional_text};
use crate::{MessageId, Priority};

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
    /// The sender's conditions on use of this request, signed with it (`[header.handling]`).
    /// Required in a form: the template proposes the defaults and the sender confirms them.
    pub handling: Handling,
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
    /// Days the data should be kept; at least
    /// [`MIN_PRESERVATION_DAYS`](super::MIN_PRESERVATION_DAYS) (Art. 29(7)).
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
    /// The content (hex in text forms), at most
    /// [`MAX_ATTACHMENT_BYTES`](super::MAX_ATTACHMENT_BYTES).
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

pub(super) fn sha256(bytes: &[u8]) -> Digest32 {
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
    pub(super) fn describe(&self, officer: &str) -> String {
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
