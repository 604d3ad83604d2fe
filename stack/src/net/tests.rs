//! End-to-end tests of the handles against the Linux kernel's own sockets, over a TUN
//! device in a fresh network namespace (one thread `unshare(CLONE_NEWNET)`s; the kernel
//! sockets are opened from that thread or threads it spawns, which share its namespace).
//!
//! Ignored until the core (`Stack`) is implemented: run with `--ignored`.
//! Every wait is bounded (socket timeouts), so a broken stack fails instead of hanging.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::runtime::ifconfig::Ifconfig;
use crate::runtime::tests::in_fresh_netns;
use crate::runtime::{Runtime, RuntimeConfig};

const HOST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const STACK4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const STACK6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// Upper bound on any single wait of a kernel-side socket.
const GUARD: Duration = Duration::from_secs(10);

fn runtime(name: &str) -> Runtime {
    let config = RuntimeConfig {
        tun_name: name.into(),
        stack: Config {
            addrs: vec![STACK4.into(), STACK6.into()],
            rto_initial: Duration::from_millis(200),
            msl: Duration::from_millis(200),
            syn_retries: 3,
            ..Config::default()
        },
        ..RuntimeConfig::default()
    };
    Runtime::new(config).unwrap()
}

/// `accept` bounded by [`GUARD`] (the listener has no timeout option, as in std).
fn accept_within(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let start = std::time::Instant::now();
    loop {
        match listener.accept() {
            Ok(pair) => {
                listener.set_nonblocking(false).unwrap();
                return pair;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < GUARD => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Deterministic test payload.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn udp_echo_with_the_kernel() {
    in_fresh_netns("udp_echo_with_the_kernel", || {
        let rt = runtime("tsnu0");
        for (ours, host) in [(IpAddr::from(STACK4), IpAddr::from(HOST4)), (STACK6.into(), HOST6.into())] {
            let sock = UdpSocket::bind(&rt, (ours, 7000)).unwrap();
            assert_eq!(sock.local_addr().unwrap(), SocketAddr::new(ours, 7000));
            let kernel = std::net::UdpSocket::bind((host, 0)).unwrap();
            kernel.set_read_timeout(Some(GUARD)).unwrap();
            sock.set_read_timeout(Some(GUARD)).unwrap();

            kernel.send_to(b"ping", (ours, 7000)).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ping");
            assert_eq!(from, kernel.local_addr().unwrap());
            assert_eq!(sock.send_to(b"pong", from).unwrap(), 4);
            let (n, from) = kernel.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"pong");
            assert_eq!(from, SocketAddr::new(ours, 7000));

            // Connected: send/recv and peer_addr.
            sock.connect(kernel.local_addr().unwrap()).unwrap();
            assert_eq!(sock.peer_addr().unwrap(), kernel.local_addr().unwrap());
            sock.send(b"again").unwrap();
            let n = kernel.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"again");
            kernel.send_to(b"back", (ours, 7000)).unwrap();
            let n = sock.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"back");
        }
        let stats = rt.stats();
        assert!(stats.rx_packets >= 4 && stats.tx_packets >= 4, "{stats:?}");
    });
}

#[test]
fn udp_timeouts_and_nonblocking_mode() {
    in_fresh_netns("udp_timeouts_and_nonblocking_mode", || {
        let rt = runtime("tsnu1");
        let sock = UdpSocket::bind(&rt.handle(), (STACK4, 0)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(sock.read_timeout().unwrap(), None);
        assert_eq!(sock.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(sock.read_timeout().unwrap(), Some(Duration::from_millis(20)));
        assert_eq!(sock.recv_from(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        sock.set_read_timeout(None).unwrap();
        sock.set_nonblocking(true).unwrap();
        assert_eq!(sock.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);

        // A clone shares the socket and its mode; the socket lives until both drop.
        let clone = sock.try_clone().unwrap();
        assert_eq!(clone.recv_from(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let h = sock.handle();
        drop(sock);
        assert!(rt.sockets().iter().any(|s| s.handle == h));
        drop(clone);
        assert!(!rt.sockets().iter().any(|s| s.handle == h));
    });
}

#[test]
fn shutdown_wakes_blocked_callers_and_removes_the_device() {
    in_fresh_netns("shutdown_wakes_blocked_callers_and_removes_the_device", || {
        let rt = runtime("tsnu2");
        let name = rt.tun_name().to_owned();
        let sock = UdpSocket::bind(&rt, (STACK4, 9)).unwrap();
        let handle = rt.handle();
        let waiter = thread::spawn(move || {
            let mut buf = [0u8; 16];
            // Blocks (no timeout) until the runtime goes away.
            sock.recv_from(&mut buf).map(|_| ())
        });
        rt.shutdown();
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
        assert!(!handle.is_running());
        let err = UdpSocket::bind(&handle, (STACK4, 10)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        let err = TcpStream::connect(&handle, (HOST4, 80)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        // The device went with the descriptor.
        let err = Ifconfig::new(&name).unwrap().index().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    });
}

#[test]
fn tcp_kernel_client_to_our_listener() {
    in_fresh_netns("tcp_kernel_client_to_our_listener", || {
        let rt = runtime("tsnt0");
        for ours in [IpAddr::from(STACK4), STACK6.into()] {
            let listener = TcpListener::bind(&rt, (ours, 0)).unwrap();
            let addr = listener.local_addr().unwrap();
            assert_eq!(addr.ip(), ours);
            assert_ne!(addr.port(), 0);
            let sent = pattern(300_000);
            let to_send = sent.clone();
            let client = thread::spawn(move || {
                let mut s = std::net::TcpStream::connect_timeout(&addr, GUARD).unwrap();
                s.set_read_timeout(Some(GUARD)).unwrap();
                s.write_all(&to_send).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                s.read_to_end(&mut back).unwrap();
                back
            });
            let (mut conn, peer) = accept_within(&listener);
            assert_eq!(conn.peer_addr().unwrap(), peer);
            assert_eq!(conn.local_addr().unwrap(), addr);
            conn.set_read_timeout(Some(GUARD)).unwrap();
            conn.set_write_timeout(Some(GUARD)).unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            assert!(got == sent, "received {} bytes, sent {}", got.len(), sent.len());
            conn.write_all(b"thanks").unwrap();
            drop(conn); // graceful close: the client reads to EOF
            assert_eq!(client.join().unwrap(), b"thanks");
        }
    });
}

#[test]
fn tcp_our_client_to_a_kernel_listener() {
    in_fresh_netns("tcp_our_client_to_a_kernel_listener", || {
        let rt = runtime("tsnt1");
        for (host, ours) in [(IpAddr::from(HOST4), IpAddr::from(STACK4)), (HOST6.into(), STACK6.into())] {
            let kernel = std::net::TcpListener::bind((host, 0)).unwrap();
            let addr = kernel.local_addr().unwrap();
            let server = thread::spawn(move || {
                let (mut s, peer) = kernel.accept().unwrap();
                s.set_read_timeout(Some(GUARD)).unwrap();
                s.set_write_timeout(Some(GUARD)).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                s.write_all(&got[..1000]).unwrap();
                (peer, got)
            });
            let mut conn = TcpStream::connect_timeout(&rt, &addr, GUARD).unwrap();
            conn.set_read_timeout(Some(GUARD)).unwrap();
            conn.set_write_timeout(Some(GUARD)).unwrap();
            conn.set_nodelay(true).unwrap();
            assert!(conn.nodelay().unwrap());
            assert_eq!(conn.peer_addr().unwrap(), addr);
            assert_eq!(conn.local_addr().unwrap().ip(), ours);
            let sent = pattern(500_000);
            conn.write_all(&sent).unwrap();
            conn.flush().unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
            let mut back = Vec::new();
            conn.read_to_end(&mut back).unwrap();
            let (peer, got) = server.join().unwrap();
            assert_eq!(peer, conn.local_addr().unwrap());
            assert!(got == sent, "kernel received {} bytes, sent {}", got.len(), sent.len());
            assert_eq!(back, sent[..1000]);
        }
    });
}

#[test]
fn tcp_clones_read_and_write_from_two_threads() {
    in_fresh_netns("tcp_clones_read_and_write_from_two_threads", || {
        let rt = runtime("tsnt2");
        let kernel = std::net::TcpListener::bind((HOST4, 0)).unwrap();
        let addr = kernel.local_addr().unwrap();
        // The kernel echoes everything back.
        let echo = thread::spawn(move || {
            let (mut s, _) = kernel.accept().unwrap();
            s.set_read_timeout(Some(GUARD)).unwrap();
            let mut r = s.try_clone().unwrap();
            io::copy(&mut r, &mut s).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        });
        let conn = TcpStream::connect_timeout(&rt, &addr, GUARD).unwrap();
        conn.set_read_timeout(Some(GUARD)).unwrap();
        conn.set_write_timeout(Some(GUARD)).unwrap();
        let writer = conn.try_clone().unwrap();
        let sent = pattern(200_000);
        let to_send = sent.clone();
        let w = thread::spawn(move || {
            (&writer).write_all(&to_send).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
            // dropping this clone must not close the connection
        });
        let mut back = Vec::new();
        (&conn).read_to_end(&mut back).unwrap();
        w.join().unwrap();
        echo.join().unwrap();
        assert!(back == sent, "echoed {} bytes of {}", back.len(), sent.len());
    });
}

#[test]
fn tcp_connect_errors() {
    in_fresh_netns("tcp_connect_errors", || {
        let rt = runtime("tsnt3");
        // Nobody listens on the kernel side: RST, refused.
        let closed = std::net::TcpListener::bind((HOST4, 0)).unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = TcpStream::connect(&rt, (HOST4, port)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");

        // 10.0.0.3 is routed back into the device by the kernel, which does not
        // forward: the SYN goes unanswered.
        let target: SocketAddr = (Ipv4Addr::new(10, 0, 0, 3), 80).into();
        let err = TcpStream::connect_timeout(&rt, &target, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let zero = TcpStream::connect_timeout(&rt, &target, Duration::ZERO).unwrap_err();
        assert_eq!(zero.kind(), io::ErrorKind::InvalidInput);
        // Nothing is left behind in the socket table.
        let left: Vec<_> = rt.sockets().into_iter().filter(|s| s.remote == Some(target)).collect();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn tcp_timeouts_nonblocking_and_listener_close() {
    in_fresh_netns("tcp_timeouts_nonblocking_and_listener_close", || {
        let rt = runtime("tsnt4");
        let listener = TcpListener::bind(&rt, (STACK4, 8080)).unwrap();
        listener.set_nonblocking(true).unwrap();
        assert_eq!(listener.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);

        let kernel = std::net::TcpStream::connect_timeout(&(STACK4, 8080).into(), GUARD).unwrap();
        let (conn, _) = accept_within(&listener);
        let mut buf = [0u8; 8];
        conn.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!((&conn).read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        conn.set_nonblocking(true).unwrap();
        assert_eq!((&conn).read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!((&conn).read(&mut []).unwrap(), 0);

        let lh = listener.handle();
        assert!(rt.sockets().iter().any(|s| s.handle == lh && s.state == "LISTEN"));
        drop(listener);
        assert!(!rt.sockets().iter().any(|s| s.handle == lh));
        // The accepted connection is unaffected.
        assert_eq!(conn.state().unwrap(), crate::TcpState::Established);
        drop(kernel);
    });
}

/// Wait (bounded by [`GUARD`]) until `cond` holds for the runtime's counters.
fn counters_reach(rt: &Runtime, what: &str, cond: impl Fn(&crate::runtime::RuntimeCounters) -> bool) {
    let start = std::time::Instant::now();
    while !cond(&rt.counters()) {
        assert!(start.elapsed() < GUARD, "{what}: {:?}", rt.counters());
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn traffic_on_one_socket_does_not_wake_a_thread_blocked_on_another() {
    in_fresh_netns("traffic_on_one_socket_does_not_wake_a_thread_blocked_on_another", || {
        let rt = runtime("tsnw0");
        let listener = TcpListener::bind(&rt, (STACK4, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut kernel_a = std::net::TcpStream::connect_timeout(&addr, GUARD).unwrap();
        let (a, _) = accept_within(&listener);
        let mut kernel_b = std::net::TcpStream::connect_timeout(&addr, GUARD).unwrap();
        let (b, _) = accept_within(&listener);
        kernel_b.set_read_timeout(Some(GUARD)).unwrap();
        assert_eq!(rt.counters().waits, 0, "nothing blocked yet");

        a.set_read_timeout(Some(GUARD)).unwrap();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 16];
            let n = (&a).read(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        counters_reach(&rt, "reader parked", |c| c.waits == 1);
        let before = rt.counters();

        // Round trips on B; our side never blocks (non-blocking reads, small writes).
        b.set_nonblocking(true).unwrap();
        let msg = pattern(100);
        for _ in 0..50 {
            kernel_b.write_all(&msg).unwrap();
            let mut got = Vec::new();
            let start = std::time::Instant::now();
            while got.len() < msg.len() {
                let mut buf = [0u8; 256];
                match (&b).read(&mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < GUARD => thread::yield_now(),
                    Err(e) => panic!("read on B: {e}"),
                }
            }
            (&b).write_all(&got).unwrap();
            let mut back = vec![0u8; msg.len()];
            kernel_b.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
        let after = rt.counters();
        assert!(after.packets_read >= before.packets_read + 50, "B's traffic went through the runtime: {after:?}");
        // The reader on A was neither woken nor parked again.
        assert_eq!(after.wakeups, before.wakeups, "{before:?} -> {after:?}");
        assert_eq!(after.waits, before.waits, "{before:?} -> {after:?}");

        kernel_a.write_all(b"for A").unwrap();
        assert_eq!(reader.join().unwrap(), b"for A");
        assert!(rt.counters().wakeups > after.wakeups);
    });
}

#[test]
fn concurrent_accepts_pick_up_every_connection() {
    in_fresh_netns("concurrent_accepts_pick_up_every_connection", || {
        const CONNS: usize = 24;
        let rt = runtime("tsnw1");
        let listener = TcpListener::bind(&rt, (STACK4, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Four threads block in accept on the same listener (exclusive waits).
        let acceptors: Vec<_> = (0..4)
            .map(|_| {
                let l = listener.try_clone().unwrap();
                let tx = tx.clone();
                thread::spawn(move || loop {
                    match l.accept() {
                        Ok((s, _)) => tx.send(s).unwrap(),
                        Err(e) => return e,
                    }
                })
            })
            .collect();
        drop(tx);
        // Three kernel threads connect at once, so that connections arrive together.
        let clients: Vec<_> = (0..3)
            .map(|_| {
                thread::spawn(move || {
                    (0..CONNS / 3)
                        .map(|_| std::net::TcpStream::connect_timeout(&addr, GUARD).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let kernel_side: Vec<_> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        let accepted: Vec<TcpStream> =
            (0..CONNS).map(|_| rx.recv_timeout(GUARD).expect("a connection was not accepted")).collect();
        let mut ports: Vec<u16> = accepted.iter().map(|s| s.peer_addr().unwrap().port()).collect();
        ports.sort_unstable();
        let mut expected: Vec<u16> = kernel_side.iter().map(|s| s.local_addr().unwrap().port()).collect();
        expected.sort_unstable();
        assert_eq!(ports, expected);
        // Shutdown ends every blocked accept.
        drop(accepted);
        rt.shutdown();
        for t in acceptors {
            assert_eq!(t.join().unwrap().kind(), io::ErrorKind::NotConnected);
        }
    });
}

/// TcpExt counters of this thread's namespace (/proc/net/netstat: a header line of
/// names followed by a line of values).
fn tcp_ext() -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    let names = lines[0].split_whitespace().skip(1);
    let values = lines[1].split_whitespace().skip(1).map(|v| v.parse().unwrap());
    names.map(str::to_string).zip(values).collect()
}

/// Several threads send at once (each its own connection) while the runtime thread
/// answers ACKs with more segments: packets of one connection are produced by two
/// threads, and written by whichever is the writer. They must reach the kernel in the
/// order the core produced them: the kernel queues no segment out of order (unless it
/// dropped one itself, which its counters would show).
#[test]
fn concurrent_senders_keep_each_connection_in_order() {
    in_fresh_netns("concurrent_senders_keep_each_connection_in_order", || {
        const CONNS: usize = 4;
        const BYTES: usize = 16 << 20;
        let rt = runtime("tsnw2");
        let listener = TcpListener::bind(&rt, (STACK4, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let data = pattern(BYTES);
        let before = tcp_ext();
        let readers: Vec<_> = (0..CONNS)
            .map(|_| {
                let mut s = std::net::TcpStream::connect_timeout(&addr, GUARD).unwrap();
                s.set_read_timeout(Some(GUARD)).unwrap();
                thread::spawn(move || {
                    let mut got = Vec::with_capacity(BYTES);
                    s.read_to_end(&mut got).unwrap();
                    got
                })
            })
            .collect();
        let senders: Vec<_> = (0..CONNS)
            .map(|_| {
                let (conn, _) = accept_within(&listener);
                conn.set_write_timeout(Some(GUARD)).unwrap();
                let data = data.clone();
                thread::spawn(move || (&conn).write_all(&data).unwrap())
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        for r in readers {
            let got = r.join().unwrap();
            assert!(got == data, "received {} bytes of {BYTES}", got.len());
        }
        let after = tcp_ext();
        let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        let drops: u64 = [
            "TCPOFODrop",
            "TCPRcvQDrop",
            "TCPBacklogDrop",
            "TCPZeroWindowDrop",
            "PruneCalled",
            "RcvPruned",
            "OfoPruned",
        ]
        .iter()
        .map(|k| delta(k))
        .sum();
        eprintln!("kernel: {} segments queued out of order, {drops} drops", delta("TCPOFOQueue"));
        if drops == 0 {
            assert_eq!(delta("TCPOFOQueue"), 0, "segments reached the kernel out of order");
        }
    });
}
