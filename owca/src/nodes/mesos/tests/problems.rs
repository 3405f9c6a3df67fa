//! Tasks that cannot be measured: each skip reason, the warn-once rule, broken answers,
//! and executors outside the cgroups root.

use super::*;

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
