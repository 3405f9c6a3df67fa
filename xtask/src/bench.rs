//! `cargo xtask bench`.

use anyhow::Result;

use crate::{harness, setup};

/// Runs the benchmark `owca/tests/bench/` in release mode with `args` (e.g. `--n 10,100
/// --duration 60`; see its usage line); it prints the report and writes `target/bench/`.
pub fn bench(args: &[String]) -> Result<()> {
    crate::root::reexec_unless_root("the benchmarks load eBPF programs and create cgroups")?;
    setup::toolchain()?;
    harness::build_helper("owca-classic", true)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    harness::run("bench", true, true, &args)
}

/// The short run that `cargo xtask test` makes so that the bench keeps working: N = 10, a
/// few seconds, checks that every figure was measured (not the targets).
pub fn smoke() -> Result<()> {
    harness::build_helper("owca-classic", false)?;
    harness::run("bench", false, false, &["--smoke"])
}
