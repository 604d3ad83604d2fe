//! The connection's timers: one named slot per purpose in a small table.

use crate::time::Instant;

/// One timer of a connection. The first four are the uses of RFC 6298's retransmission
/// timer and exclude each other (at most one is armed; see
/// [`TimerTable::arm_retransmission`]).
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
}

impl Timer {
    const COUNT: usize = 7;
    /// The uses of the retransmission timer, which exclude each other.
    const RETRANSMISSION: [Timer; 4] = [Timer::Handshake, Timer::Rto, Timer::TailLossProbe, Timer::Persist];
}

/// When each [`Timer`] fires, if armed. `earliest` runs for every packet (the stack
/// re-files the connection's deadline after each event), so the table is a fixed array
/// of microsecond counts with `u64::MAX` for "not armed" and its minimum is a scan.
#[derive(Clone, Debug)]
pub(crate) struct TimerTable {
    at: [u64; Timer::COUNT],
}

/// The `at` value of a timer that is not armed.
const UNARMED: u64 = u64::MAX;

impl Default for TimerTable {
    fn default() -> TimerTable {
        TimerTable { at: [UNARMED; Timer::COUNT] }
    }
}

#[inline(always)]
fn decode(at: u64) -> Option<Instant> {
    (at != UNARMED).then_some(Instant::from_micros(at))
}

impl TimerTable {
    #[inline]
    pub fn get(&self, t: Timer) -> Option<Instant> {
        decode(self.at[t as usize])
    }

    /// Arm `t` at `at` (a deadline at the very end of time, where `Instant + Duration`
    /// saturates, is kept one microsecond earlier so it still reads as armed).
    #[inline]
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = at.total_micros().min(UNARMED - 1);
    }

    /// Arm `t` at `at`, or stop it if `at` is `None`.
    #[inline]
    pub fn set_to(&mut self, t: Timer, at: Option<Instant>) {
        match at {
            Some(at) => self.set(t, at),
            None => self.stop(t),
        }
    }

    #[inline]
    pub fn stop(&mut self, t: Timer) {
        self.at[t as usize] = UNARMED;
    }

    /// Armed and due at `now`.
    #[inline]
    pub fn is_due(&self, t: Timer, now: Instant) -> bool {
        let at = self.at[t as usize];
        at != UNARMED && now.total_micros() >= at
    }

    /// The earliest armed timer's deadline.
    #[inline]
    pub fn earliest(&self) -> Option<Instant> {
        decode(self.at.iter().fold(UNARMED, |m, &at| m.min(at)))
    }

    /// The armed use of the retransmission timer, if any.
    #[inline]
    pub fn retransmission(&self) -> Option<(Timer, Instant)> {
        Timer::RETRANSMISSION.iter().find_map(|&t| self.get(t).map(|at| (t, at)))
    }

    /// Arm `t`, one of the uses of the retransmission timer, and stop the others.
    #[inline]
    pub fn arm_retransmission(&mut self, t: Timer, at: Instant) {
        self.stop_retransmission();
        self.set(t, at);
    }

    /// Stop whichever use of the retransmission timer is armed.
    #[inline]
    pub fn stop_retransmission(&mut self) {
        for t in Timer::RETRANSMISSION {
            self.stop(t);
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
        t.arm_retransmission(Timer::TailLossProbe, Instant::from_millis(20));
        assert_eq!(t.retransmission(), Some((Timer::TailLossProbe, Instant::from_millis(20))));
        t.arm_retransmission(Timer::Rto, Instant::from_millis(200));
        assert_eq!(t.retransmission(), Some((Timer::Rto, Instant::from_millis(200))));
        assert_eq!(t.get(Timer::TailLossProbe), None);
        assert_eq!(t.earliest(), Some(Instant::from_millis(40)));
        t.stop_retransmission();
        assert_eq!(t.retransmission(), None);
        assert_eq!(t.earliest(), Some(Instant::from_millis(40)), "the others are left alone");
    }
}
