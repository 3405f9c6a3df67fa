use std::collections::BTreeMap;

use super::*;
use crate::measurements::{PlatformData, TaskData};

/// A task: labels, cumulative seconds on CPU, wait by contender, current allocations.
struct T<'a> {
    id: &'a str,
    tier: &'a str,
    oncpu: f64,
    by: &'a [(&'a str, f64)],
    have: TaskAllocations,
}

fn observation(at: f64, tasks: &[T<'_>]) -> Observation {
    let tasks = tasks
        .iter()
        .map(|t| {
            let runq: f64 = t.by.iter().map(|(_, v)| v).sum();
            let mut d = TaskData::test_task(
                BTreeMap::from([
                    (names::TASK_ONCPU.to_owned(), t.oncpu),
                    (names::TASK_RUNQ_SUM.to_owned(), runq),
                ]),
                BTreeMap::from([("aurora_tier".to_owned(), t.tier.to_owned())]),
            );
            d.contenders = t.by.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            d.allocations = Some(serde_json::to_value(&t.have).unwrap());
            (t.id.to_owned(), d)
        })
        .collect();
    Observation {
        platform: PlatformData::test_node(at),
        tasks,
    }
}

/// The reactive allocator (`idle_best_effort: on_contention`) with `extra` settings.
fn allocator(extra: &str) -> CollocationAllocator {
    placing(&format!("idle_best_effort: on_contention\n{extra}"))
}

/// The allocator with `extra` settings over the defaults.
fn placing(extra: &str) -> CollocationAllocator {
    let cfg: CollocationAllocatorConfig = crate::config::from_str(
        &format!(
            "latency_critical: {{aurora_tier: 'preferred'}}\nbest_effort: {{aurora_tier: 'best.*'}}\n{extra}"
        ),
        std::path::Path::new("c.yaml"),
    )
    .unwrap();
    CollocationAllocator::new(cfg).unwrap()
}

fn unlimited() -> TaskAllocations {
    TaskAllocations {
        cpu_quota: Some(1.0),
        cpu_shares: Some(1.024),
        cpu_idle: Some(false),
        ..Default::default()
    }
}

fn idle_with(quota: f64) -> TaskAllocations {
    TaskAllocations {
        cpu_quota: Some(quota),
        cpu_idle: Some(true),
        ..unlimited()
    }
}

/// One LC task `lc` waiting `lc_wait[who]` by contender (cumulative), BE tasks `be1`,
/// `be2` spinning, and an unlabelled `other`.
fn node<'a>(
    at: f64,
    lc_by: &'a [(&'a str, f64)],
    be: [&TaskAllocations; 2],
    other_by: &'a [(&'a str, f64)],
) -> Observation {
    observation(
        at,
        &[
            T {
                id: "lc",
                tier: "preferred",
                oncpu: at,
                by: lc_by,
                have: unlimited(),
            },
            T {
                id: "be1",
                tier: "best-effort",
                oncpu: 0.9 * at,
                by: &[],
                have: be[0].clone(),
            },
            T {
                id: "be2",
                tier: "best_effort",
                oncpu: 0.9 * at,
                by: &[],
                have: be[1].clone(),
            },
            T {
                id: "other",
                tier: "",
                oncpu: at,
                by: other_by,
                have: unlimited(),
            },
        ],
    )
}

