//! The sans-IO core: packets and `now` in, packets and wakeups out, timers asked for.
//!
//! ```text
//!   input(now, packet) ──> parse ──> demux ──> tcp / udp / icmp
//!   poll_transmit(now, buf) <── sockets with something to send, control replies
//!   poll_timeout() / handle_timeout(now)
//!   poll_readiness() -> (handle, readiness that rose)
//! ```
//!
//! This file holds the [`Stack`] itself and its I/O verbs, each a short dispatcher to
//! the part that owns the concern:
//!
//! - `table`: socket slots, generations, allocation and release, handle lookup;
//! - `timers`: the timer heap (with its compaction) and the transmit schedule;
//! - `tcp`: TCP input (demux to a connection or a listener, RSTs for no socket), the
//!   TCP calls, TCP's part of `poll_transmit` and of `handle_timeout`;
//! - `udp`: UDP sockets: their state, calls, input and transmission;
//! - `icmp`: echo replies, the ICMP errors we send and their rate limit, and the ICMP
//!   errors we receive (validated against live sockets: soft and hard errors, path MTU);
//! - `frag`: IP reassembly, and fragmentation of datagrams larger than the path MTU;
//! - `pmtu`: the path MTU per destination;
//! - `budget`: socket buffer memory accounting and the resource caps;
//! - `diag`: counters, the socket table, invariant checks, housekeeping.

mod budget;
mod buffers;
mod diag;
mod frag;
mod icmp;
mod pmtu;
mod policy;
mod table;
mod tcp;
mod timers;
mod udp;

pub use diag::Stats;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::demux::Demux;
use crate::error::{BindError, InvalidHandle, PeerAddrError};
use crate::policy::Policy;
use crate::ports::PortTable;
use crate::rand::{Rng, SipKey};
pub use crate::shard::Input;
use crate::shard::Shard;
use crate::socket::{AnyHandle, Readiness, SocketHandle};
use crate::tcp::syncookie::CookieKey;
use crate::time::Instant;
use crate::wire::{self, DropReason, Packet, Transport};

use table::{Slot, Sock};

/// Most control packets (RSTs, ICMP replies) waiting for `poll_transmit`; more are
/// dropped, which is what a router's rate limit would do too.
const MAX_CTRL_QUEUE: usize = 1024;

/// What the device says about a received packet's transport (TCP, UDP) checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RxChecksum {
    /// Nothing: the stack verifies it (RFC 9293 3.1, RFC 768).
    #[default]
    Unverified,
    /// The device verified it, or the packet comes from the host's own stack with the
    /// checksum left to offload (virtio-net `DATA_VALID` / `NEEDS_CSUM`): not checked
    /// again.
    Verified,
}

/// Most reassembled datagrams waiting to be handed to their shard (`Stack::poll_foreign`);
/// beyond it they are dropped as `DropReason::ResourceLimit`. Reassembled TCP is rare
/// (Linux sets DF on TCP), so a small queue is plenty; 64 datagrams of at most 64 KiB.
pub(crate) const MAX_FOREIGN: usize = 64;

