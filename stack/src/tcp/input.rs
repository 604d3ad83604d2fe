//! Segment arrival (RFC 9293 3.10.7): what the connection does with each segment the
//! stack hands it (after the checksum, once the 4-tuple found this connection).
//!
//! [`Conn::process`] goes by state: SYN-SENT (3.10.7.3) in `process_syn_sent`, every
//! synchronized state (3.10.7.4) in `process_synchronized`, which runs the RFC's checks
//! in order: the sequence number (with PAWS, RFC 7323 5), RST (RFC 5961 3), SYN
//! (RFC 5961 4), the ACK field (`on_ack`: RFC 5681, RFC 6298, RFC 7323 4; SACK and loss
//! detection in `recovery.rs`), then the segment text and FIN
//! (`process_text_and_fin`). A SYN for a listening socket (LISTEN, 3.10.7.2) never
//! reaches a connection: the stack answers it by creating one with
//! [`Conn::accept_syn`] (conn.rs).

use std::time::Duration;

use crate::config::Config;
use crate::error::ConnError;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr};

use super::conn::{Conn, Reply, Verdict};
use super::reject::TcpReject;
use super::timer::Timer;
use super::TcpState;

/// RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);

impl Conn {
    /// RFC 9293 3.10.7.3 / 3.10.7.4. The caller has found this connection by its
    /// 4-tuple and verified the checksum.
    pub fn process(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> (Verdict, Reply) {
        match self.state {
            TcpState::Closed | TcpState::Listen => (Verdict::Rejected(TcpReject::Closed), Reply::None),
            TcpState::SynSent => self.process_syn_sent(now, cfg, seg),
            _ => self.process_synchronized(now, cfg, seg),
        }
    }

    fn process_syn_sent(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> (Verdict, Reply) {
        let f = seg.flags;
        let syn_end = self.snd.iss + 1;
        // First: the ACK bit (RFC 9293 3.10.7.3).
        let mut ack_ok = false;
        if f.ack() {
            if seg.ack <= self.snd.iss || seg.ack > syn_end {
                if f.rst() {
                    return (Verdict::Rejected(TcpReject::SynSentBadAckRst), Reply::None);
                }
                return (Verdict::Rejected(TcpReject::SynSentBadAck), Reply::Rst { seq: seg.ack, ack: None });
            }
            ack_ok = self.snd.syn_tx > 0;
        }
        // Second: RST. Only an acceptable ACK makes it credible.
        if f.rst() {
            if ack_ok {
                self.error = Some(ConnError::Refused);
                self.state = TcpState::Closed;
                self.timers.stop_retransmission();
                return (Verdict::Accepted, Reply::None);
            }
            return (Verdict::Rejected(TcpReject::SynSentRstNoAck), Reply::None);
        }
        // Fourth: SYN.
        if !f.syn() {
            return (Verdict::Rejected(TcpReject::SynSentNoSyn), Reply::None);
        }
        self.rcv.irs = seg.seq;
        self.rcv.nxt = seg.seq + 1;
        // Nothing acknowledged yet; the ACK we are about to send covers the SYN.
        self.rcv.last_ack_sent = self.rcv.nxt;
        self.apply_syn_options(now, &seg.options);
        self.snd.wnd = seg.window as usize; // RFC 7323 2.2: unscaled in a SYN
        self.snd.max_wnd = self.snd.wnd;
        self.snd.wl1 = seg.seq;
        self.snd.wl2 = seg.ack;
        // Nothing advertised yet: the right edge starts at RCV.NXT (rcv_wnd() would
        // otherwise honour a stale edge from before IRS was known).
        self.rcv.adv = self.rcv.nxt;
        self.rcv.adv = self.rcv.nxt + self.rcv_wnd();
        self.last_rx = now;
        if ack_ok {
            self.ack_syn(now, seg);
            self.state = TcpState::Established;
            self.pending.ack = true;
            // Data or FIN on the SYN-ACK: continue at the sixth step.
            let text = TcpRepr { seq: seg.seq + 1, flags: TcpFlags(f.0 & !TcpFlags::SYN.0), ..*seg };
            self.process_text_and_fin(now, cfg, &text);
            (Verdict::Accepted, Reply::None)
        } else {
            // Simultaneous open (RFC 9293 figure 8): SYN-RECEIVED, answer SYN-ACK by
            // rewinding snd_nxt so dispatch resends our SYN with ACK set.
            self.state = TcpState::SynReceived;
            self.snd.nxt = self.snd.iss;
            self.timers.stop_retransmission();
            (Verdict::Accepted, Reply::None)
        }
    }

    /// Our SYN is acknowledged.
    fn ack_syn(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if self.snd.syn_cookie {
            // A stateless SYN-ACK (RFC 4987 3.6): no send time, but its TSval was our
            // clock with the low bits replaced by the cookie's options (`syncookie`);
            // the echo with them cleared is at most 63 ms older than the send, so the
            // sample errs long, never short (like Linux's). Without timestamps no
            // sample (RFC 6298 5.7's treatment of an untimed SYN).
            match seg.options.timestamps {
                Some((_, tsecr)) if self.opt.ts && tsecr != 0 => {
                    let sent = tsecr & !((1 << super::syncookie::TS_BITS) - 1);
                    self.rtt.sample(Duration::from_millis(self.ts_now(now).wrapping_sub(sent) as u64));
                }
                _ => self.rtt.restart_after_syn_retransmission(),
            }
        } else if self.snd.syn_tx == 1 {
            let rtt = match seg.options.timestamps {
                Some((_, tsecr)) if self.opt.ts && tsecr != 0 => {
                    Duration::from_millis(self.ts_now(now).wrapping_sub(tsecr) as u64)
                }
                _ => now.saturating_duration_since(self.snd.syn_sent_at),
            };
            self.rtt.sample(rtt);
        } else if self.snd.syn_tx > 1 {
            // RFC 6298 5.7: the SYN was retransmitted.
            self.rtt.restart_after_syn_retransmission();
        }
        self.snd.una = self.snd.iss + 1;
        if self.snd.nxt < self.snd.una {
            self.snd.nxt = self.snd.una;
        }
        self.retries = 0;
        self.timers.stop_retransmission();
    }

    /// RFC 9293 3.10.7.4 sequence acceptability test (the table of four cases).
    fn acceptable(&self, seg: &TcpRepr<'_>) -> bool {
        let len = seg.seg_len();
        let wnd = self.rcv_wnd();
        let start = self.rcv.nxt;
        let end = self.rcv.nxt + wnd;
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv.nxt,
            (0, _) => seg.seq.in_range(start, end),
            (_, 0) => false,
            // RFC 9293's table tests the first and the last byte; a segment that covers
            // the whole window (starts before RCV.NXT, ends past the right edge) has
            // new bytes too, and "only the new parts are processed" (3.10.7.4). Like
            // Linux, any overlap with the window is acceptable.
            (_, _) => seg.seq.in_range(start, end) || start.in_range(seg.seq, seg.seq + len),
        }
    }

    fn process_synchronized(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> (Verdict, Reply) {
        let mut f = seg.flags;
        // The peer's window; RFC 7323 2.2: the window field of a SYN is never scaled.
        let win = (seg.window as usize) << if f.syn() { 0 } else { self.snd.wscale };

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost; send it again.
        if self.state == TcpState::SynReceived && f.syn() && !f.ack() && !f.rst() && seg.seq == self.rcv.irs {
            self.snd.nxt = self.snd.iss;
            return (Verdict::Accepted, Reply::None);
        }

        // Simultaneous open (RFC 9293 3.5, figure 8 line 6): SYN-RECEIVED from
        // SYN-SENT, and the peer's SYN-ACK repeats its SYN (SEG.SEQ = IRS, below
        // RCV.NXT: the sequence test would fail) and acknowledges ours. The SYN was
        // processed when it first came; "only the new parts are processed"
        // (3.10.7.4), and without it the segment starts at RCV.NXT: its ACK
        // establishes the connection (fifth check), its text, if any, is text. The
        // repeated SYN is a duplicate and is acknowledged. Linux does the same
        // (tcp_validate_incoming, "tcp: Don't drop SYN+ACK for simultaneous
        // connect()"); without it the connection waited for our SYN-ACK's
        // retransmission to draw the peer's ACK.
        let without_syn;
        let seg = if self.state == TcpState::SynReceived
            && self.active
            && f.syn()
            && f.ack()
            && !f.rst()
            && seg.seq == self.rcv.irs
            && seg.ack == self.snd.nxt
            && self.snd.nxt == self.snd.iss + 1
        {
            f = TcpFlags(f.0 & !TcpFlags::SYN.0);
            without_syn = TcpRepr { seq: seg.seq + 1, flags: f, ..*seg };
            self.pending.ack = true;
            &without_syn
        } else {
            seg
        };

        // PAWS (RFC 7323 5.3 R1): an old timestamp makes the segment unacceptable.
        if self.opt.ts && !f.rst() {
            if let Some((tsval, _)) = seg.options.timestamps {
                let recent_valid = now.saturating_duration_since(self.opt.ts_recent_at) < PAWS_IDLE;
                if recent_valid && (tsval.wrapping_sub(self.opt.ts_recent) as i32) < 0 {
                    self.ack_rejected(now, cfg, seg);
                    return (Verdict::Rejected(TcpReject::Paws), Reply::None);
                }
            }
        }

        // First: sequence number check.
        if !self.acceptable(seg) {
            // A zero window accepts no segment, "but special allowance should be made to
            // accept valid ACKs, URGs, and RSTs" (RFC 9293 3.10.7.4): RSTs and ACKs at
            // RCV.NXT, and the ACK field of any empty segment whose sequence number the
            // peer can be at: from RCV.NXT - 1 (a window probe, Linux's, RFC 9293
            // 3.8.6.1) to a buffer beyond RCV.NXT (its SND.NXT when data it sent is
            // missing here). While our window is closed those are all the ACKs the peer
            // sends; dropping them stalls both ways when our window stays closed
            // because what we sent is not acknowledged. Such a segment is still answered
            // (our window and RCV.NXT) unless it is exactly at RCV.NXT.
            let zero_wnd = self.rcv_wnd() == 0;
            let ack_only = zero_wnd
                && seg.payload.is_empty()
                && !f.syn()
                && !f.fin()
                && !f.rst()
                && f.ack()
                && seg.seq.in_range(self.rcv.nxt - 1, self.rcv.nxt + self.rx.capacity() + 1);
            if ack_only && seg.seq != self.rcv.nxt {
                self.pending.ack = true;
            }
            let zero_wnd_ctl = zero_wnd && (seg.seq == self.rcv.nxt || ack_only);
            if !zero_wnd_ctl {
                if f.rst() {
                    return (Verdict::Rejected(TcpReject::RstOutOfWindow), Reply::None);
                }
                if self.state == TcpState::TimeWait && f.fin() {
                    // The peer's FIN again: our ACK was lost. Re-ACK, restart 2*MSL.
                    self.timers.set(Timer::Close, now + 2 * cfg.msl);
                }
                self.ack_rejected(now, cfg, seg);
                return (Verdict::Rejected(TcpReject::OutOfWindow), Reply::None);
            }
        }
        self.last_rx = now;
        self.ka_probes = 0;

        // RFC 7323 4.3 (2): remember the peer's timestamp if the segment covers
        // Last.ACK.sent.
        if self.opt.ts {
            if let Some((tsval, _)) = seg.options.timestamps {
                if seg.seq <= self.rcv.last_ack_sent && (tsval.wrapping_sub(self.opt.ts_recent) as i32) >= 0 {
                    self.opt.ts_recent = tsval;
                    self.opt.ts_recent_at = now;
                }
            }
        }

        // Second: RST (RFC 9293 3.10.7.4 with RFC 5961 3.2).
        if f.rst() {
            if seg.seq != self.rcv.nxt {
                // In the window but not exact: challenge ACK.
                self.ack_rejected(now, cfg, seg);
                return (Verdict::Rejected(TcpReject::RstChallenge), Reply::None);
            }
            match self.state {
                TcpState::SynReceived if !self.active => {
                    // Passive open: back to LISTEN, i.e. this embryo just disappears.
                    self.state = TcpState::Closed;
                }
                TcpState::SynReceived => {
                    self.error = Some(ConnError::Refused);
                    self.state = TcpState::Closed;
                }
                TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2 | TcpState::CloseWait => {
                    self.error = Some(ConnError::Reset);
                    self.tx.clear();
                    self.state = TcpState::Closed;
                }
                _ => {
                    self.state = TcpState::Closed;
                }
            }
            self.timers.stop_retransmission();
            self.timers.stop(Timer::Close);
            self.pending.ack = false;
            return (Verdict::Accepted, Reply::None);
        }

        // Fourth: SYN in a synchronized state -> challenge ACK (RFC 5961 4.2, adopted by
        // RFC 9293 3.10.7.4).
        if f.syn() {
            if self.state == TcpState::SynReceived && !self.active {
                // RFC 9293: a passive SYN-RECEIVED returns to LISTEN.
                self.state = TcpState::Closed;
                self.handshake_timer_outlives_handshake();
                return (Verdict::Rejected(TcpReject::SynInSynReceived), Reply::None);
            }
            self.ack_rejected(now, cfg, seg);
            return (Verdict::Rejected(TcpReject::SynChallenge), Reply::None);
        }

        // Fifth: the ACK field.
        if !f.ack() {
            return (Verdict::Rejected(TcpReject::NoAck), Reply::None);
        }
        if self.state == TcpState::SynReceived {
            if self.snd.una < seg.ack && seg.ack <= self.snd.nxt && self.snd.syn_tx > 0 {
                self.ack_syn(now, seg);
                self.state = TcpState::Established;
                self.snd.wnd = win;
                self.snd.max_wnd = self.snd.max_wnd.max(self.snd.wnd);
                self.snd.wl1 = seg.seq;
                self.snd.wl2 = seg.ack;
            } else {
                return (Verdict::Rejected(TcpReject::SynReceivedBadAck), Reply::Rst { seq: seg.ack, ack: None });
            }
        }
        if seg.ack > self.snd.nxt {
            // Acknowledges something not yet sent: ACK and drop (RFC 9293 3.10.7.4).
            self.ack_rejected(now, cfg, seg);
            return (Verdict::Rejected(TcpReject::AckUnsent), Reply::None);
        }
        let had_fin_acked = self.close.fin_acked;
        self.on_ack(now, seg, win);
        if !had_fin_acked && self.close.fin_acked {
            match self.state {
                TcpState::FinWait1 => {
                    self.state = TcpState::FinWait2;
                    if self.orphan {
                        // An orphan cannot wait forever for the peer's FIN (Linux:
                        // tcp_fin_timeout); we give it 2*MSL.
                        self.timers.set(Timer::Close, now + 2 * cfg.msl);
                    }
                }
                TcpState::Closing => self.enter_time_wait(now, cfg),
                TcpState::LastAck => {
                    self.state = TcpState::Closed;
                    self.timers.stop_retransmission();
                    return (Verdict::Accepted, Reply::None);
                }
                _ => {}
            }
        }
        if self.state == TcpState::TimeWait {
            return (Verdict::Accepted, Reply::None);
        }

        // Sixth (URG) is not acted on: urgent data is delivered inline (RFC 6093).
        // Seventh and eighth: text and FIN.
        match self.process_text_and_fin(now, cfg, seg) {
            Some(r) => (Verdict::Accepted, r),
            None => (Verdict::Accepted, Reply::None),
        }
    }

    /// The ACK field of an acceptable segment in a synchronized state
    /// (RFC 9293 3.10.7.4 fifth check), with SACK (RFC 2018, RFC 6675), fast
    /// retransmit / recovery (RFC 5681 3.2, RFC 6582) and RTT measurement
    /// (RFC 6298, RFC 7323 4). `win` is the segment's window, scaled.
    fn on_ack(&mut self, now: Instant, seg: &TcpRepr<'_>, win: usize) {
        let before = self.before_ack();
        let advances = seg.ack > self.snd.una;
        if advances {
            let newly_acked = seg.ack - self.snd.una;
            let rtt = self.ack_advance(now, seg);
            self.after_cumulative_ack(now, seg.ack, newly_acked, rtt);
        } else if seg.ack == self.snd.una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && !self.sent.is_empty()
            && win == self.snd.wnd
        {
            // RFC 5681 2: a duplicate ACK.
            self.rec.dup_acks += 1;
        }
        let new_sack = self.opt.sack && self.on_sack_blocks(now, seg);
        self.detect_loss(now, new_sack);
        self.check_reneging(now);

        if self.snd.wnd == 0 && seg.ack == self.snd.una {
            // The peer answers our zero-window probes: it is alive, so the persist
            // state does not count towards the retransmission limit (RFC 9293 3.8.6.1).
            self.retries = 0;
        }
        // Window update (RFC 9293 3.10.7.4, fifth check, ESTABLISHED). Like Linux
        // (`tcp_may_update_window`), also from any segment whose ACK moves SND.UNA, even
        // with an older SEG.SEQ (a retransmission of the peer's, built with its current
        // ACK and window): keeping the old SND.WND while SND.UNA moves would slide the
        // right edge past the one the peer offered, and the data sent there is out of
        // its window.
        let newer = self.snd.wl1 < seg.seq || (self.snd.wl1 == seg.seq && self.snd.wl2 <= seg.ack);
        if self.snd.una <= seg.ack && (advances || newer) {
            let opened = self.snd.wnd == 0 && win > 0;
            self.snd.wnd = win;
            self.snd.max_wnd = self.snd.max_wnd.max(win);
            self.snd.wl1 = seg.seq;
            self.snd.wl2 = seg.ack;
            if opened && self.snd.zero_window_probe {
                self.take_back_window_probe();
            }
        }
        // What the ACK did, for congestion control (rate.rs).
        self.after_ack(now, before);
    }

    /// The peer's zero window opened while our window probe's octet is still
    /// unacknowledged (an ACK that covered it would have ended the probe in
    /// `ack_advance`): the peer did not take it, as a zero window accepts no segment
    /// text (RFC 9293 3.10.7.4), so nothing is in flight. Take it back: SND.NXT returns
    /// to SND.UNA and the octet goes out again with the data after it, in full-sized
    /// segments (repacketization, RFC 1122 4.2.2.15). Otherwise the octet, alone in
    /// flight, held the rest back under Nagle (RFC 9293 3.7.4) until its retransmission
    /// timer fired, a backed-off RTO later, and that timeout collapsed the congestion
    /// window. The probe's backoff ends too (RFC 9293 3.8.6.1: the probes are over), as
    /// Linux's `tcp_ack_probe` does; Linux's probes carry no new octet, so the data
    /// simply goes out from SND.UNA.
    fn take_back_window_probe(&mut self) {
        self.snd.zero_window_probe = false;
        self.sent.clear();
        self.snd.nxt = self.snd.una;
        if self.close.fin_seq.is_some_and(|f| f >= self.snd.una) {
            self.close.fin_seq = None;
        }
        self.rec.rto_point = None;
        self.rec.tlp_end = None;
        self.rec.dup_acks = 0;
        self.pending.window_probe = false;
        self.timers.stop_retransmission();
        self.rtt.end_backoff();
    }

    /// New data acknowledged: `snd_una < ack <= snd_nxt`. Returns an RTT sample.
    fn ack_advance(&mut self, now: Instant, seg: &TcpRepr<'_>) -> Option<Duration> {
        let ack = seg.ack;
        // RTT: Karn's rule on the newest fully acknowledged segment sent exactly once
        // (RFC 6298 3); the echoed timestamp (RFC 7323 4.1) only when no retransmitted
        // segment is covered. An ACK of a retransmission can echo the timestamp of an
        // earlier copy (RFC 7323 4.3 keeps TS.Recent for duplicates), which would
        // inflate the estimate exactly when losses pile up; Linux prefers the
        // sequence-based sample for the same reason.
        let mut karn: Option<Duration> = None;
        let mut retransmitted = false;
        let min_rtt = self.rtt.min_rtt();
        let mut fin_acked = false;
        let data_acked = self.sent.acknowledge(ack, |e| {
            if !e.is_sacked() {
                // Delivered now (a SACKed one was counted when its SACK came).
                self.rate.on_delivered(now, e.len as usize, e.last_tx, &e.rate);
                if !e.ambiguous(now, min_rtt) {
                    self.rec.rack.update(now, e.last_tx, e.end());
                }
            }
            if e.tx_count > 1 {
                retransmitted = true;
            } else if !e.is_sacked() {
                // A segment SACKed earlier was timed when its SACK came.
                karn = Some(now.saturating_duration_since(e.last_tx));
            }
            fin_acked |= e.fin;
        });
        if fin_acked {
            self.close.fin_acked = true;
        }
        self.tx.drain_acked(data_acked);
        self.bytes_acked += data_acked as u64;
        self.snd.una = ack;
        self.retries = 0;
        self.pending.window_probe = false;
        self.snd.zero_window_probe = false;
        // Like Linux (FLAG_RETRANS_DATA_ACKED): an ACK that covers any retransmitted
        // segment gives no sample at all; the segments above the hole it fills were
        // held up by the loss, not by the path.
        if retransmitted {
            karn = None;
        }
        let rtt = match (karn, seg.options.timestamps) {
            (Some(k), _) => Some(k),
            (None, Some((_, tsecr))) if self.opt.ts && tsecr != 0 && !retransmitted => {
                Some(Duration::from_millis(self.ts_now(now).wrapping_sub(tsecr) as u64))
            }
            _ => None,
        };
        match rtt {
            Some(r) => self.rtt.sample(r),
            None => {
                // Forward progress ends the exponential backoff even without a fresh
                // sample (what Linux does): otherwise, when every acknowledged segment
                // had been retransmitted, RFC 6298 5.7's "keep the backed-off RTO"
                // leaves a lossy path at RTO_max indefinitely.
                self.rtt.end_backoff();
            }
        }
        if self.rec.tlp_end.is_some_and(|e| self.snd.una >= e) {
            self.rec.tlp_end = None;
        }
        // RFC 6298 5.2 / 5.3: stop the timer when everything is acknowledged, else restart.
        if self.snd.una == self.snd.nxt {
            self.timers.stop_retransmission();
        } else {
            self.rearm_rtx(now);
        }
        rtt
    }

    /// RFC 9293 3.10.7.4, seventh (segment text) and eighth (FIN) checks.
    ///
    /// Segments are processed in sequence (3.10.7.4): out-of-order text waits in the
    /// receive buffer, and an out-of-order FIN waits with it (`fin_pending`) until
    /// RCV.NXT reaches it, as in Linux, whose out-of-order queue keeps the FIN with
    /// the segment that carried it. Dropping it instead left the end of the stream
    /// unacknowledged once the hole filled, until the peer sent the FIN again.
    fn process_text_and_fin(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> Option<Reply> {
        let receiving = matches!(self.state, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2);
        let occupies = !seg.payload.is_empty() || seg.flags.fin();
        if !receiving || self.close.fin_received {
            if occupies {
                self.pending.ack = true;
            }
            return None;
        }
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        // FIN position: just after the payload.
        let fin_at = seg.flags.fin().then(|| seg.seq + seg.payload.len());
        // Trim what we already have (anything before RCV.NXT is a duplicate).
        if seq < self.rcv.nxt {
            let dup = (self.rcv.nxt - seq).min(payload.len());
            payload = &payload[dup..];
            seq += dup;
        }
        if payload.is_empty() && seq < self.rcv.nxt {
            seq = self.rcv.nxt;
        }
        // Trim to the window.
        let wnd = self.rcv_wnd();
        let room = if seq >= self.rcv.nxt { (self.rcv.nxt + wnd).diff(seq).max(0) as usize } else { 0 };
        if payload.len() > room {
            payload = &payload[..room];
        }
        // The FIN takes one sequence number, which must lie inside the window too
        // (RFC 9293 3.10.7.4: a zero window accepts no segment text, FIN included).
        let fin_fits = payload.len() < room;
        // With the peer's FIN already waiting beyond RCV.NXT, the stream ends there:
        // octets at or past it are not part of it and are not kept.
        if let Some(end) = self.close.fin_pending {
            let keep = if seq < end { (end - seq).min(payload.len()) } else { 0 };
            payload = &payload[..keep];
        }
        // The segment's FIN counts (eighth check) if it is in the window, not old,
        // agrees with a FIN already waiting (a FIN elsewhere contradicts it: the first
        // one stands), and no out-of-order data is held beyond it (which would
        // contradict it too: such a FIN is acknowledged, not processed, as before).
        let fin = fin_at.filter(|&f| {
            fin_fits
                && f >= self.rcv.nxt
                && self.close.fin_pending.is_none_or(|p| p == f)
                && self.rx.out_of_order_end().is_none_or(|e| e <= f)
        });
        if !payload.is_empty() && self.orphan {
            // Data for a socket nobody will read (RFC 9293 3.10.4 / RFC 2525 2.17).
            self.error = Some(ConnError::Aborted);
            self.state = TcpState::Closed;
            self.timers.stop_retransmission();
            return Some(Reply::Rst { seq: self.snd.nxt, ack: None });
        }
        let had_ooo = self.rx.has_out_of_order() || self.close.fin_pending.is_some();
        if fin.is_some() {
            self.close.fin_pending = fin;
        }
        let mut advanced = 0;
        if !payload.is_empty() {
            if self.close.rd_shut {
                // Read side shut: acknowledge and discard in-order data.
                if seq == self.rcv.nxt {
                    advanced = payload.len();
                }
            } else {
                advanced = self.rx.write(self.rcv.nxt, seq, payload);
            }
            self.rcv.nxt += advanced;
            self.bytes_received += advanced as u64;
            if advanced > 0 {
                self.rcv_rtt_on_data(now, seg);
            }
        }
        // The FIN takes effect when RCV.NXT reaches it: with this segment's text, or
        // now that this segment filled the last hole before a FIN that came early.
        // (Nothing beyond a waiting FIN is kept, so RCV.NXT never passes it.)
        let fin_now = self.close.fin_pending == Some(self.rcv.nxt);
        if fin_now {
            self.close.fin_pending = None;
        }
        // ACK policy (RFC 5681 4.2, RFC 9293 3.8.6.3): at once for out-of-order data
        // (a FIN waiting beyond a hole included), for data that fills a hole, for
        // duplicates; otherwise at least every second full-sized segment, else within
        // the delayed-ACK timeout.
        if occupies {
            let immediate = advanced == 0
                || had_ooo
                || self.rx.has_out_of_order()
                || self.close.fin_pending.is_some()
                || self.ack_delay.is_none()
                || self.rcv.nxt.diff(self.rcv.last_ack_sent) >= 2 * self.rcv.mss.min(self.snd.mss) as i32;
            if immediate {
                self.pending.ack = true;
                // Out-of-order data held: a duplicate ACK, sent on its own.
                self.pending.dup_ack |= self.rx.has_out_of_order();
            } else if self.timers.get(Timer::DelayedAck).is_none() {
                if let Some(d) = self.ack_delay {
                    self.timers.set(Timer::DelayedAck, now + d);
                }
            }
        }
        if fin_now {
            self.rcv.nxt += 1;
            self.close.fin_received = true;
            self.pending.ack = true;
            match self.state {
                TcpState::Established => self.state = TcpState::CloseWait,
                TcpState::FinWait1 => {
                    // Our FIN not yet acknowledged (else we'd be in FIN-WAIT-2):
                    // simultaneous close.
                    self.state = TcpState::Closing;
                }
                TcpState::FinWait2 => self.enter_time_wait(now, cfg),
                _ => {}
            }
        } else if fin_at.is_some() {
            self.pending.ack = true;
        }
        if self.rcv.adv < self.rcv.nxt {
            // The peer used room we had but not yet announced (the application read
            // since our last window): the advertised edge is at least where we are.
            self.rcv.adv = self.rcv.nxt;
        }
        None
    }

    /// Answer a rejected segment with an ACK (a challenge ACK, RFC 5961 3.2 / 4.2, or
    /// the ACK RFC 9293 3.10.7.4 asks for), at most one per
    /// `Config::challenge_ack_interval` (RFC 5961 7; Linux's `tcp_invalid_ratelimit`),
    /// so that forged segments cannot make us flood. A segment carrying data or a FIN
    /// is always answered (it is not part of an ACK loop, and its sender needs the
    /// ACK to recover), as in Linux's `tcp_oow_rate_limited`.
    fn ack_rejected(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) {
        let limited = seg.seg_len() == 0 || seg.flags.syn();
        if let (true, Some(interval)) = (limited, cfg.challenge_ack_interval) {
            if self.last_oow_ack.is_some_and(|t| now < t + interval) {
                self.acks_rate_limited += 1;
                return;
            }
            self.last_oow_ack = Some(now);
        }
        self.pending.ack = true;
    }

    fn enter_time_wait(&mut self, now: Instant, cfg: &Config) {
        // RFC 9293 3.10.7.4: TIME-WAIT lasts 2*MSL.
        self.state = TcpState::TimeWait;
        self.timers.set(Timer::Close, now + 2 * cfg.msl);
        self.timers.stop_retransmission();
        self.timers.stop(Timer::DelayedAck);
    }
}
