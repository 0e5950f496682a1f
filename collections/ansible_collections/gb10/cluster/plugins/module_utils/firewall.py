"""Node firewall helpers (plain Python, no Ansible): who may reach what on a GB10 node.

- ``networks()`` checks a list of CIDRs given in the inventory and splits it by address family.
- ``cluster_members()`` collects every node's fabric twin addresses (never the management address): the
  nft set that Ray, NCCL/Gloo, torch.distributed, vLLM's rendezvous and the weights relays are allowed
  from, and only on ``fabric_interfaces()``.
- ``readiness_problems()`` / ``readiness_message()``: what keeps a node from serving because site.yml
  has not converged it or it drifted (twins without addresses, firewall missing, changed or half-loaded).
- ``ssh_session()`` / ``lockout_error()`` tell, before anything is applied, whether the SSH session
  Ansible runs over would still be allowed by the new rules.
- ``parse_nmap_xml()`` reads a port scan (used by lab/outsider.py; molecule/serve/outsider.yml and
  bench/exposure/run.py compare it with what the threat model allows).
Every problem is one sentence: what is wrong, where, what to do.
"""
from __future__ import annotations

import ipaddress
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ansible_collections.gb10.cluster.plugins.module_utils import raw_output as _raw

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")
NFT_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


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
    """Every address the nodes talk to each other from: each fabric twin address (never ``ansible_host``).

    Returns ``{'ipv4': [...], 'ipv6': [...]}`` sorted; raises FirewallError naming the host and variable
    when an address is not an IP (a DNS name cannot go into an nft set) or a node has no fabric address.
    The management address is left out on purpose: a device that takes it over (a DHCP lease while the
    node is off, ARP spoofing) must not become a member (docs/threat-model.md).
    """
    errors: list[str] = []
    found: set[Address] = set()
    if not hosts:
        raise FirewallError(["The gx10 group is empty, so the firewall has no cluster members; add the nodes to it."])
    for host in hosts:
        fabric = hostvars[host].get("gb10_fabric_addresses") or {}
        if not isinstance(fabric, Mapping):
            errors.append(f"gb10_fabric_addresses of {host} must map interface names to addresses; fix hosts.yml.")
            continue
        if not fabric:
            errors.append(
                f"{host} has no gb10_fabric_addresses, so the other nodes could not reach its cluster ports "
                "(members are fabric addresses only); give each of its twins an address in hosts.yml."
            )
            continue
        pairs = ((f"gb10_fabric_addresses.{iface} of {host}", addr) for iface, addr in sorted(fabric.items()))
        found |= _parse_each(pairs, _address, errors)
    if errors:
        raise FirewallError(errors)
    return {
        "ipv4": [str(a) for a in sorted(a for a in found if a.version == 4)],
        "ipv6": [str(a) for a in sorted(a for a in found if a.version == 6)],
    }


def fabric_interfaces(host: str, hostvars: Mapping[str, Any]) -> list[str]:
    """The interfaces cluster traffic may arrive on at ``host``: the keys of its gb10_fabric_addresses."""
    fabric = hostvars[host].get("gb10_fabric_addresses") or {}
    if not isinstance(fabric, Mapping) or not fabric:
        raise FirewallError(
            [f"{host} has no gb10_fabric_addresses, so no interface may carry cluster traffic; give each of "
             "its twins an address in hosts.yml."]
        )
    bad = [str(i) for i in fabric if not NFT_IFNAME_RE.match(str(i))]
    if bad:
        raise FirewallError([f"gb10_fabric_addresses of {host} names '{bad[0]}', not an interface name; fix hosts.yml."])
    return sorted(str(i) for i in fabric)


def ssh_session(ssh_connection: str) -> dict[str, Any]:
    """``SSH_CONNECTION`` (client ip, client port, server ip, server port) as a dict; ``{}`` when empty."""
    # raw prints it through a terminal (CRLF), possibly after a login's own lines: the answer is the last line.
    parts = _raw.last_line(str(ssh_connection or "")).split()
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


# ------------------------------------------------------------------------------------------ readiness
RECORD_HEADER = "sha256 "


def _ip_addresses(ip_json: Any) -> dict[str, list[str]]:
    """``{ifname: ['addr/prefix', ...]}`` from ``ip -j addr show`` (text or parsed)."""
    links = json.loads(ip_json) if isinstance(ip_json, (str, bytes)) else ip_json
    found: dict[str, list[str]] = {}
    for link in links or []:
        name = str(link.get("ifname", ""))
        found[name] = [f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or [] if a.get("local")]
    return found


def _listing(text: str) -> str:
    return "\n".join(line.rstrip() for line in str(text or "").strip().splitlines())


