//! Golden files: the exact Prometheus text and Kafka message body of one measurement
//! package, built from fixed inputs through the library's own builders (no kernel, no
//! root). A Mesos task from the captured `GET_STATE` answer, with one label that needs
//! sanitizing and a value that needs escaping; its eBPF metrics from fixed counters
//! (run-queue histogram included); its cgroup and RDT metrics; the platform's metrics and
//! common labels; the agent's own metrics.
//!
//! After an intended change of the output, refresh the files and review their diff like
//! code: `UPDATE_GOLDEN=1 cargo test -p owca --test golden`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use owca::{
    containers::sample_labels,
    measurements::{rdt_metrics, task_metrics},
    metrics::SelfMetrics,
    metrics::{Metric, names},
    nodes::{NodeConfig, Task},
    platform::Platform,
    resctrl::ResctrlMeasurement,
    runners::COMPONENTS,
    storage::{KafkaStorage, prometheus},
};
use owca_common::{CgroupCounters, HIST_BUCKETS};
use serde_json::json;
use support::mesos_agent::get_state;

/// The agent's version stands for itself in the golden files as this, so that a version
/// bump is not an output change.
const VERSION_MARK: &str = "@OWCA_VERSION@";
/// The executor of the captured task and its container, as in the fixture.
const EXECUTOR_PID: u32 = 32620;
const CONTAINER: &str = "ceab3bec-9282-43aa-b05f-095736cc169e";

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The captured Mesos task as `!MesosNode` turns it into a [`Task`], with one more label:
/// a key that is no valid Prometheus label name and a value with a quote, a backslash and
/// a newline. Its executor's `/proc/<pid>/cgroup` is a file of the test's.
fn mesos_task(dir: &Path) -> Task {
    let mut answer = get_state(EXECUTOR_PID, CONTAINER);
    answer["get_state"]["get_tasks"]["launched_tasks"][0]["labels"]["labels"]
        .as_array_mut()
        .expect("the fixture task has labels")
        .push(json!({
            "key": "org.apache.aurora.metadata.owner-team",
            "value": "db \"core\" \\ ops\nteam",
        }));
    let proc_root = dir.join("proc");
    let cgroup = proc_root.join(EXECUTOR_PID.to_string()).join("cgroup");
    std::fs::create_dir_all(cgroup.parent().unwrap()).unwrap();
    std::fs::write(
        &cgroup,
        format!("5:memory:/mesos/{CONTAINER}\n4:cpu,cpuacct:/mesos/{CONTAINER}\n0::/\n"),
    )
    .unwrap();
    let config: NodeConfig = owca::config::from_str(
        "!MesosNode {mesos_agent_endpoint: 'http://127.0.0.1:5051'}\n",
        Path::new("golden.yaml"),
    )
    .expect("a MesosNode config");
    let NodeConfig::MesosNode(node) = config else {
        panic!("not a MesosNode: {config:?}");
    };
    let found = node
        .with_proc_root(proc_root)
        .discover(&answer)
        .expect("the captured answer");
    assert_eq!(found.skipped, Default::default(), "{found:?}");
    let [task] = <[Task; 1]>::try_from(found.tasks).expect("one task");
    task
}

/// A machine with two cores of two threads on one socket.
fn platform() -> Platform {
    Platform {
        cpus: 4,
        cores: 2,
        sockets: 1,
        cpu_model: "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz".to_owned(),
        host: "node-17.dc1".to_owned(),
        cpu_usage_per_cpu: vec![(0, 1_234_567), (1, 987_654), (2, 0), (3, 42)],
        memory_usage_bytes: Some(17_179_869_184),
    }
}

/// Counters of one task: 12.3 s on CPU, switches, 3 counter events, and 100 run-queue
/// waits spread over the buckets, the last (open) one included.
fn counters() -> CgroupCounters {
    let mut c = CgroupCounters {
        oncpu_ns: 12_345_678_901,
        switches_voluntary: 4321,
        switches_involuntary: 87,
        runq_wait_ns: 1_500_250_000,
        runq_waits: 100,
        ..Default::default()
    };
    for (bucket, waits) in [(0, 40), (1, 20), (4, 25), (9, 10), (HIST_BUCKETS - 1, 5)] {
        c.runq_hist[bucket] = waits;
    }
    c.perf[..3].copy_from_slice(&[98_765_432_109, 123_456_789_012, 5555]);
    c
}

