//! `owca-lc-probe`: a latency-critical task for `cargo xtask scenario`. Each of `workers`
//! threads is released every `period_us` and does `work_us` of CPU time (its own thread
//! CPU clock, so preemption does not shorten the work); the latency of a release is the
//! time from the release to the end of its work. A worker that falls behind starts the
//! next release at once, so a backlog shows as growing latencies, as a real server's
//! queue would.
//!
//! Every `report_ms` it appends one JSON line to `--output`: the time, the releases done,
//! their p50/p99/max and the histogram of their latencies as `[upper bound µs, count]`
//! pairs (buckets: see [`bucket`]), so that the scenario can merge any span of lines
//! exactly to the bucket without knowing how they are cut.

use std::{
    fs::OpenOptions,
    io::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Periodic work with a deadline, reporting its latency (scenario probe)")]
struct Cli {
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Time between releases of a worker, in µs.
    #[arg(long, default_value_t = 1000)]
    period_us: u64,
    /// CPU time of each release, in µs.
    #[arg(long, default_value_t = 500)]
    work_us: u64,
    /// Milliseconds between report lines.
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// JSON lines file, appended to.
    #[arg(long)]
    output: PathBuf,
}

/// Buckets of the latency histogram: 10 µs wide below 1 ms, 100 µs below 10 ms, 1 ms
/// below 100 ms, 10 ms below 1 s, then one for everything longer.
pub const BUCKETS: usize = 100 + 90 + 90 + 90 + 1;

/// The bucket of a latency in µs.
fn bucket(us: u64) -> usize {
    match us {
        0..1_000 => (us / 10) as usize,
        1_000..10_000 => 100 + ((us - 1_000) / 100) as usize,
        10_000..100_000 => 190 + ((us - 10_000) / 1_000) as usize,
        100_000..1_000_000 => 280 + ((us - 100_000) / 10_000) as usize,
        _ => BUCKETS - 1,
    }
}

/// The upper bound of a bucket in µs (the last one's is its lower bound).
fn upper_us(b: usize) -> u64 {
    let b = b as u64;
    match b {
        0..100 => (b + 1) * 10,
        100..190 => 1_000 + (b - 99) * 100,
        190..280 => 10_000 + (b - 189) * 1_000,
        280..370 => 100_000 + (b - 279) * 10_000,
        _ => 1_000_000,
    }
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call writes; the clock ids used exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sleeps until `at` on the monotonic clock.
fn sleep_until(at: Duration) {
    let ts = libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(at.subsec_nanos() as i32),
    };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

type Histogram = Arc<Mutex<Vec<u64>>>;

fn worker(period: Duration, work: Duration, histogram: &Histogram) {
    let mut release = clock(libc::CLOCK_MONOTONIC);
    loop {
        sleep_until(release);
        let cpu_start = clock(libc::CLOCK_THREAD_CPUTIME_ID);
        let mut x = 0u64;
        while clock(libc::CLOCK_THREAD_CPUTIME_ID) - cpu_start < work {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let latency = clock(libc::CLOCK_MONOTONIC).saturating_sub(release);
        histogram.lock().unwrap_or_else(PoisonError::into_inner)
            [bucket(latency.as_micros() as u64)] += 1;
        release += period;
    }
}

fn percentile(h: &[u64], q: f64) -> u64 {
    let n: u64 = h.iter().sum();
    let rank = ((n as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (b, c) in h.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return upper_us(b);
        }
    }
    0
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cli.output)
        .with_context(|| format!("opening {}", cli.output.display()))?;
    let histogram: Histogram = Arc::new(Mutex::new(vec![0; BUCKETS]));
    let (period, work) = (
        Duration::from_micros(cli.period_us),
        Duration::from_micros(cli.work_us),
    );
    for _ in 0..cli.workers {
        let h = Arc::clone(&histogram);
        std::thread::spawn(move || worker(period, work, &h));
    }
    loop {
        std::thread::sleep(Duration::from_millis(cli.report_ms));
        let h = std::mem::replace(
            &mut *histogram.lock().unwrap_or_else(PoisonError::into_inner),
            vec![0; BUCKETS],
        );
        let n: u64 = h.iter().sum();
        let max = h.iter().rposition(|c| *c > 0).map_or(0, upper_us);
        let buckets: Vec<String> = h
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| format!("[{},{c}]", upper_us(b)))
            .collect();
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        writeln!(
            out,
            "{{\"at\":{at:.3},\"n\":{n},\"p50_us\":{},\"p99_us\":{},\"max_us\":{max},\"buckets\":[{}]}}",
            percentile(&h, 0.5),
            percentile(&h, 0.99),
            buckets.join(",")
        )
        .context("writing a report line")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_latency_in_order() {
        let mut last = 0;
        for us in (0..1_200_000).step_by(7) {
            let b = bucket(us);
            assert!(b >= last && b < BUCKETS, "{us} µs → {b}");
            assert!(
                us < upper_us(b) || b == BUCKETS - 1,
                "{us} µs ≥ {}",
                upper_us(b)
            );
            last = b;
        }
        assert_eq!(bucket(999), 99);
        assert_eq!(bucket(1_000), 100);
        assert_eq!(upper_us(100), 1_100);
        assert_eq!(bucket(999_999), BUCKETS - 2);
        let mut h = vec![0; BUCKETS];
        h[bucket(500)] = 98;
        h[bucket(5_000)] = 2;
        assert_eq!(percentile(&h, 0.5), 510);
        assert_eq!(percentile(&h, 0.99), 5_100);
    }
}
