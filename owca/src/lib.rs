//! OWCA: an orchestration-aware workload collocation agent for Mesos nodes.
//!
//! Data flows one way, once per `action_delay`:
//! node → containers → measurements → detector/allocator → storage.

pub mod allocators;
pub mod cgroups;
pub mod collector;
pub mod config;
pub mod detectors;
pub mod metrics;
pub mod nodes;
pub mod platform;
pub mod plugins;
pub mod resctrl;
pub mod runners;
pub mod storage;
pub mod tasks_data;
