//! The policy text format: one statement per line, `#` starts a comment, blank lines
//! are ignored, words are separated by spaces. Errors name the line and what is wrong.
//!
//! ```text
//! # default policy per direction (accept when absent)
//! policy in drop
//! policy out accept
//!
//! # filter rules, first match wins:
//! #   ACTION DIR [PROTO] [from NET] [sport PORTS] [to NET] [dport PORTS] [type ICMP] [with ANSWER]
//! accept in tcp dport 80
//! accept in tcp from 10.0.0.0/24 dport 22
//! reject in udp dport 1000-2000 with admin-prohibited
//! accept in icmp type echo-request
//! drop out tcp to 192.0.2.0/24
//!
//! # port knocking: knocks in order, the ports they open, timing, closed or filtered
//! knock tcp:7000,udp:8000,tcp:9000 protect tcp:22 within 10s open 30s closed
//!
//! # port-scan detection: distinct closed ports per source within a window
//! scan-detect threshold 20 window 10s block 60s
//! ```
//!
//! - ACTION: `accept`, `drop` (silently), `reject` (TCP RST, UDP port unreachable, ICMP
//!   administratively prohibited, or the answer `with` names: `tcp-reset`,
//!   `port-unreachable`, `admin-prohibited`).
//! - DIR: `in` (packets arriving that start a flow) or `out` (flows our applications
//!   open; a refused one fails the call with `PermissionDenied`).
//! - PROTO: `tcp`, `udp`, `icmp` (ICMP and ICMPv6) or `any` (the default).
//! - NET: an address (`10.0.0.1`, `fd00::1`), a prefix (`10.0.0.0/24`) or `any`.
//! - PORTS: a port or an inclusive range `1000-2000`; only with `tcp` or `udp`.
//! - ICMP: `echo-request`, `echo-reply`, `dest-unreachable`, `time-exceeded`,
//!   `packet-too-big`, or a type number; only with `icmp`.
//! - Durations: `500ms`, `10s`, `2m`.

use std::fmt;
use std::time::Duration;

use ipnet::IpNet;

use super::knock::{Knock, KnockConfig, MAX_KNOCKS};
use super::rules::{Action, Direction, IcmpType, PortRange, ProtoMatch, RejectWith, Rule};
use super::scan::{ScanConfig, MAX_THRESHOLD};
use crate::wire::proto;

/// A whole policy as written: rules, defaults, knocking, scan detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    pub rules: Vec<Rule>,
    pub default_in: Action,
    pub default_out: Action,
    pub knock: Option<KnockConfig>,
    pub scan: Option<ScanConfig>,
}

impl Default for PolicyConfig {
    /// Nothing: everything accepted, no knocking, no scan detection.
    fn default() -> PolicyConfig {
        PolicyConfig {
            rules: Vec::new(),
            default_in: Action::Accept,
            default_out: Action::Accept,
            knock: None,
            scan: None,
        }
    }
}

