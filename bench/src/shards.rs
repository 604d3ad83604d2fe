//! `bench shards`: tunstack's servers with 1 and N TUN queues (shards, see
//! `RuntimeConfig::queues`) side by side on HTTP keep-alive (and, with `--close`,
//! `Connection: close`): requests per second, the server's CPU time per request and
//! wrk's latency percentiles.
//!
//! Every measurement gets a fresh setup (namespace, device, server), the same as the
//! main run's `http` workload (`run::http_load_cpu`). The setups run in rounds: each
//! round runs every setup once, and each round starts one setup further down the list,
//! so on a shared, noisy machine the queue counts alternate and none always runs first
//! or last. Medians over the rounds are reported, with every run listed below them.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::env::{Env, ShardInfo, System, TunstackOpts};
use crate::proto::HTTP_PORT;
use crate::stats::{fmt_num, median};

/// `txqueuelen` of the TUN devices: the main run's with its default `--http-many`.
const TXQUEUELEN: usize = 100_000;
/// wrk's threads (`run::http_load`).
const WRK_THREADS: usize = 2;

#[derive(clap::Args, Debug)]
pub struct ShardsOpts {
    /// Queue counts of the tunstack servers to compare; the first is the base of the
    /// ratios.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    queues: Vec<usize>,
    /// Systems. The tunstack ones run at every queue count; any other (nginx,
    /// linux-hyper, linux, smoltcp) runs once per round as a reference.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [System::TunstackAsync, System::TunstackBlocking])]
    systems: Vec<System>,
    /// Rounds: every setup runs once per round; the medians are reported.
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// Seconds of each HTTP load.
    #[arg(long, default_value_t = 5)]
    http_secs: u64,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 32)]
    http_conns: usize,
    /// Also `Connection: close` (a new connection per request), after the keep-alive
    /// load on the same setup.
    #[arg(long)]
    close: bool,
    /// MTU of the TUN device (veth for the Linux references).
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Per-connection send/receive buffer of tunstack [default: Config::default()].
    #[arg(long, value_parser = crate::stats::parse_size)]
    buffer: Option<u64>,
    /// tunstack's TUN device with TSO/checksum offload.
    #[arg(long)]
    offload: bool,
    /// Use the harness's own load generator even when wrk is installed.
    #[arg(long)]
    no_wrk: bool,
    /// Also run tunstack (async) with the first queue count on a multi-thread tokio
    /// runtime with as many workers as the largest queue count (`serve --workers`):
    /// what the multi-thread runtime costs without the shards.
    #[arg(long)]
    mt_base: bool,
    /// Also write the document to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One server setup: a system, and for tunstack its queue count (and for the async
/// server, tokio workers other than the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Setup {
    system: System,
    queues: Option<usize>,
    workers: Option<usize>,
}

impl Setup {
    fn label(&self) -> String {
        let mut l = match self.queues {
            Some(1) => format!("{}, 1 queue", self.system.label()),
            Some(q) => format!("{}, {q} queues", self.system.label()),
            None => self.system.label().to_string(),
        };
        if let Some(w) = self.workers {
            let _ = write!(l, ", multi-thread runtime with {w} worker{}", if w == 1 { "" } else { "s" });
        }
        l
    }

    /// The plain setup of `system` at `queues` (default runtime).
    fn is(&self, system: System, queues: usize) -> bool {
        self.system == system && self.queues == Some(queues) && self.workers.is_none()
    }
}

fn is_tunstack(s: System) -> bool {
    matches!(s, System::TunstackAsync | System::TunstackBlocking)
}

/// One load's numbers.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rps: f64,
    cpu_us: f64,
    /// The whole machine's idle share during the load (/proc/stat), in percent.
    idle_pct: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

/// One setup's run in one round.
struct RunRecord {
    round: usize,
    setup: usize,
    load1: String,
    keep: Result<Sample, String>,
    close: Option<Result<Sample, String>>,
    /// tunstack: its shards after the loads (the counters count from the start).
    shards: Option<Result<ShardInfo, String>>,
}

