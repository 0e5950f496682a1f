#!/usr/bin/python
"""Ansible module: one node's fabric checks (link, address, MTU, speed, jumbo-ping matrix)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: fabric_check
short_description: Check one node's CX7 twins and jumbo-ping every peer on every twin, in one task
description:
  - For each twin, checks that the netdev exists and is up (C(link)), that the inventory address is
    on it (C(address), from C(ip -j -4 addr)) and its MTU (C(mtu), from C(/sys/class/net)).
  - With O(hardware_skip_reason) empty, also checks C(link_speed) from C(ethtool <twin>); otherwise
    that check is reported as C(skipped) with the reason, never as passed.
  - Pings every peer address on every twin with C(ping -M do -s 8972 -c 2 -W 2 -I <twin> <peer>),
    O(parallel) at a time, so 7 peers x 2 twins cost about one ping's time and one SSH round trip.
  - Never fails on a failed check; it returns the rows for the controller's report
    (M(gb10.cluster.fabric_report)). Read-only; runs the same in check mode.
options:
  node:
    description: Inventory name of this node, written in every row.
    type: str
    required: true
  twins:
    description: The twins of this node with their inventory address and the peers to ping.
    type: list
    elements: dict
    required: true
    suboptions:
      interface:
        description: Netdev of the twin (for example C(enp1s0f1np1)).
        type: str
        required: true
      address:
        description: This node's address on the twin, CIDR (C(192.168.100.11/24)).
        type: str
        required: true
      peers:
        description: The other nodes on this twin.
        type: list
        elements: dict
        default: []
        suboptions:
          node:
            description: Inventory name of the peer.
            type: str
            required: true
          address:
            description: The peer's address on the same twin (CIDR or plain).
            type: str
            required: true
  mtu:
    description: Expected MTU of every twin.
    type: int
    default: 9000
  ping_size:
    description: ICMP payload; 8972 + 28 bytes of headers = 9000.
    type: int
    default: 8972
  ping_count:
    description: Probes per peer (C(-c)); every probe must come back.
    type: int
    default: 2
  ping_timeout:
    description: Seconds to wait for each reply (C(-W)).
    type: int
    default: 2
  parallel:
    description: Pings run at the same time.
    type: int
    default: 16
  link_speed:
    description: Minimum C(ethtool) speed in Mb/s; 0 leaves the check out.
    type: int
    default: 200000
  hardware_skip_reason:
    description:
      - Why hardware-only checks cannot run on this node (for example a lab container without RDMA).
        Empty on real hardware.
    type: str
    default: ""
  sysfs_root:
    description: Root of sysfs (tests).
    type: path
    default: /sys
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Check the twins and ping every peer
  gb10.cluster.fabric_check:
    node: "{{ inventory_hostname }}"
    twins:
      - interface: enp1s0f1np1
        address: 192.168.100.11/24
        peers:
          - {node: gx10-2, address: 192.168.100.12/24}
    hardware_skip_reason: "lab container: no ConnectX-7"
  register: fabric_rows
"""

RETURN = r"""
checks:
  description: One row per check.
  returned: always
  type: list
  elements: dict
  sample:
    - node: gx10-3
      twin: enP2p1s0f1np1
      peer: null
      check: mtu
      status: failed
      detail: expected 9000, found 1500
    - node: gx10-1
      twin: enp1s0f1np1
      peer: gx10-2
      check: jumbo_ping
      status: passed
      detail: "192.168.100.12 size 8972 DF: 2/2 received, rtt avg 0.071 ms"
failed_checks:
  description: How many rows have status failed.
  returned: always
  type: int
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.cx7 import netdev_info
from ansible_collections.gb10.cluster.plugins.module_utils.fabric import parse_ip_addr_json, run_node_checks


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "node": {"type": "str", "required": True},
            "twins": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "interface": {"type": "str", "required": True},
                    "address": {"type": "str", "required": True},
                    "peers": {
                        "type": "list", "elements": "dict", "default": [],
                        "options": {
                            "node": {"type": "str", "required": True},
                            "address": {"type": "str", "required": True},
                        },
                    },
                },
            },
            "mtu": {"type": "int", "default": 9000},
            "ping_size": {"type": "int", "default": 8972},
            "ping_count": {"type": "int", "default": 2},
            "ping_timeout": {"type": "int", "default": 2},
            "parallel": {"type": "int", "default": 16},
            "link_speed": {"type": "int", "default": 200000},
            "hardware_skip_reason": {"type": "str", "default": ""},
            "sysfs_root": {"type": "path", "default": "/sys"},
        },
        supports_check_mode=True,
    )
    params = module.params

    def run(argv: list[str]) -> tuple[int, str, str]:
        # subprocess, not module.run_command: the pings run in threads, and run_command's 1 s select
        # loop can stop reading when a ping exits right after a quiet second (summary lost).
        binary = module.get_bin_path(argv[0])
        if binary is None:
            return 127, "", f"{argv[0]}: command not found"
        try:
            done = subprocess.run([binary] + argv[1:], capture_output=True, text=True,
                                  timeout=60, check=False, env={**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            return 124, "", f"{argv[0]}: timed out after 60 s"
        return done.returncode, done.stdout, done.stderr

    def read_interface(name: str) -> dict:
        info = netdev_info(params["sysfs_root"], name)
        info["addresses"] = []
        if info["exists"]:
            rc, out, _ = run(["ip", "-j", "-4", "addr", "show", "dev", name])
            info["addresses"] = parse_ip_addr_json(out) if rc == 0 else []
        return info

    rows = run_node_checks(
        params["node"], params["twins"], params["mtu"], read_interface, run,
        ping_size=params["ping_size"], ping_count=params["ping_count"],
        ping_timeout=params["ping_timeout"], parallel=params["parallel"],
        link_speed=params["link_speed"],
        hardware_skip_reason=params["hardware_skip_reason"] or None,
    )
    module.exit_json(changed=False, checks=rows,
                     failed_checks=sum(1 for row in rows if row["status"] == "failed"))


if __name__ == "__main__":
    main()
