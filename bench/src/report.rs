//! Results and their rendering: the markdown table with ratios, and the list of the
//! issue's targets with what this run shows for each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::env::System;
use crate::stats::fmt_num;

/// One measured value, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Val(f64),
    /// The measurement failed (message in a footnote).
    Err(String),
    /// Not measured for this system (short reason shown in the cell).
    Na(&'static str),
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub higher_better: bool,
    /// Whether a "vs ceiling" ratio makes sense for this row.
    pub vs_ceiling: bool,
    pub cells: BTreeMap<System, Cell>,
}

#[derive(Default, Debug)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Remarks printed under the table (losses seen during runs).
    pub notes: Vec<String>,
}

/// Row keys, shared by the runner, the table and the chart.
pub mod key {
    pub fn bulk(upload: bool, mtu: usize) -> String {
        format!("bulk-{}-{mtu}", if upload { "up" } else { "down" })
    }
    pub fn cpu(upload: bool, mtu: usize) -> String {
        format!("cpu-{}-{mtu}", if upload { "up" } else { "down" })
    }
    pub fn lat(len: usize, pct: u32) -> String {
        format!("lat-{len}-p{pct}")
    }
    pub const CONNRATE: &str = "connrate";
    pub const HTTP_RPS: &str = "http-rps";
    pub const HTTP_P99: &str = "http-p99";
    pub const HTTP_CLOSE_RPS: &str = "http-close-rps";
    pub const HTTP_CLOSE_P99: &str = "http-close-p99";
    pub const HTTP_CPU: &str = "http-cpu";
    pub const HTTP_CLOSE_CPU: &str = "http-close-cpu";
    pub const MANY_RPS: &str = "many-rps";
    pub const MANY_P99: &str = "many-p99";
    pub const MANY_CONNS: &str = "many-conns";
    pub const MANY_MEM: &str = "many-mem";
    pub const MANY_ERRORS: &str = "many-errors";
    pub const SCALE_MEM: &str = "scale-mem";
    pub fn scale_thr(idle: usize) -> String {
        format!("scale-thr-{idle}")
    }
    pub fn scale_cpp(idle: usize) -> String {
        format!("scale-cpp-{idle}")
    }
}

/// The systems the ratio columns compare the subject with, in column order.
const RATIO_TO: [System; 5] =
    [System::TunstackBlocking, System::Smoltcp, System::LinuxHyper, System::Nginx, System::Ceiling];

/// The system the ratios are about: tunstack's async server, else the blocking one.
pub fn subject(systems: &[System]) -> Option<System> {
    [System::TunstackAsync, System::TunstackBlocking].into_iter().find(|s| systems.contains(s))
}

/// A system's name in a ratio column's title.
fn short(s: System) -> &'static str {
    match s {
        System::TunstackAsync => "async",
        System::TunstackBlocking => "blocking",
        System::Smoltcp => "smoltcp",
        System::Linux => "Linux",
        System::LinuxHyper => "Linux + hyper",
        System::Nginx => "nginx",
        System::Ceiling => "ceiling",
    }
}

impl Report {
    /// Add a row (no-op if the key exists); rows print in the order they were added.
    pub fn add_row(&mut self, key: &str, label: &str, higher_better: bool, vs_ceiling: bool) {
        if self.rows.iter().any(|r| r.key == key) {
            return;
        }
        self.rows.push(Row {
            key: key.to_string(),
            label: label.to_string(),
            higher_better,
            vs_ceiling,
            cells: BTreeMap::new(),
        });
    }

    pub fn set(&mut self, key: &str, sys: System, cell: Cell) {
        if let Some(r) = self.rows.iter_mut().find(|r| r.key == key) {
            r.cells.insert(sys, cell);
        }
    }

    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    pub fn cell(&self, key: &str, sys: System) -> Option<&Cell> {
        self.row(key)?.cells.get(&sys)
    }

    pub fn value(&self, key: &str, sys: System) -> Option<f64> {
        match self.cell(key, sys)? {
            Cell::Val(v) => Some(*v),
            _ => None,
        }
    }

