//! RDT monitoring through resctrl: one monitoring group per task, read each iteration for
//! OWCA's `memory_bandwidth` and `llc_occupancy`.
//!
//! The files used (kernel docs, `Documentation/filesystems/resctrl.rst`):
//! ```text
//! <root>/info/                       present whenever resctrl is mounted
//! <root>/info/last_cmd_status        the kernel's reason for the last failed command
//! <root>/tasks                       threads of the default group
//! <root>/mon_groups/                 present only when the CPU can monitor (CQM/MBM)
//!   owca-<task>/                     one per task, made by OWCA with mkdir; the kernel
//!                                    fills it with `tasks`, `mon_data/`, ...
//!     tasks                          one thread id per write() moves that thread in
//!     mon_data/mon_L3_<NN>/          one per L3 cache domain (socket, or SNC group)
//!       llc_occupancy                bytes of L3 the group holds now
//!       mbm_total_bytes              bytes moved to and from memory since the group's creation
//! ```
//! A monitoring group must be under the control group holding the task's threads (the
//! kernel answers EINVAL otherwise): under the root group, or `<root>/<control group>/
//! mon_groups/` once an allocation moved the task (see [`Resctrl::set_control_group`];
//! allocation itself is in [`control`]).
//!
//! - `monitoring.rs`: [`Resctrl`], the monitoring groups of the measured tasks;
//! - `measurement.rs`: [`ResctrlMeasurement`], a group's readings summed over L3 domains;
//! - [`control`]: [`RdtControl`], allocation through control groups, with [`schemata`]
//!   lines;
//! - `files.rs`: thread moves, group removal and the kernel's status, shared by both;
//! - `name.rs`: a task's group name; `error.rs`: [`ResctrlError`].
//!
//! The root is given by the caller, normally [`DEFAULT_ROOT`]; nothing here reads the
//! environment. Tests run against a resctrl-shaped temp tree only: the development
//! machines have no RDT, so nothing here has been exercised on a real resctrl mount in
//! tests.

pub mod control;
#[cfg(test)]
mod control_tests;
mod error;
mod files;
mod measurement;
mod monitoring;
mod name;
pub mod schemata;

pub use self::{
    control::{InvalidRdt, MbCapabilities, RdtAllocation, RdtCapabilities, RdtControl},
    error::ResctrlError,
    measurement::{ResctrlMeasurement, measure_mon_data},
    monitoring::Resctrl,
    name::{GROUP_PREFIX, group_name},
};

/// Where resctrl is normally mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/resctrl";
/// Environment variable naming another mount root (e.g. a test tree); empty means unset.
/// Read once by the binary (it overrides the runner's `resctrl_root`), never by this
/// module, which takes its root as an argument.
pub const ROOT_ENV: &str = "OWCA_RESCTRL_ROOT";

const MON_GROUPS: &str = "mon_groups";
const MON_DATA: &str = "mon_data";
const TASKS: &str = "tasks";
const L3_DOMAIN_PREFIX: &str = "mon_L3_";
const MBM_TOTAL: &str = "mbm_total_bytes";
const LLC: &str = "llc_occupancy";
/// What the kernel prints instead of a number when it has none: "Unavailable" (no valid
/// reading, e.g. the RMID is not counted in that domain), "Error" (the hardware read
/// failed), "Unassigned" (no counter assigned, newer kernels' mbm_assign_mode).
const NO_VALUE: [&str; 3] = ["Unavailable", "Error", "Unassigned"];
