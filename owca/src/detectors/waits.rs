//! Who made a task wait, interval by interval: the differences of a task's cumulative
//! counters between two observations (time on CPU, voluntary switches, and run-queue wait
//! by contender, see `TaskData::contenders`). Shared by `!ContentionDetector` and
//! `!CollocationAllocator`.

use std::collections::BTreeMap;

use crate::{
    measurements::{Observation, TaskData},
    metrics::names,
};

/// `task_context_switches_total{kind="voluntary"}` among a task's measurements.
const VOLUNTARY: &str = "task_context_switches_total_voluntary";

/// A task's counters at one observation.
#[derive(Debug, Clone)]
struct Counters {
    at: f64,
    oncpu: f64,
    runq: Option<f64>,
    voluntary: Option<f64>,
    by: BTreeMap<String, f64>,
}

impl Counters {
    fn read(t: &TaskData, at: f64) -> Option<Self> {
        let m = &t.measurements;
        Some(Self {
            at,
            oncpu: *m.get(names::TASK_ONCPU)?,
            runq: m.get(names::TASK_RUNQ_SUM).copied(),
            voluntary: m.get(VOLUNTARY).copied(),
            by: t.contenders.clone(),
        })
    }
}

/// One task's interval between two observations.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitInterval {
    /// Seconds between the observations.
    pub seconds: f64,
    /// Seconds its threads ran.
    pub oncpu: f64,
    /// Seconds they waited on a run queue, when the collector counts it.
    pub runq: Option<f64>,
    /// Times they blocked (voluntary context switches), when counted.
    pub voluntary: Option<f64>,
    /// Seconds they waited by contender (task id, `unwatched`, `own_quota`).
    pub by: BTreeMap<String, f64>,
}

impl WaitInterval {
    fn between(before: &Counters, now: &Counters) -> Option<Self> {
        let seconds = now.at - before.at;
        let oncpu = now.oncpu - before.oncpu;
        if seconds <= 0.0 || oncpu < 0.0 {
            return None;
        }
        let delta = |now: Option<f64>, before: Option<f64>| {
            let d = now? - before?;
            (d >= 0.0).then_some(d)
        };
        let runq = delta(now.runq, before.runq);
        // A contender new in the task's list starts from nothing; since only the largest
        // contenders are listed, one that dropped out and came back would count its whole
        // past: no contender is credited more than the task waited in the interval.
        let most = runq.unwrap_or(f64::INFINITY);
        let by = now
            .by
            .iter()
            .filter_map(|(who, v)| {
                let d = v - before.by.get(who).copied().unwrap_or(0.0);
                (d > 0.0).then(|| (who.clone(), d.min(most)))
            })
            .collect();
        Some(Self {
            seconds,
            oncpu,
            runq,
            voluntary: delta(now.voluntary, before.voluntary),
            by,
        })
    }

    /// CPUs used: seconds on CPU per second.
    pub fn cpus(&self) -> f64 {
        self.oncpu / self.seconds
    }

    /// Other watched tasks that ran while task `id` waited, largest wait first (ties by
    /// id), with the seconds waited; `unwatched`, `own_quota` and the task's own other
    /// threads are nobody's to blame.
    pub fn contenders(&self, id: &str) -> Vec<(&str, f64)> {
        let mut out: Vec<(&str, f64)> = self
            .by
            .iter()
            .filter(|(who, _)| {
                *who != names::BY_UNWATCHED && *who != names::BY_OWN_QUOTA && *who != id
            })
            .map(|(who, d)| (who.as_str(), *d))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }

    /// `wait` seconds per second the task ran (infinite when it did not run).
    pub fn per_cpu_second(&self, wait: f64) -> f64 {
        if self.oncpu > 0.0 {
            wait / self.oncpu
        } else if wait > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// Each task's previous counters, to make intervals of.
#[derive(Debug, Default)]
pub struct WaitTracker {
    previous: BTreeMap<String, Counters>,
}

impl WaitTracker {
    /// The interval of every task seen in the previous observation too (and whose counters
    /// did not go back, as a restarted task's do); forgets tasks no longer observed.
    pub fn intervals(&mut self, obs: &Observation) -> BTreeMap<String, WaitInterval> {
        let at = obs.platform.timestamp;
        let mut out = BTreeMap::new();
        let mut current = BTreeMap::new();
        for (id, task) in &obs.tasks {
            let Some(now) = Counters::read(task, at) else {
                continue;
            };
            if let Some(i) = self
                .previous
                .get(id)
                .and_then(|before| WaitInterval::between(before, &now))
            {
                out.insert(id.clone(), i);
            }
            current.insert(id.clone(), now);
        }
        self.previous = current;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurements::PlatformData;

    fn task(oncpu: f64, runq: f64, by: &[(&str, f64)]) -> TaskData {
        let mut t = TaskData::test_task(
            BTreeMap::from([
                (names::TASK_ONCPU.to_owned(), oncpu),
                (names::TASK_RUNQ_SUM.to_owned(), runq),
            ]),
            BTreeMap::new(),
        );
        t.contenders = by.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        t
    }

    fn obs(at: f64, t: TaskData) -> Observation {
        Observation {
            platform: PlatformData::test_node(at),
            tasks: BTreeMap::from([("lc".to_owned(), t)]),
        }
    }

    #[test]
    fn contenders_by_wait_in_the_interval_without_unwatched_and_own_quota() {
        let mut w = WaitTracker::default();
        assert!(
            w.intervals(&obs(10.0, task(1.0, 1.0, &[("be", 0.5)])))
                .is_empty()
        );
        let now = task(
            2.0,
            1.9,
            &[
                ("be", 0.8),
                ("x", 5.0),
                ("own_quota", 0.2),
                ("unwatched", 0.1),
                ("lc", 0.1),
            ],
        );
        let got = w.intervals(&obs(12.0, now));
        let i = &got["lc"];
        assert_eq!((i.seconds, i.oncpu, i.cpus()), (2.0, 1.0, 0.5));
        // x is new in the list: credited at most the 0.9 s waited in the interval.
        let c = i.contenders("lc");
        assert_eq!(c[0].0, "x");
        assert!((c[0].1 - 0.9).abs() < 1e-9, "{c:?}");
        assert_eq!(c[1].0, "be");
        assert!((c[1].1 - 0.3).abs() < 1e-9, "{c:?}");
        assert_eq!(c.len(), 2);
        assert_eq!(i.per_cpu_second(0.5), 0.5);
        // Counters going back (a restarted task): no interval.
        assert!(w.intervals(&obs(13.0, task(0.1, 0.0, &[]))).is_empty());
    }
}
