//! IP packets as the script runner sees them: built byte by byte for inbound lines and
//! parsed (every checksum verified) from what the system under test sends. This code is
//! independent of the stack's own `wire` module on purpose: a bug there must not hide
//! in both the packets a test sends and the way it reads the replies. TCP options keep
//! their order and padding, so a script can send any layout and see the exact one that
//! came back.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// A TCP option as it is on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    Nop,
    Eol,
    Mss(u16),
    WScale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Ts(u32, u32),
    Unknown { kind: u8, data: Vec<u8> },
}

impl Opt {
    pub fn is_padding(&self) -> bool {
        matches!(self, Opt::Nop | Opt::Eol)
    }
}

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Opt::Nop => f.write_str("nop"),
            Opt::Eol => f.write_str("eol"),
            Opt::Mss(m) => write!(f, "mss {m}"),
            Opt::WScale(s) => write!(f, "wscale {s}"),
            Opt::SackOk => f.write_str("sackOK"),
            Opt::Sack(b) => {
                f.write_str("sack")?;
                for (l, r) in b {
                    write!(f, " {l}:{r}")?;
                }
                Ok(())
            }
            Opt::Ts(v, e) => write!(f, "TS val {v} ecr {e}"),
            Opt::Unknown { kind, data } => write!(f, "kind {kind} len {}", data.len() + 2),
        }
    }
}

/// `<a,b,c>` (empty string for no options).
pub fn fmt_options(opts: &[Opt]) -> String {
    if opts.is_empty() {
        return String::new();
    }
    let mut s = String::from("<");
    for (i, o) in opts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{o}");
    }
    s.push('>');
    s
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// Flag bits as in the header (FIN 0x01 ... CWR 0x80).
    pub flags: u8,
    pub win: u16,
    pub urg: u16,
    pub options: Vec<Opt>,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Udp {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// An ICMP or ICMPv6 message; `rest` is the 4 bytes after the checksum (the MTU of a
/// "fragmentation needed" / "packet too big").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub ty: u8,
    pub code: u8,
    pub rest: u32,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Tcp(Tcp),
    Udp(Udp),
    Icmp(Icmp),
    Other(u8),
}

/// A parsed packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub body: Body,
}

// ---------------------------------------------------------------- checksums

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add((*last as u32) << 8);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut acc = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(&s.octets(), acc);
            acc = sum16(&d.octets(), acc);
            acc = acc.wrapping_add(proto as u32).wrapping_add(len as u32);
        }
        (s, d) => {
            acc = sum16(&v6(s), acc);
            acc = sum16(&v6(d), acc);
            acc = acc.wrapping_add((len as u32) >> 16).wrapping_add(len as u32 & 0xffff).wrapping_add(proto as u32);
        }
    }
    acc
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

// ---------------------------------------------------------------- building

