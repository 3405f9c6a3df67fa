//! Golden files: the exact Prometheus text and Kafka message body of one measurement
//! package, built from fixed inputs through the library's own builders (no kernel, no
//! root). A Mesos task from the captured `GET_STATE` answer, with one label that needs
//! sanitizing and a value that needs escaping; its eBPF metrics from fixed counters
//! (run-queue histogram included); its cgroup and RDT metrics; the platform's metrics and
//! common labels; the agent's own metrics.
//!
//! And the console's task table (`!ConsoleStorage`, `owca top`) of two such packages, on
//! ratatui's test backend and as plain text.
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
    anomaly::{ContendedResource, ContentionAnomaly, anomaly_metrics},
    containers::sample_labels,
    measurements::{rdt_metrics, task_metrics},
    metrics::SelfMetrics,
    metrics::{Labels, Metric, names},
    nodes::{NodeConfig, Task},
    platform::Platform,
    resctrl::ResctrlMeasurement,
    runners::COMPONENTS,
    storage::{
        KafkaStorage,
        console::{Snapshot, Sort, View, render, render::Extras},
        prometheus, prometheus_reader,
    },
};
use owca_common::{CgroupCounters, HIST_BUCKETS};
use ratatui::{Terminal, backend::TestBackend, widgets::TableState};
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

// The console's task table (`!ConsoleStorage`, `owca top`): two packages one second apart,
// as the runner stores them, shown on ratatui's test backend and as the plain table.

const BUSY_TASK: &str = "aurora.prod.web-frontend.0-5f82c8d4-9ee4-47a7-b5a2-2bb578769b5a";
const BATCH_TASK: &str = "aurora.batch.etl.3-7710041e-8ef3-4adf-a416-8dc4543459a7";
const IDLE_TASK: &str = "sidecar";

/// One task's samples at the `step`th of two iterations (0 or 1): kernel counters through
/// the library's builder, cgroup readings, and (at step 1) its allocation.
fn console_task(id: &str, step: u64, common: &Labels) -> Vec<Metric> {
    let (cpu_ns, wait_ns, hist_bucket, voluntary, involuntary, instructions, cycles) = match id {
        BUSY_TASK => (
            1_500_000_000,
            300_000_000,
            11,
            120,
            340,
            1_200_000_000,
            2_000_000_000,
        ),
        BATCH_TASK => (
            900_000_000,
            9_000_000,
            5,
            40,
            15,
            2_700_000_000,
            1_000_000_000,
        ),
        _ => (0, 0, 0, 0, 0, 0, 0),
    };
    let mut c = CgroupCounters {
        oncpu_ns: 50_000_000_000 + step * cpu_ns,
        switches_voluntary: 10_000 + step * voluntary,
        switches_involuntary: 500 + step * involuntary,
        runq_wait_ns: 1_000_000_000 + step * wait_ns,
        ..Default::default()
    };
    c.runq_hist[0] = 1000;
    if cpu_ns > 0 {
        c.runq_hist[hist_bucket] += step * 100;
    }
    c.perf[..2].copy_from_slice(&[
        10_000_000_000 + step * instructions,
        10_000_000_000 + step * cycles,
    ]);
    let events = ["instructions", "cycles"].map(str::to_owned);
    let mut metrics = task_metrics::from_counters(&c, &events, true);
    let throttled = if id == BUSY_TASK { 0.25 } else { 0.0 };
    metrics.extend([
        Metric::gauge(
            names::MEMORY_USAGE_PER_TASK,
            names::MEMORY_USAGE_PER_TASK_HELP,
            if id == IDLE_TASK {
                7_200_768.0
            } else {
                2_147_483_648.0
            },
        ),
        Metric::counter(
            names::TASK_THROTTLED,
            names::TASK_THROTTLED_HELP,
            3.0 + step as f64 * throttled,
        ),
    ]);
    if id == BATCH_TASK {
        // Who ran while it waited: mostly the busy task.
        for (by, seconds) in [(BUSY_TASK, 0.006), ("unwatched", 0.003)] {
            metrics.push(
                Metric::counter(
                    names::TASK_RUNQ_WAIT_BY,
                    names::TASK_RUNQ_WAIT_BY_HELP,
                    0.5 + step as f64 * seconds,
                )
                .with_label(names::BY_TASK_ID_LABEL, by),
            );
        }
    }
    let mut labels = common.clone();
    labels.insert("task_id".to_owned(), id.to_owned());
    let labels = Arc::new(labels);
    for m in &mut metrics {
        m.shared = Some(Arc::clone(&labels));
    }
    if id == BUSY_TASK && step == 1 {
        // `allocation_metrics` labels allocations with `task`, as OWCA did.
        for (name, help, value) in [
            (
                names::ALLOCATION_CPU_QUOTA,
                names::ALLOCATION_CPU_QUOTA_HELP,
                0.5,
            ),
            (
                names::ALLOCATION_CPU_SHARES,
                names::ALLOCATION_CPU_SHARES_HELP,
                2.0,
            ),
            (
                names::ALLOCATION_CPUSET_CPUS,
                names::ALLOCATION_CPUSET_CPUS_HELP,
                4.0,
            ),
        ] {
            metrics.push(Metric::gauge(name, help, value).with_label("task", id));
        }
    }
    metrics
}

