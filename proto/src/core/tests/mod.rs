//! Unit tests of the delivery core over a tiny synchronous virtual network.
//!
//! `Net` delivers each transmit at once (or fails it when the link is cut or the peer is down),
//! flushes every store before answers leave, and steps virtual time to the earliest timeout. The
//! full hostile simulation lives in the `simnet` crate; these tests pin individual rules, one file
//! per topic: `delivery`, `durability`, `relay`, `limits`, `scheduling`, `roster` and
//! `rotation`.

use std::collections::BTreeSet;

use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{
    AuthorityKey, CountryCode, EncryptionKey, Identity, NodeId, SignedRoster, Timestamp,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::envelope::Envelope;
use crate::payload::{example_emergency, example_free_text, example_preservation, Payload, Status};

const START: Timestamp = Timestamp(1_795_000_000_000);
const DAY_MS: u64 = 24 * 3600 * 1000;

fn identity(index: usize) -> Identity {
    identity_rotated(index, 0)
}

/// Node `index`'s key file after `rotations` runs of `key rotate` (deterministic).
fn identity_rotated(index: usize, rotations: u8) -> Identity {
    let mut seed = [0u8; 32];
    seed[0] = index as u8;
    seed[1] = 0xA5;
    let mut identity = Identity::generate(&mut ChaCha20Rng::from_seed(seed));
    for rotation in 1..=rotations {
        seed[2] = rotation;
        identity
            .rotate(&mut ChaCha20Rng::from_seed(seed))
            .expect("rotate");
    }
    identity
}

struct Node {
    core: Option<Core<MemoryStore>>,
    store_if_down: Option<MemoryStore>,
    id: NodeId,
}

struct Net {
    now: Timestamp,
    nodes: Vec<Node>,
    roster: Roster,
    signed: Vec<u8>,
    cut: BTreeSet<(usize, usize)>,
    events: Vec<(usize, Event)>,
    config: CoreConfig,
    /// How many times each node has run `key rotate` (its key file on restart).
    rotations: Vec<u8>,
}

/// Node 0 is a relay; nodes 1.. are points of contact that name it as their relay.
fn net(points_of_contact: usize) -> Net {
    net_with(points_of_contact, CoreConfig::default())
}

fn net_with(points_of_contact: usize, config: CoreConfig) -> Net {
    let countries = ["BE", "DE", "FR", "JP", "US", "BR", "KE", "NO"];
    let relay = identity(0);
    let mut members = Vec::new();
    for (index, country) in countries.iter().enumerate().take(points_of_contact + 1) {
        let who = identity(index);
        members.push(Member {
            node_id: who.node_id(),
            signing_key: None,
            previous_keys: Vec::new(),
            country: CountryCode::parse(country).expect("valid"),
            authority_name: format!("node {index}"),
            role: if index == 0 {
                Role::Relay
            } else {
                Role::PointOfContact
            },
            encryption_key: EncryptionKey(who.encryption_public()),
            addresses: vec![format!("/memory/{index}")],
            relays: if index == 0 {
                vec![]
            } else {
                vec![relay.node_id()]
            },
            valid_from: Timestamp(START.0 - DAY_MS),
            valid_until: Timestamp(START.0 + 365 * DAY_MS),
            on_duty_contact: "duty@example.org".into(),
        });
    }
    let authority = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]));
    let roster = Roster {
        network: "unit".into(),
        serial: 1,
        issued_at: START,
        expires_at: Timestamp(START.0 + 90 * DAY_MS),
        threshold: 1,
        authorities: vec![authority.public()],
        members,
    };
    let mut signed = SignedRoster::new(&roster).expect("valid roster");
    signed.sign(&authority, None).expect("sign");
    let signed = signed.to_bytes().expect("encode");
    let mut net = Net {
        now: START,
        nodes: Vec::new(),
        roster,
        signed,
        cut: BTreeSet::new(),
        events: Vec::new(),
        config,
        rotations: vec![0; points_of_contact + 1],
    };
    for index in 0..=points_of_contact {
        let core = net.build(index, MemoryStore::new());
        net.nodes.push(Node {
            id: core.node_id(),
            core: Some(core),
            store_if_down: None,
        });
    }
    net
}

