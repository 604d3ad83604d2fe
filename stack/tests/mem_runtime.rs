//! The runtime and all its API shapes without root: two stacks joined by an in-memory
//! link (`MemDevice::pair`), each driven by a runtime of its own. The async API
//! (tokio, current-thread and multi-thread), the blocking API, and one of each talking
//! to each other; data integrity checked by hashes.

#![cfg(feature = "tokio")]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunstack::runtime::device::{Impaired, MemDevice};
use tunstack::runtime::{Impairment, Runtime};
use tunstack::tokio::{AsyncRuntime, TcpListener, TcpStream, UdpSocket};
use tunstack::Config;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// Every wait in these tests is bounded by this.
const GUARD: Duration = Duration::from_secs(30);

fn config(addr: Ipv4Addr, seed: u64) -> Config {
    Config::default().with(|c| {
        c.addrs = vec![IpAddr::V4(addr)];
        c.seed = seed;
    })
}

/// Deterministic, non-repeating test data (the core's PRNG).
fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    tunstack::rand::Rng::new(salt).fill(&mut data);
    data
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Two async runtimes on one in-memory link (call inside a tokio runtime).
fn async_pair() -> (AsyncRuntime, AsyncRuntime) {
    let (a, b) = MemDevice::pair(1500).unwrap();
    (AsyncRuntime::with_device(a, config(SERVER, 1)).unwrap(), AsyncRuntime::with_device(b, config(CLIENT, 2)).unwrap())
}

/// An echo server task on `rt`: every connection gets its bytes back until it shuts
/// its write side down.
fn spawn_echo(listener: TcpListener) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

/// Send `data` through an echo connection and read back everything.
async fn echo_round_trip(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    drop(writer.await.unwrap());
    back
}

async fn async_echo_integrity() {
    let (server, client) = async_pair();
    let listener = TcpListener::bind(&server, (SERVER, 7)).unwrap();
    assert_eq!(listener.local_addr().unwrap(), SocketAddr::from((SERVER, 7)));
    spawn_echo(listener);
    let data = pattern(4 << 20, 7);
    let stream = TcpStream::connect(&client, (SERVER, 7)).await.unwrap();
    assert_eq!(stream.peer_addr().unwrap(), SocketAddr::from((SERVER, 7)));
    assert_eq!(stream.local_addr().unwrap().ip(), IpAddr::V4(CLIENT));
    stream.set_nodelay(true).unwrap();
    assert!(stream.nodelay().unwrap());
    let back = echo_round_trip(stream, data.clone()).await;
    assert_eq!(back.len(), data.len());
    assert_eq!(sha(&back), sha(&data));
    // Several connections at once.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.handle();
        tasks.push(tokio::spawn(async move {
            let data = pattern(64 * 1024 + i * 1000, i as u64);
            let stream = TcpStream::connect(&client, (SERVER, 7)).await.unwrap();
            sha(&echo_round_trip(stream, data.clone()).await) == sha(&data)
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    server.shutdown().await;
    client.shutdown().await;
}

#[test]
fn async_echo_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(GUARD, async_echo_integrity()).await.expect("bounded") });
}

#[test]
fn async_echo_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(GUARD, async_echo_integrity()).await.expect("bounded") });
}

#[test]
fn async_errors_keep_std_kinds() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (server, client) = async_pair();
        // Nobody listens: the peer's RST refuses the connection.
        let err = tokio::time::timeout(GUARD, TcpStream::connect(&client, (SERVER, 9))).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // Binding an address the stack does not own.
        let err = TcpListener::bind(&server, (CLIENT, 9)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        let _l = TcpListener::bind(&server, (SERVER, 9)).unwrap();
        let err = TcpListener::bind(&server, (SERVER, 9)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // After shutdown every call says NotConnected.
        let handle = server.handle();
        server.shutdown().await;
        let err = TcpListener::bind(&handle, (SERVER, 10)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    });
}

#[test]
fn async_udp_both_ways() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(GUARD, async {
            let (server, client) = async_pair();
            let s = UdpSocket::bind(&server, (SERVER, 53)).unwrap();
            let c = UdpSocket::bind(&client, (CLIENT, 0)).unwrap();
            let c_addr = c.local_addr().unwrap();
            assert_ne!(c_addr.port(), 0);
            for size in [0, 1, 512, 1472] {
                let data = pattern(size, size as u64);
                c.send_to(&data, (SERVER, 53)).await.unwrap();
                let mut buf = [0u8; 2048];
                let (n, from) = s.recv_from(&mut buf).await.unwrap();
                assert_eq!((&buf[..n], from), (&data[..], c_addr));
                s.send_to(&buf[..n], from).await.unwrap();
                let (n, from) = c.recv_from(&mut buf).await.unwrap();
                assert_eq!((&buf[..n], from), (&data[..], SocketAddr::from((SERVER, 53))));
            }
            c.connect((SERVER, 53)).unwrap();
            assert_eq!(c.peer_addr().unwrap(), SocketAddr::from((SERVER, 53)));
            c.send(b"connected").await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            s.send_to(&buf[..n], from).await.unwrap();
            let n = c.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"connected");
        })
        .await
        .expect("bounded");
    });
}

