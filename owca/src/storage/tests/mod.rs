//! Tests of the Prometheus encoder; `LogStorage`'s are in `log_storage.rs`.

mod log_storage;
mod task_info;

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::prometheus::{Encoder, encode, format_value};
use crate::metrics::{Metric, MetricType};

fn histogram(name: &'static str, suffix: &'static str, le: Option<&str>, value: f64) -> Metric {
    let mut m = Metric::gauge(name, "Run queue latency.", value);
    m.kind = MetricType::Histogram;
    m.suffix = suffix;
    match le {
        Some(le) => m.with_label("le", le),
        None => m,
    }
}

/// A gauge with labels needing escaping, a counter and a histogram, all lint-clean.
fn representative() -> Vec<Metric> {
    vec![
        Metric::gauge(
            "task_memory_usage_bytes",
            "Memory usage \\ of a task,\nin bytes.",
            1024.0,
        )
        .with_label("task_id", "a\"b\\c\nd")
        .with_label("host", "node1"),
        Metric::counter(
            "task_instructions_total",
            "Instructions retired.",
            12345678901.0,
        )
        .with_label("task_id", "t1"),
        histogram(
            "task_runqueue_latency_seconds",
            "_bucket",
            Some("0.001"),
            3.0,
        )
        .with_label("task_id", "t1"),
        histogram(
            "task_runqueue_latency_seconds",
            "_bucket",
            Some("+Inf"),
            5.0,
        )
        .with_label("task_id", "t1"),
        Metric::gauge("task_memory_usage_bytes", "ignored: not the first", 2048.0)
            .with_label("task_id", "t2"),
        histogram("task_runqueue_latency_seconds", "_sum", None, 0.25).with_label("task_id", "t1"),
        histogram("task_runqueue_latency_seconds", "_count", None, 5.0).with_label("task_id", "t1"),
    ]
}

const REPRESENTATIVE_TEXT: &str = r#"# HELP task_memory_usage_bytes Memory usage \\ of a task,\nin bytes.
# TYPE task_memory_usage_bytes gauge
task_memory_usage_bytes{host="node1",task_id="a\"b\\c\nd"} 1024
task_memory_usage_bytes{task_id="t2"} 2048
# HELP task_instructions_total Instructions retired.
# TYPE task_instructions_total counter
task_instructions_total{task_id="t1"} 12345678901
# HELP task_runqueue_latency_seconds Run queue latency.
# TYPE task_runqueue_latency_seconds histogram
task_runqueue_latency_seconds_bucket{le="0.001",task_id="t1"} 3
task_runqueue_latency_seconds_bucket{le="+Inf",task_id="t1"} 5
task_runqueue_latency_seconds_sum{task_id="t1"} 0.25
task_runqueue_latency_seconds_count{task_id="t1"} 5
"#;

#[test]
fn encodes_gauge_counter_histogram_grouped_by_family() {
    let encoded = encode(&representative());
    assert_eq!(encoded.text, REPRESENTATIVE_TEXT);
    assert_eq!(encoded.dropped(), 0);
}

/// An encoder kept across iterations writes what a fresh one writes, as shared label sets
/// come, change and go; equal sets behind different `Arc`s are still one series.
#[test]
fn a_kept_encoder_writes_what_a_fresh_one_writes() {
    use std::sync::Arc;
    let set = |pairs: &[(&str, &str)]| {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<crate::metrics::Labels>(),
        )
    };
    let (a, b) = (set(&[("task_id", "a")]), set(&[("task_id", "b")]));
    let bad = set(&[("0bad", "x")]);
    let iterations = [
        vec![(&a, 1.0), (&b, 2.0)],
        vec![(&a, 3.0), (&b, 4.0), (&bad, 0.0)],
        vec![(&b, 5.0)],
        vec![(&b, 6.0), (&a, 7.0)],
    ];
    let mut kept = Encoder::default();
    for samples in iterations {
        let mut metrics: Vec<Metric> = samples
            .iter()
            .map(|(labels, v)| Metric::gauge("up", "Up.", *v).with_shared(labels))
            .collect();
        // The same set behind another Arc, and split between own and shared labels.
        metrics.push(Metric::gauge("up", "Up.", 9.0).with_shared(&set(&[("task_id", "b")])));
        metrics.push(Metric::gauge("up", "Up.", 9.0).with_label("task_id", "b"));
        let fresh = encode(&metrics);
        let again = kept.encode(&metrics);
        assert_eq!(again, fresh);
        assert_eq!(again.duplicates, 2, "{}", again.text);
    }
}

