//! Identities, keys and the signed roster of a quickfreeze network.
//!
//! This crate is the bottom of the workspace: it has no IO beyond reading and writing key files,
//! no async runtime and no networking. `proto` builds envelopes and receipts on these types and
//! `node` loads them at start-up.
//!
//! - [`identity`]: node identities ([`Identity`], [`NodeId`]), authority keys, key files, fingerprints.
//! - [`roster`]: the roster a person writes, its signed form, and the rules for accepting one.
//! - [`revocation`]: authority-signed notices that revoke a member or key at once.
//! - [`types`]: timestamps, country codes, signatures and keys with compact and readable encodings.
//! - [`codec`]: the single module that decodes bytes from outside (bincode 1.3 with limits).

#![deny(unreachable_pub)]

pub mod codec;
pub mod identity;
pub mod revocation;
pub mod roster;
pub mod types;

#[cfg(test)]
mod revocation_tests;
#[cfg(test)]
mod roster_tests;
#[cfg(test)]
mod rotation_tests;

pub use identity::{
    AuthorityKey, AuthorityPublicKey, DecryptionKey, Fingerprint, HeldKey, Identity, KeyError,
    NodeId,
};
pub use revocation::{Revocation, RevocationError, SignedRevocation};
pub use roster::{Member, PreviousKeys, Role, Roster, RosterError, SignedRoster};
pub use types::{CountryCode, Digest32, EncryptionKey, Signature, Timestamp};
