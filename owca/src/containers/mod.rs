//! Containers: the second stage of an iteration. Tasks the node lists become containers:
//! each task's cgroup watched in the eBPF collector (unwatched once the task is gone), its
//! sample labels built once, and its RDT monitoring group kept in step with its threads.
//!
//! Tasks sharing a cgroup (several Mesos tasks of one executor) share its watch: the
//! cgroup is unwatched when the last of them is gone. A task's own labels never replace
//! the agent's: one named as a reserved label is kept under a prefixed name
//! ([`rename_reserved`]).
//!
//! The stage hands the measurements stage a [`Container`] list as a value; the collector is
//! lent to it by the runner, which owns it.

mod rdt_monitoring;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use thiserror::Error;
use tracing::info;

pub use self::rdt_monitoring::RdtMonitoring;
use crate::{
    cgroups::{Hierarchy, Mounts},
    collector::{CgroupDir, Collector},
    metrics::{Labels, SelfMetrics, labels::RESERVED_LABELS, names::TASK_ID_LABEL},
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

/// A problem of the containers stage with one task that does not stop its measurement.
#[derive(Debug, Error)]
pub enum ContainerError {
    /// Some of the task's labels are named as the agent's own; they are kept renamed.
    #[error(
        "task {task_id}: labels named as the agent's own are kept renamed: {}",
        renames(renamed)
    )]
    ReservedLabels {
        /// The task.
        task_id: String,
        /// (name given by the task, name it is kept under).
        renamed: Vec<(String, String)>,
    },
}

fn renames(renamed: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (from, to)) in renamed.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{from} as {to}");
    }
    out
}

