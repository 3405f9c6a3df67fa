//! Every metric's name and HELP text. Names OWCA had keep OWCA's spelling so existing
//! dashboards and detectors keep working; new ones are `task_`/`platform_`/`owca_`.

pub const CPU_USAGE_PER_TASK: &str = "cpu_usage_per_task";
pub const CPU_USAGE_PER_TASK_HELP: &str =
    "CPU time used by the task's processes in nanoseconds (cpuacct.usage).";
pub const TASK_ONCPU: &str = "task_oncpu_seconds_total";
pub const TASK_ONCPU_HELP: &str =
    "Time the task's threads spent on a CPU, counted in the kernel at context switches.";
pub const TASK_SWITCHES: &str = "task_context_switches_total";
pub const TASK_SWITCHES_HELP: &str = "Context switches out of the task's threads; kind=voluntary when the thread blocked, involuntary when it was preempted.";
pub const TASK_RUNQ: &str = "task_runqueue_latency_seconds";
/// How detectors and plug-ins see the histogram's sum among a task's measurements
/// (`<name><suffix>`, see `measurements::Measured::measurements`).
pub const TASK_RUNQ_SUM: &str = "task_runqueue_latency_seconds_sum";
pub const TASK_RUNQ_HELP: &str = "Time the task's threads waited on a run queue before running (from wakeup or preemption to running).";
/// Run-queue wait of a task split by who ran instead, one sample per contender (label
/// [`BY_TASK_ID_LABEL`]): another task's id, [`BY_UNWATCHED`] or [`BY_OWN_QUOTA`].
pub const TASK_RUNQ_WAIT_BY: &str = "task_runqueue_wait_by_seconds_total";
pub const TASK_RUNQ_WAIT_BY_HELP: &str = "Time the task's threads waited on a run queue while another task ran instead (by_task_id; unwatched: a process of no watched task; own_quota: its own cgroup's CPU quota throttled it). Only the largest contenders of each task are exported.";
/// The label of [`TASK_RUNQ_WAIT_BY`] naming the contender.
pub const BY_TASK_ID_LABEL: &str = "by_task_id";
/// Contender of a wait: a process in no watched task (the system, the agent, idle work).
pub const BY_UNWATCHED: &str = "unwatched";
/// Contender of a wait: the task's own CFS quota (throttling), no neighbour's fault.
pub const BY_OWN_QUOTA: &str = "own_quota";
/// Contender of a wait: the contenders beyond the kernel's table of a task.
pub const BY_OTHER: &str = "other";
pub const TASK_PREEMPTED_BY: &str = "task_preemptions_by_total";
pub const TASK_PREEMPTED_BY_HELP: &str = "Times the task's threads were preempted, by the task that took the CPU (by_task_id, as for task_runqueue_wait_by_seconds_total).";
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
pub const ALLOCATION_CPU_IDLE: &str = "allocation_cpu_idle";
pub const ALLOCATION_CPU_IDLE_HELP: &str = "1 when the task's cgroup is SCHED_IDLE towards its siblings (cpu.idle), after the last allocation.";
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
pub const ALLOCATIONS_ERRORS_HELP: &str =
    "Allocation sets refused as invalid plus writes the kernel refused, since the agent started.";
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
pub const OWCA_CPU: &str = "owca_cpu_seconds_total";
pub const OWCA_CPU_HELP: &str = "CPU time the agent used since it started (user and system).";
pub const OWCA_ITERATION_TIME: &str = "owca_iteration_timestamp_seconds";
pub const OWCA_ITERATION_TIME_HELP: &str = "Unix time at which the iteration began measuring: rates between two iterations divide by its difference (owca top does).";
pub const OWCA_ERRORS: &str = "owca_errors_total";
pub const OWCA_ERRORS_HELP: &str = "Errors since the agent started, by component.";

// RDT monitoring (resctrl), OWCA's names.
/// The task's memory traffic, in bytes since its group was created.
pub const MEMORY_BANDWIDTH: &str = "memory_bandwidth";
pub const MEMORY_BANDWIDTH_HELP: &str = "Bytes the task moved between L3 cache and memory since its resctrl monitoring group was created (mbm_total_bytes summed over L3 domains).";
/// The task's share of the last-level cache, in bytes.
pub const LLC_OCCUPANCY: &str = "llc_occupancy";
pub const LLC_OCCUPANCY_HELP: &str =
    "Bytes of last-level cache the task occupies now (llc_occupancy summed over L3 domains).";
