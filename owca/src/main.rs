//! The `owca` binary: command line, logging, limits and capabilities, and the runner until
//! SIGINT/SIGTERM; or `owca top`, the task table of a running agent.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser;
use owca::{
    config,
    privileges::{self, AfterLoad},
    resctrl,
    runners::AgentConfig,
    storage::console::{SortKey, log_writer},
    top::TopOptions,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Orchestration-aware Workload Collocation Agent: measures the tasks of a Mesos node.
#[derive(Debug, Parser)]
#[command(
    version,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (YAML with OWCA's `!Tags`).
    #[arg(short = 'c', long = "config", required = true)]
    config: Option<PathBuf>,
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

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show a running agent's tasks, one row per task (its `!PrometheusExporter`): live on
    /// a terminal (keys sort, `q` quits), as a plain table without one or with `--once`.
    Top(TopArgs),
}

#[derive(Debug, clap::Args)]
struct TopArgs {
    /// The agent's metrics URL; repeat it to merge another exporter's (e.g. anomalies).
    #[arg(long, default_value = "http://127.0.0.1:9487/metrics")]
    url: Vec<String>,
    /// Print one plain table (rates over the agent's next iteration) and exit.
    #[arg(long)]
    once: bool,
    /// Seconds between polls of the live screen.
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    interval: f64,
    /// The first sort column: cpu, wait, p99, switches, throttled, memory, ipc or task.
    #[arg(long, default_value = "cpu", value_parser = sort_key)]
    sort: SortKey,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds from 0.05 to 3600"
        )),
    }
}

fn sort_key(s: &str) -> Result<SortKey, String> {
    serde_yaml_ng::from_str(s).map_err(|_| {
        format!("{s:?} is not a column: cpu, wait, p99, switches, throttled, memory, ipc or task")
    })
}

/// `owca top`: its errors are one line on stderr and exit code 1.
async fn top(args: TopArgs) -> ! {
    let opts = TopOptions {
        urls: args.url,
        once: args.once,
        interval: Duration::from_secs_f64(args.interval),
        sort: args.sort,
    };
    match owca::top::run(&opts, shutdown_signal()).await {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("owca top: {e}");
            std::process::exit(1)
        }
    }
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
        // stderr, except while a console screen shows (see `storage::console`).
        .with_writer(log_writer)
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
    if let Some(Command::Top(args)) = cli.command {
        top(args).await;
    }
    let Some(config_path) = cli.config else {
        bail!("-c/--config is required");
    };
    if nix::unistd::geteuid().is_root() && !cli.root {
        bail!(
            "refusing to run as root without -0/--root: the agent needs root only to load its eBPF programs and read cgroups, so running as root must be asked for explicitly (add -0)"
        );
    }
    for spec in &cli.register {
        owca::plugins::registry::register(spec)?;
    }
    let mut cfg: AgentConfig = config::from_file(&config_path)?;
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
        .with_context(|| format!("starting the runner of {}", config_path.display()))?;
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
