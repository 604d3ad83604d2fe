//! IP fragments: parsing a received fragment (IPv4, RFC 791 2.3 and 3.2; IPv6 Fragment
//! header, RFC 8200 4.5) for the stack's reassembly, rebuilding the reassembled
//! datagram's header, and cutting a packet we emitted into fragments.
//!
//! Nothing here allocates: a parsed [`Fragment`] borrows the received packet, and the
//! builders write into buffers the caller owns.

use std::net::IpAddr;

use super::ip::write_v4_checksum;
use super::ip::{ext_header, Ipv4Packet, Ipv6Packet, IPV4_HEADER_LEN, IPV6_HEADER_LEN, MAX_LENGTH_FIELD};
use super::DropReason;

/// Length of the IPv6 Fragment header (RFC 8200 4.5).
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// IPv4 flags/fragment-offset word (RFC 791 3.1).
const V4_MF: u16 = 0x2000;
const V4_OFFSET: u16 = 0x1FFF;

/// One received fragment, checked: its data lies within a 64 KiB datagram, and every
/// fragment but the last carries a multiple of 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Identification: 16 bits for IPv4 (RFC 791), 32 for IPv6 (RFC 8200 4.5).
    pub ident: u32,
    /// IPv4: the protocol field, part of the reassembly key (RFC 791 3.2). IPv6: the
    /// Fragment header's next header (the first header of the fragmentable part).
    pub protocol: u8,
    /// Where `data` starts in the datagram's payload (the fragmentable part), in bytes.
    pub offset: usize,
    /// More fragments follow (the MF flag, the M flag).
    pub more: bool,
    /// IPv4: the header, options included. IPv6: the fixed header and the extension
    /// headers before the Fragment header (the unfragmentable part).
    pub header: &'a [u8],
    /// IPv6: where in `header` the next-header field that names the Fragment header is
    /// (6, or the first byte of the last unfragmentable extension header). IPv4: 0.
    pub next_header_at: usize,
    /// The fragment's payload.
    pub data: &'a [u8],
}

impl Fragment<'_> {
    pub fn is_ipv6(&self) -> bool {
        self.dst.is_ipv6()
    }

    /// The end of this fragment's data in the datagram's payload.
    pub fn end(&self) -> usize {
        self.offset + self.data.len()
    }

    /// Offset 0 and no more fragments: an atomic fragment (RFC 6946), complete by
    /// itself.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// Parse a packet that [`super::parse`] reported as [`DropReason::Fragment`]. The IPv4
/// header checksum and the source address are checked again (cheap, and this function
/// stands on its own). The rules of RFC 8200 4.5, applied to IPv4 as well: a fragment
/// that is not the last must hold a non-zero multiple of 8 bytes, and no fragment may
/// reach beyond the largest datagram the length field can describe (a "ping of
/// death"); both are `FragmentMalformed`.
pub fn parse_fragment(buf: &[u8]) -> Result<Fragment<'_>, DropReason> {
    let first = *buf.first().ok_or(DropReason::Truncated)?;
    let frag = match first >> 4 {
        4 => parse_v4(buf)?,
        6 => parse_v6(buf)?,
        _ => return Err(DropReason::BadIpVersion),
    };
    if frag.more && (frag.data.is_empty() || !frag.data.len().is_multiple_of(8)) {
        return Err(DropReason::FragmentMalformed);
    }
    // IPv4: the total length counts the header (RFC 791 3.1); IPv6: the payload length
    // counts the unfragmentable extension headers (RFC 8200 4.5).
    let counted = if frag.is_ipv6() { frag.header.len() - IPV6_HEADER_LEN } else { frag.header.len() };
    if counted + frag.end() > MAX_LENGTH_FIELD {
        return Err(DropReason::FragmentMalformed);
    }
    Ok(frag)
}

fn parse_v4(buf: &[u8]) -> Result<Fragment<'_>, DropReason> {
    let pkt = Ipv4Packet::new_checked(buf)?;
    if !pkt.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    let src = pkt.src();
    if super::ip::bad_source_v4(src) {
        return Err(DropReason::BadSourceAddress);
    }
    let word = u16::from_be_bytes([buf[6], buf[7]]);
    let hl = pkt.header_len();
    Ok(Fragment {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(pkt.dst()),
        ident: u32::from(u16::from_be_bytes([buf[4], buf[5]])),
        protocol: pkt.protocol(),
        offset: usize::from(word & V4_OFFSET) * 8,
        more: word & V4_MF != 0,
        header: &buf[..hl],
        next_header_at: 0,
        data: pkt.payload(),
    })
}

