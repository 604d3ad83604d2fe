//! The smoltcp baseline: the same services as [`super::blocking`], written the way a
//! smoltcp application is: one thread, smoltcp's own `phy::TunTapInterface`
//! (Medium::Ip) on the TUN device the harness created, an `Interface` and a
//! `SocketSet`, and a poll loop (`iface.poll`, serve the sockets, `phy::wait` until the
//! device is readable or `poll_delay` passes).
//!
//! smoltcp has no accept queue: a listening socket *becomes* the connection. Each port
//! therefore keeps a pool of listening sockets, refilled after every poll; a socket
//! that left LISTEN is handed to its service. Buffers are allocated per socket up front
//! (`SocketBuffer::new(vec![0; n])`): the bulk, echo and HTTP sockets get the same size
//! tunstack uses (`--buffer`, default tunstack's `Config::default()`), the
//! connection-rate and idle-connection sockets 4 KiB each (a real smoltcp server with
//! 10k sockets could not afford more). Congestion control: CUBIC
//! (feature `socket-tcp-cubic`). Everything else is smoltcp's default, including its
//! 10 ms delayed ACK.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, Medium, TunTapInterface};
use smoltcp::socket::tcp::{CongestionControl, Socket, SocketBuffer, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use super::{control_loop, Control, LenRequest, ServeArgs};
use crate::proto::*;

/// Buffer of the connection-rate and idle sockets.
const SMALL_BUFFER: usize = 4096;
/// Longest `phy::wait`, so that a `release` from the control thread is seen soon.
const MAX_WAIT: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Sink,
    Source,
    Echo,
    Rr,
    Http,
    Hold,
}

impl Service {
    const ALL: [Service; 6] =
        [Service::Sink, Service::Source, Service::Echo, Service::Rr, Service::Http, Service::Hold];

    fn port(self) -> u16 {
        match self {
            Service::Sink => SINK_PORT,
            Service::Source => SOURCE_PORT,
            Service::Echo => ECHO_PORT,
            Service::Rr => RR_PORT,
            Service::Http => HTTP_PORT,
            Service::Hold => HOLD_PORT,
        }
    }

    /// Listening sockets kept ready on the port.
    fn pool(self) -> usize {
        match self {
            Service::Sink | Service::Source | Service::Echo => 4,
            Service::Rr | Service::Http | Service::Hold => 128,
        }
    }

    fn interactive(self) -> bool {
        matches!(self, Service::Echo | Service::Rr | Service::Http)
    }
}

/// Per-connection state of the service it belongs to.
enum Conn {
    Sink {
        total: u64,
        answered: bool,
    },
    Source {
        req: LenRequest,
        left: Option<u64>,
        offset: u64,
    },
    Echo,
    Rr {
        got: usize,
        answered: bool,
    },
    Http {
        buf: Vec<u8>,
        out: Vec<u8>,
        sent: usize,
        /// A request asked to close: close once `out` is sent.
        closing: bool,
    },
    /// A released idle connection, closing.
    Closing,
}

struct Server {
    sockets: SocketSet<'static>,
    listening: Vec<(Service, SocketHandle)>,
    conns: HashMap<SocketHandle, Conn>,
    held: Vec<SocketHandle>,
    big_buffer: usize,
    http_response: Vec<u8>,
    http_close_response: Vec<u8>,
    scratch: Vec<u8>,
    source_chunk: Vec<u8>,
}

pub fn serve(args: &ServeArgs) -> io::Result<()> {
    let device = TunTapInterface::new(&args.dev, Medium::Ip)?;
    let fd = device.as_raw_fd();
    // `bench paths`: the runtime's link model on both directions of the device.
    match args.path.impairment() {
        Some(imp) => {
            let device = crate::paths::smol::ImpairedDevice::new(device, imp)?;
            serve_on(args, device, fd, |d, now| d.due_in(now))
        }
        None => serve_on(args, device, fd, |_, _| None),
    }
}

