"""gb10_memfit: vLLM 0.32.0 memory arithmetic, checked against numbers derived by hand.

Every expected number below is worked out in the comment next to it from vLLM's formulas
(kv_cache_interface.py page sizes, platforms/*.py block sizes, kv_cache_utils.py grouping and
capacity); none is read back from the implementation.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.memfit import (
    GB10_CUDA_TOTAL_BYTES,
    GIB,
    VLLM_RELEASE,
    PlanError,
    plan_memory,
    pp_partition,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "memfit"


def fixture(name: str) -> str:
    return str(FIXTURES / f"{name}.json")


def config(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def plan(name: str, **params) -> dict:
    return plan_memory({"model_config": fixture(name), **params})


# ---------------------------------------------------------------------------------------------
# whole-model KV bytes per token (vllm-memory.md table, BF16, TP=1)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # 15 full-attention layers x 2 KV heads x (256 + 256) x 2 bytes; the 45 DeltaNet layers hold no KV
        ("qwen3.5-397b-a17b-fp8", 30_720),
        # 12 full-attention layers x 2 x 512 x 2
        ("qwen3-next-80b-a3b", 24_576),
        # 94 layers x 4 x (128 + 128) x 2
        ("qwen3-235b-a22b", 192_512),
        # 36 layers (18 sliding + 18 full, same page) x 8 x (64 + 64) x 2
        ("gpt-oss-120b", 73_728),
        # MLA: 61 layers x 1 latent x (512 + 64) x 2
        ("deepseek-v3", 70_272),
        # 80 layers x 8 x 256 x 2
        ("llama-3.1-70b", 327_680),
    ],
)
def test_whole_model_kv_bytes_per_token(name, expected):
    result = plan(name, max_model_len=4096)
    assert result["kv_bytes_per_token_model"] == expected
    assert result["vllm_release"] == VLLM_RELEASE == "0.32.0"


def test_fp8_kv_halves_bytes_per_token():
    assert plan("llama-3.1-70b", max_model_len=4096, kv_cache_dtype="fp8")["kv_bytes_per_token_model"] == 163_840


# ---------------------------------------------------------------------------------------------
# TP and KV-head replication
# ---------------------------------------------------------------------------------------------


def test_kv_heads_shard_until_tp_exceeds_them():
    # Llama 70B, 8 KV heads: TP=2 -> 4 heads/rank: 80 x 4 x 256 x 2 = 163,840 B/token per rank
    assert plan("llama-3.1-70b", max_model_len=4096, tensor_parallel_size=2)["kv_bytes_per_token"] == 163_840
    # TP=8 -> 1 head/rank: 80 x 1 x 256 x 2 = 40,960
    assert plan("llama-3.1-70b", max_model_len=4096, tensor_parallel_size=8)["kv_bytes_per_token"] == 40_960


def test_kv_heads_replicated_when_tp_exceeds_them():
    # Qwen3-235B has 4 KV heads: TP=4 -> max(1, 4 // 4) = 1 head; TP=8 -> max(1, 4 // 8) = 1 head
    # (replicated), so per-rank KV per token stops shrinking: 94 x 1 x 256 x 2 = 48,128 both times.
    tp4 = plan("qwen3-235b-a22b", max_model_len=4096, tensor_parallel_size=4)
    tp8 = plan("qwen3-235b-a22b", max_model_len=4096, tensor_parallel_size=8)
    assert tp4["kv_bytes_per_token"] == tp8["kv_bytes_per_token"] == 48_128


def test_mla_latent_is_replicated_on_every_rank():
    # DeepSeek-V3: the single 576-wide latent is on every TP rank: 61 x 576 x 2 = 70,272 at TP=8 too.
    result = plan("deepseek-v3", max_model_len=4096, tensor_parallel_size=8)
    assert result["kv_bytes_per_token"] == 70_272
    assert result["block_size"] == 16


# ---------------------------------------------------------------------------------------------
# block sizes: CUDA 16, CPU 128, CPU MLA 16, hybrid raise
# ---------------------------------------------------------------------------------------------


def test_cpu_lab_dense_model_matches_the_logged_capacity():
    # lab-vllm-cpu.md: VLLM_CPU_KVCACHE_SPACE=1, max_model_len 512 logged
    # "CPU KV cache size: 1,048,576 tokens, Maximum concurrency for 512 tokens per request: 2048.00x".
    # page = 128 tokens x 2 heads x (32 + 32) x 2 B = 32,768; 4 layers -> 131,072 B/block;
    # 2^30 // 131,072 = 8,192 blocks; cdiv(512, 128) = 4 blocks/request -> 2048.0x; int(2048 x 512).
    result = plan("tiny-qwen3", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=512)
    assert result["block_size"] == 128
    assert result["bytes_per_block"] == 131_072
    assert result["num_blocks"] == 8_192
    assert result["blocks_per_request"] == 4
    assert result["max_concurrency"] == 2048.0
    assert result["kv_cache_tokens"] == 1_048_576
    assert result["fits"] is True


def test_cpu_mla_block_size_is_16():
    # vllm/platforms/cpu.py forces block 16 for MLA. Tiny DeepSeek-V2: latent 64 + rope 16 = 80,
    # page = 16 x 80 x 2 B = 2,560; 4 layers -> 10,240 B/block; 2^30 // 10,240 = 104,857 blocks;
    # cdiv(4096, 16) = 256 blocks/request -> 409.59765625x; int(409.59765625 x 4096) = 1,677,712.
    result = plan("tiny-deepseek-v2", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=4096)
    assert result["block_size"] == 16
    assert result["bytes_per_block"] == 10_240
    assert result["num_blocks"] == 104_857
    assert result["blocks_per_request"] == 256
    assert result["kv_cache_tokens"] == 1_677_712
    # MLA on the CPU build turns prefix caching off
    assert result["enable_prefix_caching"] is False


def test_cpu_user_block_size_is_kept_for_dense_models():
    result = plan("tiny-qwen3", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=512, block_size=64)
    # page 64 x 256 B = 16,384; x4 layers = 65,536; 2^30 // 65,536 = 16,384 blocks; 8 blocks/request
    assert (result["block_size"], result["num_blocks"], result["blocks_per_request"]) == (64, 16_384, 8)


def test_hybrid_block_size_raise_on_cuda():
    # Qwen3-Next, TP=1, BF16: attention 2 heads x 512 x 2 = 2,048 B/token.
    # Mamba page: conv (4 - 1, 2 x 16 x 128 + 32 x 128 = 8,192) bf16 = 49,152
    #           + SSM (32, 128, 128) bf16 (no mamba_ssm_dtype -> model dtype) = 1,048,576 -> 1,097,728.
    # block = 16 x cdiv(1,097,728, 16 x 2,048) = 16 x 34 = 544; attention page 544 x 2,048 = 1,114,112.
    result = plan("qwen3-next-80b-a3b", max_model_len=32768)
    assert result["mamba_page_bytes"] == 1_097_728
    assert result["block_size"] == 544
    pages = {g["page_bytes"] for g in result["kv_cache_groups"]}
    assert pages == {1_114_112}  # mamba pages padded to the attention page


def test_hybrid_block_size_raise_on_cpu_uses_float32_state_and_128_alignment():
    # CPU build (AVX-512 BF16): SSM state dtype "auto" reset to float32:
    # conv 49,152 + SSM 32 x 128 x 128 x 4 = 2,097,152 -> 2,146,304.
    # kernel alignment max(32, 128) = 128: block = 128 x cdiv(2,146,304, 128 x 2,048) = 128 x 9 = 1,152.
    result = plan("qwen3-next-80b-a3b", platform="cpu", kv_cache_memory_bytes=16 * GIB, max_model_len=32768)
    assert result["mamba_page_bytes"] == 2_146_304
    assert result["block_size"] == 1_152


def test_tiny_hybrid_on_cpu_groups_and_capacity():
    # Tiny Qwen3-Next: 3 DeltaNet + 1 full layer. Attention 2 x (64 + 64) x 2 = 512 B/token.
    # Mamba: conv (3, 2 x 2 x 32 + 4 x 32 = 256) bf16 = 1,536 + SSM (4, 32, 32) f32 = 16,384 -> 17,920.
    # block = 128 x cdiv(17,920, 128 x 512) = 128; page 65,536 (mamba padded to it).
    # Groups: full 1 layer, mamba 3 layers -> group size 1 -> 4 groups of 1; 65,536 B/block.
    # 2^30 // 65,536 = 16,384 blocks. Per request (prefix caching -> "align"):
    # cdiv(4096, 128) = 32 + 3 x 2 = 38 -> 431.157...x; int(16,384 / 38 x 4096) = 1,766,022.
    result = plan(
        "tiny-qwen3-next", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=4096,
        max_num_batched_tokens=4096,
    )
    assert result["block_size"] == 128
    assert result["mamba_page_bytes"] == 17_920
    assert len(result["kv_cache_groups"]) == 4
    assert result["bytes_per_block"] == 65_536
    assert result["num_blocks"] == 16_384
    assert result["blocks_per_request"] == 38
    assert result["kv_cache_tokens"] == 1_766_022
    assert result["max_concurrency"] == pytest.approx(16_384 / 38)


def test_prefix_caching_and_speculative_tokens_change_blocks_per_request():
    # Qwen3-Next on CUDA, MTP 2 tokens: conv state grows to (3 + 2, 8,192) bf16 = 81,920;
    # page 81,920 + 1,048,576 = 1,130,496 -> block 16 x cdiv(1,130,496, 32,768) = 16 x 35 = 560.
    # Layers: 12 full + 1 MTP draft = 13 attention, 36 DeltaNet -> group size 13 (36 >= 1.5 x 13),
    # mamba split into cdiv(36, 13) = 3 groups; 13 x 560 x 2,048 = 14,909,440 B/block.
    # Per request at 262,144: attention cdiv(262,144, 560) = 469;
    #   prefix caching on ("align"): 3 groups x (2 + 2) = 12 -> 481;
    #   prefix caching off ("none"): 3 groups x (1 + 2) = 9 -> 478.
    spec = {"method": "mtp", "num_speculative_tokens": 2}
    on = plan("qwen3-next-80b-a3b", tensor_parallel_size=1, speculative_config=spec, max_model_len=262144)
    off = plan(
        "qwen3-next-80b-a3b", tensor_parallel_size=1, speculative_config=spec, max_model_len=262144,
        enable_prefix_caching=False,
    )
    assert on["block_size"] == off["block_size"] == 560
    assert on["bytes_per_block"] == 14_909_440
    assert on["blocks_per_request"] == 481
    assert off["blocks_per_request"] == 478
    kinds = sorted((g["kind"], g["layers"]) for g in on["kv_cache_groups"])
    assert kinds == [("full", 13), ("mamba", 12), ("mamba", 12), ("mamba", 12)]


def test_group_padding_when_draft_layer_unbalances_the_pattern():
    # Tiny Qwen3-Next + MTP: 2 attention (1 + draft) and 3 DeltaNet layers. 3 < 1.5 x 2 is false,
    # so group size 2: mamba splits into cdiv(3, 2) = 2 groups (2 + 1 layers, vLLM pads the second).
    # bytes/block = 2 x 65,536 = 131,072; per request cdiv(4096, 128) = 32 + 2 x (2 + 2) = 40.
    result = plan(
        "tiny-qwen3-next", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=4096,
        speculative_config={"method": "mtp", "num_speculative_tokens": 2},
    )
    assert result["bytes_per_block"] == 131_072
    assert result["blocks_per_request"] == 40
    assert result["num_blocks"] == 8_192
    assert result["kv_cache_tokens"] == int(8_192 / 40 * 4096)


def test_nested_text_config_qwen3_5_on_cpu():
    # Tiny Qwen3.5 (text_config nested, mamba_ssm_dtype float32): 6 DeltaNet + 2 full layers;
    # page 65,536 as for tiny Qwen3-Next; groups: full 2, mamba 6 -> group size 2 -> 1 + 3 groups;
    # 2 x 65,536 = 131,072 B/block; 8,192 blocks; per request 32 + 3 x 2 = 38.
    result = plan("tiny-qwen3.5-moe", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=4096)
    assert result["architecture"] == "Qwen3_5MoeForConditionalGeneration"
    assert result["block_size"] == 128
    assert result["bytes_per_block"] == 131_072
    assert result["blocks_per_request"] == 38
    assert result["kv_cache_tokens"] == int(8_192 / 38 * 4096)


def test_sliding_window_blocks_per_request_cpu_and_cuda():
    # Tiny gpt-oss on CPU: even layers sliding (window 128), odd full; page 128 x 2 x 128 x 2 = 65,536.
    # Groups 2 + 2 -> 131,072 B/block -> 8,192 blocks. Per request at 4,096 with 4,096 batched tokens:
    # full cdiv(4096, 128) = 32; sliding cdiv(min(127 + 1 x 4096, 4096), 128) + 1 = 33 -> 65.
    cpu = plan(
        "tiny-gpt-oss", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=4096,
        max_num_batched_tokens=4096,
    )
    assert cpu["blocks_per_request"] == 65
    assert cpu["num_blocks"] == 8_192
    assert cpu["kv_cache_tokens"] == int(8_192 / 65 * 4096)
    # gpt-oss-120b on CUDA, block 16, max_model_len 131,072, async scheduling (2 batches in flight):
    # full cdiv(131,072, 16) = 8,192; sliding cdiv(min(127 + 2 x 2,048, 131,072), 16) + 1 = 264 + 1 = 265.
    cuda = plan("gpt-oss-120b", max_model_len=131072)
    assert cuda["blocks_per_request"] == 8_192 + 265
    # 18 layers x 16 x 8 x 128 x 2 = 589,824 B/block
    assert cuda["bytes_per_block"] == 589_824


def test_all_sliding_window_model_is_one_group():
    # Mistral without layer_types: CacheConfig.sliding_window applies the 256-token window to both layers.
    # page 128 x 2 x 128 x 2 = 65,536; one group of 2 -> 131,072 B/block -> 8,192 blocks per GiB.
    # Per request: cdiv(min(256 - 1 + 1 x 2,048, 4,096), 128) + 1 = 18 + 1 = 19.
    result = plan(
        "tiny-mistral-swa", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=4096,
        max_num_batched_tokens=2048,
    )
    assert [g["kind"] for g in result["kv_cache_groups"]] == ["sliding"]
    assert result["blocks_per_request"] == 19
    assert result["kv_cache_tokens"] == int(8_192 / 19 * 4096) == 1_766_022


def test_layer_types_select_the_sliding_layers():
    cfg = config("tiny-mistral-swa")
    cfg["layer_types"] = ["sliding_attention", "full_attention"]
    result = plan_memory({
        "model_config": cfg, "platform": "cpu", "kv_cache_memory_bytes": GIB, "max_model_len": 4096,
        "max_num_batched_tokens": 2048,
    })
    # one full + one sliding group of one layer each: 65,536 B/block -> 16,384 blocks;
    # per request 32 + 19 = 51
    assert sorted(g["kind"] for g in result["kv_cache_groups"]) == ["full", "sliding"]
    assert result["num_blocks"] == 16_384
    assert result["blocks_per_request"] == 51


def test_mxfp4_weight_estimate_matches_the_published_checkpoint():
    # gpt-oss-120b: 65,248,815,744 bytes on disk (experts 4-bit + e8m0 per 32, the rest BF16).
    result = plan("gpt-oss-120b", max_model_len=8192)
    assert result["weights_source"] == "estimate"
    assert abs(result["weights_bytes"] - 65_248_815_744) / 65_248_815_744 < 0.005


def test_quantisation_estimates_order():
    base = config("qwen3-235b-a22b")
    sizes = {}
    for label, quant in {
        "bf16": None,
        "fp8": {"quant_method": "fp8", "weight_block_size": [128, 128]},
        "nvfp4": {"quant_method": "modelopt", "quant_algo": "NVFP4"},
        "int4": {"quant_method": "gptq", "bits": 4, "group_size": 128},
    }.items():
        cfg = dict(base)
        if quant:
            cfg["quantization_config"] = quant
        sizes[label] = plan_memory({"model_config": cfg, "max_model_len": 4096})["weights_bytes"]
    # ~235 B params: BF16 2 B/param, FP8 ~1 B, NVFP4 0.5 + 1/16, INT4 0.5 + 2.5/128 (+ g_idx)
    assert 430 * GIB < sizes["bf16"] < 445 * GIB
    assert 215 * GIB < sizes["fp8"] < 225 * GIB
    assert 120 * GIB < sizes["nvfp4"] < 130 * GIB
    assert 110 * GIB < sizes["int4"] < 125 * GIB
    assert sizes["bf16"] > sizes["fp8"] > sizes["nvfp4"] > sizes["int4"]


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        # Tiny Qwen3 (tied embeddings 512 x 128 BF16 = 131,072 B; final norm 256 B). Per layer the
        # linears are q 128x128, k 64x128, v 64x128, o 128x128, gate/up 256x128, down 128x256; norms
        # (32 + 32 + 128 + 128) x 2 = 640 B.
        # NVFP4: n/2 + cdiv(in, 16) x out fp8 scales + 8 B global scales per tensor:
        #   q 9,224 + k 4,616 + v 4,616 + o 9,224 + 3 x 18,440 = 83,000; + 640 = 83,640 per layer;
        #   4 x 83,640 + 256 + 131,072 = 465,888.
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, 465_888),
        (
            {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
             "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}}},
            465_888,
        ),
        # FP8 with 128x128 block scales (fp32 per block): q 16,388 + k 8,196 + v 8,196 + o 16,388
        #   + 3 x 32,776 = 147,496; + 640 = 148,136 per layer; 4 x 148,136 + 256 + 131,072 = 723,872.
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, 723_872),
        # INT4 AWQ group 128: n/2 + groups x out x (2 B scale + 0.5 B zero):
        #   q 8,192 + 1 x 128 x 2.5 = 8,512; k 4,096 + 160 = 4,256; v 4,256; o 8,512;
        #   gate/up 16,384 + 640 = 17,024 each; down 16,384 + 2 x 128 x 2.5 = 17,024;
        #   sum 8,512 + 4,256 + 4,256 + 8,512 + 3 x 17,024 = 76,608; + 640 = 77,248 per layer;
        #   4 x 77,248 + 256 + 131,072 = 440,320.
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, 440_320),
    ],
)
def test_quantised_weight_bytes_by_hand(quant, expected):
    cfg = config("tiny-qwen3")
    cfg["quantization_config"] = quant
    result = plan_memory({"model_config": cfg, "platform": "cpu", "kv_cache_memory_bytes": GIB,
                          "max_model_len": 512})
    assert result["weights_bytes"] == expected


def test_ignore_list_keeps_modules_bf16():
    cfg = config("tiny-qwen3")
    cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128],
                                  "ignore": ["re:.*mlp.down_proj$"]}
    result = plan_memory({"model_config": cfg, "platform": "cpu", "kv_cache_memory_bytes": GIB,
                          "max_model_len": 512})
    # down_proj back to BF16: 128 x 256 x 2 = 65,536 instead of 32,776 -> +32,760 per layer
    assert result["weights_bytes"] == 723_872 + 4 * 32_760


def test_safetensors_index_total_size_and_mtp_presence(tmp_path):
    index = {"metadata": {"total_size": 100 * GIB}, "weight_map": {"model.embed_tokens.weight": "a.safetensors"}}
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(json.dumps(index))
    result = plan("qwen3-next-80b-a3b", max_model_len=4096, safetensors_index=str(path))
    assert result["weights_source"] == "safetensors_index"
    assert result["weights_bytes"] == 100 * GIB


# ---------------------------------------------------------------------------------------------
# pipeline parallel and MTP draft weights
# ---------------------------------------------------------------------------------------------


def test_pp_partition_is_vllms():
    # get_pp_indices: remainders go to the partitions before the last one.
    assert pp_partition(61, 4) == [15, 15, 16, 15]
    assert pp_partition(60, 8) == [7, 7, 7, 8, 8, 8, 8, 7]
    assert pp_partition(48, 2) == [24, 24]


def test_uneven_pipeline_split_layers_per_rank():
    result = plan("deepseek-v3", max_model_len=4096, pipeline_parallel_size=4)
    assert [r["layers"] for r in result["per_rank"]] == [15, 15, 16, 15]


def test_mtp_draft_shares_embeddings_only_without_pp():
    spec = {"method": "mtp", "num_speculative_tokens": 1}
    pp1 = plan("deepseek-v3", max_model_len=4096, tensor_parallel_size=4, speculative_config=spec)
    pp2 = plan(
        "deepseek-v3", max_model_len=4096, tensor_parallel_size=4, pipeline_parallel_size=2, speculative_config=spec
    )
    draft_pp1 = pp1["per_rank"][0]["draft_bytes"]
    assert draft_pp1 > 0
    assert pp2["per_rank"][0]["draft_bytes"] == 0  # the draft lives on the last stage
    # With PP=2 the draft loads its own embedding and lm_head (BF16, vocab-parallel over TP=4):
    # 2 x 129,280 x 7,168 x 2 B / 4 = 926,679,040 B more than with PP=1 at the same TP.
    extra = pp2["per_rank"][-1]["draft_bytes"] - draft_pp1
    assert extra == pytest.approx(2 * 129_280 * 7_168 * 2 / 4, abs=2)


def test_mtp_adds_one_attention_layer_of_kv():
    plain = plan("deepseek-v3", max_model_len=4096, tensor_parallel_size=8)
    mtp = plan(
        "deepseek-v3", max_model_len=4096, tensor_parallel_size=8,
        speculative_config={"method": "mtp", "num_speculative_tokens": 1},
    )
    # 61 -> 62 MLA layers per block: 16 x 576 x 2 = 18,432 B per layer
    assert plain["bytes_per_block"] == 61 * 18_432
    assert mtp["bytes_per_block"] == 62 * 18_432


# ---------------------------------------------------------------------------------------------
# the worked GB10 example
# ---------------------------------------------------------------------------------------------


def worked_example(**overrides) -> dict:
    params = {
        "tensor_parallel_size": 4,
        "speculative_config": {"method": "mtp", "num_speculative_tokens": 2},
        "kv_cache_dtype": "fp8",
        "max_model_len": 262144,
        "max_num_seqs": 16,
        "max_num_batched_tokens": 8192,
        "gpu_memory_utilization": 0.90,
        "weights_bytes": 379 * GIB,
    }
    params.update(overrides)
    return plan("qwen3.5-397b-a17b-fp8", **params)


def test_worked_gb10_example_kv_arithmetic():
    result = worked_example()
    # fp8 KV, 2 KV heads over TP=4 -> replicated to 1 head/rank: 1 x (256 + 256) x 1 B = 512 B/token.
    # Mamba page per rank: conv (4 - 1 + 2 spec, 12,288 / 4 = 3,072) bf16 = 30,720
    #   + SSM (64 / 4 = 16, 128, 128) float32 (config mamba_ssm_dtype) = 1,048,576 -> 1,079,296.
    assert result["mamba_page_bytes"] == 1_079_296
    # block = 16 x cdiv(1,079,296, 16 x 512) = 16 x 132 = 2,112; page 2,112 x 512 = 1,081,344.
    assert result["block_size"] == 2_112
    # 15 full + 1 MTP = 16 attention layers; 45 DeltaNet -> 3 groups of 15; bytes/block 16 x 1,081,344.
    assert result["bytes_per_block"] == 17_301_504
    # Per request: cdiv(262,144, 2,112) = 125 attention blocks + 3 x (2 + 2) align-mode mamba blocks.
    assert result["blocks_per_request"] == 137
    # Logged capacity formulas
    assert result["max_concurrency"] == result["num_blocks"] / 137
    assert result["kv_cache_tokens"] == int(result["num_blocks"] / 137 * 262_144)
    # per-rank KV per token: 15 layers x 512 = 7,680 B (draft layer not counted)
    assert result["kv_bytes_per_token"] == 7_680


def test_worked_gb10_example_memory():
    result = worked_example()
    node = result["per_node"][0]
    assert len(result["per_node"]) == 4
    # requested = ceil(121.69 GiB x 0.90) = 109.52 GiB
    assert node["requested_bytes"] == math.ceil(GB10_CUDA_TOTAL_BYTES * 0.90)
    assert 109.5 * GIB < node["requested_bytes"] < 109.53 * GIB
    # 379 GiB of checkpoint over 4 nodes: ~95 GiB per node including the MTP layer
    weights = node["weights_bytes"] + node["draft_bytes"]
    assert 94.5 * GIB < weights < 96.5 * GIB
    assert 1.3 * GIB < node["draft_bytes"] < 1.8 * GIB  # ~6.6 B MTP params in FP8 over 4 ranks
    assert result["fits"] is True
    # KV budget a few GiB after weights, activations, non-torch and CUDA graphs
    assert 5 * GIB < node["kv_cache_bytes"] < 14 * GIB
    assert result["max_concurrency"] > 1
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["admission (node 0)"]["ok"] is True
    # host keeps 121.69 x 0.10 = 12.17 GiB >= 8 GiB
    assert checks["host floor (node 0)"]["ok"] is True


def test_worked_example_at_095_breaks_the_host_floor():
    result = worked_example(gpu_memory_utilization=0.95)
    # 121.69 x 0.05 = 6.08 GiB left to the host < 8 GiB floor
    assert result["fits"] is False
    failed = [c["name"] for c in result["checks"] if not c["ok"]]
    assert "host floor (node 0)" in failed
    assert any("gpu_memory_utilization" in a for a in result["advice"])


def test_negative_cudagraph_override_is_clamped():
    result = worked_example(cudagraph_bytes=-20 * GIB)
    assert all(r["cudagraph_bytes"] == 0 for r in result["per_rank"])


def test_explicit_kv_cache_memory_bytes_on_cuda():
    result = worked_example(kv_cache_memory_bytes=8 * GIB)
    # 8 GiB // 17,301,504 = 496 blocks
    assert result["num_blocks"] == 8 * GIB // 17_301_504 == 496
    assert result["kv_cache_tokens"] == int(496 / 137 * 262_144)


# ---------------------------------------------------------------------------------------------
# not fitting: numbers and advice
# ---------------------------------------------------------------------------------------------


def test_max_model_len_too_long_reports_the_largest_that_fits():
    # 1 MiB pool, 131,072 B/block -> 8 blocks; vLLM holds one (null) block back for the check:
    # 7 blocks x 128 tokens = 896 is the largest max_model_len for one request.
    result = plan("tiny-qwen3", platform="cpu", kv_cache_memory_bytes=1 << 20, max_model_len=4096)
    assert result["fits"] is False
    assert result["max_model_len_that_fits"] == 896
    assert result["advice"][0] == "set max_model_len to 896 (the largest that fits one request)"
    assert "DOES NOT FIT" in result["message"]
    assert "largest max_model_len that fits: 896" in result["message"]
    assert "Advice: set max_model_len to 896" in result["message"]


def test_weights_too_big_advises_more_nodes_or_a_smaller_quantisation():
    # Qwen3-235B BF16 (~438 GiB) over 4 nodes: ~110 GiB of weights per node > the 111.95 GiB budget
    # minus activations and graphs.
    result = plan("qwen3-235b-a22b", tensor_parallel_size=4, max_model_len=32768)
    assert result["fits"] is False
    failed = {c["name"] for c in result["checks"] if not c["ok"]}
    assert "non-KV memory fits" in failed
    assert "use 8 nodes (tensor_parallel_size 8)" in result["advice"]
    assert any(a.startswith("use a smaller quantisation: the FP8 checkpoint") for a in result["advice"])
    for word in ("DOES NOT FIT", "weights", "KV budget", "Advice:"):
        assert word in result["message"]


def test_fp8_kv_advice_when_it_is_enough():
    # Tiny model, pool of 2 MiB: BF16 -> 16 blocks (15 usable) x 128 = 1,920 < 4,096;
    # fp8 -> 65,536 B/block, 32 blocks (31 usable) = 3,968 < 4,096 still; so use a 3,000-token context:
    # BF16 needs cdiv(3000, 128) = 24 blocks > 15, fp8 needs 24 <= 31 -> fp8 fixes it.
    result = plan("tiny-qwen3", platform="cpu", kv_cache_memory_bytes=2 << 20, max_model_len=3000)
    assert result["fits"] is False
    assert "use kv_cache_dtype fp8 (halves the KV cache per token)" in result["advice"]


def test_admission_failure_when_memavailable_is_short():
    # 100 GiB available < ceil(121.69 x 0.92) = 111.95 GiB requested
    result = plan("llama-3.1-70b", tensor_parallel_size=2, max_model_len=32768, node_mem_available_bytes=100 * GIB)
    assert result["fits"] is False
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["admission (node 0)"]["ok"] is False
    assert "111.95 GiB > MemAvailable 100.00 GiB" in checks["admission (node 0)"]["detail"]
    # (100 - 8) / 121.69 = 0.756 -> 0.75
    assert any(a.startswith("lower gpu_memory_utilization to 0.75") for a in result["advice"])


def test_activation_bound_plan_advises_fewer_batched_tokens_or_more_utilisation():
    # gpt-oss-120b on one node at utilization 0.6 (73.01 GiB) with 131,072 batched tokens: the
    # activation estimate (~20.8 GiB) plus 60.77 GiB of weights leave no KV budget.
    result = plan(
        "gpt-oss-120b", max_model_len=131072, max_num_batched_tokens=131072, max_num_seqs=1024,
        gpu_memory_utilization=0.6,
    )
    assert result["fits"] is False
    assert "lower max_num_batched_tokens to 2048 (smaller activation peak)" in result["advice"]
    # (121.69 - 8) / 121.69 = 0.934 -> 0.93 keeps the host floor and fits
    assert "raise gpu_memory_utilization to 0.93 (still leaves the 8.00 GiB host floor)" in result["advice"]
    assert "use 2 nodes (tensor_parallel_size 2)" in result["advice"]


# ---------------------------------------------------------------------------------------------
# refusals (PlanError: one sentence)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"tensor_parallel_size": 3}, "tensor_parallel_size 3 does not divide the 32 attention heads"),
        ({"kv_cache_dtype": "int3"}, "kv_cache_dtype must be one of"),
        ({"platform": "tpu"}, "platform must be one of cuda, cpu"),
        ({"max_model_len": 1_000_000}, "exceeds the model's max_position_embeddings (262144)"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in (0, 1]"),
        ({"speculative_config": {"method": "eagle3", "num_speculative_tokens": 2}}, "is not modelled"),
        ({"speculative_config": {"method": "mtp", "num_speculative_tokens": 0}}, "at least 1"),
        ({"nodes": 3, "tensor_parallel_size": 4}, "nodes (3) must divide"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be at least 1"),
    ],
)
def test_refusals(params, fragment):
    with pytest.raises(PlanError) as exc:
        plan("qwen3.5-397b-a17b-fp8", **params)
    assert fragment in str(exc.value)
    assert str(exc.value).endswith(".")


def test_refuses_unknown_architecture():
    with pytest.raises(PlanError, match="architecture FooForCausalLM is not one the planner models"):
        plan_memory({"model_config": {"architectures": ["FooForCausalLM"], "hidden_size": 8}})


def test_refuses_unknown_quantization():
    cfg = config("llama-3.1-70b")
    cfg["quantization_config"] = {"quant_method": "bitsandbytes"}
    with pytest.raises(PlanError, match="quantization method 'bitsandbytes' is not one the planner knows"):
        plan_memory({"model_config": cfg, "max_model_len": 4096})


def test_refuses_mtp_on_a_model_without_mtp_layers():
    with pytest.raises(PlanError, match="declares none"):
        plan("llama-3.1-70b", max_model_len=4096, speculative_config={"method": "mtp", "num_speculative_tokens": 1})


def test_refuses_gdn_heads_not_divisible():
    # tiny Qwen3-Next: 4 attention heads (TP=4 divides them) but 2 DeltaNet key heads (TP=4 does not).
    with pytest.raises(PlanError, match="does not divide the gated-DeltaNet heads"):
        plan("tiny-qwen3-next", platform="cpu", kv_cache_memory_bytes=GIB, tensor_parallel_size=4)


def test_refuses_missing_or_bad_config(tmp_path):
    with pytest.raises(PlanError, match="model_config is required"):
        plan_memory({})
    with pytest.raises(PlanError, match="cannot be read"):
        plan_memory({"model_config": str(tmp_path / "missing.json")})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="is not valid JSON"):
        plan_memory({"model_config": str(bad)})
    with pytest.raises(PlanError, match="lacks the field 'hidden_size'"):
        plan_memory({"model_config": {"architectures": ["LlamaForCausalLM"]}})


def test_cuda_nodes_must_equal_ranks():
    with pytest.raises(PlanError, match="a GB10 node has one GPU"):
        plan("llama-3.1-70b", max_model_len=4096, tensor_parallel_size=4, nodes=2)


def test_cpu_ranks_may_share_a_node():
    result = plan("tiny-qwen3", platform="cpu", kv_cache_memory_bytes=GIB, max_model_len=512,
                  tensor_parallel_size=2, nodes=1)
    assert len(result["per_node"]) == 1 and result["per_node"][0]["ranks"] == [0, 1]
    # tiny Qwen3 TP=2: 1 KV head/rank -> page 128 x 64 x 2 = 16,384 x 4 layers = 65,536; 16,384 blocks
    assert result["num_blocks"] == 16_384


def test_defaults_follow_vllm_032_on_gb10_and_cpu():
    cuda = plan("llama-3.1-70b", tensor_parallel_size=4, max_model_len=8192)
    assert (cuda["max_num_seqs"], cuda["max_num_batched_tokens"]) == (256, 2048)
    assert cuda["gpu_memory_utilization"] == 0.92
    assert cuda["max_model_len"] == 8192
    cpu = plan("tiny-qwen3", platform="cpu", kv_cache_memory_bytes=GIB, tensor_parallel_size=2)
    assert (cpu["max_num_seqs"], cpu["max_num_batched_tokens"]) == (256, 4096)
    assert cpu["max_model_len"] == 4096  # max_position_embeddings


def test_model_directory_finds_config_and_index(tmp_path):
    # a model folder: config.json plus model.safetensors.index.json (DeepSeek MTP tensors are layer 61)
    (tmp_path / "config.json").write_text((FIXTURES / "deepseek-v3.json").read_text())
    index = {"metadata": {"total_size": 640 * GIB},
             "weight_map": {"model.layers.61.eh_proj.weight": "model-00163.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    result = plan_memory({"model_config": str(tmp_path), "max_model_len": 4096, "tensor_parallel_size": 8})
    assert result["weights_source"] == "safetensors_index"
    assert result["weights_bytes"] == 640 * GIB
    assert result["architecture"] == "DeepseekV3ForCausalLM"


# ---------------------------------------------------------------------------------------------
# bytes mode: the planner chooses --kv-cache-memory-bytes and a utilization that passes admission
# ---------------------------------------------------------------------------------------------

MIB = 1 << 20
HEADLESS = 101 * GIB  # the planning default: a headless GB10 after dropping caches


def non_kv(rank: dict) -> int:
    return sum(rank[k] for k in ("weights_bytes", "draft_bytes", "activation_peak_bytes", "non_torch_bytes",
                                 "cudagraph_bytes"))


def test_bytes_mode_budget_and_admission_on_8_nodes():
    result = worked_example(tensor_parallel_size=8, gpu_memory_utilization=None, memory_mode="bytes",
                            node_mem_available_bytes=HEADLESS)
    rank = result["per_rank"][0]
    n = non_kv(rank)
    # KV pool = MemAvailable - host floor - non-KV, rounded down to a MiB; the same on every rank
    kv = (HEADLESS - 8 * GIB - n) // MIB * MIB
    assert result["kv_cache_memory_bytes_per_rank"] == kv
    assert result["vllm_memory_args"]["kv_cache_memory_bytes"] == kv
    assert (result["memory_mode"], result["kv_cache_memory_source"]) == ("bytes", "planner")
    # utilization = (non-KV + pool) / total rounded up to a hundredth
    util = math.ceil(100 * (n + kv) / GB10_CUDA_TOTAL_BYTES) / 100
    assert result["gpu_memory_utilization"] == result["vllm_memory_args"]["gpu_memory_utilization"] == util
    assert result["gpu_memory_utilization_source"] == "planner"
    # ... which passes vLLM's start-up check with the 2 GiB margin: ceil(total x util) <= 101 - 2 GiB
    requested = math.ceil(GB10_CUDA_TOTAL_BYTES * util)
    assert rank["requested_bytes"] == requested <= HEADLESS - 2 * GIB
    assert result["admission_margin_bytes"] == 2 * GIB
    # the pool is the planner's to the block: num_blocks = pool // bytes per block
    assert result["num_blocks"] == kv // result["bytes_per_block"]
    assert result["kv_cache_tokens"] == int(result["num_blocks"] / result["blocks_per_request"] * 262_144)
    node = result["per_node"][0]
    assert node["host_left_bytes"] >= 8 * GIB
    assert result["fits"] is True and result["kv_tokens_tolerance"] == 0.0
    assert "bytes mode: KV pool" in result["message"]


def test_bytes_mode_plans_a_headless_gb10_when_no_node_is_measured():
    result = worked_example(tensor_parallel_size=8, gpu_memory_utilization=None, memory_mode="bytes")
    node = result["per_node"][0]
    # 130,663,006,208 B (121.69 GiB) and 101 GiB: gb10-uma-vllm.md
    assert (node["total_bytes"], node["mem_available_bytes"]) == (130_663_006_208, 101 * GIB)


def test_fraction_090_is_refused_on_a_headless_node_and_bytes_mode_is_advised():
    # ceil(121.69 GiB x 0.90) = 109.52 GiB > 101 GiB - 2 GiB: vLLM refuses to start
    result = worked_example(tensor_parallel_size=8, node_mem_available_bytes=HEADLESS)
    assert result["memory_mode"] == "fraction" and result["fits"] is False
    checks = {c["name"]: c for c in result["checks"]}
    assert "109.52 GiB > MemAvailable 101.00 GiB - 2.00 GiB start-up margin" in checks["admission (node 0)"]["detail"]
    assert result["kv_tokens_tolerance"] == 0.25
    bytes_fix = [f for f in result["fixes"] if f["set"].get("memory_mode") == "bytes"]
    assert bytes_fix and bytes_fix[0]["set"] == {"memory_mode": "bytes", "gpu_memory_utilization": None}
    assert bytes_fix[0]["advice"].startswith("let the planner size the KV pool in bytes")
    # (101 - 8) / 121.69 = 0.764 -> 0.76, with its planner parameters
    lower = [f for f in result["fixes"] if f["advice"].startswith("lower gpu_memory_utilization to 0.76")]
    assert lower and lower[0]["set"] == {"gpu_memory_utilization": 0.76}


def test_bytes_mode_fp8_reference_on_4_headless_nodes_says_what_it_needs():
    result = worked_example(gpu_memory_utilization=None, memory_mode="bytes")
    rank = result["per_rank"][0]
    assert result["fits"] is False
    assert result["kv_cache_memory_bytes_per_rank"] == 0, "nothing is left after the host floor"
    # non-KV + host floor + one request at 262,144 tokens plus vLLM's null block (+ 1 MiB), MiB-rounded up
    need = non_kv(rank) + 8 * GIB + result["bytes_per_block"] * (137 + 1) + MIB
    assert result["mem_available_needed_bytes"] == -(-need // MIB) * MIB
    assert f"It would fit from MemAvailable {result['mem_available_needed_bytes'] / GIB:.2f} GiB" in result["message"]
    fix = {f["advice"]: f for f in result["fixes"]}["use 8 nodes (tensor_parallel_size 8)"]
    assert fix["set"] == {"tensor_parallel_size": 8, "nodes": 8}
    assert "lower gpu_memory_utilization" not in " ".join(result["advice"]), "no utilization advice in bytes mode"


def test_bytes_mode_given_pool_too_large_is_lowered_to_what_leaves_the_host_floor():
    result = worked_example(tensor_parallel_size=8, gpu_memory_utilization=None, kv_cache_memory_bytes=60 * GIB,
                            node_mem_available_bytes=HEADLESS)
    assert result["memory_mode"] == "bytes" and result["kv_cache_memory_source"] == "given"
    failed = {c["name"] for c in result["checks"] if not c["ok"]}
    assert "host floor (node 0)" in failed
    chosen = worked_example(tensor_parallel_size=8, gpu_memory_utilization=None, memory_mode="bytes",
                            node_mem_available_bytes=HEADLESS)["kv_cache_memory_bytes_per_rank"]
    fix = [f for f in result["fixes"] if "kv_cache_memory_bytes" in f["set"]]
    assert fix and fix[0]["set"] == {"kv_cache_memory_bytes": chosen}
    assert fix[0]["advice"].startswith(f"lower the KV pool to {chosen / GIB:.2f} GiB per rank")


def test_bytes_mode_given_utilization_that_fails_admission_is_left_to_the_planner():
    result = worked_example(tensor_parallel_size=8, gpu_memory_utilization=0.9, memory_mode="bytes",
                            node_mem_available_bytes=HEADLESS)
    assert result["gpu_memory_utilization_source"] == "given"
    assert not {c["name"]: c for c in result["checks"]}["admission (node 0)"]["ok"]
    fix = [f for f in result["fixes"] if f["set"] == {"gpu_memory_utilization": None}]
    assert fix and fix[0]["advice"].startswith("leave gpu_memory_utilization to the planner")


def test_bytes_mode_utilization_never_exceeds_what_admission_allows():
    # host floor 0: the pool takes everything, the utilization stops at floor((101 - 2) / 121.69) = 0.81
    result = worked_example(tensor_parallel_size=8, gpu_memory_utilization=None, memory_mode="bytes",
                            node_mem_available_bytes=HEADLESS, host_floor_bytes=0)
    assert result["gpu_memory_utilization"] == 0.81
    assert result["fits"] is True
    # no margin asked for: 101 / 121.69 = 0.8299 -> 0.82
    result = worked_example(tensor_parallel_size=8, gpu_memory_utilization=None, memory_mode="bytes",
                            node_mem_available_bytes=HEADLESS, host_floor_bytes=0, admission_margin_bytes=0)
    assert result["gpu_memory_utilization"] == 0.82


def test_mtp_off_is_advised_when_it_is_enough():
    # tiny Qwen3-Next on CUDA with a pool that holds 3,072 tokens' worth of blocks but not the MTP blocks
    spec = {"method": "mtp", "num_speculative_tokens": 2}
    base = {"max_model_len": 4096, "kv_cache_dtype": "fp8", "speculative_config": spec}
    on = plan("tiny-qwen3-next", **base, kv_cache_memory_bytes=GIB)
    off = plan("tiny-qwen3-next", max_model_len=4096, kv_cache_dtype="fp8", kv_cache_memory_bytes=GIB)
    # a pool just large enough for one request without MTP, too small with it
    pool = off["bytes_per_block"] * (off["blocks_per_request"] + 1)
    assert pool < on["bytes_per_block"] * (on["blocks_per_request"] + 1)
    result = plan("tiny-qwen3-next", **base, kv_cache_memory_bytes=pool)
    assert result["fits"] is False
    fix = [f for f in result["fixes"] if f["set"] == {"speculative_config": None}]
    assert fix and fix[0]["advice"].startswith("turn MTP off")


def test_loaded_weights_replace_the_checkpoint_split():
    measured = worked_example(tensor_parallel_size=8, memory_mode="bytes", gpu_memory_utilization=None,
                              loaded_weights_bytes=50 * GIB)
    rank = measured["per_rank"][0]
    assert (rank["weights_bytes"], rank["draft_bytes"]) == (50 * GIB, 0), "the measured figure includes the draft"
    assert measured["estimates"]["loaded_weights_bytes"] == "given"
    assert "(measured, draft included)" in measured["message"]
    per_rank = worked_example(tensor_parallel_size=8, loaded_weights_bytes=[40 * GIB] * 7 + [41 * GIB])
    assert [r["weights_bytes"] for r in per_rank["per_rank"]][-2:] == [40 * GIB, 41 * GIB]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"memory_mode": "percent"}, "memory_mode must be one of bytes, fraction"),
        ({"memory_mode": "fraction", "kv_cache_memory_bytes": GIB}, "cannot be given with it"),
        ({"loaded_weights_bytes": [GIB, GIB]}, "loaded_weights_bytes lists 2 ranks, the layout has 4"),
    ],
)
def test_memory_mode_refusals(params, fragment):
    with pytest.raises(PlanError) as exc:
        plan("qwen3.5-397b-a17b-fp8", tensor_parallel_size=4, max_model_len=4096, **params)
    assert fragment in str(exc.value) and str(exc.value).endswith(".")


def test_bytes_mode_on_the_cpu_build_needs_the_kv_space():
    with pytest.raises(PlanError, match="needs kv_cache_memory_bytes"):
        plan("tiny-qwen3", platform="cpu", memory_mode="bytes", max_model_len=512)
