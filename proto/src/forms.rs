//! Editable TOML forms that a duty officer fills in to write a request or an answer.
//!
//! [`template`] gives a blank form for each kind of payload, with a plain-language comment above
//! every field (citing the Convention article it comes from). [`parse_form`] reads a filled form
//! back and validates it, reporting every problem at once: a TOML syntax or type error with its
//! line number, or else the full list of missing and malformed fields.
//!
//! A form is the serde shape of the payload struct itself, so `toml::from_str::<PreservationRequest>`
//! reads it directly: nested tables for the header (`[header]`, `[header.contact]`), one
//! `[[data_identifiers]]` block per identifier whose single key names its kind
//! (`ip-address = { ... }`), the same externally tagged representation the binary encoding uses.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::payload::{
    EmergencyDisclosureRequest, FreeText, Payload, PayloadKind, PreservationRequest, StatusUpdate,
    TrafficDataDisclosure, ValidationErrors,
};

/// Which form to fill in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FormKind {
    /// An urgent preservation request (Art. 29).
    Preservation,
    /// A traffic-data disclosure (Art. 30).
    TrafficData,
    /// An emergency disclosure request (CETS 224 Art. 9).
    Emergency,
    /// A status update answering a request.
    Status,
    /// Free-text follow-up or advice.
    FreeText,
}

impl FormKind {
    /// Every form, in the order a menu should list them.
    pub const ALL: [FormKind; 5] = [
        FormKind::Preservation,
        FormKind::TrafficData,
        FormKind::Emergency,
        FormKind::Status,
        FormKind::FreeText,
    ];

    /// The name used on the command line: `preservation`, `traffic`, `emergency`, `status`,
    /// `free-text`.
    pub fn as_str(self) -> &'static str {
        match self {
            FormKind::Preservation => "preservation",
            FormKind::TrafficData => "traffic",
            FormKind::Emergency => "emergency",
            FormKind::Status => "status",
            FormKind::FreeText => "free-text",
        }
    }

    /// The kind of payload this form produces.
    pub fn payload_kind(self) -> PayloadKind {
        match self {
            FormKind::Preservation => PayloadKind::Preservation,
            FormKind::TrafficData => PayloadKind::TrafficData,
            FormKind::Emergency => PayloadKind::Emergency,
            FormKind::Status => PayloadKind::Status,
            FormKind::FreeText => PayloadKind::FreeText,
        }
    }
}

impl From<PayloadKind> for FormKind {
    fn from(kind: PayloadKind) -> FormKind {
        match kind {
            PayloadKind::Preservation => FormKind::Preservation,
            PayloadKind::TrafficData => FormKind::TrafficData,
            PayloadKind::Emergency => FormKind::Emergency,
            PayloadKind::Status => FormKind::Status,
            PayloadKind::FreeText => FormKind::FreeText,
        }
    }
}

impl fmt::Display for FormKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FormKind {
    type Err = String;

    /// Accepts the names from [`FormKind::as_str`] in any case, and `traffic-data`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "preservation" => Ok(FormKind::Preservation),
            "traffic" | "traffic-data" => Ok(FormKind::TrafficData),
            "emergency" => Ok(FormKind::Emergency),
            "status" => Ok(FormKind::Status),
            "free-text" => Ok(FormKind::FreeText),
            _ => Err(format!(
                "`{text}` is not a form; use preservation, traffic, emergency, status or free-text"
            )),
        }
    }
}

/// Why a filled-in form was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The text is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{}", describe_toml(*.line, .message))]
    Toml {
        /// 1-based line of the problem, when TOML could tell.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The form is well-formed but fields are missing or malformed; all of them are listed.
    #[error("the form needs corrections:\n{0}")]
    Invalid(ValidationErrors),
}

fn describe_toml(line: Option<usize>, message: &str) -> String {
    match line {
        Some(line) => format!("line {line}: {message}"),
        None => message.to_string(),
    }
}

/// A blank form of `kind`, with a comment above every field. Fields the officer must decide on
/// are empty (or `false`) so that an unfilled form does not pass validation.
pub fn template(kind: FormKind) -> String {
    match kind {
        FormKind::Preservation => PRESERVATION_TEMPLATE,
        FormKind::TrafficData => TRAFFIC_DATA_TEMPLATE,
        FormKind::Emergency => EMERGENCY_TEMPLATE,
        FormKind::Status => STATUS_TEMPLATE,
        FormKind::FreeText => FREE_TEXT_TEMPLATE,
    }
    .to_string()
}

