//! The node's platform: topology and CPU model for the common labels, and node-wide usage,
//! from /proc and /sys with OWCA's semantics.

use std::{
    collections::BTreeSet,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::metrics::{
    Labels, Metric,
    names::{CPU_USAGE_PER_CPU, CPU_USAGE_PER_CPU_HELP, MEMORY_USAGE, MEMORY_USAGE_HELP},
};

/// Failure reading a platform file; each names the file.
#[derive(Debug, Error)]
pub enum PlatformError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds something the kernel does not write there.
    #[error("unexpected content in {path}: {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending line or value, shortened.
        content: String,
    },
}

/// A snapshot of the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// Logical CPUs online (the per-CPU lines of /proc/stat; `nproc` on the host).
    pub cpus: usize,
    /// Distinct physical cores: (physical_package_id, core_id) pairs of the online CPUs.
    pub cores: usize,
    /// Distinct physical_package_id of the online CPUs.
    pub sockets: usize,
    /// First `model name` of /proc/cpuinfo, or `unknown` (e.g. on arm64, which has none).
    pub cpu_model: String,
    /// Hostname (of this UTS namespace), or `unknown`.
    pub host: String,
    /// (CPU number, busy time) per online CPU: user+nice+system+irq+softirq+steal in
    /// USER_HZ ticks, cumulative since boot. Raw ticks, not ms, as OWCA exported them;
    /// idle, iowait and the guest times (already inside user and nice) are left out.
    pub cpu_usage_per_cpu: Vec<(u32, u64)>,
    /// MemTotal - MemFree - Buffers - Cached in bytes, as OWCA and `free` compute "used";
    /// `None` when /proc/meminfo lacks one of them.
    pub memory_usage_bytes: Option<u64>,
}

type Usage = (Vec<(u32, u64)>, Option<u64>);

/// Per-CPU busy ticks and used memory.
fn read_usage(proc_root: &Path) -> Result<Usage, PlatformError> {
    let stat_path = proc_root.join("stat");
    let cpu_usage_per_cpu = parse_proc_stat(&read(&stat_path)?, &stat_path)?;
    let memory_usage_bytes = parse_meminfo(&read(&proc_root.join("meminfo"))?);
    Ok((cpu_usage_per_cpu, memory_usage_bytes))
}

impl Platform {
    /// Reads the running machine.
    pub fn collect() -> Result<Self, PlatformError> {
        Self::collect_from(Path::new("/proc"), Path::new("/sys"))
    }

