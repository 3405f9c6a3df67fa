//! The scenario's node: Mesos-shaped cgroups for a latency-critical (LC) task, two
//! best-effort (BE) tasks, a sleeping and an idle task, each with a sleeping executor,
//! served by the Mesos stand-in with Aurora tier labels; and the processes each phase
//! runs in them (the LC probe, BE busy loops).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::support::{
    Proc, TestCgroup, cgroup_value,
    mesos_agent::{self, Answer, RunningTask},
    unique,
    workload::{busy, quiet, sleeper_in},
};

pub const LC: &str = "lc";
pub const BE: [&str; 2] = ["be1", "be2"];
const CONTROLLERS: &[&str] = &["cpu", "cpuacct"];

/// A task: its cgroup and its executor (a sleeper), which the Mesos answer names.
pub struct Task {
    pub id: &'static str,
    pub cgroup: TestCgroup,
    _executor: Proc,
}

impl Task {
    fn create(id: &'static str, mounts: &owca::cgroups::Mounts) -> Result<Self> {
        let rel = format!("mesos/{}", unique(&format!("scenario-{id}")));
        let cgroup = TestCgroup::create(mounts, CONTROLLERS, &rel)
            .with_context(|| format!("creating the cgroup of {id}"))?;
        let executor = sleeper_in(&cgroup);
        Ok(Self {
            id,
            cgroup,
            _executor: executor,
        })
    }

    fn running(&self) -> RunningTask {
        RunningTask {
            task_id: self.id.to_owned(),
            executor_pid: self._executor.pid(),
            container_id: self.cgroup.path().trim_start_matches("/mesos/").to_owned(),
        }
    }

    /// CPU seconds its processes used since the cgroup was made (cpuacct.usage).
    pub fn cpu_seconds(&self) -> f64 {
        cgroup_value(&self.cgroup.dir("cpuacct").join("cpuacct.usage"), None) as f64 / 1e9
    }

    fn cpu_file(&self, name: &str) -> PathBuf {
        self.cgroup.dir("cpu").join(name)
    }

    /// `cpu.idle` and the quota in CPUs (`None`: no limit) the kernel holds now.
    pub fn cpu_allocation(&self) -> (bool, Option<f64>) {
        let read = |f| std::fs::read_to_string(self.cpu_file(f)).unwrap_or_default();
        let idle = read("cpu.idle").trim() == "1";
        let quota: i64 = read("cpu.cfs_quota_us").trim().parse().unwrap_or(-1);
        let period: f64 = read("cpu.cfs_period_us")
            .trim()
            .parse()
            .unwrap_or(100_000.0);
        (idle, (quota > 0).then(|| quota as f64 / period))
    }

    /// Back to the kernel's defaults: not idle, no quota, 1024 shares.
    pub fn reset_allocation(&self) -> Result<()> {
        for (file, value) in [
            ("cpu.idle", "0"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.shares", "1024"),
        ] {
            std::fs::write(self.cpu_file(file), value)
                .with_context(|| format!("resetting {file} of {}", self.id))?;
        }
        Ok(())
    }

    /// Starts `proc` and moves it into the cgroup.
    pub fn run(&self, proc: Proc) -> Result<Proc> {
        self.cgroup
            .add_pid(proc.pid())
            .with_context(|| format!("moving a process into {}", self.id))?;
        Ok(proc)
    }

    /// Starts `program args` inside the cgroup from its first instruction: a shell waits
    /// to be moved there, then executes it.
    pub fn exec(&self, program: &Path, args: &[String]) -> Result<Proc> {
        let mut child = Proc::spawn(
            Command::new("sh")
                .arg("-c")
                .arg("read _; exec \"$@\"")
                .arg("sh")
                .arg(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null()),
        );
        self.cgroup
            .add_pid(child.pid())
            .with_context(|| format!("moving a process into {}", self.id))?;
        let mut stdin = child.0.stdin.take().context("piped stdin")?;
        stdin.write_all(b"go\n").context("releasing the process")?;
        Ok(child)
    }
}

/// The tasks and the Mesos stand-in serving them.
pub struct Node {
    pub lc: Task,
    pub be: [Task; 2],
    /// A sleeping and an idle (wakes every 0.2 s) task, never contending.
    _quiet: [Task; 2],
    _quiet_procs: Vec<Proc>,
    pub mesos: mesos_agent::Agent,
}

impl Node {
    pub async fn start() -> Result<Self> {
        let mounts = owca::cgroups::Mounts::discover().context("reading mountinfo")?;
        let lc = Task::create(LC, &mounts)?;
        let be = [Task::create(BE[0], &mounts)?, Task::create(BE[1], &mounts)?];
        let quiet_tasks = [
            Task::create("sleeping", &mounts)?,
            Task::create("idle", &mounts)?,
        ];
        let idle_loop = quiet_tasks[1].run(quiet())?;
        let all = [&lc, &be[0], &be[1], &quiet_tasks[0], &quiet_tasks[1]];
        let mut state = mesos_agent::get_state_of(&all.map(Task::running));
        for (i, tier) in [
            "preferred",
            "best-effort",
            "best-effort",
            "preferred",
            "preemptible",
        ]
        .iter()
        .enumerate()
        {
            mesos_agent::set_labels(&mut state, i, &[("org.apache.aurora.tier", tier)]);
        }
        let mesos = mesos_agent::Agent::start(Answer::Json(state), None).await;
        Ok(Self {
            lc,
            be,
            _quiet: quiet_tasks,
            _quiet_procs: vec![idle_loop],
            mesos,
        })
    }

