//! IP fragments: reassembly of what we receive (IPv4, RFC 791 3.2; IPv6, RFC 8200 4.5;
//! overlaps, RFC 5722) and fragmentation of what we send when it exceeds the path MTU
//! (UDP datagrams and ICMP echo replies; TCP never fragments, its segments fit the MSS
//! and carry DF).
//!
//! Reassembly keeps one [`Datagram`] per (source, destination, identification,
//! protocol) in a table bounded in datagrams (`Config::reassembly_datagrams`) and in
//! bytes (`Config::reassembly_memory`). A datagram's payload is assembled in place, in
//! any arrival order; the received ranges are kept merged, at most
//! [`MAX_RANGES`] disjoint ones. A fragment overlapping received bytes with other
//! bytes discards the whole datagram, and the entry stays, empty, until its timeout
//! to discard the datagram's later fragments too (RFC 5722 3; Linux does the same for
//! IPv4); a fragment repeating bytes already held is dropped alone. After the timeout
//! (`Config::reassembly_timeout_v4` / `_v6`) an incomplete datagram is dropped and, if
//! its first fragment arrived, an ICMP time exceeded (code 1) quoting that fragment
//! goes to the source (RFC 792, RFC 8200 4.5).
//!
//! None of this runs for a packet that is not a fragment: `Stack::input` reaches
//! `fragment_input` only when the parser reports a fragment.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Stack;
use crate::config::Config;
use crate::demux::KeyedState;
use crate::rand::SipKey;
use crate::time::Instant;
use crate::wire::frag::{self, Fragment};
use crate::wire::{self, icmp, DropReason, IcmpRepr, IcmpV4Message, IcmpV6Message};

/// Most disjoint received ranges of one datagram: fragments arriving in order merge
/// into one range, so only a datagram cut into many tiny pieces sent out of order
/// (an attack, or a broken sender) reaches this; it is then dropped.
pub(super) const MAX_RANGES: usize = 64;

/// Most datagrams waiting to be sent as fragments (ICMP echo replies larger than the
/// path MTU; a UDP socket sends its next datagram only once the previous one is out).
pub(super) const MAX_FRAGMENTED_OUT: usize = 16;

/// What identifies the fragments of one datagram (RFC 791 3.2: source, destination,
/// protocol, identification; RFC 8200 4.5: source, destination, identification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    /// IPv4 only (0 for IPv6).
    protocol: u8,
}

/// A datagram being reassembled.
#[derive(Debug)]
pub(super) struct Datagram {
    deadline: Instant,
    v6: bool,
    /// The first fragment's (offset 0) header once it arrived: the reassembled header,
    /// and with `first_len` the quote of a time exceeded.
    header: Vec<u8>,
    next_header_at: usize,
    /// IPv6: the first fragment's Fragment header next header; IPv4: the protocol.
    protocol: u8,
    ident: u32,
    /// Data bytes of the first fragment.
    first_len: usize,
    /// The payload, at its offsets.
    data: Vec<u8>,
    /// Received ranges of `data`, sorted, disjoint and not adjacent.
    ranges: Vec<(usize, usize)>,
    /// The payload length, once the last fragment (MF / M clear) arrived.
    total: Option<usize>,
    /// Fragments held (counted as drops if the datagram is given up).
    pieces: u64,
    /// Discarded for an overlap (RFC 5722): later fragments are dropped.
    dead: bool,
}

impl Datagram {
    fn complete(&self) -> bool {
        self.total.is_some_and(|t| self.ranges.len() == 1 && self.ranges[0] == (0, t)) && !self.header.is_empty()
    }

    /// The first fragment as it was received (its header and data), for the quote of
    /// an ICMP time exceeded. Empty if it never arrived.
    pub(super) fn first_fragment(&self, out: &mut Vec<u8>) {
        out.clear();
        if self.header.is_empty() {
            return;
        }
        out.extend_from_slice(&self.header);
        if self.v6 {
            // The Fragment header as it was: offset 0, M set (it was not the last).
            out.extend_from_slice(&[self.protocol, 0, 0, 1]);
            out.extend_from_slice(&self.ident.to_be_bytes());
        }
        out.extend_from_slice(&self.data[..self.first_len.min(self.data.len())]);
    }

