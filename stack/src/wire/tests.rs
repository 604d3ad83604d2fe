//! Whole-packet tests of the wire layer: cross-checks against etherparse (an independent
//! parser and builder) and property tests (round trips, truncation, bit flips, garbage).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    Icmpv4Type, Icmpv6Type, IpHeaders, IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader, NetSlice, PacketBuilder,
    SlicedPacket, TcpOptionElement, TransportSlice,
};
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::seq::SeqNum;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn emit(src: IpAddr, dst: IpAddr, hop: u8, t: Transport<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = ip::emit_packet(&mut buf, src, dst, hop, t).expect("emit");
    buf.truncate(n);
    buf
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

fn octets4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("not v4"),
    }
}

fn octets6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => panic!("not v6"),
    }
}

/// The options we expect to read back after emitting `o`: window scale clamped to 14
/// (RFC 7323 2.3) and SACK blocks cut to what fits in 40 bytes, restated from the
/// documented layout rather than computed by the code under test.
fn expected_after_round_trip(o: &TcpOptions) -> TcpOptions {
    let mut e = *o;
    e.window_scale = o.window_scale.map(|w| w.min(14));
    e.sack = sack_that_fits(o);
    e
}

fn sack_that_fits(o: &TcpOptions) -> SackBlocks {
    let mut used = 0;
    if o.mss.is_some() {
        used += 4;
    }
    if o.window_scale.is_some() {
        used += 4;
    }
    used += match (o.sack_permitted, o.timestamps.is_some()) {
        (_, true) => 12,
        (true, false) => 4,
        (false, false) => 0,
    };
    let fit = (40 - used - 4) / 8;
    let mut s = SackBlocks::default();
    for &(l, r) in o.sack.as_slice().iter().take(fit) {
        s.push(l, r);
    }
    s
}

/// Options as etherparse reads them, mapped to our representation (no clamping).
fn etherparse_options(iter: etherparse::TcpOptionsIterator<'_>) -> TcpOptions {
    let mut o = TcpOptions::default();
    for el in iter {
        match el.expect("etherparse option") {
            TcpOptionElement::Noop => {}
            TcpOptionElement::MaximumSegmentSize(m) => o.mss = Some(m),
            TcpOptionElement::WindowScale(w) => o.window_scale = Some(w),
            TcpOptionElement::SelectiveAcknowledgementPermitted => o.sack_permitted = true,
            TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                let mut s = SackBlocks::default();
                s.push(SeqNum(first.0), SeqNum(first.1));
                for (l, r) in rest.iter().flatten() {
                    s.push(SeqNum(*l), SeqNum(*r));
                }
                o.sack = s;
            }
            TcpOptionElement::Timestamp(a, b) => o.timestamps = Some((a, b)),
        }
    }
    o
}

