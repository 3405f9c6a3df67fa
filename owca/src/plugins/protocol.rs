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
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex, PoisonError},
};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, MapAccess, SeqAccess, Visitor},
};
use serde_json::value::RawValue;

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

/// Most bytes in one answer line (4 MiB: a thousand tasks' allocations or anomalies take
/// well under 1 MiB).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Most anomalies in one answer.
pub const MAX_ANOMALIES: usize = 1000;
/// Most `contending_task_ids` of one anomaly.
pub const MAX_CONTENDING_TASKS: usize = 100;
/// Most metrics in one answer, the anomalies' own metrics included.
pub const MAX_METRICS: usize = 10_000;
/// Most labels of one metric.
pub const MAX_LABELS: usize = 32;
/// Longest metric name, label name or label value, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `help` text, in bytes.
pub const MAX_HELP_BYTES: usize = 1024;
/// Most tasks in one answer's `allocations`.
pub const MAX_ALLOCATIONS: usize = 10_000;
/// Distinct help texts kept since start: each is kept for the agent's life (see
/// `intern_help`), so a plug-in making up new ones every iteration must not grow the
/// agent without bound.
pub const MAX_HELP_TEXTS: usize = 1024;

/// What a plug-in answers each iteration. Counts are capped while parsing (an answer
/// over a cap is refused before the agent builds it) and [`Self::check`] checks the rest:
/// an answer over any cap is refused whole, never truncated.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Answer {
    /// Anomalies found.
    #[serde(deserialize_with = "anomalies")]
    pub anomalies: Vec<AnswerAnomaly>,
    /// Extra metrics stored with the anomalies (debugging values of the plug-in).
    #[serde(deserialize_with = "metrics")]
    pub metrics: Vec<AnswerMetric>,
    /// New allocations per task id (allocators only), as written: each is parsed when
    /// the allocator reads it, so that an error names the task.
    #[serde(deserialize_with = "allocations")]
    pub allocations: Option<BTreeMap<String, Box<RawValue>>>,
}

impl Answer {
    /// Checks what parsing could not: the metrics of all anomalies together, name and
    /// help lengths, and room for new help texts (which are kept from here on). The
    /// error says which cap was passed.
    pub fn check(&self) -> Result<(), String> {
        let metrics = self
            .anomalies
            .iter()
            .map(|a| a.metrics.len())
            .sum::<usize>()
            + self.metrics.len();
        if metrics > MAX_METRICS {
            return Err(format!(
                "{metrics} metrics, the anomalies' included: more than {MAX_METRICS}"
            ));
        }
        let all = || {
            self.anomalies
                .iter()
                .flat_map(|a| &a.metrics)
                .chain(&self.metrics)
        };
        let mut new_helps = HashSet::new();
        for m in all() {
            m.check()?;
            if let Some(help) = &m.help
                && !is_interned(help)
            {
                new_helps.insert(help.as_str());
            }
        }
        let kept = interned_count();
        if kept + new_helps.len() > MAX_HELP_TEXTS {
            return Err(format!(
                "{} new metric help texts, {kept} kept since start: more than {MAX_HELP_TEXTS} distinct help texts",
                new_helps.len()
            ));
        }
        for help in new_helps {
            intern_help(help.to_owned());
        }
        Ok(())
    }
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
    #[serde(deserialize_with = "contending_task_ids")]
    pub contending_task_ids: Vec<String>,
    #[serde(default, deserialize_with = "metrics")]
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
    #[serde(default, deserialize_with = "labels")]
    pub labels: Labels,
    #[serde(default, rename = "type")]
    pub kind: AnswerMetricType,
    #[serde(default)]
    pub help: Option<String>,
}

impl AnswerMetric {
    /// Name, label and help lengths.
    fn check(&self) -> Result<(), String> {
        let long = |what: &str, text: &str, max: usize| {
            let shown: String = text.chars().take(40).collect();
            format!(
                "{what} {shown:?}... is {} bytes: more than {max}",
                text.len()
            )
        };
        if self.name.len() > MAX_NAME_BYTES {
            return Err(long("metric name", &self.name, MAX_NAME_BYTES));
        }
        for (k, v) in &self.labels {
            if k.len() > MAX_NAME_BYTES {
                return Err(long("label name", k, MAX_NAME_BYTES));
            }
            if v.len() > MAX_NAME_BYTES {
                return Err(long("label value", v, MAX_NAME_BYTES));
            }
        }
        match &self.help {
            Some(h) if h.len() > MAX_HELP_BYTES => Err(long(
                &format!("help of metric {}", self.name),
                h,
                MAX_HELP_BYTES,
            )),
            _ => Ok(()),
        }
    }
}

impl From<AnswerMetric> for Metric {
    fn from(m: AnswerMetric) -> Self {
        let help = m.help.map_or(names::PLUGIN_METRIC_HELP, intern_help);
        let mut metric = match m.kind {
            AnswerMetricType::Gauge => Metric::gauge(m.name, help, m.value),
            AnswerMetricType::Counter => Metric::counter(m.name, help, m.value),
        };
        metric.labels = Arc::new(m.labels);
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

static HELP_TEXTS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// Help texts are `&'static str` in [`Metric`] (OWCA's are constants); plug-ins' are kept
/// once each, up to [`MAX_HELP_TEXTS`] ([`Answer::check`] refuses an answer bringing
/// more, so the fallback to the generic help is not reached for a checked answer).
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

fn is_interned(help: &str) -> bool {
    HELP_TEXTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|t| t.contains(help))
}

fn interned_count() -> usize {
    HELP_TEXTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, HashSet::len)
}

fn anomalies<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AnswerAnomaly>, D::Error> {
    d.deserialize_seq(CappedSeq::new("anomalies", MAX_ANOMALIES))
}

