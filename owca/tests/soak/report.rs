//! The soak's figures, its targets, and their Markdown and JSON forms.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use anyhow::Result;
use serde_json::json;

/// What one more Kafka broker handle of librdkafka holds: its connection and its
/// thread's wake-up pipe (two fds).
const KAFKA_BROKER_FDS: i64 = 3;

/// RSS may grow this much between the end of warm-up and the end of the run.
const RSS_GROWTH_LIMIT: u64 = 1024 * 1024;

/// One second of the run.
pub struct Sample {
    pub at_s: f64,
    pub rss_bytes: u64,
    pub fds: usize,
    /// Entries of the agent's watched-cgroups map `SLOTS` (read every few samples).
    pub map_entries: Option<usize>,
    /// Cgroups of listed tasks that exist (what the map should hold).
    pub live_cgroups: usize,
    pub listed_tasks: usize,
}

pub struct Report {
    pub minutes: f64,
    pub action_delay_s: f64,
    pub tasks_started: usize,
    pub tasks_finished: usize,
    pub cgroups_removed_under_the_agent: usize,
    pub broker_stops: usize,
    pub samples: Vec<Sample>,
    pub warm_rss: Option<u64>,
    pub end_rss: u64,
    pub baseline_fds: usize,
    pub end_fds: usize,
    /// What kinds of fds differ in number between the baseline and the end.
    pub fd_changes: BTreeMap<String, i64>,
    pub baseline_entries: usize,
    pub end_entries: usize,
    /// `owca_errors_total` per component at the end.
    pub errors: BTreeMap<String, f64>,
    pub kafka_delivered: usize,
    /// Time between the ends of consecutive iterations.
    pub intervals: Vec<Duration>,
    pub alive_at_end: bool,
    pub exit_ok: bool,
    pub panicked: bool,
}

/// Per kind, how many more (or fewer) at the end than before.
pub fn changes(
    before: &BTreeMap<String, usize>,
    after: &BTreeMap<String, usize>,
) -> BTreeMap<String, i64> {
    before
        .keys()
        .chain(after.keys())
        .filter_map(|k| {
            let d = *after.get(k).unwrap_or(&0) as i64 - *before.get(k).unwrap_or(&0) as i64;
            (d != 0).then(|| (k.clone(), d))
        })
        .collect()
}

impl Report {
    fn rss_growth(&self) -> Option<i64> {
        Some(self.end_rss as i64 - self.warm_rss? as i64)
    }

    fn overruns(&self) -> usize {
        let limit = Duration::from_secs_f64(2.0 * self.action_delay_s);
        self.intervals.iter().filter(|d| **d > limit).count()
    }

    fn longest_interval(&self) -> Duration {
        self.intervals.iter().max().copied().unwrap_or_default()
    }

    /// The targets missed, each said in a few words.
    pub fn failed(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.rss_growth() {
            Some(g) if g >= RSS_GROWTH_LIMIT as i64 => {
                out.push(format!("RSS grew {g} bytes after warm-up (limit 1 MB)"));
            }
            Some(_) => {}
            None => out.push("the run ended before warm-up".to_owned()),
        }
        // Files (cgroupfs, resctrl, outputs) and BPF objects must come back exactly. Sockets
        // and pipes belong to the clients (the Mesos connection pool, one connection, thread
        // and wake-up pipe pair per Kafka broker librdkafka has learned of), which depend on
        // the broker's restarts, not on tasks: one more broker handle is allowed.
        let client_kinds = ["socket", "pipe"];
        let files_left = self
            .fd_changes
            .iter()
            .any(|(kind, d)| *d > 0 && !client_kinds.contains(&kind.as_str()));
        let client_extra: i64 = self
            .fd_changes
            .iter()
            .filter(|(kind, _)| client_kinds.contains(&kind.as_str()))
            .map(|(_, d)| *d)
            .sum();
        if files_left || client_extra > KAFKA_BROKER_FDS {
            out.push(format!(
                "fds {} at the end, {} before any task (by kind: {:?})",
                self.end_fds, self.baseline_fds, self.fd_changes
            ));
        }
        if self.end_entries != self.baseline_entries {
            out.push(format!(
                "watched-cgroups map holds {} entries at the end, {} before any task",
                self.end_entries, self.baseline_entries
            ));
        }
        if self.overruns() > 0 {
            out.push(format!(
                "{} iterations ended more than 2 × action_delay after the previous one (longest {:.2} s)",
                self.overruns(),
                self.longest_interval().as_secs_f64()
            ));
        }
        if !self.alive_at_end || !self.exit_ok || self.panicked {
            out.push(format!(
                "agent alive at the end: {}, exit on SIGTERM ok: {}, panicked: {}",
                self.alive_at_end, self.exit_ok, self.panicked
            ));
        }
        out
    }

