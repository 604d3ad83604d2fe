//! The link model: what one direction of a network path does to the packets sent over
//! it. A bottleneck of some rate with a bounded queue in front, random loss, a fixed
//! delay, reordering, duplication and corruption, all drawn from one seeded
//! [`Rng`]. It is the one link model of the project:
//!
//! - the runtime's device middleware (`runtime::device::Impaired`) impairs both
//!   directions of a TUN or in-memory link with it, on the wall clock (the kernels this
//!   runs on may have no `netem` qdisc);
//! - the tests' network simulator and in-memory link (`tests/src/sim.rs`,
//!   `tests/src/link.rs`) carry every packet between two stacks through it, on virtual
//!   time.
//!
//! An [`Impairer`] is pure: it never reads a clock, spawns nothing and does no I/O.
//! Packets go in with `push(now, packet)`, which says what became of them ([`Fate`]);
//! `release(now, ..)` hands out those whose time has come; `next_release()` says when
//! the next one is due (the runtime folds it into its poll(2) timeout, the simulator
//! jumps its clock to it). The same configuration, seed and sequence of calls give the
//! same decisions and the same output.
//!
//! What happens to one packet offered at `now`, in order:
//!
//! 1. **queue**: with `rate_bps`, the packet joins a FIFO queue in front of a bottleneck
//!    of that rate. If the queue (every packet waiting or being serialized, this one
//!    included) would then hold more than `queue_packets` packets or `queue_bytes`
//!    bytes, the packet is tail-dropped. Otherwise it leaves the bottleneck
//!    `len * 8 / rate` seconds (nanosecond precision) after the packet before it, or
//!    after `now` when the bottleneck is idle. Without a rate it leaves at once;
//! 2. **loss**: with probability `loss`, it is lost on the wire (it used its
//!    serialization time, then vanished);
//! 3. **delay**: the fixed propagation delay `delay` is added;
//! 4. **reorder**: with probability `reorder`, it is held back for an extra time drawn
//!    uniformly from `reorder_hold` (by default between `d` and `2 d`,
//!    `d = max(delay, 1 ms)`), so packets sent after it overtake it;
//! 5. **duplicate**: with probability `duplicate`, a second copy arrives after the first,
//!    later by a gap drawn uniformly from `duplicate_gap` (by default none);
//! 6. **corrupt**: each copy, independently, with probability `corrupt`, is damaged as
//!    `corruption` says ([`Corruption`]); an empty packet is left alone.
//!
//! A copy is due at the microsecond its last bit arrives (rounded up); copies due at the
//! same microsecond leave in the order they were made. No randomness is drawn for a
//! tail-dropped packet, nor for an impairment whose probability is zero.
//!
//! Bounds: at most [`MAX_HELD_PACKETS`] copies are held per direction, wherever they
//! are (in the queue, on the wire, held back); a packet or a duplicate beyond that is
//! tail-dropped too. The queue is bounded by `queue_packets` (at most that many) and
//! `queue_bytes` (by default `max(2 * rate * (2 * delay), 64 KiB)`: twice the
//! bandwidth-delay product of a round trip through both directions, with a floor for
//! small delays). Buffers come from a pool that is refilled when packets are released,
//! so the steady state allocates nothing per packet.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::error::ImpairmentError;
use crate::rand::Rng;
use crate::time::Instant;

/// At most this many copies are held per direction, in every stage together (netem's
/// default `limit`); also the largest accepted `queue_packets`.
pub const MAX_HELD_PACKETS: usize = 1000;

/// Floor of the default byte limit of the queue.
pub const MIN_BACKLOG_BYTES: u64 = 64 * 1024;

/// Longest accepted `delay`, and bound of the reordering hold and duplicate gap.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Floor of the default reordering hold (see the module documentation).
const MIN_REORDER_STEP: Duration = Duration::from_millis(1);

/// Distinguishes the two directions' random sequences derived from one seed.
const RX_STREAM: u64 = 0x5258_5258_5258_5258; // "RXRX..."
const TX_STREAM: u64 = 0x5458_5458_5458_5458; // "TXTX..."

/// How corruption damages a packet (step 6 of the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Corruption {
    /// One random bit is flipped past the IP header (the IPv4 header by its IHL, the
    /// fixed 40-byte IPv6 header), in the TCP/UDP/ICMP part, so the transport checksum
    /// (RFC 1071) rejects it at the receiver. IPv6 extension headers are not skipped: a
    /// flip there makes the packet malformed instead, which the receiver drops too. A
    /// packet with no transport part is hit anywhere.
    #[default]
    TransportBit,
    /// One random bit is flipped or one random byte is replaced with another value (even
    /// odds), anywhere in the packet, IP header included: the receiver's IP checks are
    /// exercised too, and over IPv6 a change in the traffic class, flow label or hop
    /// limit (which no checksum covers) leaves a valid packet.
    AnyByte,
}

/// How a link impairs packets; see the module documentation for the model. One
/// configuration serves both directions of a link, each with its own random sequence
/// ([`Impairment::rx`], [`Impairment::tx`]). `delay` and `rate_bps` apply per direction:
/// a round trip gains `2 * delay`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Impairment {
    /// Probability (0..=1) that a packet is lost on the wire.
    pub loss: f64,
    /// Probability (0..=1) that a packet is held back so that later ones overtake it.
    pub reorder: f64,
    /// Probability (0..=1) that a packet arrives twice.
    pub duplicate: f64,
    /// Probability (0..=1) that a copy is corrupted.
    pub corrupt: f64,
    /// Fixed latency added to every packet (at most [`MAX_DELAY`]).
    pub delay: Duration,
    /// Bottleneck rate in bits per second; `None` for no limit (and no queue).
    pub rate_bps: Option<u64>,
    /// Most packets in the queue in front of the bottleneck, the one being serialized
    /// included (1..=[`MAX_HELD_PACKETS`]; default [`MAX_HELD_PACKETS`]).
    pub queue_packets: usize,
    /// Most bytes in that queue; `None` (the default) for `max(2 * rate * (2 * delay),
    /// 64 KiB)`.
    pub queue_bytes: Option<u64>,
    /// The range of the extra hold of a reordered packet; `None` (the default) for
    /// `d..=2 d` with `d = max(delay, 1 ms)`. Bounds at most [`MAX_DELAY`].
    pub reorder_hold: Option<(Duration, Duration)>,
    /// The range of the gap between a packet and its duplicate (default none: the copy
    /// follows at once). Bounds at most [`MAX_DELAY`].
    pub duplicate_gap: (Duration, Duration),
    /// What corruption does (default [`Corruption::TransportBit`]).
    pub corruption: Corruption,
    /// Seed of the pseudo-random decisions: the same seed gives the same sequence of
    /// decisions (which packets they hit depends on the traffic itself).
    pub seed: u64,
}

