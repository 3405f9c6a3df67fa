//! The measuring programs under `owca/tests/` (`bench`, `scenario`, `soak`: harness-less
//! test targets), the helper binaries of `owca-bench` they run, and the lock that keeps
//! other kernel tests off the machine while they measure.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cmd, workspace_root};

/// The lock the kernel tests and measurements share (taken with `flock` where it exists).
const LOCK: &str = "/tmp/owca-kernel-tests.lock";

/// Builds `bin` of the bench-only `owca-bench` crate (which `cargo install owca` does not
/// install) into the profile directory the measuring program runs from, where it looks.
pub fn build_helper(bin: &str, release: bool) -> Result<()> {
    let mut cargo = Command::new(crate::cargo());
    cargo
        .current_dir(workspace_root())
        .args(["build", "--package", "owca-bench", "--bin", bin]);
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).with_context(|| format!("building {bin} (owca-bench)"))
}

/// Builds the test target `test` of `owca`, then runs it with `args`; under the kernel
/// tests' lock when `locked` (taken after the build: compiling holds nobody off).
pub fn run(test: &str, release: bool, locked: bool, args: &[&str]) -> Result<()> {
    let cargo_args = |c: &mut Command| {
        c.current_dir(workspace_root())
            .args(["test", "--package", "owca", "--test", test]);
        if release {
            c.arg("--release");
        }
    };
    let mut build = Command::new(crate::cargo());
    cargo_args(&mut build);
    cmd::run(build.arg("--no-run")).with_context(|| format!("building {test}"))?;
    let flock = locked && Command::new("flock").arg("--version").output().is_ok();
    let mut command = if flock {
        let mut c = Command::new("flock");
        c.arg(LOCK).arg(crate::cargo());
        c
    } else {
        Command::new(crate::cargo())
    };
    cargo_args(&mut command);
    cmd::run(command.arg("--").args(args)).with_context(|| format!("running {test}"))
}
