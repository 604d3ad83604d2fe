//! NewReno (RFC 5681 slow start and congestion avoidance, RFC 6582 recovery).

use std::time::Duration;

use super::{initial_window, CongestionControl};
use crate::time::Instant;

/// RFC 5681 slow start and congestion avoidance; RFC 6582's recovery is driven by the
/// connection, which calls `on_congestion_event` once per recovery episode.
#[derive(Clone, Debug)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew (RFC 5681 3.1,
    /// the byte-counting variant of equation 3).
    acked_in_ca: usize,
}

impl NewReno {
    pub fn new(mss: usize) -> NewReno {
        NewReno { cwnd: initial_window(mss), ssthresh: usize::MAX, acked_in_ca: 0 }
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, acked: usize, _rtt: Option<Duration>, mss: usize) {
        if self.cwnd < self.ssthresh {
            // RFC 5681 3.1 equation 2 (with RFC 3465's L = 1 SMSS per ACK).
            self.cwnd += acked.min(mss);
        } else {
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += mss;
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        // RFC 5681 3.1 equation 4, and RFC 6675's cwnd = ssthresh on entering recovery.
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
    }
    fn on_recovery_exit(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        // RFC 6582 3.2 step 3, option (1): min(ssthresh, FlightSize + SMSS).
        self.cwnd = self.ssthresh.min(in_flight + mss).max(mss);
    }
    fn on_rto(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.acked_in_ca = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn newreno_slow_start_then_linear() {
        let mut c = NewReno::new(MSS);
        assert_eq!(c.window(), 10 * MSS);
        for _ in 0..10 {
            c.on_ack(Instant::ZERO, MSS, None, MSS);
        }
        assert_eq!(c.window(), 20 * MSS, "slow start doubles per RTT");
        c.on_congestion_event(Instant::ZERO, 20 * MSS, MSS);
        assert_eq!((c.window(), c.ssthresh()), (10 * MSS, 10 * MSS));
        for _ in 0..10 {
            c.on_ack(Instant::ZERO, MSS, None, MSS);
        }
        assert_eq!(c.window(), 11 * MSS, "one MSS per window of ACKs");
        c.on_rto(Instant::ZERO, 11 * MSS, MSS);
        assert_eq!((c.window(), c.ssthresh()), (MSS, 5500));
    }
}
