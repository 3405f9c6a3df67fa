//! OWCA's kernel programs: scheduler counters per watched cgroup.
//!
//! Two programs share per-CPU state:
//! - `owca_sched_switch` (`tp_btf/sched_switch`) accounts each switch into per-CPU pending
//!   counts and charges time and hardware counters only when the watched cgroup on the CPU
//!   changes, the way `perf stat --bpf-counters --for-each-cgroup` (bperf-cgroup) reads its
//!   counters only at cgroup switches;
//! - `owca_flush` (a per-CPU software `cpu-clock` perf event) charges the running cgroup's
//!   time so far, so a task that never switches out is still counted on time.
#![no_std]
#![no_main]
// Atomic adds into the shared counters (see `fold`).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod fold;
mod kernel;
mod maps;
mod switch;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path; this only satisfies the compiler.
    loop {}
}

/// The license the kernel checks GPL-only helpers against (`bpf_get_current_task_btf`,
/// `bpf_perf_event_read_value`).
// SAFETY: `license` is the section the loader reads the license from, and `LICENSE` a
// symbol name nothing else in the object uses.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
