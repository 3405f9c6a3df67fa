//! `cargo xtask bench`: the eBPF collector against classic per-cgroup perf_event counting,
//! side by side in one run, for N Mesos tasks each:
//! - pipe ping-pong µs per round trip within one and between two watched cgroups, with no
//!   collector, the `owca` agent, and `owca-classic` (rounds alternated, medians);
//! - each collector's own CPU, steady and peak RSS, fds, bytes read and iteration latency
//!   at a 1 s interval (the agent writing a file, and serving a scrape every 15 s), its
//!   stages per task, and its total cost: own CPU plus the time it adds to the workload's
//!   context switches;
//! - the agent's eBPF on-CPU time against `cpuacct.usage` for the busy tasks;
//! - the agent's programs' run time per call (`kernel.bpf_stats_enabled=1`, own phase).
//!
//! Prints a Markdown report and writes it with a JSON twin and an SVG plot of CPU and total
//! cost against N to `target/bench/`.
//! `--smoke` is the short run `cargo xtask test` makes to keep this working.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

#[path = "../support/mod.rs"]
mod support;

mod collectors;
mod cost;
mod guard;
mod pingpong;
mod plot;
mod profile;
mod report;
mod workload;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use nix::sched::CpuSet;
use owca::{cgroups::Mounts, collector::SNAPSHOT_BYTES_PER_CGROUP, platform::Platform};
use report::{Machine, Report, Run};
use serde_json::json;

struct Args {
    ns: Vec<usize>,
    duration: f64,
    warmup: f64,
    /// Sleepers waking every 10 ms (the others wake every second).
    fast: usize,
    pp: pingpong::Options,
    smoke: bool,
}

const USAGE: &str = "bench [--smoke] [--n 100,1000,5000] [--duration SECS] [--warmup SECS] [--fast-sleepers K] \
                     [--rounds R] [--reps K] [--round-trips T]";

