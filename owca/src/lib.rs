//! OWCA: an orchestration-aware workload collocation agent for Mesos nodes.
//!
//! Data flows one way, once per `action_delay`:
//! node → containers → measurements → detector/allocator → storage.
//! Modules are listed lowest layer first; each imports only modules listed before it.

pub mod metrics;
pub mod anomaly;
pub mod config;
pub mod cgroups;
pub mod collector;
pub mod resctrl;
pub mod platform;
pub mod nodes;
pub mod containers;
pub mod measurements;
pub mod plugins;
pub mod detectors;
pub mod allocators;
pub mod allocation;
pub mod storage;
pub mod runners;
