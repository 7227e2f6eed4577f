//! The signed roster: who is in the network, with which keys, at which addresses.
//!
//! A person writes a [`Roster`] as TOML. Signing turns it into a [`SignedRoster`]: the canonical
//! bincode bytes of the roster (the *body*) plus Ed25519 signatures of roster authorities over
//! `ROSTER_SIGNING_CONTEXT || body`. Nodes only ever act on a roster that came out of one of the
//! `verify_*` functions, which check, in this order: decodable within limits, the content rules
//! ([`Roster::validate`]), not expired, no rollback, and *k* valid signatures from the set that is
//! trusted (the pinned set for a first roster, the previous roster's set for an update, and the new
//! roster's own set as well, so a rotation cannot hand control to a set that never agreed).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::identity::{AuthorityKey, AuthorityPublicKey, Fingerprint, NodeId};
use crate::types::{CountryCode, EncryptionKey, Signature, Timestamp};

/// Version byte of the signed roster format this build writes when no member has rotated keys
/// (the body then has exactly the layout of the first format, byte for byte).
pub const SIGNED_ROSTER_VERSION: u8 = 1;
/// Version byte of a signed roster whose body carries members' current signing keys and previous
/// keys (written only when some member has rotated; see "Identity across key changes" in
/// ARCHITECTURE.md).
pub const SIGNED_ROSTER_VERSION_ROTATED: u8 = 2;
/// Most previous (rotated-out) key pairs one member entry may carry.
pub const MAX_PREVIOUS_KEYS: usize = 4;
/// Domain separation for roster signatures.
pub const ROSTER_SIGNING_CONTEXT: &[u8] = b"quickfreeze/roster/v1\0";
/// Largest signed roster accepted from a file or a peer.
pub const MAX_SIGNED_ROSTER_BYTES: u64 = 4 * 1024 * 1024;
/// Most members a roster may list.
pub const MAX_MEMBERS: usize = 2048;
/// Most roster authorities.
pub const MAX_AUTHORITIES: usize = 32;
/// Most listen addresses per member.
pub const MAX_ADDRESSES_PER_MEMBER: usize = 8;
/// Most relays per member.
pub const MAX_RELAYS_PER_MEMBER: usize = 8;
/// Longest free-text field (authority name, contact, address, network name).
pub const MAX_TEXT_BYTES: usize = 512;

/// What a member does in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A national 24/7 point of contact (Budapest Convention Art. 35). One per country.
    PointOfContact,
    /// A headless store-and-forward relay run by a central authority.
    Relay,
    /// A central authority (ministry, national centre) that sends and receives too.
    CentralAuthority,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::PointOfContact => "point-of-contact",
            Role::Relay => "relay",
            Role::CentralAuthority => "central-authority",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "point-of-contact" => Ok(Role::PointOfContact),
            "relay" => Ok(Role::Relay),
            "central-authority" => Ok(Role::CentralAuthority),
            other => Err(format!(
                "`{other}` is not a role; use point-of-contact, relay or central-authority"
            )),
        }
    }
}

/// Keys a member used before its last rotation, believed until `valid_until` (the grace end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKeys {
    /// The old Ed25519 signing key (shown as the PeerId it had).
    #[serde(with = "node_id_serde")]
    pub signing_key: NodeId,
    /// The old X25519 key envelopes may still be sealed to.
    pub encryption_key: EncryptionKey,
    /// From this time on the old keys are refused.
    pub valid_until: Timestamp,
}

impl PreviousKeys {
    /// Whether these old keys are still believed at `now`.
    pub fn in_grace_at(&self, now: Timestamp) -> bool {
        now < self.valid_until
    }
}

