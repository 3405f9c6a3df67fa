//! What the agent may do to the machine: its open-files limit, and the capabilities it
//! keeps once its eBPF programs are loaded.
//!
//! The agent runs as uid 0 (the kernel lets only uid 0 or the task's own user move a
//! thread into a resctrl group, whatever the capabilities, so running as another user
//! with ambient capabilities cannot allocate RDT). Being uid 0, it writes the root-owned
//! cgroup and resctrl files as their owner, without `CAP_DAC_OVERRIDE`; it needs
//! capabilities only to load its programs and open its perf events at start
//! ([`LOAD_CAPABILITIES`]), then keeps [`KEPT_CAPABILITIES`] and drops every other one
//! from its effective, permitted, inheritable, ambient and bounding sets, and sets
//! `no_new_privs` ([`drop_capabilities`]).

use std::{collections::HashSet, fmt};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use thiserror::Error;
use tracing::{info, warn};

/// Capabilities the agent needs to start, each alone or through `CAP_SYS_ADMIN` (which
/// the kernel accepts in their place): `CAP_BPF` to create maps, load BTF and programs;
/// `CAP_PERFMON` to load tracing programs (they read kernel memory) and open the per-CPU
/// perf events. Dropped once the collector is loaded.
pub const LOAD_CAPABILITIES: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_PERFMON];

/// Capabilities kept after start, for plug-ins only: `CAP_SETUID` and `CAP_SETGID` to
/// start a plug-in as its configured `user:` (set in the child before it executes the
/// program), `CAP_KILL` to kill that plug-in's process group when it runs as another
/// user. Nothing else needs one once the programs are loaded: operations on open map and
/// perf fds check no capability (Linux 6.18 verified; before 6.5, `bpf()` wanted
/// `CAP_BPF` for every command while `kernel.unprivileged_bpf_disabled` was set), and
/// cgroup, resctrl and output files are root's, written as their owner.
pub const KEPT_CAPABILITIES: [Capability; 3] = [
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
];

/// Why the agent's privileges could not be set up.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    /// A capability needed to load the eBPF programs is missing.
    #[error(
        "missing capability {missing}, needed to load the eBPF programs and open perf events \
         (the agent needs each of {needed}, or CAP_SYS_ADMIN in their place; add them to the \
         service's CapabilityBoundingSet)"
    )]
    MissingForLoad {
        /// The missing ones.
        missing: CapNames,
        /// All of [`LOAD_CAPABILITIES`].
        needed: CapNames,
    },
    /// Reading or changing a capability set failed.
    #[error("{what} capability set: {source}")]
    Caps {
        /// e.g. `reading the effective`.
        what: &'static str,
        /// The kernel's answer, as the caps crate reports it.
        source: caps::errors::CapsError,
    },
    /// Capabilities are per thread: one started before the drop would keep them all.
    #[error(
        "cannot drop capabilities: {0} other threads are running and would keep theirs \
         (the drop must come before any thread starts)"
    )]
    OtherThreads(usize),
    /// `/proc/self/task` could not be listed.
    #[error("listing the agent's threads in /proc/self/task: {0}")]
    Threads(#[source] std::io::Error),
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(#[source] nix::Error),
    /// The open-files limit could not be read or raised.
    #[error("raising the open-files limit (RLIMIT_NOFILE) to its hard limit {hard}: {source}")]
    FdLimit {
        /// The hard limit asked for (0 when reading failed).
        hard: u64,
        /// The kernel's answer.
        source: nix::Error,
    },
}

/// Capability names, sorted, for messages: `CAP_KILL, CAP_SETUID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapNames(pub Vec<Capability>);

impl CapNames {
    fn of(set: &CapsHashSet) -> Self {
        let mut caps: Vec<_> = set.iter().copied().collect();
        caps.sort_by_key(|c| c.index());
        Self(caps)
    }
}

impl fmt::Display for CapNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Raises the soft open-files limit to the hard one (systemd starts services with a soft
/// limit of 1024, less than one agent needs for a thousand tasks); returns the soft limit
/// before and after.
pub fn raise_fd_limit() -> Result<(u64, u64), PrivilegeError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|source| PrivilegeError::FdLimit { hard: 0, source })?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|source| PrivilegeError::FdLimit { hard, source })?;
    }
    Ok((soft, hard))
}

/// What a runner does with its capabilities once its collector is loaded: the binary asks
/// for the drop; a runner started inside another program (a test) keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLoad {
    /// Keep every capability (the process is not the agent alone).
    KeepCapabilities,
    /// Keep only [`KEPT_CAPABILITIES`] once the collector is loaded.
    DropCapabilities,
}

