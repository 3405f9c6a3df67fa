//! The agent's own metrics (`owca_*`): every stage records its errors and its time here.
//!
//! Errors may repeat every iteration: each is logged once per cause and counted, so a
//! broken input neither floods the log nor goes unnoticed.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tracing::warn;

use crate::metrics::{Labels, Metric, names};

/// Errors per component and time per stage, passed to each stage of an iteration.
#[derive(Debug)]
pub struct SelfMetrics {
    /// Components listed in `owca_errors_total` even before their first error.
    components: &'static [&'static str],
    totals: BTreeMap<&'static str, u64>,
    active: HashSet<String>,
    seen_this_iteration: HashSet<String>,
    started: Instant,
    /// Unix time of `started`, for `owca_iteration_timestamp_seconds`.
    started_unix: f64,
    durations: Vec<(&'static str, Duration)>,
}

impl SelfMetrics {
    /// Self-metrics of a runner whose stages count errors under `components`.
    pub fn new(components: &'static [&'static str]) -> Self {
        Self {
            components,
            totals: BTreeMap::new(),
            active: HashSet::new(),
            seen_this_iteration: HashSet::new(),
            started: Instant::now(),
            started_unix: unix_now(),
            durations: Vec::new(),
        }
    }

    /// Starts an iteration's clock.
    pub fn start_iteration(&mut self) {
        self.started = Instant::now();
        self.started_unix = unix_now();
        self.durations.clear();
    }

    /// Adds the time since `since` to `stage` (`owca_duration_seconds{function}`).
    pub fn timed(&mut self, stage: &'static str, since: Instant) {
        let d = since.elapsed();
        match self.durations.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, total)) => *total += d,
            None => self.durations.push((stage, d)),
        }
    }
    /// Records a failure of `component` about `subject` (a task, a file...). Logged the
    /// first time; again only after it has cleared for one iteration.
    pub fn record(
        &mut self,
        component: &'static str,
        subject: &str,
        error: &dyn std::error::Error,
    ) {
        self.record_n(component, subject, error, 1);
    }

    /// [`Self::record`] for one failure that lost `count` things (e.g. packages).
    pub fn record_n(
        &mut self,
        component: &'static str,
        subject: &str,
        error: &dyn std::error::Error,
        count: u64,
    ) {
        *self.totals.entry(component).or_default() += count;
        // The whole chain: wrappers often hide the errno in their source.
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            let s_text = s.to_string();
            if !message.contains(&s_text) {
                message = format!("{message}: {s_text}");
            }
            source = s.source();
        }
        // A different failure of the same subject is a new problem, worth its own line.
        let key = format!("{component}\0{subject}\0{message}");
        if !self.active.contains(&key) {
            warn!(component, subject, "{message}");
            self.active.insert(key.clone());
        }
        self.seen_this_iteration.insert(key);
    }

    /// Ends an iteration: problems not seen in it are considered cleared.
    pub fn end_iteration(&mut self) {
        let seen = std::mem::take(&mut self.seen_this_iteration);
        self.active.retain(|k| seen.contains(k));
    }

    /// Total errors of a component so far.
    pub fn total(&self, component: &str) -> u64 {
        self.totals.get(component).copied().unwrap_or(0)
    }

    /// `owca_up`, `owca_tasks`, `owca_memory_usage_bytes`, `owca_cpu_seconds_total`,
    /// `owca_iteration_timestamp_seconds`, `owca_duration_seconds` per stage and for the
    /// whole iteration so far, and `owca_errors_total` per component; `common` labels
    /// shared by each.
    pub fn metrics(&self, tasks: usize, common: &Arc<Labels>) -> Vec<Metric> {
        let mut out = vec![
            Metric::gauge(names::OWCA_UP, names::OWCA_UP_HELP, 1.0),
            Metric::gauge(names::OWCA_TASKS, names::OWCA_TASKS_HELP, tasks as f64),
        ];
        if let Some(rss) = own_rss_bytes() {
            out.push(Metric::gauge(
                names::OWCA_MEMORY,
                names::OWCA_MEMORY_HELP,
                rss as f64,
            ));
        }
        if let Some(cpu) = own_cpu_seconds() {
            out.push(Metric::counter(names::OWCA_CPU, names::OWCA_CPU_HELP, cpu));
        }
        out.push(Metric::gauge(
            names::OWCA_ITERATION_TIME,
            names::OWCA_ITERATION_TIME_HELP,
            self.started_unix,
        ));
        let iteration = ("iteration", self.started.elapsed());
        for (function, d) in self.durations.iter().chain(&[iteration]) {
            out.push(
                Metric::gauge(
                    names::OWCA_DURATION,
                    names::OWCA_DURATION_HELP,
                    d.as_secs_f64(),
                )
                .with_label("function", *function),
            );
        }
        out.extend(self.error_metrics());
        for m in &mut out {
            m.shared = Some(Arc::clone(common));
        }
        out
    }

    /// `owca_errors_total{component}` for the runner's components (zero when none yet)
    /// and any other component that had errors.
    pub fn error_metrics(&self) -> impl Iterator<Item = Metric> + '_ {
        let others = self.totals.keys().filter(|c| !self.components.contains(c));
        self.components.iter().chain(others).map(|c| {
            Metric::counter(
                names::OWCA_ERRORS,
                names::OWCA_ERRORS_HELP,
                self.total(c) as f64,
            )
            .with_label("component", *c)
        })
    }
}

/// Seconds since the Unix epoch (0 for a clock set before it).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The agent's CPU time (user and system, all threads), from getrusage.
fn own_cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

/// The agent's resident memory, from /proc/self/statm.
fn own_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_error_and_rearms_after_clearing() {
        let mut e = SelfMetrics::new(&["node", "storage"]);
        let down = std::io::Error::other("down");
        e.record("node", "agent", &down);
        e.end_iteration();
        e.record("node", "agent", &down);
        assert_eq!(e.active.len(), 1);
        e.end_iteration();
        e.end_iteration();
        assert!(e.active.is_empty(), "cleared after an iteration without it");
        assert_eq!(e.total("node"), 2);
        let m: Vec<Metric> = e.error_metrics().collect();
        assert_eq!(m[0].value, 2.0);
        assert_eq!(m[1].labels["component"], "storage");
        let all = e.metrics(3, &Arc::default());
        let names: Vec<&str> = all.iter().map(|m| &*m.name).collect();
        assert_eq!(
            names,
            [
                names::OWCA_UP,
                names::OWCA_TASKS,
                names::OWCA_MEMORY,
                names::OWCA_CPU,
                names::OWCA_ITERATION_TIME,
                names::OWCA_DURATION,
                names::OWCA_ERRORS,
                names::OWCA_ERRORS
            ]
        );
        assert_eq!(all[1].value, 3.0);
    }
}
