//! `!KafkaStorage` against a real Kafka-protocol broker (Tansu) on 127.0.0.1: the agent's
//! packages arrive as Prometheus text, and a broker that dies and comes back neither stops
//! nor blocks the agent; packages lost meanwhile are counted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::time::{Duration, Instant};

use owca::{
    metrics::Metric,
    storage::{KafkaStorage, KafkaStorageConfig, Storage},
};
use support::{
    kafka_broker::{self, Broker, free_port},
    mesos_agent::{self, Answer, RunningTask, get_state_of},
    workload::{busy, busy_on},
    *,
};

const TOPIC: &str = "owca_metrics";

/// A broker with the test topic.
fn start_broker(port: u16) -> Broker {
    Broker::with_topic(port, TOPIC)
}

/// Reads the test topic from the start until a message satisfies `ok`; returns it.
fn consume_until(port: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    kafka_broker::consume_until(port, TOPIC, what, ok)
}

#[test]
fn packages_reach_kafka_and_survive_a_broker_restart() {
    require_root!();
    let port = free_port();
    let broker = start_broker(port);
    let task = placed("kafka-busy", &["cpu", "cpuacct"], busy());
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{}]}}\n  action_delay: 0.5\n  \
             event_names: []\n  metrics_storage: !KafkaStorage\n    topic: {TOPIC}\n    \
             brokers_ips: ['127.0.0.1:{port}']\n    max_timeout_in_seconds: 0.5\n    \
             extra_config: {{message.timeout.ms: '2000'}}\n",
            task.rel
        ),
    );

    let task_label = format!("task_id=\"{}\"", task.rel);
    let first = consume_until(port, "the task's metrics", |t| {
        sample(t, "task_oncpu_seconds_total", &[&task_label]).is_some_and(|v| v > 0.0)
    });
    assert!(
        first.contains("# TYPE task_oncpu_seconds_total counter"),
        "{first}"
    );
    assert_eq!(
        sample(&first, "owca_errors_total", &["component=\"kafka\""]),
        None,
        "no Kafka error before the outage:\n{first}"
    );

    // The broker dies: the agent goes on, its packages queued beside it.
    drop(broker);
    sleep_s(5.0);
    assert!(agent.alive(), "the agent exited");

    // Back (empty, as its storage is memory): delivery resumes by itself, and the
    // packages that expired meanwhile are counted.
    let _broker = start_broker(port);
    let later = consume_until(port, "a package counting the lost ones", |t| {
        sample(t, "owca_errors_total", &["component=\"kafka\""]).is_some_and(|v| v >= 1.0)
    });
    let oncpu = sample(&later, "task_oncpu_seconds_total", &[&task_label]).unwrap();
    let before = sample(&first, "task_oncpu_seconds_total", &[&task_label]).unwrap();
    assert!(
        oncpu > before + 3.0,
        "the task was measured throughout: {before} → {oncpu}"
    );

    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{status:?}\n{stderr}");
    // About 25 iterations, a dozen of them without a broker: a handful of lines (the
    // outage, packages dropped, delivering again), not one per iteration.
    let warnings = stderr.lines().filter(|l| l.contains("kafka")).count();
    assert!(
        (1..=6).contains(&warnings),
        "the outage is logged, not every iteration ({warnings} lines):\n{stderr}"
    );
}

/// A storage whose brokers are `brokers_ips`, with a delivery timeout.
fn storage(brokers: &str, timeout: Duration, extra: &[(&str, &str)]) -> KafkaStorage {
    let config = KafkaStorageConfig {
        topic: TOPIC.to_owned(),
        brokers_ips: vec![brokers.to_owned()],
        max_timeout_in_seconds: timeout,
        extra_config: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        task_labels: Default::default(),
    };
    KafkaStorage::new(config).expect("a producer needs no broker to start")
}

