//! Network simulation for quickfreeze.
//!
//! [`sim`] is the deterministic mode (`simnet sim`): every member node and relay is a real
//! `quickfreeze_proto::core::Core` over an in-memory store, driven on a virtual network in
//! virtual time with injected faults and continuous invariant checks. One `u64` seed derives the
//! whole run; equal seeds give equal digests; a failing run prints `seed=…` and the command that
//! replays it. [`live`] is the live mode (`simnet live`): real node processes on loopback under
//! real faults, checked from their own stores (see its module docs).
//!
//! ```text
//! simnet sim --nodes 200 --relays 8 --messages 1000 --seed 7 --faults harsh --json report.json
//! ```
//!
//! # Faults (safety phase only; see [`sim::FaultProfile`] for the numbers per level)
//!
//! - **Latency and reordering**: each link has a base latency fixed by the seed; per-packet
//!   jitter larger than latency differences reorders requests and responses.
//! - **Loss**: a request or a response disappears; the sender's transport reports a failure
//!   after the request timeout (10 s), never instantly.
//! - **Duplication**: the network delivers a request twice; the copy is processed and its
//!   response discarded, as the sender's request id is already resolved.
//! - **Partitions**: one node isolated, or a random side cut from the rest, symmetric or in one
//!   direction only; they start and end at random.
//! - **Crashes**: a node dies with its store kept (`MemoryStore::crash` drops what was not
//!   flushed) and restarts later with the same identity and the roster from its store. Variants:
//!   mid-request after the core's writes but before the flush (the response never leaves), and
//!   right after a submission before the flush (the officer never heard "accepted").
//! - **Relay outages**: a relay is down for minutes.
//! - **Clock skew**: every node's clock is off by a fixed amount.
//! - **Dial limits**: a member without addresses can only be reached over a connection it
//!   opened (kept to its own relays; others for `connection_idle_ms` after it used them).
//! - **A hostile member** sends garbage, oversized batches, tampered, re-signed, re-addressed,
//!   forged, expired and future envelopes, forged and tampered receipts, a roster-serial bait
//!   answered with a forged roster, and replays of genuine envelopes and receipts.
//!
//! Then the **liveness phase**: heal every partition, restart every crashed node, stop the
//! hostile member, loss and duplication; run until every accepted message is finished (at most
//! ten virtual minutes), then five quiet minutes.
//!
//! # Invariants ([`sim::Invariant`])
//!
//! Exactly once to the officer; nothing unauthenticated or altered in any inbox; every stored
//! delivery receipt verifies; relays store no plaintext and have no inbox; every accepted
//! message ends delivered (100 % with default lifetimes) or expired/rejected with its event;
//! nothing acknowledged (accepted, shown, or receipted to a peer) is lost in a crash; every
//! inbox entry was shown; no forgery is ever answered with a receipt; the network falls quiet.
//!
//! # Members nobody can dial
//!
//! A member without addresses is reachable only over connections it opens. When such a member
//! sends to another one, the delivery receipt waits at the relay that took custody, which may
//! not be one of the sender's own relays. The sender therefore repeats its hand-off to that relay
//! every `custody_recheck_ms`, and the relay answers a repeated hand-off with the receipt once it
//! has it. This simulator draws every member's relays at random and models the dial limits
//! (`--relay-only-fraction 0.5` makes half the members address-less), so the path is exercised.

#![deny(unreachable_pub)]

pub mod fault_level;
pub mod live;
mod percentiles;
pub mod sim;
pub mod wan;

pub use sim::{run, FaultLevel, SimConfig, SimFailure, SimReport};
