//! TCP through an impaired TUN link (the runtime's own impairment layer, see
//! `tunstack::link`), each test in its own network namespace: the kernel's
//! TCP moves data through the demo echo server while packets are lost, reordered,
//! duplicated or corrupted in both directions, and every byte must come back intact.
//!
//! Nothing here asserts on time: the transfers are bounded (they fail with a diagnostic
//! after [`TRANSFER_LIMIT`]) and print the throughput they reached and the impairment
//! counters.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::e2e_util::*;
use demo::EchoServer;
use sha2::{Digest, Sha256};
use tunstack::runtime::{Impairment, Runtime, RuntimeConfig};
use tunstack::wire::DropReason;
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

/// Longest a whole transfer may take before the test fails with a diagnostic.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);

/// Each blocking socket call waits at most this long, so the deadline is checked often.
const POLL: Duration = Duration::from_secs(1);

/// The runtime with the default addresses and `impair` on both directions.
fn impaired_runtime(impair: Impairment) -> Runtime {
    let config = RuntimeConfig::default().with(|c| c.impair = Some(impair));
    let rt = Runtime::new(config).expect("Runtime::new in the test namespace");
    netns::wait_ipv6_ready(Duration::from_secs(10));
    rt
}

/// A socket timeout (SO_RCVTIMEO/SO_SNDTIMEO give EAGAIN) or a signal: call again.
fn try_again(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// What one echo transfer achieved.
struct Transfer {
    elapsed: Duration,
    sent: u64,
    received: u64,
    /// Longest time in which neither direction made progress.
    longest_gap: Duration,
    echo_sha: [u8; 32],
}

/// Connect to the echo server at `addr`, send `data` on one thread while reading the
/// echo on this one (hashing it as it comes), half-close, read to the end. Stops at the
/// deadline instead of waiting longer; the caller compares what came back.
fn echo_bounded(addr: SocketAddr, data: Arc<Vec<u8>>, deadline: Instant) -> io::Result<Transfer> {
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(POLL))?;
    let sent = Arc::new(AtomicU64::new(0));

    let mut writer = stream.try_clone()?;
    let sent_w = sent.clone();
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut off = 0;
        while off < data.len() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "sending did not finish by the deadline"));
            }
            let end = (off + 64 * 1024).min(data.len());
            match writer.write(&data[off..end]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "connection closed while sending")),
                Ok(n) => {
                    off += n;
                    sent_w.store(off as u64, Ordering::Relaxed);
                }
                Err(e) if try_again(&e) => {}
                Err(e) => return Err(e),
            }
        }
        writer.shutdown(Shutdown::Write)
    });

    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_progress = Instant::now();
    let mut last_sent = 0;
    let mut longest_gap = Duration::ZERO;
    let mut reader = &stream;
    let read_result = loop {
        if Instant::now() >= deadline {
            break Err(io::Error::new(io::ErrorKind::TimedOut, "the echo did not finish by the deadline"));
        }
        let progressed = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                received += n as u64;
                true
            }
            Err(e) if try_again(&e) => false,
            Err(e) => break Err(e),
        };
        let now_sent = sent.load(Ordering::Relaxed);
        if progressed || now_sent != last_sent {
            last_sent = now_sent;
            last_progress = Instant::now();
        }
        longest_gap = longest_gap.max(last_progress.elapsed());
    };
    // The sender stops by the deadline on its own.
    let send_result = sender.join().expect("sender thread");
    let t = Transfer {
        elapsed: start.elapsed(),
        sent: sent.load(Ordering::Relaxed),
        received,
        longest_gap,
        echo_sha: hasher.finalize().into(),
    };
    match (send_result, read_result) {
        (Ok(()), Ok(())) => Ok(t),
        (Err(e), _) | (_, Err(e)) => Err(io::Error::new(
            e.kind(),
            format!(
                "{e}: after {:.1} s, {} of the bytes sent and {} received (longest time without progress {:.1} s)",
                t.elapsed.as_secs_f64(),
                t.sent,
                t.received,
                t.longest_gap.as_secs_f64()
            ),
        )),
    }
}

/// Everything worth knowing when an impaired transfer fails or is slow.
fn diagnostics(rt: &Runtime) -> String {
    let stats = rt.stats();
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|&&r| stats.dropped(r) > 0)
        .map(|&r| format!("{}={}", r.as_str(), stats.dropped(r)))
        .collect();
    let sockets: Vec<String> = rt.sockets().iter().map(|s| format!("{s:?}")).collect();
    format!(
        "impairment: {}\nstack: rx {} packets, tx {} packets, {} TCP retransmits, drops [{}]\nsockets:\n  {}",
        rt.impairment_stats().map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
        stats.rx_packets,
        stats.tx_packets,
        stats.tcp_retransmits,
        drops.join(" "),
        sockets.join("\n  ")
    )
}

