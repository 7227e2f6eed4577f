//! The wire format of quickfreeze frames: a `u32` big-endian length, then that many bytes.
//!
//! The length is checked against the configured maximum before anything is allocated, and a
//! frame that is oversized or ends early fails with a [`FrameError`] inside the `io::Error`, so
//! the network layer can tell (and count) what a peer did wrong.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt, io,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{
    core::{transport::PortUse, Endpoint},
    request_response,
    swarm::{
        dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId, StreamProtocol,
};
use tokio::sync::Notify;

use super::ledger::Offense;

/// Bytes of the length prefix in front of every frame.
const LENGTH_PREFIX_BYTES: usize = 4;

/// A frame's buffer starts at most this large and grows only as bytes actually arrive, so a peer
/// that announces a large frame and then stalls does not make us hold the full size per stream.
const INITIAL_READ_CAPACITY_BYTES: usize = 64 * 1024;

/// What was wrong with a frame a peer sent; carried inside the `io::Error` the codec returns
/// (see [`FrameError::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announced more than the maximum.
    Oversized {
        /// The announced length.
        declared_bytes: u64,
        /// The configured maximum.
        max_bytes: usize,
    },
    /// The stream ended before the prefix or the announced bytes were complete.
    Truncated {
        /// Bytes received (of the prefix, when `declared_bytes` is `None`).
        received_bytes: usize,
        /// The announced length, if the prefix was complete.
        declared_bytes: Option<usize>,
    },
}

impl FrameError {
    /// The frame error inside `error`, if the codec produced it.
    pub fn of(error: &io::Error) -> Option<FrameError> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<FrameError>())
            .copied()
    }

    fn into_io(self) -> io::Error {
        let kind = match self {
            FrameError::Oversized { .. } => io::ErrorKind::InvalidData,
            FrameError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
        };
        io::Error::new(kind, self)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversized {
                declared_bytes,
                max_bytes,
            } => write!(
                f,
                "frame of {declared_bytes} bytes exceeds the maximum of {max_bytes} bytes"
            ),
            FrameError::Truncated {
                received_bytes,
                declared_bytes: Some(declared_bytes),
            } => write!(
                f,
                "frame truncated: {received_bytes} of {declared_bytes} bytes"
            ),
            FrameError::Truncated {
                received_bytes,
                declared_bytes: None,
            } => write!(
                f,
                "frame truncated: {received_bytes} of {LENGTH_PREFIX_BYTES} length-prefix bytes"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// What peers did wrong on their streams, counted by the codec instances inside connection
/// tasks and drained by the network (`take`). request_response reports a stream whose request
/// could not be read only at debug level, so the codec itself must say whose stream it was.
#[derive(Clone, Default)]
pub(crate) struct StreamFaults {
    inner: Arc<Mutex<FaultsInner>>,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct FaultsInner {
    /// Counts not yet drained; at most members × offenses entries (only members connect).
    counts: BTreeMap<(PeerId, Offense), u64>,
    /// The peer whose connection handler is being created right now (see [`Attribution`]).
    current: Option<PeerId>,
}

impl StreamFaults {
    fn lock(&self) -> std::sync::MutexGuard<'_, FaultsInner> {
        // Counts stay usable after a panic elsewhere; they are plain integers.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, peer: PeerId, offense: Offense) {
        let mut inner = self.lock();
        let count = inner.counts.entry((peer, offense)).or_default();
        *count = count.saturating_add(1);
        drop(inner);
        self.notify.notify_one();
    }

    /// The counts since the last call.
    pub(crate) fn take(&self) -> BTreeMap<(PeerId, Offense), u64> {
        std::mem::take(&mut self.lock().counts)
    }

    /// Resolves when something was recorded since the last wake-up.
    pub(crate) fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

/// Tells the codec whose connection it serves. request_response clones its codec for each new
/// connection's handler inside `handle_established_*_connection`, without the peer id; this
/// behaviour sits right before it in the combined behaviour (whose fields are asked in order),
/// notes the peer, and the clone picks it up (see `FrameCodec`'s `Clone`).
pub(crate) struct Attribution {
    pub(crate) faults: StreamFaults,
}

impl NetworkBehaviour for Attribution {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.faults.lock().current = Some(peer);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.faults.lock().current = Some(peer);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _event: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// The wire format of requests and responses: `u32` big-endian length, then the bytes.
pub(crate) struct FrameCodec {
    pub(crate) max_request_bytes: usize,
    pub(crate) max_response_bytes: usize,
    /// How long reading one frame may take before the stream counts as stalled.
    pub(crate) read_timeout: Duration,
    pub(crate) faults: StreamFaults,
    /// The peer at the other end of this codec's connection (`None` for the behaviour's own
    /// template codec).
    pub(crate) peer: Option<PeerId>,
}

impl Clone for FrameCodec {
    fn clone(&self) -> Self {
        FrameCodec {
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            read_timeout: self.read_timeout,
            faults: self.faults.clone(),
            // A handler's codec keeps its peer; the template's clone is for the connection
            // `Attribution` has just noted.
            peer: self.peer.or_else(|| self.faults.lock().current),
        }
    }
}

impl FrameCodec {
    /// Reads a frame, counting what went wrong against the peer.
    ///
    /// A response stream that ends before the first byte is not counted: that is how a peer
    /// refuses a request (or one of ours it could not read), not a fault of its own.
    async fn read_counted<T>(
        &self,
        io: &mut T,
        max_bytes: usize,
        is_response: bool,
    ) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let result = match tokio::time::timeout(self.read_timeout, read_frame(io, max_bytes)).await
        {
            Ok(result) => result,
            Err(_) => {
                if let Some(peer) = self.peer {
                    self.faults.record(peer, Offense::StalledStream);
                }
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no complete frame within {:?}", self.read_timeout),
                ));
            }
        };
        if let (Err(error), Some(peer)) = (&result, self.peer) {
            match FrameError::of(error) {
                Some(FrameError::Oversized { .. }) => {
                    self.faults.record(peer, Offense::OversizedFrame)
                }
                Some(FrameError::Truncated {
                    received_bytes: 0,
                    declared_bytes: None,
                }) if is_response => {}
                Some(FrameError::Truncated { .. }) => {
                    self.faults.record(peer, Offense::TruncatedFrame)
                }
                None => {}
            }
        }
        result
    }
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_counted(io, self.max_request_bytes, false).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_counted(io, self.max_response_bytes, true).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, self.max_request_bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.max_response_bytes).await
    }
}

