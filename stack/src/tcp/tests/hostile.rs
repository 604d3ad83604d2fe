//! Hostile networks, one segment at a time: SYN cookies (RFC 4987 3.6) and the resource
//! caps in LISTEN; ICMP errors about connections (RFC 1122 4.2.3.9, RFC 5461, validated
//! as RFC 5927 asks); path MTU discovery (RFC 1191, RFC 8201); the RFC 5961 section 7
//! rate limit of challenge ACKs.
//!
//! Same harness as the parent module. ICMP errors are built with etherparse and quote
//! the first 28 (IPv4) or 48 (IPv6) bytes of a packet the stack really sent, as a
//! router would (RFC 792, RFC 4443 2.4(c) allow more).

use super::*;
use crate::error::ConnError;
use crate::tcp::TcpReject;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Icmpv6Type};

/// A router between us and the peer.
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn sack_permitted() -> TcpOptionElement {
    TcpOptionElement::SelectiveAcknowledgementPermitted
}

fn ts(val: u32, ecr: u32) -> TcpOptionElement {
    TcpOptionElement::Timestamp(val, ecr)
}

impl TestStack {
    /// Everything the stack sends now, as raw packets.
    fn recv_raw(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(n) = self.stack.poll_transmit(self.now, &mut self.buf) {
            out.push(self.buf[..n].to_vec());
        }
        out
    }

    /// An ICMPv4 error from [`ROUTER`] to us quoting `quote`.
    fn icmp4(&mut self, t: Icmpv4Type, quote: &[u8]) {
        let IpAddr::V4(local) = self.local.ip() else { panic!("an IPv4 connection") };
        let mut pkt = Vec::new();
        PacketBuilder::ipv4(ROUTER.octets(), local.octets(), 64).icmpv4(t).write(&mut pkt, quote).unwrap();
        self.stack.input(self.now, &pkt);
    }

    /// An ICMPv6 error from [`ROUTER6`] to us quoting `quote`.
    fn icmp6(&mut self, t: Icmpv6Type, quote: &[u8]) {
        let IpAddr::V6(local) = self.local.ip() else { panic!("an IPv6 connection") };
        let mut pkt = Vec::new();
        PacketBuilder::ipv6(ROUTER6.octets(), local.octets(), 64).icmpv6(t).write(&mut pkt, quote).unwrap();
        self.stack.input(self.now, &pkt);
    }
}

/// The IP header and the first 8 bytes of the transport header of `pkt`.
fn quote(pkt: &[u8]) -> Vec<u8> {
    let ip = if pkt[0] >> 4 == 4 { 20 } else { 40 };
    pkt[..ip + 8].to_vec()
}

/// `pkt` (one of our TCP segments) with its sequence number replaced: a forged quote.
fn with_seq(pkt: &[u8], seq: u32) -> Vec<u8> {
    let mut q = quote(pkt);
    let at = q.len() - 4;
    q[at..].copy_from_slice(&seq.to_be_bytes());
    q
}

fn frag_needed(mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu })
}

fn drops(h: &TestStack, r: DropReason) -> u64 {
    h.stack.stats().dropped(r)
}

// ------------------------------------------------------------------------- SYN cookies

/// RFC 4987 3.6: a listener with backlog 1 holding one embryo answers the next SYN with
/// a cookie: a SYN-ACK with our MSS and no other option (no timestamps to keep them
/// in), and no socket. The returning ACK makes the connection, established, in the
/// accept queue, with the peer's MSS rounded down to the cookie's table (1400 -> 1380).
#[test]
fn test_listen_syn_cookie() {
    let mut h = listen_with(1);
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    h.recv_one();
    let sockets = h.stack.socket_count();
    h.send(h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1400)]));
    let synack = h.recv_one();
    let want = h.reply(SYN | ACK, synack.seq, 50_001).to_port(40001).opts(&[mss(MSS)]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
    assert_eq!(h.stack.socket_count(), sockets, "no state kept for the SYN");
    assert_eq!(h.stack.stats().syn_cookies_sent, 1);
    let cookie = Sq(synack.seq);

    send!(h, h.seg(ACK, 50_001, cookie + 1).from_port(40001) => []);
    let c = h.stack.tcp_accept(h.listener()).expect("the cookie's connection is acceptable");
    let i = h.stack.tcp_info(c).unwrap();
    assert_eq!((i.state, i.iss.0, i.irs.0, i.snd_nxt.0), (TcpState::Established, cookie.0, 50_000, cookie.0 + 1));
    assert_eq!((i.mss, i.sack, i.timestamps, i.window_scaling, i.srtt), (1380, false, false, false, None));
    assert_eq!((h.stack.stats().syn_cookies_valid, h.stack.stats().tcp_passive_opens), (1, 2));
    // It carries data both ways like any connection.
    send!(h, h.seg(PSH | ACK, 50_001, cookie + 1).from_port(40001).data(b"hello")
        => [h.reply(ACK, cookie + 1, 50_006).to_port(40001).win(WIN - 5)]);
    let mut buf = [0u8; 16];
    assert_eq!(h.stack.tcp_recv(c, &mut buf).unwrap(), 5);
    h.stack.tcp_send(c, b"world").unwrap();
    h.expect(&[h.reply(PSH | ACK, cookie + 1, 50_006).to_port(40001).data(b"world")]);
    h.stack.check_invariants().unwrap();
}