/// The blocking API on thread-driven runtimes over the same in-memory link.
#[test]
fn blocking_echo_over_memory() {
    let (a, b) = MemDevice::pair(1500).unwrap();
    let server = Runtime::with_device(a, config(SERVER, 3)).unwrap();
    let client = Runtime::with_device(b, config(CLIENT, 4)).unwrap();
    let listener = tunstack::net::TcpListener::bind(&server, (SERVER, 7)).unwrap();
    let srv = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(GUARD)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).unwrap();
        }
        conn.shutdown(Shutdown::Write).unwrap();
    });
    let data = pattern(2 << 20, 9);
    let mut conn = tunstack::net::TcpStream::connect(&client, (SERVER, 7)).unwrap();
    conn.set_read_timeout(Some(GUARD)).unwrap();
    let writer = {
        let mut w = conn.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    conn.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    srv.join().unwrap();
    assert_eq!(sha(&back), sha(&data));
}

/// An async server and a blocking client (on a driver thread), on one link through an
/// impaired, lossy middleware: one engine, two API shapes, and recovery.
#[test]
fn async_server_blocking_client_through_a_lossy_link() {
    let (a, b) = MemDevice::pair(1500).unwrap();
    let lossy = Impairment::default().with(|c| {
        c.loss = 0.02;
        c.reorder = 0.02;
        c.delay = Duration::from_millis(1);
        c.seed = 11;
    });
    let b = Impaired::new(b, lossy).unwrap();
    let impaired = b.handle();
    let client = Runtime::with_device(b, config(CLIENT, 6)).unwrap();
    let data = pattern(1 << 20, 3);
    let expected = sha(&data);
    let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = thread::spawn(move || {
        tokio_rt.block_on(async move {
            let server = AsyncRuntime::with_device(a, config(SERVER, 5)).unwrap();
            let listener = TcpListener::bind(&server, (SERVER, 7)).unwrap();
            ready_tx.send(()).unwrap();
            let (stream, _) = tokio::time::timeout(GUARD, listener.accept()).await.unwrap().unwrap();
            let (mut r, mut w) = stream.into_split();
            tokio::time::timeout(GUARD, tokio::io::copy(&mut r, &mut w)).await.unwrap().unwrap();
            w.shutdown().await.unwrap();
            // Stay up (retransmitting the FIN if the link loses it) until the client
            // has read everything.
            let _ = tokio::time::timeout(GUARD, done_rx).await;
            server.shutdown().await;
        })
    });
    ready_rx.recv_timeout(GUARD).unwrap();
    let conn = tunstack::net::TcpStream::connect(&client, (SERVER, 7)).unwrap();
    conn.set_read_timeout(Some(GUARD)).unwrap();
    let writer = {
        let mut w = conn.try_clone().unwrap();
        thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    if let Err(e) = (&conn).read_to_end(&mut back) {
        panic!(
            "read failed after {} bytes: {e}\nclient: {:#?}\n{:#?}\ncounters {:?}\nlink {}",
            back.len(),
            conn.tcp_info(),
            client.sockets(),
            client.counters(),
            impaired.stats()
        );
    }
    writer.join().unwrap();
    let _ = done_tx.send(());
    server_thread.join().unwrap();
    assert_eq!(sha(&back), expected);
    let stats = impaired.stats();
    assert!(stats.rx.lost + stats.tx.lost > 0, "the link lost nothing: {stats}");
}

/// Under the tokio driver, what a task's calls produce leaves at the driver's next turn,
/// after the task yields: a short response written and then shut down goes out as one
/// segment with the FIN (and the ACK of the request, whose delayed ACK it carries),
/// not as a data segment followed by a lone FIN.
#[test]
fn async_response_and_fin_leave_in_one_segment() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(GUARD, async {
            let (a, b) = MemDevice::pair(1500).unwrap();
            // A long ACK delay (within RFC 5681's 500 ms) so that no delayed ACK fires
            // on its own while the server answers, even on a loaded machine.
            let server_cfg = config(SERVER, 21).with(|c| c.ack_delay = Some(Duration::from_millis(400)));
            let server = AsyncRuntime::with_device(a, server_cfg).unwrap();
            let client = AsyncRuntime::with_device(b, config(CLIENT, 22)).unwrap();
            let listener = TcpListener::bind(&server, (SERVER, 80)).unwrap();
            let (request, response) = (pattern(100, 23), pattern(300, 24));
            let srv = {
                let (request, response) = (request.clone(), response.clone());
                tokio::spawn(async move {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut got = vec![0; request.len()];
                    s.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, request);
                    s.write_all(&response).await.unwrap();
                    s.shutdown().await.unwrap();
                    s
                })
            };
            let mut c = TcpStream::connect(&client, (SERVER, 80)).await.unwrap();
            c.write_all(&request).await.unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, response);
            // The SYN-ACK, then the response with the FIN.
            assert_eq!(server.stats().tx_packets, 2, "{:?}", server.counters());
            drop(c);
            drop(srv.await.unwrap());
            server.shutdown().await;
            client.shutdown().await;
        })
        .await
        .expect("bounded")
    });
}
