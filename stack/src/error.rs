//! Typed errors of the sans-IO core.
//!
//! Every operation of [`crate::Stack`] returns a small enum that names what went wrong,
//! without allocating. The `net` and async APIs turn them into `std::io::Error` with
//! the kind std's sockets use on Linux ([`From`] impls here, `kind()` on each enum), so
//! applications see the errors they already handle.

use core::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::socket::SocketHandle;

/// The handle names no live socket: it was closed or aborted, or its connection was
/// released (`NotFound`). A typed handle always names a socket of its kind, so this is
/// the only way a call can miss its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidHandle;

impl InvalidHandle {
    pub fn kind(self) -> io::ErrorKind {
        io::ErrorKind::NotFound
    }

    pub fn as_str(self) -> &'static str {
        "no such socket handle"
    }
}

/// Why a TCP connection ended abnormally: the error its handle reports from then on
/// (RFC 9293 3.10.7, RFC 1122 4.2.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnError {
    /// A RST answered our SYN (ECONNREFUSED).
    Refused,
    /// A RST arrived on a synchronized connection (ECONNRESET).
    Reset,
    /// Retransmissions, the user timeout or keepalive probes went unanswered (ETIMEDOUT).
    TimedOut,
    /// Data arrived for a handle the application had closed, so we reset it
    /// (RFC 9293 3.10.4 / RFC 2525 2.17; ECONNABORTED).
    Aborted,
    /// An ICMP destination unreachable (host codes, administrative prohibitions) or
    /// time exceeded ended a connection attempt, or explains a timeout (EHOSTUNREACH).
    HostUnreachable,
    /// An ICMP network unreachable ended a connection attempt, or explains a timeout
    /// (ENETUNREACH).
    NetworkUnreachable,
}

impl ConnError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            ConnError::Refused => io::ErrorKind::ConnectionRefused,
            ConnError::Reset => io::ErrorKind::ConnectionReset,
            ConnError::TimedOut => io::ErrorKind::TimedOut,
            ConnError::Aborted => io::ErrorKind::ConnectionAborted,
            ConnError::HostUnreachable => io::ErrorKind::HostUnreachable,
            ConnError::NetworkUnreachable => io::ErrorKind::NetworkUnreachable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnError::Refused => "connection refused",
            ConnError::Reset => "connection reset by peer",
            ConnError::TimedOut => "connection timed out",
            ConnError::Aborted => "connection aborted",
            ConnError::HostUnreachable => "no route to host",
            ConnError::NetworkUnreachable => "network is unreachable",
        }
    }
}

/// Why `tcp_send` took nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendError {
    /// The send buffer is full, or the handshake has not finished yet.
    WouldBlock,
    /// The write side was shut down (shutdown(Write) or close): EPIPE.
    WriteShutdown,
    /// The connection is closing or closed and takes no more data: EPIPE.
    Closed,
    /// The connection failed.
    Conn(ConnError),
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl SendError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            SendError::WouldBlock => io::ErrorKind::WouldBlock,
            SendError::WriteShutdown | SendError::Closed => io::ErrorKind::BrokenPipe,
            SendError::Conn(e) => e.kind(),
            SendError::InvalidHandle => InvalidHandle.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SendError::WouldBlock => "send buffer full or handshake in progress",
            SendError::WriteShutdown => "write side shut down",
            SendError::Closed => "connection closed for sending",
            SendError::Conn(e) => e.as_str(),
            SendError::InvalidHandle => InvalidHandle.as_str(),
        }
    }
}

/// Why `tcp_recv` returned no bytes (end of stream is `Ok(0)`, not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecvError {
    /// Nothing buffered yet.
    WouldBlock,
    /// The connection failed.
    Conn(ConnError),
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl RecvError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            RecvError::WouldBlock => io::ErrorKind::WouldBlock,
            RecvError::Conn(e) => e.kind(),
            RecvError::InvalidHandle => InvalidHandle.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecvError::WouldBlock => "nothing received yet",
            RecvError::Conn(e) => e.as_str(),
            RecvError::InvalidHandle => InvalidHandle.as_str(),
        }
    }
}

