//! Real cgroups for tests on the real kernel (needs root): created in the given hierarchies
//! and removed on drop, with their processes moved back to the hierarchy root first.
//!
//! Shared by the integration tests and the bench (`tests/bench/`), which include this
//! support module; it uses only the library's public cgroup API.

use std::{
    collections::BTreeSet,
    io::ErrorKind,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use owca::cgroups::{CgroupError, Hierarchy, Mounts};

/// Directories a `TestCgroup` could not remove yet: parents it had to create (`mesos/` for
/// `mesos/abc`) and its own directory while other tests' cgroups are inside. Whichever
/// drop finds one empty removes it. The lock keeps one test from removing a parent while
/// another creates a cgroup inside it.
static CREATED_PARENTS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// rmdir fails with EBUSY for a moment after the last process left; this is how long we wait.
const RMDIR_ATTEMPTS: u32 = 50;
const RMDIR_PAUSE: Duration = Duration::from_millis(20);

/// Cgroup directories created for a test; removed on drop.
#[derive(Debug)]
pub struct TestCgroup {
    /// The cgroup path, e.g. `/mesos/abc`.
    path: String,
    /// Per controller asked for (`"v2"` for v2): the mount point and the cgroup's directory.
    dirs: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    controller: String,
    mount_point: PathBuf,
    dir: PathBuf,
}

impl TestCgroup {
    /// Creates `rel_path` (e.g. `mesos/abc`) in the v1 hierarchy of each controller;
    /// co-mounted controllers share one directory.
    pub fn create(
        mounts: &Mounts,
        controllers: &[&str],
        rel_path: &str,
    ) -> Result<Self, CgroupError> {
        let hierarchies = controllers
            .iter()
            .map(|c| ((*c).to_owned(), Hierarchy::v1(*c)));
        Self::make(mounts, hierarchies.collect(), rel_path)
    }

    /// Creates `rel_path` in the v2 hierarchy.
    pub fn create_v2(mounts: &Mounts, rel_path: &str) -> Result<Self, CgroupError> {
        Self::make(mounts, vec![("v2".to_owned(), Hierarchy::V2)], rel_path)
    }

    fn make(
        mounts: &Mounts,
        hierarchies: Vec<(String, Hierarchy)>,
        rel_path: &str,
    ) -> Result<Self, CgroupError> {
        let mut entries = Vec::new();
        for (controller, hierarchy) in hierarchies {
            let (Some(mount), Some(dir)) =
                (mounts.mount(&hierarchy), mounts.dir(&hierarchy, rel_path))
            else {
                return Err(CgroupError::NotMounted { hierarchy });
            };
            let mount_point = mount.point.clone();
            entries.push(Entry {
                controller,
                mount_point,
                dir,
            });
        }
        // Built up as directories appear, so that a failure half-way removes what exists.
        let mut cg = Self {
            path: format!("/{}", rel_path.trim_matches('/')),
            dirs: Vec::new(),
        };
        // The lock is released before `cg` can be dropped: its drop takes the lock too.
        let made = {
            let mut parents = CREATED_PARENTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            cg.make_dirs(entries, &mut parents)
        };
        made.map(|()| cg)
    }

    /// Creates each entry's directory, noting the parents that had to be made.
    fn make_dirs(
        &mut self,
        entries: Vec<Entry>,
        parents: &mut BTreeSet<PathBuf>,
    ) -> Result<(), CgroupError> {
        for entry in entries {
            if !self.dirs.iter().any(|e| e.dir == entry.dir) {
                let missing = entry
                    .dir
                    .ancestors()
                    .skip(1)
                    .take_while(|a| {
                        a.starts_with(&entry.mount_point) && *a != entry.mount_point && !a.exists()
                    })
                    .map(Path::to_path_buf)
                    .collect::<Vec<_>>();
                std::fs::create_dir_all(&entry.dir).map_err(|source| CgroupError::Create {
                    path: entry.dir.clone(),
                    source,
                })?;
                if entry.controller == "cpuset" {
                    init_cpuset(&entry.mount_point, &entry.dir)?;
                }
                parents.extend(missing);
                // A parent that a test now creates explicitly is that test's to remove.
                parents.remove(&entry.dir);
            }
            self.dirs.push(entry);
        }
        Ok(())
    }

    /// The cgroup path, e.g. `/mesos/abc`, for [`owca::cgroups::Cgroup::new`].
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Moves a process into every created directory.
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in self.unique_dirs() {
            write_pid(&dir.join("cgroup.procs"), pid)?;
        }
        Ok(())
    }

    /// The directory in the hierarchy of `controller` (`"v2"` for v2). For a controller
    /// not passed to `create`, a path that does not exist, so that the test's next read
    /// fails naming it.
    pub fn dir(&self, controller: &str) -> &Path {
        self.dirs
            .iter()
            .find(|e| e.controller == controller)
            .map_or(
                Path::new("/nonexistent/cgroup/controller/not/created"),
                |e| e.dir.as_path(),
            )
    }

    /// The v2 directory.
    pub fn dir_v2(&self) -> &Path {
        self.dir("v2")
    }

    /// Inode number of the directory in the hierarchy of `controller` (`"v2"` for v2),
    /// which is the kernfs cgroup id the kernel programs see.
    pub fn inode(&self, controller: &str) -> Result<u64, CgroupError> {
        let dir = self.dir(controller);
        std::fs::metadata(dir)
            .map(|m| m.ino())
            .map_err(|source| CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
    }

    /// Each directory once (co-mounted controllers share one).
    fn unique_dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs
            .iter()
            .enumerate()
            .filter(|(i, e)| !self.dirs[..*i].iter().any(|o| o.dir == e.dir))
            .map(|(_, e)| e.dir.as_path())
    }
}