/// Reads a filled-in form of `kind` and validates it, reporting every problem at once.
pub fn parse_form(kind: FormKind, text: &str) -> Result<Payload, FormError> {
    let payload = match kind {
        FormKind::Preservation => Payload::Preservation(from_toml::<PreservationRequest>(text)?),
        FormKind::TrafficData => Payload::TrafficData(from_toml::<TrafficDataDisclosure>(text)?),
        FormKind::Emergency => Payload::Emergency(from_toml::<EmergencyDisclosureRequest>(text)?),
        FormKind::Status => Payload::Status(from_toml::<StatusUpdate>(text)?),
        FormKind::FreeText => Payload::FreeText(from_toml::<FreeText>(text)?),
    };
    payload.validate().map_err(FormError::Invalid)?;
    Ok(payload)
}

fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, FormError> {
    toml::from_str(text).map_err(|error| FormError::Toml {
        line: error.span().map(|span| line_of(text, span.start)),
        message: error.message().trim().to_string(),
    })
}

/// The 1-based line that byte `offset` of `text` falls on.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------------------
// Templates. Every key and table line has a comment line directly above it (a test checks).
// ---------------------------------------------------------------------------------------------

const PRESERVATION_TEMPLATE: &str = r#"# URGENT PRESERVATION REQUEST ("quick freeze"), Budapest Convention Art. 29.
# Lines starting with # are help and are ignored. Write your answers between the quotes.
# Long text may span several lines between triple quotes: """ ... """.
# When you save, the whole form is checked and every missing or wrong field is listed at once.

# The offence under investigation, e.g. "ransomware attack: illegal access and data
# interference (Arts. 2 and 4)" (Art. 29(2)(b)).
offence = ""
# A brief summary of the facts: what happened, when, to whom (Art. 29(2)(b)).
facts_summary = ""
# The stored computer data to be preserved, e.g. "subscriber details and connection logs
# from 15 to 23 November 2026" (Art. 29(2)(c)).
data_to_preserve = ""
# How that data is connected to the offence (Art. 29(2)(c)).
relationship_to_offence = ""
# Who holds the data (the custodian), if you know. Leave empty if not (Art. 29(2)(d)).
custodian = ""
# The service provider that holds the data, if you know. Leave empty if not (Art. 29(2)(d)).
service_provider = ""
# Where the computer system is (city, data centre), if you know. Leave empty if not (Art. 29(2)(d)).
system_location = ""
# Why the data must be preserved now, e.g. "the provider deletes logs after 7 days" (Art. 29(2)(e)).
necessity = ""
# Set to true to confirm that your country will send a mutual assistance request to search,
# seize or obtain this data. The request is not valid without it (Art. 29(2)(f)).
mla_intent = false
# How many days the data should be kept: at least 60 (Art. 29(7)). 90 is usual.
preservation_days = 90
# Small files to send along (log extracts, hash lists): at most 8, 256 KiB each. Usually left
# empty; each file is { name = "x.csv", media_type = "text/csv", sha256 = "<64 hex digits>", bytes = "<hex>" }.
attachments = []

# About you and your case.
[header]
# Your own case reference; the other side quotes it in every reply.
case_reference = ""
# How urgent: "urgent" (data may be deleted within days), "routine", or "emergency"
# (risk to someone's life or safety; for disclosure in an emergency use the emergency form).
urgency = "urgent"
# The language you write in, as a code such as "en", "fr" or "pt-BR". English is always accepted.
language = "en"
# The authority asking for the preservation, e.g. "Public Prosecutor's Office, Cybercrime Unit" (Art. 29(2)(a)).
requesting_authority = ""

# The officer on duty whom the other side can call about this request.
[header.contact]
# Your name, in any script.
name = ""
# A phone number that is answered now, with the country code, e.g. "+31 70 555 0100".
phone = ""
# An e-mail address for follow-up.
email = ""

