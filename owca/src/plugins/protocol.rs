//! The plug-in protocol, one JSON object per line:
//!
//! 1. once, after start: `{"config": {...}}` (the tag's YAML mapping);
//! 2. each iteration, to the plug-in: an [`Observation`](crate::measurements::Observation),
//!    `{"platform": {...}, "tasks": {"<task_id>": {"measurements", "resources", "labels",
//!    "allocations"}}}`;
//! 3. each iteration, from the plug-in: an [`Answer`], `{"anomalies": [...], "metrics":
//!    [...], "allocations": {...}}`, every key optional.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Mutex, PoisonError},
};

use serde::{Deserialize, Serialize};

use crate::{
    anomaly::{ContendedResource, ContentionAnomaly},
    metrics::{Labels, Metric, names},
};

/// The first line a plug-in reads.
#[derive(Debug, Serialize)]
pub struct ConfigLine<'a> {
    /// The plug-in's settings from the agent's config file.
    pub config: &'a serde_json::Value,
}

/// What a plug-in answers each iteration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Answer {
    /// Anomalies found.
    pub anomalies: Vec<AnswerAnomaly>,
    /// Extra metrics stored with the anomalies (debugging values of the plug-in).
    pub metrics: Vec<AnswerMetric>,
    /// New allocations per task id (allocators only).
    pub allocations: Option<BTreeMap<String, serde_json::Value>>,
}

/// The kinds of anomalies OWCA knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyType {
    Contention,
}

/// An anomaly as a plug-in writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerAnomaly {
    /// Always `contention`.
    #[serde(rename = "type")]
    pub kind: AnomalyType,
    /// `memory bandwidth`, `cache`, `cpus`, `thermal design power` or `unknown resource`.
    pub resource: ContendedResource,
    pub contended_task_id: String,
    pub contending_task_ids: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<AnswerMetric>,
}

/// `gauge` (default) or `counter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMetricType {
    #[default]
    Gauge,
    Counter,
}

/// A metric as a plug-in writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerMetric {
    pub name: String,
    pub value: f64,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default, rename = "type")]
    pub kind: AnswerMetricType,
    #[serde(default)]
    pub help: Option<String>,
}

impl From<AnswerMetric> for Metric {
    fn from(m: AnswerMetric) -> Self {
        let help = m.help.map_or(names::PLUGIN_METRIC_HELP, intern_help);
        let mut metric = match m.kind {
            AnswerMetricType::Gauge => Metric::gauge(m.name, help, m.value),
            AnswerMetricType::Counter => Metric::counter(m.name, help, m.value),
        };
        metric.labels = m.labels;
        metric
    }
}

impl From<AnswerAnomaly> for ContentionAnomaly {
    fn from(a: AnswerAnomaly) -> Self {
        Self {
            resource: a.resource,
            contended_task_id: a.contended_task_id,
            contending_task_ids: a.contending_task_ids,
            metrics: a.metrics.into_iter().map(Metric::from).collect(),
        }
    }
}

/// Distinct help texts kept; a plug-in that makes up new ones every iteration must not
/// grow the agent without bound.
const MAX_HELP_TEXTS: usize = 1024;

static HELP_TEXTS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// Help texts are `&'static str` in [`Metric`] (OWCA's are constants); plug-ins' are kept
/// once each, up to [`MAX_HELP_TEXTS`].
fn intern_help(help: String) -> &'static str {
    let mut texts = HELP_TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    let texts = texts.get_or_insert_with(HashSet::new);
    if let Some(t) = texts.get(help.as_str()) {
        return t;
    }
    if texts.len() >= MAX_HELP_TEXTS {
        return names::PLUGIN_METRIC_HELP;
    }
    let t: &'static str = Box::leak(help.into_boxed_str());
    texts.insert(t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_every_key_optional() {
        let a: Answer = serde_json::from_str("{}").unwrap();
        assert!(a.anomalies.is_empty() && a.metrics.is_empty() && a.allocations.is_none());
        let a: Answer = serde_json::from_str(
            r#"{"anomalies": [{"type": "contention", "resource": "memory bandwidth",
                "contended_task_id": "a", "contending_task_ids": ["b"],
                "metrics": [{"name": "cpi", "value": 2.5, "labels": {"x": "1"}, "help": "CPI."}]}],
                "metrics": [{"name": "m", "value": 1, "type": "counter"}],
                "allocations": {"a": {"cpu_quota": 0.5}}}"#,
        )
        .unwrap();
        let anomaly = ContentionAnomaly::from(a.anomalies.into_iter().next().unwrap());
        assert_eq!(anomaly.resource, ContendedResource::MemoryBandwidth);
        assert_eq!(anomaly.metrics[0].help, "CPI.");
        assert_eq!(anomaly.metrics[0].labels["x"], "1");
        let m = Metric::from(a.metrics.into_iter().next().unwrap());
        assert_eq!(
            (m.kind, m.help),
            (
                crate::metrics::MetricType::Counter,
                names::PLUGIN_METRIC_HELP
            )
        );
        assert_eq!(a.allocations.unwrap()["a"]["cpu_quota"], 0.5);
    }

    #[test]
    fn wrong_answers_are_rejected_with_the_reason() {
        for (text, reason) in [
            (r#"{"anomalys": []}"#, "unknown field `anomalys`"),
            (
                r#"{"anomalies": [{"type": "contention", "resource": "disk", "contended_task_id": "a", "contending_task_ids": []}]}"#,
                "unknown variant `disk`",
            ),
            (r#"{"metrics": [{"name": "m"}]}"#, "missing field `value`"),
        ] {
            let err = serde_json::from_str::<Answer>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn help_texts_are_kept_once() {
        let a = intern_help("Same help.".to_owned());
        let b = intern_help("Same help.".to_owned());
        assert!(std::ptr::eq(a, b));
    }
}
