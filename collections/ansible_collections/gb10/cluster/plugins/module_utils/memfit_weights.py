"""Memory-fit planner, the weights: every tensor of the checkpoint, its bytes under the model's
quantisation, and the share each rank and pipeline stage loads.

Exact when the checkpoint size is given (``weights_bytes``, or the safetensors index's
``metadata.total_size``): the estimate then only splits that size over ranks. Plain typed Python, no
Ansible imports.
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import (
    DTYPE_BYTES,
    PlanError,
    cdiv,
    int_param,
    load_json,
    pp_partition,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_model import Model
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import Settings


@dataclass(frozen=True)
class Tensor:
    name: str
    out: int
    inp: int  # 1 for vectors
    linear: bool  # a Linear weight that a quantisation scheme may convert
    shard: str  # "tp" (split over TP), "rep" (replicated), "kv" (KV heads, replicated past kv heads)
    layer: int | None  # decoder layer index; None for embeddings / head / final norm
    mtp: bool = False
    expert: bool = False


@dataclass
class QuantScheme:
    name: str
    ignore: tuple[str, ...] = ()
    block: tuple[int, int] | None = None  # fp8 weight_block_size
    group_size: int = 128
    bits: int = 4
    experts_only: bool = False
    zeros: bool = True
    g_idx: bool = False


def quant_scheme(quant: Mapping[str, Any]) -> QuantScheme:
    if not quant:
        return QuantScheme("bf16")
    nested = quant.get("quantization")
    if isinstance(nested, Mapping):  # modelopt hf_quant_config.json layout
        quant = {**quant, **nested}
    method = str(quant.get("quant_method") or "").lower().replace("_", "-")
    if not method and quant.get("quant_algo"):
        method = "modelopt"
    ignore_raw = (
        quant.get("modules_to_not_convert")
        or quant.get("ignore")
        or quant.get("ignored_layers")
        or quant.get("exclude_modules")
        or []
    )
    ignore = tuple(str(x) for x in ignore_raw) if isinstance(ignore_raw, list) else ()
    if method in ("fp8", "fbgemm-fp8"):
        block = quant.get("weight_block_size")
        pair = (int(block[0]), int(block[1])) if isinstance(block, list | tuple) and len(block) == 2 else None
        return QuantScheme("fp8", ignore, pair)
    if method in ("mxfp4", "gpt-oss-mxfp4"):
        return QuantScheme("mxfp4", ignore, experts_only=True)
    if method in ("modelopt", "modelopt-fp4"):
        algo = str(quant.get("quant_algo") or (quant.get("quantization") or {}).get("quant_algo") or "")
        if method == "modelopt-fp4" or "NVFP4" in algo.upper():
            return QuantScheme("nvfp4", ignore)
        if "FP8" in algo.upper():
            return QuantScheme("fp8", ignore)
        raise PlanError(f"modelopt quant_algo {algo or '(none)'} is not a quantisation the planner knows.")
    if method == "compressed-tensors":
        fmt = str(quant.get("format") or "")
        groups = quant.get("config_groups") or {}
        weights: Mapping[str, Any] = {}
        for group in groups.values() if isinstance(groups, Mapping) else []:
            if isinstance(group, Mapping) and isinstance(group.get("weights"), Mapping):
                weights = group["weights"]
                fmt = str(group.get("format") or fmt)
                break
        bits = int(weights.get("num_bits") or 8)
        wtype = str(weights.get("type") or "int")
        if "nvfp4" in fmt or (bits == 4 and wtype == "float"):
            return QuantScheme("nvfp4", ignore)
        if "mxfp4" in fmt:
            return QuantScheme("mxfp4", ignore)
        if bits == 8 and wtype == "float":
            return QuantScheme("fp8", ignore)
        group = weights.get("group_size")
        return QuantScheme(
            "int", ignore, group_size=int(group or 128), bits=bits, zeros=not bool(weights.get("symmetric", True))
        )
    if method in ("gptq", "gptq-marlin", "awq", "awq-marlin", "auto-round", "intel/auto-round", "autoround"):
        bits = int(quant.get("bits") or quant.get("w_bit") or 4)
        group = int(quant.get("group_size") or quant.get("q_group_size") or 128)
        if group <= 0:
            group = 1 << 30
        return QuantScheme("int", ignore, group_size=group, bits=bits, g_idx=method.startswith("gptq"))
    raise PlanError(
        f"quantization method {quant.get('quant_method')!r} is not one the planner knows "
        "(fp8, modelopt FP8/NVFP4, compressed-tensors, mxfp4, gptq, awq, auto-round); pass weights_bytes."
    )


def _matches(name: str, patterns: Sequence[str]) -> bool:
    short = name.removeprefix("model.")
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.search(pattern[3:], name) or re.search(pattern[3:], short):
                return True
        elif "*" in pattern or "?" in pattern:
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(short, pattern):
                return True
        else:
            bare = pattern.removeprefix("model.")
            if name == pattern or short == bare or f".{bare}." in f".{short}." or short.startswith(bare + "."):
                return True
    return False


def _tensor_bytes(t: Tensor, scheme: QuantScheme, model_dtype_bytes: int) -> float:
    n = t.out * t.inp
    quantize = t.linear and scheme.name != "bf16" and not _matches(t.name, scheme.ignore)
    if quantize and scheme.experts_only and not t.expert:
        quantize = False
    if not quantize:
        return n * model_dtype_bytes
    if scheme.name == "fp8":
        if scheme.block:
            bo, bi = scheme.block
            return n + cdiv(t.out, bo) * cdiv(t.inp, bi) * 4
        return n + t.out * 4
    if scheme.name == "nvfp4":
        # 4-bit values, one fp8 scale per 16 values, fp32 global weight and input scales.
        return n / 2 + cdiv(t.inp, 16) * t.out + 8
    if scheme.name == "mxfp4":
        # 4-bit values, one e8m0 scale per 32 values.
        return n / 2 + cdiv(t.inp, 32) * t.out
    # integer weight-only (GPTQ / AWQ / AutoRound): packed values + fp16 scales (+ packed zeros).
    groups = cdiv(t.inp, min(scheme.group_size, t.inp))
    size = n * scheme.bits / 8 + groups * t.out * 2
    if scheme.zeros:
        size += groups * t.out * scheme.bits / 8
    if scheme.g_idx:
        size += t.inp * 4
    return size


def _attention_tensors(m: Model, i: int, prefix: str, mtp: bool) -> list[Tensor]:
    h = m.hidden
    out: list[Tensor] = []
    if m.use_mla:
        q_dim = m.num_heads * (m.qk_nope_dim + m.qk_rope_dim)
        if m.q_lora_rank:
            out += [
                Tensor(f"{prefix}.self_attn.q_a_proj", m.q_lora_rank, h, True, "rep", i, mtp),
                Tensor(f"{prefix}.self_attn.q_a_layernorm", m.q_lora_rank, 1, False, "rep", i, mtp),
                Tensor(f"{prefix}.self_attn.q_b_proj", q_dim, m.q_lora_rank, True, "tp", i, mtp),
            ]
        else:
            out.append(Tensor(f"{prefix}.self_attn.q_proj", q_dim, h, True, "tp", i, mtp))
        out += [
            Tensor(
                f"{prefix}.self_attn.kv_a_proj_with_mqa", m.kv_lora_rank + m.qk_rope_dim, h, True, "rep", i, mtp
            ),
            Tensor(f"{prefix}.self_attn.kv_a_layernorm", m.kv_lora_rank, 1, False, "rep", i, mtp),
            Tensor(
                f"{prefix}.self_attn.kv_b_proj",
                m.num_heads * (m.qk_nope_dim + m.v_head_dim),
                m.kv_lora_rank,
                True,
                "tp",
                i,
                mtp,
            ),
            Tensor(f"{prefix}.self_attn.o_proj", h, m.num_heads * m.v_head_dim, True, "tp", i, mtp),
        ]
        return out
    q = m.num_heads * m.head_dim * (2 if m.attn_output_gate else 1)
    kv = m.num_kv_heads * m.head_dim
    out += [
        Tensor(f"{prefix}.self_attn.q_proj", q, h, True, "tp", i, mtp),
        Tensor(f"{prefix}.self_attn.k_proj", kv, h, True, "kv", i, mtp),
        Tensor(f"{prefix}.self_attn.v_proj", kv, h, True, "kv", i, mtp),
        Tensor(f"{prefix}.self_attn.o_proj", h, m.num_heads * m.head_dim, True, "tp", i, mtp),
    ]
    if m.qkv_bias:
        out += [
            Tensor(f"{prefix}.self_attn.q_proj.bias", q, 1, False, "tp", i, mtp),
            Tensor(f"{prefix}.self_attn.k_proj.bias", kv, 1, False, "kv", i, mtp),
            Tensor(f"{prefix}.self_attn.v_proj.bias", kv, 1, False, "kv", i, mtp),
        ]
    if m.o_bias:
        out.append(Tensor(f"{prefix}.self_attn.o_proj.bias", h, 1, False, "rep", i, mtp))
    if m.sinks:
        out.append(Tensor(f"{prefix}.self_attn.sinks", m.num_heads, 1, False, "tp", i, mtp))
    if m.family in ("qwen3", "qwen3_moe", "qwen3_next", "qwen3_5"):
        out.append(Tensor(f"{prefix}.self_attn.q_norm", m.head_dim, 1, False, "rep", i, mtp))
        out.append(Tensor(f"{prefix}.self_attn.k_norm", m.head_dim, 1, False, "rep", i, mtp))
    return out


def _linear_attention_tensors(m: Model, i: int, prefix: str) -> list[Tensor]:
    h = m.hidden
    key_dim = m.lin_k_heads * m.lin_k_dim
    value_dim = m.lin_v_heads * m.lin_v_dim
    conv_dim = 2 * key_dim + value_dim
    p = f"{prefix}.linear_attn"
    return [
        Tensor(f"{p}.in_proj_qkvz", 2 * key_dim + 2 * value_dim, h, True, "tp", i),
        Tensor(f"{p}.in_proj_ba", 2 * m.lin_v_heads, h, True, "tp", i),
        Tensor(f"{p}.conv1d", conv_dim, m.lin_conv_kernel, False, "tp", i),
        Tensor(f"{p}.A_log", m.lin_v_heads, 1, False, "tp", i),
        Tensor(f"{p}.dt_bias", m.lin_v_heads, 1, False, "tp", i),
        Tensor(f"{p}.norm", m.lin_v_dim, 1, False, "rep", i),
        Tensor(f"{p}.out_proj", h, value_dim, True, "tp", i),
    ]


def _mlp_tensors(m: Model, i: int, prefix: str, mtp: bool, moe: bool) -> list[Tensor]:
    h = m.hidden
    if not moe:
        inter = m.intermediate
        return [
            Tensor(f"{prefix}.mlp.gate_proj", inter, h, True, "tp", i, mtp),
            Tensor(f"{prefix}.mlp.up_proj", inter, h, True, "tp", i, mtp),
            Tensor(f"{prefix}.mlp.down_proj", h, inter, True, "tp", i, mtp),
        ]
    e, mi = m.num_experts, m.moe_intermediate
    router = "router" if m.family == "gpt_oss" else "gate"
    out = [Tensor(f"{prefix}.mlp.{router}", e, h, False, "rep", i, mtp)]
    if m.router_bias:
        out.append(Tensor(f"{prefix}.mlp.{router}.bias", e, 1, False, "rep", i, mtp))
    # experts: gate+up (2*mi x h) and down (h x mi), sharded over TP along mi.
    out += [
        Tensor(f"{prefix}.mlp.experts.gate_up_proj", e * 2 * mi, h, True, "tp", i, mtp, True),
        Tensor(f"{prefix}.mlp.experts.down_proj", e * h, mi, True, "tp", i, mtp, True),
    ]
    if m.expert_bias:
        out += [
            Tensor(f"{prefix}.mlp.experts.gate_up_proj_bias", e * 2 * mi, 1, False, "tp", i, mtp, True),
            Tensor(f"{prefix}.mlp.experts.down_proj_bias", e * h, 1, False, "rep", i, mtp, True),
        ]
    if m.shared_intermediate:
        si = m.shared_intermediate
        name = "shared_experts" if m.family == "deepseek" else "shared_expert"
        out += [
            Tensor(f"{prefix}.mlp.{name}.gate_proj", si, h, True, "tp", i, mtp),
            Tensor(f"{prefix}.mlp.{name}.up_proj", si, h, True, "tp", i, mtp),
            Tensor(f"{prefix}.mlp.{name}.down_proj", h, si, True, "tp", i, mtp),
        ]
    if m.shared_expert_gate:
        out.append(Tensor(f"{prefix}.mlp.shared_expert_gate", 1, h, False, "rep", i, mtp))
    return out


def model_tensors(m: Model) -> list[Tensor]:
    """Every weight of the checkpoint, as (out, in) shapes, with how TP shards it."""
    h = m.hidden
    tensors: list[Tensor] = [Tensor("model.embed_tokens", m.vocab, h, False, "tp", None)]
    for i, kind in enumerate(m.layer_kinds):
        prefix = f"model.layers.{i}"
        if kind == "linear":
            tensors += _linear_attention_tensors(m, i, prefix)
        else:
            tensors += _attention_tensors(m, i, prefix, False)
        dense_mlp = not m.is_moe or i not in m.moe_layers
        if dense_mlp and m.is_moe and m.family == "deepseek":
            tensors += _mlp_tensors(m, i, prefix, False, False)
        else:
            tensors += _mlp_tensors(m, i, prefix, False, not dense_mlp)
        tensors.append(Tensor(f"{prefix}.input_layernorm", h, 1, False, "rep", i))
        tensors.append(Tensor(f"{prefix}.post_attention_layernorm", h, 1, False, "rep", i))
    tensors.append(Tensor("model.norm", h, 1, False, "rep", None))
    if not m.tie_embeddings:
        tensors.append(Tensor("lm_head", m.vocab, h, False, "tp", None))
    if m.vision_params:
        # vision tower: TP-sharded by default (mm_encoder_tp_mode "weights")
        tensors.append(Tensor("model.visual", m.vision_params, 1, False, "tp", None))
    return tensors


def mtp_tensors(m: Model) -> list[Tensor]:
    """The MTP draft layers' own weights (embeddings / lm_head excluded: see draft_head_tensors)."""
    h = m.hidden
    tensors: list[Tensor] = []
    for j in range(m.mtp_layers):
        idx = m.num_layers + j
        prefix = f"mtp.layers.{j}" if m.mtp_kind == "qwen" else f"model.layers.{idx}"
        tensors += _attention_tensors(m, idx, prefix, True)
        tensors += _mlp_tensors(m, idx, prefix, True, m.is_moe)
        tensors += [
            Tensor(f"{prefix}.input_layernorm", h, 1, False, "rep", idx, True),
            Tensor(f"{prefix}.post_attention_layernorm", h, 1, False, "rep", idx, True),
        ]
        fc = "mtp.fc" if m.mtp_kind == "qwen" else f"{prefix}.eh_proj"
        tensors += [
            Tensor(fc, h, 2 * h, True, "rep" if m.mtp_kind == "deepseek" else "tp", idx, True),
            Tensor(f"{prefix}.enorm", h, 1, False, "rep", idx, True),
            Tensor(f"{prefix}.hnorm", h, 1, False, "rep", idx, True),
            Tensor(f"{prefix}.shared_head.norm", h, 1, False, "rep", idx, True),
        ]
    return tensors


