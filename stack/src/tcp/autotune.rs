//! Buffer auto-tuning: the receive buffer (and so the window we advertise) and the send
//! buffer grow with what the connection actually moves per round trip, from the
//! configured sizes (`Config::tcp_rx_buffer`, `tcp_tx_buffer`) up to the configured
//! maxima (`tcp_rx_buffer_max`, `tcp_tx_buffer_max`), within a global budget; idle
//! connections shrink back.
//!
//! Receive side, in the spirit of Linux's dynamic right-sizing (Fisher, Gardner, "Dynamic
//! Right-Sizing: TCP Flow-Control Adaptation", 2001; tcp_rcv_space_adjust): once per
//! receiver-side RTT, count what the application read in that RTT. A window of twice
//! that lets the sender keep the pipe full through a loss and its recovery; while the
//! reads grow from one RTT to the next (the sender is in slow start), the window must
//! also cover the next RTT's growth, so the target is scaled by the growth ratio:
//!
//! ```text
//!   want = 2 * copied * min(copied / space, 4) + 16 * MSS      space: the most read in one RTT so far
//! ```
//!
//! The receiver's RTT comes from the timestamps the sender echoes on its data
//! (RFC 7323 4.3: TSecr is the TSval of our last ACK, so `now - TSecr` spans a round
//! trip; a moving average, 1/8), or without timestamps from the time one window takes
//! to arrive; failing both, from our own SRTT. An application that reads slowly never
//! makes the buffer grow: only what it consumes counts.
//!
//! The window scale is fixed at the handshake (RFC 7323 2.2), so it is chosen from the
//! maximum (`Conn::connect`, `apply_syn_options`), as Linux does from tcp_rmem[2].
//!
//! Send side (Linux: tcp_sndbuf_expand): when the application is held back by a full
//! send buffer, the buffer grows to twice the congestion window (one window in flight,
//! one queued behind it while the ACKs of the first come back).
//!
//! Memory: growth above the configured sizes is granted by the stack from one budget
//! (`Config::tcp_buffer_budget`, the hook [`BufferBudget`]); when it is spent,
//! connections stay at what they have. Housekeeping (`Conn::trim`) takes an idle
//! connection back to the configured sizes and recounts what the connections hold. The
//! receive buffer never shrinks below what was advertised (RFC 9293 3.8.6: the right
//! edge does not move left): it is lowered as the application drains the promised
//! window (`lower_rx_capacity`, at each window advertisement).

use std::time::Duration;

use crate::seq::SeqNum;
use crate::time::Instant;
use crate::wire::TcpRepr;

use super::congestion::CongestionControl;
use super::conn::Conn;

/// The growth ratio of the sender between two RTTs is taken at most this large.
const MAX_GROWTH: usize = 4;
/// Slack on top of twice the data read per RTT, in segments.
const SLACK_SEGMENTS: usize = 16;
/// The first measured RTT must read more than this many segments to grow the buffer
/// (Linux: the initial space of TCP_INIT_CWND segments).
const INITIAL_SPACE_SEGMENTS: usize = 10;

/// The stack's budget for buffer growth beyond the configured sizes: the hook through
/// which auto-tuning asks for memory (a global memory budget can take its place).
#[derive(Clone, Debug)]
pub(crate) struct BufferBudget {
    limit: usize,
    granted: usize,
}

impl BufferBudget {
    pub fn new(limit: usize) -> BufferBudget {
        BufferBudget { limit, granted: 0 }
    }

    /// Grant up to `want` bytes of growth; returns what was granted.
    #[inline]
    pub fn grant(&mut self, want: usize) -> usize {
        let n = want.min(self.limit.saturating_sub(self.granted));
        self.granted += n;
        n
    }

    /// What the connections hold now (housekeeping recounts it: connections that shrank
    /// or went away give their share back).
    pub fn recount(&mut self, held: usize) {
        self.granted = held;
    }

    /// Bytes granted and not yet given back.
    pub fn granted(&self) -> usize {
        self.granted
    }
}