/// One member of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's node id: its first (identity) Ed25519 key, kept for life across rotations
    /// (shown as that key's libp2p PeerId). Inbox, outbox, de-dup keys, audit and statistics
    /// name members by it.
    #[serde(with = "node_id_serde")]
    pub node_id: NodeId,
    /// The member's current Ed25519 signing key (its transport PeerId), when it has rotated
    /// away from `node_id`. Absent means the node id itself is the current key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "node_id_option_serde"
    )]
    pub signing_key: Option<NodeId>,
    /// Keys from earlier rotations still in their grace window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<PreviousKeys>,
    /// ISO 3166-1 alpha-2 country.
    pub country: CountryCode,
    /// The authority that runs the node, e.g. "Bundeskriminalamt, 24/7 contact point".
    pub authority_name: String,
    /// What the node does.
    pub role: Role,
    /// X25519 key that envelopes to this member are sealed to (the current one).
    pub encryption_key: EncryptionKey,
    /// libp2p multiaddrs the node listens on (checked by the node when it dials).
    pub addresses: Vec<String>,
    /// Relays that hold mail for this member when it is unreachable.
    #[serde(with = "node_id_vec_serde")]
    pub relays: Vec<NodeId>,
    /// Start of the member's validity window.
    pub valid_from: Timestamp,
    /// End of the member's validity window.
    pub valid_until: Timestamp,
    /// How to reach the officer on duty by other means (phone, e-mail).
    pub on_duty_contact: String,
}

impl Member {
    /// Whether the member may send or receive at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.valid_from <= now && now < self.valid_until
    }

    /// The Ed25519 key the member signs with now (its libp2p PeerId).
    pub fn current_signing_key(&self) -> NodeId {
        self.signing_key.unwrap_or(self.node_id)
    }

    /// The previous signing keys with their grace ends, as [`crate::Identity::follow_roster`]
    /// takes them.
    pub fn previous_key_ends(&self) -> Vec<(NodeId, Timestamp)> {
        self.previous_keys
            .iter()
            .map(|previous| (previous.signing_key, previous.valid_until))
            .collect()
    }

    /// Whether the entry says nothing about rotation (it encodes in the first roster format).
    pub fn is_unrotated(&self) -> bool {
        self.signing_key.is_none_or(|key| key == self.node_id) && self.previous_keys.is_empty()
    }

    /// Signing keys believed at `now`: the current one, then previous ones still in grace.
    pub fn signing_keys_at(&self, now: Timestamp) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.current_signing_key()).chain(
            self.previous_keys
                .iter()
                .filter(move |previous| previous.in_grace_at(now))
                .map(|previous| previous.signing_key),
        )
    }

    /// Whether `key` is one of the member's signing keys believed at `now` (a connection from
    /// that key's PeerId is this member).
    pub fn has_signing_key_at(&self, key: &NodeId, now: Timestamp) -> bool {
        self.signing_keys_at(now).any(|candidate| candidate == *key)
    }

    /// Verifies a signature by this member at `now`: with the current key, or with a previous
    /// key whose grace has not ended. A rotated key is refused from its `valid_until` on.
    pub fn verify_at(&self, message: &[u8], signature: &[u8; 64], now: Timestamp) -> bool {
        self.signing_keys_at(now)
            .any(|key| key.verify(message, signature))
    }
}

/// The content of a roster, as a person writes it and as it is signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Name of the network; an update for another network is refused.
    pub network: String,
    /// Strictly increasing with each new roster.
    pub serial: u64,
    /// When the roster was issued.
    pub issued_at: Timestamp,
    /// After this the roster is no longer accepted.
    pub expires_at: Timestamp,
    /// How many authority signatures a roster needs (*k*).
    pub threshold: u8,
    /// The roster authorities' public keys.
    pub authorities: Vec<AuthorityPublicKey>,
    /// The members.
    pub members: Vec<Member>,
}

