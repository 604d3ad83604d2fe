//! `bench paths`: bulk transfers over delay and loss per congestion control, and the
//! slow reader, for tunstack, Linux and smoltcp through the same link model.
//!
//! | system | setup | sender |
//! | --- | --- | --- |
//! | tunstack | `bench serve tunstack --impair ...`: the runtime impairs its own TUN link (`RuntimeConfig::impair`) | tunstack, `--congestion` for every connection |
//! | Linux | `bench serve reflector --impair ...` ([`reflect`]: the runtime's `Impairer`s on a reflected TUN link) and `bench serve linux --addr 0.0.0.0 --congestion ...` | Linux, TCP_CONGESTION set on the listener |
//! | smoltcp | `bench serve smoltcp --impair ...` ([`smol`]: the runtime's `Impairer`s around its TUN device) | smoltcp 0.14, CUBIC, 256 KiB buffers |
//!
//! The client is the kernel's TCP in the same namespace in every case: it downloads from
//! the source service (the system under test sends) and hashes what arrives, or plays
//! the slow reader against the echo service. Each case runs in a namespace of its own,
//! set up and removed around it; every transfer is bounded by `--run-timeout` (a
//! transfer cut short reports the rate of what arrived, marked).
//!
//! The table goes to stdout and `docs/bench-paths.md`.

pub mod client;
pub mod reflect;
pub mod smol;
pub mod sock;

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tunstack::link::Impairment;
use tunstack::CongestionAlgorithm;

use crate::env::{tun_device, Ns, ServerProc};
use crate::proto::*;
use client::{Download, Slow, SlowSpec};

/// Options of `bench serve` for the path benchmark: the link impairment (tunstack's
/// runtime and the impaired reflector apply it) and the congestion control.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PathArgs {
    /// Impair the link (with the four options below).
    #[arg(long)]
    pub impair: bool,
    /// Loss, percent, each way.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Reordering, percent, each way.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Delay each way, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Seed of the impairment's decisions.
    #[arg(long, default_value_t = 1)]
    pub impair_seed: u64,
    /// Congestion control of the server's connections (tunstack: newreno, cubic, bbr;
    /// Linux: any of tcp_available_congestion_control).
    #[arg(long)]
    pub congestion: Option<String>,
    /// tunstack: write a pcap of the stack's side of the link.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
}

impl PathArgs {
    /// The runtime's impairment these options describe, if `--impair`.
    pub fn impairment(&self) -> Option<Impairment> {
        self.impair.then(|| {
            Impairment::default().with(|c| {
                c.loss = self.loss / 100.0;
                c.reorder = self.reorder / 100.0;
                c.delay = Duration::from_millis(self.delay_ms);
                c.seed = self.impair_seed;
            })
        })
    }

    /// tunstack's algorithm, if one was named.
    pub fn tunstack_congestion(&self) -> io::Result<Option<CongestionAlgorithm>> {
        self.congestion
            .as_deref()
            .map(|c| c.parse().map_err(|e: String| io::Error::new(io::ErrorKind::InvalidInput, e)))
            .transpose()
    }

    /// Set the named algorithm on a kernel listener (its connections inherit it), and
    /// check that it took.
    pub fn apply_linux(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        let Some(cc) = &self.congestion else { return Ok(()) };
        sock::set_congestion(fd, cc)?;
        let now = sock::congestion_of(fd)?;
        if now != *cc {
            return Err(io::Error::other(format!("TCP_CONGESTION {cc} set, the socket reports {now}")));
        }
        Ok(())
    }
}

