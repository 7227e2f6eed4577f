//! Shared fixture for the fuzz targets: the same deterministic roster and identities as
//! `proto/tests/wire.rs`, so the golden vectors (the seed corpus) are valid inputs that open and
//! verify. Keep the two in sync: if the seeds stop opening, the fuzzers only see the error paths.

use std::sync::OnceLock;

use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{
    AuthorityKey, CountryCode, EncryptionKey, Identity, NodeId, SignedRoster, Timestamp,
};
use quickfreeze_proto::envelope::AcceptPolicy;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The fixture's reference time (as in `wire.rs`).
pub const START: Timestamp = Timestamp(1_795_000_000_000);
const HOUR_MS: u64 = 3600 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// When the targets open and verify: an hour after the golden envelopes were created.
pub const NOW: Timestamp = Timestamp(START.0 + HOUR_MS);

/// Identity indices (as in `wire.rs`).
pub const RELAY: u8 = 0;
/// Sender of the golden preservation request.
pub const A: u8 = 1;
/// Its recipient.
pub const B: u8 = 2;
/// A third point of contact.
pub const C: u8 = 3;
const IDLE_RELAY: u8 = 4;
const LATE: u8 = 5;
const RETIRED: u8 = 6;

/// A deterministic identity (seed `[index, 0x77, 0, ...]`).
pub fn generate_identity(index: u8) -> Identity {
    let mut seed = [0u8; 32];
    seed[0] = index;
    seed[1] = 0x77;
    Identity::generate(&mut ChaCha20Rng::from_seed(seed))
}

/// The roster authority of the fixture.
pub fn authority() -> AuthorityKey {
    AuthorityKey::generate(&mut ChaCha20Rng::from_seed([0xAA; 32]))
}

/// Everything a target needs, built once per process.
pub struct World {
    /// Identities 0..10.
    pub identities: Vec<Identity>,
    /// The roster.
    pub roster: Roster,
    /// Its signed encoding.
    pub signed_roster: Vec<u8>,
    /// Default acceptance policy.
    pub policy: AcceptPolicy,
}

impl World {
    /// Identity `index`.
    pub fn identity(&self, index: u8) -> &Identity {
        &self.identities[usize::from(index)]
    }

    /// Node id of identity `index`.
    pub fn id(&self, index: u8) -> NodeId {
        self.identity(index).node_id()
    }

    /// The identity holding `node`, or B when none does (so every envelope gets opened by someone).
    pub fn identity_for(&self, node: &NodeId) -> &Identity {
        self.identities
            .iter()
            .find(|identity| identity.node_id() == *node)
            .unwrap_or_else(|| self.identity(B))
    }
}

fn member(identities: &[Identity], index: u8, country: &str, role: Role, relays: &[u8]) -> Member {
    let who = &identities[usize::from(index)];
    Member {
        node_id: who.node_id(),
        signing_key: None,
        previous_keys: Vec::new(),
        country: CountryCode::parse(country).expect("valid country"),
        authority_name: format!("wire test node {index}"),
        role,
        encryption_key: EncryptionKey(who.encryption_public()),
        addresses: vec![format!("/ip4/127.0.0.1/tcp/{}", 4000 + u16::from(index))],
        relays: relays
            .iter()
            .map(|relay| identities[usize::from(*relay)].node_id())
            .collect(),
        valid_from: Timestamp(START.0 - 30 * DAY_MS),
        valid_until: Timestamp(START.0 + 365 * DAY_MS),
        on_duty_contact: "+00 555 0100".into(),
    }
}

/// The fixture, built on first use.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let identities: Vec<Identity> = (0..10).map(generate_identity).collect();
        let mut late = member(&identities, LATE, "JP", Role::PointOfContact, &[]);
        late.valid_from = Timestamp(START.0 + 10 * DAY_MS);
        let mut retired = member(&identities, RETIRED, "US", Role::PointOfContact, &[]);
        retired.valid_until = Timestamp(START.0 - HOUR_MS);
        let roster = Roster {
            network: "wire-tests".into(),
            serial: 7,
            issued_at: Timestamp(START.0 - DAY_MS),
            expires_at: Timestamp(START.0 + 90 * DAY_MS),
            threshold: 1,
            authorities: vec![authority().public()],
            members: vec![
                member(&identities, RELAY, "NL", Role::Relay, &[]),
                member(&identities, A, "BE", Role::PointOfContact, &[]),
                member(&identities, B, "DE", Role::PointOfContact, &[RELAY]),
                member(&identities, C, "FR", Role::PointOfContact, &[RELAY]),
                member(&identities, IDLE_RELAY, "NL", Role::Relay, &[]),
                late,
                retired,
            ],
        };
        let mut signed = SignedRoster::new(&roster).expect("valid roster");
        signed.sign(&authority(), None).expect("sign");
        World {
            signed_roster: signed.to_bytes().expect("encode"),
            identities,
            roster,
            policy: AcceptPolicy::default(),
        }
    })
}
