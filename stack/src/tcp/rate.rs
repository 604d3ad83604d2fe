//! Delivery rate estimation (draft-cheng-iccrg-delivery-rate-estimation-02): how fast
//! the path delivered data recently, measured per ACK from two snapshots: one taken when
//! a segment was sent (how much had been delivered then, and when), one when the ACK or
//! SACK that delivers it arrives. BBR (`congestion/bbr.rs`) builds its bottleneck
//! bandwidth estimate from these samples; the others ignore them.
//!
//! ```text
//!   send P:     P.delivered = C.delivered, P.delivered_time = C.delivered_time,
//!               P.first_sent_time = C.first_sent_time                  (draft 3.2)
//!   P delivered: C.delivered += P.len, C.delivered_time = now; the most recently
//!               sent delivered packet sets the sample's prior_* fields   (3.3)
//!   per ACK:    interval = max(send_elapsed, ack_elapsed),
//!               rate = (C.delivered - prior_delivered) / interval        (3.3)
//! ```
//!
//! A sample taken while the sender had nothing to send (app-limited, 3.4) says how much
//! the application offered, not what the path can carry: it is marked so, and BBR only
//! lets it raise its estimate. The state is a few counters per connection and one
//! [`RateStamp`] per scoreboard entry; nothing is allocated.

use std::time::Duration;

use super::congestion::{AckSample, CongestionControl};
use super::conn::Conn;
use crate::time::Instant;

/// What a segment carries from its (last) transmission (draft 3.2, "per-packet state").
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RateStamp {
    /// C.delivered when the segment was sent.
    pub delivered: u64,
    /// C.delivered_time when the segment was sent.
    pub delivered_time: Instant,
    /// C.first_sent_time when the segment was sent: the send time of the segment most
    /// recently delivered then (the start of the send-side interval).
    pub first_sent: Instant,
    /// Sent while the connection was app-limited.
    pub app_limited: bool,
}

/// One rate sample (draft 3.3, `rs`), valid when `interval` is non-zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes delivered over `interval`.
    pub delivered: u64,
    /// max(send_elapsed, ack_elapsed) (draft 3.3: the longer of the two phases, so ACK
    /// compression cannot inflate the rate).
    pub interval: Duration,
    /// C.delivered when the newest delivered segment was sent (BBR's round counting).
    pub prior_delivered: u64,
    /// The newest delivered segment was sent while app-limited.
    pub app_limited: bool,
}

impl RateSample {
    /// Bytes per second; 0 for an invalid sample.
    pub fn rate(&self) -> u64 {
        let us = self.interval.as_micros() as u64;
        if us == 0 {
            return 0;
        }
        (self.delivered as u128 * 1_000_000 / us as u128).min(u64::MAX as u128) as u64
    }
}

/// The connection's delivery rate state (draft 3.1) and the sample being built for the
/// current ACK.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateEstimator {
    /// C.delivered: bytes delivered (cumulatively acknowledged or SACKed) so far.
    delivered: u64,
    /// C.delivered_time.
    delivered_time: Instant,
    /// C.first_sent_time.
    first_sent: Instant,
    /// C.app_limited: 0, or the C.delivered value at which the app-limited phase ends
    /// (draft 3.4: the data in flight when the application ran out).
    app_limited_until: u64,
    // The sample under construction (draft 3.3, `rs`).
    has_data: bool,
    sample_app_limited: bool,
    prior_delivered: u64,
    newest_sent: Instant,
    /// Microseconds.
    send_elapsed: u64,
    ack_elapsed: u64,
}

impl RateEstimator {
    /// Total bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The connection is app-limited now (until what is in flight is delivered).
    #[cfg(test)]
    pub fn is_app_limited(&self) -> bool {
        self.app_limited_until != 0
    }

    /// A segment goes out at `now` (first transmission or retransmission); `idle` when
    /// nothing is in flight, which restarts both intervals (draft 3.2).
    #[inline]
    pub fn stamp(&mut self, now: Instant, idle: bool) -> RateStamp {
        if idle {
            self.first_sent = now;
            self.delivered_time = now;
        }
        RateStamp {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent: self.first_sent,
            app_limited: self.app_limited_until != 0,
        }
    }

    /// A segment sent at `sent` with `stamp`, `len` bytes of sequence space, was
    /// delivered (cumulatively acknowledged or SACKed) for the first time (draft 3.3
    /// UpdateRateSample).
    #[inline]
    pub fn on_delivered(&mut self, now: Instant, len: usize, sent: Instant, stamp: &RateStamp) {
        self.delivered += len as u64;
        self.delivered_time = now;
        // The most recently sent of the segments this ACK delivers sets the sample.
        if !self.has_data || stamp.delivered > self.prior_delivered || sent > self.newest_sent {
            self.has_data = true;
            self.prior_delivered = stamp.delivered;
            self.sample_app_limited = stamp.app_limited;
            self.send_elapsed = sent.total_micros().saturating_sub(stamp.first_sent.total_micros());
            self.ack_elapsed = now.total_micros().saturating_sub(stamp.delivered_time.total_micros());
            self.newest_sent = sent;
            self.first_sent = sent;
        }
    }