/// Check an emitted packet with etherparse: IP fields, checksums computed by
/// etherparse, and the transport fields of `expect`.
fn etherparse_agrees(pkt: &[u8], src: IpAddr, dst: IpAddr, hop: u8, expect: &Transport<'_>) {
    let sliced = SlicedPacket::from_ip(pkt).expect("etherparse accepts our packet");
    match sliced.net.as_ref().expect("ip layer") {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            assert_eq!(h.version(), 4);
            assert_eq!(h.ihl(), 5);
            assert_eq!(h.source_addr(), Ipv4Addr::from(octets4(src)));
            assert_eq!(h.destination_addr(), Ipv4Addr::from(octets4(dst)));
            assert_eq!(h.ttl(), hop);
            assert_eq!(usize::from(h.total_len()), pkt.len());
            assert!(h.dont_fragment());
            assert!(!h.more_fragments());
            assert_eq!(h.identification(), 0);
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            assert_eq!(h.version(), 6);
            assert_eq!(h.traffic_class(), 0);
            assert_eq!(h.flow_label().value(), 0);
            assert_eq!(h.source(), octets6(src));
            assert_eq!(h.destination(), octets6(dst));
            assert_eq!(h.hop_limit(), hop);
            assert_eq!(usize::from(h.payload_length()), pkt.len() - 40);
        }
        NetSlice::Arp(_) => panic!("arp"),
    }
    let transport = sliced.transport.as_ref().expect("transport");
    match (transport, expect) {
        (TransportSlice::Tcp(t), Transport::Tcp(e)) => {
            assert_eq!(t.source_port(), e.src_port);
            assert_eq!(t.destination_port(), e.dst_port);
            assert_eq!(t.sequence_number(), e.seq.0);
            assert_eq!(t.acknowledgment_number(), e.ack.0);
            let f = e.flags;
            assert_eq!(
                [t.fin(), t.syn(), t.rst(), t.psh(), t.ack(), t.urg(), t.ece(), t.cwr(), t.ns()],
                [f.fin(), f.syn(), f.rst(), f.psh(), f.ack(), f.urg(), f.0 & 0x40 != 0, f.0 & 0x80 != 0, false]
            );
            assert_eq!(t.window_size(), e.window);
            assert_eq!(t.urgent_pointer(), e.urgent);
            assert_eq!(usize::from(t.data_offset()) * 4, e.header_len());
            assert_eq!(t.payload(), e.payload);
            let mut want = e.options;
            want.sack = sack_that_fits(&e.options);
            assert_eq!(etherparse_options(t.options_iterator()), want);
            let theirs = match src {
                IpAddr::V4(_) => t.calc_checksum_ipv4(octets4(src), octets4(dst)),
                IpAddr::V6(_) => t.calc_checksum_ipv6(octets6(src), octets6(dst)),
            };
            assert_eq!(t.checksum(), theirs.unwrap());
        }
        (TransportSlice::Udp(u), Transport::Udp(e)) => {
            assert_eq!(u.source_port(), e.src_port);
            assert_eq!(u.destination_port(), e.dst_port);
            assert_eq!(usize::from(u.length()), 8 + e.payload.len());
            assert_eq!(u.payload(), e.payload);
            let h = u.to_header();
            let theirs = match src {
                IpAddr::V4(_) => h.calc_checksum_ipv4_raw(octets4(src), octets4(dst), e.payload),
                IpAddr::V6(_) => h.calc_checksum_ipv6_raw(octets6(src), octets6(dst), e.payload),
            };
            assert_eq!(u.checksum(), theirs.unwrap());
        }
        (TransportSlice::Icmpv4(i), Transport::Icmp(IcmpRepr::V4(e))) => {
            let h = i.header();
            assert_eq!(h.checksum, h.icmp_type.calc_checksum(i.payload()));
            match (i.icmp_type(), e) {
                (Icmpv4Type::EchoRequest(x), IcmpV4Message::EchoRequest { ident, seq, data })
                | (Icmpv4Type::EchoReply(x), IcmpV4Message::EchoReply { ident, seq, data }) => {
                    assert_eq!((x.id, x.seq, i.payload()), (*ident, *seq, *data));
                }
                (_, IcmpV4Message::DestUnreachable { code, invoking }) => {
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (3, *code, [0; 4]));
                    assert_eq!(i.payload(), *invoking);
                }
                (_, IcmpV4Message::FragNeeded { mtu, invoking }) => {
                    let m = mtu.to_be_bytes();
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (3, 4, [0, 0, m[0], m[1]]));
                    assert_eq!(i.payload(), *invoking);
                }
                (_, IcmpV4Message::TimeExceeded { code, invoking }) => {
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (11, *code, [0; 4]));
                    assert_eq!(i.payload(), *invoking);
                }
                (_, IcmpV4Message::Other { icmp_type, code }) => {
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (*icmp_type, *code, [0; 4]));
                    assert!(i.payload().is_empty());
                }
                (got, want) => panic!("icmpv4 mismatch: {got:?} vs {want:?}"),
            }
        }
        (TransportSlice::Icmpv6(i), Transport::Icmp(IcmpRepr::V6(e))) => {
            let theirs = i.icmp_type().calc_checksum(octets6(src), octets6(dst), i.payload()).unwrap();
            assert_eq!(i.checksum(), theirs);
            assert!(i.is_checksum_valid(octets6(src), octets6(dst)));
            match (i.icmp_type(), e) {
                (Icmpv6Type::EchoRequest(x), IcmpV6Message::EchoRequest { ident, seq, data })
                | (Icmpv6Type::EchoReply(x), IcmpV6Message::EchoReply { ident, seq, data }) => {
                    assert_eq!((x.id, x.seq, i.payload()), (*ident, *seq, *data));
                }
                (_, IcmpV6Message::DestUnreachable { code, invoking }) => {
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (1, *code, [0; 4]));
                    assert_eq!(i.payload(), *invoking);
                }
                (Icmpv6Type::PacketTooBig { mtu: m }, IcmpV6Message::PacketTooBig { mtu, invoking }) => {
                    assert_eq!(m, *mtu);
                    assert_eq!(i.payload(), *invoking);
                }
                (_, IcmpV6Message::TimeExceeded { code, invoking }) => {
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (3, *code, [0; 4]));
                    assert_eq!(i.payload(), *invoking);
                }
                (_, IcmpV6Message::Other { icmp_type, code }) => {
                    assert_eq!((i.type_u8(), i.code_u8(), i.bytes5to8()), (*icmp_type, *code, [0; 4]));
                    assert!(i.payload().is_empty());
                }
                (got, want) => panic!("icmpv6 mismatch: {got:?} vs {want:?}"),
            }
        }
        (got, want) => panic!("transport mismatch: {got:?} vs {want:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Fixed cross-checks with etherparse
// ---------------------------------------------------------------------------------------

const A4: [u8; 4] = [192, 168, 7, 1];
const B4: [u8; 4] = [192, 168, 7, 200];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const B6: [u8; 16] = [0xfd, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22];

fn full_options() -> TcpOptions {
    let mut sack = SackBlocks::default();
    sack.push(SeqNum(100), SeqNum(200));
    sack.push(SeqNum(300), SeqNum(400));
    sack.push(SeqNum(500), SeqNum(600));
    TcpOptions {
        mss: Some(1400),
        window_scale: Some(9),
        sack_permitted: true,
        timestamps: Some((0xfeedface, 0x01020304)),
        sack,
    }
}

#[test]
fn etherparse_reads_our_tcp() {
    let payload: Vec<u8> = (0..=255).collect();
    let cases = [
        TcpOptions::default(),
        full_options(),
        TcpOptions { timestamps: Some((1, 2)), sack: full_options().sack, ..TcpOptions::default() },
        TcpOptions { sack_permitted: true, ..TcpOptions::default() },
    ];
    for options in cases {
        let repr = TcpRepr {
            src_port: 443,
            dst_port: 51000,
            seq: SeqNum(0x89abcdef),
            ack: SeqNum(0x01234567),
            flags: TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE,
            window: 29200,
            urgent: 0,
            options,
            payload: &payload,
        };
        for (s, d) in [(v4(A4), v4(B4)), (v6(A6), v6(B6))] {
            let mut buf = [0u8; 1500];
            let n = emit_tcp(&mut buf, s, d, &repr).unwrap();
            etherparse_agrees(&buf[..n], s, d, DEFAULT_HOP_LIMIT, &Transport::Tcp(repr));
        }
    }
}

#[test]
fn etherparse_reads_our_udp_and_icmp() {
    let quote = [0x45u8, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0, 9, 0, 0];
    let udp = UdpRepr { src_port: 53, dst_port: 33333, payload: b"an answer" };
    let v4_msgs = [
        IcmpV4Message::EchoRequest { ident: 0x4242, seq: 7, data: b"abcdefgh" },
        IcmpV4Message::EchoReply { ident: 1, seq: 0xffff, data: b"" },
        IcmpV4Message::DestUnreachable { code: icmp::v4_unreach::PORT, invoking: &quote },
        IcmpV4Message::FragNeeded { mtu: 1400, invoking: &quote },
        IcmpV4Message::TimeExceeded { code: icmp::time_exceeded::REASSEMBLY, invoking: &quote },
        IcmpV4Message::Other { icmp_type: 5, code: 1 },
    ];
    let v6_msgs = [
        IcmpV6Message::EchoRequest { ident: 9, seq: 10, data: b"ping6" },
        IcmpV6Message::EchoReply { ident: 9, seq: 10, data: b"ping6" },
        IcmpV6Message::DestUnreachable { code: icmp::v6_unreach::PORT, invoking: &quote },
        IcmpV6Message::PacketTooBig { mtu: 1280, invoking: &quote },
        IcmpV6Message::TimeExceeded { code: icmp::time_exceeded::REASSEMBLY, invoking: &quote },
        IcmpV6Message::Other { icmp_type: 4, code: 0 },
    ];
    let mut buf = [0u8; 600];
    for (s, d) in [(v4(A4), v4(B4)), (v6(A6), v6(B6))] {
        let n = emit_udp(&mut buf, s, d, &udp).unwrap();
        etherparse_agrees(&buf[..n], s, d, 64, &Transport::Udp(udp));
    }
    for m in v4_msgs {
        let r = IcmpRepr::V4(m);
        let n = emit_icmp(&mut buf, v4(A4), v4(B4), &r).unwrap();
        etherparse_agrees(&buf[..n], v4(A4), v4(B4), 64, &Transport::Icmp(r));
    }
    for m in v6_msgs {
        let r = IcmpRepr::V6(m);
        let n = emit_icmp(&mut buf, v6(A6), v6(B6), &r).unwrap();
        etherparse_agrees(&buf[..n], v6(A6), v6(B6), 64, &Transport::Icmp(r));
    }
}

#[test]
fn we_read_etherparse_tcp() {
    let payload = b"GET / HTTP/1.1\r\n\r\n";
    let opts = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(11, 22),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ];
    let b = PacketBuilder::ipv4(A4, B4, 17).tcp(1234, 80, 1000, 512).syn().ack(77).psh().options(&opts).unwrap();
    let mut pkt = Vec::new();
    b.write(&mut pkt, payload).unwrap();
    let p = parse(&pkt).unwrap();
    assert_eq!(
        p.ip,
        IpHeader { src: v4(A4), dst: v4(B4), protocol: proto::TCP, hop_limit: 17, payload_len: pkt.len() - 20 }
    );
    assert_eq!(
        p.transport,
        Transport::Tcp(TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq: SeqNum(1000),
            ack: SeqNum(77),
            flags: TcpFlags::SYN | TcpFlags::ACK | TcpFlags::PSH,
            window: 512,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((11, 22)),
                sack: SackBlocks::default(),
            },
            payload,
        })
    );
}

