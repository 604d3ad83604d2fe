//! `TcpListener` and `TcpStream`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{each_addr, Sock};
use crate::runtime::engine::Engine;
use crate::runtime::wait::Waiter;
use crate::runtime::{RuntimeHandle, WaitMode};
use crate::socket::{ListenerHandle, Readiness, SocketHandle, TcpHandle};
use crate::tcp::TcpState;

/// Accept-queue length used by [`TcpListener::bind`] (Linux's default `somaxconn` was 128
/// for a long time).
pub const DEFAULT_BACKLOG: usize = 128;

/// A TCP socket listening for connections, like `std::net::TcpListener`.
///
/// Dropping the last clone closes the listener; connections still waiting in its queues
/// are reset.
pub struct TcpListener {
    /// The listener (shard 0's, with a multi-queue runtime).
    sock: Arc<Sock<ListenerHandle>>,
    /// With a multi-queue runtime, the same listener in every other shard, which
    /// accepts the connections whose 4-tuples that shard owns.
    more: Arc<[Sock<ListenerHandle>]>,
}

impl TcpListener {
    /// Bind to `addr` (a wildcard IP and port 0 allowed) and listen, backlog 128. With
    /// several addresses, the first that binds wins, as with std.
    pub fn bind(rt: &impl AsRef<RuntimeHandle>, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(rt, addr, DEFAULT_BACKLOG)
    }

    /// `bind` with an explicit backlog (bounds both the half-open and the accept queue).
    pub fn bind_with_backlog(
        rt: &impl AsRef<RuntimeHandle>,
        addr: impl ToSocketAddrs,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        let rt = rt.as_ref();
        each_addr(addr, |a| {
            let (sock, more) = listen_everywhere(rt, a, |s, a| Ok(s.tcp_listen(a, backlog)?))?;
            Ok(TcpListener { sock: Arc::new(sock), more: more.into() })
        })
    }

    /// Wait for a connection that completed its handshake. The new stream is in
    /// blocking mode, whatever the listener's mode.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        if !self.more.is_empty() {
            return self.accept_any();
        }
        let sock = &*self.sock;
        // Accepting threads wait exclusively: one new connection wakes one of them.
        let (h, peer) = sock.engine.block(
            sock.raw(),
            WaitMode::Exclusive,
            Readiness::ACCEPTABLE,
            sock.is_nonblocking(),
            None,
            |s, _| accept_one(s, sock.h),
        )?;
        Ok((TcpStream::from_handle(Arc::clone(&sock.engine), h), peer))
    }

    /// `accept` on a multi-queue runtime: the first connection any shard's listener
    /// has, waiting (registered under every shard's listener) when none has one.
    fn accept_any(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let socks: Vec<&Sock<ListenerHandle>> = std::iter::once(&*self.sock).chain(self.more.iter()).collect();
        let nonblocking = self.sock.is_nonblocking();
        let waiter = Waiter::current();
        loop {
            waiter.reset();
            let mut registered = 0;
            let mut found = Ok(None);
            for sock in &socks {
                let w = (!nonblocking).then_some(&waiter);
                found =
                    sock.engine.attempt_or_register(sock.raw(), Readiness::ACCEPTABLE, w, |s, _| accept_one(s, sock.h));
                match &found {
                    Ok(None) => registered += 1,
                    _ => break,
                }
            }
            let unregister = |n: usize| {
                for sock in &socks[..n] {
                    sock.engine.unregister(sock.raw(), &waiter);
                }
            };
            match found {
                Ok(Some((h, peer))) => {
                    unregister(registered);
                    let sock = socks[registered];
                    return Ok((TcpStream::from_handle(Arc::clone(&sock.engine), h), peer));
                }
                Err(e) => {
                    unregister(registered);
                    return Err(e);
                }
                Ok(None) if nonblocking => return Err(io::ErrorKind::WouldBlock.into()),
                Ok(None) => {}
            }
            while !waiter.is_notified() {
                std::thread::park();
            }
            unregister(registered);
        }
    }

    /// An endless iterator over `accept()`ed streams (peer addresses dropped), as std's.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.local_addr(h))
    }

    /// In non-blocking mode `accept` returns `WouldBlock` when no connection is ready.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Another handle to the same listener (the listener closes when the last drops).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener { sock: Arc::clone(&self.sock), more: Arc::clone(&self.more) })
    }

    /// The socket's handle in the stack (see `Runtime::sockets`).
    pub fn handle(&self) -> SocketHandle {
        self.sock.raw()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        d.field("handle", &self.sock.raw());
        if let Ok(a) = self.local_addr() {
            d.field("addr", &a);
        }
        d.finish()
    }
}

