//! What every runner does first each iteration: tasks → containers → measurements.
//!
//! [`Measurer`] owns the node, the eBPF collector and the cgroupfs/resctrl readers;
//! [`Measurer::measure`] returns one [`Measured`] snapshot that the runner hands to its
//! detector or allocator and then to its storages.

use std::{
    collections::BTreeMap,
    ops::Range,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use thiserror::Error;
use tracing::info;

use super::{ErrorCounter, derived::DerivedMetrics, rdt::Rdt, task_metrics};
use crate::{
    cgroups::{Cgroup, Mounts, OpenFiles},
    collector::{CgroupDir, Collector, CollectorConfig, CollectorError, Hierarchy},
    metrics::{Labels, Metric, MetricType, names},
    nodes::{NodeConfig, Task},
    platform::Platform,
    storage::StorageError,
};

/// Components every runner counts in `owca_errors_total`.
pub const COMPONENTS: [&str; 6] = [
    "node",
    "collector",
    "cgroups",
    "resctrl",
    "platform",
    "storage",
];

/// What the measuring part of a runner needs; every runner's YAML has these fields.
#[derive(Debug)]
pub struct MeasurerConfig {
    /// Where tasks come from.
    pub node: NodeConfig,
    /// Labels added to every metric.
    pub extra_labels: BTreeMap<String, String>,
    /// Counter events to count per task.
    pub event_names: Vec<String>,
    /// Derived metrics from counter deltas.
    pub enable_derived_metrics: bool,
    /// RDT monitoring: unset = where resctrl is mounted.
    pub rdt_enabled: Option<bool>,
    /// Most tasks watched in the kernel at once.
    pub max_cgroups: u32,
}

/// Why a runner could not start.
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
    task: Arc<Task>,
    /// The labels of the task's samples, built when the task appears or changes rather
    /// than every iteration.
    labels: Arc<Labels>,
    key: u64,
}