/// With timestamps on the SYN the cookie SYN-ACK offers window scale, SACK and
/// timestamps, and its TSval's low 6 bits hold the peer's shift (7) and SACK (16): 23.
/// The ACK's TSecr brings them back.
#[test]
fn test_listen_syn_cookie_with_timestamps() {
    let cfg = Config { sack: true, timestamps: true, ..config() };
    let mut h = TestStack::new(cfg);
    h.listener = Some(h.stack.tcp_listen(h.local, 1).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    h.recv_one();
    let opts = [mss(1460), ws(7), sack_permitted(), ts(100, 0)];
    h.send(h.seg(SYN, 50_000, 0).from_port(40001).opts(&opts));
    let mut synack = h.recv_one();
    let tsval = match synack.options.iter().find_map(|o| match o {
        TcpOptionElement::Timestamp(v, e) => Some((*v, *e)),
        _ => None,
    }) {
        Some((v, 100)) => v,
        other => panic!("timestamps echoing 100 expected, got {other:?}"),
    };
    assert_eq!(tsval & 0x3f, 7 | 16);
    synack.options.retain(|o| !matches!(o, TcpOptionElement::Timestamp(..)));
    let want = h.reply(SYN | ACK, synack.seq, 50_001).to_port(40001).opts(&[mss(MSS), ws(0), sack_permitted()]);
    assert!(want.matches(&synack), "expected {want:?}, got {synack:?}");
    let cookie = Sq(synack.seq);
    send!(h, h.seg(ACK, 50_001, cookie + 1).from_port(40001).win(100).opts(&[ts(101, tsval)]) => []);
    let c = h.stack.tcp_accept(h.listener()).unwrap();
    let i = h.stack.tcp_info(c).unwrap();
    assert_eq!((i.mss, i.sack, i.timestamps, i.window_scaling), (1460, true, true, true));
    // Timed by the echoed TSval with its low 6 bits cleared: at most 63 ms long.
    assert!(i.srtt.is_some_and(|r| r < ms(64)), "{:?}", i.srtt);
    assert_eq!((i.snd_wscale, i.rcv_wscale, i.snd_wnd), (7, 0, 100 << 7));
}

/// An ACK whose cookie does not verify is answered like any ACK in LISTEN, and counted.
#[test]
fn test_listen_syn_cookie_invalid() {
    let mut h = listen_with(1);
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    h.recv_one();
    h.send(h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)]));
    let cookie = Sq(h.recv_one().seq);
    send!(h, h.seg(ACK, 50_001, cookie + 2).from_port(40001) => [h.rst_for_ack(cookie + 2).to_port(40001)]);
    // Not from the SYN it answered: another sequence number.
    send!(h, h.seg(ACK, 50_002, cookie + 1).from_port(40001) => [h.rst_for_ack(cookie + 1).to_port(40001)]);
    let s = h.stack.stats();
    assert_eq!((s.syn_cookies_invalid, s.tcp_rejected(TcpReject::SynCookieInvalid)), (2, 2));
    assert_eq!(h.stack.socket_count(), 2, "the listener and its first embryo");
}