    /// Writes `report.md` and `report.json` into `dir` and prints the Markdown.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let md = self.markdown();
        print!("{md}");
        std::fs::write(dir.join("report.md"), &md)?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&self.json())?,
        )?;
        eprintln!("soak: wrote {}/report.{{md,json}}", dir.display());
        Ok(())
    }

    fn markdown(&self) -> String {
        let mb = |b: u64| b as f64 / 1024.0 / 1024.0;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# `cargo xtask soak` — {:.0} min, action_delay {} s\n",
            self.minutes, self.action_delay_s
        );
        let _ = writeln!(
            md,
            "Churn: {} tasks started, {} finished, {} cgroups removed under the agent; \
             Mesos answer garbage, 500 and slow in 3 of every 12 s; Kafka broker stopped {} times.\n",
            self.tasks_started,
            self.tasks_finished,
            self.cgroups_removed_under_the_agent,
            self.broker_stops
        );
        let _ = writeln!(md, "| figure | value |\n|---|---|");
        let rows = [
            (
                "RSS after warm-up / at the end (MB)",
                format!(
                    "{:.2} / {:.2}",
                    mb(self.warm_rss.unwrap_or(0)),
                    mb(self.end_rss)
                ),
            ),
            (
                "peak RSS (MB)",
                format!(
                    "{:.2}",
                    mb(self.samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0))
                ),
            ),
            (
                "fds before any task / peak / at the end",
                format!(
                    "{} / {} / {}",
                    self.baseline_fds,
                    self.samples.iter().map(|s| s.fds).max().unwrap_or(0),
                    self.end_fds
                ),
            ),
            (
                "map entries before any task / at the end",
                format!("{} / {}", self.baseline_entries, self.end_entries),
            ),
            (
                "map entries vs cgroups of listed tasks (largest gap seen)",
                format!("{}", self.largest_map_gap()),
            ),
            ("Kafka packages delivered", self.kafka_delivered.to_string()),
            (
                "iterations / overran 2 × action_delay / longest gap (s)",
                format!(
                    "{} / {} / {:.2}",
                    self.intervals.len(),
                    self.overruns(),
                    self.longest_interval().as_secs_f64()
                ),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        for (component, n) in &self.errors {
            let _ = writeln!(
                md,
                "| owca_errors_total{{component=\"{component}\"}} | {n} |"
            );
        }
        let failed = self.failed();
        let _ = writeln!(
            md,
            "\nTargets: {}\n",
            if failed.is_empty() {
                "all met".to_owned()
            } else {
                format!("missed: {}", failed.join("; "))
            }
        );
        let _ = writeln!(
            md,
            "RSS (MB) and fds over time, every 10 s:\n\n| s | RSS | fds | map entries | live cgroups | listed tasks |\n|---|---|---|---|---|---|"
        );
        for s in self.samples.iter().step_by(10) {
            let _ = writeln!(
                md,
                "| {:.0} | {:.2} | {} | {} | {} | {} |",
                s.at_s,
                mb(s.rss_bytes),
                s.fds,
                s.map_entries.map_or("-".to_owned(), |e| e.to_string()),
                s.live_cgroups,
                s.listed_tasks
            );
        }
        md
    }

    /// The largest difference between the map's entries and the cgroups of listed tasks.
    fn largest_map_gap(&self) -> i64 {
        self.samples
            .iter()
            .filter_map(|s| Some(s.map_entries? as i64 - s.live_cgroups as i64))
            .max_by_key(|g| g.abs())
            .unwrap_or(0)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "minutes": self.minutes,
            "action_delay_s": self.action_delay_s,
            "tasks_started": self.tasks_started,
            "tasks_finished": self.tasks_finished,
            "cgroups_removed_under_the_agent": self.cgroups_removed_under_the_agent,
            "broker_stops": self.broker_stops,
            "warm_rss_bytes": self.warm_rss,
            "end_rss_bytes": self.end_rss,
            "baseline_fds": self.baseline_fds,
            "end_fds": self.end_fds,
            "fd_changes": self.fd_changes,
            "baseline_map_entries": self.baseline_entries,
            "end_map_entries": self.end_entries,
            "errors": self.errors,
            "kafka_delivered": self.kafka_delivered,
            "iterations": self.intervals.len(),
            "overruns": self.overruns(),
            "longest_interval_s": self.longest_interval().as_secs_f64(),
            "alive_at_end": self.alive_at_end,
            "exit_ok": self.exit_ok,
            "panicked": self.panicked,
            "failed": self.failed(),
            "samples": self.samples.iter().map(|s| json!({
                "at_s": s.at_s,
                "rss_bytes": s.rss_bytes,
                "fds": s.fds,
                "map_entries": s.map_entries,
                "live_cgroups": s.live_cgroups,
                "listed_tasks": s.listed_tasks,
            })).collect::<Vec<_>>(),
        })
    }
}
