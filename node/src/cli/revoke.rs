//! `roster revoke`: make a revocation notice, add authority signatures in turn, and install it
//! into a node (handed to the running node over the control socket, which applies it at once and
//! passes it to every member it is connected to; or kept in the data directory for a stopped node,
//! which applies it when it starts). Also hands an installed roster to a running node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use quickfreeze_keys::{
    AuthorityKey, CountryCode, NodeId, Revocation, Roster, SignedRevocation, SignedRoster,
    Timestamp,
};
use sha2::{Digest, Sha256};

use crate::config::files;
use crate::control::{ClientError, ControlClient, ControlRequest, ControlResponse};

/// `roster revoke`: either make/sign a notice (`--key … --out …`) or install one (`--install`).
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Member to revoke: node id or country code (repeatable). Resolved in `--roster`.
    #[arg(long = "member")]
    members: Vec<String>,
    /// Why (shown to every operator).
    #[arg(long)]
    reason: Option<String>,
    /// Notice serial (default: the current time in seconds, so later notices have higher ones).
    #[arg(long)]
    serial: Option<u64>,
    /// Authority key file to sign with.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The signed roster in force (names members, and the authorities allowed to sign).
    /// Default: the roster installed in `--data-dir`.
    #[arg(long)]
    roster: Option<PathBuf>,
    /// A notice to add this signature to (authorities sign in turn).
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Where to write the (partly) signed notice (may be the `--in` file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A signed notice to install into the node of `--data-dir`.
    #[arg(long)]
    install: Option<PathBuf>,
    /// The node's data directory.
    #[arg(long, env = "QUICKFREEZE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs `roster revoke`.
pub(super) fn revoke(args: RevokeArgs) -> Result<()> {
    if let Some(notice) = &args.install {
        let Some(data_dir) = &args.data_dir else {
            bail!("--install needs --data-dir DIR (the node that must apply the notice)");
        };
        return install(notice, data_dir);
    }
    let (Some(key), Some(out)) = (&args.key, &args.out) else {
        bail!("give --key AUTHORITY.key and --out NOTICE to make or sign a notice, or --install NOTICE --data-dir DIR to install one");
    };
    let roster_path = match (&args.roster, &args.data_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join(files::ROSTER),
        (None, None) => {
            bail!("give --roster SIGNED_ROSTER (the roster in force) or --data-dir DIR")
        }
    };
    let roster = read_roster(&roster_path)?;
    let key = AuthorityKey::read_key_file(key)?;
    let mut signed = match &args.input {
        Some(input) => {
            if !args.members.is_empty() || args.reason.is_some() {
                bail!("--in adds a signature to an existing notice; --member and --reason come from it");
            }
            read_notice(input)?
        }
        None => {
            if args.members.is_empty() {
                bail!("name at least one --member NODEID|COUNTRY to revoke");
            }
            let Some(reason) = args.reason.clone().filter(|text| !text.trim().is_empty()) else {
                bail!("give --reason TEXT: every operator will see it");
            };
            let nodes = args
                .members
                .iter()
                .map(|text| resolve(&roster, text))
                .collect::<Result<Vec<_>>>()?;
            let issued_at = Timestamp::now();
            let revocation = Revocation {
                network: roster.network.clone(),
                serial: args.serial.unwrap_or(issued_at.0 / 1000),
                issued_at,
                nodes,
                keys: Vec::new(),
                reason,
            };
            SignedRevocation::new(&revocation).map_err(|error| anyhow!("{error}"))?
        }
    };
    signed
        .sign(&key, &roster)
        .map_err(|error| anyhow!("{error}"))?;
    let notice = signed
        .revocation_unverified()
        .map_err(|error| anyhow!("{error}"))?;
    std::fs::write(out, signed.to_bytes().map_err(|error| anyhow!("{error}"))?)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    let state = match signed.verify(&roster) {
        Ok(_) => {
            "complete: install it with `quickfreeze roster revoke --install NOTICE --data-dir DIR`"
                .to_string()
        }
        Err(error) => format!("not yet valid: {error}"),
    };
    outln!(
        "signed revocation serial {} as {}; {} signature(s), {} required; written to {}; {state}",
        notice.serial,
        key.public().fingerprint(),
        signed.signatures.len(),
        roster.threshold,
        out.display()
    );
    Ok(())
}

fn read_roster(path: &Path) -> Result<Roster> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    SignedRoster::from_bytes(&bytes)
        .and_then(|signed| signed.roster_unverified())
        .map_err(|error| anyhow!("{}: {error}", path.display()))
}

