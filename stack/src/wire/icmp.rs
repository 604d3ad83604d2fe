//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip::{IPV4_HEADER_LEN, IPV6_HEADER_LEN};
use super::{proto, DropReason};
use crate::seq::SeqNum;

/// ICMPv4 messages we parse or emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpV4Message<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Type 3. `invoking` is the original IP header + at least 8 bytes of its payload.
    /// Code 4 (fragmentation needed) is [`IcmpV4Message::FragNeeded`].
    DestUnreachable {
        code: u8,
        invoking: &'a [u8],
    },
    /// Type 3 code 4, "fragmentation needed and DF set", with the next-hop MTU in the
    /// low 16 bits of the second header word (RFC 1191 4; 0 from routers that predate
    /// RFC 1191).
    FragNeeded {
        mtu: u16,
        invoking: &'a [u8],
    },
    /// Type 11 (RFC 792): code 0 TTL exceeded in transit, code 1 fragment reassembly
    /// time exceeded.
    TimeExceeded {
        code: u8,
        invoking: &'a [u8],
    },
    /// Anything else: type and code only, the body is not interpreted.
    Other {
        icmp_type: u8,
        code: u8,
    },
}

/// ICMPv6 messages we parse or emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpV6Message<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Type 1. `invoking` is as much of the original packet as fits the minimum MTU.
    DestUnreachable {
        code: u8,
        invoking: &'a [u8],
    },
    /// Type 2 (RFC 4443 3.2).
    PacketTooBig {
        mtu: u32,
        invoking: &'a [u8],
    },
    /// Type 3 (RFC 4443 3.3): code 0 hop limit exceeded in transit, code 1 fragment
    /// reassembly time exceeded.
    TimeExceeded {
        code: u8,
        invoking: &'a [u8],
    },
    /// Anything else (including neighbour discovery, which a TUN device does not need).
    Other {
        icmp_type: u8,
        code: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpRepr<'a> {
    V4(IcmpV4Message<'a>),
    V6(IcmpV6Message<'a>),
}

/// ICMPv4 destination-unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1).
pub mod v4_unreach {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (RFC 1191): parsed as `FragNeeded`.
    pub const FRAG_NEEDED: u8 = 4;
    pub const SOURCE_ROUTE_FAILED: u8 = 5;
    pub const NET_UNKNOWN: u8 = 6;
    pub const HOST_UNKNOWN: u8 = 7;
    pub const HOST_ISOLATED: u8 = 8;
    pub const NET_PROHIBITED: u8 = 9;
    pub const HOST_PROHIBITED: u8 = 10;
    pub const NET_TOS: u8 = 11;
    pub const HOST_TOS: u8 = 12;
    /// Communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
    pub const PRECEDENCE_VIOLATION: u8 = 14;
    pub const PRECEDENCE_CUTOFF: u8 = 15;
}
/// ICMPv6 destination-unreachable codes (RFC 4443 3.1).
pub mod v6_unreach {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const BEYOND_SCOPE: u8 = 2;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
    pub const POLICY_FAILED: u8 = 5;
    pub const REJECT_ROUTE: u8 = 6;
}
/// Time-exceeded codes, the same in ICMPv4 (RFC 792) and ICMPv6 (RFC 4443 3.3).
pub mod time_exceeded {
    /// TTL / hop limit exceeded in transit.
    pub const IN_TRANSIT: u8 = 0;
    /// Fragment reassembly time exceeded (RFC 792, RFC 8200 4.5).
    pub const REASSEMBLY: u8 = 1;
}

/// Every ICMP message starts with an 8-byte header: type, code, checksum and four
/// type-specific bytes (RFC 792, RFC 4443 2.1).
pub const ICMP_HEADER_LEN: usize = 8;

/// ICMPv4 message types (RFC 792).
pub mod v4_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// ICMPv6 message types (RFC 4443).
pub mod v6_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
}

/// Largest IPv4 datagram an ICMPv4 error may make: 576 bytes (RFC 1812 4.3.2.3).
pub const V4_ERROR_MAX: usize = 576;
/// Largest IPv6 packet an ICMPv6 error may make: the minimum MTU, 1280 bytes
/// (RFC 4443 2.4(c)).
pub const V6_ERROR_MAX: usize = 1280;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A zero-copy view of an ICMP message (either version) whose header is known to be
/// present.
#[derive(Clone, Copy, Debug)]
pub struct IcmpMessage<'a> {
    buf: &'a [u8],
}