/// Megabytes of output are handed on in chunks of about 256 KiB that add up to the text
/// `encode` makes, with the same counts; a failed write stops the encoding.
#[test]
fn chunked_encoding_writes_the_same_text_in_bounded_pieces() {
    use std::sync::Arc;
    let tasks: Vec<Arc<crate::metrics::Labels>> = (0..2000)
        .map(|i| {
            Arc::new(crate::metrics::Labels::from([
                (
                    "task_id".to_owned(),
                    format!("task-{i:04}-{}", "x".repeat(100)),
                ),
                ("host".to_owned(), "node1".to_owned()),
            ]))
        })
        .collect();
    let mut metrics: Vec<Metric> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        for le in ["0.001", "0.01", "+Inf"] {
            metrics.push(histogram("wait", "_bucket", Some(le), i as f64).with_shared(t));
        }
        metrics.push(Metric::gauge("up", "Up.", 1.0).with_shared(t));
    }
    // A duplicate and an invalid sample, to compare the counts.
    metrics.push(Metric::gauge("up", "Up.", 2.0).with_shared(&tasks[0]));
    metrics.push(Metric::gauge("0up", "Up.", 2.0));
    let whole = encode(&metrics);
    assert!(whole.text.len() > 1 << 20, "{} bytes", whole.text.len());

    let mut encoder = Encoder::default();
    for _ in 0..2 {
        let mut chunks: Vec<String> = Vec::new();
        let counts = encoder
            .encode_to(&metrics, |t| {
                chunks.push(t.to_owned());
                Ok(())
            })
            .unwrap();
        assert!(chunks.len() >= 4, "{} chunks", chunks.len());
        assert!(
            chunks
                .iter()
                .all(|c| c.len() < 300 * 1024 && c.ends_with('\n'))
        );
        assert_eq!(chunks.concat(), whole.text);
        assert_eq!(
            (counts.duplicates, counts.invalid, counts.text.as_str()),
            (1, 1, "")
        );
    }

    let mut calls = 0;
    let failed = encoder.encode_to(&metrics, |_| {
        calls += 1;
        Err(std::io::Error::other("disk full"))
    });
    assert_eq!(failed.unwrap_err().to_string(), "disk full");
    assert_eq!(calls, 1);
}

#[test]
fn encodes_nothing_as_empty_text() {
    assert_eq!(encode(&[]).text, "");
}

#[test]
fn drops_duplicate_series_keeping_the_first() {
    let metrics = [
        Metric::gauge("up", "Up.", 1.0).with_label("a", "1"),
        Metric::gauge("up", "Up.", 2.0).with_label("a", "1"),
        Metric::gauge("up", "Up.", 3.0).with_label("a", "2"),
        Metric::gauge("up", "Up.", 4.0).with_label("a", "1"),
    ];
    let encoded = encode(&metrics);
    assert_eq!(
        encoded.text,
        "# HELP up Up.\n# TYPE up gauge\nup{a=\"1\"} 1\nup{a=\"2\"} 3\n"
    );
    assert_eq!(
        (encoded.duplicates, encoded.invalid, encoded.type_conflicts),
        (2, 0, 0)
    );
}

#[test]
fn drops_invalid_names_suffixes_and_le() {
    let metrics = [
        Metric::gauge("1bad", "", 1.0),
        Metric::gauge("bad-name", "", 1.0),
        Metric::gauge("ok", "Ok.", 1.0).with_label("bad.label", "x"),
        Metric::gauge("ok", "Ok.", 1.0).with_label("__reserved", "x"),
        Metric::gauge("ok", "Ok.", 1.0).with_label("9", "x"),
        histogram("h", "", None, 1.0),
        histogram("h", "_bucket", None, 1.0),
        histogram("h", "_bucket", Some("many"), 1.0),
        histogram("h", "_sum", Some("1"), 1.0),
        {
            let mut m = Metric::gauge("g", "", 1.0);
            m.suffix = "_total";
            m
        },
        Metric::gauge("ns:ok_name", "Ok.", 2.0).with_label("_x", "y"),
    ];
    let encoded = encode(&metrics);
    assert_eq!(
        encoded.text,
        "# HELP ns:ok_name Ok.\n# TYPE ns:ok_name gauge\nns:ok_name{_x=\"y\"} 2\n"
    );
    assert_eq!(
        (encoded.duplicates, encoded.invalid, encoded.type_conflicts),
        (0, 10, 0)
    );
}

#[test]
fn keeps_the_first_kind_of_a_family() {
    let metrics = [
        Metric::counter("x_total", "X.", 1.0),
        Metric::gauge("x_total", "X.", 2.0).with_label("a", "b"),
        histogram("x_total", "_sum", None, 3.0),
        Metric::counter("x_total", "X.", 4.0).with_label("a", "b"),
    ];
    let encoded = encode(&metrics);
    assert_eq!(
        encoded.text,
        "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\nx_total{a=\"b\"} 4\n"
    );
    assert_eq!(
        (encoded.duplicates, encoded.invalid, encoded.type_conflicts),
        (0, 0, 2)
    );
}

