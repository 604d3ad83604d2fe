//! Core-level tests: two stacks wired back to back in memory, UDP, ICMP, ports.

use super::*;
use crate::error::{ConnectError, UdpSendError};
use crate::policy::Policy;
use crate::socket::{AnyHandle, Readiness, TcpHandle};
use crate::tcp::TcpState;
use crate::wire::{IcmpRepr, IcmpV4Message, UdpRepr};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

fn cfg(addr: &str, seed: u64) -> Config {
    Config { addrs: vec![addr.parse().unwrap()], seed, msl: Duration::from_millis(500), ..Config::default() }
}

/// Move every pending packet from `from` into `to`; returns how many moved.
fn pump(now: Instant, from: &mut Stack, to: &mut Stack) -> usize {
    let mut buf = vec![0u8; 1500];
    let mut n = 0;
    while let Some(len) = from.poll_transmit(now, &mut buf) {
        to.input(now, &buf[..len]);
        n += 1;
    }
    n
}

struct Pair {
    a: Stack,
    b: Stack,
    now: Instant,
    /// Drop every Nth packet from b to a.
    drop_b_to_a: Option<u64>,
    sent_b_to_a: u64,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(Stack::new(cfg("10.0.0.1", 1)), Stack::new(cfg("10.0.0.2", 2)))
    }

    fn with(a: Stack, b: Stack) -> Pair {
        Pair { a, b, now: Instant::ZERO, drop_b_to_a: None, sent_b_to_a: 0 }
    }

    /// Exchange packets until quiet; then, if `advance`, jump to the next timer.
    fn step(&mut self, advance: bool) -> bool {
        let mut moved = pump(self.now, &mut self.a, &mut self.b);
        let mut buf = vec![0u8; 1500];
        while let Some(len) = self.b.poll_transmit(self.now, &mut buf) {
            self.sent_b_to_a += 1;
            moved += 1;
            if self.drop_b_to_a.is_none_or(|n| !self.sent_b_to_a.is_multiple_of(n)) {
                self.a.input(self.now, &buf[..len]);
            }
        }
        self.a.check_invariants().unwrap();
        self.b.check_invariants().unwrap();
        if moved > 0 {
            return true;
        }
        if !advance {
            return false;
        }
        let next = [self.a.poll_timeout(), self.b.poll_timeout()].into_iter().flatten().min();
        match next {
            Some(t) => {
                self.now = self.now.max(t);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
                true
            }
            None => false,
        }
    }

    fn settle(&mut self) {
        for _ in 0..100_000 {
            if !self.step(false) {
                return;
            }
        }
        panic!("did not settle");
    }
}

#[test]
fn handshake_transfer_and_close_between_two_stacks() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c).unwrap());
    let s = p.a.tcp_accept(l).unwrap();
    assert_eq!(p.a.tcp_state(s).unwrap(), TcpState::Established);

    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let got = transfer(&mut p, c, s, &data, |_| true);
    assert_eq!(got.len(), data.len());
    assert!(got == data);

    p.b.close(c).unwrap();
    p.settle();
    let mut buf = [0u8; 16];
    assert_eq!(p.a.tcp_recv(s, &mut buf).unwrap(), 0, "EOF after peer FIN");
    assert_eq!(p.a.tcp_state(s).unwrap(), TcpState::CloseWait);
    p.a.close(s).unwrap();
    p.settle();
    let row = p.b.sockets();
    assert_eq!(row.len(), 1, "{row:?}");
    assert_eq!(row[0].state, "TIME-WAIT");
    // a's side is gone (LAST-ACK -> CLOSED); only its listener remains.
    assert_eq!(p.a.sockets().len(), 1);
    while p.step(true) {}
    assert!(p.b.sockets().is_empty(), "TIME-WAIT expired");
}

