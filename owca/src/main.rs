//! The `owca` binary: command line, logging, limits and capabilities, and the runner until
//! SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use owca::{
    config,
    privileges::{self, AfterLoad},
    resctrl,
    runners::AgentConfig,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Orchestration-aware Workload Collocation Agent: measures the tasks of a Mesos node.
#[derive(Debug, Parser)]
#[command(version, disable_version_flag = true)]
struct Cli {
    /// Configuration file (YAML with OWCA's `!Tags`).
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Log level, `level` or `module:level` (e.g. `debug`, `collector:trace`); repeatable.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_levels: Vec<String>,
    /// Register a plug-in program: `Name=program [args...]` makes `!Name {...}` usable as
    /// the detector or the allocator, its mapping sent to the program as config;
    /// repeatable.
    #[arg(short = 'r', long = "register")]
    register: Vec<String>,
    /// Allow running as root (OWCA refuses root without it).
    #[arg(short = '0', long = "root")]
    root: bool,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: (),
}

/// `level` or `module:level` → a tracing directive for the owca crate.
fn directive(spec: &str) -> anyhow::Result<String> {
    let (module, level) = match spec.split_once(':') {
        Some((m, l)) => (Some(m), l),
        None => (None, spec),
    };
    let level = level.to_ascii_lowercase();
    if ![
        "trace", "debug", "info", "warn", "warning", "error", "critical", "off",
    ]
    .contains(&level.as_str())
    {
        bail!("invalid log level {spec:?}: expected [module:]trace|debug|info|warn|error");
    }
    let level = match level.as_str() {
        "warning" => "warn",
        "critical" => "error",
        l => l,
    };
    Ok(match module {
        None | Some("owca") => format!("owca={level}"),
        Some(m) => format!(
            "owca::{}={level}",
            m.trim_start_matches("owca.").replace('.', "::")
        ),
    })
}

fn init_logging(specs: &[String]) -> anyhow::Result<()> {
    let mut filter = EnvFilter::new("warn");
    for spec in specs {
        filter = filter.add_directive(directive(spec)?.parse().context("log level directive")?);
    }
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install SIGTERM/SIGINT handlers; stop the agent with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

// One thread: an iteration is a few milliseconds of work per second, and every extra
// worker thread would keep a malloc arena of its own.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if nix::unistd::geteuid().is_root() && !cli.root {
        bail!(
            "refusing to run as root without -0/--root: the agent needs root only to load its eBPF programs and read cgroups, so running as root must be asked for explicitly (add -0)"
        );
    }
    for spec in &cli.register {
        owca::plugins::registry::register(spec)?;
    }
    let mut cfg: AgentConfig = config::from_file(&cli.config)?;
    // Documented override for hosts (and tests) with resctrl mounted elsewhere.
    if let Some(root) = std::env::var_os(resctrl::ROOT_ENV).filter(|v| !v.is_empty()) {
        cfg.runner.set_resctrl_root(root.into());
    }
    let mut levels: Vec<String> = cfg
        .loggers
        .iter()
        .map(|(m, l)| format!("{m}:{l}"))
        .collect();
    levels.extend(cli.log_levels);
    init_logging(&levels)?;
    let (before, soft) = privileges::raise_fd_limit()?;
    tracing::info!(soft, before, "open-files limit (RLIMIT_NOFILE)");
    privileges::check_load_capabilities()?;
    owca::collector::prepare_loader();
    cfg.runner
        .run(AfterLoad::DropCapabilities, shutdown_signal())
        .await
        .with_context(|| format!("starting the runner of {}", cli.config.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_directives() {
        assert_eq!(directive("debug").unwrap(), "owca=debug");
        assert_eq!(
            directive("collector:trace").unwrap(),
            "owca::collector=trace"
        );
        assert_eq!(
            directive("owca.runners:WARNING").unwrap(),
            "owca::runners=warn"
        );
        assert!(directive("loud").unwrap_err().to_string().contains("loud"));
    }
}
