"""Filter ``twin_summary``: one short text per node describing its CX7 twins from its facts."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DOCUMENTATION = r"""
name: twin_summary
short_description: Describe a node's CX7 twins (address and MTU) from its gathered facts
options:
  _input:
    description: The node's hostvars.
    type: dict
    required: true
  twins:
    description: Twin interface names.
    type: list
    required: true
"""


def twin_summary(hostvars: Mapping[str, Any], twins: Sequence[str]) -> str:
    facts = hostvars.get("ansible_facts", {}) or {}
    parts = []
    for twin in twins:
        info = facts.get(twin.replace("-", "_")) or {}
        if not info:
            parts.append(f"{twin} absent")
            continue
        ipv4 = (info.get("ipv4") or {}).get("address", "no address")
        prefix = (info.get("ipv4") or {}).get("prefix")
        addr = f"{ipv4}/{prefix}" if prefix else ipv4
        state = "up" if info.get("active") else "down"
        parts.append(f"{twin} {addr} mtu {info.get('mtu', '?')} {state}")
    return ", ".join(parts)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"twin_summary": twin_summary}
