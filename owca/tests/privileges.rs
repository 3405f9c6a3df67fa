//! Least privilege, on the real kernel (root): the shipped systemd unit's capability set
//! is the documented one and enough to measure, allocate and run plug-ins; once loaded
//! the agent keeps only `KEPT_CAPABILITIES` (every thread, and plug-ins gain nothing); a
//! missing load capability is named at start; the soft open-files limit is raised.
//!
//! The agent runs under `setpriv` with exactly the unit's `CapabilityBoundingSet` and
//! `NoNewPrivileges`, as uid 0, which is what systemd does with the unit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
};

use caps::Capability;
use owca::privileges::{KEPT_CAPABILITIES, LOAD_CAPABILITIES};
use support::{
    agent::OWCA,
    workload::{busy, quiet},
    *,
};

/// The shipped unit.
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/owca.service");

/// Values of every `key=` line of the unit's `[Service]` section, in order.
fn unit_setting(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The unit's `CapabilityBoundingSet`.
fn unit_capabilities() -> HashSet<Capability> {
    let values = unit_setting("CapabilityBoundingSet");
    assert_eq!(
        values.len(),
        1,
        "one CapabilityBoundingSet line: {values:?}"
    );
    values[0]
        .split_whitespace()
        .map(|name| Capability::from_str(name).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

fn mask(caps: impl IntoIterator<Item = Capability>) -> u64 {
    caps.into_iter().map(|c| c.bitmask()).fold(0, |a, b| a | b)
}

/// `setpriv` giving the agent the unit's capabilities but `without` these, as uid 0 with
/// no_new_privs: its permitted and effective sets become exactly that bounding set.
fn setpriv_as_the_unit(without: &[Capability]) -> Vec<String> {
    let caps: Vec<String> = unit_capabilities()
        .into_iter()
        .filter(|c| !without.contains(c))
        .map(|c| {
            format!(
                "+{}",
                c.to_string().to_lowercase().trim_start_matches("cap_")
            )
        })
        .collect();
    vec![
        "setpriv".into(),
        "--no-new-privs".into(),
        "--inh-caps=-all".into(),
        "--ambient-caps=-all".into(),
        format!("--bounding-set=-all,{}", caps.join(",")),
    ]
}

fn start_as_the_unit(without: &[Capability], dir: &Path, yaml: &str) -> Agent {
    let wrapper = setpriv_as_the_unit(without);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    Agent::start_under(&wrapper, dir, yaml, &["-l", "info"], &[])
}

/// A hexadecimal or decimal field of `/proc/<pid>[/task/<tid>]/status`.
fn status_field(status: &Path, field: &str) -> u64 {
    let text = std::fs::read_to_string(status).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {}", status.display()))
        .trim();
    match field.starts_with("Cap") {
        true => u64::from_str_radix(value, 16).unwrap(),
        false => value.parse().unwrap(),
    }
}

/// Checks that every thread of `pid` holds exactly [`KEPT_CAPABILITIES`] (nothing
/// inheritable or ambient) and has no_new_privs.
fn assert_only_kept_capabilities(pid: u32) {
    let kept = mask(KEPT_CAPABILITIES);
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path().join("status"))
        .collect();
    assert!(!tasks.is_empty());
    for status in tasks {
        for (field, want) in [
            ("CapEff", kept),
            ("CapPrm", kept),
            ("CapBnd", kept),
            ("CapInh", 0),
            ("CapAmb", 0),
            ("NoNewPrivs", 1),
        ] {
            assert_eq!(
                status_field(&status, field),
                want,
                "{field} of {}: {:#x} wanted",
                status.display(),
                want
            );
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn the_unit_bounds_the_agent_to_what_it_loads_with_and_keeps() {
    let mut wanted: HashSet<Capability> = LOAD_CAPABILITIES.into_iter().collect();
    wanted.extend(KEPT_CAPABILITIES);
    // Only to shrink its own bounding set after the load.
    wanted.insert(Capability::CAP_SETPCAP);
    assert_eq!(unit_capabilities(), wanted);
    for (key, value) in [
        ("User", "root"),
        ("AmbientCapabilities", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "owca"),
        ("LimitNOFILE", "65536"),
        ("ReadWritePaths", "/sys/fs/cgroup -/sys/fs/resctrl"),
    ] {
        assert_eq!(unit_setting(key), [value], "{key}");
    }
    let exec = unit_setting("ExecStart");
    assert!(
        exec.len() == 1 && exec[0].starts_with("/usr/bin/owca ") && exec[0].contains(" --root"),
        "{exec:?}"
    );
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip(test_name!(), "systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart's program exists: point it at this build's agent.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("owca.service");
    let text = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace("ExecStart=/usr/bin/owca ", &format!("ExecStart={OWCA} "));
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings:\n{stderr}");
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
    require_root!();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard > 1024,
        "the test needs a hard limit above 1024, not {hard}"
    );
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.prom");
    // systemd's default soft limit.
    let nofile = format!("--nofile=1024:{hard}");
    let mut agent = Agent::start_under(
        &["prlimit", &nofile],
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: []}}\n  \
             action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n",
            metrics.display()
        ),
        &["-l", "info"],
        &[],
    );
    agent.wait_for(&metrics, "the first iteration", |t| t.contains("owca_up"));
    let limits = read(&PathBuf::from(format!("/proc/{}/limits", agent.pid())));
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[3..5],
        [hard.to_string(), hard.to_string()],
        "soft and hard: {line}"
    );
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("open-files limit"))
        .collect();
    assert_eq!(logged.len(), 1, "{log}");
    assert!(
        logged[0].contains(&format!("soft={hard}")) && logged[0].contains("before=1024"),
        "{}",
        logged[0]
    );
}

