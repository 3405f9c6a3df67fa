//! Counter events: OWCA's names, parsing of raw events, and opening one perf event per
//! CPU per event (never per task), for the kernel programs to read at cgroup switches.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

use perf_event_open_sys::bindings as sys;
use thiserror::Error;

/// Errors about counter events.
#[derive(Debug, Error)]
pub enum PerfError {
    /// The event name is neither known nor a raw event `name__rEEUU[CC]`.
    #[error(
        "unknown event {0:?}: expected one of {KNOWN_NAMES} or a raw event name__rEEUU[CC] (hex event, umask, cmask)"
    )]
    UnknownEvent(String),
    /// Opening the event on a CPU failed for a reason other than the PMU lacking it.
    #[error("opening perf event {event} on CPU {cpu}: {source}")]
    Open {
        event: String,
        cpu: u32,
        source: io::Error,
    },
}

const KNOWN_NAMES: &str = "instructions, cycles, cache_misses, cache_references, stalls_mem_load, page_faults, cpu_migrations";

/// One countable event as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// The name the metric is exported under.
    pub name: String,
    /// `PERF_TYPE_*`.
    pub type_: u32,
    pub config: u64,
}

impl EventSpec {
    /// Parses one of OWCA's event names.
    pub fn parse(name: &str) -> Result<Self, PerfError> {
        let (type_, config) = match name {
            "instructions" => (
                sys::PERF_TYPE_HARDWARE,
                sys::PERF_COUNT_HW_INSTRUCTIONS as u64,
            ),
            "cycles" => (
                sys::PERF_TYPE_HARDWARE,
                sys::PERF_COUNT_HW_CPU_CYCLES as u64,
            ),
            "cache_misses" => (
                sys::PERF_TYPE_HARDWARE,
                sys::PERF_COUNT_HW_CACHE_MISSES as u64,
            ),
            "cache_references" => (
                sys::PERF_TYPE_HARDWARE,
                sys::PERF_COUNT_HW_CACHE_REFERENCES as u64,
            ),
            // As OWCA: CYCLE_ACTIVITY.STALLS_MEM_ANY (event 0xA3, umask 0x14, cmask 20).
            "stalls_mem_load" => (sys::PERF_TYPE_RAW, 0xA3 | 0x14 << 8 | 20 << 24),
            "page_faults" => (
                sys::PERF_TYPE_SOFTWARE,
                sys::PERF_COUNT_SW_PAGE_FAULTS as u64,
            ),
            "cpu_migrations" => (
                sys::PERF_TYPE_SOFTWARE,
                sys::PERF_COUNT_SW_CPU_MIGRATIONS as u64,
            ),
            _ => (sys::PERF_TYPE_RAW, parse_raw(name)?),
        };
        Ok(Self {
            name: name.to_owned(),
            type_,
            config,
        })
    }

    /// Opens the event counting every task on `cpu`. `Ok(None)` when this machine's PMU
    /// does not have the event.
    pub fn open_on_cpu(&self, cpu: u32) -> Result<Option<OwnedFd>, PerfError> {
        // SAFETY: perf_event_attr is plain integers and unions of integers; all-zero is a
        // valid (disabled-nothing, count-only) attribute set.
        let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
        attr.type_ = self.type_;
        attr.size = size_of::<sys::perf_event_attr>() as u32;
        attr.config = self.config;
        // SAFETY: a valid attr; pid -1 with a CPU counts all tasks on that CPU.
        let fd = unsafe {
            perf_event_open_sys::perf_event_open(
                &mut attr,
                -1,
                cpu as i32,
                -1,
                sys::PERF_FLAG_FD_CLOEXEC as _,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::EINVAL) => Ok(None),
                _ => Err(PerfError::Open {
                    event: self.name.clone(),
                    cpu,
                    source: err,
                }),
            };
        }
        // SAFETY: a fresh fd owned by nobody else.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// `name__rEEUU` or `name__rEEUUCC`: hex event, umask and optional cmask, as OWCA.
fn parse_raw(name: &str) -> Result<u64, PerfError> {
    let unknown = || PerfError::UnknownEvent(name.to_owned());
    let (_, raw) = name.rsplit_once("__r").ok_or_else(unknown)?;
    if !(raw.len() == 4 || raw.len() == 6) || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let byte = |i: usize| u64::from_str_radix(&raw[i..i + 2], 16).map_err(|_| unknown());
    let cmask = if raw.len() == 6 { byte(4)? } else { 0 };
    Ok(byte(0)? | byte(2)? << 8 | cmask << 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owca_names_and_raw_events() {
        assert_eq!(
            EventSpec::parse("instructions").unwrap().type_,
            sys::PERF_TYPE_HARDWARE
        );
        let raw = EventSpec::parse("instructionraw__rC000").unwrap();
        assert_eq!((raw.type_, raw.config), (sys::PERF_TYPE_RAW, 0xC0));
        let cm = EventSpec::parse("stalls__rA31414").unwrap();
        assert_eq!(cm.config, 0x140014A3);
        assert_eq!(
            EventSpec::parse("stalls_mem_load").unwrap().config,
            0x140014A3
        );
        for bad in ["nonsense", "x__rZZ00", "x__rC0", "x__rC00000FF"] {
            let err = EventSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("instructions"), "{err}");
        }
    }

    // Opening events on a CPU needs root: tests/kernel_collector.rs does it.
}
