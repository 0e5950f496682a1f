"""Filters for inventory validation and preflight (logic in plugins/module_utils/gb10_inventory.py).

- ``groups | gb10.cluster.inventory_errors(hostvars, roles_dir)``: the sentences describing what is wrong with the inventory.
- ``values | extra_var_bool_errors``: one sentence per ``-e name=value`` that is not a boolean.
- ``nodes | preflight_silent(hostvars)``: the nodes whose preflight SSH check failed.
- ``silent | unreachable_message(timeout)``: the sentence naming the nodes that did not answer.
- ``host | switch_unreachable_message(address, port, timeout)``: the same for the switch API.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ansible_collections.gb10.cluster.plugins.module_utils import inventory as gb10_inventory
from ansible_collections.gb10.cluster.plugins.module_utils.yaml_safe import safe_load

DOCUMENTATION = r"""
name: inventory_errors
short_description: List inventory mistakes as sentences
description:
  - Takes C(groups) and C(hostvars) and returns a list of sentences, one per mistake (duplicate
    addresses, both twins in one subnet, missing fabric addresses, wrong group membership, a string
    where a role expects a boolean, ...).
options:
  _input:
    description: Ansible's C(groups).
    type: dict
    required: true
  hostvars:
    description: Ansible's C(hostvars).
    type: dict
    required: true
  roles_dir:
    description: The roles folder whose C(meta/argument_specs.yml) say which variables are booleans.
    type: path
    required: true
"""


def _role_specs(roles_dir: str) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for path in sorted(Path(roles_dir).glob("*/meta/argument_specs.yml")):
        try:
            specs[path.parent.parent.name] = safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue  # ansible-lint and the role itself report a broken spec
    return specs


def inventory_errors(groups: Any, hostvars: Any, roles_dir: Any) -> list[str]:
    hosts = set()
    for name in gb10_inventory.KNOWN_GROUPS:
        hosts.update(groups.get(name, []))
    plain = {host: hostvars[host] for host in hosts if host in hostvars}
    return gb10_inventory.validate(dict(groups), plain, boolean_vars=gb10_inventory.boolean_options(_role_specs(str(roles_dir))))


def extra_var_bool_errors(values: Any) -> list[str]:
    return gb10_inventory.extra_var_bool_errors(dict(values or {}))


def preflight_silent(nodes: Any, hostvars: Any) -> list[dict[str, Any]]:
    names = [str(n) for n in nodes or []]
    results = {n: hostvars[n].get("gb10_preflight_ssh") for n in names if n in hostvars}
    addresses = {n: hostvars[n].get("ansible_host") for n in names if n in hostvars}
    return gb10_inventory.silent_nodes(names, results, addresses)


def unreachable_message(silent: Any, timeout: Any) -> str:
    return gb10_inventory.unreachable_message([dict(item) for item in silent or []], timeout)


def switch_unreachable_message(host: Any, address: Any, port: Any, timeout: Any) -> str:
    return gb10_inventory.switch_unreachable_message(str(host), address, port, timeout)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "inventory_errors": inventory_errors,
            "extra_var_bool_errors": extra_var_bool_errors,
            "preflight_silent": preflight_silent,
            "unreachable_message": unreachable_message,
            "switch_unreachable_message": switch_unreachable_message,
        }
