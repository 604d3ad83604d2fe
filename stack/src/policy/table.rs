//! A bounded per-source table: a fixed number of buckets, chosen by a keyed hash of the
//! source address, each holding at most one source's state. A flood of sources (spoofed
//! addresses, say) can only overwrite buckets; it cannot make the table grow. The price
//! is that two sources hashing to the same bucket evict each other, which the keyed hash
//! keeps an attacker from arranging on purpose.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use crate::demux::KeyedState;
use crate::rand::SipKey;

/// See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct SourceTable<T> {
    buckets: Vec<Option<(IpAddr, T)>>,
    hasher: KeyedState,
}

impl<T> SourceTable<T> {
    /// A table of `buckets` buckets (at least one), all allocated now.
    pub(crate) fn new(buckets: usize, key: SipKey) -> SourceTable<T> {
        let mut v = Vec::with_capacity(buckets.max(1));
        v.resize_with(buckets.max(1), || None);
        SourceTable { buckets: v, hasher: KeyedState(key) }
    }

    fn index(&self, src: IpAddr) -> usize {
        let mut h = self.hasher.build_hasher();
        src.hash(&mut h);
        (std::hash::Hasher::finish(&h) % self.buckets.len() as u64) as usize
    }

    /// `src`'s state, if its bucket holds it.
    pub(crate) fn get(&self, src: IpAddr) -> Option<&T> {
        match &self.buckets[self.index(src)] {
            Some((a, t)) if *a == src => Some(t),
            _ => None,
        }
    }

    /// `src`'s state, created with `fresh` (evicting whoever held the bucket) if absent.
    pub(crate) fn entry(&mut self, src: IpAddr, fresh: impl FnOnce() -> T) -> &mut T {
        let i = self.index(src);
        let bucket = &mut self.buckets[i];
        if !matches!(bucket, Some((a, _)) if *a == src) {
            *bucket = Some((src, fresh()));
        }
        match bucket {
            Some((_, t)) => t,
            None => unreachable!("filled just above"),
        }
    }

    /// Every source held, with its state.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (IpAddr, &T)> + '_ {
        self.buckets.iter().flatten().map(|(a, t)| (*a, t))
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_under_a_flood_of_sources() {
        let mut t: SourceTable<u32> = SourceTable::new(64, SipKey(1, 2));
        for i in 0..100_000u32 {
            *t.entry(IpAddr::from(i.to_be_bytes()), || 0) += 1;
        }
        assert_eq!(t.capacity(), 64);
        assert!(t.iter().count() <= 64);
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        *t.entry(a, || 5) += 1;
        assert_eq!(t.get(a), Some(&6));
    }
}
