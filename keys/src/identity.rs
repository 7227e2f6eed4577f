//! Node and authority identities, their key files and human fingerprints.
//!
//! A node identity is two keys: an Ed25519 key that signs envelopes and receipts and is the node's
//! libp2p identity (its [`NodeId`] *is* the Ed25519 public key, so a `PeerId` can always be derived),
//! and an X25519 key that envelopes are sealed to. Secret keys live in a small versioned TOML key
//! file that only its owner may read; secret types redact themselves in `Debug` and are zeroized
//! when dropped (ed25519-dalek and x25519-dalek do so with their `zeroize` features).

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::types::Timestamp;

/// Version of a key file with one key pair that is the node's identity key.
pub const KEY_FILE_VERSION: u32 = 1;
/// Version of a key file written after a rotation (adds `node_id` and `[[previous]]` pairs).
pub const KEY_FILE_VERSION_ROTATED: u32 = 2;
/// Most key pairs a node keeps (the newest plus rotated-out ones in their grace).
pub const MAX_HELD_KEY_PAIRS: usize = 5;
/// Key files are tiny; anything larger is not one of ours.
const KEY_FILE_MAX_BYTES: u64 = 16 * 1024;

/// Why a key could not be created, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Group or others may read the secret key file.
    #[error(
        "{path}: key file is readable by group or others (mode {mode:o}); run `chmod 600 {path}` and try again"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a valid key file.
    #[error("{path}: not a valid key file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Refusing to overwrite an existing key.
    #[error("{path}: a key file already exists; move it away first if you really mean to replace this identity")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Rotating again would keep more key pairs than allowed.
    #[error("this node already holds {held} key pairs; wait until the grace of older keys ends (they are erased then) before rotating again")]
    TooManyKeys {
        /// How many pairs are held.
        held: usize,
    },
    /// Bytes that should be a public key are not one.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
}

/// The identity of a node in the network: its Ed25519 public key.
///
/// Displayed as the libp2p `PeerId` of that key (base58, `12D3KooW…`), which is what operators see
/// in libp2p logs too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The Ed25519 key that verifies this node's signatures.
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|error| KeyError::InvalidPublicKey(error.to_string()))
    }

    /// The libp2p `PeerId` of this node.
    pub fn to_peer_id(&self) -> Result<libp2p_identity::PeerId, KeyError> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|error| KeyError::InvalidPublicKey(error.to_string()))?;
        Ok(libp2p_identity::PublicKey::from(key).to_peer_id())
    }

    /// Recovers the node id from an Ed25519 `PeerId` (which embeds the public key).
    pub fn from_peer_id(peer_id: &libp2p_identity::PeerId) -> Option<NodeId> {
        let multihash = peer_id.as_ref();
        // Ed25519 peer ids use the identity multihash (code 0x00) over the protobuf public key.
        if multihash.code() != 0 {
            return None;
        }
        let public = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
        let ed = public.try_into_ed25519().ok()?;
        Some(NodeId(ed.to_bytes()))
    }

    /// Short human fingerprint of this node's key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(b"quickfreeze-node", &self.0)
    }

    /// Verifies an Ed25519 signature made by this node (strict verification: no malleable forms).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = self.verifying_key() else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_peer_id() {
            Ok(peer_id) => write!(f, "{peer_id}"),
            Err(_) => write!(f, "invalid-key:{}", hex::encode(self.0)),
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl std::str::FromStr for NodeId {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let peer_id: libp2p_identity::PeerId = text.trim().parse().map_err(|error| {
            KeyError::InvalidPublicKey(format!("`{text}` is not a node id (PeerId): {error}"))
        })?;
        NodeId::from_peer_id(&peer_id).ok_or_else(|| {
            KeyError::InvalidPublicKey(format!("`{text}` is not the PeerId of an Ed25519 key"))
        })
    }
}

/// A short, phone-readable digest of a public key: 20 hex digits in five groups of four.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 10]);