fn parse_v6(buf: &[u8]) -> Result<Fragment<'_>, DropReason> {
    let pkt = Ipv6Packet::new_checked(buf)?;
    let src = pkt.src();
    if super::ip::bad_source_v6(src) {
        return Err(DropReason::BadSourceAddress);
    }
    // Walk the unfragmentable part (RFC 8200 4.1 order) to the Fragment header; the
    // same rules as `Ipv6Packet::upper_layer`.
    let whole = &buf[..IPV6_HEADER_LEN + pkt.payload().len()];
    let mut next = pkt.next_header();
    let mut at = IPV6_HEADER_LEN;
    let mut nh_at = 6;
    loop {
        match next {
            ext_header::HOP_BY_HOP | ext_header::ROUTING | ext_header::DESTINATION_OPTIONS => {
                if next == ext_header::HOP_BY_HOP && at != IPV6_HEADER_LEN {
                    return Err(DropReason::BadIpHeader);
                }
                let rest = &whole[at..];
                if rest.len() < 2 {
                    return Err(DropReason::Truncated);
                }
                let len = (usize::from(rest[1]) + 1) * 8;
                if len > rest.len() {
                    return Err(DropReason::BadIpHeader);
                }
                if next == ext_header::ROUTING && rest.len() >= 4 && rest[3] != 0 {
                    return Err(DropReason::BadIpHeader);
                }
                next = rest[0];
                nh_at = at;
                at += len;
            }
            ext_header::FRAGMENT => break,
            // Not a fragment after all (the caller asked wrongly).
            _ => return Err(DropReason::BadIpHeader),
        }
    }
    let fh = &whole[at..];
    if fh.len() < FRAGMENT_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let word = u16::from_be_bytes([fh[2], fh[3]]);
    Ok(Fragment {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(pkt.dst()),
        ident: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
        protocol: fh[0],
        // RFC 8200 4.5: the 13-bit offset in 8-octet units, two reserved bits, M.
        offset: usize::from(word >> 3) * 8,
        more: word & 1 != 0,
        header: &whole[..at],
        next_header_at: nh_at,
        data: &fh[FRAGMENT_HEADER_LEN..],
    })
}

/// Write the header of a datagram reassembled from fragments into
/// `out[..header.len()]`. `header`, `next_header_at` and `protocol` are those of its
/// first fragment ([`Fragment::header`] and so on). IPv4: MF and the offset cleared,
/// the total length and the checksum rewritten (RFC 791 3.2). IPv6: the Fragment header
/// is gone, its next header takes its place, the payload length is rewritten
/// (RFC 8200 4.5). The caller has checked the length fits (`parse_fragment`).
pub fn write_reassembled_header(
    header: &[u8],
    next_header_at: usize,
    protocol: u8,
    payload_len: usize,
    out: &mut [u8],
) {
    let out = &mut out[..header.len()];
    out.copy_from_slice(header);
    if header[0] >> 4 == 6 {
        out[next_header_at] = protocol;
        let plen = (header.len() - IPV6_HEADER_LEN + payload_len) as u16;
        out[4..6].copy_from_slice(&plen.to_be_bytes());
    } else {
        let total = (header.len() + payload_len) as u16;
        out[2..4].copy_from_slice(&total.to_be_bytes());
        // Keep DF (and the reserved bit) as they were; clear MF and the offset.
        let flags = u16::from_be_bytes([out[6], out[7]]) & !(V4_MF | V4_OFFSET);
        out[6..8].copy_from_slice(&flags.to_be_bytes());
        write_v4_checksum(out);
    }
}

/// Data bytes per fragment of a packet cut for a path MTU of `mtu`: what fits after
/// the IPv4 header (20 bytes, as we emit it) or the IPv6 header and Fragment header
/// (48 bytes), rounded down to a multiple of 8 (RFC 791 3.2, RFC 8200 4.5). At least 8.
pub fn fragment_data_len(v6: bool, mtu: usize) -> usize {
    let overhead = if v6 { IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN } else { IPV4_HEADER_LEN };
    (mtu.saturating_sub(overhead) / 8 * 8).max(8)
}