#[test]
fn we_read_etherparse_udp_icmp_v6_with_extensions() {
    // Hop-by-hop and destination options built by etherparse, then UDP.
    let hop = Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap();
    let dest = Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let exts = Ipv6Extensions { hop_by_hop_options: Some(hop), destination_options: Some(dest), ..Default::default() };
    let header = Ipv6Header { hop_limit: 3, source: A6, destination: B6, ..Default::default() };
    let b = PacketBuilder::ip(IpHeaders::Ipv6(header, exts)).udp(5000, 6000);
    let mut pkt = Vec::new();
    b.write(&mut pkt, b"with extensions").unwrap();
    assert_eq!(pkt[6], 0, "etherparse put the hop-by-hop header first");
    let p = parse(&pkt).unwrap();
    assert_eq!(p.ip, IpHeader { src: v6(A6), dst: v6(B6), protocol: proto::UDP, hop_limit: 3, payload_len: 8 + 15 });
    assert_eq!(p.transport, Transport::Udp(UdpRepr { src_port: 5000, dst_port: 6000, payload: b"with extensions" }));

    let mut pkt = Vec::new();
    PacketBuilder::ipv6(A6, B6, 64).icmpv6_echo_request(0x1111, 0x2222).write(&mut pkt, b"data").unwrap();
    assert_eq!(
        parse(&pkt).unwrap().transport,
        Transport::Icmp(IcmpRepr::V6(IcmpV6Message::EchoRequest { ident: 0x1111, seq: 0x2222, data: b"data" }))
    );
    let mut pkt = Vec::new();
    PacketBuilder::ipv6(A6, B6, 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 })
        .write(&mut pkt, &[0x60; 48])
        .unwrap();
    assert_eq!(
        parse(&pkt).unwrap().transport,
        Transport::Icmp(IcmpRepr::V6(IcmpV6Message::PacketTooBig { mtu: 1400, invoking: &[0x60; 48] }))
    );
    let mut pkt = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64).icmpv4_echo_reply(3, 4).write(&mut pkt, b"pong").unwrap();
    assert_eq!(
        parse(&pkt).unwrap().transport,
        Transport::Icmp(IcmpRepr::V4(IcmpV4Message::EchoReply { ident: 3, seq: 4, data: b"pong" }))
    );
    let mut pkt = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port))
        .write(&mut pkt, &[0x45; 28])
        .unwrap();
    assert_eq!(
        parse(&pkt).unwrap().transport,
        Transport::Icmp(IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: 3, invoking: &[0x45; 28] }))
    );
}

