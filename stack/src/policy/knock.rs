//! Port knocking: a configured sequence of (protocol, port) knocks from one source,
//! within a time limit, opens the protected ports to that source only, for a while.
//!
//! A knock is a TCP SYN or a UDP datagram to a port of the sequence; it is dropped
//! silently (a knock port looks filtered). The right next knock advances the source's
//! progress; any other knock resets it (or restarts it, if it is the first knock of the
//! sequence); a sequence that takes longer than `within` starts over. When the last
//! knock arrives in time, the protected ports accept new flows from that source for
//! `open_for`. To everybody else a protected port answers like a closed port (RST or
//! port unreachable) or, with `filtered`, not at all. Connections opened while the
//! port was open keep working after it closes (only new flows are checked).

use std::net::IpAddr;
use std::time::Duration;

use super::table::SourceTable;
use crate::rand::SipKey;
use crate::time::Instant;
use crate::wire::proto;

/// Sources whose progress or open state is kept at once.
pub const KNOCK_SOURCES: usize = 1024;

/// Longest knock sequence.
pub const MAX_KNOCKS: usize = 16;

/// A (protocol, port) pair: protocol is `proto::TCP` or `proto::UDP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Knock {
    pub proto: u8,
    pub port: u16,
}

impl std::fmt::Display for Knock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = if self.proto == proto::UDP { "udp" } else { "tcp" };
        write!(f, "{p}:{}", self.port)
    }
}

/// Configuration (the `knock` line of the policy text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KnockConfig {
    /// The knocks, in order (1 to [`MAX_KNOCKS`]).
    pub sequence: Vec<Knock>,
    /// The ports the sequence opens.
    pub protect: Vec<Knock>,
    /// The whole sequence must arrive within this (default 10 s).
    pub within: Duration,
    /// How long the protected ports stay open for the source (default 30 s).
    pub open_for: Duration,
    /// Closed ports look filtered (no answer) instead of closed (RST / unreachable).
    pub filtered: bool,
}

/// What the knocker says about a new inbound flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnockVerdict {
    /// Not a knock port, not a protected port: the rules decide.
    NotMine,
    /// A knock: swallowed. `opened` when it completed the sequence.
    Knock { opened: bool },
    /// A protected port, open for this source.
    Open,
    /// A protected port, closed for this source.
    Closed,
}

#[derive(Clone, Copy, Debug)]
struct Progress {
    /// Knocks matched so far.
    step: usize,
    started: Instant,
    /// Protected ports open for this source until then.
    open_until: Option<Instant>,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Knocker {
    cfg: KnockConfig,
    sources: SourceTable<Progress>,
}

impl Knocker {
    pub fn new(cfg: KnockConfig, key: SipKey) -> Knocker {
        Knocker { cfg, sources: SourceTable::new(KNOCK_SOURCES, key) }
    }

    pub fn config(&self) -> &KnockConfig {
        &self.cfg
    }

    /// A new inbound flow from `src` to `(proto, port)` at `now` (a TCP SYN or a UDP
    /// datagram for no connection).
    pub fn check(&mut self, now: Instant, src: IpAddr, ip_proto: u8, port: u16) -> KnockVerdict {
        let this = Knock { proto: ip_proto, port };
        if self.cfg.protect.contains(&this) {
            let open = self.sources.get(src).and_then(|p| p.open_until).is_some_and(|t| now < t);
            return if open { KnockVerdict::Open } else { KnockVerdict::Closed };
        }
        let Some(first_index) = self.cfg.sequence.iter().position(|k| *k == this) else {
            return KnockVerdict::NotMine;
        };
        let cfg = &self.cfg;
        let p = self.sources.entry(src, || Progress { step: 0, started: now, open_until: None });
        if p.step > 0 && now.saturating_duration_since(p.started) > cfg.within {
            p.step = 0;
        }
        if cfg.sequence.get(p.step) == Some(&this) {
            if p.step == 0 {
                p.started = now;
            }
            p.step += 1;
        } else {
            // A wrong knock resets; the first knock of the sequence restarts it.
            p.step = usize::from(first_index == 0 && cfg.sequence.first() == Some(&this));
            p.started = now;
        }
        if p.step == cfg.sequence.len() {
            p.step = 0;
            p.open_until = Some(now + cfg.open_for);
            return KnockVerdict::Knock { opened: true };
        }
        KnockVerdict::Knock { opened: false }
    }

