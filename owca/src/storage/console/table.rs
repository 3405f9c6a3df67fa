//! The task table: one row per task from two consecutive snapshots (rates are the
//! counters' differences over the agent's own iteration times), the summary line, and the
//! order of the rows.

use std::cmp::Ordering;

use serde::Deserialize;

use super::snapshot::{Snapshot, TaskSample};

/// The rates and current values of one task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// The task id.
    pub task_id: String,
    /// Cores used: on-CPU seconds per second.
    pub cpu: Option<f64>,
    /// Run-queue wait per second on CPU (0.25 = waited a quarter of its run time).
    pub wait_share: Option<f64>,
    /// 99th percentile of the interval's run-queue waits.
    pub wait_p99: Option<Quantile>,
    /// Voluntary context switches per second.
    pub switches_voluntary: Option<f64>,
    /// Involuntary context switches per second.
    pub switches_involuntary: Option<f64>,
    /// Throttled seconds per second (cpu.stat's throttled time).
    pub throttled_share: Option<f64>,
    /// Memory in bytes.
    pub memory_bytes: Option<f64>,
    /// Instructions per cycle in the interval, where the PMU counts both.
    pub ipc: Option<f64>,
    /// Current allocation: quota (share of the machine), shares, CPUs of its cpuset.
    pub cpu_quota: Option<f64>,
    pub cpu_shares: Option<f64>,
    pub cpuset_cpus: Option<f64>,
    /// Contending tasks of this iteration's anomalies about the task.
    pub anomaly: Vec<String>,
    /// Who ran while the task waited most in the interval, and its share of the wait.
    pub top_contender: Option<(String, f64)>,
}

/// A quantile of a histogram: within a bucket (interpolated), or above the last bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    /// Seconds, linearly interpolated within its bucket, as Prometheus'
    /// `histogram_quantile` does.
    Within(f64),
    /// In the open last bucket: more than this many seconds.
    Above(f64),
}

/// The node and the agent, for the line above the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub host: Option<String>,
    pub cpus: Option<u32>,
    pub tasks: usize,
    /// Agent CPU in cores over the interval.
    pub agent_cpu: Option<f64>,
    pub agent_rss_bytes: Option<f64>,
    /// Errors since start by component (those above zero), and how many are new.
    pub errors: Vec<(String, f64, f64)>,
}

/// The column the rows are sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    Cpu,
    Wait,
    P99,
    Switches,
    Throttled,
    Memory,
    Ipc,
    Task,
}

/// The order of the rows: by a column, largest first (task ids A to Z), or reversed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub reversed: bool,
}

/// What the console shows: the summary and the sorted rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub summary: Summary,
    pub rows: Vec<Row>,
    pub sort: Sort,
}

impl View {
    /// The view of `cur`, with rates since `prev` (none without it, for a task new since,
    /// or for a counter that went back, e.g. after the agent restarted).
    pub fn new(prev: Option<&Snapshot>, cur: &Snapshot, sort: Sort) -> Self {
        let dt = prev
            .and_then(|p| Some(cur.taken? - p.taken?))
            .filter(|dt| *dt > 0.0);
        let rows = cur
            .tasks
            .iter()
            // Anomaly or allocation samples of a task the agent no longer measures.
            .filter(|(_, t)| t.oncpu_seconds.is_some() || t.memory_bytes.is_some())
            .map(|(id, t)| {
                let before = prev.and_then(|p| p.tasks.get(id));
                row(id, before, t, dt)
            })
            .collect();
        let mut view = Self {
            summary: summary(prev, cur, dt),
            rows,
            sort,
        };
        view.summary.tasks = view.rows.len();
        view.sort_rows();
        view
    }

