//! What the delivery core keeps, and the synchronous [`Store`] trait that keeps it.
//!
//! The core writes through this trait as it handles each input; it never flushes. The shell
//! around it (daemon or simulator) calls [`Store::flush`] once per turn of its loop, *before*
//! it releases any response, console acknowledgement or event produced in that turn. That is the
//! whole "durable before acknowledged" rule, and [`MemoryStore`] models it exactly: writes since
//! the last flush are lost by [`MemoryStore::crash`], as they would be by `kill -9`.

use std::collections::BTreeMap;

use quickfreeze_keys::{Digest32, NodeId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Priority};
use crate::payload::{Payload, PayloadKind, StatusUpdate};
use crate::receipt::Receipt;

/// A storage failure, as text (the implementations' errors differ).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Where an outgoing message is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxState {
    /// Stored, not yet transmitted.
    Accepted,
    /// Transmitted at least once; no receipt yet.
    Sent,
    /// A relay holds it and will deliver it.
    Custody {
        /// The relay.
        relay: NodeId,
        /// When the relay stored it.
        at: Timestamp,
    },
    /// The recipient's signed delivery receipt was verified.
    Delivered {
        /// When the recipient stored it.
        at: Timestamp,
    },
    /// Its expiry passed without a delivery receipt.
    Expired {
        /// When the core noticed.
        at: Timestamp,
    },
    /// The recipient refused it for good.
    Rejected {
        /// When.
        at: Timestamp,
        /// The recipient's reason.
        reason: String,
    },
}

impl OutboxState {
    /// Delivered, expired or rejected: no more work.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OutboxState::Delivered { .. }
                | OutboxState::Expired { .. }
                | OutboxState::Rejected { .. }
        )
    }

    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            OutboxState::Accepted => "accepted",
            OutboxState::Sent => "sent",
            OutboxState::Custody { .. } => "custody",
            OutboxState::Delivered { .. } => "delivered",
            OutboxState::Expired { .. } => "expired",
            OutboxState::Rejected { .. } => "rejected",
        }
    }
}

/// A status update received about one of our messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// When it arrived.
    pub received_at: Timestamp,
    /// The message that carried it.
    pub message_id: MessageId,
    /// The update.
    pub update: StatusUpdate,
}

/// A message this node sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Its id.
    pub message_id: MessageId,
    /// Who it is for.
    pub recipient: NodeId,
    /// Priority.
    pub priority: Priority,
    /// Payload kind.
    pub kind: PayloadKind,
    /// One-line summary for tables.
    pub summary: String,
    /// What the officer sent, in clear (the envelope is sealed to the recipient and cannot be
    /// opened by its sender).
    pub payload: Payload,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The sealed envelope, exactly as transmitted.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// SHA-256 of `envelope`.
    pub digest: Digest32,
    /// Where it is.
    pub state: OutboxState,
    /// Transmissions so far.
    pub attempts: u32,
    /// Direct attempts that failed (decides the hand-off to relays).
    pub direct_failures: u32,
    /// Hand-offs to relays attempted.
    pub relay_attempts: u32,
    /// The custody receipt, if a relay holds it.
    pub custody_receipt: Option<Receipt>,
    /// The verified delivery receipt.
    pub delivery_receipt: Option<Receipt>,
    /// Status updates the recipient sent about it.
    pub status_history: Vec<StatusRecord>,
    /// The last failure, for the operator.
    pub last_error: Option<String>,
}

/// A message this node received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Who sent it.
    pub sender: NodeId,
    /// Its id.
    pub message_id: MessageId,
    /// Priority.
    pub priority: Priority,
    /// When this node stored it.
    pub received_at: Timestamp,
    /// When the sender created it.
    pub created_at: Timestamp,
    /// The relay that brought it, if any.
    pub via_relay: Option<NodeId>,
    /// The envelope as received (signed ciphertext: the sender's proof of origin).
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// SHA-256 of `envelope`.
    pub digest: Digest32,
    /// The decrypted payload.
    pub payload: Payload,
    /// The delivery receipt this node signed (resent for duplicates).
    pub receipt: Receipt,
    /// When an officer acknowledged it.
    pub acknowledged_at: Option<Timestamp>,
    /// Status replies this node sent about it.
    pub replies: Vec<MessageId>,
}

