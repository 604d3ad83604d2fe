//! Deterministic randomness and keyed hashing. The core gets its seed from the caller
//! (the runtime reads the OS entropy source; tests pass a constant), so every run of a
//! test is reproducible.

use std::hash::Hasher;

pub use siphasher::sip::SipHasher24;

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
/// 2014): one 64-bit word of state, small, fast, good enough for port selection, jitter
/// and the link model's decisions ([`crate::link`]); the one PRNG of the workspace (the
/// tests' simulator draws from it too). Not used for anything whose secrecy matters on
/// its own; ISNs go through the keyed SipHash below.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (n > 0), via Lemire's multiply-shift; the bias is below 2^-32.
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }

    /// A value in `0..n` (n > 0) over the whole `u64` range, by the same multiply-shift
    /// on 64 bits; the bias is below `n / 2^64`.
    pub fn below_u64(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "Rng::below_u64(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform draw in `[0, 1)` with 53 bits of precision (every value a multiple of
    /// 2^-53).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (clamped to 0..=1). Draws nothing when `p <= 0` (or is
    /// NaN), so a caller that turns one kind of decision off does not shift the sequence
    /// the others see.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Fill `buf` with pseudo-random bytes (eight per draw, little-endian).
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
    }
}

/// SipHash-2-4 with a 128-bit key: the keyed pseudo-random function F() of RFC 6528
/// section 3 and RFC 6056 algorithm 3, and the hasher of the stack's tables (so peers,
/// who choose their own ports, cannot aim at one bucket). The function itself comes
/// from the `siphasher` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipKey(pub u64, pub u64);

impl SipKey {
    pub fn from_rng(rng: &mut Rng) -> SipKey {
        SipKey(rng.next_u64(), rng.next_u64())
    }

    /// A streaming hasher under this key (for `HashMap`s: see `demux::KeyedState`).
    #[inline]
    pub fn hasher(&self) -> SipHasher24 {
        SipHasher24::new_with_keys(self.0, self.1)
    }

    /// SipHash-2-4 of `data`.
    pub fn hash(&self, data: &[u8]) -> u64 {
        let mut h = self.hasher();
        h.write(data);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vector() {
        // The reference implementation's test key 00..0f and message 00..0e (15 bytes)
        // gives 0xa129ca6149be45e5 (SipHash paper, appendix A).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(SipKey(k0, k1).hash(&msg), 0xa129_ca61_49be_45e5);
        // Fed in pieces, the streaming hasher gives the same.
        let mut s = SipKey(k0, k1).hasher();
        s.write(&msg[..3]);
        s.write(&msg[3..11]);
        s.write(&msg[11..]);
        assert_eq!(s.finish(), 0xa129_ca61_49be_45e5);
    }

    /// SplitMix64's published output for seed 0 (the first values of the reference
    /// implementation), so a change to the generator cannot go unnoticed.
    #[test]
    fn splitmix64_reference_values() {
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let (mut x, mut y, mut z) = (Rng::new(42), Rng::new(42), Rng::new(43));
        let xs: Vec<u64> = (0..1000).map(|_| x.next_u64()).collect();
        let ys: Vec<u64> = (0..1000).map(|_| y.next_u64()).collect();
        let zs: Vec<u64> = (0..1000).map(|_| z.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let (mut a, mut b) = ([0u8; 13], [0u8; 13]);
        Rng::new(7).fill(&mut a);
        Rng::new(7).fill(&mut b);
        assert_eq!(a, b);
        Rng::new(8).fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn below_u64_is_bounded_and_fair() {
        let mut rng = Rng::new(2024);
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            seen[rng.below_u64(10) as usize] += 1;
        }
        // 1000 expected each; the standard deviation is 30.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(rng.below_u64(1), 0);
        for _ in 0..1000 {
            assert!(rng.below_u64(u64::MAX) < u64::MAX);
            assert!(rng.below_u64(3) < 3);
        }
    }

    #[test]
    fn unit_and_chance() {
        let mut rng = Rng::new(99);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        let hits = (0..200_000).filter(|_| rng.chance(0.05)).count();
        // 10_000 expected; the standard deviation is about 97.
        assert!((9_500..10_500).contains(&hits), "5% of 200000 draws: {hits}");
        assert_eq!((0..1000).filter(|_| rng.chance(1.0)).count(), 1000);
        // Probability zero (or NaN) draws nothing: the stream is where it was.
        let mut other = rng.clone();
        assert!(!(0..1000).any(|_| rng.chance(0.0) || rng.chance(f64::NAN)));
        assert_eq!(rng.next_u64(), other.next_u64());
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.below(100);
            assert_eq!(x, b.below(100));
            assert!(x < 100);
        }
    }
}
