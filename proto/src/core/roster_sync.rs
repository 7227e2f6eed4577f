//! Roster spread: every batch carries the sender's roster serial, and members tell each other
//! their roster and revocation serials ([`Frame::Serials`]) when a connection comes up and every
//! `serial_gossip_interval_ms` on open connections, so nothing waits for message traffic. On
//! seeing a higher roster serial the core asks that peer for its signed roster, verifies it as an
//! update of its own (higher serial, not expired, authority change signed by the previous set),
//! adopts and stores it, and tells every connected member, which fetch it in turn. An operator's
//! roster enters the same way through [`Core::install_roster`].

use quickfreeze_keys::{NodeId, RosterError, SignedRoster, Timestamp};

use super::work::Item;
use super::{Core, Event, Store};
use crate::frame::Frame;

impl<S: Store> Core<S> {
    /// A connection to `peer` came up: it is seen (backoff reset) and told this node's serials.
    pub fn handle_connected(&mut self, now: Timestamp, peer: NodeId) {
        self.handle_peer_seen(now, peer);
        if self.roster.member(&peer).is_none() || peer == self.me {
            return;
        }
        self.connected.insert(peer);
        self.tell_serials(peer);
    }

    /// The last connection to `peer` closed.
    pub fn handle_disconnected(&mut self, peer: NodeId) {
        self.connected.remove(&peer);
    }

    /// Members this core believes connected (as told by the shell, minus revoked members).
    pub fn connected_peers(&self) -> impl Iterator<Item = &NodeId> {
        self.connected.iter()
    }

    /// Installs an operator's signed roster into the running core: verified as an update of the
    /// roster in use, adopted, stored and told to every connected member. Returns the serial.
    pub fn install_roster(&mut self, now: Timestamp, bytes: &[u8]) -> Result<u64, RosterError> {
        if bytes == self.signed_roster.as_slice() {
            // Already in use (e.g. it arrived from a peer first): not an error.
            return Ok(self.roster.serial);
        }
        let roster = SignedRoster::from_bytes(bytes)
            .and_then(|signed| signed.verify_update(&self.roster, now))?;
        Ok(self.adopt_roster(roster, bytes))
    }

    fn adopt_roster(&mut self, roster: quickfreeze_keys::Roster, bytes: &[u8]) -> u64 {
        let serial = roster.serial;
        self.roster = roster;
        self.signed_roster = bytes.to_vec();
        self.follow_roster_keys();
        if let Err(error) = self.store.put_roster(bytes) {
            self.push_event(Event::StoreFailed {
                reason: error.to_string(),
            });
        }
        self.enforce_revocations("revocation notice held when the roster changed");
        let roster = &self.roster;
        self.connected.retain(|peer| roster.member(peer).is_some());
        self.push_event(Event::RosterUpdated { serial });
        self.tell_all_serials();
        serial
    }

    /// Tells every connected member this node's serials (at each gossip interval, and at once
    /// after a change).
    fn tell_all_serials(&mut self) {
        let peers: Vec<NodeId> = self.connected.iter().copied().collect();
        for peer in peers {
            self.tell_serials(peer);
        }
    }

    fn tell_serials(&mut self, peer: NodeId) {
        if self.config.injected_bugs.no_serial_gossip {
            return;
        }
        let state = self.peers.entry(peer).or_default();
        if state.in_flight >= self.config.max_in_flight_per_peer {
            return;
        }
        let frame = Frame::Serials {
            revocation_serial: self.revocation_serial(),
        };
        self.send(peer, vec![frame], vec![Item::Serials]);
    }

    /// Called from `handle_timeout`: tells connected members the serials when the interval is up.
    pub(super) fn gossip_if_due(&mut self, now: Timestamp) {
        if now < self.gossip_at {
            return;
        }
        if self.gossip_at.0 != 0 {
            self.tell_all_serials();
        }
        self.gossip_at = now.plus_ms(self.config.serial_gossip_interval_ms.max(1));
    }

    /// When the next serial gossip is due (`None` with no connected member).
    pub(super) fn gossip_timeout(&self) -> Option<Timestamp> {
        if self.connected.is_empty() || self.config.injected_bugs.no_serial_gossip {
            None
        } else {
            Some(self.gossip_at)
        }
    }

    pub(super) fn note_roster_serial(&mut self, peer: NodeId, serial: u64) {
        if serial <= self.roster.serial {
            return;
        }
        let state = self.peers.entry(peer).or_default();
        if state.roster_request_pending || state.in_flight >= self.config.max_in_flight_per_peer {
            return;
        }
        state.roster_request_pending = true;
        self.send(peer, vec![Frame::RosterRequest], vec![Item::RosterRequest]);
    }

    pub(super) fn offered_roster(&mut self, now: Timestamp, peer: NodeId, bytes: &[u8]) {
        // Two fetches can race (this node learnt the same roster from another member meanwhile):
        // a roster no newer than the one in use is not news and not misbehaviour.
        let stale = SignedRoster::from_bytes(bytes)
            .and_then(|signed| signed.roster_unverified())
            .is_ok_and(|offered| {
                offered.network == self.roster.network && offered.serial <= self.roster.serial
            });
        if stale {
            return;
        }
        let result = SignedRoster::from_bytes(bytes)
            .and_then(|signed| signed.verify_update(&self.roster, now));
        match result {
            Ok(roster) => {
                self.adopt_roster(roster, bytes);
            }
            Err(error) => self.push_event(Event::RosterRejected {
                from: peer,
                reason: error.to_string(),
            }),
        }
    }
}