fn parse_args() -> Result<Args> {
    let mut a = Args {
        ns: vec![100, 1000, 5000],
        duration: 30.0,
        warmup: 3.0,
        fast: 200,
        pp: pingpong::Options {
            rounds: 7,
            reps: 3,
            round_trips: 20_000,
        },
        smoke: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--smoke" {
            a = Args {
                ns: vec![10],
                duration: 3.0,
                warmup: 1.0,
                fast: 200,
                pp: pingpong::Options {
                    rounds: 1,
                    reps: 1,
                    round_trips: 2_000,
                },
                smoke: true,
            };
            continue;
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value; usage: {USAGE}"))?;
        let bad = || format!("bad value {value:?} for {flag}; usage: {USAGE}");
        match flag.as_str() {
            "--n" => {
                a.ns = value
                    .split(',')
                    .map(|v| v.trim().parse())
                    .collect::<Result<_, _>>()
                    .with_context(bad)?
            }
            "--duration" => a.duration = value.parse().with_context(bad)?,
            "--warmup" => a.warmup = value.parse().with_context(bad)?,
            "--fast-sleepers" => a.fast = value.parse().with_context(bad)?,
            "--rounds" => a.pp.rounds = value.parse().with_context(bad)?,
            "--reps" => a.pp.reps = value.parse().with_context(bad)?,
            "--round-trips" => a.pp.round_trips = value.parse().with_context(bad)?,
            _ => bail!("unknown argument {flag}; usage: {USAGE}"),
        }
    }
    if a.ns.iter().any(|&n| n < 2 + workload::BUSY) || a.pp.rounds == 0 || a.pp.reps == 0 {
        bail!(
            "N must be at least {} and rounds, reps at least 1",
            2 + workload::BUSY
        );
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    START.get_or_init(std::time::Instant::now);
    guard::install_signal_thread()?;
    let args = parse_args()?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the bench needs root to load eBPF programs and create cgroups (run `cargo xtask bench`)"
        );
    }
    collectors::classic_binary()?;
    let mounts = Mounts::discover()?;
    guard::sweep_stale(&mounts);
    let out_dir = target_dir()?.join(if args.smoke { "bench/smoke" } else { "bench" });
    std::fs::create_dir_all(&out_dir)?;
    let machine = machine()?;
    let (cpu, others) = cpus()?;
    let _stats_off = guard::Sysctl::set("kernel.bpf_stats_enabled", "0")?;

    let mut runs = Vec::new();
    for &n in &args.ns {
        say(format_args!("N = {n}: starting {n} tasks"));
        let wl = workload::Workload::start(&mounts, n, args.fast, &others)?;
        let dir = tempfile::tempdir()?;
        say(format_args!(
            "N = {n}: ping-pong, {} rounds",
            args.pp.rounds
        ));
        let classic_skipped = classic_fits(n, machine.cpus).err();
        if let Some(why) = &classic_skipped {
            say(format_args!(
                "N = {n}: not running the classic collector: {why}"
            ));
        }
        let pingpong = pingpong::measure(
            &wl,
            dir.path(),
            cpu,
            &others,
            args.pp,
            classic_skipped.is_none(),
        )?;
        say(format_args!("N = {n}: eBPF program profile"));
        let bpf_programs = profile::measure(&wl, dir.path(), cpu, &others, args.pp)?;
        let mut cost = Vec::new();
        let mut accuracy = None;
        for kind in [
            collectors::Kind::Ebpf,
            collectors::Kind::EbpfExporter,
            collectors::Kind::EbpfInfo,
            collectors::Kind::Classic,
        ] {
            if kind == collectors::Kind::Classic && classic_skipped.is_some() {
                continue;
            }
            say(format_args!(
                "N = {n}: {} collector cost over {} s",
                kind.name(),
                args.duration
            ));
            let (c, a) = cost::measure(
                kind,
                &wl,
                dir.path(),
                Duration::from_secs_f64(args.warmup),
                Duration::from_secs_f64(args.duration),
            )?;
            cost.push(c);
            accuracy = accuracy.or(a);
        }
        total_costs(&mut cost, &pingpong);
        runs.push(Run {
            n,
            ebpf_map_bytes_per_iteration: n * SNAPSHOT_BYTES_PER_CGROUP,
            pingpong,
            cost,
            accuracy,
            bpf_programs,
            classic_skipped,
        });
        // After every N but the last (written below), so that a failure at a larger one
        // loses none of the smaller.
        if runs.len() < args.ns.len() {
            write_report(&out_dir, &args, &machine, cpu, &runs)?;
        }
    }
    let report = write_report(&out_dir, &args, &machine, cpu, &runs)?;
    print!("{}", report::markdown(&report));
    say(format_args!(
        "wrote {}/report.{{md,json,svg}}",
        out_dir.display()
    ));
    if args.smoke {
        smoke_checks(&report)?;
    }
    Ok(())
}

/// Whether the classic collector can open its tasks × CPUs × 2 perf fds (and a few more)
/// under this process's hard RLIMIT_NOFILE, raised first when allowed; else why not.
fn classic_fits(n: usize, cpus: usize) -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = (n * cpus * 2 + 64) as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if need <= hard {
        return Ok(());
    }
    match setrlimit(Resource::RLIMIT_NOFILE, need, need) {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "it needs about {need} fds ({n} tasks × {cpus} CPUs × 2 perf events), over this \
             machine's hard RLIMIT_NOFILE of {hard}, which the bench cannot raise ({e}: no \
             CAP_SYS_RESOURCE)"
        )),
    }
}

/// Writes `target/bench/report.{md,json,svg}` for the runs so far.
fn write_report<'a>(
    out_dir: &Path,
    args: &Args,
    machine: &'a Machine,
    cpu: usize,
    runs: &'a [Run],
) -> Result<Report<'a>> {
    let report = Report {
        date: date()?,
        machine,
        options: json!({
            "n": args.ns, "duration_s": args.duration, "warmup_s": args.warmup,
            "sleepers_every_10ms": args.fast, "other_sleepers_every_s": 1.0, "busy_tasks": workload::BUSY,
            "rounds": args.pp.rounds, "reps": args.pp.reps, "round_trips": args.pp.round_trips,
            "pingpong_cpu": cpu, "interval_s": 1.0,
        }),
        targets: report::targets(runs),
        runs,
    };
    std::fs::write(out_dir.join("report.md"), report::markdown(&report))?;
    std::fs::write(out_dir.join("report.svg"), plot::svg(&report))?;
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// Each collector's total cost: its own CPU plus the time it adds to each context switch
/// between cgroups (ping-pong) times the workload's switch rate (as the agent counted it).
fn total_costs(cost: &mut [cost::Cost], pingpong: &[pingpong::Case]) {
    let Some(between) = pingpong.iter().find(|c| c.case.starts_with("between")) else {
        return;
    };
    let rate = cost.iter().find_map(|c| c.task_switches_per_s);
    for c in cost.iter_mut() {
        let added_ns = match c.collector {
            "classic" => between.classic_ns_per_switch,
            _ => between.ebpf_ns_per_switch,
        };
        c.total_cost_percent = rate.map(|r| c.cpu_percent + added_ns.max(0.0) * r / 1e9 * 100.0);
    }
}

