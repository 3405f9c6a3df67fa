//! Reads Prometheus text exposition format 0.0.4 back into [`Metric`]s: what `owca top`
//! does with a running agent's `/metrics`. It sits beside the encoder ([`super::prometheus`])
//! because only `storage` knows output formats; the console view then sees the same
//! samples whether they came from the agent's own loop or over HTTP.
//!
//! Strict about syntax (a malformed line is an error naming its number), lenient about
//! meaning: families of types it does not model (summary, untyped) are read as gauges,
//! one family per sample name; HELP texts are not kept.

use std::{borrow::Cow, sync::Arc};

use rustc_hash::FxHashMap as HashMap;

use crate::metrics::{Labels, Metric, MetricType, names};

/// A line of the text that is not valid exposition format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ReadError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads every sample of `text`, in order. Histogram samples (`a_bucket`, `a_sum`,
/// `a_count` of a family `a` typed `histogram`) come back as family `a` with their suffix,
/// as the agent made them; timestamps are ignored. Text written with `task_labels: info`
/// comes back as with the default: each `task_info` sample's labels are given to the
/// samples of its `task_id`, and the `task_info` samples are left out.
pub fn read(text: &str) -> Result<Vec<Metric>, ReadError> {
    let mut out = read_samples(text)?;
    join_task_info(&mut out);
    Ok(out)
}

/// Moves the labels of `task_info` samples onto the samples with the same `task_id`; a
/// sample's own labels win.
fn join_task_info(samples: &mut Vec<Metric>) {
    let info: HashMap<String, Arc<Labels>> = samples
        .iter()
        .filter(|m| m.name == names::TASK_INFO)
        .filter_map(|m| {
            Some((
                m.label(names::TASK_ID_LABEL)?.to_owned(),
                Arc::clone(&m.labels),
            ))
        })
        .collect();
    if info.is_empty() {
        return;
    }
    samples.retain(|m| m.name != names::TASK_INFO);
    for m in samples {
        let Some(task) = m.label(names::TASK_ID_LABEL).and_then(|id| info.get(id)) else {
            continue;
        };
        let task = Arc::clone(task);
        let own = Arc::make_mut(&mut m.labels);
        for (k, v) in task.iter() {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn read_samples(text: &str) -> Result<Vec<Metric>, ReadError> {
    let mut types: HashMap<String, MetricType> = HashMap::default();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |reason: &str| ReadError {
            line: i + 1,
            reason: reason.to_owned(),
        };
        let line = line.trim_start();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                    return Err(err("TYPE needs a metric name and a type"));
                };
                let kind = match kind {
                    "counter" => MetricType::Counter,
                    "histogram" => MetricType::Histogram,
                    "gauge" | "summary" | "untyped" => MetricType::Gauge,
                    other => return Err(err(&format!("unknown metric type {other:?}"))),
                };
                types.insert(name.to_owned(), kind);
            }
            continue;
        }
        out.push(sample(line, &types).map_err(|reason| err(&reason))?);
    }
    Ok(out)
}

/// One sample line: `name[{labels}] value [timestamp]`.
fn sample(line: &str, types: &HashMap<String, MetricType>) -> Result<Metric, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("a sample line must start with a metric name".to_owned());
    }
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = read_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value after the metric name")?;
    let value = parse_value(value).ok_or_else(|| format!("value {value:?} is not a number"))?;
    if fields.nth(1).is_some() {
        return Err("text after the value and timestamp".to_owned());
    }
    let (family, suffix, kind) = family_of(name, types);
    Ok(Metric {
        name: Cow::Owned(family.to_owned()),
        suffix,
        labels: Arc::new(labels),
        shared: None,
        value,
        kind,
        help: "",
    })
}

/// The family, suffix and type of sample `name`.
fn family_of<'a>(
    name: &'a str,
    types: &HashMap<String, MetricType>,
) -> (&'a str, &'static str, MetricType) {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base) == Some(&MetricType::Histogram)
        {
            return (base, suffix, MetricType::Histogram);
        }
    }
    let kind = types.get(name).copied().unwrap_or(MetricType::Gauge);
    // A histogram family's bare name has no samples of its own; read one as a gauge.
    let kind = if kind == MetricType::Histogram {
        MetricType::Gauge
    } else {
        kind
    };
    (name, "", kind)
}

/// Reads `a="x",b="y"}` into `labels` and returns what follows the `}`.
fn read_labels<'a>(mut text: &'a str, labels: &mut Labels) -> Result<&'a str, String> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, rest) = text.split_once('=').ok_or("a label needs name=\"value\"")?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label name {name:?}"));
        }
        let rest = rest
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}: the value must be quoted"))?;
        let (value, rest) =
            read_quoted(rest).ok_or_else(|| format!("label {name}: no closing quote"))?;
        labels.insert(name.to_owned(), value);
        let rest = rest.trim_start();
        text = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.starts_with('}') => rest,
            None => {
                return Err(format!(
                    "label {name}: expected ',' or '}}' after the value"
                ));
            }
        };
    }
}

/// Unescapes a label value up to its closing quote; returns it and what follows.
fn read_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// A sample value as Go's parser reads it: a float, `NaN`, `+Inf` or `-Inf`.
fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok().filter(|x: &f64| x.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::prometheus::encode;

    #[test]
    fn reads_back_what_the_encoder_writes() {
        let shared = Arc::new(Labels::from([("host".into(), "a \"b\"\\\nc".into())]));
        let metrics = vec![
            Metric::counter("task_oncpu_seconds_total", "On CPU.", 1.5)
                .with_label("task_id", "t1")
                .with_shared(&shared),
            Metric {
                suffix: "_bucket",
                kind: MetricType::Histogram,
                ..Metric::gauge("h", "H.", 3.0).with_label("le", "+Inf")
            },
            Metric {
                suffix: "_sum",
                kind: MetricType::Histogram,
                ..Metric::gauge("h", "H.", 0.25)
            },
            Metric::gauge("g", "", f64::NAN),
        ];
        let read = read(&encode(&metrics).text).unwrap();
        assert_eq!(read.len(), 4);
        assert_eq!(read[0].name, "task_oncpu_seconds_total");
        assert_eq!(read[0].kind, MetricType::Counter);
        assert_eq!(read[0].label("host"), Some("a \"b\"\\\nc"));
        assert_eq!(read[0].value, 1.5);
        assert_eq!((&*read[1].name, read[1].suffix), ("h", "_bucket"));
        assert_eq!(read[1].label("le"), Some("+Inf"));
        assert_eq!((read[2].suffix, read[2].value), ("_sum", 0.25));
        assert!(read[3].value.is_nan());
    }

    #[test]
    fn timestamps_untyped_families_and_trailing_commas() {
        let read =
            read("x_total{a=\"1\",} 2 1700000000000\n  \n# free comment\ny_sum 4\n").unwrap();
        assert_eq!(read[0].labels["a"], "1");
        assert_eq!(read[0].kind, MetricType::Gauge);
        assert_eq!((&*read[1].name, read[1].suffix), ("y_sum", ""));
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, needle) in [
            (
                "ok 1\nbad{a=1} 2\n",
                "line 2: label a: the value must be quoted",
            ),
            ("a{b=\"c} 1\n", "line 1: label b: no closing quote"),
            ("a 1 2 3\n", "line 1: text after"),
            ("a one\n", "line 1: value \"one\" is not a number"),
            ("{a=\"b\"} 1\n", "line 1: a sample line must start"),
            ("# TYPE a sometimes\n", "line 1: unknown metric type"),
            ("a\n", "line 1: no value"),
        ] {
            let e = read(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
