//! What a collector costs itself: CPU share of one core, peak RSS, open fds and iteration
//! latency, measured while it runs against the workload; and, for the agent, how its
//! eBPF on-CPU time agrees with `cpuacct.usage` for the busy tasks.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::{
    collectors::{self, Kind},
    guard, median, percentile,
    support::sample,
    workload::Workload,
};

#[derive(Serialize, Clone)]
pub struct Cost {
    pub collector: &'static str,
    pub seconds: f64,
    pub cpu_percent: f64,
    pub peak_rss_mb: f64,
    pub fds: usize,
    pub iterations: usize,
    pub iteration_ms_median: f64,
    pub iteration_ms_p99: f64,
    /// The agent's own stage timings (`owca_duration_seconds{function}`), median ms.
    pub stages_ms: BTreeMap<String, f64>,
    /// Bytes of output per iteration (the last one seen).
    pub output_bytes: usize,
}

#[derive(Serialize, Clone)]
pub struct Accuracy {
    pub seconds: f64,
    /// Per busy task: (task id, eBPF on-CPU s, cpuacct.usage s) over the window.
    pub tasks: Vec<(String, f64, f64)>,
    pub max_rel_error: f64,
}

/// Runs the collector of `kind` (unpinned) for `warmup` + `duration` and measures it; for
/// the agent also the accuracy over the same window.
pub fn measure(
    kind: Kind,
    wl: &Workload,
    dir: &Path,
    warmup: Duration,
    duration: Duration,
) -> Result<(Cost, Option<Accuracy>)> {
    let mut c = collectors::start(kind, wl, dir, None)?.context("a collector to measure")?;
    guard::pause(warmup)?;
    let pid = c.pid();
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    let busy: Vec<&str> = wl.busy.iter().map(|&i| wl.tasks[i].id.as_str()).collect();
    let mut iterations = Vec::new();
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut output_bytes = 0;
    let mut fds = 0;
    let (mut first, mut last) = (None, None);
    let mut seen_inode = 0;
    while t0.elapsed() < duration {
        guard::pause(Duration::from_millis(200))?;
        c.check_alive()?;
        fds = fds.max(open_fds(pid)?);
        // Each output is a new file (written aside, renamed over): a new inode is a new
        // iteration.
        let Ok(ino) = std::fs::metadata(&c.out).map(|m| m.ino()) else {
            continue;
        };
        if ino == seen_inode {
            continue;
        }
        let Some(text) = c.output() else { continue };
        seen_inode = ino;
        if let Some(s) = sample(&text, "owca_duration_seconds", &["function=\"iteration\""]) {
            iterations.push(s * 1e3);
        }
        for (stage, seconds) in stage_durations(&text) {
            stages.entry(stage).or_default().push(seconds * 1e3);
        }
        output_bytes = text.len();
        if kind == Kind::Ebpf {
            let snap = busy_times(&text, &busy);
            if first.is_none() {
                first = Some((Instant::now(), snap));
            } else {
                last = Some((Instant::now(), snap));
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_percent = (cpu_seconds(pid)? - cpu0) / seconds * 100.0;
    let peak_rss_mb = status_kb(pid, "VmHWM")? as f64 / 1024.0;
    if iterations.is_empty() {
        bail!("no iteration of the {} collector seen", kind.name());
    }
    let cost = Cost {
        collector: kind.name(),
        seconds,
        cpu_percent,
        peak_rss_mb,
        fds,
        iterations: iterations.len(),
        iteration_ms_median: median(&iterations),
        iteration_ms_p99: percentile(&iterations, 0.99),
        stages_ms: stages.iter().map(|(k, v)| (k.clone(), median(v))).collect(),
        output_bytes,
    };
    let accuracy = match (first, last) {
        (Some((t1, a)), Some((t2, b))) if !busy.is_empty() => Some(accuracy(&a, &b, t2 - t1)?),
        _ => None,
    };
    drop(c);
    Ok((cost, accuracy))
}

/// Every `owca_duration_seconds{function="..."}` sample but the whole iteration's.
fn stage_durations(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("owca_duration_seconds{"))
        .filter_map(|l| {
            let (_, rest) = l.split_once("function=\"")?;
            let (stage, rest) = rest.split_once('"')?;
            let value = rest.rsplit(' ').next()?.parse().ok()?;
            (stage != "iteration").then(|| (stage.to_owned(), value))
        })
        .collect()
}

/// Per busy task: (eBPF on-CPU seconds, cpuacct.usage ns) as the agent reported them in
/// one iteration.
fn busy_times(text: &str, busy: &[&str]) -> BTreeMap<String, (f64, f64)> {
    busy.iter()
        .filter_map(|id| {
            let label = format!("task_id=\"{id}\"");
            let oncpu = sample(text, "task_oncpu_seconds_total", &[&label])?;
            let usage = sample(text, "cpu_usage_per_task", &[&label])?;
            Some(((*id).to_owned(), (oncpu, usage)))
        })
        .collect()
}

fn accuracy(
    a: &BTreeMap<String, (f64, f64)>,
    b: &BTreeMap<String, (f64, f64)>,
    window: Duration,
) -> Result<Accuracy> {
    let mut tasks = Vec::new();
    let mut max_rel_error: f64 = 0.0;
    for (id, (oncpu1, usage1)) in a {
        let Some((oncpu2, usage2)) = b.get(id) else {
            bail!("busy task {id} missing from the agent's later output");
        };
        let (d_oncpu, d_usage) = (oncpu2 - oncpu1, (usage2 - usage1) / 1e9);
        if d_usage <= 0.0 {
            bail!("busy task {id} got no CPU time in cpuacct.usage over the window");
        }
        max_rel_error = max_rel_error.max((d_oncpu - d_usage).abs() / d_usage);
        tasks.push((id.clone(), d_oncpu, d_usage));
    }
    Ok(Accuracy {
        seconds: window.as_secs_f64(),
        tasks,
        max_rel_error,
    })
}

/// CPU time (user + system, all threads) of a process in seconds, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let after_comm = text.rfind(')').map(|i| &text[i + 2..]).context("no comm")?;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 counted from 1 at pid; after_comm starts at 3.
    let ticks = |i: usize| -> Result<f64> {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("field {i} of {path}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(14)? + ticks(15)?) / hz)
}

/// A `kB` field of /proc/<pid>/status, e.g. `VmHWM`.
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("listing {path}"))?
        .count())
}
