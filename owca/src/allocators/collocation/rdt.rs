//! The `rdt` lever: one resctrl control group shared by every best-effort task that was
//! moved, holding the lowest L3 ways and a share of memory bandwidth, sized to what the
//! hardware offers (`PlatformData::rdt_information`).

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::{CollocationAllocator, Lever, MIN_CPI_CPUS};
use crate::{
    allocators::TaskAllocations,
    anomaly::{ContendedResource, ContentionAnomaly},
    detectors::waits::WaitInterval,
    measurements::PlatformData,
    metrics::{Metric, names},
    resctrl::{
        MbCapabilities, RdtAllocation, RdtCapabilities,
        schemata::{self, Resource},
    },
};

/// The control group of best-effort tasks. Named `owca-...` so that a restarted agent
/// takes it back as its own (and removes it once empty).
pub const BEST_EFFORT_GROUP: &str = "owca-best-effort";

/// The allocation that puts a task in [`BEST_EFFORT_GROUP`] with `ways` L3 ways and
/// `percent` of memory bandwidth in every domain; `None` when the hardware offers
/// neither L3 nor MB allocation on any domain.
pub fn best_effort_allocation(
    caps: &RdtCapabilities,
    ways: u32,
    percent: u32,
) -> Option<RdtAllocation> {
    let l3 = caps
        .cbm_mask
        .and_then(|cbm| l3_line(cbm, caps.min_cbm_bits, &caps.l3_domains, ways));
    let mb = caps
        .mb
        .and_then(|mb| mb_line(mb, &caps.mb_domains, percent));
    (l3.is_some() || mb.is_some()).then(|| RdtAllocation {
        name: Some(BEST_EFFORT_GROUP.to_owned()),
        l3,
        mb,
    })
}

/// The `ways` lowest ways of `cbm_mask` (at least `min_bits`, at most all) in every domain.
fn l3_line(cbm_mask: u64, min_bits: u32, domains: &[u32], ways: u32) -> Option<String> {
    if cbm_mask == 0 || domains.is_empty() {
        return None;
    }
    let ways = ways.max(min_bits).clamp(1, cbm_mask.count_ones());
    let run = u64::MAX >> (64 - ways);
    let mask = run << cbm_mask.trailing_zeros();
    let values: BTreeMap<u32, u64> = domains.iter().map(|d| (*d, mask)).collect();
    Some(schemata::format(Resource::L3, &values))
}

/// `percent` rounded to the granularity, at least the minimum, in every domain.
fn mb_line(mb: MbCapabilities, domains: &[u32], percent: u32) -> Option<String> {
    if domains.is_empty() {
        return None;
    }
    let gran = mb.bandwidth_gran.max(1);
    let rounded = (percent + gran / 2) / gran * gran;
    let value = u64::from(rounded.max(mb.min_bandwidth).min(100));
    let values: BTreeMap<u32, u64> = domains.iter().map(|d| (*d, value)).collect();
    Some(schemata::format(Resource::Mb, &values))
}

/// Whether a task holding `have` is already where `target` puts it: its group, and the
/// lines `target` sets (the kernel's read-back has every resource's line).
pub fn holds(have: &TaskAllocations, target: &RdtAllocation) -> bool {
    have.rdt.as_ref().is_some_and(|h| {
        h.name == target.name
            && (target.l3.is_none() || h.l3 == target.l3)
            && (target.mb.is_none() || h.mb == target.mb)
    })
}

/// Back to the root group for a task in [`BEST_EFFORT_GROUP`]; the root's schemata are
/// left as they are.
pub fn rdt_back(have: &TaskAllocations, _: f64) -> Option<TaskAllocations> {
    let in_group = have
        .rdt
        .as_ref()
        .is_some_and(|r| r.name.as_deref() == Some(BEST_EFFORT_GROUP));
    in_group.then(|| TaskAllocations {
        rdt: Some(RdtAllocation {
            name: Some(String::new()),
            l3: None,
            mb: None,
        }),
        ..Default::default()
    })
}

impl CollocationAllocator {
    /// The `rdt` lever's allocation for BE tasks, when it is among the levers and the host
    /// allocates RDT; says once at the first observation what the lever will do.
    pub(super) fn rdt_target(&mut self, platform: &PlatformData) -> Option<RdtAllocation> {
        if !self.cfg.levers().contains(&Lever::Rdt) {
            return None;
        }
        let target = platform.rdt_information.as_ref().and_then(|caps| {
            best_effort_allocation(
                caps,
                self.cfg.best_effort_l3_ways,
                self.cfg.best_effort_memory_bandwidth,
            )
        });
        if !self.rdt_reported {
            self.rdt_reported = true;
            match &target {
                Some(t) => info!(
                    group = BEST_EFFORT_GROUP,
                    l3 = t.l3.as_deref().unwrap_or("-"),
                    mb = t.mb.as_deref().unwrap_or("-"),
                    "rdt lever: best-effort tasks that run while a latency-critical task's CPI is an outlier move to their own resctrl group (needs cycles and instructions from the PMU)"
                ),
                None if self.cfg.levers.is_some() => warn!(
                    "the rdt lever in levers is inert: this host does not allocate RDT (resctrl not mounted, no L3/MB allocation, or rdt_enabled: false)"
                ),
                None => info!("the rdt lever is inert: this host does not allocate RDT"),
            }
        }
        target
    }

