//! The scenario's figures, its targets, and their Markdown and JSON forms.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::probe::Latency;

/// LC p99 with the allocator at most this many times its p99 alone.
const P99_TARGET: f64 = 1.5;
/// BE tasks get at least this share of the CPU time the LC task leaves idle.
const BE_SHARE_TARGET: f64 = 0.5;
/// The BE task is the first contender of an anomaly on LC within this many iterations.
const DETECTION_TARGET: usize = 3;

/// One second of the run.
pub struct Tick {
    /// Seconds since the scenario started.
    pub at_s: f64,
    pub phase: usize,
    pub lc_cpus: f64,
    pub be_cpus: f64,
    /// Busy CPUs of the whole node (/proc/stat), whoever used them.
    pub node_cpus: f64,
    /// `be1`'s `cpu.idle` and quota (CPUs) as the kernel holds them.
    pub be_idle: bool,
    pub be_quota_cpus: Option<f64>,
    /// Anomalies on the LC task stored in this second.
    pub new_anomalies: usize,
    /// The probe's p99 of the second.
    pub lc_p99_us: Option<u64>,
}

/// What a phase measured.
pub struct PhaseResult {
    pub name: &'static str,
    pub title: &'static str,
    pub seconds: f64,
    pub lc: bool,
    pub be: bool,
    pub agent: &'static str,
    /// The LC probe's latency over the phase (from the BE start, where BE runs).
    pub latency: Option<Latency>,
    /// The same from 5 s after the BE start: once the agent had time to react.
    pub latency_settled: Option<Latency>,
    pub lc_cpus: f64,
    pub be_cpus: f64,
    pub node_cpus: f64,
    /// Anomalies (on any task) stored in the phase.
    pub anomalies: usize,
    /// Iterations from the BE start to the first anomaly on LC whose first contending task
    /// is a BE task.
    pub detection_delay: Option<usize>,
    /// Allocator decisions taking CPU (making BE idle next to LC included), and steps
    /// given back.
    pub decisions: usize,
    pub give_backs: usize,
    /// The interleaved phase's two halves.
    pub interleaved: Option<Interleaved>,
}

/// LC latency with the BE tasks stopped and running, in alternate slices of one phase
/// under the allocator (its first slice left out).
#[derive(Clone, Copy)]
pub struct Interleaved {
    pub slice_s: f64,
    pub alone: Latency,
    pub protected: Latency,
}

impl Interleaved {
    /// Protected LC p99 relative to alone, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        (self.alone.releases > 0 && self.protected.releases > 0)
            .then(|| self.protected.p99_us as f64 / self.alone.p99_us as f64)
    }
}

pub struct Report {
    pub seconds: f64,
    pub short: bool,
    pub action_delay_s: f64,
    pub cpus: usize,
    pub phases: Vec<PhaseResult>,
    pub ticks: Vec<Tick>,
    pub host: String,
    pub date: String,
}

/// CPU seconds every process of the node used, from the root cgroup's scheduler
/// accounting (v1 `cpuacct.usage`, else v2 `cpu.stat` `usage_usec`). Not /proc/stat: its
/// busy time is sampled at the timer tick, and the LC probe's 1 ms period aliases with
/// it (LC alone read as 0.07 CPUs in one run and 1.96 in another, the probe using 1.05).
pub fn node_busy_seconds() -> f64 {
    // Read every second: the mount table is looked up once.
    static MOUNTS: std::sync::OnceLock<Option<owca::cgroups::Mounts>> = std::sync::OnceLock::new();
    let Some(mounts) = MOUNTS.get_or_init(|| owca::cgroups::Mounts::discover().ok()) else {
        return f64::NAN;
    };
    if let Some(root) = mounts.v1("cpuacct") {
        let usage = std::fs::read_to_string(root.join("cpuacct.usage")).unwrap_or_default();
        return usage.trim().parse::<f64>().map_or(f64::NAN, |ns| ns / 1e9);
    }
    let stat = mounts
        .v2()
        .and_then(|root| std::fs::read_to_string(root.join("cpu.stat")).ok())
        .unwrap_or_default();
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(f64::NAN, |us| us / 1e6)
}

/// Packages (iterations) in an appended anomalies file.
pub fn packages(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("# TYPE anomaly_count "))
        .count()
}

/// Anomaly samples naming `task` as contended (one per contending task).
pub fn anomalies_on(text: &str, task: &str) -> usize {
    let needle = format!("contended_task_id=\"{task}\"");
    text.lines()
        .filter(|l| l.starts_with("anomaly{") && l.contains(&needle))
        .count()
}

