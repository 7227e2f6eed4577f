//! Ground truth and the invariant checkers.
//!
//! The simulator records what really happened ([`Truth`]): every submission with the digest of
//! the envelope its sender stored, whether the officer was told "accepted" (the sender's store
//! was flushed), which events each officer was shown, and which receipts each node let out onto
//! the wire. The checkers compare the nodes' stores and events against it:
//!
//! 1. **Exactly once** – no `Received` event repeats, no message sits in two inboxes.
//! 2. **Authentic** – every inbox entry is a message its sender really submitted, for that
//!    recipient, with the identical envelope digest (no forgery, no tampering accepted).
//! 3. **Receipts verify** – every delivery receipt an outbox stores verifies against the roster
//!    and the entry's digest.
//! 4. **Relays are blind** – nothing a relay stores contains a payload marker; relays have no
//!    inbox and no outbox.
//! 5. **Liveness** – after the heal every accepted message ends delivered (with a receipt), or
//!    expired / rejected with an event at its sender; never silently gone.
//! 6. **Durability** – after a crash, everything acknowledged before it is still in the store:
//!    accepted messages, shown deliveries, received messages, and every delivery or custody
//!    receipt the node released.
//!
//! The checks run at the moment the relevant event is shown or the node crashes, in periodic
//! sweeps, and once more over every store at the end of the run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use quickfreeze_keys::{Digest32, NodeId, Timestamp};
use quickfreeze_proto::core::{InboxEntry, MemoryStore, OutboxState, Store};
use quickfreeze_proto::{MessageId, Priority};
use serde::Serialize;

use super::workload::MARKER_PREFIX;

/// Plaintext that must never appear in a relay's store: the payload markers, and a phrase from
/// every preservation request body.
const PLAINTEXT_PROBES: [&str; 2] = [MARKER_PREFIX, "Ransomware attack"];

/// Which rule a run broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// 1: a message reached an officer twice.
    ExactlyOnce,
    /// 2: an inbox holds something no sender submitted, or not byte for byte.
    Authentic,
    /// 3: a stored delivery receipt does not verify.
    ReceiptValid,
    /// 4: a relay stores plaintext, or acts as a member.
    RelayBlind,
    /// 5: an accepted message did not end delivered, or expired with an event.
    Liveness,
    /// 6: something acknowledged was lost in a crash.
    Durability,
    /// A forgery of the hostile member was answered with a receipt, an ack or a roster change.
    ForgeryAccepted,
    /// A message sits in an inbox without the officer ever being shown it.
    Visibility,
    /// After convergence and the quiet period, some node still had work queued.
    Quiescence,
    /// A node kept waking at one instant, or the event budget ran out.
    Livelock,
    /// 7: a node took a message from a member after it held the notice revoking it.
    Revoked,
    /// A scripted scenario's story did not happen as written (see `scenario`).
    Scenario,
    /// The simulator itself failed (a bug in the harness, not in the core).
    Harness,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::ExactlyOnce => "exactly-once",
            Invariant::Authentic => "authentic",
            Invariant::ReceiptValid => "receipt-valid",
            Invariant::RelayBlind => "relay-blind",
            Invariant::Liveness => "liveness",
            Invariant::Durability => "durability",
            Invariant::ForgeryAccepted => "forgery-accepted",
            Invariant::Visibility => "visibility",
            Invariant::Quiescence => "quiescence",
            Invariant::Livelock => "livelock",
            Invariant::Revoked => "revoked",
            Invariant::Scenario => "scenario",
            Invariant::Harness => "harness",
        })
    }
}

/// A broken invariant: which, when (virtual ms since start), and what exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The rule.
    pub invariant: Invariant,
    /// Virtual time of detection, ms since the start of the run.
    pub at_ms: u64,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} violated at t={} ms: {}",
            self.invariant, self.at_ms, self.detail
        )
    }
}

