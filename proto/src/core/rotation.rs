//! Key rotation inside the core: the node signs with the key pair its roster entry names as
//! current, learns the grace end of its rotated-out pairs from the roster, and forgets them once
//! the grace has ended. The shell persists the key file when [`Core::take_keys_changed`] says so.

use quickfreeze_keys::{Identity, Timestamp};

use super::{Core, Store};

impl<S: Store> Core<S> {
    /// The node's keys (the shell rewrites the key file from them).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether the key pairs changed (another pair became active, a grace end was learnt, or a
    /// pair was erased) since the last call: the shell then rewrites the key file.
    pub fn take_keys_changed(&mut self) -> bool {
        std::mem::take(&mut self.keys_changed)
    }

    /// Uses the pair the roster names as this node's current keys. A pair newer than that (a
    /// rotation whose roster is not installed yet) waits unused, so the node keeps working on
    /// the keys every other member believes.
    pub(super) fn follow_roster_keys(&mut self) {
        let Some(member) = self.roster.member(&self.me) else {
            return;
        };
        if self
            .identity
            .follow_roster(&member.current_signing_key(), &member.previous_key_ends())
        {
            self.keys_changed = true;
        }
        if self.config.injected_bugs.forget_rotated_keys_at_once
            && self.identity.erase_expired(Timestamp(u64::MAX)) > 0
        {
            self.keys_changed = true;
        }
    }

    /// Takes up keys re-read from the key file (after `key rotate` while the node runs, when a
    /// roster naming the new keys arrives). Refused, with a reason, for another node's keys.
    pub fn replace_identity(&mut self, identity: Identity) -> Result<(), String> {
        if identity.node_id() != self.me {
            return Err(format!(
                "key file is for node {}, this node is {}",
                identity.node_id(),
                self.me
            ));
        }
        self.identity = identity;
        self.follow_roster_keys();
        Ok(())
    }

    /// Erases rotated-out pairs whose grace ended at or before `now` (also done on every
    /// timeout; shells call it periodically so an idle node forgets them too).
    pub fn forget_expired_keys(&mut self, now: Timestamp) {
        if self.identity.erase_expired(now) > 0 {
            self.keys_changed = true;
        }
    }
}
