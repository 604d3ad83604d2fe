//! Packet policy, evaluated by the stack before demultiplexing: a stateful packet filter
//! ([`rules`]), port knocking ([`knock`]) and port-scan detection ([`scan`]), configured
//! together from one text ([`text`]) and replaceable at run time
//! (`Stack::set_policy`).
//!
//! ```text
//!   packet -> parse -> established flow? --yes--> demux (no rule is looked at)
//!                          | no (a SYN, a datagram for no connection, ICMP)
//!                          v
//!              source blocked (scan)? -> drop
//!              knock port? -> advance the source's sequence, drop
//!              protected port? -> open for this source: accept; else closed/filtered
//!              rules, first match, else the default policy -> accept | drop | reject
//!   no socket for it (closed port, FIN/NULL/Xmas probe) -> scan detector
//! ```
//!
//! Every table that input can grow is bounded: the per-source tables of the knocker,
//! the scan detector and the block list have a fixed number of buckets
//! (`table::SourceTable`), the recent-scan list keeps [`RECENT_SCANS`] events. With
//! no policy set (the default) the stack skips all of this.

pub mod knock;
pub mod rules;
pub mod scan;
mod table;
pub mod text;

use std::collections::VecDeque;
use std::net::IpAddr;

use self::knock::{KnockVerdict, Knocker};
use self::rules::{Action, Direction, PacketInfo, RejectWith, Rule, RuleSet};
use self::scan::{ProbeKind, ScanDetector, ScanEvent};
use self::table::SourceTable;
use self::text::PolicyConfig;
use crate::rand::SipKey;
use crate::time::Instant;

pub use self::text::{PolicyError, PolicyErrorKind};

/// Scan events kept for display (`Policy::recent_scans`).
pub const RECENT_SCANS: usize = 64;

/// Sources that can be blocked at once.
pub const BLOCKED_SOURCES: usize = 1024;

/// What happens to a packet (or an outgoing flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Silently discarded.
    Drop,
    /// Discarded and answered.
    Reject(RejectWith),
}

/// Counters of the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// New flows the policy let through.
    pub accepted: u64,
    /// Packets dropped by a rule, the default policy, a closed knock port or a block.
    pub dropped: u64,
    /// Packets rejected (and answered).
    pub rejected: u64,
    /// Of those dropped: because the source was blocked after a scan.
    pub blocked: u64,
    /// Knocks received (any knock port).
    pub knocks: u64,
    /// Sequences completed (protected ports opened).
    pub knock_opens: u64,
    /// Scans detected.
    pub scans_detected: u64,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Policy {
    config: PolicyConfig,
    rules: RuleSet,
    knock: Option<Knocker>,
    scan: Option<ScanDetector>,
    blocked: SourceTable<Instant>,
    recent: VecDeque<ScanEvent>,
    stats: PolicyStats,
}

impl Policy {
    /// A policy from its configuration; `key` keys the per-source tables' hash (the
    /// stack passes one derived from its seed).
    pub fn new(config: PolicyConfig, key: SipKey) -> Policy {
        let rules = RuleSet::new(config.rules.clone(), config.default_in, config.default_out);
        let knock = config.knock.clone().map(|k| Knocker::new(k, SipKey(key.0 ^ 1, key.1)));
        let scan = config.scan.map(|s| ScanDetector::new(s, SipKey(key.0 ^ 2, key.1)));
        let blocked_buckets = if config.scan.is_some_and(|s| s.block.is_some()) { BLOCKED_SOURCES } else { 1 };
        Policy {
            config,
            rules,
            knock,
            scan,
            blocked: SourceTable::new(blocked_buckets, SipKey(key.0 ^ 3, key.1)),
            recent: VecDeque::with_capacity(RECENT_SCANS),
            stats: PolicyStats::default(),
        }
    }

    /// Parse the text format ([`text`]) into a policy.
    pub fn parse(text: &str, key: SipKey) -> Result<Policy, PolicyError> {
        Ok(Policy::new(PolicyConfig::parse(text)?, key))
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The policy as text (round-trips through [`Policy::parse`]).
    pub fn to_text(&self) -> String {
        self.config.to_text()
    }

    pub fn stats(&self) -> PolicyStats {
        self.stats
    }

    /// The rules with their hit counts, in order.
    pub fn rules(&self) -> impl Iterator<Item = (&Rule, u64)> + '_ {
        self.rules.rules().iter().enumerate().map(|(i, r)| (r, self.rules.hits(i)))
    }

    /// Packets decided by a direction's default policy, and that policy.
    pub fn default_policy(&self, dir: Direction) -> (Action, u64) {
        (self.rules.default_action(dir), self.rules.default_hits(dir))
    }

