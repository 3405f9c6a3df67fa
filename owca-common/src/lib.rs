//! Types and constants shared by the kernel programs (`owca-ebpf`) and the agent (`owca`).
//!
//! Map values are `#[repr(C)]`, `Copy`, fixed-width integers only, with explicit padding:
//! no `bool`, enums or `Option`, so both sides agree on every byte.
#![no_std]

// Names in the kernel object. The kernel side cannot use these constants (the `#[map]`
// and `#[no_mangle]` names are the statics' identifiers, and the program names the
// functions'), so the agent's test `ebpf_object` checks the object against them.

/// Name of the counters array: at a watched cgroup's slot, its [`CgroupCounters`] summed
/// over CPUs (an array the agent memory-maps: `BPF_F_MMAPABLE`).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the watched-cgroup index: key the cgroup key (`u64`), value its slot (`u32`) in
/// [`MAP_COUNTERS`] and [`MAP_CONTENDERS`] (a preallocated hash).
pub const MAP_SLOTS: &str = "SLOTS";
/// Name of the contenders array: at a watched cgroup's slot, its [`ContenderTable`] (who ran
/// while its tasks waited), memory-mapped like [`MAP_COUNTERS`].
pub const MAP_CONTENDERS: &str = "CONTENDERS";
/// Name of the programs' per-CPU state map: one [`CpuState`] per CPU (per-CPU array). The
/// agent does not use it.
pub const MAP_CPU_STATE: &str = "CPU_STATE";
/// Name of the one-element array holding the [`WatchConfig`] at [`WATCH_CONFIG_INDEX`].
pub const MAP_WATCH_CONFIG: &str = "WATCH_CONFIG";
/// Names of the perf event arrays, one per counter event slot, each holding that event's
/// perf fd for every CPU (aya sizes perf event arrays to the CPU count, hence one per slot).
pub const MAP_PERF_COUNTERS: [&str; MAX_PERF_EVENTS] = [
    "PERF_COUNTERS_0",
    "PERF_COUNTERS_1",
    "PERF_COUNTERS_2",
    "PERF_COUNTERS_3",
    "PERF_COUNTERS_4",
    "PERF_COUNTERS_5",
    "PERF_COUNTERS_6",
    "PERF_COUNTERS_7",
];
/// The maps the kernel object must contain besides [`MAP_PERF_COUNTERS`].
pub const MAP_NAMES: [&str; 5] = [
    MAP_COUNTERS,
    MAP_SLOTS,
    MAP_CONTENDERS,
    MAP_CPU_STATE,
    MAP_WATCH_CONFIG,
];
/// Index of the one entry of the [`MAP_WATCH_CONFIG`] array.
pub const WATCH_CONFIG_INDEX: u32 = 0;

/// Name of the read-only global holding the [`KernelOffsets`], which the agent sets at
/// load (`EbpfLoader::override_global`).
pub const GLOBAL_OFFSETS: &str = "OFFSETS";
/// Name of the read-only `u32` global holding the number of counter event slots in use,
/// which the agent sets at load.
pub const GLOBAL_NUM_PERF_EVENTS: &str = "NUM_PERF_EVENTS";
/// The globals the agent sets at load.
pub const GLOBAL_NAMES: [&str; 2] = [GLOBAL_OFFSETS, GLOBAL_NUM_PERF_EVENTS];

/// Name of the scheduler switch program, a `tp_btf` program attached to
/// [`SCHED_SWITCH_TRACEPOINT`].
pub const PROG_SCHED_SWITCH: &str = "owca_sched_switch";
/// Name of the periodic per-CPU flush program, attached to a software `cpu-clock` perf
/// event on each CPU.
pub const PROG_FLUSH: &str = "owca_flush";
/// The programs in the kernel object.
pub const PROG_NAMES: [&str; 2] = [PROG_SCHED_SWITCH, PROG_FLUSH];
/// The kernel tracepoint (its BTF type `btf_trace_sched_switch`) the switch program is
/// built for (`tp_btf/sched_switch`) and attached to.
pub const SCHED_SWITCH_TRACEPOINT: &str = "sched_switch";

/// Default number of slots: the most cgroups watched at once.
pub const DEFAULT_MAX_CGROUPS: u32 = 16384;
/// Most hardware events counted at once (slots in [`CgroupCounters::perf`]).
pub const MAX_PERF_EVENTS: usize = 8;
/// Buckets of the run-queue latency histogram: bucket `b` counts waits shorter than
/// `2^(b + HIST_SHIFT_NS + 1)` ns and not shorter than the bucket below; the last one is open.
pub const HIST_BUCKETS: usize = 24;
/// Bucket 0 holds waits under `2^(HIST_SHIFT_NS + 1)` ns (about 1 µs).
pub const HIST_SHIFT_NS: u32 = 9;
/// Most kernfs steps from a task's cgroup up to its watched ancestor.
pub const MAX_WALK_DEPTH: u32 = 32;
/// Bit set in the key of a cgroup-v1 cgroup, so that v1 and v2 ids (each unique only within
/// its own kernfs root) never collide; kernfs ids use the high half for a generation that
/// never reaches this bit.
pub const V1_ID_TAG: u64 = 1 << 63;

