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
//!
//! Nothing outside the node sets its costs (invariant 9). Before the handshake, [`guard`] bounds
//! the connections each source address (and everyone together) may hold, and an inbound
//! handshake must finish within [`NetworkConfig::inbound_handshake_timeout`]. Every refusal and
//! every misbehaviour of a member is counted in a [`ledger::Ledger`] and summarised in at most one
//! WARN line per [`NetworkConfig::summary_interval`]; no peer or stranger gets a log line of its
//! own (only a few [`NetworkEvent::RejectedPeer`] samples per interval reach the owner).
//!
//! Submodules: [`codec`] (the frame format), [`guard`] (pending-connection limits), [`ledger`]
//! (counts and the summary line), [`listen`] (refusing a listen port another process holds).

pub mod codec;
pub mod guard;
pub mod ledger;
pub mod listen;

use std::{collections::BTreeMap, fmt, io, time::Duration};

use tokio::time::Instant;

use futures::StreamExt;
use libp2p::{
    allow_block_list, connection_limits,
    core::{transport::timeout::TransportTimeout, upgrade},
    identify, identity, noise, ping,
    request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::{dial_opts::DialOpts, DialError, ListenError, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport, TransportError,
};

use codec::{Attribution, FrameCodec, StreamFaults};
use guard::{PendingGuard, PendingLimitExceeded, PendingLimits, Source};
use ledger::{Counts, Ledger, Offender, Offense};

/// The request/response protocol that carries quickfreeze frames.
pub const DEFAULT_PROTOCOL: StreamProtocol = StreamProtocol::new("/quickfreeze/msg/1");

/// The `protocol_version` announced through identify, so that a peer from another network (or a
/// future incompatible version) is recognisable in logs.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/quickfreeze/id/1";

/// Default largest frame: a 2 MiB message plus 64 KiB for the envelope around it.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 2 * 1024 * 1024 + 64 * 1024;

/// Addresses kept per member: each is tried on every dial, so a roster entry with hundreds would
/// turn one dial into hundreds of connection attempts.
const MAX_ADDRESSES_PER_PEER: usize = 16;

/// Connection limits. Two connections per peer, not one: when two members dial each other at the
/// same moment both connections complete, and refusing the second would fail requests queued on it.
const MAX_ESTABLISHED_PER_PEER: u32 = 2;
/// `tracing` directives the daemon's log filter should add: libp2p's request_response writes a
/// WARN line of its own for every inbound stream it drops over the per-connection stream limit
/// ("Dropping inbound stream because we are at capacity"), which a member could otherwise use to
/// fill the log; those streams are bounded by the limit itself.
pub const LOG_FILTER_DIRECTIVES: &[&str] = &["libp2p_request_response::handler=error"];

/// Connections still in their TCP/Noise handshake from unknown remotes, all sources together:
/// bounds the cost strangers can impose before their identity is known and they can be refused.
pub const DEFAULT_MAX_PENDING_INCOMING: usize = 64;
/// The same from one source address (an IPv4 address or an IPv6 /64): a member needs one or two,
/// so one address holding silent connections cannot take the slots everyone else needs.
pub const DEFAULT_MAX_PENDING_INCOMING_PER_SOURCE: usize = 4;
/// How long an inbound connection may take from TCP accept to a completed Noise + Yamux
/// handshake. A member on a loaded machine completes it in milliseconds; a silent connection
/// holds its slot no longer than this.
pub const DEFAULT_INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// At most one summary line of refusals and misbehaviour per this interval.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
/// [`NetworkEvent::RejectedPeer`] events handed to the owner per summary interval (the owner
/// logs each); later refusals are only counted.
const MAX_REJECTED_EVENTS_PER_INTERVAL: u32 = 3;
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
    /// Inbound connections still in their handshake, from all sources together.
    pub max_pending_incoming: usize,
    /// Inbound connections still in their handshake from one source address (IPv4 address or
    /// IPv6 /64 prefix).
    pub max_pending_incoming_per_source: usize,
    /// How long an inbound connection may take to complete its Noise + Yamux handshake.
    pub inbound_handshake_timeout: Duration,
    /// At most one WARN line summarising refusals and misbehaviour per this interval.
    pub summary_interval: Duration,
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
            max_pending_incoming: DEFAULT_MAX_PENDING_INCOMING,
            max_pending_incoming_per_source: DEFAULT_MAX_PENDING_INCOMING_PER_SOURCE,
            inbound_handshake_timeout: DEFAULT_INBOUND_HANDSHAKE_TIMEOUT,
            summary_interval: DEFAULT_SUMMARY_INTERVAL,
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
    /// The transport (TCP + Noise + Yamux) could not be set up with the given key.
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    /// The listen address is already taken by another socket (another node, or any other
    /// program), which would otherwise silently share the port with this node.
    #[error("cannot listen on {address}: {reason}; stop the other program or choose another port in `listen`")]
    AddressInUse {
        /// The address from the configuration.
        address: Multiaddr,
        /// What the check found.
        reason: String,
    },
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
    /// A peer that is not allowed completed a handshake with us and was cut at once. Only the
    /// first few refusals of each summary interval are reported this way (the owner may log each
    /// one); every refusal is counted in [`Network::report`] and the summary line.
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

/// Counts of refusals and misbehaviour since the node started, as [`Network::report`] gives
/// them. Members are counted by peer id, strangers and unidentified connections by source
/// address; beyond a fixed number of sources the rest are summed in `other_sources`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkReport {
    /// Per member.
    pub by_member: BTreeMap<PeerId, Counts>,
    /// Per source address (non-members and connections refused before their handshake).
    pub by_address: BTreeMap<Source, Counts>,
    /// Sources beyond the number kept one by one.
    pub other_sources: Counts,
    /// Inbound connections in their handshake right now.
    pub pending_incoming: usize,
}

