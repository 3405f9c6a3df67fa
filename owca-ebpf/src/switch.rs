//! The switch and flush programs.
//!
//! Time and run-queue wait come from the scheduler's own per-task accounting
//! (`se.sum_exec_runtime`, `sched_info.run_delay`), read when a task is switched in and
//! again when it is switched out on the same CPU: no clock reads, no per-task map. Counts
//! gather in the per-CPU cache entry of the task's `css_set` and reach `COUNTERS` when the
//! entry is replaced or at the periodic flush, so switches between cached cgroups do no
//! hash lookup at all.
//!
//! Each attached function is thin: it calls its `try_` helper and turns the [`Error`] it
//! may return into the value its hook expects.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_CPU, bpf_perf_event_value},
    helpers::{bpf_get_current_task_btf, bpf_perf_event_read_value},
    macros::{btf_tracepoint, perf_event},
    programs::{BtfTracePointContext, PerfEventContext},
};
use owca_common::{
    BY_UNWATCHED_KEY, CACHE_SLOTS, CacheEntry, CgroupCounters, CpuState, HIST_BUCKETS,
    HIST_SHIFT_NS, MAX_PERF_EVENTS, MAX_WALK_DEPTH, NO_SLOT, V1_ID_TAG, WATCH_CONFIG_INDEX,
    WatchConfig,
};

use crate::{
    fold,
    kernel::{Cgroup, CssSet, Task},
    maps::{CPU_STATE, NUM_PERF_EVENTS, SLOTS, WATCH_CONFIG, perf_counters},
};

/// Index of the one entry of `CPU_STATE` (a per-CPU array: each CPU has its own).
const CPU_STATE_INDEX: u32 = 0;

