//! The parser: packetdrill's grammar, the subset documented in [`super`]. Anything
//! outside it is a [`ParseError`] naming the line; the parser never panics (checked
//! arithmetic, no indexing past the tokens; `tests` and a property test feed it
//! garbage).

use std::fmt;
use std::net::IpAddr;

use super::ast::*;
use super::lex::{tokenize, Tok, Token};

/// A script that is not in the subset, with the line where that shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

type Result<T> = std::result::Result<T, ParseError>;

fn error<T>(line: u32, message: impl Into<String>) -> Result<T> {
    Err(ParseError { line, message: message.into() })
}

/// Parse a script. `name` is used in messages (usually the file name).
pub fn parse(name: &str, src: &str) -> Result<Script> {
    let (settings, body) = parse_options(src)?;
    let tokens = tokenize(&body)?;
    let mut p = Parser { t: &tokens, pos: 0 };
    let mut events: Vec<Event> = Vec::new();
    // packetdrill's init command: a `command` before the first event, without a time.
    if let Some(Tok::Backquoted(cmd)) = p.peek() {
        let line = p.line();
        p.pos += 1;
        events.push(Event { line, time: EventTime::Absolute(0), action: Action::Sysctl(parse_command(cmd, line)?) });
    }
    while !p.at_end() {
        // packetdrill's cleanup command: a `command` after the last event.
        if let Some(Tok::Backquoted(cmd)) = p.peek() {
            let line = p.line();
            p.pos += 1;
            if !p.at_end() {
                return error(line, "a `command` needs a time, except before the first event and after the last");
            }
            events.push(Event {
                line,
                time: EventTime::Relative(0),
                action: Action::Sysctl(parse_command(cmd, line)?),
            });
            break;
        }
        let ev = p.event()?;
        check_event_order(&events, &ev)?;
        events.push(ev);
    }
    Ok(Script { name: name.to_string(), settings, events, known_failing: known_failing(src) })
}

/// `// known-failing: core: reason` comment lines.
fn known_failing(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in src.lines() {
        let Some(rest) = line.trim().strip_prefix("//") else { continue };
        let Some(rest) = rest.trim().strip_prefix("known-failing:") else { continue };
        let Some((target, why)) = rest.split_once(':') else { continue };
        out.push((target.trim().to_string(), why.trim().to_string()));
    }
    out
}

fn check_event_order(events: &[Event], ev: &Event) -> Result<()> {
    let Some(prev) = events.last() else {
        let t = match ev.time {
            EventTime::Absolute(t) | EventTime::Relative(t) => t,
            EventTime::AbsoluteRange(t, _) | EventTime::RelativeRange(t, _) => t,
            EventTime::Any => 0,
        };
        if t != 0 {
            return error(ev.line, "the first event must be at time 0");
        }
        return Ok(());
    };
    if let (EventTime::Absolute(a), EventTime::Absolute(b)) = (prev.time, ev.time) {
        if b < a {
            return error(ev.line, format!("time goes backward in the script, from {} to {}", secs(a), secs(b)));
        }
    }
    Ok(())
}

fn secs(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

// ---------------------------------------------------------------- options

/// The `--name[=value]` lines before the first event; they are blanked out of the
/// returned text (line numbers are kept).
fn parse_options(src: &str) -> Result<(Settings, String)> {
    let mut s = Settings::default();
    let mut explicit_local = false;
    let mut explicit_remote = false;
    let mut body = String::with_capacity(src.len());
    let mut in_header = true;
    for (n, line) in src.lines().enumerate() {
        let lineno = (n + 1).min(u32::MAX as usize) as u32;
        let t = line.trim();
        if in_header && t.starts_with("--") {
            for word in t.split_whitespace() {
                if word.starts_with("//") {
                    break;
                }
                let Some(opt) = word.strip_prefix("--") else {
                    return error(lineno, format!("expected `--option[=value]`, found `{word}`"));
                };
                let (name, value) = match opt.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (opt, None),
                };
                apply_option(&mut s, name, value, lineno, &mut explicit_local, &mut explicit_remote)?;
            }
            body.push('\n');
            continue;
        }
        if in_header && !(t.is_empty() || t.starts_with("//")) {
            in_header = false;
        }
        body.push_str(line);
        body.push('\n');
    }
    if s.ipv6 {
        if !explicit_local {
            s.local_ip = IpAddr::from(DEFAULT_LOCAL_V6);
        }
        if !explicit_remote {
            s.remote_ip = IpAddr::from(DEFAULT_REMOTE_V6);
        }
    }
    if s.local_ip.is_ipv6() != s.ipv6 || s.remote_ip.is_ipv6() != s.ipv6 {
        return error(1, "--local_ip and --remote_ip must be of the --ip_version family");
    }
    if s.local_ip == s.remote_ip {
        return error(1, "--local_ip and --remote_ip must differ");
    }
    if s.ipv6 && s.mtu < 1280 {
        return error(1, "--mtu below 1280 with --ip_version=ipv6 (RFC 8200 5)");
    }
    Ok((s, body))
}

const SUPPORTED_OPTIONS: &str = "ip_version, tolerance_usecs, tolerance_percent, local_ip, remote_ip, bind_port, \
     connect_port, mtu, tcp_ts_tick_usecs, tcp_ts_ecr_scaled, strict_segments, strict_option_layout, psh_any";

