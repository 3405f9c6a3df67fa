//! One iteration's samples as the task table needs them: per task the counters and gauges
//! of its row, and the node's and the agent's figures for the summary line. Built from
//! [`Metric`]s, so the agent's own packages (`!ConsoleStorage`) and a scraped `/metrics`
//! (`owca top`) give the same snapshot.

use std::collections::BTreeMap;

use crate::metrics::{Metric, MetricType, names};

/// What one package of samples says; fields the package lacks stay `None` (empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Unix time the agent began the iteration (`owca_iteration_timestamp_seconds`).
    pub taken: Option<f64>,
    /// The node's `host` label.
    pub host: Option<String>,
    /// The node's `cpus` label.
    pub cpus: Option<u32>,
    /// The agent's own figures.
    pub agent: AgentSample,
    /// Tasks by task id.
    pub tasks: BTreeMap<String, TaskSample>,
}

/// The agent's own metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSample {
    /// `owca_tasks`.
    pub tasks: Option<f64>,
    /// `owca_cpu_seconds_total`.
    pub cpu_seconds: Option<f64>,
    /// `owca_memory_usage_bytes`.
    pub rss_bytes: Option<f64>,
    /// `owca_errors_total` by component.
    pub errors: BTreeMap<String, f64>,
}

/// One task's samples (counters cumulative, as exported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSample {
    /// `task_oncpu_seconds_total`.
    pub oncpu_seconds: Option<f64>,
    /// `task_context_switches_total{kind="voluntary"}`.
    pub switches_voluntary: Option<f64>,
    /// `task_context_switches_total{kind="involuntary"}`.
    pub switches_involuntary: Option<f64>,
    /// `task_runqueue_latency_seconds_sum`.
    pub runq_wait_seconds: Option<f64>,
    /// `task_runqueue_latency_seconds_bucket`: (upper bound, cumulative count), by bound.
    pub runq_buckets: Vec<(f64, f64)>,
    /// `task_cpu_throttled_seconds_total`.
    pub throttled_seconds: Option<f64>,
    /// `memory_usage_per_task_bytes`.
    pub memory_bytes: Option<f64>,
    /// The `instructions` counter event.
    pub instructions: Option<f64>,
    /// The `cycles` counter event.
    pub cycles: Option<f64>,
    /// `allocation_cpu_quota` (share of the machine).
    pub cpu_quota: Option<f64>,
    /// `allocation_cpu_shares`.
    pub cpu_shares: Option<f64>,
    /// `allocation_cpuset_cpus` (how many CPUs).
    pub cpuset_cpus: Option<f64>,
    /// Contending tasks of the anomalies that name this task as contended.
    pub contenders: Vec<String>,
    /// `task_runqueue_wait_by_seconds_total` by `by_task_id`.
    pub wait_by: BTreeMap<String, f64>,
}

