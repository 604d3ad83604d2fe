//! The run: every selected system at every MTU, its workloads, into a [`Report`]; then
//! the document (markdown) and the chart.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client;
use crate::env::{Env, System};
use crate::proto::*;
use crate::report::{key, Cell, Report};
use crate::stats::{fmt_num, fmt_size, gbit_per_s, median, percentile, sorted};
use crate::svg::{self, Panel};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Workload {
    Bulk,
    Latency,
    Connrate,
    Http,
    Scale,
}

impl Workload {
    pub const ALL: [Workload; 5] =
        [Workload::Bulk, Workload::Latency, Workload::Connrate, Workload::Http, Workload::Scale];
}

/// Everything a run does, after defaults.
#[derive(Debug)]
pub struct Plan {
    pub quick: bool,
    pub size: u64,
    pub iterations: usize,
    pub round_trips: usize,
    pub connections: usize,
    pub conn_threads: usize,
    pub http_secs: u64,
    pub http_conns: usize,
    pub idle: usize,
    pub scale_size: u64,
    pub mtus: Vec<usize>,
    pub systems: Vec<System>,
    pub workloads: Vec<Workload>,
    pub buffer: Option<usize>,
    pub run_timeout: Duration,
    pub wrk: bool,
    pub out_dir: PathBuf,
    pub no_write: bool,
    pub command: String,
}

/// Idle connections of the small end of the scale workload.
const FEW_IDLE: usize = 10;
const LAT_SIZES: [usize; 2] = [1, 1024];

/// Whether `w` is run on `s` (and why not).
fn applies(s: System, w: Workload) -> Result<(), &'static str> {
    match (s, w) {
        (System::Ceiling, Workload::Connrate | Workload::Http | Workload::Scale) => Err("throughput/latency only"),
        _ => Ok(()),
    }
}

/// The table's rows, in order.
fn define_rows(plan: &Plan, r: &mut Report) {
    let has = |w| plan.workloads.contains(&w);
    if has(Workload::Bulk) {
        for &mtu in &plan.mtus {
            for up in [true, false] {
                let dir = if up { "c→s" } else { "s→c" };
                r.add_row(&key::bulk(up, mtu), &format!("bulk {dir}, MTU {mtu} (Gbit/s)"), true, true);
            }
        }
        for &mtu in &plan.mtus {
            for up in [true, false] {
                let dir = if up { "c→s" } else { "s→c" };
                r.add_row(&key::cpu(up, mtu), &format!("bulk {dir}, MTU {mtu}: server CPU (s/GB)"), false, false);
            }
        }
    }
    if has(Workload::Latency) {
        for len in LAT_SIZES {
            for pct in [50, 99] {
                let l = if len == 1 { "1 B".to_string() } else { fmt_size(len as u64) };
                r.add_row(&key::lat(len, pct), &format!("ping-pong {l} p{pct} (µs)"), false, true);
            }
        }
    }
    if has(Workload::Connrate) {
        r.add_row(key::CONNRATE, "connection rate (conn/s)", true, false);
    }
    if has(Workload::Http) {
        r.add_row(key::HTTP_RPS, "HTTP keep-alive (req/s)", true, false);
        r.add_row(key::HTTP_P99, "HTTP keep-alive p99 (ms)", false, false);
    }
    if has(Workload::Scale) {
        r.add_row(key::SCALE_MEM, "memory per idle connection (bytes)", false, false);
        for n in [FEW_IDLE, plan.idle] {
            r.add_row(&key::scale_thr(n), &format!("one flow c→s with {n} idle conns (Gbit/s)"), true, false);
        }
        for n in [FEW_IDLE, plan.idle] {
            r.add_row(&key::scale_cpp(n), &format!("server CPU per packet, {n} idle conns (µs)"), false, false);
        }
    }
}

/// Rows a workload fills (for marking errors and n/a).
fn rows_of(plan: &Plan, w: Workload, mtu: usize) -> Vec<String> {
    match w {
        Workload::Bulk => [true, false].iter().flat_map(|&up| [key::bulk(up, mtu), key::cpu(up, mtu)]).collect(),
        Workload::Latency => LAT_SIZES.iter().flat_map(|&l| [key::lat(l, 50), key::lat(l, 99)]).collect(),
        Workload::Connrate => vec![key::CONNRATE.into()],
        Workload::Http => vec![key::HTTP_RPS.into(), key::HTTP_P99.into()],
        Workload::Scale => {
            let mut v = vec![key::SCALE_MEM.to_string()];
            for n in [FEW_IDLE, plan.idle] {
                v.push(key::scale_thr(n));
                v.push(key::scale_cpp(n));
            }
            v
        }
    }
}

