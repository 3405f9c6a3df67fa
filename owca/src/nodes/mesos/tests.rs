//! `GET_STATE` parsing over every Mesos fixture, skip reasons and the warn-once rule, with
//! `/proc/<pid>/cgroup` faked in a temp dir. HTTP, TLS and real cgroups are covered by
//! `tests/mesos_node.rs`.

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

#[test]
fn each_problem_has_its_reason() {
    use SkipReason::*;
    let wrong = |field: &str, expected| WrongType {
        field: field.into(),
        expected,
    };
    let pid_type = || wrong("statuses[-1].container_status.executor_pid", "a process id");
    let unreadable = |pid, error: &str| UnreadableCgroup {
        pid,
        error: error.into(),
    };
    // (JSON pointer into the task, new value (null = absent), reason)
    let cases = [
        (
            "/statuses/1/state",
            json!("TASK_FINISHED"),
            NotRunning {
                state: Some("TASK_FINISHED".into()),
            },
        ),
        ("/statuses/1/state", json!(null), NotRunning { state: None }),
        ("/statuses/1/container_status", json!(null), NoExecutorPid),
        (
            "/statuses/1/container_status/executor_pid",
            json!(4242),
            ProcessGone { pid: 4242 },
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!(1),
            RootCgroup { pid: 1 },
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!(2),
            unreadable(2, "unexpected content in"),
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!(3),
            unreadable(3, "no cpu controller or cgroup v2 line"),
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!("wrong-pid"),
            pid_type(),
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!(-5),
            pid_type(),
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!(1.5),
            pid_type(),
        ),
        (
            "/statuses/1/container_status/executor_pid",
            json!({"pid": 1}),
            pid_type(),
        ),
        (
            "/statuses/1/container_status/container_id/parent",
            json!({"value": "exec-1"}),
            NestedContainer {
                parent: "exec-1".into(),
            },
        ),
        ("/statuses", json!({}), wrong("statuses", "a list")),
        (
            "/statuses/1",
            json!("x"),
            wrong("statuses[-1]", "an object"),
        ),
        (
            "/statuses/1/task_id/value",
            json!(0),
            wrong("statuses[-1].task_id.value", "a string"),
        ),
        (
            "/labels/labels/2/key",
            json!(7),
            wrong("labels.labels[2].key", "a string"),
        ),
        (
            "/labels/labels/2",
            json!(null),
            wrong("labels.labels[2]", "an object"),
        ),
        (
            "/labels/labels",
            json!("x"),
            wrong("labels.labels", "a list"),
        ),
        (
            "/resources/1/scalar/value",
            json!("8"),
            wrong("resources[1].scalar.value", "a number"),
        ),
        (
            "/resources/0/name",
            json!(null),
            wrong("resources[0].name", "a string"),
        ),
        ("/name", json!(["x"]), wrong("name", "a string")),
    ];
    let proc = FakeProc::mesos()
        .with(1, "1:cpu:/\n0::/\n")
        .with(2, "garbage\n")
        .with(3, "4:memory:/x\n");
    for (pointer, value, expected) in cases {
        let what = format!("{pointer} = {value}");
        let answer = edited(|t| set(t, pointer, value));
        let found = proc.node().discover(&answer).unwrap();
        assert!(found.tasks.is_empty(), "{what}");
        assert_eq!(found.skipped.len(), 1, "{what}");
        let (id, reason) = found.skipped.into_iter().next().unwrap();
        assert_eq!(id, TASK_ID, "{what}");
        match (&reason, &expected) {
            // The error names the file; compare its start only.
            (UnreadableCgroup { pid, error }, UnreadableCgroup { pid: p, error: e }) => {
                assert_eq!(pid, p, "{what}");
                assert!(error.starts_with(e.as_str()), "{what}: {error}");
            }
            _ => assert_eq!(reason, expected, "{what}"),
        }
        assert!(!reason.to_string().is_empty());
    }
}

