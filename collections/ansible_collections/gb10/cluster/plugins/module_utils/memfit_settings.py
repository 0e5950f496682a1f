"""Memory-fit planner, the launch settings: vLLM's defaults for a GB10 node and the CPU build, and the
checks vLLM (or a GB10 node) imposes on tensor/pipeline parallelism, lengths, dtypes, utilisation and
speculative decoding.

:func:`parse_settings` turns the planner's parameters into :class:`Settings`, one sentence per
mistake (:class:`PlanError`). Plain typed Python, no Ansible imports.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import GIB, PlanError, int_param
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_model import Model

GB10_CUDA_TOTAL_BYTES = 130_663_006_208
"""What CUDA reports as total memory on a GB10 node: the host's MemTotal, 121.69 GiB on most boxes
(../shared/reference/gb10-uma-vllm.md: "130663006208 B = 121.69 GiB"). Only a planning default: the
serving play measures MemTotal on every node."""
GB10_PLANNING_MEM_AVAILABLE_BYTES = 101 * GIB
"""MemAvailable of a headless GB10 node after dropping the page cache, the planning default when no
node is measured: the low end of the 101 to 102 GiB headless owners report (gb10-uma-vllm.md)."""
DEFAULT_HOST_FLOOR_BYTES = 8 * GIB
"""What vLLM must leave in MemAvailable for the host: owners keep 8 to 10 GiB (gb10-uma-vllm.md)."""
ADMISSION_MARGIN_BYTES = 2 * GIB
"""Start-up admission on CUDA: ceil(total x utilization) must not exceed MemAvailable minus this.
vLLM takes its snapshot of free memory after its own API-server and engine-core processes, the worker's
CUDA context and NCCL buffers exist (gpu_worker.init_device), so they are no longer in MemAvailable when
it compares; calibration measures it (MemAvailable before the start minus the logged free memory)."""
MEMORY_MODES = ("bytes", "fraction")
"""How vLLM sizes the KV pool: ``bytes`` = --kv-cache-memory-bytes (the planner's, or given), the
utilization only passes admission; ``fraction`` = gpu_memory_utilization x total minus what vLLM's
profiling run measured."""
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

KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")
MAMBA_SSM_DTYPES = ("auto", "float32", "float16", "bfloat16")
PLATFORMS = ("cuda", "cpu")
MTP_METHODS = ("mtp", "deepseek_mtp", "qwen3_next_mtp", "qwen3_5_mtp", "ernie_mtp", "glm4_moe_mtp")



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
    util_given: bool
    memory_mode: str
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
    loaded_weights: list[int] | None
    admission_margin: int

    @property
    def choose_kv(self) -> bool:
        """Bytes mode with no KV pool given: the planner chooses it from the node figures."""
        return self.memory_mode == "bytes" and self.kv_cache_memory_bytes is None


def parse_settings(params: Mapping[str, Any], model: Model, derived_max_len: int) -> Settings:
    platform = str(params.get("platform") or "cuda").lower()
    if platform not in PLATFORMS:
        raise PlanError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}.")
    tp = int_param(params, "tensor_parallel_size", 1) or 1
    pp = int_param(params, "pipeline_parallel_size", 1) or 1
    world = tp * pp
    nodes = int_param(params, "nodes", world) or world
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
    max_model_len = int_param(params, "max_model_len", derived_max_len or None)
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
    raw_util = None if raw_util == "" else raw_util
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
        spec_tokens = int_param(spec_cfg, "num_speculative_tokens", None) or 0
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
    mbt = int_param(params, "max_num_batched_tokens", mbt_default) or mbt_default
    seqs = int_param(params, "max_num_seqs", seqs_default) or seqs_default
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
    kv_bytes = int_param(params, "kv_cache_memory_bytes", None)
    mode = _memory_mode(params, platform, kv_bytes)
    total = int_param(params, "node_memory_total_bytes", GB10_CUDA_TOTAL_BYTES) or GB10_CUDA_TOTAL_BYTES
    # Unmeasured nodes: a headless GB10 when the planner chooses the KV pool (it must pass admission
    # there); vLLM's arithmetic alone (everything available) otherwise, as before.
    unmeasured = GB10_PLANNING_MEM_AVAILABLE_BYTES if mode == "bytes" and platform == "cuda" else total
    available = int_param(params, "node_mem_available_bytes", unmeasured) or unmeasured
    floor = int_param(params, "host_floor_bytes", DEFAULT_HOST_FLOOR_BYTES, minimum=0)
    margin = int_param(params, "admission_margin_bytes", ADMISSION_MARGIN_BYTES if platform == "cuda" else 0, minimum=0)
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
        block_size=int_param(params, "block_size", None),
        enable_prefix_caching=prefix_caching,
        util=util,
        util_given=raw_util is not None,
        memory_mode=mode,
        kv_cache_memory_bytes=kv_bytes,
        spec_method=method,
        spec_tokens=spec_tokens,
        total=total,
        available=available,
        host_floor=floor if floor is not None else DEFAULT_HOST_FLOOR_BYTES,
        mamba_ssm_cache_dtype=ssm,
        enforce_eager=bool(params.get("enforce_eager", False)),
        async_scheduling=(platform == "cuda") if async_sched is None else bool(async_sched),
        activation_override=int_param(params, "activation_peak_bytes", None, minimum=0),
        # A negative CUDA-graph figure (vLLM has logged -10 to -36 GiB on GB10 with MTP) is clamped to 0.
        cudagraph_override=int_param(params, "cudagraph_bytes", None, minimum=-(1 << 62)),
        non_torch_override=int_param(params, "non_torch_bytes", None, minimum=0),
        loaded_weights=_loaded_weights(params, world),
        admission_margin=margin if margin is not None else 0,
    )


def _memory_mode(params: Mapping[str, Any], platform: str, kv_bytes: int | None) -> str:
    """``memory_mode`` as given, or what the flags mean to vLLM: bytes with a KV pool, else fraction."""
    raw = params.get("memory_mode")
    if raw is None or raw == "":
        return "bytes" if kv_bytes is not None else "fraction"
    mode = str(raw).lower()
    if mode not in MEMORY_MODES:
        raise PlanError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, not {raw!r}.")
    if mode == "fraction" and kv_bytes is not None:
        raise PlanError(
            "memory_mode fraction sizes the KV pool from gpu_memory_utilization, so kv_cache_memory_bytes "
            "cannot be given with it; drop one of them."
        )
    if mode == "bytes" and kv_bytes is None and platform != "cuda":
        raise PlanError(
            "memory_mode bytes on the CPU build needs kv_cache_memory_bytes (VLLM_CPU_KVCACHE_SPACE); "
            "the planner chooses the KV pool on CUDA only."
        )
    return mode


def _loaded_weights(params: Mapping[str, Any], world: int) -> list[int] | None:
    """``loaded_weights_bytes``: what vLLM logged as loaded per rank (weights and MTP draft), one number
    for every rank or a list of one per rank."""
    raw = params.get("loaded_weights_bytes")
    if raw is None:
        return None
    values = list(raw) if isinstance(raw, list | tuple) else [raw] * world
    if len(values) != world:
        raise PlanError(f"loaded_weights_bytes lists {len(values)} ranks, the layout has {world}.")
    return [int_param({"loaded_weights_bytes": v}, "loaded_weights_bytes", None) or 0 for v in values]



def model_dtype(params: Mapping[str, Any]) -> str:
    """vLLM ``--dtype`` as given (``auto`` when unset), checked."""
    dtype_param = str(params.get("dtype") or "auto")
    if dtype_param not in MODEL_DTYPES:
        raise PlanError(f"dtype must be one of {', '.join(MODEL_DTYPES)}, not {dtype_param!r}.")
    return dtype_param
