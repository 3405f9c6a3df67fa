//! The eBPF collector: loads OWCA's kernel programs, watches and unwatches cgroups, and
//! returns per-cgroup counter snapshots summed over CPUs.
//!
//! Everything is detached when the [`Collector`] is dropped: the programs' links and the
//! perf fds are owned by it, so no program or perf fd outlives the agent. Both programs
//! attach without tracefs (`tp_btf` and a perf event), so none is mounted.

pub mod btf;
mod offsets;
pub mod perf;
mod shared_array;

use std::{
    collections::{HashMap, VecDeque},
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData},
    programs::{
        BtfTracePoint, PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use owca_common::{
    CgroupCounters, ContenderTable, DEFAULT_MAX_CGROUPS, GLOBAL_NUM_PERF_EVENTS, GLOBAL_OFFSETS,
    KernelOffsets, MAP_CONTENDERS, MAP_COUNTERS, MAP_PERF_COUNTERS, MAP_SLOTS, MAP_WATCH_CONFIG,
    MAX_PERF_EVENTS, PROG_FLUSH, PROG_SCHED_SWITCH, SCHED_SWITCH_TRACEPOINT, V1_ID_TAG,
    WATCH_CONFIG_INDEX, WatchConfig,
};
use thiserror::Error;
use tracing::{info, warn};

use self::{btf::Btf, perf::EventSpec, shared_array::SharedArray};
use crate::cgroups::Hierarchy;

/// How often each busy CPU charges the running task's time and hands in pending counts, so
/// that a task that never switches out is counted within this period (10 ms: 0.2% of a
/// 5 s window).
const FLUSH_PERIOD_NS: u64 = 10_000_000;

/// The kernel programs: the ELF object that `build.rs` builds from `owca-ebpf` (its binary
/// is named `owca`), aligned for aya's parser. Public so that tests can check its maps,
/// programs and globals against the names in `owca_common` without loading it. Empty in a
/// build without the `ebpf` feature (the fuzz targets'), where [`Collector::start`] fails.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/owca"));

/// A loader made by [`prepare_loader`], waiting for [`Collector::start`].
static PREPARED_LOADER: Mutex<Option<EbpfLoader<'static>>> = Mutex::new(None);

/// Makes the eBPF loader now. aya 0.14 parses the kernel's whole BTF when a loader is
/// created (later releases parse it only when needed, and OWCA needs none of it): about
/// 15 MB for a moment. Made first thing, before the agent's other memory exists, that
/// moment is not the agent's peak.
pub fn prepare_loader() {
    let mut loader = EbpfLoader::new();
    // No CO-RE relocations in our object (offsets come from our own BTF reader), so the
    // loader needs no kernel BTF of its own.
    loader.btf(None);
    trim_heap();
    if let Ok(mut prepared) = PREPARED_LOADER.lock() {
        *prepared = Some(loader);
    }
}

/// Gives free heap pages back to the system: after a parse of the kernel's BTF they are
/// most of the agent's memory, and would otherwise stay its own for its lifetime.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where BTF of the running kernel lives.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Every watched cgroup's counts by cgroup key ([`Collector::snapshot`]).
pub type Snapshots = rustc_hash::FxHashMap<u64, CgroupSnapshot>;

/// Failures of the collector, each naming what was being done.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The kernel has no BTF, which the programs need to find kernel structures.
    #[error(
        "kernel BTF is missing at {KERNEL_BTF} (needs CONFIG_DEBUG_INFO_BTF): cannot load the eBPF collector"
    )]
    NoBtf,
    /// This build has no kernel programs.
    #[error(
        "this build of owca has no eBPF object (built without the `ebpf` feature): cannot load the eBPF collector"
    )]
    NoObject,
    /// Reading kernel BTF failed.
    #[error("reading kernel structure offsets: {0}")]
    Btf(#[from] btf::BtfError),
    /// A counter event is invalid or could not be opened.
    #[error(transparent)]
    Perf(#[from] perf::PerfError),
    /// More counter events were asked for than the programs have slots for.
    #[error("{0} counter events configured; at most {MAX_PERF_EVENTS} are supported")]
    TooManyEvents(usize),
    /// Loading the object or a program into the kernel failed.
    #[error("loading eBPF {what}: {source}")]
    Load {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A map operation failed.
    #[error("{what} in eBPF map {map}: {source}")]
    Map {
        what: &'static str,
        map: &'static str,
        source: aya::maps::MapError,
    },
    /// The cgroup directory to watch could not be examined.
    #[error("watching cgroup {path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The cgroup cannot be watched as asked.
    #[error("cannot watch cgroup {path}: {reason}")]
    Unwatchable { path: PathBuf, reason: String },
}

fn load_err(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> CollectorError {
    move |source| CollectorError::Load { what, source }
}

/// A cgroup directory to watch: counts of its processes and of its descendants' are
/// charged to it (unless a descendant is watched itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    /// Its hierarchy: v2, or the v1 hierarchy of the collector's `v1_controller`.
    pub hierarchy: Hierarchy,
    /// The directory, e.g. `/sys/fs/cgroup/cpuacct/mesos/abc`.
    pub path: PathBuf,
    /// Depth below the hierarchy root (`mesos/abc` is 2).
    pub level: u32,
}

impl CgroupDir {
    /// The directory of cgroup `rel` (e.g. `/mesos/abc`) in the hierarchy mounted at `mount`.
    pub fn new(hierarchy: Hierarchy, mount: &Path, rel: &str) -> Self {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        Self {
            hierarchy,
            path: parts.iter().fold(mount.to_path_buf(), |p, c| p.join(c)),
            level: parts.len() as u32,
        }
    }
}

/// Collector settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Most cgroups watched at once.
    pub max_cgroups: u32,
    /// Counter event names (OWCA's names or raw `name__rEEUU[CC]`).
    pub events: Vec<String>,
    /// The v1 controller whose hierarchy v1 cgroups are identified in (Mesos' cgroups/cpu
    /// isolator creates them in cpu and cpuacct).
    pub v1_controller: String,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_cgroups: DEFAULT_MAX_CGROUPS,
            events: Vec::new(),
            v1_controller: "cpuacct".to_owned(),
        }
    }
}

