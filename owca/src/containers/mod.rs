//! Containers: the second stage of an iteration. Tasks the node lists become containers:
//! each task's cgroup watched in the eBPF collector (unwatched once the task is gone), its
//! sample labels built once, and its RDT monitoring group kept in step with its threads.
//!
//! The stage hands the measurements stage a [`Container`] list as a value; the collector is
//! lent to it by the runner, which owns it.

mod rdt_monitoring;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use tracing::info;

pub use self::rdt_monitoring::RdtMonitoring;
use crate::{
    cgroups::{Hierarchy, Mounts},
    collector::{CgroupDir, Collector},
    metrics::{Labels, SelfMetrics},
    nodes::Task,
};

/// One task as the measurements stage sees it.
#[derive(Debug, Clone)]
pub struct Container {
    /// The task as the node listed it.
    pub task: Arc<Task>,
    /// The labels every sample of the task carries: `task_id`, its own, the node's.
    pub labels: Arc<Labels>,
    /// The task's cgroup in the collector's maps.
    pub key: u64,
    /// The `mon_data` directory of the task's RDT monitoring group, when monitored.
    pub mon_data: Option<PathBuf>,
}

/// Task id → the RDT control group its threads are in (`""` = the root group), as the last
/// allocation left them: monitoring groups must be made under that group.
pub type ControlGroups = BTreeMap<String, String>;

/// The containers stage: what is watched, and the labels of each task.
pub struct Containers {
    hierarchy: Hierarchy,
    hierarchy_root: PathBuf,
    /// The node's labels and `extra_labels`, carried by every sample.
    common_labels: Arc<Labels>,
    watched: BTreeMap<String, Container>,
    monitoring: Option<RdtMonitoring>,
}

impl Containers {
    /// Tasks are watched in `hierarchy`, mounted at `hierarchy_root`; `monitoring` makes
    /// RDT monitoring groups when given.
    pub fn new(
        hierarchy: Hierarchy,
        hierarchy_root: PathBuf,
        common_labels: Arc<Labels>,
        monitoring: Option<RdtMonitoring>,
    ) -> Self {
        Self {
            hierarchy,
            hierarchy_root,
            common_labels,
            watched: BTreeMap::new(),
            monitoring,
        }
    }

    /// The labels every sample carries (node's and `extra_labels`).
    pub fn common_labels(&self) -> &Arc<Labels> {
        &self.common_labels
    }

    /// Reconciles with `tasks` (`None` when the node could not list them: the previous
    /// containers stay, so a broken answer loses no task's metrics) and returns the
    /// containers to measure. `control_groups` is where allocations put tasks' threads.
    pub fn update(
        &mut self,
        tasks: Option<Vec<Task>>,
        control_groups: &ControlGroups,
        collector: &mut Collector,
        mounts: &Mounts,
        stats: &mut SelfMetrics,
    ) -> Vec<Container> {
        let t = Instant::now();
        if let Some(tasks) = tasks {
            self.reconcile(tasks, collector, stats);
        }
        stats.timed("node", t);
        if let Some(monitoring) = &mut self.monitoring {
            let t = Instant::now();
            monitoring.follow_control_groups(control_groups, stats);
            let tasks: Vec<&Task> = self.watched.values().map(|c| &*c.task).collect();
            monitoring.sync(mounts, &tasks, stats);
            for c in self.watched.values_mut() {
                c.mon_data = monitoring.mon_data(&c.task.task_id);
            }
            stats.timed("resctrl", t);
        }
        self.watched.values().cloned().collect()
    }

    /// Watches new tasks' cgroups and unwatches those of tasks that are gone.
    fn reconcile(&mut self, tasks: Vec<Task>, collector: &mut Collector, stats: &mut SelfMetrics) {
        let current: BTreeMap<String, Task> =
            tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect();
        // Gone, or moved to another cgroup (e.g. a restarted executor): unwatch the old one.
        let gone: Vec<String> = self
            .watched
            .iter()
            .filter(|(id, c)| {
                current
                    .get(*id)
                    .is_none_or(|t| t.cgroup_path != c.task.cgroup_path)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(c) = self.watched.remove(&id) {
                info!(task_id = %id, "task is gone: no longer measured");
                if let Err(e) = collector.unwatch(c.key) {
                    stats.record("collector", &id, &e);
                }
            }
        }
        for (id, task) in current {
            if let Some(c) = self.watched.get_mut(&id) {
                if *c.task != task {
                    c.labels = sample_labels(&task, &self.common_labels);
                    c.task = Arc::new(task);
                }
                continue;
            }
            let dir = CgroupDir::new(
                self.hierarchy.clone(),
                &self.hierarchy_root,
                &task.cgroup_path,
            );
            match collector.watch(&dir) {
                Ok(key) => {
                    info!(task_id = %id, cgroup = %task.cgroup_path, "measuring new task");
                    let container = Container {
                        labels: sample_labels(&task, &self.common_labels),
                        task: Arc::new(task),
                        key,
                        mon_data: None,
                    };
                    self.watched.insert(id, container);
                }
                Err(e) => stats.record("collector", &id, &e),
            }
        }
    }
}

/// A task's sample labels: `task_id`, then the task's own labels, then the node's.
pub fn sample_labels(task: &Task, common: &Labels) -> Arc<Labels> {
    let mut labels = task.labels.clone();
    labels.insert("task_id".to_owned(), task.task_id.clone());
    for (k, v) in common {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Arc::new(labels)
}
