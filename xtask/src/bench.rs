//! `cargo xtask bench`.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup, workspace_root};

/// Runs `owca/tests/bench.rs` in release mode, one thread, output shown; fails if it does not exist yet.
pub fn bench() -> Result<()> {
    if !workspace_root().join("owca/tests/bench.rs").is_file() {
        bail!("no benchmarks exist yet (owca/tests/bench.rs is missing)");
    }
    crate::root::reexec_unless_root("the benchmarks load eBPF programs and create cgroups")?;
    setup::toolchain()?;
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
                "--nocapture",
                "--test-threads=1",
            ]),
    )
    .context("running the benchmarks")
}