    /// How many times better `subject` is than `other` on this row (>1: better), for
    /// rows where bigger is better the plain quotient, else the inverse.
    pub fn speedup(&self, key: &str, subject: System, other: System) -> Option<f64> {
        let row = self.row(key)?;
        let t = self.value(key, subject)?;
        let o = self.value(key, other)?;
        let r = if row.higher_better { t / o } else { o / t };
        r.is_finite().then_some(r)
    }

    /// The markdown table; errors become numbered footnotes below it. The ratio columns
    /// compare [`subject`] with each of the other systems that have one.
    pub fn markdown_table(&self, systems: &[System]) -> String {
        let mut out = String::new();
        let mut notes: Vec<String> = Vec::new();
        let subj = subject(systems);
        let others: Vec<System> = subj
            .map(|t| RATIO_TO.iter().copied().filter(|o| *o != t && systems.contains(o)).collect())
            .unwrap_or_default();
        out.push_str("| metric |");
        for s in systems {
            let _ = write!(out, " {} |", s.label());
        }
        if let Some(t) = subj {
            for o in &others {
                let _ = write!(out, " {} vs {} |", t.label(), short(*o));
            }
        }
        out.push_str("\n|---|");
        for _ in systems.iter().chain(&others) {
            out.push_str("---:|");
        }
        out.push('\n');
        for row in &self.rows {
            let better = if row.higher_better { "" } else { " ↓" };
            let _ = write!(out, "| {}{better} |", row.label);
            for s in systems {
                let text = match row.cells.get(s) {
                    None => "".to_string(),
                    Some(Cell::Val(v)) => fmt_num(*v),
                    Some(Cell::Na(why)) => format!("n/a ({why})"),
                    Some(Cell::Err(e)) => {
                        // One footnote per distinct message.
                        let note = format!("{}: {}", s.label(), e.replace('\n', " "));
                        let n = match notes.iter().position(|x| *x == note) {
                            Some(i) => i + 1,
                            None => {
                                notes.push(note);
                                notes.len()
                            }
                        };
                        format!("error [{n}]")
                    }
                };
                let _ = write!(out, " {text} |");
            }
            if let Some(t) = subj {
                for &o in &others {
                    let text = match o {
                        System::Ceiling if !row.vs_ceiling => String::new(),
                        System::Ceiling => {
                            self.speedup(&row.key, t, o).map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default()
                        }
                        _ => self.speedup(&row.key, t, o).map(|r| format!("{r:.2}×")).unwrap_or_default(),
                    };
                    let _ = write!(out, " {text} |");
                }
            }
            out.push('\n');
        }
        if !notes.is_empty() {
            out.push('\n');
            for (i, n) in notes.iter().enumerate() {
                let _ = writeln!(out, "[{}] {n}", i + 1);
            }
        }
        out
    }

