//! The services on blocking, `std::net`-shaped sockets: the same code serves on
//! tunstack (`tunstack::net`) and on Linux (`std::net`). A thread per connection for
//! the bulk and echo services, a fixed pool of accepting workers for the
//! connection-rate service (no thread start per connection), one acceptor that keeps
//! idle connections in a vector. HTTP: the demo's hyper server (`HttpServer::start`,
//! its own thread) on tunstack, the fixed baseline response on Linux.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use tunstack::runtime::{Runtime, RuntimeConfig};

use super::{control_loop, Control, ServeArgs, CHUNK};
use crate::proto::*;

/// Limit on one blocking read or write of a serving thread.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Accepting workers of the connection-rate service.
const RR_WORKERS: usize = 8;
/// Accept errors in a row after which an accept loop gives up.
const MAX_ACCEPT_ERRORS: u32 = 100;

/// A connected stream of either stack.
pub trait Stream: Read + Write + Send + 'static {
    fn shutdown_write(&self) -> io::Result<()>;
    fn set_nodelay(&self) -> io::Result<()>;
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
}

/// A listener of either stack; shared by several accepting threads.
pub trait Listener: Send + Sync + 'static {
    type S: Stream;
    fn accept(&self) -> io::Result<Self::S>;
}

impl Stream for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
    fn set_nodelay(&self) -> io::Result<()> {
        std::net::TcpStream::set_nodelay(self, true)
    }
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Listener for std::net::TcpListener {
    type S = std::net::TcpStream;
    fn accept(&self) -> io::Result<Self::S> {
        std::net::TcpListener::accept(self).map(|(s, _)| s)
    }
}

impl Stream for tunstack::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
    fn set_nodelay(&self) -> io::Result<()> {
        tunstack::net::TcpStream::set_nodelay(self, true)
    }
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Listener for tunstack::net::TcpListener {
    type S = tunstack::net::TcpStream;
    fn accept(&self) -> io::Result<Self::S> {
        tunstack::net::TcpListener::accept(self).map(|(s, _)| s)
    }
}

/// The runtime configuration of both tunstack servers: the TUN device (IPv4 only: no
/// router solicitations or MLD reports on the link), the address and the buffers.
pub fn runtime_config(args: &ServeArgs) -> io::Result<RuntimeConfig> {
    let mut stack = tunstack::Config::default().with(|c| c.addrs = vec![IpAddr::V4(args.addr)]);
    if let Some(b) = args.buffer {
        stack.tcp_rx_buffer = b;
        stack.tcp_tx_buffer = b;
    }
    if let Some(cc) = args.path.tunstack_congestion()? {
        stack.congestion = cc;
    }
    Ok(RuntimeConfig::default().with(|c| {
        c.tun_name = args.dev.clone();
        c.mtu = args.mtu;
        c.host_addrs =
            vec![tunstack::runtime::IpNet::new(IpAddr::V4(args.host), TUN_PREFIX).expect("prefix fits IPv4")];
        c.stack = stack;
        c.impair = args.path.impairment();
        c.pcap = args.path.pcap.clone();
        c.offload = args.offload;
        c.queues = args.queues;
    }))
}

/// tunstack on the blocking runtime (a driver thread): create the TUN device and serve.
pub fn serve_tunstack(args: &ServeArgs) -> io::Result<()> {
    let rt = Runtime::new(runtime_config(args)?)?;
    let h = rt.handle();
    let bind = |port: u16, backlog: usize| {
        tunstack::net::TcpListener::bind_with_backlog(&h, SocketAddr::new(IpAddr::V4(args.addr), port), backlog)
    };
    let ctl = Arc::new(Control::for_tunstack(&h));
    let held = start_services(bind, &ctl)?;
    // The demo's own HTTP server on its own thread (a current-thread tokio runtime on top
    // of this runtime's driver thread): `HttpServer::start`. With `--queues` N > 1 there
    // are N driver threads, and HTTP still runs on that one thread.
    demo::HttpServer::start(&h, &[IpAddr::V4(args.addr)], HTTP_PORT)?;
    control_loop(ctl.clone(), release_fn(held, ctl), move || Some(h.stats().tcp_retransmits))
}

/// Segments retransmitted by the kernel's TCP in the calling process's namespace
/// (`ip netns exec` put the server there).
pub fn kernel_retransmits() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/self/net/snmp").ok()?;
    crate::stats::parse_snmp_tcp(&snmp, "RetransSegs")
}

/// Linux: std::net sockets bound to `--addr`.
pub fn serve_linux(args: &ServeArgs) -> io::Result<()> {
    let addr = args.addr;
    let bind = |port: u16, backlog: usize| {
        let l = bind_std(SocketAddr::new(IpAddr::V4(addr), port), backlog)?;
        args.path.apply_linux(std::os::fd::AsRawFd::as_raw_fd(&l))?;
        Ok(l)
    };
    let ctl = Arc::new(Control::default());
    let held = start_services(bind, &ctl)?;
    let http = Arc::new(bind_std(SocketAddr::new(IpAddr::V4(addr), HTTP_PORT), 1024)?);
    let keep: Arc<[u8]> = baseline_http_response(false).into();
    let close: Arc<[u8]> = baseline_http_response(true).into();
    spawn_accept_loop("http", http, move |s| http_conn(s, &keep, &close))?;
    control_loop(ctl.clone(), release_fn(held, ctl), kernel_retransmits)
}