#[test]
fn with_the_unit_capabilities_it_measures_and_allocates_keeping_only_the_documented_set() {
    require_root!();
    let task = placed("priv-alloc", &["cpu", "cpuacct", "cpuset"], busy());
    let online = read(Path::new("/sys/devices/system/cpu/online"));
    let last_cpu = online.rsplit(['-', ',']).next().unwrap().to_owned();
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    let dir = tempfile::tempdir().unwrap();
    let (metrics, allocations) = (
        dir.path().join("metrics.prom"),
        dir.path().join("allocations.prom"),
    );
    let mut agent = start_as_the_unit(
        &[],
        dir.path(),
        &format!(
            "runner: !AllocationRunner\n  node: !StaticNode {{tasks: [{}]}}\n  \
             action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             allocations_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             allocator: !StaticAllocator {{rules: [{{allocations: \
             {{cpu_quota: 0.5, cpu_shares: 2, cpu_set: '{last_cpu}'}}}}]}}\n  \
             allocation_configuration: !AllocationConfiguration {{cpu_quota_period: 100000}}\n",
            task.rel,
            metrics.display(),
            allocations.display(),
        ),
    );
    let on_task = format!("task_id=\"{}\"", task.rel);
    // Watched (a map insert) and counted after the drop: every iteration comes after it.
    let text = agent.wait_for(&metrics, "the task's on-CPU time", |t| {
        sample(t, "task_oncpu_seconds_total", &[&on_task]).is_some_and(|v| v > 0.2)
    });
    assert_eq!(
        sample(&text, "owca_errors_total", &["component=\"collector\""]),
        Some(0.0),
        "{text}"
    );
    let text = agent.wait_for(&allocations, "three allocations applied", |t| {
        sample(t, "allocations_count", &[]).is_some_and(|n| n >= 3.0)
    });
    assert_eq!(
        sample(&text, "allocations_errors", &[]),
        Some(0.0),
        "{text}"
    );
    let cpu = task.cgroup.dir("cpu");
    // cgroup v1 cpu and cpuset files, written by uid 0 without CAP_DAC_OVERRIDE.
    assert_eq!(
        read(&cpu.join("cpu.cfs_quota_us")),
        (cpus * 50_000).to_string()
    );
    assert_eq!(read(&cpu.join("cpu.shares")), "2000");
    assert_eq!(
        read(&task.cgroup.dir("cpuset").join("cpuset.cpus")),
        last_cpu
    );
    assert_only_kept_capabilities(agent.pid());
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keeping only these capabilities"))
        .collect();
    assert_eq!(kept.len(), 1, "{log}");
    assert!(
        kept[0].contains("capabilities=CAP_KILL, CAP_SETGID, CAP_SETUID"),
        "{}",
        kept[0]
    );
    assert!(!log.contains("CAP_SETPCAP is missing"), "{log}");
}

