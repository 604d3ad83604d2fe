//! TCP at the stack level (RFC 9293): what the connection state machine
//! (`crate::tcp::conn`) does not see.
//!
//! - Input: demux of a segment to its connection (with a one-entry cache for bulk
//!   flows) or to a listener; a new SYN ending a TIME-WAIT connection (RFC 6191-style
//!   reuse); a RST for a segment no socket wants (RFC 9293 3.10.7.1).
//! - Listeners: what happens to a segment in LISTEN (RFC 9293 3.10.7.2), the half-open
//!   and accept queues each bounded by the backlog, SYN cookies when the half-open
//!   queue is full (RFC 4987 3.6, `tcp::syncookie`), ISNs (RFC 6528).
//! - ICMP errors about connections (validated by `icmp`): soft and hard errors, the
//!   path MTU.
//! - The TCP calls: listen, accept, connect (RFC 6056 port choice), send, recv,
//!   shutdown, abort, close, options and queries.
//! - TCP's part of `poll_transmit` (one segment of one connection, its payload copied
//!   once from the send buffer into place) and of `handle_timeout`.

use std::collections::VecDeque;
use std::net::{IpAddr, Shutdown, SocketAddr};

use super::policy::tcp_probe_kind;
use super::table::Sock;
use super::{is_unspecified, same_family, Stack};
use crate::demux::Match;
use crate::error::ConnError;
use crate::error::{AcceptError, BindError, ConnectError, InvalidHandle, RecvError, SendError, ShutdownError};
use crate::policy::rules::{Direction, PacketInfo, RejectWith};
use crate::policy::scan::ProbeKind;
use crate::ports;
use crate::seq::SeqNum;
use crate::socket::{ListenerHandle, Owner, Protocol, SocketHandle, TcpHandle};
use crate::tcp::conn::{Conn, Reply, Verdict};
use crate::tcp::syncookie;
use crate::tcp::{TcpReject, TcpState};
use crate::time::Instant;
use crate::wire::{self, DropReason, IpHeader, TcpFlags, TcpOptions, TcpRepr};

/// A listening socket (RFC 9293 3.10.7.2).
pub(super) struct Listener {
    pub(super) local: SocketAddr,
    /// Transparent: takes connections to any address and port that no other socket
    /// takes (`tcp_listen_transparent`); it holds no port and no demux entry.
    pub(super) transparent: bool,
    pub(super) backlog: usize,
    /// Embryonic connections (SYN-RECEIVED), RFC 9293 3.10.7.2: at most `backlog`.
    pub(super) half_open: Vec<SocketHandle>,
    /// Established connections waiting for `tcp_accept`: at most `backlog`.
    pub(super) accept_q: VecDeque<SocketHandle>,
    /// When this listener last answered a SYN with a cookie: ACKs are checked for
    /// cookies while one may still be valid (as Linux checks only after a recent
    /// overflow), so a listener that never sent one accepts no forged cookie.
    pub(super) last_cookie: Option<Instant>,
}

/// What an ICMP message says about a connection (after `icmp` validated its quote).
#[derive(Clone, Copy, Debug)]
pub(super) enum IcmpNews {
    /// An error; `hard` per RFC 1122 4.2.3.9 (port and protocol unreachable, the
    /// administrative prohibitions...), soft otherwise.
    Error { error: ConnError, hard: bool },
    /// The path MTU is `mtu` (already made usable, `pmtu::usable_mtu`).
    PathMtu(usize),
}

impl Stack {
    // ---------------------------------------------------------------- input

    pub(super) fn tcp_input(&mut self, now: Instant, ip: &IpHeader, seg: &TcpRepr<'_>, raw: &[u8]) {
        let local = SocketAddr::new(ip.dst, seg.dst_port);
        let remote = SocketAddr::new(ip.src, seg.src_port);
        if seg.src_port == 0 || seg.dst_port == 0 {
            return self.count_drop(DropReason::BadTcpHeader, "port 0");
        }
        let cached = self.last_tcp.filter(|&h| {
            self.conn_at(h).is_some_and(|c| c.local == local && c.remote == remote && c.state != TcpState::Closed)
        });
        let found = match cached {
            Some(h) => Some(Match::Connection(h)),
            None => self.demux.lookup(Protocol::Tcp, local, remote),
        };
        if !matches!(found, Some(Match::Connection(_))) {
            // Not part of a connection: the policy decides (a SYN can be a knock).
            let info = PacketInfo {
                dir: Direction::In,
                proto: ip.protocol,
                src: ip.src,
                dst: ip.dst,
                sport: seg.src_port,
                dport: seg.dst_port,
                icmp_type: None,
            };
            let knockable = seg.flags.syn() && !seg.flags.ack() && !seg.flags.rst();
            let admitted = self.policy_admits(now, &info, knockable, |s, with| match with {
                RejectWith::TcpReset => s.reset_for(local, remote, seg),
                RejectWith::PortUnreachable => s.icmp_unreachable(now, ip, raw, false),
                RejectWith::AdminProhibited => s.icmp_unreachable(now, ip, raw, true),
            });
            if !admitted {
                return;
            }
        }
        match found {
            Some(Match::Connection(h)) => {
                self.last_tcp = Some(h);
                // RFC 6191-style reuse: a new SYN above the old sequence space ends a
                // TIME-WAIT connection so the listener can take the new one.
                if let Some(c) = self.conn_at(h) {
                    if c.state == TcpState::TimeWait && seg.flags.syn() && !seg.flags.ack() && seg.seq > c.rcv_nxt() {
                        self.free_socket(h);
                        return self.tcp_input(now, ip, seg, raw);
                    }
                }
                self.conn_input(now, h, seg)
            }
            Some(Match::Listener(h)) => self.listener_input(now, h, local, remote, seg),
            // A transparent listener takes it, with its original destination as the
            // connection's local address.
            None if self.transparent_tcp.is_some() => {
                let lh = self.transparent_tcp.expect("checked");
                self.listener_input(now, lh, local, remote, seg)
            }
            None => {
                self.count_drop(DropReason::TcpNoSocket, "no listener or connection");
                if let Some(kind) = tcp_probe_kind(seg.flags) {
                    self.policy_probe(now, remote.ip(), local.port(), kind);
                }
                self.reset_for(local, remote, seg);
            }
        }
    }

