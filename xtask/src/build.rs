//! `cargo xtask build`.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{cmd, setup, workspace_root};

/// Prepares the toolchain if needed and builds the agent in release mode.
pub fn build() -> Result<()> {
    setup::toolchain()?;
    cmd::run(
        Command::new(crate::cargo())
            .current_dir(workspace_root())
            .args(["build", "--release", "--package", "owca"]),
    )
    .context("building the owca agent")
}

/// Path of the release agent binary, honouring `CARGO_TARGET_DIR`.
pub fn agent_binary() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("release/owca")
}
