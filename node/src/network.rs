//! The transport layer: moves opaque byte frames between roster members over libp2p.
//!
//! This module knows nothing of envelopes, receipts or relays. It owns one libp2p [`Swarm`]
//! (TCP + Noise + Yamux on tokio) and offers a small request/response API to the daemon:
//!
//! ```text
//!  daemon task ── send_request(peer, frame) ──▶ Network ──▶ request_response ──▶ yamux stream ──▶ peer
//!  daemon task ◀── NetworkEvent::Response ◀──── Network ◀── request_response ◀── yamux stream ◀── peer
//!  daemon task ◀── NetworkEvent::InboundRequest { channel } ◀── Network ◀── … ◀── peer
//!  daemon task ── send_response(channel, frame) ──▶ Network ──▶ … ──▶ peer
//! ```
//!
//! One task owns the [`Network`] and drives it by awaiting [`Network::next_event`] inside its
//! `tokio::select!` loop; nothing here spawns a task or shares state behind a lock. Events are
//! produced only as fast as the owner pulls them, so a flood of peer activity cannot grow a queue
//! in this layer.
//!
//! Every wire frame is a `u32` big-endian length followed by that many bytes, for requests and
//! responses alike. The length is checked against the configured maximum before anything is
//! allocated; an oversized or truncated frame fails that one stream, never the process.
//!
//! Only roster members may hold a connection. The set of allowed peers (with their addresses) is
//! given by [`Network::set_allowed_peers`]; a connection from any other peer is refused as soon as
//! the Noise handshake reveals its identity and is reported as [`NetworkEvent::RejectedPeer`].

use std::{collections::BTreeMap, fmt, io, time::Duration};

use tokio::time::Instant;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
    allow_block_list, connection_limits, identify, identity, noise, ping,
    request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::{dial_opts::DialOpts, DialError, ListenError, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, TransportError,
};

/// The request/response protocol that carries quickfreeze frames.
pub const DEFAULT_PROTOCOL: StreamProtocol = StreamProtocol::new("/quickfreeze/msg/1");

/// The `protocol_version` announced through identify, so that a peer from another network (or a
/// future incompatible version) is recognisable in logs.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/quickfreeze/id/1";

/// Default largest frame: a 2 MiB message plus 64 KiB for the envelope around it.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 2 * 1024 * 1024 + 64 * 1024;

/// Bytes of the length prefix in front of every frame.
const LENGTH_PREFIX_BYTES: usize = 4;

/// A frame's buffer starts at most this large and grows only as bytes actually arrive, so a peer
/// that announces a large frame and then stalls does not make us hold the full size per stream.
const INITIAL_READ_CAPACITY_BYTES: usize = 64 * 1024;

/// Addresses kept per member: each is tried on every dial, so a roster entry with hundreds would
/// turn one dial into hundreds of connection attempts.
const MAX_ADDRESSES_PER_PEER: usize = 16;

/// Connection limits. Two connections per peer, not one: when two members dial each other at the
/// same moment both connections complete, and refusing the second would fail requests queued on it.
const MAX_ESTABLISHED_PER_PEER: u32 = 2;
/// Connections still in their TCP/Noise handshake from unknown remotes: bounds the cost a
/// non-member can impose before its identity is known and it can be refused.
const MAX_PENDING_INCOMING: u32 = 64;
/// Our own dials in progress.
const MAX_PENDING_OUTGOING: u32 = 256;
/// All established connections together (two file descriptors each in one process).
const MAX_ESTABLISHED_TOTAL: u32 = 1024;

