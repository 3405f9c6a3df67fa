//! The stages every runner runs first: tasks → containers → measurements. Each stage's
//! result is handed to the next as a value; the runner owns what several stages use (the
//! mount table, the collector) and lends it.

use std::{path::PathBuf, sync::Arc, time::Instant};

use tracing::info;

use super::{RunnerError, shared_config::MeasuringConfig};
use crate::{
    cgroups::{Hierarchy, Mounts},
    collector::{Collector, CollectorConfig},
    containers::{Containers, ControlGroups, RdtMonitoring},
    measurements::{Measured, Measurements},
    metrics::{Labels, Metric, SelfMetrics},
    nodes::{NodeConfig, NodeError},
    platform::Platform,
    privileges::AfterLoad,
};

/// Components every runner counts in `owca_errors_total`.
pub const COMPONENTS: [&str; 6] = [
    "node",
    "collector",
    "cgroups",
    "resctrl",
    "platform",
    "storage",
];

/// The measuring half of every runner.
pub struct MeasuringStages {
    node: NodeConfig,
    mounts: Mounts,
    collector: Collector,
    containers: Containers,
    measurements: Measurements,
    host: String,
    /// Iterations in a row in which the node failed to list tasks.
    failed_listings: u32,
    /// Errors and times of every stage, the runner's own included.
    pub stats: SelfMetrics,
}

impl MeasuringStages {
    /// Checks the machine, loads the collector and then does `after_load` (drops
    /// capabilities, for the binary); errors are counted under `components`.
    pub fn start(
        cfg: MeasuringConfig,
        components: &'static [&'static str],
        after_load: AfterLoad,
    ) -> Result<Self, RunnerError> {
        let mounts = Mounts::discover().map_err(RunnerError::Mounts)?;
        let controller = cfg.node.v1_controller();
        let (hierarchy, hierarchy_root) = hierarchy(&mounts, controller)?;
        let collector = Collector::start(&CollectorConfig {
            max_cgroups: cfg.max_cgroups,
            events: cfg.event_names.clone(),
            v1_controller: controller.to_owned(),
        })?;
        let platform = Platform::collect().map_err(RunnerError::Platform)?;
        let mut common_labels = platform.common_labels();
        // extra_labels win over the platform's.
        common_labels.extend(cfg.extra_labels);
        let common_labels = Arc::new(common_labels);
        info!(hierarchy = %hierarchy_root.display(), "tasks are counted in this cgroup hierarchy");
        let monitoring = RdtMonitoring::start(cfg.rdt_enabled, &cfg.resctrl_root);
        after_load.apply()?;
        Ok(Self {
            node: cfg.node,
            mounts,
            collector,
            containers: Containers::new(
                hierarchy,
                hierarchy_root,
                Arc::clone(&common_labels),
                monitoring,
            ),
            host: platform.host.clone(),
            failed_listings: 0,
            measurements: Measurements::new(platform, common_labels, cfg.enable_derived_metrics),
            stats: SelfMetrics::new(components),
        })
    }

    /// The node's host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where the cgroup hierarchies are mounted.
    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// The labels every sample carries (node's and `extra_labels`).
    pub fn common_labels(&self) -> &Arc<Labels> {
        self.containers.common_labels()
    }

    /// Starts an iteration: asks the node for tasks, reconciles the containers (their RDT
    /// monitoring groups under `control_groups`) and measures them.
    pub async fn measure(&mut self, control_groups: &ControlGroups) -> Measured {
        self.stats.start_iteration();
        let t = Instant::now();
        let tasks = match self.node.tasks(&self.mounts).await {
            Ok(tasks) => {
                self.failed_listings = 0;
                Some(tasks)
            }
            Err(e) => {
                self.stats.record("node", "tasks", &e);
                self.failed_listings = self.failed_listings.saturating_add(1);
                self.expire_task_list()
            }
        };
        for problem in self.node.take_problems() {
            self.stats.record("node", problem.task_id(), &problem);
        }
        self.stats.timed("node", t);
        let containers = self.containers.update(
            tasks,
            control_groups,
            &mut self.collector,
            &self.mounts,
            &mut self.stats,
        );
        self.measurements
            .measure(&containers, &self.collector, &self.mounts, &mut self.stats)
    }

    /// What the containers get when the node failed: `None` (the last list stays) until
    /// the node has failed more iterations in a row than its `task_list_ttl_iterations`,
    /// then no tasks; the expiry is counted once.
    fn expire_task_list(&mut self) -> Option<Arc<Vec<crate::nodes::Task>>> {
        let ttl = self.node.task_list_ttl_iterations()?;
        if self.failed_listings <= ttl {
            return None;
        }
        if self.failed_listings == ttl + 1 {
            let expired = NodeError::TaskListExpired {
                failed: self.failed_listings,
                ttl,
            };
            self.stats.record("node", "task list", &expired);
        }
        Some(Arc::default())
    }

    /// The agent's own metrics for this iteration (`owca_*`), with common labels.
    pub fn self_metrics(&self, measured: &Measured) -> Vec<Metric> {
        self.stats
            .metrics(measured.tasks.len(), self.common_labels())
    }

    /// Ends the iteration: clears errors not seen in it.
    pub fn end_iteration(&mut self) {
        self.stats.end_iteration();
    }
}

/// The hierarchy tasks are counted in: `controller`'s v1 hierarchy, else v2.
fn hierarchy(mounts: &Mounts, controller: &str) -> Result<(Hierarchy, PathBuf), RunnerError> {
    match (mounts.v1(controller), mounts.v2()) {
        (Some(p), _) => Ok((Hierarchy::v1(controller), p.to_path_buf())),
        (None, Some(p)) => Ok((Hierarchy::V2, p.to_path_buf())),
        (None, None) => Err(RunnerError::NoHierarchy {
            controller: controller.to_owned(),
        }),
    }
}
