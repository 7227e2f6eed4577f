//! `quickfreeze doctor --data-dir DIR`: checks a node's installation the way an operator would,
//! and says for each finding what to fix.
//!
//! The checks: the config parses and points at this directory; the files a node needs are there;
//! the key file is readable by its owner only; the roster verifies against the pinned authority
//! set and does not expire soon (this node's own entry too); the data directory's filesystem has
//! room; the listen ports are free or held by this node alone; whether the node runs (its console
//! answers); clock skew against connected peers (when the node reports it); and whether every
//! other roster member's listen addresses accept a TCP connection within a short timeout.
//!
//! Each finding is OK, WARN or FAIL (SKIP when a check cannot be made, with why); the command
//! exits non-zero when any is FAIL. Nothing here changes the data directory.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quickfreeze_keys::roster::{Member, Roster};
use quickfreeze_keys::{Fingerprint, Identity, NodeId, SignedRoster, Timestamp};
use serde::Serialize;

use crate::config::{files, NodeConfig};
use crate::control::{ControlClient, ControlRequest, ControlResponse, StatusReport};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Could not be checked; the detail says why.
    Skip,
    /// Works now, but needs attention.
    Warn,
    /// Broken: the node will not work (or not for long) until it is fixed.
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Skip => "SKIP",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Which check (`config`, `key-file`, `roster`, `reach FR`...).
    pub check: String,
    /// How bad.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// What to do about it, when something must be done.
    pub fix: Option<String>,
}

/// Everything `doctor` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The data directory examined.
    pub data_dir: PathBuf,
    /// The findings, in the order they were made.
    pub findings: Vec<Finding>,
    /// Findings at OK.
    pub ok: usize,
    /// Findings at WARN.
    pub warn: usize,
    /// Findings at FAIL.
    pub fail: usize,
}

impl Report {
    /// The findings of one check.
    pub fn find(&self, check: &str) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.check == check)
            .collect()
    }

    /// The people's form: one line per finding, the fix indented below it.
    pub fn to_text(&self) -> String {
        let mut text = format!("doctor: {}\n", self.data_dir.display());
        for finding in &self.findings {
            text.push_str(&format!(
                "{:<5} {:<14} {}\n",
                finding.level.label(),
                finding.check,
                finding.detail
            ));
            if let Some(fix) = &finding.fix {
                text.push_str(&format!("{:<20} fix: {fix}\n", ""));
            }
        }
        text.push_str(&format!(
            "{} OK, {} WARN, {} FAIL\n",
            self.ok, self.warn, self.fail
        ));
        text
    }
}

/// Thresholds and timeouts.
#[derive(Clone, Debug)]
pub struct Options {
    /// A roster (or this node's roster entry) expiring sooner than this is a WARN.
    pub roster_warn_ms: u64,
    /// Free space below this on the data directory's filesystem is a WARN.
    pub disk_warn_bytes: u64,
    /// Free space below this is a FAIL.
    pub disk_fail_bytes: u64,
    /// How long to wait for the console, and for each TCP connection to a member.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            roster_warn_ms: 14 * DAY_MS,
            disk_warn_bytes: 1024 * 1024 * 1024,
            disk_fail_bytes: 100 * 1024 * 1024,
            timeout: Duration::from_secs(3),
        }
    }
}

struct Checker {
    findings: Vec<Finding>,
}

impl Checker {
    fn add(&mut self, check: &str, level: Level, detail: String, fix: Option<String>) {
        self.findings.push(Finding {
            check: check.to_owned(),
            level,
            detail,
            fix,
        });
    }
}

/// Runs every check on `data_dir`.
pub fn examine(data_dir: &Path, options: &Options) -> Report {
    let mut checker = Checker {
        findings: Vec::new(),
    };
    let config = check_config(&mut checker, data_dir);
    check_files(&mut checker, data_dir);
    let identity = check_key_file(&mut checker, data_dir);
    let status = check_running(&mut checker, data_dir, options, identity.as_ref());
    let roster = check_roster(
        &mut checker,
        data_dir,
        options,
        identity.as_ref().map(Identity::node_id),
        status.as_ref(),
    );
    check_disk(&mut checker, data_dir, options);
    if let Some(config) = &config {
        check_ports(&mut checker, config, status.as_ref());
    }
    check_clock_skew(&mut checker, status.as_ref());
    if let Some(roster) = &roster {
        check_reachability(
            &mut checker,
            roster,
            identity.as_ref().map(Identity::node_id),
            options.timeout,
        );
    }
    let count = |level| {
        checker
            .findings
            .iter()
            .filter(|finding| finding.level == level)
            .count()
    };
    Report {
        data_dir: data_dir.to_path_buf(),
        ok: count(Level::Ok),
        warn: count(Level::Warn),
        fail: count(Level::Fail),
        findings: checker.findings,
    }
}