/// Why a program run did nothing. Only lookups that cannot fail on a loaded object (the one
/// entry of a one-entry array) produce it: the verifier makes the programs handle them.
pub enum Error {
    /// `CPU_STATE` has no entry for this CPU.
    NoCpuState,
    /// `WATCH_CONFIG` has no entry.
    NoWatchConfig,
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`.
#[btf_tracepoint(function = "sched_switch")]
pub fn owca_sched_switch(ctx: BtfTracePointContext) -> u32 {
    match try_owca_sched_switch(&ctx) {
        Ok(()) => 0,
        // The kernel ignores what a tp_btf program returns; 0 is the convention. The switch
        // is not counted.
        Err(Error::NoCpuState | Error::NoWatchConfig) => 0,
    }
}

/// Fires periodically on every busy CPU: charges the running task's time so far and adds
/// all pending counts to `COUNTERS`, so snapshots are at most one period behind even for a
/// task that never switches out. Also picks up a running task whose cgroup was just
/// watched, which would otherwise be counted only from its next switch.
#[perf_event]
pub fn owca_flush(_ctx: PerfEventContext) -> u32 {
    match try_owca_flush() {
        // 0 tells the perf event to skip its own overflow handling: it records no sample
        // (the agent reads none), both when the flush ran and when it could not.
        Ok(()) => 0,
        Err(Error::NoCpuState | Error::NoWatchConfig) => 0,
    }
}

fn try_owca_sched_switch(ctx: &BtfTracePointContext) -> Result<(), Error> {
    let preempt = ctx.arg::<u64>(0) & 0xff != 0;
    // SAFETY: argument 1 of tp_btf/sched_switch is the task switched out, a
    // `struct task_struct *` typed by the tracepoint's BTF.
    let prev = unsafe { Task::from_btf(ctx.arg(1)) };
    // SAFETY: argument 2 is the task switched in, typed likewise.
    let next = unsafe { Task::from_btf(ctx.arg(2)) };
    let prev_state = ctx.arg::<u64>(3) as u32;
    let st = CPU_STATE
        .get_ptr_mut(CPU_STATE_INDEX)
        .ok_or(Error::NoCpuState)?;
    let cfg = WATCH_CONFIG
        .get(WATCH_CONFIG_INDEX)
        .ok_or(Error::NoWatchConfig)?;
    // SAFETY: the map value of this CPU, valid for the program's run; only programs on this
    // CPU use it and they never interleave (both run with interrupts off), so this is the
    // only reference.
    let st = unsafe { &mut *st };

    // The task leaving was switched in here while its cgroup was watched.
    let mut prev_slot = st.cur_slot;
    let preempted = preempt || prev_state == 0;
    if prev_slot != NO_SLOT && prev.pid() == st.cur_pid {
        let e = &mut st.cache[(prev_slot as usize) % CACHE_SLOTS];
        e.dirty = 1;
        let p = &mut e.pending;
        if preempted {
            p.switches_involuntary += 1;
        } else {
            p.switches_voluntary += 1;
        }
        let exec = prev.sum_exec_ns();
        if exec > st.in_exec_ns {
            p.oncpu_ns += exec - st.in_exec_ns;
        }
        // run_delay grew by the wait that ended when this task was switched in, behind
        // the task that ran before it.
        if let Some(run_delay) = prev.run_delay_ns()
            && run_delay > st.in_run_delay_ns
        {
            let wait = run_delay - st.in_run_delay_ns;
            add_wait(p, wait);
            attribute(st, prev_slot, st.in_by_key, wait, 0);
        }
    } else {
        prev_slot = NO_SLOT;
    }

    let slot = lookup(st, cfg, next.cgroups());
    let prev_key = key_of(st, prev_slot);
    let next_key = key_of(st, slot);
    // A lookup that saw the watched set change emptied the cache: then prev_key is 0.
    if preempted && prev_key != 0 {
        attribute(st, prev_slot, contender(next_key), 0, 1);
    }
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
        return Ok(());
    }
    switch_in(st, next, slot, contender(prev_key));
    Ok(())
}

fn try_owca_flush() -> Result<(), Error> {
    let st = CPU_STATE
        .get_ptr_mut(CPU_STATE_INDEX)
        .ok_or(Error::NoCpuState)?;
    let cfg = WATCH_CONFIG
        .get(WATCH_CONFIG_INDEX)
        .ok_or(Error::NoWatchConfig)?;
    // SAFETY: as in the switch program: this CPU's value, used by nobody else meanwhile.
    let st = unsafe { &mut *st };
    // SAFETY: the helper has no preconditions.
    let cur = unsafe { bpf_get_current_task_btf() };
    // SAFETY: the helper returns the interrupted task (the one switched in last on this CPU)
    // as a BTF-typed `struct task_struct *`.
    let cur = unsafe { Task::from_btf(cur.cast::<u8>().cast_const()) };
    // The running task is the one switched in, unless this CPU has not switched since the
    // programs were loaded (its state is still zero: slot 0, pid 0, no runtime).
    if st.cur_slot != NO_SLOT && cur.pid() == st.cur_pid {
        let slot = (st.cur_slot as usize) % CACHE_SLOTS;
        let exec = cur.sum_exec_ns();
        if exec > st.in_exec_ns {
            st.cache[slot].pending.oncpu_ns += exec - st.in_exec_ns;
            st.cache[slot].dirty = 1;
            st.in_exec_ns = exec;
        }
        charge_perf(st, slot);
    }
    if st.cache_gen != cfg.generation {
        let slot = lookup(st, cfg, cur.cgroups());
        if key_of(st, slot) != 0 {
            // Its wait ended before it was watched: nobody is charged for it.
            switch_in(st, cur, slot, BY_UNWATCHED_KEY);
            read_perf(st, None);
        }
    }
    for slot in 0..CACHE_SLOTS {
        flush(&mut st.cache[slot]);
    }
    Ok(())
}

/// Records the task now running in a watched cgroup: what it has counted so far, and who
/// ran before it (`by`, charged with the wait that just ended).
#[inline(always)]
fn switch_in(st: &mut CpuState, task: Task, slot: u32, by: u64) {
    st.cur_slot = slot;
    st.cur_pid = task.pid();
    st.in_exec_ns = task.sum_exec_ns();
    st.in_run_delay_ns = task.run_delay_ns().unwrap_or(0);
    st.in_by_key = by;
}

/// The contender key of a watched key (0: none watched).
#[inline(always)]
fn contender(key: u64) -> u64 {
    if key == 0 { BY_UNWATCHED_KEY } else { key }
}

/// Charges wait and preemptions of the cgroup at `slot` to contender `by`. The entry
/// gathers them for one contender at a time and hands them in when the contender changes,
/// so a steady pair of tasks costs no map access per switch.
#[inline(always)]
fn attribute(st: &mut CpuState, slot: u32, by: u64, wait_ns: u64, preemptions: u64) {
    let e = &mut st.cache[(slot as usize) % CACHE_SLOTS];
    if e.by_key != by {
        if e.by_key != 0 {
            flush(e);
        }
        e.by_key = by;
    }
    e.by_wait_ns += wait_ns;
    e.by_preemptions += preemptions;
    e.dirty = 1;
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

/// Adds an entry's pending counts and contention to its cgroup's slot and clears them. A
/// key that is no longer watched has no slot: its counts are dropped with it.
#[inline(always)]
fn flush(e: &mut CacheEntry) {
    if e.dirty == 0 {
        return;
    }
    // Counts gathered under no key (a CPU's state before its first switch) are dropped
    // too: the entry may next be given to a watched cgroup, which must start from zero.
    if e.key != 0
        && let Some(slot) = SLOTS.get_ptr(e.key)
    {
        // SAFETY: a value of the preallocated hash, valid for the program's run even if the
        // agent deletes the key meanwhile; a `u32` the agent writes only on insert.
        let slot = unsafe { *slot };
        fold::counters(slot, &e.pending);
        if e.by_key != 0 {
            fold::contention(slot, e.by_key, e.by_wait_ns, e.by_preemptions);
        }
    }
    e.pending = CgroupCounters::default();
    e.by_key = 0;
    e.by_wait_ns = 0;
    e.by_preemptions = 0;
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
    // SAFETY: an initialised, aligned `u32` static that nothing writes while programs run
    // (the agent sets it before load and the loader freezes its map). Volatile so the
    // compiler does not fold the placeholder 0.
    let n = unsafe { core::ptr::read_volatile(&raw const NUM_PERF_EVENTS) } as usize;
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
        // SAFETY: the helper gets a perf event array map (the verifier checks its type) and
        // `v`, a writable stack value of exactly the size passed.
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
fn lookup(st: &mut CpuState, cfg: &WatchConfig, cset: CssSet) -> u32 {
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
    let css = cset.subsys().addr();
    let dfl = cset.dfl_cgrp().addr();
    for slot in 0..CACHE_SLOTS {
        if st.cache[slot].css == css && st.cache[slot].dfl == dfl {
            return slot as u32;
        }
    }
    let key = resolve(cfg, cset);
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
fn resolve(cfg: &WatchConfig, cset: CssSet) -> u64 {
    if cfg.v1_max_level != 0 {
        let cgrp = cset.subsys().cgroup();
        let key = walk(cgrp, cfg.v1_min_level, cfg.v1_max_level, V1_ID_TAG);
        if key != 0 {
            return key;
        }
    }
    if cfg.v2_max_level != 0 {
        return walk(cset.dfl_cgrp(), cfg.v2_min_level, cfg.v2_max_level, 0);
    }
    0
}

/// Walks from a cgroup up through its ancestors within the watched levels and returns the
/// first watched key found, or 0.
#[inline(always)]
fn walk(cgrp: Cgroup, min: u32, max: u32, tag: u64) -> u64 {
    let mut level = cgrp.level();
    let mut kn = cgrp.kn();
    for _ in 0..MAX_WALK_DEPTH {
        if level < min as i32 {
            return 0;
        }
        if level <= max as i32 {
            let key = kn.id() | tag;
            if SLOTS.get_ptr(key).is_some() {
                return key;
            }
        }
        kn = kn.parent();
        level -= 1;
    }
    0
}
