"""Filter ``gb10_inventory_errors``: the sentences describing what is wrong with the inventory."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

import gb10_inventory  # noqa: E402  pylint: disable=wrong-import-position

DOCUMENTATION = r"""
name: gb10_inventory_errors
short_description: List inventory mistakes as sentences
description:
  - Takes C(groups) and C(hostvars) and returns a list of sentences, one per mistake (duplicate
    addresses, both twins in one subnet, missing fabric addresses, wrong group membership, ...).
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


def gb10_inventory_errors(groups: Any, hostvars: Any) -> list[str]:
    hosts = set()
    for name in gb10_inventory.KNOWN_GROUPS:
        hosts.update(groups.get(name, []))
    plain = {host: hostvars[host] for host in hosts if host in hostvars}
    return gb10_inventory.validate(dict(groups), plain)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gb10_inventory_errors": gb10_inventory_errors}
