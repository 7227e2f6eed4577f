//! The readable form of a payload: each kind laid out in labelled sections in the reader's
//! language (the Art. 29(2)(a)–(f) items by name for a preservation request, the Art. 30 items
//! for a traffic-data disclosure, the CETS 224 Art. 9(3) items for an emergency request, status
//! replies and free text), instead of TOML field names.
//!
//! One renderer serves every view: [`render`] returns a [`FormView`] of sections and
//! label/value rows that an HTML page or a web console can lay out as it likes, and
//! [`FormView::to_text`] gives the plain-text layout that `show` and the terminal console print.
//! Labels come from the catalogues in [`crate::i18n`]; values the sender wrote (free text) are
//! shown as written, marked as free text, with the language the request declares. Control
//! characters in values are replaced, so a peer cannot send terminal escape sequences to the
//! officer's screen.

use crate::i18n::Language;
use crate::payload::{
    DataIdentifier, EmergencyDisclosureRequest, FreeText, Payload, PreservationRequest,
    RefusalGround, RequestHeader, Status, StatusUpdate, TrafficDataDisclosure,
};
use crate::Priority;

/// A payload laid out for reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormView {
    /// The form's title, e.g. "Urgent preservation request (Budapest Convention, Art. 29)".
    pub title: String,
    /// The language the sender declared for the free text (`header.language`), when the kind
    /// carries one; status replies and free-text messages declare none.
    pub declared_language: Option<String>,
    /// The sections, in reading order.
    pub sections: Vec<Section>,
}

/// One titled group of rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section title, e.g. "(b) Offence and summary of the facts".
    pub title: String,
    /// The rows, in reading order.
    pub rows: Vec<Row>,
}

/// One label and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The translated label.
    pub label: String,
    /// The value: translated for enumerations, as written by the sender for free text. May
    /// span several lines; control characters other than line breaks are replaced.
    pub value: String,
    /// True when the value is the sender's own words (shown as written, in the declared
    /// language), false when the renderer produced it (translated enumerations, ids, numbers).
    pub free_text: bool,
}

/// Lays `payload` out in `language`.
pub fn render(payload: &Payload, language: Language) -> FormView {
    render_recording(payload, language, &mut Vec::new())
}

/// Like [`render`], and pushes every catalogue key it used to `keys` (for the completeness
/// test, and for a caller that wants to check a catalogue of its own).
pub fn render_recording(payload: &Payload, language: Language, keys: &mut Vec<String>) -> FormView {
    let mut builder = Builder {
        language,
        keys,
        sections: Vec::new(),
    };
    let (title, declared) = match payload {
        Payload::Preservation(request) => {
            builder.preservation(request);
            ("kind.preservation", Some(&request.header.language))
        }
        Payload::TrafficData(disclosure) => {
            builder.traffic(disclosure);
            ("kind.traffic-data", Some(&disclosure.header.language))
        }
        Payload::Emergency(request) => {
            builder.emergency(request);
            ("kind.emergency", Some(&request.header.language))
        }
        Payload::Status(update) => {
            builder.status(update);
            ("kind.status", None)
        }
        Payload::FreeText(text) => {
            builder.free_text(text);
            ("kind.free-text", None)
        }
    };
    let title = builder.t(title);
    FormView {
        title,
        declared_language: declared.map(|language| clean_line(language)),
        sections: builder.sections,
    }
}

impl FormView {
    /// Plain text, at most `width` columns where words allow (at least 40): the title, then
    /// each section's title and its rows as `label  value`, long values wrapped under the
    /// value column, a label too long for the column on a line of its own.
    pub fn to_text(&self, width: usize) -> String {
        let width = width.max(40);
        let mut out = String::new();
        for line in wrap(&self.title, width) {
            out.push_str(&line);
            out.push('\n');
        }
        for section in &self.sections {
            out.push('\n');
            for line in wrap(&section.title, width) {
                out.push_str(&line);
                out.push('\n');
            }
            for row in &section.rows {
                write_row(&mut out, &row.label, &row.value, width);
            }
        }
        out
    }
}

