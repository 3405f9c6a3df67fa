//! The `owca` binary against a stand-in Mesos agent whose tenants and answers are hostile
//! (real kernel, as root): labels named as the agent's own, tasks sharing an executor's
//! cgroup, an executor outside Mesos' cgroup root, and an agent that stops answering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{path::Path, process::Command};

use owca::cgroups::Mounts;
use serde_json::json;
use support::{
    mesos_agent::{self, Answer, RunningTask, get_state, get_state_of, set_labels},
    workload::busy,
    *,
};

const TASK_ID: &str = "root-staging14-cassandra--9043-0-9ee9fbf1-b51b-4bb3-9748-6a4327fd7e0e";

/// A measurement runner on the stand-in `mesos`, every 0.3 s, writing `prom`; `node_extra`
/// and `runner_extra` are more settings of the node and the runner (YAML lines).
fn measuring(
    mesos: &mesos_agent::Agent,
    prom: &Path,
    node_extra: &str,
    runner_extra: &str,
) -> String {
    format!(
        "runner: !MeasurementRunner\n  node: !MesosNode\n    mesos_agent_endpoint: '{}'\n    timeout: 1\n{node_extra}  \
         action_delay: 0.3\n  metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n{runner_extra}",
        mesos.endpoint(),
        prom.display()
    )
}

/// `promtool check metrics` of the file: no error (exit 3 is lint advice only: OWCA's
/// metric names predate Prometheus' naming rules).
fn assert_promtool_accepts(prom: &Path) {
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(prom).unwrap())
        .output()
        .expect("promtool (Debian package prometheus)");
    let out = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(
        matches!(check.status.code(), Some(0 | 3)) && !out.contains("error"),
        "promtool: {out}\n{}",
        std::fs::read_to_string(prom).unwrap()
    );
}

