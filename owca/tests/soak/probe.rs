//! What the soak watches of the running agent: resident memory and open fds from /proc,
//! entries of its eBPF counters map (bpftool), and its own metrics file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use owca_common::MAP_COUNTERS;
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

/// Entries in the counters map of the agent `pid`: its map fds name their map ids in
/// `/proc/<pid>/fdinfo`, and bpftool tells which of them is the counters map.
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
        (shown["name"] == MAP_COUNTERS).then_some(id)
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

/// The agent's metrics file (`!LogStorage` with `overwrite: true`): when it is replaced,
/// and what it says.
pub struct MetricsFile {
    path: PathBuf,
    last_write: Option<(SystemTime, Instant)>,
    /// Time between consecutive writes, i.e. between the ends of two iterations.
    pub intervals: Vec<Duration>,
}

impl MetricsFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            last_write: None,
            intervals: Vec::new(),
        }
    }

    /// Notes a new write since the last call; call often (every 50-100 ms).
    pub fn poll(&mut self) {
        let Ok(modified) = std::fs::metadata(&self.path).and_then(|m| m.modified()) else {
            return;
        };
        match self.last_write {
            Some((seen, _)) if seen == modified => {}
            Some((_, at)) => {
                self.intervals.push(at.elapsed());
                self.last_write = Some((modified, Instant::now()));
            }
            None => self.last_write = Some((modified, Instant::now())),
        }
    }

    /// Forgets the intervals so far (e.g. those of start-up).
    pub fn reset_intervals(&mut self) {
        self.intervals.clear();
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
