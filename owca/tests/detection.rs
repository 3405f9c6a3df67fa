//! The `owca` binary with a `!DetectionRunner`: external plug-ins that answer, crash, hang
//! or print garbage (the agent keeps measuring, counts and logs each failure once,
//! restarts the plug-in), and the built-in `!ContentionDetector` against real busy loops
//! sharing a CPU in Mesos-shaped cgroups.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::process::Command;

use support::{
    detecting::*,
    workload::{busy_on, quiet},
    *,
};

/// OWCA's uuid, computed by Python as OWCA did.
fn owca_uuid(ids: &[&str]) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib, sys, uuid; print(uuid.UUID(bytes=hashlib.sha256(','.join(sorted(sys.argv[1:])).encode()).digest()[:16]))",
        ])
        .args(ids)
        .output()
        .expect("python3");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Answers every request with one contention between the first two tasks and records
/// its config and the last request.
const ANSWERING: &str = r#"
import json, sys
out = sys.argv[1]
config = json.loads(sys.stdin.readline())["config"]
json.dump(config, open(out + "/config.json", "w"))
n = 0
for line in sys.stdin:
    n += 1
    request = json.loads(line)
    json.dump(request, open(out + "/request.json.tmp", "w"))
    __import__("os").rename(out + "/request.json.tmp", out + "/request.json")
    ids = sorted(request["tasks"])
    answer = {
        "anomalies": [{"type": "contention", "resource": "cache",
                       "contended_task_id": ids[0], "contending_task_ids": ids[1:2],
                       "metrics": [{"name": "plugin_cpi", "value": 2.5,
                                    "labels": {"contended_task_id": ids[0]}}]}],
        "metrics": [{"name": "plugin_requests_total", "value": n, "type": "counter",
                     "help": "Requests the test plug-in answered."}],
    }
    print(json.dumps(answer), flush=True)
"#;

#[test]
fn answering_plugin_anomalies_are_stored_with_owca_labels() {
    require_root!();
    let a = placed("det-answer-a", CONTROLLERS, quiet());
    let b = placed("det-answer-b", CONTROLLERS, quiet());
    let dir = tempfile::tempdir().unwrap();
    let plugin = script(dir.path(), "answer.py", ANSWERING);
    let register = format!(
        "Answering=python3 {} {}",
        plugin.display(),
        dir.path().display()
    );
    let mut agent = Detecting::start(
        dir.path(),
        &[&a, &b],
        "!Answering\n    threshold: 3\n    tasks: [x, y]",
        &[register],
        false,
    );

    let text = agent.wait_anomalies("the plug-in's anomaly", |t| {
        sample(t, "plugin_requests_total", &[]).is_some_and(|n| n >= 2.0)
    });
    let (contended, contending) = if a.rel < b.rel {
        (&a.rel, &b.rel)
    } else {
        (&b.rel, &a.rel)
    };
    let uuid = owca_uuid(&[contended, contending]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let needles = [
        format!("contended_task_id=\"{contended}\""),
        format!("contending_task_id=\"{contending}\""),
        "resource=\"cache\"".to_owned(),
        format!("uuid=\"{uuid}\""),
        "type=\"contention\"".to_owned(),
        "contending_workload_instance=\"workload not found\"".to_owned(),
        format!("task_id=\"{contended}\""),
        format!("host=\"{}\"", host.trim()),
        "env_id=\"detection-test\"".to_owned(),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    assert_eq!(sample(&text, "anomaly", &needles), Some(1.0), "{text}");
    let cpi = [format!("uuid=\"{uuid}\""), "type=\"anomaly\"".to_owned()];
    let cpi: Vec<&str> = cpi.iter().map(String::as_str).collect();
    assert_eq!(sample(&text, "plugin_cpi", &cpi), Some(2.5), "{text}");
    assert!(text.contains("# HELP plugin_requests_total Requests the test plug-in answered."));
    assert!(
        sample(&text, "anomaly_count", &[]).is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        sample(&text, "anomaly_last_occurrence", &[]).is_some(),
        "{text}"
    );

    // The plug-in got its mapping, then the platform and each task's data.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config,
        serde_json::json!({"threshold": 3, "tasks": ["x", "y"]})
    );
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("request.json")).unwrap())
            .unwrap();
    for key in [
        "sockets",
        "cores",
        "cpus",
        "cpus_usage",
        "total_memory_used",
        "timestamp",
    ] {
        assert!(request["platform"].get(key).is_some(), "{key}: {request}");
    }
    let task = &request["tasks"][a.rel.as_str()];
    assert!(
        task["measurements"]["task_oncpu_seconds_total"].is_number(),
        "{task}"
    );
    assert!(
        task["measurements"]["cpu_usage_per_task"].is_number(),
        "{task}"
    );
    assert_eq!(task["labels"]["task_id"], a.rel.as_str());
    assert!(
        task["resources"].is_object() && task.get("allocations").is_none(),
        "{task}"
    );

    let metrics = std::fs::read_to_string(&agent.metrics).unwrap();
    assert_eq!(detector_errors(&metrics), Some(0.0), "{metrics}");
    assert!(agent.agent.alive());
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn crashing_plugin_costs_only_detection() {
    require_root!();
    failing_plugin(
        "crash",
        "!Crashing {}",
        Some("Crashing"),
        "read config; read request; exit 3",
        "plug-in Crashing exited instead of answering: exit status: 3",
    );
}