pub fn run(o: ShardsOpts) -> ExitCode {
    match check(&o) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bench shards: {e}");
            return ExitCode::FAILURE;
        }
    }
    crate::sys::raise_nofile_limit();
    let wrk = !o.no_wrk && crate::wrk::available();
    let setups = setups(&o);
    let start = Instant::now();
    let load_start = load1();
    let mut runs = Vec::new();
    let total = setups.len() * o.iterations;
    for round in 0..o.iterations {
        for k in 0..setups.len() {
            let i = (k + round) % setups.len();
            let s = setups[i];
            eprintln!(
                "[{:6.1}s] round {}/{}, {} ({} of {total})",
                start.elapsed().as_secs_f64(),
                round + 1,
                o.iterations,
                s.label(),
                runs.len() + 1
            );
            let r = run_one(&o, wrk, round, i, s);
            if let Err(e) = &r.keep {
                eprintln!("[{:6.1}s]   keep-alive: {e}", start.elapsed().as_secs_f64());
            }
            runs.push(r);
        }
    }
    eprintln!("[{:6.1}s] done", start.elapsed().as_secs_f64());
    let doc = document(&o, wrk, &setups, &runs, &load_start, &load1());
    println!("{doc}");
    if let Some(path) = &o.out {
        if let Err(e) = std::fs::write(path, &doc) {
            eprintln!("bench shards: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("bench shards: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn check(o: &ShardsOpts) -> Result<(), String> {
    if o.queues.is_empty() || o.queues.iter().any(|q| !(1..=crate::MAX_QUEUES).contains(q)) {
        return Err(format!("--queues takes values from 1 to {}", crate::MAX_QUEUES));
    }
    if o.systems.contains(&System::Ceiling) {
        return Err("the raw TUN ceiling serves no HTTP".into());
    }
    if !o.systems.iter().any(|&s| is_tunstack(s)) {
        return Err("--systems names no tunstack server".into());
    }
    if !(576..=65535).contains(&o.mtu) {
        return Err("--mtu takes values from 576 to 65535".into());
    }
    if o.iterations == 0 || o.http_secs == 0 || o.http_conns == 0 {
        return Err("--iterations, --http-secs and --http-conns must be at least 1".into());
    }
    Ok(())
}

/// The setups in list order: each tunstack system at each queue count (in the order
/// given), then the references.
fn setups(o: &ShardsOpts) -> Vec<Setup> {
    let mut queues: Vec<usize> = Vec::new();
    for &q in &o.queues {
        if !queues.contains(&q) {
            queues.push(q);
        }
    }
    let mut systems = o.systems.clone();
    systems.sort();
    systems.dedup();
    let mut v = Vec::new();
    let qmax = queues.iter().copied().max().unwrap_or(1);
    for &system in systems.iter().filter(|&&s| is_tunstack(s)) {
        for &q in &queues {
            v.push(Setup { system, queues: Some(q), workers: None });
        }
        if system == System::TunstackAsync && o.mt_base {
            v.push(Setup { system, queues: Some(queues[0]), workers: Some(qmax) });
        }
    }
    for &system in systems.iter().filter(|&&s| !is_tunstack(s)) {
        v.push(Setup { system, queues: None, workers: None });
    }
    v
}

fn run_one(o: &ShardsOpts, wrk: bool, round: usize, setup: usize, s: Setup) -> RunRecord {
    let load1 = load1();
    let mut rec = RunRecord { round, setup, load1, keep: Err(String::new()), close: None, shards: None };
    let buffer = o.buffer.map(|b| b as usize);
    let tun = TunstackOpts { offload: o.offload, queues: s.queues.unwrap_or(1), workers: s.workers };
    let mut env = match Env::start(s.system, o.mtu, buffer, TXQUEUELEN, tun) {
        Ok(e) => e,
        Err(e) => {
            rec.keep = Err(format!("setup: {e}"));
            return rec;
        }
    };
    let secs = Duration::from_secs(o.http_secs);
    let load = |env: &mut Env, close: bool| -> Result<Sample, String> {
        let t0 = machine_cpu();
        let (r, cpu_us) =
            crate::run::http_load_cpu(env, wrk, HTTP_PORT, o.http_conns, secs, close).map_err(|e| e.to_string())?;
        let idle_pct = match (t0, machine_cpu()) {
            (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => Some(100.0 * (i1 - i0) as f64 / (t1 - t0) as f64),
            _ => None,
        };
        Ok(Sample { rps: r.rps, cpu_us, idle_pct, p50_us: r.p50_us, p99_us: r.p99_us })
    };
    rec.keep = load(&mut env, false);
    if o.close {
        rec.close = Some(load(&mut env, true));
    }
    if is_tunstack(s.system) {
        rec.shards = Some(match env.measured().and_then(|p| p.shards()) {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err("no answer".into()),
            Err(e) => Err(e.to_string()),
        });
    }
    rec
}

/// The whole machine's (idle, total) CPU ticks.
fn machine_cpu() -> Option<(u64, u64)> {
    crate::stats::parse_proc_stat_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The 1-minute load average.
fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Medians of one setup's successful samples of one kind.
#[derive(Default)]
struct Medians {
    n: usize,
    rps: Option<f64>,
    rps_range: Option<(f64, f64)>,
    cpu_us: Option<f64>,
    cpu_range: Option<(f64, f64)>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    idle_pct: Option<f64>,
}

fn medians<'a>(samples: impl Iterator<Item = &'a Sample>) -> Medians {
    let v: Vec<Sample> = samples.copied().collect();
    let range = |xs: &[f64]| {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!xs.is_empty()).then_some((lo, hi))
    };
    let rps: Vec<f64> = v.iter().map(|s| s.rps).collect();
    let cpu: Vec<f64> = v.iter().map(|s| s.cpu_us).collect();
    let p50: Vec<f64> = v.iter().filter_map(|s| s.p50_us).collect();
    let p99: Vec<f64> = v.iter().filter_map(|s| s.p99_us).collect();
    let idle: Vec<f64> = v.iter().filter_map(|s| s.idle_pct).collect();
    Medians {
        n: v.len(),
        rps: median(&rps),
        rps_range: range(&rps),
        cpu_us: median(&cpu),
        cpu_range: range(&cpu),
        p50_us: median(&p50),
        p99_us: median(&p99),
        idle_pct: median(&idle),
    }
}

fn of_setup(runs: &[RunRecord], setup: usize, close: bool) -> Medians {
    let samples = runs.iter().filter(|r| r.setup == setup).filter_map(|r| {
        if close {
            r.close.as_ref().and_then(|c| c.as_ref().ok())
        } else {
            r.keep.as_ref().ok()
        }
    });
    medians(samples)
}

fn num(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "-".into())
}

fn ms(us: Option<f64>) -> String {
    num(us.map(|u| u / 1000.0))
}

fn with_range(v: Option<f64>, r: Option<(f64, f64)>) -> String {
    match (v, r) {
        (Some(v), Some((lo, hi))) if lo < hi => format!("{} ({}–{})", fmt_num(v), fmt_num(lo), fmt_num(hi)),
        _ => num(v),
    }
}

fn quotient(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let q = a? / b?;
    q.is_finite().then_some(q)
}

fn x(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "-".into())
}

fn document(o: &ShardsOpts, wrk: bool, setups: &[Setup], runs: &[RunRecord], load0: &str, load_end: &str) -> String {
    let m = crate::sys::machine();
    let mut d = String::new();
    let _ = writeln!(d, "# tunstack shards: HTTP with 1 and more TUN queues\n");
    let _ = writeln!(
        d,
        "- machine: {} × {}, Linux {}, {:.1} GiB RAM; 1-minute load average {} at the start, {} at the end",
        m.nproc, m.cpu, m.kernel, m.mem_gib, load0, load_end
    );
    let qmax = o.queues.iter().copied().max().unwrap_or(1);
    let client_threads = if wrk { WRK_THREADS } else { o.http_conns };
    let free = m.nproc >= qmax + client_threads;
    let _ = writeln!(
        d,
        "- cores: {} (nproc); the client ({}) runs on the same cores as the server, so {} shards and the \
         client's {} threads {} a core each: {}",
        m.nproc,
        if wrk { "wrk" } else { "the harness's load generator" },
        qmax,
        client_threads,
        if free { "have" } else { "do not have" },
        if free { "a core is free for each shard" } else { "no core is free for the second shard" }
    );
    if let Some(rev) = crate::run::git_revision() {
        let _ = writeln!(d, "- tunstack revision: {rev}");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(d, "- command: `target/release/bench {}` (as root)", args.join(" "));
    let _ = writeln!(
        d,
        "- settings: {} round(s), each setup once per round in an order rotated by one per round; HTTP `GET /` \
         for {} s with {} connections ({}), keep-alive{}; a fresh namespace, device and server for every run; \
         MTU {}; TUN txqueuelen {}{}",
        o.iterations,
        o.http_secs,
        o.http_conns,
        if wrk { "wrk -t2" } else { "the harness's load generator" },
        if o.close { ", then `Connection: close` on the same server" } else { "" },
        o.mtu,
        TXQUEUELEN,
        if o.offload { "; tunstack's TUN device with TSO/checksum offload" } else { "" },
    );
    let _ = writeln!(
        d,
        "- servers: tunstack (async) is `bench serve tunstack-async`: one queue on a current-thread tokio \
         runtime (unless the setup names a multi-thread one), N queues on a multi-thread runtime with N workers; tunstack (blocking) is `bench serve \
         tunstack`: a driver thread per queue, HTTP (the demo's hyper server) on one current-thread tokio \
         runtime on a thread of its own whatever the queue count"
    );
    let _ = writeln!(
        d,
        "- CPU per request: user + system CPU time of the server process (getrusage; nginx: master and \
         worker from /proc) during the load, divided by the requests wrk completed\n"
    );

    let base = o.queues.first().copied().unwrap_or(1);
    for close in [false, true] {
        if close && !o.close {
            continue;
        }
        let kind = if close { "Connection: close" } else { "keep-alive" };
        let _ = writeln!(d, "## HTTP {kind}: medians\n");
        let _ = writeln!(
            d,
            "| setup | runs | req/s (min–max) | server CPU per request, µs ↓ (min–max) | p50 ms ↓ | p99 ms ↓ \
             | server cores busy | machine idle |"
        );
        let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (i, s) in setups.iter().enumerate() {
            let md = of_setup(runs, i, close);
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.label(),
                md.n,
                with_range(md.rps, md.rps_range),
                with_range(md.cpu_us, md.cpu_range),
                ms(md.p50_us),
                ms(md.p99_us),
                num(md.rps.zip(md.cpu_us).map(|(r, c)| r * c / 1e6)),
                md.idle_pct.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(
            d,
            "\nServer cores busy: median req/s × median CPU per request (the server's CPU seconds per second). \
             Machine idle: the median share of all {} cores' time that was idle (/proc/stat) during the load.\n",
            m.nproc
        );
        let ratio_qs: Vec<usize> = o.queues.iter().copied().filter(|&q| q != base).collect();
        if !ratio_qs.is_empty() {
            let _ = writeln!(
                d,
                "Ratios of the medians, N queues / {base} queue(s) (CPU and latency: below 1 is better):\n"
            );
            let _ = writeln!(d, "| system | queues | req/s | server CPU per request | p50 | p99 |");
            let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|");
            for sys in [System::TunstackAsync, System::TunstackBlocking] {
                // Against the plain base, and against the base on the multi-thread runtime.
                let bases = setups
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.system == sys && s.queues == Some(base))
                    .map(|(i, s)| (i, s.workers));
                for (b, workers) in bases {
                    let mb = of_setup(runs, b, close);
                    for &q in &ratio_qs {
                        let Some(n) = setups.iter().position(|s| s.is(sys, q)) else { continue };
                        let mn = of_setup(runs, n, close);
                        let against = match workers {
                            Some(w) => format!("{q}/{base} on {w} workers"),
                            None => format!("{q}/{base}"),
                        };
                        let _ = writeln!(
                            d,
                            "| {} | {against} | {} | {} | {} | {} |",
                            sys.label(),
                            x(quotient(mn.rps, mb.rps)),
                            x(quotient(mn.cpu_us, mb.cpu_us)),
                            x(quotient(mn.p50_us, mb.p50_us)),
                            x(quotient(mn.p99_us, mb.p99_us))
                        );
                    }
                }
            }
            let _ = writeln!(d);
        }
    }

    // The targets, for the second queue count against the base.
    if let Some(&q) = o.queues.iter().find(|&&q| q != base) {
        let _ = writeln!(d, "## Targets ({q} queues against {base}, HTTP keep-alive medians)\n");
        for sys in [System::TunstackAsync, System::TunstackBlocking] {
            let find = |qq| setups.iter().position(|s| s.is(sys, qq));
            let (Some(b), Some(n)) = (find(base), find(q)) else { continue };
            let (mb, mn) = (of_setup(runs, b, false), of_setup(runs, n, false));
            let cpu = quotient(mn.cpu_us, mb.cpu_us);
            let rps = quotient(mn.rps, mb.rps);
            let cpu_verdict = match cpu {
                Some(c) if c <= 1.0 => "met",
                Some(_) => "NOT met",
                None => "not measured",
            };
            // Whether the runs' spreads overlap: a verdict within the noise.
            let overlap = match (mb.cpu_range, mn.cpu_range) {
                (Some((a0, a1)), Some((b0, b1))) => {
                    let within = a0 <= b1 && b0 <= a1;
                    format!(
                        "; runs {}–{} vs {}–{} µs: {}",
                        fmt_num(b0),
                        fmt_num(b1),
                        fmt_num(a0),
                        fmt_num(a1),
                        if within { "the spreads overlap" } else { "the spreads do not overlap" }
                    )
                }
                _ => String::new(),
            };
            let rps_verdict = match rps {
                None => "not measured",
                Some(_) if !free => "not measurable on this machine (no core free for the second shard)",
                Some(r) if r >= 1.5 => "met",
                Some(_) => "NOT met",
            };
            let _ = writeln!(
                d,
                "- {}: CPU per request with {q} queues no worse than with {base}: {cpu_verdict} — {} µs vs {} µs \
                 ({}{overlap}); req/s with {q} queues ≥ 1.5× {base}: {rps_verdict} — {} vs {} req/s ({})",
                sys.label(),
                num(mn.cpu_us),
                num(mb.cpu_us),
                cpu.map(|r| format!("{r:.3}×")).unwrap_or_else(|| "-".into()),
                num(mn.rps),
                num(mb.rps),
                x(rps)
            );
        }
        let _ = writeln!(d);
    }

    let _ = writeln!(
        d,
        "## Every run, in the order run\n\nload avg: the 1-minute load average when the run started; it also \
         counts this benchmark's own earlier runs.\n"
    );
    let _ = write!(d, "| # | round | setup | load avg | keep-alive req/s | CPU µs/req | p50 ms | p99 ms | idle |");
    if o.close {
        let _ = write!(d, " close req/s | close CPU µs/req | close p99 ms |");
    }
    let _ = writeln!(d, " shards, steering, hand-offs |");
    let _ = write!(d, "|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    if o.close {
        let _ = write!(d, "---:|---:|---:|");
    }
    let _ = writeln!(d, "---|");
    let mut errors = Vec::new();
    let mut cell = |r: &Result<Sample, String>, f: &dyn Fn(&Sample) -> String| match r {
        Ok(s) => f(s),
        Err(e) => {
            errors.push(e.replace('\n', " "));
            format!("error [{}]", errors.len())
        }
    };
    for (k, r) in runs.iter().enumerate() {
        let s = &setups[r.setup];
        let _ = write!(d, "| {} | {} | {} | {} |", k + 1, r.round + 1, s.label(), r.load1);
        let keep = cell(&r.keep, &|s| {
            format!(
                "{} | {} | {} | {} | {}",
                fmt_num(s.rps),
                fmt_num(s.cpu_us),
                ms(s.p50_us),
                ms(s.p99_us),
                s.idle_pct.map(|p| format!("{p:.0}%")).unwrap_or_default()
            )
        });
        let keep = if r.keep.is_err() { format!("{keep} | | | | ") } else { keep };
        let _ = write!(d, " {keep} |");
        if let Some(c) = &r.close {
            let close = cell(c, &|s| format!("{} | {} | {}", fmt_num(s.rps), fmt_num(s.cpu_us), ms(s.p99_us)));
            let close = if c.is_err() { format!("{close} | | ") } else { close };
            let _ = write!(d, " {close} |");
        } else if o.close {
            let _ = write!(d, " | | |");
        }
        let shards = match &r.shards {
            None => String::new(),
            Some(Ok(i)) => format!(
                "{}, {}, {} ({} dropped)",
                i.shards,
                if i.steering { "on" } else { "off" },
                i.handoffs_out,
                i.handoff_drops
            ),
            Some(Err(e)) => format!("? ({})", e.replace('|', "/")),
        };
        let _ = writeln!(d, " {shards} |");
    }
    if !errors.is_empty() {
        let _ = writeln!(d);
        for (i, e) in errors.iter().enumerate() {
            let _ = writeln!(d, "[{}] {}", i + 1, e.replace('|', "/"));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(queues: Vec<usize>, systems: Vec<System>) -> ShardsOpts {
        ShardsOpts {
            queues,
            systems,
            iterations: 3,
            http_secs: 5,
            http_conns: 32,
            close: false,
            mtu: 1500,
            buffer: None,
            offload: false,
            no_wrk: false,
            mt_base: false,
            out: None,
        }
    }

    #[test]
    fn setups_are_tunstack_per_queue_count_then_references() {
        let mut o = opts(vec![1, 2], vec![System::Nginx, System::TunstackBlocking, System::TunstackAsync]);
        o.mt_base = true;
        let v: Vec<String> = setups(&o).iter().map(Setup::label).collect();
        assert_eq!(
            v,
            [
                "tunstack (async), 1 queue",
                "tunstack (async), 2 queues",
                "tunstack (async), 1 queue, multi-thread runtime with 2 workers",
                "tunstack (blocking), 1 queue",
                "tunstack (blocking), 2 queues",
                "nginx (veth)"
            ]
        );
        assert!(check(&o).is_ok());
        assert!(check(&opts(vec![1, 2], vec![System::Nginx])).is_err());
        assert!(check(&opts(vec![0], vec![System::TunstackAsync])).is_err());
    }

    #[test]
    fn medians_and_ranges() {
        let s = |rps, cpu| Sample { rps, cpu_us: cpu, idle_pct: None, p50_us: Some(100.0), p99_us: None };
        let v = [s(10.0, 3.0), s(30.0, 1.0), s(20.0, 2.0)];
        let m = medians(v.iter());
        assert_eq!((m.n, m.rps, m.cpu_us, m.p50_us, m.p99_us), (3, Some(20.0), Some(2.0), Some(100.0), None));
        assert_eq!((m.rps_range, m.cpu_range), (Some((10.0, 30.0)), Some((1.0, 3.0))));
        assert_eq!(with_range(m.rps, m.rps_range), "20.0 (10.0–30.0)");
        assert_eq!(medians([].iter()).rps, None);
        assert_eq!(quotient(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(quotient(Some(3.0), Some(0.0)), None);
    }
}
