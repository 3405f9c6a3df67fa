//! Task labels: OWCA's names, the caps on count and size, and bytes that are not UTF-8.

use super::*;

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
