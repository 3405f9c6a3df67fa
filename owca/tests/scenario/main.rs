//! `cargo xtask scenario [--seconds N]`: does OWCA protect a latency-critical task? A
//! latency-critical (LC) probe (`owca-lc-probe`: two workers, each 500 µs of CPU every
//! 1 ms) and two best-effort (BE) busy loops run in Mesos-shaped cgroups, served by the
//! Mesos stand-in with Aurora tier labels, next to a sleeping and an idle task, through
//! six phases of N seconds (default 60):
//! 1. LC alone, with `!ContentionDetector` (false positives);
//! 2. BE alone, with `!ContentionDetector` (false positives; BE throughput alone);
//! 3. LC + BE unprotected, no agent;
//! 4. LC + BE with `!ContentionDetector` only (detection delay in iterations);
//! 5. LC + BE with `!CollocationAllocator` reacting only (`idle_best_effort:
//!    on_contention`);
//! 6. LC + BE with `!CollocationAllocator` as shipped (BE idle next to LC from the start);
//! 7. the same, with the BE tasks stopped (SIGSTOP) every other slice of a few seconds:
//!    LC alone and LC protected measured in alternation, side by side in one phase, so
//!    that the machine's own slow and fast minutes weigh on both alike.
//!
//! In phases 4 to 7 the BE tasks start a few seconds after the LC probe, so that the
//! agent has seen the node calm. Writes `target/scenario/report.{md,json}` and
//! `timeline.svg` (`target/scenario/short/` for `--short`, the round `cargo xtask test`
//! makes, which checks that every figure was measured, not the targets).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

#[path = "../support/mod.rs"]
mod support;

mod node;
mod probe;
mod report;
mod svg;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use node::{BE, LC, Node};
use report::{PhaseResult, Report, Tick};
use support::{Proc, agent::Agent, sleep_s};

