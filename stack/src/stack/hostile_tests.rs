//! Core tests for hostile networks: IP reassembly (RFC 791 3.2, RFC 8200 4.5, RFC 5722)
//! with exact expectations, fragmentation of what we send, path MTU for UDP, ICMP
//! errors for UDP sockets, and the memory budget.
//!
//! Fragments are built here by hand (not with `wire::frag`), and the stack's ICMP
//! messages are read with etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;
use crate::error::{ConnError, UdpRecvError, UdpSendError};
use crate::socket::Readiness;

const US4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const US6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

fn stack() -> Stack {
    Stack::new(Config { addrs: vec![IpAddr::V4(US4), IpAddr::V6(US6)], seed: 3, ..Config::default() })
}

fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(salt)).collect()
}

/// A whole UDP datagram from the peer to us, built by etherparse.
fn udp_packet(v6: bool, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let b = if v6 {
        PacketBuilder::ipv6(PEER6.octets(), US6.octets(), 64)
    } else {
        PacketBuilder::ipv4(PEER4.octets(), US4.octets(), 64)
    };
    let mut out = Vec::new();
    b.udp(5000, dst_port).write(&mut out, payload).unwrap();
    out
}

/// An ICMP echo request from the peer, built by etherparse.
fn echo_request(v6: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if v6 {
        PacketBuilder::ipv6(PEER6.octets(), US6.octets(), 64).icmpv6_echo_request(7, 9).write(&mut out, payload)
    } else {
        PacketBuilder::ipv4(PEER4.octets(), US4.octets(), 64).icmpv4_echo_request(7, 9).write(&mut out, payload)
    }
    .unwrap();
    out
}