fn check_config(checker: &mut Checker, data_dir: &Path) -> Option<NodeConfig> {
    if !data_dir.is_dir() {
        checker.add(
            "config",
            Level::Fail,
            format!("{} is not a directory", data_dir.display()),
            Some("pass the node's data directory with --data-dir (the one `quickfreeze init` created)".into()),
        );
        return None;
    }
    let path = data_dir.join(files::CONFIG);
    let config = match NodeConfig::load(&path) {
        Ok(config) => config,
        Err(error) => {
            checker.add(
                "config",
                Level::Fail,
                error.to_string(),
                Some(format!(
                    "correct {} (the commented example shipped with quickfreeze lists every setting)",
                    path.display()
                )),
            );
            return None;
        }
    };
    let here = std::fs::canonicalize(data_dir).ok();
    let there = std::fs::canonicalize(&config.data_dir).ok();
    if here.is_some() && here == there {
        checker.add(
            "config",
            Level::Ok,
            format!("{} parses", path.display()),
            None,
        );
    } else {
        checker.add(
            "config",
            Level::Fail,
            format!(
                "{} says data_dir = {}, which is not this directory: the node would use that one",
                path.display(),
                config.data_dir.display()
            ),
            Some(format!(
                "set data_dir = \".\" in {} (relative to the config file)",
                path.display()
            )),
        );
    }
    Some(config)
}

fn check_files(checker: &mut Checker, data_dir: &Path) {
    let missing: Vec<&str> = [files::KEY, files::CONFIG, files::PIN, files::ROSTER]
        .into_iter()
        .filter(|name| !data_dir.join(name).exists())
        .collect();
    if !missing.is_empty() {
        checker.add(
            "files",
            Level::Fail,
            format!("missing in {}: {}", data_dir.display(), missing.join(", ")),
            Some("`quickfreeze init` writes node.key and node.toml; `quickfreeze roster install FILE --data-dir DIR --authority-set FINGERPRINT` writes the roster and pin".into()),
        );
    } else if !data_dir.join(files::STORE).is_dir() {
        checker.add(
            "files",
            Level::Warn,
            format!(
                "no store yet ({} does not exist): the node has never run here",
                data_dir.join(files::STORE).display()
            ),
            Some("start the node; it creates the store".into()),
        );
    } else {
        checker.add(
            "files",
            Level::Ok,
            "key, config, roster, pin and store are present".into(),
            None,
        );
    }
}

fn check_key_file(checker: &mut Checker, data_dir: &Path) -> Option<Identity> {
    let path = data_dir.join(files::KEY);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) => {
            checker.add(
                "key-file",
                Level::Fail,
                format!("{}: {error}", path.display()),
                Some("run `quickfreeze init` for a new node, or restore the key file from its backup".into()),
            );
            return None;
        }
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        checker.add(
            "key-file",
            Level::Fail,
            format!(
                "{} is readable by group or others (mode {mode:o}); the node refuses to start",
                path.display()
            ),
            Some(format!("chmod 600 {}", path.display())),
        );
        return None;
    }
    match Identity::read_key_file(&path) {
        Ok(identity) => {
            checker.add(
                "key-file",
                Level::Ok,
                format!("mode {mode:o}; node {}", identity.node_id().fingerprint()),
                None,
            );
            Some(identity)
        }
        Err(error) => {
            checker.add(
                "key-file",
                Level::Fail,
                error.to_string(),
                Some(
                    "restore the key file from its backup; a new key needs a new roster entry"
                        .into(),
                ),
            );
            None
        }
    }
}

