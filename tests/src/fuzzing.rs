//! Entry points of the fuzz targets, shared by the cargo-fuzz crate (`../fuzz`, nightly)
//! and the stable replay test (`tests/fuzz_replay.rs`), plus the harness the property
//! tests (`tests/prop/`) drive.
//!
//! - [`parse`]: arbitrary bytes through `tunstack::wire::parse`. It must never panic, and
//!   whenever it accepts a packet two independent implementations must agree with it:
//!   etherparse 0.21 (slicing API: addresses, ports, lengths, options, where the payload
//!   starts) and smoltcp 0.14 (packet views and its checksum module). Every input is also
//!   parsed a second time with its checksums repaired, so that the fuzzer reaches what
//!   lies behind the checksum checks.
//! - [`ingress`]: a sequence of steps against a whole [`Stack`] that starts with
//!   listeners, bound UDP sockets and three established connections: raw packets,
//!   structured TCP segments toward known 4-tuples, API calls, time steps. After every
//!   step `Stack::check_invariants` must hold, and every packet the stack emits must be
//!   well formed (our parser and etherparse, checksums included). At the end everything
//!   is closed and time runs past every timer: no socket may be left (no leaks).
//! - [`tcp_segments`]: one established connection hit by segments with valid checksums
//!   whose sequence and acknowledgment numbers sit near the connection's real window
//!   edges (`Stack::tcp_info`), every flag combination, odd option lists, payload sizes
//!   around the window; interleaved with application reads and writes and timer steps.
//! - [`offload`]: a virtio-net header and packet through the TUN offload device's edge
//!   (`tunstack::runtime::device::offload`): cutting super-segments and completing
//!   checksums must never panic nor emit more than the MTU; what is cut carries valid
//!   checksums, and coalescing the result and cutting it again gives it back unchanged.
//!
//! Input formats are read byte by byte through [`Reader`] (on top of
//! `arbitrary::Unstructured`), so that the seed corpus (see [`seeds`]) can be written
//! down exactly and a fuzzer's mutations stay local. An exhausted input reads as zeros.

use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use tunstack::seq::SeqNum;
use tunstack::wire::{self, IcmpRepr, IcmpV4Message, IcmpV6Message, TcpFlags, TcpOptions, TcpRepr, Transport, UdpRepr};
use tunstack::{AnyHandle, Config, Instant, ListenerHandle, Owner, Stack, TcpHandle, TcpState};

// ============================================================================ input reader

/// Reads a fuzz input as a stream of small values. Past the end every read is zero, so
/// any input decodes to something.
pub struct Reader<'a> {
    u: Unstructured<'a>,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { u: Unstructured::new(data) }
    }
    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        self.u.arbitrary::<u8>().unwrap_or(0)
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// Big-endian, like the wire (so a dictionary entry such as `"\x00\x50"` is port 80).
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes (fewer when the input runs out).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.u.len());
        self.u.bytes(n).unwrap_or(&[])
    }
    /// A small signed offset: one byte, `0x00..=0x7f` -> 0, `0x80..=0xbf` -> -32..=31,
    /// `0xc0..` -> a following big-endian i16.
    pub fn delta(&mut self) -> i32 {
        let b = self.u8();
        if b & 0x80 == 0 {
            0
        } else if b & 0x40 == 0 {
            i32::from(b & 0x3f) - 32
        } else {
            i32::from(self.u16() as i16)
        }
    }
    /// For `derive(Arbitrary)` types.
    pub fn unstructured(&mut self) -> &mut Unstructured<'a> {
        &mut self.u
    }
}

/// The byte-level encoder matching [`Reader`], used to write the seed corpus.
#[derive(Default)]
pub struct Writer {
    pub out: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }
    /// Encodes a zero delta.
    pub fn no_delta(&mut self) -> &mut Self {
        self.u8(0)
    }
}

// ============================================================================ checksums

/// RFC 1071 one's-complement sum of `data` added to `acc` (the harness's own, small and
/// independent of the stack's).
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut acc = sum16(sum16(0, src), dst);
    acc = sum16(acc, &[0, proto]);
    sum16(acc, &(len as u32).to_be_bytes())
}

/// Two checksum field values that mean the same in one's-complement arithmetic (0x0000
/// and 0xffff are both zero): RFC 1071 verification accepts either.
fn ones_eq(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

/// Repair the checksums of a packet in place, as far as its headers can be located:
/// IPv4 header, then TCP, UDP (over its length field), ICMP or ICMPv6, walking IPv6
/// hop-by-hop, routing and destination-options headers. Anything else is left as is.
pub fn fix_checksums(pkt: &mut [u8]) {
    let Some(&first) = pkt.first() else { return };
    match first >> 4 {
        4 => {
            if pkt.len() < 20 {
                return;
            }
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl {
                return;
            }
            pkt[10..12].copy_from_slice(&[0, 0]);
            let c = !(sum16(0, &pkt[..ihl]) as u16);
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
            if total < ihl {
                return;
            }
            let (src, dst) = ([pkt[12], pkt[13], pkt[14], pkt[15]], [pkt[16], pkt[17], pkt[18], pkt[19]]);
            let proto = pkt[9];
            fix_transport(proto, &src, &dst, &mut pkt[ihl..total]);
        }
        6 => {
            if pkt.len() < 40 {
                return;
            }
            let end = (40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]))).min(pkt.len());
            let mut next = pkt[6];
            let mut at = 40;
            // Bounded: each header is at least 8 bytes.
            while matches!(next, 0 | 43 | 60) && at + 2 <= end {
                let len = (usize::from(pkt[at + 1]) + 1) * 8;
                next = pkt[at];
                at += len;
            }
            if at > end {
                return;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&pkt[8..24]);
            dst.copy_from_slice(&pkt[24..40]);
            fix_transport(next, &src, &dst, &mut pkt[at..end]);
        }
        _ => {}
    }
}

fn fix_transport(proto: u8, src: &[u8], dst: &[u8], t: &mut [u8]) {
    let v6 = src.len() == 16;
    match proto {
        6 if t.len() >= 20 => {
            t[16..18].copy_from_slice(&[0, 0]);
            let c = !(sum16(pseudo_sum(src, dst, 6, t.len()), t) as u16);
            t[16..18].copy_from_slice(&c.to_be_bytes());
        }
        17 if t.len() >= 8 => {
            let ulen = usize::from(u16::from_be_bytes([t[4], t[5]]));
            let n = if (8..=t.len()).contains(&ulen) { ulen } else { t.len() };
            let t = &mut t[..n];
            t[6..8].copy_from_slice(&[0, 0]);
            let mut c = !(sum16(pseudo_sum(src, dst, 17, n), t) as u16);
            if c == 0 {
                c = 0xffff; // RFC 768: zero is "no checksum"
            }
            t[6..8].copy_from_slice(&c.to_be_bytes());
        }
        1 if !v6 && t.len() >= 4 => {
            t[2..4].copy_from_slice(&[0, 0]);
            let c = !(sum16(0, t) as u16);
            t[2..4].copy_from_slice(&c.to_be_bytes());
        }
        58 if v6 && t.len() >= 4 => {
            t[2..4].copy_from_slice(&[0, 0]);
            let c = !(sum16(pseudo_sum(src, dst, 58, t.len()), t) as u16);
            t[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

// ============================================================================ parse

/// Fuzz entry: arbitrary bytes through `tunstack::wire::parse`, checked against etherparse
/// and smoltcp whenever it accepts; then the same with the checksums repaired.
pub fn parse(data: &[u8]) {
    check_parse(data);
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed);
    if fixed != data {
        check_parse(&fixed);
    }
}

fn offset_in(base: &[u8], part: &[u8]) -> usize {
    let off = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    assert!(off + part.len() <= base.len(), "slice not inside the packet");
    off
}

/// Parse with ours; when accepted, cross-check with etherparse and smoltcp. Returns
/// whether ours accepted.
pub fn check_parse(data: &[u8]) -> bool {
    let Ok(p) = wire::parse(data) else { return false };
    let (src, dst) = (p.ip.src, p.ip.dst);
    assert_eq!(src.is_ipv4(), dst.is_ipv4(), "mixed address families");
    let what = || format!("{data:02x?}\nours: {p:?}");

    // ---- etherparse: the IP layer
    let (ether_src, ether_dst, ip_number, transport, hop) = match data[0] >> 4 {
        4 => {
            let s = etherparse::Ipv4Slice::from_slice(data)
                .unwrap_or_else(|e| panic!("etherparse rejects an IPv4 packet ours accepts: {e:?}\n{}", what()));
            let h = s.header();
            assert!(!s.is_payload_fragmented(), "ours accepted a fragment\n{}", what());
            // Validity over the raw header bytes. (Ipv4Header::calc_header_checksum would
            // drop the reserved flag bit, which the header checksum does cover.)
            let sum = etherparse::checksum::Sum16BitWords::new().add_slice(h.slice()).ones_complement();
            assert_eq!(sum, 0, "IPv4 header checksum does not verify by etherparse\n{}", what());
            assert_eq!(usize::from(h.total_len()), h.slice().len() + p.ip.payload_len, "IPv4 lengths\n{}", what());
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                s.payload().ip_number.0,
                s.payload().payload,
                h.ttl(),
            )
        }
        6 => {
            let s = etherparse::Ipv6Slice::from_slice(data)
                .unwrap_or_else(|e| panic!("etherparse rejects an IPv6 packet ours accepts: {e:?}\n{}", what()));
            assert!(!s.is_payload_fragmented(), "ours accepted a fragment\n{}", what());
            let h = s.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                s.payload().ip_number.0,
                s.payload().payload,
                h.hop_limit(),
            )
        }
        v => panic!("ours accepted IP version {v}\n{}", what()),
    };
    assert_eq!((ether_src, ether_dst), (src, dst), "addresses\n{}", what());
    assert_eq!(ip_number, p.ip.protocol, "protocol\n{}", what());
    assert_eq!(hop, p.ip.hop_limit, "TTL / hop limit\n{}", what());
    assert_eq!(transport.len(), p.ip.payload_len, "transport length\n{}", what());

    // ---- smoltcp: the IP layer
    let (s_src, s_dst) = (smoltcp::wire::IpAddress::from(src), smoltcp::wire::IpAddress::from(dst));
    if src.is_ipv4() {
        let v4 = smoltcp::wire::Ipv4Packet::new_checked(data)
            .unwrap_or_else(|e| panic!("smoltcp rejects an IPv4 packet ours accepts: {e:?}\n{}", what()));
        assert_eq!(IpAddr::V4(v4.src_addr()), src);
        assert_eq!(IpAddr::V4(v4.dst_addr()), dst);
        assert_eq!(u8::from(v4.next_header()), p.ip.protocol);
        assert_eq!(usize::from(v4.total_len()), usize::from(v4.header_len()) + transport.len());
        let header = &data[..usize::from(v4.header_len())];
        assert_eq!(smoltcp::wire::checksum::data(header), !0, "IPv4 header checksum by smoltcp\n{}", what());
    } else {
        let v6 = smoltcp::wire::Ipv6Packet::new_checked(data)
            .unwrap_or_else(|e| panic!("smoltcp rejects an IPv6 packet ours accepts: {e:?}\n{}", what()));
        assert_eq!(IpAddr::V6(v6.src_addr()), src);
        assert_eq!(IpAddr::V6(v6.dst_addr()), dst);
        assert_eq!(v6.hop_limit(), p.ip.hop_limit);
        assert!(v6.total_len() <= data.len());
    }
    let smol_sum = |proto: smoltcp::wire::IpProtocol, bytes: &[u8]| {
        use smoltcp::wire::checksum;
        checksum::combine(&[checksum::pseudo_header(&s_src, &s_dst, proto, bytes.len() as u32), checksum::data(bytes)])
    };

    // ---- the transport layer
    match p.transport {
        Transport::Tcp(t) => {
            assert_eq!(p.ip.protocol, wire::proto::TCP);
            let e = etherparse::TcpSlice::from_slice(transport)
                .unwrap_or_else(|err| panic!("etherparse rejects a TCP segment ours accepts: {err:?}\n{}", what()));
            assert_eq!((e.source_port(), e.destination_port()), (t.src_port, t.dst_port), "TCP ports\n{}", what());
            assert_eq!((e.sequence_number(), e.acknowledgment_number()), (t.seq.0, t.ack.0), "TCP seq/ack\n{}", what());
            let flags = [e.fin(), e.syn(), e.rst(), e.psh(), e.ack(), e.urg(), e.ece(), e.cwr()]
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, b)| acc | (u8::from(*b) << i));
            assert_eq!(flags, t.flags.0, "TCP flags\n{}", what());
            assert_eq!((e.window_size(), e.urgent_pointer()), (t.window, t.urgent), "TCP window/urgent\n{}", what());
            assert_eq!(offset_in(data, e.payload()), offset_in(data, t.payload), "TCP payload offset\n{}", what());
            assert_eq!(e.payload().len(), t.payload.len(), "TCP payload length\n{}", what());
            let want = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => e.calc_checksum_ipv4(s.octets(), d.octets()),
                (IpAddr::V6(s), IpAddr::V6(d)) => e.calc_checksum_ipv6(s.octets(), d.octets()),
                _ => unreachable!(),
            }
            .expect("a TCP length that fits its IP packet");
            assert!(
                ones_eq(e.checksum(), want),
                "TCP checksum {:#06x}, etherparse computes {want:#06x}\n{}",
                e.checksum(),
                what()
            );
            assert_eq!(smol_sum(smoltcp::wire::IpProtocol::Tcp, transport), !0, "TCP checksum by smoltcp\n{}", what());
            compare_tcp_options(&e, &t.options, &what);
            let s = smoltcp::wire::TcpPacket::new_checked(transport)
                .unwrap_or_else(|err| panic!("smoltcp rejects a TCP segment ours accepts: {err:?}\n{}", what()));
            assert_eq!((s.src_port(), s.dst_port()), (t.src_port, t.dst_port));
            assert_eq!((s.seq_number().0 as u32, s.ack_number().0 as u32), (t.seq.0, t.ack.0));
            assert_eq!(
                (s.syn(), s.fin(), s.rst(), s.ack()),
                (t.flags.syn(), t.flags.fin(), t.flags.rst(), t.flags.ack())
            );
            assert_eq!(s.window_len(), t.window);
            assert_eq!(s.payload().len(), t.payload.len());
        }
        Transport::Udp(u) => {
            assert_eq!(p.ip.protocol, wire::proto::UDP);
            let e = etherparse::UdpSlice::from_slice(transport)
                .unwrap_or_else(|err| panic!("etherparse rejects a UDP datagram ours accepts: {err:?}\n{}", what()));
            assert_eq!((e.source_port(), e.destination_port()), (u.src_port, u.dst_port), "UDP ports\n{}", what());
            assert_eq!(offset_in(data, e.payload()), offset_in(data, u.payload), "UDP payload offset\n{}", what());
            assert_eq!(e.payload().len(), u.payload.len(), "UDP payload length (length field)\n{}", what());
            let stored = e.checksum();
            if stored == 0 {
                // RFC 768: no checksum; RFC 8200 8.1: not allowed over IPv6.
                assert!(src.is_ipv4(), "ours accepted a zero UDP checksum over IPv6\n{}", what());
            } else {
                let h = e.to_header();
                let want = match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => h.calc_checksum_ipv4_raw(s.octets(), d.octets(), e.payload()),
                    (IpAddr::V6(s), IpAddr::V6(d)) => h.calc_checksum_ipv6_raw(s.octets(), d.octets(), e.payload()),
                    _ => unreachable!(),
                }
                .expect("a UDP length that fits");
                assert!(
                    ones_eq(stored, want),
                    "UDP checksum {stored:#06x}, etherparse computes {want:#06x}\n{}",
                    what()
                );
                assert_eq!(
                    smol_sum(smoltcp::wire::IpProtocol::Udp, e.slice()),
                    !0,
                    "UDP checksum by smoltcp\n{}",
                    what()
                );
            }
            let s = smoltcp::wire::UdpPacket::new_checked(transport)
                .unwrap_or_else(|err| panic!("smoltcp rejects a UDP datagram ours accepts: {err:?}\n{}", what()));
            assert_eq!((s.src_port(), s.dst_port()), (u.src_port, u.dst_port));
            assert_eq!(usize::from(s.len()), 8 + u.payload.len());
        }
        Transport::Icmp(IcmpRepr::V4(m)) => {
            assert_eq!(p.ip.protocol, wire::proto::ICMP);
            let sum = etherparse::checksum::Sum16BitWords::new().add_slice(transport).ones_complement();
            assert_eq!(sum, 0, "ICMPv4 checksum does not verify by etherparse\n{}", what());
            assert_eq!(smoltcp::wire::checksum::data(transport), !0, "ICMPv4 checksum by smoltcp\n{}", what());
            // etherparse insists on exactly 20 bytes for timestamp messages (types 13/14,
            // code 0); ours reads them as "other" and does not care.
            if let Ok(e) = etherparse::Icmpv4Slice::from_slice(transport) {
                assert_eq!((e.type_u8(), e.code_u8()), (transport[0], transport[1]));
                check_icmp_fields_v4(&m, transport, &e.bytes5to8(), &what);
            }
        }
        Transport::Icmp(IcmpRepr::V6(m)) => {
            assert_eq!(p.ip.protocol, wire::proto::ICMPV6);
            let e = etherparse::Icmpv6Slice::from_slice(transport)
                .unwrap_or_else(|err| panic!("etherparse rejects an ICMPv6 message ours accepts: {err:?}\n{}", what()));
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else { unreachable!() };
            assert!(e.is_checksum_valid(s.octets(), d.octets()), "ICMPv6 checksum by etherparse\n{}", what());
            assert_eq!(
                smol_sum(smoltcp::wire::IpProtocol::Icmpv6, transport),
                !0,
                "ICMPv6 checksum by smoltcp\n{}",
                what()
            );
            let w = e.bytes5to8();
            let word = |i: usize| u16::from_be_bytes([w[i], w[i + 1]]);
            match m {
                IcmpV6Message::EchoRequest { ident, seq, data: body }
                | IcmpV6Message::EchoReply { ident, seq, data: body } => {
                    assert!(matches!(e.type_u8(), 128 | 129));
                    assert_eq!((ident, seq), (word(0), word(2)), "ICMPv6 echo words\n{}", what());
                    assert_eq!(offset_in(data, body), offset_in(data, transport) + 8);
                }
                IcmpV6Message::PacketTooBig { mtu, .. } => {
                    assert_eq!(e.type_u8(), 2);
                    assert_eq!(mtu, u32::from_be_bytes(w));
                }
                IcmpV6Message::DestUnreachable { code, .. } => assert_eq!((e.type_u8(), e.code_u8()), (1, code)),
                IcmpV6Message::TimeExceeded { code, .. } => assert_eq!((e.type_u8(), e.code_u8()), (3, code)),
                IcmpV6Message::Other { icmp_type, code } => assert_eq!((e.type_u8(), e.code_u8()), (icmp_type, code)),
            }
        }
    }
    true
}

