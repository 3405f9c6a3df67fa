//! The `owca` binary with `!CollocationAllocator` on the real kernel (root), tasks served
//! by the Mesos stand-in with Aurora tier labels, in real cgroup v1 directories: a
//! latency-critical (LC) task of two processes that work and sleep every millisecond,
//! two best-effort (BE) busy loops and an unlabelled busy loop on this 2-CPU machine.
//! As shipped (`idle_best_effort: with_lc`) the BE tasks are `cpu.idle` from the agent's
//! first iteration, before any contention, and back to normal once the LC task is gone.
//! Reacting only (`on_contention`), they are made `cpu.idle` as soon as the LC task waits
//! behind them, the decision is stored as an anomaly naming them, the LC task calms down,
//! and the unlabelled and LC tasks are never touched; a restarted agent writes nothing;
//! with the quota lever alone the BE quotas are cut and, once calm, given back up to no
//! limit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::path::{Path, PathBuf};

use support::{
    mesos_agent::{self, Answer, RunningTask},
    workload::busy,
    *,
};

/// Half a millisecond of CPU, then half a millisecond of sleep, forever.
const PERIODIC: &str = "import time\nwhile True:\n    t = time.perf_counter()\n    while time.perf_counter() - t < 0.0005:\n        pass\n    time.sleep(0.0005)\n";

/// The node: task ids `lc`, `be1`, `be2`, `other` (unlabelled), each in its own cgroup.
struct Node {
    lc: PlacedTask,
    /// The LC task's second process.
    _lc2: Proc,
    be: [PlacedTask; 2],
    other: PlacedTask,
    mesos: mesos_agent::Agent,
}

impl Node {
    async fn start(name: &str) -> Self {
        let controllers = &["cpu", "cpuacct"];
        let lc = placed(&format!("{name}-lc"), controllers, Proc::python(PERIODIC));
        let lc2 = Proc::python(PERIODIC);
        lc.cgroup.add_pid(lc2.pid()).unwrap();
        let be = [
            placed(&format!("{name}-be1"), controllers, busy()),
            placed(&format!("{name}-be2"), controllers, busy()),
        ];
        let other = placed(&format!("{name}-other"), controllers, busy());
        let mesos = mesos_agent::Agent::start(answer(Some(&lc), &be, &other), None).await;
        Self {
            lc,
            _lc2: lc2,
            be,
            other,
            mesos,
        }
    }

    /// Waits until the agent's allocations give both BE tasks `allocation_cpu_idle` =
    /// `idle`; the allocations text then.
    fn wait_be_idle(agent: &mut Allocating, idle: f64, what: &str) -> String {
        agent.agent.wait_for(&agent.allocations.clone(), what, |t| {
            ["be1", "be2"].iter().all(|id| {
                sample(t, "allocation_cpu_idle", &[&format!("task=\"{id}\"")]) == Some(idle)
            })
        })
    }

