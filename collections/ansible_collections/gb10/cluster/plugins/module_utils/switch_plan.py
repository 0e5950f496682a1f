"""Turn inventory facts into the CRS804-4DDQ configuration: cage modes, port settings, QoS, services.

Plain Python, no Ansible imports; used by the gb10.cluster.switch_plan module and unit-tested directly.

Port names are ``qsfp56-dd-<cage 1..4>-<lane 1..8>``. A cage runs as one of:

- ``1x400G``: master ``-1``, ``400G-baseCR8``
- ``2x200G``: masters ``-1`` (lanes 1-4) and ``-5`` (lanes 5-8), forced ``200G-baseCR4``
- ``4x100G``: masters ``-1``, ``-3``, ``-5``, ``-7``, forced ``100G-baseCR2``

The mode of a cage follows from the link rate of the nodes (``switch_fabric_link_rate``, 200G for a
GB10's ConnectX-7) and the lanes the nodes' ``gb10_switch_port`` use, so 4 nodes on ``-1`` of each
cage and 8 nodes on ``-1``/``-5`` of each cage are the same code path.

The first half is the normaliser: RouterOS echoes some values in another form than they were sent
(``100G`` comes back as ``100.0Gbps``); comparing in the echoed form keeps a second run at changed=0.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- normaliser

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bps)?\s*$")
_MULT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def rate_to_bits(value: Any) -> int:
    """'100G' / '100000M' / '100.0Gbps' / 100000000000 / '0' -> bits per second."""
    if isinstance(value, bool):
        raise ValueError(f"not a rate: {value!r}")
    if isinstance(value, int):
        return value
    m = _RATE.match(str(value))
    if not m:
        raise ValueError(f"not a rate: {value!r} (use e.g. 100G, 200G or 0)")
    number, unit = m.groups()
    return int(round(float(number) * _MULT[unit.lower()]))


def echo_rate(value: Any) -> str:
    """The form RouterOS prints a rate in: one decimal and a unit, ``0`` for no limit."""
    bits = rate_to_bits(value)
    if bits == 0:
        return "0"
    for unit, mult in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bits >= mult:
            return f"{bits / mult:.1f}{unit}bps"
    return f"{bits}bps"


def input_rate(value: Any) -> str:
    """The short form to send: 200G, 100G, 2500M, 0."""
    bits = rate_to_bits(value)
    if bits == 0:
        return "0"
    for unit, mult in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bits >= mult and bits % mult == 0:
            return f"{bits // mult}{unit}"
    return str(bits)


def echo_address_list(value: Any) -> str:
    """ip/service address: a list or comma string of networks -> '192.168.1.0/24,127.0.0.1/32'."""
    if value is None:
        return ""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        out.append(str(ipaddress.ip_network(text, strict=False)))
    return ",".join(out)


def echo_interface_address(value: str) -> str:
    """'192.168.1.2/24' stays; a bare address gets /32."""
    iface = ipaddress.ip_interface(str(value).strip())
    return f"{iface.ip}/{iface.network.prefixlen}"


def version_tuple(version: Any) -> tuple[int, ...]:
    """'7.22.1 (stable)' -> (7, 22, 1); '7.25beta3' -> (7, 25)."""
    head = str(version).strip().split(" ", 1)[0]
    parts: list[int] = []
    for piece in head.split("."):
        m = re.match(r"^(\d+)", piece)
        if not m:
            break
        parts.append(int(m.group(1)))
    if not parts:
        raise ValueError(f"not a RouterOS version: {version!r}")
    return tuple(parts)


def version_at_least(version: Any, minimum: Any) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


# ---------------------------------------------------------------- plan
PORT_RE = re.compile(r"^qsfp56-dd-([1-4])-([1-8])$")

MODES: dict[int, dict[str, Any]] = {
    400: {"mode": "1x400G", "lanes": (1,), "speed": "400G-baseCR8", "rate": "400Gbps"},
    200: {"mode": "2x200G", "lanes": (1, 5), "speed": "200G-baseCR4", "rate": "200Gbps"},
    100: {"mode": "4x100G", "lanes": (1, 3, 5, 7), "speed": "100G-baseCR2", "rate": "100Gbps"},
}
FEC = "fec91"  # 400G-baseCR8, 200G-baseCR4 and 100G-baseCR2 (PAM4) all need RS-FEC

ALL_SERVICES = ("telnet", "ftp", "www", "www-ssl", "api", "winbox", "ssh", "api-ssl")


class PlanError(ValueError):
    """An inventory mistake; the message says what, where and what to do."""


@dataclass
class Plan:
    cages: dict[int, dict[str, Any]] = field(default_factory=dict)
    fabric_ports: list[str] = field(default_factory=list)
    port_nodes: dict[str, str] = field(default_factory=dict)
    ethernet_l2mtu: list[dict[str, Any]] = field(default_factory=list)
    ethernet_link: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cages": {str(k): v for k, v in sorted(self.cages.items())},
            "fabric_ports": self.fabric_ports,
            "port_nodes": self.port_nodes,
            "ethernet_l2mtu": self.ethernet_l2mtu,
            "ethernet_link": self.ethernet_link,
            "expected": self.expected,
        }


def parse_port(node: str, port: Any, variable: str = "gb10_switch_port") -> tuple[int, int]:
    text = "" if port is None else str(port).strip()
    if not text:
        raise PlanError(
            f"{node} has no {variable}: set it in the inventory to the switch port its ConnectX-7 cable "
            f"is plugged into, e.g. qsfp56-dd-1-1.")
    m = PORT_RE.match(text)
    if not m:
        raise PlanError(
            f"{node}: {variable}={text!r} is not a CRS804-4DDQ fabric port; use qsfp56-dd-<cage 1-4>-<lane 1-8>, "
            f"e.g. qsfp56-dd-2-1.")
    return int(m.group(1)), int(m.group(2))


def link_rate_gbps(rate: Any) -> int:
    try:
        gbps = rate_to_bits(rate) // 10**9
    except ValueError as exc:
        raise PlanError(f"switch_fabric_link_rate={rate!r} is not a rate; use 400G, 200G or 100G.") from exc
    if gbps not in MODES:
        raise PlanError(f"switch_fabric_link_rate={rate!r} is not supported; use 400G, 200G or 100G.")
    return gbps


def port_map(nodes: list[dict[str, Any]], link_rate: Any = "200G") -> Plan:
    """Validate the nodes' ports and derive each used cage's mode."""
    gbps = link_rate_gbps(link_rate)
    mode = MODES[gbps]
    plan = Plan()
    seen: dict[str, str] = {}
    used: dict[int, list[int]] = {}
    for entry in nodes:
        node = str(entry.get("name"))
        cage, lane = parse_port(node, entry.get("port"))
        port = f"qsfp56-dd-{cage}-{lane}"
        if port in seen:
            raise PlanError(
                f"{seen[port]} and {node} both have gb10_switch_port={port}; every node needs its own port.")
        if lane not in mode["lanes"]:
            choices = " or ".join(f"qsfp56-dd-{cage}-{x}" for x in mode["lanes"])
            raise PlanError(
                f"{node}: gb10_switch_port={port} is lane {lane}, which is not a port when the cage runs "
                f"{mode['mode']} (switch_fabric_link_rate={input_rate(link_rate)}); use {choices}, or change "
                f"switch_fabric_link_rate.")
        seen[port] = node
        used.setdefault(cage, []).append(lane)
    for cage in sorted(used):
        masters = [f"qsfp56-dd-{cage}-{x}" for x in mode["lanes"]]
        plan.cages[cage] = {"mode": mode["mode"], "speed": mode["speed"], "masters": masters,
                            "used": [f"qsfp56-dd-{cage}-{x}" for x in sorted(used[cage])]}
    plan.fabric_ports = sorted(seen, key=_port_key)
    plan.port_nodes = {p: seen[p] for p in plan.fabric_ports}
    for port in plan.fabric_ports:
        plan.expected[port] = {"node": seen[port], "speed": mode["speed"], "rate": mode["rate"], "fec": FEC,
                               "mode": mode["mode"]}
    return plan


def _port_key(port: str) -> tuple[int, int]:
    m = PORT_RE.match(port)
    if m is None:
        raise PlanError(f"{port!r} is not a switch port name like p1 or p1-1")
    return int(m.group(1)), int(m.group(2))


def build(params: dict[str, Any]) -> dict[str, Any]:
    """Everything the role sends, in the order and form it sends it."""
    plan = port_map(params.get("nodes") or [], params.get("link_rate", "200G"))
    l2mtu = int(params.get("l2mtu", 9216))
    mtu = int(params.get("mtu", 9000))
    if not 1500 <= l2mtu <= 9570:
        raise PlanError(f"switch_port_l2mtu={l2mtu} is outside 1500..9570 (the CRS804's maximum L2 MTU is 9570).")
    if mtu > l2mtu:
        raise PlanError(f"switch_port_mtu={mtu} is larger than switch_port_l2mtu={l2mtu}; RouterOS rejects "
                        f"that, lower switch_port_mtu or raise switch_port_l2mtu.")
    for cage in plan.cages.values():
        for port in cage["masters"]:
            plan.ethernet_l2mtu.append({"default-name": port, "l2mtu": l2mtu})
            plan.ethernet_link.append({"default-name": port, "mtu": mtu, "auto-negotiation": False,
                                       "speed": cage["speed"], "fec-mode": FEC, "disabled": False})
    warnings = plan.warnings
    hardening: dict[str, Any] = {"ethernet_unused": [], "admin": {"action": "none", "find": {}, "values": {},
                                                                  "reason": "not planned"},
                                 "factory_addresses": []}
    if params.get("scope", "all") != "ports":
        management_guard(params, plan)
        hardening["ethernet_unused"] = unused_ports_plan(params, plan, link_rate_gbps(params.get("link_rate", "200G")),
                                                         warnings)
        hardening["admin"] = admin_plan(params, warnings)
        hardening["factory_addresses"] = factory_address_plan(params)
    result = plan.as_dict()
    result.update(hardening)

    bridge = str(params.get("bridge_name", "gb10-fabric"))
    result["bridge"] = [{"name": bridge, "comment": "gb10 fabric (managed by Ansible)"}]
    result["bridge_ports"] = [{"interface": p, "bridge": bridge, "hw": True, "comment": f"gb10 {n}"}
                              for p, n in plan.port_nodes.items()]

    version = params.get("routeros_version")
    result.update(_qos(params, plan, version, warnings))
    if params.get("scope", "all") == "ports":
        result["services"] = []
        result["mgmt_address"] = []
        result["warnings"] = warnings
        return result
    result["services"] = services(params.get("services_enabled", ["ssh", "api-ssl"]),
                                  params.get("services_address", ""),
                                  params.get("services_all", list(ALL_SERVICES)))
    result["mgmt_address"] = mgmt_address(params)
    result["warnings"] = warnings
    return result


def _qos(params: dict[str, Any], plan: Plan, version: Any, warnings: list[str]) -> dict[str, Any]:
    host = params.get("host", "the switch")
    out: dict[str, Any] = {"qos_enabled": False, "qos_skip_reason": "", "qos_map_ip": False,
                           "qos_settings": False, "qos_port_values": {}, "qos_port_echo": {}}
    if not params.get("qos", True):
        out["qos_skip_reason"] = "switch_qos_enabled is false"
        return out
    minimum = str(params.get("qos_min_version", "7.23"))
    if version is None or str(version).strip() == "":
        out["qos_skip_reason"] = "RouterOS version unknown"
        return out
    if not version_at_least(version, minimum):
        reason = (f"RouterOS {version} on {host} is older than {minimum}: the CRS8xx classifies ECN/PFC "
                  f"correctly only from 7.23, so RoCE QoS (DSCP 26 -> traffic class 3 with PFC and ECN, CNP on "
                  f"class 6) was NOT configured. Upgrade RouterOS to {minimum} or later and run "
                  f"playbooks/switch.yml again.")
        warnings.append(reason)
        out["qos_skip_reason"] = reason
        return out
    if not version_at_least(version, "7.25"):
        warnings.append(f"RouterOS {version} on {host}: some PFC/lossless fixes for the CRS8xx were reported "
                        f"only in 7.25 builds; if RoCE traffic sees drops under load, upgrade.")
    out["qos_enabled"] = True
    out["qos_map_ip"] = not version_at_least(version, "7.23")
    out["qos_settings"] = version_at_least(version, "7.23")
    rate = params.get("qos_egress_rate_queue3", "auto")
    if str(rate) == "auto":
        link = params.get("link_rate", "200G")
        if rate_to_bits(link) > 100 * 10**9 and not version_at_least(version, "7.24"):
            warnings.append(f"RouterOS {version} on {host} rejects egress rates above 100G ('max bit rate is "
                            f"100G'), so egress-rate-queue3 is 100G on the fabric ports; 7.24+ uses the link "
                            f"rate. Set switch_qos_egress_rate_queue3 to choose yourself.")
            rate = "100G"
        else:
            rate = link
    try:
        send = input_rate(rate)
    except ValueError as exc:
        raise PlanError(f"switch_qos_egress_rate_queue3={rate!r} is not a rate; use e.g. 100G, 200G or 0.") from exc
    pfc = str(params.get("qos_pfc_name", "pfc-tc3"))
    out["qos_port_values"] = {"pfc": pfc, "trust-l3": "keep", "egress-rate-queue3": send}
    out["qos_port_echo"] = {"pfc": pfc, "trust-l3": "keep", "egress-rate-queue3": echo_rate(rate)}
    return out


def services(enabled: list[str], address: Any, all_services: list[str]) -> list[dict[str, Any]]:
    unknown = [s for s in enabled if s not in all_services]
    if unknown:
        raise PlanError(f"switch_services_enabled names {', '.join(unknown)}, which is not a RouterOS service; "
                        f"choose from {', '.join(all_services)}.")
    if "api-ssl" not in enabled:
        raise PlanError("switch_services_enabled must keep api-ssl: the role and the diagnosis reach the switch "
                        "through it, and disabling it locks Ansible out.")
    try:
        addr = echo_address_list(address)
    except ValueError as exc:
        raise PlanError(f"switch_services_address={address!r} is not a list of networks; use e.g. "
                        f"192.168.1.0/24 (normally gb10_mgmt_subnet).") from exc
    if not addr:
        raise PlanError("switch_services_address is empty: set gb10_mgmt_subnet (or switch_services_address) so "
                        "ssh and api-ssl only answer the management network.")
    data: list[dict[str, Any]] = []
    for name in all_services:
        if name in enabled:
            data.append({"name": name, "disabled": False, "address": addr})
        else:
            data.append({"name": name, "disabled": True})
    return data


def mgmt_address(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The switch's management address: switch_mgmt_address, else ansible_host inside gb10_mgmt_subnet."""
    interface = str(params.get("mgmt_interface", "ether1"))
    explicit = str(params.get("mgmt_address") or "").strip()
    if explicit:
        try:
            return [{"address": echo_interface_address(explicit), "interface": interface}]
        except ValueError as exc:
            raise PlanError(f"switch_mgmt_address={explicit!r} is not an address with prefix; use e.g. "
                            f"192.168.1.2/24.") from exc
    host = str(params.get("ansible_host") or "").strip()
    subnet = str(params.get("mgmt_subnet") or "").strip()
    if not host or not subnet:
        return []
    try:
        ip = ipaddress.ip_address(host)
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return []
    if ip not in net:
        return []
    return [{"address": f"{ip}/{net.prefixlen}", "interface": interface}]