impl NetworkReport {
    /// The total of one offense over every offender.
    pub fn total(&self, offense: Offense) -> u64 {
        self.by_member
            .values()
            .chain(self.by_address.values())
            .chain(std::iter::once(&self.other_sources))
            .filter_map(|counts| counts.get(&offense))
            .sum()
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
    pending: PendingGuard,
    limits: connection_limits::Behaviour,
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Must come right before `request_response` (see `codec::Attribution`).
    attribution: Attribution,
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
    /// Refusals and misbehaviour, counted and summarised.
    ledger: Ledger,
    /// What the codec saw members do wrong on their streams, not yet in the ledger.
    stream_faults: StreamFaults,
    /// [`NetworkEvent::RejectedPeer`] events handed out since `rejected_window`.
    rejected_events: u32,
    rejected_window: Instant,
    summary_interval: Duration,
}

impl Network {
    /// Builds the swarm (TCP + Noise + Yamux on tokio) and starts listening on the configured
    /// addresses. Must be called inside a tokio runtime. No peer is allowed until
    /// [`Network::set_allowed_peers`] is called.
    pub fn new(keypair: identity::Keypair, config: NetworkConfig) -> Result<Network, NetworkError> {
        check_frame_limit("max_request_bytes", config.max_request_bytes)?;
        check_frame_limit("max_response_bytes", config.max_response_bytes)?;
        for (field, value) in [
            ("max_concurrent_streams", config.max_concurrent_streams),
            ("max_pending_incoming", config.max_pending_incoming),
            (
                "max_pending_incoming_per_source",
                config.max_pending_incoming_per_source,
            ),
        ] {
            if value == 0 {
                return Err(NetworkError::InvalidConfig {
                    field,
                    reason: "must be at least 1".to_owned(),
                });
            }
        }
        for (field, value) in [
            (
                "inbound_handshake_timeout",
                config.inbound_handshake_timeout,
            ),
            ("summary_interval", config.summary_interval),
        ] {
            if value.is_zero() {
                return Err(NetworkError::InvalidConfig {
                    field,
                    reason: "must be longer than zero".to_owned(),
                });
            }
        }

        let stream_faults = StreamFaults::default();
        let codec = FrameCodec {
            max_request_bytes: config.max_request_bytes,
            max_response_bytes: config.max_response_bytes,
            // Well inside the request timeout, so that the codec (which knows the peer) sees
            // the stall before request_response drops the stream without saying whose it was.
            read_timeout: config.request_timeout / 2,
            faults: stream_faults.clone(),
            peer: None,
        };
        let request_response_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_streams);
        // Pending incoming connections are bounded by `PendingGuard` (per source and in total).
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING))
            .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER))
            .with_max_established(Some(MAX_ESTABLISHED_TOTAL));
        let protocol = config.protocol.clone();

        let pending_limits = PendingLimits {
            per_source: config.max_pending_incoming_per_source,
            total: config.max_pending_incoming,
        };
        let handshake_timeout = config.inbound_handshake_timeout;

        // What `SwarmBuilder::with_tcp` builds, plus a deadline on inbound handshakes only (our
        // own dials keep the builder's 10 s: a slow member is still worth waiting for).
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let transport = tcp::tokio::Transport::new(tcp::Config::default())
                        .upgrade(upgrade::Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default());
                    Ok(TransportTimeout::with_ingoing_timeout(
                        transport,
                        handshake_timeout,
                    ))
                },
            )
            .map_err(|error| NetworkError::Transport(error.to_string()))?
            .with_behaviour(|key| Behaviour {
                pending: PendingGuard::new(pending_limits),
                limits: connection_limits::Behaviour::new(limits),
                allowed: allow_block_list::Behaviour::default(),
                attribution: Attribution {
                    faults: stream_faults.clone(),
                },
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
                swarm_config
                    .with_idle_connection_timeout(config.idle_connection_timeout)
                    // Each request opens a stream; with `V1` the request waits for the other side
                    // to confirm the protocol, one extra round trip per hop on every message (the
                    // WAN bench: 354 ms -> 203 ms p50 at 150 ms RTT for a pair). We offer exactly
                    // one protocol per stream, so writing before the confirmation is safe.
                    .with_substream_upgrade_protocol_override(
                        libp2p::core::upgrade::Version::V1Lazy,
                    )
            })
            .build();

        for address in &config.listen_addresses {
            // libp2p listens with SO_REUSEPORT, so a port another node holds would not fail the
            // bind: both would listen and each get part of the other's connections.
            listen::check_not_in_use(address)?;
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
            ledger: Ledger::new(config.summary_interval),
            stream_faults,
            rejected_events: 0,
            rejected_window: Instant::now(),
            summary_interval: config.summary_interval,
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
            for ((peer, offense), count) in self.stream_faults.take() {
                self.ledger
                    .record_many(Offender::Member(peer), offense, count, now);
            }
            self.write_summary_if_due(now);
            if let Some(index) = self.delayed.iter().position(|(due, _)| *due <= now) {
                return self.delayed.remove(index).1;
            }
            let next_due = self
                .delayed
                .iter()
                .map(|(due, _)| *due)
                .chain(self.ledger.due())
                .min();
            let faults = self.stream_faults.notify();
            let swarm_event = match next_due {
                None => tokio::select! {
                    event = self.swarm.select_next_some() => event,
                    () = faults.notified() => continue,
                },
                Some(due) => tokio::select! {
                    event = self.swarm.select_next_some() => event,
                    () = faults.notified() => continue,
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

    /// Counts a member's misbehaviour that only the owner can see, e.g. a frame the application
    /// refused ([`Offense::JunkFrame`]). It is summarised with the rest; the owner should not log
    /// each one itself.
    pub fn note_misbehaviour(&mut self, peer: PeerId, offense: Offense) {
        let now = Instant::now();
        self.ledger.record(self.offender(peer, None), offense, now);
        self.write_summary_if_due(now);
    }

    /// Names members in the summary line (e.g. by country); peers without a label are shown by
    /// their shortened peer id.
    pub fn set_peer_labels(&mut self, labels: impl IntoIterator<Item = (PeerId, String)>) {
        self.ledger.set_labels(labels.into_iter().collect());
    }

    /// The counts of refusals and misbehaviour since start, for metrics and `peers`.
    pub fn report(&self) -> NetworkReport {
        let mut report = NetworkReport {
            pending_incoming: self.swarm.behaviour().pending.pending(),
            ..NetworkReport::default()
        };
        for (offender, counts) in self.ledger.totals() {
            match offender {
                Offender::Member(peer) => {
                    report.by_member.insert(*peer, counts.clone());
                }
                Offender::Address(source) => {
                    report.by_address.insert(*source, counts.clone());
                }
                Offender::Others => report.other_sources = counts.clone(),
            }
        }
        report
    }

    /// The counts of refusals and misbehaviour since start for one member (for `peers`).
    pub fn misbehaviour_of(&self, peer: &PeerId) -> Counts {
        self.ledger.member_totals(peer)
    }

    /// The counts since start for everyone who is not a member, summed over all sources.
    pub fn stranger_totals(&self) -> Counts {
        let mut sum = Counts::new();
        for (offender, counts) in self.ledger.totals() {
            if matches!(offender, ledger::Offender::Member(_)) {
                continue;
            }
            for (offense, count) in counts {
                *sum.entry(*offense).or_default() += count;
            }
        }
        sum
    }

    /// Writes the summary line if one is due.
    fn write_summary_if_due(&mut self, now: Instant) {
        if let Some(line) = self.ledger.take_summary(now) {
            tracing::warn!(target: "quickfreeze_node::network::summary", "{line}");
        }
    }

    /// Who to charge for something seen on a connection: a member by peer id, anyone else (or
    /// an unidentified connection) by source address.
    fn offender(&self, peer: PeerId, remote: Option<&Multiaddr>) -> Offender {
        match remote {
            Some(remote) if !self.allowed.contains_key(&peer) => {
                Offender::Address(Source::of(remote))
            }
            _ => Offender::Member(peer),
        }
    }

    /// Whether another [`NetworkEvent::RejectedPeer`] may go to the owner in this interval.
    fn rejected_event_allowed(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.rejected_window) >= self.summary_interval {
            self.rejected_window = now;
            self.rejected_events = 0;
        }
        self.rejected_events += 1;
        self.rejected_events <= MAX_REJECTED_EVENTS_PER_INTERVAL
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
            } => {
                let now = Instant::now();
                let source = Offender::Address(Source::of(&send_back_addr));
                tracing::debug!(?peer_id, %send_back_addr, %error, "incoming connection failed");
                match (peer_id, &error) {
                    (Some(peer), ListenError::Denied { cause })
                        if cause
                            .downcast_ref::<allow_block_list::NotAllowed>()
                            .is_some() =>
                    {
                        self.ledger.record(source, Offense::RefusedDial, now);
                        self.rejected_event_allowed(now)
                            .then(|| NetworkEvent::RejectedPeer {
                                peer,
                                reason: format!(
                                    "peer {peer} is not in the allow list (inbound from {send_back_addr})"
                                ),
                            })
                    }
                    (Some(peer), ListenError::Denied { .. }) => {
                        // A connection limit, not the roster: the peer is a member.
                        self.ledger.record(
                            self.offender(peer, Some(&send_back_addr)),
                            Offense::ExtraConnection,
                            now,
                        );
                        None
                    }
                    (None, ListenError::Denied { cause })
                        if cause.downcast_ref::<PendingLimitExceeded>().is_some() =>
                    {
                        self.ledger.record(source, Offense::PendingLimit, now);
                        None
                    }
                    (_, ListenError::Transport(transport_error)) => {
                        let offense = if is_timeout(transport_error) {
                            Offense::HandshakeTimeout
                        } else {
                            Offense::HandshakeFailed
                        };
                        self.ledger.record(source, offense, now);
                        None
                    }
                    _ => None,
                }
            }
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
                // The peer sees its own side of this failure; nothing for our owner to do, but
                // what the peer did wrong is counted and summarised.
                // (Frames that could not be read never get this far: the codec counts them.)
                tracing::debug!(%peer, %request_id, %error, "inbound request failed");
                None
            }
            request_response::Event::ResponseSent { .. } => None,
        }
    }
}

