//! Metrics the kernel keeps in cgroupfs for a task, read as rarely as their meaning allows:
//! at a thousand tasks, opening and reading their files every iteration cost more than
//! everything else the agent did.
//!
//! - `cpu_usage_per_task` keeps its meaning, the task's `cpuacct.usage` in ns, without
//!   reading it each iteration: it is read once, when the task is first measured, and from
//!   then on advanced by the eBPF on-CPU time, which counts the same time (the bench
//!   measures both against `cpuacct.usage`). It stays monotonic, as a counter must.
//! - Memory usage, memory limit and throttled time are read every [`PERIOD`] iterations,
//!   each task in its own iteration of the period so that the reads spread evenly, and at
//!   once for a new task; in between, the last values are reported again. Throttled time
//!   is read every iteration once the task has been throttled (it has a quota that bites).
//!
//! No file stays open between reads: the agent's open files do not grow with its tasks.

// foldhash rather than SipHash: looked up for every task each iteration, and, unlike Fx,
// seeded per process, as task ids are the tenants' choice.
use foldhash::HashMap;

use crate::{
    cgroups::{Cgroup, CgroupError, Mounts},
    metrics::{Metric, SelfMetrics, names},
};

/// Iterations between two reads of a task's slow-moving cgroupfs values (10 s at OWCA's
/// 1 s `action_delay`).
pub const PERIOD: u64 = 10;

/// What is kept of each task's cgroupfs values between iterations.
#[derive(Debug, Default)]
pub struct CgroupReadings {
    tasks: HashMap<String, TaskReadings>,
    iteration: u64,
    /// The phase the next new task gets, so that tasks spread over the period.
    next_phase: u64,
}

#[derive(Debug)]
struct TaskReadings {
    /// The cgroup read: a task moved to another cgroup starts afresh.
    cgroup_path: String,
    /// The iteration of the period (modulo [`PERIOD`]) in which it is read.
    phase: u64,
    /// `cpuacct.usage` minus the eBPF on-CPU ns, taken when both were first seen.
    cpu_offset: Option<i128>,
    memory_usage: Option<f64>,
    memory_limit: Option<f64>,
    throttled: Option<f64>,
    /// Measured in the current iteration.
    seen: bool,
}

impl CgroupReadings {
    /// Starts an iteration; tasks not measured in the previous one are forgotten.
    pub fn start_iteration(&mut self) {
        self.tasks.retain(|_, t| std::mem::take(&mut t.seen));
        self.iteration += 1;
    }

    /// A task's cgroupfs metrics, `oncpu_ns` being its eBPF on-CPU time now (`None` when
    /// the collector has no counters for it). An absent file means no metric; a failed
    /// read is counted and the metric left out until a read succeeds.
    pub fn metrics(
        &mut self,
        mounts: &Mounts,
        task_id: &str,
        cgroup_path: &str,
        oncpu_ns: Option<u64>,
        stats: &mut SelfMetrics,
    ) -> Vec<Metric> {
        let fresh = self
            .tasks
            .get(task_id)
            .is_none_or(|t| t.cgroup_path != cgroup_path);
        if fresh {
            let phase = self.next_phase % PERIOD;
            self.next_phase += 1;
            let new = TaskReadings {
                cgroup_path: cgroup_path.to_owned(),
                phase,
                cpu_offset: None,
                memory_usage: None,
                memory_limit: None,
                throttled: None,
                seen: false,
            };
            self.tasks.insert(task_id.to_owned(), new);
        }
        let Some(t) = self.tasks.get_mut(task_id) else {
            return Vec::new();
        };
        t.seen = true;
        // A new task is read at once, so that it gets every metric in its first iteration.
        if fresh || self.iteration % PERIOD == t.phase {
            read_slow(t, &Cgroup::new(mounts, cgroup_path), task_id, stats);
            if t.cpu_offset.is_none() {
                t.anchor_cpu(mounts, task_id, oncpu_ns, stats);
            }
        } else if t.throttled.is_some_and(|s| s > 0.0) {
            // A task its quota has throttled is read every iteration: detectors tell its
            // own throttling from neighbours' contention by it.
            t.throttled = keep(
                Cgroup::new(mounts, cgroup_path).cpu_throttled_seconds(),
                task_id,
                stats,
            );
        }
        t.to_metrics(oncpu_ns)
    }
}

impl TaskReadings {
    /// Reads `cpuacct.usage` once to anchor the eBPF on-CPU time to it.
    fn anchor_cpu(
        &mut self,
        mounts: &Mounts,
        task_id: &str,
        oncpu_ns: Option<u64>,
        stats: &mut SelfMetrics,
    ) {
        let Some(oncpu) = oncpu_ns else { return };
        match Cgroup::new(mounts, &self.cgroup_path).cpu_usage_ns() {
            Ok(Some(usage)) => self.cpu_offset = Some(i128::from(usage) - i128::from(oncpu)),
            Ok(None) => {}
            Err(e) => stats.record("cgroups", task_id, &e),
        }
    }

    fn to_metrics(&self, oncpu_ns: Option<u64>) -> Vec<Metric> {
        let mut out = Vec::with_capacity(4);
        if let (Some(offset), Some(oncpu)) = (self.cpu_offset, oncpu_ns) {
            let usage = (offset + i128::from(oncpu)).max(0) as f64;
            out.push(Metric::counter(
                names::CPU_USAGE_PER_TASK,
                names::CPU_USAGE_PER_TASK_HELP,
                usage,
            ));
        }
        if let Some(v) = self.memory_usage {
            out.push(Metric::gauge(
                names::MEMORY_USAGE_PER_TASK,
                names::MEMORY_USAGE_PER_TASK_HELP,
                v,
            ));
        }
        if let Some(v) = self.memory_limit {
            out.push(Metric::gauge(
                names::TASK_MEMORY_LIMIT,
                names::TASK_MEMORY_LIMIT_HELP,
                v,
            ));
        }
        if let Some(v) = self.throttled {
            out.push(Metric::counter(
                names::TASK_THROTTLED,
                names::TASK_THROTTLED_HELP,
                v,
            ));
        }
        out
    }
}