/// The containers stage: what is watched, and the labels of each task.
pub struct Containers {
    hierarchy: Hierarchy,
    hierarchy_root: PathBuf,
    /// The node's labels and `extra_labels`, carried by every sample.
    common_labels: Arc<Labels>,
    watched: BTreeMap<String, Container>,
    /// Watched cgroup key → how many watched tasks are in it: tasks of one executor share
    /// a cgroup, which stays watched while any of them runs.
    users: HashMap<u64, usize>,
    /// Task id → its labels renamed for clashing with reserved names, as last reported:
    /// reported (logged and counted) once per task, again only if they change.
    renamed: BTreeMap<String, Vec<(String, String)>>,
    /// The node's last list: the same list again (the same `Arc`) changes nothing, unless
    /// a task could not be watched and is to be tried again.
    listed: Option<Arc<Vec<Task>>>,
    /// Whether a task of the last list could not be watched.
    unwatched: bool,
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
            users: HashMap::new(),
            renamed: BTreeMap::new(),
            listed: None,
            unwatched: false,
            monitoring,
        }
    }

    /// The labels every sample carries (node's and `extra_labels`).
    pub fn common_labels(&self) -> &Arc<Labels> {
        &self.common_labels
    }

    /// Reconciles with `tasks` (`None` when the node could not list them: the previous
    /// containers stay, so a broken answer loses no task's metrics; the runner passes an
    /// empty list once the last one has expired) and returns the
    /// containers to measure. `control_groups` is where allocations put tasks' threads.
    pub fn update(
        &mut self,
        tasks: Option<Arc<Vec<Task>>>,
        control_groups: &ControlGroups,
        collector: &mut Collector,
        mounts: &Mounts,
        stats: &mut SelfMetrics,
    ) -> Vec<Container> {
        let t = Instant::now();
        if let Some(tasks) = tasks {
            let same = self.listed.as_ref().is_some_and(|l| Arc::ptr_eq(l, &tasks));
            if !same || self.unwatched {
                self.reconcile(&tasks, collector, stats);
                self.listed = Some(tasks);
            }
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

    /// Watches new tasks' cgroups and unwatches those no task is in any more. Only new and
    /// changed tasks cost more than a comparison: their labels are renamed where reserved
    /// and their sample labels built.
    fn reconcile(&mut self, tasks: &[Task], collector: &mut Collector, stats: &mut SelfMetrics) {
        // By id; a task listed twice counts as its last entry.
        let current: BTreeMap<&str, &Task> =
            tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
        self.renamed
            .retain(|id, _| current.contains_key(id.as_str()));
        // Gone, or moved to another cgroup (e.g. a restarted executor): unwatch the old one.
        let gone: Vec<String> = self
            .watched
            .iter()
            .filter(|(id, c)| {
                current
                    .get(id.as_str())
                    .is_none_or(|t| t.cgroup_path != c.task.cgroup_path)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(c) = self.watched.remove(&id) {
                info!(task_id = %id, "task is gone: no longer measured");
                self.release(c.key, &id, collector, stats);
            }
        }
        self.unwatched = false;
        for (id, listed) in current {
            if let Some(c) = self.watched.get(id)
                && is_unchanged(&c.task, listed, &self.common_labels)
            {
                continue;
            }
            let mut task = listed.clone();
            let renamed = rename_reserved(&mut task.labels, &self.common_labels);
            self.report_renamed(id, renamed, stats);
            if let Some(c) = self.watched.get_mut(id) {
                c.labels = sample_labels(&task, &self.common_labels);
                c.task = Arc::new(task);
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
                    *self.users.entry(key).or_default() += 1;
                    let container = Container {
                        labels: sample_labels(&task, &self.common_labels),
                        task: Arc::new(task),
                        key,
                        mon_data: None,
                    };
                    self.watched.insert(id.to_owned(), container);
                }
                Err(e) => {
                    self.unwatched = true;
                    stats.record("collector", id, &e);
                }
            }
        }
    }

    /// One task less in the cgroup `key`: unwatched when it was the last.
    fn release(
        &mut self,
        key: u64,
        task_id: &str,
        collector: &mut Collector,
        stats: &mut SelfMetrics,
    ) {
        let users = self.users.entry(key).or_default();
        *users = users.saturating_sub(1);
        if *users > 0 {
            return;
        }
        self.users.remove(&key);
        if let Err(e) = collector.unwatch(key) {
            stats.record("collector", task_id, &e);
        }
    }

    /// Logs and counts a task's renamed labels the first time they are seen.
    fn report_renamed(
        &mut self,
        task_id: &str,
        renamed: Vec<(String, String)>,
        stats: &mut SelfMetrics,
    ) {
        if renamed.is_empty() {
            self.renamed.remove(task_id);
            return;
        }
        if self.renamed.get(task_id) == Some(&renamed) {
            return;
        }
        let error = ContainerError::ReservedLabels {
            task_id: task_id.to_owned(),
            renamed: renamed.clone(),
        };
        stats.record("node", task_id, &error);
        self.renamed.insert(task_id.to_owned(), renamed);
    }
}

/// Renames, in `labels` (a task's own), every label named as a reserved one: `le`,
/// `quantile`, `task_id` ([`RESERVED_LABELS`]) or any of `common` (the node's labels and
/// `extra_labels`). Each is kept as `task_<name>`, with `task_` prefixed again while that
/// name is reserved or taken by another of the task's labels. Returns (old, new) name
/// pairs, in name order.
pub fn rename_reserved(labels: &mut Labels, common: &Labels) -> Vec<(String, String)> {
    let reserved = |name: &str| RESERVED_LABELS.contains(&name) || common.contains_key(name);
    let clashing: Vec<String> = labels.keys().filter(|k| reserved(k)).cloned().collect();
    let mut renamed = Vec::with_capacity(clashing.len());
    for name in clashing {
        let Some(value) = labels.remove(&name) else {
            continue;
        };
        let mut new = format!("task_{name}");
        while reserved(&new) || labels.contains_key(&new) {
            new.insert_str(0, "task_");
        }
        labels.insert(new.clone(), value);
        renamed.push((name, new));
    }
    renamed
}

/// Whether `listed` (as the node listed it) is the task already kept as `kept` (its labels
/// renamed where reserved): without renaming, when none of its labels is reserved.
fn is_unchanged(kept: &Task, listed: &Task, common: &Labels) -> bool {
    let reserved = |name: &str| RESERVED_LABELS.contains(&name) || common.contains_key(name);
    if !listed.labels.keys().any(|k| reserved(k)) {
        return kept == listed;
    }
    let mut renamed = listed.clone();
    rename_reserved(&mut renamed.labels, common);
    *kept == renamed
}

/// A task's sample labels: its own (renamed where reserved, see [`rename_reserved`]),
/// the node's and `task_id`.
pub fn sample_labels(task: &Task, common: &Labels) -> Arc<Labels> {
    let mut labels = task.labels.clone();
    rename_reserved(&mut labels, common);
    labels.extend(common.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Last: not even an `extra_labels` key replaces the task's id.
    labels.insert(TASK_ID_LABEL.to_owned(), task.task_id.clone());
    Arc::new(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reserved_task_labels_are_kept_under_a_prefixed_name() {
        let common = labels(&[("host", "node1"), ("cpus", "8"), ("dc", "west")]);
        let mut own = labels(&[
            ("le", "1"),
            ("quantile", "0.5"),
            ("task_id", "forged"),
            ("host", "other"),
            ("dc", "east"),
            ("task_dc", "mine"),
            ("tier", "prod"),
        ]);
        let renamed = rename_reserved(&mut own, &common);
        assert_eq!(
            renamed,
            [
                ("dc", "task_task_dc"),
                ("host", "task_host"),
                ("le", "task_le"),
                ("quantile", "task_quantile"),
                ("task_id", "task_task_id"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(
            own,
            labels(&[
                ("task_le", "1"),
                ("task_quantile", "0.5"),
                ("task_task_id", "forged"),
                ("task_host", "other"),
                ("task_task_dc", "east"),
                ("task_dc", "mine"),
                ("tier", "prod"),
            ])
        );
        // Nothing left to rename: the renamed set is stable.
        assert!(rename_reserved(&mut own, &common).is_empty());
        let error = ContainerError::ReservedLabels {
            task_id: "t1".into(),
            renamed,
        };
        assert!(
            error
                .to_string()
                .starts_with("task t1: labels named as the agent's own are kept renamed: dc as task_task_dc, host as task_host"),
            "{error}"
        );
    }

    #[test]
    fn sample_labels_carry_the_nodes_values() {
        let common = labels(&[("host", "node1"), ("cpus", "8")]);
        let task = Task {
            task_id: "t1".into(),
            name: "t1".into(),
            cgroup_path: "/mesos/c".into(),
            labels: labels(&[("host", "forged"), ("task_id", "forged"), ("le", "0")]),
            resources: BTreeMap::new(),
        };
        assert_eq!(
            *sample_labels(&task, &common),
            labels(&[
                ("host", "node1"),
                ("cpus", "8"),
                ("task_id", "t1"),
                ("task_host", "forged"),
                ("task_task_id", "forged"),
                ("task_le", "0"),
            ])
        );
        // Not even an extra_labels key replaces the task's id.
        let common = labels(&[("task_id", "extra")]);
        assert_eq!(sample_labels(&task, &common)["task_id"], "t1");
    }

    #[test]
    fn unchanged_tasks_are_recognised_with_or_without_reserved_labels() {
        let common = labels(&[("host", "node1")]);
        let listed = Task {
            task_id: "t1".into(),
            name: "t1".into(),
            cgroup_path: "/mesos/c".into(),
            labels: labels(&[("tier", "prod")]),
            resources: BTreeMap::new(),
        };
        assert!(is_unchanged(&listed, &listed, &common));
        let mut other = listed.clone();
        other.labels.insert("tier".into(), "dev".into());
        assert!(!is_unchanged(&listed, &other, &common));
        // Kept renamed: the same listing is still the same task.
        let mut clashing = listed.clone();
        clashing.labels.insert("host".into(), "forged".into());
        let mut kept = clashing.clone();
        rename_reserved(&mut kept.labels, &common);
        assert!(is_unchanged(&kept, &clashing, &common));
        assert!(!is_unchanged(&kept, &listed, &common));
    }
}
