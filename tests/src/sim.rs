//! A deterministic network simulator for whole TCP transfers on a virtual clock.
//!
//! Two endpoints from [`crate::link`] (our [`tunstack::Stack`] or smoltcp 0.14) talk
//! through two one-way paths. Each path is the core's link model, [`tunstack::link`]
//! (the one the runtime's impairment uses too), which applies, in this order:
//!
//! 1. a bottleneck of `rate_bps` that serializes packets one after the other, fed by a
//!    bounded FIFO queue: a packet that would make the queue hold more than
//!    `queue_packets` packets or `queue_bytes` bytes is tail-dropped;
//! 2. random loss on the wire (the packet used its serialization time, then vanished);
//! 3. the propagation delay `delay`;
//! 4. reordering: a packet is held back by an extra random delay so later ones overtake it;
//! 5. duplication: a second copy arrives a little after the first;
//! 6. corruption ([`Corruption::AnyByte`]): a copy gets one random bit flipped or one
//!    random byte replaced. The receiver's checksums must catch it; for our stack the
//!    simulator checks that every corrupted packet an independent parser (etherparse)
//!    rejects also shows up in the stack's drop counters.
//!
//! Every random choice comes from the core's seeded [`Rng`] (SplitMix64): each path has
//! its own stream and both stacks are seeded, all derived from one master seed, so a run
//! is a pure function of its [`Scenario`]: the seed printed with every result and
//! failure reproduces it exactly (`SIM_SEED=<seed> cargo test ...`).
//!
//! The pump is event driven: at each instant it fires due endpoint timers
//! (`poll_timeout` / smoltcp's `poll_at`), delivers the packets due, lets the
//! application act, collects what the stacks transmit, then jumps the clock to the next
//! event (packet arrival or timer). It is bounded in virtual time and in events, and a
//! run that stalls, aborts or exceeds a bound fails with a diagnostic (bytes done, both
//! connections' states and internals, the last packets and their fates) instead of
//! hanging.
//!
//! The standard conditions ([`Condition::matrix`]) use a 100 Mbit/s bottleneck each way
//! with a 10 ms one-way delay (RTT 20 ms, bandwidth-delay product 250 kB) and a queue of
//! 256 packets / 384 KiB; the loss, reordering, duplication and corruption rates apply
//! to both directions (data and ACKs alike). The "congested" condition narrows the
//! bottleneck to 10 Mbit/s with a 32-packet queue, so the senders' windows (256 KiB)
//! overflow it and tail drop does the losing.

use std::collections::VecDeque;
use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use sha2::{Digest, Sha256};
pub use tunstack::link::{Corruption, Fate, ImpairCounters, Impairer, Impairment};
pub use tunstack::rand::Rng;
use tunstack::Instant;

use crate::link::{self, ConnState, EndpointObj, Ours, Side, Smol, TcpInfo, ACK, FIN, PSH, RST, SYN};

// ============================================================================ randomness

/// An independent seed for one consumer (`tag`) of a master seed.
pub fn derive_seed(master: u64, tag: u64) -> u64 {
    Rng::new(master ^ tag.wrapping_mul(0xd6e8_feb8_6659_fd93)).next_u64()
}

/// `len` pseudo-random bytes from `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    Rng::new(seed).fill(&mut data);
    data
}

// ============================================================================ one direction

/// 100 Mbit/s.
pub const RATE_BPS: u64 = 100_000_000;
/// One-way delay of the standard conditions: RTT 20 ms.
pub const ONE_WAY_DELAY: Duration = Duration::from_millis(10);
/// Largest packet the endpoints send (their MTU): the paths' buffer size.
const MAX_PACKET: usize = 1500;

/// The standard path: 100 Mbit/s, 10 ms, a 256-packet / 384 KiB queue (about 1.5
/// bandwidth-delay products), no impairments yet; a reordered packet is held back 0.5 to
/// 5 ms, a duplicate follows within 1 ms, corruption hits any byte.
pub fn standard_path() -> Impairment {
    Impairment::default().with(|c| {
        c.rate_bps = Some(RATE_BPS);
        c.delay = ONE_WAY_DELAY;
        c.queue_packets = 256;
        c.queue_bytes = Some(384 * 1024);
        c.reorder_hold = Some((Duration::from_micros(500), Duration::from_millis(5)));
        c.duplicate_gap = (Duration::ZERO, Duration::from_millis(1));
        c.corruption = Corruption::AnyByte;
    })
}

/// One line about a path, for the tables and the tests' output.
pub fn describe_path(path: &Impairment) -> String {
    let pct = |p: f64| format!("{}%", (p * 1e6).round() / 1e4);
    let mut parts = Vec::new();
    if let Some(rate) = path.rate_bps {
        parts.push(format!(
            "{} Mbit/s, queue {} pkts / {} KiB",
            rate / 1_000_000,
            path.queue_packets,
            path.queue_bytes_at(rate) / 1024
        ));
    }
    parts.push(format!("{:?} one-way", path.delay));
    if path.loss > 0.0 {
        parts.push(format!("loss {}", pct(path.loss)));
    }
    if path.reorder > 0.0 {
        let (lo, hi) = path.reorder_hold_range();
        parts.push(format!("reorder {} (+{lo:?}..{hi:?})", pct(path.reorder)));
    }
    if path.duplicate > 0.0 {
        parts.push(format!("dup {}", pct(path.duplicate)));
    }
    if path.corrupt > 0.0 {
        parts.push(format!("corrupt {}", pct(path.corrupt)));
    }
    parts.join(", ")
}