impl Impairment {
    /// Change some fields of this value and return it: how code outside the crate
    /// writes what a struct literal with `..` would (the type is `#[non_exhaustive]`,
    /// so fields can be added without breaking callers), e.g.
    /// `Impairment::default().with(|c| { c.a = x; c.b = y; })`.
    #[must_use]
    pub fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

impl Default for Impairment {
    /// No impairment at all (every packet passes at once), seed 0.
    fn default() -> Impairment {
        Impairment {
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            delay: Duration::ZERO,
            rate_bps: None,
            queue_packets: MAX_HELD_PACKETS,
            queue_bytes: None,
            reorder_hold: None,
            duplicate_gap: (Duration::ZERO, Duration::ZERO),
            corruption: Corruption::TransportBit,
            seed: 0,
        }
    }
}

impl Impairment {
    /// A link that only delays every packet by `delay` (a lossless FIFO).
    pub fn delay(delay: Duration) -> Impairment {
        Impairment { delay, ..Impairment::default() }
    }

    /// Checks every field: probabilities in 0..=1, durations at most [`MAX_DELAY`] and
    /// ranges not empty, a rate and queue limits above zero, `queue_packets` at most
    /// [`MAX_HELD_PACKETS`]. ([`Impairer`] itself never fails: it clamps what is out of
    /// range.)
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        for (what, value) in
            [("loss", self.loss), ("reorder", self.reorder), ("duplicate", self.duplicate), ("corrupt", self.corrupt)]
        {
            if !(0.0..=1.0).contains(&value) {
                return Err(ImpairmentError::Probability { what, value });
            }
        }
        let too_long = |what, value: Duration| {
            if value > MAX_DELAY {
                Err(ImpairmentError::TooLong { what, value, max: MAX_DELAY })
            } else {
                Ok(())
            }
        };
        too_long("delay", self.delay)?;
        let mut ranges = vec![("duplicate gap", self.duplicate_gap)];
        ranges.extend(self.reorder_hold.map(|r| ("reorder hold", r)));
        for (what, (lo, hi)) in ranges {
            too_long(what, hi)?;
            if lo > hi {
                return Err(ImpairmentError::Range { what, lo, hi });
            }
        }
        if self.rate_bps == Some(0) {
            return Err(ImpairmentError::ZeroRate);
        }
        if !(1..=MAX_HELD_PACKETS).contains(&self.queue_packets) {
            return Err(ImpairmentError::QueuePackets { value: self.queue_packets, max: MAX_HELD_PACKETS });
        }
        if self.queue_bytes == Some(0) {
            return Err(ImpairmentError::ZeroQueueBytes);
        }
        Ok(())
    }

    /// The byte limit of the queue in front of a bottleneck of `rate` bit/s: the
    /// configured one, or `max(2 * rate * (2 * delay), 64 KiB)`.
    pub fn queue_bytes_at(&self, rate: u64) -> u64 {
        self.queue_bytes.unwrap_or_else(|| {
            let rtt_micros = self.delay.as_micros().saturating_mul(2);
            let bdp = u128::from(rate) * rtt_micros / 8_000_000;
            (bdp.saturating_mul(2).min(u64::MAX as u128) as u64).max(MIN_BACKLOG_BYTES)
        })
    }

    /// The range of a reordered packet's extra hold.
    pub fn reorder_hold_range(&self) -> (Duration, Duration) {
        self.reorder_hold.unwrap_or_else(|| {
            let d = self.delay.max(MIN_REORDER_STEP);
            (d, d * 2)
        })
    }

    /// The impairer of one direction (the runtime: packets read from the device, towards
    /// the core), with its own random sequence derived from `seed`.
    pub fn rx(&self, max_packet: usize) -> Impairer {
        Impairer::new(self.clone(), self.seed ^ RX_STREAM, max_packet)
    }

    /// The impairer of the other direction (the runtime: packets from the core, towards
    /// the device).
    pub fn tx(&self, max_packet: usize) -> Impairer {
        Impairer::new(self.clone(), self.seed ^ TX_STREAM, max_packet)
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |p: f64| p * 100.0;
        write!(
            f,
            "loss {}%, reorder {}%, duplicate {}%, corrupt {}%, delay {:?}",
            pct(self.loss),
            pct(self.reorder),
            pct(self.duplicate),
            pct(self.corrupt),
            self.delay
        )?;
        match self.rate_bps {
            Some(r) => write!(
                f,
                ", rate {} Mbit/s, queue {} packets / {} bytes",
                r as f64 / 1e6,
                self.queue_packets,
                self.queue_bytes_at(r)
            )?,
            None => write!(f, ", rate unlimited")?,
        }
        if let Some((lo, hi)) = self.reorder_hold {
            write!(f, ", reorder hold {lo:?}..={hi:?}")?;
        }
        if self.duplicate_gap.1 > Duration::ZERO {
            write!(f, ", duplicate gap {:?}..={:?}", self.duplicate_gap.0, self.duplicate_gap.1)?;
        }
        if self.corruption == Corruption::AnyByte {
            write!(f, ", corruption anywhere")?;
        }
        write!(f, ", seed {}", self.seed)
    }
}

/// What one direction's impairer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImpairCounters {
    /// Packets offered.
    pub packets: u64,
    /// Copies handed on (duplicates included).
    pub delivered: u64,
    /// Lost on the wire (`loss`).
    pub lost: u64,
    /// Dropped because the queue (or the impairer as a whole) was full: tail drop.
    pub tail_dropped: u64,
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Copies damaged by `corrupt`.
    pub corrupted: u64,
    /// Packets held back by `reorder`.
    pub reordered: u64,
}

impl fmt::Display for ImpairCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets, {} delivered, {} lost, {} tail-dropped, {} duplicated, {} corrupted, {} reordered",
            self.packets, self.delivered, self.lost, self.tail_dropped, self.duplicated, self.corrupted, self.reordered
        )
    }
}

