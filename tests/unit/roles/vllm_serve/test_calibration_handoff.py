"""Calibration from a start, used by the next plan (issue 13): roles/vllm_serve/tasks/calibration.yml,
run for real on two local "nodes" whose `docker logs gb10-vllm` is a stand-in printing the lab's CPU-build
lines for both ranks, writes <inventory>/calibration/tiny-qwen3/<digest 12>-tp2pp1.json; then
playbooks/plan.yml on that inventory says it used it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as catalog_mod
from ansible_collections.gb10.cluster.plugins.module_utils import memfit
from tests.support.catalog import lab_extra, merged_catalog, write_extra
from tests.support.playbooks import ROOT

PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
DIGEST = "sha256:" + "7" * 64
GIB = 1 << 30
# Two ranks of tiny-qwen3 in vLLM 0.32.0's formats: the KV space lines as the lab's CPU build logs them, plus
# the model-loading line the CUDA build logs (the lab's CPU build does not), so that a figure applies.
LOG = """\
(Worker_TP0 pid=91) INFO 11-29 13:40:01 [cpu_model_runner.py:120] Model loading took 0.0034 GiB memory and 0.41 seconds
(Worker_TP1 pid=92) INFO 11-29 13:40:01 [cpu_model_runner.py:120] Model loading took 0.0034 GiB memory and 0.43 seconds
(Worker_TP0 pid=91) INFO 11-29 13:40:02 [cpu_worker.py:260] Explicitly set (1.0/5.86) GiB for KV cache on node 0.
(Worker_TP1 pid=92) INFO 11-29 13:40:02 [cpu_worker.py:260] Explicitly set (1.0/5.86) GiB for KV cache on node 0.
(EngineCore pid=41) INFO 11-29 13:40:03 [kv_cache_utils.py:2327] CPU KV cache size: {tokens} tokens, Maximum concurrency for 512 tokens per request: {conc}x
"""
STAND_IN_DOCKER = """#!/bin/sh
[ "$1" = logs ] || exit 1
cat "$GB10_TEST_LOG"
"""


def test_a_starts_calibration_is_written_under_the_inventory_and_used_by_the_next_plan(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    hosts = {name: {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable}
             for name in ("gx10-1", "gx10-2")}
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gx10": {"hosts": hosts}}}}))
    write_extra(inventory, lab_extra())
    pins = {"lab-vllm-cpu": {"repository": "10.77.0.1:5000/gb10/vllm-cpu", "tag": "0.32.0", "digest": DIGEST}}
    (inventory / "group_vars" / "all" / "pins.yml").write_text(yaml.safe_dump({"gb10_image_pins": pins}))

    entry = merged_catalog()["tiny-qwen3"]
    measured = [{"host": h, "mem_total": 6 * GIB, "mem_available": 5 * GIB, "cgroup_limit": 6 * GIB} for h in hosts]
    fit = memfit.plan_memory(catalog_mod.planner_args(entry, {"nodes": 2, "measured_memory": measured}, str(ROOT)))
    log = tmp_path / "vllm.log"
    log.write_text(LOG.format(tokens=f"{fit['kv_cache_tokens']:,}", conc=f"{fit['max_concurrency']:.2f}"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STAND_IN_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    play = tmp_path / "calibrate.yml"
    play.write_text(yaml.safe_dump([{
        "name": "The calibration tasks of the serving play, after a start",
        "hosts": "localhost", "gather_facts": False, "connection": "local",
        "vars": {"ansible_python_interpreter": sys.executable,
                 "vllm_serve_launch": {"model": "tiny-qwen3", "hosts": list(hosts), "image": {"digest": DIGEST}},
                 "vllm_serve_fit": fit, "vllm_serve_measured": measured},
        "roles": [{"role": "gb10"}],
        "tasks": [{"name": "Calibration", "ansible.builtin.include_role": {"name": "vllm_serve", "tasks_from": "calibration.yml"}}],
    }], sort_keys=False))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}", "GB10_TEST_LOG": str(log)}
    run = subprocess.run([str(PLAYBOOK_BIN), "-i", str(inventory), str(play), "-e", f"gb10_repo_root={ROOT}"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    path = inventory / "calibration" / "tiny-qwen3" / "777777777777-tp2pp1.json"
    record = json.loads(path.read_text())
    assert [r["rank"] for r in record["ranks"]] == [0, 1]
    assert record["logged"]["kv_cache_tokens"] == record["settings"]["kv_cache_tokens"] == fit["kv_cache_tokens"]
    assert f"Calibration: {path} (2 rank(s) of TP 2 x PP 1" in run.stdout

    plan = subprocess.run([str(PLAYBOOK_BIN), "-i", str(inventory), "plan.yml", "-e", "model=tiny-qwen3", "-e", "nodes=2",
                           "-e", f"memory_plan_artifacts_dir={tmp_path / 'artifacts'}"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-2000:]
    assert f"Calibration: {path}: used weights" in plan.stdout, plan.stdout[-3000:]