// ============================================================================ packet checks

/// What an independent parser (etherparse) makes of a packet.
#[derive(Clone, Debug)]
pub struct Inspected {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub tcp: Option<TcpInfo>,
}

/// Parse an IP packet with etherparse and verify its lengths and every checksum. Never
/// panics (corrupted packets come through here); [`link::check_packet`] is this plus a
/// panic, for links where every packet must be valid.
pub fn inspect(packet: &[u8]) -> Result<Inspected, String> {
    let sliced = SlicedPacket::from_ip(packet).map_err(|e| format!("etherparse: {e:?}"))?;
    let (src, dst) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if h.total_len() as usize != packet.len() {
                return Err("IPv4 total length differs from the packet length".into());
            }
            // Over the raw header bytes (RFC 1071): etherparse's `Ipv4Header` does not
            // keep every bit (the reserved flag), so recomputing from it can miss a flip.
            let header = &packet[..(usize::from(h.ihl()) * 4).min(packet.len())];
            if ones_complement_sum(header) != 0xffff {
                return Err("IPv4 header checksum".into());
            }
            if h.is_fragmenting_payload() {
                return Err("IPv4 fragment".into());
            }
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()))
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            if h.payload_length() as usize + 40 != packet.len() {
                return Err("IPv6 payload length differs from the packet length".into());
            }
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()))
        }
        _ => return Err("not an IP packet".into()),
    };
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let want = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => tcp.calc_checksum_ipv4(s.octets(), d.octets()),
                (IpAddr::V6(s), IpAddr::V6(d)) => tcp.calc_checksum_ipv6(s.octets(), d.octets()),
                _ => unreachable!(),
            }
            .map_err(|e| format!("TCP length: {e:?}"))?;
            if tcp.checksum() != want {
                return Err("TCP checksum".into());
            }
            let mut options = Vec::new();
            for o in tcp.options_iterator() {
                match o {
                    Ok(etherparse::TcpOptionElement::Noop) => {}
                    Ok(o) => options.push(o),
                    Err(e) => return Err(format!("TCP option: {e:?}")),
                }
            }
            let mut flags = 0;
            for (set, bit) in [(tcp.fin(), FIN), (tcp.syn(), SYN), (tcp.rst(), RST), (tcp.psh(), PSH), (tcp.ack(), ACK)]
            {
                if set {
                    flags |= bit;
                }
            }
            Some(TcpInfo {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                flags,
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                window: tcp.window_size(),
                options,
                payload_len: tcp.payload().len(),
            })
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            if icmp.checksum() != icmp.header().icmp_type.calc_checksum(icmp.payload()) {
                return Err("ICMPv4 checksum".into());
            }
            None
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else { unreachable!() };
            if !icmp.is_checksum_valid(s.octets(), d.octets()) {
                return Err("ICMPv6 checksum".into());
            }
            None
        }
        Some(TransportSlice::Udp(udp)) => {
            // RFC 768: zero means "no checksum" over IPv4 only (RFC 8200 8.1).
            if udp.checksum() != 0 || dst.is_ipv6() {
                let header = udp.to_header();
                let want = match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        header.calc_checksum_ipv4_raw(s.octets(), d.octets(), udp.payload())
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        header.calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload())
                    }
                    _ => return Err("mixed address families".into()),
                }
                .map_err(|e| format!("UDP length: {e:?}"))?;
                if udp.checksum() != want {
                    return Err("UDP checksum".into());
                }
            }
            None
        }
        _ => return Err("unknown transport protocol".into()),
    };
    Ok(Inspected { src, dst, tcp })
}

/// The 16-bit one's complement sum of `data` (RFC 1071), folded; 0xffff over a header
/// that includes a correct checksum.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

// ============================================================================ conditions

/// The network for one run: one path each way.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub name: String,
    /// A -> B (the data direction in [`run`]). Its `seed` is not used: the simulator
    /// derives each path's stream from the scenario's seed.
    pub forward: Impairment,
    /// B -> A (the ACK direction).
    pub reverse: Impairment,
}

impl Condition {
    /// The same path config both ways.
    pub fn symmetric(name: impl Into<String>, path: Impairment) -> Condition {
        Condition { name: name.into(), forward: path.clone(), reverse: path }
    }

    /// 100 Mbit/s, RTT 20 ms, nothing lost.
    pub fn clean() -> Condition {
        Condition::symmetric("clean", standard_path())
    }

    /// `percent`% random loss each way.
    pub fn loss(percent: u32) -> Condition {
        let path = standard_path().with(|c| c.loss = f64::from(percent) / 100.0);
        Condition::symmetric(format!("loss {percent}%"), path)
    }

    /// 5% loss, 5% reordering (+0.5..5 ms), 1% duplication, 1% corruption, each way.
    pub fn mixed() -> Condition {
        let path = standard_path().with(|c| {
            c.loss = 0.05;
            c.reorder = 0.05;
            c.duplicate = 0.01;
            c.corrupt = 0.01;
        });
        Condition::symmetric("mixed 5/5/1/1", path)
    }

