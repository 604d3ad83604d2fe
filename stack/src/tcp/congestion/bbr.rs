//! BBR, version 1: Cardwell, Cheng, Gunn, Hassas Yeganeh, Jacobson, "BBR:
//! Congestion-Based Congestion Control" (ACM Queue 14(5), 2016) and
//! draft-cardwell-iccrg-bbr-congestion-control-00 (2017), with the refinements of
//! Linux's tcp_bbr.c (packet conservation in recovery, the quantization budget, ACK
//! aggregation). Linux's long-term bandwidth (policer) detection is not implemented.
//!
//! Why version 1 and not BBRv3 (draft-ietf-ccwg-bbr): v1 is what Linux ships
//! (`tcp_bbr.c` in mainline is BBRv1), so it is the algorithm the peers and the
//! benchmark's baseline run; v3's draft is still changing from revision to revision
//! (the ProbeBW states, its loss and ECN thresholds), and its reaction to loss (a round
//! with more than 2% loss bounds the flight) gives up most of what BBR gains on paths
//! with random, non-congestive loss, which is what this stack was measured on.
//!
//! The model (draft 4.1): the bottleneck bandwidth `BtlBw`, a windowed maximum of the
//! delivery rate samples (`tcp/rate.rs`) over 10 round trips, and the round-trip
//! propagation time `RTprop`, a windowed minimum of the RTT over 10 s. From them:
//! pacing rate = pacing_gain * BtlBw, cwnd = cwnd_gain * BDP (+ allowances). The state
//! machine (draft 4.3):
//!
//! ```text
//!   Startup (gains 2/ln2) --bandwidth plateau: 3 rounds without +25%--> Drain (pacing 1/2.89)
//!   Drain --in flight <= BDP--> ProbeBW (pacing cycles 5/4, 3/4, 1 x 6; cwnd 2 BDP)
//!   any --RTprop not refreshed for 10 s--> ProbeRTT (cwnd 4 segments, >= 200 ms and a
//!        round) --> ProbeBW (or Startup when the pipe was never full)
//! ```
//!
//! Loss (Linux's bbr_set_cwnd_to_recover_or_restore): newly lost bytes come off cwnd;
//! the first round of fast recovery is packet conserving (cwnd = in flight + acked);
//! after recovery or a timeout, cwnd is restored to what it was before.
//!
//! Units: windows in bytes, bandwidth in bytes per second, gains in 1/256.

use std::time::Duration;

use super::{initial_window, AckSample, CongestionControl};
use crate::time::Instant;

/// Gains are fixed point: 256 is 1.0.
const UNIT: u64 = 256;
/// 2/ln(2): the smallest gain that doubles the sending rate each round (Startup).
const HIGH_GAIN: u64 = 739;
/// 1/HIGH_GAIN: Drain empties in one round the queue Startup built.
const DRAIN_GAIN: u64 = 88;
/// cwnd = 2 BDP in ProbeBW: room for delayed and aggregated ACKs (draft 4.2.3.2).
const CWND_GAIN: u64 = 512;
/// ProbeBW's eight phases: probe up 5/4, drain 3/4, cruise (draft 4.3.4.3).
const PACING_CYCLE: [u64; 8] = [320, 192, 256, 256, 256, 256, 256, 256];
/// BtlBw's window, in rounds (draft 4.1.1.2: 6-10 round trips; Linux: cycle + 2).
const BW_WINDOW_ROUNDS: u64 = PACING_CYCLE.len() as u64 + 2;
/// RTprop's window (draft 4.1.2.3).
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long ProbeRTT holds the flight at its minimum (draft 4.3.5).
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);
/// Startup ends when the bandwidth grew by less than 25% ...
const FULL_BW_GROWTH: u64 = 320;
/// ... in three rounds in a row (draft 4.3.2.2).
const FULL_BW_ROUNDS: u32 = 3;
/// The smallest cwnd, in segments (draft 4.2.3.1: 4, so delayed ACKs keep flowing).
const MIN_CWND_SEGMENTS: usize = 4;
/// Pace 1% below the estimate, so queues drain (Linux: bbr_pacing_margin_percent).
const PACING_MARGIN_PERCENT: u64 = 1;
/// ACK aggregation (Linux: bbr_update_ack_aggregation): the excess delivered over what
/// the bandwidth explains, a maximum over two windows of 5 rounds each ...
const AGGREGATION_WINDOW_ROUNDS: u32 = 5;
/// ... at most this long at the estimated bandwidth ...
const AGGREGATION_MAX: Duration = Duration::from_millis(100);
/// ... and an epoch restarts after this many bytes.
const AGGREGATION_EPOCH_RESET: u64 = 1 << 20;
/// The send quantum: pacing lets this long go back to back (`tcp/pacing.rs`).
const QUANTUM_TIME: Duration = super::super::pacing::BURST;
/// The send quantum's bounds (Linux: 2 segments, at most 64 KiB, the largest GSO).
const QUANTUM_MIN_SEGMENTS: usize = 2;
const QUANTUM_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// The connection's loss state as BBR sees it (Linux's CA states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LossState {
    Open,
    Recovery,
    Timeout,
}

