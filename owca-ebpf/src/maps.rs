//! Maps and read-only globals. Names are the constants in `owca_common`.
//!
//! Why this layout: a first program doing one hash update per switch cost 0.3-0.5 µs per
//! switch. Here a switch touches only this CPU's `CPU_STATE` (an inlined array lookup):
//! the cgroup of the incoming task is found in a small per-CPU cache keyed by `css_set`
//! address, its counts gather in that cache entry, and `COUNTERS` (a hash) is looked up
//! only when an entry is replaced, when a CPU leaves watched tasks, and at the periodic
//! flush. Time and run-queue wait are the scheduler's own per-task sums
//! (`se.sum_exec_runtime`, `sched_info.run_delay`) read at switch-in and switch-out, so
//! no clock is read and no per-task map or wakeup program is needed. Hardware counters
//! are read only when the watched cgroup on a CPU changes, as bperf-cgroup does.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, PerfEventArray},
};
use owca_common::{CgroupCounters, CpuState, DEFAULT_MAX_CGROUPS, KernelOffsets, WatchConfig};

/// Key: watched cgroup key (kernfs id, `V1_ID_TAG` set for v1). Value: its counters on
/// each CPU. Writer: the agent inserts a zeroed entry to watch and deletes it to unwatch;
/// the programs only add to existing entries, so the map holds exactly the watched set.
/// Reader: the agent, summing CPUs. Per-CPU so adds need no atomics; no preallocation so
/// memory follows the watched cgroups, not capacity × CPUs. Capacity set by the agent.
#[map]
pub static COUNTERS: PerCpuHashMap<u64, CgroupCounters> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_CGROUPS, BPF_F_NO_PREALLOC);

/// One entry per CPU: the resolution cache with its pending counts, and what the running
/// task had counted when switched in. Written and read by both programs on their own CPU
/// only (both run with interrupts off there, so they never interleave); the agent never
/// touches it.
#[map]
pub static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// One entry: the level ranges of watched cgroups and a generation. Written by the agent
/// after every watch/unwatch; read by the switch program.
#[map]
pub static WATCH_CONFIG: Array<WatchConfig> = Array::with_max_entries(1, 0);

/// Index: CPU. Value: the perf fd counting event slot N on that CPU, one array per slot.
/// Written by the agent (one perf fd per CPU and event, never per task); read by the
/// programs with `bpf_perf_event_read_value` on the local CPU only.
#[map]
pub static PERF_COUNTERS_0: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_1: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_2: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_3: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_4: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_5: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_6: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_COUNTERS_7: PerfEventArray<u32> = PerfEventArray::new(0);

/// The perf event array of a slot.
#[inline(always)]
pub fn perf_counters(slot: usize) -> Option<&'static PerfEventArray<u32>> {
    Some(match slot {
        0 => &PERF_COUNTERS_0,
        1 => &PERF_COUNTERS_1,
        2 => &PERF_COUNTERS_2,
        3 => &PERF_COUNTERS_3,
        4 => &PERF_COUNTERS_4,
        5 => &PERF_COUNTERS_5,
        6 => &PERF_COUNTERS_6,
        7 => &PERF_COUNTERS_7,
        _ => return None,
    })
}

/// Offsets into kernel structures, from the running kernel's BTF. Set by the agent at load.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    task_cgroups: 0,
    task_pid: 0,
    task_run_delay: 0,
    task_sum_exec: 0,
    cset_subsys: 0,
    cset_dfl_cgrp: 0,
    css_cgroup: 0,
    cgroup_kn: 0,
    cgroup_level: 0,
    kn_id: 0,
    kn_parent: 0,
};

/// Number of hardware event slots in use. Set by the agent at load.
#[unsafe(no_mangle)]
pub static NUM_PERF_EVENTS: u32 = 0;