    /// A 10 Mbit/s bottleneck with a 32-packet queue (BDP 25 kB, about 17 packets): the
    /// senders' windows overflow it, tail drop does the losing.
    pub fn congested() -> Condition {
        let path = standard_path().with(|c| {
            c.rate_bps = Some(10_000_000);
            c.queue_packets = 32;
            c.queue_bytes = Some(48 * 1024);
        });
        Condition::symmetric("congested 10M/q32", path)
    }

    /// The standard matrix of the tests and of the `sim_table` binary.
    pub fn matrix() -> Vec<Condition> {
        vec![
            Condition::clean(),
            Condition::loss(1),
            Condition::loss(5),
            Condition::loss(10),
            Condition::loss(20),
            Condition::mixed(),
            Condition::congested(),
        ]
    }

    pub fn describe(&self) -> String {
        if self.forward == self.reverse {
            format!("{}: each way {}", self.name, describe_path(&self.forward))
        } else {
            format!("{}: A->B {}; B->A {}", self.name, describe_path(&self.forward), describe_path(&self.reverse))
        }
    }
}

// ============================================================================ the simulator

/// One packet as it entered the network, for diagnostics.
#[derive(Clone, Debug)]
pub struct Record {
    pub index: u64,
    pub time: Instant,
    pub from: Side,
    pub len: usize,
    pub tcp: Option<TcpInfo>,
    pub fate: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {:?} {:?}->{:?} {} B", self.index, self.time, self.from, self.from.other(), self.len)?;
        if let Some(t) = &self.tcp {
            let mut names = Vec::new();
            for (bit, name) in [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK")] {
                if t.flags & bit != 0 {
                    names.push(name);
                }
            }
            write!(f, " [{}] seq={} ack={} win={} len={}", names.join("|"), t.seq, t.ack, t.window, t.payload_len)?;
        } else {
            write!(f, " non-TCP")?;
        }
        write!(f, ": {}", self.fate)
    }
}

/// Counts data segments that repeat sequence space already sent (RFC 9293 3.4
/// comparisons modulo 2^32): retransmissions as seen on the wire.
#[derive(Clone, Copy, Debug, Default)]
struct RetransCounter {
    highest: Option<u32>,
    count: u64,
}

impl RetransCounter {
    fn see(&mut self, t: &TcpInfo) {
        let len = t.payload_len as u32 + u32::from(t.has(SYN)) + u32::from(t.has(FIN));
        if t.payload_len == 0 {
            // SYN / FIN only: track the sequence space but do not count.
            if len > 0 {
                let end = t.seq.wrapping_add(len);
                match self.highest {
                    Some(h) if (end.wrapping_sub(h) as i32) <= 0 => {}
                    _ => self.highest = Some(end),
                }
            }
            return;
        }
        let end = t.seq.wrapping_add(len);
        match self.highest {
            Some(h) if (t.seq.wrapping_sub(h) as i32) < 0 => {
                self.count += 1;
                if (end.wrapping_sub(h) as i32) > 0 {
                    self.highest = Some(end);
                }
            }
            _ => self.highest = Some(end),
        }
    }
}

/// FNV-1a, 64 bits: a cheap running digest of the packet trace.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why a run did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// Nothing in flight and no timer pending, yet not done.
    Stall,
    /// The next event is past the virtual time limit.
    TimeLimit,
    /// The event budget is spent.
    EventLimit,
    /// A connection failed (reset, timed out, refused...) or the application saw nonsense.
    Aborted,
    /// An endpoint transmitted a malformed packet or one with a wrong address.
    BadPacket,
    /// A corrupted packet was accepted (not counted as dropped) by our stack, or the
    /// received bytes differ from the sent ones.
    Corruption,
    /// Something panicked (a stack bug or a harness assertion).
    Panic,
}

impl fmt::Display for FailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FailKind::Stall => "STALL",
            FailKind::TimeLimit => "TIME LIMIT",
            FailKind::EventLimit => "EVENT LIMIT",
            FailKind::Aborted => "ABORTED",
            FailKind::BadPacket => "BAD PACKET",
            FailKind::Corruption => "CORRUPTION",
            FailKind::Panic => "PANIC",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Debug)]
pub struct SimError {
    pub kind: FailKind,
    pub label: String,
    pub seed: u64,
    pub at: Instant,
    /// What the pump was doing (e.g. "transfer").
    pub what: String,
    pub message: String,
    /// Progress, both endpoints' states, the path counters and the last packets.
    pub diagnostic: String,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} during {} at virtual {:?}: {}\n  seed {:#x} (reproduce with SIM_SEED={:#x} and the same test)\n{}",
            self.label, self.kind, self.what, self.at, self.message, self.seed, self.seed, self.diagnostic
        )
    }
}

/// The application a run plays on both endpoints; see [`Sim::run_until`].
pub trait App {
    /// Act at `now`. `Ok(true)` when done; `Err` ends the run with that failure.
    fn step(&mut self, a: &mut EndpointObj, b: &mut EndpointObj, now: Instant) -> Result<bool, (FailKind, String)>;
    /// One line on how far it got, for diagnostics.
    fn progress(&self) -> String;
}

/// How many recent packets a failure report shows.
const RECENT: usize = 24;

