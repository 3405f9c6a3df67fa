//! RDT monitoring through resctrl: one monitoring group per task, read each iteration for
//! OWCA's `memory_bandwidth` and `llc_occupancy`.
//!
//! The files used (kernel docs, `Documentation/filesystems/resctrl.rst`):
//! ```text
//! <root>/info/                       present whenever resctrl is mounted
//! <root>/info/last_cmd_status        the kernel's reason for the last failed command
//! <root>/tasks                       threads of the default group
//! <root>/mon_groups/                 present only when the CPU can monitor (CQM/MBM)
//!   owca-<task>/                     one per task, made by OWCA with mkdir; the kernel
//!                                    fills it with `tasks`, `mon_data/`, ...
//!     tasks                          one thread id per write() moves that thread in
//!     mon_data/mon_L3_<NN>/          one per L3 cache domain (socket, or SNC group)
//!       llc_occupancy                bytes of L3 the group holds now
//!       mbm_total_bytes              bytes moved to and from memory since the group's creation
//! ```
//! A monitoring group must be under the control group holding the task's threads (the
//! kernel answers EINVAL otherwise): under the root group, or `<root>/<control group>/
//! mon_groups/` once an allocation moved the task (see [`Resctrl::set_control_group`];
//! allocation itself is in [`control`]).
//!
//! The root is `/sys/fs/resctrl` unless `OWCA_RESCTRL_ROOT` names another directory.
//! Tests run against a resctrl-shaped temp tree only: the development machines have no
//! RDT, so nothing here has been exercised on a real resctrl mount in tests.

pub mod control;
#[cfg(test)]
mod control_tests;
mod error;
mod name;
pub mod schemata;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashSet},
    ffi::OsString,
    fs::{self, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use nix::unistd::AccessFlags;
use tracing::info;

pub use self::{
    control::{InvalidRdt, RdtAllocation, RdtCapabilities, RdtControl},
    error::ResctrlError,
    name::{GROUP_PREFIX, group_name},
};

/// Where resctrl is normally mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/resctrl";
/// Environment variable naming another mount root (e.g. a test tree); empty means unset.
pub const ROOT_ENV: &str = "OWCA_RESCTRL_ROOT";

const MON_GROUPS: &str = "mon_groups";
const MON_DATA: &str = "mon_data";
const TASKS: &str = "tasks";
const L3_DOMAIN_PREFIX: &str = "mon_L3_";
const MBM_TOTAL: &str = "mbm_total_bytes";
const LLC: &str = "llc_occupancy";
/// What the kernel prints instead of a number when it has none: "Unavailable" (no valid
/// reading, e.g. the RMID is not counted in that domain), "Error" (the hardware read
/// failed), "Unassigned" (no counter assigned, newer kernels' mbm_assign_mode).
const NO_VALUE: [&str; 3] = ["Unavailable", "Error", "Unassigned"];

/// One task's resctrl readings, each summed over all L3 domains. `None` when any domain
/// lacks the file (the feature is absent) or has no value: a partial sum would make the
/// `memory_bandwidth` counter look reset and understate `llc_occupancy`, so no sample is
/// better than a wrong one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResctrlMeasurement {
    pub memory_bandwidth_bytes: Option<u64>,
    pub llc_occupancy_bytes: Option<u64>,
}

/// The resctrl mount and the monitoring groups this agent made, keyed by task id.
///
/// Calls per iteration: [`add_task`](Self::add_task) for a new task,
/// [`refresh_pids`](Self::refresh_pids) for a known one, [`measure`](Self::measure),
/// [`remove_task`](Self::remove_task) once a task is gone, and now and then (at least once
/// after start) [`cleanup_stale`](Self::cleanup_stale).
#[derive(Debug)]
pub struct Resctrl {
    root: PathBuf,
    /// Task id → group directory name, for tasks added and not yet removed.
    groups: BTreeMap<String, String>,
    /// Task id → the control group its threads are in, when not the root group: its
    /// monitoring group must be under that group's `mon_groups/` (the kernel refuses a
    /// thread in a monitoring group of another control group).
    parents: BTreeMap<String, String>,
}

impl Resctrl {
    /// Finds resctrl mounted at `root`; see [`Self::detect_at`].
    pub fn detect(root: &Path) -> Result<Option<Self>, ResctrlError> {
        Self::detect_at(root.to_owned())
    }

