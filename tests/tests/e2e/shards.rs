//! Multi-queue runtimes (`RuntimeConfig::queues`): one TUN device with two queues, a
//! stack per queue, and the kernel's TCP and UDP on the other side. Connections in
//! both directions, integrity by SHA-256, both shards carrying connections; a flow that
//! the kernel moves to the other queue after idling (its flow table forgets entries
//! after 3 s) keeps working through the hand-off; UDP and ping on a sharded runtime.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as KernelListener, TcpStream, UdpSocket as KernelUdp};
use std::thread;
use std::time::Duration;

use crate::e2e_util::*;
use demo::EchoServer;
use tunstack::runtime::{Runtime, RuntimeConfig};
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

fn two_queues(offload: bool) -> Runtime {
    two_queues_steered(offload, true)
}

fn two_queues_steered(offload: bool, steering: bool) -> Runtime {
    let rt = Runtime::new(RuntimeConfig::default().with(|c| {
        c.queues = 2;
        c.offload = offload;
        c.steering = steering;
    }))
    .expect("a runtime with two queues");
    assert_eq!(rt.shards(), 2);
    assert_eq!(rt.steering(), steering, "the kernel took the steering program");
    netns::wait_ipv6_ready(Duration::from_secs(10));
    rt
}

/// Which shards accepted connections.
fn shards_that_accepted(rt: &Runtime) -> BTreeSet<u16> {
    let mut shards = BTreeSet::new();
    rt.inspect_each(|s| {
        if s.stats().tcp_passive_opens > 0 {
            shards.insert(s.config().shard.expect("a shard").index());
        }
    });
    shards
}

/// Write `data` and read as much back, leaving the connection open.
fn ping_pong(mut stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).expect("write");
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).expect("read the echo");
    back
}

fn echo_many(offload: bool) {
    let Some(ns) = NetNs::new(if offload { "shardsoff" } else { "shards" }) else { return };
    ns.run_timeout(Duration::from_secs(300), move || {
        let rt = two_queues(offload);
        let _server = EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        // 24 connections open at once, each echoing its own 256 KiB from its own thread.
        let clients: Vec<_> = (0..24u64)
            .map(|i| {
                let ip = if i % 3 == 2 { STACK_V6 } else { STACK_V4 };
                let stream = kernel_connect(SocketAddr::new(ip, ECHO_PORT)).expect("kernel connects");
                thread::spawn(move || {
                    let data = pattern(100 + i, 256 << 10);
                    let got = echo_through(&stream, &data);
                    assert_same(&format!("connection {i}"), &got, &data);
                    stream
                })
            })
            .collect();
        let streams: Vec<_> = clients.into_iter().map(|c| c.join().expect("client")).collect();
        let owners = shards_that_accepted(&rt);
        let per_shard = rt.shard_counters();
        eprintln!("connections on shards {owners:?}; per shard: {per_shard:?}");
        assert_eq!(owners, BTreeSet::from([0, 1]), "both shards hold connections");
        assert!(per_shard.iter().all(|c| c.packets_read > 0), "both queues were read: {per_shard:?}");
        let stats = rt.stats();
        assert_eq!(stats.tcp_passive_opens, 24, "{stats:?}");
        assert_eq!(stats.tcp_resets_sent, 0, "no connection was reset: {stats:?}");
        // The steering program delivered every segment to its owner.
        assert_eq!(rt.counters().handoffs_out, 0);
        if offload {
            let off = rt.offload_stats().expect("offload counters");
            assert!(off.rx_super_segments > 0 && off.tx_super_segments > 0, "{off}");
        }
        drop(streams);
    });
}

#[test]
fn two_queues_echo_24_connections() {
    echo_many(false);
}

#[test]
fn two_queues_with_offloads_echo_24_connections() {
    echo_many(true);
}

