//! Segment output. [`Conn::dispatch`] builds at most one segment per call, in this
//! order: the SYN or SYN-ACK (RFC 9293 3.10.1, 3.10.7.2); a tail loss probe (RFC 8985
//! 7.3); a retransmission of what the scoreboard marks lost (RFC 6675 NextSeg rule 1);
//! new data within the peer's window and the congestion window, with sender SWS
//! avoidance (RFC 9293 3.8.6.2.1), Nagle (RFC 896, RFC 9293 3.7.4) and zero-window
//! probes (3.8.6.1); our FIN; a keepalive probe (3.8.4); a pure ACK.
//!
//! Data segments (new and retransmitted) leave no faster than the pacer allows
//! (`pacing.rs`); each takes a delivery-rate snapshot (`rate.rs`).
//!
//! Every segment but the SYN carries ACK = RCV.NXT and our window, never moving its
//! right edge left (3.8.6; scaled by RFC 7323 2), timestamps (RFC 7323 3) and, on pure
//! ACKs, SACK blocks (RFC 2018 4). Payload is copied from the send buffer into the
//! caller's scratch buffer; new segments go on the scoreboard.

use crate::seq::SeqNum;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpOptions};

use super::congestion::CongestionControl;
use super::conn::{Conn, Outgoing};
use super::timer::Timer;
use super::TcpState;

impl Conn {
    /// Whether the connection may have a segment to send (a cheap over-approximation;
    /// `dispatch` decides).
    pub fn wants_to_send(&self) -> bool {
        match self.state {
            TcpState::Closed | TcpState::Listen => false,
            TcpState::SynSent | TcpState::SynReceived => self.snd.nxt == self.snd.iss || self.pending.ack,
            _ => {
                self.pending.ack
                    || self.pending.window_probe
                    || self.pending.keepalive_probe
                    || self.pending.tail_loss_probe
                    || self.sent.lost_out() > 0
                    || self.snd.nxt < self.data_end()
                    || (self.close.fin_queued && self.close.fin_seq.is_none())
            }
        }
    }

    /// Build the next segment, copying its payload into `scratch` (at least one MSS
    /// long). At most one segment per call; call again while it returns `Some`.
    pub fn dispatch(&mut self, now: Instant, scratch: &mut [u8]) -> Option<Outgoing> {
        match self.state {
            TcpState::Closed | TcpState::Listen => return None,
            TcpState::SynSent | TcpState::SynReceived if self.snd.nxt == self.snd.iss => {
                return Some(self.emit_syn(now));
            }
            TcpState::SynSent => return None,
            TcpState::SynReceived | TcpState::TimeWait => {
                return self.emit_ack_if_pending(now);
            }
            _ => {}
        }
        // A duplicate ACK goes out on its own, before any data (RFC 5681 4.2).
        if self.pending.dup_ack {
            self.pending.dup_ack = false;
            if let Some(out) = self.emit_ack_if_pending(now) {
                return Some(out);
            }
        }
        // 0. A tail loss probe (RFC 8985 7.3).
        if self.pending.tail_loss_probe {
            self.pending.tail_loss_probe = false;
            if let Some(out) = self.emit_tail_loss_probe(now, scratch) {
                return Some(out);
            }
        }
        // Data waits for the pacer (pacing.rs), except a recovery's first retransmission.
        let paced_ok = self.pacing_allows(now);
        // 1. Retransmit what is marked lost.
        if paced_ok || self.rec.rtx_force {
            if let Some(out) = self.emit_retransmission(now, scratch) {
                return Some(out);
            }
        }
        // 2. New data, within the peer's window and the congestion window.
        if paced_ok {
            if let Some(out) = self.emit_new_data(now, scratch) {
                return Some(out);
            }
        }
        // 3. A FIN on its own.
        if let Some(out) = self.emit_fin(now) {
            return Some(out);
        }
        // 4. A keepalive probe (RFC 9293 3.8.4): SEG.SEQ = SND.NXT - 1, no data.
        if self.pending.keepalive_probe {
            self.pending.keepalive_probe = false;
            let seq = self.snd.una - 1;
            return Some(self.segment(now, seq, TcpFlags::ACK, 0));
        }
        self.emit_ack_if_pending(now)
    }

