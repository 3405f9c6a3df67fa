//! OWCA: an orchestration-aware workload collocation agent for Mesos nodes.
//!
//! Data flows one way, once per `action_delay`:
//! node → containers → measurements → detector/allocator → storage.
//! Modules are listed lowest layer first; each imports only modules listed before it.

pub mod allocation;
pub mod allocators;
pub mod anomaly;
pub mod cgroups;
pub mod collector;
pub mod config;
pub mod containers;
pub mod detectors;
pub mod measurements;
pub mod metrics;
pub mod nodes;
pub mod platform;
pub mod plugins;
pub mod privileges;
pub mod resctrl;
pub mod runners;
pub mod storage;