/// Take one connection from a listener's accept queue, with its peer's address.
fn accept_one(s: &mut crate::Stack, l: ListenerHandle) -> io::Result<(TcpHandle, SocketAddr)> {
    let h = s.tcp_accept(l)?;
    match s.peer_addr(h) {
        Ok(peer) => Ok((h, peer)),
        Err(e) => {
            // Cannot fail: `h` was just accepted.
            let _ = s.close(h);
            Err(e.into())
        }
    }
}

/// Listen on `addr` in every shard of `rt` with `listen` (one call on a single-queue
/// runtime, or with a handle pinned to its shard): shard 0 first, which also picks the
/// port for port 0, then the others on the same address and port. Returns shard 0's socket and the others'; on an error
/// the ones made so far are closed again.
pub(crate) fn listen_everywhere<H: Copy + Into<crate::AnyHandle>>(
    rt: &RuntimeHandle,
    addr: SocketAddr,
    listen: impl Fn(&mut crate::Stack, SocketAddr) -> io::Result<H>,
) -> io::Result<(Sock<H>, Vec<Sock<H>>)> {
    let mut shards = rt.listen_shards().into_iter();
    let first = shards.next().expect("a runtime has a shard");
    let h = first.call(|s, _| listen(s, addr))?;
    let sock = Sock::new(Arc::clone(&first.engine), h);
    let addr = sock.call(|s, h| s.local_addr(h))?;
    let mut more = Vec::new();
    for shard in shards {
        let h = shard.call(|s, _| listen(s, addr))?;
        more.push(Sock::new(Arc::clone(&shard.engine), h));
    }
    Ok((sock, more))
}

/// Iterator returned by [`TcpListener::incoming`]. It never ends: after the runtime
/// shut down it yields `NotConnected` errors.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

/// A TCP connection, like `std::net::TcpStream`. `Read` and `Write` are implemented for
/// both `TcpStream` and `&TcpStream`, so one thread can read while another writes.
///
/// Dropping the last clone closes the connection gracefully (FIN after the queued data;
/// RST if received data was left unread); the stack finishes the close on its own.
pub struct TcpStream {
    sock: Arc<Sock<TcpHandle>>,
    nodelay: Arc<AtomicBool>,
}

impl TcpStream {
    fn from_handle(engine: Arc<Engine>, h: TcpHandle) -> TcpStream {
        TcpStream { sock: Arc::new(Sock::new(engine, h)), nodelay: Arc::new(AtomicBool::new(false)) }
    }

    /// Open a connection and wait until the handshake completes or fails
    /// (`ConnectionRefused`, `TimedOut` after the SYN retries, ...). With several
    /// addresses, each is tried in turn, as with std.
    pub fn connect(rt: &impl AsRef<RuntimeHandle>, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let rt = rt.as_ref();
        each_addr(addr, |a| TcpStream::connect_inner(rt, a, None))
    }

    /// `connect` that gives up after `timeout`: the attempt is aborted and the error is
    /// `TimedOut`. A zero timeout is `InvalidInput`, as with std.
    pub fn connect_timeout(
        rt: &impl AsRef<RuntimeHandle>,
        addr: &SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        TcpStream::connect_inner(rt.as_ref(), *addr, Some(timeout))
    }

