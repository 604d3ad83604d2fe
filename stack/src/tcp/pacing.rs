//! Pacing: data segments leave at a rate instead of as one burst per window.
//!
//! The rate comes from the congestion controller when it has one (BBR's pacing rate,
//! draft-cardwell-iccrg-bbr-congestion-control-00 4.2.1), else from the window the way
//! Linux paces (tcp_update_pacing_rate): cwnd / SRTT, times 2 in slow start (while cwnd
//! is below half of ssthresh) and 1.2 after, so pacing never becomes the bottleneck of
//! a window-limited flow. The earliest departure time model of Linux's internal pacing:
//! every data segment moves `next` on by `len / rate`; a segment may leave once `now`
//! has reached `next`. Otherwise the connection arms its `Pacing` timer (`timer.rs`) at
//! `next` and sends nothing more until then. ACKs, probes and the first retransmission
//! of a recovery episode are never held back. Nothing runs, and no timer is armed, when
//! there is nothing to send.
//!
//! Bursts: like sch_fq, the first [`UNPACED_SEGMENTS`] data segments of a connection
//! are not paced (the initial window); and a sender that was held back by something
//! else (the window, the application) may catch up at most [`BURST`] worth of the rate
//! at once, which also absorbs the runtime's millisecond timer granularity (a pacing
//! timer that fires late lets the segments due by then go together).

use std::time::Duration;

use super::congestion::CongestionControl;
use super::conn::Conn;
use super::timer::Timer;
use crate::time::Instant;

/// Data segments sent before pacing starts (sch_fq's initial quantum: the initial
/// window, RFC 6928, leaves at once).
pub(crate) const UNPACED_SEGMENTS: u32 = 10;

/// The most a sender may be behind its schedule: this long at the pacing rate goes out
/// back to back.
pub(crate) const BURST: Duration = Duration::from_millis(1);

/// Pacing gains of the window-derived rate (Linux: tcp_pacing_ss_ratio and
/// tcp_pacing_ca_ratio), in percent.
pub(crate) const SLOW_START_RATIO: u64 = 200;
pub(crate) const AVOIDANCE_RATIO: u64 = 120;

/// When the next data segment may leave (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pacer {
    /// Earliest departure of the next data segment, in nanoseconds of the core's clock.
    next_ns: u64,
    /// Data segments sent so far, up to [`UNPACED_SEGMENTS`].
    sent: u32,
}

impl Pacer {
    /// Whether a data segment may leave at `now`.
    #[inline]
    pub fn may_send(&self, now: Instant) -> bool {
        now.total_micros().saturating_mul(1000) >= self.next_ns
    }

    /// When the next data segment may leave (rounded up to the clock's microsecond).
    pub fn next(&self) -> Instant {
        Instant::from_micros(self.next_ns.div_ceil(1000))
    }

    /// A data segment of `len` bytes left at `now`; `rate` is the pacing rate in bytes
    /// per second (0: not paced).
    #[inline]
    pub fn on_sent(&mut self, now: Instant, len: usize, rate: u64) {
        if self.sent < UNPACED_SEGMENTS {
            self.sent += 1;
            return;
        }
        if rate == 0 {
            return;
        }
        let now_ns = now.total_micros().saturating_mul(1000);
        let burst_ns = BURST.as_nanos() as u64;
        let start = self.next_ns.max(now_ns.saturating_sub(burst_ns));
        // len is at most 64 KiB: len * 10^9 fits 64 bits.
        let gap = (len as u64).saturating_mul(1_000_000_000) / rate;
        self.next_ns = start.saturating_add(gap);
    }

    /// The window-derived pacing rate in bytes per second (see the module
    /// documentation); 0 without an RTT estimate.
    #[inline]
    pub fn window_rate(cwnd: usize, ssthresh: usize, srtt: Option<Duration>) -> u64 {
        let us = srtt.map_or(0, |s| s.as_micros() as u64);
        if us == 0 {
            return 0;
        }
        let ratio = if cwnd < ssthresh / 2 { SLOW_START_RATIO } else { AVOIDANCE_RATIO };
        // cwnd * 10^4 * 200 fits 64 bits for any window below 2^43 bytes.
        (cwnd as u64).saturating_mul(10_000 * ratio) / us
    }
}

impl Conn {
    /// The rate data segments leave at, bytes per second (0: not paced): the congestion
    /// controller's, or with `Config::pacing` the window's over SRTT.
    #[inline]
    pub(super) fn pacing_rate(&self) -> u64 {
        match self.cc.pacing_rate() {
            Some(r) => r,
            None if self.pacing => {
                Pacer::window_rate(self.cc.window().max(self.flight_size()), self.cc.ssthresh(), self.rtt.srtt())
            }
            None => 0,
        }
    }

    /// Whether data may leave at `now`. When it may not and there is data to send
    /// (lost segments, or unsent bytes), the `Pacing` timer is armed for when it may.
    #[inline]
    pub(super) fn pacing_allows(&mut self, now: Instant) -> bool {
        if self.pacer.may_send(now) {
            return true;
        }
        if self.sent.lost_out() > 0 || self.snd.nxt < self.data_end() {
            self.timers.set(Timer::Pacing, self.pacer.next());
        }
        false
    }

    /// A data segment of `len` bytes went out (new or retransmitted).
    #[inline]
    pub(super) fn paced(&mut self, now: Instant, len: usize) {
        let rate = self.pacing_rate();
        self.pacer.on_sent(now, len, rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_window_is_not_paced_then_segments_are_spaced() {
        let mut p = Pacer::default();
        let t = Instant::from_millis(100);
        for _ in 0..UNPACED_SEGMENTS {
            assert!(p.may_send(t));
            p.on_sent(t, 1000, 1_000_000);
        }
        // 1000 bytes at 1 MB/s: 1 ms apart. A sender that was idle gets one BURST of
        // credit: the segment at t and one more go at once, the third waits.
        assert!(p.may_send(t));
        p.on_sent(t, 1000, 1_000_000);
        assert!(p.may_send(t));
        p.on_sent(t, 1000, 1_000_000);
        assert!(!p.may_send(t));
        assert_eq!(p.next(), Instant::from_millis(101));
        assert!(p.may_send(Instant::from_millis(101)));
        // Rate 0: not paced.
        let mut q = p;
        q.on_sent(Instant::from_millis(101), 1000, 0);
        assert_eq!(q.next(), p.next());
    }

    #[test]
    fn window_rate_follows_linux_ratios() {
        let srtt = Some(Duration::from_millis(10));
        // 100 kB per 10 ms = 10 MB/s; x2 in slow start, x1.2 after.
        assert_eq!(Pacer::window_rate(100_000, usize::MAX, srtt), 20_000_000);
        assert_eq!(Pacer::window_rate(100_000, 150_000, srtt), 12_000_000);
        assert_eq!(Pacer::window_rate(100_000, 150_000, None), 0);
        assert_eq!(Pacer::window_rate(100_000, 150_000, Some(Duration::ZERO)), 0);
    }
}