fn check_running(
    checker: &mut Checker,
    data_dir: &Path,
    options: &Options,
    identity: Option<&Identity>,
) -> Option<StatusReport> {
    let answer = ControlClient::connect(data_dir, options.timeout)
        .map_err(|error| error.to_string())
        .and_then(|mut client| {
            client
                .request(&ControlRequest::Status)
                .map_err(|error| error.to_string())
        });
    match answer {
        Ok(ControlResponse::Status { report }) => {
            let mine = identity.map(|identity| identity.node_id().to_string());
            if mine.as_ref().is_some_and(|mine| *mine != report.node_id) {
                checker.add(
                    "node",
                    Level::Fail,
                    format!(
                        "the node answering on this console is {}, not the key file's node",
                        report.node_id
                    ),
                    Some("the key file was replaced while the node runs: restart it, and check which key the roster lists".into()),
                );
            } else {
                checker.add(
                    "node",
                    Level::Ok,
                    format!(
                        "running: roster serial {}, {} peer(s) connected, listening on {}",
                        report.roster_serial,
                        report.connected_peers,
                        if report.listen_addresses.is_empty() {
                            "nothing".to_owned()
                        } else {
                            report.listen_addresses.join(", ")
                        }
                    ),
                    None,
                );
            }
            Some(*report)
        }
        Ok(other) => {
            checker.add(
                "node",
                Level::Fail,
                format!("the console answered a status request with {other:?}"),
                Some("this quickfreeze binary and the running node differ in version: restart the node with this binary".into()),
            );
            None
        }
        Err(error) => {
            checker.add(
                "node",
                Level::Warn,
                format!("not running: {error}"),
                Some(format!(
                    "start it: `systemctl start quickfreeze@NAME` under systemd, or `quickfreeze run --data-dir {}`",
                    data_dir.display()
                )),
            );
            None
        }
    }
}

fn check_roster(
    checker: &mut Checker,
    data_dir: &Path,
    options: &Options,
    me: Option<NodeId>,
    status: Option<&StatusReport>,
) -> Option<Roster> {
    let path = data_dir.join(files::ROSTER);
    let pin_path = data_dir.join(files::PIN);
    let fix_roster = "ask the roster authority for a current signed roster and install it with `quickfreeze roster install FILE --data-dir DIR`";
    let signed = match std::fs::read(&path)
        .map_err(|error| error.to_string())
        .and_then(|bytes| SignedRoster::from_bytes(&bytes).map_err(|error| error.to_string()))
    {
        Ok(signed) => signed,
        Err(error) => {
            checker.add(
                "roster",
                Level::Fail,
                format!("{}: {error}", path.display()),
                Some(fix_roster.to_owned()),
            );
            return None;
        }
    };
    let pin = match std::fs::read_to_string(&pin_path)
        .map_err(|error| error.to_string())
        .and_then(|text| text.trim().parse::<Fingerprint>())
    {
        Ok(pin) => pin,
        Err(error) => {
            checker.add(
                "roster",
                Level::Fail,
                format!("{}: {error}", pin_path.display()),
                Some("pin the authority set: `quickfreeze roster install FILE --data-dir DIR --authority-set FINGERPRINT` (read the fingerprint to the roster authority over the phone)".into()),
            );
            return None;
        }
    };
    let now = Timestamp::now();
    let unverified = match signed.roster_unverified() {
        Ok(roster) => roster,
        Err(error) => {
            checker.add(
                "roster",
                Level::Fail,
                format!("{}: {error}", path.display()),
                Some(fix_roster.to_owned()),
            );
            return None;
        }
    };
    // An expired roster fails verification on its expiry alone; check its signatures as of
    // just before it expired, to tell "expired" from "forged".
    let verify_at = if now >= unverified.expires_at {
        Timestamp(unverified.expires_at.0.saturating_sub(1))
    } else {
        now
    };
    let roster = match signed.verify_pinned(&pin, verify_at) {
        Ok(roster) => roster,
        Err(error) => {
            checker.add(
                "roster",
                Level::Fail,
                format!("{}: {error}", path.display()),
                Some(fix_roster.to_owned()),
            );
            return None;
        }
    };
    // The node may hold a newer roster than the file (rosters spread between peers): judge
    // the expiry of the one in use when the node says which.
    let (serial, expires_at, source) = match status {
        Some(report) if report.roster_serial > roster.serial => (
            report.roster_serial,
            Timestamp::parse_rfc3339(&report.roster_expires_at).unwrap_or(roster.expires_at),
            "in use by the node",
        ),
        _ => (roster.serial, roster.expires_at, "installed"),
    };
    let (level, detail) = expiry_finding(now, expires_at, options.roster_warn_ms);
    checker.add(
        "roster",
        level,
        format!(
            "roster `{}` serial {serial} ({source}), {} members, {detail}",
            roster.network,
            roster.members.len()
        ),
        (level != Level::Ok).then(|| fix_roster.to_owned()),
    );
    if let Some(me) = me {
        match roster.member(&me) {
            Some(member) => {
                let (level, detail) =
                    expiry_finding(now, member.valid_until, options.roster_warn_ms);
                let level = if now < member.valid_from {
                    Level::Fail
                } else {
                    level
                };
                checker.add(
                    "roster-entry",
                    level,
                    format!(
                        "this node is listed as {} {} ({}); its entry {detail}",
                        member.country, member.role, member.authority_name
                    ),
                    (level != Level::Ok).then(|| {
                        "ask the roster authority to renew this node's entry in the next roster"
                            .to_owned()
                    }),
                );
            }
            None => checker.add(
                "roster-entry",
                Level::Fail,
                format!(
                    "this node ({}) is not in the roster: every member will refuse its connections",
                    me.fingerprint()
                ),
                Some(
                    "send the member entry printed by `quickfreeze init` to the roster authority"
                        .into(),
                ),
            ),
        }
    }
    Some(roster)
}

