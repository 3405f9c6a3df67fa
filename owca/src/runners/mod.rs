//! Runners: the agent's loop. Each iteration asks the node for tasks, reconciles what the
//! collector watches, takes one snapshot of measurements and stores the metrics.

pub mod derived;
mod errors;
mod measurement;
mod rdt;
pub mod task_metrics;

use serde::Deserialize;

pub use self::{
    errors::ErrorCounter,
    measurement::{MeasurementRunner, MeasurementRunnerConfig},
};

/// The configured runner.
#[derive(Debug, Deserialize)]
pub enum RunnerConfig {
    /// Measures tasks and stores their metrics.
    MeasurementRunner(MeasurementRunnerConfig),
}
