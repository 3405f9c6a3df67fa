//! `!StaticAllocator`: allocations from rules matched against task ids and labels, given
//! inline (`rules`) or in a YAML file (`config`) re-read every iteration so that it can be
//! edited live. A broken edit is reported and the last good rules stay in force.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use thiserror::Error;
use tracing::info;

use super::{TaskAllocations, TasksAllocations};
use crate::{config::ConfigError, measurements::Observation, nodes::LabelMatcher};

/// `!StaticAllocator`'s fields: `rules` or `config`, not both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAllocatorConfig {
    /// Rules given in the agent's config.
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    /// A YAML file holding a list of rules, re-read every iteration.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// One rule, OWCA's format. Which tasks it matches: the one with `task_id`; else those
/// with at least one of `labels` whose value the regex matches from its start (OWCA's
/// `re.match`: any listed label suffices); else every task. Later rules are merged over
/// earlier ones, type by type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Matches this task only.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Label name → regex of its value.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// What matching tasks get.
    #[serde(default)]
    pub allocations: TaskAllocations,
}

/// Why rules could not be used; the last good ones stay in force.
#[derive(Debug, Error)]
pub enum StaticAllocatorError {
    /// The rules file could not be read.
    #[error("reading StaticAllocator rules {}: {source}", path.display())]
    Read {
        /// The rules file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a list of rules; the message has file, line and field.
    #[error("StaticAllocator rules: {0}")]
    Parse(#[from] ConfigError),
    /// A label pattern is not a regex.
    #[error("StaticAllocator rules {source_name}: rule {index} ({rule}): labels.{label}: {error}")]
    Regex {
        /// The rules file, or `rules` for inline ones.
        source_name: String,
        /// 0-based position of the rule.
        index: usize,
        /// The rule's name, or `unnamed`.
        rule: String,
        /// The label whose pattern is wrong.
        label: String,
        /// What the regex parser said.
        error: String,
    },
    /// Both `rules` and `config` given.
    #[error("StaticAllocator: give either rules or config, not both")]
    Ambiguous,
}

/// A rule with its label patterns compiled.
#[derive(Debug, Clone)]
struct Compiled {
    task_id: Option<String>,
    labels: Option<LabelMatcher>,
    allocations: TaskAllocations,
}

/// The running allocator.
#[derive(Debug)]
pub struct StaticAllocator {
    file: Option<PathBuf>,
    /// The text the current rules came from, so an unchanged file is not parsed again.
    last_text: Option<String>,
    rules: Vec<Compiled>,
}

impl StaticAllocator {
    /// Compiles inline rules now; a rules file is first read on the first iteration.
    pub fn new(cfg: StaticAllocatorConfig) -> Result<Self, StaticAllocatorError> {
        let rules = match (cfg.rules, &cfg.config) {
            (Some(_), Some(_)) => return Err(StaticAllocatorError::Ambiguous),
            (Some(rules), None) => compile(&rules, "rules")?,
            (None, _) => Vec::new(),
        };
        Ok(Self {
            file: cfg.config,
            last_text: None,
            rules,
        })
    }

    /// Rereads the rules file when there is one (an error leaves the rules as they were),
    /// then the allocations the rules give the observed tasks.
    pub fn allocate(
        &mut self,
        obs: &Observation,
    ) -> (TasksAllocations, Option<StaticAllocatorError>) {
        let problem = match self.file.clone() {
            Some(path) => self.reload(&path).err(),
            None => None,
        };
        (self.apply(obs), problem)
    }

    fn reload(&mut self, path: &Path) -> Result<(), StaticAllocatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| StaticAllocatorError::Read {
            path: path.to_owned(),
            source,
        })?;
        if self.last_text.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        // An empty file is YAML null, i.e. no rules.
        let rules: Option<Vec<Rule>> = crate::config::from_str(&text, path)?;
        self.rules = compile(&rules.unwrap_or_default(), &path.display().to_string())?;
        info!(file = %path.display(), rules = self.rules.len(), "StaticAllocator rules loaded");
        self.last_text = Some(text);
        Ok(())
    }

    fn apply(&self, obs: &Observation) -> TasksAllocations {
        let mut out = TasksAllocations::new();
        for rule in &self.rules {
            for (task_id, task) in &obs.tasks {
                let matches = match (&rule.task_id, &rule.labels) {
                    (Some(id), _) => id == task_id,
                    (None, Some(labels)) => labels.matches(&task.labels),
                    (None, None) => true,
                };
                if matches {
                    out.entry(task_id.clone())
                        .or_default()
                        .merge(&rule.allocations);
                }
            }
        }
        out.retain(|_, a| !a.is_empty());
        out
    }
}

