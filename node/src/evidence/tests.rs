//! Unit tests of the evidence file: a thread built by hand (DE asks FR, FR receipts and
//! answers) in a real store, exported, verified, and then broken byte by byte.

use quickfreeze_keys::{Fingerprint, Identity, Timestamp};
use quickfreeze_proto::core::{InboxEntry, OutboxEntry, OutboxState, StatusRecord, Store};
use quickfreeze_proto::envelope::{seal, SealParams};
use quickfreeze_proto::payload::{example_preservation, example_status, Payload, Status};
use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};
use quickfreeze_proto::MessageId;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::audit::{AuditFacts, AuditKind, AuditLog};
use crate::store::{SledStore, StoreOptions, SyncMode};
use crate::testnet::{NodePlan, Testnet};

struct Case {
    _dir: tempfile::TempDir,
    store: SledStore,
    log: AuditLog,
    de: Identity,
    net: Testnet,
    request: MessageId,
    status: MessageId,
}

fn facts(kind: AuditKind, id: Option<MessageId>, detail: &str) -> AuditFacts {
    AuditFacts {
        message_id: id,
        detail: detail.into(),
        ..AuditFacts::new(kind)
    }
}

/// DE's store after sending a preservation request to FR that was delivered and answered.
fn de_case(small: bool) -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = [
        NodePlan::point_of_contact("de", "DE").expect("plan"),
        NodePlan::point_of_contact("fr", "FR").expect("plan"),
    ];
    let net = Testnet::build(dir.path(), "evidence-test", &plans, Some(7), |_, _| {}).expect("net");
    let de = net.identity(0).expect("de");
    let fr = net.identity(1).expect("fr");
    let de_member = net.roster.member(&de.node_id()).expect("de member").clone();
    let fr_member = net.roster.member(&fr.node_id()).expect("fr member").clone();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let now = Timestamp::now();

    let mut request = example_preservation();
    request.header.case_reference = "DE-BKA-77".into();
    if small {
        request.attachments.clear();
    }
    let request = Payload::Preservation(request);
    let request_id = MessageId([1; 16]);
    let envelope = seal(
        &de,
        &fr_member,
        &request,
        SealParams {
            message_id: request_id,
            created_at: now,
            expires_at: now.plus_ms(3_600_000),
            priority: request.priority(),
        },
        &mut rng,
    )
    .expect("seal");
    let envelope_bytes = envelope.to_bytes();
    let delivered = Receipt::sign(
        &fr,
        ReceiptBody {
            message_id: request_id,
            envelope_digest: envelope.digest(),
            sender: de.node_id(),
            recipient: fr.node_id(),
            signer: fr.node_id(),
            received_at: now.plus_ms(40),
            kind: ReceiptKind::Delivered,
        },
    );
    let mut update = example_status(request_id);
    update.case_reference = "DE-BKA-77".into();
    update.status = Status::AcknowledgedByOfficer;
    let status = Payload::Status(update.clone());
    let status_id = MessageId([2; 16]);
    let status_envelope = seal(
        &fr,
        &de_member,
        &status,
        SealParams {
            message_id: status_id,
            created_at: now.plus_ms(100),
            expires_at: now.plus_ms(3_600_000),
            priority: status.priority(),
        },
        &mut rng,
    )
    .expect("seal status");
    let status_receipt = Receipt::sign(
        &de,
        ReceiptBody {
            message_id: status_id,
            envelope_digest: status_envelope.digest(),
            sender: fr.node_id(),
            recipient: de.node_id(),
            signer: de.node_id(),
            received_at: now.plus_ms(150),
            kind: ReceiptKind::Delivered,
        },
    );

    let options = StoreOptions {
        sync: SyncMode::Flush,
        ..StoreOptions::default()
    };
    let mut store = SledStore::open(&dir.path().join("store"), &options).expect("store");
    store.put_roster(&net.signed_roster).expect("roster");
    store
        .put_outbox(&OutboxEntry {
            message_id: request_id,
            recipient: fr.node_id(),
            priority: request.priority(),
            kind: request.kind(),
            summary: request.summary(),
            payload: request.clone(),
            created_at: now,
            expires_at: now.plus_ms(3_600_000),
            digest: envelope.digest(),
            envelope: envelope_bytes,
            state: OutboxState::Delivered {
                at: now.plus_ms(40),
            },
            attempts: 1,
            direct_failures: 0,
            relay_attempts: 0,
            custody_receipt: None,
            delivery_receipt: Some(delivered),
            status_history: vec![StatusRecord {
                received_at: now.plus_ms(150),
                message_id: status_id,
                update,
            }],
            last_error: None,
        })
        .expect("outbox");
    store
        .put_inbox(&InboxEntry {
            sender: fr.node_id(),
            message_id: status_id,
            priority: status.priority(),
            received_at: now.plus_ms(150),
            created_at: now.plus_ms(100),
            via_relay: None,
            digest: status_envelope.digest(),
            envelope: status_envelope.to_bytes(),
            payload: status,
            receipt: status_receipt,
            acknowledged_at: None,
            replies: Vec::new(),
        })
        .expect("inbox");
    let mut log = AuditLog::open(&store).expect("log");
    let other = MessageId([9; 16]);
    for (kind, id, detail) in [
        (AuditKind::Sent, Some(other), "another case"),
        (AuditKind::Submitted, Some(request_id), "preservation"),
        (AuditKind::Sent, Some(other), "another case again"),
        (AuditKind::Delivered, Some(request_id), "receipt verified"),
        (
            AuditKind::StatusReceived,
            Some(status_id),
            "acknowledged-by-officer",
        ),
        (AuditKind::Sent, Some(other), "after the case"),
    ] {
        log.append(now, facts(kind, id, detail)).expect("append");
        // One block per record, like a node with one record per commit.
        log.write_pending(&mut store).expect("write");
    }
    store.flush().expect("flush");
    Case {
        _dir: dir,
        store,
        log,
        de,
        net,
        request: request_id,
        status: status_id,
    }
}

