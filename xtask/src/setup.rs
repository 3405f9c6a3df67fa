//! Machine preparation. Every check is silent when the machine is already prepared.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::cmd;

/// The bpf-linker version the eBPF build is tested with.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// The cargo-fuzz version the fuzz targets are built with (it builds on the workspace's
/// stable toolchain; the targets themselves are built on nightly).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages the tests use (bpftool, stress-ng, promtool, node_exporter, perf).
const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",
    "stress-ng",
    "prometheus",
    "prometheus-node-exporter",
    "linux-perf",
];

/// Debian packages the build needs: librdkafka and OpenSSL are compiled from source by
/// rdkafka-sys (Debian's librdkafka is too old for current brokers).
const BUILD_PACKAGES: &[&str] = &["make", "g++", "pkg-config", "libssl-dev", "zlib1g-dev"];

/// The Kafka-protocol broker the KafkaStorage tests run.
const TANSU_VERSION: &str = "0.6.0";

/// Ensures the active toolchain has clippy and rustfmt (the lint gates), nightly has
/// `rust-src` and `bpf-linker` is at [`BPF_LINKER_VERSION`].
pub fn toolchain() -> Result<()> {
    let active = cmd::stdout(Command::new("rustup").args(["component", "list", "--installed"]))
        .context("checking the toolchain's components (is rustup installed?)")?;
    for component in ["clippy", "rustfmt"] {
        if !active.lines().any(|l| l.starts_with(component)) {
            eprintln!("xtask: adding {component} to the toolchain");
            cmd::run(Command::new("rustup").args(["component", "add", component]))
                .with_context(|| format!("installing {component}"))?;
        }
    }

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
    build_packages()?;
    Ok(())
}

/// Installs the missing ones of [`BUILD_PACKAGES`]; without root, says which are missing.
pub fn build_packages() -> Result<()> {
    let missing = missing_packages(BUILD_PACKAGES)?;
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        anyhow::bail!(
            "the build needs these Debian packages: {} (install them, or run as root and xtask will)",
            missing.join(" ")
        );
    }
    install(&missing)
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Installs cargo-fuzz [`CARGO_FUZZ_VERSION`] from crates.io unless `cargo fuzz` is that
/// version.
pub fn cargo_fuzz() -> Result<()> {
    let installed = cmd::stdout(Command::new(crate::cargo()).args(["fuzz", "--version"])).ok();
    if installed
        .as_deref()
        .and_then(|v| v.split_whitespace().nth(1))
        == Some(CARGO_FUZZ_VERSION)
    {
        return Ok(());
    }
    eprintln!(
        "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} for the fuzz targets (about a minute, once)"
    );
    cmd::run(Command::new(crate::cargo()).args([
        "install",
        "--locked",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
    ]))
    .context("installing cargo-fuzz")
}

/// Installs the Tansu broker from crates.io unless this version is in cargo's bin dir.
pub fn tansu() -> Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let installed = cmd::stdout(Command::new(home.join("bin/tansu")).arg("--version")).ok();
    if installed.is_some_and(|v| v.contains(TANSU_VERSION)) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing the Tansu Kafka broker {TANSU_VERSION} for the Kafka tests (several minutes, once)"
    );
    cmd::run(Command::new(crate::cargo()).args([
        "install",
        "--locked",
        &format!("tansu@{TANSU_VERSION}"),
        "--no-default-features",
        "--features",
        "dynostore",
    ]))
    .context("installing tansu")
}

/// Installs the missing ones of [`DEBIAN_PACKAGES`] with apt-get (needs root).
pub fn debian_packages() -> Result<()> {
    let missing = missing_packages(DEBIAN_PACKAGES)?;
    if missing.is_empty() {
        return Ok(());
    }
    install(&missing)
}

fn missing_packages(packages: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for &pkg in packages {
        let status = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .context("running dpkg-query to check installed packages")?;
        if !String::from_utf8_lossy(&status.stdout).contains("install ok installed") {
            missing.push(pkg);
        }
    }
    Ok(missing)
}

fn install(missing: &[&str]) -> Result<()> {
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let install = || {
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y"])
                .args(missing),
        )
    };
    if install().is_err() {
        cmd::run(Command::new("apt-get").arg("update")).context("updating apt package lists")?;
        install().context("installing Debian packages for the tests")?;
    }
    Ok(())
}