fn metrics<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AnswerMetric>, D::Error> {
    d.deserialize_seq(CappedSeq::new("metrics", MAX_METRICS))
}

fn contending_task_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_seq(CappedSeq::new("contending_task_ids", MAX_CONTENDING_TASKS))
}

fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    d.deserialize_map(CappedMap::new("labels", MAX_LABELS))
}

fn allocations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Box<RawValue>>>, D::Error> {
    d.deserialize_option(Optional(CappedMap::new("allocations", MAX_ALLOCATIONS)))
}

/// `null` or what the inner visitor reads.
struct Optional<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Optional<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self.0).map(Some)
    }
}

/// A sequence refused as soon as it has more than `max` items, before they are built.
struct CappedSeq<T> {
    what: &'static str,
    max: usize,
    item: PhantomData<T>,
}

impl<T> CappedSeq<T> {
    fn new(what: &'static str, max: usize) -> Self {
        Self {
            what,
            max,
            item: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for CappedSeq<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format!(
                    "more than {} {}",
                    self.max, self.what
                )));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// A mapping refused as soon as it has more than `max` keys, before they are built.
struct CappedMap<V> {
    what: &'static str,
    max: usize,
    value: PhantomData<V>,
}

impl<V> CappedMap<V> {
    fn new(what: &'static str, max: usize) -> Self {
        Self {
            what,
            max,
            value: PhantomData,
        }
    }
}

impl<'de, V: Deserialize<'de>> Visitor<'de> for CappedMap<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a mapping of at most {} {}", self.max, self.what)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        let mut n = 0;
        while let Some(key) = map.next_key::<String>()? {
            if n == self.max {
                return Err(de::Error::custom(format!(
                    "more than {} {}",
                    self.max, self.what
                )));
            }
            n += 1;
            out.insert(key, map.next_value()?);
        }
        Ok(out)
    }
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
        assert_eq!(a.allocations.unwrap()["a"].get(), r#"{"cpu_quota": 0.5}"#);
        let a: Answer = serde_json::from_str(r#"{"allocations": null}"#).unwrap();
        assert!(a.allocations.is_none());
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

    /// The reason an answer is refused for, from parsing or from [`Answer::check`].
    fn refused(text: &str) -> String {
        match serde_json::from_str::<Answer>(text) {
            Err(e) => e.to_string(),
            Ok(a) => a.check().unwrap_err(),
        }
    }

    fn anomaly(contending: usize, metrics: usize) -> String {
        let ids = vec!["\"b\""; contending].join(",");
        let metrics = vec![r#"{"name": "m", "value": 1}"#; metrics].join(",");
        format!(
            r#"{{"type": "contention", "resource": "cpus", "contended_task_id": "a", "contending_task_ids": [{ids}], "metrics": [{metrics}]}}"#
        )
    }

    #[test]
    fn answers_over_a_cap_are_refused_naming_it() {
        let at_caps = format!(
            r#"{{"anomalies": [{}], "metrics": [{}]}}"#,
            vec![anomaly(MAX_CONTENDING_TASKS, 0); MAX_ANOMALIES].join(","),
            vec![r#"{"name": "m", "value": 1}"#; MAX_METRICS].join(",")
        );
        let a: Answer = serde_json::from_str(&at_caps).unwrap();
        a.check().unwrap();
        let long = |n| "x".repeat(n);
        for (text, reason) in [
            (
                format!(
                    r#"{{"anomalies": [{}]}}"#,
                    vec![anomaly(1, 0); MAX_ANOMALIES + 1].join(",")
                ),
                "more than 1000 anomalies at line 1",
            ),
            (
                format!(
                    r#"{{"anomalies": [{}]}}"#,
                    anomaly(MAX_CONTENDING_TASKS + 1, 0)
                ),
                "more than 100 contending_task_ids",
            ),
            (
                format!(
                    r#"{{"metrics": [{}]}}"#,
                    vec![r#"{"name": "m", "value": 1}"#; MAX_METRICS + 1].join(",")
                ),
                "more than 10000 metrics",
            ),
            (
                format!(
                    r#"{{"anomalies": [{}], "metrics": [{{"name": "m", "value": 1}}]}}"#,
                    anomaly(1, MAX_METRICS)
                ),
                "10001 metrics, the anomalies' included: more than 10000",
            ),
            (
                format!(
                    r#"{{"metrics": [{{"name": "m", "value": 1, "labels": {{{}}}}}]}}"#,
                    (0..=MAX_LABELS)
                        .map(|i| format!(r#""l{i}": "v""#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "more than 32 labels",
            ),
            (
                format!(
                    r#"{{"metrics": [{{"name": "{}", "value": 1}}]}}"#,
                    long(257)
                ),
                "metric name \"xxxx",
            ),
            (
                format!(
                    r#"{{"metrics": [{{"name": "m", "value": 1, "labels": {{"k": "{}"}}}}]}}"#,
                    long(300)
                ),
                "label value \"xxx",
            ),
            (
                format!(
                    r#"{{"metrics": [{{"name": "m", "value": 1, "help": "{}"}}]}}"#,
                    long(MAX_HELP_BYTES + 1)
                ),
                "help of metric m \"xxx",
            ),
            (
                format!(
                    r#"{{"allocations": {{{}}}}}"#,
                    (0..=MAX_ALLOCATIONS)
                        .map(|i| format!(r#""t{i}": {{}}"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "more than 10000 allocations",
            ),
        ] {
            let err = refused(&text);
            assert!(err.contains(reason), "{reason}: {err}");
        }
    }

    #[test]
    fn help_texts_are_kept_once() {
        let a = intern_help("Same help.".to_owned());
        let b = intern_help("Same help.".to_owned());
        assert!(std::ptr::eq(a, b));
    }
}
