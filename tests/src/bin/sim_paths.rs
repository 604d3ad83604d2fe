//! The simulator's path rows (`tunstack_tests::paths`): bulk transfers per congestion
//! control over delay and loss, and the slow reader. `sim_table` prints them too.
//!
//! ```sh
//! cargo run --release -p tunstack-tests --bin sim_paths -- [--bytes N] [--only TEXT] [--jobs N] [--slow RUNS] [--no-bulk]
//! ```

use tunstack_tests::paths::*;

fn usage() -> ! {
    eprintln!("usage: sim_paths [--bytes N] [--only TEXT] [--jobs N] [--slow RUNS] [--no-bulk]");
    std::process::exit(2)
}

fn main() {
    let mut bytes = 32usize << 20;
    let mut only: Vec<String> = Vec::new();
    let mut jobs = 1usize;
    let mut slow = 0u64;
    let mut bulk = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--bytes" => bytes = value().parse().unwrap_or_else(|_| usage()),
            "--only" => only.push(value()),
            "--jobs" => jobs = value().parse::<usize>().unwrap_or_else(|_| usage()).clamp(1, 16),
            "--slow" => slow = value().parse().unwrap_or_else(|_| usage()),
            "--no-bulk" => bulk = false,
            _ => usage(),
        }
    }
    if bulk {
        println!("{}", bulk_table(bytes, &only, jobs));
    }
    if slow > 0 {
        let (t, ok) = slow_table(slow, jobs);
        println!("{t}");
        if !ok {
            std::process::exit(1);
        }
    }
}
