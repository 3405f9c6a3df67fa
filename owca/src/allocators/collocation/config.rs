//! `!CollocationAllocator`'s settings, their defaults and checks.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use crate::nodes::LabelMatcher;

/// A way of taking from a best-effort task, in the order the allocator uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lever {
    /// `cpu_idle: true`: the task runs only on CPUs its siblings leave idle and is
    /// preempted as soon as one of them wakes up; it keeps every idle cycle. Used where
    /// the kernel has `cpu.idle` (Linux 5.15+).
    CpuIdle,
    /// `cpu_quota`, multiplied by `quota_factor` per contended iteration, down to
    /// `min_quota`: a hard cap, for contention that `cpu_idle` does not end.
    CpuQuota,
    /// L3 cache ways and memory bandwidth: BE tasks that ran while an LC task's CPI was an
    /// outlier move to the shared resctrl group [`BEST_EFFORT_GROUP`], which holds only
    /// `best_effort_l3_ways` and `best_effort_memory_bandwidth`. Pulled on its own signal
    /// (CPI, not run-queue wait); inert without RDT allocation or PMU counters.
    ///
    /// [`BEST_EFFORT_GROUP`]: super::BEST_EFFORT_GROUP
    Rdt,
}

/// The levers when `levers` is not given: every one, `rdt` being inert where the host has
/// no RDT allocation.
pub const DEFAULT_LEVERS: [Lever; 3] = [Lever::CpuIdle, Lever::CpuQuota, Lever::Rdt];

/// When best-effort tasks get `cpu_idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleBestEffort {
    /// As soon as they share the node with a latency-critical task, before any
    /// contention, and back only when no latency-critical task is left: `cpu.idle` costs a
    /// BE task nothing while the CPUs are otherwise idle, and a reactive loop always lets
    /// the first interval of contention through.
    WithLc,
    /// Only once an LC task is contended (the first lever), given back after
    /// `idle_calm_iterations` calm ones.
    OnContention,
}

/// `!CollocationAllocator` settings. Only `latency_critical` and `best_effort` are needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollocationAllocatorConfig {
    /// Label name → regex of its value, matched from the value's start (as
    /// `!StaticAllocator`'s): a task with any matching label is latency-critical (LC).
    pub latency_critical: BTreeMap<String, String>,
    /// The same for best-effort (BE) tasks; a task matching both is latency-critical.
    /// Only best-effort tasks are ever allocated.
    pub best_effort: BTreeMap<String, String>,
    /// Seconds an LC task waited on a run queue while BE tasks ran, per second it ran,
    /// at or above which it is contended (default 0.05).
    #[serde(default = "default_wait_threshold")]
    pub wait_threshold: f64,
    /// The same wait per second of the interval below which an LC task is calm whatever
    /// its ratio: a task that barely runs has noisy ratios (default 0.002).
    #[serde(default = "default_min_wait")]
    pub min_wait: f64,
    /// Share of a contended LC task's wait by BE tasks that a BE task must have caused to
    /// be taken from (default 0.1).
    #[serde(default = "default_min_contender_share")]
    pub min_contender_share: f64,
    /// When BE tasks get `cpu_idle` (if `levers` has it): `with_lc` (default) or
    /// `on_contention`.
    #[serde(default = "default_idle_best_effort")]
    pub idle_best_effort: IdleBestEffort,
    /// The levers, in the order they are pulled (default `[cpu_idle, cpu_quota, rdt]`);
    /// given back in the reverse order. See [`Self::levers`].
    #[serde(default)]
    pub levers: Option<Vec<Lever>>,
    /// What a BE quota is multiplied by per contended iteration; the first cut starts
    /// from what the task used (default 0.5).
    #[serde(default = "default_quota_factor")]
    pub quota_factor: f64,
    /// The lowest quota given a BE task, as a share of the machine (default 0.05).
    #[serde(default = "default_min_quota")]
    pub min_quota: f64,
    /// Quota given back per step, as a share of the machine; from 1.0 up there is no
    /// limit (default 0.1).
    #[serde(default = "default_give_back_step")]
    pub give_back_step: f64,
    /// Iterations every LC task must have been calm before a quota step is given back
    /// (default 10).
    #[serde(default = "default_calm_iterations")]
    pub calm_iterations: u32,
    /// Calm iterations before `cpu_idle` is given back (default 60); doubled, up to an
    /// hour's worth, each time contention came back within `calm_iterations` of giving
    /// it back.
    #[serde(default = "default_idle_calm_iterations")]
    pub idle_calm_iterations: u32,
    /// L3 ways the best-effort group keeps, the lowest of `cbm_mask` in every cache
    /// domain, raised to `min_cbm_bits` and at most all of them (default 2: on the 11 to
    /// 20 ways of current Xeons, 10–18 % of the LLC, enough for streaming BE work, which
    /// gains little from cache, and the rest stays with everybody else).
    #[serde(default = "default_best_effort_l3_ways")]
    pub best_effort_l3_ways: u32,
    /// Memory bandwidth the best-effort group keeps, in percent, rounded to
    /// `bandwidth_gran` and at least `min_bandwidth` (default 20: a fifth of the
    /// bandwidth keeps BE tasks progressing while MBA's usual minimum is 10 and its
    /// steps are 10).
    #[serde(default = "default_best_effort_memory_bandwidth")]
    pub best_effort_memory_bandwidth: u32,
    /// CPI samples kept per LC task for the `rdt` lever (default 30, as
    /// `!ContentionDetector`'s).
    #[serde(default = "default_cpi_history")]
    pub cpi_history: usize,
    /// Samples needed before an LC task's CPI is judged (default 10).
    #[serde(default = "default_cpi_min_samples")]
    pub cpi_min_samples: usize,
    /// Standard deviations above the LC task's mean CPI that make it cache-contended
    /// (default 3).
    #[serde(default = "default_cpi_stddevs")]
    pub cpi_stddevs: f64,
}