# YOUR CONDITIONS ON USE of this request (handling codes). They are signed with the request and
# shown at the top of it at the other side. The values below are the usual ones: check each.
[header.handling]
# true: the other side may use this only for the case and purpose stated here.
use_limited_to_case = true
# May they pass it on? "forbidden", "with-consent" (only with your prior consent) or "permitted".
onward_transmission = "with-consent"
# May it be used as evidence? "intelligence-only", "with-consent" (not without your prior
# consent; evidence normally comes through mutual legal assistance) or "may-be-used-as-evidence".
evidential_use = "with-consent"
# true: answer and discuss this only through this network, not by other channels.
reply_channel_only = true
# Any other condition, in your words (at most 1024 bytes). Leave empty if none.
free_text = ""

# What identifies the data to preserve (Art. 29(2)(c)): one [[data_identifiers]] block for each,
# at least one and at most 64. Each block holds exactly one line, of one of these kinds:
#   ip-address = { address = "203.0.113.7", port = 443, timestamp = "2026-11-23T02:41:00Z" }
#   account = { service = "mail.example.org", identifier = "user123" }
#   email = { address = "someone@example.org" }
#   domain = { name = "example.org" }
#   url = { url = "https://example.org/page" }
#   other = { description = "anything else that identifies the data" }
[[data_identifiers]]
# An IP address and the time it was used, with its zone ("Z" for UTC, or an offset such as
# "+01:00"); the port is optional but needed behind shared addresses. Replace this line with
# another kind from the list above if you have no address.
ip-address = { address = "", timestamp = "" }
"#;

const TRAFFIC_DATA_TEMPLATE: &str = r#"# TRAFFIC-DATA DISCLOSURE, Budapest Convention Art. 30.
# While preserving traffic data you found that a service provider in another state took part in
# the communication: disclose enough traffic data to identify that provider and the path.
# Lines starting with # are help and are ignored. Write your answers between the quotes.

# The message id of the preservation request this follows from (32 hex digits), if any.
# Leave empty if there is none.
references = ""
# The service provider in the other state that was involved.
service_provider = ""
# That provider's country as a two-letter code such as "DE" or "IS", if known. Leave empty if not.
provider_country = ""
# The traffic data you disclose: addresses, ports, times with zones (Art. 30(1)).
traffic_data = ""
# The path of the communication as far as you know it, from the origin to your system (Art. 30(1)).
path_description = ""

# About you and the case.
[header]
# The requesting side's case reference, as quoted in their preservation request.
case_reference = ""
# How urgent: "urgent", "routine" or "emergency".
urgency = "urgent"
# The language you write in, as a code such as "en". English is always accepted.
language = "en"
# Your authority, which is disclosing the data.
requesting_authority = ""

# The officer on duty whom the other side can call about this disclosure.
[header.contact]
# Your name, in any script.
name = ""
# A phone number that is answered now, with the country code.
phone = ""
# An e-mail address for follow-up.
email = ""

# YOUR CONDITIONS ON USE of this request (handling codes). They are signed with the request and
# shown at the top of it at the other side. The values below are the usual ones: check each.
[header.handling]
# true: the other side may use this only for the case and purpose stated here.
use_limited_to_case = true
# May they pass it on? "forbidden", "with-consent" (only with your prior consent) or "permitted".
onward_transmission = "with-consent"
# May it be used as evidence? "intelligence-only", "with-consent" (not without your prior
# consent; evidence normally comes through mutual legal assistance) or "may-be-used-as-evidence".
evidential_use = "with-consent"
# true: answer and discuss this only through this network, not by other channels.
reply_channel_only = true
# Any other condition, in your words (at most 1024 bytes). Leave empty if none.
free_text = ""
"#;

const EMERGENCY_TEMPLATE: &str = r#"# EMERGENCY DISCLOSURE REQUEST, Second Additional Protocol (CETS 224) Art. 9.
# Only for a significant and imminent risk to the life or safety of a person.
# Lines starting with # are help and are ignored. Write your answers between the quotes.

