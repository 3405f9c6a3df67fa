//! The eBPF collector on the real kernel: its counts against the kernel's own accounting.
//! Needs root; `cargo xtask test` runs these with one test thread.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{collections::BTreeMap, path::Path};

use owca::{
    cgroups::{Hierarchy, Mounts},
    collector::{CgroupDir, Collector, CollectorConfig, perf::EventSpec},
};
use owca_common::{BY_UNWATCHED_KEY, CgroupCounters};
use support::{
    workload::{busy, busy_on, page_faults, run_delay_ns, sleeper, status_field},
    *,
};

fn v1_dir(m: &Mounts, rel: &str) -> CgroupDir {
    CgroupDir::new(
        Hierarchy::v1("cpuacct"),
        m.v1("cpuacct").expect("cpuacct mounted"),
        rel,
    )
}

fn start(events: &[&str]) -> Collector {
    Collector::start(&CollectorConfig {
        events: events.iter().map(|e| e.to_string()).collect(),
        ..Default::default()
    })
    .expect("starting the collector")
}

/// Every watched cgroup's counters.
fn counters(c: &Collector) -> BTreeMap<u64, CgroupCounters> {
    c.snapshot()
        .into_iter()
        .map(|(k, s)| (k, s.counters))
        .collect()
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

#[test]
fn busy_loop_oncpu_matches_cpuacct_and_idle_task_stays_near_zero() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let busy_rel = format!("mesos/{}", unique("busy"));
    let idle_rel = format!("mesos/{}", unique("idle"));
    let busy_cg = TestCgroup::create(&m, &["cpu", "cpuacct"], &busy_rel).unwrap();
    let idle_cg = TestCgroup::create(&m, &["cpu", "cpuacct"], &idle_rel).unwrap();
    let busy = busy();
    let idle = sleeper();
    busy_cg.add_pid(busy.pid()).unwrap();
    idle_cg.add_pid(idle.pid()).unwrap();

    let mut c = start(&[]);
    let busy_key = c.watch(&v1_dir(&m, &busy_rel)).unwrap();
    let idle_key = c.watch(&v1_dir(&m, &idle_rel)).unwrap();
    let usage = busy_cg.dir("cpuacct").join("cpuacct.usage");
    // A task already running when its cgroup is watched is picked up at the next flush
    // tick on its CPU; measure the steady state after that.
    sleep_s(0.1);

    let s0 = counters(&c);
    let u0 = cgroup_value(&usage, None);
    sleep_s(5.0);
    let s1 = counters(&c);
    let u1 = cgroup_value(&usage, None);

    let oncpu = (s1[&busy_key].oncpu_ns - s0[&busy_key].oncpu_ns) as f64;
    let cpuacct = (u1 - u0) as f64;
    println!(
        "busy loop: eBPF {oncpu} ns, cpuacct {cpuacct} ns, ratio {:.4}",
        oncpu / cpuacct
    );
    assert!(
        cpuacct > 3e9,
        "the busy loop should have run most of 5 s, cpuacct says {cpuacct} ns"
    );
    assert!(
        within(oncpu, cpuacct, 0.02),
        "eBPF on-CPU {oncpu} ns vs cpuacct.usage {cpuacct} ns: more than 2% apart"
    );
    let idle_oncpu = s1[&idle_key].oncpu_ns - s0[&idle_key].oncpu_ns;
    assert!(idle_oncpu < 5_000_000, "idle task charged {idle_oncpu} ns");
}

