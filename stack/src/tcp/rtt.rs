//! Round-trip time estimation and the retransmission timeout (RFC 6298), plus the
//! smallest RTT seen (RFC 8985 6.2 step 4 uses it for the reordering window).
//!
//! Which measurements are valid samples (Karn's algorithm, RFC 6298 3; timestamps,
//! RFC 7323 4) is the connection's business; this type only folds samples into SRTT
//! and RTTVAR and owns the RTO: its one formula (RFC 6298 2.3), its bounds and its
//! exponential backoff (5.5).

use std::time::Duration;

/// RFC 6298 (2.4): clock granularity G used in the RTO formula.
const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);

/// SRTT, RTTVAR and the RTO of one connection (RFC 6298 2).
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The current RTO, backed off after timeouts.
    rto: Duration,
    initial: Duration,
    min: Duration,
    max: Duration,
    min_rtt: Option<Duration>,
    /// The latest sample and how many were taken (congestion control takes an ACK's
    /// own sample, `rate.rs`).
    latest: Duration,
    samples: u32,
}

impl RttEstimator {
    /// No sample yet: the RTO is `initial` (RFC 6298 2.1), later bounded by
    /// `[min, max]` (2.4, 2.5).
    pub fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial,
            initial,
            min,
            max,
            min_rtt: None,
            latest: Duration::ZERO,
            samples: 0,
        }
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// How many samples were taken (wrapping), and the latest.
    pub fn samples(&self) -> u32 {
        self.samples
    }
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// The smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Fold in a measurement R (RFC 6298 2.2 for the first, 2.3 after) and recompute
    /// the RTO, which ends any backoff.
    pub fn sample(&mut self, r: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        self.latest = r;
        self.samples = self.samples.wrapping_add(1);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        self.recompute();
    }

    /// RTO = SRTT + max(G, 4 * RTTVAR), bounded (RFC 6298 2.3 - 2.5): the one place the
    /// formula lives. Without a sample the RTO stays where it is.
    fn recompute(&mut self) {
        if let Some(srtt) = self.srtt {
            self.rto = (srtt + CLOCK_GRANULARITY.max(self.rttvar * 4)).clamp(self.min, self.max);
        }
    }

    /// Forward progress without a valid sample (every acknowledged segment had been
    /// retransmitted) ends the exponential backoff, as in Linux: otherwise RFC 6298 5.7's
    /// "keep the backed-off RTO" leaves a lossy path at the maximum indefinitely.
    pub fn end_backoff(&mut self) {
        self.recompute();
    }

    /// RFC 6298 5.5: the timer expired, double the RTO (up to the maximum).
    pub fn back_off(&mut self) {
        self.rto = (self.rto * 2).min(self.max);
    }

    /// RFC 6298 5.7: the SYN was retransmitted and no sample was taken, so the RTO
    /// restarts from 3 s (here: the configured initial RTO) once data transfer begins.
    pub fn restart_after_syn_retransmission(&mut self) {
        if self.srtt.is_none() {
            self.rto = self.initial.max(self.min);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn est() -> RttEstimator {
        RttEstimator::new(ms(1000), ms(200), ms(60_000))
    }

    #[test]
    fn first_and_later_samples_follow_rfc_6298() {
        let mut e = est();
        assert_eq!((e.srtt(), e.rto(), e.min_rtt()), (None, ms(1000), None));
        // 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR.
        e.sample(ms(100));
        assert_eq!((e.srtt(), e.rttvar, e.rto()), (Some(ms(100)), ms(50), ms(300)));
        // 2.3: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, SRTT = 7/8 SRTT + 1/8 R.
        e.sample(ms(300));
        assert_eq!(e.rttvar, Duration::from_micros(87_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(125_000)));
        assert_eq!(e.rto(), ms(475));
        assert_eq!(e.min_rtt(), Some(ms(100)));
    }

    #[test]
    fn rto_is_bounded_and_granular() {
        let mut e = est();
        // A zero RTT: max(G, 4*0) = 1 ms, then the 200 ms floor (2.4).
        e.sample(Duration::ZERO);
        assert_eq!(e.rto(), ms(200));
        let mut e = est();
        e.sample(ms(50_000));
        assert_eq!(e.rto(), ms(60_000), "the ceiling (2.5)");
    }

    #[test]
    fn backoff_doubles_to_the_ceiling_and_progress_ends_it() {
        let mut e = est();
        e.back_off();
        assert_eq!(e.rto(), ms(2000), "5.5 also applies before any sample");
        e.end_backoff();
        assert_eq!(e.rto(), ms(2000), "no estimate to go back to");
        e.sample(ms(100));
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), ms(60_000));
        e.end_backoff();
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn syn_retransmission_restarts_from_the_initial_rto() {
        let mut e = RttEstimator::new(ms(100), ms(200), ms(60_000));
        e.back_off();
        e.back_off();
        e.restart_after_syn_retransmission();
        assert_eq!(e.rto(), ms(200), "the initial RTO, not below the floor");
        e.sample(ms(10));
        let rto = e.rto();
        e.back_off();
        e.restart_after_syn_retransmission();
        assert_eq!(e.rto(), 2 * rto, "a measured RTT wins (5.7 only without one)");
    }
}