/// Why `tcp_accept` gave no connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcceptError {
    /// No connection has completed its handshake yet.
    WouldBlock,
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl AcceptError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            AcceptError::WouldBlock => io::ErrorKind::WouldBlock,
            AcceptError::InvalidHandle => InvalidHandle.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcceptError::WouldBlock => "no connection to accept yet",
            AcceptError::InvalidHandle => InvalidHandle.as_str(),
        }
    }
}

/// Why `tcp_shutdown` did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShutdownError {
    /// The connection is not synchronized (SYN-SENT) or already CLOSED (ENOTCONN).
    NotConnected,
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl ShutdownError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            ShutdownError::NotConnected => io::ErrorKind::NotConnected,
            ShutdownError::InvalidHandle => InvalidHandle.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownError::NotConnected => "socket is not connected",
            ShutdownError::InvalidHandle => InvalidHandle.as_str(),
        }
    }
}

/// Why `peer_addr` has no address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddrError {
    /// A listener, or a UDP socket that is not connected (ENOTCONN).
    NotConnected,
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl PeerAddrError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            PeerAddrError::NotConnected => io::ErrorKind::NotConnected,
            PeerAddrError::InvalidHandle => InvalidHandle.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PeerAddrError::NotConnected => "socket is not connected",
            PeerAddrError::InvalidHandle => InvalidHandle.as_str(),
        }
    }
}

/// Why `udp_recv` / `udp_recv_from` returned no datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpRecvError {
    /// No datagram queued.
    WouldBlock,
    /// A connected socket's earlier datagram drew a hard ICMP error (a port unreachable
    /// is `ConnError::Refused`: ECONNREFUSED). Reported once, by the next receive or
    /// send, like Linux's `SO_ERROR` (RFC 1122 4.1.3.3).
    Icmp(ConnError),
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl UdpRecvError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            UdpRecvError::WouldBlock => io::ErrorKind::WouldBlock,
            UdpRecvError::Icmp(e) => e.kind(),
            UdpRecvError::InvalidHandle => InvalidHandle.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UdpRecvError::WouldBlock => "no datagram received yet",
            UdpRecvError::Icmp(e) => e.as_str(),
            UdpRecvError::InvalidHandle => InvalidHandle.as_str(),
        }
    }
}

fn family(ipv6: bool) -> &'static str {
    if ipv6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// Why `tcp_listen` or `udp_bind` (and the port tables, `crate::ports`) did not bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindError {
    /// A wildcard address of a family the stack has no address of (EADDRNOTAVAIL).
    NoAddressOfFamily { ipv6: bool },
    /// The address is not one of the stack's (EADDRNOTAVAIL).
    NotOwned(IpAddr),
    /// A port below 1024 while `Config::reserve_privileged_ports` is on (EACCES).
    Privileged { port: u16 },
    /// `held`, bound by socket `held_by`, conflicts with `addr` (the same address, or a
    /// wildcard and a specific address of one family, on one port; EADDRINUSE).
    AddrInUse { addr: SocketAddr, held: SocketAddr, held_by: SocketHandle },
    /// Port 0 asked for an ephemeral port and every port of `range` conflicts
    /// (EADDRINUSE, as Linux's bind says).
    NoFreePort { ip: IpAddr, range: (u16, u16) },
    /// `Config::max_sockets` sockets exist already (like EMFILE; the kind is
    /// `OutOfMemory`).
    TooManySockets { max: usize },
}