    /// The reassembled packet (header rebuilt, RFC 791 3.2 / RFC 8200 4.5) into `out`.
    pub(super) fn packet(&self, out: &mut Vec<u8>) {
        let total = self.total.unwrap_or(0);
        out.clear();
        out.resize(self.header.len(), 0);
        frag::write_reassembled_header(&self.header, self.next_header_at, self.protocol, total, out);
        out.extend_from_slice(&self.data[..total]);
    }

    fn memory(&self) -> usize {
        self.data.capacity() + self.header.capacity()
    }
}

/// What became of a fragment.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Held until its datagram is complete.
    Held,
    /// It completed its datagram (removed from the table).
    Complete(Datagram),
    /// Dropped, `count` packets under `reason` (the fragment, and with a discarded
    /// datagram every fragment it held).
    Dropped { reason: DropReason, count: u64 },
}

/// The reassembly table (see the module documentation).
pub(super) struct Reassembly {
    table: HashMap<Key, Datagram, KeyedState>,
    /// Bytes held by the datagrams in progress.
    memory: usize,
    /// Earliest deadline in the table.
    next_deadline: Option<Instant>,
}

impl Reassembly {
    pub(super) fn new(key: SipKey) -> Reassembly {
        Reassembly { table: HashMap::with_hasher(KeyedState(key)), memory: 0, next_deadline: None }
    }

    pub(super) fn memory(&self) -> usize {
        self.memory
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    fn recompute_deadline(&mut self) {
        self.next_deadline = self.table.values().map(|d| d.deadline).min();
    }

    /// Take in one fragment (not an atomic one: the caller delivers those at once).
    pub(super) fn insert(&mut self, now: Instant, f: &Fragment<'_>, cfg: &Config) -> Outcome {
        let v6 = f.is_ipv6();
        let key = Key { src: f.src, dst: f.dst, ident: f.ident, protocol: if v6 { 0 } else { f.protocol } };
        let (off, end) = (f.offset, f.end());
        if !self.table.contains_key(&key) {
            if self.table.len() >= cfg.reassembly_datagrams {
                return Outcome::Dropped { reason: DropReason::ReassemblyFull, count: 1 };
            }
            let timeout = if v6 { cfg.reassembly_timeout_v6 } else { cfg.reassembly_timeout_v4 };
            let d = Datagram {
                deadline: now + timeout,
                v6,
                header: Vec::new(),
                next_header_at: 0,
                protocol: f.protocol,
                ident: f.ident,
                first_len: 0,
                data: Vec::new(),
                ranges: Vec::new(),
                total: None,
                pieces: 0,
                dead: false,
            };
            self.next_deadline = Some(self.next_deadline.map_or(d.deadline, |n| n.min(d.deadline)));
            self.table.insert(key, d);
        }
        let memory = self.memory;
        let d = self.table.get_mut(&key).expect("just looked up or inserted");
        if d.dead {
            return Outcome::Dropped { reason: DropReason::FragmentOverlap, count: 1 };
        }
        // The end of the datagram: known from its last fragment; nothing may lie
        // beyond it, and a second "last" fragment must agree (else the fragments
        // contradict each other: treated as an overlap, as Linux does).
        let inconsistent = match (f.more, d.total) {
            (false, Some(t)) => end != t,
            (false, None) => d.ranges.last().is_some_and(|r| r.1 > end),
            (true, Some(t)) => end > t,
            (true, None) => false,
        };
        // Received bytes this fragment touches.
        let first_touch = d.ranges.partition_point(|r| r.1 <= off);
        let touches = d.ranges.get(first_touch).is_some_and(|r| r.0 < end);
        if !inconsistent && touches {
            let r = d.ranges[first_touch];
            // Wholly inside one received range with the same bytes: a duplicate.
            if r.0 <= off && end <= r.1 && d.data[off..end] == *f.data {
                return Outcome::Dropped { reason: DropReason::FragmentDuplicate, count: 1 };
            }
        }
        if inconsistent || touches {
            // RFC 5722 3: discard the datagram and its fragments.
            let count = d.pieces + 1;
            let freed = d.memory();
            d.dead = true;
            d.data = Vec::new();
            d.header = Vec::new();
            d.ranges = Vec::new();
            d.pieces = 0;
            self.memory -= freed;
            return Outcome::Dropped { reason: DropReason::FragmentOverlap, count };
        }
        // Room for the data: grow to the known total, else to the next power of two
        // (so in-order fragments do not reallocate each time), within 64 KiB.
        let want = match d.total.or((!f.more).then_some(end)) {
            Some(t) => t,
            None => end.next_power_of_two().min(wire::ip::MAX_LENGTH_FIELD),
        }
        .max(end);
        let header_growth = if off == 0 { f.header.len() } else { 0 };
        let growth = want.saturating_sub(d.data.capacity()) + header_growth;
        let joins = usize::from(first_touch > 0 && d.ranges[first_touch - 1].1 == off)
            + usize::from(d.ranges.get(first_touch).is_some_and(|r| r.0 == end));
        let merged_ranges = d.ranges.len() + 1 - joins;
        if memory + growth > cfg.reassembly_memory || merged_ranges > MAX_RANGES {
            if d.pieces == 0 {
                self.table.remove(&key);
                self.recompute_deadline();
            }
            return Outcome::Dropped { reason: DropReason::ReassemblyFull, count: 1 };
        }
        let before = d.memory();
        if d.data.len() < end {
            if d.data.capacity() < want {
                d.data.reserve_exact(want - d.data.len());
            }
            d.data.resize(end, 0);
        }
        d.data[off..end].copy_from_slice(f.data);
        if off == 0 {
            d.header.clear();
            d.header.reserve_exact(f.header.len());
            d.header.extend_from_slice(f.header);
            d.next_header_at = f.next_header_at;
            d.protocol = f.protocol;
            d.first_len = f.data.len();
        }
        if !f.more {
            d.total = Some(end);
        }
        insert_range(&mut d.ranges, first_touch, off, end);
        d.pieces += 1;
        let after = d.memory();
        self.memory = self.memory + after - before;
        if d.complete() {
            let d = self.table.remove(&key).expect("present");
            self.memory -= d.memory();
            self.recompute_deadline();
            return Outcome::Complete(d);
        }
        Outcome::Held
    }

    /// Remove a datagram whose deadline has passed, if any.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<Datagram> {
        if self.next_deadline.is_none_or(|d| d > now) {
            return None;
        }
        let key = *self.table.iter().find(|(_, d)| d.deadline <= now)?.0;
        let d = self.table.remove(&key).expect("present");
        self.memory -= d.memory();
        self.recompute_deadline();
        Some(d)
    }

