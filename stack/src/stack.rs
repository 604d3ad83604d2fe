//! The sans-IO core: packets and `now` in, packets and wakeups out, timers asked for.
//!
//! ```text
//!   input(now, packet) ──> parse ──> demux ──> tcp / udp / icmp
//!   poll_transmit(now, buf) <── sockets with something to send, control replies
//!   poll_timeout() / handle_timeout(now)
//!   poll_wakeup() -> handles whose readiness changed
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};

use crate::config::Config;
use crate::demux::{Demux, Match};
use crate::ports::{self, PortTable};
use crate::rand::{Rng, SipKey};
use crate::seq::SeqNum;
use crate::socket::{Owner, Protocol, SocketHandle, SocketInfo};
use crate::tcp::conn::{Conn, Reply, Verdict};
use crate::tcp::{TcpReject, TcpState};
use crate::time::Instant;
use crate::wire::{
    self, icmp, DropReason, IcmpRepr, IcmpV4Message, IcmpV6Message, IpHeader, TcpFlags, TcpOptions, TcpRepr, Transport,
    UdpRepr,
};

/// Counters. Every dropped packet is counted under exactly one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_resets_sent: u64,
    pub tcp_retransmits: u64,
    pub icmp_echo_replies: u64,
    pub icmp_unreachable_sent: u64,
    pub icmp_errors_rate_limited: u64,
    /// TCP segments rejected by a listener or a connection, per reason (each is also
    /// counted once under `DropReason::TcpRejected`).
    pub tcp_rejects: [u64; TcpReject::COUNT],
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn tcp_rejected(&self, reason: TcpReject) -> u64 {
        self.tcp_rejects[reason as usize]
    }
}

/// Most control packets (RSTs, ICMP replies) waiting for `poll_transmit`; more are
/// dropped, which is what a router's rate limit would do too.
const MAX_CTRL_QUEUE: usize = 1024;

struct Listener {
    local: SocketAddr,
    backlog: usize,
    /// Embryonic connections (SYN-RECEIVED), RFC 9293 3.10.7.2.
    half_open: Vec<SocketHandle>,
    /// Established connections waiting for `tcp_accept`.
    accept_q: VecDeque<SocketHandle>,
}

struct UdpSock {
    local: SocketAddr,
    remote: Option<SocketAddr>,
    rxq: VecDeque<(SocketAddr, Vec<u8>)>,
    txq: VecDeque<(SocketAddr, Vec<u8>)>,
}

enum Sock {
    Listener(Listener),
    Tcp(Box<Conn>),
    Udp(UdpSock),
}

struct Slot {
    gen: u32,
    sock: Option<Sock>,
    owner: Owner,
    /// Deadline currently registered in the timer heap.
    timer: Option<Instant>,
    in_txq: bool,
    wake: bool,
}

/// The stack. See the module documentation.
pub struct Stack {
    cfg: Config,
    slots: Vec<Slot>,
    free: Vec<u32>,
    tcp_ports: PortTable,
    udp_ports: PortTable,
    demux: Demux,
    rng: Rng,
    isn_key: SipKey,
    port_key: SipKey,
    connect_counter: u32,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    txq: VecDeque<SocketHandle>,
    ctrl: VecDeque<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    wakeups: VecDeque<SocketHandle>,
    stats: Stats,
    icmp_tokens: u32,
    icmp_refill: Instant,
    now: Instant,
    /// The connection the last TCP segment went to: bulk flows skip the hash lookup.
    /// Validated on use (slot generation, 4-tuple, not CLOSED), so it never needs
    /// invalidating.
    last_tcp: Option<SocketHandle>,
    /// Next housekeeping pass (buffer trimming), run on activity at most once per
    /// `HOUSEKEEPING_INTERVAL`, so it never wakes an idle stack.
    next_housekeeping: Instant,
}

/// How often idle connections give their buffer memory back.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn err(kind: io::ErrorKind, msg: &'static str) -> io::Error {
    io::Error::new(kind, msg)
}

fn bad_handle() -> io::Error {
    err(io::ErrorKind::NotFound, "no such socket handle")
}