fn check_icmp_fields_v4(m: &IcmpV4Message<'_>, transport: &[u8], w: &[u8; 4], what: &dyn Fn() -> String) {
    let word = |i: usize| u16::from_be_bytes([w[i], w[i + 1]]);
    match *m {
        IcmpV4Message::EchoRequest { ident, seq, data } | IcmpV4Message::EchoReply { ident, seq, data } => {
            assert!(matches!(transport[0], 0 | 8));
            assert_eq!((ident, seq), (word(0), word(2)), "ICMPv4 echo words\n{}", what());
            assert_eq!(data, &transport[8..]);
        }
        IcmpV4Message::DestUnreachable { code, invoking } | IcmpV4Message::TimeExceeded { code, invoking } => {
            assert!(matches!((transport[0], transport[1]), (3, c) | (11, c) if c == code));
            assert_eq!(invoking, &transport[8..]);
        }
        IcmpV4Message::FragNeeded { mtu, invoking } => {
            assert_eq!((transport[0], transport[1], mtu), (3, 4, word(2)));
            assert_eq!(invoking, &transport[8..]);
        }
        IcmpV4Message::Other { icmp_type, code } => assert_eq!((transport[0], transport[1]), (icmp_type, code)),
    }
}

/// Our options against etherparse's iterator. Ours ignores known kinds with a wrong
/// length and skips unknown kinds, where etherparse's iterator reports an error; so the
/// values are compared only when etherparse reads every option without error. Ours keeps
/// the last occurrence of a repeated option and clamps window scale to 14 (RFC 7323 2.3).
fn compare_tcp_options(e: &etherparse::TcpSlice<'_>, ours: &TcpOptions, what: &dyn Fn() -> String) {
    use etherparse::TcpOptionElement as O;
    let mut theirs = TcpOptions::default();
    for o in e.options_iterator() {
        match o {
            Err(_) => return,
            Ok(O::Noop) => {}
            Ok(O::MaximumSegmentSize(m)) => theirs.mss = Some(m),
            Ok(O::WindowScale(s)) => theirs.window_scale = Some(s.min(14)),
            Ok(O::SelectiveAcknowledgementPermitted) => theirs.sack_permitted = true,
            Ok(O::SelectiveAcknowledgement(first, rest)) => {
                let mut blocks = wire::SackBlocks::default();
                blocks.push(SeqNum(first.0), SeqNum(first.1));
                for (l, r) in rest.iter().flatten() {
                    blocks.push(SeqNum(*l), SeqNum(*r));
                }
                theirs.sack = blocks;
            }
            Ok(O::Timestamp(a, b)) => theirs.timestamps = Some((a, b)),
        }
    }
    assert_eq!(&theirs, ours, "TCP options differ from etherparse's reading\n{}", what());
}

// ============================================================================ the world

pub const STACK_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const STACK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// A second peer of each family, so that 4-tuples differ in more than the port.
pub const PEER2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
pub const PEER2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);

/// Most steps one input runs (inputs are bounded in length anyway; this bounds time).
pub const MAX_STEPS: usize = 400;
/// Largest payload a structured segment carries.
pub const MAX_PAYLOAD: usize = 4000;

/// Small buffers (so windows fill and edges are reachable with small inputs), short
/// timers and few retries (so the final drain reaches every timeout quickly).
pub fn fuzz_config(seed: u64) -> Config {
    Config::default().with(|c| {
        c.addrs = vec![IpAddr::V4(STACK_V4), IpAddr::V6(STACK_V6)];
        c.mtu = 1500;
        c.seed = seed;
        c.tcp_rx_buffer = 4096;
        c.tcp_tx_buffer = 8192;
        c.msl = Duration::from_millis(100);
        c.rto_initial = Duration::from_millis(200);
        c.rto_min = Duration::from_millis(50);
        c.rto_max = Duration::from_millis(800);
        c.max_retries = 3;
        c.syn_retries = 2;
        c.udp_rx_queue = 4;
        c.udp_tx_queue = 4;
        c.icmp_error_rate = 20;
    })
}

/// A TCP 4-tuple the harness knows about, and what it has seen the stack send on it.
#[derive(Clone, Debug)]
pub struct Tuple {
    /// The stack's end.
    pub local: SocketAddr,
    /// The simulated peer's end.
    pub remote: SocketAddr,
    /// The application's handle, once there is one.
    pub handle: Option<TcpHandle>,
    /// Sequence number of the stack's SYN, once seen.
    pub stack_iss: Option<SeqNum>,
    /// Highest sequence number the stack has sent up to (seq + SEG.LEN).
    pub stack_nxt: SeqNum,
    /// The last acknowledgment number the stack sent (its RCV.NXT then).
    pub stack_ack: Option<SeqNum>,
    /// The last window field the stack sent.
    pub stack_wnd: u16,
    /// The peer's initial sequence number (ours to choose).
    pub peer_isn: SeqNum,
    /// The peer's next new sequence number.
    pub peer_nxt: SeqNum,
    /// Bytes the application wrote on this connection ([`app_byte`] pattern).
    pub app_sent: u64,
    /// Bytes the application read on this connection.
    pub app_read: u64,
    /// The harness has followed this connection from its first SYN, so the byte
    /// accounting above is complete (false for a 4-tuple first seen in the middle, e.g.
    /// after it was evicted from the list and the stack retransmitted its SYN).
    pub tracked: bool,
}

/// The values a segment's sequence and acknowledgment numbers are chosen around.
#[derive(Clone, Copy, Debug)]
pub struct Bases {
    pub rcv_nxt: SeqNum,
    pub rcv_wnd: usize,
    pub irs: SeqNum,
    pub snd_una: SeqNum,
    pub snd_nxt: SeqNum,
    pub iss: SeqNum,
    pub mss: usize,
}

/// A stack, a clock, the simulated peers' knowledge, and checks after every step.
pub struct World {
    pub stack: Stack,
    pub now: Instant,
    /// Every handle the API ever returned (stale ones stay: using them must fail cleanly).
    pub handles: Vec<AnyHandle>,
    pub tuples: Vec<Tuple>,
    next_peer_port: u16,
    out: Vec<u8>,
    pkt: Vec<u8>,
    /// Packets the stack emitted so far (all checked).
    pub emitted: u64,
    /// Step counter, for failure messages.
    pub step: usize,
    /// Check that the application reads exactly the peer's [`stream_byte`] pattern. Off
    /// when raw packets may inject other bytes.
    pub strict_rx: bool,
}

/// Content of the peer's byte stream at `seq`: a pattern, so retransmissions carry the
/// same bytes as the original.
pub fn stream_byte(seq: SeqNum) -> u8 {
    (seq.0 % 251) as u8
}

/// Content the application writes at offset `off` of its stream: a pattern with a long
/// period, so that data sent from the wrong offset is noticed.
pub fn app_byte(off: u64) -> u8 {
    (off.wrapping_mul(7) ^ (off >> 8).wrapping_mul(13)) as u8
}

impl World {
    pub fn new(seed: u64) -> World {
        World {
            stack: Stack::new(fuzz_config(seed)),
            now: Instant::from_secs(1),
            handles: Vec::new(),
            tuples: Vec::new(),
            next_peer_port: 20000,
            out: vec![0; 65536],
            pkt: Vec::new(),
            emitted: 0,
            step: 0,
            strict_rx: true,
        }
    }

    fn keep_handle(&mut self, h: impl Into<AnyHandle>) {
        if self.handles.len() >= 64 {
            self.handles.remove(0);
        }
        self.handles.push(h.into());
    }

    pub fn pick_handle(&self, sel: u8) -> Option<AnyHandle> {
        if self.handles.is_empty() {
            None
        } else {
            Some(self.handles[usize::from(sel) % self.handles.len()])
        }
    }

    pub fn new_peer_port(&mut self) -> u16 {
        let p = self.next_peer_port;
        self.next_peer_port = if p >= 29999 { 20000 } else { p + 1 };
        p
    }

    fn tuple_index(&self, local: SocketAddr, remote: SocketAddr) -> Option<usize> {
        self.tuples.iter().position(|t| t.local == local && t.remote == remote)
    }

    /// Register (or reset) a 4-tuple.
    pub fn add_tuple(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        handle: Option<TcpHandle>,
        peer_isn: SeqNum,
    ) -> usize {
        let t = Tuple {
            local,
            remote,
            handle,
            stack_iss: None,
            stack_nxt: SeqNum(0),
            stack_ack: None,
            stack_wnd: 0,
            peer_isn,
            peer_nxt: peer_isn,
            app_sent: 0,
            app_read: 0,
            tracked: true,
        };
        if let Some(i) = self.tuple_index(local, remote) {
            self.tuples[i] = t;
            return i;
        }
        if self.tuples.len() >= 32 {
            self.tuples.remove(0);
        }
        self.tuples.push(t);
        self.tuples.len() - 1
    }