impl BindError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            BindError::NoAddressOfFamily { .. } | BindError::NotOwned(_) => io::ErrorKind::AddrNotAvailable,
            BindError::Privileged { .. } => io::ErrorKind::PermissionDenied,
            BindError::AddrInUse { .. } | BindError::NoFreePort { .. } => io::ErrorKind::AddrInUse,
            BindError::TooManySockets { .. } => io::ErrorKind::OutOfMemory,
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BindError::NoAddressOfFamily { ipv6 } => write!(f, "the stack has no {} address", family(ipv6)),
            BindError::NotOwned(ip) => write!(f, "address {ip} is not owned by this stack"),
            BindError::Privileged { port } => write!(
                f,
                "port {port} is privileged (1-1023) and the stack reserves privileged ports; \
                 set Config::reserve_privileged_ports = false to allow it"
            ),
            BindError::AddrInUse { addr, held, held_by } => {
                write!(f, "cannot bind {addr}: address in use ({held} is bound by socket {held_by})")
            }
            BindError::NoFreePort { ip, range } => {
                write!(f, "no free ephemeral port in {}-{} for {ip}", range.0, range.1)
            }
            BindError::TooManySockets { max } => write!(f, "too many sockets (the stack's limit is {max})"),
        }
    }
}

/// Why `tcp_connect` did not start a connection, or why `tcp_poll_connect` says the
/// connection did not (or no longer can) come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectError {
    /// An unspecified remote address or port 0 (EINVAL).
    InvalidRemote(SocketAddr),
    /// TCP to a multicast or broadcast address (EINVAL).
    BroadcastOrMulticast(SocketAddr),
    /// The requested local address is not one of the stack's (EADDRNOTAVAIL).
    NotOwned(IpAddr),
    /// The requested local address and the remote one are of different families (EINVAL).
    FamilyMismatch { local: IpAddr, remote: SocketAddr },
    /// The stack has no address of the remote's family (EADDRNOTAVAIL).
    NoAddressOfFamily { ipv6: bool },
    /// Every port of the ephemeral range is taken toward this peer (EADDRNOTAVAIL, as
    /// Linux's connect says).
    NoFreePort { local: IpAddr, remote: SocketAddr, range: (u16, u16) },
    /// A connection with this 4-tuple exists (EADDRINUSE).
    TupleInUse { local: SocketAddr, remote: SocketAddr },
    /// As one shard of several (`Config::shard`): the requested 4-tuple belongs to
    /// another shard, whose stack must open it (InvalidInput; the runtime routes
    /// connects, so an application never sees this).
    OtherShard { owner: u16 },
    /// The handshake failed: refused, timed out, reset, unreachable.
    Failed(ConnError),
    /// No room for another connection: `Config::max_sockets` sockets exist, or the
    /// stack is under memory pressure (`Config::buffer_memory`); like ENOBUFS (the kind
    /// is `OutOfMemory`).
    ResourceLimit,
    /// The connection is closed and had no error (ENOTCONN).
    Closed,
    /// The packet policy refuses flows to this destination (EPERM, as Linux's connect
    /// says when a firewall rule drops the SYN).
    Filtered,
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl ConnectError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            ConnectError::InvalidRemote(_)
            | ConnectError::BroadcastOrMulticast(_)
            | ConnectError::FamilyMismatch { .. }
            | ConnectError::OtherShard { .. } => io::ErrorKind::InvalidInput,
            ConnectError::NotOwned(_) | ConnectError::NoAddressOfFamily { .. } | ConnectError::NoFreePort { .. } => {
                io::ErrorKind::AddrNotAvailable
            }
            ConnectError::TupleInUse { .. } => io::ErrorKind::AddrInUse,
            ConnectError::Failed(e) => e.kind(),
            ConnectError::ResourceLimit => io::ErrorKind::OutOfMemory,
            ConnectError::Closed => io::ErrorKind::NotConnected,
            ConnectError::Filtered => io::ErrorKind::PermissionDenied,
            ConnectError::InvalidHandle => InvalidHandle.kind(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConnectError::InvalidRemote(a) => {
                write!(f, "cannot connect to {a}: an unspecified address or port 0")
            }
            ConnectError::BroadcastOrMulticast(a) => {
                write!(f, "cannot connect TCP to {a}: a multicast or broadcast address")
            }
            ConnectError::NotOwned(ip) => write!(f, "address {ip} is not owned by this stack"),
            ConnectError::FamilyMismatch { local, remote } => {
                write!(f, "local address {local} and remote {remote} are of different families")
            }
            ConnectError::NoAddressOfFamily { ipv6 } => write!(f, "the stack has no {} address", family(ipv6)),
            ConnectError::NoFreePort { local, remote, range } => write!(
                f,
                "no free local port in the ephemeral range {}-{} for a connection from {local} to {remote}",
                range.0, range.1
            ),
            ConnectError::TupleInUse { local, remote } => {
                write!(f, "a connection from {local} to {remote} exists already")
            }
            ConnectError::OtherShard { owner } => write!(f, "the 4-tuple belongs to shard {owner}"),
            ConnectError::Failed(e) => f.write_str(e.as_str()),
            ConnectError::ResourceLimit => f.write_str("no room for another connection (socket or memory limit)"),
            ConnectError::Closed => f.write_str("connection closed"),
            ConnectError::Filtered => f.write_str("refused by the packet policy"),
            ConnectError::InvalidHandle => f.write_str(InvalidHandle.as_str()),
        }
    }
}

