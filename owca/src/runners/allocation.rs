//! `!AllocationRunner`: measure every task, read the allocations the kernel holds, ask the
//! allocator, validate its answer as a whole and write only what changed; store metrics,
//! anomalies and allocation metrics.
//!
//! The agent keeps no allocation state: what is current is read back from cgroupfs and
//! resctrl every iteration, so a restarted agent rewrites nothing that already holds.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tracing::{debug, info};

use super::{
    Iterate,
    allocation_metrics::{allocation_metrics, statistics},
    allocation_rdt::{self, RdtWanted},
    measure::{COMPONENTS, Measured, Measurer, MeasurerConfig, RunnerError},
    measurement::{default_action_delay, default_event_names, default_max_cgroups},
};
use crate::{
    allocators::{
        self, AllocationConfiguration, Allocator, AllocatorConfig, AllocatorError,
        InvalidAllocations, TaskAllocations, TasksAllocations,
        types::{Limits, changes, validate},
    },
    cgroups::{Cgroup, cpu_list},
    config::duration_secs,
    detectors::{AnomalyStatistics, anomaly_metrics},
    nodes::NodeConfig,
    resctrl::{RdtAllocation, RdtControl},
    storage::{Storage, StorageConfig},
    tasks_data::Observation,
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

/// Settings of the allocation runner, with OWCA's names and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationRunnerConfig {
    /// Where tasks come from.
    pub node: NodeConfig,
    /// What decides the allocations.
    pub allocator: AllocatorConfig,
    /// Seconds between iterations.
    #[serde(default = "default_action_delay", deserialize_with = "duration_secs")]
    pub action_delay: Duration,
    /// Where metrics go (Prometheus text on stderr by default).
    #[serde(default)]
    pub metrics_storage: StorageConfig,
    /// Where anomalies and the allocator's metrics go.
    #[serde(default)]
    pub anomalies_storage: StorageConfig,
    /// Where allocation metrics, the allocator's metrics and allocation statistics go.
    #[serde(default)]
    pub allocations_storage: StorageConfig,
    /// Labels added to every metric.
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    /// Counter events to count per task.
    #[serde(default = "default_event_names")]
    pub event_names: Vec<String>,
    /// Derived metrics (ipc, ips, ...) from counter deltas.
    #[serde(default)]
    pub enable_derived_metrics: bool,
    /// RDT monitoring and allocation: unset = where resctrl is mounted, `true` = required.
    #[serde(default)]
    pub rdt_enabled: Option<bool>,
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
    /// Most tasks watched in the kernel at once.
    #[serde(default = "default_max_cgroups")]
    pub max_cgroups: u32,
}

/// The allocation loop and its state (counters only: allocations are read back).
pub struct AllocationRunner {
    measurer: Measurer,
    allocator: Allocator,
    configuration: AllocationConfiguration,
    rdt: Option<RdtControl>,
    metrics_storage: Box<dyn Storage>,
    anomalies_storage: Box<dyn Storage>,
    allocations_storage: Box<dyn Storage>,
    statistics: AnomalyStatistics,
    allocations_count: u64,
    allocations_errors: u64,
}

impl AllocationRunner {
    /// Checks the machine and the settings, loads the collector, opens RDT allocation
    /// when enabled and creates the storages and the allocator.
    pub fn new(cfg: AllocationRunnerConfig) -> Result<Self, RunnerError> {
        if cfg.action_delay.is_zero() {
            return Err(RunnerError::Config(
                "action_delay must be greater than 0".into(),
            ));
        }
        cfg.allocation_configuration
            .check()
            .map_err(RunnerError::Config)?;
        let allocator = cfg
            .allocator
            .build()
            .map_err(|e| RunnerError::Config(format!("allocator: {e}")))?;
        let rdt = allocation_rdt::open(
            &RdtWanted {
                enabled: cfg.rdt_enabled,
                cache_control_required: cfg.rdt_cache_control_required,
                mb_control_required: cfg.rdt_mb_control_required,
                remove_all_groups: cfg.remove_all_resctrl_groups,
            },
            &cfg.allocation_configuration,
        )?;
        let metrics_storage = cfg.metrics_storage.build()?;
        let anomalies_storage = cfg.anomalies_storage.build()?;
        let allocations_storage = cfg.allocations_storage.build()?;
        let measurer = Measurer::new(MeasurerConfig {
            node: cfg.node,
            extra_labels: cfg.extra_labels,
            event_names: cfg.event_names,
            enable_derived_metrics: cfg.enable_derived_metrics,
            rdt_enabled: cfg.rdt_enabled,
            max_cgroups: cfg.max_cgroups,
        })?;
        Ok(Self {
            measurer,
            allocator,
            configuration: cfg.allocation_configuration,
            rdt,
            metrics_storage,
            anomalies_storage,
            allocations_storage,
            statistics: AnomalyStatistics::default(),
            allocations_count: 0,
            allocations_errors: 0,
        })
    }

