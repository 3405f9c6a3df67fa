//! Typed pointers to the kernel structures the programs read, and their fields.
//!
//! Each type wraps a pointer that the verifier knows by its BTF type: a `tp_btf` argument,
//! the result of `bpf_get_current_task_btf`, or a pointer member loaded through one of
//! those. The verifier checks every load through such a pointer against that type (offset
//! and size must hit a member) and turns it into a fault-handled probe read, so a stale or
//! NULL pointer reads as 0 instead of faulting. Offsets come from [`OFFSETS`], which the
//! agent fills from the running kernel's BTF before loading, and the verifier sees them as
//! constants because the global is frozen.
//!
//! Constructing a [`Task`] is the only unsafe step for callers: from there every pointer is
//! obtained by loading a BTF-typed member, which keeps the verifier's typing.

use crate::maps::OFFSETS;

/// One field of [`OFFSETS`]: a volatile read, so the compiler neither folds the placeholder
/// value nor loads the whole struct (spilling it to the stack) on every switch; the verifier
/// sees the agent's constant.
macro_rules! off {
    ($field:ident) => {{
        // SAFETY: `OFFSETS` is an initialised, aligned static of plain integers; nothing
        // writes it while programs run (the agent sets it before load and the loader freezes
        // the map holding it).
        unsafe { core::ptr::read_volatile(&raw const OFFSETS.$field) }
    }};
}

/// Reads a `T` at `base + off`.
///
/// # Safety
///
/// `base` must be a BTF-typed kernel pointer (one of the types of this module) and `off` the
/// offset, taken from the running kernel's BTF, of a member of that structure whose type
/// has the size of `T`.
#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, off: u32) -> T {
    // SAFETY: by the caller's contract `off` is the offset of a member, inside the structure
    // `base` points to.
    let field = unsafe { base.add(off as usize) };
    // SAFETY: by the caller's contract the verifier accepts this load as a member access of
    // the pointer's BTF type and performs it as a fault-handled probe read.
    unsafe { core::ptr::read(field.cast::<T>()) }
}

/// A `struct task_struct *`.
#[derive(Clone, Copy)]
pub struct Task(*const u8);

/// A `struct css_set *`: the set of cgroups a task belongs to.
#[derive(Clone, Copy)]
pub struct CssSet(*const u8);

/// A `struct cgroup_subsys_state *` of the collector's v1 controller.
#[derive(Clone, Copy)]
pub struct Css(*const u8);

/// A `struct cgroup *`.
#[derive(Clone, Copy)]
pub struct Cgroup(*const u8);

/// A `struct kernfs_node *`: a cgroup's directory.
#[derive(Clone, Copy)]
pub struct KernfsNode(*const u8);

impl Task {
    /// Wraps a task pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be a `struct task_struct *` that the verifier knows by its BTF type: an
    /// argument of a `tp_btf` program declared as a task pointer, or the result of
    /// `bpf_get_current_task_btf`.
    #[inline(always)]
    pub unsafe fn from_btf(ptr: *const u8) -> Self {
        Self(ptr)
    }

    /// `task_struct.pid`: the thread id.
    #[inline(always)]
    pub fn pid(self) -> u32 {
        let off = off!(task_pid);
        // SAFETY: `self` is a BTF task pointer and `off` the offset of its `pid` (`pid_t`).
        unsafe { load(self.0, off) }
    }

    /// `task_struct.se.sum_exec_runtime`: the scheduler's own on-CPU time of the task.
    #[inline(always)]
    pub fn sum_exec_ns(self) -> u64 {
        let off = off!(task_sum_exec);
        // SAFETY: `self` is a BTF task pointer and `off` the offset of
        // `se.sum_exec_runtime` (`u64`).
        unsafe { load(self.0, off) }
    }