    /// Hand a packet to the stack.
    pub fn input(&mut self, packet: &[u8]) {
        self.deliver(packet);
    }

    /// Emit a segment from `t`'s peer to the stack, with valid checksums.
    pub fn peer_segment(&mut self, ti: usize, repr: &TcpRepr<'_>) {
        let t = &self.tuples[ti];
        let (src, dst) = (t.remote.ip(), t.local.ip());
        let mut buf = std::mem::take(&mut self.pkt);
        buf.resize(60 + 40 + repr.payload.len(), 0);
        let n = wire::emit_tcp(&mut buf, src, dst, repr).expect("segment fits");
        let end = repr.seq + repr.seg_len();
        let t = &mut self.tuples[ti];
        if end > t.peer_nxt {
            t.peer_nxt = end;
        }
        self.deliver(&buf[..n]);
        self.pkt = buf;
    }

    /// Emit a segment whose option bytes are given raw (possibly malformed): the header
    /// is framed by `emit_tcp` with the options as leading payload, then the data offset
    /// is patched and the checksum recomputed.
    pub fn peer_segment_raw_options(&mut self, ti: usize, repr: &TcpRepr<'_>, options: &[u8]) {
        debug_assert!(options.len() <= 40 && options.len().is_multiple_of(4));
        let t = &self.tuples[ti];
        let (src, dst) = (t.remote.ip(), t.local.ip());
        let mut body = Vec::with_capacity(options.len() + repr.payload.len());
        body.extend_from_slice(options);
        body.extend_from_slice(repr.payload);
        let framed = TcpRepr { options: TcpOptions::default(), payload: &body, ..*repr };
        let mut buf = vec![0; 60 + body.len()];
        let n = wire::emit_tcp(&mut buf, src, dst, &framed).expect("segment fits");
        let ip_len = if src.is_ipv4() { 20 } else { 40 };
        buf[ip_len + 12] = (((20 + options.len()) / 4) as u8) << 4;
        buf.truncate(n);
        fix_checksums(&mut buf);
        let end = repr.seq + repr.seg_len();
        let t = &mut self.tuples[ti];
        if end > t.peer_nxt {
            t.peer_nxt = end;
        }
        self.deliver(&buf);
    }

    /// Take every packet the stack wants to send: each must be well formed by our parser
    /// and by etherparse (checksums included); TCP ones update the peers' knowledge.
    pub fn drain(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        let mut guard = 0;
        while let Some(n) = self.stack.poll_transmit(self.now, &mut out) {
            guard += 1;
            assert!(guard < 100_000, "poll_transmit never returns None");
            let pkt = &out[..n];
            assert!(n <= self.stack.config().mtu.max(576), "emitted {n} bytes, more than the MTU");
            if wire::frag::is_fragment(pkt) {
                check_fragment(pkt);
                self.emitted += 1;
                continue;
            }
            crate::link::check_packet(pkt);
            let p = wire::parse(pkt).unwrap_or_else(|e| panic!("our parser rejects our own packet: {e:?}\n{pkt:02x?}"));
            self.emitted += 1;
            if let Transport::Tcp(seg) = p.transport {
                self.sniff(SocketAddr::new(p.ip.src, seg.src_port), SocketAddr::new(p.ip.dst, seg.dst_port), &seg);
            }
        }
        while self.stack.poll_readiness().is_some() {}
        self.out = out;
    }

    fn sniff(&mut self, local: SocketAddr, remote: SocketAddr, seg: &TcpRepr<'_>) {
        let i = match self.tuple_index(local, remote) {
            Some(i) => i,
            None if seg.flags.syn() => {
                let i = self.add_tuple(local, remote, None, SeqNum(0x5eed_0000));
                self.tuples[i].tracked = false;
                i
            }
            None => return,
        };
        let t = &mut self.tuples[i];
        if seg.flags.rst() {
            return;
        }
        if let (Some(iss), false) = (t.stack_iss, seg.payload.is_empty() || seg.flags.syn() || !t.tracked) {
            // Every byte the stack sends must be the application's byte at that offset.
            for (i, &b) in seg.payload.iter().enumerate() {
                let off = u64::from((seg.seq + i).0.wrapping_sub((iss + 1).0));
                assert!(off < t.app_sent, "{local}->{remote}: sent offset {off}, the application wrote {}", t.app_sent);
                assert_eq!(b, app_byte(off), "{local}->{remote}: wrong byte at stream offset {off}");
            }
        }
        if seg.flags.syn() {
            if t.stack_iss.is_some_and(|iss| iss != seg.seq) {
                // A new connection on a known 4-tuple (the old one is gone or CLOSED):
                // the old handle and stream offsets belong to the old one.
                t.handle = None;
                t.app_sent = 0;
                t.app_read = 0;
            }
            t.stack_iss = Some(seg.seq);
            t.stack_nxt = seg.seq + seg.seg_len();
        } else if t.stack_iss.is_some() && seg.seq + seg.seg_len() > t.stack_nxt {
            t.stack_nxt = seg.seq + seg.seg_len();
        }
        if seg.flags.ack() {
            t.stack_ack = Some(seg.ack);
        }
        t.stack_wnd = seg.window;
    }

    /// Run due timers (the clock only moves forward) and drain.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.stack.handle_timeout(self.now);
        self.drain();
    }

    /// Jump to the stack's next deadline, if any.
    pub fn advance_to_deadline(&mut self) {
        if let Some(d) = self.stack.poll_timeout() {
            if d > self.now {
                self.now = d;
            }
        }
        self.stack.handle_timeout(self.now);
        self.drain();
    }

    pub fn time_step(&mut self, step: TimeStep) {
        match step {
            TimeStep::Zero => self.advance(Duration::ZERO),
            TimeStep::Millis(ms) => self.advance(Duration::from_millis(u64::from(ms))),
            TimeStep::Deadline => self.advance_to_deadline(),
        }
    }

    /// `check_invariants` must hold; panics with the step and the socket table if not.
    pub fn check(&self) {
        if let Err(e) = self.stack.check_invariants() {
            panic!("invariant violated after step {}: {e}\nsockets: {:#?}", self.step, self.stack.sockets());
        }
    }

    /// The values to aim at on tuple `ti`: the connection's real state when the
    /// application still holds its handle, else what the peer has seen on the wire.
    pub fn bases(&self, ti: usize) -> Bases {
        let t = &self.tuples[ti];
        if let Some(info) = t.handle.and_then(|h| self.stack.tcp_info(h).ok()) {
            return Bases {
                rcv_nxt: info.rcv_nxt,
                rcv_wnd: info.rcv_wnd,
                irs: info.irs,
                snd_una: info.snd_una,
                snd_nxt: info.snd_nxt,
                iss: info.iss,
                mss: info.mss,
            };
        }
        Bases {
            rcv_nxt: t.stack_ack.unwrap_or(t.peer_nxt),
            rcv_wnd: usize::from(t.stack_wnd),
            irs: t.peer_isn,
            snd_una: t.stack_nxt,
            snd_nxt: t.stack_nxt,
            iss: t.stack_iss.unwrap_or(t.stack_nxt),
            mss: 536,
        }
    }

    /// A structured segment toward tuple `ti`.
    pub fn segment(&mut self, ti: usize, spec: &SegSpec) {
        let b = self.bases(ti);
        let seq = spec.seq.resolve_seq(&b) + spec.seq_delta as usize;
        let ack = spec.ack.resolve_ack(&b) + spec.ack_delta as usize;
        let len = spec.payload.resolve(&b).min(MAX_PAYLOAD);
        let payload: Vec<u8> = (0..len).map(|i| stream_byte(seq + i)).collect();
        let repr = TcpRepr {
            src_port: self.tuples[ti].remote.port(),
            dst_port: self.tuples[ti].local.port(),
            seq,
            ack,
            flags: TcpFlags(spec.flags),
            window: spec.window,
            urgent: spec.urgent,
            options: TcpOptions::default(),
            payload: &payload,
        };
        match &spec.options {
            OptSpec::None => self.peer_segment(ti, &repr),
            OptSpec::Std(o) => self.peer_segment(ti, &TcpRepr { options: *o, ..repr }),
            OptSpec::Raw(items) => {
                let raw = encode_options(items);
                self.peer_segment_raw_options(ti, &repr, &raw)
            }
        }
    }

    /// A well-behaved peer action on tuple `ti`.
    pub fn peer_act(&mut self, ti: usize, act: PeerAct) {
        let b = self.bases(ti);
        let t = self.tuples[ti].clone();
        let seq = t.stack_ack.unwrap_or(t.peer_nxt);
        let ack = t.stack_nxt;
        let base = TcpRepr {
            src_port: t.remote.port(),
            dst_port: t.local.port(),
            seq,
            ack,
            flags: TcpFlags::ACK,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        match act {
            PeerAct::AckAll { window } => self.peer_segment(ti, &TcpRepr { window, ..base }),
            PeerAct::Data { len, fin, window } => {
                let len = usize::from(len).min(b.rcv_wnd.max(1)).min(MAX_PAYLOAD);
                let payload: Vec<u8> = (0..len).map(|i| stream_byte(seq + i)).collect();
                let mut flags = TcpFlags::ACK | TcpFlags::PSH;
                if fin {
                    flags |= TcpFlags::FIN;
                }
                self.peer_segment(ti, &TcpRepr { flags, window, payload: &payload, ..base })
            }
            PeerAct::SynAck { window, options } => {
                // Answer an active open: our ISN, acknowledging the stack's SYN.
                let Some(iss) = t.stack_iss else { return };
                let repr = TcpRepr {
                    seq: t.peer_isn,
                    ack: iss + 1,
                    flags: TcpFlags::SYN | TcpFlags::ACK,
                    window,
                    options,
                    ..base
                };
                self.peer_segment(ti, &repr)
            }
            PeerAct::Rst => self.peer_segment(ti, &TcpRepr { flags: TcpFlags::RST, ..base }),
        }
    }

    /// A new connection attempt from a fresh peer port toward `local`.
    pub fn new_syn(
        &mut self,
        local: SocketAddr,
        peer: IpAddr,
        isn: SeqNum,
        options: TcpOptions,
        extra_flags: u8,
        payload_len: usize,
    ) -> usize {
        let port = self.new_peer_port();
        let remote = SocketAddr::new(peer, port);
        let ti = self.add_tuple(local, remote, None, isn);
        // SYN plus any of FIN, PSH, URG, ECE, CWR; never ACK or RST (those are not
        // connection attempts).
        let flags = TcpFlags(TcpFlags::SYN.0 | (extra_flags & !(TcpFlags::ACK.0 | TcpFlags::RST.0)));
        let payload: Vec<u8> = (0..payload_len).map(|i| stream_byte(isn + 1 + i)).collect();
        let repr = TcpRepr {
            src_port: port,
            dst_port: local.port(),
            seq: isn,
            ack: SeqNum(0),
            flags,
            window: 65535,
            urgent: 0,
            options,
            payload: &payload,
        };
        self.peer_segment(ti, &repr);
        ti
    }

    /// Passive open through the listener on `local`: SYN, SYN-ACK, ACK, accept.
    pub fn establish_passive(
        &mut self,
        listener: ListenerHandle,
        local: SocketAddr,
        peer: IpAddr,
        options: TcpOptions,
    ) -> usize {
        let ti = self.new_syn(local, peer, SeqNum(0x1000_0000 ^ u32::from(self.next_peer_port)), options, 0, 0);
        self.drain();
        assert!(self.tuples[ti].stack_iss.is_some(), "no SYN-ACK from the listener on {local}");
        self.peer_act(ti, PeerAct::AckAll { window: 65535 });
        self.drain();
        let h = self.stack.tcp_accept(listener).expect("an established connection to accept");
        assert_eq!(self.stack.tcp_state(h).ok(), Some(TcpState::Established));
        self.tuples[ti].handle = Some(h);
        self.keep_handle(h);
        ti
    }

    /// Active open toward `remote`: connect, SYN, SYN-ACK from the peer, ACK.
    pub fn establish_active(&mut self, remote: SocketAddr, options: TcpOptions) -> usize {
        let h = self.stack.tcp_connect(self.now, remote, None).expect("connect");
        self.keep_handle(h);
        let local = self.stack.local_addr(h).expect("local address");
        let ti = self.add_tuple(local, remote, Some(h), SeqNum(0x2000_0000 ^ u32::from(remote.port())));
        self.drain();
        self.peer_act(ti, PeerAct::SynAck { window: 65535, options });
        self.drain();
        assert_eq!(self.stack.tcp_poll_connect(h).ok(), Some(true), "active open to {remote} did not complete");
        ti
    }

    /// Hand a packet to the stack.
    fn deliver(&mut self, packet: &[u8]) {
        self.stack.input(self.now, packet);
    }

    /// Run every timer until none is left (bounded), draining and checking as it goes.
    fn run_all_timers(&mut self) {
        let limit = self.now + Duration::from_secs(3600);
        let mut rounds = 0;
        while let Some(d) = self.stack.poll_timeout() {
            rounds += 1;
            assert!(
                rounds < 100_000 && d <= limit,
                "timers keep running after close: next at {d:?}\n{:#?}",
                self.stack.sockets()
            );
            self.now = self.now.max(d);
            self.stack.handle_timeout(self.now);
            self.drain();
            self.check();
        }
    }

    /// Close every socket the application holds, then let time run past every timer
    /// (2*MSL, every retransmission limit) with no peer answering. Afterwards no socket
    /// may remain: anything left is a leak.
    pub fn finish(mut self) {
        for info in self.stack.sockets() {
            if info.owner == Owner::App {
                // It may be gone already (a listener's close takes its children along).
                let Some(h) = self.stack.resolve(info.handle) else { continue };
                let _ = self.stack.close(h);
                self.check();
            }
        }
        self.drain();
        self.run_all_timers();
        assert_eq!(
            self.stack.socket_count(),
            0,
            "sockets left after close and every timeout ({:?}): {:#?}",
            self.now,
            self.stack.sockets()
        );
    }
}

