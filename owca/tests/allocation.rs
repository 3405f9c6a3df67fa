//! The `owca` binary with an `!AllocationRunner` on the real kernel (root): StaticAllocator
//! rules by Mesos label land in real cgroup v1 files within an iteration and throttle a
//! busy loop; live edits of the rules file apply, broken ones keep the last rules;
//! invalid sets change nothing and are counted; a restarted agent rewrites nothing;
//! a task whose cgroup vanished costs only its own allocations.
//!
//! RDT allocation is tested separately (`allocation_rdt.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::Instant,
};

use support::{
    mesos_agent::{self, Answer, get_state},
    workload::{busy, quiet},
    *,
};

const TASK_ID: &str = "root-staging14-cassandra--9043-0-9ee9fbf1-b51b-4bb3-9748-6a4327fd7e0e";

/// An agent with an allocation runner writing metrics and allocation metrics to files.
struct Allocating {
    agent: Agent,
    metrics: PathBuf,
    allocations: PathBuf,
}

impl Allocating {
    fn start(dir: &Path, node: &str, allocator: &str) -> Self {
        Self::launch(dir, node, allocator, &[], &[])
    }

    /// `resctrl`: the `OWCA_RESCTRL_ROOT` to run with.
    fn start_with_resctrl(dir: &Path, node: &str, allocator: &str, resctrl: &Path) -> Self {
        Self::launch(
            dir,
            node,
            allocator,
            &[],
            &[("OWCA_RESCTRL_ROOT", resctrl.as_os_str())],
        )
    }

    /// With more command-line arguments (`-r Name=program`).
    fn start_with_args(dir: &Path, node: &str, allocator: &str, args: &[&str]) -> Self {
        Self::launch(dir, node, allocator, args, &[])
    }

    fn launch(
        dir: &Path,
        node: &str,
        allocator: &str,
        args: &[&str],
        env: &[(&str, &OsStr)],
    ) -> Self {
        let metrics = dir.join("metrics.prom");
        let allocations = dir.join("allocations.prom");
        for f in [&metrics, &allocations] {
            let _ = std::fs::remove_file(f);
        }
        let agent = Agent::start_with(
            dir,
            &format!(
                "runner: !AllocationRunner\n  node: {node}\n  action_delay: 0.3\n  \
                 metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 anomalies_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 allocations_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 allocator: {allocator}\n  \
                 allocation_configuration: !AllocationConfiguration {{cpu_quota_period: 100000}}\n",
                metrics.display(),
                dir.join("anomalies.prom").display(),
                allocations.display(),
            ),
            args,
            env,
        );
        Self {
            agent,
            metrics,
            allocations,
        }
    }

    /// Waits for the allocation metrics to satisfy `ok`; see [`Agent::wait_for`].
    fn wait_allocations(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.allocations, what, ok)
    }

    /// Waits for the metrics to satisfy `ok`; see [`Agent::wait_for`].
    fn wait_metrics(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.metrics, what, ok)
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// CPUs used by the cgroup over `seconds`, from cpuacct.usage.
fn cpu_used(acct_dir: &Path, seconds: f64) -> f64 {
    let usage = acct_dir.join("cpuacct.usage");
    let (u0, t0) = (cgroup_value(&usage, None), Instant::now());
    sleep_s(seconds);
    let (u1, t1) = (cgroup_value(&usage, None), Instant::now());
    (u1 - u0) as f64 / 1e9 / (t1 - t0).as_secs_f64()
}

