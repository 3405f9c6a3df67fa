//! Label and metric name rules (Prometheus' data model, which every output shares).

/// Label names that neither a task's own labels nor `extra_labels` may take: the
/// Prometheus histogram and summary labels and the task's id.
pub const RESERVED_LABELS: [&str; 3] = ["le", "quantile", "task_id"];

/// Whether `name` is a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid, non-reserved label name: `[a-zA-Z_][a-zA-Z0-9_]*` not
/// starting with `__` (reserved for Prometheus' internal labels).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Turns any string (e.g. a Mesos task label key such as `org.apache.aurora.tier`) into a
/// valid label name: invalid characters become `_`, a leading digit gets a `_` prefix, and
/// a reserved leading `__...` is shortened to one `_`. The empty string becomes `_`.
pub fn sanitize_label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    let leading = out.len() - out.trim_start_matches('_').len();
    if leading > 1 {
        out.drain(..leading - 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_label_names() {
        assert_eq!(
            sanitize_label_name("org.apache.aurora.tier"),
            "org_apache_aurora_tier"
        );
        assert_eq!(sanitize_label_name("9lives"), "_9lives");
        assert_eq!(sanitize_label_name("__meta"), "_meta");
        assert_eq!(sanitize_label_name("..x"), "_x");
        assert_eq!(sanitize_label_name("ok_Name1"), "ok_Name1");
        assert_eq!(sanitize_label_name("zażółć"), "za____");
        assert_eq!(sanitize_label_name(""), "_");
        for s in ["org.apache.aurora.tier", "9lives", "__meta", "", "-", "a b"] {
            assert!(is_valid_label_name(&sanitize_label_name(s)), "{s:?}");
        }
    }
}
