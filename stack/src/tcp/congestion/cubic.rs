//! CUBIC (RFC 9438), the default algorithm, as in Linux.

use std::time::Duration;

use super::{initial_window, CongestionControl};
use crate::time::Instant;

/// RFC 9438 4.1: C = 0.4.
const CUBIC_C: f64 = 0.4;
/// RFC 9438 4.6: beta_cubic = 0.7.
const CUBIC_BETA: f64 = 0.7;

/// CUBIC (RFC 9438): window growth is a cubic function of the time since the last
/// congestion event, with the Reno-friendly region (4.3) and fast convergence (4.7).
/// Computed in segments (f64), reported in bytes.
#[derive(Clone, Debug)]
pub struct Cubic {
    cwnd: usize,
    ssthresh: usize,
    /// W_max in segments: window just before the last reduction (4.1).
    w_max: f64,
    /// W_last_max for fast convergence (4.7).
    w_last_max: f64,
    /// K in seconds (4.2, equation 2).
    k: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch: Option<Instant>,
    /// W_est in segments: the Reno-friendly estimate (4.3).
    w_est: f64,
    /// cwnd (segments) at the start of the epoch.
    cwnd_epoch: f64,
    /// Fractional segments acknowledged, for smooth growth.
    acked_frac: f64,
}

impl Cubic {
    pub fn new(mss: usize) -> Cubic {
        Cubic {
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            w_max: 0.0,
            w_last_max: 0.0,
            k: 0.0,
            epoch: None,
            w_est: 0.0,
            cwnd_epoch: 0.0,
            acked_frac: 0.0,
        }
    }

    fn reduce(&mut self, mss: usize) {
        let cwnd_seg = self.cwnd as f64 / mss as f64;
        // 4.7 fast convergence.
        if cwnd_seg < self.w_last_max {
            self.w_last_max = cwnd_seg;
            self.w_max = cwnd_seg * (1.0 + CUBIC_BETA) / 2.0;
        } else {
            self.w_last_max = cwnd_seg;
            self.w_max = cwnd_seg;
        }
        // 4.6 multiplicative decrease.
        let target = (cwnd_seg * CUBIC_BETA).max(2.0);
        self.ssthresh = (target * mss as f64) as usize;
        self.epoch = None;
        self.acked_frac = 0.0;
    }
}

impl CongestionControl for Cubic {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>, mss: usize) {
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 9438 4.10 defers to RFC 5681).
            self.cwnd += acked.min(mss);
            return;
        }
        let mssf = mss as f64;
        let cwnd_seg = self.cwnd as f64 / mssf;
        let epoch = match self.epoch {
            Some(e) => e,
            None => {
                // A new congestion-avoidance epoch (4.2).
                self.epoch = Some(now);
                self.cwnd_epoch = cwnd_seg;
                self.w_est = cwnd_seg;
                if self.w_max <= cwnd_seg {
                    self.k = 0.0;
                    self.w_max = cwnd_seg;
                } else {
                    // Equation 2: K = cubic_root((W_max - cwnd_epoch) / C).
                    self.k = ((self.w_max - cwnd_seg) / CUBIC_C).cbrt();
                }
                now
            }
        };
        let rtt = rtt.unwrap_or(Duration::from_millis(100)).as_secs_f64();
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        // Equation 1 evaluated one RTT ahead (4.4: target = W_cubic(t + RTT)).
        let w_cubic = |t: f64| CUBIC_C * (t - self.k).powi(3) + self.w_max;
        let target = w_cubic(t + rtt).clamp(cwnd_seg, 1.5 * cwnd_seg);
        // 4.3 Reno-friendly region: W_est grows by alpha per RTT worth of ACKs.
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        let acked_seg = acked as f64 / mssf;
        self.w_est += alpha * acked_seg / cwnd_seg;
        let grow_seg = if w_cubic(t) < self.w_est {
            // Reno-friendly: follow W_est.
            (self.w_est - cwnd_seg).max(0.0).min(acked_seg)
        } else {
            // Concave / convex regions (4.4, 4.5): (target - cwnd) / cwnd per ACKed segment.
            (target - cwnd_seg) / cwnd_seg * acked_seg
        };
        self.acked_frac += grow_seg * mssf;
        if self.acked_frac >= 1.0 {
            let add = self.acked_frac as usize;
            self.cwnd += add;
            self.acked_frac -= add as f64;
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, _in_flight: usize, mss: usize) {
        self.reduce(mss);
        self.cwnd = self.ssthresh.max(2 * mss);
    }

    fn on_recovery_exit(&mut self, _now: Instant, _in_flight: usize, mss: usize) {
        self.cwnd = self.ssthresh.max(2 * mss);
    }

    fn on_rto(&mut self, _now: Instant, _in_flight: usize, mss: usize) {
        // 4.8: on a timeout, reduce as on a congestion event, then cwnd = 1 MSS.
        self.reduce(mss);
        self.cwnd = mss;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn cubic_reduces_by_beta_and_regrows_towards_w_max() {
        let mut c = Cubic::new(MSS);
        // Grow to 100 segments in slow start.
        while c.window() < 100 * MSS {
            c.on_ack(Instant::ZERO, MSS, None, MSS);
        }
        c.on_congestion_event(Instant::ZERO, 100 * MSS, MSS);
        assert_eq!(c.window(), 70 * MSS, "beta 0.7");
        // K = cbrt(30 / 0.4) ~ 4.2 s: after K seconds of ACKs we are back near W_max.
        let rtt = Duration::from_millis(100);
        let mut now = Instant::ZERO;
        for _ in 0..45 {
            now += rtt;
            let per_rtt = c.window() / MSS;
            for _ in 0..per_rtt {
                c.on_ack(now, MSS, Some(rtt), MSS);
            }
        }
        let w = c.window() / MSS;
        assert!((95..=110).contains(&w), "cwnd {w} segments after ~K");
        // And it keeps growing beyond W_max (convex region).
        for _ in 0..30 {
            now += rtt;
            let per_rtt = c.window() / MSS;
            for _ in 0..per_rtt {
                c.on_ack(now, MSS, Some(rtt), MSS);
            }
        }
        assert!(c.window() > 110 * MSS);
    }

    #[test]
    fn cubic_fast_convergence_lowers_w_max() {
        let mut c = Cubic::new(MSS);
        c.cwnd = 100 * MSS;
        c.ssthresh = 50 * MSS;
        c.on_congestion_event(Instant::ZERO, 100 * MSS, MSS);
        assert_eq!(c.w_max, 100.0);
        // A second loss below the previous W_max: W_max = cwnd * (1 + beta) / 2.
        c.on_congestion_event(Instant::ZERO, 70 * MSS, MSS);
        assert!((c.w_max - 70.0 * 0.85).abs() < 1e-9);
    }
}