/// Progress on stderr with the time since the start.
struct Progress(Instant);

impl Progress {
    fn say(&self, msg: &str) {
        eprintln!("[{:6.1}s] {msg}", self.0.elapsed().as_secs_f64());
    }
}

pub fn run(plan: &Plan) -> Report {
    let mut report = Report::default();
    define_rows(plan, &mut report);
    let p = Progress(Instant::now());
    for &sys in &plan.systems {
        for (i, &mtu) in plan.mtus.iter().enumerate() {
            let mut todo = Vec::new();
            for &w in &plan.workloads {
                if w != Workload::Bulk && i > 0 {
                    continue;
                }
                match applies(sys, w) {
                    Ok(()) => todo.push(w),
                    Err(why) => {
                        for k in rows_of(plan, w, mtu) {
                            report.set(&k, sys, Cell::Na(why));
                        }
                    }
                }
            }
            if todo.is_empty() {
                continue;
            }
            p.say(&format!("{} at MTU {mtu}: setting up", sys.label()));
            let mut env = match Env::start(sys, mtu, plan.buffer) {
                Ok(e) => e,
                Err(e) => {
                    p.say(&format!("{} at MTU {mtu}: setup failed: {e}", sys.label()));
                    for w in todo {
                        for k in rows_of(plan, w, mtu) {
                            report.set(&k, sys, Cell::Err(format!("setup: {e}")));
                        }
                    }
                    continue;
                }
            };
            for w in todo {
                p.say(&format!("{} at MTU {mtu}: {w:?}", sys.label()));
                let result = match w {
                    Workload::Bulk => bulk(&mut env, plan, &mut report),
                    Workload::Latency => latency(&mut env, plan, &mut report),
                    Workload::Connrate => connrate(&mut env, plan, &mut report),
                    Workload::Http => http(&mut env, plan, &mut report),
                    Workload::Scale => scale(&mut env, plan, &mut report),
                };
                if let Err(e) = result {
                    p.say(&format!("{} at MTU {mtu}: {w:?} failed: {e}", sys.label()));
                    for k in rows_of(plan, w, mtu) {
                        let row_has_value = report.value(&k, sys).is_some();
                        if !row_has_value {
                            report.set(&k, sys, Cell::Err(e.to_string()));
                        }
                    }
                }
            }
            drop(env);
        }
    }
    p.say("done");
    report
}

/// Client-side limit: the measurement's own deadline plus slack for connect/teardown.
fn client_limit(plan: &Plan) -> Duration {
    plan.run_timeout + Duration::from_secs(15)
}

