//! What the measured tasks run: a busy loop, a quiet loop, a sleeper; and the kernel's own
//! per-process accounting (/proc) to compare the agent's figures with.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{Proc, TestCgroup};

/// A shell loop that never sleeps: one CPU's worth of work.
pub const BUSY: &str = "while :; do :; done";
/// A shell loop that wakes every 0.2 s: measured, but never contending.
pub const QUIET: &str = "while :; do sleep 0.2; done";

/// A busy loop ([`BUSY`]).
pub fn busy() -> Proc {
    Proc::sh(BUSY, None)
}

/// A busy loop pinned to `cpu`, to make loops share one.
pub fn busy_on(cpu: u32) -> Proc {
    Proc::sh(BUSY, Some(cpu))
}

/// A quiet loop ([`QUIET`]).
pub fn quiet() -> Proc {
    Proc::sh(QUIET, None)
}

/// `sleep` itself (no shell in between, so its pid is the sleeping process): never runs.
pub fn sleeper() -> Proc {
    Proc::spawn(
        Command::new("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )
}

/// A sleeper started inside `cg`. Memory is charged where a page is first touched, so
/// `sleep` must start inside the cgroup: a shell waits to be moved there, then execs it.
pub fn sleeper_in(cg: &TestCgroup) -> Proc {
    let mut child = Proc::spawn(
        Command::new("sh")
            .args(["-c", "read _; exec sleep 3600"])
            .stdin(Stdio::piped()),
    );
    let pid = child.pid();
    cg.add_pid(pid).expect("moving the child into the cgroup");
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    stdin.write_all(b"go\n").expect("releasing the child");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() != "sleep") {
        assert!(Instant::now() < deadline, "the child never exec'd sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
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
