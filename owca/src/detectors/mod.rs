//! Detectors: given one iteration's [`Observation`], find anomalies (and extra metrics).
//!
//! Built-ins: `!NOPAnomalyDetector`, `!ExampleDetector`, `!ContentionDetector`; any other
//! program through `!ExternalDetector` or a `-r` registered tag (see [`crate::plugins`]).

mod config;
mod contention;
pub(crate) mod cpi;
mod example;
pub(crate) mod waits;

use std::sync::Arc;

use thiserror::Error;

pub use self::{
    config::DetectorConfig,
    contention::{ContentionDetector, ContentionDetectorConfig, ContentionDetectorError},
    example::{ExampleDetector, ExampleDetectorConfig},
};
use crate::{
    anomaly::ContentionAnomaly,
    measurements::Observation,
    metrics::Metric,
    plugins::{Plugin, PluginError},
};

/// What a detector found in one iteration.
#[derive(Debug, Default)]
pub struct Detection {
    /// Anomalies, encoded by the runner (see [`crate::anomaly::anomaly_metrics`]).
    pub anomalies: Vec<ContentionAnomaly>,
    /// Extra metrics stored with the anomalies.
    pub metrics: Vec<Metric>,
}

/// Why a detector found nothing this iteration.
#[derive(Debug, Error)]
pub enum DetectorError {
    /// The plug-in did not answer (or is waiting to be restarted after it failed).
    #[error(transparent)]
    Plugin(Arc<PluginError>),
}

/// A running detector.
pub enum Detector {
    Nop,
    Example(ExampleDetector),
    // Boxed, like the plug-in: one detector per agent, and its state is large.
    Contention(Box<ContentionDetector>),
    // Boxed: the process state is large and there is one detector per agent.
    External(Box<Plugin>),
}

impl DetectorConfig {
    /// The detector; `host` seeds the example detector's skew. An error for settings
    /// that can never work (a bad label pattern).
    pub fn build(self, host: &str) -> Result<Detector, ContentionDetectorError> {
        Ok(match self {
            Self::Nop => Detector::Nop,
            Self::Example(c) => Detector::Example(ExampleDetector::new(&c, host)),
            Self::Contention(c) => Detector::Contention(Box::new(ContentionDetector::new(c)?)),
            Self::External(c) => Detector::External(Box::new(Plugin::new(c))),
        })
    }
}

impl Detector {
    /// Names the detector in errors.
    pub fn name(&self) -> &str {
        match self {
            Self::Nop => "NOPAnomalyDetector",
            Self::Example(_) => "ExampleDetector",
            Self::Contention(_) => "ContentionDetector",
            Self::External(p) => p.name(),
        }
    }

    /// Looks at one iteration. A plug-in's `allocations` are ignored: detectors only
    /// report.
    pub async fn detect(&mut self, obs: &Observation) -> Result<Detection, DetectorError> {
        match self {
            Self::Nop => Ok(Detection::default()),
            Self::Example(d) => Ok(d.detect(obs)),
            Self::Contention(d) => Ok(d.detect(obs)),
            Self::External(p) => {
                let answer = p.exchange(obs).await.map_err(DetectorError::Plugin)?;
                Ok(Detection {
                    anomalies: answer.anomalies.into_iter().map(Into::into).collect(),
                    metrics: answer.metrics.into_iter().map(Into::into).collect(),
                })
            }
        }
    }
}
