//! Leaving the machine as found: Ctrl-C/SIGTERM stop the bench between steps (so that
//! every drop runs), children die with the bench, sysctls are restored, and cgroups left
//! by a bench that was killed outright are removed by the next run.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    sys::signal::{SigSet, Signal},
    unistd::{ForkResult, Pid, fork},
};
use owca::cgroups::{Hierarchy, Mounts};

/// Prefix of the bench's cgroup names, followed by `<bench pid>-<index>`.
pub const PREFIX: &str = "owca-bench-";

static STOP: AtomicBool = AtomicBool::new(false);

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread and turns them into a stop request.
/// Must run before any other thread starts.
pub fn install_signal_thread() -> Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("blocking SIGINT/SIGTERM")?;
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("bench: {sig}, cleaning up");
            STOP.store(true, Ordering::SeqCst);
        }
    });
    Ok(())
}

/// Fails once a stop was requested, so that the bench unwinds through its drops.
pub fn check() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d`, waking early (with an error) on a stop request.
pub fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// A sysctl set for the bench's lifetime, restored on drop.
pub struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    pub fn set(name: &str, value: &str) -> Result<Self> {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        let old = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, self.old.trim()) {
            eprintln!("warning: could not restore {}: {e}", self.path.display());
        }
    }
}

/// Makes the calling (child) process die with its parent; for forks and `pre_exec`.
/// Only async-signal-safe calls.
pub fn die_with_parent(parent: i32) {
    // SAFETY: prctl and getppid have no memory preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
}

/// Forks a child pinned to `cpus` (when given) that runs `body`, then exits.
/// The child dies with the bench; call from the main thread (the death signal follows
/// the forking thread).
pub fn fork_child(cpus: Option<&CpuSet>, body: impl FnOnce()) -> Result<Pid> {
    let parent = std::process::id() as i32;
    // SAFETY: the child only makes raw syscalls (prctl, affinity, sleeps, pipe I/O) and
    // ends with _exit, never returning into the bench or allocating.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            die_with_parent(parent);
            let _ = SigSet::empty().thread_set_mask();
            if let Some(cpus) = cpus {
                let _ = sched_setaffinity(Pid::from_raw(0), cpus);
            }
            body();
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Removes `mesos/owca-bench-<pid>-*` cgroups of benches that are no longer running.
pub fn sweep_stale(mounts: &Mounts) {
    let hierarchies = [
        Hierarchy::v1("cpu"),
        Hierarchy::v1("cpuacct"),
        Hierarchy::v1("memory"),
        Hierarchy::v1("cpuset"),
        Hierarchy::v1("pids"),
        Hierarchy::V2,
    ];
    for h in hierarchies {
        let (Some(root), Some(mesos)) = (mounts.dir(&h, "/"), mounts.dir(&h, "mesos")) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(&mesos) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let procs = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
            for p in procs.lines() {
                let _ = std::fs::write(root.join("cgroup.procs"), p);
            }
            match std::fs::remove_dir(e.path()) {
                Ok(()) => eprintln!("bench: removed stale cgroup {}", e.path().display()),
                Err(err) => eprintln!("warning: stale cgroup {} left: {err}", e.path().display()),
            }
        }
    }
}
