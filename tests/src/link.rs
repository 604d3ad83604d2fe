//! A deterministic in-memory link between two TCP endpoints, driven by a virtual clock.
//!
//! No device, no threads, no wall clock: two [`Endpoint`]s (our [`tunstack::Stack`] or a
//! smoltcp 0.14 interface) exchange IP packets through the core's link model
//! ([`tunstack::link`]) each way: by default an impairment with only a fixed one-way
//! delay, i.e. a lossless FIFO. The pump ([`Link::run_until`]) moves packets, runs due timers, lets the
//! test's "application" act, and when nothing is left to do at the current instant jumps
//! the clock to the next event: the earliest packet arrival or endpoint deadline. It is
//! bounded in virtual time and in steps, and fails with a description instead of hanging.
//!
//! Every packet that crosses the link is parsed with `etherparse` (an implementation
//! independent of both stacks) and its checksums verified; a test may drop chosen packets
//! with a hook. The log of every packet is kept for assertions (retransmissions...).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::TcpOptionElement;
use sha2::{Digest, Sha256};
use smoltcp::iface::{Config as SmolIfaceConfig, Interface, SocketHandle as SmolHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp::{self as smol_tcp, State as SmolState};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use tunstack::link::{Fate, Impairer, Impairment};
use tunstack::{AcceptError, Config, Instant, ListenerHandle, Protocol, Stack, TcpHandle};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

// ============================================================================ endpoints

/// The state of the one connection an endpoint carries, as the application sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// No connection yet (listening, or nothing asked).
    None,
    /// An RFC 9293 state name ("ESTABLISHED", "TIME-WAIT"...).
    Open(&'static str),
    /// The connection existed and has left the socket table (CLOSED).
    Gone,
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnState::None => f.write_str("-"),
            ConnState::Open(s) => f.write_str(s),
            ConnState::Gone => f.write_str("GONE"),
        }
    }
}

/// One side of the link: a network stack plus a tiny application holding at most one
/// TCP connection. `send`/`recv` follow std's conventions: `WouldBlock` when nothing can
/// be done now, `recv` returning `Ok(0)` at end of stream.
pub trait Endpoint {
    fn name(&self) -> String;
    fn addr(&self) -> IpAddr;

    // ---- the network side, used by the pump
    fn input(&mut self, now: Instant, packet: &[u8]);
    fn output(&mut self, now: Instant, out: &mut Vec<Vec<u8>>);
    /// When this endpoint next wants `on_timeout`.
    fn deadline(&mut self, now: Instant) -> Option<Instant>;
    fn on_timeout(&mut self, now: Instant);

    // ---- the application side, used by tests
    fn listen(&mut self, port: u16);
    fn connect(&mut self, now: Instant, remote: SocketAddr);
    /// `Ok(true)` once the connection is established (a server accepts it here).
    fn poll_established(&mut self) -> io::Result<bool>;
    fn send(&mut self, data: &[u8]) -> io::Result<usize>;
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Graceful close: FIN after queued data; the endpoint finishes the close alone.
    fn close(&mut self);
    fn conn_state(&mut self) -> ConnState;

    // ---- diagnostics, used by the simulator (`crate::sim`)
    /// Packets this endpoint has dropped as bad input so far, when it counts them.
    fn drops(&self) -> Option<u64> {
        None
    }
    /// One line about the connection's internals (window, timers...) for failure reports.
    fn diag(&mut self) -> String {
        String::new()
    }
}

// ---------------------------------------------------------------------------- ours

/// `tunstack::Stack` as an endpoint.
pub struct Ours {
    pub stack: Stack,
    addr: IpAddr,
    listener: Option<ListenerHandle>,
    conn: Option<TcpHandle>,
    /// (local, remote) of the connection, to find it in `sockets()` after `close`.
    ends: Option<(SocketAddr, SocketAddr)>,
    released: bool,
    buf: Vec<u8>,
}

impl Ours {
    /// The configuration the in-memory tests use: defaults, MSL 1 s (TIME-WAIT 2 s).
    pub fn config(addr: IpAddr, seed: u64) -> Config {
        Config::default().with(|c| {
            c.addrs = vec![addr];
            c.seed = seed;
            c.mtu = 1500;
            c.msl = Duration::from_secs(1);
        })
    }

    pub fn new(addr: IpAddr, seed: u64) -> Ours {
        Ours::with_config(Ours::config(addr, seed))
    }

