//! Context-switch cost: two processes pinned to one CPU pass a byte back and forth over
//! two pipes (2 switches per round trip), within one cgroup or between two.

use std::{os::fd::OwnedFd, path::Path};

use anyhow::{Context as _, Result, bail};
use nix::{
    sched::CpuSet,
    sys::wait::waitpid,
    unistd::{pipe, read, write},
};
use serde::Serialize;

use crate::{
    collectors::{self, Kind},
    guard, median,
    workload::{TaskCgroup, Workload},
};

#[derive(Clone, Copy)]
pub struct Options {
    pub rounds: usize,
    /// Ping-pongs per case and round; the fastest counts.
    pub reps: usize,
    pub round_trips: u32,
}

/// One case (within / between) at one N: µs per round trip per collector (median over
/// rounds of each round's fastest run) and what the collectors add.
#[derive(Serialize, Clone)]
pub struct Case {
    pub case: &'static str,
    pub none_us: f64,
    pub ebpf_us: f64,
    pub classic_us: f64,
    pub ebpf_ns_per_switch: f64,
    pub classic_ns_per_switch: f64,
    pub ebpf_ratio: f64,
    pub classic_ratio: f64,
    /// Cost the classic collector adds per switch over the eBPF one's; `None` when the
    /// eBPF collector's added cost is within the noise (not above zero).
    pub classic_over_ebpf: Option<f64>,
    /// Every round's value per collector, in µs per round trip.
    pub rounds_us: [Vec<f64>; 3],
}

/// Alternates the collectors round by round (rotating their order), each started fresh
/// and pinned away from the ping-pong CPU, and runs both cases under each. Without
/// `classic` its figures are NaN.
pub fn measure(
    wl: &Workload,
    dir: &Path,
    cpu: usize,
    others: &CpuSet,
    o: Options,
    classic: bool,
) -> Result<Vec<Case>> {
    let (a, b) = (&wl.tasks[0], &wl.tasks[1]);
    // [case][collector] -> per-round µs.
    let mut us: [[Vec<f64>; 3]; 2] = Default::default();
    for round in 0..o.rounds {
        for k in 0..Kind::ALL.len() {
            let ki = (round + k) % Kind::ALL.len();
            if Kind::ALL[ki] == Kind::Classic && !classic {
                continue;
            }
            let collector = collectors::start(Kind::ALL[ki], wl, dir, Some(others))?;
            for (ci, other) in [a, b].into_iter().enumerate() {
                let mut best = f64::INFINITY;
                for _ in 0..o.reps {
                    guard::check()?;
                    best = best.min(round_trip_us(cpu, a, other, o.round_trips)?);
                }
                us[ci][ki].push(best);
            }
            drop(collector);
        }
    }
    let cases = ["within one cgroup", "between two cgroups"];
    Ok(cases
        .into_iter()
        .zip(us)
        .map(|(case, [none, ebpf, classic])| {
            let (n, e, c) = (median(&none), median(&ebpf), median(&classic));
            let per_switch = |x: f64| (x - n) * 1e3 / 2.0;
            Case {
                case,
                none_us: n,
                ebpf_us: e,
                classic_us: c,
                ebpf_ns_per_switch: per_switch(e),
                classic_ns_per_switch: per_switch(c),
                ebpf_ratio: e / n,
                classic_ratio: c / n,
                classic_over_ebpf: (e > n).then(|| (c - n) / (e - n)),
                rounds_us: [none, ebpf, classic],
            }
        })
        .collect())
}

fn byte_loop(rx: &OwnedFd, tx: &OwnedFd, first: bool, n: u32) {
    let mut b = [0u8; 1];
    for _ in 0..n {
        if first {
            let _ = write(tx, &b);
            let _ = read(rx, &mut b);
        } else {
            let _ = read(rx, &mut b);
            let _ = write(tx, &b);
        }
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One ping-pong with side A in `a` and side B in `b`: µs per round trip, timed by A.
pub fn round_trip_us(cpu: usize, a: &TaskCgroup, b: &TaskCgroup, trips: u32) -> Result<f64> {
    let (a_rx, b_tx) = pipe()?;
    let (b_rx, a_tx) = pipe()?;
    let (go_rx, go_tx) = pipe()?;
    let (res_rx, res_tx) = pipe()?;
    let mut pin = CpuSet::new();
    pin.set(cpu)?;
    let wait_go = |go: &OwnedFd| {
        let mut x = [0u8; 1];
        let _ = read(go, &mut x);
    };
    let pa = guard::fork_child(Some(&pin), || {
        wait_go(&go_rx);
        let t = now_ns();
        byte_loop(&a_rx, &a_tx, true, trips);
        let _ = write(&res_tx, &(now_ns() - t).to_ne_bytes());
    })?;
    let pb = guard::fork_child(Some(&pin), || {
        wait_go(&go_rx);
        byte_loop(&b_rx, &b_tx, false, trips);
    })?;
    let placed = a
        .add_pid(pa.as_raw() as u32)
        .and_then(|()| b.add_pid(pb.as_raw() as u32));
    let go = write(&go_tx, &[1, 1]);
    drop(res_tx);
    let mut ns = [0u8; 8];
    let got = read(&res_rx, &mut ns);
    // Reaped whatever happened: a failure above makes them exit on a closed pipe.
    drop((go_tx, a_tx, b_tx));
    let _ = waitpid(pa, None);
    let _ = waitpid(pb, None);
    placed.context("placing the ping-pong processes")?;
    go.context("starting the ping-pong")?;
    if got? != 8 {
        bail!("the ping-pong process reported no time");
    }
    Ok(u64::from_ne_bytes(ns) as f64 / 1e3 / trips as f64)
}
