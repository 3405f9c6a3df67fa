//! The LC probe's report lines (see `owca-bench/src/lc_probe.rs`), merged over a span.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::json;

/// One report line of the probe.
#[derive(Debug, Deserialize)]
pub struct Line {
    /// Unix time of the line.
    pub at: f64,
    pub p99_us: u64,
    /// (bucket's upper bound in µs, count) of the latencies since the previous line.
    pub buckets: Vec<(u64, u64)>,
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

/// The lines written in (from, to], merged. A line covers the second before it, so the
/// first line counted is the first written a second after `from`.
pub fn merge(lines: &[Line], from: f64, to: f64) -> Latency {
    merge_spans(lines, &[(from, to + 0.5)])
}

/// The lines whose second lies wholly within one of the spans (from, to], merged: a line
/// written at `at` covers (at - 1, at].
pub fn merge_spans(lines: &[Line], spans: &[(f64, f64)]) -> Latency {
    // Upper bound → count, in order.
    let mut h: BTreeMap<u64, u64> = BTreeMap::new();
    for line in lines.iter().filter(|l| {
        spans
            .iter()
            .any(|&(from, to)| l.at > from + 0.999 && l.at <= to)
    }) {
        for (upper, c) in &line.buckets {
            *h.entry(*upper).or_default() += c;
        }
    }
    let releases: u64 = h.values().sum();
    let at = |q: f64| {
        let rank = ((releases as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        h.iter()
            .find_map(|(upper, c)| {
                seen += c;
                (seen >= rank).then_some(*upper)
            })
            .unwrap_or(0)
    };
    Latency {
        releases,
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: h.keys().next_back().copied().unwrap_or(0),
    }
}
