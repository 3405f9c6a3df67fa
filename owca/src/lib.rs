//! OWCA: an orchestration-aware workload collocation agent for Mesos nodes.
//!
//! Data flows one way, once per `action_delay`:
//! node → containers → measurements → detector/allocator → storage.
//! Modules are listed lowest layer first, in groups; a module imports only modules of the
//! groups above its own (`../shared/tools/modgraph.py owca/src` finds no circle).

// Vocabulary: metric values and names, the anomaly model, YAML loading.
pub mod metrics;

pub mod anomaly;
pub mod config;

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

// Output formats, then the loops that run it all, and `owca top`, a client of a running
// agent's output.
pub mod storage;

pub mod runners;
pub mod top;
