//! The `rdt` lever on synthetic observations (`apply`: its decisions applied onto a
//! resctrl-shaped temp tree).

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
};

use super::*;
use crate::{
    measurements::{PlatformData, TaskData},
    resctrl::{MbCapabilities, RdtAllocation, RdtCapabilities},
};

mod apply;

/// A task: tier, cumulative seconds on CPU, cumulative (cycles, instructions) when the
/// PMU counts them, and what the kernel holds.
struct T<'a> {
    id: &'a str,
    tier: &'a str,
    oncpu: f64,
    pmu: Option<(f64, f64)>,
    have: TaskAllocations,
}

fn observation(at: f64, rdt: Option<&RdtCapabilities>, tasks: &[T<'_>]) -> Observation {
    let tasks = tasks
        .iter()
        .map(|t| {
            let mut m = BTreeMap::from([
                (names::TASK_ONCPU.to_owned(), t.oncpu),
                (names::TASK_RUNQ_SUM.to_owned(), 0.0),
            ]);
            if let Some((c, i)) = t.pmu {
                m.insert(names::CYCLES.to_owned(), c);
                m.insert(names::INSTRUCTIONS.to_owned(), i);
            }
            let labels = BTreeMap::from([("aurora_tier".to_owned(), t.tier.to_owned())]);
            let mut d = TaskData::test_task(m, labels);
            d.allocations = Some(serde_json::to_value(&t.have).unwrap());
            (t.id.to_owned(), d)
        })
        .collect();
    let mut platform = PlatformData::test_node(at);
    platform.rdt_information = rdt.cloned();
    Observation { platform, tasks }
}

/// 2 L3 domains of 12 ways (`min_cbm_bits` 2), MBA from 10 % in steps of 10.
fn caps() -> RdtCapabilities {
    RdtCapabilities {
        cbm_mask: Some(0xfff),
        min_cbm_bits: 2,
        num_closids: 4,
        l3_domains: vec![0, 1],
        mb: Some(MbCapabilities {
            min_bandwidth: 10,
            bandwidth_gran: 10,
        }),
        mb_domains: vec![0, 1],
    }
}

fn allocator(extra: &str) -> CollocationAllocator {
    let cfg: CollocationAllocatorConfig = crate::config::from_str(
        &format!(
            "latency_critical: {{aurora_tier: 'preferred'}}\nbest_effort: {{aurora_tier: 'best.*'}}\ncpi_min_samples: 3\ncalm_iterations: 2\n{extra}"
        ),
        Path::new("c.yaml"),
    )
    .unwrap();
    CollocationAllocator::new(cfg).unwrap()
}

/// Idle BE tasks with a quota (nothing left to place), in the group `group`.
fn be_in(group: &str, quota: f64) -> TaskAllocations {
    TaskAllocations {
        cpu_quota: Some(quota),
        cpu_idle: Some(true),
        rdt: Some(RdtAllocation {
            name: Some(group.to_owned()),
            l3: Some(format!(
                "L3:0={0};1={0}",
                if group.is_empty() { "fff" } else { "3" }
            )),
            mb: Some(format!(
                "MB:0={0};1={0}",
                if group.is_empty() { 100 } else { 20 }
            )),
        }),
        ..Default::default()
    }
}

/// The LC task with CPI `cpi` in every interval so far (one instruction per ns), BE
/// tasks `be1` (0.9 CPU), `be2` (0.5 CPU) and `be3` (asleep) holding `be`, and an
/// unlabelled task that runs.
struct Node {
    at: f64,
    cycles: f64,
    rdt: Option<RdtCapabilities>,
}

impl Node {
    fn new(rdt: Option<RdtCapabilities>) -> Self {
        Self {
            at: 0.0,
            cycles: 0.0,
            rdt,
        }
    }

    /// The next observation, one second later, after an interval of CPI `cpi`.
    fn next(&mut self, cpi: f64, be: [&TaskAllocations; 3]) -> Observation {
        self.at += 1.0;
        self.cycles += cpi * 1e9;
        let at = self.at;
        let lc_have = TaskAllocations {
            cpu_quota: Some(1.0),
            ..Default::default()
        };
        observation(
            at,
            self.rdt.as_ref(),
            &[
                T {
                    id: "lc",
                    tier: "preferred",
                    oncpu: at,
                    pmu: Some((self.cycles, at * 1e9)),
                    have: lc_have.clone(),
                },
                T {
                    id: "be1",
                    tier: "best-effort",
                    oncpu: 0.9 * at,
                    pmu: Some((3.0 * at * 1e9, at * 1e9)),
                    have: be[0].clone(),
                },
                T {
                    id: "be2",
                    tier: "best-effort",
                    oncpu: 0.5 * at,
                    pmu: None,
                    have: be[1].clone(),
                },
                T {
                    id: "be3",
                    tier: "best-effort",
                    oncpu: 1.0,
                    pmu: None,
                    have: be[2].clone(),
                },
                T {
                    id: "other",
                    tier: "",
                    oncpu: at,
                    pmu: Some((5.0 * at * 1e9, at * 1e9)),
                    have: lc_have,
                },
            ],
        )
    }
}

fn in_group() -> TaskAllocations {
    TaskAllocations {
        rdt: Some(RdtAllocation {
            name: Some(BEST_EFFORT_GROUP.to_owned()),
            l3: Some("L3:0=3;1=3".into()),
            mb: Some("MB:0=20;1=20".into()),
        }),
        ..Default::default()
    }
}

#[test]
fn a_cpi_outlier_moves_the_best_effort_tasks_that_ran_to_one_group_largest_first() {
    let mut a = allocator("");
    let mut node = Node::new(Some(caps()));
    let root = be_in("", 1.0);
    let be = [&root, &root, &root];
    // The first observation and 3 intervals of CPI 1.0: a history, nothing judged yet.
    for _ in 0..4 {
        let d = a.allocate(&node.next(1.0, be));
        assert!(d.anomalies.is_empty() && d.allocations.is_empty(), "{d:?}");
    }
    let d = a.allocate(&node.next(2.0, be));
    assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);
    let an = &d.anomalies[0];
    assert_eq!(an.resource, ContendedResource::Cache);
    assert_eq!(an.contended_task_id, "lc");
    assert_eq!(
        an.contending_task_ids,
        ["be1", "be2"],
        "the BE tasks that ran, most CPUs first: not be3 (asleep) nor `other`"
    );
    assert_eq!(
        (an.metrics[0].name.as_ref(), an.metrics[0].value),
        (names::CPI, 2.0)
    );
    let threshold = an.metrics[1].value;
    assert!(threshold > 1.0 && threshold < 2.0, "{threshold}");
    // The lowest 2 ways (min_cbm_bits 2) and 20 % of bandwidth, CPU levers untouched.
    assert_eq!(
        d.allocations,
        TasksAllocations::from([("be1".into(), in_group()), ("be2".into(), in_group())])
    );
    // Still contended once they are there (as the kernel reads them back): reported,
    // nothing to move.
    let held = TaskAllocations {
        cpu_quota: Some(1.0),
        cpu_idle: Some(true),
        ..in_group()
    };
    let d = a.allocate(&node.next(6.0, [&held, &held, &root]));
    assert_eq!(d.anomalies.len(), 1);
    assert!(d.allocations.is_empty(), "{d:?}");
}

