//! Tests against a resctrl-shaped temp tree. On a real mount the kernel fills a new group
//! with `tasks` and `mon_data/` and rmdir takes them along; here the test plays the kernel.

use std::{
    fs,
    path::{Path, PathBuf},
};

use tempfile::TempDir;

use super::*;

/// A mounted resctrl with L3 monitoring and no groups yet.
fn fake_resctrl() -> TempDir {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    fs::create_dir_all(p.join("info/L3_MON")).unwrap();
    fs::write(
        p.join("info/L3_MON/mon_features"),
        "llc_occupancy\nmbm_total_bytes\nmbm_local_bytes\n",
    )
    .unwrap();
    fs::write(p.join("info/L3_MON/num_rmids"), "176\n").unwrap();
    fs::write(p.join("info/last_cmd_status"), "ok\n").unwrap();
    fs::write(p.join("tasks"), "1\n2\n").unwrap();
    fs::create_dir(p.join("mon_groups")).unwrap();
    root
}

/// What the kernel does on mkdir: the group's files, one `mon_L3_NN` per `(llc, mbm)`.
fn kernel_fills(group: &Path, domains: &[(&str, &str)]) {
    fs::write(group.join("tasks"), "").unwrap();
    for (i, (llc, mbm)) in domains.iter().enumerate() {
        let d = group.join(format!("mon_data/mon_L3_{i:02}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("llc_occupancy"), format!("{llc}\n")).unwrap();
        fs::write(d.join("mbm_total_bytes"), format!("{mbm}\n")).unwrap();
        fs::write(d.join("mbm_local_bytes"), "0\n").unwrap();
    }
}

/// What the kernel does on rmdir before the directory goes: its files go with it.
fn kernel_empties(group: &Path) {
    for entry in fs::read_dir(group).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
}

fn group(root: &TempDir, task_id: &str) -> PathBuf {
    root.path().join("mon_groups").join(group_name(task_id))
}

/// Adds a task the way it happens on a real mount: mkdir, kernel files, threads.
fn added(root: &TempDir, task_id: &str, domains: &[(&str, &str)], pids: &[u32]) -> Resctrl {
    let mut r = Resctrl::at(root.path().to_owned());
    r.add_task(task_id, &[]).unwrap();
    kernel_fills(&group(root, task_id), domains);
    r.refresh_pids(task_id, pids).unwrap();
    r
}

#[test]
fn detects_only_a_mounted_resctrl_with_monitoring() {
    let root = fake_resctrl();
    let r = Resctrl::detect(root.path()).unwrap().unwrap();
    assert_eq!(r.root(), root.path());

    // The kernel's empty mount point, and no directory at all: not mounted.
    let empty = tempfile::tempdir().unwrap();
    assert!(Resctrl::detect(empty.path()).unwrap().is_none());
    assert!(
        Resctrl::detect(&empty.path().join("absent"))
            .unwrap()
            .is_none()
    );

    // Mounted for allocation only.
    fs::remove_dir(root.path().join("mon_groups")).unwrap();
    let e = Resctrl::detect(root.path()).unwrap_err();
    assert!(matches!(e, ResctrlError::NoMonitoring { .. }), "{e}");

    // A root that is a file cannot be examined.
    let file = empty.path().join("file");
    fs::write(&file, "").unwrap();
    let e = Resctrl::detect(&file).unwrap_err();
    assert!(
        matches!(e, ResctrlError::Access { ref path, .. } if path.starts_with(&file)),
        "{e}"
    );
}

#[test]
fn sums_both_readings_over_l3_domains() {
    let root = fake_resctrl();
    let r = added(&root, "web/1", &[("1000", "5000"), ("24", "70")], &[]);
    assert_eq!(
        r.measure("web/1").unwrap(),
        ResctrlMeasurement {
            memory_bandwidth_bytes: Some(5070),
            llc_occupancy_bytes: Some(1024),
        }
    );
    // Only `mon_L3_*` directories are domains.
    fs::create_dir(group(&root, "web/1").join("mon_data/mon_PERF_PKG_00")).unwrap();
    assert_eq!(r.measure("web/1").unwrap().llc_occupancy_bytes, Some(1024));
}

#[test]
fn a_domain_without_a_value_voids_that_sum_only() {
    let root = fake_resctrl();
    let r = added(&root, "t", &[("1000", "5000"), ("24", "Unavailable")], &[]);
    let m = r.measure("t").unwrap();
    assert_eq!(m.memory_bandwidth_bytes, None);
    assert_eq!(m.llc_occupancy_bytes, Some(1024));

    // A missing file (the CPU lacks MBM) is also no value.
    let d1 = group(&root, "t").join("mon_data/mon_L3_01");
    fs::write(d1.join("mbm_total_bytes"), "Error\n").unwrap();
    fs::remove_file(group(&root, "t").join("mon_data/mon_L3_00/llc_occupancy")).unwrap();
    assert_eq!(r.measure("t").unwrap(), ResctrlMeasurement::default());

    // Anything else is an error naming the file.
    fs::write(d1.join("llc_occupancy"), "lots\n").unwrap();
    fs::write(
        group(&root, "t").join("mon_data/mon_L3_00/llc_occupancy"),
        "1\n",
    )
    .unwrap();
    match r.measure("t").unwrap_err() {
        ResctrlError::Parse { path, value } => {
            assert_eq!(path, d1.join("llc_occupancy"));
            assert_eq!(value, "lots");
        }
        e => panic!("{e}"),
    }

    // No mon_data at all: nothing to report.
    fs::remove_dir_all(group(&root, "t").join("mon_data")).unwrap();
    assert_eq!(r.measure("t").unwrap(), ResctrlMeasurement::default());
}

#[test]
fn moves_each_thread_once_in_its_own_write() {
    let root = fake_resctrl();
    let mut r = added(&root, "t", &[("0", "0")], &[10, 11]);
    let tasks = group(&root, "t").join("tasks");
    assert_eq!(fs::read_to_string(&tasks).unwrap(), "10\n11\n");
    // Threads already in the group are not written again.
    r.refresh_pids("t", &[11, 12, 10]).unwrap();
    assert_eq!(fs::read_to_string(&tasks).unwrap(), "10\n11\n12\n");
    assert!(matches!(
        r.refresh_pids("other", &[1]),
        Err(ResctrlError::UnknownTask { task_id }) if task_id == "other"
    ));
}

#[test]
fn a_group_without_tasks_file_is_an_error_naming_it() {
    let root = fake_resctrl();
    let mut r = Resctrl::at(root.path().to_owned());
    match r.add_task("t", &[1]).unwrap_err() {
        ResctrlError::Read { path, .. } => assert_eq!(path, group(&root, "t").join("tasks")),
        e => panic!("{e}"),
    }
    // The group was made and is known, so it is not leaked.
    assert!(r.has_task("t"));
    assert!(group(&root, "t").is_dir());
}

#[test]
fn takes_over_a_group_left_by_a_previous_run() {
    let root = fake_resctrl();
    let dir = group(&root, "t");
    fs::create_dir(&dir).unwrap();
    kernel_fills(&dir, &[("3", "4")]);
    fs::write(dir.join("tasks"), "10\n").unwrap();
    let mut r = Resctrl::at(root.path().to_owned());
    r.add_task("t", &[10, 11]).unwrap();
    assert_eq!(fs::read_to_string(dir.join("tasks")).unwrap(), "10\n11\n");
    assert_eq!(r.measure("t").unwrap().memory_bandwidth_bytes, Some(4));
}

#[test]
fn removal_deletes_the_group_and_forgets_the_task() {
    let root = fake_resctrl();
    let mut r = added(&root, "t", &[("1", "2")], &[10]);
    kernel_empties(&group(&root, "t"));
    r.remove_task("t").unwrap();
    assert!(!group(&root, "t").exists());
    assert!(!r.has_task("t"));
    assert!(matches!(
        r.measure("t"),
        Err(ResctrlError::UnknownTask { .. })
    ));
    // Unknown tasks and groups already gone are fine.
    r.remove_task("t").unwrap();
    r.remove_task("never").unwrap();
}

#[test]
fn failed_removal_is_retried_by_cleanup() {
    let root = fake_resctrl();
    let mut r = added(&root, "t", &[("1", "2")], &[10]);
    // A plain directory with files refuses rmdir, standing in for any kernel refusal.
    let e = r.remove_task("t").unwrap_err();
    assert!(
        matches!(e, ResctrlError::RemoveGroup { ref path, .. } if *path == group(&root, "t")),
        "{e}"
    );
    assert!(!r.has_task("t"));
    kernel_empties(&group(&root, "t"));
    assert!(r.cleanup_stale([]).is_empty());
    assert!(!group(&root, "t").exists());
}

#[test]
fn cleanup_removes_only_stale_owca_groups() {
    let root = fake_resctrl();
    let mon_groups = root.path().join("mon_groups");
    let mut r = added(&root, "live", &[("1", "2")], &[]);
    r.add_task("ended", &[]).unwrap();
    // Left by a previous run: one for a task still running, one for a task that ended.
    fs::create_dir(group(&root, "running/since-before")).unwrap();
    fs::create_dir(group(&root, "ended-while-down")).unwrap();
    // Someone else's groups.
    fs::create_dir(mon_groups.join("pqos-1")).unwrap();
    fs::create_dir(mon_groups.join("owca")).unwrap();

    let errors = r.cleanup_stale(["live", "running/since-before"]);
    assert!(errors.is_empty(), "{errors:?}");
    let mut left: Vec<String> = fs::read_dir(&mon_groups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["owca", "owca-live", "owca-running%2Fsince-before", "pqos-1"]
    );
    assert!(r.has_task("live"));
    assert!(!r.has_task("ended"));
    assert_eq!(r.measure("live").unwrap().llc_occupancy_bytes, Some(1));
}

#[test]
fn colliding_names_are_refused() {
    let root = fake_resctrl();
    let mut r = Resctrl::at(root.path().to_owned());
    // Stands in for a hash collision of two over-long ids.
    r.groups.insert("first".into(), group_name("second"));
    match r.add_task("second", &[]).unwrap_err() {
        ResctrlError::NameCollision { task_id, other, .. } => {
            assert_eq!((task_id.as_str(), other.as_str()), ("second", "first"))
        }
        e => panic!("{e}"),
    }
}

#[test]
fn errors_name_the_kernel_reason() {
    let root = fake_resctrl();
    let r = Resctrl::at(root.path().to_owned());
    assert_eq!(r.kernel_status(), "");
    fs::write(
        root.path().join("info/last_cmd_status"),
        "Can't move task to different control group\n",
    )
    .unwrap();
    assert_eq!(
        r.kernel_status(),
        "; kernel says: Can't move task to different control group"
    );
}