#[test]
fn task_id_falls_back_to_the_task_then_to_the_position() {
    let proc = FakeProc::mesos();
    let answer = edited(|t| drop(last_status(t)["task_id"].take()));
    assert_eq!(
        proc.node().discover(&answer).unwrap().tasks[0].task_id,
        TASK_ID
    );
    let answer = edited(|t| {
        last_status(t)["task_id"].take();
        t["task_id"].take();
    });
    let found = proc.node().discover(&answer).unwrap();
    assert_eq!(
        found.skipped,
        BTreeMap::from([("launched_tasks[0]".to_owned(), SkipReason::NoTaskId)])
    );
    let answer = json!({"get_state": {"get_tasks": {"launched_tasks": [3, null]}}});
    let found = proc.node().discover(&answer).unwrap();
    assert_eq!(
        found.skipped.keys().collect::<Vec<_>>(),
        ["launched_tasks[0]", "launched_tasks[1]"]
    );
}

#[test]
fn one_bad_task_does_not_hide_the_others() {
    let mut answer = fixture("mesos_get_state.json");
    let tasks = answer["get_state"]["get_tasks"]["launched_tasks"]
        .as_array_mut()
        .unwrap();
    let mut broken = tasks[0].clone();
    last_status(&mut broken)["task_id"]["value"] = json!("broken");
    last_status(&mut broken)["container_status"]["executor_pid"] = json!({"pid": 1});
    tasks.insert(0, broken);
    // The same task twice is measured once.
    tasks.push(tasks[1].clone());
    let found = FakeProc::mesos().node().discover(&answer).unwrap();
    assert_eq!(found.tasks.len(), 1);
    assert_eq!(found.tasks[0].task_id, TASK_ID);
    assert_eq!(found.skipped.keys().collect::<Vec<_>>(), ["broken"]);
}

#[test]
fn each_skipped_task_is_warned_about_once() {
    let node = FakeProc::new().node();
    let docker = fixture("missing_executor_pid_in_mesos_response.json");
    let id = "root-devel-stress-docker-0-71a63005-f319-4fdc-81b6-92f87174a1a6".to_owned();
    assert_eq!(node.discover(&docker).unwrap().warned, vec![id.clone()]);
    let again = node.discover(&docker).unwrap();
    assert!(again.warned.is_empty());
    assert_eq!(again.skipped.len(), 1);
    assert_eq!(node.skipped(), again.skipped);
    // A new reason for the same task is worth a new warning.
    let mut finished = docker.clone();
    let statuses = finished["get_state"]["get_tasks"]["launched_tasks"][0]["statuses"]
        .as_array_mut()
        .unwrap();
    statuses[1]["state"] = json!("TASK_KILLED");
    assert_eq!(node.discover(&finished).unwrap().warned, vec![id.clone()]);
    // Once the task is gone it is forgotten, and warned about if it comes back.
    let empty = json!({"get_state": {"get_tasks": {}}});
    assert!(node.discover(&empty).unwrap().skipped.is_empty());
    assert!(node.skipped().is_empty());
    assert_eq!(node.discover(&docker).unwrap().warned, vec![id]);
}

#[test]
fn a_broken_answer_is_an_error_naming_the_endpoint() {
    let node = MesosNode {
        mesos_agent_endpoint: "http://agent:5051/".into(),
        ..MesosNode::default()
    };
    for answer in [
        json!({}),
        json!([]),
        json!("GET_STATE"),
        json!({"type": "GET_STATE", "get_state": null}),
        json!({"get_state": 3}),
        json!({"get_state": {"get_tasks": []}}),
        json!({"get_state": {"get_tasks": {"launched_tasks": {"a": 1}}}}),
    ] {
        let err = node.discover(&answer).unwrap_err();
        assert!(
            matches!(err, MesosError::BadAnswer { .. }),
            "{answer}: {err}"
        );
        assert!(
            err.to_string().contains("http://agent:5051/api/v1"),
            "{err}"
        );
    }
    // An agent without tasks leaves the empty lists out.
    for answer in [
        json!({"get_state": {}}),
        json!({"get_state": {"get_tasks": {"completed_tasks": []}}}),
    ] {
        assert_eq!(node.discover(&answer).unwrap(), Discovery::default());
    }
}

