//! The cgroup readers against the real kernel (root): a v1 and a v2 cgroup made for the
//! test, with a process in it, and the test cgroups' own cleanup.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::path::Path;

use owca::cgroups::{Cgroup, Mounts, proc_cgroup};
use support::{TestCgroup, skip, workload::sleeper_in};

#[test]
fn real_v1_cgroup_accounts_its_process() {
    require_root!();
    let mounts = Mounts::discover().expect("reading /proc/self/mountinfo");
    let rel = format!("owca-test-{}", std::process::id());
    let cg = TestCgroup::create(&mounts, &["cpuacct", "memory"], &rel)
        .expect("creating the test cgroup");
    let child = sleeper_in(&cg);
    let pid = child.pid();

    let reader = Cgroup::new(&mounts, cg.path());
    assert!(
        reader
            .cpu_usage_ns()
            .expect("reading cpuacct.usage")
            .is_some()
    );
    let memory = reader
        .memory_usage_bytes()
        .expect("reading memory.usage_in_bytes");
    assert!(memory.is_some_and(|m| m > 0), "memory usage {memory:?}");
    assert_eq!(
        reader
            .has_processes("memory")
            .expect("reading cgroup.procs"),
        Some(true)
    );
    let procs = proc_cgroup(Path::new("/proc"), pid)
        .expect("reading the child's /proc/<pid>/cgroup")
        .expect("the child is alive");
    assert_eq!(procs.v1("cpuacct"), Some(cg.path()));
    assert_eq!(procs.v1("memory"), Some(cg.path()));
    assert!(cg.inode("cpuacct").expect("stat of the cgroup directory") > 1);

    drop(child);
    drop(cg);
    assert!(
        !mounts
            .v1("cpuacct")
            .expect("cpuacct mounted")
            .join(&rel)
            .exists(),
        "cleaned up"
    );
}

#[test]
fn real_v2_cgroup_when_cpuacct_is_not_on_v1() {
    require_root!();
    let real = Mounts::discover().expect("reading /proc/self/mountinfo");
    let Some(unified) = real.v2() else {
        skip(test_name!(), "cgroup v2 is not mounted");
        return;
    };
    // The same kernel seen as a v2-only host: no v1 hierarchies.
    let mounts = Mounts::parse(&format!(
        "1 1 0:1 / {} rw - cgroup2 cgroup2 rw\n",
        unified.display()
    ));
    let rel = format!("owca-test-v2-{}", std::process::id());
    let cg = TestCgroup::create_v2(&mounts, &rel).expect("creating the test cgroup");
    let child = sleeper_in(&cg);
    let reader = Cgroup::new(&mounts, cg.path());
    let usage = reader.cpu_usage_ns().expect("reading cpu.stat");
    assert!(
        usage.is_some_and(|ns| ns > 0 && ns % 1000 == 0),
        "usage {usage:?}"
    );
    assert_eq!(
        reader.has_processes("cpu").expect("reading cgroup.procs"),
        Some(true)
    );
    let procs = proc_cgroup(Path::new("/proc"), child.pid()).expect("reading /proc/<pid>/cgroup");
    assert_eq!(procs.as_ref().and_then(|p| p.v2()), Some(cg.path()));
    drop(child);
    drop(cg);
    assert!(!unified.join(&rel).exists(), "cleaned up");
}

#[test]
fn test_cgroups_remove_the_parents_they_made() {
    require_root!();
    let mounts = Mounts::discover().expect("reading /proc/self/mountinfo");
    let top = format!("owca-test-nest-{}", std::process::id());
    let inner =
        TestCgroup::create(&mounts, &["cpuacct"], &format!("{top}/a/b")).expect("creating a/b");
    // A test may also make a parent explicitly, and drop it before the child.
    let parent =
        TestCgroup::create(&mounts, &["cpuacct"], &format!("{top}/a")).expect("creating a");
    let top_dir = mounts.v1("cpuacct").expect("cpuacct mounted").join(&top);
    assert!(top_dir.join("a/b").is_dir());
    drop(parent);
    assert!(
        top_dir.join("a/b").is_dir(),
        "the child's cgroup stays while the child lives"
    );
    drop(inner);
    assert!(!top_dir.exists(), "{} left behind", top_dir.display());
}
