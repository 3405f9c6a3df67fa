//! The timeline as a plain SVG: LC p99 per second (log scale) with the anomalies on LC,
//! CPUs used by LC, BE and the whole node, and `be1`'s quota and `cpu.idle`, over the
//! phases.

use std::fmt::Write as _;

use crate::report::{Report, Tick};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// A panel's vertical extent.
struct Panel {
    top: f64,
    height: f64,
}

impl Panel {
    fn y(&self, fraction: f64) -> f64 {
        self.top + self.height * (1.0 - fraction.clamp(0.0, 1.0))
    }
}

pub fn timeline(r: &Report) -> String {
    let end = r.ticks.last().map_or(1.0, |t| t.at_s).max(1.0);
    let x = |at: f64| LEFT + (WIDTH - LEFT - RIGHT) * at / end;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="520" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="16" font-size="13">OWCA collocation scenario, {} on {} ({} CPUs, {} s per phase)</text>"#,
        r.date, r.host, r.cpus, r.seconds
    );
    let latency = Panel {
        top: 50.0,
        height: 180.0,
    };
    let cpus = Panel {
        top: 270.0,
        height: 120.0,
    };
    let be = Panel {
        top: 430.0,
        height: 60.0,
    };
    // Phase boundaries and titles.
    for (i, p) in r.phases.iter().enumerate() {
        let Some(first) = r.ticks.iter().find(|t| t.phase == i) else {
            continue;
        };
        let x0 = x(first.at_s - 1.0);
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{}" x2="{x0:.1}" y2="{}" stroke="#bbb"/><text x="{:.1}" y="{}" fill="#555">{}. {}</text>"##,
            latency.top - 10.0,
            be.top + be.height,
            x0 + 3.0,
            latency.top - 14.0,
            i + 1,
            p.name
        );
    }
    // LC p99, log scale from 0.1 ms to 1 s.
    let log_y = |us: f64| latency.y(((us / 100.0).max(1.0)).log10() / 4.0);
    for (us, label) in [
        (100.0, "0.1 ms"),
        (1e3, "1 ms"),
        (1e4, "10 ms"),
        (1e5, "100 ms"),
        (1e6, "1 s"),
    ] {
        let y = log_y(us);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="4" y="{:.1}">{label}</text>"##,
            WIDTH - RIGHT,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" fill="#1f77b4">LC p99 per second</text><text x="{}" y="{}" fill="#d62728">▼ anomaly on LC</text>"##,
        latency.top + latency.height + 14.0,
        LEFT + 160.0,
        latency.top + latency.height + 14.0
    );
    if let Some(alone) = r
        .phases
        .iter()
        .find(|p| p.name == "lc_alone")
        .and_then(|p| p.latency)
    {
        let y = log_y(alone.p99_us as f64 * 1.5);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#2ca02c" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#2ca02c">1.5 × p99 alone</text>"##,
            WIDTH - RIGHT,
            WIDTH - RIGHT - 90.0,
            y - 3.0
        );
    }
    polylines(
        &mut s,
        &r.ticks,
        &x,
        |t| t.lc_p99_us.map(|us| log_y(us as f64)),
        "#1f77b4",
    );
    for t in r.ticks.iter().filter(|t| t.new_anomalies > 0) {
        let (cx, cy) = (x(t.at_s), latency.top + 2.0);
        let _ = writeln!(
            s,
            r##"<path d="M{:.1},{cy:.1} l6,0 l-3,6 z" fill="#d62728"/>"##,
            cx - 3.0
        );
    }
    // CPUs.
    let max = r.cpus as f64;
    for c in 0..=r.cpus {
        let y = cpus.y(c as f64 / max);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="4" y="{:.1}">{c} CPU</text>"##,
            WIDTH - RIGHT,
            y + 4.0
        );
    }
    polylines(
        &mut s,
        &r.ticks,
        &x,
        |t| Some(cpus.y(t.node_cpus / max)),
        "#999",
    );
    polylines(
        &mut s,
        &r.ticks,
        &x,
        |t| Some(cpus.y(t.lc_cpus / max)),
        "#1f77b4",
    );
    polylines(
        &mut s,
        &r.ticks,
        &x,
        |t| Some(cpus.y(t.be_cpus / max)),
        "#ff7f0e",
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{0}" fill="#1f77b4">LC CPUs</text><text x="{1}" y="{0}" fill="#ff7f0e">BE CPUs (throughput)</text><text x="{2}" y="{0}" fill="#999">node busy CPUs (everyone)</text>"##,
        cpus.top + cpus.height + 14.0,
        LEFT + 70.0,
        LEFT + 220.0
    );
    // be1: cpu.idle as a band, quota as a line (top = no limit).
    for t in r.ticks.iter().filter(|t| t.be_idle) {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{}" fill="#ffd8a8"/>"##,
            x(t.at_s - 1.0),
            be.top,
            x(t.at_s) - x(t.at_s - 1.0),
            be.height
        );
    }
    polylines(
        &mut s,
        &r.ticks,
        &x,
        |t| Some(be.y(t.be_quota_cpus.map_or(1.0, |q| q / max))),
        "#8c564b",
    );
    let _ = writeln!(
        s,
        r##"<text x="4" y="{:.1}">be1</text><text x="{LEFT}" y="{}" fill="#8c564b">be1 quota (top: no limit)</text><text x="{}" y="{}" fill="#e8a060">shaded: be1 cpu.idle = 1</text>"##,
        be.top + be.height / 2.0,
        be.top + be.height + 14.0,
        LEFT + 170.0,
        be.top + be.height + 14.0
    );
    s.push_str("</svg>\n");
    s
}

/// One polyline per phase (no line across phase boundaries or missing values).
fn polylines(
    s: &mut String,
    ticks: &[Tick],
    x: &dyn Fn(f64) -> f64,
    y: impl Fn(&Tick) -> Option<f64>,
    color: &str,
) {
    let mut points = String::new();
    let mut phase = None;
    let flush = |points: &mut String, s: &mut String| {
        if !points.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>"#
            );
            points.clear();
        }
    };
    for t in ticks {
        if phase != Some(t.phase) {
            flush(&mut points, s);
            phase = Some(t.phase);
        }
        match y(t) {
            Some(v) => {
                let _ = write!(points, "{:.1},{v:.1} ", x(t.at_s));
            }
            None => flush(&mut points, s),
        }
    }
    flush(&mut points, s);
}