/// Options of `bench paths`.
#[derive(clap::Args, Debug)]
pub struct PathsOpts {
    /// Smaller transfers, shorter limits, 5 slow-reader runs.
    #[arg(long)]
    quick: bool,
    /// Systems to run (the slow reader runs for tunstack and Linux).
    #[arg(long, value_delimiter = ',', default_values = ["tunstack", "linux", "smoltcp"])]
    systems: Vec<PathSystem>,
    /// Bytes per transfer without loss [default: 64M; quick: 16M].
    #[arg(long, value_parser = crate::stats::parse_size)]
    size: Option<u64>,
    /// Bytes per transfer at 1% loss [default: 32M; quick: 8M] and at 5% [default: 16M;
    /// quick: 4M] (a loss-based sender needs minutes for 64 MiB there).
    #[arg(long, value_parser = crate::stats::parse_size)]
    lossy_size: Option<u64>,
    /// Time limit of one transfer, seconds [default: 60; quick: 20].
    #[arg(long)]
    run_timeout: Option<u64>,
    /// Slow-reader runs per system [default: 50; quick: 5]; 0 skips them.
    #[arg(long)]
    slow_runs: Option<usize>,
    /// Skip the bulk transfers.
    #[arg(long)]
    no_bulk: bool,
    /// Only the conditions whose label contains this (e.g. "10 ms"); repeat for several
    /// (e.g. `--only "RTT 10 ms, loss 0%" --only "reorder"`).
    #[arg(long)]
    only: Vec<String>,
    /// Only these senders (e.g. "tunstack bbr,Linux bbr").
    #[arg(long, value_delimiter = ',')]
    senders: Vec<String>,
    /// Where bench-paths.md goes.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"))]
    out_dir: PathBuf,
    /// Print only; write nothing.
    #[arg(long)]
    no_write: bool,
    /// tunstack: capture the stack's side of the link of every case into this file
    /// (the last case's capture remains).
    #[arg(long)]
    pcap: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum PathSystem {
    Tunstack,
    Linux,
    Smoltcp,
}

/// One sender: a system and its congestion control.
#[derive(Clone, Debug)]
struct Sender {
    system: PathSystem,
    cc: &'static str,
}

impl Sender {
    fn label(&self) -> String {
        match self.system {
            PathSystem::Tunstack => format!("tunstack {}", self.cc),
            PathSystem::Linux => format!("Linux {}", self.cc),
            PathSystem::Smoltcp => format!("smoltcp {}", self.cc),
        }
    }
}

/// One path: RTT, loss and reordering (each way), like `demo echo --delay RTT/2 --loss
/// L --reorder R`.
#[derive(Clone, Copy, Debug)]
struct Cond {
    rtt_ms: u64,
    loss: f64,
    reorder: f64,
}

impl Cond {
    fn label(&self) -> String {
        let mut s = format!("RTT {} ms, loss {}%", self.rtt_ms, self.loss);
        if self.reorder > 0.0 {
            let _ = write!(s, ", reorder {}%", self.reorder);
        }
        s
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--impair".into(),
            "--loss".into(),
            self.loss.to_string(),
            "--reorder".into(),
            self.reorder.to_string(),
            "--delay-ms".into(),
            (self.rtt_ms / 2).to_string(),
            "--impair-seed".into(),
            "1".into(),
        ]
    }
}

const CONDITIONS: [Cond; 7] = [
    Cond { rtt_ms: 10, loss: 0.0, reorder: 0.0 },
    Cond { rtt_ms: 50, loss: 0.0, reorder: 0.0 },
    Cond { rtt_ms: 10, loss: 1.0, reorder: 0.0 },
    Cond { rtt_ms: 50, loss: 1.0, reorder: 0.0 },
    Cond { rtt_ms: 10, loss: 5.0, reorder: 0.0 },
    Cond { rtt_ms: 50, loss: 5.0, reorder: 0.0 },
    Cond { rtt_ms: 10, loss: 5.0, reorder: 5.0 },
];

/// The slow reader's path: `demo echo --loss 5 --reorder 5` (no added delay).
const SLOW_COND: Cond = Cond { rtt_ms: 0, loss: 5.0, reorder: 5.0 };

/// A system set up for one case: its namespace and processes.
struct Setup {
    servers: Vec<ServerProc>,
    ns: Ns,
}

