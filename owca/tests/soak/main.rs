//! `cargo xtask soak [--minutes N]`: the agent for N minutes against the Mesos stand-in
//! with task churn (an executor starts and one finishes every second, shared executors,
//! cgroups removed under the agent), the Mesos answer flapping between good, garbage, slow
//! and 500, and the Kafka broker stopped and restarted. It reports RSS and fds over time,
//! eBPF map entries against live tasks, errors per component, Kafka packages delivered
//! and dropped, and iterations that overran, and fails when a target is missed:
//! - RSS grows less than 1 MB after warm-up;
//! - fds and map entries are back to their baseline once every task is gone;
//! - no iteration ends more than 2 × `action_delay` after the previous one (the Mesos
//!   timeout is half an `action_delay`, so only a storage or the agent itself can do it);
//! - no panic, and SIGTERM stops the agent with status 0.
//!
//! Writes `target/soak/report.{md,json}` (`target/soak/short/` for `--short`, the
//! 2-minute round `cargo xtask test` makes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

#[path = "../support/mod.rs"]
mod support;

mod churn;
mod probe;
mod report;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use churn::Churn;
use probe::MetricsFile;
use report::{Report, Sample};
use support::{
    agent::Agent,
    kafka_broker::{Broker, count_messages, free_port},
    mesos_agent::{self, Answer},
    sleep_s,
};

