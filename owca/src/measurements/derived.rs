//! OWCA's derived metrics (`enable_derived_metrics: true`): ratios of the deltas of a
//! task's counters between two consecutive iterations.
//!
//! A metric is absent on a task's first iteration, when one of its inputs is missing in
//! either iteration, when the delta it divides by is zero, and for the iteration in which
//! any input counter went down (a reset, e.g. the task's cgroup was watched anew); the
//! next iteration then computes from the values seen at the reset.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use crate::metrics::{
    Metric,
    names::{
        CACHE_HIT_RATIO, CACHE_HIT_RATIO_HELP, CACHE_MISSES, CACHE_MISSES_PER_KILO_INSTRUCTIONS,
        CACHE_MISSES_PER_KILO_INSTRUCTIONS_HELP, CACHE_REFERENCES, CYCLES, INSTRUCTIONS, IPC,
        IPC_HELP, IPS, IPS_HELP,
    },
};

/// The inputs, in the order of [`Sample::values`].
const INPUTS: [&str; 4] = [INSTRUCTIONS, CYCLES, CACHE_MISSES, CACHE_REFERENCES];

/// One task's inputs at one moment; `None` when the counter is not measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    values: [Option<f64>; 4],
}

/// The previous sample of each task. Call [`Self::update`] once per task per iteration
/// and [`Self::retain`] with the live tasks so that gone tasks leave no state behind.
#[derive(Debug, Default)]
pub struct DerivedMetrics {
    last: HashMap<String, Sample>,
}

impl DerivedMetrics {
    /// Records the task's counters (keyed by event name; NaN, infinite or negative values
    /// count as missing) measured at `now`, and returns the derived metrics over the time
    /// since its previous update, without labels (the measurements stage adds the task's).
    pub fn update(
        &mut self,
        task_id: &str,
        now: Instant,
        counters: &BTreeMap<String, f64>,
    ) -> Vec<Metric> {
        let current = Sample {
            at: now,
            values: INPUTS.map(|name| {
                counters
                    .get(name)
                    .copied()
                    .filter(|v| v.is_finite() && *v >= 0.0)
            }),
        };
        let previous = match self.last.get_mut(task_id) {
            Some(last) => std::mem::replace(last, current),
            None => {
                self.last.insert(task_id.to_owned(), current);
                return Vec::new();
            }
        };
        derive(&previous, &current)
    }

    /// Forgets every task for which `live` is false.
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.last.retain(|id, _| live(id));
    }

    /// Number of tasks with state.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no task has state.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The metrics between two samples of one task; none if a counter went down.
