//! Walking a hierarchy: which cgroups exist below a prefix and which hold processes, for
//! nodes that take every populated cgroup as a task.

use std::{io::ErrorKind, path::Path};

use tracing::debug;

use super::{CgroupError, Hierarchy, Mounts};

impl Mounts {
    /// Every cgroup at and below `prefix` (a cgroup path such as `/mesos`) in `hierarchy`,
    /// as cgroup paths, sorted (parents before children). Empty when `prefix` does not
    /// exist; cgroups removed during the walk are left out, as they are gone.
    pub fn cgroups_under(
        &self,
        hierarchy: &Hierarchy,
        prefix: &str,
    ) -> Result<Vec<String>, CgroupError> {
        let start = self
            .dir(hierarchy, prefix)
            .ok_or_else(|| CgroupError::NotMounted {
                hierarchy: hierarchy.clone(),
            })?;
        let mut found = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(source) => return Err(CgroupError::Read { path: dir, source }),
            };
            match self.cgroup_path(hierarchy, &dir) {
                Some(path) => found.push(path),
                // Cgroup names are whatever mkdir was given; one we cannot name we skip.
                None => debug!(dir = %dir.display(), "skipping a cgroup whose name is not UTF-8"),
            }
            for entry in entries {
                let entry = entry.map_err(|source| CgroupError::Read {
                    path: dir.clone(),
                    source,
                })?;
                // cgroupfs reports the type in the directory entry, so this costs no stat.
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(entry.path()),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(CgroupError::Read {
                            path: entry.path(),
                            source,
                        });
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// Whether the cgroup directory `dir` has processes (a non-empty `cgroup.procs`); `None`
/// when the cgroup does not exist.
pub fn has_processes(dir: &Path) -> Result<Option<bool>, CgroupError> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read(&procs) {
        Ok(bytes) => Ok(Some(bytes.iter().any(u8::is_ascii_digit))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // A cgroup removed while its file is open reads as ENODEV.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: procs,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::tests::tree;
    use super::*;

    #[test]
    fn walks_below_a_prefix() {
        let d = tree(&[
            ("cg/cgroup.procs", "1\n"),
            ("cg/mesos/cgroup.procs", ""),
            ("cg/mesos/a/cgroup.procs", "10\n11\n"),
            ("cg/mesos/a/inner/cgroup.procs", "12\n"),
            ("cg/mesos/b/cgroup.procs", ""),
            ("cg/other/cgroup.procs", "13\n"),
        ]);
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {}/cg rw - cgroup cgroup rw,cpuacct\n",
            d.path().display()
        ));
        let h = Hierarchy::v1("cpuacct");
        assert_eq!(
            m.cgroups_under(&h, "/mesos").unwrap(),
            ["/mesos", "/mesos/a", "/mesos/a/inner", "/mesos/b"]
        );
        assert_eq!(m.cgroups_under(&h, "/").unwrap().len(), 6);
        assert!(m.cgroups_under(&h, "/absent").unwrap().is_empty());
        let err = m
            .cgroups_under(&Hierarchy::V2, "/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("v2"), "{err}");

        let populated: Vec<String> = m
            .cgroups_under(&h, "mesos")
            .unwrap()
            .into_iter()
            .filter(|p| has_processes(&m.dir(&h, p).unwrap()).unwrap() == Some(true))
            .collect();
        assert_eq!(populated, ["/mesos/a", "/mesos/a/inner"]);
        assert_eq!(has_processes(&d.path().join("cg/gone")).unwrap(), None);
    }

    #[test]
    fn walks_the_real_hierarchy() {
        let m = Mounts::discover().unwrap();
        let h = m.preferred("cpuacct").expect("cpuacct on v1 or v2");
        let all = m.cgroups_under(&h, "/").unwrap();
        assert_eq!(all.first().map(String::as_str), Some("/"), "{all:?}");
    }
}