fn sum16(data: &[u8]) -> u16 {
    let mut s: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// One fragment of `packet` (a whole IPv4 packet with a 20-byte header, or an IPv6
/// packet without extension headers): its payload bytes `[off, end)`, by hand.
fn fragment(packet: &[u8], ident: u32, off: usize, end: usize) -> Vec<u8> {
    let v6 = packet[0] >> 4 == 6;
    let hl = if v6 { 40 } else { 20 };
    let payload = &packet[hl..];
    let more = end < payload.len();
    let mut f = packet[..hl].to_vec();
    if v6 {
        f[4..6].copy_from_slice(&((8 + end - off) as u16).to_be_bytes());
        let next = f[6];
        f[6] = 44;
        f.extend_from_slice(&[next, 0]);
        f.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&ident.to_be_bytes());
    } else {
        f[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        f[4..6].copy_from_slice(&(ident as u16).to_be_bytes());
        let word = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&word.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let c = sum16(&f[..20]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&payload[off..end]);
    f
}

/// `packet` cut into fragments of `size` payload bytes (a multiple of 8).
pub(super) fn fragments(packet: &[u8], ident: u32, size: usize) -> Vec<Vec<u8>> {
    let hl = if packet[0] >> 4 == 6 { 40 } else { 20 };
    let len = packet.len() - hl;
    (0..len).step_by(size).map(|off| fragment(packet, ident, off, (off + size).min(len))).collect()
}

fn drain(s: &mut Stack, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; s.config().mtu];
    let mut out = Vec::new();
    while let Some(n) = s.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

// ------------------------------------------------------------------------- reassembly

/// A 4000-byte UDP datagram in three fragments arriving last first, for both families:
/// delivered once, whole; nothing is left held.
#[test]
fn fragments_in_reverse_order_are_reassembled() {
    for v6 in [false, true] {
        let mut s = stack();
        let u = s.udp_bind(SocketAddr::new(if v6 { US6.into() } else { US4.into() }, 7)).unwrap();
        let payload = data(4000, 1);
        let pkt = udp_packet(v6, 7, &payload);
        let mut frags = fragments(&pkt, 0x4242, 1480);
        assert_eq!(frags.len(), 3);
        frags.reverse();
        for f in &frags[..2] {
            s.input(Instant::ZERO, f);
            assert!(s.stats().reassembly_memory > 0);
        }
        assert_eq!(s.udp_recv(u, &mut [0u8; 64]), Err(UdpRecvError::WouldBlock), "v6 {v6}: delivered early");
        s.input(Instant::ZERO, &frags[2]);
        let mut buf = vec![0u8; 8192];
        let n = s.udp_recv(u, &mut buf).unwrap();
        assert_eq!(&buf[..n], &payload[..], "v6 {v6}");
        let st = s.stats();
        assert_eq!((st.frag_received, st.frag_reassembled, st.reassembly_memory), (3, 1, 0), "v6 {v6}");
        assert_eq!(st.total_drops(), 0);
        assert_eq!(s.poll_timeout(), None, "no reassembly timer left");
        s.check_invariants().unwrap();
    }
}

/// A datagram missing its middle fragment is never delivered. At the timeout (30 s for
/// IPv4, 60 s for IPv6) its memory is released, its two fragments are counted, and an
/// ICMP time exceeded, code 1, quoting the first fragment (as much as fits 576 / 1280
/// bytes) goes to the source (RFC 792, RFC 8200 4.5).
#[test]
fn a_missing_fragment_times_out_with_time_exceeded() {
    for (v6, timeout) in [(false, 30), (true, 60)] {
        let mut s = stack();
        let u = s.udp_bind(SocketAddr::new(if v6 { US6.into() } else { US4.into() }, 7)).unwrap();
        let pkt = udp_packet(v6, 7, &data(4000, 2));
        let frags = fragments(&pkt, 99, 1400);
        let t0 = Instant::from_secs(5);
        s.input(t0, &frags[0]);
        s.input(t0 + Duration::from_secs(1), &frags[2]);
        assert!(s.stats().reassembly_memory >= 4008);
        let deadline = t0 + Duration::from_secs(timeout);
        assert_eq!(s.poll_timeout(), Some(deadline), "timed from the first fragment");
        s.handle_timeout(Instant::from_micros(deadline.total_micros() - 1));
        assert!(drain(&mut s, deadline).is_empty());
        s.handle_timeout(deadline);
        let st = s.stats();
        assert_eq!((st.reassembly_memory, st.frag_timeouts, st.frag_time_exceeded_sent), (0, 1, 1));
        assert_eq!(st.dropped(DropReason::ReassemblyTimeout), 2);
        assert_eq!(s.udp_recv(u, &mut [0u8; 64]), Err(UdpRecvError::WouldBlock));
        let out = drain(&mut s, deadline);
        assert_eq!(out.len(), 1);
        let p = SlicedPacket::from_ip(&out[0]).unwrap();
        let (quote_max, dst) = match p.net {
            Some(NetSlice::Ipv4(ref ip)) => (576 - 28, IpAddr::V4(ip.header().destination_addr())),
            Some(NetSlice::Ipv6(ref ip)) => (1280 - 48, IpAddr::V6(ip.header().destination_addr())),
            _ => panic!("not IP"),
        };
        assert_eq!(dst, if v6 { IpAddr::V6(PEER6) } else { IpAddr::V4(PEER4) });
        let (type_code, quoted) = match p.transport {
            Some(TransportSlice::Icmpv4(i)) => ((i.type_u8(), i.code_u8()), i.payload().to_vec()),
            Some(TransportSlice::Icmpv6(i)) => ((i.type_u8(), i.code_u8()), i.payload().to_vec()),
            other => panic!("not ICMP: {other:?}"),
        };
        assert_eq!(type_code, if v6 { (3, 1) } else { (11, 1) });
        assert_eq!(quoted, frags[0][..frags[0].len().min(quote_max)], "v6 {v6}");
        assert_eq!(s.poll_timeout(), None);
        s.check_invariants().unwrap();
    }
}

/// RFC 5722: a fragment overlapping another with different bytes discards the
/// datagram, and its later fragments too; an exact duplicate is dropped alone.
#[test]
fn overlapping_fragments_discard_the_datagram() {
    let mut s = stack();
    let u = s.udp_bind(SocketAddr::new(US4.into(), 7)).unwrap();
    let pkt = udp_packet(false, 7, &data(3000, 3));
    let frags = fragments(&pkt, 7, 1480);
    s.input(Instant::ZERO, &frags[0]);
    s.input(Instant::ZERO, &frags[0]);
    assert_eq!(s.stats().dropped(DropReason::FragmentDuplicate), 1);
    // Bytes 1472.. again, differently: overlaps the first fragment.
    let mut evil_pkt = pkt.clone();
    evil_pkt[20 + 1475] ^= 0xff;
    s.input(Instant::ZERO, &fragment(&evil_pkt, 7, 1472, 2000));
    assert_eq!(s.stats().dropped(DropReason::FragmentOverlap), 2, "the fragment and the one held");
    for f in &frags[1..] {
        s.input(Instant::ZERO, f);
    }
    assert_eq!(s.stats().dropped(DropReason::FragmentOverlap), 4);
    assert_eq!((s.stats().frag_overlaps, s.stats().frag_reassembled), (1, 0));
    assert_eq!(s.udp_recv(u, &mut [0u8; 64]), Err(UdpRecvError::WouldBlock));
    assert_eq!(s.stats().reassembly_memory, 0);
    s.check_invariants().unwrap();
    // Another identification is another datagram.
    for f in fragments(&pkt, 8, 1480) {
        s.input(Instant::ZERO, &f);
    }
    assert_eq!(s.udp_recv(u, &mut [0u8; 4096]), Ok(3000));
}

/// The caps: a fragment reaching past 64 KiB is malformed; with the datagram cap
/// reached a new datagram's fragment is dropped; reassembly off drops every fragment.
#[test]
fn reassembly_is_bounded() {
    let mut s = Stack::new(Config { reassembly_datagrams: 1, ..stack().config().clone() });
    let pkt = udp_packet(false, 7, &data(3000, 4));
    s.input(Instant::ZERO, &fragments(&pkt, 1, 1480)[0]);
    s.input(Instant::ZERO, &fragments(&pkt, 2, 1480)[0]);
    assert_eq!(s.stats().dropped(DropReason::ReassemblyFull), 1);
    let mut death = fragment(&pkt, 3, 1480, 2960);
    death[6..8].copy_from_slice(&(8180u16).to_be_bytes()); // offset 65440
    death[10..12].copy_from_slice(&[0, 0]);
    let c = sum16(&death[..20]);
    death[10..12].copy_from_slice(&c.to_be_bytes());
    s.input(Instant::ZERO, &death);
    assert_eq!(s.stats().dropped(DropReason::FragmentMalformed), 1);
    let mut off = Stack::new(Config { reassembly_memory: 0, ..stack().config().clone() });
    off.input(Instant::ZERO, &fragments(&pkt, 1, 1480)[0]);
    assert_eq!(off.stats().dropped(DropReason::Fragment), 1);
}

// ------------------------------------------------------------------------- fragmentation

/// `ping -s 3000`: the request arrives in fragments and the reply, too large for the
/// link, leaves in fragments (IPv4: 1480 + 1480 + 68 bytes of ICMP; IPv6: 1232-byte
/// pieces behind a Fragment header), which put together are the echo reply.
#[test]
fn large_echo_request_gets_a_fragmented_reply() {
    for v6 in [false, true] {
        let mut s = stack();
        let body = data(3000, 5);
        let req = echo_request(v6, &body);
        for f in fragments(&req, 77, if v6 { 1232 } else { 1480 }) {
            s.input(Instant::ZERO, &f);
        }
        let out = drain(&mut s, Instant::ZERO);
        let hl = if v6 { 40 } else { 20 };
        let mut whole = vec![0u8; 3008];
        let mut sizes = Vec::new();
        for p in &out {
            let f = wire::frag::parse_fragment(p).expect("a fragment");
            whole[f.offset..f.end()].copy_from_slice(f.data);
            sizes.push(f.data.len());
            assert!(p.len() <= 1500);
        }
        assert_eq!(sizes, if v6 { vec![1448, 1448, 112] } else { vec![1480, 1480, 48] }, "v6 {v6}");
        // Rebuild the reply with etherparse and compare.
        let mut want = Vec::new();
        if v6 {
            PacketBuilder::ipv6(US6.octets(), PEER6.octets(), 64).icmpv6_echo_reply(7, 9).write(&mut want, &body)
        } else {
            PacketBuilder::ipv4(US4.octets(), PEER4.octets(), 64).icmpv4_echo_reply(7, 9).write(&mut want, &body)
        }
        .unwrap();
        assert_eq!(whole, want[hl..], "v6 {v6}");
        assert_eq!((s.stats().icmp_echo_replies, s.stats().frag_datagrams_sent, s.stats().frags_sent), (1, 1, 3));
    }
}

/// Two stacks: a 60000-byte datagram goes out in fragments and comes out whole on the
/// other side; one larger than IP allows is refused.
#[test]
fn large_udp_datagrams_between_two_stacks() {
    let mut a = stack();
    let mut b = Stack::new(Config { addrs: vec![IpAddr::V4(PEER4), IpAddr::V6(PEER6)], seed: 4, ..Config::default() });
    for v6 in [false, true] {
        let (ua, ub) = if v6 { (IpAddr::V6(US6), IpAddr::V6(PEER6)) } else { (IpAddr::V4(US4), IpAddr::V4(PEER4)) };
        let sa = a.udp_bind(SocketAddr::new(ua, 0)).unwrap();
        let sb = b.udp_bind(SocketAddr::new(ub, 9)).unwrap();
        for len in [4000, 60_000] {
            let d = data(len, 6);
            assert_eq!(a.udp_send_to(sa, &d, SocketAddr::new(ub, 9)), Ok(len));
            let pkts = drain(&mut a, Instant::ZERO);
            let per = if v6 { 1448 } else { 1480 };
            assert_eq!(pkts.len(), (len + 8).div_ceil(per));
            for p in &pkts {
                b.input(Instant::ZERO, p);
            }
            let mut buf = vec![0u8; 65536];
            let (n, from) = b.udp_recv_from(sb, &mut buf).unwrap();
            assert_eq!((&buf[..n], from.ip()), (&d[..], ua));
        }
        let max = if v6 { 65527 } else { 65507 };
        assert!(a.udp_send_to(sa, &vec![0; max], SocketAddr::new(ub, 9)).is_ok());
        assert_eq!(
            a.udp_send_to(sa, &vec![0; max + 1], SocketAddr::new(ub, 9)),
            Err(UdpSendError::TooLarge { len: max + 1, max })
        );
        drain(&mut a, Instant::ZERO);
    }
    a.check_invariants().unwrap();
    b.check_invariants().unwrap();
}

// ------------------------------------------------------------------------- ICMP for UDP

/// An ICMPv4 error from a router to us, quoting `quoted` (28 bytes of it).
fn icmp4_error(t: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], US4.octets(), 64).icmpv4(t).write(&mut out, &quoted[..28]).unwrap();
    out
}