fn export(case: &Case, id: &str) -> Result<String, String> {
    let source = EvidenceSource {
        store: &case.store,
        audit: case.log.tree(),
        identity: &case.de,
        signed_roster: &case.net.signed_roster,
    };
    collect(&source, id, Timestamp::now())
}

fn pin(case: &Case) -> Fingerprint {
    case.net.roster.authority_set_fingerprint()
}

#[test]
fn an_export_verifies_and_says_who_proved_what() {
    let case = de_case(false);
    // A status reply's id (as a prefix) exports the thread of the request it answers.
    let file = export(&case, &case.status.to_string()[..8]).expect("export");
    let verified = verify(file.as_bytes(), Some(&pin(&case))).expect("verifies");
    assert_eq!(verified.message_id, case.request.to_string());
    assert_eq!(verified.case_reference.as_deref(), Some("DE-BKA-77"));
    assert!(verified.authority_set_checked);
    let all = verified.statements.join("\n");
    let fr_key = case.net.nodes[1].node_id.fingerprint().to_string();
    assert!(
        all.contains(&format!(
            "FR's node (FR point-of-contact), key {fr_key}, signed at"
        )) && all.contains("that it stored this exact envelope"),
        "{all}"
    );
    assert!(all.contains("DE's node"), "{all}");
    assert!(
        all.contains("records 1–5 (5 records, 3 of them about this case: 1, 3, 4)"),
        "{all}"
    );
    // The printable page shows the case and how to check it, with nothing fetched from outside.
    assert!(file.starts_with("<!DOCTYPE html>"));
    assert!(file.contains("quickfreeze evidence verify"));
    assert!(file.contains("DE-BKA-77"));
    let page_before = &file[..file.find(DATA_OPEN).expect("data block")];
    for external in ["<link", " src=", "url(", "@import", "<img", "<iframe"] {
        assert!(
            !page_before.contains(external),
            "the page loads something: {external}"
        );
    }
    // Without a pinned set it still verifies, and says it was not compared.
    let unpinned = verify(file.as_bytes(), None).expect("verifies");
    assert!(!unpinned.authority_set_checked);
    assert!(unpinned.statements[0].contains("NOT compared"));
}