// ============================================================================ step vocabulary

/// How far the clock moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeStep {
    Zero,
    Millis(u16),
    /// To the stack's next deadline.
    Deadline,
}

impl TimeStep {
    pub fn decode(r: &mut Reader<'_>) -> TimeStep {
        match r.u8() % 8 {
            0 => TimeStep::Zero,
            1 => TimeStep::Millis(1),
            2 => TimeStep::Millis(u16::from(r.u8())),
            3 => TimeStep::Millis(200),
            4 => TimeStep::Millis(r.u16() % 10_000),
            _ => TimeStep::Deadline,
        }
    }
}

/// What a segment's sequence number is chosen relative to (the stack's receive side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqBase {
    RcvNxt,
    /// RCV.NXT + RCV.WND: the right edge of the stack's window.
    RcvEdge,
    Irs,
    Raw(u32),
}

/// What a segment's acknowledgment number is chosen relative to (the stack's send side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckBase {
    SndUna,
    SndNxt,
    Iss,
    Raw(u32),
}

impl SeqBase {
    fn resolve_seq(self, b: &Bases) -> SeqNum {
        match self {
            SeqBase::RcvNxt => b.rcv_nxt,
            SeqBase::RcvEdge => b.rcv_nxt + b.rcv_wnd,
            SeqBase::Irs => b.irs,
            SeqBase::Raw(v) => SeqNum(v),
        }
    }
}

impl AckBase {
    fn resolve_ack(self, b: &Bases) -> SeqNum {
        match self {
            AckBase::SndUna => b.snd_una,
            AckBase::SndNxt => b.snd_nxt,
            AckBase::Iss => b.iss,
            AckBase::Raw(v) => SeqNum(v),
        }
    }
}

/// Payload size of a structured segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadSpec {
    Len(u16),
    /// The stack's receive window plus a small delta.
    Window(i8),
    /// The connection's MSS plus a small delta.
    Mss(i8),
}

impl PayloadSpec {
    fn resolve(self, b: &Bases) -> usize {
        match self {
            PayloadSpec::Len(n) => usize::from(n),
            PayloadSpec::Window(d) => (b.rcv_wnd as i64 + i64::from(d)).max(0) as usize,
            PayloadSpec::Mss(d) => (b.mss as i64 + i64::from(d)).max(0) as usize,
        }
    }
}

/// One item of a hand-made option list: well-formed options in odd places, wrong
/// lengths, unknown kinds.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum OptItem {
    Eol,
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// Up to four blocks (as many as the count says, capped by what fits).
    Sack {
        blocks: u8,
        left: u32,
        len: u16,
    },
    Timestamps(u32, u32),
    /// A kind with `data` bytes of zeros and a correct length byte.
    Unknown {
        kind: u8,
        data: u8,
    },
    /// A kind byte and a raw length byte with nothing checked.
    RawLength {
        kind: u8,
        len: u8,
    },
}

/// Serialize an option list, cut to 40 bytes and zero-padded to a multiple of four.
pub fn encode_options(items: &[OptItem]) -> Vec<u8> {
    let mut o = Vec::new();
    for it in items {
        match *it {
            OptItem::Eol => o.push(0),
            OptItem::Nop => o.push(1),
            OptItem::Mss(m) => o.extend_from_slice(&[2, 4, (m >> 8) as u8, m as u8]),
            OptItem::WindowScale(s) => o.extend_from_slice(&[3, 3, s]),
            OptItem::SackPermitted => o.extend_from_slice(&[4, 2]),
            OptItem::Sack { blocks, left, len } => {
                let n = usize::from(blocks % 4) + 1;
                o.extend_from_slice(&[5, (2 + 8 * n) as u8]);
                for i in 0..n {
                    let l = left.wrapping_add(i as u32 * 2 * u32::from(len));
                    o.extend_from_slice(&l.to_be_bytes());
                    o.extend_from_slice(&l.wrapping_add(u32::from(len)).to_be_bytes());
                }
            }
            OptItem::Timestamps(a, b) => {
                o.extend_from_slice(&[8, 10]);
                o.extend_from_slice(&a.to_be_bytes());
                o.extend_from_slice(&b.to_be_bytes());
            }
            OptItem::Unknown { kind, data } => {
                let n = usize::from(data % 12);
                o.extend_from_slice(&[kind, (n + 2) as u8]);
                o.extend(std::iter::repeat_n(0, n));
            }
            OptItem::RawLength { kind, len } => o.extend_from_slice(&[kind, len]),
        }
    }
    o.truncate(40);
    while o.len() % 4 != 0 {
        o.push(0);
    }
    o
}

/// Options of a structured segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptSpec {
    None,
    /// Well-formed options, emitted by `emit_tcp`'s own layout.
    Std(TcpOptions),
    /// A raw option list (see [`encode_options`]).
    Raw(Vec<OptItem>),
}

fn decode_std_options(r: &mut Reader<'_>) -> TcpOptions {
    let sel = r.u8();
    let mut o = TcpOptions::default();
    if sel & 1 != 0 {
        o.mss = Some(r.u16());
    }
    if sel & 2 != 0 {
        o.window_scale = Some(r.u8());
    }
    o.sack_permitted = sel & 4 != 0;
    if sel & 8 != 0 {
        o.timestamps = Some((r.u32(), r.u32()));
    }
    if sel & 16 != 0 {
        let left = r.u32();
        for i in 0..(sel >> 5) % 4 + 1 {
            o.sack.push(
                SeqNum(left.wrapping_add(u32::from(i) * 1000)),
                SeqNum(left.wrapping_add(u32::from(i) * 1000 + 500)),
            );
        }
    }
    o
}

impl OptSpec {
    pub fn decode(r: &mut Reader<'_>) -> OptSpec {
        match r.u8() % 8 {
            0..=3 => OptSpec::None,
            4 | 5 => OptSpec::Std(decode_std_options(r)),
            _ => {
                let n = r.u8() % 10;
                let items = (0..n).filter_map(|_| OptItem::arbitrary(r.unstructured()).ok()).collect();
                OptSpec::Raw(items)
            }
        }
    }
}

/// A segment from the simulated peer, described relative to the connection's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegSpec {
    pub flags: u8,
    pub seq: SeqBase,
    pub seq_delta: i32,
    pub ack: AckBase,
    pub ack_delta: i32,
    pub window: u16,
    pub urgent: u16,
    pub options: OptSpec,
    pub payload: PayloadSpec,
}

impl SegSpec {
    pub fn decode(r: &mut Reader<'_>) -> SegSpec {
        let flags = r.u8();
        let seq = match r.u8() % 8 {
            0..=3 => SeqBase::RcvNxt,
            4 | 5 => SeqBase::RcvEdge,
            6 => SeqBase::Irs,
            _ => SeqBase::Raw(r.u32()),
        };
        let seq_delta = r.delta();
        let ack = match r.u8() % 8 {
            0..=2 => AckBase::SndNxt,
            3..=5 => AckBase::SndUna,
            6 => AckBase::Iss,
            _ => AckBase::Raw(r.u32()),
        };
        let ack_delta = r.delta();
        let window = match r.u8() % 4 {
            0 => 65535,
            1 => 0,
            _ => r.u16(),
        };
        let urgent = if flags & TcpFlags::URG.0 != 0 { r.u16() } else { 0 };
        let options = OptSpec::decode(r);
        let payload = match r.u8() % 8 {
            0..=2 => PayloadSpec::Len(0),
            3 => PayloadSpec::Len(u16::from(r.u8())),
            4 => PayloadSpec::Window(r.delta().clamp(-128, 127) as i8),
            5 => PayloadSpec::Mss(r.delta().clamp(-128, 127) as i8),
            6 => PayloadSpec::Len(r.u16() % MAX_PAYLOAD as u16),
            _ => PayloadSpec::Len(1),
        };
        SegSpec { flags, seq, seq_delta, ack, ack_delta, window, urgent, options, payload }
    }

    /// The encoding [`SegSpec::decode`] reads back as a plain segment at (RCV.NXT,
    /// SND.NXT) with these flags and window and no options (for seeds).
    pub fn encode_plain(w: &mut Writer, flags: u8, payload_len: u8) {
        w.u8(flags).u8(0).no_delta().u8(0).no_delta().u8(0);
        if flags & TcpFlags::URG.0 != 0 {
            w.u16(0);
        }
        w.u8(0); // no options
        w.u8(3).u8(payload_len);
    }
}

/// A well-behaved action of the simulated peer (keeps connections moving forward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAct {
    /// ACK everything the stack sent, at the sequence number it expects.
    AckAll { window: u16 },
    /// In-order data (cut to the stack's window), optionally with FIN.
    Data { len: u16, fin: bool, window: u16 },
    /// SYN-ACK for an active open.
    SynAck { window: u16, options: TcpOptions },
    /// RST at exactly RCV.NXT.
    Rst,
}

impl PeerAct {
    pub fn decode(r: &mut Reader<'_>) -> PeerAct {
        let window = if r.bool() { 65535 } else { r.u16() };
        match r.u8() % 8 {
            0..=2 => PeerAct::AckAll { window },
            3..=5 => PeerAct::Data { len: r.u16() % 3000, fin: r.u8().is_multiple_of(4), window },
            6 => PeerAct::SynAck { window, options: decode_std_options(r) },
            _ => PeerAct::Rst,
        }
    }
}

// ============================================================================ app side

impl World {
    fn tuple_of(&self, h: TcpHandle) -> Option<usize> {
        self.tuples.iter().position(|t| t.handle == Some(h))
    }

    /// Write `len` bytes of the application's pattern on `h`.
    pub fn app_send(&mut self, h: TcpHandle, len: usize) {
        let ti = self.tuple_of(h);
        let from = ti.map_or(0, |i| self.tuples[i].app_sent);
        let data: Vec<u8> = (0..len as u64).map(|i| app_byte(from + i)).collect();
        let cap = self.stack.tcp_send_capacity(h).ok();
        match self.stack.tcp_send(h, &data) {
            Ok(n) => {
                assert!(n <= len, "tcp_send took {n} of {len} bytes");
                if let Some(cap) = cap {
                    assert!(n <= cap, "tcp_send took {n} bytes with a capacity of {cap}");
                }
                if let Some(i) = ti {
                    self.tuples[i].app_sent += n as u64;
                }
            }
            Err(e) => assert_ne!(e.kind(), ErrorKind::Other, "unexpected error kind: {e}"),
        }
    }

    /// Read up to `len` bytes from `h`; with `strict_rx`, they must continue the peer's
    /// stream pattern.
    pub fn app_recv(&mut self, h: TcpHandle, len: usize) {
        let mut buf = vec![0u8; len];
        let queued = self.stack.tcp_recv_queue(h).ok();
        match self.stack.tcp_recv(h, &mut buf) {
            Ok(n) => {
                assert!(n <= len);
                if let Some(q) = queued {
                    assert!(n <= q, "read {n} bytes with {q} queued");
                }
                let ti = self.tuple_of(h);
                if let (true, Some(i), Ok(info)) =
                    (self.strict_rx, ti.filter(|&i| self.tuples[i].tracked), self.stack.tcp_info(h))
                {
                    let start = info.irs + 1 + self.tuples[i].app_read as usize;
                    for (k, &b) in buf[..n].iter().enumerate() {
                        assert_eq!(
                            b,
                            stream_byte(start + k),
                            "byte {} of the received stream",
                            self.tuples[i].app_read + k as u64
                        );
                    }
                }
                if let Some(i) = ti {
                    self.tuples[i].app_read += n as u64;
                }
            }
            Err(e) => assert_ne!(e.kind(), ErrorKind::Other, "unexpected error kind: {e}"),
        }
    }

    /// Every query on a handle, which must answer (or fail) without panicking.
    pub fn query(&mut self, h: AnyHandle) {
        match h {
            AnyHandle::Tcp(h) => {
                let _ = self.stack.tcp_poll_connect(h);
                let _ = self.stack.tcp_state(h);
                let _ = self.stack.tcp_info(h);
                let _ = self.stack.tcp_nodelay(h);
                let _ = self.stack.tcp_send_capacity(h);
                let _ = self.stack.tcp_recv_queue(h);
            }
            AnyHandle::Udp(h) => {
                let _ = self.stack.udp_send_queue(h);
            }
            AnyHandle::Listener(_) => {}
        }
        let _ = self.stack.local_addr(h);
        let _ = self.stack.peer_addr(h);
        let _ = self.stack.poll_timeout();
        let _ = self.stack.sockets();
        let _ = self.stack.stats().total_drops();
    }
}

// ============================================================================ ingress

fn pick_local(r: &mut Reader<'_>) -> SocketAddr {
    let ip: IpAddr = match r.u8() % 6 {
        0 => Ipv4Addr::UNSPECIFIED.into(),
        1 => STACK_V4.into(),
        2 => Ipv6Addr::UNSPECIFIED.into(),
        3 => STACK_V6.into(),
        4 => Ipv4Addr::new(10, 0, 0, 99).into(), // not ours
        _ => Ipv6Addr::LOCALHOST.into(),
    };
    let port = match r.u8() % 6 {
        0 => 80,
        1 => 7,
        2 => 0,
        3 => 53,
        4 => 8081,
        _ => r.u16(),
    };
    SocketAddr::new(ip, port)
}