/// A store queues the package and returns, whatever the broker: it never waits for the
/// delivery timeout (it used to, up to `max_timeout_in_seconds` per store).
#[test]
fn a_store_without_a_broker_returns_at_once_and_counts_expired_packages() {
    let timeout = Duration::from_secs(2);
    let mut storage = storage(&format!("127.0.0.1:{}", free_port()), timeout, &[]);
    assert_eq!(storage.component(), "kafka");
    let package = [Metric::gauge("owca_up", "Up.", 1.0)];
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let stored = storage.store(&package);
        slowest = slowest.max(t.elapsed());
        // Queued, not yet dropped: no error until its delivery timeout passes.
        assert!(stored.is_ok(), "{stored:?}");
    }
    assert!(
        slowest < Duration::from_millis(50),
        "a store waited {slowest:?} for a broker that is not there"
    );
    assert!(start.elapsed() < timeout, "the packages expired already");

    // Once their delivery timeout has passed, the packages are reported as dropped, every
    // one of them counted, naming the brokers; the outage stays reported while it lasts.
    let mut lost = 0;
    let mut reports = Vec::new();
    while start.elapsed() < timeout + Duration::from_secs(5) && lost < 5 {
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        if let Err(e) = storage.store(&package) {
            slowest = slowest.max(t.elapsed());
            lost += e.count();
            reports.push(e.to_string());
        }
    }
    assert!(lost >= 5, "{lost} packages counted as dropped: {reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r == &reports[0] && r.contains("127.0.0.1") && r.contains(TOPIC)),
        "one problem, named: {reports:?}"
    );
    assert!(
        slowest < Duration::from_millis(50),
        "a store took {slowest:?}"
    );
}

/// The queue is bounded: a package that does not fit is dropped at once and counted.
#[test]
fn a_full_queue_drops_the_package_at_once() {
    let mut storage = storage(
        &format!("127.0.0.1:{}", free_port()),
        Duration::from_secs(30),
        &[("queue.buffering.max.messages", "2")],
    );
    let package = [Metric::gauge("owca_up", "Up.", 1.0)];
    assert!(storage.store(&package).is_ok());
    assert!(storage.store(&package).is_ok());
    let t = Instant::now();
    let full = storage
        .store(&package)
        .expect_err("a third package does not fit");
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    assert_eq!(full.count(), 1);
    assert!(full.to_string().contains("queue"), "{full}");
}

/// With its broker stopped, the agent keeps its pace: the metrics file (a LogStorage
/// beside the Kafka anomalies storage) is rewritten every `action_delay`, not every
/// `max_timeout_in_seconds` as when a store waited for delivery; the outage is counted
/// and logged once, and packages flow again when the broker is back.
#[test]
fn iterations_keep_their_pace_while_the_broker_is_down() {
    require_root!();
    let port = free_port();
    let broker = start_broker(port);
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.prom");
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !DetectionRunner\n  node: !StaticNode {{tasks: []}}\n  action_delay: 0.5\n  \
             event_names: []\n  detector: !NOPAnomalyDetector\n  \
             metrics_storage: !LogStorage {{output_filename: '{}', overwrite: true}}\n  \
             anomalies_storage: !KafkaStorage\n    topic: {TOPIC}\n    \
             brokers_ips: ['127.0.0.1:{port}']\n    max_timeout_in_seconds: 3\n",
            metrics.display()
        ),
    );
    consume_until(port, "a first package", |_| true);
    agent.wait_for(&metrics, "the agent's metrics", |t| t.contains("owca_up{"));

    drop(broker);
    sleep_s(1.0);
    // Each iteration rewrites the file with new durations: watch 5 s of rewrites.
    let start = Instant::now();
    let (mut last, mut changed_at) = (std::fs::read_to_string(&metrics).unwrap(), start);
    let (mut rewrites, mut longest) = (0, Duration::ZERO);
    while start.elapsed() < Duration::from_secs(5) {
        sleep_s(0.02);
        let text = std::fs::read_to_string(&metrics).unwrap_or_default();
        if !text.is_empty() && text != last {
            rewrites += 1;
            longest = longest.max(changed_at.elapsed());
            changed_at = Instant::now();
            last = text;
        }
    }
    longest = longest.max(changed_at.elapsed());
    assert!(
        rewrites >= 7 && longest < Duration::from_millis(1500),
        "iterations slowed down without a broker: {rewrites} in 5 s, up to {longest:?} apart"
    );
    assert!(agent.alive(), "the agent exited");

    // Out longer than the delivery timeout: packages expired, counted; back, delivering.
    let _broker = start_broker(port);
    consume_until(port, "a package after the outage", |_| true);
    agent.wait_for(&metrics, "the dropped packages counted", |t| {
        sample(t, "owca_errors_total", &["component=\"kafka\""]).is_some_and(|v| v >= 1.0)
    });
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{status:?}\n{stderr}");
    let lines = stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("kafka"))
        .count();
    assert!(
        (1..=4).contains(&lines),
        "the outage is logged once, not every iteration ({lines} lines):\n{stderr}"
    );
}

