//! `report.svg`: each collector's CPU and total cost (% of one core) against N, on a log N
//! axis, hand-written SVG so that the report needs no plotting library.

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// One line: its legend, colour, dash pattern and points (N, %).
struct Series {
    label: String,
    colour: &'static str,
    dash: &'static str,
    points: Vec<(f64, f64)>,
}

pub fn svg(r: &Report) -> String {
    let mut series = Vec::new();
    for (collector, colour) in [
        ("ebpf", "#1f77b4"),
        ("ebpf-exporter", "#2ca02c"),
        ("ebpf-info", "#9467bd"),
        ("classic", "#d62728"),
    ] {
        let cost = |total: bool| -> Vec<(f64, f64)> {
            r.runs
                .iter()
                .filter_map(|run| {
                    let c = run.cost.iter().find(|c| c.collector == collector)?;
                    let v = if total {
                        c.total_cost_percent?
                    } else {
                        c.cpu_percent
                    };
                    Some((run.n as f64, v))
                })
                .collect()
        };
        series.push(Series {
            label: format!("{collector} CPU"),
            colour,
            dash: "",
            points: cost(false),
        });
        series.push(Series {
            label: format!("{collector} total cost"),
            colour,
            dash: "6,4",
            points: cost(true),
        });
    }
    series.retain(|s| !s.points.is_empty());
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let (nmin, nmax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = all.iter().map(|p| p.1).fold(0.0, f64::max).max(0.5) * 1.1;
    let (lx0, lx1) = (nmin.max(1.0).log10(), nmax.max(nmin + 1.0).log10());
    let x = |n: f64| LEFT + (n.max(1.0).log10() - lx0) / (lx1 - lx0).max(1e-9) * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / ymax * (H - TOP - BOTTOM);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="14">Collector cost against N tasks, % of one core ({}, {})</text>"#,
        LEFT,
        escape(&r.machine.cpu_model),
        escape(&r.date)
    );
    // Axes, grid and ticks.
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = writeln!(
        s,
        r#"<path d="M{x0},{y1} V{y0} H{x1}" stroke="black" fill="none"/>"#
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            x0 - 6.0,
            yy + 4.0
        );
    }
    for run in r.runs {
        let xx = x(run.n as f64);
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{:.1}" stroke="black"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            y0 + 5.0,
            y0 + 20.0,
            run.n
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">N tasks (log scale)</text>"#,
        (x0 + x1) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">% of one core</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    // The 0.5% target.
    let t = y(0.5);
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{t:.1}" x2="{x1}" y2="{t:.1}" stroke="#999" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}" fill="#666">target 0.5%</text>"##,
        x1 - 70.0,
        t - 4.0
    );
    for (i, se) in series.iter().enumerate() {
        let d: Vec<String> = se
            .points
            .iter()
            .enumerate()
            .map(|(j, &(n, v))| {
                format!("{}{:.1},{:.1}", if j == 0 { "M" } else { "L" }, x(n), y(v))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<path d="{}" stroke="{}" stroke-width="2" fill="none" stroke-dasharray="{}"/>"#,
            d.join(" "),
            se.colour,
            se.dash
        );
        for &(n, v) in &se.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: N = {n}, {v:.3}%</title></circle>"#,
                x(n),
                y(v),
                se.colour,
                escape(&se.label)
            );
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = W - RIGHT + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 25.0,
            se.colour,
            se.dash,
            lx + 32.0,
            ly + 4.0,
            escape(&se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
