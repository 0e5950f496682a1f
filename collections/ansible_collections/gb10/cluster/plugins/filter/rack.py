"""Filters for the rack's RDMA/NCCL settings (logic in plugins/module_utils/rack.py).

- ``vars | nccl_env_values(host)``: nccl_env's view of a node (socket interface, its IP, RoCE devices,
  ``errors``) and the lines of /etc/gb10/serving.env (``serving_env``) and /etc/nccl.conf (``nccl_conf``).
- ``overrides | roce_class(switch_vars, switch_defaults)``: the RoCE class the switch prioritises, with
  NCCL_IB_TC (``tc``) derived from its DSCP.
- ``interfaces | roce_qos_items(roce_class)``: the host-side marking of the twins, one item per setting.
- ``log_text | nccl_transport``: which transport NCCL used (``ib``, ``socket``, ``mixed`` or None).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import rack as _R


def nccl_env_values(node_vars: Any, host: Any) -> dict[str, Any]:
    hv = dict(node_vars or {})
    fabric = _R.node_fabric(str(host), hv)
    return dict(fabric, serving_env=[list(kv) for kv in _R.serving_env_lines(fabric, hv)],
                nccl_conf=[list(kv) for kv in _R.nccl_conf_lines(fabric, hv)])


def roce_class(overrides: Any, switch_vars: Any = None, switch_defaults: Any = None) -> dict[str, Any]:
    return _R.roce_class(dict(overrides or {}), dict(switch_vars or {}), dict(switch_defaults or {}))


def roce_qos_items(interfaces: Any, roce: Any, tool: Any = _R.QOS_TOOL) -> list[dict[str, Any]]:
    return _R.qos_items([str(i) for i in interfaces or []], dict(roce or {}), str(tool))


def nccl_transport(text: Any) -> dict[str, Any]:
    return _R.nccl_transport(str(text or ""))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "nccl_env_values": nccl_env_values,
            "roce_class": roce_class,
            "roce_qos_items": roce_qos_items,
            "nccl_transport": nccl_transport,
        }
