//! The switch and flush programs.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_CPU, bpf_perf_event_value},
    helpers::{bpf_ktime_get_ns, bpf_perf_event_read_value},
    macros::{btf_tracepoint, perf_event},
    programs::{BtfTracePointContext, PerfEventContext},
};
use owca_common::{
    CgroupCounters, CpuState, HIST_BUCKETS, HIST_SHIFT_NS, KernelOffsets, MAX_PERF_EVENTS,
    MAX_WALK_DEPTH, V1_ID_TAG, WatchConfig,
};

use crate::maps::{
    COUNTERS, CPU_STATE, NUM_PERF_EVENTS, OFFSETS, WATCH_CONFIG, perf_counters,
};

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

/// Fires periodically on every CPU: charges the running watched cgroup's time so far.
#[perf_event]
pub fn owca_flush(_ctx: PerfEventContext) -> u32 {
    let Some(st) = CPU_STATE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: the map value of this CPU, valid for the program's run.
    let st = unsafe { &mut *st };
    if st.cur_key != 0 {
        charge(st, unsafe { bpf_ktime_get_ns() });
    }
    0
}

#[inline(always)]
fn offsets() -> KernelOffsets {
    // SAFETY: a read of a frozen read-only global; volatile so the compiler does not fold
    // the placeholder value, and the verifier sees the agent's constants.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// A kernel load at `base + off`.
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
    let off = offsets();

    // The task leaving was switched in here while its cgroup was watched.
    if st.cur_key != 0 && unsafe { load::<u32>(prev, off.task_pid) } == st.cur_pid {
        if !preempt && prev_state != 0 {
            st.pending.switches_voluntary += 1;
        } else {
            st.pending.switches_involuntary += 1;
        }
        if off.task_run_delay != 0 {
            // run_delay grew by the wait that ended when this task was switched in.
            let run_delay: u64 = unsafe { load(prev, off.task_run_delay) };
            if run_delay > st.in_run_delay_ns {
                add_wait(&mut st.pending, run_delay - st.in_run_delay_ns);
            }
        }
    }

    let cset: u64 = unsafe { load(next, off.task_cgroups) };
    let key = if cset == st.cur_cset && st.cache_gen == cfg.generation {
        st.cur_key
    } else {
        unsafe { resolve(st, cfg, &off, cset) }
    };
    st.cur_cset = cset;
    if key != st.cur_key {
        let now = unsafe { bpf_ktime_get_ns() };
        if st.cur_key != 0 {
            charge(st, now);
        }
        st.cur_key = key;
        st.start_ns = now;
        if key != 0 {
            read_perf(st, false);
        }
    }
    if key != 0 {
        st.cur_pid = unsafe { load(next, off.task_pid) };
        st.in_run_delay_ns = if off.task_run_delay != 0 {
            unsafe { load(next, off.task_run_delay) }
        } else {
            0
        };
    }
}

#[inline(always)]
fn add_wait(c: &mut CgroupCounters, wait_ns: u64) {
    c.runq_wait_ns += wait_ns;
    c.runq_waits += 1;
    let log2 = 63 - wait_ns.leading_zeros();
    let bucket = log2.saturating_sub(HIST_SHIFT_NS).min(HIST_BUCKETS as u32 - 1);
    if let Some(b) = c.runq_hist.get_mut(bucket as usize) {
        *b += 1;
    }
}

/// Charges the current cgroup's time and counter deltas up to `now`, then adds everything
/// pending to its `COUNTERS` entry.
#[inline(always)]
fn charge(st: &mut CpuState, now: u64) {
    st.pending.oncpu_ns += now.saturating_sub(st.start_ns);
    st.start_ns = now;
    read_perf(st, true);
    if let Some(c) = COUNTERS.get_ptr_mut(st.cur_key) {
        // SAFETY: this CPU's value of an existing entry; only this CPU writes it.
        unsafe { &mut *c }.add(&st.pending);
    }
    // An unwatched key's pending counts are dropped with it.
    st.pending = CgroupCounters::default();
}

/// Reads this CPU's hardware counters; with `accumulate`, adds the deltas since the last
/// read to the pending counts.
#[inline(always)]
fn read_perf(st: &mut CpuState, accumulate: bool) {
    // SAFETY: a read of a frozen read-only global.
    let n = unsafe { core::ptr::read_volatile(&NUM_PERF_EVENTS) } as usize;
    if n == 0 {
        return;
    }
    for slot in 0..MAX_PERF_EVENTS {
        if slot >= n {
            break;
        }
        let Some(map) = perf_counters(slot) else {
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
        if accumulate {
            st.pending.perf[slot] += v.counter.wrapping_sub(st.perf_last[slot]);
        }
        st.perf_last[slot] = v.counter;
    }
}

/// The watched cgroup key of a task with this `css_set`, or 0; cached per CPU.
#[inline(always)]
unsafe fn resolve(st: &mut CpuState, cfg: &WatchConfig, off: &KernelOffsets, cset: u64) -> u64 {
    if st.cache_gen != cfg.generation {
        st.cache_gen = cfg.generation;
        st.cache_cset = [0; 2];
        st.cache_key = [0; 2];
    } else if st.cache_cset[0] == cset {
        return st.cache_key[0];
    } else if st.cache_cset[1] == cset {
        return st.cache_key[1];
    }
    let cset_ptr = cset as *const u8;
    let mut key = 0;
    if cfg.v1_max_level != 0 {
        let css: *const u8 = unsafe { load(cset_ptr, off.cset_subsys) };
        let cgrp: *const u8 = unsafe { load(css, off.css_cgroup) };
        key = unsafe { walk(cgrp, off, cfg.v1_min_level, cfg.v1_max_level, V1_ID_TAG) };
    }
    if key == 0 && cfg.v2_max_level != 0 {
        let cgrp: *const u8 = unsafe { load(cset_ptr, off.cset_dfl_cgrp) };
        key = unsafe { walk(cgrp, off, cfg.v2_min_level, cfg.v2_max_level, 0) };
    }
    let slot = (st.cache_next & 1) as usize;
    st.cache_cset[slot] = cset;
    st.cache_key[slot] = key;
    st.cache_next += 1;
    key
}

/// Walks from a cgroup up through its ancestors within the watched levels and returns the
/// first watched key found, or 0.
#[inline(always)]
unsafe fn walk(cgrp: *const u8, off: &KernelOffsets, min: u32, max: u32, tag: u64) -> u64 {
    let mut level: i32 = unsafe { load(cgrp, off.cgroup_level) };
    let mut kn: *const u8 = unsafe { load(cgrp, off.cgroup_kn) };
    for _ in 0..MAX_WALK_DEPTH {
        if level < min as i32 {
            return 0;
        }
        if level <= max as i32 {
            let key = unsafe { load::<u64>(kn, off.kn_id) } | tag;
            if COUNTERS.get_ptr(key).is_some() {
                return key;
            }
        }
        kn = unsafe { load(kn, off.kn_parent) };
        level -= 1;
    }
    0
}
