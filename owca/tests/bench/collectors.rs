//! The collectors compared: none, the `owca` agent (eBPF) on the Mesos stand-in, and
//! `owca-classic` (one perf event per cgroup × CPU × event; the bench-only `owca-bench`
//! crate). Each runs as its own process writing Prometheus text to a file it replaces
//! every second; the agent also as a Prometheus endpoint the bench scrapes.

use std::{
    fs::File,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{guard, support::sample, workload::Workload};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    None,
    Ebpf,
    Classic,
    /// The agent with `!PrometheusExporter` instead of `!LogStorage`.
    EbpfExporter,
    /// The agent with `!LogStorage` and `task_labels: info`: each task's labels once.
    EbpfInfo,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::None, Kind::Ebpf, Kind::Classic];

    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Ebpf => "ebpf",
            Kind::Classic => "classic",
            Kind::EbpfExporter => "ebpf-exporter",
            Kind::EbpfInfo => "ebpf-info",
        }
    }
}

/// `owca-classic`, which is not a target of this package: `cargo xtask bench` builds it
/// (`cargo build [--release] -p owca-bench`) into the profile directory this bench runs
/// from (`target/<profile>/deps/bench-<hash>` → `target/<profile>/owca-classic`).
pub fn classic_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let profile_dir = exe
        .ancestors()
        .nth(2)
        .context("locating target/<profile>/ from the bench binary")?;
    let path = profile_dir.join("owca-classic");
    if !path.is_file() {
        bail!(
            "the classic collector is not built at {}: run the bench with `cargo xtask bench`, \
             or build it first with `cargo build -p owca-bench` (add --release for a release bench)",
            path.display()
        );
    }
    Ok(path)
}

/// A running collector process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Running {
    child: Child,
    pub kind: Kind,
    /// Its Prometheus text output.
    pub out: PathBuf,
    /// Where it serves its metrics instead, when an exporter.
    pub scrape: Option<std::net::SocketAddr>,
    stderr: PathBuf,
}

/// Starts the collector of `kind` (none: `Ok(None)`) for every task of `wl`, pinned to
/// `cpus` when given, and waits until its output covers every task.
pub fn start(
    kind: Kind,
    wl: &Workload,
    dir: &Path,
    cpus: Option<&CpuSet>,
) -> Result<Option<Running>> {
    let out = dir.join(format!("{}.prom", kind.name()));
    let _ = std::fs::remove_file(&out);
    let mut scrape = None;
    let mut cmd = match kind {
        Kind::None => return Ok(None),
        Kind::Ebpf | Kind::EbpfExporter | Kind::EbpfInfo => {
            let storage = if kind != Kind::EbpfExporter {
                let task_labels = if kind == Kind::EbpfInfo {
                    "info"
                } else {
                    "every_sample"
                };
                format!(
                    "!LogStorage {{output_filename: '{}', overwrite: true, task_labels: {task_labels}}}",
                    out.display()
                )
            } else {
                // A free port: bound, then let go for the agent.
                let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
                scrape = Some(addr);
                format!("!PrometheusExporter {{listen: '{addr}'}}")
            };
            let config = dir.join("owca.yaml");
            std::fs::write(
                &config,
                format!(
                    "runner: !MeasurementRunner\n  node: !MesosNode\n    mesos_agent_endpoint: '{}'\n    timeout: 5\n  \
                     action_delay: 1.\n  event_names: []\n  metrics_storage: {storage}\n",
                    wl.endpoint(),
                ),
            )?;
            let mut c = Command::new(env!("CARGO_BIN_EXE_owca"));
            c.args(["-c", config.to_str().unwrap(), "-0", "-l", "warn"]);
            c
        }
        Kind::Classic => {
            let list = dir.join("cgroups.txt");
            let paths: Vec<&str> = wl.tasks.iter().map(|t| t.path.as_str()).collect();
            std::fs::write(&list, paths.join("\n"))?;
            let mut c = Command::new(classic_binary()?);
            c.arg("--cgroups").arg(&list).arg("--output").arg(&out);
            c
        }
    };
    let stderr = dir.join(format!("{}.stderr", kind.name()));
    let parent = std::process::id() as i32;
    let cpus = cpus.copied();
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid,
    // pthread_sigmask, sched_setaffinity, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            guard::die_with_parent(parent);
            // The bench blocks these signals for its own handling; exec keeps the mask.
            let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
            if let Some(cpus) = &cpus {
                let _ = sched_setaffinity(Pid::from_raw(0), cpus);
            }
            // The classic collector holds tasks × CPUs × 2 perf fds: 20 000 at N = 5000.
            let files = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &files);
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr)?)
        .spawn()
        .with_context(|| format!("starting the {} collector", kind.name()))?;
    let mut running = Running {
        child,
        kind,
        out,
        scrape,
        stderr,
    };
    running.wait_ready(wl.tasks.len())?;
    Ok(Some(running))
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output now, if written yet: the file, or a scrape of the endpoint.
    pub fn output(&self) -> Option<String> {
        match self.scrape {
            Some(addr) => scrape(addr).ok(),
            None => std::fs::read_to_string(&self.out).ok(),
        }
    }

    /// Fails naming the collector and quoting its stderr once it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!(
                "the {} collector exited ({status}):\n{}",
                self.kind.name(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Waits (up to 120 s) until an output reports every one of `n` tasks.
    fn wait_ready(&mut self, n: usize) -> Result<()> {
        let start = Instant::now();
        let metric = match self.kind {
            Kind::Classic => "classic_task_clock_seconds_total{",
            _ => "task_oncpu_seconds_total{",
        };
        loop {
            self.check_alive()?;
            if let Some(text) = self.output() {
                let tasks = text.lines().filter(|l| l.starts_with(metric)).count();
                let watched = match self.kind {
                    Kind::Ebpf | Kind::EbpfExporter | Kind::EbpfInfo => {
                        sample(&text, "owca_tasks", &[]).map_or(0, |v| v as usize)
                    }
                    _ => tasks,
                };
                if tasks == n && watched == n {
                    crate::say(format_args!(
                        "{} collector ready in {:.1} s",
                        self.kind.name(),
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the {} collector did not report all {n} tasks within 120 s (see {})",
                    self.kind.name(),
                    self.stderr.display()
                );
            }
            guard::pause(Duration::from_millis(100))?;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` as a scraper makes it; the body of a 200 answer.
pub fn scrape(addr: std::net::SocketAddr) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: owca\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8(answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("an HTTP answer without headers")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("scrape of {addr}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_owned())
}