    pub fn with_config(config: Config) -> Ours {
        let addr = config.addrs[0];
        let mtu = config.mtu;
        Ours {
            stack: Stack::new(config),
            addr,
            listener: None,
            conn: None,
            ends: None,
            released: false,
            buf: vec![0; mtu.max(1500)],
        }
    }

    fn conn(&self) -> TcpHandle {
        assert!(!self.released, "the application already closed its handle");
        self.conn.expect("no connection yet")
    }

    fn learn_ends(&mut self, h: TcpHandle) {
        let local = self.stack.local_addr(h).expect("local_addr of a connection");
        let remote = self.stack.peer_addr(h).expect("peer_addr of a connection");
        self.ends = Some((local, remote));
    }
}

impl Endpoint for Ours {
    fn name(&self) -> String {
        format!("tunstack@{}", self.addr)
    }
    fn addr(&self) -> IpAddr {
        self.addr
    }
    fn input(&mut self, now: Instant, packet: &[u8]) {
        self.stack.input(now, packet);
    }
    fn output(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        for _ in 0..100_000 {
            match self.stack.poll_transmit(now, &mut self.buf) {
                Some(n) => out.push(self.buf[..n].to_vec()),
                None => break,
            }
        }
        // Wakeups are for a runtime; drain them so they cannot pile up.
        for _ in 0..100_000 {
            if self.stack.poll_readiness().is_none() {
                break;
            }
        }
    }
    fn deadline(&mut self, _now: Instant) -> Option<Instant> {
        self.stack.poll_timeout()
    }
    fn on_timeout(&mut self, now: Instant) {
        self.stack.handle_timeout(now);
    }
    fn listen(&mut self, port: u16) {
        let h = self.stack.tcp_listen(SocketAddr::new(self.addr, port), 8).expect("tcp_listen");
        self.listener = Some(h);
    }
    fn connect(&mut self, now: Instant, remote: SocketAddr) {
        let h = self.stack.tcp_connect(now, remote, None).expect("tcp_connect");
        self.conn = Some(h);
        self.learn_ends(h);
    }
    fn poll_established(&mut self) -> io::Result<bool> {
        if self.conn.is_none() {
            let l = self.listener.expect("neither listening nor connecting");
            match self.stack.tcp_accept(l) {
                Ok(h) => {
                    self.conn = Some(h);
                    self.learn_ends(h);
                }
                Err(AcceptError::WouldBlock) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.stack.tcp_poll_connect(self.conn())?)
    }
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(self.stack.tcp_send(self.conn(), data)?)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.stack.tcp_recv(self.conn(), buf)?)
    }
    fn close(&mut self) {
        self.stack.close(self.conn()).expect("close");
        self.released = true;
    }
    fn conn_state(&mut self) -> ConnState {
        let Some((local, remote)) = self.ends else { return ConnState::None };
        let row = self
            .stack
            .sockets()
            .into_iter()
            .find(|r| r.protocol == Protocol::Tcp && r.local == local && r.remote == Some(remote));
        match row {
            Some(r) => ConnState::Open(r.state),
            None => ConnState::Gone,
        }
    }
    fn drops(&self) -> Option<u64> {
        Some(self.stack.stats().total_drops())
    }
    fn diag(&mut self) -> String {
        let stats = self.stack.stats();
        let mut s = format!(
            "stack: rx {} tx {} packets, drops {}, retransmits {}",
            stats.rx_packets,
            stats.tx_packets,
            stats.total_drops(),
            stats.tcp_retransmits
        );
        if let (Some(h), false) = (self.conn, self.released) {
            match self.stack.tcp_info(h) {
                Ok(i) => s.push_str(&format!(
                    "; conn {} snd_una={} snd_nxt={} rcv_nxt={} snd_wnd={} rcv_wnd={} cwnd={} ssthresh={} srtt={:?} rto={:?} retransmits={}",
                    i.state, i.snd_una, i.snd_nxt, i.rcv_nxt, i.snd_wnd, i.rcv_wnd, i.cwnd, i.ssthresh, i.srtt, i.rto, i.retransmits
                )),
                Err(e) => s.push_str(&format!("; conn: {e}")),
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------- smoltcp

/// A smoltcp `Device` over two packet queues (Medium::Ip: packets are bare IP).
pub struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

pub struct QueueRxToken(Vec<u8>);
pub struct QueueTxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for QueueRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for QueueTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = QueueRxToken;
    type TxToken<'a> = QueueTxToken<'a>;

    fn receive(&mut self, _timestamp: smoltcp::time::Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((QueueRxToken(packet), QueueTxToken(&mut self.tx)))
    }
    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(QueueTxToken(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

fn smol_now(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.total_micros() as i64)
}

fn smol_state_name(s: SmolState) -> &'static str {
    match s {
        SmolState::Closed => "CLOSED",
        SmolState::Listen => "LISTEN",
        SmolState::SynSent => "SYN-SENT",
        SmolState::SynReceived => "SYN-RECEIVED",
        SmolState::Established => "ESTABLISHED",
        SmolState::FinWait1 => "FIN-WAIT-1",
        SmolState::FinWait2 => "FIN-WAIT-2",
        SmolState::CloseWait => "CLOSE-WAIT",
        SmolState::Closing => "CLOSING",
        SmolState::LastAck => "LAST-ACK",
        SmolState::TimeWait => "TIME-WAIT",
    }
}

/// smoltcp 0.14 (`Interface` + one `tcp::Socket`) as an endpoint. Its TIME-WAIT is a
/// fixed 10 s.
pub struct Smol {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    handle: SmolHandle,
    addr: IpAddr,
    /// Port for `connect`.
    local_port: u16,
    started: bool,
    ever_connected: bool,
}

impl Smol {
    /// Buffers of 64 KiB each way.
    pub fn new(addr: IpAddr, seed: u64) -> Smol {
        Smol::with_buffers(addr, seed, 64 * 1024)
    }

    pub fn with_buffers(addr: IpAddr, seed: u64, buffer: usize) -> Smol {
        let mut device = QueueDevice { rx: VecDeque::new(), tx: VecDeque::new(), mtu: 1500 };
        let mut config = SmolIfaceConfig::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        let prefix = if addr.is_ipv4() { 24 } else { 64 };
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::from(addr), prefix)).expect("one address fits");
        });
        let socket = smol_tcp::Socket::new(
            smol_tcp::SocketBuffer::new(vec![0u8; buffer]),
            smol_tcp::SocketBuffer::new(vec![0u8; buffer]),
        );
        let mut sockets = SocketSet::new(Vec::new());
        let handle = sockets.add(socket);
        Smol {
            iface,
            device,
            sockets,
            handle,
            addr,
            local_port: 49_500 + (seed % 1000) as u16,
            started: false,
            ever_connected: false,
        }
    }

    pub fn socket(&mut self) -> &mut smol_tcp::Socket<'static> {
        self.sockets.get_mut::<smol_tcp::Socket>(self.handle)
    }

    fn poll(&mut self, now: Instant) {
        self.iface.poll(smol_now(now), &mut self.device, &mut self.sockets);
    }
}