#[test]
fn udp_echo_and_port_unreachable() {
    let mut p = Pair::new();
    let sa = p.a.udp_bind("0.0.0.0:7".parse().unwrap()).unwrap();
    let sb = p.b.udp_bind("10.0.0.2:0".parse().unwrap()).unwrap();
    let port = p.b.local_addr(sb).unwrap().port();
    assert!((49152..=65535).contains(&port));
    p.b.udp_send_to(sb, b"hello", "10.0.0.1:7".parse().unwrap()).unwrap();
    p.settle();
    let mut buf = [0u8; 64];
    let (n, from) = p.a.udp_recv_from(sa, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, SocketAddr::new("10.0.0.2".parse().unwrap(), port));
    // Nobody on port 9: ICMP port unreachable comes back (and is ignored by b).
    p.b.udp_send_to(sb, b"x", "10.0.0.1:9".parse().unwrap()).unwrap();
    p.settle();
    assert_eq!(p.a.stats().dropped(DropReason::UdpNoSocket), 1);
    assert_eq!(p.a.stats().icmp_unreachable_sent, 1);
}

#[test]
fn closed_port_refuses_connect() {
    let mut p = Pair::new();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:81".parse().unwrap(), None).unwrap();
    p.settle();
    assert_eq!(p.b.tcp_poll_connect(c).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
}

/// Push `data` from `c` on `p.b` to `s` on `p.a`, reading only when `read` says so.
fn transfer(p: &mut Pair, c: TcpHandle, s: TcpHandle, data: &[u8], mut read: impl FnMut(Instant) -> bool) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..1_000_000 {
        if sent < data.len() {
            if let Ok(n) = p.b.tcp_send(c, &data[sent..]) {
                sent += n;
            }
        }
        if read(p.now) {
            while let Ok(n) = p.a.tcp_recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        if got.len() == data.len() {
            break;
        }
        assert!(p.step(true), "stalled at sent={sent} got={}", got.len());
    }
    got
}

#[test]
fn zero_window_is_probed_and_reopens() {
    let mut a_cfg = cfg("10.0.0.1", 1);
    a_cfg.tcp_rx_buffer = 2000;
    let mut p = Pair::with(Stack::new(a_cfg), Stack::new(cfg("10.0.0.2", 2)));
    let l = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    p.settle();
    let s = p.a.tcp_accept(l).unwrap();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    // The reader sleeps for the first 10 virtual seconds: the window closes, the
    // sender persists (probes), then the window reopens and everything arrives.
    let got = transfer(&mut p, c, s, &data, |now| now >= Instant::from_secs(10));
    assert!(got == data);
    assert!(p.now >= Instant::from_secs(10));
}

#[test]
fn lost_segments_are_retransmitted() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    p.settle();
    let s = p.a.tcp_accept(l).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    // b -> a drops every 17th packet; a -> b is clean.
    p.drop_b_to_a = Some(17);
    let got = transfer(&mut p, c, s, &data, |_| true);
    p.drop_b_to_a = None;
    assert!(got == data);
    // Let the last (possibly delayed) ACK arrive.
    for _ in 0..100 {
        if !p.step(true) {
            break;
        }
    }
    assert!(p.b.stats().tcp_retransmits > 0);
    let info = p.b.tcp_info(c).unwrap();
    assert_eq!(info.retransmits, p.b.stats().tcp_retransmits);
    assert!(info.srtt.is_some(), "RTT was sampled");
    assert_eq!(info.snd_una, info.snd_nxt, "everything acknowledged");
}

#[test]
fn bind_rules_at_the_stack() {
    let mut s = Stack::new(Config { reserve_privileged_ports: true, ..cfg("10.0.0.1", 3) });
    fn kind<T, E: Into<io::Error>>(r: Result<T, E>) -> io::ErrorKind {
        r.map(|_| ()).map_err(Into::into).unwrap_err().kind()
    }
    assert_eq!(kind(s.tcp_listen("10.9.9.9:8080".parse().unwrap(), 4)), io::ErrorKind::AddrNotAvailable);
    assert_eq!(kind(s.tcp_listen("[::]:8080".parse().unwrap(), 4)), io::ErrorKind::AddrNotAvailable, "no v6 address");
    assert_eq!(kind(s.tcp_listen("10.0.0.1:80".parse().unwrap(), 4)), io::ErrorKind::PermissionDenied);
    let w = s.tcp_listen("0.0.0.0:8080".parse().unwrap(), 4).unwrap();
    assert_eq!(kind(s.tcp_listen("10.0.0.1:8080".parse().unwrap(), 4)), io::ErrorKind::AddrInUse);
    // TCP and UDP have separate tables.
    s.udp_bind("10.0.0.1:8080".parse().unwrap()).unwrap();
    assert_eq!(kind(s.udp_bind("0.0.0.0:8080".parse().unwrap())), io::ErrorKind::AddrInUse);
    s.close(w).unwrap();
    s.tcp_listen("10.0.0.1:8080".parse().unwrap(), 4).unwrap();
    let e = s.tcp_listen("10.0.0.1:0".parse().unwrap(), 4).unwrap();
    assert!(s.local_addr(e).unwrap().port() >= 49152);
}