fn apply_option(
    s: &mut Settings,
    name: &str,
    value: Option<&str>,
    line: u32,
    explicit_local: &mut bool,
    explicit_remote: &mut bool,
) -> Result<()> {
    let need = |v: Option<&str>| match v {
        Some(v) if !v.is_empty() => Ok(v.trim_matches('"').to_string()),
        _ => error(line, format!("--{name} needs a value (--{name}=VALUE)")),
    };
    let int = |v: Option<&str>, max: u64| -> Result<u64> {
        let v = need(v)?;
        match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => error(line, format!("--{name}: `{v}` is not an integer from 0 to {max}")),
        }
    };
    let flag = |v: Option<&str>| -> Result<bool> {
        match v {
            None => Ok(true),
            Some(v) => error(line, format!("--{name} takes no value (found `{v}`)")),
        }
    };
    match name {
        "ip_version" => match need(value)?.as_str() {
            "ipv4" => s.ipv6 = false,
            "ipv6" => s.ipv6 = true,
            "ipv4-mapped-ipv6" => return error(line, "--ip_version=ipv4-mapped-ipv6 is not supported"),
            v => return error(line, format!("--ip_version: `{v}` is not ipv4 or ipv6")),
        },
        "tolerance_usecs" => {
            let v = int(value, 60_000_000)?;
            if v == 0 {
                return error(line, "--tolerance_usecs must be positive");
            }
            s.tolerance_usecs = v;
        }
        "tolerance_percent" => {
            let v = need(value)?;
            match v.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => s.tolerance_percent = p,
                _ => return error(line, format!("--tolerance_percent: `{v}` is not a number from 0 to 100")),
            }
        }
        "local_ip" | "remote_ip" => {
            let v = need(value)?;
            let v = v.split('/').next().unwrap_or_default();
            let Ok(ip) = v.parse::<IpAddr>() else {
                return error(line, format!("--{name}: `{v}` is not an IP address"));
            };
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return error(line, format!("--{name}: {ip} is not a unicast address"));
            }
            if name == "local_ip" {
                s.local_ip = ip;
                *explicit_local = true;
            } else {
                s.remote_ip = ip;
                *explicit_remote = true;
            }
            if ip.is_ipv6() {
                s.ipv6 = true;
            }
        }
        "bind_port" | "connect_port" => {
            let v = int(value, 65535)?;
            if v == 0 {
                return error(line, format!("--{name} must not be 0"));
            }
            if name == "bind_port" {
                s.bind_port = v as u16;
            } else {
                s.connect_port = v as u16;
            }
        }
        "mtu" => {
            let v = int(value, 65535)?;
            if v < 576 {
                return error(line, "--mtu must be at least 576");
            }
            s.mtu = v as usize;
        }
        "tcp_ts_tick_usecs" => s.tcp_ts_tick_usecs = int(value, 1_000_000)?,
        "tcp_ts_ecr_scaled" => s.tcp_ts_ecr_scaled = flag(value)?,
        "strict_segments" => s.strict_segments = flag(value)?,
        "strict_option_layout" => s.strict_option_layout = flag(value)?,
        "psh_any" => s.psh_any = flag(value)?,
        _ => return error(line, format!("option --{name} is not supported (supported: {SUPPORTED_OPTIONS})")),
    }
    Ok(())
}

// ---------------------------------------------------------------- events