#[test]
fn calm_gives_rdt_back_first_then_quota_and_a_restart_changes_nothing_before_that() {
    let mut a = allocator("give_back_step: 0.5");
    let mut node = Node::new(Some(caps()));
    let held = be_in(BEST_EFFORT_GROUP, 0.5);
    let root = be_in("", 1.0);
    let mut steps = Vec::new();
    // be1 and be2 hold the same, and get the same steps.
    let mut be = held.clone();
    for _ in 0..6 {
        let d = a.allocate(&node.next(1.0, [&be, &be, &root]));
        assert!(d.anomalies.is_empty(), "{d:?}");
        steps.push(d.allocations.get("be1").cloned());
        assert_eq!(d.allocations.get("be1"), d.allocations.get("be2"));
        if let Some(s) = d.allocations.get("be1") {
            be.merge(s);
        }
        if d.allocations.values().any(|s| s.rdt.is_some()) {
            assert!(
                d.allocations.keys().eq(["be1", "be2"]),
                "every BE task in the group, never be3 (in the root group), LC or other: {d:?}"
            );
        }
    }
    let to_root = TaskAllocations {
        rdt: Some(RdtAllocation {
            name: Some(String::new()),
            l3: None,
            mb: None,
        }),
        ..Default::default()
    };
    let quota = TaskAllocations {
        cpu_quota: Some(1.0),
        ..Default::default()
    };
    // Two calm intervals (the first observation has none), then the last lever first.
    assert_eq!(
        steps,
        [None, None, Some(to_root), None, Some(quota), None],
        "one step per calm period"
    );
    // A restarted allocator takes up from what the kernel holds: nothing before the calm
    // period is over.
    let mut fresh = allocator("");
    let mut node = Node::new(Some(caps()));
    for _ in 0..2 {
        let d = fresh.allocate(&node.next(1.0, [&held, &held, &root]));
        assert!(d.allocations.is_empty() && d.anomalies.is_empty(), "{d:?}");
    }
}

