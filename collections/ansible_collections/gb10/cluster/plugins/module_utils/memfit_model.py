"""Memory-fit planner, the model: what a Hugging Face config.json says about the decoder.

:func:`parse_model` reads ``config.json`` (the text part of a multimodal one, the architecture, the
layer mix, MoE / MLA / gated-DeltaNet / MTP details, the quantisation block) into a :class:`Model`
normalised across the families the planner knows. Plain typed Python, no Ansible imports.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import PlanError

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


def text_config(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language-model part of a config.json, the one view the planner and the catalog's checks read.

    Multimodal checkpoints (Qwen3.5) nest it under ``text_config``: its keys win and the top level
    fills what it leaves out (``vision_config`` excepted). Other configs are returned as they are.
    """
    text = cfg.get("text_config")
    if isinstance(text, Mapping):
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


def _layer_types(text: Mapping[str, Any], num_layers: int) -> list[str] | None:
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
    text = text_config(cfg)
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