/// The agents' iteration.
const ACTION_DELAY_S: f64 = 1.0;
/// LC runs this long before what a phase measures (the probe's start, the agent's first
/// intervals).
const WARMUP_S: f64 = 4.0;

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            let missed = report.missed();
            if report.short {
                match report.unmeasured() {
                    None => {
                        eprintln!(
                            "scenario: every figure measured (short round: targets not checked)"
                        );
                        ExitCode::SUCCESS
                    }
                    Some(what) => {
                        eprintln!("scenario: not measured: {what}");
                        ExitCode::FAILURE
                    }
                }
            } else if missed.is_empty() {
                eprintln!("scenario: all targets met");
                ExitCode::SUCCESS
            } else {
                eprintln!("scenario: targets missed: {}", missed.join("; "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("scenario: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(f64, bool)> {
    let (mut seconds, mut short) = (60.0, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--short" => (seconds, short) = (12.0, true),
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a number")?;
            }
            // What cargo's test harness would pass on; this one runs everything.
            "--nocapture" | "--test-threads=1" => {}
            _ => bail!("usage: scenario [--short] [--seconds N]; unknown argument {flag:?}"),
        }
    }
    if seconds < 5.0 {
        bail!("--seconds must be at least 5");
    }
    Ok((seconds, short))
}

/// What runs in a phase.
#[derive(Clone, Copy, PartialEq)]
enum Agenting {
    None,
    Detecting,
    /// The shipped allocator, `idle_best_effort: on_contention`.
    Reacting,
    /// The shipped allocator.
    Allocating,
}

struct Spec {
    name: &'static str,
    title: &'static str,
    lc: bool,
    be: bool,
    agent: Agenting,
    /// BE stopped and continued in alternate slices ([`slice_s`]).
    interleave: bool,
}

const PHASES: [Spec; 7] = [
    Spec {
        name: "lc_alone",
        title: "LC alone (detection on)",
        lc: true,
        be: false,
        agent: Agenting::Detecting,
        interleave: false,
    },
    Spec {
        name: "be_alone",
        title: "BE alone (detection on)",
        lc: false,
        be: true,
        agent: Agenting::Detecting,
        interleave: false,
    },
    Spec {
        name: "unprotected",
        title: "LC + BE, no agent",
        lc: true,
        be: true,
        agent: Agenting::None,
        interleave: false,
    },
    Spec {
        name: "detection",
        title: "LC + BE, ContentionDetector",
        lc: true,
        be: true,
        agent: Agenting::Detecting,
        interleave: false,
    },
    Spec {
        name: "reactive",
        title: "LC + BE, CollocationAllocator on contention only",
        lc: true,
        be: true,
        agent: Agenting::Reacting,
        interleave: false,
    },
    Spec {
        name: "protected",
        title: "LC + BE, CollocationAllocator",
        lc: true,
        be: true,
        agent: Agenting::Allocating,
        interleave: false,
    },
    Spec {
        name: "interleaved",
        title: "LC + BE, CollocationAllocator, BE stopped every other slice",
        lc: true,
        be: true,
        agent: Agenting::Allocating,
        interleave: true,
    },
];

/// The slices of the interleaved phase: five seconds (at least four lines of the probe
/// each, the first after a switch not counted), fewer in a short phase.
fn slice_s(seconds: f64) -> f64 {
    (seconds / 4.0).clamp(2.0, 5.0)
}

/// Stops (SIGSTOP) or continues (SIGCONT) the BE processes.
fn pause_be(be: &[Proc], stop: bool) -> Result<()> {
    use nix::sys::signal::{Signal, kill};
    let signal = if stop {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    for p in be {
        kill(nix::unistd::Pid::from_raw(p.pid() as i32), signal)
            .with_context(|| format!("sending {signal} to BE process {}", p.pid()))?;
    }
    Ok(())
}

fn run() -> Result<Report> {
    let (seconds, short) = parse_args()?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the scenario needs root to load eBPF programs and create cgroups (run `cargo xtask scenario`)"
        );
    }
    let probe = node::probe_binary()?;
    let rt = tokio::runtime::Runtime::new()?;
    let node = rt.block_on(Node::start())?;
    let priority = node::MesosPriority::raise()?;
    let out = out_dir(short);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let mut ticks = Vec::new();
    let mut phases = Vec::new();
    for (index, spec) in PHASES.iter().enumerate() {
        eprintln!("scenario: phase {}: {}", index + 1, spec.title);
        let phase_dir = dir.path().join(spec.name);
        std::fs::create_dir_all(&phase_dir)?;
        let result = phase(
            &node, &priority, spec, index, seconds, &probe, &phase_dir, started, &mut ticks,
        )
        .with_context(|| format!("phase {}", spec.name))?;
        phases.push(result);
        // What the agent stored and logged, for a look at what the figures come from.
        let keep = out.join(spec.name);
        std::fs::create_dir_all(&keep)?;
        for entry in std::fs::read_dir(&phase_dir)? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, keep.join(name))?;
            }
        }
    }
    let report = Report::new(seconds, short, ACTION_DELAY_S, phases, ticks);
    report.write(&out)?;
    println!("{}", report.markdown());
    eprintln!("scenario: report in {}", out.display());
    Ok(report)
}

fn out_dir(short: bool) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/scenario-<hash> → target/scenario
    let target = exe.ancestors().nth(3).unwrap_or(Path::new("target"));
    let dir = target.join("scenario");
    if short { dir.join("short") } else { dir }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The agent's config for a phase.
