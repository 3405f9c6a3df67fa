//! Turns a task's contenders table (who ran while its threads waited) into samples
//! naming tasks.

use std::sync::Arc;

// Looked up for every contender of every task each iteration: Fx for the kernel's cgroup
// keys; foldhash, seeded per process, for task ids, which are the tenants' choice.
use rustc_hash::FxHashMap;

use owca_common::{BY_UNWATCHED_KEY, ContenderTable};

use crate::metrics::{Labels, Metric, label_set, names};

const NS: f64 = 1e9;

/// The task id of each watched cgroup key.
pub type TaskOfKey<'a> = FxHashMap<u64, &'a str>;

/// The `by_task_id` label set of each contender name, built once and shared by every
/// task's samples naming it; a name no iteration used is forgotten.
#[derive(Debug, Default)]
pub struct ContenderLabels {
    sets: foldhash::HashMap<String, (Arc<Labels>, u64)>,
    generation: u64,
}

impl ContenderLabels {
    /// Starts an iteration: the names it uses are kept by [`Self::forget_unused`].
    pub fn start_iteration(&mut self) {
        self.generation += 1;
    }

    fn get(&mut self, name: &str) -> &Arc<Labels> {
        let generation = self.generation;
        if !self.sets.contains_key(name) {
            let set = label_set(names::BY_TASK_ID_LABEL, name);
            self.sets.insert(name.to_owned(), (set, generation));
        }
        let (set, used) = self
            .sets
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("inserted above"));
        *used = generation;
        set
    }

    /// Drops the sets of names this iteration did not use (gone tasks).
    pub fn forget_unused(&mut self) {
        let generation = self.generation;
        self.sets.retain(|_, (_, used)| *used == generation);
    }
}

/// Wait and preemptions by contender, in contender name order, plus `own_quota` (the
/// task's own throttled time, `throttled_s`, when its cgroup has a quota). A contender
/// whose cgroup is no longer a task's counts as `unwatched`. At most the kernel table's
/// entries, `other`, `unwatched` and `own_quota`: bounded per task.
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
    // Name, wait ns, preemptions: a handful, so a vector searched linearly.
    let mut by: Vec<(&str, u64, u64)> = Vec::with_capacity(table.entries.len() + 1);
    for e in table.entries.iter().filter(|e| e.by_key != 0) {
        let name = match e.by_key {
            BY_UNWATCHED_KEY => names::BY_UNWATCHED,
            key => task_of.get(&key).copied().unwrap_or(names::BY_UNWATCHED),
        };
        add(&mut by, name, e.wait_ns, e.preemptions);
    }
    add(
        &mut by,
        names::BY_OTHER,
        table.overflow_wait_ns,
        table.overflow_preemptions,
    );
    by.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(2 * by.len() + 1);
    for (name, wait_ns, preemptions) in by {
        if wait_ns == 0 && preemptions == 0 {
            continue;
        }
        let by = labels.get(name);
        if wait_ns != 0 {
            out.push(
                Metric::counter(
                    names::TASK_RUNQ_WAIT_BY,
                    names::TASK_RUNQ_WAIT_BY_HELP,
                    wait_ns as f64 / NS,
                )
                .with_labels(by),
            );
        }
        if preemptions != 0 {
            out.push(
                Metric::counter(
                    names::TASK_PREEMPTED_BY,
                    names::TASK_PREEMPTED_BY_HELP,
                    preemptions as f64,
                )
                .with_labels(by),
            );
        }
    }
    if let Some(s) = throttled_s.filter(|&s| s > 0.0) {
        out.push(
            Metric::counter(names::TASK_RUNQ_WAIT_BY, names::TASK_RUNQ_WAIT_BY_HELP, s)
                .with_labels(labels.get(names::BY_OWN_QUOTA)),
        );
    }
    out
}

/// Adds a contender's counts to its name's sum.
fn add<'a>(by: &mut Vec<(&'a str, u64, u64)>, name: &'a str, wait_ns: u64, preemptions: u64) {
    match by.iter_mut().find(|(n, _, _)| *n == name) {
        Some(sum) => {
            sum.1 += wait_ns;
            sum.2 += preemptions;
        }
        None => by.push((name, wait_ns, preemptions)),
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
        assert_eq!(labels.sets.len(), 4);
        labels.start_iteration();
        labels.forget_unused();
        assert!(labels.sets.is_empty());
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
