//! The request forms as real form fields: which fields each kind has, and how a submitted form
//! becomes a [`Payload`] (or a reply [`Status`]).
//!
//! Field names are the dotted paths of the payload's own fields (`header.contact.phone`,
//! `data_identifiers[1].timestamp`), the same paths [`Payload::validate`] names in its errors, so
//! every error the shared validation finds lands next to the input it is about.

use quickfreeze_keys::CountryCode;
use quickfreeze_proto::forms::FormKind;
use quickfreeze_proto::payload::{
    parse_zoned_time, DataIdentifier, EmergencyDisclosureRequest, EvidentialUse, FieldError,
    FreeText, Handling, OnDutyContact, OnwardTransmission, Payload, PreservationRequest,
    RefusalGround, RequestHeader, ServiceProvider, Status, StatusUpdate, TrafficDataDisclosure,
};
use quickfreeze_proto::{MessageId, Priority};

use super::form::FormData;

/// Identifier rows on the preservation form.
pub const IDENTIFIER_ROWS: usize = 3;
/// Provider rows on the emergency form.
pub const PROVIDER_ROWS: usize = 2;

/// How an input is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// One line of text.
    Text,
    /// Several lines.
    Area,
    /// A checkbox (value `true`).
    Check,
    /// A whole number.
    Number,
    /// routine / urgent / emergency.
    Priority,
    /// The kind of a data identifier.
    IdentifierKind,
    /// One of the seven statuses ([`STATUSES`]).
    Status,
    /// A ground for refusal ([`GROUNDS`]).
    Ground,
    /// Whether the recipient may pass the information on ([`ONWARD`]).
    Onward,
    /// Whether the information may be used as evidence ([`EVIDENTIAL_USE`]).
    EvidentialUse,
}

/// One input of a form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The dotted path, used as the input's name.
    pub name: String,
    /// The label.
    pub label: String,
    /// Help shown under the label.
    pub help: &'static str,
    /// How it is drawn.
    pub input: Input,
}

fn field(name: &str, label: &str, help: &'static str, input: Input) -> Field {
    Field {
        name: name.to_string(),
        label: label.to_string(),
        help,
        input,
    }
}

/// A titled group of fields.
pub type Section = (&'static str, Vec<Field>);

/// The kinds the compose page offers: all five. A status update is usually sent from the
/// received request's page (Reply), which fills in the request; the compose form is for a
/// status about a request known only by its id (given by phone, or shown on another screen).
pub const COMPOSE_KINDS: [FormKind; 5] = [
    FormKind::Emergency,
    FormKind::Preservation,
    FormKind::TrafficData,
    FormKind::Status,
    FormKind::FreeText,
];

/// A person-readable title for a form kind.
pub fn title(kind: FormKind) -> &'static str {
    match kind {
        FormKind::Preservation => "Preservation request (Art. 29)",
        FormKind::TrafficData => "Traffic-data disclosure (Art. 30)",
        FormKind::Emergency => "Emergency disclosure request (CETS 224 Art. 9)",
        FormKind::Status => "Status update",
        FormKind::FreeText => "Free-text follow-up",
    }
}

fn header_section(with_urgency: bool) -> Section {
    let mut fields = vec![field(
        "header.case_reference",
        "Your case reference",
        "The other side quotes it in every reply.",
        Input::Text,
    )];
    if with_urgency {
        fields.push(field(
            "header.urgency",
            "Urgency",
            "Urgent: data may be deleted within days.",
            Input::Priority,
        ));
    }
    fields.extend([
        field(
            "header.language",
            "Language of your text",
            "A code such as en, fr or pt-BR. English is always accepted.",
            Input::Text,
        ),
        field(
            "header.requesting_authority",
            "Requesting authority (Art. 29(2)(a))",
            "e.g. Public Prosecutor's Office, Cybercrime Unit.",
            Input::Text,
        ),
        field(
            "header.contact.name",
            "Officer on duty: name",
            "",
            Input::Text,
        ),
        field(
            "header.contact.phone",
            "Officer on duty: phone",
            "Answered now, with the country code.",
            Input::Text,
        ),
        field(
            "header.contact.email",
            "Officer on duty: e-mail",
            "",
            Input::Text,
        ),
    ]);
    ("About you and your case", fields)
}

