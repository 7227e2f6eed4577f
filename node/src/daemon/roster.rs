//! Which roster the daemon starts with (stored or operator-installed, verified against the pin),
//! which peers the network may talk to, and the revocation notices installed while it was stopped.

use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use quickfreeze_keys::roster::Roster;
use quickfreeze_keys::{Fingerprint, NodeId, SignedRoster, Timestamp};
use quickfreeze_proto::core::{Core, Store};
use tracing::{info, warn};

use super::DaemonError;
use crate::config::files;
use crate::store::SledStore;

/// Loads the roster the node should use: the newer of the one in the store (verified when it was
/// stored) and the operator-installed file (verified against the pin, or as an update).
pub fn load_roster(
    data_dir: &Path,
    store: &SledStore,
    now: Timestamp,
) -> Result<(Roster, Vec<u8>), DaemonError> {
    let stored = store
        .get_roster()
        .map_err(|error| DaemonError::Store(error.to_string()))?
        .map(|bytes| -> Result<(Roster, Vec<u8>), DaemonError> {
            let signed = SignedRoster::from_bytes(&bytes).map_err(|error| DaemonError::Roster(format!("stored roster: {error}")))?;
            let roster = signed
                .verify_self(now)
                .map_err(|error| DaemonError::Roster(format!("stored roster: {error}; install a current one with `quickfreeze roster install`")))?;
            Ok((roster, bytes))
        })
        .transpose()?;
    let file_path = data_dir.join(files::ROSTER);
    let file = match std::fs::read(&file_path) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(DaemonError::Roster(format!(
                "{}: {error}",
                file_path.display()
            )))
        }
    };
    match (stored, file) {
        (None, None) => Err(DaemonError::Roster(format!(
            "no roster: install one with `quickfreeze roster install --data-dir {} FILE`",
            data_dir.display()
        ))),
        (Some(stored), None) => Ok(stored),
        (stored, Some(bytes)) => {
            let signed = SignedRoster::from_bytes(&bytes).map_err(|error| {
                DaemonError::Roster(format!("{}: {error}", file_path.display()))
            })?;
            match stored {
                Some((current, current_bytes)) => {
                    let offered = signed.roster_unverified().map_err(|error| {
                        DaemonError::Roster(format!("{}: {error}", file_path.display()))
                    })?;
                    if offered.serial <= current.serial {
                        return Ok((current, current_bytes));
                    }
                    let roster = signed.verify_update(&current, now).map_err(|error| {
                        DaemonError::Roster(format!("{}: {error}", file_path.display()))
                    })?;
                    Ok((roster, bytes))
                }
                None => {
                    let pin = read_pin(data_dir)?;
                    let roster = signed.verify_pinned(&pin, now).map_err(|error| {
                        DaemonError::Roster(format!("{}: {error}", file_path.display()))
                    })?;
                    Ok((roster, bytes))
                }
            }
        }
    }
}

/// Reads the pinned authority-set fingerprint.
pub fn read_pin(data_dir: &Path) -> Result<Fingerprint, DaemonError> {
    let path = data_dir.join(files::PIN);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        DaemonError::Roster(format!(
            "{}: {error}; pin the roster authorities with `quickfreeze roster install --authority-set FINGERPRINT`",
            path.display()
        ))
    })?;
    text.trim()
        .parse()
        .map_err(|error: String| DaemonError::Roster(format!("{}: {error}", path.display())))
}

/// Each member's peer ids (current, and previous ones still in grace) with its country, so the
/// network's summary lines say "member DE".
pub(super) fn peer_labels(roster: &Roster, now: Timestamp) -> Vec<(PeerId, String)> {
    roster
        .members
        .iter()
        .flat_map(|member| {
            member
                .signing_keys_at(now)
                .filter_map(|key| key.to_peer_id().ok())
                .map(|peer| (peer, member.country.as_str().to_string()))
        })
        .collect()
}

/// The transport PeerId a member uses now: its current signing key, which is its node id until
/// it rotates.
pub(super) fn peer_of(roster: &Roster, node: &NodeId) -> Option<PeerId> {
    roster
        .member(node)
        .map_or(*node, |member| member.current_signing_key())
        .to_peer_id()
        .ok()
}

/// The lasting node id of the member behind a transport PeerId: the one whose current key it
/// is, or whose rotated-out key it is while that key's grace lasts at `now`.
pub(super) fn node_of(roster: &Roster, peer: &PeerId, now: Timestamp) -> Option<NodeId> {
    let key = NodeId::from_peer_id(peer)?;
    roster
        .member_by_signing_key(&key, now)
        .map(|member| member.node_id)
}

/// The peers the network may talk to: every other member's current PeerId and, during a key
/// rotation's grace, its previous PeerIds too (a connection from an old PeerId is the same
/// member), each with the member's roster addresses.
pub(super) fn allowed_peers(
    roster: &Roster,
    me: NodeId,
    now: Timestamp,
) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let mut allowed = Vec::new();
    for member in roster.members.iter().filter(|member| member.node_id != me) {
        let addresses: Vec<Multiaddr> = member
            .addresses
            .iter()
            .filter_map(|text| match text.parse::<Multiaddr>() {
                Ok(address) => Some(address),
                Err(error) => {
                    warn!(member = %member.node_id, address = %text, %error, "roster address is not a multiaddr; skipped");
                    None
                }
            })
            .collect();
        let current = member.current_signing_key();
        for key in member.signing_keys_at(now) {
            let Ok(peer) = key.to_peer_id() else {
                continue;
            };
            // Only the current key is dialled at the roster addresses (an old PeerId there
            // would fail the handshake); old ones may still connect to us.
            let dial = if key == current {
                addresses.clone()
            } else {
                Vec::new()
            };
            allowed.push((peer, dial));
        }
    }
    allowed
}

/// Applies the revocation notices `roster revoke --install` left in the data directory while the
/// node was stopped. Each is verified against the roster in use; a notice already held changes
/// nothing, and one that does not verify is reported (the core raises an event) and left in place.
pub(super) fn apply_installed_revocations(data_dir: &Path, core: &mut Core<SledStore>) {
    let dir = data_dir.join(files::REVOCATIONS);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(bytes) = std::fs::read(&path) else {
            warn!(path = %path.display(), "cannot read installed revocation notice");
            continue;
        };
        match core.apply_revocation(None, &bytes) {
            Ok(Some(serial)) => {
                info!(serial, path = %path.display(), "installed revocation notice applied")
            }
            Ok(None) => {}
            Err(error) => {
                warn!(path = %path.display(), %error, "installed revocation notice refused")
            }
        }
    }
}
