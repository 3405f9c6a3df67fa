//! `cargo xtask soak`.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cmd, setup, workspace_root};

/// Runs the soak `owca/tests/soak/` for `minutes` in release mode; it prints the report,
/// writes `target/soak/` and fails when a target is missed.
pub fn soak(minutes: f64) -> Result<()> {
    crate::root::reexec_unless_root("the soak loads eBPF programs and creates cgroups")?;
    setup::toolchain()?;
    setup::debian_packages()?;
    setup::tansu()?;
    run(&["--release"], &["--minutes", &minutes.to_string()]).context("running the soak")
}

/// The 2-minute round that `cargo xtask test` makes (debug build, targets checked).
pub fn short() -> Result<()> {
    run(&[], &["--short"]).context("running the soak's short round")
}

fn run(cargo_args: &[&str], soak_args: &[&str]) -> Result<()> {
    cmd::run(
        Command::new(crate::cargo())
            .current_dir(workspace_root())
            .args(["test", "--package", "owca", "--test", "soak"])
            .args(cargo_args)
            .arg("--")
            .args(soak_args),
    )
}