fn errors_of(text: &str) -> f64 {
    // NaN until the file has the sample: compares false either way.
    sample(text, "allocations_errors", &[]).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn static_rules_by_mesos_label_apply_and_survive_bad_edits_and_restarts() {
    require_root!();
    let task = placed("alloc-mesos", &["cpu", "cpuacct", "cpuset"], busy());
    let container = task.rel.trim_start_matches("mesos/").to_owned();
    let mesos =
        mesos_agent::Agent::start(Answer::Json(get_state(task.proc.pid(), &container)), None).await;
    let (cpu, acct, cpuset) = (
        task.cgroup.dir("cpu").to_owned(),
        task.cgroup.dir("cpuacct").to_owned(),
        task.cgroup.dir("cpuset").to_owned(),
    );
    let online = read(Path::new("/sys/devices/system/cpu/online"));
    let last_cpu = online.rsplit(['-', ',']).next().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let write_rules = |text: &str| std::fs::write(&rules, text).unwrap();
    write_rules(&format!(
        "- name: everyone\n  allocations: {{cpu_quota: 1.0, cpu_shares: 1.0}}\n\
         - name: best effort\n  labels: {{aurora_tier: 'preempt', application: 'nomatch'}}\n  \
           allocations: {{cpu_quota: 0.25, cpu_shares: 0.5, cpu_set: '{last_cpu}'}}\n"
    ));
    let node = format!(
        "!MesosNode {{mesos_agent_endpoint: '{}', timeout: 1}}",
        mesos.endpoint()
    );
    let allocator = format!("!StaticAllocator {{config: {}}}", rules.display());
    let mut agent = Allocating::start(dir.path(), &node, &allocator);

    // Applied within an iteration of the task being seen.
    let on_task = format!("task=\"{TASK_ID}\"");
    let text = agent.wait_allocations("the rule's allocations", |t| {
        sample(t, "allocation_cpu_quota", &[&on_task]) == Some(0.25)
    });
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(
        read(&cpu.join("cpu.cfs_quota_us")),
        "50000",
        "0.25 × 2 CPUs × 100 ms"
    );
    assert_eq!(read(&cpu.join("cpu.shares")), "500");
    assert_eq!(read(&cpuset.join("cpuset.cpus")), last_cpu);
    let labels = [
        on_task.as_str(),
        "container_name=\"",
        "allocation_type=\"cpu_shares\"",
    ];
    assert_eq!(
        sample(&text, "allocation_cpu_shares", &labels),
        Some(0.5),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "allocation_cpuset_cpus",
            &[&on_task, "allocation_type=\"cpuset_cpus\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "allocations_count", &[]).unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(errors_of(&text), 0.0, "{text}");
    assert!(
        sample(&text, "allocation_duration", &[]).is_some(),
        "{text}"
    );
    assert!(text.contains("# TYPE allocations_errors counter"), "{text}");

    // A quarter of this 2-CPU machine is half a CPU.
    let used = cpu_used(&acct, 2.0);
    assert!((0.35..=0.65).contains(&used), "busy loop used {used} CPUs");

    // A broken edit: reported, the last rules stay.
    write_rules("- allocations: {cpu_quota: 0.5\n");
    agent.wait_metrics("the broken rules to be reported", |t| {
        sample(t, "owca_errors_total", &["component=\"allocator\""]).is_some_and(|v| v >= 1.0)
    });
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    // A good edit applies live.
    write_rules(
        "- labels: {aurora_tier: preemptible}\n  allocations: {cpu_quota: 0.5, cpu_shares: 0.5}\n",
    );
    agent.wait_allocations("the edited rule", |t| {
        sample(t, "allocation_cpu_quota", &[&on_task]) == Some(0.5)
    });
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "100000");

    // An invalid set (CPUs that do not exist) changes nothing and is counted.
    write_rules(
        "- labels: {aurora_tier: preemptible}\n  allocations: {cpu_quota: 0.1}\n\
         - task_id: nope\n  allocations: {cpu_quota: 0.1}\n\
         - allocations: {cpu_set: '0-4095'}\n",
    );
    let text = agent.wait_allocations("the invalid set to be counted", |t| errors_of(t) >= 1.0);
    assert_eq!(
        sample(&text, "allocation_cpu_quota", &[&on_task]),
        Some(0.5),
        "{text}"
    );
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "100000");
    assert_eq!(read(&cpuset.join("cpuset.cpus")), last_cpu);

    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let refused = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cpu_set \"0-4095\": CPU 4095 is above"))
        .count();
    assert_eq!(refused, 1, "logged once while it persists:\n{stderr}");
    assert!(stderr.contains("changing allocations"), "{stderr}");

    // Out of band, values within 0.05 of the rule's: a restarted agent leaves them.
    write_rules(
        "- labels: {aurora_tier: preemptible}\n  allocations: {cpu_quota: 0.5, cpu_shares: 0.5}\n",
    );
    std::fs::write(cpu.join("cpu.cfs_quota_us"), "104000").unwrap();
    std::fs::write(cpu.join("cpu.shares"), "520").unwrap();
    let mut agent = Allocating::start(dir.path(), &node, &allocator);
    let text = agent.wait_allocations("the restarted agent's allocations", |t| {
        sample(t, "allocations_count", &[]).is_some_and(|n| n >= 3.0)
    });
    assert_eq!(
        read(&cpu.join("cpu.cfs_quota_us")),
        "104000",
        "rewritten after restart"
    );
    assert_eq!(read(&cpu.join("cpu.shares")), "520");
    assert_eq!(
        sample(&text, "allocation_cpu_quota", &[&on_task]),
        Some(0.52),
        "{text}"
    );
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("changing allocations"), "{stderr}");
}

