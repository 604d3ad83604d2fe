//! Port forwarding both ways through tunstack, with kernel sockets at both ends and
//! integrity checked by hashes (in a network namespace of the test's own):
//!
//! - inbound: a kernel client connects to the stack's port 8080; the forwarder relays
//!   it with a host socket to a kernel server on 10.0.0.1:9100 (TCP), and datagrams to
//!   the stack's port 5300 to a kernel UDP server on 10.0.0.1:9101;
//! - outbound: a host listener on 127.0.0.1:9000 whose connections are carried through
//!   tunstack to a kernel server behind the device (10.0.0.1:9102), and a host UDP
//!   socket on 127.0.0.1:9001 to 10.0.0.1:9103.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use crate::e2e_util::*;
use demo::dashboard::Flows;
use demo::forward::{Inbound, Outbound};
use tunstack::runtime::RuntimeConfig;
use tunstack::tokio::AsyncRuntime;
use tunstack_tests::netns::{self, NetNs};

/// A kernel TCP server for one connection: it sends `reply` while reading everything it
/// is sent, and returns the SHA-256 of that.
fn tcp_server(addr: SocketAddr, reply: Vec<u8>) -> thread::JoinHandle<[u8; 32]> {
    let l = TcpListener::bind(addr).unwrap();
    thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let sender = thread::spawn(move || {
            w.write_all(&reply).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        sha256(&got)
    })
}

/// A kernel UDP server answering every datagram with its bytes reversed.
fn udp_server(addr: SocketAddr, count: usize) -> thread::JoinHandle<()> {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..count {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            buf[..n].reverse();
            s.send_to(&buf[..n], from).unwrap();
        }
    })
}

fn tcp_round(client_to: SocketAddr, server_at: SocketAddr) {
    let up = pattern(21, 4 << 20);
    let down = pattern(22, 4 << 20);
    let server = tcp_server(server_at, down.clone());
    let c = kernel_connect(client_to).unwrap();
    let back = echo_through(&c, &up);
    assert_same(&format!("{client_to} -> {server_at}: bytes back"), &back, &down);
    assert_eq!(server.join().unwrap(), sha256(&up), "{client_to} -> {server_at}: bytes there");
}

fn udp_round(client_to: SocketAddr, server_at: SocketAddr) {
    let server = udp_server(server_at, 20);
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..20u64 {
        let msg = pattern(i, 100 + i as usize * 50);
        c.send_to(&msg, client_to).unwrap();
        let n = c.recv(&mut buf).unwrap();
        let mut want = msg.clone();
        want.reverse();
        assert_eq!(&buf[..n], &want[..], "datagram {i} through {client_to}");
    }
    server.join().unwrap();
}

#[test]
fn forwarding_both_ways_tcp_and_udp() {
    let Some(ns) = NetNs::new("fwd2") else { return };
    ns.run_timeout(Duration::from_secs(240), || {
        netns::exec_here(&["ip", "link", "set", "lo", "up"], Duration::from_secs(10)).unwrap();
        let (up_tx, up_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let flows = Flows::default();
        let flows_seen = flows.clone();
        let runner = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let stack = AsyncRuntime::new(RuntimeConfig::default()).expect("runtime");
                let ins: Vec<Inbound> =
                    vec!["tcp:8080=10.0.0.1:9100".parse().unwrap(), "udp:5300=10.0.0.1:9101".parse().unwrap()];
                let outs: Vec<Outbound> = vec![
                    "tcp:127.0.0.1:9000=10.0.0.1:9102".parse().unwrap(),
                    "udp:127.0.0.1:9001=10.0.0.1:9103".parse().unwrap(),
                ];
                demo::forward::start(&stack.handle(), &ins, &outs, &flows).expect("forwards");
                up_tx.send(()).unwrap();
                let _ = tokio::time::timeout(Duration::from_secs(200), stop_rx).await;
                stack.shutdown().await;
            });
        });
        up_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // Inbound: kernel client -> tunstack :8080 -> host socket -> kernel server.
        tcp_round("10.0.0.2:8080".parse().unwrap(), "10.0.0.1:9100".parse().unwrap());
        udp_round("10.0.0.2:5300".parse().unwrap(), "10.0.0.1:9101".parse().unwrap());
        // Outbound: host listener -> tunstack -> the kernel behind the device.
        tcp_round("127.0.0.1:9000".parse().unwrap(), "10.0.0.1:9102".parse().unwrap());
        udp_round("127.0.0.1:9001".parse().unwrap(), "10.0.0.1:9103".parse().unwrap());
        let flows = flows_seen.snapshot();
        assert!(
            flows.iter().any(|f| f.proto == "tcp" && f.up_bytes == 4 << 20 && f.down_bytes == 4 << 20),
            "{flows:?}"
        );
        assert!(flows.iter().any(|f| f.proto == "udp"), "{flows:?}");
        let _ = stop_tx.send(());
        runner.join().unwrap();
    });
}
