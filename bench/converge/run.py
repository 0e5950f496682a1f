#!/usr/bin/env python3
"""Converge benchmark: the first site.yml run on a fresh lab and the no-op re-run, on 4 and 8 nodes.

For each node count: `lab.lab down`, `lab.lab up --nodes N`, then site.yml twice through ansible-runner.
Times come from ansible-runner's event stream (playbook_on_start to playbook_on_stats), changed counts
from the final stats event, controller CPU seconds from the ansible-playbook process tree
(RUSAGE_CHILDREN around each run), and per run the tasks per host, the load average before it and the
slowest tasks (from one task's start event to the next). Results: bench/results/converge.json and
converge.md.

    sudo .venv/bin/python -m bench.converge.run [--nodes 4 8] [--keep-lab]

All lab nodes share this machine's cores, so the 8-node figure is a ceiling on the controller's
cost per host, not the real rack's scaling.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ansible_runner

ROOT = Path(__file__).resolve().parents[2]
# ansible.cfg's fact cache (fact_caching_connection), where the operator's runs keep facts between runs.
FACT_CACHE = ROOT / ".cache" / "facts"
RESULTS = ROOT / "bench" / "results"
TARGET_NOOP_RATIO = 0.30
TARGET_SCALING = 2.0
PROFILE_TOP = 15
# The plays of site.yml that only check and change nothing on any host, run every time by design: the
# inventory validation, the preflight, the fabric check (jumbo pings on every twin), the switch port
# diagnosis (the DAC that did not come up after a cold boot) and the summary. Their names are read from
# these files, so a renamed play is still counted.
CHECK_PLAYBOOKS = ("boilerplate.yml", "preflight.yml", "validate_fabric.yml", "switch_diag.yml", "summary.yml")


def lab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lab.lab", *args], cwd=ROOT, check=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_playbook(playbook: str, extravars: dict[str, object] | None = None,
                 cmdline: str | None = None) -> tuple[list[dict], float, list[str], list[dict]]:
    """One playbook of the repository on the lab inventory, through ansible-runner, with the environment the
    Makefile gives (ANSIBLE_VAULT_PASSWORD_FILE): (events, controller CPU seconds, start times, stats events).
    Exits with the first failures when it did not succeed."""
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = children_cpu()
        result = ansible_runner.run(
            private_data_dir=tmp,
            project_dir=str(ROOT),
            playbook=str(ROOT / playbook),
            inventory=str(ROOT / "inventory" / "lab"),
            extravars=extravars or {},
            cmdline=cmdline,
            # The fact cache an operator's runs share (ansible.cfg: .cache/facts), not one per runner run:
            # ansible-runner would otherwise point every run at its own empty cache, and the no-op would
            # gather facts the operator's no-op finds cached.
            fact_cache_type="ansible.cfg",
            envvars={
                "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(FACT_CACHE),
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            },
            quiet=True,
        )
        cpu = children_cpu() - cpu0
        events = list(result.events)
    starts = [e["created"] for e in events if e.get("event") == "playbook_on_start"]
    stats_events = [e for e in events if e.get("event") == "playbook_on_stats"]
    if result.status != "successful" or not starts or not stats_events:
        failed = [e["event_data"].get("res", {}).get("msg") for e in events if e.get("event") == "runner_on_failed"]
        raise SystemExit(f"bench: {playbook} did not succeed ({result.status}): {failed[:3]}")
    return events, cpu, starts, stats_events


def check_play_names() -> set[str]:
    import yaml  # noqa: PLC0415  (ansible's dependency)

    names = set()
    for book in CHECK_PLAYBOOKS:
        for play in yaml.safe_load((ROOT / "playbooks" / book).read_text()) or []:
            if isinstance(play, dict) and play.get("name") and "hosts" in play:
                names.add(str(play["name"]))
    return names


def play_profile(events: list[dict], checks: set[str]) -> list[dict[str, object]]:
    """Wall seconds per play, in order (from its start to the next play's start, or the stats), and whether it
    is one of the check plays."""
    marks = [(e["created"], e["event_data"].get("play", "")) for e in events if e.get("event") == "playbook_on_play_start"]
    ends = [e["created"] for e in events if e.get("event") == "playbook_on_stats"]
    out = []
    for i, (start, play) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else (ends[-1] if ends else start)
        seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
        out.append({"play": play, "seconds": round(seconds, 2), "check": play in checks})
    return out


def run_site() -> dict[str, object]:
    load_before = os.getloadavg()
    events, cpu, starts, stats_events = run_playbook("site.yml")
    t0 = dt.datetime.fromisoformat(starts[0])
    t1 = dt.datetime.fromisoformat(stats_events[-1]["created"])
    stats = stats_events[-1]["event_data"]
    changed = sum(stats.get("changed", {}).values())
    hosts = sorted(set(stats.get("ok", {})) | set(stats.get("skipped", {})))
    plays = play_profile(events, check_play_names())
    return {
        "seconds": round((t1 - t0).total_seconds(), 2),
        "controller_cpu_seconds": round(cpu, 2),
        "changed": changed,
        "tasks_ok": sum(stats.get("ok", {}).values()),
        # Tasks per host (ok, changed and skipped: a skipped task still costs a worker per host).
        "tasks_per_host": {h: sum(stats.get(k, {}).get(h, 0) for k in ("ok", "skipped", "failures")) for h in hosts},
        "load_average_before": load_before,
        "slowest_tasks": task_profile(events)[:PROFILE_TOP],
        "plays": plays,
        "check_plays_seconds": round(sum(float(p["seconds"]) for p in plays if p["check"]), 2),
    }


def task_profile(events: list[dict]) -> list[dict[str, object]]:
    """Per-task wall time (from one task's start to the next task's start, or the stats), slowest first."""
    marks = [(e["created"], e["event_data"].get("task", ""), e["event_data"].get("role", ""))
             for e in events if e.get("event") in ("playbook_on_task_start", "playbook_on_handler_task_start")]
    ends = [e["created"] for e in events if e.get("event") == "playbook_on_stats"]
    out = []
    for i, (start, task, role) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else (ends[-1] if ends else start)
        seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
        out.append({"task": f"{role} : {task}" if role else task, "seconds": round(seconds, 2)})
    return sorted(out, key=lambda r: -float(r["seconds"]))


def write_results(folder: Path, name: str, record: dict[str, object], lines: list[str]) -> None:
    """<folder>/<name>.json (the record) and <name>.md (the lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")


def cpu_speed_seconds(steps: int = 5_000_000, tries: int = 3) -> float:
    """CPU seconds of a fixed pure-Python loop, best of ``tries``: the VM's speed at the time of a run.

    Ansible's controller is pure Python, so its cost scales with this figure, which a wall time alone does
    not show. Seen here: the same loop at a script's top level (slower: global names) took 0.50 to 0.73 s
    in one session and 0.22 s in another; in this function it took 0.09 s in the second."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.process_time()
        total = 0
        for i in range(steps):
            total += i
        best = min(best, time.process_time() - t0)
    return round(best, 3)


def machine() -> dict[str, object]:
    mem_kib = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")))
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker": subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                                 text=True, check=False).stdout.strip(),
        "python_loop_cpu_seconds": cpu_speed_seconds(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--keep-lab", action="store_true", help="leave the last lab up")
    args = parser.parse_args()
    from importlib.metadata import version  # noqa: PLC0415  (versions for the record)

    from ansible.release import __version__ as core_version  # noqa: PLC0415

    rows = []
    for n in args.nodes:
        print(f"converge: fresh lab with {n} nodes", flush=True)
        lab("down")
        lab("up", "--nodes", str(n))
        # As `make lab-up`: the switch simulator and its vaulted credentials (site.yml's switch play).
        subprocess.run([str(ROOT / "lab" / "switch-sim.sh"), "start"], cwd=ROOT, check=True)
        lab("switch-vault")
        # Fresh nodes: no facts cached for them from an earlier lab of the same names.
        shutil.rmtree(FACT_CACHE, ignore_errors=True)
        first = run_site()
        print(f"converge: {n} nodes first run {first}", flush=True)
        noop = run_site()
        print(f"converge: {n} nodes no-op run {noop}", flush=True)
        rows.append({
            "nodes": n,
            "first": first,
            "noop": noop,
            "noop_ratio": round(noop["seconds"] / first["seconds"], 3),
            # The no-op's check plays alone, against the first run: what the 30 % target leaves (or not) for
            # every play that converges something.
            "noop_checks_ratio": round(float(noop["check_plays_seconds"]) / first["seconds"], 3),
            "noop_cpu_seconds_per_host": round(noop["controller_cpu_seconds"] / n, 2),
        })
    if not args.keep_lab:
        lab("down")
        subprocess.run([str(ROOT / "lab" / "switch-sim.sh"), "stop"], cwd=ROOT, check=False)
    by_n = {r["nodes"]: r for r in rows}
    checks = []
    for r in rows:
        checks.append({"check": f"{r['nodes']} nodes: no-op run reports changed=0", "ok": r["noop"]["changed"] == 0,
                       "value": r["noop"]["changed"]})
        checks.append({"check": f"{r['nodes']} nodes: no-op run <= {TARGET_NOOP_RATIO:.0%} of the first run",
                       "ok": r["noop_ratio"] <= TARGET_NOOP_RATIO, "value": r["noop_ratio"]})
    if 4 in by_n and 8 in by_n:
        scale = round(by_n[8]["noop"]["seconds"] / by_n[4]["noop"]["seconds"], 3)
        checks.append({"check": f"8-node no-op <= {TARGET_SCALING}x the 4-node no-op", "ok": scale <= TARGET_SCALING,
                       "value": scale})
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "ansible_core": core_version,
        "ansible": version("ansible"),
        "load_average_after": os.getloadavg(),
        "rows": rows,
        "checks": checks,
    }
    lines = [
        "# Converge benchmark (`bench/converge/run.py`)",
        "",
        f"Run {report['date']} on {report['machine']['cpus']} CPUs, {report['machine']['memory_gib']} GiB, "
        f"{report['machine']['arch']}, Docker {report['machine']['docker']}, ansible-core {core_version}; "
        f"the machine's speed: {report['machine'].get('python_loop_cpu_seconds', '-')} CPU s for a 5-million-step Python loop. "
        "All lab nodes share these cores: the 8-node numbers are a ceiling, not the rack's scaling.",
        "",
        "| nodes | first run s | first changed | no-op s | no-op changed | no-op / first | check plays of the no-op / first | controller CPU s (no-op) | CPU s per host |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['nodes']} | {r['first']['seconds']} | {r['first']['changed']} | {r['noop']['seconds']} | "
            f"{r['noop']['changed']} | {r['noop_ratio']:.0%} | {r['noop_checks_ratio']:.0%} | "
            f"{r['noop']['controller_cpu_seconds']} | "
            f"{r['noop_cpu_seconds_per_host']} |"
        )
    lines += ["", "| target | result | value |", "|---|---|---|"]
    lines += [f"| {c['check']} | {'met' if c['ok'] else 'NOT met'} | {c['value']} |" for c in checks]
    for r in rows:
        budget = round(TARGET_NOOP_RATIO * r["first"]["seconds"], 1)
        lines += ["", f"Where the no-op's time goes on {r['nodes']} nodes, play by play (check: changes nothing on any "
                  f"host and runs every time by design). The check plays alone took {r['noop']['check_plays_seconds']} s, "
                  f"{r['noop_checks_ratio']:.0%} of the first run; the {TARGET_NOOP_RATIO:.0%} target is {budget} s for "
                  "the whole no-op:", "", "| play | s | check |", "|---|---|---|"]
        lines += [f"| {p['play']} | {p['seconds']} | {'yes' if p['check'] else ''} |" for p in r["noop"]["plays"]]
    for r in rows:
        per_host = r["noop"]["tasks_per_host"]
        lines += ["", f"No-op on {r['nodes']} nodes: load average before {r['noop']['load_average_before']}, "
                  f"tasks per host {per_host}. Slowest tasks (wall s, all hosts of the task together):", "",
                  "| task | s |", "|---|---|"]
        lines += [f"| {t['task']} | {t['seconds']} |" for t in r["noop"]["slowest_tasks"]]
    write_results(RESULTS, "converge", report, lines)
    print("\n".join(lines))
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
