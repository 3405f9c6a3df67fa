//! `!CollocationAllocator`: a closed loop that protects latency-critical (LC) tasks from
//! the best-effort (BE) tasks sharing their node, telling them apart by label.
//!
//! With `idle_best_effort: with_lc` (the default) every BE task gets `cpu_idle` as soon
//! as it is listed next to an LC task, before any contention, and loses it only when no
//! LC task is left: an idle task still gets every cycle the others leave, while a
//! reactive loop lets the first iteration of contention through, which alone can cost an
//! LC task its p99. The loop below then starts from the next lever.
//!
//! Every iteration it reads, for each LC task, the run-queue wait it suffered while BE
//! tasks ran instead (counted in the kernel, see `TaskData::contenders`). An LC task that
//! waited `wait_threshold` seconds or more per second it ran is contended: each BE task
//! that caused at least `min_contender_share` of that wait loses one step, by the first
//! lever of `levers` it still has (`cpu_idle`, then `cpu_quota` cut by `quota_factor`
//! from what it used, down to `min_quota`), and the decision is reported as an anomaly
//! (the LC task contended by those BE tasks, largest first). Waits caused by other LC
//! tasks, unwatched processes or the task's own quota never blame a BE task.
//!
//! The `rdt` lever (see [`rdt`]) answers another signal: caches and memory bandwidth
//! shared with BE tasks running on other CPUs at the same time cause no run-queue wait,
//! but raise the LC task's CPI. An LC task whose CPI is an outlier against its own
//! history (as `!ContentionDetector` judges `cache`) while BE tasks ran is
//! cache-contended: every BE task that ran moves to one resctrl group,
//! [`BEST_EFFORT_GROUP`], holding only `best_effort_l3_ways` L3 ways and
//! `best_effort_memory_bandwidth` percent, and the decision is reported as an anomaly of
//! resource `cache`. It needs the PMU (cycles, instructions) and RDT allocation
//! (`PlatformData::rdt_information`); without them it is inert, and says so once.
//!
//! Once every LC task has been calm (neither kind of contention) for `calm_iterations`,
//! one step is given back to every BE task: the last lever first (the root resctrl group
//! for `rdt`, `give_back_step` of quota up to no limit), and `cpu_idle` only after
//! `idle_calm_iterations`, a wait that doubles each time giving it back brought
//! contention back at once.
//!
//! Levels are not remembered: each step starts from the allocations the kernel holds, so
//! a restarted agent changes nothing until the next contention or the next calm period.
//! LC and unlabelled tasks are never allocated.

mod config;
mod rdt;

use std::collections::BTreeMap;

use tracing::info;

pub use self::{
    config::{CollocationAllocatorConfig, CollocationAllocatorError, IdleBestEffort, Lever},
    rdt::BEST_EFFORT_GROUP,
};
use super::{TaskAllocations, TasksAllocations};
use crate::{
    anomaly::{ContendedResource, ContentionAnomaly},
    detectors::{
        cpi::{CpiSettings, CpiTracker},
        waits::{WaitInterval, WaitTracker},
    },
    measurements::Observation,
    metrics::{Metric, names},
    nodes::LabelMatcher,
};

/// Quota changes this small are no change to the allocation stage (its tolerance): a
/// step must be larger to be written.
const QUOTA_TOLERANCE: f64 = 0.05;
/// `idle_calm_iterations` never doubles past an hour of 1 s iterations.
const MAX_IDLE_CALM: u32 = 3600;
/// CPUs an LC task must have used in the interval to have its CPI judged: a task that
/// barely ran has a noisy CPI (`!ContentionDetector`'s `min_contender_cpus` default).
const MIN_CPI_CPUS: f64 = 0.1;

/// The running allocator: wait counters, LC tasks' CPI history and the calm streak; no
/// allocation level.
#[derive(Debug)]
pub struct CollocationAllocator {
    cfg: CollocationAllocatorConfig,
    lc: LabelMatcher,
    be: LabelMatcher,
    waits: WaitTracker,
    /// LC tasks' CPI history, for the `rdt` lever.
    cpi: CpiTracker,
    /// Whether the `rdt` lever said, once, what it will do on this host.
    rdt_reported: bool,
    iteration: u64,
    /// Iterations since the last contention or the last step given back.
    calm: u32,
    /// Calm iterations needed before `cpu_idle` is given back now.
    idle_calm: u32,
    /// The iteration `cpu_idle` was last given back in, until contention or a while.
    idle_given_back_at: Option<u64>,
}

