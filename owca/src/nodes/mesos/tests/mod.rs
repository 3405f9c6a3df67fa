//! `GET_STATE` parsing over every Mesos fixture, skip reasons and the warn-once rule, with
//! `/proc/<pid>/cgroup` faked in a temp dir. HTTP, TLS and real cgroups are covered by
//! `tests/mesos_node.rs`.

mod labels;
mod problems;
use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;
use crate::metrics::Labels;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mesos");

/// The task of mesos_get_state.json and its derivatives.
const TASK_ID: &str = "root-staging14-cassandra--9043-0-9ee9fbf1-b51b-4bb3-9748-6a4327fd7e0e";
const CONTAINER: &str = "ceab3bec-9282-43aa-b05f-095736cc169e";
const PID: u32 = 32620;

fn fixture(name: &str) -> Value {
    let path = Path::new(FIXTURES).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A /proc with only the `cgroup` files written into it.
struct FakeProc(TempDir);

impl FakeProc {
    fn new() -> Self {
        Self(TempDir::new().unwrap())
    }

    fn with(self, pid: u32, cgroup: &str) -> Self {
        let dir = self.0.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        self
    }

    /// The executor of the fixtures' task in `/mesos/<container>` on a v1 host.
    fn mesos() -> Self {
        Self::new().with(
            PID,
            &format!(
                "11:cpu:/mesos/{CONTAINER}\n10:cpuacct:/mesos/{CONTAINER}\n4:memory:/\n0::/\n"
            ),
        )
    }

    fn node(&self) -> MesosNode {
        MesosNode::default().with_proc_root(self.0.path())
    }
}

/// mesos_get_state.json changed by `f`, which gets the launched task.
fn edited(f: impl FnOnce(&mut Value)) -> Value {
    let mut answer = fixture("mesos_get_state.json");
    f(&mut answer["get_state"]["get_tasks"]["launched_tasks"][0]);
    answer
}

/// Sets the field at a JSON pointer, adding it to its object if missing.
fn set(v: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Array(list) => list[key.parse::<usize>().unwrap()] = value,
        Value::Object(fields) => drop(fields.insert(key.to_owned(), value)),
        other => panic!("{parent} is {other}"),
    }
}

fn last_status(task: &mut Value) -> &mut Value {
    &mut task["statuses"][1]
}