struct Watched {
    /// Whether the cgroup is in the v1 hierarchy (else v2).
    v1: bool,
    level: u32,
    /// Its index in the shared arrays.
    slot: u32,
}

/// Hands out slots of the shared arrays: never-used ones first, then the longest freed,
/// so that a slot is reused as late as possible (a CPU may still be adding the last
/// counts of its previous cgroup, looked up just before it was unwatched).
#[derive(Default)]
struct Slots {
    next_unused: u32,
    freed: VecDeque<u32>,
}

impl Slots {
    fn take(&mut self, capacity: u32) -> Option<u32> {
        if self.next_unused < capacity {
            self.next_unused += 1;
            return Some(self.next_unused - 1);
        }
        self.freed.pop_front()
    }
}

/// Bytes the agent copies from the kernel per watched cgroup and snapshot.
pub const SNAPSHOT_BYTES_PER_CGROUP: usize =
    size_of::<CgroupCounters>() + size_of::<ContenderTable>();

/// One watched cgroup's counts, read from the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSnapshot {
    /// Its counters, summed over CPUs.
    pub counters: CgroupCounters,
    /// Who ran while its tasks waited.
    pub contenders: ContenderTable,
}

/// The loaded and attached kernel collector.
pub struct Collector {
    slots: BpfHashMap<MapData, u64, u32>,
    counters: SharedArray<CgroupCounters>,
    contenders: SharedArray<ContenderTable>,
    free_slots: Slots,
    watch_config: Array<MapData, WatchConfig>,
    watched: HashMap<u64, Watched>,
    generation: u64,
    events: Vec<String>,
    max_cgroups: u32,
    /// The controller whose v1 hierarchy v1 cgroups are identified in.
    v1_controller: String,
    runq_available: bool,
    // Dropped after the maps above: the programs and links, then the perf fds.
    _ebpf: Ebpf,
    _perf_fds: Vec<OwnedFd>,
}

