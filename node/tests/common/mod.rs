//! Helpers shared by the integration tests that run the real `quickfreeze` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_node::testnet;

/// The binary under test.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickfreeze"))
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