    fn cpu_file(t: &PlacedTask, file: &str) -> String {
        std::fs::read_to_string(t.cgroup.dir("cpu").join(file))
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// The Mesos answer listing the tasks with their Aurora tiers (`other` unlabelled), the
/// LC task only when given.
fn answer(lc: Option<&PlacedTask>, be: &[PlacedTask; 2], other: &PlacedTask) -> Answer {
    let running = |t: &PlacedTask, id: &str| RunningTask {
        task_id: id.to_owned(),
        executor_pid: t.proc.pid(),
        container_id: t.rel.trim_start_matches("mesos/").to_owned(),
    };
    let best_effort: &[(&str, &str)] = &[("org.apache.aurora.tier", "best-effort")];
    let mut tasks = Vec::new();
    let mut labels: Vec<&[(&str, &str)]> = Vec::new();
    if let Some(lc) = lc {
        tasks.push(running(lc, "lc"));
        labels.push(&[("org.apache.aurora.tier", "preferred")]);
    }
    tasks.extend([
        running(&be[0], "be1"),
        running(&be[1], "be2"),
        running(other, "other"),
    ]);
    labels.extend([best_effort, best_effort, &[]]);
    let mut state = mesos_agent::get_state_of(&tasks);
    for (i, labels) in labels.iter().enumerate() {
        mesos_agent::set_labels(&mut state, i, labels);
    }
    Answer::Json(state)
}

/// An allocation runner on the node, writing its three outputs to files.
struct Allocating {
    agent: Agent,
    anomalies: PathBuf,
    allocations: PathBuf,
}

impl Allocating {
    fn start(dir: &Path, node: &Node, allocator: &str) -> Self {
        let anomalies = dir.join("anomalies.prom");
        let allocations = dir.join("allocations.prom");
        for f in [&anomalies, &allocations] {
            let _ = std::fs::remove_file(f);
        }
        let agent = Agent::start(
            dir,
            &format!(
                "runner: !AllocationRunner\n  \
                 node: !MesosNode {{mesos_agent_endpoint: '{}', timeout: 1}}\n  \
                 action_delay: 0.5\n  \
                 metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 anomalies_storage: !LogStorage {{output_filename: {}, overwrite: false}}\n  \
                 allocations_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 allocator: {allocator}\n  \
                 allocation_configuration: !AllocationConfiguration {{cpu_quota_period: 10000}}\n",
                node.mesos.endpoint(),
                dir.join("metrics.prom").display(),
                anomalies.display(),
                allocations.display(),
            ),
        );
        Self {
            agent,
            anomalies,
            allocations,
        }
    }
}

const LABELS: &str =
    "latency_critical: {aurora_tier: 'preferred'}, best_effort: {aurora_tier: 'best.*'}";

#[tokio::test(flavor = "multi_thread")]
async fn best_effort_tasks_that_make_the_latency_critical_one_wait_become_idle() {
    require_root!();
    let node = Node::start("colloc-idle").await;
    let dir = tempfile::tempdir().unwrap();
    let reacting = format!("!CollocationAllocator {{{LABELS}, idle_best_effort: on_contention}}");
    let mut agent = Allocating::start(dir.path(), &node, &reacting);

    // The contention is seen, blamed on the BE tasks and acted upon.
    let anomalies = agent
        .agent
        .wait_for(&agent.anomalies.clone(), "an anomaly on lc", |t| {
            t.lines().any(|l| {
                l.starts_with("anomaly{")
                    && l.contains("contended_task_id=\"lc\"")
                    && l.contains("resource=\"cpus\"")
            })
        });
    let blamed: Vec<&str> = anomalies
        .lines()
        .filter(|l| l.starts_with("anomaly{") && l.contains("contended_task_id=\"lc\""))
        .filter_map(|l| l.split("contending_task_id=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!blamed.is_empty());
    assert!(
        blamed.iter().all(|b| *b == "be1" || *b == "be2"),
        "only BE tasks are blamed: {blamed:?}\n{anomalies}"
    );
    let text = Node::wait_be_idle(&mut agent, 1.0, "both BE tasks idle");
    for be in &node.be {
        assert_eq!(Node::cpu_file(be, "cpu.idle"), "1");
    }
    for untouched in [&node.lc, &node.other] {
        assert_eq!(Node::cpu_file(untouched, "cpu.idle"), "0");
        assert_eq!(Node::cpu_file(untouched, "cpu.cfs_quota_us"), "-1");
        assert_eq!(Node::cpu_file(untouched, "cpu.shares"), "1024");
    }
    assert_eq!(
        sample(&text, "allocation_cpu_idle", &["task=\"lc\""]),
        Some(0.0),
        "{text}"
    );
    // Then the LC task waits no longer behind them: calm iterations pile up.
    agent
        .agent
        .wait_for(&agent.allocations.clone(), "calm iterations", |t| {
            sample(t, "collocation_calm_iterations", &[]).is_some_and(|n| n >= 4.0)
        });
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("taking CPU from a best-effort task"),
        "{stderr}"
    );

    // A restarted agent starts from what the kernel holds: nothing to write while calm.
    let mut agent = Allocating::start(dir.path(), &node, &reacting);
    agent.agent.wait_for(
        &agent.allocations.clone(),
        "calm iterations after restart",
        |t| {
            sample(t, "collocation_calm_iterations", &[]).is_some_and(|n| n >= 4.0)
                && sample(t, "allocation_cpu_idle", &["task=\"be1\""]) == Some(1.0)
        },
    );
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("changing allocations"), "{stderr}");
    for be in &node.be {
        assert_eq!(Node::cpu_file(be, "cpu.idle"), "1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quota_lever_cuts_best_effort_quotas_and_gives_them_back_when_calm() {
    require_root!();
    let node = Node::start("colloc-quota").await;
    let dir = tempfile::tempdir().unwrap();
    // Cut down to the floor while the LC task runs; given back in two steps once it stops.
    let allocator = format!(
        "!CollocationAllocator {{{LABELS}, levers: [cpu_quota], min_quota: 0.1, \
         calm_iterations: 2, give_back_step: 0.5}}"
    );
    let mut agent = Allocating::start(dir.path(), &node, &allocator);
    let be1 = "task=\"be1\"";
    agent
        .agent
        .wait_for(&agent.allocations.clone(), "a quota cut on be1", |t| {
            sample(t, "allocation_cpu_quota", &[be1]).is_some_and(|q| q < 0.5)
        });
    let quota: i64 = Node::cpu_file(&node.be[0], "cpu.cfs_quota_us")
        .parse()
        .unwrap();
    assert!(
        (1000..10_000).contains(&quota),
        "be1 quota {quota} µs per 10 ms"
    );
    assert_eq!(
        Node::cpu_file(&node.be[0], "cpu.idle"),
        "0",
        "not a lever here"
    );
    assert_eq!(Node::cpu_file(&node.other, "cpu.cfs_quota_us"), "-1");
    assert_eq!(Node::cpu_file(&node.lc, "cpu.cfs_quota_us"), "-1");
    // The LC task stops: every LC task is calm, the quota comes back step by step.
    let lc_pids = std::fs::read_to_string(node.lc.cgroup.dir("cpu").join("cgroup.procs")).unwrap();
    for pid in lc_pids.split_whitespace() {
        let pid = nix::unistd::Pid::from_raw(pid.parse().unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP).unwrap();
    }
    agent
        .agent
        .wait_for(&agent.allocations.clone(), "be1 without a limit", |t| {
            sample(t, "allocation_cpu_quota", &[be1]) == Some(1.0)
        });
    assert_eq!(Node::cpu_file(&node.be[0], "cpu.cfs_quota_us"), "-1");
    for pid in lc_pids.split_whitespace() {
        let pid = nix::unistd::Pid::from_raw(pid.parse().unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::SIGCONT).unwrap();
    }
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("giving CPU back to a best-effort task"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn as_shipped_best_effort_tasks_are_idle_from_the_first_iteration_until_lc_leaves() {
    require_root!();
    let node = Node::start("colloc-place").await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Allocating::start(
        dir.path(),
        &node,
        &format!("!CollocationAllocator {{{LABELS}}}"),
    );
    Node::wait_be_idle(&mut agent, 1.0, "both BE tasks idle");
    for be in &node.be {
        assert_eq!(Node::cpu_file(be, "cpu.idle"), "1");
    }
    for untouched in [&node.lc, &node.other] {
        assert_eq!(Node::cpu_file(untouched, "cpu.idle"), "0");
    }
    // The LC task leaves the node: the BE tasks are not idle any more.
    node.mesos.set_answer(answer(None, &node.be, &node.other));
    Node::wait_be_idle(&mut agent, 0.0, "both BE tasks not idle");
    for be in &node.be {
        assert_eq!(Node::cpu_file(be, "cpu.idle"), "0");
    }
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    // Placed in the first iteration: before any decision that needs an interval.
    let placed = stderr
        .find("making a best-effort task idle")
        .expect("the placement is logged");
    let first_take = stderr
        .find("taking CPU from a best-effort task")
        .unwrap_or(usize::MAX);
    assert!(placed < first_take, "{stderr}");
    assert_eq!(
        stderr
            .matches("a best-effort task is no longer idle")
            .count(),
        2,
        "{stderr}"
    );
}