#[test]
fn icmp_error_round_trip_through_parse_quoted() {
    // We send a UDP datagram; the peer answers with port unreachable quoting it.
    let mut sent = [0u8; 1500];
    let udp = UdpRepr { src_port: 40001, dst_port: 9, payload: &[0xAB; 1000] };
    let n = emit_udp(&mut sent, v4(A4), v4(B4), &udp).unwrap();
    let quote = icmp::error_quote(&sent[..n], false);
    let err = IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: 3, invoking: quote });
    let mut buf = [0u8; 1500];
    let m = emit_icmp(&mut buf, v4(B4), v4(A4), &err).unwrap();
    assert_eq!(m, 576, "RFC 1812 4.3.2.3: the error fills but does not exceed 576 bytes");
    let p = parse(&buf[..m]).unwrap();
    let Transport::Icmp(IcmpRepr::V4(IcmpV4Message::DestUnreachable { invoking, .. })) = p.transport else {
        panic!("{p:?}");
    };
    let q = icmp::parse_quoted(invoking).unwrap();
    assert_eq!((q.src, q.dst, q.protocol, q.src_port, q.dst_port), (v4(A4), v4(B4), proto::UDP, 40001, 9));

    // IPv6 TCP, quoted in a packet too big.
    let tcp = TcpRepr {
        src_port: 50000,
        dst_port: 443,
        seq: SeqNum(0xabcdef01),
        ack: SeqNum(0),
        flags: TcpFlags::ACK,
        window: 1,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[7; 1400],
    };
    let n = emit_tcp(&mut sent, v6(A6), v6(B6), &tcp).unwrap();
    let quote = icmp::error_quote(&sent[..n], true);
    let err = IcmpRepr::V6(IcmpV6Message::PacketTooBig { mtu: 1280, invoking: quote });
    let m = emit_icmp(&mut buf, v6(B6), v6(A6), &err).unwrap();
    assert_eq!(m, 1280, "RFC 4443 2.4(c): the error fills but does not exceed 1280 bytes");
    let p = parse(&buf[..m]).unwrap();
    let Transport::Icmp(IcmpRepr::V6(IcmpV6Message::PacketTooBig { invoking, mtu })) = p.transport else {
        panic!("{p:?}");
    };
    assert_eq!(mtu, 1280);
    let q = icmp::parse_quoted(invoking).unwrap();
    assert_eq!(
        q,
        icmp::QuotedPacket {
            src: v6(A6),
            dst: v6(B6),
            protocol: proto::TCP,
            src_port: 50000,
            dst_port: 443,
            tcp_seq: Some(SeqNum(0xabcdef01)),
        }
    );
}

