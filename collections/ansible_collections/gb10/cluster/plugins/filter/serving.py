"""Filters for the serving play (logic in plugins/module_utils/serving.py).

- ``catalog | serving_plan(model, nodes, pins, options)``: the containers that serve a model,
  or ``{'errors': [...]}`` (one sentence per problem).
- ``catalog | serve_request_errors(model, hosts, group, api_key_length, root)``: what is wrong with a
  serve.yml request (model, nodes, API key, the model's catalog entry), one sentence each.
- ``hosts | serving_nodes(hostvars)``: ``{host, mgmt_ip, fabric_ip, fabric, nccl_env}`` per host.
- ``plan | serving_render(nodes, memory, roce_class)``: one object per container (vLLM and Ray) with its argv.
- ``plan | serving_memory(catalog, root)``: the memory planner on the plan's layout with the GB10 planning
  defaults for the node figures (what a render can say without measuring a node).
- ``plan | serving_memory_args(vllm_memory_args)``: the plan with the memory planner's flags in vLLM's argv
  (CUDA: ``--kv-cache-memory-bytes`` and ``--gpu-memory-utilization``; the CPU build: unchanged).
- ``catalog | catalog_layout(model, nodes, tp, pp)``: the catalog's layout for ``nodes`` (``{}`` when none
  applies or TP/PP are given), for plan.yml.
- ``log_text | kv_log``: what vLLM logged about its KV cache.
- ``planned_tokens | kv_compare(logged)``: planner vs vLLM, with a printable line.
- ``endpoint | client_settings(model, max_model_len, key_hint)``: settings for coding agents.
- ``registered | unreachable_hosts(default_host)``: hosts a delegated task could not reach;
  ``registered`` may be a list (the tasks of a phase), each element a registered result or
  ``{step, result, host}``.
- ``hosts | node_read_results(hostvars, name)``: each host's registered read ``name`` (serve.yml's node
  play) as one delegated loop's registered result (``{'results': [{item: host, ...}]}``).
- ``hosts | lost_message(nodes, step)``: one sentence naming them with their addresses;
  ``phase | lost_message(nodes)`` with a phase (``[{step, result, host}, ...]``) names the nodes the
  first task that lost one could not reach, with that task's step.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleFilterError

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
        entry_problems = _CATALOG.entry_errors(name, catalog[name], str(root))
        errors += entry_problems
        text = None
        if not entry_problems:
            try:
                text = _CATALOG.text_config(_CATALOG.load_model_config(os.path.join(str(root), catalog[name]["config"])))
            except (ValueError, KeyError, TypeError):
                text = None
        errors += _H.serving_errors(name, catalog[name], text)
    return errors


def serving_plan(catalog: Any, model: str, nodes: Any, pins: Any = None, options: Any = None) -> dict[str, Any]:
    try:
        return _H.serving_plan(str(model), dict(catalog), list(nodes), dict(pins or {}), dict(options or {}))
    except _H.ServingError as exc:
        return {"errors": list(exc.errors)}


def serving_nodes(hosts: Any, hostvars: Any) -> list[dict[str, Any]]:
    return _H.nodes_from_hostvars([str(h) for h in hosts], hostvars)


def serving_render(plan: Any, nodes: Any, memory: Any = None, roce: Any = None) -> list[dict[str, Any]]:
    return _H.render_containers(dict(plan), list(nodes or []), dict(memory or {}), dict(roce or {}))


def serving_memory(plan: Any, catalog: Any, root: Any) -> dict[str, Any]:
    """The planner on the plan's layout, node figures left to its GB10 planning defaults (not measured)."""
    from ansible_collections.gb10.cluster.plugins.module_utils import memfit as _MEMFIT

    plan = dict(plan)
    entry = dict(catalog)[plan["model"]]
    note = ("not measured: planned with the planner's GB10 planning defaults (node total "
            f"{_MEMFIT.GB10_CUDA_TOTAL_BYTES} bytes = what CUDA reports on a GB10, MemAvailable "
            f"{_MEMFIT.GB10_PLANNING_MEM_AVAILABLE_BYTES} bytes = a headless GB10 (bytes mode), host floor "
            f"{_MEMFIT.DEFAULT_HOST_FLOOR_BYTES} bytes); serve.yml measures every node before the launch")
    try:
        result = _MEMFIT.plan_memory(_H.memory_params(plan, entry, str(root)))
    except ValueError as exc:
        return {"measured": False, "note": note, "fits": None, "error": str(exc)}
    return {"measured": False, "note": note, "fits": bool(result.get("fits")),
            "kv_cache_tokens": result.get("kv_cache_tokens"), "max_concurrency": result.get("max_concurrency"),
            "memory_mode": result.get("memory_mode"),
            "kv_cache_memory_bytes_per_rank": result.get("kv_cache_memory_bytes_per_rank"),
            "gpu_memory_utilization": result.get("gpu_memory_utilization"),
            # the flags the render puts into vLLM's argv (serving_memory_args), only for a plan that fits
            "vllm_memory_args": dict(result.get("vllm_memory_args") or {}) if result.get("fits") else {},
            "node_memory_total_bytes": _MEMFIT.GB10_CUDA_TOTAL_BYTES,
            "host_floor_bytes": _MEMFIT.DEFAULT_HOST_FLOOR_BYTES,
            "tensor_parallel_size": plan["tensor_parallel_size"], "pipeline_parallel_size": plan["pipeline_parallel_size"]}


def serving_memory_args(plan: Any, memory_args: Any) -> dict[str, Any]:
    return _H.with_memory_args(dict(plan), dict(memory_args or {}))


def catalog_layout(catalog: Any, model: Any, nodes: Any, tensor_parallel_size: Any = None,
                   pipeline_parallel_size: Any = None) -> dict[str, Any]:
    """``{tp, pp, nodes, rule}`` from the catalog's serving.layouts for ``nodes``, or ``{}``."""
    catalog = dict(catalog or {})
    name = str(model or "")
    given = [v for v in (tensor_parallel_size, pipeline_parallel_size) if v not in (None, "")]
    if given or nodes in (None, "") or name not in catalog:
        return {}
    layouts, errors = _H.layouts_of(name, catalog[name])
    count = _H.positive_int(nodes)
    if errors or count is None or count not in layouts:
        return {}
    return dict(layouts[count], rule=f"the catalog's layout for {count} nodes")


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


def serving_node_reads(result: Any) -> dict[str, Any]:
    return _H.node_reads(result)


def node_read_results(hosts: Any, hostvars: Any, name: Any) -> dict[str, Any]:
    names = [str(h) for h in hosts or []]
    reads = {h: hostvars[h][str(name)] for h in names if h in hostvars and str(name) in hostvars[h]}
    try:
        return _H.node_read_results(names, reads)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


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
            "serving_render": serving_render,
            "serving_memory": serving_memory,
            "serving_memory_args": serving_memory_args,
            "catalog_layout": catalog_layout,
            "serving_node_reads": serving_node_reads,
            "node_read_results": node_read_results,
        }
