//! Local test networks: identities, a signed roster and a data directory per node, and the
//! nodes run as child processes of the real binary.
//!
//! The integration tests (`tests/tests/kill9.rs`, `tests/tests/common`) and `simnet live` all build their
//! networks here, so there is one way to lay out a data directory for a test:
//!
//! ```text
//! root/<label>/node.key           secret keys (mode 0600), from a seeded RNG when asked
//! root/<label>/node.toml          the config (loopback listen address, test-tuned retries)
//! root/<label>/roster.signed      the roster, signed by a throw-away authority key
//! root/<label>/authority-set.pin  that authority set's fingerprint
//! ```
//!
//! [`NodeProcess`] starts `quickfreeze run --data-dir DIR` (or any program that runs the same
//! CLI, see [`NodeCommand`]), waits for its console, and kills it with SIGKILL
//! (`std::process::Child::kill`), which is the crash the durability invariants are about.
//!
//! Loopback only: every listen address is `127.0.0.1` with a port that was free a moment before.
//! Another process may take that port in between; the node then fails to start and says so in
//! its log, and the caller sees [`NodeProcess::wait_ready`] fail.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quickfreeze_keys::roster::{Member, Role, Roster};
use quickfreeze_keys::{
    AuthorityKey, CountryCode, EncryptionKey, Identity, NodeId, SignedRoster, Timestamp,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::config::{files, NodeConfig};
use crate::control::{ClientError, ControlClient, ControlRequest, ControlResponse};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// One node of a test network to be built.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// Directory name under the root (also used in logs).
    pub label: String,
    /// Its country.
    pub country: CountryCode,
    /// Point of contact, relay or central authority.
    pub role: Role,
    /// Indexes (into the plan list) of the relays that hold mail for it.
    pub relays: Vec<usize>,
    /// Whether the roster lists its address (a member without one is reachable only through
    /// connections it opens, i.e. through its relays).
    pub dialable: bool,
}

impl NodePlan {
    /// A dialable point of contact without relays.
    pub fn point_of_contact(label: &str, country: &str) -> Result<NodePlan, String> {
        Ok(NodePlan {
            label: label.to_owned(),
            country: CountryCode::parse(country)?,
            role: Role::PointOfContact,
            relays: Vec::new(),
            dialable: true,
        })
    }
}

/// A node of a built test network.
#[derive(Clone, Debug)]
pub struct TestnetNode {
    /// Its label.
    pub label: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its id.
    pub node_id: NodeId,
    /// Its country.
    pub country: CountryCode,
    /// Its role.
    pub role: Role,
    /// The address it listens on.
    pub listen: String,
}

/// A built test network: every data directory is ready for `quickfreeze run`.
#[derive(Clone, Debug)]
pub struct Testnet {
    /// Where the data directories are.
    pub root: PathBuf,
    /// The nodes, in plan order.
    pub nodes: Vec<TestnetNode>,
    /// The roster they share.
    pub roster: Roster,
    /// Its signed encoding.
    pub signed_roster: Vec<u8>,
}

