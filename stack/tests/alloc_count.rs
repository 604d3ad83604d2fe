//! Heap allocations on the hot path.
//!
//! 1. Core only: two `Stack`s joined back to back in memory, driven the way the runtime
//!    drives them per packet (`input`, `poll_transmit` into one reused buffer,
//!    `poll_readiness`, timers, `tcp_send`/`tcp_recv` with the application's own buffers).
//! 2. Runtime: a kernel client and a `tunstack::net` server through a TUN device in a
//!    fresh network namespace (needs root; skipped otherwise unless
//!    `TUNSTACK_REQUIRE_E2E=1`). Counted in every thread of the process.
//!
//! After a warm-up that lets every buffer, queue and table reach its working size, the
//! steady state must not allocate. A counting global allocator counts allocations
//! (alloc, alloc_zeroed, realloc) and records their call sites (the tunstack frames of a
//! backtrace). Allocations at the call sites listed in [`KNOWN`] (none today) would be
//! reported but tolerated; any other call site fails the test, and the strict tests fail
//! on any allocation at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
#[cfg(feature = "runtime")]
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
#[cfg(feature = "runtime")]
use std::thread;
use std::time::Duration;

use tunstack::{Config, Instant, Stack, TcpHandle};

/// Core call sites that allocate in a steady state, with the reason. Empty: the two
/// there were (receive-ring regrowth after every drain, timer-heap growth from stale
/// entries) are gone; a site added here must say why it cannot be avoided.
const KNOWN: &[(&str, &str)] = &[];

struct Counting;

