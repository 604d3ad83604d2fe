//! State-machine stepping tests for TCP, in the smoltcp style: bring a [`Stack`] to a
//! given state with a small factory, hand it one segment, and assert the exact segments
//! that come back (flags, seq, ack, window, options, payload), then nothing more.
//!
//! Segments are built and parsed with `etherparse`, an implementation independent of our
//! own `wire` module, so a bug there cannot hide a bug here.
//!
//! Setup shared by every test (see [`config`]): we are 10.0.0.2, port 80 for passive
//! opens; the peer is 10.0.0.1:40000 (passive) or 10.0.0.1:5000 (active opens); receive
//! and send buffers of 4096 bytes, MTU 1500 (MSS 1460), MSL 1 s. The peer's ISN is
//! [`X`]; ours is learned from our SYN or SYN-ACK.
//!
//! Names follow `test_<state>_<event>`. The rules come from RFC 9293 3.10 (event
//! processing), RFC 5961 (challenge ACKs), RFC 6298 (retransmission timer), RFC 7323
//! (window scale).

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TcpOptionElement, TransportSlice};

use crate::wire::DropReason;
use crate::{Config, Instant, ListenerHandle, Owner, Protocol, SocketInfo, Stack, TcpHandle, TcpState};

// ------------------------------------------------------------------------- constants

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LOCAL_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const LOCAL_PORT: u16 = 80;
const PEER_PORT: u16 = 40000;
/// The port the active-open tests connect to.
const REMOTE_SERVICE_PORT: u16 = 5000;

/// The peer's initial sequence number.
const X: u32 = 10_000;
/// Our receive buffer, and so the window we advertise when it is empty.
const BUF: usize = 4096;
const WIN: u16 = BUF as u16;
/// The window the peer advertises unless a test says otherwise.
const PEER_WIN: u16 = 65535;
/// MTU 1500 - 20 (IPv4) - 20 (TCP), RFC 9293 3.7.1.
const MSS: u16 = 1460;
/// MTU 1500 - 40 (IPv6) - 20 (TCP).
const MSS6: u16 = 1440;
/// 2 * MSL with `msl` = 1 s (RFC 9293 3.4.2: TIME-WAIT lasts 2 MSL).
const TWO_MSL: Duration = Duration::from_secs(2);
/// `Config::default().rto_initial` (RFC 6298 2.1).
const RTO_INITIAL: Duration = Duration::from_secs(1);

/// The base state machine: no SACK, no timestamps, no delayed ACKs (those have their
/// own tests in `tcp/tests_ext.rs`), fixed buffers (no auto-tuning: the window scale
/// follows the buffer), so every reply is exactly the RFC 9293 one.
fn config() -> Config {
    Config {
        addrs: vec![IpAddr::V4(LOCAL_IP)],
        seed: 1,
        tcp_rx_buffer: BUF,
        tcp_tx_buffer: BUF,
        tcp_rx_buffer_max: 0,
        tcp_tx_buffer_max: 0,
        mtu: 1500,
        msl: Duration::from_secs(1),
        sack: false,
        timestamps: false,
        ack_delay: None,
        ..Config::default()
    }
}

fn mss(v: u16) -> TcpOptionElement {
    TcpOptionElement::MaximumSegmentSize(v)
}

fn ws(shift: u8) -> TcpOptionElement {
    TcpOptionElement::WindowScale(shift)
}

/// Deterministic, recognisable payload bytes.
fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// One microsecond before `t`: the last moment at which a timer due at `t` must not fire.
fn just_before(t: Instant) -> Instant {
    Instant::from_micros(t.total_micros() - 1)
}

// ------------------------------------------------------------------------- sequence numbers

/// A sequence number of ours (our ISS is random, so arithmetic on it must wrap,
/// RFC 9293 3.4): `iss + 1` is always meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sq(u32);

impl std::ops::Add<u32> for Sq {
    type Output = Sq;
    fn add(self, n: u32) -> Sq {
        Sq(self.0.wrapping_add(n))
    }
}

/// Anything usable as a sequence or acknowledgment number in a segment.
trait SeqLike {
    fn raw(self) -> u32;
}

impl SeqLike for u32 {
    fn raw(self) -> u32 {
        self
    }
}

impl SeqLike for Sq {
    fn raw(self) -> u32 {
        self.0
    }
}

// ------------------------------------------------------------------------- segments

/// One TCP segment, either to hand to the stack or to expect from it.
#[derive(Clone)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    /// Only meaningful (and only compared) when `flags` has ACK.
    ack: u32,
    window: u16,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
    /// Expectations only: accept the segment whether or not PSH is set.
    psh_any: bool,
}

#[allow(clippy::wrong_self_convention)]
impl Seg {
    fn new(src: SocketAddr, dst: SocketAddr, flags: u8, seq: u32, ack: u32, window: u16) -> Seg {
        Seg { src, dst, flags, seq, ack, window, options: Vec::new(), payload: Vec::new(), psh_any: false }
    }
    fn win(mut self, window: u16) -> Seg {
        self.window = window;
        self
    }
    fn opts(mut self, options: &[TcpOptionElement]) -> Seg {
        self.options = options.to_vec();
        self
    }
    fn data(mut self, bytes: &[u8]) -> Seg {
        self.payload = bytes.to_vec();
        self
    }
    fn psh_any(mut self) -> Seg {
        self.psh_any = true;
        self
    }
    /// A peer port other than the default, for a segment the peer sends.
    fn from_port(mut self, port: u16) -> Seg {
        self.src.set_port(port);
        self
    }
    /// A peer port other than the default, for a segment we are expected to send.
    fn to_port(mut self, port: u16) -> Seg {
        self.dst.set_port(port);
        self
    }

    /// Does `actual` (parsed from the stack's output) satisfy this expectation?
    fn matches(&self, actual: &Seg) -> bool {
        let mask = if self.psh_any { !PSH } else { !0 };
        self.src == actual.src
            && self.dst == actual.dst
            && self.flags & mask == actual.flags & mask
            && self.seq == actual.seq
            && (self.flags & ACK == 0 || self.ack == actual.ack)
            && self.window == actual.window
            && sorted_options(&self.options) == sorted_options(&actual.options)
            && self.payload == actual.payload
    }

    /// Serialise with etherparse (IPv4 or IPv6 after the addresses), correct checksums.
    fn to_packet(&self) -> Vec<u8> {
        let mut tcp = TcpHeader::new(self.src.port(), self.dst.port(), self.seq, self.window);
        tcp.fin = self.flags & FIN != 0;
        tcp.syn = self.flags & SYN != 0;
        tcp.rst = self.flags & RST != 0;
        tcp.psh = self.flags & PSH != 0;
        if self.flags & ACK != 0 {
            tcp.ack = true;
            tcp.acknowledgment_number = self.ack;
        }
        tcp.set_options(&self.options).expect("options fit in a TCP header");
        let builder = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed address families in {self:?}"),
        };
        let mut out = Vec::new();
        builder.tcp_header(tcp).write(&mut out, &self.payload).expect("etherparse writes the segment");
        out
    }

    /// Parse one packet the stack emitted, checking everything etherparse lets us check:
    /// lengths, IPv4 header checksum, TCP checksum over the pseudo-header.
    fn parse(packet: &[u8]) -> Seg {
        let sliced = SlicedPacket::from_ip(packet)
            .unwrap_or_else(|e| panic!("stack emitted a packet etherparse rejects: {e:?}\n{packet:02x?}"));
        let (src_ip, dst_ip) = match &sliced.net {
            Some(NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                assert_eq!(h.total_len() as usize, packet.len(), "IPv4 total length vs packet length");
                assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum(), "IPv4 header checksum");
                assert!(!h.more_fragments() && h.fragments_offset().value() == 0, "we never fragment");
                assert!(h.ttl() > 0, "TTL 0");
                (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()))
            }
            Some(NetSlice::Ipv6(v6)) => {
                let h = v6.header();
                assert_eq!(h.payload_length() as usize + 40, packet.len(), "IPv6 payload length vs packet length");
                (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()))
            }
            other => panic!("not an IP packet: {other:?}"),
        };
        let tcp = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => tcp,
            other => panic!("expected a TCP segment, got {other:?}"),
        };
        let want_csum = match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => tcp.calc_checksum_ipv4(s.octets(), d.octets()).unwrap(),
            (IpAddr::V6(s), IpAddr::V6(d)) => tcp.calc_checksum_ipv6(s.octets(), d.octets()).unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(tcp.checksum(), want_csum, "TCP checksum");
        assert!(!tcp.urg() && tcp.urgent_pointer() == 0, "we never send urgent data");
        let mut options = Vec::new();
        for opt in tcp.options_iterator() {
            match opt {
                Ok(TcpOptionElement::Noop) => {}
                Ok(o) => options.push(o),
                Err(e) => panic!("malformed TCP option in our segment: {e:?}"),
            }
        }
        let flags = ((tcp.fin() as u8) * FIN)
            | ((tcp.syn() as u8) * SYN)
            | ((tcp.rst() as u8) * RST)
            | ((tcp.psh() as u8) * PSH)
            | ((tcp.ack() as u8) * ACK);
        Seg {
            src: SocketAddr::new(src_ip, tcp.source_port()),
            dst: SocketAddr::new(dst_ip, tcp.destination_port()),
            flags,
            seq: tcp.sequence_number(),
            ack: if tcp.ack() { tcp.acknowledgment_number() } else { 0 },
            window: tcp.window_size(),
            options,
            payload: tcp.payload().to_vec(),
            psh_any: false,
        }
    }
}

