//! `!MeasurementRunner`: measure every task each `action_delay` and store the metrics.

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use thiserror::Error;
use tracing::info;

use super::{ErrorCounter, derived::DerivedMetrics, rdt::Rdt, task_metrics};
use crate::{
    cgroups::{Cgroup, Mounts, OpenFiles},
    collector::{CgroupDir, Collector, CollectorConfig, CollectorError, Hierarchy},
    config::duration_secs,
    metrics::{Labels, Metric, names},
    nodes::{NodeConfig, Task},
    platform::Platform,
    storage::{Storage, StorageConfig, StorageError},
};

/// Components counted in `owca_errors_total`.
const COMPONENTS: [&str; 6] = [
    "node",
    "collector",
    "cgroups",
    "resctrl",
    "platform",
    "storage",
];

/// Settings of the measurement runner, with OWCA's names and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementRunnerConfig {
    /// Where tasks come from.
    pub node: NodeConfig,
    /// Seconds between iterations.
    #[serde(default = "default_action_delay", deserialize_with = "duration_secs")]
    pub action_delay: Duration,
    /// Where metrics go (Prometheus text on stderr by default).
    #[serde(default)]
    pub metrics_storage: StorageConfig,
    /// Labels added to every metric.
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    /// Counter events to count per task; those the PMU lacks are reported once and left out.
    #[serde(default = "default_event_names")]
    pub event_names: Vec<String>,
    /// Derived metrics (ipc, ips, cache_hit_ratio, ...) from counter deltas.
    #[serde(default)]
    pub enable_derived_metrics: bool,
    /// RDT monitoring (`memory_bandwidth`, `llc_occupancy`) through resctrl mon groups:
    /// unset = where resctrl is mounted, `true` = wanted (reported when missing).
    #[serde(default)]
    pub rdt_enabled: Option<bool>,
    /// Most tasks watched in the kernel at once.
    #[serde(default = "default_max_cgroups")]
    pub max_cgroups: u32,
}

fn default_action_delay() -> Duration {
    Duration::from_secs(1)
}

/// OWCA's default events.
fn default_event_names() -> Vec<String> {
    ["instructions", "cycles", "cache_misses", "stalls_mem_load"]
        .map(String::from)
        .to_vec()
}

fn default_max_cgroups() -> u32 {
    owca_common::DEFAULT_MAX_CGROUPS
}