/// Per-connection auto-tuning state (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BufferTuning {
    /// The configured sizes (where buffers start and shrink back to) and the maxima.
    pub rx_base: u32,
    pub rx_max: u32,
    pub tx_base: u32,
    pub tx_max: u32,
    /// The receive buffer's capacity is lowered to this as the window drains.
    rx_target: u32,
    /// Bytes above the configured sizes this connection holds from the budget.
    granted: u32,
    /// The application found the send buffer full since it last grew.
    pub tx_limited: bool,
    /// The most the application read in one receiver RTT so far.
    space: u32,
    /// Read since `since`.
    copied: u32,
    since: Option<Instant>,
    /// Receiver-side RTT in microseconds (0: none yet).
    rcv_rtt_us: u32,
    /// Window-based RTT measurement (no timestamps): when RCV.NXT passes `win_seq`, one
    /// window took `now - win_time` to arrive.
    win_seq: SeqNum,
    win_time: Option<Instant>,
}

impl BufferTuning {
    pub fn new(rx_base: usize, rx_max: usize, tx_base: usize, tx_max: usize) -> BufferTuning {
        let clamp = |v: usize| v.min(u32::MAX as usize) as u32;
        BufferTuning {
            rx_base: clamp(rx_base),
            rx_max: clamp(rx_max.max(rx_base)),
            tx_base: clamp(tx_base),
            tx_max: clamp(tx_max.max(tx_base)),
            rx_target: clamp(rx_base),
            granted: 0,
            tx_limited: false,
            space: 0,
            copied: 0,
            since: None,
            rcv_rtt_us: 0,
            win_seq: SeqNum(0),
            win_time: None,
        }
    }

    /// The application read `n` bytes.
    #[inline]
    pub fn on_read(&mut self, n: usize) {
        self.copied = self.copied.saturating_add(n.min(u32::MAX as usize) as u32);
    }

    /// Bytes held from the budget.
    pub fn granted(&self) -> usize {
        self.granted as usize
    }

    fn rcv_rtt_sample(&mut self, us: u64, moving_average: bool) {
        let us = us.clamp(1, u32::MAX as u64) as u32;
        self.rcv_rtt_us = match (self.rcv_rtt_us, moving_average) {
            (0, _) => us,
            (r, true) => r - r / 8 + us / 8,
            // A window's arrival time only bounds the RTT from above.
            (r, false) => r.min(us),
        };
    }
}

impl Conn {
    /// In-order data arrived (after RCV.NXT moved): a receiver-side RTT sample, from the
    /// echoed timestamp or, without timestamps, once per window.
    #[inline]
    pub(super) fn rcv_rtt_on_data(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if self.tune.rx_max <= self.tune.rx_base {
            return;
        }
        if self.opt.ts {
            if let Some((_, tsecr)) = seg.options.timestamps {
                if tsecr != 0 {
                    let ms = self.ts_now(now).wrapping_sub(tsecr);
                    // Ignore echoes from before a wrap or absurdly old ones.
                    if (ms as i32) >= 0 && ms < 60_000 {
                        self.tune.rcv_rtt_sample(u64::from(ms.max(1)) * 1000, true);
                    }
                }
            }
            return;
        }
        match self.tune.win_time {
            Some(t) if self.rcv.nxt >= self.tune.win_seq => {
                self.tune.rcv_rtt_sample(now.saturating_duration_since(t).as_micros() as u64, false);
                self.tune.win_time = None;
            }
            Some(_) => {}
            None => {
                self.tune.win_seq = self.rcv.nxt + self.rcv_wnd().max(1);
                self.tune.win_time = Some(now);
            }
        }
    }

    /// The RTT auto-tuning measures over: the receiver's own estimate, else SRTT.
    fn tuning_rtt(&self) -> Option<Duration> {
        match self.tune.rcv_rtt_us {
            0 => self.rtt.srtt().filter(|r| !r.is_zero()),
            us => Some(Duration::from_micros(u64::from(us))),
        }
    }

    /// After the application read or an ACK arrived: grow the receive buffer once per
    /// receiver RTT from what the application read, and the send buffer to twice cwnd
    /// when the application is held back by it; growth comes from `budget`.
    #[inline]
    pub(crate) fn autotune(&mut self, now: Instant, budget: &mut BufferBudget) {
        if self.tune.copied > 0 && self.tune.rx_max as usize > self.rx.capacity() {
            self.autotune_rx(now, budget);
        }
        if self.tune.tx_limited && self.tune.tx_max as usize > self.tx.capacity() {
            self.autotune_tx(budget);
        }
    }

