//! `demo script FILE|DIR...`: run packetdrill-style scripts against the sans-IO core
//! (virtual time, no root) or, with `--linux`, against the kernel's TCP in a network
//! namespace of their own (root). Prints each step, and on a failure the expected and
//! actual packet side by side with the line and the connection's state.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use tunstack::script::{self, Verdict};

#[derive(Args, Debug)]
pub struct ScriptArgs {
    /// Script files, or directories to search for `*.pkt` files.
    #[arg(value_name = "FILE|DIR", required = true)]
    paths: Vec<PathBuf>,

    /// Run against Linux (a TUN device in a fresh network namespace; needs root)
    /// instead of the core.
    #[arg(long)]
    linux: bool,

    /// Run against the core and then against Linux.
    #[arg(long, conflicts_with = "linux")]
    both: bool,

    /// Only print failures and the summary.
    #[arg(short, long)]
    quiet: bool,

    /// Run up to this many scripts at once against Linux (each has its own namespace).
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,
}

pub fn run(args: ScriptArgs) -> Result<(), String> {
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            let found = script::collect(p);
            if found.is_empty() {
                return Err(format!("{}: no *.pkt files", p.display()));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut scripts = Vec::new();
    for f in &files {
        scripts.push(script::load(f)?);
    }
    let targets: &[&str] = match (args.linux, args.both) {
        (true, _) => &["linux"],
        (false, true) => &["core", "linux"],
        (false, false) => &["core"],
    };
    let mut bad = 0usize;
    let mut summary = Vec::new();
    for &target in targets {
        let reports: Vec<script::Report> = if target == "core" {
            scripts
                .iter()
                .map(|s| {
                    let quiet = args.quiet;
                    let mut progress = |line: &str| {
                        if !quiet {
                            println!("  {line}");
                        }
                    };
                    if !quiet {
                        println!("== {} [core]", s.name);
                    }
                    script::run_core(s, &mut progress)
                })
                .collect()
        } else {
            demo::script_linux::check_prerequisites()?;
            demo::script_linux::run_many(&scripts, args.jobs.max(1), !args.quiet)
        };
        let (mut pass, mut xfail, mut fail) = (0, 0, 0);
        for (s, r) in scripts.iter().zip(&reports) {
            let v = script::verdict(s, r);
            match &v {
                Verdict::Pass => {
                    pass += 1;
                    if !args.quiet {
                        println!("{}: PASS [{target}]", s.name);
                    }
                }
                Verdict::ExpectedFailure(why) => {
                    xfail += 1;
                    println!("{}: expected failure [{target}] ({why})", s.name);
                    if let Some(f) = &r.failure {
                        if !args.quiet {
                            print!("{}:{f}", s.name);
                        }
                    }
                }
                Verdict::Fail => {
                    fail += 1;
                    println!("{}: FAIL [{target}]", s.name);
                    if let Some(f) = &r.failure {
                        print!("{}:{f}", s.name);
                    }
                }
                Verdict::UnexpectedPass(why) => {
                    fail += 1;
                    println!("{}: UNEXPECTED PASS [{target}]: marked known-failing ({why}) but it passed", s.name);
                }
            }
        }
        bad += fail;
        summary.push(format!(
            "{target}: {pass} passed, {xfail} expected failures, {fail} failed ({} scripts)",
            scripts.len()
        ));
    }
    for s in &summary {
        println!("{s}");
    }
    let _ = std::io::stdout().flush();
    if bad > 0 {
        Err(format!("{bad} script run(s) failed"))
    } else {
        Ok(())
    }
}
