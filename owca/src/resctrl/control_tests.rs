//! RDT allocation against a resctrl-shaped temp tree (2 L3 domains, 12 ways, MBA). The
//! test plays the kernel where it would act on its own: files of a new group, emptying
//! a group before rmdir.

use std::{collections::BTreeMap, fs, path::Path};

use tempfile::TempDir;

use super::{control::*, *};

const ROOT_SCHEMATA: &str = "    L3:0=fff;1=fff\n    MB:0=100;1=100\n";

fn fake_tree(l3: bool, mb: bool) -> TempDir {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    let mut files = vec![
        ("info/last_cmd_status", "ok\n"),
        ("schemata", ROOT_SCHEMATA),
        ("tasks", "1\n2\n"),
    ];
    if l3 {
        files.extend([
            ("info/L3/cbm_mask", "fff\n"),
            ("info/L3/min_cbm_bits", "2\n"),
            ("info/L3/num_closids", "4\n"),
        ]);
    }
    if mb {
        files.extend([
            ("info/MB/min_bandwidth", "10\n"),
            ("info/MB/bandwidth_gran", "10\n"),
            ("info/MB/num_closids", "8\n"),
        ]);
    }
    fs::create_dir_all(p.join("info")).unwrap();
    for (path, text) in files {
        let path = p.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    fs::create_dir_all(p.join("mon_groups")).unwrap();
    root
}

/// A control group as the kernel makes it on mkdir, holding `tids`.
fn kernel_group(root: &Path, name: &str, tids: &str) {
    let dir = root.join(name);
    fs::create_dir_all(dir.join("mon_groups")).unwrap();
    fs::write(dir.join("schemata"), ROOT_SCHEMATA).unwrap();
    fs::write(dir.join("tasks"), tids).unwrap();
}

fn rdt(name: Option<&str>, l3: Option<&str>, mb: Option<&str>) -> RdtAllocation {
    RdtAllocation {
        name: name.map(str::to_owned),
        l3: l3.map(str::to_owned),
        mb: mb.map(str::to_owned),
    }
}

fn one(task: &str, a: RdtAllocation) -> BTreeMap<String, RdtAllocation> {
    BTreeMap::from([(task.to_owned(), a)])
}

#[test]
fn open_reads_what_the_hardware_offers_or_says_why_not() {
    let tree = fake_tree(true, true);
    let c = RdtControl::open(tree.path(), false).unwrap();
    let caps = c.capabilities();
    assert_eq!(caps.cbm_mask, Some(0xfff));
    assert_eq!(caps.min_cbm_bits, 2);
    assert_eq!(caps.num_closids, 4, "the fewer of L3's and MB's");
    assert_eq!(
        (caps.l3_domains.clone(), caps.mb_domains.clone()),
        (vec![0, 1], vec![0, 1])
    );
    assert_eq!(
        caps.mb,
        Some(MbCapabilities {
            min_bandwidth: 10,
            bandwidth_gran: 10
        })
    );

    let missing = tree.path().join("nowhere");
    let e = RdtControl::open(&missing, false).unwrap_err().to_string();
    assert!(e.contains("not mounted") && e.contains("nowhere"), "{e}");
    let bare = fake_tree(false, false);
    let e = RdtControl::open(bare.path(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("offers no allocation"), "{e}");
    let mb_only = fake_tree(false, true);
    let c = RdtControl::open(mb_only.path(), false).unwrap();
    assert_eq!(
        (c.capabilities().cbm_mask, c.capabilities().num_closids),
        (None, 8)
    );
}

#[test]
fn remove_all_resctrl_groups_removes_every_control_group_but_the_kernels_dirs() {
    let tree = fake_tree(true, true);
    fs::create_dir(tree.path().join("someone-else")).unwrap();
    fs::create_dir(tree.path().join("owca-old")).unwrap();
    RdtControl::open(tree.path(), false).unwrap();
    assert!(tree.path().join("someone-else").exists());
    RdtControl::open(tree.path(), true).unwrap();
    assert!(!tree.path().join("someone-else").exists());
    assert!(!tree.path().join("owca-old").exists());
    assert!(tree.path().join("info").exists() && tree.path().join("mon_groups").exists());
}

#[test]
fn validation_refuses_what_the_hardware_would_and_names_task_and_value() {
    let tree = fake_tree(true, true);
    let c = RdtControl::open(tree.path(), false).unwrap();
    assert_eq!(
        c.validate(&one(
            "t",
            rdt(None, Some("L3:0=00f;1=ff0"), Some("MB:0=50;1=100"))
        )),
        Ok(())
    );
    for (a, why) in [
        (rdt(None, Some("L3:0=505"), None), "not contiguous"),
        (
            rdt(None, Some("L3:0=1f000"), None),
            "wider than info/L3/cbm_mask",
        ),
        (rdt(None, Some("L3:0=1"), None), "min_cbm_bits"),
        (rdt(None, Some("L3:0=0"), None), "no cache way"),
        (rdt(None, Some("L3:2=f"), None), "no L3 domain 2"),
        (rdt(None, Some("MB:0=50"), None), "does not start with L3:"),
        (rdt(None, None, Some("MB:0=5")), "outside 10..=100"),
        (rdt(None, None, Some("MB:0=150")), "outside 10..=100"),
        (rdt(None, None, Some("MB:7=50")), "no MB domain 7"),
        (
            rdt(Some("a/b"), None, None),
            "cannot be a resctrl control group name",
        ),
        (
            rdt(Some("info"), None, None),
            "cannot be a resctrl control group name",
        ),
    ] {
        let e = c.validate(&one("task-1", a)).unwrap_err();
        assert_eq!(e.task_id, "task-1");
        assert!(e.reason.contains(why), "{why}: {e}");
    }
    let no_l3 = fake_tree(false, true);
    let c2 = RdtControl::open(no_l3.path(), false).unwrap();
    let e = c2
        .validate(&one("t", rdt(None, Some("L3:0=f"), None)))
        .unwrap_err();
    assert!(e.reason.contains("no L3 cache allocation"), "{e}");

    // 4 CLOSIDs: the root group and three others at most (an existing one counts).
    kernel_group(tree.path(), "someone-else", "");
    let groups = |n: usize| -> BTreeMap<String, RdtAllocation> {
        (0..n)
            .map(|i| (format!("t{i}"), rdt(None, Some("L3:0=f"), None)))
            .collect()
    };
    assert_eq!(c.validate(&groups(2)), Ok(()));
    let e = c.validate(&groups(3)).unwrap_err();
    assert!(e.reason.contains("more than the 4 CLOSIDs"), "{e}");
    // Tasks sharing a named group must ask the same of it.
    let shared = BTreeMap::from([
        ("a".to_owned(), rdt(Some("be"), Some("L3:0=f"), None)),
        ("b".to_owned(), rdt(Some("be"), Some("L3:0=00f"), None)),
        ("c".to_owned(), rdt(Some("be"), Some("L3:0=ff"), None)),
    ]);
    let e = c.validate(&shared).unwrap_err();
    assert_eq!(e.task_id, "c");
    assert!(e.reason.contains("other schemata than for task a"), "{e}");
}

#[test]
fn current_reads_each_tasks_group_and_its_lines_normalized() {
    let tree = fake_tree(true, true);
    kernel_group(tree.path(), "be", "10\n11\n");
    fs::write(
        tree.path().join("be/schemata"),
        "    L3:0=00f;1=0ff\n    MB:0=50;1=100\n",
    )
    .unwrap();
    let c = RdtControl::open(tree.path(), false).unwrap();
    let threads = BTreeMap::from([
        ("in-be".to_owned(), vec![11, 12]),
        ("in-root".to_owned(), vec![2]),
        ("gone".to_owned(), vec![99]),
    ]);
    let current = c.current(&threads).unwrap();
    assert_eq!(
        current["in-be"],
        rdt(Some("be"), Some("L3:0=f;1=ff"), Some("MB:0=50;1=100"))
    );
    assert_eq!(
        current["in-root"],
        rdt(Some(""), Some("L3:0=fff;1=fff"), Some("MB:0=100;1=100"))
    );
    assert!(!current.contains_key("gone"));
    assert_eq!(
        current["in-be"].l3_masks(),
        Some(BTreeMap::from([(0, 0xf), (1, 0xff)]))
    );
    assert_eq!(
        current["in-be"].mb_values(),
        Some(BTreeMap::from([(0, 50), (1, 100)]))
    );
}

#[test]
fn apply_writes_the_lines_given_moves_threads_and_empty_groups_go() {
    let tree = fake_tree(true, true);
    let mut c = RdtControl::open(tree.path(), false).unwrap();
    let own = group_name("task-1");
    // mkdir on a fresh name; the kernel then fills the group.
    c.apply("task-1", &rdt(None, None, None), &[]).unwrap();
    assert!(tree.path().join(&own).is_dir());
    kernel_group(tree.path(), &own, "");
    c.apply("task-1", &rdt(None, Some("L3:0=f;1=f"), None), &[21, 22])
        .unwrap();
    let schemata = fs::read_to_string(tree.path().join(&own).join("schemata")).unwrap();
    assert_eq!(schemata, "MB:0=100;1=100\nL3:0=f;1=f\n", "the MB line kept");
    let tasks = fs::read_to_string(tree.path().join(&own).join("tasks")).unwrap();
    assert_eq!(tasks, "21\n22\n");
    // Threads already there are not written again.
    c.apply("task-1", &rdt(None, None, None), &[22, 23])
        .unwrap();
    let tasks = fs::read_to_string(tree.path().join(&own).join("tasks")).unwrap();
    assert_eq!(tasks, "21\n22\n23\n");
    // The root group's defaults.
    c.apply(
        "root group",
        &rdt(Some(""), None, Some("MB:0=50;1=50")),
        &[],
    )
    .unwrap();
    let root = fs::read_to_string(tree.path().join("schemata")).unwrap();
    assert_eq!(root, "L3:0=fff;1=fff\nMB:0=50;1=50\n");

    // A group holding threads stays; once empty it goes; others' groups are never touched.
    kernel_group(tree.path(), "someone-else", "");
    assert!(c.remove_empty_groups().is_empty());
    assert!(tree.path().join(&own).exists());
    fs::write(tree.path().join(&own).join("tasks"), "").unwrap();
    // Play the kernel's rmdir, which takes the group's files along.
    let files = tree.path().join(&own);
    for f in ["schemata", "tasks"] {
        fs::remove_file(files.join(f)).unwrap();
    }
    fs::remove_dir(files.join("mon_groups")).unwrap();
    fs::write(files.join("tasks"), "").unwrap();
    let errors = c.remove_empty_groups();
    // The fake `tasks` file keeps rmdir from succeeding: the failure is reported, named.
    assert!(
        errors.iter().all(|e| e.to_string().contains(&own)),
        "{errors:?}"
    );
    fs::remove_file(files.join("tasks")).unwrap();
    assert!(c.remove_empty_groups().is_empty());
    assert!(!files.exists());
    assert!(tree.path().join("someone-else").exists());
}

#[test]
fn groups_the_agent_did_not_make_are_neither_written_nor_removed() {
    let tree = fake_tree(true, true);
    // An operator's group, holding nothing for now, and one a previous run left.
    kernel_group(tree.path(), "operator", "");
    kernel_group(tree.path(), "owca-shared", "5\n");
    let mut c = RdtControl::open(tree.path(), false).unwrap();
    let err = c
        .validate(&one("t1", rdt(Some("operator"), Some("L3:0=f;1=f"), None)))
        .unwrap_err();
    assert_eq!(err.task_id, "t1");
    assert!(
        err.reason
            .starts_with("resctrl group \"operator\" exists and was not made by the agent"),
        "{err}"
    );
    let err = c
        .apply("t1", &rdt(Some("operator"), Some("L3:0=f;1=f"), None), &[7])
        .unwrap_err();
    assert!(
        matches!(&err, ResctrlError::ForeignControlGroup { path } if path.ends_with("operator")),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(tree.path().join("operator/schemata")).unwrap(),
        ROOT_SCHEMATA
    );
    assert_eq!(
        fs::read_to_string(tree.path().join("operator/tasks")).unwrap(),
        ""
    );
    assert!(c.remove_empty_groups().is_empty());
    assert!(tree.path().join("operator").is_dir());

    // The agent's own: `owca-...` (a previous run's) and a new name it creates.
    c.validate(&one(
        "t1",
        rdt(Some("owca-shared"), Some("L3:0=f;1=f"), None),
    ))
    .unwrap();
    c.validate(&one("t1", rdt(Some("be"), Some("L3:0=f;1=f"), None)))
        .unwrap();
    c.apply("t1", &rdt(Some("be"), None, None), &[]).unwrap();
    kernel_group(tree.path(), "be", "");
    c.validate(&one("t2", rdt(Some("be"), Some("L3:0=f;1=f"), None)))
        .unwrap();
    c.apply("t2", &rdt(Some("be"), Some("L3:0=f;1=f"), None), &[8])
        .unwrap();
    assert_eq!(
        fs::read_to_string(tree.path().join("be/schemata")).unwrap(),
        "MB:0=100;1=100\nL3:0=f;1=f\n"
    );
    // The root group stays usable.
    c.validate(&one("t3", rdt(Some(""), None, Some("MB:0=50;1=50"))))
        .unwrap();
}

#[test]
fn a_refused_schemata_write_names_the_file_line_and_kernel_reason() {
    let tree = fake_tree(true, true);
    fs::write(
        tree.path().join("info/last_cmd_status"),
        "Mask out of range\n",
    )
    .unwrap();
    let mut c = RdtControl::open(tree.path(), false).unwrap();
    // A file that reads but refuses writes (EIO), as the kernel refuses a bad line.
    // A group of the agent's (a previous run's `owca-` one).
    fs::create_dir(tree.path().join("owca-be")).unwrap();
    std::os::unix::fs::symlink("/proc/version", tree.path().join("owca-be/schemata")).unwrap();
    let e = c
        .apply("t", &rdt(Some("owca-be"), Some("L3:0=f"), None), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("owca-be/schemata") && e.contains("Mask out of range"),
        "{e}"
    );
}

#[test]
fn monitoring_groups_follow_the_tasks_control_group() {
    let tree = fake_tree(true, true);
    kernel_group(tree.path(), "be", "");
    let mut r = Resctrl::at(tree.path().to_owned());
    let name = group_name("task-1");
    r.add_task("task-1", &[]).unwrap();
    assert!(tree.path().join("mon_groups").join(&name).is_dir());
    r.set_control_group("task-1", "be").unwrap();
    assert!(
        !tree.path().join("mon_groups").join(&name).exists(),
        "the old one removed"
    );
    r.refresh_pids("task-1", &[]).unwrap();
    let moved = tree.path().join("be/mon_groups").join(&name);
    assert!(moved.is_dir());
    // Not stale where it is now; stale under the root group.
    fs::create_dir(tree.path().join("mon_groups").join(&name)).unwrap();
    assert!(r.cleanup_stale(["task-1"]).is_empty());
    assert!(moved.is_dir());
    assert!(!tree.path().join("mon_groups").join(&name).exists());
    // Back to the root group.
    r.set_control_group("task-1", "").unwrap();
    assert!(!moved.exists());
    r.refresh_pids("task-1", &[]).unwrap();
    assert!(tree.path().join("mon_groups").join(&name).is_dir());
}