fn pick_remote(r: &mut Reader<'_>) -> SocketAddr {
    let ip: IpAddr = match r.u8() % 9 {
        0 | 1 => PEER_V4.into(),
        2 | 3 => PEER_V6.into(),
        4 => PEER2_V4.into(),
        5 => PEER2_V6.into(),
        6 => Ipv4Addr::UNSPECIFIED.into(),
        7 => Ipv4Addr::new(224, 0, 0, 1).into(),
        _ => STACK_V4.into(), // ourselves: the SYN goes out and nobody answers
    };
    let port = match r.u8() % 4 {
        0 => 8080,
        1 => 9,
        2 => 0,
        _ => r.u16(),
    };
    SocketAddr::new(ip, port)
}

/// One application call of the ingress target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Api {
    Send { h: u8, len: u16 },
    Recv { h: u8, len: u16 },
    Shutdown { h: u8, how: u8 },
    Close { h: u8 },
    Abort { h: u8 },
    Connect { remote: SocketAddr, local: Option<SocketAddr> },
    Listen { local: SocketAddr, backlog: u8 },
    Accept { h: u8 },
    UdpBind { local: SocketAddr },
    UdpSendTo { h: u8, len: u16, dst: SocketAddr },
    UdpRecv { h: u8, len: u16 },
    UdpConnect { h: u8, dst: SocketAddr },
    UdpSend { h: u8, len: u16 },
    NoDelay { h: u8, on: bool },
    Query { h: u8 },
}

impl Api {
    pub fn decode(r: &mut Reader<'_>) -> Api {
        match r.u8() % 15 {
            0 => Api::Send { h: r.u8(), len: r.u16() % 12_000 },
            1 => Api::Recv { h: r.u8(), len: r.u16() % 12_000 },
            2 => Api::Shutdown { h: r.u8(), how: r.u8() },
            3 => Api::Close { h: r.u8() },
            4 => Api::Abort { h: r.u8() },
            5 => {
                let remote = pick_remote(r);
                let local = if r.bool() { Some(pick_local(r)) } else { None };
                Api::Connect { remote, local }
            }
            6 => Api::Listen { local: pick_local(r), backlog: r.u8() % 8 },
            7 => Api::Accept { h: r.u8() },
            8 => Api::UdpBind { local: pick_local(r) },
            9 => Api::UdpSendTo { h: r.u8(), len: r.u16() % 2000, dst: pick_remote(r) },
            10 => Api::UdpRecv { h: r.u8(), len: r.u16() % 2000 },
            11 => Api::UdpConnect { h: r.u8(), dst: pick_remote(r) },
            12 => Api::UdpSend { h: r.u8(), len: r.u16() % 2000 },
            13 => Api::NoDelay { h: r.u8(), on: r.bool() },
            _ => Api::Query { h: r.u8() },
        }
    }
}

/// One step of the ingress target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Arbitrary bytes as a packet; `fix` bit 0 repairs checksums, bit 1 aims the packet
    /// at tuple `tuple` (addresses, and ports for TCP/UDP), bit 2 fixes the IP length.
    Raw {
        fix: u8,
        tuple: u8,
        bytes: Vec<u8>,
    },
    Seg {
        tuple: u8,
        spec: SegSpec,
    },
    Peer {
        tuple: u8,
        act: PeerAct,
    },
    /// A connection attempt toward a local port (usually a listener's).
    NewSyn {
        v6: bool,
        port: u16,
        isn: u32,
        options: TcpOptions,
        extra_flags: u8,
        payload: u8,
    },
    Api(Api),
    Time(TimeStep),
    /// A datagram; with `frag` non-zero cut into fragments (see [`fragment_plan`]).
    Udp {
        v6: bool,
        port: u16,
        len: u16,
        frag: u8,
    },
    /// With `aim` odd, an error's quote is a packet the stack sent on a live tuple (a
    /// TCP header with a sequence number around its flight) or from a UDP socket.
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: u8,
        len: u16,
        aim: u8,
    },
}

impl Step {
    pub fn decode(r: &mut Reader<'_>) -> Step {
        match r.u8() % 12 {
            0 | 1 => {
                let fix = r.u8();
                let tuple = r.u8();
                let len = usize::from(r.u16() % 1600);
                Step::Raw { fix, tuple, bytes: r.bytes(len).to_vec() }
            }
            2..=4 => Step::Seg { tuple: r.u8(), spec: SegSpec::decode(r) },
            5 => Step::Peer { tuple: r.u8(), act: PeerAct::decode(r) },
            6 => {
                let v6 = r.bool();
                let port = match r.u8() % 4 {
                    0 | 1 => 80,
                    2 => 7,
                    _ => r.u16(),
                };
                let isn = r.u32();
                let options = if r.bool() { decode_std_options(r) } else { TcpOptions::default() };
                let extra_flags = if r.u8().is_multiple_of(4) { r.u8() } else { 0 };
                let payload = if r.u8().is_multiple_of(4) { r.u8() } else { 0 };
                Step::NewSyn { v6, port, isn, options, extra_flags, payload }
            }
            7 | 8 => Step::Api(Api::decode(r)),
            9 => Step::Time(TimeStep::decode(r)),
            10 => {
                let v6 = r.bool();
                let port = match r.u8() % 4 {
                    0 => 53,
                    1 => 5353,
                    2 => 7,
                    _ => r.u16(),
                };
                Step::Udp { v6, port, len: r.u16() % 1600, frag: r.u8() }
            }
            _ => {
                let v6 = r.bool();
                let (icmp_type, code) = match r.u8() % 4 {
                    0 | 1 => (if v6 { 128 } else { 8 }, 0),
                    _ => (r.u8(), r.u8()),
                };
                Step::Icmp { v6, icmp_type, code, len: r.u16() % 1500, aim: r.u8() }
            }
        }
    }
}

impl World {
    /// The standard starting point of `ingress`: TCP listeners on 0.0.0.0:80 and
    /// `[fd00::2]:7`, UDP sockets on `0.0.0.0:53` and `[fd00::2]:5353`, and three established
    /// connections (passive IPv4 with window scaling, passive IPv6 without options,
    /// active IPv4 with every option).
    pub fn standard(seed: u64) -> World {
        let mut w = World::new(seed);
        let l4 = w.stack.tcp_listen(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 80), 4).expect("listen :80");
        let l6 = w.stack.tcp_listen(SocketAddr::new(STACK_V6.into(), 7), 2).expect("listen [fd00::2]:7");
        let u4 = w.stack.udp_bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 53)).expect("bind :53");
        let u6 = w.stack.udp_bind(SocketAddr::new(STACK_V6.into(), 5353)).expect("bind [fd00::2]:5353");
        w.keep_handle(l4);
        w.keep_handle(l6);
        w.keep_handle(u4);
        w.keep_handle(u6);
        let ws = TcpOptions { mss: Some(1400), window_scale: Some(3), ..TcpOptions::default() };
        w.establish_passive(l4, SocketAddr::new(STACK_V4.into(), 80), PEER_V4.into(), ws);
        w.establish_passive(l6, SocketAddr::new(STACK_V6.into(), 7), PEER_V6.into(), TcpOptions::default());
        let all = TcpOptions {
            mss: Some(1000),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            ..TcpOptions::default()
        };
        w.establish_active(SocketAddr::new(PEER2_V4.into(), 8080), all);
        w.check();
        w
    }

    fn pick_tuple(&self, sel: u8) -> Option<usize> {
        if self.tuples.is_empty() {
            None
        } else {
            Some(usize::from(sel) % self.tuples.len())
        }
    }

    /// Point a raw packet at tuple `ti`: addresses, ports (TCP/UDP behind a plain IP
    /// header) and, with `fix_len`, the IP length field.
    fn aim(&self, bytes: &mut [u8], ti: Option<usize>, fix_len: bool) {
        let Some(&first) = bytes.first() else { return };
        let t = ti.map(|i| &self.tuples[i]);
        let (v4, v6) = (first >> 4 == 4 && bytes.len() >= 20, first >> 4 == 6 && bytes.len() >= 40);
        let mut transport = None;
        if v4 {
            let (src, dst) = match t.map(|t| (t.remote.ip(), t.local.ip())) {
                Some((IpAddr::V4(s), IpAddr::V4(d))) => (s, d),
                _ => (PEER_V4, STACK_V4),
            };
            bytes[12..16].copy_from_slice(&src.octets());
            bytes[16..20].copy_from_slice(&dst.octets());
            if fix_len {
                let n = bytes.len().min(0xffff) as u16;
                bytes[2..4].copy_from_slice(&n.to_be_bytes());
            }
            transport = Some((bytes[9], usize::from(first & 0x0f) * 4));
        } else if v6 {
            let (src, dst) = match t.map(|t| (t.remote.ip(), t.local.ip())) {
                Some((IpAddr::V6(s), IpAddr::V6(d))) => (s, d),
                _ => (PEER_V6, STACK_V6),
            };
            bytes[8..24].copy_from_slice(&src.octets());
            bytes[24..40].copy_from_slice(&dst.octets());
            if fix_len {
                let n = (bytes.len() - 40).min(0xffff) as u16;
                bytes[4..6].copy_from_slice(&n.to_be_bytes());
            }
            transport = Some((bytes[6], 40));
        }
        if let (Some((proto, at)), Some(t)) = (transport, t) {
            if (proto == 6 || proto == 17) && at >= 20 && bytes.len() >= at + 4 {
                bytes[at..at + 2].copy_from_slice(&t.remote.port().to_be_bytes());
                bytes[at + 2..at + 4].copy_from_slice(&t.local.port().to_be_bytes());
            }
        }
    }

    pub fn run_step(&mut self, step: &Step) {
        match step {
            Step::Raw { fix, tuple, bytes } => {
                let mut b = bytes.clone();
                if fix & 2 != 0 {
                    let ti = self.pick_tuple(*tuple);
                    self.aim(&mut b, ti, fix & 4 != 0);
                }
                if fix & 1 != 0 {
                    fix_checksums(&mut b);
                }
                self.input(&b);
            }
            Step::Seg { tuple, spec } => {
                if let Some(ti) = self.pick_tuple(*tuple) {
                    self.segment(ti, spec);
                }
            }
            Step::Peer { tuple, act } => {
                if let Some(ti) = self.pick_tuple(*tuple) {
                    self.peer_act(ti, *act);
                }
            }
            Step::NewSyn { v6, port, isn, options, extra_flags, payload } => {
                let (local, peer): (IpAddr, IpAddr) =
                    if *v6 { (STACK_V6.into(), PEER2_V6.into()) } else { (STACK_V4.into(), PEER2_V4.into()) };
                self.new_syn(
                    SocketAddr::new(local, *port),
                    peer,
                    SeqNum(*isn),
                    *options,
                    *extra_flags,
                    usize::from(*payload),
                );
            }
            Step::Api(api) => self.run_api(api),
            Step::Time(t) => self.time_step(*t),
            Step::Udp { v6, port, len, frag } => {
                let (src, dst): (IpAddr, IpAddr) =
                    if *v6 { (PEER_V6.into(), STACK_V6.into()) } else { (PEER_V4.into(), STACK_V4.into()) };
                let payload: Vec<u8> = (0..*len).map(|i| i as u8).collect();
                let repr = UdpRepr { src_port: 5000, dst_port: *port, payload: &payload };
                let mut buf = vec![0; 48 + payload.len()];
                let n = wire::emit_udp(&mut buf, src, dst, &repr).expect("datagram fits");
                if *frag == 0 {
                    self.input(&buf[..n]);
                } else {
                    for piece in fragment_plan(&buf[..n], *frag, self.step as u32) {
                        self.input(&piece);
                    }
                }
            }
            Step::Icmp { v6, icmp_type, code, len, aim } => {
                let mut body: Vec<u8> = (0..*len).map(|i| (i * 3) as u8).collect();
                if aim % 2 == 1 && matches!((*v6, *icmp_type), (false, 3 | 11) | (true, 1..=3)) {
                    body = self.quote_for(*v6, *aim, body.len().min(64));
                }
                let mtu = 1280 + usize::from(*aim) * 4;
                let (src, dst): (IpAddr, IpAddr) =
                    if *v6 { (PEER_V6.into(), STACK_V6.into()) } else { (PEER_V4.into(), STACK_V4.into()) };
                let msg = match (*v6, *icmp_type) {
                    (false, 8) => IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 7, seq: 1, data: &body }),
                    (false, 0) => IcmpRepr::V4(IcmpV4Message::EchoReply { ident: 7, seq: 1, data: &body }),
                    (false, 3) if *code == 4 => {
                        IcmpRepr::V4(IcmpV4Message::FragNeeded { mtu: (mtu - 700) as u16, invoking: &body })
                    }
                    (false, 3) => IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: *code, invoking: &body }),
                    (false, 11) => IcmpRepr::V4(IcmpV4Message::TimeExceeded { code: *code, invoking: &body }),
                    (false, t) => IcmpRepr::V4(IcmpV4Message::Other { icmp_type: t, code: *code }),
                    (true, 128) => IcmpRepr::V6(IcmpV6Message::EchoRequest { ident: 7, seq: 1, data: &body }),
                    (true, 129) => IcmpRepr::V6(IcmpV6Message::EchoReply { ident: 7, seq: 1, data: &body }),
                    (true, 1) => IcmpRepr::V6(IcmpV6Message::DestUnreachable { code: *code, invoking: &body }),
                    (true, 2) => IcmpRepr::V6(IcmpV6Message::PacketTooBig { mtu: mtu as u32, invoking: &body }),
                    (true, 3) => IcmpRepr::V6(IcmpV6Message::TimeExceeded { code: *code, invoking: &body }),
                    (true, t) => IcmpRepr::V6(IcmpV6Message::Other { icmp_type: t, code: *code }),
                };
                let mut buf = vec![0; 48 + 8 + body.len()];
                let n = wire::emit_icmp(&mut buf, src, dst, &msg).expect("message fits");
                self.input(&buf[..n]);
            }
        }
    }

    /// The start of a packet the stack sent, as an ICMP error quotes it: on a live TCP
    /// tuple (the family's first, picked by `aim`) with a sequence number around its
    /// flight, else from the UDP socket of the family to a peer. At least `len` bytes.
    fn quote_for(&self, v6: bool, aim: u8, len: usize) -> Vec<u8> {
        let tcp: Vec<usize> = (0..self.tuples.len()).filter(|&i| self.tuples[i].local.is_ipv6() == v6).collect();
        let (local, remote, proto, seq) = match tcp.get(usize::from(aim >> 1) % tcp.len().max(1)) {
            Some(&ti) if aim & 2 == 0 => {
                let b = self.bases(ti);
                // From one before SND.UNA to one past SND.NXT.
                let flight = b.snd_nxt.0.wrapping_sub(b.snd_una.0).min(1 << 20);
                let seq = b.snd_una.0.wrapping_add(u32::from(aim >> 2) % (flight + 3)).wrapping_sub(1);
                (self.tuples[ti].local, self.tuples[ti].remote, 6, seq)
            }
            _ if v6 => (SocketAddr::new(STACK_V6.into(), 5353), SocketAddr::new(PEER_V6.into(), 5000), 17, 0),
            _ => (SocketAddr::new(STACK_V4.into(), 53), SocketAddr::new(PEER_V4.into(), 5000), 17, 0),
        };
        let mut q = match (local.ip(), remote.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = vec![0x45, 0, 5, 0xdc, 0, 0, 0x40, 0, 64, proto, 0, 0];
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut h = vec![0x60, 0, 0, 0, 5, 0xb4, proto, 64];
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h
            }
            _ => unreachable!("a tuple of one family"),
        };
        q.extend_from_slice(&local.port().to_be_bytes());
        q.extend_from_slice(&remote.port().to_be_bytes());
        q.extend_from_slice(&seq.to_be_bytes());
        q.resize(q.len().max(len), 0);
        q
    }

    /// An API call on a picked handle. A call for another kind of socket does not
    /// compile any more (typed handles), so a handle of the wrong kind skips the call.
    pub fn run_api(&mut self, api: &Api) {
        let h = |w: &World, sel: u8| w.pick_handle(sel);
        let tcp = |w: &World, sel: u8| match w.pick_handle(sel) {
            Some(AnyHandle::Tcp(h)) => Some(h),
            _ => None,
        };
        let udp = |w: &World, sel: u8| match w.pick_handle(sel) {
            Some(AnyHandle::Udp(h)) => Some(h),
            _ => None,
        };
        match *api {
            Api::Send { h: s, len } => {
                if let Some(h) = tcp(self, s) {
                    self.app_send(h, usize::from(len));
                }
            }
            Api::Recv { h: s, len } => {
                if let Some(h) = tcp(self, s) {
                    self.app_recv(h, usize::from(len));
                }
            }
            Api::Shutdown { h: s, how } => {
                if let Some(h) = tcp(self, s) {
                    let how = [Shutdown::Read, Shutdown::Write, Shutdown::Both][usize::from(how % 3)];
                    let _ = self.stack.tcp_shutdown(h, how);
                }
            }
            Api::Close { h: s } => {
                if let Some(h) = h(self, s) {
                    let _ = self.stack.close(h);
                }
            }
            Api::Abort { h: s } => {
                if let Some(h) = tcp(self, s) {
                    let _ = self.stack.tcp_abort(h);
                }
            }
            Api::Connect { remote, local } => {
                if let Ok(h) = self.stack.tcp_connect(self.now, remote, local) {
                    self.keep_handle(h);
                    let l = self.stack.local_addr(h).expect("a connected socket has a local address");
                    assert_eq!(self.stack.peer_addr(h).ok(), Some(remote));
                    self.add_tuple(l, remote, Some(h), SeqNum(0x3000_0000 ^ u32::from(l.port())));
                }
            }
            Api::Listen { local, backlog } => {
                if let Ok(h) = self.stack.tcp_listen(local, usize::from(backlog)) {
                    self.keep_handle(h);
                }
            }
            Api::Accept { h: s } => {
                if let Some(AnyHandle::Listener(l)) = h(self, s) {
                    if let Ok(c) = self.stack.tcp_accept(l) {
                        self.keep_handle(c);
                        let local = self.stack.local_addr(c).expect("local address");
                        let remote = self.stack.peer_addr(c).expect("peer address");
                        match self.tuple_index(local, remote) {
                            Some(i) => self.tuples[i].handle = Some(c),
                            None => {
                                self.add_tuple(local, remote, Some(c), SeqNum(0));
                            }
                        }
                    }
                }
            }
            Api::UdpBind { local } => {
                if let Ok(h) = self.stack.udp_bind(local) {
                    self.keep_handle(h);
                }
            }
            Api::UdpSendTo { h: s, len, dst } => {
                if let Some(h) = udp(self, s) {
                    let data = vec![0x55; usize::from(len)];
                    let _ = self.stack.udp_send_to(h, &data, dst);
                }
            }
            Api::UdpRecv { h: s, len } => {
                if let Some(h) = udp(self, s) {
                    let mut buf = vec![0; usize::from(len)];
                    if let Ok((n, _)) = self.stack.udp_recv_from(h, &mut buf) {
                        assert!(n <= buf.len());
                    }
                }
            }
            Api::UdpConnect { h: s, dst } => {
                if let Some(h) = udp(self, s) {
                    let _ = self.stack.udp_connect(h, dst);
                }
            }
            Api::UdpSend { h: s, len } => {
                if let Some(h) = udp(self, s) {
                    let data = vec![0xaa; usize::from(len)];
                    let _ = self.stack.udp_send(h, &data);
                }
            }
            Api::NoDelay { h: s, on } => {
                if let Some(h) = tcp(self, s) {
                    let _ = self.stack.tcp_set_nodelay(h, on);
                }
            }
            Api::Query { h: s } => {
                if let Some(h) = h(self, s) {
                    self.query(h);
                }
            }
        }
    }
}