fn option_kind(o: &TcpOptionElement) -> u8 {
    match o {
        TcpOptionElement::Noop => 1,
        TcpOptionElement::MaximumSegmentSize(_) => 2,
        TcpOptionElement::WindowScale(_) => 3,
        TcpOptionElement::SelectiveAcknowledgementPermitted => 4,
        TcpOptionElement::SelectiveAcknowledgement(..) => 5,
        TcpOptionElement::Timestamp(..) => 8,
    }
}

/// Option order carries no meaning; NOP padding is dropped by `parse`.
fn sorted_options(options: &[TcpOptionElement]) -> Vec<TcpOptionElement> {
    let mut v = options.to_vec();
    v.sort_by_key(option_kind);
    v
}

fn flag_names(flags: u8) -> String {
    let names: Vec<&str> = [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK")]
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join("|")
    }
}

impl std::fmt::Debug for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {} [{}", self.src, self.dst, flag_names(self.flags))?;
        if self.psh_any {
            write!(f, " (PSH any)")?;
        }
        write!(f, "] seq={}", self.seq)?;
        if self.flags & ACK != 0 {
            write!(f, " ack={}", self.ack)?;
        }
        write!(f, " win={}", self.window)?;
        if !self.options.is_empty() {
            write!(f, " opts={:?}", self.options)?;
        }
        write!(f, " len={}", self.payload.len())
    }
}

// ------------------------------------------------------------------------- harness

/// A stack plus the bookkeeping of one connection under test.
struct TestStack {
    stack: Stack,
    now: Instant,
    /// Our end of the connection under test.
    local: SocketAddr,
    /// The peer's end.
    peer: SocketAddr,
    listener: Option<ListenerHandle>,
    conn: Option<TcpHandle>,
    /// Our ISS, learned from our SYN or SYN-ACK.
    iss: Sq,
    buf: Vec<u8>,
}

/// `send!(h, SEG => [REPLY, ...])`: the peer sends SEG at `h.now`; the stack must answer
/// with exactly these segments, in order, and then nothing. `=> []` expects silence.
macro_rules! send {
    ($h:ident, $seg:expr => [$($reply:expr),* $(,)?]) => {{
        let seg = $seg;
        $h.send(seg);
        let want: Vec<Seg> = vec![$($reply),*];
        $h.expect(&want);
    }};
}

impl TestStack {
    fn new(config: Config) -> TestStack {
        TestStack {
            stack: Stack::new(config),
            now: Instant::ZERO,
            local: SocketAddr::new(IpAddr::V4(LOCAL_IP), LOCAL_PORT),
            peer: SocketAddr::new(IpAddr::V4(PEER_IP), PEER_PORT),
            listener: None,
            conn: None,
            iss: Sq(0),
            buf: vec![0; 2048],
        }
    }

    /// A segment from the peer to us, window `PEER_WIN`, no options, no payload.
    fn seg(&self, flags: u8, seq: impl SeqLike, ack: impl SeqLike) -> Seg {
        Seg::new(self.peer, self.local, flags, seq.raw(), ack.raw(), PEER_WIN)
    }

    /// A segment we are expected to send, window `WIN` (our empty receive buffer).
    fn reply(&self, flags: u8, seq: impl SeqLike, ack: impl SeqLike) -> Seg {
        Seg::new(self.local, self.peer, flags, seq.raw(), ack.raw(), WIN)
    }

    /// The RST every "bad ACK" rule asks for: `<SEQ=SEG.ACK><CTL=RST>` (window 0).
    fn rst_for_ack(&self, seg_ack: impl SeqLike) -> Seg {
        self.reply(RST, seg_ack, 0).win(0)
    }

    fn send(&mut self, seg: Seg) {
        let packet = seg.to_packet();
        self.stack.input(self.now, &packet);
    }

    /// Everything the stack has to send at `now`.
    fn recv_all(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            match self.stack.poll_transmit(self.now, &mut self.buf) {
                Some(n) => out.push(Seg::parse(&self.buf[..n])),
                None => return out,
            }
        }
        panic!("poll_transmit never returned None (got {} segments): {:?}", out.len(), &out[..5]);
    }

    #[track_caller]
    fn recv_one(&mut self) -> Seg {
        let got = self.recv_all();
        assert_eq!(got.len(), 1, "at {:?} expected exactly one segment, got {got:#?}", self.now);
        got.into_iter().next().unwrap()
    }

    /// Exactly these segments, then nothing.
    #[track_caller]
    fn expect(&mut self, want: &[Seg]) {
        let got = self.recv_all();
        let ok = got.len() == want.len() && want.iter().zip(&got).all(|(w, g)| w.matches(g));
        assert!(ok, "at {:?}:\nexpected {} segment(s): {want:#?}\ngot {}: {got:#?}", self.now, want.len(), got.len());
    }

    #[track_caller]
    fn expect_nothing(&mut self) {
        self.expect(&[]);
    }

    /// Move the clock to `t` and run every timer due by then.
    fn timers_at(&mut self, t: Instant) {
        assert!(t >= self.now, "time goes forward");
        self.now = t;
        self.stack.handle_timeout(t);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn conn(&self) -> TcpHandle {
        self.conn.expect("the test has a connection handle")
    }

    fn listener(&self) -> ListenerHandle {
        self.listener.expect("the test has a listener")
    }

    /// The socket-table row of the connection under test (also for orphans).
    fn row(&self) -> Option<SocketInfo> {
        self.stack
            .sockets()
            .into_iter()
            .find(|r| r.protocol == Protocol::Tcp && r.local == self.local && r.remote == Some(self.peer))
    }

    fn row_state(&self) -> Option<&'static str> {
        self.row().map(|r| r.state)
    }

    #[track_caller]
    fn assert_state(&self, want: TcpState) {
        assert_eq!(self.stack.tcp_state(self.conn()).unwrap(), want, "tcp_state");
        assert_eq!(self.row_state(), Some(want.as_str()), "socket table row");
    }

    /// The listener is still there, in LISTEN.
    #[track_caller]
    fn assert_listening(&self) {
        let l = self.listener().raw();
        let row = self.stack.sockets().into_iter().find(|r| r.handle == l);
        assert_eq!(row.map(|r| r.state), Some(TcpState::Listen.as_str()), "listener row");
    }

    /// For connections the application has released: the row must exist, be an orphan
    /// and be in `want`.
    #[track_caller]
    fn assert_orphan_state(&self, want: TcpState) {
        let row = self.row().unwrap_or_else(|| panic!("no socket row, expected an orphan in {want}"));
        assert_eq!(row.state, want.as_str());
        assert_eq!(row.owner, Owner::Orphan);
    }

    #[track_caller]
    fn assert_gone(&self) {
        assert_eq!(self.row(), None, "the connection should have left the socket table");
    }

    /// One `tcp_recv` call.
    fn read(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 2 * BUF];
        let n = self.stack.tcp_recv(self.conn(), &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Read until `WouldBlock`; panics on EOF or any other error.
    fn read_all(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            match self.read() {
                Ok(b) if b.is_empty() => panic!("unexpected end of stream"),
                Ok(b) => all.extend_from_slice(&b),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return all,
                Err(e) => panic!("tcp_recv: {e}"),
            }
        }
    }

    /// Read until end of stream; panics on `WouldBlock` or any other error.
    fn read_all_to_eof(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            match self.read() {
                Ok(b) if b.is_empty() => return all,
                Ok(b) => all.extend_from_slice(&b),
                Err(e) => panic!("tcp_recv before end of stream: {e}"),
            }
        }
    }

    /// After the application read, the stack may announce the reopened window on its own
    /// (a window update). Tolerate pure ACKs with the given seq/ack; anything else fails.
    #[track_caller]
    fn drain_window_updates(&mut self, seq: impl SeqLike, ack: impl SeqLike) {
        let (seq, ack) = (seq.raw(), ack.raw());
        for s in self.recv_all() {
            let ok = s.flags == ACK && s.seq == seq && s.ack == ack && s.payload.is_empty() && s.src == self.local;
            assert!(ok, "only a window update may follow a read, got {s:?}");
        }
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.stack.stats().dropped(reason)
    }
}

#[track_caller]
fn assert_kind<T: std::fmt::Debug, E: Into<io::Error>>(r: Result<T, E>, kind: ErrorKind) {
    match r.map_err(Into::into) {
        Err(e) => assert_eq!(e.kind(), kind, "error {e}"),
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
    }
}

// ------------------------------------------------------------------------- factories

fn listen_with(backlog: usize) -> TestStack {
    let mut h = TestStack::new(config());
    let l = h.stack.tcp_listen(h.local, backlog).expect("listen on 10.0.0.2:80");
    h.listener = Some(l);
    h.expect_nothing();
    h
}

fn listen() -> TestStack {
    listen_with(8)
}

/// LISTEN + SYN(X, MSS 1460): learns our ISS from the SYN-ACK and checks it exactly.
fn syn_received_irs(irs: u32) -> TestStack {
    let mut h = listen();
    h.send(h.seg(SYN, irs, 0).opts(&[mss(1460)]));
    let synack = h.recv_one();
    h.iss = Sq(synack.seq);
    let want = h.reply(SYN | ACK, h.iss, irs.wrapping_add(1)).opts(&[mss(MSS)]);
    assert!(want.matches(&synack), "SYN-ACK: expected {want:?}, got {synack:?}");
    h
}

fn syn_received() -> TestStack {
    syn_received_irs(X)
}