/// Why `udp_send_to` / `udp_send` queued nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpSendError {
    /// The send queue is full (`Config::udp_tx_queue`).
    WouldBlock,
    /// `udp_send` on a socket that is not connected (ENOTCONN).
    NotConnected,
    /// An unspecified destination address or port 0 (EINVAL).
    InvalidDestination(SocketAddr),
    /// The destination's family differs from the bound address's (EINVAL).
    FamilyMismatch { local: IpAddr, dst: SocketAddr },
    /// The stack has no address of the destination's family (EADDRNOTAVAIL).
    NoAddressOfFamily { ipv6: bool },
    /// The datagram is larger than an IP datagram can be (`max` bytes of payload:
    /// 65507 over IPv4, 65527 over IPv6; larger than the path MTU is fine, it is sent
    /// as fragments). Linux says EMSGSIZE; the kind is InvalidInput.
    TooLarge { len: usize, max: usize },
    /// The packet policy refuses datagrams to this destination (EPERM).
    Filtered,
    /// `udp_send_msg` (a chosen source address) on a socket that is not transparent
    /// (EINVAL).
    NotTransparent,
    /// A connected socket's earlier datagram drew a hard ICMP error (see
    /// [`UdpRecvError::Icmp`]); reported once.
    Icmp(ConnError),
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl UdpSendError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            UdpSendError::WouldBlock => io::ErrorKind::WouldBlock,
            UdpSendError::NotConnected => io::ErrorKind::NotConnected,
            UdpSendError::InvalidDestination(_)
            | UdpSendError::FamilyMismatch { .. }
            | UdpSendError::TooLarge { .. }
            | UdpSendError::NotTransparent => io::ErrorKind::InvalidInput,
            UdpSendError::NoAddressOfFamily { .. } => io::ErrorKind::AddrNotAvailable,
            UdpSendError::Filtered => io::ErrorKind::PermissionDenied,
            UdpSendError::Icmp(e) => e.kind(),
            UdpSendError::InvalidHandle => InvalidHandle.kind(),
        }
    }
}

impl fmt::Display for UdpSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UdpSendError::WouldBlock => f.write_str("UDP send queue full"),
            UdpSendError::NotConnected => f.write_str("UDP socket not connected"),
            UdpSendError::InvalidDestination(a) => {
                write!(f, "cannot send to {a}: an unspecified address or port 0")
            }
            UdpSendError::FamilyMismatch { local, dst } => {
                write!(f, "destination {dst} and bound address {local} are of different families")
            }
            UdpSendError::NoAddressOfFamily { ipv6 } => write!(f, "the stack has no {} address", family(ipv6)),
            UdpSendError::TooLarge { len, max } => {
                write!(f, "datagram of {len} bytes larger than an IP datagram allows ({max})")
            }
            UdpSendError::Filtered => f.write_str("refused by the packet policy"),
            UdpSendError::NotTransparent => f.write_str("only a transparent socket sends from a chosen address"),
            UdpSendError::Icmp(e) => f.write_str(e.as_str()),
            UdpSendError::InvalidHandle => f.write_str(InvalidHandle.as_str()),
        }
    }
}

