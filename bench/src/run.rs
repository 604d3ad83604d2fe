//! The run: every selected system at every MTU, its workloads, into a [`Report`]; then
//! the document (markdown) and the chart.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client;
use crate::env::{Env, System, TunstackOpts};
use crate::proto::*;
use crate::report::{key, Cell, Report};
use crate::stats::{fmt_num, fmt_size, gbit_per_s, median, percentile, sorted};
use crate::svg::{self, Panel};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Workload {
    Bulk,
    Latency,
    Connrate,
    /// HTTP keep-alive and `Connection: close`.
    Http,
    /// 10k concurrent keep-alive HTTP connections (`--http-many`).
    #[value(name = "http10k")]
    Http10k,
    Scale,
}

impl Workload {
    /// Whether the workload reports the server's RSS growth (it then runs on a fresh
    /// server).
    fn measures_memory(self) -> bool {
        matches!(self, Workload::Http10k | Workload::Scale)
    }

    pub const ALL: [Workload; 6] =
        [Workload::Bulk, Workload::Latency, Workload::Connrate, Workload::Http, Workload::Http10k, Workload::Scale];
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
    pub http_many: usize,
    pub http_many_secs: u64,
    /// `txqueuelen` of every TUN device: the packets the kernel may queue towards the
    /// server (the kernel's default for TUN is 500). A user-space stack has no socket
    /// buffers in the kernel: this queue is all the room its link has. With 10k
    /// connections opened at once, each sending the handshake's last ACK, a request and
    /// ACKs while the server is still busy with the SYNs, 500 overflow at once (and so
    /// did 20k and 40k in trials) and every drop costs a client a retransmission
    /// timeout; so the harness gives it ten packets per connection of the 10k workload,
    /// on every TUN setup (tunstack, smoltcp, ceiling) and for every workload.
    pub txqueuelen: usize,
    pub idle: usize,
    pub scale_size: u64,
    pub mtus: Vec<usize>,
    pub systems: Vec<System>,
    pub workloads: Vec<Workload>,
    pub buffer: Option<usize>,
    /// tunstack servers open their TUN device with TSO/checksum offload.
    pub offload: bool,
    /// Queues (shards) of the tunstack servers' TUN device.
    pub queues: usize,
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
    use System::*;
    use Workload::*;
    match (s, w) {
        (Ceiling, Connrate | Http | Http10k | Scale) => Err("throughput/latency only"),
        (LinuxHyper | Nginx, Bulk | Latency | Connrate | Scale) => Err("HTTP only"),
        (TunstackBlocking | Smoltcp | Linux, Http10k) => Err("not run"),
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
        r.add_row(key::HTTP_CPU, "HTTP keep-alive: server CPU per request (µs)", false, false);
        r.add_row(key::HTTP_CLOSE_RPS, "HTTP Connection: close (req/s)", true, false);
        r.add_row(key::HTTP_CLOSE_P99, "HTTP Connection: close p99 (ms)", false, false);
        r.add_row(key::HTTP_CLOSE_CPU, "HTTP Connection: close: server CPU per request (µs)", false, false);
    }
    if has(Workload::Http10k) {
        let n = plan.http_many;
        r.add_row(key::MANY_RPS, &format!("HTTP {n} keep-alive conns (req/s)"), true, false);
        r.add_row(key::MANY_P99, &format!("HTTP {n} conns p99 (ms)"), false, false);
        r.add_row(key::MANY_CONNS, &format!("HTTP {n} conns: open at once (peak)"), true, false);
        r.add_row(key::MANY_MEM, &format!("HTTP {n} conns: server memory per conn (bytes)"), false, false);
        r.add_row(key::MANY_ERRORS, &format!("HTTP {n} conns: failed requests"), false, false);
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
        Workload::Http => {
            [key::HTTP_RPS, key::HTTP_P99, key::HTTP_CPU, key::HTTP_CLOSE_RPS, key::HTTP_CLOSE_P99, key::HTTP_CLOSE_CPU]
                .map(String::from)
                .into()
        }
        Workload::Http10k => {
            [key::MANY_RPS, key::MANY_P99, key::MANY_CONNS, key::MANY_MEM, key::MANY_ERRORS].map(String::from).into()
        }
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
            if sys == System::Nginx && !crate::env::nginx_available() {
                for w in todo {
                    for k in rows_of(plan, w, mtu) {
                        report.set(&k, sys, Cell::Na("nginx not installed"));
                    }
                }
                continue;
            }
            let mut env: Option<Env> = None;
            for (i, w) in todo.into_iter().enumerate() {
                // The workloads that measure the server's memory growth get a server of
                // their own: one that served 10k connections before keeps its grown
                // tables and allocator pools, and its RSS would not grow again.
                if env.is_none() || (i > 0 && w.measures_memory()) {
                    if let Some(e) = env.as_mut() {
                        note_shards(e, plan, &mut report);
                    }
                    drop(env.take());
                    p.say(&format!("{} at MTU {mtu}: setting up", sys.label()));
                    let tun = TunstackOpts { offload: plan.offload, queues: plan.queues, workers: None };
                    match Env::start(sys, mtu, plan.buffer, plan.txqueuelen, tun) {
                        Ok(e) => env = Some(e),
                        Err(e) => {
                            p.say(&format!("{} at MTU {mtu}: setup failed: {e}", sys.label()));
                            for k in rows_of(plan, w, mtu) {
                                report.set(&k, sys, Cell::Err(format!("setup: {e}")));
                            }
                            continue;
                        }
                    }
                }
                let Some(env) = env.as_mut() else { continue };
                p.say(&format!("{} at MTU {mtu}: {w:?}", sys.label()));
                let result = match w {
                    Workload::Bulk => bulk(env, plan, &mut report),
                    Workload::Latency => latency(env, plan, &mut report),
                    Workload::Connrate => connrate(env, plan, &mut report),
                    Workload::Http => http(env, plan, &mut report),
                    Workload::Http10k => http_many(env, plan, &mut report),
                    Workload::Scale => scale(env, plan, &mut report),
                };
                if let Err(e) = result {
                    p.say(&format!("{} at MTU {mtu}: {w:?} failed: {e}", sys.label()));
                    for k in rows_of(plan, w, mtu) {
                        if report.cell(&k, sys).is_none() {
                            report.set(&k, sys, Cell::Err(e.to_string()));
                        }
                    }
                }
            }
            if let Some(e) = env.as_mut() {
                note_shards(e, plan, &mut report);
            }
            drop(env);
        }
    }
    p.say("done");
    report
}

