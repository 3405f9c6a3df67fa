//! What detectors and allocators get each iteration: the platform, and per task its
//! measurements, resources, labels (and, for allocators, allocations). Serialized as is,
//! it is the JSON line external plug-ins read (see `plugins`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Measured;
use crate::{anomaly::unix_now, metrics::Labels, platform::Platform, resctrl::RdtCapabilities};

/// Per task id.
pub type TasksData = BTreeMap<String, TaskData>;

/// One task as a detector or allocator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskData {
    /// Metric name → value (counters are cumulative), see [`Measured::measurements`].
    pub measurements: BTreeMap<String, f64>,
    /// What the orchestrator assigned (`cpus`, `mem`, `disk`, ...).
    pub resources: BTreeMap<String, f64>,
    /// The task's own labels and `task_id`.
    pub labels: Labels,
    /// Who made the task wait for a CPU: contender (a task id, `unwatched` or
    /// `own_quota`, see `metrics::names::TASK_RUNQ_WAIT_BY`) → cumulative seconds of
    /// run-queue wait while it ran instead. Counted in the kernel; only the largest
    /// contenders are listed. Left out of `measurements`.
    pub contenders: BTreeMap<String, f64>,
    /// Current allocations, for allocators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocations: Option<serde_json::Value>,
}

/// The node as a detector or allocator sees it (OWCA's `Platform`).
#[derive(Debug, Clone, Serialize)]
pub struct PlatformData {
    /// Physical packages.
    pub sockets: usize,
    /// Physical cores.
    pub cores: usize,
    /// Logical CPUs.
    pub cpus: usize,
    /// Busy time per logical CPU in USER_HZ ticks, keyed by CPU number.
    pub cpus_usage: BTreeMap<String, u64>,
    /// Memory used on the node in bytes, when /proc/meminfo tells.
    pub total_memory_used: Option<u64>,
    /// When the measurements were taken, in seconds since the Unix epoch.
    pub timestamp: f64,
    /// What RDT allocation offers (OWCA's `rdt_information`), for allocators only and
    /// only while the agent allocates through resctrl: an allocator sizes its `rdt`
    /// schemata with it, and its absence tells it that an `rdt` allocation would be
    /// refused. Read once at start by the allocation stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdt_information: Option<RdtCapabilities>,
}

/// One iteration's input to a detector or allocator.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    /// The node.
    pub platform: PlatformData,
    /// The tasks.
    pub tasks: TasksData,
}

impl PlatformData {
    /// The node now, as the platform last read it.
    pub fn now(platform: &Platform) -> Self {
        Self {
            sockets: platform.sockets,
            cores: platform.cores,
            cpus: platform.cpus,
            cpus_usage: platform
                .cpu_usage_per_cpu
                .iter()
                .map(|(cpu, ticks)| (cpu.to_string(), *ticks))
                .collect(),
            total_memory_used: platform.memory_usage_bytes,
            timestamp: unix_now(),
            rdt_information: None,
        }
    }
}

impl Observation {
    /// The observation of one iteration's measurements.
    pub fn new(measured: &Measured) -> Self {
        let tasks = measured
            .tasks
            .iter()
            .map(|(id, t)| {
                let mut labels = t.task.labels.clone();
                labels.insert("task_id".to_owned(), id.clone());
                let data = TaskData {
                    measurements: measured.measurements(t),
                    contenders: measured.contenders(t),
                    resources: t.task.resources.clone(),
                    labels,
                    allocations: None,
                };
                (id.clone(), data)
            })
            .collect();
        Self {
            platform: measured.platform.clone(),
            tasks,
        }
    }
}

#[cfg(test)]
impl PlatformData {
    /// One socket, 2 cores, 2 CPUs, no usage, at `timestamp`: the node of unit tests.
    pub fn test_node(timestamp: f64) -> Self {
        Self {
            sockets: 1,
            cores: 2,
            cpus: 2,
            cpus_usage: BTreeMap::new(),
            total_memory_used: None,
            timestamp,
            rdt_information: None,
        }
    }
}

#[cfg(test)]
impl TaskData {
    /// A task with only these measurements and labels, for unit tests.
    pub fn test_task(measurements: BTreeMap<String, f64>, labels: Labels) -> Self {
        Self {
            measurements,
            contenders: BTreeMap::new(),
            resources: BTreeMap::new(),
            labels,
            allocations: None,
        }
    }
}
