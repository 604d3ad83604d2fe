//! One TCP connection: the transmission control block (RFC 9293 3.3.1) and the
//! connection's life outside segment processing: construction (active open, or a SYN
//! in LISTEN), the application's calls, accessors, `info` and `check_invariants`.
//!
//! The state machine is spread by concern, as in Linux (tcp_input / tcp_output /
//! tcp_timer / tcp_recovery) and quinn-proto:
//! - `input.rs`: segment arrival, RFC 9293 3.10.7 ([`Conn::process`]);
//! - `output.rs`: what to send next ([`Conn::dispatch`]);
//! - `timer.rs`: the timer table and what each timer does ([`Conn::deadline`],
//!   [`Conn::on_timer`]);
//! - `recovery.rs`: SACK, loss detection, fast recovery, RACK-TLP;
//! - `scoreboard.rs`, `send_buf.rs`, `recv_buf.rs`, `rtt.rs`, `congestion/`: the parts
//!   of the control block that are types of their own.
//!
//! Send side (RFC 9293 3.3.1):
//! ```text
//!   ISS [SYN]  SND.UNA ............ SND.NXT ............ data_end [FIN]
//!              |<--- sent: scoreboard --->|<-- unsent -->|
//!              |<---------------- tx (unacknowledged bytes) --------->|
//! ```
//! `tx` holds every byte not yet acknowledged; `sent` has one entry per transmitted
//! segment between SND.UNA and SND.NXT in one of the states Outstanding, Lost,
//! Retransmitted, SACKed (the RFC 6675 scoreboard). Loss recovery retransmits only what
//! is marked lost: holes the peer's SACK blocks reveal, the first segment after three
//! duplicate ACKs or a NewReno partial ACK (RFC 6582), the flight after a timeout.
//!
//! Receive side: [`RecvBuffer`] keeps out-of-order segments inside the window and
//! reports them as SACK blocks.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Config, Keepalive};
use crate::error::{ConnError, RecvError, SendError};
use crate::seq::SeqNum;
use crate::socket::Readiness;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

use super::autotune::BufferTuning;
use super::congestion::{CongestionAlgorithm, CongestionControl, Controller};
use super::pacing::Pacer;
use super::rate::RateEstimator;
use super::recovery::Recovery;
use super::recv_buf::RecvBuffer;
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::send_buf::SendBuffer;
use super::timer::{Timer, TimerTable};
use super::{TcpReject, TcpState};

/// RFC 9293 3.7.1: the MSS to assume when the peer sends no MSS option.
const DEFAULT_MSS_V4: usize = 536;
/// RFC 9293 3.7.1 / RFC 8200 5: 1280 - 40 - 20.
const DEFAULT_MSS_V6: usize = 1220;
/// RFC 7323 2.3: the largest window scale shift.
const MAX_WINDOW_SCALE: u8 = 14;
/// Timestamp option length including the two NOPs that align it (RFC 7323 appendix A).
const TS_OPTION_LEN: usize = 12;
/// The smallest MSS we send with (what `apply_syn_options` allows too).
const MIN_MSS: usize = 64;

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
    /// Our SYN-ACK was a stateless SYN cookie (RFC 4987 3.6): its send time was not
    /// kept (see `ack_syn`).
    pub syn_cookie: bool,
    /// What is in flight is one octet sent beyond a zero window as a window probe
    /// (RFC 9293 3.8.6.1); see `take_back_window_probe`.
    pub zero_window_probe: bool,
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
    /// Where the peer's FIN lies when it came beyond RCV.NXT: it waits, like the
    /// out-of-order data before it, until RCV.NXT reaches it (RFC 9293 3.10.7.4:
    /// segments are processed in sequence). Kept here rather than as a range of the
    /// receive buffer, whose ranges each hold at least one byte (that bounds their
    /// number by the window).
    pub fin_pending: Option<SeqNum>,
    /// shutdown(Read): incoming data is acknowledged and discarded.
    pub rd_shut: bool,
}

