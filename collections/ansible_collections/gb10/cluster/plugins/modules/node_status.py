#!/usr/bin/python
"""Ansible module: what a node serves and how it is (containers, memory, uptime, twin links). Read-only."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_status
short_description: What a GB10 node serves and how it is, in one read-only call (for status.yml)
description:
  - Lists the gb10 vLLM and Ray containers (C(docker inspect) of the containers labelled
    C(gb10.serving.role) or C(gb10.ray.role)), with model, role, image, state, start time, restarts, API
    port and layout.
  - Reads MemTotal and MemAvailable, capped by the node's cgroup memory limit as C(gb10.cluster.memory_facts)
    does (a lab node is a container with a limit; a GB10 has none), and the uptime.
  - Reads each fabric twin's operstate, speed and MTU from C(/sys/class/net) and its IPv4 addresses from
    C(ip -j addr).
  - Never changes anything; supports check mode. A node without Docker reports no containers and says so.
options:
  interfaces:
    description: The fabric twins to report (the inventory's C(gb10_fabric_twins) interface names).
    type: list
    elements: str
    default: []
  docker:
    description: The docker executable; an empty string skips the containers.
    type: str
    default: docker
  sys_class_net:
    description: Where the network interfaces are listed. Tests point it at a fixture.
    type: path
    default: /sys/class/net
  proc_root:
    description: The proc file system (meminfo, uptime, own cgroup). Tests point it at a fixture.
    type: path
    default: /proc
  cgroup_root:
    description: Where the cgroup tree is mounted. Tests point it at a fixture.
    type: path
    default: /sys/fs/cgroup
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: What every node runs
  gb10.cluster.node_status:
    interfaces: "{{ gb10_fabric_twins | map(attribute='interface') }}"
  register: node_status
"""

RETURN = r"""
containers:
  description: gb10 serving and Ray containers (name, kind vllm|ray, role, model, image, image_id, state, health,
    started_at, restarts, exit_code, api_port, tensor_parallel_size, pipeline_parallel_size, max_model_len).
  returned: always
  type: list
  elements: dict
mem_total_bytes:
  description: MemTotal, capped by the cgroup limit.
  returned: always
  type: int
mem_available_bytes:
  description: MemAvailable, capped by what the cgroup limit leaves.
  returned: always
  type: int
uptime_seconds:
  description: Seconds since boot (/proc/uptime).
  returned: always
  type: float
twins:
  description: Per fabric twin, interface, present, state, speed_mbps, mtu, addresses.
  returned: always
  type: list
  elements: dict
notes:
  description: What could not be read, in words.
  returned: always
  type: list
  elements: str
"""

import json
import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils import meminfo as _mem
from ansible_collections.gb10.cluster.plugins.module_utils import node_status as _ns

LABELS = (_ns.LABEL_ROLE, _ns.LABEL_RAY_ROLE)


def _containers(module: AnsibleModule, docker: str, notes: list[str]) -> list[dict]:
    if not docker:
        return []
    path = module.get_bin_path(docker)
    if not path:
        notes.append(f"{docker} is not installed: no containers to report")
        return []
    ids: list[str] = []
    for label in LABELS:
        rc, out, err = module.run_command([path, "ps", "-aq", "--filter", f"label={label}"])
        if rc != 0:
            notes.append(f"docker ps failed: {err.strip() or out.strip()}")
            return []
        ids += [i for i in out.split() if i not in ids]
    if not ids:
        return []
    rc, out, err = module.run_command([path, "inspect", *ids])
    if rc != 0:
        notes.append(f"docker inspect failed: {err.strip()}")
        return []
    return _ns.container_rows(json.loads(out or "[]"))


def _sysfs(root: str, interfaces: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in interfaces:
        base = Path(root) / name
        if not base.exists():
            continue
        files = {}
        for f in ("operstate", "speed", "mtu"):
            try:
                files[f] = (base / f).read_text()
            except OSError:  # speed of a link that is down: EINVAL
                files[f] = ""
        out[name] = files
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "interfaces": {"type": "list", "elements": "str", "default": []},
            "docker": {"type": "str", "default": "docker"},
            "sys_class_net": {"type": "path", "default": "/sys/class/net"},
            "proc_root": {"type": "path", "default": "/proc"},
            "cgroup_root": {"type": "path", "default": "/sys/fs/cgroup"},
        },
        supports_check_mode=True,
    )
    p = module.params
    notes: list[str] = []
    containers = _containers(module, p["docker"], notes)
    info = _mem.parse_meminfo(Path(os.path.join(p["proc_root"], "meminfo")).read_text())
    cgroup = _mem.cgroup_memory(p["cgroup_root"], p["proc_root"])
    total, available = _mem.effective_memory(info.get("MemTotal", 0), info.get("MemAvailable", 0), cgroup)
    try:
        uptime = float(Path(os.path.join(p["proc_root"], "uptime")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        uptime = None
        notes.append("no uptime (/proc/uptime unreadable)")
    ip_addr: list = []
    ip = module.get_bin_path("ip")
    if ip and p["interfaces"]:
        rc, out, _ = module.run_command([ip, "-j", "addr"])
        ip_addr = json.loads(out or "[]") if rc == 0 else []
    twins = _ns.twin_rows(p["interfaces"], _sysfs(p["sys_class_net"], p["interfaces"]), ip_addr)
    module.exit_json(changed=False, containers=containers, mem_total_bytes=total, mem_available_bytes=available,
                     uptime_seconds=uptime, twins=twins, notes=notes)


if __name__ == "__main__":
    main()
