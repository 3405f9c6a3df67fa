//! [`Resctrl`]: the monitoring groups of the measured tasks, one per task, created,
//! kept in step with the task's threads, measured and removed.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fs, io,
    path::{Path, PathBuf},
};

use nix::unistd::AccessFlags;
use tracing::info;

use super::{
    GROUP_PREFIX, MON_DATA, MON_GROUPS, ResctrlError, TASKS,
    files::{exists, kernel_status, move_threads, remove_group},
    group_name,
    measurement::{ResctrlMeasurement, measure_mon_data},
};

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
    /// Finds resctrl mounted at `root` (normally [`DEFAULT_ROOT`](super::DEFAULT_ROOT)).
    /// `Ok(None)` when no resctrl is mounted there (no `info/` and `tasks`: the kernel
    /// keeps an empty `/sys/fs/resctrl` to mount on). An error when it is mounted without
    /// monitoring, when `mon_groups/` is not writable (the agent must run as root), or when
    /// `root` cannot be examined.
    pub fn detect(root: &Path) -> Result<Option<Self>, ResctrlError> {
        if !exists(&root.join("info"))? || !exists(&root.join(TASKS))? {
            return Ok(None);
        }
        let mon_groups = root.join(MON_GROUPS);
        if !exists(&mon_groups)? {
            return Err(ResctrlError::NoMonitoring {
                root: root.to_owned(),
            });
        }
        nix::unistd::access(&mon_groups, AccessFlags::W_OK).map_err(|e| ResctrlError::Access {
            path: mon_groups.clone(),
            source: io::Error::from(e),
        })?;
        Ok(Some(Self::at(root.to_owned())))
    }

    /// resctrl at `root`, taken as is (no checks; [`Self::detect`] made them).
    pub(super) fn at(root: PathBuf) -> Self {
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
        // One write per thread not yet in the group; see [`move_threads`].
        move_threads(&self.root, &dir, pids)
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
        let parents: BTreeSet<&str> = std::iter::once("")
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

    /// The kernel's reason for the last failed command; see [`kernel_status`].
    fn kernel_status(&self) -> String {
        kernel_status(&self.root)
    }
}

// The tests reach private state (`groups`), so they are this module's child.
#[cfg(test)]
#[path = "monitoring_tests.rs"]
mod tests;