/// A windowed maximum over the last `window` units of time (here: rounds), kept as the
/// best, second-best and third-best samples of successive sub-windows (Kathleen
/// Nichols' algorithm, as in the BBR paper): O(1) per sample, no history.
#[derive(Clone, Copy, Debug, Default)]
struct MaxFilter {
    /// (time, value), best first.
    s: [(u64, u64); 3],
}

impl MaxFilter {
    fn get(&self) -> u64 {
        self.s[0].1
    }

    fn reset(&mut self, t: u64, v: u64) {
        self.s = [(t, v); 3];
    }

    fn update(&mut self, t: u64, v: u64, window: u64) {
        if v >= self.s[0].1 || t.saturating_sub(self.s[2].0) > window {
            // A new maximum, or everything in the filter has expired.
            self.reset(t, v);
            return;
        }
        if v >= self.s[1].1 {
            self.s[1] = (t, v);
            self.s[2] = (t, v);
        } else if v >= self.s[2].1 {
            self.s[2] = (t, v);
        }
        // Age the sub-windows: the best expires after the window, and the second and
        // third are refreshed once a quarter and a half of the window passed without a
        // better one, so there is always a recent candidate to take over.
        let dt = t.saturating_sub(self.s[0].0);
        if dt > window {
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = (t, v);
            if t.saturating_sub(self.s[0].0) > window {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
            }
        } else if self.s[1].0 == self.s[0].0 && dt > window / 4 {
            self.s[1] = (t, v);
            self.s[2] = (t, v);
        } else if self.s[2].0 == self.s[1].0 && dt > window / 2 {
            self.s[2] = (t, v);
        }
    }
}

/// BBR's state for one connection (see the module documentation).
#[derive(Clone, Debug)]
pub struct Bbr {
    mss: usize,
    cwnd: usize,
    /// cwnd before recovery, a timeout or ProbeRTT, restored after.
    prior_cwnd: usize,
    mode: Mode,
    loss_state: LossState,
    /// First round of fast recovery: cwnd follows what is in flight.
    packet_conservation: bool,
    /// BtlBw (bytes/s) over rounds.
    bw: MaxFilter,
    /// RTprop, and when it was last set.
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    /// Round trips counted by delivered data (draft 4.1.1.3).
    rounds: u64,
    next_round_delivered: u64,
    round_start: bool,
    pacing_gain: u64,
    cwnd_gain: u64,
    pacing_rate: u64,
    has_seen_rtt: bool,
    /// Startup's plateau detection.
    full_bw: u64,
    full_bw_rounds: u32,
    full_bw_reached: bool,
    /// ProbeBW's phase and when it began.
    cycle_idx: usize,
    cycle_stamp: Instant,
    /// ProbeRTT: when it may end (set once the flight is down), and whether a round
    /// passed since.
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    /// Samples of data sent before C.delivered reaches this are app-limited (ProbeRTT
    /// restricts the flight on purpose: its samples do not measure the path).
    app_limited_until: u64,
    // ACK aggregation.
    ack_epoch: Instant,
    ack_epoch_acked: u64,
    extra_acked: [usize; 2],
    extra_acked_idx: usize,
    extra_acked_rounds: u32,
}

