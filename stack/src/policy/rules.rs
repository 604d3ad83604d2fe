//! Filter rules: what a rule matches and how a rule set decides, first match wins, with
//! a hit counter per rule and a default policy per direction.
//!
//! Rules see only packets that start something: a packet of an established flow (one
//! the demux matches to a connection, or a reply to a flow our own stack opened) passes
//! without looking at the rules, like a stateful firewall's "established" rule that
//! always comes first. So the cost of a long rule list falls on new flows only.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::wire::proto;

/// What a matching rule (or the default policy) does with the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    /// Discard silently (the sender times out).
    Drop,
    /// Discard and tell the sender: TCP RST, ICMP port unreachable, or ICMP
    /// administratively prohibited (see [`RejectWith`]).
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Drop => "drop",
            Action::Reject => "reject",
        }
    }
}

/// Which packets a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Packets arriving at the stack (new connections, datagrams, ICMP).
    In,
    /// Flows the stack's own applications open (connect, send_to).
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The transport a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtoMatch {
    Any,
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

impl ProtoMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtoMatch::Any => "any",
            ProtoMatch::Tcp => "tcp",
            ProtoMatch::Udp => "udp",
            ProtoMatch::Icmp => "icmp",
        }
    }

    fn matches(self, ip_proto: u8) -> bool {
        match self {
            ProtoMatch::Any => true,
            ProtoMatch::Tcp => ip_proto == proto::TCP,
            ProtoMatch::Udp => ip_proto == proto::UDP,
            ProtoMatch::Icmp => ip_proto == proto::ICMP || ip_proto == proto::ICMPV6,
        }
    }
}

/// An ICMP message type a rule matches, by name (the same meaning in ICMPv4 and
/// ICMPv6, whose numbers differ) or by number (compared as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpType {
    EchoRequest,
    EchoReply,
    DestUnreachable,
    TimeExceeded,
    /// ICMPv6 Packet Too Big (RFC 4443 3.2); ICMPv4's "fragmentation needed" is a
    /// destination unreachable code.
    PacketTooBig,
    Number(u8),
}

impl IcmpType {
    /// Names and their (ICMPv4 RFC 792, ICMPv6 RFC 4443) type numbers.
    pub const NAMED: [(IcmpType, &'static str, Option<u8>, u8); 5] = [
        (IcmpType::EchoRequest, "echo-request", Some(8), 128),
        (IcmpType::EchoReply, "echo-reply", Some(0), 129),
        (IcmpType::DestUnreachable, "dest-unreachable", Some(3), 1),
        (IcmpType::TimeExceeded, "time-exceeded", Some(11), 3),
        (IcmpType::PacketTooBig, "packet-too-big", None, 2),
    ];

    fn matches(self, v6: bool, icmp_type: u8) -> bool {
        match self {
            IcmpType::Number(n) => n == icmp_type,
            named => IcmpType::NAMED.iter().find(|(t, ..)| *t == named).is_some_and(|&(_, _, v4n, v6n)| {
                if v6 {
                    v6n == icmp_type
                } else {
                    v4n == Some(icmp_type)
                }
            }),
        }
    }
}

impl fmt::Display for IcmpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IcmpType::Number(n) => write!(f, "{n}"),
            named => {
                let name = IcmpType::NAMED.iter().find(|(t, ..)| t == named).map_or("?", |(_, n, ..)| n);
                f.write_str(name)
            }
        }
    }
}

/// How a rejected packet is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// TCP: a RST (RFC 9293 3.10.7.1), as if the port were closed.
    TcpReset,
    /// ICMP destination unreachable, port unreachable (RFC 792, RFC 4443 3.1 code 4).
    PortUnreachable,
    /// ICMP destination unreachable, communication administratively prohibited
    /// (RFC 1812 5.2.7.1 code 13; RFC 4443 3.1 code 1).
    AdminProhibited,
}

impl RejectWith {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectWith::TcpReset => "tcp-reset",
            RejectWith::PortUnreachable => "port-unreachable",
            RejectWith::AdminProhibited => "admin-prohibited",
        }
    }

    /// The default answer for a protocol: RST for TCP, port unreachable for UDP,
    /// administratively prohibited for anything else.
    pub fn default_for(ip_proto: u8) -> RejectWith {
        match ip_proto {
            proto::TCP => RejectWith::TcpReset,
            proto::UDP => RejectWith::PortUnreachable,
            _ => RejectWith::AdminProhibited,
        }
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// The facts about a packet (or an outgoing flow) that rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    pub dir: Direction,
    /// IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Zero for ICMP.
    pub sport: u16,
    pub dport: u16,
    /// The ICMP type, for ICMP.
    pub icmp_type: Option<u8>,
}