    /// LC task `id`'s CPI and the threshold it exceeded, when it is an outlier against
    /// its history; every CPI of a task that ran enough enters the history.
    pub(super) fn cache_contended(
        &mut self,
        id: &str,
        cpis: &BTreeMap<String, f64>,
        intervals: &BTreeMap<String, WaitInterval>,
    ) -> Option<(f64, f64)> {
        let cpi = *cpis.get(id)?;
        if intervals.get(id)?.cpus() < MIN_CPI_CPUS {
            return None;
        }
        Some((cpi, self.cpi.judge(id, cpi)?))
    }
}

/// BE tasks that used CPU in the interval, most CPUs first (ties by id).
pub(super) fn best_effort_that_ran<'a>(
    intervals: &BTreeMap<String, WaitInterval>,
    be: &BTreeMap<&'a str, TaskAllocations>,
) -> Vec<&'a str> {
    let mut out: Vec<(&str, f64)> = be
        .keys()
        .filter_map(|id| Some((*id, intervals.get(*id)?.cpus())))
        .filter(|(_, cpus)| *cpus > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    out.into_iter().map(|(id, _)| id).collect()
}

/// An LC task whose CPI was an outlier while `takers` ran (resource `cache`).
pub(super) fn cache_anomaly(
    id: &str,
    takers: &[&str],
    cpi: f64,
    threshold: f64,
) -> ContentionAnomaly {
    let metric = |name, help, v| Metric::gauge(name, help, v).with_label("contended_task_id", id);
    ContentionAnomaly {
        resource: ContendedResource::Cache,
        contended_task_id: id.to_owned(),
        contending_task_ids: takers.iter().map(|who| (*who).to_owned()).collect(),
        metrics: vec![
            metric(names::CPI, names::CPI_HELP, cpi),
            metric(names::CPI_THRESHOLD, names::CPI_THRESHOLD_HELP, threshold),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(cbm: Option<u64>, min_bits: u32, mb: Option<(u32, u32)>) -> RdtCapabilities {
        RdtCapabilities {
            cbm_mask: cbm,
            min_cbm_bits: min_bits,
            num_closids: 16,
            l3_domains: vec![0, 1],
            mb: mb.map(|(min_bandwidth, bandwidth_gran)| MbCapabilities {
                min_bandwidth,
                bandwidth_gran,
            }),
            mb_domains: vec![0, 1],
        }
    }

    #[test]
    fn lowest_ways_and_rounded_bandwidth_within_what_the_hardware_takes() {
        let a = best_effort_allocation(&caps(Some(0x7ff), 1, Some((10, 10))), 2, 20).unwrap();
        assert_eq!(a.name.as_deref(), Some(BEST_EFFORT_GROUP));
        assert_eq!(a.l3.as_deref(), Some("L3:0=3;1=3"));
        assert_eq!(a.mb.as_deref(), Some("MB:0=20;1=20"));
        // A mask not starting at way 0, min_cbm_bits above the setting, MB rounded to
        // the granularity and raised to the minimum.
        let a = best_effort_allocation(&caps(Some(0xff0), 3, Some((10, 10))), 2, 24).unwrap();
        assert_eq!(a.l3.as_deref(), Some("L3:0=70;1=70"));
        assert_eq!(a.mb.as_deref(), Some("MB:0=20;1=20"));
        let a = best_effort_allocation(&caps(Some(0xf), 1, Some((30, 10))), 64, 5).unwrap();
        assert_eq!(a.l3.as_deref(), Some("L3:0=f;1=f"), "at most all ways");
        assert_eq!(a.mb.as_deref(), Some("MB:0=30;1=30"));
        // Only what the hardware has; nothing without either.
        let a = best_effort_allocation(&caps(None, 1, Some((10, 10))), 2, 20).unwrap();
        assert_eq!((a.l3, a.mb.as_deref()), (None, Some("MB:0=20;1=20")));
        let a = best_effort_allocation(&caps(Some(0xfff), 1, None), 2, 20).unwrap();
        assert_eq!((a.l3.as_deref(), a.mb), (Some("L3:0=3;1=3"), None));
        assert_eq!(best_effort_allocation(&caps(None, 1, None), 2, 20), None);
    }

    #[test]
    fn held_and_given_back_from_the_kernels_read_back() {
        let target = best_effort_allocation(&caps(Some(0xfff), 1, None), 2, 20).unwrap();
        let with = |rdt: RdtAllocation| TaskAllocations {
            rdt: Some(rdt),
            ..Default::default()
        };
        // The kernel reads back every line of the group.
        let held = with(RdtAllocation {
            mb: Some("MB:0=100;1=100".into()),
            ..target.clone()
        });
        assert!(holds(&held, &target));
        let other_ways = with(RdtAllocation {
            l3: Some("L3:0=f;1=f".into()),
            ..target.clone()
        });
        assert!(
            !holds(&other_ways, &target),
            "resized after a settings change"
        );
        let root = with(RdtAllocation {
            name: Some(String::new()),
            ..Default::default()
        });
        assert!(!holds(&root, &target) && !holds(&TaskAllocations::default(), &target));
        assert_eq!(
            rdt_back(&held, 0.1).and_then(|a| a.rdt),
            Some(RdtAllocation {
                name: Some(String::new()),
                l3: None,
                mb: None
            })
        );
        assert_eq!(rdt_back(&root, 0.1), None);
        let own = with(RdtAllocation {
            name: Some("owca-be1".into()),
            ..Default::default()
        });
        assert_eq!(rdt_back(&own, 0.1), None, "only the agent's BE group");
    }
}