#[test]
fn listener_rebinds_while_old_connection_is_in_time_wait() {
    let mut p = Pair::new();
    let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let l = p.a.tcp_listen(addr, 8).unwrap();
    let c = p.b.tcp_connect(p.now, addr, None).unwrap();
    p.settle();
    let s = p.a.tcp_accept(l).unwrap();
    // The server closes first, so its side ends in TIME-WAIT.
    p.a.close(s).unwrap();
    p.settle();
    p.b.close(c).unwrap();
    p.settle();
    assert!(p.a.sockets().iter().any(|r| r.state == "TIME-WAIT"), "{:?}", p.a.sockets());
    p.a.close(l).unwrap();
    let l2 = p.a.tcp_listen(addr, 8).expect("re-listen while TIME-WAIT holds the old connection");
    let c2 = p.b.tcp_connect(p.now, addr, None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c2).unwrap());
    assert!(p.a.tcp_accept(l2).is_ok());
}

#[test]
fn ping_gets_an_echo_reply() {
    let mut s = Stack::new(cfg("10.0.0.1", 4));
    let mut req = vec![0u8; 128];
    let msg = IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 7, seq: 9, data: b"abc" });
    let n = wire::emit_icmp(&mut req, "10.0.0.9".parse().unwrap(), "10.0.0.1".parse().unwrap(), &msg).unwrap();
    s.input(Instant::ZERO, &req[..n]);
    let mut out = vec![0u8; 1500];
    let m = s.poll_transmit(Instant::ZERO, &mut out).expect("a reply");
    let p = wire::parse(&out[..m]).unwrap();
    assert_eq!(p.ip.dst, "10.0.0.9".parse::<IpAddr>().unwrap());
    assert_eq!(p.transport, Transport::Icmp(IcmpRepr::V4(IcmpV4Message::EchoReply { ident: 7, seq: 9, data: b"abc" })));
    assert_eq!(s.stats().icmp_echo_replies, 1);
}

/// Buffers grow on demand and are given back once idle: after a transfer has been
/// read and acknowledged, housekeeping leaves no buffer memory behind.
#[test]
fn idle_connections_give_buffer_memory_back() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    p.settle();
    let s = p.a.tcp_accept(l).unwrap();
    assert_eq!(p.a.housekeeping(p.now) + p.b.housekeeping(p.now), 0, "nothing allocated before data");
    let data = vec![7u8; 300_000];
    let got = transfer(&mut p, c, s, &data, |_| true);
    assert_eq!(got.len(), data.len());
    // While data sits unread the memory stays.
    p.b.tcp_send(c, b"unread").unwrap();
    for _ in 0..100 {
        if !p.step(true) {
            break;
        }
    }
    assert!(p.a.housekeeping(p.now) >= 6);
    let mut buf = [0u8; 16];
    assert_eq!(p.a.tcp_recv(s, &mut buf).unwrap(), 6);
    // Still active (a segment came within the last second): buffers stay.
    assert!(p.a.housekeeping(p.now) > 0);
    // Quiet for a second: given back.
    let later = p.now + std::time::Duration::from_secs(1);
    assert_eq!(p.a.housekeeping(later), 0);
    assert_eq!(p.b.housekeeping(later), 0);
}

/// The caller's buffer is checked once, before anything leaves a queue.
#[test]
#[should_panic(expected = "shorter than the MTU")]
fn poll_transmit_wants_an_mtu_sized_buffer() {
    let mut s = Stack::new(cfg("10.0.0.1", 5));
    let mut small = vec![0u8; 1499];
    s.poll_transmit(Instant::ZERO, &mut small);
}