/// Segments owed to the peer that `dispatch` sends at its next call, whatever the
/// windows say about data.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pending {
    /// An ACK (immediate ACK rules, a window update, a challenge ACK...).
    pub ack: bool,
    /// The owed ACK is a duplicate ACK (out-of-order data is held): it goes out on its
    /// own, not on a data segment, so the peer counts it (RFC 5681 2 and 4.2: a
    /// duplicate ACK carries no data) and sees its SACK blocks (RFC 2018 4).
    pub dup_ack: bool,
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
    /// Data octets the peer acknowledged, and data octets received in order (RFC 4898's
    /// HCThruOctetsAcked / HCThruOctetsReceived, Linux's tcpi_bytes_acked/_received).
    pub bytes_acked: u64,
    pub bytes_received: u64,

    pub(super) snd: SendSeq,
    pub(super) rcv: RecvSeq,
    pub(super) opt: Negotiated,

    /// Every byte not yet acknowledged, sent or not.
    pub(super) tx: SendBuffer,
    pub(super) rx: RecvBuffer,
    /// Auto-tuning of both buffers (`autotune.rs`).
    pub(super) tune: BufferTuning,
    /// One entry per segment in [SND.UNA, SND.NXT).
    pub(super) sent: Scoreboard,
    pub(super) rec: Recovery,
    pub(super) cc: Controller,
    /// Delivery rate estimation (`rate.rs`) and pacing (`pacing.rs`; `pacing`: pace by
    /// the window when the congestion controller sets no rate of its own).
    pub(super) rate: RateEstimator,
    pub(super) pacer: Pacer,
    pub(super) pacing: bool,

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
    /// Consecutive timeouts of the oldest outstanding segment.
    pub(super) retries: u32,
    pub(super) keepalive: Option<Keepalive>,
    /// Keepalive probes sent without an answer.
    pub(super) ka_probes: u32,
    /// When the last acceptable segment arrived (keepalive, housekeeping).
    pub(super) last_rx: Instant,
    pub(super) user_timeout: Option<Duration>,

    // ---- ICMP, path MTU, rate limits, memory
    /// The last soft error an ICMP message reported (RFC 1122 4.2.3.9: destination
    /// unreachable codes 0, 1, 5, time exceeded...): kept, shown in `TcpInfo`, and the
    /// error the connection reports if it times out later (as Linux's `sk_err_soft`).
    pub(super) soft_error: Option<ConnError>,
    /// The path MTU this connection sends with (RFC 1191, RFC 8201): the link MTU,
    /// lowered by validated "fragmentation needed" / "packet too big" messages.
    pub(super) pmtu: usize,
    /// When the last ACK answering a rejected segment went out (RFC 5961 7 rate limit).
    pub(super) last_oow_ack: Option<Instant>,
    /// ACKs for rejected segments the rate limit suppressed, not yet added to `Stats`
    /// (the stack takes them after a rejected segment).
    pub acks_rate_limited: u64,
}

