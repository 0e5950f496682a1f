"""Filters for the firewall role (logic in plugins/module_utils/gb10_firewall.py).

- ``cidrs | gb10_firewall_networks(variable)``: ``{ipv4: [...], ipv6: [...]}`` or ``{errors: [...]}``.
- ``hosts | gb10_firewall_members(hostvars)``: every node's own addresses, same shape.
- ``ssh_connection | gb10_firewall_lockout(host, networks, port)``: one sentence when the new rules
  would cut Ansible's own SSH session, else an empty string.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1] / "module_utils"))  # only for gb10_load
from gb10_load import helper  # noqa: E402  pylint: disable=wrong-import-position

_H = helper("gb10_firewall")


def gb10_firewall_networks(values: Any, variable: Any = "the network list") -> dict[str, Any]:
    try:
        return _H.networks(values, str(variable))
    except _H.FirewallError as exc:
        return {"errors": list(exc.errors)}


def gb10_firewall_members(hosts: Any, hostvars: Any) -> dict[str, Any]:
    try:
        return _H.cluster_members([str(h) for h in hosts], hostvars)
    except _H.FirewallError as exc:
        return {"errors": list(exc.errors)}


def gb10_firewall_lockout(ssh_connection: Any, host: Any, networks: Any, port: Any) -> str:
    try:
        return _H.lockout_error(str(host), str(ssh_connection or ""), [str(n) for n in networks], int(port))
    except _H.FirewallError as exc:
        return f"{host}: " + " ".join(exc.errors)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gb10_firewall_networks": gb10_firewall_networks,
            "gb10_firewall_members": gb10_firewall_members,
            "gb10_firewall_lockout": gb10_firewall_lockout,
        }
