//! The node's platform: topology and model for the common labels, and node-wide usage.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::metrics::{Labels, Metric};

/// Failure reading a platform file.
#[derive(Debug, Error)]
#[error("reading {path}: {source}")]
pub struct PlatformError {
    path: PathBuf,
    source: std::io::Error,
}

/// A snapshot of the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// Logical CPUs online.
    pub cpus: usize,
    /// Distinct physical cores.
    pub cores: usize,
    /// Distinct sockets.
    pub sockets: usize,
    pub cpu_model: String,
    pub host: String,
    /// Busy time per CPU in USER_HZ ticks (user+nice+system+irq+softirq+steal), as OWCA.
    pub cpu_usage_per_cpu: Vec<(u32, u64)>,
    /// MemTotal - MemFree - Buffers - Cached, in bytes, as OWCA.
    pub memory_usage_bytes: Option<u64>,
}

fn read(path: &Path) -> Result<String, PlatformError> {
    std::fs::read_to_string(path).map_err(|source| PlatformError {
        path: path.to_path_buf(),
        source,
    })
}

impl Platform {
    /// Reads the running machine.
    pub fn collect() -> Result<Self, PlatformError> {
        Self::collect_from(Path::new("/proc"), Path::new("/sys"))
    }

    /// Reads a machine whose /proc and /sys are at the given roots (tests use temp trees).
    pub fn collect_from(proc_root: &Path, sys_root: &Path) -> Result<Self, PlatformError> {
        let cpuinfo = read(&proc_root.join("cpuinfo"))?;
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_else(|| "unknown".to_owned());
        let stat = read(&proc_root.join("stat"))?;
        let cpu_usage_per_cpu: Vec<(u32, u64)> = stat
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let cpu: u32 = f.next()?.strip_prefix("cpu")?.parse().ok()?;
                let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
                // user nice system idle iowait irq softirq steal
                let busy = [0, 1, 2, 5, 6, 7].iter().map(|&i| v.get(i).copied().unwrap_or(0)).sum();
                Some((cpu, busy))
            })
            .collect();
        let meminfo = read(&proc_root.join("meminfo"))?;
        let kb = |key: &str| {
            meminfo.lines().find_map(|l| {
                l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        let memory_usage_bytes = match (kb("MemTotal"), kb("MemFree"), kb("Buffers"), kb("Cached")) {
            (Some(t), Some(f), Some(b), Some(c)) => Some(t.saturating_sub(f + b + c) * 1024),
            _ => None,
        };
        let (mut cores, mut sockets) = (BTreeSet::new(), BTreeSet::new());
        for &(cpu, _) in &cpu_usage_per_cpu {
            let topo = sys_root.join(format!("devices/system/cpu/cpu{cpu}/topology"));
            let id = |f: &str| read(&topo.join(f)).map(|s| s.trim().to_owned()).unwrap_or_default();
            let socket = id("physical_package_id");
            cores.insert((socket.clone(), id("core_id")));
            sockets.insert(socket);
        }
        let host = read(&proc_root.join("sys/kernel/hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Ok(Self {
            cpus: cpu_usage_per_cpu.len(),
            cores: cores.len(),
            sockets: sockets.len(),
            cpu_model,
            host,
            cpu_usage_per_cpu,
            memory_usage_bytes,
        })
    }

    /// Labels added to every metric.
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

    /// Node-wide metrics with OWCA's names.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        if let Some(m) = self.memory_usage_bytes {
            out.push(Metric::gauge(
                "memory_usage",
                "Memory used on the node in bytes (MemTotal - MemFree - Buffers - Cached).",
                m as f64,
            ));
        }
        for &(cpu, ticks) in &self.cpu_usage_per_cpu {
            out.push(
                Metric::counter(
                    "cpu_usage_per_cpu",
                    "Busy time of a logical CPU in USER_HZ ticks (/proc/stat).",
                    ticks as f64,
                )
                .with_label("cpu", cpu.to_string()),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sockets_from_a_fixture_tree() {
        let d = tempfile::tempdir().unwrap();
        let (p, s) = (d.path().join("proc"), d.path().join("sys"));
        std::fs::create_dir_all(p.join("sys/kernel")).unwrap();
        std::fs::write(p.join("sys/kernel/hostname"), "node1\n").unwrap();
        std::fs::write(p.join("cpuinfo"), "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold\n").unwrap();
        std::fs::write(
            p.join("stat"),
            "cpu  9 9 9 9 9 9 9 9\ncpu0 1 2 3 100 4 5 6 7 0 0\ncpu1 1 1 1 1 1 1 1 1\ncpu2 0 0 0 0 0 0 0 0\ncpu3 0 0 0 0 0 0 0 0\nintr 5\n",
        )
        .unwrap();
        std::fs::write(p.join("meminfo"), "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n").unwrap();
        for (cpu, pkg, core) in [(0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 1, 1)] {
            let t = s.join(format!("devices/system/cpu/cpu{cpu}/topology"));
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("physical_package_id"), format!("{pkg}\n")).unwrap();
            std::fs::write(t.join("core_id"), format!("{core}\n")).unwrap();
        }
        let pf = Platform::collect_from(&p, &s).unwrap();
        assert_eq!((pf.cpus, pf.cores, pf.sockets), (4, 3, 2));
        assert_eq!(pf.cpu_model, "Intel(R) Xeon(R) Gold");
        assert_eq!(pf.cpu_usage_per_cpu[0], (0, 1 + 2 + 3 + 5 + 6 + 7));
        assert_eq!(pf.memory_usage_bytes, Some(600 * 1024));
        let l = pf.common_labels();
        assert_eq!(l["host"], "node1");
        assert_eq!(l["sockets"], "2");
        assert_eq!(pf.metrics().len(), 5);
    }

    #[test]
    fn the_real_machine() {
        let pf = Platform::collect().unwrap();
        assert!(pf.cpus >= 1 && pf.cores >= 1 && pf.sockets >= 1);
    }
}