/// Without the steering program the kernel picks queues itself: a new flow's by its own
/// hash, then the queue that last wrote one of its packets, until the flow idles for
/// 3 s and is forgotten. About half the SYNs, and of the connections after idling 5 s,
/// then arrive at the shard that does not own them, which hands them over; every echo
/// must still come back.
#[test]
fn without_steering_idle_flows_that_change_queue_keep_working() {
    let Some(ns) = NetNs::new("shardsidle") else { return };
    ns.run_timeout(Duration::from_secs(120), || {
        let rt = two_queues_steered(false, false);
        let _server = EchoServer::start(&rt.handle(), &[STACK_V4], ECHO_PORT).expect("echo server");
        let streams: Vec<_> =
            (0..16).map(|_| kernel_connect(SocketAddr::new(STACK_V4, ECHO_PORT)).expect("kernel connects")).collect();
        for (i, s) in streams.iter().enumerate() {
            let data = pattern(i as u64, 2000);
            assert_same("first echo", &ping_pong(s, &data), &data);
        }
        let before = rt.counters();
        thread::sleep(Duration::from_secs(5));
        for (i, s) in streams.iter().enumerate() {
            let data = pattern(50 + i as u64, 3000);
            assert_same("echo after idling", &ping_pong(s, &data), &data);
        }
        let after = rt.counters();
        eprintln!("hand-offs before idling {}, after {}", before.handoffs_out, after.handoffs_out);
        assert_eq!(after.handoffs_in, after.handoffs_out, "every hand-off arrived");
        assert_eq!(after.handoff_drops, 0);
        // With 16 flows re-hashed, all landing on their owner has odds of 2^-16.
        assert!(after.handoffs_out > before.handoffs_out, "some idle flow came back on the other queue");
        assert!(before.handoffs_out > 0, "some SYN arrived on the other queue");
    });
}

/// Connections the stack opens: each shard picks a port whose 4-tuple it owns, the
/// kernel answers on the queue the SYN left from, and both shards open some.
#[test]
fn two_queues_connect_out() {
    let Some(ns) = NetNs::new("shardsout") else { return };
    ns.run_timeout(Duration::from_secs(120), || {
        let rt = two_queues(false);
        let listener = KernelListener::bind((HOST_V4, 0)).expect("kernel listener");
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            for _ in 0..12 {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).expect("read");
                s.write_all(&buf).expect("write");
            }
        });
        let mut streams = Vec::new();
        for i in 0..12u8 {
            let mut s = tunstack::net::TcpStream::connect(&rt, (HOST_V4, port)).expect("the stack connects");
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(&[i; 5]).unwrap();
            let mut back = [0u8; 5];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, [i; 5]);
            streams.push(s);
        }
        server.join().unwrap();
        let owners: BTreeSet<u16> = streams.iter().map(|s| s.handle().shard()).collect();
        assert_eq!(owners, BTreeSet::from([0, 1]), "connects go round robin");
        let stats = rt.stats();
        assert_eq!(stats.tcp_active_opens, 12);
        assert_eq!(stats.tcp_resets_sent, 0, "{stats:?}");
    });
}

