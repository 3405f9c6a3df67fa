//! The `allocator:` field. Deserialized by hand like `detector:` (see
//! `detectors/config.rs`) so that a plug-in tag (`!ExternalAllocator`, `-r` registered
//! names) can join the built-ins, and so that `!NOPAllocator` may stand alone or take `{}`.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{EnumAccess, Visitor},
};

use super::StaticAllocatorConfig;
use crate::plugins::{
    PluginConfig,
    tag::{self, NoFields, mapping},
};

/// Built-in tags, as listed in errors.
const BUILT_IN: [&str; 3] = ["NOPAllocator", "StaticAllocator", "ExternalAllocator"];

/// The configured allocator.
#[derive(Debug, Clone)]
pub enum AllocatorConfig {
    /// `!NOPAllocator`: allocates nothing.
    Nop,
    /// `!StaticAllocator {rules | config}`.
    Static(StaticAllocatorConfig),
    /// `!ExternalAllocator {command, timeout, config}` or a `-r` registered `!Name {...}`.
    External(PluginConfig),
}

impl<'de> Deserialize<'de> for AllocatorConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_enum("AllocatorConfig", &BUILT_IN, TagVisitor)
    }
}

struct TagVisitor;

impl<'de> Visitor<'de> for TagVisitor {
    type Value = AllocatorConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an allocator tag such as !StaticAllocator")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<AllocatorConfig, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        let variant = match tag::registered(&tag, variant) {
            Ok(plugin) => return plugin.map(AllocatorConfig::External),
            Err(variant) => variant,
        };
        match tag.as_str() {
            "NOPAllocator" => mapping::<NoFields, _>(variant).map(|_| AllocatorConfig::Nop),
            "StaticAllocator" => mapping(variant).map(AllocatorConfig::Static),
            "ExternalAllocator" => tag::external(variant).map(AllocatorConfig::External),
            _ => Err(tag::unknown(&tag, &BUILT_IN)),
        }
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
        assert!(err.contains("unknown variant `NoSuchAllocator`, expected one of `NOPAllocator`, `StaticAllocator`, `ExternalAllocator`"), "{err}");
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