/// What one iteration decided.
#[derive(Debug, Default)]
pub struct CollocationDecision {
    /// New allocations of BE tasks (only those that change).
    pub allocations: TasksAllocations,
    /// One per contended LC task.
    pub anomalies: Vec<ContentionAnomaly>,
    /// Each LC task's wait by BE tasks, and the calm streak.
    pub metrics: Vec<Metric>,
}

impl CollocationAllocator {
    /// Checks the settings and compiles the label patterns.
    pub fn new(cfg: CollocationAllocatorConfig) -> Result<Self, CollocationAllocatorError> {
        let (lc, be) = cfg.check()?;
        let idle_calm = cfg.idle_calm_iterations;
        let cpi = CpiTracker::new(CpiSettings {
            history: cfg.cpi_history,
            min_samples: cfg.cpi_min_samples,
            stddevs: cfg.cpi_stddevs,
        });
        Ok(Self {
            cfg,
            lc,
            be,
            waits: WaitTracker::default(),
            cpi,
            rdt_reported: false,
            iteration: 0,
            calm: 0,
            idle_calm,
            idle_given_back_at: None,
        })
    }

    /// Judges the interval since the previous observation (the first only starts the
    /// counters) and decides the BE tasks' allocations.
    pub fn allocate(&mut self, obs: &Observation) -> CollocationDecision {
        self.iteration += 1;
        let mut lc = Vec::new();
        let mut be = BTreeMap::new();
        for (id, t) in &obs.tasks {
            if self.lc.matches(&t.labels) {
                lc.push(id.as_str());
            } else if self.be.matches(&t.labels) {
                let have = t
                    .allocations
                    .as_ref()
                    .and_then(|v| serde_json::from_value::<TaskAllocations>(v.clone()).ok())
                    .unwrap_or_default();
                be.insert(id.as_str(), have);
            }
        }
        // Placement comes before judging: it needs no interval, so it acts on the first
        // observation of a task.
        let placed = self.idle_next_to_lc(!lc.is_empty(), &mut be);
        let intervals = self.waits.intervals(obs);
        let rdt_target = self.rdt_target(&obs.platform);
        // Counted from the first observation on, judged only where the lever can act.
        let cpis = match rdt_target {
            Some(_) => self.cpi.cpis(obs),
            None => BTreeMap::new(),
        };
        if intervals.is_empty() {
            // The first observation (or no task): nothing to judge, no calm to count.
            return CollocationDecision {
                allocations: placed,
                ..Default::default()
            };
        }
        let mut out = CollocationDecision::default();
        // BE task → the LC wait it caused in contended LC tasks.
        let mut blamed: BTreeMap<&str, f64> = BTreeMap::new();
        for &id in &lc {
            let Some(i) = intervals.get(id) else { continue };
            let by_be: Vec<(&str, f64)> = i
                .contenders(id)
                .into_iter()
                .filter(|(who, _)| be.contains_key(who))
                .collect();
            let total: f64 = by_be.iter().map(|(_, d)| d).sum();
            let ratio = i.per_cpu_second(total);
            out.metrics.push(
                Metric::gauge(names::COLLOCATION_WAIT, names::COLLOCATION_WAIT_HELP, ratio)
                    .with_label("task_id", id),
            );
            if total / i.seconds < self.cfg.min_wait || ratio < self.cfg.wait_threshold {
                continue;
            }
            let takers: Vec<(&str, f64)> = by_be
                .into_iter()
                .filter(|(_, d)| *d >= self.cfg.min_contender_share * total)
                .collect();
            for (who, d) in &takers {
                *blamed.entry(who).or_default() += d;
            }
            out.anomalies.push(self.anomaly(id, &takers, ratio));
        }
        // BE tasks that ran while an LC task was cache-contended, most CPUs first.
        let ran: Vec<&str> = rdt::best_effort_that_ran(&intervals, &be);
        let mut cached: &[&str] = &[];
        for &id in &lc {
            // Judged even when no BE task ran: every sample enters the history.
            let Some((cpi, threshold)) = self.cache_contended(id, &cpis, &intervals) else {
                continue;
            };
            if !ran.is_empty() {
                out.anomalies
                    .push(rdt::cache_anomaly(id, &ran, cpi, threshold));
                cached = &ran;
            }
        }
        if blamed.is_empty() && cached.is_empty() {
            self.calm += 1;
            out.allocations = self.give_back(&be);
        } else {
            if !blamed.is_empty()
                && let Some(at) = self.idle_given_back_at.take()
                && self.iteration - at <= u64::from(self.cfg.calm_iterations)
            {
                self.idle_calm = self.idle_calm.saturating_mul(2).min(MAX_IDLE_CALM);
                info!(
                    idle_calm_iterations = self.idle_calm,
                    "contention came back after cpu_idle was given back: waiting longer next time"
                );
            }
            self.calm = 0;
            for who in blamed.keys() {
                let used = intervals.get(*who).map(WaitInterval::cpus);
                if let Some(step) = self.take(&be[who], used, obs.platform.cpus) {
                    info!(task_id = %who, allocations = %serde_json::to_string(&step).unwrap_or_default(), "taking CPU from a best-effort task");
                    out.allocations.insert((*who).to_owned(), step);
                }
            }
            if let Some(target) = &rdt_target {
                for who in cached.iter().filter(|who| !rdt::holds(&be[**who], target)) {
                    info!(task_id = %who, group = BEST_EFFORT_GROUP, l3 = target.l3.as_deref().unwrap_or("-"), mb = target.mb.as_deref().unwrap_or("-"), "taking L3 cache and memory bandwidth from a best-effort task");
                    let step = TaskAllocations {
                        rdt: Some(target.clone()),
                        ..Default::default()
                    };
                    out.allocations
                        .entry((*who).to_owned())
                        .or_default()
                        .merge(&step);
                }
            }
        }
        for (id, step) in placed {
            out.allocations.entry(id).or_default().merge(&step);
        }
        out.metrics.push(Metric::gauge(
            names::COLLOCATION_CALM,
            names::COLLOCATION_CALM_HELP,
            f64::from(self.calm),
        ));
        out
    }

