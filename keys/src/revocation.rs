//! Revocation notices: the emergency brake for a compromised or departed member.
//!
//! A [`Revocation`] names the network, a serial chosen by the roster authorities, when it was
//! issued, the revoked members (by [`NodeId`]) and/or public keys (a member's Ed25519 node key or
//! X25519 encryption key), and a reason a person can read. Like a roster it travels as canonical
//! bincode bytes plus Ed25519 signatures of roster authorities, over
//! `REVOCATION_SIGNING_CONTEXT || body`; authorities sign in turn (`quickfreeze roster revoke
//! --in`). A node believes a notice only when *k* of the authorities of the roster it holds signed
//! it and the network name matches ([`SignedRevocation::verify`]); it then refuses the revoked
//! member from that moment, whatever the roster's validity window says. A notice does not
//! expire: a later roster that still lists the member does not lift it (a new member entry with
//! new keys does).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::identity::{AuthorityKey, AuthorityPublicKey, Fingerprint, NodeId};
use crate::roster::{Member, Roster, RosterSignature, MAX_AUTHORITIES, MAX_TEXT_BYTES};
use crate::types::{Signature, Timestamp};

/// Version byte of the signed revocation format.
pub const SIGNED_REVOCATION_VERSION: u8 = 1;
/// Domain separation for revocation signatures (distinct from rosters, so a roster signature can
/// never be replayed as a revocation or the other way round).
pub const REVOCATION_SIGNING_CONTEXT: &[u8] = b"quickfreeze/revocation/v1\0";
/// Largest signed revocation accepted from a file or a peer.
pub const MAX_SIGNED_REVOCATION_BYTES: u64 = 16 * 1024;
/// Most members and keys one notice may revoke (together).
pub const MAX_REVOKED_PER_NOTICE: usize = 64;

/// What a notice revokes, as the authorities write it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The network this notice is for (must equal the roster's).
    pub network: String,
    /// Chosen by the authorities; nodes tell each other the highest serial they hold.
    pub serial: u64,
    /// When the authorities issued it.
    pub issued_at: Timestamp,
    /// Revoked members.
    pub nodes: Vec<NodeId>,
    /// Revoked public keys (Ed25519 node keys or X25519 encryption keys).
    pub keys: Vec<[u8; 32]>,
    /// Why, for the operators who see it.
    pub reason: String,
}

/// Why a notice was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RevocationError {
    /// Not decodable within the limits.
    #[error("revocation notice is malformed: {0}")]
    Malformed(#[from] CodecError),
    /// Another format version.
    #[error("revocation notice format version {0} is not supported (this build reads version {SIGNED_REVOCATION_VERSION}); upgrade quickfreeze")]
    UnsupportedVersion(u8),
    /// For another network.
    #[error("revocation notice is for network `{offered}`, this node is in `{held}`")]
    WrongNetwork {
        /// The node's network.
        held: String,
        /// The notice's network.
        offered: String,
    },
    /// Content rules broken.
    #[error("revocation notice is invalid: {0}")]
    Invalid(String),
    /// A signature does not verify.
    #[error("revocation signature by authority {0} does not verify")]
    BadSignature(Fingerprint),
    /// The same authority twice.
    #[error("authority {0} signed the revocation twice")]
    DuplicateSignature(Fingerprint),
    /// The signer is not an authority of the roster.
    #[error("key {0} is not a roster authority; sign with one of the authority keys of the roster in force")]
    NotAnAuthority(Fingerprint),
    /// Fewer than k valid authority signatures.
    #[error("revocation notice has {valid} valid authority signature(s), the roster requires {required}; have more authorities sign it with `quickfreeze roster revoke --in NOTICE --key AUTHORITY.key --roster ROSTER --out NOTICE`")]
    NotEnoughSignatures {
        /// Valid signatures by authorities of the roster.
        valid: usize,
        /// k.
        required: usize,
    },
}

impl Revocation {
    /// Checks the content rules.
    pub fn validate(&self) -> Result<(), RevocationError> {
        let invalid = |text: &str| Err(RevocationError::Invalid(text.to_string()));
        if self.network.is_empty() || self.network.len() > MAX_TEXT_BYTES {
            return invalid("network name must be 1 to 512 bytes");
        }
        if self.serial == 0 {
            return invalid("serial must be at least 1");
        }
        if self.nodes.is_empty() && self.keys.is_empty() {
            return invalid("it revokes nothing: name at least one member or key");
        }
        if self.nodes.len() + self.keys.len() > MAX_REVOKED_PER_NOTICE {
            return Err(RevocationError::Invalid(format!(
                "it revokes {} members and keys, the limit is {MAX_REVOKED_PER_NOTICE}; split it",
                self.nodes.len() + self.keys.len()
            )));
        }
        if self.reason.trim().is_empty() || self.reason.len() > MAX_TEXT_BYTES {
            return invalid("the reason must be 1 to 512 bytes");
        }
        Ok(())
    }

