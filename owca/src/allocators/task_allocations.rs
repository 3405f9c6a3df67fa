//! What allocators decide, in OWCA's normalized units: one [`TaskAllocations`] per task.
//! The `allocation` module checks a set as a whole before anything is written and
//! writes only what differs from what the kernel holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::resctrl::{InvalidRdt, RdtAllocation};

/// One task's allocations; an absent type is left as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskAllocations {
    /// Share of the whole machine's CPU time, 0 to 1 (1 = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<f64>,
    /// Relative CPU weight, in units of `cpu_shares_unit` shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<f64>,
    /// CPUs the task may run on, e.g. `0-3,6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_set: Option<String>,
    /// Whether the task's cgroup is `SCHED_IDLE` towards its siblings (`cpu.idle`): it
    /// runs only when they leave a CPU idle, and is preempted as soon as they wake up.
    /// Not one of OWCA's types; exclusive with `cpu_shares` (an idle group has the least
    /// weight and the kernel refuses shares for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_idle: Option<bool>,
    /// resctrl control group and its schemata lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdt: Option<RdtAllocation>,
}

/// Per task id.
pub type TasksAllocations = BTreeMap<String, TaskAllocations>;

impl TaskAllocations {
    /// A task's allocations from an allocator's JSON (an external plug-in's answer);
    /// unknown types and wrong value types are refused, naming the task.
    pub fn from_json(
        task_id: &str,
        value: &serde_json::value::RawValue,
    ) -> Result<Self, InvalidAllocations> {
        serde_json::from_str(value.get()).map_err(|e| InvalidAllocations::Malformed {
            task_id: task_id.to_owned(),
            message: e.to_string(),
        })
    }

    /// Whether no type is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets every type `over` sets (the later rule wins).
    pub fn merge(&mut self, over: &Self) {
        if over.cpu_quota.is_some() {
            self.cpu_quota = over.cpu_quota;
        }
        if over.cpu_shares.is_some() {
            self.cpu_shares = over.cpu_shares;
        }
        if over.cpu_set.is_some() {
            self.cpu_set.clone_from(&over.cpu_set);
        }
        if over.cpu_idle.is_some() {
            self.cpu_idle = over.cpu_idle;
        }
        if over.rdt.is_some() {
            self.rdt.clone_from(&over.rdt);
        }
    }
}

/// Why a set of allocations was refused as a whole.
#[derive(Debug, Error)]
pub enum InvalidAllocations {
    /// The task is not among those the node lists.
    #[error("task {task_id}: no such task on this node")]
    UnknownTask {
        /// The unknown task.
        task_id: String,
    },
    /// Not an allocations mapping (unknown type, wrong value type).
    #[error("task {task_id}: {message}")]
    Malformed {
        /// The task concerned.
        task_id: String,
        /// What the parser said.
        message: String,
    },
    /// A number outside what the type allows.
    #[error("task {task_id}: {field} = {value} is out of range {range}")]
    OutOfRange {
        /// The task concerned.
        task_id: String,
        /// `cpu_quota` or `cpu_shares`.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range.
        range: String,
    },
    /// A `cpu_set` that is not a CPU list of online CPUs.
    #[error("task {task_id}: cpu_set {value:?}: {reason}")]
    CpuSet {
        /// The task concerned.
        task_id: String,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `cpu_idle: true` with `cpu_shares`: the kernel refuses shares for an idle group.
    #[error(
        "task {task_id}: cpu_shares cannot be set with cpu_idle: true (an idle cgroup has the least weight)"
    )]
    SharesOfIdle {
        /// The task concerned.
        task_id: String,
    },
    /// `rdt` given while RDT allocation is off.
    #[error(
        "task {task_id}: rdt allocation requested but RDT is not enabled (resctrl not mounted or rdt_enabled: false)"
    )]
    RdtDisabled {
        /// The task concerned.
        task_id: String,
    },
    /// Refused by the resctrl checks (masks, domains, CLOSIDs).
    #[error(transparent)]
    Rdt(#[from] InvalidRdt),
}

impl InvalidAllocations {
    /// The task the problem is about.
    pub fn task_id(&self) -> &str {
        match self {
            Self::UnknownTask { task_id }
            | Self::Malformed { task_id, .. }
            | Self::OutOfRange { task_id, .. }
            | Self::CpuSet { task_id, .. }
            | Self::SharesOfIdle { task_id }
            | Self::RdtDisabled { task_id } => task_id,
            Self::Rdt(e) => &e.task_id,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A task's cpu allocations, for unit tests.
    pub(crate) fn alloc(
        quota: Option<f64>,
        shares: Option<f64>,
        set: Option<&str>,
    ) -> TaskAllocations {
        TaskAllocations {
            cpu_quota: quota,
            cpu_shares: shares,
            cpu_set: set.map(String::from),
            cpu_idle: None,
            rdt: None,
        }
    }

    fn from_json(
        task_id: &str,
        v: serde_json::Value,
    ) -> Result<TaskAllocations, InvalidAllocations> {
        TaskAllocations::from_json(task_id, &serde_json::value::to_raw_value(&v).unwrap())
    }

    #[test]
    fn unknown_types_are_refused() {
        let err = from_json("t", serde_json::json!({"cpu_quota": 0.5, "mem": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("task t: unknown field `mem`"), "{err}");
        let ok = from_json("t", serde_json::json!({"cpu_set": "0", "cpu_idle": true})).unwrap();
        assert_eq!(ok.cpu_set.as_deref(), Some("0"));
        assert_eq!(ok.cpu_idle, Some(true));
        let err = from_json("t", serde_json::json!({"cpu_quota": "half"}));
        assert!(err.is_err());
    }

    #[test]
    fn later_rules_win_per_type() {
        let mut a = alloc(Some(0.5), Some(1.0), None);
        a.merge(&alloc(Some(0.2), None, Some("0")));
        assert_eq!(a, alloc(Some(0.2), Some(1.0), Some("0")));
        assert!(TaskAllocations::default().is_empty());
    }
}
