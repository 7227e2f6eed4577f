//! Editable TOML forms that a duty officer fills in to write a request or an answer.
//!
//! [`template`] gives a blank form for each kind of payload, with a plain-language comment above
//! every field (citing the Convention article it comes from). [`parse_form`] reads a filled form
//! back and validates it, reporting every problem at once: a TOML syntax or type error with its
//! line number, or else the full list of missing and malformed fields.
//!
//! [`template_in`] gives the same form with its help in another language (see [`crate::i18n`]):
//! only the comments change, never the keys.
//!
//! A form is the serde shape of the payload struct itself, so `toml::from_str::<PreservationRequest>`
//! reads it directly: nested tables for the header (`[header]`, `[header.contact]`), one
//! `[[data_identifiers]]` block per identifier whose single key names its kind
//! (`ip-address = { ... }`), the same externally tagged representation the binary encoding uses.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::i18n::Language;

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
    template_in(kind, Language::En)
}

/// A blank form of `kind` with its title and help comments in `language`. Only comments are
/// translated: the keys and values are the same in every language, so any of them parses with
/// [`parse_form`] and yields the same language-neutral payload.
pub fn template_in(kind: FormKind, language: Language) -> String {
    expand(skeleton(kind), language)
}

/// Every catalogue key the blank form of `kind` uses (for completeness checks).
pub fn template_keys(kind: FormKind) -> Vec<&'static str> {
    skeleton_keys(skeleton(kind)).collect()
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
// A skeleton line `@key` becomes the help text `key` of the catalogue (see `crate::i18n`), one
// `# ` comment line per line of text; every other line is copied as it is, so the TOML keys
// and values stay the same in every language.
// ---------------------------------------------------------------------------------------------

const PRESERVATION_TEMPLATE: &str = r#"@help.preservation.title
@help.intro
@help.long-text
@help.checked

@help.preservation.offence
offence = ""
@help.preservation.facts-summary
facts_summary = ""
@help.preservation.data-to-preserve
data_to_preserve = ""
@help.preservation.relationship-to-offence
relationship_to_offence = ""
@help.preservation.custodian
custodian = ""
@help.preservation.service-provider
service_provider = ""
@help.preservation.system-location
system_location = ""
@help.preservation.necessity
necessity = ""
@help.preservation.mla-intent
mla_intent = false
@help.preservation.preservation-days
preservation_days = 90
@help.preservation.attachments
attachments = []

@help.about-you
[header]
@help.case-reference
case_reference = ""
@help.preservation.urgency
urgency = "urgent"
@help.language
language = "en"
@help.preservation.requesting-authority
requesting_authority = ""

@help.contact
[header.contact]
@help.contact-name
name = ""
@help.contact-phone
phone = ""
@help.contact-email
email = ""

@help.handling.intro
[header.handling]
@help.handling.use-limited-to-case
use_limited_to_case = true
@help.handling.onward-transmission
onward_transmission = "with-consent"
@help.handling.evidential-use
evidential_use = "with-consent"
@help.handling.reply-channel-only
reply_channel_only = true
@help.handling.free-text
free_text = ""

@help.preservation.identifiers
#   ip-address = { address = "203.0.113.7", port = 443, timestamp = "2026-11-23T02:41:00Z" }
#   account = { service = "mail.example.org", identifier = "user123" }
#   email = { address = "someone@example.org" }
#   domain = { name = "example.org" }
#   url = { url = "https://example.org/page" }
#   other = { description = "anything else that identifies the data" }
[[data_identifiers]]
@help.preservation.ip-address
ip-address = { address = "", timestamp = "" }
"#;

const TRAFFIC_DATA_TEMPLATE: &str = r#"@help.traffic.title
@help.traffic.purpose
@help.intro

@help.traffic.references
references = ""
@help.traffic.service-provider
service_provider = ""
@help.traffic.provider-country
provider_country = ""
@help.traffic.traffic-data
traffic_data = ""
@help.traffic.path-description
path_description = ""

@help.about-case
[header]
@help.their-case-reference
case_reference = ""
@help.traffic.urgency
urgency = "urgent"
@help.language
language = "en"
@help.traffic.requesting-authority
requesting_authority = ""

@help.traffic.contact
[header.contact]
@help.contact-name
name = ""
@help.contact-phone
phone = ""
@help.contact-email
email = ""

@help.handling.intro
[header.handling]
@help.handling.use-limited-to-case
use_limited_to_case = true
@help.handling.onward-transmission
onward_transmission = "with-consent"
@help.handling.evidential-use
evidential_use = "with-consent"
@help.handling.reply-channel-only
reply_channel_only = true
@help.handling.free-text
free_text = ""
"#;

