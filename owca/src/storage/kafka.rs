//! `KafkaStorage`: each iteration's package of metrics, as Prometheus text, in one Kafka
//! message, as OWCA's `!KafkaStorage` sent it.
//!
//! A broker that is down or slow must not hold up the agent: a package waits at most
//! `max_timeout_in_seconds` for delivery, then stays in a bounded queue that librdkafka
//! keeps delivering from when the broker is back. Packages dropped (queue full, or not
//! delivered before `message.timeout.ms`) are reported by the next store and counted.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rdkafka::{
    ClientConfig, ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{Storage, StorageError, prometheus};
use crate::{config::positive_duration_secs, metrics::Metric};

/// Packages kept for delivery while a broker is away (a minute at a 1 s interval).
const QUEUE_PACKAGES: &str = "60";
/// How long a queued package may wait for a broker before it is dropped.
const MESSAGE_TIMEOUT_MS: &str = "60000";

/// Configuration of `!KafkaStorage`, with OWCA's names and defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaStorageConfig {
    /// The topic; it must exist (brokers may not create topics on first use).
    pub topic: String,
    /// Bootstrap brokers, `host:port`.
    #[serde(default = "default_brokers")]
    pub brokers_ips: Vec<String>,
    /// Longest wait for a package's delivery in one iteration.
    #[serde(
        default = "default_timeout",
        deserialize_with = "positive_duration_secs"
    )]
    pub max_timeout_in_seconds: Duration,
    /// librdkafka settings (`security.protocol`, `ssl.ca.location`, `sasl.mechanisms`...),
    /// applied last so they can also replace the queue limits above.
    #[serde(default)]
    pub extra_config: BTreeMap<String, String>,
}

fn default_brokers() -> Vec<String> {
    vec!["127.0.0.1:9092".to_owned()]
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

/// Delivery reports, written by librdkafka's callbacks and read by `store`.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The client-wide problem logged for the current outage (brokers down...), so that
    /// librdkafka's retries make one line, not one per attempt. Cleared by a delivery.
    logged: Mutex<Option<RDKafkaErrorCode>>,
}

struct Context {
    deliveries: Arc<Deliveries>,
    brokers: String,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // Its problems reach us through `error` and delivery reports; its own lines repeat
        // on every reconnection attempt.
        debug!(?level, facility, "librdkafka: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let mut logged = self
            .deliveries
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if logged.is_none() && code.is_some() {
            warn!(brokers = self.brokers, "Kafka: {reason}");
            *logged = code;
        } else {
            debug!(brokers = self.brokers, "Kafka: {reason}");
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let d = &self.deliveries;
        match result {
            Ok(_) => {
                let mut logged = d.logged.lock().unwrap_or_else(PoisonError::into_inner);
                if logged.take().is_some() {
                    info!(brokers = self.brokers, "Kafka: delivering again");
                }
            }
            Err((error, _)) => {
                d.failed.fetch_add(1, Ordering::Relaxed);
                *d.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(error.to_string());
            }
        }
    }
}

/// Sends each iteration's metrics to a Kafka topic.
pub struct KafkaStorage {
    producer: BaseProducer<Context>,
    topic: String,
    brokers: String,
    timeout: Duration,
    deliveries: Arc<Deliveries>,
    /// Failed deliveries already reported.
    reported: u64,
}

impl KafkaStorage {
    /// Creates the producer; no broker is contacted yet, so a broker that is down at start
    /// costs deliveries, not the agent.
    pub fn new(config: KafkaStorageConfig) -> Result<Self, StorageError> {
        let brokers = config.brokers_ips.join(",");
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &brokers)
            .set("queue.buffering.max.messages", QUEUE_PACKAGES)
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            // A package of a thousand tasks is several megabytes of text.
            .set("message.max.bytes", "100000000")
            .set("compression.codec", "gzip");
        for (key, value) in &config.extra_config {
            client.set(key, value);
        }
        let deliveries = Arc::new(Deliveries::default());
        let producer = client
            .create_with_context(Context {
                deliveries: Arc::clone(&deliveries),
                brokers: brokers.clone(),
            })
            .map_err(|e| StorageError::Kafka {
                brokers: brokers.clone(),
                topic: config.topic.clone(),
                what: "creating the producer".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            producer,
            topic: config.topic,
            brokers,
            timeout: config.max_timeout_in_seconds,
            deliveries,
            reported: 0,
        })
    }

    /// The body of the Kafka message that carries one package: the package as
    /// Prometheus text, as OWCA's `!KafkaStorage` sent it; what [`Storage::store`] sends.
    pub fn message_body(metrics: &[Metric]) -> Vec<u8> {
        prometheus::encode(metrics).text.into_bytes()
    }

    fn error(&self, what: &str, reason: impl ToString) -> StorageError {
        StorageError::Kafka {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            what: what.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl Storage for KafkaStorage {
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        let body = Self::message_body(metrics);
        let record = BaseRecord::<(), [u8], ()>::to(&self.topic).payload(&body[..]);
        let sent = self.producer.send(record);
        // Waits for this package (and any queued before it), at most the timeout; what is
        // not delivered by then stays queued.
        let _ = self.producer.flush(self.timeout);
        if let Err((e, _)) = sent {
            let reason = match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    "the queue of undelivered packages is full".to_owned()
                }
                other => other.to_string(),
            };
            return Err(StorageError::Dropped {
                count: 1,
                source: Box::new(self.error("queueing a package", reason)),
            });
        }
        let failed = self.deliveries.failed.load(Ordering::Relaxed);
        if failed > self.reported {
            let count = failed - self.reported;
            self.reported = failed;
            let reason = self
                .deliveries
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            return Err(StorageError::Dropped {
                count,
                source: Box::new(self.error("delivering packages", reason)),
            });
        }
        Ok(())
    }

    fn component(&self) -> &'static str {
        "kafka"
    }
}

impl Drop for KafkaStorage {
    fn drop(&mut self) {
        // The last package gets its chance before the agent exits.
        let _ = self.producer.flush(self.timeout);
    }
}
