//! `evidence export` and `evidence verify`: a case's evidence file for a court, and its check
//! on any machine, offline.
//!
//! Export asks the running node (a node runs around the clock and sled locks its store, so
//! making officers stop it to export would be wrong), and reads the store directly, with the
//! node's key file, only when no node runs. Verify needs nothing but the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use quickfreeze_keys::{Fingerprint, Identity, Timestamp};

use super::access::Access;
use super::{print_json, unexpected};
use crate::config::files;
use crate::control::{ControlRequest, ControlResponse};

/// `evidence` commands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write one self-contained evidence file for a request's thread: the exact envelopes, the
    /// plaintext, every receipt and status with its signature, the signed roster, the case's
    /// audit records and the signed audit head. The file is an HTML page that prints, with the
    /// signed data inside it.
    Export {
        /// The message: its id, or a unique prefix of at least 6 hex digits (a status reply
        /// exports the thread of the request it answers).
        id: String,
        /// The file to write (created new, mode 0600), e.g. case-77.evidence.html.
        #[arg(long)]
        out: PathBuf,
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
    /// Check an evidence file on any machine, offline: every digest and signature, the roster
    /// against its authority set, the receipts against the exact envelope bytes, the audit
    /// chain up to the signed head. Says what is proven and by whom; exits non-zero and names
    /// what failed otherwise.
    Verify {
        /// The evidence file.
        file: PathBuf,
        /// The roster authority's authority-set fingerprint, obtained by another channel
        /// (e.g. 1a2b-3c4d-…). Without it the fingerprint found is printed to be compared.
        #[arg(long, value_name = "FINGERPRINT")]
        authority_set: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn evidence(command: EvidenceCommand) -> Result<()> {
    match command {
        EvidenceCommand::Export { id, out, data_dir } => export(&id, &out, &data_dir),
        EvidenceCommand::Verify {
            file,
            authority_set,
            json,
        } => verify(&file, authority_set.as_deref(), json),
    }
}

fn export(id: &str, out: &Path, data_dir: &Path) -> Result<()> {
    let file = match Access::open(data_dir)? {
        Access::Daemon(mut client) => {
            match client.request(&ControlRequest::EvidenceExport {
                message_id: id.to_string(),
            })? {
                ControlResponse::Evidence { file } => file,
                other => return unexpected(other),
            }
        }
        Access::Direct { store, log, .. } => {
            use quickfreeze_proto::core::Store;
            let key_path = data_dir.join(files::KEY);
            let identity = Identity::read_key_file(&key_path).with_context(|| {
                format!("{}: the node's key signs the export", key_path.display())
            })?;
            let roster = store.get_roster()?.ok_or_else(|| {
                anyhow!("the store holds no roster yet: nothing was sent or received")
            })?;
            let source = crate::evidence::EvidenceSource {
                store: &store,
                audit: log.tree(),
                identity: &identity,
                signed_roster: &roster,
            };
            crate::evidence::collect(&source, id, Timestamp::now())
                .map_err(|message| anyhow!(message))?
        }
    };
    // Check our own output before handing it over: a file that does not verify must not leave.
    let verified = crate::evidence::verify(file.as_bytes(), None).map_err(|finding| {
        anyhow!("the node produced an evidence file that does not verify ({finding}); report this")
    })?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut handle = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("{}: cannot create (it must not exist yet)", out.display()))?;
        handle.write_all(file.as_bytes())?;
        handle.sync_all()?;
    }
    outln!(
        "evidence for request {}{} written to {} ({} bytes, SHA-256 {})",
        verified.message_id,
        verified
            .case_reference
            .as_ref()
            .map(|case| format!(" (case {case})"))
            .unwrap_or_default(),
        out.display(),
        file.len(),
        crate::evidence::sha256_hex(file.as_bytes())
    );
    outln!(
        "check it anywhere with: quickfreeze evidence verify {} --authority-set {}",
        out.display(),
        verified.authority_set
    );
    Ok(())
}

fn verify(file: &Path, authority_set: Option<&str>, json: bool) -> Result<()> {
    let pinned: Option<Fingerprint> = authority_set
        .map(|text| {
            text.parse()
                .map_err(|error| anyhow!("--authority-set {text}: {error}"))
        })
        .transpose()?;
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    match crate::evidence::verify(&bytes, pinned.as_ref()) {
        Ok(verified) => {
            if json {
                print_json(&serde_json::json!({ "ok": true, "result": verified }))?;
            } else {
                outln!("VERIFIED  {}", file.display());
                outln!(
                    "request   {}{}",
                    verified.message_id,
                    verified
                        .case_reference
                        .as_ref()
                        .map(|case| format!("   case {case}"))
                        .unwrap_or_default()
                );
                outln!("file      SHA-256 {}", crate::evidence::sha256_hex(&bytes));
                if !verified.authority_set_checked {
                    outln!(
                        "WARNING   the roster's authority set is {}; it was NOT compared with a fingerprint you trust. Get the roster authority's fingerprint by another channel and run again with --authority-set",
                        verified.authority_set
                    );
                }
                outln!("What this file proves:");
                for (index, statement) in verified.statements.iter().enumerate() {
                    outln!("{:>3}. {statement}", index + 1);
                }
            }
            Ok(())
        }
        Err(finding) => {
            if json {
                print_json(&serde_json::json!({ "ok": false, "failed": finding }))?;
            }
            bail!(
                "NOT VERIFIED: {finding}. The file was changed or damaged after it was exported, or it is not genuine: do not rely on it; ask the exporting authority for a new export"
            )
        }
    }
}