/// What the smoke run asserts: every figure was measured, and the collectors saw what
/// they should (targets are not asserted: a short run on a shared machine is noise).
fn smoke_checks(r: &Report) -> Result<()> {
    for run in r.runs {
        for c in &run.pingpong {
            let all = [c.none_us, c.ebpf_us, c.classic_us];
            if !all.iter().all(|v| v.is_finite() && *v > 0.0) {
                bail!("ping-pong {} has a missing figure: {all:?}", c.case);
            }
        }
        let classic = run.cost.iter().find(|c| c.collector == "classic");
        let want = run.n * r.machine.cpus * 2;
        if classic.is_none_or(|c| c.fds < want) {
            bail!("the classic collector should hold at least {want} fds");
        }
        if run
            .cost
            .iter()
            .any(|c| c.iterations == 0 || c.cpu_percent.is_nan())
        {
            bail!("a collector's cost was not measured");
        }
        let bytes = |name: &str| {
            run.cost
                .iter()
                .find(|c| c.collector == name)
                .map(|c| c.output_bytes)
        };
        match (bytes("ebpf"), bytes("ebpf-info")) {
            (Some(every), Some(info)) if info < every => {}
            sizes => {
                bail!("task_labels: info should write fewer bytes (every sample, info): {sizes:?}")
            }
        }
        let floor = run.cost.iter().find_map(|c| c.write_floor_ms);
        if !floor.is_some_and(|ms| ms > 0.0) {
            bail!("the cost of writing the agent's output was not measured: {floor:?}");
        }
        let Some(a) = &run.accuracy else {
            bail!("no accuracy figure for N = {}", run.n);
        };
        if a.tasks.len() != workload::BUSY || a.max_rel_error > 0.1 {
            bail!("eBPF and cpuacct disagree by more than 10%: {:?}", a.tasks);
        }
        if !run.bpf_programs.iter().any(|p| p.runs_per_s > 0.0) {
            bail!("no eBPF program ran during the profile phase");
        }
    }
    say(format_args!("smoke checks passed"));
    Ok(())
}

/// `target/` of this build: the test binary is `target/<profile>/deps/bench-<hash>`.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .context("locating target/ from the bench binary")
}

/// The ping-pong CPU (the last online one) and the others, where everything else runs
/// (the same CPU on a 1-CPU machine).
fn cpus() -> Result<(usize, CpuSet)> {
    let online = aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let cpu = *online.last().context("no online CPU")? as usize;
    let mut others = CpuSet::new();
    for &c in online
        .iter()
        .filter(|&&c| c as usize != cpu || online.len() == 1)
    {
        others.set(c as usize)?;
    }
    Ok((cpu, others))
}

fn machine() -> Result<Machine> {
    let p = Platform::collect()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("MemTotal in /proc/meminfo")?;
    Ok(Machine {
        host: p.host,
        cpu_model: p.cpu_model,
        cpus: p.cpus,
        cores: p.cores,
        sockets: p.sockets,
        memory_gib: kb / 1024.0 / 1024.0,
        possible_cpus: aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")?
            .trim()
            .to_owned(),
    })
}

fn date() -> Result<String> {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .context("running date")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// One progress line on stderr, with the seconds since the bench started.
pub fn say(msg: std::fmt::Arguments) {
    let t = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64();
    eprintln!("bench [{t:6.1} s]: {msg}");
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// Nearest-rank percentile (`p` in 0..=1); NaN for no values.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}