/// Everything the simulator knows about one submitted message.
#[derive(Clone, Debug)]
pub(crate) struct MessageTruth {
    pub(crate) sender: usize,
    pub(crate) recipient: usize,
    pub(crate) digest: Digest32,
    pub(crate) priority: Priority,
    pub(crate) submitted_at_ms: u64,
    pub(crate) expires_at: Timestamp,
    /// The sender's store was flushed after `submit`: the officer heard "accepted".
    pub(crate) accepted: bool,
    /// The recipient's officer was shown `Received`.
    pub(crate) received: bool,
    /// When the sender's officer was first shown `Delivered`.
    pub(crate) delivered_at_ms: Option<u64>,
    pub(crate) expired: bool,
    pub(crate) rejected: Option<String>,
    /// Counted as finished (delivered, expired or rejected) for convergence.
    pub(crate) finished: bool,
    /// Deliver / Handoff frames its sender transmitted.
    pub(crate) transmissions: u32,
    /// Its sender or recipient was revoked: it may end refused, or never.
    pub(crate) excused: bool,
}

/// Key of a message: (sender, id).
pub(crate) type MessageKey = (NodeId, MessageId);

/// The ground truth of a run.
pub(crate) struct Truth {
    pub(crate) messages: BTreeMap<MessageKey, MessageTruth>,
    pub(crate) sent_by: Vec<Vec<MessageKey>>,
    pub(crate) shown_received: Vec<BTreeSet<MessageKey>>,
    pub(crate) released_delivery: Vec<BTreeSet<MessageKey>>,
    pub(crate) released_custody: Vec<BTreeSet<MessageKey>>,
    /// Accepted messages not yet delivered, expired or rejected.
    pub(crate) unfinished: usize,
    /// Members revoked so far (by index): their messages, either way, are excused.
    pub(crate) revoked: BTreeSet<usize>,
}

impl Truth {
    pub(crate) fn new(nodes: usize) -> Truth {
        Truth {
            messages: BTreeMap::new(),
            sent_by: vec![Vec::new(); nodes],
            shown_received: vec![BTreeSet::new(); nodes],
            released_delivery: vec![BTreeSet::new(); nodes],
            released_custody: vec![BTreeSet::new(); nodes],
            unfinished: 0,
            revoked: BTreeSet::new(),
        }
    }

