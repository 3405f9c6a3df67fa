//! Nodes: where the tasks to measure come from. One closed enum, selected by the YAML tag.

mod cgroup_node;
mod static_node;

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

pub use self::{cgroup_node::CgroupNode, static_node::StaticNode};
use crate::{cgroups::Mounts, metrics::Labels};

/// One task running on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Identifies the task in metrics (`task_id` label).
    pub task_id: String,
    /// Human-readable name.
    pub name: String,
    /// The task's cgroup below each hierarchy root, e.g. `/mesos/<container-id>`.
    pub cgroup_path: String,
    /// Labels added to the task's metrics.
    pub labels: Labels,
    /// Resources the orchestrator assigned (cpus, mem, disk, ...).
    pub resources: BTreeMap<String, f64>,
}

/// Why a node could not list tasks this iteration.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The cgroup tree could not be read.
    #[error("listing cgroups under {path}: {source}")]
    Cgroups {
        path: String,
        source: std::io::Error,
    },
    /// The hierarchy the node needs is not mounted.
    #[error("{0}")]
    NotMounted(String),
}

/// The configured node.
#[derive(Debug, Clone, Deserialize)]
pub enum NodeConfig {
    /// A fixed list of cgroups, as in OWCA.
    StaticNode(StaticNode),
    /// Every cgroup below a prefix that holds processes.
    CgroupNode(CgroupNode),
}

impl NodeConfig {
    /// The v1 controller whose hierarchy tasks are counted in, when mounted as v1.
    pub fn v1_controller(&self) -> &str {
        match self {
            Self::CgroupNode(n) => &n.controller,
            Self::StaticNode(_) => "cpuacct",
        }
    }

    /// The tasks running now.
    pub async fn tasks(&self, mounts: &Mounts) -> Result<Vec<Task>, NodeError> {
        match self {
            Self::StaticNode(n) => Ok(n.tasks()),
            Self::CgroupNode(n) => n.tasks(mounts),
        }
    }
}
