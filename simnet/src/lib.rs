//! Network simulation for quickfreeze.
//!
//! [`sim`] is the deterministic mode: every member node and relay is a real
//! `quickfreeze_proto::core::Core` over an in-memory store, driven on a virtual network in virtual
//! time, with faults (loss, duplication, reordering, partitions, crashes that keep the flushed
//! store, relay outages, clock skew, a hostile member) and continuous invariant checks. One
//! `u64` seed reproduces a run exactly; a failing run prints `seed=…` and the command to replay
//! it. The `simnet` binary exposes it as `simnet sim`; a live mode with real daemons will sit
//! beside it as another subcommand.

#![deny(unreachable_pub)]

pub mod sim;

pub use sim::{run, FaultLevel, SimConfig, SimFailure, SimReport};