/// A cookie ACK while the accept queue is full is dropped silently (the peer will send
/// again, as with Linux); once there is room it makes the connection.
#[test]
fn test_listen_syn_cookie_accept_queue_full() {
    let mut h = listen_with(1);
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let iss = Sq(h.recv_one().seq);
    h.send(h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)]));
    let cookie = Sq(h.recv_one().seq);
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    let overflow = drops(&h, DropReason::ListenOverflow);
    send!(h, h.seg(ACK, 50_001, cookie + 1).from_port(40001) => []);
    assert_eq!(drops(&h, DropReason::ListenOverflow), overflow + 1);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    send!(h, h.seg(PSH | ACK, 50_001, cookie + 1).from_port(40001).data(b"x")
        => [h.reply(ACK, cookie + 1, 50_002).to_port(40001).win(WIN - 1)]);
    assert!(h.stack.tcp_accept(h.listener()).is_ok());
}

/// An embryo whose handshake would complete into a full accept queue: its ACK is
/// dropped (as Linux does), it stays in SYN-RECEIVED, and completes once there is room.
#[test]
fn test_syn_received_accept_queue_full() {
    let mut h = listen_with(2);
    let mut isss = Vec::new();
    for (port, seq) in [(30000, X), (30001, 20_000)] {
        h.send(h.seg(SYN, seq, 0).from_port(port).opts(&[mss(1460)]));
        isss.push(Sq(h.recv_one().seq));
    }
    send!(h, h.seg(ACK, X + 1, isss[0] + 1).from_port(30000) => []);
    // Room in the half-open queue again: a third embryo.
    h.send(h.seg(SYN, 30_000, 0).from_port(30002).opts(&[mss(1460)]));
    isss.push(Sq(h.recv_one().seq));
    send!(h, h.seg(ACK, 20_001, isss[1] + 1).from_port(30001) => []);
    // Two established and not accepted: the third handshake waits.
    let overflow = drops(&h, DropReason::ListenOverflow);
    send!(h, h.seg(ACK, 30_001, isss[2] + 1).from_port(30002) => []);
    assert_eq!(drops(&h, DropReason::ListenOverflow), overflow + 1);
    h.stack.check_invariants().unwrap();
    h.peer.set_port(30002);
    assert_eq!(h.row_state(), Some("SYN-RECEIVED"));
    h.stack.tcp_accept(h.listener()).unwrap();
    send!(h, h.seg(ACK, 30_001, isss[2] + 1).from_port(30002) => []);
    assert_eq!(h.row_state(), Some("ESTABLISHED"));
    h.stack.check_invariants().unwrap();
}

/// A flood of SYNs against a full half-open queue costs no memory: each gets a cookie
/// and nothing else; a real client among them connects with its cookie.
#[test]
fn test_listen_syn_flood_keeps_no_state() {
    let mut h = listen_with(2);
    for port in [30000, 30001] {
        h.send(h.seg(SYN, X, 0).from_port(port).opts(&[mss(1460)]));
        h.recv_one();
    }
    let sockets = h.stack.socket_count();
    let mut cookies = Vec::new();
    for i in 0..2000u32 {
        h.send(h.seg(SYN, 7 * i, 0).from_port(31000 + i as u16).opts(&[mss(1460)]));
        let synack = h.recv_one();
        assert_eq!((synack.flags, synack.ack), (SYN | ACK, 7 * i + 1));
        cookies.push(synack.seq);
    }
    assert_eq!(h.stack.socket_count(), sockets);
    assert_eq!(h.stack.stats().syn_cookies_sent, 2000);
    let i = 1234;
    send!(h, h.seg(ACK, 7 * i + 1, Sq(cookies[i as usize]) + 1).from_port(31000 + i as u16) => []);
    assert!(h.stack.tcp_accept(h.listener()).is_ok());
    // Two periods of 64 s later the cookies are void: the listener answers ACKs with
    // RSTs as if it had never sent one.
    h.advance(Duration::from_secs(200));
    let c = Sq(cookies[7]);
    send!(h, h.seg(ACK, 7 * 7 + 1, c + 1).from_port(31007) => [h.rst_for_ack(c + 1).to_port(31007)]);
    assert_eq!(h.stack.stats().tcp_rejected(TcpReject::ListenAck), 1);
}

