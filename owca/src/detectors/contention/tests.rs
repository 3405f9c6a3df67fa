use super::*;
use crate::measurements::{PlatformData, TaskData, TasksData};

/// (task id, seconds on CPU, run-queue wait seconds, cycles, instructions), cumulative.
type Row<'a> = (&'a str, f64, f64, Option<(f64, f64)>);

fn observation(at: f64, rows: &[Row<'_>]) -> Observation {
    let tasks: TasksData = rows
        .iter()
        .map(|(id, oncpu, runq, pmu)| {
            let mut m = BTreeMap::from([
                (names::TASK_ONCPU.to_owned(), *oncpu),
                (names::TASK_RUNQ_SUM.to_owned(), *runq),
            ]);
            if let Some((cycles, instructions)) = pmu {
                m.insert("cycles".to_owned(), *cycles);
                m.insert("instructions".to_owned(), *instructions);
            }
            ((*id).to_owned(), TaskData::test_task(m, BTreeMap::new()))
        })
        .collect();
    Observation {
        platform: PlatformData::test_node(at),
        tasks,
    }
}

#[test]
fn two_tasks_sharing_a_cpu_contend_with_each_other_not_with_the_quiet_one() {
    let mut d = ContentionDetector::new(ContentionDetectorConfig::default());
    let first = d.detect(&observation(
        100.0,
        &[
            ("a", 10.0, 1.0, None),
            ("b", 10.0, 1.0, None),
            ("q", 0.1, 0.0, None),
        ],
    ));
    assert!(first.anomalies.is_empty(), "no interval yet");
    // One second later: a and b ran half a second each and waited half a second each.
    let found = d.detect(&observation(
        101.0,
        &[
            ("a", 10.5, 1.5, None),
            ("b", 10.5, 1.48, None),
            ("q", 0.101, 0.0001, None),
        ],
    ));
    let got: Vec<(&str, &[String], ContendedResource)> = found
        .anomalies
        .iter()
        .map(|a| {
            (
                a.contended_task_id.as_str(),
                a.contending_task_ids.as_slice(),
                a.resource,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", &["b".to_owned()][..], ContendedResource::Cpus),
            ("b", &["a".to_owned()][..], ContendedResource::Cpus)
        ]
    );
    let ratio = &found.anomalies[1].metrics[0];
    assert_eq!(ratio.name, WAIT_RATIO);
    assert!((ratio.value - 0.96).abs() < 1e-9, "{}", ratio.value);
    assert_eq!(ratio.labels["contended_task_id"], "b");
    assert_eq!(found.anomalies[0].metrics[1].value, 0.5);
}

#[test]
fn waiting_without_a_busy_task_around_or_below_the_thresholds_is_no_anomaly() {
    let mut d = ContentionDetector::new(ContentionDetectorConfig::default());
    d.detect(&observation(
        0.0,
        &[("a", 0.0, 0.0, None), ("q", 0.0, 0.0, None)],
    ));
    // a waits (for processes that are not tasks), q is idle: nobody to blame.
    let found = d.detect(&observation(
        1.0,
        &[("a", 0.5, 0.5, None), ("q", 0.01, 0.0, None)],
    ));
    assert!(found.anomalies.is_empty(), "{:?}", found.anomalies);
    // Both busy, waits below the threshold (0.2 s per s on CPU).
    d.detect(&observation(
        2.0,
        &[("a", 0.5, 0.5, None), ("b", 0.0, 0.0, None)],
    ));
    let found = d.detect(&observation(
        3.0,
        &[("a", 1.4, 0.68, None), ("b", 0.9, 0.1, None)],
    ));
    assert!(found.anomalies.is_empty(), "{:?}", found.anomalies);
    // A restarted task's counters go back: no interval, no anomaly.
    let found = d.detect(&observation(
        4.0,
        &[("a", 0.1, 0.0, None), ("b", 1.8, 0.2, None)],
    ));
    assert!(found.anomalies.is_empty(), "{:?}", found.anomalies);
}

#[test]
fn cpi_outlier_against_the_tasks_own_history() {
    let mut d = ContentionDetector::new(ContentionDetectorConfig::default());
    let (mut cycles, mut instructions) = (0.0, 0.0);
    let mut anomalies_per_step = Vec::new();
    for step in 0..16 {
        // CPI about 1.0 (±2 %) for 14 intervals, then 2.0.
        let cpi = if step < 15 {
            1.0 + 0.02 * f64::from(step % 3) - 0.02
        } else {
            2.0
        };
        instructions += 1e9;
        cycles += cpi * 1e9;
        let t = f64::from(step);
        let found = d.detect(&observation(
            t,
            &[
                ("a", t * 0.9, 0.0, Some((cycles, instructions))),
                ("b", t * 0.8, 0.0, None),
            ],
        ));
        anomalies_per_step.push(found.anomalies);
    }
    assert!(anomalies_per_step[..15].iter().all(Vec::is_empty));
    let last = &anomalies_per_step[15];
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].resource, ContendedResource::Cache);
    assert_eq!(last[0].contending_task_ids, ["b"]);
    assert!((last[0].metrics[0].value - 2.0).abs() < 1e-9);
    assert!(
        last[0].metrics[1].value < 1.5,
        "threshold {:?}",
        last[0].metrics[1]
    );
}
