//! Congestion control behind a small trait: NewReno (RFC 5681, RFC 6582, in
//! `newreno.rs`), CUBIC (RFC 9438, in `cubic.rs`) and BBR (version 1, in `bbr.rs`),
//! chosen per connection. CUBIC is the default, as in Linux.
//!
//! The connection owns loss detection and recovery (fast retransmit, the RFC 6675 pipe,
//! the RTO); an algorithm only decides the congestion window in reaction to ACKs,
//! congestion events and timeouts. Windows are in bytes. A model-based algorithm also
//! gets every ACK's [`AckSample`] (with a delivery rate sample, `tcp/rate.rs`) and may
//! set the pacing rate (`tcp/pacing.rs`).

use std::time::Duration;

use crate::time::Instant;

mod bbr;
mod cubic;
mod newreno;

pub use super::rate::RateSample;
pub use bbr::Bbr;
pub use cubic::Cubic;
pub use newreno::NewReno;

/// Which algorithm a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionAlgorithm {
    NewReno,
    #[default]
    Cubic,
    /// BBR version 1 (draft-cardwell-iccrg-bbr-congestion-control-00, as in Linux's
    /// tcp_bbr.c): a model of the path's bandwidth and RTT, paced.
    Bbr,
}

impl CongestionAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            CongestionAlgorithm::NewReno => "newreno",
            CongestionAlgorithm::Cubic => "cubic",
            CongestionAlgorithm::Bbr => "bbr",
        }
    }
}

impl std::str::FromStr for CongestionAlgorithm {
    type Err = String;
    /// The names of [`CongestionAlgorithm::as_str`] (and "reno" for NewReno, as Linux
    /// calls it).
    fn from_str(s: &str) -> Result<CongestionAlgorithm, String> {
        match s {
            "newreno" | "reno" => Ok(CongestionAlgorithm::NewReno),
            "cubic" => Ok(CongestionAlgorithm::Cubic),
            "bbr" => Ok(CongestionAlgorithm::Bbr),
            _ => Err(format!("unknown congestion control {s:?} (newreno, cubic or bbr)")),
        }
    }
}

/// What one ACK did, for algorithms that model the path (BBR): handed to
/// [`CongestionControl::on_ack_sample`] after the connection processed the ACK (its
/// cumulative part, SACK blocks and loss detection).
#[derive(Clone, Copy, Debug, Default)]
pub struct AckSample {
    /// Bytes newly delivered: cumulatively acknowledged (not SACKed before) or SACKed.
    pub acked: usize,
    /// Bytes newly deemed lost.
    pub lost: usize,
    /// Bytes in flight (the RFC 6675 pipe) before and after the ACK.
    pub prior_in_flight: usize,
    pub in_flight: usize,
    /// Bytes delivered over the connection's life (the rate estimator's C.delivered).
    pub delivered: u64,
    /// The delivery rate sample this ACK gave, if any (`RateSample::interval` is zero
    /// when it gives round progress but no usable rate).
    pub rate: Option<RateSample>,
    /// The RTT sample this ACK gave, if any, and the smoothed RTT.
    pub rtt: Option<Duration>,
    pub srtt: Option<Duration>,
    /// In fast recovery (RFC 6675) or recovering from a timeout.
    pub in_recovery: bool,
    pub after_timeout: bool,
    /// The sender's effective MSS.
    pub mss: usize,
}