/// What is wrong with a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// A word where another was expected.
    Unexpected {
        found: String,
        expected: &'static str,
    },
    /// The line ended where a value was expected.
    Missing {
        expected: &'static str,
    },
    BadAddress(String),
    BadPort(String),
    /// A range whose first port is above its last.
    BackwardsRange(String),
    BadDuration(String),
    BadNumber(String),
    /// Ports given without `tcp` or `udp`.
    PortsNeedTcpOrUdp,
    /// An ICMP type given without `icmp`.
    TypeNeedsIcmp,
    /// `with` given on a rule that does not reject.
    WithNeedsReject,
    /// The same condition twice in one rule.
    Repeated(&'static str),
    /// A second `knock` or `scan-detect` line, or a second `policy` for a direction.
    Duplicate(&'static str),
    /// More knocks than [`MAX_KNOCKS`], or a threshold out of range.
    OutOfRange {
        what: &'static str,
        min: usize,
        max: usize,
    },
}

/// A parse error: the line (from 1) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub line: usize,
    pub kind: PolicyErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            PolicyErrorKind::Unexpected { found, expected } => write!(f, "`{found}` where {expected} was expected"),
            PolicyErrorKind::Missing { expected } => write!(f, "{expected} expected at the end of the line"),
            PolicyErrorKind::BadAddress(s) => write!(f, "`{s}` is not an address, a prefix or `any`"),
            PolicyErrorKind::BadPort(s) => write!(f, "`{s}` is not a port (0-65535) or a range like 1000-2000"),
            PolicyErrorKind::BackwardsRange(s) => write!(f, "port range `{s}` goes backwards"),
            PolicyErrorKind::BadDuration(s) => write!(f, "`{s}` is not a duration (like 500ms, 10s, 2m)"),
            PolicyErrorKind::BadNumber(s) => write!(f, "`{s}` is not a number"),
            PolicyErrorKind::PortsNeedTcpOrUdp => f.write_str("ports need `tcp` or `udp`"),
            PolicyErrorKind::TypeNeedsIcmp => f.write_str("an ICMP type needs `icmp`"),
            PolicyErrorKind::WithNeedsReject => f.write_str("`with` only goes with `reject`"),
            PolicyErrorKind::Repeated(what) => write!(f, "`{what}` given twice"),
            PolicyErrorKind::Duplicate(what) => write!(f, "a second `{what}` line"),
            PolicyErrorKind::OutOfRange { what, min, max } => write!(f, "{what} must be between {min} and {max}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The words of one line, with the line number for errors.
struct Words<'a> {
    words: std::iter::Peekable<std::str::SplitWhitespace<'a>>,
    line: usize,
}

impl<'a> Words<'a> {
    fn err(&self, kind: PolicyErrorKind) -> PolicyError {
        PolicyError { line: self.line, kind }
    }

    fn next(&mut self, expected: &'static str) -> Result<&'a str, PolicyError> {
        self.words.next().ok_or(PolicyError { line: self.line, kind: PolicyErrorKind::Missing { expected } })
    }

    fn unexpected(&self, found: &str, expected: &'static str) -> PolicyError {
        self.err(PolicyErrorKind::Unexpected { found: found.to_owned(), expected })
    }
}

fn action(s: &str) -> Option<Action> {
    match s {
        "accept" => Some(Action::Accept),
        "drop" => Some(Action::Drop),
        "reject" => Some(Action::Reject),
        _ => None,
    }
}

fn direction(w: &mut Words<'_>) -> Result<Direction, PolicyError> {
    match w.next("`in` or `out`")? {
        "in" => Ok(Direction::In),
        "out" => Ok(Direction::Out),
        other => Err(w.unexpected(other, "`in` or `out`")),
    }
}

fn net(w: &mut Words<'_>) -> Result<Option<IpNet>, PolicyError> {
    let s = w.next("an address, a prefix or `any`")?;
    if s == "any" {
        return Ok(None);
    }
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(Some(n));
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(a) => Ok(Some(IpNet::from(a))),
        Err(_) => Err(w.err(PolicyErrorKind::BadAddress(s.to_owned()))),
    }
}

fn ports(w: &mut Words<'_>) -> Result<PortRange, PolicyError> {
    let s = w.next("a port or a range")?;
    let bad = || PolicyError { line: w.line, kind: PolicyErrorKind::BadPort(s.to_owned()) };
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let first: u16 = a.parse().map_err(|_| bad())?;
    let last: u16 = b.parse().map_err(|_| bad())?;
    if first > last {
        return Err(w.err(PolicyErrorKind::BackwardsRange(s.to_owned())));
    }
    Ok(PortRange { first, last })
}

fn duration(w: &mut Words<'_>) -> Result<Duration, PolicyError> {
    let s = w.next("a duration")?;
    let bad = || PolicyError { line: w.line, kind: PolicyErrorKind::BadDuration(s.to_owned()) };
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

fn number(w: &mut Words<'_>, what: &'static str) -> Result<usize, PolicyError> {
    let s = w.next(what)?;
    s.parse().map_err(|_| w.err(PolicyErrorKind::BadNumber(s.to_owned())))
}

fn knocks(w: &mut Words<'_>) -> Result<Vec<Knock>, PolicyError> {
    let s = w.next("knocks like tcp:7000,udp:8000")?;
    s.split(',')
        .map(|k| {
            let (p, port) = k.split_once(':').ok_or_else(|| w.unexpected(k, "PROTO:PORT (tcp:7000, udp:8000)"))?;
            let proto = match p {
                "tcp" => proto::TCP,
                "udp" => proto::UDP,
                other => return Err(w.unexpected(other, "`tcp` or `udp`")),
            };
            let port = port.parse().map_err(|_| w.err(PolicyErrorKind::BadPort(port.to_owned())))?;
            Ok(Knock { proto, port })
        })
        .collect()
}

/// Set `slot` once; a second value is an error naming `what`.
fn once<T>(w: &Words<'_>, slot: &mut Option<T>, value: T, what: &'static str) -> Result<(), PolicyError> {
    if slot.is_some() {
        return Err(w.err(PolicyErrorKind::Repeated(what)));
    }
    *slot = Some(value);
    Ok(())
}

fn rule(w: &mut Words<'_>, action: Action) -> Result<Rule, PolicyError> {
    let dir = direction(w)?;
    let mut r = Rule {
        action,
        dir,
        proto: ProtoMatch::Any,
        src: None,
        sport: None,
        dst: None,
        dport: None,
        icmp_type: None,
        with: None,
    };
    let (mut src, mut sport, mut dst, mut dport, mut icmp_type, mut with) = (None, None, None, None, None, None);
    if let Some(&p) = w.words.peek() {
        let proto = match p {
            "tcp" => Some(ProtoMatch::Tcp),
            "udp" => Some(ProtoMatch::Udp),
            "icmp" => Some(ProtoMatch::Icmp),
            "any" => Some(ProtoMatch::Any),
            _ => None,
        };
        if let Some(proto) = proto {
            r.proto = proto;
            w.words.next();
        }
    }
    while let Some(word) = w.words.next() {
        match word {
            "from" => {
                let v = net(w)?;
                once(w, &mut src, v, "from")?
            }
            "to" => {
                let v = net(w)?;
                once(w, &mut dst, v, "to")?
            }
            "sport" => {
                let v = ports(w)?;
                once(w, &mut sport, v, "sport")?
            }
            "dport" => {
                let v = ports(w)?;
                once(w, &mut dport, v, "dport")?
            }
            "type" => {
                let s = w.next("an ICMP type")?;
                let t = match IcmpType::NAMED.iter().find(|(_, n, ..)| *n == s) {
                    Some((t, ..)) => *t,
                    None => IcmpType::Number(s.parse().map_err(|_| w.unexpected(s, "an ICMP type name or number"))?),
                };
                once(w, &mut icmp_type, t, "type")?;
            }
            "with" => {
                let s = w.next("tcp-reset, port-unreachable or admin-prohibited")?;
                let answer = match s {
                    "tcp-reset" => RejectWith::TcpReset,
                    "port-unreachable" => RejectWith::PortUnreachable,
                    "admin-prohibited" => RejectWith::AdminProhibited,
                    other => return Err(w.unexpected(other, "tcp-reset, port-unreachable or admin-prohibited")),
                };
                once(w, &mut with, answer, "with")?;
            }
            other => return Err(w.unexpected(other, "from, to, sport, dport, type or with")),
        }
    }
    (r.src, r.sport, r.dst, r.dport) = (src.flatten(), sport, dst.flatten(), dport);
    (r.icmp_type, r.with) = (icmp_type, with);
    if (r.sport.is_some() || r.dport.is_some()) && !matches!(r.proto, ProtoMatch::Tcp | ProtoMatch::Udp) {
        return Err(w.err(PolicyErrorKind::PortsNeedTcpOrUdp));
    }
    if r.icmp_type.is_some() && r.proto != ProtoMatch::Icmp {
        return Err(w.err(PolicyErrorKind::TypeNeedsIcmp));
    }
    if r.with.is_some() && r.action != Action::Reject {
        return Err(w.err(PolicyErrorKind::WithNeedsReject));
    }
    Ok(r)
}

impl PolicyConfig {
    /// Parse the text format (see the module documentation).
    pub fn parse(text: &str) -> Result<PolicyConfig, PolicyError> {
        let mut cfg = PolicyConfig::default();
        let (mut seen_in, mut seen_out) = (false, false);
        for (i, raw) in text.lines().enumerate() {
            let content = raw.split('#').next().unwrap_or("");
            let mut w = Words { words: content.split_whitespace().peekable(), line: i + 1 };
            let Some(first) = w.words.next() else { continue };
            match first {
                "policy" => {
                    let dir = direction(&mut w)?;
                    let a = w.next("accept, drop or reject")?;
                    let a = action(a).ok_or_else(|| w.unexpected(a, "accept, drop or reject"))?;
                    let seen = if dir == Direction::In { &mut seen_in } else { &mut seen_out };
                    if std::mem::replace(seen, true) {
                        return Err(w.err(PolicyErrorKind::Duplicate("policy")));
                    }
                    match dir {
                        Direction::In => cfg.default_in = a,
                        Direction::Out => cfg.default_out = a,
                    }
                }
                "knock" => {
                    if cfg.knock.is_some() {
                        return Err(w.err(PolicyErrorKind::Duplicate("knock")));
                    }
                    let sequence = knocks(&mut w)?;
                    if sequence.is_empty() || sequence.len() > MAX_KNOCKS {
                        return Err(w.err(PolicyErrorKind::OutOfRange {
                            what: "the number of knocks",
                            min: 1,
                            max: MAX_KNOCKS,
                        }));
                    }
                    match w.next("`protect`")? {
                        "protect" => {}
                        other => return Err(w.unexpected(other, "`protect`")),
                    }
                    let protect = knocks(&mut w)?;
                    let mut k = KnockConfig {
                        sequence,
                        protect,
                        within: Duration::from_secs(10),
                        open_for: Duration::from_secs(30),
                        filtered: false,
                    };
                    while let Some(word) = w.words.next() {
                        match word {
                            "within" => k.within = duration(&mut w)?,
                            "open" => k.open_for = duration(&mut w)?,
                            "closed" => k.filtered = false,
                            "filtered" => k.filtered = true,
                            other => return Err(w.unexpected(other, "within, open, closed or filtered")),
                        }
                    }
                    cfg.knock = Some(k);
                }
                "scan-detect" => {
                    if cfg.scan.is_some() {
                        return Err(w.err(PolicyErrorKind::Duplicate("scan-detect")));
                    }
                    let mut s = ScanConfig::default();
                    while let Some(word) = w.words.next() {
                        match word {
                            "threshold" => {
                                s.threshold = number(&mut w, "a number of ports")?;
                                if !(2..=MAX_THRESHOLD).contains(&s.threshold) {
                                    return Err(w.err(PolicyErrorKind::OutOfRange {
                                        what: "threshold",
                                        min: 2,
                                        max: MAX_THRESHOLD,
                                    }));
                                }
                            }
                            "window" => s.window = duration(&mut w)?,
                            "block" => s.block = Some(duration(&mut w)?),
                            other => return Err(w.unexpected(other, "threshold, window or block")),
                        }
                    }
                    cfg.scan = Some(s);
                }
                word => match action(word) {
                    Some(a) => cfg.rules.push(rule(&mut w, a)?),
                    None => {
                        return Err(w.unexpected(word, "accept, drop, reject, policy, knock or scan-detect"));
                    }
                },
            }
        }
        Ok(cfg)
    }

    /// The policy in the text format, one statement per line; `parse` reads it back to
    /// the same value.
    pub fn to_text(&self) -> String {
        fn secs(d: Duration) -> String {
            if d.subsec_millis() == 0 {
                format!("{}s", d.as_secs())
            } else {
                format!("{}ms", d.as_millis())
            }
        }
        let mut out = String::new();
        out.push_str(&format!("policy in {}\npolicy out {}\n", self.default_in.as_str(), self.default_out.as_str()));
        for r in &self.rules {
            out.push_str(&format!("{r}\n"));
        }
        if let Some(k) = &self.knock {
            let list = |ks: &[Knock]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
            out.push_str(&format!(
                "knock {} protect {} within {} open {} {}\n",
                list(&k.sequence),
                list(&k.protect),
                secs(k.within),
                secs(k.open_for),
                if k.filtered { "filtered" } else { "closed" }
            ));
        }
        if let Some(s) = &self.scan {
            out.push_str(&format!("scan-detect threshold {} window {}", s.threshold, secs(s.window)));
            if let Some(b) = s.block {
                out.push_str(&format!(" block {}", secs(b)));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
# a comment
policy in drop
accept in tcp dport 80          # web
accept in tcp from 10.0.0.0/24 dport 22
reject in udp dport 1000-2000 with admin-prohibited
accept in icmp type echo-request
drop out tcp to 192.0.2.0/24
knock tcp:7000,udp:8000,tcp:9000 protect tcp:22 within 10s open 30s filtered
scan-detect threshold 20 window 10s block 60s
";

    #[test]
    fn the_documented_example_parses_and_prints_back() {
        let cfg = PolicyConfig::parse(EXAMPLE).unwrap();
        assert_eq!(cfg.rules.len(), 5);
        assert_eq!(cfg.default_in, Action::Drop);
        assert_eq!(cfg.default_out, Action::Accept);
        assert_eq!(cfg.rules[2].dport, Some(PortRange { first: 1000, last: 2000 }));
        assert_eq!(cfg.rules[2].with, Some(RejectWith::AdminProhibited));
        assert!(cfg.knock.as_ref().unwrap().filtered);
        assert_eq!(cfg.scan.unwrap().block, Some(Duration::from_secs(60)));
        assert_eq!(PolicyConfig::parse(&cfg.to_text()).unwrap(), cfg);
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let cases: &[(&str, usize, &str)] = &[
            ("accept in tcp\nallow in tcp", 2, "`allow` where accept, drop, reject"),
            ("accept sideways", 1, "`sideways` where `in` or `out`"),
            ("\n\naccept in tcp dport 70000", 3, "`70000` is not a port"),
            ("accept in tcp dport 20-10", 1, "goes backwards"),
            ("accept in dport 80", 1, "ports need `tcp` or `udp`"),
            ("accept in tcp type echo-request", 1, "an ICMP type needs `icmp`"),
            ("accept in tcp from 10.0.0.300", 1, "`10.0.0.300` is not an address"),
            ("drop in tcp with tcp-reset", 1, "`with` only goes with `reject`"),
            ("accept in tcp dport 1 dport 2", 1, "`dport` given twice"),
            ("accept in tcp from", 1, "an address, a prefix or `any` expected"),
            ("policy in drop\npolicy in accept", 2, "a second `policy` line"),
            ("scan-detect threshold 500", 1, "threshold must be between 2 and 64"),
            ("knock tcp:1 protect tcp:2 within 10 s", 1, "`10` is not a duration"),
            ("knock tcp:1 guard tcp:2", 1, "`guard` where `protect`"),
            ("knock sctp:1 protect tcp:2", 1, "`sctp` where `tcp` or `udp`"),
        ];
        for (text, line, says) in cases {
            let e = PolicyConfig::parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.to_string().contains(says), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn net() -> impl Strategy<Value = Option<IpNet>> {
            prop_oneof![
                Just(None),
                (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, l)| Some(IpNet::new(a.into(), l).unwrap())),
                (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, l)| Some(IpNet::new(a.into(), l).unwrap())),
            ]
        }

        fn range() -> impl Strategy<Value = Option<PortRange>> {
            proptest::option::of(
                (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange { first: a.min(b), last: a.max(b) }),
            )
        }

        fn rule() -> impl Strategy<Value = Rule> {
            let action = prop_oneof![Just(Action::Accept), Just(Action::Drop), Just(Action::Reject)];
            let dir = prop_oneof![Just(Direction::In), Just(Direction::Out)];
            let proto = prop_oneof![
                Just(ProtoMatch::Any),
                Just(ProtoMatch::Tcp),
                Just(ProtoMatch::Udp),
                Just(ProtoMatch::Icmp)
            ];
            (action, dir, proto, net(), range(), net(), range(), any::<Option<u8>>(), 0u8..4).prop_map(
                |(action, dir, proto, src, sport, dst, dport, icmp, with)| {
                    let ports = matches!(proto, ProtoMatch::Tcp | ProtoMatch::Udp);
                    Rule {
                        action,
                        dir,
                        proto,
                        src,
                        sport: sport.filter(|_| ports),
                        dst,
                        dport: dport.filter(|_| ports),
                        icmp_type: icmp.filter(|_| proto == ProtoMatch::Icmp).map(IcmpType::Number),
                        with: [
                            None,
                            Some(RejectWith::TcpReset),
                            Some(RejectWith::PortUnreachable),
                            Some(RejectWith::AdminProhibited),
                        ][with as usize]
                            .filter(|_| action == Action::Reject),
                    }
                },
            )
        }

        proptest! {
            #[test]
            fn any_policy_round_trips_through_the_text_format(
                rules in proptest::collection::vec(rule(), 0..20),
                threshold in 2usize..=64,
                window in 1u64..600,
                block in proptest::option::of(1u64..600),
            ) {
                let cfg = PolicyConfig {
                    rules,
                    default_in: Action::Drop,
                    default_out: Action::Reject,
                    knock: None,
                    scan: Some(ScanConfig {
                        threshold,
                        window: Duration::from_secs(window),
                        block: block.map(Duration::from_secs),
                    }),
                };
                prop_assert_eq!(PolicyConfig::parse(&cfg.to_text()).unwrap(), cfg);
            }

            #[test]
            fn the_parser_never_panics(text in "[ -~\n]{0,200}") {
                let _ = PolicyConfig::parse(&text);
            }
        }
    }
}
