//! Efficiency statistics per counterpart country, the figures the T-CY asked parties to keep.
//!
//! [`statistics`] is a pure function of the store's entries. It counts *requests* only
//! (preservation, traffic data, emergency disclosure) created or received since a time, and for
//! each country gives:
//!
//! - requests sent and received;
//! - median time from submission to the verified delivery receipt (sent);
//! - median time to acknowledgement: ours for received requests (the officer's `ack`, or the
//!   first status we sent if that came first), theirs for sent ones (their first status update
//!   of any kind, since a substantive answer also acknowledges);
//! - median time to the first substantive status (anything but a bare acknowledgement), both
//!   ways;
//! - refusals by ground (Art. 29(5)), received and given.
//!
//! Medians are over the requests that reached that step; requests still waiting are not in them
//! (the deadline clocks cover those).

use std::collections::BTreeMap;

use quickfreeze_keys::{NodeId, Timestamp};
use quickfreeze_proto::core::{InboxEntry, OutboxEntry, OutboxState};
use quickfreeze_proto::payload::{Payload, Status};
use quickfreeze_proto::MessageId;
use serde::{Deserialize, Serialize};

use crate::deadlines::is_request;

/// The figures for one counterpart country.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountryStats {
    /// ISO country code (`??` for a node no longer in the roster).
    pub country: String,
    /// Requests we sent there.
    pub sent: u64,
    /// Requests we received from there.
    pub received: u64,
    /// Median seconds, submission → verified delivery receipt (sent requests).
    pub median_receipt_s: Option<f64>,
    /// Median seconds, their receipt of our request → their first status (sent requests).
    pub median_their_ack_s: Option<f64>,
    /// Median seconds, our receipt of their request → our acknowledgement (received requests).
    pub median_our_ack_s: Option<f64>,
    /// Median seconds to their first substantive status (sent requests).
    pub median_their_status_s: Option<f64>,
    /// Median seconds to our first substantive status (received requests).
    pub median_our_status_s: Option<f64>,
    /// Our requests they refused, by ground.
    pub refusals_received: BTreeMap<String, u64>,
    /// Their requests we refused, by ground.
    pub refusals_given: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Samples {
    stats: CountryStats,
    receipt: Vec<u64>,
    their_ack: Vec<u64>,
    our_ack: Vec<u64>,
    their_status: Vec<u64>,
    our_status: Vec<u64>,
}

