//! Tolerant reading of a `GET_STATE` answer: every field is optional and checked by hand,
//! so one task with a missing or wrong-typed field is skipped with a reason while the
//! others come through.

use std::{collections::BTreeMap, fmt, path::Path};

use serde_json::{Map, Value};
use tracing::debug;

use crate::{
    cgroups::proc_cgroup, metrics::Labels, metrics::labels::sanitize_label_name, nodes::Task,
};

/// The only state in which a task is measured.
const TASK_RUNNING: &str = "TASK_RUNNING";

/// Label holding the task's `cpus` resource, which OWCA added for prediction plug-ins.
pub const INITIAL_CPU_LABEL: &str = "initial_task_cpu_assignment";

/// Most labels of one task taken from the answer; the rest are dropped.
pub const MAX_LABELS: usize = 64;

/// Longest label key (in bytes, before sanitizing) taken; a label with a longer key is
/// dropped.
pub const MAX_LABEL_KEY_BYTES: usize = 128;

/// Longest label value (in bytes) kept; a longer value is cut to this length (at a
/// character boundary).
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// What the caps on a task's labels left out of it; all zero when nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelsCut {
    /// Labels beyond the first [`MAX_LABELS`], dropped.
    pub over_count: usize,
    /// Labels whose key is longer than [`MAX_LABEL_KEY_BYTES`], dropped.
    pub long_keys: usize,
    /// Values longer than [`MAX_LABEL_VALUE_BYTES`], cut.
    pub long_values: usize,
}

