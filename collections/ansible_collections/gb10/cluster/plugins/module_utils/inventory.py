"""Inventory validation for gb10-cluster: every operator mistake becomes one sentence.

Plain Python with no Ansible imports. The filter plugin ``gb10_inventory_errors`` feeds it the
inventory (groups and the few host variables that matter) and the ``validate_inventory`` role asserts
that the returned list is empty, printing each sentence. Nothing here needs facts or a connection.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import switch_plan, switch_tls

NODE_GROUP = "gx10"
SWITCH_GROUP = "switch"
CONTROL_GROUP = "control"
KNOWN_GROUPS = (NODE_GROUP, SWITCH_GROUP, CONTROL_GROUP)
MAX_NODES = 16
SWITCH_PORT_RE = re.compile(r"^qsfp56-dd-([1-4])-([1-8])$")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Variables that must be real booleans when set (a quoted "false" is a true string in Jinja).
BOOLEAN_VARS = (
    "ansible_become",
    "cx7_fabric_use_netplan_try",
    "dgx_node_manage_driver_hold",
    "switch_qos_enabled",
    "switch_diag_bounce_once",
    "serving_enable_prefix_caching",
)


BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


# gb10_converge: auto skips a role whose converge stamp is current (docs/converge.md); full runs every role.
CONVERGE_MODES = ("auto", "full")


def boolean_options(specs: Mapping[str, Any]) -> list[str]:
    """Names of the ``type: bool`` options in roles' argument specs (``{role: parsed argument_specs.yml}``).

    The validation checks these in the inventory too, so a new role's booleans are covered without
    listing them here.
    """
    names: set[str] = set()
    for spec in specs.values():
        entry_points = spec.get("argument_specs") if isinstance(spec, Mapping) else None
        if not isinstance(entry_points, Mapping):
            continue
        for entry in entry_points.values():
            options = entry.get("options") if isinstance(entry, Mapping) else None
            if not isinstance(options, Mapping):
                continue
            for name, option in options.items():
                if isinstance(option, Mapping) and option.get("type") in ("bool", "boolean"):
                    names.add(str(name))
    return sorted(names)


def extra_var_bool_errors(values: Mapping[str, Any]) -> list[str]:
    """One sentence per ``-e name=value`` that should be a boolean and is not.

    Extra variables given as ``-e name=value`` always arrive as strings, so the usual words
    (true/false, yes/no, on/off, 1/0) are accepted; anything else is refused.
    """
    errors: list[str] = []
    for name, value in values.items():
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
            continue
        errors.append(f"-e {name}={value} is not a boolean (extra variables); give -e {name}=true or -e {name}=false.")
    return errors


def silent_nodes(nodes: Sequence[str], results: Mapping[str, Any], addresses: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The nodes whose preflight SSH check did not succeed, as ``{host, address, reason}``.

    ``results`` maps a node to its registered ``wait_for_connection`` result (missing or None when the
    task never ran for it); ``addresses`` maps a node to its ``ansible_host``.
    """
    silent = []
    for host in nodes:
        result = results.get(host)
        if isinstance(result, Mapping) and not result.get("failed") and not result.get("unreachable"):
            continue
        reason = result.get("msg") if isinstance(result, Mapping) else None
        silent.append({"host": host, "address": addresses.get(host) or host, "reason": reason or "no answer"})
    return silent


def unreachable_message(silent: Sequence[Mapping[str, Any]], timeout: Any) -> str:
    """The sentence naming every node that did not answer over SSH, its address and why.

    ``silent``: ``{host, address, reason}`` per node, in inventory order.
    """
    if not silent:
        return ""
    parts = []
    for item in silent:
        reason = " ".join(str(item.get("reason") or "no answer").split())
        if len(reason) > 200:
            reason = reason[:197] + "..."
        parts.append(f"{item.get('host')} ({item.get('address')}) does not answer over SSH within {timeout} s: {reason}")
    them = "it" if len(silent) == 1 else "them"
    return "; ".join(parts) + f"; nothing was changed: bring {them} up or remove {them} from the inventory (or --limit), then run again."


