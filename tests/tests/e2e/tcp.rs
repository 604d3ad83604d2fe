//! TCP end to end through a TUN device, each test in its own network namespace:
//! the kernel's TCP as client of the demo echo server, refused connections, our stack
//! as client of a kernel listener, and 100 concurrent connections.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::e2e_util::*;
use demo::EchoServer;
use tunstack::wire::DropReason;
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

fn echo_one_mebibyte(stack_ip: IpAddr) {
    let Some(ns) = NetNs::new("echo1m") else { return };
    ns.run(move || {
        let rt = start_runtime();
        let server = EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        assert!(server.tcp_addrs().contains(&SocketAddr::new(stack_ip, ECHO_PORT)));

        let stream = kernel_connect(SocketAddr::new(stack_ip, ECHO_PORT)).expect("kernel connects to the echo server");
        assert_eq!(stream.peer_addr().unwrap(), SocketAddr::new(stack_ip, ECHO_PORT));
        let data = pattern(1, 1 << 20);
        let got = echo_through(&stream, &data);
        assert_same("1 MiB echoed", &got, &data);
        assert!(rt.stats().tcp_passive_opens >= 1);
    });
}

#[test]
fn kernel_client_echoes_one_mebibyte_ipv4() {
    echo_one_mebibyte(STACK_V4);
}

#[test]
fn kernel_client_echoes_one_mebibyte_ipv6() {
    echo_one_mebibyte(STACK_V6);
}

#[test]
fn closed_port_refuses_kernel_client() {
    let Some(ns) = NetNs::new("refused") else { return };
    ns.run(|| {
        let rt = start_runtime();
        let before = rt.stats();
        for ip in [STACK_V4, STACK_V6] {
            // Port 9 (discard): nothing listens there.
            let addr = SocketAddr::new(ip, 9);
            let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(30))
                .expect_err("nothing listens on port 9");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{addr}: {err}");
        }
        let after = rt.stats();
        // RFC 9293 3.10.7.1: a segment for a CLOSED port is answered with a reset.
        assert!(after.tcp_resets_sent >= before.tcp_resets_sent + 2, "{after:?}");
        assert!(after.dropped(DropReason::TcpNoSocket) >= before.dropped(DropReason::TcpNoSocket) + 2);
    });
}

/// Our stack's TcpStream::connect to a kernel listener on the host side of the device.
fn connect_out(host_ip: IpAddr) {
    let Some(ns) = NetNs::new("connout") else { return };
    ns.run(move || {
        let rt = start_runtime();
        let listener = std::net::TcpListener::bind(SocketAddr::new(host_ip, 0)).expect("kernel listener");
        let kernel_addr = listener.local_addr().unwrap();
        let upload = pattern(2, 512 * 1024);
        let download = pattern(3, 256 * 1024);

        let download_copy = download.clone();
        let kernel_side = thread::spawn(move || -> io::Result<(Vec<u8>, SocketAddr)> {
            // accept() has no timeout: poll a non-blocking listener for a bounded time.
            listener.set_nonblocking(true)?;
            let deadline = Instant::now() + IO_TIMEOUT;
            let (mut s, peer) = loop {
                match listener.accept() {
                    Ok(conn) => break conn,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => return Err(e),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            let mut got = Vec::new();
            (&mut s).take(1 << 21).read_to_end(&mut got)?;
            s.write_all(&download_copy)?;
            s.shutdown(Shutdown::Write)?;
            Ok((got, peer))
        });

        let handle = rt.handle();
        let mut s = tunstack::net::TcpStream::connect(&handle, kernel_addr).expect("our stack connects out");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), kernel_addr);
        let local = s.local_addr().unwrap();
        let stack_ip = if host_ip.is_ipv4() { STACK_V4 } else { STACK_V6 };
        assert_eq!(local.ip(), stack_ip);

        s.write_all(&upload).expect("upload");
        s.shutdown(Shutdown::Write).expect("half close");
        let mut got = Vec::new();
        (&mut s).take(download.len() as u64 + 1).read_to_end(&mut got).expect("download");
        assert_same("kernel -> stack", &got, &download);

        let (kernel_got, peer) = kernel_side.join().unwrap().expect("kernel side");
        assert_same("stack -> kernel", &kernel_got, &upload);
        assert_eq!(peer, local, "the kernel saw our local address");
        drop(s);
        assert!(rt.stats().tcp_active_opens >= 1);
    });
}

#[test]
fn stack_connects_to_kernel_listener_ipv4() {
    connect_out(HOST_V4);
}

#[test]
fn stack_connects_to_kernel_listener_ipv6() {
    connect_out(HOST_V6);
}

#[test]
fn hundred_concurrent_echo_connections() {
    const N: usize = 100;
    let Some(ns) = NetNs::new("hundred") else { return };
    ns.run(|| {
        let rt = start_runtime();
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let start = Arc::new(Barrier::new(N));
        let clients: Vec<_> = (0..N)
            .map(|i| {
                let start = start.clone();
                thread::spawn(move || -> Result<SocketAddr, String> {
                    start.wait();
                    // Alternate families; every connection has its own data and length.
                    let ip = if i % 2 == 0 { STACK_V4 } else { STACK_V6 };
                    let s = kernel_connect(SocketAddr::new(ip, ECHO_PORT))
                        .map_err(|e| format!("client {i}: connect: {e}"))?;
                    let data = pattern(1000 + i as u64, 16 * 1024 + i * 97);
                    let got = echo_through(&s, &data);
                    if got.len() != data.len() || sha256(&got) != sha256(&data) {
                        return Err(format!("client {i}: echo differs ({} of {} bytes)", got.len(), data.len()));
                    }
                    Ok(s.local_addr().unwrap())
                })
            })
            .collect();
        let mut errors = Vec::new();
        let mut locals = HashSet::new();
        for c in clients {
            match c.join() {
                Ok(Ok(local)) => {
                    locals.insert(local);
                }
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("a client thread panicked".to_string()),
            }
        }
        assert!(errors.is_empty(), "{} of {N} connections failed: {errors:#?}", errors.len());
        assert_eq!(locals.len(), N, "{N} distinct connections");

        // Every connection closed from both sides: none may be left established.
        let open = |rt: &tunstack::runtime::Runtime| {
            rt.sockets().into_iter().filter(|s| s.state == "ESTABLISHED" || s.state == "CLOSE-WAIT").count()
        };
        let closed = netns::wait_until(Duration::from_secs(30), || open(&rt) == 0);
        assert!(closed, "connections left open: {:#?}", rt.sockets());
        let listeners = rt.sockets().into_iter().filter(|s| s.state == "LISTEN").count();
        assert_eq!(listeners, 2, "the two echo listeners remain");
    });
}
