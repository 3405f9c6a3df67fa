//! `!MesosNode`: the tasks a Mesos agent runs, from its v1 operator API (`GET_STATE`), as
//! OWCA found them.
//!
//! - `client` builds the HTTP client once (TLS settings, client certificate) and makes
//!   the call; `parse` reads the answer tolerantly; this file holds the settings and the
//!   per-task warnings.
//! - A broken answer (HTTP error, timeout, TLS failure, not JSON, larger than
//!   `max_answer_bytes`, no `get_state`) is an error of the whole call: the runner keeps the
//!   previous task list for at most `task_list_ttl_iterations` failed iterations. A broken
//!   task is skipped with a [`SkipReason`], warned about once while it stays broken; so is
//!   a task whose executor is outside `cgroups_root`. A task whose labels exceed the caps
//!   is measured with what fits, reported once ([`MesosNode::take_problems`]).

mod client;
#[cfg(test)]
mod config_tests;
mod error;
mod parse;
mod ssl;
mod stream;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::BuildHasher as _,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::{Client, Url};
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};

pub use self::{
    error::{MesosError, MesosTaskError},
    parse::{
        INITIAL_CPU_LABEL, LabelsCut, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS,
        SkipReason, python_float_str, sanitize_label,
    },
    ssl::{ServerVerify, Ssl},
};
use super::Task;
use crate::config::duration_secs;

/// Settings of `!MesosNode`, with OWCA's names and defaults, plus WCA 1.0.7's `ssl`.
///
/// Files named by the TLS settings are read when the HTTP client is built (the first
/// [`MesosNode::client`] or [`MesosNode::tasks`] call), not while the config is parsed, so
/// a config with placeholders still loads and the error names the missing file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MesosNode {
    /// Base URL of the agent; `/api/v1` is appended.
    #[serde(default = "default_endpoint")]
    pub mesos_agent_endpoint: String,
    /// OWCA's server verification: `true` (default), `false` or a CA bundle path.
    #[serde(default)]
    pub ssl_verify: Option<ServerVerify>,
    /// WCA's `!SSL`: server verification and a client certificate. Not with `ssl_verify`.
    #[serde(default, deserialize_with = "ssl::tagged_ssl")]
    pub ssl: Option<Ssl>,
    /// Seconds the whole call (connect, TLS, answer) may take.
    #[serde(default = "default_timeout", deserialize_with = "duration_secs")]
    pub timeout: Duration,
    /// The Mesos agent's `--cgroups_root`: executors whose cgroup is not below
    /// `/<cgroups_root>/` are skipped, neither measured nor allocated.
    #[serde(default = "default_cgroups_root")]
    pub cgroups_root: String,
    /// Largest `GET_STATE` answer read, in bytes; a larger one is an error of the call.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
    /// Failed iterations in a row through which the last task list stays in force; at the
    /// next failure it is dropped (no tasks) until the agent answers again. 0: dropped at
    /// the first failure.
    #[serde(default = "default_task_list_ttl_iterations")]
    pub task_list_ttl_iterations: u32,
    /// Where `/<pid>/cgroup` is read; `/proc` outside tests.
    #[serde(skip, default = "default_proc_root")]
    pub proc_root: PathBuf,
    /// The client and the warnings already given, kept across iterations.
    #[serde(skip)]
    state: Arc<State>,
}

/// Reads an answer, handing each launched task to its argument.
type ReadTasks<'a> = dyn FnMut(&mut dyn FnMut(stream::Event<'_>)) -> Result<(), MesosError> + 'a;

/// An answer's length and keyed hash: two answers with the same are taken as the same.
type Fingerprint = (usize, u64);

#[derive(Debug, Default)]
struct State {
    /// Built on first use; a failed build is retried next time (the file may appear).
    client: Mutex<Option<Client>>,
    /// Tasks skipped in the last answer and why, so each is warned about once.
    skipped: Mutex<BTreeMap<String, SkipReason>>,
    /// Executors' cgroups by (task id, executor pid), as found last time: a running
    /// executor does not change cgroup, and reading `/proc/<pid>/cgroup` (which takes the
    /// kernel's css_set lock) for a thousand tasks every second was most of a node's cost.
    cgroups: Mutex<HashMap<(String, u32), String>>,
    /// The last answer's fingerprint and its tasks, reused while the agent answers the
    /// same bytes and nothing in them depended on `/proc`, which may have changed since.
    /// Nothing else of the answer is kept.
    last: Mutex<Option<(Fingerprint, Arc<Vec<Task>>)>>,
    /// Keys the fingerprints: per process and unpredictable, so that no tenant can choose
    /// labels that make a changed answer read as the same.
    hasher: foldhash::quality::RandomState,
    /// The last answer's size, to read the next one into a buffer of that size at once.
    last_size: AtomicUsize,
    /// Tasks whose labels the caps cut in the last answer, so each is reported once.
    cut: Mutex<BTreeMap<String, LabelsCut>>,
    /// Problems found and not yet taken by [`MesosNode::take_problems`].
    problems: Mutex<Vec<MesosTaskError>>,
}