struct Parser<'a> {
    t: &'a [Token],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.t.len()
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.t.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&'a Tok> {
        self.t.get(self.pos + n).map(|t| &t.tok)
    }

    /// The line of the next token (or of the last one at the end).
    fn line(&self) -> u32 {
        self.t.get(self.pos).or_else(|| self.t.last()).map_or(1, |t| t.line)
    }

    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.t.get(self.pos).map(|t| &t.tok);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => t.describe(),
            None => "the end of the script".into(),
        }
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, c: char, what: &str) -> Result<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            error(self.line(), format!("expected `{c}` {what}, found {}", self.found()))
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, what: &str) -> Result<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => error(self.line(), format!("expected {what}, found {}", self.found())),
        }
    }

    /// An unsigned decimal integer no larger than `max`.
    fn uint(&mut self, what: &str, max: u64) -> Result<u64> {
        let line = self.line();
        match self.peek() {
            Some(Tok::Int(s)) => {
                self.pos += 1;
                match s.parse::<u64>() {
                    Ok(v) if v <= max => Ok(v),
                    _ => error(line, format!("{what} `{s}` is out of range (0 to {max})")),
                }
            }
            _ => error(line, format!("expected {what} (an integer), found {}", self.found())),
        }
    }

    fn event(&mut self) -> Result<Event> {
        let line = self.line();
        let time = self.event_time()?;
        let action = match self.peek() {
            Some(Tok::Punct('<')) | Some(Tok::Punct('>')) => Action::Packet(self.packet()?),
            Some(Tok::Backquoted(cmd)) => {
                self.pos += 1;
                Action::Sysctl(parse_command(cmd, line)?)
            }
            Some(Tok::Code) => {
                return error(line, "%{ ... }% code blocks (packetdrill's Python assertions) are not supported")
            }
            Some(Tok::Ellipsis) | Some(Tok::Word(_)) => Action::Syscall(self.syscall()?),
            Some(Tok::OptionName(o)) => {
                return error(line, format!("option --{o} must come before the first event, on a line of its own"))
            }
            _ => {
                return error(
                    line,
                    format!(
                        "expected a packet (`<` or `>`), a system call or a `command` after the time, found {}",
                        self.found()
                    ),
                )
            }
        };
        let outbound_packet = matches!(&action, Action::Packet(p) if p.dir == Direction::Outbound);
        match time {
            EventTime::Any if !outbound_packet => {
                return error(line, "event time `*` can only be used with outbound packets")
            }
            EventTime::AbsoluteRange(..) | EventTime::RelativeRange(..) if !outbound_packet => {
                return error(line, "a time range can only be used with outbound packets")
            }
            _ => {}
        }
        Ok(Event { line, time, action })
    }

    fn event_time(&mut self) -> Result<EventTime> {
        let line = self.line();
        if self.eat_punct('*') {
            return Ok(EventTime::Any);
        }
        if self.eat_punct('+') {
            let a = self.time()?;
            if self.eat_punct('~') {
                if !self.eat_punct('+') {
                    return error(line, "a relative time range is written `+A~+B`");
                }
                let b = self.time()?;
                if b < a {
                    return error(line, "time range is backwards");
                }
                return Ok(EventTime::RelativeRange(a, b));
            }
            return Ok(EventTime::Relative(a));
        }
        if self.is_punct('-') {
            return error(line, "negative time");
        }
        let a = self.time()?;
        if self.eat_punct('~') {
            let b = self.time()?;
            if b < a {
                return error(line, "time range is backwards");
            }
            return Ok(EventTime::AbsoluteRange(a, b));
        }
        Ok(EventTime::Absolute(a))
    }

    /// Seconds (`2`, `0.100`, `.1`) as microseconds.
    fn time(&mut self) -> Result<u64> {
        let line = self.line();
        let text = match self.peek() {
            Some(Tok::Int(s)) | Some(Tok::Float(s)) => s.clone(),
            _ => return error(line, format!("expected a time in seconds, found {}", self.found())),
        };
        self.pos += 1;
        parse_seconds(&text).ok_or_else(|| ParseError { line, message: format!("time `{text}` is out of range") })
    }

    // ------------------------------------------------------------ packets

    fn packet(&mut self) -> Result<PacketSpec> {
        let line = self.line();
        let dir = match self.next() {
            Some(Tok::Punct('<')) => Direction::Inbound,
            _ => Direction::Outbound,
        };
        if self.is_punct('(') || self.is_punct('[') {
            return error(line, "IP header fields (tos, ecn, ttl, flowlabel) are not supported");
        }
        if self.is_word("ipv4") || self.is_word("ipv6") || self.is_word("gre") || self.is_word("mpls") {
            return error(
                line,
                "explicit IP headers and encapsulation (ipv4/ipv6/gre/mpls prefixes) are not supported",
            );
        }
        if self.eat_word("udp") {
            let ports = self.opt_ports()?;
            self.expect_punct('(', "before the UDP payload length")?;
            let len = self.uint("UDP payload length", 65507)? as u16;
            self.expect_punct(')', "after the UDP payload length")?;
            return Ok(PacketSpec { dir, ports, kind: PacketKind::Udp { len } });
        }
        if self.eat_word("icmp") {
            return Ok(PacketSpec { dir, ports: None, kind: PacketKind::Icmp(self.icmp()?) });
        }
        let ports = self.opt_ports()?;
        let tcp = self.tcp(dir)?;
        Ok(PacketSpec { dir, ports, kind: PacketKind::Tcp(tcp) })
    }

    fn opt_ports(&mut self) -> Result<Option<(u16, u16)>> {
        if matches!(self.peek(), Some(Tok::Int(_))) && self.peek_at(1) == Some(&Tok::Punct('>')) {
            let src = self.uint("source port", 65535)? as u16;
            self.pos += 1;
            let dst = self.uint("destination port", 65535)? as u16;
            return Ok(Some((src, dst)));
        }
        Ok(None)
    }

    fn tcp(&mut self, dir: Direction) -> Result<TcpSpec> {
        let line = self.line();
        // Flags: `S`, `S.`, `P.`, `.`, `-` (none), letters of FSRPEWU.
        let mut flags = 0u8;
        match self.peek() {
            Some(Tok::Punct('.')) => {
                self.pos += 1;
                flags |= flag::ACK;
            }
            Some(Tok::Punct('-')) => {
                self.pos += 1;
            }
            Some(Tok::Word(w)) => {
                self.pos += 1;
                for c in w.chars() {
                    flags |= match c {
                        'F' => flag::FIN,
                        'S' => flag::SYN,
                        'R' => flag::RST,
                        'P' => flag::PSH,
                        'U' => flag::URG,
                        'E' => flag::ECE,
                        'W' => flag::CWR,
                        _ => {
                            return error(
                                line,
                                format!("`{w}` is not a TCP packet (flags are F S R P U E W and `.` for ACK; AccECN is not supported)"),
                            )
                        }
                    };
                }
                if self.eat_punct('.') {
                    flags |= flag::ACK;
                }
            }
            _ => {
                return error(
                    line,
                    format!("expected TCP flags (S, S., ., P., F., R...) or `udp`/`icmp`, found {}", self.found()),
                )
            }
        }
        // start:end(len)
        let seq = self.uint("start sequence number", u32::MAX as u64)? as u32;
        self.expect_punct(':', "in start:end(length)")?;
        let end = self.uint("end sequence number", u32::MAX as u64)? as u32;
        self.expect_punct('(', "in start:end(length)")?;
        let len = self.uint("payload length", u16::MAX as u64)? as u16;
        self.expect_punct(')', "in start:end(length)")?;
        if seq.checked_add(len as u32) != Some(end) {
            return error(line, format!("inconsistent TCP sequence numbers and payload size: {seq}:{end}({len})"));
        }
        let mut ack = None;
        if self.eat_word("ack") {
            ack = Some(self.uint("ack number", u32::MAX as u64)? as u32);
        }
        let mut win = None;
        if self.eat_word("win") {
            win = Some(self.uint("window", u16::MAX as u64)? as u16);
        }
        let mut urg = 0;
        if self.eat_word("urg") {
            urg = self.uint("urgent pointer", u16::MAX as u64)? as u16;
        }
        if self.is_word("ack") || self.is_word("win") {
            return error(self.line(), "`ack`, `win` and `urg` come in that order");
        }
        let mut options = Some(Vec::new());
        if self.eat_punct('<') {
            if self.peek() == Some(&Tok::Ellipsis) {
                self.pos += 1;
                options = None;
            } else {
                let mut list = vec![self.tcp_option()?];
                while self.eat_punct(',') {
                    list.push(self.tcp_option()?);
                }
                options = Some(list);
            }
            self.expect_punct('>', "at the end of the TCP options")?;
        }
        if dir == Direction::Inbound {
            if win.is_none() {
                return error(line, "window must be specified for inbound packets (`win N`)");
            }
            if options.is_none() {
                return error(line, "<...> for TCP options can only be used with outbound packets");
            }
        }
        if let Some(opts) = &options {
            let bytes: usize = opts.iter().map(option_len).sum();
            if bytes > 40 {
                return error(line, format!("TCP options take {bytes} bytes, more than the 40 a header holds"));
            }
        }
        Ok(TcpSpec { flags, seq, len, ack, win, urg, options })
    }

    fn tcp_option(&mut self) -> Result<TcpOpt> {
        let line = self.line();
        let name = self.word("a TCP option")?;
        Ok(match name.as_str() {
            "nop" => TcpOpt::Nop,
            "eol" => TcpOpt::Eol,
            "mss" => TcpOpt::Mss(self.uint("mss value", u16::MAX as u64)? as u16),
            "wscale" => TcpOpt::WScale(self.uint("window scale shift count", u8::MAX as u64)? as u8),
            "sackOK" => TcpOpt::SackOk,
            "sack" => {
                let mut blocks = Vec::new();
                while matches!(self.peek(), Some(Tok::Int(_))) {
                    let l = self.uint("SACK block left edge", u32::MAX as u64)? as u32;
                    self.expect_punct(':', "in a SACK block left:right")?;
                    let r = self.uint("SACK block right edge", u32::MAX as u64)? as u32;
                    blocks.push((l, r));
                }
                if blocks.is_empty() || blocks.len() > 4 {
                    return error(line, "`sack` takes 1 to 4 blocks `left:right`");
                }
                TcpOpt::Sack(blocks)
            }
            "TS" => {
                if !self.eat_word("val") {
                    return error(line, "expected `TS val N ecr N`");
                }
                let val = self.uint("TS val", u32::MAX as u64)? as u32;
                if !self.eat_word("ecr") {
                    return error(line, "expected `TS val N ecr N`");
                }
                let ecr = self.uint("TS ecr", u32::MAX as u64)? as u32;
                TcpOpt::Timestamp { val, ecr }
            }
            other => {
                return error(
                    line,
                    format!(
                        "TCP option `{other}` is not supported (nop, eol, mss, wscale, sackOK, sack, TS val/ecr are)"
                    ),
                )
            }
        })
    }

    fn icmp(&mut self) -> Result<IcmpSpec> {
        let line = self.line();
        let type_name = self.word("an ICMP type (unreachable, packet_too_big, time_exceeded, echo_request...)")?;
        let mut code_name = None;
        if let Some(Tok::Word(w)) = self.peek() {
            if w != "mtu" && w != "id" {
                code_name = Some(w.clone());
                self.pos += 1;
            }
        }
        let mut mtu = None;
        if self.eat_word("mtu") {
            mtu = Some(self.uint("ICMP mtu", u32::MAX as u64)? as u32);
        }
        if self.is_word("id") {
            return error(line, "ICMP echo ids are not supported");
        }
        let mut echoed = None;
        if self.eat_punct('[') {
            if self.eat_word("udp") {
                self.expect_punct('(', "in [udp (N)]")?;
                let len = self.uint("UDP payload length", 65507)? as u16;
                self.expect_punct(')', "in [udp (N)]")?;
                echoed = Some(Echoed::Udp { len });
            } else {
                let seq = self.uint("start sequence number", u32::MAX as u64)? as u32;
                self.expect_punct(':', "in [start:end(length)]")?;
                let end = self.uint("end sequence number", u32::MAX as u64)? as u32;
                self.expect_punct('(', "in [start:end(length)]")?;
                let len = self.uint("payload length", u16::MAX as u64)? as u16;
                self.expect_punct(')', "in [start:end(length)]")?;
                if seq.checked_add(len as u32) != Some(end) {
                    return error(line, "inconsistent sequence numbers and payload size in the quoted packet");
                }
                echoed = Some(Echoed::Tcp { seq, len });
            }
            self.expect_punct(']', "after the quoted packet")?;
        }
        if super::run::icmp_numbers(&type_name, code_name.as_deref(), false).is_none()
            && super::run::icmp_numbers(&type_name, code_name.as_deref(), true).is_none()
        {
            return error(
                line,
                format!(
                    "unknown ICMP type/code `{type_name}{}`",
                    code_name.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
                ),
            );
        }
        Ok(IcmpSpec { type_name, code_name, mtu, echoed })
    }

    // ------------------------------------------------------------ system calls

    fn syscall(&mut self) -> Result<SyscallSpec> {
        let line = self.line();
        let start = self.pos;
        let mut end = None;
        if self.peek() == Some(&Tok::Ellipsis) {
            self.pos += 1;
            end = Some(self.time()?);
        }
        let name = self.word("a system call name")?;
        self.expect_punct('(', "after the system call name")?;
        let mut args = Vec::new();
        if !self.eat_punct(')') {
            loop {
                args.push(self.expr()?);
                if self.eat_punct(')') {
                    break;
                }
                self.expect_punct(',', "between arguments")?;
            }
        }
        self.expect_punct('=', "before the expected result (`= VALUE`)")?;
        let neg = self.eat_punct('-');
        let ret = match self.peek() {
            Some(Tok::Int(s)) => s.parse::<i64>().ok(),
            Some(Tok::Hex(s)) => i64::from_str_radix(s, 16).ok(),
            _ => return error(self.line(), format!("expected the result (an integer), found {}", self.found())),
        };
        let Some(ret) = ret else { return error(self.line(), "result out of range") };
        self.pos += 1;
        let ret = if neg { -ret } else { ret };
        let mut errno = None;
        if let Some(Tok::Word(w)) = self.peek() {
            match Errno::from_name(w) {
                Some(e) => {
                    errno = Some(e);
                    self.pos += 1;
                }
                None if w.starts_with('E') && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) => {
                    return error(self.line(), format!("errno `{w}` is not one this runner knows"));
                }
                None => {}
            }
        }
        if self.is_punct('(') {
            self.skip_note()?;
        }
        if errno.is_some() && ret != -1 {
            return error(line, "an errno goes with the result -1");
        }
        let text = render(&self.t[start..self.pos]);
        let call = resolve_call(&name, &args, line)?;
        if end.is_some()
            && !matches!(call, Call::Accept { .. } | Call::Connect { .. } | Call::Read { .. } | Call::Write { .. })
        {
            return error(line, format!("`...` (a blocking call) is for accept, connect, read and write, not {name}"));
        }
        Ok(SyscallSpec { end, call, expect: Expect { ret, errno }, text })
    }

    /// `(free text)` after a result: words, numbers and punctuation up to the match.
    fn skip_note(&mut self) -> Result<()> {
        let line = self.line();
        let mut depth = 0usize;
        loop {
            match self.next() {
                Some(Tok::Punct('(')) => depth += 1,
                Some(Tok::Punct(')')) => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(Tok::Backquoted(_)) | Some(Tok::Code) | None => return error(line, "unterminated `(...)` note"),
                Some(_) => {}
            }
        }
    }

    fn expr(&mut self) -> Result<Expr> {
        let first = self.expr_atom()?;
        if !self.is_punct('|') {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.eat_punct('|') {
            parts.push(self.expr_atom()?);
        }
        Ok(Expr::Or(parts))
    }

    fn expr_atom(&mut self) -> Result<Expr> {
        let line = self.line();
        match self.next() {
            Some(Tok::Ellipsis) => Ok(Expr::Ellipsis),
            Some(Tok::Int(s)) => s.parse().map(Expr::Int).or_else(|_| error(line, format!("`{s}` out of range"))),
            Some(Tok::Hex(s)) => {
                i64::from_str_radix(s, 16).map(Expr::Int).or_else(|_| error(line, format!("`0x{s}` out of range")))
            }
            Some(Tok::Punct('-')) => match self.next() {
                Some(Tok::Int(s)) => {
                    s.parse::<i64>().map(|v| Expr::Int(-v)).or_else(|_| error(line, format!("`-{s}` out of range")))
                }
                _ => error(line, "expected a number after `-`"),
            },
            Some(Tok::Word(w)) => Ok(Expr::Word(w.clone())),
            Some(Tok::Str(s)) => Ok(Expr::Str(s.clone())),
            Some(Tok::Punct('[')) => {
                let mut items = Vec::new();
                if !self.eat_punct(']') {
                    loop {
                        items.push(self.expr()?);
                        if self.eat_punct(']') {
                            break;
                        }
                        self.expect_punct(',', "between list items")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Some(Tok::Punct('{')) => {
                // Only `{onoff=N, linger=N}` (SO_LINGER).
                let mut fields = Vec::new();
                loop {
                    let name = self.word("a field name")?;
                    self.expect_punct('=', "after a field name")?;
                    let v = self.expr()?;
                    fields.push((name, v));
                    if self.eat_punct('}') {
                        break;
                    }
                    self.expect_punct(',', "between fields")?;
                }
                Ok(Expr::Struct(fields))
            }
            Some(t) => error(line, format!("unexpected {} in the arguments", t.describe())),
            None => error(line, "unexpected end of the script in the arguments"),
        }
    }
}

/// `1.5` / `.100` / `2` seconds as microseconds, exactly (no floating point).
fn parse_seconds(s: &str) -> Option<u64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let whole: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut micros = 0u64;
    for (i, c) in frac.chars().take(6).enumerate() {
        micros += (c.to_digit(10)? as u64) * 10u64.pow(5 - i as u32);
    }
    if frac.chars().any(|c| !c.is_ascii_digit()) {
        return None;
    }
    whole.checked_mul(1_000_000)?.checked_add(micros).filter(|&t| t <= 1_000_000 * 86_400 * 365)
}

fn render(toks: &[Token]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        if i > 0 && t.spaced {
            s.push(' ');
        }
        match &t.tok {
            Tok::Word(w) | Tok::Int(w) | Tok::Float(w) => s.push_str(w),
            Tok::Hex(h) => {
                s.push_str("0x");
                s.push_str(h);
            }
            Tok::Str(x) => {
                s.push('"');
                s.push_str(x);
                s.push('"');
            }
            Tok::Ellipsis => s.push_str("..."),
            Tok::Punct(c) => s.push(*c),
            Tok::Backquoted(_) | Tok::Code | Tok::OptionName(_) => {}
        }
    }
    s
}

fn option_len(o: &TcpOpt) -> usize {
    match o {
        TcpOpt::Nop | TcpOpt::Eol => 1,
        TcpOpt::Mss(_) => 4,
        TcpOpt::WScale(_) => 3,
        TcpOpt::SackOk => 2,
        TcpOpt::Sack(b) => 2 + 8 * b.len(),
        TcpOpt::Timestamp { .. } => 10,
    }
}

/// A system call argument before it is resolved against the call.
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Ellipsis,
    Int(i64),
    Word(String),
    Str(String),
    List(Vec<Expr>),
    Or(Vec<Expr>),
    Struct(Vec<(String, Expr)>),
}

