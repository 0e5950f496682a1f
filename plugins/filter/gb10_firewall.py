"""Filters for the firewall role (logic in plugins/module_utils/gb10_firewall.py).

- ``cidrs | gb10_firewall_networks(variable)``: ``{ipv4: [...], ipv6: [...]}`` or ``{errors: [...]}``.
- ``hosts | gb10_firewall_members(hostvars)``: every node's own addresses, same shape.
- ``ssh_connection | gb10_firewall_lockout(host, networks, port)``: one sentence when the new rules
  would cut Ansible's own SSH session, else an empty string.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any


def _load_helpers():
    try:
        from ansible.module_utils import gb10_firewall as helpers  # type: ignore[attr-defined]

        return helpers
    except ImportError:
        pass
    name = "gb10_firewall_module_utils"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "module_utils" / "gb10_firewall.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_H = _load_helpers()


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
