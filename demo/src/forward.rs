//! Port forwarding between tunstack and the host's own sockets, both ways, TCP and UDP:
//!
//! - inbound (like DNAT, or slirp's guestfwd): connections and datagrams to the stack's
//!   `PORT` are relayed to a target through host sockets;
//! - outbound (like slirp's hostfwd, or onetun): a host listener (in the demo's own
//!   network namespace) whose connections and datagrams are carried through tunstack to
//!   an address behind the device.
//!
//! TCP is relayed with `tokio::io::copy_bidirectional` (each direction's FIN is passed
//! on); UDP with one mapping per client address (endpoint-independent: all of a
//! client's datagrams leave from one socket), removed after [`UDP_IDLE`] without traffic.
//! The mapping table holds at most [`MAX_UDP_MAPPINGS`] clients. Every relayed flow is
//! recorded in a [`Flows`] table for the dashboard.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tunstack::runtime::RuntimeHandle;

use crate::dashboard::{FlowBytes, Flows};

/// A UDP mapping without traffic either way for this long is removed.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// UDP clients mapped at once per forward; datagrams of further clients are dropped.
pub const MAX_UDP_MAPPINGS: usize = 4096;

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `--in tcp:8080=10.0.0.1:80`: the stack's port to a target reached with host sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub proto: Proto,
    pub port: u16,
    pub target: SocketAddr,
}

/// `--out tcp:127.0.0.1:9000=10.0.0.1:22`: a host listener to a target behind the
/// device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub proto: Proto,
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

fn proto_of(s: &str) -> Result<Proto, String> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        other => Err(format!("`{other}`: the protocol is `tcp` or `udp`")),
    }
}

fn addr_of(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("`{s}` is not ADDRESS:PORT (IPv6 in brackets: [fd00::1]:80)"))
}

impl FromStr for Inbound {
    type Err = String;
    fn from_str(s: &str) -> Result<Inbound, String> {
        let (left, target) = s.split_once('=').ok_or("expected PROTO:PORT=ADDRESS:PORT, e.g. tcp:8080=10.0.0.1:80")?;
        let (proto, port) = left.split_once(':').ok_or("expected PROTO:PORT before `=`, e.g. tcp:8080")?;
        let port = port.parse().map_err(|_| format!("`{port}` is not a port"))?;
        Ok(Inbound { proto: proto_of(proto)?, port, target: addr_of(target)? })
    }
}

impl FromStr for Outbound {
    type Err = String;
    fn from_str(s: &str) -> Result<Outbound, String> {
        let (left, target) =
            s.split_once('=').ok_or("expected PROTO:LISTEN=ADDRESS:PORT, e.g. tcp:127.0.0.1:9000=10.0.0.1:22")?;
        let (proto, listen) = left.split_once(':').ok_or("expected PROTO:ADDRESS:PORT before `=`")?;
        Ok(Outbound { proto: proto_of(proto)?, listen: addr_of(listen)?, target: addr_of(target)? })
    }
}

impl fmt::Display for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}={}", self.proto.as_str(), self.port, self.target)
    }
}

impl fmt::Display for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}={}", self.proto.as_str(), self.listen, self.target)
    }
}

/// Copy both ways between `a` (the client's side) and `b` until both are done,
/// recording the flow.
pub async fn relay<A, B>(mut a: A, mut b: B, flows: Flows, client: SocketAddr, target: SocketAddr)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let bytes = flows.open("tcp", client, target);
    let mut a = Counted { inner: &mut a, bytes: &bytes.up };
    let mut b = Counted { inner: &mut b, bytes: &bytes.down };
    if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
        tracing::debug!(%client, %target, error = %e, "relay ended");
    }
    flows.close(client, target);
}

/// A stream whose reads are counted as they happen (for the dashboard's live flows).
struct Counted<'a, S> {
    inner: &'a mut S,
    bytes: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        self.bytes.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut *self.inner).poll_write(cx, data)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Start every forward on the current tokio runtime (tasks). Binding errors come back