    /// A tail loss probe (RFC 8985 7.3): new data if the peer's window allows, else the
    /// last segment not SACKed again; either way regardless of cwnd. If every segment
    /// in flight is marked SACKed, the receiver reneged (it acknowledges none of them,
    /// RFC 2018 8): the probe is the segment at SND.UNA, the one it lacks.
    fn emit_tail_loss_probe(&mut self, now: Instant, scratch: &mut [u8]) -> Option<Outgoing> {
        let data_end = self.data_end();
        let wnd_edge = self.snd.una + self.snd.wnd;
        let room = if wnd_edge > self.snd.nxt { wnd_edge - self.snd.nxt } else { 0 };
        if self.snd.nxt < data_end && room > 0 {
            let len = (data_end - self.snd.nxt).min(self.max_payload()).min(room).min(scratch.len());
            let out = self.send_new(now, len, scratch);
            self.rec.tlp_end = Some(self.snd.nxt);
            return Some(out);
        }
        let i = match self.sent.last_unsacked() {
            Some(i) => i,
            None if !self.sent.is_empty() => 0,
            None => return None,
        };
        self.rec.tlp_end = Some(self.snd.nxt);
        Some(self.retransmit(now, i, scratch))
    }

    /// Retransmit the first segment marked lost (RFC 6675 NextSeg rule 1; after a
    /// timeout, everything unSACKed), within the congestion window unless it is the
    /// first of a recovery episode.
    #[inline]
    fn emit_retransmission(&mut self, now: Instant, scratch: &mut [u8]) -> Option<Outgoing> {
        let i = self.sent.first_lost()?;
        let len = self.sent.get(i)?.len as usize;
        if !self.rec.rtx_force && self.pipe() + len > self.cc.window() {
            return None;
        }
        self.rec.rtx_force = false;
        // Against a zero window this retransmission is the window probe.
        self.pending.window_probe = false;
        let out = self.retransmit(now, i, scratch);
        self.arm_rtx(now);
        Some(out)
    }

    /// New data at SND.NXT, as much as the peer's window, the congestion window and one
    /// segment allow, held back by sender SWS avoidance and Nagle; when nothing can go
    /// and nothing is in flight, the persist timer is armed.
    #[inline]
    fn emit_new_data(&mut self, now: Instant, scratch: &mut [u8]) -> Option<Outgoing> {
        let data_end = self.data_end();
        if self.snd.nxt >= data_end {
            self.note_app_limited();
            return None;
        }
        let avail = data_end - self.snd.nxt;
        let wnd_edge = self.snd.una + self.snd.wnd;
        let room = if wnd_edge > self.snd.nxt { wnd_edge - self.snd.nxt } else { 0 };
        let cwnd_room = self.cc.window().saturating_sub(self.pipe());
        let max_payload = self.max_payload();
        let mut len = avail.min(max_payload).min(room).min(cwnd_room).min(scratch.len());
        if self.pending.window_probe {
            // The persist timer fired (RFC 9293 3.8.6.1 zero-window probe, and the
            // SWS override timeout of 3.8.6.2.1): send what fits, or one byte
            // beyond a zero window.
            len = len.max(1).min(avail);
            self.snd.zero_window_probe = room == 0 && self.snd.nxt == self.snd.una;
        } else if len < max_payload && len < avail {
            // Sender SWS avoidance (RFC 9293 3.8.6.2.1): a partial segment only if
            // it is at least half the largest window the peer offered; and never a
            // runt just because the congestion window is nearly full.
            if len < self.snd.max_wnd / 2 || (cwnd_room < room && self.pipe() > 0) {
                len = 0;
            }
        } else if len == avail
            && len < max_payload
            && !self.nodelay
            && self.snd.nxt != self.snd.una
            && !self.close.fin_queued
        {
            // Nagle (RFC 896, RFC 9293 3.7.4): hold a small final piece while data
            // is unacknowledged.
            len = 0;
        }
        if len > 0 {
            self.pending.window_probe = false;
            let out = self.send_new(now, len, scratch);
            self.arm_after_new_data(now);
            return Some(out);
        }
        if self.pipe() == 0 {
            // Nothing in flight to clock us: the persist timer takes over (or,
            // with everything in flight SACKed or lost, the retransmission timer).
            if self.snd.nxt == self.snd.una {
                self.arm_persist(now);
            } else {
                self.arm_rtx(now);
            }
        }
        None
    }

