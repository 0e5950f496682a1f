"""Memory-fit planner, the KV cache: vLLM's KV cache specs and block arithmetic, restated.

Page sizes per layer type (``vllm/v1/kv_cache_interface.py``): full attention, sliding window, MLA and
the mamba / gated-DeltaNet state, with KV-head replication past the KV heads; the block size vLLM ends
with (``vllm/platforms/*.py``, the hybrid raise and mamba page padding); the KV cache groups and the
blocks one request takes (``vllm/v1/core/kv_cache_utils.py``). Plain typed Python, no Ansible imports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import (
    DTYPE_BYTES,
    PlanError,
    cdiv,
    pp_partition,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_model import Model
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import Settings

CUDA_DEFAULT_BLOCK_SIZE = 16
CPU_DEFAULT_BLOCK_SIZE = 128
CPU_MLA_BLOCK_SIZE = 16
CUDA_KERNEL_BLOCK_ALIGNMENT = 16  # FlashAttention / Triton / FlashInfer smallest kernel block on sm_121
CPU_KERNEL_BLOCK_ALIGNMENT = 32  # CPU_ATTN: MultipleOf(32)


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


def kv_dtype_bytes(s: Settings, m: Model) -> int:
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
    kv_bytes = kv_dtype_bytes(s, m)
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


def kv_bytes_per_token(m: Model, s: Settings, layout: KvLayout) -> tuple[int, int]:
    """KV bytes per token: on one rank of the first stage, and of the whole target model at TP=1."""
    kv_tok_rank = 0
    kv_tok_model = 0
    kv_bytes = kv_dtype_bytes(s, m)
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
    return kv_tok_rank, kv_tok_model