/// Form names of the conditions-on-use fields (the payload's own paths, so the shared
/// validation's errors land next to them).
pub const HANDLING_CASE: &str = "header.handling.use_limited_to_case";
/// See [`HANDLING_CASE`].
pub const HANDLING_ONWARD: &str = "header.handling.onward_transmission";
/// See [`HANDLING_CASE`].
pub const HANDLING_EVIDENCE: &str = "header.handling.evidential_use";
/// See [`HANDLING_CASE`].
pub const HANDLING_CHANNEL: &str = "header.handling.reply_channel_only";
/// See [`HANDLING_CASE`].
pub const HANDLING_FREE_TEXT: &str = "header.handling.free_text";

/// Onward-transmission choices: form value ([`OnwardTransmission::as_str`]) and label.
pub const ONWARD: [(&str, &str); 3] = [
    ("with-consent", "Only with our prior consent"),
    ("forbidden", "Forbidden"),
    (
        "permitted",
        "Permitted to other competent authorities for the same purpose",
    ),
];

/// Evidential-use choices: form value ([`EvidentialUse::as_str`]) and label.
pub const EVIDENTIAL_USE: [(&str, &str); 3] = [
    ("with-consent", "Not as evidence without our prior consent"),
    (
        "intelligence-only",
        "Intelligence only, never as evidence (evidence comes through mutual legal assistance)",
    ),
    ("may-be-used-as-evidence", "May be used as evidence"),
];

/// The sender's conditions on use, signed with the request; every request kind has them.
fn handling_section() -> Section {
    (
        "Conditions on use (signed with the request, shown first to the recipient)",
        vec![
            field(
                HANDLING_CASE,
                "Use only for the case and purpose stated in this request",
                "",
                Input::Check,
            ),
            field(
                HANDLING_ONWARD,
                "Passing it on to other authorities or states",
                "",
                Input::Onward,
            ),
            field(
                HANDLING_EVIDENCE,
                "Use as evidence in judicial proceedings",
                "",
                Input::EvidentialUse,
            ),
            field(
                HANDLING_CHANNEL,
                "Answer and discuss it only through this network",
                "",
                Input::Check,
            ),
            field(
                HANDLING_FREE_TEXT,
                "Other conditions (optional)",
                "In your words; leave empty for none.",
                Input::Area,
            ),
        ],
    )
}