#[test]
fn a_task_running_before_its_cgroup_is_watched_is_counted_from_the_watch_only() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let rel = format!("mesos/{}", unique("early"));
    let cg = TestCgroup::create(&m, &["cpu", "cpuacct"], &rel).unwrap();
    // Alone on the last CPU, so that it does not switch out: that CPU's first event after
    // the load is a timer tick, with the CPU's state as the load left it.
    let last = std::thread::available_parallelism().unwrap().get() as u32 - 1;
    let busy = busy_on(last);
    cg.add_pid(busy.pid()).unwrap();
    // A second on CPU before the programs load: time that cpuacct.usage holds already and
    // the agent must not count again.
    sleep_s(1.0);
    let usage = cg.dir("cpuacct").join("cpuacct.usage");
    // This thread loads the programs from the other CPUs: it would switch the loop out.
    let mut others = nix::sched::CpuSet::new();
    for cpu in 0..last {
        others.set(cpu as usize).unwrap();
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &others).unwrap();
    let mut c = start(&[]);
    let u0 = cgroup_value(&usage, None);
    let key = c.watch(&v1_dir(&m, &rel)).unwrap();
    sleep_s(1.0);
    let oncpu = counters(&c)[&key].oncpu_ns as f64;
    let since_watch = (cgroup_value(&usage, None) - u0) as f64;
    println!("eBPF {oncpu} ns since the watch, cpuacct {since_watch} ns");
    assert!(
        oncpu <= since_watch + 20e6,
        "eBPF counted {oncpu} ns, more than the {since_watch} ns the task ran since the watch"
    );
    assert!(
        oncpu >= 0.5 * since_watch,
        "eBPF counted {oncpu} ns of {since_watch} ns"
    );
}

#[test]
fn sleeping_loop_switches_match_proc_status() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let sleeper = Proc::python("import time\nwhile True: time.sleep(0.01)");
    let PlacedTask { rel, proc: p, .. } = &placed("sleeper", &["cpu", "cpuacct"], sleeper);
    sleep_s(0.3); // let the interpreter start
    let mut c = start(&[]);
    let key = c.watch(&v1_dir(&m, rel)).unwrap();

    let s0 = counters(&c)[&key];
    let v0 = status_field(p.pid(), "voluntary_ctxt_switches");
    let n0 = status_field(p.pid(), "nonvoluntary_ctxt_switches");
    sleep_s(3.0);
    let v1 = status_field(p.pid(), "voluntary_ctxt_switches");
    let n1 = status_field(p.pid(), "nonvoluntary_ctxt_switches");
    let s1 = counters(&c)[&key];

    let ours = (s1.switches_voluntary - s0.switches_voluntary) as f64;
    let kernel = (v1 - v0) as f64;
    println!(
        "voluntary switches: eBPF {ours}, /proc {kernel}; involuntary: eBPF {}, /proc {}",
        s1.switches_involuntary - s0.switches_involuntary,
        n1 - n0
    );
    assert!(
        kernel > 150.0,
        "expected ~300 sleeps in 3 s, kernel counted {kernel}"
    );
    assert!(
        within(ours, kernel, 0.05),
        "voluntary switches: eBPF {ours} vs /proc {kernel}"
    );
    let inv = (s1.switches_involuntary - s0.switches_involuntary) as f64;
    assert!(
        inv <= (n1 - n0) as f64 + 5.0,
        "involuntary: eBPF {inv} vs /proc {}",
        n1 - n0
    );
}

