//! Allocators: given one iteration's [`Observation`] (with each task's current
//! allocations), decide the allocations each task should have. Deciding only: the
//! `allocation` module validates the answer as a whole and writes what differs.
//!
//! Built-ins: `!NOPAllocator`, `!StaticAllocator`, `!CollocationAllocator`; any other
//! program through
//! `!ExternalAllocator` or a `-r` registered tag (see [`crate::plugins`]).

mod collocation;
mod config;
mod static_allocator;
pub mod task_allocations;

use thiserror::Error;

pub use self::{
    collocation::{
        BEST_EFFORT_GROUP, CollocationAllocator, CollocationAllocatorConfig,
        CollocationAllocatorError, Lever,
    },
    config::AllocatorConfig,
    static_allocator::{Rule, StaticAllocator, StaticAllocatorConfig, StaticAllocatorError},
    task_allocations::{InvalidAllocations, TaskAllocations, TasksAllocations},
};
use std::sync::Arc;

use crate::{
    anomaly::ContentionAnomaly,
    measurements::Observation,
    metrics::Metric,
    plugins::{Plugin, PluginError},
};

/// What an allocator decided in one iteration (OWCA's `(allocations, anomalies, metrics)`).
#[derive(Debug, Default)]
pub struct Decision {
    /// Desired allocations per task id; tasks and types left out keep what they have.
    pub allocations: TasksAllocations,
    /// Anomalies found on the way, stored like a detector's.
    pub anomalies: Vec<ContentionAnomaly>,
    /// Extra metrics of the allocator.
    pub metrics: Vec<Metric>,
    /// Problems worked around (a broken rules file: the last good rules were used);
    /// counted and logged by the runner, the allocations still apply.
    pub problems: Vec<AllocatorError>,
}

/// Why an allocator gave nothing usable, or what it worked around.
#[derive(Debug, Error)]
pub enum AllocatorError {
    /// The StaticAllocator's rules could not be (re)loaded.
    #[error(transparent)]
    Static(#[from] StaticAllocatorError),
    /// The CollocationAllocator's settings cannot work.
    #[error(transparent)]
    Collocation(#[from] CollocationAllocatorError),
    /// The allocator answered allocations that are not allocations (e.g. a plug-in's
    /// unknown type): the whole set is refused like any invalid set.
    #[error(transparent)]
    Invalid(#[from] InvalidAllocations),
    /// The plug-in did not answer (or is waiting to be restarted after it failed).
    #[error(transparent)]
    Plugin(Arc<PluginError>),
}

/// A running allocator; `allocate` is async for the plug-in's exchange.
pub enum Allocator {
    Nop,
    Static(StaticAllocator),
    // Boxed, as the plug-in: its counters and CPI history are large and there is one
    // allocator per agent.
    Collocation(Box<CollocationAllocator>),
    // Boxed: the process state is large and there is one allocator per agent.
    External(Box<Plugin>),
}

impl AllocatorConfig {
    /// The allocator; an error for settings that can never work (bad inline rules).
    pub fn build(self) -> Result<Allocator, AllocatorError> {
        Ok(match self {
            Self::Nop => Allocator::Nop,
            Self::Static(c) => Allocator::Static(StaticAllocator::new(c)?),
            Self::Collocation(c) => Allocator::Collocation(Box::new(CollocationAllocator::new(c)?)),
            Self::External(c) => Allocator::External(Box::new(Plugin::new(c))),
        })
    }
}

impl Allocator {
    /// Names the allocator in errors.
    pub fn name(&self) -> &str {
        match self {
            Self::Nop => "NOPAllocator",
            Self::Static(_) => "StaticAllocator",
            Self::Collocation(_) => "CollocationAllocator",
            Self::External(p) => p.name(),
        }
    }

    /// Decides one iteration's allocations.
    pub async fn allocate(&mut self, obs: &Observation) -> Result<Decision, AllocatorError> {
        match self {
            Self::Nop => Ok(Decision::default()),
            Self::Static(a) => {
                let (allocations, problem) = a.allocate(obs);
                Ok(Decision {
                    allocations,
                    problems: problem.map(AllocatorError::from).into_iter().collect(),
                    ..Default::default()
                })
            }
            Self::Collocation(a) => {
                let d = a.allocate(obs);
                Ok(Decision {
                    allocations: d.allocations,
                    anomalies: d.anomalies,
                    metrics: d.metrics,
                    problems: Vec::new(),
                })
            }
            Self::External(p) => {
                let answer = p.exchange(obs).await.map_err(AllocatorError::Plugin)?;
                let allocations = answer
                    .allocations
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(id, v)| Ok((id.clone(), TaskAllocations::from_json(&id, &v)?)))
                    .collect::<Result<_, InvalidAllocations>>()?;
                Ok(Decision {
                    allocations,
                    anomalies: answer.anomalies.into_iter().map(Into::into).collect(),
                    metrics: answer.metrics.into_iter().map(Into::into).collect(),
                    problems: Vec::new(),
                })
            }
        }
    }
}
