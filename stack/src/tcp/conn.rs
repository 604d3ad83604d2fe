//! One TCP connection: the transmission control block and the RFC 9293 state machine.
//!
//! Input: [`Conn::process`] runs the segment-arrival rules of RFC 9293 3.10.7.3
//! (SYN-SENT) and 3.10.7.4 (every other state) on one segment. Output:
//! [`Conn::dispatch`] builds at most one segment per call (SYN, SYN-ACK, a
//! retransmission, new data, FIN, a probe, a pure ACK). Timers: [`Conn::deadline`] /
//! [`Conn::on_timer`].
//!
//! Send side (RFC 9293 3.3.1):
//! ```text
//!   ISS [SYN]  SND.UNA ............ SND.NXT ............ data_end [FIN]
//!              |<--- sent: scoreboard --->|<-- unsent -->|
//!              |<---------------- tx (unacknowledged bytes) --------->|
//! ```
//! `tx` holds every byte not yet acknowledged; `sent` has one entry per transmitted
//! segment between SND.UNA and SND.NXT with its SACK / lost / retransmitted marks
//! (the RFC 6675 scoreboard). Loss recovery retransmits only what is marked lost:
//! holes the peer's SACK blocks reveal, the first segment after three duplicate ACKs
//! or a NewReno partial ACK (RFC 6582), everything unSACKed after a timeout.
//!
//! Receive side: [`RecvBuffer`] keeps out-of-order segments inside the window and
//! reports them as SACK blocks.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Config, Keepalive};
use crate::error::{ConnError, RecvError, SendError};
use crate::seq::SeqNum;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

use super::congestion::{CongestionAlgorithm, CongestionControl, Controller};
use super::recv_buf::RecvBuffer;
use super::reject::TcpReject;
use super::rtt::RttEstimator;
use super::scoreboard::{Scoreboard, SegState};
use super::send_buf::SendBuffer;
use super::timer::{Timer, TimerTable};
use super::TcpState;

/// RFC 9293 3.7.1: the MSS to assume when the peer sends no MSS option.
const DEFAULT_MSS_V4: usize = 536;
/// RFC 9293 3.7.1 / RFC 8200 5: 1280 - 40 - 20.
const DEFAULT_MSS_V6: usize = 1220;
/// RFC 7323 2.3: the largest window scale shift.
const MAX_WINDOW_SCALE: u8 = 14;
/// RFC 5681 3.2 / RFC 6675 2: DupThresh.
const DUP_THRESH: u32 = 3;
/// RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// Timestamp option length including the two NOPs that align it (RFC 7323 appendix A).
const TS_OPTION_LEN: usize = 12;

/// A segment the connection wants on the wire. The payload, if any, has been copied
/// into the caller's scratch buffer (`payload_len` bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outgoing {
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: TcpFlags,
    pub window: u16,
    pub options: TcpOptions,
    pub payload_len: usize,
}

/// What `process` / `on_timer` ask the stack to do besides what the connection sends
/// itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    None,
    /// Send a RST outside the connection's own flow (RFC 9293 3.10.7.3/4):
    /// `<SEQ=seq><CTL=RST>` or, with `ack`, `<SEQ=seq><ACK=ack><CTL=RST,ACK>`.
    Rst {
        seq: SeqNum,
        ack: Option<SeqNum>,
    },
}

/// Why a segment was not accepted (for counters and traces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Rejected(TcpReject),
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

/// Send sequence variables (RFC 9293 3.3.1) and what else describes our side of the
/// sequence space: the MSS we send with, the peer's window scale, our SYN's history.
#[derive(Clone, Copy, Debug)]
pub(super) struct SendSeq {
    /// Initial send sequence number (ISS).
    pub iss: SeqNum,
    /// SND.UNA: oldest unacknowledged sequence number.
    pub una: SeqNum,
    /// SND.NXT: next new sequence number to send; everything below it has been sent.
    pub nxt: SeqNum,
    /// SND.WND: the peer's window, already scaled.
    pub wnd: usize,
    /// SND.WL1 / SND.WL2: segment sequence and acknowledgment numbers of the last
    /// window update.
    pub wl1: SeqNum,
    pub wl2: SeqNum,
    /// Largest window the peer ever offered (for sender SWS avoidance, RFC 9293 3.8.6.2.1).
    pub max_wnd: usize,
    /// Shift applied to the peer's window fields (RFC 7323 2.2).
    pub wscale: u8,
    /// Peer's MSS (bounded by ours): the largest segment payload without options.
    pub mss: usize,
    /// The SYN was sent this many times (Karn: only a single SYN gives an RTT sample).
    pub syn_tx: u16,
    pub syn_sent_at: Instant,
}

/// Receive sequence variables (RFC 9293 3.3.1) and what we told the peer about them.
#[derive(Clone, Copy, Debug)]
pub(super) struct RecvSeq {
    /// Initial receive sequence number (IRS).
    pub irs: SeqNum,
    /// RCV.NXT: next sequence number expected.
    pub nxt: SeqNum,
    /// Shift we apply to the windows we advertise (RFC 7323 2.2).
    pub wscale: u8,
    /// Right edge of the window last advertised: RCV.NXT + RCV.WND at that time.
    /// RFC 9293 3.8.6: the right edge must not move left.
    pub adv: SeqNum,
    /// MSS we advertised (MTU-derived).
    pub mss: usize,
    /// ACK number of the last segment we sent (RFC 7323 4.3 Last.ACK.sent).
    pub last_ack_sent: SeqNum,
}