fn established_irs(irs: u32) -> TestStack {
    let mut h = syn_received_irs(irs);
    let iss = h.iss;
    send!(h, h.seg(ACK, irs.wrapping_add(1), iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).expect("accept after the handshake"));
    h
}

/// Passive open completed at t=0, accepted; the clock then moves to 10 ms.
fn established() -> TestStack {
    let mut h = established_irs(X);
    h.advance(ms(10));
    h
}

/// ESTABLISHED, then `tcp_shutdown(Write)`: FIN sent, handle still held.
fn fin_wait_1() -> TestStack {
    let mut h = established();
    let iss = h.iss;
    h.stack.tcp_shutdown(h.conn(), Shutdown::Write).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 1)]);
    h
}

/// ESTABLISHED, then `close`: FIN sent, the connection is an orphan.
fn fin_wait_1_orphan() -> TestStack {
    let mut h = established();
    let iss = h.iss;
    h.stack.close(h.conn()).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 1)]);
    h.conn = None;
    h
}

fn fin_wait_2() -> TestStack {
    let mut h = fin_wait_1();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 2) => []);
    h
}

/// Orphaned FIN-WAIT-1 + a FIN that does not acknowledge ours: CLOSING.
fn closing() -> TestStack {
    let mut h = fin_wait_1_orphan();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 1) => [h.reply(ACK, iss + 2, X + 2)]);
    h
}

/// Orphaned active close through FIN-WAIT-2; TIME-WAIT entered at `h.now`.
fn time_wait() -> TestStack {
    let mut h = fin_wait_1_orphan();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 2) => []);
    send!(h, h.seg(FIN | ACK, X + 1, iss + 2) => [h.reply(ACK, iss + 2, X + 2)]);
    h.assert_orphan_state(TcpState::TimeWait);
    h
}

fn close_wait() -> TestStack {
    let mut h = established();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 1) => [h.reply(ACK, iss + 1, X + 2)]);
    h
}

fn last_ack() -> TestStack {
    let mut h = close_wait();
    let iss = h.iss;
    h.stack.close(h.conn()).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 2)]);
    h.conn = None;
    h
}

/// `tcp_connect` to 10.0.0.1:5000 at t=0: checks our SYN exactly and learns ISS and the
/// ephemeral port from it.
fn syn_sent_with(config: Config) -> TestStack {
    let mut h = TestStack::new(config);
    h.peer = SocketAddr::new(IpAddr::V4(PEER_IP), REMOTE_SERVICE_PORT);
    let c = h.stack.tcp_connect(h.now, h.peer, None).expect("connect");
    h.conn = Some(c);
    let syn = h.recv_one();
    assert!((49152..=65535).contains(&syn.src.port()), "ephemeral port {} outside 49152..=65535", syn.src.port());
    h.local = SocketAddr::new(IpAddr::V4(LOCAL_IP), syn.src.port());
    h.iss = Sq(syn.seq);
    // RFC 7323 2.2: the window field of a SYN is never scaled.
    let want = h.reply(SYN, h.iss, 0).opts(&[mss(MSS), ws(0)]);
    assert!(want.matches(&syn), "SYN: expected {want:?}, got {syn:?}");
    assert_eq!(h.stack.local_addr(c).unwrap(), h.local);
    assert_eq!(h.stack.peer_addr(c).unwrap(), h.peer);
    h
}

fn syn_sent() -> TestStack {
    syn_sent_with(config())
}

/// Active open completed at t=0 (peer SYN-ACK with MSS 1460, WS 0); clock at 10 ms.
fn established_active() -> TestStack {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(SYN | ACK, X, iss + 1).opts(&[mss(1460), ws(0)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.advance(ms(10));
    h
}

// ------------------------------------------------------------------------- the helpers themselves

/// The harness must not be the thing under test: a segment survives build + parse.
#[test]
fn test_harness_segment_roundtrip() {
    let peer = SocketAddr::new(IpAddr::V4(PEER_IP), PEER_PORT);
    let local = SocketAddr::new(IpAddr::V4(LOCAL_IP), LOCAL_PORT);
    for seg in [
        Seg::new(peer, local, SYN, X, 0, PEER_WIN).opts(&[mss(1460), ws(7)]),
        Seg::new(peer, local, PSH | ACK, u32::MAX, 77, 123).data(&payload(33, 1)),
        Seg::new(local, peer, RST, 5, 0, 0),
        Seg::new(
            SocketAddr::new(IpAddr::V6(PEER_IP6), 1),
            SocketAddr::new(IpAddr::V6(LOCAL_IP6), 2),
            FIN | ACK,
            1,
            2,
            3,
        ),
    ] {
        let back = Seg::parse(&seg.to_packet());
        assert!(seg.matches(&back), "{seg:?} vs {back:?}");
    }
    // A mismatch is a mismatch; PSH is only ignored when asked.
    let a = Seg::new(peer, local, ACK, 1, 2, 3);
    assert!(!a.matches(&Seg::parse(&Seg::new(peer, local, ACK, 1, 3, 3).to_packet())));
    let with_psh = Seg::parse(&Seg::new(peer, local, PSH | ACK, 1, 2, 3).to_packet());
    assert!(!a.matches(&with_psh));
    assert!(a.clone().psh_any().matches(&with_psh));
    // Option order does not matter, option values do.
    let o = Seg::parse(&a.clone().opts(&[ws(0), mss(1460)]).to_packet());
    assert!(a.clone().opts(&[mss(1460), ws(0)]).matches(&o));
    assert!(!a.clone().opts(&[mss(1460), ws(1)]).matches(&o));
    assert!(!a.matches(&o));
}

// ------------------------------------------------------------------------- LISTEN

/// RFC 9293 3.10.7.2: SYN in LISTEN -> SYN-ACK <SEQ=ISS><ACK=RCV.NXT>, SYN-RECEIVED.
#[test]
fn test_listen_syn() {
    let mut h = listen();
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let synack = h.recv_one();
    let iss = Sq(synack.seq);
    // MSS = mtu - 40; no window scale because the SYN had none (RFC 7323 1.3).
    let want = h.reply(SYN | ACK, iss, X + 1).opts(&[mss(MSS)]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
    // The embryonic connection sits in the listener's queue, not yet acceptable.
    let row = h.row().expect("an embryonic connection row");
    assert_eq!(row.state, "SYN-RECEIVED");
    assert_eq!(row.owner, Owner::Listener(h.listener().raw()));
    assert_kind(h.stack.tcp_accept(h.listener()), ErrorKind::WouldBlock);
    h.assert_listening();
}

/// RFC 7323 2.2/2.3: a SYN with Window Scale gets one back; the shift is the smallest s
/// with rx_buffer >> s <= 65535, i.e. 0 for 4096. The SYN-ACK window is never scaled.
#[test]
fn test_listen_syn_window_scale() {
    let mut h = listen();
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460), ws(7)]));
    let synack = h.recv_one();
    let want = h.reply(SYN | ACK, synack.seq, X + 1).opts(&[mss(MSS), ws(0)]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
}

/// A large receive buffer needs a non-zero shift: 256 KiB >> 2 = 65536 > 65535, so 3.
/// The SYN-ACK's own window field is unscaled and capped at 65535.
#[test]
fn test_listen_syn_window_scale_large_buffer() {
    let mut h = TestStack::new(Config { tcp_rx_buffer: 256 * 1024, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460), ws(7)]));
    let synack = h.recv_one();
    let want = h.reply(SYN | ACK, synack.seq, X + 1).win(65535).opts(&[mss(MSS), ws(3)]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
}

/// With receive buffer auto-tuning the shift is chosen from the largest buffer the
/// connection may grow to (RFC 7323 2.2: it cannot change after the handshake), as
/// Linux does from tcp_rmem[2]: 6 MiB >> 7 fits 16 bits. The window itself is the
/// buffer's (4096, unscaled in the SYN-ACK).
#[test]
fn test_listen_syn_window_scale_from_the_maximum() {
    let mut h = TestStack::new(Config { tcp_rx_buffer_max: 6 << 20, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460), ws(7)]));
    let synack = h.recv_one();
    let want = h.reply(SYN | ACK, synack.seq, X + 1).opts(&[mss(MSS), ws(7)]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
}

/// IPv6: MSS = mtu - 60.
#[test]
fn test_listen_syn_ipv6() {
    let mut h = TestStack::new(Config { addrs: vec![IpAddr::V4(LOCAL_IP), IpAddr::V6(LOCAL_IP6)], ..config() });
    h.local = SocketAddr::new(IpAddr::V6(LOCAL_IP6), LOCAL_PORT);
    h.peer = SocketAddr::new(IpAddr::V6(PEER_IP6), PEER_PORT);
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1440)]));
    let synack = h.recv_one();
    let iss = Sq(synack.seq);
    let want = h.reply(SYN | ACK, iss, X + 1).opts(&[mss(MSS6)]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.assert_state(TcpState::Established);
}

/// RFC 9293 3.10.7.2 first check: a RST in LISTEN is ignored.
#[test]
fn test_listen_rst() {
    let mut h = listen();
    send!(h, h.seg(RST, X, 0) => []);
    send!(h, h.seg(RST | ACK, X, 1234) => []);
    assert_eq!(h.row(), None);
    h.assert_listening();
}

/// RFC 9293 3.10.7.2 second check: any ACK in LISTEN is bad -> <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn test_listen_ack() {
    let mut h = listen();
    send!(h, h.seg(ACK, X, 123_456) => [h.rst_for_ack(123_456)]);
    assert_eq!(h.row(), None);
    h.assert_listening();
}