/// What a congestion controller does. `mss` is the sender's effective MSS.
pub trait CongestionControl {
    /// Current congestion window (bytes).
    fn window(&self) -> usize;
    /// Current slow-start threshold (bytes; `usize::MAX` before the first loss).
    fn ssthresh(&self) -> usize;
    /// New data was cumulatively acknowledged outside loss recovery.
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>, mss: usize);
    /// Loss detected by duplicate ACKs or SACK: enter fast recovery
    /// (RFC 5681 3.2 step 2 / RFC 6675 5 step 4).
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize, mss: usize);
    /// Fast recovery ended (RFC 6582 3.2 step 3: full acknowledgment).
    fn on_recovery_exit(&mut self, now: Instant, in_flight: usize, mss: usize);
    /// The retransmission timer expired (RFC 5681 3.1 equation 4, loss window 1 MSS).
    fn on_rto(&mut self, now: Instant, in_flight: usize, mss: usize);
    /// Every ACK, after the connection processed it (model-based algorithms).
    fn on_ack_sample(&mut self, _now: Instant, _sample: &AckSample) {}
    /// The rate to pace at, in bytes per second, when the algorithm sets one; otherwise
    /// the connection derives one from the window (`tcp/pacing.rs`).
    fn pacing_rate(&self) -> Option<u64> {
        None
    }
}

/// RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)).
pub fn initial_window(mss: usize) -> usize {
    (10 * mss).min((2 * mss).max(14600))
}

// ------------------------------------------------------------------ dispatch

/// The per-connection controller (an enum rather than a boxed trait object: no
/// allocation per connection, no dynamic dispatch on the hot path).
#[derive(Clone, Debug)]
pub enum Controller {
    NewReno(NewReno),
    Cubic(Cubic),
    /// Boxed: BBR's state is several times CUBIC's, and every idle connection would
    /// carry it otherwise (allocated once, when the connection picks BBR).
    Bbr(Box<Bbr>),
}

impl Controller {
    pub fn new(alg: CongestionAlgorithm, mss: usize) -> Controller {
        match alg {
            CongestionAlgorithm::NewReno => Controller::NewReno(NewReno::new(mss)),
            CongestionAlgorithm::Cubic => Controller::Cubic(Cubic::new(mss)),
            CongestionAlgorithm::Bbr => Controller::Bbr(Box::new(Bbr::new(mss))),
        }
    }

    /// Whether the algorithm uses [`AckSample`]s (so building them can be skipped).
    #[inline]
    pub fn takes_samples(&self) -> bool {
        matches!(self, Controller::Bbr(_))
    }

    pub fn algorithm(&self) -> CongestionAlgorithm {
        match self {
            Controller::NewReno(_) => CongestionAlgorithm::NewReno,
            Controller::Cubic(_) => CongestionAlgorithm::Cubic,
            Controller::Bbr(_) => CongestionAlgorithm::Bbr,
        }
    }

    fn inner(&mut self) -> &mut dyn CongestionControl {
        match self {
            Controller::NewReno(c) => c,
            Controller::Cubic(c) => c,
            Controller::Bbr(c) => &mut **c,
        }
    }
}

impl CongestionControl for Controller {
    fn window(&self) -> usize {
        match self {
            Controller::NewReno(c) => c.window(),
            Controller::Cubic(c) => c.window(),
            Controller::Bbr(c) => c.window(),
        }
    }
    fn ssthresh(&self) -> usize {
        match self {
            Controller::NewReno(c) => c.ssthresh(),
            Controller::Cubic(c) => c.ssthresh(),
            Controller::Bbr(c) => c.ssthresh(),
        }
    }
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>, mss: usize) {
        self.inner().on_ack(now, acked, rtt, mss)
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize, mss: usize) {
        self.inner().on_congestion_event(now, in_flight, mss)
    }
    fn on_recovery_exit(&mut self, now: Instant, in_flight: usize, mss: usize) {
        self.inner().on_recovery_exit(now, in_flight, mss)
    }
    fn on_rto(&mut self, now: Instant, in_flight: usize, mss: usize) {
        self.inner().on_rto(now, in_flight, mss)
    }
    #[inline]
    fn on_ack_sample(&mut self, now: Instant, sample: &AckSample) {
        if let Controller::Bbr(c) = self {
            c.on_ack_sample(now, sample)
        }
    }
    #[inline]
    fn pacing_rate(&self) -> Option<u64> {
        match self {
            Controller::Bbr(c) => c.pacing_rate(),
            _ => None,
        }
    }
}
