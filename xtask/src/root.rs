//! Root checks and `sudo` wrapping.

use std::{
    env, ffi::OsString, os::unix::process::CommandExt as _, path::PathBuf, process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

/// True when the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as root: directly when we are root, else via `sudo -E`.
/// `why` explains in the error why root is needed when `sudo` is missing.
pub fn command(program: impl Into<OsString>, why: &str) -> Result<Command> {
    let program = program.into();
    if is_root() {
        return Ok(Command::new(program));
    }
    if !on_path("sudo") {
        bail!("not root and `sudo` is not installed: {why}");
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("-E").arg(program);
    Ok(cmd)
}

/// Replaces this process with itself run through `sudo` unless it already runs as root.
/// Keeps `PATH`, `RUSTUP_HOME` and `CARGO_HOME` so cargo and rustup resolve as before.
pub fn reexec_unless_root(why: &str) -> Result<()> {
    if is_root() {
        return Ok(());
    }
    let exe = env::current_exe().context("finding the xtask executable to re-run under sudo")?;
    let mut cmd = command("env", why)?;
    for (var, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
        if let Some(dir) = env::var_os(var).or_else(|| home_dir(default)) {
            cmd.arg(assign(var, dir));
        }
    }
    if let Some(path) = env::var_os("PATH") {
        cmd.arg(assign("PATH", path));
    }
    cmd.arg(exe).args(env::args_os().skip(1));
    Err(anyhow!(cmd.exec())).context("re-running xtask under sudo")
}

fn assign(var: &str, value: OsString) -> OsString {
    let mut s = OsString::from(format!("{var}="));
    s.push(value);
    s
}

fn home_dir(sub: &str) -> Option<OsString> {
    env::var_os("HOME").map(|h| PathBuf::from(h).join(sub).into_os_string())
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|p| env::split_paths(&p).any(|d| d.join(program).is_file()))
}
