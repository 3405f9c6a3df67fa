//! What the kernel accounts for a cgroup: v1 files where the controller is mounted as v1,
//! else the v2 files. Absent files are `Ok(None)`, not errors.

use std::path::{Path, PathBuf};

use super::{CgroupError, Mounts};

/// v1 memory limit values at or above this mean "unlimited" (PAGE_COUNTER_MAX pages).
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// One cgroup, by its path below the hierarchy roots (e.g. `/mesos/abc`).
#[derive(Debug, Clone)]
pub struct Cgroup<'a> {
    mounts: &'a Mounts,
    path: String,
}

impl<'a> Cgroup<'a> {
    /// The cgroup at `path` in every mounted hierarchy.
    pub fn new(mounts: &'a Mounts, path: &str) -> Self {
        Self {
            mounts,
            path: path.trim_start_matches('/').to_owned(),
        }
    }

    /// The file in the v1 hierarchy of `controller`, else in v2.
    fn file(&self, controller: &str, v1: &str, v2: &str) -> Option<(PathBuf, bool)> {
        match (self.mounts.v1(controller), self.mounts.v2()) {
            (Some(root), _) => Some((root.join(&self.path).join(v1), true)),
            (None, Some(root)) => Some((root.join(&self.path).join(v2), false)),
            (None, None) => None,
        }
    }

    /// CPU time of the cgroup's tasks in ns (`cpuacct.usage`, or v2 `cpu.stat` usage_usec).
    pub fn cpu_usage_ns(&self) -> Result<Option<u64>, CgroupError> {
        match self.file("cpuacct", "cpuacct.usage", "cpu.stat") {
            Some((p, true)) => read_number(&p),
            Some((p, false)) => Ok(read_key(&p, "usage_usec")?.map(|us| us * 1000)),
            None => Ok(None),
        }
    }

    /// Memory in use in bytes (`memory.usage_in_bytes` or `memory.current`).
    pub fn memory_usage_bytes(&self) -> Result<Option<u64>, CgroupError> {
        match self.file("memory", "memory.usage_in_bytes", "memory.current") {
            Some((p, _)) => read_number(&p),
            None => Ok(None),
        }
    }

    /// Memory limit in bytes; `None` when unlimited or absent.
    pub fn memory_limit_bytes(&self) -> Result<Option<u64>, CgroupError> {
        match self.file("memory", "memory.limit_in_bytes", "memory.max") {
            Some((p, true)) => Ok(read_number(&p)?.filter(|&v| v < V1_UNLIMITED)),
            Some((p, false)) => match read_text(&p)? {
                Some(t) if t.trim() == "max" => Ok(None),
                Some(t) => parse(&p, &t).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Time throttled by the CPU quota in seconds (`cpu.stat` throttled_time ns on v1,
    /// throttled_usec on v2).
    pub fn cpu_throttled_seconds(&self) -> Result<Option<f64>, CgroupError> {
        match self.file("cpu", "cpu.stat", "cpu.stat") {
            Some((p, true)) => Ok(read_key(&p, "throttled_time")?.map(|ns| ns as f64 / 1e9)),
            Some((p, false)) => Ok(read_key(&p, "throttled_usec")?.map(|us| us as f64 / 1e6)),
            None => Ok(None),
        }
    }
}

fn read_text(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.trim().chars().take(80).collect(),
    })
}

fn read_number(path: &Path) -> Result<Option<u64>, CgroupError> {
    read_text(path)?.map(|t| parse(path, &t)).transpose()
}

/// The value of `key` in a flat-keyed file such as `cpu.stat`.
fn read_key(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(|v| parse(path, v))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn v1_files() {
        let d = tree(&[
            ("cpuacct/mesos/a/cpuacct.usage", "123456\n"),
            ("memory/mesos/a/memory.usage_in_bytes", "4096\n"),
            ("memory/mesos/a/memory.limit_in_bytes", "9223372036854771712\n"),
            ("cpu/mesos/a/cpu.stat", "nr_periods 3\nnr_throttled 1\nthrottled_time 2500000000\n"),
        ]);
        let root = d.path().display();
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {root}/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             2 1 0:2 / {root}/memory rw - cgroup cgroup rw,memory\n\
             3 1 0:3 / {root}/cpu rw - cgroup cgroup rw,cpu\n"
        ));
        let cg = Cgroup::new(&m, "/mesos/a");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(123456));
        assert_eq!(cg.memory_usage_bytes().unwrap(), Some(4096));
        assert_eq!(cg.memory_limit_bytes().unwrap(), None, "unlimited");
        assert_eq!(cg.cpu_throttled_seconds().unwrap(), Some(2.5));
        assert_eq!(Cgroup::new(&m, "/mesos/gone").cpu_usage_ns().unwrap(), None);
        std::fs::write(d.path().join("cpuacct/mesos/a/cpuacct.usage"), "garbage").unwrap();
        let err = cg.cpu_usage_ns().unwrap_err().to_string();
        assert!(err.contains("cpuacct.usage") && err.contains("garbage"), "{err}");
    }

    #[test]
    fn v2_files() {
        let d = tree(&[
            ("u/t/cpu.stat", "usage_usec 7\nuser_usec 5\nthrottled_usec 1500000\n"),
            ("u/t/memory.current", "8192\n"),
            ("u/t/memory.max", "1048576\n"),
        ]);
        let m = Mounts::parse(&format!("1 1 0:1 / {}/u rw - cgroup2 cgroup2 rw\n", d.path().display()));
        let cg = Cgroup::new(&m, "t");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(7000));
        assert_eq!(cg.memory_usage_bytes().unwrap(), Some(8192));
        assert_eq!(cg.memory_limit_bytes().unwrap(), Some(1048576));
        assert_eq!(cg.cpu_throttled_seconds().unwrap(), Some(1.5));
        std::fs::write(d.path().join("u/t/memory.max"), "max\n").unwrap();
        assert_eq!(cg.memory_limit_bytes().unwrap(), None);
    }
}
