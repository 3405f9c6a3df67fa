//! OWCA's anomaly model, shared by detectors, allocators and plug-ins, and its encoding as
//! metrics exactly as OWCA encoded them, so that existing dashboards and consumers of the
//! anomalies topic keep working.

use std::{sync::Arc, time::SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::metrics::{Labels, Metric, names};

/// OWCA's value of `contending_workload_instance` when the contending task has no
/// `workload_instance` label.
const WORKLOAD_NOT_FOUND: &str = "workload not found";

/// The resource a task is contended on (OWCA's `ContendedResource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ContendedResource {
    #[serde(rename = "memory bandwidth")]
    MemoryBandwidth,
    #[serde(rename = "cache")]
    Cache,
    #[serde(rename = "cpus")]
    Cpus,
    #[serde(rename = "thermal design power")]
    ThermalDesignPower,
    #[serde(rename = "unknown resource")]
    Unknown,
}

impl ContendedResource {
    /// The `resource` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemoryBandwidth => "memory bandwidth",
            Self::Cache => "cache",
            Self::Cpus => "cpus",
            Self::ThermalDesignPower => "thermal design power",
            Self::Unknown => "unknown resource",
        }
    }
}

/// A task slowed down by others sharing a resource with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentionAnomaly {
    /// What they contend on.
    pub resource: ContendedResource,
    /// The task that suffers.
    pub contended_task_id: String,
    /// The tasks blamed for it.
    pub contending_task_ids: Vec<String>,
    /// What the detector saw (thresholds, measured values); stored with `uuid` and
    /// `type="anomaly"` labels.
    pub metrics: Vec<Metric>,
}

impl ContentionAnomaly {
    /// Identifies the combination of tasks: the first 16 bytes of the sha256 of the sorted
    /// task ids joined by `,`, formatted as a UUID (OWCA's `_create_uuid_from_tasks_ids`).
    pub fn uuid(&self) -> String {
        let mut ids: Vec<&str> = std::iter::once(self.contended_task_id.as_str())
            .chain(self.contending_task_ids.iter().map(String::as_str))
            .collect();
        ids.sort_unstable();
        let digest = Sha256::digest(ids.join(",").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Uuid::from_bytes(bytes).to_string()
    }
}

/// Why an anomaly could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    /// The anomaly names a task the node does not run (any more).
    #[error("anomaly names task {task_id}, which is not among this iteration's tasks")]
    UnknownTask {
        /// The unknown task id.
        task_id: String,
    },
}