    /// Reads a machine whose /proc and /sys are at the given roots (tests use temp trees).
    pub fn collect_from(proc_root: &Path, sys_root: &Path) -> Result<Self, PlatformError> {
        let cpuinfo = read(&proc_root.join("cpuinfo"))?;
        let (cpu_usage_per_cpu, memory_usage_bytes) = read_usage(proc_root)?;
        let (cores, sockets) = topology(sys_root, cpu_usage_per_cpu.iter().map(|&(cpu, _)| cpu))?;
        let host = match read(&proc_root.join("sys/kernel/hostname")) {
            Ok(h) => h.trim().to_owned(),
            Err(PlatformError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {
                "unknown".to_owned()
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            cpus: cpu_usage_per_cpu.len(),
            cores,
            sockets,
            cpu_model: cpu_model(&cpuinfo),
            host,
            cpu_usage_per_cpu,
            memory_usage_bytes,
        })
    }

    /// Re-reads only what changes between iterations (/proc/stat and /proc/meminfo), not
    /// the model and topology, which are read once.
    pub fn refresh_usage(&mut self) -> Result<(), PlatformError> {
        self.refresh_usage_from(Path::new("/proc"))
    }

    /// [`Self::refresh_usage`] for a /proc at `proc_root`.
    pub fn refresh_usage_from(&mut self, proc_root: &Path) -> Result<(), PlatformError> {
        (self.cpu_usage_per_cpu, self.memory_usage_bytes) = read_usage(proc_root)?;
        Ok(())
    }

    /// Labels added to every metric: host, cpus, cores, sockets, cpu_model, owca_version.
    pub fn common_labels(&self) -> Labels {
        [
            ("host", self.host.clone()),
            ("cpus", self.cpus.to_string()),
            ("cores", self.cores.to_string()),
            ("sockets", self.sockets.to_string()),
            ("cpu_model", self.cpu_model.clone()),
            ("owca_version", env!("CARGO_PKG_VERSION").to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Node-wide metrics with OWCA's names: `memory_usage` (gauge, bytes) and
    /// `cpu_usage_per_cpu{cpu="N"}` (counter, USER_HZ ticks).
    pub fn metrics(&self) -> Vec<Metric> {
        let memory = self
            .memory_usage_bytes
            .map(|m| Metric::gauge(MEMORY_USAGE, MEMORY_USAGE_HELP, m as f64));
        let cpus = self.cpu_usage_per_cpu.iter().map(|&(cpu, ticks)| {
            Metric::counter(CPU_USAGE_PER_CPU, CPU_USAGE_PER_CPU_HELP, ticks as f64)
                .with_label("cpu", cpu.to_string())
        });
        memory.into_iter().chain(cpus).collect()
    }
}

fn read(path: &Path) -> Result<String, PlatformError> {
    std::fs::read_to_string(path).map_err(|source| PlatformError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, content: &str) -> PlatformError {
    PlatformError::Parse {
        path: path.to_path_buf(),
        content: content.chars().take(80).collect(),
    }
}

fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Busy ticks per CPU from the `cpuN` lines (the aggregate `cpu` line is skipped).
fn parse_proc_stat(text: &str, path: &Path) -> Result<Vec<(u32, u64)>, PlatformError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|f| f.strip_prefix("cpu"))
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        let cpu: u32 = cpu.parse().map_err(|_| parse_error(path, line))?;
        let ticks = fields
            .map(|f| f.parse::<u64>().map_err(|_| parse_error(path, line)))
            .collect::<Result<Vec<_>, _>>()?;
        // user nice system idle iowait irq softirq steal guest guest_nice; old kernels
        // stop early, and a missing column counts nothing.
        let busy = [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&i| ticks.get(i).copied().unwrap_or(0))
            .sum();
        out.push((cpu, busy));
    }
    Ok(out)
}

/// MemTotal - MemFree - Buffers - Cached in bytes (the values are in KiB, whatever the unit says).
fn parse_meminfo(text: &str) -> Option<u64> {
    let kib = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    let used = kib("MemTotal")?.saturating_sub(kib("MemFree")? + kib("Buffers")? + kib("Cached")?);
    Some(used * 1024)
}

/// Distinct cores and sockets of `cpus`. A CPU without topology files (seen in some
/// VMs) counts as its own core in an unknown socket, which is what the kernel reports
/// (-1) for CPUs it has no package for.
fn topology(
    sys_root: &Path,
    cpus: impl Iterator<Item = u32>,
) -> Result<(usize, usize), PlatformError> {
    let (mut cores, mut sockets) = (BTreeSet::new(), BTreeSet::new());
    for cpu in cpus {
        let dir = sys_root.join(format!("devices/system/cpu/cpu{cpu}/topology"));
        let socket = read_id(&dir.join("physical_package_id"))?.unwrap_or(-1);
        let core = read_id(&dir.join("core_id"))?.unwrap_or(i64::from(cpu));
        cores.insert((socket, core));
        sockets.insert(socket);
    }
    Ok((cores.len(), sockets.len()))
}

/// A topology id; `None` when the file does not exist.
fn read_id(path: &Path) -> Result<Option<i64>, PlatformError> {
    match std::fs::read_to_string(path) {
        Ok(t) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| parse_error(path, t.trim())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PlatformError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sockets: socket 0 has one core with two hyperthreads (cpu0, cpu1), socket 1 two
    /// cores (cpu2, cpu3); cpu4 is offline, so it is in /sys but not in /proc/stat.
    fn two_socket_machine() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let (p, s) = (d.path().join("proc"), d.path().join("sys"));
        std::fs::create_dir_all(p.join("sys/kernel")).unwrap();
        std::fs::write(p.join("sys/kernel/hostname"), "node1\n").unwrap();
        std::fs::write(
            p.join("cpuinfo"),
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz \n\n\
             processor\t: 1\nmodel name\t: something else\n",
        )
        .unwrap();
        std::fs::write(
            p.join("stat"),
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 1 2 3 100 4 5 6 7 0 0\ncpu1 1 1 1 1 1 1 1 1 1 1\n\
             cpu2 0 0 0 0 0 0 0 0 0 0\ncpu3 10 0 0 0 0 0 0\nintr 5 0 0\nctxt 77\n",
        )
        .unwrap();
        std::fs::write(
            p.join("meminfo"),
            "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    700 kB\nBuffers:          50 kB\nCached:          250 kB\nSwapCached:        7 kB\n",
        )
        .unwrap();
        for (cpu, pkg, core) in [(0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 1, 1), (4, 1, 2)] {
            let t = s.join(format!("devices/system/cpu/cpu{cpu}/topology"));
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("physical_package_id"), format!("{pkg}\n")).unwrap();
            std::fs::write(t.join("core_id"), format!("{core}\n")).unwrap();
        }
        d
    }

    fn collect(d: &tempfile::TempDir) -> Result<Platform, PlatformError> {
        Platform::collect_from(&d.path().join("proc"), &d.path().join("sys"))
    }

    #[test]
    fn two_sockets_from_a_fixture_tree() {
        let d = two_socket_machine();
        let pf = collect(&d).unwrap();
        assert_eq!((pf.cpus, pf.cores, pf.sockets), (4, 3, 2));
        assert_eq!(pf.cpu_model, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz");
        assert_eq!(pf.host, "node1");
        assert_eq!(
            pf.cpu_usage_per_cpu,
            [(0, 1 + 2 + 3 + 5 + 6 + 7), (1, 6), (2, 0), (3, 10)]
        );
        assert_eq!(pf.memory_usage_bytes, Some(600 * 1024));

        let l = pf.common_labels();
        let keys: Vec<&str> = l.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cores",
                "cpu_model",
                "cpus",
                "host",
                "owca_version",
                "sockets"
            ]
        );
        assert_eq!(
            (l["host"].as_str(), l["cpus"].as_str(), l["cores"].as_str()),
            ("node1", "4", "3")
        );
        assert_eq!(l["sockets"], "2");
        assert_eq!(l["owca_version"], env!("CARGO_PKG_VERSION"));

        let m = pf.metrics();
        assert_eq!(m.len(), 5);
        assert_eq!((m[0].name.as_ref(), m[0].value), ("memory_usage", 614400.0));
        assert_eq!(m[0].kind, crate::metrics::MetricType::Gauge);
        assert_eq!(
            (m[4].name.as_ref(), m[4].labels["cpu"].as_str(), m[4].value),
            ("cpu_usage_per_cpu", "3", 10.0)
        );
        assert_eq!(m[4].kind, crate::metrics::MetricType::Counter);
    }