    fn connect_inner(rt: &RuntimeHandle, remote: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        // With several shards, the next one round robin (it picks a port whose 4-tuple
        // it owns).
        let rt = &rt.shard_for_connect();
        let h = rt.call(|s, now| Ok(s.tcp_connect(now, remote, None)?))?;
        // From here on, dropping `stream` releases the socket on every error path.
        let stream = TcpStream::from_handle(Arc::clone(&rt.engine), h);
        let established = rt.block(h.raw(), WaitMode::Shared, Readiness::WRITABLE, false, timeout, |s, _| {
            match s.tcp_poll_connect(h) {
                Ok(true) => Ok(()),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e.into()),
            }
        });
        match established {
            Ok(()) => Ok(stream),
            Err(e) if timeout.is_some() && e.kind() == io::ErrorKind::WouldBlock => {
                if rt.call(|s, _| Ok(s.tcp_abort(h)?)).is_ok() {
                    stream.sock.released.store(true, Ordering::Relaxed);
                }
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("connection to {remote} timed out")))
            }
            Err(e) => Err(e),
        }
    }

    /// Shut down the read half, the write half (FIN after queued data), or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.call(|s, h| s.tcp_shutdown(h, how))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.peer_addr(h))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.local_addr(h))
    }

    /// Disable (true) or enable (false) Nagle's algorithm (RFC 896).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.sock.call(|s, h| s.tcp_set_nodelay(h, nodelay))?;
        self.nodelay.store(nodelay, Ordering::Relaxed);
        Ok(())
    }

    /// The last value given to `set_nodelay` (false, Nagle on, by default).
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.nodelay.load(Ordering::Relaxed))
    }

    /// Keepalive probes (RFC 9293 3.8.4), like SO_KEEPALIVE with TCP_KEEPIDLE /
    /// TCP_KEEPINTVL / TCP_KEEPCNT; `None` turns them off. A peer that stops answering
    /// makes reads and writes fail with `TimedOut`.
    pub fn set_keepalive(&self, keepalive: Option<crate::Keepalive>) -> io::Result<()> {
        self.sock.call(|s, h| s.tcp_set_keepalive(h, keepalive))
    }

    /// User timeout (RFC 9293 3.8.3, RFC 5482; Linux's TCP_USER_TIMEOUT): give up with
    /// `TimedOut` when sent data stays unacknowledged this long.
    pub fn set_user_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.call(|s, h| s.tcp_set_user_timeout(h, timeout))
    }

    /// Congestion control for this connection (Linux's TCP_CONGESTION).
    pub fn set_congestion(&self, alg: crate::CongestionAlgorithm) -> io::Result<()> {
        self.sock.call(|s, h| s.tcp_set_congestion(h, alg))
    }

    /// A snapshot of the connection's control block (Linux's TCP_INFO).
    pub fn tcp_info(&self) -> io::Result<crate::TcpInfo> {
        self.sock.call(|s, h| s.tcp_info(h))
    }

    /// `None` blocks forever; an expired timeout makes `read` fail with `WouldBlock`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// `None` blocks forever; an expired timeout makes `write` fail with `WouldBlock`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.sock.read_timeout())
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.sock.write_timeout())
    }

    /// In non-blocking mode `read` and `write` return `WouldBlock` instead of waiting.
    /// Shared by all clones.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Another handle to the same connection; options are shared, and the connection
    /// is closed when the last clone drops.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream { sock: Arc::clone(&self.sock), nodelay: Arc::clone(&self.nodelay) })
    }

    /// The connection's state (RFC 9293 3.3.2).
    pub fn state(&self) -> io::Result<TcpState> {
        self.sock.call(|s, h| s.tcp_state(h))
    }

    /// The socket's handle in the stack (see `Runtime::sockets`).
    pub fn handle(&self) -> SocketHandle {
        self.sock.raw()
    }

    fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.sock.wait_read(|s, h| s.tcp_recv(h, buf))
    }

    fn send_from(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.sock.wait_write(|s, h| s.tcp_send(h, buf))
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf)
    }
}

impl Write for &TcpStream {
    /// Waits until at least one byte is queued; returns how many were.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_from(buf)
    }

    /// Queued bytes are already on their way: nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_from(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpStream");
        d.field("handle", &self.sock.raw());
        if let Ok(a) = self.local_addr() {
            d.field("addr", &a);
        }
        if let Ok(a) = self.peer_addr() {
            d.field("peer", &a);
        }
        d.finish()
    }
}