impl Endpoint for Smol {
    fn name(&self) -> String {
        format!("smoltcp@{}", self.addr)
    }
    fn addr(&self) -> IpAddr {
        self.addr
    }
    fn input(&mut self, now: Instant, packet: &[u8]) {
        // Processed at once, like `Stack::input`; replies wait in the device's tx queue
        // for `output`.
        self.device.rx.push_back(packet.to_vec());
        self.poll(now);
    }
    fn output(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.poll(now);
        out.extend(self.device.tx.drain(..));
    }
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(smol_now(now), &self.sockets).map(|t| Instant::from_micros(t.total_micros().max(0) as u64))
    }
    fn on_timeout(&mut self, now: Instant) {
        self.poll(now);
    }
    fn listen(&mut self, port: u16) {
        self.socket().listen(port).expect("smoltcp listen");
        self.started = true;
    }
    fn connect(&mut self, now: Instant, remote: SocketAddr) {
        let port = self.local_port;
        let handle = self.handle;
        let socket = self.sockets.get_mut::<smol_tcp::Socket>(handle);
        socket
            .connect(self.iface.context(), (IpAddress::from(remote.ip()), remote.port()), port)
            .expect("smoltcp connect");
        self.started = true;
        self.poll(now);
    }
    fn poll_established(&mut self) -> io::Result<bool> {
        let state = self.socket().state();
        match state {
            SmolState::Listen | SmolState::SynSent | SmolState::SynReceived => Ok(false),
            SmolState::Closed if !self.ever_connected => {
                Err(io::Error::new(ErrorKind::ConnectionRefused, "smoltcp socket closed during the handshake"))
            }
            _ => {
                self.ever_connected = true;
                Ok(true)
            }
        }
    }
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.socket().send_slice(data) {
            Ok(0) if !data.is_empty() => Err(ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(e) => Err(io::Error::new(ErrorKind::NotConnected, format!("smoltcp send: {e}"))),
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.socket().recv_slice(buf) {
            Ok(0) => Err(ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(smol_tcp::RecvError::Finished) => Ok(0),
            Err(e) => Err(io::Error::new(ErrorKind::NotConnected, format!("smoltcp recv: {e}"))),
        }
    }
    fn close(&mut self) {
        self.socket().close();
    }
    fn conn_state(&mut self) -> ConnState {
        let state = self.socket().state();
        if !matches!(state, SmolState::Closed | SmolState::Listen) {
            self.ever_connected = true;
        }
        match state {
            SmolState::Listen => ConnState::None,
            SmolState::Closed if self.ever_connected => ConnState::Gone,
            SmolState::Closed => ConnState::None,
            s => ConnState::Open(smol_state_name(s)),
        }
    }
    fn diag(&mut self) -> String {
        let s = self.socket();
        format!(
            "smoltcp socket {}: send queue {} B, recv queue {} B, may_send {}, may_recv {}",
            smol_state_name(s.state()),
            s.send_queue(),
            s.recv_queue(),
            s.may_send(),
            s.may_recv()
        )
    }
}

// ============================================================================ packets

/// The TCP part of a packet, as etherparse read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub src_port: u16,
    pub dst_port: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub options: Vec<TcpOptionElement>,
    pub payload_len: usize,
}