impl Fingerprint {
    /// Fingerprint of `bytes` under a domain label (so node and authority fingerprints never collide).
    pub fn of(domain: &[u8], bytes: &[u8]) -> Fingerprint {
        let mut hasher = Sha256::new();
        hasher.update(domain);
        hasher.update([0u8]);
        hasher.update(bytes);
        let digest = hasher.finalize();
        let mut short = [0u8; 10];
        short.copy_from_slice(&digest[..10]);
        Fingerprint(short)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = hex::encode(self.0);
        for (index, chunk) in text.as_bytes().chunks(4).enumerate() {
            if index > 0 {
                f.write_str("-")?;
            }
            // hex::encode only yields ASCII, so every chunk is valid UTF-8.
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: String = text.chars().filter(|c| *c != '-' && *c != ' ').collect();
        let bytes = hex::decode(&digits)
            .map_err(|_| format!("`{text}` is not a fingerprint (20 hex digits)"))?;
        let array: [u8; 10] = bytes
            .try_into()
            .map_err(|_| format!("`{text}` is not a fingerprint (20 hex digits)"))?;
        Ok(Fingerprint(array))
    }
}

/// One Ed25519 + X25519 key pair of a node, with the end of its grace once it is rotated out.
struct KeyPair {
    signing: ed25519_dalek::SigningKey,
    encryption: x25519_dalek::StaticSecret,
    /// Derived from `encryption` once: every opened envelope needs it, and deriving it is a
    /// full scalar multiplication (about 2 % of a node's CPU per message when it was redone).
    encryption_public: [u8; 32],
    /// For a rotated-out pair: when the roster stops believing it (unknown until the roster
    /// carrying the rotation is installed).
    valid_until: Option<Timestamp>,
}

impl KeyPair {
    fn new(
        signing: ed25519_dalek::SigningKey,
        encryption: x25519_dalek::StaticSecret,
        valid_until: Option<Timestamp>,
    ) -> KeyPair {
        let encryption_public = x25519_dalek::PublicKey::from(&encryption).to_bytes();
        KeyPair {
            signing,
            encryption,
            encryption_public,
            valid_until,
        }
    }

    fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> KeyPair {
        let signing = ed25519_dalek::SigningKey::generate(rng);
        KeyPair::new(
            signing,
            x25519_dalek::StaticSecret::random_from_rng(rng),
            None,
        )
    }

    fn signing_public(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    fn expired_at(&self, now: Timestamp) -> bool {
        self.valid_until.is_some_and(|until| now >= until)
    }
}

/// A secret X25519 key an envelope addressed to this node may have been sealed to.
pub struct DecryptionKey<'a> {
    pair: &'a KeyPair,
}

impl DecryptionKey<'_> {
    /// Its public half (bound into the envelope's key derivation).
    pub fn public(&self) -> [u8; 32] {
        self.pair.encryption_public
    }

    /// X25519 Diffie-Hellman between this key and `their_public`.
    pub fn diffie_hellman(&self, their_public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        let shared = self
            .pair
            .encryption
            .diffie_hellman(&x25519_dalek::PublicKey::from(*their_public));
        Zeroizing::new(shared.to_bytes())
    }
}

/// Public half of a key pair the node holds besides its newest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldKey {
    /// The Ed25519 key (a [`NodeId`]-shaped key; shown as its PeerId).
    pub signing_key: NodeId,
    /// The X25519 public key.
    pub encryption_key: [u8; 32],
    /// When it stops being believed, once known.
    pub valid_until: Option<Timestamp>,
}

