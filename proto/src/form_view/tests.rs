//! Tests of the readable form: every kind in several languages, the text layout, hostile text,
//! and that every label the renderer asks for exists in every language.

use quickfreeze_keys::types::Timestamp;

use super::*;
use crate::forms::{template_in, template_keys, FormKind};
use crate::payload::{
    example_emergency, example_free_text, example_preservation, example_status,
    example_traffic_data, Attachment,
};
use crate::MessageId;

fn id() -> MessageId {
    MessageId([0x5a; 16])
}

/// Every status variant, every identifier kind, optional fields present and absent.
fn every_payload() -> Vec<Payload> {
    let mut payloads = vec![
        Payload::Preservation(example_preservation()),
        Payload::TrafficData(example_traffic_data()),
        Payload::Emergency(example_emergency()),
        Payload::FreeText(example_free_text()),
    ];
    let mut sparse = example_preservation();
    sparse.custodian = None;
    sparse.data_identifiers.push(DataIdentifier::Other {
        description: String::from("wallet bc1q-example"),
    });
    sparse.data_identifiers.push(DataIdentifier::IpAddress {
        address: String::from("2001:db8::1"),
        port: None,
        timestamp: String::from("2026-11-22T23:04:51Z"),
    });
    payloads.push(Payload::Preservation(sparse));
    let mut traffic = example_traffic_data();
    traffic.references = Some(id());
    traffic.provider_country = None;
    payloads.push(Payload::TrafficData(traffic));
    let grounds = [
        RefusalGround::PoliticalOffence,
        RefusalGround::Sovereignty,
        RefusalGround::Security,
        RefusalGround::PublicOrder,
        RefusalGround::OtherEssentialInterests,
        RefusalGround::Other,
    ];
    let mut statuses = vec![
        Status::AcknowledgedByOfficer,
        Status::Preserved {
            reference: String::from("PRES-1"),
            expires_at: Timestamp(1_803_168_000_000),
        },
        Status::PartiallyExecuted {
            explanation: String::from("half"),
        },
        Status::MoreInformationNeeded {
            questions: String::from("which port?"),
        },
        Status::ForwardedToCentralAuthority {
            authority: String::from("Ministry of Justice"),
        },
        Status::DataNotAvailable {
            explanation: String::from("deleted"),
        },
    ];
    statuses.extend(grounds.into_iter().map(|ground| Status::Refused {
        ground,
        explanation: String::from("why"),
    }));
    for status in statuses {
        let mut update = example_status(id());
        update.status = status;
        update.note = String::from("see attached");
        payloads.push(Payload::Status(update));
    }
    let mut text = example_free_text();
    text.references = Some(id());
    text.case_reference = None;
    payloads.push(Payload::FreeText(text));
    payloads
}

fn row<'v>(view: &'v FormView, label: &str) -> &'v Row {
    view.sections
        .iter()
        .flat_map(|section| &section.rows)
        .find(|row| row.label == label)
        .unwrap_or_else(|| panic!("no row `{label}` in {view:#?}"))
}

fn has_section(view: &FormView, title: &str) -> bool {
    view.sections.iter().any(|section| section.title == title)
}

#[test]
fn every_key_the_renderer_and_templates_use_exists_in_every_language() {
    let mut keys = Vec::new();
    for payload in every_payload() {
        for language in Language::ALL {
            render_recording(&payload, language, &mut keys);
        }
    }
    for kind in FormKind::ALL {
        keys.extend(template_keys(kind).into_iter().map(String::from));
    }
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 100, "only {} keys used", keys.len());
    for language in Language::ALL {
        let missing: Vec<_> = keys.iter().filter(|key| !language.has(key)).collect();
        assert!(missing.is_empty(), "{language}.toml lacks {missing:?}");
    }
}

