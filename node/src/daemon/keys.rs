//! Key rotation in the daemon: the key file follows the roster (which pair is in use, when the
//! rotated-out ones stop), pairs past their grace are erased from it at start and periodically,
//! keys made by `quickfreeze key rotate` while the node runs are taken up when a roster naming
//! them arrives, and the peers allowed to connect follow the grace windows.

use std::path::Path;

use quickfreeze_keys::{Identity, KeyError, Timestamp};
use quickfreeze_proto::core::{Core, Store};
use tracing::{info, warn};

use super::roster::{allowed_peers, peer_labels};
use super::Daemon;
use crate::config::files;

/// Rewrites the key file after the core's key pairs changed. The file is read again first and
/// the same roster rules applied to it, so that a pair `key rotate` added while the node ran
/// is kept rather than overwritten with the daemon's older view.
pub(super) fn persist_key_file<S: Store>(
    data_dir: &Path,
    core: &Core<S>,
    now: Timestamp,
) -> Result<(), KeyError> {
    let path = data_dir.join(files::KEY);
    let mut on_disk = Identity::read_key_file(&path)?;
    if let Some(member) = core.roster().member(&core.node_id()) {
        on_disk.follow_roster(&member.current_signing_key(), &member.previous_key_ends());
    }
    let erased = on_disk.erase_expired(now);
    on_disk.replace_key_file(&path)?;
    if erased > 0 {
        info!(
            erased,
            "rotated-out keys past their grace erased from the key file"
        );
    }
    Ok(())
}

impl Daemon {
    /// Periodic: erases rotated-out keys whose grace ended, and stops allowing their PeerIds.
    pub(super) fn maintain_keys(&mut self) {
        let now = Timestamp::now();
        self.core.forget_expired_keys(now);
        if self.core.take_keys_changed() {
            if let Err(error) = persist_key_file(&self.data_dir, &self.core, now) {
                warn!(%error, "cannot rewrite the key file; old keys stay on disk until the next try");
            }
        }
        let grace_ended = self.core.roster().members.iter().any(|member| {
            member.previous_keys.iter().any(|previous| {
                previous.valid_until > self.keys_checked_at && previous.valid_until <= now
            })
        });
        self.keys_checked_at = now;
        if grace_ended {
            self.refresh_allowed_peers(now);
        }
    }

    /// The peers the network may talk to, after a roster change or the end of a grace.
    pub(super) fn refresh_allowed_peers(&mut self, now: Timestamp) {
        let peers = allowed_peers(self.core.roster(), self.core.node_id(), now);
        self.network.set_allowed_peers(peers);
        self.network
            .set_peer_labels(peer_labels(self.core.roster(), now));
    }

    /// After a roster update: if it names keys for this node that the running node does not
    /// hold (made by `key rotate` while it ran), re-reads the key file and takes them up for
    /// signing and opening. The transport identity (PeerId) changes only at the next start.
    pub(super) fn take_up_rotated_keys(&mut self) {
        let Some(wanted) = self
            .core
            .roster()
            .member(&self.core.node_id())
            .map(|member| member.current_signing_key())
        else {
            return;
        };
        if self.core.identity().signing_key() == wanted {
            if self.core.take_keys_changed() {
                if let Err(error) = persist_key_file(&self.data_dir, &self.core, Timestamp::now()) {
                    warn!(%error, "cannot rewrite the key file");
                }
            }
            return;
        }
        let path = self.data_dir.join(files::KEY);
        match Identity::read_key_file(&path) {
            Ok(identity) => {
                if let Err(reason) = self.core.replace_identity(identity) {
                    warn!(%reason, "keys in the key file not taken up");
                    return;
                }
                if self.core.identity().signing_key() == wanted {
                    warn!(
                        node = %self.core.node_id(),
                        "the roster now names this node's rotated keys; they sign and open from now on. Restart the node so that it also connects under its new PeerId"
                    );
                    let _ = self.core.take_keys_changed();
                    if let Err(error) =
                        persist_key_file(&self.data_dir, &self.core, Timestamp::now())
                    {
                        warn!(%error, "cannot rewrite the key file");
                    }
                } else {
                    warn!(
                        node = %self.core.node_id(),
                        "the roster names a signing key for this node that its key file does not hold; this node keeps its current keys. Check the roster entry with the roster authority"
                    );
                }
            }
            Err(error) => warn!(%error, "cannot re-read the key file after a roster update"),
        }
    }
}
