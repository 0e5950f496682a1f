#!/usr/bin/env python3
"""gb10-memory-guard: stop vLLM cleanly before the node's MemAvailable falls below the host floor.

Runs as the systemd service gb10-memory-guard (roles/memory_guard). Every GB10_GUARD_INTERVAL_S seconds
it reads the node's memory the way the serving play measures it before a launch (meminfo.py, the same
code as gb10.cluster.memory_facts: MemAvailable, capped by the tightest cgroup limit on a lab node) and,
when it is below the host floor while the vLLM container runs, stops that container with
`docker stop` (SIGTERM, then SIGKILL after the grace time), so the kernel's OOM killer or the GPU driver
never has to take the host down. With vLLM's Ray executor a worker node runs no vLLM container: its vLLM
worker lives in the Ray container, which then carries the label gb10.ray.model, and that container is the
one stopped (a Ray container without the label, as with the native executor, holds no model: left alone). The reason goes to stdout (the journal) and to
<GB10_GUARD_STATE_DIR>/stopped.json, which serve.yml reads and reports on its next run.

The planner sizes vLLM so that MemAvailable stays at or above the floor at vLLM's peak; falling under
it means something outside the plan (another process, a leak, a larger batch than planned) is eating the
host's reserve, and the floor still leaves the room to stop cleanly.

Settings (environment, /etc/gb10/memory-guard.env): GB10_GUARD_FLOOR_BYTES, GB10_GUARD_INTERVAL_S,
GB10_GUARD_CONTAINER, GB10_GUARD_RAY_CONTAINER, GB10_GUARD_STOP_TIMEOUT_S, GB10_GUARD_STATE_DIR.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import meminfo  # deployed next to this script's library folder (PYTHONPATH in the unit)

GIB = 1024**3
RUNNING = True


def gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def log(message: str) -> None:
    print(f"gb10-memory-guard: {message}", flush=True)


def available() -> tuple[int, dict]:
    facts = meminfo.memory_facts(Path("/proc/meminfo").read_text(encoding="utf-8"), None, meminfo.cgroup_memory())
    return int(facts["effective_mem_available_bytes"]), facts


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def container_state(name: str, labels: str = "gb10.serving") -> dict | None:
    """{running, model, role} of the container (its <labels>.model and <labels>.role), None when there is none."""
    fmt = f'{{{{.State.Running}}}}|{{{{index .Config.Labels "{labels}.model"}}}}|{{{{index .Config.Labels "{labels}.role"}}}}'
    try:
        result = docker("inspect", "--format", fmt, name, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    # A label the container does not carry prints as "" or "<no value>", depending on the Docker version.
    words = [w.strip() if w.strip() != "<no value>" else "" for w in (result.stdout.strip().split("|") + ["", "", ""])[:3]]
    return {"running": words[0] == "true", "model": words[1], "role": words[2]}


def holder(container: str, ray_container: str) -> tuple[str, dict] | None:
    """The container that holds the model's memory on this node: the vLLM container when it runs, else a
    running Ray container that hosts a vLLM worker (label gb10.ray.model, the Ray executor); None otherwise."""
    state = container_state(container)
    if state and state["running"]:
        return container, state
    if ray_container:
        ray = container_state(ray_container, labels="gb10.ray")
        if ray and ray["running"] and ray["model"]:
            return ray_container, ray
    return None


def write_state(state_dir: Path, record: dict) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / ".stopped.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, state_dir / "stopped.json")


def stop(signum: int, _frame: object) -> None:
    global RUNNING
    RUNNING = False
    log(f"signal {signum}: exiting")


def main() -> int:
    env = os.environ
    floor = int(env.get("GB10_GUARD_FLOOR_BYTES", str(8 * GIB)))
    interval = float(env.get("GB10_GUARD_INTERVAL_S", "1"))
    vllm_container = env.get("GB10_GUARD_CONTAINER", "gb10-vllm")
    ray_container = env.get("GB10_GUARD_RAY_CONTAINER", "gb10-ray")
    grace = int(env.get("GB10_GUARD_STOP_TIMEOUT_S", "30"))
    state_dir = Path(env.get("GB10_GUARD_STATE_DIR", "/var/lib/gb10/memory-guard"))
    threshold = floor
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    first, facts = available()
    log(
        f"watching MemAvailable every {interval:g} s (now {gib(first)}"
        f"{', capped by the cgroup limit of ' + str(facts['cgroup_path']) if facts.get('cgroup_memory_limit_bytes') else ''}); "
        f"stops {vllm_container}{' (or ' + ray_container + ' when it runs a vLLM worker)' if ray_container else ''} "
        f"when it falls below the host floor, {gib(threshold)}"
    )
    while RUNNING:
        try:
            avail, facts = available()
        except (OSError, ValueError) as exc:
            log(f"cannot read the node's memory ({exc}); retrying")
            time.sleep(interval)
            continue
        if avail < threshold:
            found = holder(vllm_container, ray_container)
            if found:
                container, state = found
                reason = (
                    f"MemAvailable {gib(avail)} fell below the host floor {gib(floor)}: stopped {container} ({state['model'] or 'unknown model'}, {state['role'] or 'unknown role'}) "
                    "before the host runs out of memory"
                )
                log(f"{reason}; docker stop --time {grace} {container}")
                started = time.monotonic()
                try:
                    result = docker("stop", "--time", str(grace), container, timeout=grace + 60)
                    rc, err = result.returncode, result.stderr.strip()
                except subprocess.TimeoutExpired:
                    rc, err = -1, "docker stop timed out"
                after, _ = available()
                record = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "host": socket.gethostname(),
                    "container": container,
                    "model": state["model"],
                    "role": state["role"],
                    "reason": reason,
                    "mem_available_bytes": avail,
                    "mem_available_after_bytes": after,
                    "threshold_bytes": threshold,
                    "floor_bytes": floor,
                    "cgroup_memory_limit_bytes": facts.get("cgroup_memory_limit_bytes"),
                    "stop_rc": rc,
                    "stop_seconds": round(time.monotonic() - started, 1),
                }
                write_state(state_dir, record)
                if rc == 0:
                    log(f"{container} stopped in {record['stop_seconds']} s; MemAvailable now {gib(after)}. "
                        "serve.yml reports it on its next run and starts the model again only when it fits.")
                else:
                    log(f"docker stop {container} failed (rc {rc}: {err}); will try again")
        time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