#[test]
fn preservation_names_the_article_29_items_in_english_and_french() {
    let payload = Payload::Preservation(example_preservation());
    let english = render(&payload, Language::En);
    assert!(english.title.contains("Art. 29"), "{}", english.title);
    for title in [
        "(a) Authority seeking the preservation",
        "(b) Offence under investigation and brief summary of the related facts",
        "(e) Necessity of the preservation",
        "(f) Intention to submit a request for mutual assistance",
    ] {
        assert!(has_section(&english, title), "{title}");
    }
    assert_eq!(
        row(&english, "Mutual assistance request will follow").value,
        "yes"
    );
    assert_eq!(row(&english, "Keep the data for").value, "90 days");
    let offence = row(&english, "Offence");
    assert!(offence.free_text);
    assert!(offence.value.starts_with("Ransomware attack"));
    assert_eq!(row(&english, "Urgency").value, "urgent");
    assert!(row(&english, "IP address")
        .value
        .contains("203.0.113.7 port 443"));
    assert!(row(&english, "File")
        .value
        .contains("firewall-extract.csv (text/csv"));
    assert_eq!(english.declared_language.as_deref(), Some("en"));

    let french = render(&payload, Language::Fr);
    assert!(french.title.contains("art. 29"), "{}", french.title);
    assert!(has_section(
        &french,
        "a) Autorité qui demande la conservation"
    ));
    assert_eq!(row(&french, "Demande d'entraide à suivre").value, "oui");
    assert_eq!(
        row(&french, "Conserver les données pendant").value,
        "90 jours"
    );
    assert_eq!(row(&french, "Urgence").value, "urgent");
    // Free text stays as written, in the declared language.
    assert_eq!(row(&french, "Infraction").value, offence.value);
    assert!(row(&french, "Langue du texte").value.starts_with("en "));
}

#[test]
fn traffic_data_in_german_and_spanish() {
    let payload = Payload::TrafficData(example_traffic_data());
    let german = render(&payload, Language::De);
    assert!(german.title.contains("Art. 30"), "{}", german.title);
    assert_eq!(row(&german, "Land des Anbieters").value, "IS");
    assert_eq!(row(&german, "Diensteanbieter").value, "Example VPN ehf.");
    assert_eq!(
        row(&german, "Antwort auf Nachricht").value,
        "(nicht angegeben)"
    );
    let spanish = render(&payload, Language::Es);
    assert!(spanish.title.contains("art. 30"), "{}", spanish.title);
    assert_eq!(row(&spanish, "País del proveedor").value, "IS");
    assert!(row(&spanish, "Datos de tráfico").free_text);
}

#[test]
fn emergency_names_the_cets_224_items_in_portuguese_and_english() {
    let payload = Payload::Emergency(example_emergency());
    let english = render(&payload, Language::En);
    assert!(english.title.contains("CETS 224"));
    assert!(has_section(
        &english,
        "Detailed description of the data sought (Art. 9(3)(f))"
    ));
    assert_eq!(row(&english, "Issued under the Protocol").value, "yes");
    assert_eq!(row(&english, "Other information").value, "(not given)");
    assert_eq!(row(&english, "Provider").value, "Example Messaging Ltd.");
    let portuguese = render(&payload, Language::Pt);
    assert!(portuguese.title.contains("CETS 224"));
    assert_eq!(
        row(&portuguese, "Emitido ao abrigo do Protocolo").value,
        "sim"
    );
    assert_eq!(row(&portuguese, "Urgência").value, "emergência");
    assert_eq!(
        row(&portuguese, "Outras informações").value,
        "(não indicado)"
    );
}

#[test]
fn status_replies_are_labelled_in_every_language() {
    let mut update = example_status(id());
    update.status = Status::Refused {
        ground: RefusalGround::PublicOrder,
        explanation: String::from("Verfassungsrecht"),
    };
    let payload = Payload::Status(update);
    let english = render(&payload, Language::En);
    assert_eq!(row(&english, "Status").value, "refused");
    assert!(row(&english, "Ground for refusal")
        .value
        .contains("ordre public"));
    assert_eq!(row(&english, "In reply to message").value, id().to_string());
    let german = render(&payload, Language::De);
    assert_eq!(row(&german, "Stand").value, "abgelehnt");
    assert!(row(&german, "Ablehnungsgrund")
        .value
        .contains("ordre public"));
    assert_eq!(row(&german, "Erläuterung").value, "Verfassungsrecht");
    assert_eq!(german.declared_language, None);

    let ack = Payload::Status(StatusUpdate {
        status: Status::AcknowledgedByOfficer,
        ..example_status(id())
    });
    for language in Language::ALL {
        let view = render(&ack, language);
        let status = &view.sections[1].rows[0];
        assert_eq!(
            status.value,
            language.text("status.acknowledged-by-officer")
        );
        assert!(!status.free_text);
    }
}

