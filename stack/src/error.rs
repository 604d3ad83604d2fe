//! Typed errors of the sans-IO core.
//!
//! Every operation of [`crate::Stack`] returns a small enum that names what went wrong,
//! without allocating. The `net` and async APIs turn them into `std::io::Error` with
//! the kind std's sockets use on Linux ([`From`] impls here, `kind()` on each enum), so
//! applications see the errors they already handle.

use core::fmt;
use std::io;

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
}

impl ConnError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            ConnError::Refused => io::ErrorKind::ConnectionRefused,
            ConnError::Reset => io::ErrorKind::ConnectionReset,
            ConnError::TimedOut => io::ErrorKind::TimedOut,
            ConnError::Aborted => io::ErrorKind::ConnectionAborted,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnError::Refused => "connection refused",
            ConnError::Reset => "connection reset by peer",
            ConnError::TimedOut => "connection timed out",
            ConnError::Aborted => "connection aborted",
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
}

impl SendError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            SendError::WouldBlock => io::ErrorKind::WouldBlock,
            SendError::WriteShutdown | SendError::Closed => io::ErrorKind::BrokenPipe,
            SendError::Conn(e) => e.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SendError::WouldBlock => "send buffer full or handshake in progress",
            SendError::WriteShutdown => "write side shut down",
            SendError::Closed => "connection closed for sending",
            SendError::Conn(e) => e.as_str(),
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
}

impl RecvError {
    pub fn kind(self) -> io::ErrorKind {
        match self {
            RecvError::WouldBlock => io::ErrorKind::WouldBlock,
            RecvError::Conn(e) => e.kind(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecvError::WouldBlock => "nothing received yet",
            RecvError::Conn(e) => e.as_str(),
        }
    }
}

macro_rules! io_conversions {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

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

io_conversions!(ConnError, SendError, RecvError);

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
}
