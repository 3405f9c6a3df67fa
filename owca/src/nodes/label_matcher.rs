//! Task label patterns as the allocators and detectors take them from a config: label
//! name → regex of its value, matched from the value's start (Python's `re.match`, as in
//! OWCA's rules); a task matches when any of its labels does.

use std::collections::BTreeMap;

use regex::Regex;

/// Label patterns, compiled.
#[derive(Debug, Clone)]
pub struct LabelMatcher(Vec<(String, Regex)>);

/// A pattern that is not a regex.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{label}: {error}")]
pub struct LabelPatternError {
    /// The label whose pattern is wrong.
    pub label: String,
    /// What the regex parser said.
    pub error: String,
}

impl LabelMatcher {
    /// Compiles every pattern, anchored at the value's start.
    pub fn compile(patterns: &BTreeMap<String, String>) -> Result<Self, LabelPatternError> {
        patterns
            .iter()
            .map(|(label, pattern)| {
                Regex::new(&format!("^(?:{pattern})"))
                    .map(|re| (label.clone(), re))
                    .map_err(|e| LabelPatternError {
                        label: label.clone(),
                        error: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether any of the task's labels matches its pattern.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .any(|(name, re)| labels.get(name).is_some_and(|v| re.is_match(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn any_label_matching_from_the_value_start_matches() {
        let m = LabelMatcher::compile(&labels(&[("tier", "best.*"), ("app", "cass")])).unwrap();
        assert!(m.matches(&labels(&[("tier", "best-effort")])));
        assert!(m.matches(&labels(&[("tier", "preferred"), ("app", "cassandra")])));
        assert!(
            !m.matches(&labels(&[("tier", "not-best")])),
            "anchored at the start"
        );
        assert!(!m.matches(&labels(&[("other", "best")])));
        let err = LabelMatcher::compile(&labels(&[("tier", "(")])).unwrap_err();
        assert_eq!(err.label, "tier");
        assert!(err.to_string().starts_with("tier: "), "{err}");
    }
}
