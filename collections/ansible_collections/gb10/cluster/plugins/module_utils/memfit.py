"""Memory-fit planner: vLLM's own memory arithmetic, restated, for GB10 nodes.

Plain typed Python, no Ansible imports (``plugins/module_utils`` convention); the module
``gb10.cluster.memory_fit`` is a thin wrapper around :func:`plan_memory`.

What this reproduces, from the vLLM ``VLLM_RELEASE`` source (restated, not copied):

* KV cache specs per layer (``vllm/v1/kv_cache_interface.py``): full attention, sliding window,
  MLA and mamba / gated-DeltaNet state pages, KV-head replication when TP exceeds the KV heads.
* Block size selection (``vllm/platforms/cpu.py``, ``vllm/platforms/interface.py``
  ``_align_hybrid_block_size``): 16 on CUDA, 128 on the CPU build, 16 for MLA on the CPU build,
  raised for hybrid models so one attention page covers one mamba page, mamba page padded.
* Grouping, pool sizing and the logged capacity (``vllm/v1/core/kv_cache_utils.py``):
  ``_get_kv_cache_groups_uniform_page_size``, ``get_kv_cache_config_from_groups``,
  ``get_max_concurrency_for_kv_cache_config``, ``get_kv_cache_capacity``,
  ``_check_enough_kv_cache_memory`` (with the null block held back) and the binary search of the
  largest ``max_model_len`` that fits.
* Start-up admission (``vllm/v1/worker/utils.py`` ``request_memory``, ``vllm/utils/mem_utils.py``):
  ``requested = ceil(total * gpu_memory_utilization)`` must not exceed free memory, which on an
  integrated GPU (GB10) is the host's MemAvailable.

What is estimated (vLLM measures it with a profiling run that cannot be reproduced offline):
weights when no exact byte count is given, peak activations, non-torch memory (CUDA context,
NCCL) and CUDA-graph memory. Every estimate is named in the result and can be overridden.

The planner is split along its seams; this file is the one entry point (:func:`plan_memory`,
:class:`PlanError`) and holds the per-rank budget, the checks, the advice and the message:

* ``memfit_base.py``: the vLLM release, units, dtype sizes, :class:`PlanError`, small arithmetic.
* ``memfit_model.py``: config.json (its text part, architecture, layer mix) -> ``Model``.
* ``memfit_settings.py``: launch settings, vLLM's defaults and their checks -> ``Settings``.
* ``memfit_weights.py``: checkpoint tensors, quantisation, the share of each rank.
* ``memfit_kv.py``: KV cache specs, block size, groups, blocks per request.
* ``memfit_estimates.py``: activation peak, CUDA graphs, non-torch memory.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import (
    GIB,
    MIB,
    VLLM_RELEASE,
    PlanError,
    gib,
    human,
    load_json,
    pp_partition,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_estimates import (
    activation_estimate,
    cudagraph_estimate,
    non_torch_estimate,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_kv import build_kv_layout, kv_bytes_per_token
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_model import Model, parse_model
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_HOST_FLOOR_BYTES,
    GB10_CUDA_TOTAL_BYTES,
    GB10_PLANNING_MEM_AVAILABLE_BYTES,
    Settings,
    model_dtype,
    parse_settings,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_weights import (
    exact_weights,
    quant_scheme,
    weights_per_rank,
)

FRACTION_MODE_KV_TOLERANCE = 0.25
"""Fraction mode: vLLM sizes the KV pool from its own profiling run, in which everything the host does
counts (the same model has logged 10.6 and 18.1 GiB on two boots), so planned and logged KV tokens are
compared within this fraction and reported, never asserted."""

# The public names callers import from here (the memory_fit module, plan.yml's helpers, the bench).
__all__ = [
    "DEFAULT_GPU_MEMORY_UTILIZATION",
    "DEFAULT_HOST_FLOOR_BYTES",
    "FRACTION_MODE_KV_TOLERANCE",
    "GB10_CUDA_TOTAL_BYTES",
    "GB10_PLANNING_MEM_AVAILABLE_BYTES",
    "GIB",
    "MIB",
    "VLLM_RELEASE",
    "PlanError",
    "failed_lines",
    "plan_memory",
    "pp_partition",
]


def _derived_max_len(m: Model) -> int:
    return m.max_position or 0


def _non_kv(rank: Mapping[str, Any]) -> int:
    return int(
        rank["weights_bytes"]
        + rank["draft_bytes"]
        + rank["activation_peak_bytes"]
        + rank["non_torch_bytes"]
        + rank["cudagraph_bytes"]
    )


def choose_budget(s: Settings, per_rank: list[dict[str, Any]]) -> Settings:
    """Bytes mode on CUDA: the KV pool per rank and the utilization vLLM is started with, each unless given.

    KV pool = min over nodes of (MemAvailable - host floor - the non-KV memory of the node's ranks) /
    ranks on the node, rounded down to a MiB (one --kv-cache-memory-bytes for every rank; negative
    when it does not fit). Utilization (unless given) = what the busiest rank will hold (non-KV + KV
    pool) over total, rounded up to a hundredth, at most floor((MemAvailable - admission margin) /
    total) so that ceil(total x utilization) passes vLLM's start-up check; with the KV pool given
    in bytes vLLM uses the utilization for that check only.
    """
    nodes: dict[int, list[int]] = {}
    for r in per_rank:
        nodes.setdefault(r["node_rank"], []).append(_non_kv(r))
    kv = s.kv_cache_memory_bytes
    if kv is None:
        room = min((s.available - s.host_floor - sum(ranks)) // len(ranks) for ranks in nodes.values())
        kv = room // MIB * MIB
    util = s.util
    if not s.util_given:
        busiest = max(_non_kv(r) for r in per_rank) + max(0, kv)
        wanted = -(-100 * busiest // s.total)
        cap = 100 * (s.available - s.admission_margin) // s.total
        util = max(1, min(wanted, cap)) / 100
    return replace(s, kv_cache_memory_bytes=kv, util=util)


def _core(params: Mapping[str, Any], with_advice: bool) -> dict[str, Any]:
    if params.get("model_config") is None:
        raise PlanError("model_config is required: a config.json dict or its path.")
    cfg = load_json(params["model_config"], "model_config")
    m = parse_model(cfg, model_dtype(params))
    s = parse_settings(params, m, _derived_max_len(m))
    exact, has_mtp, weights_source = exact_weights(params, m)
    layout = build_kv_layout(m, s)
    weights, draft, checkpoint_total, estimated_total, _scale = weights_per_rank(m, s, exact, has_mtp)

    ranks = s.tp * s.pp
    ranks_per_node = ranks // s.nodes
    cuda = s.platform == "cuda"
    # What each rank holds besides its KV pool (vLLM's non-KV memory).
    per_rank: list[dict[str, Any]] = []
    for rank in range(ranks):
        stage = rank // s.tp
        layers_here = len(layout.rank_layers[stage])
        cg = s.cudagraph_override if s.cudagraph_override is not None else cudagraph_estimate(m, s, layers_here)
        per_rank.append(
            {
                "node_rank": rank // ranks_per_node,
                "rank": rank,
                "tp_rank": rank % s.tp,
                "pp_rank": stage,
                "layers": layers_here,
                "total_bytes": s.total,
                "mem_available_bytes": s.available,
                "host_floor_bytes": s.host_floor,
                # measured weights (loaded_weights_bytes) include the MTP draft
                "weights_bytes": int(weights[stage]) if s.loaded_weights is None else s.loaded_weights[rank],
                "draft_bytes": int(draft[stage]) if s.loaded_weights is None else 0,
                "activation_peak_bytes": (
                    s.activation_override if s.activation_override is not None else activation_estimate(m, s)
                ),
                "non_torch_bytes": s.non_torch_override if s.non_torch_override is not None else non_torch_estimate(s, ranks),
                "cudagraph_bytes": max(0, cg),
                "bytes_per_block": layout.bytes_per_block(stage),
            }
        )
    chosen = s.choose_kv
    if s.memory_mode == "bytes" and cuda:
        s = choose_budget(s, per_rank)
    avail_kv: list[int] = []
    for r in per_rank:
        non_kv = _non_kv(r)
        r["requested_bytes"] = requested = math.ceil(s.total * s.util)
        kv_avail = s.kv_cache_memory_bytes if s.kv_cache_memory_bytes is not None else requested - non_kv
        r["kv_budget_bytes"] = kv_avail
        avail_kv.append(kv_avail)

    # get_kv_cache_configs: per worker num_blocks, then the minimum over workers
    blocks_req = layout.blocks_per_request(s.max_model_len)
    rank_blocks = [max(0, a) // r["bytes_per_block"] for a, r in zip(avail_kv, per_rank)]
    num_blocks = min(rank_blocks)
    max_concurrency = num_blocks / blocks_req if blocks_req else 0.0
    kv_tokens = int(max_concurrency * s.max_model_len)

    def fits_len(length: int, rank_index: int) -> bool:
        bpb = int(per_rank[rank_index]["bytes_per_block"])
        check = avail_kv[rank_index] - bpb
        return bpb * layout.blocks_per_request(length) <= check

    def largest_fitting(upper: int) -> int:
        best = 0
        for idx in range(ranks):
            if avail_kv[idx] - per_rank[idx]["bytes_per_block"] <= 0 or not fits_len(1, idx):
                return 0
        lo, hi = 1, upper
        best = 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if all(fits_len(mid, idx) for idx in range(ranks)):
                best = mid
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    one_request_ok = all(
        avail_kv[i] - per_rank[i]["bytes_per_block"] > 0 and fits_len(s.max_model_len, i) for i in range(ranks)
    )
    upper = max(s.max_model_len, _derived_max_len(m))
    max_len_fit = largest_fitting(upper)

    checks: list[dict[str, Any]] = []
    node_ranks: dict[int, list[dict[str, Any]]] = {}
    for r in per_rank:
        r["kv_cache_bytes"] = num_blocks * r["bytes_per_block"]
        r["used_bytes"] = _non_kv(r) + r["kv_cache_bytes"]
        node_ranks.setdefault(r["node_rank"], []).append(r)
    per_node: list[dict[str, Any]] = []
    for node, members in sorted(node_ranks.items()):
        total_used = sum(x["used_bytes"] for x in members)
        requested = sum(x["requested_bytes"] for x in members)
        reserved = total_used if s.kv_cache_memory_bytes is not None else max(requested, total_used)
        if not cuda and s.kv_cache_memory_bytes is not None:
            reserved = total_used
        entry = {
            "node_rank": node,
            "ranks": [x["rank"] for x in members],
            "total_bytes": s.total,
            "mem_available_bytes": s.available,
            "host_floor_bytes": s.host_floor,
            "requested_bytes": requested,
            "weights_bytes": sum(x["weights_bytes"] for x in members),
            "draft_bytes": sum(x["draft_bytes"] for x in members),
            "activation_peak_bytes": sum(x["activation_peak_bytes"] for x in members),
            "non_torch_bytes": sum(x["non_torch_bytes"] for x in members),
            "cudagraph_bytes": sum(x["cudagraph_bytes"] for x in members),
            "kv_cache_bytes": sum(x["kv_cache_bytes"] for x in members),
            "used_bytes": total_used,
            "free_bytes": s.total - reserved,
            "host_left_bytes": s.available - reserved,
            "bytes_per_block": max(x["bytes_per_block"] for x in members),
            "kv_budget_bytes": min(x["kv_budget_bytes"] for x in members),
            "layers": members[0]["layers"],
        }
        per_node.append(entry)
        tag = f"node {node}"
        if s.kv_cache_memory_bytes is None or cuda:
            admitted = requested <= s.available - s.admission_margin
            margin = f" - {gib(s.admission_margin)} start-up margin" if s.admission_margin else ""
            checks.append(
                {
                    "name": f"admission ({tag})",
                    "ok": admitted,
                    "detail": (
                        f"requested ceil(total x {s.util:g}) = {gib(requested)} "
                        f"{'<=' if admitted else '>'} MemAvailable {gib(s.available)}{margin}"
                    ),
                }
            )
        if not cuda and s.kv_cache_memory_bytes is not None:
            # cpu_worker.determine_available_memory: the KV space must not exceed what is still
            # available once the node's workers have loaded their weights.
            non_kv = total_used - s.kv_cache_memory_bytes * len(members)
            room = s.available - non_kv
            ok = s.kv_cache_memory_bytes * len(members) <= room
            checks.append(
                {
                    "name": f"kv_cache_space ({tag})",
                    "ok": ok,
                    "detail": (
                        f"KV space {human(s.kv_cache_memory_bytes)} per rank x {len(members)} "
                        f"{'<=' if ok else '>'} {gib(room)} available after weights and runtime"
                    ),
                }
            )
        left = s.available - reserved
        checks.append(
            {
                "name": f"host floor ({tag})",
                "ok": left >= s.host_floor,
                "detail": f"{gib(left)} left to the host after vLLM's {gib(reserved)}, floor {gib(s.host_floor)}",
            }
        )
    worst = min(range(ranks), key=lambda i: avail_kv[i])
    checks.append(
        {
            "name": "non-KV memory fits",
            "ok": avail_kv[worst] > 0,
            "detail": (
                f"KV budget on rank {worst}: {gib(avail_kv[worst])} "
                + (
                    "(MemAvailable - host floor - weights - draft - activations - non-torch - CUDA graphs)"
                    if chosen
                    else "(kv_cache_memory_bytes)"
                    if s.kv_cache_memory_bytes is not None
                    else "(requested - weights - draft - activations - non-torch - CUDA graphs)"
                )
            ),
        }
    )
    need = max(per_rank[i]["bytes_per_block"] * blocks_req for i in range(ranks))
    checks.append(
        {
            "name": "one request at max_model_len",
            "ok": one_request_ok,
            "detail": (
                f"{blocks_req} blocks x {human(per_rank[worst]['bytes_per_block'])} = {human(need)} needed for "
                f"{s.max_model_len:,} tokens; largest max_model_len that fits: {max_len_fit:,}"
            ),
        }
    )
    fits = all(c["ok"] for c in checks)

    kv_tok_rank, kv_tok_model = kv_bytes_per_token(m, s, layout)

    result: dict[str, Any] = {
        "vllm_release": VLLM_RELEASE,
        "platform": s.platform,
        "architecture": m.architecture,
        "fits": fits,
        "tensor_parallel_size": s.tp,
        "pipeline_parallel_size": s.pp,
        "nodes": s.nodes,
        "max_model_len": s.max_model_len,
        "max_num_seqs": s.max_num_seqs,
        "max_num_batched_tokens": s.max_num_batched_tokens,
        "enable_prefix_caching": s.enable_prefix_caching,
        "kv_cache_dtype": s.kv_cache_dtype,
        "gpu_memory_utilization": s.util,
        "speculative_method": s.spec_method,
        "num_speculative_tokens": s.spec_tokens,
        "block_size": layout.block_size,
        "num_blocks": num_blocks,
        "blocks_per_request": blocks_req,
        "bytes_per_block": max(r["bytes_per_block"] for r in per_rank),
        "kv_cache_groups": [
            {"kind": g.spec.kind, "layers": len(g.layers), "block_size": g.spec.block_size, "page_bytes": g.spec.page_size}
            for g in layout.groups
        ],
        "mamba_page_bytes": layout.mamba_page,
        "kv_cache_tokens": kv_tokens,
        "max_concurrency": max_concurrency,
        "kv_bytes_per_token": kv_tok_rank,
        "kv_bytes_per_token_model": kv_tok_model,
        "kv_cache_bytes": max(r["kv_cache_bytes"] for r in per_rank),
        "weights_bytes": int(checkpoint_total),
        "weights_source": weights_source,
        "weights_estimated_bytes": int(estimated_total),
        "max_model_len_that_fits": max_len_fit,
        "per_node": per_node,
        "per_rank": per_rank,
        "checks": checks,
        "estimates": {
            "activation_peak_bytes": "given" if s.activation_override is not None else "estimated",
            "cudagraph_bytes": "given" if s.cudagraph_override is not None else "estimated",
            "non_torch_bytes": "given" if s.non_torch_override is not None else "estimated",
            "weights_bytes": weights_source,
            "kv_budget": (
                "planner (bytes mode)"
                if chosen
                else "given (kv_cache_memory_bytes)"
                if s.kv_cache_memory_bytes is not None
                else "derived"
            ),
            "loaded_weights_bytes": "given" if s.loaded_weights is not None else "not given",
        },
    }
    result.update(_memory_flags(s, chosen, per_rank, blocks_req))
    fixes = _advice(params, result, m, s) if (with_advice and not fits) else []
    result["fixes"] = fixes
    result["advice"] = [fix["advice"] for fix in fixes]
    result["message"] = _message(result, m, s)
    return result


def _memory_flags(s: Settings, chosen: bool, per_rank: list[dict[str, Any]], blocks_req: int) -> dict[str, Any]:
    """How vLLM is to be started (memory flags), where each figure came from, and how exactly its log
    can be expected to agree with the plan."""
    flags: dict[str, Any] = {"gpu_memory_utilization": s.util}
    bytes_mode = s.memory_mode == "bytes"
    if bytes_mode:
        flags["kv_cache_memory_bytes"] = max(0, s.kv_cache_memory_bytes or 0)
    needed = None
    if chosen:
        # the smallest MemAvailable with room for the host floor and one request at max_model_len
        # (vLLM holds one block back), rounded up to a MiB
        per_node: dict[int, int] = {}
        for r in per_rank:
            one = _non_kv(r) + r["bytes_per_block"] * (blocks_req + 1) + MIB
            per_node[r["node_rank"]] = per_node.get(r["node_rank"], 0) + one
        needed = -(-(max(per_node.values()) + s.host_floor) // MIB) * MIB
    return {
        "memory_mode": s.memory_mode,
        "kv_cache_memory_bytes_per_rank": flags.get("kv_cache_memory_bytes"),
        "kv_cache_memory_source": ("planner" if chosen else "given") if bytes_mode else None,
        "gpu_memory_utilization_source": (
            "given" if s.util_given else "planner" if bytes_mode and s.platform == "cuda" else "vLLM default"
        ),
        "admission_margin_bytes": s.admission_margin,
        "mem_available_needed_bytes": needed,
        # what vLLM is started with: launch settings by vLLM's names (--kv-cache-memory-bytes, ...)
        "vllm_memory_args": flags,
        # bytes mode: the KV pool is the plan's to the byte, so its logged token count must match;
        # fraction mode: vLLM sizes the pool from a profiling run, compare within this fraction
        "kv_tokens_tolerance": 0.0 if bytes_mode else FRACTION_MODE_KV_TOLERANCE,
    }


def _try(params: Mapping[str, Any], **changes: Any) -> dict[str, Any] | None:
    trial = dict(params)
    trial.update(changes)
    try:
        return _core(trial, with_advice=False)
    except PlanError:
        return None


def _fix(advice: str, kind: str = "settings", **changes: Any) -> dict[str, Any]:
    """One piece of advice and the planner parameters that carry it out (None = back to the default)."""
    return {"advice": advice, "kind": kind, "set": changes}


def _advice(params: Mapping[str, Any], result: dict[str, Any], m: Model, s: Settings) -> list[dict[str, Any]]:
    """What would make it fit, each change re-planned on its own (unless it says otherwise)."""
    fixes: list[dict[str, Any]] = []
    failed = {c["name"].split(" (")[0] for c in result["checks"] if not c["ok"]}
    fit_len = result["max_model_len_that_fits"]
    # the most vLLM may hold: the host floor and the start-up margin below MemAvailable
    limit = min(s.available - s.host_floor, s.available - s.admission_margin)
    if s.memory_mode == "fraction" and failed & {"admission", "host floor"}:
        util = math.floor(limit / s.total * 100) / 100
        if 0 < util < s.util:
            trial = _try(params, gpu_memory_utilization=util)
            alone = "" if trial and trial["fits"] else " (needed, not enough alone)"
            fixes.append(
                _fix(
                    f"lower gpu_memory_utilization to {util:.2f}{alone} (MemAvailable {gib(s.available)}, host floor "
                    f"{gib(s.host_floor)}); dropping the page cache before launch raises MemAvailable",
                    gpu_memory_utilization=util,
                )
            )
        if s.platform == "cuda":
            trial = _try(params, memory_mode="bytes", gpu_memory_utilization=None)
            if trial and trial["fits"]:
                fixes.append(
                    _fix(
                        "let the planner size the KV pool in bytes (memory mode bytes, no gpu_memory_utilization): "
                        f"{human(trial['kv_cache_memory_bytes_per_rank'])} per rank at utilization "
                        f"{trial['gpu_memory_utilization']:g}",
                        memory_mode="bytes",
                        gpu_memory_utilization=None,
                    )
                )
    if s.memory_mode == "fraction" and not failed & {"admission", "host floor"} and s.kv_cache_memory_bytes is None:
        # the largest utilisation admission and the host floor still allow
        ceiling = math.floor(limit / s.total * 100) / 100
        if s.util < ceiling <= 1:
            trial = _try(params, gpu_memory_utilization=ceiling)
            if trial and trial["fits"]:
                fixes.append(
                    _fix(
                        f"raise gpu_memory_utilization to {ceiling:.2f} (still leaves the {gib(s.host_floor)} host floor)",
                        gpu_memory_utilization=ceiling,
                    )
                )
    if s.memory_mode == "bytes" and failed & {"admission", "host floor"}:
        fixes.extend(_bytes_mode_fixes(params, result, s, failed))
    only_len = failed == {"one request at max_model_len"}
    if fit_len and fit_len < s.max_model_len and ("one request at max_model_len" in failed):
        trial = _try(params, max_model_len=fit_len)
        if trial and trial["fits"]:
            fixes.append(_fix(f"set max_model_len to {fit_len} (the largest that fits one request)", max_model_len=fit_len))
        elif only_len:
            fixes.append(_fix(f"set max_model_len to at most {fit_len}", max_model_len=fit_len))
    if s.kv_cache_dtype not in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        trial = _try(params, kv_cache_dtype="fp8")
        if trial and trial["fits"]:
            fixes.append(_fix("use kv_cache_dtype fp8 (halves the KV cache per token)", kv_cache_dtype="fp8"))
    if s.max_num_batched_tokens > 2048 and s.activation_override is None:
        trial = _try(params, max_num_batched_tokens=2048)
        if trial and trial["fits"]:
            fixes.append(
                _fix("lower max_num_batched_tokens to 2048 (smaller activation peak)", max_num_batched_tokens=2048)
            )
    if s.spec_tokens and s.spec_method == "mtp":
        trial = _try(params, speculative_config=None)
        if trial and trial["fits"]:
            fixes.append(
                _fix(
                    "turn MTP off (no draft weights, no speculative blocks; slower decoding)",
                    speculative_config=None,
                )
            )
    world = s.tp * s.pp
    for tp in (2, 4, 8):
        if tp <= s.tp or tp * s.pp > 8 or m.num_heads % tp:
            continue
        nodes = None if s.nodes == world else s.nodes * tp // s.tp
        trial = _try(params, tensor_parallel_size=tp, nodes=nodes)
        if trial and trial["fits"]:
            fixes.append(
                _fix(f"use {tp * s.pp} nodes (tensor_parallel_size {tp})", tensor_parallel_size=tp, nodes=tp * s.pp)
            )
            break
    if "non-KV memory fits" in failed or not fixes:
        fixes.extend(_quantisation_fix(params, m))
    return fixes


def _bytes_mode_fixes(
    params: Mapping[str, Any], result: Mapping[str, Any], s: Settings, failed: set[str]
) -> list[dict[str, Any]]:
    """Bytes mode with the KV pool or the utilization given: what the planner would choose instead."""
    fixes: list[dict[str, Any]] = []
    chosen = _try(params, kv_cache_memory_bytes=None, gpu_memory_utilization=None, memory_mode="bytes")
    if chosen is None:
        return fixes
    if result["kv_cache_memory_source"] == "given" and "host floor" in failed and chosen["kv_cache_memory_bytes_per_rank"]:
        kv = chosen["kv_cache_memory_bytes_per_rank"]
        trial = _try(params, kv_cache_memory_bytes=kv)
        if trial and trial["fits"]:
            fixes.append(
                _fix(f"lower the KV pool to {human(kv)} per rank (the most that leaves the host floor)", kv_cache_memory_bytes=kv)
            )
    if s.util_given and "admission" in failed and chosen["fits"]:
        fixes.append(
            _fix(
                f"leave gpu_memory_utilization to the planner ({chosen['gpu_memory_utilization']:g} passes admission)",
                gpu_memory_utilization=None,
            )
        )
    return fixes


def _quantisation_fix(params: Mapping[str, Any], m: Model) -> list[dict[str, Any]]:
    current = quant_scheme(m.quant).name
    options = [
        ("FP8", {"quant_method": "fp8", "weight_block_size": [128, 128]}),
        ("NVFP4", {"quant_method": "modelopt", "quant_algo": "NVFP4"}),
        ("INT4 (AutoRound/GPTQ, group 128)", {"quant_method": "auto-round", "bits": 4, "group_size": 128}),
    ]
    order = {"bf16": 0, "fp8": 1, "nvfp4": 2, "mxfp4": 2, "int": 3}
    cfg = load_json(params["model_config"], "model_config")
    for rank, (label, quant) in enumerate(options, start=1):
        if rank <= order.get(current, 0):
            continue
        trial_cfg = dict(cfg)
        trial_cfg["quantization_config"] = quant
        if isinstance(trial_cfg.get("text_config"), dict):
            text = dict(trial_cfg["text_config"])
            text.pop("quantization_config", None)
            trial_cfg["text_config"] = text
        trial = _try(params, model_config=trial_cfg, weights_bytes=None, safetensors_index=None, loaded_weights_bytes=None)
        if trial and trial["fits"]:
            return [
                _fix(
                    f"use a smaller quantisation: the {label} checkpoint (~{gib(trial['weights_bytes'])})",
                    kind="quantisation",
                    quantisation=label,
                )
            ]
    return []


def _message(r: dict[str, Any], m: Model, s: Settings) -> str:
    verdict = "FITS" if r["fits"] else "DOES NOT FIT"
    # the tightest node: the smallest KV budget (PP stages differ: embeddings, lm_head, MTP draft)
    node = min(r["per_node"], key=lambda n: (n["kv_budget_bytes"], -n["used_bytes"]))
    where = "Per node" if len(r["per_node"]) == 1 or s.pp == 1 else f"Tightest node ({node['node_rank']})"
    lines = [
        (
            f"{m.architecture} on {s.nodes} node(s), tp={s.tp} pp={s.pp}, {s.platform}, "
            f"vLLM {VLLM_RELEASE} accounting: {verdict}."
        ),
    ]
    if r["kv_cache_memory_source"] == "planner":
        budget = (
            f"bytes mode: KV pool {human(s.kv_cache_memory_bytes or 0)} per rank (planner: MemAvailable "
            f"{gib(s.available)} - host floor {gib(s.host_floor)} - the rest), utilization {s.util:g} "
            f"({r['gpu_memory_utilization_source']}) requests {gib(node['requested_bytes'])} of {gib(s.total)}"
        )
    elif s.kv_cache_memory_bytes is None:
        budget = (
            f"requested {gib(node['requested_bytes'])} of {gib(s.total)} (utilization {s.util:g}), "
            f"MemAvailable {gib(s.available)}"
        )
    else:
        budget = f"KV pool fixed at {human(s.kv_cache_memory_bytes)} per rank (kv_cache_memory_bytes)"
        if s.platform == "cuda":
            budget += (
                f", utilization {s.util:g} ({r['gpu_memory_utilization_source']}) requests "
                f"{gib(node['requested_bytes'])} of {gib(s.total)} at start-up"
            )
    lines.append(f"Per node: {budget}.")
    est = r["estimates"]

    def how(key: str) -> str:
        return "(est.)" if est[key] == "estimated" else "(given)"

    lines.append(
        f"{where}: weights {human(node['weights_bytes'])}"
        + (" (measured, draft included)" if s.loaded_weights is not None else "")
        + f" + draft {human(node['draft_bytes'])} + activations "
        f"{human(node['activation_peak_bytes'])} {how('activation_peak_bytes')} + non-torch "
        f"{human(node['non_torch_bytes'])} {how('non_torch_bytes')} + CUDA graphs {human(node['cudagraph_bytes'])} "
        f"{how('cudagraph_bytes')} -> KV cache {human(node['kv_cache_bytes'])}; "
        f"{gib(node['host_left_bytes'])} left to the host (floor {gib(s.host_floor)})."
    )
    lines.append(
        f"KV cache: block {r['block_size']} tokens, {r['num_blocks']:,} blocks of {human(r['bytes_per_block'])}, "
        f"{r['blocks_per_request']} blocks per request -> KV cache size: {r['kv_cache_tokens']:,} tokens, "
        f"maximum concurrency for {s.max_model_len:,} tokens per request: {r['max_concurrency']:.2f}x."
    )
    lines.extend(f"{line}." for line in failed_lines(r["checks"]))
    if not r["fits"] and r["mem_available_needed_bytes"]:
        lines.append(
            f"It would fit from MemAvailable {gib(r['mem_available_needed_bytes'])} per node (host floor "
            f"{gib(s.host_floor)} and one request at max_model_len {s.max_model_len:,})."
        )
    if not r["fits"]:
        if r["advice"]:
            lines.append("Advice: " + "; or ".join(r["advice"]) + ".")
        else:
            lines.append("Advice: no single change found that makes it fit; use more nodes or a smaller model.")
    return "\n".join(lines)


def failed_lines(checks: list[Mapping[str, Any]]) -> list[str]:
    """"FAILED <check> (nodes 0, 1): <detail>" per failed check; the same failure on several nodes once."""
    merged: dict[tuple[str, str], list[str]] = {}
    for c in checks:
        if c.get("ok", True):
            continue
        base, _, node_tag = str(c.get("name")).partition(" (")
        merged.setdefault((base, str(c.get("detail"))), []).append(node_tag.rstrip(")").removeprefix("node "))
    lines = []
    for (base, detail), nodes in merged.items():
        tags = [t for t in nodes if t]
        where = "" if not tags else f" (node {tags[0]})" if len(tags) == 1 else f" (nodes {', '.join(tags)})"
        lines.append(f"FAILED {base}{where}: {detail}")
    return lines


def plan_memory(params: Mapping[str, Any]) -> dict[str, Any]:
    """Plan one vLLM deployment's memory; see the module docstring and docs/memory-planner.md.

    Raises PlanError (one sentence) for invalid input.
    """
    if not isinstance(params, Mapping):
        raise PlanError("plan_memory takes a mapping of parameters.")
    try:
        return _core(params, with_advice=True)
    except KeyError as exc:
        raise PlanError(f"model_config lacks the field {exc.args[0]!r} the planner needs.") from exc
