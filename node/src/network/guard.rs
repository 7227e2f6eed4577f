//! The gate for connections still in their handshake: bounds pending (pre-Noise) incoming
//! connections per source address and in total.
//!
//! Before the Noise handshake completes nobody knows who is at the other end, so the roster
//! cannot judge the connection yet. libp2p's `connection_limits` counts pending incoming
//! connections only in total, so one address holding silent TCP connections (and reconnecting as
//! they are dropped) can fill every slot and lock members out. This behaviour refuses a new
//! pending connection when its source already holds [`PendingLimits::per_source`] of them or
//! all sources together hold [`PendingLimits::total`]. Together with the short inbound handshake
//! deadline (see `NetworkConfig::inbound_handshake_timeout`) a silent connection holds a slot for
//! a few seconds at most, and one address can hold only a few of them.
//!
//! A "source" is an IPv4 address, or an IPv6 /64 prefix (one host is usually given a whole /64,
//! so counting single IPv6 addresses would bound nothing).

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    fmt,
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    multiaddr::Protocol,
    swarm::{
        dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
        NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// Where a connection comes from, as far as pending limits and refusal counts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// One IPv4 address.
    V4(std::net::Ipv4Addr),
    /// An IPv6 /64 prefix (the address with its low 64 bits cleared).
    V6Prefix(std::net::Ipv6Addr),
    /// An address without an IP component (e.g. `/memory/…` in tests).
    Other,
}

impl Source {
    /// The source of a remote address (`send_back_addr`).
    pub fn of(address: &Multiaddr) -> Source {
        match address.iter().next() {
            Some(Protocol::Ip4(ip)) => Source::V4(ip),
            Some(Protocol::Ip6(ip)) => Source::of_ip(IpAddr::V6(ip)),
            _ => Source::Other,
        }
    }

    /// The source of an IP address.
    pub fn of_ip(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(ip) => Source::V4(ip),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => Source::V4(ip),
                None => {
                    let prefix = u128::from(ip) & !u128::from(u64::MAX);
                    Source::V6Prefix(prefix.into())
                }
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(ip) => write!(f, "{ip}"),
            Source::V6Prefix(ip) => write!(f, "{ip}/64"),
            Source::Other => write!(f, "a non-IP address"),
        }
    }
}

/// The bounds this gate enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    /// Pending incoming connections from one source.
    pub per_source: usize,
    /// Pending incoming connections from all sources together.
    pub total: usize,
}

/// Why a pending connection was refused (the `cause` of a `ListenError::Denied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimitExceeded {
    /// Where the connection came from.
    pub source: Source,
    /// True if the per-source limit was hit, false if the total.
    pub per_source: bool,
    /// The limit that was hit.
    pub limit: usize,
}

impl fmt::Display for PendingLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_source {
            write!(
                f,
                "{} already holds {} connections in their handshake (the most one source may)",
                self.source, self.limit
            )
        } else {
            write!(
                f,
                "{} connections are in their handshake (the most allowed); refused one from {}",
                self.limit, self.source
            )
        }
    }
}

impl std::error::Error for PendingLimitExceeded {}

/// The gate, as a `NetworkBehaviour` with no protocol of its own. Put it first in the combined
/// behaviour so that it refuses before anything else is spent on the connection.
pub struct PendingGuard {
    limits: PendingLimits,
    /// Each pending incoming connection and its source.
    pending: HashMap<ConnectionId, Source>,
    /// Pending connections per source (only sources with at least one).
    per_source: BTreeMap<Source, usize>,
}

impl PendingGuard {
    /// A gate with these limits (each at least 1).
    pub fn new(limits: PendingLimits) -> PendingGuard {
        PendingGuard {
            limits,
            pending: HashMap::new(),
            per_source: BTreeMap::new(),
        }
    }

