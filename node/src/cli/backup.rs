//! `backup` and `restore`: a consistent backup of a node while it runs (asked of the daemon over
//! its control socket) or while it is stopped (its store opened directly, sled's lock keeping a
//! node from starting meanwhile), and its restore into a new data directory followed by the
//! checks that say whether the restored node can start.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use quickfreeze_keys::{Identity, Timestamp};

use super::{print_json, unexpected};
use crate::backup::{self, BackupCounts, Snapshot};
use crate::config::{files, NodeConfig};
use crate::control::{ClientError, ControlClient, ControlRequest, ControlResponse};

/// How long the daemon may take to write a backup.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(1800);

/// `quickfreeze backup --data-dir DIR --out FILE [--with-keys]`.
pub(super) fn backup(data_dir: &Path, out: &Path, with_keys: bool, json: bool) -> Result<()> {
    if out.exists() {
        bail!(
            "{} exists already; choose a new file name (a backup never overwrites one)",
            out.display()
        );
    }
    let (counts, how) = match ControlClient::connect(data_dir, BACKUP_TIMEOUT) {
        Ok(mut client) => {
            let response = client.request(&ControlRequest::Backup { with_keys })?;
            let ControlResponse::BackupWritten { path, counts } = response else {
                unexpected(response)?;
                unreachable!("unexpected() always fails");
            };
            let staging = PathBuf::from(path);
            let copied = copy_verified(&staging, out);
            let _ = fs::remove_file(&staging);
            copied?;
            (
                counts,
                "from the running node, at one instant between two of its loop turns",
            )
        }
        Err(ClientError::NoSocket { .. } | ClientError::NotRunning { .. }) => (
            offline(data_dir, out, with_keys)?,
            "from the stopped node's store",
        ),
        Err(other) => return Err(other.into()),
    };
    if json {
        return print_json(&serde_json::json!({
            "file": out.display().to_string(),
            "with_keys": with_keys,
            "counts": counts,
        }));
    }
    outln!("backup       {} ({how})", out.display());
    outln!(
        "holds        {} inbox and {} outbox messages, {} store entries in all, {} files",
        counts.inbox,
        counts.outbox,
        counts.entries,
        counts.files
    );
    if with_keys {
        outln!("KEYS         INCLUDED: this file holds the node's PRIVATE KEYS (written mode 0600). Keep it as carefully as the key file itself.");
    } else {
        outln!("KEYS         NOT INCLUDED: keep a separate backup of {} (made once, and after every `key rotate`); a restored node cannot start without it.", files::KEY);
    }
    Ok(())
}

/// Backup of a stopped node: the store opened directly.
fn offline(data_dir: &Path, out: &Path, with_keys: bool) -> Result<BackupCounts> {
    let store_dir = data_dir.join(files::STORE);
    if !store_dir.is_dir() {
        bail!(
            "no node is running with data directory {} and it holds no store ({} does not exist); pass the node's --data-dir",
            data_dir.display(),
            store_dir.display()
        );
    }
    let options = store_options(data_dir)?;
    let store = crate::store::SledStore::open(&store_dir, &options).map_err(|error| {
        anyhow!("the node is not running and its store could not be opened: {error}")
    })?;
    eprintln!(
        "note: no node is running with {}; backing up its store directly",
        data_dir.display()
    );
    let node_id = Identity::read_key_file(&data_dir.join(files::KEY))
        .ok()
        .map(|identity| identity.node_id().to_string());
    let snapshot = Snapshot::take(
        data_dir,
        store.database(),
        with_keys,
        node_id,
        Timestamp::now().0,
    )?;
    Ok(snapshot.write_to(out)?)
}

fn store_options(data_dir: &Path) -> Result<crate::store::StoreOptions> {
    let config_path = data_dir.join(files::CONFIG);
    Ok(if config_path.exists() {
        NodeConfig::load(&config_path)?.store_options()
    } else {
        crate::store::StoreOptions::default()
    })
}

/// Checks the daemon's staging file from end to end, copies it to `out` atomically and checks
/// the copy; a copy that does not verify is removed again.
fn copy_verified(staging: &Path, out: &Path) -> Result<()> {
    backup::verify(staging).context("the node's backup file does not verify")?;
    backup::write_atomically(out, |writer: &mut dyn Write| {
        let mut source = fs::File::open(staging).map_err(|source| backup::BackupError::Io {
            what: "opening",
            path: staging.to_path_buf(),
            source,
        })?;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = source
                .read(&mut buffer)
                .map_err(|source| backup::BackupError::Io {
                    what: "reading",
                    path: staging.to_path_buf(),
                    source,
                })?;
            if read == 0 {
                return Ok(());
            }
            writer.write_all(&buffer[..read]).map_err(|error| {
                backup::BackupError::Other(format!("writing the backup: {error}"))
            })?;
        }
    })?;
    if let Err(error) = backup::verify(out) {
        let _ = fs::remove_file(out);
        bail!(
            "the copy in {} did not verify and was removed: {error}",
            out.display()
        );
    }
    Ok(())
}