/// OK, WARN (within `warn_ms`) or FAIL (past) for something that expires.
fn expiry_finding(now: Timestamp, expires_at: Timestamp, warn_ms: u64) -> (Level, String) {
    if now >= expires_at {
        (Level::Fail, format!("expired at {expires_at}"))
    } else {
        let left = expires_at.millis_since(now);
        let days = left / DAY_MS;
        let detail = format!("expires {expires_at} (in {days} days)");
        if left < warn_ms {
            (Level::Warn, detail)
        } else {
            (Level::Ok, detail)
        }
    }
}

fn check_disk(checker: &mut Checker, data_dir: &Path, options: &Options) {
    let (free, total) = match fs2::available_space(data_dir)
        .and_then(|free| fs2::total_space(data_dir).map(|total| (free, total)))
    {
        Ok(space) => space,
        Err(error) => {
            checker.add(
                "disk",
                Level::Skip,
                format!("cannot read free space of {}: {error}", data_dir.display()),
                None,
            );
            return;
        }
    };
    let mib = |bytes: u64| bytes / (1024 * 1024);
    let detail = format!(
        "{} MiB free of {} MiB on the data directory's filesystem",
        mib(free),
        mib(total)
    );
    let fix = Some(format!(
        "free space on the filesystem of {} or move the data directory to a larger one (stop the node, `cp -a`, start it with the new --data-dir)",
        data_dir.display()
    ));
    if free < options.disk_fail_bytes {
        checker.add("disk", Level::Fail, detail, fix);
    } else if free < options.disk_warn_bytes {
        checker.add("disk", Level::Warn, detail, fix);
    } else {
        checker.add("disk", Level::Ok, detail, None);
    }
}

/// The IP and TCP port of a listen multiaddress such as `/ip4/0.0.0.0/tcp/4100`, when it has
/// that shape.
fn ip_tcp(address: &str) -> Option<(IpAddr, u16)> {
    let parts: Vec<&str> = address.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port, ..] => Some((ip.parse().ok()?, port.parse().ok()?)),
        _ => None,
    }
}

/// The host and TCP port of a dialable multiaddress (`/ip4`, `/ip6`, `/dns`, `/dns4`, `/dns6`).
fn host_tcp(address: &str) -> Option<(String, u16)> {
    let parts: Vec<&str> = address.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6" | "dns" | "dns4" | "dns6", host, "tcp", port, ..] => {
            Some(((*host).to_owned(), port.parse().ok()?))
        }
        _ => None,
    }
}