/// Distinct anomalies (uuid per package) in an appended anomalies file.
pub fn anomaly_count(text: &str) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let mut package = 0;
    for l in text.lines() {
        if l.starts_with("# TYPE anomaly_count ") {
            package += 1;
        }
        if l.starts_with("anomaly{")
            && let Some(uuid) = l.split("uuid=\"").nth(1).and_then(|r| r.split('"').next())
        {
            seen.insert((package, uuid.to_owned()));
        }
    }
    seen.len()
}

/// Iterations from `packages_before` to the first package holding an anomaly on `lc`
/// whose first contending task is one of `be` (1 = the first iteration after).
pub fn detection_delay(text: &str, packages_before: usize, lc: &str, be: &[&str]) -> Option<usize> {
    let contended = format!("contended_task_id=\"{lc}\"");
    let mut package = 0;
    let mut first_of_uuid = std::collections::BTreeSet::new();
    for l in text.lines() {
        if l.starts_with("# TYPE anomaly_count ") {
            package += 1;
            continue;
        }
        if package < packages_before || !l.starts_with("anomaly{") || !l.contains(&contended) {
            continue;
        }
        let label = |name: &str| {
            l.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        // The first sample of an anomaly is its first contending task.
        if first_of_uuid.insert((package, label("uuid")))
            && be.contains(&label("contending_task_id").as_str())
        {
            return Some(package - packages_before + 1);
        }
    }
    None
}

impl Report {
    pub fn new(
        seconds: f64,
        short: bool,
        action_delay_s: f64,
        phases: Vec<PhaseResult>,
        ticks: Vec<Tick>,
    ) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            seconds,
            short,
            action_delay_s,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            phases,
            ticks,
            host,
            date,
        }
    }

    fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// The interleaved phase's halves.
    fn interleaved(&self) -> Option<Interleaved> {
        self.phase("interleaved")?.interleaved
    }

    fn p99(&self, name: &str, settled: bool) -> Option<f64> {
        let p = self.phase(name)?;
        let l = if settled {
            p.latency_settled
        } else {
            p.latency
        }?;
        (l.releases > 0).then_some(l.p99_us as f64)
    }

    /// LC p99 of a phase relative to LC alone.
    fn relative_p99(&self, name: &str, settled: bool) -> Option<f64> {
        Some(self.p99(name, settled)? / self.p99("lc_alone", false)?)
    }

    /// BE CPU of the protected phase relative to BE alone, and to the CPU time LC leaves.
    fn be_shares(&self) -> Option<(f64, f64)> {
        let p = self.phase("protected")?;
        let alone = self.phase("be_alone")?.be_cpus;
        let left = self.cpus as f64 - p.lc_cpus;
        Some((p.be_cpus / alone, p.be_cpus / left))
    }

    /// Each target: (name, met, what was measured).
    fn targets(&self) -> Vec<(String, bool, String)> {
        let mut out = Vec::new();
        let delay = self.phase("detection").and_then(|p| p.detection_delay);
        out.push((
            format!("detection within {DETECTION_TARGET} iterations"),
            delay.is_some_and(|d| d <= DETECTION_TARGET),
            delay.map_or("no anomaly naming a BE task first".into(), |d| {
                format!("{d} iterations")
            }),
        ));
        for quiet in ["lc_alone", "be_alone"] {
            let n = self.phase(quiet).map_or(usize::MAX, |p| p.anomalies);
            out.push((
                format!("no anomaly in {quiet}"),
                n == 0,
                format!("{n} anomalies"),
            ));
        }
        let rel = self.relative_p99("protected", false);
        let settled = self.relative_p99("protected", true);
        out.push((
            format!("protected LC p99 ≤ {P99_TARGET}× alone"),
            rel.is_some_and(|r| r <= P99_TARGET),
            format!(
                "{} (from 5 s after BE start: {})",
                times(rel),
                times(settled)
            ),
        ));
        let interleaved = self.interleaved();
        let ratio = interleaved.and_then(|i| i.ratio());
        out.push((
            format!("protected LC p99 ≤ {P99_TARGET}× alone, interleaved"),
            ratio.is_some_and(|r| r <= P99_TARGET),
            interleaved.map_or("not measured".into(), |i| {
                format!(
                    "{} ({:.2} ms with BE running, {:.2} ms with BE stopped, {} s slices)",
                    times(ratio),
                    i.protected.p99_us as f64 / 1000.0,
                    i.alone.p99_us as f64 / 1000.0,
                    i.slice_s
                )
            }),
        ));
        let shares = self.be_shares();
        out.push((
            format!("BE gets ≥ {BE_SHARE_TARGET} of the CPU LC leaves idle"),
            shares.is_some_and(|(_, left)| left >= BE_SHARE_TARGET),
            shares.map_or("not measured".into(), |(alone, left)| {
                format!("{left:.2} of what LC leaves; {alone:.2}× BE alone")
            }),
        ));
        out
    }

    /// Targets missed, with what was measured.
    pub fn missed(&self) -> Vec<String> {
        self.targets()
            .into_iter()
            .filter(|(_, met, _)| !met)
            .map(|(name, _, got)| format!("{name}: {got}"))
            .collect()
    }

    /// The first figure that was not measured at all, for the short round.
    pub fn unmeasured(&self) -> Option<String> {
        for p in &self.phases {
            if p.lc && p.latency.is_none_or(|l| l.releases == 0) {
                return Some(format!("{}: LC latency", p.name));
            }
            if p.be && p.be_cpus <= 0.0 {
                return Some(format!("{}: BE CPU", p.name));
            }
        }
        if self
            .phase("detection")
            .and_then(|p| p.detection_delay)
            .is_none()
        {
            return Some("detection: no anomaly on LC naming a BE task".into());
        }
        if self.interleaved().and_then(|i| i.ratio()).is_none() {
            return Some("interleaved: LC latency with BE stopped and running".into());
        }
        if self.phase("protected").is_none_or(|p| p.decisions == 0) {
            return Some("protected: no allocator decision".into());
        }
        None
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Collocation scenario\n\n{} on `{}`, {} CPUs, {} s per phase, {} s iterations. \
             The machine is shared (other engineers' builds and tests): `node CPUs` counts \
             every process on it, and what the phase's tasks did not use was someone \
             else's; the `mesos` cgroup holding the tasks runs with the most `cpu.shares` \
             so that they weigh more than those processes.\n",
            self.date, self.host, self.cpus, self.seconds, self.action_delay_s
        );
        let _ = writeln!(
            s,
            "| phase | agent | LC p50 | LC p99 | LC p99 ×alone | p99 from +5 s | LC CPUs | BE CPUs | node CPUs | anomalies | decisions / give-backs |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for p in &self.phases {
            let ms = |l: Option<Latency>, f: fn(&Latency) -> u64| {
                l.filter(|l| l.releases > 0)
                    .map_or("–".into(), |l| format!("{:.2} ms", f(&l) as f64 / 1000.0))
            };
            let rel = if p.lc {
                times(self.relative_p99(p.name, false))
            } else {
                "–".into()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} / {} |",
                p.title,
                p.agent,
                ms(p.latency, |l| l.p50_us),
                ms(p.latency, |l| l.p99_us),
                rel,
                ms(p.latency_settled, |l| l.p99_us),
                p.lc_cpus,
                p.be_cpus,
                p.node_cpus,
                p.anomalies,
                p.decisions,
                p.give_backs,
            );
        }
        let _ = writeln!(s, "\n| target | met | measured |\n|---|---|---|");
        for (name, met, got) in self.targets() {
            let _ = writeln!(
                s,
                "| {name} | {} | {got} |",
                if met { "yes" } else { "**no**" }
            );
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "date": self.date,
            "host": self.host,
            "cpus": self.cpus,
            "seconds_per_phase": self.seconds,
            "action_delay_s": self.action_delay_s,
            "short": self.short,
            "phases": self.phases.iter().map(|p| json!({
                "name": p.name,
                "agent": p.agent,
                "seconds": p.seconds,
                "latency": p.latency.map(|l| l.json()),
                "latency_from_5s": p.latency_settled.map(|l| l.json()),
                "lc_p99_relative_to_alone": p.lc.then(|| self.relative_p99(p.name, false)).flatten(),
                "lc_cpus": p.lc_cpus,
                "be_cpus": p.be_cpus,
                "node_cpus": p.node_cpus,
                "anomalies": p.anomalies,
                "detection_delay_iterations": p.detection_delay,
                "decisions": p.decisions,
                "give_backs": p.give_backs,
                "interleaved": p.interleaved.map(|i| json!({
                    "slice_s": i.slice_s,
                    "be_stopped": i.alone.json(),
                    "be_running": i.protected.json(),
                    "p99_ratio": i.ratio(),
                })),
            })).collect::<Vec<_>>(),
            "targets": self.targets().into_iter().map(|(name, met, got)| json!({"target": name, "met": met, "measured": got})).collect::<Vec<_>>(),
            "timeline": self.ticks.iter().map(|t| json!({
                "at_s": t.at_s, "phase": t.phase, "lc_cpus": t.lc_cpus, "be_cpus": t.be_cpus,
                "node_cpus": t.node_cpus, "be_idle": t.be_idle, "be_quota_cpus": t.be_quota_cpus,
                "anomalies": t.new_anomalies, "lc_p99_us": t.lc_p99_us,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&self.json())?,
        )?;
        std::fs::write(dir.join("timeline.svg"), crate::svg::timeline(self))?;
        Ok(())
    }
}

fn times(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.2}×"))
}