#[test]
fn formats_values_for_exact_round_trip() {
    let cases = [
        (12345678901.0, "12345678901"),
        (0.0, "0"),
        (-0.0, "0"),
        (-3.0, "-3"),
        (0.1, "0.1"),
        (1.5e-7, "1.5e-7"),
        (1e300, "1e300"),
        (9007199254740993.0, "9007199254740992"),
        (f64::MAX, "1.7976931348623157e308"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ];
    for (value, text) in cases {
        assert_eq!(format_value(value), text, "value {value:?}");
        if value.is_finite() {
            assert_eq!(
                text.parse::<f64>().ok(),
                Some(value),
                "{text} does not round-trip"
            );
        }
    }
}

/// Runs `promtool check metrics` on `text`: (exit code, combined output).
fn promtool_check(text: &str) -> (Option<i32>, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed for this test (Debian package `prometheus`, /usr/bin/promtool): {e}"
        ),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), output)
}

#[test]
fn promtool_accepts_encoded_output() {
    let (code, output) = promtool_check(&encode(&representative()).text);
    assert_eq!(code, Some(0), "promtool check metrics failed:\n{output}");
    assert!(!output.contains("error"), "promtool reported:\n{output}");

    // OWCA's legacy names (counters without `_total`, no unit) only draw lint warnings
    // (exit 3); the text must still parse, with odd values and escapes included.
    let legacy = [
        Metric::counter("instructions", "Instructions.", 1e20).with_label("task", "x\"\\\n"),
        Metric::gauge("cpu_usage_per_task", "", f64::NAN).with_label("cores", "0-3"),
        Metric::gauge("cpu_usage_per_task", "", f64::NEG_INFINITY).with_label("cores", "4"),
        Metric::gauge("memory_usage", "Help with \\ and\nnewline.", 5e-324),
        histogram("latency", "_bucket", Some("1e-6"), 0.0),
        histogram("latency", "_bucket", Some("+Inf"), 1.0),
        histogram("latency", "_sum", None, 1.5e-7),
        histogram("latency", "_count", None, 1.0),
    ];
    let (code, output) = promtool_check(&encode(&legacy).text);
    assert!(
        matches!(code, Some(0 | 3)),
        "promtool exit {code:?}:\n{output}"
    );
    assert!(
        !output.contains("error while linting"),
        "promtool could not parse:\n{output}"
    );
    assert!(
        !output.contains("parsing error"),
        "promtool could not parse:\n{output}"
    );
}

