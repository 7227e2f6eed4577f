//! The tunables of the core: every limit, delay and lifetime it works with has a name and a
//! default here, plus the deliberate bugs a test may switch on to prove a checker can fail.
//!
//! The shell builds a [`CoreConfig`] once and hands it to `Core::new`; the rooms only read it.

use crate::envelope::AcceptPolicy;
use crate::ids::Priority;

/// Tunables of the core. Every limit is named here; see the field docs for defaults.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// First retry delay (default 1 s); doubles per consecutive failure to a peer.
    pub retry_base_ms: u64,
    /// Longest retry delay (default 60 s): minutes, never days, so a returning peer is found fast.
    pub retry_cap_ms: u64,
    /// Failed direct attempts before handing a message to the recipient's relays (default 2).
    pub relay_after_failures: u32,
    /// While a relay has custody, how often the sender still tries the recipient directly.
    pub custody_recheck_ms: u64,
    /// Requests in flight to one peer (default 8).
    pub max_in_flight_per_peer: usize,
    /// Undelivered messages this node may hold in its outbox (default 10,000).
    pub max_outbox_pending: usize,
    /// Messages a relay holds for one sender (default 2,000).
    pub relay_max_messages_per_sender: usize,
    /// Bytes a relay holds for one sender (default 256 MiB).
    pub relay_max_bytes_per_sender: u64,
    /// Bytes a relay holds in total (default 2 GiB).
    pub relay_max_bytes_total: u64,
    /// Lifetime of new messages by priority: emergency (default 1 day).
    pub lifetime_emergency_ms: u64,
    /// Urgent (default 3 days).
    pub lifetime_urgent_ms: u64,
    /// Routine (default 14 days).
    pub lifetime_routine_ms: u64,
    /// How long after a message's expiry a relay keeps carrying its delivery receipt back.
    pub receipt_grace_ms: u64,
    /// Clock skew and lifetime limits for accepting envelopes.
    pub accept: AcceptPolicy,
    /// Events kept for the shell before the oldest are dropped (default 100,000).
    pub max_queued_events: usize,
    /// After a restart, unacknowledged messages received this long before are shown again
    /// (default 24 h; older ones are in the inbox and overdue anyway).
    pub reannounce_window_ms: u64,
    /// How often the core tells each connected peer its roster and revocation serials, so a
    /// newer roster or notice spreads on an idle network (default 15 s; also told at connect).
    pub serial_gossip_interval_ms: u64,
    /// Deliberate bugs, for proving that the simulator's invariant checkers can fail. All off by
    /// default; nothing but tests sets them.
    pub injected_bugs: InjectedBugs,
}

/// Deliberate bugs a test can switch on to show that a checker catches them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InjectedBugs {
    /// Treat every delivered envelope as new (no de-duplication on message id).
    pub skip_dedup: bool,
    /// Sign and return the receipt, but write the inbox entry only at the next input, so a crash
    /// in between loses a message whose receipt the sender holds.
    pub receipt_before_store: bool,
    /// Accept envelopes whose signature does not verify.
    pub skip_signature_check: bool,
    /// Store and pass on revocation notices but keep believing the members they revoke.
    pub ignore_revocations: bool,
    /// Never tell peers this node's serials (a newer roster then spreads only with traffic).
    pub no_serial_gossip: bool,
    /// On a key rotation, forget the rotated-out keys at once instead of at the end of their
    /// grace (envelopes sealed to the old key and still in flight can then never be opened).
    pub forget_rotated_keys_at_once: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        const HOUR_MS: u64 = 3600 * 1000;
        CoreConfig {
            retry_base_ms: 1000,
            retry_cap_ms: 60 * 1000,
            relay_after_failures: 2,
            custody_recheck_ms: 60 * 1000,
            max_in_flight_per_peer: 8,
            max_outbox_pending: 10_000,
            relay_max_messages_per_sender: 2_000,
            relay_max_bytes_per_sender: 256 * 1024 * 1024,
            relay_max_bytes_total: 2 * 1024 * 1024 * 1024,
            lifetime_emergency_ms: 24 * HOUR_MS,
            lifetime_urgent_ms: 3 * 24 * HOUR_MS,
            lifetime_routine_ms: 14 * 24 * HOUR_MS,
            receipt_grace_ms: 7 * 24 * HOUR_MS,
            accept: AcceptPolicy::default(),
            max_queued_events: 100_000,
            reannounce_window_ms: 24 * HOUR_MS,
            serial_gossip_interval_ms: 15 * 1000,
            injected_bugs: InjectedBugs::default(),
        }
    }
}

impl CoreConfig {
    pub(super) fn lifetime_ms(&self, priority: Priority) -> u64 {
        match priority {
            Priority::Emergency => self.lifetime_emergency_ms,
            Priority::Urgent => self.lifetime_urgent_ms,
            Priority::Routine => self.lifetime_routine_ms,
        }
    }
}
