//! Runners: the agent's loop. Each iteration asks the node for tasks, reconciles what the
//! collector watches, takes one snapshot of measurements, hands it to the runner's detector
//! or allocator, and stores the metrics.

mod allocation;
mod allocation_metrics;
mod allocation_rdt;
pub mod derived;
mod detection;
mod errors;
mod measure;
mod measurement;
mod rdt;
pub mod task_metrics;

use std::{future::Future, time::Duration};

use serde::Deserialize;
use tracing::info;

pub use self::{
    allocation::{AllocationRunner, AllocationRunnerConfig},
    detection::{DetectionRunner, DetectionRunnerConfig},
    errors::ErrorCounter,
    measure::{COMPONENTS, Measured, Measurer, MeasurerConfig, RunnerError, TaskData},
    measurement::{
        MeasurementRunner, MeasurementRunnerConfig, default_action_delay, default_event_names,
        default_max_cgroups,
    },
};

/// The configured runner.
#[derive(Debug, Deserialize)]
pub enum RunnerConfig {
    /// Measures tasks and stores their metrics.
    MeasurementRunner(MeasurementRunnerConfig),
    /// Measures tasks, looks for anomalies and stores both.
    DetectionRunner(DetectionRunnerConfig),
    /// Measures tasks, decides and applies their allocations, stores all three.
    AllocationRunner(AllocationRunnerConfig),
}

impl RunnerConfig {
    /// Starts the runner and runs iterations until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunnerError> {
        match self {
            Self::MeasurementRunner(c) => {
                let delay = c.action_delay;
                run_every(MeasurementRunner::new(c)?, delay, shutdown).await
            }
            Self::DetectionRunner(c) => {
                let delay = c.action_delay;
                run_every(DetectionRunner::new(c)?, delay, shutdown).await
            }
            Self::AllocationRunner(c) => {
                let delay = c.action_delay;
                run_every(AllocationRunner::new(c)?, delay, shutdown).await
            }
        }
        Ok(())
    }
}

/// Stores `metrics`, counting a failure (and every package it lost) under the storage's
/// component; `subject` names the storage in the runner (`metrics_storage`...).
pub fn store_to(
    storage: &mut dyn crate::storage::Storage,
    metrics: &[crate::metrics::Metric],
    errors: &mut ErrorCounter,
    subject: &str,
) {
    if let Err(e) = storage.store(metrics) {
        errors.record_n(storage.component(), subject, &e, e.count());
    }
}

/// A runner's iteration.
pub trait Iterate {
    /// Measures, decides, stores: one `action_delay`'s work.
    fn iterate(&mut self) -> impl Future<Output = ()>;
}

/// Calls `runner.iterate()` every `delay` until `shutdown` completes. An iteration that
/// overruns delays the next one rather than causing a burst.
pub async fn run_every(
    mut runner: impl Iterate,
    delay: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(delay);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => runner.iterate().await,
            () = &mut shutdown => break,
        }
    }
    info!("stopping: detaching the eBPF collector");
}
