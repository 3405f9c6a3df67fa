//! Where the cgroup hierarchies are mounted, from /proc/self/mountinfo; never hard-coded,
//! as controllers are co-mounted (`cpu,cpuacct`) on some hosts and separate on others.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{CgroupError, Hierarchy};

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/cpuacct`.
    pub point: PathBuf,
    /// The cgroup shown at `point` (mountinfo field 4): `/` unless only a subtree is
    /// mounted there, as in containers that bind-mount their own cgroup.
    pub root: String,
}

/// Mount points of the v1 controllers and of cgroup v2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    v1: BTreeMap<String, Mount>,
    v2: Option<Mount>,
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
            let (Some(root), Some(point), Some(fstype)) =
                (fields.get(3), fields.get(4), right.first())
            else {
                continue;
            };
            let mount = Mount {
                point: PathBuf::from(unescape(point)),
                root: unescape(root),
            };
            match *fstype {
                "cgroup2" => match &mut mounts.v2 {
                    Some(old) => keep_better(old, mount),
                    None => mounts.v2 = Some(mount),
                },
                "cgroup" => {
                    for opt in right.get(2).copied().unwrap_or("").split(',') {
                        if is_controller(opt) {
                            let old = mounts
                                .v1
                                .entry(opt.to_owned())
                                .or_insert_with(|| mount.clone());
                            keep_better(old, mount.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    /// The mount of a hierarchy, if mounted.
    pub fn mount(&self, hierarchy: &Hierarchy) -> Option<&Mount> {
        match hierarchy {
            Hierarchy::V1 { controller } => self.v1.get(controller),
            Hierarchy::V2 => self.v2.as_ref(),
        }
    }

    /// Mount point of a v1 controller (e.g. `cpuacct`), if mounted as v1.
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(|m| m.point.as_path())
    }

    /// Mount point of cgroup v2, if mounted.
    pub fn v2(&self) -> Option<&Path> {
        self.v2.as_ref().map(|m| m.point.as_path())
    }

    /// Where `controller`'s accounting lives: its v1 hierarchy when it is mounted as v1
    /// (on hybrid hosts a controller is attached to v1 or to v2, never both, and v1 is
    /// what Mesos uses), else v2 when mounted. `None` when neither is.
    pub fn preferred(&self, controller: &str) -> Option<Hierarchy> {
        if self.v1.contains_key(controller) {
            Some(Hierarchy::v1(controller))
        } else {
            self.v2.as_ref().map(|_| Hierarchy::V2)
        }
    }

    /// The directory of a cgroup path (`/mesos/abc` or `mesos/abc`, as `/proc/<pid>/cgroup`
    /// or Mesos give it) in `hierarchy`. When only a subtree is mounted (root not `/`), a
    /// path below that root is taken relative to it; any other path is taken as already
    /// relative to the mount point. `None` when the hierarchy is not mounted or the path
    /// has a `..` component (it would leave the cgroup filesystem).
    pub fn dir(&self, hierarchy: &Hierarchy, cgroup_path: &str) -> Option<PathBuf> {
        let mount = self.mount(hierarchy)?;
        if cgroup_path.split('/').any(|c| c == "..") {
            return None;
        }
        let path = cgroup_path.trim_matches('/');
        let root = mount.root.trim_matches('/');
        let rel = if root.is_empty() {
            path
        } else if path == root {
            ""
        } else {
            path.strip_prefix(root)
                .and_then(|p| p.strip_prefix('/'))
                .unwrap_or(path)
        };
        Some(if rel.is_empty() {
            mount.point.clone()
        } else {
            mount.point.join(rel)
        })
    }

    /// The cgroup path (`/a/b`) of a directory in `hierarchy`: the inverse of
    /// [`Mounts::dir`]. `None` when the directory is not under the mount point or its
    /// name is not UTF-8.
    pub fn cgroup_path(&self, hierarchy: &Hierarchy, dir: &Path) -> Option<String> {
        let mount = self.mount(hierarchy)?;
        let rel = dir.strip_prefix(&mount.point).ok()?.to_str()?;
        let root = mount.root.trim_end_matches('/');
        Some(match (rel.is_empty(), root.is_empty()) {
            (true, true) => "/".to_owned(),
            (true, false) => root.to_owned(),
            (false, _) => format!("{root}/{rel}"),
        })
    }
}

/// Prefers a mount showing the whole hierarchy over one showing a subtree, else keeps the
/// first: the same hierarchy may be mounted more than once.
fn keep_better(old: &mut Mount, new: Mount) {
    if old.root != "/" && new.root == "/" {
        *old = new;
    }
}

/// Super options that are not controller names.
fn is_controller(opt: &str) -> bool {
    !opt.is_empty()
        && !opt.contains('=')
        && ![
            "rw",
            "ro",
            "none",
            "noprefix",
            "clone_children",
            "xattr",
            "cpuset_v2_mode",
            "favordynmods",
        ]
        .contains(&opt)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            // Three octal digits fit a byte only up to \377; others are kept as they are.
            (b'\\', Some(&[h, m, l])) if h <= b'3' => {
                out.push((h - b'0') * 64 + (m - b'0') * 8 + (l - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cat /proc/self/mountinfo` on the development machine: controllers mounted apart.
    const THIS_MACHINE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw";

    /// A typical Mesos host of the systemd era: `cpu,cpuacct` co-mounted.
    const CO_MOUNTED: &str = "\
25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 / /sys/fs/cgroup/perf_event rw,nosuid shared:10 - cgroup cgroup rw,perf_event
27 20 0:24 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory";

    #[test]
    fn separately_mounted_controllers() {
        let m = Mounts::parse(THIS_MACHINE);
        assert_eq!(m.v1("cpu"), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(m.v1("cpuacct"), Some(Path::new("/sys/fs/cgroup/cpuacct")));
        assert_eq!(m.v1("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(m.v1("perf_event"), None);
        assert_eq!(m.v1("name=systemd"), None);
        assert_eq!(m.v1("rw"), None);
        assert_eq!(m.v2(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.preferred("cpuacct"), Some(Hierarchy::v1("cpuacct")));
        assert_eq!(m.preferred("io"), Some(Hierarchy::V2));
        assert_eq!(
            m.dir(&Hierarchy::v1("cpuacct"), "/mesos/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct/mesos/abc"))
        );
        assert_eq!(
            m.dir(&Hierarchy::V2, "mesos/abc/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/mesos/abc"))
        );
        assert_eq!(
            m.dir(&Hierarchy::V2, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m.dir(&Hierarchy::v1("perf_event"), "/mesos/abc"), None);
        assert_eq!(m.dir(&Hierarchy::v1("cpu"), "/mesos/../../etc"), None);
    }

    #[test]
    fn co_mounted_controllers_share_a_mount() {
        let m = Mounts::parse(CO_MOUNTED);
        assert_eq!(m.v1("cpu"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(m.v1("cpuacct"), m.v1("cpu"));
        assert_eq!(
            m.v1("perf_event"),
            Some(Path::new("/sys/fs/cgroup/perf_event"))
        );
        assert_eq!(m.v2(), None);
        assert_eq!(m.preferred("io"), None);
        assert_eq!(
            m.dir(&Hierarchy::v1("cpuacct"), "mesos/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/mesos/abc"))
        );
    }

    #[test]
    fn escaped_mount_points() {
        let m = Mounts::parse(
            "26 20 0:23 / /mnt/my\\040cg\\134x rw - cgroup cgroup rw,perf_event\n\
             27 20 0:24 / /mnt/tab\\011here rw - cgroup2 cgroup2 rw,nsdelegate",
        );
        assert_eq!(m.v1("perf_event"), Some(Path::new("/mnt/my cg\\x")));
        assert_eq!(m.v2(), Some(Path::new("/mnt/tab\there")));
        assert_eq!(unescape("a\\9b\\"), "a\\9b\\", "not an escape: kept");
    }

    #[test]
    fn subtree_mounts_resolve_paths_below_their_root() {
        // A container that sees only its own cgroup, bind-mounted at the usual place.
        let m = Mounts::parse(
            "40 30 0:30 /docker/c1 /sys/fs/cgroup/cpuacct ro - cgroup cgroup rw,cpuacct\n\
             41 30 0:31 /docker/c1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n\
             42 30 0:31 / /host/memory ro - cgroup cgroup rw,memory",
        );
        let acct = Hierarchy::v1("cpuacct");
        let mount = m.mount(&acct).unwrap();
        assert_eq!(mount.root, "/docker/c1");
        let want = PathBuf::from("/sys/fs/cgroup/cpuacct/mesos/t");
        assert_eq!(
            m.dir(&acct, "/docker/c1/mesos/t").as_ref(),
            Some(&want),
            "/proc/<pid>/cgroup form"
        );
        assert_eq!(
            m.dir(&acct, "/mesos/t").as_ref(),
            Some(&want),
            "already relative to the mount"
        );
        assert_eq!(
            m.dir(&acct, "/docker/c1"),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(
            m.cgroup_path(&acct, &want).as_deref(),
            Some("/docker/c1/mesos/t")
        );
        assert_eq!(
            m.v1("memory"),
            Some(Path::new("/host/memory")),
            "the whole hierarchy wins"
        );
    }

    #[test]
    fn cgroup_path_inverts_dir() {
        let m = Mounts::parse(THIS_MACHINE);
        let h = Hierarchy::v1("memory");
        for p in ["/", "/mesos", "/mesos/abc"] {
            let dir = m.dir(&h, p).unwrap();
            assert_eq!(m.cgroup_path(&h, &dir).as_deref(), Some(p));
        }
        assert_eq!(m.cgroup_path(&h, Path::new("/tmp/x")), None);
    }

    #[test]
    fn discovers_the_real_mounts() {
        let m = Mounts::discover().unwrap();
        assert!(m.v1("cpuacct").is_some() || m.v2().is_some(), "{m:?}");
    }
}