/// Pooled packet buffers may be at least this large whatever the MTU.
const MIN_POOLED: usize = 2048;

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
    icmp_limit: icmp::TokenBucket,
    now: Instant,
    /// The connection the last TCP segment went to: bulk flows skip the hash lookup.
    /// Validated on use (slot generation, 4-tuple, not CLOSED), so it never needs
    /// invalidating.
    last_tcp: Option<SocketHandle>,
    /// Next housekeeping pass (buffer trimming), run on activity at most once per
    /// `HOUSEKEEPING_INTERVAL`, so it never wakes an idle stack.
    next_housekeeping: Instant,
    /// The packet filter, port knocking and scan detection (`policy`); `None`: nothing
    /// to check, no cost.
    policy: Option<Box<Policy>>,
    /// The transparent TCP listener and UDP socket, which take what no other socket
    /// takes, for any destination (`tcp_listen_transparent`, `udp_bind_transparent`).
    transparent_tcp: Option<SocketHandle>,
    transparent_udp: Option<SocketHandle>,
    /// SYN cookie secret (RFC 4987 3.6), derived from the seed.
    cookie_key: CookieKey,
    /// IP reassembly (`frag`), and its scratch buffer for a completed datagram.
    reasm: frag::Reassembly,
    reasm_buf: Vec<u8>,
    /// Reassembled datagrams another shard owns, for the runtime to hand over
    /// (`poll_foreign`); at most `MAX_FOREIGN`.
    foreign: VecDeque<(u16, Vec<u8>)>,
    /// Datagrams larger than their path MTU going out as fragments (`frag`).
    frag_out: VecDeque<frag::Fragmenting>,
    /// Identification of the last datagram we fragmented.
    frag_ident: u32,
    /// Path MTU per destination (`pmtu`).
    pmtu: pmtu::PmtuCache,
    /// Socket buffer memory in use, and whether the stack is under memory pressure
    /// (`budget`).
    buf_mem: usize,
    mem_pressure: bool,
    /// Embryonic connections across all listeners.
    half_open: usize,
    /// What TCP buffer auto-tuning may still grow (`Config::tcp_buffer_budget`).
    buf_budget: crate::tcp::BufferBudget,
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
        // Keys derived from the ISN key, so the generator's sequence (ephemeral ports)
        // stays what it was.
        let derive = |label: u64| SipKey(isn_key.hash(&label.to_le_bytes()), isn_key.hash(&(!label).to_le_bytes()));
        let cookie_key = CookieKey::new(derive(1), derive(2));
        let frag_ident = derive(3).0 as u32;
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
            icmp_limit: icmp::TokenBucket::new(config.icmp_error_rate),
            now: Instant::ZERO,
            next_housekeeping: Instant::ZERO + diag::HOUSEKEEPING_INTERVAL,
            last_tcp: None,
            policy: None,
            transparent_tcp: None,
            transparent_udp: None,
            cookie_key,
            reasm: frag::Reassembly::new(derive(4)),
            reasm_buf: Vec::new(),
            foreign: VecDeque::new(),
            frag_out: VecDeque::new(),
            frag_ident,
            pmtu: pmtu::PmtuCache::new(derive(5)),
            buf_mem: 0,
            mem_pressure: false,
            half_open: 0,
            buf_budget: crate::tcp::BufferBudget::new(config.tcp_buffer_budget),
            cfg: config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether a packet to `dst`, not one of our addresses, is taken anyway: with a
    /// transparent socket, every unicast destination is (a gateway's traffic).
    fn takes_any_destination(&self, dst: IpAddr) -> bool {
        let unicast = !(dst.is_unspecified() || dst.is_multicast() || dst == IpAddr::from([255, 255, 255, 255]));
        unicast && (self.transparent_tcp.is_some() || self.transparent_udp.is_some())
    }

    /// The latest time the stack has been given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A key for the policy's per-source tables, derived from the ISN key (not drawn from
    /// the RNG, whose sequence picks ephemeral ports and must not shift).
    pub fn policy_key(&self) -> SipKey {
        SipKey(self.isn_key.0.rotate_left(29) ^ 0x706f_6c69_6379_6b65, self.isn_key.1.rotate_left(11))
    }

    /// Install a packet policy (filter rules, port knocking, scan detection; see
    /// [`crate::policy`]), replacing the previous one and its counters; `None` removes
    /// it. Established flows are not affected.
    pub fn set_policy(&mut self, policy: Option<Policy>) {
        self.policy = policy.map(Box::new);
    }

    /// The installed policy, with its counters.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    /// Tell the scan detector that `src` probed `port` and found nothing there, for
    /// what the stack cannot see by itself: a gateway whose relayed connection was
    /// refused beyond the stack (the transparent listener itself takes every port).
    /// Does nothing without a policy that detects scans.
    pub fn report_probe(&mut self, src: IpAddr, port: u16, kind: crate::policy::scan::ProbeKind) {
        let now = self.now;
        self.policy_probe(now, src, port, kind);
    }

    pub fn owns_address(&self, addr: IpAddr) -> bool {
        self.cfg.addrs.contains(&addr)
    }

    pub(crate) fn first_addr_like(&self, ip: IpAddr) -> Option<IpAddr> {
        self.cfg.addrs.iter().copied().find(|a| same_family(*a, ip))
    }

    /// A local address to bind: a wildcard of a family the stack has an address of, or
    /// one of the stack's own addresses.
    fn check_local(&self, local: SocketAddr) -> Result<(), BindError> {
        let ip = local.ip();
        if is_unspecified(ip) {
            if self.first_addr_like(ip).is_none() {
                return Err(BindError::NoAddressOfFamily { ipv6: ip.is_ipv6() });
            }
            return Ok(());
        }
        if !self.owns_address(ip) {
            return Err(BindError::NotOwned(ip));
        }
        Ok(())
    }

    /// Socket `h`'s readiness now (a level): see `Conn::readiness` for TCP connections;
    /// a listener is acceptable with a connection in its accept queue; a UDP socket is
    /// readable with a datagram queued and writable while its send queue has room.
    pub fn readiness(&self, h: impl Into<AnyHandle>) -> Readiness {
        self.readiness_at(h.into().raw())
    }

    fn readiness_at(&self, h: SocketHandle) -> Readiness {
        match self.slot(h).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => c.readiness(),
            Some(Sock::Listener(l)) => {
                if l.accept_q.is_empty() {
                    Readiness::EMPTY
                } else {
                    Readiness::ACCEPTABLE
                }
            }
            Some(Sock::Udp(u)) => {
                let mut r = Readiness::EMPTY;
                // A pending ICMP error is reported by the next receive or send.
                if !u.rxq.is_empty() || u.error.is_some() {
                    r |= Readiness::READABLE;
                }
                if u.txq.len() < self.cfg.udp_tx_queue || u.error.is_some() {
                    r |= Readiness::WRITABLE;
                }
                r
            }
            None => Readiness::EMPTY,
        }
    }

    /// Recompute socket `h`'s readiness after anything that may have changed it (a
    /// packet, a timer, an application call). What rose since the last computation is
    /// queued for `poll_readiness`; a fall is only recorded, so that the next rise is
    /// seen. Called for sockets the application holds (not for connections still in a
    /// listener's queues: accepting one computes its readiness).
    fn update_readiness(&mut self, h: SocketHandle) {
        let now = self.readiness_at(h);
        let Some(s) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen && s.sock.is_some()) else {
            return;
        };
        let rising = now.rising_from(s.level);
        s.level = now;
        if !rising.is_empty() {
            if s.pending.is_empty() {
                self.wakeups.push_back(h);
            }
            s.pending |= rising;
        }
    }

    // ---------------------------------------------------------------- I/O verbs

    /// Hand in one IP packet received at `now`. Invalid packets are counted and dropped.
    ///
    /// As one shard of several (`Config::shard`), a packet another shard owns is left
    /// alone (only `Stats::shard_handoffs` counts it) and [`Input::Elsewhere`] names
    /// the owner, to which the caller gives the same bytes.
    pub fn input(&mut self, now: Instant, packet: &[u8]) -> Input {
        self.input_with(now, packet, RxChecksum::Unverified)
    }

    /// [`input`](Self::input), saying whether the device vouches for the packet's TCP
    /// or UDP checksum (`RxChecksum::Verified`: it is not checked again; see
    /// `wire::parse_verified`).
    pub fn input_with(&mut self, now: Instant, packet: &[u8], checksum: RxChecksum) -> Input {
        // Matched by reference: the parsed packet is not moved (copied) out.
        let parsed = match checksum {
            RxChecksum::Unverified => wire::parse(packet),
            RxChecksum::Verified => wire::parse_verified(packet),
        };
        if let Some(shard) = self.cfg.shard {
            let owner = match &parsed {
                Ok(p) => shard.owner(p),
                Err(DropReason::Fragment) => Shard::FRAGMENT_OWNER,
                // Dropped (and counted) by whoever read it.
                Err(_) => shard.index(),
            };
            if owner != shard.index() {
                self.stats.shard_handoffs += 1;
                return Input::Elsewhere(owner);
            }
        }
        self.now = self.now.max(now);
        if now >= self.next_housekeeping {
            self.housekeeping(now);
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += packet.len() as u64;
        match &parsed {
            Ok(p) => self.deliver(now, p, packet),
            // Held for reassembly (RFC 791 3.2, RFC 8200 4.5): `frag`.
            Err(DropReason::Fragment) => self.fragment_input(now, packet),
            Err(reason) => self.count_drop(*reason, "parse"),
        }
        Input::Done
    }

    /// A reassembled datagram that another shard owns (`Config::shard`): the owner and
    /// the whole datagram, to hand to that shard's [`input`](Self::input). Call after
    /// `input` until `None`.
    pub fn poll_foreign(&mut self) -> Option<(u16, Vec<u8>)> {
        self.foreign.pop_front()
    }

    /// A whole datagram (received, or reassembled), parsed: to its protocol.
    #[inline(always)]
    fn deliver(&mut self, now: Instant, p: &Packet<'_>, packet: &[u8]) {
        if !self.owns_address(p.ip.dst) && !self.takes_any_destination(p.ip.dst) {
            return self.count_drop(DropReason::NotForUs, "destination");
        }
        if self.owns_address(p.ip.src) {
            return self.count_drop(DropReason::BadSourceAddress, "source is our own address");
        }
        match &p.transport {
            Transport::Tcp(seg) => self.tcp_input(now, &p.ip, seg, packet),
            Transport::Udp(d) => self.udp_input(now, &p.ip, d, packet),
            Transport::Icmp(m) => self.icmp_input(now, &p.ip, m, packet),
        }
    }

    /// Write the next packet to send into `buf` and return its length, or `None` when
    /// nothing is due. Call until `None`.
    ///
    /// Control packets (RSTs, ICMP replies) go first; then the fragments of a datagram
    /// larger than its path MTU, one per call; then the sockets scheduled to send,
    /// round robin, each writing at most one packet per turn.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than `config.mtu`: every packet the stack builds fits the
    /// MTU, and this is checked here, once, before anything is taken off a queue.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= self.cfg.mtu,
            "poll_transmit: a buffer of {} bytes is shorter than the MTU ({})",
            buf.len(),
            self.cfg.mtu
        );
        self.now = self.now.max(now);
        if let Some(pkt) = self.ctrl.pop_front() {
            // Built within the MTU (`queue_ctrl`).
            let n = pkt.len();
            buf[..n].copy_from_slice(&pkt);
            self.recycle(pkt);
            return Some(self.count_tx(n));
        }
        if !self.frag_out.is_empty() {
            if let Some(n) = self.next_fragment(buf) {
                return Some(self.count_tx(n));
            }
        }
        while let Some(h) = self.txq.pop_front() {
            let Some(slot) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen) else { continue };
            slot.in_txq = false;
            let sent = match slot.sock {
                Some(Sock::Tcp(_)) => self.tcp_transmit(now, h, buf),
                Some(Sock::Udp(_)) => self.udp_transmit(h, buf),
                Some(Sock::Listener(_)) | None => None,
            };
            if let Some(n) = sent {
                return Some(self.count_tx(n));
            }
        }
        None
    }

    /// Whether `poll_transmit` may have a packet: a cheap over-approximation (a socket
    /// scheduled to send may find nothing to send), for a runtime that sends later.
    pub fn may_transmit(&self) -> bool {
        !self.ctrl.is_empty() || !self.txq.is_empty()
    }

    fn count_tx(&mut self, n: usize) -> usize {
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += n as u64;
        n
    }

    /// Emit a control packet into a pooled buffer for the next `poll_transmit`, within
    /// the MTU. Returns whether it was queued; a packet that is not (the queue is full,
    /// or it would exceed the MTU: an echo request larger than our MTU) is counted in
    /// `Stats::ctrl_dropped`.
    fn queue_ctrl(&mut self, emit: impl FnOnce(&mut [u8]) -> Result<usize, wire::EmitError>) -> bool {
        if self.ctrl.len() >= MAX_CTRL_QUEUE {
            self.stats.ctrl_dropped += 1;
            tracing::debug!("control packet dropped: queue full");
            return false;
        }
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.resize(self.cfg.mtu, 0);
        match emit(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                self.ctrl.push_back(buf);
                true
            }
            Err(e) => {
                self.stats.ctrl_dropped += 1;
                tracing::debug!(?e, "control packet not emitted");
                self.recycle(buf);
                false
            }
        }
    }

    /// Give a packet buffer back to the pool. Buffers that grew past a few MTUs (a
    /// 64 KiB datagram) are freed instead, so the pool keeps no memory that no budget
    /// accounts for.
    fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= 2 * self.cfg.mtu.max(MIN_POOLED) {
            self.pool.push(buf);
        }
    }

    /// The earliest deadline at which `handle_timeout` must be called, if any: a
    /// socket's timer or an IP reassembly timeout.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let sockets = self.next_deadline();
        match self.reasm.next_deadline() {
            None => sockets,
            Some(r) => Some(sockets.map_or(r, |s| s.min(r))),
        }
    }

    /// Run every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(h) = self.pop_due_timer(now) {
            self.tcp_on_timer(now, h);
        }
        if self.reasm.next_deadline().is_some_and(|d| d <= now) {
            self.reassembly_timeouts(now);
        }
    }

    /// The next socket whose readiness rose (became readable, writable, acceptable or
    /// closed) since it was last reported, with what rose. The runtime wakes the
    /// threads and tasks waiting on that socket for that readiness.
    pub fn poll_readiness(&mut self) -> Option<(SocketHandle, Readiness)> {
        while let Some(h) = self.wakeups.pop_front() {
            if let Some(s) = self.slot_mut(h) {
                let r = std::mem::take(&mut s.pending);
                if !r.is_empty() {
                    return Some((h, r));
                }
            }
        }
        None
    }

    // ---------------------------------------------------------------- any socket

    /// Release the handle. TCP: a graceful close (FIN after queued data, RST if unread
    /// data is discarded, RFC 9293 3.10.4 / RFC 2525 2.17); the connection lives on as an
    /// orphan until the close completes. Listener: pending connections are reset.
    pub fn close(&mut self, h: impl Into<AnyHandle>) -> Result<(), InvalidHandle> {
        let h = h.into();
        if self.resolve(h.raw()).is_none() {
            return Err(InvalidHandle);
        }
        match h {
            AnyHandle::Tcp(h) => self.close_conn(h.raw()),
            AnyHandle::Listener(h) => self.close_listener(h.raw()),
            AnyHandle::Udp(h) => self.free_socket(h.raw()),
        }
        Ok(())
    }

    pub fn local_addr(&self, h: impl Into<AnyHandle>) -> Result<SocketAddr, InvalidHandle> {
        match self.slot(h.into().raw()).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Ok(c.local),
            Some(Sock::Listener(l)) => Ok(l.local),
            Some(Sock::Udp(u)) => Ok(u.local),
            None => Err(InvalidHandle),
        }
    }

    /// The connected peer: a connection's remote end, a connected UDP socket's peer;
    /// `NotConnected` for a listener or an unconnected UDP socket.
    pub fn peer_addr(&self, h: impl Into<AnyHandle>) -> Result<SocketAddr, PeerAddrError> {
        match self.slot(h.into().raw()).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Ok(c.remote),
            Some(Sock::Listener(_)) => Err(PeerAddrError::NotConnected),
            Some(Sock::Udp(u)) => u.remote.ok_or(PeerAddrError::NotConnected),
            None => Err(PeerAddrError::InvalidHandle),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod shard_tests;
