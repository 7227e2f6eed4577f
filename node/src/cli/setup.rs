//! Identity and roster tooling: `init`, `authority keygen` and `roster new|sign|verify|show|install`.
//! These work on files only; none needs a running node.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use quickfreeze_keys::roster::{Member, Role, Roster, SignedRoster};
use quickfreeze_keys::{
    AuthorityKey, AuthorityPublicKey, CountryCode, EncryptionKey, Fingerprint, Identity, Timestamp,
};

use super::print_json;
use crate::config::{files, NodeConfig};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// `init` arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Data directory to create.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// ISO 3166-1 alpha-2 country code.
    #[arg(long)]
    pub country: String,
    /// The authority that runs this node.
    #[arg(long)]
    pub name: String,
    /// point-of-contact, relay or central-authority.
    #[arg(long, default_value = "point-of-contact")]
    pub role: Role,
    /// Listen address(es); they go into the member entry too.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4100")]
    pub listen: Vec<String>,
    /// Public address(es) others dial, if different from --listen.
    #[arg(long)]
    pub address: Vec<String>,
    /// On-duty contact (phone / e-mail).
    #[arg(long, default_value = "see national 24/7 directory")]
    pub contact: String,
    /// Days the member entry is valid.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u64,
    /// Pin the roster authority set (fingerprint from `roster show`).
    #[arg(long)]
    pub authority_set: Option<Fingerprint>,
}