/// Settings of the transport layer.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4100`; port 0 picks a free port (see
    /// [`Network::listen_addresses`] for the one chosen). Empty by default: such a node only dials.
    pub listen_addresses: Vec<Multiaddr>,
    /// Largest request frame accepted or sent, in bytes (without the 4-byte length prefix).
    pub max_request_bytes: usize,
    /// Largest response frame accepted or sent, in bytes (without the 4-byte length prefix).
    pub max_response_bytes: usize,
    /// How long one request may take from opening its stream to receiving the response; the same
    /// bound applies to answering an inbound request.
    pub request_timeout: Duration,
    /// How long a connection with no open stream is kept before it is closed. libp2p's default is
    /// 10 s and ping/identify do not keep a connection alive, so without this every message
    /// between quiet members would pay a fresh TCP + Noise handshake.
    pub idle_connection_timeout: Duration,
    /// Largest number of request streams (inbound and outbound together) on one connection.
    /// Beyond it, libp2p fails new outbound requests and drops new inbound streams.
    pub max_concurrent_streams: usize,
    /// The request/response protocol name.
    pub protocol: StreamProtocol,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen_addresses: Vec::new(),
            max_request_bytes: DEFAULT_MAX_FRAME_BYTES,
            // Responses use the same bound: this layer does not know what the daemon answers with.
            max_response_bytes: DEFAULT_MAX_FRAME_BYTES,
            request_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(300),
            max_concurrent_streams: 256,
            protocol: DEFAULT_PROTOCOL,
        }
    }
}

/// Errors of the transport layer. Problems caused by peers arrive as [`NetworkEvent`]s instead;
/// these are refusals of local calls and set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A [`NetworkConfig`] value cannot be used.
    #[error("invalid network configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The Noise handshake could not be set up with the given key.
    #[error("cannot set up the noise handshake: {0}")]
    Noise(#[from] noise::Error),
    /// Listening on an address failed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address from the configuration.
        address: Multiaddr,
        /// Why the transport refused it.
        #[source]
        source: Box<TransportError<io::Error>>,
    },
    /// The peer is not in the allowed set (not a roster member).
    #[error("peer {peer} is not an allowed roster member")]
    PeerNotAllowed {
        /// The refused peer.
        peer: PeerId,
    },
    /// A frame exceeds the configured maximum and was not sent.
    #[error("frame of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    FrameTooLarge {
        /// Size of the refused frame.
        size_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },
    /// The inbound request's stream is gone (timed out, or its connection closed), so the
    /// response cannot be delivered.
    #[error("response of {frame_bytes} bytes not sent: the request's stream is closed")]
    ResponseChannelClosed {
        /// Size of the undelivered response.
        frame_bytes: usize,
    },
    /// No address is known for the peer and it is not connected.
    #[error("no address known for peer {peer}")]
    NoAddresses {
        /// The peer that could not be dialled.
        peer: PeerId,
    },
    /// A test harness cut the link to this peer (see [`LinkFault`]); the request was not sent.
    #[error("link to {peer} cut by fault injection")]
    LinkCut {
        /// The peer.
        peer: PeerId,
    },
    /// Starting a dial failed.
    #[error("cannot dial peer {peer}: {source}")]
    Dial {
        /// The peer that could not be dialled.
        peer: PeerId,
        /// Why libp2p refused to start the dial (boxed: `DialError` is large and would bloat
        /// every `Result` of this module).
        #[source]
        source: Box<DialError>,
    },
}

/// What happened on the network, as returned by [`Network::next_event`].
pub enum NetworkEvent {
    /// The node listens on this (resolved) address.
    Listening {
        /// The bound address, with the actual port.
        address: Multiaddr,
    },
    /// The first connection to an allowed peer is established.
    Connected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to a peer has closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// An allowed peer sent a request; answer it with [`Network::send_response`] (dropping the
    /// channel tells the peer there will be no answer).
    InboundRequest {
        /// The sender.
        peer: PeerId,
        /// The request's bytes.
        frame: Vec<u8>,
        /// Where the response goes.
        channel: ResponseChannel<Vec<u8>>,
    },
    /// The answer to one of our requests.
    Response {
        /// The peer that answered.
        peer: PeerId,
        /// The id [`Network::send_request`] returned.
        request_id: OutboundRequestId,
        /// The response's bytes.
        frame: Vec<u8>,
    },
    /// One of our requests failed (dial failure, timeout, closed connection, refused frame…).
    /// Every request ends in exactly one `Response` or `OutboundFailure`.
    OutboundFailure {
        /// The peer the request was for.
        peer: PeerId,
        /// The id [`Network::send_request`] returned.
        request_id: OutboundRequestId,
        /// Why it failed, for logs.
        error: String,
    },
    /// A peer that is not allowed completed a handshake with us and was cut at once.
    RejectedPeer {
        /// The refused peer.
        peer: PeerId,
        /// Why, for logs.
        reason: String,
    },
}

