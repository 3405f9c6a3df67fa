//! Where the eBPF collector's per-switch time goes: with BPF run-time stats on (a separate
//! phase, as the stats themselves cost time), each of the agent's programs' run count and
//! run time over cross-cgroup ping-pongs, from `bpftool prog show`.

use std::{
    collections::BTreeMap,
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use nix::sched::CpuSet;
use serde::Serialize;
use serde_json::Value;

use crate::{
    collectors::{self, Kind},
    guard,
    pingpong::{self, Options},
    workload::Workload,
};

#[derive(Serialize, Clone)]
pub struct Program {
    pub name: String,
    pub kind: String,
    pub runs_per_s: f64,
    pub ns_per_run: f64,
    /// Run time as a share of one CPU over the window.
    pub cpu_percent: f64,
}

pub fn measure(
    wl: &Workload,
    dir: &Path,
    cpu: usize,
    others: &CpuSet,
    o: Options,
) -> Result<Vec<Program>> {
    let _stats = enable_stats()?;
    let c = collectors::start(Kind::Ebpf, wl, dir, Some(others))?.context("the agent")?;
    let pid = c.pid();
    let before = programs(pid)?;
    let t = Instant::now();
    for _ in 0..o.reps.max(2) {
        guard::check()?;
        pingpong::round_trip_us(cpu, &wl.tasks[0], &wl.tasks[1], o.round_trips)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let after = programs(pid)?;
    drop(c);
    let mut out = Vec::new();
    for (id, (name, kind, time1, runs1)) in after {
        let (time0, runs0) = before.get(&id).map_or((0, 0), |p| (p.2, p.3));
        let (time, runs) = (time1.saturating_sub(time0), runs1.saturating_sub(runs0));
        out.push(Program {
            name,
            kind,
            runs_per_s: runs as f64 / secs,
            ns_per_run: if runs > 0 {
                time as f64 / runs as f64
            } else {
                0.0
            },
            cpu_percent: time as f64 / 1e9 / secs * 100.0,
        });
    }
    if out.is_empty() {
        bail!("bpftool lists no program of the agent (pid {pid})");
    }
    Ok(out)
}

/// The programs held by process `pid`: id → (name, type, run_time_ns, run_cnt).
fn programs(pid: u32) -> Result<BTreeMap<u64, (String, String, u64, u64)>> {
    let ours = prog_ids(pid)?;
    let out = Command::new("bpftool")
        .args(["--json", "prog", "show"])
        .output()
        .context("running bpftool prog show")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let progs: Vec<Value> =
        serde_json::from_slice(&out.stdout).context("parsing bpftool's JSON")?;
    Ok(progs
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| ours.contains(&id)))
        .filter_map(|p| {
            Some((
                p["id"].as_u64()?,
                (
                    p["name"].as_str().unwrap_or("?").to_owned(),
                    p["type"].as_str().unwrap_or("?").to_owned(),
                    p["run_time_ns"].as_u64().unwrap_or(0),
                    p["run_cnt"].as_u64().unwrap_or(0),
                ),
            ))
        })
        .collect())
}

/// Ids of the BPF programs whose fds `pid` holds, from `/proc/<pid>/fdinfo` (this
/// bpftool lists no pids).
fn prog_ids(pid: u32) -> Result<Vec<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let text = std::fs::read_to_string(e?.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    Ok(ids)
}

/// Turns BPF run-time stats on for as long as the returned fd is open
/// (`BPF_ENABLE_STATS`): unlike `kernel.bpf_stats_enabled=1`, they go off by themselves
/// if the bench is killed.
fn enable_stats() -> Result<OwnedFd> {
    const BPF_ENABLE_STATS: libc::c_long = 32;
    const BPF_STATS_RUN_TIME: u32 = 0;
    // `union bpf_attr` as `enable_stats.type`, zero-padded.
    let attr = [BPF_STATS_RUN_TIME, 0];
    // SAFETY: a valid, zero-padded attribute of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_ptr(),
            size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_ENABLE_STATS");
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
