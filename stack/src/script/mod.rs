//! Scripted TCP tests in packetdrill's language (feature `script`): the same script
//! runs against the sans-IO core in virtual time ([`CoreTarget`], no root, no device,
//! deterministic, milliseconds per script) and, through the `demo` crate, against
//! Linux's TCP on a TUN device in a network namespace of its own (`demo script --linux`),
//! which proves the expectations are what a real TCP does.
//!
//! ```text
//! // A passive open, data, and the peer's close (RFC 9293 3.5, 3.6).
//!     0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
//!    +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
//!    +0 bind(3, ..., ...) = 0
//!    +0 listen(3, 1) = 0
//!    +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
//!    +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
//!  +.01 < . 1:1(0) ack 1 win 257
//!    +0 accept(3, ..., ...) = 4
//!    +0 write(4, ..., 1000) = 1000
//!    +0 > P. 1:1001(1000) ack 1
//!  +.01 < F. 1:1(0) ack 1001 win 257
//!    +0 > . 1001:1001(0) ack 2
//!    +0 read(4, ..., 100) = 0
//! ```
//!
//! # The language (a subset of packetdrill's)
//!
//! A script is options, then events in time order. Whitespace and newlines only
//! separate tokens; comments are `// ...` and `/* ... */`. Anything outside this
//! subset is a [`ParseError`] naming its line.
//!
//! **Options** (lines before the first event): `--ip_version=ipv4|ipv6`,
//! `--tolerance_usecs=N` (default 4000), `--tolerance_percent=P` (default 12.5),
//! `--local_ip=IP` (the system under test, default 192.168.0.1 / fd3d:fa7b:d17d::1),
//! `--remote_ip=IP` (the script's host, default 192.0.2.1 / 2001:db8::1),
//! `--bind_port=N` and `--connect_port=N` (default 8080), `--mtu=N` (default 1500),
//! `--tcp_ts_tick_usecs=N`, `--tcp_ts_ecr_scaled`, `--strict_segments`, and
//! tunstack's `--strict_option_layout` and `--psh_any` (PSH of outbound segments is
//! not compared: where a stack sets it within a burst is its choice).
//!
//! **Times**: `0` or `1.5` (seconds since the start), `+0.1` (after the previous event),
//! and for outbound packets only `*` (any time) and ranges `0.1~0.2` / `+0.1~+0.2`. An
//! outbound packet, or a blocking call's return, must happen within
//! `max(tolerance_usecs, tolerance_percent% of the time since the previous event)` of
//! its time. The first event is at time 0.
//!
//! **System calls**, each `NAME(ARGS) = RESULT [ERRNO [(text)]]`, optionally
//! `...END` before the name for a blocking call that returns at END (accept, connect,
//! read, write):
//!
//! | call | notes |
//! |---|---|
//! | `socket(..., SOCK_STREAM, IPPROTO_TCP) = 3` | also `SOCK_DGRAM, IPPROTO_UDP`; the result names the socket |
//! | `bind(3, ..., ...) = 0` | binds the local address and `--bind_port` |
//! | `listen(3, BACKLOG) = 0` | makes it the socket under test |
//! | `accept(3, ..., ...) = 4` | the result names the new socket |
//! | `connect(3, ..., ...) = 0` | to the remote address and `--connect_port`; `-1 EINPROGRESS` when non-blocking |
//! | `read(4, ..., N)`, `recv(4, ..., N, FLAGS)`, `recvfrom(4, ..., N, FLAGS, ..., ...)` | FLAGS: `0`, `MSG_DONTWAIT` |
//! | `write(4, ..., N)`, `send(4, ..., N, FLAGS)`, `sendto(4, ..., N, FLAGS, ..., ...)` | writes N zero bytes |
//! | `close(4)`, `shutdown(4, SHUT_RD\|SHUT_WR\|SHUT_RDWR)` | |
//! | `setsockopt(4, LEVEL, OPT, VALUE, LEN)`, `getsockopt(4, LEVEL, OPT, VALUE, [LEN])` | see below |
//! | `fcntl(3, F_SETFL, O_RDWR\|O_NONBLOCK)`, `fcntl(3, F_GETFL)` | |
//!
//! Socket options: `SO_REUSEADDR` (accepted, no effect on the core), `SO_KEEPALIVE`,
//! `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`, `TCP_NODELAY`, `TCP_USER_TIMEOUT`
//! (ms), `TCP_CONGESTION` (`"reno"`, `"cubic"`, `"bbr"`), `SO_LINGER` (`{onoff=1, linger=0}`:
//! abortive close), `SO_RCVBUF` / `SO_SNDBUF` (the core's buffers are per stack: only
//! on the first socket, before `listen`/`connect`; `getsockopt` reports twice the value
//! as Linux does), `SO_ERROR` (read only; `[0]` or `[ECONNREFUSED]`). Levels are
//! `SOL_SOCKET` and `SOL_TCP`/`IPPROTO_TCP`. Errno names: see [`Errno`].
//!
//! **Packets**: `<` is sent by the script's host to the system under test, `>` is
//! expected from it.
//!
//! - TCP: `[SRC>DST] FLAGS START:END(LEN) [ack N] [win N] [urg N] [<OPTIONS>]`. FLAGS are
//!   letters of `F S R P U E W` and `.` for ACK (`S`, `S.`, `.`, `P.`, `F.`, `R`, `R.`),
//!   or `-` for none. OPTIONS: `nop`, `eol`, `mss N`, `wscale N`, `sackOK`,
//!   `sack L:R [L:R...]`, `TS val N ecr N`; outbound, `<...>` skips the check. Inbound
//!   packets need `win`; outbound, `win` is checked when given. Payloads are zeros.
//! - UDP: `udp (N)`.
//! - ICMP: `icmp TYPE [CODE] [mtu N] [[START:END(LEN)] | [udp (N)]]` with packetdrill's
//!   names (`unreachable port_unreachable`, `unreachable frag_needed mtu 1200`,
//!   `packet_too_big mtu 1280`...); inbound ones quote a packet of the connection under
//!   test.
//!
//! **Commands**: `` `sysctl -q net.ipv4.KEY=VALUE ...` `` (only `net.ipv4.*` and
//! `net.ipv6.*`, namespace-local); other shell commands are not supported. The core
//! maps the sysctls it has an equivalent of to its [`crate::Config`] (timestamps, sack,
//! window_scaling, syn/synack_retries, retries2, rmem/wmem maximum, congestion_control,
//! recovery and early_retrans (RACK-TLP: off if either turns its part off), rto_min_us,
//! keepalive_time/intvl/probes); the others have no effect on it.
//!
//! Not supported: `%{ }%` Python blocks, `sendmsg`/`recvmsg`/`poll`/`epoll`/`ioctl`,
//! explicit addresses and buffers, IP header fields (tos, ecn, ttl, flowlabel),
//! encapsulations, TCP Fast Open, MD5, AccECN, `--ip_version=ipv4-mapped-ipv6`.
//!
//! # Semantics
//!
//! See [the `run` module](mod@run) (the interpreter): packetdrill's sequence number, timestamp and timing
//! rules, with two deliberate differences: outbound TS ecr are compared (the script
//! chose the values they echo), and the layout of outbound TCP options (their order and
//! NOP padding) is not, unless `--strict_option_layout` (it is a stack's choice; the
//! options and their values are compared).
//!
//! A script expected to fail on one target says so in a comment, with why:
//! `// known-failing: core: <reason>` (or `linux`); [`verdict`] turns the outcome into
//! pass, fail, expected failure or unexpected pass.
//!
//! # The core as the system under test
//!
//! [`CoreTarget`] runs a [`crate::Stack`] configured like Linux where the core has a knob
//! ([`linux_like_config`]): MSS from the MTU, window scale 7 (a 6 MiB receive buffer,
//! Linux's `tcp_rmem` maximum), 40 ms delayed ACKs, RTO between 200 ms and 120 s,
//! TIME-WAIT 60 s, 6 SYN retries, 15 data retries, CUBIC, SACK, timestamps.