const EMERGENCY_TEMPLATE: &str = r#"@help.emergency.title
@help.emergency.purpose
@help.intro

@help.emergency.protocol-statement
protocol_statement = false
@help.emergency.offences
offences = ""
@help.emergency.legal-provisions
legal_provisions = ""
@help.emergency.penalties
penalties = ""
@help.emergency.emergency-facts
emergency_facts = ""
@help.emergency.data-relation
data_relation = ""
@help.emergency.data-sought
data_sought = ""
@help.emergency.procedural-instructions
procedural_instructions = ""
@help.emergency.other-information
other_information = ""

@help.about-you
[header]
@help.case-reference
case_reference = ""
@help.emergency.urgency
urgency = "emergency"
@help.language
language = "en"
@help.emergency.requesting-authority
requesting_authority = ""

@help.emergency.contact
[header.contact]
@help.contact-name
name = ""
@help.contact-phone
phone = ""
@help.contact-email
email = ""

@help.handling.intro
[header.handling]
@help.handling.use-limited-to-case
use_limited_to_case = true
@help.handling.onward-transmission
onward_transmission = "with-consent"
@help.handling.evidential-use
evidential_use = "with-consent"
@help.handling.reply-channel-only
reply_channel_only = true
@help.handling.free-text
free_text = ""

@help.emergency.service-providers
[[service_providers]]
@help.emergency.provider-name
name = ""
@help.emergency.provider-address
address = ""
"#;

const STATUS_TEMPLATE: &str = r#"@help.status.title
@help.intro

@help.status.references
references = "00000000000000000000000000000000"
@help.their-case-reference
case_reference = ""
@help.status.status
#   status = "acknowledged-by-officer"
#   status = { preserved = { reference = "your order number", expires_at = "2027-02-21T00:00:00Z" } }
#   status = { partially-executed = { explanation = "what was done and what was not" } }
#   status = { refused = { ground = "public-order", explanation = "why" } }
#   status = { more-information-needed = { questions = "what you need to know" } }
#   status = { forwarded-to-central-authority = { authority = "which authority" } }
#   status = { data-not-available = { explanation = "what is known about the data" } }
@help.status.grounds
status = "acknowledged-by-officer"
@help.status.note
note = ""
@help.officer
officer = ""
@help.status.priority
priority = "routine"
"#;

const FREE_TEXT_TEMPLATE: &str = r#"@help.free-text.title
@help.intro

@help.free-text.references
references = ""
@help.free-text.case-reference
case_reference = ""
@help.free-text.subject
subject = ""
@help.free-text.body
body = ""
@help.priority
priority = "routine"
"#;

/// The help keys a skeleton uses, in order (for the completeness test).
fn skeleton_keys(skeleton: &str) -> impl Iterator<Item = &str> {
    skeleton.lines().filter_map(|line| line.strip_prefix('@'))
}

/// Expands a skeleton in `language`.
fn expand(skeleton: &str, language: Language) -> String {
    let mut out = String::with_capacity(skeleton.len() * 2);
    for line in skeleton.lines() {
        match line.strip_prefix('@') {
            Some(key) => {
                for text in language.text(key).lines() {
                    out.push_str(format!("# {text}").trim_end());
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn skeleton(kind: FormKind) -> &'static str {
    match kind {
        FormKind::Preservation => PRESERVATION_TEMPLATE,
        FormKind::TrafficData => TRAFFIC_DATA_TEMPLATE,
        FormKind::Emergency => EMERGENCY_TEMPLATE,
        FormKind::Status => STATUS_TEMPLATE,
        FormKind::FreeText => FREE_TEXT_TEMPLATE,
    }
}

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
        filled_in(kind, Language::En)
    }

    /// The blank form in `language` with the same answers written in.
    fn filled_in(kind: FormKind, language: Language) -> String {
        let blank = template_in(kind, language);
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
        for (kind, language) in FormKind::ALL
            .into_iter()
            .flat_map(|kind| Language::ALL.map(|language| (kind, language)))
        {
            let text = template_in(kind, language);
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
                    "{kind} template in {language}, line {}: `{line}` has no comment above it",
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
    fn templates_in_every_language_parse_to_the_same_payload() {
        for kind in FormKind::ALL {
            let english = parse_form(kind, &filled(kind)).expect("english form");
            for language in Language::ALL {
                let text = filled_in(kind, language);
                assert_ne!(language == Language::En, text != filled(kind));
                assert_eq!(
                    parse_form(kind, &text).as_ref(),
                    Ok(&english),
                    "{kind} in {language}:\n{text}"
                );
            }
        }
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