def parse_load_record(text: str) -> dict[str, str]:
    """The record gb10-firewall-load writes after each load: ``sha256 <rules file hash>`` then the listing."""
    head, _, rest = str(text or "").partition("\n")
    if not head.startswith(RECORD_HEADER):
        return {}
    return {"sha256": head[len(RECORD_HEADER):].strip(), "listing": _listing(rest)}


PROBE_MARK = "@@gb10 "


def parse_ready_probe(text: str) -> dict[str, Any]:
    """The node's answers to ready.yml's one read-only probe (sections after ``@@gb10 <name>`` lines).

    Returns ``ip_json``, ``loaded`` and ``loaded_rc`` (``nft -s list table``), ``record`` and
    ``rules_sha256`` (empty when the rules file is missing).
    """
    sections: dict[str, list[str]] = {"ip": []}
    current = "ip"
    # The probe starts with its 'ip' mark: what precedes it (sudo's notices) is not the node's answer.
    for line in _raw.after_mark(str(text or ""), PROBE_MARK + "ip").splitlines():
        if line.startswith(PROBE_MARK):
            name, _, value = line[len(PROBE_MARK):].partition(" ")
            current = name
            sections[current] = [value] if value else []
            continue
        sections.setdefault(current, []).append(line)
    rc_text = " ".join(sections.get("nft-rc", [])).strip()
    rules = " ".join(sections.get("rules", [])).split()
    return {
        "ip_json": "\n".join(sections.get("ip", [])) or "[]",
        "loaded": "\n".join(sections.get("nft", [])),
        "loaded_rc": int(rc_text) if rc_text.isdigit() else 1,
        "record": "\n".join(sections.get("record", [])),
        "rules_sha256": rules[0] if rules and re.fullmatch(r"[0-9a-f]{64}", rules[0]) else "",
    }


def readiness_problems(host: str, fabric_addresses: Any, ip_json: Any, firewall: Mapping[str, Any]) -> list[str]:
    """What keeps ``host`` from serving because site.yml has not converged it or it drifted, one phrase each.

    ``fabric_addresses``: the inventory's gb10_fabric_addresses of the host; ``ip_json``: ``ip -j addr show``
    on the node. ``firewall``: ``enabled`` (firewall_enabled), ``table``, ``rules_file``, ``rules_exist``,
    ``rules_match`` (the file equals the inventory's render), ``rules_sha256`` (of the file on the node),
    ``loaded_rc`` / ``loaded`` (``nft -s list table inet <table>``), ``record`` (the load record).
    """
    problems: list[str] = []
    have = _ip_addresses(ip_json)
    fabric = fabric_addresses if isinstance(fabric_addresses, Mapping) else {}
    if not fabric:
        problems.append("the inventory gives it no gb10_fabric_addresses")
    for iface, want in sorted(fabric.items()):
        want_s = str(want).strip()
        want_ip = want_s.split("/")[0]
        if iface not in have:
            problems.append(f"fabric twin {iface} does not exist")
        elif not any(a == want_s or a.split("/")[0] == want_ip for a in have[iface]):
            problems.append(f"fabric twin {iface} lacks its address {want_s} (it has {', '.join(have[iface]) or 'none'})")
    if not bool(firewall.get("enabled", True)):
        return problems
    table = f"inet {firewall.get('table', 'gb10_firewall')}"
    rules_file = str(firewall.get("rules_file", "/etc/gb10/firewall.nft"))
    if not firewall.get("rules_exist"):
        problems.append(f"the firewall rules file {rules_file} is missing")
    elif not firewall.get("rules_match"):
        problems.append(f"the firewall rules in {rules_file} differ from what the inventory says")
    record = parse_load_record(str(firewall.get("record") or ""))
    if int(firewall.get("loaded_rc", 1)) != 0:
        problems.append(f"the firewall table {table} is not loaded")
    elif not record:
        problems.append(f"the loaded firewall table {table} was not loaded by gb10-firewall (no load record)")
    elif _listing(str(firewall.get("loaded") or "")) != record["listing"]:
        problems.append(f"the loaded firewall table {table} differs from the rules gb10-firewall loaded (changed by hand)")
    elif firewall.get("rules_exist") and record["sha256"] != str(firewall.get("rules_sha256") or ""):
        problems.append(f"the loaded firewall table {table} was not loaded from the current {rules_file} (edited by hand, or a run was interrupted)")
    return problems


def readiness_message(host: str, problems: Sequence[str], playbook: str = "site.yml") -> str:
    """One sentence: the node, what is missing, the playbook to run. ``''`` when nothing is."""
    if not problems:
        return ""
    return (
        f"{host} is not ready to serve: {'; '.join(problems)}; run {playbook} on it first "
        f"(ansible-playbook -i <inventory> {playbook} --limit {host}), then serve.yml again."
    )


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
