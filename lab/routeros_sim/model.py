"""The simulated CRS804-4DDQ: menus, rows, validation, print/query, monitor, export.

A test double: it models the RouterOS API behaviour our tooling touches (and what a careless client
could trip over: unknown parameters, mtu above l2mtu, rates above what a version accepts), not
RouterOS as a whole.
"""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .values import (
    ValueError_,
    format_bool,
    format_rate,
    parse_address_list,
    parse_bool,
    parse_prefix,
    parse_rate,
    version_tuple,
)

CAGES = range(1, 5)
LANES = range(1, 9)
QSFP_PORTS = [f"qsfp56-dd-{c}-{lane}" for c in CAGES for lane in LANES]
ETHER_PORTS = ["ether1", "ether2"]
ALL_PORTS = QSFP_PORTS + ETHER_PORTS

# How many SerDes lanes a sub-interface can own, by its lane number inside the cage.
LANES_OWNED = {1: 8, 2: 1, 3: 2, 4: 1, 5: 4, 6: 1, 7: 2, 8: 1}

QSFP_SPEEDS = {
    "400G-baseCR8": (400, 8), "400G-baseSR8": (400, 8),
    "200G-baseCR4": (200, 4), "200G-baseSR4": (200, 4),
    "100G-baseCR2": (100, 2), "100G-baseCR4": (100, 4), "100G-baseSR4": (100, 4),
    "50G-baseCR": (50, 1), "50G-baseCR2": (50, 2),
    "40G-baseCR4": (40, 4), "25G-baseCR": (25, 1), "25G-baseSR-LR": (25, 1),
    "10G-baseCR": (10, 1), "10G-baseSR-LR": (10, 1),
}
ETHER_SPEEDS = {
    "10M-baseT-half": (0.01, 1), "10M-baseT-full": (0.01, 1), "100M-baseT-half": (0.1, 1),
    "100M-baseT-full": (0.1, 1), "1G-baseT-full": (1, 1), "2.5G-baseT": (2.5, 1),
    "5G-baseT": (5, 1), "10G-baseT": (10, 1),
}