/// Control packets are built within the MTU: an ICMP error quotes what fits a small
/// link, and an echo reply that would not fit goes out as fragments (RFC 791 3.2).
#[test]
fn control_packets_fit_the_mtu() {
    let mut s = Stack::new(Config { mtu: 300, ..cfg("10.0.0.1", 6) });
    let (from, to): (IpAddr, IpAddr) = ("10.0.0.9".parse().unwrap(), "10.0.0.1".parse().unwrap());
    let mut pkt = vec![0u8; 2000];
    let payload = [0x33u8; 1000];
    let udp = UdpRepr { src_port: 5000, dst_port: 9, payload: &payload };
    let n = wire::emit_udp(&mut pkt, from, to, &udp).unwrap();
    s.input(Instant::ZERO, &pkt[..n]);
    let mut out = vec![0u8; 300];
    let m = s.poll_transmit(Instant::ZERO, &mut out).expect("a port unreachable");
    assert_eq!(m, 300, "quote trimmed to the MTU");
    assert!(matches!(wire::parse(&out[..m]).unwrap().transport, Transport::Icmp(_)));
    assert_eq!(s.stats().icmp_unreachable_sent, 1);

    let data = [7u8; 500];
    let msg = IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 1, seq: 1, data: &data });
    let n = wire::emit_icmp(&mut pkt, from, to, &msg).unwrap();
    s.input(Instant::ZERO, &pkt[..n]);
    // 20 + 8 + 500 bytes: (300 - 20) / 8 * 8 = 280 bytes of data per fragment.
    let mut lens = Vec::new();
    while let Some(m) = s.poll_transmit(Instant::ZERO, &mut out) {
        let f = wire::frag::parse_fragment(&out[..m]).expect("a fragment");
        assert_eq!((f.offset, f.more), (lens.iter().map(|l: &usize| l - 20).sum(), lens.is_empty()));
        lens.push(m);
    }
    assert_eq!(lens, vec![300, 248]);
    assert_eq!((s.stats().icmp_echo_replies, s.stats().ctrl_dropped, s.stats().frags_sent), (1, 0, 2));
}

/// A datagram is checked when queued (family, size, source), so sending it cannot
/// fail after it left the queue.
#[test]
fn udp_datagrams_are_checked_when_queued() {
    let mut s = Stack::new(Config { mtu: 100_000, ..cfg("10.0.0.1", 7) });
    let u = s.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let dst: SocketAddr = "10.0.0.9:53".parse().unwrap();
    let big = vec![0u8; 70_000];
    // The UDP length field is 16 bits (RFC 768), whatever the MTU.
    assert_eq!(
        s.udp_send_to(u, &big, dst),
        Err(crate::error::UdpSendError::TooLarge { len: 70_000, max: 65_535 - 28 })
    );
    assert_eq!(
        s.udp_send_to(u, b"x", "[fd00::9]:53".parse().unwrap()),
        Err(crate::error::UdpSendError::FamilyMismatch {
            local: "0.0.0.0".parse().unwrap(),
            dst: "[fd00::9]:53".parse().unwrap()
        })
    );
    assert_eq!(s.udp_send_to(u, &big[..65_535 - 28], dst), Ok(65_535 - 28));
    let mut out = vec![0u8; 100_000];
    let n = s.poll_transmit(Instant::ZERO, &mut out).expect("the datagram");
    assert_eq!(n, 65_535);
    let p = wire::parse(&out[..n]).unwrap();
    assert_eq!(p.ip.src, "10.0.0.1".parse::<IpAddr>().unwrap(), "the wildcard socket's source");
}

/// Everything `poll_readiness` reports until it is empty, for one socket.
fn events(s: &mut Stack, h: impl Into<AnyHandle>) -> Vec<Readiness> {
    let h = h.into().raw();
    let mut out = Vec::new();
    while let Some((x, r)) = s.poll_readiness() {
        if x == h {
            out.push(r);
        }
    }
    out
}