fn node_errors(text: &str) -> f64 {
    sample(text, "owca_errors_total", &["component=\"node\""]).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_labels_never_replace_the_agents_own() {
    require_root!();
    let task = placed("hostile-labels", &["cpu", "cpuacct"], busy());
    let container = task.rel.trim_start_matches("mesos/");
    let mut answer = get_state(task.proc.pid(), container);
    set_labels(
        &mut answer,
        0,
        &[
            ("org.apache.aurora.tier", "preemptible"),
            ("le", "0.5"),
            ("quantile", "0.9"),
            ("host", "another-node"),
            ("cpus", "512"),
            ("task_id", "someone-else"),
            ("rack", "forged-rack"),
        ],
    );
    let mesos = mesos_agent::Agent::start(Answer::Json(answer), None).await;
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start(
        dir.path(),
        &measuring(&mesos, &prom, "", "  extra_labels: {rack: r1}\n"),
    );

    let on_task = format!("task_id=\"{TASK_ID}\"");
    let text = agent.wait_for(&prom, "the task's histogram", |t| {
        sample(t, "task_runqueue_latency_seconds_count", &[&on_task]).is_some()
    });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = format!("host=\"{}\"", host.trim());
    // The node's cpus label, as its own samples carry it.
    let owca_up = text.lines().find(|l| l.starts_with("owca_up{")).unwrap();
    let cpus = owca_up
        .split(['{', ',', '}'])
        .find(|l| l.starts_with("cpus="))
        .unwrap()
        .to_owned();
    assert_ne!(cpus, "cpus=\"512\"");
    for family in [
        "task_runqueue_latency_seconds_sum",
        "task_runqueue_latency_seconds_count",
        "task_oncpu_seconds_total",
        "cpu_usage_per_task",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&on_task))
            .unwrap_or_else(|| panic!("no {family} of the task:\n{text}"));
        // The node's values; the tenant's under prefixed names.
        for needle in [
            host.as_str(),
            &cpus,
            "rack=\"r1\"",
            "task_le=\"0.5\"",
            "task_quantile=\"0.9\"",
            "task_host=\"another-node\"",
            "task_cpus=\"512\"",
            "task_task_id=\"someone-else\"",
            "task_rack=\"forged-rack\"",
            "aurora_tier=\"preemptible\"",
        ] {
            assert!(line.contains(needle), "{needle} missing: {line}");
        }
        for name in [
            "le",
            "quantile",
            "host=\"another-node",
            "cpus=\"512",
            "rack=\"forged",
            "task_id=\"someone-else",
        ] {
            for absent in [format!(",{name}"), format!("{{{name}")] {
                assert!(!line.contains(&absent), "{absent}: {line}");
            }
        }
    }
    assert_promtool_accepts(&prom);
    // Counted once for the task, not once per iteration.
    assert_eq!(node_errors(&text), 1.0, "{text}");
    sleep_s(1.5);
    let later = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(node_errors(&later), 1.0, "{later}");

    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let lines = log
        .lines()
        .filter(|l| l.contains("labels named as the agent's own"))
        .collect::<Vec<_>>();
    assert_eq!(lines.len(), 1, "{log}");
    for renamed in ["le as task_le", "host as task_host", "rack as task_rack"] {
        assert!(lines[0].contains(renamed), "{renamed}: {}", lines[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_sharing_an_executor_keep_their_cgroup_watched() {
    require_root!();
    let executor = placed("shared-executor", &["cpu", "cpuacct"], busy());
    let container = executor.rel.trim_start_matches("mesos/").to_owned();
    let task = |id: &str| RunningTask {
        task_id: id.to_owned(),
        executor_pid: executor.proc.pid(),
        container_id: container.clone(),
    };
    let mesos = mesos_agent::Agent::start(
        Answer::Json(get_state_of(&[task("first"), task("second")])),
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start(dir.path(), &measuring(&mesos, &prom, "", ""));
    let oncpu = |t: &str, id: &str| {
        sample(
            t,
            "task_oncpu_seconds_total",
            &[&format!("task_id=\"{id}\"")],
        )
    };
    agent.wait_for(&prom, "both tasks measured", |t| {
        oncpu(t, "first").is_some_and(|v| v > 0.2) && oncpu(t, "second").is_some_and(|v| v > 0.2)
    });

    // The first task finishes; the executor (and its cgroup) runs on with the second.
    mesos.set_answer(Answer::Json(get_state_of(&[task("second")])));
    let text = agent.wait_for(&prom, "the first task gone", |t| {
        oncpu(t, "first").is_none() && sample(t, "owca_tasks", &[]) == Some(1.0)
    });
    let before = oncpu(&text, "second").expect("the second task lost its eBPF metrics");
    let text = agent.wait_for(&prom, "the second task's time to grow", |t| {
        oncpu(t, "second").is_some_and(|v| v > before + 0.5) || oncpu(t, "second").is_none()
    });
    let after = oncpu(&text, "second").expect("the second task lost its eBPF metrics");
    assert!(after > before + 0.5, "{before} → {after}");

    // When the last task goes, the cgroup is unwatched.
    let mut none = get_state_of(&[]);
    none["get_state"]["get_tasks"]["launched_tasks"] = json!([]);
    mesos.set_answer(Answer::Json(none));
    agent.wait_for(&prom, "no task left", |t| {
        sample(t, "owca_tasks", &[]) == Some(0.0)
    });
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_outside_the_cgroups_root_is_neither_measured_nor_allocated() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let inside = placed("inside-root", &["cpu", "cpuacct"], busy());
    // Where a systemd service would be: not below /mesos/.
    let outside_cg = TestCgroup::create(&m, &["cpu", "cpuacct"], &unique("outside-root")).unwrap();
    let outside = busy();
    outside_cg.add_pid(outside.pid()).unwrap();
    let shares = |cg: &TestCgroup| {
        std::fs::read_to_string(cg.dir("cpu").join("cpu.shares"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let outside_shares = shares(&outside_cg);
    let mesos = mesos_agent::Agent::start(
        Answer::Json(get_state_of(&[
            RunningTask {
                task_id: "inside".into(),
                executor_pid: inside.proc.pid(),
                container_id: inside.rel.trim_start_matches("mesos/").into(),
            },
            RunningTask {
                task_id: "outside".into(),
                executor_pid: outside.pid(),
                container_id: "forged".into(),
            },
        ])),
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.prom");
    let allocations = dir.path().join("allocations.prom");
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !AllocationRunner\n  node: !MesosNode\n    mesos_agent_endpoint: '{}'\n    timeout: 1\n  \
             action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             anomalies_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             allocations_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             allocator: !StaticAllocator {{rules: [{{allocations: {{cpu_shares: 0.5}}}}]}}\n",
            mesos.endpoint(),
            metrics.display(),
            dir.path().join("anomalies.prom").display(),
            allocations.display(),
        ),
    );
    // The rule matches every task: the one inside /mesos/ gets it...
    agent.wait_for(&allocations, "the inside task's allocation", |t| {
        sample(t, "allocation_cpu_shares", &["task=\"inside\""]) == Some(0.5)
    });
    assert_eq!(shares(&inside.cgroup), "500");
    sleep_s(1.0);
    // ... the one outside is neither allocated nor measured.
    let text = std::fs::read_to_string(&allocations).unwrap();
    assert!(!text.contains("task=\"outside\""), "{text}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(!text.contains("task_id=\"outside\""), "{text}");
    assert!(text.contains("task_id=\"inside\""), "{text}");
    assert_eq!(shares(&outside_cg), outside_shares);

    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let warnings = log
        .lines()
        .filter(|l| l.contains("outside") && l.contains("cgroups_root"))
        .count();
    assert_eq!(warnings, 1, "one warning for the task:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_task_list_expires() {
    require_root!();
    let task = placed("stale-list", &["cpu", "cpuacct"], busy());
    let container = task.rel.trim_start_matches("mesos/").to_owned();
    let good = get_state(task.proc.pid(), &container);
    let mesos = mesos_agent::Agent::start(Answer::Json(good.clone()), None).await;
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start(
        dir.path(),
        &measuring(&mesos, &prom, "    task_list_ttl_iterations: 3\n", ""),
    );
    let on_task = format!("task_id=\"{TASK_ID}\"");
    agent.wait_for(&prom, "the task measured", |t| {
        sample(t, "task_oncpu_seconds_total", &[&on_task]).is_some()
    });

    mesos.set_answer(Answer::Status(500));
    // Kept through 3 failed iterations (each counted), dropped at the 4th (counted, and
    // the expiry once more). Every output seen on the way is checked.
    let seen = std::cell::RefCell::new(Vec::new());
    agent.wait_for(&prom, "the stale list dropped", |t| {
        let (errors, tasks) = (node_errors(t), sample(t, "owca_tasks", &[]));
        seen.borrow_mut()
            .push((errors, tasks, t.contains(&on_task)));
        tasks == Some(0.0)
    });
    let seen = seen.into_inner();
    for &(errors, tasks, measured) in &seen {
        match errors {
            1.0..=3.0 => assert!(measured && tasks == Some(1.0), "{errors}: {seen:?}"),
            5.0.. => assert!(!measured && tasks == Some(0.0), "{errors}: {seen:?}"),
            _ => {}
        }
    }
    assert!(seen.iter().any(|s| s.0 >= 1.0 && s.0 <= 3.0), "{seen:?}");
    sleep_s(1.0);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(sample(&text, "owca_tasks", &[]), Some(0.0), "{text}");

    // The agent answers again: the task is back.
    mesos.set_answer(Answer::Json(good));
    agent.wait_for(&prom, "the task measured again", |t| {
        sample(t, "task_oncpu_seconds_total", &[&on_task]).is_some()
    });
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let expired = log
        .lines()
        .filter(|l| l.contains("task_list_ttl_iterations: 3"))
        .count();
    assert_eq!(expired, 1, "{log}");
}
