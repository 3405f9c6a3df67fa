//! The switch and flush programs.
//!
//! Time and run-queue wait come from the scheduler's own per-task accounting
//! (`se.sum_exec_runtime`, `sched_info.run_delay`), read when a task is switched in and
//! again when it is switched out on the same CPU: no clock reads, no per-task map. Counts
//! gather in the per-CPU cache entry of the task's `css_set` and reach `COUNTERS` when the
//! entry is replaced or at the periodic flush, so switches between cached cgroups do no
//! hash lookup at all.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_CPU, bpf_perf_event_value},
    helpers::{bpf_get_current_task_btf, bpf_perf_event_read_value},
    macros::{btf_tracepoint, perf_event},
    programs::{BtfTracePointContext, PerfEventContext},
};
use owca_common::{
    CACHE_SLOTS, CacheEntry, CgroupCounters, CpuState, HIST_BUCKETS, HIST_SHIFT_NS,
    MAX_PERF_EVENTS, MAX_WALK_DEPTH, NO_SLOT, V1_ID_TAG, WatchConfig,
};

use crate::maps::{COUNTERS, CPU_STATE, NUM_PERF_EVENTS, OFFSETS, WATCH_CONFIG, perf_counters};

/// One field of `OFFSETS`: a volatile read, so the compiler neither folds the placeholder
/// value nor loads the whole struct (spilling it to the stack) on every switch; the
/// verifier sees the agent's constant.
macro_rules! off {
    ($field:ident) => {{
        #[allow(unused_unsafe, reason = "used both inside and outside unsafe blocks")]
        // SAFETY: a read of a frozen read-only global.
        let value = unsafe { core::ptr::read_volatile(&raw const OFFSETS.$field) };
        value
    }};
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`.
#[btf_tracepoint(function = "sched_switch")]
pub fn owca_sched_switch(ctx: BtfTracePointContext) -> u32 {
    let preempt: u64 = ctx.arg(0);
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    // SAFETY: prev and next are the tracepoint's task pointers; every load through them is
    // a BTF-checked, fault-handled kernel load at an offset the agent took from BTF.
    unsafe { on_switch(preempt & 0xff != 0, prev, next, prev_state as u32) };
    0
}

/// Fires periodically on every busy CPU: charges the running task's time so far and adds
/// all pending counts to `COUNTERS`, so snapshots are at most one period behind even for a
/// task that never switches out. Also picks up a running task whose cgroup was just
/// watched, which would otherwise be counted only from its next switch.
#[perf_event]
pub fn owca_flush(_ctx: PerfEventContext) -> u32 {
    let Some(st) = CPU_STATE.get_ptr_mut(0) else {
        return 0;
    };
    let Some(cfg) = WATCH_CONFIG.get(0) else {
        return 0;
    };
    // SAFETY: the map value of this CPU, valid for the program's run.
    let st = unsafe { &mut *st };
    // SAFETY: the interrupted task, the one switched in last on this CPU; loads through it
    // are BTF-checked like the switch program's.
    let cur = unsafe { bpf_get_current_task_btf() }
        .cast::<u8>()
        .cast_const();
    if st.cur_slot != NO_SLOT {
        let slot = (st.cur_slot as usize) % CACHE_SLOTS;
        let exec: u64 = unsafe { load(cur, off!(task_sum_exec)) };
        if exec > st.in_exec_ns {
            st.cache[slot].pending.oncpu_ns += exec - st.in_exec_ns;
            st.cache[slot].dirty = 1;
            st.in_exec_ns = exec;
        }
        charge_perf(st, slot);
    }
    if st.cache_gen != cfg.generation {
        let cset: *const u8 = unsafe { load(cur, off!(task_cgroups)) };
        let slot = unsafe { lookup(st, cfg, cset) };
        if key_of(st, slot) != 0 {
            unsafe { switch_in(st, cur, slot) };
            read_perf(st, None);
        }
    }
    for slot in 0..CACHE_SLOTS {
        flush(&mut st.cache[slot]);
    }
    0
}

/// Records the task now running in a watched cgroup: what it has counted so far.
#[inline(always)]
unsafe fn switch_in(st: &mut CpuState, task: *const u8, slot: u32) {
    st.cur_slot = slot;
    st.cur_pid = unsafe { load(task, off!(task_pid)) };
    st.in_exec_ns = unsafe { load(task, off!(task_sum_exec)) };
    st.in_run_delay_ns = if off!(task_run_delay) != 0 {
        unsafe { load(task, off!(task_run_delay)) }
    } else {
        0
    };
}

/// A kernel load at `base + off` from a BTF pointer.
#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, off: u32) -> T {
    // SAFETY: see callers; the verifier checks the type at this offset and handles faults.
    unsafe { core::ptr::read(base.add(off as usize).cast::<T>()) }
}

#[inline(always)]
unsafe fn on_switch(preempt: bool, prev: *const u8, next: *const u8, prev_state: u32) {
    let Some(st) = CPU_STATE.get_ptr_mut(0) else {
        return;
    };
    let Some(cfg) = WATCH_CONFIG.get(0) else {
        return;
    };
    // SAFETY: the map value of this CPU, valid for the program's run.
    let st = unsafe { &mut *st };

    // The task leaving was switched in here while its cgroup was watched.
    let prev_slot = st.cur_slot;
    if prev_slot != NO_SLOT && unsafe { load::<u32>(prev, off!(task_pid)) } == st.cur_pid {
        let e = &mut st.cache[(prev_slot as usize) % CACHE_SLOTS];
        e.dirty = 1;
        let p = &mut e.pending;
        if !preempt && prev_state != 0 {
            p.switches_voluntary += 1;
        } else {
            p.switches_involuntary += 1;
        }
        let exec: u64 = unsafe { load(prev, off!(task_sum_exec)) };
        if exec > st.in_exec_ns {
            p.oncpu_ns += exec - st.in_exec_ns;
        }
        if off!(task_run_delay) != 0 {
            // run_delay grew by the wait that ended when this task was switched in.
            let run_delay: u64 = unsafe { load(prev, off!(task_run_delay)) };
            if run_delay > st.in_run_delay_ns {
                add_wait(p, run_delay - st.in_run_delay_ns);
            }
        }
    }

    let cset: *const u8 = unsafe { load(next, off!(task_cgroups)) };
    let slot = unsafe { lookup(st, cfg, cset) };
    let prev_key = key_of(st, prev_slot);
    let next_key = key_of(st, slot);
    if prev_key != next_key {
        // bperf-cgroup: counters are read only when the watched cgroup on the CPU changes.
        if prev_key != 0 {
            charge_perf(st, (prev_slot as usize) % CACHE_SLOTS);
        }
        if next_key != 0 {
            read_perf(st, None);
        }
    }
    if next_key == 0 {
        st.cur_slot = NO_SLOT;
        if prev_key != 0 {
            // Leaving watched tasks (often for idle): hand in their counts now, as the
            // periodic flush may not fire on a CPU that stays idle.
            for slot in 0..CACHE_SLOTS {
                flush(&mut st.cache[slot]);
            }
        }
        return;
    }
    unsafe { switch_in(st, next, slot) };
}

#[inline(always)]
fn key_of(st: &CpuState, slot: u32) -> u64 {
    if slot == NO_SLOT {
        0
    } else {
        st.cache[(slot as usize) % CACHE_SLOTS].key
    }
}

#[inline(always)]
fn add_wait(c: &mut CgroupCounters, wait_ns: u64) {
    c.runq_wait_ns += wait_ns;
    c.runq_waits += 1;
    let bucket = log2(wait_ns)
        .saturating_sub(HIST_SHIFT_NS)
        .min(HIST_BUCKETS as u32 - 1);
    if let Some(b) = c.runq_hist.get_mut(bucket as usize) {
        *b += 1;
    }
}

/// floor(log2(v)) for v > 0 by halving steps: BPF has no count-leading-zeros instruction
/// and LLVM's expansion of one is several times longer.
#[inline(always)]
fn log2(mut v: u64) -> u32 {
    let mut r = 0;
    for shift in [32, 16, 8, 4, 2, 1] {
        if v >> shift != 0 {
            v >>= shift;
            r += shift;
        }
    }
    r
}

/// Adds an entry's pending counts to its `COUNTERS` entry and clears them. A key that is
/// no longer watched has no entry: its counts are dropped with it.
#[inline(always)]
fn flush(e: &mut CacheEntry) {
    if e.key == 0 || e.dirty == 0 {
        return;
    }
    if let Some(c) = COUNTERS.get_ptr_mut(e.key) {
        // SAFETY: this CPU's value of an existing entry; only this CPU writes it.
        unsafe { &mut *c }.add(&e.pending);
    }
    e.pending = CgroupCounters::default();
    e.dirty = 0;
}

/// Adds the counter deltas since the last read to the entry at `slot`.
#[inline(always)]
fn charge_perf(st: &mut CpuState, slot: usize) {
    read_perf(st, Some(slot % CACHE_SLOTS));
}

/// Reads this CPU's counters into `perf_last`; with a slot, first adds the deltas to it.
#[inline(always)]
fn read_perf(st: &mut CpuState, charge: Option<usize>) {
    // SAFETY: a read of a frozen read-only global.
    let n = unsafe { core::ptr::read_volatile(&NUM_PERF_EVENTS) } as usize;
    for event in 0..MAX_PERF_EVENTS {
        if event >= n {
            break;
        }
        let Some(map) = perf_counters(event) else {
            break;
        };
        let mut v = bpf_perf_event_value {
            counter: 0,
            enabled: 0,
            running: 0,
        };
        // SAFETY: the map is a perf event array; `v` is a stack buffer of the given size.
        let ret = unsafe {
            bpf_perf_event_read_value(
                core::ptr::from_ref(map).cast_mut().cast(),
                BPF_F_CURRENT_CPU,
                &mut v,
                size_of::<bpf_perf_event_value>() as u32,
            )
        };
        if ret != 0 {
            continue;
        }
        if let Some(slot) = charge {
            let delta = v.counter.wrapping_sub(st.perf_last[event]);
            let e = &mut st.cache[slot % CACHE_SLOTS];
            e.pending.perf[event] += delta;
            e.dirty = 1;
        }
        st.perf_last[event] = v.counter;
    }
}

/// The cache entry of a task's cgroups (by its `css_set`), resolving and caching them on
/// a miss.
#[inline(always)]
unsafe fn lookup(st: &mut CpuState, cfg: &WatchConfig, cset: *const u8) -> u32 {
    if st.cache_gen != cfg.generation {
        // Watched cgroups changed: hand in what was gathered, then forget resolutions.
        for slot in 0..CACHE_SLOTS {
            flush(&mut st.cache[slot]);
            st.cache[slot].css = 0;
            st.cache[slot].dfl = 0;
            st.cache[slot].key = 0;
        }
        st.cache_gen = cfg.generation;
        st.cur_slot = NO_SLOT;
    }
    let css: u64 = unsafe { load(cset, off!(cset_subsys)) };
    let dfl: u64 = unsafe { load(cset, off!(cset_dfl_cgrp)) };
    for slot in 0..CACHE_SLOTS {
        if st.cache[slot].css == css && st.cache[slot].dfl == dfl {
            return slot as u32;
        }
    }
    let key = unsafe { resolve(cfg, cset) };
    let mut victim = (st.cache_next as usize) % CACHE_SLOTS;
    // The running task's entry still has counter deltas to receive.
    if victim as u32 == st.cur_slot {
        victim = (victim + 1) % CACHE_SLOTS;
    }
    st.cache_next = victim as u64 + 1;
    let e = &mut st.cache[victim];
    flush(e);
    e.css = css;
    e.dfl = dfl;
    e.key = key;
    victim as u32
}

/// The watched cgroup key of a task with this `css_set`, or 0.
#[inline(always)]
unsafe fn resolve(cfg: &WatchConfig, cset: *const u8) -> u64 {
    if cfg.v1_max_level != 0 {
        let css: *const u8 = unsafe { load(cset, off!(cset_subsys)) };
        let cgrp: *const u8 = unsafe { load(css, off!(css_cgroup)) };
        let key = unsafe { walk(cgrp, cfg.v1_min_level, cfg.v1_max_level, V1_ID_TAG) };
        if key != 0 {
            return key;
        }
    }
    if cfg.v2_max_level != 0 {
        let cgrp: *const u8 = unsafe { load(cset, off!(cset_dfl_cgrp)) };
        return unsafe { walk(cgrp, cfg.v2_min_level, cfg.v2_max_level, 0) };
    }
    0
}

/// Walks from a cgroup up through its ancestors within the watched levels and returns the
/// first watched key found, or 0.
#[inline(always)]
unsafe fn walk(cgrp: *const u8, min: u32, max: u32, tag: u64) -> u64 {
    let mut level: i32 = unsafe { load(cgrp, off!(cgroup_level)) };
    let mut kn: *const u8 = unsafe { load(cgrp, off!(cgroup_kn)) };
    for _ in 0..MAX_WALK_DEPTH {
        if level < min as i32 {
            return 0;
        }
        if level <= max as i32 {
            let key = unsafe { load::<u64>(kn, off!(kn_id)) } | tag;
            if COUNTERS.get_ptr(key).is_some() {
                return key;
            }
        }
        kn = unsafe { load(kn, off!(kn_parent)) };
        level -= 1;
    }
    0
}