#[test]
fn readiness_events_rise_once_per_change() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    assert_eq!(p.b.readiness(c), Readiness::EMPTY, "handshake running");
    p.settle();
    // The client became writable (connected); the listener acceptable.
    assert_eq!(events(&mut p.b, c), [Readiness::WRITABLE]);
    assert_eq!(events(&mut p.a, l), [Readiness::ACCEPTABLE]);
    let s = p.a.tcp_accept(l).unwrap();
    assert_eq!(p.a.readiness(l), Readiness::EMPTY);
    // Accepting reports the new connection's own readiness (writable).
    assert_eq!(events(&mut p.a, s), [Readiness::WRITABLE]);
    // No Nagle: each small write goes out at once (no delayed-ACK wait in `settle`).
    p.b.tcp_set_nodelay(c, true).unwrap();

    // Data: readable once, not again for more data while unread.
    p.b.tcp_send(c, b"hello").unwrap();
    p.settle();
    assert_eq!(events(&mut p.a, s), [Readiness::READABLE]);
    p.b.tcp_send(c, b" again").unwrap();
    p.settle();
    assert_eq!(events(&mut p.a, s), []);
    let mut buf = [0u8; 64];
    assert_eq!(p.a.tcp_recv(s, &mut buf).unwrap(), 11);
    assert!(!p.a.readiness(s).contains(Readiness::READABLE));
    // Read dry, it rises again with the next data.
    p.b.tcp_send(c, b"!").unwrap();
    p.settle();
    assert_eq!(events(&mut p.a, s), [Readiness::READABLE]);
    assert_eq!(p.a.tcp_recv(s, &mut buf).unwrap(), 1);

    // A full send buffer stops being writable; the peer's ACKs of its reads make it
    // writable again.
    let big = vec![7u8; 4 * 1024 * 1024];
    let mut queued = 0;
    while let Ok(n) = p.b.tcp_send(c, &big[queued..]) {
        queued += n;
    }
    assert!(!p.b.readiness(c).contains(Readiness::WRITABLE));
    events(&mut p.b, c);
    let mut sink = vec![0u8; 64 * 1024];
    for _ in 0..100 {
        p.settle();
        while p.a.tcp_recv(s, &mut sink).is_ok() {}
        if p.b.readiness(c).contains(Readiness::WRITABLE) {
            break;
        }
    }
    assert_eq!(events(&mut p.b, c), [Readiness::WRITABLE]);

    // A reset closes it: everything rises for its waiters.
    p.a.tcp_abort(s).unwrap();
    p.settle();
    let r = events(&mut p.b, c);
    assert_eq!(r.len(), 1);
    assert!(r[0].contains(Readiness::CLOSED) && r[0].contains(Readiness::READABLE), "{r:?}");
}

#[test]
fn udp_readiness() {
    let mut p = Pair::new();
    let a = p.a.udp_bind("10.0.0.1:53".parse().unwrap()).unwrap();
    let b = p.b.udp_bind("10.0.0.2:0".parse().unwrap()).unwrap();
    assert_eq!(p.a.readiness(a), Readiness::WRITABLE);
    events(&mut p.a, a);
    p.b.udp_send_to(b, b"q", "10.0.0.1:53".parse().unwrap()).unwrap();
    p.settle();
    assert_eq!(events(&mut p.a, a), [Readiness::READABLE]);
    let mut buf = [0u8; 8];
    p.a.udp_recv_from(a, &mut buf).unwrap();
    assert_eq!(p.a.readiness(a), Readiness::WRITABLE);
}

fn policy(p: &Stack, text: &str) -> Policy {
    Policy::parse(text, p.policy_key()).unwrap()
}

#[test]
fn policy_rules_decide_new_flows_only() {
    let mut p = Pair::new();
    let l80 = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let _l81 = p.a.tcp_listen("10.0.0.1:81".parse().unwrap(), 8).unwrap();
    let _l82 = p.a.tcp_listen("10.0.0.1:82".parse().unwrap(), 8).unwrap();
    // An established connection from before the policy keeps working under drop-all.
    let old = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    p.settle();
    let old_s = p.a.tcp_accept(l80).unwrap();
    let text = "policy in drop\naccept in tcp dport 80\nreject in tcp dport 81\n";
    let pol = policy(&p.a, text);
    p.a.set_policy(Some(pol));
    // Accepted by the rule.
    let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c).unwrap());
    // Rejected: the client is refused at once (RST).
    let r = p.b.tcp_connect(p.now, "10.0.0.1:81".parse().unwrap(), None).unwrap();
    p.settle();
    assert_eq!(p.b.tcp_poll_connect(r).unwrap_err(), ConnectError::Failed(crate::ConnError::Refused));
    // Dropped by the default: nothing comes back, the client keeps waiting.
    let d = p.b.tcp_connect(p.now, "10.0.0.1:82".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(!p.b.tcp_poll_connect(d).unwrap(), "still trying");
    assert_eq!(p.b.tcp_state(d).unwrap(), TcpState::SynSent);
    // The old connection still moves data.
    p.b.tcp_send(old, b"still here").unwrap();
    p.settle();
    let mut buf = [0u8; 32];
    assert_eq!(p.a.tcp_recv(old_s, &mut buf).unwrap(), 10);
    let pol = p.a.policy().unwrap();
    let hits: Vec<u64> = pol.rules().map(|(_, h)| h).collect();
    assert_eq!(hits, [1, 1]);
    assert_eq!(pol.default_policy(crate::policy::rules::Direction::In).1, 1);
    assert_eq!(p.a.stats().dropped(DropReason::Filtered), 2);
}