impl TcpInfo {
    pub fn has(&self, flags: u8) -> bool {
        self.flags & flags == flags
    }
    pub fn is_syn(&self) -> bool {
        self.has(SYN) && !self.has(ACK)
    }
    pub fn is_syn_ack(&self) -> bool {
        self.has(SYN | ACK)
    }
    pub fn is_data(&self) -> bool {
        self.payload_len > 0
    }
}

/// What crossed the link (or was dropped on it: by the hook, or by the link's
/// impairment).
#[derive(Clone, Debug)]
pub struct PacketRecord {
    pub index: usize,
    pub time: Instant,
    pub from: Side,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub len: usize,
    /// `None` for non-TCP packets.
    pub tcp: Option<TcpInfo>,
    pub dropped: bool,
}

impl fmt::Display for PacketRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {:?} {:?} {} -> {}", self.index, self.time, self.from, self.src, self.dst)?;
        if let Some(t) = &self.tcp {
            let mut names = Vec::new();
            for (bit, name) in [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK")] {
                if t.flags & bit != 0 {
                    names.push(name);
                }
            }
            write!(
                f,
                " {}->{} [{}] seq={} ack={} win={} len={}",
                t.src_port,
                t.dst_port,
                names.join("|"),
                t.seq,
                t.ack,
                t.window,
                t.payload_len
            )?;
        } else {
            write!(f, " non-TCP, {} bytes", self.len)?;
        }
        if self.dropped {
            write!(f, " DROPPED")?;
        }
        Ok(())
    }
}

/// Parse an IP packet with etherparse and verify every checksum in it. Panics with a
/// description on anything malformed: a stack emitted a bad packet.
pub fn check_packet(packet: &[u8]) -> (IpAddr, IpAddr, Option<TcpInfo>) {
    // One checker for the link and the simulator: lengths and every checksum
    // recomputed by etherparse (the IPv4 header sum over the raw bytes).
    match crate::sim::inspect(packet) {
        Ok(i) => (i.src, i.dst, i.tcp),
        Err(e) => panic!("bad packet on the link: {e}\n{packet:02x?}"),
    }
}

