//! CPI (cycles per instruction) per task, interval by interval, judged against the task's
//! own recent history, CPI²-style: an outlier is above the mean + `stddevs` standard
//! deviations of its last samples. A rise in CPI is the mark of caches and memory
//! bandwidth shared with noisy neighbours. Shared by `!ContentionDetector` (resource
//! `cache`) and `!CollocationAllocator` (its `rdt` lever).

use std::collections::{BTreeMap, VecDeque};

use crate::{measurements::Observation, metrics::names};

/// How a task's CPI is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpiSettings {
    /// Samples kept per task.
    pub history: usize,
    /// Samples needed before a task's CPI is judged.
    pub min_samples: usize,
    /// Standard deviations above the mean that make an outlier.
    pub stddevs: f64,
}

/// Each task's previous PMU counters and CPI history.
#[derive(Debug)]
pub struct CpiTracker {
    settings: CpiSettings,
    previous: BTreeMap<String, (f64, f64)>,
    history: BTreeMap<String, VecDeque<f64>>,
}

impl CpiTracker {
    /// No task seen yet.
    pub fn new(settings: CpiSettings) -> Self {
        Self {
            settings,
            previous: BTreeMap::new(),
            history: BTreeMap::new(),
        }
    }

    /// Each task's CPI over the interval since the previous observation, where the PMU
    /// counts cycles and instructions; forgets the history of tasks no longer observed.
    pub fn cpis(&mut self, obs: &Observation) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut current = BTreeMap::new();
        for (id, t) in &obs.tasks {
            let m = &t.measurements;
            let (Some(c), Some(i)) = (m.get(names::CYCLES), m.get(names::INSTRUCTIONS)) else {
                continue;
            };
            if let Some((c0, i0)) = self.previous.get(id)
                && c >= c0
                && i > i0
            {
                out.insert(id.clone(), (c - c0) / (i - i0));
            }
            current.insert(id.clone(), (*c, *i));
        }
        self.previous = current;
        self.history.retain(|id, _| obs.tasks.contains_key(id));
        out
    }

    /// Judges task `id`'s `cpi` against its history, then adds it to the history (every
    /// sample enters it: a lasting change becomes the new normal). The threshold it
    /// exceeded when it is an outlier.
    pub fn judge(&mut self, id: &str, cpi: f64) -> Option<f64> {
        let history = self.history.entry(id.to_owned()).or_default();
        let outlier = outlier_threshold(history, &self.settings).filter(|t| cpi > *t);
        history.push_back(cpi);
        while history.len() > self.settings.history.max(1) {
            history.pop_front();
        }
        outlier
    }
}

/// Mean + k standard deviations of the history, once it is long enough. A flat history
/// gets a floor of 5 % of the mean so that noise is not an outlier.
fn outlier_threshold(history: &VecDeque<f64>, s: &CpiSettings) -> Option<f64> {
    if history.len() < s.min_samples.max(2) {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let var = history.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(mean + s.stddevs * var.sqrt().max(0.05 * mean))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurements::{PlatformData, TaskData};

    fn obs(at: f64, tasks: &[(&str, f64, f64)]) -> Observation {
        Observation {
            platform: PlatformData::test_node(at),
            tasks: tasks
                .iter()
                .map(|(id, c, i)| {
                    let m = BTreeMap::from([
                        (names::CYCLES.to_owned(), *c),
                        (names::INSTRUCTIONS.to_owned(), *i),
                    ]);
                    ((*id).to_owned(), TaskData::test_task(m, BTreeMap::new()))
                })
                .collect(),
        }
    }

    #[test]
    fn cpi_per_interval_and_outliers_against_the_tasks_history_only() {
        let mut t = CpiTracker::new(CpiSettings {
            history: 4,
            min_samples: 3,
            stddevs: 3.0,
        });
        assert!(t.cpis(&obs(0.0, &[("a", 10.0, 10.0)])).is_empty());
        let got = t.cpis(&obs(1.0, &[("a", 30.0, 20.0), ("b", 5.0, 5.0)]));
        assert_eq!(got, BTreeMap::from([("a".to_owned(), 2.0)]), "b is new");
        // Counters going back (a restarted task) give no sample.
        assert!(t.cpis(&obs(2.0, &[("a", 1.0, 1.0)])).is_empty());
        // Judged only from min_samples on; flat history: 5 % of the mean is the stddev.
        assert_eq!([1.0, 1.0, 1.0].map(|c| t.judge("a", c)), [None, None, None]);
        assert_eq!(t.judge("a", 1.1), None, "below 1 + 3 × 0.05");
        let th = t.judge("a", 2.0).expect("an outlier");
        assert!(th > 1.1 && th < 1.3, "{th}");
        // History is kept short (4), so the outlier soon becomes normal.
        for _ in 0..4 {
            t.judge("a", 2.0);
        }
        assert_eq!(t.judge("a", 2.0), None);
        // A task no longer observed loses its history.
        t.cpis(&obs(3.0, &[("b", 6.0, 6.0)]));
        assert_eq!(t.judge("a", 50.0), None);
    }
}