    /// `Ok(None)` when no resctrl is mounted at `root` (no `info/` and `tasks` there: the
    /// kernel keeps an empty `/sys/fs/resctrl` to mount on). An error when it is mounted
    /// without monitoring, when `mon_groups/` is not writable (the agent must run as root),
    /// or when `root` cannot be examined.
    pub fn detect_at(root: PathBuf) -> Result<Option<Self>, ResctrlError> {
        if !exists(&root.join("info"))? || !exists(&root.join(TASKS))? {
            return Ok(None);
        }
        let mon_groups = root.join(MON_GROUPS);
        if !exists(&mon_groups)? {
            return Err(ResctrlError::NoMonitoring { root });
        }
        nix::unistd::access(&mon_groups, AccessFlags::W_OK).map_err(|e| ResctrlError::Access {
            path: mon_groups.clone(),
            source: io::Error::from(e),
        })?;
        Ok(Some(Self::at(root)))
    }

    /// resctrl at `root`, taken as is (no checks); for tests and callers that checked.
    pub fn at(root: PathBuf) -> Self {
        Self {
            root,
            groups: BTreeMap::new(),
            parents: BTreeMap::new(),
        }
    }

    /// The mount root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the task has a monitoring group (added and not removed).
    pub fn has_task(&self, task_id: &str) -> bool {
        self.groups.contains_key(task_id)
    }