// ============================================================================ the link

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// The index of the path that carries what `from` sends.
fn path(from: Side) -> usize {
    match from {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What a hook decides for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop,
}

/// The endpoints as the pump hands them to a test's application closure.
pub type EndpointObj = dyn Endpoint + 'static;

pub type Hook = Box<dyn FnMut(&PacketRecord) -> Verdict>;

/// Two endpoints, a link each way (by default lossless, with a fixed one-way delay of
/// 1 ms), a virtual clock. By convention A is the client and B the server.
pub struct Link {
    pub a: Box<EndpointObj>,
    pub b: Box<EndpointObj>,
    pub now: Instant,
    /// The pump refuses to move the clock past this instant.
    pub max_time: Instant,
    /// Total pump iterations allowed over the life of the link.
    pub max_steps: u64,
    pub steps: u64,
    pub log: Vec<PacketRecord>,
    /// `paths[0]` carries A -> B, `paths[1]` B -> A; they hold the packets in flight.
    paths: [Impairer; 2],
    hook: Option<Hook>,
}

/// The default one-way delay.
pub const LINK_DELAY: Duration = Duration::from_millis(1);

impl Link {
    /// A lossless link with a one-way delay of [`LINK_DELAY`].
    pub fn new(a: Box<EndpointObj>, b: Box<EndpointObj>) -> Link {
        Link::with_impairment(a, b, Impairment::delay(LINK_DELAY))
    }

    /// A link that impairs both directions as `impairment` says (each with its own
    /// random stream from its seed; see [`Impairment::rx`]).
    pub fn with_impairment(a: Box<EndpointObj>, b: Box<EndpointObj>, impairment: Impairment) -> Link {
        // Buffers for 1500-byte packets; a larger packet gets one of its own size.
        let mtu = 1500;
        Link {
            a,
            b,
            now: Instant::ZERO,
            max_time: Instant::from_secs(600),
            max_steps: 5_000_000,
            steps: 0,
            log: Vec::new(),
            paths: [impairment.tx(mtu), impairment.rx(mtu)],
            hook: None,
        }
    }

    fn in_flight(&self) -> usize {
        self.paths[0].held() + self.paths[1].held()
    }

    /// Decide the fate of every packet from now on (after parsing and logging).
    pub fn set_hook(&mut self, hook: impl FnMut(&PacketRecord) -> Verdict + 'static) {
        self.hook = Some(Box::new(hook));
    }

    pub fn endpoint(&mut self, side: Side) -> &mut EndpointObj {
        match side {
            Side::A => &mut *self.a,
            Side::B => &mut *self.b,
        }
    }

    fn transmit(&mut self, from: Side, packet: Vec<u8>) {
        let (src, dst, tcp) = check_packet(&packet);
        let (me, peer) = match from {
            Side::A => (self.a.addr(), self.b.addr()),
            Side::B => (self.b.addr(), self.a.addr()),
        };
        assert_eq!(src, me, "{from:?} sent a packet from an address not its own");
        assert_eq!(dst, peer, "{from:?} sent a packet to an address that is not the peer's");
        let mut record = PacketRecord {
            index: self.log.len(),
            time: self.now,
            from,
            src,
            dst,
            len: packet.len(),
            tcp,
            dropped: false,
        };
        if let Some(hook) = self.hook.as_mut() {
            record.dropped = hook(&record) == Verdict::Drop;
        }
        if !record.dropped {
            let fate = self.paths[path(from)].push(self.now, &packet);
            record.dropped = matches!(fate, Fate::Lost | Fate::TailDropped);
        }
        self.log.push(record);
    }

    fn describe(&mut self) -> String {
        let now = self.now;
        let (sa, sb) = (self.a.conn_state(), self.b.conn_state());
        let (da, db) = (self.a.deadline(now), self.b.deadline(now));
        let mut s = format!(
            "now={now:?} steps={} in_flight={}\n  A {}: {sa}, deadline {da:?}\n  B {}: {sb}, deadline {db:?}\n  last packets:",
            self.steps,
            self.in_flight(),
            self.a.name(),
            self.b.name()
        );
        for r in self.log.iter().rev().take(12).collect::<Vec<_>>().into_iter().rev() {
            s.push_str(&format!("\n    {r}"));
        }
        s
    }

    /// Pump until `app` returns true. `app` is called once per step with both endpoints
    /// and the current time; it plays the applications (send, recv, close) and reports
    /// whether the goal is reached. Returns the virtual time at which it was.
    pub fn run_until<F>(&mut self, what: &str, mut app: F) -> Instant
    where
        F: FnMut(&mut EndpointObj, &mut EndpointObj, Instant) -> bool,
    {
        loop {
            self.steps += 1;
            if self.steps > self.max_steps {
                let state = self.describe();
                panic!("{what}: step limit {} reached\n{state}", self.max_steps);
            }
            let now = self.now;
            // Timers due now.
            for side in [Side::A, Side::B] {
                let ep = self.endpoint(side);
                if ep.deadline(now).is_some_and(|d| d <= now) {
                    ep.on_timeout(now);
                }
            }
            // The applications.
            if app(&mut *self.a, &mut *self.b, now) {
                return now;
            }
            // Whatever the stacks have to send goes on the wire.
            for side in [Side::A, Side::B] {
                let mut out = Vec::new();
                self.endpoint(side).output(now, &mut out);
                for p in out {
                    self.transmit(side, p);
                }
            }
            // Deliver what has arrived by now.
            let mut delivered = false;
            for from in [Side::A, Side::B] {
                let mut due = Vec::new();
                self.paths[path(from)].release(now, |p, _| due.push(p.to_vec()));
                for p in due {
                    self.endpoint(from.other()).input(now, &p);
                    delivered = true;
                }
            }
            if delivered {
                continue;
            }
            // Idle at this instant: jump to the next event.
            let next = [
                self.paths[0].next_release(),
                self.paths[1].next_release(),
                self.a.deadline(now),
                self.b.deadline(now),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                panic!("{what}: stalled, no packet in flight and no timer pending\n{}", self.describe());
            };
            // A deadline at or before `now` was served this step already; move on anyway.
            let next = next.max(now + Duration::from_micros(1));
            if next > self.max_time {
                let state = self.describe();
                panic!("{what}: virtual time limit {:?} reached (next event at {next:?})\n{state}", self.max_time);
            }
            self.now = next;
        }
    }

    /// B listens on `port`, A connects to it; pump until both see the connection
    /// established. Returns the virtual time of completion.
    pub fn handshake(&mut self, port: u16) -> Instant {
        self.b.listen(port);
        let remote = SocketAddr::new(self.b.addr(), port);
        let now = self.now;
        self.a.connect(now, remote);
        self.run_until("handshake", |a, b, _| {
            let ca = a.poll_established().unwrap_or_else(|e| panic!("client {}: {e}", a.name()));
            let cb = b.poll_established().unwrap_or_else(|e| panic!("server {}: {e}", b.name()));
            ca && cb
        })
    }

    /// Send `transfer.a_to_b` bytes from A to B and `transfer.b_to_a` from B to A at the
    /// same time; pump until every byte has been read on the other side.
    pub fn transfer(&mut self, transfer: Transfer) -> TransferReport {
        let start = self.now;
        let a_data = pattern(transfer.seed, transfer.a_to_b);
        let b_data = pattern(transfer.seed ^ 0x5a5a_5a5a_5a5a_5a5a, transfer.b_to_a);
        let (mut a_sent, mut b_sent) = (0usize, 0usize);
        let (mut a_got, mut b_got) = (Vec::with_capacity(transfer.b_to_a), Vec::with_capacity(transfer.a_to_b));
        let mut buf = vec![0u8; 64 * 1024];
        let done = self.run_until("transfer", |a, b, _| {
            push(a, &a_data, &mut a_sent);
            push(b, &b_data, &mut b_sent);
            pull(b, &mut b_got, transfer.a_to_b, &mut buf);
            pull(a, &mut a_got, transfer.b_to_a, &mut buf);
            a_got.len() == transfer.b_to_a && b_got.len() == transfer.a_to_b
        });
        TransferReport {
            a_to_b: (sha256(&a_data), sha256(&b_got)),
            b_to_a: (sha256(&b_data), sha256(&a_got)),
            bytes: (transfer.a_to_b, transfer.b_to_a),
            elapsed: done - start,
        }
    }

    /// `closer` closes first; the other side reads to end of stream and then closes.
    /// Pump until both connections have left their socket tables, recording every state
    /// each side went through.
    pub fn graceful_close(&mut self, closer: Side) -> CloseReport {
        let started = self.now;
        self.endpoint(closer).close();
        let mut closer_states: Vec<ConnState> = Vec::new();
        let mut other_states: Vec<ConnState> = Vec::new();
        let mut time_wait_at = None;
        let mut closer_gone_at = None;
        let mut other_gone_at = None;
        let mut other_closed = false;
        let mut buf = vec![0u8; 4096];
        self.run_until("graceful close", |a, b, now| {
            let (c, o) = match closer {
                Side::A => (a, b),
                Side::B => (b, a),
            };
            if !other_closed {
                match o.recv(&mut buf) {
                    Ok(0) => {
                        o.close();
                        other_closed = true;
                    }
                    Ok(n) => panic!("{}: {n} unexpected bytes after the transfer", o.name()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{}: recv during close: {e}", o.name()),
                }
            }
            let cs = c.conn_state();
            let os = o.conn_state();
            if closer_states.last() != Some(&cs) {
                closer_states.push(cs);
            }
            if other_states.last() != Some(&os) {
                other_states.push(os);
            }
            if cs == ConnState::Open("TIME-WAIT") && time_wait_at.is_none() {
                time_wait_at = Some(now);
            }
            if cs == ConnState::Gone && closer_gone_at.is_none() {
                closer_gone_at = Some(now);
            }
            if os == ConnState::Gone && other_gone_at.is_none() {
                other_gone_at = Some(now);
            }
            closer_gone_at.is_some() && other_gone_at.is_some()
        });
        CloseReport {
            started,
            closer_states,
            other_states,
            time_wait_at,
            closer_gone_at: closer_gone_at.unwrap(),
            other_gone_at: other_gone_at.unwrap(),
        }
    }

    /// Packets that crossed (or were dropped) from `side`.
    pub fn sent_by(&self, side: Side) -> impl Iterator<Item = &PacketRecord> {
        self.log.iter().filter(move |r| r.from == side)
    }

    /// Data segments from `side` that repeat sequence space already sent (RFC 9293 3.4
    /// comparisons modulo 2^32): retransmissions as seen on the wire.
    pub fn retransmitted_segments(&self, side: Side) -> usize {
        let mut highest: Option<u32> = None;
        let mut count = 0;
        for r in self.sent_by(side) {
            let Some(t) = &r.tcp else { continue };
            if t.payload_len == 0 {
                continue;
            }
            let end = t.seq.wrapping_add(t.payload_len as u32);
            match highest {
                Some(h) if (t.seq.wrapping_sub(h) as i32) < 0 => {
                    count += 1;
                    if (end.wrapping_sub(h) as i32) > 0 {
                        highest = Some(end);
                    }
                }
                _ => highest = Some(end),
            }
        }
        count
    }

    pub fn summary(&self) -> String {
        let count = |side: Side| self.sent_by(side).filter(|r| !r.dropped).count();
        let bytes = |side: Side| self.sent_by(side).map(|r| r.len).sum::<usize>();
        format!(
            "A={} B={} | packets A->B {} ({} B), B->A {} ({} B), dropped {}, retransmitted data segments A {} B {} | virtual time {:?}, {} steps",
            self.a.name(),
            self.b.name(),
            count(Side::A),
            bytes(Side::A),
            count(Side::B),
            bytes(Side::B),
            self.log.iter().filter(|r| r.dropped).count(),
            self.retransmitted_segments(Side::A),
            self.retransmitted_segments(Side::B),
            self.now,
            self.steps
        )
    }
}

fn push(ep: &mut dyn Endpoint, data: &[u8], sent: &mut usize) {
    while *sent < data.len() {
        match ep.send(&data[*sent..]) {
            Ok(0) => break,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{}: send failed after {} bytes: {e}", ep.name(), *sent),
        }
    }
}

fn pull(ep: &mut dyn Endpoint, got: &mut Vec<u8>, expected: usize, buf: &mut [u8]) {
    loop {
        match ep.recv(buf) {
            Ok(0) => panic!("{}: unexpected end of stream after {} of {expected} bytes", ep.name(), got.len()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                assert!(
                    got.len() <= expected,
                    "{}: received {} bytes, more than the {expected} sent",
                    ep.name(),
                    got.len()
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("{}: recv failed after {} bytes: {e}", ep.name(), got.len()),
        }
    }
}

// ============================================================================ scenarios

#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub a_to_b: usize,
    pub b_to_a: usize,
    pub seed: u64,
}

#[derive(Clone, Debug)]
pub struct TransferReport {
    /// (sha256 of what A sent, sha256 of what B received).
    pub a_to_b: ([u8; 32], [u8; 32]),
    /// (sha256 of what B sent, sha256 of what A received).
    pub b_to_a: ([u8; 32], [u8; 32]),
    pub bytes: (usize, usize),
    pub elapsed: Duration,
}

impl TransferReport {
    /// Both directions arrived intact.
    pub fn assert_intact(&self) {
        assert_eq!(hex(&self.a_to_b.0), hex(&self.a_to_b.1), "A -> B stream differs");
        assert_eq!(hex(&self.b_to_a.0), hex(&self.b_to_a.1), "B -> A stream differs");
    }
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "A->B {} B sha256 {}.., B->A {} B sha256 {}.., in {:?} virtual",
            self.bytes.0,
            &hex(&self.a_to_b.1)[..16],
            self.bytes.1,
            &hex(&self.b_to_a.1)[..16],
            self.elapsed
        )
    }
}

#[derive(Clone, Debug)]
pub struct CloseReport {
    pub started: Instant,
    /// Every distinct state the active closer was seen in, in order.
    pub closer_states: Vec<ConnState>,
    pub other_states: Vec<ConnState>,
    pub time_wait_at: Option<Instant>,
    pub closer_gone_at: Instant,
    pub other_gone_at: Instant,
}

impl fmt::Display for CloseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |v: &[ConnState]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" > ");
        write!(
            f,
            "closer: {} (TIME-WAIT at {:?}, gone at {:?}); other: {} (gone at {:?})",
            path(&self.closer_states),
            self.time_wait_at,
            self.closer_gone_at,
            path(&self.other_states),
            self.other_gone_at
        )
    }
}