/// The global cap on half-open connections brings cookies in before a listener's own
/// backlog is reached; with cookies off such a SYN is dropped.
#[test]
fn test_listen_max_half_open() {
    let mut h = TestStack::new(Config { max_half_open: 1, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    h.recv_one();
    assert_eq!(h.stack.stats().tcp_half_open, 1);
    h.send(h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)]));
    h.recv_one();
    assert_eq!((h.stack.stats().syn_cookies_sent, h.stack.socket_count()), (1, 2));

    let mut h = TestStack::new(Config { max_half_open: 1, syn_cookies: false, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    h.recv_one();
    send!(h, h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)]) => []);
    assert_eq!(drops(&h, DropReason::ListenOverflow), 1);
}

/// At `max_sockets` a SYN is refused with RST (RFC 9293 3.10.7.1's
/// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`), and the calls that would make a
/// socket fail.
#[test]
fn test_listen_max_sockets() {
    let mut h = TestStack::new(Config { max_sockets: 2, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    h.recv_one();
    send!(h, h.seg(SYN, 50_000, 0).from_port(40001).opts(&[mss(1460)])
        => [h.reply(RST | ACK, 0, 50_001).to_port(40001).win(0)]);
    assert_eq!(drops(&h, DropReason::ResourceLimit), 1);
    assert_kind(h.stack.tcp_connect(h.now, h.peer, None), ErrorKind::OutOfMemory);
    assert_kind(h.stack.udp_bind("10.0.0.2:53".parse().unwrap()), ErrorKind::OutOfMemory);
    assert_kind(h.stack.tcp_listen("10.0.0.2:81".parse().unwrap(), 1), ErrorKind::OutOfMemory);
}

// ------------------------------------------------------------------------- path MTU

/// ESTABLISHED with 3000 bytes in flight (1460 + 1460 + 80) toward the peer.
fn in_flight_3000() -> (TestStack, Vec<Vec<u8>>, Vec<u8>) {
    let mut h = established();
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    let data = payload(3000, 3);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), 3000);
    let raw = h.recv_raw();
    let segs: Vec<Seg> = raw.iter().map(|p| Seg::parse(p)).collect();
    let lens: Vec<usize> = segs.iter().map(|s| s.payload.len()).collect();
    assert_eq!(lens, vec![1460, 1460, 80]);
    (h, raw, data)
}

/// RFC 1191: a "fragmentation needed" with next-hop MTU 1000 quoting a segment in
/// flight lowers the MSS to 960, and what was sent larger goes again at once, cut to
/// size; the 80-byte segment stays as it was. Later data uses the new MSS.
#[test]
fn test_frag_needed_lowers_the_mss() {
    let (mut h, raw, data) = in_flight_3000();
    let iss = h.iss;
    h.icmp4(frag_needed(1000), &quote(&raw[1]));
    let d = &data;
    h.expect(&[
        h.reply(ACK, iss + 1, X + 1).data(&d[..960]),
        h.reply(ACK, iss + 961, X + 1).data(&d[960..1460]),
        h.reply(ACK, iss + 1461, X + 1).data(&d[1460..2420]),
        h.reply(ACK, iss + 2421, X + 1).data(&d[2420..2920]),
    ]);
    let i = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((i.mss, i.pmtu, i.cwnd > 0), (960, 1000, true));
    assert_eq!((h.stack.stats().pmtu_updates, h.stack.stats().pmtu_entries), (1, 1));
    // The peer acknowledges everything; new data comes in 960-byte segments.
    send!(h, h.seg(ACK, X + 1, iss + 3001) => []);
    let more = payload(1000, 4);
    h.stack.tcp_send(h.conn(), &more).unwrap();
    h.expect(&[
        h.reply(ACK, iss + 3001, X + 1).data(&more[..960]),
        h.reply(PSH | ACK, iss + 3961, X + 1).data(&more[960..]),
    ]);
    h.stack.check_invariants().unwrap();
}

