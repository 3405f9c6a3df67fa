//! `!ContentionDetector`: flags a latency-critical task slowed down by the other tasks.
//!
//! Judged are the tasks that look latency-critical: those matching `latency_critical`
//! labels when given, otherwise those that blocked often (`min_voluntary_switches` per
//! second on CPU: a request/response or periodic task does, a batch spinner does not) in
//! one of the last [`REMEMBERED_INTERVALS`] intervals: a contended periodic task falls
//! behind and stops blocking, just when it matters.
//! Two signals, each judged over the last interval from the task's counters:
//! - **run-queue wait**: seconds its threads waited while other watched tasks ran, per
//!   second they ran (`TaskData::contenders`, counted in the kernel at each switch). Waits
//!   behind unwatched processes and the task's own CFS quota (`own_quota`) blame nobody.
//!   The contending tasks are the ones that ran instead, largest wait first. Resource
//!   `cpus`.
//! - **CPI** (cycles per instruction, where the PMU counts both): an outlier against the
//!   task's own recent history, CPI²-style (mean + `cpi_stddevs` standard deviations;
//!   [`super::cpi`], shared with `!CollocationAllocator`'s `rdt` lever).
//!   A rise in CPI is the mark of caches and memory shared with noisy neighbours, which
//!   run on other CPUs at the same time: the contending tasks are the ones that took its
//!   CPUs in the interval if any, else the busiest other tasks. Resource `cache`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    Detection,
    cpi::{CpiSettings, CpiTracker},
    waits::{WaitInterval, WaitTracker},
};
use crate::{
    anomaly::{ContendedResource, ContentionAnomaly},
    measurements::Observation,
    metrics::{
        Metric,
        names::{
            CPI, CPI_HELP, CPI_THRESHOLD, CPI_THRESHOLD_HELP, WAIT_RATIO, WAIT_RATIO_HELP,
            WAIT_THRESHOLD, WAIT_THRESHOLD_HELP,
        },
    },
    nodes::LabelMatcher,
};

/// How long a task that blocked often keeps looking latency-critical, in intervals.
pub const REMEMBERED_INTERVALS: u64 = 60;

/// `!ContentionDetector` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentionDetectorConfig {
    /// Seconds waited on a run queue while other watched tasks ran, per second on a CPU,
    /// at or above which a task is contended (default 0.5: it waited a third of the time
    /// it wanted to run).
    pub runqueue_wait_threshold: f64,
    /// That wait in seconds per second below which a task is not judged: a task that
    /// barely runs has noisy ratios (default 0.05).
    pub min_runqueue_wait: f64,
    /// Share of a task's wait that another task must have caused to be named (default 0.1).
    pub min_contender_share: f64,
    /// Label name → regex of its value (matched from its start): the tasks judged, any
    /// label matching. Unset: the tasks that block at least `min_voluntary_switches`.
    pub latency_critical: Option<BTreeMap<String, String>>,
    /// Voluntary context switches per second on CPU that make a task look
    /// latency-critical when `latency_critical` is unset, in one of the last 60 intervals
    /// (default 20; 0 judges every task).
    pub min_voluntary_switches: f64,
    /// CPUs a task must have used in the interval to be named as a busiest task, or to
    /// have its CPI judged (default 0.1).
    pub min_contender_cpus: f64,
    /// Most contending tasks named per anomaly (default 3).
    pub max_contenders: usize,
    /// CPI samples kept per task (default 30).
    pub cpi_history: usize,
    /// Samples needed before a task's CPI is judged (default 10).
    pub cpi_min_samples: usize,
    /// Standard deviations above the task's mean CPI that make an outlier (default 3).
    pub cpi_stddevs: f64,
}

impl Default for ContentionDetectorConfig {
    fn default() -> Self {
        Self {
            runqueue_wait_threshold: 0.5,
            min_runqueue_wait: 0.05,
            min_contender_share: 0.1,
            latency_critical: None,
            min_voluntary_switches: 20.0,
            min_contender_cpus: 0.1,
            max_contenders: 3,
            cpi_history: 30,
            cpi_min_samples: 10,
            cpi_stddevs: 3.0,
        }
    }
}

/// Why the settings cannot work.
#[derive(Debug, thiserror::Error)]
#[error("ContentionDetector: latency_critical.{label}: {error}")]
pub struct ContentionDetectorError {
    /// The label whose pattern is wrong.
    label: String,
    /// What the regex parser said.
    error: String,
}

/// The detector and each task's previous counters and CPI history.
#[derive(Debug)]
pub struct ContentionDetector {
    cfg: ContentionDetectorConfig,
    latency_critical: Option<LabelMatcher>,
    waits: WaitTracker,
    /// Intervals judged so far, and the last one in which each task blocked often.
    intervals: u64,
    blocked_often: BTreeMap<String, u64>,
    cpi: CpiTracker,
}

