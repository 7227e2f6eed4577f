//! Deadlines and escalation: which messages have waited too long for the next step.
//!
//! Three clocks, each set per priority in the `[deadlines]` section of `node.toml`:
//!
//! | clock | starts when | stops when | emergency | urgent | routine |
//! |---|---|---|---|---|---|
//! | T1 `receipt` | we submit a message | its delivery receipt is verified (or it expires or is refused: those raise their own alert) | 60 s | 10 min | 1 h |
//! | T2 `acknowledge` | a request reaches our inbox | an officer acknowledges it (or sends any status) | 15 min | 2 h | 24 h |
//! | T3 `status` | a request reaches our inbox | we send a substantive status (anything but a bare "acknowledged") | 2 h | 24 h | 7 d |
//!
//! T2 and T3 apply to requests (preservation, traffic data, emergency disclosure); free text and
//! status updates need no answer. A clock set to 0 is off.
//!
//! [`breaches`] is a pure function of the time and the store's entries, so tests drive it with
//! any clock. [`Tracker`] remembers what was already raised, so that the daemon raises each
//! breach once per process (log line, audit record, alert hook `overdue`) while `status` keeps
//! listing it until it clears.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use quickfreeze_keys::{Digest32, NodeId, Timestamp};
use quickfreeze_proto::core::{InboxEntry, OutboxEntry};
use quickfreeze_proto::payload::{Payload, PayloadKind};
use quickfreeze_proto::{MessageId, Priority};
use serde::{Deserialize, Serialize};

/// The longest clock accepted in the configuration (a year).
pub const MAX_CLOCK_S: u64 = 366 * 24 * 3600;

/// Which clock ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    /// T1: no delivery receipt for a message we sent.
    Receipt,
    /// T2: a received request not acknowledged by an officer.
    Acknowledge,
    /// T3: no substantive status sent about a received request.
    Status,
}

impl Clock {
    /// All clocks, in T1, T2, T3 order.
    pub const ALL: [Clock; 3] = [Clock::Receipt, Clock::Acknowledge, Clock::Status];

    /// Position in [`Clock::ALL`].
    pub fn index(self) -> usize {
        match self {
            Clock::Receipt => 0,
            Clock::Acknowledge => 1,
            Clock::Status => 2,
        }
    }

    /// The name in config, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Clock::Receipt => "receipt",
            Clock::Acknowledge => "acknowledge",
            Clock::Status => "status",
        }
    }

    /// What an officer should understand.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::Receipt => "T1: no delivery receipt yet; phone the recipient's point of contact",
            Clock::Acknowledge => "T2: not acknowledged by an officer yet",
            Clock::Status => "T3: no substantive status sent to the requester yet",
        }
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One clock's limits, in seconds, per priority. 0 turns the clock off for that priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerPriority {
    /// Emergency messages.
    pub emergency_s: u64,
    /// Urgent messages.
    pub urgent_s: u64,
    /// Routine messages.
    pub routine_s: u64,
}

impl PerPriority {
    /// The limit for `priority` in milliseconds, or `None` when the clock is off.
    pub fn limit_ms(&self, priority: Priority) -> Option<u64> {
        let seconds = match priority {
            Priority::Emergency => self.emergency_s,
            Priority::Urgent => self.urgent_s,
            Priority::Routine => self.routine_s,
        };
        (seconds > 0).then(|| seconds.saturating_mul(1000))
    }
}

/// `[deadlines]` in `node.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineConfig {
    /// T1: submit → verified delivery receipt.
    pub receipt: PerPriority,
    /// T2: received → acknowledged by an officer.
    pub acknowledge: PerPriority,
    /// T3: received → first substantive status sent.
    pub status: PerPriority,
    /// How often the daemon checks, in milliseconds.
    pub check_interval_ms: u64,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig {
            receipt: PerPriority {
                emergency_s: 60,
                urgent_s: 10 * 60,
                routine_s: 3600,
            },
            acknowledge: PerPriority {
                emergency_s: 15 * 60,
                urgent_s: 2 * 3600,
                routine_s: 24 * 3600,
            },
            status: PerPriority {
                emergency_s: 2 * 3600,
                urgent_s: 24 * 3600,
                routine_s: 7 * 24 * 3600,
            },
            check_interval_ms: 5_000,
        }
    }
}