/// UDP lives in shard 0 whatever queue its datagrams arrive on; ping is answered by
/// whichever shard reads it.
#[test]
fn two_queues_udp_and_ping() {
    let Some(ns) = NetNs::new("shardsudp") else { return };
    ns.run_timeout(Duration::from_secs(120), || {
        let rt = two_queues(false);
        let _server = EchoServer::start(&rt.handle(), &[STACK_V4], ECHO_PORT).expect("echo server");
        for i in 0..32u16 {
            // A new source port each time: new flows, spread by the kernel's hash.
            let sock = KernelUdp::bind((HOST_V4, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let msg = format!("datagram {i}");
            sock.send_to(msg.as_bytes(), (STACK_V4, ECHO_PORT)).unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = sock.recv_from(&mut buf).expect("the echo comes back");
            assert_eq!(&buf[..n], msg.as_bytes());
        }
        let c = rt.shard_counters();
        eprintln!("per shard: {c:?}");
        let out = netns::exec_here(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.2"], Duration::from_secs(20))
            .expect("ping ran");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(rt.stats().icmp_echo_replies >= 3);
    });
}

/// The async API on two queues: a tokio multi-thread runtime with a worker per queue,
/// an echo server whose accept loop takes connections from both shards, and tasks that
/// connect out through both.
#[test]
fn async_runtime_on_two_queues() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(ns) = NetNs::new("shardsasync") else { return };
    ns.run_timeout(Duration::from_secs(120), || {
        let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        tokio_rt.block_on(async {
            let rt = tunstack::tokio::AsyncRuntime::new(RuntimeConfig::default().with(|c| c.queues = 2))
                .expect("async runtime with two queues");
            assert_eq!(rt.shards(), 2);
            assert!(rt.steering());
            netns::wait_ipv6_ready(Duration::from_secs(10));
            let listener = tunstack::tokio::TcpListener::bind(&rt, (STACK_V4, ECHO_PORT)).expect("bind");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 8192];
                        while let Ok(n @ 1..) = s.read(&mut buf).await {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            // Kernel clients, from blocking threads.
            let clients: Vec<_> = (0..16u64)
                .map(|i| {
                    tokio::task::spawn_blocking(move || {
                        let s = kernel_connect(SocketAddr::new(STACK_V4, ECHO_PORT)).expect("kernel connects");
                        let data = pattern(300 + i, 64 << 10);
                        assert_same("async echo", &echo_through(&s, &data), &data);
                    })
                })
                .collect();
            for c in clients {
                c.await.expect("client");
            }
            // The stack connects out to a kernel listener, from tasks.
            let kl = KernelListener::bind((HOST_V4, 0)).expect("kernel listener");
            let port = kl.local_addr().unwrap().port();
            let server = thread::spawn(move || {
                for _ in 0..8 {
                    let (mut s, _) = kl.accept().expect("accept");
                    let mut b = [0u8; 3];
                    s.read_exact(&mut b).unwrap();
                    s.write_all(&b).unwrap();
                }
            });
            let mut shards = BTreeSet::new();
            for i in 0..8u8 {
                let mut s = tunstack::tokio::TcpStream::connect(&rt, (HOST_V4, port)).await.expect("connect");
                shards.insert(s.handle().shard());
                s.write_all(&[i; 3]).await.unwrap();
                let mut b = [0u8; 3];
                s.read_exact(&mut b).await.unwrap();
                assert_eq!(b, [i; 3]);
            }
            server.join().unwrap();
            assert_eq!(shards, BTreeSet::from([0, 1]));
            let mut accepted = BTreeSet::new();
            rt.inspect_each(|s| {
                if s.stats().tcp_passive_opens > 0 {
                    accepted.insert(s.config().shard.unwrap().index());
                }
            });
            assert_eq!(accepted, BTreeSet::from([0, 1]), "both shards accepted");
            let stats = rt.stats();
            assert_eq!((stats.tcp_passive_opens, stats.tcp_active_opens), (16, 8));
            assert_eq!(stats.tcp_resets_sent, 0);
            rt.shutdown().await;
        });
    });
}

/// Thread per core: `ShardedRuntime` runs a copy of the application on each shard's own
/// thread; each copy's listener accepts only what its shard owns, so both copies serve
/// connections, every connection on the thread of the shard that holds it.
#[test]
fn sharded_runtime_serves_each_shard_on_its_own_thread() {
    use std::sync::mpsc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(ns) = NetNs::new("shardsthread") else { return };
    ns.run_timeout(Duration::from_secs(120), || {
        let (tx, rx) = mpsc::channel::<(usize, u16, String)>();
        let tx = std::sync::Mutex::new(tx);
        let rt = tunstack::tokio::ShardedRuntime::new(RuntimeConfig::default().with(|c| c.queues = 2), move |h| {
            let tx = tx.lock().unwrap().clone();
            async move {
                let me = h.pinned_shard().expect("a pinned handle");
                let listener = tunstack::tokio::TcpListener::bind(&h, (STACK_V4, ECHO_PORT)).expect("bind");
                while let Ok((mut s, _)) = listener.accept().await {
                    let thread = std::thread::current().name().unwrap_or("").to_owned();
                    tx.send((me, s.handle().shard(), thread)).unwrap();
                    tokio::task::spawn_local(async move {
                        let mut buf = [0u8; 8192];
                        while let Ok(n @ 1..) = s.read(&mut buf).await {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        })
        .expect("sharded runtime");
        assert_eq!(rt.shards(), 2);
        assert!(rt.steering());
        assert_eq!(rt.pinned_shard(), None);
        netns::wait_ipv6_ready(Duration::from_secs(10));
        let clients: Vec<_> = (0..16u64)
            .map(|i| {
                thread::spawn(move || {
                    let s = kernel_connect(SocketAddr::new(STACK_V4, ECHO_PORT)).expect("kernel connects");
                    let data = pattern(500 + i, 64 << 10);
                    assert_same("echo on a shard thread", &echo_through(&s, &data), &data);
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client");
        }
        let accepted: Vec<_> = rx.try_iter().collect();
        assert_eq!(accepted.len(), 16);
        for (me, shard, thread) in &accepted {
            assert_eq!(usize::from(*shard), *me, "accepted by the copy on the connection's shard");
            assert_eq!(thread, &format!("tunstack-shard-{me}"));
        }
        let copies: BTreeSet<usize> = accepted.iter().map(|a| a.0).collect();
        assert_eq!(copies, BTreeSet::from([0, 1]), "both copies served");
        assert_eq!(rt.counters().handoffs_out, 0);
        assert_eq!(rt.stats().tcp_resets_sent, 0);
    });
}
