//! The Prometheus encoder: samples with any names, suffixes, types, help texts, own and
//! shared label keys and values (names drawn from a small pool so that families, series
//! and label sets collide often, or made up) give text that the strict reader of
//! `owca_fuzz::prom_text` accepts, and every sample is either in the text or counted as
//! dropped; the chunked encoding `!LogStorage` writes gives the same text.
#![no_main]

use std::{collections::BTreeMap, sync::Arc};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use owca::{
    metrics::{Labels, Metric, MetricType},
    storage::prometheus::{Encoder, encode},
};

const NAMES: &[&str] = &[
    "a", "a_bucket", "a_sum", "a_count", "b", "b_total", ":c", "_", "le", "0a", "", "a-b", "\u{e9}",
];
const KEYS: &[&str] = &[
    "le", "a", "b", "quantile", "host", "__name__", "__a", "_", "0", "", "a b", "task_id",
];
const VALUES: &[&str] = &[
    "1",
    "+Inf",
    "-Inf",
    "NaN",
    "0.5",
    "1e3",
    "x",
    "",
    "\\",
    "\"",
    "\n",
    "\\n",
    "}",
    ",",
    "\u{0}",
    "\u{1f980}",
];
const HELPS: &[&str] = &[
    "",
    "Help.",
    "back\\slash",
    "new\nline",
    "\\n literal",
    "# TYPE a gauge",
    " ",
    "\u{1f980}",
];
const SUFFIXES: &[&str] = &["", "_bucket", "_sum", "_count", "_total"];

#[derive(Debug, Arbitrary)]
enum Text {
    Pool(u8),
    Any(String),
}

impl Text {
    fn get(&self, pool: &[&str]) -> String {
        match self {
            Self::Pool(i) => pool[usize::from(*i) % pool.len()].to_owned(),
            Self::Any(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Sample {
    name: Text,
    suffix: u8,
    kind: u8,
    help: u8,
    own: Vec<(Text, Text)>,
    /// Index into `Input::shared`; out of range is no shared labels.
    shared: u8,
    value: f64,
}

#[derive(Debug, Arbitrary)]
struct Input {
    shared: Vec<Vec<(Text, Text)>>,
    samples: Vec<Sample>,
}

fn labels(pairs: &[(Text, Text)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.get(KEYS), v.get(VALUES)))
        .collect::<BTreeMap<_, _>>()
}

fuzz_target!(|input: Input| {
    // Equal sets behind different Arcs must count as the same series: every set is
    // shared twice over, by even and odd indices.
    let shared: Vec<Arc<Labels>> = input
        .shared
        .iter()
        .flat_map(|pairs| {
            let set = labels(pairs);
            [Arc::new(set.clone()), Arc::new(set)]
        })
        .collect();
    let metrics: Vec<Metric> = input
        .samples
        .iter()
        .map(|s| {
            let kind = [
                MetricType::Gauge,
                MetricType::Counter,
                MetricType::Histogram,
            ][usize::from(s.kind) % 3];
            let help = HELPS[usize::from(s.help) % HELPS.len()];
            let mut m = match kind {
                MetricType::Counter => Metric::counter(s.name.get(NAMES), help, s.value),
                _ => Metric::gauge(s.name.get(NAMES), help, s.value),
            };
            m.kind = kind;
            m.suffix = SUFFIXES[usize::from(s.suffix) % SUFFIXES.len()];
            m.labels = Arc::new(labels(&s.own));
            m.shared = shared.get(usize::from(s.shared)).cloned();
            m
        })
        .collect();
    let encoded = encode(&metrics);
    let samples = owca_fuzz::prom_text::check(&encoded.text)
        .unwrap_or_else(|e| panic!("{e}\n--- text:\n{}", encoded.text));
    assert_eq!(
        samples.len() + encoded.dropped(),
        metrics.len(),
        "{encoded:?}"
    );
    let mut chunked = String::new();
    let counts = Encoder::default()
        .encode_to(&metrics, |text| {
            chunked.push_str(text);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("writing into a String failed: {e}"));
    assert_eq!(chunked, encoded.text);
    assert_eq!(counts.dropped(), encoded.dropped());
});
