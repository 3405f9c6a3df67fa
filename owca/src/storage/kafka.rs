//! `KafkaStorage`: each iteration's package of metrics, as Prometheus text, in one Kafka
//! message, as OWCA's `!KafkaStorage` sent it.
//!
//! A broker that is down or slow never holds up the agent: `store` only queues the package
//! (librdkafka copies it) and returns; librdkafka's threads deliver it beside the loop and
//! a polling thread collects the delivery reports. `max_timeout_in_seconds` keeps OWCA's
//! meaning, the time a package has to be delivered (`message.timeout.ms`), but nobody waits
//! for it. Packages dropped (queue full, or not delivered in time) are reported by the next
//! store, counted under `owca_errors_total{component="kafka"}`, and an outage is one
//! problem: logged once, until a package is delivered again.

use std::{
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
    producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer},
};
use tracing::{debug, info, warn};

use super::{Storage, StorageError, kafka_config::KafkaStorageConfig, prometheus};
use crate::metrics::Metric;

/// Packages queued for delivery at most; more are dropped at once. With the delivery
/// timeout a few iterations long, only a burst of slow deliveries gets near it.
const QUEUE_PACKAGES: &str = "60";
/// Bytes queued at most (KiB): a package of a thousand tasks is several megabytes, and
/// librdkafka's default (1 GiB) is more memory than the agent should ever hold for Kafka.
const QUEUE_KBYTES: &str = "262144";

/// Delivery reports, written by librdkafka's callbacks and read by `store`.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
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
                d.delivered.fetch_add(1, Ordering::Relaxed);
                let mut logged = d.logged.lock().unwrap_or_else(PoisonError::into_inner);
                if logged.take().is_some() {
                    info!(brokers = self.brokers, "Kafka: delivering again");
                }
            }
            Err((error, _)) => {
                *d.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(error.to_string());
                // After the reason, so that a store that sees the count sees the reason.
                d.failed.fetch_add(1, Ordering::Release);
            }
        }
    }
}

/// Sends each iteration's metrics to a Kafka topic, without waiting for the brokers.
pub struct KafkaStorage {
    producer: ThreadedProducer<Context>,
    topic: String,
    brokers: String,
    timeout: Duration,
    deliveries: Arc<Deliveries>,
    /// Failed deliveries already reported.
    reported: u64,
    /// Deliveries seen by the previous store.
    delivered: u64,
    /// What was being done and why it failed, for the first loss of the current outage:
    /// reported by every store until a package is delivered again, so that the outage is
    /// one problem (logged once) however irregularly its packages expire.
    outage: Option<(&'static str, String)>,
    /// Kept between packages: it renders each task's labels once.
    encoder: prometheus::Encoder,
}

impl KafkaStorage {
    /// Creates the producer; no broker is contacted yet, so a broker that is down at start
    /// costs deliveries, not the agent.
    pub fn new(config: KafkaStorageConfig) -> Result<Self, StorageError> {
        let brokers = config.brokers_ips.join(",");
        // 0 would mean "forever" to librdkafka.
        let timeout_ms = config
            .max_timeout_in_seconds
            .as_millis()
            .clamp(1, i32::MAX as u128);
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &brokers)
            .set("queue.buffering.max.messages", QUEUE_PACKAGES)
            .set("queue.buffering.max.kbytes", QUEUE_KBYTES)
            .set("message.timeout.ms", timeout_ms.to_string())
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
            delivered: 0,
            outage: None,
            encoder: prometheus::Encoder::new(config.task_labels),
        })
    }

    /// The body of the Kafka message that carries one package: the package as
    /// Prometheus text, as OWCA's `!KafkaStorage` sent it; what [`Storage::store`] sends
    /// with the default `task_labels`.
    pub fn message_body(metrics: &[Metric]) -> Vec<u8> {
        prometheus::encode(metrics).text.into_bytes()
    }

    /// Queues `body`; on failure, what was being done and why.
    fn queue(&self, body: &[u8]) -> Result<(), (&'static str, String)> {
        let record = BaseRecord::<(), [u8], ()>::to(&self.topic).payload(body);
        self.producer.send(record).map_err(|(e, _)| {
            let reason = match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    "the queue of undelivered packages is full".to_owned()
                }
                other => other.to_string(),
            };
            ("queueing a package", reason)
        })
    }
}

impl Storage for KafkaStorage {
    /// Queues the package and returns at once; reports the packages lost since the last
    /// store (an error with a count of 0 while an outage that lost packages goes on).
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        let mut lost = 0;
        let mut why = None;
        let body = self.encoder.encode(metrics).text.into_bytes();
        if let Err(e) = self.queue(&body) {
            lost += 1;
            why = Some(e);
        }
        let d = &self.deliveries;
        let failed = d.failed.load(Ordering::Acquire);
        if failed > self.reported {
            lost += failed - self.reported;
            self.reported = failed;
            let reason = d.last_error.lock().unwrap_or_else(PoisonError::into_inner);
            why.get_or_insert_with(|| ("delivering packages", reason.clone().unwrap_or_default()));
        }
        let delivered = d.delivered.load(Ordering::Relaxed);
        let resumed = delivered > self.delivered;
        self.delivered = delivered;

        if lost == 0 && resumed {
            self.outage = None;
        }
        let (what, reason) = match (why, &self.outage) {
            (_, Some(outage)) => outage.clone(),
            (Some(why), None) => self.outage.insert(why).clone(),
            (None, None) => return Ok(()),
        };
        Err(StorageError::Dropped {
            count: lost,
            source: Box::new(StorageError::Kafka {
                brokers: self.brokers.clone(),
                topic: self.topic.clone(),
                what: what.to_owned(),
                reason,
            }),
        })
    }

    fn component(&self) -> &'static str {
        "kafka"
    }
}

impl Drop for KafkaStorage {
    fn drop(&mut self) {
        // The packages still queued get their delivery timeout before the agent exits.
        let _ = self.producer.flush(self.timeout);
    }
}