/// IP header + `l4` (whose checksum field, at `csum_at`, is filled in here).
fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, mut l4: Vec<u8>, csum_at: Option<usize>) -> Vec<u8> {
    let ipv6 = src.is_ipv6();
    if let Some(at) = csum_at {
        // ICMPv4 has no pseudo-header.
        let acc = if proto == PROTO_ICMP { 0 } else { pseudo(src, dst, proto, l4.len()) };
        let c = fold(sum16(&l4, acc));
        let c = if c == 0 && proto == PROTO_UDP { 0xffff } else { c };
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = Vec::with_capacity(40 + l4.len());
    if ipv6 {
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.push(proto);
        p.push(64);
        p.extend_from_slice(&v6(src));
        p.extend_from_slice(&v6(dst));
    } else {
        let total = (20 + l4.len()) as u16;
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        let c = fold(sum16(&p[..20], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&l4);
    p
}

fn put_options(opts: &[Opt], out: &mut Vec<u8>) {
    for o in opts {
        match o {
            Opt::Nop => out.push(1),
            Opt::Eol => out.push(0),
            Opt::Mss(m) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&m.to_be_bytes());
            }
            Opt::WScale(s) => out.extend_from_slice(&[3, 3, *s]),
            Opt::SackOk => out.extend_from_slice(&[4, 2]),
            Opt::Sack(blocks) => {
                out.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                for (l, r) in blocks {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
            Opt::Ts(v, e) => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&v.to_be_bytes());
                out.extend_from_slice(&e.to_be_bytes());
            }
            Opt::Unknown { kind, data } => {
                out.extend_from_slice(&[*kind, (data.len() + 2) as u8]);
                out.extend_from_slice(data);
            }
        }
    }
}

/// The TCP header and payload alone (also what an ICMP error quotes).
pub fn tcp_bytes(t: &Tcp) -> Vec<u8> {
    let mut opts = Vec::new();
    put_options(&t.options, &mut opts);
    // Zero (EOL) padding to a 32-bit boundary.
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    let doff = (20 + opts.len()) / 4;
    let mut h = Vec::with_capacity(20 + opts.len() + t.payload.len());
    h.extend_from_slice(&t.src_port.to_be_bytes());
    h.extend_from_slice(&t.dst_port.to_be_bytes());
    h.extend_from_slice(&t.seq.to_be_bytes());
    h.extend_from_slice(&t.ack.to_be_bytes());
    h.push((doff as u8) << 4);
    h.push(t.flags);
    h.extend_from_slice(&t.win.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&t.urg.to_be_bytes());
    h.extend_from_slice(&opts);
    h.extend_from_slice(&t.payload);
    h
}

pub fn build_tcp(src: IpAddr, dst: IpAddr, t: &Tcp) -> Vec<u8> {
    ip_packet(src, dst, PROTO_TCP, tcp_bytes(t), Some(16))
}

pub fn udp_bytes(u: &Udp) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + u.payload.len());
    h.extend_from_slice(&u.src_port.to_be_bytes());
    h.extend_from_slice(&u.dst_port.to_be_bytes());
    h.extend_from_slice(&((8 + u.payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&u.payload);
    h
}

pub fn build_udp(src: IpAddr, dst: IpAddr, u: &Udp) -> Vec<u8> {
    ip_packet(src, dst, PROTO_UDP, udp_bytes(u), Some(6))
}

pub fn build_icmp(src: IpAddr, dst: IpAddr, m: &Icmp) -> Vec<u8> {
    let mut b = vec![m.ty, m.code, 0, 0];
    b.extend_from_slice(&m.rest.to_be_bytes());
    b.extend_from_slice(&m.body);
    let proto = if src.is_ipv6() { PROTO_ICMPV6 } else { PROTO_ICMP };
    ip_packet(src, dst, proto, b, Some(2))
}

/// An IP header + `l4` without touching `l4`'s checksum: the packet an ICMP error
/// quotes, as its sender had sent it.
pub fn quoted_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    ip_packet(src, dst, proto, l4, None)
}

// ---------------------------------------------------------------- parsing

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?]))
}

