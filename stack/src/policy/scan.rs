//! Port-scan detection: per source, the distinct ports it probed within a sliding
//! window. A probe is what a scanner sends and a normal client does not: a SYN or a UDP
//! datagram to a closed port, or a TCP packet that cannot belong to any connection
//! (FIN, NULL and Xmas probes, RFC 793's "no connection" case that nmap's -sF/-sN/-sX
//! use). A client that makes many connections to one open port probes nothing.
//!
//! When a source has probed `threshold` distinct ports within `window`, the detector
//! reports it once (until its probes age out): a structured `tracing` event, a counter,
//! an entry in the recent-events list, and, if configured, a temporary block of the
//! source. State is bounded: a fixed `SourceTable` of sources, each remembering at
//! most [`MAX_THRESHOLD`] ports.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::table::SourceTable;
use crate::rand::SipKey;
use crate::time::Instant;

/// The largest configurable threshold (ports remembered per source).
pub const MAX_THRESHOLD: usize = 64;

/// Sources tracked at once.
pub const SCAN_SOURCES: usize = 1024;

/// Configuration (the `scan-detect` line of the policy text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScanConfig {
    /// Distinct ports within `window` that make a scan (default 20, at most
    /// [`MAX_THRESHOLD`]).
    pub threshold: usize,
    /// The sliding window (default 10 s).
    pub window: Duration,
    /// Block a detected scanner's new flows for this long (default: do not block).
    pub block: Option<Duration>,
}

impl Default for ScanConfig {
    fn default() -> ScanConfig {
        ScanConfig { threshold: 20, window: Duration::from_secs(10), block: None }
    }
}

/// What kind of probe a packet is (nmap's scan types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// SYN to a closed port (-sS, -sT).
    Syn,
    /// FIN alone, no connection (-sF).
    Fin,
    /// No flags at all (-sN).
    Null,
    /// FIN+PSH+URG (-sX).
    Xmas,
    /// Another TCP packet for no connection (ACK scans, odd flag mixes).
    OtherTcp,
    /// UDP to a closed port (-sU).
    Udp,
}

