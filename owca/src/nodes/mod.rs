//! Nodes: where the tasks to measure come from. One closed enum, selected by the YAML tag.

mod cgroup_node;
mod label_matcher;
pub mod mesos;
mod static_node;

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;
use thiserror::Error;

pub use self::{
    cgroup_node::CgroupNode,
    label_matcher::{LabelMatcher, LabelPatternError},
    mesos::MesosNode,
    static_node::StaticNode,
};
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
    #[error("listing cgroups: {0}")]
    Cgroups(#[from] crate::cgroups::CgroupError),
    /// The hierarchy the node needs is not mounted.
    #[error("{0}")]
    NotMounted(String),
    /// The Mesos agent could not be asked, or its answer is unusable; the message names
    /// the endpoint.
    #[error(transparent)]
    Mesos(#[from] mesos::MesosError),
    /// The node failed more iterations in a row than its task list may outlive: the list
    /// is dropped, no task is measured until the node answers again.
    #[error(
        "no task list for {failed} iterations in a row (task_list_ttl_iterations: {ttl}): the last one is dropped, no task is measured until the node answers"
    )]
    TaskListExpired {
        /// Failed iterations in a row.
        failed: u32,
        /// The configured number of failed iterations the list outlives.
        ttl: u32,
    },
}

/// The configured node.
#[derive(Debug, Clone, Deserialize)]
pub enum NodeConfig {
    /// A fixed list of cgroups, as in OWCA.
    StaticNode(StaticNode),
    /// Every cgroup below a prefix that holds processes.
    CgroupNode(CgroupNode),
    /// The tasks a Mesos agent runs, as in OWCA.
    MesosNode(MesosNode),
}

impl NodeConfig {
    /// The v1 controller whose hierarchy tasks are counted in, when mounted as v1.
    pub fn v1_controller(&self) -> &str {
        match self {
            Self::CgroupNode(n) => &n.controller,
            Self::StaticNode(_) => "cpuacct",
            // The Mesos cgroups/cpu isolator creates the task's cgroup in cpu and cpuacct.
            Self::MesosNode(_) => "cpuacct",
        }
    }

    /// Checks what can be checked before the first iteration (a Mesos node's certificate
    /// and key files), so a broken config stops the agent at start instead of failing
    /// every iteration.
    pub fn validate(&self) -> Result<(), NodeError> {
        match self {
            Self::MesosNode(n) => n.client().map(drop).map_err(NodeError::from),
            Self::StaticNode(_) | Self::CgroupNode(_) => Ok(()),
        }
    }

    /// Failed iterations in a row through which the last task list stays in force (`None`:
    /// for ever; only a Mesos node's list expires).
    pub fn task_list_ttl_iterations(&self) -> Option<u32> {
        match self {
            Self::MesosNode(n) => Some(n.task_list_ttl_iterations),
            Self::StaticNode(_) | Self::CgroupNode(_) => None,
        }
    }

    /// Problems of single tasks that are measured all the same, each returned once.
    pub fn take_problems(&self) -> Vec<mesos::MesosTaskError> {
        match self {
            Self::MesosNode(n) => n.take_problems(),
            Self::StaticNode(_) | Self::CgroupNode(_) => Vec::new(),
        }
    }

    /// The tasks running now. A node whose list did not change may return the same list
    /// (the same `Arc`) again, which tells the containers stage that nothing changed.
    pub async fn tasks(&self, mounts: &Mounts) -> Result<Arc<Vec<Task>>, NodeError> {
        match self {
            Self::StaticNode(n) => Ok(Arc::new(n.tasks())),
            Self::CgroupNode(n) => Ok(Arc::new(n.tasks(mounts)?)),
            Self::MesosNode(n) => Ok(n.task_list().await?),
        }
    }
}
