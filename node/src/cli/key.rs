//! `quickfreeze key rotate`: new node keys with a grace window for the old ones.
//!
//! The new pair is written to the key file next to the old ones (atomically, mode 0600). The
//! running node keeps signing and connecting with the keys the roster names until a roster
//! carrying the new keys is installed; the old keys then stay believed (and kept, to open
//! envelopes sealed to them) until the grace end printed here, and are erased after it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use quickfreeze_keys::roster::{Member, PreviousKeys};
use quickfreeze_keys::{EncryptionKey, Identity, SignedRoster, Timestamp};

use crate::config::files;

/// Longest grace a rotation may give the old keys.
const MAX_GRACE_MS: u64 = 90 * 24 * 3600 * 1000;

/// `key` commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make new node keys, keep the old ones for a grace window, and print the member entry
    /// (with the new keys and the old ones as `previous_keys`) to give to the roster authority.
    Rotate {
        /// The node's data directory (holds node.key and the installed roster).
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
        /// How long the old keys stay valid, from now: a number with s, m, h or d (7d, 12h,
        /// 30m, 90s). The roster authority publishes the new entry before this runs out.
        #[arg(long, default_value = "7d", value_parser = parse_grace)]
        grace: u64,
    },
}

/// Parses `90s`, `30m`, `12h`, `7d` into milliseconds.
pub(super) fn parse_grace(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let hint = || format!("`{text}` is not a grace such as 7d, 12h, 30m or 90s");
    let Some(unit) = text.chars().last() else {
        return Err(hint());
    };
    let number = &text[..text.len() - unit.len_utf8()];
    let unit_ms: u64 = match unit {
        's' => 1000,
        'm' => 60 * 1000,
        'h' => 3600 * 1000,
        'd' => 24 * 3600 * 1000,
        _ => return Err(hint()),
    };
    let count: u64 = number.parse().map_err(|_| hint())?;
    let grace = count.checked_mul(unit_ms).ok_or_else(hint)?;
    if grace == 0 || grace > MAX_GRACE_MS {
        return Err(format!(
            "grace `{text}` must be more than 0 and at most 90d"
        ));
    }
    Ok(grace)
}

pub(super) fn key(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Rotate { data_dir, grace } => rotate(&data_dir, grace),
    }
}

fn installed_member(data_dir: &Path, identity: &Identity) -> Result<Member> {
    let path = data_dir.join(files::ROSTER);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{}: no installed roster; install the roster that lists this node first (`quickfreeze roster install`)",
            path.display()
        )
    })?;
    let roster = SignedRoster::from_bytes(&bytes)
        .and_then(|signed| signed.roster_unverified())
        .map_err(|error| anyhow!("{}: {error}", path.display()))?;
    roster.member(&identity.node_id()).cloned().ok_or_else(|| {
        anyhow!(
            "{}: roster serial {} does not list this node ({}); install a roster that does",
            path.display(),
            roster.serial,
            identity.node_id()
        )
    })
}

fn rotate(data_dir: &Path, grace_ms: u64) -> Result<()> {
    let key_path = data_dir.join(files::KEY);
    let mut identity = Identity::read_key_file(&key_path)?;
    let mut member = installed_member(data_dir, &identity)?;
    identity.follow_roster(&member.current_signing_key(), &member.previous_key_ends());
    if identity.newest_signing_key() != identity.signing_key() {
        bail!(
            "{}: a rotation already waits for its roster (new key {} is not in the installed roster); give the roster authority the entry printed then, or install the roster that carries it, before rotating again",
            key_path.display(),
            identity.newest_signing_key()
        );
    }
    let now = Timestamp::now();
    let grace_end = now.plus_ms(grace_ms);
    identity.rotate(&mut rand::rng())?;
    identity.replace_key_file(&key_path)?;

    member.signing_key = Some(identity.newest_signing_key());
    member.encryption_key = EncryptionKey(identity.newest_encryption_public());
    member.previous_keys = identity
        .older_keys()
        .into_iter()
        .filter_map(|held| {
            // The pair in use until now gets the new grace; older ones keep theirs.
            let valid_until = held.valid_until.unwrap_or(grace_end);
            (valid_until > now).then_some(PreviousKeys {
                signing_key: held.signing_key,
                encryption_key: EncryptionKey(held.encryption_key),
                valid_until,
            })
        })
        .collect();

    #[derive(serde::Serialize)]
    struct Entry<'a> {
        members: [&'a Member; 1],
    }
    eprintln!(
        "new keys written to {} (mode 0600); the old ones are kept",
        key_path.display()
    );
    eprintln!("node id (unchanged): {}", identity.node_id());
    eprintln!("new signing key:     {}", identity.newest_signing_key());
    eprintln!("old keys valid until {grace_end}");
    eprintln!("the node keeps using its current keys until a roster with the entry below is installed; give it to the roster authority (public keys only):");
    out!("{}", toml::to_string(&Entry { members: [&member] })?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_grace;

    #[test]
    fn grace_units_and_refusals() {
        assert_eq!(parse_grace("90s"), Ok(90_000));
        assert_eq!(parse_grace("30m"), Ok(1_800_000));
        assert_eq!(parse_grace("7d"), Ok(7 * 24 * 3600 * 1000));
        assert!(parse_grace("0d").is_err());
        assert!(parse_grace("91d").is_err());
        assert!(parse_grace("7 days").is_err());
        assert!(parse_grace("").is_err());
        assert!(parse_grace("d").is_err());
        assert!(parse_grace("7é").is_err());
    }
}
