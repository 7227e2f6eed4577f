//! The simulated network's membership: identities, the generated roster, and who is who.
//!
//! Every identity is derived from the run seed and the node's index ([`identity`]), so a node
//! that crashes is rebuilt with the same keys, exactly as a real node reloads its key file. The
//! roster gives each member node a country (one point of contact per ISO country, central
//! authorities beyond that), names one or two relays for it, leaves a few members *relay-only*
//! (no addresses, so all mail goes through their relays), and adds the hostile member when
//! the fault profile has one. A generated authority key signs it.
//!
//! Index layout, used by every other module: `0..nodes` are members, then `relays` relays, then
//! the hostile member (if any).

use std::collections::BTreeMap;

use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::types::iso_country_codes;
use quickfreeze_keys::{
    AuthorityKey, CountryCode, EncryptionKey, Fingerprint, Identity, NodeId, SignedRoster,
    Timestamp,
};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use sha2::{Digest, Sha256};

use super::config::SimConfig;

/// Virtual time zero: every run starts at this wall-clock instant (late November 2026).
pub(crate) const START: Timestamp = Timestamp(1_795_000_000_000);
const DAY_MS: u64 = 24 * 3600 * 1000;

/// 32 bytes for seeding an RNG, derived from the run seed, a label and an index. Distinct labels
/// give independent streams, so adding a fault does not shift the workload.
pub(crate) fn derive_seed(seed: u64, label: &str, index: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"quickfreeze-simnet/v1\0");
    hasher.update(seed.to_le_bytes());
    hasher.update(label.as_bytes());
    hasher.update([0u8]);
    hasher.update(index.to_le_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&hasher.finalize());
    out
}

/// A ChaCha8 stream for one purpose of one run.
pub(crate) fn stream(seed: u64, label: &str) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive_seed(seed, label, 0))
}

/// The identity of node `index` in the run with `seed` (the same every time it is rebuilt).
pub(crate) fn identity(seed: u64, index: usize) -> Identity {
    identity_rotated(seed, index, 0)
}

/// Node `index`'s key file after `rotations` runs of `key rotate` (deterministic).
pub(crate) fn identity_rotated(seed: u64, index: usize, rotations: u8) -> Identity {
    let mut identity = Identity::generate(&mut ChaCha20Rng::from_seed(derive_seed(
        seed,
        "identity",
        index as u64,
    )));
    for rotation in 1..=rotations {
        let label = ((index as u64) << 8) | u64::from(rotation);
        // At most a handful of rotations per scenario, far below the key file's limit.
        let _ = identity.rotate(&mut ChaCha20Rng::from_seed(derive_seed(
            seed, "rotation", label,
        )));
    }
    identity
}

/// The run's roster authority key.
pub(crate) fn authority(seed: u64) -> AuthorityKey {
    AuthorityKey::generate(&mut ChaCha20Rng::from_seed(derive_seed(
        seed,
        "authority",
        0,
    )))
}

/// What a simulated node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// A point of contact or central authority, driven by a core, sending and receiving.
    Member,
    /// A headless relay, driven by a core.
    Relay,
    /// The hostile member: no core; the simulator forges its traffic.
    Hostile,
}

/// The generated membership of one run.
pub(crate) struct World {
    pub(crate) kinds: Vec<NodeKind>,
    pub(crate) ids: Vec<NodeId>,
    pub(crate) index_of: BTreeMap<NodeId, usize>,
    pub(crate) roster: Roster,
    pub(crate) signed_roster: Vec<u8>,
    pub(crate) pinned: Fingerprint,
    pub(crate) relay_only: usize,
    /// Whether each node lists listen addresses (relay-only members do not: nobody can dial them).
    pub(crate) dialable: Vec<bool>,
    /// Each node's relays, as indexes.
    pub(crate) relays_of: Vec<Vec<usize>>,
    pub(crate) hostile: Option<usize>,
    /// How many times each node has rotated its keys.
    pub(crate) rotations: Vec<u8>,
    /// The highest revocation notice serial the authority has signed (0: none).
    pub(crate) revocation_serial: u64,
}

impl World {
    /// Member nodes (senders and recipients of the workload).
    pub(crate) fn members(&self) -> usize {
        self.kinds
            .iter()
            .filter(|kind| **kind == NodeKind::Member)
            .count()
    }

    /// The nodes `index` keeps a connection to while both are up, as the daemon does: a member
    /// with each of its relays, a relay with each member that names it (the hostile member is
    /// nobody's neighbour: it has no core to connect).
    pub(crate) fn neighbours(&self, index: usize) -> Vec<usize> {
        if Some(index) == self.hostile {
            return Vec::new();
        }
        let mut out: Vec<usize> = self.relays_of[index].clone();
        for (member, relays) in self.relays_of.iter().enumerate() {
            if relays.contains(&index) && Some(member) != self.hostile && !out.contains(&member) {
                out.push(member);
            }
        }
        out
    }
}