#[test]
fn real_capture_yields_its_task() {
    let proc = FakeProc::mesos();
    let found = proc
        .node()
        .discover(&fixture("mesos_get_state.json"))
        .unwrap();
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    let labels: Labels = [
        ("aurora_tier", "preemptible"),
        ("env_uniq_id", "14"),
        ("name", "cassandra--9043"),
        ("workload_uniq_id", "9043"),
        ("application", "cassandra"),
        ("load_generator", "ycsb"),
        (INITIAL_CPU_LABEL, "8.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let resources = [("mem", 2048.0), ("cpus", 8.0), ("disk", 10240.0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(
        found.tasks,
        vec![Task {
            task_id: TASK_ID.into(),
            name: "root/staging14/cassandra--9043".into(),
            cgroup_path: format!("/mesos/{CONTAINER}"),
            labels,
            resources,
        }]
    );
}

#[test]
fn cgroup_v2_line_is_used_without_a_v1_cpu_line() {
    let proc = FakeProc::new().with(PID, "0::/mesos/v2-container\n");
    let found = proc
        .node()
        .discover(&fixture("mesos_get_state.json"))
        .unwrap();
    assert_eq!(found.tasks[0].cgroup_path, "/mesos/v2-container");
    // A co-mounted cpu,cpuacct hierarchy counts as the cpu line.
    let proc = FakeProc::new().with(PID, "3:cpu,cpuacct:/mesos/co\n0::/\n");
    let found = proc
        .node()
        .discover(&fixture("mesos_get_state.json"))
        .unwrap();
    assert_eq!(found.tasks[0].cgroup_path, "/mesos/co");
}

#[test]
fn missing_or_empty_statuses_are_skipped() {
    for name in [
        "missing_statuses_in_mesos_response.json",
        "empty_statuses_in_mesos_response.json",
    ] {
        let found = FakeProc::mesos().node().discover(&fixture(name)).unwrap();
        assert!(found.tasks.is_empty(), "{name}");
        assert_eq!(
            found.skipped,
            BTreeMap::from([(TASK_ID.to_owned(), SkipReason::NoStatuses)]),
            "{name}"
        );
        assert_eq!(found.warned, vec![TASK_ID.to_owned()]);
    }
}

#[test]
fn missing_executor_pid_is_the_docker_containerizer() {
    let found = FakeProc::new()
        .node()
        .discover(&fixture("missing_executor_pid_in_mesos_response.json"))
        .unwrap();
    assert!(found.tasks.is_empty());
    let id = "root-devel-stress-docker-0-71a63005-f319-4fdc-81b6-92f87174a1a6";
    // Only the launched task: completed ones are not looked at.
    assert_eq!(
        found.skipped,
        BTreeMap::from([(id.to_owned(), SkipReason::NoExecutorPid)])
    );
    assert!(
        SkipReason::NoExecutorPid
            .to_string()
            .contains("Docker containerizer")
    );
}

#[test]
fn wrong_types_skip_the_task_without_failing() {
    let found = FakeProc::mesos()
        .node()
        .discover(&fixture("mesos_invalid_response.json"))
        .unwrap();
    assert!(found.tasks.is_empty());
    let reason = SkipReason::WrongType {
        field: "statuses[-1].container_status.container_id.value".into(),
        expected: "a string",
    };
    assert_eq!(
        found.skipped,
        BTreeMap::from([(TASK_ID.to_owned(), reason)])
    );
}

#[test]
fn documentation_example_works() {
    let proc = FakeProc::new().with(19846, "2:cpu:/mesos/doc\n");
    let found = proc
        .node()
        .discover(&fixture("docs_agent_get_state_response.json"))
        .unwrap();
    let task = &found.tasks[0];
    assert_eq!(
        (
            task.task_id.as_str(),
            task.name.as_str(),
            task.cgroup_path.as_str()
        ),
        ("1", "1", "/mesos/doc")
    );
    assert_eq!(
        task.resources,
        BTreeMap::from([
            ("cpus".into(), 2.0),
            ("mem".into(), 1024.0),
            ("disk".into(), 1024.0)
        ])
    );
    assert_eq!(
        task.labels,
        Labels::from([(INITIAL_CPU_LABEL.to_owned(), "2.0".to_owned())])
    );
}

/// The answer read one task at a time gives what the whole parsed answer gives, shape
/// problems, nulls and keys given twice (the last one counts) included.
#[test]
fn streamed_answers_read_as_parsed_ones() {
    let full = serde_json::to_string(&fixture("mesos_get_state.json")).unwrap();
    let task = serde_json::to_string(
        &fixture("mesos_get_state.json")["get_state"]["get_tasks"]["launched_tasks"][0],
    )
    .unwrap();
    let texts = [
        full.clone(),
        "[]".to_owned(),
        "5".to_owned(),
        "{}".to_owned(),
        r#"{"get_state": null}"#.to_owned(),
        r#"{"get_state": 3}"#.to_owned(),
        r#"{"get_state": {}}"#.to_owned(),
        r#"{"get_state": {"get_tasks": [1]}}"#.to_owned(),
        r#"{"get_state": {"get_tasks": {"launched_tasks": {}}}}"#.to_owned(),
        r#"{"get_state": {"get_tasks": {"launched_tasks": null}}}"#.to_owned(),
        format!(r#"{{"get_state": {{"get_tasks": {{"launched_tasks": [{task}, 7, {{}}]}}}}}}"#),
        // Keys given twice: the last value counts.
        format!(
            r#"{{"get_state": {{"get_tasks": {{"launched_tasks": [{task}]}}}}, "get_state": {{"get_tasks": {{"launched_tasks": [1]}}}}}}"#
        ),
        format!(
            r#"{{"get_state": {{"get_tasks": {{"launched_tasks": [2]}}}}, "get_state": {{"x": 1, "get_tasks": {{"launched_tasks": [{task}], "launched_tasks": [{task}, 3]}}}}}}"#
        ),
        format!(
            r#"{{"get_state": {{"get_tasks": {{"launched_tasks": [{task}]}}}}, "get_state": 1}}"#
        ),
    ];
    let fake = FakeProc::mesos();
    for text in &texts {
        let parsed: Value = serde_json::from_str(text).unwrap();
        let whole = fake.node().discover(&parsed);
        let node = fake.node();
        let streamed = node.discover_text(&node.api_url(), text.as_bytes());
        match (whole, streamed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            (a, b) => panic!("{text}: {a:?} vs {b:?}"),
        }
    }
    let node = fake.node();
    assert!(matches!(
        node.discover_text(
            "http://127.0.0.1:5051/api/v1",
            &full.as_bytes()[..full.len() - 1]
        ),
        Err(MesosError::NotJson { .. })
    ));
    assert!(matches!(
        node.discover_text("http://127.0.0.1:5051/api/v1", b"{} {}"),
        Err(MesosError::NotJson { .. })
    ));
}