/// One rule. Every condition that is present must hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    pub dir: Direction,
    pub proto: ProtoMatch,
    pub src: Option<IpNet>,
    pub sport: Option<PortRange>,
    pub dst: Option<IpNet>,
    pub dport: Option<PortRange>,
    pub icmp_type: Option<IcmpType>,
    /// For `reject`: how to answer (default: by protocol, see [`RejectWith::default_for`]).
    pub with: Option<RejectWith>,
}

impl Rule {
    /// Whether the rule applies to `p`.
    #[inline]
    pub fn matches(&self, p: &PacketInfo) -> bool {
        self.dir == p.dir
            && self.proto.matches(p.proto)
            && self.src.is_none_or(|n| n.contains(&p.src))
            && self.dst.is_none_or(|n| n.contains(&p.dst))
            && self.sport.is_none_or(|r| r.contains(p.sport))
            && self.dport.is_none_or(|r| r.contains(p.dport))
            && self.icmp_type.is_none_or(|t| p.icmp_type.is_some_and(|x| t.matches(p.dst.is_ipv6(), x)))
    }
}

impl fmt::Display for Rule {
    /// The rule in the text format (`policy::text`), canonical spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.action.as_str(), self.dir.as_str(), self.proto.as_str())?;
        if let Some(n) = self.src {
            write!(f, " from {n}")?;
        }
        if let Some(r) = self.sport {
            write!(f, " sport {r}")?;
        }
        if let Some(n) = self.dst {
            write!(f, " to {n}")?;
        }
        if let Some(r) = self.dport {
            write!(f, " dport {r}")?;
        }
        if let Some(t) = self.icmp_type {
            write!(f, " type {t}")?;
        }
        if let Some(w) = self.with {
            write!(f, " with {}", w.as_str())?;
        }
        Ok(())
    }
}

/// An ordered list of rules with a hit counter each, and a default action per
/// direction for packets no rule matches.
///
/// Deciding is "first match wins" over the list, but only over the rules that can
/// apply to the packet's direction and destination port: rules naming a destination
/// port (or a range of at most [`INDEXED_RANGE`] ports) are indexed under each of
/// their ports, the others are kept in one list per direction, and a packet reads the
/// merge of its port's list and that list, in file order. A thousand rules for a
/// thousand services cost a new flow what a handful do (see `bench --bin
/// policy_cost`); only rules without a port (or with wide ranges) are read by every
/// new flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    hits: Vec<u64>,
    default_in: Action,
    default_out: Action,
    default_hits: [u64; 2],
    index: [PortIndex; 2],
}

/// Port ranges up to this many ports are indexed port by port (so the index holds at
/// most this many entries per rule); wider ones are read by every packet.
pub const INDEXED_RANGE: u32 = 64;

/// The rules of one direction by destination port (see [`RuleSet`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PortIndex {
    /// Rule numbers, ascending, for each port that indexed rules name. A `BTreeMap`:
    /// the core has no randomness, hence no `RandomState` hash maps.
    by_port: std::collections::BTreeMap<u16, Vec<u32>>,
    /// Rule numbers, ascending, of the rules without a (narrow) destination port.
    any_port: Vec<u32>,
}

impl PortIndex {
    fn build(rules: &[Rule], dir: Direction) -> PortIndex {
        let mut index = PortIndex::default();
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.dir == dir) {
            let i = u32::try_from(i).expect("fewer than 2^32 rules");
            match r.dport {
                Some(range) if u32::from(range.last) - u32::from(range.first) < INDEXED_RANGE => {
                    for port in range.first..=range.last {
                        index.by_port.entry(port).or_default().push(i);
                    }
                }
                _ => index.any_port.push(i),
            }
        }
        index
    }
}

impl Default for RuleSet {
    /// No rules; everything accepted.
    fn default() -> RuleSet {
        RuleSet::new(Vec::new(), Action::Accept, Action::Accept)
    }
}