#[test]
fn shared_labels_are_written_once_rendered_and_own_labels_win() {
    use std::sync::Arc;

    use crate::metrics::Labels;
    let task: Arc<Labels> = Arc::new(
        [("task_id", "t1"), ("host", "n\"1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
    );
    let same_content = Arc::new((*task).clone());
    let metrics = vec![
        Metric::counter("c", "h", 1.0).with_shared(&task),
        Metric::counter("c", "h", 2.0)
            .with_label("kind", "x")
            .with_shared(&task),
        // Same series as the first, through another Arc: a duplicate.
        Metric::counter("c", "h", 3.0).with_shared(&same_content),
        // An own label replaces the shared one of the same name.
        Metric::gauge("g", "h", 4.0)
            .with_label("host", "mine")
            .with_shared(&task),
    ];
    let e = encode(&metrics);
    assert_eq!(e.duplicates, 1);
    assert_eq!(
        e.text,
        "# HELP c h\n# TYPE c counter\nc{host=\"n\\\"1\",task_id=\"t1\"} 1\nc{kind=\"x\",host=\"n\\\"1\",task_id=\"t1\"} 2\n\
         # HELP g h\n# TYPE g gauge\ng{host=\"mine\",task_id=\"t1\"} 4\n"
    );
    assert_eq!(metrics[3].label("host"), Some("mine"));
    assert_eq!(metrics[3].label("task_id"), Some("t1"));
    let bad: Arc<Labels> = Arc::new([("__bad".to_owned(), "v".to_owned())].into());
    assert_eq!(
        encode(&[Metric::gauge("g", "h", 1.0).with_shared(&bad)]).invalid,
        1
    );
}

/// Found with the strict reader of the prometheus_encode fuzz target: samples the encoder
/// wrote that the Go parser refuses; each must be dropped and counted instead.
#[test]
fn drops_samples_the_go_parser_would_refuse() {
    use std::sync::Arc;

    use crate::metrics::Labels;
    // A shared `le` (a tenant's label) lands on a histogram's `_sum` and `_count`.
    let shared_le: Arc<Labels> = Arc::new([("le".to_owned(), "x".to_owned())].into());
    // `-nan` is a float to Rust, not to Go's ParseFloat.
    let metrics = [
        histogram("a", "_bucket", Some("1"), 1.0).with_shared(&shared_le),
        histogram("a", "_sum", None, 1.0).with_shared(&shared_le),
        histogram("a", "_count", None, 1.0).with_shared(&shared_le),
        histogram("b", "_bucket", Some("-nan"), 1.0),
        histogram("b", "_bucket", Some("+Inf"), 1.0),
    ];
    let encoded = encode(&metrics);
    let (code, output) = promtool_check(&encoded.text);
    assert!(
        matches!(code, Some(0 | 3)),
        "promtool exit {code:?}:\n{output}\n{}",
        encoded.text
    );
    assert!(!output.contains("error"), "promtool reported:\n{output}");
    assert_eq!(
        encoded.text,
        "# HELP a Run queue latency.\n# TYPE a histogram\na_bucket{le=\"1\"} 1\n\
         # HELP b Run queue latency.\n# TYPE b histogram\nb_bucket{le=\"+Inf\"} 1\n"
    );
    assert_eq!(encoded.invalid, 3);
}

/// Found with the strict reader of the prometheus_encode fuzz target: a family named like
/// a histogram's samples (`a_sum` beside histogram `a`) makes the Go parser read its HELP as
/// the histogram's second one. The family that appears later is dropped and counted.
#[test]
fn drops_a_family_whose_name_is_a_histogram_sample_name() {
    let metrics = [
        histogram("a", "_bucket", Some("+Inf"), 1.0),
        histogram("a", "_sum", None, 1.0),
        histogram("a", "_count", None, 1.0),
        Metric::gauge("a_sum", "Other.", 2.0).with_label("x", "1"),
        Metric::gauge("b_count", "Other.", 3.0),
        histogram("b", "_bucket", Some("+Inf"), 1.0),
        Metric::gauge("c_sum", "Other.", 4.0),
        Metric::gauge("c", "Not a histogram.", 5.0),
    ];
    let encoded = encode(&metrics);
    let (code, output) = promtool_check(&encoded.text);
    assert!(
        matches!(code, Some(0 | 3)),
        "promtool exit {code:?}:\n{output}\n{}",
        encoded.text
    );
    assert!(!output.contains("error"), "promtool reported:\n{output}");
    assert_eq!(
        encoded.text,
        "# HELP a Run queue latency.\n# TYPE a histogram\na_bucket{le=\"+Inf\"} 1\na_sum 1\na_count 1\n\
         # HELP b_count Other.\n# TYPE b_count gauge\nb_count 3\n\
         # HELP c_sum Other.\n# TYPE c_sum gauge\nc_sum 4\n\
         # HELP c Not a histogram.\n# TYPE c gauge\nc 5\n"
    );
    assert_eq!(encoded.type_conflicts, 2);
}

/// Found with the strict reader of the prometheus_encode fuzz target: the same series
/// written twice, its labels once own and once shared (or split differently).
#[test]
fn drops_duplicate_series_whatever_labels_are_own_or_shared() {
    use std::sync::Arc;

    use crate::metrics::Labels;
    let labels = |pairs: &[(&str, &str)]| -> Arc<Labels> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    let a = labels(&[("a", "1")]);
    let ab = labels(&[("a", "1"), ("b", "2")]);
    let a_b3 = labels(&[("a", "1"), ("b", "3")]);
    let metrics = [
        Metric::gauge("up", "Up.", 1.0).with_label("a", "1"),
        Metric::gauge("up", "Up.", 2.0).with_shared(&a),
        Metric::gauge("up", "Up.", 3.0).with_shared(&ab),
        Metric::gauge("up", "Up.", 4.0)
            .with_label("b", "2")
            .with_shared(&a),
        Metric::gauge("up", "Up.", 5.0)
            .with_label("b", "2")
            .with_shared(&a_b3),
        Metric::gauge("up", "Up.", 6.0)
            .with_label("b", "3")
            .with_shared(&ab),
        Metric::gauge("up", "Up.", 7.0)
            .with_label("c", "3")
            .with_shared(&ab),
    ];
    let encoded = encode(&metrics);
    assert_eq!(
        encoded.text,
        "# HELP up Up.\n# TYPE up gauge\nup{a=\"1\"} 1\nup{a=\"1\",b=\"2\"} 3\n\
         up{b=\"3\",a=\"1\"} 6\nup{c=\"3\",a=\"1\",b=\"2\"} 7\n"
    );
    assert_eq!(encoded.duplicates, 3);
}
