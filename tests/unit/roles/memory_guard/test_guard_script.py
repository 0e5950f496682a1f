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
  inspect) if [ -f "$GUARD_TEST_DIR/stopped" ]; then echo "false tiny-qwen3 api"; else echo "true tiny-qwen3 api"; fi ;;
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


def _start(tmp: Path, floor: int, lib: Path) -> subprocess.Popen:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
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
    assert "watching MemAvailable every 0.05 s" in out and "stops gb10-vllm when it falls below the host floor" in out
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