impl<'a> IcmpMessage<'a> {
    /// `buf` is the whole IP payload. Fewer than 4 bytes cannot even hold type, code and
    /// checksum (`Truncated`); 4 to 7 bytes is a message without its 8-byte header
    /// (`BadIcmpHeader`).
    pub fn new_checked(buf: &'a [u8]) -> Result<IcmpMessage<'a>, DropReason> {
        if buf.len() < 4 {
            return Err(DropReason::Truncated);
        }
        if buf.len() < ICMP_HEADER_LEN {
            return Err(DropReason::BadIcmpHeader);
        }
        Ok(IcmpMessage { buf })
    }
    pub fn msg_type(&self) -> u8 {
        self.buf[0]
    }
    pub fn code(&self) -> u8 {
        self.buf[1]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf, 2)
    }
    /// Bytes 4..6 (echo identifier).
    pub fn word1(&self) -> u16 {
        be16(self.buf, 4)
    }
    /// Bytes 6..8 (echo sequence number).
    pub fn word2(&self) -> u16 {
        be16(self.buf, 6)
    }
    /// Bytes 4..8 as one value (ICMPv6 packet-too-big MTU).
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buf, 4)
    }
    /// Everything after the 8-byte header.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[ICMP_HEADER_LEN..]
    }
    /// ICMPv4: the checksum covers the message alone (RFC 792).
    pub fn verify_checksum_v4(&self) -> bool {
        checksum::verify(checksum::accumulate(0, self.buf))
    }
    /// ICMPv6: the checksum also covers the IPv6 pseudo-header (RFC 4443 2.3).
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let pseudo = checksum::pseudo_header_v6(src, dst, proto::ICMPV6, self.buf.len() as u32);
        checksum::verify(checksum::accumulate(pseudo, self.buf))
    }
}

/// Parse an ICMPv4 message (the whole IP payload).
pub(crate) fn parse_v4(buf: &[u8]) -> Result<IcmpRepr<'_>, DropReason> {
    let msg = IcmpMessage::new_checked(buf)?;
    if !msg.verify_checksum_v4() {
        return Err(DropReason::BadIcmpChecksum);
    }
    let m = match msg.msg_type() {
        v4_type::ECHO_REQUEST => IcmpV4Message::EchoRequest { ident: msg.word1(), seq: msg.word2(), data: msg.body() },
        v4_type::ECHO_REPLY => IcmpV4Message::EchoReply { ident: msg.word1(), seq: msg.word2(), data: msg.body() },
        v4_type::DEST_UNREACHABLE if msg.code() == v4_unreach::FRAG_NEEDED => {
            IcmpV4Message::FragNeeded { mtu: msg.word2(), invoking: msg.body() }
        }
        v4_type::DEST_UNREACHABLE => IcmpV4Message::DestUnreachable { code: msg.code(), invoking: msg.body() },
        v4_type::TIME_EXCEEDED => IcmpV4Message::TimeExceeded { code: msg.code(), invoking: msg.body() },
        t => IcmpV4Message::Other { icmp_type: t, code: msg.code() },
    };
    Ok(IcmpRepr::V4(m))
}