#[test]
fn every_drop_reason_the_parser_owns_is_produced() {
    // A compact tour; the per-protocol tests check each rule in detail. This makes sure
    // no parser reason is dead.
    let good_udp = {
        let mut b = [0u8; 100];
        let n = emit_udp(&mut b, v4(A4), v4(B4), &UdpRepr { src_port: 1, dst_port: 2, payload: b"abc" }).unwrap();
        b[..n].to_vec()
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut check = |p: &[u8]| {
        if let Err(r) = parse(p) {
            seen.insert(r);
        }
    };
    check(&[]);
    check(&[0x30; 20]);
    let mut ihl4 = good_udp.clone();
    ihl4[0] = 0x44;
    check(&ihl4);
    let mut badsum = good_udp.clone();
    badsum[10] ^= 1;
    check(&badsum);
    // Fragment, bad source, unknown protocol, and transport errors need a valid IP
    // checksum: rebuild it after each edit.
    let fix = |mut p: Vec<u8>| {
        p[10] = 0;
        p[11] = 0;
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    };
    let mut frag = good_udp.clone();
    frag[6] |= 0x20;
    check(&fix(frag));
    let mut src = good_udp.clone();
    src[12] = 127;
    check(&fix(src));
    let mut protocol = good_udp.clone();
    protocol[9] = 47;
    check(&fix(protocol));
    let mut udp_len = good_udp.clone();
    udp_len[25] = 200;
    check(&udp_len);
    let mut udp_sum = good_udp.clone();
    udp_sum[30] ^= 4;
    check(&udp_sum);
    let mut short = good_udp.clone();
    short.truncate(26);
    short[3] = 26;
    check(&fix(short.clone()));
    let tcp_like = |mut p: Vec<u8>| {
        p[9] = proto::TCP;
        fix(p)
    };
    check(&tcp_like(good_udp.clone())); // 11 bytes of "TCP": truncated
    let mut tcp = vec![0u8; 60];
    tcp[..20].copy_from_slice(&good_udp[..20]);
    tcp[3] = 60;
    tcp[20 + 12] = 0x20; // data offset 2
    check(&tcp_like(tcp.clone()));
    tcp[20 + 12] = 0x50;
    check(&tcp_like(tcp.clone())); // checksum zero: wrong
    let mut icmp = good_udp.clone();
    icmp[9] = proto::ICMP;
    check(&fix(icmp.clone())); // UDP bytes as ICMP: bad checksum
    icmp.truncate(26);
    icmp[3] = 26;
    check(&fix(icmp)); // 6 bytes of ICMP
    for r in [
        DropReason::Truncated,
        DropReason::BadIpVersion,
        DropReason::BadIpHeader,
        DropReason::BadIpChecksum,
        DropReason::Fragment,
        DropReason::UnknownProtocol,
        DropReason::BadSourceAddress,
        DropReason::BadTcpHeader,
        DropReason::BadTcpChecksum,
        DropReason::BadUdpHeader,
        DropReason::BadUdpChecksum,
        DropReason::BadIcmpHeader,
        DropReason::BadIcmpChecksum,
    ] {
        assert!(seen.contains(&r), "{r:?} not produced; saw {seen:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn arb_v4_unicast() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_filter_map("not a unicast source", |a| {
        let ip = Ipv4Addr::from(a);
        let bad = ip.is_multicast() || ip.is_broadcast() || ip.is_unspecified() || ip.is_loopback();
        (!bad).then_some(IpAddr::V4(ip))
    })
}

fn arb_v6_unicast() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_filter_map("not a unicast source", |a| {
        let ip = Ipv6Addr::from(a);
        let bad = ip.is_multicast() || ip.is_unspecified() || ip.is_loopback();
        (!bad).then_some(IpAddr::V6(ip))
    })
}

/// (src, dst) of one family; the destination may be anything of that family.
fn arb_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![(arb_v4_unicast(), any::<[u8; 4]>().prop_map(v4)), (arb_v6_unicast(), any::<[u8; 16]>().prop_map(v6)),]
}

fn arb_options() -> impl Strategy<Value = TcpOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..=20),
        any::<bool>(),
        proptest::option::of(any::<(u32, u32)>()),
        vec(any::<(u32, u32)>(), 0..=4),
    )
        .prop_map(|(mss, window_scale, sack_permitted, timestamps, blocks)| {
            let mut sack = SackBlocks::default();
            for (l, r) in blocks {
                sack.push(SeqNum(l), SeqNum(r));
            }
            TcpOptions { mss, window_scale, sack_permitted, timestamps, sack }
        })
}

#[derive(Debug, Clone)]
struct TcpCase {
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: TcpOptions,
    payload: Vec<u8>,
}

impl TcpCase {
    fn repr(&self) -> TcpRepr<'_> {
        TcpRepr {
            src_port: self.ports.0,
            dst_port: self.ports.1,
            seq: SeqNum(self.seq),
            ack: SeqNum(self.ack),
            flags: TcpFlags(self.flags),
            window: self.window,
            urgent: self.urgent,
            options: self.options,
            payload: &self.payload,
        }
    }
}

fn arb_tcp() -> impl Strategy<Value = TcpCase> {
    (
        any::<(u16, u16)>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        arb_options(),
        vec(any::<u8>(), 0..1500),
    )
        .prop_map(|(ports, seq, ack, flags, window, urgent, options, payload)| TcpCase {
            ports,
            seq,
            ack,
            flags,
            window,
            urgent,
            options,
            payload,
        })
}

