//! Socket handles and the netstat-style socket table.

use core::fmt;
use std::net::SocketAddr;

/// Refers to one socket inside a [`crate::Stack`]: the socket descriptor of this stack.
///
/// A handle carries a generation so that a stale handle (of a socket that has been
/// released and whose slot was reused) is detected instead of aliasing a new socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketHandle {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

impl SocketHandle {
    /// For tests and data-structure code outside the stack (demux, port tables).
    pub const fn from_raw(idx: u32, gen: u32) -> SocketHandle {
        SocketHandle { idx, gen }
    }
    pub fn index(self) -> u32 {
        self.idx
    }
    pub fn generation(self) -> u32 {
        self.gen
    }
}

impl fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.idx, self.gen)
    }
}

impl fmt::Display for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.idx)
    }
}

/// Transport protocol of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Who holds a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The application holds the handle.
    App,
    /// An embryonic or completed connection waiting in this listener's queues.
    Listener(SocketHandle),
    /// The application closed its handle; the stack finishes the close on its own
    /// (FIN_WAIT_*, LAST_ACK, TIME_WAIT...).
    Orphan,
}

/// One row of the socket table (`Stack::sockets`), like a line of `netstat -ano`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    pub handle: SocketHandle,
    pub protocol: Protocol,
    pub local: SocketAddr,
    /// `None` for listeners and unconnected UDP sockets.
    pub remote: Option<SocketAddr>,
    /// TCP state name as RFC 9293 spells it (`LISTEN`, `ESTABLISHED`, `TIME-WAIT`...);
    /// for UDP `BOUND` or `CONNECTED`.
    pub state: &'static str,
    /// Bytes received and not yet read by the application (Recv-Q).
    pub recv_queue: usize,
    /// Bytes written by the application and not yet acknowledged by the peer (Send-Q).
    pub send_queue: usize,
    pub owner: Owner,
}
