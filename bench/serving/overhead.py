#!/usr/bin/env python3
"""Serving overhead (issue 15 item 5): the wall time of `serve.yml` on a lab that already serves the
model, i.e. with the image pulled, the weights staged and vLLM healthy, so that nothing of vLLM's own
start-up is in it. What is left is serve.yml's own cost: the checks, the plan, the per-node reads and
the no-op paths of every role.

    ANSIBLE_VAULT_PASSWORD_FILE=lab/.state/serving/vault-pass \\
      .venv/bin/python -m bench.serving.overhead --model tiny-qwen3 [--runs 3] [-e @lab/.state/serving/pins/next.yml]

Each run goes through ansible-runner (times from its event stream, as bench/converge does), must report
changed=0 on every node, and is recorded with the load average before it and its slowest tasks.
Results: bench/serving/results/overhead.json and overhead.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from bench.converge.run import machine, run_playbook, task_profile, write_results

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "serving" / "results"
TARGET_SECONDS = 15.0
PROFILE_TOP = 12


def run_serve(model: str, extra_files: list[str]) -> dict[str, object]:
    load_before = os.getloadavg()
    cmdline = " ".join(f"-e {f}" for f in extra_files) or None
    events, cpu, starts, stats_events = run_playbook("serve.yml", {"model": model}, cmdline)
    stats = stats_events[-1]["event_data"]
    changed = {h: n for h, n in stats.get("changed", {}).items() if n}
    if any(h != "localhost" for h in changed):
        raise SystemExit(f"overhead: serve.yml changed something on {sorted(changed)}: the lab did not serve {model} "
                         "already (run serve.yml once first)")
    seconds = (dt.datetime.fromisoformat(stats_events[-1]["created"]) - dt.datetime.fromisoformat(starts[0])).total_seconds()
    tasks = [e for e in events if e.get("event") == "playbook_on_task_start"]
    return {
        "seconds": round(seconds, 2),
        "controller_cpu_seconds": round(cpu, 2),
        "changed": changed,
        "tasks": len(tasks),
        "load_average_before": [round(x, 2) for x in load_before],
        "slowest_tasks": task_profile(events)[:PROFILE_TOP],
    }


def markdown(record: dict) -> list[str]:
    """overhead.md's lines for a record (overhead.json)."""
    best_run = min(record["runs"], key=lambda r: r["seconds"])
    verdict = "met" if record["met"] else "NOT met"
    return [
        "# serve.yml's own overhead on the lab (`bench/serving/overhead.py`)",
        "",
        f"Run {record['when']} on {record['machine']['cpus']} CPUs, model `{record['model']}` already serving "
        "(image pulled, weights staged, vLLM healthy): every run is serve.yml with nothing to do, changed=0 on every node.",
        "",
        "| run | seconds | tasks | controller CPU s | load average before |",
        "|---|---|---|---|---|",
        *[f"| {i + 1} | {r['seconds']} | {r['tasks']} | {r['controller_cpu_seconds']} | {r['load_average_before']} |"
          for i, r in enumerate(record["runs"])],
        "",
        f"Best: {record['best_seconds']} s against the target of {record['target_seconds']} s: {verdict}.",
        "",
        "Slowest tasks of the best run:",
        "",
        "| task | seconds |",
        "|---|---|",
        *[f"| {str(t['task']).replace('|', '&#124;')} | {t['seconds']} |" for t in best_run["slowest_tasks"]],
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-e", dest="extra", action="append", default=[], help="extra vars file (@path), as serve.yml takes")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        run = run_serve(args.model, args.extra)
        print(f"overhead: run {i + 1}: {run['seconds']} s, {run['tasks']} tasks, load before {run['load_average_before']}",
              flush=True)
        runs.append(run)
    best = min(r["seconds"] for r in runs)
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": args.model,
        "extra": args.extra,
        "runs": runs,
        "best_seconds": best,
        "target_seconds": TARGET_SECONDS,
        "met": best <= TARGET_SECONDS,
    }
    write_results(RESULTS, "overhead", record, markdown(record))
    print(f"overhead: best {best} s (target {TARGET_SECONDS} s); {RESULTS / 'overhead.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