const SUPPORTED_CALLS: &str = "socket, bind, listen, accept, connect, read, write, recv, send, recvfrom, sendto, \
     close, shutdown, setsockopt, getsockopt, fcntl";

fn resolve_call(name: &str, args: &[Expr], line: u32) -> Result<Call> {
    let n = args.len();
    let arity = |want: usize| -> Result<()> {
        if n == want {
            Ok(())
        } else {
            error(line, format!("{name} takes {want} arguments here, found {n}"))
        }
    };
    let fd = |i: usize| -> Result<i32> {
        match args.get(i) {
            Some(Expr::Int(v)) if (0..=65535).contains(v) => Ok(*v as i32),
            _ => error(line, format!("{name}: argument {} must be a file descriptor number", i + 1)),
        }
    };
    let ellipsis = |i: usize, what: &str| -> Result<()> {
        match args.get(i) {
            Some(Expr::Ellipsis) => Ok(()),
            _ => {
                error(line, format!("{name}: {what} must be `...` (explicit addresses and buffers are not supported)"))
            }
        }
    };
    let len = |i: usize| -> Result<usize> {
        match args.get(i) {
            Some(Expr::Int(v)) if (0..=16 << 20).contains(v) => Ok(*v as usize),
            _ => error(line, format!("{name}: argument {} must be a byte count (0 to 16 MiB)", i + 1)),
        }
    };
    let msg_flags = |i: usize| -> Result<bool> {
        let mut dontwait = false;
        for w in flag_words(args.get(i), line, name)? {
            match w.as_str() {
                "0" => {}
                "MSG_DONTWAIT" => dontwait = true,
                "MSG_NOSIGNAL" => {}
                other => return error(line, format!("{name}: flag {other} is not supported (0, MSG_DONTWAIT)")),
            }
        }
        Ok(dontwait)
    };
    Ok(match name {
        "socket" => {
            arity(3)?;
            let ipv6 = match &args[0] {
                Expr::Ellipsis => None,
                Expr::Word(w) if w == "AF_INET" || w == "PF_INET" => Some(false),
                Expr::Word(w) if w == "AF_INET6" || w == "PF_INET6" => Some(true),
                _ => return error(line, "socket: the domain must be `...`, AF_INET or AF_INET6"),
            };
            let ty = match &args[1] {
                Expr::Word(w) if w == "SOCK_STREAM" => SockType::Stream,
                Expr::Word(w) if w == "SOCK_DGRAM" => SockType::Dgram,
                _ => return error(line, "socket: the type must be SOCK_STREAM or SOCK_DGRAM"),
            };
            match (&args[2], ty) {
                (Expr::Int(0), _) => {}
                (Expr::Word(w), SockType::Stream) if w == "IPPROTO_TCP" => {}
                (Expr::Word(w), SockType::Dgram) if w == "IPPROTO_UDP" => {}
                _ => {
                    return error(
                        line,
                        "socket: the protocol must be IPPROTO_TCP (stream), IPPROTO_UDP (datagram) or 0",
                    )
                }
            }
            Call::Socket { ty, ipv6 }
        }
        "bind" => {
            arity(3)?;
            ellipsis(1, "the address")?;
            ellipsis(2, "the address length")?;
            Call::Bind { fd: fd(0)? }
        }
        "listen" => {
            arity(2)?;
            let backlog = match &args[1] {
                Expr::Int(v) if (0..=65535).contains(v) => *v as i32,
                _ => return error(line, "listen: the backlog must be an integer"),
            };
            Call::Listen { fd: fd(0)?, backlog }
        }
        "accept" => {
            arity(3)?;
            ellipsis(1, "the address")?;
            ellipsis(2, "the address length")?;
            Call::Accept { fd: fd(0)? }
        }
        "connect" => {
            arity(3)?;
            ellipsis(1, "the address")?;
            ellipsis(2, "the address length")?;
            Call::Connect { fd: fd(0)? }
        }
        "read" | "write" => {
            arity(3)?;
            ellipsis(1, "the buffer")?;
            let (fd, len) = (fd(0)?, len(2)?);
            if name == "read" {
                Call::Read { fd, len, dontwait: false }
            } else {
                Call::Write { fd, len, dontwait: false }
            }
        }
        "recv" | "send" => {
            arity(4)?;
            ellipsis(1, "the buffer")?;
            let (fd, len, dontwait) = (fd(0)?, len(2)?, msg_flags(3)?);
            if name == "recv" {
                Call::Read { fd, len, dontwait }
            } else {
                Call::Write { fd, len, dontwait }
            }
        }
        "recvfrom" | "sendto" => {
            arity(6)?;
            ellipsis(1, "the buffer")?;
            ellipsis(4, "the address")?;
            ellipsis(5, "the address length")?;
            let (fd, len, dontwait) = (fd(0)?, len(2)?, msg_flags(3)?);
            if name == "recvfrom" {
                Call::Read { fd, len, dontwait }
            } else {
                Call::Write { fd, len, dontwait }
            }
        }
        "close" => {
            arity(1)?;
            Call::Close { fd: fd(0)? }
        }
        "shutdown" => {
            arity(2)?;
            let how = match &args[1] {
                Expr::Word(w) if w == "SHUT_RD" => ShutdownHow::Read,
                Expr::Word(w) if w == "SHUT_WR" => ShutdownHow::Write,
                Expr::Word(w) if w == "SHUT_RDWR" => ShutdownHow::Both,
                Expr::Int(0) => ShutdownHow::Read,
                Expr::Int(1) => ShutdownHow::Write,
                Expr::Int(2) => ShutdownHow::Both,
                _ => return error(line, "shutdown: how must be SHUT_RD, SHUT_WR or SHUT_RDWR"),
            };
            Call::Shutdown { fd: fd(0)?, how }
        }
        "setsockopt" | "getsockopt" => {
            arity(5)?;
            let opt = match &args[2] {
                Expr::Word(w) => match SockOpt::from_name(w) {
                    Some(o) => o,
                    None => return error(line, format!("{name}: option {w} is not supported")),
                },
                _ => return error(line, format!("{name}: the option must be a name (SO_..., TCP_...)")),
            };
            let tcp_level = match &args[1] {
                Expr::Word(w) if w == "SOL_SOCKET" => false,
                Expr::Word(w) if w == "SOL_TCP" || w == "IPPROTO_TCP" => true,
                _ => return error(line, format!("{name}: the level must be SOL_SOCKET, SOL_TCP or IPPROTO_TCP")),
            };
            if tcp_level != opt.is_tcp_level() {
                return error(line, format!("{name}: {} is not an option of that level", opt.name()));
            }
            let value = opt_value(&args[3], opt, line, name)?;
            if name == "setsockopt" {
                if opt == SockOpt::Error {
                    return error(line, "setsockopt: SO_ERROR is read-only");
                }
                Call::SetSockOpt { fd: fd(0)?, opt, value }
            } else {
                Call::GetSockOpt { fd: fd(0)?, opt, value }
            }
        }
        "fcntl" => {
            let cmd = match args.get(1) {
                Some(Expr::Word(w)) => w.as_str(),
                _ => return error(line, "fcntl: the command must be F_SETFL or F_GETFL"),
            };
            match cmd {
                "F_GETFL" => {
                    arity(2)?;
                    Call::GetFl { fd: fd(0)? }
                }
                "F_SETFL" => {
                    arity(3)?;
                    let mut nonblock = false;
                    for w in flag_words(args.get(2), line, name)? {
                        match w.as_str() {
                            "O_NONBLOCK" => nonblock = true,
                            "O_RDWR" | "0" => {}
                            other => {
                                return error(
                                    line,
                                    format!("fcntl: flag {other} is not supported (O_RDWR, O_NONBLOCK)"),
                                )
                            }
                        }
                    }
                    Call::SetFl { fd: fd(0)?, nonblock }
                }
                other => return error(line, format!("fcntl: command {other} is not supported (F_SETFL, F_GETFL)")),
            }
        }
        other => return error(line, format!("system call `{other}` is not supported (supported: {SUPPORTED_CALLS})")),
    })
}