impl Collector {
    /// Loads and attaches the programs and opens the counter events that this machine's
    /// PMU has; an event it lacks is reported once and not exported.
    pub fn start(cfg: &CollectorConfig) -> Result<Self, CollectorError> {
        if EBPF_OBJECT.is_empty() {
            return Err(CollectorError::NoObject);
        }
        if !Path::new(KERNEL_BTF).exists() {
            return Err(CollectorError::NoBtf);
        }
        // The kernel's BTF (megabytes) is read once, by our small reader, and dropped as
        // soon as the offsets and the tracepoint's type id are known.
        let trace_typedef = format!("btf_trace_{SCHED_SWITCH_TRACEPOINT}");
        let (offsets, trace_id) = {
            let kernel_btf = Btf::from_file(Path::new(KERNEL_BTF))?;
            (
                offsets::compute(&kernel_btf, &cfg.v1_controller)?,
                kernel_btf.typedef_id(&trace_typedef)?,
            )
        };
        let online =
            aya::util::online_cpus().map_err(|(_, e)| load_err("online CPUs")(e.into()))?;

        let (events, perf_fds) = open_events(&cfg.events, &online)?;
        let prepared = PREPARED_LOADER.lock().ok().and_then(|mut l| l.take());
        let mut loader = prepared.unwrap_or_else(|| {
            let mut loader = EbpfLoader::new();
            loader.btf(None);
            loader
        });
        // The loader keeps references to the globals' values for its lifetime ('static for a
        // prepared one): two small values, once per collector.
        let offsets: &'static KernelOffsets = Box::leak(Box::new(offsets));
        let num_events: &'static u32 = Box::leak(Box::new(events.len() as u32));
        let mut ebpf = loader
            .override_global(GLOBAL_OFFSETS, offsets, true)
            .override_global(GLOBAL_NUM_PERF_EVENTS, num_events, true)
            .map_max_entries(MAP_SLOTS, cfg.max_cgroups)
            .map_max_entries(MAP_COUNTERS, cfg.max_cgroups)
            .map_max_entries(MAP_CONTENDERS, cfg.max_cgroups)
            .load(EBPF_OBJECT)
            .map_err(|e| load_err("object")(e.into()))?;

        for (cpu, slot, fd) in &perf_fds {
            let name = MAP_PERF_COUNTERS[*slot];
            let Some(Map::PerfEventArray(data)) = ebpf.map(name) else {
                return Err(load_err("perf event array")(
                    format!("{name} missing").into(),
                ));
            };
            set_perf_fd(data, *cpu, fd)
                .map_err(|e| load_err("perf event array entry")(e.into()))?;
        }

        let slots = take_map(&mut ebpf, MAP_SLOTS)?;
        let slots = BpfHashMap::try_from(slots).map_err(|source| CollectorError::Map {
            what: "opening",
            map: MAP_SLOTS,
            source,
        })?;
        let counters = shared(&mut ebpf, MAP_COUNTERS, cfg.max_cgroups)?;
        let contenders = shared(&mut ebpf, MAP_CONTENDERS, cfg.max_cgroups)?;
        let watch_config = take_map(&mut ebpf, MAP_WATCH_CONFIG)?;
        let watch_config = Array::try_from(watch_config).map_err(|source| CollectorError::Map {
            what: "opening",
            map: MAP_WATCH_CONFIG,
            source,
        })?;

        // aya needs only the attach type's id from the kernel's BTF: a stand-in BTF with that
        // type at that id saves parsing all of it again.
        let attach_btf = aya::Btf::parse(
            &btf::with_typedef_at(&trace_typedef, trace_id),
            aya::Endianness::default(),
        )
        .map_err(|e| load_err("attach BTF")(e.into()))?;
        let switch: &mut BtfTracePoint = program(&mut ebpf, PROG_SCHED_SWITCH)?;
        switch
            .load(SCHED_SWITCH_TRACEPOINT, &attach_btf)
            .map_err(|e| load_err("sched_switch program")(e.into()))?;
        switch
            .attach()
            .map_err(|e| load_err("sched_switch attachment")(e.into()))?;
        drop(attach_btf);
        trim_heap();

        let flush: &mut PerfEvent = program(&mut ebpf, PROG_FLUSH)?;
        flush
            .load()
            .map_err(|e| load_err("flush program")(e.into()))?;
        for &cpu in &online {
            flush
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Period(FLUSH_PERIOD_NS),
                    false,
                )
                .map_err(|e| load_err("flush timer")(e.into()))?;
        }

