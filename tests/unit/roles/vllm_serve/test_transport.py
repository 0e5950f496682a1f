"""roles/vllm_serve/tasks/transport.yml, run for real on the control machine: the vLLM log comes from a
stand-in `docker` (it prints an NCCL INFO excerpt), so the task reads it, tells the transport, passes a
RoCE run, fails a run over TCP sockets with one sentence, and reports the CPU build and one node SKIPPED."""
from __future__ import annotations

import sys
from pathlib import Path

import ansible_runner
import pytest

from tests.support.nccl_logs import IB_NATIVE, SOCKET_VIA_RAY

ROOT = Path(__file__).resolve().parents[4]

PLAYBOOK = """
- name: Transport check
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's task file
      ansible.builtin.include_role:
        name: vllm_serve
        tasks_from: transport.yml
      vars:
        vllm_serve_transport_plan:
          model: qwen3.5-397b-a17b-fp8
          platform: "{{ platform }}"
          nodes: "{{ nodes }}"
          hosts: [localhost]
          containers: [{name: gb10-vllm, host: localhost}]
"""


def _run(tmp_path: Path, log: str, platform: str = "cuda", nodes: int = 4):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "vllm.log").write_text(log)
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\n[ \"$1\" = logs ] && cat {tmp_path / 'vllm.log'}\necho \"$@\" >> {tmp_path / 'calls'}\n")
    docker.chmod(0o755)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "runner").mkdir(exist_ok=True)
    return ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"), playbook=str(tmp_path / "play.yml"),
        inventory="localhost ansible_connection=local", quiet=True,
        extravars={"platform": platform, "nodes": nodes, "ansible_become": False,
                   "ansible_python_interpreter": sys.executable},
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                 "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
                 "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"},
    )


def _messages(result) -> list[str]:
    out = []
    for e in result.events:
        res = e.get("event_data", {}).get("res") or {}
        if e.get("event") in ("runner_on_ok", "runner_on_failed") and res.get("msg"):
            out.append(str(res["msg"]))
    return out


def test_roce_passes(tmp_path):
    result = _run(tmp_path, IB_NATIVE)
    assert result.status == "successful"
    assert any(m.startswith("NCCL transport: RoCE (NET/IB over roceP2p1s0f1, rocep1s0f1) on localhost") for m in _messages(result))


def test_sockets_fail_with_one_sentence(tmp_path):
    result = _run(tmp_path, SOCKET_VIA_RAY)
    assert result.status == "failed"
    msg = _messages(result)[-1]
    assert msg.startswith("qwen3.5-397b-a17b-fp8 is serving, but NCCL ran over TCP sockets (NET/Socket) instead of "
                          "RoCE (NET/IB) on localhost (")
    assert "NET/IB : No device found." in msg and "/dev/infiniband, IPC_LOCK and memlock unlimited" in msg


def test_no_nccl_line_is_not_a_pass(tmp_path):
    result = _run(tmp_path, "INFO 11-29 Loading weights took 52.1 seconds\n")
    assert result.status == "failed"
    assert "no NCCL INFO line in the vLLM log of localhost says which transport NCCL used" in _messages(result)[-1]


@pytest.mark.parametrize(("platform", "nodes", "reason"), [
    ("cpu", 2, "the CPU build has no NCCL (the lab"),
    ("cuda", 1, "one node: NCCL does not use the network"),
])
def test_skipped_where_it_does_not_apply(tmp_path, platform, nodes, reason):
    result = _run(tmp_path, SOCKET_VIA_RAY, platform, nodes)
    assert result.status == "successful"
    assert any(m.startswith("SKIPPED NCCL transport check for qwen3.5-397b-a17b-fp8: ") and reason in m
               for m in _messages(result))
    assert not (tmp_path / "calls").exists(), "no log read"
