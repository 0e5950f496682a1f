"""The weights role's progress loop on a copy that needs hundreds of rounds (issue #15, item 1).

No lab: three inventory names for this machine (ansible_connection=local), each with its own models
folder and its own loopback address (127.0.0.11-13) for the relay chain. The role's tasks run unchanged
(manifest, relays, the source's stream, the progress loop, the checks); only the source's stream is
paced by paced_python.py: each chunk waits for one more round of the progress loop, so a model of 450
chunks makes the loop go round at least 450 times, on a fast or a loaded machine alike. The recursive
loop of the first version (poll.yml including itself once per round) ended this test with a
RecursionError after 245 rounds (ansible-core 2.19.14: Task.copy -> Block.copy -> TaskInclude.copy once
per nested include), 54% into the copy.
"""
from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import ansible_runner
import pytest

from tests.support.weights_nodes import NODES, ROOT, free_port, local_nodes

PACED = Path(__file__).resolve().parent / "paced_python.py"
MODEL = "paced-tiny"
CHUNK = 1024


def _model(tmp_path: Path, chunks: int) -> Path:
    """A model folder of ``chunks`` manifest chunks (CHUNK bytes each, the last file ends on a short one)."""
    src = tmp_path / "controller" / MODEL
    src.mkdir(parents=True)
    body = bytes(range(256)) * (CHUNK // 256)
    (src / "model-1.safetensors").write_bytes(body * (chunks - 1))
    (src / "config.json").write_text('{"model_type": "paced"}\n')  # one short chunk
    return src


def _kill_leftovers(tag: str) -> None:
    """Stop what a failed run left behind (relays waiting for a stream): only processes of this test's folder."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tag in cmdline and "gb10_stage.py" in cmdline:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def chain(tmp_path):
    """Inventory, playbook and environment of a three-node chain on this machine."""
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{PACED}" "$@"\n')
    shim.chmod(0o755)
    path = f"{shim.parent}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    nodes = local_nodes(tmp_path, 10, {
        "weights_model": MODEL, "weights_source": "controller",
        "weights_source_dir": str(tmp_path / "controller" / MODEL),
        "weights_chunk_bytes": CHUNK, "weights_port": free_port(),
        "weights_progress_interval": 0, "weights_timeout": 900}, path)
    nodes["env"]["GB10_PACED_DIRS"] = ":".join(str(nodes["nodes"] / n / "models" / MODEL) for n in NODES)
    yield nodes
    _kill_leftovers(str(tmp_path))


def _run(chain, extra_env=None, cmdline=None):
    runner_dir = chain["tmp"] / "runner"
    runner_dir.mkdir(exist_ok=True)
    r = ansible_runner.run(
        private_data_dir=str(runner_dir), project_dir=str(ROOT), playbook=str(chain["playbook"]),
        inventory=str(chain["inventory"]), envvars=chain["env"] | (extra_env or {}), cmdline=cmdline,
        quiet=True, timeout=900,
    )
    return r, r.stdout.read()


def _progress_lines(out: str) -> list[str]:
    return re.findall(rf"{MODEL} -> 2 node\(s\): [^\n]*", out)


def test_a_copy_of_hundreds_of_rounds_finishes_with_one_line_per_round(chain):
    chunks = 450
    src = _model(chain["tmp"], chunks)
    r, out = _run(chain)
    tail = out[-3000:]
    assert "RecursionError" not in out, tail
    assert r.rc == 0 and r.status == "successful", tail
    lines = _progress_lines(out)
    assert len(lines) >= chunks, f"{len(lines)} progress lines for {chunks} paced chunks\n{tail}"
    assert "FAILED - RETRYING" not in out
    follow = [e["event_data"]["res"] for e in r.events if e.get("event") == "runner_on_ok"
              and e["event_data"].get("task", "").startswith("Weights | Follow the stream")]
    assert len(follow) == 1 and follow[0]["finished"] and follow[0]["rounds"] == len(lines), follow  # one line a round
    assert re.search(r"copying \d+\.\d% \(0\.00 / 0\.00 GiB\) at [0-9.]+ MB/s, [0-9.]+ s", out), lines[:5]
    assert "done 100.0%" in lines[-1], lines[-3:]
    assert re.search(rf"{MODEL}: 2 file\(s\), {(chunks - 1) * CHUNK + 24} bytes, manifest [0-9a-f]+, "
                     rf"complete on 3 node\(s\) \(copied this run: ", out), tail
    for name in NODES[1:]:
        copy = chain["nodes"] / name / "models" / MODEL
        assert (copy / "model-1.safetensors").read_bytes() == (src / "model-1.safetensors").read_bytes()
        assert (copy / "config.json").read_bytes() == (src / "config.json").read_bytes()


def test_a_source_that_fails_ends_the_loop_with_the_reason(chain):
    _model(chain["tmp"], 40)
    r, out = _run(chain, extra_env={"GB10_PACED_FAIL_AFTER": "5"})
    tail = out[-3000:]
    assert r.rc != 0, tail
    assert "RecursionError" not in out
    assert "FAILED - RETRYING" not in out
    assert re.search(rf"The copy of {MODEL} did not complete: .*the source fails on purpose", out, re.S), tail
    assert _progress_lines(out), tail  # it printed lines, then ended on its own with the reason