/// The ACK check comes before the SYN check: SYN|ACK to a listener is answered with RST.
#[test]
fn test_listen_syn_ack() {
    let mut h = listen();
    send!(h, h.seg(SYN | ACK, X, 777).opts(&[mss(1460)]) => [h.rst_for_ack(777)]);
    assert_eq!(h.row(), None);
}

/// Backlog 1 with one half-open connection and SYN cookies off: a second SYN is
/// dropped silently and counted; once the first is accepted a new SYN is answered
/// again. (With cookies, the default, it gets a cookie: `tests/hostile.rs`.)
#[test]
fn test_listen_backlog_half_open() {
    let mut h = TestStack::new(Config { syn_cookies: false, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 1).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let synack = h.recv_one();
    let iss = Sq(synack.seq);
    let overflow = h.drops(DropReason::ListenOverflow);
    send!(h, h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)]) => []);
    assert_eq!(h.drops(DropReason::ListenOverflow), overflow + 1);
    // Complete and accept the first; the queue has room again.
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.send(h.seg(SYN, 60_000, 0).from_port(40002).opts(&[mss(1460)]));
    let second = h.recv_one();
    let want = h.reply(SYN | ACK, second.seq, 60_001).to_port(40002).opts(&[mss(MSS)]);
    assert!(want.matches(&second), "expected {want:?}, got {second:?}");
}

/// Backlog 1 with one completed connection not yet accepted: a second SYN is dropped.
#[test]
fn test_listen_backlog_accept_queue() {
    let mut h = listen_with(1);
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let iss = Sq(h.recv_one().seq);
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    assert_eq!(h.row().unwrap().owner, Owner::Listener(h.listener().raw()));
    assert_eq!(h.row_state(), Some("ESTABLISHED"));
    send!(h, h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)]) => []);
    assert!(h.drops(DropReason::ListenOverflow) >= 1);
    // The queued connection is unharmed.
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.assert_state(TcpState::Established);
    assert_kind(h.stack.tcp_accept(h.listener()), ErrorKind::WouldBlock);
}

// ------------------------------------------------------------------------- SYN-RECEIVED

/// RFC 9293 3.10.7.4 fifth check: SND.UNA < SEG.ACK =< SND.NXT -> ESTABLISHED.
#[test]
fn test_syn_received_ack() {
    let mut h = syn_received();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    let c = h.stack.tcp_accept(h.listener()).expect("accept");
    h.conn = Some(c);
    h.assert_state(TcpState::Established);
    assert_eq!(h.row().unwrap().owner, Owner::App);
    assert_eq!(h.stack.peer_addr(c).unwrap(), h.peer);
    assert_eq!(h.stack.local_addr(c).unwrap(), h.local);
    assert_kind(h.stack.tcp_accept(h.listener()), ErrorKind::WouldBlock);
}

/// The handshake-completing ACK may carry data: it is accepted and acknowledged.
#[test]
fn test_syn_received_ack_with_data() {
    let mut h = syn_received();
    let iss = h.iss;
    let data = payload(100, 7);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.assert_state(TcpState::Established);
    assert_eq!(h.read().unwrap(), data);
}

/// ACK+FIN completing the handshake: ESTABLISHED, then the FIN moves it to CLOSE-WAIT.
#[test]
fn test_syn_received_ack_fin() {
    let mut h = syn_received();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 1) => [h.reply(ACK, iss + 1, X + 2)]);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read().unwrap(), b"", "end of stream");
}

/// RFC 9293 3.10.7.4 second check, passive open: a RST in window returns the
/// connection to LISTEN, i.e. it vanishes; the listener is unaffected.
#[test]
fn test_syn_received_rst() {
    let mut h = syn_received();
    send!(h, h.seg(RST, X + 1, 0) => []);
    assert_eq!(h.row(), None);
    assert_kind(h.stack.tcp_accept(h.listener()), ErrorKind::WouldBlock);
    h.assert_listening();
    // The listener still answers a fresh SYN.
    h.send(h.seg(SYN, X + 1000, 0).opts(&[mss(1460)]));
    let synack = h.recv_one();
    assert!(h.reply(SYN | ACK, synack.seq, X + 1001).opts(&[mss(MSS)]).matches(&synack), "{synack:?}");
}

/// A RST outside the window is dropped without a reply (RFC 9293 3.10.7.4 first check).
#[test]
fn test_syn_received_rst_out_of_window() {
    let mut h = syn_received();
    send!(h, h.seg(RST, X + 1 + 100_000, 0) => []);
    assert_eq!(h.row_state(), Some("SYN-RECEIVED"));
}

/// RFC 9293 3.10.7.4 fifth check, SYN-RECEIVED: an unacceptable ACK draws
/// <SEQ=SEG.ACK><CTL=RST>; the embryonic connection stays.
#[test]
fn test_syn_received_bad_ack() {
    let mut h = syn_received();
    let iss = h.iss;
    let bad = iss + 1000;
    send!(h, h.seg(ACK, X + 1, bad) => [h.rst_for_ack(bad)]);
    assert_eq!(h.row_state(), Some("SYN-RECEIVED"));
    // The right ACK still completes it.
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    assert!(h.stack.tcp_accept(h.listener()).is_ok());
}

/// A retransmitted SYN (same X) gets the same SYN-ACK again.
#[test]
fn test_syn_received_dup_syn() {
    let mut h = syn_received();
    h.advance(ms(300));
    let iss = h.iss;
    send!(h, h.seg(SYN, X, 0).opts(&[mss(1460)]) => [h.reply(SYN | ACK, iss, X + 1).opts(&[mss(MSS)])]);
    assert_eq!(h.row_state(), Some("SYN-RECEIVED"));
}

/// An unanswered SYN-ACK is retransmitted after the initial RTO (1 s), then after 2 s
/// (RFC 6298 5.5 backoff).
#[test]
fn test_syn_received_retransmit_syn_ack() {
    let mut h = syn_received();
    let iss = h.iss;
    let synack = h.reply(SYN | ACK, iss, X + 1).opts(&[mss(MSS)]);
    assert_eq!(h.stack.poll_timeout(), Some(Instant::ZERO + RTO_INITIAL));
    h.timers_at(just_before(Instant::ZERO + RTO_INITIAL));
    h.expect_nothing();
    h.timers_at(Instant::ZERO + RTO_INITIAL);
    h.expect(std::slice::from_ref(&synack));
    assert_eq!(h.stack.poll_timeout(), Some(Instant::ZERO + 3 * RTO_INITIAL));
    h.timers_at(Instant::ZERO + 3 * RTO_INITIAL);
    h.expect(&[synack]);
    // The handshake still completes after retransmissions.
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    assert!(h.stack.tcp_accept(h.listener()).is_ok());
}

// ------------------------------------------------------------------------- ESTABLISHED: receiving

/// In-order data is acknowledged at once; the window shrinks by what is buffered.
#[test]
fn test_established_recv() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 1);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    assert_eq!(h.row().unwrap().recv_queue, 100);
    assert_eq!(h.read().unwrap(), data);
    assert_kind(h.read(), ErrorKind::WouldBlock);
}

/// After the application has read everything, the next ACK advertises the full buffer
/// minus only the new data.
#[test]
fn test_established_recv_window_reopens() {
    let mut h = established();
    let iss = h.iss;
    let a = payload(1460, 1);
    let b = payload(1460, 2);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&a) => [h.reply(ACK, iss + 1, X + 1461).win(WIN - 1460)]);
    send!(h, h.seg(PSH | ACK, X + 1461, iss + 1).data(&b) => [h.reply(ACK, iss + 1, X + 2921).win(WIN - 2920)]);
    let got = h.read_all();
    assert_eq!(got, [a, b].concat());
    h.drain_window_updates(iss + 1, X + 2921);
    let c = payload(100, 3);
    send!(h, h.seg(PSH | ACK, X + 2921, iss + 1).data(&c) => [h.reply(ACK, iss + 1, X + 3021).win(WIN - 100)]);
    assert_eq!(h.read().unwrap(), c);
}

/// Filling the buffer closes the window; a segment into a zero window is not accepted
/// and draws an ACK with the unchanged RCV.NXT (RFC 9293 3.10.7.4, zero-window row of
/// the acceptability table).
#[test]
fn test_established_recv_zero_window() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(BUF, 9);
    let (a, rest) = data.split_at(1460);
    let (b, c) = rest.split_at(1460);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(a) => [h.reply(ACK, iss + 1, X + 1461).win(WIN - 1460)]);
    send!(h, h.seg(ACK, X + 1461, iss + 1).data(b) => [h.reply(ACK, iss + 1, X + 2921).win(WIN - 2920)]);
    send!(h, h.seg(PSH | ACK, X + 2921, iss + 1).data(c) => [h.reply(ACK, iss + 1, X + 4097).win(0)]);
    send!(h, h.seg(PSH | ACK, X + 4097, iss + 1).data(b"z") => [h.reply(ACK, iss + 1, X + 4097).win(0)]);
    assert_eq!(h.read_all(), data, "the extra byte must not have been accepted");
}

/// A retransmission of data already received (entirely old) is acknowledged with the
/// current RCV.NXT and not delivered twice.
#[test]
fn test_established_recv_old_duplicate() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 4);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    h.advance(Duration::from_secs(1));
    // Ends exactly at RCV.NXT: still entirely old.
    send!(h, h.seg(ACK, X + 91, iss + 1).data(&data[90..]) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    assert_eq!(h.read_all(), data);
}

