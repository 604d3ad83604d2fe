//! TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 section 3.4).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence number. Ordering is defined modulo 2^32: `a < b` when `b` lies in the
/// half of the sequence space that follows `a` (RFC 9293 3.4, "all arithmetic dealing with
/// sequence numbers must be performed modulo 2**32").
///
/// Two numbers exactly 2^31 apart are not comparable in a meaningful way; like every TCP
/// implementation we treat the signed difference as the answer, so such a pair is ordered
/// by the sign of `i32::MIN`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// Signed distance from `other` to `self`.
    #[inline]
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    #[inline]
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self > other {
            self
        } else {
            other
        }
    }

    #[inline]
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self < other {
            self
        } else {
            other
        }
    }

    /// `start <= self < end`, modulo 2^32.
    #[inline]
    pub fn in_range(self, start: SeqNum, end: SeqNum) -> bool {
        self.0.wrapping_sub(start.0) < end.0.wrapping_sub(start.0)
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &SeqNum) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeqNum {
    fn cmp(&self, other: &SeqNum) -> Ordering {
        self.diff(*other).cmp(&0)
    }
}

impl Add<usize> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn add(self, rhs: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNum {
    #[inline]
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn sub(self, rhs: usize) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs as u32))
    }
}

impl Sub<SeqNum> for SeqNum {
    type Output = usize;
    /// Distance from `rhs` forward to `self`. Panics in debug builds when `rhs > self`,
    /// which would be a logic error in the caller.
    #[inline]
    fn sub(self, rhs: SeqNum) -> usize {
        let d = self.diff(rhs);
        debug_assert!(d >= 0, "sequence subtraction underflow: {self:?} - {rhs:?}");
        d.max(0) as usize
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps() {
        let a = SeqNum(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b.0, 9);
        assert!(a < b);
        assert_eq!(b - a, 20);
        assert_eq!(b - 20, a);
        assert!(SeqNum(5).in_range(a, b));
        assert!(!b.in_range(a, b));
    }

    proptest! {
        #[test]
        fn add_then_sub_roundtrips(base: u32, n in 0usize..(1 << 31)) {
            let a = SeqNum(base);
            let b = a + n;
            prop_assert_eq!(b - a, n);
            prop_assert_eq!(b - n, a);
            if n > 0 { prop_assert!(a < b); prop_assert!(b > a); } else { prop_assert_eq!(a, b); }
        }

        #[test]
        fn order_is_antisymmetric_and_translation_invariant(x: u32, y: u32, shift: u32) {
            let (a, b) = (SeqNum(x), SeqNum(y));
            let (sa, sb) = (SeqNum(x.wrapping_add(shift)), SeqNum(y.wrapping_add(shift)));
            prop_assert_eq!(a.cmp(&b), sa.cmp(&sb));
            if x.wrapping_sub(y) != 1 << 31 {
                prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            }
        }

        #[test]
        fn in_range_matches_distance(start: u32, len in 0u32..(1 << 31), off in 0u32..u32::MAX) {
            let s = SeqNum(start);
            let e = s + len as usize;
            let x = s + off as usize;
            prop_assert_eq!(x.in_range(s, e), off < len);
        }
    }
}
