use super::*;
use crate::{
    measurements::{PlatformData, TaskData, TasksData},
    metrics::names,
};

/// One task, cumulative: id, seconds on CPU, voluntary switches, run-queue wait by
/// contender, (cycles, instructions).
struct Row<'a> {
    id: &'a str,
    oncpu: f64,
    voluntary: f64,
    by: &'a [(&'a str, f64)],
    pmu: Option<(f64, f64)>,
}

fn row<'a>(id: &'a str, oncpu: f64, voluntary: f64, by: &'a [(&'a str, f64)]) -> Row<'a> {
    Row {
        id,
        oncpu,
        voluntary,
        by,
        pmu: None,
    }
}

fn observation(at: f64, rows: &[Row<'_>]) -> Observation {
    let tasks: TasksData = rows
        .iter()
        .map(|r| {
            let runq: f64 = r.by.iter().map(|(_, v)| v).sum();
            let mut m = BTreeMap::from([
                (names::TASK_ONCPU.to_owned(), r.oncpu),
                (names::TASK_RUNQ_SUM.to_owned(), runq),
                (
                    "task_context_switches_total_voluntary".to_owned(),
                    r.voluntary,
                ),
            ]);
            if let Some((cycles, instructions)) = r.pmu {
                m.insert(names::CYCLES.to_owned(), cycles);
                m.insert(names::INSTRUCTIONS.to_owned(), instructions);
            }
            let labels = BTreeMap::from([("tier".to_owned(), r.id.to_owned())]);
            let mut t = TaskData::test_task(m, labels);
            t.contenders = r.by.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            (r.id.to_owned(), t)
        })
        .collect();
    Observation {
        platform: PlatformData::test_node(at),
        tasks,
    }
}

fn detector(cfg: ContentionDetectorConfig) -> ContentionDetector {
    ContentionDetector::new(cfg).unwrap()
}

fn summary(found: &Detection) -> Vec<(&str, &[String], ContendedResource)> {
    found
        .anomalies
        .iter()
        .map(|a| {
            (
                a.contended_task_id.as_str(),
                a.contending_task_ids.as_slice(),
                a.resource,
            )
        })
        .collect()
}

#[test]
fn the_tasks_that_ran_instead_are_named_largest_first_never_the_busiest_idle_one() {
    let mut d = detector(ContentionDetectorConfig::default());
    // lc blocks a thousand times per second; be1/be2 spin; far spins on other CPUs.
    let first = d.detect(&observation(
        100.0,
        &[
            row("lc", 10.0, 1e4, &[("be1", 1.0)]),
            row("be1", 10.0, 0.0, &[]),
            row("be2", 10.0, 0.0, &[]),
            row("far", 50.0, 0.0, &[]),
        ],
    ));
    assert!(first.anomalies.is_empty(), "no interval yet");
    // One second later: lc ran 0.5 s and waited 0.2 s for be2, 0.1 s for be1, 0.01 s for
    // far (below a tenth of its wait), 0.3 s for its own quota and 0.2 s for unwatched
    // processes. be1 and be2 wait for each other, but they never block.
    let found = d.detect(&observation(
        101.0,
        &[
            row(
                "lc",
                10.5,
                1e4 + 1000.0,
                &[
                    ("be1", 1.1),
                    ("be2", 0.2),
                    ("far", 0.01),
                    ("lc", 0.4),
                    ("own_quota", 0.3),
                    ("unwatched", 0.2),
                ],
            ),
            row("be1", 10.7, 0.0, &[("be2", 0.9)]),
            row("be2", 10.7, 0.0, &[("be1", 0.9)]),
            row("far", 51.0, 0.0, &[]),
        ],
    ));
    let be = ["be2".to_owned(), "be1".to_owned()];
    assert_eq!(summary(&found), [("lc", &be[..], ContendedResource::Cpus)]);
    let ratio = &found.anomalies[0].metrics[0];
    assert_eq!(ratio.name, WAIT_RATIO);
    // 0.31 s waited behind watched tasks per 0.5 s run; own quota and unwatched left out.
    assert!((ratio.value - 0.62).abs() < 1e-9, "{}", ratio.value);
    assert_eq!(ratio.labels["contended_task_id"], "lc");
    assert_eq!(found.anomalies[0].metrics[1].value, 0.5);
}

#[test]
fn own_quota_unwatched_and_small_waits_are_no_anomaly() {
    let mut d = detector(ContentionDetectorConfig::default());
    d.detect(&observation(
        0.0,
        &[row("lc", 0.0, 0.0, &[]), row("be", 0.0, 0.0, &[])],
    ));
    // Throttled by its own quota, preempted by unwatched processes: nobody to blame.
    let found = d.detect(&observation(
        1.0,
        &[
            row("lc", 0.5, 500.0, &[("own_quota", 0.9), ("unwatched", 0.5)]),
            row("be", 1.0, 0.0, &[]),
        ],
    ));
    assert!(found.anomalies.is_empty(), "{:?}", found.anomalies);
    // Waits below the threshold (0.2 s per s on CPU).
    let found = d.detect(&observation(
        2.0,
        &[
            row("lc", 1.5, 1500.0, &[("own_quota", 0.9), ("be", 0.2)]),
            row("be", 2.0, 0.0, &[]),
        ],
    ));
    assert!(found.anomalies.is_empty(), "{:?}", found.anomalies);
    // A restarted task's counters go back: no interval, no anomaly.
    let found = d.detect(&observation(
        3.0,
        &[
            row("lc", 0.1, 0.0, &[("be", 0.9)]),
            row("be", 3.0, 0.0, &[]),
        ],
    ));
    assert!(found.anomalies.is_empty(), "{:?}", found.anomalies);
}

#[test]
fn latency_critical_by_label_or_every_task_when_asked() {
    let spinners = |d: &mut ContentionDetector| {
        d.detect(&observation(
            0.0,
            &[row("a", 0.0, 0.0, &[]), row("b", 0.0, 0.0, &[])],
        ));
        summary(&d.detect(&observation(
            1.0,
            &[
                row("a", 0.5, 0.0, &[("b", 0.5)]),
                row("b", 0.5, 0.0, &[("a", 0.5)]),
            ],
        )))
        .into_iter()
        .map(|(id, by, _)| (id.to_owned(), by.to_vec()))
        .collect::<Vec<_>>()
    };
    // Spinners never block: not latency-critical by default.
    assert!(spinners(&mut detector(ContentionDetectorConfig::default())).is_empty());
    // A task that blocked often keeps being judged once it falls behind and stops.
    let mut d = detector(ContentionDetectorConfig::default());
    d.detect(&observation(0.0, &[row("a", 0.0, 0.0, &[])]));
    d.detect(&observation(1.0, &[row("a", 0.5, 500.0, &[])]));
    let found = d.detect(&observation(
        2.0,
        &[row("a", 1.0, 500.0, &[("b", 0.5)]), row("b", 0.5, 0.0, &[])],
    ));
    assert_eq!(summary(&found).len(), 1, "{:?}", found.anomalies);
    let every = ContentionDetectorConfig {
        min_voluntary_switches: 0.0,
        ..Default::default()
    };
    assert_eq!(
        spinners(&mut detector(every)),
        [
            ("a".to_owned(), vec!["b".to_owned()]),
            ("b".to_owned(), vec!["a".to_owned()])
        ]
    );
    let labelled = ContentionDetectorConfig {
        latency_critical: Some(BTreeMap::from([("tier".to_owned(), "b".to_owned())])),
        ..Default::default()
    };
    assert_eq!(
        spinners(&mut detector(labelled)),
        [("b".to_owned(), vec!["a".to_owned()])]
    );
    let bad = ContentionDetectorConfig {
        latency_critical: Some(BTreeMap::from([("tier".to_owned(), "(".to_owned())])),
        ..Default::default()
    };
    let err = ContentionDetector::new(bad).unwrap_err().to_string();
    assert!(
        err.starts_with("ContentionDetector: latency_critical.tier:"),
        "{err}"
    );
}

#[test]
fn cpi_outlier_against_the_tasks_own_history() {
    let mut d = detector(ContentionDetectorConfig::default());
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
                Row {
                    pmu: Some((cycles, instructions)),
                    ..row("a", t * 0.9, t * 100.0, &[])
                },
                row("b", t * 0.8, 0.0, &[]),
            ],
        ));
        anomalies_per_step.push(found.anomalies);
    }
    assert!(anomalies_per_step[..15].iter().all(Vec::is_empty));
    let last = &anomalies_per_step[15];
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].resource, ContendedResource::Cache);
    // No run-queue evidence: the busiest other task.
    assert_eq!(last[0].contending_task_ids, ["b"]);
    assert!((last[0].metrics[0].value - 2.0).abs() < 1e-9);
    assert!(
        last[0].metrics[1].value < 1.5,
        "threshold {:?}",
        last[0].metrics[1]
    );
}
