"""The node memory guard (roles/memory_guard/files/gb10-memory-guard.py), run for real with a stand-in
`docker` on PATH: it stops the vLLM container once, cleanly (docker stop), only when MemAvailable falls
below the host floor, and writes the reason to the journal (stdout) and to stopped.json."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.playbooks import ROOT

SCRIPT = ROOT / "roles/memory_guard/files/gb10-memory-guard.py"
MEMINFO_DIR = ROOT / "collections/ansible_collections/gb10/cluster/plugins/module_utils"
GIB = 1 << 30

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$GUARD_TEST_DIR/docker.log"
case "$1" in
  inspect) if [ -f "$GUARD_TEST_DIR/stopped" ]; then echo "false|tiny-qwen3|api"; else echo "true|tiny-qwen3|api"; fi ;;
  stop) touch "$GUARD_TEST_DIR/stopped"; echo gb10-vllm ;;
esac
"""
# MemAvailable from a file the test writes (the real meminfo.py is used in the second test).
FAKE_MEMINFO = """
import os
def cgroup_memory():
    return {}
def memory_facts(text, smi, cgroup):
    value = int(open(os.environ["GUARD_TEST_DIR"] + "/available").read())
    return {"effective_mem_available_bytes": value, "cgroup_memory_limit_bytes": None, "cgroup_path": None}
"""


# A node with no vLLM container: only the Ray container, whose labels say whether it runs a vLLM worker
# (the Ray executor: gb10.ray.model) or holds no model (the native executor).
FAKE_DOCKER_RAY = """#!/bin/sh
echo "$*" >> "$GUARD_TEST_DIR/docker.log"
name=$(eval echo \\${$#})
case "$1 $name" in
  "inspect gb10-vllm") echo "Error: No such object: gb10-vllm" >&2; exit 1 ;;
  "inspect gb10-ray") if [ -f "$GUARD_TEST_DIR/stopped" ]; then running=false; else running=true; fi
                      echo "$running|$(cat "$GUARD_TEST_DIR/ray-labels")" ;;
  "stop gb10-ray") touch "$GUARD_TEST_DIR/stopped"; echo gb10-ray ;;
esac
"""


def _start(tmp: Path, floor: int, lib: Path, docker: str = FAKE_DOCKER) -> subprocess.Popen:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(docker)
    (bin_dir / "docker").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(lib), GUARD_TEST_DIR=str(tmp),
               GB10_GUARD_FLOOR_BYTES=str(floor), GB10_GUARD_INTERVAL_S="0.05", GB10_GUARD_STATE_DIR=str(tmp / "state"))
    return subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_the_guard_stops_vllm_once_below_the_floor(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "meminfo.py").write_text(FAKE_MEMINFO)
    (tmp_path / "available").write_text(str(2 * GIB))
    proc = _start(tmp_path, GIB, lib)
    try:
        # above the floor: it reads (docker is not even asked) and does nothing, however long it runs
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert not (tmp_path / "state" / "stopped.json").exists()
            time.sleep(0.05)
        assert not (tmp_path / "docker.log").exists()
        (tmp_path / "available").write_text(str(GIB - 100 * 2**20))
        _wait(tmp_path / "state" / "stopped.json")
        time.sleep(0.5)  # more readings below the floor: the container is stopped, nothing more to do
    finally:
        out = _finish(proc)
    record = json.loads((tmp_path / "state" / "stopped.json").read_text())
    assert record["reason"].startswith("MemAvailable 0.90 GiB fell below the host floor 1.00 GiB: stopped gb10-vllm")
    assert (record["model"], record["role"], record["stop_rc"], record["floor_bytes"]) == ("tiny-qwen3", "api", 0, GIB)
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert [c for c in calls if c.startswith("stop")] == ["stop --time 30 gb10-vllm"], calls
    assert "watching MemAvailable every 0.05 s" in out and "stops gb10-vllm (or gb10-ray when it runs a vLLM worker) when it falls below the host floor" in out
    assert "fell below the host floor 1.00 GiB" in out and "gb10-vllm stopped in" in out


def test_the_guard_reads_the_node_with_the_planners_meminfo(tmp_path: Path) -> None:
    """The real meminfo.py (what memory_facts measures): a floor above any machine's memory stops at once."""
    proc = _start(tmp_path, 1 << 50, MEMINFO_DIR)
    try:
        _wait(tmp_path / "state" / "stopped.json")
    finally:
        out = _finish(proc)
    record = json.loads((tmp_path / "state" / "stopped.json").read_text())
    assert 0 < record["mem_available_bytes"] < 1 << 50 and "fell below the host floor" in record["reason"], out


def _below_floor_with_ray(tmp_path: Path, labels: str) -> str:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "meminfo.py").write_text(FAKE_MEMINFO)
    (tmp_path / "ray-labels").write_text(labels)
    (tmp_path / "available").write_text(str(GIB - 100 * 2**20))
    proc = _start(tmp_path, GIB, lib, FAKE_DOCKER_RAY)
    try:
        deadline = time.monotonic() + 60
        while len((tmp_path / "docker.log").read_text().splitlines() if (tmp_path / "docker.log").exists() else []) < 6:
            assert time.monotonic() < deadline, "the guard did not look at the containers"
            time.sleep(0.05)
        time.sleep(0.3)
    except BaseException:
        _finish(proc)
        raise
    return _finish(proc)


def test_with_the_ray_executor_the_guard_stops_the_ray_container_that_runs_the_worker(tmp_path: Path) -> None:
    """A worker node under the Ray executor: no gb10-vllm, the vLLM worker is in gb10-ray (label gb10.ray.model)."""
    out = _below_floor_with_ray(tmp_path, "tiny-qwen3|worker")
    record = json.loads((tmp_path / "state" / "stopped.json").read_text())
    assert record["container"] == "gb10-ray"
    assert record["reason"].startswith("MemAvailable 0.90 GiB fell below the host floor 1.00 GiB: stopped gb10-ray (tiny-qwen3, worker)")
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert [c for c in calls if c.startswith("stop")] == ["stop --time 30 gb10-ray"], calls
    assert "gb10-ray stopped in" in out


def test_a_ray_container_without_a_model_is_left_alone(tmp_path: Path) -> None:
    """The native executor: the Ray container holds no model (no gb10.ray.model label); stopping it would free
    nothing, so below the floor the guard stops nothing on a node without a vLLM container."""
    out = _below_floor_with_ray(tmp_path, "<no value>|worker")
    assert not (tmp_path / "state" / "stopped.json").exists(), out
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert not [c for c in calls if c.startswith("stop")], calls
    assert any(c.startswith("inspect") and c.endswith("gb10-ray") for c in calls), calls