// Written by hand so that logging an event prints a frame's size, not megabytes of bytes.
impl fmt::Debug for NetworkEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkEvent::Listening { address } => f
                .debug_struct("Listening")
                .field("address", address)
                .finish(),
            NetworkEvent::Connected { peer } => {
                f.debug_struct("Connected").field("peer", peer).finish()
            }
            NetworkEvent::Disconnected { peer } => {
                f.debug_struct("Disconnected").field("peer", peer).finish()
            }
            NetworkEvent::InboundRequest { peer, frame, .. } => f
                .debug_struct("InboundRequest")
                .field("peer", peer)
                .field("frame_bytes", &frame.len())
                .finish_non_exhaustive(),
            NetworkEvent::Response {
                peer,
                request_id,
                frame,
            } => f
                .debug_struct("Response")
                .field("peer", peer)
                .field("request_id", request_id)
                .field("frame_bytes", &frame.len())
                .finish(),
            NetworkEvent::OutboundFailure {
                peer,
                request_id,
                error,
            } => f
                .debug_struct("OutboundFailure")
                .field("peer", peer)
                .field("request_id", request_id)
                .field("error", error)
                .finish(),
            NetworkEvent::RejectedPeer { peer, reason } => f
                .debug_struct("RejectedPeer")
                .field("peer", peer)
                .field("reason", reason)
                .finish(),
        }
    }
}

/// A fault a test harness injects on the link to one peer (`[testing] fault_injection`; the
/// daemon refuses these requests otherwise). Messages are dropped or delayed here, above
/// Noise/Yamux, because dropping bytes inside an encrypted stream would only kill the connection.
///
/// - `drop_outbound`: this node cannot open a connection to the peer (a firewall or NAT in
///   between): [`Network::dial`] fails, and [`Network::send_request`] fails at once with
///   [`NetworkError::LinkCut`], as a refused dial would, unless a connection the peer opened is
///   up; such a connection carries traffic both ways.
/// - `drop_inbound`: nothing from the peer arrives: a connection with it, whoever opened it, is
///   closed as soon as it is established (and never reported as [`NetworkEvent::Connected`]);
///   requests from the peer still arriving are dropped without an answer (the peer sees its
///   request fail), and responses from it are discarded and reported as an
///   [`NetworkEvent::OutboundFailure`] (what crossed the cut direction is lost).
/// - `delay_ms`: responses from the peer and requests from it are held that long before they
///   are handed to the owner: a slow link, seen from both ends.
///
/// Both flags on both ends is a cut link: no connection between the two can exist, as with a
/// real partition (TCP needs both directions), so when the fault is lifted the first
/// successful dial is what tells each side that the peer is back. `drop_outbound` alone on one
/// end is a peer that can dial but cannot be dialled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFault {
    /// Fail every request to the peer.
    pub drop_outbound: bool,
    /// Drop every request and response from the peer.
    pub drop_inbound: bool,
    /// Hold everything from the peer this long.
    pub delay_ms: u64,
}

