//! The sans-IO core: packets and `now` in, packets and wakeups out, timers asked for.
//!
//! ```text
//!   input(now, packet) ──> parse ──> demux ──> tcp / udp / icmp
//!   poll_transmit(now, buf) <── sockets with something to send, control replies
//!   poll_timeout() / handle_timeout(now)
//!   poll_wakeup() -> handles whose readiness changed
//! ```

use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};

use crate::config::Config;
use crate::socket::{SocketHandle, SocketInfo};
use crate::tcp::TcpState;
use crate::time::Instant;
use crate::wire::DropReason;

/// Counters. Every dropped packet is counted under exactly one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_resets_sent: u64,
    pub tcp_retransmits: u64,
    pub icmp_echo_replies: u64,
    pub icmp_unreachable_sent: u64,
    pub icmp_errors_rate_limited: u64,
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// The stack. See the module documentation.
pub struct Stack {
    _todo: (),
}

impl Stack {
    pub fn new(config: Config) -> Stack {
        let _ = config;
        todo!()
    }

    pub fn config(&self) -> &Config {
        todo!()
    }

    pub fn owns_address(&self, addr: IpAddr) -> bool {
        let _ = addr;
        todo!()
    }

    // ---------------------------------------------------------------- I/O verbs

    /// Hand in one IP packet received at `now`. Invalid packets are counted and dropped.
    pub fn input(&mut self, now: Instant, packet: &[u8]) {
        let _ = (now, packet);
        todo!()
    }

    /// Write the next packet to send into `buf` and return its length, or `None` when
    /// nothing is due. `buf` must hold at least `config.mtu` bytes. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let _ = (now, buf);
        todo!()
    }

    /// The earliest deadline at which `handle_timeout` must be called, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        todo!()
    }

    /// Run every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// A socket whose readiness (readable, writable, connected, closed, acceptable) may
    /// have changed since the last call. The runtime uses it to wake blocked callers.
    pub fn poll_wakeup(&mut self) -> Option<SocketHandle> {
        todo!()
    }

    // ---------------------------------------------------------------- TCP

    /// Bind and listen. `local`'s IP may be a wildcard; port 0 picks an ephemeral port.
    /// The backlog bounds both the half-open and the accept queue (at least 1).
    pub fn tcp_listen(&mut self, local: SocketAddr, backlog: usize) -> io::Result<SocketHandle> {
        let _ = (local, backlog);
        todo!()
    }

    /// Take one completed connection from a listener's accept queue; `WouldBlock` when
    /// it is empty.
    pub fn tcp_accept(&mut self, listener: SocketHandle) -> io::Result<SocketHandle> {
        let _ = listener;
        todo!()
    }

    /// Active open. `local` defaults to the stack's first address of `remote`'s family
    /// and an RFC 6056 ephemeral port. Returns at once in SYN-SENT; use
    /// `tcp_poll_connect` to learn the outcome.
    pub fn tcp_connect(&mut self, now: Instant, remote: SocketAddr, local: Option<SocketAddr>) -> io::Result<SocketHandle> {
        let _ = (now, remote, local);
        todo!()
    }

    /// `Ok(true)` once established (or later), `Ok(false)` while the handshake runs,
    /// `Err` with `ConnectionRefused`, `TimedOut` or `ConnectionReset` if it failed.
    pub fn tcp_poll_connect(&mut self, h: SocketHandle) -> io::Result<bool> {
        let _ = h;
        todo!()
    }

    /// Queue bytes for sending; returns how many were taken (may be fewer than asked),
    /// `WouldBlock` when the send buffer is full, `BrokenPipe` after shutdown(Write) or
    /// once the peer reset, `NotConnected` before the handshake completes.
    pub fn tcp_send(&mut self, h: SocketHandle, data: &[u8]) -> io::Result<usize> {
        let _ = (h, data);
        todo!()
    }

    /// Read received bytes. `Ok(0)` is end of stream (the peer's FIN was read);
    /// `WouldBlock` when nothing is buffered yet; `ConnectionReset` after a RST.
    pub fn tcp_recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<usize> {
        let _ = (h, buf);
        todo!()
    }

    /// Shut down one or both directions. `Write` sends FIN after queued data (half
    /// close); `Read` discards further incoming data.
    pub fn tcp_shutdown(&mut self, h: SocketHandle, how: Shutdown) -> io::Result<()> {
        let _ = (h, how);
        todo!()
    }

    /// Abort: send RST (if synchronized) and release the socket at once.
    pub fn tcp_abort(&mut self, h: SocketHandle) -> io::Result<()> {
        let _ = h;
        todo!()
    }

    pub fn tcp_state(&self, h: SocketHandle) -> io::Result<TcpState> {
        let _ = h;
        todo!()
    }

    /// Disable (true) or enable (false) Nagle's algorithm (RFC 896).
    pub fn tcp_set_nodelay(&mut self, h: SocketHandle, nodelay: bool) -> io::Result<()> {
        let _ = (h, nodelay);
        todo!()
    }

    /// Bytes the application can write right now without `WouldBlock`.
    pub fn tcp_send_capacity(&self, h: SocketHandle) -> io::Result<usize> {
        let _ = h;
        todo!()
    }

    // ---------------------------------------------------------------- UDP

    pub fn udp_bind(&mut self, local: SocketAddr) -> io::Result<SocketHandle> {
        let _ = local;
        todo!()
    }

    /// Fix the peer: `send` goes there and only its datagrams are received.
    pub fn udp_connect(&mut self, h: SocketHandle, remote: SocketAddr) -> io::Result<()> {
        let _ = (h, remote);
        todo!()
    }

    pub fn udp_send_to(&mut self, h: SocketHandle, data: &[u8], dst: SocketAddr) -> io::Result<usize> {
        let _ = (h, data, dst);
        todo!()
    }

    pub fn udp_send(&mut self, h: SocketHandle, data: &[u8]) -> io::Result<usize> {
        let _ = (h, data);
        todo!()
    }

    /// One datagram; a datagram longer than `buf` is truncated (the rest is discarded,
    /// as with std).
    pub fn udp_recv_from(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let _ = (h, buf);
        todo!()
    }

    pub fn udp_recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<usize> {
        let _ = (h, buf);
        todo!()
    }

    // ---------------------------------------------------------------- any socket

    /// Release the handle. TCP: a graceful close (FIN after queued data, RST if unread
    /// data is discarded, RFC 9293 3.10.4 / RFC 2525 2.17); the connection lives on as an
    /// orphan until the close completes. Listener: pending connections are reset.
    pub fn close(&mut self, h: SocketHandle) -> io::Result<()> {
        let _ = h;
        todo!()
    }

    pub fn local_addr(&self, h: SocketHandle) -> io::Result<SocketAddr> {
        let _ = h;
        todo!()
    }

    pub fn peer_addr(&self, h: SocketHandle) -> io::Result<SocketAddr> {
        let _ = h;
        todo!()
    }

    /// Every socket, ordered by handle: the `netstat -ano` of this stack.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        todo!()
    }

    pub fn stats(&self) -> &Stats {
        todo!()
    }
}
