//! Seconds as a YAML number → [`Duration`], for fields such as `action_delay: 1.` and
//! `timeout: 5`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// Deserializes a non-negative, finite number of seconds (integer or float) as a
/// [`Duration`]. Use as `#[serde(deserialize_with = "crate::config::duration_secs")]`.
pub fn duration_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(SecondsVisitor)
}

struct SecondsVisitor;

impl Visitor<'_> for SecondsVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative, finite number of seconds, e.g. 5 or 0.5")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => Ok(Duration::from_secs(v)),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        // try_from_secs_f64 rejects negative, NaN, infinite and too large values alike;
        // naming the value and the expectation is clearer than its own message.
        Duration::try_from_secs_f64(v).map_err(|_| {
            if v.is_finite() && v > 0.0 {
                // Unexpected::Float would print all 301 digits of 1e300.
                E::invalid_value(
                    Unexpected::Other(&format!("{v:e} seconds (too long)")),
                    &self,
                )
            } else {
                E::invalid_value(Unexpected::Float(v), &self)
            }
        })
    }
}