    /// RFC 9293 3.10.7.1 (CLOSED): answer anything but a RST with a RST.
    fn reset_for(&mut self, local: SocketAddr, remote: SocketAddr, seg: &TcpRepr<'_>) {
        if seg.flags.rst() {
            return;
        }
        if seg.flags.ack() {
            self.queue_rst(local, remote, seg.ack, None);
        } else {
            self.queue_rst(local, remote, SeqNum(0), Some(seg.seq + seg.seg_len()));
        }
    }

    /// Queue `<SEQ=seq><CTL=RST>`, or with `ack` `<SEQ=seq><ACK=ack><CTL=RST,ACK>`.
    fn queue_rst(&mut self, local: SocketAddr, remote: SocketAddr, seq: SeqNum, ack: Option<SeqNum>) {
        let mut flags = TcpFlags::RST;
        if ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        let repr = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq,
            ack: ack.unwrap_or(SeqNum(0)),
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        if self.queue_ctrl(|buf| wire::emit_tcp(buf, local.ip(), remote.ip(), &repr)) {
            self.stats.tcp_resets_sent += 1;
        }
    }

    fn listener_input(
        &mut self,
        now: Instant,
        lh: SocketHandle,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) {
        // RFC 9293 3.10.7.2 (LISTEN).
        let f = seg.flags;
        if f.rst() {
            return self.count_reject(TcpReject::ListenRst);
        }
        if f.ack() {
            if !f.syn() && self.cookies_recent(lh, now) {
                return self.cookie_ack(now, lh, local, remote, seg);
            }
            self.count_reject(TcpReject::ListenAck);
            return self.queue_rst(local, remote, seg.ack, None);
        }
        if !f.syn() {
            return self.count_reject(TcpReject::ListenNoSyn);
        }
        let Some(Sock::Listener(l)) = self.slot(lh).and_then(|s| s.sock.as_ref()) else { return };
        if l.accept_q.len() >= l.backlog {
            // Nobody accepts: a connection would only wait (Linux drops the SYN too).
            return self.count_drop(DropReason::ListenOverflow, "accept queue full");
        }
        if l.half_open.len() >= l.backlog || self.half_open >= self.cfg.max_half_open {
            if self.cfg.syn_cookies {
                return self.send_cookie(now, lh, local, remote, seg);
            }
            return self.count_drop(DropReason::ListenOverflow, "half-open queue full");
        }
        if !self.connection_room() {
            // Out of sockets or buffer memory: refuse cleanly (RFC 9293 3.10.7.1's RST
            // for a segment no socket can take).
            self.count_drop(DropReason::ResourceLimit, "no room for a connection");
            return self.queue_rst(local, remote, SeqNum(0), Some(seg.seq + seg.seg_len()));
        }
        let iss = self.isn(now, local, remote);
        let conn = Conn::accept_syn(&self.cfg, now, local, remote, iss, seg);
        let Some(h) = self.add_passive_conn(now, lh, conn) else { return };
        self.enter_half_open(lh, h);
        self.stats.tcp_passive_opens += 1;
        self.refresh(h);
    }

    /// A connection listener `lh` made (from a SYN, or a SYN cookie's ACK): started with
    /// the path MTU remembered for its peer, given a slot and its demux entry. `None`
    /// (and no socket) if its 4-tuple is taken.
    fn add_passive_conn(&mut self, now: Instant, lh: SocketHandle, mut conn: Conn) -> Option<SocketHandle> {
        let (local, remote) = (conn.local, conn.remote);
        if let Some(mtu) = self.pmtu.get(now, remote.ip()) {
            conn.set_initial_pmtu(mtu);
        }
        let h = self.alloc(Sock::Tcp(Box::new(conn)), Owner::Listener(lh));
        if self.demux.insert_connection(Protocol::Tcp, local, remote, h).is_err() {
            self.free_socket(h);
            return None;
        }
        Some(h)
    }

