//! A real Kafka-protocol broker (Tansu, which `cargo xtask test` installs) on 127.0.0.1,
//! and a reader of its topics.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use super::{Proc, sleep_s, unique};

/// The broker binary `cargo xtask test` installs.
pub fn tansu() -> PathBuf {
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

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// A broker with one topic, killed on drop. Memory storage: a restart starts empty.
pub struct Broker {
    _process: Proc,
}

impl Broker {
    /// Starts a broker on `port` and creates `topic` once it listens.
    pub fn with_topic(port: u16, topic: &str) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let broker = Self {
            _process: Proc::spawn(
                Command::new(tansu())
                    .args([
                        "broker",
                        "--listener-url",
                        &url,
                        "--advertised-listener-url",
                        &url,
                    ])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            ),
        };
        let start = Instant::now();
        // Brokers do not create topics on first use: create it once the broker listens.
        loop {
            let created = Command::new(tansu())
                .args([
                    "topic",
                    "create",
                    topic,
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

/// A consumer of `topic` on the broker at `port`, from its first message.
pub fn consumer(port: u16, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", unique("owca-test"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a consumer");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("adding the partition");
    consumer.assign(&partitions).expect("assigning the topic");
    consumer
}

/// Reads `topic` from the start until a message satisfies `ok`; returns it.
pub fn consume_until(port: u16, topic: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let consumer = consumer(port, topic);
    let start = Instant::now();
    let (mut seen, mut last) = (0, String::new());
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let text = std::str::from_utf8(message.payload().unwrap_or_default())
                .expect("a package is UTF-8 text")
                .to_owned();
            if ok(&text) {
                return text;
            }
            seen += 1;
            last = text;
        }
    }
    panic!("no message with {what} in topic {topic} within 30 s; {seen} others, the last:\n{last}");
}

/// How many messages `topic` holds: read until `quiet` passes without a new one (after
/// up to 10 s for the consumer to join and fetch the first).
pub fn count_messages(port: u16, topic: &str, quiet: Duration) -> usize {
    let consumer = consumer(port, topic);
    let start = Instant::now();
    let mut count = 0;
    let mut last = None;
    loop {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            count += 1;
            last = Some(Instant::now());
        }
        let done = match last {
            Some(at) => at.elapsed() >= quiet,
            None => start.elapsed() >= Duration::from_secs(10),
        };
        if done {
            return count;
        }
    }
}