    /// Sorts the rows by `self.sort`; rows without the value go last either way.
    pub fn sort_rows(&mut self) {
        let Sort { key, reversed } = self.sort;
        self.rows.sort_by(|a, b| {
            let by_id = a.task_id.cmp(&b.task_id);
            if key == SortKey::Task {
                return if reversed { by_id.reverse() } else { by_id };
            }
            let (x, y) = (sort_value(a, key), sort_value(b, key));
            let order = match (x, y) {
                (Some(x), Some(y)) => {
                    let largest_first = y.total_cmp(&x);
                    if reversed {
                        largest_first.reverse()
                    } else {
                        largest_first
                    }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            order.then(by_id)
        });
    }
}

fn sort_value(r: &Row, key: SortKey) -> Option<f64> {
    match key {
        SortKey::Cpu => r.cpu,
        SortKey::Wait => r.wait_share,
        SortKey::P99 => r.wait_p99.map(|q| match q {
            Quantile::Within(s) | Quantile::Above(s) => s,
        }),
        SortKey::Switches => Some(r.switches_voluntary? + r.switches_involuntary?),
        SortKey::Throttled => r.throttled_share,
        SortKey::Memory => r.memory_bytes,
        SortKey::Ipc => r.ipc,
        SortKey::Task => None,
    }
}

/// `cur - prev` of a counter, when both exist and it did not go back.
fn delta(prev: Option<f64>, cur: Option<f64>) -> Option<f64> {
    Some(cur? - prev?).filter(|d| *d >= 0.0)
}

fn row(id: &str, prev: Option<&TaskSample>, cur: &TaskSample, dt: Option<f64>) -> Row {
    let d = |f: fn(&TaskSample) -> Option<f64>| delta(prev.and_then(f), f(cur));
    let rate = |f: fn(&TaskSample) -> Option<f64>| Some(d(f)? / dt?);
    let oncpu = d(|t| t.oncpu_seconds);
    let wait = d(|t| t.runq_wait_seconds);
    let ratio = |num: Option<f64>, den: Option<f64>| Some(num? / den.filter(|d| *d > 0.0)?);
    Row {
        task_id: id.to_owned(),
        cpu: rate(|t| t.oncpu_seconds),
        wait_share: ratio(wait, oncpu),
        wait_p99: prev.and_then(|p| quantile(0.99, &p.runq_buckets, &cur.runq_buckets)),
        switches_voluntary: rate(|t| t.switches_voluntary),
        switches_involuntary: rate(|t| t.switches_involuntary),
        throttled_share: rate(|t| t.throttled_seconds),
        memory_bytes: cur.memory_bytes,
        ipc: ratio(d(|t| t.instructions), d(|t| t.cycles)),
        cpu_quota: cur.cpu_quota,
        cpu_shares: cur.cpu_shares,
        cpuset_cpus: cur.cpuset_cpus,
        anomaly: cur.contenders.clone(),
        top_contender: top_contender(prev, cur, wait),
    }
}

/// The contender with the most wait in the interval and its share of the task's wait.
fn top_contender(
    prev: Option<&TaskSample>,
    cur: &TaskSample,
    wait: Option<f64>,
) -> Option<(String, f64)> {
    let prev = prev?;
    let wait = wait.filter(|w| *w > 0.0)?;
    cur.wait_by
        .iter()
        .filter_map(|(by, v)| {
            Some((
                by,
                delta(prev.wait_by.get(by).copied().or(Some(0.0)), Some(*v))?,
            ))
        })
        .filter(|(_, d)| *d > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(by, d)| (by.clone(), d / wait))
}

/// Quantile `q` of the waits between two cumulative bucket lists (bounds ascending, the
/// last `+Inf`); `None` without waits in between or when the bounds differ.
pub fn quantile(q: f64, prev: &[(f64, f64)], cur: &[(f64, f64)]) -> Option<Quantile> {
    if prev.len() != cur.len() || cur.is_empty() || prev.iter().zip(cur).any(|(p, c)| p.0 != c.0) {
        return None;
    }
    let counts: Vec<f64> = prev
        .iter()
        .zip(cur)
        .map(|(p, c)| (c.1 - p.1).max(0.0))
        .collect();
    let total = *counts.last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = counts.iter().position(|&c| c >= rank)?;
    let upper = cur[i].0;
    let lower = if i == 0 { 0.0 } else { cur[i - 1].0 };
    if upper.is_infinite() {
        return Some(Quantile::Above(lower));
    }
    let below = if i == 0 { 0.0 } else { counts[i - 1] };
    let in_bucket = counts[i] - below;
    let within = if in_bucket > 0.0 {
        lower + (upper - lower) * (rank - below) / in_bucket
    } else {
        upper
    };
    Some(Quantile::Within(within))
}

fn summary(prev: Option<&Snapshot>, cur: &Snapshot, dt: Option<f64>) -> Summary {
    let agent_cpu = delta(
        prev.and_then(|p| p.agent.cpu_seconds),
        cur.agent.cpu_seconds,
    )
    .and_then(|d| Some(d / dt?));
    let errors = cur
        .agent
        .errors
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(c, n)| {
            let before = prev.and_then(|p| p.agent.errors.get(c)).copied();
            let new = before.map_or(0.0, |b| (n - b).max(0.0));
            (c.clone(), *n, new)
        })
        .collect();
    Summary {
        host: cur.host.clone(),
        cpus: cur.cpus,
        tasks: 0,
        agent_cpu,
        agent_rss_bytes: cur.agent.rss_bytes,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(oncpu: f64, wait: f64, buckets: &[f64]) -> TaskSample {
        let bounds = [0.001, 0.004, f64::INFINITY];
        TaskSample {
            oncpu_seconds: Some(oncpu),
            runq_wait_seconds: Some(wait),
            runq_buckets: bounds
                .iter()
                .copied()
                .zip(buckets.iter().copied())
                .collect(),
            switches_voluntary: Some(oncpu * 100.0),
            switches_involuntary: Some(10.0),
            instructions: Some(oncpu * 3e9),
            cycles: Some(oncpu * 2e9),
            memory_bytes: Some(1e6),
            ..Default::default()
        }
    }

    fn snap(taken: f64, tasks: &[(&str, TaskSample)]) -> Snapshot {
        Snapshot {
            taken: Some(taken),
            tasks: tasks
                .iter()
                .map(|(id, t)| ((*id).to_owned(), t.clone()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn rates_over_the_agents_own_interval() {
        let prev = snap(
            100.0,
            &[
                ("a", task(10.0, 1.0, &[10.0, 10.0, 10.0])),
                ("b", task(5.0, 0.0, &[0.0; 3])),
            ],
        );
        let mut cur = snap(
            102.0,
            &[
                ("a", task(11.0, 1.5, &[10.0, 110.0, 110.0])),
                ("b", task(9.0, 0.0, &[0.0; 3])),
                ("new", task(1.0, 0.0, &[0.0; 3])),
            ],
        );
        cur.tasks.get_mut("a").unwrap().contenders = vec!["b".into()];
        let view = View::new(Some(&prev), &cur, Sort::default());
        let ids: Vec<&str> = view.rows.iter().map(|r| r.task_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "new"], "by CPU, rows without a rate last");
        let a = &view.rows[1];
        assert_eq!(a.cpu, Some(0.5));
        assert_eq!(a.wait_share, Some(0.5), "0.5 s waited per 1 s on CPU");
        // 100 waits, all in (1 ms, 4 ms]: the 99th is at 99/100 of that bucket.
        let Some(Quantile::Within(p99)) = a.wait_p99 else {
            panic!("{:?}", a.wait_p99)
        };
        assert!((p99 - (0.001 + 0.003 * 0.99)).abs() < 1e-12, "{p99}");
        assert_eq!(a.switches_voluntary, Some(50.0));
        assert_eq!(a.switches_involuntary, Some(0.0));
        assert_eq!(a.ipc, Some(1.5));
        assert_eq!(a.anomaly, ["b"]);
        assert_eq!(view.rows[0].cpu, Some(2.0));
        assert_eq!(view.rows[0].wait_p99, None, "no waits in the interval");
        assert_eq!(view.rows[2].cpu, None, "new since the last snapshot");
        assert_eq!(view.summary.tasks, 3);
    }

    #[test]
    fn no_rates_without_an_interval_or_after_a_reset() {
        let prev = snap(100.0, &[("a", task(10.0, 1.0, &[1.0, 1.0, 1.0]))]);
        let same = View::new(Some(&prev), &prev, Sort::default());
        assert_eq!(same.rows[0].cpu, None);
        let reset = snap(101.0, &[("a", task(1.0, 0.5, &[0.0, 0.0, 0.0]))]);
        let view = View::new(Some(&prev), &reset, Sort::default());
        assert_eq!((view.rows[0].cpu, view.rows[0].wait_share), (None, None));
        assert_eq!(
            view.rows[0].memory_bytes,
            Some(1e6),
            "gauges need no interval"
        );
    }

    #[test]
    fn quantiles_in_the_open_bucket_and_the_first() {
        let b = |c: [f64; 3]| vec![(0.001, c[0]), (0.004, c[1]), (f64::INFINITY, c[2])];
        let zero = b([0.0; 3]);
        assert_eq!(
            quantile(0.99, &zero, &b([50.0, 50.0, 100.0])),
            Some(Quantile::Above(0.004))
        );
        assert_eq!(
            quantile(0.5, &zero, &b([100.0, 100.0, 100.0])),
            Some(Quantile::Within(0.0005))
        );
        assert_eq!(quantile(0.99, &zero, &zero), None);
        assert_eq!(
            quantile(0.99, &zero, &b([1.0; 3])[..2]),
            None,
            "different bounds"
        );
    }

    #[test]
    fn sorting_by_each_key_and_reversed() {
        let prev = snap(
            0.0,
            &[
                ("a", task(0.0, 0.0, &[0.0; 3])),
                ("b", task(0.0, 0.0, &[0.0; 3])),
            ],
        );
        let mut a = task(1.0, 0.9, &[0.0; 3]);
        a.memory_bytes = Some(5e6);
        let cur = snap(1.0, &[("a", a), ("b", task(2.0, 0.1, &[0.0; 3]))]);
        let order = |key, reversed| {
            let v = View::new(Some(&prev), &cur, Sort { key, reversed });
            v.rows
                .iter()
                .map(|r| r.task_id.clone())
                .collect::<Vec<_>>()
                .join("")
        };
        assert_eq!(order(SortKey::Cpu, false), "ba");
        assert_eq!(order(SortKey::Cpu, true), "ab");
        assert_eq!(order(SortKey::Wait, false), "ab");
        assert_eq!(order(SortKey::Memory, false), "ab");
        assert_eq!(order(SortKey::Switches, false), "ba");
        assert_eq!(order(SortKey::Task, false), "ab");
        assert_eq!(order(SortKey::Task, true), "ba");
    }
}
