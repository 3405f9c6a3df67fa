//! `LogStorage`: Prometheus text to a file or stderr, as OWCA's `!LogStorage` did.
//!
//! The agent runs as root and may write into a directory others can write to: it never
//! follows a symbolic link at the output path when appending, and creates its temporary
//! file under an unpredictable name with `O_EXCL | O_NOFOLLOW`, so a link planted there
//! cannot make it write another file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher as _, RandomState};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::{Storage, StorageError, prometheus};
use crate::metrics::Metric;

/// Mode of the output and temporary files (less the umask): node_exporter's textfile
/// collector, which runs as its own user, must read them.
const FILE_MODE: u32 = 0o644;
/// Mode of a missing output directory the agent creates: the same as systemd gives a
/// `StateDirectory=`, so that a textfile collector running as another user can enter it.
const DIR_MODE: u32 = 0o755;
/// Names tried for the temporary file before giving up (each taken name is either a
/// leftover of a crash or planted).
const TEMP_ATTEMPTS: usize = 8;

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
    /// `every_sample` (default) or `info`: see [`prometheus::TaskLabels`].
    #[serde(default)]
    pub task_labels: prometheus::TaskLabels,
}

/// Writes each iteration's metrics as Prometheus text to a file or stderr.
#[derive(Debug)]
pub struct LogStorage {
    target: Target,
    encoder: prometheus::Encoder,
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
    /// The output file, replaced by renaming a temporary file over it.
    Overwrite(PathBuf),
}

impl LogStorage {
    /// Checks the configuration and creates the output file's directory (with its
    /// missing parents, mode 0755) when it is missing, so that a fresh node works at once;
    /// a directory that cannot be created is an error naming it. The file itself is
    /// written by the first store.
    pub fn new(config: LogStorageConfig) -> Result<Self, StorageError> {
        let target = match (config.output_filename, config.overwrite) {
            (None, false) => Target::Stderr,
            (None, true) => return Err(StorageError::OverwriteWithoutFile),
            (Some(path), _) if path.file_name().is_none() => {
                return Err(StorageError::NotAFile { path });
            }
            (Some(path), overwrite) => {
                create_parent(&path)?;
                if overwrite {
                    Target::Overwrite(path)
                } else {
                    Target::Append(path)
                }
            }
        };
        Ok(Self {
            target,
            encoder: prometheus::Encoder::new(config.task_labels),
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
    /// Writes the text as it is encoded, a chunk at a time: at thousands of tasks it is
    /// megabytes that need not sit whole in memory.
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        let encoder = &mut self.encoder;
        let encoded = match &self.target {
            Target::Stderr => encoder
                .encode_to(metrics, |t| io::stderr().lock().write_all(t.as_bytes()))
                .map_err(|source| StorageError::Stderr { source })?,
            Target::Append(path) => append(path, |file| {
                encoder.encode_to(metrics, |t| file.write_all(t.as_bytes()))
            })?,
            Target::Overwrite(path) => replace(path, |file| {
                encoder.encode_to(metrics, |t| file.write_all(t.as_bytes()))
            })?,
        };
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
        Ok(())
    }
}

/// Creates the directory of `path` when it is missing, logging it once.
fn create_parent(path: &Path) -> Result<(), StorageError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| StorageError::CreateDir {
            dir: dir.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    tracing::info!(dir = %dir.display(), "created the output directory of LogStorage");
    Ok(())
}

/// Appends what `write` writes to `path`, opening it anew each time so that log rotation
/// works. A symbolic link at `path` is refused, not followed.
fn append<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T, StorageError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                StorageError::Symlink {
                    path: path.to_owned(),
                }
            } else {
                StorageError::Open {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    write(&mut file).map_err(|source| StorageError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with what `write` writes, atomically: write a temporary file in the same directory
/// (rename is atomic only within one filesystem), then rename it over `path`. Readers see
/// the old or the new file, never a part; a symbolic link at `path` is replaced, not
/// followed. No fsync: the file is rewritten every iteration, so after a power loss it is
/// whole again one interval later, and syncing megabytes each second would cost the node
/// disk I/O for nothing.
fn replace<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T, StorageError> {
    let (mut file, temp) = create_temp(path, temp_names(path))?;
    let written = write(&mut file).map_err(|source| StorageError::Write {
        path: temp.clone(),
        source,
    });
    drop(file);
    let renamed = written.and_then(|value| {
        fs::rename(&temp, path)
            .map(|()| value)
            .map_err(|source| StorageError::Rename {
                from: temp.clone(),
                to: path.to_owned(),
                source,
            })
    });
    if renamed.is_err() {
        // Best effort: the original error matters more than a failed cleanup. The name is
        // ours: we created it with O_EXCL.
        let _ = fs::remove_file(&temp);
    }
    renamed
}

/// Creates a new temporary file for `path` under the first of `names` that is free, with
/// `O_EXCL | O_NOFOLLOW`: an existing file or a symbolic link there is never opened.
pub(super) fn create_temp(
    path: &Path,
    names: impl Iterator<Item = PathBuf>,
) -> Result<(File, PathBuf), StorageError> {
    let mut last = None;
    for temp in names.take(TEMP_ATTEMPTS) {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
        {
            Ok(file) => return Ok((file, temp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((temp, e)),
            Err(source) => return Err(StorageError::Write { path: temp, source }),
        }
    }
    let (temp, source) = last.unwrap_or_else(|| {
        let missing = io::Error::new(io::ErrorKind::InvalidInput, "no temporary file name");
        (path.to_owned(), missing)
    });
    Err(StorageError::Write { path: temp, source })
}

/// `dir/.name.tmp.<pid>.<random>`: hidden and not ending in `.prom`, so the textfile
/// collector ignores it; per process, and unpredictable so that nobody can plant a file
/// or link under the name in advance.
fn temp_names(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let pid = std::process::id();
    std::iter::repeat_with(move || {
        // std's RandomState is keyed from the OS's random source.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let random = RandomState::new().hash_one(n);
        path.with_file_name(format!(".{name}.tmp.{pid}.{random:016x}"))
    })
}