    /// Internal consistency, for `Stack::check_invariants`.
    pub(super) fn check(&self, cfg: &Config) -> Result<(), String> {
        let held: usize = self.table.values().map(Datagram::memory).sum();
        if held != self.memory {
            return Err(format!("reassembly memory {} but datagrams hold {held}", self.memory));
        }
        if self.table.len() > cfg.reassembly_datagrams {
            return Err("reassembly table over its bound".into());
        }
        if self.next_deadline != self.table.values().map(|d| d.deadline).min() {
            return Err("reassembly deadline out of date".into());
        }
        for d in self.table.values() {
            if d.ranges.len() > MAX_RANGES || d.ranges.windows(2).any(|w| w[0].1 >= w[1].0) {
                return Err(format!("reassembly ranges {:?}", d.ranges));
            }
            if d.dead && (!d.data.is_empty() || d.pieces != 0) {
                return Err("a discarded datagram holds data".into());
            }
        }
        Ok(())
    }
}

/// Insert `[off, end)`, which touches no range, before index `at`, merging with the
/// neighbours it is adjacent to.
fn insert_range(ranges: &mut Vec<(usize, usize)>, at: usize, off: usize, end: usize) {
    let joins_prev = at > 0 && ranges[at - 1].1 == off;
    let joins_next = ranges.get(at).is_some_and(|r| r.0 == end);
    match (joins_prev, joins_next) {
        (true, true) => {
            ranges[at - 1].1 = ranges[at].1;
            ranges.remove(at);
        }
        (true, false) => ranges[at - 1].1 = end,
        (false, true) => ranges[at].0 = off,
        (false, false) => ranges.insert(at, (off, end)),
    }
}

/// A datagram too large for its path MTU, going out one fragment per `poll_transmit`.
pub(super) struct Fragmenting {
    /// The whole packet, as emitted.
    packet: Vec<u8>,
    /// Offset of the next fragment's data in the payload.
    next: usize,
    mtu: usize,
    ident: u32,
}