/// Reads one length-prefixed frame of at most `max_bytes` bytes.
pub(crate) async fn read_frame<T>(io: &mut T, max_bytes: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let mut prefix_read = 0;
    while prefix_read < LENGTH_PREFIX_BYTES {
        let read = io.read(&mut prefix[prefix_read..]).await?;
        if read == 0 {
            return Err(FrameError::Truncated {
                received_bytes: prefix_read,
                declared_bytes: None,
            }
            .into_io());
        }
        prefix_read += read;
    }
    let declared = u32::from_be_bytes(prefix);
    // The peer's length is checked before any allocation depends on it.
    let declared_bytes = usize::try_from(declared)
        .ok()
        .filter(|declared_bytes| *declared_bytes <= max_bytes)
        .ok_or_else(|| {
            FrameError::Oversized {
                declared_bytes: u64::from(declared),
                max_bytes,
            }
            .into_io()
        })?;
    let mut frame = Vec::with_capacity(declared_bytes.min(INITIAL_READ_CAPACITY_BYTES));
    // `take` bounds the read itself, whatever the peer sends after the declared length.
    io.take(u64::from(declared)).read_to_end(&mut frame).await?;
    if frame.len() != declared_bytes {
        return Err(FrameError::Truncated {
            received_bytes: frame.len(),
            declared_bytes: Some(declared_bytes),
        }
        .into_io());
    }
    Ok(frame)
}

/// Writes one length-prefixed frame; refuses one over `max_bytes` (the peer would refuse it too).
pub(crate) async fn write_frame<T>(io: &mut T, frame: &[u8], max_bytes: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let length = u32::try_from(frame.len())
        .ok()
        .filter(|_| frame.len() <= max_bytes)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "frame of {} bytes exceeds the maximum of {max_bytes} bytes",
                    frame.len()
                ),
            )
        })?;
    io.write_all(&length.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::{executor::block_on, io::Cursor};

    use super::*;

    fn encoded(frame: &[u8], max_bytes: usize) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        block_on(write_frame(&mut bytes, frame, max_bytes)).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn frame_round_trips_with_big_endian_prefix() {
        let bytes = encoded(b"hello", 16);
        assert_eq!(bytes, b"\x00\x00\x00\x05hello");
        let frame = block_on(read_frame(&mut Cursor::new(bytes), 16)).unwrap();
        assert_eq!(frame, b"hello");
    }

    #[test]
    fn empty_frame_round_trips() {
        let bytes = encoded(b"", 16);
        assert_eq!(bytes, [0, 0, 0, 0]);
        assert!(block_on(read_frame(&mut Cursor::new(bytes), 16))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn frame_at_the_limit_is_accepted_and_one_byte_more_is_not() {
        let at_limit = vec![7u8; 100];
        let bytes = encoded(&at_limit, 100);
        assert_eq!(
            block_on(read_frame(&mut Cursor::new(bytes.clone()), 100)).unwrap(),
            at_limit
        );
        let error = block_on(read_frame(&mut Cursor::new(bytes), 99)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn huge_length_prefix_is_refused_before_reading_the_body() {
        // Claims 4 GiB but carries nothing: must fail on the prefix, not try to allocate or wait.
        let bytes = vec![0xff, 0xff, 0xff, 0xff];
        let error = block_on(read_frame(&mut Cursor::new(bytes), 1024)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            FrameError::of(&error),
            Some(FrameError::Oversized {
                declared_bytes: u64::from(u32::MAX),
                max_bytes: 1024
            })
        );
    }

    #[test]
    fn truncated_frame_is_unexpected_eof() {
        let mut bytes = encoded(b"hello", 16);
        bytes.truncate(7);
        let error = block_on(read_frame(&mut Cursor::new(bytes), 16)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            FrameError::of(&error),
            Some(FrameError::Truncated {
                received_bytes: 3,
                declared_bytes: Some(5)
            })
        );
        let error = block_on(read_frame(&mut Cursor::new(vec![0, 0]), 16)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            FrameError::of(&error),
            Some(FrameError::Truncated {
                received_bytes: 2,
                declared_bytes: None
            })
        );
    }

    #[test]
    fn bytes_after_the_declared_length_are_not_read_into_the_frame() {
        let mut bytes = encoded(b"abc", 16);
        bytes.extend_from_slice(b"trailing");
        let frame = block_on(read_frame(&mut Cursor::new(bytes), 16)).unwrap();
        assert_eq!(frame, b"abc");
    }

    #[test]
    fn writing_an_oversized_frame_fails_without_writing() {
        let mut bytes = Cursor::new(Vec::new());
        let error = block_on(write_frame(&mut bytes, &[0u8; 17], 16)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(bytes.into_inner().is_empty());
    }
}