fn read_notice(path: &Path) -> Result<SignedRevocation> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    SignedRevocation::from_bytes(&bytes).map_err(|error| anyhow!("{}: {error}", path.display()))
}

fn resolve(roster: &Roster, text: &str) -> Result<NodeId> {
    if text.len() == 2 {
        let country =
            CountryCode::parse(text).map_err(|error| anyhow!("--member {text}: {error}"))?;
        return roster
            .by_country(country)
            .map(|member| member.node_id)
            .ok_or_else(|| {
                anyhow!(
                    "--member {text}: no member for that country in roster serial {}",
                    roster.serial
                )
            });
    }
    let node: NodeId = text
        .parse()
        .map_err(|error| anyhow!("--member {text}: not a node id or country code: {error}"))?;
    if roster.member(&node).is_none() {
        bail!("--member {text}: not in roster serial {}", roster.serial);
    }
    Ok(node)
}

/// Installs a notice into the node of `data_dir`: checked against its roster, then handed to the
/// running node, or kept for a stopped one.
fn install(notice_path: &Path, data_dir: &Path) -> Result<()> {
    let bytes = std::fs::read(notice_path)
        .with_context(|| format!("{}: cannot read", notice_path.display()))?;
    let signed = SignedRevocation::from_bytes(&bytes)
        .map_err(|error| anyhow!("{}: {error}", notice_path.display()))?;
    let roster = read_roster(&data_dir.join(files::ROSTER))?;
    let notice = signed
        .verify(&roster)
        .map_err(|error| anyhow!("{}: {error}", notice_path.display()))?;
    match ControlClient::connect(data_dir, Duration::from_secs(30)) {
        Ok(mut client) => {
            let request = ControlRequest::ApplyRevocation {
                signed_hex: hex::encode(&bytes),
            };
            match client.request(&request)? {
                ControlResponse::RevocationApplied {
                    serial,
                    new,
                    revoked,
                } => {
                    let who = if revoked.is_empty() {
                        "no member of its roster".to_string()
                    } else {
                        revoked.join(", ")
                    };
                    if new {
                        outln!("the running node applied revocation serial {serial} at once: {who} refused from now on; it passes the notice to every member it is connected to");
                    } else {
                        outln!("the running node already held revocation serial {serial} ({who})");
                    }
                    Ok(())
                }
                ControlResponse::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer from the node: {other:?}"),
            }
        }
        Err(ClientError::NoSocket { .. } | ClientError::NotRunning { .. }) => {
            let dir = data_dir.join(files::REVOCATIONS);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            let name = format!("{}.notice", hex::encode(&Sha256::digest(&signed.body)[..8]));
            let path = dir.join(name);
            std::fs::write(&path, &bytes)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            outln!(
                "the node is not running: revocation serial {} stored in {}; it is applied when the node starts",
                notice.serial,
                path.display()
            );
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// After `roster install` wrote the file: hand the roster to the running node, if one runs, and
/// say whether it took it.
pub(super) fn hand_roster_to_running_node(
    data_dir: &Path,
    bytes: &[u8],
    serial: u64,
) -> Result<()> {
    match ControlClient::connect(data_dir, Duration::from_secs(30)) {
        Ok(mut client) => {
            let request = ControlRequest::InstallRoster {
                signed_hex: hex::encode(bytes),
            };
            match client.request(&request)? {
                ControlResponse::RosterInstalled { serial } => {
                    outln!("the running node switched to roster serial {serial} at once and tells its peers");
                    Ok(())
                }
                ControlResponse::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer from the node: {other:?}"),
            }
        }
        Err(ClientError::NoSocket { .. } | ClientError::NotRunning { .. }) => {
            outln!("the node is not running; it uses roster serial {serial} when it starts");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