        let mut collector = Self {
            slots,
            counters,
            contenders,
            free_slots: Slots::default(),
            watch_config,
            watched: HashMap::new(),
            generation: 0,
            events: events.into_iter().map(|e| e.name).collect(),
            max_cgroups: cfg.max_cgroups,
            v1_controller: cfg.v1_controller.clone(),
            runq_available: offsets.task_run_delay != 0,
            _ebpf: ebpf,
            _perf_fds: perf_fds.into_iter().map(|(_, _, fd)| fd).collect(),
        };
        collector.push_config()?;
        info!(
            cpus = online.len(),
            events = ?collector.events,
            v1 = %cfg.v1_controller,
            "eBPF collector attached"
        );
        Ok(collector)
    }

    /// Names of the counter events being counted, in slot order.
    pub fn events(&self) -> &[String] {
        &self.events
    }

    /// Whether run-queue latency is measured (the kernel has `CONFIG_SCHED_INFO`).
    pub fn runq_available(&self) -> bool {
        self.runq_available
    }

    /// Starts counting a cgroup; returns its key. Watching a watched cgroup is a no-op.
    pub fn watch(&mut self, dir: &CgroupDir) -> Result<u64, CollectorError> {
        if dir.level == 0 {
            return Err(CollectorError::Unwatchable {
                path: dir.path.clone(),
                reason: "it is a hierarchy root; watch cgroups below it".into(),
            });
        }
        let meta = std::fs::metadata(&dir.path).map_err(|source| CollectorError::Stat {
            path: dir.path.clone(),
            source,
        })?;
        // A cgroup directory's inode number is its kernfs id.
        let key = match &dir.hierarchy {
            Hierarchy::V1 { controller } if *controller == self.v1_controller => {
                meta.ino() | V1_ID_TAG
            }
            Hierarchy::V1 { controller } => {
                return Err(CollectorError::Unwatchable {
                    path: dir.path.clone(),
                    reason: format!(
                        "the collector counts v1 cgroups of the {} hierarchy, not of {controller}",
                        self.v1_controller
                    ),
                });
            }
            Hierarchy::V2 => meta.ino(),
        };
        if self.watched.contains_key(&key) {
            return Ok(key);
        }
        if self.watched.len() >= self.max_cgroups as usize {
            return Err(CollectorError::Unwatchable {
                path: dir.path.clone(),
                reason: format!(
                    "{} cgroups are watched already (max_cgroups)",
                    self.max_cgroups
                ),
            });
        }
        let Some(slot) = self.free_slots.take(self.max_cgroups) else {
            return Err(CollectorError::Unwatchable {
                path: dir.path.clone(),
                reason: "no free slot in the counters map".into(),
            });
        };
        // Zeroed before the programs can find the key, so it starts from nothing.
        self.counters.zero(slot);
        self.contenders.zero(slot);
        if let Err(source) = self.slots.insert(key, slot, 0) {
            self.free_slots.freed.push_back(slot);
            return Err(CollectorError::Map {
                what: "adding a cgroup",
                map: MAP_SLOTS,
                source,
            });
        }
        self.watched.insert(
            key,
            Watched {
                v1: matches!(dir.hierarchy, Hierarchy::V1 { .. }),
                level: dir.level,
                slot,
            },
        );
        self.push_config()?;
        Ok(key)
    }

    /// Stops counting a cgroup and frees its map entry.
    pub fn unwatch(&mut self, key: u64) -> Result<(), CollectorError> {
        let Some(w) = self.watched.remove(&key) else {
            return Ok(());
        };
        let removed = self.slots.remove(&key);
        self.free_slots.freed.push_back(w.slot);
        self.push_config()?;
        removed.map_err(|source| CollectorError::Map {
            what: "removing a cgroup",
            map: MAP_SLOTS,
            source,
        })
    }

    /// Current counts of every watched cgroup, read from the shared arrays: no system
    /// call, [`SNAPSHOT_BYTES_PER_CGROUP`] bytes per cgroup whatever the number of CPUs.
    pub fn snapshot(&self) -> Snapshots {
        // A hash map sized at once: collected into a sorted map, the snapshots (456 bytes
        // each) were moved about by the sort, a fifth of the measurements stage.
        let mut out = Snapshots::with_capacity_and_hasher(self.watched.len(), Default::default());
        for (&key, w) in &self.watched {
            let snap = CgroupSnapshot {
                counters: self.counters.get(w.slot).unwrap_or_default(),
                contenders: self.contenders.get(w.slot).unwrap_or_default(),
            };
            out.insert(key, snap);
        }
        out
    }

    /// Keys present in the kernel map, to check that unwatching frees entries.
    #[cfg(feature = "test-util")]
    pub fn map_keys(&self) -> Result<Vec<u64>, CollectorError> {
        self.slots
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CollectorError::Map {
                what: "listing",
                map: MAP_SLOTS,
                source,
            })
    }

    fn push_config(&mut self) -> Result<(), CollectorError> {
        self.generation += 1;
        let mut cfg = WatchConfig {
            generation: self.generation,
            ..Default::default()
        };
        for w in self.watched.values() {
            let (min, max) = match w.v1 {
                true => (&mut cfg.v1_min_level, &mut cfg.v1_max_level),
                false => (&mut cfg.v2_min_level, &mut cfg.v2_max_level),
            };
            *min = if *max == 0 {
                w.level
            } else {
                (*min).min(w.level)
            };
            *max = (*max).max(w.level);
        }
        self.watch_config
            .set(WATCH_CONFIG_INDEX, cfg, 0)
            .map_err(|source| CollectorError::Map {
                what: "updating",
                map: MAP_WATCH_CONFIG,
                source,
            })
    }
}