    /// Creates the task's group `mon_groups/<group_name(task_id)>` (an existing one, e.g.
    /// left by a previous run of the agent, is taken over) and moves the threads in.
    ///
    /// `pids` are thread ids: resctrl moves single threads, and only threads created
    /// later inherit their parent's group, so pass every thread of the task (cgroup v1
    /// `tasks`, v2 `cgroup.threads`). Threads already in the group are not written again;
    /// threads that exited meanwhile (ESRCH) are skipped. A thread that cannot be moved
    /// does not stop the others: the first such failure is returned after all were tried.
    /// Calling it again for a known task is [`Self::refresh_pids`].
    pub fn add_task(&mut self, task_id: &str, pids: &[u32]) -> Result<(), ResctrlError> {
        let name = match self.groups.get(task_id) {
            Some(name) => name.clone(),
            None => {
                let name = group_name(task_id);
                if let Some((other, _)) = self.groups.iter().find(|(_, n)| **n == name) {
                    return Err(ResctrlError::NameCollision {
                        task_id: task_id.to_owned(),
                        other: other.clone(),
                        name,
                    });
                }
                name
            }
        };
        let dir = self.group_dir(task_id, &name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                info!(task_id, group = %dir.display(), "created the resctrl monitoring group")
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                return Err(ResctrlError::NoRmids {
                    path: dir,
                    detail: self.kernel_status(),
                });
            }
            Err(source) => {
                return Err(ResctrlError::CreateGroup {
                    path: dir,
                    source,
                    detail: self.kernel_status(),
                });
            }
        }
        self.groups.insert(task_id.to_owned(), name);
        self.move_pids(&dir, pids)
    }

    /// Moves the task's current threads into its group (recreating the group if it
    /// vanished, e.g. after a remount), as [`Self::add_task`] does; for a task not added,
    /// [`ResctrlError::UnknownTask`]. Costs one read of the group's `tasks` plus one
    /// write per thread not yet in it.
    pub fn refresh_pids(&mut self, task_id: &str, pids: &[u32]) -> Result<(), ResctrlError> {
        if !self.groups.contains_key(task_id) {
            return Err(ResctrlError::UnknownTask {
                task_id: task_id.to_owned(),
            });
        }
        self.add_task(task_id, pids)
    }

    /// Removes the task's group (its threads fall back to the default group) and forgets
    /// the task, even when rmdir fails: [`Self::cleanup_stale`] retries the directory
    /// later. Removing an unknown task or a group already gone is not an error.
    pub fn remove_task(&mut self, task_id: &str) -> Result<(), ResctrlError> {
        let dir = self.groups.get(task_id).map(|n| self.group_dir(task_id, n));
        self.groups.remove(task_id);
        self.parents.remove(task_id);
        dir.map_or(Ok(()), |d| remove_group(&d))
    }

    /// Records that an allocation put the task's threads in control group `group` (`""`
    /// = root): its monitoring group moves there on the next [`Self::add_task`] /
    /// [`Self::refresh_pids`]. The old one, emptied by the move, is removed now.
    pub fn set_control_group(&mut self, task_id: &str, group: &str) -> Result<(), ResctrlError> {
        let old = self.parents.get(task_id).map_or("", String::as_str);
        if old == group {
            return Ok(());
        }
        let old_dir = self.groups.get(task_id).map(|n| self.group_dir(task_id, n));
        if group.is_empty() {
            self.parents.remove(task_id);
        } else {
            self.parents.insert(task_id.to_owned(), group.to_owned());
        }
        old_dir.map_or(Ok(()), |d| remove_group(&d))
    }

    /// Forgets tasks not in `live_ids` and removes every group named with
    /// [`GROUP_PREFIX`] that belongs to no live task: groups of tasks that ended while the
    /// agent was down, or whose removal failed. Groups without the prefix belong to others
    /// and are never touched. Returns the failures; one does not stop the rest.
    pub fn cleanup_stale<'a>(
        &mut self,
        live_ids: impl IntoIterator<Item = &'a str>,
    ) -> Vec<ResctrlError> {
        let live: HashSet<&str> = live_ids.into_iter().collect();
        self.groups.retain(|id, _| live.contains(id.as_str()));
        self.parents.retain(|id, _| live.contains(id.as_str()));
        // A task's group counts as its own only under its current control group.
        let keep: HashSet<PathBuf> = live
            .iter()
            .map(|id| {
                let name = self
                    .groups
                    .get(*id)
                    .cloned()
                    .unwrap_or_else(|| group_name(id));
                self.group_dir(id, &name)
            })
            .collect();
        let parents: std::collections::BTreeSet<&str> = std::iter::once("")
            .chain(self.parents.values().map(String::as_str))
            .collect();
        let mut errors = Vec::new();
        for parent in parents {
            let dir = self.root.join(parent).join(MON_GROUPS);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if !parent.is_empty() && e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    errors.push(ResctrlError::Read { path: dir, source });
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(source) => {
                        errors.push(ResctrlError::Read {
                            path: dir.clone(),
                            source,
                        });
                        continue;
                    }
                };
                let file_name = entry.file_name();
                // OWCA's names are ASCII; anything else is someone else's.
                let Some(name) = file_name.to_str() else {
                    continue;
                };
                if !name.starts_with(GROUP_PREFIX) || keep.contains(&entry.path()) {
                    continue;
                }
                match remove_group(&entry.path()) {
                    Ok(()) => info!(group = name, "removed a stale resctrl monitoring group"),
                    Err(e) => errors.push(e),
                }
            }
        }
        errors
    }

    /// The task's readings, summed over L3 domains (see [`ResctrlMeasurement`] for when a
    /// value is `None`). A group without `mon_data/` gives two `None`s.
    pub fn measure(&self, task_id: &str) -> Result<ResctrlMeasurement, ResctrlError> {
        let name = self
            .groups
            .get(task_id)
            .ok_or_else(|| ResctrlError::UnknownTask {
                task_id: task_id.to_owned(),
            })?;
        measure_mon_data(&self.group_dir(task_id, name).join(MON_DATA))
    }

    /// The `mon_data` directory of the task's group, when the task has one.
    pub fn mon_data(&self, task_id: &str) -> Option<PathBuf> {
        let name = self.groups.get(task_id)?;
        Some(self.group_dir(task_id, name).join(MON_DATA))
    }

    /// `<root>/[<control group>/]mon_groups/<name>`.
    fn group_dir(&self, task_id: &str, name: &str) -> PathBuf {
        let parent = self.parents.get(task_id).map_or("", String::as_str);
        self.root.join(parent).join(MON_GROUPS).join(name)
    }

    /// Writes each thread id not yet in the group's `tasks`, one per write as the kernel
    /// requires. The file is opened without `create`: production never creates files in
    /// resctrl (the kernel refuses), and a test tree must provide it.
    fn move_pids(&self, dir: &Path, pids: &[u32]) -> Result<(), ResctrlError> {
        move_threads(&self.root, dir, pids)
    }

    fn kernel_status(&self) -> String {
        kernel_status(&self.root)
    }
}