impl DeadlineConfig {
    /// The limit of `clock` for `priority`, in milliseconds.
    pub fn limit_ms(&self, clock: Clock, priority: Priority) -> Option<u64> {
        match clock {
            Clock::Receipt => self.receipt.limit_ms(priority),
            Clock::Acknowledge => self.acknowledge.limit_ms(priority),
            Clock::Status => self.status.limit_ms(priority),
        }
    }

    /// Refuses values that can only be typos.
    pub fn validate(&self) -> Result<(), String> {
        for (name, clock) in [
            ("receipt", &self.receipt),
            ("acknowledge", &self.acknowledge),
            ("status", &self.status),
        ] {
            for (priority, value) in [
                ("emergency_s", clock.emergency_s),
                ("urgent_s", clock.urgent_s),
                ("routine_s", clock.routine_s),
            ] {
                if value > MAX_CLOCK_S {
                    return Err(format!(
                        "[deadlines.{name}] {priority} = {value} is more than a year ({MAX_CLOCK_S} s); use 0 to turn the clock off"
                    ));
                }
            }
        }
        if !(100..=3_600_000).contains(&self.check_interval_ms) {
            return Err(format!(
                "[deadlines] check_interval_ms = {} must be between 100 (0.1 s) and 3600000 (1 h)",
                self.check_interval_ms
            ));
        }
        Ok(())
    }
}

/// One overdue message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The clock that ran out.
    pub clock: Clock,
    /// The message.
    pub message_id: MessageId,
    /// The other node: recipient (T1) or requester (T2, T3).
    pub peer: NodeId,
    /// Its priority.
    pub priority: Priority,
    /// When the clock ran out.
    pub due_at: Timestamp,
    /// Milliseconds past `due_at`.
    pub overdue_ms: u64,
}

impl Breach {
    /// What makes a breach the same one across checks.
    pub fn key(&self) -> (Clock, MessageId, NodeId) {
        (self.clock, self.message_id, self.peer)
    }
}

/// Payload kinds that ask the other side to act (and so start T2 and T3).
pub fn is_request(kind: PayloadKind) -> bool {
    matches!(
        kind,
        PayloadKind::Preservation | PayloadKind::TrafficData | PayloadKind::Emergency
    )
}

/// Every breach at `now` with the envelope digest of its message, from the store's entries:
/// the whole deadline check short of raising anything. It decodes only the open items the
/// store's indexes name (see [`crate::store::Indexes::deadline_items`]).
pub fn scan(
    now: Timestamp,
    reader: &crate::store::StoreReader,
    config: &DeadlineConfig,
) -> Result<Vec<(Breach, Option<Digest32>)>, quickfreeze_proto::core::StoreError> {
    let (outbox, inbox) = reader.indexes().deadline_items()?;
    Ok(with_digests(
        breaches(now, &outbox, &inbox, config),
        &outbox,
        &inbox,
    ))
}

/// Pairs each breach with the digest of its message's envelope.
pub fn with_digests(
    found: Vec<Breach>,
    outbox: &[OutboxEntry],
    inbox: &[InboxEntry],
) -> Vec<(Breach, Option<Digest32>)> {
    found
        .into_iter()
        .map(|breach| {
            let digest = outbox
                .iter()
                .find(|entry| entry.message_id == breach.message_id)
                .map(|entry| entry.digest)
                .or_else(|| {
                    inbox
                        .iter()
                        .find(|entry| {
                            entry.message_id == breach.message_id && entry.sender == breach.peer
                        })
                        .map(|entry| entry.digest)
                });
            (breach, digest)
        })
        .collect()
}