    /// Whether this notice revokes `member` (its node id, node key or encryption key).
    pub fn revokes(&self, member: &Member) -> bool {
        self.nodes.contains(&member.node_id)
            || self.keys.contains(&member.node_id.0)
            || self.keys.contains(&member.encryption_key.0)
    }
}

/// A notice as it travels: canonical body plus authority signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRevocation {
    /// [`SIGNED_REVOCATION_VERSION`].
    pub version: u8,
    /// Canonical bytes of the [`Revocation`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Signatures, sorted by authority key so the bytes are canonical.
    pub signatures: Vec<RosterSignature>,
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut message = REVOCATION_SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(body);
    message
}

impl SignedRevocation {
    /// Wraps a notice, unsigned, after checking its content rules.
    pub fn new(revocation: &Revocation) -> Result<SignedRevocation, RevocationError> {
        revocation.validate()?;
        Ok(SignedRevocation {
            version: SIGNED_REVOCATION_VERSION,
            body: codec::encode(revocation, MAX_SIGNED_REVOCATION_BYTES)?,
            signatures: Vec::new(),
        })
    }

    /// Decodes a notice from a file or a peer (size-limited). Nothing is trusted yet.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedRevocation, RevocationError> {
        if let Some(&version) = bytes.first() {
            if version != SIGNED_REVOCATION_VERSION {
                return Err(RevocationError::UnsupportedVersion(version));
            }
        }
        Ok(codec::decode(bytes, MAX_SIGNED_REVOCATION_BYTES)?)
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RevocationError> {
        Ok(codec::encode(self, MAX_SIGNED_REVOCATION_BYTES)?)
    }

    /// The notice inside, content-checked but **not** signature-checked.
    pub fn revocation_unverified(&self) -> Result<Revocation, RevocationError> {
        if self.version != SIGNED_REVOCATION_VERSION {
            return Err(RevocationError::UnsupportedVersion(self.version));
        }
        let revocation: Revocation = codec::decode(&self.body, MAX_SIGNED_REVOCATION_BYTES)?;
        revocation.validate()?;
        Ok(revocation)
    }

    /// Adds (or replaces) `key`'s signature; the key must be an authority of `roster`.
    pub fn sign(&mut self, key: &AuthorityKey, roster: &Roster) -> Result<(), RevocationError> {
        self.revocation_unverified()?;
        let public = key.public();
        if !roster.authorities.contains(&public) {
            return Err(RevocationError::NotAnAuthority(public.fingerprint()));
        }
        let signature = Signature(key.sign(&signing_message(&self.body)));
        self.signatures.retain(|entry| entry.authority != public);
        self.signatures.push(RosterSignature {
            authority: public,
            signature,
        });
        self.signatures.sort_by_key(|entry| entry.authority);
        Ok(())
    }

    /// Verifies the notice against the roster the node holds: decodable, content rules, same
    /// network, every signature valid, and at least k of them by the roster's authorities.
    pub fn verify(&self, roster: &Roster) -> Result<Revocation, RevocationError> {
        let revocation = self.revocation_unverified()?;
        if revocation.network != roster.network {
            return Err(RevocationError::WrongNetwork {
                held: roster.network.clone(),
                offered: revocation.network,
            });
        }
        if self.signatures.len() > MAX_AUTHORITIES * 2 {
            return Err(RevocationError::Invalid(format!(
                "{} signatures, the limit is {}",
                self.signatures.len(),
                MAX_AUTHORITIES * 2
            )));
        }
        let message = signing_message(&self.body);
        let mut signers: BTreeSet<AuthorityPublicKey> = BTreeSet::new();
        for entry in &self.signatures {
            if !signers.insert(entry.authority) {
                return Err(RevocationError::DuplicateSignature(
                    entry.authority.fingerprint(),
                ));
            }
            if !entry.authority.verify(&message, &entry.signature.0) {
                return Err(RevocationError::BadSignature(entry.authority.fingerprint()));
            }
        }
        let valid = signers
            .iter()
            .filter(|key| roster.authorities.contains(key))
            .count();
        let required = usize::from(roster.threshold);
        if valid < required {
            return Err(RevocationError::NotEnoughSignatures { valid, required });
        }
        Ok(revocation)
    }
}