fn derive(previous: &Sample, current: &Sample) -> Vec<Metric> {
    let mut delta = [None; 4];
    for (i, d) in delta.iter_mut().enumerate() {
        if let (Some(p), Some(c)) = (previous.values[i], current.values[i]) {
            if c < p {
                return Vec::new();
            }
            *d = Some(c - p);
        }
    }
    let [instructions, cycles, misses, references] = delta;
    let seconds = current
        .at
        .saturating_duration_since(previous.at)
        .as_secs_f64();
    let ratio = |num: Option<f64>, den: Option<f64>| match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    };
    let hits = references.zip(misses).map(|(r, m)| r - m);
    [
        (IPC, IPC_HELP, ratio(instructions, cycles)),
        (IPS, IPS_HELP, ratio(instructions, Some(seconds))),
        (
            CACHE_HIT_RATIO,
            CACHE_HIT_RATIO_HELP,
            ratio(hits, references),
        ),
        (
            CACHE_MISSES_PER_KILO_INSTRUCTIONS,
            CACHE_MISSES_PER_KILO_INSTRUCTIONS_HELP,
            ratio(misses, instructions.map(|i| i / 1000.0)),
        ),
    ]
    .into_iter()
    .filter_map(|(name, help, value)| value.map(|v| Metric::gauge(name, help, v)))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::MetricType;

    fn counters(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn all(instructions: f64, cycles: f64, misses: f64, references: f64) -> BTreeMap<String, f64> {
        counters(&[
            (INSTRUCTIONS, instructions),
            (CYCLES, cycles),
            (CACHE_MISSES, misses),
            (CACHE_REFERENCES, references),
        ])
    }

    fn value(metrics: &[Metric], name: &str) -> Option<f64> {
        metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    #[test]
    fn each_formula_uses_deltas() {
        let mut d = DerivedMetrics::default();
        let t0 = Instant::now();
        assert!(
            d.update("t", t0, &all(1000.0, 500.0, 10.0, 100.0))
                .is_empty()
        );
        let m = d.update(
            "t",
            t0 + Duration::from_secs(2),
            &all(9000.0, 4500.0, 50.0, 300.0),
        );
        assert_eq!(m.len(), 4);
        assert!(
            m.iter()
                .all(|m| m.kind == MetricType::Gauge && m.labels.is_empty())
        );
        // 8000 instructions, 4000 cycles, 40 misses, 200 references, 2 s.
        assert_eq!(value(&m, IPC), Some(2.0));
        assert_eq!(value(&m, IPS), Some(4000.0));
        assert_eq!(value(&m, CACHE_HIT_RATIO), Some(0.8));
        assert_eq!(value(&m, CACHE_MISSES_PER_KILO_INSTRUCTIONS), Some(5.0));
        // The next iteration is relative to the second sample.
        let m = d.update(
            "t",
            t0 + Duration::from_secs(3),
            &all(10_000.0, 5500.0, 50.0, 400.0),
        );
        assert_eq!(value(&m, IPC), Some(1.0));
        assert_eq!(value(&m, IPS), Some(1000.0));
        assert_eq!(value(&m, CACHE_HIT_RATIO), Some(1.0));
        assert_eq!(value(&m, CACHE_MISSES_PER_KILO_INSTRUCTIONS), Some(0.0));
    }

    #[test]
    fn tasks_are_independent_and_start_absent() {
        let mut d = DerivedMetrics::default();
        let t0 = Instant::now();
        d.update("a", t0, &all(0.0, 0.0, 0.0, 0.0));
        assert!(
            d.update("b", t0 + Duration::from_secs(1), &all(5.0, 5.0, 0.0, 0.0))
                .is_empty()
        );
        let m = d.update("a", t0 + Duration::from_secs(1), &all(10.0, 5.0, 0.0, 0.0));
        assert_eq!(value(&m, IPC), Some(2.0));
    }

    #[test]
    fn missing_inputs_leave_out_only_what_needs_them() {
        let mut d = DerivedMetrics::default();
        let t0 = Instant::now();
        // The default events: no cache_references.
        let before = counters(&[(INSTRUCTIONS, 0.0), (CYCLES, 0.0), (CACHE_MISSES, 0.0)]);
        let after = counters(&[
            (INSTRUCTIONS, 2000.0),
            (CYCLES, 1000.0),
            (CACHE_MISSES, 4.0),
        ]);
        d.update("t", t0, &before);
        let m = d.update("t", t0 + Duration::from_secs(1), &after);
        assert_eq!(value(&m, CACHE_HIT_RATIO), None);
        assert_eq!(value(&m, IPC), Some(2.0));
        assert_eq!(value(&m, CACHE_MISSES_PER_KILO_INSTRUCTIONS), Some(2.0));

        // An input present now but not before gives nothing yet.
        let m = d.update(
            "t",
            t0 + Duration::from_secs(2),
            &all(3000.0, 1500.0, 5.0, 10.0),
        );
        assert_eq!(value(&m, CACHE_HIT_RATIO), None);
        assert_eq!(value(&m, IPC), Some(2.0));

        // Not a number counts as missing.
        let m = d.update(
            "t",
            t0 + Duration::from_secs(3),
            &all(4000.0, f64::NAN, 6.0, 20.0),
        );
        assert_eq!(value(&m, IPC), None);
        assert_eq!(value(&m, CACHE_HIT_RATIO), Some(0.9));

        // No counters at all: nothing.
        assert!(
            d.update("t", t0 + Duration::from_secs(4), &BTreeMap::new())
                .is_empty()
        );
    }

    #[test]
    fn zero_divisors_give_nothing() {
        let mut d = DerivedMetrics::default();
        let t0 = Instant::now();
        d.update("t", t0, &all(100.0, 100.0, 1.0, 10.0));
        // Nothing counted and no time passed.
        assert!(d.update("t", t0, &all(100.0, 100.0, 1.0, 10.0)).is_empty());
        // Time passed, counters did not: only ips (0).
        let m = d.update(
            "t",
            t0 + Duration::from_secs(1),
            &all(100.0, 100.0, 1.0, 10.0),
        );
        assert_eq!(m.len(), 1);
        assert_eq!(value(&m, IPS), Some(0.0));
    }

    #[test]
    fn a_reset_skips_one_iteration_and_restarts() {
        let mut d = DerivedMetrics::default();
        let t0 = Instant::now();
        d.update("t", t0, &all(1000.0, 1000.0, 10.0, 100.0));
        // Only cycles went down: still a reset for all.
        let reset = all(2000.0, 10.0, 20.0, 200.0);
        assert!(
            d.update("t", t0 + Duration::from_secs(1), &reset)
                .is_empty()
        );
        let m = d.update(
            "t",
            t0 + Duration::from_secs(2),
            &all(2100.0, 60.0, 21.0, 210.0),
        );
        assert_eq!(value(&m, IPC), Some(2.0));
        assert_eq!(value(&m, IPS), Some(100.0));
    }

    #[test]
    fn retain_drops_gone_tasks() {
        let mut d = DerivedMetrics::default();
        let t0 = Instant::now();
        for id in ["a", "b", "c"] {
            d.update(id, t0, &all(0.0, 0.0, 0.0, 0.0));
        }
        d.retain(|id| id != "b");
        assert_eq!(d.len(), 2);
        // A task that comes back starts over.
        assert!(
            d.update("b", t0 + Duration::from_secs(1), &all(5.0, 5.0, 0.0, 0.0))
                .is_empty()
        );
        assert!(
            !d.update("a", t0 + Duration::from_secs(1), &all(5.0, 5.0, 0.0, 0.0))
                .is_empty()
        );
        d.retain(|_| false);
        assert!(d.is_empty());
    }
}
