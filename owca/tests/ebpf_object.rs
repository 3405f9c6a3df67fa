//! The kernel object the agent embeds ([`owca::collector::EBPF_OBJECT`]) against the names
//! in `owca_common`: every map, program and global the agent uses is there, of the kind and
//! size the agent uses it with, and the object has nothing that `owca_common` does not
//! name. The kernel side cannot spell its names with those constants (they are the
//! identifiers of its statics and functions), so this is where a rename on either side
//! shows.
//!
//! The object is parsed with `aya-obj`, the parser `aya::EbpfLoader` itself uses, so these
//! tests need no root and load nothing into the kernel; `kernel_collector` loads the
//! programs for real.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

use std::collections::{BTreeSet, HashMap};

use aya_obj::{
    EbpfSectionKind, Object, ProgramSection,
    generated::BPF_F_MMAPABLE,
    generated::bpf_map_type::{
        self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
        BPF_MAP_TYPE_PERF_EVENT_ARRAY,
    },
};
use owca::collector::EBPF_OBJECT;
use owca_common::{
    CgroupCounters, ContenderTable, CpuState, GLOBAL_NAMES, GLOBAL_NUM_PERF_EVENTS, GLOBAL_OFFSETS,
    KernelOffsets, MAP_CONTENDERS, MAP_COUNTERS, MAP_CPU_STATE, MAP_NAMES, MAP_PERF_COUNTERS,
    MAP_SLOTS, MAP_WATCH_CONFIG, PROG_FLUSH, PROG_NAMES, PROG_SCHED_SWITCH, WATCH_CONFIG_INDEX,
    WatchConfig,
};

fn object() -> Object {
    Object::parse(EBPF_OBJECT).expect("parsing the embedded eBPF object with aya-obj")
}

/// Checks one map's kind and the key and value sizes the agent and programs use.
fn assert_map(obj: &Object, name: &str, kind: bpf_map_type, key_size: usize, value_size: usize) {
    let map = obj
        .maps
        .get(name)
        .unwrap_or_else(|| panic!("map {name} is missing from the eBPF object"));
    assert_eq!(map.map_type(), kind as u32, "map {name}: type");
    assert_eq!(map.key_size() as usize, key_size, "map {name}: key size");
    assert_eq!(
        map.value_size() as usize,
        value_size,
        "map {name}: value size"
    );
}

#[test]
fn every_named_map_is_there_with_the_agents_key_and_value_types() {
    let obj = object();
    assert_map(
        &obj,
        MAP_SLOTS,
        BPF_MAP_TYPE_HASH,
        size_of::<u64>(),
        size_of::<u32>(),
    );
    assert_map(
        &obj,
        MAP_COUNTERS,
        BPF_MAP_TYPE_ARRAY,
        size_of::<u32>(),
        size_of::<CgroupCounters>(),
    );
    assert_map(
        &obj,
        MAP_CONTENDERS,
        BPF_MAP_TYPE_ARRAY,
        size_of::<u32>(),
        size_of::<ContenderTable>(),
    );
    // The agent memory-maps both arrays.
    for name in [MAP_COUNTERS, MAP_CONTENDERS] {
        assert_eq!(
            obj.maps[name].map_flags() & BPF_F_MMAPABLE,
            BPF_F_MMAPABLE,
            "map {name}: BPF_F_MMAPABLE"
        );
    }
    assert_map(
        &obj,
        MAP_CPU_STATE,
        BPF_MAP_TYPE_PERCPU_ARRAY,
        size_of::<u32>(),
        size_of::<CpuState>(),
    );
    assert_map(
        &obj,
        MAP_WATCH_CONFIG,
        BPF_MAP_TYPE_ARRAY,
        size_of::<u32>(),
        size_of::<WatchConfig>(),
    );
    assert!(
        obj.maps[MAP_WATCH_CONFIG].max_entries() > WATCH_CONFIG_INDEX,
        "the agent writes the watch config at index {WATCH_CONFIG_INDEX}"
    );
    for name in MAP_PERF_COUNTERS {
        // Index: CPU; value: a perf fd.
        assert_map(
            &obj,
            name,
            BPF_MAP_TYPE_PERF_EVENT_ARRAY,
            size_of::<u32>(),
            size_of::<u32>(),
        );
    }
}

