//! cgroups: where hierarchies are mounted, which cgroup a process is in, and what the
//! kernel accounts for a cgroup, on v1 and v2.

mod mounts;
mod proc;
mod read;
pub mod testing;

use std::path::PathBuf;

use thiserror::Error;

pub use self::{
    mounts::Mounts,
    proc::{ProcCgroups, parse_proc_cgroup, proc_cgroup},
    read::Cgroup,
};

/// Failures reading cgroup or /proc files; each names the file.
#[derive(Debug, Error)]
pub enum CgroupError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file's content is not what the kernel writes there.
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
}