impl Clone for MesosNode {
    /// The same settings with a client and warnings of its own.
    fn clone(&self) -> Self {
        Self {
            mesos_agent_endpoint: self.mesos_agent_endpoint.clone(),
            ssl_verify: self.ssl_verify.clone(),
            ssl: self.ssl.clone(),
            timeout: self.timeout,
            cgroups_root: self.cgroups_root.clone(),
            max_answer_bytes: self.max_answer_bytes,
            task_list_ttl_iterations: self.task_list_ttl_iterations,
            proc_root: self.proc_root.clone(),
            state: Arc::default(),
        }
    }
}

impl Default for MesosNode {
    /// OWCA's defaults: `https://127.0.0.1:5051`, system CAs, 5 s; Mesos' cgroup root
    /// `mesos`, answers up to 64 MiB, the task list kept through 10 failed iterations.
    fn default() -> Self {
        Self {
            mesos_agent_endpoint: default_endpoint(),
            ssl_verify: None,
            ssl: None,
            timeout: default_timeout(),
            cgroups_root: default_cgroups_root(),
            max_answer_bytes: default_max_answer_bytes(),
            task_list_ttl_iterations: default_task_list_ttl_iterations(),
            proc_root: default_proc_root(),
            state: Arc::default(),
        }
    }
}

fn default_endpoint() -> String {
    "https://127.0.0.1:5051".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_cgroups_root() -> String {
    "mesos".to_owned()
}

fn default_max_answer_bytes() -> u64 {
    64 << 20
}

fn default_task_list_ttl_iterations() -> u32 {
    10
}

fn default_proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// What one `GET_STATE` answer yielded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovery {
    /// Running tasks with a cgroup of their own, in the agent's order.
    pub tasks: Vec<Task>,
    /// Launched tasks left out, by task id (or `launched_tasks[<i>]` without one).
    pub skipped: BTreeMap<String, SkipReason>,
    /// The skipped tasks warned about by this call: new ones, or skipped for a new reason.
    pub warned: Vec<String>,
    /// Tasks measured with fewer or shorter labels than the answer gave them.
    pub cut: BTreeMap<String, LabelsCut>,
}

impl MesosNode {
    /// The same node reading `/<pid>/cgroup` under `proc_root` instead of `/proc`.
    pub fn with_proc_root(mut self, proc_root: impl Into<PathBuf>) -> Self {
        self.proc_root = proc_root.into();
        self
    }