#[test]
fn contention_by_best_effort_tasks_takes_from_them_largest_first() {
    let mut a = allocator("");
    let u = unlimited();
    assert!(
        a.allocate(&node(100.0, &[("be1", 1.0), ("be2", 1.0)], [&u, &u], &[]))
            .anomalies
            .is_empty(),
        "the first observation has no interval"
    );
    // In one second: lc ran 1 s and waited 0.3 s for be2, 0.1 s for be1, 0.02 s for
    // `other` and 0.5 s for its own quota; `other` waited for be1 (not an LC task).
    let d = a.allocate(&node(
        101.0,
        &[
            ("be1", 1.1),
            ("be2", 1.3),
            ("other", 0.02),
            ("own_quota", 0.5),
            ("unwatched", 0.3),
        ],
        [&u, &u],
        &[("be1", 0.9)],
    ));
    assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);
    let an = &d.anomalies[0];
    assert_eq!(an.contended_task_id, "lc");
    assert_eq!(an.contending_task_ids, ["be2", "be1"]);
    assert_eq!(an.resource, ContendedResource::Cpus);
    assert!((an.metrics[0].value - 0.4).abs() < 1e-9, "{:?}", an.metrics);
    assert_eq!(an.metrics[1].value, 0.05);
    // cpu_idle first, and only BE tasks are touched.
    let idle = TaskAllocations {
        cpu_idle: Some(true),
        ..Default::default()
    };
    assert_eq!(
        d.allocations,
        TasksAllocations::from([("be1".into(), idle.clone()), ("be2".into(), idle)])
    );
    // Still contended with cpu_idle: the quota is cut from what the task used (0.9 CPU
    // of 2 → 0.45 of the machine), by half.
    let i = idle_with(1.0);
    let d = a.allocate(&node(102.0, &[("be1", 1.2), ("be2", 1.4)], [&i, &i], &[]));
    assert_eq!(d.allocations["be1"].cpu_quota, Some(0.225));
    assert_eq!(
        d.allocations["be1"].cpu_idle, None,
        "unchanged types are left out"
    );
    // Down to min_quota, where nothing is left to take (the anomaly is still reported).
    let low = idle_with(0.09);
    let d = a.allocate(&node(
        103.0,
        &[("be1", 1.3), ("be2", 1.5)],
        [&low, &low],
        &[],
    ));
    assert!(d.allocations.is_empty(), "0.09 → 0.05 is within tolerance");
    assert_eq!(d.anomalies.len(), 1);
}

#[test]
fn own_quota_unwatched_and_small_shares_never_blame_best_effort_tasks() {
    let mut a = allocator("");
    let u = unlimited();
    a.allocate(&node(0.0, &[], [&u, &u], &[]));
    // Throttled by its own quota and preempted by unwatched processes: calm.
    let d = a.allocate(&node(
        1.0,
        &[("own_quota", 0.9), ("unwatched", 0.5), ("be1", 0.01)],
        [&u, &u],
        &[],
    ));
    assert!(d.anomalies.is_empty() && d.allocations.is_empty(), "{d:?}");
    assert!((d.metrics[0].value - 0.01).abs() < 1e-9);
    // Contended mostly by be1; be2's 2 % is below min_contender_share.
    let d = a.allocate(&node(2.0, &[("be1", 0.2), ("be2", 0.004)], [&u, &u], &[]));
    assert_eq!(d.anomalies[0].contending_task_ids, ["be1"]);
    assert_eq!(d.allocations.keys().collect::<Vec<_>>(), ["be1"]);
}

#[test]
fn calm_gives_back_quota_in_steps_then_cpu_idle_and_waits_longer_when_too_early() {
    let mut a = allocator("calm_iterations: 2\nidle_calm_iterations: 3\ngive_back_step: 0.3\n");
    let mut be = idle_with(0.5);
    let mut at = 0.0;
    let mut step = |a: &mut CollocationAllocator, be: &mut TaskAllocations, lc_wait: f64| {
        at += 1.0;
        let d = a.allocate(&node(at, &[("be1", lc_wait)], [be, &unlimited()], &[]));
        if let Some(s) = d.allocations.get("be1") {
            be.merge(s);
        }
        d
    };
    step(&mut a, &mut be, 0.0);
    // Two calm intervals per quota step: 0.5 → 0.8 → 1.0 (no limit).
    let quotas: Vec<Option<f64>> = (0..4)
        .map(|_| {
            step(&mut a, &mut be, 0.0)
                .allocations
                .get("be1")
                .and_then(|s| s.cpu_quota)
        })
        .collect();
    assert_eq!(quotas, [None, Some(0.8), None, Some(1.0)]);
    // Then cpu_idle, after three calm intervals.
    let idles: Vec<bool> = (0..3)
        .map(|_| step(&mut a, &mut be, 0.0).allocations.contains_key("be1"))
        .collect();
    assert_eq!(idles, [false, false, true]);
    assert_eq!(be.cpu_idle, Some(false));
    // Contention at once: idle again, and the next give-back waits twice as long.
    let d = step(&mut a, &mut be, 0.5);
    assert_eq!(d.allocations["be1"].cpu_idle, Some(true));
    let given: Vec<bool> = (0..6)
        .map(|_| {
            step(&mut a, &mut be, 0.5 + 1e-12)
                .allocations
                .contains_key("be1")
        })
        .collect();
    assert_eq!(given, [false, false, false, false, false, true]);
    // A restarted allocator changes nothing at first, whatever the kernel holds.
    let mut fresh = placing("");
    let held = idle_with(0.3);
    for t in 0..5 {
        let d = fresh.allocate(&node(f64::from(t), &[], [&held, &held], &[]));
        assert!(d.allocations.is_empty() && d.anomalies.is_empty());
    }
}

