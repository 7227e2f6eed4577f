//! Unit and property tests of the payload types, their validation, summaries and both encodings.

use std::collections::BTreeSet;

use proptest::collection::vec;
use proptest::prelude::*;
use quickfreeze_keys::types::{Digest32, Timestamp};

use super::examples::EXAMPLE_EXPIRY;
use super::validate::Checker;
use super::*;
use crate::MessageId;

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
fn attachments_over_their_total_limit_are_named() {
    let mut request = example_preservation();
    request.attachments = (0..4)
        .map(|index| {
            Attachment::new(
                format!("part{index}.bin"),
                "application/octet-stream",
                vec![7; MAX_ATTACHMENTS_TOTAL_BYTES / 4 + 1],
            )
        })
        .collect();
    let errors = request.validate().expect_err("over the total");
    assert_eq!(
        field_set(&errors),
        BTreeSet::from(["attachments"]),
        "{errors}"
    );
    assert!(errors
        .to_string()
        .contains(&MAX_ATTACHMENTS_TOTAL_BYTES.to_string()));
}

#[test]
fn handling_free_text_has_a_limit_and_no_control_characters() {
    let mut request = example_preservation();
    request.header.handling.free_text = Some("a".repeat(MAX_HANDLING_TEXT_BYTES));
    assert_eq!(request.validate(), Ok(()));
    request.header.handling.free_text = Some("a".repeat(MAX_HANDLING_TEXT_BYTES + 1));
    let errors = request.validate().expect_err("too long");
    assert_eq!(
        field_set(&errors),
        BTreeSet::from(["header.handling.free_text"])
    );
    assert!(
        errors.to_string().contains("at most 1024 bytes"),
        "{errors}"
    );
    let mut emergency = example_emergency();
    emergency.header.handling.free_text = Some("do not\u{1b}[2J forward".into());
    let errors = emergency.validate().expect_err("escape");
    assert_eq!(
        field_set(&errors),
        BTreeSet::from(["header.handling.free_text"])
    );
    // Line breaks are allowed: a condition may take a few lines.
    emergency.header.handling.free_text = Some("line one\nline two".into());
    assert_eq!(emergency.validate(), Ok(()));
}

#[test]
fn requests_carry_handling_and_answers_do_not() {
    assert!(Payload::Preservation(example_preservation())
        .handling()
        .is_some());
    assert!(Payload::TrafficData(example_traffic_data())
        .handling()
        .is_some());
    assert!(Payload::Emergency(example_emergency()).handling().is_some());
    assert!(Payload::Status(example_status(MessageId([1; 16])))
        .handling()
        .is_none());
    assert!(Payload::FreeText(example_free_text()).handling().is_none());
}

#[test]
fn a_valid_looking_request_that_does_not_fit_the_payload_limit_is_reported() {
    // Attachments exactly at their total limit plus every narrative field at its own limit:
    // each field is fine, the whole is not.
    let mut request = example_preservation();
    let per_file = MAX_ATTACHMENTS_TOTAL_BYTES / 3;
    assert!(per_file <= MAX_ATTACHMENT_BYTES);
    request.attachments = (0..3)
        .map(|index| {
            Attachment::new(
                format!("part{index}.bin"),
                "application/octet-stream",
                vec![7; per_file],
            )
        })
        .collect();
    let long = "x".repeat(MAX_LONG_TEXT_BYTES);
    request.offence = long.clone();
    request.facts_summary = long.clone();
    request.data_to_preserve = long.clone();
    request.relationship_to_offence = long.clone();
    request.necessity = long;
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
        handling_text in any::<Option<String>>(),
    ) -> RequestHeader {
        RequestHeader {
            case_reference,
            urgency,
            language,
            requesting_authority,
            contact: OnDutyContact { name, phone, email },
            handling: Handling { free_text: handling_text, ..Handling::default() },
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
