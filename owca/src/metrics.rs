//! The `Metric` value type and OWCA's metric names: what is measured, never how it is
//! written out (only `storage` knows output formats).

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

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
    /// Family name, e.g. `task_runqueue_latency_seconds`; borrowed for OWCA's fixed names
    /// so that thousands of samples allocate none.
    pub name: Cow<'static, str>,
    /// Sample suffix within the family: `""`, or `_bucket`, `_sum`, `_count` for histograms.
    pub suffix: &'static str,
    /// Labels of this sample alone (e.g. `le`, `kind`); they win over `shared` ones.
    pub labels: Labels,
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
            labels: Labels::new(),
            shared: None,
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

/// OWCA's metric names and their help texts. Names OWCA had keep OWCA's spelling so
/// existing dashboards and detectors keep working; new ones are `task_`/`platform_`/`owca_`.
pub mod names {
    pub const CPU_USAGE_PER_TASK: &str = "cpu_usage_per_task";
    pub const CPU_USAGE_PER_TASK_HELP: &str =
        "CPU time used by the task's processes in nanoseconds (cpuacct.usage).";
    pub const TASK_ONCPU: &str = "task_oncpu_seconds_total";
    pub const TASK_ONCPU_HELP: &str =
        "Time the task's threads spent on a CPU, counted in the kernel at context switches.";
    pub const TASK_SWITCHES: &str = "task_context_switches_total";
    pub const TASK_SWITCHES_HELP: &str = "Context switches out of the task's threads; kind=voluntary when the thread blocked, involuntary when it was preempted.";
    pub const TASK_RUNQ: &str = "task_runqueue_latency_seconds";
    pub const TASK_RUNQ_HELP: &str = "Time the task's threads waited on a run queue before running (from wakeup or preemption to running).";
    pub const MEMORY_USAGE_PER_TASK: &str = "memory_usage_per_task_bytes";
    pub const MEMORY_USAGE_PER_TASK_HELP: &str =
        "Memory used by the task's cgroup in bytes (memory.usage_in_bytes or memory.current).";
    pub const TASK_MEMORY_LIMIT: &str = "task_memory_limit_bytes";
    pub const TASK_MEMORY_LIMIT_HELP: &str =
        "Memory limit of the task's cgroup in bytes; absent when unlimited.";
    pub const TASK_THROTTLED: &str = "task_cpu_throttled_seconds_total";
    pub const TASK_THROTTLED_HELP: &str =
        "Time the task's cgroup was throttled by its CPU quota (cpu.stat).";
    pub const ANOMALY: &str = "anomaly";
    pub const ANOMALY_HELP: &str = "A detected anomaly: one sample per contending task, labelled with the contended and contending tasks, the resource and the anomaly's uuid.";
    pub const ANOMALY_COUNT: &str = "anomaly_count";
    pub const ANOMALY_COUNT_HELP: &str = "Anomalies detected since the agent started.";
    pub const ANOMALY_LAST_OCCURRENCE: &str = "anomaly_last_occurrence";
    pub const ANOMALY_LAST_OCCURRENCE_HELP: &str =
        "Unix time of the last iteration that detected an anomaly.";
    pub const COUNTER_EVENT_HELP: &str = "Hardware or software counter event of the task, counted per CPU and charged at cgroup switches.";

    pub const ALLOCATION_CPU_QUOTA: &str = "allocation_cpu_quota";
    pub const ALLOCATION_CPU_QUOTA_HELP: &str = "CPU quota of the task as a share of the whole machine (1 = no limit), after the last allocation.";
    pub const ALLOCATION_CPU_SHARES: &str = "allocation_cpu_shares";
    pub const ALLOCATION_CPU_SHARES_HELP: &str =
        "CPU shares of the task in units of cpu_shares_unit, after the last allocation.";
    pub const ALLOCATION_CPUSET_CPUS: &str = "allocation_cpuset_cpus";
    pub const ALLOCATION_CPUSET_CPUS_HELP: &str =
        "Number of CPUs the task may run on (cpuset.cpus), after the last allocation.";
    pub const ALLOCATION_RDT_L3_CACHE_WAYS: &str = "allocation_rdt_l3_cache_ways";
    pub const ALLOCATION_RDT_L3_CACHE_WAYS_HELP: &str =
        "L3 cache ways of the task's resctrl group in one cache domain (bits set in its mask).";
    pub const ALLOCATION_RDT_L3_MASK: &str = "allocation_rdt_l3_mask";
    pub const ALLOCATION_RDT_L3_MASK_HELP: &str =
        "L3 cache way mask of the task's resctrl group in one cache domain.";
    pub const ALLOCATION_RDT_MB: &str = "allocation_rdt_mb";
    pub const ALLOCATION_RDT_MB_HELP: &str =
        "Memory bandwidth limit of the task's resctrl group in one domain (MB schemata value).";
    pub const ALLOCATIONS_COUNT: &str = "allocations_count";
    pub const ALLOCATIONS_COUNT_HELP: &str =
        "Task allocations accepted since the agent started (tasks per valid allocation set).";
    pub const ALLOCATIONS_ERRORS: &str = "allocations_errors";
    pub const ALLOCATIONS_ERRORS_HELP: &str = "Allocation sets refused as invalid plus writes the kernel refused, since the agent started.";
    pub const ALLOCATION_DURATION: &str = "allocation_duration";
    pub const ALLOCATION_DURATION_HELP: &str =
        "Seconds the allocator took to decide in the last iteration.";

    pub const OWCA_UP: &str = "owca_up";
    pub const OWCA_UP_HELP: &str = "Always 1 while the agent runs.";
    pub const OWCA_TASKS: &str = "owca_tasks";
    pub const OWCA_TASKS_HELP: &str = "Number of tasks the agent measures.";
    pub const OWCA_MEMORY: &str = "owca_memory_usage_bytes";
    pub const OWCA_MEMORY_HELP: &str = "Resident memory of the agent in bytes.";
    pub const OWCA_DURATION: &str = "owca_duration_seconds";
    pub const OWCA_DURATION_HELP: &str = "Time the last iteration spent in each stage.";
    pub const OWCA_ERRORS: &str = "owca_errors_total";
    pub const OWCA_ERRORS_HELP: &str = "Errors since the agent started, by component.";
}