    /// With `idle_best_effort: with_lc`: `cpu_idle` for every BE task while an LC task is
    /// listed, and back once none is; `be` is updated to what the kernel will hold.
    fn idle_next_to_lc(
        &self,
        lc_present: bool,
        be: &mut BTreeMap<&str, TaskAllocations>,
    ) -> TasksAllocations {
        let mut out = TasksAllocations::new();
        if self.cfg.idle_best_effort != IdleBestEffort::WithLc
            || !self.cfg.levers().contains(&Lever::CpuIdle)
        {
            return out;
        }
        for (id, have) in be.iter_mut() {
            // `None`: the kernel has no cpu.idle for this task.
            if have.cpu_idle.is_none() || have.cpu_idle == Some(lc_present) {
                continue;
            }
            if lc_present {
                info!(task_id = %id, "making a best-effort task idle: latency-critical tasks share the node");
            } else {
                info!(task_id = %id, "a best-effort task is no longer idle: no latency-critical task is left");
            }
            have.cpu_idle = Some(lc_present);
            out.insert(
                (*id).to_owned(),
                TaskAllocations {
                    cpu_idle: Some(lc_present),
                    ..Default::default()
                },
            );
        }
        out
    }

    /// The next step down for a BE task holding `have` and using `used` CPUs, by the
    /// first lever it still has; `None` at the bottom of every lever.
    fn take(
        &self,
        have: &TaskAllocations,
        used: Option<f64>,
        cpus: usize,
    ) -> Option<TaskAllocations> {
        for lever in self.cfg.levers() {
            match lever {
                Lever::CpuIdle if have.cpu_idle == Some(false) => {
                    return Some(TaskAllocations {
                        cpu_idle: Some(true),
                        ..Default::default()
                    });
                }
                Lever::CpuQuota => {
                    let Some(quota) = have.cpu_quota else {
                        continue;
                    };
                    let used = used.map_or(quota, |u| u / cpus.max(1) as f64);
                    let want = (quota.min(used) * self.cfg.quota_factor).max(self.cfg.min_quota);
                    // Four decimals: a readable log line and cgroup value.
                    let want = (want * 1e4).round() / 1e4;
                    if quota - want > QUOTA_TOLERANCE {
                        return Some(TaskAllocations {
                            cpu_quota: Some(want),
                            ..Default::default()
                        });
                    }
                }
                // Not a CPU lever: pulled on its own signal.
                Lever::CpuIdle | Lever::Rdt => {}
            }
        }
        None
    }

