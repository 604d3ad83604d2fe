//! `bench`: tunstack side by side with smoltcp, Linux's own TCP over veth, and the raw
//! TUN ceiling. Run as root (it creates network namespaces, TUN and veth devices):
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--size 1G] [--iterations 3] ...
//! ```
//!
//! Every system runs in namespaces of its own (see `env.rs`), the client is always
//! Linux TCP in the client namespace, and everything is removed again afterwards, also
//! on errors and on Ctrl-C. The table goes to stdout and `docs/bench-latest.md`, the
//! chart to `docs/bench-latest.svg`.

mod client;
mod env;
mod paths;
mod proto;
mod report;
mod run;
mod server;
mod shards;
mod stats;
mod svg;
mod sys;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use env::System;
use run::{Plan, Workload};

#[derive(Parser, Debug)]
#[command(name = "bench", about = "tunstack vs smoltcp vs Linux vs the raw TUN ceiling (run as root)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Internal: run one server inside a namespace (started by the harness).
    #[command(hide = true)]
    Serve(server::ServeArgs),
    /// Paths with delay and loss: tunstack's congestion controls against Linux's and
    /// smoltcp through the same link model, and the slow reader (see `bench/src/paths/mod.rs`).
    Paths(paths::PathsOpts),
    /// tunstack with 1 and N TUN queues (shards) on HTTP keep-alive: req/s, server CPU
    /// per request, latency; runs alternate, medians reported (see `bench/src/shards.rs`).
    Shards(shards::ShardsOpts),
}

