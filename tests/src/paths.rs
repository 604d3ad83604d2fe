//! Real paths in the simulator (`crate::sim`): bulk transfers over delay and random loss
//! per congestion control algorithm, and the slow reader through a lossy, reordering
//! path. The benchmark (`bench paths`) measures the same cases on a TUN device against
//! Linux; these are their deterministic twins.
//!
//! The path model follows the runtime's link impairment (`tunstack::runtime::impair`),
//! which the benchmark uses: the same delay each way (half the RTT), loss and
//! reordering each way, a reordered packet held back an extra `span/2..span` with
//! `span = 2 * max(delay, 1 ms)`, and at most 1000 packets held per direction. Where the
//! TUN path is limited by the CPU, the simulated one has a bottleneck of
//! [`PATH_RATE_BPS`], so a window larger than the path holds builds a queue and then
//! loses packets, as a real bottleneck does.
//!
//! Nothing here asserts on speed: the tests check completion and integrity; the
//! `sim_table` binary prints the goodput.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tunstack::{Config, CongestionAlgorithm, Instant};

use crate::link::{self, ConnState, Endpoint, EndpointObj, Ours, Side, Smol};
use crate::sim::{derive_seed, payload, standard_path, App, Condition, FailKind, Sim, SimError};

/// The bottleneck of the simulated paths: about what the benchmark's TUN paths carry.
pub const PATH_RATE_BPS: u64 = 500_000_000;
/// Packets held per direction at most (the runtime impairer's limit).
pub const PATH_QUEUE_PACKETS: usize = 1000;
const PORT: u16 = 5001;

/// A path of `rtt` with `loss_pct` random loss and `reorder_pct` reordering each way.
pub fn path_condition(rtt: Duration, loss_pct: u32, reorder_pct: u32) -> Condition {
    let delay = rtt / 2;
    let span = 2 * delay.max(Duration::from_millis(1));
    let path = standard_path().with(|p| {
        p.rate_bps = Some(PATH_RATE_BPS);
        p.delay = delay;
        p.queue_packets = PATH_QUEUE_PACKETS;
        p.queue_bytes = Some(PATH_QUEUE_PACKETS as u64 * 1500);
        p.loss = f64::from(loss_pct) / 100.0;
        p.reorder = f64::from(reorder_pct) / 100.0;
        p.reorder_hold = Some((span / 2, span));
    });
    let mut name = format!("rtt {} ms, loss {loss_pct}%", rtt.as_millis());
    if reorder_pct > 0 {
        name.push_str(&format!(", reorder {reorder_pct}%"));
    }
    Condition::symmetric(name, path)
}

/// The conditions of the table: 0, 1 and 5% loss at 10 and 50 ms, and 5% loss with 5%
/// reordering at 10 ms.
pub fn path_conditions() -> Vec<Condition> {
    let ms = Duration::from_millis;
    vec![
        path_condition(ms(10), 0, 0),
        path_condition(ms(50), 0, 0),
        path_condition(ms(10), 1, 0),
        path_condition(ms(50), 1, 0),
        path_condition(ms(10), 5, 0),
        path_condition(ms(50), 5, 0),
        path_condition(ms(10), 5, 5),
    ]
}

/// Who sends in a bulk run (the receiver is always tunstack with its defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Tunstack(CongestionAlgorithm),
    /// smoltcp 0.14 with CUBIC and 256 KiB buffers (its buffers do not grow).
    Smoltcp,
}

impl Sender {
    pub fn all() -> [Sender; 4] {
        [
            Sender::Tunstack(CongestionAlgorithm::Cubic),
            Sender::Tunstack(CongestionAlgorithm::NewReno),
            Sender::Tunstack(CongestionAlgorithm::Bbr),
            Sender::Smoltcp,
        ]
    }

    pub fn label(self) -> String {
        match self {
            Sender::Tunstack(cc) => format!("tunstack {}", cc.as_str()),
            Sender::Smoltcp => "smoltcp cubic".to_string(),
        }
    }
}