/// The IP header: (src, dst, protocol, transport bytes).
fn split_ip(b: &[u8], check: bool) -> Result<(IpAddr, IpAddr, u8, &[u8]), String> {
    match b.first().map(|v| v >> 4) {
        Some(4) => {
            let ihl = (b[0] & 0x0f) as usize * 4;
            if ihl < 20 || b.len() < ihl {
                return Err("truncated IPv4 header".into());
            }
            let total = be16(b, 2).unwrap_or(0) as usize;
            if check && total != b.len() {
                return Err(format!("IPv4 total length {total} but the packet has {} bytes", b.len()));
            }
            if check && fold(sum16(&b[..ihl], 0)) != 0 {
                return Err("bad IPv4 header checksum".into());
            }
            let frag = be16(b, 6).unwrap_or(0);
            if check && frag & 0x3fff != 0 {
                return Err("an IPv4 fragment".into());
            }
            let src = IpAddr::from([b[12], b[13], b[14], b[15]]);
            let dst = IpAddr::from([b[16], b[17], b[18], b[19]]);
            let end = total.clamp(ihl, b.len());
            Ok((src, dst, b[9], &b[ihl..end]))
        }
        Some(6) => {
            if b.len() < 40 {
                return Err("truncated IPv6 header".into());
            }
            let plen = be16(b, 4).unwrap_or(0) as usize;
            if check && plen + 40 != b.len() {
                return Err(format!("IPv6 payload length {plen} but the packet has {} bytes", b.len()));
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&b[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&b[24..40]);
            let end = (40 + plen).min(b.len());
            Ok((IpAddr::from(s), IpAddr::from(d), b[6], &b[40..end]))
        }
        _ => Err("not an IPv4 or IPv6 packet".into()),
    }
}

/// Parse a packet and verify its checksums (IPv4 header, TCP, UDP, ICMP).
pub fn parse(b: &[u8]) -> Result<Packet, String> {
    let (src, dst, proto, l4) = split_ip(b, true)?;
    let body = match proto {
        PROTO_TCP => {
            if fold(sum16(l4, pseudo(src, dst, PROTO_TCP, l4.len()))) != 0 {
                return Err("bad TCP checksum".into());
            }
            Body::Tcp(parse_tcp(l4)?)
        }
        PROTO_UDP => {
            if be16(l4, 6) != Some(0) && fold(sum16(l4, pseudo(src, dst, PROTO_UDP, l4.len()))) != 0 {
                return Err("bad UDP checksum".into());
            }
            Body::Udp(parse_udp(l4)?)
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let acc = if proto == PROTO_ICMP { 0 } else { pseudo(src, dst, proto, l4.len()) };
            if fold(sum16(l4, acc)) != 0 {
                return Err("bad ICMP checksum".into());
            }
            if l4.len() < 8 {
                return Err("truncated ICMP message".into());
            }
            Body::Icmp(Icmp { ty: l4[0], code: l4[1], rest: be32(l4, 4).unwrap_or(0), body: l4[8..].to_vec() })
        }
        p => Body::Other(p),
    };
    Ok(Packet { src, dst, body })
}

pub fn parse_tcp(l4: &[u8]) -> Result<Tcp, String> {
    if l4.len() < 20 {
        return Err("truncated TCP header".into());
    }
    let doff = (l4[12] >> 4) as usize * 4;
    if doff < 20 || doff > l4.len() {
        return Err(format!("bad TCP data offset {doff}"));
    }
    Ok(Tcp {
        src_port: be16(l4, 0).unwrap_or(0),
        dst_port: be16(l4, 2).unwrap_or(0),
        seq: be32(l4, 4).unwrap_or(0),
        ack: be32(l4, 8).unwrap_or(0),
        flags: l4[13],
        win: be16(l4, 14).unwrap_or(0),
        urg: be16(l4, 18).unwrap_or(0),
        options: parse_options(&l4[20..doff])?,
        payload: l4[doff..].to_vec(),
    })
}

fn parse_options(mut b: &[u8]) -> Result<Vec<Opt>, String> {
    let mut out = Vec::new();
    while let Some(&kind) = b.first() {
        match kind {
            0 => {
                out.push(Opt::Eol);
                b = &b[1..];
            }
            1 => {
                out.push(Opt::Nop);
                b = &b[1..];
            }
            _ => {
                let len = *b.get(1).ok_or("truncated TCP option")? as usize;
                if len < 2 || len > b.len() {
                    return Err(format!("bad length {len} of TCP option kind {kind}"));
                }
                let d = &b[2..len];
                out.push(match (kind, len) {
                    (2, 4) => Opt::Mss(be16(d, 0).unwrap_or(0)),
                    (3, 3) => Opt::WScale(d[0]),
                    (4, 2) => Opt::SackOk,
                    (5, l) if l >= 10 && (l - 2) % 8 == 0 => Opt::Sack(
                        d.chunks_exact(8).map(|c| (be32(c, 0).unwrap_or(0), be32(c, 4).unwrap_or(0))).collect(),
                    ),
                    (8, 10) => Opt::Ts(be32(d, 0).unwrap_or(0), be32(d, 4).unwrap_or(0)),
                    _ => Opt::Unknown { kind, data: d.to_vec() },
                });
                b = &b[len..];
            }
        }
    }
    Ok(out)
}

fn parse_udp(l4: &[u8]) -> Result<Udp, String> {
    if l4.len() < 8 {
        return Err("truncated UDP header".into());
    }
    let len = be16(l4, 4).unwrap_or(0) as usize;
    if len < 8 || len > l4.len() {
        return Err(format!("bad UDP length {len}"));
    }
    Ok(Udp { src_port: be16(l4, 0).unwrap_or(0), dst_port: be16(l4, 2).unwrap_or(0), payload: l4[8..len].to_vec() })
}

/// What an ICMP error quotes: the protocol, the ports, and for TCP the sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: Option<u32>,
}