/// A task's sample labels: `task_id`, then the task's own labels, then the node's.
fn sample_labels(task: &Task, common: &Labels) -> Arc<Labels> {
    let mut labels = task.labels.clone();
    labels.insert("task_id".to_owned(), task.task_id.clone());
    for (k, v) in common {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Arc::new(labels)
}

/// One task in a [`Measured`] snapshot.
#[derive(Debug)]
pub struct TaskData {
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
    /// When the iteration started.
    pub started: Instant,
    /// Time spent per stage so far; runners add their own stages.
    pub durations: Vec<(&'static str, Duration)>,
    /// Tasks by task id.
    pub tasks: BTreeMap<String, TaskData>,
    /// Every task's samples (see [`TaskData::metrics`]), then the platform's.
    pub metrics: Vec<Metric>,
}

impl Measured {
    /// A task's measurements as OWCA passed them to detectors: metric name → value.
    /// Histogram buckets are left out; samples with their own labels (e.g.
    /// `kind="voluntary"`) are named `<name>_<label value>`.
    pub fn measurements(&self, task: &TaskData) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for m in &self.metrics[task.metrics.clone()] {
            if m.kind == MetricType::Histogram && m.suffix == "_bucket" {
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
}

/// The measuring half of every runner.
pub struct Measurer {
    node: NodeConfig,
    collector: Collector,
    mounts: Mounts,
    hierarchy: Hierarchy,
    hierarchy_root: PathBuf,
    watched: BTreeMap<String, Watched>,
    /// Errors of every stage, the runner's own included.
    pub errors: ErrorCounter,
    /// The node's labels and `extra_labels`, carried by every sample.
    common_labels: Arc<Labels>,
    /// Tasks' cgroupfs files, kept open between iterations.
    open_files: OpenFiles,
    /// Topology and model read at start; usage refreshed each iteration.
    platform: Platform,
    rdt: Option<Rdt>,
    derived: Option<DerivedMetrics>,
}

impl Measurer {
    /// Tells RDT monitoring which control group each task's threads are in (task id →
    /// group, `""` = root), so its monitoring group is made there.
    pub fn follow_control_groups<'a>(
        &mut self,
        groups: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        if let Some(rdt) = &mut self.rdt {
            rdt.follow_control_groups(groups, &mut self.errors);
        }
    }

    /// Checks the machine and loads the collector.
    pub fn new(cfg: MeasurerConfig) -> Result<Self, RunnerError> {
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

    /// The platform as of the last [`Self::measure`].
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Where the cgroup hierarchies are mounted.
    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// The labels every sample carries (node's and `extra_labels`).
    pub fn common_labels(&self) -> &Arc<Labels> {
        &self.common_labels
    }

    /// Asks the node for tasks, reconciles what is watched and measures every task.
    pub async fn measure(&mut self) -> Measured {
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
            let tasks: Vec<&Task> = self.watched.values().map(|w| &*w.task).collect();
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
        let mut tasks = BTreeMap::new();
        for w in self.watched.values() {
            let first = metrics.len();
            if let Some(c) = counters.get(&w.key) {
                let events = self.collector.events();
                metrics.extend(task_metrics::from_counters(
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
                    metrics.extend(derived.update(&w.task.task_id, t, &values));
                }
            }
            let cgroup =
                Cgroup::with_open_files(&self.mounts, &w.task.cgroup_path, &self.open_files);
            metrics.extend(cgroup_metrics(&cgroup, &w.task.task_id, &mut self.errors));
            if let Some(rdt) = &self.rdt {
                metrics.extend(rdt.metrics(&w.task.task_id, &mut self.errors));
            }
            // One label set per task, shared by its samples.
            let labels = Arc::clone(&w.labels);
            for m in &mut metrics[first..] {
                m.shared = Some(Arc::clone(&labels));
            }
            tasks.insert(
                w.task.task_id.clone(),
                TaskData {
                    task: Arc::clone(&w.task),
                    labels,
                    metrics: first..metrics.len(),
                },
            );
        }
        let node_start = metrics.len();
        match self.platform.refresh_usage() {
            Ok(()) => metrics.extend(self.platform.metrics()),
            Err(e) => self.errors.record("platform", "platform", &e),
        }
        for m in &mut metrics[node_start..] {
            m.shared = Some(Arc::clone(common));
        }
        durations.push(("measurements", t.elapsed()));
        Measured {
            started,
            durations,
            tasks,
            metrics,
        }
    }

    /// The agent's own metrics for this iteration (`owca_*`), with common labels;
    /// `components` are those counted in `owca_errors_total`.
    pub fn internal_metrics(
        &self,
        measured: &Measured,
        components: &[&'static str],
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
        let iteration = ("iteration", measured.started.elapsed());
        for (function, d) in measured.durations.iter().chain(&[iteration]) {
            out.push(
                Metric::gauge(
                    names::OWCA_DURATION,
                    names::OWCA_DURATION_HELP,
                    d.as_secs_f64(),
                )
                .with_label("function", *function),
            );
        }
        out.extend(self.errors.metrics(components));
        for m in &mut out {
            m.shared = Some(Arc::clone(&self.common_labels));
        }
        out
    }

    /// Ends the iteration: clears errors not seen in it, closes files of gone tasks.
    pub fn end_iteration(&mut self) {
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
                if *w.task != task {
                    w.labels = sample_labels(&task, &self.common_labels);
                    w.task = Arc::new(task);
                }
                continue;
            }
            let dir = CgroupDir::new(self.hierarchy, &self.hierarchy_root, &task.cgroup_path);
            match self.collector.watch(&dir) {
                Ok(key) => {
                    info!(task_id = %id, cgroup = %task.cgroup_path, "measuring new task");
                    self.watched.insert(
                        id,
                        Watched {
                            labels: sample_labels(&task, &self.common_labels),
                            task: Arc::new(task),
                            key,
                        },
                    );
                }
                Err(e) => self.errors.record("collector", &id, &e),
            }
        }
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