/// Our endpoint with the simulator's settings and congestion control `cc`.
pub fn ours_with(addr: std::net::IpAddr, seed: u64, cc: CongestionAlgorithm, tweak: impl FnOnce(&mut Config)) -> Ours {
    let mut cfg = Ours::config(addr, seed);
    cfg.congestion = cc;
    tweak(&mut cfg);
    Ours::with_config(cfg)
}

/// What a bulk run measured.
#[derive(Clone, Debug)]
pub struct BulkReport {
    pub label: String,
    pub seed: u64,
    pub bytes: usize,
    pub established: Instant,
    pub completed: Instant,
    pub retransmitted: u64,
    pub lost: [u64; 2],
    pub tail_dropped: [u64; 2],
    pub intact: bool,
}

impl BulkReport {
    pub fn goodput_mbps(&self) -> f64 {
        let secs = (self.completed - self.established).as_secs_f64();
        self.bytes as f64 * 8.0 / secs.max(1e-9) / 1e6
    }

    pub fn row(&self) -> String {
        format!(
            "| {} | {:.2} | {:.3} | {} | {} / {} | {} / {} | {} |",
            self.label,
            self.goodput_mbps(),
            (self.completed - Instant::ZERO).as_secs_f64(),
            self.retransmitted,
            self.lost[0],
            self.lost[1],
            self.tail_dropped[0],
            self.tail_dropped[1],
            if self.intact { "equal" } else { "DIFFER" },
        )
    }
}

pub fn bulk_header() -> &'static str {
    "| sender -> tunstack, path | goodput (Mbit/s) | done at (s, virtual) | sender retransmits | lost A->B / B->A | tail-dropped | hashes |\n|---|---:|---:|---:|---|---|---|"
}

/// A bulk run: `sender` sends `bytes` to tunstack over `condition`, closes; the
/// receiver reads to the end.
pub fn run_bulk(sender: Sender, condition: &Condition, bytes: usize, seed: u64) -> Result<BulkReport, SimError> {
    let (a_addr, b_addr) = (link::v4(1), link::v4(2));
    let a: Box<EndpointObj> = match sender {
        Sender::Tunstack(cc) => Box::new(ours_with(a_addr, derive_seed(seed, 2), cc, |_| {})),
        Sender::Smoltcp => {
            let mut s = Smol::with_buffers(a_addr, derive_seed(seed, 2), 256 * 1024);
            s.socket().set_congestion_control(smoltcp::socket::tcp::CongestionControl::Cubic);
            Box::new(s)
        }
    };
    let b: Box<EndpointObj> = Box::new(Ours::new(b_addr, derive_seed(seed, 3)));
    let mut sim = Sim::new(a, b, condition, seed);
    sim.label = format!("{} -> tunstack, {}", sender.label(), condition.name);
    sim.max_time = Instant::from_secs(4 * 3600);
    sim.max_events = 50_000_000;
    let data = payload(derive_seed(seed, 4), bytes);
    let mut app = Bulk::new(data);
    sim.b.listen(PORT);
    let now = sim.now;
    sim.a.connect(now, SocketAddr::new(b_addr, PORT));
    sim.run_until("bulk", &mut app)?;
    Ok(BulkReport {
        label: sim.label.clone(),
        seed,
        bytes,
        established: app.established.expect("done implies established"),
        completed: app.completed.expect("done implies completed"),
        retransmitted: sim.retransmitted(Side::A),
        lost: [sim.paths[0].counters().lost, sim.paths[1].counters().lost],
        tail_dropped: [sim.paths[0].counters().tail_dropped, sim.paths[1].counters().tail_dropped],
        intact: app.sent_hash == app.received_hash.clone().finalize().as_slice(),
    })
}