/// RFC 5927 4.1: an ICMP error quoting a sequence number not in flight, a connection
/// that does not exist, or an MTU that is not lower, changes nothing and is counted.
#[test]
fn test_frag_needed_forged_is_ignored() {
    let (mut h, raw, _) = in_flight_3000();
    let iss = h.iss;
    h.icmp4(frag_needed(1000), &with_seq(&raw[0], (iss + 5000).0));
    h.icmp4(frag_needed(1000), &with_seq(&raw[0], (iss + 0).0));
    h.expect_nothing();
    assert_eq!(drops(&h, DropReason::IcmpErrorOutOfWindow), 2);
    let mut other_port = quote(&raw[0]);
    other_port[20..22].copy_from_slice(&81u16.to_be_bytes());
    h.icmp4(frag_needed(1000), &other_port);
    assert_eq!(drops(&h, DropReason::IcmpErrorNoSocket), 1);
    h.icmp4(frag_needed(1500), &quote(&raw[0]));
    h.icmp4(frag_needed(50), &quote(&raw[0]));
    assert_eq!(drops(&h, DropReason::IcmpErrorBadMtu), 2);
    h.expect_nothing();
    let i = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((i.mss, i.pmtu, h.stack.stats().pmtu_updates), (MSS as usize, 1500, 0));
    // A report below the IPv4 floor (576, `Config::pmtu_min_v4`) sets the floor.
    h.icmp4(frag_needed(300), &quote(&raw[2]));
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().mss, 536);
}

/// RFC 8201: an ICMPv6 "packet too big" (MTU 1280) lowers the MSS to 1220; the 1440-byte
/// segment goes again as 1220 + 220, the 560-byte one is left alone.
#[test]
fn test_packet_too_big_ipv6() {
    let mut h = TestStack::new(Config { addrs: vec![IpAddr::V4(LOCAL_IP), IpAddr::V6(LOCAL_IP6)], ..config() });
    h.local = SocketAddr::new(IpAddr::V6(LOCAL_IP6), LOCAL_PORT);
    h.peer = SocketAddr::new(IpAddr::V6(PEER_IP6), PEER_PORT);
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1440)]));
    let iss = Sq(h.recv_one().seq);
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    let data = payload(2000, 5);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    let raw = h.recv_raw();
    assert_eq!(raw.len(), 2);
    h.icmp6(Icmpv6Type::PacketTooBig { mtu: 1280 }, &quote(&raw[0]));
    h.expect(&[
        h.reply(ACK, iss + 1, X + 1).data(&data[..1220]),
        h.reply(ACK, iss + 1221, X + 1).data(&data[1220..1440]),
    ]);
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().mss, 1220);
    // A report below 1280 does not take the estimate below it (RFC 8201 4).
    h.icmp6(Icmpv6Type::PacketTooBig { mtu: 600 }, &quote(&raw[1]));
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().mss, 1220);
    assert_eq!(drops(&h, DropReason::IcmpErrorBadMtu), 1);
}

// ------------------------------------------------------------------------- ICMP errors

/// RFC 1122 4.2.3.9 / RFC 5461 (and Linux): a port unreachable quoting our SYN ends the
/// connection attempt with ECONNREFUSED; one quoting another sequence number does not.
#[test]
fn test_syn_sent_port_unreachable() {
    let mut h = TestStack::new(config());
    h.peer = SocketAddr::new(IpAddr::V4(PEER_IP), REMOTE_SERVICE_PORT);
    let c = h.stack.tcp_connect(h.now, h.peer, None).unwrap();
    h.conn = Some(c);
    let syn = h.recv_raw().remove(0);
    h.local = SocketAddr::new(IpAddr::V4(LOCAL_IP), Seg::parse(&syn).src.port());
    let iss = Seg::parse(&syn).seq;
    let port = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    h.icmp4(port.clone(), &with_seq(&syn, iss.wrapping_add(1)));
    assert_eq!(h.stack.tcp_poll_connect(c), Ok(false), "a forged one changes nothing");
    h.icmp4(port, &quote(&syn));
    assert_eq!(h.stack.tcp_poll_connect(c), Err(crate::ConnectError::Failed(ConnError::Refused)));
    assert_eq!(h.stack.stats().icmp_hard_errors, 1);
    h.timers_at(h.now + Duration::from_secs(10));
    h.expect_nothing();
}