    /// Sources for which the protected ports are open at `now`, with until when.
    pub fn open_sources(&self, now: Instant) -> impl Iterator<Item = (IpAddr, Instant)> + '_ {
        self.sources.iter().filter_map(move |(a, p)| p.open_until.filter(|t| now < *t).map(|t| (a, t)))
    }

    /// Sources part-way through the sequence at `now`, with the knocks they have made.
    pub fn in_progress(&self, now: Instant) -> impl Iterator<Item = (IpAddr, usize)> + '_ {
        let within = self.cfg.within;
        self.sources
            .iter()
            .filter(move |(_, p)| p.step > 0 && now.saturating_duration_since(p.started) <= within)
            .map(|(a, p)| (a, p.step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knocker() -> Knocker {
        Knocker::new(
            KnockConfig {
                sequence: vec![
                    Knock { proto: proto::TCP, port: 7000 },
                    Knock { proto: proto::UDP, port: 8000 },
                    Knock { proto: proto::TCP, port: 9000 },
                ],
                protect: vec![Knock { proto: proto::TCP, port: 22 }],
                within: Duration::from_secs(10),
                open_for: Duration::from_secs(30),
                filtered: false,
            },
            SipKey(5, 6),
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    #[test]
    fn the_right_sequence_opens_for_that_source_only() {
        let mut k = knocker();
        let t = Instant::from_secs(50);
        assert_eq!(k.check(t, A, proto::TCP, 22), KnockVerdict::Closed);
        assert_eq!(k.check(t, A, proto::TCP, 7000), KnockVerdict::Knock { opened: false });
        assert_eq!(k.check(t, A, proto::UDP, 8000), KnockVerdict::Knock { opened: false });
        assert_eq!(k.check(t, A, proto::TCP, 9000), KnockVerdict::Knock { opened: true });
        assert_eq!(k.check(t, A, proto::TCP, 22), KnockVerdict::Open);
        assert_eq!(k.check(t, B, proto::TCP, 22), KnockVerdict::Closed, "another source");
        assert_eq!(k.check(t, A, proto::UDP, 22), KnockVerdict::NotMine, "protect names tcp:22 only");
        assert_eq!(k.check(t, A, proto::TCP, 80), KnockVerdict::NotMine);
        // It closes again after open_for.
        assert_eq!(k.check(t + Duration::from_secs(31), A, proto::TCP, 22), KnockVerdict::Closed);
        assert_eq!(k.open_sources(t).count(), 1);
    }

    #[test]
    fn wrong_order_or_too_slow_opens_nothing() {
        let mut k = knocker();
        let t = Instant::from_secs(50);
        // Wrong order.
        k.check(t, A, proto::TCP, 7000);
        k.check(t, A, proto::TCP, 9000);
        assert_eq!(k.check(t, A, proto::UDP, 8000), KnockVerdict::Knock { opened: false });
        assert_eq!(k.check(t, A, proto::TCP, 22), KnockVerdict::Closed);
        // Wrong protocol on a knock port is a wrong knock too (tcp:8000 is not a knock).
        k.check(t, A, proto::TCP, 7000);
        k.check(t, A, proto::UDP, 8000);
        assert_eq!(k.check(t, A, proto::UDP, 9000), KnockVerdict::NotMine);
        // Too slow: the third knock 11 s after the first.
        let mut k = knocker();
        k.check(t, B, proto::TCP, 7000);
        k.check(t + Duration::from_secs(5), B, proto::UDP, 8000);
        assert_eq!(k.check(t + Duration::from_secs(11), B, proto::TCP, 9000), KnockVerdict::Knock { opened: false });
        assert_eq!(k.check(t + Duration::from_secs(11), B, proto::TCP, 22), KnockVerdict::Closed);
        // Restarting with the first knock works.
        k.check(t + Duration::from_secs(20), B, proto::TCP, 7000);
        k.check(t + Duration::from_secs(21), B, proto::UDP, 8000);
        assert_eq!(k.check(t + Duration::from_secs(22), B, proto::TCP, 9000), KnockVerdict::Knock { opened: true });
    }
}
