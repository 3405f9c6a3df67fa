//! Kernel structure offsets for the programs, from the running kernel's BTF.

use owca_common::KernelOffsets;
use tracing::warn;

use super::btf::{Btf, BtfError};

/// Computes the offsets; `controller` (e.g. `cpuacct`) picks the v1 hierarchy: its
/// `enum cgroup_subsys_id` value, not the hierarchy id of /proc/cgroups, indexes
/// `css_set.subsys`.
pub fn compute(btf: &Btf, controller: &str) -> Result<KernelOffsets, BtfError> {
    let variant = format!("{controller}_cgrp_id");
    let subsys_id = btf.enum_value("cgroup_subsys_id", &variant)?;
    let subsys_id = u32::try_from(subsys_id)
        .map_err(|_| BtfError::Missing(format!("valid {variant} value")))?;
    let elem = btf.array_elem_size("css_set", "subsys")?;
    let kn_parent = btf
        .offset_of("kernfs_node", "__parent")
        .or_else(|_| btf.offset_of("kernfs_node", "parent"))?;
    let task_run_delay = match btf.offset_of("task_struct", "sched_info.run_delay") {
        Ok(off) => off,
        Err(BtfError::Missing(what)) => {
            warn!(missing = %what, "kernel lacks CONFIG_SCHED_INFO: run-queue latency will not be exported");
            0
        }
        Err(e) => return Err(e),
    };
    Ok(KernelOffsets {
        task_cgroups: btf.offset_of("task_struct", "cgroups")?,
        task_pid: btf.offset_of("task_struct", "pid")?,
        task_run_delay,
        task_sum_exec: btf.offset_of("task_struct", "se.sum_exec_runtime")?,
        cset_subsys: btf.offset_of("css_set", "subsys")? + elem * subsys_id,
        cset_dfl_cgrp: btf.offset_of("css_set", "dfl_cgrp")?,
        css_cgroup: btf.offset_of("cgroup_subsys_state", "cgroup")?,
        cgroup_kn: btf.offset_of("cgroup", "kn")?,
        cgroup_level: btf.offset_of("cgroup", "level")?,
        kn_id: btf.offset_of("kernfs_node", "id")?,
        kn_parent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsystem_index_follows_the_kernel_enum() {
        let btf = Btf::from_kernel().expect("this test needs /sys/kernel/btf/vmlinux");
        // /proc/cgroups lists subsystems in `enum cgroup_subsys_id` order.
        let text = std::fs::read_to_string("/proc/cgroups").unwrap();
        let order: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for s in ["cpuacct", "cpu", "memory"] {
            let id = btf
                .enum_value("cgroup_subsys_id", &format!("{s}_cgrp_id"))
                .unwrap();
            assert_eq!(order.iter().position(|c| *c == s), Some(id as usize));
        }
        let a = compute(&btf, "cpuacct").unwrap();
        let c = compute(&btf, "cpu").unwrap();
        assert!(matches!(
            compute(&btf, "nonsense"),
            Err(BtfError::Missing(_))
        ));
        assert_ne!(a.cset_subsys, c.cset_subsys);
        assert!(a.task_run_delay != 0 && a.kn_id != 0 && a.cgroup_kn != 0);
    }
}