/// Log lines written while `f` runs.
fn logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // Another test thread may have hit a log line first, without a subscriber, and
        // cached that nobody listens to it.
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn without_rdt_allocation_the_lever_is_inert_and_says_so_once() {
    let root = be_in("", 1.0);
    let run = |extra: &str, rdt: Option<RdtCapabilities>| {
        let mut a = allocator(extra);
        let mut node = Node::new(rdt);
        let mut decisions = Vec::new();
        let text = logs(|| {
            for i in 0..8 {
                let cpi = if i < 5 { 1.0 } else { 4.0 };
                decisions.push(a.allocate(&node.next(cpi, [&root, &root, &root])));
            }
        });
        let cache = decisions
            .iter()
            .flat_map(|d| &d.anomalies)
            .filter(|an| an.resource == ContendedResource::Cache)
            .count();
        let moved = decisions
            .iter()
            .flat_map(|d| d.allocations.values())
            .filter(|s| s.rdt.is_some())
            .count();
        (text, cache, moved)
    };
    // The default levers on a host without RDT: one info line, no decision.
    let (text, cache, moved) = run("", None);
    assert_eq!((cache, moved), (0, 0));
    let said: Vec<&str> = text.lines().filter(|l| l.contains("rdt lever")).collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(
        said[0].contains("INFO") && said[0].contains("inert"),
        "{text}"
    );
    // Named explicitly: a warning, once.
    let (text, _, moved) = run("levers: [cpu_idle, cpu_quota, rdt]", None);
    let said: Vec<&str> = text.lines().filter(|l| l.contains("rdt lever")).collect();
    assert_eq!((said.len(), moved), (1, 0), "{text}");
    assert!(
        said[0].contains("WARN") && said[0].contains("inert"),
        "{text}"
    );
    // Left out of the levers on an RDT host: CPI is not even judged.
    let (text, cache, moved) = run("levers: [cpu_idle, cpu_quota]", Some(caps()));
    assert_eq!((cache, moved), (0, 0));
    assert!(!text.contains("rdt lever"), "{text}");
    // And on an RDT host: said once what it does, then acts on the outlier.
    let (text, cache, moved) = run("", Some(caps()));
    assert_eq!(text.matches("rdt lever").count(), 1, "{text}");
    assert!(cache >= 1 && moved == 2, "{cache} {moved}");
}

#[test]
fn bad_rdt_settings_are_refused_naming_the_field() {
    let err = |extra: &str| {
        let cfg: CollocationAllocatorConfig = crate::config::from_str(
            &format!("latency_critical: {{t: a}}\nbest_effort: {{t: b}}\n{extra}"),
            Path::new("c.yaml"),
        )
        .unwrap();
        CollocationAllocator::new(cfg).unwrap_err().to_string()
    };
    assert_eq!(
        err("best_effort_l3_ways: 0"),
        "CollocationAllocator: best_effort_l3_ways = 0 is out of range [1, 64]"
    );
    assert_eq!(
        err("best_effort_memory_bandwidth: 120"),
        "CollocationAllocator: best_effort_memory_bandwidth = 120 is out of range [1, 100]"
    );
    assert!(
        err("cpi_min_samples: 40")
            .contains("cpi_min_samples = 40 is out of range [2, cpi_history]")
    );
    assert!(err("cpi_stddevs: -1").contains("cpi_stddevs = -1"));
}
