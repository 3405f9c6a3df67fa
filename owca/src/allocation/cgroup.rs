//! The cgroup side of allocations: a task's cpu types as the kernel holds them, and the
//! writes that change them. RDT is `resctrl::control`'s.

use std::collections::BTreeSet;

use super::AllocationConfiguration;
use crate::{
    allocators::TaskAllocations,
    cgroups::{
        Cgroup, CgroupError,
        cpu_list::{format_cpu_list, parse_cpu_list},
    },
};

/// `cpu_quota`, `cpu_shares`, `cpu_idle` and `cpu_set` read from the task's cgroup,
/// normalized; a type whose files are absent (the cgroup is not in that hierarchy, or the
/// kernel has no `cpu.idle`) is left out.
pub fn current(
    cg: &Cgroup<'_>,
    cfg: &AllocationConfiguration,
    cpus: usize,
) -> Result<TaskAllocations, CgroupError> {
    let mut out = TaskAllocations::default();
    if let Some(l) = cg.cpu_limits()? {
        out.cpu_quota = Some(AllocationConfiguration::normalized_quota(
            l.quota_us,
            l.period_us,
            cpus,
        ));
        out.cpu_shares = Some(cfg.normalized_shares(l.shares));
    }
    out.cpu_idle = cg.cpu_idle()?;
    out.cpu_set = cg.cpuset_cpus()?.map(|set| format_cpu_list(&set));
    Ok(out)
}

/// Writes the cpu types `change` sets, each on its own (`online_mems`: the memory nodes
/// online, for a cpuset whose mems must change, see [`Cgroup::set_cpuset`]): one refused write (the task gone,
/// EINVAL) does not stop the others. Returns what succeeded and the failures by type.
pub fn apply(
    cg: &Cgroup<'_>,
    change: &TaskAllocations,
    cfg: &AllocationConfiguration,
    cpus: usize,
    online_mems: &BTreeSet<u32>,
) -> (TaskAllocations, Vec<(&'static str, CgroupError)>) {
    let mut done = TaskAllocations::default();
    let mut failed = Vec::new();
    // Shares are refused while the group is idle: leave idle before, enter it after.
    if change.cpu_idle == Some(false) {
        set_idle(cg, false, &mut done, &mut failed);
    }
    if let Some(q) = change.cpu_quota {
        match cg.set_cpu_quota(cfg.quota_us(q, cpus), cfg.cpu_quota_period) {
            Ok(()) => done.cpu_quota = Some(q),
            Err(e) => failed.push(("cpu_quota", e)),
        }
    }
    if let Some(s) = change.cpu_shares {
        match cg.set_cpu_shares(cfg.shares(s)) {
            Ok(()) => done.cpu_shares = Some(s),
            Err(e) => failed.push(("cpu_shares", e)),
        }
    }
    if let Some(set) = &change.cpu_set {
        // Validated before: a list that no longer parses is a bug, not the kernel's refusal.
        match parse_cpu_list(set) {
            Ok(list) => match cg.set_cpuset(&list, online_mems) {
                Ok(()) => done.cpu_set = Some(set.clone()),
                Err(e) => failed.push(("cpu_set", e)),
            },
            Err(e) => failed.push((
                "cpu_set",
                CgroupError::Parse {
                    path: cg.path().into(),
                    content: e.list,
                },
            )),
        }
    }
    if change.cpu_idle == Some(true) {
        set_idle(cg, true, &mut done, &mut failed);
    }
    (done, failed)
}

fn set_idle(
    cg: &Cgroup<'_>,
    idle: bool,
    done: &mut TaskAllocations,
    failed: &mut Vec<(&'static str, CgroupError)>,
) {
    match cg.set_cpu_idle(idle) {
        Ok(()) => done.cpu_idle = Some(idle),
        Err(e) => failed.push(("cpu_idle", e)),
    }
}