fn bulk(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let sys = env.system;
    for up in [true, false] {
        let mut thr = Vec::new();
        let mut cpu = Vec::new();
        let mut failure = None;
        let (mut drops, mut client_rtx, mut server_rtx) = (0, 0, Some(0));
        for _ in 0..plan.iterations {
            let addr = env.addr(if up { SINK_PORT } else { SOURCE_PORT });
            let size = plan.size;
            let deadline = Instant::now() + plan.run_timeout;
            let dev = env.client_dev;
            let c0 = env.measured().cpu_secs()?;
            let r0 = env.tcp_server().retransmits()?;
            let r = env.client(client_limit(plan), move || {
                let l0 = client::Link::now(dev)?;
                let secs =
                    if up { client::upload(addr, size, deadline)? } else { client::download(addr, size, deadline)? };
                Ok((secs, client::Link::now(dev)?.losses_since(&l0)))
            });
            let c1 = env.measured().cpu_secs()?;
            let r1 = env.tcp_server().retransmits()?;
            // Behind the reflector both ends are the client namespace's kernel: its
            // counter is already the client's.
            server_rtx = match (server_rtx, r0, r1) {
                (Some(t), Some(a), Some(b)) if sys != System::Ceiling => Some(t + b.saturating_sub(a)),
                _ => None,
            };
            match r {
                Ok((secs, (d, rtx))) => {
                    thr.push(gbit_per_s(size, secs));
                    cpu.push((c1 - c0) / (size as f64 / 1e9));
                    drops += d;
                    client_rtx += rtx;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if drops + client_rtx + server_rtx.unwrap_or(0) > 0 {
            let rtx = match (sys, server_rtx) {
                (System::Ceiling, _) => format!("{client_rtx} by the kernel (both ends)"),
                (_, Some(n)) => format!("{client_rtx} by the client's kernel, {n} by the server"),
                (_, None) => format!("{client_rtx} by the client's kernel, the server's not counted"),
            };
            report.notes.push(format!(
                "{}, bulk {} MTU {}: {drops} packets dropped by the device, segments retransmitted: {rtx} ({} run(s))",
                sys.label(),
                if up { "c→s" } else { "s→c" },
                env.mtu,
                plan.iterations
            ));
        }
        let (tk, ck) = (key::bulk(up, env.mtu), key::cpu(up, env.mtu));
        match failure {
            Some(e) => {
                report.set(&tk, sys, Cell::Err(e.to_string()));
                report.set(&ck, sys, Cell::Err(e.to_string()));
            }
            None => {
                report.set(&tk, sys, median(&thr).map_or(Cell::Na("no data"), Cell::Val));
                report.set(&ck, sys, median(&cpu).map_or(Cell::Na("no data"), Cell::Val));
            }
        }
    }
    Ok(())
}

fn latency(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    for len in LAT_SIZES {
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for _ in 0..plan.iterations {
            let addr = env.addr(ECHO_PORT);
            let n = plan.round_trips;
            let deadline = Instant::now() + plan.run_timeout;
            let samples = sorted(env.client(client_limit(plan), move || client::ping_pong(addr, len, n, deadline))?);
            p50.extend(percentile(&samples, 50.0));
            p99.extend(percentile(&samples, 99.0));
        }
        report.set(&key::lat(len, 50), env.system, median(&p50).map_or(Cell::Na("no data"), Cell::Val));
        report.set(&key::lat(len, 99), env.system, median(&p99).map_or(Cell::Na("no data"), Cell::Val));
    }
    Ok(())
}

fn connrate(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let mut rates = Vec::new();
    for _ in 0..plan.iterations {
        let addr = env.addr(RR_PORT);
        let (n, t) = (plan.connections, plan.conn_threads);
        let deadline = Instant::now() + plan.run_timeout;
        let (done, secs) = env.client(client_limit(plan), move || client::connection_rate(addr, n, t, deadline))?;
        rates.push(done as f64 / secs);
    }
    report.set(key::CONNRATE, env.system, median(&rates).map_or(Cell::Na("no data"), Cell::Val));
    Ok(())
}

fn http(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let addr = env.addr(HTTP_PORT);
    let secs = Duration::from_secs(plan.http_secs);
    let conns = plan.http_conns;
    let limit = secs + Duration::from_secs(60);
    let (rps, p99_us) = if plan.wrk {
        let url = format!("http://{}:{}/", addr.ip(), addr.port());
        let args = crate::wrk::args(&url, 2, conns, secs);
        let out = env.client(limit, move || {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            tunstack_tests::netns::exec_here(&argv, limit)
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let r = crate::wrk::parse(&text).ok_or_else(|| {
            io::Error::other(format!(
                "cannot read wrk's output: {} {}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        if r.errors * 100 > r.requests.max(1) {
            return Err(io::Error::other(format!("wrk: {} errors in {} requests", r.errors, r.requests)));
        }
        (r.requests_per_sec, r.p99_us)
    } else {
        let (n, elapsed, lat) = env.client(limit, move || client::http_load(addr, conns, secs))?;
        (n as f64 / elapsed, percentile(&sorted(lat), 99.0))
    };
    report.set(key::HTTP_RPS, env.system, Cell::Val(rps));
    report.set(key::HTTP_P99, env.system, p99_us.map_or(Cell::Na("no data"), |us| Cell::Val(us / 1000.0)));
    Ok(())
}

/// One active upload while idle connections exist: (Gbit/s, server CPU µs per packet
/// on the client's device).
fn active_flow(env: &mut Env, plan: &Plan) -> io::Result<(f64, f64)> {
    let addr = env.addr(SINK_PORT);
    let dev = env.client_dev;
    let size = plan.scale_size;
    let deadline = Instant::now() + plan.run_timeout;
    let c0 = env.measured().cpu_secs()?;
    let (secs, pkts) = env.client(client_limit(plan), move || {
        let d0 = client::dev_counters(dev)?;
        let secs = client::upload(addr, size, deadline)?;
        let d1 = client::dev_counters(dev)?;
        Ok((secs, d1.packets_since(&d0)))
    })?;
    let c1 = env.measured().cpu_secs()?;
    Ok((gbit_per_s(size, secs), (c1 - c0) * 1e6 / pkts.max(1) as f64))
}

fn scale(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let sys = env.system;
    let hold = env.addr(HOLD_PORT);
    let wait = plan.run_timeout;
    let deadline = Instant::now() + plan.run_timeout;
    let mut idle = env.client(client_limit(plan), move || client::open_idle(hold, FEW_IDLE, deadline))?;
    env.holder().wait_held(FEW_IDLE, wait)?;
    let (thr, cpp) = active_flow(env, plan)?;
    report.set(&key::scale_thr(FEW_IDLE), sys, Cell::Val(thr));
    let kernel_cpu = sys == System::Linux;
    report.set(&key::scale_cpp(FEW_IDLE), sys, if kernel_cpu { Cell::Na("kernel") } else { Cell::Val(cpp) });
    let rss0 = env.holder().rss()?;
    let more = plan.idle - FEW_IDLE;
    let deadline = Instant::now() + plan.run_timeout;
    idle.extend(env.client(client_limit(plan), move || client::open_idle(hold, more, deadline))?);
    env.holder().wait_held(plan.idle, wait)?;
    let rss1 = env.holder().rss()?;
    let mem = if sys == System::Linux {
        Cell::Na("kernel memory")
    } else {
        Cell::Val(rss1.saturating_sub(rss0) as f64 / more as f64)
    };
    report.set(key::SCALE_MEM, sys, mem);
    let (thr, cpp) = active_flow(env, plan)?;
    report.set(&key::scale_thr(plan.idle), sys, Cell::Val(thr));
    report.set(&key::scale_cpp(plan.idle), sys, if kernel_cpu { Cell::Na("kernel") } else { Cell::Val(cpp) });
    drop(idle);
    env.holder().release()?;
    Ok(())
}

/// The whole markdown document: machine, settings, table, targets, what is measured.
pub fn document(plan: &Plan, report: &Report) -> String {
    let m = crate::sys::machine();
    let mut d = String::new();
    let _ = writeln!(d, "# tunstack benchmarks (latest run)\n");
    let _ = writeln!(
        d,
        "- machine: {} × {}, Linux {}, {:.1} GiB RAM, load average at start {}",
        m.nproc, m.cpu, m.kernel, m.mem_gib, m.load
    );
    if let Some(rev) = git_revision() {
        let _ = writeln!(d, "- tunstack revision: {rev}");
    }
    let _ = writeln!(d, "- command: `cargo run --release -p bench -- {}`", plan.command);
    let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap_or_default();
    let _ = writeln!(d, "- kernel TCP congestion control (client, Linux server): {}", cc.trim());
    let buffer = plan.buffer.unwrap_or(tunstack::Config::default().tcp_rx_buffer);
    let _ = writeln!(
        d,
        "- settings: bulk {} per transfer, median of {} iteration(s), MTUs {}; ping-pong {} round trips; \
         {} connections from {} client threads; HTTP {} s with {} connections ({}); {} idle connections, \
         active flow {}; tunstack and smoltcp buffers {} per direction and connection",
        fmt_size(plan.size),
        plan.iterations,
        plan.mtus.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "),
        plan.round_trips,
        plan.connections,
        plan.conn_threads,
        plan.http_secs,
        plan.http_conns,
        if plan.wrk { "wrk -t2" } else { "harness load generator: wrk not installed or --no-wrk" },
        plan.idle,
        fmt_size(plan.scale_size),
        fmt_size(buffer as u64),
    );
    let _ = writeln!(d, "\n{}", report.markdown_table(&plan.systems));
    let _ = writeln!(d, "↓: lower is better. Ratios: how many times better tunstack is (>1: tunstack is better); vs ceiling: tunstack's share of the ceiling's performance.\n");
    if !report.notes.is_empty() {
        let _ = writeln!(d, "Losses during the bulk runs (they explain much of the run-to-run variation):\n");
        for n in &report.notes {
            let _ = writeln!(d, "- {n}");
        }
        d.push('\n');
    }
    let _ = writeln!(d, "## Targets of the benchmark issue\n\n{}", report.targets(&plan.mtus, plan.idle));
    d.push_str(EXPLANATION);
    d
}

const EXPLANATION: &str = "
## What is measured

- **Client**: always Linux's TCP (`std::net`, or wrk for HTTP) in the client namespace,
  with the host's default congestion control (named in the settings above).
- **tunstack**: `bench serve tunstack` (tunstack::runtime::Runtime + tunstack::net, blocking
  threads; HTTP is `demo http`'s server) on a TUN device in the client's namespace.
- **smoltcp**: smoltcp 0.14, CUBIC, `phy::TunTapInterface` (Medium::Ip), one poll-loop thread,
  on a TUN device set up the same way; HTTP answers a fixed response of the same length.
- **Linux (veth)**: the same services on Linux's own TCP in a second namespace across a
  veth pair (with the kernel's GSO/GRO: the kernel-class ceiling).
- **raw TUN ceiling**: no stack. A reflector swaps source and destination address of every
  IPv4 packet it reads from the TUN device and writes it back, so the kernel's client
  talks to a kernel listener in the same namespace *through the device*: every packet
  (data and ACKs) is read and written once by user space, and both TCP ends are the
  kernel's. It bounds what moving packets through a TUN device costs; it is not a strict
  upper bound for a stack (a stack does one device syscall per packet, the reflector two,
  but the stack pays for its own TCP). Its CPU column is the reflector's.
- **Server CPU**: getrusage of the server process (all threads) before and after, per GB
  moved or per packet seen on the device. A write to a TUN device runs the kernel's
  receive path for that packet inside the writing thread, so a TUN server's CPU time
  also holds the kernel client's work on what the server sends (for an ACK that opens
  the window: the client's next segments, their GSO segmentation and checksums). For
  Linux it is only the server process's own time (softirq work is not all charged to it).
- **Memory per idle connection**: RSS growth of the server process from 10 to N held
  connections, divided by N-10 (for Linux the sockets live in kernel memory: n/a).
- Connection rate: connect, send 32 bytes, read 64 bytes, close (the client closes first).
";

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "log", "-1", "--format=%h %s"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The chart's panels.
fn panels(plan: &Plan) -> Vec<Panel> {
    let mut v = Vec::new();
    let bulk: Vec<(String, String)> = plan
        .mtus
        .iter()
        .flat_map(|&m| [(format!("c→s {m}"), key::bulk(true, m)), (format!("s→c {m}"), key::bulk(false, m))])
        .collect();
    v.push(Panel { title: "Bulk throughput (Gbit/s, higher is better)".into(), groups: bulk });
    let cpu: Vec<(String, String)> = plan
        .mtus
        .iter()
        .flat_map(|&m| [(format!("c→s {m}"), key::cpu(true, m)), (format!("s→c {m}"), key::cpu(false, m))])
        .collect();
    v.push(Panel { title: "Server CPU per GB (s, lower is better)".into(), groups: cpu });
    v.push(Panel {
        title: "Ping-pong latency (µs, lower is better)".into(),
        groups: LAT_SIZES
            .iter()
            .flat_map(|&l| {
                let n = if l == 1 { "1 B".to_string() } else { fmt_size(l as u64) };
                [(format!("{n} p50"), key::lat(l, 50)), (format!("{n} p99"), key::lat(l, 99))]
            })
            .collect(),
    });
    v.push(Panel {
        title: "Connections and HTTP (per second)".into(),
        groups: vec![("conn/s".into(), key::CONNRATE.into()), ("HTTP req/s".into(), key::HTTP_RPS.into())],
    });
    v.push(Panel {
        title: "One flow beside idle connections (Gbit/s)".into(),
        groups: [FEW_IDLE, plan.idle].iter().map(|&n| (format!("{n} idle"), key::scale_thr(n))).collect(),
    });
    v.push(Panel {
        title: "Server CPU per packet (µs, lower is better)".into(),
        groups: [FEW_IDLE, plan.idle].iter().map(|&n| (format!("{n} idle"), key::scale_cpp(n))).collect(),
    });
    v
}

pub fn write_outputs(plan: &Plan, report: &Report, doc: &str) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(&plan.out_dir)?;
    let md = plan.out_dir.join("bench-latest.md");
    let mut text = doc.to_string();
    let _ = writeln!(text, "\n![chart](bench-latest.svg)");
    std::fs::write(&md, text)?;
    let mem = report
        .value(key::SCALE_MEM, System::Tunstack)
        .map(|m| format!("; tunstack: {} B per idle connection", fmt_num(m)));
    let caption = format!("{}{}", if plan.quick { "--quick run" } else { "full run" }, mem.unwrap_or_default());
    let chart = svg::chart(report, &panels(plan), &plan.systems, &caption);
    let svg_path = plan.out_dir.join("bench-latest.svg");
    std::fs::write(&svg_path, chart)?;
    Ok(vec![md.display().to_string(), svg_path.display().to_string()])
}