impl LinkFault {
    fn is_none(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// Events held back by a [`LinkFault::delay_ms`] at most; beyond it they are released early
/// rather than queued without bound.
const MAX_DELAYED_EVENTS: usize = 4096;

/// The libp2p behaviours, combined.
///
/// Field order matters: the derived `NetworkBehaviour` asks each field in turn whether to accept
/// a new connection and stops at the first refusal. The gates come first so that a refused
/// connection never reaches `request_response`, which would otherwise already have attached
/// queued requests to a handler that is then dropped — losing them without any failure event.
#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    request_response: request_response::Behaviour<FrameCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// The transport layer: one swarm, the allowed peers and their addresses. See the module docs.
pub struct Network {
    swarm: Swarm<Behaviour>,
    /// Allowed peers and the roster's addresses for each. A `BTreeMap` so that anything derived
    /// from iterating it (disconnect order, logs) is the same from run to run.
    allowed: BTreeMap<PeerId, Vec<Multiaddr>>,
    max_request_bytes: usize,
    max_response_bytes: usize,
    /// Injected link faults, by peer (empty unless a test harness set some).
    faults: BTreeMap<PeerId, LinkFault>,
    /// Events held back by a delay fault, with the instant each is due.
    delayed: Vec<(Instant, NetworkEvent)>,
}

impl Network {
    /// Builds the swarm (TCP + Noise + Yamux on tokio) and starts listening on the configured
    /// addresses. Must be called inside a tokio runtime. No peer is allowed until
    /// [`Network::set_allowed_peers`] is called.
    pub fn new(keypair: identity::Keypair, config: NetworkConfig) -> Result<Network, NetworkError> {
        check_frame_limit("max_request_bytes", config.max_request_bytes)?;
        check_frame_limit("max_response_bytes", config.max_response_bytes)?;
        if config.max_concurrent_streams == 0 {
            return Err(NetworkError::InvalidConfig {
                field: "max_concurrent_streams",
                reason: "must be at least 1".to_owned(),
            });
        }

        let codec = FrameCodec {
            max_request_bytes: config.max_request_bytes,
            max_response_bytes: config.max_response_bytes,
        };
        let request_response_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_streams);
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING))
            .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER))
            .with_max_established(Some(MAX_ESTABLISHED_TOTAL));
        let protocol = config.protocol.clone();

        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|key| Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                allowed: allow_block_list::Behaviour::default(),
                request_response: request_response::Behaviour::with_codec(
                    codec,
                    [(protocol, ProtocolSupport::Full)],
                    request_response_config,
                ),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), key.public())
                        .with_agent_version(format!(
                            "quickfreeze-node/{}",
                            env!("CARGO_PKG_VERSION")
                        ))
                        // Cache size 0 turns off identify's address book: the addresses a peer
                        // advertises about itself are not added to the ones we dial. The signed
                        // roster is the only source of addresses.
                        .with_cache_size(0),
                ),
                ping: ping::Behaviour::default(),
            })
            // Infallible: the closure returns the behaviour itself, not a `Result`.
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(|swarm_config| {
                swarm_config.with_idle_connection_timeout(config.idle_connection_timeout)
            })
            .build();

        for address in &config.listen_addresses {
            swarm
                .listen_on(address.clone())
                .map_err(|source| NetworkError::Listen {
                    address: address.clone(),
                    source: Box::new(source),
                })?;
        }

        Ok(Network {
            swarm,
            allowed: BTreeMap::new(),
            max_request_bytes: config.max_request_bytes,
            max_response_bytes: config.max_response_bytes,
            faults: BTreeMap::new(),
            delayed: Vec::new(),
        })
    }

    /// Sets (or, with the default value, removes) the injected fault on the link to `peer`.
    /// For test harnesses only; see [`LinkFault`].
    pub fn set_link_fault(&mut self, peer: PeerId, fault: LinkFault) {
        if fault.is_none() {
            self.faults.remove(&peer);
        } else {
            self.faults.insert(peer, fault);
        }
    }

    /// Removes every injected fault. Events already held back by a delay are still released at
    /// their time.
    pub fn clear_link_faults(&mut self) {
        self.faults.clear();
    }

    /// The injected fault on the link to `peer` (the default: none).
    pub fn link_fault(&self, peer: &PeerId) -> LinkFault {
        self.faults.get(peer).copied().unwrap_or_default()
    }

    /// This node's libp2p identity (the roster's node id in libp2p form).
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Replaces the set of peers that may hold a connection (the roster's members) and the
    /// addresses to dial each at. Connections to peers no longer in the set are closed.
    ///
    /// An address carrying a `/p2p/` component for a different peer is a roster error; it is
    /// skipped (with a warning) rather than dialled, since the dial could only fail. At most 16
    /// addresses per peer are kept; the rest are skipped with a warning.
    pub fn set_allowed_peers(&mut self, peers: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>) {
        let mut new_allowed: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
        for (peer, addresses) in peers {
            let entry = new_allowed.entry(peer).or_default();
            for address in addresses {
                // Normalise to `…/p2p/<peer>`: libp2p's address books store that form, and the
                // same socket written two ways would be dialled twice.
                match address.with_p2p(peer) {
                    Ok(address) if entry.contains(&address) => {}
                    Ok(address) if entry.len() >= MAX_ADDRESSES_PER_PEER => {
                        tracing::warn!(%peer, %address, "too many roster addresses; skipped")
                    }
                    Ok(address) => entry.push(address),
                    Err(address) => {
                        tracing::warn!(%peer, %address, "roster address names another peer; skipped")
                    }
                }
            }
        }

        let removed: Vec<PeerId> = self
            .allowed
            .keys()
            .filter(|peer| !new_allowed.contains_key(peer))
            .copied()
            .collect();
        for peer in removed {
            // Closes every connection to the peer and refuses new ones.
            self.swarm.behaviour_mut().allowed.disallow_peer(peer);
        }
        for (peer, addresses) in &new_allowed {
            self.swarm.behaviour_mut().allowed.allow_peer(*peer);
            for address in addresses {
                self.swarm.add_peer_address(*peer, address.clone());
            }
        }
        self.allowed = new_allowed;
    }

    /// Sends a request frame to an allowed peer, dialling it first if needed. The outcome arrives
    /// later as exactly one [`NetworkEvent::Response`] or [`NetworkEvent::OutboundFailure`]
    /// carrying the returned id.
    pub fn send_request(
        &mut self,
        peer: PeerId,
        frame: Vec<u8>,
    ) -> Result<OutboundRequestId, NetworkError> {
        let addresses = self.allowed_addresses(peer)?;
        check_frame_size(frame.len(), self.max_request_bytes)?;
        let fault = self.link_fault(&peer);
        if fault.drop_inbound || (fault.drop_outbound && !self.swarm.is_connected(&peer)) {
            return Err(NetworkError::LinkCut { peer });
        }
        // The roster's addresses are passed with every request rather than left to
        // request_response's own address book: that book forgets an address after one failed
        // dial and holds only 100 peers, so a member that was down once would become unreachable.
        Ok(self
            .swarm
            .behaviour_mut()
            .request_response
            .send_request_with_addresses(&peer, frame, addresses))
    }

    /// Answers an inbound request. The channel is consumed even on error: if the frame is too
    /// large or the stream is already gone, the peer sees a request without an answer.
    pub fn send_response(
        &mut self,
        channel: ResponseChannel<Vec<u8>>,
        frame: Vec<u8>,
    ) -> Result<(), NetworkError> {
        check_frame_size(frame.len(), self.max_response_bytes)?;
        self.swarm
            .behaviour_mut()
            .request_response
            .send_response(channel, frame)
            .map_err(|frame| NetworkError::ResponseChannelClosed {
                frame_bytes: frame.len(),
            })
    }

    /// Opens a connection to an allowed peer if there is none yet (and none being dialled).
    /// Requests do this by themselves; this is for warming a link up ahead of traffic.
    pub fn dial(&mut self, peer: PeerId) -> Result<(), NetworkError> {
        let addresses = self.allowed_addresses(peer)?;
        let fault = self.link_fault(&peer);
        if fault.drop_outbound || fault.drop_inbound {
            return Err(NetworkError::LinkCut { peer });
        }
        let options = DialOpts::peer_id(peer)
            .addresses(addresses)
            .extend_addresses_through_behaviour()
            .build();
        match self.swarm.dial(options) {
            Ok(()) => Ok(()),
            // Already connected or being dialled: the link this call asks for exists or is coming.
            Err(DialError::DialPeerConditionFalse(_)) => Ok(()),
            Err(DialError::NoAddresses) => Err(NetworkError::NoAddresses { peer }),
            Err(source) => Err(NetworkError::Dial {
                peer,
                source: Box::new(source),
            }),
        }
    }

    /// Closes every connection to the peer at once, failing the requests in flight on them. The
    /// peer stays allowed: the next request dials again. Used for fault injection.
    pub fn disconnect(&mut self, peer: PeerId) {
        // `Err` only says there was no connection to close, which is the wanted state anyway.
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Peers with at least one established connection.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.swarm.connected_peers().copied().collect()
    }

    /// The addresses the node actually listens on (port 0 resolved), as far as reported so far by
    /// [`NetworkEvent::Listening`].
    pub fn listen_addresses(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    /// Drives the swarm until something the owner must know about happens.
    ///
    /// Cancel-safe: the only await point is the swarm's own stream, and every swarm event is
    /// handled without awaiting, so dropping this future (e.g. when another `tokio::select!` arm
    /// wins) loses nothing.
    pub async fn next_event(&mut self) -> NetworkEvent {
        loop {
            let now = Instant::now();
            if let Some(index) = self.delayed.iter().position(|(due, _)| *due <= now) {
                return self.delayed.remove(index).1;
            }
            let next_due = self.delayed.iter().map(|(due, _)| *due).min();
            let swarm_event = match next_due {
                None => self.swarm.select_next_some().await,
                Some(due) => tokio::select! {
                    event = self.swarm.select_next_some() => event,
                    () = tokio::time::sleep_until(due) => continue,
                },
            };
            if let Some(event) = self.handle_swarm_event(swarm_event) {
                if let Some(event) = self.apply_delay(event) {
                    return event;
                }
            }
        }
    }

    /// Holds an event from a peer whose link is slowed; returns the others.
    fn apply_delay(&mut self, event: NetworkEvent) -> Option<NetworkEvent> {
        let peer = match &event {
            NetworkEvent::InboundRequest { peer, .. }
            | NetworkEvent::Response { peer, .. }
            | NetworkEvent::OutboundFailure { peer, .. } => *peer,
            _ => return Some(event),
        };
        let delay_ms = self.link_fault(&peer).delay_ms;
        if delay_ms == 0 || self.delayed.len() >= MAX_DELAYED_EVENTS {
            return Some(event);
        }
        self.delayed
            .push((Instant::now() + Duration::from_millis(delay_ms), event));
        None
    }

    fn allowed_addresses(&self, peer: PeerId) -> Result<Vec<Multiaddr>, NetworkError> {
        self.allowed
            .get(&peer)
            .cloned()
            .ok_or(NetworkError::PeerNotAllowed { peer })
    }

    /// Turns one swarm event into at most one of ours. Must not await (see `next_event`).
    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<NetworkEvent> {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::RequestResponse(event)) => {
                self.handle_request_response_event(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version,
                    protocol_version = %info.protocol_version, "identified peer");
                None
            }
            SwarmEvent::Behaviour(_) => None,
            SwarmEvent::NewListenAddr { address, .. } => Some(NetworkEvent::Listening { address }),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::warn!(%address, "no longer listening on address");
                None
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
                None
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
                None
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                if self.link_fault(&peer_id).drop_inbound {
                    // Fault injection: nothing from this peer gets through, so neither does a
                    // connection (see `LinkFault`).
                    tracing::debug!(peer = %peer_id, "fault injection: connection closed");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return None;
                }
                (num_established.get() == 1).then_some(NetworkEvent::Connected { peer: peer_id })
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                (num_established == 0).then_some(NetworkEvent::Disconnected { peer: peer_id })
            }
            SwarmEvent::IncomingConnectionError {
                peer_id,
                error,
                send_back_addr,
                ..
            } => match (peer_id, &error) {
                (Some(peer), ListenError::Denied { cause }) => {
                    match cause.downcast_ref::<allow_block_list::NotAllowed>() {
                        Some(not_allowed) => Some(NetworkEvent::RejectedPeer {
                            peer,
                            reason: format!("{not_allowed} (inbound from {send_back_addr})"),
                        }),
                        None => {
                            // A connection limit, not the roster: the peer is a member.
                            tracing::debug!(%peer, %send_back_addr, ?cause, "incoming connection denied");
                            None
                        }
                    }
                }
                _ => {
                    tracing::debug!(?peer_id, %send_back_addr, %error, "incoming connection failed");
                    None
                }
            },
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => match (peer_id, &error) {
                // A dial that completed to a peer removed from the roster meanwhile.
                (Some(peer), DialError::Denied { cause })
                    if cause
                        .downcast_ref::<allow_block_list::NotAllowed>()
                        .is_some() =>
                {
                    Some(NetworkEvent::RejectedPeer {
                        peer,
                        reason: format!("peer {peer} is not in the allow list (outbound)"),
                    })
                }
                _ => {
                    // Requests waiting for this dial get their own OutboundFailure events.
                    tracing::debug!(?peer_id, %error, "outgoing connection failed");
                    None
                }
            },
            _ => None,
        }
    }

    fn handle_request_response_event(
        &mut self,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) -> Option<NetworkEvent> {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if self.link_fault(&peer).drop_inbound {
                    // Fault injection: the request is lost on the way in; dropping the channel
                    // makes the peer's request fail.
                    tracing::debug!(%peer, "fault injection: inbound request dropped");
                    None
                } else if self.allowed.contains_key(&peer) {
                    Some(NetworkEvent::InboundRequest {
                        peer,
                        frame: request,
                        channel,
                    })
                } else {
                    // Read before the peer left the roster; dropping the channel tells it no
                    // answer will come.
                    tracing::debug!(%peer, "dropped a request from a peer no longer allowed");
                    None
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if self.link_fault(&peer).drop_inbound {
                    Some(NetworkEvent::OutboundFailure {
                        peer,
                        request_id,
                        error: "fault injection: response dropped".to_owned(),
                    })
                } else if self.allowed.contains_key(&peer) {
                    Some(NetworkEvent::Response {
                        peer,
                        request_id,
                        frame: response,
                    })
                } else {
                    // Still report the request's end, so the owner's bookkeeping of requests in
                    // flight stays exact.
                    Some(NetworkEvent::OutboundFailure {
                        peer,
                        request_id,
                        error: "response from a peer no longer allowed was discarded".to_owned(),
                    })
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => Some(NetworkEvent::OutboundFailure {
                peer,
                request_id,
                error: error.to_string(),
            }),
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                // The peer sees its own side of this failure; nothing for our owner to do.
                tracing::debug!(%peer, %request_id, %error, "inbound request failed");
                None
            }
            request_response::Event::ResponseSent { .. } => None,
        }
    }
}