impl AfterLoad {
    /// Drops capabilities if asked to; see [`drop_capabilities`].
    pub fn apply(self) -> Result<(), PrivilegeError> {
        match self {
            Self::KeepCapabilities => Ok(()),
            Self::DropCapabilities => drop_capabilities().map(|_| ()),
        }
    }
}

fn caps_err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |source| PrivilegeError::Caps { what, source }
}

/// Fails naming each of [`LOAD_CAPABILITIES`] that is not effective (nor replaced by
/// `CAP_SYS_ADMIN`), so that a service started without one says which instead of the
/// kernel's bare "Operation not permitted" from deep inside the loader.
pub fn check_load_capabilities() -> Result<(), PrivilegeError> {
    let effective =
        caps::read(None, CapSet::Effective).map_err(caps_err("reading the effective"))?;
    if effective.contains(&Capability::CAP_SYS_ADMIN) {
        return Ok(());
    }
    let missing: CapsHashSet = LOAD_CAPABILITIES
        .into_iter()
        .filter(|c| !effective.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PrivilegeError::MissingForLoad {
        missing: CapNames::of(&missing),
        needed: CapNames::of(&LOAD_CAPABILITIES.into_iter().collect()),
    })
}

/// Keeps only [`KEPT_CAPABILITIES`] (those of them the agent has) and sets
/// `no_new_privs`, so that neither the agent nor a plug-in it executes can gain any
/// other; logs the kept set and returns it.
///
/// `no_new_privs` lets a plug-in start as its `user:` (the child changes user before
/// executing it) but not through a set-user-ID program such as `sudo`. The bounding set
/// is shrunk too when `CAP_SETPCAP` allows it; without it a warning says so, and
/// `no_new_privs` alone keeps executed programs from gaining what it still holds.
///
/// Capabilities belong to threads: this must run on the only thread of the process
/// (it fails otherwise), before anything starts another.
pub fn drop_capabilities() -> Result<CapNames, PrivilegeError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(PrivilegeError::Threads)?
        .count();
    if threads > 1 {
        return Err(PrivilegeError::OtherThreads(threads - 1));
    }
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)?;
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("reading the permitted"))?;
    let kept: CapsHashSet = KEPT_CAPABILITIES
        .into_iter()
        .filter(|c| permitted.contains(c))
        .collect();
    let effective =
        caps::read(None, CapSet::Effective).map_err(caps_err("reading the effective"))?;
    let bounding = caps::read(None, CapSet::Bounding).map_err(caps_err("reading the bounding"))?;
    let extra: HashSet<_> = bounding.difference(&kept).copied().collect();
    if effective.contains(&Capability::CAP_SETPCAP) {
        for cap in &extra {
            caps::drop(None, CapSet::Bounding, *cap).map_err(caps_err("shrinking the bounding"))?;
        }
    } else if !extra.is_empty() {
        warn!(
            keeps = %CapNames::of(&extra),
            "CAP_SETPCAP is missing, so the bounding set keeps capabilities the agent dropped; \
             no_new_privs keeps plug-ins from gaining them"
        );
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clearing the inheritable"))?;
    // Effective first: the kernel refuses a permitted set smaller than the effective one.
    caps::set(None, CapSet::Effective, &kept).map_err(caps_err("setting the effective"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(caps_err("setting the permitted"))?;
    let kept = CapNames::of(&kept);
    info!(capabilities = %kept, "eBPF programs loaded: keeping only these capabilities");
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_sorted_by_number() {
        let set: CapsHashSet = KEPT_CAPABILITIES.into_iter().collect();
        assert_eq!(
            CapNames::of(&set).to_string(),
            "CAP_KILL, CAP_SETGID, CAP_SETUID"
        );
        assert_eq!(CapNames::of(&CapsHashSet::new()).to_string(), "none");
    }

    #[test]
    fn nothing_is_dropped_while_another_thread_runs() {
        let before = std::fs::read_to_string("/proc/self/status").unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        let e = drop_capabilities().unwrap_err();
        stop.send(()).unwrap();
        other.join().unwrap().unwrap();
        assert!(
            matches!(e, PrivilegeError::OtherThreads(n) if n >= 1),
            "{e}"
        );
        let after = std::fs::read_to_string("/proc/self/status").unwrap();
        let caps = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(caps(&before), caps(&after));
    }

    #[test]
    fn a_missing_load_capability_is_named() {
        let e = PrivilegeError::MissingForLoad {
            missing: CapNames(vec![Capability::CAP_PERFMON]),
            needed: CapNames::of(&LOAD_CAPABILITIES.into_iter().collect()),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("missing capability CAP_PERFMON, needed to load"),
            "{text}"
        );
        assert!(
            text.contains("needs each of CAP_PERFMON, CAP_BPF, or CAP_SYS_ADMIN in their place"),
            "{text}"
        );
    }
}
