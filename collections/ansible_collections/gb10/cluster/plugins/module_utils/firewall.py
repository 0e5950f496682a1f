"""Node firewall helpers (plain Python, no Ansible): who may reach what on a GB10 node.

- ``networks()`` checks a list of CIDRs given in the inventory and splits it by address family.
- ``cluster_members()`` collects every node's own addresses (management + fabric twins): the nft set
  that Ray, NCCL/Gloo, torch.distributed, vLLM's rendezvous and the weights relays are allowed from.
- ``ssh_session()`` / ``lockout_error()`` tell, before anything is applied, whether the SSH session
  Ansible runs over would still be allowed by the new rules.
- ``parse_nmap_xml()`` reads a port scan (used by lab/outsider.py; molecule/serve/outsider.yml and
  bench/exposure/run.py compare it with what the threat model allows).
Every problem is one sentence: what is wrong, where, what to do.
"""
from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


class FirewallError(ValueError):
    """The firewall input is wrong; ``errors`` holds one sentence per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = list(errors)


def _network(value: Any, where: str) -> Network:
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FirewallError(
            [f"{where} holds '{text}', which is not an address or a CIDR network; write it like 10.0.0.0/24."]
        ) from None


def _parse_each(pairs: Iterable[tuple[str, Any]], parse: Callable[[Any, str], T], errors: list[str]) -> set[T]:
    """``parse(value, where)`` of every ``(where, value)``; the sentences of those that fail go to ``errors``."""
    found: set[T] = set()
    for where, value in pairs:
        try:
            found.add(parse(value, where))
        except FirewallError as exc:
            errors.extend(exc.errors)
    return found


def networks(values: Any, variable: str) -> dict[str, list[str]]:
    """``{'ipv4': [...], 'ipv6': [...]}`` (normalised CIDRs, sorted, no duplicates) of an inventory list.

    An empty list is refused: a rule that allows nobody is written as ``firewall_enabled: false`` or as
    an explicit address, never as an empty list by accident.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise FirewallError([f"{variable} must be a list of CIDR networks, got {values!r}; write it as a YAML list."])
    items = list(values)
    if not items:
        raise FirewallError([f"{variable} is empty, so nobody could connect; list at least one CIDR network."])
    errors: list[str] = []
    found = _parse_each(((f"{variable}[{i}]", value) for i, value in enumerate(items)), _network, errors)
    if errors:
        raise FirewallError(errors)
    v4 = sorted((n for n in found if n.version == 4), key=lambda n: (int(n.network_address), n.prefixlen))
    v6 = sorted((n for n in found if n.version == 6), key=lambda n: (int(n.network_address), n.prefixlen))
    return {"ipv4": [str(n) for n in v4], "ipv6": [str(n) for n in v6]}


def _address(value: Any, where: str) -> Address:
    text = str(value).strip().split("/")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise FirewallError(
            [f"{where} is '{value}', not an IP address; the firewall allows cluster traffic by address, so give an IP."]
        ) from None


def cluster_members(hosts: Sequence[str], hostvars: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every address the nodes talk to each other from: ``ansible_host`` and each fabric twin address.

    Returns ``{'ipv4': [...], 'ipv6': [...]}`` sorted; raises FirewallError naming the host and variable
    when an address is not an IP (a DNS name cannot go into an nft set).
    """
    errors: list[str] = []
    found: set[Address] = set()
    if not hosts:
        raise FirewallError(["The gx10 group is empty, so the firewall has no cluster members; add the nodes to it."])
    for host in hosts:
        hv = hostvars[host]
        candidates: list[tuple[str, Any]] = [("ansible_host", hv.get("ansible_host") or host)]
        fabric = hv.get("gb10_fabric_addresses") or {}
        if not isinstance(fabric, Mapping):
            errors.append(f"gb10_fabric_addresses of {host} must map interface names to addresses; fix hosts.yml.")
            fabric = {}
        candidates += [(f"gb10_fabric_addresses.{iface}", addr) for iface, addr in sorted(fabric.items())]
        found |= _parse_each(((f"{var} of {host}", value) for var, value in candidates), _address, errors)
    if errors:
        raise FirewallError(errors)
    return {
        "ipv4": [str(a) for a in sorted(a for a in found if a.version == 4)],
        "ipv6": [str(a) for a in sorted(a for a in found if a.version == 6)],
    }


def ssh_session(ssh_connection: str) -> dict[str, Any]:
    """``SSH_CONNECTION`` (client ip, client port, server ip, server port) as a dict; ``{}`` when empty."""
    parts = str(ssh_connection or "").split()
    if not parts:
        return {}
    if len(parts) != 4:
        raise FirewallError([f"SSH_CONNECTION '{ssh_connection}' does not have four fields; it cannot be checked."])
    client = _address(parts[0], "the SSH client address")
    return {"client": str(client), "client_port": int(parts[1]), "server": parts[2], "server_port": int(parts[3])}


def address_in(address: str, cidrs: Iterable[str]) -> bool:
    """True when ``address`` lies inside one of ``cidrs``."""
    addr = ipaddress.ip_address(str(address).split("/")[0])
    return any(addr in ipaddress.ip_network(str(c), strict=False) for c in cidrs)


def lockout_error(host: str, ssh_connection: str, ssh_networks: Iterable[str], ssh_port: int) -> str:
    """One sentence when the new rules would cut the SSH session Ansible runs over, else ``''``."""
    session = ssh_session(ssh_connection)
    if not session:
        return ""
    allowed = list(ssh_networks)
    if not address_in(session["client"], allowed):
        return (
            f"{host}: Ansible connects from {session['client']}, which is outside firewall_ssh_networks "
            f"({', '.join(allowed)}), so the firewall would lock this session out; add that network to "
            "firewall_ssh_networks or run from inside it."
        )
    if int(session["server_port"]) != int(ssh_port):
        return (
            f"{host}: Ansible's SSH session arrives on port {session['server_port']} but the firewall would only "
            f"allow SSH on port {ssh_port}; set firewall_ssh_port (or ansible_port) to the port sshd listens on."
        )
    return ""


# ------------------------------------------------------------------------------------------ scans
def parse_nmap_xml(text: str, protocol: str = "tcp") -> dict[str, list[int]]:
    """``{address: [open ports]}`` of ``protocol`` (tcp or udp) from ``nmap -oX -``; every scanned host appears.

    A UDP port counts as open only when something answered (nmap's ``open``), not ``open|filtered``.
    """
    root = ET.fromstring(text)
    result: dict[str, list[int]] = {}
    for host in root.iter("host"):
        addr = next((a.get("addr") for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), None)
        if addr is None:
            continue
        ports = sorted(
            int(p.get("portid", "0"))
            for p in host.iter("port")
            if p.get("protocol") == protocol and (p.find("state") is not None) and p.find("state").get("state") == "open"  # type: ignore[union-attr]
        )
        result[addr] = ports
    return dict(sorted(result.items(), key=lambda kv: (ipaddress.ip_address(kv[0]).version, ipaddress.ip_address(kv[0]))))
