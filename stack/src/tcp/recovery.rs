//! Loss detection and recovery on top of the scoreboard (`scoreboard.rs`):
//!
//! - SACK processing: the peer's blocks mark segments SACKed (RFC 2018, the RFC 6675
//!   update), and give RTT and RACK samples;
//! - loss detection after each ACK: RACK (RFC 8985 6), RFC 6675 4 IsLost (DupThresh
//!   SACKed segments above a hole), fast retransmit after DupThresh duplicate ACKs
//!   (RFC 5681 3.2) and the NewReno partial ACK (RFC 6582 3.2 step 4);
//! - fast recovery: entered once per episode (RFC 6675 5, RFC 6582), left on the full
//!   acknowledgment;
//! - what a retransmission timeout marks lost (RFC 6675 5.1, RFC 8985), and SACK
//!   reneging (RFC 2018 8): the receiver may discard data it SACKed, so SACK marks are
//!   advice and the segment at SND.UNA is always resent after a timeout.
//!
//! Only segments marked lost are retransmitted (by `output.rs`); the timers that drive
//! RACK and the tail loss probe are in `timer.rs`.

use std::time::Duration;

use crate::seq::SeqNum;
use crate::time::Instant;
use crate::wire::TcpRepr;

use super::congestion::CongestionControl;
use super::conn::Conn;
use super::scoreboard::SegState;
use super::timer::Timer;

/// RFC 5681 3.2 / RFC 6675 2: DupThresh.
const DUP_THRESH: u32 = 3;
/// The least time given to a receiver that seems to have reneged on its SACKs before
/// the retransmission timeout (Linux: max(SRTT/2, 10 ms)).
const RENEGING_WAIT_MIN: Duration = Duration::from_millis(10);

/// Loss recovery state besides the scoreboard: fast recovery (RFC 6675, RFC 6582), the
/// timeout's recovery point, RACK-TLP (RFC 8985).
#[derive(Clone, Copy, Debug)]
pub(super) struct Recovery {
    /// In fast recovery until SND.UNA reaches this (RFC 6675 RecoveryPoint).
    pub recovery_point: Option<SeqNum>,
    /// After a timeout: no new fast recovery for losses below this point.
    pub rto_point: Option<SeqNum>,
    /// Duplicate ACKs in a row (RFC 5681 2).
    pub dup_acks: u32,
    /// The first retransmission of a recovery episode goes out regardless of cwnd
    /// (RFC 6675 5 step 4.2, RFC 5681 3.2 step 2).
    pub rtx_force: bool,
    /// RACK.xmit_ts / RACK.end_seq / RACK.rtt (RFC 8985 6.1).
    pub rack: Rack,
    /// Sequence space up to which a tail loss probe is outstanding: one probe per
    /// episode (RFC 8985 7.2).
    pub tlp_end: Option<SeqNum>,
    /// RACK-TLP in use (`Config::rack_tlp`; it needs SACK too).
    pub rack_tlp: bool,
}

impl Recovery {
    pub fn new(iss: SeqNum, rack_tlp: bool) -> Recovery {
        Recovery {
            recovery_point: None,
            rto_point: None,
            dup_acks: 0,
            rtx_force: false,
            rack: Rack { xmit: None, end_seq: iss, rtt: Duration::ZERO },
            tlp_end: None,
            rack_tlp,
        }
    }
}

/// RACK.xmit_ts / RACK.end_seq / RACK.rtt (RFC 8985 6.1): the most recently sent
/// segment known delivered, and the RTT it measured.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rack {
    pub xmit: Option<Instant>,
    pub end_seq: SeqNum,
    pub rtt: Duration,
}

impl Rack {
    /// RFC 8985 6.2 step 2: remember the most recently sent segment known delivered.
    pub fn update(&mut self, now: Instant, xmit: Instant, end: SeqNum) {
        let newer = match self.xmit {
            None => true,
            Some(t) => xmit > t || (xmit == t && end > self.end_seq),
        };
        if newer {
            self.xmit = Some(xmit);
            self.end_seq = end;
            self.rtt = now.saturating_duration_since(xmit);
        }
    }
}

