//! How the web console reaches the node: one control-socket request at a time.
//!
//! [`Backend`] is a trait so that the router's unit tests can answer with a fake node; the real
//! one, [`SocketBackend`], opens a connection to the daemon's control socket per request (the
//! daemon serves many clients; a broken connection never outlives one request).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::{ControlClient, ControlRequest, ControlResponse};

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Something that answers control requests.
pub trait Backend: Send + Sync + 'static {
    /// Sends one request; the error says in words what went wrong (node not running, ...).
    fn request(&self, request: ControlRequest) -> Result<ControlResponse, String>;
}

/// The node's control socket.
pub struct SocketBackend {
    data_dir: PathBuf,
}

impl SocketBackend {
    /// The node whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> SocketBackend {
        SocketBackend {
            data_dir: data_dir.to_path_buf(),
        }
    }
}

impl Backend for SocketBackend {
    fn request(&self, request: ControlRequest) -> Result<ControlResponse, String> {
        let mut client =
            ControlClient::connect(&self.data_dir, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
        client.request(&request).map_err(|error| error.to_string())
    }
}
