//! Shared helpers of the real-kernel tests: root check, processes that clean up after
//! themselves, and small /proc readers.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod mesos_agent;

use std::{
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

/// Fails the test with a clear reason when not root: these tests load eBPF programs and
/// create cgroups on the real kernel.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to load eBPF programs and create cgroups on the real kernel: run `cargo xtask test` (CI runs as root)"
    );
}

/// A child process killed and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    /// Runs `script` with `sh -c`, pinned to `cpu` when given.
    pub fn sh(script: &str, cpu: Option<u32>) -> Self {
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "sh", "-c", script]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", script]);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawning a test process");
        Self(child)
    }

    /// Runs a Python program.
    pub fn python(code: &str) -> Self {
        let child = Command::new("python3")
            .args(["-c", code])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning python3");
        Self(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of `/proc/<pid>/status`, e.g. `voluntary_ctxt_switches`.
pub fn status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `run_delay` (ns waited on a run queue) from `/proc/<pid>/schedstat`.
pub fn run_delay_ns(pid: u32) -> u64 {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("reading schedstat");
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("schedstat run_delay")
}

/// Minor plus major page faults of a process from `/proc/<pid>/stat`.
pub fn page_faults(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    let after_comm = &text[text.rfind(')').expect("stat comm") + 2..];
    let f: Vec<u64> = after_comm
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // Fields 10 (minflt) and 12 (majflt), counted from 1 at pid; after_comm starts at 3.
    f[10 - 3] + f[12 - 3]
}

/// Reads a number from a cgroup file (first whitespace-separated token, or `key value`).
pub fn cgroup_value(path: &std::path::Path, key: Option<&str>) -> u64 {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match key {
        None => text.trim().parse().expect("a number"),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {}", path.display())),
    }
}

pub fn sleep_s(s: f64) {
    thread::sleep(Duration::from_secs_f64(s));
}

/// A name unique to this test process, for cgroups.
pub fn unique(name: &str) -> String {
    format!("owca-test-{name}-{}", std::process::id())
}

/// The value of the first sample of metric `name` whose line contains every needle.
pub fn sample(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Waits up to 20 s until the file's text satisfies `ok`, and returns that text.
pub fn wait_until(path: &std::path::Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && ok(&text)
        {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what} in {}",
            path.display()
        );
        sleep_s(0.1);
    }
}

/// A process in a fresh cgroup `mesos/<unique name>` of the given v1 controllers. Fields
/// drop in order: the process is killed before its cgroup is removed.
pub struct PlacedTask {
    /// The cgroup path below the hierarchy roots, e.g. `mesos/owca-test-busy-42`.
    pub rel: String,
    pub proc: Proc,
    pub cgroup: owca::cgroups::testing::TestCgroup,
}

/// Starts `proc` placed in a new `mesos/<name>` cgroup.
pub fn placed(name: &str, controllers: &[&str], proc: Proc) -> PlacedTask {
    let mounts = owca::cgroups::Mounts::discover().expect("reading mountinfo");
    let rel = format!("mesos/{}", unique(name));
    let cgroup = owca::cgroups::testing::TestCgroup::create(&mounts, controllers, &rel)
        .expect("creating a test cgroup");
    cgroup.add_pid(proc.pid()).expect("placing the process");
    PlacedTask { rel, proc, cgroup }
}

/// Writes an agent config file into `dir` and returns its path.
pub fn write_config(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let path = dir.join("owca.yaml");
    std::fs::write(&path, yaml).expect("writing the config");
    path
}

/// Stops the agent as an init system would (SIGTERM) and returns how it exited and what
/// it logged (its stderr must be piped).
pub fn terminate(agent: &mut Child) -> (std::process::ExitStatus, String) {
    let pid = nix::unistd::Pid::from_raw(agent.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("sending SIGTERM");
    let status = agent.wait().expect("waiting for the agent");
    (status, logged(agent))
}

/// What an agent that exited logged (its stderr must be piped).
pub fn logged(agent: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = agent.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("reading its stderr");
    }
    stderr
}

/// Waits up to 20 s until the agent's output file `path` satisfies `ok`; fails showing
/// the file and the agent's log when time runs out or the agent exits first.
pub fn wait_for_output(
    agent: &mut Child,
    path: &std::path::Path,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if ok(&text) {
            return text;
        }
        if agent.try_wait().expect("checking the agent").is_some() {
            panic!(
                "the agent exited while waiting for {what}:\n{}",
                logged(agent)
            );
        }
        if start.elapsed() > Duration::from_secs(20) {
            let (_, stderr) = terminate(agent);
            panic!("timed out waiting for {what}:\n{text}\nagent log:\n{stderr}");
        }
        sleep_s(0.1);
    }
}
