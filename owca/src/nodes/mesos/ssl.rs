//! TLS settings of `!MesosNode`: OWCA's `ssl_verify` and WCA 1.0.7's `ssl: !SSL {...}`.

use std::{fmt, path::PathBuf};

use serde::{
    Deserialize, Deserializer,
    de::{self, EnumAccess, MapAccess, VariantAccess, Visitor},
};

/// How the agent's certificate is checked: `true`, `false` or a CA bundle path, as the
/// `verify` argument of Python's `requests` that OWCA passed it to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServerVerify {
    /// `true`: against the system's trusted CAs.
    #[default]
    SystemRoots,
    /// `false`: not at all (the connection is still encrypted).
    Disabled,
    /// A path: only against the CAs in this PEM bundle.
    CaBundle(PathBuf),
}

impl<'de> Deserialize<'de> for ServerVerify {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ServerVerifyVisitor)
    }
}

struct ServerVerifyVisitor;

impl Visitor<'_> for ServerVerifyVisitor {
    type Value = ServerVerify;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true, false or the path of a CA bundle")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ServerVerify, E> {
        Ok(if v {
            ServerVerify::SystemRoots
        } else {
            ServerVerify::Disabled
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ServerVerify, E> {
        // PyYAML, which read OWCA's configs, took YAML 1.1's yes/no/on/off as booleans;
        // serde_yaml_ng passes them as strings. No CA bundle is named like that.
        match v {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Ok(ServerVerify::SystemRoots),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Ok(ServerVerify::Disabled),
            _ => {}
        }
        if v.is_empty() {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        Ok(ServerVerify::CaBundle(PathBuf::from(v)))
    }
}

/// WCA's `!SSL`: server verification plus an optional client certificate for agents that
/// require mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssl {
    /// Like `ssl_verify`: `true` (default), `false` or a CA bundle path.
    #[serde(default)]
    pub server_verify: ServerVerify,
    /// PEM client certificate; holds the key too when `client_key_path` is not given.
    #[serde(default)]
    pub client_cert_path: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub client_key_path: Option<PathBuf>,
}

/// Deserializes `ssl:` as a mapping tagged `!SSL` (as WCA wrote it) or untagged; any other
/// tag is an error rather than silently accepted.
pub(super) fn tagged_ssl<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Ssl>, D::Error> {
    deserializer.deserialize_any(SslVisitor)
}

struct SslVisitor;

impl<'de> Visitor<'de> for SslVisitor {
    type Value = Option<Ssl>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an !SSL mapping with server_verify, client_cert_path, client_key_path")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Ssl>, A::Error> {
        Ssl::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }

    /// `ssl: null`: as if not given.
    fn visit_unit<E: de::Error>(self) -> Result<Option<Ssl>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Ssl>, E> {
        Ok(None)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Option<Ssl>, A::Error> {
        let (tag, value): (String, _) = data.variant()?;
        if tag != "SSL" {
            return Err(de::Error::invalid_value(
                de::Unexpected::Other(&format!("tag !{tag}")),
                &self,
            ));
        }
        // `ssl: !SSL` with nothing after it: every setting at its default.
        value
            .newtype_variant::<Option<Ssl>>()
            .map(|ssl| Some(ssl.unwrap_or_default()))
    }
}