#[test]
fn runqueue_wait_of_two_loops_sharing_a_cpu_is_half_charged_to_each_other_and_lone_loop_has_none() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let cpus = aya::util::online_cpus().unwrap();
    assert!(cpus.len() >= 2, "this test needs two CPUs");
    let (shared_cpu, lone_cpu) = (cpus[1], cpus[0]);
    let rels: Vec<String> = ["rq-a", "rq-b", "rq-lone"]
        .iter()
        .map(|n| format!("mesos/{}", unique(n)))
        .collect();
    let cgs: Vec<TestCgroup> = rels
        .iter()
        .map(|r| TestCgroup::create(&m, &["cpu", "cpuacct"], r).unwrap())
        .collect();
    let procs = [busy_on(shared_cpu), busy_on(shared_cpu), busy_on(lone_cpu)];
    for (cg, p) in cgs.iter().zip(&procs) {
        cg.add_pid(p.pid()).unwrap();
    }
    let mut c = start(&[]);
    let keys: Vec<u64> = rels
        .iter()
        .map(|r| c.watch(&v1_dir(&m, r)).unwrap())
        .collect();
    assert!(c.runq_available(), "this kernel has sched_info");

    let snap0 = c.snapshot();
    let d0: Vec<u64> = procs.iter().map(|p| run_delay_ns(p.pid())).collect();
    let t0 = std::time::Instant::now();
    sleep_s(4.0);
    let snap1 = c.snapshot();
    let d1: Vec<u64> = procs.iter().map(|p| run_delay_ns(p.pid())).collect();
    let s0: BTreeMap<u64, CgroupCounters> = snap0.iter().map(|(k, s)| (*k, s.counters)).collect();
    let s1: BTreeMap<u64, CgroupCounters> = snap1.iter().map(|(k, s)| (*k, s.counters)).collect();
    // Wait and preemptions of cgroup `of` charged to contender `by` in the interval.
    let charged = |of: u64, by: u64| {
        let entry = |snap: &owca::collector::Snapshots| {
            snap[&of]
                .contenders
                .entries
                .iter()
                .find(|e| e.by_key == by)
                .map_or((0, 0), |e| (e.wait_ns, e.preemptions))
        };
        let (w0, p0) = entry(&snap0);
        let (w1, p1) = entry(&snap1);
        ((w1 - w0) as f64, p1 - p0)
    };
    let elapsed = t0.elapsed().as_nanos() as f64;

    for i in 0..2 {
        let wait = (s1[&keys[i]].runq_wait_ns - s0[&keys[i]].runq_wait_ns) as f64;
        let kernel = (d1[i] - d0[i]) as f64;
        println!(
            "loop {i}: waited {:.3} of the time; eBPF {wait} ns vs schedstat {kernel} ns",
            wait / elapsed
        );
        // Who ran instead: the other loop on the shared CPU, never the lone one.
        let (by_other, preempted_by_other) = charged(keys[i], keys[1 - i]);
        let (by_lone, preempted_by_lone) = charged(keys[i], keys[2]);
        let (by_unwatched, _) = charged(keys[i], BY_UNWATCHED_KEY);
        println!(
            "loop {i}: wait behind the other loop {by_other} ns ({preempted_by_other} preemptions), behind the lone loop {by_lone} ns ({preempted_by_lone}), behind unwatched tasks {by_unwatched} ns"
        );
        // Every wait is charged to the task that ran before the waiting one got the CPU:
        // the other loop, or another process of the machine (many on a busy one, each
        // charged as `unwatched`).
        assert!(
            within(by_other + by_unwatched, wait, 0.05) && by_other >= 0.4 * wait,
            "loop {i}: of its {wait} ns wait, {by_other} ns charged to the other loop and {by_unwatched} ns to unwatched tasks"
        );
        let waits = s1[&keys[i]].runq_waits - s0[&keys[i]].runq_waits;
        assert!(
            preempted_by_other as f64 >= 0.4 * waits as f64,
            "loop {i}: {preempted_by_other} preemptions by the other loop for {waits} waits"
        );
        assert!(
            by_lone == 0.0 && preempted_by_lone == 0,
            "loop {i}: {by_lone} ns and {preempted_by_lone} preemptions charged to the loop on another CPU"
        );
        assert!(
            (0.3..0.7).contains(&(wait / elapsed)),
            "loop {i} sharing a CPU waited {wait} ns of {elapsed}: expected about half"
        );
        // The kernel's own run_delay, up to the wait in progress at either end.
        assert!(
            within(wait, kernel, 0.1),
            "loop {i}: eBPF wait {wait} vs schedstat {kernel}"
        );
        let waits = s1[&keys[i]].runq_waits - s0[&keys[i]].runq_waits;
        let hist: u64 =
            s1[&keys[i]].runq_hist.iter().sum::<u64>() - s0[&keys[i]].runq_hist.iter().sum::<u64>();
        assert!(
            waits > 10 && hist == waits,
            "histogram holds every wait: {hist} vs {waits}"
        );
    }
    let lone = (s1[&keys[2]].runq_wait_ns - s0[&keys[2]].runq_wait_ns) as f64;
    assert!(
        lone / elapsed < 0.05,
        "lone loop waited {lone} ns of {elapsed}"
    );
}