    /// Pending incoming connections now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Pending incoming connections from `source` now.
    pub fn pending_from(&self, source: Source) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// Admits or refuses a new pending connection from `remote`.
    fn admit(
        &mut self,
        connection: ConnectionId,
        remote: &Multiaddr,
    ) -> Result<(), PendingLimitExceeded> {
        let source = Source::of(remote);
        let held = self.pending_from(source);
        if held >= self.limits.per_source {
            return Err(PendingLimitExceeded {
                source,
                per_source: true,
                limit: self.limits.per_source,
            });
        }
        if self.pending.len() >= self.limits.total {
            return Err(PendingLimitExceeded {
                source,
                per_source: false,
                limit: self.limits.total,
            });
        }
        if self.pending.insert(connection, source).is_none() {
            *self.per_source.entry(source).or_default() += 1;
        }
        Ok(())
    }

    /// The connection left its handshake (established, failed or refused later).
    fn release(&mut self, connection: ConnectionId) {
        if let Some(source) = self.pending.remove(&connection) {
            if let Some(count) = self.per_source.get_mut(&source) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_source.remove(&source);
                }
            }
        }
    }
}

impl NetworkBehaviour for PendingGuard {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr)
            .map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // A refusal by a later behaviour, a failed or timed-out handshake.
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.release(connection_id)
            }
            FromSwarm::ConnectionEstablished(established) => {
                self.release(established.connection_id)
            }
            _ => {}
        }
    }

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn address(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_source_is_capped_while_others_still_get_in() {
        let mut guard = PendingGuard::new(PendingLimits {
            per_source: 3,
            total: 5,
        });
        let attacker = address("/ip4/10.0.0.5/tcp/40000");
        let mut next = 0;
        let mut id = || {
            next += 1;
            ConnectionId::new_unchecked(next)
        };
        for _ in 0..3 {
            guard.admit(id(), &attacker).unwrap();
        }
        let refused = guard.admit(id(), &attacker).unwrap_err();
        assert!(refused.per_source);
        assert_eq!(refused.limit, 3);
        assert_eq!(refused.source, Source::of(&attacker));
        assert_eq!(guard.pending_from(Source::of(&attacker)), 3);

        // Another address still gets the remaining slots, then the total stops everyone.
        let member = address("/ip4/10.0.0.9/tcp/4100");
        guard.admit(id(), &member).unwrap();
        guard.admit(id(), &member).unwrap();
        let refused = guard
            .admit(id(), &address("/ip4/10.0.0.10/tcp/1"))
            .unwrap_err();
        assert!(!refused.per_source);
        assert_eq!(refused.limit, 5);
        assert_eq!(guard.pending(), 5);
    }

    #[test]
    fn released_slots_are_reused_and_unknown_releases_are_harmless() {
        let mut guard = PendingGuard::new(PendingLimits {
            per_source: 1,
            total: 10,
        });
        let attacker = address("/ip4/10.0.0.5/tcp/40000");
        let first = ConnectionId::new_unchecked(1);
        guard.admit(first, &attacker).unwrap();
        assert!(guard
            .admit(ConnectionId::new_unchecked(2), &attacker)
            .is_err());
        // A refused connection's failure event releases nothing it did not hold.
        guard.release(ConnectionId::new_unchecked(2));
        assert_eq!(guard.pending_from(Source::of(&attacker)), 1);
        guard.release(first);
        assert_eq!(guard.pending(), 0);
        guard
            .admit(ConnectionId::new_unchecked(3), &attacker)
            .unwrap();
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_prefix_and_mapped_v4_as_v4() {
        let a = Source::of(&address("/ip6/2001:db8:1:2::1/tcp/1"));
        let b = Source::of(&address("/ip6/2001:db8:1:2:ffff::9/tcp/1"));
        let c = Source::of(&address("/ip6/2001:db8:1:3::1/tcp/1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            Source::of(&address("/ip6/::ffff:10.0.0.5/tcp/1")),
            Source::of(&address("/ip4/10.0.0.5/tcp/1"))
        );
        assert_eq!(Source::of(&address("/memory/5")), Source::Other);
    }
}
