//! Task churn on real cgroups: an executor (a `sleep` in its own `mesos/<id>` cgroup of
//! cpu, cpuacct and memory) starts every tick and the oldest finishes. Some executors run
//! two tasks, one of which finishes first; some cgroups are removed while their task is
//! still listed, as when an executor dies before Mesos notices.

use std::collections::VecDeque;

use crate::support::{
    PlacedTask,
    mesos_agent::{RunningTask, get_state_of},
    placed,
    workload::sleeper,
};

/// Executors alive at once once the pool is full.
const POOL: usize = 16;
/// Every this many executors runs two tasks.
const SHARED_EVERY: usize = 4;
/// Every this many finishing executors loses its cgroup while its tasks stay listed.
const VANISH_EVERY: usize = 5;
/// Ticks a vanished executor's tasks stay listed.
const GHOST_TICKS: u32 = 3;

struct Executor {
    task_ids: Vec<String>,
    container_id: String,
    pid: u32,
    /// `None` once the cgroup was removed under the agent.
    placed: Option<PlacedTask>,
    age: usize,
    ghost_ticks: u32,
}

/// The executors and their tasks, as the Mesos stand-in lists them.
#[derive(Default)]
pub struct Churn {
    live: VecDeque<Executor>,
    ghosts: Vec<Executor>,
    started: usize,
    finished: usize,
    /// Tasks started, tasks finished, cgroups removed under the agent.
    pub counts: (usize, usize, usize),
}

impl Churn {
    /// One tick: starts an executor, ages the others, finishes the oldest beyond the pool.
    pub fn tick(&mut self) {
        self.ghosts.retain_mut(|g| {
            g.ghost_ticks = g.ghost_ticks.saturating_sub(1);
            g.ghost_ticks > 0
        });
        for e in &mut self.live {
            e.age += 1;
            // A shared executor's first task finishes halfway: the other must keep its
            // metrics although its cgroup's first owner is gone.
            if e.task_ids.len() == 2 && e.age == POOL / 2 {
                e.task_ids.remove(0);
                self.counts.1 += 1;
            }
        }
        self.start();
        while self.live.len() > POOL {
            self.finish_oldest();
        }
    }

    fn start(&mut self) {
        let n = self.started;
        self.started += 1;
        let name = format!("soak-{n}");
        let placed = placed(&name, &["cpu", "cpuacct", "memory"], sleeper());
        let tasks = if n % SHARED_EVERY == SHARED_EVERY - 1 {
            2
        } else {
            1
        };
        let task_ids: Vec<String> = (0..tasks).map(|t| format!("{name}-task-{t}")).collect();
        self.counts.0 += task_ids.len();
        self.live.push_back(Executor {
            task_ids,
            container_id: placed.rel.rsplit('/').next().unwrap_or_default().to_owned(),
            pid: placed.proc.pid(),
            placed: Some(placed),
            age: 0,
            ghost_ticks: 0,
        });
    }

    fn finish_oldest(&mut self) {
        let Some(mut e) = self.live.pop_front() else {
            return;
        };
        self.finished += 1;
        // Killing the process and removing the cgroup happen either way; a vanished
        // executor's tasks are still listed for a while.
        e.placed = None;
        if self.finished.is_multiple_of(VANISH_EVERY) {
            self.counts.2 += 1;
            e.ghost_ticks = GHOST_TICKS;
            self.ghosts.push(e);
        } else {
            self.counts.1 += e.task_ids.len();
        }
    }

    /// Finishes every executor: the stand-in then lists no task.
    pub fn stop_all(&mut self) {
        for e in self.live.drain(..).chain(self.ghosts.drain(..)) {
            self.counts.1 += e.task_ids.len();
        }
    }

    /// The GET_STATE answer listing every task of the live and vanished executors.
    pub fn answer(&self) -> serde_json::Value {
        let running: Vec<RunningTask> = self
            .live
            .iter()
            .chain(&self.ghosts)
            .flat_map(|e| {
                e.task_ids.iter().map(|id| RunningTask {
                    task_id: id.clone(),
                    executor_pid: e.pid,
                    container_id: e.container_id.clone(),
                })
            })
            .collect();
        get_state_of(&running)
    }

    /// Distinct cgroups of the listed tasks that still exist.
    pub fn live_cgroups(&self) -> usize {
        self.live.iter().filter(|e| e.placed.is_some()).count()
    }

    /// Tasks listed now.
    pub fn listed_tasks(&self) -> usize {
        self.live
            .iter()
            .chain(&self.ghosts)
            .map(|e| e.task_ids.len())
            .sum()
    }
}
