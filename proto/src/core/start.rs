//! Building a core over a store: storing the roster in use, reloading unfinished outbox and relay
//! work (so a restart resumes where the last flush left it), and announcing messages that were
//! stored but not yet shown to an officer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quickfreeze_keys::roster::Roster;
use quickfreeze_keys::{Identity, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::work::Job;
use super::{Core, CoreConfig, Event, RelayState, Store, StoreError};
use crate::MessageId;

/// What [`Core::announce_unacknowledged_summary`] announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reannounced {
    /// Messages announced again.
    pub count: usize,
    /// When the oldest of them was received, and its id.
    pub oldest: Option<(Timestamp, MessageId)>,
}

impl<S: Store> Core<S> {
    /// Builds a core over `store`, reloading any pending work it holds.
    ///
    /// `signed_roster` must be the bytes `roster` was verified from; the caller verifies it
    /// (against the pinned set, or as an update of the stored one) before calling.
    pub fn new(
        identity: Identity,
        roster: Roster,
        signed_roster: Vec<u8>,
        config: CoreConfig,
        store: S,
        rng_seed: [u8; 32],
    ) -> Result<Core<S>, StoreError> {
        let me = identity.node_id();
        let mut core = Core {
            identity,
            me,
            roster,
            signed_roster,
            config,
            store,
            rng: ChaCha20Rng::from_seed(rng_seed),
            outbox: BTreeMap::new(),
            relay: BTreeMap::new(),
            relay_bytes_by_sender: BTreeMap::new(),
            relay_bytes_total: 0,
            due: BTreeSet::new(),
            due_at: BTreeMap::new(),
            blocked: BTreeMap::new(),
            busy: BTreeSet::new(),
            peers: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_request_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            deferred_inbox: Vec::new(),
            revocations: Vec::new(),
            connected: BTreeSet::new(),
            gossip_at: Timestamp(0),
            keys_changed: false,
            peer_roster_ahead: false,
        };
        core.load_revocations()?;
        core.follow_roster_keys();
        if core.store.get_roster()?.as_deref() != Some(core.signed_roster.as_slice()) {
            let bytes = core.signed_roster.clone();
            core.store.put_roster(&bytes)?;
        }
        for entry in core.store.unfinished_outbox_entries()? {
            if !entry.state.is_final() {
                core.schedule(Job::Outbox(entry.message_id), Timestamp(0), entry.priority);
                core.outbox.insert(entry.message_id, entry);
            }
        }
        for entry in core.store.relay_entries()? {
            let key = (entry.sender, entry.message_id);
            let job = match entry.state {
                RelayState::Holding => Job::RelayDeliver(key.0, key.1),
                RelayState::ReceiptPending { .. } => Job::RelayReceipt(key.0, key.1),
                RelayState::Done | RelayState::Failed { .. } => {
                    // Finished: the store keeps it to answer duplicates; memory holds only work.
                    continue;
                }
            };
            core.account_relay(&entry, true);
            core.schedule(job, Timestamp(0), entry.priority);
            core.relay.insert(key, entry);
        }
        Ok(core)
    }

    /// Shows the officer again (as [`Event::Received`] with `reannounced`) every message that
    /// arrived within `CoreConfig::reannounce_window_ms` before `now` and that no officer has
    /// acknowledged. A message is stored and flushed before its receipt leaves, but its event is
    /// shown after that, so a crash in between would otherwise leave it in the inbox unseen.
    /// Shells call this once after [`Core::new`]; it returns how many it announced.
    pub fn announce_unacknowledged(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        Ok(self.announce_unacknowledged_summary(now)?.count)
    }

    /// As [`Core::announce_unacknowledged`], and says when the oldest of them arrived, so that a
    /// shell can write one summary line instead of one line per message.
    pub fn announce_unacknowledged_summary(
        &mut self,
        now: Timestamp,
    ) -> Result<Reannounced, StoreError> {
        let since = Timestamp(now.0.saturating_sub(self.config.reannounce_window_ms));
        let mut announced = Reannounced::default();
        for entry in self.store.unacknowledged_inbox_entries()? {
            if entry.acknowledged_at.is_some()
                || entry.received_at < since
                || !super::outbox::awaits_acknowledgement(&entry.payload)
            {
                continue;
            }
            announced.count += 1;
            if announced
                .oldest
                .is_none_or(|(at, _)| entry.received_at < at)
            {
                announced.oldest = Some((entry.received_at, entry.message_id));
            }
            self.push_event(Event::Received {
                sender: entry.sender,
                message_id: entry.message_id,
                priority: entry.priority,
                kind: entry.payload.kind(),
                via_relay: entry.via_relay,
                digest: entry.digest,
                handling: entry.payload.handling().cloned(),
                reannounced: true,
            });
        }
        Ok(announced)
    }
}