    /// Busy loops, one per BE task.
    pub fn start_be(&self) -> Result<Vec<Proc>> {
        self.be.iter().map(|t| t.run(busy())).collect()
    }

    pub fn be_cpu_seconds(&self) -> f64 {
        self.be.iter().map(Task::cpu_seconds).sum()
    }
}

/// The `mesos` parent cgroup weighed far above the machine's other processes while the
/// scenario runs (its `cpu.shares` at the kernel's maximum), restored on drop, and a
/// cgroup as heavy for the agent, as a node would reserve for it. The machine is shared:
/// at the default 1024 shares the whole `mesos` group weighs as much as one compiler
/// process elsewhere, and the node the scenario models would be someone else's.
pub struct MesosPriority {
    file: PathBuf,
    before: String,
    agent: TestCgroup,
}

/// The kernel's largest `cpu.shares`.
const MAX_SHARES: &str = "262144";

impl MesosPriority {
    pub fn raise() -> Result<Self> {
        let mounts = owca::cgroups::Mounts::discover().context("reading mountinfo")?;
        let dir = mounts
            .v1("cpu")
            .context("the scenario needs the v1 cpu controller")?
            .join("mesos");
        let file = dir.join("cpu.shares");
        let before = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        std::fs::write(&file, MAX_SHARES).with_context(|| format!("writing {}", file.display()))?;
        let agent = TestCgroup::create(&mounts, &["cpu"], &unique("scenario-agent"))
            .context("creating the agent's cgroup")?;
        let shares = agent.dir("cpu").join("cpu.shares");
        std::fs::write(&shares, MAX_SHARES)
            .with_context(|| format!("writing {}", shares.display()))?;
        Ok(Self {
            file,
            before,
            agent,
        })
    }

    /// Moves the agent (all its threads) into its cgroup.
    pub fn place_agent(&self, pid: u32) -> Result<()> {
        self.agent
            .add_pid(pid)
            .context("moving the agent into its cgroup")
    }
}

impl Drop for MesosPriority {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.file, self.before.trim());
    }
}

/// `owca-lc-probe`, which is not a target of this package: `cargo xtask scenario` builds
/// it (`cargo build [--release] -p owca-bench`) into the profile directory this program
/// runs from (`target/<profile>/deps/scenario-<hash>` → `target/<profile>/`).
pub fn probe_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the scenario binary")?;
    let profile_dir = exe
        .ancestors()
        .nth(2)
        .context("locating target/<profile>/ from the scenario binary")?;
    let path = profile_dir.join("owca-lc-probe");
    if !path.is_file() {
        bail!(
            "the LC probe is not built at {}: run `cargo xtask scenario`, or build it first \
             with `cargo build -p owca-bench --bin owca-lc-probe` (add --release for a release run)",
            path.display()
        );
    }
    Ok(path)
}
