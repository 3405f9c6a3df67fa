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

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use support::{
    workload::{busy, busy_on, quiet},
    *,
};

const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory"];

/// An agent with a detection runner writing metrics and anomalies to two files.
struct Detecting {
    agent: Agent,
    metrics: PathBuf,
    anomalies: PathBuf,
}

impl Detecting {
    /// `append`: anomalies are appended per iteration instead of replaced.
    fn start(
        dir: &Path,
        tasks: &[&PlacedTask],
        detector: &str,
        register: &[String],
        append: bool,
    ) -> Self {
        let metrics = dir.join("metrics.prom");
        let anomalies = dir.join("anomalies.prom");
        let tasks: Vec<&str> = tasks.iter().map(|t| t.rel.as_str()).collect();
        let args: Vec<&str> = register.iter().flat_map(|r| ["-r", r.as_str()]).collect();
        let agent = Agent::start_with(
            dir,
            &format!(
                "runner: !DetectionRunner\n  node: !StaticNode\n    tasks: {tasks:?}\n  action_delay: 0.4\n  \
                 metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 anomalies_storage: !LogStorage {{output_filename: {}, overwrite: {}}}\n  \
                 extra_labels: {{env_id: detection-test}}\n  detector: {detector}\n",
                metrics.display(),
                anomalies.display(),
                !append,
            ),
            &args,
            &[],
        );
        Self {
            agent,
            metrics,
            anomalies,
        }
    }

    /// Waits for the anomalies file to satisfy `ok`; see [`Agent::wait_for`].
    fn wait_anomalies(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.anomalies, what, ok)
    }

    /// Waits for the metrics file to satisfy `ok`; see [`Agent::wait_for`].
    fn wait_metrics(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.metrics, what, ok)
    }
}

/// `owca_errors_total{component="detector"}` in a metrics text.
fn detector_errors(text: &str) -> Option<f64> {
    sample(text, "owca_errors_total", &["component=\"detector\""])
}

/// A script file in `dir`.
fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

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

/// Live processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
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

/// A failing plug-in: the agent keeps measuring, counts the failure every iteration it
/// costs, logs it once, and restarts the plug-in.
fn failing_plugin(name: &str, detector: &str, register: Option<&str>, plugin: &str, logged: &str) {
    let pid = std::process::id().to_string();
    // A child of the plug-in that must die with it (see the hanging plug-in).
    let child = format!("sleep 100{pid}");
    let plugin = plugin.replace("{child}", &child);
    let task = placed(&format!("det-{name}"), CONTROLLERS, busy());
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let plugin = script(
        dir.path(),
        &format!("{name}-{}.sh", std::process::id()),
        &format!("echo started >> {}\n{plugin}", starts.display()),
    );
    let detector = detector.replace("PLUGIN", plugin.to_str().unwrap());
    let register: Vec<String> = register
        .map(|r| format!("{r}=sh {}", plugin.display()))
        .into_iter()
        .collect();
    let mut agent = Detecting::start(dir.path(), &[&task], &detector, &register, false);

    let oncpu = format!("task_id=\"{}\"", task.rel);
    let text = agent.wait_metrics("detector errors", |t| {
        detector_errors(t).is_some_and(|n| n >= 2.0)
            && sample(t, "task_oncpu_seconds_total", &[&oncpu]).is_some()
    });
    // Measuring goes on: the task's time keeps growing, errors keep being counted.
    let before = sample(&text, "task_oncpu_seconds_total", &[&oncpu]).unwrap();
    let errors = detector_errors(&text).unwrap();
    agent.wait_metrics("more measurements", |t| {
        sample(t, "task_oncpu_seconds_total", &[&oncpu]).is_some_and(|v| v > before + 0.2)
            && detector_errors(t).is_some_and(|n| n > errors)
    });
    // Restarted with backoff (1 s, then 2 s): at least twice within a few seconds.
    wait_until(&starts, "a restart of the plug-in", |t| {
        t.lines().count() >= 2
    });
    assert!(agent.agent.alive(), "the agent exited");
    // Each failed plug-in was killed: at most the current one runs.
    let running = processes_with(plugin.file_name().unwrap().to_str().unwrap());
    assert!(running <= 1, "{running} plug-in processes alive");
    let anomalies = std::fs::read_to_string(&agent.anomalies).unwrap();
    assert_eq!(
        sample(&anomalies, "anomaly_count", &[]),
        Some(0.0),
        "{anomalies}"
    );

    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("component=\"detector\""))
        .collect();
    assert_eq!(warnings.len(), 1, "{name}: {warnings:#?}\n{stderr}");
    let logged = logged.replace("{pid}", &pid);
    assert!(warnings[0].contains(&logged), "{name}: {}", warnings[0]);
    // Nothing is left behind once the agent stopped.
    sleep_s(0.3);
    assert_eq!(
        processes_with(plugin.file_name().unwrap().to_str().unwrap()),
        0
    );
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

