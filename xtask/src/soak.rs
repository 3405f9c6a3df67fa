//! `cargo xtask soak`.

use anyhow::Result;

use crate::{harness, setup};

/// Runs the soak `owca/tests/soak/` for `minutes` in release mode; it prints the report,
/// writes `target/soak/` and fails when a target is missed.
pub fn soak(minutes: f64) -> Result<()> {
    crate::root::reexec_unless_root("the soak loads eBPF programs and creates cgroups")?;
    setup::toolchain()?;
    setup::debian_packages()?;
    setup::tansu()?;
    harness::run("soak", true, false, &["--minutes", &minutes.to_string()])
}

/// The 2-minute round that `cargo xtask test` makes (debug build, targets checked).
pub fn short() -> Result<()> {
    harness::run("soak", false, false, &["--short"])
}
