//! `!AllocationRunner`: measure every task, read the allocations the kernel holds, ask the
//! allocator, apply its answer (validated as a whole, only changes written); store
//! metrics, anomalies and allocation metrics.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::debug;

use super::{
    Iterate, RunnerError,
    measuring_stages::{COMPONENTS, MeasuringStages},
    shared_config::{build_storage, runner_config},
    store_to,
};
use crate::{
    allocation::{AllocationConfiguration, Applier, RdtWanted, control_groups},
    allocators::{Allocator, AllocatorConfig, AllocatorError, TaskAllocations, TasksAllocations},
    anomaly::AnomalyStatistics,
    containers::ControlGroups,
    measurements::Observation,
    privileges::AfterLoad,
    resctrl::RdtCapabilities,
    storage::{Storage, StorageConfig},
};

/// Components an allocation runner counts in `owca_errors_total`.
const ALLOCATION_COMPONENTS: [&str; COMPONENTS.len() + 2] = {
    let mut out = ["allocator"; COMPONENTS.len() + 2];
    let mut i = 0;
    while i < COMPONENTS.len() {
        out[i] = COMPONENTS[i];
        i += 1;
    }
    out[COMPONENTS.len() + 1] = "allocations";
    out
};

runner_config! {
    /// Settings of the allocation runner, with OWCA's names and defaults.
    pub struct AllocationRunnerConfig / AllocationSettings {
        /// What decides the allocations.
        pub allocator: AllocatorConfig,
        /// Where anomalies and the allocator's metrics go.
        #[serde(default)]
        pub anomalies_storage: StorageConfig,
        /// Where allocation metrics, the allocator's metrics and allocation statistics go.
        #[serde(default)]
        pub allocations_storage: StorageConfig,
        /// Refuse to start without RDT memory bandwidth allocation.
        #[serde(default)]
        pub rdt_mb_control_required: bool,
        /// Refuse to start without RDT L3 cache allocation.
        #[serde(default)]
        pub rdt_cache_control_required: bool,
        /// How normalized allocations become kernel values.
        #[serde(default)]
        pub allocation_configuration: AllocationConfiguration,
        /// Remove every resctrl control group at start, not only the agent's.
        #[serde(default)]
        pub remove_all_resctrl_groups: bool,
    }
}

/// The allocation loop and its state (counters only: allocations are read back).
pub struct AllocationRunner {
    stages: MeasuringStages,
    allocator: Allocator,
    applier: Applier,
    metrics_storage: Box<dyn Storage>,
    anomalies_storage: Box<dyn Storage>,
    allocations_storage: Box<dyn Storage>,
    statistics: AnomalyStatistics,
    /// Where the last iteration left tasks' threads in resctrl.
    control_groups: ControlGroups,
}

impl AllocationRunner {
    /// Checks the machine and the settings, opens RDT allocation when enabled, creates the
    /// allocator, loads the collector, does `after_load` and creates the storages (a
    /// storage's threads start after the drop of capabilities).
    pub fn new(cfg: AllocationRunnerConfig, after_load: AfterLoad) -> Result<Self, RunnerError> {
        let (shared, own) = cfg.split();
        shared.validate()?;
        let allocator = own.allocator.build().map_err(RunnerError::Allocator)?;
        let applier = Applier::new(
            own.allocation_configuration,
            &RdtWanted {
                root: &shared.measuring.resctrl_root,
                enabled: shared.measuring.rdt_enabled,
                cache_control_required: own.rdt_cache_control_required,
                mb_control_required: own.rdt_mb_control_required,
                remove_all_groups: own.remove_all_resctrl_groups,
            },
        )?;
        let stages = MeasuringStages::start(shared.measuring, &ALLOCATION_COMPONENTS, after_load)?;
        let metrics_storage = build_storage(shared.metrics_storage, "metrics_storage")?;
        let anomalies_storage = build_storage(own.anomalies_storage, "anomalies_storage")?;
        let allocations_storage = build_storage(own.allocations_storage, "allocations_storage")?;
        Ok(Self {
            stages,
            allocator,
            applier,
            metrics_storage,
            anomalies_storage,
            allocations_storage,
            statistics: AnomalyStatistics::default(),
            control_groups: ControlGroups::new(),
        })
    }
}

/// Each task's current allocations as the JSON OWCA gave allocators, and what RDT
/// allocation offers (`rdt_information`) while it is on.
fn with_allocations(
    mut obs: Observation,
    current: &TasksAllocations,
    rdt: Option<&RdtCapabilities>,
) -> Observation {
    obs.platform.rdt_information = rdt.cloned();
    for (id, t) in &mut obs.tasks {
        let a = current
            .get(id)
            .cloned()
            .unwrap_or_else(TaskAllocations::default);
        t.allocations = serde_json::to_value(a).ok();
    }
    obs
}

impl Iterate for AllocationRunner {
    /// One iteration: tasks → containers → measurements → current allocations →
    /// allocator → validate and write the changes → metrics, anomalies and allocation
    /// metrics to their storages.
    async fn iterate(&mut self) {
        let mut measured = self.stages.measure(&self.control_groups).await;
        let t = Instant::now();
        let mounts = self.stages.mounts().clone();
        let current = self
            .applier
            .read_current(&measured, &mounts, &mut self.stages.stats);
        let observation = with_allocations(
            Observation::new(&measured),
            &current.allocations,
            self.applier.rdt_capabilities(),
        );
        let asked = Instant::now();
        let answer = self.allocator.allocate(&observation).await;
        let decided_in: Duration = asked.elapsed();
        let stats = &mut self.stages.stats;
        let name = self.allocator.name();
        let decision = match answer {
            Ok(d) => {
                for p in &d.problems {
                    stats.record("allocator", name, p);
                }
                d
            }
            Err(AllocatorError::Invalid(e)) => {
                self.applier.refuse(&e, stats);
                Default::default()
            }
            Err(e) => {
                stats.record("allocator", name, &e);
                Default::default()
            }
        };
        let target = self
            .applier
            .apply(&measured, &mounts, current, &decision.allocations, stats);
        self.control_groups = control_groups(&target);
        stats.timed("allocate", t);
        debug!(anomalies = decision.anomalies.len(), "allocated");

        let common = &Arc::clone(self.stages.common_labels());
        let labels_of = |id: &str| observation.tasks.get(id).map(|t| &t.labels);
        // The allocator's own metrics go with both its anomalies and its allocations.
        let extra: Vec<_> = decision
            .metrics
            .into_iter()
            .map(|m| m.with_shared(common))
            .collect();
        let (anomaly_samples, errors) = self.statistics.package(
            &decision.anomalies,
            labels_of,
            extra.iter().cloned(),
            common,
        );
        let stats = &mut self.stages.stats;
        for e in errors {
            stats.record("allocator", self.allocator.name(), &e);
        }

        let mut allocation_samples = self.applier.task_metrics(&target, &measured, common);
        allocation_samples.extend(extra);
        allocation_samples.extend(self.applier.statistics(decided_in, common));

        let own = self.stages.self_metrics(&measured);
        measured.metrics.extend(own);
        let stats = &mut self.stages.stats;
        store_to(
            &mut *self.metrics_storage,
            std::mem::take(&mut measured.metrics),
            stats,
            "metrics_storage",
        );
        store_to(
            &mut *self.anomalies_storage,
            anomaly_samples,
            stats,
            "anomalies_storage",
        );
        store_to(
            &mut *self.allocations_storage,
            allocation_samples,
            stats,
            "allocations_storage",
        );
        self.stages.end_iteration();
    }
}
