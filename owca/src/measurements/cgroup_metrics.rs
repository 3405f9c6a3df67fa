//! Metrics the kernel keeps in cgroupfs for a task.

use crate::{
    cgroups::{Cgroup, CgroupError},
    metrics::{Metric, SelfMetrics, names},
};

/// A task's cgroupfs metrics; an absent file means no metric, a failed read is counted.
pub fn cgroup_metrics(cg: &Cgroup<'_>, task_id: &str, stats: &mut SelfMetrics) -> Vec<Metric> {
    let mut out = Vec::new();
    let mut push = |r: Result<Option<f64>, CgroupError>, m: fn(f64) -> Metric| match r {
        Ok(Some(v)) => out.push(m(v)),
        Ok(None) => {}
        Err(e) => stats.record("cgroups", task_id, &e),
    };
    push(cg.cpu_usage_ns().map(|v| v.map(|v| v as f64)), |v| {
        Metric::counter(names::CPU_USAGE_PER_TASK, names::CPU_USAGE_PER_TASK_HELP, v)
    });
    push(cg.memory_usage_bytes().map(|v| v.map(|v| v as f64)), |v| {
        Metric::gauge(
            names::MEMORY_USAGE_PER_TASK,
            names::MEMORY_USAGE_PER_TASK_HELP,
            v,
        )
    });
    push(cg.memory_limit_bytes().map(|v| v.map(|v| v as f64)), |v| {
        Metric::gauge(names::TASK_MEMORY_LIMIT, names::TASK_MEMORY_LIMIT_HELP, v)
    });
    push(cg.cpu_throttled_seconds(), |v| {
        Metric::counter(names::TASK_THROTTLED, names::TASK_THROTTLED_HELP, v)
    });
    out
}
