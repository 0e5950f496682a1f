"""Filters for the switch role's skip decisions (logic in plugins/module_utils/switch_state.py).

- ``rows | switch_differs(data, keys)``: whether writing ``data`` to a path whose entries are ``rows``
  (read by gb10.cluster.switch_read) could change anything; False only when every wanted entry and
  property is already on the switch, so the write task can be skipped.
- ``results | switch_any_changed``: whether any of the registered task results reports a change.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import switch_state as _S


def switch_differs(rows: Any, data: Any, keys: Any = None) -> bool:
    return _S.differs(rows, data, keys)


def switch_any_changed(results: Any) -> bool:
    return _S.any_changed(results or [])


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"switch_differs": switch_differs, "switch_any_changed": switch_any_changed}
