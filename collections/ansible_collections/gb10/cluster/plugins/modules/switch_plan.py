#!/usr/bin/python
"""Ansible module: derive the CRS804-4DDQ configuration from the inventory (no device access)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: switch_plan
short_description: Derive the CRS804-4DDQ port map, port settings, QoS and services from the inventory
description:
  - Validates the nodes' C(gb10_switch_port) values and derives each used cage's mode
    (C(1x400G), C(2x200G) or C(4x100G)) from the nodes' link rate and the lanes they use.
  - Returns the data the switch role passes to C(community.routeros.api_modify) and friends, with
    every value already in the form RouterOS echoes, so a second run reports no change.
  - Gates RoCE QoS on the RouterOS version and returns warnings naming the version otherwise.
  - Touches no device; runs on the controller and always reports C(changed=false).
options:
  nodes:
    description: The GB10 nodes, C({name, port}) with C(port) their C(gb10_switch_port).
    type: list
    elements: dict
    required: true
  link_rate:
    description: Link rate of each node's port (V(200G) for a GB10's ConnectX-7).
    type: str
    default: 200G
  l2mtu:
    description: L2 MTU of the fabric ports (max 9570).
    type: int
    default: 9216
  mtu:
    description: L3 MTU of the fabric ports (at most O(l2mtu)).
    type: int
    default: 9000
  bridge_name:
    description: The hardware-offloaded fabric bridge.
    type: str
    default: gb10-fabric
  routeros_version:
    description: RouterOS version read from C(/system/resource), e.g. V(7.22 (stable)).
    type: str
  host:
    description: Name of the switch in the inventory, used in messages.
    type: str
    default: the switch
  qos:
    description: Whether RoCE QoS is wanted at all.
    type: bool
    default: true
  qos_min_version:
    description: Oldest RouterOS that gets the RoCE QoS configuration.
    type: str
    default: "7.23"
  qos_egress_rate_queue3:
    description: Egress rate of queue 3 on the fabric ports; V(auto) is the link rate (100G before 7.24).
    type: str
    default: auto
  qos_pfc_name:
    description: Name of the priority-flow-control entry.
    type: str
    default: pfc-tc3
  services_enabled:
    description: RouterOS services left enabled; all others are disabled.
    type: list
    elements: str
    default: [ssh, api-ssl]
  services_all:
    description: Every service the switch has.
    type: list
    elements: str
    default: [telnet, ftp, www, www-ssl, api, winbox, ssh, api-ssl]
  services_address:
    description: Networks allowed to reach the enabled services (comma separated or a list).
    type: raw
    required: true
  mgmt_address:
    description: Management address with prefix; empty derives it from O(ansible_host) in O(mgmt_subnet).
    type: str
    default: ""
  mgmt_interface:
    description: Interface of the management address.
    type: str
    default: ether1
  mgmt_subnet:
    description: The management subnet (C(gb10_mgmt_subnet)).
    type: str
    default: ""
  ansible_host:
    description: The address Ansible reaches the switch on.
    type: str
    default: ""
  scope:
    description: V(ports) derives only the port map and expectations (for the diagnosis); V(all) everything.
    type: str
    choices: [all, ports]
    default: all
  bridge_port_rows:
    description: The switch's C(/interface bridge port) rows; the management port in the fabric bridge is refused.
    type: list
    elements: dict
    default: []
  api_host:
    description: The address the API modules connect to (its interface is never disabled).
    type: str
    default: ""
  api_username:
    description: The user Ansible logs in as (never disabled or renamed).
    type: str
    default: ""
  users:
    description: The switch's C(/user) rows.
    type: list
    elements: dict
    default: []
  user_groups:
    description: The switch's C(/user group) rows.
    type: list
    elements: dict
    default: []
  default_admin:
    description: What to do with the factory user admin once another enabled user in group full exists.
    type: str
    choices: [keep, disable, rename]
    default: keep
  default_admin_new_name:
    description: The new name of admin when O(default_admin=rename).
    type: str
    default: ""
  addresses:
    description: The switch's C(/ip address) rows.
    type: list
    elements: dict
    default: []
  factory_address_remove:
    description: Remove O(factory_address) wherever it is.
    type: bool
    default: false
  factory_address:
    description: The factory default address.
    type: str
    default: 192.168.88.1/24
  disable_unused_ports:
    description: Disable every switch port no node uses (see C(ethernet_unused)).
    type: bool
    default: false
  ports_keep_enabled:
    description: Ports never disabled (besides the management port and the port of the API address).
    type: list
    elements: str
    default: []
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Derive the switch configuration
  gb10.cluster.switch_plan:
    nodes: [{name: gx10-1, port: qsfp56-dd-1-1}, {name: gx10-2, port: qsfp56-dd-2-1}]
    routeros_version: "7.25 (stable)"
    services_address: 192.168.1.0/24
  register: switch_plan

- name: Only the port map, for the diagnosis
  gb10.cluster.switch_plan:
    nodes: [{name: gx10-1, port: qsfp56-dd-1-1}]
    scope: ports
    services_address: ""
  register: switch_ports
"""

