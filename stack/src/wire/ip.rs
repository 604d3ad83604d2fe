//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{icmp, proto, tcp, udp};
use super::{DropReason, EmitError, IcmpRepr, Packet, Transport};

pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// The IP-layer facts the stack needs about a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol (IPv4 protocol / final IPv6 next header).
    pub protocol: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub hop_limit: u8,
    /// Length of the transport header + payload, as the IP header states it.
    pub payload_len: usize,
}

/// The largest value of the IPv4 total length and the IPv6 payload length fields (we
/// do not do IPv6 jumbograms, RFC 2675).
pub const MAX_LENGTH_FIELD: usize = 0xFFFF;

/// IPv6 next-header values for the extension headers we walk (RFC 8200 4).
pub mod ext_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DESTINATION_OPTIONS: u8 = 60;
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// IPv4 header field offsets (RFC 791 3.1).
mod v4_field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Write the header checksum of the IPv4 header `header` (all of it, options included):
/// computed with the field taken as zero (RFC 791 3.1).
pub fn write_v4_checksum(header: &mut [u8]) {
    let field = v4_field::CHECKSUM..v4_field::CHECKSUM + 2;
    header[field.clone()].fill(0);
    let sum = checksum::checksum(header);
    header[field].copy_from_slice(&sum.to_be_bytes());
}

/// "More fragments" flag and fragment offset mask in the flags/fragment word (RFC 791 3.1).
const V4_MF: u16 = 0x2000;
const V4_DF: u16 = 0x4000;
const V4_FRAG_OFFSET: u16 = 0x1FFF;

/// A zero-copy view of an IPv4 packet whose lengths have been checked: `buf` holds
/// exactly `total length` bytes, of which the first `IHL * 4` (at least 20) are the
/// header.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Length checks of RFC 791 3.1, in order: a 20-byte fixed header, IHL >= 5, the
    /// buffer holds IHL*4 bytes, total length >= IHL*4, the buffer holds total length
    /// bytes. The version nibble is the caller's business. Trailing bytes beyond the total
    /// length (link padding) are cut off.
    pub fn new_checked(buf: &'a [u8]) -> Result<Ipv4Packet<'a>, DropReason> {
        if buf.len() < IPV4_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let ihl = usize::from(buf[v4_field::VER_IHL] & 0x0F) * 4;
        if ihl < IPV4_HEADER_LEN {
            return Err(DropReason::BadIpHeader);
        }
        if buf.len() < ihl {
            return Err(DropReason::Truncated);
        }
        let total = usize::from(be16(buf, v4_field::TOTAL_LEN));
        if total < ihl {
            return Err(DropReason::BadIpHeader);
        }
        if buf.len() < total {
            return Err(DropReason::Truncated);
        }
        Ok(Ipv4Packet { buf: &buf[..total] })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buf[v4_field::VER_IHL] & 0x0F) * 4
    }
    pub fn total_len(&self) -> usize {
        self.buf.len()
    }
    pub fn more_fragments(&self) -> bool {
        be16(self.buf, v4_field::FLAGS_FRAG) & V4_MF != 0
    }
    pub fn dont_fragment(&self) -> bool {
        be16(self.buf, v4_field::FLAGS_FRAG) & V4_DF != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buf, v4_field::FLAGS_FRAG) & V4_FRAG_OFFSET
    }
    pub fn ttl(&self) -> u8 {
        self.buf[v4_field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.buf[v4_field::PROTOCOL]
    }
    pub fn src(&self) -> Ipv4Addr {
        let s = v4_field::SRC;
        Ipv4Addr::new(self.buf[s], self.buf[s + 1], self.buf[s + 2], self.buf[s + 3])
    }
    pub fn dst(&self) -> Ipv4Addr {
        let d = v4_field::DST;
        Ipv4Addr::new(self.buf[d], self.buf[d + 1], self.buf[d + 2], self.buf[d + 3])
    }
    /// The header checksum covers the header including options (RFC 791 3.1).
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::accumulate(0, &self.buf[..self.header_len()]))
    }
    /// The bytes after the header (options skipped) up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..]
    }
}

