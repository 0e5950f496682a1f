"""The weights role's no-op path (issue 15 item 5): a staged model is proven by one module run per node.

No lab: three inventory names for this machine (ansible_connection=local), each with its own models
folder and loopback address, as in test_follow.py, with the real tools (no pacing). The first run
stages; the second runs only the check (gb10.cluster.weights_staged), copies nothing and reports
changed=0; a change on the control machine, or a file changed on a node, runs the full path again and
leaves every node with the control machine's bytes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import ansible_runner
import pytest

from tests.support.weights_nodes import NODES, ROOT, free_port, local_nodes

MODEL = "noop-tiny"
CHUNK = 1024


@pytest.fixture
def lab(tmp_path):
    src = tmp_path / "controller" / MODEL
    src.mkdir(parents=True)
    (src / "model-1.safetensors").write_bytes(bytes(range(256)) * 40)  # 10 chunks
    (src / "config.json").write_text('{"model_type": "noop"}\n')
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    nodes = local_nodes(tmp_path, 20, {
        "weights_model": MODEL, "weights_source": "controller", "weights_source_dir": str(src),
        "weights_chunk_bytes": CHUNK, "weights_port": free_port(),
        "weights_progress_interval": 0, "weights_timeout": 300}, path)
    return {**nodes, "src": src}


def _run(lab):
    runner_dir = lab["tmp"] / "runner"
    runner_dir.mkdir(exist_ok=True)
    r = ansible_runner.run(private_data_dir=str(runner_dir), project_dir=str(ROOT), playbook=str(lab["playbook"]),
                           inventory=str(lab["inventory"]), envvars=lab["env"], quiet=True, timeout=600)
    out = r.stdout.read()
    assert r.rc == 0 and r.status == "successful", out[-3000:]
    tasks = [e["event_data"]["task"] for e in r.events if e.get("event") == "playbook_on_task_start"]
    changed = sum(r.stats["changed"].values()) if r.stats else 0
    return tasks, changed, out


def _copies(lab, name):
    return [(lab["nodes"] / n / "models" / MODEL / name).read_bytes() for n in NODES]


def test_a_staged_model_costs_one_check_and_any_change_stages_again(lab):
    tasks, changed, _ = _run(lab)
    assert changed > 0 and "Weights | Copy over the fabric" in tasks
    assert _copies(lab, "model-1.safetensors") == [(lab["src"] / "model-1.safetensors").read_bytes()] * 3

    # Nothing changed: the check, no staging task, changed=0.
    tasks, changed, out = _run(lab)
    assert changed == 0, out[-3000:]
    assert tasks[1:] == ["Weights | Check the request", "Weights | Staged already? (the staging records on every node, nothing re-read)",
                         "Weights | Staged on every node, with the same manifest?", f"Weights | Stage {MODEL}", "Weights | Report"], tasks
    assert tasks[0].startswith("Validating arguments against arg spec 'main'")
    assert "(staged already: the records match, nothing re-read)" in out

    # A new file on the control machine: copied to the first node, then over the fabric to the others.
    (lab["src"] / "config.json").write_text('{"model_type": "noop", "v": 2}\n')
    tasks, changed, _ = _run(lab)
    assert changed > 0 and "Weights | Copy the folder from the control machine" in tasks
    assert _copies(lab, "config.json") == [b'{"model_type": "noop", "v": 2}\n'] * 3
    assert _run(lab)[1] == 0

    # A file damaged on a node (same size, other bytes): found by its stamp, re-sent from the first node.
    bad = lab["nodes"] / "gx10-3" / "models" / MODEL / "model-1.safetensors"
    bad.write_bytes(b"\0" * bad.stat().st_size)
    tasks, changed, _ = _run(lab)
    assert changed > 0 and "Weights | Copy over the fabric" in tasks
    assert _copies(lab, "model-1.safetensors") == [(lab["src"] / "model-1.safetensors").read_bytes()] * 3
    assert _run(lab)[1] == 0
    assert os.path.exists(lab["nodes"] / "gx10-1" / "models" / MODEL / ".gb10-stage" / "source.json")
