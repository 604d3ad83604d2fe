//! Async `TcpListener` and `TcpStream`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{each_addr, Owned};
use crate::net::DEFAULT_BACKLOG;
use crate::runtime::engine::Engine;
use crate::runtime::RuntimeHandle;
use crate::socket::{ListenerHandle, Readiness, SocketHandle, TcpHandle};
use crate::tcp::{TcpInfo, TcpState};

/// A TCP socket listening for connections, like `tokio::net::TcpListener`. Dropping it
/// closes the listener; connections still waiting in its queues are reset.
pub struct TcpListener {
    /// The listener (shard 0's, with a multi-queue runtime).
    sock: Owned<ListenerHandle>,
    /// With a multi-queue runtime, the same listener in every other shard.
    more: Vec<Owned<ListenerHandle>>,
    /// Where the next `poll_accept` starts looking, so that no shard's connections wait
    /// behind another's.
    next: std::sync::atomic::AtomicUsize,
}

impl TcpListener {
    /// Bind to `addr` (a wildcard IP and port 0 allowed) and listen, backlog 128. With
    /// several addresses, the first that binds wins. Binding completes at once (the
    /// stack is in this process), so unlike tokio's this is not `async`.
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
        each_addr(addr, |a| TcpListener::everywhere(rt, a, |s, a| s.tcp_listen(a, backlog).map_err(io::Error::from)))
    }

    /// Listen in every shard (see `crate::net`'s `listen_everywhere`): shard 0 first,
    /// which picks the port for port 0, then the others on the same address and port.
    fn everywhere(
        rt: &RuntimeHandle,
        addr: SocketAddr,
        listen: impl Fn(&mut crate::Stack, SocketAddr) -> io::Result<ListenerHandle>,
    ) -> io::Result<TcpListener> {
        let mut shards = rt.listen_shards().into_iter();
        let first = shards.next().expect("a runtime has a shard");
        let h = first.call(|s, _| listen(s, addr))?;
        let sock = Owned { engine: Arc::clone(&first.engine), h };
        let addr = sock.call(|s, h| s.local_addr(h))?;
        let mut more = Vec::new();
        for shard in shards {
            let h = shard.call(|s, _| listen(s, addr))?;
            more.push(Owned { engine: Arc::clone(&shard.engine), h });
        }
        Ok(TcpListener { sock, more, next: Default::default() })
    }

    /// A transparent listener (`Stack::tcp_listen_transparent`): it accepts connections
    /// to any address and port that no other socket takes; an accepted stream's
    /// `local_addr` is the destination its client connected to. The building block of
    /// a gateway.
    pub fn bind_transparent(rt: &impl AsRef<RuntimeHandle>, backlog: usize) -> io::Result<TcpListener> {
        let rt = rt.as_ref();
        // The address is not used: a transparent listener takes any.
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        TcpListener::everywhere(rt, any, |s, _| s.tcp_listen_transparent(backlog).map_err(io::Error::from))
    }

    /// Wait for a connection that completed its handshake.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll for a completed connection (registers the task when there is none).
    /// With a multi-queue runtime it looks at every shard's listener (registering the
    /// task under each that has nothing).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let n = 1 + self.more.len();
        let start = if n == 1 { 0 } else { self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n };
        for i in (0..n).map(|k| (start + k) % n) {
            let sock = if i == 0 { &self.sock } else { &self.more[i - 1] };
            let polled = sock.poll(Readiness::ACCEPTABLE, cx, |s, lh| {
                let h = s.tcp_accept(lh)?;
                match s.peer_addr(h) {
                    Ok(peer) => Ok((h, peer)),
                    Err(e) => {
                        let _ = s.close(h);
                        Err(io::Error::from(e))
                    }
                }
            });
            if let Poll::Ready(r) = polled {
                return Poll::Ready(r.map(|(h, peer)| (TcpStream::from_handle(Arc::clone(&sock.engine), h), peer)));
            }
        }
        Poll::Pending
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.local_addr(h))
    }

    /// The socket's handle in the stack (see `RuntimeHandle::sockets`).
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

/// A TCP connection, like `tokio::net::TcpStream`: `AsyncRead + AsyncWrite`. Dropping
/// it closes the connection gracefully (FIN after the queued data; RST if received data
/// was left unread). `poll_shutdown` sends the FIN (shutdown of the write side).
pub struct TcpStream {
    sock: Arc<Owned<TcpHandle>>,
}

impl TcpStream {
    fn from_handle(engine: Arc<Engine>, h: TcpHandle) -> TcpStream {
        TcpStream { sock: Arc::new(Owned { engine, h }) }
    }

