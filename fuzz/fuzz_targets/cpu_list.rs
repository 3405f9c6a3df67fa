//! CPU lists (`cpuset.cpus`, `cpu_set` allocations): no panic; a parsed set is within
//! `MAX_CPU`, and formatting it gives a list that parses back to the same set; an error
//! quotes the list, its first 64 characters and `...` when longer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owca::cgroups::cpu_list::{MAX_CPU, format_cpu_list, parse_cpu_list};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_cpu_list(text) {
        Ok(set) => {
            assert!(set.iter().all(|&c| c <= MAX_CPU));
            let formatted = format_cpu_list(&set);
            assert_eq!(parse_cpu_list(&formatted).as_ref(), Ok(&set), "{formatted}");
        }
        Err(e) => match text.char_indices().nth(64) {
            Some((at, _)) => assert_eq!(e.list, format!("{}...", &text[..at])),
            None => assert_eq!(e.list, text),
        },
    }
});