/// The sections of the form for `kind`.
pub fn sections(kind: FormKind) -> Vec<Section> {
    match kind {
        FormKind::Preservation => {
            let mut identifiers = Vec::new();
            for row in 0..IDENTIFIER_ROWS {
                let n = row + 1;
                identifiers.extend([
                    field(
                        &format!("data_identifiers[{row}].kind"),
                        &format!("Identifier {n}: kind"),
                        "Leave the value empty to skip this row.",
                        Input::IdentifierKind,
                    ),
                    field(
                        &format!("data_identifiers[{row}].value"),
                        &format!("Identifier {n}: value"),
                        "The address, account, e-mail, domain, URL or description.",
                        Input::Text,
                    ),
                    field(
                        &format!("data_identifiers[{row}].timestamp"),
                        &format!("Identifier {n}: time seen (IP address only)"),
                        "RFC 3339 with a zone, e.g. 2026-11-23T02:41:00Z.",
                        Input::Text,
                    ),
                    field(
                        &format!("data_identifiers[{row}].port"),
                        &format!("Identifier {n}: source port (IP address, optional)"),
                        "Needed behind shared addresses.",
                        Input::Text,
                    ),
                    field(
                        &format!("data_identifiers[{row}].service"),
                        &format!("Identifier {n}: service (account only)"),
                        "e.g. mail.example.org.",
                        Input::Text,
                    ),
                ]);
            }
            vec![
                header_section(true),
                handling_section(),
                (
                    "The request (Art. 29(2)(b)–(f))",
                    vec![
                        field(
                            "offence",
                            "Offence under investigation (b)",
                            "",
                            Input::Text,
                        ),
                        field(
                            "facts_summary",
                            "Brief summary of the facts (b)",
                            "What happened, when, to whom.",
                            Input::Area,
                        ),
                        field(
                            "data_to_preserve",
                            "Stored data to preserve (c)",
                            "",
                            Input::Area,
                        ),
                        field(
                            "relationship_to_offence",
                            "How the data relates to the offence (c)",
                            "",
                            Input::Area,
                        ),
                        field(
                            "custodian",
                            "Custodian of the data, if known (d)",
                            "",
                            Input::Text,
                        ),
                        field(
                            "service_provider",
                            "Service provider, if known (d)",
                            "",
                            Input::Text,
                        ),
                        field(
                            "system_location",
                            "Location of the system, if known (d)",
                            "",
                            Input::Text,
                        ),
                        field(
                            "necessity",
                            "Why preservation is necessary (e)",
                            "",
                            Input::Area,
                        ),
                        field(
                            "mla_intent",
                            "We will submit a mutual assistance request for this data (f)",
                            "Required.",
                            Input::Check,
                        ),
                        field(
                            "preservation_days",
                            "Days to preserve",
                            "At least 60 (Art. 29(7)); 90 is usual.",
                            Input::Number,
                        ),
                    ],
                ),
                ("What identifies the data (Art. 29(2)(c))", identifiers),
            ]
        }
        FormKind::Emergency => {
            let mut providers = Vec::new();
            for row in 0..PROVIDER_ROWS {
                let n = row + 1;
                providers.extend([
                    field(
                        &format!("service_providers[{row}].name"),
                        &format!("Provider {n}: name"),
                        "",
                        Input::Text,
                    ),
                    field(
                        &format!("service_providers[{row}].address"),
                        &format!("Provider {n}: address"),
                        "",
                        Input::Text,
                    ),
                ]);
            }
            vec![
                header_section(false),
                handling_section(),
                (
                    "The emergency",
                    vec![
                        field(
                            "protocol_statement",
                            "This request is made under the Second Additional Protocol (CETS 224)",
                            "Required.",
                            Input::Check,
                        ),
                        field(
                            "emergency_facts",
                            "Facts showing the significant and imminent risk to life or safety",
                            "",
                            Input::Area,
                        ),
                        field(
                            "offences",
                            "Offence(s) under investigation",
                            "",
                            Input::Text,
                        ),
                        field("legal_provisions", "Legal provisions", "", Input::Text),
                        field("penalties", "Applicable penalties", "", Input::Text),
                        field("data_sought", "Data sought", "", Input::Area),
                        field(
                            "data_relation",
                            "How the data relates to the emergency",
                            "",
                            Input::Area,
                        ),
                        field(
                            "procedural_instructions",
                            "Special procedural instructions (optional)",
                            "",
                            Input::Text,
                        ),
                        field(
                            "other_information",
                            "Other information (optional)",
                            "",
                            Input::Text,
                        ),
                    ],
                ),
                ("Service providers holding the data", providers),
            ]
        }
        FormKind::TrafficData => vec![
            header_section(true),
            handling_section(),
            (
                "The disclosure (Art. 30)",
                vec![
                    field(
                        "references",
                        "Message id of the preservation request (optional)",
                        "32 hex digits.",
                        Input::Text,
                    ),
                    field(
                        "service_provider",
                        "Service provider in the other state",
                        "",
                        Input::Text,
                    ),
                    field(
                        "provider_country",
                        "Its country (optional)",
                        "Two letters, e.g. DE.",
                        Input::Text,
                    ),
                    field(
                        "traffic_data",
                        "Traffic data disclosed",
                        "Addresses, ports, times with zones.",
                        Input::Area,
                    ),
                    field(
                        "path_description",
                        "Path of the communication",
                        "",
                        Input::Area,
                    ),
                ],
            ),
        ],
        FormKind::Status => vec![
            (
                "The request this answers",
                vec![
                    field(
                        "references",
                        "Message id of the request",
                        "32 hex digits, as shown on the request's page.",
                        Input::Text,
                    ),
                    field(
                        "case_reference",
                        "The requester's case reference",
                        "Quoted back, as written in the request.",
                        Input::Text,
                    ),
                    field("priority", "Priority", "", Input::Priority),
                ],
            ),
            (
                "What happened",
                vec![
                    field("status", "Status", "", Input::Status),
                    field(
                        "ground",
                        "Ground for refusal",
                        "Refused only.",
                        Input::Ground,
                    ),
                    field(
                        "reference",
                        "Your preservation reference",
                        "Preserved only.",
                        Input::Text,
                    ),
                    field(
                        "expires_at",
                        "Preserved until",
                        "Preserved only. RFC 3339 with a zone, e.g. 2027-02-21T00:00:00Z.",
                        Input::Text,
                    ),
                    field(
                        "explanation",
                        "Explanation",
                        "Partially executed, refused, data not available.",
                        Input::Area,
                    ),
                    field(
                        "questions",
                        "Questions the requester must answer",
                        "More information needed only.",
                        Input::Area,
                    ),
                    field(
                        "authority",
                        "Central authority it was forwarded to",
                        "Forwarded to central authority only.",
                        Input::Text,
                    ),
                    field("note", "Note (optional, any status)", "", Input::Area),
                ],
            ),
        ],
        FormKind::FreeText => vec![(
            "Message",
            vec![
                field(
                    "case_reference",
                    "Case reference (optional)",
                    "",
                    Input::Text,
                ),
                field(
                    "references",
                    "Message id this follows up (optional)",
                    "32 hex digits.",
                    Input::Text,
                ),
                field("priority", "Priority", "", Input::Priority),
                field("subject", "Subject", "", Input::Text),
                field("body", "Text", "", Input::Area),
            ],
        )],
    }
}