#[test]
fn a_task_without_its_cgroup_costs_only_its_own_allocations() {
    require_root!();
    let whole = placed("alloc-whole", &["cpu", "cpuacct"], quiet());
    // Only in cpuacct: measured, but its cpu files do not exist (as if removed).
    let partial = placed("alloc-partial", &["cpuacct"], quiet());
    let dir = tempfile::tempdir().unwrap();
    let node = format!("!StaticNode {{tasks: [{}, {}]}}", whole.rel, partial.rel);
    let allocator = "!StaticAllocator {rules: [{allocations: {cpu_quota: 0.5}}]}";
    let mut agent = Allocating::start(dir.path(), &node, allocator);

    let on_whole = format!("task=\"{}\"", whole.rel);
    let text = agent.wait_allocations("the quota of the whole task", |t| {
        sample(t, "allocation_cpu_quota", &[&on_whole]) == Some(0.5) && errors_of(t) >= 2.0
    });
    assert_eq!(
        read(&whole.cgroup.dir("cpu").join("cpu.cfs_quota_us")),
        "100000"
    );
    let on_partial = format!("task=\"{}\"", partial.rel);
    assert!(
        sample(&text, "allocation_cpu_quota", &[&on_partial]).is_none(),
        "{text}"
    );
    assert!(agent.agent.alive(), "the agent exited");
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&partial.rel) && l.contains("cpu_quota"))
        .count();
    assert_eq!(warnings, 1, "logged once:\n{stderr}");
}

#[test]
fn rdt_allocations_without_resctrl_refuse_the_whole_set() {
    require_root!();
    let task = placed("alloc-nordt", &["cpu", "cpuacct"], quiet());
    let dir = tempfile::tempdir().unwrap();
    // An empty directory: resctrl is not mounted there, so RDT allocation is off.
    let no_resctrl = tempfile::tempdir().unwrap();
    let node = format!("!StaticNode {{tasks: [{}]}}", task.rel);
    let allocator = "!StaticAllocator {rules: [{allocations: {cpu_quota: 0.5, rdt: {name: be, l3: 'L3:0=f'}}}]}";
    let mut agent = Allocating::start_with_resctrl(dir.path(), &node, allocator, no_resctrl.path());
    let text = agent.wait_allocations("the refused set", |t| errors_of(t) >= 2.0);
    assert_eq!(sample(&text, "allocations_count", &[]), Some(0.0), "{text}");
    assert_eq!(
        read(&task.cgroup.dir("cpu").join("cpu.cfs_quota_us")),
        "-1",
        "the valid part of the set was not applied either"
    );
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("RDT is not enabled"))
        .count();
    assert_eq!(warnings, 1, "logged once:\n{stderr}");
}