    /// The benchmark issue's targets for `subject` with what this run shows. Reported,
    /// never asserted.
    pub fn targets(&self, subject: System, mtus: &[usize], idle: usize) -> String {
        let mut out = String::new();
        let ratio = |v: Option<f64>, suffix: &str| v.map(|r| format!("{r:.2}{suffix}")).unwrap_or_else(|| "-".into());
        for (what, sys, min, pct) in [
            ("bulk ≥ 1.5× smoltcp", System::Smoltcp, 1.5, false),
            ("bulk ≥ 80% of the raw TUN ceiling", System::Ceiling, 0.8, true),
        ] {
            let mut parts = Vec::new();
            let mut all: Option<bool> = None;
            for &mtu in mtus {
                for up in [true, false] {
                    let r = self.speedup(&key::bulk(up, mtu), subject, sys);
                    if let Some(r) = r {
                        all = Some(all.unwrap_or(true) && r >= min);
                    }
                    let shown = if pct {
                        r.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or("-".into())
                    } else {
                        ratio(r, "×")
                    };
                    parts.push(format!("{} {mtu}: {shown}", if up { "c→s" } else { "s→c" }));
                }
            }
            let _ = writeln!(out, "- {what} (both ways, every MTU): {} — {}", verdict(all), parts.join(", "));
        }
        let cr = self.speedup(key::CONNRATE, subject, System::Smoltcp);
        let _ = writeln!(out, "- connection rate ≥ 2× smoltcp: {} — {}", verdict(cr.map(|r| r >= 2.0)), ratio(cr, "×"));
        let h = self.speedup(key::HTTP_RPS, subject, System::Smoltcp);
        let _ = writeln!(out, "- HTTP req/s ≥ 1.5× smoltcp: {} — {}", verdict(h.map(|r| r >= 1.5)), ratio(h, "×"));
        let c10 = self.value(&key::scale_cpp(10), subject);
        let cn = self.value(&key::scale_cpp(idle), subject);
        let flat = match (c10, cn) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        };
        let _ = writeln!(
            out,
            "- per-packet cost flat from 10 to {idle} idle connections (taken as: within +25%): {} — {} µs → {} µs per packet ({})",
            verdict(flat.map(|f| f <= 1.25)),
            c10.map(fmt_num).unwrap_or("-".into()),
            cn.map(fmt_num).unwrap_or("-".into()),
            ratio(flat, "×"),
        );
        let m = self.value(key::SCALE_MEM, subject);
        let _ = writeln!(
            out,
            "- < 2 KiB per idle connection: {} — {} bytes",
            verdict(m.map(|m| m < 2048.0)),
            m.map(fmt_num).unwrap_or("-".into())
        );
        out
    }

    /// The event-driven runtime issue's targets for `subject` (tunstack's async server),
    /// computed from this run. `many`: connections of the 10k workload, held for `secs`.
    pub fn targets_async(&self, subject: System, mtus: &[usize], many: usize, secs: u64) -> String {
        let mut out = String::new();
        let x = |v: Option<f64>| v.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "-".into());
        let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "-".into());
        let at_least = |k: &str, other: System, min: f64| {
            let r = self.speedup(k, subject, other);
            (r.map(|r| r >= min), r)
        };
        for (what, k, min_smol) in [
            ("HTTP keep-alive req/s ≥ 1.2× smoltcp and ≥ nginx", key::HTTP_RPS, 1.2),
            ("HTTP Connection: close req/s ≥ 1.3× smoltcp and ≥ nginx", key::HTTP_CLOSE_RPS, 1.3),
        ] {
            let (a, ra) = at_least(k, System::Smoltcp, min_smol);
            let (b, rb) = at_least(k, System::Nginx, 1.0);
            let _ = writeln!(
                out,
                "- {what}: {} — {} req/s: {} smoltcp, {} nginx",
                verdict(all_of(&[a, b])),
                num(self.value(k, subject)),
                x(ra),
                x(rb)
            );
        }
        let (c, rc) = at_least(key::CONNRATE, System::Smoltcp, 1.3);
        let _ = writeln!(
            out,
            "- connection rate ≥ 1.3× smoltcp: {} — {} conn/s: {} smoltcp",
            verdict(c),
            num(self.value(key::CONNRATE, subject)),
            x(rc)
        );
        let (p50, p99) = (key::lat(1, 50), key::lat(1, 99));
        let (t50, s50) = (self.value(&p50, subject), self.value(&p50, System::Smoltcp));
        let (t99, l99) = (self.value(&p99, subject), self.value(&p99, System::Linux));
        let a = t50.zip(s50).map(|(t, s)| t <= s);
        let b = t99.zip(l99).map(|(t, l)| t <= 1.5 * l);
        let _ = writeln!(
            out,
            "- 1-byte ping-pong p50 ≤ smoltcp's and p99 ≤ 1.5× Linux veth's: {} — p50 {} µs (smoltcp {} µs), p99 {} µs (Linux {} µs, limit {} µs)",
            verdict(all_of(&[a, b])),
            num(t50),
            num(s50),
            num(t99),
            num(l99),
            num(l99.map(|l| 1.5 * l))
        );
        let conns = self.value(key::MANY_CONNS, subject);
        let rps = self.value(key::MANY_RPS, subject);
        let errors = self.value(key::MANY_ERRORS, subject);
        let served = match (conns, rps, errors) {
            (Some(c), Some(r), Some(e)) => Some(c >= many as f64 && r > 0.0 && e * 100.0 <= r * secs as f64),
            _ => None,
        };
        let _ = writeln!(
            out,
            "- {many} concurrent keep-alive connections served (taken as: all {many} open at once, at most 1% of requests failed): {} — {} open at once, {} req/s, {} failed requests, {} bytes per connection",
            verdict(served),
            num(conns),
            num(rps),
            num(errors),
            num(self.value(key::MANY_MEM, subject))
        );
        let mut parts = Vec::new();
        let mut all = Vec::new();
        for &mtu in mtus {
            for up in [true, false] {
                let r = self.speedup(&key::bulk(up, mtu), subject, System::TunstackBlocking);
                all.push(r.map(|r| r >= 0.9));
                parts.push(format!("{} {mtu}: {}", if up { "c→s" } else { "s→c" }, x(r)));
            }
        }
        let _ = writeln!(
            out,
            "- bulk no worse than tunstack (blocking) (taken as: ≥ 0.90× in every direction and MTU, for run-to-run noise): {} — {}",
            verdict(all_of(&all.into_iter().flatten().map(Some).collect::<Vec<_>>())),
            parts.join(", ")
        );
        out
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

