//! RDT allocation through resctrl control groups: L3 cache ways and memory bandwidth.
//!
//! CONTRACT (being implemented on branch `rdt`; the allocation runner codes against
//! these signatures). Bodies are placeholders until that branch lands.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::ResctrlError;

/// A task's RDT allocation as allocators give it (OWCA's `RDTAllocation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdtAllocation {
    /// Control group: `None` = the task's own group (`owca-<task>`), `""` = root group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Schemata line, e.g. `L3:0=fff;1=fff`; `None` = leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3: Option<String>,
    /// Schemata line, e.g. `MB:0=50;1=50`; `None` = leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb: Option<String>,
}

impl RdtAllocation {
    /// L3 mask per domain id of the `l3` line (`L3:0=fff;1=ff` → {0: 0xfff, 1: 0xff}).
    pub fn l3_masks(&self) -> Option<BTreeMap<u32, u64>> {
        todo!("branch rdt")
    }

    /// MB value per domain id of the `mb` line (`MB:0=50;1=60` → {0: 50, 1: 60}).
    pub fn mb_values(&self) -> Option<BTreeMap<u32, u64>> {
        todo!("branch rdt")
    }
}

/// What `info/` says the hardware can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdtCapabilities {
    /// `info/L3/cbm_mask` when L3 allocation exists.
    pub cbm_mask: Option<u64>,
    /// `info/L3/min_cbm_bits`.
    pub min_cbm_bits: u32,
    /// Fewest of `info/L3/num_closids` and `info/MB/num_closids` (root group included).
    pub num_closids: u32,
    /// L3 domain ids found in the root `schemata`.
    pub l3_domains: Vec<u32>,
    /// MB allocation: `info/MB/min_bandwidth`, `bandwidth_gran`; `None` without MB.
    pub mb: Option<(u32, u32)>,
    /// MB domain ids found in the root `schemata`.
    pub mb_domains: Vec<u32>,
}

/// Why a set of RDT allocations was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task_id}: {reason}")]
pub struct InvalidRdt {
    /// The task whose allocation is invalid.
    pub task_id: String,
    /// What is wrong, naming the value.
    pub reason: String,
}

/// resctrl control groups made or taken over by the agent.
#[derive(Debug)]
pub struct RdtControl {
    root: PathBuf,
    caps: RdtCapabilities,
}

impl RdtControl {
    /// Reads `info/` under `root`; an error when resctrl is not mounted there or offers
    /// neither L3 nor MB allocation. `remove_all_resctrl_groups` removes every control
    /// group found (not only the agent's), as OWCA did at start.
    pub fn open(root: &Path, remove_all_resctrl_groups: bool) -> Result<Self, ResctrlError> {
        let _ = (root, remove_all_resctrl_groups);
        todo!("branch rdt")
    }

    /// What the hardware offers.
    pub fn capabilities(&self) -> &RdtCapabilities {
        &self.caps
    }

    /// The mount root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks every task's allocation (all-or-nothing): masks contiguous, within
    /// `cbm_mask`, at least `min_cbm_bits`, known domains, MB in range, at most
    /// `num_closids` groups in all. Tasks absent from `desired` keep what they have.
    pub fn validate(&self, desired: &BTreeMap<String, RdtAllocation>) -> Result<(), InvalidRdt> {
        let _ = desired;
        todo!("branch rdt")
    }

    /// Each task's current allocation, read from the kernel: the control group holding
    /// its first thread (`name`) and that group's schemata lines (`l3`, `mb`), normalized
    /// so that comparing with a desired allocation tells whether a write is needed.
    pub fn current(
        &self,
        threads: &BTreeMap<String, Vec<u32>>,
    ) -> Result<BTreeMap<String, RdtAllocation>, ResctrlError> {
        let _ = threads;
        todo!("branch rdt")
    }

    /// Puts the task's threads in its control group (creating it), writes the schemata
    /// lines given, and moves its monitoring group along when it has one.
    pub fn apply(
        &mut self,
        task_id: &str,
        allocation: &RdtAllocation,
        threads: &[u32],
    ) -> Result<(), ResctrlError> {
        let _ = (task_id, allocation, threads);
        todo!("branch rdt")
    }

    /// Removes the agent's control groups that no longer hold any thread.
    pub fn remove_empty_groups(&mut self) -> Vec<ResctrlError> {
        todo!("branch rdt")
    }
}
