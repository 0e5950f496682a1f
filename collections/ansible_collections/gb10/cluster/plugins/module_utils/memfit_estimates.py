"""Memory-fit planner, the estimates: what vLLM measures with a profiling run that cannot be reproduced
offline (peak activations, CUDA graphs, memory outside torch's allocator), estimated per rank.

Documented in docs/memory-planner.md; every figure can be overridden through the planner's
parameters (``activation_peak_bytes``, ``cudagraph_bytes``, ``non_torch_bytes``). Plain typed Python,
no Ansible imports.
"""
from __future__ import annotations

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import DTYPE_BYTES, MIB, cdiv
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_model import Model
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import Settings

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


def activation_estimate(m: Model, s: Settings) -> int:
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


def cudagraph_estimate(m: Model, s: Settings, layers_on_rank: int) -> int:
    if s.platform != "cuda" or s.enforce_eager:
        return 0
    capture = min(512, 2 * s.max_num_seqs) * (1 + s.spec_tokens)
    per_layer = capture * m.hidden * DTYPE_BYTES[m.dtype] * 2
    estimate = CUDAGRAPH_BASE_BYTES + per_layer * layers_on_rank
    return max(0, estimate)



def non_torch_estimate(s: Settings, ranks: int) -> int:
    """CUDA context and workspaces (+ NCCL with peers) per GB10 rank; the runtime of a CPU worker."""
    if s.platform == "cuda":
        return NON_TORCH_BASE_BYTES + (NON_TORCH_DISTRIBUTED_BYTES if ranks > 1 else 0)
    return CPU_RUNTIME_BYTES