/// One copy of a packet on its way through the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CopyInfo {
    /// When it is due at the far end.
    pub due: Instant,
    /// Held back by `reorder`.
    pub reordered: bool,
    /// The second copy of a duplicated packet.
    pub duplicate: bool,
    /// Damaged by `corrupt`.
    pub corrupted: bool,
}

/// What became of one packet offered to [`Impairer::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// The queue (or the impairer) was full.
    TailDropped,
    /// Lost on the wire.
    Lost,
    /// Held until due: the packet, and its duplicate when there is one.
    Held { first: CopyInfo, second: Option<CopyInfo> },
}

/// A copy waiting for its release time.
struct Held {
    /// Arrival order: copies due at the same time leave in the order they were made.
    seq: u64,
    info: CopyInfo,
    len: usize,
    buf: Box<[u8]>,
}

impl Held {
    fn key(&self) -> (Instant, u64) {
        (self.info.due, self.seq)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Held) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// One direction of an impaired link (see the module documentation).
pub struct Impairer {
    cfg: Impairment,
    rng: Rng,
    /// Min-heap by (due time, arrival); at most [`MAX_HELD_PACKETS`] copies.
    held: BinaryHeap<Reverse<Held>>,
    /// The queue in front of the bottleneck: (when its last bit is serialized, in
    /// nanoseconds since [`Instant::ZERO`], length) of each packet waiting or being
    /// serialized; at most `queue_packets` entries.
    queue: VecDeque<(u64, usize)>,
    queued_bytes: u64,
    /// When the bottleneck finishes serializing the last queued packet (nanoseconds).
    busy_until_ns: u64,
    /// Buffers of released packets, reused for the next ones.
    pool: Vec<Box<[u8]>>,
    /// Size of a fresh buffer.
    buf_size: usize,
    next_seq: u64,
    counters: ImpairCounters,
    /// Buffers allocated so far (pool misses); stays flat in the steady state.
    allocations: u64,
}

impl fmt::Debug for Impairer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impairer")
            .field("cfg", &self.cfg)
            .field("held", &self.held.len())
            .field("queued", &self.queue.len())
            .field("counters", &self.counters)
            .finish()
    }
}

fn nanos(t: Instant) -> u64 {
    t.total_micros().saturating_mul(1000)
}

/// The instant a copy is due: its nanosecond time rounded up to the microsecond.
fn due_at(ns: u64) -> Instant {
    Instant::from_micros(ns.div_ceil(1000))
}