# Set to true to state that this request is made under the Second Additional Protocol (Art. 9(3)).
protocol_statement = false
# The offence(s) under investigation (Art. 9(3)).
offences = ""
# The legal provisions that define the offence(s) (Art. 9(3)).
legal_provisions = ""
# The penalties those provisions carry (Art. 9(3)).
penalties = ""
# The facts that show the emergency: who is at risk, of what, and how soon (Art. 9(3)).
emergency_facts = ""
# How the data you ask for relates to the emergency (Art. 9(3)).
data_relation = ""
# A detailed description of the data you ask for: accounts, periods, kinds of data (Art. 9(3)).
data_sought = ""
# Special instructions, e.g. "do not notify the account holder", or how to answer. Leave empty if none.
procedural_instructions = ""
# Anything else that may help the other side act quickly. Leave empty if nothing.
other_information = ""

# About you and your case.
[header]
# Your own case reference; the other side quotes it in every reply.
case_reference = ""
# Must stay "emergency" for this form.
urgency = "emergency"
# The language you write in, as a code such as "en". English is always accepted.
language = "en"
# The competent authority making the request (Art. 9(3)).
requesting_authority = ""

# The officer on duty whom the other side can call, at any hour, about this request.
[header.contact]
# Your name, in any script.
name = ""
# A phone number that is answered now, with the country code.
phone = ""
# An e-mail address for follow-up.
email = ""

# YOUR CONDITIONS ON USE of this request (handling codes). They are signed with the request and
# shown at the top of it at the other side. The values below are the usual ones: check each.
[header.handling]
# true: the other side may use this only for the case and purpose stated here.
use_limited_to_case = true
# May they pass it on? "forbidden", "with-consent" (only with your prior consent) or "permitted".
onward_transmission = "with-consent"
# May it be used as evidence? "intelligence-only", "with-consent" (not without your prior
# consent; evidence normally comes through mutual legal assistance) or "may-be-used-as-evidence".
evidential_use = "with-consent"
# true: answer and discuss this only through this network, not by other channels.
reply_channel_only = true
# Any other condition, in your words (at most 1024 bytes). Leave empty if none.
free_text = ""

# The service provider(s) holding the data (Art. 9(3)): one [[service_providers]] block each,
# at least one.
[[service_providers]]
# The provider's name.
name = ""
# The provider's postal or registered address.
address = ""
"#;

const STATUS_TEMPLATE: &str = r#"# STATUS UPDATE: tell the requesting side what happened to their request.
# Lines starting with # are help and are ignored. Write your answers between the quotes.

# The message id of the request you answer (32 hex digits), replacing the zeros.
references = "00000000000000000000000000000000"
# The requesting side's case reference, as quoted in their request.
case_reference = ""
# What happened. Write one of these lines (keep the quotes and braces as shown):
#   status = "acknowledged-by-officer"
#   status = { preserved = { reference = "your order number", expires_at = "2027-02-21T00:00:00Z" } }
#   status = { partially-executed = { explanation = "what was done and what was not" } }
#   status = { refused = { ground = "public-order", explanation = "why" } }
#   status = { more-information-needed = { questions = "what you need to know" } }
#   status = { forwarded-to-central-authority = { authority = "which authority" } }
#   status = { data-not-available = { explanation = "what is known about the data" } }
# Grounds for refusal (Art. 29(5)): political-offence, sovereignty, security, public-order,
# other-essential-interests, other. Use data-not-available when preservation will not keep
# the data available (Art. 29(6)).
status = "acknowledged-by-officer"
# Anything else to say. May stay empty.
note = ""
# Your name, in any script.
officer = ""
# How urgent this update is: "routine", "urgent" or "emergency".
priority = "routine"
"#;

const FREE_TEXT_TEMPLATE: &str = r#"# FREE-TEXT MESSAGE: follow-up or technical advice between points of contact (Art. 35(1)(a)).
# Lines starting with # are help and are ignored. Write your answers between the quotes.

