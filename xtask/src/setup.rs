//! Machine preparation. Every check is silent when the machine is already prepared.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::cmd;

/// The bpf-linker version the eBPF build is tested with.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages the tests use (bpftool, stress-ng, promtool, node_exporter, perf).
const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",
    "stress-ng",
    "prometheus",
    "prometheus-node-exporter",
    "linux-perf",
];

const TRACEFS: &str = "/sys/kernel/tracing";

/// Ensures nightly has `rust-src` and `bpf-linker` is at [`BPF_LINKER_VERSION`].
pub fn toolchain() -> Result<()> {
    let components = cmd::stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("checking the nightly toolchain's components (is rustup's nightly installed?)")?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to the nightly toolchain");
        cmd::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
        .context("installing rust-src for nightly")?;
    }

    let installed = cmd::stdout(Command::new("bpf-linker").arg("--version")).ok();
    if installed
        .as_deref()
        .and_then(|v| v.split_whitespace().nth(1))
        != Some(BPF_LINKER_VERSION)
    {
        eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} from crates.io");
        cmd::run(Command::new(crate::cargo()).args([
            "install",
            "--locked",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        ]))
        .context("installing bpf-linker")?;
    }
    Ok(())
}

/// Installs the missing ones of [`DEBIAN_PACKAGES`] with apt-get (needs root).
pub fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    for &pkg in DEBIAN_PACKAGES {
        let status = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .context("running dpkg-query to check installed packages")?;
        if !String::from_utf8_lossy(&status.stdout).contains("install ok installed") {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let install = || {
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y"])
                .args(&missing),
        )
    };
    if install().is_err() {
        cmd::run(Command::new("apt-get").arg("update")).context("updating apt package lists")?;
        install().context("installing Debian packages for the tests")?;
    }
    Ok(())
}

/// Mounts tracefs at `/sys/kernel/tracing` unless it is already there (needs root).
pub fn tracefs() -> Result<()> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    cmd::run(Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]))
        .context("mounting tracefs for tracepoint programs")
}
