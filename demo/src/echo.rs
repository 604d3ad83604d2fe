//! Echo service (RFC 862) over TCP and UDP on the same port.
//!
//! TCP: every connection gets its own thread that reads into a fixed buffer and writes
//! back what it read until the peer closes its side; then we close ours. UDP: each
//! datagram is sent back whole to its sender, so datagram boundaries are kept.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tunstack::net::{TcpListener, TcpStream, UdpSocket};
use tunstack::runtime::RuntimeHandle;

use crate::server::{accept_loop, spawn_named, too_many_errors};

/// Bytes read (and then written back) at a time on one TCP connection.
pub const TCP_BUFFER: usize = 16 * 1024;

/// Largest UDP payload: 65535 minus the 8-byte UDP header (RFC 768).
const UDP_BUFFER: usize = 65535 - 8;

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A running echo server. Its threads run until the runtime goes away; dropping this
/// value does not stop them.
#[derive(Debug)]
pub struct EchoServer {
    tcp: Vec<SocketAddr>,
    udp: Vec<SocketAddr>,
}

impl EchoServer {
    /// Bind a TCP listener and a UDP socket on `port` of every address in `addrs` and
    /// start serving. Port 0 lets the stack choose (per socket).
    pub fn start(rt: &RuntimeHandle, addrs: &[IpAddr], port: u16) -> io::Result<EchoServer> {
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on"));
        }
        // Bind everything first so that a bind error is reported before any thread starts.
        let mut listeners = Vec::new();
        let mut sockets = Vec::new();
        for &ip in addrs {
            let addr = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(rt, addr).map_err(|e| context(e, "TCP", addr))?;
            let udp = UdpSocket::bind(rt, addr).map_err(|e| context(e, "UDP", addr))?;
            listeners.push(listener);
            sockets.push(udp);
        }
        let mut server = EchoServer { tcp: Vec::new(), udp: Vec::new() };
        let active = Arc::new(AtomicUsize::new(0));
        for listener in listeners {
            let local = listener.local_addr()?;
            server.tcp.push(local);
            let active = active.clone();
            spawn_named(format!("echo-tcp-{local}"), move || accept_loop("echo", listener, active, echo_tcp))?;
        }
        for udp in sockets {
            let local = udp.local_addr()?;
            server.udp.push(local);
            spawn_named(format!("echo-udp-{local}"), move || echo_udp(udp))?;
        }
        tracing::info!(tcp = ?server.tcp, udp = ?server.udp, "echo server listening");
        Ok(server)
    }

    /// Addresses the TCP listeners are bound to.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Addresses the UDP sockets are bound to.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }
}

fn context(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("binding {proto} {addr}: {e}"))
}

/// Echo one TCP connection until the peer half-closes, then close our side.
fn echo_tcp(mut stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = stream.set_read_timeout(Some(IDLE_TIMEOUT)) {
        tracing::debug!(%peer, error = %e, "set_read_timeout failed");
    }
    let mut buf = vec![0u8; TCP_BUFFER];
    let mut total: u64 = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "echo read failed");
                return;
            }
        };
        if let Err(e) = stream.write_all(&buf[..n]) {
            tracing::debug!(%peer, error = %e, "echo write failed");
            return;
        }
        total += n as u64;
    }
    tracing::debug!(%peer, bytes = total, "peer closed, closing");
    // Our FIN follows the echoed data; dropping the stream then completes the close.
    let _ = stream.shutdown(Shutdown::Write);
}

/// Send every datagram back to where it came from.
fn echo_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut errors = 0;
    loop {
        let result = socket.recv_from(&mut buf).and_then(|(n, from)| {
            tracing::trace!(%from, len = n, "udp echo");
            socket.send_to(&buf[..n], from).map(|_| ())
        });
        match result {
            Ok(()) => errors = 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A full transmit queue or an ICMP error from a previous peer should not
                // stop the service; only a socket that keeps failing does.
                errors += 1;
                tracing::debug!(error = %e, "udp echo error");
                if too_many_errors(errors) {
                    tracing::info!(error = %e, "udp echo stopped");
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