impl LabelsCut {
    /// Whether the caps changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for LabelsCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (
                self.over_count,
                format!("labels beyond the first {MAX_LABELS} dropped"),
            ),
            (
                self.long_keys,
                format!("labels with a key over {MAX_LABEL_KEY_BYTES} bytes dropped"),
            ),
            (
                self.long_values,
                format!("values cut to {MAX_LABEL_VALUE_BYTES} bytes"),
            ),
        ];
        let mut first = true;
        for (n, what) in parts {
            if n > 0 {
                write!(f, "{}{n} {what}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One launched task as read from the answer: the task, and what the label caps cut.
#[derive(Debug)]
pub(super) struct Parsed {
    pub task: Task,
    pub cut: LabelsCut,
}

/// Why a launched task is not measured. Each is logged once per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `statuses` is missing or empty: the agent has not reported on the task yet.
    NoStatuses,
    /// The last status is not `TASK_RUNNING` (`None`: it has no state).
    NotRunning {
        /// The last status's state.
        state: Option<String>,
    },
    /// The last status has no `container_status.executor_pid`, as with the Docker
    /// containerizer.
    NoExecutorPid,
    /// The task runs in a nested container (a task group / pod), whose cgroup the
    /// executor's pid does not give.
    NestedContainer {
        /// The parent container's id.
        parent: String,
    },
    /// The executor process no longer exists.
    ProcessGone {
        /// The executor's pid.
        pid: u32,
    },
    /// The executor is in the root cpu cgroup: the agent runs without the `cgroups/cpu`
    /// isolator, so the task has no cgroup of its own.
    RootCgroup {
        /// The executor's pid.
        pid: u32,
    },
    /// `/proc/<pid>/cgroup` could not be read or has no cpu (or v2) line.
    UnreadableCgroup {
        /// The executor's pid.
        pid: u32,
        /// What went wrong.
        error: String,
    },
    /// A field the agent needs is present with the wrong type.
    WrongType {
        /// Path of the field in the task, e.g. `statuses[-1].container_status.executor_pid`.
        field: String,
        /// What it should be.
        expected: &'static str,
    },
    /// Neither the last status nor the task has a `task_id.value`.
    NoTaskId,
    /// The executor's cgroup is not below the Mesos agent's cgroup root (`cgroups_root`):
    /// not a container of the agent (no `cgroups/cpu` isolator, or a forged answer).
    OutsideCgroupsRoot {
        /// The executor's pid.
        pid: u32,
        /// Its cgroup.
        cgroup: String,
        /// The configured `cgroups_root`.
        root: String,
    },
}

impl SkipReason {
    /// Whether the reason came from `/proc` rather than from the agent's answer, so that
    /// the same answer may give another result later.
    pub fn depends_on_proc(&self) -> bool {
        matches!(
            self,
            Self::ProcessGone { .. }
                | Self::RootCgroup { .. }
                | Self::UnreadableCgroup { .. }
                | Self::OutsideCgroupsRoot { .. }
        )
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStatuses => f.write_str("it has no status updates yet"),
            Self::NotRunning { state: Some(s) } => write!(f, "its last status is {s}, not {TASK_RUNNING}"),
            Self::NotRunning { state: None } => write!(f, "its last status has no state"),
            Self::NoExecutorPid => f.write_str(
                "its last status has no container_status.executor_pid: tasks of the Docker containerizer are not supported",
            ),
            Self::NestedContainer { parent } => {
                write!(f, "it runs in a nested container of {parent} (task group): not supported")
            }
            Self::ProcessGone { pid } => write!(f, "its executor process {pid} is gone"),
            Self::RootCgroup { pid } => write!(
                f,
                "its executor process {pid} is in the root cpu cgroup: is the agent's cgroups/cpu isolator enabled?"
            ),
            Self::UnreadableCgroup { pid, error } => {
                write!(f, "cannot tell the cgroup of its executor process {pid}: {error}")
            }
            Self::WrongType { field, expected } => write!(f, "{field} is not {expected}"),
            Self::NoTaskId => f.write_str("it has no task_id"),
            Self::OutsideCgroupsRoot { pid, cgroup, root } => write!(
                f,
                "its executor process {pid} is in cgroup {cgroup}, not below /{root}/ (cgroups_root): neither measured nor allocated"
            ),
        }
    }
}

/// `get_state.get_tasks.launched_tasks`; `Err` says what is wrong with the answer's shape.
/// An agent without tasks may leave out `get_tasks` or `launched_tasks` (protobuf JSON
/// omits empty fields): that is an empty list.
pub(super) fn launched_tasks(answer: &Value) -> Result<&[Value], String> {
    let state = match field(answer, "get_state") {
        None => return Err("has no get_state".into()),
        Some(s @ Value::Object(_)) => s,
        Some(_) => return Err("has get_state that is not an object".into()),
    };
    let tasks = match field(state, "get_tasks") {
        None => return Ok(&[]),
        Some(t @ Value::Object(_)) => t,
        Some(_) => return Err("has get_state.get_tasks that is not an object".into()),
    };
    match field(tasks, "launched_tasks") {
        None => Ok(&[]),
        Some(Value::Array(list)) => Ok(list),
        Some(_) => Err("has get_state.get_tasks.launched_tasks that is not a list".into()),
    }
}

/// The id a skipped task is reported under: its task id if one can be found, else its
/// position.
pub(super) fn skip_key(raw: &Value, index: usize) -> String {
    let last_status = raw
        .get("statuses")
        .and_then(Value::as_array)
        .and_then(|s| s.last());
    [last_status, Some(raw)]
        .into_iter()
        .flatten()
        .find_map(|v| v.get("task_id")?.get("value")?.as_str())
        .map_or_else(|| format!("launched_tasks[{index}]"), str::to_owned)
}

/// One launched task as a [`Task`], or why not; `cgroup(task_id, pid)` finds the cgroup of
/// the task's executor.
pub(super) fn task(
    raw: &Value,
    cgroup: &mut dyn FnMut(&str, u32) -> Result<String, SkipReason>,
) -> Result<Parsed, SkipReason> {
    let task = required_object(raw, "the launched task")?;
    let statuses = match array(task.get("statuses"), "statuses")? {
        Some(list) if !list.is_empty() => list,
        _ => return Err(SkipReason::NoStatuses),
    };
    // OWCA took the last status as the current one; the agent appends them in order.
    let last = required_object(statuses.last().unwrap_or(&Value::Null), "statuses[-1]")?;
    let task_id = match string(
        nested(last, &["task_id", "value"]),
        "statuses[-1].task_id.value",
    )? {
        Some(id) => id,
        None => string(nested(task, &["task_id", "value"]), "task_id.value")?
            .ok_or(SkipReason::NoTaskId)?,
    };
    match string(last.get("state"), "statuses[-1].state")? {
        Some(TASK_RUNNING) => {}
        state => {
            return Err(SkipReason::NotRunning {
                state: state.map(str::to_owned),
            });
        }
    }
    let container_status = object(
        last.get("container_status"),
        "statuses[-1].container_status",
    )?
    .ok_or(SkipReason::NoExecutorPid)?;
    if let Some(container_id) = object(
        container_status.get("container_id"),
        "statuses[-1].container_status.container_id",
    )? {
        string(
            container_id.get("value"),
            "statuses[-1].container_status.container_id.value",
        )?;
        if let Some(parent) = object(
            container_id.get("parent"),
            "statuses[-1].container_status.container_id.parent",
        )? {
            let parent = parent
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or("an unnamed container");
            return Err(SkipReason::NestedContainer {
                parent: parent.to_owned(),
            });
        }
    }
    let pid = match container_status.get("executor_pid") {
        None | Some(Value::Null) => return Err(SkipReason::NoExecutorPid),
        Some(v) => v
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                wrong_type("statuses[-1].container_status.executor_pid", "a process id")
            })?,
    };
    let name = string(task.get("name"), "name")?
        .filter(|n| !n.is_empty())
        .unwrap_or(task_id);
    let (mut labels, cut) = labels(task)?;
    let resources = scalar_resources(task)?;
    // Last: the only check that reads a file.
    let cgroup_path = cgroup(task_id, pid)?;
    let cpus = resources
        .get("cpus")
        .map_or_else(|| "unknown".to_owned(), |c| python_float_str(*c));
    if labels.insert(INITIAL_CPU_LABEL.to_owned(), cpus).is_some() {
        debug!(
            task_id,
            "Mesos label {INITIAL_CPU_LABEL} replaced by the task's cpus resource"
        );
    }
    Ok(Parsed {
        task: Task {
            task_id: task_id.to_owned(),
            name: name.to_owned(),
            cgroup_path,
            labels,
            resources,
        },
        cut,
    })
}

