//! cgroups: where hierarchies are mounted, which cgroup a process is in, and what the
//! kernel accounts for a cgroup, on v1 and v2.
//!
//! A cgroup is named by its path as `/proc/<pid>/cgroup` gives it (`/mesos/abc`); the
//! directory holding it depends on the hierarchy, found with [`Mounts::dir`]. Reads take
//! the v1 hierarchy of the controller concerned when that controller is mounted as v1, and
//! fall back to v2 otherwise (see [`Mounts::preferred`]). Writes (cpu quota and shares,
//! cpuset) go to the same hierarchies.

pub mod cpu_list;
mod mounts;
mod proc;
mod read;
mod tree;
mod write;

use std::{fmt, path::PathBuf};

use thiserror::Error;

pub use self::{
    mounts::{Mount, Mounts},
    proc::{ProcCgroups, parse_proc_cgroup, proc_cgroup},
    read::Cgroup,
    tree::has_processes,
    write::{CpuLimits, shares_to_weight, weight_to_shares},
};

/// One cgroup hierarchy: a v1 hierarchy, named by a controller attached to it (co-mounted
/// controllers such as `cpu,cpuacct` share one), or the unified v2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hierarchy {
    /// The v1 hierarchy that `controller` (e.g. `cpuacct`) is attached to.
    V1 {
        /// A controller attached to the hierarchy.
        controller: String,
    },
    /// The cgroup v2 hierarchy.
    V2,
}

impl Hierarchy {
    /// The v1 hierarchy of `controller`.
    pub fn v1(controller: impl Into<String>) -> Self {
        Self::V1 {
            controller: controller.into(),
        }
    }
}

impl fmt::Display for Hierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V1 { controller } => write!(f, "v1 {controller}"),
            Self::V2 => f.write_str("v2"),
        }
    }
}

/// Failures reading or changing cgroup and /proc files; each names the file or hierarchy.
#[derive(Debug, Error)]
pub enum CgroupError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A cgroup directory could not be created.
    #[error("creating cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is not what the kernel writes there.
    #[error("unexpected content in {path}: {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending content, shortened.
        content: String,
    },
    /// The hierarchy needed is not in the mount table.
    #[error("no {hierarchy} cgroup hierarchy is mounted (per /proc/self/mountinfo)")]
    NotMounted {
        /// The hierarchy that was looked for.
        hierarchy: Hierarchy,
    },
}
