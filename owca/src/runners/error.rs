//! Why a runner could not start.

use thiserror::Error;

use crate::{
    allocation::ApplierError, allocators::AllocatorError, cgroups::CgroupError,
    collector::CollectorError, detectors::ContentionDetectorError, nodes::NodeError,
    platform::PlatformError, privileges::PrivilegeError, storage::StorageError,
};

/// Why a runner could not start; each names the setting or the part of the machine.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// An `extra_labels` key is not a label name, or one the agent sets itself.
    #[error("extra_labels: {name:?} {reason}")]
    ExtraLabel {
        /// The key.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The node's settings cannot work (e.g. unreadable certificate files).
    #[error("node: {0}")]
    Node(#[source] NodeError),
    /// The mount table could not be read.
    #[error("reading cgroup mounts: {0}")]
    Mounts(#[source] CgroupError),
    /// No hierarchy to count tasks in.
    #[error("reading cgroup mounts: neither a v1 {controller} hierarchy nor cgroup v2 is mounted")]
    NoHierarchy {
        /// The v1 controller looked for.
        controller: String,
    },
    /// The eBPF collector could not be loaded.
    #[error("starting the eBPF collector: {0}")]
    Collector(#[from] CollectorError),
    /// Capabilities could not be dropped after loading the collector.
    #[error("dropping capabilities after loading the eBPF collector: {0}")]
    Privileges(#[from] PrivilegeError),
    /// The platform could not be read.
    #[error("reading the platform for common labels: {0}")]
    Platform(#[source] PlatformError),
    /// A storage could not be created.
    #[error("creating the {field}: {source}")]
    Storage {
        /// `metrics_storage`, `anomalies_storage` or `allocations_storage`.
        field: &'static str,
        /// Why.
        source: StorageError,
    },
    /// The allocator's settings can never work (e.g. invalid inline rules).
    #[error("allocator: {0}")]
    Allocator(#[source] AllocatorError),
    /// The detector's settings can never work (e.g. a bad label pattern).
    #[error("detector: {0}")]
    Detector(#[source] ContentionDetectorError),
    /// `allocation_configuration` or RDT allocation cannot work.
    #[error(transparent)]
    Allocation(#[from] ApplierError),
}