#[test]
fn a_plugin_started_after_the_drop_runs_and_gains_no_capability() {
    require_root!();
    let task = placed("priv-plugin", &["cpu", "cpuacct"], quiet());
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("plugin-status");
    let plugin = dir.path().join("plugin.sh");
    // grep is a program the plug-in executes: what it holds is what an executed program
    // can get.
    std::fs::write(
        &plugin,
        format!(
            "grep -E '^(Cap|NoNewPrivs)' /proc/self/status > {0}.tmp && mv {0}.tmp {0}\n\
             read config\nwhile read line; do echo '{{}}'; done\n",
            seen.display()
        ),
    )
    .unwrap();
    let metrics = dir.path().join("metrics.prom");
    let mut agent = start_as_the_unit(
        &[],
        dir.path(),
        &format!(
            "runner: !DetectionRunner\n  node: !StaticNode {{tasks: [{}]}}\n  \
             action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             anomalies_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
             detector: !ExternalDetector {{command: [sh, {}], timeout: 2}}\n",
            task.rel,
            metrics.display(),
            dir.path().join("anomalies.prom").display(),
            plugin.display(),
        ),
    );
    // Iterations after the plug-in answered its first request: no detector error.
    let text = agent.wait_for(&metrics, "iterations with plug-in answers", |t| {
        sample(t, "owca_duration_seconds", &["function=\"detect\""]).is_some()
            && sample(t, "owca_errors_total", &["component=\"detector\""]) == Some(0.0)
            && t.contains(&format!("task_id=\"{}\"", task.rel))
    });
    assert!(seen.exists(), "the plug-in did not run:\n{text}");
    let kept = mask(KEPT_CAPABILITIES);
    for (field, want) in [
        ("CapEff", kept),
        ("CapPrm", kept),
        ("CapBnd", kept),
        ("CapAmb", 0),
        ("NoNewPrivs", 1),
    ] {
        assert_eq!(status_field(&seen, field), want, "{field} of the plug-in");
    }
    assert_only_kept_capabilities(agent.pid());
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn a_missing_load_capability_is_named_at_start() {
    require_root!();
    for missing in LOAD_CAPABILITIES {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = start_as_the_unit(
            &[missing],
            dir.path(),
            "runner: !MeasurementRunner\n  node: !StaticNode {tasks: []}\n",
        );
        let (status, log) = agent.wait_exit();
        assert!(!status.success(), "{log}");
        assert!(
            log.contains(&format!(
                "missing capability {missing}, needed to load the eBPF programs"
            )),
            "{missing}:\n{log}"
        );
    }
}

#[test]
fn without_cap_setpcap_the_bounding_set_stays_and_a_warning_says_so() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.prom");
    let mut agent = start_as_the_unit(
        &[Capability::CAP_SETPCAP],
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: []}}\n  \
             action_delay: 0.3\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n",
            metrics.display()
        ),
    );
    agent.wait_for(&metrics, "the first iteration", |t| t.contains("owca_up"));
    let status = PathBuf::from(format!("/proc/{}/status", agent.pid()));
    let kept = mask(KEPT_CAPABILITIES);
    assert_eq!(status_field(&status, "CapEff"), kept);
    assert_eq!(status_field(&status, "CapPrm"), kept);
    // CAP_SETPCAP is what shrinks the bounding set: without it the load capabilities stay
    // there, and only no_new_privs keeps an executed program from gaining them.
    assert_eq!(
        status_field(&status, "CapBnd"),
        kept | mask(LOAD_CAPABILITIES)
    );
    assert_eq!(status_field(&status, "NoNewPrivs"), 1);
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("CAP_SETPCAP is missing"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("keeps=CAP_PERFMON, CAP_BPF"),
        "{}",
        warnings[0]
    );
}