impl Bbr {
    pub fn new(mss: usize) -> Bbr {
        let cwnd = initial_window(mss);
        let mut b = Bbr {
            mss,
            cwnd,
            prior_cwnd: 0,
            mode: Mode::Startup,
            loss_state: LossState::Open,
            packet_conservation: false,
            bw: MaxFilter::default(),
            min_rtt: None,
            min_rtt_stamp: Instant::ZERO,
            rounds: 0,
            next_round_delivered: 0,
            round_start: false,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            pacing_rate: 0,
            has_seen_rtt: false,
            full_bw: 0,
            full_bw_rounds: 0,
            full_bw_reached: false,
            cycle_idx: 0,
            cycle_stamp: Instant::ZERO,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            app_limited_until: 0,
            ack_epoch: Instant::ZERO,
            ack_epoch_acked: 0,
            extra_acked: [0; 2],
            extra_acked_idx: 0,
            extra_acked_rounds: 0,
        };
        b.init_pacing_rate(None);
        b
    }

    /// The state machine's mode (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The bottleneck bandwidth estimate, bytes per second.
    pub fn bandwidth(&self) -> u64 {
        self.bw.get()
    }

    /// The propagation RTT estimate.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Pacing rate from the initial window over the first RTT (1 ms without one), at
    /// the high gain (Linux: bbr_init_pacing_rate_from_rtt).
    fn init_pacing_rate(&mut self, srtt: Option<Duration>) {
        let rtt_us = match srtt {
            Some(r) if !r.is_zero() => {
                self.has_seen_rtt = true;
                r.as_micros() as u64
            }
            _ => 1000,
        };
        let bw = self.cwnd as u64 * 1_000_000 / rtt_us;
        self.pacing_rate = bw * HIGH_GAIN / UNIT;
    }

    fn min_cwnd(&self) -> usize {
        MIN_CWND_SEGMENTS * self.mss
    }

    /// BDP at `gain` (bytes): bandwidth * RTprop; the initial window before any RTT.
    fn bdp(&self, bw: u64, gain: u64) -> usize {
        let Some(rtt) = self.min_rtt else { return initial_window(self.mss) };
        let w = bw as u128 * rtt.as_micros() / 1_000_000;
        (w * gain as u128).div_ceil(UNIT as u128).min(usize::MAX as u128) as usize
    }

    /// What pacing sends back to back (Linux: bbr_tso_segs_goal).
    fn send_quantum(&self) -> usize {
        let q = (self.pacing_rate as u128 * QUANTUM_TIME.as_micros() / 1_000_000) as usize;
        q.clamp(QUANTUM_MIN_SEGMENTS * self.mss, QUANTUM_MAX.max(QUANTUM_MIN_SEGMENTS * self.mss))
    }

    /// Allowances on a target window (Linux: bbr_quantization_budget): three send
    /// quanta for the pacer's bursts and the receiver's delayed ACKs, an even number of
    /// segments, and two more segments while probing up.
    fn quantization_budget(&self, cwnd: usize) -> usize {
        let mut cwnd = cwnd + 3 * self.send_quantum();
        let segs = cwnd.div_ceil(self.mss);
        cwnd = (segs + (segs & 1)) * self.mss;
        if self.mode == Mode::ProbeBw && self.cycle_idx == 0 {
            cwnd += 2 * self.mss;
        }
        cwnd
    }

    /// The flight ProbeBW aims at with `gain` (Linux: bbr_inflight).
    fn target_inflight(&self, gain: u64) -> usize {
        self.quantization_budget(self.bdp(self.bw.get(), gain))
    }