    /// The URL asked: `<mesos_agent_endpoint>/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.mesos_agent_endpoint.trim_end_matches('/'))
    }

    /// Checks the settings, reads the CA bundle and client certificate they name, and
    /// builds the HTTP client; later calls return the same client. Callers may call it at
    /// start-up to fail early on a bad setting.
    pub fn client(&self) -> Result<Client, MesosError> {
        let mut cached = self
            .state
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = cached.as_ref() {
            return Ok(client.clone());
        }
        self.check_settings()?;
        let client = client::build(self)?;
        *cached = Some(client.clone());
        Ok(client)
    }

    fn check_settings(&self) -> Result<(), MesosError> {
        if self.cgroups_root.trim_matches('/').is_empty() {
            return Err(MesosError::EmptyCgroupsRoot {
                endpoint: self.mesos_agent_endpoint.clone(),
            });
        }
        if self.max_answer_bytes == 0 {
            return Err(MesosError::ZeroMaxAnswer {
                endpoint: self.mesos_agent_endpoint.clone(),
            });
        }
        self.check_endpoint()
    }

    fn check_endpoint(&self) -> Result<(), MesosError> {
        let invalid = |reason: String| MesosError::InvalidEndpoint {
            endpoint: self.mesos_agent_endpoint.clone(),
            reason,
        };
        // The endpoint itself: `http://` + `/api/v1` would parse with `api` as the host.
        let url = Url::parse(&self.mesos_agent_endpoint).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "expected http://host:port or https://host:port".into(),
            ));
        }
        Ok(())
    }

    /// Asks the agent for its state and returns the running tasks that can be measured.
    pub async fn tasks(&self) -> Result<Vec<Task>, MesosError> {
        Ok(self.task_list().await?.as_ref().clone())
    }

    /// [`Self::tasks`] as a shared list: while the agent's answer stays the same, the
    /// same list (the same `Arc`), which the containers stage then need not look through.
    pub async fn task_list(&self) -> Result<Arc<Vec<Task>>, MesosError> {
        let client = self.client()?;
        let url = self.api_url();
        let size = self.state.last_size.load(Ordering::Relaxed);
        let body =
            client::get_state(&client, &url, self.timeout, self.max_answer_bytes, size).await?;
        self.state.last_size.store(body.len(), Ordering::Relaxed);
        let fingerprint = (body.len(), self.state.hasher.hash_one(&body[..]));
        {
            let last = self
                .state
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, tasks)) = last.as_ref().filter(|(f, _)| *f == fingerprint) {
                return Ok(Arc::clone(tasks));
            }
        }
        let found = self.discover_text(&url, &body)?;
        drop(body);
        let reusable = found.skipped.values().all(|r| !r.depends_on_proc());
        let tasks = Arc::new(found.tasks);
        *self
            .state
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            reusable.then(|| (fingerprint, Arc::clone(&tasks)));
        Ok(tasks)
    }

    /// [`Self::discover`] for an answer's bytes, read one task at a time.
    fn discover_text(&self, url: &str, body: &[u8]) -> Result<Discovery, MesosError> {
        let lossy;
        let text = match std::str::from_utf8(body) {
            Ok(text) => text,
            Err(_) => {
                debug!(
                    url,
                    "GET_STATE answer holds bytes that are not UTF-8: replaced"
                );
                lossy = String::from_utf8_lossy(body);
                &lossy
            }
        };
        self.discover_each(&mut |on| match stream::launched_tasks(text, on) {
            Ok(shape) => shape.map_err(|problem| MesosError::BadAnswer {
                url: url.to_owned(),
                problem,
            }),
            Err(error) => Err(MesosError::NotJson {
                url: url.to_owned(),
                error,
            }),
        })
    }

    /// Turns a `GET_STATE` answer into tasks, warning once about each task skipped.
    pub fn discover(&self, answer: &Value) -> Result<Discovery, MesosError> {
        let launched = parse::launched_tasks(answer).map_err(|problem| MesosError::BadAnswer {
            url: self.api_url(),
            problem,
        })?;
        self.discover_each(&mut |on| {
            for raw in launched {
                on(stream::Event::Task(raw));
            }
            Ok(())
        })
    }

    /// The core of [`Self::discover`]: `read` hands each launched task to its argument.
    fn discover_each(&self, read: &mut ReadTasks<'_>) -> Result<Discovery, MesosError> {
        let mut out = Discovery::default();
        let mut ids = BTreeSet::new();
        let known = std::mem::take(
            &mut *self
                .state
                .cgroups
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut found = HashMap::new();
        let root = self.cgroups_root.trim_matches('/');
        let mut cgroup = |task_id: &str, pid: u32| {
            let key = (task_id.to_owned(), pid);
            let path = match known.get(&key) {
                Some(path) => path.clone(),
                None => parse::cgroup_of(&self.proc_root, pid)?,
            };
            if !below(&path, root) {
                return Err(SkipReason::OutsideCgroupsRoot {
                    pid,
                    cgroup: path,
                    root: root.to_owned(),
                });
            }
            found.insert(key, path.clone());
            Ok(path)
        };
        let mut index = 0;
        let mut found_all = |event: stream::Event<'_>| {
            let raw = match event {
                stream::Event::Task(raw) => raw,
                stream::Event::Restart => {
                    (out, index) = (Discovery::default(), 0);
                    ids.clear();
                    return;
                }
            };
            match parse::task(raw, &mut cgroup) {
                Ok(parsed) if !ids.insert(parsed.task.task_id.clone()) => {
                    debug!(
                        task_id = parsed.task.task_id,
                        "Mesos lists the task twice; the first entry is used"
                    );
                }
                Ok(parsed) => {
                    if !parsed.cut.is_empty() {
                        out.cut.insert(parsed.task.task_id.clone(), parsed.cut);
                    }
                    out.tasks.push(parsed.task);
                }
                Err(reason) => {
                    out.skipped.insert(parse::skip_key(raw, index), reason);
                }
            }
            index += 1;
        };
        let read = read(&mut found_all);
        if let Err(e) = read {
            // The cgroups found before stay known.
            *self
                .state
                .cgroups
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = known;
            return Err(e);
        }
        let mut previous = self
            .state
            .skipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (task_id, reason) in &out.skipped {
            if previous.get(task_id) != Some(reason) {
                warn!(
                    task_id,
                    endpoint = self.mesos_agent_endpoint,
                    "Mesos task not measured: {reason}"
                );
                out.warned.push(task_id.clone());
            }
        }
        // Tasks gone or measured now are forgotten: if skipped again, they are warned again.
        *previous = out.skipped.clone();
        drop(previous);
        let mut previous = self
            .state
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut problems = self
            .state
            .problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (task_id, cut) in &out.cut {
            if previous.get(task_id) != Some(cut) {
                problems.push(MesosTaskError::LabelsCut {
                    task_id: task_id.clone(),
                    cut: *cut,
                });
            }
        }
        *previous = out.cut.clone();
        *self
            .state
            .cgroups
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = found;
        Ok(out)
    }

    /// Problems of single tasks still measured (labels cut to the caps), each returned
    /// once: when found, or found different, since the task was last listed without it.
    pub fn take_problems(&self) -> Vec<MesosTaskError> {
        std::mem::take(
            &mut *self
                .state
                .problems
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Tasks skipped in the last answer and why.
    pub fn skipped(&self) -> BTreeMap<String, SkipReason> {
        self.state
            .skipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Whether the cgroup `path` (e.g. `/mesos/<id>`) is strictly below `/<root>/`.
fn below(path: &str, root: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(root))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| !rest.is_empty())
}