/// Values a blank form starts with.
pub fn defaults(kind: FormKind, officer: &str) -> FormData {
    let mut form = FormData::default();
    form.set("header.language", "en");
    form.set("header.urgency", "urgent");
    form.set("header.contact.name", officer);
    form.set("preservation_days", "90");
    form.set(
        "priority",
        if kind == FormKind::FreeText {
            "routine"
        } else {
            "urgent"
        },
    );
    for row in 0..IDENTIFIER_ROWS {
        form.set(&format!("data_identifiers[{row}].kind"), "ip-address");
    }
    // The conditions the templates propose; the officer changes them on the form.
    let handling = Handling::default();
    if handling.use_limited_to_case {
        form.set(HANDLING_CASE, "true");
    }
    form.set(HANDLING_ONWARD, handling.onward_transmission.as_str());
    form.set(HANDLING_EVIDENCE, handling.evidential_use.as_str());
    if handling.reply_channel_only {
        form.set(HANDLING_CHANNEL, "true");
    }
    form.set(
        HANDLING_FREE_TEXT,
        handling.free_text.as_deref().unwrap_or_default(),
    );
    form
}

/// The conditions on use as the officer set them; an unknown choice is an error at its field.
fn handling(form: &FormData, errors: &mut Vec<FieldError>) -> Handling {
    let standard = Handling::default();
    let onward = OnwardTransmission::parse(form.get(HANDLING_ONWARD)).unwrap_or_else(|problem| {
        error(errors, HANDLING_ONWARD, problem);
        standard.onward_transmission
    });
    let evidential = EvidentialUse::parse(form.get(HANDLING_EVIDENCE)).unwrap_or_else(|problem| {
        error(errors, HANDLING_EVIDENCE, problem);
        standard.evidential_use
    });
    Handling {
        use_limited_to_case: form.get(HANDLING_CASE) == "true",
        onward_transmission: onward,
        evidential_use: evidential,
        reply_channel_only: form.get(HANDLING_CHANNEL) == "true",
        free_text: optional(form, HANDLING_FREE_TEXT),
    }
}