pub fn parse_quote(body: &[u8]) -> Option<Quote> {
    let (src, dst, proto, l4) = split_ip(body, false).ok()?;
    Some(Quote {
        src,
        dst,
        proto,
        src_port: be16(l4, 0)?,
        dst_port: be16(l4, 2)?,
        seq: if proto == PROTO_TCP { be32(l4, 4) } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_roundtrip_v4_v6() {
        let t = Tcp {
            src_port: 1,
            dst_port: 2,
            seq: 3,
            ack: 4,
            flags: 0x12,
            win: 5,
            urg: 0,
            options: vec![Opt::Mss(1460), Opt::SackOk, Opt::Ts(1, 2), Opt::Nop, Opt::WScale(7)],
            payload: vec![9; 11],
        };
        for (s, d) in [
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
        ] {
            let p = build_tcp(s, d, &t);
            let back = parse(&p).unwrap();
            assert_eq!(back, Packet { src: s, dst: d, body: Body::Tcp(t.clone()) });
            let mut bad = p.clone();
            let n = bad.len() - 1;
            bad[n] ^= 1;
            assert!(parse(&bad).is_err());
        }
    }

    #[test]
    fn udp_and_icmp() {
        let s: IpAddr = "fd00::1".parse().unwrap();
        let d: IpAddr = "fd00::2".parse().unwrap();
        let u = Udp { src_port: 7, dst_port: 8, payload: vec![1, 2, 3] };
        assert_eq!(parse(&build_udp(s, d, &u)).unwrap().body, Body::Udp(u.clone()));
        let q = quoted_packet(d, s, PROTO_UDP, udp_bytes(&u));
        let m = Icmp { ty: 1, code: 4, rest: 0, body: q.clone() };
        let back = parse(&build_icmp(s, d, &m)).unwrap();
        assert_eq!(back.body, Body::Icmp(m));
        let quote = parse_quote(&q).unwrap();
        assert_eq!((quote.proto, quote.src_port, quote.dst_port), (PROTO_UDP, 7, 8));
    }

    #[test]
    fn garbage_is_an_error() {
        for b in [&[][..], &[0x45], &[0x60; 39], &[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]] {
            assert!(parse(b).is_err());
        }
    }
}

#[cfg(test)]
mod etherparse_check {
    use super::*;

    /// Our checksums against an independent implementation's.
    #[test]
    fn checksums_agree_with_etherparse() {
        let t = Tcp {
            src_port: 40000,
            dst_port: 8080,
            seq: 0,
            ack: 0,
            flags: 0x02,
            win: 32792,
            urg: 0,
            options: vec![Opt::Mss(1000), Opt::SackOk, Opt::Nop, Opt::Nop, Opt::Nop, Opt::WScale(7)],
            payload: vec![],
        };
        let p = build_tcp("192.0.2.1".parse().unwrap(), "192.168.0.1".parse().unwrap(), &t);
        let sliced = etherparse::SlicedPacket::from_ip(&p).unwrap();
        let Some(etherparse::NetSlice::Ipv4(v4)) = &sliced.net else { panic!() };
        assert_eq!(v4.header().header_checksum(), v4.header().to_header().calc_header_checksum());
        let Some(etherparse::TransportSlice::Tcp(tcp)) = &sliced.transport else { panic!() };
        assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4([192, 0, 2, 1], [192, 168, 0, 1]).unwrap());
    }
}
