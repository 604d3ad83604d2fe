//! Path MTU per destination (RFC 1191 for IPv4, RFC 8201 for IPv6).
//!
//! An entry exists only for a destination whose path MTU an ICMP "fragmentation
//! needed" / "packet too big" lowered below the link MTU, after the stack checked the
//! message against a live socket (`icmp.rs`). It expires after `Config::pmtu_timeout`
//! (10 minutes, RFC 1191 6.3 / RFC 8201 4), when the link MTU is tried again. The table
//! holds at most `Config::pmtu_entries` destinations; a new one replaces the entry
//! that expires first. With no entry (the common case) a lookup is one `is_empty`.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::Config;
use crate::demux::KeyedState;
use crate::rand::SipKey;
use crate::time::Instant;

/// The smallest MTU an IPv4 link may have (RFC 791 3.2): a report below it is bogus.
pub(super) const IPV4_MIN_MTU: usize = 68;
/// The IPv6 minimum link MTU (RFC 8200 5): the estimate never goes below it (RFC 8201 4).
pub(super) const IPV6_MIN_MTU: usize = 1280;

/// RFC 1191 7, table 7-1: the plateaus to guess from when a router reports an MTU of
/// zero (it predates RFC 1191): the largest below the length of the packet it dropped.
const PLATEAUS: [usize; 11] = [65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

#[derive(Clone, Copy, Debug)]
struct Entry {
    mtu: usize,
    expires: Instant,
}

pub(super) struct PmtuCache {
    map: HashMap<IpAddr, Entry, KeyedState>,
}

impl PmtuCache {
    pub(super) fn new(key: SipKey) -> PmtuCache {
        PmtuCache { map: HashMap::with_hasher(KeyedState(key)) }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The estimate for `dst`, if one is remembered and not expired.
    #[inline]
    pub(super) fn get(&self, now: Instant, dst: IpAddr) -> Option<usize> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(&dst).filter(|e| e.expires > now).map(|e| e.mtu)
    }

    /// Lower the estimate for `dst` to `mtu` (already validated and floored by the
    /// caller). Returns whether it changed: RFC 1191 / RFC 8201 never raise an
    /// estimate from an ICMP message.
    pub(super) fn lower(&mut self, now: Instant, dst: IpAddr, mtu: usize, cfg: &Config) -> bool {
        let current = self.get(now, dst).unwrap_or(cfg.mtu);
        if mtu >= current {
            return false;
        }
        if !self.map.contains_key(&dst) && self.map.len() >= cfg.pmtu_entries {
            if cfg.pmtu_entries == 0 {
                return false;
            }
            let oldest = self.map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.map.remove(&k);
            }
        }
        self.map.insert(dst, Entry { mtu, expires: now + cfg.pmtu_timeout });
        true
    }

    /// Forget expired estimates (housekeeping).
    pub(super) fn expire(&mut self, now: Instant) {
        if !self.map.is_empty() {
            self.map.retain(|_, e| e.expires > now);
        }
    }
}

/// The MTU a "fragmentation needed" (IPv4, `reported` from its next-hop MTU field) or
/// "packet too big" (IPv6) asks for, made usable: IPv4 reports of 0 come from routers
/// that predate RFC 1191 and are replaced by the plateau below the dropped packet's
/// length (`quoted_len`, RFC 1191 7); IPv4 reports below 68 are bogus (`None`); the
/// floors are `Config::pmtu_min_v4` and 1280 for IPv6 (RFC 8201 4: a smaller report
/// does not take the estimate below the minimum link MTU).
pub(super) fn usable_mtu(v6: bool, reported: usize, quoted_len: usize, cfg: &Config) -> Option<usize> {
    if v6 {
        return Some(reported.max(IPV6_MIN_MTU));
    }
    let mtu = if reported == 0 { PLATEAUS.into_iter().find(|&p| p < quoted_len)? } else { reported };
    if mtu < IPV4_MIN_MTU {
        return None;
    }
    Some(mtu.max(cfg.pmtu_min_v4.max(IPV4_MIN_MTU)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    #[test]
    fn lowered_never_raised_expires_and_is_bounded() {
        let cfg = Config { pmtu_entries: 2, ..Config::default() };
        let mut c = PmtuCache::new(SipKey(3, 4));
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let d = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let t0 = Instant::ZERO;
        assert_eq!(c.get(t0, a), None);
        assert!(!c.lower(t0, a, 1500, &cfg), "not below the link MTU");
        assert!(c.lower(t0, a, 1400, &cfg));
        assert!(!c.lower(t0, a, 1450, &cfg), "never raised");
        assert!(c.lower(t0, a, 1300, &cfg));
        assert_eq!(c.get(t0, a), Some(1300));
        let t1 = t0 + Duration::from_secs(1);
        assert!(c.lower(t1, b, 1200, &cfg));
        // Full: the entry expiring first (a's) makes room.
        assert!(c.lower(t1, d, 1000, &cfg));
        assert_eq!((c.len(), c.get(t1, a), c.get(t1, b), c.get(t1, d)), (2, None, Some(1200), Some(1000)));
        // RFC 1191 6.3: after 10 minutes the link MTU is tried again.
        let later = t1 + Duration::from_secs(600);
        assert_eq!(c.get(later, b), None);
        c.expire(later);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn usable_mtus() {
        let cfg = Config::default();
        assert_eq!(usable_mtu(false, 1400, 1500, &cfg), Some(1400));
        assert_eq!(usable_mtu(false, 300, 1500, &cfg), Some(576), "the IPv4 floor");
        assert_eq!(usable_mtu(false, 67, 1500, &cfg), None, "below RFC 791's minimum");
        assert_eq!(usable_mtu(false, 0, 1500, &cfg), Some(1492), "RFC 1191 plateau");
        assert_eq!(usable_mtu(false, 0, 1006, &cfg), Some(576), "plateau 508, floored");
        assert_eq!(usable_mtu(false, 0, 68, &cfg), None);
        assert_eq!(usable_mtu(true, 1000, 1500, &cfg), Some(1280), "RFC 8201 4");
        assert_eq!(usable_mtu(true, 1400, 1500, &cfg), Some(1400));
        let low = Config { pmtu_min_v4: 68, ..Config::default() };
        assert_eq!(usable_mtu(false, 68, 1500, &low), Some(68));
    }
}