    /// Save cwnd before a reduction that is undone later (Linux: bbr_save_cwnd).
    fn save_cwnd(&mut self) {
        if self.loss_state == LossState::Open && self.mode != Mode::ProbeRtt {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    // ------------------------------------------------------------- the model

    /// Round counting and the bandwidth filter (draft 4.1.1).
    fn update_bw(&mut self, s: &AckSample) {
        self.round_start = false;
        let Some(rs) = s.rate else { return };
        if rs.interval.is_zero() {
            return;
        }
        if rs.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = s.delivered;
            self.rounds += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        let bw = rs.rate();
        let app_limited = rs.app_limited || rs.prior_delivered < self.app_limited_until;
        // An app-limited sample only counts when it beats the estimate: the path did
        // at least that much (draft 4.1.1.5).
        if !app_limited || bw >= self.bw.get() {
            self.bw.update(self.rounds, bw, BW_WINDOW_ROUNDS);
        }
    }

    /// ACK aggregation: how much more arrived than the bandwidth explains (Linux:
    /// bbr_update_ack_aggregation); it is added to the window once the pipe is full.
    fn update_ack_aggregation(&mut self, now: Instant, s: &AckSample) {
        if s.acked == 0 || s.rate.is_none_or(|r| r.interval.is_zero()) {
            return;
        }
        if self.round_start {
            self.extra_acked_rounds = (self.extra_acked_rounds + 1).min(31);
            if self.extra_acked_rounds >= AGGREGATION_WINDOW_ROUNDS {
                self.extra_acked_rounds = 0;
                self.extra_acked_idx ^= 1;
                self.extra_acked[self.extra_acked_idx] = 0;
            }
        }
        let epoch_us = now.saturating_duration_since(self.ack_epoch).as_micros() as u64;
        let mut expected = (self.bw.get() as u128 * epoch_us as u128 / 1_000_000) as u64;
        if self.ack_epoch_acked <= expected || self.ack_epoch_acked + s.acked as u64 >= AGGREGATION_EPOCH_RESET {
            self.ack_epoch_acked = 0;
            self.ack_epoch = now;
            expected = 0;
        }
        self.ack_epoch_acked = (self.ack_epoch_acked + s.acked as u64).min(AGGREGATION_EPOCH_RESET);
        let extra = (self.ack_epoch_acked - expected.min(self.ack_epoch_acked)).min(self.cwnd as u64) as usize;
        let slot = &mut self.extra_acked[self.extra_acked_idx];
        *slot = (*slot).max(extra);
    }

    fn aggregation_cwnd(&self) -> usize {
        if !self.full_bw_reached {
            return 0;
        }
        let cap = (self.bw.get() as u128 * AGGREGATION_MAX.as_micros() / 1_000_000) as usize;
        self.extra_acked[0].max(self.extra_acked[1]).min(cap)
    }

    /// ProbeBW: move to the next phase when this one has done its job (draft 4.3.4.4).
    fn update_cycle_phase(&mut self, now: Instant, s: &AckSample) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let full_length = self.min_rtt.is_none_or(|m| now.saturating_duration_since(self.cycle_stamp) > m);
        let next = match self.pacing_gain {
            UNIT => full_length,
            // Probing up: until the flight reached the higher target, or loss says the
            // pipe is full.
            g if g > UNIT => full_length && (s.lost > 0 || s.prior_in_flight >= self.target_inflight(g)),
            // Draining: until the queue the probe built is gone.
            _ => full_length || s.prior_in_flight <= self.target_inflight(UNIT),
        };
        if next {
            self.cycle_idx = (self.cycle_idx + 1) % PACING_CYCLE.len();
            self.cycle_stamp = now;
        }
    }

    /// Startup ends at a bandwidth plateau (draft 4.3.2.2).
    fn check_full_bw(&mut self, s: &AckSample) {
        if self.full_bw_reached || !self.round_start || s.rate.is_none_or(|r| r.app_limited) {
            return;
        }
        let bw = self.bw.get();
        if bw >= self.full_bw * FULL_BW_GROWTH / UNIT {
            self.full_bw = bw;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        self.full_bw_reached = self.full_bw_rounds >= FULL_BW_ROUNDS;
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        // Start at a pseudo-random phase other than the drain phase (draft 4.3.4.3);
        // the core has no randomness of its own, the clock's microseconds serve.
        let r = (now.total_micros() % (PACING_CYCLE.len() as u64 - 1)) as usize;
        self.cycle_idx = (PACING_CYCLE.len() - 1 - r + 1) % PACING_CYCLE.len();
        self.cycle_stamp = now;
    }

    fn check_drain(&mut self, now: Instant, s: &AckSample) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
        }
        if self.mode == Mode::Drain && s.in_flight <= self.target_inflight(UNIT) {
            self.enter_probe_bw(now);
        }
    }

