//! `cargo xtask scenario`.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cmd, setup, workspace_root};

/// Holds other kernel tests off the machine while the scenario measures latencies.
const LOCK: &str = "/tmp/owca-kernel-tests.lock";

/// Runs the collocation scenario `owca/tests/scenario/` in release mode with `seconds`
/// per phase; it prints the report, writes `target/scenario/` and fails when a target is
/// missed.
pub fn scenario(seconds: f64) -> Result<()> {
    crate::root::reexec_unless_root("the scenario loads eBPF programs and creates cgroups")?;
    setup::toolchain()?;
    build_probe(true)?;
    run(&["--release"], &["--seconds", &seconds.to_string()]).context("running the scenario")
}

/// The short round that `cargo xtask test` makes (debug build, 12 s phases): every figure
/// must be measured; the targets are not checked.
pub fn short() -> Result<()> {
    build_probe(false)?;
    run(&[], &["--short"]).context("running the scenario's short round")
}

/// Builds `owca-lc-probe` (of the bench-only `owca-bench` crate) into the profile
/// directory the scenario runs from, where it looks for it.
fn build_probe(release: bool) -> Result<()> {
    let mut cargo = Command::new(crate::cargo());
    cargo.current_dir(workspace_root()).args([
        "build",
        "--package",
        "owca-bench",
        "--bin",
        "owca-lc-probe",
    ]);
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).context("building the LC probe (owca-bench)")
}

/// Builds the scenario, then runs it under `flock` on the kernel tests' lock when `flock`
/// exists, so that no other kernel test runs during the measurement.
fn run(cargo_args: &[&str], scenario_args: &[&str]) -> Result<()> {
    // Built before the lock is taken: compiling holds nobody's kernel test off.
    cmd::run(
        Command::new(crate::cargo())
            .current_dir(workspace_root())
            .args([
                "test",
                "--package",
                "owca",
                "--test",
                "scenario",
                "--no-run",
            ])
            .args(cargo_args),
    )?;
    let flock = Command::new("flock").arg("--version").output().is_ok();
    let mut command = if flock {
        let mut c = Command::new("flock");
        c.arg(LOCK).arg(crate::cargo());
        c
    } else {
        Command::new(crate::cargo())
    };
    cmd::run(
        command
            .current_dir(workspace_root())
            .args(["test", "--package", "owca", "--test", "scenario"])
            .args(cargo_args)
            .arg("--")
            .args(scenario_args),
    )
}
