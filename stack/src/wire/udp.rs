//! UDP (RFC 768).

use std::net::IpAddr;

use super::checksum;
use super::{proto, DropReason};

/// A UDP datagram: ports and a borrowed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

pub const UDP_HEADER_LEN: usize = 8;

/// Byte offsets of the header fields (RFC 768).
mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A zero-copy view of a UDP datagram whose lengths have been checked: the header is
/// present and the length field lies within `[8, ip payload length]`. The view covers
/// exactly the bytes the length field claims.
#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    buf: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// `buf` is the whole IP payload. Bytes beyond the UDP length are ignored (RFC 768
    /// does not forbid them; the length field is authoritative).
    pub fn new_checked(buf: &'a [u8]) -> Result<UdpDatagram<'a>, DropReason> {
        if buf.len() < UDP_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let len = usize::from(be16(buf, field::LENGTH));
        if len < UDP_HEADER_LEN || len > buf.len() {
            return Err(DropReason::BadUdpHeader);
        }
        Ok(UdpDatagram { buf: &buf[..len] })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf, field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, field::DST_PORT)
    }
    /// The length field (header + payload).
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Never true: a checked datagram has at least its header.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf, field::CHECKSUM)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[UDP_HEADER_LEN..]
    }
    /// Checksum rule: over IPv4 a zero checksum means "none computed" (RFC 768); over
    /// IPv6 it is mandatory and zero is invalid (RFC 8200 8.1). Otherwise the sum over
    /// the pseudo-header (length = the UDP length field) and the datagram must verify.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let pseudo = checksum::pseudo_header(src, dst, proto::UDP, self.buf.len());
        checksum::verify(checksum::accumulate(pseudo, self.buf))
    }
}

/// Parse a UDP datagram (`buf` is the whole IP payload) carried between `src` and `dst`.
pub(crate) fn parse(buf: &[u8], src: IpAddr, dst: IpAddr, verify: bool) -> Result<UdpRepr<'_>, DropReason> {
    let dgram = UdpDatagram::new_checked(buf)?;
    if verify && !dgram.verify_checksum(src, dst) {
        return Err(DropReason::BadUdpChecksum);
    }
    Ok(UdpRepr { src_port: dgram.src_port(), dst_port: dgram.dst_port(), payload: dgram.payload() })
}

/// Emit `repr` into `buf` (exactly `8 + payload.len()` bytes) with its checksum.
pub(crate) fn emit(repr: &UdpRepr<'_>, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
    debug_assert_eq!(buf.len(), UDP_HEADER_LEN + repr.payload.len());
    let len = buf.len() as u16;
    buf[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&repr.src_port.to_be_bytes());
    buf[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&repr.dst_port.to_be_bytes());
    buf[field::LENGTH..field::LENGTH + 2].copy_from_slice(&len.to_be_bytes());
    buf[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
    buf[UDP_HEADER_LEN..].copy_from_slice(repr.payload);
    let pseudo = checksum::pseudo_header(src, dst, proto::UDP, buf.len());
    let mut sum = checksum::finish(checksum::accumulate(pseudo, buf));
    // RFC 768: a computed checksum of zero is transmitted as all ones (zero means "no
    // checksum" over IPv4 and is invalid over IPv6).
    if sum == 0 {
        sum = 0xFFFF;
    }
    buf[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

    fn datagram(repr: &UdpRepr<'_>, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut buf = vec![0u8; UDP_HEADER_LEN + repr.payload.len()];
        emit(repr, &mut buf, src, dst);
        buf
    }

    #[test]
    fn hand_built_datagram() {
        // DNS-like query from 5353 to 53, payload "abc", checksum computed by hand below.
        let mut d = [0x14, 0xe9, 0x00, 0x35, 0x00, 0x0b, 0, 0, b'a', b'b', b'c'];
        // Pseudo-header words: c000 0201 c000 0202 0011 000b; header 14e9 0035 000b;
        // data 6162 6300.
        let words: [u32; 10] = [0xc000, 0x0201, 0xc000, 0x0202, 0x0011, 0x000b, 0x14e9, 0x0035, 0x000b, 0x6162];
        let mut s: u32 = words.iter().sum::<u32>() + 0x6300;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        let c = !(s as u16);
        d[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&d, A4, B4, true), Ok(UdpRepr { src_port: 5353, dst_port: 53, payload: b"abc" }));
        assert_eq!(datagram(&UdpRepr { src_port: 5353, dst_port: 53, payload: b"abc" }, A4, B4), d);
    }

    #[test]
    fn length_rules() {
        let r = UdpRepr { src_port: 1, dst_port: 2, payload: b"payload" };
        let d = datagram(&r, A4, B4);
        assert_eq!(parse(&d[..7], A4, B4, true), Err(DropReason::Truncated));
        // Length field larger than the IP payload.
        assert_eq!(parse(&d[..d.len() - 1], A4, B4, true), Err(DropReason::BadUdpHeader));
        // Length field below 8.
        let mut bad = d.clone();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse(&bad, A4, B4, true), Err(DropReason::BadUdpHeader));
        // Trailing bytes beyond the UDP length are ignored.
        let mut padded = d.clone();
        padded.extend_from_slice(&[0xee; 5]);
        assert_eq!(parse(&padded, A4, B4, true), Ok(r));
    }

    #[test]
    fn zero_checksum_rules() {
        let r = UdpRepr { src_port: 7, dst_port: 9, payload: b"x" };
        let mut d = datagram(&r, A4, B4);
        d[6] = 0;
        d[7] = 0;
        // IPv4: zero means no checksum (RFC 768).
        assert_eq!(parse(&d, A4, B4, true), Ok(r));
        // IPv6: zero is invalid (RFC 8200 8.1).
        assert_eq!(parse(&d, A6, B6, true), Err(DropReason::BadUdpChecksum));
        let d6 = datagram(&r, A6, B6);
        assert_eq!(parse(&d6, A6, B6, true), Ok(r));
        let mut bad = d6.clone();
        bad[8] ^= 0x80;
        assert_eq!(parse(&bad, A6, B6, true), Err(DropReason::BadUdpChecksum));
    }

    #[test]
    fn computed_zero_sent_as_ones() {
        // Choose the payload so that the checksum computes to zero: with the checksum
        // field zero the sum must be 0xFFFF. Solve for one 16-bit payload word.
        let base = UdpRepr { src_port: 1000, dst_port: 2000, payload: &[0, 0] };
        let mut d = datagram(&base, A4, B4);
        d[6] = 0;
        d[7] = 0;
        let pseudo = checksum::pseudo_header(A4, B4, proto::UDP, d.len());
        let partial = checksum::fold(checksum::accumulate(pseudo, &d));
        // Need partial + w == 0xFFFF (ones' complement); w = 0xFFFF - partial.
        let w = 0xFFFF - partial;
        let payload = w.to_be_bytes();
        let r = UdpRepr { payload: &payload, ..base };
        let out = datagram(&r, A4, B4);
        assert_eq!(&out[6..8], &[0xff, 0xff]);
        assert_eq!(parse(&out, A4, B4, true), Ok(r));
    }
}
