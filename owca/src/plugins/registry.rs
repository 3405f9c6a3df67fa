//! Plug-ins registered on the command line (`-r Name=program args...`), so that `!Name
//! {...}` as the `detector:` or the `allocator:` in the config runs `program` with that
//! mapping as its config, as OWCA's `-r package.module:Class` made `!Class` usable. Set once at start, before the config
//! is parsed; a registered name wins over a built-in of the same name (OWCA's seed config
//! uses `!ExampleDetector` for its registered example plug-in).

use std::{
    collections::BTreeMap,
    sync::{PoisonError, RwLock},
};

use thiserror::Error;

static REGISTERED: RwLock<BTreeMap<String, Vec<String>>> = RwLock::new(BTreeMap::new());

/// Why a `-r` argument was refused.
#[derive(Debug, Error)]
pub enum RegisterError {
    /// Not `Name=program`.
    #[error(
        "-r {spec:?}: expected Name=program [args...] (a YAML tag name and the plug-in's command line); OWCA's package.module:Class plug-ins must be wrapped in a program speaking the plug-in protocol"
    )]
    Form {
        /// The argument given.
        spec: String,
    },
    /// The name is not usable as a YAML tag.
    #[error(
        "-r {spec:?}: {name:?} is not a tag name (letters, digits and _, not starting with a digit)"
    )]
    Name {
        /// The argument given.
        spec: String,
        /// The name part.
        name: String,
    },
}

/// Registers `Name=program args...` (arguments split on whitespace, no quoting).
pub fn register(spec: &str) -> Result<(), RegisterError> {
    let (name, command) = spec.split_once('=').ok_or_else(|| RegisterError::Form {
        spec: spec.to_owned(),
    })?;
    let name = name.trim();
    let command: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    if command.is_empty() {
        return Err(RegisterError::Form {
            spec: spec.to_owned(),
        });
    }
    let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(RegisterError::Name {
            spec: spec.to_owned(),
            name: name.to_owned(),
        });
    }
    REGISTERED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned(), command);
    Ok(())
}

/// The command registered for a tag name.
pub fn registered(name: &str) -> Option<Vec<String>> {
    REGISTERED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .cloned()
}

/// Every registered name, sorted.
pub fn registered_names() -> Vec<String> {
    REGISTERED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_name_and_command_and_rejects_other_forms() {
        register("RegTestDetector=python3 /opt/det.py --fast").unwrap();
        assert_eq!(
            registered("RegTestDetector").unwrap(),
            ["python3", "/opt/det.py", "--fast"]
        );
        assert!(registered_names().contains(&"RegTestDetector".to_owned()));
        for bad in [
            "example.external_package:ExampleDetector",
            "X=",
            "9x=prog",
            "a-b=prog",
        ] {
            let e = register(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
