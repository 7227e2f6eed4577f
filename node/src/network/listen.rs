//! Refuses a listen address that another socket already holds.
//!
//! libp2p's TCP transport binds its listeners with `SO_REUSEPORT`, so on Linux a second node
//! configured with the same port does not fail: both listen, and the kernel shares incoming
//! connections between them. Before libp2p binds, [`check_not_in_use`] binds the address itself
//! without `SO_REUSEPORT` and lets go at once: any socket already bound there (a libp2p node, or
//! any other program) makes that bind fail with `EADDRINUSE`, and the node stops with an error
//! that says what to do. Port 0 (any free port) and non-TCP addresses are not checked.
//!
//! The check and libp2p's bind are two steps; two nodes started within the same instant on one
//! port could both pass. The usual case, a node started while another one runs, is caught.

use std::net::{IpAddr, SocketAddr, TcpListener};

use libp2p::{multiaddr::Protocol, Multiaddr};

use super::NetworkError;

/// The socket address of a `/ip4|ip6/…/tcp/PORT` multiaddr with a fixed port, if it is one.
fn fixed_tcp_socket(address: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = address.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Tcp(port) if port != 0 => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// Fails with [`NetworkError::AddressInUse`] if another socket holds the address's TCP port.
pub fn check_not_in_use(address: &Multiaddr) -> Result<(), NetworkError> {
    let Some(socket) = fixed_tcp_socket(address) else {
        return Ok(());
    };
    match TcpListener::bind(socket) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            Err(NetworkError::AddressInUse {
                address: address.clone(),
                reason: format!(
                    "port {} is already in use by another process (another quickfreeze node?)",
                    socket.port()
                ),
            })
        }
        // Anything else (an address not on this machine, no permission) is left to the real
        // bind, which reports it.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_port_held_by_another_socket_is_refused_and_a_free_one_is_not() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let error = check_not_in_use(&address).unwrap_err();
        assert!(matches!(error, NetworkError::AddressInUse { .. }));
        let text = error.to_string();
        assert!(
            text.contains(&format!("port {port} is already in use")),
            "{text}"
        );
        assert!(text.contains("choose another port"), "{text}");
        // The wildcard address overlaps the holder's too.
        let wildcard: Multiaddr = format!("/ip4/0.0.0.0/tcp/{port}").parse().unwrap();
        assert!(check_not_in_use(&wildcard).is_err());

        drop(holder);
        assert!(check_not_in_use(&address).is_ok());
    }

    #[test]
    fn port_zero_and_other_transports_are_not_checked() {
        for text in [
            "/ip4/127.0.0.1/tcp/0",
            "/memory/4100",
            "/dns4/localhost/tcp/1",
        ] {
            let address: Multiaddr = text.parse().unwrap();
            assert_eq!(fixed_tcp_socket(&address), None, "{text}");
            assert!(check_not_in_use(&address).is_ok());
        }
    }
}
