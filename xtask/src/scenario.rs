//! `cargo xtask scenario`.

use anyhow::Result;

use crate::{harness, setup};

/// Runs the collocation scenario `owca/tests/scenario/` in release mode with `seconds`
/// per phase; it prints the report, writes `target/scenario/` and fails when a target is
/// missed.
pub fn scenario(seconds: f64) -> Result<()> {
    crate::root::reexec_unless_root("the scenario loads eBPF programs and creates cgroups")?;
    setup::toolchain()?;
    harness::build_helper("owca-lc-probe", true)?;
    harness::run("scenario", true, true, &["--seconds", &seconds.to_string()])
}

/// The short round that `cargo xtask test` makes (debug build, 12 s phases): every figure
/// must be measured; the targets are not checked.
pub fn short() -> Result<()> {
    harness::build_helper("owca-lc-probe", false)?;
    harness::run("scenario", false, true, &["--short"])
}