impl Setup {
    fn start(system: PathSystem, cond: &Cond, cc: Option<&str>, pcap: Option<&PathBuf>) -> io::Result<Setup> {
        let mut args = cond.args();
        if let Some(cc) = cc {
            args.extend(["--congestion".into(), cc.to_string()]);
        }
        if let Some(p) = pcap {
            args.extend(["--pcap".into(), p.display().to_string()]);
        }
        match system {
            PathSystem::Tunstack => {
                let ns = Ns::new("bench-paths-ts")?;
                let mut all = vec!["tunstack".to_string(), "--mtu".into(), "1500".into()];
                all.extend(args);
                let server = ServerProc::spawn(&ns, "tunstack", &all)?;
                Ok(Setup { servers: vec![server], ns })
            }
            PathSystem::Smoltcp => {
                let ns = Ns::new("bench-paths-smol")?;
                tun_device(&ns, 1500, "500")?; // the TUN default queue
                let mut all = vec!["smoltcp".to_string(), "--mtu".into(), "1500".into()];
                all.extend(cond.args());
                let server = ServerProc::spawn(&ns, "smoltcp", &all)?;
                Ok(Setup { servers: vec![server], ns })
            }
            PathSystem::Linux => {
                let ns = Ns::new("bench-paths-lx")?;
                tun_device(&ns, 1500, "500")?; // the TUN default queue
                let mut refl = vec!["reflector".to_string()];
                refl.extend(cond.args());
                let reflector = ServerProc::spawn(&ns, "impaired reflector", &refl)?;
                let mut lx = vec!["linux".to_string(), "--addr".into(), "0.0.0.0".into()];
                if let Some(cc) = cc {
                    lx.extend(["--congestion".into(), cc.to_string()]);
                }
                let linux = ServerProc::spawn(&ns, "linux", &lx)?;
                Ok(Setup { servers: vec![reflector, linux], ns })
            }
        }
    }

    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(TUN_PEER.into(), port)
    }

    /// Run `f` on a thread inside the namespace, at most `timeout`.
    fn client<T: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let path = self.ns.get().path();
        let (tx, rx) = mpsc::channel();
        thread::Builder::new().name("paths-client".into()).spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                tunstack_tests::netns::enter(&path)?;
                f()
            }));
            let _ = tx.send(r.unwrap_or_else(|_| Err(io::Error::other("client panicked"))));
        })?;
        rx.recv_timeout(timeout).map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client did not finish"))?
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Servers before the namespace.
        self.servers.clear();
    }
}

struct Plan {
    senders: Vec<Sender>,
    conds: Vec<Cond>,
    size: u64,
    size_1: u64,
    size_5: u64,
    timeout: Duration,
    slow_runs: usize,
    systems: Vec<PathSystem>,
    pcap: Option<PathBuf>,
}

fn say(start: Instant, msg: &str) {
    eprintln!("[{:6.1}s] {msg}", start.elapsed().as_secs_f64());
}

