//! `demo gateway`: tunstack as a network namespace's default route.
//!
//! ```text
//!   client namespace                      the gateway's namespace
//!   +--------------------------+          +-------------------------------------+
//!   | apps -> default route    |   TUN    | tunstack (transparent sockets)      |
//!   |         via the device --+--------->|  policy: filter, knocking, scans    |
//!   | 10.0.0.1, fd00::1        |          |  TCP: copy_bidirectional  --------->+--> host sockets,
//!   +--------------------------+          |  UDP: one mapping per client ------>+    the gateway's routes
//!                                         |  ICMP echo: answered                |
//!                                         |  dashboard: http://10.0.0.2/        |
//!                                         +-------------------------------------+
//! ```
//!
//! The gateway creates the TUN device inside the client's namespace, points that
//! namespace's default routes (IPv4 and IPv6) into it, and terminates every TCP and
//! UDP flow the client sends with tunstack's transparent listener and UDP socket. Flows
//! the policy allows are relayed from the gateway's own namespace with ordinary host
//! sockets: a TCP connection to the original destination, joined with
//! `copy_bidirectional`; for UDP, one host socket per client address and port
//! (endpoint-independent, "full cone": any host may answer through it), answered from
//! the address the client sent to, dropped after [`crate::forward::UDP_IDLE`] without
//! traffic. The stack's own addresses (`--addr`, by default 10.0.0.2 and fd00::2) are
//! not relayed: they serve the dashboard and answer pings.
//!
//! The stack completes the client's handshake before the gateway connects to the
//! target (as tun2socks and slirp do): a target that refuses or cannot be reached makes
//! the client's connection reset right after it opened, not refused, and a port scan
//! through the gateway finds every port open. Such refusals still count as probes for
//! the scan detector (`RuntimeHandle::report_probe`). The policy's own `reject` and
//! `drop` act before the handshake and behave exactly as written. Pings to any address
//! are answered by the stack itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tunstack::policy::scan::ProbeKind;
use tunstack::runtime::RuntimeHandle;
use tunstack::tokio::{TcpListener, UdpSocket};

use crate::dashboard::Flows;
use crate::forward::{any_for, relay, relay_udp, Front};

/// Connections waiting to be relayed.
const BACKLOG: usize = 1024;

/// Relay every TCP connection and UDP flow that reaches the stack's transparent
/// sockets (tasks on the current tokio runtime).
pub fn start(rt: &RuntimeHandle, flows: &Flows) -> io::Result<()> {
    let tcp = TcpListener::bind_transparent(rt, BACKLOG)?;
    let udp = UdpSocket::bind_transparent(rt)?;
    tokio::spawn(relay_tcp(rt.clone(), tcp, flows.clone()));
    let front = Arc::new(Transparent(udp));
    tokio::spawn(relay_udp(front, flows.clone(), |t| tokio::net::UdpSocket::bind(any_for(t))));
    Ok(())
}

async fn relay_tcp(rt: RuntimeHandle, listener: TcpListener, flows: Flows) {
    loop {
        let Ok((inside, client)) = listener.accept().await else { return };
        let Ok(target) = inside.local_addr() else { continue };
        let flows = flows.clone();
        let rt = rt.clone();
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(target).await {
                Ok(outside) => relay(inside, outside, flows, client, target).await,
                Err(e) => {
                    // The handshake with the client is done already; a reset is the
                    // closest to what the target said (refused, unreachable, timed out).
                    tracing::debug!(%client, %target, error = %e, "gateway: target unreachable");
                    let _ = inside.abort();
                    // Nothing answered there: a probe, as far as scan detection goes.
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        rt.report_probe(client.ip(), target.port(), ProbeKind::Syn);
                    }
                }
            }
        });
    }
}

/// The transparent UDP socket as a relay's front: each datagram's target is the
/// address its client sent to; answers leave from the host that answered.
struct Transparent(UdpSocket);

impl Front for Transparent {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        self.0.recv_msg(buf).await
    }
    async fn reply(&self, data: &[u8], from: SocketAddr, client: SocketAddr) -> io::Result<usize> {
        self.0.send_msg(data, from, client).await
    }
}
