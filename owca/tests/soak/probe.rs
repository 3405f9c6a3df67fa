//! What the soak watches of the running agent: resident memory and open fds from /proc,
//! entries of its watched-cgroups map (`SLOTS`, bpftool), and its own metrics file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use owca_common::MAP_SLOTS;
use serde_json::Value;

/// The agent's resident memory in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The agent's open fds.
pub fn fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The agent's open fds by what they point to (`socket`, `anon_inode:bpf-map`, a file
/// path...), to tell which kind a leak is.
pub fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        // `socket:[123]` → `socket`; paths are kept whole.
        let kind = target.split(":[").next().unwrap_or_default().to_owned();
        *out.entry(kind).or_default() += 1;
    }
    out
}

/// Entries in the watched-cgroups map (`SLOTS`: one per watched cgroup) of the agent
/// `pid`: its map fds name their map ids in `/proc/<pid>/fdinfo`, and bpftool tells which
/// of them it is.
pub fn map_entries(pid: u32) -> Option<usize> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let id = fds.flatten().find_map(|fd| {
        let info = std::fs::read_to_string(fd.path()).ok()?;
        let id: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))?
            .trim()
            .parse()
            .ok()?;
        let shown = bpftool(&["map", "show", "id", &id.to_string()])?;
        (shown["name"] == MAP_SLOTS).then_some(id)
    })?;
    Some(
        bpftool(&["map", "dump", "id", &id.to_string()])?
            .as_array()?
            .len(),
    )
}

fn bpftool(args: &[&str]) -> Option<Value> {
    let out = Command::new("bpftool").arg("-j").args(args).output().ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())?
}

/// The agent's metrics file (`!LogStorage` with `overwrite: true`): a thread of its own
/// notes every replacement (the soak's loop blocks now and then, starting a broker), and
/// the file says the agent's errors.
pub struct MetricsFile {
    path: PathBuf,
    /// Time between consecutive writes, i.e. between the ends of two iterations, by the
    /// files' modification times.
    intervals: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

impl MetricsFile {
    /// Starts watching `path`.
    pub fn watch(path: &Path) -> Self {
        let intervals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (path, intervals, stop) =
                (path.to_owned(), Arc::clone(&intervals), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut last: Option<SystemTime> = None;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) {
                        if let Some(before) = last.filter(|b| *b != modified)
                            && let Ok(d) = modified.duration_since(before)
                        {
                            intervals.lock().unwrap().push(d);
                        }
                        last = Some(modified);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            path: path.to_owned(),
            intervals,
            stop,
            watcher: Some(watcher),
        }
    }

    /// Forgets the intervals so far (e.g. those of start-up).
    pub fn reset_intervals(&self) {
        self.intervals.lock().unwrap().clear();
    }

    /// The intervals noted so far.
    pub fn intervals(&self) -> Vec<Duration> {
        self.intervals.lock().unwrap().clone()
    }

    /// `owca_errors_total` per component, as last written.
    pub fn errors(&self) -> BTreeMap<String, f64> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("owca_errors_total{")?;
                let component = rest.split("component=\"").nth(1)?.split('"').next()?;
                let value = l.rsplit(' ').next()?.parse().ok()?;
                Some((component.to_owned(), value))
            })
            .collect()
    }
}

impl Drop for MetricsFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}