/// What decided a packet's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// Rule number `i` (from 0, in file order).
    Rule(usize),
    /// No rule matched: the direction's default policy.
    Default,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>, default_in: Action, default_out: Action) -> RuleSet {
        let hits = vec![0; rules.len()];
        let index = [PortIndex::build(&rules, Direction::In), PortIndex::build(&rules, Direction::Out)];
        RuleSet { rules, hits, default_in, default_out, default_hits: [0; 2], index }
    }

    /// Whether the set can ever refuse anything (no rules and accepting defaults: the
    /// stack skips it).
    pub fn is_trivial(&self) -> bool {
        self.rules.is_empty() && self.default_in == Action::Accept && self.default_out == Action::Accept
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rule `i`'s hit count.
    pub fn hits(&self, i: usize) -> u64 {
        self.hits.get(i).copied().unwrap_or(0)
    }

    pub fn default_action(&self, dir: Direction) -> Action {
        match dir {
            Direction::In => self.default_in,
            Direction::Out => self.default_out,
        }
    }

    /// Packets decided by the default policy of `dir`.
    pub fn default_hits(&self, dir: Direction) -> u64 {
        self.default_hits[dir as usize]
    }

    /// The first matching rule's action (counting the hit), else the default.
    pub fn decide(&mut self, p: &PacketInfo) -> (Action, Option<RejectWith>, Matched) {
        let index = &self.index[p.dir as usize];
        let port = index.by_port.get(&p.dport).map_or(&[][..], Vec::as_slice);
        let any = index.any_port.as_slice();
        // Merge the two ascending lists: file order decides, as if all were read.
        let (mut a, mut b) = (0, 0);
        while a < port.len() || b < any.len() {
            let i = match (port.get(a), any.get(b)) {
                (Some(&x), Some(&y)) if x < y => {
                    a += 1;
                    x
                }
                (Some(&x), None) => {
                    a += 1;
                    x
                }
                (_, Some(&y)) => {
                    b += 1;
                    y
                }
                (None, None) => unreachable!("the loop condition"),
            } as usize;
            let r = &self.rules[i];
            if r.matches(p) {
                self.hits[i] += 1;
                return (r.action, r.with, Matched::Rule(i));
            }
        }
        self.default_hits[p.dir as usize] += 1;
        (self.default_action(p.dir), None, Matched::Default)
    }

    /// [`RuleSet::decide`] without the index or the counters: every rule in order.
    #[cfg(test)]
    fn decide_linear(&self, p: &PacketInfo) -> (Action, Option<RejectWith>, Matched) {
        match self.rules.iter().position(|r| r.matches(p)) {
            Some(i) => (self.rules[i].action, self.rules[i].with, Matched::Rule(i)),
            None => (self.default_action(p.dir), None, Matched::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> PacketInfo {
        PacketInfo {
            dir: Direction::In,
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            icmp_type: None,
        }
    }

    fn rule(action: Action) -> Rule {
        Rule {
            action,
            dir: Direction::In,
            proto: ProtoMatch::Any,
            src: None,
            sport: None,
            dst: None,
            dport: None,
            icmp_type: None,
            with: None,
        }
    }

    #[test]
    fn first_match_wins_and_counts() {
        let ssh =
            Rule { proto: ProtoMatch::Tcp, dport: Some(PortRange { first: 22, last: 22 }), ..rule(Action::Accept) };
        let lan = Rule { src: Some("10.0.0.0/24".parse().unwrap()), ..rule(Action::Reject) };
        let mut set = RuleSet::new(vec![ssh, lan], Action::Drop, Action::Accept);
        assert_eq!(set.decide(&pkt(proto::TCP, "10.0.0.1", 999, "10.0.0.2", 22)).0, Action::Accept);
        assert_eq!(set.decide(&pkt(proto::UDP, "10.0.0.1", 999, "10.0.0.2", 22)).0, Action::Reject);
        assert_eq!(
            set.decide(&pkt(proto::TCP, "10.9.0.1", 999, "10.0.0.2", 80)),
            (Action::Drop, None, Matched::Default)
        );
        assert_eq!((set.hits(0), set.hits(1), set.default_hits(Direction::In)), (1, 1, 1));
        let mut out = pkt(proto::TCP, "10.0.0.2", 1, "10.0.0.1", 22);
        out.dir = Direction::Out;
        assert_eq!(set.decide(&out).0, Action::Accept, "in-rules do not apply to outgoing flows");
    }

    #[test]
    fn icmp_names_match_both_families() {
        let echo = Rule { proto: ProtoMatch::Icmp, icmp_type: Some(IcmpType::EchoRequest), ..rule(Action::Drop) };
        let mut v4 = pkt(proto::ICMP, "10.0.0.1", 0, "10.0.0.2", 0);
        v4.icmp_type = Some(8);
        let mut v6 = pkt(proto::ICMPV6, "fd00::1", 0, "fd00::2", 0);
        v6.icmp_type = Some(128);
        assert!(echo.matches(&v4) && echo.matches(&v6));
        v6.icmp_type = Some(8);
        assert!(!echo.matches(&v6));
        assert_eq!(echo.to_string(), "drop in icmp type echo-request", "printed in the text format");
    }

    #[test]
    fn the_port_index_keeps_file_order_across_its_lists() {
        let port = |first, last| Some(PortRange { first, last });
        let rules = vec![
            Rule { dport: port(80, 80), ..rule(Action::Drop) },
            Rule { src: Some("10.0.0.0/8".parse().unwrap()), ..rule(Action::Reject) },
            Rule { dport: port(70, 90), ..rule(Action::Accept) },
            Rule { dport: port(1, 60000), ..rule(Action::Accept) },
        ];
        let mut set = RuleSet::new(rules, Action::Drop, Action::Accept);
        assert_eq!(set.index[0].any_port, vec![1, 3], "no port and the wide range");
        assert_eq!(set.index[0].by_port.get(&80), Some(&vec![0, 2]));
        assert_eq!(set.decide(&pkt(proto::TCP, "10.1.1.1", 1, "10.0.0.2", 80)).2, Matched::Rule(0));
        assert_eq!(set.decide(&pkt(proto::TCP, "10.1.1.1", 1, "10.0.0.2", 85)).2, Matched::Rule(1));
        assert_eq!(set.decide(&pkt(proto::TCP, "192.0.2.1", 1, "10.0.0.2", 85)).2, Matched::Rule(2));
        assert_eq!(set.decide(&pkt(proto::TCP, "192.0.2.1", 1, "10.0.0.2", 5000)).2, Matched::Rule(3));
        assert_eq!(set.decide(&pkt(proto::TCP, "192.0.2.1", 1, "10.0.0.2", 0)).2, Matched::Default);
        assert_eq!((set.hits(0), set.hits(1), set.hits(2), set.hits(3)), (1, 1, 1, 1));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn range() -> impl Strategy<Value = Option<PortRange>> {
            // Narrow and wide ranges around a few ports, so that rules and packets meet.
            proptest::option::of((0u16..8, 0u16..3, 0u16..100).prop_map(|(base, kind, len)| {
                let first = base * 10;
                let len = [0, len, len.saturating_mul(600)][kind as usize];
                PortRange { first, last: first.saturating_add(len) }
            }))
        }

        fn a_rule() -> impl Strategy<Value = Rule> {
            let action = prop_oneof![Just(Action::Accept), Just(Action::Drop), Just(Action::Reject)];
            let dir = prop_oneof![Just(Direction::In), Just(Direction::Out)];
            let proto = prop_oneof![Just(ProtoMatch::Any), Just(ProtoMatch::Tcp), Just(ProtoMatch::Udp)];
            let src = proptest::option::of((0u8..4).prop_map(|b| IpNet::new([10, b, 0, 0].into(), 16).unwrap()));
            (action, dir, proto, src, range()).prop_map(|(action, dir, proto, src, dport)| Rule {
                action,
                dir,
                proto,
                src,
                dport,
                ..rule(Action::Accept)
            })
        }

        proptest! {
            #[test]
            fn the_index_decides_as_reading_every_rule_in_order(
                rules in proptest::collection::vec(a_rule(), 0..40),
                packets in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u8..4, 0u16..1000), 1..50),
            ) {
                let mut set = RuleSet::new(rules, Action::Drop, Action::Reject);
                for (out, udp, b, dport) in packets {
                    let mut p = pkt(if udp { proto::UDP } else { proto::TCP }, &format!("10.{b}.0.1"), 1, "10.9.0.2", dport);
                    p.dir = if out { Direction::Out } else { Direction::In };
                    let want = set.decide_linear(&p);
                    prop_assert_eq!(set.decide(&p), want, "{:?}", p);
                }
            }
        }
    }
}
