//! One TCP connection: the transmission control block and the RFC 9293 state machine.
//!
//! Input: [`Conn::process`] runs the segment-arrival rules of RFC 9293 3.10.7.3
//! (SYN-SENT) and 3.10.7.4 (every other state) on one segment. Output:
//! [`Conn::dispatch`] builds at most one segment per call (SYN, SYN-ACK, data, FIN,
//! pure ACK). Timers: [`Conn::deadline`] / [`Conn::on_timer`].
//!
//! Sequence space of the send side (RFC 9293 3.3.1):
//! ```text
//!   ISS  [SYN]  tx[0] ............ tx[len-1]  [FIN]
//!        ^snd_una (until the SYN is acked)
//! ```
//! `tx` holds every byte not yet acknowledged; `tx_seq0()` is the sequence number of
//! `tx[0]`. `snd_nxt` is the next sequence number to send; `snd_max` the highest ever
//! sent (they differ after a retransmission timeout rewinds `snd_nxt`).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Config;
use crate::seq::SeqNum;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

use super::TcpState;

/// RFC 9293 3.7.1: the MSS to assume when the peer sends no MSS option.
const DEFAULT_MSS_V4: usize = 536;
/// RFC 9293 3.7.1 / RFC 8200 5: 1280 - 40 - 20.
const DEFAULT_MSS_V6: usize = 1220;
/// RFC 7323 2.3: the largest window scale shift.
const MAX_WINDOW_SCALE: u8 = 14;
/// RFC 6298 (2.4): clock granularity G used in the RTO formula.
const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);
/// RFC 6928: initial window of 10 segments (bounded below by 2 segments).
const INITIAL_WINDOW_SEGMENTS: usize = 10;

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

/// What `process` asks the stack to do besides what the connection sends itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    None,
    /// Send a RST outside the connection's own flow (RFC 9293 3.10.7.3/4):
    /// `<SEQ=seq><CTL=RST>` or, with `ack`, `<SEQ=seq><ACK=ack><CTL=RST,ACK>`.
    Rst { seq: SeqNum, ack: Option<SeqNum> },
}

/// Why a segment was not accepted (for counters and traces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Rejected(&'static str),
}

pub(crate) struct Conn {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Opened by `connect` (true) or from a listener (false); decides what a RST in
    /// SYN-RECEIVED means (RFC 9293 3.10.7.4, second check).
    pub active: bool,

    // ---- send sequence variables (RFC 9293 3.3.1)
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    snd_max: SeqNum,
    /// Peer's window, already scaled.
    snd_wnd: usize,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    /// Largest window the peer ever offered (for sender SWS avoidance, RFC 9293 3.8.6.2.1).
    max_snd_wnd: usize,
    /// Shift applied to the peer's window fields (RFC 7323 2.2).
    snd_wscale: u8,
    /// Effective send MSS: min(peer's MSS option, our MTU-derived MSS).
    mss: usize,

    // ---- receive sequence variables
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// Shift we apply to the windows we advertise (RFC 7323 2.2).
    rcv_wscale: u8,
    /// Right edge of the window last advertised: RCV.NXT + RCV.WND at that time.
    /// RFC 9293 3.8.6: the right edge must not move left.
    rcv_adv: SeqNum,
    /// MSS we advertised (MTU-derived).
    our_mss: usize,

    // ---- buffers
    tx: VecDeque<u8>,
    tx_cap: usize,
    rx: VecDeque<u8>,
    rx_cap: usize,

    // ---- close bookkeeping
    /// The application asked to send FIN after `tx` (shutdown(Write) or close).
    fin_queued: bool,
    /// Our FIN has been acknowledged.
    fin_was_acked: bool,
    /// The peer's FIN has been received (in order).
    fin_received: bool,
    /// The peer's SYN carried a window scale option (so ours may be sent, RFC 7323 2.2).
    peer_ws: bool,
    /// shutdown(Read): incoming data is acknowledged and discarded.
    rd_shut: bool,
    /// The application released its handle.
    pub orphan: bool,
    /// Terminal error to report to the application (reset, refused, timed out).
    error: Option<io::ErrorKind>,

    // ---- output flags
    ack_pending: bool,
    nodelay: bool,

    // ---- timers (RFC 6298)
    rto: Duration,
    rto_min: Duration,
    rto_max: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// One segment being timed (Karn's algorithm: never a retransmitted one).
    rtt_probe: Option<(SeqNum, Instant)>,
    rtx_deadline: Option<Instant>,
    /// Consecutive timeouts of the oldest outstanding segment.
    retries: u32,
    /// Zero-window probe due (persist timer fired).
    probe_due: bool,
    /// TIME-WAIT expiry (2*MSL) or the orphan FIN-WAIT-2 timeout.
    close_deadline: Option<Instant>,

