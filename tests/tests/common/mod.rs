//! Helpers shared by the integration tests that run the real `quickfreeze` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use quickfreeze_keys::roster::Roster;
use quickfreeze_keys::{AuthorityKey, Identity, SignedRoster};
use quickfreeze_node::config::{files, NodeConfig};
use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_node::daemon::{self, RunningNode};
use quickfreeze_node::testnet::{self, NodePlan, Testnet};
use quickfreeze_proto::payload::Payload;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// One point of contact per country under `root` (data dir named after the lower-cased country),
/// each with a key file, a config listening on a free loopback port with quick retries, and the
/// same 1-of-1 signed roster of network `network`, pinned. Returns the data dirs in order.
pub(crate) fn network(root: &Path, network: &str, countries: &[&str]) -> Vec<PathBuf> {
    let plans: Vec<NodePlan> = countries
        .iter()
        .map(|country| NodePlan::point_of_contact(&country.to_lowercase(), country).expect("plan"))
        .collect();
    let net = Testnet::build(root, network, &plans, None, |_, config| {
        config.retry.base_ms = 100;
        config.retry.cap_ms = 1_000;
    })
    .expect("test network");
    net.nodes.into_iter().map(|node| node.data_dir).collect()
}

/// The binary under test.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickfreeze-under-test"))
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    quickfreeze_node::testnet::free_port().expect("free port")
}

/// Runs `quickfreeze ARGS` in `dir` and returns its output.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run quickfreeze")
}

/// Runs and asserts success; returns stdout.
pub(crate) fn run_ok(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, args);
    assert!(
        output.status.success(),
        "quickfreeze {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `quickfreeze run` child process (see `quickfreeze_node::testnet::NodeProcess`).
pub(crate) struct NodeProcess {
    pub(crate) data_dir: PathBuf,
    process: testnet::NodeProcess,
}

impl NodeProcess {
    /// Starts the daemon for `data_dir` and waits until its console answers.
    pub(crate) fn start(data_dir: &Path) -> NodeProcess {
        let command = testnet::NodeCommand::binary(&binary());
        let process = testnet::NodeProcess::start(&command, data_dir, Duration::from_secs(30))
            .unwrap_or_else(|error| panic!("{error}"));
        NodeProcess {
            data_dir: data_dir.to_path_buf(),
            process,
        }
    }

    /// SIGKILL, no clean shutdown.
    pub(crate) fn kill9(mut self) {
        self.process.kill9().expect("SIGKILL");
    }
}

/// One console request to the node in `data_dir`.
pub(crate) fn console(data_dir: &Path, request: &ControlRequest) -> ControlResponse {
    let mut client =
        ControlClient::connect(data_dir, Duration::from_secs(30)).expect("console connects");
    client.request(request).expect("console answer")
}

/// Data directories, keys and a signed roster for a few members, one per country.
pub(crate) struct Fixture {
    pub(crate) _root: tempfile::TempDir,
    pub(crate) authority: AuthorityKey,
    pub(crate) roster: Roster,
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) identities: Vec<Identity>,
    pub(crate) addresses: Vec<String>,
}

/// One member per country, each with a data dir, key file, config and the signed roster
/// (`quickfreeze_node::testnet`, with quick retries and `alert_hook`).
pub(crate) fn fixture(countries: &[&str], alert_hook: Vec<String>) -> Fixture {
    let root = tempfile::tempdir().expect("tempdir");
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let authority = AuthorityKey::generate(&mut rng);
    let plans: Vec<NodePlan> = countries
        .iter()
        .map(|country| NodePlan::point_of_contact(&country.to_lowercase(), country).expect("plan"))
        .collect();
    let net = Testnet::build_signed_by(
        root.path(),
        "daemon-tests",
        &plans,
        &mut rng,
        &authority,
        |_, config| {
            config.alert_hook = alert_hook.clone();
            config.retry.base_ms = 100;
            config.retry.cap_ms = 1_000;
        },
    )
    .expect("test network");
    let identities = (0..net.nodes.len())
        .map(|index| net.identity(index).expect("identity"))
        .collect();
    Fixture {
        _root: root,
        authority,
        roster: net.roster.clone(),
        dirs: net.nodes.iter().map(|node| node.data_dir.clone()).collect(),
        identities,
        addresses: net.nodes.iter().map(|node| node.listen.clone()).collect(),
    }
}

impl Fixture {
    pub(crate) fn signed(&self, roster: &Roster) -> Vec<u8> {
        let mut signed = SignedRoster::new(roster).expect("roster");
        signed.sign(&self.authority, None).expect("sign");
        signed.to_bytes().expect("encode")
    }

    pub(crate) fn install(&self, roster: &Roster, only: Option<usize>) {
        let bytes = self.signed(roster);
        for (index, dir) in self.dirs.iter().enumerate() {
            if only.is_some_and(|only| only != index) {
                continue;
            }
            std::fs::write(dir.join(files::ROSTER), &bytes).expect("roster");
            std::fs::write(
                dir.join(files::PIN),
                roster.authority_set_fingerprint().to_string(),
            )
            .expect("pin");
        }
    }

    pub(crate) async fn start(&self, index: usize) -> RunningNode {
        let config = NodeConfig::load(&self.dirs[index].join(files::CONFIG)).expect("config");
        daemon::start(config).await.expect("node starts")
    }
}

/// One console request, retried until the socket answers.
pub(crate) async fn ask(dir: &Path, request: ControlRequest) -> ControlResponse {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            if let Ok(mut client) = ControlClient::connect(&dir, Duration::from_secs(30)) {
                return client.request(&request).expect("answer");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("console of {} never answered", dir.display());
    })
    .await
    .expect("join")
}

/// Submits and waits for the verified delivery receipt; returns the message id.
pub(crate) async fn send_and_wait(dir: &Path, to: &str, payload: Payload) -> String {
    let ControlResponse::Submitted { message_id, .. } = ask(
        dir,
        ControlRequest::Submit {
            recipient: to.into(),
            payload: Box::new(payload),
        },
    )
    .await
    else {
        panic!("submit refused");
    };
    wait_delivered(dir, &message_id).await;
    message_id
}

/// Waits (up to 30 s) for the verified delivery receipt of `message_id`.
pub(crate) async fn wait_delivered(dir: &Path, message_id: &str) {
    match ask(
        dir,
        ControlRequest::WaitDelivered {
            message_id: message_id.to_string(),
            timeout_ms: 30_000,
        },
    )
    .await
    {
        ControlResponse::Delivered { receipt, .. } => assert!(receipt.verified),
        other => panic!("{message_id} not delivered: {other:?}"),
    }
}