pub(crate) fn window_shift_for(buf: usize) -> u8 {
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
            bytes_acked: 0,
            bytes_received: 0,
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
                syn_cookie: false,
                zero_window_probe: false,
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
                ts_offset: Conn::ts_offset_for(iss),
            },
            tx: SendBuffer::new(cfg.tcp_tx_buffer),
            rx: RecvBuffer::new(cfg.tcp_rx_buffer),
            tune: BufferTuning::new(cfg.tcp_rx_buffer, cfg.tcp_rx_buffer_max, cfg.tcp_tx_buffer, cfg.tcp_tx_buffer_max),
            sent: Scoreboard::new(),
            rec: Recovery::new(iss, cfg.rack_tlp),
            cc: Controller::new(cfg.congestion, our_mss),
            rate: RateEstimator::default(),
            pacer: Pacer::default(),
            pacing: cfg.pacing,
            close: CloseState::default(),
            error: None,
            pending: Pending::default(),
            ack_delay: cfg.ack_delay,
            nodelay: false,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            timers: TimerTable::default(),
            retries: 0,
            keepalive: cfg.keepalive,
            ka_probes: 0,
            last_rx: now,
            user_timeout: cfg.user_timeout,
            soft_error: None,
            pmtu: cfg.mtu,
            last_oow_ack: None,
            acks_rate_limited: 0,
        }
    }

    /// Our timestamp clock's per-connection offset (RFC 7323 5.4), a function of the
    /// ISS: a SYN cookie's connection (whose ISS is the cookie) gets the clock its
    /// stateless SYN-ACK used.
    pub(crate) fn ts_offset_for(iss: SeqNum) -> u32 {
        iss.0.rotate_left(13) ^ 0x5bd1_e995
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
        c.rcv.wscale = if cfg.window_scaling { c.window_shift() } else { 0 };
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

    /// A connection from a valid SYN cookie (RFC 4987 3.6; `syncookie.rs`): what the
    /// SYN would have set up, rebuilt from the cookie ACK `ack` (SEG.SEQ - 1 was the
    /// peer's ISN, the cookie our ISS) and what the cookie carried (the peer's MSS and,
    /// through the timestamps, window scale and SACK-permitted). It starts in
    /// SYN-RECEIVED with the SYN-ACK counted as sent once; the caller then hands it
    /// `ack`, which completes the handshake like any ACK of a SYN-ACK. The SYN-ACK's
    /// send time was not kept: only the echoed timestamp can time it (`ack_syn`).
    #[allow(clippy::too_many_arguments)]
    pub fn from_cookie(
        cfg: &Config,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        ack: &TcpRepr<'_>,
        mss: u16,
        wscale: Option<u8>,
        sack: bool,
    ) -> Conn {
        let ts = ack.options.timestamps.filter(|&(_, tsecr)| tsecr != 0);
        let syn = TcpRepr {
            seq: ack.seq - 1,
            ack: SeqNum(0),
            flags: TcpFlags::SYN,
            window: ack.window,
            urgent: 0,
            options: TcpOptions {
                mss: Some(mss),
                window_scale: if ts.is_some() { wscale } else { None },
                sack_permitted: ts.is_some() && sack,
                timestamps: ts.map(|(tsval, _)| (tsval, 0)),
                ..TcpOptions::default()
            },
            payload: &[],
            ..*ack
        };
        let mut c = Conn::accept_syn(cfg, now, local, remote, iss, &syn);
        c.snd.nxt = iss + 1;
        c.snd.syn_tx = 1;
        c.snd.syn_sent_at = now;
        c.snd.syn_cookie = true;
        c
    }

    /// Options of the peer's SYN (or SYN-ACK): MSS (RFC 9293 3.7.1), window scale
    /// (RFC 7323 2.2), SACK-permitted (RFC 2018 2), timestamps (RFC 7323 3.2). An option
    /// is in effect only when both SYNs carried it; `peer_*` hold what we offered or
    /// are willing to answer.
    pub(super) fn apply_syn_options(&mut self, now: Instant, o: &TcpOptions) {
        let peer_mss = match o.mss {
            Some(m) => m as usize,
            None => match self.remote {
                SocketAddr::V4(_) => DEFAULT_MSS_V4,
                SocketAddr::V6(_) => DEFAULT_MSS_V6,
            },
        };
        self.snd.mss = peer_mss.min(self.rcv.mss).min(self.pmtu_mss()).max(MIN_MSS);
        self.opt.ws = self.opt.ws_offer && o.window_scale.is_some();
        if self.opt.ws {
            self.snd.wscale = o.window_scale.unwrap_or(0).min(MAX_WINDOW_SCALE);
            self.rcv.wscale = self.window_shift();
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

    /// The MSS the path MTU allows.
    fn pmtu_mss(&self) -> usize {
        let ip = match self.remote {
            SocketAddr::V4(_) => 20,
            SocketAddr::V6(_) => 40,
        };
        self.pmtu.saturating_sub(ip + crate::wire::tcp::TCP_HEADER_LEN)
    }

    /// Start with a path MTU below the link MTU (one the stack remembers for the
    /// destination): before the SYN options are applied.
    pub fn set_initial_pmtu(&mut self, mtu: usize) {
        self.pmtu = self.pmtu.min(mtu);
        self.snd.mss = self.snd.mss.min(self.pmtu_mss()).max(MIN_MSS);
    }

    /// Our window scale: the shift that lets the largest receive buffer auto-tuning may
    /// reach be advertised (fixed at the handshake, RFC 7323 2.2).
    fn window_shift(&self) -> u8 {
        window_shift_for(self.rx.capacity().max(self.tune.rx_max as usize))
    }

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
    /// The socket's readiness as its API sees it (a level, not an event): readable with
    /// data queued or the read side finished (peer's FIN, shutdown(Read), closed);
    /// writable once established with at least a low-water mark of buffer free (a
    /// quarter of the buffer, at most 64 KiB: writers are woken for a useful amount, not
    /// for every byte an ACK frees); closed when it reached CLOSED (the outcome, reset,
    /// refusal or timeout, is in `error`).
    pub fn readiness(&self) -> Readiness {
        let mut r = Readiness::EMPTY;
        if self.state == TcpState::Closed {
            return Readiness::READABLE | Readiness::WRITABLE | Readiness::CLOSED;
        }
        if self.rx.readable() > 0 || self.close.fin_received || self.close.rd_shut {
            r |= Readiness::READABLE;
        }
        if matches!(self.state, TcpState::Established | TcpState::CloseWait) {
            let free = self.send_capacity();
            let lowat = ((free + self.send_queue()) / 4).clamp(1, 64 * 1024);
            if free >= lowat || self.close.fin_queued {
                r |= Readiness::WRITABLE;
            }
        } else if !matches!(self.state, TcpState::SynSent | TcpState::SynReceived) {
            // Closing: writes fail at once (EPIPE), so writers need not wait.
            r |= Readiness::WRITABLE;
        }
        r
    }

    pub fn is_synchronized(&self) -> bool {
        !matches!(self.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent)
    }
    pub fn rcv_nxt(&self) -> SeqNum {
        self.rcv.nxt
    }

    /// Sequence number of `tx[0]`.
    pub(super) fn tx_seq0(&self) -> SeqNum {
        if self.snd.una == self.snd.iss {
            self.snd.iss + 1
        } else {
            self.snd.una
        }
    }

    /// Sequence number just past the last queued data byte (where the FIN goes).
    pub(super) fn data_end(&self) -> SeqNum {
        self.tx_seq0() + self.tx.len()
    }

    /// Bytes in flight by the RFC 6675 pipe estimate: sent and not acknowledged,
    /// minus what the peer SACKed and what is lost and not yet retransmitted.
    pub(super) fn pipe(&self) -> usize {
        let outstanding = if self.snd.nxt > self.snd.una { self.snd.nxt - self.snd.una } else { 0 };
        outstanding.saturating_sub(self.sent.sacked_out() + self.sent.lost_out())
    }

    pub(super) fn flight_size(&self) -> usize {
        if self.snd.nxt > self.snd.una {
            self.snd.nxt - self.snd.una
        } else {
            0
        }
    }

    /// Whether at least a full-sized segment of data waits to be sent (windows aside).
    pub fn full_segment_unsent(&self) -> bool {
        let end = self.data_end();
        end > self.snd.nxt && end - self.snd.nxt >= self.max_payload()
    }

    /// Largest payload of a data segment: the MSS less the options every segment
    /// carries (RFC 9293 3.7.1: Eff.snd.MSS subtracts the TCP options).
    pub(super) fn max_payload(&self) -> usize {
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
    pub(super) fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.opt.ts_offset)
    }

    /// The receive window we would advertise now (bytes), keeping the right edge from
    /// moving left (RFC 9293 3.8.6), and with receiver SWS avoidance (RFC 9293
    /// 3.8.6.2.2, RFC 1122 4.2.3.3: MUST): a window below min(half the buffer, one MSS)
    /// is not offered (the right edge stays where it was), so a nearly full buffer
    /// offers no window rather than a few bytes, which would make the peer send runts
    /// or probe. (As Linux's __tcp_select_window; a window that is large already may
    /// move on by any amount.)
    pub(super) fn rcv_wnd(&self) -> usize {
        let free = self.rx.window();
        let max = (u16::MAX as usize) << self.rcv.wscale;
        // Round down to what the scaled field can express.
        let wnd = (free.min(max) >> self.rcv.wscale) << self.rcv.wscale;
        let committed = if self.rcv.adv > self.rcv.nxt { self.rcv.adv - self.rcv.nxt } else { 0 };
        if wnd <= committed || wnd < (self.rx.capacity() / 2).min(self.rcv.mss) {
            return committed;
        }
        wnd
    }

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
        // The writer is held back by the buffer: auto-sizing may grow it (autotune.rs).
        self.tune.tx_limited |= n < data.len();
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
        self.tune.on_read(n);
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

    /// RFC 5927 4.1: an ICMP error about this connection is believed only if the
    /// sequence number it quotes is in flight: SND.UNA <= seq < SND.NXT.
    pub fn icmp_seq_in_flight(&self, seq: SeqNum) -> bool {
        self.snd.una <= seq && seq < self.snd.nxt
    }

    /// A validated ICMP error (RFC 1122 4.2.3.9, RFC 5461; what Linux does): during a
    /// connection attempt (SYN-SENT, or an active SYN-RECEIVED) it ends the attempt
    /// with `error` (a port or protocol unreachable is `Refused`); an embryo of a
    /// listener (passive SYN-RECEIVED) is dropped on a hard error, as Linux drops the
    /// request; otherwise it is a soft error: recorded, not fatal. Returns whether the
    /// connection was ended.
    pub fn on_icmp_error(&mut self, error: ConnError, hard: bool) -> bool {
        let ends = match self.state {
            TcpState::SynSent => true,
            TcpState::SynReceived => self.active || hard,
            _ => false,
        };
        if ends {
            if self.active {
                self.error = Some(error);
            }
            self.state = TcpState::Closed;
            self.timers.stop_retransmission();
            self.tx.clear();
            self.sent.clear();
        } else {
            self.soft_error = Some(error);
        }
        ends
    }

    /// The path MTU went down to `mtu` (a validated "fragmentation needed", RFC 1191,
    /// or "packet too big", RFC 8201 5.2). The MSS follows (MTU - IP header - 20); every
    /// segment in flight larger than the new payload size is marked lost, to go again
    /// cut to size (`retransmit` splits them), at once and regardless of cwnd (Linux's
    /// `tcp_simple_retransmit`). The congestion window is left alone: a smaller MTU is
    /// not congestion. Returns false if `mtu` is not below the connection's current
    /// path MTU (an estimate is never raised by ICMP).
    pub fn on_path_mtu(&mut self, mtu: usize) -> bool {
        if mtu >= self.pmtu {
            return false;
        }
        self.pmtu = mtu;
        let ip = match self.remote {
            SocketAddr::V4(_) => 20,
            SocketAddr::V6(_) => 40,
        };
        let mss = mtu.saturating_sub(ip + crate::wire::tcp::TCP_HEADER_LEN).max(MIN_MSS);
        if mss >= self.snd.mss {
            return true;
        }
        self.snd.mss = mss;
        let max = self.max_payload();
        let mut marked = false;
        for i in 0..self.sent.len() {
            if self.sent.get(i).is_some_and(|e| !e.is_sacked() && e.data_len() > max) {
                marked |= self.sent.mark_lost(i);
            }
        }
        if marked {
            self.rec.rtx_force = true;
        }
        true
    }

    /// How much more storage the buffers may allocate: what is left of the stack's
    /// buffer memory budget (`Config::buffer_memory`).
    #[inline]
    pub fn set_buffer_growth(&mut self, bytes: usize) {
        self.rx.set_growth(bytes);
        self.tx.set_growth(bytes);
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
        self.shrink_buffers();
        self.allocated()
    }

    /// Buffer bytes this connection holds from the stack's auto-tuning budget.
    pub fn buffer_granted(&self) -> usize {
        self.tune.granted()
    }

    /// Bytes of buffer storage allocated (receive ring, send buffer, scoreboard).
    pub fn allocated(&self) -> usize {
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
            bytes_acked: self.bytes_acked,
            bytes_received: self.bytes_received,
            pmtu: self.pmtu,
            soft_error: self.soft_error,
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
        if let Some(fin) = self.close.fin_pending {
            if self.close.fin_received || fin <= self.rcv.nxt {
                return fail("peer FIN pending at or below RCV.NXT, or already processed");
            }
            if self.rx.out_of_order_end().is_some_and(|end| end > fin) {
                return fail("out-of-order data held beyond the peer's FIN");
            }
        }
        if self.state != TcpState::Closed
            && self.snd.zero_window_probe
            && (self.sent.len() != 1 || self.snd.una == self.snd.nxt)
        {
            return fail("window probe outstanding but not alone in flight");
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