    fn autotune_rx(&mut self, now: Instant, budget: &mut BufferBudget) {
        let Some(since) = self.tune.since else {
            self.tune.since = Some(now);
            self.tune.copied = 0;
            return;
        };
        let Some(rtt) = self.tuning_rtt() else { return };
        if now.saturating_duration_since(since) < rtt {
            return;
        }
        let copied = self.tune.copied as usize;
        let space = (self.tune.space as usize).max(INITIAL_SPACE_SEGMENTS * self.rcv.mss);
        self.tune.copied = 0;
        self.tune.since = Some(now);
        if copied <= space {
            return;
        }
        self.tune.space = copied.min(u32::MAX as usize) as u32;
        let growth = copied.div_ceil(space).min(MAX_GROWTH);
        let want = (2 * copied * growth + SLACK_SEGMENTS * self.rcv.mss).min(self.tune.rx_max as usize);
        let cap = self.rx.capacity();
        if want > cap {
            let got = budget.grant(want - cap);
            self.rx.set_capacity(cap + got);
            self.tune.rx_target = (cap + got) as u32;
            self.tune.granted += got as u32;
        }
    }

    fn autotune_tx(&mut self, budget: &mut BufferBudget) {
        self.tune.tx_limited = false;
        let max = self.tune.tx_max as usize;
        let want = (2 * self.cc.window().max(self.flight_size())).min(max);
        let cap = self.tx.capacity();
        if want > cap {
            // At least doubling: a window that creeps up (CUBIC's growth far from loss)
            // then regrows the buffer's storage a bounded number of times, about
            // log2(max / base), not once per increment.
            let target = want.max(cap.saturating_mul(2)).min(max);
            let got = budget.grant(target - cap);
            self.tx.set_capacity(cap + got);
            self.tune.granted += got as u32;
        }
    }

    /// Housekeeping of an idle connection: back to the configured sizes. The send
    /// buffer only when empty; the receive buffer at once to the base, or to what the
    /// last window still promises (lowered further as it drains).
    pub(super) fn shrink_buffers(&mut self) {
        if self.tune.granted == 0 {
            return;
        }
        if self.tx.is_empty() && self.tx.capacity() > self.tune.tx_base as usize {
            self.tx.set_capacity(self.tune.tx_base as usize);
        }
        self.tune.rx_target = self.tune.rx_base;
        self.tune.space = 0;
        self.tune.since = None;
        self.lower_rx_capacity();
        self.recount_granted();
    }

    /// Lower the receive buffer towards its target without taking back any of the
    /// window already advertised (RFC 9293 3.8.6).
    #[inline]
    pub(super) fn lower_rx_capacity(&mut self) {
        let target = self.tune.rx_target as usize;
        let cap = self.rx.capacity();
        if cap <= target {
            return;
        }
        let committed = if self.rcv.adv > self.rcv.nxt { self.rcv.adv - self.rcv.nxt } else { 0 };
        let keep = target.max(self.rx.readable() + self.rx.out_of_order_span().max(committed));
        if keep < cap {
            self.rx.set_capacity(keep);
            self.recount_granted();
        }
    }

    fn recount_granted(&mut self) {
        let above = |cap: usize, base: u32| cap.saturating_sub(base as usize);
        let held = above(self.rx.capacity(), self.tune.rx_base) + above(self.tx.capacity(), self.tune.tx_base);
        self.tune.granted = held.min(u32::MAX as usize) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_grants_what_is_left_and_recounts() {
        let mut b = BufferBudget::new(1000);
        assert_eq!(b.grant(600), 600);
        assert_eq!(b.grant(600), 400);
        assert_eq!(b.grant(1), 0);
        b.recount(100);
        assert_eq!((b.granted(), b.grant(1000)), (100, 900));
    }

    #[test]
    fn receiver_rtt_averages_timestamps_and_takes_the_least_window_time() {
        let mut t = BufferTuning::new(1000, 10_000, 1000, 10_000);
        t.rcv_rtt_sample(8000, true);
        t.rcv_rtt_sample(16_000, true);
        assert_eq!(t.rcv_rtt_us, 9000);
        let mut w = BufferTuning::new(1000, 10_000, 1000, 10_000);
        w.rcv_rtt_sample(20_000, false);
        w.rcv_rtt_sample(12_000, false);
        w.rcv_rtt_sample(15_000, false);
        assert_eq!(w.rcv_rtt_us, 12_000);
    }
}
