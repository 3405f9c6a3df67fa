//! `cargo xtask test`.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cmd, root, setup, workspace_root};

/// Re-runs itself as root if needed, refuses unformatted code and clippy warnings (the
/// workspace lints in `Cargo.toml`), prepares the machine and runs `cargo test` on the
/// default members (the kernel crate is built and exercised through `owca`) with one test
/// thread (kernel tests share kernel state).
/// `args` go to cargo; after a further `--` they go to the test binaries. Without `args`
/// (a full run, as CI makes) the bench's smoke run, the soak's short round, the
/// collocation scenario's short round and the fuzz targets' short round follow.
pub fn test(args: &[String]) -> Result<()> {
    root::reexec_unless_root("the kernel tests need root for BPF and cgroups")?;
    setup::toolchain()?;
    lint_gates()?;
    setup::debian_packages()?;
    setup::tansu()?;

    let (cargo_args, binary_args) = split_args(args);
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(workspace_root())
        .arg("test")
        .args(cargo_args)
        .arg("--");
    if !binary_args.iter().any(|a| a.starts_with("--test-threads")) {
        cmd.arg("--test-threads=1");
    }
    cmd.args(binary_args);
    cmd::run(&mut cmd).context("running the workspace tests")?;
    if args.is_empty() {
        crate::bench::smoke()?;
        crate::soak::short()?;
        crate::scenario::short()?;
        crate::fuzz::short()?;
    }
    Ok(())
}

/// `cargo fmt --all --check`, `cargo clippy --all-targets -- -D warnings` and the library's
/// docs with warnings as errors (broken or private links) on the default members: CI
/// refuses unformatted code and any warning.
fn lint_gates() -> Result<()> {
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(crate::cargo());
        cmd.current_dir(workspace_root()).args(args);
        cmd
    };
    cmd::run(&mut cargo(&["fmt", "--all", "--check"]))
        .context("code is not formatted: run `cargo fmt --all`")?;
    cmd::run(&mut cargo(&[
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found warnings (errors in CI)")?;
    cmd::run(cargo(&["doc", "--no-deps", "-p", "owca"]).env("RUSTDOCFLAGS", "-D warnings"))
        .context("the docs have warnings (errors in CI): broken or private links")?;
    Ok(())
}

/// Splits at the first `--` into cargo arguments and test binary arguments.
fn split_args(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;

    #[test]
    fn splits_at_first_double_dash() {
        let args: Vec<String> = ["-p", "owca", "--", "--nocapture", "--", "x"]
            .map(String::from)
            .into();
        let (cargo, bin) = split_args(&args);
        assert_eq!(cargo, ["-p", "owca"]);
        assert_eq!(bin, ["--nocapture", "--", "x"]);
        assert_eq!(split_args(&args[..2]), (&args[..2], &[][..]));
    }
}