    /// An ACK that would complete embryo `h`'s handshake while its listener's accept
    /// queue is full: dropped (and counted), the embryo stays and its peer will send
    /// again (Linux does the same without tcp_abort_on_overflow).
    #[cold]
    #[inline(never)]
    fn final_ack_into_full_queue(&mut self, h: SocketHandle, seg: &TcpRepr<'_>) -> bool {
        let Some(Owner::Listener(lh)) = self.slot(h).map(|s| s.owner) else { return false };
        if !seg.flags.ack() || seg.flags.rst() {
            return false;
        }
        let full = match self.slot(lh).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Listener(l)) => l.accept_q.len() >= l.backlog,
            _ => false,
        };
        if full {
            self.count_drop(DropReason::ListenOverflow, "accept queue full: final ACK dropped");
        }
        full
    }

    /// Whether listener `lh` sent a cookie recently enough that one may come back.
    fn cookies_recent(&self, lh: SocketHandle, now: Instant) -> bool {
        match self.slot(lh).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Listener(l)) => l.last_cookie.is_some_and(|t| now < t + syncookie::VALIDITY),
            _ => false,
        }
    }

    /// Answer a SYN with a cookie SYN-ACK (RFC 4987 3.6): `<SEQ=cookie><ACK=SEG.SEQ+1>`
    /// with our MSS and, when the SYN carried timestamps, window scale, SACK-permitted
    /// and a timestamp whose low bits remember them. Nothing is kept.
    fn send_cookie(
        &mut self,
        now: Instant,
        lh: SocketHandle,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) {
        let our_mss = self.cfg.mss_for(remote.ip()) as usize;
        // RFC 9293 3.7.1: without the option, 536 (IPv4) or 1220 (IPv6, RFC 8200 5).
        let default_mss = if remote.is_ipv4() { 536 } else { 1220 };
        let peer_mss = seg.options.mss.map_or(default_mss, usize::from);
        let path_mss = self
            .pmtu
            .get(now, remote.ip())
            .map_or(usize::MAX, |m| m.saturating_sub(wire::ip_header_len(remote.ip()) + 20));
        let mss = peer_mss.min(our_mss).min(path_mss).min(u16::MAX as usize) as u16;
        let cookie = self.cookie_key.make(now, local, remote, seg.seq, mss);
        let cfg = &self.cfg;
        let mut options = TcpOptions { mss: Some(our_mss as u16), ..TcpOptions::default() };
        if let (Some((tsval, _)), true) = (seg.options.timestamps, cfg.timestamps) {
            let ws = seg.options.window_scale.filter(|_| cfg.window_scaling);
            let sack = seg.options.sack_permitted && cfg.sack;
            let shift = crate::tcp::conn::window_shift_for(cfg.tcp_rx_buffer.max(1));
            if ws.is_some() {
                options.window_scale = Some(shift);
            }
            options.sack_permitted = sack;
            let clock = (now.total_millis() as u32).wrapping_add(Conn::ts_offset_for(cookie));
            options.timestamps = Some((syncookie::tsval(clock, syncookie::ts_bits(ws, sack)), tsval));
        }
        let repr = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: cookie,
            ack: seg.seq + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            // RFC 7323 2.2: never scaled in a SYN-ACK.
            window: cfg.tcp_rx_buffer.min(u16::MAX as usize) as u16,
            urgent: 0,
            options,
            payload: &[],
        };
        if self.queue_ctrl(|buf| wire::emit_tcp(buf, local.ip(), remote.ip(), &repr)) {
            self.stats.syn_cookies_sent += 1;
            if let Some(l) = self.listener_mut(lh) {
                l.last_cookie = Some(now);
            }
        }
    }

    /// An ACK to a listener that sent cookies lately: a valid cookie (RFC 4987 3.6)
    /// makes the connection, established, straight into the accept queue; anything
    /// else is answered like any ACK in LISTEN, with a RST (RFC 9293 3.10.7.2).
    fn cookie_ack(&mut self, now: Instant, lh: SocketHandle, local: SocketAddr, remote: SocketAddr, seg: &TcpRepr<'_>) {
        let Some(d) = self.cookie_key.check(now, local, remote, seg.seq - 1, seg.ack - 1) else {
            self.stats.syn_cookies_invalid += 1;
            self.count_reject(TcpReject::SynCookieInvalid);
            return self.queue_rst(local, remote, seg.ack, None);
        };
        let Some(Sock::Listener(l)) = self.slot(lh).and_then(|s| s.sock.as_ref()) else { return };
        if l.accept_q.len() >= l.backlog {
            // The peer believes it is connected and will send again (Linux drops too).
            return self.count_drop(DropReason::ListenOverflow, "accept queue full (cookie ACK)");
        }
        if !self.connection_room() {
            self.count_drop(DropReason::ResourceLimit, "no room for a connection (cookie ACK)");
            return self.queue_rst(local, remote, seg.ack, None);
        }
        let (wscale, sack) = match seg.options.timestamps {
            Some((_, tsecr)) if tsecr != 0 => syncookie::from_ts_bits(tsecr),
            _ => (None, false),
        };
        let iss = seg.ack - 1;
        let conn = Conn::from_cookie(&self.cfg, now, local, remote, iss, seg, d.mss, wscale, sack);
        let Some(h) = self.add_passive_conn(now, lh, conn) else { return };
        self.stats.syn_cookies_valid += 1;
        self.stats.tcp_passive_opens += 1;
        self.last_tcp = Some(h);
        // The ACK completes the handshake (and may carry data); `after_conn_event` puts
        // the connection in the accept queue. It cannot stay half-open (it never was
        // in that queue): should it, it goes.
        self.conn_input(now, h, seg);
        if self.conn_at(h).is_some_and(|c| c.state == TcpState::SynReceived) {
            self.abort_conn(h);
        }
    }

    #[inline]
    fn conn_input(&mut self, now: Instant, h: SocketHandle, seg: &TcpRepr<'_>) {
        let grow = self.buffer_room();
        let Some(Sock::Tcp(c)) = self.slots[h.idx as usize].sock.as_mut() else { return };
        let (prev, passive) = (c.state, !c.active);
        if prev == TcpState::SynReceived && self.final_ack_into_full_queue(h, seg) {
            return;
        }
        let cfg = &self.cfg;
        let Some(Sock::Tcp(c)) = self.slots[h.idx as usize].sock.as_mut() else { return };
        c.set_buffer_growth(grow);
        let (verdict, reply) = c.process(now, cfg, seg);
        // Buffer auto-tuning (tcp/autotune.rs): the send buffer follows cwnd.
        c.autotune(now, &mut self.buf_budget);
        let (local, remote) = (c.local, c.remote);
        if let Verdict::Rejected(why) = verdict {
            // Only a rejected segment's ACK can have been held back (RFC 5961 7).
            self.stats.tcp_acks_rate_limited += std::mem::take(&mut c.acks_rate_limited);
            self.count_reject(why);
        }
        if let Reply::Rst { seq, ack } = reply {
            self.queue_rst(local, remote, seq, ack);
        }
        // A handshake the peer reset after our SYN-ACK is a half-open probe (nmap -sS
        // finding an open port): no client does that. It matters most behind a
        // transparent listener, which answers every port.
        if passive && prev == TcpState::SynReceived && seg.flags.rst() && matches!(verdict, Verdict::Accepted) {
            self.policy_probe(now, remote.ip(), local.port(), ProbeKind::Syn);
        }
        self.after_conn_event(h, prev);
    }

    /// Bookkeeping after a connection's state may have changed.
    fn after_conn_event(&mut self, h: SocketHandle, prev: TcpState) {
        let Some(slot) = self.slot(h) else { return };
        let owner = slot.owner;
        let Some(Sock::Tcp(c)) = slot.sock.as_ref() else { return };
        let state = c.state;
        if state == TcpState::Closed {
            match owner {
                Owner::App => {
                    // Keep the handle (the application learns the outcome from it), but
                    // stop matching segments to it.
                    let (l, r) = (c.local, c.remote);
                    if self.remove_conn_entry(Protocol::Tcp, l, r, h) {
                        self.update_readiness(h);
                    }
                    if let Some(s) = self.slot_mut(h) {
                        s.timer = None;
                    }
                }
                _ => self.free_socket(h),
            }
            return;
        }
        if prev == TcpState::SynReceived && state != TcpState::SynReceived {
            if let Owner::Listener(lh) = owner {
                self.leave_half_open(lh, h);
                if let Some(l) = self.listener_mut(lh) {
                    l.accept_q.push_back(h);
                }
                self.update_readiness(lh);
            }
        }
        if owner == Owner::App {
            self.update_readiness(h);
        }
        self.refresh(h);
    }

    fn isn(&self, now: Instant, local: SocketAddr, remote: SocketAddr) -> SeqNum {
        // RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
        // M a 4-microsecond timer.
        let mut b = [0u8; 36];
        put_addr(&mut b[0..16], local.ip());
        b[16..18].copy_from_slice(&local.port().to_be_bytes());
        put_addr(&mut b[18..34], remote.ip());
        b[34..36].copy_from_slice(&remote.port().to_be_bytes());
        let f = self.isn_key.hash(&b) as u32;
        SeqNum(f.wrapping_add((now.total_micros() / 4) as u32))
    }

    /// What an ICMP error says about the connection `(local, remote)`, whose quoted
    /// sequence number was `seq` (`icmp` checked the quote is one of our packets).
    /// RFC 5927 4.1: acted on only if `seq` is in flight; else counted and ignored.
    pub(super) fn tcp_icmp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seq: SeqNum,
        news: IcmpNews,
    ) {
        let Some(Match::Connection(h)) = self.demux.lookup(Protocol::Tcp, local, remote) else {
            return self.count_drop(DropReason::IcmpErrorNoSocket, "ICMP error: no such connection");
        };
        let Some(Sock::Tcp(c)) = self.slots[h.idx as usize].sock.as_mut() else { return };
        if !c.icmp_seq_in_flight(seq) {
            return self.count_drop(DropReason::IcmpErrorOutOfWindow, "ICMP error: sequence number not in flight");
        }
        let prev = c.state;
        match news {
            IcmpNews::PathMtu(mtu) => {
                if !c.on_path_mtu(mtu) {
                    return self.count_drop(DropReason::IcmpErrorBadMtu, "ICMP: not below the path MTU");
                }
                self.pmtu.lower(now, remote.ip(), mtu, &self.cfg);
                self.stats.pmtu_updates += 1;
                self.stats.pmtu_entries = self.pmtu.len() as u64;
                tracing::debug!(%local, %remote, mtu, "path MTU lowered");
            }
            IcmpNews::Error { error, hard } => {
                if c.on_icmp_error(error, hard) {
                    self.stats.icmp_hard_errors += 1;
                } else {
                    self.stats.icmp_soft_errors += 1;
                }
                tracing::debug!(%local, %remote, ?error, hard, "ICMP error for a connection");
            }
        }
        self.after_conn_event(h, prev);
    }

    // ---------------------------------------------------------------- output, timers

    /// TCP's part of `poll_transmit`: the next segment of connection `h` into `buf`.
    /// `None` when it has nothing sendable now.
    ///
    /// `dispatch` commits the segment (SND.NXT, the scoreboard, timers), so everything
    /// that could keep it off the wire is settled before it runs: the buffer holds the
    /// largest header, the payload room ends where the packet would outgrow the buffer
    /// or the IP length field, and a data segment's header is the one `data_header_len`
    /// reserved room for. Emission cannot fail afterwards.
    pub(super) fn tcp_transmit(&mut self, now: Instant, h: SocketHandle, buf: &mut [u8]) -> Option<usize> {
        let Some(Sock::Tcp(c)) = self.slots[h.idx as usize].sock.as_mut() else { return None };
        let ip_len = wire::ip_header_len(c.remote.ip());
        if buf.len() < ip_len + MAX_TCP_HEADER_LEN {
            return buffer_too_small(buf.len());
        }
        // The payload goes straight to its place in `buf` (one copy from the send
        // buffer), right after the data segment's header; the headers are written
        // around it.
        let at = ip_len + c.data_header_len();
        let end = buf.len().min(ip_len + MAX_IP_PAYLOAD);
        let before = c.retransmits;
        let Some(out) = c.dispatch(now, &mut buf[at..end]) else {
            // Nothing sendable (window, Nagle): wait for an ACK or a timer.
            self.refresh_inner(h, false);
            return None;
        };
        self.stats.tcp_retransmits += c.retransmits - before;
        let (src, dst) = (c.local.ip(), c.remote.ip());
        let mut repr = TcpRepr {
            src_port: c.local.port(),
            dst_port: c.remote.port(),
            seq: out.seq,
            ack: out.ack,
            flags: out.flags,
            window: out.window,
            urgent: 0,
            options: out.options,
            payload: &[],
        };
        let emitted = if out.payload_len == 0 {
            // At most MAX_TCP_HEADER_LEN bytes of header: fits, checked above.
            wire::emit_tcp(buf, src, dst, &repr)
        } else {
            // A data segment carries the timestamps only, on every segment once they
            // are in use (RFC 7323 3.2), and that is what `data_header_len` counted;
            // SACK blocks ride on pure ACKs (RFC 2018 4). So the header ends where the
            // payload starts. Should other options turn up, they are dropped rather
            // than let the header run into the payload.
            if ip_len + repr.header_len() != at {
                keep_data_options(&mut repr, buf, ip_len, at, out.payload_len);
            }
            wire::emit_tcp_in_place(buf, src, dst, &repr, out.payload_len)
        };
        let n = emitted.expect("a segment fits the room checked before dispatch");
        // More may follow from the same connection: round robin.
        let slot = &mut self.slots[h.idx as usize];
        if !slot.in_txq {
            slot.in_txq = true;
            self.txq.push_back(h);
        }
        self.refresh(h);
        Some(n)
    }

    /// TCP's part of `handle_timeout`: connection `h`'s deadline is due.
    pub(super) fn tcp_on_timer(&mut self, now: Instant, h: SocketHandle) {
        let Some(Sock::Tcp(c)) = self.slots[h.idx as usize].sock.as_mut() else { return };
        let prev = c.state;
        let (l, r) = (c.local, c.remote);
        if let Reply::Rst { seq, ack } = c.on_timer(now, &self.cfg) {
            self.queue_rst(l, r, seq, ack);
        }
        self.after_conn_event(h, prev);
        self.refresh(h);
    }

    // ---------------------------------------------------------------- calls

    /// Bind and listen. `local`'s IP may be a wildcard; port 0 picks an ephemeral port.
    /// The backlog bounds the half-open plus accept queue (at least 1).
    pub fn tcp_listen(&mut self, local: SocketAddr, backlog: usize) -> Result<ListenerHandle, BindError> {
        self.check_local(local)?;
        if !self.socket_room() {
            return Err(BindError::TooManySockets { max: self.cfg.max_sockets });
        }
        let l = Listener {
            local,
            transparent: false,
            backlog: backlog.max(1),
            half_open: Vec::new(),
            accept_q: VecDeque::new(),
            last_cookie: None,
        };
        let h = self.alloc(Sock::Listener(l), Owner::App);
        let port = match self.tcp_ports.bind(local.ip(), local.port(), h, &mut self.rng) {
            Ok(p) => p,
            Err(e) => {
                self.release_unbound(h);
                return Err(e);
            }
        };
        let bound = SocketAddr::new(local.ip(), port);
        if let Some(Sock::Listener(l)) = self.slot_mut(h).and_then(|s| s.sock.as_mut()) {
            l.local = bound;
        }
        if let Err(held_by) = self.demux.insert_listener(Protocol::Tcp, bound, h) {
            self.free_socket(h);
            return Err(BindError::AddrInUse { addr: bound, held: bound, held_by });
        }
        Ok(ListenerHandle(h))
    }

    /// A transparent listener: it takes every TCP connection, to any address and port,
    /// that no other socket takes (the stack then accepts packets to any unicast
    /// destination). An accepted connection's local address is the destination the
    /// client connected to; its packets leave from that address. This is how a gateway
    /// terminates the flows of a network routed into the device. One at a time:
    /// `AddrInUse` while another exists. It holds no port, so ordinary listeners and
    /// connections keep theirs and take precedence.
    pub fn tcp_listen_transparent(&mut self, backlog: usize) -> Result<ListenerHandle, BindError> {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        if let Some(held_by) = self.transparent_tcp {
            return Err(BindError::AddrInUse { addr: any, held: any, held_by });
        }
        if !self.socket_room() {
            return Err(BindError::TooManySockets { max: self.cfg.max_sockets });
        }
        let l = Listener {
            local: any,
            transparent: true,
            backlog: backlog.max(1),
            half_open: Vec::new(),
            accept_q: VecDeque::new(),
            last_cookie: None,
        };
        let h = self.alloc(Sock::Listener(l), Owner::App);
        self.transparent_tcp = Some(h);
        Ok(ListenerHandle(h))
    }

    /// Take one completed connection from a listener's accept queue; `WouldBlock` when
    /// it is empty.
    pub fn tcp_accept(&mut self, listener: ListenerHandle) -> Result<TcpHandle, AcceptError> {
        let listener = listener.0;
        let l = self.listener_mut(listener).ok_or(AcceptError::InvalidHandle)?;
        let Some(h) = l.accept_q.pop_front() else { return Err(AcceptError::WouldBlock) };
        if let Some(s) = self.slot_mut(h) {
            s.owner = Owner::App;
        }
        // Recorded as not acceptable when the queue ran empty, so the next connection
        // is reported again.
        self.update_readiness(listener);
        // Anything that arrived before the accept (data, FIN, RST) is a readiness change.
        self.update_readiness(h);
        if self.conn_at(h).is_some_and(|c| c.state == TcpState::Closed) {
            self.after_conn_event(h, TcpState::Closed);
        }
        Ok(TcpHandle(h))
    }

    /// Active open. `local` defaults to the stack's first address of `remote`'s family
    /// and an RFC 6056 ephemeral port. Returns at once in SYN-SENT; use
    /// `tcp_poll_connect` to learn the outcome.
    pub fn tcp_connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<TcpHandle, ConnectError> {
        self.now = self.now.max(now);
        if is_unspecified(remote.ip()) || remote.port() == 0 {
            return Err(ConnectError::InvalidRemote(remote));
        }
        if remote.ip().is_multicast() || remote.ip() == IpAddr::from([255, 255, 255, 255]) {
            return Err(ConnectError::BroadcastOrMulticast(remote));
        }
        let local_ip = match local.map(|l| l.ip()) {
            Some(ip) if !is_unspecified(ip) => {
                if !self.owns_address(ip) {
                    return Err(ConnectError::NotOwned(ip));
                }
                if !same_family(ip, remote.ip()) {
                    return Err(ConnectError::FamilyMismatch { local: ip, remote });
                }
                ip
            }
            _ => self.first_addr_like(remote.ip()).ok_or(ConnectError::NoAddressOfFamily { ipv6: remote.is_ipv6() })?,
        };
        let port = match local.map(|l| l.port()).unwrap_or(0) {
            0 => {
                let (demux, tcp_ports, shard) = (&self.demux, &self.tcp_ports, self.cfg.shard);
                ports::connect_port(
                    self.cfg.ephemeral_ports,
                    &self.port_key,
                    &mut self.connect_counter,
                    local_ip,
                    remote,
                    |p| {
                        let local = SocketAddr::new(local_ip, p);
                        // As a shard: only 4-tuples this shard owns (`crate::shard`), so
                        // no two shards can open the same one.
                        shard.is_none_or(|s| s.tcp_owner(local, remote) == s.index())
                            && !demux.has_connection(Protocol::Tcp, local, remote)
                            && !tcp_ports.conflicts(local_ip, p)
                    },
                )?
            }
            p => {
                let local = SocketAddr::new(local_ip, p);
                if let Some(s) = self.cfg.shard.filter(|s| s.tcp_owner(local, remote) != s.index()) {
                    return Err(ConnectError::OtherShard { owner: s.tcp_owner(local, remote) });
                }
                if self.demux.has_connection(Protocol::Tcp, local, remote) {
                    return Err(ConnectError::TupleInUse { local, remote });
                }
                p
            }
        };
        if !self.connection_room() {
            return Err(ConnectError::ResourceLimit);
        }
        let local = SocketAddr::new(local_ip, port);
        let info = PacketInfo {
            dir: Direction::Out,
            proto: wire::proto::TCP,
            src: local.ip(),
            dst: remote.ip(),
            sport: local.port(),
            dport: remote.port(),
            icmp_type: None,
        };
        if !self.policy_admits_outbound(&info) {
            return Err(ConnectError::Filtered);
        }
        let iss = self.isn(now, local, remote);
        let mut conn = Conn::connect(&self.cfg, now, local, remote, iss);
        if let Some(mtu) = self.pmtu.get(now, remote.ip()) {
            conn.set_initial_pmtu(mtu);
        }
        let h = self.alloc(Sock::Tcp(Box::new(conn)), Owner::App);
        if self.demux.insert_connection(Protocol::Tcp, local, remote, h).is_err() {
            self.free_socket(h);
            return Err(ConnectError::TupleInUse { local, remote });
        }
        self.stats.tcp_active_opens += 1;
        self.refresh(h);
        Ok(TcpHandle(h))
    }

    /// `Ok(true)` once established (or later), `Ok(false)` while the handshake runs,
    /// `Err(ConnectError::Failed)` (`ConnectionRefused`, `TimedOut`, `ConnectionReset`)
    /// if it failed.
    pub fn tcp_poll_connect(&mut self, h: TcpHandle) -> Result<bool, ConnectError> {
        let c = self.conn(h)?;
        match c.state {
            TcpState::SynSent | TcpState::SynReceived => Ok(false),
            TcpState::Closed => Err(c.error().map_or(ConnectError::Closed, ConnectError::Failed)),
            _ => Ok(true),
        }
    }

    /// Queue bytes for sending; returns how many were taken (may be fewer than asked),
    /// `WouldBlock` when the send buffer is full or the handshake is still running,
    /// `BrokenPipe` after shutdown(Write), the connection's error after a reset.
    pub fn tcp_send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, SendError> {
        let grow = self.buffer_room();
        let c = self.conn_mut(h)?;
        c.set_buffer_growth(grow);
        let r = c.send(data);
        self.refresh(h.0);
        self.update_readiness(h.0);
        r
    }

    /// Read received bytes. `Ok(0)` is end of stream (the peer's FIN was read);
    /// `WouldBlock` when nothing is buffered yet; `ConnectionReset` after a RST.
    pub fn tcp_recv(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize, RecvError> {
        let r = self.conn_mut(h)?.recv(buf);
        self.tcp_autotune(h);
        self.refresh(h.0);
        self.update_readiness(h.0);
        r
    }

    /// Shut down one or both directions. `Write` sends FIN after queued data (half
    /// close); `Read` discards further incoming data.
    pub fn tcp_shutdown(&mut self, h: TcpHandle, how: Shutdown) -> Result<(), ShutdownError> {
        let c = self.conn_mut(h)?;
        if matches!(c.state, TcpState::Closed | TcpState::SynSent | TcpState::Listen) {
            return Err(ShutdownError::NotConnected);
        }
        let prev = c.state;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            c.shutdown_read();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            c.shutdown_write();
        }
        self.after_conn_event(h.0, prev);
        Ok(())
    }

    /// Abort: send RST (if synchronized) and release the socket at once.
    pub fn tcp_abort(&mut self, h: TcpHandle) -> Result<(), InvalidHandle> {
        self.conn(h)?;
        self.abort_conn(h.0);
        Ok(())
    }

    /// RST (if synchronized) and release: `tcp_abort`, and the fate of the connections
    /// waiting in a closed listener's queues.
    fn abort_conn(&mut self, h: SocketHandle) {
        let Some(Sock::Tcp(c)) = self.slot_mut(h).and_then(|s| s.sock.as_mut()) else { return };
        let (l, r) = (c.local, c.remote);
        if let Some(Reply::Rst { seq, ack }) = c.abort() {
            self.queue_rst(l, r, seq, ack);
        }
        self.free_socket(h);
    }

    /// `close` of a connection: FIN after queued data, or RST if unread data is
    /// discarded (RFC 9293 3.10.4, RFC 2525 2.17); an orphan finishes the close.
    pub(super) fn close_conn(&mut self, h: SocketHandle) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen) else { return };
        let Some(Sock::Tcp(c)) = slot.sock.as_mut() else { return };
        let prev = c.state;
        let (l, r) = (c.local, c.remote);
        if c.close(now, &self.cfg) {
            if let Some(Reply::Rst { seq, ack }) = c.abort() {
                self.queue_rst(l, r, seq, ack);
            }
            self.free_socket(h);
            return;
        }
        if c.state == TcpState::Closed {
            self.free_socket(h);
            return;
        }
        slot.owner = Owner::Orphan;
        self.after_conn_event(h, prev);
    }

    /// `close` of a listener: the connections waiting in its queues are reset.
    pub(super) fn close_listener(&mut self, h: SocketHandle) {
        let Some(l) = self.listener_mut(h) else { return };
        let embryos = l.half_open.len();
        let children: Vec<SocketHandle> = l.half_open.drain(..).chain(l.accept_q.drain(..)).collect();
        self.half_open -= embryos;
        self.stats.tcp_half_open = self.half_open as u64;
        for c in children {
            self.abort_conn(c);
        }
        self.free_socket(h);
    }

    /// The connection's state (RFC 9293 3.3.2).
    pub fn tcp_state(&self, h: TcpHandle) -> Result<TcpState, InvalidHandle> {
        Ok(self.conn(h)?.state)
    }

    /// A snapshot of the connection's control block.
    pub fn tcp_info(&self, h: TcpHandle) -> Result<crate::tcp::TcpInfo, InvalidHandle> {
        Ok(self.conn(h)?.info())
    }

    /// Disable (true) or enable (false) Nagle's algorithm (RFC 896).
    pub fn tcp_set_nodelay(&mut self, h: TcpHandle, nodelay: bool) -> Result<(), InvalidHandle> {
        self.conn_mut(h)?.set_nodelay(nodelay);
        self.refresh(h.0);
        Ok(())
    }

    /// Keepalive for this connection (RFC 9293 3.8.4); `None` turns it off.
    pub fn tcp_set_keepalive(
        &mut self,
        h: TcpHandle,
        ka: Option<crate::config::Keepalive>,
    ) -> Result<(), InvalidHandle> {
        let now = self.now;
        self.conn_mut(h)?.set_keepalive(now, ka);
        self.refresh(h.0);
        Ok(())
    }

    /// User timeout (RFC 9293 3.8.3 / RFC 5482); `None` leaves only the retry counts.
    pub fn tcp_set_user_timeout(&mut self, h: TcpHandle, t: Option<std::time::Duration>) -> Result<(), InvalidHandle> {
        self.conn_mut(h)?.set_user_timeout(t);
        Ok(())
    }

    /// Congestion control for this connection (restarts it from the initial window).
    pub fn tcp_set_congestion(
        &mut self,
        h: TcpHandle,
        alg: crate::config::CongestionAlgorithm,
    ) -> Result<(), InvalidHandle> {
        self.conn_mut(h)?.set_congestion(alg);
        Ok(())
    }

    pub fn tcp_nodelay(&self, h: TcpHandle) -> Result<bool, InvalidHandle> {
        Ok(self.conn(h)?.nodelay())
    }

    /// Bytes the application can write right now without `WouldBlock`.
    pub fn tcp_send_capacity(&self, h: TcpHandle) -> Result<usize, InvalidHandle> {
        Ok(self.conn(h)?.send_capacity())
    }

    /// Whether connection `h` (a raw handle; false for other sockets) holds at least a
    /// full-sized segment of data not sent yet: a runtime that holds small output back
    /// to send it together (see `may_transmit`) sends this at once.
    pub fn tcp_full_segment_unsent(&self, h: SocketHandle) -> bool {
        self.conn_at(h).is_some_and(Conn::full_segment_unsent)
    }

    /// Bytes received and not yet read.
    pub fn tcp_recv_queue(&self, h: TcpHandle) -> Result<usize, InvalidHandle> {
        Ok(self.conn(h)?.recv_queue())
    }
}

