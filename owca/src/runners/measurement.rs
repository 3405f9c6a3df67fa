//! `!MeasurementRunner`: measure every task each `action_delay` and store the metrics.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{
    Iterate,
    measure::{COMPONENTS, Measurer, MeasurerConfig, RunnerError},
};
use crate::{
    config::duration_secs,
    nodes::NodeConfig,
    storage::{Storage, StorageConfig},
};

/// Settings of the measurement runner, with OWCA's names and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementRunnerConfig {
    /// Where tasks come from.
    pub node: NodeConfig,
    /// Seconds between iterations.
    #[serde(default = "default_action_delay", deserialize_with = "duration_secs")]
    pub action_delay: Duration,
    /// Where metrics go (Prometheus text on stderr by default).
    #[serde(default)]
    pub metrics_storage: StorageConfig,
    /// Labels added to every metric.
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    /// Counter events to count per task; those the PMU lacks are reported once and left out.
    #[serde(default = "default_event_names")]
    pub event_names: Vec<String>,
    /// Derived metrics (ipc, ips, cache_hit_ratio, ...) from counter deltas.
    #[serde(default)]
    pub enable_derived_metrics: bool,
    /// RDT monitoring (`memory_bandwidth`, `llc_occupancy`) through resctrl mon groups:
    /// unset = where resctrl is mounted, `true` = wanted (reported when missing).
    #[serde(default)]
    pub rdt_enabled: Option<bool>,
    /// Most tasks watched in the kernel at once.
    #[serde(default = "default_max_cgroups")]
    pub max_cgroups: u32,
}

/// One second, OWCA's default `action_delay`.
pub fn default_action_delay() -> Duration {
    Duration::from_secs(1)
}

/// OWCA's default events.
pub fn default_event_names() -> Vec<String> {
    ["instructions", "cycles", "cache_misses", "stalls_mem_load"]
        .map(String::from)
        .to_vec()
}

/// The default capacity of the collector's maps.
pub fn default_max_cgroups() -> u32 {
    owca_common::DEFAULT_MAX_CGROUPS
}

/// The measurement loop and its state.
pub struct MeasurementRunner {
    measurer: Measurer,
    storage: Box<dyn Storage>,
}

impl MeasurementRunner {
    /// Checks the machine, loads the collector and creates the storage.
    pub fn new(cfg: MeasurementRunnerConfig) -> Result<Self, RunnerError> {
        if cfg.action_delay.is_zero() {
            return Err(RunnerError::Config(
                "action_delay must be greater than 0".into(),
            ));
        }
        let storage = cfg.metrics_storage.build()?;
        let measurer = Measurer::new(MeasurerConfig {
            node: cfg.node,
            extra_labels: cfg.extra_labels,
            event_names: cfg.event_names,
            enable_derived_metrics: cfg.enable_derived_metrics,
            rdt_enabled: cfg.rdt_enabled,
            max_cgroups: cfg.max_cgroups,
        })?;
        Ok(Self { measurer, storage })
    }
}

impl Iterate for MeasurementRunner {
    /// One iteration: tasks → containers → measurements → storage.
    async fn iterate(&mut self) {
        let mut measured = self.measurer.measure().await;
        let internal = self.measurer.internal_metrics(&measured, &COMPONENTS);
        measured.metrics.extend(internal);
        super::store_to(
            &mut *self.storage,
            &measured.metrics,
            &mut self.measurer.errors,
            "metrics_storage",
        );
        self.measurer.end_iteration();
    }
}
