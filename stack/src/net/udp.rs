//! `UdpSocket`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::{each_addr, first_addr, Sock};
use crate::runtime::RuntimeHandle;
use crate::socket::{SocketHandle, UdpHandle};

/// A UDP socket, like `std::net::UdpSocket`. Closed when the last clone drops.
pub struct UdpSocket {
    sock: Arc<Sock<UdpHandle>>,
}

impl UdpSocket {
    /// Bind to `addr` (a wildcard IP and port 0 allowed); with several addresses the
    /// first that binds wins.
    pub fn bind(rt: &impl AsRef<RuntimeHandle>, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let rt = rt.as_ref();
        // UDP is shard 0's (`crate::shard`).
        let rt = &rt.shard(crate::shard::Shard::UDP_OWNER.into());
        let h = each_addr(addr, |a| rt.call(|s, _| Ok(s.udp_bind(a)?)))?;
        Ok(UdpSocket { sock: Arc::new(Sock::new(Arc::clone(&rt.engine), h)) })
    }

    /// Send one datagram to the first address `addr` resolves to.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let dst = first_addr(addr)?;
        self.sock.wait_write(|s, h| s.udp_send_to(h, buf, dst))
    }

    /// Receive one datagram; a datagram longer than `buf` is truncated and the rest
    /// discarded.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.wait_read(|s, h| s.udp_recv_from(h, buf))
    }

    /// Fix the peer: `send` goes there and only its datagrams are received. With
    /// several addresses, the first that succeeds wins.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |a| self.sock.call(|s, h| s.udp_connect(h, a)))
    }

    /// Send one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.wait_write(|s, h| s.udp_send(h, buf))
    }

    /// Receive one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.wait_read(|s, h| s.udp_recv(h, buf))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.local_addr(h))
    }

    /// The connected peer; `NotConnected` when there is none.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.peer_addr(h))
    }

    /// `None` blocks forever; an expired timeout makes `recv`/`recv_from` fail with
    /// `WouldBlock`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// `None` blocks forever; an expired timeout makes `send`/`send_to` fail with
    /// `WouldBlock`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.sock.read_timeout())
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.sock.write_timeout())
    }

    /// In non-blocking mode sends and receives return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Another handle to the same socket (closed when the last clone drops).
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket { sock: Arc::clone(&self.sock) })
    }

    /// The socket's handle in the stack (see `Runtime::sockets`).
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