# ---------------------------------------------------------------- management port and lock-out guards
# The role's defaults (roles/switch/defaults/main.yml) for the settings checked below, so the inventory
# validation, which sees only what the inventory sets, checks the same values the role will use.
DEFAULTS: dict[str, Any] = {
    "switch_api_username": "ansible",
    "switch_mgmt_interface": "ether1",
    "switch_mgmt_address": "",
    "switch_bridge_name": "gb10-fabric",
    "switch_default_admin": "disable",
    "switch_default_admin_new_name": "",
    "switch_factory_address_remove": True,
    "switch_factory_address": "192.168.88.1/24",
    "switch_ports_disable_unused": True,
    "switch_ports_keep_enabled": [],
}
DEFAULT_ADMIN = "admin"
ADMIN_ACTIONS = ("keep", "disable", "rename")
QSFP_PORTS = [f"qsfp56-dd-{c}-{lane}" for c in range(1, 5) for lane in range(1, 9)]
ETHER_PORTS = ["ether1", "ether2"]


def _setting(settings: Mapping[str, Any], name: str) -> Any:
    value = settings.get(name)
    return DEFAULTS[name] if value is None else value


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes", "on", "1")


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_interface(str(value).strip()).ip
    except ValueError:
        return None


def settings_errors(host: str, settings: Mapping[str, Any], node_ports: Mapping[str, Any]) -> list[str]:
    """One sentence per setting that would lock Ansible out or bridge the management port into the fabric.

    ``settings`` are the switch's role variables (``switch_*``; unset ones take the role's defaults) plus
    ``ansible_host``; ``node_ports`` maps each GB10 node to its ``gb10_switch_port``. Nothing here needs
    the switch: the inventory validation and the role's preflight both run it before any connection.
    """
    errors: list[str] = []
    mgmt = str(_setting(settings, "switch_mgmt_interface")).strip()
    bridge = str(_setting(settings, "switch_bridge_name")).strip()
    # -------- the management port never joins the fabric bridge
    if not mgmt:
        errors.append(f"{host}: switch_mgmt_interface is empty: name the switch's management port, e.g. ether1.")
    elif mgmt == bridge:
        errors.append(
            f"{host}: switch_mgmt_interface is {mgmt}, the fabric bridge (switch_bridge_name), and the management "
            "port never joins the fabric: set switch_mgmt_interface to the management port (ether1).")
    for node, port in node_ports.items():
        if mgmt and isinstance(port, str) and port.strip() == mgmt:
            errors.append(
                f"{node}: gb10_switch_port is {mgmt}, the switch's management port (switch_mgmt_interface on {host}), "
                f"which never joins the fabric bridge {bridge}: give {node} the QSFP56-DD port its ConnectX-7 cable is "
                "plugged into, e.g. qsfp56-dd-1-1.")
    keep = settings.get("switch_ports_keep_enabled")
    if keep is not None and (not isinstance(keep, list) or not all(isinstance(p, str) for p in keep)):
        errors.append(
            f"{host}: switch_ports_keep_enabled is {keep!r}; give a list of port names, e.g. [ether2].")
    # -------- the default admin user
    action = str(_setting(settings, "switch_default_admin")).strip()
    user = str(_setting(settings, "switch_api_username")).strip()
    new_name = str(_setting(settings, "switch_default_admin_new_name") or "").strip()
    if action not in ADMIN_ACTIONS:
        errors.append(f"{host}: switch_default_admin is {action!r}; use keep, disable or rename.")
    elif action != "keep":
        if user == DEFAULT_ADMIN:
            errors.append(
                f"{host}: switch_default_admin is {action} but Ansible logs in as {DEFAULT_ADMIN} (switch_api_username), "
                "so the run would lock itself out: create another user in group full on the switch (/user add "
                "name=ansible group=full password=...), put it in switch_api_username and vault_switch_password, or "
                "set switch_default_admin: keep.")
        if action == "rename":
            if not new_name or new_name == DEFAULT_ADMIN:
                errors.append(
                    f"{host}: switch_default_admin is rename but switch_default_admin_new_name is "
                    f"{new_name or 'empty'}: give the new name of the {DEFAULT_ADMIN} user.")
            elif new_name == user:
                errors.append(
                    f"{host}: switch_default_admin_new_name is {new_name}, the user Ansible logs in as "
                    "(switch_api_username): choose another name.")
    # -------- the factory address
    if _flag(_setting(settings, "switch_factory_address_remove")):
        factory = str(_setting(settings, "switch_factory_address")).strip()
        factory_ip = _ip(factory) if "/" in factory else None
        if factory_ip is None:
            errors.append(
                f"{host}: switch_factory_address is {factory!r}, not an address with prefix like 192.168.88.1/24.")
        else:
            api_host = settings.get("switch_api_host") or settings.get("ansible_host")
            if api_host is not None and _ip(api_host) == factory_ip:
                errors.append(
                    f"{host}: Ansible reaches the switch at {factory_ip}, the factory address that "
                    "switch_factory_address_remove takes away, so the run would lock itself out: run once with "
                    "switch_factory_address_remove: false so the switch gets its management address "
                    "(switch_mgmt_address), then point ansible_host at that address.")
            mgmt_address = settings.get("switch_mgmt_address")
            if mgmt_address and _ip(mgmt_address) == factory_ip:
                errors.append(
                    f"{host}: switch_mgmt_address {mgmt_address} is the factory address that "
                    "switch_factory_address_remove takes away: choose another management address, or set "
                    "switch_factory_address_remove: false.")
    return errors