impl Conn {
    /// After a cumulative ACK of `newly_acked` bytes up to `ack`: a full acknowledgment
    /// ends fast recovery (RFC 6582 3.2 step 3), a partial one without SACK marks the
    /// next hole lost (step 4); outside recovery the congestion window grows.
    pub(super) fn after_cumulative_ack(
        &mut self,
        now: Instant,
        ack: SeqNum,
        newly_acked: usize,
        rtt: Option<Duration>,
    ) {
        if let Some(rp) = self.rec.recovery_point {
            if ack >= rp {
                // Full acknowledgment: recovery is over (RFC 6582 3.2 step 3).
                self.rec.recovery_point = None;
                self.cc.on_recovery_exit(now, self.flight_size(), self.snd.mss);
            } else if !self.opt.sack {
                // NewReno partial ACK (RFC 6582 3.2 step 4): the next hole is lost.
                self.mark_front_lost();
                self.rec.rtx_force = true;
            }
        } else {
            let rtt = rtt.or(self.rtt.srtt());
            self.cc.on_ack(now, newly_acked, rtt, self.snd.mss);
        }
        if self.rec.rto_point.is_some_and(|p| ack >= p) {
            self.rec.rto_point = None;
        }
        self.rec.dup_acks = 0;
    }

    /// SACK blocks (RFC 2018 / RFC 6675 update). A segment sent once and SACKed now
    /// gives an RTT sample (the SACK is its acknowledgment). Returns whether anything
    /// was newly SACKed.
    pub(super) fn on_sack_blocks(&mut self, now: Instant, seg: &TcpRepr<'_>) -> bool {
        let mut new_sack = false;
        let mut newest: Option<Instant> = None;
        for &(l, r) in seg.options.sack.as_slice() {
            new_sack |= self.mark_sacked(now, l, r, &mut newest);
        }
        if seg.ack <= self.snd.una {
            if let Some(sent) = newest {
                self.rtt.sample(now.saturating_duration_since(sent));
            }
        }
        new_sack
    }

    /// Loss detection after an ACK (RFC 8985 RACK, RFC 6675 5, RFC 5681 3.2), and fast
    /// recovery if it finds a loss.
    pub(super) fn detect_loss(&mut self, now: Instant, new_sack: bool) {
        if self.sent.is_empty() {
            return;
        }
        let mut lost = self.opt.sack && self.rec.rack_tlp && self.rack_detect_loss(now);
        if new_sack {
            lost |= self.mark_lost_by_sack();
        }
        if self.rec.recovery_point.is_none() && self.rec.rto_point.is_none() && self.rec.dup_acks >= DUP_THRESH {
            lost |= self.mark_front_lost();
        }
        self.maybe_enter_recovery(now, lost);
    }

    /// Mark the scoreboard entries inside a SACK block. Returns whether anything was
    /// newly SACKed.
    fn mark_sacked(&mut self, now: Instant, left: SeqNum, right: SeqNum, newest_once: &mut Option<Instant>) -> bool {
        // RFC 2018 / RFC 6675: ignore blocks outside what is outstanding.
        if right <= left || left < self.snd.una || right > self.snd.nxt {
            return false;
        }
        let min_rtt = self.rtt.min_rtt();
        let rate = &mut self.rate;
        let mut best: Option<(Instant, SeqNum)> = None;
        let any = self.sent.sack(left, right, |e| {
            rate.on_delivered(now, e.len as usize, e.last_tx, &e.rate);
            if e.tx_count == 1 {
                *newest_once = Some(newest_once.map_or(e.last_tx, |t| t.max(e.last_tx)));
            }
            // RFC 8985 6.2 step 2: a retransmitted segment delivered faster than
            // min_rtt was the original copy: ambiguous, not a RACK sample.
            if !e.ambiguous(now, min_rtt) && best.is_none_or(|(t, end)| (e.last_tx, e.end()) > (t, end)) {
                best = Some((e.last_tx, e.end()));
            }
        });
        if let Some((t, end)) = best {
            self.rec.rack.update(now, t, end);
        }
        any
    }

    /// RFC 6675 4 IsLost: a segment is lost when DupThresh segments, or more than
    /// (DupThresh - 1) * SMSS bytes, above it are SACKed. Returns whether any segment
    /// was newly marked.
    fn mark_lost_by_sack(&mut self) -> bool {
        let mut sacked_segs = 0u32;
        let mut sacked_bytes = 0usize;
        let mut any = false;
        let limit = (DUP_THRESH as usize - 1) * self.snd.mss;
        for i in (0..self.sent.len()).rev() {
            let Some(e) = self.sent.get(i) else { continue };
            if e.is_sacked() {
                sacked_segs += 1;
                sacked_bytes += e.len as usize;
                continue;
            }
            if e.state == SegState::Outstanding && (sacked_segs >= DUP_THRESH || sacked_bytes > limit) {
                self.sent.mark_lost(i);
                any = true;
            }
        }
        any
    }