/// Two endpoints, two paths (each with its own random stream), one virtual clock.
pub struct Sim {
    pub a: Box<EndpointObj>,
    pub b: Box<EndpointObj>,
    /// `paths[0]` carries A -> B, `paths[1]` B -> A; they hold the packets in flight.
    pub paths: [Impairer; 2],
    pub now: Instant,
    /// Refuse to move the clock past this instant.
    pub max_time: Instant,
    /// Refuse to run more pump iterations than this.
    pub max_events: u64,
    pub events: u64,
    /// For failure reports.
    pub label: String,
    pub seed: u64,
    recent: VecDeque<Record>,
    retrans: [RetransCounter; 2],
    trace: u64,
    /// Corrupted copies (that etherparse rejects) delivered to A / B when that endpoint
    /// counts its drops (ours), and how many of them it counted as dropped.
    pub corrupt_delivered: [u64; 2],
    pub corrupt_caught: [u64; 2],
    /// Corrupted copies delivered from each path (A -> B, B -> A) that are still valid
    /// packets: the damage hit a field no checksum covers (IPv6 traffic class, flow
    /// label, hop limit), so they are delivered and taken as such.
    pub corrupt_undetectable: [u64; 2],
    /// Corrupted copies an endpoint that counts drops took in without counting a drop
    /// (the first 16; `corrupt_delivered - corrupt_caught` counts them all).
    pub corrupt_missed: Vec<String>,
    /// Print every packet offered to the network from this instant on (`SIM_TRACE=<seconds>`).
    pub trace_from: Option<Instant>,
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Sim {
    pub fn new(a: Box<EndpointObj>, b: Box<EndpointObj>, condition: &Condition, seed: u64) -> Sim {
        Sim {
            a,
            b,
            paths: [
                Impairer::new(condition.forward.clone(), derive_seed(seed, 1), MAX_PACKET),
                Impairer::new(condition.reverse.clone(), derive_seed(seed, 5), MAX_PACKET),
            ],
            now: Instant::ZERO,
            max_time: Instant::from_secs(3 * 3600),
            max_events: 20_000_000,
            events: 0,
            label: String::new(),
            seed,
            recent: VecDeque::new(),
            retrans: [RetransCounter::default(); 2],
            trace: 0xcbf2_9ce4_8422_2325,
            corrupt_delivered: [0; 2],
            corrupt_caught: [0; 2],
            corrupt_undetectable: [0; 2],
            corrupt_missed: Vec::new(),
            trace_from: std::env::var("SIM_TRACE")
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|secs| Instant::from_micros((secs.max(0.0) * 1e6) as u64)),
        }
    }

    pub fn endpoint(&mut self, side: Side) -> &mut EndpointObj {
        match side {
            Side::A => &mut *self.a,
            Side::B => &mut *self.b,
        }
    }

    /// Data segments from `side` that repeated sequence space (retransmissions).
    pub fn retransmitted(&self, side: Side) -> u64 {
        self.retrans[idx(side)].count
    }

    /// A digest of every packet offered to the network, its time and its fate.
    pub fn trace_digest(&self) -> u64 {
        self.trace
    }