/// An ICMP message description: (selector, type for Other, code, ident/seq, mtu, data).
#[derive(Debug, Clone)]
struct IcmpCase {
    which: u8,
    other_type: u8,
    code: u8,
    ident: u16,
    seq: u16,
    mtu: u32,
    data: Vec<u8>,
}

impl IcmpCase {
    fn repr(&self, v6: bool) -> IcmpRepr<'_> {
        let (ident, seq, data, code) = (self.ident, self.seq, &self.data[..], self.code);
        if v6 {
            IcmpRepr::V6(match self.which % 6 {
                0 => IcmpV6Message::EchoRequest { ident, seq, data },
                1 => IcmpV6Message::EchoReply { ident, seq, data },
                2 => IcmpV6Message::DestUnreachable { code, invoking: data },
                3 => IcmpV6Message::PacketTooBig { mtu: self.mtu, invoking: data },
                4 => IcmpV6Message::TimeExceeded { code, invoking: data },
                _ => IcmpV6Message::Other { icmp_type: self.other_type, code },
            })
        } else {
            IcmpRepr::V4(match self.which % 6 {
                0 => IcmpV4Message::EchoRequest { ident, seq, data },
                1 => IcmpV4Message::EchoReply { ident, seq, data },
                // Code 4 is `FragNeeded` (see `expected_transport`).
                2 => IcmpV4Message::DestUnreachable { code, invoking: data },
                3 => IcmpV4Message::FragNeeded { mtu: self.mtu as u16, invoking: data },
                4 => IcmpV4Message::TimeExceeded { code, invoking: data },
                _ => IcmpV4Message::Other { icmp_type: self.other_type, code },
            })
        }
    }
}

fn arb_icmp() -> impl Strategy<Value = IcmpCase> {
    // Types the parser interprets (either family) or that etherparse insists have a
    // longer fixed part (timestamps 13/14) are left out of `Other`.
    let other =
        any::<u8>().prop_filter("interpreted type", |t| !matches!(t, 0 | 1 | 2 | 3 | 8 | 11 | 13 | 14 | 128 | 129));
    (any::<u8>(), other, any::<u8>(), any::<u16>(), any::<u16>(), any::<u32>(), vec(any::<u8>(), 0..600)).prop_map(
        |(which, other_type, code, ident, seq, mtu, data)| IcmpCase { which, other_type, code, ident, seq, mtu, data },
    )
}

/// Any valid packet we can emit, as bytes plus what parsing it must return.
#[derive(Debug, Clone)]
enum AnyCase {
    Tcp(TcpCase),
    Udp((u16, u16), Vec<u8>),
    Icmp(IcmpCase),
}

fn arb_any() -> impl Strategy<Value = (IpAddr, IpAddr, u8, AnyCase)> {
    let case = prop_oneof![
        arb_tcp().prop_map(AnyCase::Tcp),
        (any::<(u16, u16)>(), vec(any::<u8>(), 0..1500)).prop_map(|(p, d)| AnyCase::Udp(p, d)),
        arb_icmp().prop_map(AnyCase::Icmp),
    ];
    (arb_pair(), any::<u8>(), case).prop_map(|((s, d), hop, c)| (s, d, hop, c))
}

fn transport_of(case: &AnyCase, v6: bool) -> Transport<'_> {
    match case {
        AnyCase::Tcp(t) => Transport::Tcp(t.repr()),
        AnyCase::Udp(p, d) => Transport::Udp(UdpRepr { src_port: p.0, dst_port: p.1, payload: d }),
        AnyCase::Icmp(i) => Transport::Icmp(i.repr(v6)),
    }
}