    /// `task_struct.sched_info.run_delay`: the task's summed run-queue waits; `None` when
    /// the kernel lacks `CONFIG_SCHED_INFO` (the agent then sets the offset to 0).
    #[inline(always)]
    pub fn run_delay_ns(self) -> Option<u64> {
        let off = off!(task_run_delay);
        if off == 0 {
            return None;
        }
        // SAFETY: `self` is a BTF task pointer and `off`, not 0, the offset of
        // `sched_info.run_delay` (`unsigned long long`).
        Some(unsafe { load(self.0, off) })
    }

    /// `task_struct.cgroups`.
    #[inline(always)]
    pub fn cgroups(self) -> CssSet {
        let off = off!(task_cgroups);
        // SAFETY: `self` is a BTF task pointer and `off` the offset of `cgroups`
        // (`struct css_set *`), so the loaded pointer is BTF-typed as a `css_set`.
        CssSet(unsafe { load(self.0, off) })
    }
}

impl CssSet {
    /// `css_set.subsys[id]` of the collector's v1 controller (the agent folds the index
    /// into the offset).
    #[inline(always)]
    pub fn subsys(self) -> Css {
        let off = off!(cset_subsys);
        // SAFETY: `self` is a BTF css_set pointer and `off` the offset of one element of
        // `subsys` (`struct cgroup_subsys_state *`), so the loaded pointer is BTF-typed.
        Css(unsafe { load(self.0, off) })
    }

    /// `css_set.dfl_cgrp`: the tasks' cgroup in the unified (v2) hierarchy.
    #[inline(always)]
    pub fn dfl_cgrp(self) -> Cgroup {
        let off = off!(cset_dfl_cgrp);
        // SAFETY: `self` is a BTF css_set pointer and `off` the offset of `dfl_cgrp`
        // (`struct cgroup *`), so the loaded pointer is BTF-typed.
        Cgroup(unsafe { load(self.0, off) })
    }
}

impl Css {
    /// The address, to tell cgroups apart without reading further.
    #[inline(always)]
    pub fn addr(self) -> u64 {
        self.0 as u64
    }

    /// `cgroup_subsys_state.cgroup`.
    #[inline(always)]
    pub fn cgroup(self) -> Cgroup {
        let off = off!(css_cgroup);
        // SAFETY: `self` is a BTF css pointer and `off` the offset of `cgroup`
        // (`struct cgroup *`), so the loaded pointer is BTF-typed.
        Cgroup(unsafe { load(self.0, off) })
    }
}

impl Cgroup {
    /// The address, to tell cgroups apart without reading further.
    #[inline(always)]
    pub fn addr(self) -> u64 {
        self.0 as u64
    }

    /// `cgroup.level`: depth below the hierarchy root.
    #[inline(always)]
    pub fn level(self) -> i32 {
        let off = off!(cgroup_level);
        // SAFETY: `self` is a BTF cgroup pointer and `off` the offset of `level` (`int`).
        unsafe { load(self.0, off) }
    }

    /// `cgroup.kn`: the cgroup's directory.
    #[inline(always)]
    pub fn kn(self) -> KernfsNode {
        let off = off!(cgroup_kn);
        // SAFETY: `self` is a BTF cgroup pointer and `off` the offset of `kn`
        // (`struct kernfs_node *`), so the loaded pointer is BTF-typed.
        KernfsNode(unsafe { load(self.0, off) })
    }
}

impl KernfsNode {
    /// `kernfs_node.id`: the directory's inode number, which the agent uses as the key.
    #[inline(always)]
    pub fn id(self) -> u64 {
        let off = off!(kn_id);
        // SAFETY: `self` is a BTF kernfs_node pointer and `off` the offset of `id` (`u64`).
        unsafe { load(self.0, off) }
    }

    /// `kernfs_node.__parent` (`parent` on older kernels).
    #[inline(always)]
    pub fn parent(self) -> KernfsNode {
        let off = off!(kn_parent);
        // SAFETY: `self` is a BTF kernfs_node pointer and `off` the offset of its parent
        // (`struct kernfs_node *`), so the loaded pointer is BTF-typed.
        KernfsNode(unsafe { load(self.0, off) })
    }
}