/// `len` pseudo-random bytes from `seed` (the core's PRNG), the same on every run.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    crate::sim::payload(seed, len)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ============================================================================ small helpers for tests

pub const MIB: usize = 1 << 20;

/// 10.0.0.`last`
pub fn v4(last: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, last))
}

/// fd00::`last`
pub fn v6(last: u16) -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last))
}

pub fn ours(addr: IpAddr, seed: u64) -> Box<EndpointObj> {
    Box::new(Ours::new(addr, seed))
}

pub fn smol(addr: IpAddr, seed: u64) -> Box<EndpointObj> {
    Box::new(Smol::new(addr, seed))
}

/// A hook that drops the `n`th (1-based) packet from `from` whose TCP header satisfies
/// `pred`, and delivers everything else.
pub fn drop_nth(
    from: Side,
    n: usize,
    pred: impl Fn(&TcpInfo) -> bool + 'static,
) -> impl FnMut(&PacketRecord) -> Verdict {
    let mut seen = 0;
    move |r| {
        if r.from == from && r.tcp.as_ref().is_some_and(&pred) {
            seen += 1;
            if seen == n {
                return Verdict::Drop;
            }
        }
        Verdict::Deliver
    }
}

impl Link {
    /// The single packet the hook dropped.
    pub fn the_dropped_packet(&self) -> PacketRecord {
        let dropped: Vec<&PacketRecord> = self.log.iter().filter(|r| r.dropped).collect();
        assert_eq!(dropped.len(), 1, "expected exactly one dropped packet: {dropped:#?}");
        dropped[0].clone()
    }

