//! Tags of the `detector:` and `allocator:` fields, shared by their hand-written
//! deserializers, which look a tag up among names registered with `-r` first, then
//! built-ins (`!External<Kind> {command, timeout, config}` among them).

use std::time::Duration;

use serde::{
    Deserialize,
    de::{self, VariantAccess},
};

use super::{PluginConfig, registry};
use crate::config::duration_secs;

/// A tag with no mapping (`!NOPAllocator`) or an empty one (`{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// The variant's mapping, or the default when the tag stands alone.
pub fn mapping<'de, T, V>(variant: V) -> Result<T, V::Error>
where
    T: Deserialize<'de> + Default,
    V: VariantAccess<'de>,
{
    Ok(variant.newtype_variant::<Option<T>>()?.unwrap_or_default())
}

/// `!ExternalDetector` / `!ExternalAllocator` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalFields {
    /// Program and arguments.
    command: Vec<String>,
    /// Longest wait for an answer, in seconds.
    #[serde(default = "default_timeout", deserialize_with = "duration_secs")]
    timeout: Duration,
    /// Sent to the plug-in as its first line, `{"config": ...}`.
    #[serde(default = "empty_mapping")]
    config: serde_json::Value,
}

/// Five seconds: a plug-in that hangs delays one iteration by at most this.
pub fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn empty_mapping() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The plug-in of a tag registered with `-r` (its mapping, if any, is the config);
/// `Ok(None)` when `tag` is not registered, leaving `variant` untouched.
pub fn registered<'de, V: VariantAccess<'de>>(
    tag: &str,
    variant: V,
) -> Result<Result<PluginConfig, V::Error>, V> {
    let Some(command) = registry::registered(tag) else {
        return Err(variant);
    };
    Ok(registered_config(tag, command, variant))
}

fn registered_config<'de, V: VariantAccess<'de>>(
    tag: &str,
    command: Vec<String>,
    variant: V,
) -> Result<PluginConfig, V::Error> {
    let config = variant
        .newtype_variant::<Option<serde_json::Value>>()?
        .unwrap_or_else(empty_mapping);
    if !config.is_object() {
        return Err(de::Error::custom(format!(
            "!{tag} takes a mapping (sent to the plug-in as its config), not {config}"
        )));
    }
    Ok(PluginConfig {
        name: tag.to_owned(),
        command,
        config,
        timeout: default_timeout(),
    })
}

/// The plug-in of an `!External...` tag, named by its command line.
pub fn external<'de, V: VariantAccess<'de>>(variant: V) -> Result<PluginConfig, V::Error> {
    let c: ExternalFields = variant.newtype_variant()?;
    if c.command.is_empty() {
        return Err(de::Error::custom("command: needs at least the program"));
    }
    Ok(PluginConfig {
        name: c.command.join(" "),
        command: c.command,
        config: c.config,
        timeout: c.timeout,
    })
}

/// serde's "unknown variant" wording (which the config loader recognises to place the
/// tag's line), listing the built-ins and the registered names.
pub fn unknown<E: de::Error>(tag: &str, built_in: &[&str]) -> E {
    let mut known: Vec<String> = built_in.iter().map(|t| format!("`{t}`")).collect();
    known.extend(
        registry::registered_names()
            .iter()
            .map(|t| format!("`{t}`")),
    );
    E::custom(format!(
        "unknown variant `{tag}`, expected one of {} (plug-ins are registered with -r Name=program)",
        known.join(", ")
    ))
}
