//! Goodput table of the simulated network (`tunstack_tests::sim`): every pairing of
//! tunstack and smoltcp, each direction, under each standard condition.
//!
//! ```sh
//! cargo run --release -p tunstack-tests --bin sim_table -- [--bytes N] [--seed S] [--only TEXT] [--jobs N]
//! ```
//!
//! `--seed` fixes one master seed for every run (default: each run's own seed, derived
//! from its label, the same the tests use); `--only` keeps the runs whose label contains
//! TEXT; `--jobs` runs that many at once. Goodput is in Mbit/s of virtual time. Failed
//! runs appear in the table with their failure; their full diagnostics follow it.
//!
//! Then the path rows (`tunstack_tests::paths`, also `--bin sim_paths`): 32 MiB over
//! 10 and 50 ms with 0, 1 and 5% loss (and 5% reordering) per congestion control, and 20
//! runs of the slow reader; `--no-paths` leaves them out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tunstack_tests::sim::*;

fn usage() -> ! {
    eprintln!("usage: sim_table [--bytes N] [--seed S] [--only TEXT] [--jobs N] [--no-paths]");
    std::process::exit(2)
}

fn main() {
    let mut bytes = TEN_MB;
    let mut seed: Option<u64> = None;
    let mut only: Vec<String> = Vec::new();
    let mut jobs = 1usize;
    let mut paths = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--bytes" => bytes = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => {
                let v = value();
                let parsed = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => v.parse(),
                };
                seed = Some(parsed.unwrap_or_else(|_| usage()));
            }
            "--only" => only.push(value()),
            "--jobs" => jobs = value().parse::<usize>().unwrap_or_else(|_| usage()).clamp(1, 16),
            "--no-paths" => paths = false,
            _ => usage(),
        }
    }

    let pairs = [
        (Peer::Ours, Peer::Ours),
        (Peer::Ours, Peer::Smoltcp),
        (Peer::Smoltcp, Peer::Ours),
        (Peer::Smoltcp, Peer::Smoltcp),
    ];
    let mut scenarios = Vec::new();
    for (sender, receiver) in pairs {
        for condition in Condition::matrix() {
            scenarios.push(Scenario::new(sender, receiver, condition));
        }
    }
    for (sender, receiver) in [(Peer::Ours, Peer::Ours), (Peer::Ours, Peer::Smoltcp), (Peer::Smoltcp, Peer::Ours)] {
        scenarios.push(Scenario::new(sender, receiver, Condition::mixed()).ipv6());
    }
    for s in &mut scenarios {
        s.bytes = bytes;
        if let Some(seed) = seed {
            s.seed = seed;
        }
    }
    scenarios.retain(|s| only.iter().all(|o| s.label().contains(o.as_str())));

    println!("Simulated network: {} bytes per run, sender = client (A), receiver = server (B).", bytes);
    for c in Condition::matrix() {
        println!("- {}", c.describe());
    }
    println!();

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunReport, SimError>>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(s) = scenarios.get(i) else { break };
                eprintln!("running {} (seed {:#x})", s.label(), s.seed);
                let r = run_catching(s);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap();

    println!("{}", table_header());
    let mut failures = Vec::new();
    for (s, r) in scenarios.iter().zip(&results) {
        match r.as_ref().expect("every scenario ran") {
            Ok(report) => println!("{}", report.row()),
            Err(e) => {
                println!("{}", failure_row(s, e));
                failures.push(e);
            }
        }
    }
    for e in &failures {
        println!("\n{e}");
    }
    if paths {
        println!("\n{}", tunstack_tests::paths::bulk_table(32 << 20, &only, jobs));
        let (slow, ok) = tunstack_tests::paths::slow_table(20, jobs);
        println!("{slow}");
        if !ok {
            std::process::exit(1);
        }
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
