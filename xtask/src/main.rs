//! Developer tasks for OWCA: `cargo xtask build|run|test|bench|soak|scenario|fuzz`.

mod bench;
mod build;
mod cmd;
mod fuzz;
mod harness;
mod root;
mod run;
mod scenario;
mod setup;
mod soak;
mod test;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test OWCA")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare the toolchain if needed and build `target/release/owca`.
    Build,
    /// Build, then run the agent as root on `configs/local.yaml`.
    Run {
        /// Arguments for the agent (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Prepare the machine and run all tests as root, one test thread.
    Test {
        /// Extra `cargo test` arguments (after `--`); a further `--` starts test binary arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the benchmarks (`owca/tests/bench/`) in release mode as root.
    Bench {
        /// Bench arguments (after `--`), e.g. `--n 10,100 --duration 60`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the agent for a while against task churn and outages (`owca/tests/soak/`) in
    /// release mode as root, and check its resources come back.
    Soak {
        /// How long the churn lasts.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Run the collocation scenario (`owca/tests/scenario/`): an LC probe next to BE busy
    /// loops, unprotected, with detection and with `!CollocationAllocator`, in release
    /// mode as root; writes `target/scenario/report.{md,json}` and `timeline.svg`.
    Scenario {
        /// Seconds per phase.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
    /// Run every fuzz target (`fuzz/`, cargo-fuzz on nightly) for a while; fails on a crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Stop a target after this many executions instead, if that comes first.
        #[arg(long)]
        runs: Option<u64>,
        /// Targets to run (all when none is given).
        targets: Vec<String>,
    },
}

/// Prints errors as one `what: why: cause` line, without a backtrace, and exits 1.
fn main() -> ExitCode {
    let result: Result<()> = match Cli::parse().command {
        Command::Build => build::build(),
        Command::Run { args } => run::run(&args),
        Command::Test { args } => test::test(&args),
        Command::Bench { args } => bench::bench(&args),
        Command::Soak { minutes } => soak::soak(minutes),
        Command::Scenario { seconds } => scenario::scenario(seconds),
        Command::Fuzz {
            seconds,
            runs,
            targets,
        } => fuzz::fuzz(seconds, runs, &targets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // xtask lives one level below the workspace root.
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// The cargo that runs us (`$CARGO`), or `cargo` from `PATH`.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}