/// The Python example allocator, registered with `-r` as OWCA's plug-ins were: it caps
/// the best-effort task (by Mesos label) while the other task is busy; the kernel file
/// holds the cap and the plug-in's own metric is stored with the allocation metrics.
#[tokio::test(flavor = "multi_thread")]
async fn the_example_allocator_plugin_caps_best_effort_tasks() {
    require_root!();
    let lc = placed("alloc-plugin-lc", &["cpu", "cpuacct"], busy());
    let be = placed("alloc-plugin-be", &["cpu", "cpuacct"], busy());
    let running = |t: &PlacedTask, id: &str| mesos_agent::RunningTask {
        task_id: id.to_owned(),
        executor_pid: t.proc.pid(),
        container_id: t.rel.trim_start_matches("mesos/").to_owned(),
    };
    let mut state = mesos_agent::get_state_of(&[running(&lc, "task-lc"), running(&be, "task-be")]);
    state["get_state"]["get_tasks"]["launched_tasks"][1]["labels"]["labels"]
        .as_array_mut()
        .expect("the fixture task has labels")
        .push(serde_json::json!({"key": "workload_class", "value": "best-effort"}));
    let mesos = mesos_agent::Agent::start(Answer::Json(state), None).await;

    let dir = tempfile::tempdir().unwrap();
    let node = format!(
        "!MesosNode {{mesos_agent_endpoint: '{}', timeout: 1}}",
        mesos.endpoint()
    );
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/example_allocator.py"
    );
    let allocator = "!ExampleAllocator {best_effort: {workload_class: best-effort}, quota: 0.25}";
    let mut agent = Allocating::start_with_args(
        dir.path(),
        &node,
        allocator,
        &["-r", &format!("ExampleAllocator=python3 {example}")],
    );
    let text = agent.wait_allocations("the cap on task-be", |t| {
        sample(t, "allocation_cpu_quota", &["task=\"task-be\""]) == Some(0.25)
    });
    assert_eq!(
        read(&be.cgroup.dir("cpu").join("cpu.cfs_quota_us")),
        "50000",
        "0.25 × 2 CPUs × 100 ms"
    );
    assert_eq!(read(&lc.cgroup.dir("cpu").join("cpu.cfs_quota_us")), "-1");
    let others = sample(&text, "example_allocator_others_cpus", &[]).unwrap();
    assert!(
        others > 0.5,
        "the latency-critical task is busy: {others}\n{text}"
    );
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}

/// An allocator plug-in answering an unknown allocation type: the set is refused as a
/// whole and counted, and the agent goes on.
#[test]
fn an_external_allocator_answering_unknown_types_is_refused() {
    require_root!();
    let task = placed("alloc-plugin-bad", &["cpu", "cpuacct"], quiet());
    let dir = tempfile::tempdir().unwrap();
    let node = format!("!StaticNode {{tasks: [{}]}}", task.rel);
    let answer = format!(
        r#"{{"allocations": {{"{}": {{"cpu_quota": 0.5, "cpu_quotas": 1}}}}}}"#,
        task.rel
    );
    let script = format!("read config; while read request; do echo '{answer}'; done");
    let allocator = format!(
        "!ExternalAllocator {{command: [sh, -c, {}], timeout: 2}}",
        serde_json::to_string(&script).unwrap()
    );
    let mut agent = Allocating::start(dir.path(), &node, &allocator);
    agent.wait_allocations("refused sets", |t| errors_of(t) >= 3.0);
    assert_eq!(read(&task.cgroup.dir("cpu").join("cpu.cfs_quota_us")), "-1");
    assert!(agent.agent.alive(), "the agent exited");
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let refused = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cpu_quotas"))
        .count();
    assert_eq!(refused, 1, "logged once:\n{stderr}");
}

