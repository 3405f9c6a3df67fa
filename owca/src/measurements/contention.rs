//! Turns a task's contenders table (who ran while its threads waited) into samples
//! naming tasks.

use std::sync::Arc;

// Fx: the keys are the kernel's cgroup ids, looked up for every contender of every task
// each iteration.
use rustc_hash::FxHashMap;

use owca_common::{BY_UNWATCHED_KEY, ContenderTable};

use crate::metrics::{Labels, Metric, label_set, names};

const NS: f64 = 1e9;

/// The task id of each watched cgroup key.
pub type TaskOfKey<'a> = FxHashMap<u64, &'a str>;

/// The `by_task_id` label set of each contender, built once and shared by every task's
/// samples naming it. Tasks' sets are kept by cgroup key (hashing a key is cheaper than a
/// long task id) and forgotten when no iteration used them.
#[derive(Debug)]
pub struct ContenderLabels {
    tasks: FxHashMap<u64, (Arc<Labels>, u64)>,
    unwatched: Arc<Labels>,
    other: Arc<Labels>,
    own_quota: Arc<Labels>,
    generation: u64,
}

impl Default for ContenderLabels {
    fn default() -> Self {
        let set = |name| label_set(names::BY_TASK_ID_LABEL, name);
        Self {
            tasks: FxHashMap::default(),
            unwatched: set(names::BY_UNWATCHED),
            other: set(names::BY_OTHER),
            own_quota: set(names::BY_OWN_QUOTA),
            generation: 0,
        }
    }
}

impl ContenderLabels {
    /// Starts an iteration: the sets it uses are kept by [`Self::forget_unused`].
    pub fn start_iteration(&mut self) {
        self.generation += 1;
    }

    fn get(&mut self, by: By<'_>) -> &Arc<Labels> {
        let (key, task_id) = match by {
            By::Task(key, task_id) => (key, task_id),
            By::Unwatched => return &self.unwatched,
            By::Other => return &self.other,
        };
        let generation = self.generation;
        let (set, used) = self
            .tasks
            .entry(key)
            .or_insert_with(|| (label_set(names::BY_TASK_ID_LABEL, task_id), generation));
        // A key is a cgroup's for its life; a set naming another task is rebuilt anyway.
        if set.get(names::BY_TASK_ID_LABEL).map(String::as_str) != Some(task_id) {
            *set = label_set(names::BY_TASK_ID_LABEL, task_id);
        }
        *used = generation;
        set
    }

    /// Drops the sets of contenders this iteration did not name (gone tasks).
    pub fn forget_unused(&mut self) {
        let generation = self.generation;
        self.tasks.retain(|_, (_, used)| *used == generation);
    }
}

/// Who a contender is: a watched task (by cgroup key), any unwatched task, or any of those
/// that found the kernel's table full.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By<'a> {
    Task(u64, &'a str),
    Unwatched,
    Other,
}

/// Wait and preemptions by contender, in the kernel table's order (first seen first) then
/// `other`, plus `own_quota` (the task's own throttled time, `throttled_s`, when its cgroup
/// has a quota). A contender whose cgroup is no longer a task's counts as `unwatched`. At
/// most the kernel table's entries, `other`, `unwatched` and `own_quota`: bounded per task.
///
/// A zero count is not written: a series appears once the contender has taken time, as
/// a labelled counter of a Prometheus client does once first incremented. Most tasks are
/// never preempted, and at thousands of tasks the zeros were a fifth of all samples.
pub fn contention_metrics(
    table: &ContenderTable,
    task_of: &TaskOfKey,
    throttled_s: Option<f64>,
    labels: &mut ContenderLabels,
) -> Vec<Metric> {
    // Who, wait ns, preemptions: a handful, so a vector searched linearly.
    let mut by: Vec<(By<'_>, u64, u64)> = Vec::with_capacity(table.entries.len() + 1);
    for e in table.entries.iter().filter(|e| e.by_key != 0) {
        let who = match e.by_key {
            BY_UNWATCHED_KEY => By::Unwatched,
            key => task_of
                .get(&key)
                .map_or(By::Unwatched, |task_id| By::Task(key, task_id)),
        };
        add(&mut by, who, e.wait_ns, e.preemptions);
    }
    add(
        &mut by,
        By::Other,
        table.overflow_wait_ns,
        table.overflow_preemptions,
    );
    let mut out = Vec::with_capacity(2 * by.len() + 1);
    for (who, wait_ns, preemptions) in by {
        if wait_ns == 0 && preemptions == 0 {
            continue;
        }
        let set = labels.get(who);
        if wait_ns != 0 {
            out.push(
                Metric::counter(
                    names::TASK_RUNQ_WAIT_BY,
                    names::TASK_RUNQ_WAIT_BY_HELP,
                    wait_ns as f64 / NS,
                )
                .with_labels(set),
            );
        }
        if preemptions != 0 {
            out.push(
                Metric::counter(
                    names::TASK_PREEMPTED_BY,
                    names::TASK_PREEMPTED_BY_HELP,
                    preemptions as f64,
                )
                .with_labels(set),
            );
        }
    }
    if let Some(s) = throttled_s.filter(|&s| s > 0.0) {
        out.push(
            Metric::counter(names::TASK_RUNQ_WAIT_BY, names::TASK_RUNQ_WAIT_BY_HELP, s)
                .with_labels(&labels.own_quota),
        );
    }
    out
}

/// Adds a contender's counts to its sum.
fn add<'a>(by: &mut Vec<(By<'a>, u64, u64)>, who: By<'a>, wait_ns: u64, preemptions: u64) {
    match by.iter_mut().find(|(w, _, _)| *w == who) {
        Some(sum) => {
            sum.1 += wait_ns;
            sum.2 += preemptions;
        }
        None => by.push((who, wait_ns, preemptions)),
    }
}

