//! The `detector:` field: a built-in tag, `!ExternalDetector`, or a name registered with
//! `-r` (see [`crate::plugins::registry`]), read by [`tag::deserialize_tagged`] (see
//! [`crate::plugins::tag`] for the order of the lookup and the error wording).

use serde::{Deserialize, Deserializer, de::VariantAccess};

use super::{ContentionDetectorConfig, ExampleDetectorConfig};
use crate::plugins::{
    PluginConfig,
    tag::{self, NoFields, Tagged, mapping},
};

/// The configured detector.
#[derive(Debug, Clone)]
pub enum DetectorConfig {
    /// `!NOPAnomalyDetector`: finds nothing.
    Nop,
    /// `!ExampleDetector {cycle_length, skew}`: OWCA's synthetic cyclic contentions.
    Example(ExampleDetectorConfig),
    /// `!ContentionDetector {...}`: CPU contention from run-queue waits and CPI.
    Contention(ContentionDetectorConfig),
    /// `!ExternalDetector {command, timeout, config}` or a `-r` registered `!Name {...}`.
    External(PluginConfig),
}

impl Tagged for DetectorConfig {
    const NAME: &'static str = "DetectorConfig";
    const EXPECTING: &'static str = "a detector tag such as !ContentionDetector";
    const BUILT_IN: &'static [&'static str] = &[
        "NOPAnomalyDetector",
        "ExampleDetector",
        "ContentionDetector",
        "ExternalDetector",
    ];
    const EXTERNAL: &'static str = "ExternalDetector";

    fn plugin(config: PluginConfig) -> Self {
        Self::External(config)
    }

    fn built_in<'de, V: VariantAccess<'de>>(tag: &str, variant: V) -> Result<Self, V::Error> {
        match tag {
            "NOPAnomalyDetector" => mapping::<NoFields, _>(variant).map(|_| Self::Nop),
            "ExampleDetector" => mapping(variant).map(Self::Example),
            "ContentionDetector" => mapping(variant).map(Self::Contention),
            _ => Err(tag::unknown(tag, Self::BUILT_IN)),
        }
    }
}

impl<'de> Deserialize<'de> for DetectorConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        tag::deserialize_tagged(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::*;
    use crate::plugins::{registry, tag::default_timeout};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        detector: DetectorConfig,
    }

    fn load(yaml: &str) -> Result<DetectorConfig, String> {
        crate::config::from_str::<Holder>(yaml, Path::new("d.yaml"))
            .map(|h| h.detector)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn built_in_tags_with_and_without_a_mapping() {
        assert!(matches!(
            load("detector: !NOPAnomalyDetector\n"),
            Ok(DetectorConfig::Nop)
        ));
        assert!(matches!(
            load("detector: !NOPAnomalyDetector {}\n"),
            Ok(DetectorConfig::Nop)
        ));
        let Ok(DetectorConfig::Example(e)) = load("detector: !ExampleDetector\n") else {
            panic!("example detector");
        };
        assert_eq!((e.cycle_length, e.skew), (90, false));
        let Ok(DetectorConfig::Example(e)) =
            load("detector: !ExampleDetector {cycle_length: 30, skew: true}\n")
        else {
            panic!("example detector");
        };
        assert_eq!((e.cycle_length, e.skew), (30, true));
        let Ok(DetectorConfig::Contention(c)) =
            load("detector: !ContentionDetector\n  runqueue_wait_threshold: 0.8\n")
        else {
            panic!("contention detector");
        };
        assert_eq!(c.runqueue_wait_threshold, 0.8);
        assert_eq!(c.max_contenders, 3);
        let Ok(DetectorConfig::External(p)) = load(
            "detector: !ExternalDetector\n  command: [python3, det.py]\n  timeout: 0.5\n  config: {level: 2}\n",
        ) else {
            panic!("external detector");
        };
        assert_eq!(p.command, ["python3", "det.py"]);
        assert_eq!(p.timeout, Duration::from_millis(500));
        assert_eq!(p.config, serde_json::json!({"level": 2}));
        assert_eq!(p.name, "python3 det.py");
    }

    #[test]
    fn registered_tags_become_plugins_with_their_mapping_as_config() {
        registry::register("CfgTestPlugin=/usr/bin/det --x").unwrap();
        let Ok(DetectorConfig::External(p)) =
            load("detector: !CfgTestPlugin\n  cycle_length: 5\n  tasks: [a, b]\n")
        else {
            panic!("registered plug-in");
        };
        assert_eq!(p.name, "CfgTestPlugin");
        assert_eq!(p.command, ["/usr/bin/det", "--x"]);
        assert_eq!(
            p.config,
            serde_json::json!({"cycle_length": 5, "tasks": ["a", "b"]})
        );
        assert_eq!(p.timeout, default_timeout());
        let Ok(DetectorConfig::External(p)) = load("detector: !CfgTestPlugin\n") else {
            panic!("registered plug-in without a mapping");
        };
        assert_eq!(p.config, serde_json::json!({}));
        let err = load("detector: !CfgTestPlugin [1, 2]\n").unwrap_err();
        assert!(err.contains("takes a mapping"), "{err}");
    }

    #[test]
    fn unknown_tags_and_fields_name_the_line_and_what_is_known() {
        let err = load("# detectors\ndetector: !NoSuchDetector\n  x: 1\n").unwrap_err();
        assert!(
            err.starts_with("d.yaml:2:11: detector: unknown variant `NoSuchDetector`, expected one of `NOPAnomalyDetector`, `ExampleDetector`, `ContentionDetector`, `ExternalDetector`"),
            "{err}"
        );
        assert!(err.contains("-r Name=program"), "{err}");
        let err = load("detector: !ContentionDetector\n  threshold: 1\n").unwrap_err();
        assert!(
            err.starts_with("d.yaml:2:3: detector.threshold: unknown field `threshold`"),
            "{err}"
        );
        let err = load("detector: !ExternalDetector {command: []}\n").unwrap_err();
        assert!(err.contains("needs at least the program"), "{err}");
    }
}