/// RFC 1191 for UDP: a "fragmentation needed" quoting our datagram lowers the path MTU
/// toward its destination, so the next one of that size goes in fragments that fit;
/// after 10 minutes the link MTU is tried again (RFC 1191 6.3).
#[test]
fn frag_needed_lowers_the_udp_path_mtu() {
    let mut s = stack();
    let u = s.udp_bind(SocketAddr::new(US4.into(), 53)).unwrap();
    let dst = SocketAddr::new(PEER4.into(), 5000);
    s.udp_send_to(u, &data(1400, 7), dst).unwrap();
    let sent = drain(&mut s, Instant::ZERO).remove(0);
    assert_eq!(sent.len(), 1428);
    let t = Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: 1000,
    });
    s.input(Instant::ZERO, &icmp4_error(t, &sent));
    assert_eq!(s.stats().pmtu_updates, 1);
    s.udp_send_to(u, &data(1400, 7), dst).unwrap();
    let pkts = drain(&mut s, Instant::ZERO);
    assert_eq!(pkts.iter().map(Vec::len).collect::<Vec<_>>(), vec![996, 452]);
    let later = Instant::from_secs(601);
    s.housekeeping(later);
    s.udp_send_to(u, &data(1400, 7), dst).unwrap();
    assert_eq!(drain(&mut s, later).iter().map(Vec::len).collect::<Vec<_>>(), vec![1428]);
    assert_eq!(s.stats().pmtu_entries, 0);
}