/// Every breach at `now`, most urgent first (priority, then longest overdue).
pub fn breaches(
    now: Timestamp,
    outbox: &[OutboxEntry],
    inbox: &[InboxEntry],
    config: &DeadlineConfig,
) -> Vec<Breach> {
    let mut found = Vec::new();
    let mut check = |clock: Clock, id: MessageId, peer: NodeId, priority, started: Timestamp| {
        if let Some(limit) = config.limit_ms(clock, priority) {
            let due_at = started.plus_ms(limit);
            if now > due_at {
                found.push(Breach {
                    clock,
                    message_id: id,
                    peer,
                    priority,
                    due_at,
                    overdue_ms: now.millis_since(due_at),
                });
            }
        }
    };
    for entry in outbox.iter().filter(|entry| !entry.state.is_final()) {
        check(
            Clock::Receipt,
            entry.message_id,
            entry.recipient,
            entry.priority,
            entry.created_at,
        );
    }
    // Our status replies, by id: what we already told each requester.
    let replies: BTreeMap<MessageId, &OutboxEntry> = outbox
        .iter()
        .map(|entry| (entry.message_id, entry))
        .collect();
    for entry in inbox
        .iter()
        .filter(|entry| is_request(entry.payload.kind()))
    {
        let sent: Vec<bool> = entry
            .replies
            .iter()
            .filter_map(|id| replies.get(id))
            .filter_map(|reply| match &reply.payload {
                Payload::Status(update) => Some(update.is_substantive()),
                _ => None,
            })
            .collect();
        if entry.acknowledged_at.is_none() && sent.is_empty() {
            check(
                Clock::Acknowledge,
                entry.message_id,
                entry.sender,
                entry.priority,
                entry.received_at,
            );
        }
        if !sent.contains(&true) {
            check(
                Clock::Status,
                entry.message_id,
                entry.sender,
                entry.priority,
                entry.received_at,
            );
        }
    }
    found.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(b.overdue_ms.cmp(&a.overdue_ms))
            .then(a.key().cmp(&b.key()))
    });
    found
}

/// What the daemon has raised in this process, and what is overdue now.
#[derive(Debug, Default)]
pub struct Tracker {
    raised: BTreeSet<(Clock, MessageId, NodeId)>,
    current: Vec<Breach>,
}

impl Tracker {
    /// Takes the breaches of a check; returns the ones never raised before. A breach that has
    /// cleared is forgotten (none of the clocks can start again for the same message).
    pub fn update(&mut self, breaches: Vec<Breach>) -> Vec<Breach> {
        let now_keys: BTreeSet<_> = breaches.iter().map(Breach::key).collect();
        self.raised.retain(|key| now_keys.contains(key));
        let fresh = breaches
            .iter()
            .filter(|breach| self.raised.insert(breach.key()))
            .cloned()
            .collect();
        self.current = breaches;
        fresh
    }

    /// Breaches at the last check, most urgent first.
    pub fn current(&self) -> &[Breach] {
        &self.current
    }