fn mbit_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-6) / 1e6
}

/// Echo `len` bytes through the impaired link, check them by SHA-256, print the
/// outcome; returns the runtime for further checks.
fn impaired_echo(ns: &NetNs, what: &'static str, impair: Impairment, stack_ip: IpAddr, len: usize) -> Runtime {
    ns.run_timeout(TRANSFER_LIMIT + Duration::from_secs(60), move || {
        let rt = impaired_runtime(impair.clone());
        EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let data = Arc::new(pattern(0x1a2b, len));
        let want = sha256(&data);
        let deadline = Instant::now() + TRANSFER_LIMIT;
        let result = echo_bounded(SocketAddr::new(stack_ip, ECHO_PORT), data, deadline);
        let t = match result {
            Ok(t) => t,
            Err(e) => panic!("{what}: {e}\n{impair}\n{}", diagnostics(&rt)),
        };
        println!(
            "{what} ({impair}): {} bytes each way in {:.1} s: {:.1} Mbit/s up, {:.1} Mbit/s echoed back; \
             longest time without progress {:.2} s\n{}",
            len,
            t.elapsed.as_secs_f64(),
            mbit_per_s(t.sent, t.elapsed),
            mbit_per_s(t.received, t.elapsed),
            t.longest_gap.as_secs_f64(),
            diagnostics(&rt)
        );
        assert_eq!(t.sent, len as u64, "{what}: bytes sent");
        assert_eq!(t.received, len as u64, "{what}: bytes echoed back");
        assert_eq!(t.echo_sha, want, "{what}: SHA-256 of the echoed bytes");
        rt
    })
}

/// 5% loss and 5% reordering in each direction with 3 ms of delay: 20 MiB each way.
#[test]
fn twenty_mebibytes_each_way_through_loss_and_reordering() {
    let Some(ns) = NetNs::new("impair") else { return };
    let impair = Impairment::default().with(|c| {
        c.loss = 0.05;
        c.reorder = 0.05;
        c.delay = Duration::from_millis(3);
        c.seed = 2024;
    });
    let rt = impaired_echo(&ns, "20 MiB echo, IPv4", impair, STACK_V4, 20 << 20);
    let s = rt.impairment_stats().expect("impairment configured");
    // The impairment really happened, in both directions.
    for (dir, c) in [("device->stack", s.rx), ("stack->device", s.tx)] {
        assert!(c.lost > 0 && c.reordered > 0, "{dir}: {c}");
        assert_eq!(c.corrupted + c.duplicated, 0, "{dir}: {c}");
    }
    assert!(rt.stats().tcp_retransmits > 0, "losses were repaired by our retransmissions");
    drop(rt);
}

/// Linux's TCP checksum error counter (`Tcp: ... InCsumErrors` in /proc/net/snmp) in
/// the calling thread's namespace.
fn kernel_tcp_csum_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("/proc/net/snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().expect("Tcp header line"), tcp.next().expect("Tcp value line"));
    let i = names.split_whitespace().position(|n| n == "InCsumErrors").expect("InCsumErrors column");
    values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).expect("InCsumErrors value")
}

/// 1% corruption and 1% duplication each way over IPv6: the echo still matches, every
/// corrupted packet that reached the stack failed its checks, and Linux counted
/// checksum errors for the ones we sent.
#[test]
fn corrupted_and_duplicated_packets_are_caught_ipv6() {
    let Some(ns) = NetNs::new("corrupt") else { return };
    let impair = Impairment::default().with(|c| {
        c.corrupt = 0.01;
        c.duplicate = 0.01;
        c.delay = Duration::from_millis(1);
        c.seed = 7;
    });
    let before = ns.run(kernel_tcp_csum_errors);
    let rt = impaired_echo(&ns, "4 MiB echo, IPv6", impair, STACK_V6, 4 << 20);
    let kernel_csum_errors = ns.run(kernel_tcp_csum_errors) - before;
    let s = rt.impairment_stats().expect("impairment configured");
    assert!(s.rx.corrupted > 0 && s.tx.corrupted > 0 && s.rx.duplicated > 0 && s.tx.duplicated > 0, "{s}");
    let stats = rt.stats();
    let parse_drops: u64 =
        DropReason::ALL.iter().take_while(|&&r| r != DropReason::NotForUs).map(|&r| stats.dropped(r)).sum();
    // Only corrupted packets fail parsing (a flip in an IPv6 extension header of the
    // kernel's own MLD reports may go unnoticed, hence not an equality).
    assert!(parse_drops > 0 && parse_drops <= s.rx.corrupted, "{parse_drops} parse drops, {s}");
    assert!(
        kernel_csum_errors > 0 && kernel_csum_errors <= s.tx.corrupted,
        "Linux counted {kernel_csum_errors} TCP checksum errors; {s}"
    );
}