/// A node's secret keys. `Debug` never prints key material.
///
/// A node keeps one lasting [`NodeId`] (its first signing key) and one or more key pairs, newest
/// first. It *uses* the pair the roster names as its current keys (the active pair): after
/// `key rotate` the new pair waits, unused, until a roster carrying it is installed, and older
/// pairs are kept to open envelopes sealed to them until their grace ends.
pub struct Identity {
    node_id: NodeId,
    /// Newest first; never empty.
    keys: Vec<KeyPair>,
    /// Index into `keys` of the pair used to sign and as transport identity.
    active: usize,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id())
            .field("key_pairs", &self.keys.len())
            .field("secret_keys", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Generates a fresh identity from `rng` (the OS RNG in production, a seeded one in simulation).
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Identity {
        let pair = KeyPair::generate(rng);
        Identity {
            node_id: pair.signing_public(),
            keys: vec![pair],
            active: 0,
        }
    }

    /// Generates a fresh identity from the operating system's RNG.
    pub fn generate_from_os() -> Identity {
        Identity::generate(&mut rand::rng())
    }

    fn active_pair(&self) -> &KeyPair {
        &self.keys[self.active]
    }

    /// This node's lasting id (its first Ed25519 public key; unchanged by rotations).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The Ed25519 key the node signs with now (its transport PeerId).
    pub fn signing_key(&self) -> NodeId {
        self.active_pair().signing_public()
    }

    /// The newest Ed25519 key (differs from [`Identity::signing_key`] while a rotation waits
    /// for its roster).
    pub fn newest_signing_key(&self) -> NodeId {
        self.keys[0].signing_public()
    }

    /// The X25519 public key of the active pair (the one the roster lists).
    pub fn encryption_public(&self) -> [u8; 32] {
        self.active_pair().encryption_public
    }

    /// The newest X25519 public key.
    pub fn newest_encryption_public(&self) -> [u8; 32] {
        self.keys[0].encryption_public
    }

    /// Every key pair other than the newest, newest first: what a rotated member entry lists as
    /// its previous keys.
    pub fn older_keys(&self) -> Vec<HeldKey> {
        self.keys
            .iter()
            .skip(1)
            .map(|pair| HeldKey {
                signing_key: pair.signing_public(),
                encryption_key: pair.encryption_public,
                valid_until: pair.valid_until,
            })
            .collect()
    }

    /// How many key pairs the node holds.
    pub fn key_pair_count(&self) -> usize {
        self.keys.len()
    }

    /// Signs `message` with the active Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.active_pair().signing.sign(message).to_bytes()
    }

    /// X25519 Diffie-Hellman between the active static key and `their_public`.
    pub fn diffie_hellman(&self, their_public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        DecryptionKey {
            pair: self.active_pair(),
        }
        .diffie_hellman(their_public)
    }

    /// The X25519 keys an envelope may be opened with at `now`: the active one first, then the
    /// others whose grace has not ended (a rotated key whose end is not known yet still opens).
    pub fn decryption_keys_at(&self, now: Timestamp) -> impl Iterator<Item = DecryptionKey<'_>> {
        let active = self.active;
        std::iter::once(self.active_pair())
            .chain(
                self.keys
                    .iter()
                    .enumerate()
                    .filter(move |(index, pair)| *index != active && !pair.expired_at(now))
                    .map(|(_, pair)| pair),
            )
            .map(|pair| DecryptionKey { pair })
    }

    /// The active Ed25519 key as a libp2p keypair, for the node's transport identity.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let secret = Zeroizing::new(self.active_pair().signing.to_bytes());
        let mut bytes = Zeroizing::new(*secret);
        // ed25519_from_bytes only fails on a wrong length; 32 bytes is always right.
        libp2p_identity::Keypair::ed25519_from_bytes(&mut *bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte Ed25519 secret is always accepted"))
    }

    /// Makes a new key pair and puts it first. The pair in use stays in use (the roster still
    /// names it) until [`Identity::follow_roster`] sees a roster carrying the new keys.
    pub fn rotate<R: rand::CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Result<(), KeyError> {
        if self.keys.len() >= MAX_HELD_KEY_PAIRS {
            return Err(KeyError::TooManyKeys {
                held: self.keys.len(),
            });
        }
        self.keys.insert(0, KeyPair::generate(rng));
        self.active += 1;
        Ok(())
    }

    /// Follows the roster's entry for this node: uses the pair whose signing key the roster
    /// names as current, and learns the grace end of older pairs from `previous` (a pair older
    /// than the current one that the roster no longer lists is finished at once). Returns true
    /// when anything changed (the caller rewrites the key file). A pair newer than the roster's
    /// current one (a rotation waiting for its roster) is kept and not used.
    pub fn follow_roster(
        &mut self,
        current_signing_key: &NodeId,
        previous: &[(NodeId, Timestamp)],
    ) -> bool {
        let Some(index) = self
            .keys
            .iter()
            .position(|pair| pair.signing_public() == *current_signing_key)
        else {
            return false;
        };
        let mut changed = index != self.active;
        self.active = index;
        for pair in self.keys.iter_mut().skip(index + 1) {
            let key = pair.signing_public();
            let until = previous
                .iter()
                .find(|(listed, _)| *listed == key)
                .map_or(Timestamp(0), |(_, until)| *until);
            if pair.valid_until != Some(until) {
                pair.valid_until = Some(until);
                changed = true;
            }
        }
        changed
    }

    /// Erases rotated-out pairs whose grace has ended at `now` (never the active pair, never one
    /// newer than it). Returns how many were erased; the caller rewrites the key file.
    pub fn erase_expired(&mut self, now: Timestamp) -> usize {
        let active_key = self.signing_key();
        let before = self.keys.len();
        let active = self.active;
        let mut index = 0;
        self.keys.retain(|pair| {
            let keep = index <= active || !pair.expired_at(now);
            index += 1;
            keep
        });
        self.active = self
            .keys
            .iter()
            .position(|pair| pair.signing_public() == active_key)
            .unwrap_or(0);
        before - self.keys.len()
    }

    fn key_file_text(&self) -> Zeroizing<String> {
        let newest = &self.keys[0];
        let signing_hex = Zeroizing::new(hex::encode(newest.signing.to_bytes()));
        let encryption_hex = Zeroizing::new(hex::encode(newest.encryption.to_bytes()));
        let rotated = self.keys.len() > 1 || newest.signing_public() != self.node_id;
        let version = if rotated {
            KEY_FILE_VERSION_ROTATED
        } else {
            KEY_FILE_VERSION
        };
        let mut text = Zeroizing::new(format!(
            "# quickfreeze node key file. SECRET: never copy it off this machine or share it.\n\
             # node id: {}\n\
             # fingerprint: {}\n\
             version = {version}\n\
             kind = \"node\"\n",
            self.node_id(),
            self.node_id().fingerprint(),
        ));
        if rotated {
            text.push_str(&format!("node_id = \"{}\"\n", self.node_id));
        }
        text.push_str(&format!(
            "signing_secret = \"{}\"\nencryption_secret = \"{}\"\n",
            *signing_hex, *encryption_hex
        ));
        for pair in self.keys.iter().skip(1) {
            let signing_hex = Zeroizing::new(hex::encode(pair.signing.to_bytes()));
            let encryption_hex = Zeroizing::new(hex::encode(pair.encryption.to_bytes()));
            text.push_str(&format!(
                "\n# rotated out: {}\n[[previous]]\nsigning_secret = \"{}\"\nencryption_secret = \"{}\"\n",
                pair.signing_public(),
                *signing_hex,
                *encryption_hex
            ));
            if let Some(until) = pair.valid_until {
                text.push_str(&format!("valid_until = \"{until}\"\n"));
            }
        }
        text
    }

    /// Writes the identity to a new key file with mode 0600. Never overwrites.
    pub fn write_key_file(&self, path: &Path) -> Result<(), KeyError> {
        write_secret_file(path, self.key_file_text().as_bytes())
    }

    /// Replaces an existing key file atomically (new file with mode 0600, synced, renamed over
    /// the old one): a crash leaves either the old or the new file, never half of one.
    pub fn replace_key_file(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        match fs::remove_file(&temporary) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        write_secret_file(&temporary, self.key_file_text().as_bytes())?;
        fs::rename(&temporary, path).map_err(io)?;
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn read_key_file(path: &Path) -> Result<Identity, KeyError> {
        let file = read_secret_file(path, "node")?;
        let malformed = |reason: String| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let signing = decode_secret(path, file.signing_secret.as_deref(), "signing_secret")?;
        let encryption =
            decode_secret(path, file.encryption_secret.as_deref(), "encryption_secret")?;
        let mut keys = vec![KeyPair::new(
            ed25519_dalek::SigningKey::from_bytes(&signing),
            x25519_dalek::StaticSecret::from(*encryption),
            None,
        )];
        if file.previous.len() >= MAX_HELD_KEY_PAIRS {
            return Err(malformed(format!(
                "{} previous key pairs; a node keeps at most {} besides its newest",
                file.previous.len(),
                MAX_HELD_KEY_PAIRS - 1
            )));
        }
        for (index, previous) in file.previous.iter().enumerate() {
            let signing = decode_secret(
                path,
                previous.signing_secret.as_deref(),
                "previous.signing_secret",
            )?;
            let encryption = decode_secret(
                path,
                previous.encryption_secret.as_deref(),
                "previous.encryption_secret",
            )?;
            let valid_until = previous
                .valid_until
                .as_deref()
                .map(Timestamp::parse_rfc3339)
                .transpose()
                .map_err(|error| malformed(format!("previous key {}: {error}", index + 1)))?;
            keys.push(KeyPair::new(
                ed25519_dalek::SigningKey::from_bytes(&signing),
                x25519_dalek::StaticSecret::from(*encryption),
                valid_until,
            ));
        }
        let node_id = match file.node_id.as_deref() {
            Some(text) => text
                .parse::<NodeId>()
                .map_err(|error| malformed(format!("field `node_id`: {error}")))?,
            None => keys[0].signing_public(),
        };
        Ok(Identity {
            node_id,
            keys,
            active: 0,
        })
    }
}