#[test]
fn hanging_plugin_is_killed_after_its_timeout() {
    require_root!();
    failing_plugin(
        "hang",
        "!ExternalDetector {command: [sh, PLUGIN], timeout: 0.5}",
        None,
        "while read line; do {child}; done",
        "hang-{pid}.sh did not answer within 500ms",
    );
}

#[test]
fn garbage_answers_are_refused() {
    require_root!();
    failing_plugin(
        "garbage",
        "!ExternalDetector {command: [sh, PLUGIN], timeout: 2}",
        None,
        "read config; while read line; do echo '<html>not json'; done",
        "garbage-{pid}.sh answered something that is not a valid answer (expected value at line 1 column 1): \"<html>not json\"",
    );
}

#[test]
fn unbounded_durations_stop_the_agent_at_start_naming_file_line_and_field() {
    require_root!();
    for (settings, field, shown) in [
        (
            "action_delay: 1e19\n  detector: !NOPAnomalyDetector\n",
            ":4:17: runner.action_delay: ",
            "1e19 seconds (too long), expected a number of seconds from 0.001 to 86400 (one day)",
        ),
        (
            "detector: !ExternalDetector\n    command: [python3, x.py]\n    timeout: 0\n",
            ":6:14: runner.detector.timeout: ",
            "0 seconds (too short), expected a number of seconds from 0.001 to 86400 (one day)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = Agent::start(
            dir.path(),
            &format!("runner: !DetectionRunner\n  node: !StaticNode\n    tasks: [a]\n  {settings}"),
        );
        let (status, log) = agent.wait_exit();
        assert!(!status.success(), "{log}");
        assert!(log.contains(&format!("owca.yaml{field}")), "{log}");
        assert!(log.contains(shown), "{log}");
    }
}

#[test]
fn seed_example_tag_runs_the_registered_python_example() {
    require_root!();
    let a = placed("det-example", CONTROLLERS, quiet());
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/example_detector.py"
    );
    // As OWCA's configs/mesos/mesos_external_detector.yaml: a bare `!ExampleDetector`,
    // registered on the command line (the registered plug-in wins over the built-in).
    let mut agent = Detecting::start(
        dir.path(),
        &[&a],
        "!ExampleDetector",
        &[format!("ExampleDetector=python3 {example}")],
        false,
    );
    let text = agent.wait_anomalies("the example plug-in's metric", |t| {
        sample(t, "example_detector_tasks", &[]) == Some(1.0)
    });
    assert!(
        !text.contains("second_of_cycle"),
        "the built-in ran:\n{text}"
    );
    let metrics = std::fs::read_to_string(&agent.metrics).unwrap();
    assert_eq!(detector_errors(&metrics), Some(0.0), "{metrics}");
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("example_detector: started"), "{stderr}");
}

