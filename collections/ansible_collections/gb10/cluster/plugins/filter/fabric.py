"""Filters for the fabric link tests (logic in plugins/module_utils/fabric.py).

- ``spec | fabric_test_plan``: the nccl-tests build per node, ib_write_bw per node and twin, and the
  mpirun across the nodes (the argv the role runs and playbooks/render_fabric_tests.yml writes), or
  ``{'errors': [...]}`` (one sentence per problem).
- ``nodes | fabric_tools_rows(markers, expected, hw_skip, managed)``: the ``fabric_tools`` report row
  per node; ``markers`` are the build markers as slurped (base64), ``hw_skip`` why a node has no
  hardware ('' when it has).
- ``versions | fabric_version_mismatch``: one sentence naming the nodes with another version, or ''.
- ``text | fabric_nvcc_version``: ``13.0.88`` from ``nvcc --version``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import fabric as _F


def fabric_test_plan(spec: Any) -> dict[str, Any]:
    try:
        return _F.fabric_test_plan(dict(spec or {}))
    except _F.PlanError as exc:
        return {"errors": [str(exc)]}


def _marker(content: Any) -> Any:
    if not content:
        return None
    try:
        return json.loads(base64.b64decode(str(content)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {"unreadable": True}


def fabric_tools_rows(nodes: Any, markers: Any, expected: Any, hw_skip: Any, managed: Any = True) -> list[dict[str, Any]]:
    skip = {}
    for node, reason in dict(hw_skip or {}).items():
        reason = str(reason or "").strip()
        if reason:
            skip[str(node)] = f"hardware-only: {reason}"
        elif not managed:
            skip[str(node)] = "cx7_fabric_tools is false: the link-test tools are not managed by this role"
    return _F.tools_rows([str(n) for n in nodes or []], {str(k): _marker(v) for k, v in dict(markers or {}).items()},
                         dict(expected or {}), skip)


def fabric_version_mismatch(versions: Any) -> str:
    return _F.version_mismatch(dict(versions or {}))


def fabric_nvcc_version(text: Any) -> str:
    return _F.parse_nvcc_version(str(text or "")) or ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "fabric_test_plan": fabric_test_plan,
            "fabric_tools_rows": fabric_tools_rows,
            "fabric_version_mismatch": fabric_version_mismatch,
            "fabric_nvcc_version": fabric_nvcc_version,
        }