    /// After a calm streak, one step back for every BE task holding the last lever any of
    /// them holds.
    fn give_back(&mut self, be: &BTreeMap<&str, TaskAllocations>) -> TasksAllocations {
        let mut out = TasksAllocations::new();
        for lever in self.cfg.levers().iter().rev() {
            let (needed, step): (u32, GiveBack) = match lever {
                Lever::Rdt => (self.cfg.calm_iterations, rdt::rdt_back),
                Lever::CpuQuota => (self.cfg.calm_iterations, quota_back),
                // Placement gives it back, when the last LC task is gone.
                Lever::CpuIdle if self.cfg.idle_best_effort == IdleBestEffort::WithLc => continue,
                Lever::CpuIdle => (self.idle_calm, idle_back),
            };
            let steps: TasksAllocations = be
                .iter()
                .filter_map(|(id, have)| {
                    Some(((*id).to_owned(), step(have, self.cfg.give_back_step)?))
                })
                .collect();
            if steps.is_empty() {
                continue;
            }
            if self.calm >= needed {
                for (id, step) in &steps {
                    if *lever == Lever::Rdt {
                        info!(task_id = %id, "giving L3 cache and memory bandwidth back to a best-effort task: back to the root group");
                    } else {
                        info!(task_id = %id, allocations = %serde_json::to_string(step).unwrap_or_default(), "giving CPU back to a best-effort task");
                    }
                }
                self.calm = 0;
                if *lever == Lever::CpuIdle {
                    self.idle_given_back_at = Some(self.iteration);
                }
                out = steps;
            }
            break;
        }
        out
    }

    fn anomaly(&self, id: &str, takers: &[(&str, f64)], ratio: f64) -> ContentionAnomaly {
        let metric =
            |name, help, v| Metric::gauge(name, help, v).with_label("contended_task_id", id);
        ContentionAnomaly {
            resource: ContendedResource::Cpus,
            contended_task_id: id.to_owned(),
            contending_task_ids: takers.iter().map(|(who, _)| (*who).to_owned()).collect(),
            metrics: vec![
                metric(names::COLLOCATION_WAIT, names::COLLOCATION_WAIT_HELP, ratio),
                metric(
                    names::COLLOCATION_THRESHOLD,
                    names::COLLOCATION_THRESHOLD_HELP,
                    self.cfg.wait_threshold,
                ),
            ],
        }
    }
}

/// One step back of a lever for a task holding `have`, given the step size.
type GiveBack = fn(&TaskAllocations, f64) -> Option<TaskAllocations>;

/// `give_back_step` more quota, no limit from 1.0 up; `None` without a limit.
fn quota_back(have: &TaskAllocations, step: f64) -> Option<TaskAllocations> {
    let quota = have.cpu_quota.filter(|q| *q < 1.0)?;
    Some(TaskAllocations {
        cpu_quota: Some((quota + step).min(1.0)),
        ..Default::default()
    })
}

/// `cpu_idle: false` for an idle task.
fn idle_back(have: &TaskAllocations, _: f64) -> Option<TaskAllocations> {
    (have.cpu_idle == Some(true)).then(|| TaskAllocations {
        cpu_idle: Some(false),
        ..Default::default()
    })
}

#[cfg(test)]
mod rdt_tests;
#[cfg(test)]
mod tests;
