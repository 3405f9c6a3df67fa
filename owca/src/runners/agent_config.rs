//! The configuration file's top level: the root of the schema, with the runners it names.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::RunnerConfig;

/// What a config file holds: the runner and optional log levels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The runner and its components.
    pub runner: RunnerConfig,
    /// Log levels per module (`module: level`), as `-l module:level`.
    #[serde(default)]
    pub loggers: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(yaml_files(&path));
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn every_shipped_config_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let files = yaml_files(&root);
        assert!(files.len() >= 4, "{files:?}");
        for f in files {
            // StaticAllocator rule files are lists of rules, not agent configs.
            let text = std::fs::read_to_string(&f).unwrap();
            let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
            if value.is_sequence() {
                let rules: Vec<crate::allocators::Rule> =
                    crate::config::from_file(&f).unwrap_or_else(|e| panic!("{e}"));
                assert!(!rules.is_empty(), "{}", f.display());
                continue;
            }
            let cfg: AgentConfig = crate::config::from_file(&f).unwrap_or_else(|e| panic!("{e}"));
            let delay = match cfg.runner {
                RunnerConfig::MeasurementRunner(r) => r.action_delay,
                RunnerConfig::DetectionRunner(r) => r.action_delay,
                RunnerConfig::AllocationRunner(r) => r.action_delay,
            };
            assert!(!delay.is_zero(), "{}", f.display());
        }
    }

    #[test]
    fn owca_static_measurement_examples_load_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/owca-configs");
        for name in [
            "07_static_measurements_owca.yaml",
            "08_static_measurements_for_node_exporter_owca.yaml",
            "09_static_measurements_with_extra_metrics_owca.yaml",
        ] {
            let cfg: AgentConfig =
                crate::config::from_file(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            let RunnerConfig::MeasurementRunner(r) = cfg.runner else {
                panic!("{name} is a MeasurementRunner config");
            };
            if name.starts_with("09") {
                assert!(r.enable_derived_metrics);
                assert!(r.event_names.contains(&"instructionraw__rC000".to_owned()));
            }
        }
    }

    #[test]
    fn owca_allocation_examples_load_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/owca-configs");
        let load = |name: &str| -> super::super::AllocationRunnerConfig {
            let cfg: AgentConfig =
                crate::config::from_file(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            let RunnerConfig::AllocationRunner(r) = cfg.runner else {
                panic!("{name} is an AllocationRunner config");
            };
            r
        };
        let r = load("03_mesos_example_allocator_wca107.yaml");
        assert!(matches!(
            r.allocator,
            crate::allocators::AllocatorConfig::Nop
        ));
        assert_eq!(r.allocation_configuration.cpu_quota_period, 1000);
        let r = load("05_static_allocator_owca.yaml");
        let crate::allocators::AllocatorConfig::Static(s) = r.allocator else {
            panic!("05 uses a StaticAllocator");
        };
        // OWCA's path, relative to where the agent runs; the file itself is fixture 06.
        assert_eq!(
            s.config.as_deref(),
            Some(Path::new("configs/extra/static_allocator_config.yaml"))
        );
        let rules: Vec<crate::allocators::Rule> =
            crate::config::from_file(dir.join("06_static_allocator_config_owca.yaml"))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules[0].allocations.cpu_shares, Some(10.0));
        // Run from the repository root, 05 finds the shipped rules file there.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shipped: Vec<crate::allocators::Rule> =
            crate::config::from_file(repo.join(s.config.unwrap()))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(shipped.len() >= 2);
    }

    #[test]
    fn allocation_configuration_with_and_without_its_tag() {
        for tag in ["!AllocationConfiguration ", ""] {
            let yaml = format!(
                "runner: !AllocationRunner\n  node: !StaticNode {{tasks: [a]}}\n  allocator: !NOPAllocator\n  \
                 allocation_configuration: {tag}{{cpu_quota_period: 100000, default_rdt_l3: 'L3:0=f'}}\n"
            );
            let cfg: AgentConfig = crate::config::from_str(&yaml, Path::new("a.yaml"))
                .unwrap_or_else(|e| panic!("{tag}: {e}"));
            let RunnerConfig::AllocationRunner(r) = cfg.runner else {
                panic!("allocation runner");
            };
            assert_eq!(r.allocation_configuration.cpu_quota_period, 100_000);
            assert_eq!(r.allocation_configuration.cpu_shares_unit, 1000);
            assert_eq!(
                r.allocation_configuration.default_rdt_l3.as_deref(),
                Some("L3:0=f")
            );
            assert_eq!(r.rdt_enabled, None);
        }
    }

    #[test]
    fn owca_mesos_detection_examples_load_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/owca-configs");
        for (name, topic) in [
            ("01_mesos_external_detector_owca03.yaml", "owca_anomalies"),
            ("02_mesos_external_detector_wca107.yaml", "wca_anomalies"),
        ] {
            let cfg: AgentConfig =
                crate::config::from_file(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            let RunnerConfig::DetectionRunner(r) = cfg.runner else {
                panic!("{name} is a DetectionRunner config");
            };
            let crate::storage::StorageConfig::KafkaStorage(k) = r.anomalies_storage else {
                panic!("{name} stores anomalies in Kafka");
            };
            assert_eq!(k.topic, topic);
            assert_eq!(k.max_timeout_in_seconds.as_secs_f64(), 5.0);
        }
    }

    #[test]
    fn shared_fields_have_defaults_and_resctrl_root_can_be_set() {
        let load = |yaml: &str| -> super::super::MeasurementRunnerConfig {
            let cfg: AgentConfig = crate::config::from_str(yaml, Path::new("m.yaml"))
                .unwrap_or_else(|e| panic!("{e}"));
            let RunnerConfig::MeasurementRunner(r) = cfg.runner else {
                panic!("measurement runner");
            };
            r
        };
        let r = load("runner: !MeasurementRunner\n  node: !StaticNode {tasks: [a]}\n");
        assert_eq!(r.resctrl_root, Path::new("/sys/fs/resctrl"));
        assert_eq!(r.action_delay, std::time::Duration::from_secs(1));
        assert_eq!(r.max_cgroups, owca_common::DEFAULT_MAX_CGROUPS);
        let r = load(
            "runner: !MeasurementRunner\n  node: !StaticNode {tasks: [a]}\n  resctrl_root: /tmp/rdt\n",
        );
        assert_eq!(r.resctrl_root, Path::new("/tmp/rdt"));
        let mut runner = RunnerConfig::MeasurementRunner(r);
        runner.set_resctrl_root("/elsewhere".into());
        let RunnerConfig::MeasurementRunner(r) = runner else {
            unreachable!()
        };
        let (shared, _) = r.split();
        assert_eq!(shared.measuring.resctrl_root, Path::new("/elsewhere"));
        let err = crate::config::from_str::<AgentConfig>(
            "runner: !MeasurementRunner\n  node: !StaticNode {tasks: [a]}\n  resctrl_rot: /x\n",
            Path::new("m.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("m.yaml:3:3: runner.resctrl_rot: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn extra_labels_the_agent_sets_itself_or_that_are_no_label_names_are_refused() {
        for (key, reason) in [
            ("le", "set by the agent itself"),
            ("task_id", "set by the agent itself"),
            ("a-b", "not a label name"),
            ("__x", "not a label name"),
        ] {
            let yaml = format!(
                "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [a]}}\n  extra_labels: {{'{key}': x}}\n"
            );
            let cfg: AgentConfig = crate::config::from_str(&yaml, Path::new("m.yaml"))
                .unwrap_or_else(|e| panic!("{e}"));
            let RunnerConfig::MeasurementRunner(r) = cfg.runner else {
                panic!("measurement runner");
            };
            let (shared, _) = r.split();
            let err = shared.validate().unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(reason), "{err}");
        }
    }
}
