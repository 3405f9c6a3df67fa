//! A plug-in's process: started on first use, one request and one answer line per
//! iteration, killed and restarted with backoff when it fails.
//!
//! It runs with less than the agent has: a cleared environment but for [`ENV_ALLOWED`],
//! resource limits ([`LIMITS`]), optionally as another user, and its stderr goes to the
//! agent's log line by line, at most [`STDERR_LINES_PER_MINUTE`] lines a minute.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use nix::{
    sys::{
        resource::{Resource, getrlimit, setrlimit},
        signal::{Signal, killpg},
    },
    unistd::{Gid, Pid, Uid},
};
use serde::Serialize;
use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
};
use tracing::{info, warn};

use super::protocol::{Answer, ConfigLine, MAX_ANSWER_BYTES};

/// Wait before the first restart; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of a garbage line an error shows.
const SHOWN_BYTES: usize = 80;

/// Variables a plug-in inherits from the agent; every other one is left out (the
/// agent's environment may hold credentials, e.g. for Kafka). `LC_*` are all kept.
pub const ENV_ALLOWED: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH"];
/// `PATH` when the agent has none (systemd gives services one, `env -i` does not).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Resource limits set in the plug-in before it runs (soft = hard): 4 GiB of address
/// space, 1024 open files, 512 processes of its user (not enforced for root, which the
/// kernel exempts; see `user:`), no core dumps.
pub const LIMITS: &[(Resource, u64)] = &[
    (Resource::RLIMIT_AS, 4 << 30),
    (Resource::RLIMIT_NOFILE, 1024),
    (Resource::RLIMIT_NPROC, 512),
    (Resource::RLIMIT_CORE, 0),
];
/// Lines of a plug-in's stderr logged per minute; more are counted and reported in one
/// line at the end of the minute.
pub const STDERR_LINES_PER_MINUTE: u32 = 20;
/// Longest stderr line logged, in bytes; the rest of a longer line is left out.
const STDERR_LINE_BYTES: usize = 1024;

/// The user a plug-in runs as (`user:`), resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginUser {
    /// The name given.
    pub name: String,
    pub uid: Uid,
    /// The user's primary group.
    pub gid: Gid,
}

impl PluginUser {
    /// Looks `name` up in the user database (`/etc/passwd`, NSS).
    pub fn lookup(name: &str) -> Result<Self, String> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(Self {
                name: name.to_owned(),
                uid: u.uid,
                gid: u.gid,
            }),
            Ok(None) => Err(format!("user {name:?} does not exist on this machine")),
            Err(e) => Err(format!("looking up user {name:?}: {e}")),
        }
    }
}

/// How to run a plug-in.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Names the plug-in in logs and errors (its tag or program).
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Sent as the first line, `{"config": ...}`.
    pub config: serde_json::Value,
    /// Longest wait for an answer (and, on start, for the config line to be taken).
    pub timeout: Duration,
    /// Run as this user and its primary group, without supplementary groups; `None`
    /// runs it as the agent's user.
    pub user: Option<PluginUser>,
}

/// Why a plug-in gave no answer this iteration. Messages carry no pid or time so that a
/// plug-in failing the same way again is recognised as the same problem.
#[derive(Debug, Error)]
pub enum PluginError {
    /// The program could not be started.
    #[error("starting plug-in {name} ({command}): {source}")]
    Spawn {
        name: String,
        command: String,
        source: std::io::Error,
    },
    /// The process ended (or closed its stdout) instead of answering.
    #[error("plug-in {name} exited instead of answering: {status}")]
    Exited { name: String, status: String },
    /// Writing to or reading from the process failed.
    #[error("talking to plug-in {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    /// No answer line within the timeout.
    #[error("plug-in {name} did not answer within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
    /// The answer line is not a valid answer.
    #[error("plug-in {name} answered something that is not a valid answer ({reason}): {line:?}")]
    Garbage {
        name: String,
        reason: String,
        line: String,
    },
    /// The answer passes one of the caps in [`super::protocol`] (line length, counts,
    /// lengths): refused whole, never truncated.
    #[error("plug-in {name} answered more than the agent takes: {reason}")]
    OverCap { name: String, reason: String },
    /// The request could not be encoded (a bug rather than the plug-in's fault).
    #[error("encoding the request for plug-in {name}: {source}")]
    Encode {
        name: String,
        source: serde_json::Error,
    },
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Running {
    /// The plug-in runs in its own process group: a shell script's children go with it.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // kill_on_drop reaps the leader in the background.
    }
}