/// Why `udp_connect` did not fix the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpConnectError {
    /// An unspecified address or port 0 (EINVAL).
    InvalidRemote(SocketAddr),
    /// The remote's family differs from the bound address's (EINVAL).
    FamilyMismatch { local: IpAddr, remote: SocketAddr },
    /// See [`InvalidHandle`].
    InvalidHandle,
}

impl UdpConnectError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            UdpConnectError::InvalidRemote(_) | UdpConnectError::FamilyMismatch { .. } => io::ErrorKind::InvalidInput,
            UdpConnectError::InvalidHandle => InvalidHandle.kind(),
        }
    }
}

impl fmt::Display for UdpConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UdpConnectError::InvalidRemote(a) => {
                write!(f, "cannot connect to {a}: an unspecified address or port 0")
            }
            UdpConnectError::FamilyMismatch { local, remote } => {
                write!(f, "remote {remote} and bound address {local} are of different families")
            }
            UdpConnectError::InvalidHandle => f.write_str(InvalidHandle.as_str()),
        }
    }
}

/// Why a link model configuration ([`crate::link::Impairment`]) was refused. Every case
/// is `InvalidInput` at the `io::Error` boundary (the runtime's `Impaired` device).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ImpairmentError {
    /// A probability (`what`: loss, reorder, duplicate, corrupt) outside 0..=1, or NaN.
    Probability { what: &'static str, value: f64 },
    /// A duration (`what`: the delay, a bound of the reordering hold or of the
    /// duplicate gap) longer than `max`.
    TooLong { what: &'static str, value: Duration, max: Duration },
    /// A range (`what`) whose lower bound is above its upper bound.
    Range { what: &'static str, lo: Duration, hi: Duration },
    /// A rate of 0 bit/s would pass nothing.
    ZeroRate,
    /// A queue limit of zero packets, or more than the link holds at all (`max`).
    QueuePackets { value: usize, max: usize },
    /// A queue limit of zero bytes would pass nothing.
    ZeroQueueBytes,
}

impl ImpairmentError {
    pub fn kind(self) -> io::ErrorKind {
        io::ErrorKind::InvalidInput
    }
}

impl fmt::Display for ImpairmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImpairmentError::Probability { what, value } => {
                write!(f, "impairment {what} probability {value} is outside 0..=1")
            }
            ImpairmentError::TooLong { what, value, max } => {
                write!(f, "impairment {what} {value:?} is longer than {max:?}")
            }
            ImpairmentError::Range { what, lo, hi } => {
                write!(f, "impairment {what} range {lo:?}..={hi:?} is empty")
            }
            ImpairmentError::ZeroRate => f.write_str("impairment rate 0 bit/s would pass nothing"),
            ImpairmentError::QueuePackets { value, max } => {
                write!(f, "impairment queue limit of {value} packets is outside 1..={max}")
            }
            ImpairmentError::ZeroQueueBytes => f.write_str("impairment queue limit of 0 bytes would pass nothing"),
        }
    }
}

/// `InvalidHandle` into every error that has the case, for `?`.
macro_rules! from_invalid_handle {
    ($($t:ident),*) => {$(
        impl From<InvalidHandle> for $t {
            fn from(_: InvalidHandle) -> $t {
                $t::InvalidHandle
            }
        }
    )*};
}

from_invalid_handle!(
    SendError,
    RecvError,
    AcceptError,
    ShutdownError,
    PeerAddrError,
    UdpRecvError,
    ConnectError,
    UdpSendError,
    UdpConnectError
);

/// `Display` from `as_str` for the errors without data.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    InvalidHandle,
    ConnError,
    SendError,
    RecvError,
    AcceptError,
    ShutdownError,
    PeerAddrError,
    UdpRecvError
);