#[derive(clap::Args, Debug)]
struct Opts {
    /// Small sizes and counts: finishes in about three minutes.
    #[arg(long)]
    quick: bool,
    /// Bytes per bulk transfer [default: 1G; quick: 64M].
    #[arg(long, value_parser = stats::parse_size)]
    size: Option<u64>,
    /// Repetitions of each bulk, latency and connection-rate measurement; the median
    /// is reported [default: 3; quick: 1].
    #[arg(long)]
    iterations: Option<usize>,
    /// Round trips per ping-pong measurement [default: 10000; quick: 2000].
    #[arg(long)]
    round_trips: Option<usize>,
    /// Connections per connection-rate measurement [default: 5000; quick: 3000].
    #[arg(long)]
    connections: Option<usize>,
    /// Client threads opening connections concurrently.
    #[arg(long, default_value_t = 4)]
    conn_threads: usize,
    /// Seconds of HTTP load per system and kind (keep-alive, close) [default: 10; quick: 3].
    #[arg(long)]
    http_secs: Option<u64>,
    /// Concurrent HTTP connections (keep-alive and Connection: close).
    #[arg(long, default_value_t = 32)]
    http_conns: usize,
    /// Concurrent keep-alive connections of the http10k workload.
    #[arg(long, default_value_t = 10_000)]
    http_many: usize,
    /// Seconds of load with --http-many connections [default: 10; quick: 5].
    #[arg(long)]
    http_many_secs: Option<u64>,
    /// Idle connections held open in the scale workload [default: 10000].
    #[arg(long)]
    idle: Option<usize>,
    /// Bytes of the one active flow in the scale workload [default: 256M; quick: 32M].
    #[arg(long, value_parser = stats::parse_size)]
    scale_size: Option<u64>,
    /// TUN/veth MTUs for the bulk workload (the other workloads run at the first).
    #[arg(long, value_delimiter = ',', default_values_t = [1500usize, 65535])]
    mtu: Vec<usize>,
    /// Systems to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = System::ALL)]
    systems: Vec<System>,
    /// Workloads to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Workload::ALL)]
    workloads: Vec<Workload>,
    /// Per-connection send/receive buffer of tunstack and smoltcp [default: tunstack's
    /// Config::default()].
    #[arg(long, value_parser = stats::parse_size)]
    buffer: Option<u64>,
    /// Time limit of one measurement, in seconds [default: 120; quick: 30].
    #[arg(long)]
    run_timeout: Option<u64>,
    /// Use the harness's own keep-alive load generator even when wrk is installed.
    #[arg(long)]
    no_wrk: bool,
    /// tunstack's TUN device with TCP segmentation and checksum offload (virtio-net
    /// header; `RuntimeConfig::offload`).
    #[arg(long)]
    offload: bool,
    /// Queues of tunstack's TUN device, one shard (stack and driver) each
    /// (`RuntimeConfig::queues`); the async server then runs on a multi-thread tokio
    /// runtime with this many workers.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Where bench-latest.md and bench-latest.svg go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"))]
    out_dir: PathBuf,
    /// Print the table only; write nothing under --out-dir.
    #[arg(long)]
    no_write: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Serve(args)) = cli.command {
        return match server::serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench serve: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if !sys::is_privileged() {
        eprintln!(
            "bench: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): it creates network namespaces, TUN and veth devices.\n\
             Build first, then run the binary with sudo:\n  cargo build --release -p bench && sudo target/release/bench --quick"
        );
        return ExitCode::FAILURE;
    }
    // Before any thread exists: SIGINT/SIGTERM/SIGHUP go to the cleanup thread only.
    let set = sys::block_termination_signals();
    std::thread::spawn(move || {
        let sig = sys::wait_signal(&set);
        eprintln!("\nbench: signal {sig}: removing the namespaces and exiting");
        env::emergency_cleanup();
        std::process::exit(128 + sig);
    });
    match cli.command {
        Some(Command::Paths(o)) => return paths::run(o),
        Some(Command::Shards(o)) => return shards::run(o),
        _ => {}
    }
    let nofile = sys::raise_nofile_limit();
    let plan = match Plan::new(&cli.opts, nofile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = run::run(&plan);
    let doc = run::document(&plan, &report);
    println!("{doc}");
    if !plan.no_write {
        match run::write_outputs(&plan, &report, &doc) {
            Ok(paths) => eprintln!("bench: wrote {}", paths.join(", ")),
            Err(e) => {
                eprintln!("bench: writing the results: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The most queues `--queues` takes (tunstack's limit is `shard::MAX_SHARDS`).
pub const MAX_QUEUES: usize = 64;

impl Opts {
    fn pick<T: Copy>(v: Option<T>, quick: bool, q: T, full: T) -> T {
        v.unwrap_or(if quick { q } else { full })
    }
}

impl Plan {
    fn new(o: &Opts, nofile: u64) -> Result<Plan, String> {
        let q = o.quick;
        let idle = Opts::pick(o.idle, q, 10_000, 10_000);
        if idle < 20 {
            return Err("--idle must be at least 20 (the scale workload compares 10 with --idle)".into());
        }
        if (idle as u64) + 1000 > nofile {
            return Err(format!("--idle {idle} needs more file descriptors than RLIMIT_NOFILE allows ({nofile})"));
        }
        let http_many = o.http_many.clamp(1, 50_000);
        if (http_many as u64) + 1000 > nofile {
            return Err(format!(
                "--http-many {http_many} needs more file descriptors than RLIMIT_NOFILE allows ({nofile})"
            ));
        }
        if !(1..=MAX_QUEUES).contains(&o.queues) {
            return Err(format!("--queues takes values from 1 to {MAX_QUEUES}"));
        }
        if o.mtu.is_empty() || o.mtu.iter().any(|&m| !(576..=65535).contains(&m)) {
            return Err("--mtu takes values from 576 to 65535".into());
        }
        let mut systems = o.systems.clone();
        systems.sort();
        systems.dedup();
        let mut workloads = o.workloads.clone();
        workloads.sort();
        workloads.dedup();
        let wrk = !o.no_wrk && wrk::available();
        Ok(Plan {
            quick: q,
            size: Opts::pick(o.size, q, 64 << 20, 1 << 30),
            iterations: Opts::pick(o.iterations, q, 1, 3).max(1),
            round_trips: Opts::pick(o.round_trips, q, 2000, 10_000).max(1),
            connections: Opts::pick(o.connections, q, 3000, 5000).max(1),
            conn_threads: o.conn_threads.clamp(1, 64),
            http_secs: Opts::pick(o.http_secs, q, 3, 10).max(1),
            http_conns: o.http_conns.clamp(1, 1000),
            http_many,
            http_many_secs: Opts::pick(o.http_many_secs, q, 5, 10).max(1),
            txqueuelen: (10 * http_many).max(1000),
            idle,
            scale_size: Opts::pick(o.scale_size, q, 32 << 20, 256 << 20),
            mtus: o.mtu.clone(),
            systems,
            workloads,
            buffer: o.buffer.map(|b| b as usize),
            offload: o.offload,
            queues: o.queues,
            run_timeout: Duration::from_secs(Opts::pick(o.run_timeout, q, 30, 120).max(1)),
            wrk,
            out_dir: o.out_dir.clone(),
            no_write: o.no_write,
            command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        })
    }
}
