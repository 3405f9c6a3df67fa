//! Where the cgroup hierarchies are mounted, from /proc/self/mountinfo; never hard-coded,
//! as controllers are co-mounted (`cpu,cpuacct`) on some hosts and separate on others.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::CgroupError;

/// Mount points of the v1 controllers and of cgroup v2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    v1: BTreeMap<String, PathBuf>,
    v2: Option<PathBuf>,
}

impl Mounts {
    /// Reads this process's mount table.
    pub fn discover() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses mountinfo text; lines that are not cgroup mounts are ignored.
    pub fn parse(text: &str) -> Self {
        let mut mounts = Self::default();
        for line in text.lines() {
            // `id parent major:minor root mount-point opts [optional...] - fstype source super-opts`
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(mount_point), Some(fstype)) = (fields.get(4), right.first()) else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match *fstype {
                "cgroup2" => {
                    mounts.v2.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for opt in right.get(2).copied().unwrap_or("").split(',') {
                        if is_controller(opt) {
                            mounts.v1.entry(opt.to_owned()).or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    /// Mount point of a v1 controller (e.g. `cpuacct`), if mounted as v1.
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// Mount point of cgroup v2, if mounted.
    pub fn v2(&self) -> Option<&Path> {
        self.v2.as_deref()
    }
}

/// Super options that are not controller names.
fn is_controller(opt: &str) -> bool {
    !opt.is_empty()
        && !opt.contains('=')
        && !["rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods"]
            .contains(&opt)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_MACHINE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn separate_and_co_mounted_controllers() {
        let m = Mounts::parse(THIS_MACHINE);
        assert_eq!(m.v1("cpu"), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(m.v1("cpuacct"), Some(Path::new("/sys/fs/cgroup/cpuacct")));
        assert_eq!(m.v1("perf_event"), None);
        assert_eq!(m.v1("name=systemd"), None);
        assert_eq!(m.v2(), Some(Path::new("/sys/fs/cgroup/unified")));
        let co = Mounts::parse(
            "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
             26 20 0:23 / /mnt/my\\040cg rw - cgroup cgroup rw,perf_event",
        );
        assert_eq!(co.v1("cpu"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(co.v1("cpuacct"), co.v1("cpu"));
        assert_eq!(co.v1("perf_event"), Some(Path::new("/mnt/my cg")));
        assert_eq!(co.v2(), None);
    }

    #[test]
    fn discovers_the_real_mounts() {
        let m = Mounts::discover().unwrap();
        assert!(m.v1("cpuacct").is_some() || m.v2().is_some());
    }
}