/// Fuzz entry: a sequence of [`Step`]s against [`World::standard`]; invariants after every
/// step; no socket left at the end.
pub fn ingress(data: &[u8]) {
    let mut r = Reader::new(data);
    let seed = u64::from(r.u8());
    let mut w = World::standard(seed);
    w.strict_rx = false; // raw packets may carry any bytes
    while !r.is_empty() && w.step < MAX_STEPS {
        let step = Step::decode(&mut r);
        w.step += 1;
        w.run_step(&step);
        w.drain();
        w.check();
    }
    w.finish();
}

/// Cut a whole packet into fragments as `plan` says: the MTU (IPv4 68 to 1580 bytes,
/// IPv6 1280), bit 6 reverses the order, bit 7 leaves out the second fragment, both
/// add a first fragment with one byte changed before the real one (an overlap). The
/// identification varies with `ident`.
pub fn fragment_plan(packet: &[u8], plan: u8, ident: u32) -> Vec<Vec<u8>> {
    let v6 = packet[0] >> 4 == 6;
    let mtu = if v6 { 1280 } else { 68 + usize::from(plan % 64) * 24 };
    let mut pieces = Vec::new();
    let mut out = vec![0u8; mtu];
    let mut off = Some(0);
    while let Some(o) = off {
        let (n, next) = wire::frag::write_fragment(packet, o, mtu, ident, &mut out);
        pieces.push(out[..n].to_vec());
        off = next;
    }
    match plan >> 6 {
        1 => pieces.reverse(),
        2 if pieces.len() > 2 => {
            pieces.remove(1);
        }
        3 => {
            let mut evil = pieces[0].clone();
            let last = evil.len() - 1;
            evil[last] ^= 0x5a;
            pieces.insert(0, evil);
        }
        _ => {}
    }
    pieces
}

/// A fragment the stack emitted: parses as one, etherparse reads its IP header (and
/// the IPv4 header checksum verifies).
fn check_fragment(pkt: &[u8]) {
    let f =
        wire::frag::parse_fragment(pkt).unwrap_or_else(|e| panic!("our fragment does not parse: {e:?}\n{pkt:02x?}"));
    assert!(f.more || f.offset > 0, "an atomic fragment");
    if f.is_ipv6() {
        etherparse::Ipv6Slice::from_slice(pkt).unwrap_or_else(|e| panic!("etherparse rejects our fragment: {e:?}"));
    } else {
        let s =
            etherparse::Ipv4Slice::from_slice(pkt).unwrap_or_else(|e| panic!("etherparse rejects our fragment: {e:?}"));
        let sum = etherparse::checksum::Sum16BitWords::new().add_slice(s.header().slice()).ones_complement();
        assert_eq!(sum, 0, "IPv4 header checksum of our fragment");
        assert!(s.is_payload_fragmented());
    }
}

// ============================================================================ tcp_segments

/// One event against a single connection (the `tcp_segments` target and the state
/// machine property test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Seg(SegSpec),
    Peer(PeerAct),
    Write(u16),
    Read(u16),
    Time(TimeStep),
    Shutdown(Shutdown),
    Close,
    Abort,
    NoDelay(bool),
}

impl ConnEvent {
    pub fn decode(r: &mut Reader<'_>) -> ConnEvent {
        match r.u8() % 12 {
            0..=4 => ConnEvent::Seg(SegSpec::decode(r)),
            5 => ConnEvent::Peer(PeerAct::decode(r)),
            6 => ConnEvent::Write(r.u16() % 12_000),
            7 => ConnEvent::Read(r.u16() % 12_000),
            8 | 9 => ConnEvent::Time(TimeStep::decode(r)),
            _ => match r.u8() % 16 {
                0 => ConnEvent::Shutdown(Shutdown::Write),
                1 => ConnEvent::Shutdown(Shutdown::Read),
                2 => ConnEvent::Shutdown(Shutdown::Both),
                3 => ConnEvent::Close,
                4 => ConnEvent::Abort,
                5..=9 => ConnEvent::NoDelay(true),
                10..=12 => ConnEvent::NoDelay(false),
                _ => ConnEvent::Read(u16::MAX),
            },
        }
    }
}

/// How the single connection of [`ConnHarness`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnSetup {
    pub v6: bool,
    /// Opened by the stack (`tcp_connect`) rather than accepted.
    pub active: bool,
    /// The peer's SYN options.
    pub options: TcpOptions,
}

impl ConnSetup {
    pub fn decode(r: &mut Reader<'_>) -> ConnSetup {
        let b = r.u8();
        let options = match (b >> 2) % 6 {
            0 => TcpOptions::default(),
            1 => TcpOptions { mss: Some(r.u16()), ..TcpOptions::default() },
            2 => TcpOptions { window_scale: Some(r.u8()), ..TcpOptions::default() },
            3 => TcpOptions {
                mss: Some(1200),
                window_scale: Some(r.u8()),
                sack_permitted: true,
                timestamps: Some((5, 0)),
                ..TcpOptions::default()
            },
            _ => decode_std_options(r),
        };
        ConnSetup { v6: b & 1 != 0, active: b & 2 != 0, options }
    }
}

/// One established connection in a [`World`], driven by [`ConnEvent`]s.
pub struct ConnHarness {
    pub world: World,
    pub tuple: usize,
    pub handle: TcpHandle,
}

impl ConnHarness {
    pub fn new(setup: ConnSetup, seed: u64) -> ConnHarness {
        let mut w = World::new(seed);
        let (local_ip, peer_ip): (IpAddr, IpAddr) =
            if setup.v6 { (STACK_V6.into(), PEER_V6.into()) } else { (STACK_V4.into(), PEER_V4.into()) };
        let tuple = if setup.active {
            w.establish_active(SocketAddr::new(peer_ip, 8080), setup.options)
        } else {
            let local = SocketAddr::new(local_ip, 80);
            let l = w.stack.tcp_listen(local, 2).expect("listen");
            w.keep_handle(l);
            w.establish_passive(l, local, peer_ip, setup.options)
        };
        let handle = w.tuples[tuple].handle.expect("established with a handle");
        w.check();
        ConnHarness { world: w, tuple, handle }
    }

    pub fn apply(&mut self, ev: &ConnEvent) {
        let w = &mut self.world;
        w.step += 1;
        let h = self.handle;
        match ev {
            ConnEvent::Seg(spec) => w.segment(self.tuple, spec),
            ConnEvent::Peer(act) => w.peer_act(self.tuple, *act),
            ConnEvent::Write(n) => w.app_send(h, usize::from(*n)),
            ConnEvent::Read(n) => w.app_recv(h, usize::from(*n)),
            ConnEvent::Time(t) => w.time_step(*t),
            ConnEvent::Shutdown(how) => {
                let _ = w.stack.tcp_shutdown(h, *how);
            }
            ConnEvent::Close => {
                let _ = w.stack.close(h);
            }
            ConnEvent::Abort => {
                let _ = w.stack.tcp_abort(h);
            }
            ConnEvent::NoDelay(on) => {
                let _ = w.stack.tcp_set_nodelay(h, *on);
            }
        }
        w.drain();
        w.check();
    }

    pub fn finish(self) {
        self.world.finish()
    }
}

/// Fuzz entry: one established connection (set up by the first bytes), then
/// [`ConnEvent`]s; invariants after every event; no socket left at the end.
pub fn tcp_segments(data: &[u8]) {
    let mut r = Reader::new(data);
    let setup = ConnSetup::decode(&mut r);
    let mut c = ConnHarness::new(setup, 1);
    while !r.is_empty() && c.world.step < MAX_STEPS {
        let ev = ConnEvent::decode(&mut r);
        c.apply(&ev);
    }
    c.finish();
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World").field("now", &self.now).field("step", &self.step).field("tuples", &self.tuples).finish()
    }
}