/// IPv6 header field offsets (RFC 8200 3).
mod v6_field {
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A zero-copy view of an IPv6 packet whose lengths have been checked: `buf` holds the
/// 40-byte header plus exactly `payload length` bytes.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// RFC 8200 3: a 40-byte header, and a payload length the buffer can hold. Trailing
    /// bytes beyond it are cut off.
    pub fn new_checked(buf: &'a [u8]) -> Result<Ipv6Packet<'a>, DropReason> {
        if buf.len() < IPV6_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let total = IPV6_HEADER_LEN + usize::from(be16(buf, v6_field::PAYLOAD_LEN));
        if buf.len() < total {
            return Err(DropReason::Truncated);
        }
        Ok(Ipv6Packet { buf: &buf[..total] })
    }

    pub fn next_header(&self) -> u8 {
        self.buf[v6_field::NEXT_HEADER]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf[v6_field::HOP_LIMIT]
    }
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[v6_field::SRC..v6_field::SRC + 16]);
        Ipv6Addr::from(a)
    }
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[v6_field::DST..v6_field::DST + 16]);
        Ipv6Addr::from(a)
    }
    /// The `payload length` bytes after the fixed header (extension headers included).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[IPV6_HEADER_LEN..]
    }

    /// Walk the extension headers (RFC 8200 4) and return the upper-layer protocol and
    /// its bytes.
    ///
    /// Hop-by-Hop (only allowed first, RFC 8200 4.3), Routing and Destination Options
    /// headers are skipped: each is (next header, length in 8-octet units not counting
    /// the first 8, data). A Routing header with Segments Left non-zero is rejected: we
    /// are not a router and know no routing type, and RFC 8200 4.4 says to discard such a
    /// packet. A Fragment header means a fragment (we do not reassemble). Fewer than 2
    /// bytes left for an extension header is `Truncated`; a length running past the
    /// payload is `BadIpHeader`.
    pub fn upper_layer(&self) -> Result<(u8, &'a [u8]), DropReason> {
        let mut next = self.next_header();
        let mut rest = self.payload();
        let mut first = true;
        loop {
            match next {
                ext_header::HOP_BY_HOP | ext_header::ROUTING | ext_header::DESTINATION_OPTIONS => {
                    if next == ext_header::HOP_BY_HOP && !first {
                        return Err(DropReason::BadIpHeader);
                    }
                    if rest.len() < 2 {
                        return Err(DropReason::Truncated);
                    }
                    let len = (usize::from(rest[1]) + 1) * 8;
                    if len > rest.len() {
                        return Err(DropReason::BadIpHeader);
                    }
                    // Routing header: routing type at byte 2, segments left at byte 3.
                    if next == ext_header::ROUTING && rest[3] != 0 {
                        return Err(DropReason::BadIpHeader);
                    }
                    next = rest[0];
                    rest = &rest[len..];
                }
                ext_header::FRAGMENT => return Err(DropReason::Fragment),
                _ => return Ok((next, rest)),
            }
            first = false;
        }
    }
}

/// RFC 1122 3.2.1.3 / RFC 6890: sources that can never be a unicast peer.
pub(crate) fn bad_source_v4(a: Ipv4Addr) -> bool {
    a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.is_loopback()
}

/// RFC 4291 2.5.2, 2.5.3, 2.7: unspecified, loopback and multicast are never a source
/// arriving from the wire.
pub(crate) fn bad_source_v6(a: Ipv6Addr) -> bool {
    a.is_multicast() || a.is_unspecified() || a.is_loopback()
}

pub(crate) fn parse_packet(buf: &[u8]) -> Result<Packet<'_>, DropReason> {
    parse_packet_with(buf, true)
}