mod ast;
mod core;
mod lex;
pub mod packet;
mod parse;
pub mod run;

use std::path::{Path, PathBuf};

pub use self::ast::*;
pub use self::core::{linux_like_config, CoreTarget};
pub use self::parse::{parse, ParseError};
pub use self::run::{icmp_numbers, run, CallStatus, Failure, Report, Target};

/// Read and parse a script file; errors are `FILE:LINE: message`.
pub fn load(path: &Path) -> Result<Script, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&path.display().to_string(), &text).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.message))
}

/// Run a script against the sans-IO core.
pub fn run_core(script: &Script, progress: &mut dyn FnMut(&str)) -> Report {
    let mut target = CoreTarget::new(&script.settings);
    run(script, &mut target, progress)
}

/// Every `*.pkt` file under `dir` (recursively), sorted.
pub fn collect(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pkt") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A run's outcome, with `// known-failing:` taken into account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Failed as the script says it does on this target.
    ExpectedFailure(String),
    /// Passed although the script says it fails on this target (the mark is stale).
    UnexpectedPass(String),
}

impl Verdict {
    /// Pass and expected failure are fine; fail and unexpected pass are not.
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Pass | Verdict::ExpectedFailure(_))
    }
}

pub fn verdict(script: &Script, report: &Report) -> Verdict {
    match (script.known_failing_on(report.target), report.passed()) {
        (None, true) => Verdict::Pass,
        (None, false) => Verdict::Fail,
        (Some(why), false) => Verdict::ExpectedFailure(why.to_string()),
        (Some(why), true) => Verdict::UnexpectedPass(why.to_string()),
    }
}

#[cfg(test)]
mod tests;
