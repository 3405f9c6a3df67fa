//! What a collector costs itself: CPU share of one core, peak RSS, open fds and iteration
//! latency, measured while it runs against the workload; and, for the agent, how its
//! eBPF on-CPU time agrees with `cpuacct.usage` for the busy tasks.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::Path,
    time::{Duration, Instant, SystemTime},
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
    /// Resident memory over the window (median of samples every 200 ms).
    pub steady_rss_mb: f64,
    pub peak_rss_mb: f64,
    pub fds: usize,
    pub iterations: usize,
    pub iteration_ms_median: f64,
    pub iteration_ms_p99: f64,
    /// The agent's own stage timings (`owca_duration_seconds{function}`), median ms.
    pub stages_ms: BTreeMap<String, f64>,
    /// The same per task, µs.
    pub stages_us_per_task: BTreeMap<String, f64>,
    /// Bytes of output per iteration (the last one seen).
    pub output_bytes: usize,
    /// For the agent writing a file: CPU ms the bench itself spends writing that many
    /// bytes as `!LogStorage` does (a new file renamed over the output), the floor of any
    /// collector writing that much text each iteration.
    pub write_floor_ms: Option<f64>,
    /// Bytes the process read with read(2) and the like per second (`rchar` of
    /// /proc/<pid>/io: cgroupfs and /proc files, and the Mesos answer from its socket).
    pub read_bytes_per_s: f64,
    /// read(2)-like calls per second (`syscr`).
    pub read_calls_per_s: f64,
    /// Context switches of the workload's tasks per second, as the agent counted them.
    pub task_switches_per_s: Option<f64>,
    /// CPU % plus the time added to the workload's switches (set once ping-pong is known).
    pub total_cost_percent: Option<f64>,
}

#[derive(Serialize, Clone)]
pub struct Accuracy {
    pub seconds: f64,
    /// Per busy task: (task id, eBPF on-CPU s, cpuacct.usage s) over the window, cpuacct
    /// read by the bench itself and interpolated to the moments the outputs were written.
    pub tasks: Vec<(String, f64, f64)>,
    pub max_rel_error: f64,
    /// Largest |cpu_usage_per_task − cpuacct.usage| at the same moment over the window, ms:
    /// whether the agent's `cpu_usage_per_task` still means cpuacct.usage.
    pub cpu_usage_max_diff_ms: f64,
    /// The same for its change over the window, relative.
    pub cpu_usage_max_rel_error: f64,
}

/// One output of the agent and the bench's own cpuacct.usage of the busy tasks then.
struct Point {
    /// Per busy task: (eBPF on-CPU s, cpu_usage_per_task ns, cpuacct.usage ns).
    tasks: BTreeMap<String, (f64, f64, f64)>,
}

/// Scrape interval of the exporter variant, as a Prometheus server's default.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

