//! SYN cookies (RFC 4987 3.6): a listener whose half-open queue is full answers a SYN
//! with a SYN-ACK whose initial sequence number encodes what the connection needs, and
//! keeps nothing; the returning ACK (acknowledging ISN + 1) brings it back.
//!
//! ```text
//!   cookie = F1(4-tuple, ISN(peer)) + (t << 24) + (mss_index << 21) + F2(4-tuple, t, mss_index) mod 2^21
//! ```
//!
//! `t` is a counter that advances every 64 seconds (its low 8 bits are kept), F1 and
//! F2 are SipHash-2-4 under two keys derived from the stack's secret, and `mss_index`
//! picks an entry of a small MSS table ([`MSS_TABLE`], as Linux keeps one). To check an
//! ACK, subtracting F1 (of SEG.SEQ - 1) from SEG.ACK - 1 leaves `t` in the top 8 bits;
//! a cookie is accepted from the current or the previous counter value (64 to 128 s
//! old at most), with the index in the next 3 bits, and only if the low 21 bits are
//! F2 for that counter value and index. A blind guess succeeds with probability
//! 2^-21 per counter value. (Linux adds the peer's ISN and the index instead of hashing
//! them, so there an ACK off by a few in either number still passes, with another
//! MSS; here it does not.)
//!
//! The options the SYN offered that the connection must remember (window scale,
//! SACK-permitted) cannot fit there. When the peer sent timestamps (RFC 7323), they go
//! in the low 6 bits of our TSval, which the peer echoes in every TSecr: 4 bits of
//! window scale (15: none) and one for SACK-permitted. Without timestamps the cookie
//! SYN-ACK offers neither, like Linux's. Data on a SYN is not kept either.

use std::net::SocketAddr;

use crate::rand::SipKey;
use crate::seq::SeqNum;
use crate::time::Instant;

/// The MSS values a cookie can carry: the common ones (RFC 9293 3.7.1's 536, the
/// IPv6 minimum 1280 - 60, tunnels, 1500 - 60 and 1500 - 40, jumbo frames). The peer's
/// MSS is rounded down to an entry.
pub(crate) const MSS_TABLE: [u16; 8] = [536, 1220, 1300, 1380, 1440, 1460, 4312, 8960];

/// Seconds per counter step.
const PERIOD_SECS: u64 = 64;
/// A cookie is valid for this many counter values (the current one and the previous).
const MAX_AGE: u32 = 2;
/// Bits of the cookie below the counter: 3 of MSS index, 21 of F2.
const LOW_BITS: u32 = 24;
const LOW_MASK: u32 = (1 << LOW_BITS) - 1;
const MAC_BITS: u32 = 21;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;
/// Bits of TSval that carry the options.
pub(crate) const TS_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_BITS) - 1;
const NO_WSCALE: u32 = 0xF;
const SACK_BIT: u32 = 1 << 4;

/// How long after sending a cookie a listener checks ACKs for one: the oldest cookie
/// still valid.
pub(crate) const VALIDITY: std::time::Duration = std::time::Duration::from_secs(PERIOD_SECS * MAX_AGE as u64);

/// The secret of the cookies: two SipHash keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CookieKey {
    k1: SipKey,
    k2: SipKey,
}

/// What a valid cookie ACK gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The peer's MSS, rounded down to a table entry.
    pub mss: u16,
}

impl CookieKey {
    pub(crate) fn new(k1: SipKey, k2: SipKey) -> CookieKey {
        CookieKey { k1, k2 }
    }

    /// F1 with `word` = the peer's ISN, F2 with `word` = the counter.
    fn hash(key: &SipKey, local: SocketAddr, remote: SocketAddr, word: u32) -> u32 {
        let mut b = [0u8; 40];
        put(&mut b[0..16], local);
        b[16..18].copy_from_slice(&local.port().to_be_bytes());
        put(&mut b[18..34], remote);
        b[34..36].copy_from_slice(&remote.port().to_be_bytes());
        b[36..40].copy_from_slice(&word.to_be_bytes());
        key.hash(&b) as u32
    }

    /// The ISN of a cookie SYN-ACK answering a SYN with sequence number `peer_isn`.
    pub(crate) fn make(
        &self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: SeqNum,
        mss: u16,
    ) -> SeqNum {
        let t = counter(now);
        let index = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        let f1 = Self::hash(&self.k1, local, remote, peer_isn.0);
        let f2 = Self::hash(&self.k2, local, remote, t << 3 | index);
        SeqNum(f1.wrapping_add(t << LOW_BITS).wrapping_add(index << MAC_BITS | (f2 & MAC_MASK)))
    }