/// `python3 -c PROGRAM` as a line of the shell plug-in (stdin stays the protocol's).
fn python(program: &str) -> String {
    format!("python3 -c \"$(cat <<'PY'\n{program}\nPY\n)\"")
}

#[test]
fn answers_over_a_cap_are_refused_and_counted_while_the_agent_measures() {
    require_root!();
    // A million contending tasks (5 MB): refused at the line cap, before any parsing.
    failing_plugin(
        "caps-line",
        "!ExternalDetector {command: [sh, PLUGIN], timeout: 5}",
        None,
        &python(
            "import json, sys\nsys.stdin.readline()\nfor line in sys.stdin:\n    print(json.dumps({'anomalies': [{'type': 'contention', 'resource': 'cpus', 'contended_task_id': 'a', 'contending_task_ids': ['t'] * 1000000}]}), flush=True)",
        ),
        "caps-line-{pid}.sh answered more than the agent takes: an answer line longer than 4194304 bytes",
    );
    // No newline at all: read up to the cap, not without end.
    failing_plugin(
        "caps-endless",
        "!ExternalDetector {command: [sh, PLUGIN], timeout: 5}",
        None,
        "read config; read request; yes | tr -d '\\n'",
        "caps-endless-{pid}.sh answered more than the agent takes: an answer line longer than 4194304 bytes",
    );
    // Within the line, over the count: refused while parsing.
    failing_plugin(
        "caps-ids",
        "!ExternalDetector {command: [sh, PLUGIN], timeout: 5}",
        None,
        &python(
            "import json, sys\nsys.stdin.readline()\nfor line in sys.stdin:\n    print(json.dumps({'anomalies': [{'type': 'contention', 'resource': 'cpus', 'contended_task_id': 'a', 'contending_task_ids': ['t'] * 200000}]}), flush=True)",
        ),
        "caps-ids-{pid}.sh answered more than the agent takes: more than 100 contending_task_ids at line 1",
    );
    // 300 new help texts per answer: the fourth answer would keep more than 1024.
    failing_plugin(
        "caps-help",
        "!ExternalDetector {command: [sh, PLUGIN], timeout: 5}",
        None,
        &python(
            "import json, sys, uuid\nsys.stdin.readline()\nfor line in sys.stdin:\n    print(json.dumps({'metrics': [{'name': 'm', 'value': 1, 'labels': {'i': str(i)}, 'help': uuid.uuid4().hex} for i in range(300)]}), flush=True)",
        ),
        "caps-help-{pid}.sh answered more than the agent takes: 300 new metric help texts, 900 kept since start: more than 1024 distinct help texts",
    );
}

/// A plug-in in a file that another user can read.
fn shared_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    script(dir, name, text)
}

/// A detector that answers nothing, after printing `stderr` lines and closing stderr.
const QUIET_AFTER_STDERR: &str = r#"
import json, os, resource, sys
sys.stdin.readline()
STDERR
sys.stderr.flush()
os.close(2)
for line in sys.stdin:
    print("{}", flush=True)
"#;