/// `quickfreeze restore FILE --data-dir NEW`.
pub(super) fn restore(file: &Path, data_dir: &Path, json: bool) -> Result<()> {
    let restored = backup::restore(file, data_dir)?;
    let checks = check_restored(data_dir);
    let key_present = data_dir.join(files::KEY).exists();
    if json {
        print_json(&serde_json::json!({
            "data_dir": data_dir.display().to_string(),
            "header": restored.header,
            "counts": restored.counts,
            "key_file_present": key_present,
            "checks": checks.iter().map(|(name, result)| serde_json::json!({
                "check": name,
                "ok": result.is_ok(),
                "detail": match result { Ok(text) | Err(text) => text },
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        let header = &restored.header;
        let taken = Timestamp(header.created_at_ms);
        outln!(
            "restored     {} into {}",
            file.display(),
            data_dir.display()
        );
        outln!(
            "backup of    {} taken {} by quickfreeze {}",
            header
                .node_id
                .as_deref()
                .unwrap_or("(node id not recorded)"),
            taken,
            header.written_by
        );
        outln!(
            "holds        {} inbox and {} outbox messages, {} store entries in all, {} files",
            restored.counts.inbox,
            restored.counts.outbox,
            restored.counts.entries,
            restored.counts.files
        );
        for (name, result) in &checks {
            match result {
                Ok(text) => outln!("OK           {name}: {text}"),
                Err(text) => outln!("FAIL         {name}: {text}"),
            }
        }
        if header.with_keys {
            outln!("KEYS         restored from the backup ({})", files::KEY);
        } else {
            outln!(
                "KEYS         NOT IN THIS BACKUP. Before starting the node, copy this node's key file from your key backup to {} and make it readable by its owner only (chmod 600). The node refuses to start without it; do NOT run `init` (a new key is a different node the roster does not know).",
                data_dir.join(files::KEY).display()
            );
        }
    }
    if checks.iter().any(|(_, result)| result.is_err()) {
        bail!(
            "the restored data directory {} did not pass every check (see above); keep the backup file and report it",
            data_dir.display()
        );
    }
    Ok(())
}

/// What is checked on a freshly restored data directory, each with its result: the config
/// reads and names the directory, the store opens (its format is one this build reads), and the
/// audit trail's hash chain verifies. More checks of the store go here.
fn check_restored(data_dir: &Path) -> Vec<(&'static str, Result<String, String>)> {
    let mut checks = Vec::new();
    let config_path = data_dir.join(files::CONFIG);
    let options = if config_path.exists() {
        match NodeConfig::load(&config_path) {
            Ok(config) => {
                checks.push(("config", Ok(format!("{} reads", config_path.display()))));
                config.store_options()
            }
            Err(error) => {
                checks.push(("config", Err(error.to_string())));
                crate::store::StoreOptions::default()
            }
        }
    } else {
        checks.push((
            "config",
            Err(format!("the backup held no {}", files::CONFIG)),
        ));
        crate::store::StoreOptions::default()
    };
    let store = match crate::store::SledStore::open(&data_dir.join(files::STORE), &options) {
        Ok(store) => {
            checks.push(("store", Ok("opens".to_string())));
            store
        }
        Err(error) => {
            checks.push(("store", Err(error.to_string())));
            return checks;
        }
    };
    match crate::audit::AuditLog::open(&store) {
        Ok(log) => {
            // The same check as `store verify`: every record against its checksum, the store
            // against the audit trail.
            let integrity = crate::integrity::check(&store, &log, data_dir, None, true);
            checks.push((
                "store verify",
                if integrity.is_damaged() {
                    Err(integrity.problems().join("; "))
                } else {
                    Ok(format!(
                        "{} outbox, {} inbox and {} relay records intact and in agreement with the audit trail",
                        integrity.outbox, integrity.inbox, integrity.relay
                    ))
                },
            ));
            let report = log.verify(None);
            checks.push((
                "audit verify",
                if report.ok() {
                    Ok(format!(
                        "the hash chain of {} records is intact (head {})",
                        report.records, report.head
                    ))
                } else {
                    Err(format!(
                        "the chain breaks at record {}: {}",
                        report.first_bad.unwrap_or_default(),
                        report.problem.unwrap_or_default()
                    ))
                },
            ));
        }
        Err(error) => checks.push(("audit verify", Err(error.to_string()))),
    }
    checks
}