    // ---- congestion control (RFC 5681), the minimum to not flood a path
    cwnd: usize,
    ssthresh: usize,
    dup_acks: u32,
    /// Retransmit the first unacknowledged segment at the next dispatch (fast
    /// retransmit, RFC 5681 3.2).
    fast_rtx: bool,
    /// Retransmissions performed (for `Stats::tcp_retransmits`).
    pub retransmits: u64,
}

fn window_shift_for(buf: usize) -> u8 {
    let mut s = 0u8;
    while s < MAX_WINDOW_SCALE && (buf >> s) > u16::MAX as usize {
        s += 1;
    }
    s
}

impl Conn {
    fn new(cfg: &Config, local: SocketAddr, remote: SocketAddr, iss: SeqNum, active: bool) -> Conn {
        let our_mss = cfg.mss_for(remote.ip()) as usize;
        Conn {
            state: TcpState::Closed,
            local,
            remote,
            active,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: SeqNum(0),
            max_snd_wnd: 0,
            snd_wscale: 0,
            mss: our_mss,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_wscale: 0,
            rcv_adv: SeqNum(0),
            our_mss,
            tx: VecDeque::new(),
            tx_cap: cfg.tcp_tx_buffer.max(1),
            rx: VecDeque::new(),
            rx_cap: cfg.tcp_rx_buffer.max(1),
            fin_queued: false,
            fin_was_acked: false,
            fin_received: false,
            peer_ws: false,
            rd_shut: false,
            orphan: false,
            error: None,
            ack_pending: false,
            nodelay: false,
            rto: cfg.rto_initial,
            rto_min: cfg.rto_min,
            rto_max: cfg.rto_max,
            srtt: None,
            rttvar: Duration::ZERO,
            rtt_probe: None,
            rtx_deadline: None,
            retries: 0,
            probe_due: false,
            close_deadline: None,
            cwnd: 0,
            ssthresh: usize::MAX,
            dup_acks: 0,
            fast_rtx: false,
            retransmits: 0,
        }
    }

    /// Active open (RFC 9293 3.10.1, CLOSED + OPEN(active)): SYN-SENT; the SYN goes out
    /// at the next dispatch.
    pub fn connect(cfg: &Config, local: SocketAddr, remote: SocketAddr, iss: SeqNum) -> Conn {
        let mut c = Conn::new(cfg, local, remote, iss, true);
        // We always offer window scaling on an active open (RFC 7323 2.2); it takes
        // effect only if the SYN-ACK carries the option too.
        c.rcv_wscale = window_shift_for(c.rx_cap);
        c.state = TcpState::SynSent;
        c
    }

    /// Passive open: a listener got an acceptable SYN (RFC 9293 3.10.7.2, LISTEN, third
    /// check). The connection starts in SYN-RECEIVED and answers with SYN-ACK.
    pub fn accept_syn(cfg: &Config, local: SocketAddr, remote: SocketAddr, iss: SeqNum, seg: &TcpRepr<'_>) -> Conn {
        let mut c = Conn::new(cfg, local, remote, iss, false);
        c.irs = seg.seq;
        c.rcv_nxt = seg.seq + 1;
        c.apply_syn_options(&seg.options, true);
        // RFC 7323 2.2: the window field of a SYN is never scaled.
        c.snd_wnd = seg.window as usize;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = seg.seq;
        c.snd_wl2 = seg.ack;
        c.rcv_adv = c.rcv_nxt + c.rx_cap.min(u16::MAX as usize);
        c.state = TcpState::SynReceived;
        c.init_cwnd();
        c
    }