/// `0`, `MSG_DONTWAIT`, `O_RDWR|O_NONBLOCK` as a list of names (`0` for zero).
fn flag_words(e: Option<&Expr>, line: u32, call: &str) -> Result<Vec<String>> {
    match e {
        Some(Expr::Int(0)) => Ok(vec!["0".into()]),
        Some(Expr::Word(w)) => Ok(vec![w.clone()]),
        Some(Expr::Or(parts)) => {
            let mut v = Vec::new();
            for p in parts {
                v.extend(flag_words(Some(p), line, call)?);
            }
            Ok(v)
        }
        _ => error(line, format!("{call}: flags must be 0 or names joined with `|`")),
    }
}

fn opt_value(e: &Expr, opt: SockOpt, line: u32, call: &str) -> Result<OptValue> {
    let bad = || error(line, format!("{call}: the value of {} must be {}", opt.name(), value_form(opt)));
    match opt {
        SockOpt::TcpCongestion => match e {
            Expr::Str(s) => Ok(OptValue::Str(s.clone())),
            _ => bad(),
        },
        SockOpt::Linger => match e {
            Expr::Struct(fields) => {
                let get = |n: &str| {
                    fields.iter().find(|(k, _)| k == n).and_then(|(_, v)| match v {
                        Expr::Int(i) => Some(*i),
                        _ => None,
                    })
                };
                match (get("onoff"), get("linger")) {
                    (Some(on), Some(secs)) if fields.len() == 2 => Ok(OptValue::Linger { onoff: on != 0, secs }),
                    _ => bad(),
                }
            }
            _ => bad(),
        },
        _ => match e {
            Expr::List(items) if items.len() == 1 => match &items[0] {
                Expr::Int(v) => Ok(OptValue::Int(*v)),
                Expr::Word(w) if opt == SockOpt::Error => match Errno::from_name(w) {
                    Some(errno) => Ok(OptValue::Int(errno.number() as i64)),
                    None => bad(),
                },
                _ => bad(),
            },
            _ => bad(),
        },
    }
}