    /// Member `member` was revoked: every message from or to it, accepted or still to come,
    /// no longer has to be delivered (invariant 8 holds for everyone else).
    pub(crate) fn excuse_member(&mut self, member: usize) {
        self.revoked.insert(member);
        let keys: Vec<MessageKey> = self
            .messages
            .iter()
            .filter(|(_, truth)| truth.sender == member || truth.recipient == member)
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            self.excuse_if_revoked(&key);
        }
    }

    /// Excuses `key` if its sender or recipient is revoked (called again at acceptance).
    pub(crate) fn excuse_if_revoked(&mut self, key: &MessageKey) {
        let Some(truth) = self.messages.get_mut(key) else {
            return;
        };
        if !self.revoked.contains(&truth.sender) && !self.revoked.contains(&truth.recipient) {
            return;
        }
        truth.excused = true;
        self.finish(key);
    }

    /// Marks a message finished; returns whether it was the first time.
    pub(crate) fn finish(&mut self, key: &MessageKey) -> bool {
        match self.messages.get_mut(key) {
            Some(truth) if truth.accepted && !truth.finished => {
                truth.finished = true;
                self.unfinished = self.unfinished.saturating_sub(1);
                true
            }
            _ => false,
        }
    }

    /// Invariant 6 over the store of `node` right after it crashed (only flushed data is left).
    pub(crate) fn check_durable(
        &self,
        node: usize,
        node_id: NodeId,
        store: &MemoryStore,
    ) -> Result<(), (Invariant, String)> {
        let durability = |detail: String| (Invariant::Durability, detail);
        for key in &self.sent_by[node] {
            let Some(truth) = self.messages.get(key) else {
                continue;
            };
            if !truth.accepted {
                continue;
            }
            let entry = store
                .get_outbox(&key.1)
                .map_err(|error| durability(error.to_string()))?
                .ok_or_else(|| {
                    durability(format!(
                        "node {node} lost accepted message {} from its outbox in a crash",
                        key.1
                    ))
                })?;
            if entry.digest != truth.digest {
                return Err(durability(format!(
                    "node {node}: outbox entry {} changed its envelope across a crash",
                    key.1
                )));
            }
            if truth.delivered_at_ms.is_some()
                && !matches!(entry.state, OutboxState::Delivered { .. })
            {
                return Err(durability(format!(
                    "node {node}: message {} was shown delivered, but after a crash it is {}",
                    key.1,
                    entry.state.name()
                )));
            }
        }
        let held: BTreeSet<&MessageKey> = self.shown_received[node]
            .iter()
            .chain(self.released_delivery[node].iter())
            .collect();
        for key in held {
            let entry = store
                .get_inbox(&key.0, &key.1)
                .map_err(|error| durability(error.to_string()))?;
            match entry {
                None => {
                    return Err(durability(format!(
                        "node {node} ({node_id}) released a delivery receipt or showed Received \
                         for message {} from {}, but lost it in a crash",
                        key.1, key.0
                    )))
                }
                Some(entry) => {
                    if let Some(truth) = self.messages.get(key) {
                        if entry.digest != truth.digest {
                            return Err(durability(format!(
                                "node {node}: inbox entry {} changed across a crash",
                                key.1
                            )));
                        }
                    }
                }
            }
        }
        for key in &self.released_custody[node] {
            let entry = store
                .get_relay(&key.0, &key.1)
                .map_err(|error| durability(error.to_string()))?;
            if entry.is_none() {
                return Err(durability(format!(
                    "relay {node} released a custody receipt for message {} from {}, but lost \
                     it in a crash",
                    key.1, key.0
                )));
            }
        }
        Ok(())
    }

    /// Invariants 1, 2 and visibility for one inbox entry found at `node`.
    pub(crate) fn check_inbox_entry(
        &self,
        node: usize,
        recipient_index: impl Fn(&MessageTruth) -> usize,
        entry: &InboxEntry,
        running: bool,
    ) -> Result<(), (Invariant, String)> {
        let key = (entry.sender, entry.message_id);
        let Some(truth) = self.messages.get(&key) else {
            return Err((
                Invariant::Authentic,
                format!(
                    "node {node} holds message {} from {} that no sender submitted",
                    entry.message_id, entry.sender
                ),
            ));
        };
        if recipient_index(truth) != node {
            return Err((
                Invariant::Authentic,
                format!(
                    "node {node} holds message {} addressed to node {}",
                    entry.message_id, truth.recipient
                ),
            ));
        }
        if entry.digest != truth.digest {
            return Err((
                Invariant::Authentic,
                format!(
                    "node {node} holds message {} with a digest its sender never produced",
                    entry.message_id
                ),
            ));
        }
        if !truth.accepted {
            return Err((
                Invariant::Authentic,
                format!(
                    "node {node} holds message {} that its sender never accepted",
                    entry.message_id
                ),
            ));
        }
        // A node that is down cannot show anything; it announces unacknowledged messages again
        // when it restarts, and from then on this holds.
        if running && !self.shown_received[node].contains(&key) {
            return Err((
                Invariant::Visibility,
                format!(
                    "node {node} holds message {} but its officer was never shown it",
                    entry.message_id
                ),
            ));
        }
        Ok(())
    }
}

/// Invariant 4 over one relay's store.
pub(crate) fn check_relay_blind(node: usize, store: &MemoryStore) -> Result<(), String> {
    let inbox = store.inbox_entries().map_err(|error| error.to_string())?;
    if !inbox.is_empty() {
        return Err(format!(
            "relay {node} has {} inbox entries (plaintext)",
            inbox.len()
        ));
    }
    let outbox = store.outbox_entries().map_err(|error| error.to_string())?;
    if !outbox.is_empty() {
        return Err(format!("relay {node} has {} outbox entries", outbox.len()));
    }
    for entry in store.relay_entries().map_err(|error| error.to_string())? {
        let Some(envelope) = &entry.envelope else {
            continue;
        };
        for probe in PLAINTEXT_PROBES {
            if contains(envelope, probe.as_bytes()) {
                return Err(format!(
                    "relay {node} stores plaintext `{probe}` in message {}",
                    entry.message_id
                ));
            }
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_finds_substrings_only() {
        assert!(contains(b"xxQFSIM-CASE-1", MARKER_PREFIX.as_bytes()));
        assert!(!contains(b"QFSIM-CAS", MARKER_PREFIX.as_bytes()));
        assert!(!contains(b"", b"a"));
    }
}