/// Iterations (anomaly packages) stored before the first `anomaly` sample; `None` if none.
fn packages_before_first_anomaly(text: &str) -> Option<usize> {
    let first = text.lines().position(|l| l.starts_with("anomaly{"))?;
    Some(
        text.lines()
            .take(first)
            .filter(|l| l.starts_with("# TYPE anomaly_count "))
            .count(),
    )
}

#[test]
fn contention_detector_reports_busy_loops_sharing_a_cpu() {
    require_root!();
    let a = placed("det-busy-a", CONTROLLERS, busy_on(1));
    let b = placed("det-busy-b", CONTROLLERS, busy_on(1));
    // On the other CPU: the kernel charges a wait to the task that ran just before the
    // waiter, so a task waking briefly between the two loops on their CPU is charged
    // their waits (see the README's Collocation section).
    let quiet = placed("det-quiet", CONTROLLERS, Proc::sh(workload::QUIET, Some(0)));
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Detecting::start(
        dir.path(),
        &[&a, &b, &quiet],
        // Busy loops never block: judged only when every task is.
        "!ContentionDetector {min_voluntary_switches: 0}",
        &[],
        true,
    );

    let contended = |t: &PlacedTask| format!("contended_task_id=\"{}\"", t.rel);
    let contending = |t: &PlacedTask| format!("contending_task_id=\"{}\"", t.rel);
    let text = agent.wait_anomalies("a CPU contention", |t| {
        sample(
            t,
            "anomaly",
            &[&contended(&a), &contending(&b), "resource=\"cpus\""],
        )
        .is_some()
            || sample(
                t,
                "anomaly",
                &[&contended(&b), &contending(&a), "resource=\"cpus\""],
            )
            .is_some()
    });
    // The first iteration has no interval yet; the second sees the contention.
    let before = packages_before_first_anomaly(&text).unwrap();
    assert!(before < 3, "reported in iteration {}:\n{text}", before + 1);
    // Only the busy loops are blamed, never the quiet task.
    let later = agent.wait_anomalies("more iterations", |t| {
        t.matches("# TYPE anomaly_count ").count() >= before + 4
    });
    assert!(
        !later.contains(&contended(&quiet)) && !later.contains(&contending(&quiet)),
        "{later}"
    );
    let ratio = later
        .lines()
        .filter(|l| {
            l.starts_with("runqueue_wait_per_cpu_second{") && l.contains("type=\"anomaly\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(ratio >= 0.5, "wait per second on CPU {ratio}:\n{later}");
    assert!(agent.agent.alive());
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn contention_detector_quiet_run_reports_nothing() {
    require_root!();
    // A busy task alone on its CPU (whatever else the machine runs is not a task) and a
    // quiet one: nobody contends with anybody.
    let busy = placed("det-alone", CONTROLLERS, busy_on(1));
    let quiet = placed("det-quiet-run", CONTROLLERS, quiet());
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Detecting::start(
        dir.path(),
        &[&busy, &quiet],
        "!ContentionDetector {min_voluntary_switches: 0}",
        &[],
        true,
    );
    let task = format!("task_id=\"{}\"", busy.rel);
    let text = agent.wait_anomalies("eight iterations", |t| {
        t.matches("# TYPE anomaly_count ").count() >= 8
    });
    assert!(!text.contains("anomaly{"), "{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("anomaly_count"))
            .all(|l| l.ends_with(" 0")),
        "{text}"
    );
    let metrics = std::fs::read_to_string(&agent.metrics).unwrap();
    assert!(
        sample(&metrics, "task_runqueue_latency_seconds_sum", &[&task]).is_some(),
        "{metrics}"
    );
    assert_eq!(detector_errors(&metrics), Some(0.0));
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}
