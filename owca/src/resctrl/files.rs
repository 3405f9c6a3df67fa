//! File operations shared by monitoring ([`super::Resctrl`]) and allocation
//! ([`super::control`]): moving threads into a group, removing a group, and the
//! kernel's reason for a refused command.

use std::{
    collections::HashSet,
    fs::{self, OpenOptions},
    io::{self, Write},
    path::Path,
};

use super::{ResctrlError, TASKS};

/// Writes each thread id not yet in the group's `tasks`, one per write as the kernel
/// requires. The file is opened without `create`: production never creates files in
/// resctrl (the kernel refuses), and a test tree must provide it. Threads that exited
/// (ESRCH) are skipped; the first other failure is returned after all were tried.
pub(super) fn move_threads(root: &Path, dir: &Path, pids: &[u32]) -> Result<(), ResctrlError> {
    if pids.is_empty() {
        return Ok(());
    }
    let path = dir.join(TASKS);
    let present = read_pids(&path)?;
    let mut file = None;
    let mut first_error = None;
    for &pid in pids.iter().filter(|p| !present.contains(p)) {
        let f =
            match &mut file {
                Some(f) => f,
                None => file.insert(OpenOptions::new().append(true).open(&path).map_err(
                    |source| ResctrlError::Read {
                        path: path.clone(),
                        source,
                    },
                )?),
            };
        match f.write_all(format!("{pid}\n").as_bytes()) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => {}
            Err(source) => {
                first_error.get_or_insert_with(|| ResctrlError::MovePid {
                    path: path.clone(),
                    pid,
                    source,
                    detail: kernel_status(root),
                });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `"; kernel says: <reason>"` from `info/last_cmd_status`, or `""` when it says `ok`
/// or cannot be read. The file is global, so a concurrent command may have replaced it.
pub(super) fn kernel_status(root: &Path) -> String {
    match fs::read_to_string(root.join("info/last_cmd_status")) {
        Ok(s) if !s.trim().is_empty() && s.trim() != "ok" => {
            format!("; kernel says: {}", s.trim())
        }
        _ => String::new(),
    }
}

/// A thread that exited before it could be moved: the kernel answers ESRCH.
fn is_gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// Whether `path` exists; an error when it cannot be examined.
pub(super) fn exists(path: &Path) -> Result<bool, ResctrlError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ResctrlError::Access {
            path: path.to_owned(),
            source,
        }),
    }
}

/// rmdir, which on resctrl removes the group with its kernel-made files; a group already
/// gone counts as removed.
pub(super) fn remove_group(dir: &Path) -> Result<(), ResctrlError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ResctrlError::RemoveGroup {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Thread ids listed in a `tasks` file, one per line.
pub(super) fn read_pids(path: &Path) -> Result<HashSet<u32>, ResctrlError> {
    let text = fs::read_to_string(path).map_err(|source| ResctrlError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vanished_threads_are_recognised() {
        assert!(is_gone(&io::Error::from_raw_os_error(libc::ESRCH)));
        assert!(!is_gone(&io::Error::from_raw_os_error(libc::EINVAL)));
    }
}