    /// Check the cookie of an ACK: `peer_isn` is SEG.SEQ - 1, `cookie` SEG.ACK - 1.
    pub(crate) fn check(
        &self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: SeqNum,
        cookie: SeqNum,
    ) -> Option<Decoded> {
        let f1 = Self::hash(&self.k1, local, remote, peer_isn.0);
        let rest = cookie.0.wrapping_sub(f1);
        let now_t = counter(now);
        // The 8 bits of the counter the cookie was made with, and how old it is.
        let age = (now_t.wrapping_sub(rest >> LOW_BITS)) & 0xFF;
        if age >= MAX_AGE {
            return None;
        }
        let t = now_t.wrapping_sub(age);
        let low = rest & LOW_MASK;
        let index = low >> MAC_BITS;
        if low & MAC_MASK != Self::hash(&self.k2, local, remote, t << 3 | index) & MAC_MASK {
            return None;
        }
        MSS_TABLE.get(index as usize).map(|&mss| Decoded { mss })
    }
}

fn counter(now: Instant) -> u32 {
    (now.total_micros() / 1_000_000 / PERIOD_SECS) as u32
}

fn put(out: &mut [u8], a: SocketAddr) {
    match a {
        SocketAddr::V4(v) => out[..4].copy_from_slice(&v.ip().octets()),
        SocketAddr::V6(v) => out.copy_from_slice(&v.ip().octets()),
    }
}

/// The option bits our cookie SYN-ACK's TSval carries: `wscale` (the peer's shift, if
/// the SYN offered window scaling and we use it) and SACK-permitted.
pub(crate) fn ts_bits(wscale: Option<u8>, sack: bool) -> u32 {
    wscale.map_or(NO_WSCALE, |s| u32::from(s.min(14))) | if sack { SACK_BIT } else { 0 }
}

/// Our TSval for a cookie SYN-ACK: the clock `ts_now` with its low bits replaced.
pub(crate) fn tsval(ts_now: u32, bits: u32) -> u32 {
    (ts_now & !TS_MASK) | (bits & TS_MASK)
}

/// The options a TSecr echoing a cookie SYN-ACK's TSval carries: (window scale, SACK).
pub(crate) fn from_ts_bits(tsecr: u32) -> (Option<u8>, bool) {
    let ws = tsecr & 0xF;
    ((ws != NO_WSCALE).then_some(ws.min(14) as u8), tsecr & SACK_BIT != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key() -> CookieKey {
        CookieKey::new(SipKey(1, 2), SipKey(3, 4))
    }

    const L: &str = "10.0.0.2:80";
    const R: &str = "10.0.0.1:40000";

    #[test]
    fn valid_for_two_periods_with_its_mss() {
        let (l, r) = (L.parse().unwrap(), R.parse().unwrap());
        let t0 = Instant::from_secs(1000 * 64 + 10);
        for (mss, want) in [(1460, 1460), (1459, 1440), (536, 536), (100, 536), (65495, 8960), (1220, 1220)] {
            let c = key().make(t0, l, r, SeqNum(777), mss);
            assert_eq!(key().check(t0, l, r, SeqNum(777), c), Some(Decoded { mss: want }), "mss {mss}");
            // Valid in the next period, not in the one after.
            let later = t0 + Duration::from_secs(64);
            assert_eq!(key().check(later, l, r, SeqNum(777), c).map(|d| d.mss), Some(want));
            assert_eq!(key().check(t0 + Duration::from_secs(128), l, r, SeqNum(777), c), None);
            // Off by one, another peer ISN, port or address, or key: invalid.
            for d in [1u32, 2, 7, 1 << 21, 1 << 24] {
                assert_eq!(key().check(t0, l, r, SeqNum(777), SeqNum(c.0.wrapping_add(d))), None);
                assert_eq!(key().check(t0, l, r, SeqNum(777), SeqNum(c.0.wrapping_sub(d))), None);
            }
            assert_eq!(key().check(t0, l, r, SeqNum(778), c), None);
            assert_eq!(key().check(t0, l, "10.0.0.1:40001".parse().unwrap(), SeqNum(777), c), None);
            assert_eq!(key().check(t0, l, "10.0.0.3:40000".parse().unwrap(), SeqNum(777), c), None);
            assert_eq!(CookieKey::new(SipKey(1, 2), SipKey(3, 5)).check(t0, l, r, SeqNum(777), c), None);
        }
    }

    #[test]
    fn guesses_rarely_pass() {
        let (l, r) = (L.parse().unwrap(), R.parse().unwrap());
        let t = Instant::from_secs(5000);
        let mut rng = crate::rand::Rng::new(9);
        // 2^-21 for each of 2 counter values out of 256: about one random cookie in 2^28
        // passes.
        let passed = (0..200_000).filter(|_| key().check(t, l, r, SeqNum(1), SeqNum(rng.next_u32())).is_some());
        assert_eq!(passed.count(), 0, "a random cookie was accepted");
    }

    #[test]
    fn timestamp_bits() {
        for ws in [None, Some(0), Some(7), Some(14)] {
            for sack in [false, true] {
                let v = tsval(0xdead_beef, ts_bits(ws, sack));
                assert_eq!(v & !TS_MASK, 0xdead_beef & !TS_MASK);
                assert_eq!(from_ts_bits(v), (ws, sack));
            }
        }
    }
}