    #[test]
    fn refresh_rereads_usage_only() {
        let d = two_socket_machine();
        let mut pf = collect(&d).unwrap();
        let proc_root = d.path().join("proc");
        std::fs::write(
            proc_root.join("meminfo"),
            "MemTotal: 2000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n",
        )
        .unwrap();
        // The topology is not read again: a broken one does not matter any more.
        std::fs::remove_file(proc_root.join("cpuinfo")).unwrap();
        pf.refresh_usage_from(&proc_root).unwrap();
        assert_eq!(pf.memory_usage_bytes, Some(1600 * 1024));
        assert_eq!(pf.cpu_model, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz");
        std::fs::remove_file(proc_root.join("stat")).unwrap();
        let err = pf.refresh_usage_from(&proc_root).unwrap_err().to_string();
        assert!(err.contains("stat"), "{err}");
    }

    #[test]
    fn missing_pieces_fall_back_and_garbage_fails() {
        let d = two_socket_machine();
        let p = d.path().join("proc");
        std::fs::write(p.join("cpuinfo"), "processor\t: 0\nBogoMIPS\t: 50.00\n").unwrap();
        std::fs::remove_file(p.join("sys/kernel/hostname")).unwrap();
        std::fs::write(p.join("meminfo"), "MemTotal: 1000 kB\n").unwrap();
        std::fs::remove_dir_all(d.path().join("sys/devices/system/cpu/cpu3")).unwrap();
        let pf = collect(&d).unwrap();
        assert_eq!(
            (pf.cpu_model.as_str(), pf.host.as_str()),
            ("unknown", "unknown")
        );
        assert_eq!(pf.memory_usage_bytes, None);
        assert!(pf.metrics().iter().all(|m| m.name == "cpu_usage_per_cpu"));
        // cpu3 lost its topology: its own core, in an unknown socket.
        assert_eq!((pf.cores, pf.sockets), (3, 3));

        std::fs::write(p.join("stat"), "cpu0 1 2 x\n").unwrap();
        let err = collect(&d).unwrap_err().to_string();
        assert!(
            err.contains("proc/stat") && err.contains("cpu0 1 2 x"),
            "{err}"
        );
        std::fs::write(p.join("stat"), "cpu0 1\n").unwrap();
        std::fs::write(
            d.path()
                .join("sys/devices/system/cpu/cpu0/topology/core_id"),
            "zero\n",
        )
        .unwrap();
        let err = collect(&d).unwrap_err().to_string();
        assert!(
            err.contains("cpu0/topology/core_id") && err.contains("zero"),
            "{err}"
        );
        std::fs::remove_file(p.join("stat")).unwrap();
        let err = collect(&d).unwrap_err().to_string();
        assert!(
            err.starts_with("reading ") && err.contains("proc/stat"),
            "{err}"
        );
    }

    #[test]
    fn the_real_machine() {
        let pf = Platform::collect().unwrap();
        assert!(pf.cpus >= 1 && pf.cores >= 1 && pf.sockets >= 1, "{pf:?}");
        assert!(pf.cores <= pf.cpus && pf.sockets <= pf.cores, "{pf:?}");
        assert_eq!(pf.cpu_usage_per_cpu.len(), pf.cpus);
        assert!(pf.memory_usage_bytes.is_some_and(|m| m > 0), "{pf:?}");
        assert!(!pf.host.is_empty());
    }
}
