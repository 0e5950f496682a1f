"""Filters for the firewall role (logic in plugins/module_utils/firewall.py).

- ``cidrs | firewall_networks(variable)``: ``{ipv4: [...], ipv6: [...]}`` or ``{errors: [...]}``.
- ``hosts | firewall_members(hostvars)``: every node's fabric addresses, same shape.
- ``host | firewall_fabric_interfaces(hostvars)``: ``{interfaces: [...]}`` or ``{errors: [...]}``.
- ``host | firewall_readiness(fabric_addresses, probe, firewall)``: one sentence naming what keeps
  the node from serving and the playbook to run, or an empty string (``probe``: ready.yml's read).
- ``ssh_connection | firewall_lockout(host, networks, port)``: one sentence when the new rules
  would cut Ansible's own SSH session, else an empty string.
- ``ssh_connection | firewall_ssh_client``: the address Ansible's SSH session comes from ('' when the
  node printed no SSH_CONNECTION, or one the lock-out check refuses).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import firewall as _H


def firewall_networks(values: Any, variable: Any = "the network list") -> dict[str, Any]:
    try:
        return _H.networks(values, str(variable))
    except _H.FirewallError as exc:
        return {"errors": list(exc.errors)}


def firewall_members(hosts: Any, hostvars: Any) -> dict[str, Any]:
    try:
        return _H.cluster_members([str(h) for h in hosts], hostvars)
    except _H.FirewallError as exc:
        return {"errors": list(exc.errors)}


def firewall_fabric_interfaces(host: Any, hostvars: Any) -> dict[str, Any]:
    try:
        return {"interfaces": _H.fabric_interfaces(str(host), hostvars)}
    except _H.FirewallError as exc:
        return {"errors": list(exc.errors)}


def firewall_readiness(host: Any, fabric_addresses: Any, probe: Any, firewall: Any) -> str:
    """``probe``: the stdout of ready.yml's probe; ``firewall``: enabled, table, rules_file, expected_sha256
    (of the rules the inventory renders)."""
    seen = _H.parse_ready_probe(str(probe or ""))
    fw = dict(firewall)
    fw.update({k: seen[k] for k in ("loaded", "loaded_rc", "record", "rules_sha256")})
    fw["rules_exist"] = bool(seen["rules_sha256"])
    fw["rules_match"] = seen["rules_sha256"] == str(fw.get("expected_sha256") or "")
    return _H.readiness_message(str(host), _H.readiness_problems(str(host), fabric_addresses, seen["ip_json"], fw))


def firewall_lockout(ssh_connection: Any, host: Any, networks: Any, port: Any) -> str:
    try:
        return _H.lockout_error(str(host), str(ssh_connection or ""), [str(n) for n in networks], int(port))
    except _H.FirewallError as exc:
        return f"{host}: " + " ".join(exc.errors)


def firewall_ssh_client(ssh_connection: Any) -> str:
    try:
        return str(_H.ssh_session(str(ssh_connection or "")).get("client", ""))
    except _H.FirewallError:
        return ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "firewall_networks": firewall_networks,
            "firewall_members": firewall_members,
            "firewall_lockout": firewall_lockout,
            "firewall_fabric_interfaces": firewall_fabric_interfaces,
            "firewall_readiness": firewall_readiness,
            "firewall_ssh_client": firewall_ssh_client,
        }
