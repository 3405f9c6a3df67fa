//! The LC probe's report lines (see `owca-bench/src/lc_probe.rs`), merged over a span.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::json;

/// The probe's histogram buckets (its `BUCKETS`).
const BUCKETS: usize = 371;

/// One report line of the probe.
#[derive(Debug, Deserialize)]
pub struct Line {
    /// Unix time of the line.
    pub at: f64,
    pub p99_us: u64,
    /// (bucket, count) of the latencies since the previous line.
    pub buckets: Vec<(usize, u64)>,
}

/// Latency figures of a span of lines.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub releases: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn json(&self) -> serde_json::Value {
        json!({"releases": self.releases, "p50_us": self.p50_us, "p99_us": self.p99_us, "max_us": self.max_us})
    }
}

/// Every line of the file (none when the probe never wrote).
pub fn read(path: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("probe line {l:?}")))
        .collect()
}

/// The upper bound of a bucket in µs, as the probe defines them.
fn upper_us(b: usize) -> u64 {
    let b = b as u64;
    match b {
        0..100 => (b + 1) * 10,
        100..190 => 1_000 + (b - 99) * 100,
        190..280 => 10_000 + (b - 189) * 1_000,
        280..370 => 100_000 + (b - 279) * 10_000,
        _ => 1_000_000,
    }
}

/// The lines written in (from, to], merged. A line covers the second before it, so the
/// first line counted is the first written a second after `from`.
pub fn merge(lines: &[Line], from: f64, to: f64) -> Latency {
    let mut h = vec![0u64; BUCKETS];
    for line in lines
        .iter()
        .filter(|l| l.at > from + 0.999 && l.at <= to + 0.5)
    {
        for (b, c) in &line.buckets {
            if let Some(slot) = h.get_mut(*b) {
                *slot += c;
            }
        }
    }
    let releases: u64 = h.iter().sum();
    let at = |q: f64| {
        let rank = ((releases as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        h.iter()
            .enumerate()
            .find_map(|(b, c)| {
                seen += c;
                (seen >= rank).then(|| upper_us(b))
            })
            .unwrap_or(0)
    };
    Latency {
        releases,
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: h.iter().rposition(|c| *c > 0).map_or(0, upper_us),
    }
}
