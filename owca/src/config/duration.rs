//! Seconds as a YAML number → [`Duration`], for fields such as `action_delay: 1.` and
//! `timeout: 5`, bounded so that no setting can stop the agent's loop or overflow its
//! timer arithmetic.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// Longest duration any field accepts: one day. Longer would stop the loop (an
/// `action_delay` of 1e19 s never measures again) or overflow `Instant + Duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Shortest duration [`positive_duration_secs`] accepts: one millisecond. Shorter is zero
/// in practice (a timeout that always expires, a loop that never sleeps).
pub const MIN_POSITIVE_DURATION: Duration = Duration::from_millis(1);

/// Deserializes a number of seconds (integer or float) from 0 to one day
/// ([`MAX_DURATION`]) as a [`Duration`], for fields where 0 means something (no wait).
/// Use as `#[serde(deserialize_with = "crate::config::duration_secs")]`.
pub fn duration_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(SecondsVisitor {
        min: Duration::ZERO,
    })
}

/// Like [`duration_secs`], for fields where 0 makes no sense (`action_delay`, timeouts):
/// from 0.001 ([`MIN_POSITIVE_DURATION`]) to one day.
pub fn positive_duration_secs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(SecondsVisitor {
        min: MIN_POSITIVE_DURATION,
    })
}

struct SecondsVisitor {
    min: Duration,
}

impl SecondsVisitor {
    /// `d` if within bounds; the value is named in seconds as given.
    fn bounded<E: de::Error>(&self, d: Duration, shown: &str) -> Result<Duration, E> {
        if d < self.min {
            return Err(E::invalid_value(
                Unexpected::Other(&format!("{shown} seconds (too short)")),
                self,
            ));
        }
        if d > MAX_DURATION {
            return Err(E::invalid_value(
                Unexpected::Other(&format!("{shown} seconds (too long)")),
                self,
            ));
        }
        Ok(d)
    }
}

impl Visitor<'_> for SecondsVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min.is_zero() {
            write!(
                f,
                "a non-negative number of seconds up to 86400 (one day), e.g. 5 or 0.5"
            )
        } else {
            write!(
                f,
                "a number of seconds from {} to 86400 (one day), e.g. 5 or 0.5",
                self.min.as_secs_f64()
            )
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.bounded(Duration::from_secs(v), &v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::invalid_value(Unexpected::Float(v), &self));
        }
        // Unexpected::Float would print all 20 digits of 1e19: `{v:e}` is what was written.
        let shown = format!("{v:e}");
        match Duration::try_from_secs_f64(v) {
            Ok(d) => self.bounded(d, &shown),
            Err(_) => Err(E::invalid_value(
                Unexpected::Other(&format!("{shown} seconds (too long)")),
                &self,
            )),
        }
    }
}
