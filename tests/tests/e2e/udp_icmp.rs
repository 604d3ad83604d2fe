//! UDP and ICMP end to end through a TUN device, each test in its own namespace:
//! ping (ICMP and ICMPv6 echo), the kernel's UDP talking to the demo echo server, and
//! port unreachable for a closed UDP port.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::e2e_util::*;
use demo::EchoServer;
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

#[test]
fn ping_gets_replies_ipv4_and_ipv6() {
    if !netns::require_tool("ping", "iputils-ping") {
        return;
    }
    let Some(ns) = NetNs::new("ping") else { return };
    ns.run(|| {
        let rt = start_runtime();
        let before = rt.stats().icmp_echo_replies;
        for (family, addr) in [("-4", "10.0.0.2"), ("-6", "fd00::2")] {
            let out = netns::exec_here(
                &["ping", family, "-n", "-c", "3", "-W", "2", "-i", "0.2", addr],
                Duration::from_secs(30),
            )
            .expect("ping ran");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(" 0% packet loss"),
                "ping {addr}: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The replies came from our stack (the kernel does not own 10.0.0.2 / fd00::2).
        assert!(rt.stats().icmp_echo_replies >= before + 6);
    });
}

/// Datagrams of different sizes, one at a time and then as a burst; every datagram
/// must come back whole and alone.
fn udp_echo(stack_ip: IpAddr, host_ip: IpAddr) {
    let Some(ns) = NetNs::new("udpecho") else { return };
    ns.run(move || {
        let rt = start_runtime();
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let sock = UdpSocket::bind(SocketAddr::new(host_ip, 0)).unwrap();
        sock.connect(SocketAddr::new(stack_ip, ECHO_PORT)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Largest payload without IP fragmentation at MTU 1500: 1500 - IP header - 8.
        let max = if stack_ip.is_ipv4() { 1500 - 20 - 8 } else { 1500 - 40 - 8 };
        let mut buf = vec![0u8; 65536];

        for (i, len) in [0, 1, 2, 3, 100, 512, 1000, 1400, max].into_iter().enumerate() {
            let data = pattern(10 + i as u64, len);
            assert_eq!(sock.send(&data).unwrap(), len);
            let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("echo of {len} bytes: {e}"));
            assert_eq!(&buf[..n], &data[..], "datagram of {len} bytes");
        }

        // A burst: everything sent before anything is read back.
        let burst: Vec<Vec<u8>> = (0..32).map(|i| pattern(100 + i, 1 + (i as usize * 45) % max)).collect();
        for d in &burst {
            sock.send(d).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..burst.len() {
            let n = sock.recv(&mut buf).expect("burst echo");
            got.push(buf[..n].to_vec());
        }
        let mut want = burst.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "each datagram came back whole, none merged or split");
    });
}

#[test]
fn kernel_udp_echo_ipv4() {
    udp_echo(STACK_V4, HOST_V4);
}

#[test]
fn kernel_udp_echo_ipv6() {
    udp_echo(STACK_V6, HOST_V6);
}

#[test]
fn closed_udp_port_is_unreachable() {
    let Some(ns) = NetNs::new("udpclosed") else { return };
    ns.run(|| {
        let rt = start_runtime();
        let before = rt.stats().icmp_unreachable_sent;
        for ip in [STACK_V4, STACK_V6] {
            let sock = UdpSocket::bind(SocketAddr::new(if ip.is_ipv4() { HOST_V4 } else { HOST_V6 }, 0)).unwrap();
            sock.connect(SocketAddr::new(ip, 9)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            sock.send(b"anyone?").unwrap();
            // RFC 1122 4.1.3.1 / RFC 4443 3.1: port unreachable; Linux reports it on a
            // connected socket as ECONNREFUSED.
            let err = sock.recv(&mut [0u8; 64]).expect_err("no echo from a closed port");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{ip}: {err}");
        }
        assert!(rt.stats().icmp_unreachable_sent >= before + 2);
    });
}
