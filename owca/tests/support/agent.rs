//! The `owca` binary as the tests run it: started with a config, waited on for its output,
//! stopped as an init system would (SIGTERM), its log collected.

use std::{
    ffi::OsStr,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use super::{Proc, sleep_s, write_config};

/// The agent binary this test build made.
pub const OWCA: &str = env!("CARGO_BIN_EXE_owca");

/// How long an agent may take to produce what a test waits for, or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

/// Numbers the log files of agents started in one test process.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// A running `owca -c <config> -0 ...`, killed and reaped on drop. Its stderr goes to a
/// file, so that a chatty agent never blocks on a full pipe and its log can be read while
/// it runs.
pub struct Agent {
    proc: Proc,
    log: PathBuf,
}

impl Agent {
    /// Writes `yaml` as `dir/owca.yaml` and starts the agent on it (`-c <it> -0`).
    pub fn start(dir: &Path, yaml: &str) -> Self {
        Self::start_with(dir, yaml, &[], &[])
    }

    /// [`Self::start`] with more command-line arguments (`-r Name=program`, `-l info`)
    /// and environment variables (`OWCA_RESCTRL_ROOT`).
    pub fn start_with(dir: &Path, yaml: &str, args: &[&str], env: &[(&str, &OsStr)]) -> Self {
        Self::start_under(&[], dir, yaml, args, env)
    }

    /// [`Self::start_with`] through `wrapper`, a program that sets something up and then
    /// executes the agent in its own process (`setpriv ...`, `prlimit ...`), so that
    /// [`Self::pid`] is the agent's.
    pub fn start_under(
        wrapper: &[&str],
        dir: &Path,
        yaml: &str,
        args: &[&str],
        env: &[(&str, &OsStr)],
    ) -> Self {
        let config = write_config(dir, yaml);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = dir.join(format!("owca-{n}.log"));
        let stderr = File::create(&log).expect("creating the agent's log file");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(OWCA);
                c
            }
            None => Command::new(OWCA),
        };
        let proc = Proc::spawn(
            command
                .arg("-c")
                .arg(&config)
                .arg("-0")
                .args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr),
        );
        Self { proc, log }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 20 s until its output file `path` satisfies `ok`, and returns that
    /// text; fails showing the file and the agent's log when time runs out or the agent
    /// exits first.
    pub fn wait_for(&mut self, path: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if ok(&text) {
                return text;
            }
            if !self.alive() {
                panic!("the agent exited while waiting for {what}:\n{}", self.log());
            }
            if start.elapsed() > PATIENCE {
                let (_, log) = self.terminate();
                panic!("timed out waiting for {what}:\n{text}\nagent log:\n{log}");
            }
            sleep_s(0.1);
        }
    }

    /// Stops it as an init system would (SIGTERM) and returns how it exited and what it
    /// logged. Fails if it is still running 20 s later.
    pub fn terminate(&mut self) -> (ExitStatus, String) {
        if self.alive() {
            let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("sending SIGTERM");
        }
        self.wait_exit()
    }

    /// Waits (up to 20 s) for it to exit by itself; returns how, and what it logged.
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.proc.0.try_wait().expect("waiting for the agent") {
                return (status, self.log());
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "the agent did not exit within {PATIENCE:?}; its log:\n{}",
                    self.log()
                );
            }
            sleep_s(0.05);
        }
    }
}