/// at once.
pub fn start(rt: &RuntimeHandle, ins: &[Inbound], outs: &[Outbound], flows: &Flows) -> io::Result<()> {
    for f in ins {
        let addrs: Vec<SocketAddr> =
            rt.inspect(|s| s.config().addrs.iter().map(|a| SocketAddr::new(*a, f.port)).collect());
        for local in addrs.into_iter().filter(|a| a.is_ipv4() == f.target.is_ipv4() || f.target.ip().is_unspecified()) {
            match f.proto {
                Proto::Tcp => {
                    let l = tunstack::tokio::TcpListener::bind(rt, local)?;
                    tokio::spawn(inbound_tcp(l, f.target, flows.clone()));
                }
                Proto::Udp => {
                    let s = tunstack::tokio::UdpSocket::bind(rt, local)?;
                    tokio::spawn(inbound_udp(s, f.target, flows.clone()));
                }
            }
        }
    }
    for f in outs {
        match f.proto {
            Proto::Tcp => {
                let l = std::net::TcpListener::bind(f.listen)?;
                l.set_nonblocking(true)?;
                let l = tokio::net::TcpListener::from_std(l)?;
                tokio::spawn(outbound_tcp(l, rt.clone(), f.target, flows.clone()));
            }
            Proto::Udp => {
                let s = std::net::UdpSocket::bind(f.listen)?;
                s.set_nonblocking(true)?;
                let s = tokio::net::UdpSocket::from_std(s)?;
                tokio::spawn(outbound_udp(s, rt.clone(), f.target, flows.clone()));
            }
        }
    }
    Ok(())
}

async fn inbound_tcp(listener: tunstack::tokio::TcpListener, target: SocketAddr, flows: Flows) {
    loop {
        let Ok((inside, client)) = listener.accept().await else { return };
        let flows = flows.clone();
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(target).await {
                Ok(outside) => relay(inside, outside, flows, client, target).await,
                // The client sees its connection closed; a refused target could also be
                // answered with a RST (abort), which is what we do.
                Err(e) => tracing::debug!(%client, %target, error = %e, "forward: target unreachable"),
            }
        });
    }
}

async fn outbound_tcp(listener: tokio::net::TcpListener, rt: RuntimeHandle, target: SocketAddr, flows: Flows) {
    loop {
        let Ok((outside, client)) = listener.accept().await else { return };
        let (rt, flows) = (rt.clone(), flows.clone());
        tokio::spawn(async move {
            match tunstack::tokio::TcpStream::connect(&rt, target).await {
                Ok(inside) => relay(outside, inside, flows, client, target).await,
                Err(e) => {
                    tracing::debug!(%client, %target, error = %e, "forward: target behind the device unreachable")
                }
            }
        });
    }
}

/// The back side of a UDP relay: a socket that sends to any target and receives the
/// answers (a host socket, or one of tunstack's).
pub(crate) trait Datagrams: Send + Sync + 'static {
    fn send_to(&self, data: &[u8], to: SocketAddr) -> impl std::future::Future<Output = io::Result<usize>> + Send;
    fn recv_from(&self, buf: &mut [u8]) -> impl std::future::Future<Output = io::Result<(usize, SocketAddr)>> + Send;
}

impl Datagrams for tunstack::tokio::UdpSocket {
    async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        tunstack::tokio::UdpSocket::send_to(self, data, to).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tunstack::tokio::UdpSocket::recv_from(self, buf).await
    }
}

impl Datagrams for tokio::net::UdpSocket {
    async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        tokio::net::UdpSocket::send_to(self, data, to).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tokio::net::UdpSocket::recv_from(self, buf).await
    }
}

/// The front side of a UDP relay: where clients' datagrams arrive, each with the
/// target it goes to, and where the answers go back.
pub(crate) trait Front: Send + Sync + 'static {
    /// One datagram: its length, the client, the target.
    fn recv(
        &self,
        buf: &mut [u8],
    ) -> impl std::future::Future<Output = io::Result<(usize, SocketAddr, SocketAddr)>> + Send;
    /// An answer from `from` (the host that answered) to `client`.
    fn reply(
        &self,
        data: &[u8],
        from: SocketAddr,
        client: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send;
}

/// A forward's front: a socket whose datagrams all go to one target.
pub(crate) struct Fixed<F> {
    pub(crate) socket: F,
    pub(crate) target: SocketAddr,
}

impl<F: Datagrams> Front for Fixed<F> {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        let (n, client) = self.socket.recv_from(buf).await?;
        Ok((n, client, self.target))
    }
    async fn reply(&self, data: &[u8], _from: SocketAddr, client: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(data, client).await
    }
}

/// One client's mapping: the socket its datagrams leave from, and when it was last used.
struct Mapping<S> {
    socket: Arc<S>,
    last: Mutex<tokio::time::Instant>,
    /// Bytes relayed each way (shared with the dashboard's flow).
    bytes: Arc<FlowBytes>,
}

type Mappings<S> = Arc<Mutex<HashMap<SocketAddr, Arc<Mapping<S>>>>>;