fn default_wait_threshold() -> f64 {
    0.05
}
fn default_min_wait() -> f64 {
    0.002
}
fn default_min_contender_share() -> f64 {
    0.1
}
fn default_idle_best_effort() -> IdleBestEffort {
    IdleBestEffort::WithLc
}
fn default_quota_factor() -> f64 {
    0.5
}
fn default_min_quota() -> f64 {
    0.05
}
fn default_give_back_step() -> f64 {
    0.1
}
fn default_calm_iterations() -> u32 {
    10
}
fn default_idle_calm_iterations() -> u32 {
    60
}
fn default_best_effort_l3_ways() -> u32 {
    2
}
fn default_best_effort_memory_bandwidth() -> u32 {
    20
}
fn default_cpi_history() -> usize {
    30
}
fn default_cpi_min_samples() -> usize {
    10
}
fn default_cpi_stddevs() -> f64 {
    3.0
}

/// Why the settings cannot work; the agent does not start.
#[derive(Debug, Error)]
pub enum CollocationAllocatorError {
    /// A label pattern is not a regex.
    #[error("CollocationAllocator: {field}.{label}: {error}")]
    Regex {
        /// `latency_critical` or `best_effort`.
        field: &'static str,
        /// The label whose pattern is wrong.
        label: String,
        /// What the regex parser said.
        error: String,
    },
    /// A number outside what it may be.
    #[error("CollocationAllocator: {field} = {value} is out of range {range}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range.
        range: &'static str,
    },
    /// No label to tell the tasks apart.
    #[error("CollocationAllocator: {0} needs at least one label")]
    NoLabels(&'static str),
}

/// `latency_critical` or `best_effort`, compiled; at least one label.
fn compile(
    field: &'static str,
    labels: &BTreeMap<String, String>,
) -> Result<LabelMatcher, CollocationAllocatorError> {
    if labels.is_empty() {
        return Err(CollocationAllocatorError::NoLabels(field));
    }
    LabelMatcher::compile(labels).map_err(|e| CollocationAllocatorError::Regex {
        field,
        label: e.label,
        error: e.error,
    })
}

