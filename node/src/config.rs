//! The node's TOML configuration and the layout of its data directory.
//!
//! `quickfreeze init` writes a commented `node.toml` into the data directory; `quickfreeze run`
//! reads it. Every field has a default, so a config may be as short as the data directory and the
//! listen address. Unknown fields are refused (a typo must not silently fall back to a default).

use std::path::{Path, PathBuf};

use quickfreeze_proto::core::CoreConfig;
use quickfreeze_proto::i18n::Language;
use serde::{Deserialize, Serialize};

use crate::deadlines::DeadlineConfig;
use crate::store::{StoreOptions, SyncMode};

/// File names inside a data directory.
pub mod files {
    /// The node's secret keys (mode 0600).
    pub const KEY: &str = "node.key";
    /// The node configuration.
    pub const CONFIG: &str = "node.toml";
    /// The pinned authority-set fingerprint.
    pub const PIN: &str = "authority-set.pin";
    /// The signed roster installed by the operator.
    pub const ROSTER: &str = "roster.signed";
    /// The sled database directory.
    pub const STORE: &str = "store";
    /// The console's Unix socket (mode 0600).
    pub const SOCKET: &str = "control.sock";
    /// Revocation notices installed while the node was stopped (applied at the next start).
    pub const REVOCATIONS: &str = "revocations";
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Could not read the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not valid TOML for a node configuration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where toml knows it.
        message: String,
    },
}

/// The format of `node.toml` this release writes and reads. Readers accept every older format.
pub const CONFIG_FORMAT: u32 = 1;

/// The node configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The format of this file ([`CONFIG_FORMAT`]; absent means 1). A file of a newer format is
    /// refused with "written by a newer quickfreeze; upgrade" instead of being misread.
    pub format: u32,
    /// Data directory (keys, roster, database, control socket). Relative paths are relative to
    /// the directory of the config file (`init` writes `"."`). A config file that sits in a data
    /// directory (next to a `node.key`) must name that directory: an absolute path elsewhere is
    /// refused, so that a copied data directory never runs on the original's store.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// Storage settings.
    pub store: StoreSection,
    /// Retry policy.
    pub retry: RetrySection,
    /// Limits.
    pub limits: LimitsSection,
    /// A command run for every event an officer must see (new inbound request, expiry,
    /// rejection...). Receives the details in environment variables `QF_EVENT`, `QF_MESSAGE_ID`,
    /// `QF_PRIORITY`, `QF_PEER`, `QF_DETAIL`. Empty: no hook.
    pub alert_hook: Vec<String>,
    /// Address of the Prometheus text endpoint (`GET /metrics`), e.g. `127.0.0.1:9464`. Absent:
    /// no endpoint. Port 0 picks a free port (logged, and shown by `status`).
    pub metrics_listen: Option<String>,
    /// The officers' language for `show`, the console and templates: `en`, `fr`, `de`, `es` or
    /// `pt` (default `en`). Only labels and help are translated; messages on the wire stay
    /// language-neutral, and `--lang` on a command overrides this.
    pub language: Language,
    /// Deadline clocks per priority (see [`crate::deadlines`]).
    pub deadlines: DeadlineConfig,
    /// How long new messages live, per priority.
    pub lifetime: LifetimeSection,
    /// The web console (`quickfreeze web`).
    pub web: WebSection,
    /// Test-only switches. Off by default; a production node must never enable them.
    pub testing: TestingSection,
}

/// `[web]`: the web console's settings (`quickfreeze web` reads them from the data directory's
/// `node.toml`; its `--tls-cert`/`--tls-key` flags take precedence).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSection {
    /// PEM certificate chain for HTTPS. With `tls_key`, the console serves HTTPS and may listen
    /// on a non-loopback address. Relative paths are relative to this file's directory.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// `[testing]`: hooks for test harnesses such as `simnet live`. Never enable in production.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingSection {
    /// Accept the console's `fault` requests (cut, one-way cut or slow links to given peers)
    /// and keep the delivery log and duplicate counter that harnesses read. The daemon refuses
    /// fault requests unless this is `true`.
    pub fault_injection: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            format: CONFIG_FORMAT,
            data_dir: PathBuf::from("."),
            listen: vec!["/ip4/0.0.0.0/tcp/4100".into()],
            store: StoreSection::default(),
            retry: RetrySection::default(),
            limits: LimitsSection::default(),
            alert_hook: Vec::new(),
            metrics_listen: None,
            language: Language::default(),
            deadlines: DeadlineConfig::default(),
            lifetime: LifetimeSection::default(),
            web: WebSection::default(),
            testing: TestingSection::default(),
        }
    }
}