def _is_full(user: Mapping[str, Any], groups: Mapping[str, str]) -> bool:
    group = str(user.get("group", ""))
    if group == "full":
        return True
    policies = {p.strip() for p in str(groups.get(group, "")).split(",")}
    return {"policy", "write", "api"} <= policies


def admin_plan(params: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """What to do with the factory user admin, from the /user rows read before any change.

    Disabled or renamed only while another enabled user with full rights exists: the API user itself,
    which must be in group full (or a group with the policy, write and api policies). Otherwise it is
    kept, with a warning.
    """
    host = params.get("host", "the switch")
    action = str(params.get("default_admin", "keep"))
    out: dict[str, Any] = {"action": "none", "find": {"name": DEFAULT_ADMIN}, "values": {}, "reason": ""}
    if action == "keep":
        out["reason"] = "switch_default_admin is keep"
        return out
    users = [u for u in params.get("users") or [] if isinstance(u, Mapping)]
    groups = {str(g.get("name")): str(g.get("policy", "")) for g in params.get("user_groups") or []
              if isinstance(g, Mapping)}
    admin = next((u for u in users if u.get("name") == DEFAULT_ADMIN), None)
    if admin is None:
        out["reason"] = f"there is no user {DEFAULT_ADMIN}"
        return out
    api_user = str(params.get("api_username", ""))
    me = next((u for u in users if u.get("name") == api_user), None)
    if api_user == DEFAULT_ADMIN or me is None or me is admin:
        raise PlanError(f"{host}: switch_default_admin is {action} but Ansible logs in as {api_user or '?'}: "
                        "log in with another user in group full (switch_api_username) or set switch_default_admin: keep.")
    if not _is_full(me, groups) or _flag(me.get("disabled", False)):
        reason = (f"the {DEFAULT_ADMIN} user of {host} was kept: Ansible's user {api_user} is in group "
                  f"{me.get('group', '?')}, and {action == 'rename' and 'renaming' or 'disabling'} {DEFAULT_ADMIN} is "
                  "only done once another enabled user in group full exists; put "
                  f"{api_user} in group full (/user set {api_user} group=full) or set switch_default_admin: keep.")
        warnings.append(reason)
        out["reason"] = reason
        return out
    if action == "disable":
        out.update(action="disable", values={"disabled": True})
    else:
        new_name = str(params.get("default_admin_new_name", "")).strip()
        if any(u.get("name") == new_name for u in users):
            raise PlanError(f"{host}: switch_default_admin_new_name {new_name} already exists on the switch next to "
                            f"{DEFAULT_ADMIN}: choose another name, or remove that user.")
        out.update(action="rename", values={"name": new_name})
    return out


def factory_address_plan(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The /ip address rows holding the factory address (switch_factory_address), to remove."""
    if not _flag(params.get("factory_address_remove", False)):
        return []
    factory = _ip(params.get("factory_address", "192.168.88.1/24"))
    out = []
    for row in params.get("addresses") or []:
        if isinstance(row, Mapping) and row.get(".id") and _ip(row.get("address", "")) == factory:
            out.append({"id": row[".id"], "address": str(row.get("address")), "interface": str(row.get("interface"))})
    return out


def protected_ports(params: Mapping[str, Any]) -> set[str]:
    """Ports never disabled: the management port, the operator's list, and the ports the API address sits on."""
    keep = {str(p) for p in params.get("ports_keep_enabled") or []}
    keep.add(str(params.get("mgmt_interface", "ether1")))
    api_ip = _ip(params.get("api_host", "")) if params.get("api_host") else None
    if api_ip is not None:
        for row in params.get("addresses") or []:
            if isinstance(row, Mapping) and _ip(row.get("address", "")) == api_ip:
                iface = str(row.get("interface", ""))
                keep.add(iface)
                keep.update(str(p.get("interface")) for p in params.get("bridge_port_rows") or []
                            if isinstance(p, Mapping) and p.get("bridge") == iface)
    return keep


def unused_ports_plan(params: Mapping[str, Any], plan: Plan, gbps: int, warnings: list[str]) -> list[dict[str, Any]]:
    """disabled= for every switch port no node uses; sets disabled on the unused masters in plan.ethernet_link.

    - A cage with a node: its unused lane-group masters are disabled, except lane 1 (it may hold the
      module up for the whole cage); the other sub-interfaces of its lane groups are kept enabled.
    - A cage with no node and nothing in switch_ports_keep_enabled: all eight sub-interfaces disabled.
    - ether1/ether2: disabled unless it is the management port, in switch_ports_keep_enabled or carrying
      the address Ansible connects to; left alone when the management interface is not a port.
    """
    if not _flag(params.get("disable_unused_ports", False)):
        return []
    host = params.get("host", "the switch")
    protected = protected_ports(params)
    mode = MODES[gbps]
    used = set(plan.fabric_ports)
    for entry in plan.ethernet_link:
        port = entry["default-name"]
        lane = _port_key(port)[1]
        entry["disabled"] = port not in used and lane != 1 and port not in protected
    out: list[dict[str, Any]] = []
    for cage in range(1, 5):
        ports = [f"qsfp56-dd-{cage}-{lane}" for lane in range(1, 9)]
        if cage in plan.cages:
            for lane, port in enumerate(ports, start=1):
                if lane not in mode["lanes"]:
                    out.append({"default-name": port, "disabled": False})
        elif not protected.intersection(ports):
            out.extend({"default-name": port, "disabled": True} for port in ports)
    mgmt = str(params.get("mgmt_interface", "ether1"))
    if mgmt in ETHER_PORTS or mgmt in QSFP_PORTS:
        out.extend({"default-name": port, "disabled": True} for port in ETHER_PORTS if port not in protected)
    else:
        warnings.append(f"switch_mgmt_interface of {host} is {mgmt}, not a port, so ether1 and ether2 were left as "
                        "they are; list the ones in use in switch_ports_keep_enabled and set switch_mgmt_interface "
                        "to the management port to have the others disabled.")
    return out


def management_guard(params: Mapping[str, Any], plan: Plan) -> None:
    """The management port is never bridged into the fabric (whatever the inventory or the switch says)."""
    host = params.get("host", "the switch")
    mgmt = str(params.get("mgmt_interface", "ether1"))
    bridge = str(params.get("bridge_name", "gb10-fabric"))
    if mgmt in plan.fabric_ports or mgmt == bridge:
        raise PlanError(f"{host}: switch_mgmt_interface {mgmt} would be part of the fabric bridge {bridge}; the "
                        "management port never joins the fabric: set switch_mgmt_interface to the management port.")
    for row in params.get("bridge_port_rows") or []:
        if isinstance(row, Mapping) and row.get("interface") == mgmt and row.get("bridge") == bridge:
            raise PlanError(
                f"{host}: {mgmt} (switch_mgmt_interface) is a port of the fabric bridge {bridge} on the switch, and the "
                f"management port never joins the fabric: remove it on the switch's console (/interface bridge port "
                f"remove [find interface={mgmt} bridge={bridge}]) and run again; nothing was changed.")
