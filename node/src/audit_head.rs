//! The signed audit head: the node's statement "my audit trail had `records` records, the last
//! with hash `head`", signed with its node key at every group commit that adds records.
//!
//! The hash chain of `crate::audit` finds an edited, removed or reordered record, but not a
//! chain cut at its end (a shorter chain is consistent on its own) nor one rebuilt after an
//! edit. A signed head kept elsewhere finds both: the chain must still hold record
//! `records - 1` with exactly that hash. The node keeps its latest head in three places:
//!
//! - in the store's meta tree, written with the commit that makes the records durable
//!   (`SledStore::put_audit_head`), so it always matches the chain it was committed with;
//! - in the file [`HEAD_FILE`] of the data directory, rewritten after each commit returned, so
//!   that a store that sled recovered to an earlier state (its records and its meta head rolled
//!   back together) is caught at the next start and by `audit verify`;
//! - with witnesses (`audit verify --witness FILE`): any copy of a head kept outside the node,
//!   such as the head file copied at the end of a shift. A chain that no longer holds a head a
//!   witness saw was cut or rewritten.
//!
//! The signature is by the node's current signing key over
//! `HEAD_DOMAIN_TAG ‖ encode(node, records, head, at, signer)`; a head is believed when that
//! signature verifies and the signer is the node itself or one of its keys in the roster.

use std::path::Path;

use quickfreeze_keys::roster::Roster;
use quickfreeze_keys::{codec, Digest32, Identity, NodeId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::audit::AuditLog;

/// Name of the head file in the data directory.
pub const HEAD_FILE: &str = "audit-head";
/// Domain separation of the signature.
pub const HEAD_DOMAIN_TAG: &[u8] = b"quickfreeze-audit-head-v1";
/// Largest encoded head.
pub const MAX_HEAD_BYTES: u64 = 512;

/// A signed audit head. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The node whose audit trail this is.
    pub node: NodeId,
    /// Records in the trail.
    pub records: u64,
    /// Hash of record `records - 1` (zeros when empty).
    pub head: Digest32,
    /// When it was signed (the node's clock).
    pub at: Timestamp,
    /// The Ed25519 key that signed (the node's signing key at that time).
    pub signer: NodeId,
    /// The signature (64 bytes).
    pub signature: Vec<u8>,
}

impl SignedHead {
    fn signed_bytes(
        node: &NodeId,
        records: u64,
        head: &Digest32,
        at: Timestamp,
        signer: &NodeId,
    ) -> Vec<u8> {
        let body =
            codec::encode(&(node, records, head, at, signer), MAX_HEAD_BYTES).unwrap_or_default();
        let mut bytes = HEAD_DOMAIN_TAG.to_vec();
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Signs `(records, head)` with `identity`'s current key.
    pub fn sign(identity: &Identity, records: u64, head: Digest32, at: Timestamp) -> SignedHead {
        let node = identity.node_id();
        let signer = identity.signing_key();
        let signature = identity.sign(&Self::signed_bytes(&node, records, &head, at, &signer));
        SignedHead {
            node,
            records,
            head,
            at,
            signer,
            signature: signature.to_vec(),
        }
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self, MAX_HEAD_BYTES).unwrap_or_default()
    }

