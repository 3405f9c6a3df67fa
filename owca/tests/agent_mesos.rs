//! The `owca` binary against a stand-in Mesos agent: every running task with OWCA's labels
//! and kernel-checked values, and no answer the agent can give makes it exit or lose the
//! task's metrics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::time::Duration;

use owca::cgroups::Mounts;
use support::{
    mesos_agent::{self, Answer, get_state},
    workload::busy,
    *,
};

const TASK_ID: &str = "root-staging14-cassandra--9043-0-9ee9fbf1-b51b-4bb3-9748-6a4327fd7e0e";

#[tokio::test(flavor = "multi_thread")]
async fn agent_reports_mesos_tasks_and_survives_broken_answers() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let container = unique("container");
    let rel = format!("mesos/{container}");
    let cg = TestCgroup::create(&m, &["cpu", "cpuacct", "memory"], &rel).unwrap();
    let executor = busy();
    cg.add_pid(executor.pid()).unwrap();
    let mesos =
        mesos_agent::Agent::start(Answer::Json(get_state(executor.pid(), &container)), None).await;

    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !MesosNode\n    mesos_agent_endpoint: '{}'\n    timeout: 1\n  \
             action_delay: 0.3\n  metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n",
            mesos.endpoint(),
            prom.display()
        ),
    );

    let task = format!("task_id=\"{TASK_ID}\"");
    let text = agent.wait_for(&prom, "the Mesos task's metrics", |t| {
        sample(t, "task_oncpu_seconds_total", &[&task]).is_some_and(|v| v > 0.5)
    });
    // OWCA's label treatment of the Aurora task's labels, and its cpus assignment.
    for label in [
        "initial_task_cpu_assignment=\"8.0\"",
        "tier=\"preemptible\"",
        "env_uniq_id=\"14\"",
        "application=\"cassandra\"",
    ] {
        assert!(
            sample(&text, "cpu_usage_per_task", &[&task, label]).is_some(),
            "{label} missing:\n{text}"
        );
    }
    let usage = cgroup_value(&cg.dir("cpuacct").join("cpuacct.usage"), None) as f64;
    let reported = sample(&text, "cpu_usage_per_task", &[&task]).unwrap();
    assert!(
        reported > 0.0 && reported <= usage,
        "cpuacct {reported} vs now {usage}"
    );
    // The cgroup ran before the agent watched it: compare what both counted since.
    let oncpu = sample(&text, "task_oncpu_seconds_total", &[&task]).unwrap();
    let later = agent.wait_for(&prom, "a second of the task's time", |t| {
        sample(t, "task_oncpu_seconds_total", &[&task]).is_some_and(|v| v > oncpu + 1.0)
    });
    let d_oncpu = sample(&later, "task_oncpu_seconds_total", &[&task]).unwrap() - oncpu;
    let d_usage = (sample(&later, "cpu_usage_per_task", &[&task]).unwrap() - reported) / 1e9;
    assert!(
        (d_oncpu - d_usage).abs() < 0.05 * d_usage,
        "eBPF {d_oncpu} s vs cpuacct {d_usage} s"
    );

    // Broken answers: the agent keeps running and keeps measuring the task it knows.
    for broken in [
        Answer::Garbage,
        Answer::Status(500),
        Answer::SlowJson(Duration::from_secs(3), get_state(1, "x")),
    ] {
        mesos.set_answer(broken);
        let before = sample(
            &std::fs::read_to_string(&prom).unwrap(),
            "owca_errors_total",
            &["component=\"node\""],
        )
        .unwrap();
        let text = agent.wait_for(&prom, "a node error to be counted", |t| {
            sample(t, "owca_errors_total", &["component=\"node\""]).is_some_and(|v| v > before)
        });
        assert!(
            sample(&text, "task_oncpu_seconds_total", &[&task]).is_some(),
            "task lost:\n{text}"
        );
        assert!(agent.alive(), "the agent exited");
    }
    // The agent comes back by itself.
    mesos.set_answer(Answer::Json(get_state(executor.pid(), &container)));
    sleep_s(1.5);
    // The task is gone from Mesos: its metrics go, its kernel entry is freed.
    let mut finished = get_state(executor.pid(), &container);
    finished["get_state"]["get_tasks"]["launched_tasks"] = serde_json::json!([]);
    mesos.set_answer(Answer::Json(finished));
    agent.wait_for(&prom, "the finished task to disappear", |t| {
        !t.contains(&task) && t.contains("owca_tasks")
    });

    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
    // Each broken answer is one log line, not one per iteration.
    for what in ["not JSON", "HTTP 500", "no answer to GET_STATE within 1s"] {
        let lines = stderr
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(what))
            .count();
        assert_eq!(lines, 1, "{what}: {lines} warnings\n{stderr}");
    }
}
