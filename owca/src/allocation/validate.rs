//! Deciding apart from applying: an allocator's answer is checked as a whole ([`validate`])
//! and compared with what the kernel holds, so that only real changes are written
//! ([`changes`]).

use std::collections::{BTreeMap, BTreeSet};

use super::AllocationConfiguration;
use crate::{
    allocators::{InvalidAllocations, TaskAllocations, TasksAllocations},
    cgroups::cpu_list::{parse_cpu_list, parse_cpu_list_within},
    resctrl::{RdtAllocation, RdtControl},
};

/// Differences up to this much (in normalized units) are no change: allocators that
/// compute values every iteration would otherwise rewrite cgroup files every second.
pub const TOLERANCE: f64 = 0.05;

/// What the machine allows, for [`validate`].
pub struct Limits<'a> {
    /// Tasks the node lists now.
    pub tasks: &'a BTreeSet<String>,
    /// CPUs online now.
    pub online_cpus: &'a BTreeSet<u32>,
    /// The highest CPU the machine can ever have (`/sys/devices/system/cpu/possible`):
    /// a `cpu_set` naming more is refused before it is built.
    pub highest_possible_cpu: u32,
    /// Normalization settings (shares above the kernel's maximum are refused).
    pub configuration: &'a AllocationConfiguration,
    /// RDT allocation, when enabled.
    pub rdt: Option<&'a RdtControl>,
}

/// Checks a whole set; the first problem found refuses it all.
pub fn validate(desired: &TasksAllocations, limits: &Limits<'_>) -> Result<(), InvalidAllocations> {
    let mut rdt = BTreeMap::new();
    for (task_id, a) in desired {
        let out_of_range = |field, value, range: String| InvalidAllocations::OutOfRange {
            task_id: task_id.clone(),
            field,
            value,
            range,
        };
        if !limits.tasks.contains(task_id) {
            return Err(InvalidAllocations::UnknownTask {
                task_id: task_id.clone(),
            });
        }
        if let Some(q) = a.cpu_quota
            && !(0.0..=1.0).contains(&q)
        {
            return Err(out_of_range("cpu_quota", q, "[0, 1]".into()));
        }
        if let Some(s) = a.cpu_shares {
            let max = limits.configuration.max_cpu_shares();
            if !(0.0..=max).contains(&s) {
                return Err(out_of_range("cpu_shares", s, format!("[0, {max}]")));
            }
        }
        if let Some(set) = &a.cpu_set {
            check_cpu_set(task_id, set, limits)?;
        }
        if a.cpu_idle == Some(true) && a.cpu_shares.is_some() {
            return Err(InvalidAllocations::SharesOfIdle {
                task_id: task_id.clone(),
            });
        }
        if let Some(r) = &a.rdt {
            if limits.rdt.is_none() {
                return Err(InvalidAllocations::RdtDisabled {
                    task_id: task_id.clone(),
                });
            }
            rdt.insert(task_id.clone(), r.clone());
        }
    }
    if let Some(control) = limits.rdt
        && !rdt.is_empty()
    {
        control.validate(&rdt)?;
    }
    Ok(())
}

fn check_cpu_set(
    task_id: &str,
    value: &str,
    limits: &Limits<'_>,
) -> Result<(), InvalidAllocations> {
    let online = limits.online_cpus;
    let err = |reason: String| InvalidAllocations::CpuSet {
        task_id: task_id.to_owned(),
        // A list refused for its length is not logged whole.
        value: match value.char_indices().nth(64) {
            Some((at, _)) => format!("{}...", &value[..at]),
            None => value.to_owned(),
        },
        reason,
    };
    let cpus =
        parse_cpu_list_within(value, limits.highest_possible_cpu).map_err(|e| err(e.reason))?;
    if cpus.is_empty() {
        return Err(err("no CPU".into()));
    }
    let offline: BTreeSet<u32> = cpus.difference(online).copied().collect();
    if !offline.is_empty() {
        return Err(err(format!(
            "CPUs {} are not online (online: {})",
            crate::cgroups::cpu_list::format_cpu_list(&offline),
            crate::cgroups::cpu_list::format_cpu_list(online)
        )));
    }
    Ok(())
}

/// Per task, the types whose desired value differs from the current one (beyond
/// [`TOLERANCE`] for numbers); tasks without a change are left out. A desired quota is
/// compared as `quota_as_written` gives it (see
/// [`AllocationConfiguration::quota_as_written`]).
pub fn changes(
    current: &TasksAllocations,
    desired: &TasksAllocations,
    quota_as_written: impl Fn(f64) -> f64,
) -> TasksAllocations {
    let none = TaskAllocations::default();
    let mut out = TasksAllocations::new();
    for (task_id, want) in desired {
        let have = current.get(task_id).unwrap_or(&none);
        let number = |want: Option<f64>, have: Option<f64>, as_written: &dyn Fn(f64) -> f64| match (
            want, have,
        ) {
            (Some(w), Some(h)) if (as_written(w) - h).abs() <= TOLERANCE => None,
            (w, _) => w,
        };
        let change = TaskAllocations {
            cpu_quota: number(want.cpu_quota, have.cpu_quota, &quota_as_written),
            cpu_shares: number(want.cpu_shares, have.cpu_shares, &|s| s),
            cpu_set: want
                .cpu_set
                .clone()
                .filter(|w| !same_cpus(w, have.cpu_set.as_deref())),
            cpu_idle: want.cpu_idle.filter(|w| have.cpu_idle != Some(*w)),
            rdt: want
                .rdt
                .clone()
                .filter(|w| !same_rdt(task_id, w, have.rdt.as_ref())),
        };
        if !change.is_empty() {
            out.insert(task_id.clone(), change);
        }
    }
    out
}

