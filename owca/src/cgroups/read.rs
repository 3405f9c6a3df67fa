//! What the kernel accounts for a cgroup: v1 files where the controller is mounted as v1,
//! else the v2 files. Absent files are `Ok(None)`, not errors.

use std::path::{Path, PathBuf};

use super::{CgroupError, Hierarchy, Mounts};

/// v1 memory limit values at or above this mean "unlimited". The kernel shows
/// PAGE_COUNTER_MAX pages, i.e. i64::MAX rounded down to the page size
/// (9223372036854771712 with 4 KiB pages); rounding to 64 KiB covers every page size in use.
const V1_UNLIMITED: u64 = i64::MAX as u64 & !0xFFFF;

/// One cgroup, by its path below the hierarchy roots (e.g. `/mesos/abc`), in whichever
/// hierarchy holds each controller's accounting ([`Mounts::preferred`]).
///
/// Each read opens the file, reads it and closes it: no file stays open between reads, so
/// that the agent's open files do not grow with its tasks.
#[derive(Debug, Clone)]
pub struct Cgroup<'a> {
    mounts: &'a Mounts,
    path: String,
}

/// A file's text, `None` when it does not exist, in as few syscalls as a cgroupfs file
/// allows: open, one read, close.
///
/// A cgroupfs (seq_file) read returns as many whole lines as fit, so a read shorter than
/// the buffer is the end: no second read to see 0 bytes, and no `fstat` for a size hint
/// (cgroupfs files report 0 or 4096), which halves the syscalls at thousands of tasks.
fn read_once(path: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::FileExt as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        let n = file.read_at(&mut buf, out.len() as u64)?;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

impl<'a> Cgroup<'a> {
    /// The cgroup at `path` (`/mesos/abc` or `mesos/abc`) in every mounted hierarchy.
    pub fn new(mounts: &'a Mounts, path: &str) -> Self {
        Self {
            mounts,
            path: path.to_owned(),
        }
    }

    /// A file's text; `None` when it does not exist.
    fn read_text(&self, path: &Path) -> Result<Option<String>, CgroupError> {
        read_once(path).map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A file holding one number; `None` when it does not exist.
    fn read_number(&self, path: &Path) -> Result<Option<u64>, CgroupError> {
        self.read_text(path)?.map(|t| parse(path, &t)).transpose()
    }

    /// The value of `key` in a flat-keyed file such as `cpu.stat`.
    fn read_key(&self, path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
        let Some(text) = self.read_text(path)? else {
            return Ok(None);
        };
        key_value(path, &text, key)
    }

    /// The cgroup path this was made with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The hierarchy holding `controller`'s accounting and the cgroup's directory there;
    /// `None` when neither a v1 hierarchy of `controller` nor v2 is mounted.
    pub fn dir(&self, controller: &str) -> Option<(Hierarchy, PathBuf)> {
        let hierarchy = self.mounts.preferred(controller)?;
        let dir = self.mounts.dir(&hierarchy, &self.path)?;
        Some((hierarchy, dir))
    }

    /// Thread ids in the cgroup (v1 `tasks`, v2 `cgroup.threads`) in the hierarchy of
    /// `controller`; empty when the cgroup is gone.
    pub fn thread_ids(&self, controller: &str) -> Result<Vec<u32>, CgroupError> {
        let Some((path, _)) = self.file(controller, "tasks", "cgroup.threads") else {
            return Ok(Vec::new());
        };
        let text = self.read_text(&path)?.unwrap_or_default();
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// `v1` in the v1 directory of `controller`, else `v2` in the v2 directory; the bool
    /// says whether it is v1.
    fn file(&self, controller: &str, v1: &str, v2: &str) -> Option<(PathBuf, bool)> {
        match self.dir(controller)? {
            (Hierarchy::V1 { .. }, dir) => Some((dir.join(v1), true)),
            (Hierarchy::V2, dir) => Some((dir.join(v2), false)),
        }
    }

    /// CPU time of the cgroup's tasks in ns (`cpuacct.usage`, or v2 `cpu.stat` usage_usec).
    pub fn cpu_usage_ns(&self) -> Result<Option<u64>, CgroupError> {
        match self.file("cpuacct", "cpuacct.usage", "cpu.stat") {
            Some((p, true)) => self.read_number(&p),
            Some((p, false)) => Ok(self
                .read_key(&p, "usage_usec")?
                .map(|us| us.saturating_mul(1000))),
            None => Ok(None),
        }
    }

    /// Memory in use in bytes (`memory.usage_in_bytes` or `memory.current`).
    pub fn memory_usage_bytes(&self) -> Result<Option<u64>, CgroupError> {
        match self.file("memory", "memory.usage_in_bytes", "memory.current") {
            Some((p, _)) => self.read_number(&p),
            None => Ok(None),
        }
    }

    /// Memory limit in bytes (`memory.limit_in_bytes` or `memory.max`); `None` when
    /// unlimited or absent.
    pub fn memory_limit_bytes(&self) -> Result<Option<u64>, CgroupError> {
        match self.file("memory", "memory.limit_in_bytes", "memory.max") {
            Some((p, true)) => Ok(self.read_number(&p)?.filter(|&v| v < V1_UNLIMITED)),
            Some((p, false)) => match self.read_text(&p)? {
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
            Some((p, true)) => Ok(self
                .read_key(&p, "throttled_time")?
                .map(|ns| ns as f64 / 1e9)),
            Some((p, false)) => Ok(self
                .read_key(&p, "throttled_usec")?
                .map(|us| us as f64 / 1e6)),
            None => Ok(None),
        }
    }

    /// Whether the cgroup has processes, in the hierarchy of `controller`; `None` when it
    /// does not exist there.
    pub fn has_processes(&self, controller: &str) -> Result<Option<bool>, CgroupError> {
        match self.dir(controller) {
            Some((_, dir)) => super::has_processes(&dir),
            None => Ok(None),
        }
    }
}

/// One number, or an error naming the file and quoting the text.
pub(super) fn parse(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.trim().chars().take(80).collect(),
    })
}

/// The value of `key` in flat-keyed text such as `cpu.stat`'s.
fn key_value(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(|v| parse(path, v))
        .transpose()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn every_read_sees_the_current_content() {
        let d = tree(&[("cpuacct/a/cpuacct.usage", "1\n")]);
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {}/cpuacct rw - cgroup cgroup rw,cpuacct\n",
            d.path().display()
        ));
        let cg = Cgroup::new(&m, "/a");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(1));
        // Rewritten in place, as the kernel's view changes.
        std::fs::write(d.path().join("cpuacct/a/cpuacct.usage"), "22\n").unwrap();
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(22));
        // Longer than one read's buffer: read to the end.
        let long = format!("{}\nthrottled_time 5\n", "x ".repeat(3000));
        std::fs::write(d.path().join("cpuacct/a/cpuacct.usage"), &long).unwrap();
        assert_eq!(
            read_once(&d.path().join("cpuacct/a/cpuacct.usage")).unwrap(),
            Some(long)
        );
        assert_eq!(Cgroup::new(&m, "/gone").cpu_usage_ns().unwrap(), None);
    }

    /// A temp dir holding `files` (path, content).
    pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn v1_mounts(root: &Path) -> Mounts {
        let root = root.display();
        Mounts::parse(&format!(
            "1 1 0:1 / {root}/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             2 1 0:2 / {root}/memory rw - cgroup cgroup rw,memory\n\
             3 1 0:3 / {root}/cpu rw - cgroup cgroup rw,cpu\n"
        ))
    }

    #[test]
    fn v1_files() {
        let d = tree(&[
            ("cpuacct/mesos/a/cpuacct.usage", "123456\n"),
            ("cpuacct/mesos/a/cgroup.procs", "42\n"),
            ("memory/mesos/a/memory.usage_in_bytes", "4096\n"),
            (
                "memory/mesos/a/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "cpu/mesos/a/cpu.stat",
                "nr_periods 3\nnr_throttled 1\nthrottled_time 2500000000\n",
            ),
        ]);
        let m = v1_mounts(d.path());
        let cg = Cgroup::new(&m, "/mesos/a");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(123456));
        assert_eq!(cg.memory_usage_bytes().unwrap(), Some(4096));
        assert_eq!(cg.memory_limit_bytes().unwrap(), None, "unlimited");
        assert_eq!(cg.cpu_throttled_seconds().unwrap(), Some(2.5));
        assert_eq!(cg.has_processes("cpuacct").unwrap(), Some(true));
        assert_eq!(
            cg.dir("cpu").unwrap(),
            (Hierarchy::v1("cpu"), d.path().join("cpu/mesos/a"))
        );

        std::fs::write(
            d.path().join("memory/mesos/a/memory.limit_in_bytes"),
            "1073741824\n",
        )
        .unwrap();
        assert_eq!(cg.memory_limit_bytes().unwrap(), Some(1 << 30));
        // "Unlimited" with 64 KiB pages (arm64, ppc64) is a little lower.
        std::fs::write(
            d.path().join("memory/mesos/a/memory.limit_in_bytes"),
            "9223372036854710272\n",
        )
        .unwrap();
        assert_eq!(cg.memory_limit_bytes().unwrap(), None);
        std::fs::write(
            d.path().join("memory/mesos/a/memory.limit_in_bytes"),
            "4611686018427387904\n",
        )
        .unwrap();
        assert_eq!(cg.memory_limit_bytes().unwrap(), Some(1 << 62));
        std::fs::write(
            d.path().join("memory/mesos/a/memory.limit_in_bytes"),
            "9223372036854775807\n",
        )
        .unwrap();
        assert_eq!(cg.memory_limit_bytes().unwrap(), None);
    }

    #[test]
    fn absent_is_none() {
        let d = tree(&[("cpu/mesos/a/cpu.stat", "nr_periods 0\n")]);
        let m = v1_mounts(d.path());
        let gone = Cgroup::new(&m, "/mesos/gone");
        assert_eq!(gone.cpu_usage_ns().unwrap(), None);
        assert_eq!(gone.memory_usage_bytes().unwrap(), None);
        assert_eq!(gone.memory_limit_bytes().unwrap(), None);
        assert_eq!(gone.cpu_throttled_seconds().unwrap(), None);
        assert_eq!(gone.has_processes("cpu").unwrap(), None);
        let no_key = Cgroup::new(&m, "/mesos/a");
        assert_eq!(
            no_key.cpu_throttled_seconds().unwrap(),
            None,
            "no throttled_time line"
        );
        let unmounted = Mounts::default();
        assert_eq!(Cgroup::new(&unmounted, "/a").cpu_usage_ns().unwrap(), None);
        assert_eq!(Cgroup::new(&unmounted, "/a").dir("cpu"), None);
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let d = tree(&[
            ("cpuacct/a/cpuacct.usage", "garbage"),
            ("memory/a/memory.usage_in_bytes", ""),
            ("cpu/a/cpu.stat", "throttled_time -1\n"),
        ]);
        let m = v1_mounts(d.path());
        let cg = Cgroup::new(&m, "a");
        let err = cg.cpu_usage_ns().unwrap_err().to_string();
        assert!(
            err.contains("cpuacct/a/cpuacct.usage") && err.contains("garbage"),
            "{err}"
        );
        let err = cg.memory_usage_bytes().unwrap_err().to_string();
        assert!(err.contains("memory.usage_in_bytes"), "{err}");
        let err = cg.cpu_throttled_seconds().unwrap_err().to_string();
        assert!(err.contains("cpu.stat") && err.contains("-1"), "{err}");
        // A directory where a file should be: a read error, not "absent".
        std::fs::create_dir_all(d.path().join("memory/a/memory.limit_in_bytes")).unwrap();
        let err = cg.memory_limit_bytes().unwrap_err().to_string();
        assert!(
            err.starts_with("reading ") && err.contains("memory.limit_in_bytes"),
            "{err}"
        );
    }

    #[test]
    fn co_mounted_cpu_and_cpuacct() {
        let d = tree(&[
            ("cc/m/t/cpuacct.usage", "9\n"),
            ("cc/m/t/cpu.stat", "throttled_time 1000\n"),
        ]);
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {}/cc rw - cgroup cgroup rw,cpu,cpuacct\n",
            d.path().display()
        ));
        let cg = Cgroup::new(&m, "/m/t");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(9));
        assert_eq!(cg.cpu_throttled_seconds().unwrap(), Some(1e-6));
        assert_eq!(
            cg.memory_usage_bytes().unwrap(),
            None,
            "memory not mounted at all"
        );
    }

    #[test]
    fn v2_files() {
        let d = tree(&[
            (
                "u/t/cpu.stat",
                "usage_usec 7\nuser_usec 5\nthrottled_usec 1500000\n",
            ),
            ("u/t/memory.current", "8192\n"),
            ("u/t/memory.max", "1048576\n"),
            ("u/t/cgroup.procs", ""),
        ]);
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {}/u rw - cgroup2 cgroup2 rw\n",
            d.path().display()
        ));
        let cg = Cgroup::new(&m, "t");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(7000));
        assert_eq!(cg.memory_usage_bytes().unwrap(), Some(8192));
        assert_eq!(cg.memory_limit_bytes().unwrap(), Some(1048576));
        assert_eq!(cg.cpu_throttled_seconds().unwrap(), Some(1.5));
        assert_eq!(cg.has_processes("cpu").unwrap(), Some(false));
        std::fs::write(d.path().join("u/t/memory.max"), "max\n").unwrap();
        assert_eq!(cg.memory_limit_bytes().unwrap(), None);
        std::fs::write(d.path().join("u/t/memory.max"), "lots\n").unwrap();
        let err = cg.memory_limit_bytes().unwrap_err().to_string();
        assert!(
            err.contains("u/t/memory.max") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn v1_wins_over_v2_per_controller() {
        // Hybrid host: cpuacct on v1, memory only on v2.
        let d = tree(&[
            ("a/t/cpuacct.usage", "5\n"),
            ("u/t/cpu.stat", "usage_usec 1\n"),
            ("u/t/memory.current", "3\n"),
        ]);
        let root = d.path().display();
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {root}/a rw - cgroup cgroup rw,cpuacct\n2 1 0:2 / {root}/u rw - cgroup2 cgroup2 rw\n"
        ));
        let cg = Cgroup::new(&m, "/t");
        assert_eq!(cg.cpu_usage_ns().unwrap(), Some(5));
        assert_eq!(cg.memory_usage_bytes().unwrap(), Some(3));
    }
}