    fn record(&mut self, r: Record) {
        if self.trace_from.is_some_and(|t| r.time >= t) {
            println!("{r}");
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(r);
    }

    /// Put a packet `from` one side on the path towards the other.
    fn transmit(&mut self, from: Side, packet: Vec<u8>) -> Result<(), String> {
        let (src, dst) = match from {
            Side::A => (self.a.addr(), self.b.addr()),
            Side::B => (self.b.addr(), self.a.addr()),
        };
        let info = inspect(&packet).map_err(|e| format!("{from:?} transmitted a bad packet ({e}): {packet:02x?}"))?;
        if info.src != src || info.dst != dst {
            return Err(format!("{from:?} transmitted {} -> {}, expected {src} -> {dst}", info.src, info.dst));
        }
        if let Some(t) = &info.tcp {
            self.retrans[idx(from)].see(t);
        }
        let now = self.now;
        let len = packet.len();
        let head = packet[..len.min(64)].to_vec();
        let fate = self.paths[idx(from)].push(now, &packet);
        let (code, text) = match fate {
            Fate::TailDropped => (1u8, "tail-dropped (queue full)".to_string()),
            Fate::Lost => (2, "lost".to_string()),
            Fate::Held { first, second } => {
                let mut text = Vec::new();
                for c in std::iter::once(first).chain(second) {
                    let mut t = format!("arrives {:?}", c.due);
                    if c.reordered {
                        t.push_str(" (held back)");
                    }
                    if c.duplicate {
                        t.push_str(" (duplicate)");
                    }
                    if c.corrupted {
                        t.push_str(" CORRUPTED");
                    }
                    self.trace = fnv(self.trace, &c.due.total_micros().to_le_bytes());
                    self.trace = fnv(self.trace, &[u8::from(c.corrupted)]);
                    text.push(t);
                }
                (3, text.join(", "))
            }
        };
        self.trace = fnv(self.trace, &now.total_micros().to_le_bytes());
        self.trace = fnv(self.trace, &[idx(from) as u8, code]);
        self.trace = fnv(self.trace, &(len as u64).to_le_bytes());
        self.trace = fnv(self.trace, &head);
        let index = self.paths[0].counters().packets + self.paths[1].counters().packets;
        self.record(Record { index, time: now, from, len, tcp: info.tcp, fate: text });
        Ok(())
    }

    /// Hand the packets due at `now` on each path to the endpoint at its far end.
    fn deliver_due(&mut self) {
        let now = self.now;
        for from in [Side::A, Side::B] {
            let mut due = Vec::new();
            self.paths[idx(from)].release(now, |p, info| due.push((p.to_vec(), info.corrupted)));
            for (packet, corrupted) in due {
                self.deliver(from.other(), &packet, corrupted);
            }
        }
    }

    fn deliver(&mut self, to: Side, packet: &[u8], corrupted: bool) {
        let now = self.now;
        // A corrupted copy the independent parser still takes is a valid packet (the
        // damage hit a field no checksum covers): nothing to catch.
        let detectable = corrupted && inspect(packet).is_err();
        if corrupted && !detectable {
            self.corrupt_undetectable[idx(to.other())] += 1;
        }
        let to_i = idx(to);
        let ep = self.endpoint(to);
        let before = if detectable { ep.drops() } else { None };
        ep.input(now, packet);
        if let Some(before) = before {
            self.corrupt_delivered[to_i] += 1;
            let after = self.endpoint(to).drops().unwrap_or(before);
            if after > before {
                self.corrupt_caught[to_i] += 1;
            } else if self.corrupt_missed.len() < 16 {
                let name = self.endpoint(to).name();
                self.corrupt_missed
                    .push(format!("{name} took a corrupted packet at {now:?} without counting a drop: {packet:02x?}"));
            }
        }
    }

    /// Everything about the current state, for failure reports.
    pub fn describe(&mut self, progress: &str) -> String {
        let now = self.now;
        let mut s = format!(
            "  progress: {progress}\n  now {now:?}, {} events, {} packets in flight",
            self.events,
            self.paths[0].held() + self.paths[1].held()
        );
        for side in [Side::A, Side::B] {
            let ep = self.endpoint(side);
            let (name, state, deadline, diag) = (ep.name(), ep.conn_state(), ep.deadline(now), ep.diag());
            s.push_str(&format!("\n  {side:?} {name}: {state}, next timer {deadline:?}\n      {diag}"));
        }
        for (i, dir) in ["A->B", "B->A"].iter().enumerate() {
            let (qp, qb) = self.paths[i].queue(now);
            let (held, k) = (self.paths[i].held(), self.paths[i].counters());
            s.push_str(&format!("\n  {dir}: {k}; in the queue {qp} pkts / {qb} B, in flight {held}"));
        }
        s.push_str(&format!(
            "\n  retransmitted data segments: A {} B {}; corrupted delivered {:?}, caught {:?}, undetectable {:?}",
            self.retransmitted(Side::A),
            self.retransmitted(Side::B),
            self.corrupt_delivered,
            self.corrupt_caught,
            self.corrupt_undetectable
        ));
        for m in &self.corrupt_missed {
            s.push_str(&format!("\n  {m}"));
        }
        s.push_str("\n  last packets:");
        for r in &self.recent {
            s.push_str(&format!("\n    {r}"));
        }
        s
    }

    fn fail(&mut self, kind: FailKind, what: &str, message: String, app: &dyn App) -> SimError {
        SimError {
            kind,
            label: self.label.clone(),
            seed: self.seed,
            at: self.now,
            what: what.to_string(),
            message,
            diagnostic: self.describe(&app.progress()),
        }
    }

    /// Pump until `app` says it is done. Each iteration, at the current instant: due
    /// timers fire, due packets are delivered, the application acts, and whatever the
    /// stacks transmit goes onto the paths; then the clock jumps to the next event.
    pub fn run_until(&mut self, what: &str, app: &mut dyn App) -> Result<Instant, SimError> {
        loop {
            self.events += 1;
            if self.events > self.max_events {
                let m = format!("event limit {} reached", self.max_events);
                return Err(self.fail(FailKind::EventLimit, what, m, app));
            }
            let now = self.now;
            for side in [Side::A, Side::B] {
                let ep = self.endpoint(side);
                if ep.deadline(now).is_some_and(|d| d <= now) {
                    ep.on_timeout(now);
                }
            }
            self.deliver_due();
            match app.step(&mut *self.a, &mut *self.b, now) {
                Ok(true) => return Ok(now),
                Ok(false) => {}
                Err((kind, m)) => return Err(self.fail(kind, what, m, app)),
            }
            for side in [Side::A, Side::B] {
                let mut out = Vec::new();
                self.endpoint(side).output(now, &mut out);
                for p in out {
                    if let Err(m) = self.transmit(side, p) {
                        return Err(self.fail(FailKind::BadPacket, what, m, app));
                    }
                }
            }
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
                let m = "no packet in flight and no timer pending".to_string();
                return Err(self.fail(FailKind::Stall, what, m, app));
            };
            // Everything due at `now` was served above; a deadline still at or before
            // `now` is served again one microsecond later.
            let next = next.max(now + Duration::from_micros(1));
            if next > self.max_time {
                let m = format!("virtual time limit {:?} reached (next event at {next:?})", self.max_time);
                return Err(self.fail(FailKind::TimeLimit, what, m, app));
            }
            self.now = next;
        }
    }
}

// ============================================================================ scenarios