impl Stack {
    /// A packet the parser reported as a fragment (RFC 791 3.2, RFC 8200 4.5).
    pub(super) fn fragment_input(&mut self, now: Instant, packet: &[u8]) {
        if self.cfg.reassembly_memory == 0 {
            return self.count_drop(DropReason::Fragment, "reassembly off");
        }
        let f = match frag::parse_fragment(packet) {
            Ok(f) => f,
            Err(reason) => return self.count_drop(reason, "fragment"),
        };
        if !self.owns_address(f.dst) {
            return self.count_drop(DropReason::NotForUs, "fragment destination");
        }
        if self.owns_address(f.src) {
            return self.count_drop(DropReason::BadSourceAddress, "fragment from our own address");
        }
        self.stats.frag_received += 1;
        let mut out = std::mem::take(&mut self.reasm_buf);
        if f.is_atomic() {
            // RFC 6946: an atomic fragment is processed in isolation, with no state.
            out.clear();
            out.resize(f.header.len(), 0);
            frag::write_reassembled_header(f.header, f.next_header_at, f.protocol, f.data.len(), &mut out);
            out.extend_from_slice(f.data);
            self.stats.frag_reassembled += 1;
            self.deliver_reassembled(now, &out);
        } else {
            match self.reasm.insert(now, &f, &self.cfg) {
                Outcome::Held => {}
                Outcome::Dropped { reason, count } => {
                    if reason == DropReason::FragmentOverlap && count > 1 {
                        self.stats.frag_overlaps += 1;
                    }
                    self.count_drops(reason, count, "fragment");
                }
                Outcome::Complete(d) => {
                    self.stats.frag_reassembled += 1;
                    d.packet(&mut out);
                    self.deliver_reassembled(now, &out);
                }
            }
            self.stats.reassembly_memory = self.reasm.memory() as u64;
        }
        self.reasm_buf = out;
    }

    /// A reassembled datagram goes the way of any packet.
    fn deliver_reassembled(&mut self, now: Instant, packet: &[u8]) {
        match wire::parse(packet) {
            Ok(p) => match self.cfg.shard.map(|s| (s, s.owner(&p))) {
                Some((shard, owner)) if owner != shard.index() => {
                    if self.foreign.len() >= super::MAX_FOREIGN {
                        return self.count_drop(DropReason::ResourceLimit, "reassembled datagram for another shard");
                    }
                    self.stats.shard_handoffs += 1;
                    self.foreign.push_back((owner, packet.to_vec()));
                }
                _ => self.deliver(now, &p, packet),
            },
            // A fragment inside a fragment (a second Fragment header): not ours to undo.
            Err(DropReason::Fragment) => self.count_drop(DropReason::FragmentMalformed, "nested fragment"),
            Err(reason) => self.count_drop(reason, "reassembled datagram"),
        }
    }

    /// Reassembly timeouts due at `now`: drop the datagrams, send time exceeded where
    /// the first fragment arrived (RFC 792; RFC 8200 4.5), rate limited like every ICMP
    /// error we send.
    pub(super) fn reassembly_timeouts(&mut self, now: Instant) {
        while let Some(d) = self.reasm.pop_expired(now) {
            self.stats.reassembly_memory = self.reasm.memory() as u64;
            if d.dead {
                continue;
            }
            self.stats.frag_timeouts += 1;
            self.count_drops(DropReason::ReassemblyTimeout, d.pieces, "reassembly timeout");
            let mut quote = std::mem::take(&mut self.reasm_buf);
            d.first_fragment(&mut quote);
            if !quote.is_empty() {
                self.icmp_time_exceeded(now, &quote);
            }
            self.reasm_buf = quote;
        }
    }

    /// RFC 792 / RFC 4443 3.3 time exceeded, code 1 (fragment reassembly time
    /// exceeded), about `first`, the first fragment as received.
    fn icmp_time_exceeded(&mut self, now: Instant, first: &[u8]) {
        let Ok(f) = frag::parse_fragment(first) else { return };
        if !self.icmp_limit.take(now, self.cfg.icmp_error_rate) {
            self.stats.icmp_errors_rate_limited += 1;
            return;
        }
        let v6 = f.is_ipv6();
        let quote = icmp::error_quote(first, v6);
        let room = self.cfg.mtu.saturating_sub(wire::ip_header_len(f.src) + icmp::ICMP_HEADER_LEN);
        let quote = &quote[..quote.len().min(room)];
        let code = icmp::time_exceeded::REASSEMBLY;
        let msg = if v6 {
            IcmpRepr::V6(IcmpV6Message::TimeExceeded { code, invoking: quote })
        } else {
            IcmpRepr::V4(IcmpV4Message::TimeExceeded { code, invoking: quote })
        };
        let (src, dst) = (f.dst, f.src);
        if self.queue_ctrl(|buf| wire::emit_icmp(buf, src, dst, &msg)) {
            self.stats.frag_time_exceeded_sent += 1;
        }
    }