/// With several queues: a note on what a tunstack server's shards did (whether the
/// kernel took the steering program, packets handed between shards).
fn note_shards(env: &mut Env, plan: &Plan, report: &mut Report) {
    if plan.queues == 1 || !matches!(env.system, System::TunstackAsync | System::TunstackBlocking) {
        return;
    }
    let text = match env.measured().and_then(|s| s.shards()) {
        Ok(Some(i)) => format!(
            "{} shard(s), steering program {}, {} packets handed between shards ({} hand-offs dropped)",
            i.shards,
            if i.steering { "on" } else { "off (the kernel refused it)" },
            i.handoffs_out,
            i.handoff_drops
        ),
        Ok(None) => "the server did not report its shards".into(),
        Err(e) => format!("reading its shards: {e}"),
    };
    report.notes.push(format!("{} at MTU {} (`--queues {}`): {text}", env.system.label(), env.mtu, plan.queues));
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
            let c0 = env.measured()?.cpu_secs()?;
            let r0 = env.tcp_server()?.retransmits()?;
            let r = env.client(client_limit(plan), move || {
                let l0 = client::Link::now(dev)?;
                let secs =
                    if up { client::upload(addr, size, deadline)? } else { client::download(addr, size, deadline)? };
                Ok((secs, client::Link::now(dev)?.losses_since(&l0)))
            });
            let c1 = env.measured()?.cpu_secs()?;
            let r1 = env.tcp_server()?.retransmits()?;
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
    let (mut drops, mut rtx) = (0, 0);
    for _ in 0..plan.iterations {
        let addr = env.addr(RR_PORT);
        let (n, t) = (plan.connections, plan.conn_threads);
        let deadline = Instant::now() + plan.run_timeout;
        let dev = env.client_dev;
        let (done, secs, (d, r)) = env.client(client_limit(plan), move || {
            let l0 = client::Link::now(dev)?;
            let (done, secs) = client::connection_rate(addr, n, t, deadline)?;
            Ok((done, secs, client::Link::now(dev)?.losses_since(&l0)))
        })?;
        rates.push(done as f64 / secs);
        drops += d;
        rtx += r;
    }
    if drops + rtx > 0 {
        // One retransmission timeout (200 ms for data, 1 s for a SYN) is a large part
        // of a short run.
        report.notes.push(format!(
            "{}, connection rate: {drops} packets dropped by the device, {rtx} segments retransmitted by the client's \
             kernel ({} run(s))",
            env.system.label(),
            plan.iterations
        ));
    }
    report.set(key::CONNRATE, env.system, median(&rates).map_or(Cell::Na("no data"), Cell::Val));
    Ok(())
}