/// A std listener with an explicit backlog (std's `bind` uses 128).
pub fn bind_std(addr: SocketAddr, backlog: usize) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: socket/setsockopt/bind/listen on a descriptor we own; the sockaddr is a
    // local sockaddr_in of the right size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one as *const _ as *const libc::c_void, 4);
        let SocketAddr::V4(v4) = addr else { return Err(io::ErrorKind::Unsupported.into()) };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
            sin_zero: [0; 8],
        };
        if libc::bind(fd, &sin as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sin) as u32) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::listen(fd, backlog as libc::c_int) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::net::TcpListener::from(owned))
    }
}

/// Bind every service and start its threads; returns the vector of held connections.
fn start_services<L: Listener>(
    bind: impl Fn(u16, usize) -> io::Result<L>,
    ctl: &Arc<Control>,
) -> io::Result<Arc<Mutex<Vec<L::S>>>> {
    spawn_accept_loop("sink", Arc::new(bind(SINK_PORT, 128)?), sink_conn)?;
    spawn_accept_loop("source", Arc::new(bind(SOURCE_PORT, 128)?), source_conn)?;
    spawn_accept_loop("echo", Arc::new(bind(ECHO_PORT, 128)?), echo_conn)?;
    let rr = Arc::new(bind(RR_PORT, 1024)?);
    for i in 0..RR_WORKERS {
        let rr = rr.clone();
        thread::Builder::new().name(format!("rr-{i}")).spawn(move || {
            accept_each(&*rr, |s| {
                let _ = rr_conn(s);
            })
        })?;
    }
    let hold = Arc::new(bind(HOLD_PORT, 4096)?);
    let held: Arc<Mutex<Vec<L::S>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        let ctl = ctl.clone();
        thread::Builder::new().name("hold".into()).spawn(move || {
            accept_each(&*hold, |s| {
                let mut v = held.lock().unwrap_or_else(PoisonError::into_inner);
                v.push(s);
                ctl.held.store(v.len(), Ordering::Release);
            })
        })?;
    }
    Ok(held)
}

/// Close every held connection (graceful close, as dropping a stream does).
fn release_fn<S: Send + 'static>(held: Arc<Mutex<Vec<S>>>, ctl: Arc<Control>) -> impl Fn() {
    move || {
        let mut v = held.lock().unwrap_or_else(PoisonError::into_inner);
        let streams = std::mem::take(&mut *v);
        ctl.held.store(0, Ordering::Release);
        drop(v);
        drop(streams);
    }
}

/// Accept forever (until accept keeps failing), calling `f` on this thread.
fn accept_each<L: Listener>(listener: &L, mut f: impl FnMut(L::S)) {
    let mut errors = 0;
    while errors < MAX_ACCEPT_ERRORS {
        match listener.accept() {
            Ok(s) => {
                errors = 0;
                f(s)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                errors += 1;
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Accept forever, one thread per connection running `serve`.
fn spawn_accept_loop<L: Listener>(
    name: &'static str,
    listener: Arc<L>,
    serve: impl Fn(L::S) -> io::Result<()> + Send + Sync + 'static,
) -> io::Result<()> {
    let serve = Arc::new(serve);
    thread::Builder::new().name(name.into()).spawn(move || {
        accept_each(&*listener, |s| {
            let serve = serve.clone();
            let _ = thread::Builder::new().name(format!("{name}-conn")).spawn(move || {
                let _ = serve(s);
            });
        })
    })?;
    Ok(())
}

/// Read until the client half-closes, answer the byte count, close.
fn sink_conn<S: Stream>(mut s: S) -> io::Result<()> {
    s.set_timeouts(IO_TIMEOUT)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    s.write_all(&total.to_le_bytes())?;
    s.shutdown_write()
}

/// Read the 8-byte length, send that many bytes, close.
fn source_conn<S: Stream>(mut s: S) -> io::Result<()> {
    s.set_timeouts(IO_TIMEOUT)?;
    let mut len = [0u8; 8];
    s.read_exact(&mut len)?;
    let mut left = u64::from_le_bytes(len);
    let mut buf = vec![0u8; CHUNK];
    crate::proto::fill_pattern(&mut buf, 0);
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    s.shutdown_write()?;
    // Wait for the client's close so that nothing is reset under it.
    let _ = s.read(&mut len);
    Ok(())
}

/// Echo until the client closes.
fn echo_conn<S: Stream>(mut s: S) -> io::Result<()> {
    s.set_timeouts(IO_TIMEOUT)?;
    s.set_nodelay()?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return s.shutdown_write(),
            Ok(n) => s.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One request, one response, then wait for the client's close.
fn rr_conn<S: Stream>(mut s: S) -> io::Result<()> {
    s.set_timeouts(IO_TIMEOUT)?;
    s.set_nodelay()?;
    let mut req = [0u8; RR_REQUEST];
    s.read_exact(&mut req)?;
    s.write_all(&[0x5a; RR_RESPONSE])?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest)? > 0 {}
    Ok(())
}

/// The baseline HTTP responder: one fixed response per request head; after a request
/// with `Connection: close`, its response (which says so) and the end of the connection.
fn http_conn<S: Stream>(mut s: S, keep: &[u8], close: &[u8]) -> io::Result<()> {
    s.set_timeouts(IO_TIMEOUT)?;
    s.set_nodelay()?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    let mut out = Vec::new();
    loop {
        if have == buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let r = split_requests(&buf[..have]);
        if r.count > 0 {
            out.clear();
            for i in 0..r.count {
                out.extend_from_slice(if r.close && i + 1 == r.count { close } else { keep });
            }
            s.write_all(&out)?;
            if r.close {
                return s.shutdown_write();
            }
            buf.copy_within(r.consumed..have, 0);
            have -= r.consumed;
        }
    }
}
