//! The settings every runner has, declared once: [`runner_config!`] adds them to each
//! runner's config struct (serde's `flatten` does not combine with
//! `deny_unknown_fields`, which every config keeps so that a misspelt field is an error).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use super::RunnerError;
use crate::{
    metrics::{
        labels::{RESERVED_LABELS, is_valid_label_name},
        names,
    },
    nodes::NodeConfig,
    resctrl,
    storage::{Storage, StorageConfig},
};

/// What the measuring stages need: the node and how to measure its tasks.
#[derive(Debug)]
pub struct MeasuringConfig {
    /// Where tasks come from.
    pub node: NodeConfig,
    /// Labels added to every metric.
    pub extra_labels: BTreeMap<String, String>,
    /// Counter events to count per task.
    pub event_names: Vec<String>,
    /// Derived metrics from counter deltas.
    pub enable_derived_metrics: bool,
    /// RDT: unset = where resctrl is mounted.
    pub rdt_enabled: Option<bool>,
    /// Where resctrl is mounted.
    pub resctrl_root: PathBuf,
    /// Most tasks watched in the kernel at once.
    pub max_cgroups: u32,
}

/// The settings every runner shares.
#[derive(Debug)]
pub struct SharedConfig {
    /// The measuring stages' settings.
    pub measuring: MeasuringConfig,
    /// Seconds between iterations.
    pub action_delay: Duration,
    /// Where metrics go.
    pub metrics_storage: StorageConfig,
}

impl SharedConfig {
    /// Checks what can be checked before anything starts.
    pub fn validate(&self) -> Result<(), RunnerError> {
        for name in self.measuring.extra_labels.keys() {
            let reason = if RESERVED_LABELS.contains(&name.as_str()) {
                "is set by the agent itself (le, quantile, task_id)"
            } else if !is_valid_label_name(name) {
                "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            } else {
                continue;
            };
            return Err(RunnerError::ExtraLabel {
                name: name.clone(),
                reason,
            });
        }
        self.measuring.node.validate().map_err(RunnerError::Node)
    }
}

/// Creates the storage configured as `field`.
pub fn build_storage(
    cfg: StorageConfig,
    field: &'static str,
) -> Result<Box<dyn Storage>, RunnerError> {
    cfg.build()
        .map_err(|source| RunnerError::Storage { field, source })
}

/// One second, OWCA's default `action_delay`.
pub fn default_action_delay() -> Duration {
    Duration::from_secs(1)
}

/// OWCA's default events.
pub fn default_event_names() -> Vec<String> {
    [
        names::INSTRUCTIONS,
        names::CYCLES,
        names::CACHE_MISSES,
        names::STALLS_MEM_LOAD,
    ]
    .map(String::from)
    .to_vec()
}

/// The default capacity of the collector's maps.
pub fn default_max_cgroups() -> u32 {
    owca_common::DEFAULT_MAX_CGROUPS
}

/// `/sys/fs/resctrl`.
pub fn default_resctrl_root() -> PathBuf {
    PathBuf::from(resctrl::DEFAULT_ROOT)
}

/// Declares a runner's config struct with the shared fields plus its own (given with
/// their doc comments and serde attributes), the struct of its own fields alone (named
/// after the `/`), and `split` to separate the two.
macro_rules! runner_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident / $own:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Where tasks come from.
            pub node: crate::nodes::NodeConfig,
            /// Seconds between iterations.
            #[serde(
                default = "crate::runners::shared_config::default_action_delay",
                deserialize_with = "crate::config::positive_duration_secs"
            )]
            pub action_delay: std::time::Duration,
            /// Where metrics go (Prometheus text on stderr by default).
            #[serde(default)]
            pub metrics_storage: crate::storage::StorageConfig,
            /// Labels added to every metric.
            #[serde(default)]
            pub extra_labels: std::collections::BTreeMap<String, String>,
            /// Counter events to count per task; those the PMU lacks are reported once and
            /// left out.
            #[serde(default = "crate::runners::shared_config::default_event_names")]
            pub event_names: Vec<String>,
            /// Derived metrics (ipc, ips, cache_hit_ratio, ...) from counter deltas.
            #[serde(default)]
            pub enable_derived_metrics: bool,
            /// RDT monitoring (`memory_bandwidth`, `llc_occupancy`) through resctrl mon
            /// groups, and RDT allocation for the allocation runner: unset = where resctrl
            /// is mounted, `true` = wanted (reported when missing).
            #[serde(default)]
            pub rdt_enabled: Option<bool>,
            /// Where resctrl is mounted (`OWCA_RESCTRL_ROOT` overrides it).
            #[serde(default = "crate::runners::shared_config::default_resctrl_root")]
            pub resctrl_root: std::path::PathBuf,
            /// Most tasks watched in the kernel at once.
            #[serde(default = "crate::runners::shared_config::default_max_cgroups")]
            pub max_cgroups: u32,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        /// The runner's own settings, apart from those every runner shares.
        // Deserialize only so that the fields' serde attributes are valid here too.
        #[derive(Debug, serde::Deserialize)]
        pub struct $own {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Separates the settings every runner shares from the runner's own.
            pub fn split(
                self,
            ) -> (crate::runners::shared_config::SharedConfig, $own) {
                let shared = crate::runners::shared_config::SharedConfig {
                    measuring: crate::runners::shared_config::MeasuringConfig {
                        node: self.node,
                        extra_labels: self.extra_labels,
                        event_names: self.event_names,
                        enable_derived_metrics: self.enable_derived_metrics,
                        rdt_enabled: self.rdt_enabled,
                        resctrl_root: self.resctrl_root,
                        max_cgroups: self.max_cgroups,
                    },
                    action_delay: self.action_delay,
                    metrics_storage: self.metrics_storage,
                };
                (shared, $own { $( $field: self.$field, )* })
            }
        }
    };
}
pub(crate) use runner_config;
