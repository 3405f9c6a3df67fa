//! `task_labels: info`: a task's labels once on `task_info`, only `task_id` elsewhere.

use std::sync::Arc;

use super::{histogram, promtool_check};
use crate::{
    metrics::{Labels, Metric},
    storage::{
        prometheus::{Encoder, TaskLabels, encode},
        prometheus_reader,
    },
};

fn set(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// Two tasks' samples (one with an own label, one a histogram) and a node sample.
fn package(t1: &Arc<Labels>, t2: &Arc<Labels>, node: &Arc<Labels>) -> Vec<Metric> {
    vec![
        Metric::counter("task_oncpu_seconds_total", "On CPU.", 1.5).with_shared(t1),
        Metric::counter("task_context_switches_total", "Switches.", 7.0)
            .with_label("kind", "voluntary")
            .with_shared(t1),
        histogram(
            "task_runqueue_latency_seconds",
            "_bucket",
            Some("+Inf"),
            3.0,
        )
        .with_shared(t1),
        histogram("task_runqueue_latency_seconds", "_sum", None, 0.5).with_shared(t1),
        histogram("task_runqueue_latency_seconds", "_count", None, 3.0).with_shared(t1),
        Metric::counter("task_oncpu_seconds_total", "On CPU.", 2.0).with_shared(t2),
        Metric::gauge("memory_usage", "Node memory.", 1024.0).with_shared(node),
    ]
}

fn labels() -> (Arc<Labels>, Arc<Labels>, Arc<Labels>) {
    (
        set(&[
            ("task_id", "t1"),
            ("host", "node-1"),
            ("application", "cassandra \"db\""),
        ]),
        set(&[
            ("task_id", "t2"),
            ("host", "node-1"),
            ("application", "ycsb"),
        ]),
        set(&[("host", "node-1")]),
    )
}

const INFO_TEXT: &str = r#"# HELP task_oncpu_seconds_total On CPU.
# TYPE task_oncpu_seconds_total counter
task_oncpu_seconds_total{task_id="t1"} 1.5
task_oncpu_seconds_total{task_id="t2"} 2
# HELP task_context_switches_total Switches.
# TYPE task_context_switches_total counter
task_context_switches_total{kind="voluntary",task_id="t1"} 7
# HELP task_runqueue_latency_seconds Run queue latency.
# TYPE task_runqueue_latency_seconds histogram
task_runqueue_latency_seconds_bucket{le="+Inf",task_id="t1"} 3
task_runqueue_latency_seconds_sum{task_id="t1"} 0.5
task_runqueue_latency_seconds_count{task_id="t1"} 3
# HELP memory_usage Node memory.
# TYPE memory_usage gauge
memory_usage{host="node-1"} 1024
"#;

#[test]
fn task_labels_are_written_once_on_task_info() {
    let (t1, t2, node) = labels();
    let encoded = Encoder::new(TaskLabels::Info).encode(&package(&t1, &t2, &node));
    let info = "# HELP task_info The labels of a task, always 1. With task_labels: info the task's other samples carry only task_id: join them with * on(task_id) group_left(...) task_info.\n\
                # TYPE task_info gauge\n\
                task_info{application=\"cassandra \\\"db\\\"\",host=\"node-1\",task_id=\"t1\"} 1\n\
                task_info{application=\"ycsb\",host=\"node-1\",task_id=\"t2\"} 1\n";
    assert_eq!(encoded.text, format!("{INFO_TEXT}{info}"));
    assert_eq!(encoded.dropped(), 0);
    let (code, output) = promtool_check(&encoded.text);
    assert_eq!(code, Some(0), "promtool check metrics failed:\n{output}");

    // The default writes them on every sample, as before.
    let every = Encoder::new(TaskLabels::EverySample).encode(&package(&t1, &t2, &node));
    assert_eq!(every, encode(&package(&t1, &t2, &node)));
    assert!(!every.text.contains("task_info"));
    assert!(every.text.contains(
        "task_oncpu_seconds_total{application=\"ycsb\",host=\"node-1\",task_id=\"t2\"} 2\n"
    ));
}

/// `owca top` reads either form back as the same samples.
#[test]
fn the_reader_joins_task_info_back() {
    let (t1, t2, node) = labels();
    let info = Encoder::new(TaskLabels::Info).encode(&package(&t1, &t2, &node));
    let every = encode(&package(&t1, &t2, &node));
    let seen = |text: &str| -> Vec<(String, &'static str, Labels, f64)> {
        prometheus_reader::read(text)
            .unwrap()
            .into_iter()
            .map(|m| (m.name.to_string(), m.suffix, (*m.labels).clone(), m.value))
            .collect()
    };
    let joined = seen(&info.text);
    assert_eq!(joined, seen(&every.text));
    assert_eq!(joined.len(), 7);
    assert_eq!(joined[2].2["application"], "cassandra \"db\"");
}

#[test]
fn a_kept_encoder_drops_gone_tasks_from_task_info() {
    let (t1, t2, node) = labels();
    let mut encoder = Encoder::new(TaskLabels::Info);
    assert!(
        encoder
            .encode(&package(&t1, &t2, &node))
            .text
            .contains("task_id=\"t2\"} 1\n")
    );
    let t1_only = package(&t1, &t2, &node)
        .into_iter()
        .filter(|m| m.label("task_id") != Some("t2"))
        .collect::<Vec<_>>();
    let text = encoder.encode(&t1_only).text;
    assert!(!text.contains("t2"), "{text}");
    assert_eq!(text.matches("task_info{").count(), 1);
    // The same task again, rendered anew, is written as at first.
    assert_eq!(
        encoder.encode(&package(&t1, &t2, &node)).text,
        Encoder::new(TaskLabels::Info)
            .encode(&package(&t1, &t2, &node))
            .text
    );
}

#[test]
fn equal_sets_give_one_task_info_and_one_task_id_one_series() {
    let (t1, _, _) = labels();
    let t1_again = Arc::new((*t1).clone());
    let t1_relabelled = set(&[("task_id", "t1"), ("application", "other")]);
    let metrics = [
        Metric::gauge("g", "h", 1.0).with_shared(&t1),
        Metric::gauge("g", "h", 2.0).with_shared(&t1_again),
        Metric::gauge("g", "h", 3.0).with_shared(&t1_relabelled),
    ];
    let encoded = Encoder::new(TaskLabels::Info).encode(&metrics);
    // Written as g{task_id="t1"}, all three are one series: the first is kept.
    assert_eq!(encoded.duplicates, 2);
    assert_eq!(encoded.text.matches("g{task_id=\"t1\"}").count(), 1);
    // Two different label sets of t1: both are told, the equal ones once.
    assert_eq!(
        encoded.text.matches("task_info{").count(),
        2,
        "{}",
        encoded.text
    );
    let (code, output) = promtool_check(&encoded.text);
    assert_eq!(code, Some(0), "promtool check metrics failed:\n{output}");
}

#[test]
fn an_own_task_info_family_is_dropped_and_an_own_task_id_wins() {
    let (t1, _, _) = labels();
    let metrics = [
        Metric::gauge("task_info", "a plug-in's", 1.0).with_label("task_id", "x"),
        Metric::gauge("g", "h", 1.0)
            .with_label("task_id", "mine")
            .with_shared(&t1),
    ];
    let encoded = Encoder::new(TaskLabels::Info).encode(&metrics);
    assert_eq!(encoded.type_conflicts, 1);
    assert!(
        encoded.text.contains("g{task_id=\"mine\"} 1\n"),
        "{}",
        encoded.text
    );
    assert!(!encoded.text.contains("a plug-in's"));
    // Without the mode the name is anybody's.
    assert_eq!(encode(&metrics).dropped(), 0);
}

/// What the mode is for: at a thousand tasks with Mesos labels, a fraction of the bytes.
#[test]
fn info_writes_a_fraction_of_the_bytes_for_labelled_tasks() {
    let tasks: Vec<Arc<Labels>> = (0..100)
        .map(|i| {
            let id =
                format!("root-staging14-cassandra--{i}-0-9ee9fbf1-b51b-4bb3-9748-6a4327fd7e0e");
            set(&[
                ("task_id", &id),
                ("application", "cassandra"),
                ("aurora_tier", "preemptible"),
                ("cpu_model", "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"),
                ("env_uniq_id", "14"),
                ("host", "node-17.dc1"),
                ("initial_task_cpu_assignment", "8.0"),
                ("name", &format!("cassandra--{i}")),
                ("owca_version", "0.1.0"),
            ])
        })
        .collect();
    let metrics: Vec<Metric> = tasks
        .iter()
        .flat_map(|t| (0..20).map(move |s| Metric::gauge(format!("g{s}"), "h", 1.0).with_shared(t)))
        .collect();
    let every = encode(&metrics).text.len();
    let info = Encoder::new(TaskLabels::Info).encode(&metrics).text.len();
    assert!(info * 2 < every, "info {info} bytes, every sample {every}");
}

#[test]
fn the_setting_is_read_from_yaml_and_a_wrong_value_named() {
    use std::path::Path;

    use crate::storage::StorageConfig;
    let load = |text: &str| crate::config::from_str::<StorageConfig>(text, Path::new("owca.yaml"));
    let StorageConfig::LogStorage(c) =
        load("!LogStorage {output_filename: /var/lib/owca/m.prom, task_labels: info}").unwrap()
    else {
        panic!("a LogStorage");
    };
    assert_eq!(c.task_labels, TaskLabels::Info);
    let StorageConfig::PrometheusExporter(c) = load("!PrometheusExporter {}").unwrap() else {
        panic!("a PrometheusExporter");
    };
    assert_eq!(c.task_labels, TaskLabels::EverySample);
    let e = load("!PrometheusExporter {task_labels: once}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("task_labels") && e.contains("every_sample") && e.contains("info"),
        "{e}"
    );
}

#[test]
fn log_storage_writes_the_chosen_form() {
    use crate::storage::{LogStorage, LogStorageConfig, Storage};
    let (t1, t2, node) = labels();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.prom");
    let mut storage = LogStorage::new(LogStorageConfig {
        output_filename: Some(path.clone()),
        overwrite: true,
        task_labels: TaskLabels::Info,
    })
    .unwrap();
    storage.store(&package(&t1, &t2, &node)).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        Encoder::new(TaskLabels::Info)
            .encode(&package(&t1, &t2, &node))
            .text
    );
    assert!(written.starts_with(INFO_TEXT));
}
