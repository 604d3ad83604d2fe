//! The connection's timers: one named [`Timer`] per purpose in a small table, how each
//! is armed, and what each does when it fires.
//!
//! | timer | armed by | fires | on expiry |
//! |---|---|---|---|
//! | `Handshake` | `emit_syn` | RTO after the SYN / SYN-ACK | `on_handshake_timer`: send it again (RFC 6298 5, RFC 9293 3.8.1) |
//! | `Rto` | `rearm_rtx`, `arm_rtx`; `check_reneging` brings it in | RTO after the last (re)arming (RFC 6298 5.1 - 5.3), at the latest when the user timeout ends (RFC 5482) | `on_rto`: back off, collapse cwnd, resend from SND.UNA |
//! | `TailLossProbe` | `rearm_rtx`, `arm_after_new_data` (see `pto`) | PTO = 2*SRTT, RFC 8985 7.2 | `on_tail_loss_probe_timer`: one probe, then the RTO |
//! | `Persist` | `arm_persist` | RTO (RFC 9293 3.8.6.1), backed off | `on_persist_timer`: a window probe (RFC 9293 3.8.6.1) |
//! | `DelayedAck` | `process_text_and_fin` | `Config::ack_delay` after in-order data | send the ACK (RFC 5681 4.2) |
//! | `RackReorder` | `rack_detect_loss` | RACK.rtt + reo_wnd after a suspect segment left | `on_rack_timer`: RACK again (RFC 8985 6.3) |
//! | `Close` | `enter_time_wait`, `close`, orphan FIN-WAIT-2 | 2*MSL | `on_close_timer`: CLOSED (RFC 9293 3.10.7.4) |
//! | `Pacing` | `pacing_allows` (`pacing.rs`), when data waits for the pacer | the pacer's next departure | nothing: the stack schedules output, `dispatch` sends what is due |
//!
//! Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6) is not in the table: its deadline
//! follows from when the last segment arrived, so `keepalive_deadline` computes it.
//! `Conn::deadline` runs for every packet the stack handles: keep it cheap.

use std::time::Duration;

use crate::config::Config;
use crate::error::ConnError;
use crate::time::Instant;

use super::congestion::CongestionControl;
use super::conn::{Conn, Reply};
use super::TcpState;

/// One timer of a connection. The first four are the uses of RFC 6298's retransmission
/// timer: they exclude each other, so they share one slot of the table and arming one
/// replaces whichever was armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// SYN or SYN-ACK retransmission (RFC 9293 3.8.1, RFC 6298 applied to the SYN).
    Handshake,
    /// Retransmission timeout for data or FIN (RFC 6298 5).
    Rto,
    /// Tail loss probe timeout, PTO (RFC 8985 7.2).
    TailLossProbe,
    /// Persist: zero-window probe (RFC 9293 3.8.6.1) and the sender SWS override
    /// (RFC 9293 3.8.6.2.1).
    Persist,
    /// Delayed ACK (RFC 5681 4.2, RFC 9293 3.8.6.3).
    DelayedAck,
    /// RACK reordering window (RFC 8985 6.3).
    RackReorder,
    /// End of TIME-WAIT, 2*MSL (RFC 9293 3.10.7.4), or of an orphan's FIN-WAIT-2.
    Close,
    /// The pacer lets the next data segment go (`pacing.rs`).
    Pacing,
}

impl Timer {
    /// The table slot: one for the retransmission timer's uses, one for each other.
    #[inline(always)]
    fn slot(self) -> usize {
        match self {
            Timer::Handshake | Timer::Rto | Timer::TailLossProbe | Timer::Persist => 0,
            Timer::DelayedAck => 1,
            Timer::RackReorder => 2,
            Timer::Close => 3,
            Timer::Pacing => 4,
        }
    }
}

/// When each [`Timer`] fires, if armed. `earliest` runs for every packet (the stack
/// re-files the connection's deadline after each event), so the table is a fixed array
/// of microsecond counts, `u64::MAX` for "not armed", and its minimum is a short scan.
#[derive(Clone, Debug)]
pub(crate) struct TimerTable {
    /// Which use of the retransmission timer slot 0 holds.
    rtx: Timer,
    at: [u64; 5],
}