    /// Our FIN on its own, once every queued byte has been sent (RFC 9293 3.10.4).
    fn emit_fin(&mut self, now: Instant) -> Option<Outgoing> {
        if !self.close.fin_queued || self.close.fin_seq.is_some() || self.snd.nxt != self.data_end() {
            return None;
        }
        // The FIN takes a sequence number: while segments are in flight (a zero-window
        // probe's octet among them) it waits for room in the peer's window, as Linux's
        // `tcp_snd_wnd_test` holds it; their ACK or retransmission timer brings it.
        // With nothing in flight it goes anyway, as its own probe of a closed window.
        if !self.sent.is_empty() && self.snd.una + self.snd.wnd <= self.snd.nxt {
            return None;
        }
        let seq = self.snd.nxt;
        self.close.fin_seq = Some(seq);
        self.push_sent(now, seq, 1, true);
        self.arm_rtx(now);
        Some(self.segment(now, seq, TcpFlags::FIN | TcpFlags::ACK, 0))
    }

    /// Send `len` new bytes at SND.NXT (with the FIN if they are the last and a close
    /// is queued) and put the segment on the scoreboard.
    fn send_new(&mut self, now: Instant, len: usize, scratch: &mut [u8]) -> Outgoing {
        let seq = self.snd.nxt;
        let data_end = self.data_end();
        self.tx.copy_out(seq - self.tx_seq0(), len, scratch);
        let mut flags = TcpFlags::ACK;
        let mut seg_len = len;
        let mut fin = false;
        if seq + len == data_end {
            flags |= TcpFlags::PSH;
            if self.close.fin_queued {
                flags |= TcpFlags::FIN;
                seg_len += 1;
                fin = true;
                self.close.fin_seq = Some(data_end);
            }
        }
        self.push_sent(now, seq, seg_len, fin);
        self.paced(now, len);
        self.segment(now, seq, flags, len)
    }

    /// Send scoreboard entry `i` again, with its original boundaries.
    fn retransmit(&mut self, now: Instant, i: usize, scratch: &mut [u8]) -> Outgoing {
        if self.sent.get(i).is_some_and(|e| e.data_len() > self.max_payload()) {
            // Sent before the path MTU went down (`on_path_mtu`): what fits now first.
            self.sent.split(i, self.max_payload());
        }
        let e = self.sent.get(i).copied().expect("retransmit: index on the scoreboard");
        let data = e.data_len().min(scratch.len());
        self.tx.copy_out(e.seq - self.tx_seq0(), data, scratch);
        self.sent.on_retransmit(i, now);
        let stamp = self.rate.stamp(now, false);
        self.sent.set_rate_stamp(i, stamp);
        self.paced(now, data);
        self.retransmits += 1;
        let mut flags = TcpFlags::ACK;
        if e.fin {
            flags |= TcpFlags::FIN;
        }
        // PSH as when the segment was first sent (`send_new`): on the segment that ends
        // the data the application queued (RFC 9293 3.9.1.2, the end of what it
        // pushed), not on whatever segment happens to be the last one sent: a window
        // probe's octet (RFC 9293 3.8.6.1) sent again is still one octet from the middle
        // of the data.
        if data > 0 && e.seq + data == self.data_end() {
            flags |= TcpFlags::PSH;
        }
        self.segment(now, e.seq, flags, data)
    }

    fn push_sent(&mut self, now: Instant, seq: SeqNum, len: usize, fin: bool) {
        let stamp = self.rate.stamp(now, self.snd.nxt == self.snd.una);
        self.sent.push(now, seq, len, fin);
        self.sent.set_rate_stamp(self.sent.len() - 1, stamp);
        self.snd.nxt = seq + len;
        self.persist_to_retransmission();
    }