/// The metrics that encode `anomalies`: one `anomaly` sample (value 1) per contending task,
/// labelled `contended_task_id`, `contending_task_id`, `resource`, `uuid`,
/// `type="contention"`, the contended task's labels and `contending_workload_instance`; then
/// each anomaly's own metrics with `uuid` and `type="anomaly"`. `common` labels are shared
/// by every sample. `labels_of` gives a task's labels (`None` for a task the node does not
/// run); anomalies naming unknown tasks are left out and returned as errors.
pub fn anomaly_metrics<'a>(
    anomalies: &[ContentionAnomaly],
    labels_of: impl Fn(&str) -> Option<&'a Labels>,
    common: &Arc<Labels>,
) -> (Vec<Metric>, Vec<AnomalyError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for anomaly in anomalies {
        let unknown = std::iter::once(&anomaly.contended_task_id)
            .chain(&anomaly.contending_task_ids)
            .find(|id| labels_of(id).is_none());
        if let Some(id) = unknown {
            errors.push(AnomalyError::UnknownTask {
                task_id: id.clone(),
            });
            continue;
        }
        let uuid = anomaly.uuid();
        let Some(contended) = labels_of(&anomaly.contended_task_id) else {
            continue;
        };
        for contending in &anomaly.contending_task_ids {
            let instance = labels_of(contending)
                .and_then(|l| l.get("workload_instance"))
                .map_or(WORKLOAD_NOT_FOUND, String::as_str);
            // The anomaly's own labels win over a task label of the same name: they are
            // what makes the sample an anomaly.
            let mut labels = contended.clone();
            labels.extend(
                [
                    ("contended_task_id", anomaly.contended_task_id.as_str()),
                    ("contending_task_id", contending.as_str()),
                    ("resource", anomaly.resource.as_str()),
                    ("uuid", uuid.as_str()),
                    ("type", "contention"),
                    ("contending_workload_instance", instance),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            let mut m = Metric::counter(names::ANOMALY, names::ANOMALY_HELP, 1.0);
            m.labels = Arc::new(labels);
            out.push(m.with_shared(common));
        }
        for m in &anomaly.metrics {
            let mut m = m.clone();
            let own = Arc::make_mut(&mut m.labels);
            // As OWCA: a metric about the contended task gets that task's labels too.
            if let Some(task_labels) = own.get("contended_task_id").and_then(|id| labels_of(id)) {
                for (k, v) in task_labels {
                    own.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            own.insert("uuid".to_owned(), uuid.clone());
            own.insert("type".to_owned(), "anomaly".to_owned());
            out.push(m.with_shared(common));
        }
    }
    (out, errors)
}

/// OWCA's anomaly statistics: `anomaly_count` (anomalies so far) and
/// `anomaly_last_occurrence` (Unix time of the last iteration that had one).
#[derive(Debug, Default)]
pub struct AnomalyStatistics {
    count: u64,
    last_occurrence: Option<f64>,
}

impl AnomalyStatistics {
    /// One iteration's anomaly package: `anomalies` encoded (see [`anomaly_metrics`]),
    /// then `extra` metrics, then the statistics, which count the anomalies stored.
    /// Anomalies naming unknown tasks are left out and returned as errors.
    pub fn package<'a>(
        &mut self,
        anomalies: &[ContentionAnomaly],
        labels_of: impl Fn(&str) -> Option<&'a Labels>,
        extra: impl IntoIterator<Item = Metric>,
        common: &Arc<Labels>,
    ) -> (Vec<Metric>, Vec<AnomalyError>) {
        let (mut out, errors) = anomaly_metrics(anomalies, labels_of, common);
        out.extend(extra.into_iter().map(|m| m.with_shared(common)));
        out.extend(self.update(anomalies.len() - errors.len(), common));
        (out, errors)
    }

    /// Counts this iteration's anomalies and returns the statistics metrics.
    pub fn update(&mut self, anomalies: usize, common: &Arc<Labels>) -> Vec<Metric> {
        if anomalies > 0 {
            self.count += anomalies as u64;
            self.last_occurrence = Some(unix_now());
        }
        let mut out = vec![Metric::counter(
            names::ANOMALY_COUNT,
            names::ANOMALY_COUNT_HELP,
            self.count as f64,
        )];
        if let Some(t) = self.last_occurrence {
            out.push(Metric::counter(
                names::ANOMALY_LAST_OCCURRENCE,
                names::ANOMALY_LAST_OCCURRENCE_HELP,
                t,
            ));
        }
        out.into_iter().map(|m| m.with_shared(common)).collect()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn task(labels: &[(&str, &str)]) -> Labels {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn anomaly(metrics: Vec<Metric>) -> ContentionAnomaly {
        ContentionAnomaly {
            resource: ContendedResource::Cache,
            contended_task_id: "task1".into(),
            contending_task_ids: vec!["task3".into(), "task2".into()],
            metrics,
        }
    }

    #[test]
    fn uuid_is_the_head_of_the_sha256_of_the_sorted_ids() {
        let a = anomaly(vec![]);
        assert_eq!(a.uuid(), KNOWN_UUID);
        // Order of the contending tasks does not matter.
        let mut b = a.clone();
        b.contending_task_ids.reverse();
        assert_eq!(a.uuid(), b.uuid());
    }

    /// `printf 'task1,task2,task3' | sha256sum | cut -c1-32`, dashed as a UUID; the same
    /// as OWCA's `str(uuid.UUID(bytes=hashlib.sha256(b'task1,task2,task3').digest()[:16]))`.
    const KNOWN_UUID: &str = "4a0e6059-72ec-173c-cc80-3c5a0dba906a";

    #[test]
    fn encodes_one_anomaly_sample_per_contending_task_and_tags_its_metrics() {
        let tasks: BTreeMap<String, Labels> = [
            (
                "task1",
                task(&[("application", "cassandra"), ("task_id", "task1")]),
            ),
            ("task2", task(&[("workload_instance", "redis--1")])),
            ("task3", task(&[])),
        ]
        .into_iter()
        .map(|(id, t)| (id.to_owned(), t))
        .collect();
        let common = Arc::new(Labels::from([("host".to_owned(), "node1".to_owned())]));
        let cpi = Metric::gauge("cpi", "Cycles per instruction.", 10.0)
            .with_label("contended_task_id", "task1");
        let (m, errors) = anomaly_metrics(&[anomaly(vec![cpi])], |id| tasks.get(id), &common);
        assert!(errors.is_empty());
        assert_eq!(m.len(), 3);
        let uuid = anomaly(vec![]).uuid();
        for (sample, contending, instance) in [
            (&m[0], "task3", WORKLOAD_NOT_FOUND),
            (&m[1], "task2", "redis--1"),
        ] {
            assert_eq!(sample.name, "anomaly");
            assert_eq!(sample.value, 1.0);
            let expected: Labels = [
                ("application", "cassandra"),
                ("task_id", "task1"),
                ("contended_task_id", "task1"),
                ("contending_task_id", contending),
                ("resource", "cache"),
                ("uuid", &uuid),
                ("type", "contention"),
                ("contending_workload_instance", instance),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            assert_eq!(*sample.labels, expected);
            assert_eq!(sample.label("host"), Some("node1"));
        }
        assert_eq!(m[2].name, "cpi");
        assert_eq!(m[2].labels["type"], "anomaly");
        assert_eq!(m[2].labels["uuid"], uuid);
        assert_eq!(m[2].labels["application"], "cassandra");

        let stray = ContentionAnomaly {
            contended_task_id: "gone".into(),
            ..anomaly(vec![])
        };
        let (m, errors) = anomaly_metrics(&[stray], |id| tasks.get(id), &common);
        assert!(m.is_empty());
        assert!(errors[0].to_string().contains("gone"), "{}", errors[0]);
    }

    #[test]
    fn statistics_count_anomalies_and_remember_the_last_time() {
        let common = Arc::new(Labels::new());
        let mut s = AnomalyStatistics::default();
        let m = s.update(0, &common);
        assert_eq!((m.len(), m[0].value), (1, 0.0));
        let before = unix_now();
        let m = s.update(2, &common);
        assert_eq!(m[0].value, 2.0);
        assert!(m[1].value >= before, "{m:?}");
        assert_eq!(s.update(0, &common)[0].value, 2.0);
    }

    #[test]
    fn a_package_is_anomalies_then_extra_metrics_then_statistics() {
        let tasks: BTreeMap<String, Labels> = ["task1", "task2", "task3"]
            .map(|id| (id.to_owned(), task(&[])))
            .into();
        let stray = ContentionAnomaly {
            contended_task_id: "gone".into(),
            ..anomaly(vec![])
        };
        let extra = Metric::gauge("score", "A plug-in's score.", 3.0);
        let mut s = AnomalyStatistics::default();
        let (m, errors) = s.package(
            &[anomaly(vec![]), stray],
            |id| tasks.get(id),
            [extra],
            &Arc::default(),
        );
        assert_eq!(errors.len(), 1);
        let names: Vec<&str> = m.iter().map(|m| &*m.name).collect();
        assert_eq!(
            names,
            [
                "anomaly",
                "anomaly",
                "score",
                "anomaly_count",
                "anomaly_last_occurrence"
            ]
        );
        assert_eq!(m[3].value, 1.0, "only the stored anomaly is counted");
        assert!(m[2].shared.is_some());
    }
}