/// Counters of one watched cgroup: each CPU's counts gather in its own cache entry and are
/// added to the cgroup's slot with atomic adds, so the agent reads one value per cgroup
/// whatever the number of CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupCounters {
    /// Time tasks of the cgroup spent on a CPU.
    pub oncpu_ns: u64,
    /// Switches out of a task that blocked.
    pub switches_voluntary: u64,
    /// Switches out of a task that was still runnable (preempted or yielded).
    pub switches_involuntary: u64,
    /// Sum of the run-queue waits that ended (from the kernel's `sched_info.run_delay`).
    pub runq_wait_ns: u64,
    /// Number of run-queue waits summed in `runq_wait_ns`.
    pub runq_waits: u64,
    /// Log2 histogram of run-queue waits, see [`HIST_BUCKETS`].
    pub runq_hist: [u64; HIST_BUCKETS],
    /// Hardware counter deltas, by event slot.
    pub perf: [u64; MAX_PERF_EVENTS],
}

impl CgroupCounters {
    /// Adds every counter of `other` (wrapping, as the kernel's counters do).
    #[inline(always)]
    pub fn add(&mut self, other: &Self) {
        self.oncpu_ns = self.oncpu_ns.wrapping_add(other.oncpu_ns);
        self.switches_voluntary = self
            .switches_voluntary
            .wrapping_add(other.switches_voluntary);
        self.switches_involuntary = self
            .switches_involuntary
            .wrapping_add(other.switches_involuntary);
        self.runq_wait_ns = self.runq_wait_ns.wrapping_add(other.runq_wait_ns);
        self.runq_waits = self.runq_waits.wrapping_add(other.runq_waits);
        for i in 0..HIST_BUCKETS {
            self.runq_hist[i] = self.runq_hist[i].wrapping_add(other.runq_hist[i]);
        }
        for i in 0..MAX_PERF_EVENTS {
            self.perf[i] = self.perf[i].wrapping_add(other.perf[i]);
        }
    }
}

/// Contenders kept per watched cgroup in its [`ContenderTable`]; waits behind any further
/// contender are summed in its overflow.
pub const CONTENDER_ENTRIES: usize = 6;
/// [`ContenderEntry::by_key`] of waits behind a task of no watched cgroup (or an idle CPU):
/// no kernfs id has every bit set.
pub const BY_UNWATCHED_KEY: u64 = u64::MAX;

/// Run-queue wait and preemptions a watched cgroup's tasks suffered while one contender
/// ran. Written by the kernel programs with atomic adds, read by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContenderEntry {
    /// Watched cgroup key of the contender, [`BY_UNWATCHED_KEY`], or 0 for a free entry.
    pub by_key: u64,
    /// Run-queue wait that ended when a task of the cgroup got the CPU from the contender.
    pub wait_ns: u64,
    /// Times a task of the cgroup was preempted by the contender.
    pub preemptions: u64,
}

/// The contenders of one watched cgroup, at its slot of `CONTENDERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContenderTable {
    /// The first [`CONTENDER_ENTRIES`] contenders seen, in the order they were first seen.
    pub entries: [ContenderEntry; CONTENDER_ENTRIES],
    /// Wait behind contenders that found the table full.
    pub overflow_wait_ns: u64,
    /// Preemptions by contenders that found the table full.
    pub overflow_preemptions: u64,
}

/// Entries of the per-CPU resolution cache.
pub const CACHE_SLOTS: usize = 4;
/// `CpuState::cur_slot` when the task on the CPU is not in a watched cgroup.
pub const NO_SLOT: u32 = u32::MAX;

/// One resolved cgroup pair and the counts gathered for its cgroup on this CPU since the
/// last flush.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheEntry {
    /// Address of the tasks' v1 `cgroup_subsys_state` (of the collector's controller);
    /// 0 for an empty entry. With `dfl` it decides the key: unlike a `css_set`, whose
    /// address is reused as soon as processes change cgroups, these live as long as their
    /// cgroups.
    pub css: u64,
    /// Address of the tasks' v2 `cgroup`.
    pub dfl: u64,
    /// Watched cgroup key it resolved to, 0 for none.
    pub key: u64,
    /// 1 when `pending` holds counts, so flushing skips clean entries cheaply.
    pub dirty: u64,
    /// Counts not yet added to the key's [`CgroupCounters`].
    pub pending: CgroupCounters,
    /// The contender of `by_wait_ns` and `by_preemptions`, 0 for none: the cgroup's
    /// contention is gathered here for one contender at a time.
    pub by_key: u64,
    /// Wait behind `by_key` not yet added to the cgroup's [`ContenderTable`].
    pub by_wait_ns: u64,
    /// Preemptions by `by_key` not yet added.
    pub by_preemptions: u64,
}