/// A roster authority's signing key. `Debug` never prints key material.
pub struct AuthorityKey {
    signing: ed25519_dalek::SigningKey,
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityKey")
            .field("public", &self.public())
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// A roster authority's public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuthorityPublicKey(pub [u8; 32]);

impl AuthorityPublicKey {
    /// Short human fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(b"quickfreeze-authority", &self.0)
    }

    /// Strictly verifies `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
            && key
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                .is_ok()
    }
}

impl fmt::Display for AuthorityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AuthorityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityPublicKey({})", self.fingerprint())
    }
}

impl std::str::FromStr for AuthorityPublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| KeyError::InvalidPublicKey(format!("`{text}` is not 64 hex digits")))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::InvalidPublicKey(format!("`{text}` is not 64 hex digits")))?;
        ed25519_dalek::VerifyingKey::from_bytes(&array)
            .map_err(|error| KeyError::InvalidPublicKey(format!("`{text}`: {error}")))?;
        Ok(AuthorityPublicKey(array))
    }
}

impl AuthorityKey {
    /// Generates a new authority key.
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> AuthorityKey {
        AuthorityKey {
            signing: ed25519_dalek::SigningKey::generate(rng),
        }
    }

    /// The public half.
    pub fn public(&self) -> AuthorityPublicKey {
        AuthorityPublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Writes a new key file with mode 0600. Never overwrites.
    pub fn write_key_file(&self, path: &Path) -> Result<(), KeyError> {
        let signing_hex = Zeroizing::new(hex::encode(self.signing.to_bytes()));
        let text = Zeroizing::new(format!(
            "# quickfreeze roster authority key. SECRET: keep it offline.\n\
             # public key: {}\n\
             # fingerprint: {}\n\
             version = {KEY_FILE_VERSION}\n\
             kind = \"authority\"\n\
             signing_secret = \"{}\"\n",
            self.public(),
            self.public().fingerprint(),
            *signing_hex
        ));
        write_secret_file(path, text.as_bytes())
    }

    /// Reads an authority key file, refusing one that group or others can read.
    pub fn read_key_file(path: &Path) -> Result<AuthorityKey, KeyError> {
        let file = read_secret_file(path, "authority")?;
        let signing = decode_secret(path, file.signing_secret.as_deref(), "signing_secret")?;
        Ok(AuthorityKey {
            signing: ed25519_dalek::SigningKey::from_bytes(&signing),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileText {
    version: u32,
    kind: String,
    #[serde(default)]
    node_id: Option<String>,
    signing_secret: Option<String>,
    encryption_secret: Option<String>,
    #[serde(default)]
    previous: Vec<PreviousKeyText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviousKeyText {
    signing_secret: Option<String>,
    encryption_secret: Option<String>,
    valid_until: Option<String>,
}

impl Drop for PreviousKeyText {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(secret) = self.signing_secret.as_mut() {
            secret.zeroize();
        }
        if let Some(secret) = self.encryption_secret.as_mut() {
            secret.zeroize();
        }
    }
}

impl Drop for KeyFileText {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(secret) = self.signing_secret.as_mut() {
            secret.zeroize();
        }
        if let Some(secret) = self.encryption_secret.as_mut() {
            secret.zeroize();
        }
    }
}

fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io(source)
            }
        })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

fn read_secret_file(path: &Path, expected_kind: &str) -> Result<KeyFileText, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = fs::metadata(path).map_err(io)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    if metadata.len() > KEY_FILE_MAX_BYTES {
        return Err(malformed(format!(
            "{} bytes is far larger than any key file",
            metadata.len()
        )));
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
    let file: KeyFileText =
        toml::from_str(&text).map_err(|error| malformed(error.message().to_string()))?;
    let readable = file.version == KEY_FILE_VERSION
        || (file.version == KEY_FILE_VERSION_ROTATED && expected_kind == "node");
    if file.version > KEY_FILE_VERSION_ROTATED {
        return Err(malformed(format!(
            "version {} was written by a newer quickfreeze (this build reads key file versions {KEY_FILE_VERSION} and {KEY_FILE_VERSION_ROTATED}); upgrade quickfreeze",
            file.version
        )));
    }
    if !readable {
        return Err(malformed(format!(
            "version {} is not supported (this build reads versions {KEY_FILE_VERSION} and {KEY_FILE_VERSION_ROTATED})",
            file.version
        )));
    }
    if file.kind != expected_kind {
        return Err(malformed(format!(
            "this is a `{}` key file, expected a `{expected_kind}` key file",
            file.kind
        )));
    }
    Ok(file)
}

fn decode_secret(
    path: &Path,
    text: Option<&str>,
    field: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let text = text.ok_or_else(|| malformed(format!("field `{field}` is missing")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, &mut *key)
        .map_err(|_| malformed(format!("field `{field}` is not 64 hex digits")))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let identity = Identity::generate_from_os();
        identity.write_key_file(&path).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Identity::read_key_file(&path).expect("read");
        assert_eq!(loaded.node_id(), identity.node_id());
        assert_eq!(loaded.encryption_public(), identity.encryption_public());
    }

    #[test]
    fn world_readable_key_file_refused_with_chmod_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        Identity::generate_from_os()
            .write_key_file(&path)
            .expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = Identity::read_key_file(&path).expect_err("must refuse 0644");
        assert!(matches!(
            error,
            KeyError::InsecurePermissions { mode: 0o644, .. }
        ));
        assert!(error.to_string().contains("chmod 600"));
    }

