//! `owca-classic`: the classic way of counting per cgroup, as a baseline for `cargo xtask
//! bench`. It counts task-clock and context switches of each listed cgroup with one perf
//! event per cgroup × CPU × event (what OWCA and the Mesos perf isolator did), reads them
//! every interval and writes Prometheus text like the agent's `!LogStorage` with
//! `overwrite: true`, including `owca_duration_seconds{function="iteration"}`.

mod counters;

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use counters::{CgroupCounters, EVENTS};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use owca::cgroups::Mounts;

#[derive(Parser)]
#[command(about = "Per-cgroup perf_event counting the classic way (benchmark baseline)")]
struct Cli {
    /// File with one cgroup path (`/mesos/<id>`) per line.
    #[arg(long)]
    cgroups: PathBuf,
    /// Prometheus text file, replaced atomically every interval.
    #[arg(long)]
    output: PathBuf,
    /// Seconds between reads.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let list = std::fs::read_to_string(&cli.cgroups)
        .with_context(|| format!("reading the cgroup list {}", cli.cgroups.display()))?;
    let mounts = Mounts::discover().context("finding the cgroup mounts")?;
    let Some(hierarchy) = mounts.preferred("perf_event") else {
        bail!("no perf_event cgroup hierarchy (v1) and no cgroup v2 mounted");
    };
    let cpus =
        aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("reading {what}: {e}"))?;
    // One fd per cgroup × CPU × event: far above the usual soft limit of 1024.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading RLIMIT_NOFILE")?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;

    let mut cgroups = Vec::new();
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let dir = mounts
            .dir(&hierarchy, path)
            .with_context(|| format!("cgroup {path} in the {hierarchy} hierarchy"))?;
        cgroups.push((path.to_owned(), CgroupCounters::open(&dir, &cpus)?));
    }
    let fds: usize = cgroups.iter().map(|(_, c)| c.fds()).sum();

    let interval = Duration::from_secs_f64(cli.interval);
    let tmp = cli.output.with_extension("tmp");
    let mut next = Instant::now();
    loop {
        let started = Instant::now();
        let mut values = Vec::with_capacity(cgroups.len());
        for (path, c) in &cgroups {
            values.push((path, c.read()?));
        }
        let iteration = started.elapsed();
        std::fs::write(&tmp, render(&values, iteration, fds))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &cli.output)
            .with_context(|| format!("replacing {}", cli.output.display()))?;
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Prometheus text: task-clock in seconds and context switches per cgroup, then the
/// collector's own figures.
fn render(values: &[(&String, [f64; EVENTS.len()])], iteration: Duration, fds: usize) -> String {
    let mut out = String::new();
    for (i, (name, _)) in EVENTS.iter().enumerate() {
        let (metric, scale) = match *name {
            "task_clock" => ("classic_task_clock_seconds_total", 1e-9),
            _ => ("classic_context_switches_total", 1.0),
        };
        let _ = writeln!(out, "# TYPE {metric} counter");
        for (path, v) in values {
            let _ = writeln!(out, "{metric}{{task_id=\"{path}\"}} {}", v[i] * scale);
        }
    }
    let _ = writeln!(out, "# TYPE classic_perf_fds gauge\nclassic_perf_fds {fds}");
    let _ = writeln!(
        out,
        "# TYPE owca_duration_seconds gauge\nowca_duration_seconds{{function=\"iteration\"}} {}",
        iteration.as_secs_f64()
    );
    out
}