fn is_unspecified(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

impl Stack {
    pub fn new(config: Config) -> Stack {
        let mut rng = Rng::new(config.seed);
        let isn_key = SipKey::from_rng(&mut rng);
        let port_key = SipKey::from_rng(&mut rng);
        let demux_key = SipKey::from_rng(&mut rng);
        let range = config.ephemeral_ports;
        let reserve = config.reserve_privileged_ports;
        Stack {
            tcp_ports: PortTable::new(range, reserve),
            udp_ports: PortTable::new(range, reserve),
            demux: Demux::new(demux_key),
            slots: Vec::new(),
            free: Vec::new(),
            rng,
            isn_key,
            port_key,
            connect_counter: 0,
            timers: BinaryHeap::new(),
            txq: VecDeque::new(),
            ctrl: VecDeque::new(),
            pool: Vec::new(),
            wakeups: VecDeque::new(),
            stats: Stats::default(),
            icmp_tokens: config.icmp_error_rate,
            icmp_refill: Instant::ZERO,
            now: Instant::ZERO,
            next_housekeeping: Instant::ZERO + HOUSEKEEPING_INTERVAL,
            last_tcp: None,
            cfg: config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn owns_address(&self, addr: IpAddr) -> bool {
        self.cfg.addrs.contains(&addr)
    }

    fn first_addr_like(&self, ip: IpAddr) -> Option<IpAddr> {
        self.cfg.addrs.iter().copied().find(|a| same_family(*a, ip))
    }

    // ---------------------------------------------------------------- slots

    fn alloc(&mut self, sock: Sock, owner: Owner) -> SocketHandle {
        let slot = Slot { gen: 0, sock: Some(sock), owner, timer: None, in_txq: false, wake: false };
        match self.free.pop() {
            Some(idx) => {
                let s = &mut self.slots[idx as usize];
                let gen = s.gen;
                *s = Slot { gen, ..slot };
                SocketHandle { idx, gen }
            }
            None => {
                self.slots.push(slot);
                SocketHandle { idx: (self.slots.len() - 1) as u32, gen: 0 }
            }
        }
    }

    fn slot(&self, h: SocketHandle) -> Option<&Slot> {
        self.slots.get(h.idx as usize).filter(|s| s.gen == h.gen && s.sock.is_some())
    }

    fn slot_mut(&mut self, h: SocketHandle) -> Option<&mut Slot> {
        self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen && s.sock.is_some())
    }

    fn conn(&self, h: SocketHandle) -> io::Result<&Conn> {
        match self.slot(h).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Ok(c),
            Some(_) => Err(err(io::ErrorKind::InvalidInput, "not a TCP stream socket")),
            None => Err(bad_handle()),
        }
    }

    fn conn_mut(&mut self, h: SocketHandle) -> io::Result<&mut Conn> {
        match self.slot_mut(h).and_then(|s| s.sock.as_mut()) {
            Some(Sock::Tcp(c)) => Ok(c),
            Some(_) => Err(err(io::ErrorKind::InvalidInput, "not a TCP stream socket")),
            None => Err(bad_handle()),
        }
    }

    fn udp_mut(&mut self, h: SocketHandle) -> io::Result<&mut UdpSock> {
        match self.slot_mut(h).and_then(|s| s.sock.as_mut()) {
            Some(Sock::Udp(u)) => Ok(u),
            Some(_) => Err(err(io::ErrorKind::InvalidInput, "not a UDP socket")),
            None => Err(bad_handle()),
        }
    }

    /// Give back the slot of a socket whose bind failed: it holds no port and no demux
    /// entry (so `free_socket`, which removes those, must not run: the address it
    /// would remove belongs to the socket that won the bind).
    fn release_unbound(&mut self, h: SocketHandle) {
        let slot = &mut self.slots[h.idx as usize];
        slot.sock = None;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(h.idx);
    }

    /// Remove a socket for good: demux entries, port binding, slot.
    fn free_socket(&mut self, h: SocketHandle) {
        let Some(slot) = self.slot_mut(h) else { return };
        let sock = slot.sock.take();
        let owner = slot.owner;
        slot.gen = slot.gen.wrapping_add(1);
        slot.timer = None;
        slot.in_txq = false;
        slot.wake = false;
        slot.owner = Owner::App;
        self.free.push(h.idx);
        match sock {
            Some(Sock::Tcp(c)) => {
                // Only our own entry: a connection that reached CLOSED earlier left the
                // demux then, and its 4-tuple may belong to a new connection by now.
                self.remove_conn_entry(Protocol::Tcp, c.local, c.remote, h);
                if let Owner::Listener(lh) = owner {
                    if let Some(Sock::Listener(l)) = self.slot_mut(lh).and_then(|s| s.sock.as_mut()) {
                        l.half_open.retain(|x| *x != h);
                        l.accept_q.retain(|x| *x != h);
                    }
                }
            }
            Some(Sock::Listener(l)) => {
                self.demux.remove_listener(Protocol::Tcp, l.local);
                self.tcp_ports.unbind(l.local.ip(), l.local.port(), h);
            }
            Some(Sock::Udp(u)) => {
                self.demux.remove_listener(Protocol::Udp, u.local);
                self.udp_ports.unbind(u.local.ip(), u.local.port(), h);
            }
            None => {}
        }
    }

    /// Remove the demux entry of `(local, remote)` if it belongs to `h`.
    fn remove_conn_entry(&mut self, proto: Protocol, local: SocketAddr, remote: SocketAddr, h: SocketHandle) -> bool {
        if self.demux.lookup(proto, local, remote) == Some(Match::Connection(h)) {
            self.demux.remove_connection(proto, local, remote);
            true
        } else {
            false
        }
    }

    fn wake(&mut self, h: SocketHandle) {
        if let Some(s) = self.slot_mut(h) {
            if !s.wake {
                s.wake = true;
                self.wakeups.push_back(h);
            }
        }
    }

    /// After anything touched a connection: re-arm its timer, schedule output.
    fn refresh(&mut self, h: SocketHandle) {
        self.refresh_inner(h, true)
    }

    fn refresh_inner(&mut self, h: SocketHandle, schedule: bool) {
        let Some(slot) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen) else { return };
        let Some(Sock::Tcp(c)) = slot.sock.as_ref() else { return };
        let deadline = c.deadline();
        let wants = schedule && c.wants_to_send();
        let mut pushed = false;
        if deadline != slot.timer {
            slot.timer = deadline;
            if let Some(d) = deadline {
                self.timers.push(Reverse((d, h.idx, h.gen)));
                pushed = true;
            }
        }
        if wants && !slot.in_txq {
            slot.in_txq = true;
            self.txq.push_back(h);
        }
        if pushed {
            self.compact_timers();
        }
    }

    /// The heap holds stale entries (a deadline that moved) until they reach the top.
    /// Drop them once they outnumber the live ones, in place, so the heap stays about
    /// the size of the socket table and never grows (and allocates) in a steady state.
    fn compact_timers(&mut self) {
        if self.timers.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.timers.retain(|&Reverse((d, idx, gen))| {
                slots.get(idx as usize).is_some_and(|s| s.gen == gen && s.timer == Some(d))
            });
        }
    }

    /// Bookkeeping after a connection's state may have changed.
    fn after_conn_event(&mut self, h: SocketHandle, prev: TcpState) {
        let Some(slot) = self.slot(h) else { return };
        let owner = slot.owner;
        let Some(Sock::Tcp(c)) = slot.sock.as_ref() else { return };
        let state = c.state;
        if state == TcpState::Closed {
            match owner {
                Owner::App => {
                    // Keep the handle (the application learns the outcome from it), but
                    // stop matching segments to it.
                    let (l, r) = (c.local, c.remote);
                    if self.remove_conn_entry(Protocol::Tcp, l, r, h) {
                        self.wake(h);
                    }
                    if let Some(s) = self.slot_mut(h) {
                        s.timer = None;
                    }
                }
                _ => self.free_socket(h),
            }
            return;
        }
        if prev == TcpState::SynReceived && state != TcpState::SynReceived {
            if let Owner::Listener(lh) = owner {
                if let Some(Sock::Listener(l)) = self.slot_mut(lh).and_then(|s| s.sock.as_mut()) {
                    l.half_open.retain(|x| *x != h);
                    l.accept_q.push_back(h);
                }
                self.wake(lh);
            }
        }
        if owner == Owner::App {
            self.wake(h);
        }
        self.refresh(h);
    }

    fn isn(&self, now: Instant, local: SocketAddr, remote: SocketAddr) -> SeqNum {
        // RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
        // M a 4-microsecond timer.
        let mut b = [0u8; 36];
        put_addr(&mut b[0..16], local.ip());
        b[16..18].copy_from_slice(&local.port().to_be_bytes());
        put_addr(&mut b[18..34], remote.ip());
        b[34..36].copy_from_slice(&remote.port().to_be_bytes());
        let f = self.isn_key.hash(&b) as u32;
        SeqNum(f.wrapping_add((now.total_micros() / 4) as u32))
    }

    fn count_drop(&mut self, reason: DropReason, what: &str) {
        self.stats.drops[reason as usize] += 1;
        tracing::debug!(reason = reason.as_str(), detail = what, "packet dropped");
    }

    fn count_reject(&mut self, why: TcpReject) {
        self.stats.tcp_rejects[why as usize] += 1;
        self.count_drop(DropReason::TcpRejected, why.as_str());
    }

    // ---------------------------------------------------------------- I/O verbs

    /// Hand in one IP packet received at `now`. Invalid packets are counted and dropped.
    pub fn input(&mut self, now: Instant, packet: &[u8]) {
        self.now = self.now.max(now);
        if now >= self.next_housekeeping {
            self.housekeeping(now);
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += packet.len() as u64;
        let p = match wire::parse(packet) {
            Ok(p) => p,
            Err(reason) => return self.count_drop(reason, "parse"),
        };
        if !self.owns_address(p.ip.dst) {
            return self.count_drop(DropReason::NotForUs, "destination");
        }
        if self.owns_address(p.ip.src) {
            return self.count_drop(DropReason::BadSourceAddress, "source is our own address");
        }
        match p.transport {
            Transport::Tcp(seg) => self.tcp_input(now, &p.ip, &seg),
            Transport::Udp(d) => self.udp_input(now, &p.ip, &d, packet),
            Transport::Icmp(m) => self.icmp_input(&p.ip, &m),
        }
    }

    fn tcp_input(&mut self, now: Instant, ip: &IpHeader, seg: &TcpRepr<'_>) {
        let local = SocketAddr::new(ip.dst, seg.dst_port);
        let remote = SocketAddr::new(ip.src, seg.src_port);
        if seg.src_port == 0 || seg.dst_port == 0 {
            return self.count_drop(DropReason::BadTcpHeader, "port 0");
        }
        let cached = self.last_tcp.filter(|&h| {
            self.conn(h).is_ok_and(|c| c.local == local && c.remote == remote && c.state != TcpState::Closed)
        });
        let found = match cached {
            Some(h) => Some(Match::Connection(h)),
            None => self.demux.lookup(Protocol::Tcp, local, remote),
        };
        match found {
            Some(Match::Connection(h)) => {
                self.last_tcp = Some(h);
                // RFC 6191-style reuse: a new SYN above the old sequence space ends a
                // TIME-WAIT connection so the listener can take the new one.
                if let Ok(c) = self.conn(h) {
                    if c.state == TcpState::TimeWait && seg.flags.syn() && !seg.flags.ack() && seg.seq > c.rcv_nxt() {
                        self.free_socket(h);
                        return self.tcp_input(now, ip, seg);
                    }
                }
                self.conn_input(now, h, seg)
            }
            Some(Match::Listener(h)) => self.listener_input(now, h, local, remote, seg),
            None => {
                self.count_drop(DropReason::TcpNoSocket, "no listener or connection");
                self.reset_for(local, remote, seg);
            }
        }
    }

    /// RFC 9293 3.10.7.1 (CLOSED): answer anything but a RST with a RST.
    fn reset_for(&mut self, local: SocketAddr, remote: SocketAddr, seg: &TcpRepr<'_>) {
        if seg.flags.rst() {
            return;
        }
        if seg.flags.ack() {
            self.queue_rst(local, remote, seg.ack, None);
        } else {
            self.queue_rst(local, remote, SeqNum(0), Some(seg.seq + seg.seg_len()));
        }
    }

    fn queue_rst(&mut self, local: SocketAddr, remote: SocketAddr, seq: SeqNum, ack: Option<SeqNum>) {
        let mut flags = TcpFlags::RST;
        if ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        let repr = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq,
            ack: ack.unwrap_or(SeqNum(0)),
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        if self.queue_ctrl(|buf| wire::emit_tcp(buf, local.ip(), remote.ip(), &repr)) {
            self.stats.tcp_resets_sent += 1;
        }
    }

    /// Emit a control packet into a pooled buffer for the next `poll_transmit`.
    fn queue_ctrl(&mut self, emit: impl FnOnce(&mut [u8]) -> Result<usize, wire::EmitError>) -> bool {
        if self.ctrl.len() >= MAX_CTRL_QUEUE {
            return false;
        }
        let mtu = self.cfg.mtu.max(576);
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.resize(mtu, 0);
        match emit(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                self.ctrl.push_back(buf);
                true
            }
            Err(e) => {
                tracing::debug!(?e, "control packet not emitted");
                self.pool.push(buf);
                false
            }
        }
    }

    fn listener_input(
        &mut self,
        now: Instant,
        lh: SocketHandle,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) {
        // RFC 9293 3.10.7.2 (LISTEN).
        let f = seg.flags;
        if f.rst() {
            return self.count_reject(TcpReject::ListenRst);
        }
        if f.ack() {
            self.count_reject(TcpReject::ListenAck);
            return self.queue_rst(local, remote, seg.ack, None);
        }
        if !f.syn() {
            return self.count_reject(TcpReject::ListenNoSyn);
        }
        let Some(Sock::Listener(l)) = self.slot(lh).and_then(|s| s.sock.as_ref()) else { return };
        if l.half_open.len() + l.accept_q.len() >= l.backlog {
            return self.count_drop(DropReason::ListenOverflow, "backlog full");
        }
        let iss = self.isn(now, local, remote);
        let conn = Conn::accept_syn(&self.cfg, now, local, remote, iss, seg);
        let h = self.alloc(Sock::Tcp(Box::new(conn)), Owner::Listener(lh));
        if self.demux.insert_connection(Protocol::Tcp, local, remote, h).is_err() {
            self.free_socket(h);
            return;
        }
        if let Some(Sock::Listener(l)) = self.slot_mut(lh).and_then(|s| s.sock.as_mut()) {
            l.half_open.push(h);
        }
        self.stats.tcp_passive_opens += 1;
        self.refresh(h);
    }

    fn conn_input(&mut self, now: Instant, h: SocketHandle, seg: &TcpRepr<'_>) {
        let cfg = &self.cfg;
        let Some(Sock::Tcp(c)) = self.slots[h.idx as usize].sock.as_mut() else { return };
        let prev = c.state;
        let (verdict, reply) = c.process(now, cfg, seg);
        let (local, remote) = (c.local, c.remote);
        if let Verdict::Rejected(why) = verdict {
            self.count_reject(why);
        }
        if let Reply::Rst { seq, ack } = reply {
            self.queue_rst(local, remote, seq, ack);
        }
        self.after_conn_event(h, prev);
    }

    fn udp_input(&mut self, now: Instant, ip: &IpHeader, d: &UdpRepr<'_>, raw: &[u8]) {
        let local = SocketAddr::new(ip.dst, d.dst_port);
        let remote = SocketAddr::new(ip.src, d.src_port);
        let found = match self.demux.lookup(Protocol::Udp, local, remote) {
            Some(Match::Connection(h)) | Some(Match::Listener(h)) => Some(h),
            None => None,
        };
        let limit = self.cfg.udp_rx_queue;
        if let Some(h) = found {
            let mut buf = self.pool.pop().unwrap_or_default();
            let Ok(u) = self.udp_mut(h) else { return };
            if u.remote.is_none_or(|r| r == remote) {
                if u.rxq.len() >= limit {
                    self.pool.push(buf);
                    return self.count_drop(DropReason::UdpQueueFull, "receive queue full");
                }
                buf.clear();
                buf.extend_from_slice(d.payload);
                u.rxq.push_back((remote, buf));
                self.wake(h);
                return;
            }
            self.pool.push(buf);
        }
        self.count_drop(DropReason::UdpNoSocket, "no socket on port");
        // RFC 1122 4.1.3.1 / RFC 4443 3.1: port unreachable, rate limited.
        if !self.icmp_error_allowed(now) {
            self.stats.icmp_errors_rate_limited += 1;
            return;
        }
        let v6 = ip.dst.is_ipv6();
        let quote = icmp::error_quote(raw, v6);
        let msg = if v6 {
            IcmpRepr::V6(IcmpV6Message::DestUnreachable { code: icmp::v6_unreach::PORT, invoking: quote })
        } else {
            IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: icmp::v4_unreach::PORT, invoking: quote })
        };
        let (src, dst) = (ip.dst, ip.src);
        if self.queue_ctrl(|buf| wire::emit_icmp(buf, src, dst, &msg)) {
            self.stats.icmp_unreachable_sent += 1;
        }
    }

    fn icmp_error_allowed(&mut self, now: Instant) -> bool {
        let rate = self.cfg.icmp_error_rate;
        if rate == 0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.icmp_refill);
        let add = (elapsed.as_micros() * rate as u128 / 1_000_000) as u64;
        if add > 0 {
            self.icmp_tokens = (self.icmp_tokens as u64 + add).min(rate as u64) as u32;
            self.icmp_refill = now;
        }
        if self.icmp_tokens > 0 {
            self.icmp_tokens -= 1;
            true
        } else {
            false
        }
    }

    fn icmp_input(&mut self, ip: &IpHeader, m: &IcmpRepr<'_>) {
        let (src, dst) = (ip.dst, ip.src);
        // RFC 792 (echo) and RFC 4443 4.2: reply with the same identifier, sequence
        // number and data.
        let reply = match *m {
            IcmpRepr::V4(IcmpV4Message::EchoRequest { ident, seq, data }) => {
                IcmpRepr::V4(IcmpV4Message::EchoReply { ident, seq, data })
            }
            IcmpRepr::V6(IcmpV6Message::EchoRequest { ident, seq, data }) => {
                IcmpRepr::V6(IcmpV6Message::EchoReply { ident, seq, data })
            }
            _ => return self.count_drop(DropReason::IcmpIgnored, "not an echo request"),
        };
        if self.queue_ctrl(|buf| wire::emit_icmp(buf, src, dst, &reply)) {
            self.stats.icmp_echo_replies += 1;
        }
    }

    /// Write the next packet to send into `buf` and return its length, or `None` when
    /// nothing is due. `buf` must hold at least `config.mtu` bytes. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.now = self.now.max(now);
        if let Some(pkt) = self.ctrl.pop_front() {
            let n = pkt.len();
            if n <= buf.len() {
                buf[..n].copy_from_slice(&pkt);
            }
            self.pool.push(pkt);
            if n <= buf.len() {
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += n as u64;
                return Some(n);
            }
        }
        while let Some(h) = self.txq.pop_front() {
            let Some(slot) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen) else { continue };
            slot.in_txq = false;
            let n = match slot.sock.as_mut() {
                Some(Sock::Tcp(c)) => {
                    let before = c.retransmits;
                    // The payload goes straight to its place in `buf` (one copy from
                    // the send buffer), the headers are written around it.
                    let at = wire::ip_header_len(c.remote.ip()) + c.data_header_len();
                    let Some(room) = buf.get_mut(at..) else { continue };
                    let Some(out) = c.dispatch(now, room) else {
                        // Nothing sendable (window, Nagle): wait for an ACK or a timer.
                        self.refresh_inner(h, false);
                        continue;
                    };
                    self.stats.tcp_retransmits += c.retransmits - before;
                    let repr = TcpRepr {
                        src_port: c.local.port(),
                        dst_port: c.remote.port(),
                        seq: out.seq,
                        ack: out.ack,
                        flags: out.flags,
                        window: out.window,
                        urgent: 0,
                        options: out.options,
                        payload: &[],
                    };
                    let (src, dst) = (c.local.ip(), c.remote.ip());
                    if out.payload_len == 0 {
                        wire::emit_tcp(buf, src, dst, &repr)
                    } else {
                        let want = wire::ip_header_len(dst) + repr.header_len();
                        if want != at {
                            // Options other than the usual ones: move the payload.
                            if want + out.payload_len > buf.len() {
                                tracing::warn!("segment does not fit the transmit buffer");
                                continue;
                            }
                            buf.copy_within(at..at + out.payload_len, want);
                        }
                        wire::emit_tcp_in_place(buf, src, dst, &repr, out.payload_len)
                    }
                }
                Some(Sock::Udp(u)) => {
                    let Some((dst, data)) = u.txq.pop_front() else { continue };
                    let src = if is_unspecified(u.local.ip()) {
                        self.cfg.addrs.iter().copied().find(|a| same_family(*a, dst.ip()))
                    } else {
                        Some(u.local.ip())
                    };
                    let repr = UdpRepr { src_port: u.local.port(), dst_port: dst.port(), payload: &data };
                    let r = match src {
                        Some(src) => wire::emit_udp(buf, src, dst.ip(), &repr),
                        None => Err(wire::EmitError::AddressFamilyMismatch),
                    };
                    let more = !u.txq.is_empty();
                    self.pool.push(data);
                    if more {
                        slot.in_txq = true;
                        self.txq.push_back(h);
                    }
                    self.wake(h);
                    r
                }
                _ => continue,
            };
            if let Some(Sock::Tcp(_)) = self.slots[h.idx as usize].sock {
                // More may follow from the same connection: round robin.
                let slot = &mut self.slots[h.idx as usize];
                if !slot.in_txq {
                    slot.in_txq = true;
                    self.txq.push_back(h);
                }
                self.refresh(h);
            }
            match n {
                Ok(n) => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += n as u64;
                    return Some(n);
                }
                Err(e) => {
                    tracing::warn!(?e, "could not emit packet (buffer smaller than the MTU?)");
                    continue;
                }
            }
        }
        None
    }

    /// The earliest deadline at which `handle_timeout` must be called, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((d, idx, gen))) = self.timers.peek() {
            let live = self.slots.get(idx as usize).is_some_and(|s| s.gen == gen && s.timer == Some(d));
            if live {
                return Some(d);
            }
            self.timers.pop();
        }
        None
    }

    /// Run every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(&Reverse((d, idx, gen))) = self.timers.peek() {
            if d > now {
                break;
            }
            self.timers.pop();
            let h = SocketHandle { idx, gen };
            let Some(slot) = self.slots.get_mut(idx as usize).filter(|s| s.gen == gen && s.timer == Some(d)) else {
                continue;
            };
            slot.timer = None;
            let Some(Sock::Tcp(c)) = slot.sock.as_mut() else { continue };
            let prev = c.state;
            let (l, r) = (c.local, c.remote);
            if let Reply::Rst { seq, ack } = c.on_timer(now, &self.cfg) {
                self.queue_rst(l, r, seq, ack);
            }
            self.after_conn_event(h, prev);
            self.refresh(h);
        }
    }

    /// A socket whose readiness (readable, writable, connected, closed, acceptable) may
    /// have changed since the last call. The runtime uses it to wake blocked callers.
    pub fn poll_wakeup(&mut self) -> Option<SocketHandle> {
        while let Some(h) = self.wakeups.pop_front() {
            if let Some(s) = self.slot_mut(h) {
                if s.wake {
                    s.wake = false;
                    return Some(h);
                }
            }
        }
        None
    }

    // ---------------------------------------------------------------- TCP

    fn check_local(&self, local: SocketAddr) -> io::Result<()> {
        let ip = local.ip();
        if is_unspecified(ip) {
            if self.first_addr_like(ip).is_none() {
                return Err(err(io::ErrorKind::AddrNotAvailable, "the stack has no address of that family"));
            }
            return Ok(());
        }
        if !self.owns_address(ip) {
            return Err(err(io::ErrorKind::AddrNotAvailable, "address not owned by this stack"));
        }
        Ok(())
    }

    /// Bind and listen. `local`'s IP may be a wildcard; port 0 picks an ephemeral port.
    /// The backlog bounds the half-open plus accept queue (at least 1).
    pub fn tcp_listen(&mut self, local: SocketAddr, backlog: usize) -> io::Result<SocketHandle> {
        self.check_local(local)?;
        let l = Listener { local, backlog: backlog.max(1), half_open: Vec::new(), accept_q: VecDeque::new() };
        let h = self.alloc(Sock::Listener(l), Owner::App);
        let port = match self.tcp_ports.bind(local.ip(), local.port(), h, &mut self.rng) {
            Ok(p) => p,
            Err(e) => {
                self.release_unbound(h);
                return Err(e);
            }
        };
        let bound = SocketAddr::new(local.ip(), port);
        if let Some(Sock::Listener(l)) = self.slot_mut(h).and_then(|s| s.sock.as_mut()) {
            l.local = bound;
        }
        if self.demux.insert_listener(Protocol::Tcp, bound, h).is_err() {
            self.free_socket(h);
            return Err(err(io::ErrorKind::AddrInUse, "address in use"));
        }
        Ok(h)
    }

    /// Take one completed connection from a listener's accept queue; `WouldBlock` when
    /// it is empty.
    pub fn tcp_accept(&mut self, listener: SocketHandle) -> io::Result<SocketHandle> {
        let h = match self.slot_mut(listener).and_then(|s| s.sock.as_mut()) {
            Some(Sock::Listener(l)) => l.accept_q.pop_front(),
            Some(_) => return Err(err(io::ErrorKind::InvalidInput, "not a listening socket")),
            None => return Err(bad_handle()),
        };
        let Some(h) = h else { return Err(io::ErrorKind::WouldBlock.into()) };
        if let Some(s) = self.slot_mut(h) {
            s.owner = Owner::App;
        }
        if matches!(self.slot(listener).and_then(|s| s.sock.as_ref()), Some(Sock::Listener(l)) if !l.accept_q.is_empty())
        {
            // More are waiting: another acceptor may take the next one.
            self.wake(listener);
        }
        // Anything that arrived before the accept (data, FIN, RST) is a readiness change.
        self.wake(h);
        if self.conn(h).is_ok_and(|c| c.state == TcpState::Closed) {
            self.after_conn_event(h, TcpState::Closed);
        }
        Ok(h)
    }

    /// Active open. `local` defaults to the stack's first address of `remote`'s family
    /// and an RFC 6056 ephemeral port. Returns at once in SYN-SENT; use
    /// `tcp_poll_connect` to learn the outcome.
    pub fn tcp_connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> io::Result<SocketHandle> {
        self.now = self.now.max(now);
        if is_unspecified(remote.ip()) || remote.port() == 0 {
            return Err(err(io::ErrorKind::InvalidInput, "cannot connect to an unspecified address or port 0"));
        }
        if remote.ip().is_multicast() || remote.ip() == IpAddr::from([255, 255, 255, 255]) {
            return Err(err(io::ErrorKind::InvalidInput, "cannot connect TCP to a multicast or broadcast address"));
        }
        let local_ip = match local.map(|l| l.ip()) {
            Some(ip) if !is_unspecified(ip) => {
                if !self.owns_address(ip) {
                    return Err(err(io::ErrorKind::AddrNotAvailable, "address not owned by this stack"));
                }
                if !same_family(ip, remote.ip()) {
                    return Err(err(io::ErrorKind::InvalidInput, "local and remote address families differ"));
                }
                ip
            }
            _ => self
                .first_addr_like(remote.ip())
                .ok_or_else(|| err(io::ErrorKind::AddrNotAvailable, "the stack has no address of that family"))?,
        };
        let port = match local.map(|l| l.port()).unwrap_or(0) {
            0 => {
                let (demux, tcp_ports) = (&self.demux, &self.tcp_ports);
                ports::connect_port(
                    self.cfg.ephemeral_ports,
                    &self.port_key,
                    &mut self.connect_counter,
                    local_ip,
                    remote,
                    |p| {
                        !demux.has_connection(Protocol::Tcp, SocketAddr::new(local_ip, p), remote)
                            && !tcp_ports.conflicts(local_ip, p)
                    },
                )?
            }
            p => {
                if self.demux.has_connection(Protocol::Tcp, SocketAddr::new(local_ip, p), remote) {
                    return Err(err(io::ErrorKind::AddrInUse, "that 4-tuple is in use"));
                }
                p
            }
        };
        let local = SocketAddr::new(local_ip, port);
        let iss = self.isn(now, local, remote);
        let conn = Conn::connect(&self.cfg, now, local, remote, iss);
        let h = self.alloc(Sock::Tcp(Box::new(conn)), Owner::App);
        if self.demux.insert_connection(Protocol::Tcp, local, remote, h).is_err() {
            self.free_socket(h);
            return Err(err(io::ErrorKind::AddrInUse, "that 4-tuple is in use"));
        }
        self.stats.tcp_active_opens += 1;
        self.refresh(h);
        Ok(h)
    }

    /// `Ok(true)` once established (or later), `Ok(false)` while the handshake runs,
    /// `Err` with `ConnectionRefused`, `TimedOut` or `ConnectionReset` if it failed.
    pub fn tcp_poll_connect(&mut self, h: SocketHandle) -> io::Result<bool> {
        let c = self.conn(h)?;
        match c.state {
            TcpState::SynSent | TcpState::SynReceived => Ok(false),
            TcpState::Closed => match c.error() {
                Some(e) => Err(e.into()),
                None => Err(err(io::ErrorKind::NotConnected, "connection closed")),
            },
            _ => Ok(true),
        }
    }

    /// Queue bytes for sending; returns how many were taken (may be fewer than asked),
    /// `WouldBlock` when the send buffer is full or the handshake is still running,
    /// `BrokenPipe` after shutdown(Write), the connection's error after a reset.
    pub fn tcp_send(&mut self, h: SocketHandle, data: &[u8]) -> io::Result<usize> {
        let r = self.conn_mut(h)?.send(data);
        self.refresh(h);
        Ok(r?)
    }

    /// Read received bytes. `Ok(0)` is end of stream (the peer's FIN was read);
    /// `WouldBlock` when nothing is buffered yet; `ConnectionReset` after a RST.
    pub fn tcp_recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.conn_mut(h)?.recv(buf);
        self.refresh(h);
        Ok(r?)
    }

    /// Shut down one or both directions. `Write` sends FIN after queued data (half
    /// close); `Read` discards further incoming data.
    pub fn tcp_shutdown(&mut self, h: SocketHandle, how: Shutdown) -> io::Result<()> {
        let c = self.conn_mut(h)?;
        if matches!(c.state, TcpState::Closed | TcpState::SynSent | TcpState::Listen) {
            return Err(err(io::ErrorKind::NotConnected, "socket is not connected"));
        }
        let prev = c.state;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            c.shutdown_read();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            c.shutdown_write();
        }
        self.after_conn_event(h, prev);
        Ok(())
    }

    /// Abort: send RST (if synchronized) and release the socket at once.
    pub fn tcp_abort(&mut self, h: SocketHandle) -> io::Result<()> {
        let c = self.conn_mut(h)?;
        let (l, r) = (c.local, c.remote);
        if let Some(Reply::Rst { seq, ack }) = c.abort() {
            self.queue_rst(l, r, seq, ack);
        }
        self.free_socket(h);
        Ok(())
    }

    pub fn tcp_state(&self, h: SocketHandle) -> io::Result<TcpState> {
        match self.slot(h).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Ok(c.state),
            Some(Sock::Listener(_)) => Ok(TcpState::Listen),
            Some(Sock::Udp(_)) => Err(err(io::ErrorKind::InvalidInput, "not a TCP socket")),
            None => Err(bad_handle()),
        }
    }

    /// A snapshot of the connection's control block.
    pub fn tcp_info(&self, h: SocketHandle) -> io::Result<crate::tcp::TcpInfo> {
        Ok(self.conn(h)?.info())
    }

    /// Disable (true) or enable (false) Nagle's algorithm (RFC 896).
    pub fn tcp_set_nodelay(&mut self, h: SocketHandle, nodelay: bool) -> io::Result<()> {
        self.conn_mut(h)?.set_nodelay(nodelay);
        self.refresh(h);
        Ok(())
    }

    /// Keepalive for this connection (RFC 9293 3.8.4); `None` turns it off.
    pub fn tcp_set_keepalive(&mut self, h: SocketHandle, ka: Option<crate::config::Keepalive>) -> io::Result<()> {
        let now = self.now;
        self.conn_mut(h)?.set_keepalive(now, ka);
        self.refresh(h);
        Ok(())
    }

    /// User timeout (RFC 9293 3.8.3 / RFC 5482); `None` leaves only the retry counts.
    pub fn tcp_set_user_timeout(&mut self, h: SocketHandle, t: Option<std::time::Duration>) -> io::Result<()> {
        self.conn_mut(h)?.set_user_timeout(t);
        Ok(())
    }

    /// Congestion control for this connection (restarts it from the initial window).
    pub fn tcp_set_congestion(&mut self, h: SocketHandle, alg: crate::config::CongestionAlgorithm) -> io::Result<()> {
        self.conn_mut(h)?.set_congestion(alg);
        Ok(())
    }

    pub fn tcp_nodelay(&self, h: SocketHandle) -> io::Result<bool> {
        Ok(self.conn(h)?.nodelay())
    }

    /// Bytes the application can write right now without `WouldBlock`.
    pub fn tcp_send_capacity(&self, h: SocketHandle) -> io::Result<usize> {
        Ok(self.conn(h)?.send_capacity())
    }

    /// Bytes received and not yet read.
    pub fn tcp_recv_queue(&self, h: SocketHandle) -> io::Result<usize> {
        Ok(self.conn(h)?.recv_queue())
    }

    // ---------------------------------------------------------------- UDP

    pub fn udp_bind(&mut self, local: SocketAddr) -> io::Result<SocketHandle> {
        self.check_local(local)?;
        let u = UdpSock { local, remote: None, rxq: VecDeque::new(), txq: VecDeque::new() };
        let h = self.alloc(Sock::Udp(u), Owner::App);
        let port = match self.udp_ports.bind(local.ip(), local.port(), h, &mut self.rng) {
            Ok(p) => p,
            Err(e) => {
                self.release_unbound(h);
                return Err(e);
            }
        };
        let bound = SocketAddr::new(local.ip(), port);
        if let Ok(u) = self.udp_mut(h) {
            u.local = bound;
        }
        if self.demux.insert_listener(Protocol::Udp, bound, h).is_err() {
            self.free_socket(h);
            return Err(err(io::ErrorKind::AddrInUse, "address in use"));
        }
        Ok(h)
    }

    /// Fix the peer: `send` goes there and only its datagrams are received.
    pub fn udp_connect(&mut self, h: SocketHandle, remote: SocketAddr) -> io::Result<()> {
        let u = self.udp_mut(h)?;
        if !same_family(u.local.ip(), remote.ip()) {
            return Err(err(io::ErrorKind::InvalidInput, "address family differs from the bound address"));
        }
        if is_unspecified(remote.ip()) || remote.port() == 0 {
            return Err(err(io::ErrorKind::InvalidInput, "cannot connect to an unspecified address or port 0"));
        }
        u.remote = Some(remote);
        Ok(())
    }

    pub fn udp_send_to(&mut self, h: SocketHandle, data: &[u8], dst: SocketAddr) -> io::Result<usize> {
        let max = self.cfg.mtu.saturating_sub(wire::ip_header_len(dst.ip()) + wire::udp::UDP_HEADER_LEN);
        let limit = self.cfg.udp_tx_queue;
        let has_src = self.first_addr_like(dst.ip()).is_some();
        let mut buf = self.pool.pop().unwrap_or_default();
        let u = self.udp_mut(h)?;
        if !same_family(u.local.ip(), dst.ip()) {
            return Err(err(io::ErrorKind::InvalidInput, "address family differs from the bound address"));
        }
        if is_unspecified(dst.ip()) || dst.port() == 0 {
            return Err(err(io::ErrorKind::InvalidInput, "cannot send to an unspecified address or port 0"));
        }
        if !has_src {
            return Err(err(io::ErrorKind::AddrNotAvailable, "the stack has no address of that family"));
        }
        if data.len() > max {
            // We do not fragment (RFC 8200 5 / RFC 791): like EMSGSIZE.
            return Err(err(io::ErrorKind::InvalidInput, "datagram larger than the MTU allows"));
        }
        if u.txq.len() >= limit {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        buf.clear();
        buf.extend_from_slice(data);
        u.txq.push_back((dst, buf));
        let slot = &mut self.slots[h.idx as usize];
        if !slot.in_txq {
            slot.in_txq = true;
            self.txq.push_back(h);
        }
        Ok(data.len())
    }

    pub fn udp_send(&mut self, h: SocketHandle, data: &[u8]) -> io::Result<usize> {
        let remote =
            self.udp_mut(h)?.remote.ok_or_else(|| err(io::ErrorKind::NotConnected, "UDP socket not connected"))?;
        self.udp_send_to(h, data, remote)
    }

    /// One datagram; a datagram longer than `buf` is truncated (the rest is discarded,
    /// as with std).
    pub fn udp_recv_from(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let u = self.udp_mut(h)?;
        let Some((src, data)) = u.rxq.pop_front() else { return Err(io::ErrorKind::WouldBlock.into()) };
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.pool.push(data);
        Ok((n, src))
    }

    /// Like `udp_recv_from` without the source (std allows it on an unconnected
    /// socket too).
    pub fn udp_recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<usize> {
        self.udp_recv_from(h, buf).map(|(n, _)| n)
    }

    /// Datagrams queued for sending that `poll_transmit` has not taken yet.
    pub fn udp_send_queue(&mut self, h: SocketHandle) -> io::Result<usize> {
        Ok(self.udp_mut(h)?.txq.len())
    }

    // ---------------------------------------------------------------- any socket

    /// Release the handle. TCP: a graceful close (FIN after queued data, RST if unread
    /// data is discarded, RFC 9293 3.10.4 / RFC 2525 2.17); the connection lives on as an
    /// orphan until the close completes. Listener: pending connections are reset.
    pub fn close(&mut self, h: SocketHandle) -> io::Result<()> {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen && s.sock.is_some()) else {
            return Err(bad_handle());
        };
        match slot.sock.as_mut() {
            Some(Sock::Tcp(c)) => {
                let prev = c.state;
                let (l, r) = (c.local, c.remote);
                if c.close(now, &self.cfg) {
                    if let Some(Reply::Rst { seq, ack }) = c.abort() {
                        self.queue_rst(l, r, seq, ack);
                    }
                    self.free_socket(h);
                    return Ok(());
                }
                if c.state == TcpState::Closed {
                    self.free_socket(h);
                    return Ok(());
                }
                slot.owner = Owner::Orphan;
                self.after_conn_event(h, prev);
            }
            Some(Sock::Listener(l)) => {
                let children: Vec<SocketHandle> = l.half_open.drain(..).chain(l.accept_q.drain(..)).collect();
                for c in children {
                    let _ = self.tcp_abort(c);
                }
                self.free_socket(h);
            }
            Some(Sock::Udp(_)) => self.free_socket(h),
            None => return Err(bad_handle()),
        }
        Ok(())
    }

    pub fn local_addr(&self, h: SocketHandle) -> io::Result<SocketAddr> {
        match self.slot(h).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Ok(c.local),
            Some(Sock::Listener(l)) => Ok(l.local),
            Some(Sock::Udp(u)) => Ok(u.local),
            None => Err(bad_handle()),
        }
    }

    pub fn peer_addr(&self, h: SocketHandle) -> io::Result<SocketAddr> {
        let not_conn = || err(io::ErrorKind::NotConnected, "socket is not connected");
        match self.slot(h).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Ok(c.remote),
            Some(Sock::Listener(_)) => Err(not_conn()),
            Some(Sock::Udp(u)) => u.remote.ok_or_else(not_conn),
            None => Err(bad_handle()),
        }
    }

    /// Every socket, ordered by handle: the `netstat -ano` of this stack.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        let mut v = Vec::new();
        for (idx, s) in self.slots.iter().enumerate() {
            let handle = SocketHandle { idx: idx as u32, gen: s.gen };
            let row = match s.sock.as_ref() {
                None => continue,
                Some(Sock::Tcp(c)) => SocketInfo {
                    handle,
                    protocol: Protocol::Tcp,
                    local: c.local,
                    remote: Some(c.remote),
                    state: c.state.as_str(),
                    recv_queue: c.recv_queue(),
                    send_queue: c.send_queue(),
                    owner: s.owner,
                },
                Some(Sock::Listener(l)) => SocketInfo {
                    handle,
                    protocol: Protocol::Tcp,
                    local: l.local,
                    remote: None,
                    state: TcpState::Listen.as_str(),
                    recv_queue: l.accept_q.len(),
                    send_queue: 0,
                    owner: s.owner,
                },
                Some(Sock::Udp(u)) => SocketInfo {
                    handle,
                    protocol: Protocol::Udp,
                    local: u.local,
                    remote: u.remote,
                    state: if u.remote.is_some() { "CONNECTED" } else { "BOUND" },
                    recv_queue: u.rxq.iter().map(|(_, d)| d.len()).sum(),
                    send_queue: u.txq.iter().map(|(_, d)| d.len()).sum(),
                    owner: s.owner,
                },
            };
            v.push(row);
        }
        v
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Release the buffer memory of connections that hold no data and have received
    /// nothing for a second (they regrow on demand). Runs by itself about once a
    /// second while packets flow; callable any time. Returns the buffer bytes still
    /// allocated across all connections.
    pub fn housekeeping(&mut self, now: Instant) -> usize {
        self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
        let mut held = 0;
        for s in self.slots.iter_mut() {
            if let Some(Sock::Tcp(c)) = s.sock.as_mut() {
                held += c.trim(now, HOUSEKEEPING_INTERVAL);
            }
        }
        held
    }

    /// Number of live sockets of every kind (listeners, connections including orphans
    /// and TIME-WAIT, UDP sockets).
    pub fn socket_count(&self) -> usize {
        self.slots.iter().filter(|s| s.sock.is_some()).count()
    }

    /// Check the core's internal consistency: every connection's control block, the
    /// demux tables against the sockets, listener queues, the free list. `Err` names
    /// the first violation. For tests, proptests and fuzz targets; O(sockets).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut in_demux = 0;
        let mut bound = 0;
        for (idx, s) in self.slots.iter().enumerate() {
            let h = SocketHandle { idx: idx as u32, gen: s.gen };
            match s.sock.as_ref() {
                None => {
                    if !self.free.contains(&(idx as u32)) {
                        return Err(format!("empty slot {idx} not on the free list"));
                    }
                }
                Some(Sock::Tcp(c)) => {
                    c.check_invariants().map_err(|e| format!("{h:?} {}->{}: {e}", c.local, c.remote))?;
                    if c.state != TcpState::Closed {
                        in_demux += 1;
                        if self.demux.lookup(Protocol::Tcp, c.local, c.remote) != Some(Match::Connection(h)) {
                            return Err(format!("{h:?} ({}) not found by its 4-tuple", c.state));
                        }
                    } else if s.owner != Owner::App {
                        return Err(format!("{h:?}: CLOSED connection kept without an owner"));
                    }
                    if let Owner::Listener(lh) = s.owner {
                        let Some(Sock::Listener(l)) = self.slot(lh).and_then(|x| x.sock.as_ref()) else {
                            return Err(format!("{h:?}: owned by a listener {lh:?} that does not exist"));
                        };
                        let queued = l.half_open.contains(&h) as usize + l.accept_q.contains(&h) as usize;
                        if queued != 1 {
                            return Err(format!("{h:?}: in {queued} queues of its listener"));
                        }
                    }
                }
                Some(Sock::Listener(l)) => {
                    bound += 1;
                    if l.half_open.len() + l.accept_q.len() > l.backlog {
                        return Err(format!("{h:?}: listener queues exceed the backlog"));
                    }
                    for c in l.half_open.iter().chain(l.accept_q.iter()) {
                        if self.slot(*c).map(|x| x.owner) != Some(Owner::Listener(h)) {
                            return Err(format!("{h:?}: queued {c:?} is not its child"));
                        }
                    }
                }
                Some(Sock::Udp(u)) => {
                    bound += 1;
                    if u.rxq.len() > self.cfg.udp_rx_queue || u.txq.len() > self.cfg.udp_tx_queue {
                        return Err(format!("{h:?}: UDP queue over its bound"));
                    }
                }
            }
        }
        if self.demux.connection_count() != in_demux {
            return Err(format!("demux has {} connections, sockets {in_demux}", self.demux.connection_count()));
        }
        if self.demux.listener_count() != bound {
            return Err(format!("demux has {} listeners/bound, sockets {bound}", self.demux.listener_count()));
        }
        if self.tcp_ports.len() + self.udp_ports.len() != bound {
            return Err(format!(
                "port tables hold {} bindings, sockets {bound}",
                self.tcp_ports.len() + self.udp_ports.len()
            ));
        }
        if self.ctrl.len() > MAX_CTRL_QUEUE {
            return Err("control queue over its bound".into());
        }
        Ok(())
    }
}

fn put_addr(out: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
