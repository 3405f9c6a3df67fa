//! `cargo xtask run`.

use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::{Result, anyhow};

use crate::{build, root, workspace_root};

/// Builds the agent, then replaces this process with it, run as root with `-0`
/// (allow root) and `-c configs/local.yaml` unless `args` name a config.
/// Exit code and Ctrl-C reach the agent directly because of the exec.
pub fn run(args: &[String]) -> Result<()> {
    build::build()?;
    let mut cmd = agent_command(args)?;
    let err = cmd.exec();
    Err(anyhow!(err).context(format!("starting `{}`", crate::cmd::describe(&cmd))))
}

/// The agent command line: root (via sudo if needed), `-0`, default config, then `args`.
fn agent_command(args: &[String]) -> Result<Command> {
    let mut cmd = root::command(
        build::agent_binary(),
        "the agent needs root to load eBPF programs",
    )?;
    if !args.iter().any(|a| a == "-0") {
        cmd.arg("-0");
    }
    if !names_config(args) {
        cmd.arg("-c")
            .arg(workspace_root().join("configs/local.yaml"));
    }
    cmd.args(args);
    Ok(cmd)
}

/// True when the agent arguments already pass `-c`/`--config`.
fn names_config(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| {
        a == "--config"
            || a.starts_with("--config=")
            || (a.starts_with("-c") && !a.starts_with("--"))
    })
}

#[cfg(test)]
mod tests {
    use super::{agent_command, names_config};
    use crate::cmd::describe;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_config_flags() {
        assert!(names_config(&args(&["-c", "x.yaml"])));
        assert!(names_config(&args(&["-cx.yaml"])));
        assert!(names_config(&args(&["--config", "x.yaml"])));
        assert!(names_config(&args(&["--config=x.yaml"])));
        assert!(!names_config(&args(&["--log-level", "debug"])));
        assert!(!names_config(&args(&["--", "-c"])));
    }

    #[test]
    fn agent_gets_root_flag_and_default_config() {
        let line = describe(&agent_command(&args(&["--log-level", "debug"])).unwrap());
        assert!(line.contains("release/owca -0 -c "), "{line}");
        assert!(
            line.ends_with("configs/local.yaml --log-level debug"),
            "{line}"
        );
        let line = describe(&agent_command(&args(&["-0", "-c", "x.yaml"])).unwrap());
        assert!(line.ends_with("release/owca -0 -c x.yaml"), "{line}");
    }
}
