//! Hostile networks, end to end through a TUN device, each test in its own namespace:
//!
//! - a SYN flood from hping3 with random sources (20000 SYNs, as fast as hping3 sends
//!   them with `-i u50`) while an established connection keeps echoing and new kernel
//!   clients connect during and right after it (SYN cookies, RFC 4987 3.6); the echo
//!   latency, the connect times and the growth of the process's RSS are printed;
//! - `ping -s 3000` over IPv4 and IPv6, and kernel UDP sockets echoing 4000- and
//!   60000-byte datagrams through the demo echo server: IP fragments both ways;
//! - path MTU discovery (RFC 1191, RFC 8201): a "fragmentation needed" / "packet too
//!   big" for a live connection, written into the device with an AF_PACKET socket,
//!   makes every later segment fit the smaller MTU (watched with another AF_PACKET
//!   socket); a forged one, quoting a sequence number not in flight, changes nothing.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::e2e_util::*;
use demo::EchoServer;
use tunstack::runtime::Runtime;
use tunstack::wire::DropReason;
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

// ------------------------------------------------------------------ helpers

/// The process's resident set size in KiB (VmRSS).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Connect, echo `len` bytes, close; returns the time to connect and the total time.
fn connect_and_echo(addr: SocketAddr, len: usize, seed: u64) -> io::Result<(Duration, Duration)> {
    let start = Instant::now();
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    let connected = start.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let data = pattern(seed, len);
    let got = echo_through(&s, &data);
    assert_same("echo on a new connection", &got, &data);
    Ok((connected, start.elapsed()))
}

