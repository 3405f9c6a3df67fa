//! Measurements: the third stage of an iteration. One snapshot of every container's
//! counters (eBPF collector), cgroupfs values, RDT readings and derived metrics, plus the
//! platform's, handed on as a [`Measured`] value; [`Observation`] is its form for
//! detectors, allocators and plug-ins.

mod cgroup_metrics;
mod contention;
pub mod derived;
mod measured;
mod observation;
pub mod task_metrics;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Instant,
};

pub use self::{
    cgroup_metrics::{CgroupReadings, PERIOD as CGROUPFS_PERIOD},
    measured::{Measured, MeasuredTask},
    observation::{Observation, PlatformData, TaskData, TasksData},
};
use self::{
    contention::{ContenderLabels, TaskOfKey, contention_metrics},
    derived::DerivedMetrics,
};
use crate::{
    cgroups::Mounts,
    collector::Collector,
    containers::Container,
    metrics::{Labels, Metric, SelfMetrics, names},
    platform::Platform,
    resctrl,
};

/// The measurements stage and what it keeps between iterations.
pub struct Measurements {
    /// Topology and model read at start; usage refreshed each iteration.
    platform: Platform,
    /// The node's labels and `extra_labels`, carried by the platform's samples.
    common_labels: Arc<Labels>,
    /// Tasks' cgroupfs values, kept between iterations.
    cgroupfs: CgroupReadings,
    derived: Option<DerivedMetrics>,
    /// The contenders' `by_task_id` label sets, kept between iterations.
    contender_labels: ContenderLabels,
    /// Samples of the last iteration: the next one reserves that many at once rather than
    /// growing (and copying) tens of thousands of samples step by step.
    last_samples: usize,
}

impl Measurements {
    /// Measures on `platform`; derived metrics when `enable_derived_metrics`.
    pub fn new(
        platform: Platform,
        common_labels: Arc<Labels>,
        enable_derived_metrics: bool,
    ) -> Self {
        Self {
            platform,
            common_labels,
            cgroupfs: CgroupReadings::default(),
            derived: enable_derived_metrics.then(DerivedMetrics::default),
            contender_labels: ContenderLabels::default(),
            last_samples: 0,
        }
    }

    /// Measures every container, then the platform.
    pub fn measure(
        &mut self,
        containers: &[Container],
        collector: &Collector,
        mounts: &Mounts,
        stats: &mut SelfMetrics,
    ) -> Measured {
        let t = Instant::now();
        let snapshots = collector.snapshot();
        stats.timed("collector", t);
        let task_of: TaskOfKey = containers
            .iter()
            .map(|c| (c.key, c.task.task_id.as_str()))
            .collect();

        let t = Instant::now();
        if let Some(derived) = &mut self.derived {
            let live: HashSet<&str> = containers.iter().map(|c| c.task.task_id.as_str()).collect();
            derived.retain(|id| live.contains(id));
        }
        // Room for the runner's own samples too, which it appends.
        let mut metrics = Vec::with_capacity(self.last_samples + self.last_samples / 8 + 64);
        let mut tasks = BTreeMap::new();
        self.cgroupfs.start_iteration();
        self.contender_labels.start_iteration();
        for c in containers {
            let first = metrics.len();
            let id = &c.task.task_id;
            let snapshot = snapshots.get(&c.key);
            if let Some(counts) = snapshot.map(|s| &s.counters) {
                let events = collector.events();
                metrics.extend(task_metrics::from_counters(
                    counts,
                    events,
                    collector.runq_available(),
                ));
                if let Some(derived) = &mut self.derived {
                    let values = events
                        .iter()
                        .cloned()
                        .zip(counts.perf.iter().map(|&v| v as f64))
                        .collect();
                    metrics.extend(derived.update(id, t, &values));
                }
            }
            let cgroup_first = metrics.len();
            metrics.extend(self.cgroupfs.metrics(
                mounts,
                id,
                &c.task.cgroup_path,
                snapshot.map(|s| s.counters.oncpu_ns),
                stats,
            ));
            if let Some(s) = snapshot {
                let throttled = metrics[cgroup_first..]
                    .iter()
                    .find(|m| m.name == names::TASK_THROTTLED)
                    .map(|m| m.value);
                metrics.extend(contention_metrics(
                    &s.contenders,
                    &task_of,
                    throttled,
                    &mut self.contender_labels,
                ));
            }
            if let Some(mon_data) = &c.mon_data {
                match resctrl::measure_mon_data(mon_data) {
                    Ok(m) => metrics.extend(rdt_metrics(&m)),
                    Err(e) => stats.record("resctrl", id, &e),
                }
            }
            // One label set per task, shared by its samples.
            for m in &mut metrics[first..] {
                m.shared = Some(Arc::clone(&c.labels));
            }
            let task = MeasuredTask {
                task: Arc::clone(&c.task),
                labels: Arc::clone(&c.labels),
                metrics: first..metrics.len(),
            };
            tasks.insert(id.clone(), task);
        }
        self.contender_labels.forget_unused();
        let node_start = metrics.len();
        match self.platform.refresh_usage() {
            Ok(()) => metrics.extend(self.platform.metrics()),
            Err(e) => stats.record("platform", "platform", &e),
        }
        for m in &mut metrics[node_start..] {
            m.shared = Some(Arc::clone(&self.common_labels));
        }
        stats.timed("measurements", t);
        self.last_samples = metrics.len();
        Measured {
            tasks,
            metrics,
            platform: PlatformData::now(&self.platform),
        }
    }
}

/// `memory_bandwidth` (counter) and `llc_occupancy` (gauge), those that have a value.
pub fn rdt_metrics(m: &resctrl::ResctrlMeasurement) -> Vec<Metric> {
    let mut out = Vec::with_capacity(2);
    if let Some(v) = m.memory_bandwidth_bytes {
        out.push(Metric::counter(
            names::MEMORY_BANDWIDTH,
            names::MEMORY_BANDWIDTH_HELP,
            v as f64,
        ));
    }
    if let Some(v) = m.llc_occupancy_bytes {
        out.push(Metric::gauge(
            names::LLC_OCCUPANCY,
            names::LLC_OCCUPANCY_HELP,
            v as f64,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metrics::MetricType, resctrl::ResctrlMeasurement};

    #[test]
    fn metrics_have_owca_names_and_types() {
        let m = ResctrlMeasurement {
            memory_bandwidth_bytes: Some(7),
            llc_occupancy_bytes: Some(9),
        };
        let m = rdt_metrics(&m);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].name.as_ref(), m[0].kind, m[0].value),
            ("memory_bandwidth", MetricType::Counter, 7.0)
        );
        assert_eq!(
            (m[1].name.as_ref(), m[1].kind, m[1].value),
            ("llc_occupancy", MetricType::Gauge, 9.0)
        );
        let partial = ResctrlMeasurement {
            llc_occupancy_bytes: Some(1),
            ..Default::default()
        };
        assert_eq!(rdt_metrics(&partial).len(), 1);
        assert!(rdt_metrics(&ResctrlMeasurement::default()).is_empty());
    }
}
