"""Filters for inventory validation and preflight (logic in plugins/module_utils/gb10_inventory.py).

- ``groups | gb10_inventory_errors(hostvars)``: the sentences describing what is wrong with the inventory.
- ``values | gb10_extra_var_bool_errors``: one sentence per ``-e name=value`` that is not a boolean.
- ``nodes | gb10_preflight_silent(hostvars)``: the nodes whose preflight SSH check failed.
- ``silent | gb10_unreachable_message(timeout)``: the sentence naming the nodes that did not answer.
- ``host | gb10_switch_unreachable_message(address, port, timeout)``: the same for the switch API.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.append(str(Path(__file__).resolve().parents[1] / "module_utils"))  # only for gb10_load
from gb10_load import helper  # noqa: E402  pylint: disable=wrong-import-position

gb10_inventory = helper("gb10_inventory")

ROLES = Path(__file__).resolve().parents[2] / "roles"

DOCUMENTATION = r"""
name: gb10_inventory_errors
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
"""


def _role_specs() -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        try:
            specs[path.parent.parent.name] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue  # ansible-lint and the role itself report a broken spec
    return specs


def gb10_inventory_errors(groups: Any, hostvars: Any) -> list[str]:
    hosts = set()
    for name in gb10_inventory.KNOWN_GROUPS:
        hosts.update(groups.get(name, []))
    plain = {host: hostvars[host] for host in hosts if host in hostvars}
    return gb10_inventory.validate(dict(groups), plain, boolean_vars=gb10_inventory.boolean_options(_role_specs()))


def gb10_extra_var_bool_errors(values: Any) -> list[str]:
    return gb10_inventory.extra_var_bool_errors(dict(values or {}))


def gb10_preflight_silent(nodes: Any, hostvars: Any) -> list[dict[str, Any]]:
    names = [str(n) for n in nodes or []]
    results = {n: hostvars[n].get("gb10_preflight_ssh") for n in names if n in hostvars}
    addresses = {n: hostvars[n].get("ansible_host") for n in names if n in hostvars}
    return gb10_inventory.silent_nodes(names, results, addresses)


def gb10_unreachable_message(silent: Any, timeout: Any) -> str:
    return gb10_inventory.unreachable_message([dict(item) for item in silent or []], timeout)


def gb10_switch_unreachable_message(host: Any, address: Any, port: Any, timeout: Any) -> str:
    return gb10_inventory.switch_unreachable_message(str(host), address, port, timeout)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gb10_inventory_errors": gb10_inventory_errors,
            "gb10_extra_var_bool_errors": gb10_extra_var_bool_errors,
            "gb10_preflight_silent": gb10_preflight_silent,
            "gb10_unreachable_message": gb10_unreachable_message,
            "gb10_switch_unreachable_message": gb10_switch_unreachable_message,
        }