class Trap(Exception):
    """A command failure: becomes !trap =message=... (then !done)."""

    def __init__(self, message: str, category: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


# --------------------------------------------------------------------------------------------
# Field and menu descriptions
# --------------------------------------------------------------------------------------------

@dataclass
class Field:
    kind: str = "str"  # str | bool | int | enum | rate | prefix | addrlist | iface | ref | iflist | protocols
    default: Any = None  # None: absent from print until set
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    read_only: bool = False
    ref: tuple[tuple[str, ...], str] | None = None  # (menu path, key field)
    ref_extra: tuple[str, ...] = ()  # extra accepted words (e.g. "disabled")
    min_version: tuple[int, ...] = ()
    required: bool = False
    write_only: bool = False  # accepted by add/set, never printed or exported (user password)


@dataclass
class Menu:
    path: tuple[str, ...]
    kind: str  # list | fixed | single
    fields: dict[str, Field]
    name_key: str | None = "name"  # what `numbers=` may name
    commands: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    export_find: str | None = None  # key used in "set [ find k=v ]" for fixed menus


def _f(**kw: Any) -> Field:
    return Field(**kw)


BOOL_F = lambda d: _f(kind="bool", default=d)  # noqa: E731


def _queue_fields() -> dict[str, Field]:
    out: dict[str, Field] = {}
    for q in range(8):
        out[f"egress-rate-queue{q}"] = _f(kind="rate", default=0)
    return out


def build_menus() -> dict[tuple[str, ...], Menu]:
    menus: list[Menu] = [
        Menu(("interface",), "fixed", {
            "name": _f(read_only=True), "type": _f(read_only=True),
            "mtu": _f(read_only=True), "actual-mtu": _f(read_only=True),
            "l2mtu": _f(read_only=True), "running": _f(kind="bool", read_only=True, default=False),
            "disabled": _f(kind="bool", read_only=True, default=False),
        }),
        Menu(("interface", "ethernet"), "fixed", {
            "name": _f(), "default-name": _f(read_only=True),
            "mtu": _f(kind="int", default=1500, minimum=0, maximum=65535),
            "l2mtu": _f(kind="int", default=1584, minimum=0, maximum=9570),
            "mac-address": _f(), "orig-mac-address": _f(read_only=True),
            "arp": _f(kind="enum", default="enabled",
                      choices=("disabled", "enabled", "local-proxy-arp", "proxy-arp", "reply-only")),
            "arp-timeout": _f(default="auto"),
            "loop-protect": _f(kind="enum", default="default", choices=("default", "on", "off")),
            "loop-protect-status": _f(read_only=True, default="off"),
            "loop-protect-send-interval": _f(default="5s"),
            "loop-protect-disable-time": _f(default="5m"),
            "disable-running-check": BOOL_F(False),
            "auto-negotiation": BOOL_F(True),
            "advertise": _f(),
            "speed": _f(kind="enum", choices=tuple(QSFP_SPEEDS) + tuple(ETHER_SPEEDS)),
            "fec-mode": _f(kind="enum", default="auto", choices=("auto", "fec74", "fec91", "off")),
            "bandwidth": _f(default="unlimited/unlimited"),
            "rx-flow-control": _f(kind="enum", default="off", choices=("off", "on", "auto")),
            "tx-flow-control": _f(kind="enum", default="off", choices=("off", "on", "auto")),
            "full-duplex": BOOL_F(True),
            "sfp-shutdown-temperature": _f(kind="int", default=95, minimum=0, maximum=200),
            "switch": _f(read_only=True),
            "running": _f(kind="bool", read_only=True, default=False),
            "slave": _f(kind="bool", read_only=True, default=False),
            "disabled": BOOL_F(False),
            "comment": _f(),
        }, commands=("monitor", "enable", "disable", "reset-counters"), export_find="default-name"),
        Menu(("interface", "bridge"), "list", {
            "name": _f(required=True),
            "mtu": _f(default="auto"), "actual-mtu": _f(read_only=True), "l2mtu": _f(read_only=True),
            "arp": _f(kind="enum", default="enabled",
                      choices=("disabled", "enabled", "local-proxy-arp", "proxy-arp", "reply-only")),
            "arp-timeout": _f(default="auto"),
            "mac-address": _f(read_only=True),
            "protocol-mode": _f(kind="enum", default="rstp", choices=("none", "rstp", "stp", "mstp")),
            "fast-forward": BOOL_F(True), "igmp-snooping": BOOL_F(False),
            "dhcp-snooping": BOOL_F(False), "auto-mac": BOOL_F(True), "admin-mac": _f(default=""),
            "ageing-time": _f(default="5m"), "priority": _f(default="0x8000"),
            "max-message-age": _f(default="20s"), "forward-delay": _f(default="15s"),
            "transmit-hold-count": _f(kind="int", default=6, minimum=1, maximum=10),
            "vlan-filtering": BOOL_F(False), "ether-type": _f(default="0x8100"),
            "pvid": _f(kind="int", default=1, minimum=1, maximum=4094),
            "frame-types": _f(kind="enum", default="admit-all",
                              choices=("admit-all", "admit-only-untagged-and-priority-tagged",
                                       "admit-only-vlan-tagged")),
            "ingress-filtering": BOOL_F(True), "multicast-querier": BOOL_F(False),
            "mld-version": _f(kind="int", default=1, minimum=1, maximum=2),
            "port-cost-mode": _f(kind="enum", default="long", choices=("long", "short"),
                                 min_version=(7, 13)),
            "forward-reserved-addresses": _f(kind="bool", default=False, min_version=(7, 16)),
            "max-learned-entries": _f(default="auto", min_version=(7, 16)),
            "running": _f(kind="bool", read_only=True, default=True),
            "disabled": BOOL_F(False), "comment": _f(),
        }, unique=("name",)),
        Menu(("interface", "bridge", "port"), "list", {
            "interface": _f(kind="iface", required=True),
            "bridge": _f(kind="ref", ref=(("interface", "bridge"), "name"), required=True),
            "hw": BOOL_F(True), "pvid": _f(kind="int", default=1, minimum=1, maximum=4094),
            "priority": _f(default="0x80"), "path-cost": _f(kind="int", default=10),
            "internal-path-cost": _f(kind="int", default=10), "horizon": _f(default="none"),
            "edge": _f(kind="enum", default="auto",
                       choices=("auto", "no", "no-discover", "yes", "yes-discover")),
            "point-to-point": _f(kind="enum", default="auto", choices=("auto", "no", "yes")),
            "learn": _f(kind="enum", default="auto", choices=("auto", "no", "yes")),
            "trusted": BOOL_F(False),
            "frame-types": _f(kind="enum", default="admit-all",
                              choices=("admit-all", "admit-only-untagged-and-priority-tagged",
                                       "admit-only-vlan-tagged")),
            "ingress-filtering": BOOL_F(True), "unknown-unicast-flood": BOOL_F(True),
            "unknown-multicast-flood": BOOL_F(True), "broadcast-flood": BOOL_F(True),
            "tag-stacking": BOOL_F(False), "bpdu-guard": BOOL_F(False),
            "restricted-role": BOOL_F(False), "restricted-tcn": BOOL_F(False),
            "auto-isolate": BOOL_F(False), "fast-leave": BOOL_F(False),
            "multicast-router": _f(default="temporary-query"),
            "hw-offload": _f(kind="bool", read_only=True, default=False),
            "inactive": _f(kind="bool", read_only=True, default=False),
            "dynamic": _f(kind="bool", read_only=True, default=False),
            "status": _f(read_only=True, default="in-bridge"),
            "disabled": BOOL_F(False), "comment": _f(),
        }, name_key=None, unique=("interface",)),
        Menu(("ip", "address"), "list", {
            "address": _f(kind="prefix", required=True),
            "network": _f(), "interface": _f(kind="iface", required=True),
            "actual-interface": _f(read_only=True),
            "invalid": _f(kind="bool", read_only=True, default=False),
            "dynamic": _f(kind="bool", read_only=True, default=False),
            "disabled": BOOL_F(False), "comment": _f(),
        }, name_key=None),
        Menu(("interface", "ethernet", "switch"), "fixed", {
            "name": _f(), "type": _f(read_only=True, default="Marvell-98DX7335"),
            "cpu-flow-control": BOOL_F(True), "mirror-source": _f(default="none"),
            "mirror-target": _f(default="none"),
            "qos-hw-offloading": BOOL_F(False), "l3-hw-offloading": BOOL_F(False),
        }, export_find="name"),
        Menu(("interface", "ethernet", "switch", "port"), "fixed", {
            "name": _f(read_only=True), "switch": _f(read_only=True, default="switch1"),
            "l3-hw-offloading": BOOL_F(True),
        }, export_find="name"),
        Menu(("interface", "ethernet", "switch", "qos", "profile"), "list", {
            "name": _f(required=True), "traffic-class": _f(kind="int", default=0, minimum=0, maximum=7),
            "dscp": _f(kind="int", minimum=0, maximum=63), "pcp": _f(kind="int", minimum=0, maximum=7),
            "drop-precedence": _f(kind="enum", default="green", choices=("green", "yellow", "red", "drop")),
            "builtin": _f(kind="bool", read_only=True, default=False), "comment": _f(),
        }, unique=("name",)),
        Menu(("interface", "ethernet", "switch", "qos", "map"), "list", {
            "name": _f(required=True), "builtin": _f(kind="bool", read_only=True, default=False),
        }, unique=("name",)),
        Menu(("interface", "ethernet", "switch", "qos", "map", "ip"), "list", {
            "dscp": _f(kind="int", minimum=0, maximum=63, required=True),
            "map": _f(kind="ref", ref=(("interface", "ethernet", "switch", "qos", "map"), "name"),
                      default="default"),
            "profile": _f(kind="ref", ref=(("interface", "ethernet", "switch", "qos", "profile"), "name"),
                          required=True),
            "comment": _f(),
        }, name_key=None, unique=("map", "dscp")),
        Menu(("interface", "ethernet", "switch", "qos", "port"), "fixed", {
            "name": _f(read_only=True), "switch": _f(read_only=True, default="switch1"),
            "profile": _f(kind="ref", ref=(("interface", "ethernet", "switch", "qos", "profile"), "name"),
                          default="default"),
            "map": _f(kind="ref", ref=(("interface", "ethernet", "switch", "qos", "map"), "name"),
                      default="default"),
            "trust-l2": _f(kind="enum", default="ignore", choices=("ignore", "keep")),
            "trust-l3": _f(kind="enum", default="ignore", choices=("ignore", "keep")),
            "tx-manager": _f(default="default"),
            "pfc": _f(kind="ref", ref=(("interface", "ethernet", "switch", "qos", "priority-flow-control"), "name"),
                      ref_extra=("disabled",), default="disabled"),
            "egress-rate": _f(kind="rate", default=0),
            **_queue_fields(),
        }, export_find="name"),
        Menu(("interface", "ethernet", "switch", "qos", "tx-manager"), "list", {
            "name": _f(required=True), "builtin": _f(kind="bool", read_only=True, default=False),
        }, unique=("name",)),
        Menu(("interface", "ethernet", "switch", "qos", "tx-manager", "queue"), "fixed", {
            "tx-manager": _f(read_only=True, default="default"),
            "traffic-class": _f(kind="int", read_only=True),
            "schedule": _f(kind="enum", default="low-priority-group",
                           choices=("low-priority-group", "high-priority-group", "strict-priority")),
            "weight": _f(kind="int", default=1, minimum=1, maximum=256),
            "ecn": BOOL_F(False),
            "use-shared-buffers": BOOL_F(True),
        }, name_key=None, export_find="traffic-class"),
        Menu(("interface", "ethernet", "switch", "qos", "priority-flow-control"), "list", {
            "name": _f(required=True), "traffic-class": _f(kind="int", default=0, minimum=0, maximum=7),
            "rx": BOOL_F(False), "tx": BOOL_F(False), "comment": _f(),
        }, unique=("name",)),
        Menu(("interface", "ethernet", "switch", "qos", "settings"), "single", {
            "multicast-buffers": _f(default="auto"), "shared-buffers": _f(default="auto"),
            "lossless-traffic-class": _f(kind="enum", default="none",
                                         choices=("none",) + tuple(str(i) for i in range(8)),
                                         min_version=(7, 23)),
            "lossless-buffers": _f(default="auto", min_version=(7, 23)),
        }),
        Menu(("ip", "service"), "fixed", {
            "name": _f(read_only=True), "port": _f(kind="int", minimum=1, maximum=65535),
            "address": _f(kind="addrlist", default=""), "certificate": _f(default="none"),
            "tls-version": _f(kind="enum", default="any", choices=("any", "only-1.2")),
            "vrf": _f(default="main"),
            "max-sessions": _f(kind="int", default=20, minimum=1, maximum=1000, min_version=(7, 16)),
            "invalid": _f(kind="bool", read_only=True, default=False),
            "disabled": BOOL_F(False),
        }, export_find="name"),
        Menu(("system", "resource"), "single", {
            "uptime": _f(read_only=True), "version": _f(read_only=True),
            "build-time": _f(read_only=True), "factory-software": _f(read_only=True, default="7.19"),
            "free-memory": _f(read_only=True), "total-memory": _f(read_only=True),
            "cpu": _f(read_only=True, default="ARM64"), "cpu-count": _f(read_only=True, default="4"),
            "cpu-load": _f(read_only=True, default="1"),
            "architecture-name": _f(read_only=True, default="arm64"),
            "board-name": _f(read_only=True, default="CRS804-4DDQ"),
            "platform": _f(read_only=True, default="MikroTik"),
        }),
        Menu(("system", "identity"), "single", {"name": _f(default="MikroTik")}),
        # Interface lists: the built-in all/none/dynamic/static and the operator's own. Menus that take
        # a list (mac-server, neighbor discovery) accept a name from here, optionally negated with "!".
        Menu(("interface", "list"), "list", {
            "name": _f(required=True), "include": _f(default=""), "exclude": _f(default=""),
            "builtin": _f(kind="bool", read_only=True, default=False),
            "dynamic": _f(kind="bool", read_only=True, default=False), "comment": _f(),
        }, unique=("name",)),
        Menu(("user", "group"), "list", {
            "name": _f(required=True), "policy": _f(default=""), "skin": _f(default="default"),
            "builtin": _f(kind="bool", read_only=True, default=False), "comment": _f(),
        }, unique=("name",)),
        # Users. The password is write-only; last-logged-in is set by a successful API login. A disabled
        # user cannot log in; neither can one outside its address list.
        Menu(("user",), "list", {
            "name": _f(required=True),
            "group": _f(kind="ref", ref=(("user", "group"), "name"), required=True),
            "address": _f(kind="addrlist", default=""),
            "password": _f(write_only=True),
            "last-logged-in": _f(read_only=True),
            "expired": _f(kind="bool", read_only=True, default=False),
            "disabled": BOOL_F(False), "comment": _f(),
        }, unique=("name",)),
        # MAC-Telnet, MAC-Winbox and MAC ping (RouterOS 7: one interface list each; "none" turns it off).
        Menu(("tool", "mac-server"), "single", {
            "allowed-interface-list": _f(kind="iflist", default="all"),
        }),
        Menu(("tool", "mac-server", "mac-winbox"), "single", {
            "allowed-interface-list": _f(kind="iflist", default="all"),
        }),
        Menu(("tool", "mac-server", "ping"), "single", {"enabled": BOOL_F(True)}),
        # MNDP/CDP/LLDP. discover-interface-list=none stops the switch announcing itself (and listening).
        Menu(("ip", "neighbor", "discovery-settings"), "single", {
            "discover-interface-list": _f(kind="iflist", default="!dynamic"),
            "protocol": _f(kind="protocols", default="cdp,lldp,mndp"),
            "mode": _f(kind="enum", default="tx-and-rx", choices=("rx-only", "tx-only", "tx-and-rx"),
                       min_version=(7, 7)),
            "lldp-med-net-policy-vlan": _f(default="disabled"),
            "lldp-mac-phy-config": _f(kind="bool", default=False, min_version=(7, 15)),
            "discover-interval": _f(default="30s", min_version=(7, 16)),
            "lldp-vlan-info": _f(kind="bool", default=False, min_version=(7, 16)),
        }),
        # The bandwidth-test server (btest, TCP 2000 and UDP from allocate-udp-ports-from).
        Menu(("tool", "bandwidth-server"), "single", {
            "enabled": BOOL_F(True), "authenticate": BOOL_F(True),
            "allocate-udp-ports-from": _f(kind="int", default=2000, minimum=1000, maximum=64000),
            "max-sessions": _f(kind="int", default=100, minimum=1, maximum=1000),
        }),
        Menu(("system", "routerboard"), "single", {
            "routerboard": _f(kind="bool", read_only=True, default=True),
            "board-name": _f(read_only=True, default="CRS804-4DDQ"),
            "model": _f(read_only=True, default="CRS804-4DDQ-hRM"),
            "serial-number": _f(read_only=True, default="SIMULATOR"),
            "firmware-type": _f(read_only=True, default="al64"),
            "factory-firmware": _f(read_only=True, default="7.19"),
            "current-firmware": _f(read_only=True), "upgrade-firmware": _f(read_only=True),
        }),
        Menu(("file",), "list", {
            "name": _f(read_only=True), "type": _f(read_only=True), "size": _f(read_only=True),
            "creation-time": _f(read_only=True), "contents": _f(read_only=True),
        }, commands=("read",)),
    ]
    return {m.path: m for m in menus}


# --------------------------------------------------------------------------------------------
# The physical world (cables, modules, far ends) - seeded, and hot-reloadable from a JSON file
# --------------------------------------------------------------------------------------------

DEFAULT_PHY = {
    "module_present": True,
    "module_init": "ok",  # ok | failed
    "eeprom_checksum": "good",
    "vendor_name": "Mikrotik",
    "vendor_part": "Q56DD-2Q56-DAC",
    "partner": False,  # is a powered far end (a node's CX7 port) on this lane group?
    "partner_rate": 200,
    "partner_fec": "fec91",
    "link_rate_override": None,  # e.g. "100Gbps": link comes up at that rate whatever is set
    "link_fec_override": None,   # e.g. "off": link reports this FEC
    "errors_per_second": 0,
    "recovers_on_bounce": False,
}

CONDITIONS = {
    "ok": {},
    "no-module": {"module_present": False},
    "module-not-initialised": {"module_init": "failed"},
    "wrong-rate": {"link_rate_override": "100Gbps"},
    "fec-mismatch": {"link_fec_override": "off", "errors_per_second": 500},
    "errors-rising": {"errors_per_second": 25},
    "no-partner": {"partner": False},
}


def default_phy(port: str, partner_lanes: tuple[int, ...], partner_rate: int) -> dict[str, Any]:
    phy = dict(DEFAULT_PHY)
    if port.startswith("qsfp56-dd-"):
        lane = int(port.rsplit("-", 1)[1])
        phy["partner"] = lane in partner_lanes
        phy["partner_rate"] = partner_rate
    else:
        phy.update(module_present=False, partner=True, partner_rate=1, partner_fec="off")
    return phy


# --------------------------------------------------------------------------------------------
# The device
# --------------------------------------------------------------------------------------------

def _routeros_duration(seconds: int) -> str:
    """RouterOS style: 1w2d3h4m5s, zero units left out, '0s' for nothing."""
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _ethernet_mac(index: int) -> str:
    return f"F4:1E:57:00:{index // 256:02X}:{index % 256:02X}"


class Device:
    """All state of the simulated switch. Every public method is called under self.lock."""

    def __init__(self, seed: dict[str, Any] | None = None, state_file: Path | None = None,
                 phy_file: Path | None = None) -> None:
        seed = seed or {}
        self.lock = threading.RLock()
        self.menus = build_menus()
        self.version = str(seed.get("version", "7.22"))
        self.vtuple = version_tuple(self.version)
        self.started = time.time()
        self.state_file = state_file
        self.phy_file = phy_file
        self._phy_mtime = 0.0
        # Factory users: {name: password} or {name: {"password": ..., "group": ...}}; group full by default.
        self.seed_users = dict(seed.get("users", {"admin": ""}))
        # The port the controller is cabled to: with it disabled, no new API connection gets through.
        self.controller_port = str(seed.get("controller_port", "ether1"))
        self.factory_address = seed.get("factory_address")
        self.rows: dict[tuple[str, ...], list[dict[str, Any]]] = {p: [] for p in self.menus}
        self.next_id: dict[tuple[str, ...], int] = {p: 1 for p in self.menus}
        self.files: dict[str, str] = {}
        self.link_since: dict[str, float] = {}
        self.counter_base: dict[str, float] = {}
        partner_lanes = tuple(seed.get("partner_lanes", (1, 5)))
        partner_rate = int(seed.get("partner_rate", 200))
        self.phy: dict[str, dict[str, Any]] = {p: default_phy(p, partner_lanes, partner_rate)
                                               for p in ALL_PORTS}
        self._apply_phy(seed.get("ports", {}))
        self._phy_base = copy.deepcopy(self.phy)
        self._factory()
        self.factory_rows = {p: {r[".id"]: dict(r) for r in rows} for p, rows in self.rows.items()}
        if seed.get("defconf") or self.factory_address:
            self._defconf(bridge=bool(seed.get("defconf")))
        if state_file is not None and state_file.exists():
            self._load_state(json.loads(state_file.read_text()))
        self.reload_phy()

    # ---- factory contents --------------------------------------------------------------------

    def _factory(self) -> None:
        for i, port in enumerate(ALL_PORTS):
            row = {"name": port, "default-name": port, "mac-address": _ethernet_mac(i),
                   "orig-mac-address": _ethernet_mac(i)}
            if port.startswith("qsfp56-dd-"):
                lane = int(port.rsplit("-", 1)[1])
                row["speed"] = {8: "400G-baseCR8", 4: "200G-baseCR4", 2: "100G-baseCR2",
                                1: "50G-baseCR"}[LANES_OWNED[lane]]
                row["switch"] = "switch1"
            else:
                row["speed"] = "10G-baseT"
            self._insert(("interface", "ethernet"), row)
        self._insert(("interface", "ethernet", "switch"), {"name": "switch1"})
        for port in QSFP_PORTS:
            self._insert(("interface", "ethernet", "switch", "port"), {"name": port})
            self._insert(("interface", "ethernet", "switch", "qos", "port"), {"name": port})
        self._insert(("interface", "ethernet", "switch", "qos", "profile"),
                     {"name": "default", "builtin": True})
        self._insert(("interface", "ethernet", "switch", "qos", "map"), {"name": "default", "builtin": True})
        self._insert(("interface", "ethernet", "switch", "qos", "tx-manager"),
                     {"name": "default", "builtin": True})
        for tc in range(8):
            self._insert(("interface", "ethernet", "switch", "qos", "tx-manager", "queue"),
                         {"traffic-class": tc})
        self._insert(("interface", "ethernet", "switch", "qos", "settings"), {})
        services = [("telnet", 23, False), ("ftp", 21, False), ("www", 80, False), ("ssh", 22, False),
                    ("www-ssl", 443, True), ("api", 8728, False), ("winbox", 8291, False),
                    ("api-ssl", 8729, False)]
        for name, port, disabled in services:
            self._insert(("ip", "service"), {"name": name, "port": port, "disabled": disabled})
        self._insert(("system", "resource"), {})
        self._insert(("system", "identity"), {})
        self._insert(("system", "routerboard"), {})
        for name in ("all", "none", "dynamic", "static"):
            self._insert(("interface", "list"), {"name": name, "builtin": True})
        for name, policy in (("read", "local,telnet,ssh,reboot,read,test,winbox,password,web,sniff,sensitive,api,"
                                       "romon,rest-api"),
                             ("write", "local,telnet,ssh,reboot,read,write,test,winbox,password,web,sniff,sensitive,"
                                       "api,romon,rest-api"),
                             ("full", "local,telnet,ssh,ftp,reboot,read,write,policy,test,winbox,password,web,"
                                      "sniff,sensitive,api,romon,rest-api")):
            self._insert(("user", "group"), {"name": name, "policy": policy, "builtin": True})
        for name, spec in self.seed_users.items():
            spec = spec if isinstance(spec, dict) else {"password": spec}
            self._insert(("user",), {"name": name, "group": spec.get("group", "full"),
                                     "password": str(spec.get("password", ""))})
        for path in (("tool", "mac-server"), ("tool", "mac-server", "mac-winbox"), ("tool", "mac-server", "ping"),
                     ("ip", "neighbor", "discovery-settings"), ("tool", "bandwidth-server")):
            self._insert(path, {})

    def _defconf(self, bridge: bool) -> None:
        """The default configuration: 192.168.88.1/24 on the management port (ether1); with bridge,
        also every other port in the bridge "bridge"."""
        if bridge:
            self._insert(("interface", "bridge"), {"name": "bridge", "comment": "defconf"})
            for port in ALL_PORTS:
                if port == "ether1":
                    continue
                self._insert(("interface", "bridge", "port"),
                             {"interface": port, "bridge": "bridge", "comment": "defconf"})
        address = self.factory_address if isinstance(self.factory_address, str) else "192.168.88.1/24"
        self._insert(("ip", "address"), {"address": address, "interface": "ether1", "comment": "defconf"})

    # ---- persistence -------------------------------------------------------------------------

    def _load_state(self, data: dict[str, Any]) -> None:
        for key, rows in data.get("rows", {}).items():
            path = tuple(key.split("/"))
            if path in self.rows:
                self.rows[path] = rows
        for key, value in data.get("next_id", {}).items():
            self.next_id[tuple(key.split("/"))] = value
        self.files = data.get("files", {})

    def save(self) -> None:
        if self.state_file is None:
            return
        data = {"rows": {"/".join(p): r for p, r in self.rows.items() if p != ("system", "resource")},
                "next_id": {"/".join(p): n for p, n in self.next_id.items()},
                "files": self.files}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.state_file)

    def _apply_phy(self, ports: dict[str, Any]) -> None:
        for port, spec in ports.items():
            if port not in self.phy:
                continue
            if isinstance(spec, str):
                spec = {"condition": spec}
            spec = dict(spec)
            condition = spec.pop("condition", None)
            if condition is not None:
                if condition not in CONDITIONS:
                    raise ValueError(f"unknown condition {condition!r} for {port}")
                if condition != "no-partner":
                    self.phy[port]["partner"] = True
                self.phy[port].update(CONDITIONS[condition])
            self.phy[port].update(spec)

    def reload_phy(self) -> None:
        """Re-read the physical-world file if it changed (cables are plugged without a restart)."""
        if self.phy_file is None or not self.phy_file.exists():
            return
        mtime = self.phy_file.stat().st_mtime
        if mtime == self._phy_mtime:
            return
        self._phy_mtime = mtime
        data = json.loads(self.phy_file.read_text() or "{}")
        # The file describes the world relative to the seed, not relative to the previous file.
        self.phy = copy.deepcopy(self._phy_base)
        self._apply_phy(data.get("ports", {}))

    # ---- rows --------------------------------------------------------------------------------

    def _insert(self, path: tuple[str, ...], values: dict[str, Any]) -> str:
        ident = f"*{self.next_id[path]:X}"
        self.next_id[path] += 1
        row = {".id": ident}
        row.update(values)
        self.rows[path].append(row)
        return ident

    def menu(self, path: tuple[str, ...]) -> Menu:
        return self.menus[path]

    def field_available(self, fld: Field) -> bool:
        return not fld.min_version or self.vtuple >= fld.min_version

    def interface_names(self) -> list[str]:
        names = [r["name"] for r in self.rows[("interface", "ethernet")]]
        names += [r["name"] for r in self.rows[("interface", "bridge")]]
        return names

    def find_rows(self, path: tuple[str, ...], numbers: str) -> list[dict[str, Any]]:
        """Resolve `numbers` / `.id`: comma list of *ids or names."""
        menu = self.menus[path]
        out = []
        for item in [x.strip() for x in str(numbers).split(",") if x.strip()]:
            match = None
            for row in self.rows[path]:
                if row[".id"] == item:
                    match = row
                    break
                if menu.name_key and str(row.get(menu.name_key)) == item:
                    match = row
                    break
                if path == ("interface", "ethernet") and row.get("default-name") == item:
                    match = row
                    break
            if match is None:
                raise Trap("no such item")
            out.append(match)
        return out

    def parse_value(self, path: tuple[str, ...], name: str, raw: str) -> Any:
        try:
            return self._parse_value(path, name, raw)
        except ValueError_ as exc:
            raise Trap(str(exc)) from exc

    def _parse_value(self, path: tuple[str, ...], name: str, raw: str) -> Any:
        menu = self.menus[path]
        fld = menu.fields.get(name)
        if fld is None or not self.field_available(fld):
            raise Trap(f"unknown parameter {name}")
        if fld.kind == "bool":
            return parse_bool(name, raw)
        if fld.kind == "int":
            try:
                value = int(raw)
            except ValueError as exc:
                raise Trap(f"invalid value for argument {name}") from exc
            if (fld.minimum is not None and value < fld.minimum) or (
                    fld.maximum is not None and value > fld.maximum):
                raise Trap(f"value of {name} out of range ({fld.minimum}..{fld.maximum})")
            return value
        if fld.kind == "enum":
            if raw not in fld.choices:
                raise Trap(f"input does not match any value of {name}")
            return raw
        if fld.kind == "rate":
            bits = parse_rate(name, raw)
            if self.vtuple < (7, 24) and bits > 100 * 10**9:
                raise Trap("max bit rate is 100G")
            return bits
        if fld.kind == "prefix":
            return parse_prefix(name, raw, strict_host=True)
        if fld.kind == "addrlist":
            return parse_address_list(name, raw)
        if fld.kind == "iface":
            if raw not in self.interface_names():
                raise Trap(f"input does not match any value of {name}")
            return raw
        if fld.kind == "iflist":
            names = {str(r["name"]) for r in self.rows[("interface", "list")]}
            if raw.removeprefix("!") not in names:
                raise Trap(f"input does not match any value of {name}")
            return raw
        if fld.kind == "protocols":
            parts = [x for x in raw.split(",") if x]
            if any(x not in ("cdp", "lldp", "mndp") for x in parts):
                raise Trap(f"input does not match any value of {name}")
            return ",".join(parts)
        if fld.kind == "ref":
            assert fld.ref is not None
            ref_path, ref_key = fld.ref
            if raw in fld.ref_extra or any(str(r.get(ref_key)) == raw for r in self.rows[ref_path]):
                return raw
            raise Trap(f"input does not match any value of {name}")
        return raw

    def format_value(self, path: tuple[str, ...], name: str, value: Any) -> str:
        fld = self.menus[path].fields.get(name)
        if isinstance(value, bool):
            return format_bool(value)
        if fld is not None and fld.kind == "rate":
            return format_rate(int(value))
        return str(value)

    # ---- computed (read-only) properties -------------------------------------------------------

    def _offloaded_bridge(self) -> str | None:
        for bridge in self.rows[("interface", "bridge")]:
            if bridge.get("disabled"):
                continue
            for port in self.rows[("interface", "bridge", "port")]:
                if (port["bridge"] == bridge["name"] and port.get("hw", True)
                        and not port.get("disabled") and port["interface"] in self._switch_port_names()):
                    return str(bridge["name"])
        return None

    def _switch_port_names(self) -> set[str]:
        return {r["name"] for r in self.rows[("interface", "ethernet")] if r.get("switch")}

    def computed(self, path: tuple[str, ...], row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        menu = self.menus[path]
        for name, fld in menu.fields.items():
            if name not in out and fld.default is not None and self.field_available(fld):
                out[name] = fld.default
        if path == ("interface", "ethernet"):
            state = self.link_state(row)
            out["running"] = state["status"] == "link-ok"
            out["slave"] = any(p["interface"] == row["name"] for p in self.rows[("interface", "bridge", "port")])
        elif path == ("interface", "bridge", "port"):
            offloaded = self._offloaded_bridge()
            out["hw-offload"] = bool(row.get("hw", True) and row["bridge"] == offloaded
                                     and row["interface"] in self._switch_port_names())
        elif path == ("interface", "bridge"):
            out["mac-address"] = _ethernet_mac(200 + int(row[".id"][1:], 16))
            out["actual-mtu"] = 1500 if out.get("mtu") == "auto" else out["mtu"]
            members = [p["interface"] for p in self.rows[("interface", "bridge", "port")]
                       if p["bridge"] == row["name"]]
            l2 = [e["l2mtu"] if "l2mtu" in e else 1584 for e in self.rows[("interface", "ethernet")]
                  if e["name"] in members]
            out["l2mtu"] = min(l2) if l2 else 65535
            if out.get("mtu") == "auto" and members:
                mtus = [e.get("mtu", 1500) for e in self.rows[("interface", "ethernet")] if e["name"] in members]
                out["actual-mtu"] = min(mtus)
        elif path == ("ip", "address"):
            iface = ipaddress.ip_interface(row["address"])
            out["network"] = str(iface.network.network_address)
            out["actual-interface"] = row["interface"]
        elif path == ("system", "resource"):
            uptime = int(time.time() - self.started)
            out.update({"uptime": _routeros_duration(uptime),
                        "version": f"{self.version} (stable)", "build-time": "2026-10-01 10:00:00",
                        "free-memory": "3.1GiB", "total-memory": "4.0GiB"})
        elif path == ("system", "routerboard"):
            out.update({"current-firmware": self.version, "upgrade-firmware": self.version})
        elif path == ("file",):
            out["size"] = len(self.files.get(row["name"], "").encode())
        return out

    def write_file(self, name: str, body: str) -> None:
        self.files[name] = body
        if not any(r["name"] == name for r in self.rows[("file",)]):
            self._insert(("file",), {"name": name, "type": "script" if name.endswith(".rsc") else "file",
                                     "creation-time": time.strftime("%Y-%m-%d %H:%M:%S")})
        self.save()

    def interface_rows(self) -> list[dict[str, Any]]:
        rows = []
        for e in self.rows[("interface", "ethernet")]:
            state = self.link_state(e)
            rows.append({".id": e[".id"], "name": e["name"], "default-name": e["default-name"],
                         "type": "ether", "mtu": e.get("mtu", 1500), "actual-mtu": e.get("mtu", 1500),
                         "l2mtu": e.get("l2mtu", 1584), "max-l2mtu": 9570,
                         "running": state["status"] == "link-ok", "disabled": bool(e.get("disabled"))})
        for b in self.rows[("interface", "bridge")]:
            c = self.computed(("interface", "bridge"), b)
            rows.append({".id": b[".id"], "name": b["name"], "type": "bridge", "mtu": c["mtu"],
                         "actual-mtu": c["actual-mtu"], "l2mtu": c["l2mtu"], "running": True,
                         "disabled": bool(b.get("disabled"))})
        return rows

    # ---- users and management access ----------------------------------------------------------

    def authenticate(self, name: str, password: str, peer: str) -> bool:
        """An API login: the user exists, is enabled, has that password and may log in from peer."""
        for row in self.rows[("user",)]:
            if row.get("name") != name:
                continue
            if row.get("disabled") or str(row.get("password", "")) != password:
                return False
            allowed = str(row.get("address", ""))
            if allowed and peer:
                ip = ipaddress.ip_address(peer)
                if not any(ip in ipaddress.ip_network(net, strict=False) for net in allowed.split(",") if net):
                    return False
            row["last-logged-in"] = time.strftime("%Y-%m-%d %H:%M:%S")
            return True
        return False

    def controller_port_up(self) -> bool:
        """Whether the port the controller is cabled to (seed controller_port, ether1) is enabled."""
        for row in self.rows[("interface", "ethernet")]:
            if row.get("default-name") == self.controller_port:
                return not row.get("disabled")
        return True

    # ---- the physical layer ---------------------------------------------------------------------

    def link_state(self, row: dict[str, Any]) -> dict[str, Any]:
        port = row["default-name"]
        phy = self.phy[port]
        autoneg = row.get("auto-negotiation", True)
        res: dict[str, Any] = {"status": "no-link",
                               "auto-negotiation": "failed" if autoneg else "disabled"}
        if row.get("disabled"):
            res["status"] = "no-link"
            self.link_since.pop(port, None)
            return res
        if port.startswith("ether"):
            res.update({"status": "link-ok", "auto-negotiation": "done", "rate": "1Gbps"})
            return res
        if not phy["module_present"] or phy["module_init"] != "ok" or not phy["partner"]:
            self.link_since.pop(port, None)
            return res
        if phy["link_rate_override"]:
            rate = phy["link_rate_override"]
            fec = phy["link_fec_override"] or self._fec(row)
            res["auto-negotiation"] = "done" if autoneg else "disabled"
        elif autoneg:
            lanes = LANES_OWNED[int(port.rsplit("-", 1)[1])]
            max_rate = {8: 400, 4: 200, 2: 100, 1: 50}[lanes]
            if phy["partner_rate"] > max_rate:
                return res
            rate = f"{phy['partner_rate']}Gbps"
            fec = phy["link_fec_override"] or phy["partner_fec"]
            res["auto-negotiation"] = "done"
        else:
            speed = row.get("speed", "")
            gbps = QSFP_SPEEDS.get(speed, (0, 0))[0]
            if gbps != phy["partner_rate"] or self._fec(row) != phy["partner_fec"]:
                return res
            rate = f"{gbps}Gbps"
            fec = phy["link_fec_override"] or self._fec(row)
        res.update({"status": "link-ok", "rate": rate, "fec": fec})
        self.link_since.setdefault(port, time.time())
        return res

    @staticmethod
    def _fec(row: dict[str, Any]) -> str:
        mode = row.get("fec-mode", "auto")
        return "off" if mode == "auto" else str(mode)

    def monitor(self, row: dict[str, Any]) -> dict[str, str]:
        self.reload_phy()
        port = row["default-name"]
        phy = self.phy[port]
        state = self.link_state(row)
        out: dict[str, Any] = {"name": row["name"], "status": state["status"],
                               "auto-negotiation": state["auto-negotiation"]}
        if state["status"] == "link-ok":
            out.update({"rate": state["rate"], "full-duplex": True, "fec": state.get("fec", "off"),
                        "tx-flow-control": False, "rx-flow-control": False})
        if port.startswith("ether"):
            return {k: self.format_value(("interface", "ethernet"), k, v) for k, v in out.items()}
        out["sfp-module-present"] = bool(phy["module_present"])
        if phy["module_present"]:
            initialised = phy["module_init"] == "ok"
            out.update({
                "sfp-rx-loss": not (initialised and phy["partner"]),
                "sfp-tx-fault": False,
                "sfp-type": "QSFP56-DD" if initialised else "unknown",
                "sfp-cmis-module-state": "module-ready" if initialised else "module-low-power",
                "sfp-connector-type": "no-separable-connector",
                "sfp-link-length-copper": "1m",
                "sfp-vendor-name": phy["vendor_name"],
                "sfp-vendor-part-number": phy["vendor_part"],
                "sfp-vendor-serial": f"SIM{abs(hash(port)) % 100000:05d}",
                "eeprom-checksum": phy["eeprom_checksum"],
                "sfp-temperature": "38C" if initialised else "0C",
            })
        return {k: self.format_value(("interface", "ethernet"), k, v) for k, v in out.items()}

    def stats(self, row: dict[str, Any]) -> dict[str, Any]:
        port = row["default-name"]
        phy = self.phy[port]
        since = self.link_since.get(port)
        base = self.counter_base.get(port, 0.0)
        errors = 0
        if since is not None:
            errors = int(max(0.0, (time.time() - since) * phy["errors_per_second"] - base))
        return {"rx-bytes": 0 if since is None else int((time.time() - since) * 1000),
                "tx-bytes": 0 if since is None else int((time.time() - since) * 1000),
                "rx-fcs-error": errors, "rx-code-error": 0, "rs-fec-corrected": errors * 3,
                "rs-fec-uncorrected": errors // 2, "rx-pause": 0, "tx-pause": 0}

    def reset_counters(self, row: dict[str, Any]) -> None:
        port = row["default-name"]
        since = self.link_since.get(port)
        if since is not None:
            self.counter_base[port] = (time.time() - since) * self.phy[port]["errors_per_second"]

    def port_enabled_changed(self, row: dict[str, Any], enabled: bool) -> None:
        port = row.get("default-name")
        if port in self.phy and enabled and self.phy[port]["recovers_on_bounce"]:
            self.phy[port]["module_init"] = "ok"
        if port in self.link_since:
            self.link_since.pop(port, None)
            self.counter_base.pop(port, None)

    # ---- validation on write -------------------------------------------------------------------

    def _check_row(self, path: tuple[str, ...], row: dict[str, Any], changed: list[str]) -> None:
        if path == ("interface", "ethernet"):
            mtu = int(row.get("mtu", 1500))
            l2mtu = int(row.get("l2mtu", 1584))
            if mtu > l2mtu:
                raise Trap("could not set mtu" if "mtu" in changed else "could not set l2mtu")
            speed = row.get("speed")
            port = row["default-name"]
            table = QSFP_SPEEDS if port.startswith("qsfp56-dd-") else ETHER_SPEEDS
            if speed is not None and "speed" in changed:
                if speed not in table:
                    raise Trap("input does not match any value of speed")
                if port.startswith("qsfp56-dd-"):
                    lanes = LANES_OWNED[int(port.rsplit("-", 1)[1])]
                    if table[speed][1] > lanes:
                        raise Trap(f"speed {speed} not supported on {port}")

    def _check_unique(self, path: tuple[str, ...], row: dict[str, Any]) -> None:
        menu = self.menus[path]
        if not menu.unique:
            if path == ("ip", "address"):
                for other in self.rows[path]:
                    if other is not row and other["address"] == row["address"] \
                            and other["interface"] == row["interface"]:
                        raise Trap("failure: already have such address")
            return
        key = tuple(str(row.get(k, menu.fields[k].default)) for k in menu.unique)
        for other in self.rows[path]:
            if other is row:
                continue
            if tuple(str(other.get(k, menu.fields[k].default)) for k in menu.unique) == key:
                if path == ("interface", "bridge", "port"):
                    raise Trap("device already added as bridge port")
                raise Trap(f"failure: entry with such {'/'.join(menu.unique)} already exists")

    def _apply(self, path: tuple[str, ...], row: dict[str, Any], attrs: list[tuple[str, str]],
               creating: bool) -> list[str]:
        menu = self.menus[path]
        changed: list[str] = []
        for name, raw in attrs:
            if name.startswith("!"):
                # unset: back to default / absent
                real = name[1:]
                fld = menu.fields.get(real)
                if fld is None or not self.field_available(fld):
                    raise Trap(f"unknown parameter {real}")
                row.pop(real, None)
                changed.append(real)
                continue
            fld = menu.fields.get(name)
            if fld is not None and fld.read_only:
                raise Trap(f"unknown parameter {name}")
            value = self.parse_value(path, name, raw)
            if path == ("ip", "address") and name == "network":
                continue
            row[name] = value
            changed.append(name)
            self._check_row(path, row, changed)
        return changed

    # ---- commands -------------------------------------------------------------------------------

    def cmd_add(self, path: tuple[str, ...], attrs: list[tuple[str, str]]) -> str:
        menu = self.menus[path]
        if menu.kind != "list" or path in (("file",),):
            raise Trap("no such command or directory (add)")
        row: dict[str, Any] = {}
        self._apply(path, row, attrs, creating=True)
        for name, fld in menu.fields.items():
            if fld.required and name not in row:
                raise Trap(f"failure: {name} not specified" if name != "interface" else
                           "failure: interface not specified")
        if path == ("ip", "address") and "network" not in row:
            row["network"] = str(ipaddress.ip_interface(row["address"]).network.network_address)
        if "builtin" in menu.fields:
            row["builtin"] = False
        self.rows[path].append(row)  # temporarily, for the uniqueness check
        try:
            self._check_unique(path, row)
        finally:
            self.rows[path].remove(row)
        ident = self._insert(path, row)
        self.save()
        return ident

    def cmd_set(self, path: tuple[str, ...], attrs: list[tuple[str, str]]) -> None:
        menu = self.menus[path]
        numbers = None
        rest = []
        for name, raw in attrs:
            if name in (".id", "numbers"):
                numbers = raw
            else:
                rest.append((name, raw))
        if menu.kind == "single":
            targets = self.rows[path]
        else:
            if numbers is None:
                raise Trap("failure: no item specified" if rest else "no such item")
            targets = self.find_rows(path, numbers)
        for row in targets:
            before = copy.deepcopy(row)
            try:
                self._apply(path, row, rest, creating=False)
                self._check_unique(path, row)
            except Trap:
                row.clear()
                row.update(before)
                raise
            if path == ("interface", "ethernet") and before.get("disabled") != row.get("disabled"):
                self.port_enabled_changed(row, not row.get("disabled"))
        self.save()

    def cmd_remove(self, path: tuple[str, ...], attrs: list[tuple[str, str]]) -> None:
        menu = self.menus[path]
        if menu.kind != "list":
            raise Trap("no such command or directory (remove)")
        numbers = next((raw for name, raw in attrs if name in (".id", "numbers")), None)
        if numbers is None:
            raise Trap("no such item")
        targets = self.find_rows(path, numbers)
        for row in targets:
            if row.get("builtin"):
                raise Trap("failure: can not remove builtin entry")
        if path == ("interface", "bridge"):
            names = {r["name"] for r in targets}
            self.rows[("interface", "bridge", "port")] = [
                p for p in self.rows[("interface", "bridge", "port")] if p["bridge"] not in names]
        if path == ("file",):
            for r in targets:
                self.files.pop(r["name"], None)
        self.rows[path] = [r for r in self.rows[path] if r not in targets]
        self.save()

    def cmd_enable_disable(self, path: tuple[str, ...], attrs: list[tuple[str, str]], disable: bool) -> None:
        numbers = next((raw for name, raw in attrs if name in (".id", "numbers")), None)
        if numbers is None:
            raise Trap("no such item")
        for row in self.find_rows(path, numbers):
            if bool(row.get("disabled")) != disable:
                row["disabled"] = disable
                if path == ("interface", "ethernet"):
                    self.port_enabled_changed(row, not disable)
        self.save()

    def print_rows(self, path: tuple[str, ...], stats: bool = False) -> list[dict[str, str]]:
        if path == ("interface",):
            source = self.interface_rows()
        else:
            source = [self.computed(path, r) for r in self.rows[path]]
        out = []
        for row in source:
            if stats and path == ("interface", "ethernet"):
                raw = self.rows[path][[r[".id"] for r in self.rows[path]].index(row[".id"])]
                row = dict(row)
                row.update(self.stats(raw))
            if self.menus[path].kind == "single":
                row = {k: v for k, v in row.items() if k != ".id"}
            hidden = {k for k, f in self.menus[path].fields.items() if f.write_only}
            out.append({k: self.format_value(path, k, v) for k, v in row.items() if k not in hidden})
        return out

    def file_read(self, attrs: dict[str, str]) -> dict[str, str]:
        name = attrs.get("file", "")
        if name not in self.files:
            raise Trap("no such file")
        data = self.files[name]
        try:
            offset = int(attrs.get("offset", "0"))
            chunk = int(attrs.get("chunk-size", "4096"))
        except ValueError as exc:
            raise Trap("invalid value for argument chunk-size") from exc
        if chunk > 65535 or chunk < 1:
            raise Trap("value of chunk-size out of range (1..65535)")
        return {"data": data[offset:offset + chunk]}

    # ---- /system/backup: the binary backup (everything, restored whole, then a reboot) -----------

    BACKUP_MAGIC = "GB10-ROUTEROS-SIM-BACKUP 1"
    # Not in a backup: the files on the flash and the live resource counters.
    BACKUP_SKIP = (("file",), ("system", "resource"))

    @staticmethod
    def _backup_hash(password: str) -> str:
        return hashlib.sha256(("gb10-sim:" + password).encode()).hexdigest() if password else ""

    def _backup_file(self, name: str) -> str:
        name = name if name.endswith(".backup") else name + ".backup"
        if name not in self.files:
            raise Trap("failure: no such backup file")
        return name

    def backup_save(self, attrs: dict[str, str]) -> str:
        """``/system/backup/save name= password= [dont-encrypt=yes]``: ``<name>.backup`` on the flash,
        encrypted with the password unless dont-encrypt (no password: not encrypted)."""
        identity = self.rows[("system", "identity")][0].get("name", "MikroTik")
        name = attrs.get("name") or f"{identity}-{time.strftime('%Y%m%d-%H%M')}"
        name = name if name.endswith(".backup") else name + ".backup"
        plain = attrs.get("dont-encrypt", "no") in ("yes", "true")
        body = {"version": self.version,
                "password": "" if plain else self._backup_hash(attrs.get("password", "")),
                "rows": {"/".join(p): r for p, r in self.rows.items() if p not in self.BACKUP_SKIP},
                "next_id": {"/".join(p): n for p, n in self.next_id.items() if p not in self.BACKUP_SKIP}}
        self.files[name] = self.BACKUP_MAGIC + "\n" + json.dumps(body, sort_keys=True)
        if not any(r["name"] == name for r in self.rows[("file",)]):
            self._insert(("file",), {"name": name, "type": "backup",
                                     "creation-time": time.strftime("%Y-%m-%d %H:%M:%S")})
        self.save()
        return name

    def backup_load(self, attrs: dict[str, str]) -> None:
        """``/system/backup/load name= password=``: the whole configuration of the backup replaces the
        running one (files stay); the switch then reboots (the server drops the connection)."""
        name = self._backup_file(attrs.get("name", ""))
        magic, _, raw = self.files[name].partition("\n")
        if magic != self.BACKUP_MAGIC:
            raise Trap("failure: not a backup file")
        body = json.loads(raw)
        if body["password"] and body["password"] != self._backup_hash(attrs.get("password", "")):
            raise Trap("failure: wrong password, or the backup is damaged")
        for key, rows in body["rows"].items():
            path = tuple(key.split("/"))
            if path in self.rows and path not in self.BACKUP_SKIP:
                self.rows[path] = copy.deepcopy(rows)
        for key, value in body["next_id"].items():
            self.next_id[tuple(key.split("/"))] = value
        self.started = time.time()  # rebooted
        self.save()

    # ---- export ---------------------------------------------------------------------------------

    def export(self) -> str:
        lines = [f"# {time.strftime('%Y-%m-%d %H:%M:%S')} by RouterOS {self.version}",
                 "# software id = SIM0-TEST", "#", "# model = CRS804-4DDQ",
                 "# serial number = SIMULATOR"]
        order = [("interface", "bridge"), ("interface", "ethernet"), ("interface", "ethernet", "switch"),
                 ("interface", "ethernet", "switch", "port"),
                 ("interface", "ethernet", "switch", "qos", "profile"),
                 ("interface", "ethernet", "switch", "qos", "priority-flow-control"),
                 ("interface", "ethernet", "switch", "qos", "map", "ip"),
                 ("interface", "ethernet", "switch", "qos", "port"),
                 ("interface", "ethernet", "switch", "qos", "tx-manager", "queue"),
                 ("interface", "ethernet", "switch", "qos", "settings"),
                 ("interface", "bridge", "port"), ("interface", "list"), ("ip", "address"),
                 ("ip", "neighbor", "discovery-settings"), ("ip", "service"), ("system", "identity"),
                 ("tool", "bandwidth-server"), ("tool", "mac-server"), ("tool", "mac-server", "mac-winbox"),
                 ("tool", "mac-server", "ping")]
        for path in order:
            menu = self.menus[path]
            body = []
            for row in self.rows[path]:
                if row.get("builtin"):
                    continue
                parts = []
                for name, fld in menu.fields.items():
                    if fld.read_only or fld.write_only or name not in row:
                        continue
                    if path == ("interface", "ethernet") and name in ("mac-address", "name"):
                        if row.get(name) == row.get("orig-mac-address") or name == "name" and \
                                row["name"] == row["default-name"]:
                            continue
                    value = row[name]
                    if fld.default is not None and value == fld.default:
                        continue
                    factory = self.factory_rows[path].get(row[".id"], {})
                    if name in factory and factory[name] == value:
                        continue
                    text = self.format_value(path, name, value)
                    if " " in text or text == "":
                        text = f'"{text}"'
                    parts.append(f"{name}={text}")
                if not parts:
                    continue
                if menu.kind == "list":
                    body.append("add " + " ".join(parts))
                elif menu.kind == "single":
                    body.append("set " + " ".join(parts))
                else:
                    key = menu.export_find or "name"
                    body.append(f"set [ find {key}={self.format_value(path, key, row.get(key))} ] "
                                + " ".join(parts))
            if body:
                lines.append("/" + " ".join(path))
                lines.extend(body)
        return "\n".join(lines) + "\n"

