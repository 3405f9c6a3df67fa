//! `!KafkaStorage`'s settings, apart from the producer (`kafka.rs`) so that a config
//! naming Kafka loads, and is checked, in a build without the `kafka` feature too.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::config::positive_duration_secs;

/// Configuration of `!KafkaStorage`, with OWCA's names and defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaStorageConfig {
    /// The topic; it must exist (brokers may not create topics on first use).
    pub topic: String,
    /// Bootstrap brokers, `host:port`.
    #[serde(default = "default_brokers")]
    pub brokers_ips: Vec<String>,
    /// How long a package may take to be delivered (librdkafka's `message.timeout.ms`)
    /// before it is dropped and counted; `store` does not wait for it.
    #[serde(
        default = "default_timeout",
        deserialize_with = "positive_duration_secs"
    )]
    pub max_timeout_in_seconds: Duration,
    /// librdkafka settings (`security.protocol`, `ssl.ca.location`, `sasl.mechanisms`...),
    /// applied last so they can also replace the queue limits above.
    #[serde(default)]
    pub extra_config: BTreeMap<String, String>,
    /// `every_sample` (default) or `info`: see [`super::prometheus::TaskLabels`].
    #[serde(default)]
    pub task_labels: super::prometheus::TaskLabels,
}

fn default_brokers() -> Vec<String> {
    vec!["127.0.0.1:9092".to_owned()]
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}