/// What one HTTP load run gave.
pub(crate) struct HttpResult {
    pub rps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Requests completed.
    pub requests: u64,
    pub errors: u64,
}

impl From<crate::wrk::WrkResult> for HttpResult {
    fn from(r: crate::wrk::WrkResult) -> HttpResult {
        HttpResult {
            rps: r.requests_per_sec,
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            requests: r.requests,
            errors: r.errors,
        }
    }
}

/// [`http_load`] with the HTTP server's CPU time read before and after: the result
/// and the server's CPU µs per completed request. Fails when more than 1% of the
/// requests failed.
pub(crate) fn http_load_cpu(
    env: &mut Env,
    wrk: bool,
    port: u16,
    conns: usize,
    secs: Duration,
    close: bool,
) -> io::Result<(HttpResult, f64)> {
    let c0 = env.http_cpu_secs()?;
    let r = http_load(env, wrk, port, conns, secs, close)?;
    let c1 = env.http_cpu_secs()?;
    if r.errors * 100 > r.requests.max(1) {
        return Err(io::Error::other(format!("wrk: {} errors in {} requests", r.errors, r.requests)));
    }
    let cpu_us = (c1 - c0) * 1e6 / r.requests.max(1) as f64;
    Ok((r, cpu_us))
}

/// HTTP load on `port` from the client's namespace: wrk (`wrk`), or the harness's own
/// load generator (a thread per connection).
fn http_load(env: &Env, wrk: bool, port: u16, conns: usize, secs: Duration, close: bool) -> io::Result<HttpResult> {
    let addr = env.addr(port);
    let limit = secs + Duration::from_secs(60);
    if wrk {
        let url = format!("http://{}:{}/", addr.ip(), addr.port());
        let args = crate::wrk::args(&url, 2, conns, secs, Duration::from_secs(5), close);
        let out = env.client(limit, move || {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            tunstack_tests::netns::exec_here(&argv, limit)
        })?;
        Ok(HttpResult::from(parse_wrk(&out)?))
    } else {
        let (n, elapsed, lat) = env.client(limit, move || client::http_load(addr, conns, secs, close))?;
        let lat = sorted(lat);
        Ok(HttpResult {
            rps: n as f64 / elapsed,
            p50_us: percentile(&lat, 50.0),
            p99_us: percentile(&lat, 99.0),
            requests: n,
            errors: 0,
        })
    }
}