/// Runs the collector of `kind` (unpinned) for `warmup` + `duration` and measures it; for
/// the agent writing a file also the accuracy over the same window.
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
    let usage = CpuacctSampler::start(wl)?;
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    let io0 = io(pid)?;
    let busy: Vec<&str> = wl.busy.iter().map(|&i| wl.tasks[i].id.as_str()).collect();
    let mut iterations = Vec::new();
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rss = Vec::new();
    let mut output_bytes = 0;
    let mut fds = 0;
    let (mut first, mut last) = (None, None);
    let mut switches = (None, None);
    let mut seen_inode = 0;
    let mut scraped: Option<Instant> = None;
    while t0.elapsed() < duration {
        guard::pause(Duration::from_millis(200))?;
        c.check_alive()?;
        fds = fds.max(open_fds(pid)?);
        rss.push(status_kb(pid, "VmRSS")? as f64 / 1024.0);
        let (text, written) = if c.scrape.is_some() {
            if scraped.is_some_and(|t| t.elapsed() < SCRAPE_EVERY) {
                continue;
            }
            scraped = Some(Instant::now());
            let Some(text) = c.output() else { continue };
            (text, SystemTime::now())
        } else {
            // Each output is a new file (written aside, renamed over): a new inode is a
            // new iteration.
            let Ok(meta) = std::fs::metadata(&c.out) else {
                continue;
            };
            if meta.ino() == seen_inode {
                continue;
            }
            let Some(text) = c.output() else { continue };
            seen_inode = meta.ino();
            (text, meta.modified()?)
        };
        if let Some(s) = sample(&text, "owca_duration_seconds", &["function=\"iteration\""]) {
            iterations.push(s * 1e3);
        }
        for (stage, seconds) in stage_durations(&text) {
            stages.entry(stage).or_default().push(seconds * 1e3);
        }
        output_bytes = text.len();
        if kind != Kind::Classic {
            let total = sum_samples(&text, "task_context_switches_total");
            let at = (Instant::now(), total);
            if switches.0.is_none() {
                switches.0 = Some(at);
            } else {
                switches.1 = Some(at);
            }
        }
        if kind == Kind::Ebpf {
            let point = Point {
                tasks: busy_times(&text, &busy, &usage.at(written)?),
            };
            if first.is_none() {
                first = Some((written, point));
            } else {
                last = Some((written, point));
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_percent = (cpu_seconds(pid)? - cpu0) / seconds * 100.0;
    let io1 = io(pid)?;
    let peak_rss_mb = status_kb(pid, "VmHWM")? as f64 / 1024.0;
    if iterations.is_empty() {
        bail!("no iteration of the {} collector seen", kind.name());
    }
    let stages_ms: BTreeMap<String, f64> =
        stages.iter().map(|(k, v)| (k.clone(), median(v))).collect();
    let n = wl.tasks.len() as f64;
    let cost = Cost {
        collector: kind.name(),
        seconds,
        cpu_percent,
        steady_rss_mb: median(&rss),
        peak_rss_mb,
        fds,
        iterations: iterations.len(),
        iteration_ms_median: median(&iterations),
        iteration_ms_p99: percentile(&iterations, 0.99),
        stages_us_per_task: stages_ms
            .iter()
            .map(|(k, v)| (k.clone(), v * 1e3 / n))
            .collect(),
        stages_ms,
        output_bytes,
        write_floor_ms: None,
        read_bytes_per_s: (io1.0 - io0.0) as f64 / seconds,
        read_calls_per_s: (io1.1 - io0.1) as f64 / seconds,
        task_switches_per_s: match switches {
            (Some((t1, a)), Some((t2, b))) if t2 > t1 => Some((b - a) / (t2 - t1).as_secs_f64()),
            _ => None,
        },
        total_cost_percent: None,
    };
    let accuracy = match (first, last) {
        (Some((t1, a)), Some((t2, b))) if !busy.is_empty() => {
            Some(accuracy(&a, &b, t2.duration_since(t1).unwrap_or_default())?)
        }
        _ => None,
    };
    drop(c);
    let mut cost = cost;
    if matches!(kind, Kind::Ebpf | Kind::EbpfInfo) {
        cost.write_floor_ms = Some(write_floor_ms(dir, cost.output_bytes)?);
    }
    Ok((cost, accuracy))
}

/// CPU ms this thread spends writing `bytes` as `!LogStorage` does (a new file, written
/// with one call, renamed over the last one), median of 10.
fn write_floor_ms(dir: &Path, bytes: usize) -> Result<f64> {
    use std::io::Write as _;
    let text = vec![b'x'; bytes];
    let out = dir.join("floor.prom");
    let mut times = Vec::new();
    for i in 0..10 {
        let temp = dir.join(format!("floor.prom.{i}"));
        let before = thread_cpu_seconds()?;
        let mut file = std::fs::File::create_new(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(&text)?;
        drop(file);
        std::fs::rename(&temp, &out)?;
        times.push((thread_cpu_seconds()? - before) * 1e3);
    }
    std::fs::remove_file(&out)?;
    Ok(median(&times))
}

/// User and system CPU time of the calling thread.
fn thread_cpu_seconds() -> Result<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD)?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(s(u.user_time()) + s(u.system_time()))
}

/// Sum of every sample of a family (e.g. all tasks' switches).
fn sum_samples(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `rchar` and `syscr` of /proc/<pid>/io.
fn io(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("rchar:")?, field("syscr:")?))
}

/// When each round of the busy tasks' cpuacct.usage was read, and the values.
type Samples = std::sync::Arc<std::sync::Mutex<Vec<(SystemTime, Vec<u64>)>>>;

