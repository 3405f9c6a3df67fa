//! OWCA: an orchestration-aware workload collocation agent for Mesos nodes.
//!
//! Data flows one way, once per `action_delay`:
//! node → containers → measurements → detector/allocator → storage.
//! Modules are grouped by layer, lowest first; a module imports only modules of the groups
//! before its own (checked by `../shared/tools/modgraph.py owca/src`).

// Vocabulary: metric values and names, the anomaly model, YAML loading.
pub mod anomaly;
pub mod config;
pub mod metrics;

// The machine: cgroups, the eBPF collector, resctrl, the platform, privileges.
pub mod cgroups;
pub mod platform;
pub mod privileges;
pub mod resctrl;

pub mod collector;

// The stages: tasks → containers → measurements.
pub mod nodes;

pub mod containers;

pub mod measurements;

// Deciding: plug-ins, detectors, allocators; applying: allocation.
pub mod plugins;

pub mod allocators;
pub mod detectors;

pub mod allocation;

// Output formats, then the loops that run it all.
pub mod storage;

pub mod runners;