    /// RTprop and ProbeRTT (draft 4.1.2, 4.3.5).
    fn update_min_rtt(&mut self, now: Instant, s: &AckSample) {
        let expired = now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = s.rtt {
            if self.min_rtt.is_none_or(|m| rtt < m) || expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now;
            }
        }
        if expired && self.mode != Mode::ProbeRtt && self.min_rtt.is_some() {
            self.mode = Mode::ProbeRtt;
            self.save_cwnd();
            self.probe_rtt_done = None;
        }
        if self.mode == Mode::ProbeRtt {
            self.app_limited_until = (s.delivered + s.in_flight as u64).max(1);
            match self.probe_rtt_done {
                None if s.in_flight <= self.min_cwnd() => {
                    self.probe_rtt_done = Some(now + PROBE_RTT_TIME);
                    self.probe_rtt_round_done = false;
                    self.next_round_delivered = s.delivered;
                }
                None => {}
                Some(done) => {
                    if self.round_start {
                        self.probe_rtt_round_done = true;
                    }
                    if self.probe_rtt_round_done && now > done {
                        self.min_rtt_stamp = now;
                        self.cwnd = self.cwnd.max(self.prior_cwnd);
                        if self.full_bw_reached {
                            self.enter_probe_bw(now);
                        } else {
                            self.mode = Mode::Startup;
                        }
                    }
                }
            }
        }
    }

    fn update_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.mode {
            Mode::Startup => (HIGH_GAIN, HIGH_GAIN),
            Mode::Drain => (DRAIN_GAIN, HIGH_GAIN),
            Mode::ProbeBw => (PACING_CYCLE[self.cycle_idx], CWND_GAIN),
            Mode::ProbeRtt => (UNIT, UNIT),
        };
    }

    /// pacing rate = gain * BtlBw, less the margin; in Startup it only rises (draft
    /// 4.2.1).
    fn set_pacing_rate(&mut self, s: &AckSample) {
        if !self.has_seen_rtt && s.srtt.is_some() {
            self.init_pacing_rate(s.srtt);
        }
        let bw = self.bw.get();
        if bw == 0 {
            return;
        }
        let rate =
            (bw as u128 * self.pacing_gain as u128 / UNIT as u128 * (100 - PACING_MARGIN_PERCENT) as u128 / 100) as u64;
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// Loss: newly lost bytes come off cwnd; the first round of fast recovery conserves
    /// packets; leaving recovery (or a timeout) restores the window saved on entry.
    /// Returns whether packet conservation decides cwnd for this ACK.
    fn recover_or_restore(&mut self, s: &AckSample) -> bool {
        let state = if s.after_timeout {
            LossState::Timeout
        } else if s.in_recovery {
            LossState::Recovery
        } else {
            LossState::Open
        };
        if s.lost > 0 {
            self.cwnd = self.cwnd.saturating_sub(s.lost).max(self.mss);
        }
        if state == LossState::Recovery && self.loss_state != LossState::Recovery {
            // Entering fast recovery: a round of packet conservation (RFC 6675-like).
            self.packet_conservation = true;
            self.next_round_delivered = s.delivered;
            self.cwnd = s.in_flight + s.acked;
        } else if self.loss_state != LossState::Open && state == LossState::Open {
            self.cwnd = self.cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.loss_state = state;
        if self.packet_conservation {
            self.cwnd = self.cwnd.max(s.in_flight + s.acked);
            return true;
        }
        false
    }

    /// cwnd towards cwnd_gain * BDP (+ allowances) (draft 4.2.3).
    fn set_cwnd(&mut self, s: &AckSample) {
        if s.acked > 0 && !self.recover_or_restore(s) {
            let target = self.quantization_budget(self.bdp(self.bw.get(), self.cwnd_gain) + self.aggregation_cwnd());
            if self.full_bw_reached {
                self.cwnd = (self.cwnd + s.acked).min(target);
            } else if self.cwnd < target || s.delivered < initial_window(self.mss) as u64 {
                self.cwnd += s.acked;
            }
            self.cwnd = self.cwnd.max(self.min_cwnd());
        }
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.min_cwnd());
        }
    }
}

