//! Checking a payload completely: every missing or malformed field is reported in one pass, in
//! words an officer can act on, with the dotted path of the field.
//!
//! Each payload type's `validate` feeds its fields through one `Checker`, which collects
//! [`FieldError`]s and turns them into [`ValidationErrors`] at the end.

use std::fmt;
use std::net::IpAddr;

use quickfreeze_keys::codec::{self, CodecError};
use quickfreeze_keys::types::Timestamp;
use serde::Serialize;

use super::limits::{
    LATEST_WRITABLE_MILLIS, MAX_ATTACHMENTS, MAX_ATTACHMENTS_TOTAL_BYTES, MAX_ATTACHMENT_BYTES,
    MAX_DATA_IDENTIFIERS, MAX_HANDLING_TEXT_BYTES, MAX_LONG_TEXT_BYTES, MAX_PAYLOAD_BYTES,
    MAX_SHORT_TEXT_BYTES, MIN_PRESERVATION_DAYS, PAYLOAD_TAG_BYTES,
};
use super::types::{
    sha256, Attachment, DataIdentifier, EmergencyDisclosureRequest, FreeText, PreservationRequest,
    RequestHeader, Status, StatusUpdate, TrafficDataDisclosure,
};
use crate::{MessageId, Priority};

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
pub(super) struct Checker {
    pub(super) errors: Vec<FieldError>,
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

    /// Fails if `value` encodes, inside a [`Payload`](super::Payload), to more than
    /// [`MAX_PAYLOAD_BYTES`].
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
        if let Some(text) = &header.handling.free_text {
            let field = "header.handling.free_text";
            if text.len() > MAX_HANDLING_TEXT_BYTES {
                self.report(
                    field,
                    format!(
                        "is {} bytes long; conditions on use may have at most \
                         {MAX_HANDLING_TEXT_BYTES} bytes of free text; state the essential condition",
                        text.len()
                    ),
                );
            } else {
                self.text(field, text, Text::Long);
            }
        }
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

    pub(super) fn data_identifier(&mut self, prefix: &str, identifier: &DataIdentifier) {
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
        let total: usize = self.attachments.iter().map(|a| a.bytes.len()).sum();
        if total > MAX_ATTACHMENTS_TOTAL_BYTES {
            check.report(
                "attachments",
                format!(
                    "hold {total} bytes together; all attachments of one request may hold at most \
                     {MAX_ATTACHMENTS_TOTAL_BYTES} bytes; send fewer or smaller files"
                ),
            );
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