#[test]
fn free_text_in_french_and_english() {
    let payload = Payload::FreeText(example_free_text());
    let english = render(&payload, Language::En);
    assert!(english.title.contains("Art. 35"));
    let french = render(&payload, Language::Fr);
    assert_eq!(row(&french, "Objet").value, row(&english, "Subject").value);
    assert!(row(&french, "Texte").free_text);
}

#[test]
fn text_layout_fits_the_width_and_keeps_every_value() {
    for payload in every_payload() {
        for language in Language::ALL {
            let view = render(&payload, language);
            let text = view.to_text(80);
            for line in text.lines() {
                // The only lines allowed to be longer are unbreakable words (none here).
                assert!(line.chars().count() <= 80, "{language}: `{line}`\n{text}");
            }
            let flat = text.replace('\n', " ");
            assert!(flat.starts_with(&view.title));
            for section in &view.sections {
                assert!(flat.contains(&section.title), "{}", section.title);
                for row in &section.rows {
                    let first_word = row.value.split_whitespace().next().unwrap_or_default();
                    let first_word: String = first_word.chars().take(20).collect();
                    assert!(flat.contains(&first_word), "{}", row.value);
                }
            }
        }
    }
    let view = render(&Payload::Preservation(example_preservation()), Language::En);
    let text = view.to_text(80);
    assert!(
        text.contains("\n  Offence                   Ransomware attack"),
        "{text}"
    );
}

#[test]
fn long_labels_go_on_their_own_line() {
    let mut out = String::new();
    write_row(
        &mut out,
        "A label much longer than the label column",
        "value",
        80,
    );
    assert_eq!(
        out,
        format!(
            "  A label much longer than the label column\n{}value\n",
            " ".repeat(28)
        )
    );
}

#[test]
fn wrapping_cuts_long_words_and_keeps_short_lines() {
    assert_eq!(wrap("a bb ccc", 8), ["a bb ccc"]);
    assert_eq!(wrap("aaaa bbbb cccc", 9), ["aaaa bbbb", "cccc"]);
    assert_eq!(wrap(&"x".repeat(20), 8), ["xxxxxxxx", "xxxxxxxx", "xxxx"]);
    assert_eq!(wrap("", 10), [""]);
}

#[test]
fn control_characters_from_a_peer_never_reach_the_terminal() {
    let mut text = example_free_text();
    text.subject = String::from("\u{1b}[2J\u{1b}]0;owned\u{7}subject");
    text.body = String::from("line one\r\nline\ttwo\u{0}");
    let view = render(&Payload::FreeText(text), Language::En);
    let rendered = view.to_text(80);
    assert!(
        !rendered.chars().any(|c| c.is_control() && c != '\n'),
        "{rendered:?}"
    );
    assert!(rendered.contains("line one\n"), "{rendered}");
    assert!(rendered.contains("line two"), "{rendered}");
}

#[test]
fn attachments_show_name_type_size_and_digest() {
    let mut request = example_preservation();
    request.attachments = vec![Attachment::new("a.txt", "text/plain", b"abc".to_vec())];
    let view = render(&Payload::Preservation(request), Language::Es);
    let file = row(&view, "Fichero");
    assert!(
        file.value.starts_with("a.txt (text/plain, 3 bytes)"),
        "{}",
        file.value
    );
    assert!(file
        .value
        .contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

#[test]
fn translated_templates_keep_the_neutral_keys() {
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .map(String::from)
            .collect()
    };
    for kind in FormKind::ALL {
        let english = template_in(kind, Language::En);
        for language in Language::ALL {
            let translated = template_in(kind, language);
            assert_eq!(strip(&translated), strip(&english), "{kind} in {language}");
            assert!(
                !translated.contains("\n@"),
                "{kind} in {language}: unexpanded key"
            );
            if language != Language::En {
                assert_ne!(
                    translated, english,
                    "{kind} in {language} is not translated"
                );
            }
        }
    }
    let french = template_in(FormKind::Preservation, Language::Fr);
    assert!(french.contains("Art. 29"), "{french}");
    assert!(french.contains("\noffence = \"\""), "{french}");
}