def draft_head_tensors(m: Model) -> list[Tensor]:
    """Embedding and lm_head the MTP draft loads for itself when they cannot be shared (PP > 1)."""
    return [
        Tensor("mtp.embed_tokens", m.vocab, m.hidden, False, "tp", None, True),
        Tensor("mtp.lm_head", m.vocab, m.hidden, False, "tp", None, True),
    ]


def _rank_share(t: Tensor, m: Model, tp: int) -> float:
    if t.shard == "rep":
        return 1.0
    if t.shard == "kv":
        per_rank = max(1, m.num_kv_heads // tp)
        return per_rank / m.num_kv_heads
    return 1.0 / tp


def weights_per_rank(
    m: Model, s: Settings, exact_total: int | None, has_mtp_weights: bool | None
) -> tuple[list[float], list[float], float, float, float]:
    """Per PP stage: (weights, draft) bytes on one rank; checkpoint total; estimated total; scale."""
    try:
        scheme = quant_scheme(m.quant)
    except PlanError:
        if not exact_total:
            raise
        scheme = QuantScheme("bf16")  # exact bytes given: only the split over ranks needs shapes
    dbytes = DTYPE_BYTES[m.dtype]
    main = model_tensors(m)
    mtp = mtp_tensors(m)
    est_main = sum(_tensor_bytes(t, scheme, dbytes) for t in main)
    est_mtp = sum(_tensor_bytes(t, scheme, dbytes) for t in mtp)
    in_checkpoint = est_main + (est_mtp if (has_mtp_weights if has_mtp_weights is not None else True) else 0)
    scale = (exact_total / in_checkpoint) if exact_total else 1.0
    parts = pp_partition(m.num_layers, s.pp)
    bounds: list[tuple[int, int]] = []
    start = 0
    for count in parts:
        bounds.append((start, start + count))
        start += count

    def stage_of(t: Tensor) -> list[int]:
        if t.layer is not None and t.layer < m.num_layers:
            return [next(i for i, (a, b) in enumerate(bounds) if a <= t.layer < b)]
        if t.mtp:
            return [s.pp - 1]
        if t.name == "model.embed_tokens":
            stages = [0]
            if m.tie_embeddings and s.pp > 1:
                stages.append(s.pp - 1)  # tied lm_head is a separate copy on the last stage
            return stages
        if t.name == "model.visual":
            return [0]
        return [s.pp - 1]

    weights = [0.0] * s.pp
    for t in main:
        size = _tensor_bytes(t, scheme, dbytes) * scale * _rank_share(t, m, s.tp)
        for stage in stage_of(t):
            weights[stage] += size
    draft = [0.0] * s.pp
    if s.spec_method == "mtp":
        for t in mtp:
            draft[s.pp - 1] += _tensor_bytes(t, scheme, dbytes) * scale * _rank_share(t, m, s.tp)
        if s.pp > 1:
            for t in draft_head_tensors(m):
                draft[s.pp - 1] += _tensor_bytes(t, scheme, dbytes) * scale * _rank_share(t, m, s.tp)
    return weights, draft, in_checkpoint * scale, in_checkpoint, scale


def exact_weights(params: Mapping[str, Any], m: Model) -> tuple[int | None, bool | None, str]:
    """Exact checkpoint bytes (weights_bytes, else the index's total_size) and whether MTP weights ship."""
    exact = int_param(params, "weights_bytes", None)
    has_mtp: bool | None = None
    source = "weights_bytes" if exact else "estimate"
    index = params.get("safetensors_index")
    if index is None and isinstance(params.get("model_config"), str) and os.path.isdir(params["model_config"]):
        candidate = os.path.join(params["model_config"], "model.safetensors.index.json")
        index = candidate if os.path.isfile(candidate) else None
    if index is not None:
        data = load_json(index, "safetensors_index")
        total = (data.get("metadata") or {}).get("total_size")
        weight_map = data.get("weight_map")
        if isinstance(weight_map, Mapping) and weight_map:
            draft_prefix = f"model.layers.{m.num_layers}."
            has_mtp = any(k.startswith(("mtp.", draft_prefix)) or ".mtp." in k for k in weight_map)
        if total is not None and not exact:
            exact = int(total)
            source = "safetensors_index"
    return exact, has_mtp, source