/// All of the checks: NOT met when one fails, met when all were measured and hold.
fn all_of(checks: &[Option<bool>]) -> Option<bool> {
    if checks.contains(&Some(false)) {
        Some(false)
    } else if !checks.is_empty() && checks.iter().all(Option::is_some) {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: System = System::TunstackAsync;

    fn sample() -> Report {
        let mut r = Report::default();
        r.add_row(&key::bulk(true, 1500), "bulk c→s 1500 (Gbit/s)", true, true);
        r.add_row(&key::lat(1, 50), "RTT 1 B p50 (µs)", false, true);
        r.add_row(key::CONNRATE, "conn/s", true, false);
        r.add_row(key::CONNRATE, "duplicate is ignored", true, false);
        r.set(&key::bulk(true, 1500), T, Cell::Val(3.0));
        r.set(&key::bulk(true, 1500), System::TunstackBlocking, Cell::Val(3.2));
        r.set(&key::bulk(true, 1500), System::Smoltcp, Cell::Val(1.5));
        r.set(&key::bulk(true, 1500), System::Ceiling, Cell::Val(4.0));
        r.set(&key::lat(1, 50), T, Cell::Val(50.0));
        r.set(&key::lat(1, 50), System::Smoltcp, Cell::Val(100.0));
        r.set(key::CONNRATE, T, Cell::Err("refused\nbadly".into()));
        r.set(key::CONNRATE, System::Linux, Cell::Err("refused\nbadly".into()));
        r.set(key::CONNRATE, System::Smoltcp, Cell::Err("timed out".into()));
        r.set(key::CONNRATE, System::Ceiling, Cell::Na("not run"));
        r
    }

    #[test]
    fn speedups_follow_the_direction_of_better() {
        let r = sample();
        assert_eq!(r.speedup(&key::bulk(true, 1500), T, System::Smoltcp), Some(2.0));
        assert_eq!(r.speedup(&key::bulk(true, 1500), T, System::Ceiling), Some(0.75));
        assert_eq!(r.speedup(&key::lat(1, 50), T, System::Smoltcp), Some(2.0));
        assert_eq!(r.speedup(key::CONNRATE, T, System::Smoltcp), None);
        assert_eq!(r.rows.len(), 3);
    }

    #[test]
    fn the_subject_is_the_async_server_when_there_is_one() {
        assert_eq!(subject(&System::ALL), Some(T));
        assert_eq!(subject(&[System::Smoltcp, System::TunstackBlocking]), Some(System::TunstackBlocking));
        assert_eq!(subject(&[System::Smoltcp, System::Linux]), None);
    }

    #[test]
    fn table_has_ratios_and_footnotes() {
        let systems = [T, System::Smoltcp, System::Linux, System::Ceiling];
        let t = sample().markdown_table(&systems);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "| metric | tunstack (async) | smoltcp | Linux (veth) | raw TUN ceiling | tunstack (async) vs smoltcp | tunstack (async) vs ceiling |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|---:|---:|---:|");
        assert_eq!(lines[2], "| bulk c→s 1500 (Gbit/s) | 3.00 | 1.50 |  | 4.00 | 2.00× | 75% |");
        assert_eq!(lines[3], "| RTT 1 B p50 (µs) ↓ | 50.0 | 100 |  |  | 2.00× |  |");
        assert_eq!(lines[4], "| conn/s | error [1] | error [2] | error [3] | n/a (not run) |  |  |");
        assert!(
            t.contains(
                "\n[1] tunstack (async): refused badly\n[2] smoltcp: timed out\n[3] Linux (veth): refused badly\n"
            ),
            "{t}"
        );
        // Every system: a ratio column for each the subject is compared with.
        let all = sample().markdown_table(&System::ALL);
        assert!(all.lines().next().unwrap().ends_with(
            "| tunstack (async) vs blocking | tunstack (async) vs smoltcp | tunstack (async) vs Linux + hyper | tunstack (async) vs nginx | tunstack (async) vs ceiling |"
        ));
        assert!(
            all.contains("| bulk c→s 1500 (Gbit/s) | 3.00 | 3.20 | 1.50 |  |  |  | 4.00 | 0.94× | 2.00× |  |  | 75% |"),
            "{all}"
        );
    }

    #[test]
    fn targets_report_what_was_measured() {
        let t = sample().targets(T, &[1500], 10_000);
        assert!(t.contains("bulk ≥ 1.5× smoltcp (both ways, every MTU): met — c→s 1500: 2.00×, s→c 1500: -"), "{t}");
        assert!(t.contains("ceiling (both ways, every MTU): NOT met — c→s 1500: 75%"), "{t}");
        assert!(t.contains("connection rate ≥ 2× smoltcp: not measured"), "{t}");
    }

    #[test]
    fn async_targets_are_computed_from_the_run() {
        let mut r = sample();
        for (k, up) in [(key::HTTP_RPS, true), (key::HTTP_CLOSE_RPS, true), (key::MANY_RPS, true)] {
            r.add_row(k, k, up, false);
        }
        for k in [key::MANY_CONNS, key::MANY_ERRORS, key::MANY_MEM] {
            r.add_row(k, k, k == key::MANY_CONNS, false);
        }
        r.add_row(&key::lat(1, 99), "p99", false, false);
        r.set(key::HTTP_RPS, T, Cell::Val(130.0));
        r.set(key::HTTP_RPS, System::Smoltcp, Cell::Val(100.0));
        r.set(key::HTTP_RPS, System::Nginx, Cell::Val(120.0));
        r.set(key::HTTP_CLOSE_RPS, T, Cell::Val(100.0));
        r.set(key::HTTP_CLOSE_RPS, System::Smoltcp, Cell::Val(100.0));
        r.set(&key::lat(1, 99), T, Cell::Val(30.0));
        r.set(&key::lat(1, 99), System::Linux, Cell::Val(20.0));
        r.set(key::MANY_RPS, T, Cell::Val(1000.0));
        r.set(key::MANY_CONNS, T, Cell::Val(10_000.0));
        r.set(key::MANY_ERRORS, T, Cell::Val(10.0));
        r.set(key::MANY_MEM, T, Cell::Val(20_000.0));
        let t = r.targets_async(T, &[1500], 10_000, 5);
        assert!(
            t.contains("keep-alive req/s ≥ 1.2× smoltcp and ≥ nginx: met — 130 req/s: 1.30× smoltcp, 1.08× nginx"),
            "{t}"
        );
        // 1.0× smoltcp fails whatever nginx did.
        assert!(
            t.contains("close req/s ≥ 1.3× smoltcp and ≥ nginx: NOT met — 100 req/s: 1.00× smoltcp, - nginx"),
            "{t}"
        );
        assert!(t.contains("connection rate ≥ 1.3× smoltcp: not measured"), "{t}");
        // p50 50 ≤ 100 and p99 30 ≤ 1.5 × 20.
        assert!(t.contains("p99 ≤ 1.5× Linux veth's: met — p50 50.0 µs (smoltcp 100 µs), p99 30.0 µs"), "{t}");
        assert!(t.contains("connections served (taken as: all 10000 open at once, at most 1% of requests failed): met — 10000 open at once, 1000 req/s, 10.0 failed"), "{t}");
        assert!(
            t.contains("bulk no worse than tunstack (blocking)") && t.contains(": met — c→s 1500: 0.94×, s→c 1500: -"),
            "{t}"
        );
        r.set(key::MANY_ERRORS, T, Cell::Val(51.0));
        assert!(r.targets_async(T, &[1500], 10_000, 5).contains("at most 1% of requests failed): NOT met"));
    }
}