#[test]
fn policy_outbound_rule_fails_connect_and_send() {
    let mut p = Pair::new();
    let pol = policy(&p.b, "drop out tcp to 10.0.0.1 dport 22\nreject out udp dport 53\n");
    p.b.set_policy(Some(pol));
    let e = p.b.tcp_connect(p.now, "10.0.0.1:22".parse().unwrap(), None).unwrap_err();
    assert_eq!(e, ConnectError::Filtered);
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);
    assert!(p.b.tcp_connect(p.now, "10.0.0.1:23".parse().unwrap(), None).is_ok());
    let u = p.b.udp_bind("10.0.0.2:0".parse().unwrap()).unwrap();
    assert_eq!(p.b.udp_send_to(u, b"q", "10.0.0.1:53".parse().unwrap()), Err(UdpSendError::Filtered));
    assert!(p.b.udp_send_to(u, b"q", "10.0.0.1:54".parse().unwrap()).is_ok());
}

#[test]
fn policy_knock_opens_the_protected_port_for_the_knocker() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen("10.0.0.1:22".parse().unwrap(), 8).unwrap();
    let pol = policy(&p.a, "knock udp:7000,tcp:7001 protect tcp:22 within 5s open 20s\n");
    p.a.set_policy(Some(pol));
    let c = p.b.tcp_connect(p.now, "10.0.0.1:22".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c).is_err(), "closed before the knocks");
    // Knock: a datagram to 7000, a SYN to 7001 (which goes unanswered).
    let u = p.b.udp_bind("10.0.0.2:0".parse().unwrap()).unwrap();
    p.b.udp_send_to(u, b"k", "10.0.0.1:7000".parse().unwrap()).unwrap();
    p.settle();
    let k = p.b.tcp_connect(p.now, "10.0.0.1:7001".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(!p.b.tcp_poll_connect(k).unwrap(), "a knock is not answered");
    p.b.tcp_abort(k).unwrap();
    let c = p.b.tcp_connect(p.now, "10.0.0.1:22".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c).unwrap(), "open after the knocks");
    assert!(p.a.tcp_accept(l).is_ok());
    assert_eq!(p.a.policy().unwrap().stats().knock_opens, 1);
}

