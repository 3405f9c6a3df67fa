#!/usr/bin/env python3
"""An OWCA allocator plug-in in plain Python (standard library only).

Run by the agent, e.g. `owca -c config.yaml -0 -r ExampleAllocator="python3
examples/example_allocator.py"` with, under an `!AllocationRunner`:

    allocator: !ExampleAllocator
      best_effort: {aurora_tier: preemptible}   # labels (exact values) of best-effort tasks
      quota: 0.25                               # their cpu_quota while others are busy
      busy_cpus: 0.5                            # "busy": others used at least this many CPUs

The protocol (see README.md, "Detection and plug-ins"): one JSON object per line. The
first line is `{"config": {...}}`, the tag's YAML mapping. Then, once per iteration, the
agent writes `{"platform": {...}, "tasks": {"<id>": {"measurements", "resources",
"labels", "allocations"}}}`, where `allocations` are those the kernel holds now, and
waits (up to its timeout) for one answer line `{"allocations": {"<id>": {...}},
"anomalies": [...], "metrics": [...]}`. The agent validates the allocations as a whole
and writes only what changed, so answering the same values every second costs nothing.
Write nothing else to stdout: log to stderr. Exit when stdin closes.

This allocator caps best-effort tasks at `quota` of the machine while the other tasks
use at least `busy_cpus` CPUs (from task_oncpu_seconds_total), and lifts the cap (1.0)
when they are quiet.
"""

import json
import sys

ONCPU = "task_oncpu_seconds_total"


def log(message):
    print(f"example_allocator: {message}", file=sys.stderr, flush=True)


def is_best_effort(task, best_effort):
    labels = task.get("labels", {})
    return bool(best_effort) and all(labels.get(k) == v for k, v in best_effort.items())


def others_cpus(request, previous, best_effort):
    """CPUs used by tasks that are not best-effort since the previous request."""
    timestamp = request["platform"]["timestamp"]
    used, now = 0.0, {}
    for task_id, task in request["tasks"].items():
        if is_best_effort(task, best_effort):
            continue
        oncpu = task["measurements"].get(ONCPU)
        if oncpu is None:
            continue
        now[task_id] = (timestamp, oncpu)
        if task_id in previous:
            t0, oncpu0 = previous[task_id]
            if timestamp > t0 and oncpu >= oncpu0:
                used += (oncpu - oncpu0) / (timestamp - t0)
    return used, now


def main():
    config = json.loads(sys.stdin.readline())["config"]
    best_effort = config.get("best_effort", {})
    quota = float(config.get("quota", 0.25))
    busy_cpus = float(config.get("busy_cpus", 0.5))
    log(f"best-effort labels {best_effort}, quota {quota} when others use {busy_cpus} CPUs")
    previous = {}
    for line in sys.stdin:
        request = json.loads(line)
        used, previous = others_cpus(request, previous, best_effort)
        cap = quota if used >= busy_cpus else 1.0
        allocations = {
            task_id: {"cpu_quota": cap}
            for task_id, task in request["tasks"].items()
            if is_best_effort(task, best_effort)
        }
        metrics = [
            {
                "name": "example_allocator_others_cpus",
                "value": used,
                "help": "CPUs used by tasks that are not best-effort.",
            }
        ]
        print(json.dumps({"allocations": allocations, "metrics": metrics}), flush=True)


if __name__ == "__main__":
    main()
