//! The YAML config loader: any text as an agent config file. No panic, and an error's
//! message renders.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) =
        owca::config::from_str::<owca::runners::AgentConfig>(text, Path::new("fuzz.yaml"))
    {
        assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
    }
});