#[test]
fn policy_detects_a_port_scan_but_not_a_busy_client() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 256).unwrap();
    let pol = policy(&p.a, "scan-detect threshold 10 window 10s\n");
    p.a.set_policy(Some(pol));
    // Many connections to one open port: no scan.
    for _ in 0..30 {
        let c = p.b.tcp_connect(p.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
        p.settle();
        let s = p.a.tcp_accept(l).unwrap();
        p.b.tcp_abort(c).unwrap();
        p.a.tcp_abort(s).unwrap();
        p.settle();
    }
    assert_eq!(p.a.policy().unwrap().stats().scans_detected, 0);
    // SYNs to 12 closed ports: one scan.
    for port in 1000..1012 {
        let c = p.b.tcp_connect(p.now, SocketAddr::from(([10, 0, 0, 1], port)), None).unwrap();
        p.settle();
        let _ = p.b.tcp_abort(c);
    }
    let pol = p.a.policy().unwrap();
    assert_eq!(pol.stats().scans_detected, 1);
    let ev = pol.recent_scans().next().unwrap();
    assert_eq!(ev.source, "10.0.0.2".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(ev.kinds.to_string(), "syn");
}

/// nmap -sS through a transparent listener (which answers every port): SYN, our
/// SYN-ACK, the scanner's RST. Each reset handshake is a probe.
#[test]
fn policy_counts_handshakes_reset_after_the_syn_ack_as_probes() {
    let mut p = Pair::new();
    let _l = p.a.tcp_listen_transparent(64).unwrap();
    let pol = policy(&p.a, "scan-detect threshold 4 window 10s\n");
    p.a.set_policy(Some(pol));
    let mut buf = vec![0u8; 1500];
    for port in [21, 22, 23, 25, 80] {
        let c = p.b.tcp_connect(p.now, SocketAddr::from(([192, 0, 2, 9], port)), None).unwrap();
        let n = p.b.poll_transmit(p.now, &mut buf).expect("SYN");
        p.a.input(p.now, &buf[..n]);
        let n = p.a.poll_transmit(p.now, &mut buf).expect("SYN-ACK");
        p.b.input(p.now, &buf[..n]);
        // The scanner's ACK never leaves; its RST does.
        assert!(p.b.poll_transmit(p.now, &mut buf).is_some());
        p.b.tcp_abort(c).unwrap();
        let n = p.b.poll_transmit(p.now, &mut buf).expect("RST");
        p.a.input(p.now, &buf[..n]);
    }
    let pol = p.a.policy().unwrap();
    assert_eq!(pol.stats().scans_detected, 1);
    assert_eq!(pol.recent_scans().next().unwrap().kinds.to_string(), "syn");
}

#[test]
fn transparent_listener_and_udp_socket_take_any_destination() {
    let mut p = Pair::new();
    let l = p.a.tcp_listen_transparent(8).unwrap();
    assert!(p.a.tcp_listen_transparent(8).is_err(), "one at a time");
    // An ordinary listener keeps its port.
    let ordinary = p.a.tcp_listen("10.0.0.1:22".parse().unwrap(), 8).unwrap();
    let target: SocketAddr = "192.0.2.55:443".parse().unwrap();
    let c = p.b.tcp_connect(p.now, target, None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c).unwrap());
    let s = p.a.tcp_accept(l).unwrap();
    assert_eq!(p.a.local_addr(s).unwrap(), target, "the original destination");
    assert_eq!(p.a.peer_addr(s).unwrap(), p.b.local_addr(c).unwrap());
    p.a.tcp_send(s, b"from the far side").unwrap();
    p.settle();
    let mut buf = [0u8; 64];
    assert_eq!(p.b.tcp_recv(c, &mut buf).unwrap(), 17);
    let c2 = p.b.tcp_connect(p.now, "10.0.0.1:22".parse().unwrap(), None).unwrap();
    p.settle();
    assert!(p.b.tcp_poll_connect(c2).unwrap());
    assert!(p.a.tcp_accept(ordinary).is_ok(), "the ordinary listener took its own");
    assert!(p.a.tcp_accept(l).is_err());

    let u = p.a.udp_bind_transparent().unwrap();
    let b = p.b.udp_bind("10.0.0.2:0".parse().unwrap()).unwrap();
    let dns: SocketAddr = "198.51.100.7:53".parse().unwrap();
    p.b.udp_send_to(b, b"query", dns).unwrap();
    p.settle();
    let (n, src, dst) = p.a.udp_recv_msg(u, &mut buf).unwrap();
    assert_eq!((&buf[..n], src, dst), (&b"query"[..], p.b.local_addr(b).unwrap(), dns));
    p.a.udp_send_msg(u, b"answer", dns, src).unwrap();
    p.settle();
    let (n, from) = p.b.udp_recv_from(b, &mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"answer"[..], dns), "answered from the original destination");
    let ordinary_udp = p.b.udp_bind("10.0.0.2:0".parse().unwrap()).unwrap();
    assert_eq!(p.b.udp_send_msg(ordinary_udp, b"x", dns, dns), Err(UdpSendError::NotTransparent));
    // Closing them gives the stack back its ordinary behaviour.
    p.a.close(l).unwrap();
    p.a.close(u).unwrap();
    p.b.udp_send_to(b, b"lost", dns).unwrap();
    p.settle();
    assert_eq!(p.a.stats().dropped(DropReason::NotForUs), 1);
}
