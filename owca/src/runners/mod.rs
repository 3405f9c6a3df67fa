//! Runners: the agent's three loops. Each iteration runs the stages in one direction —
//! tasks → containers → measurements (`measuring_stages`) → detector or allocator →
//! storages — and each stage's result is handed on as a value. The root of the
//! configuration schema ([`AgentConfig`]) lives here, with the runners it selects.

mod agent_config;
mod allocation;
mod detection;
mod error;
mod measurement;
mod measuring_stages;
pub(crate) mod shared_config;

use std::{future::Future, path::PathBuf, time::Duration};

use serde::Deserialize;
use tracing::info;

pub use self::{
    agent_config::AgentConfig,
    allocation::{AllocationRunner, AllocationRunnerConfig},
    detection::{DetectionRunner, DetectionRunnerConfig},
    error::RunnerError,
    measurement::{MeasurementRunner, MeasurementRunnerConfig},
    measuring_stages::COMPONENTS,
};
use crate::{
    metrics::{Metric, SelfMetrics},
    privileges::AfterLoad,
    storage::Storage,
};

/// The configured runner.
#[derive(Debug, Deserialize)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value, read once at start: its size costs nothing"
)]
pub enum RunnerConfig {
    /// Measures tasks and stores their metrics.
    MeasurementRunner(MeasurementRunnerConfig),
    /// Measures tasks, looks for anomalies and stores both.
    DetectionRunner(DetectionRunnerConfig),
    /// Measures tasks, decides and applies their allocations, stores all three.
    AllocationRunner(AllocationRunnerConfig),
}

impl RunnerConfig {
    /// Seconds between iterations.
    pub fn action_delay(&self) -> Duration {
        match self {
            Self::MeasurementRunner(c) => c.action_delay,
            Self::DetectionRunner(c) => c.action_delay,
            Self::AllocationRunner(c) => c.action_delay,
        }
    }

    /// Replaces `resctrl_root` (the binary's `OWCA_RESCTRL_ROOT` override).
    pub fn set_resctrl_root(&mut self, root: PathBuf) {
        match self {
            Self::MeasurementRunner(c) => c.resctrl_root = root,
            Self::DetectionRunner(c) => c.resctrl_root = root,
            Self::AllocationRunner(c) => c.resctrl_root = root,
        }
    }

    /// Starts the runner (doing `after_load` once its collector is loaded, before it
    /// creates its storages) and runs iterations until `shutdown` completes.
    pub async fn run(
        self,
        after_load: AfterLoad,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunnerError> {
        let delay = self.action_delay();
        match self {
            Self::MeasurementRunner(c) => {
                run_every(MeasurementRunner::new(c, after_load)?, delay, shutdown).await
            }
            Self::DetectionRunner(c) => {
                run_every(DetectionRunner::new(c, after_load)?, delay, shutdown).await
            }
            Self::AllocationRunner(c) => {
                run_every(AllocationRunner::new(c, after_load)?, delay, shutdown).await
            }
        }
        Ok(())
    }
}

/// Stores `metrics`, counting a failure (and every package it lost) under the storage's
/// component; `subject` names the storage in the runner (`metrics_storage`...).
fn store_to(
    storage: &mut dyn Storage,
    metrics: Vec<Metric>,
    stats: &mut SelfMetrics,
    subject: &str,
) {
    if let Err(e) = storage.store_owned(metrics) {
        stats.record_n(storage.component(), subject, &e, e.count());
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
