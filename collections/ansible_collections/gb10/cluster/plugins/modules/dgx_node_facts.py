#!/usr/bin/python
"""Ansible module: what the dgx_node role reads from a node, in one module run."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: dgx_node_facts
short_description: The node state the dgx_node role decides on, read in one module run
description:
  - Reads, in one pass, what the dgx_node role needs before it changes anything, that is whether the NVIDIA
    driver is there (C(/dev/nvidia0), C(/proc/driver/nvidia)), the default boot target
    (C(systemctl get-default)), whether chronyd is installed and its unit's active and unit-file states,
    the node's groups, where C(dockerd) and C(nvidia-ctk) are, the bounding capabilities of the node's
    init (a lab node lacks C(CAP_SYS_RESOURCE)) and Docker's C(daemon.json).
  - One module run instead of six, since a no-op C(site.yml) pays each module run once per node.
  - Read-only; supports check mode.
options:
  daemon_json:
    description: Docker's daemon.json.
    type: path
    default: /etc/docker/daemon.json
  root:
    description: Where the node's file system is. Tests point it at a fixture tree.
    type: path
    default: /
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Read the node
  gb10.cluster.dgx_node_facts:
    daemon_json: /etc/docker/daemon.json

- name: Say whether the node has a GPU
  ansible.builtin.debug:
    msg: "{{ gb10_dgx_node.nvidia_paths | length > 0 }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    gb10_dgx_node:
      description: The node's state.
      type: dict
      contains:
        nvidia_paths:
          description: Which of C(/dev/nvidia0) and C(/proc/driver/nvidia) exist.
          type: list
          elements: str
        default_target:
          description: The default boot target; empty when systemctl failed.
          type: str
          sample: multi-user.target
        chronyd:
          description: True when C(/usr/sbin/chronyd) exists.
          type: bool
        chrony_active_state:
          description: ActiveState of the chrony unit; empty when unknown.
          type: str
        chrony_unit_file_state:
          description: UnitFileState of the chrony unit (C(enabled), C(disabled), ...); empty when unknown.
          type: str
        groups:
          description: The node's group names, sorted.
          type: list
          elements: str
        dockerd:
          description: Path of dockerd, C(-) when missing.
          type: str
        nvidia_ctk:
          description: Path of nvidia-ctk, C(-) when missing.
          type: str
        init_capbnd:
          description: The bounding capability set of PID 1; null when unreadable.
          type: int
        can_raise_limits:
          description: True when PID 1 holds CAP_SYS_RESOURCE (Docker can raise limits in containers).
          type: bool
        daemon_json_exists:
          description: True when daemon.json exists.
          type: bool
        daemon_json_b64:
          description: daemon.json's content, base64 (empty when missing).
          type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.dgx_node import dgx_facts

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "daemon_json": {"type": "path", "default": "/etc/docker/daemon.json"},
    "root": {"type": "path", "default": "/"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    systemctl = module.get_bin_path("systemctl")
    target = chrony = ""
    if systemctl:
        rc, out, _err = module.run_command([systemctl, "get-default"])
        target = out if rc == 0 else ""
        rc, out, _err = module.run_command([systemctl, "show", "-p", "ActiveState,UnitFileState", "chrony"])
        chrony = out if rc == 0 else ""
    facts = dgx_facts(module.params["root"], module.params["daemon_json"], target, chrony, which=module.get_bin_path)
    module.exit_json(changed=False, ansible_facts={"gb10_dgx_node": facts})


if __name__ == "__main__":
    main()
