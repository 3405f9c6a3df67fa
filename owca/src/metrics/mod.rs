//! The `Metric` value type, every metric name and HELP text ([`names`]) and the rules for
//! label names ([`labels`]): what is measured, never how it is written out (only `storage`
//! knows output formats).

pub mod labels;
pub mod names;
mod self_metrics;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{Arc, LazyLock},
};

pub use self::self_metrics::SelfMetrics;

/// Label names to values; ordered so that output is stable.
pub type Labels = BTreeMap<String, String>;

/// The empty label set every new sample starts from (cloning it allocates nothing).
static NO_LABELS: LazyLock<Arc<Labels>> = LazyLock::new(Arc::default);

/// A one-label set, to be shared by many samples through [`Metric::with_labels`].
pub fn label_set(name: &str, value: &str) -> Arc<Labels> {
    Arc::new(Labels::from([(name.to_owned(), value.to_owned())]))
}

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
    /// Family name, e.g. `task_runqueue_latency_seconds`; borrowed for OWCA's fixed names
    /// so that thousands of samples allocate none.
    pub name: Cow<'static, str>,
    /// Sample suffix within the family: `""`, or `_bucket`, `_sum`, `_count` for histograms.
    pub suffix: &'static str,
    /// Labels of this sample alone (e.g. `le`, `kind`); they win over `shared` ones.
    /// Behind an `Arc` so that the sets thousands of samples have in common (a histogram
    /// bucket's `le`, a contender's `by_task_id`) are built once, not per sample.
    pub labels: Arc<Labels>,
    /// Labels many samples carry (a task's, the node's): shared rather than copied into
    /// each sample, so that thousands of tasks cost no more than they must.
    pub shared: Option<Arc<Labels>>,
    pub value: f64,
    pub kind: MetricType,
    pub help: &'static str,
}

impl Metric {
    /// A gauge sample.
    pub fn gauge(name: impl Into<Cow<'static, str>>, help: &'static str, value: f64) -> Self {
        Self::new(name, MetricType::Gauge, help, value)
    }

    /// A counter sample (monotonic since the counter's origin).
    pub fn counter(name: impl Into<Cow<'static, str>>, help: &'static str, value: f64) -> Self {
        Self::new(name, MetricType::Counter, help, value)
    }

    fn new(
        name: impl Into<Cow<'static, str>>,
        kind: MetricType,
        help: &'static str,
        value: f64,
    ) -> Self {
        Self {
            name: name.into(),
            suffix: "",
            labels: Arc::clone(&NO_LABELS),
            shared: None,
            value,
            kind,
            help,
        }
    }

    /// Adds or replaces one label.
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.labels).insert(name.into(), value.into());
        self
    }

    /// Sets the own labels to a set built once for many samples.
    pub fn with_labels(mut self, labels: &Arc<Labels>) -> Self {
        self.labels = Arc::clone(labels);
        self
    }

    /// Sets the shared labels.
    pub fn with_shared(mut self, shared: &Arc<Labels>) -> Self {
        self.shared = Some(Arc::clone(shared));
        self
    }

    /// The value of a label, own or shared.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .get(name)
            .or_else(|| self.shared.as_ref()?.get(name))
            .map(String::as_str)
    }
}
