//! RDT allocation through the `owca` binary against a resctrl-shaped temp tree
//! (`OWCA_RESCTRL_ROOT`): schemata and `tasks` of the task's control group, OWCA's RDT
//! allocation metrics, invalid masks refused as a whole, and what allocators are told
//! RDT allocation offers (`platform.rdt_information`).
//!
//! Plain directories get no kernel-made files: the task's control group is made
//! beforehand with its `tasks` and `schemata`, as the kernel would on mkdir.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use support::{resctrl::ResctrlTree, workload::quiet, *};

/// The root schemata of [`fake_resctrl`]'s machine, all ways and full bandwidth.
const SCHEMATA: &str = "L3:0=fff;1=fff\nMB:0=100;1=100\n";

/// A resctrl mount as a 2-socket machine with L3 CAT (12 ways) and MBA shows it, with
/// the control groups `groups` already made.
fn fake_resctrl(root: &Path, groups: &[&str]) -> ResctrlTree {
    let tree = ResctrlTree::new(root)
        .with_l3_allocation("fff", 1, 16)
        .with_mb_allocation(10, 10, 8)
        .with_schemata(SCHEMATA);
    groups.iter().fold(tree, |t, g| t.with_control_group(g))
}

/// An agent with an allocation runner on `resctrl`, writing allocation metrics to a file.
struct Allocating {
    agent: Agent,
    allocations: PathBuf,
}

impl Allocating {
    fn start(dir: &Path, resctrl: &Path, task: &str, rules: &str) -> Self {
        Self::start_allocator(
            dir,
            resctrl,
            task,
            &format!("!StaticAllocator {{rules: {rules}}}"),
        )
    }

    fn start_allocator(dir: &Path, resctrl: &Path, task: &str, allocator: &str) -> Self {
        let allocations = dir.join("allocations.prom");
        let agent = Agent::start_with(
            dir,
            &format!(
                "runner: !AllocationRunner\n  node: !StaticNode {{tasks: [{task}]}}\n  action_delay: 0.3\n  \
                 metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 allocations_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 rdt_enabled: true\n  rdt_cache_control_required: true\n  \
                 allocator: {allocator}\n",
                dir.join("metrics.prom").display(),
                allocations.display(),
            ),
            &[],
            &[("OWCA_RESCTRL_ROOT", resctrl.as_os_str())],
        );
        Self { agent, allocations }
    }

    /// Waits for the allocation metrics to satisfy `ok`; see [`Agent::wait_for`].
    fn wait(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.allocations, what, ok)
    }
}

#[test]
fn rdt_rule_sets_the_task_group_schemata_and_moves_its_threads() {
    require_root!();
    let task = placed("alloc-rdt", &["cpu", "cpuacct"], quiet());
    let group = owca::resctrl::group_name(&task.rel);
    let dir = tempfile::tempdir().unwrap();
    let resctrl = dir.path().join("resctrl");
    fake_resctrl(&resctrl, &[&group]);
    let mut agent = Allocating::start(
        dir.path(),
        &resctrl,
        &task.rel,
        "[{allocations: {rdt: {l3: 'L3:0=00f;1=0ff', mb: 'MB:0=50;1=100'}}}]",
    );
    let on_task = format!("task=\"{}\"", task.rel);
    let text = agent.wait("the RDT allocation metrics", |t| {
        sample(
            t,
            "allocation_rdt_l3_cache_ways",
            &[&on_task, "domain_id=\"1\""],
        ) == Some(8.0)
    });
    let labels = [
        on_task.as_str(),
        "domain_id=\"0\"",
        "allocation_type=\"rdt_l3_mask\"",
    ];
    let group_label = format!("group_name=\"{group}\"");
    assert_eq!(
        sample(&text, "allocation_rdt_l3_mask", &labels),
        Some(15.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "allocation_rdt_mb",
            &[&on_task, "domain_id=\"0\"", &group_label]
        ),
        Some(50.0),
        "{text}"
    );
    let schemata = std::fs::read_to_string(resctrl.join(&group).join("schemata")).unwrap();
    assert!(
        schemata.contains("L3:0=00f;1=0ff") || schemata.contains("L3:0=f;1=ff"),
        "{schemata}"
    );
    assert!(schemata.contains("MB:0=50;1=100"), "{schemata}");
    let tasks = std::fs::read_to_string(resctrl.join(&group).join("tasks")).unwrap();
    assert!(
        tasks
            .lines()
            .any(|l| l.trim() == task.proc.pid().to_string()),
        "the task's thread moved into its group: {tasks:?}"
    );

    // The task's monitoring group followed it into its control group.
    let followed = resctrl.join(&group).join("mon_groups").join(&group);
    let start = Instant::now();
    while !followed.is_dir() && start.elapsed().as_secs() < 10 {
        sleep_s(0.1);
    }
    assert!(
        followed.is_dir(),
        "no monitoring group under the control group"
    );
    assert!(!resctrl.join("mon_groups").join(&group).exists());

    // A mask with a hole is refused: nothing changes, the error is counted.
    drop(agent);
    let mut agent = Allocating::start(
        dir.path(),
        &resctrl,
        &task.rel,
        "[{allocations: {rdt: {l3: 'L3:0=505;1=0ff'}}}]",
    );
    agent.wait("the refused mask", |t| {
        sample(t, "allocations_errors", &[]).is_some_and(|n| n >= 1.0)
    });
    let after = std::fs::read_to_string(resctrl.join(&group).join("schemata")).unwrap();
    assert_eq!(after, schemata, "an invalid mask wrote nothing");
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn rdt_enabled_without_resctrl_stops_the_agent_naming_the_root() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-resctrl-here");
    let mut agent = Allocating::start(dir.path(), &missing, "mesos/none", "[]");
    let (status, stderr) = agent.agent.wait_exit();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("no-resctrl-here"), "{stderr}");
}

