"""Filters for the serving play (logic in plugins/module_utils/serving.py).

- ``catalog | serving_plan(model, nodes, pins, options)``: the containers that serve a model,
  or ``{'errors': [...]}`` (one sentence per problem).
- ``catalog | serve_request_errors(model, hosts, group, api_key_length, root)``: what is wrong with a
  serve.yml request (model, nodes, API key, the model's catalog entry), one sentence each.
- ``hosts | serving_nodes(hostvars)``: ``{host, mgmt_ip, fabric_ip}`` per host.
- ``log_text | kv_log``: what vLLM logged about its KV cache.
- ``planned_tokens | kv_compare(logged)``: planner vs vLLM, with a printable line.
- ``endpoint | client_settings(model, max_model_len, key_hint)``: settings for coding agents.
- ``registered | unreachable_hosts(default_host)``: hosts a delegated task could not reach;
  ``registered`` may be a list (the tasks of a phase), each element a registered result or
  ``{step, result, host}``.
- ``hosts | lost_message(nodes, step)``: one sentence naming them with their addresses;
  ``phase | lost_message(nodes)`` with a phase (``[{step, result, host}, ...]``) names the nodes the
  first task that lost one could not reach, with that task's step.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as _CATALOG
from ansible_collections.gb10.cluster.plugins.module_utils import serving as _H


def serve_request_errors(catalog: Any, model: Any, hosts: Any, group: Any, api_key_length: Any,
                         root: Any) -> list[str]:
    """Everything wrong with a serve.yml request that can be told on the control machine, and the
    catalog entry of the model (tensor parallel vs attention heads, launch settings, config)."""
    catalog = dict(catalog or {})
    name = str(model or "")
    errors = _H.request_errors(name, catalog, [str(h) for h in hosts or []], str(group), int(api_key_length or 0))
    if name in catalog:
        errors += _CATALOG.entry_errors(name, catalog[name], str(root))
    return errors


def serving_plan(catalog: Any, model: str, nodes: Any, pins: Any = None, options: Any = None) -> dict[str, Any]:
    try:
        return _H.serving_plan(str(model), dict(catalog), list(nodes), dict(pins or {}), dict(options or {}))
    except _H.ServingError as exc:
        return {"errors": list(exc.errors)}


def serving_nodes(hosts: Any, hostvars: Any) -> list[dict[str, Any]]:
    return _H.nodes_from_hostvars([str(h) for h in hosts], hostvars)


def kv_log(text: Any) -> dict[str, Any]:
    return _H.parse_kv_log(str(text or ""))


def kv_compare(planned: Any, logged: Any, tolerance: Any = 0.0) -> dict[str, Any]:
    return _H.kv_compare(int(planned), dict(logged or {}), float(tolerance))


def client_settings(endpoint: Any, model: Any, max_model_len: Any, key_hint: Any = "<API key from vault>") -> str:
    return _H.client_settings(str(endpoint), str(model), max_model_len, str(key_hint))


def unreachable_hosts(result: Any, default_host: Any = "") -> list[str]:
    return _H.unreachable_hosts(result, str(default_host or ""))


def lost_message(hosts: Any, nodes: Any, step: Any = "") -> str:
    if _H.is_phase(hosts):  # the step is the one of the task that lost the node
        return _H.phase_lost_message(list(hosts), list(nodes or []))
    return _H.lost_message([str(h) for h in hosts or []], list(nodes or []), str(step))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "serving_plan": serving_plan,
            "serve_request_errors": serve_request_errors,
            "kv_log": kv_log,
            "serving_nodes": serving_nodes,
            "kv_compare": kv_compare,
            "client_settings": client_settings,
            "unreachable_hosts": unreachable_hosts,
            "lost_message": lost_message,
        }