fn parse_wrk(out: &std::process::Output) -> io::Result<crate::wrk::WrkResult> {
    let text = String::from_utf8_lossy(&out.stdout);
    crate::wrk::parse(&text).ok_or_else(|| {
        io::Error::other(format!(
            "cannot read wrk's output: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

/// HTTP with `--http-conns` connections: keep-alive, then a new connection per request
/// (`Connection: close`).
fn http(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let secs = Duration::from_secs(plan.http_secs);
    let mut first_err = None;
    for (close, rps_key, p99_key, cpu_key) in [
        (false, key::HTTP_RPS, key::HTTP_P99, key::HTTP_CPU),
        (true, key::HTTP_CLOSE_RPS, key::HTTP_CLOSE_P99, key::HTTP_CLOSE_CPU),
    ] {
        match http_load_cpu(env, plan.wrk, HTTP_PORT, plan.http_conns, secs, close) {
            Ok((r, cpu_us)) => {
                report.set(rps_key, env.system, Cell::Val(r.rps));
                report.set(p99_key, env.system, r.p99_us.map_or(Cell::Na("no data"), |us| Cell::Val(us / 1000.0)));
                report.set(cpu_key, env.system, Cell::Val(cpu_us));
            }
            Err(e) => {
                for k in [rps_key, p99_key, cpu_key] {
                    report.set(k, env.system, Cell::Err(e.to_string()));
                }
                first_err = first_err.or(Some(e));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// `--http-many` keep-alive connections at once on the HTTP-many port, each making
/// requests for `--http-many-secs`; meanwhile the client's established connections to
/// the port and the server's RSS are sampled (their peaks give the memory per
/// connection: RSS growth over the idle server, divided by the connections open).
fn http_many(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let sys = env.system;
    let addr = env.addr(HTTP_MANY_PORT);
    let (n, secs) = (plan.http_many, Duration::from_secs(plan.http_many_secs));
    let pids = env.http_pids();
    let rss = move || -> io::Result<u64> { pids.iter().map(|&p| crate::sys::rss_of(p)).sum() };
    let rss0 = rss()?;
    let limit = secs + Duration::from_secs(60);
    let use_wrk = plan.wrk;
    let dev = env.client_dev;
    let (r, peak_conns, peak_rss, (drops, rtx)) = env.client(limit + Duration::from_secs(15), move || {
        let l0 = client::Link::now(dev)?;
        let load = std::thread::spawn(move || -> io::Result<HttpResult> {
            if use_wrk {
                let url = format!("http://{}:{}/", addr.ip(), addr.port());
                let args = crate::wrk::args(&url, 2, n, secs, Duration::from_secs(10), false);
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                Ok(HttpResult::from(parse_wrk(&tunstack_tests::netns::exec_here(&argv, limit)?)?))
            } else {
                let (done, elapsed, lat, failed) = client::http_load_many(addr, n, secs)?;
                let lat = sorted(lat);
                Ok(HttpResult {
                    rps: done as f64 / elapsed,
                    p50_us: percentile(&lat, 50.0),
                    p99_us: percentile(&lat, 99.0),
                    requests: done,
                    errors: failed,
                })
            }
        });
        let (mut conns, mut mem) = (0, 0);
        let sample_until = Instant::now() + limit;
        while !load.is_finished() && Instant::now() < sample_until {
            if let Ok(text) = std::fs::read_to_string("/proc/thread-self/net/tcp") {
                conns = conns.max(crate::stats::count_established_to(&text, HTTP_MANY_PORT));
            }
            mem = mem.max(rss().unwrap_or(0));
            std::thread::sleep(Duration::from_millis(250));
        }
        let r = load.join().map_err(|_| io::Error::other("load thread panicked"))??;
        Ok((r, conns, mem, client::Link::now(dev)?.losses_since(&l0)))
    })?;
    report.set(key::MANY_RPS, sys, Cell::Val(r.rps));
    report.set(key::MANY_P99, sys, r.p99_us.map_or(Cell::Na("no data"), |us| Cell::Val(us / 1000.0)));
    report.set(key::MANY_CONNS, sys, Cell::Val(peak_conns as f64));
    report.set(key::MANY_ERRORS, sys, Cell::Val(r.errors as f64));
    let mem = if peak_conns == 0 {
        Cell::Na("no connection")
    } else {
        Cell::Val(peak_rss.saturating_sub(rss0) as f64 / peak_conns as f64)
    };
    report.set(key::MANY_MEM, sys, mem);
    if r.errors + drops + rtx > 0 {
        report.notes.push(format!(
            "{}, HTTP {n} connections: {} failed requests (socket errors and timeouts) of {}; {drops} packets \
             dropped by the client's device, {rtx} segments retransmitted by the client's kernel",
            sys.label(),
            r.errors,
            r.requests
        ));
    }
    Ok(())
}

/// One active upload while idle connections exist: (Gbit/s, server CPU µs per packet
/// on the client's device).
fn active_flow(env: &mut Env, plan: &Plan) -> io::Result<(f64, f64)> {
    let addr = env.addr(SINK_PORT);
    let dev = env.client_dev;
    let size = plan.scale_size;
    let deadline = Instant::now() + plan.run_timeout;
    let c0 = env.measured()?.cpu_secs()?;
    let (secs, pkts) = env.client(client_limit(plan), move || {
        let d0 = client::dev_counters(dev)?;
        let secs = client::upload(addr, size, deadline)?;
        let d1 = client::dev_counters(dev)?;
        Ok((secs, d1.packets_since(&d0)))
    })?;
    let c1 = env.measured()?.cpu_secs()?;
    Ok((gbit_per_s(size, secs), (c1 - c0) * 1e6 / pkts.max(1) as f64))
}

fn scale(env: &mut Env, plan: &Plan, report: &mut Report) -> io::Result<()> {
    let sys = env.system;
    let hold = env.addr(HOLD_PORT);
    let wait = plan.run_timeout;
    let deadline = Instant::now() + plan.run_timeout;
    let mut idle = env.client(client_limit(plan), move || client::open_idle(hold, FEW_IDLE, deadline))?;
    env.holder()?.wait_held(FEW_IDLE, wait)?;
    let (thr, cpp) = active_flow(env, plan)?;
    report.set(&key::scale_thr(FEW_IDLE), sys, Cell::Val(thr));
    let kernel_cpu = sys.kernel_tcp();
    report.set(&key::scale_cpp(FEW_IDLE), sys, if kernel_cpu { Cell::Na("kernel") } else { Cell::Val(cpp) });
    let rss0 = env.holder()?.rss()?;
    let more = plan.idle - FEW_IDLE;
    let deadline = Instant::now() + plan.run_timeout;
    idle.extend(env.client(client_limit(plan), move || client::open_idle(hold, more, deadline))?);
    env.holder()?.wait_held(plan.idle, wait)?;
    let rss1 = env.holder()?.rss()?;
    let mem = if sys.kernel_tcp() {
        Cell::Na("kernel memory")
    } else {
        Cell::Val(rss1.saturating_sub(rss0) as f64 / more as f64)
    };
    report.set(key::SCALE_MEM, sys, mem);
    let (thr, cpp) = active_flow(env, plan)?;
    report.set(&key::scale_thr(plan.idle), sys, Cell::Val(thr));
    report.set(&key::scale_cpp(plan.idle), sys, if kernel_cpu { Cell::Na("kernel") } else { Cell::Val(cpp) });
    drop(idle);
    env.holder()?.release()?;
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
    let args = if plan.command.is_empty() { String::new() } else { format!(" -- {}", plan.command) };
    let _ = writeln!(d, "- command: `cargo run --release -p bench{args}`");
    let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap_or_default();
    let _ = writeln!(d, "- kernel TCP congestion control (client, Linux server): {}", cc.trim());
    let buffer = plan.buffer.unwrap_or(tunstack::Config::default().tcp_rx_buffer);
    let _ = writeln!(
        d,
        "- settings: bulk {} per transfer, median of {} iteration(s), MTUs {}; ping-pong {} round trips; \
         {} connections from {} client threads; HTTP {} s keep-alive and {} s `Connection: close`, with {} \
         connections each, and {} s with {} keep-alive connections ({}); {} idle connections, \
         active flow {}; tunstack and smoltcp buffers {} per direction and connection; TUN devices' \
         txqueuelen {}",
        fmt_size(plan.size),
        plan.iterations,
        plan.mtus.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "),
        plan.round_trips,
        plan.connections,
        plan.conn_threads,
        plan.http_secs,
        plan.http_secs,
        plan.http_conns,
        plan.http_many_secs,
        plan.http_many,
        if plan.wrk { "wrk -t2" } else { "harness load generator: wrk not installed or --no-wrk" },
        plan.idle,
        fmt_size(plan.scale_size),
        fmt_size(buffer as u64),
        plan.txqueuelen,
    );
    if plan.offload {
        let _ = writeln!(d, "- tunstack: TUN device with TSO/checksum offload (`--offload`)");
    }
    if plan.queues != 1 {
        let _ = writeln!(
            d,
            "- tunstack: {} TUN queues, one shard each (`--queues {}`; the async server on a multi-thread tokio \
             runtime with {} workers, the blocking one with a driver thread per queue)",
            plan.queues, plan.queues, plan.queues
        );
    }
    let _ = writeln!(d, "\n{}", report.markdown_table(&plan.systems));
    let subject = crate::report::subject(&plan.systems);
    if let Some(t) = subject {
        let _ = writeln!(
            d,
            "↓: lower is better. Ratios: how many times better {} is (>1: it is better); vs ceiling: its share of the ceiling's performance.\n",
            t.label()
        );
    }
    if !report.notes.is_empty() {
        let _ = writeln!(d, "Notes (losses during the bulk runs explain much of the run-to-run variation):\n");
        for n in &report.notes {
            let _ = writeln!(d, "- {n}");
        }
        d.push('\n');
    }
    if plan.systems.contains(&System::TunstackAsync) {
        let _ = writeln!(
            d,
            "## Targets of the event-driven runtime issue (tunstack (async))\n\n{}",
            report.targets_async(System::TunstackAsync, &plan.mtus, plan.http_many, plan.http_many_secs)
        );
    }
    if plan.systems.contains(&System::TunstackBlocking) {
        let _ = writeln!(
            d,
            "## Targets of the benchmark issue (tunstack (blocking), as before)\n\n{}",
            report.targets(System::TunstackBlocking, &plan.mtus, plan.idle)
        );
    }
    d.push_str(EXPLANATION);
    d
}

const EXPLANATION: &str = "
## What is measured

- **Client**: always Linux's TCP (`std::net`, or wrk for HTTP) in the client namespace,
  with the host's default congestion control (named in the settings above).
- **tunstack (async)**: `bench serve tunstack-async`: `tunstack::tokio::AsyncRuntime` on a
  current-thread tokio runtime, so the device, the stack and every connection run on one
  thread; every service is a tokio task per connection (no thread per connection). HTTP
  on port 80 is `demo http`'s server (`demo::HttpServer::serve`, the hyper service); the
  10k workload uses the same hyper service (the demo's `route`, the same hyper settings)
  behind a listener with a 16k backlog (`TcpListener::bind_with_backlog`), because
  `HttpServer::serve` binds with the default backlog of 128.
- **tunstack (blocking)**: `bench serve tunstack`: tunstack::runtime::Runtime (a driver
  thread) + tunstack::net, a thread per connection; HTTP is the demo's hyper server run
  by `HttpServer::start` (a current-thread tokio runtime on a thread of its own, on top
  of the driver thread).
- **smoltcp**: smoltcp 0.14, CUBIC, `phy::TunTapInterface` (Medium::Ip), one poll-loop thread,
  on a TUN device set up the same way; HTTP answers a fixed response of the same length
  as the demo's (and honours `Connection: close`).
- **Linux (veth)**: the same services on Linux's own TCP (`std::net`, a thread per
  connection) in a second namespace across a veth pair (with the kernel's GSO/GRO: the
  kernel-class ceiling); HTTP is the fixed response, like smoltcp's.
- **Linux + hyper (veth)**: the demo's hyper service on `tokio::net` listeners, one
  current-thread tokio runtime, across the same veth setup: the like-for-like HTTP
  comparison with Linux's TCP (its home page shows zero counters, a few bytes shorter).
- **nginx (veth)**: nginx (Debian's nginx-light) with one worker process, keep-alive on
  (without a per-connection request limit), sendfile, no access log, serving a static
  file with the body of the demo's home page, across the same veth setup.
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
- **HTTP**: wrk with 2 threads against `GET /`, keep-alive, then with
  `-H 'Connection: close'` (the server answers and closes: a new connection per
  request). p99 is wrk's latency percentile. Server CPU per request: the CPU time of
  the process(es) serving HTTP during the load (getrusage as above; nginx: its master's
  and worker's from /proc, in 10 ms ticks) divided by the requests wrk completed; for
  the kernel-TCP systems the kernel's work charged to other tasks (softirqs, the
  client's side of the veth) is not in it.
- **HTTP with 10k connections**: wrk `-t2 -c N` against port 8080, every connection
  making requests for the whole run (wrk opens them all at the start). Open at once: the
  peak count of the client's ESTABLISHED connections to the port, sampled every 250 ms.
  Server memory per connection: the peak RSS of the server process(es) during the run
  minus the RSS before, divided by that peak count. For Linux + hyper and nginx this is
  user-space memory only (the kernel's socket buffers are not in the process's RSS);
  for tunstack it holds everything (the stack's buffers, the tasks, hyper's buffers).
- Connection rate: connect, send 32 bytes, read 64 bytes, close (the client closes first).
";

pub(crate) fn git_revision() -> Option<String> {
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
        groups: vec![
            ("conn/s".into(), key::CONNRATE.into()),
            ("HTTP keep-alive".into(), key::HTTP_RPS.into()),
            ("HTTP close".into(), key::HTTP_CLOSE_RPS.into()),
            (format!("HTTP {} conns", plan.http_many), key::MANY_RPS.into()),
        ],
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
    let mem = crate::report::subject(&plan.systems).and_then(|t| {
        let idle =
            report.value(key::SCALE_MEM, t).map(|m| format!("; {}: {} B per idle connection", t.label(), fmt_num(m)));
        let busy = report.value(key::MANY_MEM, t).map(|m| format!(", {} B per busy HTTP connection", fmt_num(m)));
        idle.map(|i| i + &busy.unwrap_or_default())
    });
    let caption = format!("{}{}", if plan.quick { "--quick run" } else { "full run" }, mem.unwrap_or_default());
    let chart = svg::chart(report, &panels(plan), &plan.systems, &caption);
    let svg_path = plan.out_dir.join("bench-latest.svg");
    std::fs::write(&svg_path, chart)?;
    Ok(vec![md.display().to_string(), svg_path.display().to_string()])
}