    /// Open a connection and wait until the handshake completes or fails
    /// (`ConnectionRefused`, `TimedOut` after the SYN retries, ...). With several
    /// addresses, each is tried in turn.
    pub async fn connect(rt: &impl AsRef<RuntimeHandle>, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let rt = rt.as_ref();
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_one(rt, a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any addresses")))
    }

    async fn connect_one(rt: &RuntimeHandle, remote: SocketAddr) -> io::Result<TcpStream> {
        // With several shards, the next one round robin (it picks a port whose 4-tuple
        // it owns).
        let rt = &rt.shard_for_connect();
        let h = rt.call(|s, now| s.tcp_connect(now, remote, None).map_err(io::Error::from))?;
        // Dropping `stream` (an error, or the future being cancelled) releases the socket.
        let stream = TcpStream::from_handle(Arc::clone(&rt.engine), h);
        poll_fn(|cx| {
            stream.sock.poll(Readiness::WRITABLE, cx, |s, h| match s.tcp_poll_connect(h) {
                Ok(true) => Ok(()),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(io::Error::from(e)),
            })
        })
        .await?;
        Ok(stream)
    }

    fn call<T, E: Into<io::Error>>(
        &self,
        f: impl FnOnce(&mut crate::Stack, TcpHandle) -> Result<T, E>,
    ) -> io::Result<T> {
        self.sock.call(f)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.call(|s, h| s.peer_addr(h))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.call(|s, h| s.local_addr(h))
    }

    /// Disable (true) or enable (false) Nagle's algorithm (RFC 896).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.call(|s, h| s.tcp_set_nodelay(h, nodelay))
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        self.call(|s, h| s.tcp_nodelay(h))
    }

    /// Congestion control for this connection (Linux's TCP_CONGESTION): NewReno, CUBIC
    /// (the default) or BBR.
    pub fn set_congestion(&self, alg: crate::CongestionAlgorithm) -> io::Result<()> {
        self.call(|s, h| s.tcp_set_congestion(h, alg))
    }

    /// A snapshot of the connection's control block (Linux's TCP_INFO).
    pub fn tcp_info(&self) -> io::Result<TcpInfo> {
        self.call(|s, h| s.tcp_info(h))
    }

    /// The connection's state (RFC 9293 3.3.2).
    pub fn state(&self) -> io::Result<TcpState> {
        self.call(|s, h| s.tcp_state(h))
    }

    /// The socket's handle in the stack (see `RuntimeHandle::sockets`).
    pub fn handle(&self) -> SocketHandle {
        self.sock.raw()
    }

    /// Reset the connection (RFC 9293 3.10.7.1, ABORT): queued data is discarded, a
    /// RST goes out if the connection was synchronized, and the peer's next call fails
    /// with `ConnectionReset` (what `SO_LINGER` 0 and `close` do on Linux).
    pub fn abort(self) -> io::Result<()> {
        self.call(|s, h| s.tcp_abort(h))
    }

    /// Split into halves that can move to different tasks. Dropping the write half
    /// shuts the write side down (FIN), as tokio's does; the connection closes when
    /// both are gone.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (OwnedReadHalf { sock: Arc::clone(&self.sock) }, OwnedWriteHalf { sock: self.sock, shutdown_on_drop: true })
    }
}

/// The shared poll functions of a stream and its halves.
fn poll_read(sock: &Owned<TcpHandle>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return Poll::Ready(Ok(()));
    }
    sock.poll(Readiness::READABLE, cx, |s, h| {
        // `ReadBuf` hands out only initialized memory, and callers such as hyper pass a
        // fresh, uninitialized one (their whole spare capacity, 8 KiB and more) on every
        // read: zero-filling all of it cost more than the rest of the read. So only as
        // many bytes as are queued are initialized. One byte when nothing is queued,
        // so that `tcp_recv` still tells end of stream, an error and `WouldBlock` apart.
        let queued = s.tcp_recv_queue(h).map_err(io::Error::from)?;
        let dst = buf.initialize_unfilled_to(buf.remaining().min(queued.max(1)));
        let n = s.tcp_recv(h, dst).map_err(io::Error::from)?;
        buf.advance(n);
        Ok::<(), io::Error>(())
    })
}

fn poll_write(sock: &Owned<TcpHandle>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
    if data.is_empty() {
        return Poll::Ready(Ok(0));
    }
    sock.poll(Readiness::WRITABLE, cx, |s, h| s.tcp_send(h, data))
}

fn shutdown_write(sock: &Owned<TcpHandle>) -> io::Result<()> {
    match sock.call(|s, h| s.tcp_shutdown(h, Shutdown::Write)) {
        // Already closed (the peer reset it, or it never connected): nothing to send.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read(&self.sock, cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(&self.sock, cx, data)
    }

    /// Queued bytes are already on their way (the driver sends them at its next turn,
    /// which the write scheduled): nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Send FIN after the queued data (shutdown of the write side).
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(&self.sock))
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

/// The read half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    sock: Arc<Owned<TcpHandle>>,
}

/// The write half of [`TcpStream::into_split`]; dropping it sends FIN.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    sock: Arc<Owned<TcpHandle>>,
    shutdown_on_drop: bool,
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read(&self.sock, cx, buf)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(&self.sock, cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_on_drop = false;
        Poll::Ready(shutdown_write(&self.sock))
    }
}

impl OwnedWriteHalf {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.peer_addr(h))
    }
}

impl OwnedReadHalf {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.call(|s, h| s.peer_addr(h))
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = shutdown_write(&self.sock);
        }
    }
}