fn text(form: &FormData, name: &str) -> String {
    form.get(name).trim().to_string()
}

fn optional(form: &FormData, name: &str) -> Option<String> {
    Some(text(form, name)).filter(|value| !value.is_empty())
}

fn error(errors: &mut Vec<FieldError>, field: &str, problem: impl Into<String>) {
    errors.push(FieldError {
        field: field.to_string(),
        problem: problem.into(),
    });
}

fn priority(form: &FormData, name: &str, errors: &mut Vec<FieldError>) -> Priority {
    match form.get(name) {
        "routine" => Priority::Routine,
        "urgent" | "" => Priority::Urgent,
        "emergency" => Priority::Emergency,
        other => {
            error(
                errors,
                name,
                format!("`{other}` is not a priority; choose routine, urgent or emergency"),
            );
            Priority::Urgent
        }
    }
}

fn header(
    form: &FormData,
    errors: &mut Vec<FieldError>,
    urgency: Option<Priority>,
) -> RequestHeader {
    RequestHeader {
        case_reference: text(form, "header.case_reference"),
        urgency: urgency.unwrap_or_else(|| priority(form, "header.urgency", errors)),
        language: text(form, "header.language"),
        requesting_authority: text(form, "header.requesting_authority"),
        contact: OnDutyContact {
            name: text(form, "header.contact.name"),
            phone: text(form, "header.contact.phone"),
            email: text(form, "header.contact.email"),
        },
        handling: handling(form, errors),
    }
}

fn message_id(form: &FormData, name: &str, errors: &mut Vec<FieldError>) -> Option<MessageId> {
    let value = optional(form, name)?;
    match value.parse::<MessageId>() {
        Ok(id) => Some(id),
        Err(problem) => {
            error(errors, name, problem);
            None
        }
    }
}

/// The identifier rows the officer filled in, and for each the row it came from (empty rows are
/// skipped, so the shared validation's list index can differ from the row on screen).
fn identifiers(form: &FormData, errors: &mut Vec<FieldError>) -> (Vec<DataIdentifier>, Vec<usize>) {
    let mut list = Vec::new();
    let mut rows = Vec::new();
    for row in 0..IDENTIFIER_ROWS {
        let name = |part: &str| format!("data_identifiers[{row}].{part}");
        let value = text(form, &name("value"));
        if value.is_empty() {
            continue;
        }
        let identifier = match form.get(&name("kind")) {
            "ip-address" => {
                let port = match optional(form, &name("port")) {
                    None => None,
                    Some(port) => match port.parse::<u16>() {
                        Ok(port) => Some(port),
                        Err(_) => {
                            error(
                                errors,
                                &name("port"),
                                format!("`{port}` is not a port (0 to 65535)"),
                            );
                            None
                        }
                    },
                };
                DataIdentifier::IpAddress {
                    address: value,
                    port,
                    timestamp: text(form, &name("timestamp")),
                }
            }
            "account" => DataIdentifier::Account {
                service: text(form, &name("service")),
                identifier: value,
            },
            "email" => DataIdentifier::Email { address: value },
            "domain" => DataIdentifier::Domain { name: value },
            "url" => DataIdentifier::Url { url: value },
            "other" => DataIdentifier::Other { description: value },
            other => {
                error(
                    errors,
                    &name("kind"),
                    format!("`{other}` is not a kind of identifier"),
                );
                continue;
            }
        };
        list.push(identifier);
        rows.push(row);
    }
    (list, rows)
}

/// Points the shared validation's `data_identifiers[i]` errors at the row on screen.
fn remap_rows(errors: Vec<FieldError>, rows: &[usize]) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|mut error| {
            for (index, row) in rows.iter().enumerate() {
                let from = format!("data_identifiers[{index}]");
                if let Some(tail) = error.field.strip_prefix(from.as_str()) {
                    error.field = format!("data_identifiers[{row}]{tail}");
                    break;
                }
            }
            error
        })
        .collect()
}

