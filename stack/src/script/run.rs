//! The interpreter: runs a parsed [`Script`] against a [`Target`] (the system under
//! test), playing the remote host.
//!
//! What it does is packetdrill's, whatever the target:
//!
//! - **time**: each event has a script time; relative times (`+0.1`) count from when the
//!   previous event actually finished (from the previous one's script time when both are
//!   inbound packets). Inbound packets and system calls are *performed* at their time;
//!   outbound packets and the return of blocking calls are *checked* against theirs,
//!   within `max(tolerance_usecs, tolerance_percent * time since the previous event)`.
//! - **the connection under test** (one at a time, as in packetdrill): `listen` makes
//!   the listener the socket under test, and the first inbound TCP packet then opens a
//!   connection to it from the remote address and a port of the runner's; `connect`
//!   makes the connecting socket the one under test, and its SYN tells the local port.
//! - **sequence numbers**: inbound packets use the script's numbers as they are (the
//!   script's host starts at its own ISN); the system under test's ISN is learned from
//!   its first SYN or SYN-ACK and its sequence numbers, and the `ack` and SACK blocks
//!   of inbound packets, are shifted by it. (A new inbound SYN on a passively opened
//!   connection lets the next SYN-ACK teach it again: a new connection on the same
//!   ports, after a RST or in TIME-WAIT.)
//! - **timestamps**: inbound TS val are used as written; an inbound TS ecr must echo an
//!   outbound TS val the script wrote, and is mapped to the value the system under test
//!   really sent. Outbound TS val are not compared unless `--tcp_ts_tick_usecs` is set;
//!   outbound TS ecr are compared exactly (they echo values the script chose).
//! - **outbound packets**: flags, sequence number and length, ack (with ACK), window
//!   (when the script gives `win`), options (unless `<...>`; their layout only with
//!   `--strict_option_layout`), payload; PSH too unless `--psh_any`. Several consecutive segments may make up one
//!   script line (TSO/GSO, unless `--strict_segments`). Packets between other
//!   addresses are ignored. Packets still queued when the script ends are listed, not
//!   checked.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use super::ast::*;
use super::packet::{self as pk, Body, Opt};

/// The system under test, as the interpreter drives it. Times are microseconds since
/// the script started (script time).
pub trait Target {
    /// `"core"`, `"linux"`.
    fn name(&self) -> &'static str;
    /// The current time.
    fn now(&mut self) -> u64;
    /// Let time pass until `t` (no-op if it has).
    fn wait_until(&mut self, t: u64) -> Result<(), String>;
    /// Deliver an IP packet to the system under test, now.
    fn inject(&mut self, packet: &[u8]) -> Result<(), String>;
    /// The next packet the system under test sent, with the time it was sent; waits
    /// until `deadline` at most. `None`: nothing was sent by then.
    fn next_packet(&mut self, deadline: u64) -> Result<Option<(u64, Vec<u8>)>, String>;
    /// Apply a `sysctl key=value` of the script.
    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), String>;
    /// Make a system call. `blocking`: the script marked it `...`, it may return later
    /// ([`CallStatus::Pending`], then [`Target::poll_blocking`]). `expect` is what the
    /// script expects: for `socket` and `accept` its value is the script's number for
    /// the new socket.
    fn syscall(&mut self, call: &Call, expect: &Expect, blocking: bool) -> Result<CallStatus, String>;
    /// A pending blocking call that has returned: when, and with what.
    fn poll_blocking(&mut self) -> Option<(u64, SysResult)>;
    /// Wait until the pending blocking call returns, at most until `deadline`.
    fn wait_blocking(&mut self, deadline: u64) -> Result<Option<(u64, SysResult)>, String>;
    /// The sockets' state, for failure reports.
    fn describe(&mut self) -> String;
    /// How long segments sent back to back may take to show up one after the other
    /// (when gathering the segments of one TSO-sized script line): 0 on a virtual clock.
    fn burst_grace(&self) -> u64 {
        0
    }
}

/// What [`Target::syscall`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallStatus {
    Done(SysResult),
    /// A blocking call that has not returned yet.
    Pending,
}

/// A script that did not pass: where, why, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub line: u32,
    pub message: String,
    /// For packet mismatches: the expected and actual packet, and a field by field
    /// comparison.
    pub comparison: Option<String>,
    /// The system under test's sockets when it failed.
    pub state: Option<String>,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct Report {
    pub script: String,
    pub target: &'static str,
    /// One line per event (and per ignored packet), as printed while running.
    pub steps: Vec<String>,
    pub failure: Option<Failure>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "line {}: {}", self.line, self.message)?;
        if let Some(c) = &self.comparison {
            for l in c.lines() {
                writeln!(f, "    {l}")?;
            }
        }
        if let Some(s) = &self.state {
            writeln!(f, "    state of the system under test:")?;
            for l in s.lines() {
                writeln!(f, "      {l}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => writeln!(f, "{} [{}]: PASS", self.script, self.target),
            Some(fail) => {
                writeln!(f, "{} [{}]: FAIL", self.script, self.target)?;
                write!(f, "{}:{fail}", self.script)
            }
        }
    }
}