/// During the attempt a host unreachable ends it too (as Linux does; the error is
/// EHOSTUNREACH); an IPv6 port unreachable is ECONNREFUSED.
#[test]
fn test_syn_sent_unreachable_kinds() {
    let mut h = TestStack::new(config());
    h.peer = SocketAddr::new(IpAddr::V4(PEER_IP), REMOTE_SERVICE_PORT);
    let c = h.stack.tcp_connect(h.now, h.peer, None).unwrap();
    let syn = h.recv_raw().remove(0);
    h.icmp4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host), &quote(&syn));
    assert_kind(h.stack.tcp_poll_connect(c), ErrorKind::HostUnreachable);

    let mut h = TestStack::new(Config { addrs: vec![IpAddr::V6(LOCAL_IP6)], ..config() });
    h.local = SocketAddr::new(IpAddr::V6(LOCAL_IP6), 0);
    let c = h.stack.tcp_connect(h.now, SocketAddr::new(IpAddr::V6(PEER_IP6), 5000), None).unwrap();
    let syn = h.recv_raw().remove(0);
    h.icmp6(Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port), &quote(&syn));
    assert_kind(h.stack.tcp_poll_connect(c), ErrorKind::ConnectionRefused);
}

/// On an established connection an ICMP error is soft (RFC 1122 4.2.3.9, RFC 5461):
/// recorded in `TcpInfo`, the connection goes on; if it later times out, the soft error
/// is what it reports (as Linux does).
#[test]
fn test_established_soft_error() {
    let mut h = TestStack::new(Config { max_retries: 2, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let iss = Sq(h.recv_one().seq);
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.stack.tcp_send(h.conn(), b"data").unwrap();
    let raw = h.recv_raw();
    h.icmp4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port), &quote(&raw[0]));
    h.icmp4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host), &quote(&raw[0]));
    h.expect_nothing();
    let i = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((i.state, i.soft_error), (TcpState::Established, Some(ConnError::HostUnreachable)));
    assert_eq!(h.stack.stats().icmp_soft_errors, 2);
    while h.stack.tcp_state(h.conn()).unwrap() != TcpState::Closed {
        let next = h.stack.poll_timeout().expect("a retransmission timer");
        h.timers_at(next);
        h.recv_all();
    }
    assert_kind(h.read(), ErrorKind::HostUnreachable);
}

/// A listener's embryo whose SYN-ACK draws a hard error (port unreachable) is dropped,
/// as Linux drops the request; a soft one leaves it. The listener is untouched.
#[test]
fn test_syn_received_embryo_hard_error() {
    let mut h = listen();
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let synack = h.recv_raw().remove(0);
    h.icmp4(Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit), &quote(&synack));
    assert_eq!(h.row_state(), Some("SYN-RECEIVED"));
    h.icmp4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port), &quote(&synack));
    assert_eq!(h.row(), None);
    h.assert_listening();
    assert_eq!(h.stack.stats().tcp_half_open, 0);
    h.stack.check_invariants().unwrap();
}

// ------------------------------------------------------------------------- RFC 5961 7

/// RFC 5961 section 7: challenge ACKs (and ACKs for other rejected segments without
/// data) at most once per 500 ms per connection; a rejected segment with data is
/// always answered (its sender needs the ACK).
#[test]
fn test_challenge_ack_rate_limit() {
    let mut h = established();
    let iss = h.iss;
    let ack = h.reply(ACK, iss + 1, X + 1);
    send!(h, h.seg(RST, X + 2, 0) => [ack.clone()]);
    send!(h, h.seg(RST, X + 3, 0) => []);
    send!(h, h.seg(SYN, X + 1, 0).opts(&[mss(1460)]) => []);
    send!(h, h.seg(ACK, X + 1 + 100_000, iss + 1) => []);
    assert_eq!(h.stack.stats().tcp_acks_rate_limited, 3);
    // Out-of-window data: answered.
    send!(h, h.seg(PSH | ACK, X + 1 + 100_000, iss + 1).data(b"old") => [ack.clone()]);
    h.advance(ms(499));
    send!(h, h.seg(RST, X + 2, 0) => []);
    h.advance(ms(1));
    send!(h, h.seg(RST, X + 2, 0) => [ack.clone()]);
    assert_eq!(h.stack.stats().tcp_acks_rate_limited, 4);
    h.assert_state(TcpState::Established);

    // `None` answers every one.
    let mut h = TestStack::new(Config { challenge_ack_interval: None, ..config() });
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460)]));
    let iss = Sq(h.recv_one().seq);
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    for _ in 0..3 {
        send!(h, h.seg(RST, X + 2, 0) => [h.reply(ACK, iss + 1, X + 1)]);
    }
}
