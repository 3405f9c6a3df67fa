//! `!ContentionDetector`: flags a task slowed down by others on the CPUs.
//!
//! Two signals, each judged over the last interval from the task's counters:
//! - **run-queue wait**: seconds its threads waited to run per second they ran
//!   (`task_runqueue_latency_seconds_sum` / `task_oncpu_seconds_total`, from the eBPF
//!   collector). Two busy loops sharing one CPU each wait about a second per second run.
//!   Resource `cpus`.
//! - **CPI** (cycles per instruction, where the PMU counts both): an outlier against the
//!   task's own recent history, CPI²-style (mean + `cpi_stddevs` standard deviations).
//!   A rise in CPI is the mark of caches and memory shared with noisy neighbours.
//!   Resource `cache`.
//!
//! The contending tasks are the other tasks that used the most CPU in the interval. The
//! detector sees no per-CPU placement, so on a node with cpusets it may name a task that
//! runs on other CPUs; only tasks using at least `min_contender_cpus` are named, and a
//! task waiting with no such task around (contention from outside the node's tasks) is
//! not reported.

use std::collections::{BTreeMap, VecDeque};

use serde::Deserialize;

use super::Detection;
use crate::{
    anomaly::{ContendedResource, ContentionAnomaly},
    measurements::Observation,
    metrics::{
        Metric,
        names::{
            self, CPI, CPI_HELP, CPI_THRESHOLD, CPI_THRESHOLD_HELP, WAIT_RATIO, WAIT_RATIO_HELP,
            WAIT_THRESHOLD, WAIT_THRESHOLD_HELP,
        },
    },
};

/// `!ContentionDetector` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentionDetectorConfig {
    /// Seconds waited on a run queue per second on a CPU at or above which a task is
    /// contended (default 0.5: it waited a third of the time it wanted to run).
    pub runqueue_wait_threshold: f64,
    /// Run-queue wait, in seconds per second, below which a task is not judged: a task
    /// that barely runs has noisy ratios (default 0.05).
    pub min_runqueue_wait: f64,
    /// CPUs a task must have used in the interval to be named as contending, or to have
    /// its CPI judged (default 0.1).
    pub min_contender_cpus: f64,
    /// Most contending tasks named per anomaly, busiest first (default 3).
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
            min_contender_cpus: 0.1,
            max_contenders: 3,
            cpi_history: 30,
            cpi_min_samples: 10,
            cpi_stddevs: 3.0,
        }
    }
}

/// A task's counters at one observation.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at: f64,
    oncpu: f64,
    runq: Option<f64>,
    cycles: Option<f64>,
    instructions: Option<f64>,
}

impl Counters {
    fn read(m: &BTreeMap<String, f64>, at: f64) -> Option<Self> {
        Some(Self {
            at,
            oncpu: *m.get(names::TASK_ONCPU)?,
            runq: m.get(names::TASK_RUNQ_SUM).copied(),
            cycles: m.get(names::CYCLES).copied(),
            instructions: m.get(names::INSTRUCTIONS).copied(),
        })
    }
}

/// One task's interval.
#[derive(Debug)]
struct Interval {
    /// CPUs used (seconds on CPU per second).
    cpus: f64,
    /// Run-queue wait per second, and per second on CPU.
    wait: Option<(f64, f64)>,
    cpi: Option<f64>,
}

fn delta(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    let d = now? - before?;
    (d >= 0.0).then_some(d)
}

impl Interval {
    fn between(before: &Counters, now: &Counters) -> Option<Self> {
        let dt = now.at - before.at;
        let oncpu = delta(Some(now.oncpu), Some(before.oncpu))?;
        if dt <= 0.0 {
            return None;
        }
        let wait = delta(now.runq, before.runq).map(|w| {
            (
                w / dt,
                if oncpu > 0.0 {
                    w / oncpu
                } else {
                    f64::INFINITY
                },
            )
        });
        let cpi = match (
            delta(now.cycles, before.cycles),
            delta(now.instructions, before.instructions),
        ) {
            (Some(c), Some(i)) if i > 0.0 => Some(c / i),
            _ => None,
        };
        Some(Self {
            cpus: oncpu / dt,
            wait,
            cpi,
        })
    }
}

/// The detector and each task's previous counters and CPI history.
#[derive(Debug)]
pub struct ContentionDetector {
    cfg: ContentionDetectorConfig,
    previous: BTreeMap<String, Counters>,
    cpi_history: BTreeMap<String, VecDeque<f64>>,
}

impl ContentionDetector {
    pub fn new(cfg: ContentionDetectorConfig) -> Self {
        Self {
            cfg,
            previous: BTreeMap::new(),
            cpi_history: BTreeMap::new(),
        }
    }

    /// Judges the interval since the previous observation; the first finds nothing.
    pub fn detect(&mut self, obs: &Observation) -> Detection {
        let at = obs.platform.timestamp;
        let mut intervals = BTreeMap::new();
        let mut current = BTreeMap::new();
        for (id, task) in &obs.tasks {
            let Some(now) = Counters::read(&task.measurements, at) else {
                continue;
            };
            if let Some(i) = self
                .previous
                .get(id)
                .and_then(|before| Interval::between(before, &now))
            {
                intervals.insert(id.as_str(), i);
            }
            current.insert(id.clone(), now);
        }
        self.previous = current;
        self.cpi_history.retain(|id, _| obs.tasks.contains_key(id));

        let mut busiest: Vec<(&str, f64)> = intervals
            .iter()
            .filter(|(_, i)| i.cpus >= self.cfg.min_contender_cpus)
            .map(|(id, i)| (*id, i.cpus))
            .collect();
        busiest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let contenders = |id: &str| -> Vec<String> {
            busiest
                .iter()
                .filter(|(other, _)| *other != id)
                .take(self.cfg.max_contenders)
                .map(|(other, _)| (*other).to_owned())
                .collect()
        };

        let mut anomalies = Vec::new();
        for (id, i) in &intervals {
            if let Some((per_second, per_cpu_second)) = i.wait
                && per_second >= self.cfg.min_runqueue_wait
                && per_cpu_second >= self.cfg.runqueue_wait_threshold
            {
                let contending = contenders(id);
                if !contending.is_empty() {
                    anomalies.push(anomaly(
                        ContendedResource::Cpus,
                        id,
                        contending,
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
            }
            if let Some(cpi) = i.cpi
                && i.cpus >= self.cfg.min_contender_cpus
            {
                let history = self.cpi_history.entry((*id).to_owned()).or_default();
                if let Some(threshold) = outlier_threshold(history, &self.cfg)
                    && cpi > threshold
                {
                    let contending = contenders(id);
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
                // Every sample enters the history: a lasting change becomes the new normal.
                history.push_back(cpi);
                while history.len() > self.cfg.cpi_history.max(1) {
                    history.pop_front();
                }
            }
        }
        Detection {
            anomalies,
            metrics: vec![],
        }
    }
}

/// Mean + k standard deviations of the history, once it is long enough. A flat history
/// gets a floor of 5 % of the mean so that noise is not an outlier.
fn outlier_threshold(history: &VecDeque<f64>, cfg: &ContentionDetectorConfig) -> Option<f64> {
    if history.len() < cfg.cpi_min_samples.max(2) {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let var = history.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(mean + cfg.cpi_stddevs * var.sqrt().max(0.05 * mean))
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
