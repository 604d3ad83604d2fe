//! Deterministic randomness and keyed hashing. The core gets its seed from the caller
//! (the runtime reads the OS entropy source; tests pass a constant), so every run of a
//! test is reproducible.

use std::hash::Hasher;

pub use siphasher::sip::SipHasher24;

/// SplitMix64: small, fast, good enough for port selection and jitter. Not used for
/// anything whose secrecy matters on its own; ISNs go through the keyed SipHash below.
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