    /// Every task's allocations as the kernel holds them, and its threads (for resctrl).
    fn read_current(
        &mut self,
        measured: &Measured,
    ) -> (TasksAllocations, BTreeMap<String, Vec<u32>>) {
        let cpus = self.measurer.platform().cpus;
        let mounts = &self.measurer.mounts().clone();
        let mut current = TasksAllocations::new();
        let mut threads = BTreeMap::new();
        for (id, t) in &measured.tasks {
            let cg = Cgroup::new(mounts, &t.task.cgroup_path);
            match allocators::cgroup::current(&cg, &self.configuration, cpus) {
                Ok(a) => {
                    current.insert(id.clone(), a);
                }
                Err(e) => self.measurer.errors.record("allocations", id, &e),
            }
            if self.rdt.is_some() {
                match cg.thread_ids("cpuacct") {
                    Ok(tids) => {
                        threads.insert(id.clone(), tids);
                    }
                    Err(e) => self.measurer.errors.record("cgroups", id, &e),
                }
            }
        }
        if let Some(control) = &self.rdt {
            allocation_rdt::read_current(
                control,
                &threads,
                &mut current,
                &mut self.measurer.errors,
            );
            let groups: Vec<(&str, &str)> = current
                .iter()
                .filter_map(|(id, a)| Some((id.as_str(), a.rdt.as_ref()?.name.as_deref()?)))
                .collect();
            self.measurer.follow_control_groups(groups);
        }
        (current, threads)
    }

    /// Counts and logs (once while it persists) a refused set.
    fn refuse(&mut self, e: &InvalidAllocations) {
        self.allocations_errors += 1;
        let subject = format!("invalid allocations, none applied: task {}", e.task_id());
        self.measurer.errors.record("allocations", &subject, e);
    }

    /// Validates and writes `desired`; returns the allocations in force afterwards.
    fn allocate(
        &mut self,
        measured: &Measured,
        current: TasksAllocations,
        desired: TasksAllocations,
        threads: &BTreeMap<String, Vec<u32>>,
    ) -> TasksAllocations {
        let cpus = self.measurer.platform().cpus;
        let online = match cpu_list::online_cpus() {
            Ok(o) => o,
            Err(e) => {
                self.measurer
                    .errors
                    .record("allocations", "online CPUs", &e);
                (0..cpus as u32).collect()
            }
        };
        let known: BTreeSet<String> = measured.tasks.keys().cloned().collect();
        let limits = Limits {
            tasks: &known,
            online_cpus: &online,
            configuration: &self.configuration,
            rdt: self.rdt.as_ref(),
        };
        if let Err(e) = validate(&desired, &limits) {
            self.refuse(&e);
            return current;
        }
        self.allocations_count += desired.len() as u64;
        let cfg = self.configuration.clone();
        let todo = changes(&current, &desired, |q| cfg.quota_as_written(q, cpus));
        // cpuset.mems is written with cpuset.cpus: the nodes are read only for that.
        let mems = match todo.values().any(|c| c.cpu_set.is_some()) {
            false => BTreeSet::new(),
            true => cpu_list::online_mems().unwrap_or_else(|e| {
                self.measurer
                    .errors
                    .record("allocations", "online memory nodes", &e);
                BTreeSet::from([0])
            }),
        };
        let mut target = current;
        for (id, change) in &todo {
            info!(task_id = %id, allocations = %serde_json::to_string(change).unwrap_or_default(), "changing allocations");
            let cg = Cgroup::new(self.measurer.mounts(), &measured.tasks[id].task.cgroup_path);
            let (done, failed) = allocators::cgroup::apply(&cg, change, &cfg, cpus, &mems);
            let entry = target.entry(id.clone()).or_default();
            entry.merge(&done);
            for (kind, e) in failed {
                self.allocations_errors += 1;
                let subject = format!("{id}: {kind}");
                self.measurer.errors.record("allocations", &subject, &e);
            }
        }
        self.sync_rdt(&desired, &todo, threads, &mut target);
        target
    }