// Node-wide, OWCA's names.
/// OWCA's name of the node memory gauge.
pub const MEMORY_USAGE: &str = "memory_usage";
pub const MEMORY_USAGE_HELP: &str =
    "Memory used on the node in bytes (MemTotal - MemFree - Buffers - Cached).";
/// OWCA's name of the per-CPU busy time counter.
pub const CPU_USAGE_PER_CPU: &str = "cpu_usage_per_cpu";
pub const CPU_USAGE_PER_CPU_HELP: &str = "Busy time of a logical CPU (user+nice+system+irq+softirq+steal) in USER_HZ ticks, usually 1/100 s (/proc/stat).";

// Counter events the derived metrics read, and the derived metrics.
pub const INSTRUCTIONS: &str = "instructions";
pub const CYCLES: &str = "cycles";
pub const CACHE_MISSES: &str = "cache_misses";
pub const CACHE_REFERENCES: &str = "cache_references";
pub const STALLS_MEM_LOAD: &str = "stalls_mem_load";

pub const IPC: &str = "ipc";
pub const IPC_HELP: &str = "Instructions per cycle of the task over the last iteration.";
pub const IPS: &str = "ips";
pub const IPS_HELP: &str = "Instructions per second of the task over the last iteration.";
pub const CACHE_HIT_RATIO: &str = "cache_hit_ratio";
pub const CACHE_HIT_RATIO_HELP: &str = "Share of the task's cache references that hit (1 - misses / references) over the last iteration.";
pub const CACHE_MISSES_PER_KILO_INSTRUCTIONS: &str = "cache_misses_per_kilo_instructions";
pub const CACHE_MISSES_PER_KILO_INSTRUCTIONS_HELP: &str =
    "Cache misses per thousand instructions of the task over the last iteration.";

// What the built-in detectors report with their anomalies.
pub const WAIT_RATIO: &str = "runqueue_wait_per_cpu_second";
pub const WAIT_RATIO_HELP: &str =
    "Seconds the contended task waited on a run queue per second it ran, in the interval.";
pub const WAIT_THRESHOLD: &str = "runqueue_wait_threshold";
pub const WAIT_THRESHOLD_HELP: &str = "The contention detector's runqueue_wait_threshold.";
pub const CPI: &str = "cpi";
pub const CPI_HELP: &str = "Cycles per instruction of the contended task in the interval.";
pub const CPI_THRESHOLD: &str = "cpi_threshold";
pub const CPI_THRESHOLD_HELP: &str =
    "Mean plus cpi_stddevs standard deviations of the task's recent CPI.";
pub const COLLOCATION_WAIT: &str = "runqueue_wait_by_best_effort_per_cpu_second";
pub const COLLOCATION_WAIT_HELP: &str = "Seconds the latency-critical task waited on a run queue while best-effort tasks ran, per second it ran, in the last interval (CollocationAllocator).";
pub const COLLOCATION_THRESHOLD: &str = "collocation_wait_threshold";
pub const COLLOCATION_THRESHOLD_HELP: &str = "The CollocationAllocator's wait_threshold.";
pub const COLLOCATION_CALM: &str = "collocation_calm_iterations";
pub const COLLOCATION_CALM_HELP: &str =
    "Iterations since the CollocationAllocator last saw contention or gave a step back.";
pub const EXAMPLE_SECOND_OF_CYCLE: &str = "second_of_cycle";
pub const EXAMPLE_SECOND_OF_CYCLE_HELP: &str = "Second of the example detector's cycle.";
/// Followed by the metric's index: `cpu_threshold_0`, `cpu_threshold_1`...
pub const EXAMPLE_CPU_THRESHOLD_PREFIX: &str = "cpu_threshold_";
pub const EXAMPLE_CPU_THRESHOLD_HELP: &str = "Threshold of the example detector.";

/// HELP of a plug-in's metric that brings none (plug-ins name their own metrics).
pub const PLUGIN_METRIC_HELP: &str = "Metric of an external plug-in.";

/// With `task_labels: info`, one sample per task carrying all its labels, the task's other
/// samples carrying only `task_id` (see `storage::prometheus::TaskLabels`).
pub const TASK_INFO: &str = "task_info";
pub const TASK_INFO_HELP: &str = "The labels of a task, always 1. With task_labels: info the task's other samples carry only task_id: join them with * on(task_id) group_left(...) task_info.";
/// The label naming a task on its samples.
pub const TASK_ID_LABEL: &str = "task_id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_names_follow_their_family() {
        assert_eq!(TASK_RUNQ_SUM, format!("{TASK_RUNQ}_sum"));
    }
}