impl Testnet {
    /// Writes keys, configs and the signed roster for `plans` under `root`. With `seed`, every
    /// key comes from a ChaCha20 stream seeded by it (the same network every time); without, from
    /// the OS. `configure` may change each node's config (index, config) before it is written;
    /// the data directory and listen address are already set.
    pub fn build(
        root: &Path,
        network: &str,
        plans: &[NodePlan],
        seed: Option<u64>,
        configure: impl Fn(usize, &mut NodeConfig),
    ) -> Result<Testnet, String> {
        let mut rng = match seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_rng(&mut rand::rng()),
        };
        let authority = AuthorityKey::generate(&mut rng);
        Testnet::build_signed_by(root, network, plans, &mut rng, &authority, configure)
    }

    /// As [`Testnet::build`], with keys from `rng` and the roster signed by `authority` (kept
    /// by the caller, for tests that sign roster updates later).
    pub fn build_signed_by(
        root: &Path,
        network: &str,
        plans: &[NodePlan],
        rng: &mut ChaCha20Rng,
        authority: &AuthorityKey,
        configure: impl Fn(usize, &mut NodeConfig),
    ) -> Result<Testnet, String> {
        let now = Timestamp::now();
        let mut nodes = Vec::with_capacity(plans.len());
        let mut keys = Vec::with_capacity(plans.len());
        let mut ports = std::collections::BTreeSet::new();
        for (index, plan) in plans.iter().enumerate() {
            let data_dir = root.join(&plan.label);
            std::fs::create_dir_all(&data_dir)
                .map_err(|error| format!("{}: {error}", data_dir.display()))?;
            let identity = Identity::generate(rng);
            identity
                .write_key_file(&data_dir.join(files::KEY))
                .map_err(|error| error.to_string())?;
            // The OS may hand out a port it handed out a moment ago; two nodes on one port
            // would both listen (libp2p sets SO_REUSEPORT) and each get half the other's dials.
            let port = loop {
                let port = free_port()?;
                if ports.insert(port) {
                    break port;
                }
            };
            let listen = format!("/ip4/127.0.0.1/tcp/{port}");
            let mut config = NodeConfig {
                data_dir: data_dir.clone(),
                listen: vec![listen.clone()],
                ..NodeConfig::default()
            };
            configure(index, &mut config);
            // Written relative to the file (as `init` does), so a copied directory is its own.
            if config.data_dir == data_dir {
                config.data_dir = PathBuf::from(".");
            }
            let text = toml::to_string(&config).map_err(|error| error.to_string())?;
            std::fs::write(data_dir.join(files::CONFIG), text)
                .map_err(|error| format!("{}: {error}", data_dir.display()))?;
            keys.push((identity.node_id(), identity.encryption_public()));
            nodes.push(TestnetNode {
                label: plan.label.clone(),
                data_dir,
                node_id: identity.node_id(),
                country: plan.country,
                role: plan.role,
                listen,
            });
        }
        let members = plans
            .iter()
            .zip(&nodes)
            .zip(&keys)
            .map(|((plan, node), (_, encryption))| {
                let relays = plan
                    .relays
                    .iter()
                    .map(|relay| {
                        nodes.get(*relay).map(|relay| relay.node_id).ok_or_else(|| {
                            format!("{}: relay index {relay} out of range", plan.label)
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Member {
                    node_id: node.node_id,
                    signing_key: None,
                    previous_keys: Vec::new(),
                    country: plan.country,
                    authority_name: format!("{} {}", plan.country, plan.role),
                    role: plan.role,
                    encryption_key: EncryptionKey(*encryption),
                    addresses: if plan.dialable {
                        vec![node.listen.clone()]
                    } else {
                        Vec::new()
                    },
                    relays,
                    valid_from: Timestamp(now.0.saturating_sub(DAY_MS)),
                    valid_until: now.plus_ms(30 * DAY_MS),
                    on_duty_contact: format!("duty-{}@example.org", plan.label),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let roster = Roster {
            network: network.to_owned(),
            serial: 1,
            issued_at: now,
            expires_at: now.plus_ms(30 * DAY_MS),
            threshold: 1,
            authorities: vec![authority.public()],
            members,
        };
        let mut signed = SignedRoster::new(&roster).map_err(|error| error.to_string())?;
        signed
            .sign(authority, None)
            .map_err(|error| error.to_string())?;
        let signed_roster = signed.to_bytes().map_err(|error| error.to_string())?;
        let pin = roster.authority_set_fingerprint().to_string();
        for node in &nodes {
            std::fs::write(node.data_dir.join(files::ROSTER), &signed_roster)
                .map_err(|error| format!("{}: {error}", node.data_dir.display()))?;
            std::fs::write(node.data_dir.join(files::PIN), &pin)
                .map_err(|error| format!("{}: {error}", node.data_dir.display()))?;
        }
        Ok(Testnet {
            root: root.to_path_buf(),
            nodes,
            roster,
            signed_roster,
        })
    }

    /// Reads node `index`'s identity back from its key file.
    pub fn identity(&self, index: usize) -> Result<Identity, String> {
        let node = self
            .nodes
            .get(index)
            .ok_or_else(|| format!("no node {index}"))?;
        Identity::read_key_file(&node.data_dir.join(files::KEY)).map_err(|error| error.to_string())
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("bind loopback: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| error.to_string())
}

/// How to start a node: a program and the arguments in front of `run --data-dir DIR`.
#[derive(Clone, Debug)]
pub struct NodeCommand {
    /// The program (the `quickfreeze` binary, or a binary that embeds its CLI).
    pub program: PathBuf,
    /// Arguments before `run` (e.g. a subcommand that hands over to the quickfreeze CLI).
    pub prefix: Vec<OsString>,
}

impl NodeCommand {
    /// The `quickfreeze` binary at `program`.
    pub fn binary(program: &Path) -> NodeCommand {
        NodeCommand {
            program: program.to_path_buf(),
            prefix: Vec::new(),
        }
    }
}

/// A node running as a child process.
pub struct NodeProcess {
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Child,
    /// When it was started.
    pub started: Instant,
}

impl NodeProcess {
    /// Starts `run --data-dir DIR`; stderr (the log) is appended to `DIR/node.log`. Does not
    /// wait for the node: see [`NodeProcess::wait_ready`].
    pub fn spawn(command: &NodeCommand, data_dir: &Path) -> Result<NodeProcess, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("node.log"))
            .map_err(|error| format!("{}/node.log: {error}", data_dir.display()))?;
        let child = Command::new(&command.program)
            .args(&command.prefix)
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("{}: {error}", command.program.display()))?;
        Ok(NodeProcess {
            data_dir: data_dir.to_path_buf(),
            child,
            started: Instant::now(),
        })
    }

    /// Starts the node and waits until its console answers.
    pub fn start(
        command: &NodeCommand,
        data_dir: &Path,
        timeout: Duration,
    ) -> Result<NodeProcess, String> {
        let mut node = NodeProcess::spawn(command, data_dir)?;
        node.wait_ready(timeout)?;
        Ok(node)
    }

    /// Waits until the console answers a status request; fails if the process exits first or
    /// the time runs out (with the tail of its log).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut client) = ControlClient::connect(&self.data_dir, Duration::from_secs(5)) {
                if let Ok(ControlResponse::Status { .. }) = client.request(&ControlRequest::Status)
                {
                    return Ok(());
                }
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(match exited {
                    Some(status) => format!(
                        "node in {} exited ({status}) before its console answered; log tail:\n{tail}",
                        self.data_dir.display()
                    ),
                    None => format!(
                        "node in {} did not answer within {timeout:?}; log tail:\n{tail}",
                        self.data_dir.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap: no clean shutdown, nothing unflushed survives.
    pub fn kill9(&mut self) -> Result<(), String> {
        // `kill` fails only if the process was already reaped; either way it is gone.
        let _ = self.child.kill();
        self.child
            .wait()
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Whether the process has exited (and its status if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One console request to the node in `data_dir`, on a fresh connection.
pub fn console(
    data_dir: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<ControlResponse, ClientError> {
    let mut client = ControlClient::connect(data_dir, timeout)?;
    client.request(request)
}
