//! RDT allocation: whether it is on, the checks OWCA made at start, and the per-iteration
//! read-back of each task's control group.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use thiserror::Error;
use tracing::{info, warn};

use super::AllocationConfiguration;
use crate::{
    allocators::TasksAllocations,
    metrics::SelfMetrics,
    resctrl::{InvalidRdt, RdtAllocation, RdtControl, ResctrlError},
};

/// What the runner's config asks of RDT allocation.
pub struct RdtWanted<'a> {
    /// Where resctrl is mounted.
    pub root: &'a Path,
    /// Unset = on iff resctrl is mounted.
    pub enabled: Option<bool>,
    /// Refuse to start without L3 cache allocation.
    pub cache_control_required: bool,
    /// Refuse to start without memory bandwidth allocation.
    pub mb_control_required: bool,
    /// Remove every control group found at start.
    pub remove_all_groups: bool,
}

/// Why RDT allocation could not start as configured; the agent stops, as OWCA halted when
/// a required feature was missing.
#[derive(Debug, Error)]
pub enum RdtStartError {
    /// A `*_required` setting with `rdt_enabled: false`.
    #[error("rdt_cache_control_required/rdt_mb_control_required need rdt_enabled")]
    RequiredButDisabled,
    /// resctrl could not be opened for allocation.
    #[error("rdt_enabled: {0}")]
    Unavailable(#[source] ResctrlError),
    /// `rdt_cache_control_required` on hardware without L3 allocation.
    #[error("rdt_cache_control_required: {} offers no L3 cache allocation", root.display())]
    NoCacheControl {
        /// The resctrl root.
        root: PathBuf,
    },
    /// `rdt_mb_control_required` on hardware without memory bandwidth allocation.
    #[error("rdt_mb_control_required: {} offers no memory bandwidth allocation", root.display())]
    NoMbControl {
        /// The resctrl root.
        root: PathBuf,
    },
    /// `default_rdt_l3`/`default_rdt_mb` refused by the checks.
    #[error("allocation_configuration: {0}")]
    InvalidDefaults(#[source] InvalidRdt),
    /// `default_rdt_l3`/`default_rdt_mb` could not be written to the root group.
    #[error("allocation_configuration: {0}")]
    WritingDefaults(#[source] ResctrlError),
}

/// Opens RDT allocation as configured; `None` when off.
pub fn open(
    wanted: &RdtWanted<'_>,
    cfg: &AllocationConfiguration,
) -> Result<Option<RdtControl>, RdtStartError> {
    let root = wanted.root;
    let mounted = root.join("info").exists();
    let required = wanted.cache_control_required || wanted.mb_control_required;
    let on = match wanted.enabled {
        Some(false) if required => return Err(RdtStartError::RequiredButDisabled),
        Some(false) => false,
        Some(true) => true,
        None => mounted || required,
    };
    if !on {
        info!(root = %root.display(), "RDT allocation is off");
        return Ok(None);
    }
    let mut control = match RdtControl::open(root, wanted.remove_all_groups) {
        Ok(c) => c,
        Err(e) if wanted.enabled.is_none() && !required => {
            warn!("RDT allocation unavailable, allocating cgroups only: {e}");
            return Ok(None);
        }
        Err(e) => return Err(RdtStartError::Unavailable(e)),
    };
    let caps = control.capabilities();
    if wanted.cache_control_required && caps.cbm_mask.is_none() {
        return Err(RdtStartError::NoCacheControl {
            root: root.to_owned(),
        });
    }
    if wanted.mb_control_required && caps.mb.is_none() {
        return Err(RdtStartError::NoMbControl {
            root: root.to_owned(),
        });
    }
    set_root_defaults(&mut control, cfg)?;
    info!(root = %root.display(), "RDT allocation through resctrl control groups");
    Ok(Some(control))
}

/// `default_rdt_l3`/`default_rdt_mb` written to the root group, checked first.
fn set_root_defaults(
    control: &mut RdtControl,
    cfg: &AllocationConfiguration,
) -> Result<(), RdtStartError> {
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
        .map_err(RdtStartError::InvalidDefaults)?;
    control
        .apply(ROOT, &root, &[])
        .map_err(RdtStartError::WritingDefaults)
}

/// Fills in each task's current `rdt` from the kernel.
pub fn read_current(
    control: &RdtControl,
    threads: &BTreeMap<String, Vec<u32>>,
    current: &mut TasksAllocations,
    stats: &mut SelfMetrics,
) {
    match control.current(threads) {
        Ok(by_task) => {
            for (id, rdt) in by_task {
                current.entry(id).or_default().rdt = Some(rdt);
            }
        }
        Err(e) => stats.record("resctrl", "current allocations", &e),
    }
}