    /// The path MTU toward `dst`: the link MTU, or less if ICMP said so (`pmtu`).
    pub(super) fn path_mtu(&self, dst: IpAddr) -> usize {
        self.pmtu.get(self.now, dst).map_or(self.cfg.mtu, |m| m.min(self.cfg.mtu))
    }

    /// Send `packet` (whole, as emitted) as fragments of at most `mtu` bytes, one per
    /// `poll_transmit`. `false` if too many datagrams are waiting already: the packet
    /// is dropped and counted in `Stats::ctrl_dropped`.
    pub(super) fn send_fragmented(&mut self, packet: Vec<u8>, mtu: usize) -> bool {
        if self.frag_out.len() >= MAX_FRAGMENTED_OUT {
            self.stats.ctrl_dropped += 1;
            tracing::debug!(len = packet.len(), "fragmented datagram dropped: queue full");
            self.recycle(packet);
            return false;
        }
        // RFC 791 3.2 / RFC 8200 4.5: an identification unique for the source,
        // destination (and protocol) within the reassembly lifetime: a per-stack
        // counter from a secret start (RFC 7739 accepts one for a host that fragments
        // rarely).
        self.frag_ident = self.frag_ident.wrapping_add(1);
        self.stats.frag_datagrams_sent += 1;
        self.frag_out.push_back(Fragmenting { packet, next: 0, mtu, ident: self.frag_ident });
        true
    }

