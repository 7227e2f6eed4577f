//! The quickfreeze wire format and the sans-IO delivery core.
//!
//! Nothing here performs IO, reads a clock or draws OS randomness: callers pass `now` and an RNG.
//! That is what lets the deterministic simulator drive exactly the code the daemon runs.

#![deny(unreachable_pub)]

pub mod forms;
pub mod ids;
pub mod payload;

pub use ids::{MessageId, Priority};