/// [`parse_packet`]; without `verify_transport` the TCP and UDP checksums are taken as
/// verified (see `wire::parse_verified`).
pub(crate) fn parse_packet_with(buf: &[u8], verify_transport: bool) -> Result<Packet<'_>, DropReason> {
    let first = *buf.first().ok_or(DropReason::Truncated)?;
    match first >> 4 {
        4 => parse_v4(buf, verify_transport),
        6 => parse_v6(buf, verify_transport),
        _ => Err(DropReason::BadIpVersion),
    }
}

fn parse_v4(buf: &[u8], verify: bool) -> Result<Packet<'_>, DropReason> {
    let pkt = Ipv4Packet::new_checked(buf)?;
    if !pkt.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    if pkt.more_fragments() || pkt.frag_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let (src, dst) = (pkt.src(), pkt.dst());
    if bad_source_v4(src) {
        return Err(DropReason::BadSourceAddress);
    }
    let payload = pkt.payload();
    let (s, d) = (IpAddr::V4(src), IpAddr::V4(dst));
    let transport = match pkt.protocol() {
        proto::TCP => Transport::Tcp(tcp::parse(payload, s, d, verify)?),
        proto::UDP => Transport::Udp(udp::parse(payload, s, d, verify)?),
        proto::ICMP => Transport::Icmp(icmp::parse_v4(payload)?),
        _ => return Err(DropReason::UnknownProtocol),
    };
    let ip = IpHeader { src: s, dst: d, protocol: pkt.protocol(), hop_limit: pkt.ttl(), payload_len: payload.len() };
    Ok(Packet { ip, transport })
}

fn parse_v6(buf: &[u8], verify: bool) -> Result<Packet<'_>, DropReason> {
    let pkt = Ipv6Packet::new_checked(buf)?;
    let (src, dst) = (pkt.src(), pkt.dst());
    if bad_source_v6(src) {
        return Err(DropReason::BadSourceAddress);
    }
    let (protocol, payload) = pkt.upper_layer()?;
    let (s, d) = (IpAddr::V6(src), IpAddr::V6(dst));
    let transport = match protocol {
        proto::TCP => Transport::Tcp(tcp::parse(payload, s, d, verify)?),
        proto::UDP => Transport::Udp(udp::parse(payload, s, d, verify)?),
        proto::ICMPV6 => Transport::Icmp(icmp::parse_v6(payload, src, dst)?),
        // No Next Header (59), ICMPv4 over IPv6 and everything else.
        _ => return Err(DropReason::UnknownProtocol),
    };
    let ip = IpHeader { src: s, dst: d, protocol, hop_limit: pkt.hop_limit(), payload_len: payload.len() };
    Ok(Packet { ip, transport })
}

/// Length of the transport part when emitted.
fn transport_len(t: &Transport<'_>) -> usize {
    match t {
        Transport::Tcp(t) => t.header_len() + t.payload.len(),
        Transport::Udp(u) => udp::UDP_HEADER_LEN + u.payload.len(),
        Transport::Icmp(i) => i.buffer_len(),
    }
}

/// Emit a whole packet. IPv4 (RFC 791 3.1): version 4, IHL 5, TOS 0, identification 0
/// with DF set (RFC 6864 4.1 allows any ID, zero included, for atomic datagrams), TTL
/// `hop_limit`, header checksum. IPv6 (RFC 8200 3): traffic class 0, flow label 0, no
/// extension headers. An ICMPv4 message needs IPv4 addresses and an ICMPv6 message IPv6
/// ones (`AddressFamilyMismatch` otherwise).
pub(crate) fn emit_packet(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    transport: Transport<'_>,
) -> Result<usize, EmitError> {
    let v6 = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return Err(EmitError::AddressFamilyMismatch),
    };
    let protocol = match transport {
        Transport::Tcp(_) => proto::TCP,
        Transport::Udp(_) => proto::UDP,
        Transport::Icmp(IcmpRepr::V4(_)) if !v6 => proto::ICMP,
        Transport::Icmp(IcmpRepr::V6(_)) if v6 => proto::ICMPV6,
        Transport::Icmp(_) => return Err(EmitError::AddressFamilyMismatch),
    };
    let tlen = transport_len(&transport);
    let (header_len, total) = write_header(buf, src, dst, hop_limit, protocol, tlen)?;
    let rest = &mut buf[header_len..total];
    match &transport {
        Transport::Tcp(t) => tcp::emit(t, rest, src, dst),
        Transport::Udp(u) => udp::emit(u, rest, src, dst),
        Transport::Icmp(i) => icmp::emit(i, rest, src, dst),
    }
    Ok(total)
}