/// Listening TCP sockets on `port` (of the family of `ip`) as the kernel lists them in
/// `/proc/net/tcp{,6}`, or None where that cannot be read.
fn listeners_on(ip: IpAddr, port: u16) -> Option<usize> {
    let file = if ip.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(file).ok()?;
    let port_hex = format!(":{port:04X}");
    Some(
        text.lines()
            .skip(1)
            .filter(|line| {
                let mut columns = line.split_whitespace();
                let local = columns.nth(1).unwrap_or("");
                let state = columns.nth(1).unwrap_or("");
                local.ends_with(&port_hex) && state == "0A"
            })
            .count(),
    )
}

fn check_ports(checker: &mut Checker, config: &NodeConfig, status: Option<&StatusReport>) {
    for address in &config.listen {
        let Some((ip, port)) = ip_tcp(address) else {
            checker.add(
                "port",
                Level::Skip,
                format!("{address}: only /ip4 and /ip6 TCP listen addresses are checked"),
                None,
            );
            continue;
        };
        if port == 0 {
            checker.add(
                "port",
                Level::Ok,
                format!("{address}: port 0, the system picks a free port at start"),
                None,
            );
            continue;
        }
        let held_by_node = status.is_some_and(|report| {
            report
                .listen_addresses
                .iter()
                .any(|listening| ip_tcp(listening).is_some_and(|(_, bound)| bound == port))
        });
        let same_port_configured = config
            .listen
            .iter()
            .filter(|other| {
                ip_tcp(other).is_some_and(|(other_ip, other_port)| {
                    other_port == port && other_ip.is_ipv4() == ip.is_ipv4()
                })
            })
            .count();
        let ss_hint = format!("`ss -ltnp 'sport = :{port}'` shows which process holds it");
        if held_by_node {
            match listeners_on(ip, port) {
                Some(count) if count > same_port_configured => checker.add(
                    "port",
                    Level::Fail,
                    format!("{address}: {count} sockets listen on port {port}, this node expects {same_port_configured}: another process shares the port and takes part of the incoming connections"),
                    Some(format!("stop the other process ({ss_hint}), or give this node another port in node.toml and its roster entry")),
                ),
                _ => checker.add(
                    "port",
                    Level::Ok,
                    format!("{address}: held by this node"),
                    None,
                ),
            }
            continue;
        }
        match TcpListener::bind(SocketAddr::new(ip, port)) {
            Ok(listener) => {
                drop(listener);
                if status.is_some() {
                    checker.add(
                        "port",
                        Level::Warn,
                        format!("{address}: the node runs but does not listen here"),
                        Some("read the node's log (`journalctl -u quickfreeze@NAME`) for why the listener failed, and restart it".into()),
                    );
                } else {
                    checker.add(
                        "port",
                        Level::Ok,
                        format!("{address}: free"),
                        None,
                    );
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => checker.add(
                "port",
                Level::Fail,
                format!("{address}: port {port} is in use by another process"),
                Some(format!("stop that process ({ss_hint}), or give this node another port in node.toml and its roster entry")),
            ),
            Err(error) => checker.add(
                "port",
                Level::Fail,
                format!("{address}: cannot listen there: {error}"),
                Some("use an address of this host (or 0.0.0.0) in `listen` in node.toml".into()),
            ),
        }
    }
}

fn check_clock_skew(checker: &mut Checker, status: Option<&StatusReport>) {
    let detail = if status.is_some() {
        "not available: this node does not report its peers' clocks yet"
    } else {
        "not available: the node is not running"
    };
    checker.add(
        "clock-skew",
        Level::Skip,
        detail.into(),
        Some("check this host's time synchronisation instead (`timedatectl` or `chronyc tracking`); receipts and expiry rely on clocks within a minute".into()),
    );
}

/// Whether one member's addresses accept TCP connections.
fn probe_member(member: &Member, timeout: Duration) -> (Level, String) {
    let mut outcomes = Vec::new();
    let mut any_ok = false;
    for address in &member.addresses {
        let Some((host, port)) = host_tcp(address) else {
            outcomes.push(format!("{address}: not a TCP address, not checked"));
            continue;
        };
        let resolved: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
            Ok(addresses) => addresses.collect(),
            Err(error) => {
                outcomes.push(format!("{address}: cannot resolve {host}: {error}"));
                continue;
            }
        };
        let mut last_error = None;
        let mut connected = false;
        for socket in &resolved {
            match TcpStream::connect_timeout(socket, timeout) {
                Ok(_) => {
                    connected = true;
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        if connected {
            any_ok = true;
            outcomes.push(format!("{address}: connects"));
        } else {
            outcomes.push(format!(
                "{address}: {}",
                last_error.map_or_else(|| "no address".to_owned(), |error| error.to_string())
            ));
        }
    }
    let level = if any_ok { Level::Ok } else { Level::Warn };
    (level, outcomes.join("; "))
}

fn check_reachability(
    checker: &mut Checker,
    roster: &Roster,
    me: Option<NodeId>,
    timeout: Duration,
) {
    let others: Vec<&Member> = roster
        .members
        .iter()
        .filter(|member| Some(member.node_id) != me)
        .collect();
    // All members at once (in bounded batches): a roster of dozens must not take dozens of
    // timeouts.
    let mut results = Vec::with_capacity(others.len());
    for batch in others.chunks(32) {
        let batch_results: Vec<(Level, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|member| {
                    scope.spawn(move || {
                        if member.addresses.is_empty() {
                            (
                                Level::Ok,
                                "no address listed: reachable only through the connections it opens (its relays)".to_owned(),
                            )
                        } else {
                            probe_member(member, timeout)
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or((Level::Skip, "the check itself failed".to_owned()))
                })
                .collect()
        });
        results.extend(batch_results);
    }
    let dialable = others
        .iter()
        .filter(|member| !member.addresses.is_empty())
        .count();
    let unreachable = others
        .iter()
        .zip(&results)
        .filter(|(member, (level, _))| !member.addresses.is_empty() && *level != Level::Ok)
        .count();
    // Nobody reachable at all points at this host (firewall, routing), not at the peers.
    let all_down = dialable > 0 && unreachable == dialable;
    for (member, (level, detail)) in others.iter().zip(results) {
        let level = if all_down && level == Level::Warn {
            Level::Fail
        } else {
            level
        };
        let fix = match level {
            Level::Ok | Level::Skip => None,
            Level::Warn => Some(format!(
                "the peer may be down: call its on-duty contact ({}); messages to it wait and go through its relays meanwhile",
                member.on_duty_contact
            )),
            Level::Fail => Some("no member is reachable from here: check this host's outgoing firewall and routing".to_owned()),
        };
        checker.add(
            &format!("reach {}", member.country),
            level,
            format!("{} {}: {detail}", member.role, member.node_id.fingerprint()),
            fix,
        );
    }
}

/// `quickfreeze doctor`: prints the report (text or JSON) and fails when any check failed.
pub fn command(data_dir: &Path, json: bool, timeout: Duration) -> anyhow::Result<()> {
    let options = Options {
        timeout,
        ..Options::default()
    };
    let report = examine(data_dir, &options);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if report.fail > 0 {
        anyhow::bail!(
            "{} check(s) failed; fix what each FAIL line says and run `quickfreeze doctor` again",
            report.fail
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddresses_are_parsed_for_the_checks() {
        assert_eq!(
            ip_tcp("/ip4/127.0.0.1/tcp/4100"),
            Some((IpAddr::from([127, 0, 0, 1]), 4100))
        );
        assert_eq!(
            ip_tcp("/ip6/::1/tcp/9"),
            Some(("::1".parse().expect("ip"), 9))
        );
        assert_eq!(ip_tcp("/ip4/127.0.0.1/udp/4100/quic-v1"), None);
        assert_eq!(
            host_tcp("/dns4/node.example.org/tcp/4100"),
            Some(("node.example.org".into(), 4100))
        );
        assert_eq!(host_tcp("/memory/5"), None);
    }

    #[test]
    fn expiry_levels() {
        let now = Timestamp(100 * DAY_MS);
        let warn = 14 * DAY_MS;
        assert_eq!(
            expiry_finding(now, now.plus_ms(30 * DAY_MS), warn).0,
            Level::Ok
        );
        assert_eq!(
            expiry_finding(now, now.plus_ms(13 * DAY_MS), warn).0,
            Level::Warn
        );
        assert_eq!(expiry_finding(now, now, warn).0, Level::Fail);
    }

    #[test]
    fn listeners_are_counted_from_the_kernel_table() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(listeners_on(ip, port), Some(1));
        drop(listener);
        assert_eq!(listeners_on(ip, port), Some(0));
    }
}
