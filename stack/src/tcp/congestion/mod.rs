//! Congestion control behind a small trait: NewReno (RFC 5681, RFC 6582, in
//! `newreno.rs`) and CUBIC (RFC 9438, in `cubic.rs`), chosen per connection. CUBIC is
//! the default, as in Linux.
//!
//! The connection owns loss detection and recovery (fast retransmit, the RFC 6675 pipe,
//! the RTO); an algorithm only decides the congestion window in reaction to ACKs,
//! congestion events and timeouts. Windows are in bytes.

use std::time::Duration;

use crate::time::Instant;

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

/// Which algorithm a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionAlgorithm {
    NewReno,
    #[default]
    Cubic,
}

impl CongestionAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            CongestionAlgorithm::NewReno => "newreno",
            CongestionAlgorithm::Cubic => "cubic",
        }
    }
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
}

impl Controller {
    pub fn new(alg: CongestionAlgorithm, mss: usize) -> Controller {
        match alg {
            CongestionAlgorithm::NewReno => Controller::NewReno(NewReno::new(mss)),
            CongestionAlgorithm::Cubic => Controller::Cubic(Cubic::new(mss)),
        }
    }

    pub fn algorithm(&self) -> CongestionAlgorithm {
        match self {
            Controller::NewReno(_) => CongestionAlgorithm::NewReno,
            Controller::Cubic(_) => CongestionAlgorithm::Cubic,
        }
    }

    fn inner(&mut self) -> &mut dyn CongestionControl {
        match self {
            Controller::NewReno(c) => c,
            Controller::Cubic(c) => c,
        }
    }
}

impl CongestionControl for Controller {
    fn window(&self) -> usize {
        match self {
            Controller::NewReno(c) => c.window(),
            Controller::Cubic(c) => c.window(),
        }
    }
    fn ssthresh(&self) -> usize {
        match self {
            Controller::NewReno(c) => c.ssthresh(),
            Controller::Cubic(c) => c.ssthresh(),
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
}