/// Whether a handshake failed on the inbound deadline (rather than on bad bytes or a reset).
fn is_timeout(error: &TransportError<io::Error>) -> bool {
    let TransportError::Other(error) = error else {
        return false;
    };
    if error.kind() == io::ErrorKind::TimedOut {
        return true;
    }
    // `TransportTimeout`'s error is generic over the inner transport's error and boxed inside the
    // `io::Error`, so it is recognised by its message.
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(error) = source {
        if error.to_string().contains("Timeout has been reached") {
            return true;
        }
        source = error.source();
    }
    false
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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

    #[test]
    fn zero_limits_and_deadlines_are_refused_with_the_field_named() {
        let config = NetworkConfig {
            max_pending_incoming_per_source: 0,
            ..NetworkConfig::default()
        };
        let error = futures::executor::block_on(async {
            Network::new(identity::Keypair::generate_ed25519(), config)
        })
        .err()
        .unwrap();
        assert!(error
            .to_string()
            .contains("max_pending_incoming_per_source"));
        let config = NetworkConfig {
            inbound_handshake_timeout: Duration::ZERO,
            ..NetworkConfig::default()
        };
        let error = futures::executor::block_on(async {
            Network::new(identity::Keypair::generate_ed25519(), config)
        })
        .err()
        .unwrap();
        assert!(error.to_string().contains("inbound_handshake_timeout"));
    }
}
