//! What the integration tests and the bench share: the root check that skips, processes
//! killed and reaped on drop, busy and quiet workloads, real test cgroups, the agent
//! launcher, a resctrl-shaped tree, a Mesos agent stand-in, a Kafka broker, and small
//! readers of /proc, cgroup files and Prometheus text.
//!
//! Each test file includes it with `mod support;`; the bench with `#[path]`.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod agent;
pub mod cgroup;
pub mod detecting;
pub mod kafka_broker;
pub mod mesos_agent;
pub mod process;
pub mod resctrl;
pub mod workload;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

#[allow(unused_imports, reason = "each test binary uses a different subset")]
pub use self::{agent::Agent, cgroup::TestCgroup, process::Proc};

/// Returns from the calling test (which must return `()`), printing why, unless the test
/// runs as root: these tests load eBPF programs and create cgroups on the real kernel.
///
/// ```ignore
/// #[test]
/// fn measures_a_busy_loop() {
///     require_root!();
///     ...
/// }
/// ```
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::root_or_skip($crate::test_name!()) {
            return;
        }
    };
}

/// The path of the test function this expands in, e.g. `agent::rdt_monitoring`.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        $crate::support::test_name_of(::std::any::type_name_of_val(&here))
    }};
}

/// `agent::a_test` from the type name of a function item defined in that test (async
/// tests define it inside closures: `agent::a_test::{{closure}}::here`).
pub fn test_name_of(item: &'static str) -> &'static str {
    let mut name = item.strip_suffix("::here").unwrap_or(item);
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name
}

/// Whether the real-kernel test `test` may go on: true as root; otherwise it prints that
/// the test is skipped and why, and returns false. See [`require_root!`].
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(
        test,
        "needs root to load eBPF programs and create cgroups (run `cargo xtask test`)",
    );
    false
}

/// Prints that `test` is skipped and why. Written to the process's stderr directly, not
/// through `eprintln!`, which the test harness captures and shows only for failures.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
}

pub fn sleep_s(s: f64) {
    thread::sleep(Duration::from_secs_f64(s));
}

/// A name unique to this test process, for cgroups.
pub fn unique(name: &str) -> String {
    format!("owca-test-{name}-{}", std::process::id())
}

/// The value of the first sample of metric `name` whose line contains every needle.
pub fn sample(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Reads a number from a cgroup file (first whitespace-separated token, or `key value`).
pub fn cgroup_value(path: &Path, key: Option<&str>) -> u64 {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match key {
        None => text.trim().parse().expect("a number"),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {}", path.display())),
    }
}

/// Waits up to 20 s until the file's text satisfies `ok`, and returns that text. For
/// files an agent writes, [`Agent::wait_for`] also notices the agent exiting.
pub fn wait_until(path: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && ok(&text)
        {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what} in {}",
            path.display()
        );
        sleep_s(0.1);
    }
}

/// A process in a fresh cgroup `mesos/<unique name>` of the given v1 controllers. Fields
/// drop in order: the process is killed before its cgroup is removed.
pub struct PlacedTask {
    /// The cgroup path below the hierarchy roots, e.g. `mesos/owca-test-busy-42`.
    pub rel: String,
    pub proc: Proc,
    pub cgroup: TestCgroup,
}

/// Starts `proc` placed in a new `mesos/<name>` cgroup.
pub fn placed(name: &str, controllers: &[&str], proc: Proc) -> PlacedTask {
    let mounts = owca::cgroups::Mounts::discover().expect("reading mountinfo");
    let rel = format!("mesos/{}", unique(name));
    let cgroup = TestCgroup::create(&mounts, controllers, &rel).expect("creating a test cgroup");
    cgroup.add_pid(proc.pid()).expect("placing the process");
    PlacedTask { rel, proc, cgroup }
}

/// Writes an agent config file `owca.yaml` into `dir` and returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("owca.yaml");
    std::fs::write(&path, yaml).expect("writing the config");
    path
}
