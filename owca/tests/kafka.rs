//! `!KafkaStorage` against a real Kafka-protocol broker (Tansu) on 127.0.0.1: the agent's
//! packages arrive as Prometheus text, and a broker that dies and comes back neither stops
//! nor blocks the agent; packages lost meanwhile are counted.

mod support;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use owca::{
    metrics::Metric,
    storage::{KafkaStorage, KafkaStorageConfig, Storage},
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use support::*;

const TOPIC: &str = "owca_metrics";

/// The broker binary `cargo xtask test` installs.
fn tansu() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let installed = home.join(".cargo/bin/tansu");
    assert!(
        installed.exists(),
        "this test needs the Tansu Kafka broker at {}: `cargo xtask test` installs it",
        installed.display()
    );
    installed
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().unwrap().port()
}

/// A broker with the test topic, killed on drop. Memory storage: a restart starts empty.
struct Broker(Child);

impl Broker {
    fn start(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let broker = Self(child);
        let start = Instant::now();
        // Brokers do not create topics on first use: create it once the broker listens.
        loop {
            let created = Command::new(tansu())
                .args([
                    "topic",
                    "create",
                    TOPIC,
                    "--partitions",
                    "1",
                    "--broker",
                    &url,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running tansu topic create");
            if created.success() {
                return broker;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tansu did not start"
            );
            sleep_s(0.2);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the topic from the start until a message satisfies `ok`; returns it.
fn consume_until(port: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", unique("owca-test"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a consumer");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&partitions).expect("assigning the topic");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let text = std::str::from_utf8(message.payload().unwrap_or_default())
                .expect("a package is UTF-8 text")
                .to_owned();
            if ok(&text) {
                return text;
            }
        }
    }
    panic!("no message with {what} in topic {TOPIC} within 30 s");
}

#[test]
fn packages_reach_kafka_and_survive_a_broker_restart() {
    require_root();
    let port = free_port();
    let broker = Broker::start(port);
    let task = placed(
        "kafka-busy",
        &["cpu", "cpuacct"],
        Proc::sh("while :; do :; done", None),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{}]}}\n  action_delay: 0.5\n  \
             event_names: []\n  metrics_storage: !KafkaStorage\n    topic: {TOPIC}\n    \
             brokers_ips: ['127.0.0.1:{port}']\n    max_timeout_in_seconds: 0.5\n    \
             extra_config: {{message.timeout.ms: '2000'}}\n",
            task.rel
        ),
    );
    let mut agent = Command::new(env!("CARGO_BIN_EXE_owca"))
        .args(["-0", "-c", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the agent");

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

    // The broker dies: the agent goes on, each iteration waiting at most the timeout.
    drop(broker);
    sleep_s(5.0);
    assert!(agent.try_wait().unwrap().is_none(), "the agent exited");

    // Back (empty, as its storage is memory): delivery resumes by itself, and the
    // packages that expired meanwhile are counted.
    let _broker = Broker::start(port);
    let later = consume_until(port, "a package counting the lost ones", |t| {
        sample(t, "owca_errors_total", &["component=\"kafka\""]).is_some_and(|v| v >= 1.0)
    });
    let oncpu = sample(&later, "task_oncpu_seconds_total", &[&task_label]).unwrap();
    let before = sample(&first, "task_oncpu_seconds_total", &[&task_label]).unwrap();
    assert!(
        oncpu > before + 3.0,
        "the task was measured throughout: {before} → {oncpu}"
    );

    let (status, stderr) = terminate(&mut agent);
    assert!(status.success(), "{status:?}\n{stderr}");
    // About 25 iterations, a dozen of them without a broker: a handful of lines (the
    // outage, packages dropped, delivering again), not one per iteration.
    let warnings = stderr.lines().filter(|l| l.contains("kafka")).count();
    assert!(
        (1..=6).contains(&warnings),
        "the outage is logged, not every iteration ({warnings} lines):\n{stderr}"
    );
}

#[test]
fn a_store_without_a_broker_returns_within_the_timeout() {
    let config = KafkaStorageConfig {
        topic: TOPIC.to_owned(),
        brokers_ips: vec![format!("127.0.0.1:{}", free_port())],
        max_timeout_in_seconds: Duration::from_millis(300),
        extra_config: Default::default(),
    };
    let mut storage = KafkaStorage::new(config).expect("a producer needs no broker to start");
    for _ in 0..3 {
        let start = Instant::now();
        let stored = storage.store(&[Metric::gauge("owca_up", "Up.", 1.0)]);
        let took = start.elapsed();
        // Not delivered, but still queued: not an error until it is dropped.
        assert!(stored.is_ok(), "{stored:?}");
        assert!(took < Duration::from_secs(2), "store blocked for {took:?}");
    }
    assert_eq!(storage.component(), "kafka");
}