/// An IP+TCP packet whose payload (`payload_len` bytes) the caller already wrote at
/// `ip_header_len(dst) + tcp.header_len()`; `tcp.payload` is ignored.
pub(crate) fn emit_tcp_in_place(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    tcp: &crate::wire::TcpRepr<'_>,
    payload_len: usize,
) -> Result<usize, EmitError> {
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(EmitError::AddressFamilyMismatch);
    }
    let tlen = tcp.header_len() + payload_len;
    let (header_len, total) = write_header(buf, src, dst, hop_limit, proto::TCP, tlen)?;
    tcp::emit_in_place(tcp, &mut buf[header_len..total], src, dst);
    Ok(total)
}

/// Write the IPv4 or IPv6 header for a transport part of `tlen` bytes; returns the
/// header length and the packet length.
fn write_header(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    protocol: u8,
    tlen: usize,
) -> Result<(usize, usize), EmitError> {
    let v6 = src.is_ipv6();
    let header_len = if v6 { IPV6_HEADER_LEN } else { IPV4_HEADER_LEN };
    let total = header_len + tlen;
    let length_field = if v6 { tlen } else { total };
    if length_field > MAX_LENGTH_FIELD {
        return Err(EmitError::PacketTooLarge(total));
    }
    if buf.len() < total {
        return Err(EmitError::BufferTooSmall(total));
    }
    let header = &mut buf[..header_len];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            header[0] = 0x45;
            header[1] = 0;
            header[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            header[4..6].copy_from_slice(&[0, 0]);
            header[6..8].copy_from_slice(&V4_DF.to_be_bytes());
            header[v4_field::TTL] = hop_limit;
            header[v4_field::PROTOCOL] = protocol;
            header[12..16].copy_from_slice(&s.octets());
            header[16..20].copy_from_slice(&d.octets());
            write_v4_checksum(header);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            header[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            header[4..6].copy_from_slice(&(tlen as u16).to_be_bytes());
            header[v6_field::NEXT_HEADER] = protocol;
            header[v6_field::HOP_LIMIT] = hop_limit;
            header[8..24].copy_from_slice(&s.octets());
            header[24..40].copy_from_slice(&d.octets());
        }
        _ => return Err(EmitError::AddressFamilyMismatch),
    }
    Ok((header_len, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IcmpV4Message, UdpRepr};

    const S4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const D4: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
    const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
    const D6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

    fn udp_bytes(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let r = UdpRepr { src_port: 1111, dst_port: 2222, payload };
        let mut b = vec![0u8; 8 + payload.len()];
        udp::emit(&r, &mut b, src, dst);
        b
    }

    /// An IPv4 packet: `options` after the fixed header, `edit` applied before the
    /// checksum is computed (so header fields can be set to anything with a valid
    /// checksum).
    fn v4(src: Ipv4Addr, protocol: u8, options: &[u8], transport: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let ihl = 20 + options.len();
        let total = ihl + transport.len();
        let mut p = vec![0u8; total];
        p[0] = 0x40 | (ihl / 4) as u8;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 33;
        p[9] = protocol;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&D4.octets());
        p[20..ihl].copy_from_slice(options);
        p[ihl..].copy_from_slice(transport);
        edit(&mut p);
        let ihl = usize::from(p[0] & 0xF) * 4;
        let c = checksum::checksum(&p[..ihl.clamp(20, p.len())]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn v4_udp(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        v4(S4, proto::UDP, &[], &udp_bytes(S4.into(), D4.into(), b"data"), edit)
    }

    /// An IPv6 packet with next header `first` and `ext` (extension headers) in front of
    /// `transport`.
    fn v6(src: Ipv6Addr, first: u8, ext: &[u8], transport: &[u8]) -> Vec<u8> {
        let plen = ext.len() + transport.len();
        let mut p = vec![0u8; 40 + plen];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        p[6] = first;
        p[7] = 5;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&D6.octets());
        p[40..40 + ext.len()].copy_from_slice(ext);
        p[40 + ext.len()..].copy_from_slice(transport);
        p
    }

    fn v6_udp(src: Ipv6Addr, first: u8, ext: &[u8]) -> Vec<u8> {
        v6(src, first, ext, &udp_bytes(src.into(), D6.into(), b"six"))
    }

    fn err(p: &[u8]) -> DropReason {
        parse_packet(p).unwrap_err()
    }

    #[test]
    fn version_and_empty() {
        assert_eq!(err(&[]), DropReason::Truncated);
        assert_eq!(err(&[0x55; 40]), DropReason::BadIpVersion);
        assert_eq!(err(&[0x00]), DropReason::BadIpVersion);
        assert_eq!(err(&[0x45]), DropReason::Truncated);
        assert_eq!(err(&[0x60]), DropReason::Truncated);
    }

    #[test]
    fn v4_valid_udp() {
        let p = v4_udp(|_| {});
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(
            pkt.ip,
            IpHeader { src: S4.into(), dst: D4.into(), protocol: proto::UDP, hop_limit: 33, payload_len: 12 }
        );
        assert_eq!(pkt.transport, Transport::Udp(UdpRepr { src_port: 1111, dst_port: 2222, payload: b"data" }));
    }

    #[test]
    fn v4_options_skipped_and_padding_ignored() {
        // IHL 7: a NOP, a (made-up) 4-byte option, NOPs and EOL padding.
        let opts = [1, 0x88, 4, 0, 0, 1, 1, 0];
        let p = v4(S4, proto::UDP, &opts, &udp_bytes(S4.into(), D4.into(), b"opt"), |_| {});
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(pkt.ip.payload_len, 11);
        let mut padded = p.clone();
        padded.extend_from_slice(&[0xAB; 6]);
        assert_eq!(parse_packet(&padded), Ok(pkt));
    }

    #[test]
    fn v4_length_errors() {
        let p = v4_udp(|_| {});
        assert_eq!(err(&p[..19]), DropReason::Truncated);
        assert_eq!(err(&v4_udp(|p| p[0] = 0x44)), DropReason::BadIpHeader);
        // IHL 15 (60 bytes) but only 32 bytes present.
        assert_eq!(err(&v4_udp(|p| p[0] = 0x4F)), DropReason::Truncated);
        // Total length smaller than the header.
        assert_eq!(err(&v4_udp(|p| p[2..4].copy_from_slice(&19u16.to_be_bytes()))), DropReason::BadIpHeader);
        // Total length larger than the buffer.
        assert_eq!(err(&v4_udp(|p| p[2..4].copy_from_slice(&33u16.to_be_bytes()))), DropReason::Truncated);
        // Total length cutting into the UDP datagram: the UDP length no longer fits.
        assert_eq!(err(&v4_udp(|p| p[2..4].copy_from_slice(&31u16.to_be_bytes()))), DropReason::BadUdpHeader);
    }

    #[test]
    fn v4_checksum() {
        let mut p = v4_udp(|_| {});
        p[8] ^= 0x01; // TTL changed after the checksum was computed
        assert_eq!(err(&p), DropReason::BadIpChecksum);
    }

    #[test]
    fn v4_fragments() {
        assert_eq!(err(&v4_udp(|p| p[6] = 0x20)), DropReason::Fragment); // MF
        assert_eq!(err(&v4_udp(|p| p[7] = 0x01)), DropReason::Fragment); // offset 8
        assert_eq!(err(&v4_udp(|p| p[6] = 0x10)), DropReason::Fragment); // offset 4096*8
        assert!(parse_packet(&v4_udp(|p| p[6] = 0x40)).is_ok()); // DF alone is fine
    }

    #[test]
    fn v4_bad_sources() {
        for src in [
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(239, 255, 255, 250),
            Ipv4Addr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(127, 9, 9, 9),
        ] {
            let p = v4(src, proto::UDP, &[], &udp_bytes(src.into(), D4.into(), b"x"), |_| {});
            assert_eq!(err(&p), DropReason::BadSourceAddress, "{src}");
        }
    }

    #[test]
    fn v4_protocols() {
        assert_eq!(err(&v4(S4, 2, &[], &[0; 8], |_| {})), DropReason::UnknownProtocol);
        // An ICMPv6 echo over IPv4 is not ICMP.
        assert_eq!(
            err(&v4(S4, proto::ICMPV6, &[], &[128, 0, 0x7f, 0xff, 0, 0, 0, 0], |_| {})),
            DropReason::UnknownProtocol
        );
        // A valid ICMPv4 echo request.
        let mut echo = [8, 0, 0, 0, 0x12, 0x34, 0, 9, b'p', b'i', b'n', b'g'];
        let c = checksum::checksum(&echo);
        echo[2..4].copy_from_slice(&c.to_be_bytes());
        let p = v4(S4, proto::ICMP, &[], &echo, |_| {});
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(
            pkt.transport,
            Transport::Icmp(IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 0x1234, seq: 9, data: b"ping" }))
        );
    }

    #[test]
    fn v6_valid_and_extension_headers() {
        let p = v6_udp(S6, proto::UDP, &[]);
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(
            pkt.ip,
            IpHeader { src: S6.into(), dst: D6.into(), protocol: proto::UDP, hop_limit: 5, payload_len: 11 }
        );
        // Hop-by-hop (8 bytes: PadN), destination options (16 bytes), routing with
        // segments left 0 (8 bytes), then UDP.
        let mut ext = Vec::new();
        ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[proto::UDP, 0, 4, 0, 0, 0, 0, 0]);
        let p2 = v6_udp(S6, ext_header::HOP_BY_HOP, &ext);
        let pkt2 = parse_packet(&p2).unwrap();
        assert_eq!(pkt2.transport, pkt.transport);
        assert_eq!(pkt2.ip.payload_len, 11, "payload_len counts bytes after the extension headers");
        // Trailing bytes beyond the payload length are ignored.
        let mut padded = p2.clone();
        padded.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_packet(&padded), Ok(pkt2));
    }

    #[test]
    fn v6_errors() {
        let p = v6_udp(S6, proto::UDP, &[]);
        assert_eq!(err(&p[..39]), DropReason::Truncated);
        assert_eq!(err(&p[..p.len() - 1]), DropReason::Truncated);
        // Fragment header.
        assert_eq!(err(&v6_udp(S6, ext_header::FRAGMENT, &[proto::UDP, 0, 0, 1, 0, 0, 0, 1])), DropReason::Fragment);
        // No next header, an unknown protocol, ICMPv4 over IPv6.
        assert_eq!(err(&v6(S6, ext_header::NO_NEXT_HEADER, &[], &[])), DropReason::UnknownProtocol);
        assert_eq!(err(&v6(S6, 132, &[], &[0; 12])), DropReason::UnknownProtocol);
        assert_eq!(err(&v6(S6, proto::ICMP, &[], &[0; 8])), DropReason::UnknownProtocol);
        // Hop-by-hop after another extension header (RFC 8200 4.1).
        assert_eq!(
            err(&v6_udp(
                S6,
                ext_header::DESTINATION_OPTIONS,
                &[0, 0, 1, 4, 0, 0, 0, 0, proto::UDP, 0, 1, 4, 0, 0, 0, 0]
            )),
            DropReason::BadIpHeader
        );
        // Extension header length running past the payload.
        assert_eq!(
            err(&v6(S6, ext_header::DESTINATION_OPTIONS, &[proto::UDP, 3, 1, 4, 0, 0, 0, 0], &[])),
            DropReason::BadIpHeader
        );
        // Only one byte left for an extension header.
        assert_eq!(err(&v6(S6, ext_header::DESTINATION_OPTIONS, &[proto::UDP], &[])), DropReason::Truncated);
        // Routing header with segments left: not for us to process (RFC 8200 4.4).
        assert_eq!(err(&v6_udp(S6, ext_header::ROUTING, &[proto::UDP, 0, 0, 1, 0, 0, 0, 0])), DropReason::BadIpHeader);
    }

    #[test]
    fn v6_bad_sources() {
        for src in [Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)] {
            assert_eq!(err(&v6_udp(src, proto::UDP, &[])), DropReason::BadSourceAddress, "{src}");
        }
    }

    #[test]
    fn emit_v4_header_bytes() {
        let r = UdpRepr { src_port: 1, dst_port: 2, payload: &[9; 3] };
        let mut buf = [0u8; 64];
        let n = emit_packet(&mut buf, S4.into(), D4.into(), 64, Transport::Udp(r)).unwrap();
        assert_eq!(n, 31);
        assert_eq!(&buf[..10], &[0x45, 0, 0, 31, 0, 0, 0x40, 0, 64, 17]);
        assert_eq!(&buf[12..20], &[198, 51, 100, 7, 10, 1, 2, 3]);
        assert_eq!(checksum::checksum(&buf[..20]), 0);
        assert_eq!(parse_packet(&buf[..n]).unwrap().transport, Transport::Udp(r));
    }

    #[test]
    fn emit_v6_header_bytes() {
        let r = UdpRepr { src_port: 1, dst_port: 2, payload: &[] };
        let mut buf = [0u8; 48];
        let n = emit_packet(&mut buf, S6.into(), D6.into(), 255, Transport::Udp(r)).unwrap();
        assert_eq!(n, 48);
        assert_eq!(&buf[..8], &[0x60, 0, 0, 0, 0, 8, 17, 255]);
        assert_eq!(&buf[8..24], &S6.octets());
        assert_eq!(&buf[24..40], &D6.octets());
        let pkt = parse_packet(&buf).unwrap();
        assert_eq!(pkt.ip.hop_limit, 255);
    }

    #[test]
    fn emit_errors() {
        let r = UdpRepr { src_port: 1, dst_port: 2, payload: &[0; 10] };
        let mut buf = [0u8; 100];
        assert_eq!(
            emit_packet(&mut buf[..37], S4.into(), D4.into(), 64, Transport::Udp(r)),
            Err(EmitError::BufferTooSmall(38))
        );
        assert_eq!(
            emit_packet(&mut buf[..57], S6.into(), D6.into(), 64, Transport::Udp(r)),
            Err(EmitError::BufferTooSmall(58))
        );
        assert_eq!(
            emit_packet(&mut buf, S4.into(), D6.into(), 64, Transport::Udp(r)),
            Err(EmitError::AddressFamilyMismatch)
        );
        let echo = IcmpRepr::V4(IcmpV4Message::EchoReply { ident: 1, seq: 2, data: &[] });
        assert_eq!(
            emit_packet(&mut buf, S6.into(), D6.into(), 64, Transport::Icmp(echo)),
            Err(EmitError::AddressFamilyMismatch)
        );
        let big = [0u8; 65535 - 28 + 1];
        let r = UdpRepr { src_port: 1, dst_port: 2, payload: &big };
        let mut out = vec![0u8; 70000];
        assert_eq!(
            emit_packet(&mut out, S4.into(), D4.into(), 64, Transport::Udp(r)),
            Err(EmitError::PacketTooLarge(65536))
        );
        // The same payload fits IPv6 (the payload length excludes the fixed header).
        let n = emit_packet(&mut out, S6.into(), D6.into(), 64, Transport::Udp(r)).unwrap();
        assert_eq!(n, 40 + 65535 - 20 + 1);
        assert_eq!(parse_packet(&out[..n]).unwrap().ip.payload_len, 65516);
    }
}