RETURN = r"""
cages:
  description: Per used cage, its mode, speed, lane-group masters and used ports.
  returned: success
  type: dict
  sample: {"1": {"mode": "2x200G", "speed": "200G-baseCR4", "masters": ["qsfp56-dd-1-1", "qsfp56-dd-1-5"],
           "used": ["qsfp56-dd-1-1"]}}
fabric_ports:
  description: The ports the nodes use, in cage/lane order.
  returned: success
  type: list
  elements: str
port_nodes:
  description: Port to node name.
  returned: success
  type: dict
expected:
  description: Per fabric port the expected speed, rate, FEC and mode (for the diagnosis).
  returned: success
  type: dict
ethernet_l2mtu:
  description: C(interface ethernet) data setting only l2mtu (applied before the MTU).
  returned: success
  type: list
  elements: dict
ethernet_link:
  description: C(interface ethernet) data for mtu, speed, auto-negotiation, fec-mode, disabled.
  returned: success
  type: list
  elements: dict
bridge:
  description: C(interface bridge) data.
  returned: success
  type: list
  elements: dict
bridge_ports:
  description: C(interface bridge port) data.
  returned: success
  type: list
  elements: dict
qos_enabled:
  description: Whether the RoCE QoS configuration applies to this RouterOS version.
  returned: success
  type: bool
qos_skip_reason:
  description: Why QoS is skipped (empty when it is not).
  returned: success
  type: str
qos_map_ip:
  description: Whether DSCP 26 must be mapped by hand (RouterOS before 7.23).
  returned: success
  type: bool
qos_settings:
  description: Whether C(qos settings) has lossless-traffic-class (7.23+).
  returned: success
  type: bool
qos_port_values:
  description: What to set on C(qos port) of each fabric port (the form sent).
  returned: success
  type: dict
qos_port_echo:
  description: The same values in the form RouterOS prints them (the form compared).
  returned: success
  type: dict
services:
  description: C(ip service) data.
  returned: success
  type: list
  elements: dict
mgmt_address:
  description: C(ip address) data (empty list when there is nothing to set).
  returned: success
  type: list
  elements: dict
ethernet_unused:
  description: C(interface ethernet) data (default-name, disabled) for the ports no node uses.
  returned: success
  type: list
  elements: dict
admin:
  description: What happens to the factory user admin (action none/disable/rename, find, values, reason).
  returned: success
  type: dict
factory_addresses:
  description: The C(/ip address) rows (id, address, interface) holding the factory address, to remove.
  returned: success
  type: list
  elements: dict
plan_warnings:
  description: The warnings also shown by Ansible.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.switch_plan import PlanError, build


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            nodes=dict(type="list", elements="dict", required=True),
            link_rate=dict(type="str", default="200G"),
            l2mtu=dict(type="int", default=9216),
            mtu=dict(type="int", default=9000),
            bridge_name=dict(type="str", default="gb10-fabric"),
            routeros_version=dict(type="str"),
            host=dict(type="str", default="the switch"),
            qos=dict(type="bool", default=True),
            qos_min_version=dict(type="str", default="7.23"),
            qos_egress_rate_queue3=dict(type="str", default="auto"),
            qos_pfc_name=dict(type="str", default="pfc-tc3"),
            services_enabled=dict(type="list", elements="str", default=["ssh", "api-ssl"]),
            services_all=dict(type="list", elements="str",
                              default=["telnet", "ftp", "www", "www-ssl", "api", "winbox", "ssh", "api-ssl"]),
            services_address=dict(type="raw", required=True),
            mgmt_address=dict(type="str", default=""),
            mgmt_interface=dict(type="str", default="ether1"),
            mgmt_subnet=dict(type="str", default=""),
            ansible_host=dict(type="str", default=""),
            scope=dict(type="str", choices=["all", "ports"], default="all"),
            bridge_port_rows=dict(type="list", elements="dict", default=[]),
            api_host=dict(type="str", default=""),
            api_username=dict(type="str", default=""),
            users=dict(type="list", elements="dict", default=[]),
            user_groups=dict(type="list", elements="dict", default=[]),
            default_admin=dict(type="str", choices=["keep", "disable", "rename"], default="keep"),
            default_admin_new_name=dict(type="str", default=""),
            addresses=dict(type="list", elements="dict", default=[]),
            factory_address_remove=dict(type="bool", default=False),
            factory_address=dict(type="str", default="192.168.88.1/24"),
            disable_unused_ports=dict(type="bool", default=False),
            ports_keep_enabled=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    try:
        result = build(dict(module.params))
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    for warning in result["warnings"]:
        module.warn(warning)
    result["plan_warnings"] = result.pop("warnings")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