/// Where a relayed message is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayState {
    /// Held; delivery to the recipient pending.
    Holding,
    /// Delivered; carrying the recipient's receipt back to the sender.
    ReceiptPending {
        /// The recipient's delivery receipt.
        receipt: Receipt,
    },
    /// Done: the sender has the receipt. Kept until expiry to answer duplicates.
    Done,
    /// Expired undelivered, or refused by the recipient.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A message a relay holds for one of its members. Ciphertext only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEntry {
    /// Original sender.
    pub sender: NodeId,
    /// Message id.
    pub message_id: MessageId,
    /// The member it is for.
    pub recipient: NodeId,
    /// Priority.
    pub priority: Priority,
    /// When the relay stored it.
    pub received_at: Timestamp,
    /// The envelope's expiry.
    pub expires_at: Timestamp,
    /// The envelope bytes; dropped once delivered.
    #[serde(with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
    /// SHA-256 of the envelope.
    pub digest: Digest32,
    /// The custody receipt this relay signed.
    pub custody_receipt: Receipt,
    /// Where it is.
    pub state: RelayState,
}

impl RelayEntry {
    /// Bytes this entry holds against the relay's storage limits.
    pub fn held_bytes(&self) -> u64 {
        self.envelope.as_ref().map_or(0, |bytes| bytes.len() as u64)
    }
}

/// Durable state of one node. Implementations must make every write visible to later reads at
/// once, and durable at the next [`Store::flush`].
pub trait Store {
    /// Inserts or replaces an outbox entry.
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// One outbox entry.
    fn get_outbox(&self, message_id: &MessageId) -> Result<Option<OutboxEntry>, StoreError>;
    /// All outbox entries.
    fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Inserts or replaces an inbox entry.
    fn put_inbox(&mut self, entry: &InboxEntry) -> Result<(), StoreError>;
    /// One inbox entry.
    fn get_inbox(
        &self,
        sender: &NodeId,
        message_id: &MessageId,
    ) -> Result<Option<InboxEntry>, StoreError>;
    /// All inbox entries.
    fn inbox_entries(&self) -> Result<Vec<InboxEntry>, StoreError>;

    /// Outbox entries not in a final state (what a starting core must resume). The default
    /// filters [`Store::outbox_entries`]; a store with an index of open items answers without
    /// reading its history.
    fn unfinished_outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .outbox_entries()?
            .into_iter()
            .filter(|entry| !entry.state.is_final())
            .collect())
    }

    /// Inbox entries that await an officer's acknowledgement and have none. The default
    /// filters [`Store::inbox_entries`], like [`Store::unfinished_outbox_entries`].
    fn unacknowledged_inbox_entries(&self) -> Result<Vec<InboxEntry>, StoreError> {
        Ok(self
            .inbox_entries()?
            .into_iter()
            .filter(|entry| {
                entry.acknowledged_at.is_none()
                    && super::outbox::awaits_acknowledgement(&entry.payload)
            })
            .collect())
    }
    /// Inserts or replaces a relay entry.
    fn put_relay(&mut self, entry: &RelayEntry) -> Result<(), StoreError>;
    /// One relay entry.
    fn get_relay(
        &self,
        sender: &NodeId,
        message_id: &MessageId,
    ) -> Result<Option<RelayEntry>, StoreError>;
    /// Removes a relay entry.
    fn remove_relay(&mut self, sender: &NodeId, message_id: &MessageId) -> Result<(), StoreError>;
    /// All relay entries.
    fn relay_entries(&self) -> Result<Vec<RelayEntry>, StoreError>;
    /// Replaces the stored signed roster.
    fn put_roster(&mut self, signed: &[u8]) -> Result<(), StoreError>;
    /// The stored signed roster.
    fn get_roster(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a signed revocation notice under `id` (the SHA-256 of its body); storing the same
    /// id again replaces it.
    fn put_revocation(&mut self, id: &[u8; 32], signed: &[u8]) -> Result<(), StoreError>;
    /// Every stored signed revocation notice.
    fn revocations(&self) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Makes every write so far durable.
    fn flush(&mut self) -> Result<(), StoreError>;
}

/// One map with a durable image and a journal of writes since the last flush.
#[derive(Clone, Debug)]
struct Tree<K: Ord + Clone, V: Clone> {
    live: BTreeMap<K, V>,
    durable: BTreeMap<K, V>,
    journal: Vec<(K, Option<V>)>,
}