/// The start of a TCP segment the stack sent from `from` to `to` with sequence number
/// `seq`, as an ICMP error quotes it: the IP header and 8 bytes of TCP (RFC 792).
fn quoted_segment(from: SocketAddr, to: SocketAddr, seq: u32) -> Vec<u8> {
    let mut q = Vec::new();
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            q.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            q.extend_from_slice(&s.octets());
            q.extend_from_slice(&d.octets());
            let c = fold(sum16(0, &q));
            q[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            q.extend_from_slice(&[0x60, 0, 0, 0, 0x05, 0xb4, 6, 64]);
            q.extend_from_slice(&s.octets());
            q.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    q.extend_from_slice(&from.port().to_be_bytes());
    q.extend_from_slice(&to.port().to_be_bytes());
    q.extend_from_slice(&seq.to_be_bytes());
    q
}

/// "Fragmentation needed" (RFC 1191, next-hop MTU `mtu`) or "packet too big" (RFC 4443
/// 3.2) from the kernel's address to the stack, quoting `quote`.
fn too_big(from: IpAddr, to: IpAddr, mtu: u32, quote: &[u8]) -> Vec<u8> {
    let mut icmp = Vec::new();
    let mut p = Vec::new();
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            icmp.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
            icmp.extend_from_slice(&(mtu as u16).to_be_bytes());
            icmp.extend_from_slice(quote);
            let c = fold(sum16(0, &icmp));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let c = fold(sum16(0, &p));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            icmp.extend_from_slice(&[2, 0, 0, 0]);
            icmp.extend_from_slice(&mtu.to_be_bytes());
            icmp.extend_from_slice(quote);
            let c = fold(sum16(pseudo_sum(IpAddr::V6(s), IpAddr::V6(d), 58, icmp.len()), &icmp));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
            p.extend_from_slice(&[58, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    p.extend_from_slice(&icmp);
    p
}

// ------------------------------------------------------------------ SYN flood

/// RFC 4987 3.6. hping3 floods the echo port with 20000 SYNs from random sources. The
/// listener's half-open queue (its backlog, 128) fills with embryos that will wait out
/// their SYN-ACK retransmissions; from then on every SYN gets a cookie and costs
/// nothing. Meanwhile an established connection echoes a probe every 20 ms (each within
/// 1 s), new kernel clients connect and are echoed during the flood and right after it,
/// and the process's RSS grows by a bounded amount.
#[test]
fn syn_flood_with_random_sources() {
    if !netns::require_tool("hping3", "hping3") {
        return;
    }
    let Some(ns) = NetNs::new("synflood") else { return };
    ns.run_timeout(Duration::from_secs(240), || {
        let rt = start_runtime();
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let addr = SocketAddr::new(STACK_V4, ECHO_PORT);

        // The established connection and its prober.
        let mut conn = kernel_connect(addr).expect("connect before the flood");
        conn.set_nodelay(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(AtomicU64::new(0));
        let prober = {
            let (stop, worst) = (Arc::clone(&stop), Arc::clone(&worst));
            thread::spawn(move || {
                let mut n = 0u64;
                let mut buf = [0u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    let probe = pattern(n, 32);
                    let t = Instant::now();
                    conn.write_all(&probe).expect("probe write");
                    conn.read_exact(&mut buf).expect("probe echo");
                    assert_eq!(buf[..], probe[..]);
                    worst.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    n += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                n
            })
        };

        let rss_before = rss_kib();
        let before = rt.stats();
        let started = Instant::now();
        let mut hping = Command::new("hping3")
            .args(["-S", "-p", "7", "--rand-source", "-c", "20000", "-i", "u50", "-q", "10.0.0.2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hping3 starts");
        // New connections while it floods.
        let mut during = Vec::new();
        thread::sleep(Duration::from_millis(150));
        let mut rss_peak = rss_kib();
        loop {
            let flooding = hping.try_wait().expect("hping3 status").is_none();
            if !flooding && !during.is_empty() {
                break;
            }
            let (connect, total) = connect_and_echo(addr, 1000, during.len() as u64).expect("connect during the flood");
            during.push((connect, total, flooding));
            rss_peak = rss_peak.max(rss_kib());
            if started.elapsed() > Duration::from_secs(90) {
                let _ = hping.kill();
                panic!("hping3 did not finish 20000 SYNs within 90 s");
            }
            thread::sleep(Duration::from_millis(100));
        }
        let flood_time = started.elapsed();
        let status = hping.wait().expect("hping3 exit");
        let mut err = String::new();
        hping.stderr.take().map(|mut e| e.read_to_string(&mut err));
        // Right after the flood.
        let (after_connect, after_total) = connect_and_echo(addr, 100_000, 999).expect("connect after the flood");
        stop.store(true, Ordering::Relaxed);
        let probes = prober.join().expect("the established connection kept echoing");
        let rss_after = rss_kib();
        let s = rt.stats();
        let syns = s.rx_packets - before.rx_packets;
        let worst_ms = worst.load(Ordering::Relaxed) as f64 / 1000.0;
        eprintln!(
            "SYN flood: hping3 {status} ({}) ran {:.2} s, the stack received {syns} packets, sent {} cookies \
             ({} valid); half-open now {}, sockets {}",
            err.trim(),
            flood_time.as_secs_f64(),
            s.syn_cookies_sent - before.syn_cookies_sent,
            s.syn_cookies_valid - before.syn_cookies_valid,
            s.tcp_half_open,
            rt.sockets().len(),
        );
        eprintln!("  established connection: {probes} probes echoed, the slowest in {worst_ms:.2} ms");
        for (i, (c, t, flooding)) in during.iter().enumerate() {
            eprintln!(
                "  new connection {i} ({}): connected in {:.2} ms, 1000 bytes echoed in {:.2} ms",
                if *flooding { "during the flood" } else { "as it ended" },
                c.as_secs_f64() * 1e3,
                t.as_secs_f64() * 1e3
            );
        }
        eprintln!(
            "  after the flood: connected in {:.2} ms, 100000 bytes echoed in {:.2} ms",
            after_connect.as_secs_f64() * 1e3,
            after_total.as_secs_f64() * 1e3
        );
        eprintln!(
            "  RSS: {} KiB before, {} KiB at the peak during the flood, {} KiB after: +{} KiB",
            rss_before,
            rss_peak.max(rss_after),
            rss_after,
            rss_peak.max(rss_after).saturating_sub(rss_before)
        );
        assert!(syns >= 15_000, "the flood reached the stack ({syns} packets)");
        assert!(s.syn_cookies_sent - before.syn_cookies_sent >= 10_000, "cookies answered the flood");
        assert!(worst_ms < 1000.0, "an echo on the established connection took {worst_ms} ms");
        assert!(during.iter().any(|d| d.2), "no connection was made while hping3 was flooding");
        assert!(
            rss_peak.max(rss_after).saturating_sub(rss_before) < 64 * 1024,
            "RSS grew by more than 64 MiB during the flood"
        );
        assert!(s.tcp_half_open <= 128, "the half-open queue stays within its backlog");
    });
}

// ------------------------------------------------------------------ fragments

/// `ping -s 3000`: the request arrives in fragments, the stack reassembles it, and its
/// reply, larger than the link MTU, leaves in fragments the kernel reassembles.
#[test]
fn large_pings_get_replies() {
    if !netns::require_tool("ping", "iputils-ping") {
        return;
    }
    let Some(ns) = NetNs::new("bigping") else { return };
    ns.run(|| {
        let rt = start_runtime();
        let before = rt.stats();
        for (family, addr) in [("-4", "10.0.0.2"), ("-6", "fd00::2")] {
            let out = netns::exec_here(
                &["ping", family, "-n", "-c", "3", "-s", "3000", "-W", "2", "-i", "0.2", addr],
                Duration::from_secs(30),
            )
            .expect("ping ran");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(" 0% packet loss") && stdout.contains("3008 bytes from"),
                "ping -s 3000 {addr}: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let s = rt.stats();
        assert!(s.frag_reassembled - before.frag_reassembled >= 6, "{s:?}");
        assert!(s.frag_datagrams_sent - before.frag_datagrams_sent >= 6, "{s:?}");
        assert_eq!(s.icmp_echo_replies - before.icmp_echo_replies, 6);
    });
}

/// Kernel UDP sockets echo 4000- and 60000-byte datagrams through the demo echo server,
/// over IPv4 and IPv6: fragmented by the kernel, reassembled by the stack, sent back in
/// fragments, reassembled by the kernel, intact.
#[test]
fn large_udp_datagrams_are_echoed() {
    let Some(ns) = NetNs::new("bigudp") else { return };
    ns.run(|| {
        let rt = start_runtime();
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        for (stack_ip, host_ip) in [(STACK_V4, HOST_V4), (STACK_V6, HOST_V6)] {
            let sock = UdpSocket::bind(SocketAddr::new(host_ip, 0)).unwrap();
            sock.connect(SocketAddr::new(stack_ip, ECHO_PORT)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = vec![0u8; 65536];
            for (i, len) in [4000usize, 60_000].into_iter().enumerate() {
                let data = pattern(50 + i as u64, len);
                assert_eq!(sock.send(&data).unwrap(), len);
                let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("echo of {len} bytes to {stack_ip}: {e}"));
                assert_same(&format!("UDP echo of {len} bytes via {stack_ip}"), &buf[..n], &data);
            }
        }
        let s = rt.stats();
        eprintln!(
            "fragments: {} received, {} datagrams reassembled; {} datagrams sent as {} fragments",
            s.frag_received, s.frag_reassembled, s.frag_datagrams_sent, s.frags_sent
        );
        assert!(s.frag_reassembled >= 4 && s.frag_datagrams_sent >= 4);
        assert_eq!(s.reassembly_memory, 0, "nothing left in reassembly");
    });
}

// ------------------------------------------------------------------ path MTU

/// A kernel client keeps data flowing through the echo server (so the stack always has
/// segments in flight toward it) until told to stop; returns what it sent and got.
fn steady_echo(stream: TcpStream, stop: Arc<AtomicBool>) -> thread::JoinHandle<(Vec<u8>, Vec<u8>)> {
    thread::spawn(move || {
        let mut reader = stream.try_clone().unwrap();
        let got = thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).expect("reading the echo");
            all
        });
        let mut sent = Vec::new();
        let mut w = &stream;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let chunk = pattern(n, 32 * 1024);
            w.write_all(&chunk).expect("writing");
            sent.extend_from_slice(&chunk);
            n += 1;
            thread::sleep(Duration::from_millis(3));
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        (sent, got.join().unwrap())
    })
}

/// The largest TCP packet from `stack_ip` seen on the interface within `time`.
fn largest_segment_from(sniff: &PacketSocket, stack_ip: IpAddr, time: Duration) -> (usize, usize) {
    let mut buf = vec![0u8; 65536];
    let until = Instant::now() + time;
    let (mut largest, mut count) = (0, 0);
    while Instant::now() < until {
        let Some(n) = sniff.recv(&mut buf) else { continue };
        let p = &buf[..n];
        let (src, proto) = match p.first().map(|b| b >> 4) {
            Some(4) if n >= 20 => (IpAddr::from([p[12], p[13], p[14], p[15]]), p[9]),
            Some(6) if n >= 40 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&p[8..24]);
                (IpAddr::from(a), p[6])
            }
            _ => continue,
        };
        if src == stack_ip && proto == 6 {
            largest = largest.max(n);
            count += 1;
        }
    }
    (largest, count)
}

/// RFC 1191 / RFC 8201 against a live connection: a forged error (the quoted sequence
/// number far outside the flight) is counted and changes nothing; a real one (quoting a
/// sequence number in flight) lowers the MSS, and every segment after it fits the new
/// MTU; the echoed data stays intact.
fn path_mtu(stack_ip: IpAddr, host_ip: IpAddr, mtu: u32) {
    let Some(ns) = NetNs::new("pmtu") else { return };
    ns.run(move || {
        let rt: Runtime = start_runtime();
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let stream = kernel_connect(SocketAddr::new(stack_ip, ECHO_PORT)).expect("connect");
        let client = stream.local_addr().unwrap();
        let server = SocketAddr::new(stack_ip, ECHO_PORT);
        let stop = Arc::new(AtomicBool::new(false));
        let flow = steady_echo(stream, Arc::clone(&stop));
        let inject = PacketSocket::open(rt.tun_name(), false).expect("AF_PACKET socket");
        let sniff = PacketSocket::open(rt.tun_name(), true).expect("AF_PACKET capture socket");
        let row = netns::wait_until(Duration::from_secs(5), || {
            rt.sockets().iter().any(|r| r.local == server && r.remote == Some(client))
        });
        assert!(row, "the echo server's connection");
        let h = rt.sockets().into_iter().find(|r| r.local == server && r.remote == Some(client)).unwrap().handle;
        let link_mss = rt.tcp_info(h).unwrap().mss;
        sniff.discard_queued();
        let (before, n) = largest_segment_from(&sniff, stack_ip, Duration::from_millis(300));
        assert!(n > 0 && before > mtu as usize, "full-sized segments before ({before} bytes, {n} packets)");

        // Forged: a sequence number a gigabyte away from the flight.
        let una = rt.tcp_info(h).unwrap().snd_una.0;
        let dropped = rt.stats().dropped(DropReason::IcmpErrorOutOfWindow);
        inject
            .send(&too_big(host_ip, stack_ip, mtu, &quoted_segment(server, client, una.wrapping_add(1 << 30))))
            .unwrap();
        assert!(netns::wait_until(Duration::from_secs(5), || {
            rt.stats().dropped(DropReason::IcmpErrorOutOfWindow) > dropped
        }));
        assert_eq!(rt.tcp_info(h).unwrap().mss, link_mss, "a forged error changes nothing");

        // Real: quote a sequence number in flight (retried while the flight moves on).
        let mut tries = 0;
        while rt.stats().pmtu_updates == 0 {
            tries += 1;
            assert!(tries < 500, "no error was ever taken as in flight");
            let i = rt.tcp_info(h).unwrap();
            let flight = i.snd_nxt.0.wrapping_sub(i.snd_una.0);
            if flight > 0 && flight < 1 << 30 {
                let seq = i.snd_una.0.wrapping_add(flight / 2);
                inject.send(&too_big(host_ip, stack_ip, mtu, &quoted_segment(server, client, seq))).unwrap();
            }
            thread::sleep(Duration::from_millis(5));
        }
        let info = rt.tcp_info(h).unwrap();
        let ip_hl = if stack_ip.is_ipv4() { 20 } else { 40 };
        assert_eq!((info.pmtu, info.mss), (mtu as usize, mtu as usize - ip_hl - 20));
        // Everything sent from now on fits (after a moment for packets emitted before
        // and written after).
        thread::sleep(Duration::from_millis(50));
        sniff.discard_queued();
        let (largest, count) = largest_segment_from(&sniff, stack_ip, Duration::from_millis(500));
        eprintln!(
            "path MTU {mtu} via {stack_ip}: MSS {link_mss} -> {}; before: segments up to {before} bytes; after: \
             {count} segments, the largest {largest} bytes ({tries} tries to hit the flight)",
            info.mss
        );
        assert!(count > 0 && largest <= mtu as usize, "a {largest}-byte segment after the path MTU fell to {mtu}");
        stop.store(true, Ordering::Relaxed);
        let (sent, got) = flow.join().expect("the echo flow");
        assert_same("echo across the path MTU change", &got, &sent);
    });
}

#[test]
fn path_mtu_ipv4_fragmentation_needed() {
    path_mtu(STACK_V4, HOST_V4, 1000);
}

#[test]
fn path_mtu_ipv6_packet_too_big() {
    path_mtu(STACK_V6, HOST_V6, 1280);
}