#[test]
fn labels_as_owca_named_them() {
    assert_eq!(sanitize_label("org.apache.aurora.tier"), "aurora_tier");
    assert_eq!(
        sanitize_label("org.apache.aurora.metadata.env_uniq_id"),
        "env_uniq_id"
    );
    assert_eq!(sanitize_label("aurora.metadata.name"), "name");
    assert_eq!(sanitize_label("org.apache.mesos.x-y"), "mesos_x_y");
    assert_eq!(sanitize_label("9.lives"), "_9_lives");
    assert_eq!(sanitize_label("__meta"), "_meta");
    assert_eq!(sanitize_label(""), "_");
    let answer = edited(|t| {
        let labels = t["labels"]["labels"].as_array_mut().unwrap();
        labels.push(json!({"key": "task_id", "value": "forged"}));
        labels.push(json!({"key": INITIAL_CPU_LABEL, "value": "99"}));
        labels.push(json!({"key": "no_value"}));
        // A second cpus reservation (another role) adds to the first.
        let mut more = t["resources"][1].clone();
        more["scalar"]["value"] = json!(0.5);
        t["resources"].as_array_mut().unwrap().push(more);
    });
    let task = &FakeProc::mesos().node().discover(&answer).unwrap().tasks[0];
    // Passed on as the tenant gave it: the containers stage renames it (task_task_id).
    assert_eq!(task.labels["task_id"], "forged");
    assert_eq!(task.labels[INITIAL_CPU_LABEL], "8.5");
    assert_eq!(task.labels["no_value"], "");
    assert_eq!(task.resources["cpus"], 8.5);
    let answer = edited(|t| drop(t["resources"].take()));
    let task = &FakeProc::mesos().node().discover(&answer).unwrap().tasks[0];
    assert_eq!(task.labels[INITIAL_CPU_LABEL], "unknown");
    assert!(task.resources.is_empty());
}

#[test]
fn cpus_formatted_as_python_did() {
    let cases = [
        (8.0, "8.0"),
        (1.0, "1.0"),
        (0.5, "0.5"),
        (0.25, "0.25"),
        (0.0, "0.0"),
        (1.1, "1.1"),
        (123456789.0, "123456789.0"),
        (1e16, "1e+16"),
        (1.5e-5, "1.5e-05"),
        (1e-4, "0.0001"),
        (2.5e100, "2.5e+100"),
        (-3.0, "-3.0"),
    ];
    for (v, text) in cases {
        assert_eq!(python_float_str(v), text, "{v}");
    }
}

#[test]
fn an_executors_cgroup_is_read_once_while_its_task_runs() {
    let proc = FakeProc::mesos().with(4242, "11:cpu:/mesos/other\n0::/\n");
    let node = proc.node();
    let answer = fixture("mesos_get_state.json");
    let path = format!("/mesos/{CONTAINER}");
    assert_eq!(node.discover(&answer).unwrap().tasks[0].cgroup_path, path);
    // Not read again for the same task and executor pid.
    std::fs::remove_file(proc.0.path().join(format!("{PID}/cgroup"))).unwrap();
    assert_eq!(node.discover(&answer).unwrap().tasks[0].cgroup_path, path);
    // A new executor pid is looked up.
    let moved = edited(|t| {
        set(
            last_status(t),
            "/container_status/executor_pid",
            json!(4242),
        )
    });
    assert_eq!(
        node.discover(&moved).unwrap().tasks[0].cgroup_path,
        "/mesos/other"
    );
    // Forgotten once the task was not listed: looked up afresh, and now gone.
    let found = node.discover(&answer).unwrap();
    assert_eq!(
        found.skipped[TASK_ID],
        SkipReason::ProcessGone { pid: PID },
        "{found:?}"
    );
}