/// A cell: a download's rate (marked when cut short), or why there is none.
enum Cell {
    Done(Download),
    Failed(String),
    Na(&'static str),
}

impl Cell {
    fn mbps(&self) -> Option<f64> {
        match self {
            Cell::Done(d) if d.bytes > 0 => Some(d.mbps()),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Done(d) if d.complete && !d.hashes_equal => format!("{:.1} HASH DIFFERS", d.mbps()),
            Cell::Done(d) if d.complete => format!("{:.1}", d.mbps()),
            Cell::Done(d) => format!("{:.1}*", d.mbps()),
            Cell::Failed(e) => format!("error: {}", e.replace('|', "/")),
            Cell::Na(why) => format!("n/a ({why})"),
        }
    }
}

pub fn run(o: PathsOpts) -> ExitCode {
    let q = o.quick;
    let available = sock::available_congestion();
    let mut senders = Vec::new();
    for system in [PathSystem::Tunstack, PathSystem::Smoltcp, PathSystem::Linux] {
        if !o.systems.contains(&system) {
            continue;
        }
        let ccs: &[&'static str] = match system {
            PathSystem::Tunstack => &["cubic", "newreno", "bbr"],
            PathSystem::Smoltcp => &["cubic"],
            PathSystem::Linux => &["reno", "cubic", "bbr"],
        };
        for &cc in ccs {
            let s = Sender { system, cc };
            if o.senders.is_empty() || o.senders.iter().any(|x| *x == s.label()) {
                senders.push(s);
            }
        }
    }
    let plan = Plan {
        senders,
        conds: CONDITIONS
            .iter()
            .copied()
            .filter(|c| o.only.is_empty() || o.only.iter().any(|t| c.label().contains(t.as_str())))
            .collect(),
        size: o.size.unwrap_or(if q { 16 << 20 } else { 64 << 20 }),
        size_1: o.lossy_size.unwrap_or(if q { 8 << 20 } else { 32 << 20 }),
        size_5: o.lossy_size.map(|s| s / 2).unwrap_or(if q { 4 << 20 } else { 16 << 20 }),
        timeout: Duration::from_secs(o.run_timeout.unwrap_or(if q { 20 } else { 60 })),
        slow_runs: o.slow_runs.unwrap_or(if q { 5 } else { 50 }),
        systems: o.systems.iter().copied().filter(|s| *s != PathSystem::Smoltcp).collect(),
        pcap: o.pcap.clone(),
    };
    let start = Instant::now();
    let mut cells: Vec<Vec<Cell>> = Vec::new();
    if !o.no_bulk {
        for cond in &plan.conds {
            let mut row = Vec::new();
            let size = if cond.loss >= 5.0 {
                plan.size_5
            } else if cond.loss >= 1.0 {
                plan.size_1
            } else {
                plan.size
            };
            for s in &plan.senders {
                if s.system == PathSystem::Linux && !available.iter().any(|a| a == s.cc) {
                    row.push(Cell::Na("not in tcp_available_congestion_control"));
                    continue;
                }
                say(start, &format!("{}: {} ({} MiB)", cond.label(), s.label(), size >> 20));
                let cell = match bulk(s, cond, size, plan.timeout, plan.pcap.as_ref()) {
                    Ok(d) => {
                        say(
                            start,
                            &format!(
                                "  {:.2} Mbit/s, {} bytes in {:.1} s{}",
                                d.mbps(),
                                d.bytes,
                                d.secs,
                                if d.complete { "" } else { " (cut short)" }
                            ),
                        );
                        Cell::Done(d)
                    }
                    Err(e) => {
                        say(start, &format!("  failed: {e}"));
                        Cell::Failed(e.to_string())
                    }
                };
                row.push(cell);
            }
            cells.push(row);
        }
    }
    let mut slow: Vec<(PathSystem, Vec<io::Result<Slow>>)> = Vec::new();
    if plan.slow_runs > 0 {
        for &system in &plan.systems {
            say(start, &format!("slow reader: {system:?}, {} runs", plan.slow_runs));
            let runs = slow_runs(system, plan.slow_runs, start, plan.pcap.as_ref());
            slow.push((system, runs));
        }
    }
    let doc = document(&plan, &cells, &slow, o.no_bulk);
    println!("{doc}");
    if !o.no_write {
        let path = o.out_dir.join("bench-paths.md");
        if let Err(e) = std::fs::create_dir_all(&o.out_dir).and_then(|_| std::fs::write(&path, &doc)) {
            eprintln!("bench paths: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("bench paths: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn bulk(s: &Sender, cond: &Cond, size: u64, timeout: Duration, pcap: Option<&PathBuf>) -> io::Result<Download> {
    let setup = Setup::start(s.system, cond, Some(s.cc), pcap)?;
    let addr = setup.addr(SOURCE_PORT);
    let limit = timeout;
    setup.client(limit + Duration::from_secs(30), move || {
        let deadline = Instant::now() + limit;
        client::download(addr, size, deadline)
    })
}

fn slow_runs(system: PathSystem, runs: usize, start: Instant, pcap: Option<&PathBuf>) -> Vec<io::Result<Slow>> {
    let mut out = Vec::new();
    let setup = match Setup::start(system, &SLOW_COND, None, pcap) {
        Ok(s) => s,
        Err(e) => {
            out.push(Err(e));
            return out;
        }
    };
    let addr = setup.addr(ECHO_PORT);
    for i in 0..runs {
        let r = setup.client(Duration::from_secs(90), move || {
            client::slow_reader(addr, SlowSpec::default(), Instant::now() + Duration::from_secs(60))
        });
        match &r {
            Ok(s) => say(
                start,
                &format!(
                    "  run {}: {:.2} s, longest pause {:.2} s{}",
                    i + 1,
                    s.secs,
                    s.longest_pause,
                    if s.hashes_equal {
                        String::new()
                    } else {
                        format!(
                            ", {} (sent {}, received {})",
                            if s.complete { "HASH DIFFERS" } else { "INCOMPLETE" },
                            s.sent,
                            s.received
                        )
                    }
                ),
            ),
            Err(e) => say(start, &format!("  run {}: {e}", i + 1)),
        }
        out.push(r);
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn document(plan: &Plan, cells: &[Vec<Cell>], slow: &[(PathSystem, Vec<io::Result<Slow>>)], no_bulk: bool) -> String {
    let mut d = String::new();
    let _ = writeln!(d, "# Paths with delay and loss: tunstack, Linux and smoltcp\n");
    let m = crate::sys::machine();
    let _ = writeln!(
        d,
        "Produced by `bench paths`: {} × {}, Linux {}, load average at the end {} (a shared machine: \
         compare ratios within a run).\n",
        m.nproc, m.cpu, m.kernel, m.load
    );
    let find = |cond: usize, label: &str| -> Option<f64> {
        let i = plan.senders.iter().position(|s| s.label() == label)?;
        cells.get(cond)?.get(i)?.mbps()
    };
    if !no_bulk {
        let _ = writeln!(
            d,
            "Goodput of one download (the system under test sends, the kernel's TCP receives and \
             hashes) in Mbit/s: {} MiB without loss, {} MiB at 1% loss, {} MiB at 5%; at most {} s per \
             transfer (`*`: cut short, the rate of what arrived). MTU 1500, impairment seed 1 for every \
             system.\n",
            plan.size >> 20,
            plan.size_1 >> 20,
            plan.size_5 >> 20,
            plan.timeout.as_secs()
        );
        let mut head = "| path |".to_string();
        let mut sep = "|---|".to_string();
        for s in &plan.senders {
            let _ = write!(head, " {} |", s.label());
            sep.push_str("---:|");
        }
        head.push_str(" tunstack cubic / Linux reno | tunstack bbr / Linux bbr |");
        sep.push_str("---:|---:|");
        let _ = writeln!(d, "{head}\n{sep}");
        for (ci, cond) in plan.conds.iter().enumerate() {
            let mut line = format!("| {} |", cond.label());
            for cell in &cells[ci] {
                let _ = write!(line, " {} |", cell.show());
            }
            let show = |r: Option<f64>| r.map_or("".to_string(), |r| format!("{r:.2}×"));
            let _ = write!(
                line,
                " {} | {} |",
                show(ratio(find(ci, "tunstack cubic"), find(ci, "Linux reno"))),
                show(ratio(find(ci, "tunstack bbr"), find(ci, "Linux bbr")))
            );
            let _ = writeln!(d, "{line}");
        }
        d.push('\n');
    }
    let mut slow_medians = Vec::new();
    if !slow.is_empty() {
        let _ = writeln!(
            d,
            "Slow reader: the kernel's client with SO_RCVBUF 8192 reads 4 KiB every 0.5 ms while it sends \
             8 MiB to the echo service, through loss 5% and reordering 5% each way (no added delay), \
             {} runs per system.\n",
            plan.slow_runs
        );
        let _ = writeln!(
            d,
            "| system | runs complete, hashes equal | median time (s) | max time (s) | median longest pause (s) | max pause (s) | runs with a pause > 2 s |"
        );
        let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|");
        for (system, runs) in slow {
            let ok: Vec<&Slow> = runs.iter().filter_map(|r| r.as_ref().ok()).filter(|s| s.hashes_equal).collect();
            let times: Vec<f64> = ok.iter().map(|s| s.secs).collect();
            let pauses: Vec<f64> = runs.iter().filter_map(|r| r.as_ref().ok()).map(|s| s.longest_pause).collect();
            let over = pauses.iter().filter(|&&p| p > 2.0).count();
            let med = median(times.clone());
            slow_medians.push((*system, med, pauses.iter().copied().fold(0.0, f64::max), over, ok.len(), runs.len()));
            let _ = writeln!(
                d,
                "| {system:?} | {} of {} | {} | {} | {} | {:.2} | {over} |",
                ok.len(),
                runs.len(),
                med.map_or("-".into(), |m| format!("{m:.2}")),
                times.iter().copied().reduce(f64::max).map_or("-".into(), |m| format!("{m:.2}")),
                median(pauses.clone()).map_or("-".into(), |m| format!("{m:.2}")),
                pauses.iter().copied().fold(0.0, f64::max),
            );
        }
        d.push('\n');
    }
    let _ = writeln!(d, "## Targets\n");
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let cond_index = |rtt: u64, loss: f64, reorder: f64| {
        plan.conds.iter().position(|c| c.rtt_ms == rtt && c.loss == loss && c.reorder == reorder)
    };
    if !no_bulk {
        for rtt in [10, 50] {
            if let Some(ci) = cond_index(rtt, 0.0, 0.0) {
                for (ours, theirs) in [("tunstack cubic", "Linux reno"), ("tunstack bbr", "Linux bbr")] {
                    if let Some(r) = ratio(find(ci, ours), find(ci, theirs)) {
                        let _ = writeln!(
                            d,
                            "- no loss, RTT {rtt} ms: {ours} / {theirs} = {r:.2}× (≥ 0.9×: {})",
                            met(r >= 0.9)
                        );
                    }
                }
            }
        }
        if let Some(ci) = cond_index(10, 1.0, 0.0) {
            if let Some(r) = ratio(find(ci, "tunstack bbr"), find(ci, "Linux bbr")) {
                let _ =
                    writeln!(d, "- 1% loss, RTT 10 ms: tunstack bbr / Linux bbr = {r:.2}× (≥ 0.8×: {})", met(r >= 0.8));
            }
            if let Some(r) = ratio(find(ci, "tunstack cubic"), find(ci, "Linux reno")) {
                let _ = writeln!(
                    d,
                    "- 1% loss, RTT 10 ms: tunstack cubic / Linux reno = {r:.2}× (≥ 1×: {})",
                    met(r >= 1.0)
                );
            }
        }
        if let Some(ci) = cond_index(10, 5.0, 5.0) {
            for (si, s) in plan.senders.iter().enumerate() {
                if s.system == PathSystem::Tunstack {
                    if let Some(Cell::Done(dl)) = cells[ci].get(si) {
                        let _ = writeln!(
                            d,
                            "- 5% loss, 5% reordering: {} {} (hashes {})",
                            s.label(),
                            if dl.complete { "completed" } else { "did not complete in time" },
                            if dl.hashes_equal { "equal" } else { "not compared or different" }
                        );
                    }
                }
            }
            if let Some(r) = ratio(find(ci, "tunstack bbr"), find(ci, "Linux bbr")) {
                let _ = writeln!(
                    d,
                    "- 5% loss, 5% reordering: tunstack bbr / Linux bbr = {r:.2}× (≥ 0.5×: {})",
                    met(r >= 0.5)
                );
            }
        }
    }
    let ts = slow_medians.iter().find(|x| x.0 == PathSystem::Tunstack);
    let lx = slow_medians.iter().find(|x| x.0 == PathSystem::Linux);
    if let Some(&(_, med, max_pause, over, ok, n)) = ts {
        let _ = writeln!(
            d,
            "- slow reader: tunstack's longest pause {max_pause:.2} s over {n} runs ({over} over 2 s, {ok} complete): {}",
            met(over == 0 && ok == n)
        );
        if let (Some(m), Some(&(_, Some(l), ..))) = (med, lx) {
            let _ = writeln!(
                d,
                "- slow reader: tunstack median {m:.2} s / Linux median {l:.2} s = {:.2}× (≤ 1.5×: {})",
                m / l,
                met(m / l <= 1.5)
            );
        }
    }
    d
}