/// The poll loop on `device` (readable through `fd`); `held` says when packets the
/// device holds back are due.
fn serve_on<D: Device>(
    args: &ServeArgs,
    mut device: D,
    fd: std::os::fd::RawFd,
    held: impl Fn(&D, Instant) -> Option<std::time::Duration>,
) -> io::Result<()> {
    let mtu = device.capabilities().max_transmission_unit;
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed();
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(args.addr), TUN_PREFIX));
    });
    let _ = args.host; // on-link: 10.0.0.0/24 needs no route
    let big_buffer = args.buffer.unwrap_or(tunstack::Config::default().tcp_rx_buffer);
    let mut server = Server {
        sockets: SocketSet::new(Vec::new()),
        listening: Vec::new(),
        conns: HashMap::new(),
        held: Vec::new(),
        big_buffer,
        http_response: baseline_http_response(false),
        http_close_response: baseline_http_response(true),
        scratch: vec![0; 64 * 1024],
        source_chunk: {
            let mut v = vec![0; super::CHUNK];
            fill_pattern(&mut v, 0);
            v
        },
    };
    server.refill();
    eprintln!("smoltcp server: {} mtu {mtu}, buffer {big_buffer}", args.dev);

    let ctl = Arc::new(Control::default());
    let release = Arc::new(AtomicBool::new(false));
    {
        let ctl = ctl.clone();
        let release = release.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control_loop(ctl, move || release.store(true, Ordering::Release), || None))?;
    }

    loop {
        let now = Instant::now();
        iface.poll(now, &mut device, &mut server.sockets);
        let mut progress = server.refill();
        progress |= server.serve_all();
        if release.swap(false, Ordering::AcqRel) {
            server.release();
            progress = true;
        }
        ctl.held.store(server.held.len(), Ordering::Release);
        if progress {
            // What the services queued goes out now, without waiting for the device.
            iface.poll(Instant::now(), &mut device, &mut server.sockets);
            server.serve_all();
        }
        let mut delay = iface.poll_delay(Instant::now(), &server.sockets).map_or(MAX_WAIT, |d| d.min(MAX_WAIT));
        if let Some(h) = held(&device, Instant::now()) {
            delay = delay.min(Duration::from_micros(h.as_micros() as u64));
        }
        phy::wait(fd, Some(delay))?;
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)
}

impl Server {
    fn new_socket(&self, service: Service) -> Socket<'static> {
        let size = match service {
            Service::Rr | Service::Hold => SMALL_BUFFER,
            _ => self.big_buffer,
        };
        let mut s = Socket::new(SocketBuffer::new(vec![0; size]), SocketBuffer::new(vec![0; size]));
        s.set_congestion_control(CongestionControl::Cubic);
        if service.interactive() {
            s.set_nagle_enabled(false);
        }
        s
    }

    /// Hand sockets that left LISTEN to their services, and top every pool up.
    fn refill(&mut self) -> bool {
        let mut changed = false;
        let mut i = 0;
        while i < self.listening.len() {
            let (service, h) = self.listening[i];
            let state = self.sockets.get::<Socket>(h).state();
            if state == State::Listen {
                i += 1;
                continue;
            }
            changed = true;
            self.listening.swap_remove(i);
            let conn = match service {
                Service::Sink => Conn::Sink { total: 0, answered: false },
                Service::Source => Conn::Source { req: LenRequest::default(), left: None, offset: 0 },
                Service::Echo => Conn::Echo,
                Service::Rr => Conn::Rr { got: 0, answered: false },
                Service::Http => Conn::Http { buf: Vec::new(), out: Vec::new(), sent: 0, closing: false },
                Service::Hold => {
                    self.held.push(h);
                    continue;
                }
            };
            self.conns.insert(h, conn);
        }
        for service in Service::ALL {
            let have = self.listening.iter().filter(|(s, _)| *s == service).count();
            for _ in have..service.pool() {
                let mut s = self.new_socket(service);
                if s.listen(service.port()).is_ok() {
                    let h = self.sockets.add(s);
                    self.listening.push((service, h));
                }
            }
        }
        changed
    }

    /// Close every held connection.
    fn release(&mut self) {
        for h in std::mem::take(&mut self.held) {
            self.sockets.get_mut::<Socket>(h).close();
            self.conns.insert(h, Conn::Closing);
        }
    }

    /// Run every active connection's service; remove the finished ones. Returns whether
    /// anything was read or queued.
    fn serve_all(&mut self) -> bool {
        let mut progress = false;
        let mut done = Vec::new();
        for (&h, conn) in self.conns.iter_mut() {
            let s = self.sockets.get_mut::<Socket>(h);
            let http = [&self.http_response[..], &self.http_close_response[..]];
            progress |= step(s, conn, &mut self.scratch, &self.source_chunk, http);
            if matches!(s.state(), State::Closed | State::TimeWait) {
                done.push(h);
            }
        }
        for h in done {
            self.conns.remove(&h);
            self.sockets.remove(h);
        }
        progress
    }
}