/// Why the runner could not start.
#[derive(Debug, Error)]
pub enum RunnerError {
    #[error("starting the eBPF collector: {0}")]
    Collector(#[from] CollectorError),
    #[error("creating the metrics storage: {0}")]
    Storage(#[from] StorageError),
    #[error("reading cgroup mounts: {0}")]
    Mounts(String),
    #[error("{0}")]
    Config(String),
}

struct Watched {
    task: Task,
    key: u64,
}

/// The measurement loop and its state.
pub struct MeasurementRunner {
    node: NodeConfig,
    action_delay: Duration,
    storage: Box<dyn Storage>,
    collector: Collector,
    mounts: Mounts,
    hierarchy: Hierarchy,
    hierarchy_root: PathBuf,
    watched: BTreeMap<String, Watched>,
    errors: ErrorCounter,
    /// The node's labels and `extra_labels`, carried by every sample.
    common_labels: Arc<Labels>,
    /// Tasks' cgroupfs files, kept open between iterations.
    open_files: OpenFiles,
    /// Topology and model read at start; usage refreshed each iteration.
    platform: Platform,
    rdt: Option<Rdt>,
    derived: Option<DerivedMetrics>,
}

impl MeasurementRunner {
    /// Checks the machine, loads the collector and creates the storage.
    pub fn new(cfg: MeasurementRunnerConfig) -> Result<Self, RunnerError> {
        if cfg.action_delay.is_zero() {
            return Err(RunnerError::Config(
                "action_delay must be greater than 0".into(),
            ));
        }
        cfg.node
            .validate()
            .map_err(|e| RunnerError::Config(format!("node: {e}")))?;
        let mounts = Mounts::discover().map_err(|e| RunnerError::Mounts(e.to_string()))?;
        let controller = cfg.node.v1_controller();
        let (hierarchy, hierarchy_root) = match (mounts.v1(controller), mounts.v2()) {
            (Some(p), _) => (Hierarchy::V1, p.to_path_buf()),
            (None, Some(p)) => (Hierarchy::V2, p.to_path_buf()),
            (None, None) => {
                return Err(RunnerError::Mounts(format!(
                    "neither a v1 {controller} hierarchy nor cgroup v2 is mounted"
                )));
            }
        };
        let storage = cfg.metrics_storage.build()?;
        let collector = Collector::start(&CollectorConfig {
            max_cgroups: cfg.max_cgroups,
            events: cfg.event_names.clone(),
            v1_controller: controller.to_owned(),
        })?;
        let platform = Platform::collect().map_err(|e| {
            RunnerError::Config(format!("reading the platform for common labels: {e}"))
        })?;
        let mut common_labels = platform.common_labels();
        // extra_labels win over the platform's.
        common_labels.extend(cfg.extra_labels);
        info!(hierarchy = %hierarchy_root.display(), "tasks are counted in this cgroup hierarchy");
        Ok(Self {
            node: cfg.node,
            action_delay: cfg.action_delay,
            storage,
            collector,
            mounts,
            hierarchy,
            hierarchy_root,
            watched: BTreeMap::new(),
            errors: ErrorCounter::default(),
            common_labels: Arc::new(common_labels),
            open_files: OpenFiles::default(),
            platform,
            rdt: Rdt::start(cfg.rdt_enabled),
            derived: cfg.enable_derived_metrics.then(DerivedMetrics::default),
        })
    }

    /// Runs iterations until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(self.action_delay);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.iterate().await,
                () = &mut shutdown => break,
            }
        }
        info!("stopping: detaching the eBPF collector");
    }

    /// One iteration: tasks → containers → measurements → storage.
    pub async fn iterate(&mut self) {
        let started = Instant::now();
        let mut durations = Vec::new();

        let t = Instant::now();
        match self.node.tasks(&self.mounts).await {
            Ok(tasks) => self.reconcile(tasks),
            // The previous task list stays: a broken answer loses no task's metrics.
            Err(e) => self.errors.record("node", "tasks", &e),
        }
        durations.push(("node", t.elapsed()));

        if let Some(rdt) = &mut self.rdt {
            let t = Instant::now();
            let tasks: Vec<&Task> = self.watched.values().map(|w| &w.task).collect();
            rdt.sync(&self.mounts, &tasks, &mut self.errors);
            durations.push(("resctrl", t.elapsed()));
        }

        let t = Instant::now();
        let counters = match self.collector.snapshot() {
            Ok(c) => c,
            Err(e) => {
                self.errors.record("collector", "snapshot", &e);
                Default::default()
            }
        };
        durations.push(("collector", t.elapsed()));

        let t = Instant::now();
        let common = &self.common_labels;
        let mut metrics = Vec::new();
        for w in self.watched.values() {
            let mut task = Vec::new();
            if let Some(c) = counters.get(&w.key) {
                let events = self.collector.events();
                task.extend(task_metrics::from_counters(
                    c,
                    events,
                    self.collector.runq_available(),
                ));
                if let Some(derived) = &mut self.derived {
                    let values = events
                        .iter()
                        .cloned()
                        .zip(c.perf.iter().map(|&v| v as f64))
                        .collect();
                    task.extend(derived.update(&w.task.task_id, t, &values));
                }
            }
            let cgroup =
                Cgroup::with_open_files(&self.mounts, &w.task.cgroup_path, &self.open_files);
            task.extend(cgroup_metrics(&cgroup, &w.task.task_id, &mut self.errors));
            if let Some(rdt) = &self.rdt {
                task.extend(rdt.metrics(&w.task.task_id, &mut self.errors));
            }
            // One label set per task, shared by its samples: task_id, then the task's own
            // labels, then the node's.
            let mut labels = w.task.labels.clone();
            labels.insert("task_id".to_owned(), w.task.task_id.clone());
            for (k, v) in common.iter() {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let labels = Arc::new(labels);
            metrics.extend(task.into_iter().map(|m| m.with_shared(&labels)));
        }
        let node_start = metrics.len();
        match self.platform.refresh_usage() {
            Ok(()) => metrics.extend(self.platform.metrics()),
            Err(e) => self.errors.record("platform", "platform", &e),
        }
        durations.push(("measurements", t.elapsed()));

        metrics.extend(self.internal_metrics(&durations, started));
        for m in &mut metrics[node_start..] {
            m.shared = Some(Arc::clone(common));
        }
        if let Err(e) = self.storage.store(&metrics) {
            self.errors.record("storage", "metrics_storage", &e);
        }
        self.errors.end_iteration();
        self.open_files.end_iteration();
    }

    /// Watches new tasks' cgroups and unwatches those of tasks that are gone.
    fn reconcile(&mut self, tasks: Vec<Task>) {
        let current: BTreeMap<String, Task> =
            tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect();
        // Gone, or moved to another cgroup (e.g. a restarted executor): unwatch the old one.
        let gone: Vec<String> = self
            .watched
            .iter()
            .filter(|(id, w)| {
                current
                    .get(*id)
                    .is_none_or(|t| t.cgroup_path != w.task.cgroup_path)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(derived) = &mut self.derived {
            derived.retain(|id| current.contains_key(id));
        }
        for id in gone {
            if let Some(w) = self.watched.remove(&id) {
                info!(task_id = %id, "task is gone: no longer measured");
                if let Err(e) = self.collector.unwatch(w.key) {
                    self.errors.record("collector", &id, &e);
                }
            }
        }
        for (id, task) in current {
            if let Some(w) = self.watched.get_mut(&id) {
                w.task = task;
                continue;
            }
            let dir = CgroupDir::new(self.hierarchy, &self.hierarchy_root, &task.cgroup_path);
            match self.collector.watch(&dir) {
                Ok(key) => {
                    info!(task_id = %id, cgroup = %task.cgroup_path, "measuring new task");
                    self.watched.insert(id, Watched { task, key });
                }
                Err(e) => self.errors.record("collector", &id, &e),
            }
        }
    }

    fn internal_metrics(
        &self,
        durations: &[(&'static str, Duration)],
        started: Instant,
    ) -> Vec<Metric> {
        let mut out = vec![
            Metric::gauge(names::OWCA_UP, names::OWCA_UP_HELP, 1.0),
            Metric::gauge(
                names::OWCA_TASKS,
                names::OWCA_TASKS_HELP,
                self.watched.len() as f64,
            ),
        ];
        if let Some(rss) = own_rss_bytes() {
            out.push(Metric::gauge(
                names::OWCA_MEMORY,
                names::OWCA_MEMORY_HELP,
                rss as f64,
            ));
        }
        for (function, d) in durations.iter().chain(&[("iteration", started.elapsed())]) {
            out.push(
                Metric::gauge(
                    names::OWCA_DURATION,
                    names::OWCA_DURATION_HELP,
                    d.as_secs_f64(),
                )
                .with_label("function", *function),
            );
        }
        out.extend(self.errors.metrics(&COMPONENTS));
        out
    }
}

/// Metrics the kernel keeps in cgroupfs for a task; an absent file means no metric.
fn cgroup_metrics(cg: &Cgroup<'_>, task_id: &str, errors: &mut ErrorCounter) -> Vec<Metric> {
    let mut out = Vec::new();
    let mut push =
        |r: Result<Option<f64>, crate::cgroups::CgroupError>, m: fn(f64) -> Metric| match r {
            Ok(Some(v)) => out.push(m(v)),
            Ok(None) => {}
            Err(e) => errors.record("cgroups", task_id, &e),
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

/// The agent's resident memory, from /proc/self/statm.
fn own_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