impl ContentionDetector {
    /// Compiles the `latency_critical` patterns.
    pub fn new(cfg: ContentionDetectorConfig) -> Result<Self, ContentionDetectorError> {
        let latency_critical = cfg
            .latency_critical
            .as_ref()
            .map(LabelMatcher::compile)
            .transpose()
            .map_err(|e| ContentionDetectorError {
                label: e.label,
                error: e.error,
            })?;
        let cpi = CpiTracker::new(CpiSettings {
            history: cfg.cpi_history,
            min_samples: cfg.cpi_min_samples,
            stddevs: cfg.cpi_stddevs,
        });
        Ok(Self {
            cfg,
            latency_critical,
            waits: WaitTracker::default(),
            intervals: 0,
            blocked_often: BTreeMap::new(),
            cpi,
        })
    }

    /// Whether `id` is judged: labelled latency-critical, or blocking often lately.
    fn judged(&mut self, obs: &Observation, id: &str, i: &WaitInterval) -> bool {
        match &self.latency_critical {
            Some(patterns) => obs
                .tasks
                .get(id)
                .is_some_and(|t| patterns.matches(&t.labels)),
            None => {
                let now = i
                    .voluntary
                    .is_none_or(|v| i.per_cpu_second(v) >= self.cfg.min_voluntary_switches);
                if now {
                    self.blocked_often.insert(id.to_owned(), self.intervals);
                }
                self.blocked_often
                    .get(id)
                    .is_some_and(|at| self.intervals - at < REMEMBERED_INTERVALS)
            }
        }
    }

    /// Judges the interval since the previous observation; the first finds nothing.
    pub fn detect(&mut self, obs: &Observation) -> Detection {
        let intervals = self.waits.intervals(obs);
        let cpis = self.cpi.cpis(obs);
        self.blocked_often
            .retain(|id, _| obs.tasks.contains_key(id));
        self.intervals += 1;

        let mut busiest: Vec<(&str, f64)> = intervals
            .iter()
            .filter(|(_, i)| i.cpus() >= self.cfg.min_contender_cpus)
            .map(|(id, i)| (id.as_str(), i.cpus()))
            .collect();
        busiest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));

        let mut anomalies = Vec::new();
        for (id, i) in &intervals {
            if !self.judged(obs, id, i) {
                continue;
            }
            let by: Vec<(&str, f64)> = i.contenders(id);
            let waited: f64 = by.iter().map(|(_, d)| d).sum();
            let named: Vec<String> = by
                .iter()
                .filter(|(_, d)| *d >= self.cfg.min_contender_share * waited)
                .take(self.cfg.max_contenders)
                .map(|(who, _)| (*who).to_owned())
                .collect();
            let per_cpu_second = i.per_cpu_second(waited);
            if waited / i.seconds >= self.cfg.min_runqueue_wait
                && per_cpu_second >= self.cfg.runqueue_wait_threshold
                && !named.is_empty()
            {
                anomalies.push(anomaly(
                    ContendedResource::Cpus,
                    id,
                    named.clone(),
                    [
                        (WAIT_RATIO, WAIT_RATIO_HELP, per_cpu_second),
                        (
                            WAIT_THRESHOLD,
                            WAIT_THRESHOLD_HELP,
                            self.cfg.runqueue_wait_threshold,
                        ),
                    ],
                ));
            }
            if let Some(&cpi) = cpis.get(id)
                && i.cpus() >= self.cfg.min_contender_cpus
                && let Some(threshold) = self.cpi.judge(id, cpi)
            {
                let contending = if named.is_empty() {
                    busiest
                        .iter()
                        .filter(|(other, _)| other != id)
                        .take(self.cfg.max_contenders)
                        .map(|(other, _)| (*other).to_owned())
                        .collect()
                } else {
                    named
                };
                if !contending.is_empty() {
                    anomalies.push(anomaly(
                        ContendedResource::Cache,
                        id,
                        contending,
                        [
                            (CPI, CPI_HELP, cpi),
                            (CPI_THRESHOLD, CPI_THRESHOLD_HELP, threshold),
                        ],
                    ));
                }
            }
        }
        Detection {
            anomalies,
            metrics: vec![],
        }
    }
}

fn anomaly<const N: usize>(
    resource: ContendedResource,
    id: &str,
    contending: Vec<String>,
    values: [(&'static str, &'static str, f64); N],
) -> ContentionAnomaly {
    ContentionAnomaly {
        resource,
        contended_task_id: id.to_owned(),
        contending_task_ids: contending,
        metrics: values
            .into_iter()
            .map(|(name, help, v)| Metric::gauge(name, help, v).with_label("contended_task_id", id))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