/// A segment overlapping RCV.NXT is trimmed: only the new part is taken.
#[test]
fn test_established_recv_overlap() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(200, 5);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&data[..100]) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    send!(h, h.seg(PSH | ACK, X + 51, iss + 1).data(&data[50..]) => [h.reply(ACK, iss + 1, X + 201).win(WIN - 200)]);
    assert_eq!(h.read_all(), data);
}

/// Data beyond the receive window is not accepted; the answer is an ACK with
/// <SEQ=SND.NXT><ACK=RCV.NXT> (RFC 9293 3.10.7.4 first check).
#[test]
fn test_established_recv_out_of_window() {
    let mut h = established();
    let iss = h.iss;
    let ack = h.reply(ACK, iss + 1, X + 1);
    send!(h, h.seg(PSH | ACK, X + 1 + 100_000, iss + 1).data(b"far away") => [ack.clone()]);
    // First byte just past the right edge (RCV.NXT + RCV.WND). Spaced by a second in
    // case answers to unacceptable segments are rate limited (RFC 5961 7).
    h.advance(Duration::from_secs(1));
    send!(h, h.seg(PSH | ACK, X + 1 + BUF as u32, iss + 1).data(b"edge") => [ack.clone()]);
    // Far in the past (more than a window behind).
    h.advance(Duration::from_secs(1));
    send!(h, h.seg(PSH | ACK, X.wrapping_sub(100_000), iss + 1).data(b"old") => [ack]);
    assert_kind(h.read(), ErrorKind::WouldBlock);
    h.assert_state(TcpState::Established);
}

/// Sequence numbers are modulo 2^32 (RFC 9293 3.4): data crossing the wrap is fine.
#[test]
fn test_established_recv_seq_wrap() {
    let irs = u32::MAX - 50;
    let mut h = established_irs(irs);
    let iss = h.iss;
    let data = payload(100, 6);
    let start = irs.wrapping_add(1);
    let end = start.wrapping_add(100); // 49 after the wrap
    send!(h, h.seg(PSH | ACK, start, iss + 1).data(&data)
        => [h.reply(ACK, iss + 1, end).win(WIN - 100)]);
    assert_eq!(h.read().unwrap(), data);
}

/// An ACK for data we never sent: send an ACK, drop the segment (data included).
/// RFC 9293 3.10.7.4 fifth check.
#[test]
fn test_established_ack_unsent() {
    let mut h = established();
    let iss = h.iss;
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1 + 100).data(b"dropped") => [h.reply(ACK, iss + 1, X + 1)]);
    assert_kind(h.read(), ErrorKind::WouldBlock);
    h.assert_state(TcpState::Established);
}

/// A duplicate ACK (SEG.ACK = SND.UNA) with nothing outstanding is simply ignored.
#[test]
fn test_established_dup_ack() {
    let mut h = established();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.assert_state(TcpState::Established);
}

/// A FIN arriving before missing data is not processed: duplicate ACK, no CLOSE-WAIT.
#[test]
fn test_established_fin_out_of_order() {
    let mut h = established();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 101, iss + 1) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
    assert_kind(h.read(), ErrorKind::WouldBlock);
}

/// RFC 9293 3.10.7.4 (segments are processed in sequence; eighth check, FIN): a FIN
/// beyond a hole waits for it. The data filling the hole is acknowledged together with
/// the FIN, exactly as if both had come in order: ACK = the FIN's sequence number + 1,
/// CLOSE-WAIT, the data then end of stream. (Before, the early FIN was forgotten and the
/// ACK stopped at the data: the peer had to send its FIN again.)
#[test]
fn test_established_fin_out_of_order_then_hole_filled() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 17);
    send!(h, h.seg(FIN | ACK, X + 101, iss + 1) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 1, X + 102).win(WIN - 100)]);
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read().unwrap(), data);
    assert_eq!(h.read().unwrap(), b"");
    // The peer's retransmission of its FIN is a duplicate now: ACK, nothing else.
    send!(h, h.seg(FIN | ACK, X + 101, iss + 1) => [h.reply(ACK, iss + 1, X + 102)]);
    h.assert_state(TcpState::CloseWait);
}

/// Out-of-order data with the FIN (tests/scripts/data/reassembly-fin.pkt, with data
/// before the FIN): kept together; the segment filling the hole moves RCV.NXT over the
/// data and the FIN in one step (RFC 9293 3.10.7.4).
#[test]
fn test_established_data_fin_out_of_order_then_hole_filled() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(300, 18);
    send!(h, h.seg(FIN | PSH | ACK, X + 201, iss + 1).data(&data[200..]) => [h.reply(ACK, iss + 1, X + 1)]);
    send!(h, h.seg(ACK, X + 101, iss + 1).data(&data[100..200]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&data[..100]) => [h.reply(ACK, iss + 1, X + 302).win(WIN - 300)]);
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read_all_to_eof(), data);
}

/// The early FIN's sequence number must lie inside the window (RFC 9293 3.10.7.4: a
/// FIN occupies a sequence number, and only what is in the window is accepted). Data
/// ending at the right edge with a FIN: the data is kept, the FIN is not, so once the
/// hole is filled the ACK stops at the data (window 0) and the FIN must come again.
#[test]
fn test_established_fin_out_of_order_beyond_the_window() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(BUF, 19);
    let edge = 4000;
    send!(h, h.seg(FIN | PSH | ACK, X + 1 + edge, iss + 1).data(&data[edge as usize..]) => [h.reply(ACK, iss + 1, X + 1)]);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&data[..1460]) => [h.reply(ACK, iss + 1, X + 1461).win(WIN - 1460)]);
    send!(h, h.seg(ACK, X + 1461, iss + 1).data(&data[1460..2920]) => [h.reply(ACK, iss + 1, X + 2921).win(WIN - 2920)]);
    send!(h, h.seg(ACK, X + 2921, iss + 1).data(&data[2920..edge as usize]) => [h.reply(ACK, iss + 1, X + 1 + BUF as u32).win(0)]);
    h.assert_state(TcpState::Established);
    assert_eq!(h.read_all(), data);
    h.drain_window_updates(iss + 1, X + 1 + BUF as u32);
    // The FIN again, now in the window.
    send!(h, h.seg(FIN | ACK, X + 1 + BUF as u32, iss + 1) => [h.reply(ACK, iss + 1, X + 2 + BUF as u32)]);
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read().unwrap(), b"");
}

/// Contradicting FINs: the first one to wait stands. A second FIN elsewhere is
/// acknowledged and ignored, and so are octets at or beyond the waiting FIN (the end of
/// the stream); the stream delivered ends where the first FIN said (RFC 9293 3.10.7.4).
#[test]
fn test_established_fin_out_of_order_conflicting() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(300, 20);
    send!(h, h.seg(FIN | ACK, X + 201, iss + 1) => [h.reply(ACK, iss + 1, X + 1)]);
    // An earlier FIN: contradicts the waiting one.
    send!(h, h.seg(FIN | ACK, X + 151, iss + 1) => [h.reply(ACK, iss + 1, X + 1)]);
    // A later FIN, after data running past the waiting FIN: only [X+101, X+201) is kept.
    send!(h, h.seg(FIN | ACK, X + 101, iss + 1).data(&data[100..]) => [h.reply(ACK, iss + 1, X + 1)]);
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().out_of_order, 100);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&data[..100]) => [h.reply(ACK, iss + 1, X + 202).win(WIN - 200)]);
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read_all_to_eof(), &data[..200]);
}

/// A FIN below out-of-order data already held contradicts that data: it is acknowledged
/// but does not wait (the behaviour for such a FIN arriving in order, too); filling the
/// hole delivers the data before it and the connection stays ESTABLISHED.
#[test]
fn test_established_fin_out_of_order_below_held_data() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(300, 21);
    send!(h, h.seg(ACK, X + 201, iss + 1).data(&data[200..]) => [h.reply(ACK, iss + 1, X + 1)]);
    send!(h, h.seg(FIN | ACK, X + 101, iss + 1) => [h.reply(ACK, iss + 1, X + 1)]);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&data[..100]) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    h.assert_state(TcpState::Established);
    send!(h, h.seg(ACK, X + 101, iss + 1).data(&data[100..200]) => [h.reply(ACK, iss + 1, X + 301).win(WIN - 300)]);
    h.assert_state(TcpState::Established);
    assert_eq!(h.read_all(), data);
}

/// FIN-WAIT-2: the peer's early FIN waits for the hole, then TIME-WAIT (RFC 9293
/// 3.10.7.4, eighth check, FIN-WAIT-2).
#[test]
fn test_fin_wait_2_fin_out_of_order_then_hole_filled() {
    let mut h = fin_wait_2();
    let iss = h.iss;
    let data = payload(50, 22);
    send!(h, h.seg(FIN | ACK, X + 51, iss + 2) => [h.reply(ACK, iss + 2, X + 1)]);
    h.assert_state(TcpState::FinWait2);
    send!(h, h.seg(ACK, X + 1, iss + 2).data(&data) => [h.reply(ACK, iss + 2, X + 52).win(WIN - 50)]);
    h.assert_state(TcpState::TimeWait);
    assert_eq!(h.read_all_to_eof(), data);
}

// ------------------------------------------------------------------------- ESTABLISHED: RST and SYN
// (RSTs in and out of the window and SYNs drawing challenge ACKs are scripts, also run
// against Linux: tests/scripts/rst/established-rst-*.pkt, rfc5961/syn-in-*.pkt.)