/// `[lifetime]`: seconds from submission until an undelivered message expires (the sender then
/// tells the officer; relays drop it; recipients refuse it). Sealed into each envelope, so it
/// is the sender's setting that counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifetimeSection {
    /// Emergency requests (default 1 day).
    pub emergency_s: u64,
    /// Urgent (default 3 days).
    pub urgent_s: u64,
    /// Routine (default 14 days).
    pub routine_s: u64,
}

impl Default for LifetimeSection {
    fn default() -> Self {
        let core = CoreConfig::default();
        LifetimeSection {
            emergency_s: core.lifetime_emergency_ms / 1000,
            urgent_s: core.lifetime_urgent_ms / 1000,
            routine_s: core.lifetime_routine_ms / 1000,
        }
    }
}

/// Shortest lifetime a production node accepts in `[lifetime]`: anything shorter is almost
/// certainly minutes or hours written as seconds.
pub const MIN_LIFETIME_S: u64 = 60;

impl LifetimeSection {
    /// Each lifetime must be at least [`MIN_LIFETIME_S`] (1 s on a test network, with
    /// `[testing] fault_injection`) and at most what every receiver accepts
    /// (`AcceptPolicy::max_lifetime_ms`, 60 days): a longer one would have every message refused.
    pub fn validate(&self, testing: &TestingSection) -> Result<(), String> {
        let max_s = quickfreeze_proto::envelope::AcceptPolicy::default().max_lifetime_ms / 1000;
        let min_s = if testing.fault_injection {
            1
        } else {
            MIN_LIFETIME_S
        };
        for (name, value) in [
            ("emergency_s", self.emergency_s),
            ("urgent_s", self.urgent_s),
            ("routine_s", self.routine_s),
        ] {
            if value < min_s || value > max_s {
                return Err(format!(
                    "[lifetime] {name} = {value}: must be between {min_s} and {max_s} seconds (60 days, the longest lifetime receivers accept){}",
                    if testing.fault_injection {
                        ""
                    } else {
                        "; lifetimes under a minute are for test networks only"
                    }
                ));
            }
        }
        Ok(())
    }
}

/// `[store]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// sled page cache in bytes. Small by default: dozens of nodes may share one machine.
    pub cache_capacity_bytes: u64,
    /// `flush-and-sync-data` (survives power loss; default) or `flush` (survives a crash of the
    /// process only; faster).
    pub sync: SyncMode,
    /// Group commit: flush once for everything that arrived together (default). `false` flushes
    /// after every single input; it exists to measure what group commit buys.
    pub group_commit: bool,
    /// Low-water mark of free space on the data directory's filesystem, in MiB. The mark is the
    /// larger of this and `low_water_percent`; below it the node refuses new submissions and
    /// incoming deliveries (retryable: senders keep trying) and alerts. Both 0 turns it off.
    pub low_water_mib: u64,
    /// Low-water mark as a percentage of the filesystem's size (see `low_water_mib`).
    pub low_water_percent: u8,
    /// How long one group commit may take before the node gives up on the disk and stops (with
    /// a log line and an alert) rather than hang: seconds, at least 1.
    pub commit_timeout_s: u64,
}

/// Default of `store.low_water_mib`.
pub const DEFAULT_LOW_WATER_MIB: u64 = 64;
/// Default of `store.low_water_percent`.
pub const DEFAULT_LOW_WATER_PERCENT: u8 = 2;
/// Default of `store.commit_timeout_s`.
pub const DEFAULT_COMMIT_TIMEOUT_S: u64 = 30;