/// The shipped `configs/mesos/mesos_external_detector.yaml` (OWCA's), with only the
/// addresses and the output file pointed at this test: a Mesos agent stand-in with two
/// busy tasks sharing a CPU, the seed's `!ExampleDetector` registered to the Python
/// example plug-in, and anomalies read back from a real broker in OWCA's format.
#[tokio::test(flavor = "multi_thread")]
async fn shipped_external_detector_config_sends_anomalies_to_kafka() {
    require_root!();
    let port = free_port();
    let _broker = Broker::with_topic(port, "owca_anomalies");
    let a = placed("kafka-det-a", &["cpu", "cpuacct"], busy_on(1));
    let b = placed("kafka-det-b", &["cpu", "cpuacct"], busy_on(1));
    let running = |t: &PlacedTask, id: &str| RunningTask {
        task_id: id.to_owned(),
        executor_pid: t.proc.pid(),
        container_id: t.rel.trim_start_matches("mesos/").to_owned(),
    };
    let mesos = mesos_agent::Agent::start(
        Answer::Json(get_state_of(&[
            running(&a, "task-a"),
            running(&b, "task-b"),
        ])),
        None,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/mesos/mesos_external_detector.yaml"
    ))
    .unwrap();
    let metrics = dir.path().join("metrics.prom");
    let yaml = shipped
        .replace(
            "'http://127.0.0.1:5051'",
            &format!("'{}'", mesos.endpoint()),
        )
        .replace("/var/lib/owca/metrics.log", metrics.to_str().unwrap())
        .replace(
            "    topic: owca_anomalies\n",
            &format!("    topic: owca_anomalies\n    brokers_ips: ['127.0.0.1:{port}']\n"),
        );
    assert_ne!(yaml, shipped);
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/example_detector.py"
    );
    let register = format!("ExampleDetector=python3 {example}");
    let mut agent = Agent::start_with(dir.path(), &yaml, &["-r", &register], &[]);

    let anomalies = tokio::task::spawn_blocking(move || {
        kafka_broker::consume_until(port, "owca_anomalies", "a CPU contention anomaly", |t| {
            t.lines()
                .any(|l| l.starts_with("anomaly{") && l.contains("resource=\"cpus\""))
        })
    })
    .await
    .unwrap();
    let line = anomalies
        .lines()
        .find(|l| l.starts_with("anomaly{"))
        .unwrap();
    for label in [
        "type=\"contention\"",
        "env_id=\"host\"",
        "uuid=\"",
        "contending_workload_instance=\"",
    ] {
        assert!(line.contains(label), "{label} missing: {line}");
    }
    let pair = |x: &str, y: &str| {
        line.contains(&format!("contended_task_id=\"{x}\""))
            && line.contains(&format!("contending_task_id=\"{y}\""))
    };
    assert!(
        pair("task-a", "task-b") || pair("task-b", "task-a"),
        "{line}"
    );
    assert!(
        anomalies.contains("# TYPE anomaly_count counter"),
        "{anomalies}"
    );
    // The metrics go to the shipped LogStorage file meanwhile.
    let text = agent.wait_for(&metrics, "the tasks' metrics", |t| {
        sample(t, "task_oncpu_seconds_total", &["task_id=\"task-a\""]).is_some()
    });
    assert!(text.contains("env_id=\"host\""));
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{status:?}\n{stderr}");
}