/// RFC 5961 3.2: a RST with SEG.SEQ = RCV.NXT resets the connection, silently.
#[test]
fn test_established_rst() {
    let mut h = established();
    send!(h, h.seg(RST, X + 1, 0) => []);
    assert_kind(h.read(), ErrorKind::ConnectionReset);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
    // Nothing is ever sent for this connection again.
    h.timers_at(h.now + Duration::from_secs(60));
    h.expect_nothing();
}

/// A late retransmission of the peer's original SYN (seq X, now old): an ACK, nothing else.
#[test]
fn test_established_syn_old() {
    let mut h = established();
    let iss = h.iss;
    send!(h, h.seg(SYN, X, 0).opts(&[mss(1460)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
}

// ------------------------------------------------------------------------- ESTABLISHED: sending

/// A write goes out at once as one PSH|ACK segment (no Nagle delay for the first).
#[test]
fn test_established_send() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 11);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), 100);
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(&data)]);
    assert_eq!(h.row().unwrap().send_queue, 100);
}

/// An ACK that moves SND.UNA updates the send window even when its SEG.SEQ is below
/// SND.WL1 (the peer's retransmission that fills a hole, sent with its current ACK and
/// window): otherwise the old window would slide along with SND.UNA past the right edge
/// the peer offered (Linux's `tcp_may_update_window` has the same rule).
#[test]
fn test_established_send_window_from_retransmitted_segment() {
    let mut h = established();
    let iss = h.iss;
    let (a, b) = (payload(100, 14), payload(100, 15));
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    h.stack.tcp_send(h.conn(), &payload(1000, 16)).unwrap();
    let sent: usize = h.recv_all().iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, 1000);
    // The peer's second segment arrives first (its first was lost): SND.WL1 = X + 101.
    h.send(h.seg(ACK, X + 101, iss + 1).win(1000).data(&b));
    h.recv_all();
    // Its retransmission of the first fills the hole, acknowledges 600 of our bytes and
    // offers 100 more: the right edge is iss + 701, not iss + 1601.
    h.send(h.seg(PSH | ACK, X + 1, iss + 601).win(100).data(&a));
    h.recv_all();
    h.stack.tcp_send(h.conn(), &payload(500, 17)).unwrap();
    let more: usize = h.recv_all().iter().map(|s| s.payload.len()).sum();
    assert_eq!(more, 0, "iss + 1001 is already past the right edge iss + 701");
    assert_eq!(h.read_all(), [a, b].concat());
}

/// The peer's ACK frees the send queue; nothing more is sent, ever (the retransmission
/// timer is off, RFC 6298 5.2).
#[test]
fn test_established_send_acked() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 12);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(&data)]);
    h.advance(ms(20));
    send!(h, h.seg(ACK, X + 1, iss + 101) => []);
    assert_eq!(h.row().unwrap().send_queue, 0);
    assert_eq!(h.stack.tcp_send_capacity(h.conn()).unwrap(), BUF);
    h.timers_at(h.now + Duration::from_secs(120));
    h.expect_nothing();
}

/// The peer's window bounds what is in flight: window 10 -> 10 bytes, the rest when the
/// window opens. (The peer's SYN already offered 10, so sender-side SWS avoidance,
/// RFC 9293 3.8.6.2.1, allows the small segment.)
#[test]
fn test_established_send_peer_window() {
    let mut h = listen();
    h.send(h.seg(SYN, X, 0).win(10).opts(&[mss(1460)]));
    let iss = Sq(h.recv_one().seq);
    h.iss = iss;
    send!(h, h.seg(ACK, X + 1, iss + 1).win(10) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.advance(ms(10));
    let data = payload(100, 13);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), 100);
    h.expect(&[h.reply(ACK, iss + 1, X + 1).data(&data[..10]).psh_any()]);
    h.advance(ms(10));
    send!(h, h.seg(ACK, X + 1, iss + 11).win(100) => [h.reply(PSH | ACK, iss + 11, X + 1).data(&data[10..])]);
    send!(h, h.seg(ACK, X + 1, iss + 101).win(100) => []);
}

/// RFC 7323 2.2/2.3: the window of the SYN-ACK is taken as is (100), later window
/// fields are scaled by the peer's shift (WS 2: 100 << 2 = 400).
#[test]
fn test_established_send_scaled_window() {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(SYN | ACK, X, iss + 1).win(100).opts(&[mss(1460), ws(2)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.advance(ms(10));
    let data = payload(1000, 14);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), 1000);
    h.expect(&[h.reply(ACK, iss + 1, X + 1).data(&data[..100]).psh_any()]);
    h.advance(ms(10));
    send!(h, h.seg(ACK, X + 1, iss + 101).win(100) => [h.reply(ACK, iss + 101, X + 1).data(&data[100..500]).psh_any()]);
}

/// Unacknowledged data is retransmitted when the RTO expires (at most the initial RTO
/// here, since the handshake took no time), with the same sequence number and bytes;
/// the next timeout is twice as long (RFC 6298 5.4-5.6).
#[test]
fn test_established_retransmit() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 15);
    let sent_at = h.now;
    h.stack.tcp_send(h.conn(), &data).unwrap();
    let seg = h.reply(PSH | ACK, iss + 1, X + 1).data(&data);
    h.expect(std::slice::from_ref(&seg));
    let d1 = h.stack.poll_timeout().expect("the retransmission timer runs");
    assert!(d1 > sent_at && d1 <= sent_at + RTO_INITIAL, "RTO deadline {d1:?} for data sent at {sent_at:?}");
    h.timers_at(just_before(d1));
    h.expect_nothing();
    h.timers_at(d1);
    h.expect(&[seg.clone().psh_any()]);
    let d2 = h.stack.poll_timeout().expect("the retransmission timer runs again");
    assert_eq!(d2 - d1, 2 * (d1 - sent_at), "RFC 6298 5.5: back off the timer");
    h.timers_at(d2);
    h.expect(&[seg.psh_any()]);
    // Finally acknowledged: no more retransmissions.
    send!(h, h.seg(ACK, X + 1, iss + 101) => []);
    h.timers_at(h.now + Duration::from_secs(120));
    h.expect_nothing();
}

// ------------------------------------------------------------------------- ESTABLISHED: closing

/// RFC 9293 3.10.7.4 eighth check: FIN -> ACK, CLOSE-WAIT; the reader sees end of stream.
#[test]
fn test_established_fin() {
    let mut h = established();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 1) => [h.reply(ACK, iss + 1, X + 2)]);
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read().unwrap(), b"");
    assert_eq!(h.read().unwrap(), b"", "end of stream stays end of stream");
}

/// Data and FIN in one segment: data first, then end of stream.
#[test]
fn test_established_data_fin() {
    let mut h = established();
    let iss = h.iss;
    let data = payload(100, 16);
    send!(h, h.seg(FIN | PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 1, X + 102).win(WIN - 100)]);
    h.assert_state(TcpState::CloseWait);
    assert_eq!(h.read().unwrap(), data);
    assert_eq!(h.read().unwrap(), b"");
}

/// `close` in ESTABLISHED: FIN|ACK <SEQ=SND.NXT>, FIN-WAIT-1, handle released (orphan).
#[test]
fn test_established_close() {
    let mut h = established();
    let iss = h.iss;
    let c = h.conn();
    h.stack.close(c).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 1)]);
    h.assert_orphan_state(TcpState::FinWait1);
}

/// `shutdown(Write)` in ESTABLISHED: FIN, FIN-WAIT-1, further writes fail.
#[test]
fn test_established_shutdown_write() {
    let mut h = established();
    let iss = h.iss;
    h.stack.tcp_shutdown(h.conn(), Shutdown::Write).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::FinWait1);
    assert_kind(h.stack.tcp_send(h.conn(), b"late"), ErrorKind::BrokenPipe);
    h.expect_nothing();
}

// ------------------------------------------------------------------------- FIN-WAIT-1

/// Our FIN acknowledged -> FIN-WAIT-2, silently.
#[test]
fn test_fin_wait_1_ack() {
    let mut h = fin_wait_1();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 2) => []);
    h.assert_state(TcpState::FinWait2);
}

/// Simultaneous close: a FIN that does not acknowledge ours -> ACK, CLOSING.
#[test]
fn test_fin_wait_1_fin() {
    let mut h = fin_wait_1();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 1) => [h.reply(ACK, iss + 2, X + 2)]);
    h.assert_state(TcpState::Closing);
}

/// FIN that also acknowledges our FIN -> ACK, straight to TIME-WAIT.
#[test]
fn test_fin_wait_1_fin_ack() {
    let mut h = fin_wait_1();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 2) => [h.reply(ACK, iss + 2, X + 2)]);
    h.assert_state(TcpState::TimeWait);
}

/// Half-close: after shutdown(Write) the peer may keep sending and we keep reading.
#[test]
fn test_fin_wait_1_recv() {
    let mut h = fin_wait_1();
    let iss = h.iss;
    let data = payload(100, 17);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&data) => [h.reply(ACK, iss + 2, X + 101).win(WIN - 100)]);
    h.assert_state(TcpState::FinWait1);
    assert_eq!(h.read().unwrap(), data);
}

/// A lost FIN is retransmitted when the RTO expires.
#[test]
fn test_fin_wait_1_retransmit_fin() {
    let mut h = fin_wait_1();
    let iss = h.iss;
    let sent_at = h.now;
    let d = h.stack.poll_timeout().expect("the FIN is timed");
    assert!(d > sent_at && d <= sent_at + RTO_INITIAL, "RTO deadline {d:?} for FIN sent at {sent_at:?}");
    h.timers_at(d);
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 1)]);
    send!(h, h.seg(ACK, X + 1, iss + 2) => []);
    h.assert_state(TcpState::FinWait2);
}