fn agent_yaml(node: &Node, agenting: Agenting, dir: &Path) -> String {
    let common = format!(
        "  node: !MesosNode {{mesos_agent_endpoint: '{}', timeout: 0.5}}\n  \
         action_delay: {ACTION_DELAY_S}\n  \
         metrics_storage: !LogStorage {{output_filename: '{}', overwrite: true}}\n  \
         anomalies_storage: !LogStorage {{output_filename: '{}', overwrite: false}}\n",
        node.mesos.endpoint(),
        dir.join("metrics.prom").display(),
        dir.join("anomalies.prom").display(),
    );
    match agenting {
        Agenting::Allocating | Agenting::Reacting => format!(
            "runner: !AllocationRunner\n{common}  \
             allocations_storage: !LogStorage {{output_filename: '{}', overwrite: false}}\n  \
             allocation_configuration: !AllocationConfiguration {{cpu_quota_period: 10000}}\n\
             {}\n",
            dir.join("allocations.prom").display(),
            shipped_allocator(agenting == Agenting::Reacting),
        ),
        _ => format!("runner: !DetectionRunner\n{common}  detector: !ContentionDetector\n"),
    }
}

/// The `allocator:` block of `configs/mesos/mesos_collocation_allocator.yaml`: the
/// scenario runs the allocator as shipped, or with `idle_best_effort: on_contention`.
fn shipped_allocator(reacting: bool) -> String {
    let config = include_str!("../../../configs/mesos/mesos_collocation_allocator.yaml");
    let mut lines = config
        .lines()
        .skip_while(|l| !l.starts_with("  allocator:"));
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| l.starts_with("    ")));
    let block = out.join("\n");
    if reacting {
        assert!(
            block.contains("idle_best_effort: with_lc"),
            "the shipped allocator sets idle_best_effort"
        );
        block.replace(
            "idle_best_effort: with_lc",
            "idle_best_effort: on_contention",
        )
    } else {
        block
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each a different thing"
)]
fn phase(
    node: &Node,
    priority: &node::MesosPriority,
    spec: &Spec,
    index: usize,
    seconds: f64,
    probe: &Path,
    dir: &Path,
    started: Instant,
    ticks: &mut Vec<Tick>,
) -> Result<PhaseResult> {
    for t in &node.be {
        t.reset_allocation()?;
    }
    let anomalies = dir.join("anomalies.prom");
    let mut agent = match spec.agent {
        Agenting::None => None,
        a => {
            let mut agent = Agent::start(dir, &agent_yaml(node, a, dir));
            priority.place_agent(agent.pid())?;
            agent.wait_for(
                &dir.join("metrics.prom"),
                "the agent's first iteration",
                |t| t.contains("owca_up"),
            );
            Some(agent)
        }
    };
    let probe_out = dir.join("probe.jsonl");
    let _probe: Option<Proc> = if spec.lc {
        let args = ["--output".to_owned(), probe_out.display().to_string()];
        Some(node.lc.exec(probe, &args)?)
    } else {
        None
    };
    sleep_s(if spec.lc { WARMUP_S } else { 1.0 });
    let packages_before =
        report::packages(&std::fs::read_to_string(&anomalies).unwrap_or_default());
    let from = unix_now();
    let be_procs = if spec.be {
        node.start_be()?
    } else {
        Vec::new()
    };
    let (lc0, be0, busy0) = (
        node.lc.cpu_seconds(),
        node.be_cpu_seconds(),
        report::node_busy_seconds(),
    );
    let phase_start = Instant::now();
    let mut seen_anomalies = 0;
    let mut last = (lc0, be0, busy0, Instant::now());
    // Interleaved: (from, to, BE running) of each slice; BE runs in the first.
    let mut slices: Vec<(f64, f64, bool)> = Vec::new();
    let mut slice = (from, true);
    while phase_start.elapsed() < Duration::from_secs_f64(seconds) {
        sleep_s(1.0);
        if spec.interleave && unix_now() - slice.0 >= slice_s(seconds) - 0.01 {
            pause_be(&be_procs, slice.1)?;
            let now = unix_now();
            slices.push((slice.0, now, slice.1));
            slice = (now, !slice.1);
        }
        let now = (
            node.lc.cpu_seconds(),
            node.be_cpu_seconds(),
            report::node_busy_seconds(),
            Instant::now(),
        );
        let dt = (now.3 - last.3).as_secs_f64();
        let text = std::fs::read_to_string(&anomalies).unwrap_or_default();
        let on_lc = report::anomalies_on(&text, LC);
        let (idle, quota) = node.be[0].cpu_allocation();
        ticks.push(Tick {
            at_s: started.elapsed().as_secs_f64(),
            phase: index,
            lc_cpus: (now.0 - last.0) / dt,
            be_cpus: (now.1 - last.1) / dt,
            node_cpus: (now.2 - last.2) / dt,
            be_idle: idle,
            be_quota_cpus: quota,
            new_anomalies: on_lc.saturating_sub(seen_anomalies),
            lc_p99_us: None,
        });
        seen_anomalies = on_lc;
        last = now;
        if let Some(a) = &mut agent
            && !a.alive()
        {
            bail!("the agent exited:\n{}", a.log());
        }
    }
    let to = unix_now();
    if spec.interleave {
        slices.push((slice.0, to, slice.1));
        pause_be(&be_procs, false)?;
    }
    let lc_cpus = (node.lc.cpu_seconds() - lc0) / (to - from);
    let be_cpus = (node.be_cpu_seconds() - be0) / (to - from);
    let node_cpus = (report::node_busy_seconds() - busy0) / (to - from);
    drop(be_procs);
    drop(_probe);
    let agent_log = match &mut agent {
        Some(a) => {
            let (status, log) = a.terminate();
            if !status.success() {
                bail!("the agent exited with {status}:\n{log}");
            }
            log
        }
        None => String::new(),
    };
    let lines = probe::read(&probe_out)?;
    // The per-second p99 of the timeline.
    for line in &lines {
        let at_s = started.elapsed().as_secs_f64() - (unix_now() - line.at);
        if let Some(t) = ticks
            .iter_mut()
            .filter(|t| t.phase == index)
            .min_by(|a, b| (a.at_s - at_s).abs().total_cmp(&(b.at_s - at_s).abs()))
        {
            t.lc_p99_us = Some(line.p99_us);
        }
    }
    let text = std::fs::read_to_string(&anomalies).unwrap_or_default();
    // The first slice, in which the allocator reacts, is the protected phase's business.
    let spans = |running: bool| -> Vec<(f64, f64)> {
        slices
            .iter()
            .skip(1)
            .filter(|s| s.2 == running)
            .map(|s| (s.0, s.1))
            .collect()
    };
    let interleaved = spec.interleave.then(|| report::Interleaved {
        slice_s: slice_s(seconds),
        alone: probe::merge_spans(&lines, &spans(false)),
        protected: probe::merge_spans(&lines, &spans(true)),
    });
    Ok(PhaseResult {
        name: spec.name,
        title: spec.title,
        seconds: to - from,
        lc: spec.lc,
        be: spec.be,
        agent: match spec.agent {
            Agenting::None => "none",
            Agenting::Detecting => "ContentionDetector",
            Agenting::Reacting => "CollocationAllocator (on contention)",
            Agenting::Allocating => "CollocationAllocator",
        },
        latency: spec.lc.then(|| probe::merge(&lines, from, to)),
        latency_settled: spec.lc.then(|| probe::merge(&lines, from + 5.0, to)),
        lc_cpus,
        be_cpus,
        node_cpus,
        anomalies: report::anomaly_count(&text),
        detection_delay: (spec.agent != Agenting::None && spec.be && spec.lc)
            .then(|| report::detection_delay(&text, packages_before, LC, &BE))
            .flatten(),
        decisions: agent_log
            .matches("taking CPU from a best-effort task")
            .count()
            + agent_log.matches("making a best-effort task idle").count(),
        give_backs: agent_log
            .matches("giving CPU back to a best-effort task")
            .count(),
        interleaved,
    })
}
