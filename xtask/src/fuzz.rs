//! `cargo xtask fuzz`: every cargo-fuzz target of `fuzz/` for a while, one after another.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup, workspace_root};

/// The targets in `fuzz/fuzz_targets/`, in the order they run.
pub const TARGETS: &[&str] = &[
    "mesos_state",
    "config_yaml",
    "plugin_answer",
    "cpu_list",
    "schemata",
    "prometheus_encode",
];

/// Seconds per target of the short round that `cargo xtask test` runs after the tests.
const SHORT_ROUND_SECONDS: u64 = 15;

/// Memory a target may use before libFuzzer calls it a crash (its default, stated so the
/// limit is visible).
const RSS_LIMIT_MB: u32 = 2048;

/// Seconds one input may take before libFuzzer calls it a crash: nothing the targets
/// parse should take more than a fraction of a second.
const INPUT_TIMEOUT_SECONDS: u32 = 10;

/// What one target's run did.
struct Outcome {
    target: &'static str,
    executions: u64,
    elapsed: Duration,
    /// libFuzzer's summary line and the input it wrote, when it found a crash.
    failure: Option<String>,
}

/// Builds the targets (installing cargo-fuzz if missing), checks the strict Prometheus
/// reader the encoder's target relies on, then runs each of `targets` (all when empty)
/// for `seconds` (or `runs` executions, if that comes first) on its corpus
/// `fuzz/corpus/<target>/`, printing the executions and time per target. Fails if any target crashed, leaked, timed out or ran out of memory; the
/// input is kept in `fuzz/artifacts/<target>/`.
pub fn fuzz(seconds: u64, runs: Option<u64>, targets: &[String]) -> Result<()> {
    let targets: Vec<&'static str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        targets
            .iter()
            .map(|t| {
                TARGETS
                    .iter()
                    .copied()
                    .find(|known| known == t)
                    .with_context(|| {
                        format!("no fuzz target {t}; the targets are {}", TARGETS.join(", "))
                    })
            })
            .collect::<Result<_>>()?
    };
    setup::toolchain()?;
    setup::cargo_fuzz()?;
    let fuzz_dir = workspace_root().join("fuzz");
    cmd::run(
        Command::new(crate::cargo())
            .current_dir(&fuzz_dir)
            // The helpers need not the library, whose debug build would double the build.
            .args(["test", "--lib", "--no-default-features"]),
    )
    .context("testing the fuzz helpers (the strict Prometheus reader)")?;
    cmd::run(nightly_fuzz().arg("build"))
        .context("building the fuzz targets (cargo fuzz build, nightly)")?;

    let mut outcomes = Vec::new();
    for target in targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        outcomes.push(run_target(&fuzz_dir, target, seconds, runs)?);
    }

    eprintln!("\nxtask: fuzz round, {seconds} s per target:");
    for o in &outcomes {
        let secs = o.elapsed.as_secs_f64();
        eprintln!(
            "  {:<18} {:>12} executions in {:>7.1} s ({:>8.0}/s){}",
            o.target,
            o.executions,
            secs,
            o.executions as f64 / secs.max(f64::MIN_POSITIVE),
            if o.failure.is_some() { "  FAILED" } else { "" }
        );
    }
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| Some(format!("{}: {}", o.target, o.failure.as_ref()?)))
        .collect();
    if !failures.is_empty() {
        bail!(
            "fuzzing found {} failing target(s); reproduce with `cargo +nightly fuzz run <target> <artifact>`:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// The short round of `cargo xtask test`: every target for [`SHORT_ROUND_SECONDS`].
pub fn short() -> Result<()> {
    fuzz(SHORT_ROUND_SECONDS, None, &[]).context("the short fuzz round")
}

/// `cargo fuzz` on the nightly toolchain, from the workspace root.
fn nightly_fuzz() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace_root())
        .args(["run", "nightly", "cargo", "fuzz"])
        // The stable cargo that runs xtask must not choose the nightly build's compiler.
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

fn run_target(
    fuzz_dir: &Path,
    target: &'static str,
    seconds: u64,
    runs: Option<u64>,
) -> Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("creating the corpus directory {}", corpus.display()))?;
    let mut cmd = nightly_fuzz();
    cmd.args(["run", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1");
    if let Some(runs) = runs {
        cmd.arg(format!("-runs={runs}"));
    }
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("failed to start `{}`", cmd::describe(&cmd)))?;
    let elapsed = started.elapsed();
    remove_fake_proc_roots();
    // libFuzzer reports on stderr; cargo-fuzz's own messages go to both.
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let executions = stat(&log, "stat::number_of_executed_units:").unwrap_or(0);
    let failure = (!out.status.success()).then(|| {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "xtask: {target} failed ({}); the end of its output:",
            out.status
        );
        for line in tail.iter().rev() {
            eprintln!("  | {line}");
        }
        let summary = log
            .lines()
            .find(|l| l.starts_with("SUMMARY:") || l.contains("ERROR: libFuzzer"))
            .unwrap_or("exited with an error");
        let artifact = log
            .lines()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p))
            .map_or_else(String::new, |p| format!("; input in {p}"));
        format!("{summary}{artifact}")
    });
    Ok(Outcome {
        target,
        executions,
        elapsed,
        failure,
    })
}

/// Removes the fake `/proc` trees the mesos_state target leaves in the temporary directory
/// (one per fuzzing process, `owca-fuzz-proc-<pid>`; libFuzzer exits without cleaning up).
fn remove_fake_proc_roots() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Only those of processes that have ended: another fuzzing run may be using its own.
        let ended = name
            .to_string_lossy()
            .strip_prefix("owca-fuzz-proc-")
            .is_some_and(|pid| !Path::new("/proc").join(pid).exists());
        if ended {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The number after `key` in libFuzzer's final stats.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::stat;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let log = "Done 1234 runs in 2 second(s)\nstat::number_of_executed_units: 1234\n\
                   stat::average_exec_per_sec:     617\n";
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(1234));
        assert_eq!(stat(log, "stat::average_exec_per_sec:"), Some(617));
        assert_eq!(stat(log, "stat::peak_rss_mb:"), None);
    }
}