#[cfg(test)]
mod tests {
    use owca_common::ContenderEntry;

    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn contenders_are_named_by_task_and_unknown_keys_are_unwatched() {
        let mut t = ContenderTable::default();
        t.entries[0] = ContenderEntry {
            by_key: 7,
            wait_ns: 2_000_000_000,
            preemptions: 3,
        };
        t.entries[1] = ContenderEntry {
            by_key: BY_UNWATCHED_KEY,
            wait_ns: 1_000_000_000,
            preemptions: 1,
        };
        t.entries[2] = ContenderEntry {
            by_key: 99,
            wait_ns: 500_000_000,
            preemptions: 0,
        };
        // A contender that has taken nothing yet (a neighbour woke it, it never ran).
        t.entries[3] = ContenderEntry {
            by_key: 8,
            wait_ns: 0,
            preemptions: 0,
        };
        t.overflow_wait_ns = 250_000_000;
        let task_of = TaskOfKey::from_iter([(7, "be"), (8, "idle")]);
        let mut labels = ContenderLabels::default();
        labels.start_iteration();
        let m = contention_metrics(&t, &task_of, Some(0.5), &mut labels);
        let wait: BTreeMap<&str, f64> = m
            .iter()
            .filter(|m| m.name == names::TASK_RUNQ_WAIT_BY)
            .map(|m| (m.labels[names::BY_TASK_ID_LABEL].as_str(), m.value))
            .collect();
        assert_eq!(
            wait,
            BTreeMap::from([
                ("be", 2.0),
                ("unwatched", 1.5),
                ("other", 0.25),
                ("own_quota", 0.5)
            ])
        );
        let preempted: f64 = m
            .iter()
            .filter(|m| {
                m.name == names::TASK_PREEMPTED_BY && m.labels[names::BY_TASK_ID_LABEL] == "be"
            })
            .map(|m| m.value)
            .sum();
        assert_eq!(preempted, 3.0);
        // Zero counts are not written: no sample names `idle`, none counts the overflow's
        // (zero) preemptions.
        assert!(
            m.iter()
                .all(|m| m.labels[names::BY_TASK_ID_LABEL] != "idle")
        );
        let preempted_by: Vec<&str> = m
            .iter()
            .filter(|m| m.name == names::TASK_PREEMPTED_BY)
            .map(|m| m.labels[names::BY_TASK_ID_LABEL].as_str())
            .collect();
        assert_eq!(preempted_by, ["be", "unwatched"]);
        // The sets are shared between samples and kept while used.
        let be: Vec<_> = m
            .iter()
            .filter(|m| m.labels[names::BY_TASK_ID_LABEL] == "be")
            .collect();
        assert!(Arc::ptr_eq(&be[0].labels, &be[1].labels));
        labels.forget_unused();
        assert_eq!(labels.tasks.len(), 1, "be's set is kept");
        labels.start_iteration();
        labels.forget_unused();
        assert!(labels.tasks.is_empty());
    }

    #[test]
    fn a_task_never_throttled_nor_waiting_has_no_contention_samples() {
        let mut labels = ContenderLabels::default();
        labels.start_iteration();
        let idle = contention_metrics(
            &ContenderTable::default(),
            &TaskOfKey::default(),
            Some(0.0),
            &mut labels,
        );
        assert!(idle.is_empty(), "{idle:?}");
    }
}
