//! The chart: a hand-written SVG of grouped bar panels, one colour per system.

use std::fmt::Write as _;

use crate::env::System;
use crate::report::Report;
use crate::stats::fmt_num;

/// One panel: a title and groups of bars, each group a table row.
pub struct Panel {
    pub title: String,
    /// (group label, row key)
    pub groups: Vec<(String, String)>,
}

const PANEL_W: f64 = 620.0;
const PANEL_H: f64 = 300.0;
const COLUMNS: usize = 2;
const MARGIN_L: f64 = 60.0;
const MARGIN_R: f64 = 15.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 45.0;

fn colour(s: System) -> &'static str {
    match s {
        System::TunstackAsync => "#d95f02",
        System::TunstackBlocking => "#fdae6b",
        System::Smoltcp => "#1b9e77",
        System::Linux => "#7570b3",
        System::LinuxHyper => "#e7298a",
        System::Nginx => "#66a61e",
        System::Ceiling => "#888888",
    }
}

/// A "nice" grid step (1, 2 or 5 times a power of ten) for values up to `max`.
pub fn nice_step(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 4.0;
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Render the panels (those with at least one value) with a legend and a caption.
pub fn chart(report: &Report, panels: &[Panel], systems: &[System], caption: &str) -> String {
    let panels: Vec<&Panel> = panels
        .iter()
        .filter(|p| p.groups.iter().any(|(_, k)| systems.iter().any(|&s| report.value(k, s).is_some())))
        .collect();
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    let width = PANEL_W * COLUMNS as f64;
    let legend_h = 65.0;
    let height = legend_h + PANEL_H * rows as f64 + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    // Legend.
    let mut x = 20.0;
    for &s in systems {
        let _ = writeln!(out, "<rect x=\"{x}\" y=\"15\" width=\"14\" height=\"14\" fill=\"{}\"/>", colour(s));
        let _ = writeln!(out, "<text x=\"{}\" y=\"27\">{}</text>", x + 20.0, esc(s.label()));
        x += 30.0 + 8.0 * s.label().len() as f64;
    }
    // The caption on a line of its own: seven systems fill the first.
    let _ = writeln!(out, "<text x=\"20\" y=\"48\" fill=\"#555\">{}</text>", esc(caption));
    for (i, p) in panels.iter().enumerate() {
        let ox = PANEL_W * (i % COLUMNS) as f64;
        let oy = legend_h + PANEL_H * (i / COLUMNS) as f64;
        panel(&mut out, report, p, systems, ox, oy);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, report: &Report, p: &Panel, systems: &[System], ox: f64, oy: f64) {
    let plot_w = PANEL_W - MARGIN_L - MARGIN_R;
    let plot_h = PANEL_H - MARGIN_T - MARGIN_B;
    let x0 = ox + MARGIN_L;
    let y0 = oy + MARGIN_T + plot_h; // baseline
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        ox + 10.0,
        oy + 22.0,
        esc(&p.title)
    );
    let max = p
        .groups
        .iter()
        .flat_map(|(_, k)| systems.iter().filter_map(move |&s| report.value(k, s)))
        .fold(0.0f64, f64::max);
    let step = nice_step(max);
    let top = (max / step).ceil().max(1.0) * step;
    let y = |v: f64| y0 - v / top * plot_h;
    let mut t = 0.0;
    while t <= top + step / 2.0 {
        let yy = y(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>",
            x0 + plot_w
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            x0 - 6.0,
            yy + 4.0,
            fmt_num(t)
        );
        t += step;
    }
    let _ =
        writeln!(out, "<line x1=\"{x0}\" y1=\"{y0:.1}\" x2=\"{:.1}\" y2=\"{y0:.1}\" stroke=\"#333\"/>", x0 + plot_w);
    let gw = plot_w / p.groups.len().max(1) as f64;
    let bw = (gw * 0.8 / systems.len().max(1) as f64).min(40.0);
    for (g, (label, key)) in p.groups.iter().enumerate() {
        let gx = x0 + gw * g as f64;
        let start = gx + (gw - bw * systems.len() as f64) / 2.0;
        for (j, &s) in systems.iter().enumerate() {
            let bx = start + bw * j as f64;
            match report.value(key, s) {
                Some(v) => {
                    let by = y(v);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
                        bw - 2.0,
                        (y0 - by).max(0.0),
                        colour(s),
                        esc(s.label()),
                        fmt_num(v)
                    );
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                        bx + bw / 2.0 - 1.0,
                        by - 3.0,
                        fmt_num(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" fill=\"#aaa\">–</text>",
                        bx + bw / 2.0 - 1.0,
                        y0 - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            gx + gw / 2.0,
            y0 + 18.0,
            esc(label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Cell;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(10.0), 5.0);
        assert_eq!(nice_step(4.0), 1.0);
        assert_eq!(nice_step(7.0), 2.0);
        assert_eq!(nice_step(30_000.0), 10_000.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn chart_draws_values_and_skips_empty_panels() {
        let mut r = Report::default();
        r.add_row("a", "A", true, false);
        r.add_row("b", "B", true, false);
        r.set("a", System::TunstackAsync, Cell::Val(2.5));
        r.set("a", System::Smoltcp, Cell::Val(1.0));
        let panels = vec![
            Panel { title: "Has <data>".into(), groups: vec![("a".into(), "a".into())] },
            Panel { title: "Empty".into(), groups: vec![("b".into(), "b".into())] },
        ];
        let svg = chart(&r, &panels, &System::ALL, "caption & more");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Has &lt;data&gt;"));
        assert!(!svg.contains("Empty"));
        assert!(svg.contains("<title>tunstack (async): 2.50</title>"));
        assert!(svg.contains("<title>smoltcp: 1.00</title>"));
        assert!(svg.contains("caption &amp; more"));
        assert_eq!(svg.matches("<rect x=").count(), System::ALL.len() + 2, "legend squares plus two bars");
    }
}