impl Net {
    fn build(&self, index: usize, store: MemoryStore) -> Core<MemoryStore> {
        // A rotated node is a new process: a fresh RNG, so it does not replay message ids.
        let mut rng_seed = [index as u8; 32];
        rng_seed[1] = rng_seed[1].wrapping_add(self.rotations[index].wrapping_mul(16));
        Core::new(
            identity_rotated(index, self.rotations[index]),
            self.roster.clone(),
            self.signed.clone(),
            self.config.clone(),
            store,
            rng_seed,
        )
        .expect("core")
    }

    fn core(&mut self, index: usize) -> &mut Core<MemoryStore> {
        self.nodes[index].core.as_mut().expect("node is up")
    }

    fn index_of(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .expect("member")
    }

    fn crash(&mut self, index: usize) {
        let core = self.nodes[index].core.take().expect("up");
        let mut store = core.into_store();
        store.crash();
        self.nodes[index].store_if_down = Some(store);
    }

    fn restart(&mut self, index: usize) {
        let store = self.nodes[index].store_if_down.take().expect("down");
        let core = self.build(index, store);
        self.nodes[index].core = Some(core);
    }

    fn submit(&mut self, from: usize, to: usize, payload: Payload) -> MessageId {
        let now = self.now;
        let to_id = self.nodes[to].id;
        let id = self
            .core(from)
            .submit(now, to_id, payload)
            .expect("accepted");
        self.core(from).store_mut().flush().expect("flush");
        id
    }

    /// One round: timeouts, then every transmit delivered or failed. Returns whether anything moved.
    fn round(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for index in 0..self.nodes.len() {
            if let Some(core) = self.nodes[index].core.as_mut() {
                if core.poll_timeout().is_some_and(|at| at <= now) {
                    core.handle_timeout(now);
                }
                core.store_mut().flush().expect("flush");
            }
        }
        for from in 0..self.nodes.len() {
            let transmits: Vec<Transmit> = match self.nodes[from].core.as_mut() {
                Some(core) => std::iter::from_fn(|| core.poll_transmit()).collect(),
                None => Vec::new(),
            };
            for transmit in transmits {
                moved = true;
                let to = self.index_of(transmit.to);
                let from_id = self.nodes[from].id;
                let reachable = !self.cut.contains(&(from, to)) && self.nodes[to].core.is_some();
                if !reachable {
                    self.core(from)
                        .handle_request_failed(now, transmit.request_id, "unreachable");
                    continue;
                }
                let response = self.core(to).handle_request(now, from_id, &transmit.bytes);
                self.core(to).store_mut().flush().expect("flush");
                if self.cut.contains(&(to, from)) {
                    self.core(from).handle_request_failed(
                        now,
                        transmit.request_id,
                        "response lost",
                    );
                } else {
                    self.core(from)
                        .handle_response(now, transmit.request_id, &response);
                }
                self.core(from).store_mut().flush().expect("flush");
            }
        }
        for index in 0..self.nodes.len() {
            if let Some(core) = self.nodes[index].core.as_mut() {
                while let Some(event) = core.poll_event() {
                    self.events.push((index, event));
                }
            }
        }
        moved
    }

    /// Runs rounds, stepping time to the next timeout, until `until` or nothing is left to do.
    fn run_for(&mut self, duration_ms: u64) {
        let until = self.now.plus_ms(duration_ms);
        for _ in 0..100_000 {
            if self.round() {
                continue;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|node| node.core.as_ref().and_then(Core::poll_timeout))
                .min();
            match next {
                Some(at) if at <= until => self.now = at.max(self.now),
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("network did not settle");
    }

    fn outbox_state(&mut self, from: usize, id: MessageId) -> OutboxState {
        self.core(from)
            .store()
            .get_outbox(&id)
            .expect("store")
            .expect("entry")
            .state
    }

    fn inbox_count(&mut self, at: usize, sender: usize, id: MessageId) -> usize {
        let sender = self.nodes[sender].id;
        self.core(at)
            .store()
            .inbox_entries()
            .expect("store")
            .iter()
            .filter(|entry| entry.sender == sender && entry.message_id == id)
            .count()
    }

    fn inbox_count_down(&self, at: usize) -> usize {
        self.nodes[at]
            .store_if_down
            .as_ref()
            .expect("down")
            .inbox_entries()
            .expect("store")
            .len()
    }

    fn has_event(&self, node: usize, wanted: impl Fn(&Event) -> bool) -> bool {
        self.events
            .iter()
            .any(|(index, event)| *index == node && wanted(event))
    }
}

mod delivery;
mod durability;
mod limits;
mod relay;
mod roster;
mod rotation;
mod scheduling;
mod trust;
