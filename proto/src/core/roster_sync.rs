//! Roster spread: every batch carries the sender's roster serial; on seeing a higher one the core
//! asks that peer for its signed roster, verifies it as an update of its own (higher serial, not
//! expired, authority change signed by the previous set) and adopts and stores it.

use quickfreeze_keys::{NodeId, SignedRoster, Timestamp};

use super::work::Item;
use super::{Core, Event, Store};
use crate::frame::Frame;

impl<S: Store> Core<S> {
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
        let result = SignedRoster::from_bytes(bytes)
            .and_then(|signed| signed.verify_update(&self.roster, now));
        match result {
            Ok(roster) => {
                let serial = roster.serial;
                self.roster = roster;
                self.signed_roster = bytes.to_vec();
                self.follow_roster_keys();
                if let Err(error) = self.store.put_roster(bytes) {
                    self.push_event(Event::StoreFailed {
                        reason: error.to_string(),
                    });
                }
                self.push_event(Event::RosterUpdated { serial });
            }
            Err(error) => self.push_event(Event::RosterRejected {
                from: peer,
                reason: error.to_string(),
            }),
        }
    }
}