/// Label column width (characters) of the text layout, including its indent.
const LABEL_COLUMN: usize = 28;

fn write_row(out: &mut String, label: &str, value: &str, width: usize) {
    let indent = " ".repeat(LABEL_COLUMN);
    let label_chars = label.chars().count();
    let mut lines = Vec::new();
    for paragraph in value.split('\n') {
        lines.extend(wrap(paragraph, width - LABEL_COLUMN));
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    let mut rest = lines.iter();
    if label_chars + 2 < LABEL_COLUMN - 1 {
        let first = rest.next().map(String::as_str).unwrap_or_default();
        let pad = LABEL_COLUMN - 2 - label_chars;
        out.push_str(format!("  {label}{}{first}", " ".repeat(pad)).trim_end());
        out.push('\n');
    } else {
        for piece in wrap(label, width - 2) {
            out.push_str("  ");
            out.push_str(&piece);
            out.push('\n');
        }
    }
    for line in rest {
        out.push_str(format!("{indent}{line}").trim_end());
        out.push('\n');
    }
}

/// Greedy word wrap at `width` characters; a word longer than the width is cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        let mut word: String = word.to_string();
        loop {
            let line_len = line.chars().count();
            let word_len = word.chars().count();
            let needed = if line.is_empty() {
                word_len
            } else {
                line_len + 1 + word_len
            };
            if needed <= width {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Replaces control characters (other than line breaks) and trims trailing space per line.
fn clean_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

fn clean_line(text: &str) -> String {
    clean_text(text).replace('\n', " ")
}

struct Builder<'k> {
    language: Language,
    keys: &'k mut Vec<String>,
    sections: Vec<Section>,
}

impl Builder<'_> {
    fn t(&mut self, key: &str) -> String {
        self.keys.push(key.to_string());
        self.language.text(key).to_string()
    }

    fn f(&mut self, key: &str, value: &str) -> String {
        self.keys.push(key.to_string());
        self.language.format(key, value)
    }

    fn section(&mut self, key: &str) {
        let title = self.t(key);
        self.sections.push(Section {
            title,
            rows: Vec::new(),
        });
    }

    fn push(&mut self, label_key: &str, value: String, free_text: bool) {
        let label = self.t(label_key);
        if let Some(section) = self.sections.last_mut() {
            section.rows.push(Row {
                label,
                value,
                free_text,
            });
        }
    }

    /// The sender's words, as written.
    fn written(&mut self, label_key: &str, value: &str) {
        self.push(label_key, clean_text(value), true);
    }

    /// Optional free text: "not given" when absent.
    fn written_opt(&mut self, label_key: &str, value: Option<&str>) {
        match value.filter(|value| !value.trim().is_empty()) {
            Some(value) => self.written(label_key, value),
            None => {
                let none = self.t("value.not-given");
                self.push(label_key, none, false);
            }
        }
    }

    /// A value the renderer produced.
    fn plain(&mut self, label_key: &str, value: String) {
        self.push(label_key, clean_text(&value), false);
    }

    fn yes_no(&mut self, label_key: &str, value: bool) {
        let text = self.t(if value { "value.yes" } else { "value.no" });
        self.push(label_key, text, false);
    }

    fn priority(&mut self, label_key: &str, priority: Priority) {
        let text = self.t(&format!("priority.{priority}"));
        self.push(label_key, text, false);
    }

    fn case(&mut self, header: &RequestHeader) {
        self.section("section.case");
        self.written("field.case-reference", &header.case_reference);
        self.priority("field.urgency", header.urgency);
        let declared = self.f("value.as-written", &clean_line(&header.language));
        self.push("field.language", declared, false);
    }

    fn contact(&mut self, header: &RequestHeader) {
        self.section("section.contact");
        self.written("field.contact-name", &header.contact.name);
        self.written("field.contact-phone", &header.contact.phone);
        self.written("field.contact-email", &header.contact.email);
    }

    fn preservation(&mut self, request: &PreservationRequest) {
        self.case(&request.header);
        self.section("section.p-a");
        self.written(
            "field.requesting-authority",
            &request.header.requesting_authority,
        );
        self.section("section.p-b");
        self.written("field.offence", &request.offence);
        self.written("field.facts-summary", &request.facts_summary);
        self.section("section.p-c");
        self.written("field.data-to-preserve", &request.data_to_preserve);
        self.written(
            "field.relationship-to-offence",
            &request.relationship_to_offence,
        );
        for identifier in &request.data_identifiers {
            self.identifier(identifier);
        }
        self.section("section.p-d");
        self.written_opt("field.custodian", request.custodian.as_deref());
        self.written_opt(
            "field.service-provider",
            request.service_provider.as_deref(),
        );
        self.written_opt("field.system-location", request.system_location.as_deref());
        self.section("section.p-e");
        self.written("field.necessity", &request.necessity);
        self.section("section.p-f");
        self.yes_no("field.mla-intent", request.mla_intent);
        self.section("section.period");
        let days = self.f("value.days", &request.preservation_days.to_string());
        self.push("field.preservation-days", days, false);
        self.contact(&request.header);
        if !request.attachments.is_empty() {
            self.section("section.attachments");
            for attachment in &request.attachments {
                let size = self.f("value.bytes", &attachment.bytes.len().to_string());
                let value = format!(
                    "{} ({}, {size})\nSHA-256 {}",
                    clean_line(&attachment.name),
                    clean_line(&attachment.media_type),
                    hex::encode(attachment.sha256.0)
                );
                self.push("field.attachment", value, false);
            }
        }
    }

    fn identifier(&mut self, identifier: &DataIdentifier) {
        let (key, value) = match identifier {
            DataIdentifier::IpAddress {
                address,
                port,
                timestamp,
            } => {
                let port = port
                    .map(|port| format!(" {}", self.f("value.port", &port.to_string())))
                    .unwrap_or_default();
                let seen = self.f("value.seen-at", &clean_line(timestamp));
                (
                    "identifier.ip-address",
                    format!("{}{port}, {seen}", clean_line(address)),
                )
            }
            DataIdentifier::Account {
                service,
                identifier,
            } => (
                "identifier.account",
                format!("{} @ {}", clean_line(identifier), clean_line(service)),
            ),
            DataIdentifier::Email { address } => ("identifier.email", clean_line(address)),
            DataIdentifier::Domain { name } => ("identifier.domain", clean_line(name)),
            DataIdentifier::Url { url } => ("identifier.url", clean_line(url)),
            DataIdentifier::Other { description } => ("identifier.other", clean_text(description)),
        };
        self.push(key, value, true);
    }

    fn traffic(&mut self, disclosure: &TrafficDataDisclosure) {
        self.case(&disclosure.header);
        self.section("section.t-authority");
        self.written(
            "field.disclosing-authority",
            &disclosure.header.requesting_authority,
        );
        let references = match disclosure.references {
            Some(id) => id.to_string(),
            None => self.t("value.not-given"),
        };
        self.plain("field.references", references);
        self.section("section.t-provider");
        self.written("field.service-provider", &disclosure.service_provider);
        let country = match disclosure.provider_country {
            Some(country) => country.to_string(),
            None => self.t("value.not-given"),
        };
        self.plain("field.provider-country", country);
        self.section("section.t-traffic");
        self.written("field.traffic-data", &disclosure.traffic_data);
        self.written("field.path-description", &disclosure.path_description);
        self.contact(&disclosure.header);
    }

    fn emergency(&mut self, request: &EmergencyDisclosureRequest) {
        self.case(&request.header);
        self.section("section.e-authority");
        self.written(
            "field.competent-authority",
            &request.header.requesting_authority,
        );
        self.section("section.e-statement");
        self.yes_no("field.protocol-statement", request.protocol_statement);
        self.section("section.e-providers");
        for provider in &request.service_providers {
            self.written("field.provider-name", &provider.name);
            self.written("field.provider-address", &provider.address);
        }
        self.section("section.e-offences");
        self.written("field.offences", &request.offences);
        self.written("field.legal-provisions", &request.legal_provisions);
        self.written("field.penalties", &request.penalties);
        self.section("section.e-facts");
        self.written("field.emergency-facts", &request.emergency_facts);
        self.written("field.data-relation", &request.data_relation);
        self.section("section.e-data");
        self.written("field.data-sought", &request.data_sought);
        self.section("section.e-instructions");
        self.written_opt(
            "field.procedural-instructions",
            request.procedural_instructions.as_deref(),
        );
        self.section("section.e-other");
        self.written_opt(
            "field.other-information",
            request.other_information.as_deref(),
        );
        self.contact(&request.header);
    }

    fn status(&mut self, update: &StatusUpdate) {
        self.section("section.s-reply");
        self.plain("field.references", update.references.to_string());
        self.written("field.case-reference", &update.case_reference);
        self.priority("field.priority", update.priority);
        self.section("section.s-status");
        let (key, rows): (&str, Vec<(&str, String, bool)>) = match &update.status {
            Status::AcknowledgedByOfficer => ("status.acknowledged-by-officer", vec![]),
            Status::Preserved {
                reference,
                expires_at,
            } => (
                "status.preserved",
                vec![
                    ("field.status-reference", reference.clone(), true),
                    ("field.expires-at", expires_at.to_rfc3339(), false),
                ],
            ),
            Status::PartiallyExecuted { explanation } => (
                "status.partially-executed",
                vec![("field.explanation", explanation.clone(), true)],
            ),
            Status::Refused {
                ground,
                explanation,
            } => {
                let ground_key = format!("ground.{}", ground_name(*ground));
                let ground = self.t(&ground_key);
                (
                    "status.refused",
                    vec![
                        ("field.ground", ground, false),
                        ("field.explanation", explanation.clone(), true),
                    ],
                )
            }
            Status::MoreInformationNeeded { questions } => (
                "status.more-information-needed",
                vec![("field.questions", questions.clone(), true)],
            ),
            Status::ForwardedToCentralAuthority { authority } => (
                "status.forwarded-to-central-authority",
                vec![("field.authority", authority.clone(), true)],
            ),
            Status::DataNotAvailable { explanation } => (
                "status.data-not-available",
                vec![("field.explanation", explanation.clone(), true)],
            ),
        };
        let status = self.t(key);
        self.push("field.status", status, false);
        for (label, value, free) in rows {
            self.push(label, clean_text(&value), free);
        }
        if !update.note.trim().is_empty() {
            self.written("field.note", &update.note);
        }
        self.written("field.officer", &update.officer);
    }

    fn free_text(&mut self, text: &FreeText) {
        self.section("section.f-message");
        let references = match text.references {
            Some(id) => id.to_string(),
            None => self.t("value.not-given"),
        };
        self.plain("field.references", references);
        self.written_opt("field.case-reference", text.case_reference.as_deref());
        self.priority("field.priority", text.priority);
        self.written("field.subject", &text.subject);
        self.written("field.body", &text.body);
    }
}

/// The kebab-case name of a refusal ground, as in the forms.
fn ground_name(ground: RefusalGround) -> &'static str {
    match ground {
        RefusalGround::PoliticalOffence => "political-offence",
        RefusalGround::Sovereignty => "sovereignty",
        RefusalGround::Security => "security",
        RefusalGround::PublicOrder => "public-order",
        RefusalGround::OtherEssentialInterests => "other-essential-interests",
        RefusalGround::Other => "other",
    }
}

#[cfg(test)]
mod tests;