/// Write the fragment of `packet` whose data starts at `offset` of its payload into
/// `out`, and return the fragment's length and the next fragment's offset (`None`
/// after the last).
///
/// `packet` is a whole packet as the `emit_*` functions write it: IPv4 with a 20-byte
/// header, IPv6 with no extension headers. IPv4 (RFC 791 3.2): the header is copied
/// with the identification `ident` (its low 16 bits), MF on every fragment but the
/// last, the offset in 8-byte units, DF clear, a new total length and checksum. IPv6
/// (RFC 8200 4.5; we fragment only at the source, 5): the fixed header with next
/// header 44 and a new payload length, then a Fragment header carrying the original
/// next header, the offset, M and `ident`. `out` must hold `mtu` bytes; `offset` is a
/// multiple of 8 below the payload length.
pub fn write_fragment(packet: &[u8], offset: usize, mtu: usize, ident: u32, out: &mut [u8]) -> (usize, Option<usize>) {
    let v6 = packet[0] >> 4 == 6;
    let hl = if v6 { IPV6_HEADER_LEN } else { IPV4_HEADER_LEN };
    let payload = &packet[hl..];
    let chunk = fragment_data_len(v6, mtu).min(payload.len() - offset);
    let end = offset + chunk;
    let more = end < payload.len();
    let data = &payload[offset..end];
    let n = if v6 {
        out[..IPV6_HEADER_LEN].copy_from_slice(&packet[..IPV6_HEADER_LEN]);
        out[4..6].copy_from_slice(&((FRAGMENT_HEADER_LEN + chunk) as u16).to_be_bytes());
        out[6] = ext_header::FRAGMENT;
        let fh = &mut out[IPV6_HEADER_LEN..IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN];
        fh[0] = packet[6];
        fh[1] = 0;
        fh[2..4].copy_from_slice(&(((offset / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
        fh[4..8].copy_from_slice(&ident.to_be_bytes());
        let at = IPV6_HEADER_LEN + FRAGMENT_HEADER_LEN;
        out[at..at + chunk].copy_from_slice(data);
        at + chunk
    } else {
        out[..IPV4_HEADER_LEN].copy_from_slice(&packet[..IPV4_HEADER_LEN]);
        out[2..4].copy_from_slice(&((IPV4_HEADER_LEN + chunk) as u16).to_be_bytes());
        out[4..6].copy_from_slice(&(ident as u16).to_be_bytes());
        let word = (offset / 8) as u16 | if more { V4_MF } else { 0 };
        out[6..8].copy_from_slice(&word.to_be_bytes());
        write_v4_checksum(&mut out[..IPV4_HEADER_LEN]);
        out[IPV4_HEADER_LEN..IPV4_HEADER_LEN + chunk].copy_from_slice(data);
        IPV4_HEADER_LEN + chunk
    };
    (n, more.then_some(end))
}

/// Whether `packet` (one we emitted) is an IP fragment: IPv4 with MF or an offset,
/// IPv6 whose first next header is a Fragment header.
pub fn is_fragment(packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= IPV4_HEADER_LEN => {
            u16::from_be_bytes([packet[6], packet[7]]) & (V4_MF | V4_OFFSET) != 0
        }
        Some(6) if packet.len() >= IPV6_HEADER_LEN => packet[6] == ext_header::FRAGMENT,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, checksum, Transport, UdpRepr};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const S4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const D4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const S6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const D6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

    fn udp_packet(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
        let mut buf = vec![0u8; 48 + len + 8];
        let n = wire::emit_udp(&mut buf, src, dst, &UdpRepr { src_port: 1, dst_port: 2, payload: &payload }).unwrap();
        buf.truncate(n);
        buf
    }

    /// Cut, parse every piece, put the payload back together and rebuild the header:
    /// the original packet again, byte for byte.
    fn cut_and_rebuild(packet: &[u8], mtu: usize, ident: u32) -> Vec<Vec<u8>> {
        let mut frags = Vec::new();
        let mut off = Some(0);
        let mut out = vec![0u8; mtu];
        while let Some(o) = off {
            let (n, next) = write_fragment(packet, o, mtu, ident, &mut out);
            assert!(n <= mtu);
            frags.push(out[..n].to_vec());
            off = next;
        }
        let v6 = packet[0] >> 4 == 6;
        let hl = if v6 { 40 } else { 20 };
        let mut payload = vec![0u8; packet.len() - hl];
        let mut first = None;
        for (i, f) in frags.iter().enumerate() {
            assert!(is_fragment(f));
            assert_eq!(wire::parse(f), Err(DropReason::Fragment), "fragment {i}");
            let p = parse_fragment(f).unwrap();
            assert_eq!(p.ident, if v6 { ident } else { ident & 0xffff });
            assert_eq!(p.more, i + 1 < frags.len());
            assert_eq!(p.offset % 8, 0);
            payload[p.offset..p.end()].copy_from_slice(p.data);
            if p.offset == 0 {
                first = Some(f.clone());
            }
        }
        let first = first.unwrap();
        let pf = parse_fragment(&first).unwrap();
        let mut rebuilt = vec![0u8; pf.header.len()];
        write_reassembled_header(pf.header, pf.next_header_at, pf.protocol, payload.len(), &mut rebuilt);
        rebuilt.extend_from_slice(&payload);
        if v6 {
            assert_eq!(rebuilt, packet);
        } else {
            // Identification and the cleared DF differ; everything else is the original.
            assert_eq!(rebuilt[..4], packet[..4]);
            assert_eq!(rebuilt[8..10], packet[8..10]);
            assert_eq!(rebuilt[12..], packet[12..]);
            assert_eq!(checksum::checksum(&rebuilt[..20]), 0);
        }
        assert!(matches!(wire::parse(&rebuilt).unwrap().transport, Transport::Udp(_)));
        frags
    }

    #[test]
    fn v4_cut_and_rebuilt() {
        let p = udp_packet(S4, D4, 3000);
        let frags = cut_and_rebuild(&p, 1500, 0x1_2345);
        assert_eq!(frags.iter().map(Vec::len).collect::<Vec<_>>(), vec![1500, 1500, 68]);
        // RFC 791: MF on all but the last, offsets in 8-byte units (1480 / 8 = 185),
        // DF clear.
        assert_eq!(&frags[0][4..8], &[0x23, 0x45, 0x20, 0x00]);
        assert_eq!(&frags[1][4..8], &[0x23, 0x45, 0x20, 185]);
        assert_eq!(&frags[2][4..8], &[0x23, 0x45, 0x01, 0x72]);
        // The smallest MTU (68): 48 bytes of data per fragment.
        let frags = cut_and_rebuild(&udp_packet(S4, D4, 100), 68, 7);
        assert_eq!(frags.len(), 3);
    }

    #[test]
    fn v6_cut_and_rebuilt() {
        let p = udp_packet(S6, D6, 4000);
        let frags = cut_and_rebuild(&p, 1280, 0xdead_beef);
        // 1280 - 48 = 1232 bytes of data (a multiple of 8) per fragment.
        assert_eq!(frags.iter().map(Vec::len).collect::<Vec<_>>(), vec![1280, 1280, 1280, 48 + 4008 - 3 * 1232]);
        assert_eq!(frags[1][6], ext_header::FRAGMENT);
        // Offset 1232 bytes = 154 units, shifted left 3, M set: 0x04d1.
        assert_eq!(&frags[1][40..48], &[17, 0, 0x04, 0xd1, 0xde, 0xad, 0xbe, 0xef]);
    }

    fn v4_fragment(word: u16, data: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0xab, 0xcd, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        p[6..8].copy_from_slice(&word.to_be_bytes());
        let c = checksum::checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn malformed_fragments() {
        // Not a multiple of 8 with MF.
        assert_eq!(parse_fragment(&v4_fragment(0x2000, &[0; 12])), Err(DropReason::FragmentMalformed));
        // Empty with MF.
        assert_eq!(parse_fragment(&v4_fragment(0x2000, &[])), Err(DropReason::FragmentMalformed));
        // Beyond 65535: offset 8184 * 8 = 65472, + 20 + 48 > 65535.
        assert_eq!(parse_fragment(&v4_fragment(8184, &[0; 48])), Err(DropReason::FragmentMalformed));
        // Exactly reaching 65535 is fine: 65472 + 20 + 43.
        let last = v4_fragment(8184, &[0; 43]);
        let f = parse_fragment(&last).unwrap();
        assert_eq!((f.offset, f.end(), f.more, f.ident), (65472, 65515, false, 0xabcd));
        // The last fragment may have any length.
        assert!(parse_fragment(&v4_fragment(1, &[0; 5])).is_ok());
        // A bad header checksum.
        let mut bad = v4_fragment(1, &[0; 8]);
        bad[8] ^= 1;
        assert_eq!(parse_fragment(&bad), Err(DropReason::BadIpChecksum));
    }

    #[test]
    fn v6_fragment_after_extension_headers() {
        // Destination options (8 bytes) before the Fragment header: the unfragmentable
        // part is 48 bytes and the next-header field to patch is its first byte.
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = ext_header::DESTINATION_OPTIONS;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[ext_header::FRAGMENT, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 0, 0x00, 0x11, 0, 0, 0, 9]); // offset 16, M=1
        p.extend_from_slice(&[0xaa; 16]);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        let f = parse_fragment(&p).unwrap();
        assert_eq!((f.offset, f.more, f.ident, f.protocol), (16, true, 9, 17));
        assert_eq!((f.header.len(), f.next_header_at, f.data.len()), (48, 40, 16));
        let mut out = vec![0u8; 48];
        write_reassembled_header(f.header, f.next_header_at, f.protocol, 100, &mut out);
        assert_eq!(out[40], 17, "the destination options header now names UDP");
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 108);
    }
}