#[test]
fn plugins_run_with_a_cleared_environment_limits_and_the_chosen_user() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let plugin = shared_script(
        dir.path(),
        "env.py",
        &QUIET_AFTER_STDERR.replace(
            "STDERR",
            "print('ENV ' + json.dumps({'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), \
             'groups': os.getgroups(), 'env': dict(os.environ), \
             'nofile': resource.getrlimit(resource.RLIMIT_NOFILE), \
             'as': resource.getrlimit(resource.RLIMIT_AS), 'core': resource.getrlimit(resource.RLIMIT_CORE)}), file=sys.stderr)",
        ),
    );
    let detector = format!(
        "!ExternalDetector {{command: [python3, {}], user: nobody}}",
        plugin.display()
    );
    let mut agent = Agent::start_with(
        dir.path(),
        &format!(
            "runner: !DetectionRunner\n  node: !StaticNode {{tasks: [a]}}\n  action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             anomalies_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  detector: {detector}\n",
            dir.path().join("metrics.prom").display(),
            dir.path().join("anomalies.prom").display(),
        ),
        &[],
        &[
            ("OWCA_TEST_SECRET", OsStr::new("hunter2")),
            ("LC_ALL", OsStr::new("C.UTF-8")),
            ("TZ", OsStr::new("UTC")),
        ],
    );
    let metrics = dir.path().join("metrics.prom");
    agent.wait_for(&metrics, "a detection without errors", |t| {
        detector_errors(t) == Some(0.0) && sample(t, "owca_tasks", &[]).is_some()
    });
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("plug-in stderr: ENV "))
        .unwrap_or_else(|| panic!("the plug-in's stderr is not in the log:\n{log}"));
    assert!(
        line.contains(&format!("plugin=python3 {}", plugin.display())),
        "{line}"
    );
    let json = line.split("plug-in stderr: ENV ").nth(1).unwrap();
    let json = &json[..json.rfind('}').unwrap() + 1];
    let seen: serde_json::Value = serde_json::from_str(json).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(seen["uid"], nobody.uid.as_raw(), "{seen}");
    assert_eq!(seen["euid"], nobody.uid.as_raw(), "{seen}");
    assert_eq!(seen["gid"], nobody.gid.as_raw(), "{seen}");
    let groups = seen["groups"].as_array().unwrap();
    assert!(
        groups.iter().all(|g| *g == nobody.gid.as_raw()),
        "no supplementary group of root's: {seen}"
    );
    let env = seen["env"].as_object().unwrap();
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    // Python may add LC_CTYPE itself (PEP 538); nothing else beyond the allow-list.
    names.retain(|n| *n != "LC_CTYPE");
    let mut want = vec!["LC_ALL", "PATH", "TZ"];
    if std::env::var_os("LANG").is_some() {
        want.push("LANG");
    }
    if std::env::var_os("PYTHONPATH").is_some() {
        want.push("PYTHONPATH");
    }
    for n in names.iter().filter(|n| n.starts_with("LC_")) {
        if !want.contains(n) {
            want.push(n);
        }
    }
    want.sort_unstable();
    assert_eq!(names, want, "{seen}");
    assert_eq!(env["LC_ALL"], "C.UTF-8");
    assert_eq!(seen["nofile"], serde_json::json!([1024, 1024]), "{seen}");
    assert_eq!(
        seen["as"],
        serde_json::json!([4u64 << 30, 4u64 << 30]),
        "{seen}"
    );
    assert_eq!(seen["core"], serde_json::json!([0, 0]), "{seen}");
}

#[test]
fn unknown_plugin_user_stops_the_agent_at_start() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        dir.path(),
        "runner: !DetectionRunner\n  node: !StaticNode {tasks: [a]}\n  detector: !ExternalDetector\n    command: [python3]\n    user: no-such-user-owca\n",
    );
    let (status, log) = agent.wait_exit();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("owca.yaml:")
            && log.contains("user: user \"no-such-user-owca\" does not exist on this machine"),
        "{log}"
    );
}

#[test]
fn a_plugin_spamming_stderr_is_rate_limited_in_the_agents_log() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let plugin = script(
        dir.path(),
        "spam.py",
        &QUIET_AFTER_STDERR.replace(
            "STDERR",
            "for i in range(5000):\n    print('spam line %d' % i, file=sys.stderr)\nprint('x' * 100000, file=sys.stderr)",
        ),
    );
    let detector = format!(
        "!ExternalDetector {{command: [python3, {}]}}",
        plugin.display()
    );
    let metrics = dir.path().join("metrics.prom");
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !DetectionRunner\n  node: !StaticNode {{tasks: [a]}}\n  action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             anomalies_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  detector: {detector}\n",
            metrics.display(),
            dir.path().join("anomalies.prom").display(),
        ),
    );
    agent.wait_for(&metrics, "detections", |t| {
        detector_errors(t) == Some(0.0) && sample(t, "owca_tasks", &[]).is_some()
    });
    // The stderr of the plug-in is closed: what was left out has been reported.
    let start = std::time::Instant::now();
    while !agent.log().contains("lines left out") && start.elapsed().as_secs() < 10 {
        sleep_s(0.1);
    }
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plug-in stderr: spam line"))
        .collect();
    assert_eq!(logged.len(), 20, "{log}");
    assert!(
        logged[0].contains("spam line 0") && logged[0].contains("spam.py"),
        "{}",
        logged[0]
    );
    let left_out: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lines left out"))
        .collect();
    assert_eq!(left_out.len(), 1, "{log}");
    assert!(
        left_out[0].contains("4981 lines left out (at most 20 a minute)"),
        "{}",
        left_out[0]
    );
    assert!(
        log.len() < 20_000,
        "the log holds no flood: {} bytes",
        log.len()
    );
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
    let quiet = placed("det-quiet", CONTROLLERS, quiet());
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Detecting::start(
        dir.path(),
        &[&a, &b, &quiet],
        "!ContentionDetector {}",
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
        "!ContentionDetector {}",
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
