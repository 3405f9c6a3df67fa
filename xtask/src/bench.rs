//! `cargo xtask bench`.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cmd, setup, workspace_root};

/// Runs the benchmark `owca/tests/bench/` in release mode with `args` (e.g. `--n 10,100
/// --duration 60`; see its usage line); it prints the report and writes `target/bench/`.
pub fn bench(args: &[String]) -> Result<()> {
    crate::root::reexec_unless_root("the benchmarks load eBPF programs and create cgroups")?;
    setup::toolchain()?;
    build_classic(true)?;
    cmd::run(
        Command::new(crate::cargo())
            .current_dir(workspace_root())
            .args([
                "test",
                "--release",
                "--package",
                "owca",
                "--test",
                "bench",
                "--",
            ])
            .args(args),
    )
    .context("running the benchmarks")
}

/// The short run that `cargo xtask test` makes so that the bench keeps working: N = 10, a
/// few seconds, checks that every figure was measured (not the targets).
pub fn smoke() -> Result<()> {
    build_classic(false)?;
    cmd::run(
        Command::new(crate::cargo())
            .current_dir(workspace_root())
            .args([
                "test",
                "--package",
                "owca",
                "--test",
                "bench",
                "--",
                "--smoke",
            ]),
    )
    .context("running the bench's smoke run")
}

/// Builds the classic collector the bench compares the agent with (`owca-classic` of the
/// bench-only `owca-bench` crate, which `cargo install owca` does not install) into the
/// profile directory the bench runs from, where the bench looks for it.
fn build_classic(release: bool) -> Result<()> {
    let mut cargo = Command::new(crate::cargo());
    cargo.current_dir(workspace_root()).args([
        "build",
        "--package",
        "owca-bench",
        "--bin",
        "owca-classic",
    ]);
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).context("building the classic collector (owca-bench)")
}