/// Every reason a roster is refused. Each message names the problem and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RosterError {
    /// Not decodable.
    #[error("signed roster is malformed: {0}")]
    Malformed(#[from] CodecError),
    /// Made by a newer version of quickfreeze.
    #[error("signed roster format version {0} is not supported (this build reads versions {SIGNED_ROSTER_VERSION} and {SIGNED_ROSTER_VERSION_ROTATED}); upgrade quickfreeze")]
    UnsupportedVersion(u8),
    /// The TOML text is not a roster.
    #[error("roster text is invalid: {0}")]
    InvalidText(String),
    /// Network name empty or too long.
    #[error("network name must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidNetworkName,
    /// Threshold is 0 or larger than the authority set.
    #[error("threshold {threshold} is impossible with {authorities} authorities; it must be between 1 and the number of authorities")]
    InvalidThreshold {
        /// k.
        threshold: u8,
        /// n.
        authorities: usize,
    },
    /// The same authority key twice.
    #[error("authority {0} is listed twice")]
    DuplicateAuthority(Fingerprint),
    /// Too many of something.
    #[error("too many {what}: {count}, the limit is {limit}")]
    TooMany {
        /// What.
        what: &'static str,
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A text field is too long or empty.
    #[error("member {member}: field `{field}` must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidField {
        /// The member.
        member: NodeId,
        /// The field.
        field: &'static str,
    },
    /// Validity window of the roster or a member ends before it starts.
    #[error("{what}: validity ends ({until}) before it starts ({from})")]
    InvalidWindow {
        /// Which window.
        what: String,
        /// Start.
        from: Timestamp,
        /// End.
        until: Timestamp,
    },
    /// The same node twice.
    #[error("member {0} is listed twice")]
    DuplicateMember(NodeId),
    /// One signing key listed twice (for two members, or twice for one member).
    #[error("signing key {key} is listed for member {first} and again for {second}; every current or previous key belongs to one member once")]
    SharedSigningKey {
        /// The key.
        key: NodeId,
        /// Where it was seen first.
        first: NodeId,
        /// Where it was seen again.
        second: NodeId,
    },
    /// Two points of contact for one country.
    #[error(
        "country {0} has more than one point-of-contact; a country has one 24/7 point of contact"
    )]
    DuplicateCountry(CountryCode),
    /// A relay that is not in the roster.
    #[error("member {member} names relay {relay}, which is not in the roster")]
    UnknownRelay {
        /// The member.
        member: NodeId,
        /// The missing relay.
        relay: NodeId,
    },
    /// A relay entry that points at a non-relay.
    #[error("member {member} names {relay} as its relay, but that member's role is {role}")]
    NotARelay {
        /// The member.
        member: NodeId,
        /// The named node.
        relay: NodeId,
        /// Its actual role.
        role: Role,
    },
    /// The roster has expired.
    #[error("roster serial {serial} expired at {expires_at}; ask the roster authority for a current one")]
    Expired {
        /// Its serial.
        serial: u64,
        /// When it expired.
        expires_at: Timestamp,
    },
    /// Not newer than the roster already held.
    #[error("roster serial {offered} is not newer than the serial {held} already held (rollback refused)")]
    Rollback {
        /// The serial held.
        held: u64,
        /// The serial offered.
        offered: u64,
    },
    /// An update for another network.
    #[error("roster is for network `{offered}`, but this node is in network `{held}`")]
    WrongNetwork {
        /// The current network.
        held: String,
        /// The offered network.
        offered: String,
    },
    /// The roster's authority set is not the one pinned at init.
    #[error("roster authority set {found} does not match the pinned set {pinned}; check the fingerprint with the roster authority")]
    AuthoritySetMismatch {
        /// Pinned fingerprint.
        pinned: Fingerprint,
        /// This roster's fingerprint.
        found: Fingerprint,
    },
    /// A signature that does not verify (tampering, or signed over other bytes).
    #[error("signature by {signer} does not verify: the roster was altered after signing, or the signature is damaged")]
    BadSignature {
        /// Who claims to have signed.
        signer: Fingerprint,
    },
    /// Fewer than k valid signatures from the trusted set.
    #[error("{set}: {valid} valid authority signature(s), {required} required{}", if *.ignored > 0 { format!(" ({} signature(s) by keys outside that set ignored)", .ignored) } else { String::new() })]
    NotEnoughSignatures {
        /// Which set was counted.
        set: &'static str,
        /// Valid signatures by that set.
        valid: usize,
        /// k.
        required: usize,
        /// Signatures by keys not in the set.
        ignored: usize,
    },
    /// The same authority signed twice.
    #[error("authority {0} appears twice among the signatures")]
    DuplicateSignature(Fingerprint),
    /// Signing with a key that is neither in this roster's set.
    #[error("key {0} is not an authority of this roster")]
    NotAnAuthority(Fingerprint),
}