/// `authority` commands.
#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Generate an authority signing key (mode 0600) and print its public key.
    Keygen {
        /// Key file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `roster` commands.
#[derive(Debug, Subcommand)]
pub enum RosterCommand {
    /// Write a roster skeleton (TOML) to fill with the members printed by `init`.
    New {
        /// Network name.
        #[arg(long)]
        network: String,
        /// Serial number (must grow with every roster).
        #[arg(long, default_value_t = 1)]
        serial: u64,
        /// Authority public keys (hex, from `authority keygen`).
        #[arg(long = "authority", required = true)]
        authorities: Vec<AuthorityPublicKey>,
        /// Signatures required.
        #[arg(long)]
        threshold: u8,
        /// Days until the roster expires.
        #[arg(long, default_value_t = 90)]
        valid_days: u64,
        /// File to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add this authority's signature (to a TOML roster or an already signed one).
    Sign {
        /// Roster TOML or signed roster.
        #[arg(long = "in")]
        input: PathBuf,
        /// Authority key file.
        #[arg(long)]
        key: PathBuf,
        /// The roster it replaces, when the authority set rotates.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Signed roster to write (may be the input).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a signed roster.
    Verify {
        /// Signed roster.
        file: PathBuf,
        /// Pinned authority-set fingerprint to check against.
        #[arg(long)]
        authority_set: Option<Fingerprint>,
        /// The roster it must be a valid update of.
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Show a roster (signed or TOML).
    Show {
        /// Roster file.
        file: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make, sign or install a revocation notice (see `quickfreeze roster revoke --help`).
    Revoke(super::revoke::RevokeArgs),
    /// Verify a signed roster and install it into a node's data directory; a running node
    /// verifies it as an update and switches to it at once.
    Install {
        /// Signed roster.
        file: PathBuf,
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Pin the authority set (required the first time).
        #[arg(long)]
        authority_set: Option<Fingerprint>,
    },
}

/// `authority` commands.
pub(super) fn authority(command: AuthorityCommand) -> Result<()> {
    match command {
        AuthorityCommand::Keygen { out } => {
            let key = AuthorityKey::generate(&mut rand::rng());
            key.write_key_file(&out)?;
            // The public key alone on stdout, so scripts can capture it; the rest is for people.
            eprintln!(
                "authority key written to {} (mode 0600); keep it offline",
                out.display()
            );
            eprintln!("fingerprint: {}", key.public().fingerprint());
            outln!("{}", key.public());
            Ok(())
        }
    }
}

pub(super) fn init(args: InitArgs) -> Result<()> {
    let country =
        CountryCode::parse(&args.country).map_err(|error| anyhow!("--country: {error}"))?;
    if args.role == Role::Relay && args.authority_set.is_none() {
        // Fine: relays pin like everyone else, possibly later.
    }
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot set mode 0700", dir.display()))?;
    }
    let key_path = dir.join(files::KEY);
    let identity = Identity::generate_from_os();
    identity.write_key_file(&key_path)?;
    let config_path = dir.join(files::CONFIG);
    if !config_path.exists() {
        // Relative to the file itself, so a copied data directory runs on its own store.
        std::fs::write(
            &config_path,
            NodeConfig::commented_toml(Path::new("."), &args.listen),
        )
        .with_context(|| format!("{}: cannot write", config_path.display()))?;
    }
    if let Some(pin) = args.authority_set {
        std::fs::write(dir.join(files::PIN), format!("{pin}\n"))?;
    }
    let now = Timestamp::now();
    let member = Member {
        node_id: identity.node_id(),
        signing_key: None,
        previous_keys: Vec::new(),
        country,
        authority_name: args.name,
        role: args.role,
        encryption_key: EncryptionKey(identity.encryption_public()),
        addresses: if args.address.is_empty() {
            args.listen
        } else {
            args.address
        },
        relays: Vec::new(),
        valid_from: now,
        valid_until: now.plus_ms(args.valid_days * DAY_MS),
        on_duty_contact: args.contact,
    };
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        members: [&'a Member; 1],
    }
    eprintln!("identity created in {} (key file mode 0600)", dir.display());
    eprintln!("node id:     {}", identity.node_id());
    eprintln!("fingerprint: {}", identity.node_id().fingerprint());
    eprintln!("give the entry below to the roster authority (public keys only); add `relays = [...]` if relays hold mail for you:");
    out!("{}", toml::to_string(&Entry { members: [&member] })?);
    Ok(())
}

fn load_signed(path: &Path) -> Result<SignedRoster> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    SignedRoster::from_bytes(&bytes).map_err(|error| anyhow!("{}: {error}", path.display()))
}

fn load_any_roster(path: &Path) -> Result<(Roster, Option<SignedRoster>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if let Ok(roster) = Roster::from_toml(text) {
            return Ok((roster, None));
        }
        if text.trim_start().starts_with(['#', '[']) || text.contains('=') {
            // It looks like TOML: report the TOML error, not a binary one.
            let error = Roster::from_toml(text)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            bail!("{}: {error}", path.display());
        }
    }
    let signed =
        SignedRoster::from_bytes(&bytes).map_err(|error| anyhow!("{}: {error}", path.display()))?;
    let roster = signed
        .roster_unverified()
        .map_err(|error| anyhow!("{}: {error}", path.display()))?;
    Ok((roster, Some(signed)))
}

pub(super) fn roster(command: RosterCommand) -> Result<()> {
    match command {
        RosterCommand::New {
            network,
            serial,
            authorities,
            threshold,
            valid_days,
            out,
        } => {
            let now = Timestamp::now();
            let roster = Roster {
                network,
                serial,
                issued_at: now,
                expires_at: now.plus_ms(valid_days * DAY_MS),
                threshold,
                authorities,
                members: Vec::new(),
            };
            if out.exists() {
                bail!("{}: already exists; choose another --out", out.display());
            }
            let text = format!(
                "# quickfreeze roster, serial {}. Append the [[members]] entries printed by `quickfreeze init`,\n\
                 # set each member's `relays`, then sign with `quickfreeze roster sign`.\n{}",
                roster.serial,
                // Members are appended as [[members]] tables, so no inline `members = []`.
                roster
                    .to_toml()
                    .lines()
                    .filter(|line| line.trim() != "members = []")
                    .map(|line| format!("{line}\n"))
                    .collect::<String>()
            );
            std::fs::write(&out, text)
                .with_context(|| format!("{}: cannot write", out.display()))?;
            outln!(
                "wrote {}; authority set fingerprint {}",
                out.display(),
                roster.authority_set_fingerprint()
            );
            Ok(())
        }
        RosterCommand::Sign {
            input,
            key,
            previous,
            out,
        } => {
            let key = AuthorityKey::read_key_file(&key)?;
            let (roster, signed) = load_any_roster(&input)?;
            let mut signed = match signed {
                Some(signed) => signed,
                None => SignedRoster::new(&roster)
                    .map_err(|error| anyhow!("{}: {error}", input.display()))?,
            };
            let previous = previous
                .map(|path| {
                    load_signed(&path).and_then(|signed| {
                        signed
                            .roster_unverified()
                            .map_err(|error| anyhow!("{}: {error}", path.display()))
                    })
                })
                .transpose()?;
            signed
                .sign(&key, previous.as_ref())
                .map_err(|error| anyhow!("{error}"))?;
            std::fs::write(&out, signed.to_bytes()?)
                .with_context(|| format!("{}: cannot write", out.display()))?;
            outln!(
                "signed roster serial {} as {}; {} signature(s), {} required; written to {}",
                roster.serial,
                key.public().fingerprint(),
                signed.signatures.len(),
                roster.threshold,
                out.display()
            );
            Ok(())
        }
        RosterCommand::Verify {
            file,
            authority_set,
            previous,
        } => {
            let signed = load_signed(&file)?;
            let now = Timestamp::now();
            let roster = match (authority_set, previous) {
                (_, Some(previous)) => {
                    let previous = load_signed(&previous)?
                        .roster_unverified()
                        .map_err(|error| anyhow!("{error}"))?;
                    signed.verify_update(&previous, now)
                }
                (Some(pin), None) => signed.verify_pinned(&pin, now),
                (None, None) => signed.verify_self(now),
            }
            .map_err(|error| anyhow!("{}: {error}", file.display()))?;
            outln!(
                "OK: roster `{}` serial {} with {} members, {} of {} authority signatures required, valid until {}",
                roster.network,
                roster.serial,
                roster.members.len(),
                roster.threshold,
                roster.authorities.len(),
                roster.expires_at
            );
            outln!(
                "authority set fingerprint {}",
                roster.authority_set_fingerprint()
            );
            Ok(())
        }
        RosterCommand::Show { file, json } => {
            let (roster, signed) = load_any_roster(&file)?;
            if json {
                return print_json(&roster);
            }
            outln!(
                "roster `{}` serial {}, issued {}, expires {}",
                roster.network,
                roster.serial,
                roster.issued_at,
                roster.expires_at
            );
            outln!(
                "authorities: {} of {} required; set fingerprint {}",
                roster.threshold,
                roster.authorities.len(),
                roster.authority_set_fingerprint()
            );
            for key in &roster.authorities {
                outln!("  {}  {}", key.fingerprint(), key);
            }
            if let Some(signed) = signed {
                outln!("signatures: {}", signed.signatures.len());
            } else {
                outln!("signatures: none (TOML form)");
            }
            outln!(
                "{:<2}  {:<18}  {:<24}  {:<52}  authority",
                "cc",
                "role",
                "fingerprint",
                "node"
            );
            for member in &roster.members {
                outln!(
                    "{:<2}  {:<18}  {:<24}  {:<52}  {}",
                    member.country,
                    member.role,
                    member.node_id.fingerprint(),
                    member.node_id,
                    member.authority_name
                );
            }
            Ok(())
        }
        RosterCommand::Install {
            file,
            data_dir,
            authority_set,
        } => {
            let signed = load_signed(&file)?;
            let pin_path = data_dir.join(files::PIN);
            let pin = match (authority_set, std::fs::read_to_string(&pin_path).ok()) {
                (Some(given), Some(existing)) => {
                    let existing: Fingerprint = existing.trim().parse().map_err(|error: String| anyhow!("{}: {error}", pin_path.display()))?;
                    if existing != given {
                        bail!("{}: this node already pins authority set {existing}; refusing to re-pin to {given}", pin_path.display());
                    }
                    given
                }
                (Some(given), None) => given,
                (None, Some(existing)) => existing.trim().parse().map_err(|error: String| anyhow!("{}: {error}", pin_path.display()))?,
                (None, None) => bail!("no authority set pinned for {}; pass --authority-set FINGERPRINT (read it to the roster authority over the phone)", data_dir.display()),
            };
            let now = Timestamp::now();
            let target = data_dir.join(files::ROSTER);
            let roster = match std::fs::read(&target)
                .ok()
                .and_then(|bytes| SignedRoster::from_bytes(&bytes).ok())
                .and_then(|current| current.roster_unverified().ok())
            {
                Some(current) => signed.verify_update(&current, now),
                None => signed.verify_pinned(&pin, now),
            }
            .map_err(|error| anyhow!("{}: {error}", file.display()))?;
            std::fs::write(&pin_path, format!("{pin}\n"))?;
            std::fs::write(&target, signed.to_bytes()?)
                .with_context(|| format!("{}: cannot write", target.display()))?;
            outln!(
                "installed roster serial {} into {}",
                roster.serial,
                data_dir.display()
            );
            super::revoke::hand_roster_to_running_node(
                &data_dir,
                &signed.to_bytes()?,
                roster.serial,
            )
        }
        RosterCommand::Revoke(args) => super::revoke::revoke(args),
    }
}
