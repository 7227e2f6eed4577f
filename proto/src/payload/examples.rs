//! Complete, valid, fictitious payloads: what the console prints as a filled-in example, what the
//! docs show, and what tests start from.

use quickfreeze_keys::types::{CountryCode, Timestamp};

use super::handling::Handling;
use super::limits::DEFAULT_PRESERVATION_DAYS;
use super::types::{
    Attachment, DataIdentifier, EmergencyDisclosureRequest, FreeText, OnDutyContact,
    PreservationRequest, RequestHeader, ServiceProvider, Status, StatusUpdate,
    TrafficDataDisclosure,
};
use crate::{MessageId, Priority};

/// 2027-02-21T00:00:00Z: the expiry in [`example_status`], 90 days after the example request.
pub(super) const EXAMPLE_EXPIRY: Timestamp = Timestamp(1_803_168_000_000);

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
        handling: Handling::default(),
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