/// Memory-maps array `name` of `entries` values.
fn shared<T: aya::Pod + Default>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: u32,
) -> Result<SharedArray<T>, CollectorError> {
    let Map::Array(data) = take_map(ebpf, name)? else {
        return Err(load_err("map")(format!("{name} is not an array").into()));
    };
    SharedArray::new(data, entries)
        .map_err(|e| load_err("memory mapping of a map")(format!("{name}: {e}").into()))
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, CollectorError> {
    ebpf.take_map(name)
        .ok_or_else(|| load_err("map")(format!("{name} missing from the object").into()))
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CollectorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| load_err("program")(format!("{name} missing from the object").into()))?;
    prog.try_into()
        .map_err(|e: aya::programs::ProgramError| load_err("program")(e.into()))
}

type OpenedEvents = (Vec<EventSpec>, Vec<(u32, usize, OwnedFd)>);

/// Opens each available event on every online CPU; the events this machine's PMU lacks
/// are reported in one line.
fn open_events(names: &[String], cpus: &[u32]) -> Result<OpenedEvents, CollectorError> {
    let mut events = Vec::new();
    let mut fds = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let spec = EventSpec::parse(name)?;
        let mut opened = Vec::new();
        for &cpu in cpus {
            match spec.open_on_cpu(cpu)? {
                Some(fd) => opened.push((cpu, events.len(), fd)),
                None => break,
            }
        }
        if opened.len() != cpus.len() {
            missing.push(name.as_str());
            continue;
        }
        if events.len() == MAX_PERF_EVENTS {
            return Err(CollectorError::TooManyEvents(names.len()));
        }
        events.push(spec);
        fds.extend(opened);
    }
    if !missing.is_empty() {
        let pmu = Path::new("/sys/bus/event_source/devices/cpu").exists();
        warn!(
            events = %missing.join(", "),
            hardware_pmu = pmu,
            "this machine's PMU lacks these counter events: they are not counted and not exported"
        );
    }
    Ok((events, fds))
}

/// Stores a perf fd in a perf event array; aya has no setter for reading arrays.
fn set_perf_fd(map: &MapData, index: u32, fd: &OwnedFd) -> std::io::Result<()> {
    #[repr(C)]
    struct UpdateAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let value = fd.as_raw_fd() as u32;
    let attr = UpdateAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&index) as u64,
        value: std::ptr::from_ref(&value) as u64,
        flags: 0,
    };
    // SAFETY: BPF_MAP_UPDATE_ELEM with a correctly sized attr whose pointers outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            2, // BPF_MAP_UPDATE_ELEM
            std::ptr::from_ref(&attr),
            size_of::<UpdateAttr>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

// Only a build without the kernel programs (`--no-default-features`) can see this refusal.
#[cfg(all(test, not(feature = "ebpf")))]
mod tests {
    use super::{Collector, CollectorConfig, CollectorError};

    #[test]
    fn without_the_object_the_collector_refuses_to_start_naming_the_feature() {
        let Err(err) = Collector::start(&CollectorConfig::default()) else {
            panic!("a collector started without its eBPF object");
        };
        assert!(matches!(err, CollectorError::NoObject), "{err}");
        assert!(err.to_string().contains("`ebpf` feature"), "{err}");
    }
}