/// One service step on one socket.
/// `http`: the keep-alive and the `Connection: close` response.
fn step(s: &mut Socket, conn: &mut Conn, scratch: &mut [u8], chunk: &[u8], http: [&[u8]; 2]) -> bool {
    let mut progress = false;
    match conn {
        Conn::Sink { total, answered } => {
            // Into the application's buffer, as `read` does on the other systems.
            while let Ok(n) = s.recv_slice(scratch) {
                if n == 0 {
                    break;
                }
                *total += n as u64;
                progress = true;
            }
            if !*answered
                && !s.may_recv()
                && s.state() == State::CloseWait
                && s.send_slice(&total.to_le_bytes()) == Ok(8)
            {
                *answered = true;
                s.close();
                progress = true;
            }
        }
        Conn::Source { req, left, offset } => {
            if left.is_none() {
                if let Ok((_, Some(len))) = s.recv(|b| {
                    let (used, len) = req.feed(b);
                    (used, (used, len))
                }) {
                    *left = Some(len);
                }
            }
            if let Some(l) = left {
                while *l > 0 && s.can_send() {
                    let sent = s
                        .send(|b| {
                            let n = b.len().min(*l as usize);
                            let start = (*offset % chunk.len() as u64) as usize;
                            let n = n.min(chunk.len() - start);
                            b[..n].copy_from_slice(&chunk[start..start + n]);
                            (n, n)
                        })
                        .unwrap_or(0);
                    if sent == 0 {
                        break;
                    }
                    *l -= sent as u64;
                    *offset += sent as u64;
                    progress = true;
                }
                if *l == 0 && s.may_send() {
                    s.close();
                    progress = true;
                }
            }
            // Discard anything else the client sends.
            while let Ok(n) = s.recv(|b| (b.len(), b.len())) {
                if n == 0 {
                    break;
                }
            }
        }
        Conn::Echo => {
            loop {
                let room = s.send_capacity() - s.send_queue();
                if room == 0 || !s.can_recv() {
                    break;
                }
                let want = room.min(scratch.len());
                let Ok(n) = s.recv_slice(&mut scratch[..want]) else { break };
                if n == 0 {
                    break;
                }
                let _ = s.send_slice(&scratch[..n]);
                progress = true;
            }
            if !s.may_recv() && s.state() == State::CloseWait && s.send_queue() == 0 {
                s.close();
                progress = true;
            }
        }
        Conn::Rr { got, answered } => {
            while let Ok(n) = s.recv(|b| (b.len(), b.len())) {
                if n == 0 {
                    break;
                }
                *got += n;
                progress = true;
            }
            if !*answered && *got >= RR_REQUEST && s.send_slice(&[0x5a; RR_RESPONSE]) == Ok(RR_RESPONSE) {
                *answered = true;
                progress = true;
            }
            if s.state() == State::CloseWait {
                s.close();
                progress = true;
            }
        }
        Conn::Http { buf, out, sent, closing } => {
            while let Ok(n) = s.recv(|b| {
                buf.extend_from_slice(b);
                (b.len(), b.len())
            }) {
                if n == 0 {
                    break;
                }
                progress = true;
            }
            if !*closing {
                let r = split_requests(buf);
                if r.count > 0 {
                    buf.drain(..r.consumed);
                    for i in 0..r.count {
                        out.extend_from_slice(http[usize::from(r.close && i + 1 == r.count)]);
                    }
                    *closing = r.close;
                }
            }
            if *sent < out.len() {
                if let Ok(n) = s.send_slice(&out[*sent..]) {
                    *sent += n;
                    progress |= n > 0;
                }
                if *sent == out.len() {
                    out.clear();
                    *sent = 0;
                }
            }
            if buf.len() > 64 * 1024 {
                s.abort();
            } else if out.is_empty() && (*closing || s.state() == State::CloseWait) && s.may_send() {
                // FIN after the last response (smoltcp sends it once the queue is empty).
                s.close();
                progress = true;
            }
        }
        Conn::Closing => {
            if s.state() == State::CloseWait {
                s.close();
            }
        }
    }
    progress
}