fn same_cpus(want: &str, have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    matches!((parse_cpu_list(want), parse_cpu_list(have)), (Ok(w), Ok(h)) if w == h)
}

/// Same group, and every line the desired allocation gives equal to the group's.
fn same_rdt(task_id: &str, want: &RdtAllocation, have: Option<&RdtAllocation>) -> bool {
    let Some(have) = have else { return false };
    want.group(task_id) == have.group(task_id)
        && (want.l3.is_none() || want.l3_masks() == have.l3_masks())
        && (want.mb.is_none() || want.mb_values() == have.mb_values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocators::task_allocations::tests::alloc;

    fn check(desired: &TasksAllocations, rdt: Option<&RdtControl>) -> Result<(), String> {
        let tasks = BTreeSet::from(["a".to_owned(), "b".to_owned()]);
        let online = BTreeSet::from([0, 1]);
        let cfg = AllocationConfiguration::default();
        let limits = Limits {
            tasks: &tasks,
            online_cpus: &online,
            highest_possible_cpu: 3,
            configuration: &cfg,
            rdt,
        };
        validate(desired, &limits).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_sets_pass() {
        let ok = TasksAllocations::from([
            ("a".into(), alloc(Some(0.0), Some(0.0), Some("0-1"))),
            ("b".into(), alloc(Some(1.0), Some(262.144), Some("1"))),
        ]);
        assert_eq!(check(&ok, None), Ok(()));
        assert_eq!(check(&TasksAllocations::new(), None), Ok(()));
    }

    #[test]
    fn each_problem_is_named_with_its_task() {
        let cases = [
            ("x", alloc(Some(0.5), None, None), "task x: no such task"),
            (
                "a",
                alloc(Some(1.5), None, None),
                "task a: cpu_quota = 1.5 is out of range [0, 1]",
            ),
            ("a", alloc(Some(-0.1), None, None), "cpu_quota = -0.1"),
            ("a", alloc(Some(f64::NAN), None, None), "cpu_quota = NaN"),
            (
                "b",
                alloc(None, Some(-1.0), None),
                "task b: cpu_shares = -1",
            ),
            ("b", alloc(None, Some(263.0), None), "[0, 262.144]"),
            (
                "a",
                alloc(None, None, Some("0-3")),
                "CPUs 2-3 are not online (online: 0-1)",
            ),
            (
                "a",
                alloc(None, None, Some("0-65535")),
                "task a: cpu_set \"0-65535\": CPU 65535 is above 3",
            ),
            ("a", alloc(None, None, Some("x")), "task a: cpu_set \"x\""),
            ("a", alloc(None, None, Some("")), "no CPU"),
            (
                "a",
                TaskAllocations {
                    cpu_idle: Some(true),
                    ..alloc(None, Some(1.0), None)
                },
                "task a: cpu_shares cannot be set with cpu_idle: true",
            ),
        ];
        for (task, a, want) in cases {
            let set = TasksAllocations::from([(task.to_owned(), a)]);
            let err = check(&set, None).unwrap_err();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let rdt = TaskAllocations {
            rdt: Some(RdtAllocation::default()),
            ..Default::default()
        };
        let err = check(&TasksAllocations::from([("a".into(), rdt)]), None).unwrap_err();
        assert!(err.contains("RDT is not enabled"), "{err}");
    }

    #[test]
    fn small_differences_are_no_change() {
        let current =
            TasksAllocations::from([("a".into(), alloc(Some(0.5), Some(1.0), Some("0-1")))]);
        let same =
            TasksAllocations::from([("a".into(), alloc(Some(0.54), Some(0.96), Some("1,0")))]);
        let exact = |q| q;
        assert!(changes(&current, &same, exact).is_empty());
        let other = TasksAllocations::from([("a".into(), alloc(Some(0.56), Some(1.0), Some("0")))]);
        assert_eq!(
            changes(&current, &other, exact)["a"],
            alloc(Some(0.56), None, Some("0"))
        );
        // Nothing known yet: everything desired is a change.
        let fresh = changes(&TasksAllocations::new(), &same, exact);
        assert_eq!(fresh["a"], same["a"]);
        // A quota the kernel minimum raised reads back higher: not rewritten every time.
        let idle = |v| TaskAllocations {
            cpu_idle: Some(v),
            ..Default::default()
        };
        let was_idle = TasksAllocations::from([("a".into(), idle(true))]);
        assert!(changes(&was_idle, &was_idle, exact).is_empty());
        let unidle = TasksAllocations::from([("a".into(), idle(false))]);
        assert_eq!(changes(&was_idle, &unidle, exact)["a"], idle(false));
        let raised = TasksAllocations::from([("a".into(), alloc(Some(0.1), None, None))]);
        assert!(changes(&current, &raised, |_| 0.5).is_empty());
        assert!(!changes(&current, &raised, exact).is_empty());
    }
}