/// The metrics package of iteration `step` (and at step 1 the anomaly package's samples:
/// the idle task contended by the two others), with the agent's own metrics.
fn console_package(step: u64) -> Vec<Metric> {
    let common = platform().common_labels();
    let mut metrics: Vec<Metric> = [BUSY_TASK, BATCH_TASK, IDLE_TASK]
        .iter()
        .flat_map(|id| console_task(id, step, &common))
        .collect();
    let common = Arc::new(common);
    let mut stats = SelfMetrics::new(&COMPONENTS);
    let refused = std::io::Error::other("connection refused");
    for _ in 0..=step {
        stats.record("node", "tasks", &refused);
    }
    let mut own = vec![
        Metric::gauge(names::OWCA_TASKS, names::OWCA_TASKS_HELP, 3.0),
        Metric::gauge(names::OWCA_MEMORY, names::OWCA_MEMORY_HELP, 23_068_672.0),
        Metric::counter(
            names::OWCA_CPU,
            names::OWCA_CPU_HELP,
            12.0 + step as f64 * 0.004,
        ),
        Metric::gauge(
            names::OWCA_ITERATION_TIME,
            names::OWCA_ITERATION_TIME_HELP,
            1_780_000_000.0 + step as f64,
        ),
    ];
    own.extend(stats.error_metrics());
    if step == 1 {
        let anomaly = ContentionAnomaly {
            resource: ContendedResource::Cpus,
            contended_task_id: IDLE_TASK.to_owned(),
            contending_task_ids: vec![BUSY_TASK.to_owned(), BATCH_TASK.to_owned()],
            metrics: Vec::new(),
        };
        let labels = Labels::new();
        let (anomalies, errors) = anomaly_metrics(&[anomaly], |_| Some(&labels), &common);
        assert!(errors.is_empty(), "{errors:?}");
        own.extend(anomalies);
    }
    for m in &mut own {
        m.shared.get_or_insert_with(|| Arc::clone(&common));
    }
    metrics.extend(own);
    metrics
}

/// The view of the two packages, by CPU.
fn console_view() -> View {
    let prev = Snapshot::from_metrics(&console_package(0));
    let cur = Snapshot::from_metrics(&console_package(1));
    View::new(Some(&prev), &cur, Sort::default())
}

#[test]
fn console_screen_of_two_packages() {
    let (width, height) = (132, 11);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let logs = ["2026-12-04T18:06:44Z  INFO owca::collector: eBPF collector attached".to_owned()];
    let extras = Extras {
        status: None,
        logs: &logs,
    };
    let view = console_view();
    terminal
        .draw(|f| render::draw(f, &view, &mut TableState::default(), &extras))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    check_golden("console_screen.txt", text.as_bytes());
}

#[test]
fn console_plain_table_of_the_same_packages() {
    check_golden(
        "console_plain.txt",
        render::plain(&console_view()).as_bytes(),
    );
}

/// `owca top` reads the agent's text, `!ConsoleStorage` its samples: the same snapshot.
#[test]
fn the_text_read_back_gives_the_same_snapshot() {
    for step in [0, 1] {
        let package = console_package(step);
        let encoded = prometheus::encode(&package);
        assert_eq!(encoded.dropped(), 0, "{encoded:?}");
        let read = prometheus_reader::read(&encoded.text).unwrap();
        assert_eq!(
            Snapshot::from_metrics(&read),
            Snapshot::from_metrics(&package)
        );
    }
}
