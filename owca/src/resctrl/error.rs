//! What can go wrong with resctrl; every variant names the file, group or task concerned.

use std::{io, path::PathBuf};

use thiserror::Error;

/// Failures detecting, changing or reading resctrl. `detail` holds the kernel's own
/// explanation from `info/last_cmd_status` when it gave one (else it is empty).
#[derive(Debug, Error)]
pub enum ResctrlError {
    /// The mount root or one of its entries could not be examined (e.g. permissions).
    #[error("cannot access {path}: {source}")]
    Access { path: PathBuf, source: io::Error },
    /// resctrl is mounted but the CPU or kernel offers no monitoring (no `mon_groups/`).
    #[error(
        "resctrl at {root} has no monitoring (no mon_groups directory): the CPU lacks CQM/MBM or the kernel disabled it"
    )]
    NoMonitoring { root: PathBuf },
    /// The kernel has no free RMID for another monitoring group (mkdir gave ENOSPC).
    #[error("cannot create monitoring group {path}: no free RMID left{detail}")]
    NoRmids { path: PathBuf, detail: String },
    /// Creating a monitoring group failed otherwise.
    #[error("cannot create monitoring group {path}: {source}{detail}")]
    CreateGroup {
        path: PathBuf,
        source: io::Error,
        detail: String,
    },
    /// Moving a thread into a group failed for a reason other than the thread being gone.
    #[error("cannot move thread {pid} into {path}: {source}{detail}")]
    MovePid {
        path: PathBuf,
        pid: u32,
        source: io::Error,
        detail: String,
    },
    /// Removing a monitoring group failed.
    #[error("cannot remove monitoring group {path}: {source}")]
    RemoveGroup { path: PathBuf, source: io::Error },
    /// Reading a file or listing a directory failed.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A monitoring file held neither a number nor one of the kernel's "no value" words.
    #[error("unexpected value {value:?} in {path}")]
    Parse { path: PathBuf, value: String },
    /// The task was never added (or was removed), so it has no monitoring group.
    #[error("task {task_id} has no resctrl monitoring group")]
    UnknownTask { task_id: String },
    /// Two live task ids map to the same group name (only possible for ids longer than a
    /// directory name allows, whose names end in a hash; see [`super::group_name`]).
    #[error("tasks {task_id} and {other} both map to monitoring group {name}")]
    NameCollision {
        task_id: String,
        other: String,
        name: String,
    },
    /// RDT allocation asked for where no resctrl is mounted.
    #[error(
        "resctrl is not mounted at {root} (no info/ directory): mount it (`mount -t resctrl resctrl /sys/fs/resctrl`) or set the runner's resctrl_root (or OWCA_RESCTRL_ROOT) to where it is"
    )]
    NotMounted { root: PathBuf },
    /// resctrl is mounted but offers neither L3 cache nor memory bandwidth allocation.
    #[error("resctrl at {root} offers no allocation (neither info/L3 nor info/MB)")]
    NoAllocation { root: PathBuf },
    /// The kernel has no free CLOSID for another control group (mkdir gave ENOSPC).
    #[error("cannot create control group {path}: no free CLOSID left{detail}")]
    NoClosids { path: PathBuf, detail: String },
    /// Creating a control group failed otherwise.
    #[error("cannot create control group {path}: {source}{detail}")]
    CreateControlGroup {
        path: PathBuf,
        source: io::Error,
        detail: String,
    },
    /// An allocation names a control group that exists and that the agent did not make.
    #[error(
        "control group {path} was not made by the agent: its schemata and tasks are left alone"
    )]
    ForeignControlGroup { path: PathBuf },
    /// The kernel refused a schemata line.
    #[error("cannot write {line:?} to {path}: {source}{detail}")]
    WriteSchemata {
        path: PathBuf,
        line: String,
        source: io::Error,
        detail: String,
    },
}