/// RST at RCV.NXT in FIN-WAIT-1 (orphan): the connection is gone, nothing sent.
#[test]
fn test_fin_wait_1_rst() {
    let mut h = fin_wait_1_orphan();
    send!(h, h.seg(RST, X + 1, 0) => []);
    h.assert_gone();
    h.timers_at(h.now + Duration::from_secs(60));
    h.expect_nothing();
}

/// The whole active close of a released handle, followed in the socket table:
/// FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT -> gone after 2 MSL.
#[test]
fn test_fin_wait_1_orphan_close_sequence() {
    let mut h = fin_wait_1_orphan();
    let iss = h.iss;
    h.assert_orphan_state(TcpState::FinWait1);
    send!(h, h.seg(ACK, X + 1, iss + 2) => []);
    h.assert_orphan_state(TcpState::FinWait2);
    h.advance(ms(100));
    let t0 = h.now;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 2) => [h.reply(ACK, iss + 2, X + 2)]);
    h.assert_orphan_state(TcpState::TimeWait);
    assert_eq!(h.stack.poll_timeout(), Some(t0 + TWO_MSL));
    h.timers_at(t0 + TWO_MSL);
    h.expect_nothing();
    h.assert_gone();
}

// ------------------------------------------------------------------------- FIN-WAIT-2

/// FIN -> ACK, TIME-WAIT; end of stream for the reader.
#[test]
fn test_fin_wait_2_fin() {
    let mut h = fin_wait_2();
    let iss = h.iss;
    send!(h, h.seg(FIN | ACK, X + 1, iss + 2) => [h.reply(ACK, iss + 2, X + 2)]);
    h.assert_state(TcpState::TimeWait);
    assert_eq!(h.read().unwrap(), b"");
}

/// Half-close: data keeps flowing to us in FIN-WAIT-2, then the peer's FIN. (Two full
/// segments are read before the FIN, so that the reopened window is the whole buffer
/// under any receiver SWS rule, RFC 9293 3.8.6.2.2.)
#[test]
fn test_fin_wait_2_recv() {
    let mut h = fin_wait_2();
    let iss = h.iss;
    let data = payload(2920, 18);
    send!(h, h.seg(ACK, X + 1, iss + 2).data(&data[..1460]) => [h.reply(ACK, iss + 2, X + 1461).win(WIN - 1460)]);
    send!(h, h.seg(PSH | ACK, X + 1461, iss + 2).data(&data[1460..]) => [h.reply(ACK, iss + 2, X + 2921).win(WIN - 2920)]);
    h.assert_state(TcpState::FinWait2);
    assert_eq!(h.read_all(), data);
    h.drain_window_updates(iss + 2, X + 2921);
    send!(h, h.seg(FIN | ACK, X + 2921, iss + 2) => [h.reply(ACK, iss + 2, X + 2922)]);
    assert_eq!(h.read().unwrap(), b"");
    h.assert_state(TcpState::TimeWait);
}

/// RST in FIN-WAIT-2: closed, the reader learns of the reset.
#[test]
fn test_fin_wait_2_rst() {
    let mut h = fin_wait_2();
    send!(h, h.seg(RST, X + 1, 0) => []);
    assert_kind(h.read(), ErrorKind::ConnectionReset);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
}

/// RFC 5961 3.2 applies in every synchronized state: in-window RST -> challenge ACK.
#[test]
fn test_fin_wait_2_rst_in_window() {
    let mut h = fin_wait_2();
    let iss = h.iss;
    send!(h, h.seg(RST, X + 10, 0) => [h.reply(ACK, iss + 2, X + 1)]);
    h.assert_state(TcpState::FinWait2);
}

// ------------------------------------------------------------------------- CLOSING

/// Our FIN acknowledged in CLOSING -> TIME-WAIT, silently.
#[test]
fn test_closing_ack() {
    let mut h = closing();
    let iss = h.iss;
    h.assert_orphan_state(TcpState::Closing);
    send!(h, h.seg(ACK, X + 2, iss + 2) => []);
    h.assert_orphan_state(TcpState::TimeWait);
}

/// RST in CLOSING: gone.
#[test]
fn test_closing_rst() {
    let mut h = closing();
    send!(h, h.seg(RST, X + 2, 0) => []);
    h.assert_gone();
}

// ------------------------------------------------------------------------- TIME-WAIT

/// TIME-WAIT lasts exactly 2 MSL, then the socket leaves the table.
#[test]
fn test_time_wait_expires() {
    let mut h = time_wait();
    let t0 = h.now;
    assert_eq!(h.stack.poll_timeout(), Some(t0 + TWO_MSL));
    h.timers_at(just_before(t0 + TWO_MSL));
    h.expect_nothing();
    h.assert_orphan_state(TcpState::TimeWait);
    h.timers_at(t0 + TWO_MSL);
    h.expect_nothing();
    h.assert_gone();
    assert_eq!(h.stack.poll_timeout(), None, "nothing left to time");
}

/// A retransmitted FIN in TIME-WAIT is acknowledged again and restarts the 2 MSL timer
/// (RFC 9293 3.10.7.4, TIME-WAIT under the eighth check).
#[test]
fn test_time_wait_fin_retransmitted() {
    let mut h = time_wait();
    let iss = h.iss;
    let t0 = h.now;
    h.advance(Duration::from_secs(1));
    send!(h, h.seg(FIN | ACK, X + 1, iss + 2) => [h.reply(ACK, iss + 2, X + 2)]);
    let t1 = h.now;
    assert_eq!(h.stack.poll_timeout(), Some(t1 + TWO_MSL));
    h.timers_at(t0 + TWO_MSL);
    h.expect_nothing();
    h.assert_orphan_state(TcpState::TimeWait);
    h.timers_at(t1 + TWO_MSL);
    h.assert_gone();
}

// ------------------------------------------------------------------------- CLOSE-WAIT

/// `close` in CLOSE-WAIT: FIN|ACK, LAST-ACK (orphan).
#[test]
fn test_close_wait_close() {
    let mut h = close_wait();
    let iss = h.iss;
    assert_eq!(h.read().unwrap(), b"");
    h.stack.close(h.conn()).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 2)]);
    h.assert_orphan_state(TcpState::LastAck);
}

/// The peer half-closed; we can still send.
#[test]
fn test_close_wait_send() {
    let mut h = close_wait();
    let iss = h.iss;
    let data = payload(100, 19);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), 100);
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 2).data(&data)]);
    send!(h, h.seg(ACK, X + 2, iss + 101) => []);
    h.assert_state(TcpState::CloseWait);
}

/// RFC 5961 4.2 in CLOSE-WAIT: SYN -> challenge ACK.
#[test]
fn test_close_wait_syn() {
    let mut h = close_wait();
    let iss = h.iss;
    send!(h, h.seg(SYN, X + 2, 0).opts(&[mss(1460)]) => [h.reply(ACK, iss + 1, X + 2)]);
    h.assert_state(TcpState::CloseWait);
}

/// RST in CLOSE-WAIT -> CLOSED.
#[test]
fn test_close_wait_rst() {
    let mut h = close_wait();
    send!(h, h.seg(RST, X + 2, 0) => []);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
}

// ------------------------------------------------------------------------- LAST-ACK

/// The ACK of our FIN ends the connection: CLOSED, gone from the table.
#[test]
fn test_last_ack_ack() {
    let mut h = last_ack();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 2, iss + 2) => []);
    h.assert_gone();
    h.timers_at(h.now + Duration::from_secs(60));
    h.expect_nothing();
}

/// An ACK that does not cover our FIN leaves us in LAST-ACK.
#[test]
fn test_last_ack_ack_not_fin() {
    let mut h = last_ack();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 2, iss + 1) => []);
    h.assert_orphan_state(TcpState::LastAck);
}

/// The FIN of LAST-ACK is retransmitted when unanswered.
#[test]
fn test_last_ack_retransmit_fin() {
    let mut h = last_ack();
    let iss = h.iss;
    let d = h.stack.poll_timeout().expect("the FIN is timed");
    assert!(d > h.now && d <= h.now + RTO_INITIAL);
    h.timers_at(d);
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 2)]);
}

/// RST in LAST-ACK: gone.
#[test]
fn test_last_ack_rst() {
    let mut h = last_ack();
    send!(h, h.seg(RST, X + 2, 0) => []);
    h.assert_gone();
}

// ------------------------------------------------------------------------- SYN-SENT

/// Active open: our SYN (checked in `syn_sent`), state SYN-SENT, not yet connected.
#[test]
fn test_syn_sent_syn() {
    let mut h = syn_sent();
    h.assert_state(TcpState::SynSent);
    assert_eq!(h.row().unwrap().owner, Owner::App);
    assert!(!h.stack.tcp_poll_connect(h.conn()).unwrap());
    assert_kind(h.stack.tcp_send(h.conn(), b"early"), ErrorKind::WouldBlock);
    h.expect_nothing();
}

/// RFC 9293 3.10.7.3: SYN|ACK acknowledging our SYN -> ACK <SEQ=ISS+1><ACK=Y+1>, ESTABLISHED.
#[test]
fn test_syn_sent_syn_ack() {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(SYN | ACK, X, iss + 1).opts(&[mss(1460), ws(0)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
    assert!(h.stack.tcp_poll_connect(h.conn()).unwrap());
    // And the connection carries data.
    let data = payload(100, 20);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(&data)]);
}