/// A connected socket learns of a port unreachable for what it sent on its next call
/// (ECONNREFUSED, once: Linux's SO_ERROR), and is woken for it; an unconnected socket
/// is not told (RFC 1122 4.1.3.3 leaves it to the application; Linux needs IP_RECVERR).
#[test]
fn connected_udp_socket_sees_port_unreachable() {
    let mut s = stack();
    let c = s.udp_bind(SocketAddr::new(US4.into(), 0)).unwrap();
    s.udp_connect(c, SocketAddr::new(PEER4.into(), 9)).unwrap();
    s.udp_send(c, b"anyone?").unwrap();
    let sent = drain(&mut s, Instant::ZERO).remove(0);
    while s.poll_readiness().is_some() {}
    let port = Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    s.input(Instant::ZERO, &icmp4_error(port.clone(), &sent));
    assert_eq!(s.poll_readiness(), Some((c.raw(), Readiness::READABLE)));
    assert_eq!(s.udp_recv(c, &mut [0u8; 64]), Err(UdpRecvError::Icmp(ConnError::Refused)));
    assert_eq!(s.udp_recv(c, &mut [0u8; 64]), Err(UdpRecvError::WouldBlock), "reported once");
    s.input(Instant::ZERO, &icmp4_error(port.clone(), &sent));
    assert_eq!(s.udp_send(c, b"again"), Err(UdpSendError::Icmp(ConnError::Refused)));
    assert_eq!(s.stats().icmp_hard_errors, 2);

    let unconnected = s.udp_bind(SocketAddr::new(US4.into(), 0)).unwrap();
    s.udp_send_to(unconnected, b"x", SocketAddr::new(PEER4.into(), 9)).unwrap();
    let sent = drain(&mut s, Instant::ZERO).remove(0);
    s.input(Instant::ZERO, &icmp4_error(port, &sent));
    assert_eq!(s.udp_recv(unconnected, &mut [0u8; 64]), Err(UdpRecvError::WouldBlock));
    assert_eq!(s.stats().dropped(DropReason::IcmpIgnored), 1);
    s.check_invariants().unwrap();
}

