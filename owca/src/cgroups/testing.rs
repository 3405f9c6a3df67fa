//! Real cgroups for tests on the real kernel: created in the given hierarchies and removed
//! on drop, with their processes moved back to the root first.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{CgroupError, Mounts};

/// Cgroup directories created for a test.
#[derive(Debug)]
pub struct TestCgroup {
    /// `(hierarchy root, directory)` per controller, or `"v2"`.
    dirs: Vec<(String, PathBuf, PathBuf)>,
}

impl TestCgroup {
    /// Creates `rel_path` (e.g. `mesos/abc`) in the v1 hierarchy of each controller.
    pub fn create(mounts: &Mounts, controllers: &[&str], rel_path: &str) -> Result<Self, CgroupError> {
        let mut dirs = Vec::new();
        for c in controllers {
            let root = mounts.v1(c).ok_or_else(|| CgroupError::Parse {
                path: PathBuf::from("/proc/self/mountinfo"),
                content: format!("no v1 {c} hierarchy mounted"),
            })?;
            dirs.push(((*c).to_owned(), root.to_path_buf(), root.join(rel_path)));
        }
        Self::make(dirs)
    }

    /// Creates `rel_path` in the v2 hierarchy.
    pub fn create_v2(mounts: &Mounts, rel_path: &str) -> Result<Self, CgroupError> {
        let root = mounts.v2().ok_or_else(|| CgroupError::Parse {
            path: PathBuf::from("/proc/self/mountinfo"),
            content: "no cgroup v2 mounted".into(),
        })?;
        Self::make(vec![("v2".into(), root.to_path_buf(), root.join(rel_path))])
    }

    fn make(dirs: Vec<(String, PathBuf, PathBuf)>) -> Result<Self, CgroupError> {
        for (_, _, dir) in &dirs {
            std::fs::create_dir_all(dir).map_err(|source| CgroupError::Write {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self { dirs })
    }

    /// Moves a process into every created directory.
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        for (_, _, dir) in &self.dirs {
            write_pid(&dir.join("cgroup.procs"), pid)?;
        }
        Ok(())
    }

    /// The directory in the hierarchy of `controller` (`"v2"` for v2).
    pub fn dir(&self, controller: &str) -> &Path {
        self.dirs
            .iter()
            .find(|(c, _, _)| c == controller)
            .map(|(_, _, d)| d.as_path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// The v2 directory.
    pub fn dir_v2(&self) -> &Path {
        self.dir("v2")
    }

    /// Inode number (= kernfs cgroup id) of the directory in a hierarchy.
    pub fn inode(&self, controller: &str) -> Result<u64, CgroupError> {
        let dir = self.dir(controller);
        std::fs::metadata(dir)
            .map(|m| m.ino())
            .map_err(|source| CgroupError::Read { path: dir.to_path_buf(), source })
    }
}

fn write_pid(procs: &Path, pid: u32) -> Result<(), CgroupError> {
    std::fs::write(procs, pid.to_string()).map_err(|source| CgroupError::Write {
        path: procs.to_path_buf(),
        source,
    })
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for (_, root, dir) in self.dirs.iter().rev() {
            // Children first (tests may nest), then this directory.
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                let _ = write_pid(&root.join("cgroup.procs"), pid);
            }
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(20)),
                    _ => break,
                }
            }
        }
    }
}