    /// Delivered TCP packets from `side` after log index `after` that satisfy `pred`.
    pub fn delivered_after(&self, side: Side, after: usize, pred: impl Fn(&TcpInfo) -> bool) -> Vec<&PacketRecord> {
        self.sent_by(side).filter(|r| r.index > after && !r.dropped && r.tcp.as_ref().is_some_and(&pred)).collect()
    }
}

impl CloseReport {
    /// How long the active closer stayed in TIME-WAIT.
    pub fn time_wait_held(&self) -> Option<Duration> {
        self.time_wait_at.map(|t| self.closer_gone_at - t)
    }

    /// The active closer went through TIME-WAIT for `two_msl` (plus at most 10 ms of
    /// timer slack) and then left its table; the other side ended gone too.
    #[track_caller]
    pub fn assert_time_wait(&self, two_msl: Duration) {
        let held = self.time_wait_held().unwrap_or_else(|| panic!("the active closer never was in TIME-WAIT: {self}"));
        assert!(
            held >= two_msl && held <= two_msl + Duration::from_millis(10),
            "TIME-WAIT held {held:?}, expected 2*MSL = {two_msl:?}: {self}"
        );
        assert_eq!(self.closer_states.last(), Some(&ConnState::Gone), "{self}");
        assert_eq!(self.other_states.last(), Some(&ConnState::Gone), "{self}");
    }

    /// The passive closer went CLOSE-WAIT -> LAST-ACK -> gone, and never TIME-WAIT.
    #[track_caller]
    pub fn assert_passive_path(&self) {
        let o = &self.other_states;
        assert!(o.contains(&ConnState::Open("LAST-ACK")), "passive closer never in LAST-ACK: {self}");
        assert!(!o.contains(&ConnState::Open("TIME-WAIT")), "the passive closer must not linger in TIME-WAIT: {self}");
        assert_eq!(o.last(), Some(&ConnState::Gone), "{self}");
        assert!(self.other_gone_at <= self.closer_gone_at, "{self}");
    }
}
