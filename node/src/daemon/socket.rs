//! The control socket server: binds the Unix socket (mode 0600), accepts a bounded number of
//! console connections, checks the hello line and forwards each typed request to the loop.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quickfreeze_keys::NodeId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tracing::info;

use super::{Command, DaemonError};
use crate::control::{
    ControlRequest, ControlResponse, Hello, HelloReply, CONTROL_PROTOCOL_NAME,
    CONTROL_PROTOCOL_VERSION, MAX_CONTROL_LINE_BYTES,
};

pub(super) fn bind_control_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let socket_error = |message: String| DaemonError::Socket {
        path: path.to_path_buf(),
        message,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(socket_error(
                "another quickfreeze node is already running with this data directory".into(),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|error| socket_error(format!("cannot remove the stale socket: {error}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|error| socket_error(error.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| socket_error(error.to_string()))?;
    Ok(listener)
}

pub(super) async fn accept_console(
    listener: UnixListener,
    commands: mpsc::Sender<Command>,
    limit: Arc<Semaphore>,
    me: NodeId,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let commands = commands.clone();
                connections.spawn(async move {
                    if let Err(error) = serve_console(stream, commands, me).await {
                        info!(%error, "console connection ended");
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                let mut stream = stream;
                let reply = HelloReply {
                    version: CONTROL_PROTOCOL_VERSION,
                    node_id: me.to_string(),
                    error: Some("too many console connections; try again".into()),
                };
                if let Ok(mut line) = serde_json::to_vec(&reply) {
                    line.push(b'\n');
                    let _ = stream.write_all(&line).await;
                }
            }
        }
    }
}

async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_CONTROL_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > MAX_CONTROL_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "control line too long",
        ));
    }
    Ok(Some(line))
}

async fn write_json<T: serde::Serialize>(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await
}

async fn serve_console(
    stream: UnixStream,
    commands: mpsc::Sender<Command>,
    me: NodeId,
) -> std::io::Result<()> {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let Some(line) = read_line(&mut reader).await? else {
        return Ok(());
    };
    let hello: Result<Hello, _> = serde_json::from_slice(&line);
    let error = match &hello {
        Ok(hello) if hello.protocol == CONTROL_PROTOCOL_NAME && hello.version == CONTROL_PROTOCOL_VERSION => None,
        Ok(hello) => Some(format!(
            "console speaks {} version {}, this node speaks {CONTROL_PROTOCOL_NAME} version {CONTROL_PROTOCOL_VERSION}; use the quickfreeze binary of the same release",
            hello.protocol, hello.version
        )),
        Err(error) => Some(format!("expected a hello line: {error}")),
    };
    write_json(
        &mut write_half,
        &HelloReply {
            version: CONTROL_PROTOCOL_VERSION,
            node_id: me.to_string(),
            error: error.clone(),
        },
    )
    .await?;
    if error.is_some() {
        return Ok(());
    }
    while let Some(line) = read_line(&mut reader).await? {
        let response = match serde_json::from_slice::<ControlRequest>(&line) {
            Err(error) => ControlResponse::Error {
                message: format!("malformed request: {error}"),
            },
            Ok(request) => {
                let wait = match &request {
                    ControlRequest::WaitDelivered {
                        message_id,
                        timeout_ms,
                    } => Some((message_id.clone(), *timeout_ms)),
                    _ => None,
                };
                let (reply, answer) = oneshot::channel();
                if commands.send(Command { request, reply }).await.is_err() {
                    return Ok(());
                }
                match wait {
                    None => answer.await.unwrap_or(ControlResponse::Error {
                        message: "the node is shutting down".into(),
                    }),
                    Some((message_id, timeout_ms)) => {
                        match tokio::time::timeout(Duration::from_millis(timeout_ms), answer).await
                        {
                            Ok(answer) => answer.unwrap_or(ControlResponse::Error {
                                message: "the node is shutting down".into(),
                            }),
                            Err(_) => ControlResponse::NotYetDelivered {
                                message_id,
                                state: "not delivered within the wait".into(),
                            },
                        }
                    }
                }
            }
        };
        write_json(&mut write_half, &response).await?;
    }
    Ok(())
}