impl Roster {
    /// Parses the TOML form.
    pub fn from_toml(text: &str) -> Result<Roster, RosterError> {
        toml::from_str(text).map_err(|error| RosterError::InvalidText(error.to_string()))
    }

    /// The TOML form.
    pub fn to_toml(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        toml::to_string(self).unwrap_or_else(|error| format!("# cannot render roster: {error}\n"))
    }

    /// Canonical bytes: what authorities sign. In the format [`Roster::format_version`] names.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, RosterError> {
        if self.format_version() == SIGNED_ROSTER_VERSION {
            Ok(codec::encode(
                &wire::RosterV1::from(self),
                MAX_SIGNED_ROSTER_BYTES,
            )?)
        } else {
            Ok(codec::encode(
                &wire::RosterV2::from(self),
                MAX_SIGNED_ROSTER_BYTES,
            )?)
        }
    }

    /// Decodes a body in the given format version (content not yet checked).
    fn from_canonical_bytes(version: u8, bytes: &[u8]) -> Result<Roster, RosterError> {
        match version {
            SIGNED_ROSTER_VERSION => {
                Ok(codec::decode::<wire::RosterV1>(bytes, MAX_SIGNED_ROSTER_BYTES)?.into())
            }
            SIGNED_ROSTER_VERSION_ROTATED => {
                let roster: Roster =
                    codec::decode::<wire::RosterV2>(bytes, MAX_SIGNED_ROSTER_BYTES)?.into();
                if roster.format_version() != SIGNED_ROSTER_VERSION_ROTATED {
                    // One content, one encoding: an unrotated roster must use the first format.
                    return Err(RosterError::InvalidText(
                        "roster in format 2 has no rotated member; it must be encoded in format 1"
                            .into(),
                    ));
                }
                Ok(roster)
            }
            other => Err(RosterError::UnsupportedVersion(other)),
        }
    }

    /// Fingerprint of the authority set and threshold (what a node pins at `init`).
    pub fn authority_set_fingerprint(&self) -> Fingerprint {
        let mut keys: Vec<[u8; 32]> = self.authorities.iter().map(|key| key.0).collect();
        keys.sort_unstable();
        let mut material = vec![self.threshold];
        for key in keys {
            material.extend_from_slice(&key);
        }
        Fingerprint::of(b"quickfreeze-authority-set", &material)
    }

    /// Checks the content rules that do not depend on time or signatures.
    pub fn validate(&self) -> Result<(), RosterError> {
        if self.network.is_empty() || self.network.len() > MAX_TEXT_BYTES {
            return Err(RosterError::InvalidNetworkName);
        }
        check_count("authorities", self.authorities.len(), MAX_AUTHORITIES)?;
        check_count("members", self.members.len(), MAX_MEMBERS)?;
        if self.threshold == 0 || usize::from(self.threshold) > self.authorities.len() {
            return Err(RosterError::InvalidThreshold {
                threshold: self.threshold,
                authorities: self.authorities.len(),
            });
        }
        let mut seen_authorities = BTreeSet::new();
        for key in &self.authorities {
            if !seen_authorities.insert(key.0) {
                return Err(RosterError::DuplicateAuthority(key.fingerprint()));
            }
        }
        if self.expires_at <= self.issued_at {
            return Err(RosterError::InvalidWindow {
                what: format!("roster serial {}", self.serial),
                from: self.issued_at,
                until: self.expires_at,
            });
        }
        let mut roles = BTreeMap::new();
        let mut countries = BTreeSet::new();
        let mut signing_keys = BTreeMap::new();
        for member in &self.members {
            if roles.insert(member.node_id, member.role).is_some() {
                return Err(RosterError::DuplicateMember(member.node_id));
            }
            check_count(
                "previous_keys",
                member.previous_keys.len(),
                MAX_PREVIOUS_KEYS,
            )?;
            let mut keys = vec![member.current_signing_key()];
            keys.extend(
                member
                    .previous_keys
                    .iter()
                    .map(|previous| previous.signing_key),
            );
            for key in keys {
                if key.verifying_key().is_err() {
                    return Err(RosterError::InvalidText(format!(
                        "member {}: signing key {} is not a valid Ed25519 key",
                        member.node_id,
                        hex::encode(key.0)
                    )));
                }
                if let Some(owner) = signing_keys.insert(key, member.node_id) {
                    return Err(RosterError::SharedSigningKey {
                        key,
                        first: owner,
                        second: member.node_id,
                    });
                }
            }
            if member.node_id.verifying_key().is_err() {
                return Err(RosterError::InvalidText(format!(
                    "member {}: node_id is not a valid Ed25519 key",
                    hex::encode(member.node_id.0)
                )));
            }
            if member.role == Role::PointOfContact && !countries.insert(member.country) {
                return Err(RosterError::DuplicateCountry(member.country));
            }
            check_text(member, "authority_name", &member.authority_name)?;
            check_text(member, "on_duty_contact", &member.on_duty_contact)?;
            check_count(
                "addresses",
                member.addresses.len(),
                MAX_ADDRESSES_PER_MEMBER,
            )?;
            for address in &member.addresses {
                check_text(member, "addresses", address)?;
            }
            check_count("relays", member.relays.len(), MAX_RELAYS_PER_MEMBER)?;
            if member.valid_until <= member.valid_from {
                return Err(RosterError::InvalidWindow {
                    what: format!("member {}", member.node_id),
                    from: member.valid_from,
                    until: member.valid_until,
                });
            }
        }
        for member in &self.members {
            for relay in &member.relays {
                match roles.get(relay) {
                    None => {
                        return Err(RosterError::UnknownRelay {
                            member: member.node_id,
                            relay: *relay,
                        })
                    }
                    Some(Role::Relay) => {}
                    Some(role) => {
                        return Err(RosterError::NotARelay {
                            member: member.node_id,
                            relay: *relay,
                            role: *role,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// The member with this id.
    pub fn member(&self, node_id: &NodeId) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.node_id == *node_id)
    }

    /// The member that holds Ed25519 key `key` (current, or previous and still in grace at
    /// `now`): how a transport PeerId is mapped to the member's lasting node id.
    pub fn member_by_signing_key(&self, key: &NodeId, now: Timestamp) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.current_signing_key() == *key)
            .or_else(|| {
                self.members
                    .iter()
                    .find(|member| member.has_signing_key_at(key, now))
            })
    }

    /// The format version a signed roster with this content gets: the first format when no
    /// member has rotated (so such rosters keep their exact bytes), otherwise the rotated one.
    pub fn format_version(&self) -> u8 {
        if self.members.iter().all(Member::is_unrotated) {
            SIGNED_ROSTER_VERSION
        } else {
            SIGNED_ROSTER_VERSION_ROTATED
        }
    }

    /// The point of contact (or, failing that, any non-relay member) for a country.
    pub fn by_country(&self, country: CountryCode) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.country == country && member.role == Role::PointOfContact)
            .or_else(|| {
                self.members
                    .iter()
                    .find(|member| member.country == country && member.role != Role::Relay)
            })
    }

    /// The relays that hold mail for `node_id`, in roster order.
    pub fn relays_for(&self, node_id: &NodeId) -> Vec<&Member> {
        self.member(node_id)
            .map(|member| {
                member
                    .relays
                    .iter()
                    .filter_map(|relay| self.member(relay))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), RosterError> {
    if count > limit {
        Err(RosterError::TooMany { what, count, limit })
    } else {
        Ok(())
    }
}

fn check_text(member: &Member, field: &'static str, text: &str) -> Result<(), RosterError> {
    if text.is_empty() || text.len() > MAX_TEXT_BYTES {
        Err(RosterError::InvalidField {
            member: member.node_id,
            field,
        })
    } else {
        Ok(())
    }
}

/// One authority's signature over a roster body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterSignature {
    /// Who signed.
    pub authority: AuthorityPublicKey,
    /// Ed25519 over `ROSTER_SIGNING_CONTEXT || body`.
    pub signature: Signature,
}

/// A roster as it travels: canonical body bytes plus authority signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoster {
    /// Format version ([`SIGNED_ROSTER_VERSION`]).
    pub version: u8,
    /// Canonical bytes of the [`Roster`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Signatures, sorted by authority key so that the bytes are canonical.
    pub signatures: Vec<RosterSignature>,
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ROSTER_SIGNING_CONTEXT.len() + body.len());
    message.extend_from_slice(ROSTER_SIGNING_CONTEXT);
    message.extend_from_slice(body);
    message
}