/// What parsing the emitted packet must give back for `t`.
fn expected_transport<'a>(t: &Transport<'a>) -> Transport<'a> {
    match *t {
        Transport::Tcp(mut r) => {
            r.options = expected_after_round_trip(&r.options);
            Transport::Tcp(r)
        }
        // A destination unreachable with code 4 is "fragmentation needed" (RFC 1191),
        // whose MTU field we emitted as zero.
        Transport::Icmp(IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: 4, invoking })) => {
            Transport::Icmp(IcmpRepr::V4(IcmpV4Message::FragNeeded { mtu: 0, invoking }))
        }
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// emit -> parse gives back the same packet (options normalised as documented),
    /// and `options_len` is exactly the emitted option length.
    #[test]
    fn round_trip((src, dst, hop, case) in arb_any()) {
        let t = transport_of(&case, src.is_ipv6());
        let pkt = emit(src, dst, hop, t);
        let parsed = parse(&pkt).expect("our own packet parses");
        let hdr = ip_header_len(src);
        let protocol = match t {
            Transport::Tcp(_) => proto::TCP,
            Transport::Udp(_) => proto::UDP,
            Transport::Icmp(IcmpRepr::V4(_)) => proto::ICMP,
            Transport::Icmp(IcmpRepr::V6(_)) => proto::ICMPV6,
        };
        prop_assert_eq!(parsed.ip, IpHeader { src, dst, protocol, hop_limit: hop, payload_len: pkt.len() - hdr });
        prop_assert_eq!(parsed.transport, expected_transport(&t));
        if let Transport::Tcp(r) = t {
            prop_assert_eq!(usize::from(pkt[hdr + 12] >> 4) * 4, 20 + tcp::options_len(&r.options));
            prop_assert_eq!(pkt.len(), hdr + r.header_len() + r.payload.len());
        }
    }

    /// etherparse reads every packet we emit with the same fields and computes the same
    /// checksums.
    #[test]
    fn etherparse_reads_what_we_emit((src, dst, hop, case) in arb_any()) {
        let t = transport_of(&case, src.is_ipv6());
        let pkt = emit(src, dst, hop, t);
        etherparse_agrees(&pkt, src, dst, hop, &t);
    }

    /// Packets etherparse builds (TCP with a random well-formed option list, UDP, echo)
    /// parse to the same fields.
    #[test]
    fn we_read_what_etherparse_builds(
        (src, dst) in arb_pair(),
        hop in any::<u8>(),
        t in arb_tcp(),
        elements in vec(prop_oneof![
            Just(TcpOptionElement::Noop),
            any::<u16>().prop_map(TcpOptionElement::MaximumSegmentSize),
            any::<u8>().prop_map(TcpOptionElement::WindowScale),
            Just(TcpOptionElement::SelectiveAcknowledgementPermitted),
            any::<(u32, u32)>().prop_map(|(a, b)| TcpOptionElement::Timestamp(a, b)),
            (any::<(u32, u32)>(), proptest::array::uniform3(proptest::option::of(any::<(u32, u32)>())))
                .prop_map(|(f, r)| TcpOptionElement::SelectiveAcknowledgement(f, r)),
        ], 0..6),
        kind in 0u8..4,
    ) {
        let builder = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), hop),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), hop),
            _ => unreachable!(),
        };
        let mut pkt = Vec::new();
        let expect: Transport<'_> = match kind {
            0 | 1 => {
                let r = t.repr();
                let mut b = builder.tcp(r.src_port, r.dst_port, r.seq.0, r.window);
                let f = r.flags;
                if f.fin() { b = b.fin(); }
                if f.syn() { b = b.syn(); }
                if f.rst() { b = b.rst(); }
                if f.psh() { b = b.psh(); }
                if f.ack() { b = b.ack(r.ack.0); }
                if f.urg() { b = b.urg(r.urgent); }
                if f.0 & 0x40 != 0 { b = b.ece(); }
                if f.0 & 0x80 != 0 { b = b.cwr(); }
                let b = match b.options(&elements) {
                    Ok(b) => b,
                    Err(_) => return Err(TestCaseError::reject("options longer than 40 bytes")),
                };
                b.write(&mut pkt, r.payload).unwrap();
                // Our expectation from the element list: the last occurrence of each
                // kind wins, window scale clamped.
                let mut o = TcpOptions::default();
                for el in &elements {
                    match el {
                        TcpOptionElement::Noop => {}
                        TcpOptionElement::MaximumSegmentSize(m) => o.mss = Some(*m),
                        TcpOptionElement::WindowScale(w) => o.window_scale = Some((*w).min(14)),
                        TcpOptionElement::SelectiveAcknowledgementPermitted => o.sack_permitted = true,
                        TcpOptionElement::Timestamp(a, b) => o.timestamps = Some((*a, *b)),
                        TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                            let mut s = SackBlocks::default();
                            s.push(SeqNum(first.0), SeqNum(first.1));
                            for (l, r) in rest.iter().flatten() {
                                s.push(SeqNum(*l), SeqNum(*r));
                            }
                            o.sack = s;
                        }
                    }
                }
                Transport::Tcp(TcpRepr {
                    ack: if f.ack() { r.ack } else { SeqNum(0) },
                    urgent: if f.urg() { r.urgent } else { 0 },
                    options: o,
                    ..r
                })
            }
            2 => {
                builder.udp(t.ports.0, t.ports.1).write(&mut pkt, &t.payload).unwrap();
                Transport::Udp(UdpRepr { src_port: t.ports.0, dst_port: t.ports.1, payload: &t.payload })
            }
            _ => {
                let (ident, seq) = t.ports;
                if src.is_ipv4() {
                    builder.icmpv4_echo_request(ident, seq).write(&mut pkt, &t.payload).unwrap();
                    Transport::Icmp(IcmpRepr::V4(IcmpV4Message::EchoRequest { ident, seq, data: &t.payload }))
                } else {
                    builder.icmpv6_echo_reply(ident, seq).write(&mut pkt, &t.payload).unwrap();
                    Transport::Icmp(IcmpRepr::V6(IcmpV6Message::EchoReply { ident, seq, data: &t.payload }))
                }
            }
        };
        let parsed = parse(&pkt).expect("etherparse-built packet parses");
        prop_assert_eq!(parsed.ip.src, src);
        prop_assert_eq!(parsed.ip.dst, dst);
        prop_assert_eq!(parsed.ip.hop_limit, hop);
        prop_assert_eq!(parsed.ip.payload_len, pkt.len() - ip_header_len(src));
        prop_assert_eq!(parsed.transport, expect);
    }

    /// Arbitrary bytes never panic; neither does parse_quoted or parse_options.
    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..2000)) {
        let _ = parse(&bytes);
        let _ = icmp::parse_quoted(&bytes);
        let _ = tcp::parse_options(&bytes[..bytes.len().min(40)]);
    }

    /// Garbage that starts like an IP header reaches the deeper layers: random bytes
    /// after a valid IPv4 or IPv6 header for each protocol, with a correct IPv4 checksum.
    #[test]
    fn garbage_after_valid_header_never_panics(
        (src, dst) in arb_pair(),
        protocol in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), Just(0), Just(43), Just(44), Just(60), any::<u8>()],
        body in vec(any::<u8>(), 0..200),
    ) {
        let mut pkt = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                let total = (20 + body.len()) as u16;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                let c = checksum::checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut h = vec![0x60, 0, 0, 0, 0, 0, protocol, 64];
                h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h
            }
            _ => unreachable!(),
        };
        pkt.extend_from_slice(&body);
        let _ = parse(&pkt);
    }

    /// Every strict prefix of a valid packet is rejected (the IP length field no longer
    /// fits), and the packet followed by trailing bytes parses to the same result.
    #[test]
    fn truncations_are_rejected((src, dst, hop, case) in arb_any(), trailer in vec(any::<u8>(), 1..32)) {
        let t = transport_of(&case, src.is_ipv6());
        let pkt = emit(src, dst, hop, t);
        let full = parse(&pkt).unwrap();
        for n in 0..pkt.len() {
            prop_assert!(parse(&pkt[..n]).is_err(), "prefix of {} bytes accepted", n);
        }
        let mut longer = pkt.clone();
        longer.extend_from_slice(&trailer);
        prop_assert_eq!(parse(&longer), Ok(full));
    }

    /// Flipping one bit in the transport part (or anywhere in an IPv4 packet, whose
    /// header has a checksum) is rejected or, at least, never parses to the original.
    #[test]
    fn bit_flips_are_caught((src, dst, hop, case) in arb_any(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let t = transport_of(&case, src.is_ipv6());
        let pkt = emit(src, dst, hop, t);
        let original = parse(&pkt).unwrap();
        let start = if src.is_ipv4() { 0 } else { ip_header_len(src) };
        let at = start + pos.index(pkt.len() - start);
        let mut flipped = pkt.clone();
        flipped[at] ^= 1 << bit;
        // The one flip no checksum can catch: over IPv4 a UDP checksum of zero means "no
        // checksum" (RFC 768), so a checksum field with a single bit set flipped to zero
        // is accepted as the original datagram.
        let udp_v4_sum_zeroed = matches!(t, Transport::Udp(_))
            && src.is_ipv4()
            && (at == 26 || at == 27)
            && flipped[26] == 0
            && flipped[27] == 0;
        prop_assume!(!udp_v4_sum_zeroed);
        let got = parse(&flipped);
        prop_assert_ne!(got, Ok(original));
        // Only TCP/UDP/ICMP checksums (and the IPv4 header checksum) stand between a
        // flip and acceptance; one flipped bit always changes a ones' complement sum.
        prop_assert!(got.is_err(), "flip at {} bit {} accepted: {:?}", at, bit, got);
    }

    /// options_len agrees with write_options for every combination, and the result is
    /// a multiple of 4 within 40 bytes.
    #[test]
    fn options_len_matches_writer(o in arb_options()) {
        let mut buf = [0u8; 40];
        let n = tcp::write_options(&o, &mut buf);
        prop_assert_eq!(n, tcp::options_len(&o));
        prop_assert!(n & 3 == 0 && n <= 40);
        prop_assert_eq!(tcp::parse_options(&buf[..n]), Ok(expected_after_round_trip(&o)));
    }
}