impl CollocationAllocatorConfig {
    /// The levers given, or the default `[cpu_idle, cpu_quota, rdt]`.
    pub fn levers(&self) -> &[Lever] {
        self.levers.as_deref().unwrap_or(&DEFAULT_LEVERS)
    }

    /// The LC and BE matchers, once every number is in range.
    pub fn check(&self) -> Result<(LabelMatcher, LabelMatcher), CollocationAllocatorError> {
        let range = |field, value: f64, ok: bool, range| {
            if ok {
                Ok(())
            } else {
                Err(CollocationAllocatorError::OutOfRange {
                    field,
                    value,
                    range,
                })
            }
        };
        let w = self.wait_threshold;
        range("wait_threshold", w, w > 0.0 && w.is_finite(), "(0, inf)")?;
        let m = self.min_wait;
        range("min_wait", m, (0.0..1.0).contains(&m), "[0, 1)")?;
        let s = self.min_contender_share;
        range("min_contender_share", s, (0.0..=1.0).contains(&s), "[0, 1]")?;
        let f = self.quota_factor;
        range("quota_factor", f, f > 0.0 && f < 1.0, "(0, 1)")?;
        let q = self.min_quota;
        range("min_quota", q, q > 0.0 && q <= 1.0, "(0, 1]")?;
        let g = self.give_back_step;
        range("give_back_step", g, g > 0.0 && g <= 1.0, "(0, 1]")?;
        let c = f64::from(self.calm_iterations);
        range("calm_iterations", c, c >= 1.0, "[1, ...]")?;
        let c = f64::from(self.idle_calm_iterations);
        range("idle_calm_iterations", c, c >= 1.0, "[1, ...]")?;
        let w = f64::from(self.best_effort_l3_ways);
        range(
            "best_effort_l3_ways",
            w,
            (1.0..=64.0).contains(&w),
            "[1, 64]",
        )?;
        let b = f64::from(self.best_effort_memory_bandwidth);
        range(
            "best_effort_memory_bandwidth",
            b,
            (1.0..=100.0).contains(&b),
            "[1, 100]",
        )?;
        let h = self.cpi_history as f64;
        range("cpi_history", h, h >= 2.0, "[2, ...]")?;
        let n = self.cpi_min_samples as f64;
        range("cpi_min_samples", n, n >= 2.0 && n <= h, "[2, cpi_history]")?;
        let k = self.cpi_stddevs;
        range("cpi_stddevs", k, k > 0.0 && k.is_finite(), "(0, inf)")?;
        Ok((
            compile("latency_critical", &self.latency_critical)?,
            compile("best_effort", &self.best_effort)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `allocator:` block of the shipped config, at the left margin.
    fn shipped() -> String {
        let config = include_str!("../../../../configs/mesos/mesos_collocation_allocator.yaml");
        config
            .lines()
            .skip_while(|l| !l.starts_with("  allocator:"))
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .map(|l| &l[4..])
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_shipped_config_spells_out_the_defaults_and_leaves_levers_unset() {
        let cfg: CollocationAllocatorConfig =
            crate::config::from_str(&shipped(), std::path::Path::new("shipped.yaml")).unwrap();
        cfg.check().unwrap();
        assert_eq!(
            cfg.levers, None,
            "naming rdt would warn on hosts without RDT"
        );
        assert_eq!(cfg.levers(), DEFAULT_LEVERS);
        assert_eq!(
            (cfg.best_effort_l3_ways, cfg.best_effort_memory_bandwidth),
            (
                default_best_effort_l3_ways(),
                default_best_effort_memory_bandwidth()
            )
        );
        assert_eq!(
            (cfg.cpi_history, cfg.cpi_min_samples, cfg.cpi_stddevs),
            (
                default_cpi_history(),
                default_cpi_min_samples(),
                default_cpi_stddevs()
            )
        );
    }
}
