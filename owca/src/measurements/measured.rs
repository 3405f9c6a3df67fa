//! One iteration's measurements, handed from the measurements stage to the detector or
//! allocator and to the storages.

use std::{collections::BTreeMap, ops::Range, sync::Arc};

use super::observation::PlatformData;
use crate::{
    metrics::{Labels, Metric, MetricType, names},
    nodes::Task,
};

/// One task in a [`Measured`] snapshot.
#[derive(Debug)]
pub struct MeasuredTask {
    /// The task as the node listed it.
    pub task: Arc<Task>,
    /// The labels every sample of the task carries: `task_id`, its own, the node's.
    pub labels: Arc<Labels>,
    /// Its samples in [`Measured::metrics`].
    pub metrics: Range<usize>,
}

/// One iteration's measurements.
#[derive(Debug)]
pub struct Measured {
    /// Tasks by task id.
    pub tasks: BTreeMap<String, MeasuredTask>,
    /// Every task's samples (see [`MeasuredTask::metrics`]), then the platform's.
    pub metrics: Vec<Metric>,
    /// The node as detectors and allocators see it.
    pub platform: PlatformData,
}

impl Measured {
    /// A task's measurements as OWCA passed them to detectors: metric name → value.
    /// Histogram buckets are left out; samples with their own labels (e.g.
    /// `kind="voluntary"`) are named `<name>_<label value>`.
    pub fn measurements(&self, task: &MeasuredTask) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for m in &self.metrics[task.metrics.clone()] {
            if (m.kind == MetricType::Histogram && m.suffix == "_bucket")
                || m.name == names::TASK_RUNQ_WAIT_BY
            {
                continue;
            }
            let mut name = format!("{}{}", m.name, m.suffix);
            for v in m.labels.values() {
                name.push('_');
                name.push_str(v);
            }
            out.insert(name, m.value);
        }
        out
    }

    /// A task's run-queue wait by contender (`by_task_id` → seconds), from its
    /// [`names::TASK_RUNQ_WAIT_BY`] samples.
    pub fn contenders(&self, task: &MeasuredTask) -> BTreeMap<String, f64> {
        self.metrics[task.metrics.clone()]
            .iter()
            .filter(|m| m.name == names::TASK_RUNQ_WAIT_BY)
            .filter_map(|m| Some((m.labels.get(names::BY_TASK_ID_LABEL)?.clone(), m.value)))
            .collect()
    }
}
