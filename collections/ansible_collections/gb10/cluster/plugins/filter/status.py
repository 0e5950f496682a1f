"""Filters for status.yml (logic in plugins/module_utils/node_status.py).

- ``nodes | status_lines(head, switch_ports, floor_bytes)``: the one screen, a list of lines.
- ``metrics_text | kv_usage``: vLLM's KV cache usage (0..1) from its /metrics, or None.
"""
from __future__ import annotations

from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import node_status as _ns


def status_lines(nodes: Any, head: Any = None, switch_ports: Any = None, floor_bytes: Any = 0) -> list[str]:
    return _ns.status_lines(list(nodes or []), dict(head) if head else None,
                            list(switch_ports) if switch_ports is not None else None, int(floor_bytes or 0))


def kv_usage(metrics: Any) -> float | None:
    return _ns.kv_usage(str(metrics or ""))


class FilterModule:
    """gb10.cluster status filters."""

    def filters(self) -> dict[str, Any]:
        return {"status_lines": status_lines, "kv_usage": kv_usage}
