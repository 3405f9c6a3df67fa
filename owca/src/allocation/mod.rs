//! Allocation: applying what an allocator decided. The allocations the kernel holds are
//! read back every iteration (cgroupfs and resctrl), a desired set is validated as a
//! whole, only real changes are written, and the allocation metrics are built here.
//!
//! Nothing is kept between iterations but counters: a restarted agent rewrites nothing
//! that already holds.

mod cgroup;
mod configuration;
mod metrics;
mod rdt;
mod validate;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use tracing::info;

pub use self::{
    configuration::AllocationConfiguration,
    rdt::{RdtStartError, RdtWanted},
    validate::{Limits, TOLERANCE, changes, validate},
};
use crate::{
    allocators::{InvalidAllocations, TasksAllocations},
    cgroups::{Cgroup, Mounts, cpu_list},
    containers::ControlGroups,
    measurements::Measured,
    metrics::{Labels, Metric, SelfMetrics},
    resctrl::{RdtAllocation, RdtCapabilities, RdtControl},
};

/// The allocations in force before the allocator decides.
#[derive(Debug, Default)]
pub struct Current {
    /// Per task, as the kernel holds them.
    pub allocations: TasksAllocations,
    /// Each task's threads, when RDT allocation is on (resctrl moves threads).
    threads: BTreeMap<String, Vec<u32>>,
}

/// The allocation stage: validates and writes, and counts what it did.
pub struct Applier {
    configuration: AllocationConfiguration,
    rdt: Option<RdtControl>,
    /// Task allocations accepted since start (`allocations_count`).
    count: u64,
    /// Refused sets and refused writes since start (`allocations_errors`).
    errors: u64,
}

impl Applier {
    /// Checks `configuration` and opens RDT allocation as `rdt` asks.
    pub fn new(
        configuration: AllocationConfiguration,
        rdt: &RdtWanted<'_>,
    ) -> Result<Self, ApplierError> {
        configuration.check().map_err(ApplierError::Configuration)?;
        let rdt = rdt::open(rdt, &configuration)?;
        Ok(Self {
            configuration,
            rdt,
            count: 0,
            errors: 0,
        })
    }

    /// What RDT allocation offers, while it is on: allocators size `rdt` schemata with it.
    pub fn rdt_capabilities(&self) -> Option<&RdtCapabilities> {
        self.rdt.as_ref().map(RdtControl::capabilities)
    }

    /// Every task's allocations as the kernel holds them.
    pub fn read_current(
        &mut self,
        measured: &Measured,
        mounts: &Mounts,
        stats: &mut SelfMetrics,
    ) -> Current {
        let cpus = measured.platform.cpus;
        let mut current = Current::default();
        for (id, t) in &measured.tasks {
            let cg = Cgroup::new(mounts, &t.task.cgroup_path);
            match cgroup::current(&cg, &self.configuration, cpus) {
                Ok(a) => {
                    current.allocations.insert(id.clone(), a);
                }
                Err(e) => stats.record("allocations", id, &e),
            }
            if self.rdt.is_some() {
                match cg.thread_ids("cpuacct") {
                    Ok(tids) => {
                        current.threads.insert(id.clone(), tids);
                    }
                    Err(e) => stats.record("cgroups", id, &e),
                }
            }
        }
        if let Some(control) = &self.rdt {
            rdt::read_current(control, &current.threads, &mut current.allocations, stats);
        }
        current
    }

    /// Counts and logs (once while it persists) a refused set.
    pub fn refuse(&mut self, e: &InvalidAllocations, stats: &mut SelfMetrics) {
        self.errors += 1;
        let subject = format!("invalid allocations, none applied: task {}", e.task_id());
        stats.record("allocations", &subject, e);
    }