/// Relay the datagrams arriving at `front` through one back socket per client (made by
/// `open`: endpoint-independent, "full cone", every target of a client shares it), and
/// the answers back to the client from the host that answered.
pub(crate) async fn relay_udp<F, S, O, Fut>(front: Arc<F>, flows: Flows, open: O)
where
    F: Front,
    S: Datagrams,
    O: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<S>>,
{
    let mappings: Mappings<S> = Arc::default();
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, client, target)) = front.recv(&mut buf).await else { return };
        let existing = mappings.lock().unwrap_or_else(PoisonError::into_inner).get(&client).cloned();
        let mapping = match existing {
            Some(m) => m,
            None => {
                if mappings.lock().unwrap_or_else(PoisonError::into_inner).len() >= MAX_UDP_MAPPINGS {
                    tracing::debug!(%client, "UDP relay: mapping table full, datagram dropped");
                    continue;
                }
                let socket = match open(target).await {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::debug!(%client, error = %e, "UDP relay: no socket for a mapping");
                        continue;
                    }
                };
                let bytes = flows.open("udp", client, target);
                let m = Arc::new(Mapping { socket, last: Mutex::new(tokio::time::Instant::now()), bytes });
                mappings.lock().unwrap_or_else(PoisonError::into_inner).insert(client, Arc::clone(&m));
                let back =
                    answers(Arc::clone(&m), Arc::clone(&front), client, target, Arc::clone(&mappings), flows.clone());
                tokio::spawn(back);
                m
            }
        };
        *mapping.last.lock().unwrap_or_else(PoisonError::into_inner) = tokio::time::Instant::now();
        match mapping.socket.send_to(&buf[..n], target).await {
            Ok(_) => {
                mapping.bytes.up.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%client, %target, error = %e, "UDP relay: send failed"),
        }
    }
}

/// The answers to one mapping, back to its client; ends the mapping when idle.
async fn answers<F: Front, S: Datagrams>(
    m: Arc<Mapping<S>>,
    front: Arc<F>,
    client: SocketAddr,
    target: SocketAddr,
    mappings: Mappings<S>,
    flows: Flows,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let idle_left = {
            let last = *m.last.lock().unwrap_or_else(PoisonError::into_inner);
            (last + UDP_IDLE).saturating_duration_since(tokio::time::Instant::now())
        };
        if idle_left.is_zero() {
            break;
        }
        match tokio::time::timeout(idle_left, m.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                *m.last.lock().unwrap_or_else(PoisonError::into_inner) = tokio::time::Instant::now();
                m.bytes.down.fetch_add(n as u64, Ordering::Relaxed);
                // An IPv4 answer on a dual-stack socket arrives as ::ffff:a.b.c.d.
                let from = match from {
                    SocketAddr::V6(v6) if client.is_ipv4() => match v6.ip().to_ipv4_mapped() {
                        Some(v4) => SocketAddr::from((v4, v6.port())),
                        None => continue,
                    },
                    other => other,
                };
                let _ = front.reply(&buf[..n], from, client).await;
            }
            Ok(Err(_)) => break,
            Err(_) => {} // re-check the idle time: the client may have sent meanwhile
        }
    }
    mappings.lock().unwrap_or_else(PoisonError::into_inner).remove(&client);
    flows.close(client, target);
}

/// A socket of `target`'s family bound to the unspecified address and any port.
pub(crate) fn any_for(target: SocketAddr) -> SocketAddr {
    if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal")
}

async fn inbound_udp(front: tunstack::tokio::UdpSocket, target: SocketAddr, flows: Flows) {
    let front = Arc::new(Fixed { socket: front, target });
    relay_udp(front, flows, |t| tokio::net::UdpSocket::bind(any_for(t))).await
}

async fn outbound_udp(front: tokio::net::UdpSocket, rt: RuntimeHandle, target: SocketAddr, flows: Flows) {
    let front = Arc::new(Fixed { socket: front, target });
    relay_udp(front, flows, move |t| {
        let rt = rt.clone();
        async move { tunstack::tokio::UdpSocket::bind(&rt, any_for(t)) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs_parse_and_print() {
        let i: Inbound = "tcp:8080=10.0.0.1:80".parse().unwrap();
        assert_eq!(i, Inbound { proto: Proto::Tcp, port: 8080, target: "10.0.0.1:80".parse().unwrap() });
        assert_eq!(i.to_string(), "tcp:8080=10.0.0.1:80");
        let o: Outbound = "udp:[::1]:5353=[fd00::1]:53".parse().unwrap();
        assert_eq!(o.listen, "[::1]:5353".parse().unwrap());
        assert_eq!(o.to_string(), "udp:[::1]:5353=[fd00::1]:53");
        for bad in ["tcp8080=10.0.0.1:80", "sctp:1=10.0.0.1:1", "tcp:x=10.0.0.1:1", "tcp:1=10.0.0.1", "tcp:1"] {
            assert!(bad.parse::<Inbound>().is_err(), "{bad}");
        }
        assert!("tcp:127.0.0.1=10.0.0.1:1".parse::<Outbound>().is_err());
    }
}