impl ProbeKind {
    const ALL: [ProbeKind; 6] =
        [ProbeKind::Syn, ProbeKind::Fin, ProbeKind::Null, ProbeKind::Xmas, ProbeKind::OtherTcp, ProbeKind::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Syn => "syn",
            ProbeKind::Fin => "fin",
            ProbeKind::Null => "null",
            ProbeKind::Xmas => "xmas",
            ProbeKind::OtherTcp => "tcp-other",
            ProbeKind::Udp => "udp",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of probe kinds a scan used.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScanKinds(u8);

impl ScanKinds {
    pub fn contains(self, k: ProbeKind) -> bool {
        self.0 & k.bit() != 0
    }
}

impl fmt::Display for ScanKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for k in ProbeKind::ALL {
            if self.contains(k) {
                if !first {
                    f.write_str("+")?;
                }
                f.write_str(k.as_str())?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ScanKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One detected scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanEvent {
    pub at: Instant,
    pub source: IpAddr,
    /// Distinct ports probed within the window when it was detected.
    pub ports: usize,
    pub kinds: ScanKinds,
    pub window: Duration,
    /// Whether the source was blocked for it.
    pub blocked: bool,
}

/// One source's recent probes.
#[derive(Clone, Debug)]
struct Probes {
    /// (port, last probe) for up to `threshold` distinct ports, oldest replaced first.
    ports: [(u16, Instant); MAX_THRESHOLD],
    len: usize,
    kinds: ScanKinds,
    /// When it was last reported (it is reported again only after its probes aged out).
    reported: Option<Instant>,
}

impl Probes {
    fn new() -> Probes {
        Probes { ports: [(0, Instant::ZERO); MAX_THRESHOLD], len: 0, kinds: ScanKinds::default(), reported: None }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct ScanDetector {
    cfg: ScanConfig,
    sources: SourceTable<Probes>,
}

impl ScanDetector {
    pub fn new(mut cfg: ScanConfig, key: SipKey) -> ScanDetector {
        cfg.threshold = cfg.threshold.clamp(2, MAX_THRESHOLD);
        ScanDetector { cfg, sources: SourceTable::new(SCAN_SOURCES, key) }
    }

    pub fn config(&self) -> &ScanConfig {
        &self.cfg
    }

    /// A probe from `src` to `port` at `now`. Returns the scan it completes, if any.
    pub fn probe(&mut self, now: Instant, src: IpAddr, port: u16, kind: ProbeKind) -> Option<ScanEvent> {
        let cfg = self.cfg;
        let p = self.sources.entry(src, Probes::new);
        let since = Instant::from_micros(now.total_micros().saturating_sub(cfg.window.as_micros() as u64));
        // Forget what aged out of the window.
        let mut kept = 0;
        for i in 0..p.len {
            if p.ports[i].1 >= since {
                p.ports[kept] = p.ports[i];
                kept += 1;
            }
        }
        p.len = kept;
        if p.len == 0 {
            p.kinds = ScanKinds::default();
            if p.reported.is_some_and(|r| r < since) {
                p.reported = None;
            }
        }
        match p.ports[..p.len].iter_mut().find(|(q, _)| *q == port) {
            Some(e) => e.1 = now,
            None if p.len < cfg.threshold => {
                p.ports[p.len] = (port, now);
                p.len += 1;
            }
            None => {
                // Full: the oldest port gives way.
                if let Some(oldest) = p.ports[..p.len].iter_mut().min_by_key(|(_, t)| *t) {
                    *oldest = (port, now);
                }
            }
        }
        p.kinds.0 |= kind.bit();
        if p.len >= cfg.threshold && p.reported.is_none() {
            p.reported = Some(now);
            return Some(ScanEvent {
                at: now,
                source: src,
                ports: p.len,
                kinds: p.kinds,
                window: cfg.window,
                blocked: cfg.block.is_some(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(threshold: usize) -> ScanDetector {
        ScanDetector::new(ScanConfig { threshold, ..ScanConfig::default() }, SipKey(3, 4))
    }

    #[test]
    fn distinct_ports_within_the_window_make_one_report() {
        let mut d = det(5);
        let src: IpAddr = "10.0.0.66".parse().unwrap();
        let t = Instant::from_secs(100);
        for (i, port) in [1, 2, 3, 4].into_iter().enumerate() {
            assert_eq!(d.probe(t + Duration::from_millis(i as u64), src, port, ProbeKind::Syn), None);
        }
        // The same port again is not a new one.
        assert_eq!(d.probe(t, src, 4, ProbeKind::Syn), None);
        let ev = d.probe(t + Duration::from_secs(1), src, 5, ProbeKind::Fin).expect("fifth distinct port");
        assert_eq!((ev.source, ev.ports), (src, 5));
        assert_eq!(ev.kinds.to_string(), "syn+fin");
        // Reported once, however much more it probes within the window.
        for port in 6..40 {
            assert_eq!(d.probe(t + Duration::from_secs(2), src, port, ProbeKind::Syn), None);
        }
        // Once everything aged out, a new scan is reported again.
        let later = t + Duration::from_secs(60);
        for port in 1..5 {
            assert_eq!(d.probe(later, src, port, ProbeKind::Udp), None);
        }
        assert!(d.probe(later, src, 5, ProbeKind::Udp).is_some());
    }

    #[test]
    fn slow_probes_and_one_port_are_not_scans() {
        let mut d = det(3);
        let src: IpAddr = "fd00::66".parse().unwrap();
        // One port, many times.
        for i in 0..100 {
            assert_eq!(d.probe(Instant::from_secs(i), src, 80, ProbeKind::Syn), None);
        }
        // Distinct ports, but each 11 s apart: never three within 10 s.
        for i in 0..10u16 {
            assert_eq!(d.probe(Instant::from_secs(200 + 11 * u64::from(i)), src, 1000 + i, ProbeKind::Syn), None);
        }
    }
}