impl StoreSection {
    /// Refuses a percentage over 100 or a commit bound of 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.low_water_percent > 50 {
            return Err(format!(
                "store.low_water_percent = {}: use 0 to 50 (percent of the filesystem kept free)",
                self.low_water_percent
            ));
        }
        if !(1..=3600).contains(&self.commit_timeout_s) {
            return Err(format!(
                "store.commit_timeout_s = {}: use 1 to 3600 seconds",
                self.commit_timeout_s
            ));
        }
        Ok(())
    }

    /// The low-water mark in bytes for a filesystem of `total` bytes (0: off).
    pub fn low_water_bytes(&self, total: u64) -> u64 {
        let fixed = self.low_water_mib.saturating_mul(1024 * 1024);
        let share = total / 100 * u64::from(self.low_water_percent);
        fixed.max(share)
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        let options = StoreOptions::default();
        StoreSection {
            cache_capacity_bytes: options.cache_capacity_bytes,
            sync: options.sync,
            group_commit: true,
            low_water_mib: DEFAULT_LOW_WATER_MIB,
            low_water_percent: DEFAULT_LOW_WATER_PERCENT,
            commit_timeout_s: DEFAULT_COMMIT_TIMEOUT_S,
        }
    }
}

/// `[retry]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// First retry delay.
    pub base_ms: u64,
    /// Longest retry delay.
    pub cap_ms: u64,
    /// Failed direct attempts before handing a message to the recipient's relays.
    pub relay_after_failures: u32,
    /// While a relay holds a message, how often to still try the recipient directly.
    pub custody_recheck_ms: u64,
    /// How often (at most; each wait is jittered down to half of it) to dial the backed-off,
    /// unconnected peers that pending work waits on, so that a peer that comes back is found in
    /// about a second instead of at the end of its backoff. 0 turns probing off.
    pub reconnect_probe_ms: u64,
    /// Peers dialled per probe at most (emergency work first, then the least recently tried).
    pub reconnect_probe_max_dials: usize,
}

/// Default of `retry.reconnect_probe_ms`.
pub const DEFAULT_RECONNECT_PROBE_MS: u64 = 1_000;
/// Default of `retry.reconnect_probe_max_dials`.
pub const DEFAULT_RECONNECT_PROBE_MAX_DIALS: usize = 32;

impl Default for RetrySection {
    fn default() -> Self {
        let core = CoreConfig::default();
        RetrySection {
            base_ms: core.retry_base_ms,
            cap_ms: core.retry_cap_ms,
            relay_after_failures: core.relay_after_failures,
            custody_recheck_ms: core.custody_recheck_ms,
            reconnect_probe_ms: DEFAULT_RECONNECT_PROBE_MS,
            reconnect_probe_max_dials: DEFAULT_RECONNECT_PROBE_MAX_DIALS,
        }
    }
}

impl RetrySection {
    /// Refuses probe settings that would dial in a tight loop or not at all by accident.
    pub fn validate(&self) -> Result<(), String> {
        if self.reconnect_probe_ms != 0 && !(100..=600_000).contains(&self.reconnect_probe_ms) {
            return Err(format!(
                "retry.reconnect_probe_ms = {}: use 100 to 600000 milliseconds, or 0 to turn probing off",
                self.reconnect_probe_ms
            ));
        }
        if !(1..=1024).contains(&self.reconnect_probe_max_dials) {
            return Err(format!(
                "retry.reconnect_probe_max_dials = {}: use 1 to 1024 (reconnect_probe_ms = 0 turns probing off)",
                self.reconnect_probe_max_dials
            ));
        }
        Ok(())
    }
}

