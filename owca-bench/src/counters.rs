//! Per-cgroup software counters opened the way OWCA and the Mesos `cgroups/perf_event`
//! isolator did: one perf event per cgroup × CPU × event (`PERF_FLAG_PID_CGROUP`), the
//! events of one cgroup and CPU in a group read with one `read(2)`.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use perf_event_open_sys::bindings as sys;
use thiserror::Error;

/// The events counted, in group order (the first is the leader).
pub const EVENTS: [(&str, u64); 2] = [
    ("task_clock", sys::PERF_COUNT_SW_TASK_CLOCK as u64),
    (
        "context_switches",
        sys::PERF_COUNT_SW_CONTEXT_SWITCHES as u64,
    ),
];

#[derive(Debug, Error)]
pub enum CounterError {
    #[error("opening cgroup directory {path}: {source}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("perf_event_open of {event} for cgroup {path} on CPU {cpu}: {source}")]
    Open {
        event: &'static str,
        path: PathBuf,
        cpu: u32,
        source: io::Error,
    },
    #[error("reading the counters of cgroup {path} on CPU {cpu}: {source}")]
    Read {
        path: PathBuf,
        cpu: u32,
        source: io::Error,
    },
}

/// One group (all [`EVENTS`]) of one cgroup on one CPU.
struct Group {
    cpu: u32,
    /// Leader first; every fd stays open for as long as the group counts.
    fds: Vec<OwnedFd>,
}

/// The counters of one cgroup on every CPU.
pub struct CgroupCounters {
    dir: PathBuf,
    groups: Vec<Group>,
}

impl CgroupCounters {
    /// Opens [`EVENTS`] for the cgroup directory `dir` (in the perf_event hierarchy) on
    /// each CPU.
    pub fn open(dir: &Path, cpus: &[u32]) -> Result<Self, CounterError> {
        let cgroup = File::open(dir).map_err(|source| CounterError::Cgroup {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut groups = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            let mut fds: Vec<OwnedFd> = Vec::with_capacity(EVENTS.len());
            for (event, config) in EVENTS {
                let leader = fds.first().map_or(-1, |f| f.as_raw_fd());
                let fd = open(config, cgroup.as_raw_fd(), cpu, leader).map_err(|source| {
                    CounterError::Open {
                        event,
                        path: dir.to_path_buf(),
                        cpu,
                        source,
                    }
                })?;
                fds.push(fd);
            }
            groups.push(Group { cpu, fds });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            groups,
        })
    }

    /// Each event's count summed over the CPUs, scaled for time not counted as perf does.
    pub fn read(&self) -> Result<[f64; EVENTS.len()], CounterError> {
        let mut sums = [0.0; EVENTS.len()];
        // nr, time_enabled, time_running, then one value per event.
        let mut buf = [0u64; 3 + EVENTS.len()];
        for g in &self.groups {
            // SAFETY: reads at most the buffer's size into it from an fd we own.
            let n = unsafe {
                libc::read(
                    g.fds[0].as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    size_of_val(&buf),
                )
            };
            if n != size_of_val(&buf) as isize {
                let source = if n < 0 {
                    io::Error::last_os_error()
                } else {
                    io::Error::other(format!("short read of {n} bytes"))
                };
                return Err(CounterError::Read {
                    path: self.dir.clone(),
                    cpu: g.cpu,
                    source,
                });
            }
            let (enabled, running) = (buf[1], buf[2]);
            let scale = if running > 0 {
                enabled as f64 / running as f64
            } else {
                0.0
            };
            for (sum, v) in sums.iter_mut().zip(&buf[3..]) {
                *sum += *v as f64 * scale;
            }
        }
        Ok(sums)
    }

    /// Open perf fds.
    pub fn fds(&self) -> usize {
        self.groups.iter().map(|g| g.fds.len()).sum()
    }
}

fn open(config: u64, cgroup_fd: i32, cpu: u32, group_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: perf_event_attr is plain integers and unions of integers; all-zero is a
    // valid (enabled, count-only) attribute set.
    let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.size = size_of::<sys::perf_event_attr>() as u32;
    attr.config = config;
    attr.read_format = (sys::PERF_FORMAT_GROUP
        | sys::PERF_FORMAT_TOTAL_TIME_ENABLED
        | sys::PERF_FORMAT_TOTAL_TIME_RUNNING) as u64;
    // SAFETY: a valid attr; with PERF_FLAG_PID_CGROUP, `pid` is a cgroup directory fd and
    // the event counts that cgroup's tasks on `cpu`.
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(
            &mut attr,
            cgroup_fd,
            cpu as i32,
            group_fd,
            (sys::PERF_FLAG_PID_CGROUP | sys::PERF_FLAG_FD_CLOEXEC) as _,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
