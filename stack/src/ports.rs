//! Port tables: bind rules and ephemeral port selection (RFC 6056).
//!
//! One table per protocol. A binding is an (address, port) pair held by one socket.
//! Rules (the ones BSD sockets users expect):
//! - the same (address, port) twice -> `AddrInUse`;
//! - a wildcard address (0.0.0.0 or ::) conflicts with every specific address of the
//!   same family on that port, and vice versa; IPv4 and IPv6 never conflict (the stack
//!   behaves like Linux with `bindv6only=1`);
//! - port 0 asks for an ephemeral port;
//! - with `reserve_privileged` ports 1..1024 -> `PermissionDenied`.
//! Address ownership (`AddrNotAvailable`) is checked by the stack, which knows its
//! addresses.

use std::io;
use std::net::IpAddr;

use crate::rand::{Rng, SipKey};
use crate::socket::SocketHandle;

/// Bindings of one protocol.
#[derive(Debug)]
pub struct PortTable {
    _todo: (),
}

impl PortTable {
    /// `range` is the inclusive ephemeral range.
    pub fn new(range: (u16, u16), reserve_privileged: bool) -> PortTable {
        let _ = (range, reserve_privileged);
        todo!("ports")
    }

    /// Bind `(ip, port)` to `owner`. Port 0 picks a free ephemeral port (RFC 6056
    /// algorithm 1: random start, then probe; exhaustion -> `AddrInUse` with a message,
    /// after at most one pass over the range). Returns the bound port.
    pub fn bind(&mut self, ip: IpAddr, port: u16, owner: SocketHandle, rng: &mut Rng) -> io::Result<u16> {
        let _ = (ip, port, owner, rng);
        todo!("ports")
    }

    /// Remove the binding if `owner` holds it. Returns whether it did.
    pub fn unbind(&mut self, ip: IpAddr, port: u16, owner: SocketHandle) -> bool {
        let _ = (ip, port, owner);
        todo!("ports")
    }

    /// The socket bound to exactly `(ip, port)`, if any.
    pub fn owner(&self, ip: IpAddr, port: u16) -> Option<SocketHandle> {
        let _ = (ip, port);
        todo!("ports")
    }

    /// Whether a bind of `(ip, port)` would conflict with an existing binding.
    pub fn conflicts(&self, ip: IpAddr, port: u16) -> bool {
        let _ = (ip, port);
        todo!("ports")
    }

    pub fn len(&self) -> usize {
        todo!("ports")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 6056 algorithm 3 ("simple hash-based port selection") for the local port of an
/// active open: offset = F(local ip, remote ip, remote port, key), then probe
/// `next_ephemeral` upwards from `offset + counter` until `is_free(port)`; the counter
/// advances so consecutive connects to the same peer get different ports. Exhaustion
/// after one pass over the range -> `AddrNotAvailable` (what Linux's connect() says).
pub fn connect_port(
    range: (u16, u16),
    key: &SipKey,
    counter: &mut u32,
    local: IpAddr,
    remote: std::net::SocketAddr,
    is_free: impl FnMut(u16) -> bool,
) -> io::Result<u16> {
    let _ = (range, key, counter, local, remote, is_free);
    todo!("ports")
}
