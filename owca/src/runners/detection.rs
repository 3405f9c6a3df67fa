//! `!DetectionRunner`: measure every task, hand the observation to a detector, store the
//! metrics and, separately, the anomalies.

use std::{sync::Arc, time::Instant};

use tracing::debug;

use super::{
    Iterate, RunnerError,
    measuring_stages::{COMPONENTS, MeasuringStages},
    shared_config::{build_storage, runner_config},
    store_to,
};
use crate::{
    anomaly::AnomalyStatistics,
    containers::ControlGroups,
    detectors::{Detector, DetectorConfig},
    measurements::Observation,
    privileges::AfterLoad,
    storage::{Storage, StorageConfig},
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

runner_config! {
    /// Settings of the detection runner, with OWCA's names and defaults.
    pub struct DetectionRunnerConfig / DetectionSettings {
        /// What looks for anomalies.
        pub detector: DetectorConfig,
        /// Where anomalies, the detector's metrics and anomaly statistics go.
        #[serde(default)]
        pub anomalies_storage: StorageConfig,
    }
}

/// The detection loop and its state.
pub struct DetectionRunner {
    stages: MeasuringStages,
    detector: Detector,
    metrics_storage: Box<dyn Storage>,
    anomalies_storage: Box<dyn Storage>,
    statistics: AnomalyStatistics,
}

impl DetectionRunner {
    /// Checks the machine, loads the collector, does `after_load` and creates the storages
    /// and the detector (a plug-in starts on the first iteration, a storage's threads
    /// after the drop of capabilities).
    pub fn new(cfg: DetectionRunnerConfig, after_load: AfterLoad) -> Result<Self, RunnerError> {
        let (shared, own) = cfg.split();
        shared.validate()?;
        let stages = MeasuringStages::start(shared.measuring, &DETECTION_COMPONENTS, after_load)?;
        let metrics_storage = build_storage(shared.metrics_storage, "metrics_storage")?;
        let anomalies_storage = build_storage(own.anomalies_storage, "anomalies_storage")?;
        let detector = own
            .detector
            .build(stages.host())
            .map_err(RunnerError::Detector)?;
        Ok(Self {
            stages,
            detector,
            metrics_storage,
            anomalies_storage,
            statistics: AnomalyStatistics::default(),
        })
    }
}

impl Iterate for DetectionRunner {
    /// One iteration: tasks → containers → measurements → detector → metrics and
    /// anomalies storages.
    async fn iterate(&mut self) {
        let mut measured = self.stages.measure(&ControlGroups::new()).await;
        let t = Instant::now();
        let observation = Observation::new(&measured);
        let stats = &mut self.stages.stats;
        let detection = match self.detector.detect(&observation).await {
            Ok(d) => d,
            Err(e) => {
                stats.record("detector", self.detector.name(), &e);
                Default::default()
            }
        };
        stats.timed("detect", t);
        debug!(anomalies = detection.anomalies.len(), "detected");

        let common = &Arc::clone(self.stages.common_labels());
        let labels_of = |id: &str| observation.tasks.get(id).map(|t| &t.labels);
        let (anomalies, errors) =
            self.statistics
                .package(&detection.anomalies, labels_of, detection.metrics, common);
        let stats = &mut self.stages.stats;
        for e in errors {
            stats.record("detector", self.detector.name(), &e);
        }

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
            anomalies,
            stats,
            "anomalies_storage",
        );
        self.stages.end_iteration();
    }
}