/// The executor's cgroup: the v1 `cpu` hierarchy line, as OWCA read it, else the v2 line.
pub(super) fn cgroup_of(proc_root: &Path, pid: u32) -> Result<String, SkipReason> {
    let cgroups = match proc_cgroup(proc_root, pid) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(SkipReason::ProcessGone { pid }),
        Err(e) => {
            return Err(SkipReason::UnreadableCgroup {
                pid,
                error: e.to_string(),
            });
        }
    };
    match cgroups.v1("cpu").or_else(|| cgroups.v2()) {
        Some("/") => Err(SkipReason::RootCgroup { pid }),
        Some(path) => Ok(path.to_owned()),
        None => Err(SkipReason::UnreadableCgroup {
            pid,
            error: "no cpu controller or cgroup v2 line".into(),
        }),
    }
}

/// `labels.labels[] {key, value}` with keys sanitized as OWCA did, within the caps
/// ([`MAX_LABELS`], [`MAX_LABEL_KEY_BYTES`], [`MAX_LABEL_VALUE_BYTES`]). Names the agent
/// sets itself are left as they are: the containers stage renames them.
fn labels(task: &Map<String, Value>) -> Result<(Labels, LabelsCut), SkipReason> {
    let mut out = Labels::new();
    let mut cut = LabelsCut::default();
    let Some(outer) = object(task.get("labels"), "labels")? else {
        return Ok((out, cut));
    };
    let list = array(outer.get("labels"), "labels.labels")?.unwrap_or_default();
    cut.over_count = list.len().saturating_sub(MAX_LABELS);
    for (i, label) in list.iter().take(MAX_LABELS).enumerate() {
        let at = |f: &str| format!("labels.labels[{i}]{f}");
        let label = required_object(label, &at(""))?;
        let key = string(label.get("key"), &at(".key"))?
            .ok_or_else(|| wrong_type(&at(".key"), "a string"))?;
        // Label.value is optional in Mesos' protobuf.
        let mut value = string(label.get("value"), &at(".value"))?.unwrap_or("");
        if key.len() > MAX_LABEL_KEY_BYTES {
            cut.long_keys += 1;
            continue;
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            cut.long_values += 1;
            value = &value[..value.floor_char_boundary(MAX_LABEL_VALUE_BYTES)];
        }
        let name = sanitize_label(key);
        if out.insert(name.clone(), value.to_owned()).is_some() {
            debug!(
                key,
                "Mesos labels collide as {name} once sanitized; the last one is kept"
            );
        }
    }
    Ok((out, cut))
}