/// A plug-in process and its failure state.
pub struct Plugin {
    cfg: PluginConfig,
    running: Option<Running>,
    /// The last failure, returned again until the restart is due.
    failure: Option<Arc<PluginError>>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Plugin {
    /// A plug-in started on the first [`Self::exchange`].
    pub fn new(cfg: PluginConfig) -> Self {
        Self {
            cfg,
            running: None,
            failure: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The plug-in's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Sends one request line and reads one answer within the timeout. After a failure
    /// the process is killed, and until its restart is due every call returns that
    /// failure again (the same error, so it is logged once).
    pub async fn exchange(&mut self, request: &impl Serialize) -> Result<Answer, Arc<PluginError>> {
        if let (Some(at), Some(failure)) = (self.retry_at, &self.failure)
            && Instant::now() < at
        {
            return Err(Arc::clone(failure));
        }
        let mut line = serde_json::to_vec(request).map_err(|source| {
            Arc::new(PluginError::Encode {
                name: self.cfg.name.clone(),
                source,
            })
        })?;
        line.push(b'\n');
        let timeout = self.cfg.timeout;
        let result = match tokio::time::timeout(timeout, self.talk(&line)).await {
            Ok(r) => r,
            Err(_) => Err(PluginError::Timeout {
                name: self.cfg.name.clone(),
                timeout,
            }),
        };
        match result {
            Ok(answer) => {
                self.failure = None;
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                Ok(answer)
            }
            Err(e) => {
                // A plug-in that failed is in an unknown state: start afresh later.
                self.running = None;
                let e = Arc::new(e);
                self.failure = Some(Arc::clone(&e));
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    async fn talk(&mut self, line: &[u8]) -> Result<Answer, PluginError> {
        let running = match self.running.take() {
            Some(r) => r,
            None => self.start().await?,
        };
        let running = self.running.insert(running);
        let name = &self.cfg.name;
        if let Err(source) = write_line(&mut running.stdin, line).await {
            return Err(exited_or(running, name, source).await);
        }
        let mut answer = Vec::new();
        // One byte more than the cap tells a line of exactly the cap from a longer one.
        let read = (&mut running.stdout)
            .take(MAX_ANSWER_BYTES as u64 + 1)
            .read_until(b'\n', &mut answer)
            .await;
        match read {
            Err(source) => Err(exited_or(running, name, source).await),
            Ok(0) => Err(exited(running, name).await),
            Ok(n) if n > MAX_ANSWER_BYTES => Err(PluginError::OverCap {
                name: name.clone(),
                reason: format!("an answer line longer than {MAX_ANSWER_BYTES} bytes"),
            }),
            Ok(_) => {
                let answer: Answer = serde_json::from_slice(&answer).map_err(|e| {
                    // A cap passed while parsing is named as such, not as garbage.
                    if e.is_data() && e.to_string().starts_with("more than ") {
                        PluginError::OverCap {
                            name: name.clone(),
                            reason: e.to_string(),
                        }
                    } else {
                        PluginError::Garbage {
                            name: name.clone(),
                            reason: e.to_string(),
                            line: shown(&answer),
                        }
                    }
                })?;
                answer.check().map_err(|reason| PluginError::OverCap {
                    name: name.clone(),
                    reason,
                })?;
                Ok(answer)
            }
        }
    }

    /// Starts the program and sends the config line.
    async fn start(&self) -> Result<Running, PluginError> {
        let cfg = &self.cfg;
        let spawn_error = |source| PluginError::Spawn {
            name: cfg.name.clone(),
            command: cfg.command.join(" "),
            source,
        };
        let Some((program, args)) = cfg.command.split_first() else {
            return Err(spawn_error(std::io::Error::other("empty command")));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(allowed_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(user) = &cfg.user {
            // std drops the supplementary groups when it changes the uid.
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // getrlimit and setrlimit, plain system calls (async-signal-safe), on constants; it allocates
        // nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                for &(resource, limit) in LIMITS {
                    // Never above the hard limit the agent has: after the uid change
                    // raising it would be refused.
                    let (_, hard) = getrlimit(resource).map_err(std::io::Error::from)?;
                    let limit = limit.min(hard);
                    setrlimit(resource, limit, limit).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(spawn_error)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error(std::io::Error::other(
                "no stdin/stdout/stderr pipe",
            )));
        };
        tokio::spawn(log_stderr(cfg.name.clone(), stderr));
        info!(plugin = %cfg.name, command = %cfg.command.join(" "), pid = child.id(),
            user = cfg.user.as_ref().map_or("(the agent's)", |u| u.name.as_str()), "started plug-in");
        let mut running = Running {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let config = serde_json::to_vec(&ConfigLine {
            config: &cfg.config,
        })
        .map_err(|source| PluginError::Encode {
            name: cfg.name.clone(),
            source,
        })?;
        let mut config = config;
        config.push(b'\n');
        if let Err(source) = write_line(&mut running.stdin, &config).await {
            return Err(exited_or(&mut running, &cfg.name, source).await);
        }
        Ok(running)
    }
}

/// The agent's variables named in [`ENV_ALLOWED`] and `LC_*`, and `PATH` in any case.
fn allowed_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| {
            k.to_str()
                .is_some_and(|k| ENV_ALLOWED.contains(&k) || k.starts_with("LC_"))
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// Logs the plug-in's stderr line by line, named by the plug-in, at most
/// [`STDERR_LINES_PER_MINUTE`] a minute; the lines left out are counted and reported
/// once when the minute is over (or the plug-in closes its stderr). Ends with the
/// process.
async fn log_stderr(name: String, stderr: ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u64);
    let report = |dropped: u64| {
        if dropped > 0 {
            warn!(plugin = %name, dropped, "plug-in stderr: {dropped} lines left out (at most {STDERR_LINES_PER_MINUTE} a minute)");
        }
    };
    loop {
        line.clear();
        let read = (&mut reader)
            .take(STDERR_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // The rest of an overlong line is skipped, not logged as lines of its own.
        if line.last() != Some(&b'\n') && line.len() == STDERR_LINE_BYTES {
            let mut rest = Vec::new();
            loop {
                rest.clear();
                match (&mut reader)
                    .take(64 << 10)
                    .read_until(b'\n', &mut rest)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) if rest.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
        }
        if window.elapsed() >= Duration::from_secs(60) {
            report(std::mem::take(&mut dropped));
            window = Instant::now();
            logged = 0;
        }
        if logged < STDERR_LINES_PER_MINUTE {
            logged += 1;
            let text = String::from_utf8_lossy(&line);
            info!(plugin = %name, "plug-in stderr: {}", text.trim_end());
        } else {
            dropped += 1;
        }
    }
    report(dropped);
}

async fn write_line(stdin: &mut ChildStdin, line: &[u8]) -> std::io::Result<()> {
    stdin.write_all(line).await?;
    stdin.flush().await
}

/// After a closed pipe: how the process ended, if it did.
async fn exited(running: &mut Running, name: &str) -> PluginError {
    // It closed its end; give it a moment to be reaped so the status can be told.
    let status = match tokio::time::timeout(Duration::from_millis(200), running.child.wait()).await
    {
        Ok(Ok(s)) => s.to_string(),
        _ => "closed its stdout".to_owned(),
    };
    PluginError::Exited {
        name: name.to_owned(),
        status,
    }
}

/// An I/O error that is really the process having gone (a broken pipe) is reported as
/// its exit.
async fn exited_or(running: &mut Running, name: &str, source: std::io::Error) -> PluginError {
    if source.kind() == std::io::ErrorKind::BrokenPipe {
        return exited(running, name).await;
    }
    PluginError::Io {
        name: name.to_owned(),
        source,
    }
}

/// The start of a line, for an error message.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    match text.char_indices().nth(SHOWN_BYTES) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}