    /// Reads a stored head; the signature is not checked here (see [`SignedHead::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedHead, String> {
        codec::decode(bytes, MAX_HEAD_BYTES)
            .map_err(|error| format!("not a signed audit head ({error})"))
    }

    /// Reads a head file (the node's [`HEAD_FILE`] or a witness's copy).
    pub fn read_file(path: &Path) -> Result<SignedHead, String> {
        let bytes = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Writes a head file atomically (a temporary file renamed over it). Not synced: it must
    /// survive the process, and a head file lost with a power cut is only a warning.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_bytes())?;
        std::fs::rename(&tmp, path)
    }

    /// Checks the signature, and that the signer is the node or one of its keys in `roster`
    /// (current or previous: a head stays valid after its key was rotated out).
    pub fn verify(&self, roster: Option<&Roster>) -> Result<(), String> {
        let signature: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| format!("its signature has {} bytes, not 64", self.signature.len()))?;
        let bytes = Self::signed_bytes(&self.node, self.records, &self.head, self.at, &self.signer);
        if !self.signer.verify(&bytes, &signature) {
            return Err("its signature does not verify: it was altered or forged".into());
        }
        let known = self.signer == self.node
            || roster
                .and_then(|roster| roster.member(&self.node))
                .is_some_and(|member| {
                    member.current_signing_key() == self.signer
                        || member
                            .previous_keys
                            .iter()
                            .any(|previous| previous.signing_key == self.signer)
                });
        if !known {
            return Err(format!(
                "it is signed by {}, which is not a key of node {} in the roster",
                self.signer, self.node
            ));
        }
        Ok(())
    }

    /// Whether `log` still holds what this head names: record `records - 1` with hash `head`.
    /// `Err` says what is wrong (cut at its end, or rewritten).
    pub fn check_chain(&self, log: &AuditLog) -> Result<(), String> {
        if self.records == 0 {
            return Ok(());
        }
        let (records, _) = log.head();
        let last = self.records - 1;
        if records < self.records {
            return Err(format!(
                "the head signed at {} names {} records, but the chain holds only {records}: records were cut from its end (or the store was recovered to an earlier state)",
                self.at, self.records
            ));
        }
        match log.record_hash(last) {
            Ok(Some(hash)) if hash == self.head => Ok(()),
            Ok(Some(_)) => Err(format!(
                "record {last} differs from the one the head signed at {} names: the chain was rewritten",
                self.at
            )),
            Ok(None) => Err(format!(
                "record {last}, named by the head signed at {}, is missing",
                self.at
            )),
            Err(error) => Err(format!("record {last} could not be read: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn test_identity(seed: u64) -> Identity {
        Identity::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn a_head_verifies_and_every_change_breaks_it() {
        let identity = test_identity(3);
        let head = SignedHead::sign(&identity, 7, Digest32([9; 32]), Timestamp(1_000));
        assert_eq!(head.verify(None), Ok(()));
        let decoded = SignedHead::from_bytes(&head.to_bytes()).expect("decode");
        assert_eq!(decoded, head);
        let mut fewer = head.clone();
        fewer.records = 6;
        assert!(fewer.verify(None).is_err());
        let mut other_hash = head.clone();
        other_hash.head = Digest32([8; 32]);
        assert!(other_hash.verify(None).is_err());
        let mut short = head.clone();
        short.signature.pop();
        assert!(short
            .verify(None)
            .expect_err("short signature")
            .contains("63 bytes"));
        // Signed by another node's key, claiming to be this node.
        let stranger = test_identity(4);
        let mut forged = SignedHead::sign(&stranger, 7, Digest32([9; 32]), Timestamp(1_000));
        forged.node = identity.node_id();
        let error = forged.verify(None).expect_err("forged");
        assert!(
            error.contains("signature") || error.contains("not a key"),
            "{error}"
        );
    }

    use crate::audit::{audit_key, AuditFacts, AuditKind};
    use crate::integrity::check_heads;
    use crate::store::{SledStore, StoreOptions, SyncMode};
    use quickfreeze_proto::core::Store;

    struct Node {
        dir: tempfile::TempDir,
        store: SledStore,
        log: AuditLog,
        identity: Identity,
    }

    impl Node {
        fn new() -> Node {
            let dir = tempfile::tempdir().expect("tempdir");
            let options = StoreOptions {
                sync: SyncMode::Flush,
                ..StoreOptions::default()
            };
            let store = SledStore::open(&dir.path().join("store"), &options).expect("store");
            let log = AuditLog::open(&store).expect("log");
            Node {
                dir,
                store,
                log,
                identity: test_identity(5),
            }
        }

        /// Appends `count` records as one commit, signs the head as the daemon does, and
        /// returns it.
        fn commit(&mut self, count: u8, detail: &str) -> SignedHead {
            for _ in 0..count {
                let mut facts = AuditFacts::new(AuditKind::RosterUpdated);
                facts.detail = detail.into();
                self.log.append(Timestamp(5), facts).expect("append");
            }
            self.log.write_pending(&mut self.store).expect("write");
            let (records, head) = self.log.head();
            let signed = SignedHead::sign(&self.identity, records, head, Timestamp(6));
            self.store.put_audit_head(&signed.to_bytes()).expect("put");
            self.store.flush().expect("flush");
            signed
                .write_file(&self.dir.path().join(HEAD_FILE))
                .expect("file");
            signed
        }

        fn problems(&self, witness: Option<&SignedHead>) -> Vec<String> {
            check_heads(&self.store, &self.log, self.dir.path(), witness).0
        }

        fn reopen_log(&mut self) {
            self.log = AuditLog::open(&self.store).expect("reopen");
        }
    }

    #[test]
    fn an_intact_chain_holds_its_signed_heads() {
        let mut node = Node::new();
        let witness = node.commit(3, "first");
        node.commit(4, "second");
        assert_eq!(node.problems(Some(&witness)), Vec::<String>::new());
    }

    #[test]
    fn a_chain_cut_at_its_end_is_found_by_the_head_file() {
        let mut node = Node::new();
        node.commit(3, "first");
        let before = node.store.get_audit_head().expect("read");
        node.commit(2, "second");
        // The store recovered to an earlier state: the last block and the head stored with
        // it are gone together, consistently; only the head file outside remembers.
        node.log.tree().remove(audit_key(3)).expect("cut");
        node.store
            .put_audit_head(&before.expect("there"))
            .expect("roll back");
        node.reopen_log();
        assert!(
            node.log.verify(None).ok(),
            "the cut chain is consistent on its own"
        );
        let problems = node.problems(None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("head file"), "{problems:?}");
        assert!(problems[0].contains("cut"), "{problems:?}");
    }

    #[test]
    fn a_rewritten_chain_or_a_removed_head_is_found() {
        let mut node = Node::new();
        node.commit(3, "original");
        let file = node.dir.path().join(HEAD_FILE);
        let original_file = std::fs::read(&file).expect("file");
        // Rebuilt from scratch with other details, and re-signed in the store: still 3 records.
        node.log.tree().clear().expect("clear");
        node.reopen_log();
        node.commit(3, "rewritten");
        std::fs::write(&file, original_file).expect("the old head file stays");
        let problems = node.problems(None);
        assert!(
            problems.iter().any(|problem| problem.contains("rewritten")),
            "{problems:?}"
        );
        // A store whose signed head was removed while it holds records.
        node.store
            .open_tree("meta")
            .expect("meta")
            .remove(crate::store::KEY_AUDIT_HEAD)
            .expect("remove");
        let problems = node.problems(None);
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("no signed audit head")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_witness_catches_a_rollback_the_node_itself_signed() {
        let mut node = Node::new();
        node.commit(2, "a");
        let witness = node.commit(3, "b");
        // The node's operator rolls the chain back to 2 records and has the node sign that
        // (its store head and its head file agree): only the witness saw more.
        node.log.tree().remove(audit_key(2)).expect("cut");
        node.reopen_log();
        node.commit(0, "");
        assert_eq!(node.problems(None), Vec::<String>::new());
        let problems = node.problems(Some(&witness));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("witness"), "{problems:?}");
        // A witness's head of another node is refused as such.
        let other = SignedHead::sign(&test_identity(6), 1, Digest32([1; 32]), Timestamp(1));
        let problems = node.problems(Some(&other));
        assert!(problems[0].contains("not of this node"), "{problems:?}");
    }
}