fn value_form(opt: SockOpt) -> &'static str {
    match opt {
        SockOpt::TcpCongestion => "a string (\"reno\", \"cubic\")",
        SockOpt::Linger => "{onoff=N, linger=N}",
        SockOpt::Error => "[N] or [ENAME]",
        _ => "[N]",
    }
}

// ---------------------------------------------------------------- commands

/// A backquoted command: only `sysctl [-q] [-w] key=value...`, several separated by
/// newlines or `;`, for the namespace-local keys `net.ipv4.*` and `net.ipv6.*`.
fn parse_command(cmd: &str, line: u32) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in cmd.split(['\n', ';']).flat_map(|p| p.split("&&")) {
        let words =
            shell_words(part).ok_or_else(|| ParseError { line, message: format!("unbalanced quotes in `{part}`") })?;
        let Some((first, rest)) = words.split_first() else { continue };
        if first != "sysctl" {
            return error(
                line,
                format!("shell commands are not supported, only `sysctl key=value` (found `{}`)", part.trim()),
            );
        }
        for w in rest {
            if w.starts_with('-') {
                if w.chars().skip(1).all(|c| c == 'q' || c == 'w') {
                    continue;
                }
                return error(line, format!("sysctl option {w} is not supported (-q, -w)"));
            }
            let Some((k, v)) = w.split_once('=') else {
                return error(line, format!("sysctl: expected key=value, found `{w}`"));
            };
            let k = k.replace('/', ".");
            if !(k.starts_with("net.ipv4.") || k.starts_with("net.ipv6.")) {
                return error(
                    line,
                    format!("sysctl {k}: only the network namespace's own keys net.ipv4.* and net.ipv6.* can be set"),
                );
            }
            if k.len() > 128 || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-') {
                return error(line, format!("sysctl: bad key `{k}`"));
            }
            if v.len() > 256 || v.chars().any(|c| c.is_control()) {
                return error(line, format!("sysctl {k}: bad value"));
            }
            out.push((k, v.to_string()));
        }
    }
    if out.is_empty() {
        return error(line, "empty command");
    }
    Ok(out)
}

