//! RDT allocation for the allocation runner: whether it is on, the checks OWCA made at
//! start, and the per-iteration calls into [`RdtControl`].

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::{ErrorCounter, RunnerError};
use crate::{
    allocators::{AllocationConfiguration, TasksAllocations},
    resctrl::{RdtAllocation, RdtControl},
};

/// What the runner's config asks of RDT allocation.
pub struct RdtWanted {
    /// Unset = on iff resctrl is mounted.
    pub enabled: Option<bool>,
    /// Refuse to start without L3 cache allocation.
    pub cache_control_required: bool,
    /// Refuse to start without memory bandwidth allocation.
    pub mb_control_required: bool,
    /// Remove every control group found at start.
    pub remove_all_groups: bool,
}

/// Opens RDT allocation as configured; `None` when off. Errors stop the agent, as OWCA
/// halted when a required feature was missing.
pub fn open(
    wanted: &RdtWanted,
    cfg: &AllocationConfiguration,
) -> Result<Option<RdtControl>, RunnerError> {
    let root = super::rdt::root_from_env();
    let mounted = root.join("info").exists();
    let required = wanted.cache_control_required || wanted.mb_control_required;
    let on = match wanted.enabled {
        Some(false) if required => {
            return Err(RunnerError::Config(
                "rdt_cache_control_required/rdt_mb_control_required need rdt_enabled".into(),
            ));
        }
        Some(false) => false,
        Some(true) => true,
        None => mounted || required,
    };
    if !on {
        info!(root = %root.display(), "RDT allocation is off");
        return Ok(None);
    }
    let control = match RdtControl::open(&root, wanted.remove_all_groups) {
        Ok(c) => c,
        Err(e) if wanted.enabled.is_none() && !required => {
            warn!("RDT allocation unavailable, allocating cgroups only: {e}");
            return Ok(None);
        }
        Err(e) => {
            return Err(RunnerError::Config(format!("rdt_enabled: {e}")));
        }
    };
    let caps = control.capabilities();
    if wanted.cache_control_required && caps.cbm_mask.is_none() {
        return Err(RunnerError::Config(format!(
            "rdt_cache_control_required: {} offers no L3 cache allocation",
            root.display()
        )));
    }
    if wanted.mb_control_required && caps.mb.is_none() {
        return Err(RunnerError::Config(format!(
            "rdt_mb_control_required: {} offers no memory bandwidth allocation",
            root.display()
        )));
    }
    let mut control = control;
    set_root_defaults(&mut control, cfg)?;
    info!(root = %root.display(), "RDT allocation through resctrl control groups");
    Ok(Some(control))
}

/// `default_rdt_l3`/`default_rdt_mb` written to the root group, checked first.
fn set_root_defaults(
    control: &mut RdtControl,
    cfg: &AllocationConfiguration,
) -> Result<(), RunnerError> {
    if cfg.default_rdt_l3.is_none() && cfg.default_rdt_mb.is_none() {
        return Ok(());
    }
    let root = RdtAllocation {
        name: Some(String::new()),
        l3: cfg.default_rdt_l3.clone(),
        mb: cfg.default_rdt_mb.clone(),
    };
    const ROOT: &str = "root group";
    let check = BTreeMap::from([(ROOT.to_owned(), root.clone())]);
    control
        .validate(&check)
        .map_err(|e| RunnerError::Config(format!("allocation_configuration: {e}")))?;
    control
        .apply(ROOT, &root, &[])
        .map_err(|e| RunnerError::Config(format!("allocation_configuration: {e}")))
}

/// Fills in each task's current `rdt` from the kernel.
pub fn read_current(
    control: &RdtControl,
    threads: &BTreeMap<String, Vec<u32>>,
    current: &mut TasksAllocations,
    errors: &mut ErrorCounter,
) {
    match control.current(threads) {
        Ok(by_task) => {
            for (id, rdt) in by_task {
                current.entry(id).or_default().rdt = Some(rdt);
            }
        }
        Err(e) => errors.record("resctrl", "current allocations", &e),
    }
}
