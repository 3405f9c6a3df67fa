//! Loading a `T` from YAML with errors that name the file, the position and the field.
//!
//! serde_yaml_ng knows positions but formats its own message as
//! `path: message at line L column C` (its path leaves out enum variants and stops at the
//! struct for unknown fields); serde_path_to_error knows the full field path. We take
//! the position from the former, the path from the latter, and strip serde_yaml_ng's
//! decorations from the message so that each appears once.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::ConfigError;

/// Deserializes `T` from YAML `text`; `source` names the text in errors (usually its file).
pub fn from_str<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T, ConfigError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let segments = field_segments(err.path());
        let error = err.into_inner();
        let (mut line, mut column, mut index) = match error.location() {
            Some(l) => (l.line(), l.column(), l.index()),
            None => (0, 0, 0),
        };
        let message = strip_decorations(&error.to_string(), line, column, &segments);
        // serde_yaml_ng places an unknown tag at its parent's start, which can be many
        // lines earlier; the tag itself is easy to find in the text.
        if let Some(tag_at) = unknown_tag_position(text, index, &message) {
            index = tag_at;
            (line, column) = line_column(text, index);
        }
        ConfigError::Parse {
            path: source.to_owned(),
            line,
            column,
            field: segments.concat(),
            message,
        }
    })
}

/// Reads and deserializes the YAML file at `path`.
pub fn from_file<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_str(&text, path)
}

/// The field path as rendered pieces (`runner`, `.node`, `[0]`), without enum variants.
fn field_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for segment in path.iter() {
        let piece = match segment {
            Segment::Seq { index } => format!("[{index}]"),
            Segment::Map { key } => key.clone(),
            Segment::Unknown => "?".to_owned(),
            // The variant is the `!Tag` on the value, not a key a user would look for.
            Segment::Enum { .. } => continue,
        };
        if out.is_empty() || piece.starts_with('[') {
            out.push(piece);
        } else {
            out.push(format!(".{piece}"));
        }
    }
    out
}

/// Removes serde_yaml_ng's ` at line L column C` and its leading `path: ` from `message`.
fn strip_decorations(message: &str, line: usize, column: usize, segments: &[String]) -> String {
    // libyaml syntax errors may mention a second position (", while parsing ... at line
    // 3 column 12"); only the first is the one we report separately.
    let position = format!(" at line {line} column {column}");
    let message = match message.find(&position) {
        Some(at) if line > 0 => format!("{}{}", &message[..at], &message[at + position.len()..]),
        _ => message.to_owned(),
    };
    // serde_yaml_ng's path is a prefix of ours (it stops where the error surfaced); try
    // the longest first so that `a.b: ` wins over `a: `.
    for n in (1..=segments.len()).rev() {
        let prefix = segments[..n].concat();
        for prefix in [format!("{prefix}: "), format!(".{prefix}: ")] {
            if let Some(rest) = message.strip_prefix(&prefix) {
                return rest.to_owned();
            }
        }
    }
    message
}

/// For "unknown variant `X`" errors, the byte index of the first `!X` tag at or after
/// `from`, if the text has one.
fn unknown_tag_position(text: &str, from: usize, message: &str) -> Option<usize> {
    let name = message
        .strip_prefix("unknown variant `")?
        .split('`')
        .next()?;
    let tag = format!("!{name}");
    let mut start = from.min(text.len());
    while let Some(found) = text.get(start..)?.find(&tag) {
        let at = start + found;
        let end = at + tag.len();
        // `!Node` must not match the start of `!NodeX`.
        if !text[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
            return Some(at);
        }
        start = end;
    }
    None
}

/// 1-based line and column (in characters, as libyaml counts) of byte `index`.
fn line_column(text: &str, index: usize) -> (usize, usize) {
    let before = &text[..index];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