/// Per-CPU state of the programs: which cached cgroup the running task belongs to and
/// what it had counted when it was switched in. Written and read only by the kernel
/// programs, on their own CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuState {
    /// Cache entry of the running task's cgroup, [`NO_SLOT`] when unwatched.
    pub cur_slot: u32,
    /// Thread id of the running task.
    pub cur_pid: u32,
    /// The running task's `sched_info.run_delay` when it was switched in.
    pub in_run_delay_ns: u64,
    /// Who ran before the running task was switched in (a watched key or
    /// [`BY_UNWATCHED_KEY`]): the contender its wait is charged to.
    pub in_by_key: u64,
    /// The running task's `se.sum_exec_runtime` when last charged.
    pub in_exec_ns: u64,
    /// [`WatchConfig::generation`] the cache was filled under.
    pub cache_gen: u64,
    /// Next cache entry to replace.
    pub cache_next: u64,
    /// Counter values when the running watched cgroup's counts were last charged.
    pub perf_last: [u64; MAX_PERF_EVENTS],
    /// The resolution cache: recent cgroups seen on this CPU and their pending counts.
    pub cache: [CacheEntry; CACHE_SLOTS],
}

/// Which cgroup levels hold watched cgroups, per hierarchy, so the kernel walks no further
/// than needed. Written by the agent at each watch/unwatch, read by the kernel programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchConfig {
    /// Bumped at every change, invalidating the per-CPU resolution caches.
    pub generation: u64,
    /// Shallowest and deepest level of watched v1 cgroups; `v1_max_level == 0`: none.
    pub v1_min_level: u32,
    pub v1_max_level: u32,
    /// The same for cgroup v2.
    pub v2_min_level: u32,
    pub v2_max_level: u32,
}

/// Offsets into kernel structures and the subsystem index, computed by the agent from the
/// running kernel's BTF and passed as read-only globals (a `Copy` mirror for the agent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.cgroups` (`struct css_set *`).
    pub task_cgroups: u32,
    /// `task_struct.pid`.
    pub task_pid: u32,
    /// `task_struct.sched_info.run_delay`; 0 when the kernel lacks `CONFIG_SCHED_INFO`.
    pub task_run_delay: u32,
    /// `task_struct.se.sum_exec_runtime`: the scheduler's own on-CPU time of the task.
    pub task_sum_exec: u32,
    /// `css_set.subsys[subsys_id]` (`struct cgroup_subsys_state *`).
    pub cset_subsys: u32,
    /// `css_set.dfl_cgrp` (`struct cgroup *`).
    pub cset_dfl_cgrp: u32,
    /// `cgroup_subsys_state.cgroup`.
    pub css_cgroup: u32,
    /// `cgroup.kn` (`struct kernfs_node *`).
    pub cgroup_kn: u32,
    /// `cgroup.level` (`int`).
    pub cgroup_level: u32,
    /// `kernfs_node.id` (`u64`).
    pub kn_id: u32,
    /// `kernfs_node.__parent` (or `parent` on older kernels).
    pub kn_parent: u32,
}

// Only the types the agent reads or writes in maps and globals need `Pod`; `CpuState` and
// `CacheEntry` stay in the kernel.
#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` `u64`s and arrays of them, no padding (size asserted below), so
    // every byte is initialised and every bit pattern valid.
    unsafe impl aya::Pod for super::CgroupCounters {}
    // SAFETY: as above, `u64`s only.
    unsafe impl aya::Pod for super::ContenderTable {}
    // SAFETY: as above, one `u64` then four `u32`s.
    unsafe impl aya::Pod for super::WatchConfig {}
    // SAFETY: as above, `u32`s only.
    unsafe impl aya::Pod for super::KernelOffsets {}
}

// No implicit padding: every byte of a map value is a field both sides agree on.
const _: () = assert!(size_of::<CgroupCounters>() == 8 * (5 + HIST_BUCKETS + MAX_PERF_EVENTS));
const _: () = assert!(size_of::<CacheEntry>() == 8 * 7 + size_of::<CgroupCounters>());
const _: () = assert!(
    size_of::<CpuState>()
        == 4 * 2 + 8 * (5 + MAX_PERF_EVENTS) + CACHE_SLOTS * size_of::<CacheEntry>()
);
const _: () = assert!(size_of::<ContenderTable>() == 8 * (3 * CONTENDER_ENTRIES + 2));
const _: () = assert!(size_of::<WatchConfig>() == 24);
const _: () = assert!(size_of::<KernelOffsets>() == 44);
