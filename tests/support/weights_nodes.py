"""Three "nodes" of the weights role on this machine, for the role's tests (no lab).

Each inventory name connects locally (ansible_connection=local) and gets its own models folder, tool
path and loopback address, so the role's real relay chain runs between them. Used by
tests/unit/roles/weights/test_follow.py and test_noop.py.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
NODES = ["gx10-1", "gx10-2", "gx10-3"]


def free_port() -> int:
    """A TCP port nothing listens on now (for the relays of one test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_nodes(tmp_path: Path, first_octet: int, role_vars: dict[str, Any], path: str) -> dict[str, Any]:
    """Inventory, playbook and environment of the weights role on NODES: node i listens on
    127.0.0.<first_octet + i>. ``role_vars`` go to the role, ``path`` is the PATH the run gets."""
    nodes_root = tmp_path / "nodes"
    hosts = {name: {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "weights_fabric_ip": f"127.0.0.{first_octet + i}",
        "weights_dir": str(nodes_root / name / "models"),
        "weights_tool": str(nodes_root / name / "lib" / "gb10_stage.py"),
    } for i, name in enumerate(NODES, start=1)}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"nodes": {"hosts": hosts}}}}))
    playbook = tmp_path / "stage.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Stage a model folder with the weights role",
        "hosts": "nodes",
        "gather_facts": False,
        "any_errors_fatal": True,
        "roles": [{"role": "weights", "vars": role_vars}],
    }]))
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ASYNC_DIR": str(tmp_path / "async"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": path,
    }
    return {"tmp": tmp_path, "nodes": nodes_root, "inventory": inventory, "playbook": playbook, "env": env}