/// The in-place emitter produces exactly the bytes of the copying one.
#[test]
fn emit_tcp_in_place_matches_emit_tcp() {
    use crate::seq::SeqNum;
    use crate::wire::{emit_tcp, emit_tcp_in_place, ip_header_len, TcpFlags, TcpOptions, TcpRepr};
    let payload: Vec<u8> = (0..777u32).map(|i| (i * 31) as u8).collect();
    for (src, dst) in [
        ("10.0.0.1".parse::<IpAddr>().unwrap(), "10.0.0.2".parse::<IpAddr>().unwrap()),
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
    ] {
        let repr = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNum(123),
            ack: SeqNum(456),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 999,
            urgent: 0,
            options: TcpOptions { timestamps: Some((1, 2)), ..TcpOptions::default() },
            payload: &payload,
        };
        let mut a = vec![0u8; 1500];
        let n = emit_tcp(&mut a, src, dst, &repr).unwrap();
        let mut b = vec![0xEEu8; 1500];
        let at = ip_header_len(dst) + repr.header_len();
        b[at..at + payload.len()].copy_from_slice(&payload);
        let m = emit_tcp_in_place(&mut b, src, dst, &TcpRepr { payload: &[], ..repr }, payload.len()).unwrap();
        assert_eq!(n, m);
        assert_eq!(a[..n], b[..m]);
    }
}
