//! Blocking socket handles shaped like `std::net`'s, on top of a [`crate::runtime::Runtime`].
//!
//! Differences from std: constructors take the runtime (`TcpListener::bind(&rt, addr)`),
//! since there is no global OS stack; either the [`Runtime`](crate::runtime::Runtime) or
//! a [`RuntimeHandle`](crate::runtime::RuntimeHandle) will do. Errors are `std::io::Error` with std's kinds; once the
//! runtime is shut down every call fails with `NotConnected` ("runtime shut down").
//!
//! - `TcpListener`: `bind(&rt, addr)`, `bind_with_backlog`, `accept() -> (TcpStream, SocketAddr)`,
//!   `incoming()`, `local_addr()`, `set_nonblocking()`, `try_clone()`.
//! - `TcpStream`: `connect(&rt, addr)`, `connect_timeout`, `Read`, `Write` (also for `&TcpStream`),
//!   `shutdown(Shutdown)`, `peer_addr`, `local_addr`, `set_nodelay`, `nodelay`,
//!   `set_read_timeout`, `set_write_timeout`, `read_timeout`, `write_timeout`,
//!   `set_nonblocking`, `try_clone`, `state`. Dropping the last clone closes gracefully.
//! - `UdpSocket`: `bind(&rt, addr)`, `send_to`, `recv_from`, `connect`, `send`, `recv`,
//!   `local_addr`, `peer_addr`, timeouts, `set_nonblocking`, `try_clone`.
//!
//! Every handle also has `handle()`, its [`SocketHandle`] in the stack's socket table
//! (`Runtime::sockets`).
//!
//! Blocking: a call that the core answers with `WouldBlock` waits for the runtime to
//! report that the socket's readiness changed, then tries again. In non-blocking mode
//! `WouldBlock` is returned as is; when a read or write timeout expires the call fails
//! with `WouldBlock` too (what std does on Linux).

mod tcp;
mod udp;

pub use tcp::{Incoming, TcpListener, TcpStream, DEFAULT_BACKLOG};
pub use udp::UdpSocket;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::runtime::engine::Engine;
use crate::runtime::WaitMode;
use crate::socket::{AnyHandle, Readiness, SocketHandle};
use crate::stack::Stack;

/// One socket of the stack as held by the application, by its typed handle `H`: closed
/// (`Stack::close`) when the last handle sharing it is dropped. Options are per socket,
/// shared by clones, as they are for std's `try_clone`.
struct Sock<H: Copy + Into<AnyHandle>> {
    /// The engine of the socket's shard (not a whole `RuntimeHandle`: a socket needs
    /// only its own shard, and this keeps it one pointer).
    engine: Arc<Engine>,
    h: H,
    nonblocking: AtomicBool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
    /// Set when the socket was already released (aborted): nothing to close on drop.
    released: AtomicBool,
}

impl<H: Copy + Into<AnyHandle>> Sock<H> {
    fn new(engine: Arc<Engine>, h: H) -> Sock<H> {
        Sock {
            engine,
            h,
            nonblocking: AtomicBool::new(false),
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
            released: AtomicBool::new(false),
        }
    }

    /// The raw handle: the socket table's, and the one the runtime's waiters use.
    fn raw(&self) -> SocketHandle {
        self.h.into().raw()
    }

    /// One call on the core; its typed error becomes an `io::Error` here, at the API
    /// boundary.
    fn call<T, E: Into<io::Error>>(&self, f: impl FnOnce(&mut Stack, H) -> Result<T, E>) -> io::Result<T> {
        self.engine.call(|s, _| f(s, self.h).map_err(Into::into))
    }

    /// Block (per this socket's mode and read timeout) until `f` stops saying WouldBlock.
    fn wait_read<T, E: Into<io::Error>>(&self, mut f: impl FnMut(&mut Stack, H) -> Result<T, E>) -> io::Result<T> {
        let (h, nonblocking, timeout) = (self.raw(), self.is_nonblocking(), self.read_timeout());
        self.engine.block(h, WaitMode::Shared, Readiness::READABLE, nonblocking, timeout, |s, _| {
            f(s, self.h).map_err(Into::into)
        })
    }

    /// Same with the write timeout.
    fn wait_write<T, E: Into<io::Error>>(&self, mut f: impl FnMut(&mut Stack, H) -> Result<T, E>) -> io::Result<T> {
        let (h, nonblocking, timeout) = (self.raw(), self.is_nonblocking(), self.write_timeout());
        self.engine.block(h, WaitMode::Shared, Readiness::WRITABLE, nonblocking, timeout, |s, _| {
            f(s, self.h).map_err(Into::into)
        })
    }

    fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    fn read_timeout(&self) -> Option<Duration> {
        *self.read_timeout.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_timeout(&self) -> Option<Duration> {
        *self.write_timeout.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        *self.read_timeout.lock().unwrap_or_else(PoisonError::into_inner) = t;
        Ok(())
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        *self.write_timeout.lock().unwrap_or_else(PoisonError::into_inner) = t;
        Ok(())
    }
}

impl<H: Copy + Into<AnyHandle>> Drop for Sock<H> {
    fn drop(&mut self) {
        if self.released.load(Ordering::Relaxed) {
            return;
        }
        // Fails with NotConnected once the runtime is gone, which is fine: the whole
        // stack went with it.
        if let Err(e) = self.call(|s, h| s.close(h)) {
            tracing::trace!(handle = ?self.raw(), error = %e, "close on drop");
        }
    }
}

/// std rejects a zero timeout (it would mean "forever" to setsockopt).
fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
    }
    Ok(())
}

/// Try `f` on every address `addr` resolves to, like std: the first success wins,
/// otherwise the last error.
pub(crate) fn each_addr<T>(addr: impl ToSocketAddrs, mut f: impl FnMut(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any addresses")))
}

/// The first address `addr` resolves to.
pub(crate) fn first_addr(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TcpListener>();
        check::<TcpStream>();
        check::<UdpSocket>();
        check::<crate::runtime::RuntimeHandle>();
    }

    #[test]
    fn zero_timeout_is_invalid_input() {
        assert_eq!(check_timeout(Some(Duration::ZERO)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(check_timeout(None).is_ok());
        assert!(check_timeout(Some(Duration::from_nanos(1))).is_ok());
    }

    #[test]
    fn each_addr_tries_all_and_keeps_the_last_error() {
        let addrs: Vec<SocketAddr> = vec!["10.0.0.2:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()];
        let mut seen = Vec::new();
        let r: io::Result<()> = each_addr(&addrs[..], |a| {
            seen.push(a.port());
            Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("port {}", a.port())))
        });
        assert_eq!(seen, [1, 2]);
        assert_eq!(r.unwrap_err().to_string(), "port 2");
        let r = each_addr(&addrs[..], |a| if a.port() == 2 { Ok(a) } else { Err(io::ErrorKind::Other.into()) });
        assert_eq!(r.unwrap(), addrs[1]);
        let none: &[SocketAddr] = &[];
        assert_eq!(each_addr(none, Ok).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(first_addr(none).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(first_addr("10.0.0.2:7").unwrap(), "10.0.0.2:7".parse().unwrap());
        assert!(each_addr("not an address", Ok).is_err());
    }
}

/// End-to-end tests against the kernel (need the core; see the file).
#[cfg(test)]
mod tests;