/// The `at` value of a timer that is not armed.
const UNARMED: u64 = u64::MAX;

impl Default for TimerTable {
    fn default() -> TimerTable {
        TimerTable { rtx: Timer::Rto, at: [UNARMED; 5] }
    }
}

#[inline(always)]
fn decode(at: u64) -> Option<Instant> {
    (at != UNARMED).then_some(Instant::from_micros(at))
}

impl TimerTable {
    /// Whether `t` is the timer its slot holds (always so outside slot 0).
    #[inline(always)]
    fn holds(&self, t: Timer) -> bool {
        t.slot() != 0 || self.rtx == t
    }

    #[inline]
    pub fn get(&self, t: Timer) -> Option<Instant> {
        if !self.holds(t) {
            return None;
        }
        decode(self.at[t.slot()])
    }

    /// Arm `t` at `at`. A use of the retransmission timer replaces whichever other use
    /// was armed. (A deadline at the very end of time, where `Instant + Duration`
    /// saturates, is kept one microsecond earlier so it still reads as armed.)
    #[inline]
    pub fn set(&mut self, t: Timer, at: Instant) {
        if t.slot() == 0 {
            self.rtx = t;
        }
        self.at[t.slot()] = at.total_micros().min(UNARMED - 1);
    }

    /// Arm `t` at `at`, or stop it if `at` is `None`.
    #[inline]
    pub fn set_to(&mut self, t: Timer, at: Option<Instant>) {
        match at {
            Some(at) => self.set(t, at),
            None => self.stop(t),
        }
    }

    /// Stop `t` (nothing happens if another use of the retransmission timer is armed).
    #[inline]
    pub fn stop(&mut self, t: Timer) {
        if self.holds(t) {
            self.at[t.slot()] = UNARMED;
        }
    }

    /// Armed and due at `now`.
    #[inline]
    pub fn is_due(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|at| now >= at)
    }

    /// The earliest armed timer's deadline.
    #[inline]
    pub fn earliest(&self) -> Option<Instant> {
        decode(self.at.iter().fold(UNARMED, |m, &at| m.min(at)))
    }

    /// The armed use of the retransmission timer, if any, and when it fires.
    #[inline]
    pub fn retransmission(&self) -> Option<(Timer, Instant)> {
        decode(self.at[0]).map(|at| (self.rtx, at))
    }

    /// Stop whichever use of the retransmission timer is armed.
    #[inline]
    pub fn stop_retransmission(&mut self) {
        self.at[0] = UNARMED;
    }
}

