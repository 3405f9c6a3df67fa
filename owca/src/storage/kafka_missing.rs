//! `KafkaStorage` in a build without the `kafka` feature (no librdkafka, as the fuzz
//! targets build the library): a config naming it still loads, and creating it is an error
//! that names the storage and the feature.

use super::{Storage, StorageError, kafka_config::KafkaStorageConfig};
use crate::metrics::Metric;

/// Never made: this build has no Kafka producer.
pub enum KafkaStorage {}

impl KafkaStorage {
    /// Fails: this build has no Kafka producer.
    pub fn new(_config: KafkaStorageConfig) -> Result<Self, StorageError> {
        Err(StorageError::MissingFeature {
            storage: "KafkaStorage",
            feature: "kafka",
        })
    }
}

impl Storage for KafkaStorage {
    fn store(&mut self, _metrics: &[Metric]) -> Result<(), StorageError> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{config, storage::StorageConfig};

    #[test]
    fn kafka_in_a_build_without_it_is_an_error_naming_storage_and_feature() {
        let cfg: StorageConfig =
            config::from_str("!KafkaStorage\ntopic: t\n", Path::new("s.yaml")).unwrap();
        let Err(err) = cfg.build() else {
            panic!("a Kafka storage without the kafka feature");
        };
        assert_eq!(
            err.to_string(),
            "KafkaStorage needs the `kafka` feature, which this build of owca lacks (build it with default features)"
        );
    }
}