/// Counting on for every thread (the runtime test).
static ALL_THREADS: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);
/// Distinct call sites (size of the first allocation, site) while counting.
static SITES: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
/// Distinct call sites kept per measurement.
const MAX_SITES: usize = 16;
/// Serializes the tests of this binary: counting is process-wide for the runtime test.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Counting on for this thread (the core tests).
    static THIS_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread records a call site (which allocates itself).
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// The frames of a backtrace that are in tunstack or in this test, with their source
/// lines: enough to name the call site without the allocator's and std's frames.
fn call_site(bt: &str) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in bt.lines() {
        let t = line.trim_start();
        let is_frame = t.split(':').next().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if is_frame {
            keep = (t.contains("tunstack::") || t.contains("alloc_count::")) && !t.contains("Counting");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

impl Counting {
    fn seen(&self, size: usize) {
        // try_with: the allocator also runs while thread-locals are being torn down.
        let armed = ALL_THREADS.load(Ordering::Relaxed) || THIS_THREAD.try_with(Cell::get) == Ok(true);
        if !armed || RECORDING.try_with(Cell::get) != Ok(false) {
            return;
        }
        COUNT.fetch_add(1, Ordering::Relaxed);
        RECORDING.with(|r| r.set(true));
        let site = call_site(&std::backtrace::Backtrace::force_capture().to_string());
        let mut sites = SITES.lock().unwrap_or_else(PoisonError::into_inner);
        if sites.len() < MAX_SITES && !sites.iter().any(|(_, known)| *known == site) {
            sites.push((size, site));
        }
        drop(sites);
        RECORDING.with(|r| r.set(false));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged. The counting only
// touches atomics and const-initialized thread-locals (no allocation, no destructor),
// and the recording of a call site, which allocates, runs with RECORDING set so that
// it is not counted and does not recurse.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.seen(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.seen(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.seen(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one measurement saw.
struct Allocations {
    what: String,
    count: u64,
    sites: Vec<(usize, String)>,
}

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Run `f` with counting on (this thread only, or every thread).
fn count_allocations(what: &str, all_threads: bool, f: impl FnOnce()) -> Allocations {
    SITES.lock().unwrap_or_else(PoisonError::into_inner).clear();
    COUNT.store(0, Ordering::Relaxed);
    if all_threads {
        ALL_THREADS.store(true, Ordering::Relaxed);
    } else {
        THIS_THREAD.with(|a| a.set(true));
    }
    f();
    ALL_THREADS.store(false, Ordering::Relaxed);
    THIS_THREAD.with(|a| a.set(false));
    let count = COUNT.load(Ordering::Relaxed);
    let sites = std::mem::take(&mut *SITES.lock().unwrap_or_else(PoisonError::into_inner));
    Allocations { what: what.to_string(), count, sites }
}

impl Allocations {
    /// Print what was seen; fail on any call site that is not in [`KNOWN`] (with
    /// `strict`, on any allocation at all).
    fn check(&self, strict: bool) {
        eprintln!("{}: {} allocation(s) in the steady state", self.what, self.count);
        let mut unknown = 0;
        for (size, site) in &self.sites {
            match KNOWN.iter().find(|(f, _)| site.contains(f)) {
                Some((f, why)) => eprintln!("  known core allocation ({size} bytes first) in {f}: {why}"),
                None => {
                    unknown += 1;
                    eprintln!("---- {}: allocation of {size} bytes at\n{site}", self.what);
                }
            }
        }
        assert_eq!(unknown, 0, "{}: allocations at unknown call sites (shown above)", self.what);
        if strict {
            assert_eq!(self.count, 0, "{}: allocations in the steady state (sites above)", self.what);
        }
    }
}

// ------------------------------------------------------------------ core, in memory

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 8080;
const MTU: usize = 1500;
/// Virtual time per step of the link.
const STEP: Duration = Duration::from_micros(20);

/// Two stacks, a connection between them (A connected to B's listener), a zero-delay
/// lossless link, and the buffers an application and a runtime would reuse.
struct Pair {
    a: Stack,
    b: Stack,
    ha: TcpHandle,
    hb: TcpHandle,
    now: Instant,
    /// The runtime's one-packet transmit buffer.
    pkt: Vec<u8>,
    /// The application's write and read buffers.
    tx_data: Vec<u8>,
    rx_data: Vec<u8>,
    /// Bytes that A's (0) and B's (1) application sent, and that arrived at the other.
    sent: [u64; 2],
    received: [u64; 2],
}

/// Auto-tuning on, with maxima of 2 MiB: a loss-free in-memory link lets the congestion
/// window creep up for a long time, and the buffers follow it until their maximum; with
/// these the warm-up reaches it.
fn config(ip: Ipv4Addr, seed: u64) -> Config {
    Config::default().with(|c| {
        c.addrs = vec![IpAddr::V4(ip)];
        c.mtu = MTU;
        c.seed = seed;
        c.tcp_rx_buffer_max = 2 << 20;
        c.tcp_tx_buffer_max = 2 << 20;
    })
}

impl Pair {
    fn new() -> Pair {
        let mut a = Stack::new(config(A_IP, 1));
        let mut b = Stack::new(config(B_IP, 2));
        let now = Instant::from_micros(1_000_000);
        let lh = b.tcp_listen(SocketAddr::new(B_IP.into(), PORT), 8).unwrap();
        let ha = a.tcp_connect(now, SocketAddr::new(B_IP.into(), PORT), None).unwrap();
        let mut p = Pair {
            a,
            b,
            ha,
            hb: ha, // the accepted handle, below
            now,
            pkt: vec![0; MTU],
            tx_data: (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect(),
            rx_data: vec![0; 64 * 1024],
            sent: [0; 2],
            received: [0; 2],
        };
        for _ in 0..100 {
            p.step();
            if let Ok(hb) = p.b.tcp_accept(lh) {
                p.hb = hb;
                assert!(p.a.tcp_poll_connect(p.ha).unwrap());
                return p;
            }
        }
        panic!("no connection after 100 steps");
    }

    /// One step of the link: each side's due timers run and its output is delivered to
    /// the other, wakeups are drained (as the runtime does), the clock advances.
    fn step(&mut self) {
        let Pair { a, b, pkt, now, .. } = self;
        let now = *now;
        deliver(now, a, b, pkt);
        deliver(now, b, a, pkt);
        while a.poll_readiness().is_some() {}
        while b.poll_readiness().is_some() {}
        self.now = now + STEP;
    }

    fn sides(&mut self, from: usize) -> (&mut Stack, TcpHandle, &mut Stack, TcpHandle) {
        if from == 0 {
            (&mut self.a, self.ha, &mut self.b, self.hb)
        } else {
            (&mut self.b, self.hb, &mut self.a, self.ha)
        }
    }

    /// The applications: `from` writes as much as its send buffer takes, the other side
    /// reads everything it has. 0 is A, 1 is B.
    fn app(&mut self, from: usize) {
        let (mut sent, mut received) = (0, 0);
        let (tx_data, rx_data) = (std::mem::take(&mut self.tx_data), std::mem::take(&mut self.rx_data));
        let mut rx_data = rx_data;
        let (sender, s, receiver, r) = self.sides(from);
        loop {
            match sender.tcp_send(s, &tx_data) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        loop {
            match receiver.tcp_recv(r, &mut rx_data) {
                Ok(0) => panic!("unexpected end of stream"),
                Ok(n) => received += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        (self.tx_data, self.rx_data) = (tx_data, rx_data);
        self.sent[from] += sent;
        self.received[from] += received;
    }

    /// Bulk from `from` until at least `bytes` more arrived at the other side.
    fn bulk(&mut self, from: usize, bytes: u64) {
        let target = self.received[from] + bytes;
        let mut steps = 0;
        while self.received[from] < target {
            self.app(from);
            self.step();
            steps += 1;
            assert!(steps < 10_000_000, "bulk transfer stalled at {} of {target}", self.received[from]);
        }
    }

    /// `rounds` request/response exchanges of `len` bytes: A writes, B reads it all and
    /// answers with as many bytes, A reads them.
    fn ping_pong(&mut self, rounds: usize, len: usize) {
        let (tx_data, mut rx_data) = (std::mem::take(&mut self.tx_data), std::mem::take(&mut self.rx_data));
        for _ in 0..rounds {
            for from in [0, 1] {
                let (sender, s, _, _) = self.sides(from);
                assert_eq!(sender.tcp_send(s, &tx_data[..len]).unwrap(), len);
                let mut got = 0;
                let mut steps = 0;
                while got < len {
                    self.step();
                    let (_, _, receiver, r) = self.sides(from);
                    match receiver.tcp_recv(r, &mut rx_data) {
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("recv: {e}"),
                    }
                    steps += 1;
                    assert!(steps < 100_000, "message stalled");
                }
            }
        }
        (self.tx_data, self.rx_data) = (tx_data, rx_data);
    }
}

/// Run `from`'s due timers and hand everything it has to send to `to`.
fn deliver(now: Instant, from: &mut Stack, to: &mut Stack, pkt: &mut [u8]) {
    if from.poll_timeout().is_some_and(|d| d <= now) {
        from.handle_timeout(now);
    }
    while let Some(n) = from.poll_transmit(now, pkt) {
        to.input(now, &pkt[..n]);
    }
}

/// Bulk data one way (data segments one way; ACKs with SACK-permitted and timestamp
/// options the other), 20 000 full segments after a warm-up of 16 MiB at least, until
/// auto-tuning stopped growing the buffers and their storage.
fn core_bulk(strict: bool) {
    let _serial = serial();
    for from in [0, 1] {
        let mut p = Pair::new();
        p.bulk(from, 16 << 20);
        // Buffer auto-tuning grows the buffers towards their working size by doubling
        // (a bounded number of allocations, at most log2(maximum / configured size) per
        // buffer, none per packet): warm up until they stop growing.
        // The bounds auto-tuning grants and the storage that follows them (the memory
        // budget's count of what the buffers allocated).
        let sizes = |p: &Pair| {
            (p.a.tcp_buffer_growth(), p.b.tcp_buffer_growth(), p.a.stats().buffer_memory, p.b.stats().buffer_memory)
        };
        // The window may pause before it grows again: stable for four rounds in a row.
        let mut stable = 0;
        for _ in 0..96 {
            let before = sizes(&p);
            p.bulk(from, 32 << 20);
            stable = if sizes(&p) == before { stable + 1 } else { 0 };
            if stable == 4 {
                break;
            }
        }
        eprintln!("warm-up done: granted and allocated buffer bytes {:?}", sizes(&p));
        let segments = 20_000u64;
        let payload = MTU as u64 - 20 - 20 - 12; // IPv4, TCP, timestamps option
        let dir = if from == 0 { "client to server" } else { "server to client" };
        let result = count_allocations(&format!("core, bulk {dir}"), false, || p.bulk(from, segments * payload));
        assert!(p.received[from] >= (16 << 20) + segments * payload);
        assert!(p.sent[from] >= p.received[from]);
        result.check(strict);
    }
}

/// Bulk transfer both ways, strict: not one allocation in the steady state.
#[test]
fn core_bulk_allocates_nothing() {
    core_bulk(true);
}

/// Small request/response exchanges (the ping-pong and HTTP pattern): data, delayed
/// ACKs, piggybacked ACKs. The warm-up covers more than an RTO of virtual time, so the
/// timer heap has reached its working size.
#[test]
fn core_ping_pong_allocates_nothing() {
    let _serial = serial();
    let mut p = Pair::new();
    p.ping_pong(20_000, 100);
    let result = count_allocations("core, ping-pong 100 B", false, || p.ping_pong(5_000, 100));
    result.check(true);
}

/// The counter works: an allocation made while armed is counted, with its call site,
/// and one outside the list of known sites fails the check.
#[test]
fn the_counter_sees_allocations() {
    let _serial = serial();
    let result = count_allocations("a Vec", false, || {
        let v: Vec<u8> = Vec::with_capacity(100);
        std::hint::black_box(v);
    });
    assert_eq!(result.count, 1);
    assert_eq!(result.sites.len(), 1);
    assert_eq!(result.sites[0].0, 100);
    assert!(result.sites[0].1.contains("the_counter_sees_allocations"), "{}", result.sites[0].1);
    assert!(std::panic::catch_unwind(|| result.check(false)).is_err());
    let none = count_allocations("nothing", false, || {});
    assert_eq!(none.count, 0);
    none.check(true);
}

// ------------------------------------------------------------------ runtime, over TUN

#[cfg(feature = "runtime")]
/// Skip a TUN test with a printed reason, or fail it when `TUNSTACK_REQUIRE_E2E=1`.
fn skip(test: &str, reason: &str) {
    if std::env::var("TUNSTACK_REQUIRE_E2E").is_ok_and(|v| v == "1") {
        panic!("{test} cannot run here ({reason}) but TUNSTACK_REQUIRE_E2E=1 requires it");
    }
    eprintln!("skipping {test}: {reason}");
}

#[cfg(feature = "runtime")]
/// Run `f` on a thread of its own in a fresh network namespace (`unshare`); it and the
/// threads it starts see only that namespace, which goes away with them.
fn in_fresh_netns(test: &str, f: impl FnOnce() + Send + 'static) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(test, "needs root (CAP_NET_ADMIN) to create TUN devices");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return skip(test, "/dev/net/tun does not exist");
    }
    let worker = thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET only changes this thread's namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f();
        Ok(())
    });
    match worker.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => skip(test, &format!("unshare(CLONE_NEWNET) failed: {e}")),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(feature = "runtime")]
/// A kernel client and a tunstack echo server through the runtime: ping-pong of 100 B
/// messages, then bulk from the client; every thread of the process is counted (the
/// runtime thread, the server thread, the kernel client's thread).
#[test]
fn runtime_hot_path_allocates_nothing() {
    let _serial = serial();
    in_fresh_netns("runtime_hot_path_allocates_only_at_known_sites", || {
        use tunstack::net::TcpListener;
        use tunstack::runtime::{Runtime, RuntimeConfig};
        const GUARD: Duration = Duration::from_secs(30);
        const LEN: usize = 100;
        let stack_ip = Ipv4Addr::new(10, 0, 0, 2);
        let rt = Runtime::new(RuntimeConfig::default().with(|c| {
            c.tun_name = "tsal0".into();
            c.host_addrs = vec!["10.0.0.1/24".parse().unwrap()];
            // Auto-tuning's maxima within what the warm-up reaches (see `config`).
            c.stack = Config::default().with(|c| {
                c.addrs = vec![stack_ip.into()];
                c.tcp_rx_buffer_max = 2 << 20;
                c.tcp_tx_buffer_max = 2 << 20;
            });
        }))
        .unwrap();
        let listener = TcpListener::bind(&rt, (stack_ip, 7)).unwrap();
        // First connection: echo until the client shuts down its side. Second: read
        // until the client shuts down. One reused buffer.
        let server = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut totals = [0u64; 2];
            for (i, total) in totals.iter_mut().enumerate() {
                let (conn, _) = listener.accept().unwrap();
                conn.set_nodelay(true).unwrap();
                conn.set_read_timeout(Some(GUARD)).unwrap();
                loop {
                    let n = (&conn).read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    *total += n as u64;
                    if i == 0 {
                        (&conn).write_all(&buf[..n]).unwrap();
                    }
                }
            }
            totals
        });
        let connect = || {
            let c = std::net::TcpStream::connect_timeout(&(stack_ip, 7).into(), GUARD).unwrap();
            c.set_nodelay(true).unwrap();
            c.set_read_timeout(Some(GUARD)).unwrap();
            c
        };
        let mut client = connect();
        let msg = [7u8; LEN];
        let mut back = [0u8; LEN];
        let mut round = |client: &mut std::net::TcpStream| {
            client.write_all(&msg).unwrap();
            client.read_exact(&mut back).unwrap();
        };
        // Warm-up: more than an RTO of real time, so the timer heap has its size.
        let warm = std::time::Instant::now();
        let mut rounds = 0u64;
        while rounds < 5_000 || warm.elapsed() < Duration::from_millis(1500) {
            round(&mut client);
            rounds += 1;
            assert!(warm.elapsed() < GUARD, "warm-up too slow");
        }
        let pp = count_allocations("runtime, ping-pong 100 B", true, || {
            for _ in 0..3_000 {
                round(&mut client);
            }
        });
        rounds += 3_000;
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(client.read(&mut back).unwrap(), 0);

        // Bulk from the client; the server only reads.
        let mut client = connect();
        let chunk = vec![1u8; 64 * 1024];
        // Long enough for buffer auto-tuning and the runtime's batches to reach their
        // working size (growth by doubling: a bounded number of allocations).
        let warm_bytes = 128 << 20;
        let bulk_bytes = 32 << 20;
        for _ in 0..warm_bytes / chunk.len() {
            client.write_all(&chunk).unwrap();
        }
        let bulk = count_allocations("runtime, bulk client to server", true, || {
            for _ in 0..bulk_bytes / chunk.len() {
                client.write_all(&chunk).unwrap();
            }
        });
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let totals = server.join().unwrap();
        assert_eq!(totals, [rounds * LEN as u64, (warm_bytes + bulk_bytes) as u64]);
        pp.check(false);
        bulk.check(false);
        drop(rt);
    });
}
