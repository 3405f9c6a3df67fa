//! The `rdt` lever's decisions applied through `RdtControl` (the allocation stage's
//! resctrl part: validate as a whole, apply, read back) onto a resctrl-shaped temp tree.

use std::{collections::BTreeMap, fs, path::Path};

use super::*;
use crate::resctrl::RdtControl;

/// A resctrl mount as in `resctrl::control_tests`: 2 domains of 12 ways, MBA, 4 CLOSIDs,
/// threads 1 to 4 in the root group.
fn fake_resctrl(root: &Path) {
    let files = [
        ("info/last_cmd_status", "ok\n"),
        ("info/L3/cbm_mask", "fff\n"),
        ("info/L3/min_cbm_bits", "2\n"),
        ("info/L3/num_closids", "4\n"),
        ("info/MB/min_bandwidth", "10\n"),
        ("info/MB/bandwidth_gran", "10\n"),
        ("info/MB/num_closids", "8\n"),
        ("schemata", "L3:0=fff;1=fff\nMB:0=100;1=100\n"),
        ("tasks", "1\n2\n3\n4\n"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    fs::create_dir_all(root.join("mon_groups")).unwrap();
}

#[test]
fn the_decisions_applied_through_resctrl_control_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_resctrl(root);
    let mut control = RdtControl::open(root, false).unwrap();
    // Threads: lc 1, be1 2, be2 3, be3 4.
    let threads: BTreeMap<String, Vec<u32>> = [("lc", 1), ("be1", 2), ("be2", 3), ("be3", 4)]
        .into_iter()
        .map(|(id, tid)| (id.to_owned(), vec![tid]))
        .collect();
    // What the kernel holds, as the allocation stage reads it back.
    let current = |control: &RdtControl| -> BTreeMap<String, TaskAllocations> {
        control
            .current(&threads)
            .unwrap()
            .into_iter()
            .map(|(id, rdt)| {
                let a = TaskAllocations {
                    cpu_quota: Some(1.0),
                    cpu_idle: Some(true),
                    rdt: Some(rdt),
                    ..Default::default()
                };
                (id, a)
            })
            .collect()
    };
    // Validated as a whole, then applied, as the allocation stage does.
    let apply = |control: &mut RdtControl, d: &CollocationDecision| {
        let desired: BTreeMap<String, RdtAllocation> = d
            .allocations
            .iter()
            .filter_map(|(id, a)| Some((id.clone(), a.rdt.clone()?)))
            .collect();
        control.validate(&desired).unwrap();
        for (id, a) in &desired {
            control.apply(id, a, &threads[id]).unwrap();
        }
    };
    let mut a = allocator("");
    let mut node = Node::new(Some(control.capabilities().clone()));
    let mut decide = |a: &mut CollocationAllocator, control: &RdtControl, cpi: f64| {
        let have = current(control);
        a.allocate(&node.next(cpi, [&have["be1"], &have["be2"], &have["be3"]]))
    };
    for _ in 0..4 {
        assert!(decide(&mut a, &control, 1.0).allocations.is_empty());
    }
    // The kernel would make the group's files on mkdir: the test plays it.
    let group = root.join(BEST_EFFORT_GROUP);
    fs::create_dir_all(group.join("mon_groups")).unwrap();
    fs::write(group.join("schemata"), "L3:0=fff;1=fff\nMB:0=100;1=100\n").unwrap();
    fs::write(group.join("tasks"), "").unwrap();
    let d = decide(&mut a, &control, 2.0);
    assert_eq!(d.allocations.len(), 2, "{d:?}");
    apply(&mut control, &d);
    let schemata = fs::read_to_string(group.join("schemata")).unwrap();
    assert_eq!(schemata, "L3:0=3;1=3\nMB:0=20;1=20\n");
    assert_eq!(fs::read_to_string(group.join("tasks")).unwrap(), "2\n3\n");
    // The kernel takes moved threads out of their old group.
    fs::write(root.join("tasks"), "1\n4\n").unwrap();
    // Read back, the tasks are held: a further outlier moves nothing, and neither does a
    // restarted allocator.
    let held = current(&control);
    assert_eq!(held["be1"].rdt, in_group().rdt);
    assert_eq!(
        held["lc"].rdt.as_ref().and_then(|r| r.name.as_deref()),
        Some("")
    );
    assert!(decide(&mut a, &control, 8.0).allocations.is_empty());
    let mut fresh = allocator("");
    assert!(decide(&mut fresh, &control, 1.0).allocations.is_empty());
    // Calm: back to the root group, and the emptied group is removed.
    let mut back = None;
    for _ in 0..3 {
        let d = decide(&mut a, &control, 1.0);
        if !d.allocations.is_empty() {
            back = Some(d);
            break;
        }
    }
    let back = back.expect("given back after calm_iterations");
    assert_eq!(back.allocations.keys().collect::<Vec<_>>(), ["be1", "be2"]);
    apply(&mut control, &back);
    let root_tasks = fs::read_to_string(root.join("tasks")).unwrap();
    assert_eq!(root_tasks, "1\n4\n2\n3\n");
    // The BE group is the agent's and now empty: it tries rmdir, which a plain
    // directory with files refuses (the kernel's would take them along).
    fs::write(group.join("tasks"), "").unwrap();
    let errors = control.remove_empty_groups();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_string().contains(BEST_EFFORT_GROUP),
        "{errors:?}"
    );
}