fn saturating_nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Impairer {
    /// An impairer with its own random sequence from `seed` (the configuration's own
    /// seed is not used here; see [`Impairment::rx`]); buffers are `max_packet` bytes
    /// (longer packets get a buffer of their own size). It does not validate `cfg`:
    /// probabilities outside 0..=1 act as 0 or 1, empty ranges as their lower bound.
    pub fn new(cfg: Impairment, seed: u64, max_packet: usize) -> Impairer {
        Impairer {
            cfg,
            rng: Rng::new(seed),
            held: BinaryHeap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            busy_until_ns: 0,
            pool: Vec::new(),
            buf_size: max_packet.max(1),
            next_seq: 0,
            counters: ImpairCounters::default(),
            allocations: 0,
        }
    }

    pub fn config(&self) -> &Impairment {
        &self.cfg
    }

    pub fn counters(&self) -> ImpairCounters {
        self.counters
    }

    /// Copies held (in every stage) until their release time.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// (packets, bytes) in the queue in front of the bottleneck at `now`, the one being
    /// serialized included.
    pub fn queue(&mut self, now: Instant) -> (usize, u64) {
        self.drain_queue(nanos(now));
        (self.queue.len(), self.queued_bytes)
    }

    /// Packet buffers allocated so far (the pool grows to the most copies held at once).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    /// When the next held copy is due; `None` when nothing is held.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.info.due)
    }

    /// Forget the packets the bottleneck has finished serializing by `now_ns`.
    fn drain_queue(&mut self, now_ns: u64) {
        while let Some(&(end, len)) = self.queue.front() {
            if end > now_ns {
                break;
            }
            self.queue.pop_front();
            self.queued_bytes -= len as u64;
        }
    }

    /// Uniform in `lo..=hi` at microsecond resolution; `lo` when the range is empty.
    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let lo_us = lo.as_micros().min(u128::from(u64::MAX)) as u64;
        let hi_us = hi.as_micros().min(u128::from(u64::MAX)) as u64;
        if hi_us <= lo_us {
            return lo;
        }
        Duration::from_micros(lo_us + self.rng.below_u64((hi_us - lo_us).saturating_add(1)))
    }

    /// Offer one packet at `now` and say what became of it. Copies due at once are
    /// handed out by the next [`Impairer::release`] with the same `now`.
    pub fn push(&mut self, now: Instant, packet: &[u8]) -> Fate {
        self.counters.packets += 1;
        let now_ns = nanos(now);
        if self.held.len() >= MAX_HELD_PACKETS {
            self.counters.tail_dropped += 1;
            return Fate::TailDropped;
        }
        // 1. The queue in front of the bottleneck.
        let leaves_ns = match self.cfg.rate_bps {
            None => now_ns,
            Some(rate) => {
                self.drain_queue(now_ns);
                let len = packet.len() as u64;
                if self.queue.len() >= self.cfg.queue_packets || self.queued_bytes + len > self.cfg.queue_bytes_at(rate)
                {
                    self.counters.tail_dropped += 1;
                    return Fate::TailDropped;
                }
                let serialize = (u128::from(len) * 8 * 1_000_000_000).div_ceil(u128::from(rate.max(1)));
                let end = self.busy_until_ns.max(now_ns).saturating_add(serialize.min(u128::from(u64::MAX)) as u64);
                self.busy_until_ns = end;
                self.queue.push_back((end, packet.len()));
                self.queued_bytes += len;
                end
            }
        };
        // 2. Loss on the wire.
        if self.rng.chance(self.cfg.loss) {
            self.counters.lost += 1;
            return Fate::Lost;
        }
        // 3. Propagation delay.
        let mut due_ns = leaves_ns.saturating_add(saturating_nanos(self.cfg.delay));
        // 4. Reordering.
        let reordered = self.rng.chance(self.cfg.reorder);
        if reordered {
            let hold = self.between(self.cfg.reorder_hold_range());
            due_ns = due_ns.saturating_add(saturating_nanos(hold));
            self.counters.reordered += 1;
        }
        // 5. Duplication.
        let second_ns = if self.rng.chance(self.cfg.duplicate) {
            let gap = self.between(self.cfg.duplicate_gap);
            Some(due_ns.saturating_add(saturating_nanos(gap)))
        } else {
            None
        };
        // 6. Corruption, copy by copy; then hold them.
        let info = CopyInfo { due: due_at(due_ns), reordered, duplicate: false, corrupted: false };
        let first = self.hold(packet, info);
        let second = second_ns.and_then(|ns| {
            if self.held.len() >= MAX_HELD_PACKETS {
                self.counters.tail_dropped += 1;
                return None;
            }
            self.counters.duplicated += 1;
            Some(self.hold(packet, CopyInfo { due: due_at(ns), duplicate: true, ..info }))
        });
        Fate::Held { first, second }
    }

    /// Copy `packet` into a pooled buffer, corrupt it or not, and hold it.
    fn hold(&mut self, packet: &[u8], mut info: CopyInfo) -> CopyInfo {
        let mut buf = match self.pool.pop() {
            Some(b) if b.len() >= packet.len() => b,
            _ => {
                self.allocations += 1;
                vec![0u8; self.buf_size.max(packet.len())].into_boxed_slice()
            }
        };
        buf[..packet.len()].copy_from_slice(packet);
        if !packet.is_empty() && self.rng.chance(self.cfg.corrupt) {
            self.damage(&mut buf[..packet.len()]);
            info.corrupted = true;
            self.counters.corrupted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held.push(Reverse(Held { seq, info, len: packet.len(), buf }));
        info
    }

    /// Damage one (non-empty) copy as `corruption` says.
    fn damage(&mut self, packet: &mut [u8]) {
        match self.cfg.corruption {
            Corruption::TransportBit => {
                let header = match packet[0] >> 4 {
                    // RFC 791: IHL counts 32-bit words; a bogus one (< 5) means 20.
                    4 => usize::from(packet[0] & 0x0f).max(5) * 4,
                    // RFC 8200 3: fixed 40-byte header.
                    6 => 40,
                    _ => 0,
                };
                let start = if header < packet.len() { header } else { 0 };
                let at = start + self.rng.below_u64((packet.len() - start) as u64) as usize;
                packet[at] ^= 1 << self.rng.below(8);
            }
            Corruption::AnyByte => {
                let at = self.rng.below_u64(packet.len() as u64) as usize;
                if self.rng.below(2) == 0 {
                    packet[at] ^= 1 << self.rng.below(8);
                } else {
                    packet[at] ^= 1 + self.rng.below(255) as u8;
                }
            }
        }
    }

    /// Hand every copy due at `now` to `deliver`, earliest first; returns how many.
    pub fn release(&mut self, now: Instant, mut deliver: impl FnMut(&[u8], &CopyInfo)) -> usize {
        let mut n = 0;
        while self.held.peek().is_some_and(|Reverse(h)| h.info.due <= now) {
            let Some(Reverse(held)) = self.held.pop() else { break };
            deliver(&held.buf[..held.len], &held.info);
            self.counters.delivered += 1;
            self.pool.push(held.buf);
            n += 1;
        }
        n
    }

    /// Copy the earliest copy due at `now` into `out` and return its length (a longer
    /// packet is cut to `out`'s length, like a datagram read); `None` when nothing is
    /// due.
    pub fn pop_due(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if self.held.peek().is_none_or(|Reverse(h)| h.info.due > now) {
            return None;
        }
        let Reverse(held) = self.held.pop()?;
        let n = held.len.min(out.len());
        out[..n].copy_from_slice(&held.buf[..n]);
        self.counters.delivered += 1;
        self.pool.push(held.buf);
        Some(n)
    }

    /// Forget every held copy (their buffers stay in the pool) and empty the queue.
    pub fn clear(&mut self) {
        while let Some(Reverse(held)) = self.held.pop() {
            self.pool.push(held.buf);
        }
        self.queue.clear();
        self.queued_bytes = 0;
        self.busy_until_ns = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, TcpRepr, UdpRepr};
    use std::io;
    use std::net::IpAddr;

    fn cfg() -> Impairment {
        Impairment { seed: 42, ..Impairment::default() }
    }

    /// A packet whose first 8 bytes carry its number (no IP header: corruption may hit
    /// any byte).
    fn numbered(i: u64, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(8)];
        p[..8].copy_from_slice(&i.to_be_bytes());
        p
    }

    fn number(p: &[u8]) -> u64 {
        u64::from_be_bytes(p[..8].try_into().unwrap())
    }

    /// Push `n` numbered packets one every `step`, releasing as time goes; return what
    /// came out with its release time, and the final counters.
    fn run(imp: &mut Impairer, n: u64, len: usize, step: Duration) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        let mut now = Instant::from_secs(1);
        for i in 0..n {
            imp.push(now, &numbered(i, len));
            imp.release(now, |p, _| out.push((now, p.to_vec())));
            now += step;
        }
        // Drain: jump to each next release time.
        while let Some(t) = imp.next_release() {
            imp.release(t, |p, _| out.push((t, p.to_vec())));
        }
        out
    }

    #[test]
    fn same_seed_same_decisions_other_seed_others() {
        let c = Impairment {
            loss: 0.1,
            reorder: 0.1,
            duplicate: 0.1,
            corrupt: 0.1,
            delay: Duration::from_millis(2),
            ..cfg()
        };
        let step = Duration::from_micros(300);
        let a = run(&mut Impairer::new(c.clone(), 7, 100), 5000, 100, step);
        let b = run(&mut Impairer::new(c.clone(), 7, 100), 5000, 100, step);
        assert_eq!(a, b);
        let other = run(&mut Impairer::new(c.clone(), 8, 100), 5000, 100, step);
        assert_ne!(a, other);
        // The two directions of one config differ from each other, reproducibly.
        let rx = run(&mut c.rx(100), 5000, 100, step);
        let tx = run(&mut c.tx(100), 5000, 100, step);
        assert_ne!(rx, tx);
        assert_eq!(rx, run(&mut c.rx(100), 5000, 100, step));
    }

    #[test]
    fn no_impairment_passes_everything_at_once_in_order() {
        let mut imp = Impairer::new(cfg(), 1, 64);
        let now = Instant::from_millis(5);
        for i in 0..10 {
            imp.push(now, &numbered(i, 64));
        }
        let mut got = Vec::new();
        assert_eq!(imp.release(now, |p, _| got.push(number(p))), 10);
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(imp.next_release(), None);
        let c = imp.counters();
        assert_eq!((c.packets, c.delivered, c.lost, c.duplicated, c.corrupted, c.reordered), (10, 10, 0, 0, 0, 0));
    }

    /// The observed frequency of each impairment over 100k decisions is close to its
    /// probability (bounds of about ten standard deviations: these never fail by chance).
    #[test]
    fn rates_match_probabilities() {
        const N: u64 = 100_000;
        let c = Impairment { loss: 0.05, reorder: 0.03, duplicate: 0.02, corrupt: 0.01, ..cfg() };
        let mut imp = Impairer::new(c, 99, 64);
        let out = run(&mut imp, N, 64, Duration::from_micros(100));
        let k = imp.counters();
        let close = |what: &str, count: u64, p: f64, n: u64| {
            let expect = p * n as f64;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((count as f64 - expect).abs() < 10.0 * sd, "{what}: {count} of {n}, expected about {expect}");
        };
        assert_eq!(k.packets, N);
        close("lost", k.lost, 0.05, N);
        let kept = N - k.lost;
        close("duplicated", k.duplicated, 0.02, kept);
        // Reorder is drawn once per packet (a duplicate shares its original's hold),
        // corruption once per copy.
        close("reordered", k.reordered, 0.03, kept);
        close("corrupted", k.corrupted, 0.01, kept + k.duplicated);
        assert_eq!(k.tail_dropped, 0);
        assert_eq!(k.delivered, kept + k.duplicated);
        assert_eq!(out.len() as u64, k.delivered);
        // Packets arrive once, twice (duplicated) or never (lost).
        let mut seen = vec![0u8; N as usize];
        for (_, p) in &out {
            // A corrupted number may point anywhere; count only the plausible ones.
            if let Some(s) = seen.get_mut(number(p) as usize) {
                *s += 1;
            }
        }
        let twice = seen.iter().filter(|&&s| s >= 2).count() as u64;
        let never = seen.iter().filter(|&&s| s == 0).count() as u64;
        close("seen twice", twice, 0.02, kept);
        close("never seen", never, 0.05, N);
    }

    #[test]
    fn probability_one_always_applies() {
        let c = Impairment { duplicate: 1.0, corrupt: 1.0, ..cfg() };
        let mut imp = Impairer::new(c, 3, 32);
        let out = run(&mut imp, 100, 32, Duration::from_millis(1));
        assert_eq!(out.len(), 200);
        let k = imp.counters();
        assert_eq!((k.corrupted, k.duplicated, k.delivered), (200, 100, 200));
        let mut imp = Impairer::new(Impairment { loss: 1.0, ..cfg() }, 3, 32);
        assert!(run(&mut imp, 100, 32, Duration::from_millis(1)).is_empty());
        assert_eq!(imp.counters().lost, 100);
    }

    #[test]
    fn delay_holds_every_packet_for_exactly_the_delay_in_order() {
        let c = Impairment { delay: Duration::from_millis(5), ..cfg() };
        let mut imp = Impairer::new(c, 1, 64);
        let t0 = Instant::from_secs(3);
        for i in 0..4 {
            imp.push(t0 + Duration::from_millis(i), &numbered(i, 64));
        }
        assert_eq!(imp.next_release(), Some(t0 + Duration::from_millis(5)));
        // Nothing before the delay has passed.
        assert_eq!(imp.release(t0 + Duration::from_micros(4999), |_, _| panic!("released early")), 0);
        let mut got = Vec::new();
        let mut now = t0;
        while let Some(t) = imp.next_release() {
            now = t;
            imp.release(now, |p, _| got.push((now, number(p))));
        }
        let want: Vec<_> = (0..4).map(|i| (t0 + Duration::from_millis(5 + i), i)).collect();
        assert_eq!(got, want);
        assert_eq!(now, t0 + Duration::from_millis(8));
    }

    #[test]
    fn reordered_packets_are_overtaken_and_released_within_the_span() {
        let delay = Duration::from_millis(2);
        let c = Impairment { reorder: 0.2, delay, ..cfg() };
        let mut imp = Impairer::new(c, 5, 64);
        let step = Duration::from_micros(100);
        let mut sent_at = Vec::new();
        let mut out = Vec::new();
        let mut now = Instant::from_secs(1);
        for i in 0..2000u64 {
            sent_at.push(now);
            imp.push(now, &numbered(i, 64));
            imp.release(now, |p, _| out.push((now, number(p))));
            now += step;
        }
        while let Some(t) = imp.next_release() {
            imp.release(t, |p, _| out.push((t, number(p))));
        }
        assert_eq!(out.len(), 2000);
        let held = imp.counters().reordered;
        assert!(held > 0);
        // Every packet left between `delay` and `delay + 2 * delay` after it came (plus
        // the 100 us step at which `release` was called), and exactly `held` of them
        // came out after a packet with a higher number (they were overtaken).
        let mut late = 0;
        let mut max_before = None::<u64>;
        for &(t, i) in &out {
            let waited = t - sent_at[i as usize];
            assert!(waited >= delay && waited <= delay * 3 + step, "packet {i} waited {waited:?}");
            if max_before.is_some_and(|m| m > i) {
                late += 1;
            }
            max_before = max_before.max(Some(i));
        }
        assert_eq!(late, held, "every held packet is overtaken, no other is");
    }

    #[test]
    fn rate_limit_serializes_packets() {
        // 8 Mbit/s = one byte per microsecond.
        let c = Impairment { rate_bps: Some(8_000_000), delay: Duration::from_millis(1), ..cfg() };
        let mut imp = Impairer::new(c, 1, 1000);
        let t0 = Instant::from_secs(1);
        for i in 0..10 {
            imp.push(t0, &numbered(i, 1000));
        }
        let mut got = Vec::new();
        while let Some(t) = imp.next_release() {
            imp.release(t, |p, _| got.push((t, number(p))));
        }
        let want: Vec<_> = (0..10).map(|i| (t0 + Duration::from_micros(1000 * (i + 1) + 1000), i)).collect();
        assert_eq!(got, want);
        // An idle link starts again from `now`, not from the last packet's time.
        let later = t0 + Duration::from_secs(1);
        imp.push(later, &numbered(99, 500));
        assert_eq!(imp.next_release(), Some(later + Duration::from_micros(500 + 1000)));
    }

    /// Offered ten times faster than the rate for one virtual second: the output is the
    /// rate (within the final backlog) and the backlog stays within its byte limit.
    #[test]
    fn rate_limit_caps_throughput_and_bounds_the_backlog() {
        let rate = 8_000_000u64; // 1 MB/s
        let c = Impairment { rate_bps: Some(rate), ..cfg() };
        let mut imp = Impairer::new(c, 1, 1000);
        let mut now = Instant::ZERO;
        let mut bytes = 0u64;
        let end = Instant::from_secs(1);
        let mut i = 0;
        while now < end {
            imp.push(now, &numbered(i, 1000));
            imp.release(now, |p, _| bytes += p.len() as u64);
            // The limit is on bytes not yet serialized; the packet being sent is queued
            // whole until it is done.
            let queued_bytes = imp.held() as u64 * 1000;
            assert!(queued_bytes <= MIN_BACKLOG_BYTES + 1000, "{queued_bytes} bytes queued");
            now += Duration::from_micros(100);
            i += 1;
        }
        assert!((1_000_000 - MIN_BACKLOG_BYTES - 1000..=1_000_000).contains(&bytes), "{bytes} bytes in one second");
        let k = imp.counters();
        assert!(k.tail_dropped > 8000, "{k:?}");
        assert_eq!(k.packets, 10_000);
    }

    #[test]
    fn queue_is_bounded_in_packets() {
        let c = Impairment { delay: Duration::from_secs(1), ..cfg() };
        let mut imp = Impairer::new(c, 1, 64);
        for i in 0..1500 {
            imp.push(Instant::ZERO, &numbered(i, 64));
        }
        assert_eq!(imp.held(), MAX_HELD_PACKETS);
        assert_eq!(imp.counters().tail_dropped, 500);
        let mut got = Vec::new();
        imp.release(Instant::from_secs(1), |p, _| got.push(number(p)));
        assert_eq!(got, (0..1000).collect::<Vec<_>>(), "the first ones were kept");
    }

    #[test]
    fn steady_state_reuses_buffers() {
        let c = Impairment { delay: Duration::from_millis(3), reorder: 0.1, duplicate: 0.1, ..cfg() };
        let mut imp = Impairer::new(c, 11, 1500);
        run(&mut imp, 10_000, 1500, Duration::from_micros(100));
        let warm = imp.allocations();
        // At most one buffer per packet that was ever held at once.
        assert!(warm > 0 && warm <= MAX_HELD_PACKETS as u64, "{warm}");
        run(&mut imp, 10_000, 1500, Duration::from_micros(100));
        // Same traffic pattern again: the pool already holds enough buffers (a few more
        // at most if this run's random holds overlap more).
        assert!(imp.allocations() <= warm + 10, "{} after {warm}", imp.allocations());
        let c = imp.counters();
        assert_eq!(c.delivered, c.packets + c.duplicated);
    }

    fn tcp_packet(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 2000];
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 7,
            seq: crate::seq::SeqNum(1000),
            ack: crate::seq::SeqNum(0),
            flags: wire::TcpFlags::ACK,
            window: 1000,
            urgent: 0,
            options: Default::default(),
            payload,
        };
        let n = wire::emit_tcp(&mut buf, src, dst, &repr).unwrap();
        buf.truncate(n);
        buf
    }

    /// One flipped bit past the IP header, which the receiver's checksum check catches.
    #[test]
    fn corruption_flips_one_transport_bit_that_checksums_catch() {
        let v4: (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let v6: (IpAddr, IpAddr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let mut udp6 = vec![0u8; 2000];
        let n =
            wire::emit_udp(&mut udp6, v6.0, v6.1, &UdpRepr { src_port: 5, dst_port: 7, payload: b"datagram" }).unwrap();
        udp6.truncate(n);
        let packets = [
            (tcp_packet(v4.0, v4.1, b"hello, world"), 20),
            (tcp_packet(v4.0, v4.1, b""), 20),
            (tcp_packet(v6.0, v6.1, &[0xa5; 100]), 40),
            (udp6, 40),
        ];
        let c = Impairment { corrupt: 1.0, ..cfg() };
        let mut imp = Impairer::new(c, 17, 2000);
        for (pkt, header) in &packets {
            wire::parse(pkt).expect("the original is valid");
            for _ in 0..200 {
                imp.push(Instant::ZERO, pkt);
                imp.release(Instant::ZERO, |bad, info| {
                    assert!(info.corrupted);
                    let diff: Vec<usize> = (0..pkt.len()).filter(|&i| pkt[i] != bad[i]).collect();
                    assert_eq!(diff.len(), 1);
                    assert!(diff[0] >= *header, "flipped byte {} is in the IP header", diff[0]);
                    assert_eq!((pkt[diff[0]] ^ bad[diff[0]]).count_ones(), 1);
                    assert!(wire::parse(bad).is_err(), "a corrupted packet passed the checks");
                });
            }
        }
        assert_eq!(imp.counters().corrupted, 800);
        // Degenerate packets are corrupted somewhere without panicking.
        for pkt in [&[][..], &[0x45][..], &[0x60; 10][..], &[0xff; 3][..]] {
            imp.push(Instant::ZERO, pkt);
            imp.release(Instant::ZERO, |bad, _| assert_eq!(bad.len(), pkt.len()));
        }
    }

    #[test]
    fn validation() {
        assert_eq!(Impairment::default().validate(), Ok(()));
        let ms = Duration::from_millis;
        let cases = [
            (Impairment { loss: 1.5, ..cfg() }, ImpairmentError::Probability { what: "loss", value: 1.5 }),
            (Impairment { reorder: -0.1, ..cfg() }, ImpairmentError::Probability { what: "reorder", value: -0.1 }),
            (
                Impairment { delay: MAX_DELAY + ms(1), ..cfg() },
                ImpairmentError::TooLong { what: "delay", value: MAX_DELAY + ms(1), max: MAX_DELAY },
            ),
            (
                Impairment { reorder_hold: Some((ms(5), ms(1))), ..cfg() },
                ImpairmentError::Range { what: "reorder hold", lo: ms(5), hi: ms(1) },
            ),
            (
                Impairment { duplicate_gap: (ms(0), MAX_DELAY * 2), ..cfg() },
                ImpairmentError::TooLong { what: "duplicate gap", value: MAX_DELAY * 2, max: MAX_DELAY },
            ),
            (Impairment { rate_bps: Some(0), ..cfg() }, ImpairmentError::ZeroRate),
            (
                Impairment { queue_packets: 0, ..cfg() },
                ImpairmentError::QueuePackets { value: 0, max: MAX_HELD_PACKETS },
            ),
            (
                Impairment { queue_packets: MAX_HELD_PACKETS + 1, ..cfg() },
                ImpairmentError::QueuePackets { value: MAX_HELD_PACKETS + 1, max: MAX_HELD_PACKETS },
            ),
            (Impairment { queue_bytes: Some(0), ..cfg() }, ImpairmentError::ZeroQueueBytes),
        ];
        for (bad, want) in cases {
            let e = bad.validate().unwrap_err();
            assert_eq!(e, want, "{bad:?}");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            // The runtime's boundary: an `InvalidInput` io::Error with the message.
            let io = io::Error::from(e);
            assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
            assert!(io.to_string().starts_with("impairment "), "{io}");
        }
        for nan in [Impairment { duplicate: f64::NAN, ..cfg() }, Impairment { corrupt: f64::INFINITY, ..cfg() }] {
            assert!(matches!(nan.validate(), Err(ImpairmentError::Probability { .. })), "{nan:?}");
        }
        let ok = Impairment {
            loss: 1.0,
            reorder: 0.0,
            delay: MAX_DELAY,
            rate_bps: Some(1),
            queue_packets: 1,
            queue_bytes: Some(1),
            reorder_hold: Some((ms(3), ms(3))),
            ..cfg()
        };
        assert_eq!(ok.validate(), Ok(()));
        let shown =
            Impairment { loss: 0.05, delay: Duration::from_millis(3), rate_bps: Some(10_000_000), ..cfg() }.to_string();
        assert_eq!(
            shown,
            "loss 5%, reorder 0%, duplicate 0%, corrupt 0%, delay 3ms, rate 10 Mbit/s, queue 1000 packets / 65536 bytes, seed 42"
        );
        let shown = Impairment {
            reorder_hold: Some((ms(1), ms(5))),
            duplicate_gap: (ms(0), ms(1)),
            corruption: Corruption::AnyByte,
            ..cfg()
        }
        .to_string();
        assert!(
            shown.ends_with(
                "rate unlimited, reorder hold 1ms..=5ms, duplicate gap 0ns..=1ms, corruption anywhere, seed 42"
            ),
            "{shown}"
        );
    }

    /// A link with a bottleneck and a queue bigger than anything the test offers.
    fn ideal(rate_bps: u64, delay: Duration) -> Impairment {
        Impairment {
            rate_bps: Some(rate_bps),
            delay,
            queue_packets: MAX_HELD_PACKETS,
            queue_bytes: Some(1 << 30),
            ..cfg()
        }
    }

    fn due(fate: Fate) -> Instant {
        match fate {
            Fate::Held { first, second: None } => first.due,
            other => panic!("expected one held copy, got {other:?}"),
        }
    }

    /// Serialization at nanosecond precision (a 40-byte packet takes 3.2 us at 100
    /// Mbit/s), back to back behind the queue, from `now` on an idle link.
    #[test]
    fn bottleneck_serializes_then_delays() {
        let mut imp = Impairer::new(ideal(100_000_000, Duration::from_millis(10)), 1, 1500);
        let t0 = Instant::ZERO;
        // 1500 bytes at 100 Mbit/s take 120 us on the wire; back to back they queue.
        assert_eq!(due(imp.push(t0, &[0; 1500])), Instant::from_micros(10_120));
        assert_eq!(due(imp.push(t0, &[0; 1500])), Instant::from_micros(10_240));
        assert_eq!(due(imp.push(t0, &[0; 1500])), Instant::from_micros(10_360));
        assert_eq!(imp.queue(t0), (3, 4500));
        assert_eq!(imp.queue(Instant::from_micros(240)), (1, 1500));
        // 40 bytes take 3.2 us behind the queue: due at 10 363.2 us, rounded up.
        assert_eq!(due(imp.push(t0, &[0; 40])), Instant::from_micros(10_364));
        assert_eq!(due(imp.push(t0, &[0; 40])), Instant::from_micros(10_367));
        // An idle link: serialization starts at once.
        let t1 = Instant::from_secs(1);
        assert_eq!(imp.queue(t1), (0, 0));
        assert_eq!(due(imp.push(t1, &[0; 1500])), Instant::from_micros(1_010_120));
        assert_eq!(imp.counters().packets, 6);
    }

    #[test]
    fn queue_tail_drops_by_packets_and_by_bytes() {
        // 1 Mbit/s: a 1000-byte packet takes 8 ms.
        let mut imp =
            Impairer::new(Impairment { queue_packets: 8, ..ideal(1_000_000, Duration::from_millis(1)) }, 1, 1000);
        let fates: Vec<Fate> = (0..12).map(|_| imp.push(Instant::ZERO, &[0; 1000])).collect();
        assert!(fates[..8].iter().all(|f| matches!(f, Fate::Held { .. })));
        assert!(fates[8..].iter().all(|f| *f == Fate::TailDropped));
        assert_eq!(imp.counters().tail_dropped, 4);
        // After 16 ms two packets have left: two more fit, the third does not.
        let t = Instant::from_millis(16);
        assert!(matches!(imp.push(t, &[0; 1000]), Fate::Held { .. }));
        assert!(matches!(imp.push(t, &[0; 1000]), Fate::Held { .. }));
        assert_eq!(imp.push(t, &[0; 1000]), Fate::TailDropped);

        // 2500 bytes hold two 1000-byte packets, and a small one still fits.
        let c =
            Impairment { queue_packets: 100, queue_bytes: Some(2500), ..ideal(1_000_000, Duration::from_millis(1)) };
        let mut imp = Impairer::new(c, 1, 1000);
        assert!(matches!(imp.push(Instant::ZERO, &[0; 1000]), Fate::Held { .. }));
        assert!(matches!(imp.push(Instant::ZERO, &[0; 1000]), Fate::Held { .. }));
        assert_eq!(imp.push(Instant::ZERO, &[0; 1000]), Fate::TailDropped);
        assert!(matches!(imp.push(Instant::ZERO, &[0; 500]), Fate::Held { .. }));
        assert_eq!(imp.queue(Instant::ZERO), (3, 2500));
    }

    /// Loss comes after the bottleneck: a lost packet used its serialization time.
    #[test]
    fn lost_packets_use_the_bottleneck() {
        let c = Impairment { loss: 1.0, ..ideal(8_000_000, Duration::ZERO) };
        let mut imp = Impairer::new(c, 1, 1000);
        assert_eq!(imp.push(Instant::ZERO, &[0; 1000]), Fate::Lost);
        assert_eq!(imp.queue(Instant::ZERO), (1, 1000));
        imp.cfg.loss = 0.0;
        // Behind the lost one: 1000 us for it, 1000 us for this one.
        assert_eq!(due(imp.push(Instant::ZERO, &[0; 1000])), Instant::from_micros(2000));
        assert_eq!((imp.counters().lost, imp.counters().tail_dropped), (1, 0));
    }

    #[test]
    fn duplicates_follow_within_the_gap_and_share_the_hold() {
        let ms = Duration::from_millis;
        let c = Impairment {
            reorder: 0.2,
            duplicate: 0.1,
            reorder_hold: Some((Duration::from_micros(500), ms(5))),
            duplicate_gap: (Duration::ZERO, ms(1)),
            ..ideal(100_000_000, ms(10))
        };
        let mut imp = Impairer::new(c, 5, 1500);
        let mut firsts = Vec::new();
        let (mut copies, mut held_back) = (0u64, 0u64);
        let mut out = Vec::new();
        for i in 0..2000u64 {
            let now = Instant::from_micros(i * 200);
            imp.release(now, |p, info| out.push((now, number(p), *info)));
            let serialized = now + Duration::from_micros(120);
            let Fate::Held { first, second } = imp.push(now, &numbered(i, 1500)) else { panic!("nothing drops here") };
            assert!(!first.duplicate && !first.corrupted);
            if first.reordered {
                held_back += 1;
                assert!(first.due >= serialized + ms(10) + Duration::from_micros(500), "{first:?}");
                assert!(first.due <= serialized + ms(15), "{first:?}");
            } else {
                assert_eq!(first.due, serialized + ms(10));
            }
            if let Some(d) = second {
                assert!(d.duplicate && d.reordered == first.reordered);
                assert!(d.due >= first.due && d.due <= first.due + ms(1), "{first:?} {d:?}");
                copies += 1;
            }
            copies += 1;
            firsts.push(first.due);
        }
        let overtaken = firsts.windows(2).filter(|w| w[1] < w[0]).count();
        let k = imp.counters();
        assert!(overtaken > 100, "held-back packets must be overtaken by later ones: {overtaken}");
        assert_eq!(k.reordered, held_back);
        assert!((300..500).contains(&k.reordered), "{k:?}");
        assert!((120..280).contains(&k.duplicated), "{k:?}");
        assert_eq!(copies, 2000 + k.duplicated);
        // The copies come out in due order (released as soon as due).
        while let Some(t) = imp.next_release() {
            imp.release(t, |p, info| out.push((t, number(p), *info)));
        }
        assert_eq!(out.len() as u64, copies);
        assert!(out.windows(2).all(|w| w[0].2.due <= w[1].2.due));
        assert!(out.iter().all(|(t, _, info)| info.due <= *t && *t - info.due < Duration::from_micros(200)));
        let twice = out.iter().filter(|(_, _, info)| info.duplicate).count() as u64;
        assert_eq!(twice, k.duplicated);
    }

    /// `AnyByte` changes exactly one byte, anywhere, IP header included.
    #[test]
    fn corruption_anywhere_changes_one_byte() {
        let c = Impairment { corrupt: 1.0, corruption: Corruption::AnyByte, ..cfg() };
        let mut imp = Impairer::new(c, 23, 64);
        let original: Vec<u8> = (0..64).collect();
        let mut hit = [false; 64];
        let mut multi_bit = 0;
        for _ in 0..2000 {
            imp.push(Instant::ZERO, &original);
            imp.release(Instant::ZERO, |bad, info| {
                assert!(info.corrupted);
                let diff: Vec<usize> = (0..64).filter(|&i| bad[i] != original[i]).collect();
                assert_eq!(diff.len(), 1, "{bad:?}");
                hit[diff[0]] = true;
                if (bad[diff[0]] ^ original[diff[0]]).count_ones() > 1 {
                    multi_bit += 1;
                }
            });
        }
        assert!(hit.iter().all(|&h| h), "every byte can be hit, the first ones too");
        assert!(multi_bit > 500, "about half are byte replacements: {multi_bit}");
        assert_eq!(imp.counters().corrupted, 2000);
    }

    /// `Impairer` never panics on a configuration `validate` would refuse.
    #[test]
    fn unvalidated_extremes_do_not_panic() {
        let c = Impairment {
            loss: f64::NAN,
            reorder: 2.0,
            duplicate: -1.0,
            corrupt: f64::INFINITY,
            delay: Duration::MAX,
            rate_bps: Some(0),
            queue_packets: 0,
            queue_bytes: Some(0),
            reorder_hold: Some((Duration::MAX, Duration::ZERO)),
            duplicate_gap: (Duration::ZERO, Duration::MAX),
            ..cfg()
        };
        assert!(c.validate().is_err());
        let mut imp = Impairer::new(c.clone(), 1, 0);
        // A zero queue limit tail-drops everything.
        assert_eq!(imp.push(Instant::from_secs(u64::MAX / 2_000_000), &[1, 2, 3]), Fate::TailDropped);
        let mut imp = Impairer::new(Impairment { rate_bps: None, ..c }, 1, 0);
        for len in [0, 1, 100] {
            let Fate::Held { first, .. } = imp.push(Instant::from_secs(1), &vec![0x45; len]) else { panic!() };
            assert!(first.reordered && first.corrupted == (len > 0));
        }
        imp.release(Instant::from_micros(u64::MAX), |_, _| {});
        imp.clear();
        assert_eq!(imp.held(), 0);
    }

    #[test]
    fn a_delay_only_link_is_a_fifo() {
        let mut imp = Impairment::delay(Duration::from_millis(1)).tx(64);
        for i in 0..100 {
            let now = Instant::from_micros(i * 10);
            assert_eq!(due(imp.push(now, &numbered(i, 64))), now + Duration::from_millis(1));
        }
        let mut got = Vec::new();
        imp.release(Instant::from_secs(1), |p, _| got.push(number(p)));
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