/// A new v1 cpuset cgroup has empty `cpuset.cpus` and `cpuset.mems` and takes no process
/// until both are set: each directory from the mount point down to `dir` that has them
/// empty gets its parent's.
fn init_cpuset(mount_point: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = dir.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut parent = mount_point.to_path_buf();
    for part in rel.components() {
        let child = parent.join(part);
        for file in ["cpuset.mems", "cpuset.cpus"] {
            let (from, to) = (parent.join(file), child.join(file));
            let current = std::fs::read_to_string(&to).unwrap_or_default();
            if !current.trim().is_empty() {
                continue;
            }
            let value = std::fs::read_to_string(&from)
                .map_err(|source| CgroupError::Read { path: from, source })?;
            std::fs::write(&to, value.trim())
                .map_err(|source| CgroupError::Write { path: to, source })?;
        }
        parent = child;
    }
    Ok(())
}

fn write_pid(procs: &Path, pid: u32) -> Result<(), CgroupError> {
    std::fs::write(procs, pid.to_string()).map_err(|source| CgroupError::Write {
        path: procs.to_path_buf(),
        source,
    })
}

/// Moves the processes still in `dir` to the hierarchy root, then removes `dir`, waiting
/// out the short EBUSY after processes leave (processes are moved again on each attempt in
/// case one forked). `Ok(false)` when `dir` still has child cgroups, which are not ours.
fn remove(dir: &Path, mount_point: &Path) -> std::io::Result<bool> {
    let mut attempts = 0;
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            // A process that exited meanwhile cannot be moved, and need not be.
            let _ = write_pid(&mount_point.join("cgroup.procs"), pid);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && has_subdirs(dir) => {
                return Ok(false);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < RMDIR_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(RMDIR_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

fn has_subdirs(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir())))
    })
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let mut deferred = Vec::new();
        for entry in self.dirs.iter().rev() {
            match remove(&entry.dir, &entry.mount_point) {
                Ok(true) => {}
                // Another test's cgroup is inside (a test may make a parent explicitly):
                // whichever drop empties it removes it.
                Ok(false) => deferred.push(entry.dir.clone()),
                // Tests install no tracing subscriber, so a warning there would be lost.
                Err(e) => eprintln!(
                    "warning: test cgroup {} left behind: {e}",
                    entry.dir.display()
                ),
            }
        }
        let mut parents = CREATED_PARENTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        parents.extend(deferred);
        // Deepest first, so that a parent emptied by removing its child goes too.
        let mut candidates: Vec<PathBuf> = parents.iter().cloned().collect();
        candidates.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in candidates {
            match std::fs::remove_dir(&dir) {
                Err(e) if e.kind() != ErrorKind::NotFound => {}
                _ => {
                    parents.remove(&dir);
                }
            }
        }
    }
}