/// A read value; a failed read is counted and leaves the value out.
fn keep(
    r: Result<Option<f64>, CgroupError>,
    task_id: &str,
    stats: &mut SelfMetrics,
) -> Option<f64> {
    r.unwrap_or_else(|e| {
        stats.record("cgroups", task_id, &e);
        None
    })
}

/// Reads the slow-moving values.
fn read_slow(t: &mut TaskReadings, cg: &Cgroup<'_>, task_id: &str, stats: &mut SelfMetrics) {
    t.memory_usage = keep(
        cg.memory_usage_bytes().map(|v| v.map(|v| v as f64)),
        task_id,
        stats,
    );
    t.memory_limit = keep(
        cg.memory_limit_bytes().map(|v| v.map(|v| v as f64)),
        task_id,
        stats,
    );
    t.throttled = keep(cg.cpu_throttled_seconds(), task_id, stats);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(metrics: &[Metric], name: &str) -> Option<f64> {
        metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    #[test]
    fn reads_a_new_task_at_once_then_once_per_period_and_anchors_cpu_usage() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().display();
        let write = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        for task in ["a", "b"] {
            write(&format!("cpuacct/m/{task}/cpuacct.usage"), "5000\n");
            write(&format!("memory/m/{task}/memory.usage_in_bytes"), "4096\n");
            write(&format!("memory/m/{task}/memory.limit_in_bytes"), "8192\n");
            write(
                &format!("cpu/m/{task}/cpu.stat"),
                "throttled_time 1000000000\n",
            );
        }
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {root}/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             2 1 0:2 / {root}/memory rw - cgroup cgroup rw,memory\n\
             3 1 0:3 / {root}/cpu rw - cgroup cgroup rw,cpu\n"
        ));
        let mut stats = SelfMetrics::new(&["cgroups"]);
        let mut r = CgroupReadings::default();

        r.start_iteration();
        let a = r.metrics(&m, "a", "/m/a", Some(1000), &mut stats);
        let b = r.metrics(&m, "b", "/m/b", Some(0), &mut stats);
        assert_eq!(value(&a, names::CPU_USAGE_PER_TASK), Some(5000.0));
        assert_eq!(value(&b, names::CPU_USAGE_PER_TASK), Some(5000.0));
        assert_eq!(value(&a, names::MEMORY_USAGE_PER_TASK), Some(4096.0));
        assert_eq!(value(&a, names::TASK_MEMORY_LIMIT), Some(8192.0));
        assert_eq!(value(&a, names::TASK_THROTTLED), Some(1.0));

        // cpuacct.usage is not read again: the eBPF time advances the anchored value.
        write("cpuacct/m/a/cpuacct.usage", "999999\n");
        write("memory/m/a/memory.usage_in_bytes", "1\n");
        write("memory/m/b/memory.usage_in_bytes", "2\n");
        // A throttled task's throttled time is read every iteration.
        write("cpu/m/a/cpu.stat", "throttled_time 3000000000\n");
        let mut memory = (Vec::new(), Vec::new());
        for _ in 0..PERIOD {
            r.start_iteration();
            let a = r.metrics(&m, "a", "/m/a", Some(3500), &mut stats);
            assert_eq!(value(&a, names::TASK_THROTTLED), Some(3.0));
            let b = r.metrics(&m, "b", "/m/b", Some(10), &mut stats);
            assert_eq!(value(&a, names::CPU_USAGE_PER_TASK), Some(7500.0));
            assert_eq!(value(&b, names::CPU_USAGE_PER_TASK), Some(5010.0));
            memory
                .0
                .push(value(&a, names::MEMORY_USAGE_PER_TASK).unwrap());
            memory
                .1
                .push(value(&b, names::MEMORY_USAGE_PER_TASK).unwrap());
        }
        // Each read once in the period, in different iterations, the old value before.
        let changed = |v: &[f64]| v.iter().position(|&x| x != 4096.0).unwrap();
        assert_ne!(changed(&memory.0), changed(&memory.1), "{memory:?}");
        assert_eq!(memory.0.last(), Some(&1.0));
        assert_eq!(memory.1.last(), Some(&2.0));

        // Moved to another cgroup: anchored and read afresh.
        write("cpuacct/m/c/cpuacct.usage", "70\n");
        r.start_iteration();
        let a = r.metrics(&m, "a", "/m/c", Some(3500), &mut stats);
        assert_eq!(value(&a, names::CPU_USAGE_PER_TASK), Some(70.0));
        assert_eq!(
            value(&a, names::MEMORY_USAGE_PER_TASK),
            None,
            "no memory cgroup"
        );
        // No eBPF counters: no cpu_usage_per_task rather than a value that could go back.
        assert_eq!(
            value(
                &r.metrics(&m, "b", "/m/b", None, &mut stats),
                names::CPU_USAGE_PER_TASK
            ),
            None
        );
        // Tasks not measured in an iteration are forgotten.
        r.start_iteration();
        r.start_iteration();
        assert!(r.tasks.is_empty());
        assert_eq!(stats.total("cgroups"), 0);
    }
}