# The message id this follows up (32 hex digits), if any. Leave empty if none.
references = ""
# The case it concerns, if any. Leave empty if none.
case_reference = ""
# A one-line subject.
subject = ""
# The message. Long text may span several lines between triple quotes: """ ... """.
body = ""
# How urgent: "routine", "urgent" or "emergency".
priority = "routine"
"#;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::payload::{
        example_emergency, example_free_text, example_preservation, example_status,
        example_traffic_data, DataIdentifier, EvidentialUse, Handling, OnwardTransmission, Status,
    };
    use crate::{MessageId, Priority};

    /// Replaces the first line that starts with `from`, insisting that there is one (lines in
    /// comments never match).
    fn fill(text: &str, replacements: &[(&str, &str)]) -> String {
        let mut text = text.to_string();
        for (from, to) in replacements {
            let from = format!("\n{from}");
            assert!(text.contains(&from), "template lacks `{from}`");
            text = text.replacen(&from, &format!("\n{to}"), 1);
        }
        text
    }

    const CONTACT: [(&str, &str); 5] = [
        (
            "case_reference = \"\"",
            "case_reference = \"HTCU-2026-0412\"",
        ),
        (
            "requesting_authority = \"\"",
            "requesting_authority = \"National High-Tech Crime Unit\"",
        ),
        ("name = \"\"", "name = \"Ιωάννης Παπαδόπουλος\""),
        ("phone = \"\"", "phone = \"+30 210 555 0100\""),
        ("email = \"\"", "email = \"duty@example.org\""),
    ];

    fn filled(kind: FormKind) -> String {
        let blank = template(kind);
        match kind {
            FormKind::Preservation => fill(
                &fill(&blank, &CONTACT),
                &[
                    ("offence = \"\"", "offence = \"Ransomware (Arts. 2, 4, 5)\""),
                    (
                        "facts_summary = \"\"",
                        "facts_summary = \"\"\"\nHospital servers encrypted on 22 November.\nData exfiltrated first.\"\"\"",
                    ),
                    ("data_to_preserve = \"\"", "data_to_preserve = \"Connection logs\""),
                    (
                        "relationship_to_offence = \"\"",
                        "relationship_to_offence = \"Exfiltration target\"",
                    ),
                    ("service_provider = \"\"", "service_provider = \"Example Hosting B.V.\""),
                    ("necessity = \"\"", "necessity = \"Logs kept 7 days\""),
                    ("mla_intent = false", "mla_intent = true"),
                    (
                        "ip-address = { address = \"\", timestamp = \"\" }",
                        "ip-address = { address = \"203.0.113.7\", port = 443, timestamp = \"2026-11-23T00:04:51+01:00\" }\n\
                         # A second identifier.\n[[data_identifiers]]\n# An e-mail address.\n\
                         email = { address = \"r.koval@example.org\" }",
                    ),
                ],
            ),
            FormKind::TrafficData => fill(
                &fill(&blank, &CONTACT),
                &[
                    (
                        "references = \"\"",
                        "references = \"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\"",
                    ),
                    ("service_provider = \"\"", "service_provider = \"Example VPN ehf.\""),
                    ("provider_country = \"\"", "provider_country = \"is\""),
                    ("traffic_data = \"\"", "traffic_data = \"198.51.100.23 -> 203.0.113.7:22\""),
                    ("path_description = \"\"", "path_description = \"VPN exit, then hosting\""),
                ],
            ),
            FormKind::Emergency => fill(
                &fill(&blank, &CONTACT),
                &[
                    ("protocol_statement = false", "protocol_statement = true"),
                    ("offences = \"\"", "offences = \"Kidnapping\""),
                    ("legal_provisions = \"\"", "legal_provisions = \"Criminal Code Art. 282\""),
                    ("penalties = \"\"", "penalties = \"Up to 15 years\""),
                    ("emergency_facts = \"\"", "emergency_facts = \"Threat to kill by 18:00 UTC\""),
                    ("data_relation = \"\"", "data_relation = \"Kidnappers use the account\""),
                    ("data_sought = \"\"", "data_sought = \"Login IP addresses since 22 Nov\""),
                    ("name = \"\"", "name = \"Example Messaging Ltd.\""),
                    ("address = \"\"", "address = \"1 Example Quay, Dublin\""),
                ],
            ),
            FormKind::Status => fill(
                &blank,
                &[
                    (
                        "references = \"00000000000000000000000000000000\"",
                        "references = \"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\"",
                    ),
                    ("case_reference = \"\"", "case_reference = \"HTCU-2026-0412\""),
                    (
                        "status = \"acknowledged-by-officer\"",
                        "status = { preserved = { reference = \"PRES-2026-0981\", expires_at = \"2027-02-21T00:00:00Z\" } }",
                    ),
                    ("officer = \"\"", "officer = \"山田 太郎\""),
                ],
            ),
            FormKind::FreeText => fill(
                &blank,
                &[
                    ("subject = \"\"", "subject = \"Log format\""),
                    ("body = \"\"", "body = \"Times are CET without a zone.\""),
                ],
            ),
        }
    }

    fn invalid_fields(kind: FormKind, text: &str) -> BTreeSet<String> {
        match parse_form(kind, text) {
            Err(FormError::Invalid(errors)) => {
                errors.0.into_iter().map(|error| error.field).collect()
            }
            other => panic!("expected Invalid for {kind}, got {other:?}"),
        }
    }

    fn set(fields: &[&str]) -> BTreeSet<String> {
        fields.iter().map(|field| field.to_string()).collect()
    }

    const HEADER_FIELDS: [&str; 5] = [
        "header.case_reference",
        "header.requesting_authority",
        "header.contact.name",
        "header.contact.phone",
        "header.contact.email",
    ];

    #[test]
    fn form_kind_names() {
        for kind in FormKind::ALL {
            assert_eq!(kind.to_string().parse::<FormKind>(), Ok(kind));
            assert_eq!(FormKind::from(kind.payload_kind()), kind);
        }
        assert_eq!(
            "traffic-data".parse::<FormKind>(),
            Ok(FormKind::TrafficData)
        );
        assert_eq!(" Free-Text ".parse::<FormKind>(), Ok(FormKind::FreeText));
        assert!("mla".parse::<FormKind>().is_err());
    }

    #[test]
    fn every_key_in_every_template_has_a_comment_above_it() {
        for kind in FormKind::ALL {
            let text = template(kind);
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines.first().is_some_and(|line| line.starts_with('#')));
            for (index, line) in lines.iter().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let above = index
                    .checked_sub(1)
                    .and_then(|above| lines.get(above))
                    .map(|above| above.trim_start());
                assert!(
                    above.is_some_and(|above| above.starts_with('#')),
                    "{kind} template line {}: `{line}` has no comment above it",
                    index + 1
                );
            }
        }
    }

    #[test]
    fn templates_cite_the_articles() {
        assert!(template(FormKind::Preservation).contains("Art. 29(2)(b)"));
        assert!(template(FormKind::Preservation).contains("Art. 29(7)"));
        assert!(template(FormKind::TrafficData).contains("Art. 30"));
        assert!(template(FormKind::Emergency).contains("Art. 9"));
        assert!(template(FormKind::Status).contains("Art. 29(5)"));
    }

    #[test]
    fn unfilled_templates_list_the_required_fields() {
        let mut expected = set(&HEADER_FIELDS);
        expected.extend(set(&[
            "offence",
            "facts_summary",
            "data_to_preserve",
            "relationship_to_offence",
            "necessity",
            "mla_intent",
            "data_identifiers[0].address",
            "data_identifiers[0].timestamp",
        ]));
        assert_eq!(
            invalid_fields(FormKind::Preservation, &template(FormKind::Preservation)),
            expected
        );

        let mut expected = set(&HEADER_FIELDS);
        expected.extend(set(&[
            "service_provider",
            "traffic_data",
            "path_description",
        ]));
        assert_eq!(
            invalid_fields(FormKind::TrafficData, &template(FormKind::TrafficData)),
            expected
        );

        let mut expected = set(&HEADER_FIELDS);
        expected.extend(set(&[
            "protocol_statement",
            "offences",
            "legal_provisions",
            "penalties",
            "emergency_facts",
            "data_relation",
            "data_sought",
            "service_providers[0].name",
            "service_providers[0].address",
        ]));
        assert_eq!(
            invalid_fields(FormKind::Emergency, &template(FormKind::Emergency)),
            expected
        );

        assert_eq!(
            invalid_fields(FormKind::Status, &template(FormKind::Status)),
            set(&["references", "case_reference", "officer"])
        );
        assert_eq!(
            invalid_fields(FormKind::FreeText, &template(FormKind::FreeText)),
            set(&["subject", "body"])
        );
    }

    #[test]
    fn filled_templates_parse_and_validate() {
        for kind in FormKind::ALL {
            let text = filled(kind);
            let payload = parse_form(kind, &text)
                .unwrap_or_else(|error| panic!("{kind} form rejected: {error}\n{text}"));
            assert_eq!(payload.kind(), kind.payload_kind());
        }
    }

    #[test]
    fn filled_forms_read_as_expected() {
        let Ok(Payload::Preservation(request)) =
            parse_form(FormKind::Preservation, &filled(FormKind::Preservation))
        else {
            panic!("preservation form rejected");
        };
        assert_eq!(request.preservation_days, 90);
        assert_eq!(request.header.language, "en");
        assert_eq!(request.header.urgency, Priority::Urgent);
        assert_eq!(request.header.contact.name, "Ιωάννης Παπαδόπουλος");
        assert_eq!(request.custodian, None, "blank optional text is absent");
        assert_eq!(
            request.service_provider.as_deref(),
            Some("Example Hosting B.V.")
        );
        assert!(request.attachments.is_empty());
        assert_eq!(
            request.facts_summary,
            "Hospital servers encrypted on 22 November.\nData exfiltrated first."
        );
        assert_eq!(
            request.data_identifiers,
            [
                DataIdentifier::IpAddress {
                    address: String::from("203.0.113.7"),
                    port: Some(443),
                    timestamp: String::from("2026-11-23T00:04:51+01:00"),
                },
                DataIdentifier::Email {
                    address: String::from("r.koval@example.org"),
                },
            ]
        );

        let Ok(Payload::TrafficData(disclosure)) =
            parse_form(FormKind::TrafficData, &filled(FormKind::TrafficData))
        else {
            panic!("traffic form rejected");
        };
        assert_eq!(disclosure.references, Some(MessageId([0x5a; 16])));
        assert_eq!(
            disclosure
                .provider_country
                .map(|country| country.to_string()),
            Some(String::from("IS"))
        );

        let Ok(Payload::Status(update)) = parse_form(FormKind::Status, &filled(FormKind::Status))
        else {
            panic!("status form rejected");
        };
        assert!(matches!(update.status, Status::Preserved { .. }));
        assert_eq!(update.priority, Priority::Routine);

        let Ok(Payload::FreeText(text)) =
            parse_form(FormKind::FreeText, &filled(FormKind::FreeText))
        else {
            panic!("free-text form rejected");
        };
        assert_eq!(text.references, None);
        assert_eq!(text.case_reference, None);
    }

    #[test]
    fn templates_propose_the_default_conditions_and_the_sender_can_change_them() {
        let Ok(Payload::Emergency(request)) =
            parse_form(FormKind::Emergency, &filled(FormKind::Emergency))
        else {
            panic!("emergency form rejected");
        };
        assert_eq!(request.header.handling, Handling::default());
        let stricter = filled(FormKind::Emergency)
            .replace(
                "evidential_use = \"with-consent\"",
                "evidential_use = \"intelligence-only\"",
            )
            .replace(
                "onward_transmission = \"with-consent\"",
                "onward_transmission = \"forbidden\"",
            )
            .replace(
                "free_text = \"\"",
                "free_text = \"Do not alert the provider.\"",
            );
        let Ok(Payload::Emergency(request)) = parse_form(FormKind::Emergency, &stricter) else {
            panic!("emergency form rejected");
        };
        assert_eq!(
            request.header.handling,
            Handling {
                use_limited_to_case: true,
                onward_transmission: OnwardTransmission::Forbidden,
                evidential_use: EvidentialUse::IntelligenceOnly,
                reply_channel_only: true,
                free_text: Some("Do not alert the provider.".into()),
            }
        );
        let unknown = filled(FormKind::Emergency).replace(
            "evidential_use = \"with-consent\"",
            "evidential_use = \"sometimes\"",
        );
        let error = parse_form(FormKind::Emergency, &unknown).expect_err("unknown word");
        assert!(error.to_string().contains("intelligence-only"), "{error}");
    }

    #[test]
    fn a_form_without_conditions_on_use_is_refused_by_name() {
        let text = filled(FormKind::Preservation);
        let start = text
            .find("[header.handling]")
            .expect("template has the table");
        let end = text[start..].find("free_text").expect("last key") + start;
        let end = text[end..].find('\n').expect("line end") + end;
        let without = format!("{}{}", &text[..start], &text[end..]);
        let error = parse_form(FormKind::Preservation, &without).expect_err("handling missing");
        assert!(error.to_string().contains("handling"), "{error}");
    }

    #[test]
    fn filled_preservation_form_round_trips_through_toml_and_the_codec() {
        let payload = parse_form(FormKind::Preservation, &filled(FormKind::Preservation))
            .expect("filled form is valid");
        let bytes = payload.to_bytes().expect("encode");
        assert_eq!(Payload::from_bytes(&bytes).as_ref(), Ok(&payload));
        let Payload::Preservation(request) = &payload else {
            panic!("wrong kind");
        };
        let text = toml::to_string(request).expect("render");
        assert_eq!(parse_form(FormKind::Preservation, &text), Ok(payload));
    }

    #[test]
    fn rendered_examples_are_valid_forms() {
        let id = MessageId([0x5a; 16]);
        let mut traffic = example_traffic_data();
        traffic.references = Some(id);
        let cases = [
            (
                FormKind::Preservation,
                Payload::Preservation(example_preservation()),
                toml::to_string(&example_preservation()),
            ),
            (
                FormKind::TrafficData,
                Payload::TrafficData(traffic.clone()),
                toml::to_string(&traffic),
            ),
            (
                FormKind::Emergency,
                Payload::Emergency(example_emergency()),
                toml::to_string(&example_emergency()),
            ),
            (
                FormKind::Status,
                Payload::Status(example_status(id)),
                toml::to_string(&example_status(id)),
            ),
            (
                FormKind::FreeText,
                Payload::FreeText(example_free_text()),
                toml::to_string(&example_free_text()),
            ),
        ];
        for (kind, payload, text) in cases {
            let text = text.expect("render");
            assert_eq!(parse_form(kind, &text), Ok(payload.clone()), "{text}");
            let bytes = payload.to_bytes().expect("encode");
            assert_eq!(Payload::from_bytes(&bytes), Ok(payload));
        }
    }

    #[test]
    fn syntax_errors_report_their_line() {
        let text = template(FormKind::Preservation).replacen(
            "necessity = \"\"",
            "necessity = \"unterminated",
            1,
        );
        let line = text
            .lines()
            .position(|line| line.starts_with("necessity"))
            .expect("line present")
            + 1;
        match parse_form(FormKind::Preservation, &text) {
            Err(FormError::Toml {
                line: Some(reported),
                message,
            }) => {
                assert_eq!(reported, line, "{message}");
                let shown = FormError::Toml {
                    line: Some(reported),
                    message,
                }
                .to_string();
                assert!(shown.starts_with(&format!("line {line}: ")), "{shown}");
            }
            other => panic!("expected a TOML error, got {other:?}"),
        }
    }

    #[test]
    fn type_errors_and_unknown_keys_report_their_line() {
        let text = filled(FormKind::Preservation).replacen(
            "preservation_days = 90",
            "preservation_days = \"ninety\"",
            1,
        );
        let line = text
            .lines()
            .position(|line| line.starts_with("preservation_days"))
            .expect("line present")
            + 1;
        assert!(matches!(
            parse_form(FormKind::Preservation, &text),
            Err(FormError::Toml { line: Some(reported), .. }) if reported == line
        ));

        let text = filled(FormKind::Status).replacen("note = \"\"", "notes = \"\"", 1);
        let line = text
            .lines()
            .position(|line| line.starts_with("notes"))
            .expect("line present")
            + 1;
        let result = parse_form(FormKind::Status, &text);
        assert!(
            matches!(&result, Err(FormError::Toml { line: Some(reported), .. }) if *reported == line),
            "{result:?}"
        );

        // A bad message id is a value error with a line, not a panic.
        let text = filled(FormKind::Status).replacen("5a5a5a5a", "zz", 1);
        assert!(matches!(
            parse_form(FormKind::Status, &text),
            Err(FormError::Toml { line: Some(_), .. })
        ));
    }

    #[test]
    fn the_wrong_form_is_refused() {
        assert!(matches!(
            parse_form(FormKind::FreeText, &filled(FormKind::Status)),
            Err(FormError::Toml { .. })
        ));
    }

    #[test]
    fn invalid_form_lists_every_problem_in_its_message() {
        let error =
            parse_form(FormKind::FreeText, &template(FormKind::FreeText)).expect_err("unfilled");
        let shown = error.to_string();
        assert!(shown.contains("subject: "), "{shown}");
        assert!(shown.contains("body: "), "{shown}");
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
