//! `!CgroupNode`: every cgroup below a prefix that holds processes is a task.

use serde::Deserialize;

use super::{NodeError, Task};
use crate::cgroups::{Mounts, has_processes};

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
        let hierarchy = mounts.preferred(&self.controller).ok_or_else(|| {
            NodeError::NotMounted(format!(
                "neither a v1 {} hierarchy nor cgroup v2 is mounted",
                self.controller
            ))
        })?;
        let mut tasks = Vec::new();
        for path in mounts.cgroups_under(&hierarchy, &self.prefix)? {
            let rel = path.trim_start_matches('/');
            // The hierarchy root holds every process not placed elsewhere: not a task.
            if rel.is_empty() {
                continue;
            }
            let Some(dir) = mounts.dir(&hierarchy, &path) else {
                continue;
            };
            // A cgroup removed since the walk (None) is simply not a task any more.
            if has_processes(&dir)? != Some(true) {
                continue;
            }
            tasks.push(Task {
                task_id: rel.to_owned(),
                name: rel.to_owned(),
                cgroup_path: format!("/{rel}"),
                labels: Default::default(),
                resources: Default::default(),
            });
        }
        Ok(tasks)
    }
}