#[test]
fn another_authority_set_is_refused() {
    let case = de_case(true);
    let file = export(&case, &case.request.to_string()).expect("export");
    let other = Fingerprint::of(b"other", b"authorities");
    let finding = verify(file.as_bytes(), Some(&other)).expect_err("wrong set");
    assert_eq!(finding.part, "roster", "{finding}");
}

#[test]
fn changing_any_byte_fails_and_names_what() {
    let case = de_case(true);
    let file = export(&case, &case.request.to_string()).expect("export");
    let pin = pin(&case);
    let bytes = file.as_bytes();
    assert!(verify(bytes, Some(&pin)).is_ok());
    let mut parts_named = std::collections::BTreeSet::new();
    for index in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[index] ^= 0x01;
        match verify(&changed, Some(&pin)) {
            Ok(_) => panic!(
                "flipping byte {index} of {} ({:?}) still verifies",
                bytes.len(),
                char::from(bytes[index])
            ),
            Err(finding) => {
                parts_named.insert(finding.part);
            }
        }
    }
    // The failures name the page, the file and parts of the data.
    assert!(parts_named.contains("page"), "{parts_named:?}");
    assert!(parts_named.contains("file"), "{parts_named:?}");
    assert!(parts_named.contains("roster"), "{parts_named:?}");
    assert!(
        parts_named.iter().any(|part| part.ends_with("/envelope")),
        "{parts_named:?}"
    );
}

/// Parts replaced with valid but different content, the manifest updated to match: the
/// exporter's signature catches it, and without that the part's own check names it.
#[test]
fn a_consistent_forgery_is_caught_by_the_signatures() {
    let case = de_case(true);
    let file = export(&case, &case.request.to_string()).expect("export");
    let decoded = decode(file.as_bytes()).expect("decode");
    let mut bundle = decoded.bundle.clone();
    // Swap the delivery receipt for the status's receipt (valid, signed, other message).
    let receipt_index = bundle
        .parts
        .iter()
        .position(|part| part.name == format!("message/{}/receipt/0", case.request))
        .expect("receipt");
    let status_receipt = bundle
        .parts
        .iter()
        .find(|part| part.name == format!("message/{}/receipt/0", case.status))
        .expect("status receipt")
        .hex
        .clone();
    bundle.parts[receipt_index].hex = status_receipt.clone();
    let bytes = hex::decode(&status_receipt).expect("hex");
    bundle.manifest.parts[receipt_index].sha256 = sha256_hex(&bytes);
    bundle.manifest.parts[receipt_index].length = bytes.len() as u64;
    let text = std::str::from_utf8(file.as_bytes()).expect("utf8");
    let open = text.find(DATA_OPEN).expect("open");
    let close = text.rfind(DATA_CLOSE).expect("close");
    let forged = encode_file(&text[..open], &bundle, &text[close + DATA_CLOSE.len()..]);
    let finding = verify(forged.as_bytes(), None).expect_err("forged");
    assert_eq!(finding.part, "manifest", "{finding}");
    assert!(finding.problem.contains("signature"), "{finding}");
}

#[test]
fn audit_export_filters_by_message_and_by_case() {
    let case = de_case(true);
    let request = case.request.to_string();
    let only = crate::audit::message_filter(&case.store, Some(&request[..6]), None)
        .expect("filter")
        .expect("some");
    assert_eq!(only.into_iter().collect::<Vec<_>>(), vec![case.request]);
    let in_case = crate::audit::message_filter(&case.store, None, Some("DE-BKA-77"))
        .expect("filter")
        .expect("some");
    assert_eq!(
        in_case.iter().copied().collect::<Vec<_>>(),
        vec![case.request, case.status]
    );
    let (lines, _) = case
        .log
        .export_page_of(Timestamp(0), None, 100, Some(&in_case))
        .expect("page");
    assert_eq!(
        lines.iter().map(|line| line.seq).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    let error = crate::audit::message_filter(&case.store, None, Some("NO-SUCH-CASE"))
        .expect_err("unknown case");
    assert!(error.contains("NO-SUCH-CASE"), "{error}");
}