/// One `!MeasurementRunner` package, in the order the runner stores it: per task its
/// eBPF, cgroup and RDT metrics; the platform's; the agent's own.
fn package() -> Vec<Metric> {
    let dir = tempfile::tempdir().unwrap();
    let task = mesos_task(dir.path());
    let platform = platform();
    let mut common = platform.common_labels();
    // `extra_labels` of the config, which win over the platform's.
    common.insert("env_id".to_owned(), "prod".to_owned());
    let common = Arc::new(common);

    let events = ["instructions", "cycles", "cache_misses"].map(str::to_owned);
    let mut metrics = task_metrics::from_counters(&counters(), &events, true);
    // The cgroupfs readings (`measurements::cgroup_metrics` reads them from a cgroup).
    metrics.extend([
        Metric::counter(
            names::CPU_USAGE_PER_TASK,
            names::CPU_USAGE_PER_TASK_HELP,
            12_400_000_000.0,
        ),
        Metric::gauge(
            names::MEMORY_USAGE_PER_TASK,
            names::MEMORY_USAGE_PER_TASK_HELP,
            2_147_483_648.0,
        ),
        Metric::gauge(
            names::TASK_MEMORY_LIMIT,
            names::TASK_MEMORY_LIMIT_HELP,
            4_294_967_296.0,
        ),
        Metric::counter(names::TASK_THROTTLED, names::TASK_THROTTLED_HELP, 0.125),
    ]);
    metrics.extend(rdt_metrics(&ResctrlMeasurement {
        memory_bandwidth_bytes: Some(1_073_741_824),
        llc_occupancy_bytes: Some(3_145_728),
    }));
    let labels = sample_labels(&task, &common);
    for m in &mut metrics {
        m.shared = Some(Arc::clone(&labels));
    }

    let node_start = metrics.len();
    metrics.extend(platform.metrics());
    // The agent's own metrics, as `SelfMetrics::metrics` makes them (with this process's
    // memory and the stages' real times, which a golden file cannot hold).
    metrics.extend([
        Metric::gauge(names::OWCA_UP, names::OWCA_UP_HELP, 1.0),
        Metric::gauge(names::OWCA_TASKS, names::OWCA_TASKS_HELP, 1.0),
        Metric::gauge(names::OWCA_MEMORY, names::OWCA_MEMORY_HELP, 23_068_672.0),
    ]);
    for (function, seconds) in [
        ("node", 0.0012),
        ("resctrl", 0.0003),
        ("collector", 0.00045),
        ("measurements", 0.0021),
        ("iteration", 0.0042),
    ] {
        metrics.push(
            Metric::gauge(names::OWCA_DURATION, names::OWCA_DURATION_HELP, seconds)
                .with_label("function", function),
        );
    }
    let mut stats = SelfMetrics::new(&COMPONENTS);
    let refused = std::io::Error::other("connection refused");
    stats.record("node", "tasks", &refused);
    stats.record_n("kafka", "metrics_storage", &refused, 3);
    metrics.extend(stats.error_metrics());
    for m in &mut metrics[node_start..] {
        m.shared = Some(Arc::clone(&common));
    }
    metrics
}

/// The package as Prometheus text, every sample kept.
fn prometheus_text() -> String {
    let encoded = prometheus::encode(&package());
    assert_eq!(encoded.dropped(), 0, "{encoded:?}");
    encoded.text
}

/// Compares `actual` with the golden file `name` (after marking the version), or writes it
/// with `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &[u8]) {
    let version = format!("owca_version=\"{}\"", env!("CARGO_PKG_VERSION"));
    let marked = String::from_utf8(actual.to_vec())
        .expect("the output is UTF-8")
        .replace(&version, &format!("owca_version=\"{VERSION_MARK}\""));
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &marked).unwrap();
        // Straight to stderr: the test harness would capture `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "UPDATE_GOLDEN=1: wrote {}",
            path.display()
        );
        return;
    }
    let refresh = "if the change is intended, refresh with \
                   `UPDATE_GOLDEN=1 cargo test -p owca --test golden` and review the diff";
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; {refresh}", path.display()));
    if golden != marked {
        panic!(
            "the output differs from {} (- golden, + now):\n{}\n{refresh}",
            path.display(),
            line_diff(&golden, &marked)
        );
    }
}

/// The differing lines of two texts with two lines of context, as `diff -u` shows them
/// (from a longest common subsequence of lines).
fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.split('\n').collect(), new.split('\n').collect());
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', i + 1, a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            lines.push(('+', j + 1, b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len()).filter(|&k| lines[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_shown = None;
    for (k, (mark, line_no, text)) in lines.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= 2);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l: usize| l + 1 < k) {
            out.push_str("   ...\n");
        }
        out.push_str(&format!("{mark} {line_no:4} {text}\n"));
        last_shown = Some(k);
    }
    out
}

#[test]
fn prometheus_text_of_a_measurement_package() {
    check_golden("measurement_package.prom", prometheus_text().as_bytes());
}

#[test]
fn kafka_message_body_of_the_same_package() {
    let body = KafkaStorage::message_body(&package());
    check_golden("measurement_package.kafka", &body);
}

#[test]
fn the_golden_text_passes_promtool() {
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        support::skip(
            test_name!(),
            "promtool is not installed (Debian package prometheus; `cargo xtask test` installs it)",
        );
        return;
    };
    let text = prometheus_text();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Exit 3 is lint advice only (OWCA's names predate Prometheus naming rules).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool: {said}\n{text}"
    );
    assert!(!said.contains("error"), "promtool: {said}\n{text}");
}

#[test]
fn the_diff_shows_changed_lines_with_context() {
    let diff = line_diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n");
    assert_eq!(
        diff,
        "     2 b\n     3 c\n-    4 d\n+    4 D\n     5 e\n     6 f\n"
    );
}