/// Send everything, close; read to the end of stream, close.
struct Bulk {
    data: Vec<u8>,
    pushed: usize,
    closed: bool,
    got: usize,
    sent_hash: Vec<u8>,
    received_hash: Sha256,
    established: Option<Instant>,
    accepted: bool,
    completed: Option<Instant>,
    buf: Vec<u8>,
    /// `PATHS_TRACE=<ms>`: print both connections' state this often (virtual time).
    trace: Option<(Duration, Instant)>,
}

impl Bulk {
    fn new(data: Vec<u8>) -> Bulk {
        let sent_hash = Sha256::digest(&data).to_vec();
        Bulk {
            data,
            pushed: 0,
            closed: false,
            got: 0,
            sent_hash,
            received_hash: Sha256::new(),
            established: None,
            accepted: false,
            completed: None,
            buf: vec![0; 64 * 1024],
            trace: std::env::var("PATHS_TRACE")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(|ms| (Duration::from_millis(ms), Instant::ZERO)),
        }
    }
}

impl App for Bulk {
    fn step(&mut self, a: &mut EndpointObj, b: &mut EndpointObj, now: Instant) -> Result<bool, (FailKind, String)> {
        let fail = |m: String| (FailKind::Aborted, m);
        if let Some((every, next)) = &mut self.trace {
            if now >= *next {
                *next = now + *every;
                println!("{now:?} got {}\n  A {}\n  B {}", self.got, a.diag(), b.diag());
            }
        }
        if self.established.is_none() && a.poll_established().map_err(|e| fail(format!("connect: {e}")))? {
            self.established = Some(now);
        }
        if !self.accepted {
            self.accepted = b.poll_established().map_err(|e| fail(format!("accept: {e}")))?;
        }
        if self.established.is_some() && !self.closed {
            while self.pushed < self.data.len() {
                match a.send(&self.data[self.pushed..]) {
                    Ok(0) => break,
                    Ok(n) => self.pushed += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(fail(format!("send: {e}"))),
                }
            }
            if self.pushed == self.data.len() {
                a.close();
                self.closed = true;
            }
        }
        if self.accepted && self.completed.is_none() {
            loop {
                match b.recv(&mut self.buf) {
                    Ok(0) => {
                        self.completed = Some(now);
                        b.close();
                        break;
                    }
                    Ok(n) => {
                        self.received_hash.update(&self.buf[..n]);
                        self.got += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(fail(format!("recv after {} bytes: {e}", self.got))),
                }
            }
        }
        // Done once the data is in; the close runs on in the background.
        Ok(self.completed.is_some())
    }

    fn progress(&self) -> String {
        format!(
            "established {:?}, pushed {} of {}, received {}, completed {:?}",
            self.established,
            self.pushed,
            self.data.len(),
            self.got,
            self.completed
        )
    }
}

// ============================================================================ slow reader

/// The slow reader of the issue: a client with an 8 KiB receive buffer (SO_RCVBUF 8192:
/// no auto-tuning) that sends `bytes` to an echo server while reading the echo 4 KiB
/// every 0.5 ms, both ways through the same lossy, reordering path.
#[derive(Clone, Debug)]
pub struct SlowReader {
    pub bytes: usize,
    pub client_rcvbuf: usize,
    pub read_chunk: usize,
    pub read_every: Duration,
    /// The echo server's read buffer (a blocking echo reads this much, then writes it
    /// all back before reading again).
    pub echo_chunk: usize,
}

impl Default for SlowReader {
    fn default() -> SlowReader {
        SlowReader {
            bytes: 8 << 20,
            client_rcvbuf: 8192,
            read_chunk: 4096,
            read_every: Duration::from_micros(500),
            echo_chunk: 64 * 1024,
        }
    }
}

/// The slow reader's path: `demo echo --loss 5 --reorder 5` with `delay` each way (1 ms
/// when none is given to the runtime: the reordering span's floor).
pub fn slow_reader_condition(delay: Duration) -> Condition {
    let span = 2 * delay.max(Duration::from_millis(1));
    let path = standard_path().with(|p| {
        p.rate_bps = None;
        p.delay = delay;
        p.loss = 0.05;
        p.reorder = 0.05;
        p.reorder_hold = Some((span / 2, span));
    });
    Condition::symmetric(format!("slow reader, {} ms each way, loss 5%, reorder 5%", delay.as_millis()), path)
}

/// What a slow-reader run measured.
#[derive(Clone, Debug)]
pub struct SlowReport {
    pub seed: u64,
    /// Connect to the last byte of the echo read.
    pub took: Duration,
    /// The longest time in which the client neither sent nor read a byte.
    pub longest_pause: Duration,
    /// When it began.
    pub pause_at: Instant,
    pub intact: bool,
    pub retransmitted: [u64; 2],
}

/// Wakes the simulator at the client's read times (the pump only runs at packet
/// arrivals and the stacks' own timers).
struct Ticking {
    inner: Box<EndpointObj>,
    next: Instant,
    every: Duration,
}

impl Endpoint for Ticking {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn addr(&self) -> std::net::IpAddr {
        self.inner.addr()
    }
    fn input(&mut self, now: Instant, packet: &[u8]) {
        self.inner.input(now, packet)
    }
    fn output(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.inner.output(now, out)
    }
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        let tick = self.next;
        Some(self.inner.deadline(now).map_or(tick, |d| d.min(tick)))
    }
    fn on_timeout(&mut self, now: Instant) {
        if self.inner.deadline(now).is_some_and(|d| d <= now) {
            self.inner.on_timeout(now);
        }
        while self.next <= now {
            self.next += self.every;
        }
    }
    fn listen(&mut self, port: u16) {
        self.inner.listen(port)
    }
    fn connect(&mut self, now: Instant, remote: SocketAddr) {
        self.inner.connect(now, remote)
    }
    fn poll_established(&mut self) -> std::io::Result<bool> {
        self.inner.poll_established()
    }
    fn send(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.inner.send(data)
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.recv(buf)
    }
    fn close(&mut self) {
        self.inner.close()
    }
    fn conn_state(&mut self) -> ConnState {
        self.inner.conn_state()
    }
    fn drops(&self) -> Option<u64> {
        self.inner.drops()
    }
    fn diag(&mut self) -> String {
        self.inner.diag()
    }
}

