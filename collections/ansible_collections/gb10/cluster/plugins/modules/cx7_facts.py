#!/usr/bin/python
"""Ansible module: ConnectX-7 RoCE devices, netdevs, RoCE v2 IPv4 GID index and link state."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: cx7_facts
short_description: ConnectX-7 RoCE devices, their netdevs, RoCE v2 IPv4 GID index and link state
description:
  - Reads C(/sys/class/infiniband) and C(/sys/class/net) and maps each RoCE device to its netdev,
    the way C(ibdev2netdev) prints it (for example C(rocep1s0f1 port 1 ==> enp1s0f1np1 (Up))).
  - For each port, finds the RoCE v2 GID slots that hold an IPv4-mapped address (C(::ffff:a.b.c.d))
    from C(ports/<p>/gids/<i>) and C(ports/<p>/gid_attrs/types/<i>). The lowest one is returned as
    C(roce_v2_ipv4_gid_index). The index moves (3 -> 4) after link or netplan events; read it at
    launch time, never pin it.
  - Returns port state, operstate, MTU and speed (Mb/s; null while the link is down).
  - A node whose CX7 netdevs have not appeared yet (hot-plug, no cable) returns empty results, not a
    failure.
  - Read-only; supports check mode.
options:
  sysfs_root:
    description:
      - Root of the sysfs tree to read. Tests point it at a fixture tree.
    type: path
    default: /sys
  networkmanager:
    description:
      - Also read NetworkManager.service's active state (C(systemctl show)) and, while it is active, the
        connection each interface of O(interfaces) runs now (C(nmcli --get-values GENERAL.CONNECTION
        device show)). The cx7_fabric role reads them here to spare a module run per node.
    type: bool
    default: false
  netplan_file:
    description: A file whose existence is reported as C(netplan_file_exists) (the twins' netplan file).
    type: path
  interfaces:
    description:
      - Netdevs to report in C(gb10_cx7.interfaces) whether or not they have an RDMA device (the
        twins from C(gb10_fabric_twins)).
    type: list
    elements: str
    default: []
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Read the CX7 ports
  gb10.cluster.cx7_facts:
    interfaces: "{{ gb10_fabric_twins | map(attribute='interface') | list }}"

- name: Show the RoCE v2 IPv4 GID index of each twin
  ansible.builtin.debug:
    msg: "{{ item.key }}: GID index {{ item.value.roce_v2_ipv4_gid_index }}"
  loop: "{{ gb10_cx7.interfaces | dict2items }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    gb10_cx7:
      description: ConnectX-7 state of the node.
      type: dict
      contains:
        devices:
          description:
            - One record per RDMA port with C(rdma_device), C(port), C(netdev), C(state),
              C(phys_state), C(link_layer), C(operstate), C(mtu), C(speed),
              C(roce_v2_ipv4_gid_index), C(roce_v2_ipv4_gids) (list of C(index), C(ipv4)) and
              C(ibdev2netdev).
          type: list
          elements: dict
          sample:
            - rdma_device: rocep1s0f1
              port: 1
              netdev: enp1s0f1np1
              state: ACTIVE
              phys_state: LinkUp
              link_layer: Ethernet
              operstate: up
              mtu: 9000
              speed: 200000
              roce_v2_ipv4_gid_index: 3
              roce_v2_ipv4_gids: [{index: 3, ipv4: 192.168.100.11}]
              ibdev2netdev: rocep1s0f1 port 1 ==> enp1s0f1np1 (Up)
        by_netdev:
          description: The C(devices) records keyed by netdev.
          type: dict
        by_rdma_device:
          description: The C(devices) records keyed by RDMA device (first port).
          type: dict
        interfaces:
          description:
            - State of each requested netdev - C(name), C(exists), C(operstate), C(mtu), C(speed),
              C(rdma_device) and C(roce_v2_ipv4_gid_index) (null without an RDMA device).
          type: dict
        present:
          description: True when at least one RDMA device has a netdev.
          type: bool
        ibdev2netdev:
          description: The lines C(ibdev2netdev) would print.
          type: list
          elements: str
        nm_active_state:
          description: ActiveState of NetworkManager.service with O(networkmanager); '' otherwise or when unknown.
          type: str
        nm_connections:
          description:
            - With O(networkmanager) and NetworkManager active, the connection each existing interface of
              O(interfaces) runs now ('' for none); empty otherwise.
          type: dict
        netplan_file_exists:
          description: Whether O(netplan_file) exists; null when not given.
          type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.cx7 import discover, networkmanager_view, parse_active_state


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys"},
            "interfaces": {"type": "list", "elements": "str", "default": []},
            "networkmanager": {"type": "bool", "default": False},
            "netplan_file": {"type": "path"},
        },
        supports_check_mode=True,
    )
    facts = discover(module.params["sysfs_root"], module.params["interfaces"])
    active = ""
    connections: dict[str, str] = {}
    if module.params["networkmanager"]:
        systemctl = module.get_bin_path("systemctl")
        if systemctl:
            rc, out, _err = module.run_command([systemctl, "show", "-p", "ActiveState", "NetworkManager.service"])
            active = parse_active_state(out) if rc == 0 else ""
        nmcli = module.get_bin_path("nmcli") if active == "active" else None
        if nmcli:
            for name, info in facts["interfaces"].items():
                if info.get("exists"):
                    rc, out, _err = module.run_command([nmcli, "--get-values", "GENERAL.CONNECTION", "device", "show", name])
                    connections[name] = out.strip() if rc == 0 else ""
    netplan = module.params["netplan_file"]
    facts.update(networkmanager_view(active, connections, netplan, bool(netplan) and os.path.exists(netplan)))
    module.exit_json(changed=False, ansible_facts={"gb10_cx7": facts})


if __name__ == "__main__":
    main()