/// Parse an ICMPv6 message (the payload after all extension headers).
pub(crate) fn parse_v6(buf: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<IcmpRepr<'_>, DropReason> {
    let msg = IcmpMessage::new_checked(buf)?;
    if !msg.verify_checksum_v6(src, dst) {
        return Err(DropReason::BadIcmpChecksum);
    }
    let m = match msg.msg_type() {
        v6_type::ECHO_REQUEST => IcmpV6Message::EchoRequest { ident: msg.word1(), seq: msg.word2(), data: msg.body() },
        v6_type::ECHO_REPLY => IcmpV6Message::EchoReply { ident: msg.word1(), seq: msg.word2(), data: msg.body() },
        v6_type::DEST_UNREACHABLE => IcmpV6Message::DestUnreachable { code: msg.code(), invoking: msg.body() },
        v6_type::PACKET_TOO_BIG => IcmpV6Message::PacketTooBig { mtu: msg.rest_of_header(), invoking: msg.body() },
        v6_type::TIME_EXCEEDED => IcmpV6Message::TimeExceeded { code: msg.code(), invoking: msg.body() },
        t => IcmpV6Message::Other { icmp_type: t, code: msg.code() },
    };
    Ok(IcmpRepr::V6(m))
}

impl IcmpRepr<'_> {
    /// Bytes the message occupies when emitted.
    pub fn buffer_len(&self) -> usize {
        ICMP_HEADER_LEN
            + match *self {
                IcmpRepr::V4(m) => match m {
                    IcmpV4Message::EchoRequest { data, .. } | IcmpV4Message::EchoReply { data, .. } => data.len(),
                    IcmpV4Message::DestUnreachable { invoking, .. }
                    | IcmpV4Message::FragNeeded { invoking, .. }
                    | IcmpV4Message::TimeExceeded { invoking, .. } => invoking.len(),
                    IcmpV4Message::Other { .. } => 0,
                },
                IcmpRepr::V6(m) => match m {
                    IcmpV6Message::EchoRequest { data, .. } | IcmpV6Message::EchoReply { data, .. } => data.len(),
                    IcmpV6Message::DestUnreachable { invoking, .. }
                    | IcmpV6Message::PacketTooBig { invoking, .. }
                    | IcmpV6Message::TimeExceeded { invoking, .. } => invoking.len(),
                    IcmpV6Message::Other { .. } => 0,
                },
            }
    }
}

/// Emit `repr` into `buf` (exactly `repr.buffer_len()` bytes). For ICMPv6 the checksum
/// covers the pseudo-header of `src`/`dst`, which must then be IPv6 addresses (the IP
/// layer checks the family before calling).
pub(crate) fn emit(repr: &IcmpRepr<'_>, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
    debug_assert_eq!(buf.len(), repr.buffer_len());
    // (type, code, bytes 4..8, body)
    let (ty, code, rest, body): (u8, u8, [u8; 4], &[u8]) = match *repr {
        IcmpRepr::V4(m) => match m {
            IcmpV4Message::EchoRequest { ident, seq, data } => (v4_type::ECHO_REQUEST, 0, echo_words(ident, seq), data),
            IcmpV4Message::EchoReply { ident, seq, data } => (v4_type::ECHO_REPLY, 0, echo_words(ident, seq), data),
            // RFC 792: four unused bytes, then the internet header + 64 bits of data.
            IcmpV4Message::DestUnreachable { code, invoking } => (v4_type::DEST_UNREACHABLE, code, [0; 4], invoking),
            // RFC 1191 4: unused 16 bits, then the next-hop MTU.
            IcmpV4Message::FragNeeded { mtu, invoking } => {
                let m = mtu.to_be_bytes();
                (v4_type::DEST_UNREACHABLE, v4_unreach::FRAG_NEEDED, [0, 0, m[0], m[1]], invoking)
            }
            // RFC 792: four unused bytes, then the internet header + 64 bits of data.
            IcmpV4Message::TimeExceeded { code, invoking } => (v4_type::TIME_EXCEEDED, code, [0; 4], invoking),
            IcmpV4Message::Other { icmp_type, code } => (icmp_type, code, [0; 4], &[]),
        },
        IcmpRepr::V6(m) => match m {
            IcmpV6Message::EchoRequest { ident, seq, data } => (v6_type::ECHO_REQUEST, 0, echo_words(ident, seq), data),
            IcmpV6Message::EchoReply { ident, seq, data } => (v6_type::ECHO_REPLY, 0, echo_words(ident, seq), data),
            // RFC 4443 3.1: four unused bytes, then as much of the invoking packet as fits.
            IcmpV6Message::DestUnreachable { code, invoking } => (v6_type::DEST_UNREACHABLE, code, [0; 4], invoking),
            // RFC 4443 3.2: code 0, the MTU, then the invoking packet.
            IcmpV6Message::PacketTooBig { mtu, invoking } => (v6_type::PACKET_TOO_BIG, 0, mtu.to_be_bytes(), invoking),
            // RFC 4443 3.3: four unused bytes, then as much of the invoking packet as fits.
            IcmpV6Message::TimeExceeded { code, invoking } => (v6_type::TIME_EXCEEDED, code, [0; 4], invoking),
            IcmpV6Message::Other { icmp_type, code } => (icmp_type, code, [0; 4], &[]),
        },
    };
    buf[0] = ty;
    buf[1] = code;
    buf[2] = 0;
    buf[3] = 0;
    buf[4..8].copy_from_slice(&rest);
    buf[ICMP_HEADER_LEN..].copy_from_slice(body);
    let acc = match (repr, src, dst) {
        (IcmpRepr::V6(_), IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(s, d, proto::ICMPV6, buf.len() as u32)
        }
        _ => 0,
    };
    let sum = checksum::finish(checksum::accumulate(acc, buf));
    buf[2..4].copy_from_slice(&sum.to_be_bytes());
}

