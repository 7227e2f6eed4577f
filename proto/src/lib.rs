//! The quickfreeze wire format and the sans-IO delivery core.
//!
//! Nothing here performs IO, reads a clock or draws OS randomness: callers pass `now` and an RNG.
//! That is what lets the deterministic simulator drive exactly the code the daemon runs.
//!
//! - [`payload`] and [`forms`]: what an officer writes (the request kinds and their TOML forms).
//! - [`form_view`] and [`i18n`]: a payload laid out in labelled sections in the reader's
//!   language, from translation files a translator can edit.
//! - [`envelope`]: sealing and opening (X25519 + HKDF-SHA256 + ChaCha20-Poly1305, Ed25519 signed).
//! - [`receipt`]: signed custody and delivery receipts.
//! - [`frame`]: the batches that cross one libp2p request or response.
//! - [`core`]: the delivery state machine and its [`core::Store`] trait.

#![deny(unreachable_pub)]

pub mod core;
pub mod envelope;
pub mod form_view;
pub mod forms;
pub mod frame;
pub mod i18n;
pub mod ids;
pub mod payload;
pub mod receipt;

pub use ids::{MessageId, Priority};