pub(crate) fn secs(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// ICMP type and code numbers for packetdrill's names (`unreachable port_unreachable`,
/// `packet_too_big`...), for IPv4 or IPv6; a missing code is 0.
pub fn icmp_numbers(ty: &str, code: Option<&str>, ipv6: bool) -> Option<(u8, u8)> {
    let t = if !ipv6 {
        match ty {
            "echo_reply" => (0, &[][..]),
            "unreachable" => (
                3,
                &[
                    ("net_unreachable", 0),
                    ("host_unreachable", 1),
                    ("protocol_unreachable", 2),
                    ("port_unreachable", 3),
                    ("frag_needed", 4),
                    ("source_route_failed", 5),
                    ("net_unknown", 6),
                    ("host_unknown", 7),
                    ("source_host_isolated", 8),
                    ("net_prohibited", 9),
                    ("host_prohibited", 10),
                    ("net_unreachable_for_tos", 11),
                    ("host_unreachable_for_tos", 12),
                    ("packet_filtered", 13),
                    ("precedence_violation", 14),
                    ("precedence_cutoff", 15),
                ][..],
            ),
            "source_quench" => (4, &[][..]),
            "redirect" => (5, &[][..]),
            "echo_request" => (8, &[][..]),
            "time_exceeded" => (11, &[][..]),
            "parameter_problem" => (12, &[][..]),
            _ => return None,
        }
    } else {
        match ty {
            "unreachable" => (
                1,
                &[
                    ("net_unreachable", 0),
                    ("no_route", 0),
                    ("admin_prohibited", 1),
                    ("not_neighbour", 2),
                    ("address_unreachable", 3),
                    ("port_unreachable", 4),
                ][..],
            ),
            "packet_too_big" => (2, &[][..]),
            "time_exceeded" => (3, &[("exceeded_hop_limit", 0), ("exceeded_frag_time", 1)][..]),
            "parameter_problem" => (4, &[("header_field", 0), ("unknown_next_header", 1), ("unknown_option", 2)][..]),
            "echo_request" => (128, &[][..]),
            "echo_reply" => (129, &[][..]),
            _ => return None,
        }
    };
    let codes: &[(&str, u8)] = t.1;
    let code = match code {
        None => 0,
        Some(c) => match codes.iter().find(|(n, _)| *n == c) {
            Some((_, v)) => *v,
            None => c.parse::<u8>().ok()?,
        },
    };
    Some((t.0, code))
}

// ---------------------------------------------------------------- the connection under test

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowKind {
    /// A listener: the next inbound TCP packet opens a connection.
    Listening,
    /// A connection the script's host opened.
    Passive,
    /// `connect` was called; the SYN tells the local port.
    Connecting,
    /// A connection the system under test opened (its SYN was seen).
    Active,
    Udp,
}

#[derive(Clone, Debug)]
struct Flow {
    kind: FlowKind,
    /// The system under test's address; port 0 until known.
    local: SocketAddr,
    remote: SocketAddr,
    /// live - script, for the system under test's sequence numbers.
    local_off: u32,
    isn_known: bool,
    /// Outbound TS val: script value -> live value.
    ts_map: HashMap<u32, u32>,
    /// The first outbound (script, live) TS val pair.
    ts_first: Option<(u32, u32)>,
}

impl Flow {
    fn new(kind: FlowKind, local: SocketAddr, remote: SocketAddr) -> Flow {
        Flow { kind, local, remote, local_off: 0, isn_known: false, ts_map: HashMap::new(), ts_first: None }
    }
}

struct PendingCall {
    line: u32,
    spec: SyscallSpec,
    /// The call's own (adjusted) start time and expected return time.
    start: u64,
    end: u64,
}

/// Run `script` against `target`. `progress` receives each step as it happens (for a
/// live display); the report has them too.
pub fn run(script: &Script, target: &mut dyn Target, progress: &mut dyn FnMut(&str)) -> Report {
    let mut r = Runner {
        s: &script.settings,
        target,
        flow: None,
        socket_types: HashMap::new(),
        next_remote_port: 40000,
        pending: None,
        steps: Vec::new(),
        progress,
        last: None,
        peeked: None,
    };
    let failure = r.run_events(&script.events).err();
    let failure = failure.map(|mut f| {
        if f.state.is_none() {
            let st = r.target.describe();
            if !st.is_empty() {
                f.state = Some(st);
            }
        }
        f
    });
    Report { script: script.name.clone(), target: r.target.name(), steps: r.steps, failure }
}

struct Runner<'a, 'b> {
    s: &'a Settings,
    target: &'b mut dyn Target,
    flow: Option<Flow>,
    /// Script fd -> socket type, for what `bind` and `connect` mean.
    socket_types: HashMap<i32, SockType>,
    next_remote_port: u16,
    pending: Option<PendingCall>,
    steps: Vec<String>,
    progress: &'b mut dyn FnMut(&str),
    /// The previous event: its (adjusted) script time, and whether it was an inbound
    /// packet.
    last: Option<(u64, bool)>,
    /// A packet read ahead while gathering the segments of one TSO-sized line.
    peeked: Option<(u64, pk::Packet)>,
}

type Step<T> = Result<T, Failure>;

fn fail<T>(line: u32, message: impl Into<String>) -> Step<T> {
    Err(Failure { line, message: message.into(), comparison: None, state: None })
}

impl Runner<'_, '_> {
    fn step(&mut self, line: String) {
        (self.progress)(&line);
        self.steps.push(line);
    }

    fn tolerance(&self, t: u64) -> u64 {
        let mut tol = self.s.tolerance_usecs;
        if let Some((last, _)) = self.last {
            let dynamic = (self.s.tolerance_percent / 100.0) * t.saturating_sub(last) as f64;
            if dynamic > tol as f64 {
                tol = dynamic as u64;
            }
        }
        tol
    }

    fn run_events(&mut self, events: &[Event]) -> Step<()> {
        for ev in events {
            self.check_blocking()?;
            let inbound = matches!(&ev.action, Action::Packet(p) if p.dir == Direction::Inbound);
            let offset = match self.last {
                Some((t, true)) if inbound => t,
                _ => self.target.now(),
            };
            let (start, end) = match ev.time {
                EventTime::Absolute(t) => (t, t),
                EventTime::Relative(d) => (offset + d, offset + d),
                EventTime::Any => (offset, u64::MAX),
                EventTime::AbsoluteRange(a, b) => (a, b),
                EventTime::RelativeRange(a, b) => (offset + a, offset + b),
            };
            match &ev.action {
                Action::Packet(p) if p.dir == Direction::Inbound => {
                    self.wait(start, ev.line)?;
                    self.inbound(ev.line, start, p)?;
                }
                Action::Packet(p) => self.outbound(ev.line, ev.time, start, end, p)?,
                Action::Syscall(sc) => {
                    let call_end = match (sc.end, ev.time) {
                        (Some(e), EventTime::Relative(_)) => Some(offset + e),
                        (e, _) => e,
                    };
                    self.syscall(ev.line, start, call_end, sc)?;
                }
                Action::Sysctl(kv) => {
                    self.wait(start, ev.line)?;
                    for (k, v) in kv {
                        self.target.sysctl(k, v).or_else(|e| fail(ev.line, e))?;
                        self.step(format!("{:>4} {} `sysctl {k}={v}`", ev.line, secs(start)));
                    }
                }
            }
            self.last = Some((start, inbound));
            self.check_blocking()?;
        }
        // A blocking call must return before the script ends (packetdrill waits a
        // second for it).
        if let Some(p) = &self.pending {
            let (line, end) = (p.line, p.end);
            let limit = self.target.now().max(end) + self.tolerance(end).max(1_000_000);
            let done = self.target.wait_blocking(limit).or_else(|e| fail(line, e))?;
            match done {
                Some((t, res)) => self.finish_blocking(t, res)?,
                None => return fail(line, "the script ended while this blocking call was still in progress"),
            }
        }
        let now = self.target.now();
        while let Ok(Some((t, pkt))) = self.target.next_packet(now) {
            let shown = self.show_actual(&pkt);
            self.step(format!("     {} (not checked, after the last event) {shown}", secs(t)));
        }
        Ok(())
    }

    fn wait(&mut self, t: u64, line: u32) -> Step<()> {
        self.target.wait_until(t).or_else(|e| fail(line, e))
    }

    // ------------------------------------------------------------ blocking calls

    fn check_blocking(&mut self) -> Step<()> {
        if self.pending.is_some() {
            if let Some((t, res)) = self.target.poll_blocking() {
                self.finish_blocking(t, res)?;
            }
        }
        Ok(())
    }

    fn finish_blocking(&mut self, t: u64, res: SysResult) -> Step<()> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        self.check_result(p.line, &p.spec, &res)?;
        self.after_call(&p.spec.call, &res);
        self.check_return_time(p.line, p.start, p.end, t)?;
        self.step(format!("{:>4} {} returned: {} = {res}", p.line, secs(t), call_name(&p.spec)));
        Ok(())
    }

    fn syscall(&mut self, line: u32, start: u64, end: Option<u64>, sc: &SyscallSpec) -> Step<()> {
        if let Some(p) = &self.pending {
            // packetdrill waits up to a second for the previous blocking call.
            let limit = self.target.now() + 1_000_000;
            let pline = p.line;
            match self.target.wait_blocking(limit).or_else(|e| fail(line, e))? {
                Some((t, res)) => self.finish_blocking(t, res)?,
                None => {
                    return fail(
                        line,
                        format!("a system call while the blocking call of line {pline} is still in progress"),
                    )
                }
            }
        }
        self.wait(start, line)?;
        let blocking = end.is_some();
        let status = self.target.syscall(&sc.call, &sc.expect, blocking).or_else(|e| fail(line, e))?;
        self.note_call_start(&sc.call, &status);
        match status {
            CallStatus::Done(res) => {
                self.check_result(line, sc, &res)?;
                self.after_call(&sc.call, &res);
                self.step(format!("{:>4} {} {} -> {res}", line, secs(start), sc.text));
                if let Some(end) = end {
                    // It returned at once: check that this was expected.
                    let now = self.target.now();
                    self.check_return_time(line, start, end, now)?;
                }
            }
            CallStatus::Pending => {
                let Some(end) = end else {
                    return fail(
                        line,
                        format!("{}: the call blocked; a blocking call is written `...END {}`", sc.text, call_name(sc)),
                    );
                };
                self.step(format!(
                    "{:>4} {} {} (blocking, expected to return at {})",
                    line,
                    secs(start),
                    sc.text,
                    secs(end)
                ));
                self.pending = Some(PendingCall { line, spec: sc.clone(), start, end });
            }
        }
        Ok(())
    }

    /// A blocking call returned at `t`: was it expected then? The tolerance grows with
    /// the time since the call started.
    fn check_return_time(&mut self, line: u32, start: u64, end: u64, t: u64) -> Step<()> {
        let saved = self.last;
        self.last = Some((start, false));
        let tol = self.tolerance(end);
        self.last = saved;
        if t + tol < end || t > end + tol {
            return fail(
                line,
                format!(
                    "timing error: expected the system call to return at {} s but it returned at {} s; tolerance {} s",
                    secs(end),
                    secs(t),
                    secs(tol)
                ),
            );
        }
        Ok(())
    }

    fn check_result(&self, line: u32, sc: &SyscallSpec, res: &SysResult) -> Step<()> {
        let e = &sc.expect;
        let fd_result = matches!(sc.call, Call::Socket { .. } | Call::Accept { .. });
        let ok = match (&res.ret, e.errno) {
            (Err(actual), Some(want)) => *actual == want,
            (Err(_), None) => e.ret == -1,
            (Ok(_), Some(_)) => false,
            (Ok(v), None) => {
                if fd_result && e.ret >= 0 {
                    *v >= 0
                } else {
                    *v == e.ret
                }
            }
        };
        let want = match e.errno {
            Some(errno) => format!("-1 {errno}"),
            None => e.ret.to_string(),
        };
        if !ok {
            return fail(line, format!("{}: expected result {want} but got {res}", call_name(sc)));
        }
        if let (Call::GetSockOpt { value, opt, .. }, Ok(_)) = (&sc.call, &res.ret) {
            match &res.value {
                Some(v) if v == value => {}
                Some(v) => return fail(line, format!("getsockopt {}: expected value {value} but got {v}", opt.name())),
                None => return fail(line, format!("getsockopt {}: no value returned", opt.name())),
            }
        }
        Ok(())
    }

    /// What a call means for the connection under test, as soon as it is made.
    fn note_call_start(&mut self, call: &Call, status: &CallStatus) {
        if let Call::Connect { fd } = call {
            let started = match status {
                CallStatus::Pending => true,
                CallStatus::Done(r) => matches!(r.ret, Ok(_) | Err(Errno::EINPROGRESS)),
            };
            if started && self.socket_types.get(fd) == Some(&SockType::Stream) {
                let remote = SocketAddr::new(self.s.remote_ip, self.s.connect_port);
                let local = SocketAddr::new(self.s.local_ip, 0);
                self.flow = Some(Flow::new(FlowKind::Connecting, local, remote));
            }
        }
    }

    /// What a call that returned means for the connection under test.
    fn after_call(&mut self, call: &Call, res: &SysResult) {
        let Ok(v) = res.ret else { return };
        let remote_udp = SocketAddr::new(self.s.remote_ip, self.s.connect_port);
        match *call {
            Call::Socket { ty, .. } => {
                self.socket_types.insert(v as i32, ty);
                if ty == SockType::Dgram {
                    let local = SocketAddr::new(self.s.local_ip, 0);
                    self.flow = Some(Flow::new(FlowKind::Udp, local, remote_udp));
                }
            }
            Call::Bind { fd } if self.socket_types.get(&fd) == Some(&SockType::Dgram) => {
                if let Some(f) = self.flow.as_mut().filter(|f| f.kind == FlowKind::Udp) {
                    f.local.set_port(self.s.bind_port);
                }
            }
            Call::Listen { .. } => {
                let local = SocketAddr::new(self.s.local_ip, self.s.bind_port);
                let remote = SocketAddr::new(self.s.remote_ip, 0);
                self.flow = Some(Flow::new(FlowKind::Listening, local, remote));
            }
            Call::Accept { .. } => {
                self.socket_types.insert(v as i32, SockType::Stream);
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------ inbound packets

    fn inbound(&mut self, line: u32, t: u64, p: &PacketSpec) -> Step<()> {
        let packet = self.build_inbound(line, p)?;
        let shown = self.show_spec(p);
        self.target.inject(&packet).or_else(|e| fail(line, e))?;
        self.step(format!("{line:>4} {} < {shown}", secs(t)));
        Ok(())
    }

    fn build_inbound(&mut self, line: u32, p: &PacketSpec) -> Step<Vec<u8>> {
        match &p.kind {
            PacketKind::Tcp(t) => {
                let needs_new = self.flow.is_none() || matches!(&self.flow, Some(f) if f.kind == FlowKind::Listening);
                if needs_new {
                    let local = match &self.flow {
                        Some(f) => f.local,
                        None => SocketAddr::new(self.s.local_ip, self.s.bind_port),
                    };
                    let remote = SocketAddr::new(self.s.remote_ip, self.next_remote_port);
                    self.next_remote_port = self.next_remote_port.wrapping_add(1).max(1024);
                    self.flow = Some(Flow::new(FlowKind::Passive, local, remote));
                }
                let scaled = self.s.tcp_ts_ecr_scaled;
                let flow = self.flow.as_mut().expect("set above");
                // A new SYN from the script's host on a passively opened connection
                // may open a new one on the same ports (after a RST, in TIME-WAIT): the
                // SYN-ACK that answers it teaches the ISN again.
                if flow.kind == FlowKind::Passive && t.flags & (flag::SYN | flag::ACK) == flag::SYN {
                    flow.isn_known = false;
                }
                if flow.kind == FlowKind::Udp {
                    return fail(line, "a TCP packet, but the socket under test is a UDP socket");
                }
                if flow.local.port() == 0 {
                    return fail(line, "an inbound packet before the system under test's SYN told its port");
                }
                let (sp, dp) = p.ports.unwrap_or((flow.remote.port(), flow.local.port()));
                let has_ack = t.flags & flag::ACK != 0;
                let ack = match t.ack {
                    Some(a) if has_ack => a.wrapping_add(flow.local_off),
                    Some(a) => a,
                    None => 0,
                };
                let mut options = Vec::new();
                for o in t.options.iter().flatten() {
                    options.push(match o {
                        TcpOpt::Nop => Opt::Nop,
                        TcpOpt::Eol => Opt::Eol,
                        TcpOpt::Mss(m) => Opt::Mss(*m),
                        TcpOpt::WScale(s) => Opt::WScale(*s),
                        TcpOpt::SackOk => Opt::SackOk,
                        TcpOpt::Sack(b) => Opt::Sack(
                            b.iter()
                                .map(|(l, r)| (l.wrapping_add(flow.local_off), r.wrapping_add(flow.local_off)))
                                .collect(),
                        ),
                        TcpOpt::Timestamp { val, ecr } => {
                            let live_ecr = if has_ack {
                                match flow.ts_map.get(ecr) {
                                    Some(v) => *v,
                                    None => match flow.ts_first {
                                        Some((s, l)) if scaled => ecr.wrapping_sub(s).wrapping_add(l),
                                        _ => {
                                            return fail(
                                                line,
                                                format!(
                                                    "unable to infer the live TS ecr for script TS ecr {ecr}: no \
                                                     matching or preceding outbound TS val (--tcp_ts_ecr_scaled \
                                                     interpolates)"
                                                ),
                                            )
                                        }
                                    },
                                }
                            } else {
                                *ecr
                            };
                            Opt::Ts(*val, live_ecr)
                        }
                    });
                }
                let seg = pk::Tcp {
                    src_port: sp,
                    dst_port: dp,
                    seq: t.seq,
                    ack,
                    flags: t.flags,
                    win: t.win.unwrap_or(0),
                    urg: t.urg,
                    options,
                    payload: vec![0; t.len as usize],
                };
                Ok(pk::build_tcp(flow.remote.ip(), flow.local.ip(), &seg))
            }
            PacketKind::Udp { len } => {
                let Some(flow) = self.flow.as_ref().filter(|f| f.kind == FlowKind::Udp) else {
                    return fail(line, "a UDP packet needs a UDP socket under test (socket(..., SOCK_DGRAM, ...))");
                };
                if flow.local.port() == 0 {
                    return fail(line, "an inbound datagram to a UDP socket with no port yet (bind it, or send first)");
                }
                let (sp, dp) = p.ports.unwrap_or((flow.remote.port(), flow.local.port()));
                let u = pk::Udp { src_port: sp, dst_port: dp, payload: vec![0; *len as usize] };
                Ok(pk::build_udp(flow.remote.ip(), flow.local.ip(), &u))
            }
            PacketKind::Icmp(ic) => {
                let Some(flow) = self.flow.as_ref() else {
                    return fail(line, "an ICMP error needs a socket under test to quote a packet of");
                };
                let ipv6 = self.s.ipv6;
                let Some((ty, code)) = icmp_numbers(&ic.type_name, ic.code_name.as_deref(), ipv6) else {
                    return fail(line, format!("ICMP type {} does not exist for this IP version", ic.type_name));
                };
                // The quoted packet: one the system under test sent to the remote.
                let (proto, l4) = match (&ic.echoed, flow.kind) {
                    (Some(Echoed::Udp { .. }), _) | (None, FlowKind::Udp) => {
                        let len = match &ic.echoed {
                            Some(Echoed::Udp { len }) => *len,
                            _ => 0,
                        };
                        let u = pk::Udp {
                            src_port: flow.local.port(),
                            dst_port: flow.remote.port(),
                            payload: vec![0; len as usize],
                        };
                        (pk::PROTO_UDP, pk::udp_bytes(&u))
                    }
                    (echoed, _) => {
                        let (seq, len) = match echoed {
                            Some(Echoed::Tcp { seq, len }) => (*seq, *len),
                            _ => (0, 0),
                        };
                        let t = pk::Tcp {
                            src_port: flow.local.port(),
                            dst_port: flow.remote.port(),
                            seq: seq.wrapping_add(flow.local_off),
                            ack: 0,
                            flags: flag::ACK,
                            win: 0,
                            urg: 0,
                            options: Vec::new(),
                            payload: vec![0; len as usize],
                        };
                        (pk::PROTO_TCP, pk::tcp_bytes(&t))
                    }
                };
                let mut quoted = pk::quoted_packet(flow.local.ip(), flow.remote.ip(), proto, l4);
                // RFC 792: at least the IP header and 8 bytes; RFC 1812 / 4443: as much as
                // fits 576 / 1280 bytes.
                let max = if ipv6 { 1280 - 48 } else { 576 - 28 };
                quoted.truncate(max);
                let m = pk::Icmp { ty, code, rest: ic.mtu.unwrap_or(0), body: quoted };
                Ok(pk::build_icmp(flow.remote.ip(), flow.local.ip(), &m))
            }
        }
    }

    // ------------------------------------------------------------ outbound packets

    fn outbound(&mut self, line: u32, time: EventTime, start: u64, end: u64, p: &PacketSpec) -> Step<()> {
        let tol = self.tolerance(if end == u64::MAX { start } else { end });
        let deadline = match time {
            EventTime::Any => self.target.now().saturating_add(600_000_000),
            _ => end.saturating_add(tol).saturating_add(1_000_000),
        };
        let (t0, first) = self.next_relevant(line, deadline, p)?;
        let mut actual = first;
        // TSO/GSO: consecutive segments may make up the script's one.
        if let (PacketKind::Tcp(spec), Body::Tcp(seg)) = (&p.kind, &mut actual.body) {
            let first_len = seg.payload.len();
            let mut frags = 1usize;
            while !self.s.strict_segments
                && (seg.payload.len() as u64) < spec.len as u64
                && !seg.payload.is_empty()
                && seg.flags & (flag::SYN | flag::FIN | flag::RST) == 0
                && frags < 1000
            {
                let Some((_, next)) = self.peek_next_relevant(deadline)? else { break };
                let Body::Tcp(n) = &next.body else { break };
                // packetdrill's rule: every fragment but the last has the size of the
                // first.
                let is_last = seg.payload.len() + n.payload.len() == spec.len as usize;
                let same_size = seg.payload.len() == first_len * frags && (n.payload.len() == first_len || is_last);
                let contiguous = same_size
                    && n.seq == seg.seq.wrapping_add(seg.payload.len() as u32)
                    && n.ack == seg.ack
                    && n.src_port == seg.src_port
                    && n.dst_port == seg.dst_port
                    && (n.flags | flag::PSH | flag::FIN) == (seg.flags | flag::PSH | flag::FIN)
                    && seg.payload.len() + n.payload.len() <= spec.len as usize;
                if !contiguous {
                    break;
                }
                self.take_peeked();
                frags += 1;
                seg.payload.extend_from_slice(&n.payload);
                seg.flags |= n.flags & (flag::PSH | flag::FIN);
                seg.win = n.win;
                seg.options = n.options.clone();
            }
        }
        self.verify(line, time, start, end, tol, t0, p, &actual)
    }

    /// The next packet from the system under test to the remote address; others are
    /// ignored (logged).
    fn next_relevant(&mut self, line: u32, deadline: u64, p: &PacketSpec) -> Step<(u64, pk::Packet)> {
        if let Some(x) = self.peeked.take() {
            return Ok(x);
        }
        loop {
            let got = self.target.next_packet(deadline).or_else(|e| fail(line, e))?;
            let Some((t, bytes)) = got else {
                return Err(Failure {
                    line,
                    message: format!(
                        "expected an outbound packet: {} ; nothing was sent by {} s",
                        self.show_spec(p),
                        secs(self.target.now())
                    ),
                    comparison: None,
                    state: None,
                });
            };
            let parsed = match pk::parse(&bytes) {
                Ok(x) => x,
                Err(e) => return fail(line, format!("the system under test sent a bad packet: {e} ({bytes:02x?})")),
            };
            if parsed.src != self.s.local_ip || parsed.dst != self.s.remote_ip {
                let shown = self.show_actual(&bytes);
                self.step(format!("     {} (ignored: other addresses) {shown}", secs(t)));
                continue;
            }
            return Ok((t, parsed));
        }
    }

    fn peek_next_relevant(&mut self, deadline: u64) -> Step<Option<(u64, pk::Packet)>> {
        if self.peeked.is_none() {
            // Only what is already there, or follows at once: do not wait.
            let until = (self.target.now() + self.target.burst_grace()).min(deadline);
            while let Ok(Some((t, bytes))) = self.target.next_packet(until) {
                let Ok(parsed) = pk::parse(&bytes) else { break };
                if parsed.src != self.s.local_ip || parsed.dst != self.s.remote_ip {
                    continue;
                }
                self.peeked = Some((t, parsed));
                break;
            }
        }
        Ok(self.peeked.clone())
    }

    fn take_peeked(&mut self) {
        self.peeked = None;
    }

    #[allow(clippy::too_many_arguments)]
    fn verify(
        &mut self,
        line: u32,
        time: EventTime,
        start: u64,
        end: u64,
        tol: u64,
        t: u64,
        p: &PacketSpec,
        actual: &pk::Packet,
    ) -> Step<()> {
        let expected_text = self.show_spec(p);
        let mut diffs: Vec<(&'static str, String, String)> = Vec::new();
        let mut rows: Vec<(&'static str, String, String)> = Vec::new();
        let mut row = |name: &'static str, want: String, got: String, differs: bool, diffs: &mut Vec<_>| {
            if differs {
                diffs.push((name, want.clone(), got.clone()));
            }
            rows.push((name, want, got));
        };
        let ipv6 = self.s.ipv6;
        let tick = self.s.tcp_ts_tick_usecs;
        let strict = self.s.strict_option_layout;
        match (&p.kind, &actual.body) {
            (PacketKind::Tcp(spec), Body::Tcp(seg)) => {
                let Some(flow) = self.flow.as_mut() else {
                    return fail(line, "an outbound TCP packet, but the script has no socket under test");
                };
                if flow.kind == FlowKind::Connecting && seg.flags & (flag::SYN | flag::ACK) == flag::SYN {
                    flow.local = SocketAddr::new(actual.src, seg.src_port);
                    flow.kind = FlowKind::Active;
                }
                if seg.flags & flag::SYN != 0 && spec.flags & flag::SYN != 0 && !flow.isn_known {
                    flow.local_off = seg.seq.wrapping_sub(spec.seq);
                    flow.isn_known = true;
                }
                let (want_sp, want_dp) = p.ports.unwrap_or((flow.local.port(), flow.remote.port()));
                row(
                    "ports",
                    format!("{want_sp}>{want_dp}"),
                    format!("{}>{}", seg.src_port, seg.dst_port),
                    (want_sp, want_dp) != (seg.src_port, seg.dst_port),
                    &mut diffs,
                );
                let mask = if self.s.psh_any { !flag::PSH } else { !0 };
                row(
                    "flags",
                    flags_str(spec.flags),
                    flags_str(seg.flags),
                    spec.flags & mask != seg.flags & mask,
                    &mut diffs,
                );
                let seq = seg.seq.wrapping_sub(flow.local_off);
                let len = seg.payload.len();
                row(
                    "seq",
                    format!("{}:{}({})", spec.seq, spec.seq.wrapping_add(spec.len as u32), spec.len),
                    format!("{seq}:{}({len})", seq.wrapping_add(len as u32)),
                    seq != spec.seq || len != spec.len as usize,
                    &mut diffs,
                );
                if spec.flags & flag::ACK != 0 || seg.flags & flag::ACK != 0 {
                    let want = spec.ack.map_or("-".to_string(), |a| a.to_string());
                    let got = if seg.flags & flag::ACK != 0 { seg.ack.to_string() } else { "-".into() };
                    row("ack", want.clone(), got.clone(), want != got, &mut diffs);
                }
                if let Some(w) = spec.win {
                    row("win", w.to_string(), seg.win.to_string(), w != seg.win, &mut diffs);
                }
                if spec.urg != 0 || seg.urg != 0 {
                    row("urg", spec.urg.to_string(), seg.urg.to_string(), spec.urg != seg.urg, &mut diffs);
                }
                // Timestamps: remember script val -> live val; check ecr, and val with a tick.
                let script_ts = spec.options.iter().flatten().find_map(|o| match o {
                    TcpOpt::Timestamp { val, ecr } => Some((*val, *ecr)),
                    _ => None,
                });
                let live_ts = seg.options.iter().find_map(|o| match o {
                    Opt::Ts(v, e) => Some((*v, *e)),
                    _ => None,
                });
                let mut ts_note = None;
                if let (Some((sv, _)), Some((lv, _))) = (script_ts, live_ts) {
                    flow.ts_map.insert(sv, lv);
                    let first = *flow.ts_first.get_or_insert((sv, lv));
                    if tick > 0 {
                        let mapped = first.0.wrapping_add(lv.wrapping_sub(first.1));
                        let off = (mapped.wrapping_sub(sv) as i32).unsigned_abs() as u64 * tick;
                        let ts_tol = {
                            let dynamic = (self.s.tolerance_percent / 100.0) * start as f64;
                            (self.s.tolerance_usecs as f64).max(dynamic) as u64
                        };
                        if off > ts_tol {
                            ts_note = Some(format!("TS val {mapped} (in script terms)"));
                        }
                    }
                }
                if let Some(want) = &spec.options {
                    let off = flow.local_off;
                    let want_opts: Vec<Opt> = want.iter().map(script_opt).collect();
                    let got_opts: Vec<Opt> = seg.options.clone();
                    let differs = !options_match(&want_opts, &got_opts, strict) || ts_note.is_some();
                    let _ = off;
                    let mut got_text = pk::fmt_options(&got_opts);
                    if let Some(n) = &ts_note {
                        got_text.push_str(&format!(" ({n})"));
                    }
                    row("options", pk::fmt_options(&want_opts), got_text, differs, &mut diffs);
                }
                let zeros = seg.payload.iter().all(|b| *b == 0);
                if !zeros {
                    row("payload", "zeros".into(), "other bytes".into(), true, &mut diffs);
                }
            }
            (PacketKind::Udp { len }, Body::Udp(u)) => {
                let Some(flow) = self.flow.as_mut() else {
                    return fail(line, "an outbound UDP packet, but the script has no socket under test");
                };
                if flow.kind == FlowKind::Udp && flow.local.port() == 0 {
                    flow.local.set_port(u.src_port);
                }
                let (want_sp, want_dp) = p.ports.unwrap_or((flow.local.port(), flow.remote.port()));
                row(
                    "ports",
                    format!("{want_sp}>{want_dp}"),
                    format!("{}>{}", u.src_port, u.dst_port),
                    (want_sp, want_dp) != (u.src_port, u.dst_port),
                    &mut diffs,
                );
                row(
                    "length",
                    len.to_string(),
                    u.payload.len().to_string(),
                    *len as usize != u.payload.len(),
                    &mut diffs,
                );
            }
            (PacketKind::Icmp(ic), Body::Icmp(m)) => {
                let want = icmp_numbers(&ic.type_name, ic.code_name.as_deref(), ipv6);
                let Some((ty, code)) = want else {
                    return fail(line, format!("ICMP type {} does not exist for this IP version", ic.type_name));
                };
                row(
                    "type/code",
                    format!("{ty}/{code}"),
                    format!("{}/{}", m.ty, m.code),
                    (ty, code) != (m.ty, m.code),
                    &mut diffs,
                );
                if let Some(mtu) = ic.mtu {
                    let got = if ipv6 { m.rest } else { m.rest & 0xffff };
                    row("mtu", mtu.to_string(), got.to_string(), mtu != got, &mut diffs);
                }
                if let Some(echoed) = &ic.echoed {
                    let q = pk::parse_quote(&m.body);
                    let (want_proto, want_seq) = match echoed {
                        Echoed::Tcp { seq, .. } => (pk::PROTO_TCP, Some(*seq)),
                        Echoed::Udp { .. } => (pk::PROTO_UDP, None),
                    };
                    let off = self.flow.as_ref().map_or(0, |f| f.local_off);
                    let got = q.map(|q| (q.proto, q.seq.map(|s| s.wrapping_sub(off))));
                    let differs = match got {
                        Some((proto, seq)) => proto != want_proto || (want_seq.is_some() && want_seq != seq),
                        None => true,
                    };
                    row("quoted", format!("{echoed:?}"), format!("{got:?}"), differs, &mut diffs);
                }
            }
            _ => {
                let shown = self.show_parsed(actual);
                return Err(Failure {
                    line,
                    message: "the system under test sent another kind of packet".into(),
                    comparison: Some(format!("expected: > {expected_text}\nactual:   > {shown}")),
                    state: None,
                });
            }
        }
        let actual_text = self.show_parsed(actual);
        // Timing.
        let timing = match time {
            EventTime::Any => None,
            _ if t + tol < start || t > end + tol => Some(if start == end {
                format!(
                    "timing error: expected the outbound packet at {} s but it happened at {} s; tolerance {} s",
                    secs(start),
                    secs(t),
                    secs(tol)
                )
            } else {
                format!(
                    "timing error: expected the outbound packet in {}~{} s but it happened at {} s; tolerance {} s",
                    secs(start),
                    secs(end),
                    secs(t),
                    secs(tol)
                )
            }),
            _ => None,
        };
        if diffs.is_empty() && timing.is_none() {
            self.step(format!("{line:>4} {} > {actual_text}", secs(t)));
            return Ok(());
        }
        let when = match time {
            EventTime::Any => "any time".to_string(),
            _ if start == end => format!("at {} s", secs(start)),
            _ => format!("in {}~{} s", secs(start), secs(end)),
        };
        let mut cmp = String::new();
        let _ = writeln!(cmp, "expected: > {expected_text}   ({when}, tolerance {} s)", secs(tol));
        let _ = writeln!(cmp, "actual:   > {actual_text}   (at {} s)", secs(t));
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).clamp(8, 48);
        let _ = writeln!(cmp, "  {:<9} {:<w1$}  actual", "field", "expected");
        for (name, want, got) in &rows {
            let mark = if diffs.iter().any(|d| d.0 == *name) { "   <-- differs" } else { "" };
            let _ = writeln!(cmp, "  {name:<9} {want:<w1$}  {got}{mark}");
        }
        let message = if diffs.is_empty() {
            timing.unwrap_or_default()
        } else {
            let names: Vec<&str> = diffs.iter().map(|d| d.0).collect();
            format!("outbound packet differs from the script in: {}", names.join(", "))
        };
        Err(Failure { line, message, comparison: Some(cmp), state: None })
    }

    // ------------------------------------------------------------ display

    fn show_spec(&self, p: &PacketSpec) -> String {
        let ports = p.ports.map(|(a, b)| format!("{a}>{b} ")).unwrap_or_default();
        match &p.kind {
            PacketKind::Tcp(t) => {
                let mut s =
                    format!("{ports}{} {}:{}({})", flags_str(t.flags), t.seq, t.seq.wrapping_add(t.len as u32), t.len);
                if let Some(a) = t.ack {
                    let _ = write!(s, " ack {a}");
                }
                if let Some(w) = t.win {
                    let _ = write!(s, " win {w}");
                }
                if t.urg != 0 {
                    let _ = write!(s, " urg {}", t.urg);
                }
                match &t.options {
                    None => s.push_str(" <...>"),
                    Some(o) if o.is_empty() => {}
                    Some(o) => {
                        let opts: Vec<Opt> = o.iter().map(script_opt).collect();
                        let _ = write!(s, " {}", pk::fmt_options(&opts));
                    }
                }
                s
            }
            PacketKind::Udp { len } => format!("udp {ports}({len})"),
            PacketKind::Icmp(ic) => {
                let mut s = format!("icmp {}", ic.type_name);
                if let Some(c) = &ic.code_name {
                    let _ = write!(s, " {c}");
                }
                if let Some(m) = ic.mtu {
                    let _ = write!(s, " mtu {m}");
                }
                match &ic.echoed {
                    Some(Echoed::Tcp { seq, len }) => {
                        let _ = write!(s, " [{seq}:{}({len})]", seq.wrapping_add(*len as u32));
                    }
                    Some(Echoed::Udp { len }) => {
                        let _ = write!(s, " [udp ({len})]");
                    }
                    None => {}
                }
                s
            }
        }
    }

    fn show_actual(&self, bytes: &[u8]) -> String {
        match pk::parse(bytes) {
            Ok(p) => {
                let s = self.show_parsed(&p);
                if p.src == self.s.local_ip && p.dst == self.s.remote_ip {
                    format!("> {s}")
                } else {
                    format!("{} > {}: {s}", p.src, p.dst)
                }
            }
            Err(e) => format!("unparsable packet ({e})"),
        }
    }

    /// A packet from the system under test, in script terms (its sequence numbers
    /// relative to its ISN).
    fn show_parsed(&self, p: &pk::Packet) -> String {
        let off = self.flow.as_ref().map_or(0, |f| f.local_off);
        match &p.body {
            Body::Tcp(t) => {
                let seq = t.seq.wrapping_sub(off);
                let len = t.payload.len() as u32;
                let mut s = format!(
                    "{}>{} {} {seq}:{}({len})",
                    t.src_port,
                    t.dst_port,
                    flags_str(t.flags),
                    seq.wrapping_add(len)
                );
                if t.flags & flag::ACK != 0 {
                    let _ = write!(s, " ack {}", t.ack);
                }
                let _ = write!(s, " win {}", t.win);
                if t.urg != 0 {
                    let _ = write!(s, " urg {}", t.urg);
                }
                if !t.options.is_empty() {
                    let _ = write!(s, " {}", pk::fmt_options(&t.options));
                }
                s
            }
            Body::Udp(u) => format!("udp {}>{} ({})", u.src_port, u.dst_port, u.payload.len()),
            Body::Icmp(m) => {
                let mut s = format!("icmp type {} code {}", m.ty, m.code);
                if m.rest != 0 {
                    let _ = write!(s, " rest {}", m.rest);
                }
                if let Some(q) = pk::parse_quote(&m.body) {
                    let _ = write!(s, " [proto {} {}>{}", q.proto, q.src_port, q.dst_port);
                    if let Some(seq) = q.seq {
                        let _ = write!(s, " seq {}", seq.wrapping_sub(off));
                    }
                    s.push(']');
                }
                s
            }
            Body::Other(proto) => format!("IP protocol {proto}"),
        }
    }
}

fn call_name(sc: &SyscallSpec) -> &str {
    let t = sc.text.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit() || c == ' ');
    t.split('(').next().unwrap_or("call")
}

/// `S.`, `P.`, `F.`, `R`, `.`, `-` (no flags).
pub(crate) fn flags_str(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (flag::FIN, 'F'),
        (flag::SYN, 'S'),
        (flag::RST, 'R'),
        (flag::PSH, 'P'),
        (flag::URG, 'U'),
        (flag::ECE, 'E'),
        (flag::CWR, 'W'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & flag::ACK != 0 {
        s.push('.');
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

fn script_opt(o: &TcpOpt) -> Opt {
    match o {
        TcpOpt::Nop => Opt::Nop,
        TcpOpt::Eol => Opt::Eol,
        TcpOpt::Mss(m) => Opt::Mss(*m),
        TcpOpt::WScale(s) => Opt::WScale(*s),
        TcpOpt::SackOk => Opt::SackOk,
        TcpOpt::Sack(b) => Opt::Sack(b.clone()),
        TcpOpt::Timestamp { val, ecr } => Opt::Ts(*val, *ecr),
    }
}

/// Expected (script) options against actual ones. TS val is not compared here (it is
/// a clock: see `--tcp_ts_tick_usecs`); TS ecr is. Without `strict` the layout (order,
/// NOP/EOL padding) does not matter.
fn options_match(want: &[Opt], got: &[Opt], strict: bool) -> bool {
    let norm = |o: &Opt| match o {
        Opt::Ts(_, e) => Opt::Ts(0, *e),
        other => other.clone(),
    };
    if strict {
        // Trailing EOL padding is not part of the layout.
        let trim = |v: &[Opt]| {
            let mut v: Vec<Opt> = v.iter().map(norm).collect();
            while v.last() == Some(&Opt::Eol) {
                v.pop();
            }
            v
        };
        return trim(want) == trim(got);
    }
    let key = |o: &Opt| match o {
        Opt::Mss(_) => 2,
        Opt::WScale(_) => 3,
        Opt::SackOk => 4,
        Opt::Sack(_) => 5,
        Opt::Ts(..) => 8,
        Opt::Unknown { kind, .. } => *kind as u32 + 256,
        Opt::Nop | Opt::Eol => 0,
    };
    let canon = |v: &[Opt]| {
        let mut v: Vec<Opt> = v.iter().filter(|o| !o.is_padding()).map(norm).collect();
        v.sort_by_key(key);
        v
    };
    canon(want) == canon(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_layouts() {
        let linux = [Opt::Mss(1460), Opt::SackOk, Opt::Ts(5, 0), Opt::Nop, Opt::WScale(7)];
        let ours = [Opt::Mss(1460), Opt::Nop, Opt::WScale(7), Opt::SackOk, Opt::Ts(9, 0)];
        assert!(options_match(&linux, &ours, false));
        assert!(!options_match(&linux, &ours, true));
        assert!(options_match(&linux, &linux, true));
        assert!(!options_match(&[Opt::Mss(1460)], &[Opt::Mss(1400)], false));
        assert!(!options_match(&[Opt::Ts(1, 2)], &[Opt::Ts(1, 3)], false));
        assert!(!options_match(&[], &[Opt::SackOk], false));
    }

    #[test]
    fn icmp_names() {
        assert_eq!(icmp_numbers("unreachable", Some("port_unreachable"), false), Some((3, 3)));
        assert_eq!(icmp_numbers("unreachable", Some("port_unreachable"), true), Some((1, 4)));
        assert_eq!(icmp_numbers("unreachable", Some("frag_needed"), false), Some((3, 4)));
        assert_eq!(icmp_numbers("packet_too_big", None, true), Some((2, 0)));
        assert_eq!(icmp_numbers("packet_too_big", None, false), None);
        assert_eq!(flags_str(flag::SYN | flag::ACK), "S.");
        assert_eq!(flags_str(0), "-");
    }
}
