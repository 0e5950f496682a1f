#!/usr/bin/python
"""Ansible module: mark the CX7 twins for the switch's RoCE class (trust DSCP, PFC, ECN, CNP), idempotently."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: roce_qos
short_description: Mark the ConnectX-7 twins for the switch's RoCE traffic class
description:
  - Sets, on each twin, what the switch role's RoCE QoS expects from the hosts - trust DSCP, PFC on the
    RoCE priority only, the RoCE DSCP mapped to that priority (C(mlnx_qos)), ECN on that priority for
    notification and reaction points, and the DSCP and 802.1p priority of congestion notification
    packets (the mlx5 driver's C(/sys/class/net/<twin>/ecn) files).
  - Reads the current state first (C(mlnx_qos -i <twin>), the sysfs files) and changes only what
    differs, so a second run reports no change. Supports check mode (reports what would change).
  - A node without the hardware (a container, or an RDMA device of the twins missing from
    C(/sys/class/infiniband)) is reported as skipped with the reason, never as passed.
  - A sysfs file the driver does not offer is noted, not failed.
options:
  interfaces:
    description: The twins' netdevs (C(gb10_fabric_twins[].interface)).
    type: list
    elements: str
    required: true
  rdma_devices:
    description: The twins' RDMA devices; all must be present for the node to count as hardware.
    type: list
    elements: str
    required: true
  dscp:
    description: DSCP of RoCE traffic (the switch role's C(switch_qos_roce_dscp), 26).
    type: int
    required: true
  priority:
    description: Priority / traffic class of RoCE traffic (the switch's C(switch_qos_roce_traffic_class), 3).
    type: int
    required: true
  cnp_dscp:
    description: DSCP of congestion notification packets (C(switch_qos_cnp_dscp), 48); omit to leave it.
    type: int
  cnp_priority:
    description: 802.1p priority of congestion notification packets (C(switch_qos_cnp_traffic_class), 6).
    type: int
  container:
    description: The facts show a container (the lab); the module then only reports the skip.
    type: bool
    default: false
  tool:
    description: The C(mlnx_qos) command (Ubuntu package mlnx-tools).
    type: str
    default: mlnx_qos
  sysfs_root:
    description: Root of the sysfs tree (tests point it at a fixture).
    type: path
    default: /sys
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Mark the twins for the switch's RoCE class
  gb10.cluster.roce_qos:
    interfaces: [enp1s0f1np1, enP2p1s0f1np1]
    rdma_devices: [rocep1s0f1, roceP2p1s0f1]
    dscp: 26
    priority: 3
    cnp_dscp: 48
    cnp_priority: 6
"""

RETURN = r"""
skipped:
  description: True when the node has no such hardware (then C(msg) says why).
  returned: when skipped
  type: bool
changes:
  description: The settings that differed, each with C(interface), C(setting), C(current), C(want), C(argv).
  returned: always
  type: list
  elements: dict
commands:
  description: Every command that sets the wanted state (what the boot script runs), one argv each.
  returned: always
  type: list
  elements: list
notes:
  description: Settings the driver does not offer on this node.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.rack import parse_mlnx_qos, qos_changes, qos_items


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _state(module: AnsibleModule, tool: str, items: list[dict]) -> tuple[dict, dict]:
    tool_state = {}
    for iface in dict.fromkeys(i["interface"] for i in items):
        rc, out, err = module.run_command([tool, "-i", iface])
        if rc != 0:
            module.fail_json(msg=f"{tool} -i {iface} failed (rc {rc}): {(err or out).strip()[:300]}")
        tool_state[iface] = parse_mlnx_qos(out)
    files = {i["path"]: _read(i["path"]) for i in items if "path" in i}
    return tool_state, files


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "interfaces": {"type": "list", "elements": "str", "required": True},
            "rdma_devices": {"type": "list", "elements": "str", "required": True},
            "dscp": {"type": "int", "required": True},
            "priority": {"type": "int", "required": True},
            "cnp_dscp": {"type": "int"},
            "cnp_priority": {"type": "int"},
            "container": {"type": "bool", "default": False},
            "tool": {"type": "str", "default": "mlnx_qos"},
            "sysfs_root": {"type": "path", "default": "/sys"},
        },
        supports_check_mode=True,
    )
    p = module.params
    roce = {"dscp": p["dscp"], "priority": p["priority"], "cnp_dscp": p["cnp_dscp"], "cnp_priority": p["cnp_priority"]}
    items = qos_items(p["interfaces"], roce, tool=p["tool"], sysfs_root=p["sysfs_root"])
    commands = [i["argv"] for i in items]
    missing = [d for d in p["rdma_devices"] if not os.path.isdir(os.path.join(p["sysfs_root"], "class/infiniband", d))]
    absent = [i for i in p["interfaces"] if not os.path.isdir(os.path.join(p["sysfs_root"], "class/net", i))]
    reasons = []
    if p["container"]:
        reasons.append("a container")
    if missing:
        reasons.append(f"no RDMA device {', '.join(missing)} in {p['sysfs_root']}/class/infiniband")
    if absent:
        reasons.append(f"no netdev {', '.join(absent)}")
    if reasons:
        module.exit_json(changed=False, skipped=True, changes=[], commands=commands, notes=[],
                         msg="hardware-only: " + "; ".join(reasons))
    tool = module.get_bin_path(p["tool"])
    if not tool:
        module.fail_json(msg=f"{p['tool']} is not installed (Ubuntu package mlnx-tools); install it "
                             "(roce_qos_packages) or set roce_qos_enabled: false.", commands=commands)
    for item in items:
        if item["argv"][0] == p["tool"]:
            item["argv"] = [tool, *item["argv"][1:]]
    changes, notes = qos_changes(items, *_state(module, tool, items))
    if changes and not module.check_mode:
        for change in changes:
            if "path" in change:
                try:
                    with open(change["path"], "w", encoding="utf-8") as handle:
                        handle.write(f"{change['want']}\n")
                except OSError as exc:
                    module.fail_json(msg=f"{change['interface']}: writing {change['want']} to {change['path']} failed: {exc}")
            else:
                rc, out, err = module.run_command(change["argv"])
                if rc != 0:
                    module.fail_json(msg=f"{change['interface']}: {' '.join(change['argv'])} failed (rc {rc}): "
                                         f"{(err or out).strip()[:300]}")
        left, _ = qos_changes(items, *_state(module, tool, items))
        if left:
            module.fail_json(msg="; ".join(f"{c['interface']}: {c['setting']} is still {c.get('current')!r} after "
                                           f"setting {c['want']!r}" for c in left), changes=changes)
    module.exit_json(changed=bool(changes), changes=changes, commands=commands, notes=notes)


if __name__ == "__main__":
    main()