    /// Writes changed RDT allocations, and keeps the threads of tasks whose allocation
    /// holds in their group (threads that joined the cgroup since); removes empty groups.
    fn sync_rdt(
        &mut self,
        desired: &TasksAllocations,
        todo: &TasksAllocations,
        threads: &BTreeMap<String, Vec<u32>>,
        target: &mut TasksAllocations,
    ) {
        let Some(control) = &mut self.rdt else { return };
        let mut moved = Vec::new();
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
                    moved.push((id.clone(), write.group(id)));
                    target.entry(id.clone()).or_default().rdt = Some(write);
                }
                Ok(()) => {}
                Err(e) => {
                    self.allocations_errors += 1;
                    self.measurer.errors.record("resctrl", id, &e);
                }
            }
        }
        for e in control.remove_empty_groups() {
            self.measurer.errors.record("resctrl", "empty groups", &e);
        }
        // The next iteration's monitoring must find the moved threads' new groups.
        self.measurer
            .follow_control_groups(moved.iter().map(|(id, g)| (id.as_str(), g.as_str())));
    }
}

/// Each task's current allocations as the JSON OWCA gave allocators.
fn with_allocations(mut obs: Observation, current: &TasksAllocations) -> Observation {
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
    /// One iteration: measure → current allocations → allocator → validate → write the
    /// changes → metrics, anomalies and allocation metrics to their storages.
    async fn iterate(&mut self) {
        let mut measured = self.measurer.measure().await;
        let t = Instant::now();
        let (current, threads) = self.read_current(&measured);
        let observation = with_allocations(
            Observation::new(&measured, self.measurer.platform()),
            &current,
        );
        let asked = Instant::now();
        let answer = self.allocator.allocate(&observation).await;
        let allocate_duration = asked.elapsed();
        let name = self.allocator.name().to_owned();
        let answer = match answer {
            Ok(a) => {
                for p in &a.problems {
                    self.measurer.errors.record("allocator", &name, p);
                }
                Some(a)
            }
            Err(AllocatorError::Invalid(e)) => {
                self.refuse(&e);
                None
            }
            Err(e) => {
                self.measurer.errors.record("allocator", &name, &e);
                None
            }
        };
        let (desired, anomalies, extra) = answer
            .map(|a| (a.allocations, a.anomalies, a.metrics))
            .unwrap_or_default();
        let target = match desired.is_empty() {
            true => current,
            false => self.allocate(&measured, current, desired, &threads),
        };
        measured.durations.push(("allocate", t.elapsed()));
        debug!(anomalies = anomalies.len(), "allocated");

        let common = &Arc::clone(self.measurer.common_labels());
        let (mut anomaly_samples, errors) = anomaly_metrics(&anomalies, &observation.tasks, common);
        let stored = anomalies.len() - errors.len();
        for e in errors {
            self.measurer.errors.record("allocator", &name, &e);
        }
        let extra: Vec<_> = extra.into_iter().map(|m| m.with_shared(common)).collect();
        anomaly_samples.extend(extra.iter().cloned());
        anomaly_samples.extend(self.statistics.update(stored, common));

        let mut allocation_samples = allocation_metrics(&target, &measured.tasks, common);
        allocation_samples.extend(extra);
        allocation_samples.extend(statistics(
            self.allocations_count,
            self.allocations_errors,
            allocate_duration,
            common,
        ));

        let internal = self
            .measurer
            .internal_metrics(&measured, &ALLOCATION_COMPONENTS);
        measured.metrics.extend(internal);
        let errors = &mut self.measurer.errors;
        super::store_to(
            &mut *self.metrics_storage,
            &measured.metrics,
            errors,
            "metrics_storage",
        );
        super::store_to(
            &mut *self.anomalies_storage,
            &anomaly_samples,
            errors,
            "anomalies_storage",
        );
        super::store_to(
            &mut *self.allocations_storage,
            &allocation_samples,
            errors,
            "allocations_storage",
        );
        self.measurer.end_iteration();
    }
}