fn check_frame_limit(field: &'static str, max_bytes: usize) -> Result<(), NetworkError> {
    if u32::try_from(max_bytes).is_err() {
        return Err(NetworkError::InvalidConfig {
            field,
            reason: format!("{max_bytes} does not fit the 32-bit length prefix"),
        });
    }
    Ok(())
}

fn check_frame_size(size_bytes: usize, max_bytes: usize) -> Result<(), NetworkError> {
    if size_bytes > max_bytes {
        return Err(NetworkError::FrameTooLarge {
            size_bytes,
            max_bytes,
        });
    }
    Ok(())
}

/// The wire format of requests and responses: `u32` big-endian length, then the bytes.
#[derive(Debug, Clone)]
struct FrameCodec {
    max_request_bytes: usize,
    max_response_bytes: usize,
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response_bytes).await
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
async fn read_frame<T>(io: &mut T, max_bytes: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    io.read_exact(&mut prefix).await?;
    let declared = u32::from_be_bytes(prefix);
    // The peer's length is checked before any allocation depends on it.
    let declared_bytes = usize::try_from(declared)
        .ok()
        .filter(|declared_bytes| *declared_bytes <= max_bytes)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {declared} bytes exceeds the maximum of {max_bytes} bytes"),
            )
        })?;
    let mut frame = Vec::with_capacity(declared_bytes.min(INITIAL_READ_CAPACITY_BYTES));
    // `take` bounds the read itself, whatever the peer sends after the declared length.
    io.take(u64::from(declared)).read_to_end(&mut frame).await?;
    if frame.len() != declared_bytes {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {} of {declared_bytes} bytes", frame.len()),
        ));
    }
    Ok(frame)
}

/// Writes one length-prefixed frame; refuses one over `max_bytes` (the peer would refuse it too).
async fn write_frame<T>(io: &mut T, frame: &[u8], max_bytes: usize) -> io::Result<()>
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
    }

    #[test]
    fn truncated_frame_is_unexpected_eof() {
        let mut bytes = encoded(b"hello", 16);
        bytes.truncate(7);
        let error = block_on(read_frame(&mut Cursor::new(bytes), 16)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let error = block_on(read_frame(&mut Cursor::new(vec![0, 0]), 16)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
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

    #[test]
    fn config_limits_beyond_u32_are_refused() {
        assert!(check_frame_limit("max_request_bytes", u32::MAX as usize).is_ok());
        if let Some(too_big) = (u32::MAX as usize).checked_add(1) {
            assert!(matches!(
                check_frame_limit("max_request_bytes", too_big),
                Err(NetworkError::InvalidConfig { .. })
            ));
        }
    }
}