    /// The next fragment of the datagram being fragmented, if any, into `buf`.
    #[inline]
    pub(super) fn next_fragment(&mut self, buf: &mut [u8]) -> Option<usize> {
        let job = self.frag_out.front_mut()?;
        let (n, next) = frag::write_fragment(&job.packet, job.next, job.mtu, job.ident, buf);
        match next {
            Some(o) => job.next = o,
            None => {
                let done = self.frag_out.pop_front().expect("front exists");
                self.recycle(done.packet);
            }
        }
        self.stats.frags_sent += 1;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn cfg() -> Config {
        Config { reassembly_memory: 1 << 20, ..Config::default() }
    }

    const S: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const D: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn frag<'a>(header: &'a [u8], offset: usize, more: bool, data: &'a [u8]) -> Fragment<'a> {
        Fragment { src: S, dst: D, ident: 5, protocol: 17, offset, more, header, next_header_at: 0, data }
    }

    const H: [u8; 20] = [0x45, 0, 0, 0, 0, 5, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];

    #[test]
    fn any_order_reassembles() {
        let data: Vec<u8> = (0..40u8).collect();
        let orders: [&[usize]; 4] = [&[0, 1, 2, 3, 4], &[4, 3, 2, 1, 0], &[2, 0, 4, 1, 3], &[1, 3, 0, 4, 2]];
        for order in orders {
            let mut r = Reassembly::new(SipKey(1, 2));
            let mut done = None;
            for (i, &k) in order.iter().enumerate() {
                let f = frag(&H, k * 8, k < 4, &data[k * 8..k * 8 + 8]);
                match r.insert(Instant::ZERO, &f, &cfg()) {
                    Outcome::Held => assert!(i < 4),
                    Outcome::Complete(d) => done = Some(d),
                    other => panic!("{order:?}: {other:?}"),
                }
                r.check(&cfg()).unwrap();
            }
            let d = done.expect("complete");
            assert_eq!((r.len(), r.memory(), r.next_deadline()), (0, 0, None));
            let mut p = Vec::new();
            d.packet(&mut p);
            assert_eq!(&p[20..], &data[..]);
            assert_eq!(u16::from_be_bytes([p[2], p[3]]), 60);
            assert_eq!(&p[6..8], &[0, 0], "MF cleared");
        }
    }

    #[test]
    fn overlap_kills_the_datagram_duplicate_does_not() {
        let data = [7u8; 24];
        let mut r = Reassembly::new(SipKey(1, 2));
        assert!(matches!(r.insert(Instant::ZERO, &frag(&H, 0, true, &data[..16]), &cfg()), Outcome::Held));
        // An exact duplicate, and a sub-range with the same bytes: dropped alone.
        for (off, len) in [(0, 16), (8, 8)] {
            let out = r.insert(Instant::ZERO, &frag(&H, off, true, &data[..len]), &cfg());
            assert!(matches!(out, Outcome::Dropped { reason: DropReason::FragmentDuplicate, count: 1 }), "{out:?}");
        }
        // Overlapping with other bytes: the datagram and its one held fragment go.
        let other = [9u8; 16];
        let out = r.insert(Instant::ZERO, &frag(&H, 8, true, &other), &cfg());
        assert!(matches!(out, Outcome::Dropped { reason: DropReason::FragmentOverlap, count: 2 }), "{out:?}");
        assert_eq!(r.memory(), 0);
        // Later fragments of it are dropped until the timeout; then it is forgotten.
        let out = r.insert(Instant::ZERO, &frag(&H, 16, false, &data[..8]), &cfg());
        assert!(matches!(out, Outcome::Dropped { reason: DropReason::FragmentOverlap, count: 1 }), "{out:?}");
        r.check(&cfg()).unwrap();
        assert!(r.pop_expired(Instant::ZERO + Duration::from_secs(29)).is_none());
        let d = r.pop_expired(Instant::ZERO + Duration::from_secs(30)).expect("expired");
        assert!(d.dead);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn contradicting_ends_and_caps() {
        let data = [1u8; 64];
        let mut r = Reassembly::new(SipKey(1, 2));
        assert!(matches!(r.insert(Instant::ZERO, &frag(&H, 16, false, &data[..8]), &cfg()), Outcome::Held));
        // Data beyond the known end.
        let out = r.insert(Instant::ZERO, &frag(&H, 24, true, &data[..8]), &cfg());
        assert!(matches!(out, Outcome::Dropped { reason: DropReason::FragmentOverlap, count: 2 }), "{out:?}");
        // The datagram cap.
        let small = Config { reassembly_datagrams: 1, ..cfg() };
        let g = Fragment { ident: 6, ..frag(&H, 0, true, &data[..8]) };
        let out = r.insert(Instant::ZERO, &g, &small);
        assert!(matches!(out, Outcome::Dropped { reason: DropReason::ReassemblyFull, .. }), "{out:?}");
        // The memory cap: the new datagram is not kept.
        let tiny = Config { reassembly_memory: 8, ..cfg() };
        let out = r.insert(Instant::ZERO, &g, &tiny);
        assert!(matches!(out, Outcome::Dropped { reason: DropReason::ReassemblyFull, .. }), "{out:?}");
        assert_eq!(r.len(), 1);
        r.check(&cfg()).unwrap();
    }

    #[test]
    fn too_many_holes() {
        let data = [3u8; 8];
        let mut r = Reassembly::new(SipKey(1, 2));
        for k in 0..MAX_RANGES {
            let out = r.insert(Instant::ZERO, &frag(&H, 16 * k + 8, true, &data), &cfg());
            assert!(matches!(out, Outcome::Held), "{k}: {out:?}");
        }
        let out = r.insert(Instant::ZERO, &frag(&H, 16 * MAX_RANGES + 8, true, &data), &cfg());
        assert!(matches!(out, Outcome::Dropped { reason: DropReason::ReassemblyFull, count: 1 }), "{out:?}");
        // Filling a hole merges two ranges: still accepted.
        assert!(matches!(r.insert(Instant::ZERO, &frag(&H, 16, true, &data), &cfg()), Outcome::Held));
        r.check(&cfg()).unwrap();
    }

    #[test]
    fn ipv6_first_fragment_quote_is_the_fragment() {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[6] = 44;
        h[8..24].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
        h[24..40].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets());
        h[4..6].copy_from_slice(&24u16.to_be_bytes());
        let mut pkt = h.clone();
        pkt.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
        pkt.extend_from_slice(&[0xab; 16]);
        let f = frag::parse_fragment(&pkt).unwrap();
        let mut r = Reassembly::new(SipKey(1, 2));
        assert!(matches!(r.insert(Instant::ZERO, &f, &cfg()), Outcome::Held));
        let d = r.pop_expired(Instant::ZERO + Duration::from_secs(60)).expect("expired after 60 s");
        let mut q = Vec::new();
        d.first_fragment(&mut q);
        assert_eq!(q, pkt);
    }
}