/// Builds the payload of a submitted compose form and checks it with the shared validation.
/// Every problem is returned at once, each naming its field. A status update is signed with the
/// form's `officer` value, which the console sets to the logged-in officer.
pub fn payload_from_form(kind: FormKind, form: &FormData) -> Result<Payload, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let payload = match kind {
        FormKind::Preservation => {
            let (data_identifiers, shown) = identifiers(form, &mut errors);
            rows = shown;
            let days = text(form, "preservation_days");
            let preservation_days = match days.parse::<u32>() {
                Ok(days) => days,
                Err(_) => {
                    error(
                        &mut errors,
                        "preservation_days",
                        format!("`{days}` is not a whole number of days"),
                    );
                    0
                }
            };
            Payload::Preservation(PreservationRequest {
                header: header(form, &mut errors, None),
                offence: text(form, "offence"),
                facts_summary: text(form, "facts_summary"),
                data_to_preserve: text(form, "data_to_preserve"),
                relationship_to_offence: text(form, "relationship_to_offence"),
                custodian: optional(form, "custodian"),
                service_provider: optional(form, "service_provider"),
                system_location: optional(form, "system_location"),
                necessity: text(form, "necessity"),
                mla_intent: form.get("mla_intent") == "true",
                data_identifiers,
                preservation_days,
                attachments: Vec::new(),
            })
        }
        FormKind::Emergency => {
            let service_providers = (0..PROVIDER_ROWS)
                .map(|row| ServiceProvider {
                    name: text(form, &format!("service_providers[{row}].name")),
                    address: text(form, &format!("service_providers[{row}].address")),
                })
                .filter(|provider| !provider.name.is_empty() || !provider.address.is_empty())
                .collect();
            Payload::Emergency(EmergencyDisclosureRequest {
                header: header(form, &mut errors, Some(Priority::Emergency)),
                protocol_statement: form.get("protocol_statement") == "true",
                service_providers,
                offences: text(form, "offences"),
                legal_provisions: text(form, "legal_provisions"),
                penalties: text(form, "penalties"),
                emergency_facts: text(form, "emergency_facts"),
                data_relation: text(form, "data_relation"),
                data_sought: text(form, "data_sought"),
                procedural_instructions: optional(form, "procedural_instructions"),
                other_information: optional(form, "other_information"),
            })
        }
        FormKind::TrafficData => {
            let provider_country = match optional(form, "provider_country") {
                None => None,
                Some(code) => match CountryCode::parse(&code) {
                    Ok(country) => Some(country),
                    Err(problem) => {
                        error(&mut errors, "provider_country", problem);
                        None
                    }
                },
            };
            Payload::TrafficData(TrafficDataDisclosure {
                header: header(form, &mut errors, None),
                references: message_id(form, "references", &mut errors),
                service_provider: text(form, "service_provider"),
                provider_country,
                traffic_data: text(form, "traffic_data"),
                path_description: text(form, "path_description"),
            })
        }
        FormKind::Status => {
            let references = match message_id(form, "references", &mut errors) {
                Some(id) => id,
                None => {
                    if text(form, "references").is_empty() {
                        error(
                            &mut errors,
                            "references",
                            "fill in the message id of the request this update answers",
                        );
                    }
                    MessageId([0; 16])
                }
            };
            let priority = priority(form, "priority", &mut errors);
            let (status, note) = match status_from_form(form) {
                Ok(found) => found,
                Err(found) => {
                    errors.extend(found);
                    // Nothing more to check without a status.
                    return Err(errors);
                }
            };
            Payload::Status(StatusUpdate {
                references,
                case_reference: text(form, "case_reference"),
                status,
                note,
                officer: text(form, "officer"),
                priority,
            })
        }
        FormKind::FreeText => Payload::FreeText(FreeText {
            references: message_id(form, "references", &mut errors),
            case_reference: optional(form, "case_reference"),
            subject: text(form, "subject"),
            body: text(form, "body"),
            priority: priority(form, "priority", &mut errors),
        }),
    };
    if let Err(invalid) = payload.validate() {
        let found = remap_rows(invalid.0, &rows).into_iter().map(|mut error| {
            // A status's own fields have their plain names on the form.
            if let Some(name) = error.field.strip_prefix("status.") {
                error.field = name.to_string();
            }
            error
        });
        // The form already said what is wrong with an id it could not read.
        let id_refused = errors.iter().any(|error| error.field == "references");
        errors.extend(found.filter(|error| !(id_refused && error.field == "references")));
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(errors)
    }
}