// ============================================================================ seeds

fn packet_tcp(v6: bool, flags: TcpFlags, options: TcpOptions, payload: &[u8]) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) =
        if v6 { (PEER_V6.into(), STACK_V6.into()) } else { (PEER_V4.into(), STACK_V4.into()) };
    let repr = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq: SeqNum(1000),
        ack: SeqNum(if flags.ack() { 2000 } else { 0 }),
        flags,
        window: 65535,
        urgent: 0,
        options,
        payload,
    };
    let mut buf = vec![0; 100 + payload.len()];
    let n = wire::emit_tcp(&mut buf, src, dst, &repr).expect("fits");
    buf.truncate(n);
    buf
}

fn packet_udp(v6: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) =
        if v6 { (PEER_V6.into(), STACK_V6.into()) } else { (PEER_V4.into(), STACK_V4.into()) };
    let mut buf = vec![0; 48 + payload.len()];
    let n = wire::emit_udp(&mut buf, src, dst, &UdpRepr { src_port: 5000, dst_port: 53, payload }).expect("fits");
    buf.truncate(n);
    buf
}

fn packet_icmp(v6: bool, msg: &IcmpRepr<'_>) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) =
        if v6 { (PEER_V6.into(), STACK_V6.into()) } else { (PEER_V4.into(), STACK_V4.into()) };
    let mut buf = vec![0; 1500];
    let n = wire::emit_icmp(&mut buf, src, dst, msg).expect("fits");
    buf.truncate(n);
    buf
}

/// An IPv6 TCP SYN behind a hop-by-hop and a destination-options header.
fn packet_v6_ext_headers() -> Vec<u8> {
    let plain = packet_tcp(true, TcpFlags::SYN, TcpOptions { mss: Some(1440), ..TcpOptions::default() }, &[]);
    let (header, tcp) = plain.split_at(40);
    let mut p = header.to_vec();
    p[6] = 0; // hop-by-hop
    p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // -> destination options, PadN
    p.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // -> TCP, PadN
    p.extend_from_slice(tcp);
    let n = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&n.to_be_bytes());
    fix_checksums(&mut p);
    p
}

/// An IPv4 UDP datagram with a 4-byte IP option (IHL 6) and link padding after it.
fn packet_v4_options_padding() -> Vec<u8> {
    let plain = packet_udp(false, b"hello");
    let mut p = plain[..20].to_vec();
    p[0] = 0x46;
    p.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    p.extend_from_slice(&plain[20..]);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0; 6]); // trailing link padding, outside the total length
    fix_checksums(&mut p);
    p
}

/// The seed corpus of a target: (file name, bytes). Written to `fuzz/corpus/<target>/`
/// by the ignored test `write_seed_corpus` in `tests/fuzz_replay.rs`, and replayed by
/// that file on every `cargo test`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(&str, Vec<u8>)> = Vec::new();
    match target {
        "parse" => {
            let syn_opts = TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((12345, 0)),
                ..TcpOptions::default()
            };
            v.push(("v4-tcp-syn", packet_tcp(false, TcpFlags::SYN, syn_opts, &[])));
            v.push(("v6-tcp-syn", packet_tcp(true, TcpFlags::SYN, syn_opts, &[])));
            v.push((
                "v4-tcp-data",
                packet_tcp(false, TcpFlags::ACK | TcpFlags::PSH, TcpOptions::default(), b"GET / HTTP/1.0\r\n\r\n"),
            ));
            let mut sack = TcpOptions { timestamps: Some((7, 8)), ..TcpOptions::default() };
            sack.sack.push(SeqNum(3000), SeqNum(4000));
            sack.sack.push(SeqNum(5000), SeqNum(6000));
            v.push(("v6-tcp-sack-ts", packet_tcp(true, TcpFlags::ACK, sack, b"x")));
            v.push((
                "v4-tcp-fin-rst",
                packet_tcp(false, TcpFlags::FIN | TcpFlags::RST | TcpFlags::ACK, TcpOptions::default(), &[]),
            ));
            v.push(("v4-udp", packet_udp(false, b"query")));
            v.push(("v6-udp", packet_udp(true, b"query")));
            v.push((
                "v4-icmp-echo",
                packet_icmp(false, &IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 1, seq: 2, data: b"ping" })),
            ));
            v.push((
                "v6-icmp-echo",
                packet_icmp(true, &IcmpRepr::V6(IcmpV6Message::EchoRequest { ident: 1, seq: 2, data: b"ping" })),
            ));
            let quoted = packet_udp(false, b"q");
            v.push((
                "v4-icmp-unreach",
                packet_icmp(false, &IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: 3, invoking: &quoted })),
            ));
            v.push((
                "v6-icmp-too-big",
                packet_icmp(true, &IcmpRepr::V6(IcmpV6Message::PacketTooBig { mtu: 1280, invoking: &quoted })),
            ));
            v.push(("v6-ext-headers", packet_v6_ext_headers()));
            v.push(("v4-options-padding", packet_v4_options_padding()));
            let mut frag = packet_udp(false, b"frag");
            frag[6] = 0x20; // MF
            fix_checksums(&mut frag);
            v.push(("v4-fragment", frag));
            v.push(("truncated", packet_tcp(false, TcpFlags::SYN, syn_opts, &[])[..30].to_vec()));
        }
        "ingress" => {
            // Step tags (byte % 12): 0 raw, 2 seg, 5 peer, 6 new SYN, 7 api, 9 time,
            // 10 udp, 11 icmp. Handles 0..=6: listeners :80 and :7, UDP :53 and :5353,
            // then the three connections; tuples 0..=2 the connections.
            let mut w = Writer::default();
            w.u8(0); // seed
            w.u8(5).u8(0).u8(1).u8(3).u16(300).u8(1); // peer data 300 bytes on tuple 0
            w.u8(9).u8(1); // +1 ms
            w.u8(7).u8(1).u8(4).u16(1000); // recv 1000 on handle 4
            w.u8(7).u8(0).u8(4).u16(2000); // send 2000 on handle 4
            w.u8(9).u8(5); // to the next deadline
            w.u8(5).u8(0).u8(1).u8(0); // peer ACKs everything
            w.u8(7).u8(3).u8(4); // close handle 4
            w.u8(9).u8(5).u8(9).u8(5).u8(9).u8(5);
            v.push(("data-and-close", w.out.clone()));

            let mut w = Writer::default();
            w.u8(1);
            w.u8(6).u8(0).u8(0).u32(777).u8(1).u8(0x0f).u16(1200).u8(5).u32(1).u32(0).u8(1).u8(1); // SYN to :80 with options
            w.u8(5).u8(3).u8(1).u8(0); // peer ACKs the SYN-ACK (tuple 3)
            w.u8(7).u8(7).u8(0); // accept on the :80 listener
            w.u8(7).u8(0).u8(7).u16(100); // send on the new connection
            w.u8(9).u8(5);
            v.push(("syn-accept", w.out.clone()));

            let mut w = Writer::default();
            w.u8(2);
            let seg = packet_tcp(false, TcpFlags::ACK | TcpFlags::PSH, TcpOptions::default(), b"raw data");
            w.u8(0).u8(7).u8(0).u16(seg.len() as u16).bytes(&seg); // raw, aimed at tuple 0, fixed
            w.u8(0).u8(0).u8(0).u16(20).bytes(&[0x45; 20]); // raw garbage
            w.u8(10).u8(0).u8(0).u16(12).u8(0); // UDP to :53
            w.u8(7).u8(10).u8(2).u16(100); // udp recv on handle 2
            w.u8(10).u8(1).u8(3).u16(99).u16(4).u8(0); // UDP to a closed port -> port unreachable
            w.u8(11).u8(0).u8(0).u16(56).u8(0); // ping
            w.u8(11).u8(1).u8(0).u16(56).u8(0); // ping6
            v.push(("raw-udp-icmp", w.out.clone()));

            // IP fragments: in reverse order (MTU 308), one missing (then the reassembly
            // timeout and its time exceeded), an overlap, IPv6 in order.
            let mut w = Writer::default();
            w.u8(4);
            w.u8(10).u8(0).u8(0).u16(1400).u8(0x40 | 10);
            w.u8(7).u8(10).u8(2).u16(1500); // udp recv on handle 2
            w.u8(10).u8(0).u8(0).u16(1000).u8(0x80 | 3);
            w.u8(10).u8(0).u8(0).u16(1000).u8(0xc0 | 5);
            w.u8(10).u8(1).u8(1).u16(1500).u8(1); // IPv6 to :5353
            w.u8(9).u8(5).u8(9).u8(5).u8(9).u8(5);
            v.push(("fragments", w.out.clone()));

            // ICMP errors quoting live connections: data in flight on tuple 0, then a
            // fragmentation needed (MTU 584) quoting SND.UNA, a port unreachable on the
            // UDP socket, a packet too big for the IPv6 tuple, a forged one.
            let mut w = Writer::default();
            w.u8(5);
            w.u8(7).u8(0).u8(4).u16(3000); // send 3000 on handle 4 (tuple 0)
            w.u8(11).u8(0).u8(2).u8(3).u8(4).u16(60).u8(1 | (1 << 2)); // frag needed, seq SND.UNA
            w.u8(9).u8(1);
            w.u8(5).u8(0).u8(1).u8(0); // peer ACKs everything
            w.u8(11).u8(0).u8(2).u8(3).u8(3).u16(60).u8(3); // port unreachable, UDP quote
            w.u8(11).u8(1).u8(2).u8(2).u8(0).u16(60).u8(1 | (40 << 2)); // packet too big, IPv6
            w.u8(11).u8(0).u8(2).u8(3).u8(1).u16(60).u8(1 | (200 << 2)); // host unreachable, seq out of flight
            w.u8(9).u8(5).u8(9).u8(5);
            v.push(("icmp-errors", w.out.clone()));

            let mut w = Writer::default();
            w.u8(3);
            w.u8(7).u8(5).u8(0).u8(0).u8(0); // connect to 10.0.0.1:8080
            w.u8(5).u8(3).u8(1).u8(6).u8(0); // SYN-ACK from the peer on tuple 3
            w.u8(7).u8(2).u8(6).u8(1); // shutdown(Write) on the active connection
            w.u8(2).u8(2); // a segment on tuple 2:
            SegSpec::encode_plain(&mut w, TcpFlags::ACK.0 | TcpFlags::FIN.0, 0);
            w.u8(9).u8(4).u16(5000);
            v.push(("connect-shutdown", w.out.clone()));
        }
        "tcp_segments" => {
            // Setup byte: bit 0 IPv6, bit 1 active open, (b >> 2) % 6 the peer's options.
            // Event tags (byte % 12): 0 seg, 5 peer, 6 write, 7 read, 8 time, 10 app.
            let mut w = Writer::default();
            w.u8(0);
            w.u8(6).u16(1000).u8(8).u8(5).u8(5).u8(1).u8(0); // write, deadline, ACK all
            w.u8(0);
            SegSpec::encode_plain(&mut w, (TcpFlags::ACK | TcpFlags::PSH).0, 100);
            w.u8(7).u16(200); // read
            w.u8(10).u8(3); // close
            w.u8(8).u8(5).u8(8).u8(5).u8(8).u8(5);
            v.push(("passive-v4-data-close", w.out.clone()));

            let mut w = Writer::default();
            w.u8(3 | (3 << 2)).u8(7); // active, IPv6, full options with window scale 7
            w.u8(0);
            SegSpec::encode_plain(&mut w, TcpFlags::ACK.0, 0);
            w.u8(6).u16(9000); // more than the send buffer
            w.u8(8).u8(3).u8(8).u8(3).u8(8).u8(3);
            w.u8(5).u8(0).u16(0).u8(0); // peer ACK with a zero window
            w.u8(8).u8(5).u8(8).u8(5).u8(8).u8(5); // persist timer
            w.u8(5).u8(1).u8(0); // window opens
            w.u8(8).u8(5);
            v.push(("active-v6-zero-window", w.out.clone()));

            let mut w = Writer::default();
            w.u8(2 << 2).u8(2); // passive IPv4, window scale 2
            w.u8(5).u8(1).u8(3).u16(5000).u8(0); // peer data beyond the window, with FIN
            w.u8(7).u16(u16::MAX);
            w.u8(5).u8(1).u8(3).u16(2000).u8(0);
            w.u8(10).u8(0); // shutdown(Write)
            w.u8(5).u8(1).u8(0);
            w.u8(8).u8(5);
            v.push(("passive-v4-ws-fin", w.out.clone()));

            for (name, flags) in [
                ("flags-syn", TcpFlags::SYN.0),
                ("flags-rst", TcpFlags::RST.0),
                ("flags-syn-fin", (TcpFlags::SYN | TcpFlags::FIN).0),
                ("flags-rst-ack", (TcpFlags::RST | TcpFlags::ACK).0),
                ("flags-urg", (TcpFlags::URG | TcpFlags::ACK).0),
                ("flags-all", 0xff),
            ] {
                let mut w = Writer::default();
                w.u8(0);
                w.u8(0);
                SegSpec::encode_plain(&mut w, flags, 10);
                w.u8(8).u8(5);
                v.push((name, w.out.clone()));
            }
        }
        "offload" => offload_seeds(&mut v),
        "shards" => shards_seeds(&mut v),
        _ => panic!("unknown fuzz target {target}"),
    }
    v.into_iter().map(|(n, b)| (format!("seed-{n}"), b)).collect()
}

/// A fuzz target's entry function.
pub type Entry = fn(&[u8]);

/// The targets, by the names cargo-fuzz knows them by.
pub const TARGETS: [(&str, Entry); 5] =
    [("parse", parse), ("ingress", ingress), ("tcp_segments", tcp_segments), ("offload", offload), ("shards", shards)];

