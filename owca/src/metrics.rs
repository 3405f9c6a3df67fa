//! The `Metric` value type and OWCA's metric names: what is measured, never how it is
//! written out (only `storage` knows output formats).

use std::collections::BTreeMap;

/// Label names to values; ordered so that output is stable.
pub type Labels = BTreeMap<String, String>;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Histogram,
}

/// One sample of one metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Family name, e.g. `task_runqueue_latency_seconds`.
    pub name: String,
    /// Sample suffix within the family: `""`, or `_bucket`, `_sum`, `_count` for histograms.
    pub suffix: &'static str,
    pub labels: Labels,
    pub value: f64,
    pub kind: MetricType,
    pub help: &'static str,
}

impl Metric {
    /// A gauge sample.
    pub fn gauge(name: impl Into<String>, help: &'static str, value: f64) -> Self {
        Self::new(name, MetricType::Gauge, help, value)
    }

    /// A counter sample (monotonic since the counter's origin).
    pub fn counter(name: impl Into<String>, help: &'static str, value: f64) -> Self {
        Self::new(name, MetricType::Counter, help, value)
    }

    fn new(name: impl Into<String>, kind: MetricType, help: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            suffix: "",
            labels: Labels::new(),
            value,
            kind,
            help,
        }
    }

    /// Adds or replaces one label.
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Adds labels, keeping those already set.
    pub fn with_labels<'a>(mut self, labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        for (k, v) in labels {
            self.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self
    }
}
