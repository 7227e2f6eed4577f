//! The workload: which officer sends what to whom, and when.
//!
//! [`plan`] draws the whole submission schedule up front from its own RNG stream (so changing
//! the fault level leaves the workload unchanged): messages come in bursts (an incident makes
//! one point of contact send several requests within seconds, or many countries ask one
//! country at once, while others keep working), with
//! a realistic mix: mostly urgent preservation requests, some emergency disclosure requests,
//! some urgent traffic-data disclosures and routine free text. Status updates are not planned;
//! they arise when officers acknowledge what they receive.
//!
//! Every payload carries a unique case reference beginning with [`MARKER_PREFIX`]. Plaintext
//! never leaves the sealed envelope, so the relay checker looks for that prefix in everything a
//! relay stores and must never find it.

use quickfreeze_proto::payload::{
    example_emergency, example_free_text, example_preservation, example_traffic_data, Payload,
};
use quickfreeze_proto::Priority;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Every case reference the simulator writes starts with this; relays must never hold it.
pub const MARKER_PREFIX: &str = "QFSIM-CASE-";

/// What kind of request an officer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkKind {
    Preservation,
    Emergency,
    TrafficData,
    FreeText,
}

/// One planned submission.
#[derive(Clone, Debug)]
pub(crate) struct PlannedMessage {
    pub(crate) at_ms: u64,
    pub(crate) sender: usize,
    pub(crate) recipient: usize,
    pub(crate) kind: WorkKind,
    pub(crate) marker: String,
}

/// Draws `messages` submissions among `members` member nodes within the first 80 % of the
/// safety phase.
pub(crate) fn plan(
    rng: &mut ChaCha8Rng,
    seed: u64,
    members: usize,
    messages: usize,
    duration_ms: u64,
) -> Vec<PlannedMessage> {
    let window_ms = (duration_ms * 4 / 5).max(1);
    let burst_count = messages.div_ceil(6).max(1);
    // Each burst has a hot sender (one office sending to many countries) and a hot recipient
    // (many countries asking one country at once: its in-flight limits and batches fill up).
    let bursts: Vec<(u64, usize, usize)> = (0..burst_count)
        .map(|_| {
            (
                rng.random_range(0..window_ms),
                rng.random_range(0..members),
                rng.random_range(0..members),
            )
        })
        .collect();
    let mut planned: Vec<PlannedMessage> = (0..messages)
        .map(|index| {
            let (burst_at_ms, hot_sender, hot_recipient) =
                bursts[rng.random_range(0..bursts.len())];
            let roll = rng.random_range(0..10u32);
            let (sender, recipient) = if roll < 4 {
                (
                    hot_sender,
                    (hot_sender + rng.random_range(1..members)) % members,
                )
            } else if roll < 7 {
                (
                    (hot_recipient + rng.random_range(1..members)) % members,
                    hot_recipient,
                )
            } else {
                let sender = rng.random_range(0..members);
                (sender, (sender + rng.random_range(1..members)) % members)
            };
            let roll = rng.random_range(0..100u32);
            let kind = match roll {
                0..70 => WorkKind::Preservation,
                70..80 => WorkKind::Emergency,
                80..85 => WorkKind::TrafficData,
                _ => WorkKind::FreeText,
            };
            PlannedMessage {
                at_ms: burst_at_ms + rng.random_range(0..3_000),
                sender,
                recipient,
                kind,
                marker: format!("{MARKER_PREFIX}{seed:016x}-{index:06}"),
            }
        })
        .collect();
    // Stable: equal times keep plan order, so the schedule is a pure function of the seed.
    planned.sort_by_key(|message| message.at_ms);
    planned
}

/// The payload for a planned message, carrying its marker as case reference.
pub(crate) fn payload(kind: WorkKind, marker: &str) -> Payload {
    match kind {
        WorkKind::Preservation => {
            let mut request = example_preservation();
            request.header.case_reference = marker.to_string();
            request.header.urgency = Priority::Urgent;
            Payload::Preservation(request)
        }
        WorkKind::Emergency => {
            let mut request = example_emergency();
            request.header.case_reference = marker.to_string();
            Payload::Emergency(request)
        }
        WorkKind::TrafficData => {
            let mut disclosure = example_traffic_data();
            disclosure.header.case_reference = marker.to_string();
            disclosure.header.urgency = Priority::Urgent;
            Payload::TrafficData(disclosure)
        }
        WorkKind::FreeText => {
            let mut text = example_free_text();
            text.case_reference = Some(marker.to_string());
            text.priority = Priority::Routine;
            Payload::FreeText(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_planned_payload_is_valid_and_never_self_addressed() {
        let mut rng = ChaCha8Rng::from_seed([3; 32]);
        let planned = plan(&mut rng, 3, 7, 200, 60_000);
        assert_eq!(planned.len(), 200);
        for message in &planned {
            assert_ne!(message.sender, message.recipient);
            let payload = payload(message.kind, &message.marker);
            payload.validate().expect("valid payload");
            assert_eq!(payload.case_reference(), Some(message.marker.as_str()));
        }
        assert!(planned
            .windows(2)
            .all(|pair| pair[0].at_ms <= pair[1].at_ms));
    }
}