/// The options of the SYN exchange: what we offer (or will answer), what is in effect
/// (both SYNs carried it), and the timestamp state of RFC 7323.
#[derive(Clone, Copy, Debug)]
pub(super) struct Negotiated {
    /// Window scaling, SACK-permitted, timestamps: offered on our SYN, or willing to
    /// answer on our SYN-ACK.
    pub ws_offer: bool,
    pub sack_offer: bool,
    pub ts_offer: bool,
    /// In effect (RFC 7323 2.2 / 3.2, RFC 2018 2).
    pub ws: bool,
    pub sack: bool,
    pub ts: bool,
    /// RFC 7323 4.3: TS.Recent and when it was set (for the 24-day rule of 5.5).
    pub ts_recent: u32,
    pub ts_recent_at: Instant,
    /// Per-connection random offset of our timestamp clock (RFC 7323 5.4).
    pub ts_offset: u32,
}

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

/// Closing bookkeeping: our FIN, the peer's FIN, the read side.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CloseState {
    /// The application asked to send FIN after `tx` (shutdown(Write) or close).
    pub fin_queued: bool,
    /// Sequence number of our FIN once sent.
    pub fin_seq: Option<SeqNum>,
    pub fin_acked: bool,
    /// The peer's FIN has been received (in order).
    pub fin_received: bool,
    /// shutdown(Read): incoming data is acknowledged and discarded.
    pub rd_shut: bool,
}

/// Segments owed to the peer that `dispatch` sends at its next call, whatever the
/// windows say about data.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pending {
    /// An ACK (immediate ACK rules, a window update, a challenge ACK...).
    pub ack: bool,
    /// The persist timer fired: a window probe, or a segment despite SWS avoidance.
    pub window_probe: bool,
    /// The probe timeout fired: a tail loss probe (RFC 8985 7.3).
    pub tail_loss_probe: bool,
    /// The keepalive timer fired: a keepalive probe (RFC 9293 3.8.4).
    pub keepalive_probe: bool,
}

/// The transmission control block of one connection (RFC 9293 3.3.1) and its state
/// machine; the methods are spread over `conn.rs` (construction, application calls,
/// accessors, invariants), `input.rs`, `output.rs`, `timer.rs` and `recovery.rs`.
pub(crate) struct Conn {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Opened by `connect` (true) or from a listener (false); decides what a RST in
    /// SYN-RECEIVED means (RFC 9293 3.10.7.4, second check).
    pub active: bool,
    /// The application released its handle.
    pub orphan: bool,
    /// Retransmissions performed (for `Stats::tcp_retransmits`).
    pub retransmits: u64,

    pub(super) snd: SendSeq,
    pub(super) rcv: RecvSeq,
    pub(super) opt: Negotiated,

    /// Every byte not yet acknowledged, sent or not.
    pub(super) tx: SendBuffer,
    pub(super) rx: RecvBuffer,
    /// One entry per segment in [SND.UNA, SND.NXT).
    pub(super) sent: Scoreboard,
    pub(super) rec: Recovery,
    pub(super) cc: Controller,

    pub(super) close: CloseState,
    /// Terminal error to report to the application (reset, refused, timed out).
    pub(super) error: Option<ConnError>,

    // ---- output decisions
    pub(super) pending: Pending,
    pub(super) ack_delay: Option<Duration>,
    pub(super) nodelay: bool,

    // ---- timers
    /// SRTT, RTTVAR, the RTO and min_rtt (RFC 6298).
    pub(super) rtt: RttEstimator,
    /// Every timer of the connection but keepalive (see `timer.rs`).
    pub(super) timers: TimerTable,
    /// The armed persist timer was given the probe timeout (see `arm_persist`).
    pub(super) persist_pto: bool,
    /// Consecutive timeouts of the oldest outstanding segment.
    pub(super) retries: u32,
    pub(super) keepalive: Option<Keepalive>,
    /// Keepalive probes sent without an answer.
    pub(super) ka_probes: u32,
    /// When the last acceptable segment arrived (keepalive, housekeeping).
    pub(super) last_rx: Instant,
    pub(super) user_timeout: Option<Duration>,
}

fn window_shift_for(buf: usize) -> u8 {
    let mut s = 0u8;
    while s < MAX_WINDOW_SCALE && (buf >> s) > u16::MAX as usize {
        s += 1;
    }
    s
}

impl Conn {
    fn new(cfg: &Config, now: Instant, local: SocketAddr, remote: SocketAddr, iss: SeqNum, active: bool) -> Conn {
        let our_mss = cfg.mss_for(remote.ip()) as usize;
        Conn {
            state: TcpState::Closed,
            local,
            remote,
            active,
            orphan: false,
            retransmits: 0,
            snd: SendSeq {
                iss,
                una: iss,
                nxt: iss,
                wnd: 0,
                wl1: SeqNum(0),
                wl2: SeqNum(0),
                max_wnd: 0,
                wscale: 0,
                mss: our_mss,
                syn_tx: 0,
                syn_sent_at: now,
            },
            rcv: RecvSeq {
                irs: SeqNum(0),
                nxt: SeqNum(0),
                wscale: 0,
                adv: SeqNum(0),
                mss: our_mss,
                last_ack_sent: SeqNum(0),
            },
            opt: Negotiated {
                ws_offer: false,
                sack_offer: false,
                ts_offer: false,
                ws: false,
                sack: false,
                ts: false,
                ts_recent: 0,
                ts_recent_at: now,
                ts_offset: iss.0.rotate_left(13) ^ 0x5bd1_e995,
            },
            tx: SendBuffer::new(cfg.tcp_tx_buffer),
            rx: RecvBuffer::new(cfg.tcp_rx_buffer),
            sent: Scoreboard::new(),
            rec: Recovery {
                recovery_point: None,
                rto_point: None,
                dup_acks: 0,
                rtx_force: false,
                rack: Rack { xmit: None, end_seq: iss, rtt: Duration::ZERO },
                tlp_end: None,
                rack_tlp: cfg.rack_tlp,
            },
            cc: Controller::new(cfg.congestion, our_mss),
            close: CloseState::default(),
            error: None,
            pending: Pending::default(),
            ack_delay: cfg.ack_delay,
            nodelay: false,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            timers: TimerTable::default(),
            persist_pto: false,
            retries: 0,
            keepalive: cfg.keepalive,
            ka_probes: 0,
            last_rx: now,
            user_timeout: cfg.user_timeout,
        }
    }