    /// Options of the peer's SYN: MSS (RFC 9293 3.7.1) and window scale (RFC 7323 2.2,
    /// both sides must send it for it to be in effect).
    fn apply_syn_options(&mut self, o: &TcpOptions, passive: bool) {
        let peer_mss = match o.mss {
            Some(m) => m as usize,
            None => match self.remote {
                SocketAddr::V4(_) => DEFAULT_MSS_V4,
                SocketAddr::V6(_) => DEFAULT_MSS_V6,
            },
        };
        self.mss = peer_mss.min(self.our_mss).max(64);
        match o.window_scale {
            Some(shift) => {
                self.peer_ws = true;
                self.snd_wscale = shift.min(MAX_WINDOW_SCALE);
                if passive {
                    self.rcv_wscale = window_shift_for(self.rx_cap);
                }
            }
            None => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
    }

    fn init_cwnd(&mut self) {
        // RFC 6928 2: min(10*MSS, max(2*MSS, 14600)).
        self.cwnd = (INITIAL_WINDOW_SEGMENTS * self.mss).min((2 * self.mss).max(14600));
    }

    // ------------------------------------------------------------ accessors

    pub fn error(&self) -> Option<io::ErrorKind> {
        self.error
    }
    pub fn recv_queue(&self) -> usize {
        self.rx.len()
    }
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }
    pub fn send_capacity(&self) -> usize {
        self.tx_cap - self.tx.len()
    }
    pub fn set_nodelay(&mut self, v: bool) {
        self.nodelay = v;
    }
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }
    pub fn is_synchronized(&self) -> bool {
        !matches!(self.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent)
    }

    /// Sequence number of `tx[0]`: after the SYN while the SYN is unacknowledged.
    fn tx_seq0(&self) -> SeqNum {
        if self.snd_una == self.iss { self.iss + 1 } else { self.snd_una }
    }

    /// Sequence number just past the last queued data byte (where a FIN would go).
    fn data_end(&self) -> SeqNum {
        self.tx_seq0() + self.tx.len()
    }

    fn fin_acked(&self) -> bool {
        self.fin_was_acked
    }

    fn bytes_in_flight(&self) -> usize {
        self.snd_max - self.snd_una
    }

    /// The receive window we would advertise now, unscaled (bytes), keeping the right
    /// edge from moving left (RFC 9293 3.8.6).
    fn rcv_wnd(&self) -> usize {
        let free = self.rx_cap - self.rx.len();
        let max = (u16::MAX as usize) << self.rcv_wscale;
        // Round down to what the scaled field can express.
        let wnd = (free.min(max) >> self.rcv_wscale) << self.rcv_wscale;
        let committed = if self.rcv_adv > self.rcv_nxt { self.rcv_adv - self.rcv_nxt } else { 0 };
        wnd.max(committed)
    }

    // ------------------------------------------------------------ application calls

    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        if self.fin_queued {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "write side shut down"));
        }
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => return Err(io::ErrorKind::WouldBlock.into()),
            TcpState::Established | TcpState::CloseWait => {}
            _ => return Err(io::ErrorKind::BrokenPipe.into()),
        }
        let n = data.len().min(self.send_capacity());
        if n == 0 {
            return if data.is_empty() { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        self.tx.extend(&data[..n]);
        Ok(n)
    }

    /// Returns the bytes read and whether a window update should be sent.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rx.is_empty() {
            if self.fin_received || self.rd_shut {
                return Ok(0);
            }
            if let Some(e) = self.error {
                return Err(e.into());
            }
            return match self.state {
                TcpState::Closed => Ok(0),
                _ => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.rx.len());
        let (a, b) = self.rx.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        if n > na {
            buf[na..n].copy_from_slice(&b[..n - na]);
        }
        self.rx.drain(..n);
        if self.rx.is_empty() && self.rx.capacity() > 64 * 1024 {
            // Give back memory held by an idle connection (buffers grow on demand).
            self.rx.shrink_to(0);
        }
        // Window update (RFC 9293 3.8.6.2.2, receiver SWS avoidance): announce the
        // reopened window once it grew by min(half the buffer, one MSS).
        if self.is_synchronized() && !self.fin_received {
            let new_edge = self.rcv_nxt + self.rcv_wnd();
            let grown = if new_edge > self.rcv_adv { new_edge - self.rcv_adv } else { 0 };
            if grown >= (self.rx_cap / 2).min(self.our_mss) {
                self.ack_pending = true;
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
                self.fin_queued = true;
                self.state = TcpState::FinWait1;
            }
            TcpState::CloseWait => {
                self.fin_queued = true;
                self.state = TcpState::LastAck;
            }
            _ => {}
        }
    }

    pub fn shutdown_read(&mut self) {
        self.rd_shut = true;
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
            self.close_deadline = Some(now + 2 * cfg.msl);
        }
        false
    }

    /// RST for an abort (RFC 9293 3.10.5): `<SEQ=SND.NXT><CTL=RST>` when synchronized.
    pub fn abort(&mut self) -> Option<Reply> {
        let r = if self.is_synchronized() && self.state != TcpState::TimeWait {
            Some(Reply::Rst { seq: self.snd_nxt, ack: None })
        } else {
            None
        };
        self.state = TcpState::Closed;
        r
    }

    // ------------------------------------------------------------ segment arrival

    /// RFC 9293 3.10.7.3 / 3.10.7.4. The caller has found this connection by its
    /// 4-tuple and verified the checksum.
    pub fn process(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> (Verdict, Reply) {
        match self.state {
            TcpState::Closed | TcpState::Listen => (Verdict::Rejected("closed"), Reply::None),
            TcpState::SynSent => self.process_syn_sent(now, cfg, seg),
            _ => self.process_synchronized(now, cfg, seg),
        }
    }

    fn process_syn_sent(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> (Verdict, Reply) {
        let f = seg.flags;
        // First: the ACK bit (RFC 9293 3.10.7.3).
        let mut ack_ok = false;
        if f.ack() {
            if seg.ack <= self.iss || seg.ack > self.snd_max {
                if f.rst() {
                    return (Verdict::Rejected("bad ack on RST in SYN-SENT"), Reply::None);
                }
                return (Verdict::Rejected("bad ack in SYN-SENT"), Reply::Rst { seq: seg.ack, ack: None });
            }
            ack_ok = self.snd_una < seg.ack && seg.ack <= self.snd_max;
        }
        // Second: RST. Only an acceptable ACK makes it credible.
        if f.rst() {
            if ack_ok {
                self.error = Some(io::ErrorKind::ConnectionRefused);
                self.state = TcpState::Closed;
                self.rtx_deadline = None;
                return (Verdict::Accepted, Reply::None);
            }
            return (Verdict::Rejected("RST without ACK in SYN-SENT"), Reply::None);
        }
        // Fourth: SYN.
        if !f.syn() {
            return (Verdict::Rejected("no SYN in SYN-SENT"), Reply::None);
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.apply_syn_options(&seg.options, false);
        self.snd_wnd = seg.window as usize; // RFC 7323 2.2: unscaled in a SYN
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        self.init_cwnd();
        self.rcv_adv = self.rcv_nxt + self.rcv_wnd();
        if ack_ok {
            self.ack_advance(now, seg.ack);
            self.state = TcpState::Established;
            self.ack_pending = true;
            // Data or FIN on the SYN-ACK: continue at the sixth step.
            let text = TcpRepr { seq: seg.seq + 1, flags: TcpFlags(f.0 & !TcpFlags::SYN.0), ..*seg };
            self.process_text_and_fin(now, cfg, &text);
            (Verdict::Accepted, Reply::None)
        } else {
            // Simultaneous open (RFC 9293 figure 8): SYN-RECEIVED, answer SYN-ACK by
            // rewinding snd_nxt so dispatch resends our SYN with ACK set.
            self.state = TcpState::SynReceived;
            self.snd_nxt = self.iss;
            self.rtx_deadline = None;
            (Verdict::Accepted, Reply::None)
        }
    }

    /// RFC 9293 3.10.7.4 sequence acceptability test (the table of four cases).
    fn acceptable(&self, seg: &TcpRepr<'_>) -> bool {
        let len = seg.seg_len();
        let wnd = self.rcv_wnd();
        let start = self.rcv_nxt;
        let end = self.rcv_nxt + wnd;
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => seg.seq.in_range(start, end),
            (_, 0) => false,
            (_, _) => seg.seq.in_range(start, end) || (seg.seq + (len - 1)).in_range(start, end),
        }
    }

    fn process_synchronized(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> (Verdict, Reply) {
        let f = seg.flags;

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost; send it again.
        if self.state == TcpState::SynReceived && f.syn() && !f.ack() && !f.rst() && seg.seq == self.irs {
            self.snd_nxt = self.iss;
            return (Verdict::Accepted, Reply::None);
        }

        // First: sequence number check.
        if !self.acceptable(seg) {
            // A zero window still takes valid ACKs and RSTs at RCV.NXT (RFC 9293 3.10.7.4).
            let zero_wnd_ctl = self.rcv_wnd() == 0 && seg.seq == self.rcv_nxt;
            if !zero_wnd_ctl {
                if f.rst() {
                    return (Verdict::Rejected("RST out of window"), Reply::None);
                }
                if self.state == TcpState::TimeWait && f.fin() {
                    // The peer's FIN again: our ACK was lost. Re-ACK, restart 2*MSL.
                    self.close_deadline = Some(now + 2 * cfg.msl);
                }
                self.ack_pending = true;
                return (Verdict::Rejected("unacceptable segment"), Reply::None);
            }
        }

        // Second: RST (RFC 9293 3.10.7.4 with RFC 5961 3.2).
        if f.rst() {
            if seg.seq != self.rcv_nxt {
                // In the window but not exact: challenge ACK.
                self.ack_pending = true;
                return (Verdict::Rejected("RST not at RCV.NXT (challenge ACK)"), Reply::None);
            }
            match self.state {
                TcpState::SynReceived if !self.active => {
                    // Passive open: back to LISTEN, i.e. this embryo just disappears.
                    self.state = TcpState::Closed;
                }
                TcpState::SynReceived => {
                    self.error = Some(io::ErrorKind::ConnectionRefused);
                    self.state = TcpState::Closed;
                }
                TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2 | TcpState::CloseWait => {
                    self.error = Some(io::ErrorKind::ConnectionReset);
                    self.tx.clear();
                    self.state = TcpState::Closed;
                }
                _ => {
                    self.state = TcpState::Closed;
                }
            }
            self.rtx_deadline = None;
            self.close_deadline = None;
            self.ack_pending = false;
            return (Verdict::Accepted, Reply::None);
        }

        // Fourth: SYN in a synchronized state -> challenge ACK (RFC 5961 4.2, adopted by
        // RFC 9293 3.10.7.4).
        if f.syn() {
            if self.state == TcpState::SynReceived && !self.active {
                // RFC 9293: a passive SYN-RECEIVED returns to LISTEN.
                self.state = TcpState::Closed;
                return (Verdict::Rejected("SYN in SYN-RECEIVED"), Reply::None);
            }
            self.ack_pending = true;
            return (Verdict::Rejected("SYN in synchronized state (challenge ACK)"), Reply::None);
        }

        // Fifth: the ACK field.
        if !f.ack() {
            return (Verdict::Rejected("no ACK"), Reply::None);
        }
        if self.state == TcpState::SynReceived {
            if self.snd_una < seg.ack && seg.ack <= self.snd_max {
                self.state = TcpState::Established;
                self.snd_wnd = (seg.window as usize) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
            } else {
                return (Verdict::Rejected("bad ACK in SYN-RECEIVED"), Reply::Rst { seq: seg.ack, ack: None });
            }
        }
        if seg.ack > self.snd_max {
            // Acknowledges something not yet sent: ACK and drop (RFC 9293 3.10.7.4).
            self.ack_pending = true;
            return (Verdict::Rejected("ACK of unsent data"), Reply::None);
        }
        let had_fin_acked = self.fin_acked();
        if seg.ack > self.snd_una {
            self.ack_advance(now, seg.ack);
            self.dup_acks = 0;
        } else if seg.ack == self.snd_una
            && seg.payload.is_empty()
            && !f.fin()
            && self.bytes_in_flight() > 0
            && ((seg.window as usize) << self.snd_wscale) == self.snd_wnd
        {
            // RFC 5681 2: a duplicate ACK. Third one -> fast retransmit (3.2).
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                let flight = self.bytes_in_flight();
                self.ssthresh = (flight / 2).max(2 * self.mss);
                self.cwnd = self.ssthresh + 3 * self.mss;
                self.fast_rtx = true;
            } else if self.dup_acks > 3 {
                self.cwnd += self.mss;
            }
        }
        // Window update (RFC 9293 3.10.7.4, fifth check, ESTABLISHED).
        if self.snd_una <= seg.ack
            && (self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= seg.ack))
        {
            self.snd_wnd = (seg.window as usize) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
        }
        if self.snd_wnd == 0 && seg.ack == self.snd_una {
            // The peer answers our zero-window probes: it is alive, so the persist
            // state does not count towards the retransmission limit (RFC 9293 3.8.6.1).
            self.retries = 0;
        }
        if !had_fin_acked && self.fin_acked() {
            match self.state {
                TcpState::FinWait1 => {
                    self.state = TcpState::FinWait2;
                    if self.orphan {
                        // An orphan cannot wait forever for the peer's FIN (Linux:
                        // tcp_fin_timeout); we give it 2*MSL.
                        self.close_deadline = Some(now + 2 * cfg.msl);
                    }
                }
                TcpState::Closing => self.enter_time_wait(now, cfg),
                TcpState::LastAck => {
                    self.state = TcpState::Closed;
                    self.rtx_deadline = None;
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
        let reply = self.process_text_and_fin(now, cfg, seg);
        if let Some(r) = reply {
            return (Verdict::Accepted, r);
        }
        (Verdict::Accepted, Reply::None)
    }

    /// RFC 9293 3.10.7.4, seventh (segment text) and eighth (FIN) checks.
    fn process_text_and_fin(&mut self, now: Instant, cfg: &Config, seg: &TcpRepr<'_>) -> Option<Reply> {
        let receiving = matches!(self.state, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2);
        if !seg.payload.is_empty() || seg.flags.fin() {
            // Every segment that occupies sequence space is acknowledged (no delayed
            // ACKs yet), including a zero-window probe whose byte we cannot take.
            self.ack_pending = true;
        }
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        let mut fin = seg.flags.fin();
        if !receiving || self.fin_received {
            if !payload.is_empty() || fin {
                self.ack_pending = true;
            }
            return None;
        }
        // Trim what we already have (RFC 9293 3.10.7.4: "segments with higher beginning
        // sequence numbers may be held", anything before RCV.NXT is a duplicate).
        if seq < self.rcv_nxt {
            let dup = self.rcv_nxt - seq;
            if dup >= payload.len() {
                // Only the FIN (if any) may be new.
                let fin_seq = seq + payload.len();
                payload = &[];
                fin = fin && fin_seq == self.rcv_nxt;
                seq = self.rcv_nxt;
                if !fin {
                    self.ack_pending = true;
                    return None;
                }
            } else {
                payload = &payload[dup..];
                seq = self.rcv_nxt;
            }
        }
        if seq != self.rcv_nxt {
            // Out of order: no reassembly queue yet, so drop it and send a duplicate ACK
            // at once (RFC 5681 4.2) so the sender's fast retransmit can start.
            self.ack_pending = true;
            return None;
        }
        // Trim to the window; a FIN beyond the window is not accepted yet.
        let wnd = self.rcv_wnd();
        if payload.len() > wnd {
            payload = &payload[..wnd];
            fin = false;
        }
        if !payload.is_empty() {
            if self.orphan {
                // Data for a socket nobody will read (RFC 9293 3.10.4 / RFC 2525 2.17).
                self.error = Some(io::ErrorKind::ConnectionAborted);
                self.state = TcpState::Closed;
                self.rtx_deadline = None;
                return Some(Reply::Rst { seq: self.snd_nxt, ack: None });
            }
            if !self.rd_shut {
                self.rx.extend(payload);
            }
            self.rcv_nxt += payload.len();
            self.ack_pending = true;
        }
        if fin {
            self.rcv_nxt += 1;
            self.fin_received = true;
            self.ack_pending = true;
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
        }
        None
    }

    fn enter_time_wait(&mut self, now: Instant, cfg: &Config) {
        // RFC 9293 3.10.7.4: TIME-WAIT lasts 2*MSL.
        self.state = TcpState::TimeWait;
        self.close_deadline = Some(now + 2 * cfg.msl);
        self.rtx_deadline = None;
    }

    /// New data acknowledged: `snd_una < ack <= snd_max`.
    fn ack_advance(&mut self, now: Instant, ack: SeqNum) {
        let mut acked = ack - self.snd_una;
        if let Some((probe, sent)) = self.rtt_probe {
            if ack > probe {
                self.rtt_sample(now.saturating_duration_since(sent));
                self.rtt_probe = None;
            }
        }
        if self.snd_una == self.iss {
            acked -= 1; // our SYN
        }
        let data = acked.min(self.tx.len());
        self.tx.drain(..data);
        if acked > data && self.fin_queued {
            self.fin_was_acked = true;
        }
        if self.tx.is_empty() && self.tx.capacity() > 64 * 1024 {
            self.tx.shrink_to(0);
        }
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        // RFC 5681 3.1 slow start / congestion avoidance; leaving fast recovery
        // deflates the window to ssthresh (RFC 5681 3.2 step 6).
        if self.dup_acks >= 3 {
            self.cwnd = self.ssthresh;
        } else if self.cwnd < self.ssthresh {
            self.cwnd += data.min(self.mss);
        } else {
            self.cwnd += (self.mss * self.mss / self.cwnd.max(1)).max(1);
        }
        self.retries = 0;
        self.probe_due = false;
        // RFC 6298 5.2 / 5.3: stop the timer when everything is acknowledged, else restart.
        self.rtx_deadline = if self.snd_una == self.snd_max { None } else { Some(now + self.rto) };
    }

    /// RFC 6298 2.2 / 2.3.
    fn rtt_sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + CLOCK_GRANULARITY.max(self.rttvar * 4)).clamp(self.rto_min, self.rto_max);
    }


    // ------------------------------------------------------------ output

    /// Window field for an outgoing non-SYN segment, recording the advertised edge.
    fn advertise(&mut self) -> u16 {
        let wnd = self.rcv_wnd();
        let field = (wnd >> self.rcv_wscale).min(u16::MAX as usize);
        let edge = self.rcv_nxt + (field << self.rcv_wscale);
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
        field as u16
    }

    fn arm_rtx(&mut self, now: Instant) {
        if self.rtx_deadline.is_none() {
            self.rtx_deadline = Some(now + self.rto);
        }
    }

    /// Whether the connection may have a segment to send (a cheap over-approximation;
    /// `dispatch` decides).
    pub fn wants_to_send(&self) -> bool {
        match self.state {
            TcpState::Closed | TcpState::Listen => false,
            TcpState::SynSent | TcpState::SynReceived => self.snd_nxt == self.iss || self.ack_pending,
            _ => {
                self.ack_pending
                    || self.fast_rtx
                    || self.probe_due
                    || self.snd_nxt < self.data_end()
                    || (self.fin_queued && !self.fin_was_acked && self.snd_nxt == self.data_end())
            }
        }
    }

    /// Build the next segment, copying its payload into `scratch` (at least one MSS
    /// long). At most one segment per call; call again while it returns `Some`.
    pub fn dispatch(&mut self, now: Instant, scratch: &mut [u8]) -> Option<Outgoing> {
        match self.state {
            TcpState::Closed | TcpState::Listen => return None,
            TcpState::SynSent | TcpState::SynReceived if self.snd_nxt == self.iss => {
                return Some(self.emit_syn(now));
            }
            TcpState::SynSent => return None,
            TcpState::SynReceived | TcpState::TimeWait => {
                return self.emit_ack_if_pending();
            }
            _ => {}
        }

        let seq0 = self.tx_seq0();
        let data_end = self.data_end();

        // Fast retransmit (RFC 5681 3.2): resend the first unacknowledged segment.
        if self.fast_rtx {
            self.fast_rtx = false;
            if !self.tx.is_empty() {
                let len = self.tx.len().min(self.mss).min(scratch.len());
                self.copy_tx(0, len, scratch);
                self.retransmits += 1;
                self.rtt_probe = None;
                let mut flags = TcpFlags::ACK;
                if len == self.tx.len() {
                    flags |= TcpFlags::PSH;
                }
                return Some(self.segment(seq0, flags, len));
            }
        }

        let wnd = self.snd_wnd.min(self.cwnd.max(self.mss));
        let limit = self.snd_una + wnd;
        if self.snd_nxt < data_end {
            let avail = data_end - self.snd_nxt;
            let room = if limit > self.snd_nxt { limit - self.snd_nxt } else { 0 };
            let mut len = avail.min(self.mss).min(room).min(scratch.len());
            if self.probe_due {
                // The persist timer fired (RFC 9293 3.8.6.1 zero-window probe, and the
                // SWS override timeout of 3.8.6.2.1): send what fits, or one byte
                // beyond a zero window.
                len = len.max(1);
            } else if len < self.mss && len < avail {
                // Sender SWS avoidance (RFC 9293 3.8.6.2.1): a partial segment only if
                // it is at least half the largest window the peer offered.
                if len < self.max_snd_wnd / 2 {
                    len = 0;
                }
            } else if len == avail && len < self.mss && !self.nodelay && self.snd_nxt != self.snd_una && !self.fin_queued {
                // Nagle (RFC 896, RFC 9293 3.7.4): hold a small final piece while data
                // is unacknowledged.
                len = 0;
            }
            if len == 0 && self.bytes_in_flight() == 0 {
                // Nothing in flight to clock us: the persist timer takes over.
                self.arm_rtx(now);
            }
            if len > 0 {
                self.probe_due = false;
                let off = self.snd_nxt - seq0;
                self.copy_tx(off, len, scratch);
                let seq = self.snd_nxt;
                let retx = seq < self.snd_max;
                self.snd_nxt += len;
                let mut flags = TcpFlags::ACK;
                if self.snd_nxt == data_end {
                    flags |= TcpFlags::PSH;
                    if self.fin_queued {
                        flags |= TcpFlags::FIN;
                        self.snd_nxt += 1;
                    }
                }
                if retx {
                    self.retransmits += 1;
                } else if self.rtt_probe.is_none() && self.retries == 0 {
                    self.rtt_probe = Some((seq, now));
                }
                if self.snd_nxt > self.snd_max {
                    self.snd_max = self.snd_nxt;
                }
                self.arm_rtx(now);
                return Some(self.segment(seq, flags, len));
            }
        }

        if self.fin_queued && !self.fin_was_acked && self.snd_nxt == data_end {
            let seq = self.snd_nxt;
            if seq < self.snd_max {
                self.retransmits += 1;
            }
            self.snd_nxt += 1;
            if self.snd_nxt > self.snd_max {
                self.snd_max = self.snd_nxt;
            }
            self.arm_rtx(now);
            return Some(self.segment(seq, TcpFlags::FIN | TcpFlags::ACK, 0));
        }

        self.emit_ack_if_pending()
    }

    fn copy_tx(&self, off: usize, len: usize, scratch: &mut [u8]) {
        let (a, b) = self.tx.as_slices();
        let mut done = 0;
        if off < a.len() {
            let n = len.min(a.len() - off);
            scratch[..n].copy_from_slice(&a[off..off + n]);
            done = n;
        }
        if done < len {
            let boff = off + done - a.len();
            scratch[done..len].copy_from_slice(&b[boff..boff + len - done]);
        }
    }

    fn segment(&mut self, seq: SeqNum, flags: TcpFlags, payload_len: usize) -> Outgoing {
        self.ack_pending = false;
        let window = self.advertise();
        Outgoing { seq, ack: self.rcv_nxt, flags, window, options: TcpOptions::default(), payload_len }
    }

    fn emit_ack_if_pending(&mut self) -> Option<Outgoing> {
        if !self.ack_pending {
            return None;
        }
        let seq = self.snd_nxt;
        Some(self.segment(seq, TcpFlags::ACK, 0))
    }

    fn emit_syn(&mut self, now: Instant) -> Outgoing {
        let synack = self.state == TcpState::SynReceived;
        let mut options = TcpOptions { mss: Some(self.our_mss as u16), ..TcpOptions::default() };
        // RFC 7323 2.2: offer window scaling on a SYN; on a SYN-ACK only if the peer did.
        if !synack || self.peer_ws {
            options.window_scale = Some(self.rcv_wscale);
        }
        if self.snd_max != self.iss {
            self.retransmits += 1;
        } else {
            self.rtt_probe = Some((self.iss, now));
        }
        self.snd_nxt = self.iss + 1;
        if self.snd_max < self.snd_nxt {
            self.snd_max = self.snd_nxt;
        }
        self.arm_rtx(now);
        self.ack_pending = false;
        let mut flags = TcpFlags::SYN;
        if synack {
            flags |= TcpFlags::ACK;
            let edge = self.rcv_nxt + self.rx_cap.min(u16::MAX as usize);
            if edge > self.rcv_adv {
                self.rcv_adv = edge;
            }
        }
        Outgoing {
            seq: self.iss,
            ack: if synack { self.rcv_nxt } else { SeqNum(0) },
            flags,
            // RFC 7323 2.2: the window in a SYN or SYN-ACK is never scaled.
            window: self.rx_cap.min(u16::MAX as usize) as u16,
            options,
            payload_len: 0,
        }
    }

    // ------------------------------------------------------------ timers

    pub fn deadline(&self) -> Option<Instant> {
        match (self.rtx_deadline, self.close_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run the timers due at `now`.
    pub fn on_timer(&mut self, now: Instant, cfg: &Config) {
        if let Some(d) = self.close_deadline {
            if now >= d {
                // TIME-WAIT (or the orphan FIN-WAIT-2 wait) is over.
                self.close_deadline = None;
                self.rtx_deadline = None;
                self.state = TcpState::Closed;
                return;
            }
        }
        let Some(d) = self.rtx_deadline else { return };
        if now < d {
            return;
        }
        self.rtx_deadline = None;
        if self.bytes_in_flight() == 0 {
            // Persist timer: probe the peer's zero window, with backoff but without a
            // retry limit while the peer keeps answering (RFC 9293 3.8.6.1).
            if self.snd_nxt < self.data_end() {
                self.probe_due = true;
                self.rto = (self.rto * 2).min(self.rto_max);
            }
            return;
        }
        self.retries += 1;
        let limit = match self.state {
            TcpState::SynSent | TcpState::SynReceived => cfg.syn_retries,
            _ => cfg.max_retries,
        };
        if self.retries > limit {
            // RFC 9293 3.8.3: R2 exceeded, close the connection.
            self.error = Some(io::ErrorKind::TimedOut);
            self.state = TcpState::Closed;
            self.tx.clear();
            return;
        }
        // RFC 6298 5.5: back off the timer; 5.4: retransmit the earliest segment.
        self.rto = (self.rto * 2).min(self.rto_max);
        // RFC 5681 3.1, equation 4, and a loss window of one segment.
        self.ssthresh = (self.bytes_in_flight() / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.dup_acks = 0;
        self.fast_rtx = false;
        self.rtt_probe = None; // Karn's algorithm
        self.snd_nxt = self.snd_una;
        // Against a zero window the retransmission is a one-byte window probe.
        self.probe_due = self.snd_wnd == 0;
    }

    pub fn rcv_nxt(&self) -> SeqNum {
        self.rcv_nxt
    }

    /// A snapshot of the control block (the `TCP_INFO` of this stack).
    pub fn info(&self) -> super::TcpInfo {
        super::TcpInfo {
            state: self.state,
            iss: self.iss,
            irs: self.irs,
            snd_una: self.snd_una,
            snd_nxt: self.snd_nxt,
            rcv_nxt: self.rcv_nxt,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_wnd(),
            snd_wscale: self.snd_wscale,
            rcv_wscale: self.rcv_wscale,
            mss: self.mss,
            cwnd: self.cwnd,
            ssthresh: self.ssthresh,
            srtt: self.srtt,
            rto: self.rto,
            retransmits: self.retransmits,
        }
    }

    /// Internal consistency of the control block; `Err` names the first violation.
    /// Used by tests, proptests and fuzz targets after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{what}: {:?}", self.info()));
        if self.snd_una > self.snd_nxt {
            return fail("SND.UNA > SND.NXT");
        }
        if self.snd_nxt > self.snd_max {
            return fail("SND.NXT > highest sent");
        }
        if self.tx.len() > self.tx_cap {
            return fail("send buffer over its bound");
        }
        if self.rx.len() > self.rx_cap {
            return fail("receive buffer over its bound");
        }
        let fin_room = self.fin_queued as usize;
        if self.state != TcpState::Closed && self.snd_max > self.data_end() + fin_room {
            return fail("sent beyond the queued data");
        }
        if self.is_synchronized() && self.state != TcpState::Closed && self.rcv_adv < self.rcv_nxt {
            return fail("advertised right edge behind RCV.NXT");
        }
        if self.fin_received
            && !matches!(
                self.state,
                TcpState::CloseWait | TcpState::Closing | TcpState::LastAck | TcpState::TimeWait | TcpState::Closed
            )
        {
            return fail("peer FIN received but state does not reflect it");
        }
        if self.fin_was_acked && !self.fin_queued {
            return fail("FIN acknowledged but never queued");
        }
        if self.state == TcpState::SynSent && self.snd_una != self.iss {
            return fail("SYN-SENT with SND.UNA past ISS");
        }
        if self.mss == 0 || self.cwnd == 0 && self.is_synchronized() && self.state != TcpState::Closed {
            return fail("zero MSS or congestion window");
        }
        Ok(())
    }
}