impl CongestionControl for Bbr {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        usize::MAX
    }

    /// Everything happens in `on_ack_sample`.
    fn on_ack(&mut self, _now: Instant, _acked: usize, _rtt: Option<Duration>, _mss: usize) {}

    /// Fast recovery starts: remember cwnd (the next sample starts packet conservation).
    fn on_congestion_event(&mut self, _now: Instant, _in_flight: usize, _mss: usize) {
        self.save_cwnd();
    }

    /// Handled by the loss state transitions of the next sample.
    fn on_recovery_exit(&mut self, _now: Instant, _in_flight: usize, _mss: usize) {}

    /// A timeout: remember cwnd, send one segment, and start the plateau detection of
    /// Startup's bandwidth anew (Linux: bbr_set_state(TCP_CA_Loss), tcp_enter_loss).
    fn on_rto(&mut self, _now: Instant, _in_flight: usize, mss: usize) {
        self.save_cwnd();
        self.loss_state = LossState::Timeout;
        self.packet_conservation = false;
        self.full_bw = 0;
        self.cwnd = mss;
    }

    fn on_ack_sample(&mut self, now: Instant, s: &AckSample) {
        self.mss = s.mss;
        self.update_bw(s);
        self.update_ack_aggregation(now, s);
        self.update_cycle_phase(now, s);
        self.check_full_bw(s);
        self.check_drain(now, s);
        self.update_min_rtt(now, s);
        self.update_gains();
        self.set_pacing_rate(s);
        self.set_cwnd(s);
    }

    fn pacing_rate(&self) -> Option<u64> {
        Some(self.pacing_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RateSample;
    use super::*;

    const MSS: usize = 1000;

    /// A path of `bw` bytes/s and `rtt`, driven one round at a time: each round the
    /// sender's cwnd (capped by what the path holds in one round plus the queue it
    /// allows) is delivered, in ACKs of 2 segments.
    struct Path {
        bbr: Bbr,
        now: Instant,
        delivered: u64,
        bw: u64,
        rtt: Duration,
    }

    impl Path {
        fn new(bw: u64, rtt: Duration) -> Path {
            Path { bbr: Bbr::new(MSS), now: Instant::from_secs(1), delivered: 0, bw, rtt }
        }

        /// One round trip with `flight` bytes in flight, delivered at min(rate, bw).
        fn round(&mut self, app_limited: bool, loss: usize) {
            let flight = self.bbr.window();
            let bdp = (self.bw as u128 * self.rtt.as_micros() / 1_000_000) as usize;
            // A queue beyond the BDP adds delay, delivery stays at the bottleneck.
            let rtt = if flight > bdp {
                self.rtt + Duration::from_micros(((flight - bdp) as u64 * 1_000_000) / self.bw)
            } else {
                self.rtt
            };
            let rate = (flight as u64 * 1_000_000 / rtt.as_micros() as u64).min(self.bw);
            let acks = (flight / (2 * MSS)).max(1);
            let prior = self.delivered;
            let step = rtt / acks as u32;
            for i in 0..acks {
                self.now += step;
                self.delivered += 2 * MSS as u64;
                let s = AckSample {
                    acked: 2 * MSS,
                    lost: if i == 0 { loss } else { 0 },
                    prior_in_flight: flight,
                    in_flight: flight.saturating_sub(2 * MSS),
                    delivered: self.delivered,
                    rate: Some(RateSample {
                        delivered: rate * rtt.as_micros() as u64 / 1_000_000,
                        interval: rtt,
                        prior_delivered: prior + (i as u64) * 2 * MSS as u64,
                        app_limited,
                    }),
                    rtt: Some(rtt),
                    srtt: Some(rtt),
                    in_recovery: false,
                    after_timeout: false,
                    mss: MSS,
                };
                self.bbr.on_ack_sample(self.now, &s);
            }
        }
    }

    #[test]
    fn startup_finds_the_bandwidth_then_drains_to_probe_bw() {
        // 10 MB/s, 20 ms: BDP 200 kB.
        let mut p = Path::new(10_000_000, Duration::from_millis(20));
        assert_eq!(p.bbr.mode(), Mode::Startup);
        let mut rounds = 0;
        while p.bbr.mode() == Mode::Startup && rounds < 40 {
            p.round(false, 0);
            rounds += 1;
        }
        assert!(rounds < 20, "startup took {rounds} rounds");
        for _ in 0..5 {
            p.round(false, 0);
        }
        assert_eq!(p.bbr.mode(), Mode::ProbeBw);
        let bw = p.bbr.bandwidth();
        assert!((9_000_000..=10_000_000).contains(&bw), "bandwidth estimate {bw}");
        assert_eq!(p.bbr.min_rtt(), Some(Duration::from_millis(20)));
        // cwnd about 2 BDP (plus allowances), pacing about the bandwidth.
        let cwnd = p.bbr.window();
        assert!((400_000..=480_000).contains(&cwnd), "cwnd {cwnd}");
        let rate = p.bbr.pacing_rate().unwrap();
        assert!((7_000_000..=13_000_000).contains(&rate), "pacing rate {rate}");
    }

    #[test]
    fn random_loss_does_not_collapse_the_window() {
        let mut p = Path::new(10_000_000, Duration::from_millis(20));
        for _ in 0..30 {
            p.round(false, 0);
        }
        let before = p.bbr.window();
        // A few segments lost per round, outside recovery episodes.
        for _ in 0..20 {
            p.round(false, 2 * MSS);
        }
        let after = p.bbr.window();
        assert!(after * 10 >= before * 8, "cwnd {before} -> {after}");
    }

    #[test]
    fn probe_rtt_after_ten_seconds_without_a_lower_rtt() {
        let mut p = Path::new(10_000_000, Duration::from_millis(20));
        for _ in 0..30 {
            p.round(false, 0);
        }
        let cwnd = p.bbr.window();
        // The RTT rises a little for 10 s: RTprop is not refreshed.
        p.rtt = Duration::from_millis(21);
        let mut saw_probe_rtt = false;
        for _ in 0..600 {
            p.round(false, 0);
            if p.bbr.mode() == Mode::ProbeRtt {
                saw_probe_rtt = true;
                assert!(p.bbr.window() <= MIN_CWND_SEGMENTS * MSS);
            } else if saw_probe_rtt {
                break;
            }
        }
        assert!(saw_probe_rtt, "ProbeRTT entered");
        assert_eq!(p.bbr.mode(), Mode::ProbeBw, "and left again");
        assert!(p.bbr.window() >= cwnd / 2, "cwnd restored: {} (was {cwnd})", p.bbr.window());
        assert_eq!(p.bbr.min_rtt(), Some(Duration::from_millis(21)), "RTprop refreshed");
    }

    #[test]
    fn recovery_conserves_packets_then_restores() {
        let mut p = Path::new(10_000_000, Duration::from_millis(20));
        for _ in 0..30 {
            p.round(false, 0);
        }
        let cwnd = p.bbr.window();
        p.bbr.on_congestion_event(p.now, cwnd, MSS);
        let mut s = AckSample {
            acked: MSS,
            lost: 3 * MSS,
            prior_in_flight: cwnd,
            in_flight: cwnd / 2,
            delivered: p.delivered,
            rate: None,
            rtt: None,
            srtt: Some(p.rtt),
            in_recovery: true,
            after_timeout: false,
            mss: MSS,
        };
        p.bbr.on_ack_sample(p.now, &s);
        assert_eq!(p.bbr.window(), cwnd / 2 + MSS, "in flight + acked");
        s.in_recovery = false;
        s.lost = 0;
        p.bbr.on_ack_sample(p.now, &s);
        assert!(p.bbr.window() >= cwnd, "restored");
        // A timeout: one segment, then restored once the timeout's recovery ends.
        p.bbr.on_rto(p.now, cwnd, MSS);
        assert_eq!(p.bbr.window(), MSS);
        s.after_timeout = false;
        p.bbr.on_ack_sample(p.now, &s);
        assert!(p.bbr.window() >= cwnd);
    }

    #[test]
    fn app_limited_samples_do_not_lower_the_estimate() {
        let mut p = Path::new(10_000_000, Duration::from_millis(20));
        for _ in 0..30 {
            p.round(false, 0);
        }
        let bw = p.bbr.bandwidth();
        p.bw = 1_000_000;
        for _ in 0..30 {
            p.round(true, 0);
        }
        assert_eq!(p.bbr.bandwidth(), bw);
    }

    #[test]
    fn max_filter_keeps_the_window_maximum() {
        let mut f = MaxFilter::default();
        f.update(1, 100, 10);
        f.update(2, 50, 10);
        f.update(5, 70, 10);
        assert_eq!(f.get(), 100);
        f.update(12, 60, 10);
        assert_eq!(f.get(), 70, "100 expired after 10 rounds");
        f.update(30, 10, 10);
        assert_eq!(f.get(), 10, "everything expired");
        f.update(31, 20, 10);
        assert_eq!(f.get(), 20);
    }
}
