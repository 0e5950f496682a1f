"""Value parsing and formatting as RouterOS does it on the API (the simulator's own copy).

Kept separate from the role's normaliser on purpose: the simulator must not share code with the
thing it tests.
"""
from __future__ import annotations

import ipaddress
import re

TRUE_WORDS = {"yes", "true"}
FALSE_WORDS = {"no", "false"}


class ValueError_(Exception):
    """A value RouterOS would reject; the message is the trap text."""


def parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise ValueError_(f"input does not match any value of {name}")


def format_bool(value: bool) -> str:
    # The API (unlike the CLI) answers booleans as true/false.
    return "true" if value else "false"


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bps)?\s*$")
_MULT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_rate(name: str, raw: str) -> int:
    """'100G', '100000M', '100.0Gbps', '0' -> bits per second."""
    m = _RATE.match(raw)
    if not m:
        raise ValueError_(f"invalid value for argument {name}")
    number, unit = m.groups()
    return int(round(float(number) * _MULT[unit.lower()]))


def format_rate(bits: int) -> str:
    """RouterOS echoes rates with one decimal and a unit: 100G -> 100.0Gbps; 0 stays 0."""
    if bits == 0:
        return "0"
    for unit, mult in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bits >= mult:
            return f"{bits / mult:.1f}{unit}bps"
    return f"{bits}bps"


def parse_prefix(name: str, raw: str, strict_host: bool = False) -> str:
    """An address with prefix: '192.168.1.2/24' (interface address) or a network."""
    try:
        if strict_host:
            iface = ipaddress.ip_interface(raw.strip())
            return f"{iface.ip}/{iface.network.prefixlen}"
        net = ipaddress.ip_network(raw.strip(), strict=False)
        return str(net)
    except ValueError as exc:
        raise ValueError_(f"invalid value for argument {name}") from exc


def parse_address_list(name: str, raw: str) -> str:
    """ip/service address: comma separated networks; '' means from anywhere."""
    if raw.strip() == "":
        return ""
    return ",".join(parse_prefix(name, part) for part in raw.split(",") if part.strip())


def version_tuple(version: str) -> tuple[int, ...]:
    """'7.22.1 (stable)' -> (7, 22, 1); '7.25beta2' -> (7, 25)."""
    head = version.split(" ", 1)[0]
    parts: list[int] = []
    for piece in head.split("."):
        m = re.match(r"^(\d+)", piece)
        if not m:
            break
        parts.append(int(m.group(1)))
    return tuple(parts)