    #[test]
    fn existing_key_file_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        Identity::generate_from_os()
            .write_key_file(&path)
            .expect("write");
        let error = Identity::generate_from_os()
            .write_key_file(&path)
            .expect_err("must not overwrite");
        assert!(matches!(error, KeyError::AlreadyExists { .. }));
    }

    #[test]
    fn authority_file_is_not_a_node_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("authority.key");
        AuthorityKey::generate(&mut rand::rng())
            .write_key_file(&path)
            .expect("write");
        let error = Identity::read_key_file(&path).expect_err("wrong kind");
        assert!(error.to_string().contains("expected a `node` key file"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let identity = Identity::generate_from_os();
        let text = format!("{identity:?}");
        assert!(text.contains("redacted"));
        assert!(!text.contains(&hex::encode(identity.keys[0].signing.to_bytes())));
    }

    #[test]
    fn node_id_peer_id_round_trip() {
        let identity = Identity::generate_from_os();
        let peer_id = identity.to_libp2p_keypair().public().to_peer_id();
        assert_eq!(identity.node_id().to_peer_id().expect("valid"), peer_id);
        assert_eq!(NodeId::from_peer_id(&peer_id), Some(identity.node_id()));
        let parsed: NodeId = identity.node_id().to_string().parse().expect("parse");
        assert_eq!(parsed, identity.node_id());
    }

    #[test]
    fn fingerprint_parses_back() {
        let fingerprint = Identity::generate_from_os().node_id().fingerprint();
        let text = fingerprint.to_string();
        assert_eq!(text.len(), 24);
        assert_eq!(text.parse::<Fingerprint>(), Ok(fingerprint));
    }

    #[test]
    fn signatures_verify_and_tamper_fails() {
        let identity = Identity::generate_from_os();
        let signature = identity.sign(b"preserve");
        assert!(identity.node_id().verify(b"preserve", &signature));
        assert!(!identity.node_id().verify(b"preservE", &signature));
    }
}