/// `[limits]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Undelivered messages the outbox may hold.
    pub max_outbox_pending: usize,
    /// Requests in flight to one peer.
    pub max_in_flight_per_peer: usize,
    /// Relay role: messages held per sender.
    pub relay_max_messages_per_sender: usize,
    /// Relay role: bytes held per sender.
    pub relay_max_bytes_per_sender: u64,
    /// Relay role: bytes held in total.
    pub relay_max_bytes_total: u64,
    /// Console connections served at once.
    pub max_console_connections: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let core = CoreConfig::default();
        LimitsSection {
            max_outbox_pending: core.max_outbox_pending,
            max_in_flight_per_peer: core.max_in_flight_per_peer,
            relay_max_messages_per_sender: core.relay_max_messages_per_sender,
            relay_max_bytes_per_sender: core.relay_max_bytes_per_sender,
            relay_max_bytes_total: core.relay_max_bytes_total,
            max_console_connections: 16,
        }
    }
}

/// Refuses a config file of a newer format before its fields are read (a newer release may
/// have added fields this one would call unknown, which would hide the real reason).
fn check_config_format(path: &Path, text: &str) -> Result<(), ConfigError> {
    let Ok(table) = text.parse::<toml::Table>() else {
        // Not TOML: the full parse below names the line.
        return Ok(());
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    match table.get("format") {
        None => Ok(()),
        Some(toml::Value::Integer(found)) if *found >= 1 && *found <= i64::from(CONFIG_FORMAT) => {
            Ok(())
        }
        Some(toml::Value::Integer(found)) if *found > i64::from(CONFIG_FORMAT) => {
            Err(invalid(format!(
                "format = {found}: this file was written by a newer quickfreeze (this release reads config format {CONFIG_FORMAT} and older); upgrade quickfreeze, or restore the config file of this release from your backup"
            )))
        }
        Some(other) => Err(invalid(format!(
            "format = {other}: write a whole number from 1 to {CONFIG_FORMAT} (or leave it out, which means 1)"
        ))),
    }
}

impl NodeConfig {
    /// Reads a config file; a relative `data_dir` is resolved against the file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        check_config_format(path, &text)?;
        let mut config: NodeConfig =
            toml::from_str(&text).map_err(|error| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: error.to_string().replace('\n', " "),
            })?;
        config
            .deadlines
            .validate()
            .and_then(|()| config.retry.validate())
            .and_then(|()| config.store.validate())
            .and_then(|()| config.lifetime.validate(&config.testing))
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        if let Some(address) = &config.metrics_listen {
            address
                .parse::<std::net::SocketAddr>()
                .map_err(|error| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "metrics_listen = \"{address}\": {error}; write an IP address and port such as \"127.0.0.1:9464\""
                    ),
                })?;
        }
        let base = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        for file in [&mut config.web.tls_cert, &mut config.web.tls_key]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        check_data_dir(path, base, &config.data_dir)?;
        Ok(config)
    }

    /// The core's configuration.
    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            retry_base_ms: self.retry.base_ms,
            retry_cap_ms: self.retry.cap_ms,
            relay_after_failures: self.retry.relay_after_failures,
            custody_recheck_ms: self.retry.custody_recheck_ms,
            max_in_flight_per_peer: self.limits.max_in_flight_per_peer,
            max_outbox_pending: self.limits.max_outbox_pending,
            relay_max_messages_per_sender: self.limits.relay_max_messages_per_sender,
            relay_max_bytes_per_sender: self.limits.relay_max_bytes_per_sender,
            relay_max_bytes_total: self.limits.relay_max_bytes_total,
            lifetime_emergency_ms: self.lifetime.emergency_s.saturating_mul(1000),
            lifetime_urgent_ms: self.lifetime.urgent_s.saturating_mul(1000),
            lifetime_routine_ms: self.lifetime.routine_s.saturating_mul(1000),
            ..CoreConfig::default()
        }
    }

    /// The store's options.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            cache_capacity_bytes: self.store.cache_capacity_bytes,
            sync: self.store.sync,
        }
    }

    /// A commented config file for `init`. `data_dir` is written as given: `init` passes `"."`,
    /// the directory the file is in, so that a copied data directory uses its own store.
    pub fn commented_toml(data_dir: &Path, listen: &[String]) -> String {
        let listen = listen
            .iter()
            .map(|address| format!("\"{address}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let core = CoreConfig::default();
        let limits = LimitsSection::default();
        let deadlines = DeadlineConfig::default();
        let lifetime = LifetimeSection::default();
        format!(
            r#"# quickfreeze node configuration. Every field may be omitted to use its default.

# The format of this file. A release that finds a newer format than it knows refuses to start
# ("written by a newer quickfreeze; upgrade") rather than misread it. Absent means 1.
format = {format}

# Where this node keeps its key, roster, database and console socket. A relative path is relative
# to the directory of this file; "." is that directory, so a copied data directory uses its own
# store. When this file sits in a data directory, data_dir must be that directory.
data_dir = "{data_dir}"

# libp2p addresses to listen on. They must match the addresses in this node's roster entry.
listen = [{listen}]

# A command to run for every event the officer on duty must see (a new request, an expired or
# refused message...). It gets QF_EVENT, QF_MESSAGE_ID, QF_PRIORITY, QF_PEER and QF_DETAIL in its
# environment. Example: ["/usr/local/bin/page-duty-officer"]
alert_hook = []

# Prometheus text endpoint (GET /metrics). Keep it on a local or management address: it tells
# anyone who can reach it how busy this node is. Uncomment to enable.
# metrics_listen = "127.0.0.1:9464"

# The language of labels, forms and help in `show`, the console and `template`: "en", "fr", "de",
# "es" or "pt". Messages stay language-neutral: each side reads them in its own language.
language = "en"

[store]
# sled page cache in bytes.
cache_capacity_bytes = {cache}
# "flush-and-sync-data": an accepted message survives power loss (default).
# "flush": survives a crash of the process, not of the machine; faster.
sync = "flush-and-sync-data"
# Flush once for everything that arrived together (true), or after every single input (false).
group_commit = true
# Free space kept on the data directory's filesystem: the larger of low_water_mib and
# low_water_percent of its size. Below it the node refuses new submissions and incoming deliveries
# (senders keep retrying, nothing is lost) and alerts (QF_EVENT=disk-low) until space returns.
# Both 0 turns the check off.
low_water_mib = {low_mib}
low_water_percent = {low_pct}
# A group commit that takes longer than this many seconds (a full or failing disk) stops the
# node with a log line and an alert instead of a silent hang.
commit_timeout_s = {commit_timeout}

[retry]
# First retry delay; doubles per consecutive failure, with jitter.
base_ms = {base}
# Longest retry delay. Kept short so that a peer that comes back is found within a minute.
cap_ms = {cap}
# Failed direct attempts before a message is handed to the recipient's relays.
relay_after_failures = {relay_after}
# While a relay holds a message, how often this node still tries the recipient directly.
custody_recheck_ms = {recheck}
# How often (at most) to dial peers that work waits on while they are backing off, so that a
# peer that comes back is found within about a second. 0 turns it off.
reconnect_probe_ms = {probe}
# Peers dialled per probe at most.
reconnect_probe_max_dials = {probe_dials}

[limits]
# Undelivered messages the outbox may hold before `send` is refused.
max_outbox_pending = {outbox}
# Requests in flight to one peer.
max_in_flight_per_peer = {in_flight}
# Relay role only: what one sender may park here, and the total.
relay_max_messages_per_sender = {relay_messages}
relay_max_bytes_per_sender = {relay_sender_bytes}
relay_max_bytes_total = {relay_total}
# Console connections served at once.
max_console_connections = {console}

# How long an undelivered message lives, in seconds per priority. When it runs out the node
# stops trying, marks the message expired and alerts the officer (QF_EVENT=expired). At least
# 60 s; at most 60 days (5184000 s), the longest lifetime receivers accept.
[lifetime]
emergency_s = {life_e}
urgent_s = {life_u}
routine_s = {life_r}

# Deadlines, in seconds per priority; 0 turns a clock off. A breach is logged, written to the
# audit log, sent to the alert hook as QF_EVENT=overdue, listed by `status`, and sorts the
# message to the top of `inbox`/`outbox`.
[deadlines]
# How often the node checks, in milliseconds.
check_interval_ms = {check}

[deadlines.receipt]
# T1: a message we sent has no verified delivery receipt yet.
emergency_s = {t1e}
urgent_s = {t1u}
routine_s = {t1r}

[deadlines.acknowledge]
# T2: a request we received is not acknowledged by an officer yet.
emergency_s = {t2e}
urgent_s = {t2u}
routine_s = {t2r}

[deadlines.status]
# T3: we have not sent a substantive status (preserved, refused, ...) about a received request.
emergency_s = {t3e}
urgent_s = {t3u}
routine_s = {t3r}
"#,
            format = CONFIG_FORMAT,
            data_dir = data_dir.display(),
            cache = StoreOptions::default().cache_capacity_bytes,
            low_mib = DEFAULT_LOW_WATER_MIB,
            low_pct = DEFAULT_LOW_WATER_PERCENT,
            commit_timeout = DEFAULT_COMMIT_TIMEOUT_S,
            base = core.retry_base_ms,
            cap = core.retry_cap_ms,
            relay_after = core.relay_after_failures,
            recheck = core.custody_recheck_ms,
            probe = DEFAULT_RECONNECT_PROBE_MS,
            probe_dials = DEFAULT_RECONNECT_PROBE_MAX_DIALS,
            outbox = limits.max_outbox_pending,
            in_flight = limits.max_in_flight_per_peer,
            relay_messages = limits.relay_max_messages_per_sender,
            relay_sender_bytes = limits.relay_max_bytes_per_sender,
            relay_total = limits.relay_max_bytes_total,
            console = limits.max_console_connections,
            check = deadlines.check_interval_ms,
            life_e = lifetime.emergency_s,
            life_u = lifetime.urgent_s,
            life_r = lifetime.routine_s,
            t1e = deadlines.receipt.emergency_s,
            t1u = deadlines.receipt.urgent_s,
            t1r = deadlines.receipt.routine_s,
            t2e = deadlines.acknowledge.emergency_s,
            t2u = deadlines.acknowledge.urgent_s,
            t2r = deadlines.acknowledge.routine_s,
            t3e = deadlines.status.emergency_s,
            t3u = deadlines.status.urgent_s,
            t3r = deadlines.status.routine_s,
        )
    }
}

/// A config file that sits in a data directory (next to its `node.key`) must name that
/// directory. Anything else is almost always a copied or moved data directory whose config still
/// names the original, which would silently run on the original's store.
fn check_data_dir(path: &Path, base: &Path, data_dir: &Path) -> Result<(), ConfigError> {
    if !base.join(files::KEY).exists() {
        // A config kept elsewhere (e.g. /etc) names its data directory freely.
        return Ok(());
    }
    let here = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let named = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if here == named {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        path: path.to_path_buf(),
        message: format!(
            "data_dir = \"{}\" but this file is in the data directory {}: it looks copied or moved from another node's directory, and running it would use that directory's store. Write `data_dir = \".\"` in this file to use the directory it is in, or run the node with --data-dir {}",
            data_dir.display(),
            here.display(),
            data_dir.display()
        ),
    })
}