def switch_unreachable_message(host: str, address: Any, port: Any, timeout: Any) -> str:
    """The sentence for a switch whose RouterOS API port does not answer."""
    return (
        f"The switch {host} does not answer on {address}:{port} (RouterOS api-ssl, switch_api_port) within {timeout} s; "
        "nothing was changed: check that it is powered and cabled and that api-ssl is enabled, or run with "
        "--limit gx10 to configure the nodes only, then run again."
    )


def _type_name(value: Any) -> str:
    """The YAML-level type of a value (Ansible hands over subclasses of str, int, ...)."""
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return kind.__name__
    return "mapping" if isinstance(value, Mapping) else type(value).__name__


def _plain(value: Any) -> Any:
    for kind in (int, float, str):
        if isinstance(value, kind) and not isinstance(value, bool):
            return kind(value)
    return value


def _fmt_list(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "(none)"


def _as_interface(value: Any) -> ipaddress.IPv4Interface | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None
    return iface if isinstance(iface, ipaddress.IPv4Interface) else None


def _as_ip(value: Any) -> ipaddress.IPv4Address | None:
    if not isinstance(value, str):
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    return addr if isinstance(addr, ipaddress.IPv4Address) else None


def _twins(all_vars: Mapping[str, Any], errors: list[str]) -> list[str]:
    twins = all_vars.get("gb10_fabric_twins")
    if not isinstance(twins, list) or not twins:
        errors.append(
            "gb10_fabric_twins is not set (group_vars/all): list the cabled CX7 twins, e.g. "
            "[{interface: enp1s0f1np1, rdma_device: rocep1s0f1}, {interface: enP2p1s0f1np1, rdma_device: roceP2p1s0f1}]."
        )
        return []
    names: list[str] = []
    for i, twin in enumerate(twins):
        if not isinstance(twin, Mapping) or not twin.get("interface") or not twin.get("rdma_device"):
            errors.append(
                f"gb10_fabric_twins[{i}] needs both 'interface' and 'rdma_device' (group_vars/all), got {twin!r}."
            )
            continue
        names.append(str(twin["interface"]))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append(f"gb10_fabric_twins lists {_fmt_list(dupes)} more than once (group_vars/all): each twin once.")
    if len(names) > 2:
        errors.append(f"gb10_fabric_twins lists {len(names)} interfaces; a GB10 cage has two twins: list at most two.")
    return names


def validate(groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Mapping[str, Any]],
             all_vars: Mapping[str, Any] | None = None, boolean_vars: Sequence[str] = ()) -> list[str]:
    """Return one sentence per problem found in the inventory; an empty list means it is valid.

    ``groups`` is Ansible's ``groups`` (group name -> host names); ``hostvars`` maps each host to its
    variables (only the keys read here matter); ``all_vars`` are the site-wide settings, taken from the
    first node when not given; ``boolean_vars`` are more variables that must be real booleans when set
    (the roles' ``type: bool`` options, see :func:`boolean_options`).
    """
    errors: list[str] = []
    nodes = list(groups.get(NODE_GROUP, []))
    switches = list(groups.get(SWITCH_GROUP, []))
    controls = list(groups.get(CONTROL_GROUP, []))
    if not nodes:
        errors.append(
            f"The inventory has no hosts in group '{NODE_GROUP}': put your GB10 nodes under all.children.{NODE_GROUP}.hosts."
        )
        return errors
    if len(nodes) > MAX_NODES:
        errors.append(f"Group '{NODE_GROUP}' has {len(nodes)} hosts; gb10-cluster supports at most {MAX_NODES}.")
    if len(switches) > 1:
        errors.append(
            f"Group '{SWITCH_GROUP}' has {len(switches)} hosts ({_fmt_list(switches)}); the fabric has one switch: keep one."
        )
    for host in nodes:
        others = [g for g in (SWITCH_GROUP, CONTROL_GROUP) if host in groups.get(g, [])]
        if others:
            errors.append(
                f"{host} is in group '{NODE_GROUP}' and in {_fmt_list(others)}; a GB10 node belongs only to '{NODE_GROUP}'."
            )
        if not HOSTNAME_RE.match(host):
            errors.append(f"{host}: node names must be lowercase letters, digits and '-' (they become hostnames); rename it.")
    for host in switches:
        if host in controls:
            errors.append(f"{host} is in groups '{SWITCH_GROUP}' and '{CONTROL_GROUP}'; the switch is a host of its own.")

    settings = dict(all_vars) if all_vars is not None else dict(hostvars.get(nodes[0], {}))
    twins = _twins(settings, errors)

    mgmt_net = None
    mgmt_raw = settings.get("gb10_mgmt_subnet")
    if mgmt_raw is None:
        errors.append("gb10_mgmt_subnet is not set (group_vars/all): give the management network, e.g. 192.168.1.0/24.")
    else:
        try:
            mgmt_net = ipaddress.ip_network(str(mgmt_raw), strict=True)
        except ValueError:
            errors.append(
                f"gb10_mgmt_subnet is '{mgmt_raw}' (group_vars/all), which is not a network in CIDR form like 192.168.1.0/24."
            )

    converge = settings.get("gb10_converge", "auto")
    if converge not in CONVERGE_MODES:
        errors.append(
            f"gb10_converge is {_plain(converge)!r}; use auto (a role is skipped on a node where nothing changed "
            f"since its last converge) or full (every role runs), e.g. -e gb10_converge=full."
        )

    for var in sorted(set(BOOLEAN_VARS) | set(boolean_vars)):
        for host in nodes + switches:
            value = hostvars.get(host, {}).get(var)
            if value is not None and not isinstance(value, bool):
                errors.append(
                    f"{host}: {var} is {_plain(value)!r} ({_type_name(value)}); write true or false without quotes."
                )

    seen_ips: dict[str, str] = {}

    def claim(ip: str, where: str) -> None:
        if ip in seen_ips:
            errors.append(f"Address {ip} is used twice: {seen_ips[ip]} and {where}; give each its own address.")
        else:
            seen_ips[ip] = where

    twin_nets: dict[str, tuple[ipaddress.IPv4Network, str]] = {}
    ports: dict[str, str] = {}
    # A node "cabled" to the switch's management port gets the management-port sentence (switch checks below).
    mgmt_ports = {str(hostvars.get(sw, {}).get("switch_mgmt_interface") or switch_plan.DEFAULTS["switch_mgmt_interface"])
                  for sw in switches}
    for host in nodes:
        hv = hostvars.get(host, {})
        mgmt_ip = hv.get("ansible_host")
        if mgmt_ip is None:
            errors.append(f"{host}: ansible_host is not set; set it to the node's management address (on {settings.get('gb10_mgmt_interface', 'enP7s7')}).")
        else:
            addr = _as_ip(mgmt_ip)
            if addr is not None:
                claim(str(addr), f"{host} ansible_host")
                if mgmt_net is not None and addr not in mgmt_net:
                    errors.append(
                        f"{host}: ansible_host {addr} is outside gb10_mgmt_subnet {mgmt_net}; fix the address or the subnet."
                    )
        fabric = hv.get("gb10_fabric_addresses")
        if fabric is None:
            example = ", ".join(f"{t}: 192.168.{100 + i}.X/24" for i, t in enumerate(twins))
            errors.append(f"{host}: gb10_fabric_addresses is not set; give each twin an address ({example}).")
            fabric = {}
        elif not isinstance(fabric, Mapping):
            errors.append(f"{host}: gb10_fabric_addresses must map each twin interface to an address/prefix, got {fabric!r}.")
            fabric = {}
        for key in fabric:
            if twins and key not in twins:
                errors.append(
                    f"{host}: gb10_fabric_addresses names '{key}', which is not a twin in gb10_fabric_twins ({_fmt_list(twins)})."
                )
        host_nets: dict[ipaddress.IPv4Network, str] = {}
        for twin in twins:
            if fabric and twin not in fabric:
                errors.append(f"{host}: gb10_fabric_addresses has no address for twin {twin}; add one like 192.168.X.Y/24.")
                continue
            if twin not in fabric:
                continue
            iface = _as_interface(fabric[twin])
            if iface is None:
                errors.append(
                    f"{host}: gb10_fabric_addresses.{twin} is {fabric[twin]!r}, not an IPv4 address with a prefix like 192.168.100.11/24."
                )
                continue
            net = iface.network
            if iface.ip in (net.network_address, net.broadcast_address) and net.prefixlen < 31:
                errors.append(f"{host}: gb10_fabric_addresses.{twin} {iface} is the network or broadcast address of {net}.")
            claim(str(iface.ip), f"{host} {twin}")
            for other_net, other in host_nets.items():
                if net == other_net:
                    errors.append(
                        f"{host}: both twins ({other} and {twin}) are in {net} (gb10_fabric_addresses); each twin needs its "
                        "own subnet (e.g. 192.168.100.0/24 and 192.168.101.0/24), or routing becomes ambiguous and NCCL fails."
                    )
                elif net.overlaps(other_net):
                    errors.append(
                        f"{host}: the subnets of its twins overlap ({other} in {other_net}, {twin} in {net}; "
                        "gb10_fabric_addresses); give each twin a subnet of its own that shares no address with the "
                        "other's (e.g. 192.168.100.0/24 and 192.168.101.0/24), or routing becomes ambiguous and NCCL fails."
                    )
            host_nets[net] = twin
            if mgmt_net is not None and iface.ip in mgmt_net:
                errors.append(
                    f"{host}: gb10_fabric_addresses.{twin} {iface} is inside the management subnet gb10_mgmt_subnet "
                    f"{mgmt_net}, so the node would answer SSH out of the twin and drop the session: give the twin an "
                    "address in a subnet of its own, e.g. 192.168.100.X/24."
                )
            elif mgmt_net is not None and net.overlaps(mgmt_net):
                errors.append(
                    f"{host}: gb10_fabric_addresses.{twin} {iface} makes the twin's subnet {net} overlap the management "
                    f"subnet gb10_mgmt_subnet {mgmt_net}: give the twin a subnet that shares no address with it, e.g. "
                    "192.168.100.X/24."
                )
            if twin in twin_nets and twin_nets[twin][0] != net:
                first_net, first_host = twin_nets[twin]
                errors.append(
                    f"{host}: twin {twin} is in {net} but on {first_host} it is in {first_net}; the same twin of every node must share one subnet."
                )
            twin_nets.setdefault(twin, (net, host))
        port = hv.get("gb10_switch_port")
        if switches:
            if port is None:
                errors.append(f"{host}: gb10_switch_port is not set; name the switch port it is cabled to, e.g. qsfp56-dd-1-1.")
            elif isinstance(port, str) and port.strip() in mgmt_ports:
                pass
            elif not isinstance(port, str) or not SWITCH_PORT_RE.match(port):
                errors.append(
                    f"{host}: gb10_switch_port is {port!r}; use qsfp56-dd-<cage 1-4>-<lane 1, 3, 5 or 7>, e.g. qsfp56-dd-2-1."
                )
            elif port in ports:
                errors.append(f"{host}: gb10_switch_port {port} is already used by {ports[port]}; each node has its own port.")
            else:
                m = SWITCH_PORT_RE.match(port)
                if m is not None and int(m.group(2)) not in (1, 3, 5, 7):
                    errors.append(
                        f"{host}: gb10_switch_port {port} is not a lane-group master; use lane 1 (400G), 1/5 (2x200G) or 1/3/5/7 (4x100G)."
                    )
                ports[port] = host
    node_ports = {host: hostvars.get(host, {}).get("gb10_switch_port") for host in nodes}
    for host in switches:
        hv = hostvars.get(host, {})
        addr = _as_ip(hv.get("ansible_host"))
        if addr is None:
            errors.append(f"{host}: ansible_host must be the switch's management IPv4 address.")
        elif str(addr) != "127.0.0.1":  # the lab's simulator listens on loopback
            claim(str(addr), f"{host} ansible_host")
        # Who the switch is (certificate pin or the explicit opt-out), and nothing that locks Ansible out
        # or bridges the management port into the fabric.
        errors.extend(switch_tls.settings_errors(switch_tls.Settings.from_vars(host, hv)))
        errors.extend(switch_plan.settings_errors(host, hv, node_ports))
    return errors