    /// Breaches at the last check, counted per clock (T1, T2, T3).
    pub fn counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for breach in &self.current {
            counts[breach.clock.index()] += 1;
        }
        counts
    }

    /// The clocks overdue for each message at the last check.
    pub fn by_message(&self) -> BTreeMap<MessageId, Vec<Clock>> {
        let mut map: BTreeMap<MessageId, Vec<Clock>> = BTreeMap::new();
        for breach in &self.current {
            map.entry(breach.message_id).or_default().push(breach.clock);
        }
        map
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use quickfreeze_keys::{Digest32, Identity};
    use quickfreeze_proto::core::OutboxState;
    use quickfreeze_proto::payload::{
        example_free_text, example_preservation, Status, StatusUpdate,
    };
    use quickfreeze_proto::receipt::{Receipt, ReceiptBody, ReceiptKind};

    const MIN: u64 = 60_000;

    pub(crate) fn outbox(
        id: u8,
        to: NodeId,
        priority: Priority,
        created: u64,
        state: OutboxState,
        payload: Payload,
    ) -> OutboxEntry {
        OutboxEntry {
            message_id: MessageId([id; 16]),
            recipient: to,
            priority,
            kind: payload.kind(),
            summary: String::new(),
            payload,
            created_at: Timestamp(created),
            expires_at: Timestamp(created + 1_000 * MIN),
            envelope: Vec::new(),
            digest: Digest32([id; 32]),
            state,
            attempts: 1,
            direct_failures: 0,
            relay_attempts: 0,
            custody_receipt: None,
            delivery_receipt: None,
            status_history: Vec::new(),
            last_error: None,
        }
    }

    pub(crate) fn inbox(
        identity: &Identity,
        id: u8,
        from: NodeId,
        priority: Priority,
        received: u64,
        payload: Payload,
    ) -> InboxEntry {
        let receipt = Receipt::sign(
            identity,
            ReceiptBody {
                message_id: MessageId([id; 16]),
                envelope_digest: Digest32([id; 32]),
                sender: from,
                recipient: identity.node_id(),
                signer: identity.node_id(),
                received_at: Timestamp(received),
                kind: ReceiptKind::Delivered,
            },
        );
        InboxEntry {
            sender: from,
            message_id: MessageId([id; 16]),
            priority,
            received_at: Timestamp(received),
            created_at: Timestamp(received),
            via_relay: None,
            envelope: Vec::new(),
            digest: Digest32([id; 32]),
            payload,
            receipt,
            acknowledged_at: None,
            replies: Vec::new(),
        }
    }

    pub(crate) fn status_reply(
        id: u8,
        to: NodeId,
        about: u8,
        status: Status,
        at: u64,
    ) -> OutboxEntry {
        let update = StatusUpdate {
            references: MessageId([about; 16]),
            case_reference: "X".into(),
            status,
            note: String::new(),
            officer: "O".into(),
            priority: Priority::Urgent,
        };
        outbox(
            id,
            to,
            Priority::Urgent,
            at,
            OutboxState::Delivered { at: Timestamp(at) },
            Payload::Status(update),
        )
    }

    fn peer(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    #[test]
    fn t1_runs_out_per_priority_and_stops_at_delivery() {
        let config = DeadlineConfig::default();
        let request = Payload::Preservation(example_preservation());
        let entries = vec![
            outbox(
                1,
                peer(9),
                Priority::Emergency,
                0,
                OutboxState::Sent,
                request.clone(),
            ),
            outbox(
                2,
                peer(9),
                Priority::Urgent,
                0,
                OutboxState::Sent,
                request.clone(),
            ),
            outbox(
                3,
                peer(9),
                Priority::Emergency,
                0,
                OutboxState::Delivered { at: Timestamp(1) },
                request.clone(),
            ),
        ];
        assert!(breaches(Timestamp(60_000), &entries, &[], &config).is_empty());
        let found = breaches(Timestamp(61_000), &entries, &[], &config);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].clock, Clock::Receipt);
        assert_eq!(found[0].message_id, MessageId([1; 16]));
        assert_eq!(found[0].overdue_ms, 1_000);
        let later = breaches(Timestamp(11 * MIN), &entries, &[], &config);
        assert_eq!(later.len(), 2, "urgent joins after 10 min");
        assert_eq!(later[0].priority, Priority::Emergency, "most urgent first");
    }

    #[test]
    fn t2_and_t3_on_received_requests_only() {
        let identity = Identity::generate(&mut rand::rng());
        let config = DeadlineConfig::default();
        let entries = vec![
            inbox(
                &identity,
                1,
                peer(2),
                Priority::Emergency,
                0,
                Payload::Preservation(example_preservation()),
            ),
            inbox(
                &identity,
                2,
                peer(2),
                Priority::Emergency,
                0,
                Payload::FreeText(example_free_text()),
            ),
        ];
        let at_16_min = breaches(Timestamp(16 * MIN), &[], &entries, &config);
        assert_eq!(
            at_16_min.iter().map(|b| b.clock).collect::<Vec<_>>(),
            vec![Clock::Acknowledge]
        );
        let at_3_h = breaches(Timestamp(180 * MIN), &[], &entries, &config);
        assert_eq!(at_3_h.len(), 2);
        assert!(at_3_h.iter().all(|b| b.message_id == MessageId([1; 16])));
    }

    #[test]
    fn raised_once_and_cleared_when_acknowledged_then_answered() {
        let identity = Identity::generate(&mut rand::rng());
        let config = DeadlineConfig::default();
        let mut entry = inbox(
            &identity,
            1,
            peer(2),
            Priority::Urgent,
            0,
            Payload::Preservation(example_preservation()),
        );
        let mut tracker = Tracker::default();
        let mut outbox_entries = Vec::new();

        let first = tracker.update(breaches(
            Timestamp(121 * MIN),
            &outbox_entries,
            &[entry.clone()],
            &config,
        ));
        assert_eq!(first.len(), 1, "T2 raised");
        let again = tracker.update(breaches(
            Timestamp(130 * MIN),
            &outbox_entries,
            &[entry.clone()],
            &config,
        ));
        assert!(again.is_empty(), "not raised twice");
        assert_eq!(tracker.counts(), [0, 1, 0]);

        // The officer acknowledges: T2 clears.
        entry.acknowledged_at = Some(Timestamp(131 * MIN));
        entry.replies.push(MessageId([50; 16]));
        outbox_entries.push(status_reply(
            50,
            peer(2),
            1,
            Status::AcknowledgedByOfficer,
            131 * MIN,
        ));
        let cleared = tracker.update(breaches(
            Timestamp(132 * MIN),
            &outbox_entries,
            &[entry.clone()],
            &config,
        ));
        assert!(cleared.is_empty());
        assert!(tracker.current().is_empty());

        // A day later nothing substantive was sent: T3, once.
        let t3 = tracker.update(breaches(
            Timestamp(24 * 60 * MIN + MIN),
            &outbox_entries,
            &[entry.clone()],
            &config,
        ));
        assert_eq!(
            t3.iter().map(|b| b.clock).collect::<Vec<_>>(),
            vec![Clock::Status]
        );
        assert!(tracker.by_message()[&MessageId([1; 16])].contains(&Clock::Status));

        // "Preserved" is substantive: T3 clears.
        entry.replies.push(MessageId([51; 16]));
        outbox_entries.push(status_reply(
            51,
            peer(2),
            1,
            Status::Preserved {
                reference: "R".into(),
                expires_at: Timestamp(0),
            },
            24 * 60 * MIN + 2 * MIN,
        ));
        tracker.update(breaches(
            Timestamp(24 * 60 * MIN + 3 * MIN),
            &outbox_entries,
            &[entry],
            &config,
        ));
        assert!(tracker.current().is_empty());
    }

    #[test]
    fn zero_turns_a_clock_off_and_silly_values_are_refused() {
        let mut config = DeadlineConfig::default();
        config.receipt.emergency_s = 0;
        let entries = vec![outbox(
            1,
            peer(9),
            Priority::Emergency,
            0,
            OutboxState::Sent,
            Payload::Preservation(example_preservation()),
        )];
        assert!(breaches(Timestamp(u64::MAX / 2), &entries, &[], &config).is_empty());
        assert!(config.validate().is_ok());
        config.status.routine_s = MAX_CLOCK_S + 1;
        assert!(config
            .validate()
            .expect_err("too long")
            .contains("deadlines.status"));
        let config = DeadlineConfig {
            check_interval_ms: 0,
            ..DeadlineConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