    /// After an ACK was processed: the sample it gives, if any (draft 3.3
    /// GenerateRateSample). Samples shorter than `min_rtt` are discarded: the draft's
    /// guard against ACK compression and stretched intervals.
    pub fn take_sample(&mut self, min_rtt: Option<Duration>) -> Option<RateSample> {
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let interval = Duration::from_micros(self.send_elapsed.max(self.ack_elapsed));
        let delivered = self.delivered - self.prior_delivered;
        if interval.is_zero() || min_rtt.is_some_and(|m| interval < m) {
            // Still report round progress (BBR counts rounds from prior_delivered).
            return Some(RateSample {
                delivered,
                interval: Duration::ZERO,
                prior_delivered: self.prior_delivered,
                app_limited: self.sample_app_limited,
            });
        }
        Some(RateSample {
            delivered,
            interval,
            prior_delivered: self.prior_delivered,
            app_limited: self.sample_app_limited,
        })
    }

    /// The application ran out of data with room in the congestion window (draft 3.4):
    /// samples are app-limited until what is in flight now has been delivered.
    #[inline]
    pub fn on_app_limited(&mut self, in_flight: usize) {
        self.app_limited_until = (self.delivered + in_flight as u64).max(1);
    }
}

/// What the connection looked like before it processed an ACK (for the [`AckSample`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct BeforeAck {
    in_flight: usize,
    lost_total: u64,
    delivered: u64,
    rtt_samples: u32,
}

impl Conn {
    /// Snapshot before an ACK is processed.
    #[inline]
    pub(super) fn before_ack(&self) -> BeforeAck {
        BeforeAck {
            in_flight: self.pipe(),
            lost_total: self.sent.lost_total(),
            delivered: self.rate.delivered(),
            rtt_samples: self.rtt.samples(),
        }
    }

    /// After an ACK was processed: finish its rate sample and hand the congestion
    /// controller what the ACK did (`CongestionControl::on_ack_sample`).
    #[inline]
    pub(super) fn after_ack(&mut self, now: Instant, b: BeforeAck) {
        let rate = self.rate.take_sample(self.rtt.min_rtt());
        if !self.cc.takes_samples() {
            return;
        }
        let delivered = self.rate.delivered();
        let sample = AckSample {
            acked: (delivered - b.delivered) as usize,
            lost: (self.sent.lost_total() - b.lost_total) as usize,
            prior_in_flight: b.in_flight,
            in_flight: self.pipe(),
            delivered,
            rate,
            rtt: (self.rtt.samples() != b.rtt_samples).then(|| self.rtt.latest()),
            srtt: self.rtt.srtt(),
            in_recovery: self.rec.recovery_point.is_some(),
            after_timeout: self.rec.rto_point.is_some(),
            mss: self.snd.mss,
        };
        self.cc.on_ack_sample(now, &sample);
    }

    /// The application has nothing more to send right now: if the congestion window
    /// has room and nothing waits for retransmission, the samples of what is in flight
    /// are app-limited (draft 3.4).
    #[inline]
    pub(super) fn note_app_limited(&mut self) {
        let pipe = self.pipe();
        if pipe < self.cc.window() && self.sent.lost_out() == 0 {
            self.rate.on_app_limited(pipe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    #[test]
    fn a_window_delivered_in_one_rtt_measures_window_per_rtt() {
        let mut r = RateEstimator::default();
        // Ten 1000-byte segments sent 1 ms apart from idle, each acknowledged 100 ms
        // after it was sent.
        let stamps: Vec<_> = (0..10).map(|i| (ms(i), r.stamp(ms(i), i == 0))).collect();
        let mut last = None;
        for (sent, st) in &stamps {
            let now = *sent + Duration::from_millis(100);
            r.on_delivered(now, 1000, *sent, st);
            last = r.take_sample(Some(Duration::from_millis(100)));
        }
        let s = last.expect("a sample");
        assert_eq!(s.delivered, 10_000);
        // send_elapsed 9 ms, ack_elapsed 109 ms (from the idle restart at 0 to 109).
        assert_eq!(s.interval, Duration::from_millis(109));
        assert!(!s.app_limited);
        assert_eq!(s.rate(), 10_000 * 1000 / 109);
        assert_eq!(r.delivered(), 10_000);
    }

    #[test]
    fn app_limited_marks_samples_until_the_flight_is_delivered() {
        let mut r = RateEstimator::default();
        let st = r.stamp(ms(0), true);
        r.on_app_limited(1000);
        assert!(r.is_app_limited());
        let st2 = r.stamp(ms(1), false);
        assert!(!st.app_limited && st2.app_limited);
        r.on_delivered(ms(50), 1000, ms(0), &st);
        assert!(!r.take_sample(None).unwrap().app_limited);
        // The phase ends once more than the flight at that moment was delivered.
        r.on_delivered(ms(51), 1000, ms(1), &st2);
        let s = r.take_sample(None).unwrap();
        assert!(s.app_limited, "sent while app-limited");
        assert!(!r.is_app_limited());
    }

    #[test]
    fn no_delivery_no_sample_and_short_intervals_carry_no_rate() {
        let mut r = RateEstimator::default();
        assert_eq!(r.take_sample(None), None);
        let st = r.stamp(ms(0), true);
        r.on_delivered(ms(2), 500, ms(0), &st);
        let s = r.take_sample(Some(Duration::from_millis(10))).unwrap();
        assert_eq!((s.rate(), s.delivered, s.prior_delivered), (0, 500, 0));
    }
}