fn echo_words(ident: u16, seq: u16) -> [u8; 4] {
    let i = ident.to_be_bytes();
    let s = seq.to_be_bytes();
    [i[0], i[1], s[0], s[1]]
}

/// The prefix of an offending packet to quote in an ICMP error about it: as much as
/// keeps the error (our 20- or 40-byte IP header, the 8-byte ICMP header and the quote)
/// within 576 bytes for ICMPv4 (RFC 1812 4.3.2.3) or 1280 bytes for ICMPv6
/// (RFC 4443 2.4(c)).
pub fn error_quote(original: &[u8], v6: bool) -> &[u8] {
    let max = if v6 {
        V6_ERROR_MAX - IPV6_HEADER_LEN - ICMP_HEADER_LEN
    } else {
        V4_ERROR_MAX - IPV4_HEADER_LEN - ICMP_HEADER_LEN
    };
    &original[..original.len().min(max)]
}

/// What an ICMP error says about the packet that caused it: the addressing of one of
/// our own TCP or UDP packets, read from the quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedPacket {
    /// Source of the quoted packet (normally one of our addresses).
    pub src: IpAddr,
    /// Destination of the quoted packet (the peer).
    pub dst: IpAddr,
    /// `proto::TCP` or `proto::UDP`.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// For TCP, the quoted sequence number, so that the stack can check it lies within
    /// SND.UNA..SND.NXT before acting on the error (RFC 5927 4.1).
    pub tcp_seq: Option<SeqNum>,
}

