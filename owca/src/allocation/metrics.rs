//! The allocation metrics, with OWCA's names and labels: one sample per task and
//! type (`task`, `container_name`, `allocation_type`; RDT ones also `group_name` and
//! `domain_id`), and the allocation stage's `allocations_count`, `allocations_errors`,
//! `allocation_duration`.

use std::{sync::Arc, time::Duration};

use crate::{
    allocators::{TaskAllocations, TasksAllocations},
    cgroups::cpu_list::parse_cpu_list,
    measurements::MeasuredTask,
    metrics::{Labels, Metric, names},
};

/// Samples of every task's allocations; tasks the node no longer lists are left out.
pub fn allocation_metrics(
    allocations: &TasksAllocations,
    tasks: &std::collections::BTreeMap<String, MeasuredTask>,
    common: &Arc<Labels>,
) -> Vec<Metric> {
    let mut out = Vec::new();
    for (task_id, a) in allocations {
        let Some(task) = tasks.get(task_id) else {
            continue;
        };
        let first = out.len();
        task_samples(task_id, a, &mut out);
        for m in &mut out[first..] {
            let own = Arc::make_mut(&mut m.labels);
            own.insert("task".into(), task_id.clone());
            own.insert("container_name".into(), task.task.name.clone());
            m.shared = Some(Arc::clone(common));
        }
    }
    out
}

fn task_samples(task_id: &str, a: &TaskAllocations, out: &mut Vec<Metric>) {
    let typed = |name, help, kind: &str, value| {
        Metric::gauge(name, help, value).with_label("allocation_type", kind)
    };
    if let Some(q) = a.cpu_quota {
        out.push(typed(
            names::ALLOCATION_CPU_QUOTA,
            names::ALLOCATION_CPU_QUOTA_HELP,
            "cpu_quota",
            q,
        ));
    }
    if let Some(s) = a.cpu_shares {
        out.push(typed(
            names::ALLOCATION_CPU_SHARES,
            names::ALLOCATION_CPU_SHARES_HELP,
            "cpu_shares",
            s,
        ));
    }
    if let Some(Ok(set)) = a.cpu_set.as_deref().map(parse_cpu_list) {
        out.push(typed(
            names::ALLOCATION_CPUSET_CPUS,
            names::ALLOCATION_CPUSET_CPUS_HELP,
            "cpuset_cpus",
            set.len() as f64,
        ));
    }
    if let Some(idle) = a.cpu_idle {
        out.push(typed(
            names::ALLOCATION_CPU_IDLE,
            names::ALLOCATION_CPU_IDLE_HELP,
            "cpu_idle",
            f64::from(u8::from(idle)),
        ));
    }
    let Some(rdt) = &a.rdt else { return };
    let group = rdt.group(task_id);
    let domain = |m: Metric, id: u32| {
        m.with_label("group_name", group.clone())
            .with_label("domain_id", id.to_string())
    };
    for (id, mask) in rdt.l3_masks().unwrap_or_default() {
        out.push(domain(
            typed(
                names::ALLOCATION_RDT_L3_CACHE_WAYS,
                names::ALLOCATION_RDT_L3_CACHE_WAYS_HELP,
                "rdt_l3_cache_ways",
                f64::from(mask.count_ones()),
            ),
            id,
        ));
        out.push(domain(
            typed(
                names::ALLOCATION_RDT_L3_MASK,
                names::ALLOCATION_RDT_L3_MASK_HELP,
                "rdt_l3_mask",
                mask as f64,
            ),
            id,
        ));
    }
    for (id, mb) in rdt.mb_values().unwrap_or_default() {
        out.push(domain(
            typed(
                names::ALLOCATION_RDT_MB,
                names::ALLOCATION_RDT_MB_HELP,
                "rdt_mb",
                mb as f64,
            ),
            id,
        ));
    }
}

/// `allocations_count`, `allocations_errors` (counters) and `allocation_duration`.
pub fn statistics(
    count: u64,
    errors: u64,
    duration: Duration,
    common: &Arc<Labels>,
) -> Vec<Metric> {
    [
        Metric::counter(
            names::ALLOCATIONS_COUNT,
            names::ALLOCATIONS_COUNT_HELP,
            count as f64,
        ),
        Metric::counter(
            names::ALLOCATIONS_ERRORS,
            names::ALLOCATIONS_ERRORS_HELP,
            errors as f64,
        ),
        Metric::gauge(
            names::ALLOCATION_DURATION,
            names::ALLOCATION_DURATION_HELP,
            duration.as_secs_f64(),
        ),
    ]
    .into_iter()
    .map(|m| m.with_shared(common))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::nodes::Task;

    #[test]
    fn one_sample_per_task_and_type_with_owca_labels() {
        let task = Task {
            task_id: "t1_task_id".into(),
            name: "t1".into(),
            cgroup_path: "/t1".into(),
            labels: Default::default(),
            resources: Default::default(),
        };
        let tasks = BTreeMap::from([(
            "t1_task_id".to_owned(),
            MeasuredTask {
                task: Arc::new(task),
                labels: Arc::default(),
                metrics: 0..0,
            },
        )]);
        let allocations = TasksAllocations::from([
            (
                "t1_task_id".to_owned(),
                TaskAllocations {
                    cpu_quota: Some(0.5),
                    cpu_shares: Some(2.0),
                    cpu_set: Some("0-2,5".into()),
                    cpu_idle: Some(true),
                    rdt: None,
                },
            ),
            ("gone".to_owned(), TaskAllocations::default()),
        ]);
        let common = Arc::new(Labels::from([("host".to_owned(), "h".to_owned())]));
        let m = allocation_metrics(&allocations, &tasks, &common);
        let got: Vec<(&str, f64)> = m.iter().map(|m| (&*m.name, m.value)).collect();
        assert_eq!(
            got,
            [
                ("allocation_cpu_quota", 0.5),
                ("allocation_cpu_shares", 2.0),
                ("allocation_cpuset_cpus", 4.0),
                ("allocation_cpu_idle", 1.0)
            ]
        );
        assert_eq!(m[0].label("task"), Some("t1_task_id"));
        assert_eq!(m[0].label("container_name"), Some("t1"));
        assert_eq!(m[0].label("allocation_type"), Some("cpu_quota"));
        assert_eq!(m[2].label("allocation_type"), Some("cpuset_cpus"));
        assert_eq!(m[0].label("host"), Some("h"));

        let s = statistics(3, 1, Duration::from_millis(5), &common);
        let got: Vec<(&str, f64)> = s.iter().map(|m| (&*m.name, m.value)).collect();
        assert_eq!(
            got,
            [
                ("allocations_count", 3.0),
                ("allocations_errors", 1.0),
                ("allocation_duration", 0.005)
            ]
        );
    }
}