#[test]
fn kernels_without_cpu_idle_get_quota_cuts_and_bad_settings_are_refused() {
    let mut a = allocator("");
    let old_kernel = TaskAllocations {
        cpu_idle: None,
        ..unlimited()
    };
    a.allocate(&node(0.0, &[], [&old_kernel, &old_kernel], &[]));
    let d = a.allocate(&node(1.0, &[("be1", 0.5)], [&old_kernel, &old_kernel], &[]));
    assert_eq!(d.allocations["be1"].cpu_quota, Some(0.225));
    assert_eq!(d.allocations["be1"].cpu_idle, None);

    let bad = |extra: &str| {
        let cfg: CollocationAllocatorConfig = crate::config::from_str(
            &format!("latency_critical: {{t: '('}}\nbest_effort: {{t: b}}\n{extra}"),
            std::path::Path::new("c.yaml"),
        )
        .unwrap();
        CollocationAllocator::new(cfg).unwrap_err().to_string()
    };
    assert!(bad("").contains("latency_critical.t:"), "{}", bad(""));
    let err = bad("quota_factor: 1.5");
    assert!(
        err.contains("quota_factor = 1.5 is out of range (0, 1)"),
        "{err}"
    );
}

#[test]
fn with_lc_best_effort_tasks_are_idle_from_the_first_observation_until_no_lc_is_left() {
    let mut a = placing("calm_iterations: 1");
    let u = unlimited();
    let d = a.allocate(&node(0.0, &[], [&u, &u], &[]));
    let idle = |on| TaskAllocations {
        cpu_idle: Some(on),
        ..Default::default()
    };
    assert_eq!(
        d.allocations,
        TasksAllocations::from([("be1".into(), idle(true)), ("be2".into(), idle(true))]),
        "placed before any interval, never the LC or the unlabelled task"
    );
    assert!(d.anomalies.is_empty());
    // Contended although idle: the next lever, quota, is pulled at once.
    let i = idle_with(1.0);
    let d = a.allocate(&node(1.0, &[("be1", 0.5)], [&i, &u], &[]));
    assert_eq!(d.anomalies.len(), 1);
    assert_eq!(d.allocations["be1"].cpu_quota, Some(0.225));
    assert_eq!(d.allocations["be1"].cpu_idle, None);
    // be2 (not idle in the kernel, e.g. reset by an operator) is placed again.
    assert_eq!(d.allocations["be2"], idle(true));
    // Calm: the quota comes back step by step, cpu_idle stays while LC is listed.
    let mut be = idle_with(0.8);
    for at in 2..6 {
        let d = a.allocate(&node(f64::from(at), &[("be1", 0.5)], [&be, &i], &[]));
        if let Some(s) = d.allocations.get("be1") {
            assert_eq!(s.cpu_idle, None, "{s:?}");
            be.merge(s);
        }
    }
    assert_eq!((be.cpu_quota, be.cpu_idle), (Some(1.0), Some(true)));
    // The LC task is gone: cpu_idle back at once, for both.
    let no_lc = |at: f64| {
        observation(
            at,
            &[
                T {
                    id: "be1",
                    tier: "best-effort",
                    oncpu: at,
                    by: &[],
                    have: idle_with(1.0),
                },
                T {
                    id: "be2",
                    tier: "best-effort",
                    oncpu: at,
                    by: &[],
                    have: TaskAllocations {
                        cpu_idle: None,
                        ..unlimited()
                    },
                },
            ],
        )
    };
    let d = a.allocate(&no_lc(6.0));
    assert_eq!(
        d.allocations,
        TasksAllocations::from([("be1".into(), idle(false))]),
        "be2's kernel has no cpu.idle"
    );
    // With cpu_idle not among the levers, nothing is placed.
    let mut quota_only = placing("levers: [cpu_quota]");
    assert!(
        quota_only
            .allocate(&node(0.0, &[], [&u, &u], &[]))
            .allocations
            .is_empty()
    );
}