/// Extract the addressing of the packet quoted in an ICMP error (`invoking`, as in
/// [`IcmpV4Message::DestUnreachable`] etc.). The quote is normally truncated, so no
/// checksum or total length is verified; the IP header must be complete and followed by
/// at least the first 8 transport bytes (RFC 792, RFC 4443 3.1). IPv6 extension headers
/// are skipped; a fragment that is not the first one carries no transport header.
/// Returns `None` for anything else, including protocols other than TCP and UDP.
pub fn parse_quoted(invoking: &[u8]) -> Option<QuotedPacket> {
    let first = *invoking.first()?;
    let (src, dst, protocol, transport) = match first >> 4 {
        4 => {
            if invoking.len() < IPV4_HEADER_LEN {
                return None;
            }
            let ihl = usize::from(first & 0x0F) * 4;
            if ihl < IPV4_HEADER_LEN || invoking.len() < ihl {
                return None;
            }
            if be16(invoking, 6) & 0x1FFF != 0 {
                return None; // not the first fragment
            }
            let src = Ipv4Addr::new(invoking[12], invoking[13], invoking[14], invoking[15]);
            let dst = Ipv4Addr::new(invoking[16], invoking[17], invoking[18], invoking[19]);
            (IpAddr::V4(src), IpAddr::V4(dst), invoking[9], &invoking[ihl..])
        }
        6 => {
            if invoking.len() < IPV6_HEADER_LEN {
                return None;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&invoking[8..24]);
            dst.copy_from_slice(&invoking[24..40]);
            let mut next = invoking[6];
            let mut rest = &invoking[IPV6_HEADER_LEN..];
            loop {
                match next {
                    // Hop-by-hop, routing, destination options (RFC 8200 4.3-4.6).
                    0 | 43 | 60 => {
                        if rest.len() < 2 {
                            return None;
                        }
                        let len = (usize::from(rest[1]) + 1) * 8;
                        if rest.len() < len {
                            return None;
                        }
                        next = rest[0];
                        rest = &rest[len..];
                    }
                    // Fragment header (RFC 8200 4.5): only the first fragment has ports.
                    44 => {
                        if rest.len() < 8 || be16(rest, 2) & 0xFFF8 != 0 {
                            return None;
                        }
                        next = rest[0];
                        rest = &rest[8..];
                    }
                    _ => break,
                }
            }
            (IpAddr::V6(Ipv6Addr::from(src)), IpAddr::V6(Ipv6Addr::from(dst)), next, rest)
        }
        _ => return None,
    };
    if (protocol != proto::TCP && protocol != proto::UDP) || transport.len() < 8 {
        return None;
    }
    Some(QuotedPacket {
        src,
        dst,
        protocol,
        src_port: be16(transport, 0),
        dst_port: be16(transport, 2),
        tcp_seq: (protocol == proto::TCP).then(|| SeqNum(be32(transport, 4))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
    const D6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

    fn with_v4_checksum(mut m: Vec<u8>) -> Vec<u8> {
        m[2] = 0;
        m[3] = 0;
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    fn with_v6_checksum(mut m: Vec<u8>) -> Vec<u8> {
        m[2] = 0;
        m[3] = 0;
        let pseudo = checksum::pseudo_header_v6(S6, D6, proto::ICMPV6, m.len() as u32);
        let c = checksum::finish(checksum::accumulate(pseudo, &m));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    fn emitted(repr: &IcmpRepr<'_>) -> Vec<u8> {
        let mut b = vec![0u8; repr.buffer_len()];
        emit(repr, &mut b, S6.into(), D6.into());
        b
    }

    #[test]
    fn v4_messages() {
        let m = with_v4_checksum(vec![8, 0, 0, 0, 0xab, 0xcd, 0x00, 0x02, 1, 2, 3]);
        let r = IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 0xabcd, seq: 2, data: &[1, 2, 3] });
        assert_eq!(parse_v4(&m), Ok(r));
        assert_eq!(emitted(&r), m);

        let m = with_v4_checksum(vec![0, 0, 0, 0, 0, 1, 0, 2]);
        let r = IcmpRepr::V4(IcmpV4Message::EchoReply { ident: 1, seq: 2, data: &[] });
        assert_eq!(parse_v4(&m), Ok(r));
        assert_eq!(emitted(&r), m);

        let m = with_v4_checksum(vec![3, 3, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 28]);
        let r = IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: 3, invoking: &[0x45, 0, 0, 28] });
        assert_eq!(parse_v4(&m), Ok(r));
        assert_eq!(emitted(&r), m);

        // RFC 1191 4: fragmentation needed, next-hop MTU 1400 (0x0578) in bytes 6..8.
        let m = with_v4_checksum(vec![3, 4, 0, 0, 0, 0, 0x05, 0x78, 0x45, 0, 0, 28]);
        let r = IcmpRepr::V4(IcmpV4Message::FragNeeded { mtu: 1400, invoking: &[0x45, 0, 0, 28] });
        assert_eq!(parse_v4(&m), Ok(r));
        assert_eq!(emitted(&r), m);

        // Time exceeded (RFC 792), code 1: fragment reassembly time exceeded.
        let m = with_v4_checksum(vec![11, 1, 0, 0, 0, 0, 0, 0, 0x45]);
        let r = IcmpRepr::V4(IcmpV4Message::TimeExceeded { code: 1, invoking: &[0x45] });
        assert_eq!(parse_v4(&m), Ok(r));
        assert_eq!(emitted(&r), m);

        // Redirect: body not interpreted; emitting Other gives an 8-byte message.
        let m = with_v4_checksum(vec![5, 0, 0, 0, 0, 0, 0, 0, 0x45]);
        let r = IcmpRepr::V4(IcmpV4Message::Other { icmp_type: 5, code: 0 });
        assert_eq!(parse_v4(&m), Ok(r));
        let e = emitted(&r);
        assert_eq!(e.len(), 8);
        assert_eq!(e, with_v4_checksum(m[..8].to_vec()));
        assert_eq!(parse_v4(&e), Ok(r));
    }

    #[test]
    fn v4_errors() {
        let m = with_v4_checksum(vec![8, 0, 0, 0, 0, 1, 0, 2, 9]);
        assert_eq!(parse_v4(&m[..3]), Err(DropReason::Truncated));
        assert_eq!(parse_v4(&[]), Err(DropReason::Truncated));
        let short = with_v4_checksum(vec![8, 0, 0, 0, 0, 1, 0]);
        assert_eq!(parse_v4(&short), Err(DropReason::BadIcmpHeader));
        let mut bad = m.clone();
        bad[8] ^= 0x40;
        assert_eq!(parse_v4(&bad), Err(DropReason::BadIcmpChecksum));
    }

    #[test]
    fn v6_messages() {
        let m = with_v6_checksum(vec![128, 0, 0, 0, 0, 7, 0, 8, b'x']);
        let r = IcmpRepr::V6(IcmpV6Message::EchoRequest { ident: 7, seq: 8, data: b"x" });
        assert_eq!(parse_v6(&m, S6, D6), Ok(r));
        assert_eq!(emitted(&r), m);

        let m = with_v6_checksum(vec![129, 0, 0, 0, 0, 7, 0, 8]);
        let r = IcmpRepr::V6(IcmpV6Message::EchoReply { ident: 7, seq: 8, data: &[] });
        assert_eq!(parse_v6(&m, S6, D6), Ok(r));

        let m = with_v6_checksum(vec![1, 4, 0, 0, 0, 0, 0, 0, 0x60, 0]);
        let r = IcmpRepr::V6(IcmpV6Message::DestUnreachable { code: 4, invoking: &[0x60, 0] });
        assert_eq!(parse_v6(&m, S6, D6), Ok(r));
        assert_eq!(emitted(&r), m);

        let m = with_v6_checksum(vec![2, 0, 0, 0, 0, 0, 0x05, 0x00, 0x60]);
        let r = IcmpRepr::V6(IcmpV6Message::PacketTooBig { mtu: 1280, invoking: &[0x60] });
        assert_eq!(parse_v6(&m, S6, D6), Ok(r));
        assert_eq!(emitted(&r), m);

        // RFC 4443 3.3: time exceeded, code 1.
        let m = with_v6_checksum(vec![3, 1, 0, 0, 0, 0, 0, 0, 0x60]);
        let r = IcmpRepr::V6(IcmpV6Message::TimeExceeded { code: 1, invoking: &[0x60] });
        assert_eq!(parse_v6(&m, S6, D6), Ok(r));
        assert_eq!(emitted(&r), m);

        // Neighbour solicitation: Other.
        let m = with_v6_checksum(vec![135, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_v6(&m, S6, D6), Ok(IcmpRepr::V6(IcmpV6Message::Other { icmp_type: 135, code: 0 })));
    }

    #[test]
    fn v6_checksum_covers_pseudo_header() {
        let m = with_v6_checksum(vec![128, 0, 0, 0, 0, 7, 0, 8]);
        assert!(parse_v6(&m, S6, D6).is_ok());
        // Same bytes, different destination: the pseudo-header no longer matches.
        assert_eq!(parse_v6(&m, S6, S6), Err(DropReason::BadIcmpChecksum));
        // And the v4 rule (no pseudo-header) does not accept it either.
        assert_eq!(parse_v4(&m), Err(DropReason::BadIcmpChecksum));
        assert_eq!(parse_v6(&m[..2], S6, D6), Err(DropReason::Truncated));
        assert_eq!(parse_v6(&m[..6], S6, D6), Err(DropReason::BadIcmpHeader));
    }

    #[test]
    fn error_quote_limits() {
        let big = [7u8; 3000];
        // 576 - 20 - 8 and 1280 - 40 - 8.
        assert_eq!(error_quote(&big, false).len(), 548);
        assert_eq!(error_quote(&big, true).len(), 1232);
        assert_eq!(error_quote(&big[..100], false), &big[..100]);
        assert_eq!(error_quote(&[], true), &[] as &[u8]);
    }

    fn quote_v4(protocol: u8, ihl_words: u8, frag: u16, transport: &[u8]) -> Vec<u8> {
        let ihl = usize::from(ihl_words) * 4;
        let mut q = vec![0u8; ihl];
        q[0] = 0x40 | ihl_words;
        q[2..4].copy_from_slice(&1500u16.to_be_bytes()); // the original length: not checked
        q[6..8].copy_from_slice(&frag.to_be_bytes());
        q[9] = protocol;
        q[12..16].copy_from_slice(&[10, 0, 0, 1]);
        q[16..20].copy_from_slice(&[93, 184, 216, 34]);
        q.extend_from_slice(transport);
        q
    }

    #[test]
    fn quoted_v4() {
        let tcp8 = [0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44];
        let q = quote_v4(proto::TCP, 5, 0x4000, &tcp8);
        let expect = QuotedPacket {
            src: Ipv4Addr::new(10, 0, 0, 1).into(),
            dst: Ipv4Addr::new(93, 184, 216, 34).into(),
            protocol: proto::TCP,
            src_port: 40000,
            dst_port: 80,
            tcp_seq: Some(SeqNum(0x11223344)),
        };
        assert_eq!(parse_quoted(&q), Some(expect));
        // More quoted bytes than 8 are fine.
        let mut longer = q.clone();
        longer.extend_from_slice(&[0; 30]);
        assert_eq!(parse_quoted(&longer), Some(expect));
        // UDP, with IP options (IHL 6).
        let q = quote_v4(proto::UDP, 6, 0, &[0, 53, 0xc3, 0x50, 0, 8, 0xff, 0xff]);
        let got = parse_quoted(&q).unwrap();
        assert_eq!((got.protocol, got.src_port, got.dst_port, got.tcp_seq), (proto::UDP, 53, 50000, None));
        // Too short, wrong protocol, non-first fragment, bad IHL.
        let q = quote_v4(proto::TCP, 5, 0, &tcp8);
        for cut in 0..q.len() {
            assert_eq!(parse_quoted(&q[..cut]), None, "cut {cut}");
        }
        assert_eq!(parse_quoted(&quote_v4(proto::ICMP, 5, 0, &tcp8)), None);
        assert_eq!(parse_quoted(&quote_v4(proto::TCP, 5, 0x0001, &tcp8)), None);
        let mut bad_ihl = q.clone();
        bad_ihl[0] = 0x43;
        assert_eq!(parse_quoted(&bad_ihl), None);
    }

    #[test]
    fn quoted_v6() {
        let mut q = vec![0u8; 40];
        q[0] = 0x60;
        q[6] = 60; // destination options first
        q[8..24].copy_from_slice(&S6.octets());
        q[24..40].copy_from_slice(&D6.octets());
        q.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // dest opts -> fragment
        q.extend_from_slice(&[proto::UDP, 0, 0, 1, 0, 0, 0, 9]); // fragment offset 0, M=1
        q.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 20, 0, 0]);
        let expect = QuotedPacket {
            src: S6.into(),
            dst: D6.into(),
            protocol: proto::UDP,
            src_port: 5000,
            dst_port: 53,
            tcp_seq: None,
        };
        assert_eq!(parse_quoted(&q), Some(expect));
        for cut in 0..q.len() {
            assert_eq!(parse_quoted(&q[..cut]), None, "cut {cut}");
        }
        // A non-first fragment has no transport header.
        let mut later = q.clone();
        later[50] = 0x01;
        assert_eq!(parse_quoted(&later), None);
        assert_eq!(parse_quoted(&[0x70; 60]), None);
    }
}
