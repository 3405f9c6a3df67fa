//! Which cgroups a process is in, from `/proc/<pid>/cgroup`.

use std::path::{Path, PathBuf};

use super::{CgroupError, Hierarchy};

/// The parsed lines of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroups {
    /// `(controllers, path)` of each v1 hierarchy.
    v1: Vec<(Vec<String>, String)>,
    /// The `0::` line's path.
    v2: Option<String>,
}

impl ProcCgroups {
    /// Path in the v1 hierarchy of `controller` (`cpu` matches `cpu,cpuacct`, not `cpuacct`).
    pub fn v1(&self, controller: &str) -> Option<&str> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|c| c == controller))
            .map(|(_, p)| p.as_str())
    }

    /// Path in the v2 hierarchy.
    pub fn v2(&self) -> Option<&str> {
        self.v2.as_deref()
    }

    /// Path in `hierarchy`, for [`super::Mounts::dir`].
    pub fn path(&self, hierarchy: &Hierarchy) -> Option<&str> {
        match hierarchy {
            Hierarchy::V1 { controller } => self.v1(controller),
            Hierarchy::V2 => self.v2(),
        }
    }
}

/// Reads `/proc/<pid>/cgroup` under `proc_root` (normally `/proc`). `Ok(None)` when the
/// process is gone (ESRCH is what a read returns when it exits while the file is open).
pub fn proc_cgroup(proc_root: &Path, pid: u32) -> Result<Option<ProcCgroups>, CgroupError> {
    let path: PathBuf = proc_root.join(pid.to_string()).join("cgroup");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_proc_cgroup(&text, &path).map(Some),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(None),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// Parses `hierarchy-id:controllers:path` lines; `source` names the file in errors.
pub fn parse_proc_cgroup(text: &str, source: &Path) -> Result<ProcCgroups, CgroupError> {
    let mut out = ProcCgroups {
        v1: Vec::new(),
        v2: None,
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CgroupError::Parse {
                path: source.to_path_buf(),
                content: line.chars().take(80).collect(),
            });
        };
        if id == "0" && controllers.is_empty() {
            out.v2 = Some(path.to_owned());
        } else {
            out.v1.push((
                controllers.split(',').map(str::to_owned).collect(),
                path.to_owned(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_and_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/process_api/64d\n2:cpu,cpuacct:/mesos/abc\n0::/\n";
        let p = parse_proc_cgroup(text, Path::new("x")).unwrap();
        assert_eq!(p.v1("cpu"), Some("/mesos/abc"));
        assert_eq!(p.v1("cpuacct"), Some("/mesos/abc"));
        assert_eq!(p.v1("memory"), Some("/process_api/64d"));
        assert_eq!(p.v1("pids"), None);
        assert_eq!(p.v2(), Some("/"));
        assert_eq!(p.path(&Hierarchy::v1("cpu")), Some("/mesos/abc"));
        assert_eq!(p.path(&Hierarchy::V2), Some("/"));
        let sep = parse_proc_cgroup("1:cpu:/a\n2:cpuacct:/b\n", Path::new("x")).unwrap();
        assert_eq!((sep.v1("cpu"), sep.v1("cpuacct")), (Some("/a"), Some("/b")));
        let acct_only = parse_proc_cgroup("2:cpuacct:/b\n", Path::new("x")).unwrap();
        assert_eq!(
            (acct_only.v1("cpu"), acct_only.v2()),
            (None, None),
            "cpu is not cpuacct"
        );
        let err = parse_proc_cgroup("garbage\n", Path::new("/proc/7/cgroup")).unwrap_err();
        assert!(err.to_string().contains("/proc/7/cgroup"));
    }

    #[test]
    fn own_process_and_a_gone_one() {
        let me = proc_cgroup(Path::new("/proc"), std::process::id())
            .unwrap()
            .unwrap();
        assert!(me.v2().is_some() || me.v1("cpu").is_some());
        assert_eq!(proc_cgroup(Path::new("/proc"), u32::MAX - 1).unwrap(), None);
    }
}