/// RST|ACK acknowledging our SYN: connection refused, no reply.
#[test]
fn test_syn_sent_rst_ack() {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(RST | ACK, 0, iss + 1).win(0) => []);
    assert_kind(h.stack.tcp_poll_connect(h.conn()), ErrorKind::ConnectionRefused);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
    // No SYN retransmission afterwards.
    h.timers_at(h.now + Duration::from_secs(60));
    h.expect_nothing();
}

/// RFC 9293 3.10.7.3: a RST without ACK in SYN-SENT is dropped.
#[test]
fn test_syn_sent_rst_no_ack() {
    let mut h = syn_sent();
    send!(h, h.seg(RST, X, 0) => []);
    h.assert_state(TcpState::SynSent);
    assert!(!h.stack.tcp_poll_connect(h.conn()).unwrap());
}

/// A RST whose ACK is not for our SYN is dropped (no RST is ever answered with RST).
#[test]
fn test_syn_sent_rst_bad_ack() {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(RST | ACK, 0, iss + 100) => []);
    h.assert_state(TcpState::SynSent);
}

/// An ACK not for our SYN (SEG.ACK =< ISS or > SND.NXT) -> <SEQ=SEG.ACK><CTL=RST>, stay.
#[test]
fn test_syn_sent_bad_ack() {
    let mut h = syn_sent();
    let iss = h.iss;
    let bad = iss + 100;
    send!(h, h.seg(ACK, X, bad) => [h.rst_for_ack(bad)]);
    h.assert_state(TcpState::SynSent);
    // SEG.ACK = ISS is unacceptable too, also with SYN set.
    send!(h, h.seg(SYN | ACK, X, iss).opts(&[mss(1460)]) => [h.rst_for_ack(iss)]);
    h.assert_state(TcpState::SynSent);
    // The right SYN-ACK still works.
    send!(h, h.seg(SYN | ACK, X, iss + 1).opts(&[mss(1460), ws(0)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
}

/// Simultaneous open: a bare SYN in SYN-SENT -> SYN|ACK <SEQ=ISS><ACK=Y+1>,
/// SYN-RECEIVED; the ACK of our SYN then establishes.
#[test]
fn test_syn_sent_syn_simultaneous() {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(SYN, X, 0).opts(&[mss(1460), ws(0)])
        => [h.reply(SYN | ACK, iss, X + 1).opts(&[mss(MSS), ws(0)])]);
    h.assert_state(TcpState::SynReceived);
    assert!(!h.stack.tcp_poll_connect(h.conn()).unwrap());
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.assert_state(TcpState::Established);
    assert!(h.stack.tcp_poll_connect(h.conn()).unwrap());
}

/// Simultaneous open as in RFC 9293 figure 8: in SYN-RECEIVED, the peer's SYN-ACK (its
/// SYN again, SEG.SEQ = IRS, below RCV.NXT, and the ACK of ours) establishes the
/// connection; the repeated SYN is acknowledged, and the window of a segment with SYN
/// is not scaled (RFC 7323 2.2).
#[test]
fn test_syn_received_simultaneous_syn_ack() {
    let mut h = syn_sent();
    let iss = h.iss;
    send!(h, h.seg(SYN, X, 0).opts(&[mss(1460), ws(7)])
        => [h.reply(SYN | ACK, iss, X + 1).opts(&[mss(MSS), ws(0)])]);
    h.assert_state(TcpState::SynReceived);
    send!(h, h.seg(SYN | ACK, X, iss + 1).win(100).opts(&[mss(1460), ws(7)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
    assert!(h.stack.tcp_poll_connect(h.conn()).unwrap());
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().snd_wnd, 100, "the SYN-ACK's window, unscaled");
    // Data flows.
    let data = payload(100, 7);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(&data)]);
    // The window of a segment without SYN is scaled: 2 << 7.
    send!(h, h.seg(ACK, X + 1, iss + 101).win(2) => []);
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().snd_wnd, 256);
}

/// The unanswered SYN is resent after 1 s, then 2 s, then 4 s (RFC 6298 2.1 and 5.5).
#[test]
fn test_syn_sent_retransmit() {
    let mut h = syn_sent();
    let iss = h.iss;
    let syn = h.reply(SYN, iss, 0).opts(&[mss(MSS), ws(0)]);
    let mut due = Instant::ZERO;
    for backoff in [1u32, 2, 4] {
        due += RTO_INITIAL * backoff;
        assert_eq!(h.stack.poll_timeout(), Some(due), "retransmission #{backoff}");
        h.timers_at(just_before(due));
        h.expect_nothing();
        h.timers_at(due);
        h.expect(std::slice::from_ref(&syn));
    }
    assert!(h.stack.stats().tcp_retransmits >= 3);
    // The late SYN-ACK is still welcome.
    send!(h, h.seg(SYN | ACK, X, iss + 1).opts(&[mss(1460), ws(0)]) => [h.reply(ACK, iss + 1, X + 1)]);
    h.assert_state(TcpState::Established);
}

/// With `syn_retries` = 2: SYN at 0 s, 1 s and 3 s; when the timer expires again (7 s)
/// the connect fails with TimedOut and nothing more is sent.
#[test]
fn test_syn_sent_timeout() {
    let mut h = syn_sent_with(Config { syn_retries: 2, ..config() });
    let iss = h.iss;
    let syn = h.reply(SYN, iss, 0).opts(&[mss(MSS), ws(0)]);
    for due in [1, 3] {
        h.timers_at(Instant::from_secs(due));
        h.expect(std::slice::from_ref(&syn));
        assert!(!h.stack.tcp_poll_connect(h.conn()).unwrap());
    }
    assert_eq!(h.stack.poll_timeout(), Some(Instant::from_secs(7)));
    h.timers_at(just_before(Instant::from_secs(7)));
    h.expect_nothing();
    assert!(!h.stack.tcp_poll_connect(h.conn()).unwrap());
    h.timers_at(Instant::from_secs(7));
    h.expect_nothing();
    assert_kind(h.stack.tcp_poll_connect(h.conn()), ErrorKind::TimedOut);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
    h.timers_at(Instant::from_secs(100));
    h.expect_nothing();
}

// ------------------------------------------------------------------------- active open, later states

/// The active side closes first; same FIN-WAIT path as the passive side.
#[test]
fn test_established_active_close() {
    let mut h = established_active();
    let iss = h.iss;
    h.stack.tcp_shutdown(h.conn(), Shutdown::Write).unwrap();
    h.expect(&[h.reply(FIN | ACK, iss + 1, X + 1)]);
    send!(h, h.seg(FIN | ACK, X + 1, iss + 2) => [h.reply(ACK, iss + 2, X + 2)]);
    h.assert_state(TcpState::TimeWait);
}

/// In-window RST on the active side resets it too, and a send afterwards fails.
#[test]
fn test_established_active_rst() {
    let mut h = established_active();
    send!(h, h.seg(RST | ACK, X + 1, h.iss + 1) => []);
    assert_kind(h.read(), ErrorKind::ConnectionReset);
    assert!(h.stack.tcp_send(h.conn(), b"x").is_err());
    h.expect_nothing();
}

// ------------------------------------------------------------------------- no socket (CLOSED)

/// RFC 9293 3.10.7.1: SYN to a closed port -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
#[test]
fn test_closed_syn() {
    let mut h = listen();
    h.local.set_port(81);
    let before = h.drops(DropReason::TcpNoSocket);
    send!(h, h.seg(SYN, X, 0).opts(&[mss(1460)]) => [h.reply(RST | ACK, 0, X + 1).win(0)]);
    assert_eq!(h.drops(DropReason::TcpNoSocket), before + 1);
    assert!(h.stack.stats().tcp_resets_sent >= 1);
}

/// SEG.LEN counts the SYN and the data.
#[test]
fn test_closed_syn_with_data() {
    let mut h = TestStack::new(config());
    send!(h, h.seg(SYN, X, 0).data(&payload(10, 21)) => [h.reply(RST | ACK, 0, X + 11).win(0)]);
}

/// Segment with ACK to a closed port -> <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn test_closed_ack() {
    let mut h = TestStack::new(config());
    let before = h.drops(DropReason::TcpNoSocket);
    send!(h, h.seg(PSH | ACK, X, 4242).data(b"hello") => [h.rst_for_ack(4242)]);
    assert_eq!(h.drops(DropReason::TcpNoSocket), before + 1);
}

/// A RST to a closed port is counted and never answered.
#[test]
fn test_closed_rst() {
    let mut h = TestStack::new(config());
    let before = h.drops(DropReason::TcpNoSocket);
    send!(h, h.seg(RST, X, 0) => []);
    send!(h, h.seg(RST | ACK, X, 99) => []);
    assert_eq!(h.drops(DropReason::TcpNoSocket), before + 2);
}

/// After a connection is gone, its late segments meet "no socket" rules: RST.
#[test]
fn test_closed_after_last_ack() {
    let mut h = last_ack();
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 2, iss + 2) => []);
    h.assert_gone();
    send!(h, h.seg(PSH | ACK, X + 2, iss + 2).data(b"late") => [h.rst_for_ack(iss + 2)]);
}

#[path = "tests/ext.rs"]
mod ext;

#[path = "tests/recovery.rs"]
mod recovery;

#[path = "tests/hostile.rs"]
mod hostile;
#[path = "tests/slow_reader.rs"]
mod slow_reader;