/// `std::error::Error` and the conversion to `io::Error` (at the `net` boundary).
macro_rules! io_conversions {
    ($($t:ty),*) => {$(
        impl std::error::Error for $t {}

        impl From<$t> for io::Error {
            /// `WouldBlock` converts without allocating (it is the common case on every
            /// non-blocking path); the rest carry their message.
            fn from(e: $t) -> io::Error {
                match e.kind() {
                    io::ErrorKind::WouldBlock => io::ErrorKind::WouldBlock.into(),
                    kind => io::Error::new(kind, e),
                }
            }
        }
    )*};
}

io_conversions!(
    InvalidHandle,
    ConnError,
    SendError,
    RecvError,
    AcceptError,
    ShutdownError,
    PeerAddrError,
    UdpRecvError,
    BindError,
    ConnectError,
    UdpSendError,
    UdpConnectError,
    ImpairmentError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_are_std_kinds() {
        let e: io::Error = SendError::Conn(ConnError::Reset).into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(e.to_string(), "connection reset by peer");
        assert_eq!(io::Error::from(SendError::WriteShutdown).kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(io::Error::from(RecvError::WouldBlock).kind(), io::ErrorKind::WouldBlock);
        assert_eq!(io::Error::from(ConnError::TimedOut).kind(), io::ErrorKind::TimedOut);
        assert_eq!(ConnError::Refused.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(ConnError::Aborted.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[test]
    fn every_error_has_a_kind_and_a_message() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let ip = a.ip();
        let cases: [(io::Error, io::ErrorKind); 17] = [
            (InvalidHandle.into(), io::ErrorKind::NotFound),
            (SendError::InvalidHandle.into(), io::ErrorKind::NotFound),
            (AcceptError::WouldBlock.into(), io::ErrorKind::WouldBlock),
            (ShutdownError::NotConnected.into(), io::ErrorKind::NotConnected),
            (PeerAddrError::NotConnected.into(), io::ErrorKind::NotConnected),
            (UdpRecvError::WouldBlock.into(), io::ErrorKind::WouldBlock),
            (BindError::NotOwned(ip).into(), io::ErrorKind::AddrNotAvailable),
            (BindError::Privileged { port: 80 }.into(), io::ErrorKind::PermissionDenied),
            (
                BindError::AddrInUse { addr: a, held: a, held_by: SocketHandle::from_raw(3, 1) }.into(),
                io::ErrorKind::AddrInUse,
            ),
            (BindError::NoFreePort { ip, range: (50000, 50003) }.into(), io::ErrorKind::AddrInUse),
            (ConnectError::NoFreePort { local: ip, remote: a, range: (1, 2) }.into(), io::ErrorKind::AddrNotAvailable),
            (ConnectError::Failed(ConnError::Refused).into(), io::ErrorKind::ConnectionRefused),
            (ConnectError::TupleInUse { local: a, remote: a }.into(), io::ErrorKind::AddrInUse),
            (UdpSendError::TooLarge { len: 2000, max: 1472 }.into(), io::ErrorKind::InvalidInput),
            (UdpSendError::NoAddressOfFamily { ipv6: true }.into(), io::ErrorKind::AddrNotAvailable),
            (UdpConnectError::InvalidRemote(a).into(), io::ErrorKind::InvalidInput),
            (ImpairmentError::ZeroRate.into(), io::ErrorKind::InvalidInput),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(!e.to_string().is_empty());
        }
        let e = io::Error::from(BindError::AddrInUse { addr: a, held: a, held_by: SocketHandle::from_raw(3, 1) });
        assert_eq!(e.to_string(), "cannot bind 10.0.0.1:80: address in use (10.0.0.1:80 is bound by socket #3)");
        // The typed error travels inside the io::Error.
        assert_eq!(e.get_ref().and_then(|i| i.downcast_ref::<BindError>()).map(|b| b.kind()), Some(e.kind()));
        // WouldBlock carries no payload (converted without allocating).
        assert!(io::Error::from(UdpSendError::WouldBlock).get_ref().is_none());
    }
}