#[test]
fn executors_outside_the_cgroups_root_are_skipped_and_warned_once() {
    let answer = fixture("mesos_get_state.json");
    for cgroup in [
        "/system.slice/ssh.service",
        "/mesos",
        "/mesosphere/x",
        "/user.slice/mesos/x",
    ] {
        let proc = FakeProc::new().with(PID, &format!("11:cpu:{cgroup}\n0::/\n"));
        let node = proc.node();
        let found = node.discover(&answer).unwrap();
        assert!(found.tasks.is_empty(), "{cgroup}: {found:?}");
        let reason = SkipReason::OutsideCgroupsRoot {
            pid: PID,
            cgroup: cgroup.into(),
            root: "mesos".into(),
        };
        assert_eq!(found.skipped[TASK_ID], reason, "{cgroup}");
        assert_eq!(found.warned, vec![TASK_ID.to_owned()]);
        assert!(
            reason
                .to_string()
                .contains("not below /mesos/ (cgroups_root)"),
            "{reason}"
        );
        // Once per task: not again while it stays there.
        assert!(
            node.discover(&answer).unwrap().warned.is_empty(),
            "{cgroup}"
        );
    }
    // Another root, given with or without slashes.
    let proc = FakeProc::new().with(PID, "0::/agent/mesos/c1\n");
    for root in ["agent/mesos", "/agent/mesos/"] {
        let node = MesosNode {
            cgroups_root: root.into(),
            ..proc.node()
        };
        let found = node.discover(&answer).unwrap();
        assert_eq!(found.tasks[0].cgroup_path, "/agent/mesos/c1", "{root}");
    }
    let found = proc.node().discover(&answer).unwrap();
    assert!(found.tasks.is_empty());
}

#[test]
fn labels_over_the_caps_are_cut_and_reported_once() {
    let proc = FakeProc::mesos();
    let node = proc.node();
    let long_value = "ż".repeat(MAX_LABEL_VALUE_BYTES); // two bytes each
    let answer = edited(|t| {
        let labels = t["labels"]["labels"].as_array_mut().unwrap();
        labels.insert(
            0,
            json!({"key": "k".repeat(MAX_LABEL_KEY_BYTES + 1), "value": "x"}),
        );
        labels.insert(1, json!({"key": "long", "value": long_value}));
        for i in 0..MAX_LABELS {
            labels.push(json!({"key": format!("extra{i}"), "value": "v"}));
        }
        // Beyond the cap even a wrong type is not looked at.
        labels.push(json!(3));
    });
    let found = node.discover(&answer).unwrap();
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    let task = &found.tasks[0];
    // 64 taken: one dropped for its key, plus the initial_task_cpu_assignment label.
    assert_eq!(task.labels.len(), MAX_LABELS - 1 + 1, "{:?}", task.labels);
    assert_eq!(task.labels["aurora_tier"], "preemptible");
    let value = &task.labels["long"];
    assert_eq!(value.len(), MAX_LABEL_VALUE_BYTES);
    assert!(long_value.starts_with(value.as_str()));
    let cut = LabelsCut {
        over_count: 6 + 2 + MAX_LABELS + 1 - MAX_LABELS,
        long_keys: 1,
        long_values: 1,
    };
    assert_eq!(found.cut[TASK_ID], cut);
    let problems = node.take_problems();
    assert_eq!(
        problems,
        vec![MesosTaskError::LabelsCut {
            task_id: TASK_ID.into(),
            cut
        }]
    );
    assert_eq!(
        problems[0].to_string(),
        format!(
            "Mesos task {TASK_ID}: labels over the caps: 9 labels beyond the first 64 dropped, \
             1 labels with a key over 128 bytes dropped, 1 values cut to 1024 bytes"
        )
    );
    assert!(node.take_problems().is_empty());
    // The same cut again is not reported again; a task without cut is not reported.
    node.discover(&answer).unwrap();
    node.discover(&fixture("mesos_get_state.json")).unwrap();
    assert!(node.take_problems().is_empty());
}

#[test]
fn bytes_that_are_not_utf8_cost_only_their_strings() {
    let mut body = serde_json::to_vec(&edited(|t| {
        t["labels"]["labels"][0]["value"] = json!("pre@@@emptible");
    }))
    .unwrap();
    let at = body.windows(3).position(|w| w == b"@@@").unwrap();
    body[at..at + 3].copy_from_slice(&[0xff, 0xfe, 0xc3]);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    let found = FakeProc::mesos()
        .node()
        .discover_text("http://agent/api/v1", &body)
        .unwrap();
    assert_eq!(
        found.tasks[0].labels["aurora_tier"],
        "pre\u{fffd}\u{fffd}\u{fffd}emptible"
    );
    // Outside a string it is still not JSON.
    let err = FakeProc::mesos()
        .node()
        .discover_text("http://agent/api/v1", b"{\"get_state\": \xff}")
        .unwrap_err();
    assert!(matches!(err, MesosError::NotJson { .. }), "{err}");
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