/// Which stack plays a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Ours,
    Smoltcp,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Ours => "tunstack",
            Peer::Smoltcp => "smoltcp",
        })
    }
}

/// smoltcp's socket buffers in the simulator, the same as our default (256 KiB each way).
pub const SMOLTCP_BUFFER: usize = 256 * 1024;
/// 10 MB, the transfer size of the standard runs.
pub const TEN_MB: usize = 10_000_000;
const PORT: u16 = 5001;

/// One bulk transfer: the `sender` (A) connects to the `receiver` (B), sends `bytes`
/// and closes; the receiver reads to end of stream and closes; the run ends when both
/// connections have left their socket tables.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub sender: Peer,
    pub receiver: Peer,
    pub ipv6: bool,
    pub condition: Condition,
    pub bytes: usize,
    pub seed: u64,
    /// Stall guard: fail when no byte moved (and no close happened) for this long.
    pub no_progress_limit: Duration,
    /// Bounds of the whole run, in virtual time and in pump iterations.
    pub max_time: Duration,
    pub max_events: u64,
}

impl Scenario {
    /// 10 MB over IPv4 with a seed derived from the label (or `SIM_SEED`, when set).
    pub fn new(sender: Peer, receiver: Peer, condition: Condition) -> Scenario {
        let mut s = Scenario {
            sender,
            receiver,
            ipv6: false,
            condition,
            bytes: TEN_MB,
            seed: 0,
            no_progress_limit: Duration::from_secs(3600),
            max_time: Duration::from_secs(24 * 3600),
            max_events: 20_000_000,
        };
        s.seed = seed_from_env().unwrap_or_else(|| fnv(0x5157_2024, s.label().as_bytes()));
        s
    }

    pub fn ipv6(mut self) -> Scenario {
        self.ipv6 = true;
        self.seed = seed_from_env().unwrap_or_else(|| fnv(0x5157_2024, self.label().as_bytes()));
        self
    }

    pub fn label(&self) -> String {
        format!(
            "{} -> {}, {}, {}",
            self.sender,
            self.receiver,
            if self.ipv6 { "IPv6" } else { "IPv4" },
            self.condition.name
        )
    }

    /// Which side is ours, for the table.
    pub fn ours_is(&self) -> &'static str {
        match (self.sender, self.receiver) {
            (Peer::Ours, Peer::Ours) => "both",
            (Peer::Ours, _) => "sender",
            (_, Peer::Ours) => "receiver",
            _ => "neither",
        }
    }
}

/// `SIM_SEED` from the environment, decimal or 0x-hex.
pub fn seed_from_env() -> Option<u64> {
    let s = std::env::var("SIM_SEED").ok()?;
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("SIM_SEED={s:?}: {e}")))
}

fn make_endpoint(peer: Peer, addr: IpAddr, seed: u64) -> Box<EndpointObj> {
    match peer {
        Peer::Ours => Box::new(Ours::new(addr, seed)),
        Peer::Smoltcp => {
            let mut s = Smol::with_buffers(addr, seed, SMOLTCP_BUFFER);
            s.socket().set_congestion_control(smoltcp::socket::tcp::CongestionControl::Cubic);
            Box::new(s)
        }
    }
}

/// What a finished run measured.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub label: String,
    pub ours_is: &'static str,
    pub condition: String,
    pub ip: &'static str,
    pub seed: u64,
    pub bytes: usize,
    /// When the sender saw its connection established.
    pub established: Instant,
    /// When the receiver had every byte and the end of stream.
    pub completed: Instant,
    /// When both connections had left their socket tables.
    pub closed: Instant,
    pub sent_sha256: [u8; 32],
    pub received_sha256: [u8; 32],
    /// First offset where the received bytes differ from the sent ones.
    pub first_mismatch: Option<usize>,
    /// Data segments the sender retransmitted (seen on the wire).
    pub retransmitted: u64,
    /// A -> B and B -> A.
    pub paths: [ImpairCounters; 2],
    /// Corrupted copies from each path that were still valid packets.
    pub corrupt_undetectable: [u64; 2],
    pub corrupt_delivered: [u64; 2],
    pub corrupt_caught: [u64; 2],
    pub corrupt_missed: Vec<String>,
    pub events: u64,
    pub trace_digest: u64,
    /// Wall-clock time of the run (printed, never asserted).
    pub wall: Duration,
}

impl RunReport {
    /// Payload bits per second of virtual time, from the sender's connection being
    /// established to the receiver holding the last byte and the FIN.
    pub fn goodput_mbps(&self) -> f64 {
        let secs = (self.completed - self.established).as_secs_f64();
        if secs <= 0.0 {
            return f64::INFINITY;
        }
        self.bytes as f64 * 8.0 / secs / 1e6
    }

    /// The bytes arrived intact and our stack counted every corrupted packet it got.
    #[track_caller]
    pub fn assert_intact(&self) {
        assert_eq!(
            link::hex(&self.sent_sha256),
            link::hex(&self.received_sha256),
            "{}: received bytes differ from the sent ones (first at offset {:?}; seed {})",
            self.label,
            self.first_mismatch,
            self.seed
        );
        assert!(
            self.corrupt_missed.is_empty(),
            "{}: corrupted packets accepted (seed {}):\n{}",
            self.label,
            self.seed,
            self.corrupt_missed.join("\n")
        );
    }

