#!/usr/bin/env python3
"""An OWCA detector plug-in in plain Python (standard library only).

Run by the agent, e.g. `owca -c config.yaml -0 -r ExampleDetector="python3
examples/example_detector.py"` with `detector: !ExampleDetector {wait_threshold: 0.5}`.

The protocol (see README.md, "Detection and plug-ins"): one JSON object per line.
The first line is `{"config": {...}}`, the tag's YAML mapping. Then, once per iteration,
the agent writes `{"platform": {...}, "tasks": {...}}` and waits (up to its timeout) for
one answer line `{"anomalies": [...], "metrics": [...]}`. Write nothing else to stdout:
log to stderr. Exit when stdin closes (the agent stopped).

This detector flags a task whose threads waited on a run queue for at least
`wait_threshold` seconds per second they ran (the eBPF collector's
task_runqueue_latency_seconds_sum over task_oncpu_seconds_total) and blames the task
that used the most CPU in the same interval.
"""

import json
import sys

RUNQ = "task_runqueue_latency_seconds_sum"
ONCPU = "task_oncpu_seconds_total"


def log(message):
    print(f"example_detector: {message}", file=sys.stderr, flush=True)


def interval(previous, now):
    """(CPUs used, run-queue seconds per second on CPU) between two samples, or None."""
    (t0, oncpu0, runq0), (t1, oncpu1, runq1) = previous, now
    if t1 <= t0 or oncpu1 < oncpu0 or runq1 < runq0:
        return None  # first sample, or counters restarted
    ran = oncpu1 - oncpu0
    return ran / (t1 - t0), ((runq1 - runq0) / ran if ran > 0 else 0.0)


def detect(request, previous, wait_threshold, min_cpus):
    timestamp = request["platform"]["timestamp"]
    usage = {}
    for task_id, task in request["tasks"].items():
        m = task["measurements"]
        if ONCPU not in m or RUNQ not in m:
            continue
        now = (timestamp, m[ONCPU], m[RUNQ])
        if task_id in previous:
            found = interval(previous[task_id], now)
            if found is not None:
                usage[task_id] = found
        previous[task_id] = now
    for gone in set(previous) - set(request["tasks"]):
        del previous[gone]

    anomalies = []
    for task_id, (_, wait) in sorted(usage.items()):
        if wait < wait_threshold:
            continue
        others = [(cpus, t) for t, (cpus, _) in usage.items() if t != task_id and cpus >= min_cpus]
        if not others:
            continue  # waiting for something that is not a task: nobody to blame
        _, busiest = max(others)
        anomalies.append({
            "type": "contention",
            "resource": "cpus",
            "contended_task_id": task_id,
            "contending_task_ids": [busiest],
            "metrics": [{
                "name": "example_runqueue_wait_per_cpu_second",
                "value": wait,
                "labels": {"contended_task_id": task_id},
                "type": "gauge",
                "help": "Run-queue wait of the contended task per second on CPU.",
            }],
        })
    metrics = [{
        "name": "example_detector_tasks",
        "value": len(request["tasks"]),
        "type": "gauge",
        "help": "Tasks the example plug-in saw in the last iteration.",
    }]
    return {"anomalies": anomalies, "metrics": metrics}


def main():
    first = sys.stdin.readline()
    if not first:
        return
    config = json.loads(first)["config"]
    wait_threshold = float(config.get("wait_threshold", 0.5))
    min_cpus = float(config.get("min_cpus", 0.1))
    log(f"started with wait_threshold={wait_threshold} min_cpus={min_cpus}")
    previous = {}
    for line in sys.stdin:
        answer = detect(json.loads(line), previous, wait_threshold, min_cpus)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
