//! RDT monitoring for the runner: one resctrl mon group per task, kept in step with the
//! task's threads, measured every iteration.

use std::{ffi::OsString, path::PathBuf};

use tracing::{info, warn};

use super::ErrorCounter;
use crate::{
    cgroups::{Cgroup, Mounts},
    metrics::Metric,
    nodes::Task,
    resctrl::{self, Resctrl},
};

/// The resctrl root, for monitoring and allocation alike: `$OWCA_RESCTRL_ROOT`
/// ([`resctrl::ROOT_ENV`]) when set and not empty, else [`resctrl::DEFAULT_ROOT`]. Here
/// until the binary reads the variable once and the root comes from configuration.
pub(super) fn root_from_env() -> PathBuf {
    root_from(std::env::var_os(resctrl::ROOT_ENV))
}

/// [`root_from_env`] for a given value of the variable, so tests need not change the
/// process environment.
fn root_from(env_value: Option<OsString>) -> PathBuf {
    match env_value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(resctrl::DEFAULT_ROOT),
    }
}

/// Resctrl monitoring of the measured tasks.
pub struct Rdt {
    resctrl: Resctrl,
}

impl Rdt {
    /// Monitoring when `rdt_enabled` allows it and resctrl is there. Unset means "where
    /// available"; `true` on a host without resctrl is reported, not fatal, since the
    /// other metrics are still worth having.
    pub fn start(enabled: Option<bool>) -> Option<Self> {
        if enabled == Some(false) {
            return None;
        }
        match Resctrl::detect(&root_from_env()) {
            Ok(Some(resctrl)) => {
                info!(root = %resctrl.root().display(), "RDT monitoring through resctrl");
                Some(Self { resctrl })
            }
            Ok(None) if enabled == Some(true) => {
                warn!(
                    "rdt_enabled: resctrl is not mounted (or OWCA_RESCTRL_ROOT is wrong): memory_bandwidth and llc_occupancy are not exported"
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
    pub fn sync(&mut self, mounts: &Mounts, tasks: &[&Task], errors: &mut ErrorCounter) {
        for err in self
            .resctrl
            .cleanup_stale(tasks.iter().map(|t| t.task_id.as_str()))
        {
            errors.record("resctrl", "cleanup", &err);
        }
        for task in tasks {
            let id = &task.task_id;
            // resctrl moves threads, not processes: every thread of the task's cgroup.
            let threads = match Cgroup::new(mounts, &task.cgroup_path).thread_ids("cpuacct") {
                Ok(t) => t,
                Err(e) => {
                    errors.record("cgroups", id, &e);
                    continue;
                }
            };
            let synced = if self.resctrl.has_task(id) {
                self.resctrl.refresh_pids(id, &threads)
            } else {
                self.resctrl.add_task(id, &threads)
            };
            if let Err(e) = synced {
                errors.record("resctrl", id, &e);
            }
        }
    }

    /// Moves tasks' monitoring groups under the control groups allocations put them in
    /// (task id → control group, `""` = root).
    pub fn follow_control_groups<'a>(
        &mut self,
        groups: impl IntoIterator<Item = (&'a str, &'a str)>,
        errors: &mut ErrorCounter,
    ) {
        for (task_id, group) in groups {
            if let Err(e) = self.resctrl.set_control_group(task_id, group) {
                errors.record("resctrl", task_id, &e);
            }
        }
    }

    /// `memory_bandwidth` and `llc_occupancy` of a task.
    pub fn metrics(&self, task_id: &str, errors: &mut ErrorCounter) -> Vec<Metric> {
        match self.resctrl.measure(task_id) {
            Ok(m) => m.metrics(),
            Err(e) => {
                errors.record("resctrl", task_id, &e);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn root_comes_from_the_environment_value() {
        assert_eq!(root_from(None), Path::new(resctrl::DEFAULT_ROOT));
        assert_eq!(root_from(Some("".into())), Path::new(resctrl::DEFAULT_ROOT));
        assert_eq!(root_from(Some("/tmp/fake".into())), Path::new("/tmp/fake"));
    }
}