const TOPIC: &str = "owca_soak";
const ACTION_DELAY: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    match run() {
        Ok(report) if report.failed().is_empty() => {
            eprintln!("soak: all targets met");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            eprintln!("soak: targets missed: {}", report.failed().join("; "));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(f64, bool)> {
    let (mut minutes, mut short) = (10.0, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--short" => (minutes, short) = (2.0, true),
            "--minutes" => {
                minutes = it
                    .next()
                    .context("--minutes needs a number")?
                    .parse()
                    .context("--minutes needs a number")?;
            }
            // What cargo's test harness would pass on; this one runs everything.
            "--nocapture" | "--test-threads=1" => {}
            _ => bail!("usage: soak [--short] [--minutes N]; unknown argument {flag:?}"),
        }
    }
    if minutes < 1.0 {
        bail!("--minutes must be at least 1");
    }
    Ok((minutes, short))
}

fn run() -> Result<Report> {
    let (minutes, short) = parse_args()?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the soak needs root to load eBPF programs and create cgroups (run `cargo xtask soak`)"
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let mut churn = Churn::default();
    let mesos = rt.block_on(mesos_agent::Agent::start(
        Answer::Json(churn.answer()),
        None,
    ));
    let port = free_port();
    let mut broker = Some(Broker::with_topic(port, TOPIC));
    let metrics_path = dir.path().join("metrics.prom");
    let yaml = format!(
        "runner: !DetectionRunner\n  \
           node: !MesosNode {{mesos_agent_endpoint: '{endpoint}', timeout: 0.5}}\n  \
           action_delay: {delay}\n  \
           detector: !NOPAnomalyDetector\n  \
           metrics_storage: !LogStorage {{output_filename: '{metrics}', overwrite: true}}\n  \
           anomalies_storage: !KafkaStorage\n    \
             topic: {TOPIC}\n    \
             brokers_ips: ['127.0.0.1:{port}']\n    \
             max_timeout_in_seconds: 5\n",
        endpoint = mesos.endpoint(),
        delay = ACTION_DELAY.as_secs_f64(),
        metrics = metrics_path.display(),
    );
    let mut agent = Agent::start(dir.path(), &yaml);
    agent.wait_for(&metrics_path, "the first iteration", |t| {
        t.contains("owca_up")
    });
    let pid = agent.pid();
    let file = MetricsFile::watch(&metrics_path);

    // Baseline: no task, after one broker restart. The Kafka client keeps a connection,
    // a thread and its wake-up pipes per broker it has learned of, and it learns of the
    // restarted broker anew: that is part of the baseline, not a leak of the churn.
    wait(Duration::from_secs(5));
    drop(broker.take());
    wait(Duration::from_secs(3));
    broker = Some(Broker::with_topic(port, TOPIC));
    wait(Duration::from_secs(10));
    let baseline_fds = probe::fds(pid).context("reading the agent's fds")?;
    let baseline_fd_kinds = probe::fd_kinds(pid);
    let baseline_entries = probe::map_entries(pid).context(
        "finding the agent's watched-cgroups map (SLOTS) through /proc/<pid>/fdinfo and bpftool (is bpftool installed?)",
    )?;
    file.reset_intervals();

    let run_for = Duration::from_secs_f64(minutes * 60.0);
    let warmup = run_for / 3;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut warm_rss = None;
    let (mut delivered, mut broker_stops) = (0, 0);
    let mut tick = 0u64;
    while started.elapsed() < run_for {
        tick += 1;
        churn.tick();
        mesos.set_answer(mesos_answer(tick, &churn));
        // The broker is down 15 s of every minute, from its 30th second on.
        match (started.elapsed().as_secs() % 60, broker.is_some()) {
            (30..45, true) => {
                delivered += count_messages(port, TOPIC, Duration::from_millis(500));
                broker = None;
                broker_stops += 1;
            }
            (45.., false) | (0..30, false) => broker = Some(Broker::with_topic(port, TOPIC)),
            _ => {}
        }
        wait(Duration::from_secs(1));
        let sample = Sample {
            at_s: started.elapsed().as_secs_f64(),
            rss_bytes: probe::rss_bytes(pid).unwrap_or(0),
            fds: probe::fds(pid).unwrap_or(0),
            // bpftool is not free: every fifth tick.
            map_entries: (tick % 5 == 1).then(|| probe::map_entries(pid)).flatten(),
            live_cgroups: churn.live_cgroups(),
            listed_tasks: churn.listed_tasks(),
        };
        if warm_rss.is_none() && started.elapsed() >= warmup {
            warm_rss = Some(sample.rss_bytes);
        }
        samples.push(sample);
        if !agent.alive() {
            break;
        }
    }
    let end_rss = samples.last().map_or(0, |s| s.rss_bytes);

    // Every task finishes: fds and map entries must come back to the baseline.
    churn.stop_all();
    mesos.set_answer(Answer::Json(churn.answer()));
    if broker.is_none() {
        broker = Some(Broker::with_topic(port, TOPIC));
    }
    wait(Duration::from_secs(5));
    let end_fds = probe::fds(pid).unwrap_or(usize::MAX);
    let end_fd_kinds = probe::fd_kinds(pid);
    let end_entries = probe::map_entries(pid).unwrap_or(usize::MAX);
    let errors = file.errors();
    delivered += count_messages(port, TOPIC, Duration::from_millis(500));
    drop(broker);
    let alive = agent.alive();
    let (status, log) = agent.terminate();
    drop(mesos);

    let report = Report {
        minutes,
        action_delay_s: ACTION_DELAY.as_secs_f64(),
        tasks_started: churn.counts.0,
        tasks_finished: churn.counts.1,
        cgroups_removed_under_the_agent: churn.counts.2,
        broker_stops,
        samples,
        warm_rss,
        end_rss,
        baseline_fds,
        end_fds,
        fd_changes: report::changes(&baseline_fd_kinds, &end_fd_kinds),
        baseline_entries,
        end_entries,
        errors,
        kafka_delivered: delivered,
        intervals: file.intervals(),
        alive_at_end: alive,
        exit_ok: status.success(),
        panicked: log.contains("panicked"),
    };
    let out_dir = target_dir()?.join(if short { "soak/short" } else { "soak" });
    report.write(&out_dir)?;
    Ok(report)
}

/// The Mesos answer of this tick: good most of the time; every 12 ticks garbage, a 500,
/// and an answer slower than the agent's timeout.
fn mesos_answer(tick: u64, churn: &Churn) -> Answer {
    match tick % 12 {
        8 => Answer::Garbage,
        9 => Answer::Status(500),
        10 => Answer::SlowJson(Duration::from_secs(2), churn.answer()),
        _ => Answer::Json(churn.answer()),
    }
}

/// Waits `d`.
fn wait(d: Duration) {
    sleep_s(d.as_secs_f64());
}

/// `target/` of this build: the soak binary is `target/<profile>/deps/soak-<hash>`.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .context("locating target/ from the soak binary")
}
