//! Async `UdpSocket`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use super::{each_addr, first_addr, Owned};
use crate::runtime::RuntimeHandle;
use crate::socket::{Readiness, SocketHandle, UdpHandle};

/// A UDP socket, like `tokio::net::UdpSocket`. Dropping it closes the socket.
pub struct UdpSocket {
    sock: Owned<UdpHandle>,
}

impl UdpSocket {
    /// Bind to `addr` (a wildcard IP and port 0 allowed). Completes at once (the stack
    /// is in this process), so unlike tokio's this is not `async`.
    pub fn bind(rt: &impl AsRef<RuntimeHandle>, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let rt = rt.as_ref();
        // UDP is shard 0's (`crate::shard`).
        let rt = &rt.shard(crate::shard::Shard::UDP_OWNER.into());
        let h = each_addr(addr, |a| rt.call(|s, _| s.udp_bind(a).map_err(io::Error::from)))?;
        Ok(UdpSocket { sock: Owned { engine: Arc::clone(&rt.engine), h } })
    }

    /// A transparent socket (`Stack::udp_bind_transparent`): it receives the datagrams
    /// to any address and port that no other socket takes; `recv_msg` tells each one's
    /// original destination and `send_msg` answers from it.
    pub fn bind_transparent(rt: &impl AsRef<RuntimeHandle>) -> io::Result<UdpSocket> {
        let rt = rt.as_ref();
        let rt = &rt.shard(crate::shard::Shard::UDP_OWNER.into());
        let h = rt.call(|s, _| s.udp_bind_transparent().map_err(io::Error::from))?;
        Ok(UdpSocket { sock: Owned { engine: Arc::clone(&rt.engine), h } })
    }

    /// Receive one datagram with its source and its destination.
    pub async fn recv_msg(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        self.wait(Readiness::READABLE, |s, h| s.udp_recv_msg(h, buf)).await
    }

    /// Send one datagram from `from` (a transparent socket only) to `to`.
    pub async fn send_msg(&self, data: &[u8], from: SocketAddr, to: SocketAddr) -> io::Result<usize> {
        self.wait(Readiness::WRITABLE, |s, h| s.udp_send_msg(h, data, from, to)).await
    }

    fn call<T, E: Into<io::Error>>(
        &self,
        f: impl FnOnce(&mut crate::Stack, UdpHandle) -> Result<T, E>,
    ) -> io::Result<T> {
        self.sock.call(f)
    }

    /// Wait (for `interest`) until `f` stops saying `WouldBlock`.
    async fn wait<T, E: Into<io::Error>>(
        &self,
        interest: Readiness,
        mut f: impl FnMut(&mut crate::Stack, UdpHandle) -> Result<T, E>,
    ) -> io::Result<T> {
        poll_fn(|cx| self.sock.poll(interest, cx, &mut f)).await
    }

    /// Fix the peer: `send` goes there and only its datagrams are received.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |a| self.call(|s, h| s.udp_connect(h, a)))
    }

    /// Send one datagram to `target`; waits while the socket's send queue is full.
    pub async fn send_to(&self, data: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = first_addr(target)?;
        self.wait(Readiness::WRITABLE, |s, h| s.udp_send_to(h, data, target)).await
    }

    /// Send one datagram to the connected peer.
    pub async fn send(&self, data: &[u8]) -> io::Result<usize> {
        self.wait(Readiness::WRITABLE, |s, h| s.udp_send(h, data)).await
    }

    /// Receive one datagram (truncated to `buf`, the rest discarded) and its source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.wait(Readiness::READABLE, |s, h| s.udp_recv_from(h, buf)).await
    }

    /// Receive one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(Readiness::READABLE, |s, h| s.udp_recv(h, buf)).await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.call(|s, h| s.local_addr(h))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.call(|s, h| s.peer_addr(h))
    }

    /// The socket's handle in the stack.
    pub fn handle(&self) -> SocketHandle {
        self.sock.raw()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UdpSocket");
        d.field("handle", &self.sock.raw());
        if let Ok(a) = self.local_addr() {
            d.field("addr", &a);
        }
        d.finish()
    }
}