    /// Every non-SYN segment: ACK = RCV.NXT, the window, timestamps and (on pure ACKs)
    /// SACK blocks.
    fn segment(&mut self, now: Instant, seq: SeqNum, flags: TcpFlags, payload_len: usize) -> Outgoing {
        self.pending.ack = false;
        self.pending.dup_ack = false;
        self.timers.stop(Timer::DelayedAck);
        self.rcv.last_ack_sent = self.rcv.nxt;
        let window = self.advertise();
        let mut options = TcpOptions::default();
        if self.opt.ts {
            options.timestamps = Some((self.ts_now(now), self.opt.ts_recent));
        }
        if self.opt.sack && payload_len == 0 && self.rx.has_out_of_order() {
            // RFC 2018 4: up to 4 blocks, 3 when timestamps take option space.
            options.sack = self.rx.sack_blocks(if self.opt.ts { 3 } else { 4 });
        }
        Outgoing { seq, ack: self.rcv.nxt, flags, window, options, payload_len }
    }

    /// Window field for an outgoing non-SYN segment, recording the advertised edge.
    fn advertise(&mut self) -> u16 {
        self.lower_rx_capacity();
        let wnd = self.rcv_wnd();
        let field = (wnd >> self.rcv.wscale).min(u16::MAX as usize);
        let edge = self.rcv.nxt + (field << self.rcv.wscale);
        if edge > self.rcv.adv {
            self.rcv.adv = edge;
        }
        field as u16
    }

    fn emit_ack_if_pending(&mut self, now: Instant) -> Option<Outgoing> {
        if !self.pending.ack {
            return None;
        }
        let seq = self.pure_ack_seq();
        Some(self.segment(now, seq, TcpFlags::ACK, 0))
    }

    /// SEG.SEQ of a segment without data: SND.NXT, unless SND.NXT lies past the right
    /// edge of the peer's window (a zero-window probe's octet, or a window the peer
    /// shrank), and then that edge. The receiver's acceptability test (RFC 9293
    /// 3.10.7.4) rejects an empty segment beyond its window, ACK field included, and a
    /// zero window accepts only SEG.SEQ = RCV.NXT; with SND.NXT one past a probe's
    /// octet both ends could stall, each waiting for the other's ACK. Linux does the
    /// same (`tcp_acceptable_seq`).
    pub(super) fn pure_ack_seq(&self) -> SeqNum {
        let edge = self.snd.una + self.snd.wnd;
        // Before our SYN is acknowledged SND.WND means nothing yet.
        if self.snd.una > self.snd.iss && self.snd.nxt > edge {
            edge
        } else {
            self.snd.nxt
        }
    }

    fn emit_syn(&mut self, now: Instant) -> Outgoing {
        let synack = self.state == TcpState::SynReceived;
        let mut options = TcpOptions { mss: Some(self.rcv.mss as u16), ..TcpOptions::default() };
        // RFC 7323 2.2 / 3.2, RFC 2018 2: offer on a SYN; on a SYN-ACK only what the
        // peer offered.
        if self.opt.ws_offer {
            options.window_scale = Some(self.rcv.wscale);
        }
        if self.opt.sack_offer {
            options.sack_permitted = true;
        }
        if self.opt.ts_offer {
            options.timestamps = Some((self.ts_now(now), if synack { self.opt.ts_recent } else { 0 }));
        }
        if self.snd.syn_tx > 0 {
            self.retransmits += 1;
        }
        self.snd.syn_tx = self.snd.syn_tx.saturating_add(1);
        self.snd.syn_sent_at = now;
        self.snd.nxt = self.snd.iss + 1;
        if self.timers.retransmission().is_none() {
            self.timers.set(Timer::Handshake, now + self.rtt.rto());
        }
        self.pending.ack = false;
        let mut flags = TcpFlags::SYN;
        if synack {
            flags |= TcpFlags::ACK;
            let edge = self.rcv.nxt + self.rx.capacity().min(u16::MAX as usize);
            if edge > self.rcv.adv {
                self.rcv.adv = edge;
            }
            self.rcv.last_ack_sent = self.rcv.nxt;
        }
        Outgoing {
            seq: self.snd.iss,
            ack: if synack { self.rcv.nxt } else { SeqNum(0) },
            flags,
            // RFC 7323 2.2: the window in a SYN or SYN-ACK is never scaled.
            window: self.rx.capacity().min(u16::MAX as usize) as u16,
            options,
            payload_len: 0,
        }
    }
}
