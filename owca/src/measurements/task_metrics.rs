//! Turns one task's kernel counters into metrics.

use std::sync::{Arc, LazyLock};

use owca_common::{CgroupCounters, HIST_BUCKETS, HIST_SHIFT_NS};

use crate::metrics::{Labels, Metric, MetricType, label_set, names};

const NS: f64 = 1e9;

/// Metrics from the eBPF collector's counters of one task. `events` are the counter event
/// names in slot order; `runq` tells whether run-queue latency is measured on this kernel.
pub fn from_counters(c: &CgroupCounters, events: &[String], runq: bool) -> Vec<Metric> {
    let mut out = vec![
        Metric::counter(
            names::TASK_ONCPU,
            names::TASK_ONCPU_HELP,
            c.oncpu_ns as f64 / NS,
        ),
        Metric::counter(
            names::TASK_SWITCHES,
            names::TASK_SWITCHES_HELP,
            c.switches_voluntary as f64,
        )
        .with_labels(&SWITCH_KINDS[0]),
        Metric::counter(
            names::TASK_SWITCHES,
            names::TASK_SWITCHES_HELP,
            c.switches_involuntary as f64,
        )
        .with_labels(&SWITCH_KINDS[1]),
    ];
    if runq {
        out.extend(runq_histogram(c));
    }
    for (name, value) in events.iter().zip(c.perf) {
        out.push(Metric::counter(
            name.clone(),
            names::COUNTER_EVENT_HELP,
            value as f64,
        ));
    }
    out
}

/// The log2 buckets as a Prometheus histogram with a boundary at every other power of two
/// (4x apart, 1 µs to 4 s): half the series of the kernel's buckets, which matters at
/// thousands of tasks. Kernel bucket `b` holds waits below `2^(b + HIST_SHIFT_NS + 1)` ns;
/// the last one is open (`+Inf`).
fn runq_histogram(c: &CgroupCounters) -> Vec<Metric> {
    let sample = |suffix: &'static str, value: f64| Metric {
        suffix,
        kind: MetricType::Histogram,
        ..Metric::counter(names::TASK_RUNQ, names::TASK_RUNQ_HELP, value)
    };
    let mut out = Vec::with_capacity(HIST_BUCKETS / 2 + 3);
    let mut cumulative = 0u64;
    let mut bounds = BUCKET_BOUNDS.iter();
    for (b, n) in c.runq_hist.iter().enumerate() {
        cumulative += n;
        if (b + 1 == HIST_BUCKETS || b % 2 == 0)
            && let Some(le) = bounds.next()
        {
            out.push(sample("_bucket", cumulative as f64).with_labels(le));
        }
    }
    out.push(sample("_sum", c.runq_wait_ns as f64 / NS));
    out.push(sample("_count", c.runq_waits as f64));
    out
}

/// The `kind` label sets of the switch counters, built once for every task and second.
static SWITCH_KINDS: LazyLock<[Arc<Labels>; 2]> = LazyLock::new(|| {
    [
        label_set("kind", "voluntary"),
        label_set("kind", "involuntary"),
    ]
});

/// The `le` label sets of the buckets, the finite ones then `+Inf`, built once.
static BUCKET_BOUNDS: LazyLock<Vec<Arc<Labels>>> = LazyLock::new(|| {
    (0..HIST_BUCKETS - 1)
        .step_by(2)
        .map(|b| format!("{}", (1u64 << (b as u32 + HIST_SHIFT_NS + 1)) as f64 / NS))
        .chain(["+Inf".to_owned()])
        .map(|le| label_set("le", &le))
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_ends_with_count() {
        let mut c = CgroupCounters {
            runq_wait_ns: 3_000_000,
            runq_waits: 3,
            ..Default::default()
        };
        c.runq_hist[0] = 1;
        c.runq_hist[5] = 1;
        c.runq_hist[HIST_BUCKETS - 1] = 1;
        let m = from_counters(&c, &["cycles".to_owned()], true);
        let buckets: Vec<_> = m.iter().filter(|m| m.suffix == "_bucket").collect();
        assert_eq!(buckets.len(), HIST_BUCKETS / 2 + 1);
        assert_eq!(buckets[0].labels["le"], "0.000001024");
        assert_eq!(buckets[0].value, 1.0);
        // Kernel bucket 5 (below 32.768 µs) is counted from the boundary le=32.768 µs on.
        assert_eq!(buckets[2].labels["le"], "0.000016384");
        assert_eq!(buckets[2].value, 1.0);
        assert_eq!(buckets[3].labels["le"], "0.000065536");
        assert_eq!(buckets[3].value, 2.0);
        let last = buckets.last().unwrap();
        assert_eq!((last.labels["le"].as_str(), last.value), ("+Inf", 3.0));
        let count = m.iter().find(|m| m.suffix == "_count").unwrap();
        assert_eq!(count.value, 3.0);
        assert!(m.iter().any(|m| m.name == "cycles"));
        // No PMU events → no counter metrics; no sched_info → no histogram.
        let bare = from_counters(&c, &[], false);
        assert_eq!(bare.len(), 3);
    }
}