    /// Mark the first unacknowledged segment lost (fast retransmit, NewReno partial
    /// ACK). Returns whether it was newly marked.
    fn mark_front_lost(&mut self) -> bool {
        self.sent.mark_lost(0)
    }

    /// Loss found outside recovery: enter fast recovery (RFC 6675 5 step 4, RFC 6582),
    /// reduce the window once for the episode, retransmit at once.
    pub(super) fn maybe_enter_recovery(&mut self, now: Instant, lost: bool) {
        if self.rec.recovery_point.is_none() && self.rec.rto_point.is_none() && (lost || self.sent.lost_out() > 0) {
            self.rec.recovery_point = Some(self.snd.nxt);
            self.cc.on_congestion_event(now, self.flight_size(), self.snd.mss);
            self.rec.rtx_force = true;
            self.rec.tlp_end = None;
        }
    }

    /// RFC 8985 6.2 step 5 (RACK_detect_loss): a segment sent before the most recently
    /// delivered one, and outstanding for longer than RACK.rtt + reo_wnd, is lost; for
    /// the others the reordering timer is armed. "Sent before" compares transmit times:
    /// when the most recently delivered segment is a retransmission, segments above it
    /// in sequence, sent before that retransmission, qualify too (they are what an ACK
    /// for a repaired hole leaves outstanding at the tail). The scan stops at the first
    /// segment sent once after RACK.xmit_ts: everything above it went out later still.
    /// So a clean transfer scans nothing. Returns whether anything was newly marked.
    pub(super) fn rack_detect_loss(&mut self, now: Instant) -> bool {
        let Some(xmit) = self.rec.rack.xmit else { return false };
        // 6.2 step 4: the reordering window, a quarter of min_rtt.
        let reo_wnd = self.rtt.min_rtt().unwrap_or(Duration::ZERO) / 4;
        let wait = self.rec.rack.rtt + reo_wnd;
        let mut next: Option<Instant> = None;
        let mut any = false;
        for i in 0..self.sent.len() {
            let Some(e) = self.sent.get(i) else { break };
            let before = e.last_tx < xmit || (e.last_tx == xmit && e.end() <= self.rec.rack.end_seq);
            if !before {
                if e.tx_count == 1 {
                    break;
                }
                continue;
            }
            if matches!(e.state, SegState::Sacked | SegState::Lost) {
                continue;
            }
            let due = e.last_tx + wait;
            if now >= due {
                self.sent.mark_lost(i);
                any = true;
            } else {
                next = Some(next.map_or(due, |n: Instant| n.min(due)));
            }
        }
        self.timers.set_to(Timer::RackReorder, next);
        any
    }

    /// SACK reneging (RFC 2018 8: SACK information is advisory, the receiver may
    /// discard data it SACKed). After an ACK, the segment at SND.UNA is marked SACKed
    /// although the cumulative ACK stops there: the receiver no longer holds it. RACK,
    /// IsLost and fast retransmit never mark a SACKed segment lost, so none of them can
    /// resend it. Like Linux (tcp_check_sack_reneging), give the receiver
    /// max(SRTT/2, 10 ms) to send ACKs that set the picture right, then let the
    /// retransmission timeout resend from SND.UNA (`Scoreboard::mark_lost_on_timeout`
    /// forgets the SACK marks). The timer is only ever brought forward, so a stream of
    /// such ACKs cannot postpone it.
    pub(super) fn check_reneging(&mut self, now: Instant) {
        if !self.sent.front().is_some_and(|e| e.is_sacked()) {
            return;
        }
        let wait = (self.rtt.srtt().unwrap_or(Duration::ZERO) / 2).max(RENEGING_WAIT_MIN);
        let at = now + wait;
        if self.timers.retransmission().is_none_or(|(_, d)| d > at) {
            self.timers.set(Timer::Rto, at);
        }
    }

    /// What a retransmission timeout does to recovery (RFC 6675 5.1, RFC 6298 5.4,
    /// RFC 8985 6.3): the flight is lost and is resent from SND.UNA, SACKed or not (a
    /// SACKed SND.UNA means the receiver reneged: then every SACK mark is dropped); fast
    /// recovery and tail loss probes wait until SND.NXT as of now is acknowledged.
    pub(super) fn enter_loss_after_timeout(&mut self) {
        self.sent.mark_lost_on_timeout();
        self.rec.recovery_point = None;
        self.rec.rto_point = Some(self.snd.nxt);
        self.rec.dup_acks = 0;
        self.rec.rtx_force = true;
        self.rec.tlp_end = None;
        self.pending.tail_loss_probe = false;
        self.timers.stop(Timer::RackReorder);
    }
}