impl SignedRoster {
    /// Wraps a roster, unsigned, after checking its content rules.
    pub fn new(roster: &Roster) -> Result<SignedRoster, RosterError> {
        roster.validate()?;
        Ok(SignedRoster {
            version: roster.format_version(),
            body: roster.canonical_bytes()?,
            signatures: Vec::new(),
        })
    }

    /// Decodes a signed roster from a file or a peer (size-limited). Nothing is trusted yet.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedRoster, RosterError> {
        if let Some(&version) = bytes.first() {
            if version != SIGNED_ROSTER_VERSION && version != SIGNED_ROSTER_VERSION_ROTATED {
                return Err(RosterError::UnsupportedVersion(version));
            }
        }
        Ok(codec::decode(bytes, MAX_SIGNED_ROSTER_BYTES)?)
    }

    /// Canonical bytes of the signed roster.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RosterError> {
        Ok(codec::encode(self, MAX_SIGNED_ROSTER_BYTES)?)
    }

    /// The roster inside, decoded and content-checked but **not** signature-checked.
    pub fn roster_unverified(&self) -> Result<Roster, RosterError> {
        let roster = Roster::from_canonical_bytes(self.version, &self.body)?;
        roster.validate()?;
        Ok(roster)
    }

    /// Adds (or replaces) `key`'s signature. The key must be an authority of this roster, or
    /// of `previous` when this roster rotates the authority set.
    pub fn sign(
        &mut self,
        key: &AuthorityKey,
        previous: Option<&Roster>,
    ) -> Result<(), RosterError> {
        let roster = self.roster_unverified()?;
        let public = key.public();
        let known = roster.authorities.contains(&public)
            || previous.is_some_and(|previous| previous.authorities.contains(&public));
        if !known {
            return Err(RosterError::NotAnAuthority(public.fingerprint()));
        }
        let signature = Signature(key.sign(&signing_message(&self.body)));
        self.signatures
            .retain(|existing| existing.authority != public);
        self.signatures.push(RosterSignature {
            authority: public,
            signature,
        });
        self.signatures.sort_by_key(|entry| entry.authority);
        Ok(())
    }

    /// Every signature must verify; returns the set of signers.
    fn signers(&self) -> Result<BTreeSet<AuthorityPublicKey>, RosterError> {
        let message = signing_message(&self.body);
        let mut signers = BTreeSet::new();
        if self.signatures.len() > MAX_AUTHORITIES * 2 {
            return Err(RosterError::TooMany {
                what: "signatures",
                count: self.signatures.len(),
                limit: MAX_AUTHORITIES * 2,
            });
        }
        for entry in &self.signatures {
            if signers.contains(&entry.authority) {
                return Err(RosterError::DuplicateSignature(
                    entry.authority.fingerprint(),
                ));
            }
            if !entry.authority.verify(&message, &entry.signature.0) {
                return Err(RosterError::BadSignature {
                    signer: entry.authority.fingerprint(),
                });
            }
            signers.insert(entry.authority);
        }
        Ok(signers)
    }

    fn check_quorum(
        signers: &BTreeSet<AuthorityPublicKey>,
        authorities: &[AuthorityPublicKey],
        threshold: u8,
        set: &'static str,
    ) -> Result<(), RosterError> {
        let valid = signers
            .iter()
            .filter(|key| authorities.contains(key))
            .count();
        if valid < usize::from(threshold) {
            return Err(RosterError::NotEnoughSignatures {
                set,
                valid,
                required: usize::from(threshold),
                ignored: signers.len() - valid,
            });
        }
        Ok(())
    }

    /// Verifies the roster against its *own* authority set: content rules, expiry, every
    /// signature valid and at least k of them by listed authorities. On its own this proves
    /// only internal consistency; nodes call [`SignedRoster::verify_pinned`] or
    /// [`SignedRoster::verify_update`].
    pub fn verify_self(&self, now: Timestamp) -> Result<Roster, RosterError> {
        let roster = self.roster_unverified()?;
        if now >= roster.expires_at {
            return Err(RosterError::Expired {
                serial: roster.serial,
                expires_at: roster.expires_at,
            });
        }
        let signers = self.signers()?;
        Self::check_quorum(
            &signers,
            &roster.authorities,
            roster.threshold,
            "roster's own authority set",
        )?;
        Ok(roster)
    }

    /// Verifies a first roster against the authority-set fingerprint pinned at `init`.
    pub fn verify_pinned(
        &self,
        pinned: &Fingerprint,
        now: Timestamp,
    ) -> Result<Roster, RosterError> {
        let roster = self.roster_unverified()?;
        let found = roster.authority_set_fingerprint();
        if found != *pinned {
            return Err(RosterError::AuthoritySetMismatch {
                pinned: *pinned,
                found,
            });
        }
        self.verify_self(now)
    }

    /// Verifies an update to `current`: same network, strictly higher serial, not expired, k of
    /// the current authority set, and (when the set changes) k of the new set too.
    pub fn verify_update(&self, current: &Roster, now: Timestamp) -> Result<Roster, RosterError> {
        let roster = self.roster_unverified()?;
        if roster.network != current.network {
            return Err(RosterError::WrongNetwork {
                held: current.network.clone(),
                offered: roster.network,
            });
        }
        if roster.serial <= current.serial {
            return Err(RosterError::Rollback {
                held: current.serial,
                offered: roster.serial,
            });
        }
        let roster = self.verify_self(now)?;
        let signers = self.signers()?;
        Self::check_quorum(
            &signers,
            &current.authorities,
            current.threshold,
            "previous roster's authority set",
        )?;
        Ok(roster)
    }
}

mod node_id_serde {
    use super::NodeId;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &NodeId, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&id.to_string())
        } else {
            id.0.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<NodeId, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(NodeId)
        }
    }
}

mod node_id_option_serde {
    use super::NodeId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrapped(#[serde(with = "super::node_id_serde")] NodeId);

    pub(super) fn serialize<S: Serializer>(
        id: &Option<NodeId>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.serialize_some(&Wrapped(*id)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<NodeId>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(id)| id))
    }
}

/// The canonical (signed) byte layouts, one struct per format version.
pub(crate) mod wire;

mod node_id_vec_serde {
    use super::NodeId;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        ids: &[NodeId],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
            texts.serialize(serializer)
        } else {
            let raw: Vec<[u8; 32]> = ids.iter().map(|id| id.0).collect();
            raw.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<NodeId>, D::Error> {
        if deserializer.is_human_readable() {
            let texts = Vec::<String>::deserialize(deserializer)?;
            texts
                .iter()
                .map(|text| text.parse().map_err(de::Error::custom))
                .collect()
        } else {
            Ok(Vec::<[u8; 32]>::deserialize(deserializer)?
                .into_iter()
                .map(NodeId)
                .collect())
        }
    }
}