// ------------------------------------------------------------------------- memory budget

/// With a 160 KiB budget and 256 KiB buffers, a receiver that does not read comes under
/// memory pressure: its buffers stop growing (its window shrinks to what it holds), the
/// memory stays near the budget, new connections get RST and UDP datagrams are dropped.
/// Once the application reads and housekeeping trims, the pressure ends and the
/// transfer completes.
#[test]
fn memory_pressure_refuses_and_recovers() {
    let big = |addr: Ipv4Addr, seed, budget| {
        Stack::new(Config {
            addrs: vec![IpAddr::V4(addr)],
            seed,
            tcp_rx_buffer: 256 << 10,
            tcp_tx_buffer: 256 << 10,
            buffer_memory: budget,
            ..Config::default()
        })
    };
    let mut srv = big(US4, 5, 160 << 10);
    let mut cli = big(PEER4, 6, 64 << 20);
    let l = srv.tcp_listen(SocketAddr::new(US4.into(), 80), 8).unwrap();
    let u = srv.udp_bind(SocketAddr::new(US4.into(), 53)).unwrap();
    let mut now = Instant::ZERO;
    let c = cli.tcp_connect(now, SocketAddr::new(US4.into(), 80), None).unwrap();
    let pump = |now: Instant, cli: &mut Stack, srv: &mut Stack| {
        let mut moved = 0;
        for _ in 0..10_000 {
            let a = drain(cli, now);
            let b = drain(srv, now);
            if a.is_empty() && b.is_empty() {
                break;
            }
            moved += a.len() + b.len();
            a.iter().for_each(|p| {
                let _ = srv.input(now, p);
            });
            b.iter().for_each(|p| {
                let _ = cli.input(now, p);
            });
        }
        moved
    };
    pump(now, &mut cli, &mut srv);
    let sc = srv.tcp_accept(l).unwrap();
    let total = 1 << 20;
    let payload = data(total, 8);
    let mut sent = 0;
    for _ in 0..200 {
        if let Ok(n) = cli.tcp_send(c, &payload[sent..]) {
            sent += n;
        }
        pump(now, &mut cli, &mut srv);
        now += Duration::from_millis(200);
        srv.handle_timeout(now);
        cli.handle_timeout(now);
    }
    let st = srv.stats().clone();
    assert!(st.memory_pressure && st.memory_pressure_events == 1, "{st:?}");
    assert!(st.buffer_memory <= (160 << 10) + 4096, "memory {} over the budget", st.buffer_memory);
    assert!(srv.tcp_recv_queue(sc).unwrap() < total, "the window closed before everything came");
    // A new connection is refused with RST, a datagram dropped.
    let c2 = cli.tcp_connect(now, SocketAddr::new(US4.into(), 80), None).unwrap();
    pump(now, &mut cli, &mut srv);
    assert_eq!(cli.tcp_poll_connect(c2), Err(crate::ConnectError::Failed(ConnError::Refused)));
    srv.input(now, &udp_packet(false, 53, b"dropped"));
    assert_eq!(srv.udp_recv(u, &mut [0u8; 64]), Err(UdpRecvError::WouldBlock));
    assert!(srv.stats().dropped(DropReason::ResourceLimit) >= 2);
    // The application reads; the rest arrives.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..2000 {
        while let Ok(n) = srv.tcp_recv(sc, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == total {
            break;
        }
        if let Ok(n) = cli.tcp_send(c, &payload[sent..]) {
            sent += n;
        }
        now += Duration::from_millis(200);
        srv.handle_timeout(now);
        cli.handle_timeout(now);
        pump(now, &mut cli, &mut srv);
        srv.check_invariants().unwrap();
    }
    assert_eq!(got.len(), total);
    assert!(got == payload);
    srv.housekeeping(now + Duration::from_secs(5));
    assert!(!srv.stats().memory_pressure);
    srv.check_invariants().unwrap();
}
