"""Memory-fit planner: vLLM's own memory arithmetic, restated, for GB10 nodes.

Plain typed Python, no Ansible imports (``plugins/module_utils`` convention); the module
``gb10_memory_fit`` is a thin wrapper around :func:`plan_memory`.

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
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

VLLM_RELEASE = "0.32.0"

GIB = 1 << 30
MIB = 1 << 20
GB10_CUDA_TOTAL_BYTES = int(121.69 * GIB)
"""What CUDA reports as total memory on a GB10 node (about 121.69 GiB)."""
DEFAULT_HOST_FLOOR_BYTES = 8 * GIB
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
"""``CacheConfig.gpu_memory_utilization`` default in vLLM 0.32 (also the CPU build's fraction)."""

# vLLM 0.32 defaults (vllm/engine/arg_utils.py get_batch_defaults, OpenAI server context).
# On GB10 NVML cannot report the device memory, so get_batch_defaults falls back to the
# "other hardware" row: 2048 batched tokens, 256 sequences.
CUDA_GB10_DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
CUDA_GB10_DEFAULT_MAX_NUM_SEQS = 256
CPU_DEFAULT_MAX_NUM_BATCHED_TOKENS_PER_RANK = 2048
CPU_DEFAULT_MAX_NUM_SEQS_PER_RANK = 128
SCHEDULER_DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048

CUDA_DEFAULT_BLOCK_SIZE = 16
CPU_DEFAULT_BLOCK_SIZE = 128
CPU_MLA_BLOCK_SIZE = 16
CUDA_KERNEL_BLOCK_ALIGNMENT = 16  # FlashAttention / Triton / FlashInfer smallest kernel block on sm_121
CPU_KERNEL_BLOCK_ALIGNMENT = 32  # CPU_ATTN: MultipleOf(32)

# Estimates (documented in docs/memory-planner.md); all overridable through params.
NON_TORCH_BASE_BYTES = 768 * MIB
"""CUDA context, cuBLAS/cuDNN workspaces: memory outside torch's allocator on every rank."""
NON_TORCH_DISTRIBUTED_BYTES = 512 * MIB
"""NCCL / custom all-reduce buffers when the rank has peers."""
CPU_RUNTIME_BYTES = 1536 * MIB
"""Python + torch runtime RSS of a CPU worker besides weights and activations."""
CUDAGRAPH_BASE_BYTES = 256 * MIB
SAMPLER_LOGIT_COPIES = 3
ACTIVATION_MARGIN = 1.25
ALLOCATOR_SLACK_BYTES = 256 * MIB

DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")
MAMBA_SSM_DTYPES = ("auto", "float32", "float16", "bfloat16")
PLATFORMS = ("cuda", "cpu")
MTP_METHODS = ("mtp", "deepseek_mtp", "qwen3_next_mtp", "qwen3_5_mtp", "ernie_mtp", "glm4_moe_mtp")

# Architectures the planner knows, by family.
DENSE_ARCHS = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
MOE_ARCHS = {
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "Qwen2MoeForCausalLM": "qwen3_moe",
    "MixtralForCausalLM": "mixtral",
}
MLA_ARCHS = {"DeepseekV2ForCausalLM": "deepseek", "DeepseekV3ForCausalLM": "deepseek"}
HYBRID_ARCHS = {
    "Qwen3NextForCausalLM": "qwen3_next",
    "Qwen3_5ForCausalLM": "qwen3_5",
    "Qwen3_5MoeForCausalLM": "qwen3_5",
    "Qwen3_5ForConditionalGeneration": "qwen3_5",
    "Qwen3_5MoeForConditionalGeneration": "qwen3_5",
}
SLIDING_ARCHS = {"GptOssForCausalLM": "gpt_oss"}
KNOWN_ARCHS: dict[str, str] = {**DENSE_ARCHS, **MOE_ARCHS, **MLA_ARCHS, **HYBRID_ARCHS, **SLIDING_ARCHS}


class PlanError(ValueError):
    """Invalid planner input; the message is one sentence an operator can act on."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def human(n: float) -> str:
    """Bytes in the largest unit that keeps the number readable."""
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.2f} MiB"
    if n == 0:
        return "0"
    return f"{n / 1024:.2f} KiB"


def _load_json(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        path = value
        if what == "model_config" and os.path.isdir(path):
            path = os.path.join(path, "config.json")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise PlanError(f"{what} file {path} cannot be read ({exc.strerror}).") from exc
        except json.JSONDecodeError as exc:
            raise PlanError(f"{what} file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
        if not isinstance(data, dict):
            raise PlanError(f"{what} file {path} does not hold a JSON object.")
        return data
    raise PlanError(f"{what} must be a dict or the path of a JSON file, not {type(value).__name__}.")


def _int_param(params: Mapping[str, Any], key: str, default: int | None, minimum: int = 1) -> int | None:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PlanError(f"{key} must be an integer, not {value!r}.")
    try:
        number = int(value)
    except ValueError as exc:
        raise PlanError(f"{key} must be an integer, not {value!r}.") from exc
    if isinstance(value, float) and number != value:
        raise PlanError(f"{key} must be an integer, not {value!r}.")
    if number < minimum:
        raise PlanError(f"{key} must be at least {minimum}, not {number}.")
    return number


# --------------------------------------------------------------------------------------------
# model description
# --------------------------------------------------------------------------------------------


@dataclass
class Model:
    """The config.json fields that matter, normalised across families."""

    architecture: str
    family: str
    hidden: int
    num_layers: int
    vocab: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    head_dim_v: int
    max_position: int
    tie_embeddings: bool
    dtype: str
    layer_kinds: list[str]  # "full" | "sliding" | "linear" | "mla" per decoder layer
    sliding_window: int | None = None
    intermediate: int = 0
    # MoE
    num_experts: int = 0
    experts_per_tok: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0
    moe_layers: set[int] = field(default_factory=set)
    router_bias: bool = False
    expert_bias: bool = False
    shared_expert_gate: bool = False
    # attention details
    attn_output_gate: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    sinks: bool = False
    # MLA
    kv_lora_rank: int = 0
    q_lora_rank: int | None = None
    qk_nope_dim: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0
    # gated DeltaNet
    lin_k_heads: int = 0
    lin_v_heads: int = 0
    lin_k_dim: int = 0
    lin_v_dim: int = 0
    lin_conv_kernel: int = 0
    mamba_ssm_dtype: str | None = None
    # MTP
    mtp_layers: int = 0
    mtp_kind: str = ""  # "qwen" | "deepseek"
    # vision tower (multimodal checkpoints): rough parameter count
    vision_params: int = 0
    quant: dict[str, Any] = field(default_factory=dict)

    @property
    def use_mla(self) -> bool:
        return self.family == "deepseek"

    @property
    def is_hybrid(self) -> bool:
        return "linear" in self.layer_kinds

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    text = cfg.get("text_config")
    if isinstance(text, dict):
        merged = {k: v for k, v in cfg.items() if k not in ("text_config", "vision_config")}
        merged.update(text)
        return merged
    return cfg


def _resolve_dtype(value: Any) -> str:
    name = str(value or "bfloat16").replace("torch.", "")
    if name in ("float32", "float"):
        # vLLM downcasts float32 checkpoints to the platform's preferred half type.
        return "bfloat16"
    if name in ("float16", "half"):
        return "float16"
    return "bfloat16"


def _vision_params(cfg: dict[str, Any]) -> int:
    vision = cfg.get("vision_config")
    if not isinstance(vision, dict):
        return 0
    hidden = int(vision.get("hidden_size") or vision.get("embed_dim") or 0)
    depth = int(vision.get("depth") or vision.get("num_hidden_layers") or 0)
    inter = int(vision.get("intermediate_size") or 4 * hidden)
    out = int(vision.get("out_hidden_size") or hidden)
    patch = int(vision.get("patch_size") or 14)
    temporal = int(vision.get("temporal_patch_size") or 1)
    channels = int(vision.get("in_channels") or vision.get("in_chans") or 3)
    merge = int(vision.get("spatial_merge_size") or 2)
    per_block = 4 * hidden * hidden + 2 * hidden * inter + 9 * hidden
    merger = (hidden * merge * merge) ** 2 + hidden * merge * merge * out
    return depth * per_block + channels * temporal * patch * patch * hidden + merger


def _layer_types(text: dict[str, Any], num_layers: int) -> list[str] | None:
    types = text.get("layer_types")
    if isinstance(types, list) and len(types) >= num_layers:
        return [str(t) for t in types[:num_layers]]
    interval = text.get("full_attention_interval")
    if interval:
        return [
            "full_attention" if (i + 1) % int(interval) == 0 else "linear_attention" for i in range(num_layers)
        ]
    return None


def parse_model(cfg: dict[str, Any], dtype_param: str = "auto") -> Model:
    archs = cfg.get("architectures") or []
    arch = str(archs[0]) if archs else ""
    if arch not in KNOWN_ARCHS:
        known = ", ".join(sorted(KNOWN_ARCHS))
        raise PlanError(
            f"architecture {arch or '(none)'} is not one the planner models; known: {known}."
        )
    family = KNOWN_ARCHS[arch]
    text = _text_config(cfg)
    hidden = int(text["hidden_size"])
    layers = int(text["num_hidden_layers"])
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    dtype = _resolve_dtype(text.get("torch_dtype") or text.get("dtype") or cfg.get("torch_dtype"))
    if dtype_param != "auto":
        dtype = dtype_param if dtype_param != "float32" else "float32"
    quant = cfg.get("quantization_config") or text.get("quantization_config") or {}
    model = Model(
        architecture=arch,
        family=family,
        hidden=hidden,
        num_layers=layers,
        vocab=int(text.get("vocab_size") or 0),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        head_dim_v=head_dim,
        max_position=int(text.get("max_position_embeddings") or 0),
        tie_embeddings=bool(text.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
        dtype=dtype,
        layer_kinds=["full"] * layers,
        intermediate=int(text.get("intermediate_size") or 0),
        quant=dict(quant) if isinstance(quant, Mapping) else {},
        vision_params=_vision_params(cfg),
    )
    if family in ("llama", "qwen2", "qwen3"):
        model.qkv_bias = bool(text.get("attention_bias", family == "qwen2"))
        # Transformers' Qwen2/Qwen3 configs null sliding_window unless use_sliding_window is set.
        window = text.get("sliding_window")
        if family != "llama" and not text.get("use_sliding_window", False):
            window = None
        if window:
            model.sliding_window = int(window)
            types = text.get("layer_types")
            if isinstance(types, list) and len(types) >= layers:
                # per-layer windows (vllm llama.py: layer_types[i] == "sliding_attention")
                model.layer_kinds = ["sliding" if t == "sliding_attention" else "full" for t in types[:layers]]
            elif family != "llama":
                first = int(text.get("max_window_layers") or 0)
                model.layer_kinds = ["sliding" if i >= first else "full" for i in range(layers)]
            else:
                # no layer_types: CacheConfig.sliding_window applies the window to every layer
                model.layer_kinds = ["sliding"] * layers
    elif family in ("qwen3_moe", "mixtral"):
        model.num_experts = int(text.get("num_experts") or text.get("num_local_experts") or 0)
        model.experts_per_tok = int(text.get("num_experts_per_tok") or 2)
        model.moe_intermediate = int(text.get("moe_intermediate_size") or text.get("intermediate_size") or 0)
        model.shared_intermediate = int(text.get("shared_expert_intermediate_size") or 0)
        model.shared_expert_gate = model.shared_intermediate > 0
        step = int(text.get("decoder_sparse_step") or 1)
        dense = set(text.get("mlp_only_layers") or [])
        model.moe_layers = {i for i in range(layers) if i not in dense and (i + 1) % step == 0}
        model.qkv_bias = bool(text.get("attention_bias", False))
    elif family == "gpt_oss":
        model.num_experts = int(text.get("num_local_experts") or text.get("num_experts") or 0)
        model.experts_per_tok = int(text.get("num_experts_per_tok") or text.get("experts_per_token") or 4)
        model.moe_intermediate = int(text.get("intermediate_size") or 0)
        model.moe_layers = set(range(layers))
        model.router_bias = True
        model.expert_bias = True
        model.qkv_bias = True
        model.o_bias = True
        model.sinks = True
        model.sliding_window = int(text.get("sliding_window") or 128)
        # vLLM's gpt_oss.py: sliding window on even layer indices.
        model.layer_kinds = ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    elif family == "deepseek":
        model.kv_lora_rank = int(text["kv_lora_rank"])
        q_lora = text.get("q_lora_rank")
        model.q_lora_rank = int(q_lora) if q_lora else None
        model.qk_nope_dim = int(text.get("qk_nope_head_dim") or 128)
        model.qk_rope_dim = int(text.get("qk_rope_head_dim") or 64)
        model.v_head_dim = int(text.get("v_head_dim") or 128)
        model.num_kv_heads = 1
        model.head_dim = model.kv_lora_rank + model.qk_rope_dim
        model.head_dim_v = 0
        model.layer_kinds = ["mla"] * layers
        model.num_experts = int(text.get("n_routed_experts") or 0)
        model.experts_per_tok = int(text.get("num_experts_per_tok") or 8)
        model.moe_intermediate = int(text.get("moe_intermediate_size") or 0)
        model.shared_intermediate = int(text.get("n_shared_experts") or 0) * model.moe_intermediate
        first_dense = int(text.get("first_k_dense_replace") or 0)
        freq = int(text.get("moe_layer_freq") or 1)
        model.moe_layers = (
            {i for i in range(layers) if i >= first_dense and i % freq == 0} if model.num_experts else set()
        )
        model.router_bias = text.get("topk_method") == "noaux_tc"
        model.mtp_layers = int(text.get("num_nextn_predict_layers") or 0)
        model.mtp_kind = "deepseek"
    elif family in ("qwen3_next", "qwen3_5"):
        types = _layer_types(text, layers)
        if types is None:
            raise PlanError(
                f"{arch} config has neither layer_types nor full_attention_interval, so the "
                "attention / gated-DeltaNet layer mix is unknown."
            )
        model.layer_kinds = ["linear" if t == "linear_attention" else "full" for t in types]
        model.attn_output_gate = bool(text.get("attn_output_gate", True))
        model.lin_k_heads = int(text["linear_num_key_heads"])
        model.lin_v_heads = int(text["linear_num_value_heads"])
        model.lin_k_dim = int(text["linear_key_head_dim"])
        model.lin_v_dim = int(text["linear_value_head_dim"])
        model.lin_conv_kernel = int(text.get("linear_conv_kernel_dim") or 4)
        ssm = text.get("mamba_ssm_dtype")
        if family == "qwen3_5" and ssm:
            model.mamba_ssm_dtype = str(ssm).replace("torch.", "")
        model.num_experts = int(text.get("num_experts") or 0)
        if model.num_experts:
            model.experts_per_tok = int(text.get("num_experts_per_tok") or 10)
            model.moe_intermediate = int(text.get("moe_intermediate_size") or 0)
            model.shared_intermediate = int(text.get("shared_expert_intermediate_size") or 0)
            model.shared_expert_gate = model.shared_intermediate > 0
            step = int(text.get("decoder_sparse_step") or 1)
            dense = set(text.get("mlp_only_layers") or [])
            model.moe_layers = {i for i in range(layers) if i not in dense and (i + 1) % step == 0}
        # qwen3_next_mtp.py / qwen3_5_mtp.py default to one MTP layer when the key is absent.
        mtp = text.get("mtp_num_hidden_layers", text.get("num_nextn_predict_layers"))
        model.mtp_layers = 1 if mtp is None else int(mtp)
        model.mtp_kind = "qwen"
    return model


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


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


def _quant_scheme(quant: Mapping[str, Any]) -> QuantScheme:
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


def pp_partition(num_layers: int, pp_size: int) -> list[int]:
    """vLLM's get_pp_indices: remainders go to the partitions before the last one."""
    per = num_layers // pp_size
    parts = [per] * pp_size
    remaining = num_layers % pp_size
    for i in range(2, remaining + 2):
        parts[-i] += 1
    return parts


def _rank_share(t: Tensor, m: Model, tp: int) -> float:
    if t.shard == "rep":
        return 1.0
    if t.shard == "kv":
        per_rank = max(1, m.num_kv_heads // tp)
        return per_rank / m.num_kv_heads
    return 1.0 / tp


# --------------------------------------------------------------------------------------------
# KV cache specs (vllm/v1/kv_cache_interface.py restated)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    kind: str  # "full" | "sliding" | "mla" | "mamba"
    block_size: int
    page: int  # unpadded page size in bytes for block_size tokens (mamba: the state)
    padded: int | None = None
    sliding_window: int | None = None
    mamba_mode: str = "none"
    spec_blocks: int = 0

    @property
    def page_size(self) -> int:
        return self.padded if self.padded is not None else self.page

    @property
    def base_kind(self) -> str:
        # Registry base: MLA is a FullAttentionSpec subclass and merges with nothing else here.
        return self.kind

    def with_block_size(self, block_size: int) -> Spec:
        if self.kind == "mamba":
            return replace(self, block_size=block_size)
        per_token = self.page // self.block_size
        return replace(self, block_size=block_size, page=per_token * block_size)


def blocks_per_request(spec: Spec, max_model_len: int, in_flight_tokens: int, extra_retained: int) -> int:
    """cdiv(max_memory_usage_bytes, page_size_bytes) of one layer spec (scheduler view)."""
    if spec.kind in ("full", "mla"):
        return cdiv(max_model_len, spec.block_size)
    if spec.kind == "sliding":
        if spec.sliding_window is None:
            raise PlanError(f"sliding-window layer without a window size in {spec}")
        tokens = min(spec.sliding_window - 1 + extra_retained + in_flight_tokens, max_model_len)
        return cdiv(tokens, spec.block_size) + 1
    if spec.mamba_mode == "align":
        return 2 + spec.spec_blocks
    return 1 + spec.spec_blocks


@dataclass
class Group:
    spec: Spec  # representative (merged) spec
    layers: list[str]
    layer_pages: dict[str, int]  # page size per layer (differs only for uniform-type groups)


def _mergeable(a: Spec, b: Spec) -> bool:
    """Whether vLLM's Spec.merge accepts both (same attention spec, full attention may differ in window)."""
    if a.kind != b.kind or a.block_size != b.block_size or a.page_size != b.page_size:
        return False
    if a.kind == "sliding":
        return a.sliding_window == b.sliding_window
    if a.kind == "mamba":
        return a == b
    return a.page == b.page and a.padded == b.padded


def group_layers(specs: dict[str, Spec]) -> list[Group]:
    """vLLM's get_kv_cache_groups for a layer-outermost layout (CPU_ATTN LBHNC, CUDA LBNHC)."""
    names = list(specs)
    values = list(specs.values())
    first = values[0]
    if all(_mergeable(first, v) for v in values[1:]):
        return [Group(first, names, {n: specs[n].page_size for n in names})]
    same_kind = len({v.kind for v in values}) == 1 and len({v.block_size for v in values}) == 1
    if same_kind and first.kind != "mamba" and (
        first.kind != "sliding" or len({v.sliding_window for v in values}) == 1
    ):
        # UniformTypeKVCacheSpecs: one group, per-layer pages summed.
        return [Group(first, names, {n: specs[n].page_size for n in names})]
    # unify_kv_cache_spec_page_size
    max_page = max(v.page_size for v in values)
    unified: dict[str, Spec] = {}
    for name, spec in specs.items():
        if spec.page_size == max_page:
            unified[name] = spec
        elif spec.kind == "mamba":
            unified[name] = replace(spec, padded=max_page)
        elif max_page % spec.page_size == 0:
            unified[name] = spec.with_block_size(spec.block_size * (max_page // spec.page_size))
        elif spec.kind != "mla":
            unified[name] = replace(spec, padded=max_page)
        else:
            raise PlanError(
                "the model's KV page sizes cannot be unified (an MLA page does not divide the largest "
                "page), which vLLM refuses too."
            )
    # _get_kv_cache_groups_uniform_page_size
    buckets: list[tuple[Spec, list[str]]] = []
    for name, spec in unified.items():
        for bucket_spec, bucket_names in buckets:
            if _mergeable(bucket_spec, spec):
                bucket_names.append(name)
                break
        else:
            buckets.append((spec, [name]))
    min_layers = min(len(b[1]) for b in buckets)
    max_layers = max(len(b[1]) for b in buckets)
    group_size = max_layers if max_layers < min_layers * 1.5 else min_layers
    groups: list[Group] = []
    for spec, bucket_names in buckets:
        num_groups = cdiv(len(bucket_names), group_size)
        for i in range(num_groups):
            members = bucket_names[i::num_groups]
            groups.append(Group(spec, members, {n: max_page for n in members}))
    return groups


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------


@dataclass
class Settings:
    platform: str
    tp: int
    pp: int
    nodes: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_dtype: str
    block_size: int | None
    enable_prefix_caching: bool
    util: float
    kv_cache_memory_bytes: int | None
    spec_method: str | None
    spec_tokens: int
    total: int
    available: int
    host_floor: int
    mamba_ssm_cache_dtype: str
    enforce_eager: bool
    async_scheduling: bool
    activation_override: int | None
    cudagraph_override: int | None
    non_torch_override: int | None


def _settings(params: Mapping[str, Any], model: Model, derived_max_len: int) -> Settings:
    platform = str(params.get("platform") or "cuda").lower()
    if platform not in PLATFORMS:
        raise PlanError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}.")
    tp = _int_param(params, "tensor_parallel_size", 1) or 1
    pp = _int_param(params, "pipeline_parallel_size", 1) or 1
    world = tp * pp
    nodes = _int_param(params, "nodes", world) or world
    if world % nodes != 0:
        raise PlanError(
            f"nodes ({nodes}) must divide tensor_parallel_size x pipeline_parallel_size ({world}); "
            "a GB10 node has one GPU, so use nodes = tp x pp."
        )
    if platform == "cuda" and nodes != world:
        raise PlanError(
            f"a GB10 node has one GPU, so nodes ({nodes}) must equal tensor_parallel_size x "
            f"pipeline_parallel_size ({world})."
        )
    if model.num_heads % tp != 0:
        raise PlanError(
            f"tensor_parallel_size {tp} does not divide the {model.num_heads} attention heads of "
            f"{model.architecture}; pick a divisor of {model.num_heads}."
        )
    if model.is_hybrid:
        key_dim = model.lin_k_heads * model.lin_k_dim
        conv_dim = 2 * key_dim + model.lin_v_heads * model.lin_v_dim
        if model.lin_v_heads % tp or conv_dim % tp or model.lin_k_heads % tp:
            raise PlanError(
                f"tensor_parallel_size {tp} does not divide the gated-DeltaNet heads of "
                f"{model.architecture} ({model.lin_k_heads} key / {model.lin_v_heads} value heads)."
            )
    if pp > model.num_layers:
        raise PlanError(
            f"pipeline_parallel_size {pp} exceeds the {model.num_layers} decoder layers of {model.architecture}."
        )
    max_model_len = _int_param(params, "max_model_len", derived_max_len or None)
    if max_model_len is None:
        raise PlanError(
            f"max_model_len is required: {model.architecture}'s config has no max_position_embeddings."
        )
    if derived_max_len and max_model_len > derived_max_len:
        raise PlanError(
            f"max_model_len {max_model_len} exceeds the model's max_position_embeddings "
            f"({derived_max_len}); vLLM refuses that without VLLM_ALLOW_LONG_MAX_MODEL_LEN."
        )
    kv_dtype = str(params.get("kv_cache_dtype") or "auto")
    if kv_dtype not in KV_CACHE_DTYPES:
        raise PlanError(f"kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPES)}, not {kv_dtype!r}.")
    raw_util = params.get("gpu_memory_utilization")
    try:
        util = DEFAULT_GPU_MEMORY_UTILIZATION if raw_util is None else float(raw_util)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"gpu_memory_utilization must be a number in (0, 1], not {raw_util!r}.") from exc
    if not 0 < util <= 1:
        raise PlanError(f"gpu_memory_utilization must be in (0, 1], not {util}.")
    spec_cfg = params.get("speculative_config") or {}
    if not isinstance(spec_cfg, Mapping):
        raise PlanError("speculative_config must be a dict like {'method': 'mtp', 'num_speculative_tokens': 2}.")
    method: str | None = None
    spec_tokens = 0
    if spec_cfg:
        method = str(spec_cfg.get("method") or "mtp").lower()
        spec_tokens = _int_param(spec_cfg, "num_speculative_tokens", None) or 0
        if spec_tokens < 1:
            raise PlanError("speculative_config.num_speculative_tokens must be at least 1.")
        if method in MTP_METHODS:
            method = "mtp"
            if model.mtp_layers < 1:
                raise PlanError(
                    f"speculative method mtp needs MTP layers, and {model.architecture}'s config declares none."
                )
        elif method not in ("ngram", "suffix"):
            raise PlanError(
                f"speculative method {method!r} is not modelled (draft-model weights unknown); use mtp or ngram."
            )
    world_defaults = world if platform == "cpu" else 1
    mbt_default = (
        CPU_DEFAULT_MAX_NUM_BATCHED_TOKENS_PER_RANK * world_defaults
        if platform == "cpu"
        else CUDA_GB10_DEFAULT_MAX_NUM_BATCHED_TOKENS
    )
    seqs_default = (
        CPU_DEFAULT_MAX_NUM_SEQS_PER_RANK * world_defaults if platform == "cpu" else CUDA_GB10_DEFAULT_MAX_NUM_SEQS
    )
    mbt = _int_param(params, "max_num_batched_tokens", mbt_default) or mbt_default
    seqs = _int_param(params, "max_num_seqs", seqs_default) or seqs_default
    if mbt < seqs:
        raise PlanError(
            f"max_num_batched_tokens ({mbt}) must be at least max_num_seqs ({seqs}), as vLLM requires."
        )
    prefix = params.get("enable_prefix_caching")
    prefix_caching = True if prefix is None else bool(prefix)
    if platform == "cpu" and model.use_mla:
        # vllm/platforms/cpu.py: MLA on CPU forces chunked prefill and prefix caching off.
        prefix_caching = False
        mbt = max(max_model_len, SCHEDULER_DEFAULT_MAX_NUM_BATCHED_TOKENS)
    total = _int_param(params, "node_memory_total_bytes", GB10_CUDA_TOTAL_BYTES) or GB10_CUDA_TOTAL_BYTES
    available = _int_param(params, "node_mem_available_bytes", total) or total
    floor = _int_param(params, "host_floor_bytes", DEFAULT_HOST_FLOOR_BYTES, minimum=0)
    kv_bytes = _int_param(params, "kv_cache_memory_bytes", None)
    ssm = str(params.get("mamba_ssm_cache_dtype") or "auto")
    if ssm not in MAMBA_SSM_DTYPES:
        raise PlanError(f"mamba_ssm_cache_dtype must be one of {', '.join(MAMBA_SSM_DTYPES)}, not {ssm!r}.")
    async_sched = params.get("async_scheduling")
    return Settings(
        platform=platform,
        tp=tp,
        pp=pp,
        nodes=nodes,
        max_model_len=max_model_len,
        max_num_seqs=seqs,
        max_num_batched_tokens=mbt,
        kv_cache_dtype=kv_dtype,
        block_size=_int_param(params, "block_size", None),
        enable_prefix_caching=prefix_caching,
        util=util,
        kv_cache_memory_bytes=kv_bytes,
        spec_method=method,
        spec_tokens=spec_tokens,
        total=total,
        available=available,
        host_floor=floor if floor is not None else DEFAULT_HOST_FLOOR_BYTES,
        mamba_ssm_cache_dtype=ssm,
        enforce_eager=bool(params.get("enforce_eager", False)),
        async_scheduling=(platform == "cuda") if async_sched is None else bool(async_sched),
        activation_override=_int_param(params, "activation_peak_bytes", None, minimum=0),
        # A negative CUDA-graph figure (vLLM has logged -10 to -36 GiB on GB10 with MTP) is clamped to 0.
        cudagraph_override=_int_param(params, "cudagraph_bytes", None, minimum=-(1 << 62)),
        non_torch_override=_int_param(params, "non_torch_bytes", None, minimum=0),
    )


def _kv_dtype_bytes(s: Settings, m: Model) -> int:
    if s.kv_cache_dtype == "auto":
        return DTYPE_BYTES[m.dtype]
    return DTYPE_BYTES[s.kv_cache_dtype]


def _mamba_page(m: Model, s: Settings) -> tuple[int, tuple[tuple[int, ...], ...], tuple[str, ...]]:
    """Gated-DeltaNet state per sequence and rank: conv state + temporal (SSM) state."""
    key_dim = m.lin_k_heads * m.lin_k_dim
    conv_dim = 2 * key_dim + m.lin_v_heads * m.lin_v_dim
    conv_shape = (m.lin_conv_kernel - 1 + s.spec_tokens, conv_dim // s.tp)
    ssm_shape = (m.lin_v_heads // s.tp, m.lin_v_dim, m.lin_k_dim)
    conv_dtype = m.dtype  # mamba_cache_dtype "auto" -> model dtype
    ssm_dtype = s.mamba_ssm_cache_dtype
    if ssm_dtype == "auto" and m.mamba_ssm_dtype:
        ssm_dtype = m.mamba_ssm_dtype  # Qwen3.5: config's mamba_ssm_dtype
    if s.platform == "cpu" and ssm_dtype not in ("float32", "float16", "bfloat16"):
        # vllm/platforms/cpu.py on an AVX-512 BF16 host: "auto" is reset to float32.
        ssm_dtype = "float32"
    if ssm_dtype == "auto":
        ssm_dtype = conv_dtype
    page = math.prod(conv_shape) * DTYPE_BYTES[conv_dtype] + math.prod(ssm_shape) * DTYPE_BYTES[ssm_dtype]
    return page, (conv_shape, ssm_shape), (conv_dtype, ssm_dtype)


def _block_size(m: Model, s: Settings, attn_per_token: int, mamba_page: int) -> tuple[int, int | None]:
    """Block size vLLM ends with, and the mamba page padding (None when not hybrid)."""
    if s.platform == "cpu":
        if m.use_mla:
            block = CPU_MLA_BLOCK_SIZE
        else:
            block = s.block_size or CPU_DEFAULT_BLOCK_SIZE
        kernel_min = CPU_KERNEL_BLOCK_ALIGNMENT
    else:
        block = s.block_size or CUDA_DEFAULT_BLOCK_SIZE
        kernel_min = CUDA_KERNEL_BLOCK_ALIGNMENT
    if not m.is_hybrid:
        return block, None
    # vllm/platforms/interface.py _align_hybrid_block_size
    kernel_alignment = max(kernel_min, block)
    attn_block = kernel_alignment * cdiv(mamba_page, kernel_alignment * attn_per_token)
    attn_block = kernel_min * cdiv(attn_block, kernel_min)
    block = max(block, attn_block)
    attn_page = block * attn_per_token
    return block, (attn_page if attn_page != mamba_page else None)


@dataclass
class KvLayout:
    block_size: int
    specs: dict[str, Spec]  # global, every layer incl. draft, in registration order
    rank_layers: list[list[str]]  # per PP stage
    groups: list[Group]
    in_flight: int
    extra_retained: int
    mamba_page: int
    mamba_shapes: tuple[tuple[int, ...], ...] | None
    mamba_dtypes: tuple[str, ...] | None
    attn_per_token_rank: int

    def bytes_per_block(self, stage: int) -> int:
        names = set(self.rank_layers[stage])
        return max(sum(g.layer_pages[n] for n in g.layers if n in names) for g in self.groups)

    def blocks_per_request(self, max_model_len: int) -> int:
        return sum(
            blocks_per_request(g.spec, max_model_len, self.in_flight, self.extra_retained) for g in self.groups
        )


def build_kv_layout(m: Model, s: Settings) -> KvLayout:
    kv_bytes = _kv_dtype_bytes(s, m)
    if m.use_mla:
        per_token = m.head_dim * kv_bytes  # (kv_lora_rank + qk_rope_head_dim) x 1 latent "head", every rank
    else:
        per_token = max(1, m.num_kv_heads // s.tp) * (m.head_dim + m.head_dim_v) * kv_bytes
    mamba_page, shapes, dtypes = (0, None, None)
    if m.is_hybrid:
        mamba_page, shapes, dtypes = _mamba_page(m, s)
    block, mamba_padded = _block_size(m, s, per_token, mamba_page)
    mamba_mode = "align" if s.enable_prefix_caching else "none"
    mamba_block = block if mamba_mode == "align" else s.max_model_len
    attn_kind = "mla" if m.use_mla else "full"
    specs: dict[str, Spec] = {}
    kinds = list(m.layer_kinds)
    draft = m.mtp_layers if s.spec_method == "mtp" else 0
    kinds += [attn_kind] * draft
    for i, kind in enumerate(kinds):
        name = f"layers.{i}" if i < m.num_layers else f"mtp.{i - m.num_layers}"
        if kind == "linear":
            specs[name] = Spec(
                "mamba", mamba_block, mamba_page, mamba_padded, mamba_mode=mamba_mode, spec_blocks=s.spec_tokens
            )
        elif kind == "sliding":
            specs[name] = Spec("sliding", block, per_token * block, sliding_window=m.sliding_window)
        else:
            specs[name] = Spec(attn_kind, block, per_token * block)
    parts = pp_partition(m.num_layers, s.pp)
    rank_layers: list[list[str]] = []
    start = 0
    names = list(specs)
    for stage, count in enumerate(parts):
        stage_names = names[start : start + count]
        if stage == s.pp - 1:
            stage_names += names[m.num_layers :]
        rank_layers.append(stage_names)
        start += count
    groups = group_layers(specs)
    # sliding-window pool reservation (VllmConfig.max_in_flight_tokens)
    if s.platform == "cpu" or not s.async_scheduling:
        concurrent = s.pp
    else:
        concurrent = s.pp + 1
    multi_module = s.spec_method == "mtp" and min(m.mtp_layers, s.spec_tokens) > 1
    lookahead = (s.spec_tokens if multi_module else 1) if s.spec_method == "mtp" else 0
    return KvLayout(
        block_size=block,
        specs=specs,
        rank_layers=rank_layers,
        groups=groups,
        in_flight=concurrent * s.max_num_batched_tokens,
        extra_retained=max(0, lookahead - 1),
        mamba_page=mamba_page,
        mamba_shapes=shapes,
        mamba_dtypes=dtypes,
        attn_per_token_rank=per_token,
    )


def _weights_per_rank(
    m: Model, s: Settings, exact_total: int | None, has_mtp_weights: bool | None
) -> tuple[list[float], list[float], float, float, float]:
    """Per PP stage: (weights, draft) bytes on one rank; checkpoint total; estimated total; scale."""
    try:
        scheme = _quant_scheme(m.quant)
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


def _activation_estimate(m: Model, s: Settings) -> int:
    """Conservative peak of the profiling forward pass (max_num_batched_tokens tokens) on one rank.

    residual stream (4 hidden-sized tensors) + the largest per-layer workspace (attention
    projections, dense MLP, fused-MoE caches or gated-DeltaNet chunk states) + logits and sampler
    copies, times ACTIVATION_MARGIN, plus ALLOCATOR_SLACK_BYTES for fragmentation.
    """
    t = s.max_num_batched_tokens
    d = DTYPE_BYTES[m.dtype]
    h = m.hidden
    residual = 4 * t * h * d
    if m.use_mla:
        q = m.num_heads // s.tp * (m.qk_nope_dim + m.qk_rope_dim)
        attn = t * (2 * q + 2 * m.num_heads // s.tp * (m.qk_nope_dim + m.v_head_dim) + m.kv_lora_rank) * d
    else:
        q = m.num_heads // s.tp * m.head_dim * (2 if m.attn_output_gate else 1)
        kv = 2 * max(1, m.num_kv_heads // s.tp) * m.head_dim
        attn = 2 * t * (q + kv) * d
    mlp = int(1.5 * t * 2 * (m.intermediate // s.tp) * d) if m.intermediate else 0
    if m.is_moe:
        mi = m.moe_intermediate // s.tp
        # fused-MoE caches: gate_up output (2 mi), activation (mi), down output (h) per routed token
        moe = t * m.experts_per_tok * (2 * mi + mi + h) * d + t * m.num_experts * 4
        if m.shared_intermediate:
            moe += int(1.5 * t * 2 * (m.shared_intermediate // s.tp) * d)
        mlp = max(mlp, moe)
    gdn = 0
    if m.is_hybrid:
        conv_dim = (2 * m.lin_k_heads * m.lin_k_dim + m.lin_v_heads * m.lin_v_dim) // s.tp
        gdn = 3 * t * conv_dim * d + cdiv(t, 64) * (m.lin_v_heads // s.tp) * m.lin_k_dim * m.lin_v_dim * 4
    seqs = min(s.max_num_seqs, t)
    sampler = SAMPLER_LOGIT_COPIES * seqs * m.vocab * 4
    return int(ACTIVATION_MARGIN * (residual + max(attn, mlp, gdn) + sampler)) + ALLOCATOR_SLACK_BYTES


def _cudagraph_estimate(m: Model, s: Settings, layers_on_rank: int) -> int:
    if s.platform != "cuda" or s.enforce_eager:
        return 0
    capture = min(512, 2 * s.max_num_seqs) * (1 + s.spec_tokens)
    per_layer = capture * m.hidden * DTYPE_BYTES[m.dtype] * 2
    estimate = CUDAGRAPH_BASE_BYTES + per_layer * layers_on_rank
    return max(0, estimate)


def _derived_max_len(m: Model) -> int:
    return m.max_position or 0


def _exact_weights(params: Mapping[str, Any], m: Model) -> tuple[int | None, bool | None, str]:
    """Exact checkpoint bytes (weights_bytes, else the index's total_size) and whether MTP weights ship."""
    exact = _int_param(params, "weights_bytes", None)
    has_mtp: bool | None = None
    source = "weights_bytes" if exact else "estimate"
    index = params.get("safetensors_index")
    if index is None and isinstance(params.get("model_config"), str) and os.path.isdir(params["model_config"]):
        candidate = os.path.join(params["model_config"], "model.safetensors.index.json")
        index = candidate if os.path.isfile(candidate) else None
    if index is not None:
        data = _load_json(index, "safetensors_index")
        total = (data.get("metadata") or {}).get("total_size")
        weight_map = data.get("weight_map")
        if isinstance(weight_map, Mapping) and weight_map:
            draft_prefix = f"model.layers.{m.num_layers}."
            has_mtp = any(k.startswith(("mtp.", draft_prefix)) or ".mtp." in k for k in weight_map)
        if total is not None and not exact:
            exact = int(total)
            source = "safetensors_index"
    return exact, has_mtp, source


def _core(params: Mapping[str, Any], with_advice: bool) -> dict[str, Any]:
    if params.get("model_config") is None:
        raise PlanError("model_config is required: a config.json dict or its path.")
    cfg = _load_json(params["model_config"], "model_config")
    dtype_param = str(params.get("dtype") or "auto")
    if dtype_param not in MODEL_DTYPES:
        raise PlanError(f"dtype must be one of {', '.join(MODEL_DTYPES)}, not {dtype_param!r}.")
    m = parse_model(cfg, dtype_param)
    s = _settings(params, m, _derived_max_len(m))
    exact, has_mtp, weights_source = _exact_weights(params, m)
    layout = build_kv_layout(m, s)
    weights, draft, checkpoint_total, estimated_total, _scale = _weights_per_rank(m, s, exact, has_mtp)

    ranks = s.tp * s.pp
    ranks_per_node = ranks // s.nodes
    cuda = s.platform == "cuda"
    per_rank: list[dict[str, Any]] = []
    avail_kv: list[int] = []
    for rank in range(ranks):
        stage = rank // s.tp
        layers_here = len(layout.rank_layers[stage])
        w = int(weights[stage])
        dr = int(draft[stage])
        act = s.activation_override if s.activation_override is not None else _activation_estimate(m, s)
        cg = s.cudagraph_override if s.cudagraph_override is not None else _cudagraph_estimate(m, s, layers_here)
        cg = max(0, cg)
        if s.non_torch_override is not None:
            non_torch = s.non_torch_override
        elif cuda:
            non_torch = NON_TORCH_BASE_BYTES + (NON_TORCH_DISTRIBUTED_BYTES if ranks > 1 else 0)
        else:
            non_torch = CPU_RUNTIME_BYTES
        requested = math.ceil(s.total * s.util)
        if s.kv_cache_memory_bytes is not None:
            kv_avail = s.kv_cache_memory_bytes
        else:
            kv_avail = requested - w - dr - act - non_torch - cg
        avail_kv.append(kv_avail)
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
                "requested_bytes": requested,
                "weights_bytes": w,
                "draft_bytes": dr,
                "activation_peak_bytes": act,
                "non_torch_bytes": non_torch,
                "cudagraph_bytes": cg,
                "kv_budget_bytes": kv_avail,
                "bytes_per_block": layout.bytes_per_block(stage),
            }
        )

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
        used = (
            r["weights_bytes"]
            + r["draft_bytes"]
            + r["activation_peak_bytes"]
            + r["non_torch_bytes"]
            + r["cudagraph_bytes"]
            + r["kv_cache_bytes"]
        )
        r["used_bytes"] = used
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
            checks.append(
                {
                    "name": f"admission ({tag})",
                    "ok": requested <= s.available,
                    "detail": (
                        f"requested ceil(total x {s.util:g}) = {gib(requested)} "
                        f"{'<=' if requested <= s.available else '>'} MemAvailable {gib(s.available)}"
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
                    "(kv_cache_memory_bytes)"
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

    kv_tok_rank = 0
    kv_tok_model = 0
    kv_bytes = _kv_dtype_bytes(s, m)
    for i, kind in enumerate(m.layer_kinds):
        if kind == "linear":
            continue
        if m.use_mla:
            per_model = m.head_dim * kv_bytes
            per_rank_tok = per_model
        else:
            per_model = m.num_kv_heads * (m.head_dim + m.head_dim_v) * kv_bytes
            per_rank_tok = layout.attn_per_token_rank
        kv_tok_model += per_model
        if f"layers.{i}" in layout.rank_layers[0]:
            kv_tok_rank += per_rank_tok

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
            "kv_budget": "given (kv_cache_memory_bytes)" if s.kv_cache_memory_bytes is not None else "derived",
        },
    }
    result["advice"] = _advice(params, result, m, s) if (with_advice and not fits) else []
    result["message"] = _message(result, m, s)
    return result


def _try(params: Mapping[str, Any], **changes: Any) -> dict[str, Any] | None:
    trial = dict(params)
    trial.update(changes)
    try:
        return _core(trial, with_advice=False)
    except PlanError:
        return None


def _advice(params: Mapping[str, Any], result: dict[str, Any], m: Model, s: Settings) -> list[str]:
    advice: list[str] = []
    failed = {c["name"].split(" (")[0] for c in result["checks"] if not c["ok"]}
    fit_len = result["max_model_len_that_fits"]
    if "admission" in failed or "host floor" in failed:
        # the largest utilisation the admission check and the host floor allow
        limit = min(s.available - s.host_floor, s.available)
        util = math.floor(limit / s.total * 100) / 100
        if 0 < util < s.util:
            trial = _try(params, gpu_memory_utilization=util)
            alone = "" if trial and trial["fits"] else " (needed, not enough alone)"
            advice.append(
                f"lower gpu_memory_utilization to {util:.2f}{alone} (MemAvailable {gib(s.available)}, host floor "
                f"{gib(s.host_floor)}); dropping the page cache before launch raises MemAvailable"
            )
    if not failed & {"admission", "host floor"} and s.kv_cache_memory_bytes is None:
        # the largest utilisation admission and the host floor still allow
        ceiling = math.floor((s.available - s.host_floor) / s.total * 100) / 100
        if s.util < ceiling <= 1:
            trial = _try(params, gpu_memory_utilization=ceiling)
            if trial and trial["fits"]:
                advice.append(
                    f"raise gpu_memory_utilization to {ceiling:.2f} (still leaves the {gib(s.host_floor)} host floor)"
                )
    only_len = failed == {"one request at max_model_len"}
    if fit_len and fit_len < s.max_model_len and ("one request at max_model_len" in failed):
        trial = _try(params, max_model_len=fit_len)
        if trial and trial["fits"]:
            advice.append(f"set max_model_len to {fit_len} (the largest that fits one request)")
        elif only_len:
            advice.append(f"set max_model_len to at most {fit_len}")
    if s.kv_cache_dtype not in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        trial = _try(params, kv_cache_dtype="fp8")
        if trial and trial["fits"]:
            advice.append("use kv_cache_dtype fp8 (halves the KV cache per token)")
    if s.max_num_batched_tokens > 2048 and s.activation_override is None:
        trial = _try(params, max_num_batched_tokens=2048)
        if trial and trial["fits"]:
            advice.append("lower max_num_batched_tokens to 2048 (smaller activation peak)")
    world = s.tp * s.pp
    for tp in (2, 4, 8):
        if tp <= s.tp or tp * s.pp > 8 or m.num_heads % tp:
            continue
        trial = _try(params, tensor_parallel_size=tp, nodes=None if s.nodes == world else s.nodes * tp // s.tp)
        if trial and trial["fits"]:
            advice.append(f"use {tp * s.pp} nodes (tensor_parallel_size {tp})")
            break
    if "non-KV memory fits" in failed or not advice:
        current = _quant_scheme(m.quant).name
        options = [
            ("FP8", {"quant_method": "fp8", "weight_block_size": [128, 128]}),
            ("NVFP4", {"quant_method": "modelopt", "quant_algo": "NVFP4"}),
            ("INT4 (AutoRound/GPTQ, group 128)", {"quant_method": "auto-round", "bits": 4, "group_size": 128}),
        ]
        order = {"bf16": 0, "fp8": 1, "nvfp4": 2, "mxfp4": 2, "int": 3}
        cfg = _load_json(params["model_config"], "model_config")
        for rank, (label, quant) in enumerate(options, start=1):
            if rank <= order.get(current, 0):
                continue
            trial_cfg = dict(cfg)
            trial_cfg["quantization_config"] = quant
            if isinstance(trial_cfg.get("text_config"), dict):
                text = dict(trial_cfg["text_config"])
                text.pop("quantization_config", None)
                trial_cfg["text_config"] = text
            trial = _try(params, model_config=trial_cfg, weights_bytes=None, safetensors_index=None)
            if trial and trial["fits"]:
                advice.append(f"use a smaller quantisation: the {label} checkpoint (~{gib(trial['weights_bytes'])})")
                break
    return advice


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
    if s.kv_cache_memory_bytes is None:
        budget = (
            f"requested {gib(node['requested_bytes'])} of {gib(s.total)} (utilization {s.util:g}), "
            f"MemAvailable {gib(s.available)}"
        )
    else:
        budget = f"KV pool fixed at {human(s.kv_cache_memory_bytes)} per rank (kv_cache_memory_bytes)"
    lines.append(f"Per node: {budget}.")
    lines.append(
        f"{where}: weights {human(node['weights_bytes'])} + draft {human(node['draft_bytes'])} + activations "
        f"{human(node['activation_peak_bytes'])} (est.) + non-torch {human(node['non_torch_bytes'])} (est.) + "
        f"CUDA graphs {human(node['cudagraph_bytes'])} (est.) -> KV cache {human(node['kv_cache_bytes'])}; "
        f"{gib(node['host_left_bytes'])} left to the host (floor {gib(s.host_floor)})."
    )
    lines.append(
        f"KV cache: block {r['block_size']} tokens, {r['num_blocks']:,} blocks of {human(r['bytes_per_block'])}, "
        f"{r['blocks_per_request']} blocks per request -> KV cache size: {r['kv_cache_tokens']:,} tokens, "
        f"maximum concurrency for {s.max_model_len:,} tokens per request: {r['max_concurrency']:.2f}x."
    )
    # identical failures on several nodes are reported once
    merged: dict[tuple[str, str], list[str]] = {}
    for c in r["checks"]:
        if c["ok"]:
            continue
        base, _, node_tag = c["name"].partition(" (")
        merged.setdefault((base, c["detail"]), []).append(node_tag.rstrip(")").removeprefix("node "))
    for (base, detail), nodes in merged.items():
        tags = [t for t in nodes if t]
        where = "" if not tags else f" (node {tags[0]})" if len(tags) == 1 else f" (nodes {', '.join(tags)})"
        lines.append(f"FAILED {base}{where}: {detail}.")
    if not r["fits"]:
        if r["advice"]:
            lines.append("Advice: " + "; or ".join(r["advice"]) + ".")
        else:
            lines.append("Advice: no single change found that makes it fit; use more nodes or a smaller model.")
    return "\n".join(lines)


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