#[test]
fn v2_placement_counts_and_descendants_go_to_the_watched_ancestor() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let v2 = m.v2().expect("cgroup v2 mounted").to_path_buf();
    let rel = unique("v2");
    let child_rel = format!("{rel}/child");
    let cg = TestCgroup::create_v2(&m, &rel).unwrap();
    let child = TestCgroup::create_v2(&m, &child_rel).unwrap();
    let busy = busy();
    child.add_pid(busy.pid()).unwrap();

    let mut c = start(&[]);
    let key = c.watch(&CgroupDir::new(Hierarchy::V2, &v2, &rel)).unwrap();
    let stat = cg.dir_v2().join("cpu.stat");
    // A task already running when its cgroup is watched is picked up at the next flush
    // tick on its CPU; measure the steady state after that.
    sleep_s(0.1);
    let s0 = counters(&c)[&key];
    let u0 = cgroup_value(&stat, Some("usage_usec"));
    sleep_s(3.0);
    let s1 = counters(&c)[&key];
    let u1 = cgroup_value(&stat, Some("usage_usec"));
    let oncpu = (s1.oncpu_ns - s0.oncpu_ns) as f64;
    let kernel = (u1 - u0) as f64 * 1000.0;
    println!("v2 busy loop in a child cgroup: eBPF {oncpu} ns, cpu.stat {kernel} ns");
    assert!(kernel > 1e9, "busy loop ran {kernel} ns");
    assert!(
        within(oncpu, kernel, 0.02),
        "v2: eBPF {oncpu} vs cpu.stat {kernel}"
    );
    assert!(s1.switches_voluntary + s1.switches_involuntary > 0);
}

#[test]
fn unwatch_frees_map_entries_and_missing_pmu_events_are_not_counted() {
    require_root!();
    let m = Mounts::discover().unwrap();
    let rel = format!("mesos/{}", unique("unwatch"));
    let _cg = TestCgroup::create(&m, &["cpu", "cpuacct"], &rel).unwrap();
    let mut c = start(&["instructions", "page_faults", "cycles"]);
    let has_pmu = Path::new("/sys/bus/event_source/devices/cpu").exists();
    if has_pmu {
        assert_eq!(c.events(), ["instructions", "page_faults", "cycles"]);
    } else {
        assert_eq!(
            c.events(),
            ["page_faults"],
            "hardware events must be left out, not zero"
        );
    }
    let key = c.watch(&v1_dir(&m, &rel)).unwrap();
    assert_eq!(c.map_keys().unwrap(), vec![key]);
    c.unwatch(key).unwrap();
    assert!(c.map_keys().unwrap().is_empty());
    assert!(counters(&c).is_empty());
    let err = c.watch(&v1_dir(&m, "")).unwrap_err().to_string();
    assert!(err.contains("hierarchy root"), "{err}");
}

#[test]
fn counter_events_are_charged_to_the_cgroup_at_switches() {
    require_root!();
    let m = Mounts::discover().unwrap();
    // Maps and touches fresh memory in a loop: page faults, with sleeps between.
    let faulter = Proc::python(
        "import mmap, time\nwhile True:\n  m = mmap.mmap(-1, 4 << 20)\n  for i in range(0, 4 << 20, 4096): m[i] = 1\n  m.close()\n  time.sleep(0.005)",
    );
    let PlacedTask { rel, proc: p, .. } = &placed("faults", &["cpu", "cpuacct"], faulter);
    sleep_s(0.3);
    let mut c = start(&["page_faults"]);
    let key = c.watch(&v1_dir(&m, rel)).unwrap();
    let s0 = counters(&c)[&key];
    let f0 = page_faults(p.pid());
    sleep_s(2.0);
    let f1 = page_faults(p.pid());
    let s1 = counters(&c)[&key];
    let ours = (s1.perf[0] - s0.perf[0]) as f64;
    let kernel = (f1 - f0) as f64;
    println!("page faults: eBPF {ours}, /proc {kernel}");
    assert!(
        kernel > 10_000.0,
        "expected many faults, /proc says {kernel}"
    );
    assert!(
        within(ours, kernel, 0.05),
        "page_faults: eBPF {ours} vs /proc {kernel}"
    );
}

/// The real-kernel half of the collector's perf unit test (perf_event_open on a CPU needs
/// root).
#[test]
fn software_events_open_on_a_cpu_and_a_missing_pmu_is_none() {
    require_root!();
    let software = EventSpec::parse("page_faults").unwrap();
    assert!(
        software
            .open_on_cpu(0)
            .expect("perf_event_open of a software event on CPU 0")
            .is_some()
    );
    // Where the machine has no hardware PMU, the event is absent rather than an error.
    let has_pmu = Path::new("/sys/bus/event_source/devices/cpu").exists();
    let instructions = EventSpec::parse("instructions")
        .unwrap()
        .open_on_cpu(0)
        .expect("perf_event_open of a hardware event on CPU 0");
    assert_eq!(instructions.is_some(), has_pmu);
}
