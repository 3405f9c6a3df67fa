//! Maps and read-only globals. Their names are the `MAP_*` and `GLOBAL_*` constants in
//! `owca_common`; the agent's test `ebpf_object` checks that the object has them all.
//!
//! Why this layout: a first program doing one hash update per switch cost 0.3-0.5 µs per
//! switch. Here a switch touches only this CPU's `CPU_STATE` (an inlined array lookup):
//! the cgroup of the incoming task is found in a small per-CPU cache keyed by the
//! addresses of its v1 css and v2 cgroup, its counts gather in that cache entry, and
//! `SLOTS` (a hash) is looked up only when an entry is replaced, when a CPU leaves
//! watched tasks, and at the periodic flush; the counts are then added atomically to the
//! cgroup's slot of `COUNTERS` and `CONTENDERS`, arrays the agent memory-maps, so it reads
//! every watched cgroup without a system call and in bytes independent of the CPU count.
//! Time and run-queue wait are the scheduler's own per-task sums (`se.sum_exec_runtime`,
//! `sched_info.run_delay`) read at switch-in and switch-out, so no clock is read and no
//! per-task map or wakeup program is needed. Hardware counters are read only when the
//! watched cgroup on a CPU changes, as bperf-cgroup does.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerfEventArray},
};
use owca_common::{
    CgroupCounters, ContenderTable, CpuState, DEFAULT_MAX_CGROUPS, KernelOffsets, WatchConfig,
};

/// `MAP_SLOTS`: the watched cgroups and their slots. Not per-CPU.
/// - Key: watched cgroup key (kernfs id, `V1_ID_TAG` set for v1).
/// - Value: the cgroup's slot (index) in `COUNTERS` and `CONTENDERS`.
/// - Writer: the agent inserts a key to watch (after zeroing its slot) and deletes it to
///   unwatch, so the map holds exactly the watched set.
/// - Reader: the programs, to find watched cgroups and their slots.
/// - `max_entries`: the most cgroups watched at once; `DEFAULT_MAX_CGROUPS` here, replaced
///   at load by the agent's `max_cgroups`. Preallocated, so watching a burst of cgroups
///   never fails for want of kernel memory.
#[map]
pub static SLOTS: HashMap<u64, u32> = HashMap::with_max_entries(DEFAULT_MAX_CGROUPS, 0);

/// `MAP_COUNTERS`: the counters of each watched cgroup, summed over CPUs. Not per-CPU.
/// - Key: the cgroup's slot.
/// - Value: [`CgroupCounters`].
/// - Writer: the programs add each CPU's pending counts with atomic adds; the agent zeroes
///   a slot before handing it to a newly watched cgroup.
/// - Reader: the agent, through a shared memory mapping (`BPF_F_MMAPABLE`).
/// - `max_entries`: as `SLOTS`, replaced at load.
#[map]
pub static COUNTERS: Array<CgroupCounters> =
    Array::with_max_entries(DEFAULT_MAX_CGROUPS, BPF_F_MMAPABLE);

/// `MAP_CONTENDERS`: who ran while each watched cgroup's tasks waited. Not per-CPU.
/// - Key: the cgroup's slot.
/// - Value: [`ContenderTable`].
/// - Writer: the programs claim entries and add with atomic operations; the agent zeroes
///   a slot before reuse.
/// - Reader: the agent, memory-mapped like `COUNTERS`.
/// - `max_entries`: as `SLOTS`, replaced at load.
#[map]
pub static CONTENDERS: Array<ContenderTable> =
    Array::with_max_entries(DEFAULT_MAX_CGROUPS, BPF_F_MMAPABLE);

/// `MAP_CPU_STATE`: the programs' state on each CPU. Per-CPU.
/// - Key: always 0.
/// - Value: [`CpuState`]: the resolution cache with its pending counts, and what the
///   running task had counted when switched in.
/// - Writer and reader: both programs, on their own CPU only (both run with interrupts off
///   there, so they never interleave). The agent never touches it.
/// - `max_entries`: 1, one state per CPU.
#[map]
pub static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// `MAP_WATCH_CONFIG`: which levels hold watched cgroups. Not per-CPU: one shared value.
/// - Key: `WATCH_CONFIG_INDEX` (0).
/// - Value: [`WatchConfig`]: the level ranges of watched cgroups and a generation.
/// - Writer: the agent, after every watch/unwatch.
/// - Reader: both programs.
/// - `max_entries`: 1, a single configuration.
#[map]
pub static WATCH_CONFIG: Array<WatchConfig> = Array::with_max_entries(1, 0);

/// `MAP_PERF_COUNTERS[N]`: the perf fds counting event slot N, one array per slot (a
/// program can read one value per array and CPU). Not per-CPU, but indexed by CPU.
/// - Key: CPU number.
/// - Value: the perf fd counting the slot's event on that CPU.
/// - Writer: the agent (one perf fd per CPU and event, never per task).
/// - Reader: the programs, with `bpf_perf_event_read_value` on the local CPU only.
/// - `max_entries`: 0 here; aya sizes perf event arrays to the number of CPUs at load.
#[map]
pub static PERF_COUNTERS_0: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 1, as [`PERF_COUNTERS_0`].
#[map]
pub static PERF_COUNTERS_1: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 2, as [`PERF_COUNTERS_0`].
#[map]
pub static PERF_COUNTERS_2: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 3, as [`PERF_COUNTERS_0`].
#[map]
pub static PERF_COUNTERS_3: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 4, as [`PERF_COUNTERS_0`].
#[map]
pub static PERF_COUNTERS_4: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 5, as [`PERF_COUNTERS_0`].
#[map]
pub static PERF_COUNTERS_5: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 6, as [`PERF_COUNTERS_0`].
#[map]
pub static PERF_COUNTERS_6: PerfEventArray<u32> = PerfEventArray::new(0);
/// Slot 7, as [`PERF_COUNTERS_0`].
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

/// `GLOBAL_OFFSETS`: offsets into kernel structures, from the running kernel's BTF. Set by
/// the agent at load (`override_global`); read-only, so the verifier sees constants.
// SAFETY: the only symbol of this name in the object (the loader finds the global by it)
// and in nothing it is linked with.
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

/// `GLOBAL_NUM_PERF_EVENTS`: number of hardware event slots in use. Set by the agent at
/// load (`override_global`).
// SAFETY: as for `OFFSETS`, a unique symbol name.
#[unsafe(no_mangle)]
pub static NUM_PERF_EVENTS: u32 = 0;