/// An allocator plug-in answering a `cpu_set` of the widest range repeated (4 MB): refused
/// on its length before any CPU set is built; the agent goes on measuring, counts each
/// refused set and logs it once, briefly.
#[test]
fn an_external_allocator_answering_a_huge_cpu_set_is_refused_cheaply() {
    require_root!();
    let task = placed(
        "alloc-plugin-cpuset",
        &["cpu", "cpuacct", "cpuset"],
        quiet(),
    );
    let dir = tempfile::tempdir().unwrap();
    let node = format!("!StaticNode {{tasks: [{}]}}", task.rel);
    let script = format!(
        "import json, sys\nsys.stdin.readline()\nfor line in sys.stdin:\n    print(json.dumps({{'allocations': {{'{}': {{'cpu_set': ','.join(['0-65535'] * 500000)}}}}}}), flush=True)",
        task.rel
    );
    let allocator = format!(
        "!ExternalAllocator {{command: [python3, -c, {}], timeout: 2}}",
        serde_json::to_string(&script).unwrap()
    );
    let cpus_before = read(&task.cgroup.dir("cpuset").join("cpuset.cpus"));
    let mut agent = Allocating::start(dir.path(), &node, &allocator);
    let text = agent.wait_allocations("refused sets", |t| errors_of(t) >= 3.0);
    assert_eq!(sample(&text, "allocations_count", &[]), Some(0.0), "{text}");
    // Measuring goes on at its pace: iterations are not held up by the answer.
    let oncpu = format!("task_id=\"{}\"", task.rel);
    let started = Instant::now();
    let seen = agent.wait_metrics("measurements", |t| {
        sample(t, "owca_tasks", &[]).is_some()
            && sample(t, "cpu_usage_per_task", &[&oncpu]).is_some()
    });
    assert!(!seen.is_empty());
    let errors = errors_of(&agent.wait_allocations("counted", |t| errors_of(t) >= 3.0));
    agent.wait_allocations("more refused sets", |t| errors_of(t) >= errors + 3.0);
    assert!(
        started.elapsed().as_secs_f64() < 10.0,
        "three iterations took {:?}",
        started.elapsed()
    );
    assert_eq!(
        read(&task.cgroup.dir("cpuset").join("cpuset.cpus")),
        cpus_before
    );
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cpu_set"))
        .collect();
    assert_eq!(refused.len(), 1, "logged once:\n{stderr}");
    assert!(
        refused[0].contains("cpu_set \"0-65535,0-65535,")
            && refused[0].contains("3999999 bytes long, more than 65536"),
        "{}",
        refused[0]
    );
    assert!(refused[0].len() < 1000, "{}", refused[0]);
}

/// A cpuset change on a real v1 cpuset cgroup keeps the memory nodes it has (Mesos' or
/// an operator's choice): `cpuset.mems` is not written at all (its mtime, which cgroupfs
/// sets on every write, stays), while `cpuset.cpus` changes.
#[test]
fn a_cpuset_change_keeps_the_cgroups_memory_nodes() {
    require_root!();
    let task = placed("alloc-mems", &["cpu", "cpuacct", "cpuset"], quiet());
    let cpuset = task.cgroup.dir("cpuset").to_owned();
    let mems = cpuset.join("cpuset.mems");
    let mems_before = read(&mems);
    assert!(!mems_before.is_empty(), "the helper gave the cgroup mems");
    let written = || std::fs::metadata(&mems).unwrap().modified().unwrap();
    let before = written();
    sleep_s(0.05);
    let dir = tempfile::tempdir().unwrap();
    let node = format!("!StaticNode {{tasks: [{}]}}", task.rel);
    let mut agent = Allocating::start(
        dir.path(),
        &node,
        "!StaticAllocator {rules: [{allocations: {cpu_set: '0'}}]}",
    );
    agent.wait_allocations("the cpuset allocation", |t| {
        sample(t, "allocation_cpuset_cpus", &[]) == Some(1.0)
    });
    assert_eq!(read(&cpuset.join("cpuset.cpus")), "0");
    assert_eq!(read(&mems), mems_before);
    assert_eq!(written(), before, "cpuset.mems was rewritten");
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}
