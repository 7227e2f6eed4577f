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

/// Each member's peer id with its country, so the network's summary lines say "member DE".
pub(super) fn peer_labels(roster: &Roster) -> Vec<(PeerId, String)> {
    roster
        .members
        .iter()
        .filter_map(|member| {
            let peer = member.node_id.to_peer_id().ok()?;
            Some((peer, member.country.as_str().to_string()))
        })
        .collect()
}

pub(super) fn allowed_peers(roster: &Roster, me: NodeId) -> Vec<(PeerId, Vec<Multiaddr>)> {
    roster
        .members
        .iter()
        .filter(|member| member.node_id != me)
        .filter_map(|member| {
            let peer = member.node_id.to_peer_id().ok()?;
            let addresses = member
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
            Some((peer, addresses))
        })
        .collect()
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
