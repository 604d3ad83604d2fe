//! Bad packets injected into the TUN device while an echo connection is established:
//! truncated, garbage, bad checksums and other malformed packets must each be dropped
//! and counted under the right `DropReason`, nothing may crash, and the established
//! connection must keep working.
//!
//! The packets are written from the kernel side with an AF_PACKET socket bound to the
//! TUN interface (packet(7)): what is sent on it is what the stack reads from the
//! device, byte for byte. They are built by hand here, independently of the stack's
//! own wire code.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::e2e_util::*;
use demo::EchoServer;
use tunstack::wire::DropReason;
use tunstack::Stats;
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

// ------------------------------------------------------------------ packet building

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// IPv4 (RFC 791) or IPv6 (RFC 8200) header + payload, IPv4 with a correct checksum.
/// `frag` is the IPv4 flags+fragment-offset word.
fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8], frag: u16) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0x12, 0x34]);
            p.extend_from_slice(&frag.to_be_bytes());
            p.extend_from_slice(&[64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let c = fold(sum16(0, &p));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    p.extend_from_slice(payload);
    p
}

/// A TCP segment (RFC 9293 3.1) with a correct checksum; `data_offset` in 32-bit words.
fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    data_offset: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[data_offset << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = fold(sum16(pseudo_sum(src.ip(), dst.ip(), TCP, t.len()), &t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn tcp_packet(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    ip_packet(src.ip(), dst.ip(), TCP, &tcp_segment(src, dst, 1000, 0, flags, 5, payload), 0)
}

/// A UDP datagram (RFC 768) with a correct checksum (0 is sent as 0xffff).
fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::new();
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = match fold(sum16(pseudo_sum(src.ip(), dst.ip(), UDP, len), &u)) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// An ICMP echo request (RFC 792) with a correct checksum.
fn icmp_echo_request(payload: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0x42, 0x42, 0, 1];
    m.extend_from_slice(payload);
    let c = fold(sum16(0, &m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Make the 16-bit checksum at `at` wrong (and, for UDP, not the "no checksum" zero).
fn corrupt16(p: &mut [u8], at: usize) {
    let old = u16::from_be_bytes([p[at], p[at + 1]]);
    let new = if old ^ 0x00ff == 0 { old ^ 0x0f0f } else { old ^ 0x00ff };
    p[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

// ------------------------------------------------------------------ the test

fn delta(before: &Stats, after: &Stats, r: DropReason) -> u64 {
    after.dropped(r).saturating_sub(before.dropped(r))
}

fn table(before: &Stats, after: &Stats, expected: &[(DropReason, u64)]) -> String {
    let mut s = String::from("reason: before -> after (expected at least +N)\n");
    for r in DropReason::ALL {
        let want = expected.iter().filter(|(e, _)| *e == r).map(|(_, n)| n).sum::<u64>();
        s += &format!("  {:20} {} -> {} (+{})\n", r.as_str(), before.dropped(r), after.dropped(r), want);
    }
    s
}

#[test]
fn bad_packets_are_counted_and_harmless() {
    let Some(ns) = NetNs::new("badinput") else { return };
    ns.run(|| {
        let rt = start_runtime();
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");

        // An established connection, shown to work before the attack.
        let mut conn = kernel_connect(SocketAddr::new(STACK_V4, ECHO_PORT)).expect("connect");
        conn.write_all(b"hello").unwrap();
        let mut hello = [0u8; 5];
        conn.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"hello");
        let client = conn.local_addr().unwrap();
        let server = conn.peer_addr().unwrap();

        // A kernel UDP socket whose port the forged bad-checksum datagram also uses:
        // if that datagram were wrongly accepted, its echo would arrive here.
        let udp = UdpSocket::bind(SocketAddr::new(HOST_V4, 0)).unwrap();
        udp.connect(SocketAddr::new(STACK_V4, ECHO_PORT)).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let udp_src = udp.local_addr().unwrap();

        let v4 = |port| SocketAddr::new(HOST_V4, port);
        let v6 = |port| SocketAddr::new(HOST_V6, port);
        let stack_v4 = SocketAddr::new(STACK_V4, ECHO_PORT);
        let stack_v6 = SocketAddr::new(STACK_V6, ECHO_PORT);
        let mut cases: Vec<(&str, DropReason, Vec<u8>)> = Vec::new();

        let syn = tcp_packet(v4(40000), stack_v4, SYN, b"");
        cases.push(("first 10 bytes of an IPv4 packet", DropReason::Truncated, syn[..10].to_vec()));
        let short_tcp = ip_packet(HOST_V4, STACK_V4, TCP, &[0u8; 10], 0);
        cases.push(("IPv4 carrying 10 bytes of a TCP header", DropReason::Truncated, short_tcp));
        let syn6 = tcp_packet(v6(40000), stack_v6, SYN, b"");
        cases.push(("first 30 bytes of an IPv6 packet", DropReason::Truncated, syn6[..30].to_vec()));

        cases.push(("version 1", DropReason::BadIpVersion, [0x15u8; 40].to_vec()));
        cases.push(("version 15", DropReason::BadIpVersion, [0xffu8; 60].to_vec()));

        let mut ihl3 = syn.clone();
        ihl3[0] = 0x43;
        cases.push(("IPv4 IHL 3", DropReason::BadIpHeader, ihl3));

        let mut bad_ip = syn.clone();
        corrupt16(&mut bad_ip, 10);
        cases.push(("IPv4 header checksum", DropReason::BadIpChecksum, bad_ip));

        // Bad TCP checksums, two of them on the live connection's own 4-tuple.
        for flags in [ACK | PSH, RST] {
            let mut p = tcp_packet(client, server, flags, b"EVIL");
            corrupt16(&mut p, 20 + 16);
            cases.push(("TCP checksum on the live connection", DropReason::BadTcpChecksum, p));
        }
        let mut p = syn6.clone();
        corrupt16(&mut p, 40 + 16);
        cases.push(("TCP checksum over IPv6", DropReason::BadTcpChecksum, p));

        // Data offset 4 (< 5 words), correct checksum: only the header is wrong.
        let p = ip_packet(HOST_V4, STACK_V4, TCP, &tcp_segment(v4(40001), stack_v4, 1, 0, SYN, 4, b""), 0);
        cases.push(("TCP data offset 4", DropReason::BadTcpHeader, p));

        let mut p = ip_packet(HOST_V4, STACK_V4, UDP, &udp_datagram(udp_src, stack_v4, b"BAD"), 0);
        corrupt16(&mut p, 20 + 6);
        cases.push(("UDP checksum", DropReason::BadUdpChecksum, p));
        let mut p = ip_packet(HOST_V6, STACK_V6, UDP, &udp_datagram(v6(40002), stack_v6, b"zero"), 0);
        p[40 + 6..40 + 8].copy_from_slice(&[0, 0]);
        cases.push(("UDP over IPv6 without checksum", DropReason::BadUdpChecksum, p));
        // UDP length 4 < 8, checksum 0 ("none" over IPv4): only the length is wrong.
        let mut u = udp_datagram(v4(40003), stack_v4, b"abc");
        u[4..6].copy_from_slice(&4u16.to_be_bytes());
        u[6..8].copy_from_slice(&[0, 0]);
        cases.push(("UDP length 4", DropReason::BadUdpHeader, ip_packet(HOST_V4, STACK_V4, UDP, &u, 0)));

        let mut p = ip_packet(HOST_V4, STACK_V4, ICMP, &icmp_echo_request(b"ping"), 0);
        corrupt16(&mut p, 20 + 2);
        cases.push(("ICMP checksum", DropReason::BadIcmpChecksum, p));

        let p = ip_packet(HOST_V4, STACK_V4, 253, &[1, 2, 3, 4, 5, 6, 7, 8], 0);
        cases.push(("IP protocol 253", DropReason::UnknownProtocol, p));

        // Two fragments of one datagram that overlap with different bytes (RFC 5722):
        // the first is held until the second discards both; in later rounds the
        // datagram is known to be discarded and each is dropped at once.
        let dgram = udp_datagram(v4(40004), stack_v4, b"fragment");
        cases.push((
            "IPv4 first fragment (MF)",
            DropReason::FragmentOverlap,
            ip_packet(HOST_V4, STACK_V4, UDP, &dgram, 0x2000),
        ));
        cases.push((
            "IPv4 overlapping last fragment (offset 8)",
            DropReason::FragmentOverlap,
            ip_packet(HOST_V4, STACK_V4, UDP, &dgram, 1),
        ));

        let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), ECHO_PORT);
        cases.push(("TCP to 10.0.0.3", DropReason::NotForUs, tcp_packet(v4(40005), other, SYN, b"")));
        let multicast = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 5)), 40006);
        cases.push(("TCP from 224.0.0.5", DropReason::BadSourceAddress, tcp_packet(multicast, stack_v4, SYN, b"")));

        // Deterministic garbage: each is dropped for some reason (a random destination
        // is never ours), which the total counts.
        let noise: Vec<Vec<u8>> = (0..200u64)
            .map(|i| {
                let len = 1 + (i as usize * 37) % 120;
                let mut p = pattern(5000 + i, len);
                if i % 3 == 0 {
                    p[0] = 0x45; // looks like IPv4
                } else if i % 3 == 1 {
                    p[0] = 0x60; // looks like IPv6
                }
                p
            })
            .collect();

        const REPEAT: u64 = 3;
        let before = rt.stats();
        let sock = PacketSocket::open(rt.tun_name(), false).expect("AF_PACKET socket on the TUN device");
        for _ in 0..REPEAT {
            for (what, _, p) in &cases {
                sock.send(p).unwrap_or_else(|e| panic!("sending {what}: {e}"));
            }
        }
        for p in &noise {
            sock.send(p).expect("sending garbage");
        }

        let mut expected: Vec<(DropReason, u64)> = Vec::new();
        for (_, r, _) in &cases {
            match expected.iter_mut().find(|(e, _)| e == r) {
                Some((_, n)) => *n += REPEAT,
                None => expected.push((*r, REPEAT)),
            }
        }
        let total_expected = REPEAT * cases.len() as u64 + noise.len() as u64;
        let all_counted = |s: &Stats| {
            expected.iter().all(|(r, n)| delta(&before, s, *r) >= *n)
                && s.total_drops() - before.total_drops() >= total_expected
                && s.rx_packets - before.rx_packets >= total_expected
        };
        let mut after = rt.stats();
        let ok = netns::wait_until(Duration::from_secs(20), || {
            after = rt.stats();
            all_counted(&after)
        });
        assert!(
            ok,
            "drop counters did not rise as expected; total drops {} -> {} (expected +{total_expected})\n{}",
            before.total_drops(),
            after.total_drops(),
            table(&before, &after, &expected)
        );
        // The echo request with a bad checksum got no reply.
        assert_eq!(after.icmp_echo_replies, before.icmp_echo_replies);

        // The forged UDP datagram was not echoed: the first echo is of the real one.
        udp.send(b"good").unwrap();
        let mut buf = [0u8; 64];
        let n = udp.recv(&mut buf).expect("UDP echo still works");
        assert_eq!(&buf[..n], b"good");

        // The established connection is intact and still echoes correctly.
        let data = pattern(77, 64 * 1024);
        let got = echo_through(&conn, &data);
        assert_same("echo after the bad packets", &got, &data);

        // And new connections are still accepted.
        let fresh = kernel_connect(SocketAddr::new(STACK_V6, ECHO_PORT)).expect("new connection");
        let data = pattern(78, 10_000);
        assert_same("fresh connection", &echo_through(&fresh, &data), &data);
    });
}
