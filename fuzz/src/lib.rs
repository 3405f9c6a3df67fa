//! Helpers shared by the fuzz targets in `fuzz_targets/`: a strict reader of the
//! Prometheus text format ([`prom_text`]) and a fake `/proc` for the Mesos parser
//! ([`fake_proc`]).

pub mod fake_proc;
pub mod prom_text;
