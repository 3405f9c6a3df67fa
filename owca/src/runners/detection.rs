//! `!DetectionRunner`: measure every task, hand the observation to a detector, store the
//! metrics and, separately, the anomalies.

use std::{collections::BTreeMap, time::Duration, time::Instant};

use serde::Deserialize;
use tracing::debug;

use super::{
    Iterate,
    measure::{COMPONENTS, Measurer, MeasurerConfig, RunnerError},
    measurement::{default_action_delay, default_event_names, default_max_cgroups},
};
use crate::{
    config::duration_secs,
    detectors::{AnomalyStatistics, Detector, DetectorConfig, anomaly_metrics},
    nodes::NodeConfig,
    storage::{Storage, StorageConfig},
    tasks_data::Observation,
};

/// Components a detection runner counts in `owca_errors_total`.
const DETECTION_COMPONENTS: [&str; COMPONENTS.len() + 1] = {
    let mut out = ["detector"; COMPONENTS.len() + 1];
    let mut i = 0;
    while i < COMPONENTS.len() {
        out[i] = COMPONENTS[i];
        i += 1;
    }
    out
};

/// Settings of the detection runner, with OWCA's names and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionRunnerConfig {
    /// Where tasks come from.
    pub node: NodeConfig,
    /// What looks for anomalies.
    pub detector: DetectorConfig,
    /// Seconds between iterations.
    #[serde(default = "default_action_delay", deserialize_with = "duration_secs")]
    pub action_delay: Duration,
    /// Where metrics go (Prometheus text on stderr by default).
    #[serde(default)]
    pub metrics_storage: StorageConfig,
    /// Where anomalies, the detector's metrics and anomaly statistics go.
    #[serde(default)]
    pub anomalies_storage: StorageConfig,
    /// Labels added to every metric.
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    /// Counter events to count per task.
    #[serde(default = "default_event_names")]
    pub event_names: Vec<String>,
    /// Derived metrics (ipc, ips, ...) from counter deltas.
    #[serde(default)]
    pub enable_derived_metrics: bool,
    /// RDT monitoring: unset = where resctrl is mounted, `true` = wanted.
    #[serde(default)]
    pub rdt_enabled: Option<bool>,
    /// Most tasks watched in the kernel at once.
    #[serde(default = "default_max_cgroups")]
    pub max_cgroups: u32,
}

/// The detection loop and its state.
pub struct DetectionRunner {
    measurer: Measurer,
    detector: Detector,
    metrics_storage: Box<dyn Storage>,
    anomalies_storage: Box<dyn Storage>,
    statistics: AnomalyStatistics,
}

impl DetectionRunner {
    /// Checks the machine, loads the collector and creates the storages and the detector
    /// (a plug-in starts on the first iteration).
    pub fn new(cfg: DetectionRunnerConfig) -> Result<Self, RunnerError> {
        if cfg.action_delay.is_zero() {
            return Err(RunnerError::Config(
                "action_delay must be greater than 0".into(),
            ));
        }
        let metrics_storage = cfg.metrics_storage.build()?;
        let anomalies_storage = cfg.anomalies_storage.build()?;
        let measurer = Measurer::new(MeasurerConfig {
            node: cfg.node,
            extra_labels: cfg.extra_labels,
            event_names: cfg.event_names,
            enable_derived_metrics: cfg.enable_derived_metrics,
            rdt_enabled: cfg.rdt_enabled,
            max_cgroups: cfg.max_cgroups,
        })?;
        let detector = cfg.detector.build(&measurer.platform().host);
        Ok(Self {
            measurer,
            detector,
            metrics_storage,
            anomalies_storage,
            statistics: AnomalyStatistics::default(),
        })
    }
}

impl Iterate for DetectionRunner {
    /// One iteration: tasks → measurements → detector → metrics and anomalies storages.
    async fn iterate(&mut self) {
        let mut measured = self.measurer.measure().await;
        let t = Instant::now();
        let observation = Observation::new(&measured, self.measurer.platform());
        let detection = match self.detector.detect(&observation).await {
            Ok(d) => d,
            Err(e) => {
                let name = self.detector.name().to_owned();
                self.measurer.errors.record("detector", &name, &e);
                Default::default()
            }
        };
        measured.durations.push(("detect", t.elapsed()));
        debug!(anomalies = detection.anomalies.len(), "detected");

        let common = &std::sync::Arc::clone(self.measurer.common_labels());
        let (mut anomalies, errors) =
            anomaly_metrics(&detection.anomalies, &observation.tasks, common);
        let stored = detection.anomalies.len() - errors.len();
        for e in errors {
            let name = self.detector.name().to_owned();
            self.measurer.errors.record("detector", &name, &e);
        }
        anomalies.extend(detection.metrics.into_iter().map(|m| m.with_shared(common)));
        anomalies.extend(self.statistics.update(stored, common));

        let internal = self
            .measurer
            .internal_metrics(&measured, &DETECTION_COMPONENTS);
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
            &anomalies,
            errors,
            "anomalies_storage",
        );
        self.measurer.end_iteration();
    }
}
