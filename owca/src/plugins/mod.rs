//! External plug-ins: detectors and allocators written in any language, run as a child
//! process that speaks one JSON line per iteration on its stdin/stdout.
//!
//! - [`protocol`]: the lines exchanged, fixed so that plug-ins written elsewhere keep
//!   working.
//! - [`Plugin`]: the process: started once, restarted with backoff after it crashes,
//!   hangs past its timeout or answers garbage; each failure costs one iteration.
//! - [`registry`]: names registered with `-r Name=program`, usable as `!Name {...}` tags
//!   for the detector or the allocator; [`tag`]: how such tags, `!External...` and the
//!   built-ins are read from the config.

mod process;
pub mod protocol;
pub mod registry;
pub mod tag;

pub use self::process::{
    ENV_ALLOWED, LIMITS, Plugin, PluginConfig, PluginError, PluginUser, STDERR_LINES_PER_MINUTE,
};