/// SCALAR resources by name. A name listed more than once (the same resource from several
/// roles or reservations) is summed: the task holds all of them.
fn scalar_resources(task: &Map<String, Value>) -> Result<BTreeMap<String, f64>, SkipReason> {
    let mut out = BTreeMap::new();
    for (i, resource) in array(task.get("resources"), "resources")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = |f: &str| format!("resources[{i}]{f}");
        let resource = required_object(resource, &at(""))?;
        if string(resource.get("type"), &at(".type"))? != Some("SCALAR") {
            continue;
        }
        let name = string(resource.get("name"), &at(".name"))?
            .ok_or_else(|| wrong_type(&at(".name"), "a string"))?;
        let value = nested(resource, &["scalar", "value"])
            .and_then(Value::as_f64)
            .ok_or_else(|| wrong_type(&at(".scalar.value"), "a number"))?;
        *out.entry(name.to_owned()).or_insert(0.0) += value;
    }
    Ok(out)
}

/// A Mesos label key as a Prometheus label name: `org.apache.` then `aurora.metadata.`
/// prefixes stripped, dots as underscores (as OWCA did), then anything else invalid made
/// valid.
pub fn sanitize_label(key: &str) -> String {
    let key = key.strip_prefix("org.apache.").unwrap_or(key);
    let key = key.strip_prefix("aurora.metadata.").unwrap_or(key);
    sanitize_label_name(&key.replace('.', "_"))
}

/// `str(float(v))` of Python, which OWCA used for [`INITIAL_CPU_LABEL`]: `8.0`, `0.5`,
/// `1e+16`, `1e-05`, so existing dashboards and plug-ins see the same values.
pub fn python_float_str(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        // Rust writes `1.5e-5`; Python `1.5e-05`: a sign and at least two exponent digits.
        let text = format!("{v:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = exponent
            .strip_prefix('-')
            .map_or(("+", exponent), |d| ("-", d));
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let text = format!("{v}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// A field, with JSON `null` taken as absent.
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

fn nested<'a>(v: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    rest.iter()
        .try_fold(v.get(*first)?, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn wrong_type(field: &str, expected: &'static str) -> SkipReason {
    SkipReason::WrongType {
        field: field.to_owned(),
        expected,
    }
}

fn string<'a>(v: Option<&'a Value>, name: &str) -> Result<Option<&'a str>, SkipReason> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(name, "a string")),
    }
}

fn object<'a>(
    v: Option<&'a Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, SkipReason> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(wrong_type(name, "an object")),
    }
}

fn required_object<'a>(v: &'a Value, name: &str) -> Result<&'a Map<String, Value>, SkipReason> {
    v.as_object().ok_or_else(|| wrong_type(name, "an object"))
}

fn array<'a>(v: Option<&'a Value>, name: &str) -> Result<Option<&'a [Value]>, SkipReason> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(wrong_type(name, "a list")),
    }
}
