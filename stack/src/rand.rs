//! Deterministic randomness and keyed hashing. The core gets its seed from the caller
//! (the runtime reads the OS entropy source; tests pass a constant), so every run of a
//! test is reproducible.

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
/// section 3 and RFC 6056 algorithm 3.
#[derive(Clone, Copy, Debug)]
pub struct SipKey(pub u64, pub u64);

impl SipKey {
    pub fn from_rng(rng: &mut Rng) -> SipKey {
        SipKey(rng.next_u64(), rng.next_u64())
    }

    pub fn hash(&self, data: &[u8]) -> u64 {
        let mut v0 = self.0 ^ 0x736f_6d65_7073_6575;
        let mut v1 = self.1 ^ 0x646f_7261_6e64_6f6d;
        let mut v2 = self.0 ^ 0x6c79_6765_6e65_7261;
        let mut v3 = self.1 ^ 0x7465_6462_7974_6573;

        #[inline(always)]
        fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
            *v0 = v0.wrapping_add(*v1);
            *v1 = v1.rotate_left(13) ^ *v0;
            *v0 = v0.rotate_left(32);
            *v2 = v2.wrapping_add(*v3);
            *v3 = v3.rotate_left(16) ^ *v2;
            *v0 = v0.wrapping_add(*v3);
            *v3 = v3.rotate_left(21) ^ *v0;
            *v2 = v2.wrapping_add(*v1);
            *v1 = v1.rotate_left(17) ^ *v2;
            *v2 = v2.rotate_left(32);
        }

        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let m = u64::from_le_bytes(c.try_into().unwrap());
            v3 ^= m;
            round(&mut v0, &mut v1, &mut v2, &mut v3);
            round(&mut v0, &mut v1, &mut v2, &mut v3);
            v0 ^= m;
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let m = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
        v2 ^= 0xff;
        for _ in 0..4 {
            round(&mut v0, &mut v1, &mut v2, &mut v3);
        }
        v0 ^ v1 ^ v2 ^ v3
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
