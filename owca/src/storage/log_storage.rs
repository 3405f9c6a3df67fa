//! `LogStorage`: Prometheus text to a file or stderr, as OWCA's `!LogStorage` did.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Storage, StorageError, prometheus};
use crate::metrics::Metric;

/// Configuration of `!LogStorage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogStorageConfig {
    /// File to write to; stderr when absent.
    #[serde(default)]
    pub output_filename: Option<PathBuf>,
    /// Replace the file's content on each store instead of appending to it (default
    /// `false`). The file is replaced atomically, so a reader such as node_exporter's
    /// textfile collector always sees one complete exposition. Needs `output_filename`.
    #[serde(default)]
    pub overwrite: bool,
}

/// Writes each iteration's metrics as Prometheus text to a file or stderr.
#[derive(Debug)]
pub struct LogStorage {
    target: Target,
    /// Samples dropped by the encoder since start, for a self-metric.
    dropped_total: u64,
    /// Drops in the previous store, to warn only when the situation changes instead of
    /// every iteration.
    last_dropped: usize,
}

#[derive(Debug)]
enum Target {
    Stderr,
    Append(PathBuf),
    /// The output file and the temporary file renamed over it.
    Overwrite {
        path: PathBuf,
        temp: PathBuf,
    },
}

impl LogStorage {
    /// Checks the configuration; touches no file yet, so a missing directory shows up as
    /// an error of the first store, naming the file.
    pub fn new(config: LogStorageConfig) -> Result<Self, StorageError> {
        let target = match (config.output_filename, config.overwrite) {
            (None, false) => Target::Stderr,
            (None, true) => return Err(StorageError::OverwriteWithoutFile),
            (Some(path), _) if path.file_name().is_none() => {
                return Err(StorageError::NotAFile { path });
            }
            (Some(path), false) => Target::Append(path),
            (Some(path), true) => {
                let temp = temp_path(&path);
                Target::Overwrite { path, temp }
            }
        };
        Ok(Self {
            target,
            dropped_total: 0,
            last_dropped: 0,
        })
    }

    /// Samples the encoder dropped (duplicates, invalid names, type conflicts) since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

impl Storage for LogStorage {
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        let encoded = prometheus::encode(metrics);
        let dropped = encoded.dropped();
        self.dropped_total += dropped as u64;
        if dropped != self.last_dropped && dropped > 0 {
            tracing::warn!(
                duplicates = encoded.duplicates,
                invalid = encoded.invalid,
                type_conflicts = encoded.type_conflicts,
                "LogStorage dropped samples it cannot write as Prometheus text."
            );
        } else if dropped > 0 {
            tracing::debug!(
                dropped,
                "LogStorage dropped the same number of samples as last time."
            );
        }
        self.last_dropped = dropped;

        match &self.target {
            Target::Stderr => io::stderr()
                .lock()
                .write_all(encoded.text.as_bytes())
                .map_err(|source| StorageError::Stderr { source }),
            Target::Append(path) => append(path, &encoded.text),
            Target::Overwrite { path, temp } => replace(path, temp, &encoded.text),
        }
    }
}

/// Appends `text` to `path`, opening it anew each time so that log rotation works.
fn append(path: &Path, text: &str) -> Result<(), StorageError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| StorageError::Open {
            path: path.to_owned(),
            source,
        })?;
    file.write_all(text.as_bytes())
        .map_err(|source| StorageError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Replaces `path` with `text` atomically: write a temporary file in the same directory
/// (rename is atomic only within one filesystem), then rename it over `path`. Readers see
/// the old or the new file, never a part. No fsync: the file is rewritten every
/// iteration, so after a power loss it is whole again one interval later, and syncing
/// megabytes each second would cost the node disk I/O for nothing.
fn replace(path: &Path, temp: &Path, text: &str) -> Result<(), StorageError> {
    let written = write_file(temp, text).map_err(|source| StorageError::Write {
        path: temp.to_owned(),
        source,
    });
    let renamed = written.and_then(|()| {
        fs::rename(temp, path).map_err(|source| StorageError::Rename {
            from: temp.to_owned(),
            to: path.to_owned(),
            source,
        })
    });
    if renamed.is_err() {
        // Best effort: the original error matters more than a failed cleanup.
        let _ = fs::remove_file(temp);
    }
    renamed
}

fn write_file(temp: &Path, text: &str) -> io::Result<()> {
    // Truncating is safe: the name holds our pid, so only a crashed earlier run with the
    // same pid can have left this file behind.
    File::create(temp)?.write_all(text.as_bytes())
}

/// `dir/.name.tmp.<pid>`: hidden and not ending in `.prom`, so the textfile collector
/// ignores it, and per process so that two agents cannot write the same temporary file.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
