//! RDT monitoring groups of the containers: one resctrl mon group per task, kept in step
//! with the task's threads and under the control group its threads are in.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::ControlGroups;
use crate::{
    cgroups::{Cgroup, Mounts},
    metrics::SelfMetrics,
    nodes::Task,
    resctrl::Resctrl,
};

/// Resctrl monitoring of the measured tasks.
pub struct RdtMonitoring {
    resctrl: Resctrl,
}

impl RdtMonitoring {
    /// Monitoring when `rdt_enabled` allows it and resctrl is mounted at `root`. Unset
    /// means "where available"; `true` on a host without resctrl is reported, not fatal,
    /// since the other metrics are still worth having.
    pub fn start(enabled: Option<bool>, root: &Path) -> Option<Self> {
        if enabled == Some(false) {
            return None;
        }
        match Resctrl::detect(root) {
            Ok(Some(resctrl)) => {
                info!(root = %resctrl.root().display(), "RDT monitoring through resctrl");
                Some(Self { resctrl })
            }
            Ok(None) if enabled == Some(true) => {
                warn!(
                    root = %root.display(),
                    "rdt_enabled: resctrl is not mounted there: memory_bandwidth and llc_occupancy are not exported"
                );
                None
            }
            Ok(None) => {
                info!("resctrl is not mounted: no RDT metrics");
                None
            }
            Err(e) => {
                warn!("RDT monitoring unavailable: {e}");
                None
            }
        }
    }

    /// Creates, refreshes and removes mon groups so they match `tasks`.
    pub fn sync(&mut self, mounts: &Mounts, tasks: &[&Task], stats: &mut SelfMetrics) {
        for err in self
            .resctrl
            .cleanup_stale(tasks.iter().map(|t| t.task_id.as_str()))
        {
            stats.record("resctrl", "cleanup", &err);
        }
        for task in tasks {
            let id = &task.task_id;
            // resctrl moves threads, not processes: every thread of the task's cgroup.
            let threads = match Cgroup::new(mounts, &task.cgroup_path).thread_ids("cpuacct") {
                Ok(t) => t,
                Err(e) => {
                    stats.record("cgroups", id, &e);
                    continue;
                }
            };
            let synced = if self.resctrl.has_task(id) {
                self.resctrl.refresh_pids(id, &threads)
            } else {
                self.resctrl.add_task(id, &threads)
            };
            if let Err(e) = synced {
                stats.record("resctrl", id, &e);
            }
        }
    }

    /// Moves tasks' monitoring groups under the control groups allocations put them in.
    pub fn follow_control_groups(&mut self, groups: &ControlGroups, stats: &mut SelfMetrics) {
        for (task_id, group) in groups {
            if let Err(e) = self.resctrl.set_control_group(task_id, group) {
                stats.record("resctrl", task_id, &e);
            }
        }
    }

    /// The `mon_data` directory of a task's monitoring group.
    pub fn mon_data(&self, task_id: &str) -> Option<PathBuf> {
        self.resctrl.mon_data(task_id)
    }
}
