//! Tags of the `detector:` and `allocator:` fields: one hand-written deserializer,
//! [`deserialize_tagged`], for every config enum that implements [`Tagged`].
//!
//! serde's derived enums know only their own variants, so the tag is looked up by hand:
//! among names registered with `-r` first (a registered name wins over a built-in),
//! then `!External<Kind> {command, timeout, config, user}`, then the other built-ins; an
//! unknown tag fails with serde's own "unknown variant" wording, which the config loader
//! places at the tag's line.

use std::{fmt, marker::PhantomData, time::Duration};

use serde::{
    Deserialize, Deserializer,
    de::{self, EnumAccess, VariantAccess, Visitor},
};

use super::{PluginConfig, PluginUser, registry};
use crate::config::positive_duration_secs;

/// A config enum selected by a YAML tag: built-in tags, plus plug-ins (a `-r` registered
/// name or [`Self::EXTERNAL`]). Its `Deserialize` calls [`deserialize_tagged`].
pub trait Tagged: Sized {
    /// The enum's name, as given to serde.
    const NAME: &'static str;
    /// What a value that is no tag was expected to be, e.g. "a detector tag such as
    /// !ContentionDetector".
    const EXPECTING: &'static str;
    /// Built-in tags, [`Self::EXTERNAL`] among them, in the order errors list them.
    const BUILT_IN: &'static [&'static str];
    /// The `!External<Kind> {command, timeout, config}` tag, e.g. `ExternalDetector`.
    const EXTERNAL: &'static str;

    /// The value for a plug-in: a registered name or [`Self::EXTERNAL`].
    fn plugin(config: PluginConfig) -> Self;

    /// The value of `tag`, one of [`Self::BUILT_IN`] other than [`Self::EXTERNAL`] (the
    /// only tags it is called with), from the variant's content (see [`mapping`]).
    fn built_in<'de, V: VariantAccess<'de>>(tag: &str, variant: V) -> Result<Self, V::Error>;
}

/// Reads a [`Tagged`] enum: `-r` registered names first, then [`Tagged::EXTERNAL`], then
/// the other built-ins; anything else is serde's "unknown variant" (see [`unknown`]).
pub fn deserialize_tagged<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Tagged,
    D: Deserializer<'de>,
{
    deserializer.deserialize_enum(T::NAME, T::BUILT_IN, TagVisitor(PhantomData))
}

struct TagVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TagVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        if let Some(command) = registry::registered(&tag) {
            return registered(&tag, command, variant).map(T::plugin);
        }
        if tag == T::EXTERNAL {
            return external(variant).map(T::plugin);
        }
        if !T::BUILT_IN.contains(&tag.as_str()) {
            return Err(unknown(&tag, T::BUILT_IN));
        }
        T::built_in(&tag, variant)
    }
}

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
    #[serde(
        default = "default_timeout",
        deserialize_with = "positive_duration_secs"
    )]
    timeout: Duration,
    /// Sent to the plug-in as its first line, `{"config": ...}`.
    #[serde(default = "empty_mapping")]
    config: serde_json::Value,
    /// Run the plug-in as this user (and its primary group) instead of the agent's.
    #[serde(default)]
    user: Option<String>,
}

/// Five seconds: a plug-in that hangs delays one iteration by at most this.
pub fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn empty_mapping() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The plug-in of a tag registered with `-r` to run `command`: its mapping, if any, is
/// the config.
fn registered<'de, V: VariantAccess<'de>>(
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
        user: None,
    })
}

/// The plug-in of an `!External...` tag, named by its command line.
fn external<'de, V: VariantAccess<'de>>(variant: V) -> Result<PluginConfig, V::Error> {
    let c: ExternalFields = variant.newtype_variant()?;
    if c.command.is_empty() {
        return Err(de::Error::custom("command: needs at least the program"));
    }
    let user = match c.user {
        Some(name) => {
            Some(PluginUser::lookup(&name).map_err(|e| de::Error::custom(format!("user: {e}")))?)
        }
        None => None,
    };
    Ok(PluginConfig {
        name: c.command.join(" "),
        command: c.command,
        config: c.config,
        timeout: c.timeout,
        user,
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