/// The median of millisecond samples, in seconds.
pub fn median_s(samples: &mut [u64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let middle = samples.len() / 2;
    let ms = if samples.len() % 2 == 1 {
        samples[middle] as f64
    } else {
        (samples[middle - 1] as f64 + samples[middle] as f64) / 2.0
    };
    Some(ms / 1000.0)
}

fn refusal_ground(status: &Status) -> Option<String> {
    match status {
        Status::Refused { ground, .. } => Some(ground.to_string()),
        _ => None,
    }
}

/// Statistics per country for requests since `since`, sorted by country.
pub fn statistics(
    since: Timestamp,
    outbox: &[OutboxEntry],
    inbox: &[InboxEntry],
    country_of: impl Fn(&NodeId) -> String,
) -> Vec<CountryStats> {
    let mut by_country: BTreeMap<String, Samples> = BTreeMap::new();
    let by_id: BTreeMap<MessageId, &OutboxEntry> = outbox
        .iter()
        .map(|entry| (entry.message_id, entry))
        .collect();
    for entry in outbox
        .iter()
        .filter(|entry| is_request(entry.kind) && entry.created_at >= since)
    {
        let samples = by_country.entry(country_of(&entry.recipient)).or_default();
        samples.stats.sent += 1;
        if let OutboxState::Delivered { at } = entry.state {
            samples.receipt.push(at.millis_since(entry.created_at));
        }
        if let Some(first) = entry.status_history.first() {
            samples
                .their_ack
                .push(first.received_at.millis_since(entry.created_at));
        }
        if let Some(first) = entry
            .status_history
            .iter()
            .find(|record| record.update.is_substantive())
        {
            samples
                .their_status
                .push(first.received_at.millis_since(entry.created_at));
        }
        if let Some(ground) = entry
            .status_history
            .iter()
            .find_map(|record| refusal_ground(&record.update.status))
        {
            *samples.stats.refusals_received.entry(ground).or_default() += 1;
        }
    }
    for entry in inbox
        .iter()
        .filter(|entry| is_request(entry.payload.kind()) && entry.received_at >= since)
    {
        let samples = by_country.entry(country_of(&entry.sender)).or_default();
        samples.stats.received += 1;
        let replies: Vec<(Timestamp, &Status)> = entry
            .replies
            .iter()
            .filter_map(|id| by_id.get(id))
            .filter_map(|reply| match &reply.payload {
                Payload::Status(update) => Some((reply.created_at, &update.status)),
                _ => None,
            })
            .collect();
        let first_reply = replies.iter().map(|(at, _)| *at).min();
        let acknowledged = match (entry.acknowledged_at, first_reply) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = acknowledged {
            samples.our_ack.push(at.millis_since(entry.received_at));
        }
        if let Some(at) = replies
            .iter()
            .filter(|(_, status)| !matches!(status, Status::AcknowledgedByOfficer))
            .map(|(at, _)| *at)
            .min()
        {
            samples.our_status.push(at.millis_since(entry.received_at));
        }
        if let Some(ground) = replies
            .iter()
            .find_map(|(_, status)| refusal_ground(status))
        {
            *samples.stats.refusals_given.entry(ground).or_default() += 1;
        }
    }
    by_country
        .into_iter()
        .map(|(country, mut samples)| CountryStats {
            country,
            median_receipt_s: median_s(&mut samples.receipt),
            median_their_ack_s: median_s(&mut samples.their_ack),
            median_our_ack_s: median_s(&mut samples.our_ack),
            median_their_status_s: median_s(&mut samples.their_status),
            median_our_status_s: median_s(&mut samples.our_status),
            ..samples.stats
        })
        .collect()
}

/// The statistics since `since` from a store (the daemon's, or one the CLI opened because no node
/// runs), with members named by their country in `roster`. The caller wraps them in its answer, so
/// this module stays below the control protocol that carries [`CountryStats`].
pub fn from_store(
    store: &crate::store::SledStore,
    roster: &quickfreeze_keys::roster::Roster,
    since: Timestamp,
) -> Result<Vec<CountryStats>, String> {
    // Requests sent or received since `since`, and our replies (written after the request they
    // answer, so also inside the window): a range scan of the time indexes. The cost follows
    // the window asked for, not the whole history.
    let (outbox, inbox) = store
        .indexes()
        .since(since)
        .map_err(|error| error.to_string())?;
    Ok(statistics(since, &outbox, &inbox, |node| {
        roster
            .member(node)
            .map_or_else(|| "??".to_string(), |member| member.country.to_string())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadlines::tests::{inbox, outbox, status_reply};
    use quickfreeze_keys::Identity;
    use quickfreeze_proto::core::StatusRecord;
    use quickfreeze_proto::payload::{
        example_free_text, example_preservation, RefusalGround, StatusUpdate,
    };
    use quickfreeze_proto::Priority;

    fn country(node: &NodeId) -> String {
        match node.0[0] {
            1 => "FR".into(),
            2 => "NL".into(),
            _ => "??".into(),
        }
    }

    fn record(at: u64, about: u8, status: Status) -> StatusRecord {
        StatusRecord {
            received_at: Timestamp(at),
            message_id: MessageId([99; 16]),
            update: StatusUpdate {
                references: MessageId([about; 16]),
                case_reference: "C".into(),
                status,
                note: String::new(),
                officer: "O".into(),
                priority: Priority::Urgent,
            },
        }
    }

    #[test]
    fn medians_refusals_and_the_time_window() {
        let fr = NodeId([1; 32]);
        let nl = NodeId([2; 32]);
        let request = Payload::Preservation(example_preservation());
        let delivered = |at| OutboxState::Delivered { at: Timestamp(at) };
        let mut a = outbox(
            1,
            fr,
            Priority::Urgent,
            10_000,
            delivered(12_000),
            request.clone(),
        );
        a.status_history = vec![
            record(20_000, 1, Status::AcknowledgedByOfficer),
            record(
                70_000,
                1,
                Status::Refused {
                    ground: RefusalGround::Sovereignty,
                    explanation: "x".into(),
                },
            ),
        ];
        let b = outbox(
            2,
            fr,
            Priority::Urgent,
            10_000,
            delivered(14_000),
            request.clone(),
        );
        let c = outbox(
            3,
            fr,
            Priority::Urgent,
            10_000,
            delivered(19_000),
            request.clone(),
        );
        let old = outbox(
            4,
            fr,
            Priority::Urgent,
            1_000,
            delivered(2_000),
            request.clone(),
        );
        let chat = outbox(
            5,
            fr,
            Priority::Urgent,
            10_000,
            OutboxState::Sent,
            Payload::FreeText(example_free_text()),
        );

        let identity = Identity::generate(&mut rand::rng());
        let mut received = inbox(
            &identity,
            10,
            nl,
            Priority::Urgent,
            100_000,
            request.clone(),
        );
        received.acknowledged_at = Some(Timestamp(160_000));
        received.replies = vec![MessageId([11; 16]), MessageId([12; 16])];
        let ack = status_reply(11, nl, 10, Status::AcknowledgedByOfficer, 160_000);
        let refusal = status_reply(
            12,
            nl,
            10,
            Status::Refused {
                ground: RefusalGround::PoliticalOffence,
                explanation: "x".into(),
            },
            400_000,
        );
        let outbox_entries = vec![a, b, c, old, chat, ack, refusal];
        let rows = statistics(Timestamp(5_000), &outbox_entries, &[received], country);
        assert_eq!(rows.len(), 2);
        let fr_row = &rows[0];
        assert_eq!(fr_row.country, "FR");
        assert_eq!(
            (fr_row.sent, fr_row.received),
            (3, 0),
            "old and free text not counted"
        );
        assert_eq!(fr_row.median_receipt_s, Some(4.0), "2 s, 4 s, 9 s");
        assert_eq!(fr_row.median_their_ack_s, Some(10.0));
        assert_eq!(fr_row.median_their_status_s, Some(60.0));
        assert_eq!(
            fr_row
                .refusals_received
                .get(&RefusalGround::Sovereignty.to_string())
                .copied(),
            Some(1),
            "{:?}",
            fr_row.refusals_received
        );
        let nl_row = &rows[1];
        assert_eq!((nl_row.sent, nl_row.received), (0, 1));
        assert_eq!(nl_row.median_our_ack_s, Some(60.0));
        assert_eq!(nl_row.median_our_status_s, Some(300.0));
        assert_eq!(nl_row.refusals_given.values().sum::<u64>(), 1);
        assert_eq!(nl_row.median_receipt_s, None);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median_s(&mut [4_000, 1_000, 3_000, 2_000]), Some(2.5));
        assert_eq!(median_s(&mut []), None);
    }
}