/// Compiles each label pattern anchored at the start, as Python's `re.match`.
fn compile(rules: &[Rule], source_name: &str) -> Result<Vec<Compiled>, StaticAllocatorError> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let labels = rule
                .labels
                .as_ref()
                .map(LabelMatcher::compile)
                .transpose()
                .map_err(|e| StaticAllocatorError::Regex {
                    source_name: source_name.to_owned(),
                    index,
                    rule: rule.name.clone().unwrap_or_else(|| "unnamed".into()),
                    label: e.label,
                    error: e.error,
                })?;
            Ok(Compiled {
                task_id: rule.task_id.clone(),
                labels,
                allocations: rule.allocations.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurements::{PlatformData, TaskData};

    fn observation(tasks: &[(&str, &[(&str, &str)])]) -> Observation {
        let tasks = tasks
            .iter()
            .map(|(id, labels)| {
                let labels = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                (
                    (*id).to_owned(),
                    TaskData::test_task(Default::default(), labels),
                )
            })
            .collect();
        Observation {
            platform: PlatformData::test_node(0.0),
            tasks,
        }
    }

    fn rules(yaml: &str) -> StaticAllocatorConfig {
        crate::config::from_str(yaml, Path::new("s.yaml")).unwrap()
    }

    #[test]
    fn later_rules_merge_over_earlier_ones() {
        let mut a = StaticAllocator::new(rules(
            "rules:
  - name: everyone
    allocations: {cpu_quota: 1.0, cpu_shares: 10}
  - name: cassandra
    labels: {application: 'cass', env: 'x$'}
    allocations: {cpu_quota: 0.3, cpu_set: '0'}
  - task_id: b
    allocations: {cpu_shares: 0.5}
  - task_id: gone
    allocations: {cpu_shares: 0.5}
",
        ))
        .unwrap();
        let obs = observation(&[
            ("a", &[("application", "cassandra")]),
            ("b", &[("application", "redis"), ("env", "prod")]),
            ("c", &[("application", "xcass")]),
        ]);
        let (got, problem) = a.allocate(&obs);
        assert!(problem.is_none());
        assert_eq!(got.len(), 3, "rules for absent tasks give nothing: {got:?}");
        assert_eq!(got["a"].cpu_quota, Some(0.3));
        assert_eq!(got["a"].cpu_shares, Some(10.0));
        assert_eq!(got["a"].cpu_set.as_deref(), Some("0"));
        assert_eq!(
            got["b"].cpu_quota,
            Some(1.0),
            "env 'x$' does not match prod"
        );
        assert_eq!(got["b"].cpu_shares, Some(0.5));
        assert_eq!(got["c"].cpu_quota, Some(1.0), "matched from the start only");
    }

    #[test]
    fn bad_patterns_and_both_sources_are_refused() {
        let err = StaticAllocator::new(rules(
            "rules: [{name: r, labels: {app: '('}, allocations: {cpu_quota: 0.5}}]",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("rule 0 (r): labels.app"), "{err}");
        let both = StaticAllocator::new(rules("rules: []\nconfig: x.yaml\n")).unwrap_err();
        assert!(matches!(both, StaticAllocatorError::Ambiguous));
        let err = crate::config::from_str::<StaticAllocatorConfig>(
            "rules: [{allocations: {cpu_quota: 0.5, memory: 1}}]",
            Path::new("s.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rules[0].allocations.memory: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn the_rules_file_is_reread_and_a_broken_edit_keeps_the_last_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.yaml");
        let mut a = StaticAllocator::new(StaticAllocatorConfig {
            rules: None,
            config: Some(file.clone()),
        })
        .unwrap();
        let obs = observation(&[("a", &[])]);
        let (got, problem) = a.allocate(&obs);
        assert!(got.is_empty());
        assert!(
            problem.unwrap().to_string().contains("rules.yaml"),
            "a missing file is reported"
        );
        std::fs::write(&file, "- allocations: {cpu_quota: 0.5}\n").unwrap();
        assert_eq!(a.allocate(&obs).0["a"].cpu_quota, Some(0.5));
        std::fs::write(&file, "- allocations: {cpu_quota: 0.5\n").unwrap();
        let (got, problem) = a.allocate(&obs);
        assert_eq!(got["a"].cpu_quota, Some(0.5), "last good rules");
        assert!(problem.unwrap().to_string().contains("rules.yaml:"));
        std::fs::write(&file, "- allocations: {cpu_quota: 0.2}\n").unwrap();
        let (got, problem) = a.allocate(&obs);
        assert!(problem.is_none());
        assert_eq!(got["a"].cpu_quota, Some(0.2));
        std::fs::write(&file, "").unwrap();
        assert!(a.allocate(&obs).0.is_empty(), "an emptied file: no rules");
    }

    #[test]
    fn owca_rules_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/owca-configs/06_static_allocator_config_owca.yaml");
        let mut a = StaticAllocator::new(StaticAllocatorConfig {
            rules: None,
            config: Some(path),
        })
        .unwrap();
        let (got, problem) = a.allocate(&observation(&[("t", &[])]));
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(got["t"].cpu_quota, Some(1.0));
        assert_eq!(got["t"].cpu_shares, Some(10.0));
    }
}
