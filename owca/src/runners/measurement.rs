//! `!MeasurementRunner`: measure every task each `action_delay` and store the metrics.

use super::{
    Iterate, RunnerError,
    measuring_stages::{COMPONENTS, MeasuringStages},
    shared_config::{build_storage, runner_config},
    store_to,
};
use crate::{containers::ControlGroups, privileges::AfterLoad, storage::Storage};

runner_config! {
    /// Settings of the measurement runner, with OWCA's names and defaults.
    pub struct MeasurementRunnerConfig / MeasurementSettings {}
}

/// The measurement loop and its state.
pub struct MeasurementRunner {
    stages: MeasuringStages,
    storage: Box<dyn Storage>,
}

impl MeasurementRunner {
    /// Checks the machine, loads the collector, does `after_load` and creates the storage
    /// (after the drop of capabilities: a storage may start threads, which would keep them).
    pub fn new(cfg: MeasurementRunnerConfig, after_load: AfterLoad) -> Result<Self, RunnerError> {
        let (shared, MeasurementSettings {}) = cfg.split();
        shared.validate()?;
        let stages = MeasuringStages::start(shared.measuring, &COMPONENTS, after_load)?;
        let storage = build_storage(shared.metrics_storage, "metrics_storage")?;
        Ok(Self { stages, storage })
    }
}

impl Iterate for MeasurementRunner {
    /// One iteration: tasks → containers → measurements → storage.
    async fn iterate(&mut self) {
        let mut measured = self.stages.measure(&ControlGroups::new()).await;
        let own = self.stages.self_metrics(&measured);
        measured.metrics.extend(own);
        let stats = &mut self.stages.stats;
        store_to(
            &mut *self.storage,
            std::mem::take(&mut measured.metrics),
            stats,
            "metrics_storage",
        );
        self.stages.end_iteration();
    }
}