// ============================================================================ offload

/// The `offload` target. Input: a mode byte (bit 0: make the IP length field match the
/// packet, so that mutations reach the cutting code; bits 1..: the MTU), the 10 bytes
/// of a virtio-net header, then the packet.
pub fn offload(data: &[u8]) {
    use tunstack::runtime::device::offload::{complete_checksum, ingest, Coalescer, VnetHdr, VNET_HDR_LEN};
    let Some((&mode, rest)) = data.split_first() else { return };
    let Some(hdr) = VnetHdr::parse(rest) else { return };
    let mut pkt = rest[VNET_HDR_LEN..].to_vec();
    if mode & 1 != 0 {
        fix_ip_length(&mut pkt);
    }
    let max_len = if mode >> 1 == 0x7f { 65535 } else { 68 + usize::from(mode >> 1) * 16 };
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut scratch = Vec::new();
    let mut lazy: Vec<Vec<u8>> = Vec::new();
    let lazy_done = ingest(&hdr, &mut pkt.clone(), max_len, &mut scratch, false, |s| lazy.push(s.to_vec()));
    let Ok(done) = ingest(&hdr, &mut pkt, max_len, &mut scratch, true, |s| segs.push(s.to_vec())) else {
        assert!(lazy_done.is_err(), "accepted without checksums only");
        return;
    };
    // Left partial and completed later: the same packets (what the device's `recv`
    // does for middleware that wants complete checksums).
    let lazy_done = lazy_done.expect("accepted with checksums only");
    if let Some((start, offset)) = lazy_done.partial {
        for p in &mut lazy {
            complete_checksum(p, start, offset).expect("offsets checked by ingest");
        }
    }
    assert_eq!(lazy, segs, "partial checksums completed later differ");
    assert_eq!(done.segments, segs.len());
    for s in &segs {
        assert!(s.len() <= max_len, "a segment of {} bytes past the MTU {max_len}", s.len());
        if done.split {
            assert!(tcp_checksums_ok(s), "a cut segment with a bad checksum: {s:02x?}");
        }
    }
    // Coalesce what came out and cut it again: the same segments.
    let mut merged: Vec<Vec<u8>> = Vec::new();
    let mut co = Coalescer::with_udp();
    let mut emit = |b: &[u8]| merged.push(b.to_vec());
    for s in &segs {
        co.push(s, &mut emit);
    }
    co.flush(&mut emit);
    let mut again: Vec<Vec<u8>> = Vec::new();
    for m in &merged {
        let h = VnetHdr::parse(m).expect("the coalescer writes a whole header");
        let mut p = m[VNET_HDR_LEN..].to_vec();
        ingest(&h, &mut p, 65535, &mut scratch, true, |s| again.push(s.to_vec()))
            .expect("the coalescer's output is accepted");
    }
    assert_eq!(again, segs, "cut(coalesce(segments)) differs");
}

/// Set the IPv4 total length or IPv6 payload length to what the buffer holds.
fn fix_ip_length(pkt: &mut [u8]) {
    let len = pkt.len().min(65535);
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes()),
        Some(6) if pkt.len() >= 40 => pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes()),
        _ => {}
    }
}

/// The IPv4 header checksum (if IPv4) and the TCP or UDP checksum of a segment verify.
fn tcp_checksums_ok(p: &[u8]) -> bool {
    use tunstack::wire::checksum::{accumulate, verify};
    let (ip_len, pseudo) = match p[0] >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 15) * 4;
            if !verify(accumulate(0, &p[..ihl])) {
                return false;
            }
            (ihl, accumulate((p.len() - ihl) as u64 + u64::from(p[9]), &p[12..20]))
        }
        _ => (40, accumulate((p.len() - 40) as u64 + u64::from(p[6]), &p[8..40])),
    };
    verify(accumulate(pseudo, &p[ip_len..]))
}

/// Seeds of the `offload` target: super-segments as the kernel hands them over.
fn offload_seeds(v: &mut Vec<(&'static str, Vec<u8>)>) {
    use tunstack::runtime::device::offload::{VnetHdr, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6};
    let ts = TcpOptions { timestamps: Some((7, 8)), ..TcpOptions::default() };
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    for (name, v6, gso_type, flags, gso_size, csum) in [
        ("gso-v4", false, GSO_TCPV4, F_NEEDS_CSUM, 1000u16, true),
        ("gso-v6-odd-size", true, GSO_TCPV6, F_NEEDS_CSUM, 777, true),
        ("needs-csum", false, GSO_NONE, F_NEEDS_CSUM, 0, true),
        ("bad-csum-start", false, GSO_NONE, F_NEEDS_CSUM, 0, false),
    ] {
        let pkt = packet_tcp(
            v6,
            TcpFlags::ACK | TcpFlags::PSH,
            ts,
            if gso_type == GSO_NONE { &payload[..500] } else { &payload },
        );
        let ip_len: u16 = if v6 { 40 } else { 20 };
        let hdr = VnetHdr {
            flags,
            gso_type,
            hdr_len: ip_len + 32,
            gso_size,
            csum_start: if csum { ip_len } else { 9000 },
            csum_offset: 16,
        };
        let mut input = vec![0x7f << 1];
        input.extend_from_slice(&hdr.to_bytes());
        input.extend_from_slice(&pkt);
        v.push((name, input));
    }
    // A UDP super-datagram (USO): one header for 3000 bytes of 700-byte datagrams.
    use tunstack::runtime::device::offload::GSO_UDP_L4;
    let mut pkt = vec![0u8; 3100];
    let repr = UdpRepr { src_port: 5353, dst_port: 53, payload: &payload };
    let n = wire::emit_udp(&mut pkt, PEER_V4.into(), STACK_V4.into(), &repr).expect("emit");
    pkt.truncate(n);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 28,
        gso_size: 700,
        csum_start: 20,
        csum_offset: 6,
    };
    let mut input = vec![0x7f << 1];
    input.extend_from_slice(&hdr.to_bytes());
    input.extend_from_slice(&pkt);
    v.push(("uso-v4", input));
}

// ============================================================================ shards

/// Two shards of one address (`Config::shard`) and a peer, with a device that puts the
/// peer's packets on whichever queue the input says. The rule under test: a shard that
/// does not own a packet leaves it alone (nothing but `shard_handoffs` changes) and
/// names the owner, which takes it; a reassembled datagram comes out of `poll_foreign`
/// for its owner, which takes it; invariants hold in both shards after every step, and
/// no shard sends an RST for a segment of a connection the other shard holds.
struct ShardWorld {
    peer: Stack,
    shards: [Stack; 2],
    now: Instant,
    peer_conns: Vec<TcpHandle>,
}

/// The `shards` target. Input: a seed byte, then steps: an op byte, and the op's bytes.
pub fn shards(data: &[u8]) {
    use tunstack::shard::Shard;
    let mut r = Reader::new(data);
    let seed = u64::from(r.u8());
    let key = tunstack::rand::SipKey(seed | 1, !seed);
    let shard = |i: u16| Stack::new(fuzz_config(seed + 1 + u64::from(i)).with(|c| c.shard = Shard::new(i, 2, key)));
    let mut peer_cfg = fuzz_config(seed + 9);
    peer_cfg.addrs = vec![IpAddr::V4(PEER_V4), IpAddr::V6(PEER_V6)];
    let mut w = ShardWorld {
        peer: Stack::new(peer_cfg),
        shards: [shard(0), shard(1)],
        now: Instant::ZERO,
        peer_conns: Vec::new(),
    };
    for port in [80, 81] {
        for v6 in [false, true] {
            let addr = SocketAddr::new(if v6 { STACK_V6.into() } else { STACK_V4.into() }, port);
            for s in &mut w.shards {
                s.tcp_listen(addr, 16).expect("listen in every shard");
            }
        }
    }
    let mut steps = 0;
    while !r.is_empty() && steps < 200 {
        steps += 1;
        let op = r.u8();
        let queue = usize::from(op >> 7);
        match op & 0x07 {
            // A raw packet (checksums repaired on request) to queue `queue`.
            0 | 1 => {
                let len = usize::from(r.u8());
                let mut pkt = r.bytes(len).to_vec();
                if op & 0x08 != 0 {
                    fix_checksums(&mut pkt);
                }
                w.deliver(queue, &pkt);
            }
            // The peer connects to one of the ports (v4 or v6).
            2 => {
                let v6 = op & 0x08 != 0;
                let port = 80 + u16::from(op & 0x10 != 0);
                let dst = SocketAddr::new(if v6 { STACK_V6.into() } else { STACK_V4.into() }, port);
                if let Ok(c) = w.peer.tcp_connect(w.now, dst, None) {
                    w.peer_conns.push(c);
                }
            }
            // The peer sends on one of its connections.
            3 => {
                if !w.peer_conns.is_empty() {
                    let c = w.peer_conns[usize::from(r.u8()) % w.peer_conns.len()];
                    let n = usize::from(r.u8()) * 16;
                    let _ = w.peer.tcp_send(c, &vec![0x61; n]);
                }
            }
            // The shards accept, echo what they read, and sometimes close.
            4 => {
                for i in 0..2 {
                    // What an application holds: listeners and accepted connections (not
                    // those still queued under a listener).
                    let socks: Vec<_> = w.shards[i].sockets().into_iter().filter(|r| r.owner == Owner::App).collect();
                    for row in socks {
                        match w.shards[i].resolve(row.handle) {
                            Some(AnyHandle::Listener(l)) => while w.shards[i].tcp_accept(l).is_ok() {},
                            Some(AnyHandle::Tcp(h)) => {
                                let mut buf = [0u8; 512];
                                if let Ok(n @ 1..) = w.shards[i].tcp_recv(h, &mut buf) {
                                    let _ = w.shards[i].tcp_send(h, &buf[..n]);
                                }
                                if op & 0x08 != 0 {
                                    let _ = w.shards[i].close(h);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Time passes.
            5 => {
                w.now += std::time::Duration::from_millis(u64::from(r.u8()) * 4);
                w.peer.handle_timeout(w.now);
                for s in &mut w.shards {
                    s.handle_timeout(w.now);
                }
            }
            // The peer's next packet, cut into fragments, to queue `queue`.
            6 => {
                let mut buf = vec![0u8; 1500];
                if let Some(n) = w.peer.poll_transmit(w.now, &mut buf) {
                    let plan = r.u8();
                    for f in fragment_plan(&buf[..n], plan, u32::from(r.u16())) {
                        w.deliver(queue, &f);
                    }
                }
            }
            // Deliver everything pending, the peer's packets alternating between queues.
            _ => w.pump(op & 0x08 != 0),
        }
        w.check();
    }
    w.pump(false);
    w.check();
}

impl ShardWorld {
    fn deliver(&mut self, queue: usize, pkt: &[u8]) {
        use tunstack::shard::Input;
        let before = self.shards[queue].stats().clone();
        if let Input::Elsewhere(owner) = self.shards[queue].input(self.now, pkt) {
            let mut expected = before;
            expected.shard_handoffs += 1;
            assert_eq!(self.shards[queue].stats(), &expected, "a packet left elsewhere changed this shard");
            let owner = usize::from(owner);
            assert!(owner < 2 && owner != queue, "owner {owner} named by shard {queue}");
            assert_eq!(self.shards[owner].input(self.now, pkt), Input::Done, "the owner passes it on");
        }
        for q in 0..2 {
            while let Some((owner, datagram)) = self.shards[q].poll_foreign() {
                assert_eq!(self.shards[usize::from(owner)].input(self.now, &datagram), Input::Done);
            }
        }
    }

    /// Move packets until quiet (or a bound): the peer's to the queues alternately
    /// (`swap`: starting with queue 1), the shards' to the peer.
    fn pump(&mut self, swap: bool) {
        let mut buf = vec![0u8; 1500];
        let mut q = usize::from(swap);
        for _ in 0..64 {
            let mut moved = false;
            while let Some(n) = self.peer.poll_transmit(self.now, &mut buf) {
                let pkt = buf[..n].to_vec();
                self.deliver(q, &pkt);
                q ^= 1;
                moved = true;
            }
            for i in 0..2 {
                while let Some(n) = self.shards[i].poll_transmit(self.now, &mut buf) {
                    let _ = self.peer.input(self.now, &buf[..n]);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn check(&self) {
        for (i, s) in self.shards.iter().enumerate() {
            if let Err(e) = s.check_invariants() {
                panic!("shard {i}: invariant violated: {e}");
            }
            // A shard only holds connections it owns.
            let rule = s.config().shard.expect("a shard");
            for row in s.sockets() {
                if let (tunstack::Protocol::Tcp, Some(remote)) = (row.protocol, row.remote) {
                    assert_eq!(rule.tcp_owner(row.local, remote), rule.index(), "shard {i} holds {row:?}");
                }
            }
        }
        self.peer.check_invariants().expect("the peer's invariants");
    }
}

fn shards_seeds(v: &mut Vec<(&'static str, Vec<u8>)>) {
    // Connect on v4 and v6, exchange, send data, echo, time, close.
    v.push(("connect-echo", vec![1, 2, 0x0a, 0x12, 7, 4, 7, 3, 0, 8, 7, 4, 7, 5, 10, 7, 0x0c, 7, 5, 200, 7]));
    // A SYN in fragments to the wrong queue, then the rest.
    v.push(("fragmented-syn", vec![2, 2, 6, 40, 0, 1, 7, 4, 7, 0x87, 5, 50, 7]));
    // Raw bytes with repaired checksums: a bare TCP header from the peer.
    let mut raw = vec![3, 0x08, 40];
    raw.extend_from_slice(&packet_tcp(false, TcpFlags::ACK, TcpOptions::default(), &[])[..40]);
    raw.extend_from_slice(&[7]);
    v.push(("raw-ack", raw));
}
