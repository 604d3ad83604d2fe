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
    pub const SCALE_MEM: &str = "scale-mem";
    pub fn scale_thr(idle: usize) -> String {
        format!("scale-thr-{idle}")
    }
    pub fn scale_cpp(idle: usize) -> String {
        format!("scale-cpp-{idle}")
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

    pub fn value(&self, key: &str, sys: System) -> Option<f64> {
        match self.row(key)?.cells.get(&sys)? {
            Cell::Val(v) => Some(*v),
            _ => None,
        }
    }

    /// How many times better tunstack is than `other` on this row (>1: better), for
    /// rows where bigger is better the plain quotient, else the inverse.
    pub fn speedup(&self, key: &str, other: System) -> Option<f64> {
        let row = self.row(key)?;
        let t = self.value(key, System::Tunstack)?;
        let o = self.value(key, other)?;
        let r = if row.higher_better { t / o } else { o / t };
        r.is_finite().then_some(r)
    }

    /// The markdown table; errors become numbered footnotes below it.
    pub fn markdown_table(&self, systems: &[System]) -> String {
        let mut out = String::new();
        let mut notes: Vec<String> = Vec::new();
        out.push_str("| metric |");
        for s in systems {
            let _ = write!(out, " {} |", s.label());
        }
        out.push_str(" tunstack vs smoltcp | tunstack vs ceiling |\n|---|");
        for _ in systems {
            out.push_str("---:|");
        }
        out.push_str("---:|---:|\n");
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
            let vs_smol = self.speedup(&row.key, System::Smoltcp).map(|r| format!("{r:.2}×")).unwrap_or_default();
            let vs_ceil = if row.vs_ceiling {
                self.speedup(&row.key, System::Ceiling).map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default()
            } else {
                String::new()
            };
            let _ = writeln!(out, " {vs_smol} | {vs_ceil} |");
        }
        if !notes.is_empty() {
            out.push('\n');
            for (i, n) in notes.iter().enumerate() {
                let _ = writeln!(out, "[{}] {n}", i + 1);
            }
        }
        out
    }

    /// The targets with what this run shows. Reported, never asserted.
    pub fn targets(&self, mtus: &[usize], idle: usize) -> String {
        let mut out = String::new();
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let ratio = |v: Option<f64>, suffix: &str| v.map(|r| format!("{r:.2}{suffix}")).unwrap_or_else(|| "-".into());
        for (what, sys, min, pct) in [
            ("bulk ≥ 1.5× smoltcp", System::Smoltcp, 1.5, false),
            ("bulk ≥ 80% of the raw TUN ceiling", System::Ceiling, 0.8, true),
        ] {
            let mut parts = Vec::new();
            let mut all: Option<bool> = None;
            for &mtu in mtus {
                for up in [true, false] {
                    let r = self.speedup(&key::bulk(up, mtu), sys);
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
        let cr = self.speedup(key::CONNRATE, System::Smoltcp);
        let _ = writeln!(out, "- connection rate ≥ 2× smoltcp: {} — {}", verdict(cr.map(|r| r >= 2.0)), ratio(cr, "×"));
        let h = self.speedup(key::HTTP_RPS, System::Smoltcp);
        let _ = writeln!(out, "- HTTP req/s ≥ 1.5× smoltcp: {} — {}", verdict(h.map(|r| r >= 1.5)), ratio(h, "×"));
        let c10 = self.value(&key::scale_cpp(10), System::Tunstack);
        let cn = self.value(&key::scale_cpp(idle), System::Tunstack);
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
        let m = self.value(key::SCALE_MEM, System::Tunstack);
        let _ = writeln!(
            out,
            "- < 2 KiB per idle connection: {} — {} bytes",
            verdict(m.map(|m| m < 2048.0)),
            m.map(fmt_num).unwrap_or("-".into())
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::default();
        r.add_row(&key::bulk(true, 1500), "bulk c→s 1500 (Gbit/s)", true, true);
        r.add_row(&key::lat(1, 50), "RTT 1 B p50 (µs)", false, true);
        r.add_row(key::CONNRATE, "conn/s", true, false);
        r.add_row(key::CONNRATE, "duplicate is ignored", true, false);
        r.set(&key::bulk(true, 1500), System::Tunstack, Cell::Val(3.0));
        r.set(&key::bulk(true, 1500), System::Smoltcp, Cell::Val(1.5));
        r.set(&key::bulk(true, 1500), System::Ceiling, Cell::Val(4.0));
        r.set(&key::lat(1, 50), System::Tunstack, Cell::Val(50.0));
        r.set(&key::lat(1, 50), System::Smoltcp, Cell::Val(100.0));
        r.set(key::CONNRATE, System::Tunstack, Cell::Err("refused\nbadly".into()));
        r.set(key::CONNRATE, System::Linux, Cell::Err("refused\nbadly".into()));
        r.set(key::CONNRATE, System::Smoltcp, Cell::Err("timed out".into()));
        r.set(key::CONNRATE, System::Ceiling, Cell::Na("not run"));
        r
    }

    #[test]
    fn speedups_follow_the_direction_of_better() {
        let r = sample();
        assert_eq!(r.speedup(&key::bulk(true, 1500), System::Smoltcp), Some(2.0));
        assert_eq!(r.speedup(&key::bulk(true, 1500), System::Ceiling), Some(0.75));
        assert_eq!(r.speedup(&key::lat(1, 50), System::Smoltcp), Some(2.0));
        assert_eq!(r.speedup(key::CONNRATE, System::Smoltcp), None);
        assert_eq!(r.rows.len(), 3);
    }

    #[test]
    fn table_has_ratios_and_footnotes() {
        let t = sample().markdown_table(&System::ALL);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("| metric | tunstack | smoltcp | Linux (veth) | raw TUN ceiling |"));
        assert_eq!(lines[2], "| bulk c→s 1500 (Gbit/s) | 3.00 | 1.50 |  | 4.00 | 2.00× | 75% |");
        assert_eq!(lines[3], "| RTT 1 B p50 (µs) ↓ | 50.0 | 100 |  |  | 2.00× |  |");
        assert_eq!(lines[4], "| conn/s | error [1] | error [2] | error [3] | n/a (not run) |  |  |");
        assert!(
            t.contains("\n[1] tunstack: refused badly\n[2] smoltcp: timed out\n[3] Linux (veth): refused badly\n"),
            "{t}"
        );
    }

    #[test]
    fn targets_report_what_was_measured() {
        let t = sample().targets(&[1500], 10_000);
        assert!(t.contains("bulk ≥ 1.5× smoltcp (both ways, every MTU): met — c→s 1500: 2.00×, s→c 1500: -"), "{t}");
        assert!(t.contains("ceiling (both ways, every MTU): NOT met — c→s 1500: 75%"), "{t}");
        assert!(t.contains("connection rate ≥ 2× smoltcp: not measured"), "{t}");
    }
}
