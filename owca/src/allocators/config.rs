//! The `allocator:` field: a built-in tag, `!ExternalAllocator`, or a name registered
//! with `-r`, read like `detector:` by [`tag::deserialize_tagged`]; `!NOPAllocator` may
//! stand alone or take `{}`.

use serde::{Deserialize, Deserializer, de::VariantAccess};

use super::{CollocationAllocatorConfig, StaticAllocatorConfig};
use crate::plugins::{
    PluginConfig,
    tag::{self, NoFields, Tagged, mapping},
};

/// The configured allocator.
#[derive(Debug, Clone)]
pub enum AllocatorConfig {
    /// `!NOPAllocator`: allocates nothing.
    Nop,
    /// `!StaticAllocator {rules | config}`.
    Static(StaticAllocatorConfig),
    /// `!CollocationAllocator {latency_critical, best_effort, ...}`.
    Collocation(CollocationAllocatorConfig),
    /// `!ExternalAllocator {command, timeout, config}` or a `-r` registered `!Name {...}`.
    External(PluginConfig),
}

impl Tagged for AllocatorConfig {
    const NAME: &'static str = "AllocatorConfig";
    const EXPECTING: &'static str = "an allocator tag such as !StaticAllocator";
    const BUILT_IN: &'static [&'static str] = &[
        "NOPAllocator",
        "StaticAllocator",
        "CollocationAllocator",
        "ExternalAllocator",
    ];
    const EXTERNAL: &'static str = "ExternalAllocator";

    fn plugin(config: PluginConfig) -> Self {
        Self::External(config)
    }

    fn built_in<'de, V: VariantAccess<'de>>(tag: &str, variant: V) -> Result<Self, V::Error> {
        match tag {
            "NOPAllocator" => mapping::<NoFields, _>(variant).map(|_| Self::Nop),
            "StaticAllocator" => mapping(variant).map(Self::Static),
            "CollocationAllocator" => variant.newtype_variant().map(Self::Collocation),
            _ => Err(tag::unknown(tag, Self::BUILT_IN)),
        }
    }
}

impl<'de> Deserialize<'de> for AllocatorConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        tag::deserialize_tagged(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        allocator: AllocatorConfig,
    }

    fn load(yaml: &str) -> Result<AllocatorConfig, String> {
        crate::config::from_str::<Holder>(yaml, Path::new("a.yaml"))
            .map(|h| h.allocator)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn built_in_tags() {
        assert!(matches!(
            load("allocator: !NOPAllocator\n"),
            Ok(AllocatorConfig::Nop)
        ));
        assert!(matches!(
            load("allocator: !NOPAllocator {}\n"),
            Ok(AllocatorConfig::Nop)
        ));
        let Ok(AllocatorConfig::Static(s)) =
            load("allocator: !StaticAllocator\n  config: rules.yaml\n")
        else {
            panic!("static allocator");
        };
        assert_eq!(s.config.as_deref(), Some(Path::new("rules.yaml")));
        let err = load("allocator: !NoSuchAllocator\n").unwrap_err();
        assert!(err.contains("unknown variant `NoSuchAllocator`, expected one of `NOPAllocator`, `StaticAllocator`, `CollocationAllocator`, `ExternalAllocator`"), "{err}");
        let Ok(AllocatorConfig::Collocation(c)) = load(
            "allocator: !CollocationAllocator\n  latency_critical: {aurora_tier: 'preferred'}\n  best_effort: {aurora_tier: 'best.*'}\n  levers: [cpu_quota]\n",
        ) else {
            panic!("collocation allocator");
        };
        assert_eq!(c.levers(), [crate::allocators::Lever::CpuQuota]);
        assert_eq!((c.wait_threshold, c.calm_iterations), (0.05, 10));
        let err = load("allocator: !CollocationAllocator\n  best_effort: {tier: x}\n").unwrap_err();
        assert!(err.contains("missing field `latency_critical`"), "{err}");
        let err = load("allocator: !CollocationAllocator\n  latency_critical: {}\n  best_effort: {}\n  levers: [cpu_set]\n").unwrap_err();
        assert!(err.starts_with("a.yaml:4:"), "{err}");
        assert!(err.contains("unknown variant `cpu_set`"), "{err}");
        let err = load("allocator: !StaticAllocator\n  rule: []\n").unwrap_err();
        assert!(err.contains("allocator.rule: unknown field"), "{err}");
    }

    #[test]
    fn plugin_tags() {
        let Ok(AllocatorConfig::External(p)) = load(
            "allocator: !ExternalAllocator\n  command: [python3, alloc.py]\n  timeout: 2\n  config: {quota: 0.5}\n",
        ) else {
            panic!("external allocator");
        };
        assert_eq!(p.command, ["python3", "alloc.py"]);
        assert_eq!(p.timeout.as_secs(), 2);
        assert_eq!(p.config, serde_json::json!({"quota": 0.5}));
        crate::plugins::registry::register("CfgTestAllocator=/usr/bin/alloc").unwrap();
        let Ok(AllocatorConfig::External(p)) = load("allocator: !CfgTestAllocator\n  level: 3\n")
        else {
            panic!("registered allocator");
        };
        assert_eq!(
            (p.name.as_str(), p.config.clone()),
            ("CfgTestAllocator", serde_json::json!({"level": 3}))
        );
        let err = load("allocator: !ExternalAllocator {command: []}\n").unwrap_err();
        assert!(err.contains("needs at least the program"), "{err}");
    }
}