/// Writes each thread id not yet in the group's `tasks`, one per write as the kernel
/// requires. The file is opened without `create`: production never creates files in
/// resctrl (the kernel refuses), and a test tree must provide it. Threads that exited
/// (ESRCH) are skipped; the first other failure is returned after all were tried.
fn move_threads(root: &Path, dir: &Path, pids: &[u32]) -> Result<(), ResctrlError> {
    if pids.is_empty() {
        return Ok(());
    }
    let path = dir.join(TASKS);
    let present = read_pids(&path)?;
    let mut file = None;
    let mut first_error = None;
    for &pid in pids.iter().filter(|p| !present.contains(p)) {
        let f =
            match &mut file {
                Some(f) => f,
                None => file.insert(OpenOptions::new().append(true).open(&path).map_err(
                    |source| ResctrlError::Read {
                        path: path.clone(),
                        source,
                    },
                )?),
            };
        match f.write_all(format!("{pid}\n").as_bytes()) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => {}
            Err(source) => {
                first_error.get_or_insert_with(|| ResctrlError::MovePid {
                    path: path.clone(),
                    pid,
                    source,
                    detail: kernel_status(root),
                });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `"; kernel says: <reason>"` from `info/last_cmd_status`, or `""` when it says `ok`
/// or cannot be read. The file is global, so a concurrent command may have replaced it.
fn kernel_status(root: &Path) -> String {
    match fs::read_to_string(root.join("info/last_cmd_status")) {
        Ok(s) if !s.trim().is_empty() && s.trim() != "ok" => {
            format!("; kernel says: {}", s.trim())
        }
        _ => String::new(),
    }
}

/// The root named by the environment variable's value, or [`DEFAULT_ROOT`] when it is
/// unset or empty. Takes the value so tests need not change the process environment.
pub fn root_from(env_value: Option<OsString>) -> PathBuf {
    match env_value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

/// A thread that exited before it could be moved: the kernel answers ESRCH.
fn is_gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

fn exists(path: &Path) -> Result<bool, ResctrlError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ResctrlError::Access {
            path: path.to_owned(),
            source,
        }),
    }
}

/// rmdir, which on resctrl removes the group with its kernel-made files; a group already
/// gone counts as removed.
fn remove_group(dir: &Path) -> Result<(), ResctrlError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ResctrlError::RemoveGroup {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Thread ids listed in a `tasks` file, one per line.
fn read_pids(path: &Path) -> Result<HashSet<u32>, ResctrlError> {
    let text = fs::read_to_string(path).map_err(|source| ResctrlError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Sums both readings over the `mon_L3_*` directories of a group's `mon_data`.
pub fn measure_mon_data(mon_data: &Path) -> Result<ResctrlMeasurement, ResctrlError> {
    let entries = match fs::read_dir(mon_data) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ResctrlMeasurement::default()),
        Err(source) => {
            return Err(ResctrlError::Read {
                path: mon_data.to_owned(),
                source,
            });
        }
    };
    let mut bandwidth = Sum::NoDomain;
    let mut occupancy = Sum::NoDomain;
    for entry in entries {
        let entry = entry.map_err(|source| ResctrlError::Read {
            path: mon_data.to_owned(),
            source,
        })?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(L3_DOMAIN_PREFIX)
        {
            continue;
        }
        let domain = entry.path();
        bandwidth.add(read_value(&domain.join(MBM_TOTAL))?);
        occupancy.add(read_value(&domain.join(LLC))?);
    }
    Ok(ResctrlMeasurement {
        memory_bandwidth_bytes: bandwidth.total(),
        llc_occupancy_bytes: occupancy.total(),
    })
}

/// A sum over domains that is void as soon as one domain has no value.
#[derive(Debug, Clone, Copy)]
enum Sum {
    NoDomain,
    Total(u64),
    Missing,
}

impl Sum {
    fn add(&mut self, value: Option<u64>) {
        *self = match (*self, value) {
            (Self::Missing, _) | (_, None) => Self::Missing,
            (Self::NoDomain, Some(v)) => Self::Total(v),
            (Self::Total(t), Some(v)) => Self::Total(t.saturating_add(v)),
        };
    }

    fn total(self) -> Option<u64> {
        match self {
            Self::Total(t) => Some(t),
            Self::NoDomain | Self::Missing => None,
        }
    }
}

/// A monitoring file's number; `None` when the file is absent or says [`NO_VALUE`].
fn read_value(path: &Path) -> Result<Option<u64>, ResctrlError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ResctrlError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let value = text.trim();
    if NO_VALUE.contains(&value) {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| ResctrlError::Parse {
        path: path.to_owned(),
        value: value.to_owned(),
    })
}