impl Conn {
    /// When `on_timer` must next run: the earliest armed timer.
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        let d = self.timers.earliest();
        if self.keepalive.is_none() {
            return d;
        }
        match (d, self.keepalive_deadline()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) => x,
            (None, y) => y,
        }
    }

    /// The keepalive timer (RFC 9293 3.8.4, RFC 1122 4.2.3.6): idle time after the last
    /// segment received, then one interval per probe sent; only while the connection
    /// is idle (nothing in flight or queued) in ESTABLISHED or CLOSE-WAIT.
    fn keepalive_deadline(&self) -> Option<Instant> {
        let ka = self.keepalive?;
        if !matches!(self.state, TcpState::Established | TcpState::CloseWait)
            || self.snd.nxt != self.snd.una
            || !self.tx.is_empty()
        {
            return None;
        }
        Some(self.last_rx + ka.idle + ka.interval * self.ka_probes)
    }

    /// Run the timers due at `now`. May ask for a RST (keepalive timeout).
    pub fn on_timer(&mut self, now: Instant, cfg: &Config) -> Reply {
        if self.timers.is_due(Timer::Close, now) {
            self.on_close_timer();
            return Reply::None;
        }
        if self.timers.is_due(Timer::DelayedAck, now) {
            self.timers.stop(Timer::DelayedAck);
            self.pending.ack = true;
        }
        if self.keepalive_deadline().is_some_and(|d| now >= d) {
            if let Some(rst) = self.on_keepalive_timer() {
                return rst;
            }
        }
        if self.timers.is_due(Timer::RackReorder, now) {
            self.on_rack_timer(now);
        }
        if self.timers.is_due(Timer::Pacing, now) {
            // The stack schedules output after every timer; `dispatch` sends what is due.
            self.timers.stop(Timer::Pacing);
        }
        match self.timers.retransmission() {
            Some((t, at)) if now >= at => {
                self.timers.stop_retransmission();
                match t {
                    Timer::Handshake => self.on_handshake_timer(now, cfg),
                    Timer::Rto => self.on_rto(now, cfg),
                    Timer::TailLossProbe => self.on_tail_loss_probe_timer(now),
                    Timer::Persist => self.on_persist_timer(),
                    // Not uses of the retransmission timer.
                    Timer::DelayedAck | Timer::RackReorder | Timer::Close | Timer::Pacing => {}
                }
            }
            _ => {}
        }
        Reply::None
    }

    /// TIME-WAIT (or the orphan FIN-WAIT-2 wait) is over.
    fn on_close_timer(&mut self) {
        self.timers.stop(Timer::Close);
        self.timers.stop_retransmission();
        self.state = TcpState::Closed;
    }

    /// Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6): send a probe, or give up with a RST
    /// after `probes` unanswered ones.
    fn on_keepalive_timer(&mut self) -> Option<Reply> {
        let ka = self.keepalive?;
        if self.ka_probes >= ka.probes {
            // RFC 1122 4.2.3.6: no answer to the probes, the peer is gone.
            self.error = Some(ConnError::TimedOut);
            let seq = self.snd.nxt;
            self.state = TcpState::Closed;
            return Some(Reply::Rst { seq, ack: None });
        }
        self.ka_probes += 1;
        self.pending.keepalive_probe = true;
        None
    }

    /// RFC 8985 6.3: the reordering window has passed.
    fn on_rack_timer(&mut self, now: Instant) {
        self.timers.stop(Timer::RackReorder);
        let lost = self.rack_detect_loss(now);
        self.maybe_enter_recovery(now, lost);
    }

    /// RFC 8985 7.3: the probe timeout fired: send one probe and arm the RTO.
    fn on_tail_loss_probe_timer(&mut self, now: Instant) {
        self.pending.tail_loss_probe = true;
        self.timers.set(Timer::Rto, self.rto_deadline(now));
    }

    /// Persist timer: probe the peer's window, with backoff but without a retry limit
    /// while the peer keeps answering (RFC 9293 3.8.6.1).
    fn on_persist_timer(&mut self) {
        if self.data_end() > self.snd.nxt {
            self.pending.window_probe = true;
            self.rtt.back_off();
        }
    }

    /// One more timeout of the oldest outstanding segment (SYN included). Past `limit`
    /// (RFC 9293 3.8.3: R2) or the user timeout the connection is closed with
    /// `TimedOut`; returns whether it was.
    fn timed_out(&mut self, now: Instant, limit: u32) -> bool {
        self.retries += 1;
        let expired = self.user_timeout.is_some_and(|ut| {
            let since = self.sent.front().map_or(self.snd.syn_sent_at, |e| e.first_tx);
            now.saturating_duration_since(since) >= ut
        });
        if self.retries > limit || expired {
            // A soft error an ICMP message reported explains the timeout better
            // (RFC 1122 4.2.3.9; Linux's tcp_write_err reports sk_err_soft).
            self.error = Some(self.soft_error.unwrap_or(ConnError::TimedOut));
            self.state = TcpState::Closed;
            self.tx.clear();
            self.sent.clear();
            return true;
        }
        false
    }

    /// The SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED) went unanswered: back off
    /// (RFC 6298 5.5) and send it again, up to `syn_retries` times.
    fn on_handshake_timer(&mut self, now: Instant, cfg: &Config) {
        if self.timed_out(now, cfg.syn_retries) {
            return;
        }
        self.rtt.back_off();
        // Rewinding SND.NXT makes `dispatch` emit the SYN again.
        self.snd.nxt = self.snd.iss;
    }

    /// The retransmission timeout (RFC 6298 5.4 - 5.7): back off, collapse the window
    /// (RFC 5681 3.1), mark the flight lost (RFC 6675 5.1) and retransmit from SND.UNA;
    /// no fast recovery until SND.NXT as of now is acknowledged.
    fn on_rto(&mut self, now: Instant, cfg: &Config) {
        if self.timed_out(now, cfg.max_retries) {
            return;
        }
        // RFC 6298 5.5: back off the timer; 5.4: retransmit.
        self.rtt.back_off();
        if self.snd.wnd > 0 {
            // RFC 5681 3.1 equation 4 and a loss window of one segment.
            self.cc.on_rto(now, self.flight_size(), self.snd.mss);
        } else {
            // Against a zero window the retransmission is a window probe.
            self.pending.window_probe = true;
        }
        self.enter_loss_after_timeout();
    }

    /// The probe timeout (RFC 8985 7.2) if a tail loss probe may be sent now.
    fn pto(&self) -> Option<Duration> {
        let srtt = self.rtt.srtt()?;
        let eligible = self.opt.sack
            && self.rec.rack_tlp
            && self.rec.recovery_point.is_none()
            && self.rec.rto_point.is_none()
            && self.rec.tlp_end.is_none()
            // Against a zero window what is in flight is a window probe, timed by the
            // backed-off RTO (RFC 9293 3.8.6.1); a TLP could not be taken either.
            && self.snd.wnd > 0
            && matches!(self.state, TcpState::Established | TcpState::CloseWait);
        if !eligible {
            return None;
        }
        // PTO = 2*SRTT, plus the worst-case delayed ACK when only one segment is in
        // flight; at least 10 ms; only worth it below the RTO.
        let mut pto = srtt * 2;
        if self.sent.len() == 1 {
            pto += Duration::from_millis(200);
        }
        let pto = pto.max(Duration::from_millis(10));
        (pto < self.rtt.rto()).then_some(pto)
    }

    /// Restart the retransmission timer: the probe timeout while a tail loss probe may
    /// help, else the RTO.
    pub(super) fn rearm_rtx(&mut self, now: Instant) {
        match self.pto() {
            Some(p) => self.timers.set(Timer::TailLossProbe, now + p),
            None => self.timers.set(Timer::Rto, self.rto_deadline(now)),
        }
    }

    /// When the retransmission timer armed at `now` fires: after the RTO, or at the
    /// user timeout's deadline if that comes first. The user timeout (RFC 5482, RFC
    /// 9293 3.8.3) bounds how long data may stay unacknowledged, counted from the first
    /// transmission of the oldest unacknowledged segment; it is checked when the timer
    /// fires (`timed_out`), so without the cut a backed-off RTO could overshoot it by
    /// up to a whole RTO. Linux cuts the RTO the same way
    /// (`tcp_clamp_rto_to_user_timeout`).
    fn rto_deadline(&self, now: Instant) -> Instant {
        let at = now + self.rtt.rto();
        match self.user_timeout_deadline() {
            Some(d) => at.min(d.max(now)),
            None => at,
        }
    }

    /// When the user timeout ends the connection, if one is set and data is in flight.
    fn user_timeout_deadline(&self) -> Option<Instant> {
        Some(self.sent.front()?.first_tx + self.user_timeout?)
    }

    /// Start the retransmission timer unless it is running (RFC 6298 5.1).
    pub(super) fn arm_rtx(&mut self, now: Instant) {
        if self.timers.retransmission().is_none() {
            self.rearm_rtx(now);
        }
    }

    /// After sending new data (RFC 8985 7.2: (re)schedule the PTO; RFC 6298 5.1: a
    /// running RTO is left alone unless the PTO comes earlier).
    pub(super) fn arm_after_new_data(&mut self, now: Instant) {
        match (self.pto(), self.timers.retransmission()) {
            (Some(p), Some((t, d))) if t == Timer::TailLossProbe || now + p < d => {
                self.timers.set(Timer::TailLossProbe, now + p);
            }
            (_, None) => self.rearm_rtx(now),
            _ => {}
        }
    }

    /// The persist timer (RFC 9293 3.8.6.1 zero-window probes; the override timeout of
    /// sender SWS avoidance, 3.8.6.2.1): armed when unsent data is held back and nothing
    /// is in flight to clock it out, unless another use of the retransmission timer is
    /// armed. It fires after the RTO, which every expiry doubles (`on_persist_timer`):
    /// RFC 9293 3.8.6.1, the first probe SHOULD go out when the zero window has lasted
    /// a retransmission timeout, then exponential backoff; Linux arms its probe timer
    /// with the RTO too (`tcp_probe0_base`). Not the tail loss probe's timeout (RFC 8985
    /// 7.2, 2*SRTT): nothing is in flight, so there is no tail to lose, and a probe
    /// after 2*SRTT would push octets at a closed window many times sooner than the RFC
    /// asks (the persist timer used to share the PTO's arming).
    pub(super) fn arm_persist(&mut self, now: Instant) {
        if self.timers.retransmission().is_some() {
            return;
        }
        self.timers.set(Timer::Persist, now + self.rtt.rto());
    }

    /// Data went out at SND.NXT: a persist timer becomes the retransmission timer of
    /// what is now in flight (RFC 6298 5.1: it is already running), at most until the
    /// user timeout ends; `arm_after_new_data` may bring it forward to the PTO.
    pub(super) fn persist_to_retransmission(&mut self) {
        if let Some((Timer::Persist, at)) = self.timers.retransmission() {
            self.timers.set(Timer::Rto, self.user_timeout_deadline().map_or(at, |d| at.min(d)));
        }
    }

    /// The handshake was abandoned (shutdown or abort in SYN-SENT / SYN-RECEIVED, or a
    /// passive SYN-RECEIVED gone back to LISTEN) with its timer running: the timer goes
    /// on as the retransmission timer of what is outstanding, the SYN included.
    pub(super) fn handshake_timer_outlives_handshake(&mut self) {
        if let Some((Timer::Handshake, at)) = self.timers.retransmission() {
            let t = if self.snd.nxt > self.snd.una { Timer::Rto } else { Timer::Persist };
            self.timers.set(t, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_of_the_armed_timers() {
        let mut t = TimerTable::default();
        assert_eq!(t.earliest(), None);
        t.set(Timer::Close, Instant::from_millis(50));
        t.set(Timer::DelayedAck, Instant::from_millis(40));
        t.set(Timer::RackReorder, Instant::from_millis(45));
        assert_eq!(t.earliest(), Some(Instant::from_millis(40)));
        t.stop(Timer::DelayedAck);
        assert_eq!(t.earliest(), Some(Instant::from_millis(45)));
        assert!(!t.is_due(Timer::RackReorder, Instant::from_millis(44)));
        assert!(t.is_due(Timer::RackReorder, Instant::from_millis(45)));
        assert!(!t.is_due(Timer::DelayedAck, Instant::from_millis(100)), "stopped");
        assert_eq!(t.get(Timer::Close), Some(Instant::from_millis(50)));
        t.set_to(Timer::Close, None);
        assert_eq!(t.earliest(), Some(Instant::from_millis(45)));
        // The end of time (where deadlines saturate) is still a deadline.
        t.set(Timer::Close, Instant::from_micros(u64::MAX));
        assert_eq!(t.get(Timer::Close), Some(Instant::from_micros(u64::MAX - 1)));
    }

    #[test]
    fn the_uses_of_the_retransmission_timer_exclude_each_other() {
        let mut t = TimerTable::default();
        t.set(Timer::DelayedAck, Instant::from_millis(40));
        assert_eq!(t.retransmission(), None);
        t.set(Timer::TailLossProbe, Instant::from_millis(20));
        assert_eq!(t.retransmission(), Some((Timer::TailLossProbe, Instant::from_millis(20))));
        t.set(Timer::Rto, Instant::from_millis(200));
        assert_eq!(t.retransmission(), Some((Timer::Rto, Instant::from_millis(200))));
        assert_eq!(t.get(Timer::TailLossProbe), None);
        assert!(!t.is_due(Timer::TailLossProbe, Instant::from_millis(300)), "replaced");
        t.stop(Timer::TailLossProbe);
        assert_eq!(t.get(Timer::Rto), Some(Instant::from_millis(200)), "stopping another use changes nothing");
        assert_eq!(t.earliest(), Some(Instant::from_millis(40)));
        t.stop_retransmission();
        assert_eq!(t.retransmission(), None);
        assert_eq!(t.earliest(), Some(Instant::from_millis(40)), "the others are left alone");
    }
}