/// Builds identities and the signed roster for `config`.
pub(crate) fn build_world(config: &SimConfig) -> Result<World, String> {
    let mut rng = stream(config.seed, "world");
    let mut countries: Vec<&'static str> = iso_country_codes().collect();
    countries.shuffle(&mut rng);
    let hostile = config.hostile_enabled();
    let total = config.nodes + config.relays + usize::from(hostile);
    let mut kinds = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    let mut encryption = Vec::with_capacity(total);
    for index in 0..total {
        let kind = if index < config.nodes {
            NodeKind::Member
        } else if index < config.nodes + config.relays {
            NodeKind::Relay
        } else {
            NodeKind::Hostile
        };
        let who = identity(config.seed, index);
        kinds.push(kind);
        ids.push(who.node_id());
        encryption.push(who.encryption_public());
    }
    let relay_ids: Vec<NodeId> = ids[config.nodes..config.nodes + config.relays].to_vec();
    // A few members have no addresses: every message to them goes through their relays.
    let relay_only_count = if relay_ids.is_empty() || config.nodes < 5 {
        0
    } else {
        ((config.nodes as f64 * config.relay_only_fraction).round() as usize)
            .clamp(1, config.nodes - 2)
    };
    let mut relay_only: Vec<usize> = (0..config.nodes).collect();
    relay_only.shuffle(&mut rng);
    relay_only.truncate(relay_only_count);
    let mut members = Vec::with_capacity(total);
    for index in 0..total {
        let kind = kinds[index];
        let (role, country) = match kind {
            NodeKind::Member if index < countries.len() => (Role::PointOfContact, countries[index]),
            NodeKind::Member => (Role::CentralAuthority, countries[index % countries.len()]),
            NodeKind::Relay => (
                Role::Relay,
                countries[(index - config.nodes) % countries.len()],
            ),
            NodeKind::Hostile => (Role::CentralAuthority, countries[0]),
        };
        let relays = if kind == NodeKind::Relay || relay_ids.is_empty() {
            Vec::new()
        } else {
            let first = rng.random_range(0..relay_ids.len());
            let mut chosen = vec![relay_ids[first]];
            if relay_ids.len() > 1 && rng.random_bool(0.5) {
                let second = (first + rng.random_range(1..relay_ids.len())) % relay_ids.len();
                chosen.push(relay_ids[second]);
            }
            chosen
        };
        let addresses = if relay_only.contains(&index) {
            Vec::new()
        } else {
            vec![format!("/sim/node/{index}")]
        };
        members.push(Member {
            node_id: ids[index],
            signing_key: None,
            previous_keys: Vec::new(),
            country: CountryCode::parse(country)?,
            authority_name: match kind {
                NodeKind::Member => format!("Simulated {role} {index} ({country})"),
                NodeKind::Relay => format!("Simulated relay {index}"),
                NodeKind::Hostile => format!("Simulated compromised authority {index}"),
            },
            role,
            encryption_key: EncryptionKey(encryption[index]),
            addresses,
            relays,
            valid_from: Timestamp(START.0 - DAY_MS),
            valid_until: START.plus_ms(365 * DAY_MS),
            on_duty_contact: format!("duty-{index}@sim.example.org"),
        });
    }
    let authority = authority(config.seed);
    let roster = Roster {
        network: "quickfreeze-simnet".into(),
        serial: 1,
        issued_at: Timestamp(START.0 - 3600 * 1000),
        expires_at: START.plus_ms(90 * DAY_MS),
        threshold: 1,
        authorities: vec![authority.public()],
        members,
    };
    let mut signed = SignedRoster::new(&roster).map_err(|error| error.to_string())?;
    signed
        .sign(&authority, None)
        .map_err(|error| error.to_string())?;
    let signed_roster = signed.to_bytes().map_err(|error| error.to_string())?;
    let pinned = roster.authority_set_fingerprint();
    let index_of: BTreeMap<NodeId, usize> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index))
        .collect();
    let dialable = roster
        .members
        .iter()
        .map(|member| !member.addresses.is_empty())
        .collect();
    let relays_of = roster
        .members
        .iter()
        .map(|member| {
            member
                .relays
                .iter()
                .filter_map(|relay| index_of.get(relay).copied())
                .collect()
        })
        .collect();
    Ok(World {
        dialable,
        relays_of,
        hostile: hostile.then_some(total - 1),
        kinds,
        ids,
        index_of,
        roster,
        signed_roster,
        pinned,
        relay_only: relay_only_count,
        rotations: vec![0; total],
        revocation_serial: 0,
    })
}