/// The busy tasks' cpuacct.usage, read by the bench every 10 ms in a thread of its own,
/// to compare the agent's figures with at the moments it wrote them.
struct CpuacctSampler {
    samples: Samples,
    ids: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CpuacctSampler {
    fn start(wl: &Workload) -> Result<Self> {
        let files: Vec<std::path::PathBuf> = wl
            .busy
            .iter()
            .map(|&i| wl.tasks[i].v1.dir("cpuacct").join("cpuacct.usage"))
            .collect();
        let ids = wl.busy.iter().map(|&i| wl.tasks[i].id.clone()).collect();
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (into, stopped) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let values: Vec<u64> = files
                    .iter()
                    .map(|f| {
                        std::fs::read_to_string(f)
                            .ok()
                            .and_then(|t| t.trim().parse().ok())
                            .unwrap_or(0)
                    })
                    .collect();
                into.lock().unwrap().push((SystemTime::now(), values));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Ok(Self { samples, ids, stop })
    }

    /// Each busy task's cpuacct.usage (ns) at `t`, interpolated between the samples
    /// around it (waiting for the one after it).
    fn at(&self, t: SystemTime) -> Result<BTreeMap<String, f64>> {
        let end = Instant::now() + Duration::from_secs(1);
        loop {
            {
                let samples = self.samples.lock().unwrap();
                if let Some(i) = samples.iter().position(|(at, _)| *at >= t) {
                    let (t1, v1) = &samples[i.saturating_sub(1)];
                    let (t2, v2) = &samples[i];
                    let span = t2.duration_since(*t1).unwrap_or_default().as_secs_f64();
                    let part = if span > 0.0 {
                        t.duration_since(*t1).unwrap_or_default().as_secs_f64() / span
                    } else {
                        0.0
                    };
                    return Ok(self
                        .ids
                        .iter()
                        .zip(v1.iter().zip(v2))
                        .map(|(id, (&a, &b))| (id.clone(), a as f64 + (b as f64 - a as f64) * part))
                        .collect());
                }
            }
            if Instant::now() > end {
                bail!("no cpuacct.usage sample after an output of the agent");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for CpuacctSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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

/// Per busy task: (eBPF on-CPU s, cpu_usage_per_task ns) as the agent reported them in
/// one iteration, and `cpuacct` (ns) as the bench read it then.
fn busy_times(
    text: &str,
    busy: &[&str],
    cpuacct: &BTreeMap<String, f64>,
) -> BTreeMap<String, (f64, f64, f64)> {
    busy.iter()
        .filter_map(|id| {
            let label = format!("task_id=\"{id}\"");
            let oncpu = sample(text, "task_oncpu_seconds_total", &[&label])?;
            let usage = sample(text, "cpu_usage_per_task", &[&label])?;
            Some(((*id).to_owned(), (oncpu, usage, *cpuacct.get(*id)?)))
        })
        .collect()
}

fn accuracy(a: &Point, b: &Point, window: Duration) -> Result<Accuracy> {
    let mut tasks = Vec::new();
    let mut max_rel_error: f64 = 0.0;
    let mut cpu_usage_max_diff_ms: f64 = 0.0;
    let mut cpu_usage_max_rel_error: f64 = 0.0;
    for (id, (oncpu1, usage1, acct1)) in &a.tasks {
        let Some((oncpu2, usage2, acct2)) = b.tasks.get(id) else {
            bail!("busy task {id} missing from the agent's later output");
        };
        let (d_oncpu, d_acct) = (oncpu2 - oncpu1, (acct2 - acct1) / 1e9);
        if d_acct <= 0.0 {
            bail!("busy task {id} got no CPU time in cpuacct.usage over the window");
        }
        max_rel_error = max_rel_error.max((d_oncpu - d_acct).abs() / d_acct);
        let d_usage = (usage2 - usage1) / 1e9;
        cpu_usage_max_rel_error = cpu_usage_max_rel_error.max((d_usage - d_acct).abs() / d_acct);
        for (usage, acct) in [(usage1, acct1), (usage2, acct2)] {
            cpu_usage_max_diff_ms = cpu_usage_max_diff_ms.max((usage - acct).abs() / 1e6);
        }
        tasks.push((id.clone(), d_oncpu, d_acct));
    }
    Ok(Accuracy {
        seconds: window.as_secs_f64(),
        tasks,
        max_rel_error,
        cpu_usage_max_diff_ms,
        cpu_usage_max_rel_error,
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
