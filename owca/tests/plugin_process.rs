//! External plug-in processes under a `!DetectionRunner`: answers over a cap are refused
//! while the agent measures; plug-ins run with a cleared environment, resource limits and
//! the chosen user, and their stderr reaches the agent's log at a limited rate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
};

use support::{detecting::*, *};

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