/// Only with an MTU below 100 bytes (the caller's buffer holds the MTU): no segment is
/// built, so nothing is committed that could not go out.
#[cold]
#[inline(never)]
fn buffer_too_small(len: usize) -> Option<usize> {
    tracing::warn!(len, "transmit buffer smaller than the largest TCP header: nothing sent");
    None
}

/// Not reached while the connection's data segments carry what `data_header_len`
/// counted: keep only the timestamps and move the payload (from `at`) right after the
/// header, which is then no longer than the room reserved for it.
#[cold]
#[inline(never)]
fn keep_data_options(repr: &mut TcpRepr<'_>, buf: &mut [u8], ip_len: usize, at: usize, payload_len: usize) {
    debug_assert!(false, "data segment options {:?} do not fit the {at} bytes reserved", repr.options);
    repr.options = TcpOptions { timestamps: repr.options.timestamps, ..TcpOptions::default() };
    let want = ip_len + repr.header_len();
    buf.copy_within(at..at + payload_len, want);
}

/// The largest TCP header: a data offset of 15 words (RFC 9293 3.1).
const MAX_TCP_HEADER_LEN: usize = wire::tcp::TCP_HEADER_LEN + wire::tcp::MAX_OPTIONS_LEN;

/// The most the IP length field lets follow our header: 65535 bytes in all for IPv4
/// (RFC 791 3.1, less its 20-byte header), 65535 after the header for IPv6 (RFC 8200 3).
/// Bounding by the smaller is exact for IPv4 and within 20 bytes for IPv6.
const MAX_IP_PAYLOAD: usize = wire::ip::MAX_LENGTH_FIELD - wire::ip::IPV4_HEADER_LEN;

fn put_addr(out: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
}
