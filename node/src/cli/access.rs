//! How a console command that can also work on a stopped node (`audit`, `stats`) reaches the
//! node's data: through the running daemon, or its store opened directly.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use quickfreeze_keys::roster::SignedRoster;
use quickfreeze_keys::Timestamp;

use crate::config::{files, NodeConfig};
use crate::control::{ControlClient, ControlRequest, ControlResponse};

/// How a console command that can also work offline reaches the node's data.
pub(super) enum Access {
    /// The node runs: ask it.
    Daemon(ControlClient),
    /// It does not: the store, opened directly (sled's lock keeps a node from starting meanwhile).
    Direct {
        store: crate::store::SledStore,
        log: crate::audit::AuditLog,
        data_dir: std::path::PathBuf,
    },
}

impl Access {
    /// Connects to the running node, or opens its store when none runs.
    pub(super) fn open(data_dir: &Path) -> Result<Access> {
        use crate::control::ClientError;
        match ControlClient::connect(data_dir, Duration::from_secs(120)) {
            Ok(client) => Ok(Access::Daemon(client)),
            Err(ClientError::NoSocket { .. } | ClientError::NotRunning { .. }) => {
                let store_dir = data_dir.join(files::STORE);
                if !store_dir.is_dir() {
                    bail!(
                        "no node is running with data directory {} and it holds no store ({} does not exist); pass the node's --data-dir",
                        data_dir.display(),
                        store_dir.display()
                    );
                }
                let config_path = data_dir.join(files::CONFIG);
                let options = if config_path.exists() {
                    NodeConfig::load(&config_path)?.store_options()
                } else {
                    crate::store::StoreOptions::default()
                };
                let store = crate::store::SledStore::open(&store_dir, &options).map_err(|error| {
                    anyhow!("the node is not running and its store could not be opened directly: {error}")
                })?;
                let log = crate::audit::AuditLog::open(&store)?;
                eprintln!(
                    "note: no node is running with {}; reading its store directly",
                    data_dir.display()
                );
                Ok(Access::Direct {
                    store,
                    log,
                    data_dir: data_dir.to_path_buf(),
                })
            }
            Err(other) => Err(other.into()),
        }
    }

    pub(super) fn request(&mut self, request: &ControlRequest) -> Result<ControlResponse> {
        match self {
            Access::Daemon(client) => Ok(client.request(request)?),
            Access::Direct {
                store,
                log,
                data_dir,
            } => Ok(match request {
                ControlRequest::AuditVerify { .. }
                | ControlRequest::AuditExport { .. }
                | ControlRequest::AuditExportFiltered { .. } => {
                    crate::audit::answer(log, store, data_dir, request)
                }
                ControlRequest::Stats { since_ms } => {
                    use quickfreeze_proto::core::Store;
                    let roster = store
                        .get_roster()?
                        .ok_or_else(|| anyhow!("the store holds no roster yet"))
                        .and_then(|bytes| {
                            SignedRoster::from_bytes(&bytes)
                                .and_then(|signed| signed.roster_unverified())
                                .map_err(|error| anyhow!("the stored roster: {error}"))
                        })?;
                    ControlResponse::from_stats(crate::stats::from_store(
                        store,
                        &roster,
                        Timestamp(*since_ms),
                    ))
                }
                _ => ControlResponse::Error {
                    message: "this command needs the running node".into(),
                },
            }),
        }
    }
}