/// The seven statuses a reply may carry: form value, label, and what each needs.
pub const STATUSES: [(&str, &str, &str); 7] = [
    (
        "acknowledged-by-officer",
        "Acknowledged by officer",
        "nothing more",
    ),
    (
        "preserved",
        "Preserved",
        "your reference and when the preservation ends",
    ),
    (
        "partially-executed",
        "Partially executed",
        "what was done and what was not",
    ),
    (
        "refused",
        "Refused (Art. 29(5))",
        "the ground and an explanation",
    ),
    (
        "more-information-needed",
        "More information needed",
        "the questions to answer",
    ),
    (
        "forwarded-to-central-authority",
        "Forwarded to central authority",
        "which authority",
    ),
    (
        "data-not-available",
        "Data not available (Art. 29(6))",
        "what is known about the data",
    ),
];

/// The refusal grounds: form value and label.
pub const GROUNDS: [(&str, &str); 6] = [
    ("political-offence", "Political offence"),
    ("sovereignty", "Sovereignty"),
    ("security", "Security"),
    ("public-order", "Public order"),
    ("other-essential-interests", "Other essential interests"),
    ("other", "Other (explain)"),
];

/// Builds the status of a submitted reply form, naming each missing field.
pub fn status_from_form(form: &FormData) -> Result<(Status, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut need = |name: &str, what: &str| {
        let value = text(form, name);
        if value.is_empty() {
            error(
                &mut errors,
                name,
                format!("{what} is required for this status"),
            );
        }
        value
    };
    let status = match form.get("status") {
        "acknowledged-by-officer" => Some(Status::AcknowledgedByOfficer),
        "preserved" => {
            let reference = need("reference", "your preservation reference");
            let until = need("expires_at", "the end of the preservation");
            match (until.is_empty(), parse_zoned_time(&until)) {
                (true, _) => None,
                (false, Ok(expires_at)) => Some(Status::Preserved {
                    reference,
                    expires_at,
                }),
                (false, Err(problem)) => {
                    error(&mut errors, "expires_at", problem);
                    None
                }
            }
        }
        "partially-executed" => Some(Status::PartiallyExecuted {
            explanation: need("explanation", "an explanation"),
        }),
        "refused" => {
            let explanation = need("explanation", "an explanation");
            let ground = match form.get("ground") {
                "political-offence" => Some(RefusalGround::PoliticalOffence),
                "sovereignty" => Some(RefusalGround::Sovereignty),
                "security" => Some(RefusalGround::Security),
                "public-order" => Some(RefusalGround::PublicOrder),
                "other-essential-interests" => Some(RefusalGround::OtherEssentialInterests),
                "other" => Some(RefusalGround::Other),
                _ => {
                    error(&mut errors, "ground", "choose the ground for refusal");
                    None
                }
            };
            ground.map(|ground| Status::Refused {
                ground,
                explanation,
            })
        }
        "more-information-needed" => Some(Status::MoreInformationNeeded {
            questions: need("questions", "the questions"),
        }),
        "forwarded-to-central-authority" => Some(Status::ForwardedToCentralAuthority {
            authority: need("authority", "the authority"),
        }),
        "data-not-available" => Some(Status::DataNotAvailable {
            explanation: need("explanation", "an explanation"),
        }),
        other => {
            error(
                &mut errors,
                "status",
                format!("`{other}` is not a status; choose one from the list"),
            );
            None
        }
    };
    match status {
        Some(status) if errors.is_empty() => Ok((status, text(form, "note"))),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled_preservation() -> FormData {
        let mut form = defaults(FormKind::Preservation, "Ana");
        for (name, value) in [
            ("header.case_reference", "NL-2026-1"),
            ("header.requesting_authority", "OM Den Haag"),
            ("header.contact.phone", "+31 70 555 0100"),
            ("header.contact.email", "ana@example.org"),
            ("offence", "ransomware"),
            ("facts_summary", "hospital encrypted"),
            ("data_to_preserve", "logs"),
            ("relationship_to_offence", "C2 server"),
            ("necessity", "deleted after 7 days"),
            ("mla_intent", "true"),
            ("data_identifiers[1].value", "203.0.113.7"),
            ("data_identifiers[1].timestamp", "2026-11-23T02:41:00Z"),
        ] {
            form.set(name, value);
        }
        form
    }

    #[test]
    fn a_filled_form_becomes_a_valid_payload() {
        let payload =
            payload_from_form(FormKind::Preservation, &filled_preservation()).expect("valid");
        let Payload::Preservation(request) = payload else {
            panic!("kind")
        };
        assert_eq!(request.data_identifiers.len(), 1);
        assert_eq!(request.header.contact.name, "Ana");
    }

    #[test]
    fn errors_name_the_field_the_officer_sees() {
        let mut form = filled_preservation();
        form.set("data_identifiers[1].timestamp", "yesterday");
        form.set("header.contact.phone", "");
        form.set("preservation_days", "ninety");
        let errors = payload_from_form(FormKind::Preservation, &form).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(
            fields.contains(&"data_identifiers[1].timestamp"),
            "{fields:?}"
        );
        assert!(fields.contains(&"header.contact.phone"), "{fields:?}");
        assert!(fields.contains(&"preservation_days"), "{fields:?}");
    }

    #[test]
    fn the_conditions_on_use_start_at_the_standard_ones_and_follow_the_form() {
        let payload =
            payload_from_form(FormKind::Preservation, &filled_preservation()).expect("valid");
        assert_eq!(payload.handling(), Some(&Handling::default()));
        let mut form = filled_preservation();
        form.set(HANDLING_CASE, "");
        form.set(HANDLING_ONWARD, "forbidden");
        form.set(HANDLING_EVIDENCE, "intelligence-only");
        form.set(HANDLING_FREE_TEXT, "  not to the press  ");
        let payload = payload_from_form(FormKind::Preservation, &form).expect("valid");
        let handling = payload.handling().expect("conditions");
        assert!(!handling.use_limited_to_case);
        assert!(handling.reply_channel_only);
        assert_eq!(handling.onward_transmission, OnwardTransmission::Forbidden);
        assert_eq!(handling.evidential_use, EvidentialUse::IntelligenceOnly);
        assert_eq!(handling.free_text.as_deref(), Some("not to the press"));
        form.set(HANDLING_ONWARD, "to-everyone");
        let errors = payload_from_form(FormKind::Preservation, &form).expect_err("invalid");
        assert_eq!(errors[0].field, HANDLING_ONWARD);
        assert!(errors[0].problem.contains("with-consent"), "{errors:?}");
    }

    #[test]
    fn reply_statuses_need_their_fields() {
        let mut form = FormData::default();
        form.set("status", "preserved");
        let errors = status_from_form(&form).expect_err("missing");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["reference", "expires_at"]);
        form.set("reference", "P-1");
        form.set("expires_at", "2027-02-01T00:00:00Z");
        assert!(matches!(
            status_from_form(&form),
            Ok((Status::Preserved { .. }, _))
        ));
        form.set("status", "refused");
        form.set("explanation", "no");
        assert_eq!(
            status_from_form(&form).expect_err("ground")[0].field,
            "ground"
        );
        form.set("status", "nonsense");
        assert!(status_from_form(&form).is_err());
    }
}