    /// Validates and writes `desired`; returns the allocations in force afterwards.
    pub fn apply(
        &mut self,
        measured: &Measured,
        mounts: &Mounts,
        current: Current,
        desired: &TasksAllocations,
        stats: &mut SelfMetrics,
    ) -> TasksAllocations {
        if desired.is_empty() {
            return current.allocations;
        }
        let cpus = measured.platform.cpus;
        let online = match cpu_list::online_cpus() {
            Ok(o) => o,
            Err(e) => {
                stats.record("allocations", "online CPUs", &e);
                (0..cpus as u32).collect()
            }
        };
        let highest_possible_cpu = cpu_list::highest_possible_cpu().unwrap_or_else(|e| {
            stats.record("allocations", "possible CPUs", &e);
            online.last().copied().unwrap_or(0)
        });
        let known: BTreeSet<String> = measured.tasks.keys().cloned().collect();
        let limits = Limits {
            tasks: &known,
            online_cpus: &online,
            highest_possible_cpu,
            configuration: &self.configuration,
            rdt: self.rdt.as_ref(),
        };
        if let Err(e) = validate(desired, &limits) {
            self.refuse(&e, stats);
            return current.allocations;
        }
        self.count += desired.len() as u64;
        let cfg = &self.configuration;
        let todo = changes(&current.allocations, desired, |q| {
            cfg.quota_as_written(q, cpus)
        });
        // cpuset.mems is rewritten only where empty or naming offline nodes (see
        // Cgroup::set_cpuset): the nodes are read only for a cpuset change.
        let mems = match todo.values().any(|c| c.cpu_set.is_some()) {
            false => BTreeSet::new(),
            true => cpu_list::online_mems().unwrap_or_else(|e| {
                stats.record("allocations", "online memory nodes", &e);
                BTreeSet::from([0])
            }),
        };
        let mut target = current.allocations;
        for (id, change) in &todo {
            info!(task_id = %id, allocations = %serde_json::to_string(change).unwrap_or_default(), "changing allocations");
            let cg = Cgroup::new(mounts, &measured.tasks[id].task.cgroup_path);
            let (done, failed) = cgroup::apply(&cg, change, cfg, cpus, &mems);
            target.entry(id.clone()).or_default().merge(&done);
            for (kind, e) in failed {
                self.errors += 1;
                stats.record("allocations", &format!("{id}: {kind}"), &e);
            }
        }
        self.apply_rdt(desired, &todo, &current.threads, &mut target, stats);
        target
    }

    /// Writes changed RDT allocations, and keeps the threads of tasks whose allocation
    /// holds in their group (threads that joined the cgroup since); removes empty groups.
    fn apply_rdt(
        &mut self,
        desired: &TasksAllocations,
        todo: &TasksAllocations,
        threads: &BTreeMap<String, Vec<u32>>,
        target: &mut TasksAllocations,
        stats: &mut SelfMetrics,
    ) {
        let Some(control) = &mut self.rdt else { return };
        for (id, want) in desired {
            let Some(rdt) = &want.rdt else { continue };
            let changed = todo.get(id).and_then(|c| c.rdt.as_ref());
            let write = changed.cloned().unwrap_or_else(|| RdtAllocation {
                name: rdt.name.clone(),
                l3: None,
                mb: None,
            });
            let tids = threads.get(id).map_or(&[][..], Vec::as_slice);
            match control.apply(id, &write, tids) {
                Ok(()) if changed.is_some() => {
                    target.entry(id.clone()).or_default().rdt = Some(write);
                }
                Ok(()) => {}
                Err(e) => {
                    self.errors += 1;
                    stats.record("resctrl", id, &e);
                }
            }
        }
        for e in control.remove_empty_groups() {
            stats.record("resctrl", "empty groups", &e);
        }
    }

    /// One sample per task and allocation type of `target`, with OWCA's labels.
    pub fn task_metrics(
        &self,
        target: &TasksAllocations,
        measured: &Measured,
        common: &Arc<Labels>,
    ) -> Vec<Metric> {
        metrics::allocation_metrics(target, &measured.tasks, common)
    }

    /// `allocations_count`, `allocations_errors` and `allocation_duration` (the time the
    /// allocator took to decide).
    pub fn statistics(&self, decided_in: Duration, common: &Arc<Labels>) -> Vec<Metric> {
        metrics::statistics(self.count, self.errors, decided_in, common)
    }
}

/// Where each task's threads are in resctrl after an allocation, for the containers stage
/// of the next iteration (its monitoring groups must be made there).
pub fn control_groups(target: &TasksAllocations) -> ControlGroups {
    target
        .iter()
        .filter_map(|(id, a)| Some((id.clone(), a.rdt.as_ref()?.group(id))))
        .collect()
}

/// Why the allocation stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApplierError {
    /// `allocation_configuration` is out of range.
    #[error("{0}")]
    Configuration(String),
    /// RDT allocation was required and is not available, or its defaults are invalid.
    #[error(transparent)]
    Rdt(#[from] RdtStartError),
}
