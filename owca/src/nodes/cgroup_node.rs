//! `!CgroupNode`: every cgroup below a prefix that holds processes is a task.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{NodeError, Task};
use crate::cgroups::Mounts;

/// Discovers tasks from the cgroup tree itself, for hosts without an orchestrator and for
/// trying the agent out: each cgroup below `prefix` with processes in it is a task whose
/// `task_id` is its path (without the leading `/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupNode {
    /// Only cgroups below this path are tasks (`/` for all).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The v1 controller whose hierarchy is walked and counted in, when it is mounted as
    /// v1; otherwise the v2 hierarchy is used.
    #[serde(default = "default_controller")]
    pub controller: String,
}

fn default_prefix() -> String {
    "/".to_owned()
}

fn default_controller() -> String {
    "cpuacct".to_owned()
}

impl CgroupNode {
    /// The cgroups below the prefix that hold processes now.
    pub fn tasks(&self, mounts: &Mounts) -> Result<Vec<Task>, NodeError> {
        let root = mounts
            .v1(&self.controller)
            .or_else(|| mounts.v2())
            .ok_or_else(|| {
                NodeError::NotMounted(format!(
                    "neither a v1 {} hierarchy nor cgroup v2 is mounted",
                    self.controller
                ))
            })?;
        let start = root.join(self.prefix.trim_start_matches('/'));
        let mut found = Vec::new();
        walk(&start, &mut found).map_err(|source| NodeError::Cgroups {
            path: start.display().to_string(),
            source,
        })?;
        let mut tasks: Vec<Task> = found
            .into_iter()
            .filter_map(|dir| {
                let rel = dir.strip_prefix(root).ok()?.to_str()?.to_owned();
                // The hierarchy root is every process not placed elsewhere: not a task.
                (!rel.is_empty()).then(|| Task {
                    task_id: rel.clone(),
                    name: rel.clone(),
                    cgroup_path: format!("/{rel}"),
                    labels: Default::default(),
                    resources: Default::default(),
                })
            })
            .collect();
        tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        Ok(tasks)
    }
}

/// Collects `dir` and its descendants that have processes. A cgroup removed while walking
/// is simply not there.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(procs) if !procs.trim().is_empty() => found.push(dir.to_path_buf()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), found)?;
        }
    }
    Ok(())
}