impl<K: Ord + Clone, V: Clone> Default for Tree<K, V> {
    fn default() -> Self {
        Tree {
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
            journal: Vec::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    fn put(&mut self, key: K, value: V) {
        self.live.insert(key.clone(), value.clone());
        self.journal.push((key, Some(value)));
    }
    fn remove(&mut self, key: &K) {
        self.live.remove(key);
        self.journal.push((key.clone(), None));
    }
    fn flush(&mut self) {
        for (key, value) in self.journal.drain(..) {
            match value {
                Some(value) => {
                    self.durable.insert(key, value);
                }
                None => {
                    self.durable.remove(&key);
                }
            }
        }
    }
    fn crash(&mut self) {
        self.journal.clear();
        self.live = self.durable.clone();
    }
}

/// An in-memory store for tests and the deterministic simulator. Models durability: only what
/// was flushed survives [`MemoryStore::crash`].
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    outbox: Tree<MessageId, OutboxEntry>,
    inbox: Tree<(NodeId, MessageId), InboxEntry>,
    relay: Tree<(NodeId, MessageId), RelayEntry>,
    roster: Tree<(), Vec<u8>>,
    revocations: Tree<[u8; 32], Vec<u8>>,
    /// Number of flushes so far (for tests and statistics).
    pub flushes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Loses every write since the last flush, as a `kill -9` would.
    pub fn crash(&mut self) {
        self.outbox.crash();
        self.inbox.crash();
        self.relay.crash();
        self.roster.crash();
        self.revocations.crash();
    }

    /// Writes not yet flushed.
    pub fn unflushed_writes(&self) -> usize {
        self.outbox.journal.len()
            + self.inbox.journal.len()
            + self.relay.journal.len()
            + self.roster.journal.len()
            + self.revocations.journal.len()
    }
}

impl Store for MemoryStore {
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox.put(entry.message_id, entry.clone());
        Ok(())
    }
    fn get_outbox(&self, message_id: &MessageId) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self.outbox.live.get(message_id).cloned())
    }
    fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.outbox.live.values().cloned().collect())
    }
    fn put_inbox(&mut self, entry: &InboxEntry) -> Result<(), StoreError> {
        self.inbox
            .put((entry.sender, entry.message_id), entry.clone());
        Ok(())
    }
    fn get_inbox(
        &self,
        sender: &NodeId,
        message_id: &MessageId,
    ) -> Result<Option<InboxEntry>, StoreError> {
        Ok(self.inbox.live.get(&(*sender, *message_id)).cloned())
    }
    fn inbox_entries(&self) -> Result<Vec<InboxEntry>, StoreError> {
        Ok(self.inbox.live.values().cloned().collect())
    }
    fn put_relay(&mut self, entry: &RelayEntry) -> Result<(), StoreError> {
        self.relay
            .put((entry.sender, entry.message_id), entry.clone());
        Ok(())
    }
    fn get_relay(
        &self,
        sender: &NodeId,
        message_id: &MessageId,
    ) -> Result<Option<RelayEntry>, StoreError> {
        Ok(self.relay.live.get(&(*sender, *message_id)).cloned())
    }
    fn remove_relay(&mut self, sender: &NodeId, message_id: &MessageId) -> Result<(), StoreError> {
        self.relay.remove(&(*sender, *message_id));
        Ok(())
    }
    fn relay_entries(&self) -> Result<Vec<RelayEntry>, StoreError> {
        Ok(self.relay.live.values().cloned().collect())
    }
    fn put_roster(&mut self, signed: &[u8]) -> Result<(), StoreError> {
        self.roster.put((), signed.to_vec());
        Ok(())
    }
    fn get_roster(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.roster.live.get(&()).cloned())
    }
    fn put_revocation(&mut self, id: &[u8; 32], signed: &[u8]) -> Result<(), StoreError> {
        self.revocations.put(*id, signed.to_vec());
        Ok(())
    }
    fn revocations(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.revocations.live.values().cloned().collect())
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.outbox.flush();
        self.inbox.flush();
        self.relay.flush();
        self.roster.flush();
        self.revocations.flush();
        self.flushes += 1;
        Ok(())
    }
}