/// An operator's control group named by an allocation: refused as a whole and counted,
/// its schemata and tasks untouched, and it is not removed though it holds no thread.
#[test]
fn an_existing_group_the_agent_did_not_make_is_refused_and_left_alone() {
    require_root!();
    let task = placed("alloc-rdt-foreign", &["cpu", "cpuacct"], quiet());
    let dir = tempfile::tempdir().unwrap();
    let resctrl = dir.path().join("resctrl");
    fake_resctrl(&resctrl, &["operator"]);
    let before = std::fs::read_to_string(resctrl.join("operator/schemata")).unwrap();
    let mut agent = Allocating::start(
        dir.path(),
        &resctrl,
        &task.rel,
        "[{allocations: {rdt: {name: operator, l3: 'L3:0=00f;1=00f'}}}]",
    );
    let text = agent.wait("the refused allocations", |t| {
        sample(t, "allocations_errors", &[]).is_some_and(|n| n >= 3.0)
    });
    assert_eq!(sample(&text, "allocations_count", &[]), Some(0.0), "{text}");
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(resctrl.join("operator/schemata")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(resctrl.join("operator/tasks")).unwrap(),
        ""
    );
    assert!(resctrl.join("operator").is_dir(), "the group was removed");
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("was not made by the agent"))
        .collect();
    assert_eq!(refused.len(), 1, "logged once:\n{stderr}");
    assert!(
        refused[0].contains(&format!(
            "task {}: resctrl group \"operator\" exists and was not made by the agent",
            task.rel
        )),
        "{}",
        refused[0]
    );
}

/// An allocator plug-in is told what RDT allocation offers, and the shared group that
/// `!CollocationAllocator`'s `rdt` lever uses for best-effort tasks is made, written and
/// filled by the allocation stage like any group named `owca-...`; `name: ''` takes the
/// task back to the root group.
#[test]
fn allocators_get_rdt_information_and_a_shared_best_effort_group_is_applied() {
    require_root!();
    let task = placed("alloc-rdt-shared", &["cpu", "cpuacct"], quiet());
    let dir = tempfile::tempdir().unwrap();
    let resctrl = dir.path().join("resctrl");
    let group = owca::allocators::BEST_EFFORT_GROUP;
    fake_resctrl(&resctrl, &[group]);
    let told = dir.path().join("rdt_information.json");
    // Writes what it was told; answers the group while `back` does not exist, then the
    // root group.
    let back = dir.path().join("back");
    let script = format!(
        "import json, os, sys\nsys.stdin.readline()\nfor line in sys.stdin:\n    req = json.loads(line)\n    open(sys.argv[1], 'w').write(json.dumps(req['platform'].get('rdt_information')))\n    rdt = {{'name': ''}} if os.path.exists(sys.argv[2]) else {{'name': '{group}', 'l3': 'L3:0=3;1=3', 'mb': 'MB:0=20;1=20'}}\n    print(json.dumps({{'allocations': {{t: {{'rdt': rdt}} for t in req['tasks']}}}}), flush=True)"
    );
    let allocator = format!(
        "!ExternalAllocator {{command: [python3, -c, {}, {}, {}], timeout: 2}}",
        serde_json::to_string(&script).unwrap(),
        told.display(),
        back.display(),
    );
    let mut agent = Allocating::start_allocator(dir.path(), &resctrl, &task.rel, &allocator);
    let on_task = format!("task=\"{}\"", task.rel);
    let group_label = format!("group_name=\"{group}\"");
    agent.wait("the shared group's allocation", |t| {
        sample(t, "allocation_rdt_mb", &[&on_task, &group_label]) == Some(20.0)
    });
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&told).unwrap()).unwrap();
    assert_eq!(
        info,
        serde_json::json!({
            "cbm_mask": 0xfff, "min_cbm_bits": 1, "num_closids": 8,
            "l3_domains": [0, 1], "mb": {"min_bandwidth": 10, "bandwidth_gran": 10},
            "mb_domains": [0, 1]
        })
    );
    assert_eq!(
        std::fs::read_to_string(resctrl.join(group).join("schemata")).unwrap(),
        "L3:0=3;1=3\nMB:0=20;1=20\n"
    );
    let pid = task.proc.pid().to_string();
    let in_group = std::fs::read_to_string(resctrl.join(group).join("tasks")).unwrap();
    assert!(in_group.lines().any(|l| l.trim() == pid), "{in_group:?}");
    // Back to the root group; the test plays the kernel, which takes the thread out of
    // the group it leaves.
    std::fs::write(&back, "").unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(resctrl.join("tasks"))
        .unwrap()
        .lines()
        .any(|l| l.trim() == pid)
        && start.elapsed().as_secs() < 10
    {
        sleep_s(0.1);
    }
    std::fs::write(resctrl.join(group).join("tasks"), "").unwrap();
    agent.wait("the task back in the root group", |t| {
        sample(t, "allocation_rdt_mb", &[&on_task, "group_name=\"\""]) == Some(100.0)
    });
    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
}