    /// Active open (RFC 9293 3.10.1, CLOSED + OPEN(active)): SYN-SENT; the SYN goes out
    /// at the next dispatch.
    pub fn connect(cfg: &Config, now: Instant, local: SocketAddr, remote: SocketAddr, iss: SeqNum) -> Conn {
        let mut c = Conn::new(cfg, now, local, remote, iss, true);
        // We offer window scaling, SACK and timestamps on an active open; each takes
        // effect only if the SYN-ACK carries it too (RFC 7323 2.2, 3.2; RFC 2018 2).
        c.opt.ws_offer = cfg.window_scaling;
        c.opt.sack_offer = cfg.sack;
        c.opt.ts_offer = cfg.timestamps;
        c.rcv.wscale = if cfg.window_scaling { window_shift_for(c.rx.capacity()) } else { 0 };
        c.state = TcpState::SynSent;
        c
    }

    /// Passive open: a listener got an acceptable SYN (RFC 9293 3.10.7.2, LISTEN, third
    /// check). The connection starts in SYN-RECEIVED and answers with SYN-ACK.
    pub fn accept_syn(
        cfg: &Config,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        seg: &TcpRepr<'_>,
    ) -> Conn {
        let mut c = Conn::new(cfg, now, local, remote, iss, false);
        c.rcv.irs = seg.seq;
        c.rcv.nxt = seg.seq + 1;
        c.rcv.last_ack_sent = c.rcv.nxt;
        c.opt.ws_offer = cfg.window_scaling && seg.options.window_scale.is_some();
        c.opt.sack_offer = cfg.sack && seg.options.sack_permitted;
        c.opt.ts_offer = cfg.timestamps && seg.options.timestamps.is_some();
        c.apply_syn_options(now, &seg.options);
        // RFC 7323 2.2: the window field of a SYN is never scaled.
        c.snd.wnd = seg.window as usize;
        c.snd.max_wnd = c.snd.wnd;
        c.snd.wl1 = seg.seq;
        c.snd.wl2 = seg.ack;
        c.rcv.adv = c.rcv.nxt + c.rx.capacity().min(u16::MAX as usize);
        c.state = TcpState::SynReceived;
        c
    }

    /// Options of the peer's SYN (or SYN-ACK): MSS (RFC 9293 3.7.1), window scale
    /// (RFC 7323 2.2), SACK-permitted (RFC 2018 2), timestamps (RFC 7323 3.2). An option
    /// is in effect only when both SYNs carried it; `peer_*` hold what we offered or
    /// are willing to answer.
    fn apply_syn_options(&mut self, now: Instant, o: &TcpOptions) {
        let peer_mss = match o.mss {
            Some(m) => m as usize,
            None => match self.remote {
                SocketAddr::V4(_) => DEFAULT_MSS_V4,
                SocketAddr::V6(_) => DEFAULT_MSS_V6,
            },
        };
        self.snd.mss = peer_mss.min(self.rcv.mss).max(64);
        self.opt.ws = self.opt.ws_offer && o.window_scale.is_some();
        if self.opt.ws {
            self.snd.wscale = o.window_scale.unwrap_or(0).min(MAX_WINDOW_SCALE);
            self.rcv.wscale = window_shift_for(self.rx.capacity());
        } else {
            self.snd.wscale = 0;
            self.rcv.wscale = 0;
        }
        self.opt.ws_offer = self.opt.ws;
        self.opt.sack = self.opt.sack_offer && o.sack_permitted;
        self.opt.sack_offer = self.opt.sack;
        match o.timestamps {
            Some((tsval, _)) if self.opt.ts_offer => {
                self.opt.ts = true;
                self.opt.ts_recent = tsval;
                self.opt.ts_recent_at = now;
            }
            _ => {
                self.opt.ts = false;
                self.opt.ts_offer = false;
            }
        }
        self.cc = Controller::new(self.cc.algorithm(), self.snd.mss);
    }

    // ------------------------------------------------------------ accessors

