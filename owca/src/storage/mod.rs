//! Storages: where each iteration's metrics go. Output formats live here and nowhere else.
//!
//! - [`prometheus`] encodes metrics as Prometheus text exposition format 0.0.4.
//! - [`LogStorage`] (`log_storage.rs`) writes that text to a file or stderr, appending or
//!   atomically replacing the file (for node_exporter's textfile collector).
//! - [`PrometheusExporter`] (`prometheus_exporter.rs`) serves it over HTTP at `/metrics`.
//! - [`KafkaStorage`] (`kafka.rs`) sends each package's text as one Kafka message; built
//!   with the `kafka` feature (default), else `kafka_missing.rs` refuses to create it.
//! - [`console`]: `ConsoleStorage`, the task table on a terminal (or as plain text), which
//!   `owca top` also shows, reading a running agent's text with [`prometheus_reader`].

pub mod console;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(not(feature = "kafka"))]
#[path = "kafka_missing.rs"]
mod kafka;
mod kafka_config;
mod log_storage;
pub mod prometheus;
mod prometheus_exporter;
pub mod prometheus_reader;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use self::{
    console::{ConsoleStorage, ConsoleStorageConfig},
    kafka::KafkaStorage,
    kafka_config::KafkaStorageConfig,
    log_storage::{LogStorage, LogStorageConfig},
    prometheus_exporter::{PrometheusExporter, PrometheusExporterConfig},
};
use crate::metrics::Metric;

/// A destination for metrics, called once per iteration by the runner.
///
/// `Send` so that a runner can keep its storages in a spawned tokio task.
pub trait Storage: Send {
    /// Stores one iteration's metrics, without waiting on anything slow (network peers are
    /// served or delivered to beside the loop). Samples the format cannot represent are
    /// dropped and logged by the storage, not returned as errors; an error means nothing
    /// (or not all) was stored this time.
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError>;

    /// [`Storage::store`] for a caller done with the metrics: a storage that keeps them
    /// (the exporter, until it is scraped) takes them rather than copying tens of
    /// thousands of samples.
    fn store_owned(&mut self, metrics: Vec<Metric>) -> Result<(), StorageError> {
        self.store(&metrics)
    }

    /// The component its errors are counted under in `owca_errors_total`.
    fn component(&self) -> &'static str {
        "storage"
    }
}

/// Why a storage could not be created or could not store metrics.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The Prometheus endpoint could not listen on its address.
    #[error("listening for Prometheus scrapes on {addr}: {source}")]
    Listen {
        /// The configured `listen` address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// `overwrite: true` replaces a file by renaming, which stderr cannot do.
    #[error("overwrite: true needs output_filename (stderr cannot be overwritten)")]
    OverwriteWithoutFile,
    /// `output_filename` names no file (e.g. it ends in `..` or is `/`).
    #[error("output_filename {} does not name a file", path.display())]
    NotAFile {
        /// The configured output file.
        path: PathBuf,
    },
    /// The output file's missing directory could not be created.
    #[error(
        "cannot create directory {} for output_filename {}: {source}",
        dir.display(),
        path.display()
    )]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The configured output file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The output file is a symbolic link, which the agent (root) does not follow.
    #[error("refusing to append to {}: it is a symbolic link", path.display())]
    Symlink {
        /// The output file.
        path: PathBuf,
    },
    /// The output file could not be opened for appending.
    #[error("cannot open {} for appending: {source}", path.display())]
    Open {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing (or syncing) the output file, or the temporary file that replaces it, failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file being written: the output file, or the temporary file in overwrite mode.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Renaming the temporary file over the output file failed.
    #[error("cannot rename {} to {}: {source}", from.display(), to.display())]
    Rename {
        /// The temporary file, left removed after the failure.
        from: PathBuf,
        /// The output file.
        to: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A Kafka producer could not be created or a package could not be queued or delivered.
    #[error("Kafka brokers {brokers}, topic {topic}: {what}: {reason}")]
    Kafka {
        /// The bootstrap brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// What was being done.
        what: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The storage needs a Cargo feature this build was made without.
    #[error(
        "{storage} needs the `{feature}` feature, which this build of owca lacks (build it with default features)"
    )]
    MissingFeature {
        /// The configured storage.
        storage: &'static str,
        /// The feature.
        feature: &'static str,
    },
    /// Packages were dropped without being delivered, or an outage that dropped some goes on.
    #[error("packages dropped: {source}")]
    Dropped {
        /// How many packages since the last report: 0 while an outage that already lost
        /// packages goes on, so that it stays one problem, logged once.
        count: u64,
        /// Why.
        source: Box<StorageError>,
    },
    /// The console could not set up the terminal, draw on it, or write its table.
    #[error("console: {source}")]
    Console {
        /// The underlying error.
        source: io::Error,
    },
    /// Writing to stderr failed (e.g. it was closed).
    #[error("cannot write to stderr: {source}")]
    Stderr {
        /// The underlying error.
        source: io::Error,
    },
}

/// The configured metrics storage.
#[derive(Debug, Clone, serde::Deserialize)]
pub enum StorageConfig {
    /// Prometheus text to a file or stderr.
    LogStorage(LogStorageConfig),
    /// Prometheus text served over HTTP at `/metrics`.
    PrometheusExporter(PrometheusExporterConfig),
    /// Prometheus text of each package in one Kafka message.
    KafkaStorage(KafkaStorageConfig),
    /// The task table on the terminal (plain text without one).
    ConsoleStorage(ConsoleStorageConfig),
}

impl StorageError {
    /// How many packages the error lost (one, unless it says otherwise).
    pub fn count(&self) -> u64 {
        match self {
            Self::Dropped { count, .. } => *count,
            _ => 1,
        }
    }
}

impl Default for StorageConfig {
    /// OWCA's default: Prometheus text on stderr.
    fn default() -> Self {
        Self::LogStorage(LogStorageConfig::default())
    }
}

impl StorageConfig {
    /// Creates the storage.
    pub fn build(self) -> Result<Box<dyn Storage>, StorageError> {
        match self {
            Self::LogStorage(c) => Ok(Box::new(LogStorage::new(c)?)),
            Self::PrometheusExporter(c) => Ok(Box::new(PrometheusExporter::start(&c)?)),
            Self::KafkaStorage(c) => Ok(Box::new(KafkaStorage::new(c)?)),
            Self::ConsoleStorage(c) => Ok(Box::new(ConsoleStorage::new(&c)?)),
        }
    }
}
