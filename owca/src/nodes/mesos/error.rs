//! Why the Mesos node could not list tasks: its settings, the connection, or the answer.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use thiserror::Error;

/// A failure of `!MesosNode` as a whole. Problems of single tasks are not errors: those
/// tasks are skipped (see [`super::SkipReason`]).
#[derive(Debug, Error)]
pub enum MesosError {
    /// `mesos_agent_endpoint` is not an http(s) URL.
    #[error("mesos_agent_endpoint {endpoint:?} is not a valid http(s) URL: {reason}")]
    InvalidEndpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `timeout: 0` would fail every request before it is sent.
    #[error("Mesos agent {endpoint}: timeout must be greater than 0")]
    ZeroTimeout {
        /// The configured endpoint.
        endpoint: String,
    },
    /// OWCA's `ssl_verify` and WCA's `ssl` both set the server verification.
    #[error("Mesos agent {endpoint}: give either ssl_verify or ssl, not both")]
    BothSslSettings {
        /// The configured endpoint.
        endpoint: String,
    },
    /// `cgroups_root` is empty or `/`: every executor would be taken for a container.
    #[error("Mesos agent {endpoint}: cgroups_root must name the agent's cgroup root, e.g. mesos")]
    EmptyCgroupsRoot {
        /// The configured endpoint.
        endpoint: String,
    },
    /// `max_answer_bytes: 0` would refuse every answer.
    #[error("Mesos agent {endpoint}: max_answer_bytes must be greater than 0")]
    ZeroMaxAnswer {
        /// The configured endpoint.
        endpoint: String,
    },
    /// `ssl.client_key_path` without `ssl.client_cert_path`.
    #[error("Mesos agent {endpoint}: ssl.client_key_path needs ssl.client_cert_path")]
    KeyWithoutCert {
        /// The configured endpoint.
        endpoint: String,
    },
    /// A configured CA bundle, certificate or key file could not be read.
    #[error("Mesos agent {endpoint}: cannot read {field} {}: {source}", path.display())]
    ReadFile {
        /// The configured endpoint.
        endpoint: String,
        /// The setting that names the file, e.g. `ssl_verify`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configured file holds no usable PEM certificate (or key).
    #[error("Mesos agent {endpoint}: {field} {}: {reason}", path.display())]
    BadPem {
        /// The configured endpoint.
        endpoint: String,
        /// The setting that names the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// The HTTP client could not be built from otherwise valid settings.
    #[error(
        "Mesos agent {endpoint}: cannot create the HTTP client: {}",
        chain(error)
    )]
    Client {
        /// The configured endpoint.
        endpoint: String,
        /// The underlying error.
        error: reqwest::Error,
    },
    /// No answer within `timeout`.
    #[error("Mesos agent {url}: no answer to GET_STATE within {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// Connecting, the TLS handshake, sending or receiving failed.
    #[error("Mesos agent {url}: GET_STATE failed: {}", chain(error))]
    Request {
        /// The URL requested.
        url: String,
        /// The underlying error, whose causes (e.g. the TLS alert) are part of the message.
        error: reqwest::Error,
    },
    /// The agent answered with an HTTP error status.
    #[error("Mesos agent {url}: GET_STATE answered HTTP {status}: {body_start:?}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The beginning of the answer, which usually says why.
        body_start: String,
    },
    /// The answer is longer than `max_answer_bytes`; it is not read further.
    #[error("Mesos agent {url}: GET_STATE answer is larger than max_answer_bytes ({limit} bytes)")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The configured `max_answer_bytes`.
        limit: u64,
    },
    /// The answer is not JSON.
    #[error("Mesos agent {url}: GET_STATE answer is not JSON: {error}")]
    NotJson {
        /// The URL requested.
        url: String,
        /// The parser's error.
        error: serde_json::Error,
    },
    /// The answer is JSON but lacks `get_state` or has it (or its task list) in the wrong
    /// shape.
    #[error("Mesos agent {url}: GET_STATE answer {problem}")]
    BadAnswer {
        /// The URL requested.
        url: String,
        /// What is missing or of the wrong type.
        problem: String,
    },
}

/// A problem with one task that is measured all the same; reported once per task.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MesosTaskError {
    /// The task has more labels, or longer ones, than the caps allow: it is measured with
    /// what fits.
    #[error("Mesos task {task_id}: labels over the caps: {cut}")]
    LabelsCut {
        /// The task.
        task_id: String,
        /// What was left out.
        cut: super::LabelsCut,
    },
}

impl MesosTaskError {
    /// The task concerned.
    pub fn task_id(&self) -> &str {
        match self {
            Self::LabelsCut { task_id, .. } => task_id,
        }
    }
}

/// An error and its causes as one line: reqwest's own message ("error sending request")
/// hides the part that says what happened (connection refused, unknown issuer...).
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and rustls repeat their cause's text in their own message.
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = cause.source();
    }
    out
}
