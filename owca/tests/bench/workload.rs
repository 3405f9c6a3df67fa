//! N Mesos-shaped tasks: cgroups `mesos/<id>` in each of the five v1 hierarchies Mesos
//! puts a task in with its cpu and memory isolators (cpu, cpuacct, memory, cpuset, pids;
//! those mounted as v1), with a 1 GiB memory limit, and in cgroup v2, which holds the
//! perf_event controller on this kind of hybrid host, for the classic collector; each with
//! a real process, served by the Mesos stand-in.

use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::{
    sched::CpuSet,
    sys::{
        signal::{Signal, kill},
        wait::waitpid,
    },
    unistd::Pid,
};
use owca::cgroups::{Hierarchy, Mounts};

use crate::{
    guard,
    support::{
        TestCgroup,
        mesos_agent::{Agent, Answer, RunningTask, get_state_of},
    },
};

/// The v1 controllers a Mesos task's cgroup is made in (those mounted).
const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "cpuset", "pids"];

/// Busy tasks (a spinning process each); every other task's process is a sleeper.
pub const BUSY: usize = 2;
/// Sleepers wake every 10 ms, up to [`Workload::start`]'s `fast` of them; the rest every
/// second: 1000 sleepers at 10 ms (100 000 wakeups/s) would take a whole CPU of a small
/// machine and starve the busy tasks.
const FAST_SLEEP: Duration = Duration::from_millis(10);
const SLOW_SLEEP: Duration = Duration::from_secs(1);

/// One task's cgroup in every hierarchy the bench uses.
pub struct TaskCgroup {
    /// Task id and container id: the cgroup's name.
    pub id: String,
    /// `/mesos/<id>`.
    pub path: String,
    pub v1: TestCgroup,
    /// Where perf_event lives: the v1 perf_event hierarchy if mounted, else v2.
    pub perf: TestCgroup,
}

impl TaskCgroup {
    pub fn add_pid(&self, pid: u32) -> Result<()> {
        self.v1.add_pid(pid)?;
        self.perf.add_pid(pid)?;
        Ok(())
    }
}

/// Forked processes, killed and reaped on drop.
#[derive(Default)]
pub struct Children(Vec<Pid>);

impl Drop for Children {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = kill(p, Signal::SIGKILL);
        }
        for &p in &self.0 {
            let _ = waitpid(p, None);
        }
    }
}

/// The tasks and the Mesos stand-in serving them. Fields drop in order: the stand-in
/// stops, processes die, then their cgroups go.
pub struct Workload {
    mesos: Agent,
    _rt: tokio::runtime::Runtime,
    _children: Children,
    pub tasks: Vec<TaskCgroup>,
    /// Indices of the busy tasks in `tasks`.
    pub busy: Vec<usize>,
}

impl Workload {
    /// Creates `n` tasks with their processes pinned to `cpus`. Tasks 0 and 1 are where
    /// the ping-pong runs (their own process is a sleeper); the next [`BUSY`] are busy;
    /// the first `fast` sleepers wake every 10 ms.
    pub fn start(mounts: &Mounts, n: usize, fast: usize, cpus: &CpuSet) -> Result<Self> {
        let perf = mounts
            .preferred("perf_event")
            .context("no perf_event hierarchy (v1) and no cgroup v2")?;
        let controllers: Vec<&str> = V1_CONTROLLERS
            .into_iter()
            .filter(|c| mounts.v1(c).is_some())
            .collect();
        let mut tasks = Vec::with_capacity(n);
        let mut children = Children::default();
        let busy: Vec<usize> = (2..n.min(2 + BUSY)).collect();
        let mut running = Vec::with_capacity(n);
        for i in 0..n {
            guard::check()?;
            let id = format!("{}{}-{i}", guard::PREFIX, std::process::id());
            let path = format!("/mesos/{id}");
            let v1 = TestCgroup::create(mounts, &controllers, &path)?;
            if controllers.contains(&"memory") {
                std::fs::write(v1.dir("memory").join("memory.limit_in_bytes"), "1073741824")
                    .context("setting a task's memory limit")?;
            }
            let perf = match &perf {
                Hierarchy::V2 => TestCgroup::create_v2(mounts, &path)?,
                Hierarchy::V1 { controller } => TestCgroup::create(mounts, &[controller], &path)?,
            };
            let task = TaskCgroup { id, path, v1, perf };
            let pid = if busy.contains(&i) {
                guard::fork_child(Some(cpus), || {
                    loop {
                        std::hint::spin_loop();
                    }
                })?
            } else {
                let sleepers_before = i - busy.iter().filter(|&&b| b < i).count();
                let period = if sleepers_before < fast {
                    FAST_SLEEP
                } else {
                    SLOW_SLEEP
                };
                guard::fork_child(Some(cpus), || {
                    let ts = libc::timespec {
                        tv_sec: period.as_secs() as i64,
                        tv_nsec: period.subsec_nanos() as i64,
                    };
                    loop {
                        // SAFETY: a valid timespec; no remainder wanted.
                        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
                    }
                })?
            };
            children.0.push(pid);
            task.add_pid(pid.as_raw() as u32)?;
            running.push(RunningTask {
                task_id: task.id.clone(),
                executor_pid: pid.as_raw() as u32,
                container_id: task.id.clone(),
            });
            tasks.push(task);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the Mesos stand-in's runtime")?;
        let mesos = rt.block_on(Agent::start(Answer::Json(get_state_of(&running)), None));
        Ok(Self {
            mesos,
            _rt: rt,
            _children: children,
            tasks,
            busy,
        })
    }

    /// The Mesos stand-in's URL.
    pub fn endpoint(&self) -> String {
        self.mesos.endpoint()
    }
}