    pub fn error(&self) -> Option<ConnError> {
        self.error
    }
    pub fn recv_queue(&self) -> usize {
        self.rx.readable()
    }
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }
    pub fn send_capacity(&self) -> usize {
        self.tx.free()
    }
    pub fn set_nodelay(&mut self, v: bool) {
        self.nodelay = v;
    }
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }
    pub fn set_keepalive(&mut self, now: Instant, ka: Option<Keepalive>) {
        self.keepalive = ka;
        self.ka_probes = 0;
        self.last_rx = now;
    }
    pub fn set_user_timeout(&mut self, t: Option<Duration>) {
        self.user_timeout = t;
    }
    pub fn set_congestion(&mut self, alg: CongestionAlgorithm) {
        if self.cc.algorithm() != alg {
            self.cc = Controller::new(alg, self.snd.mss);
        }
    }
    pub fn is_synchronized(&self) -> bool {
        !matches!(self.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent)
    }
    pub fn rcv_nxt(&self) -> SeqNum {
        self.rcv.nxt
    }

    /// Sequence number of `tx[0]`.
    fn tx_seq0(&self) -> SeqNum {
        if self.snd.una == self.snd.iss {
            self.snd.iss + 1
        } else {
            self.snd.una
        }
    }

    /// Sequence number just past the last queued data byte (where the FIN goes).
    fn data_end(&self) -> SeqNum {
        self.tx_seq0() + self.tx.len()
    }

    /// Bytes in flight by the RFC 6675 pipe estimate: sent and not acknowledged,
    /// minus what the peer SACKed and what is lost and not yet retransmitted.
    fn pipe(&self) -> usize {
        let outstanding = if self.snd.nxt > self.snd.una { self.snd.nxt - self.snd.una } else { 0 };
        outstanding.saturating_sub(self.sent.sacked_out() + self.sent.lost_out())
    }

    fn flight_size(&self) -> usize {
        if self.snd.nxt > self.snd.una {
            self.snd.nxt - self.snd.una
        } else {
            0
        }
    }

    /// Largest payload of a data segment: the MSS less the options every segment
    /// carries (RFC 9293 3.7.1: Eff.snd.MSS subtracts the TCP options).
    fn max_payload(&self) -> usize {
        self.snd.mss - if self.opt.ts { TS_OPTION_LEN } else { 0 }
    }

    /// TCP header length of a segment carrying data: data segments carry only the
    /// timestamp option (SACK blocks go on pure ACKs). The stack places the payload
    /// right after it so it is copied once.
    pub fn data_header_len(&self) -> usize {
        let mut o = TcpOptions::default();
        if self.opt.ts {
            o.timestamps = Some((0, 0));
        }
        crate::wire::tcp::TCP_HEADER_LEN + crate::wire::tcp::options_len(&o)
    }

    /// Our timestamp clock: milliseconds plus a per-connection offset (RFC 7323 5.4).
    fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.opt.ts_offset)
    }

    /// The receive window we would advertise now (bytes), keeping the right edge from
    /// moving left (RFC 9293 3.8.6).
    fn rcv_wnd(&self) -> usize {
        let free = self.rx.window();
        let max = (u16::MAX as usize) << self.rcv.wscale;
        // Round down to what the scaled field can express.
        let wnd = (free.min(max) >> self.rcv.wscale) << self.rcv.wscale;
        let committed = if self.rcv.adv > self.rcv.nxt { self.rcv.adv - self.rcv.nxt } else { 0 };
        wnd.max(committed)
    }

    // ------------------------------------------------------------ application calls

    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if let Some(e) = self.error {
            return Err(SendError::Conn(e));
        }
        if self.close.fin_queued {
            return Err(SendError::WriteShutdown);
        }
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => return Err(SendError::WouldBlock),
            TcpState::Established | TcpState::CloseWait => {}
            _ => return Err(SendError::Closed),
        }
        let n = data.len().min(self.send_capacity());
        if n == 0 {
            return if data.is_empty() { Ok(0) } else { Err(SendError::WouldBlock) };
        }
        self.tx.write(&data[..n]);
        Ok(n)
    }

    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if self.rx.is_empty() {
            if self.close.fin_received || self.close.rd_shut {
                return Ok(0);
            }
            if let Some(e) = self.error {
                return Err(RecvError::Conn(e));
            }
            return match self.state {
                TcpState::Closed => Ok(0),
                _ => Err(RecvError::WouldBlock),
            };
        }
        let n = self.rx.read(buf);
        // Window update (RFC 9293 3.8.6.2.2, receiver SWS avoidance): announce the
        // reopened window once it grew by min(half the buffer, one MSS).
        if self.is_synchronized() && !self.close.fin_received {
            let new_edge = self.rcv.nxt + self.rcv_wnd();
            let grown = if new_edge > self.rcv.adv { new_edge - self.rcv.adv } else { 0 };
            if grown >= (self.rx.capacity() / 2).min(self.rcv.mss) {
                self.pending.ack = true;
            }
        }
        Ok(n)
    }

    /// shutdown(Write), and the first half of close: queue a FIN after the data
    /// (RFC 9293 3.10.4).
    pub fn shutdown_write(&mut self) {
        match self.state {
            TcpState::SynSent => {
                self.state = TcpState::Closed;
            }
            TcpState::SynReceived | TcpState::Established => {
                self.close.fin_queued = true;
                self.state = TcpState::FinWait1;
            }
            TcpState::CloseWait => {
                self.close.fin_queued = true;
                self.state = TcpState::LastAck;
            }
            _ => {}
        }
        self.handshake_timer_outlives_handshake();
    }

    pub fn shutdown_read(&mut self) {
        self.close.rd_shut = true;
        self.rx.clear();
    }

    /// The application released the handle. Returns true if unread data forces an abort
    /// (RFC 9293 3.10.4 / RFC 2525 2.17: a close with unread data sends RST).
    pub fn close(&mut self, now: Instant, cfg: &Config) -> bool {
        self.orphan = true;
        if !self.rx.is_empty() && self.is_synchronized() {
            return true;
        }
        self.shutdown_write();
        if self.state == TcpState::FinWait2 {
            self.timers.set(Timer::Close, now + 2 * cfg.msl);
        }
        false
    }

    /// RST for an abort (RFC 9293 3.10.5): `<SEQ=SND.NXT><CTL=RST>` when synchronized.
    pub fn abort(&mut self) -> Option<Reply> {
        let r = if self.is_synchronized() && self.state != TcpState::TimeWait {
            Some(Reply::Rst { seq: self.snd.nxt, ack: None })
        } else {
            None
        };
        self.state = TcpState::Closed;
        self.handshake_timer_outlives_handshake();
        r
    }

    // ------------------------------------------------------------ segment arrival

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
        if self.snd.syn_tx == 1 {
            let rtt = match seg.options.timestamps {
                Some((_, tsecr)) if self.opt.ts && tsecr != 0 => {
                    Duration::from_millis(self.ts_now(now).wrapping_sub(tsecr) as u64)
                }
                _ => now.saturating_duration_since(self.snd.syn_sent_at),
            };
            self.rtt_sample(rtt);
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
        let f = seg.flags;

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost; send it again.
        if self.state == TcpState::SynReceived && f.syn() && !f.ack() && !f.rst() && seg.seq == self.rcv.irs {
            self.snd.nxt = self.snd.iss;
            return (Verdict::Accepted, Reply::None);
        }

        // PAWS (RFC 7323 5.3 R1): an old timestamp makes the segment unacceptable.
        if self.opt.ts && !f.rst() {
            if let Some((tsval, _)) = seg.options.timestamps {
                let recent_valid = now.saturating_duration_since(self.opt.ts_recent_at) < PAWS_IDLE;
                if recent_valid && (tsval.wrapping_sub(self.opt.ts_recent) as i32) < 0 {
                    self.pending.ack = true;
                    return (Verdict::Rejected(TcpReject::Paws), Reply::None);
                }
            }
        }

        // First: sequence number check.
        if !self.acceptable(seg) {
            // A zero window still takes valid ACKs and RSTs at RCV.NXT (RFC 9293 3.10.7.4).
            let zero_wnd_ctl = self.rcv_wnd() == 0 && seg.seq == self.rcv.nxt;
            if !zero_wnd_ctl {
                if f.rst() {
                    return (Verdict::Rejected(TcpReject::RstOutOfWindow), Reply::None);
                }
                if self.state == TcpState::TimeWait && f.fin() {
                    // The peer's FIN again: our ACK was lost. Re-ACK, restart 2*MSL.
                    self.timers.set(Timer::Close, now + 2 * cfg.msl);
                }
                self.pending.ack = true;
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
                self.pending.ack = true;
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
            self.pending.ack = true;
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
                self.snd.wnd = (seg.window as usize) << self.snd.wscale;
                self.snd.max_wnd = self.snd.max_wnd.max(self.snd.wnd);
                self.snd.wl1 = seg.seq;
                self.snd.wl2 = seg.ack;
            } else {
                return (Verdict::Rejected(TcpReject::SynReceivedBadAck), Reply::Rst { seq: seg.ack, ack: None });
            }
        }
        if seg.ack > self.snd.nxt {
            // Acknowledges something not yet sent: ACK and drop (RFC 9293 3.10.7.4).
            self.pending.ack = true;
            return (Verdict::Rejected(TcpReject::AckUnsent), Reply::None);
        }
        let had_fin_acked = self.close.fin_acked;
        self.on_ack(now, seg);
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
    /// (RFC 6298, RFC 7323 4).
    fn on_ack(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let win = (seg.window as usize) << self.snd.wscale;
        if seg.ack > self.snd.una {
            let newly_acked = seg.ack - self.snd.una;
            let rtt = self.ack_advance(now, seg);
            if let Some(rp) = self.rec.recovery_point {
                if seg.ack >= rp {
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
            if self.rec.rto_point.is_some_and(|p| seg.ack >= p) {
                self.rec.rto_point = None;
            }
            self.rec.dup_acks = 0;
        } else if seg.ack == self.snd.una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && !self.sent.is_empty()
            && win == self.snd.wnd
        {
            // RFC 5681 2: a duplicate ACK.
            self.rec.dup_acks += 1;
        }

        // SACK blocks (RFC 2018 / RFC 6675 update). A segment sent once and SACKed
        // now gives an RTT sample (the SACK is its acknowledgment).
        let mut new_sack = false;
        if self.opt.sack {
            let mut newest: Option<Instant> = None;
            for &(l, r) in seg.options.sack.as_slice() {
                new_sack |= self.mark_sacked(now, l, r, &mut newest);
            }
            if seg.ack <= self.snd.una {
                if let Some(sent) = newest {
                    self.rtt_sample(now.saturating_duration_since(sent));
                }
            }
        }

        // Loss detection (RFC 8985 RACK, RFC 6675 5, RFC 5681 3.2).
        if !self.sent.is_empty() {
            let mut lost = self.opt.sack && self.rec.rack_tlp && self.rack_detect_loss(now);
            if new_sack {
                lost |= self.mark_lost_by_sack();
            }
            if self.rec.recovery_point.is_none() && self.rec.rto_point.is_none() && self.rec.dup_acks >= DUP_THRESH {
                lost |= self.mark_front_lost();
            }
            self.maybe_enter_recovery(now, lost);
        }

        if self.snd.wnd == 0 && seg.ack == self.snd.una {
            // The peer answers our zero-window probes: it is alive, so the persist
            // state does not count towards the retransmission limit (RFC 9293 3.8.6.1).
            self.retries = 0;
        }
        // Window update (RFC 9293 3.10.7.4, fifth check, ESTABLISHED).
        if self.snd.una <= seg.ack && (self.snd.wl1 < seg.seq || (self.snd.wl1 == seg.seq && self.snd.wl2 <= seg.ack)) {
            self.snd.wnd = win;
            self.snd.max_wnd = self.snd.max_wnd.max(win);
            self.snd.wl1 = seg.seq;
            self.snd.wl2 = seg.ack;
        }
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
            if !e.is_sacked() && !e.ambiguous(now, min_rtt) {
                self.rec.rack.update(now, e.last_tx, e.end());
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
        self.snd.una = ack;
        self.retries = 0;
        self.pending.window_probe = false;
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
            Some(r) => self.rtt_sample(r),
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

    /// Mark the scoreboard entries inside a SACK block. Returns whether anything was
    /// newly SACKed.
    fn mark_sacked(&mut self, now: Instant, left: SeqNum, right: SeqNum, newest_once: &mut Option<Instant>) -> bool {
        // RFC 2018 / RFC 6675: ignore blocks outside what is outstanding.
        if right <= left || left < self.snd.una || right > self.snd.nxt {
            return false;
        }
        let min_rtt = self.rtt.min_rtt();
        let mut best: Option<(Instant, SeqNum)> = None;
        let any = self.sent.sack(left, right, |e| {
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

    /// RFC 9293 3.10.7.4, seventh (segment text) and eighth (FIN) checks.
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
        if !payload.is_empty() && self.orphan {
            // Data for a socket nobody will read (RFC 9293 3.10.4 / RFC 2525 2.17).
            self.error = Some(ConnError::Aborted);
            self.state = TcpState::Closed;
            self.timers.stop_retransmission();
            return Some(Reply::Rst { seq: self.snd.nxt, ack: None });
        }
        let had_ooo = self.rx.has_out_of_order();
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
        }
        // ACK policy (RFC 5681 4.2, RFC 9293 3.8.6.3): at once for out-of-order data,
        // for data that fills a hole, for duplicates; otherwise at least every second
        // full-sized segment, else within the delayed-ACK timeout.
        if occupies {
            let immediate = advanced == 0
                || had_ooo
                || self.rx.has_out_of_order()
                || self.ack_delay.is_none()
                || self.rcv.nxt.diff(self.rcv.last_ack_sent) >= 2 * self.rcv.mss.min(self.snd.mss) as i32;
            if immediate {
                self.pending.ack = true;
            } else if self.timers.get(Timer::DelayedAck).is_none() {
                if let Some(d) = self.ack_delay {
                    self.timers.set(Timer::DelayedAck, now + d);
                }
            }
        }
        if fin_at == Some(self.rcv.nxt) && fin_fits && !self.rx.has_out_of_order() {
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

    fn enter_time_wait(&mut self, now: Instant, cfg: &Config) {
        // RFC 9293 3.10.7.4: TIME-WAIT lasts 2*MSL.
        self.state = TcpState::TimeWait;
        self.timers.set(Timer::Close, now + 2 * cfg.msl);
        self.timers.stop_retransmission();
        self.timers.stop(Timer::DelayedAck);
    }

    /// Loss found outside recovery: enter fast recovery (RFC 6675 5 step 4, RFC 6582),
    /// reduce the window once for the episode, retransmit at once.
    fn maybe_enter_recovery(&mut self, now: Instant, lost: bool) {
        if self.rec.recovery_point.is_none() && self.rec.rto_point.is_none() && (lost || self.sent.lost_out() > 0) {
            self.rec.recovery_point = Some(self.snd.nxt);
            self.cc.on_congestion_event(now, self.flight_size(), self.snd.mss);
            self.rec.rtx_force = true;
            self.rec.tlp_end = None;
        }
    }

    /// The probe timeout (RFC 8985 7.2) if a tail loss probe may be sent now.
    fn pto(&self) -> Option<Duration> {
        let srtt = self.rtt.srtt()?;
        let eligible = self.opt.sack
            && self.rec.rack_tlp
            && self.rec.recovery_point.is_none()
            && self.rec.rto_point.is_none()
            && self.rec.tlp_end.is_none()
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
    fn rearm_rtx(&mut self, now: Instant) {
        match self.pto() {
            Some(p) => self.timers.arm_retransmission(Timer::TailLossProbe, now + p),
            None => self.timers.arm_retransmission(Timer::Rto, now + self.rtt.rto()),
        }
    }

    /// After sending new data (RFC 8985 7.2: (re)schedule the PTO; RFC 6298 5.1: a
    /// running RTO is left alone unless the PTO comes earlier).
    fn arm_after_new_data(&mut self, now: Instant) {
        match (self.pto(), self.timers.retransmission()) {
            (Some(p), Some((t, d))) if t == Timer::TailLossProbe || now + p < d => {
                self.timers.arm_retransmission(Timer::TailLossProbe, now + p);
            }
            (_, None) => self.rearm_rtx(now),
            _ => {}
        }
    }

    /// The persist timer (RFC 9293 3.8.6.1 zero-window probes; the override timeout of
    /// sender SWS avoidance, 3.8.6.2.1): armed when unsent data is held back and nothing
    /// is in flight to clock it out, unless another use of the retransmission timer is
    /// armed. It fires after the probe timeout when a tail loss probe would be allowed
    /// (it was once the same timer as the PTO and the RTO), else after the RTO, which
    /// every expiry doubles (`on_persist_timer`).
    fn arm_persist(&mut self, now: Instant) {
        if self.timers.retransmission().is_some() {
            return;
        }
        let pto = self.pto();
        self.persist_pto = pto.is_some();
        self.timers.arm_retransmission(Timer::Persist, now + pto.unwrap_or(self.rtt.rto()));
    }

    /// Data went out at SND.NXT: a persist timer becomes the retransmission timer of
    /// what is now in flight (the probe timeout if it was armed with it).
    fn persist_to_retransmission(&mut self) {
        if let Some((Timer::Persist, at)) = self.timers.retransmission() {
            let t = if self.persist_pto { Timer::TailLossProbe } else { Timer::Rto };
            self.timers.arm_retransmission(t, at);
        }
    }

    /// The handshake was abandoned (shutdown or abort in SYN-SENT / SYN-RECEIVED, or a
    /// passive SYN-RECEIVED gone back to LISTEN) with its timer running: the timer goes
    /// on as the retransmission timer of what is outstanding, the SYN included.
    fn handshake_timer_outlives_handshake(&mut self) {
        if let Some((Timer::Handshake, at)) = self.timers.retransmission() {
            self.persist_pto = false;
            let t = if self.snd.nxt > self.snd.una { Timer::Rto } else { Timer::Persist };
            self.timers.arm_retransmission(t, at);
        }
    }

    /// RFC 8985 6.2 step 5 (RACK_detect_loss): a segment sent before the most recently
    /// delivered one, and outstanding for longer than RACK.rtt + reo_wnd, is lost; for
    /// the others the reordering timer is armed. Only segments below RACK.end_seq can
    /// qualify (first transmissions go out in sequence order), so a clean transfer
    /// scans nothing. Returns whether anything was newly marked.
    fn rack_detect_loss(&mut self, now: Instant) -> bool {
        let Some(xmit) = self.rec.rack.xmit else { return false };
        // 6.2 step 4: the reordering window, a quarter of min_rtt.
        let reo_wnd = self.rtt.min_rtt().unwrap_or(Duration::ZERO) / 4;
        let wait = self.rec.rack.rtt + reo_wnd;
        let mut next: Option<Instant> = None;
        let mut any = false;
        for i in 0..self.sent.len() {
            let Some(e) = self.sent.get(i) else { break };
            if e.seq >= self.rec.rack.end_seq {
                break;
            }
            if matches!(e.state, SegState::Sacked | SegState::Lost) {
                continue;
            }
            let before = e.last_tx < xmit || (e.last_tx == xmit && e.end() <= self.rec.rack.end_seq);
            if !before {
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

    /// RFC 6298 2.2 / 2.3.
    fn rtt_sample(&mut self, r: Duration) {
        self.rtt.sample(r);
    }

    // ------------------------------------------------------------ output

    /// Window field for an outgoing non-SYN segment, recording the advertised edge.
    fn advertise(&mut self) -> u16 {
        let wnd = self.rcv_wnd();
        let field = (wnd >> self.rcv.wscale).min(u16::MAX as usize);
        let edge = self.rcv.nxt + (field << self.rcv.wscale);
        if edge > self.rcv.adv {
            self.rcv.adv = edge;
        }
        field as u16
    }

    fn arm_rtx(&mut self, now: Instant) {
        if self.timers.retransmission().is_none() {
            self.rearm_rtx(now);
        }
    }

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
        let cwnd = self.cc.window();

        // 0. A tail loss probe (RFC 8985 7.3): new data if the peer's window allows,
        //    else the last segment again; either way regardless of cwnd.
        if self.pending.tail_loss_probe {
            self.pending.tail_loss_probe = false;
            let data_end = self.data_end();
            let wnd_edge = self.snd.una + self.snd.wnd;
            let room = if wnd_edge > self.snd.nxt { wnd_edge - self.snd.nxt } else { 0 };
            if self.snd.nxt < data_end && room > 0 {
                let len = (data_end - self.snd.nxt).min(self.max_payload()).min(room).min(scratch.len());
                let out = self.send_new(now, len, scratch);
                self.rec.tlp_end = Some(self.snd.nxt);
                return Some(out);
            }
            if let Some(i) = self.sent.last_unsacked() {
                self.rec.tlp_end = Some(self.snd.nxt);
                return Some(self.retransmit(now, i, scratch));
            }
        }

        // 1. Retransmit what is marked lost (RFC 6675 NextSeg rule 1; after a timeout,
        //    everything unSACKed).
        if let Some(i) = self.sent.first_lost() {
            let pipe = self.pipe();
            if let Some(&e) = self.sent.get(i) {
                if self.rec.rtx_force || pipe + e.len as usize <= cwnd {
                    self.rec.rtx_force = false;
                    // Against a zero window this retransmission is the window probe.
                    self.pending.window_probe = false;
                    let out = self.retransmit(now, i, scratch);
                    self.arm_rtx(now);
                    return Some(out);
                }
            }
        }

        // 2. New data, within the peer's window and the congestion window.
        let data_end = self.data_end();
        if self.snd.nxt < data_end {
            let avail = data_end - self.snd.nxt;
            let wnd_edge = self.snd.una + self.snd.wnd;
            let room = if wnd_edge > self.snd.nxt { wnd_edge - self.snd.nxt } else { 0 };
            let cwnd_room = cwnd.saturating_sub(self.pipe());
            let max_payload = self.max_payload();
            let mut len = avail.min(max_payload).min(room).min(cwnd_room).min(scratch.len());
            if self.pending.window_probe {
                // The persist timer fired (RFC 9293 3.8.6.1 zero-window probe, and the
                // SWS override timeout of 3.8.6.2.1): send what fits, or one byte
                // beyond a zero window.
                len = len.max(1).min(avail);
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
        }

        // 3. A FIN on its own.
        if self.close.fin_queued && self.close.fin_seq.is_none() && self.snd.nxt == data_end {
            let seq = self.snd.nxt;
            self.close.fin_seq = Some(seq);
            self.push_sent(now, seq, 1, true);
            self.arm_rtx(now);
            return Some(self.segment(now, seq, TcpFlags::FIN | TcpFlags::ACK, 0));
        }

        // 4. A keepalive probe (RFC 9293 3.8.4): SEG.SEQ = SND.NXT - 1, no data.
        if self.pending.keepalive_probe {
            self.pending.keepalive_probe = false;
            let seq = self.snd.una - 1;
            return Some(self.segment(now, seq, TcpFlags::ACK, 0));
        }

        self.emit_ack_if_pending(now)
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
        self.segment(now, seq, flags, len)
    }

    /// Send scoreboard entry `i` again, with its original boundaries.
    fn retransmit(&mut self, now: Instant, i: usize, scratch: &mut [u8]) -> Outgoing {
        let e = self.sent.get(i).copied().expect("retransmit: index on the scoreboard");
        let data = e.data_len().min(scratch.len());
        self.tx.copy_out(e.seq - self.tx_seq0(), data, scratch);
        self.sent.on_retransmit(i, now);
        self.retransmits += 1;
        let mut flags = TcpFlags::ACK;
        if e.fin {
            flags |= TcpFlags::FIN;
        }
        if data > 0 && e.end() >= self.snd.nxt {
            flags |= TcpFlags::PSH;
        }
        self.segment(now, e.seq, flags, data)
    }

    fn push_sent(&mut self, now: Instant, seq: SeqNum, len: usize, fin: bool) {
        self.sent.push(now, seq, len, fin);
        self.snd.nxt = seq + len;
        self.persist_to_retransmission();
    }

    /// Every non-SYN segment: ACK = RCV.NXT, the window, timestamps and (on pure ACKs)
    /// SACK blocks.
    fn segment(&mut self, now: Instant, seq: SeqNum, flags: TcpFlags, payload_len: usize) -> Outgoing {
        self.pending.ack = false;
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

    fn emit_ack_if_pending(&mut self, now: Instant) -> Option<Outgoing> {
        if !self.pending.ack {
            return None;
        }
        let seq = self.snd.nxt;
        Some(self.segment(now, seq, TcpFlags::ACK, 0))
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
            self.timers.arm_retransmission(Timer::Handshake, now + self.rtt.rto());
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

    // ------------------------------------------------------------ timers

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
        match self.timers.retransmission() {
            Some((t, at)) if now >= at => {
                self.timers.stop_retransmission();
                match t {
                    Timer::Handshake => self.on_handshake_timer(now, cfg),
                    Timer::TailLossProbe => self.on_tail_loss_probe_timer(now),
                    Timer::Persist => self.on_persist_timer(),
                    _ => self.on_rto(now, cfg),
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
        self.timers.arm_retransmission(Timer::Rto, now + self.rtt.rto());
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
            self.error = Some(ConnError::TimedOut);
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
        // RFC 6675 5.1: after a timeout everything not SACKed is lost.
        self.sent.mark_lost_on_timeout();
        self.rec.recovery_point = None;
        self.rec.rto_point = Some(self.snd.nxt);
        self.rec.dup_acks = 0;
        self.rec.rtx_force = true;
        self.rec.tlp_end = None;
        self.pending.tail_loss_probe = false;
        self.timers.stop(Timer::RackReorder);
    }

    /// Housekeeping: release the buffer memory of a connection that holds nothing and
    /// has been quiet for `idle` (an idle connection then costs only its control
    /// block; a busy one keeps its buffers, so nothing is allocated per packet).
    /// Returns the bytes still allocated.
    pub fn trim(&mut self, now: Instant, idle: Duration) -> usize {
        if now.saturating_duration_since(self.last_rx) < idle {
            return self.allocated();
        }
        self.rx.release_if_empty();
        self.tx.release_if_empty();
        self.sent.release_if_empty();
        self.allocated()
    }

    fn allocated(&self) -> usize {
        self.rx.allocated() + self.tx.allocated() + self.sent.allocated()
    }

    /// A snapshot of the control block (the `TCP_INFO` of this stack).
    pub fn info(&self) -> super::TcpInfo {
        super::TcpInfo {
            state: self.state,
            iss: self.snd.iss,
            irs: self.rcv.irs,
            snd_una: self.snd.una,
            snd_nxt: self.snd.nxt,
            rcv_nxt: self.rcv.nxt,
            snd_wnd: self.snd.wnd,
            rcv_wnd: self.rcv_wnd(),
            snd_wscale: self.snd.wscale,
            rcv_wscale: self.rcv.wscale,
            mss: self.snd.mss,
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            congestion: self.cc.algorithm(),
            sack: self.opt.sack,
            timestamps: self.opt.ts,
            window_scaling: self.opt.ws,
            in_recovery: self.rec.recovery_point.is_some(),
            pipe: self.pipe(),
            sacked: self.sent.sacked_out(),
            out_of_order: self.rx.out_of_order_bytes(),
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            retransmits: self.retransmits,
        }
    }

    /// Internal consistency of the control block; `Err` names the first violation.
    /// Used by tests, proptests and fuzz targets after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{what}: {:?}", self.info()));
        if self.snd.una > self.snd.nxt {
            return fail("SND.UNA > SND.NXT");
        }
        if self.tx.len() > self.tx.capacity() {
            return fail("send buffer over its bound");
        }
        if self.rx.readable() > self.rx.capacity() {
            return fail("receive buffer over its bound");
        }
        if self.state != TcpState::Closed && self.is_synchronized() {
            let fin = self.close.fin_seq.is_some() as usize;
            if self.snd.nxt > self.data_end() + fin && !self.close.fin_acked {
                return fail("sent beyond the queued data");
            }
            if self.rcv.adv < self.rcv.nxt {
                return fail("advertised right edge behind RCV.NXT");
            }
            // The scoreboard covers exactly [SND.UNA, SND.NXT) once past the SYN.
            if self.snd.una != self.snd.iss {
                if let Err(e) = self.sent.check(self.snd.una, self.snd.nxt) {
                    return fail(e);
                }
            }
        }
        if self.close.fin_received
            && !matches!(
                self.state,
                TcpState::CloseWait | TcpState::Closing | TcpState::LastAck | TcpState::TimeWait | TcpState::Closed
            )
        {
            return fail("peer FIN received but state does not reflect it");
        }
        if self.close.fin_acked && !self.close.fin_queued {
            return fail("FIN acknowledged but never queued");
        }
        if self.state == TcpState::SynSent && self.snd.una != self.snd.iss {
            return fail("SYN-SENT with SND.UNA past ISS");
        }
        if self.snd.mss == 0 || self.cc.window() == 0 {
            return fail("zero MSS or congestion window");
        }
        // The uses of the retransmission timer match what is outstanding.
        let outstanding = self.snd.nxt > self.snd.una;
        match self.timers.retransmission().map(|(t, _)| t) {
            Some(Timer::Handshake) if !matches!(self.state, TcpState::SynSent | TcpState::SynReceived) => {
                return fail("handshake timer outside the handshake");
            }
            Some(Timer::Rto | Timer::TailLossProbe) if !outstanding => {
                return fail("retransmission timer with nothing outstanding");
            }
            Some(Timer::Persist) if outstanding => return fail("persist timer with data in flight"),
            _ => {}
        }
        Ok(())
    }
}