struct SlowApp {
    spec: SlowReader,
    data: Vec<u8>,
    pushed: usize,
    got: usize,
    next_read: Instant,
    established: Option<Instant>,
    accepted: bool,
    echo_buf: Vec<u8>,
    echo_have: usize,
    echo_sent: usize,
    echoed: usize,
    read_buf: Vec<u8>,
    received: Sha256,
    last_progress: Instant,
    longest_pause: Duration,
    pause_at: Instant,
    done: Option<Instant>,
}

impl App for SlowApp {
    fn step(&mut self, a: &mut EndpointObj, b: &mut EndpointObj, now: Instant) -> Result<bool, (FailKind, String)> {
        let fail = |m: String| (FailKind::Aborted, m);
        if self.established.is_none() && a.poll_established().map_err(|e| fail(format!("connect: {e}")))? {
            self.established = Some(now);
            self.next_read = now;
            self.last_progress = now;
        }
        if !self.accepted {
            self.accepted = b.poll_established().map_err(|e| fail(format!("accept: {e}")))?;
        }
        let Some(_) = self.established else { return Ok(false) };
        let mut progress = false;
        // The client's writer: as much as its send buffer takes.
        while self.pushed < self.data.len() {
            match a.send(&self.data[self.pushed..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.pushed += n;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(fail(format!("client send: {e}"))),
            }
        }
        // The echo server: read a chunk, write it all back, read again.
        if self.accepted {
            loop {
                if self.echo_sent == self.echo_have {
                    self.echo_sent = 0;
                    self.echo_have = 0;
                    match b.recv(&mut self.echo_buf) {
                        Ok(0) => break,
                        Ok(n) => self.echo_have = n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(fail(format!("echo recv: {e}"))),
                    }
                }
                match b.send(&self.echo_buf[self.echo_sent..self.echo_have]) {
                    Ok(n) => {
                        self.echo_sent += n;
                        self.echoed += n;
                        if self.echo_sent < self.echo_have {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(fail(format!("echo send: {e}"))),
                }
            }
        }
        // The client's reader: one chunk per tick.
        while now >= self.next_read {
            self.next_read += self.spec.read_every;
            match a.recv(&mut self.read_buf) {
                Ok(0) => return Err(fail(format!("end of stream after {} of the echo", self.got))),
                Ok(n) => {
                    self.received.update(&self.read_buf[..n]);
                    self.got += n;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(fail(format!("client recv: {e}"))),
            }
        }
        if progress {
            let pause = now - self.last_progress;
            if pause > self.longest_pause {
                self.longest_pause = pause;
                self.pause_at = self.last_progress;
            }
            self.last_progress = now;
        }
        if self.got == self.data.len() && self.done.is_none() {
            self.done = Some(now);
            a.close();
            b.close();
            return Ok(true);
        }
        Ok(false)
    }

    fn progress(&self) -> String {
        format!(
            "client sent {} of {}, echoed {}, client read {}; longest pause {:?} from {:?}",
            self.pushed,
            self.data.len(),
            self.echoed,
            self.got,
            self.longest_pause,
            self.pause_at
        )
    }
}

/// One slow-reader run: client and echo server are tunstack (the client configured
/// like the kernel's socket with SO_RCVBUF 8192), `config` adjusts both.
pub fn run_slow_reader(
    spec: &SlowReader,
    condition: &Condition,
    seed: u64,
    config: impl Fn(&mut Config),
) -> Result<SlowReport, SimError> {
    let (a_addr, b_addr) = (link::v4(1), link::v4(2));
    let rcvbuf = spec.client_rcvbuf;
    let client = ours_with(a_addr, derive_seed(seed, 2), CongestionAlgorithm::Cubic, |c| {
        config(c);
        // SO_RCVBUF: a fixed buffer, no auto-tuning.
        c.tcp_rx_buffer = rcvbuf;
        c.tcp_rx_buffer_max = rcvbuf;
    });
    let server = ours_with(b_addr, derive_seed(seed, 3), CongestionAlgorithm::Cubic, &config);
    let a = Box::new(Ticking { inner: Box::new(client), next: Instant::ZERO, every: spec.read_every });
    let mut sim = Sim::new(a, Box::new(server), condition, seed);
    sim.label = format!("slow reader, {}", condition.name);
    sim.max_time = Instant::from_secs(600);
    sim.max_events = 50_000_000;
    let data = payload(derive_seed(seed, 4), spec.bytes);
    let sent_hash = Sha256::digest(&data);
    let mut app = SlowApp {
        spec: spec.clone(),
        data,
        pushed: 0,
        got: 0,
        next_read: Instant::ZERO,
        established: None,
        accepted: false,
        echo_buf: vec![0; spec.echo_chunk],
        echo_have: 0,
        echo_sent: 0,
        echoed: 0,
        read_buf: vec![0; spec.read_chunk],
        received: Sha256::new(),
        last_progress: Instant::ZERO,
        longest_pause: Duration::ZERO,
        pause_at: Instant::ZERO,
        done: None,
    };
    sim.b.listen(PORT);
    let now = sim.now;
    sim.a.connect(now, SocketAddr::new(b_addr, PORT));
    sim.run_until("slow reader", &mut app)?;
    let start = app.established.expect("done implies established");
    Ok(SlowReport {
        seed,
        took: app.done.expect("done") - start,
        longest_pause: app.longest_pause,
        pause_at: app.pause_at,
        intact: app.received.finalize() == sent_hash,
        retransmitted: [sim.retransmitted(Side::A), sim.retransmitted(Side::B)],
    })
}

// ============================================================================ tables

/// A run's seed from its label (FNV-1a), so each run has its own and keeps it.
pub fn label_seed(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Run `f` over `items` on `jobs` threads, results in order.
pub fn parallel<T: Sync, R: Send>(jobs: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    out.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|r| r.expect("every item ran")).collect()
}

/// The bulk table: every sender under every path condition, `bytes` each; runs whose
/// label contains every string of `only`. Returns the markdown.
pub fn bulk_table(bytes: usize, only: &[String], jobs: usize) -> String {
    let mut runs = Vec::new();
    for c in path_conditions() {
        for s in Sender::all() {
            let label = format!("{} -> tunstack, {}", s.label(), c.name);
            if only.iter().all(|o| label.contains(o.as_str())) {
                runs.push((s, c.clone(), label));
            }
        }
    }
    let rows = parallel(jobs, &runs, |(s, c, label)| {
        eprintln!("running {label}");
        match run_bulk(*s, c, bytes, label_seed(label)) {
            Ok(r) => r.row(),
            Err(e) => format!("| {label} | **{}** at {:?}: {} | | | | | |", e.kind, e.at, e.message.replace('|', "/")),
        }
    });
    let mut t = format!(
        "Bulk transfers of {bytes} bytes to tunstack (defaults: buffer auto-tuning, pacing) over a {} Mbit/s \
         bottleneck with {PATH_QUEUE_PACKETS} packets of queue, per sender and congestion control:\n\n{}\n",
        PATH_RATE_BPS / 1_000_000,
        bulk_header()
    );
    for r in rows {
        t.push_str(&r);
        t.push('\n');
    }
    t
}

/// The slow reader `runs` times (seeds 0..runs) through `demo echo --loss 5 --reorder
/// 5` (no delay): one line per run and a summary. Returns the text and whether every
/// run completed intact.
pub fn slow_table(runs: u64, jobs: usize) -> (String, bool) {
    let spec = SlowReader::default();
    let cond = slow_reader_condition(Duration::ZERO);
    let seeds: Vec<u64> = (0..runs).map(|i| derive_seed(0x736c_6f77, i)).collect();
    let results = parallel(jobs, &seeds, |&seed| run_slow_reader(&spec, &cond, seed, |_| {}));
    let mut t = format!(
        "The slow reader (client: SO_RCVBUF-like 8 KiB buffer, reads 4 KiB every 0.5 ms while it sends \
         8 MiB to an echo server; both tunstack), {}, {runs} seeds:\n\n",
        cond.describe()
    );
    let (mut took, mut pauses, mut ok) = (Vec::new(), Vec::new(), true);
    for r in &results {
        match r {
            Ok(r) => {
                t.push_str(&format!(
                    "- seed {:#x}: {:.2} s, longest pause {:.3} s (from {:?}), {}\n",
                    r.seed,
                    r.took.as_secs_f64(),
                    r.longest_pause.as_secs_f64(),
                    r.pause_at,
                    if r.intact { "intact" } else { "BYTES DIFFER" }
                ));
                ok &= r.intact;
                took.push(r.took.as_secs_f64());
                pauses.push(r.longest_pause.as_secs_f64());
            }
            Err(e) => {
                ok = false;
                t.push_str(&format!("- FAILED: {e}\n"));
            }
        }
    }
    took.sort_by(f64::total_cmp);
    pauses.sort_by(f64::total_cmp);
    if let (Some(tm), Some(pm)) = (took.get(took.len() / 2), pauses.last()) {
        t.push_str(&format!(
            "\nmedian {tm:.2} s, slowest {:.2} s; the longest pause of all runs {pm:.3} s\n",
            took.last().copied().unwrap_or(0.0)
        ));
    }
    (t, ok)
}