    /// The last [`RECENT_SCANS`] scans detected, oldest first.
    pub fn recent_scans(&self) -> impl Iterator<Item = &ScanEvent> + '_ {
        self.recent.iter()
    }

    pub fn knocker(&self) -> Option<&Knocker> {
        self.knock.as_ref()
    }

    /// Sources blocked at `now` (after a scan), with until when.
    pub fn blocked_sources(&self, now: Instant) -> impl Iterator<Item = (IpAddr, Instant)> + '_ {
        self.blocked.iter().filter(move |(_, until)| now < **until).map(|(a, u)| (a, *u))
    }

    /// Whether scan detection is on (the stack reports probes only then).
    pub fn detects_scans(&self) -> bool {
        self.scan.is_some()
    }

    fn count(&mut self, d: Decision) -> Decision {
        match d {
            Decision::Accept => self.stats.accepted += 1,
            Decision::Drop => self.stats.dropped += 1,
            Decision::Reject(_) => self.stats.rejected += 1,
        }
        d
    }

    fn by_action(action: Action, with: Option<RejectWith>, ip_proto: u8) -> Decision {
        match action {
            Action::Accept => Decision::Accept,
            Action::Drop => Decision::Drop,
            Action::Reject => Decision::Reject(with.unwrap_or_else(|| RejectWith::default_for(ip_proto))),
        }
    }

    /// An inbound packet that starts a flow (the demux has no connection for it). A
    /// `knockable` packet (a TCP SYN, a UDP datagram) can be a knock or open a
    /// protected port.
    pub fn check_inbound(&mut self, now: Instant, p: &PacketInfo, knockable: bool) -> Decision {
        if self.blocked.get(p.src).is_some_and(|until| now < *until) {
            self.stats.blocked += 1;
            return self.count(Decision::Drop);
        }
        if knockable {
            if let Some(k) = self.knock.as_mut() {
                match k.check(now, p.src, p.proto, p.dport) {
                    KnockVerdict::NotMine => {}
                    KnockVerdict::Knock { opened } => {
                        self.stats.knocks += 1;
                        if opened {
                            self.stats.knock_opens += 1;
                            tracing::info!(source = %p.src, "port knock sequence completed: protected ports open");
                        }
                        return self.count(Decision::Drop);
                    }
                    KnockVerdict::Open => return self.count(Decision::Accept),
                    KnockVerdict::Closed => {
                        let d = if k.config().filtered {
                            Decision::Drop
                        } else {
                            Decision::Reject(RejectWith::default_for(p.proto))
                        };
                        return self.count(d);
                    }
                }
            }
        }
        let (action, with, _) = self.rules.decide(p);
        let d = Policy::by_action(action, with, p.proto);
        self.count(d)
    }

    /// A flow one of the stack's own applications opens (a connect, a datagram sent).
    pub fn check_outbound(&mut self, p: &PacketInfo) -> Decision {
        let (action, with, _) = self.rules.decide(p);
        let d = Policy::by_action(action, with, p.proto);
        self.count(d)
    }

    /// A probe from `src`: a packet to `port` for which there is no socket. Returns the
    /// scan it completes, if any (already logged, counted and, if configured, blocked).
    pub fn probe(&mut self, now: Instant, src: IpAddr, port: u16, kind: ProbeKind) -> Option<ScanEvent> {
        let scan = self.scan.as_mut()?;
        let ev = scan.probe(now, src, port, kind)?;
        self.stats.scans_detected += 1;
        if let Some(block) = scan.config().block {
            *self.blocked.entry(src, || now) = now + block;
        }
        tracing::warn!(
            target: "tunstack::scan",
            source = %ev.source,
            ports = ev.ports,
            kind = %ev.kinds,
            window_secs = ev.window.as_secs_f64(),
            blocked = ev.blocked,
            "port scan detected"
        );
        if self.recent.len() == RECENT_SCANS {
            self.recent.pop_front();
        }
        self.recent.push_back(ev);
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;
    use std::time::Duration;

    fn pkt(proto: u8, src: &str, dport: u16) -> PacketInfo {
        PacketInfo {
            dir: Direction::In,
            proto,
            src: src.parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            dport,
            icmp_type: None,
        }
    }

    #[test]
    fn knocks_then_rules_then_default() {
        let mut p = Policy::parse(
            "policy in drop\naccept in tcp dport 80\nknock udp:1000,udp:2000 protect tcp:22\n",
            SipKey(1, 1),
        )
        .unwrap();
        let t = Instant::from_secs(10);
        assert_eq!(p.check_inbound(t, &pkt(proto::TCP, "10.0.0.1", 80), true), Decision::Accept);
        assert_eq!(p.check_inbound(t, &pkt(proto::TCP, "10.0.0.1", 81), true), Decision::Drop);
        assert_eq!(
            p.check_inbound(t, &pkt(proto::TCP, "10.0.0.1", 22), true),
            Decision::Reject(RejectWith::TcpReset),
            "closed until knocked"
        );
        assert_eq!(p.check_inbound(t, &pkt(proto::UDP, "10.0.0.1", 1000), true), Decision::Drop);
        assert_eq!(p.check_inbound(t, &pkt(proto::UDP, "10.0.0.1", 2000), true), Decision::Drop);
        assert_eq!(p.check_inbound(t, &pkt(proto::TCP, "10.0.0.1", 22), true), Decision::Accept);
        let s = p.stats();
        assert_eq!((s.knocks, s.knock_opens, s.accepted), (2, 1, 2));
        let hits: Vec<u64> = p.rules().map(|(_, h)| h).collect();
        assert_eq!(hits, [1]);
        assert_eq!(p.default_policy(Direction::In), (Action::Drop, 1));
    }

    #[test]
    fn a_detected_scanner_is_blocked_for_a_while() {
        let mut p = Policy::parse("scan-detect threshold 3 window 10s block 60s", SipKey(2, 2)).unwrap();
        let t = Instant::from_secs(100);
        let src: IpAddr = "10.0.0.99".parse().unwrap();
        assert!(p.probe(t, src, 1, ProbeKind::Syn).is_none());
        assert!(p.probe(t, src, 2, ProbeKind::Syn).is_none());
        let ev = p.probe(t, src, 3, ProbeKind::Syn).unwrap();
        assert!(ev.blocked);
        assert_eq!(p.check_inbound(t, &pkt(proto::TCP, "10.0.0.99", 80), true), Decision::Drop);
        assert_eq!(p.check_inbound(t, &pkt(proto::TCP, "10.0.0.98", 80), true), Decision::Accept);
        assert_eq!(
            p.check_inbound(t + Duration::from_secs(61), &pkt(proto::TCP, "10.0.0.99", 80), true),
            Decision::Accept
        );
        assert_eq!(p.stats().blocked, 1);
        assert_eq!(p.recent_scans().count(), 1);
    }
}