#[test]
fn the_object_has_no_map_or_program_that_owca_common_does_not_name() {
    let obj = object();
    let named: BTreeSet<&str> = MAP_NAMES
        .iter()
        .chain(&MAP_PERF_COUNTERS)
        .copied()
        .collect();
    let maps: BTreeSet<&str> = obj
        .maps
        .iter()
        .filter(|(_, m)| {
            matches!(
                m.section_kind(),
                EbpfSectionKind::Maps | EbpfSectionKind::BtfMaps
            )
        })
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        maps, named,
        "maps in the object vs owca_common's MAP_* names"
    );

    let programs: BTreeSet<&str> = obj.programs.keys().map(String::as_str).collect();
    let named: BTreeSet<&str> = PROG_NAMES.into_iter().collect();
    assert_eq!(
        programs, named,
        "programs in the object vs owca_common's PROG_* names"
    );
}

#[test]
fn programs_are_of_the_kinds_the_agent_attaches() {
    let obj = object();
    let section = |name: &str| {
        &obj.programs
            .get(name)
            .unwrap_or_else(|| panic!("program {name} is missing from the eBPF object"))
            .section
    };
    // The agent loads it as a `BtfTracePoint` and a `PerfEvent`.
    assert!(
        matches!(section(PROG_SCHED_SWITCH), ProgramSection::BtfTracePoint),
        "{PROG_SCHED_SWITCH}: {:?}",
        section(PROG_SCHED_SWITCH)
    );
    assert!(
        matches!(section(PROG_FLUSH), ProgramSection::PerfEvent),
        "{PROG_FLUSH}: {:?}",
        section(PROG_FLUSH)
    );
}

/// The bytes of a value as the loader copies them into the object.
fn bytes_of<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: `Pod` types are `#[repr(C)]` plain integers without padding, so all
    // `size_of::<T>()` bytes behind the reference are initialised.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>()) }
}

#[test]
fn the_globals_take_the_values_the_agent_sets_and_are_all_the_read_only_data() {
    let mut obj = object();
    // Distinct non-zero values, so that the patched bytes can be found in the data.
    let offsets = KernelOffsets {
        task_cgroups: 0x1001,
        task_pid: 0x1002,
        task_run_delay: 0x1003,
        task_sum_exec: 0x1004,
        cset_subsys: 0x1005,
        cset_dfl_cgrp: 0x1006,
        css_cgroup: 0x1007,
        cgroup_kn: 0x1008,
        cgroup_level: 0x1009,
        kn_id: 0x100a,
        kn_parent: 0x100b,
    };
    let num_events: u32 = 0x5a5a_5a5a;
    let values: HashMap<&str, &[u8]> = HashMap::from([
        (GLOBAL_OFFSETS, bytes_of(&offsets)),
        (GLOBAL_NUM_PERF_EVENTS, bytes_of(&num_events)),
    ]);
    assert_eq!(
        values.keys().copied().collect::<BTreeSet<_>>(),
        GLOBAL_NAMES.into_iter().collect(),
        "this test sets every global in GLOBAL_NAMES"
    );

    // What `EbpfLoader::override_global(name, value, true)` does: the symbol must exist and
    // have the value's size.
    obj.patch_map_data(values.iter().map(|(&n, &v)| (n, (v, true))).collect())
        .expect("every global the agent sets exists with the size of the agent's value");
    let rodata = obj
        .maps
        .values()
        .find(|m| matches!(m.section_kind(), EbpfSectionKind::Rodata))
        .expect("the object has read-only data (.rodata)")
        .data();
    for (name, bytes) in &values {
        assert!(
            rodata.windows(bytes.len()).any(|w| w == *bytes),
            "{name}: the agent's value is not in .rodata after patching"
        );
    }
    // A read-only global the agent does not set would be a constant the compiler could have
    // inlined; every one in this crate is there for the agent to set.
    assert_eq!(
        rodata.len(),
        values.values().map(|v| v.len()).sum::<usize>(),
        ".rodata holds more than the globals in GLOBAL_NAMES: name any new one there and set it in Collector::start"
    );

    // The check has teeth: a name or size the object does not have is refused.
    let mut obj = object();
    assert!(
        obj.patch_map_data(HashMap::from([("NO_SUCH_GLOBAL", (&[0u8; 4][..], true))]))
            .is_err()
    );
    assert!(
        obj.patch_map_data(HashMap::from([(
            GLOBAL_NUM_PERF_EVENTS,
            (&[0u8; 8][..], true)
        )]))
        .is_err()
    );
}