/// The officers' language for commands run against the node in `data_dir`: `language` from its
/// `node.toml`, English when the file or the key is absent. Only that key is read, so a command
/// that just displays something is not refused over an unrelated setting; a bad code is an
/// error that names the file and the supported codes.
pub fn configured_language(data_dir: &Path) -> Result<Language, ConfigError> {
    let path = data_dir.join(files::CONFIG);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Language::default())
        }
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: path.clone(),
        message,
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|error| invalid(error.to_string().replace('\n', " ")))?;
    match table.get("language") {
        None => Ok(Language::default()),
        Some(toml::Value::String(code)) => code
            .parse()
            .map_err(|message: String| invalid(format!("language: {message}"))),
        Some(other) => Err(invalid(format!(
            "language must be a code in quotes such as \"fr\", not {}; supported: {}",
            other,
            Language::supported_codes()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_format_absent_current_newer_and_nonsense() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(files::CONFIG);
        let load = |text: &str| {
            std::fs::write(&path, text).expect("write");
            NodeConfig::load(&path)
        };
        assert_eq!(load("data_dir = \".\"\n").expect("absent is 1").format, 1);
        assert_eq!(load("format = 1\n").expect("current").format, 1);
        // A newer release may add fields this one does not know: the format speaks first.
        let newer = load("format = 2\nsomething_new = true\n")
            .expect_err("newer refused")
            .to_string();
        assert!(newer.contains("written by a newer quickfreeze"), "{newer}");
        assert!(newer.contains("upgrade"), "{newer}");
        for bad in ["format = 0\n", "format = \"one\"\n"] {
            let error = load(bad).expect_err("nonsense refused").to_string();
            assert!(error.contains("whole number"), "{bad}: {error}");
        }
    }

    #[test]
    fn configured_language_reads_node_toml_and_defaults_to_english() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(configured_language(dir.path()).ok(), Some(Language::En));
        let path = dir.path().join(files::CONFIG);
        std::fs::write(&path, "listen = []\n").expect("write");
        assert_eq!(configured_language(dir.path()).ok(), Some(Language::En));
        std::fs::write(&path, "language = \"de\"\n[store]\n").expect("write");
        assert_eq!(configured_language(dir.path()).ok(), Some(Language::De));
        std::fs::write(&path, "language = \"xx\"\n").expect("write");
        let error = configured_language(dir.path())
            .expect_err("unknown")
            .to_string();
        assert!(error.contains("en, fr, de, es, pt"), "{error}");
        assert!(error.contains("node.toml"), "{error}");
        // The full loader refuses it too, with the supported codes.
        let error = NodeConfig::load(&path).expect_err("unknown").to_string();
        assert!(error.contains("en, fr, de, es, pt"), "{error}");
    }

    #[test]
    fn commented_template_parses_to_the_defaults() {
        let text = NodeConfig::commented_toml(
            Path::new("/var/lib/quickfreeze"),
            &["/ip4/0.0.0.0/tcp/4100".into()],
        );
        let config: NodeConfig = toml::from_str(&text).expect("template parses");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/quickfreeze"));
        assert_eq!(config.retry.cap_ms, RetrySection::default().cap_ms);
        assert_eq!(
            config.limits.max_outbox_pending,
            LimitsSection::default().max_outbox_pending
        );
        assert_eq!(config.deadlines, DeadlineConfig::default());
        assert_eq!(config.lifetime, LifetimeSection::default());
        assert_eq!(
            config.retry.reconnect_probe_ms,
            RetrySection::default().reconnect_probe_ms
        );
        config.retry.validate().expect("defaults valid");
        config
            .lifetime
            .validate(&config.testing)
            .expect("defaults valid");
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn bad_deadlines_and_metrics_address_are_refused_with_the_field_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[deadlines.status]\nemergency_s = 1\nurgent_s = 99999999999\nroutine_s = 1\n",
        )
        .expect("write");
        let error = NodeConfig::load(&path).expect_err("refused").to_string();
        assert!(error.contains("deadlines.status"), "{error}");
        std::fs::write(&path, "metrics_listen = \"localhost\"\n").expect("write");
        let error = NodeConfig::load(&path).expect_err("refused").to_string();
        assert!(error.contains("metrics_listen"), "{error}");
    }

    #[test]
    fn lifetimes_reach_the_core_and_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[lifetime]\nurgent_s = 3600\n").expect("write");
        let config = NodeConfig::load(&path).expect("valid");
        let core = config.core_config();
        assert_eq!(core.lifetime_urgent_ms, 3_600_000);
        assert_eq!(
            core.lifetime_emergency_ms,
            CoreConfig::default().lifetime_emergency_ms
        );
        for (text, field) in [
            ("[lifetime]\nroutine_s = 0\n", "routine_s"),
            ("[lifetime]\nemergency_s = 59\n", "emergency_s"),
            // Longer than receivers accept: every message would be refused.
            ("[lifetime]\nurgent_s = 5184001\n", "urgent_s"),
        ] {
            std::fs::write(&path, text).expect("write");
            let error = NodeConfig::load(&path).expect_err(text).to_string();
            assert!(error.contains(field), "{error}");
        }
        // A test network may use lifetimes of seconds, never zero.
        std::fs::write(
            &path,
            "[lifetime]\nroutine_s = 5\n[testing]\nfault_injection = true\n",
        )
        .expect("write");
        assert_eq!(
            NodeConfig::load(&path)
                .expect("test network")
                .lifetime
                .routine_s,
            5
        );
        std::fs::write(
            &path,
            "[lifetime]\nroutine_s = 0\n[testing]\nfault_injection = true\n",
        )
        .expect("write");
        assert!(NodeConfig::load(&path).is_err());
    }

    #[test]
    fn probe_settings_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        for (text, ok) in [
            ("[retry]\nreconnect_probe_ms = 0\n", true),
            ("[retry]\nreconnect_probe_ms = 1500\n", true),
            ("[retry]\nreconnect_probe_ms = 10\n", false),
            ("[retry]\nreconnect_probe_max_dials = 0\n", false),
            ("[retry]\nreconnect_probe_max_dials = 5000\n", false),
        ] {
            std::fs::write(&path, text).expect("write");
            match NodeConfig::load(&path) {
                Ok(_) => assert!(ok, "{text} accepted"),
                Err(error) => {
                    assert!(!ok, "{text} refused: {error}");
                    assert!(error.to_string().contains("reconnect_probe"), "{error}");
                }
            }
        }
    }

    #[test]
    fn data_dir_is_relative_to_the_config_and_a_stale_absolute_one_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let original = root.path().join("fr");
        let copy = root.path().join("copy");
        for dir in [&original, &copy] {
            std::fs::create_dir_all(dir).expect("mkdir");
            std::fs::write(dir.join(files::KEY), "key").expect("key");
        }
        // "." (what init writes) is the directory the config is in.
        std::fs::write(copy.join(files::CONFIG), "data_dir = \".\"\n").expect("write");
        let config = NodeConfig::load(&copy.join(files::CONFIG)).expect("relative");
        assert_eq!(
            std::fs::canonicalize(&config.data_dir).expect("exists"),
            std::fs::canonicalize(&copy).expect("exists")
        );
        // An old config naming its own directory absolutely still works.
        let own = format!("data_dir = \"{}\"\n", original.display());
        std::fs::write(original.join(files::CONFIG), &own).expect("write");
        NodeConfig::load(&original.join(files::CONFIG)).expect("points at itself");
        // The same config copied elsewhere is refused, naming the fix.
        std::fs::write(copy.join(files::CONFIG), &own).expect("write");
        let error = NodeConfig::load(&copy.join(files::CONFIG))
            .expect_err("stale absolute data_dir")
            .to_string();
        assert!(error.contains("data_dir = \".\""), "{error}");
        // A config kept outside any data directory may name one absolutely.
        let etc = root.path().join("etc.toml");
        std::fs::write(&etc, &own).expect("write");
        assert_eq!(
            NodeConfig::load(&etc).expect("elsewhere").data_dir,
            original
        );
    }

    #[test]
    fn store_limits_are_checked_and_the_low_water_mark_is_the_larger() {
        let store = StoreSection::default();
        assert_eq!(store.low_water_bytes(1 << 30), 64 << 20);
        assert_eq!(store.low_water_bytes(10_000 << 20), 200 << 20);
        let off = StoreSection {
            low_water_mib: 0,
            low_water_percent: 0,
            ..StoreSection::default()
        };
        assert_eq!(off.low_water_bytes(1 << 40), 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        for (text, field) in [
            ("[store]\nlow_water_percent = 80\n", "low_water_percent"),
            ("[store]\ncommit_timeout_s = 0\n", "commit_timeout_s"),
        ] {
            std::fs::write(&path, text).expect("write");
            let error = NodeConfig::load(&path).expect_err(text).to_string();
            assert!(error.contains(field), "{error}");
        }
    }

    #[test]
    fn unknown_field_is_refused() {
        let error = toml::from_str::<NodeConfig>("data_dirr = \"x\"").expect_err("typo refused");
        assert!(error.to_string().contains("data_dirr"));
    }
}
