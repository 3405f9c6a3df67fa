//! Folds one CPU's pending counts into a cgroup's slot of the shared arrays. Several CPUs
//! may fold into one slot at once, and the agent reads it meanwhile: every write is an
//! atomic add (or compare-and-swap), so no count is lost and no value is torn.

// The BPF target has no compare-and-swap in its target spec, so `core::sync::atomic`
// offers no read-modify-write methods there; the intrinsics lower to the BPF atomic
// instructions (`lock xadd`, and `cmpxchg` on the kernel's v3 instruction set).
use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg, atomic_xadd};

use owca_common::{CONTENDER_ENTRIES, CgroupCounters, HIST_BUCKETS, MAX_PERF_EVENTS};

use crate::maps::{CONTENDERS, COUNTERS};

/// Adds `v` to the `u64` at `p`, skipping zeros (most pending fields are zero).
///
/// # Safety
/// `p` points to an aligned `u64` of a map value that stays valid for the program's run.
#[inline(always)]
unsafe fn add(p: *mut u64, v: u64) {
    if v != 0 {
        // SAFETY: the caller's guarantee; map values are 8-byte aligned.
        unsafe { atomic_xadd::<u64, u64, { Relaxed }>(p, v) };
    }
}

/// Adds pending counts to the counters at `slot`.
#[inline(always)]
pub fn counters(slot: u32, pending: &CgroupCounters) {
    let Some(c) = COUNTERS.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: `c` is the array's value at `slot` (arrays never free values), and each
    // pointer below is a field of it.
    unsafe {
        add(&raw mut (*c).oncpu_ns, pending.oncpu_ns);
        add(&raw mut (*c).switches_voluntary, pending.switches_voluntary);
        add(
            &raw mut (*c).switches_involuntary,
            pending.switches_involuntary,
        );
        add(&raw mut (*c).runq_wait_ns, pending.runq_wait_ns);
        add(&raw mut (*c).runq_waits, pending.runq_waits);
        for i in 0..HIST_BUCKETS {
            add(&raw mut (*c).runq_hist[i], pending.runq_hist[i]);
        }
        for i in 0..MAX_PERF_EVENTS {
            add(&raw mut (*c).perf[i], pending.perf[i]);
        }
    }
}

/// Adds wait and preemptions behind contender `by` to the contenders table at `slot`: to
/// the contender's entry, claiming a free one the first time, or to the overflow when the
/// table is full.
#[inline(always)]
pub fn contention(slot: u32, by: u64, wait_ns: u64, preemptions: u64) {
    let Some(t) = CONTENDERS.get_ptr_mut(slot) else {
        return;
    };
    for i in 0..CONTENDER_ENTRIES {
        // SAFETY: fields of the array's value at `slot`, valid as in `counters`.
        let entry = unsafe { &raw mut (*t).entries[i] };
        // SAFETY: as above. A free entry (0) becomes `by`'s; the value before tells the
        // owner either way.
        let (before, _) = unsafe {
            atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(&raw mut (*entry).by_key, 0, by)
        };
        let owner = if before == 0 { by } else { before };
        if owner == by {
            // SAFETY: as above.
            unsafe {
                add(&raw mut (*entry).wait_ns, wait_ns);
                add(&raw mut (*entry).preemptions, preemptions);
            }
            return;
        }
    }
    // SAFETY: as above.
    unsafe {
        add(&raw mut (*t).overflow_wait_ns, wait_ns);
        add(&raw mut (*t).overflow_preemptions, preemptions);
    }
}
