//! Socket handles (the raw [`SocketHandle`] of the socket table and the typed
//! [`TcpHandle`], [`ListenerHandle`], [`UdpHandle`] the calls take) and the
//! netstat-style socket table.

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
    /// The shard whose stack made it (`Config::shard`; 0 without shards), so that the
    /// handles of a sharded runtime are unique across its stacks.
    pub(crate) shard: u16,
}

impl SocketHandle {
    /// For tests and data-structure code outside the stack (demux, port tables).
    pub const fn from_raw(idx: u32, gen: u32) -> SocketHandle {
        SocketHandle { idx, gen, shard: 0 }
    }

    /// The shard whose stack holds the socket (0 without shards).
    pub fn shard(self) -> u16 {
        self.shard
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
        match self.shard {
            0 => write!(f, "#{}.{}", self.idx, self.gen),
            s => write!(f, "#{s}/{}.{}", self.idx, self.gen),
        }
    }
}

impl fmt::Display for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shard {
            0 => write!(f, "#{}", self.idx),
            s => write!(f, "#{s}/{}", self.idx),
        }
    }
}

macro_rules! typed_handle {
    ($(#[$doc:meta])* $name:ident, $tag:literal) => {
        $(#[$doc])*
        ///
        /// A thin copyable wrapper over the raw [`SocketHandle`] (with its generation):
        /// only the stack makes one, so a call for another kind of socket does not
        /// compile. `From`/[`raw`](Self::raw) give the raw handle, for the socket table
        /// and the runtime's waiters.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) SocketHandle);

        impl $name {
            /// The raw handle (`SocketInfo::handle`, `Stack::poll_readiness`).
            pub fn raw(self) -> SocketHandle {
                self.0
            }
        }

        impl From<$name> for SocketHandle {
            fn from(h: $name) -> SocketHandle {
                h.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:?}", $tag, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

typed_handle!(
    /// A TCP connection (a stream): from `Stack::tcp_connect` or `Stack::tcp_accept`.
    ///
    /// A UDP handle is not a TCP handle:
    ///
    /// ```compile_fail
    /// # use tunstack::{Config, Stack};
    /// let mut s = Stack::new(Config::default().with(|c| c.addrs = vec!["10.0.0.1".parse().unwrap()]));
    /// let u = s.udp_bind("10.0.0.1:53".parse().unwrap()).unwrap();
    /// let _ = s.tcp_send(u, b"hello");
    /// ```
    ///
    /// while a connection's handle is:
    ///
    /// ```
    /// # use tunstack::{Config, Instant, Stack};
    /// let mut s = Stack::new(Config::default().with(|c| c.addrs = vec!["10.0.0.1".parse().unwrap()]));
    /// let c = s.tcp_connect(Instant::ZERO, "10.0.0.2:80".parse().unwrap(), None).unwrap();
    /// let _ = s.tcp_send(c, b"hello");
    /// ```
    TcpHandle,
    "tcp"
);

typed_handle!(
    /// A listening TCP socket: from `Stack::tcp_listen`.
    ///
    /// It accepts connections; it carries no data:
    ///
    /// ```compile_fail
    /// # use tunstack::{Config, Stack};
    /// let mut s = Stack::new(Config::default().with(|c| c.addrs = vec!["10.0.0.1".parse().unwrap()]));
    /// let l = s.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    /// let _ = s.tcp_send(l, b"hello");
    /// ```
    ListenerHandle,
    "listener"
);

typed_handle!(
    /// A UDP socket: from `Stack::udp_bind`.
    ///
    /// ```compile_fail
    /// # use tunstack::{Config, Instant, Stack};
    /// let mut s = Stack::new(Config::default().with(|c| c.addrs = vec!["10.0.0.1".parse().unwrap()]));
    /// let c = s.tcp_connect(Instant::ZERO, "10.0.0.2:80".parse().unwrap(), None).unwrap();
    /// let _ = s.udp_send(c, b"hello");
    /// ```
    UdpHandle,
    "udp"
);

/// A handle of any kind, for the calls every socket has (`Stack::close`,
/// `Stack::local_addr`, `Stack::peer_addr`): each typed handle converts into it. Also
/// what `Stack::resolve` gives for a raw handle from the socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnyHandle {
    Tcp(TcpHandle),
    Listener(ListenerHandle),
    Udp(UdpHandle),
}

impl AnyHandle {
    pub fn raw(self) -> SocketHandle {
        match self {
            AnyHandle::Tcp(h) => h.0,
            AnyHandle::Listener(h) => h.0,
            AnyHandle::Udp(h) => h.0,
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            AnyHandle::Tcp(_) | AnyHandle::Listener(_) => Protocol::Tcp,
            AnyHandle::Udp(_) => Protocol::Udp,
        }
    }
}

impl From<TcpHandle> for AnyHandle {
    fn from(h: TcpHandle) -> AnyHandle {
        AnyHandle::Tcp(h)
    }
}

impl From<ListenerHandle> for AnyHandle {
    fn from(h: ListenerHandle) -> AnyHandle {
        AnyHandle::Listener(h)
    }
}

impl From<UdpHandle> for AnyHandle {
    fn from(h: UdpHandle) -> AnyHandle {
        AnyHandle::Udp(h)
    }
}

impl From<AnyHandle> for SocketHandle {
    fn from(h: AnyHandle) -> SocketHandle {
        h.raw()
    }
}

/// What a socket is ready for: the events behind the blocking calls' wake-ups and the
/// async API's wakers (`Stack::poll_readiness`). A level (`Stack::readiness`) or, from
/// `poll_readiness`, the bits that became set since they were last reported.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Readiness(u8);

impl Readiness {
    pub const EMPTY: Readiness = Readiness(0);
    /// `recv` would not block: data, end of stream, or an error to report.
    pub const READABLE: Readiness = Readiness(1);
    /// `send` would not block: buffer room (TCP: a low-water mark of it), connected, or
    /// an error to report.
    pub const WRITABLE: Readiness = Readiness(2);
    /// A listener has a completed connection to accept.
    pub const ACCEPTABLE: Readiness = Readiness(4);
    /// The socket reached its end (reset, refused, timed out, or closed normally).
    pub const CLOSED: Readiness = Readiness(8);

    pub const fn contains(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: Readiness) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits of `self` that `before` did not have.
    pub const fn rising_from(self, before: Readiness) -> Readiness {
        Readiness(self.0 & !before.0)
    }
}

impl std::ops::BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, rhs: Readiness) -> Readiness {
        Readiness(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Readiness {
    fn bitor_assign(&mut self, rhs: Readiness) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(1, "READABLE"), (2, "WRITABLE"), (4, "ACCEPTABLE"), (8, "CLOSED")];
        let set: Vec<&str> = names.iter().filter(|(b, _)| self.0 & b != 0).map(|(_, n)| *n).collect();
        if set.is_empty() {
            f.write_str("EMPTY")
        } else {
            f.write_str(&set.join("|"))
        }
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