/// Split on whitespace with "double" and 'single' quotes; `None` when unbalanced.
fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Script {
        parse("t", s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(s: &str) -> ParseError {
        parse("t", s).unwrap_err()
    }

    #[test]
    fn a_handshake() {
        let s = ok("--tolerance_usecs=10000\n\
             // comment\n\
             0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n\
             +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n\
             +0 bind(3, ..., ...) = 0\n\
             +0 listen(3, 1) = 0\n\
             +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>\n\
             +0 > S. 0:0(0) ack 1 <...>\n\
             +.1 < . 1:1(0) ack 1 win 257\n\
             +0 accept(3, ..., ...) = 4\n\
             +0...0.2 read(4, ..., 1000) = -1 ECONNRESET (Connection reset by peer)\n\
             0.3~0.4 > R. 1:1(0) ack 1\n\
             * > F. 1:1(0) ack 1 <nop,nop,TS val 100 ecr 200,nop,nop,sack 1:2 3:4>\n");
        assert_eq!(s.settings.tolerance_usecs, 10000);
        assert_eq!(s.events.len(), 11);
        assert_eq!(s.events[0].line, 3);
        assert_eq!(s.events[4].time, EventTime::Relative(0));
        let Action::Packet(PacketSpec { kind: PacketKind::Tcp(t), .. }) = &s.events[4].action else { panic!() };
        assert_eq!(t.flags, flag::SYN);
        assert_eq!(t.win, Some(32792));
        assert_eq!(t.options.as_ref().unwrap().len(), 6);
        let Action::Packet(PacketSpec { kind: PacketKind::Tcp(t), .. }) = &s.events[5].action else { panic!() };
        assert_eq!(t.flags, flag::SYN | flag::ACK);
        assert_eq!(t.options, None);
        let Action::Syscall(sc) = &s.events[8].action else { panic!() };
        assert_eq!(sc.end, Some(200_000));
        assert_eq!(sc.expect, Expect { ret: -1, errno: Some(Errno::ECONNRESET) });
        assert_eq!(sc.call, Call::Read { fd: 4, len: 1000, dontwait: false });
        assert_eq!(sc.text, "...0.2 read(4, ..., 1000) = -1 ECONNRESET (Connection reset by peer)");
        assert_eq!(s.events[9].time, EventTime::AbsoluteRange(300_000, 400_000));
        assert_eq!(s.events[10].time, EventTime::Any);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(err("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 poll(3) = 0\n").line, 2);
        assert!(err("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 poll(3) = 0\n").message.contains("not supported"));
        assert_eq!(err("1 close(3) = 0").message, "the first event must be at time 0");
        assert_eq!(err("0 close(3) = 0\n\n * close(3) = 0").line, 3);
        assert!(err("0 < S 0:0(0) <mss 1>").message.contains("window must be specified"));
        assert!(err("0 < S 0:1(0) win 1").message.contains("inconsistent"));
        assert!(err("0 > S 0:0(0) <md5 abc>").message.contains("not supported"));
        assert!(err("0 %{ print 1 }%").message.contains("not supported"));
        assert!(err("0 `ls /`").message.contains("only `sysctl"));
        assert!(err("0 `sysctl -q kernel.x=1`").message.contains("net.ipv4"));
        assert!(err("--speed=100\n0 close(3) = 0").message.contains("not supported"));
        assert!(err("0 close(3) = 0\n0.5 close(3) = 0\n0.2 close(3) = 0").message.contains("backward"));
        assert!(err("0 > S 0:0(0) ack 1 win").message.contains("window"));
        assert!(err("0 > (tos 0x1) S 0:0(0)").message.contains("not supported"));
        assert!(err("0 > S 0:0(0) <mss 99999>").message.contains("out of range"));
    }

    #[test]
    fn sysctl_commands() {
        let s = ok("0 `sysctl -q net.ipv4.tcp_timestamps=0\n sysctl -q net.ipv4.tcp_rmem=\"4096 87380 6291456\"`\n");
        assert_eq!(
            s.events[0].action,
            Action::Sysctl(vec![
                ("net.ipv4.tcp_timestamps".into(), "0".into()),
                ("net.ipv4.tcp_rmem".into(), "4096 87380 6291456".into())
            ])
        );
    }

    #[test]
    fn known_failing_comments() {
        let s = ok("// known-failing: core: persist timer differs\n0 close(3) = 0\n");
        assert_eq!(s.known_failing_on("core"), Some("persist timer differs"));
        assert_eq!(s.known_failing_on("linux"), None);
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds(".1"), Some(100_000));
        assert_eq!(parse_seconds("0.0001234"), Some(123));
        assert_eq!(parse_seconds("2"), Some(2_000_000));
        assert_eq!(parse_seconds("99999999999999999999"), None);
    }
}