impl Snapshot {
    /// The snapshot of one package; samples it does not show are ignored.
    pub fn from_metrics(metrics: &[Metric]) -> Self {
        let mut s = Self::default();
        for m in metrics {
            s.add(m);
        }
        for t in s.tasks.values_mut() {
            t.runq_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        s
    }

    /// Adds `other`'s figures where this snapshot has none (another storage's package of
    /// the same iteration, e.g. the anomalies).
    pub fn merge(&mut self, other: &Self) {
        self.taken = self.taken.or(other.taken);
        self.host = self.host.take().or_else(|| other.host.clone());
        self.cpus = self.cpus.or(other.cpus);
        let a = &mut self.agent;
        a.tasks = a.tasks.or(other.agent.tasks);
        a.cpu_seconds = a.cpu_seconds.or(other.agent.cpu_seconds);
        a.rss_bytes = a.rss_bytes.or(other.agent.rss_bytes);
        for (c, n) in &other.agent.errors {
            a.errors.entry(c.clone()).or_insert(*n);
        }
        for (id, o) in &other.tasks {
            let t = self.tasks.entry(id.clone()).or_default();
            for (mine, theirs) in [
                (&mut t.oncpu_seconds, o.oncpu_seconds),
                (&mut t.switches_voluntary, o.switches_voluntary),
                (&mut t.switches_involuntary, o.switches_involuntary),
                (&mut t.runq_wait_seconds, o.runq_wait_seconds),
                (&mut t.throttled_seconds, o.throttled_seconds),
                (&mut t.memory_bytes, o.memory_bytes),
                (&mut t.instructions, o.instructions),
                (&mut t.cycles, o.cycles),
                (&mut t.cpu_quota, o.cpu_quota),
                (&mut t.cpu_shares, o.cpu_shares),
                (&mut t.cpuset_cpus, o.cpuset_cpus),
            ] {
                *mine = mine.or(theirs);
            }
            if t.runq_buckets.is_empty() {
                t.runq_buckets.clone_from(&o.runq_buckets);
            }
            t.contenders.extend(o.contenders.iter().cloned());
            for (by, v) in &o.wait_by {
                t.wait_by.entry(by.clone()).or_insert(*v);
            }
        }
    }

    fn add(&mut self, m: &Metric) {
        if self.host.is_none() {
            self.host = m.label("host").map(str::to_owned);
        }
        if self.cpus.is_none() {
            self.cpus = m.label("cpus").and_then(|c| c.parse().ok());
        }
        let v = Some(m.value);
        match &*m.name {
            names::OWCA_ITERATION_TIME => self.taken = v,
            names::OWCA_TASKS => self.agent.tasks = v,
            names::OWCA_CPU => self.agent.cpu_seconds = v,
            names::OWCA_MEMORY => self.agent.rss_bytes = v,
            names::OWCA_ERRORS => {
                if let Some(c) = m.label("component") {
                    self.agent.errors.insert(c.to_owned(), m.value);
                }
            }
            names::ANOMALY => {
                if let (Some(contended), Some(contending)) =
                    (m.label("contended_task_id"), m.label("contending_task_id"))
                {
                    let t = self.tasks.entry(contended.to_owned()).or_default();
                    if !t.contenders.iter().any(|c| c == contending) {
                        t.contenders.push(contending.to_owned());
                    }
                }
            }
            names::ALLOCATION_CPU_QUOTA => self.set(m, "task", |t| t.cpu_quota = v),
            names::ALLOCATION_CPU_SHARES => self.set(m, "task", |t| t.cpu_shares = v),
            names::ALLOCATION_CPUSET_CPUS => self.set(m, "task", |t| t.cpuset_cpus = v),
            _ => self.add_task_sample(m),
        }
    }

    fn add_task_sample(&mut self, m: &Metric) {
        let v = Some(m.value);
        let id = "task_id";
        match (&*m.name, m.suffix) {
            (names::TASK_ONCPU, "") => self.set(m, id, |t| t.oncpu_seconds = v),
            (names::TASK_SWITCHES, "") => match m.label("kind") {
                Some("voluntary") => self.set(m, id, |t| t.switches_voluntary = v),
                Some("involuntary") => self.set(m, id, |t| t.switches_involuntary = v),
                _ => {}
            },
            (names::TASK_RUNQ, "_sum") => self.set(m, id, |t| t.runq_wait_seconds = v),
            (names::TASK_RUNQ, "_bucket") if m.kind == MetricType::Histogram => {
                let le = m.label("le").and_then(|le| match le {
                    "+Inf" => Some(f64::INFINITY),
                    le => le.parse().ok(),
                });
                if let Some(le) = le {
                    self.set(m, id, |t| t.runq_buckets.push((le, m.value)));
                }
            }
            (names::TASK_THROTTLED, "") => self.set(m, id, |t| t.throttled_seconds = v),
            (names::MEMORY_USAGE_PER_TASK, "") => self.set(m, id, |t| t.memory_bytes = v),
            (names::INSTRUCTIONS, "") => self.set(m, id, |t| t.instructions = v),
            (names::CYCLES, "") => self.set(m, id, |t| t.cycles = v),
            (names::TASK_RUNQ_WAIT_BY, "") => {
                if let Some(by) = m.label(names::BY_TASK_ID_LABEL) {
                    self.set(m, id, |t| {
                        t.wait_by.insert(by.to_owned(), m.value);
                    });
                }
            }
            _ => {}
        }
    }

    /// Updates the task that `m`'s label `label` names; a sample without it is ignored.
    fn set(&mut self, m: &Metric, label: &str, update: impl FnOnce(&mut TaskSample)) {
        if let Some(id) = m.label(label) {
            update(self.tasks.entry(id.to_owned()).or_default());
        }
    }
}
