//! The internet checksum (RFC 1071) and the pseudo-headers of RFC 9293 3.1 / RFC 8200 8.1.
//!
//! The checksum is the ones' complement of the ones' complement sum of the data taken as
//! big-endian 16-bit words (an odd trailing byte is padded with a zero byte). RFC 1071 2(B)
//! notes that the sum may be computed on wider words and folded at the end, because the
//! ones' complement sum is the sum modulo 0xFFFF: [`accumulate`] adds big-endian 32-bit
//! words into a `u64` (which cannot overflow for any buffer smaller than 16 GiB) and
//! [`fold`] reduces the accumulator to 16 bits with end-around carries.
//!
//! Usage: `let sum = pseudo_header(..) + accumulate(0, segment);`, then either write
//! `finish(sum)` into a zeroed checksum field (emission) or test `verify(sum)` over a
//! segment that carries its checksum (reception, RFC 1071 1(4)).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Add `data` to the running sum `acc`. Every slice but the last one of a checksummed
/// region must have an even length (the words must stay aligned).
///
/// The bulk of the data is summed as native-endian 32-bit words in four independent
/// accumulators (no byte swapping, room for instruction-level parallelism), folded, and
/// only then put in network byte order: RFC 1071 2(B), the sum is independent of byte
/// order up to a final swap.
#[inline]
pub fn accumulate(acc: u64, data: &[u8]) -> u64 {
    let (mut s0, mut s1, mut s2, mut s3) = (0u64, 0u64, 0u64, 0u64);
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        s0 += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
        s1 += u64::from(u32::from_ne_bytes([c[4], c[5], c[6], c[7]]));
        s2 += u64::from(u32::from_ne_bytes([c[8], c[9], c[10], c[11]]));
        s3 += u64::from(u32::from_ne_bytes([c[12], c[13], c[14], c[15]]));
    }
    // Four accumulators of at most 2^32 per 16 bytes cannot overflow below 2^36 bytes.
    let mut native = (s0 + s1) + (s2 + s3);
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        native += u64::from(u16::from_ne_bytes([w[0], w[1]]));
    }
    let mut sum = acc + u64::from(u16::from_be(fold(native)));
    if let [last] = words.remainder() {
        // RFC 1071 4.1: an odd byte is added as the high byte of a word padded with zero.
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Fold a wide accumulator to a 16-bit ones' complement sum (end-around carry). A non-zero
/// accumulator never folds to zero.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for a region whose sum (with the checksum field zero) is `acc`.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// True when a region that includes its checksum field sums to all ones (RFC 1071 1(4)).
#[inline]
pub fn verify(acc: u64) -> bool {
    fold(acc) == 0xFFFF
}

/// The internet checksum of `data` alone (as used by the IPv4 header and ICMPv4).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(accumulate(0, data))
}

/// Sum of the IPv4 pseudo-header (RFC 9293 3.1, RFC 768): source, destination, a zero
/// byte, the protocol and the transport length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    let s = u32::from_be_bytes(src.octets());
    let d = u32::from_be_bytes(dst.octets());
    u64::from(s) + u64::from(d) + u64::from(protocol) + u64::from(len)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 8.1): source, destination, 32-bit
/// upper-layer packet length, three zero bytes and the next header value.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    let s = src.octets();
    let d = dst.octets();
    accumulate(accumulate(u64::from(len) + u64::from(next_header), &s), &d)
}

/// Pseudo-header sum for either family. `len` is the transport length. A mixed pair of
/// families has no pseudo-header: it cannot occur (the parser reads both addresses from
/// one header and the emitter refuses mixed families), and for it this returns the sum of
/// the protocol and length alone rather than panicking.
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u64 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, protocol, len as u16),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, protocol, len as u32),
        _ => u64::from(protocol) + len as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward RFC 1071 reference: 16-bit words, fold after every addition.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u32::from(data[i]) << 8;
            let lo = data.get(i + 1).copied().map_or(0, u32::from);
            sum += hi | lo;
            sum = (sum & 0xFFFF) + (sum >> 16);
            i += 2;
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(accumulate(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example IPv4 header whose checksum is b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10] = 0xb8;
        hdr[11] = 0x61;
        assert!(verify(accumulate(0, &hdr)));
        hdr[15] ^= 1;
        assert!(!verify(accumulate(0, &hdr)));
    }

    #[test]
    fn odd_lengths_and_zero() {
        assert_eq!(checksum(&[]), 0xFFFF);
        assert_eq!(checksum(&[0xab]), !0xab00);
        assert_eq!(checksum(&[1, 2, 3]), reference(&[1, 2, 3]));
        // All-ones data: the sum is 0xFFFF, so the checksum is zero.
        assert_eq!(checksum(&[0xff; 64]), 0);
    }

    #[test]
    fn pseudo_header_v6_matches_bytes() {
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "fe80::abcd:1234".parse().unwrap();
        let mut bytes = [0u8; 40];
        bytes[..16].copy_from_slice(&s.octets());
        bytes[16..32].copy_from_slice(&d.octets());
        bytes[32..36].copy_from_slice(&70000u32.to_be_bytes());
        bytes[39] = 6;
        assert_eq!(fold(pseudo_header_v6(s, d, 6, 70000)), fold(accumulate(0, &bytes)));
    }

    #[test]
    fn pseudo_header_v4_matches_bytes() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let d = Ipv4Addr::new(192, 168, 255, 254);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&s.octets());
        bytes[4..8].copy_from_slice(&d.octets());
        bytes[9] = 17;
        bytes[10..].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(fold(pseudo_header_v4(s, d, 17, 1234)), fold(accumulate(0, &bytes)));
        assert_eq!(fold(pseudo_header(IpAddr::V4(s), IpAddr::V4(d), 17, 1234)), fold(accumulate(0, &bytes)));
    }

    proptest::proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            proptest::prop_assert_eq!(checksum(&data), reference(&data));
        }

        #[test]
        fn split_at_even_offset(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(data.len() & !1);
            let whole = fold(accumulate(0, &data));
            let parts = fold(accumulate(accumulate(0, &data[..cut]), &data[cut..]));
            proptest::prop_assert_eq!(whole, parts);
        }
    }
}