    pub fn row(&self) -> String {
        let c = &self.paths;
        let corrupted = c[0].corrupted + c[1].corrupted;
        let caught = self.corrupt_caught[0] + self.corrupt_caught[1];
        let to_ours = self.corrupt_delivered[0] + self.corrupt_delivered[1];
        format!(
            "| {} | {} | {} | {} | {:#x} | ok | {:.3} | {:.3} | {} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} | {} / {} | {} ({} to ours, {} dropped by ours) | {} |",
            self.label.split(',').next().unwrap_or(""),
            self.ours_is,
            self.ip,
            self.condition,
            self.seed,
            (self.completed - Instant::ZERO).as_secs_f64(),
            (self.closed - self.completed).as_secs_f64(),
            mbps(self.goodput_mbps()),
            self.retransmitted,
            c[0].packets,
            c[1].packets,
            c[0].lost,
            c[1].lost,
            c[0].tail_dropped,
            c[1].tail_dropped,
            c[0].reordered,
            c[1].reordered,
            c[0].duplicated + c[1].duplicated,
            c[0].delivered,
            c[1].delivered,
            corrupted,
            to_ours,
            caught,
            self.wall.as_millis(),
        )
    }
}

/// Three significant digits, at least two decimals.
fn mbps(v: f64) -> String {
    let decimals = if v > 0.0 && v < 1.0 { (2 - v.log10().floor() as i32).clamp(2, 8) as usize } else { 2 };
    format!("{v:.decimals$}")
}

