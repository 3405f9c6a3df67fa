//! `!ExampleDetector`: OWCA's synthetic contentions, repeating every `cycle_length`
//! seconds, for demos and for testing the anomaly pipeline end to end.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::Detection;
use crate::{
    anomaly::{ContendedResource, ContentionAnomaly},
    measurements::Observation,
    metrics::{Metric, names},
};

/// Tasks needed to simulate the three contention pairs.
const TASKS_NEEDED: usize = 10;

/// `!ExampleDetector` settings, OWCA's names and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleDetectorConfig {
    /// Seconds per cycle of phases.
    #[serde(default = "default_cycle_length")]
    pub cycle_length: u64,
    /// Shift the phase by a hash of the host name, so that nodes fire at different times.
    #[serde(default)]
    pub skew: bool,
}

impl Default for ExampleDetectorConfig {
    fn default() -> Self {
        Self {
            cycle_length: default_cycle_length(),
            skew: false,
        }
    }
}

fn default_cycle_length() -> u64 {
    90
}

/// The detector and its phase.
#[derive(Debug)]
pub struct ExampleDetector {
    cycle_length: u64,
    phase_skew: u64,
    warned: bool,
}

impl ExampleDetector {
    /// `host` only matters with `skew`.
    pub fn new(cfg: &ExampleDetectorConfig, host: &str) -> Self {
        // OWCA summed the bytes of the host name's sha1; any hash spreads hosts alike.
        let phase_skew = if cfg.skew {
            Sha256::digest(host.as_bytes())
                .iter()
                .map(|&b| u64::from(b))
                .sum()
        } else {
            0
        };
        Self {
            cycle_length: cfg.cycle_length.max(1),
            phase_skew,
            warned: false,
        }
    }

    /// The phase at the observation's time decides how many contentions, on how many
    /// resources, with how many metrics each; the tasks are the first ten by id.
    pub fn detect(&mut self, obs: &Observation) -> Detection {
        let now = obs.platform.timestamp.max(0.0) as u64;
        let second = (now + self.phase_skew) % self.cycle_length;
        let metrics = vec![Metric::gauge(
            names::EXAMPLE_SECOND_OF_CYCLE,
            names::EXAMPLE_SECOND_OF_CYCLE_HELP,
            second as f64,
        )];
        if obs.tasks.len() < TASKS_NEEDED {
            if !self.warned {
                warn!(
                    tasks = obs.tasks.len(),
                    "the example detector needs {TASKS_NEEDED} tasks to simulate contention"
                );
                self.warned = true;
            }
            return Detection {
                anomalies: vec![],
                metrics,
            };
        }
        self.warned = false;
        let (pairs, resources, metrics_count) = match second {
            0..10 => (1, 1, 1),
            10..20 => (1, 2, 2),
            20..30 => (1, 3, 2),
            30..40 => (2, 2, 3),
            40..50 => (3, 1, 1),
            _ => (0, 0, 0),
        };
        let ids: Vec<&String> = obs.tasks.keys().collect();
        let task_pairs = [(0, 1..3), (3, 4..5), (6, 7..10)];
        let all_resources = [
            ContendedResource::Cpus,
            ContendedResource::Cache,
            ContendedResource::MemoryBandwidth,
        ];
        let mut anomalies = Vec::new();
        for resource in &all_resources[..resources] {
            for (contended, contending) in task_pairs[..pairs].iter().cloned() {
                anomalies.push(ContentionAnomaly {
                    resource: *resource,
                    contended_task_id: ids[contended].clone(),
                    contending_task_ids: ids[contending].iter().map(|s| (*s).clone()).collect(),
                    metrics: (0..metrics_count)
                        .map(|i| {
                            Metric::gauge(
                                format!("{}{i}", names::EXAMPLE_CPU_THRESHOLD_PREFIX),
                                names::EXAMPLE_CPU_THRESHOLD_HELP,
                                ((i + 1) * 10) as f64,
                            )
                        })
                        .collect(),
                });
            }
        }
        Detection { anomalies, metrics }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::measurements::{PlatformData, TaskData};

    fn observation(tasks: usize, timestamp: f64) -> Observation {
        let task = TaskData::test_task(BTreeMap::new(), BTreeMap::new());
        Observation {
            platform: PlatformData::test_node(timestamp),
            tasks: (0..tasks)
                .map(|i| (format!("t{i}"), task.clone()))
                .collect(),
        }
    }

    #[test]
    fn cycle_phases_follow_owca() {
        let mut d = ExampleDetector::new(&ExampleDetectorConfig::default(), "node");
        // (second of cycle, anomalies, metrics per anomaly)
        for (t, anomalies, metrics) in [
            (900.0, 1, 1),
            (915.0, 2, 2),
            (925.0, 3, 2),
            (935.0, 4, 3),
            (945.0, 3, 1),
            (955.0, 0, 0),
            (989.0, 0, 0),
            (990.0, 1, 1),
        ] {
            let found = d.detect(&observation(10, t));
            assert_eq!(found.anomalies.len(), anomalies, "at {t}");
            assert_eq!(found.metrics[0].value, t % 90.0);
            for a in &found.anomalies {
                assert_eq!(a.metrics.len(), metrics);
            }
        }
        let found = d.detect(&observation(10, 945.0));
        let pairs: Vec<(&str, Vec<&str>)> = found
            .anomalies
            .iter()
            .map(|a| {
                let contending = a.contending_task_ids.iter().map(String::as_str).collect();
                (a.contended_task_id.as_str(), contending)
            })
            .collect();
        // Ids sort as t0, t1, t2, ..., t9.
        assert_eq!(
            pairs,
            [
                ("t0", vec!["t1", "t2"]),
                ("t3", vec!["t4"]),
                ("t6", vec!["t7", "t8", "t9"])
            ]
        );
        let found = d.detect(&observation(10, 935.0));
        assert_eq!(found.anomalies[0].metrics[2].value, 30.0);
        assert_eq!(found.anomalies[2].resource, ContendedResource::Cache);
        // Too few tasks: nothing, but the phase is still reported.
        let found = d.detect(&observation(9, 900.0));
        assert!(found.anomalies.is_empty());
        assert_eq!(found.metrics.len(), 1);
    }

    #[test]
    fn skew_shifts_the_phase_by_host() {
        let cfg = ExampleDetectorConfig {
            cycle_length: 90,
            skew: true,
        };
        let a = ExampleDetector::new(&cfg, "node-a").phase_skew;
        let b = ExampleDetector::new(&cfg, "node-b").phase_skew;
        assert_ne!(a % 90, b % 90);
    }
}
