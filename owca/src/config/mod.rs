//! Configuration: YAML files whose `!Tags` select component variants.
//!
//! This module holds the generic machinery, and knows no component (the root of the
//! schema is `runners::AgentConfig`): [`from_str`] and [`from_file`] deserialize
//! any `T` and report errors as `file:line:column: field.path: message`, and
//! [`duration_secs`] and [`positive_duration_secs`] read OWCA's "seconds as a number"
//! fields, bounded to one day.
//!
//! Tags map to variants of externally tagged enums (serde's default), so
//! `node: !MesosNode {...}` selects `Node::MesosNode(MesosNodeConfig)`. Anchors and
//! aliases (`&tester`, `*tester`) work as YAML defines them.

mod duration;
mod load;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use self::duration::{
    MAX_DURATION, MIN_POSITIVE_DURATION, duration_secs, positive_duration_secs,
};
pub use self::load::{from_file, from_str};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The text is not valid YAML or does not match the expected structure.
    #[error("{}", parse_message(path, *line, *column, field, message))]
    Parse {
        /// The configuration file (or the name given for a string).
        path: PathBuf,
        /// 1-based line of the offending value; 0 when the parser gave no position.
        line: usize,
        /// 1-based column of the offending value; 0 when the parser gave no position.
        column: usize,
        /// Path of the offending field, e.g. `runner.node.timeout` or `extra[0].url`;
        /// tag (variant) names are left out as they are not keys in the file. Empty for
        /// the document root.
        field: String,
        /// What is wrong, without position or field.
        message: String,
    },
}

/// `file:line:column: field: message`, leaving out the parts that are unknown.
fn parse_message(
    path: &std::path::Path,
    line: usize,
    column: usize,
    field: &str,
    message: &str,
) -> String {
    let mut out = path.display().to_string();
    if line > 0 {
        out.push_str(&format!(":{line}:{column}"));
    }
    out.push_str(": ");
    if !field.is_empty() {
        out.push_str(field);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}