/// The markdown table header matching [`RunReport::row`] and [`failure_row`].
pub fn table_header() -> String {
    [
        "| sender -> receiver | ours is | IP | condition | seed | result | done at (s, virtual) | close took (s) | goodput (Mbit/s) | sender retransmits | pkts A->B / B->A | lost A->B / B->A | tail-dropped | held back | dups | delivered A->B / B->A | corrupted | wall ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    .join("\n")
}

/// A table row for a run that did not finish.
pub fn failure_row(scenario: &Scenario, e: &SimError) -> String {
    let label = scenario.label();
    format!(
        "| {} | {} | {} | {} | {:#x} | **{}** during {} at {:.3} s: {} | | | | | | | | | | | | |",
        label.split(',').next().unwrap_or(""),
        scenario.ours_is(),
        if scenario.ipv6 { "IPv6" } else { "IPv4" },
        scenario.condition.name,
        scenario.seed,
        e.kind,
        e.what,
        (e.at - Instant::ZERO).as_secs_f64(),
        e.message.replace('|', "/").lines().next().unwrap_or("")
    )
}

/// The bulk-transfer application of [`run`].
struct Bulk {
    data: Vec<u8>,
    pushed: usize,
    sent_hash: Sha256,
    sender_closed: bool,
    got: usize,
    received_hash: Sha256,
    first_mismatch: Option<usize>,
    established: Option<Instant>,
    accepted: Option<Instant>,
    completed: Option<Instant>,
    closed: Option<Instant>,
    buf: Vec<u8>,
    last_progress: Instant,
    no_progress_limit: Duration,
}

impl App for Bulk {
    fn step(&mut self, a: &mut EndpointObj, b: &mut EndpointObj, now: Instant) -> Result<bool, (FailKind, String)> {
        let before = (self.pushed, self.got, self.sender_closed, self.completed.is_some());
        let r = self.act(a, b, now).map_err(|m| (FailKind::Aborted, m))?;
        if (self.pushed, self.got, self.sender_closed, self.completed.is_some()) != before {
            self.last_progress = now;
        } else if now - self.last_progress > self.no_progress_limit {
            let m = format!(
                "no progress for {:?} (no byte accepted by the sender or delivered to the receiver)",
                self.no_progress_limit
            );
            return Err((FailKind::Stall, m));
        }
        Ok(r)
    }

    fn progress(&self) -> String {
        format!(
            "sender established {:?}, pushed {} of {} bytes{}; receiver accepted {:?}, got {} bytes, completed {:?}; last progress {:?}",
            self.established,
            self.pushed,
            self.data.len(),
            if self.sender_closed { " and closed" } else { "" },
            self.accepted,
            self.got,
            self.completed,
            self.last_progress
        )
    }
}

impl Bulk {
    fn act(&mut self, a: &mut EndpointObj, b: &mut EndpointObj, now: Instant) -> Result<bool, String> {
        if self.established.is_none() {
            match a.poll_established() {
                Ok(true) => self.established = Some(now),
                Ok(false) => {}
                Err(e) => return Err(format!("sender {}: connect: {e}", a.name())),
            }
        }
        if self.accepted.is_none() {
            match b.poll_established() {
                Ok(true) => self.accepted = Some(now),
                Ok(false) => {}
                Err(e) => return Err(format!("receiver {}: accept: {e}", b.name())),
            }
        }
        if self.established.is_some() && !self.sender_closed {
            while self.pushed < self.data.len() {
                match a.send(&self.data[self.pushed..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.sent_hash.update(&self.data[self.pushed..self.pushed + n]);
                        self.pushed += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("sender {}: send after {} bytes: {e}", a.name(), self.pushed)),
                }
            }
            if self.pushed == self.data.len() {
                a.close();
                self.sender_closed = true;
            }
        }
        if self.accepted.is_some() && self.completed.is_none() {
            loop {
                match b.recv(&mut self.buf) {
                    Ok(0) => {
                        if self.got != self.data.len() {
                            return Err(format!(
                                "receiver {}: end of stream after {} of {} bytes",
                                b.name(),
                                self.got,
                                self.data.len()
                            ));
                        }
                        self.completed = Some(now);
                        b.close();
                        break;
                    }
                    Ok(n) => {
                        let chunk = &self.buf[..n];
                        if self.got + n > self.data.len() {
                            return Err(format!(
                                "receiver {}: {} bytes received, more than the {} sent",
                                b.name(),
                                self.got + n,
                                self.data.len()
                            ));
                        }
                        if self.first_mismatch.is_none() {
                            let want = &self.data[self.got..self.got + n];
                            if let Some(i) = chunk.iter().zip(want).position(|(x, y)| x != y) {
                                self.first_mismatch = Some(self.got + i);
                            }
                        }
                        self.received_hash.update(chunk);
                        self.got += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("receiver {}: recv after {} bytes: {e}", b.name(), self.got)),
                }
            }
        }
        if self.completed.is_some() && a.conn_state() == ConnState::Gone && b.conn_state() == ConnState::Gone {
            self.closed = Some(now);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Run one scenario to the end: handshake, transfer, close by both sides.
pub fn run(scenario: &Scenario) -> Result<RunReport, SimError> {
    let started = std::time::Instant::now();
    let seed = scenario.seed;
    let (a_addr, b_addr) = if scenario.ipv6 { (link::v6(1), link::v6(2)) } else { (link::v4(1), link::v4(2)) };
    let a = make_endpoint(scenario.sender, a_addr, derive_seed(seed, 2));
    let b = make_endpoint(scenario.receiver, b_addr, derive_seed(seed, 3));
    let mut sim = Sim::new(a, b, &scenario.condition, seed);
    sim.label = scenario.label();
    sim.max_time = Instant::ZERO + scenario.max_time;
    sim.max_events = scenario.max_events;

    let mut app = Bulk {
        data: payload(derive_seed(seed, 4), scenario.bytes),
        pushed: 0,
        sent_hash: Sha256::new(),
        sender_closed: false,
        got: 0,
        received_hash: Sha256::new(),
        first_mismatch: None,
        established: None,
        accepted: None,
        completed: None,
        closed: None,
        buf: vec![0; 64 * 1024],
        last_progress: Instant::ZERO,
        no_progress_limit: scenario.no_progress_limit,
    };
    sim.b.listen(PORT);
    let now = sim.now;
    sim.a.connect(now, SocketAddr::new(b_addr, PORT));
    sim.run_until("transfer", &mut app)?;

    let report = RunReport {
        label: sim.label.clone(),
        ours_is: scenario.ours_is(),
        condition: scenario.condition.name.clone(),
        ip: if scenario.ipv6 { "IPv6" } else { "IPv4" },
        seed,
        bytes: scenario.bytes,
        established: app.established.expect("done implies established"),
        completed: app.completed.expect("done implies completed"),
        closed: app.closed.expect("done implies closed"),
        sent_sha256: app.sent_hash.clone().finalize().into(),
        received_sha256: app.received_hash.clone().finalize().into(),
        first_mismatch: app.first_mismatch,
        retransmitted: sim.retransmitted(Side::A),
        paths: [sim.paths[0].counters(), sim.paths[1].counters()],
        corrupt_undetectable: sim.corrupt_undetectable,
        corrupt_delivered: sim.corrupt_delivered,
        corrupt_caught: sim.corrupt_caught,
        corrupt_missed: sim.corrupt_missed.clone(),
        events: sim.events,
        trace_digest: sim.trace_digest(),
        wall: started.elapsed(),
    };
    if report.sent_sha256 != report.received_sha256 || !report.corrupt_missed.is_empty() {
        let m = format!(
            "sent sha256 {}, received sha256 {}, first differing byte at {:?}; {} corrupted packets accepted",
            link::hex(&report.sent_sha256),
            link::hex(&report.received_sha256),
            report.first_mismatch,
            report.corrupt_missed.len()
        );
        return Err(sim.fail(FailKind::Corruption, "transfer", m, &app));
    }
    Ok(report)
}

/// [`run`], with panics (stack bugs, harness assertions) turned into [`FailKind::Panic`].
pub fn run_catching(scenario: &Scenario) -> Result<RunReport, SimError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(scenario))) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(SimError {
                kind: FailKind::Panic,
                label: scenario.label(),
                seed: scenario.seed,
                at: Instant::ZERO,
                what: "run".into(),
                message,
                diagnostic: String::new(),
            })
        }
    }
}

/// For the tests: run, print the table row (or the failure), and fail the test unless
/// the transfer completed intact.
#[track_caller]
pub fn run_and_check(scenario: &Scenario) -> RunReport {
    println!("{}", scenario.condition.describe());
    match run(scenario) {
        Ok(report) => {
            println!("{}\n{}", table_header(), report.row());
            println!("{} events, trace digest {:#018x}", report.events, report.trace_digest);
            report.assert_intact();
            report
        }
        Err(e) => {
            println!("{}\n{}", table_header(), failure_row(scenario, &e));
            panic!("{e}");
        }
    }
}
