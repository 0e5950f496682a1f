#!/usr/bin/python
"""Ansible module: will this model fit on these GB10 nodes? vLLM's own memory arithmetic."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_fit
short_description: Plan whether a model fits on GB10 nodes, with vLLM's own memory arithmetic
description:
  - Reproduces the memory accounting of vLLM 0.32.0 (the release is returned as C(vllm_release)) for
    one deployment, before anything is started, and says whether it fits.
  - Exact (vLLM's formulas) are the KV cache page sizes, the block size (including the hybrid
    block-size raise and mamba page padding), the KV cache groups, the number of blocks for a
    given KV budget, the logged C(KV cache size) in tokens, the C(Maximum concurrency), the largest
    C(max_model_len) that fits, and the start-up admission check
    C(ceil(total * gpu_memory_utilization) <= MemAvailable).
  - Estimated (vLLM measures them by profiling) are the weights when no exact byte count is given,
    the activation peak, the non-torch memory and the CUDA-graph memory. Each can be overridden.
  - When it does not fit, the module fails (unless O(fail_on_no_fit=false)) with the numbers and
    the smallest changes that make it fit.
  - Runs on the controller and changes nothing; supports check mode.
options:
  model_config:
    description:
      - The model's Hugging Face C(config.json), as a dict or the path of the file on the controller.
        Nested C(text_config) (Qwen3.5) is handled.
    type: raw
    required: true
  weights_bytes:
    description:
      - Exact checkpoint size in bytes (all safetensors files). Without it and without
        O(safetensors_index) the weights are estimated from the config and its
        C(quantization_config).
    type: int
  safetensors_index:
    description:
      - The checkpoint's C(model.safetensors.index.json), as a dict or a path. Its
        C(metadata.total_size) is used as the exact weight size (unless O(weights_bytes) is given),
        and its C(weight_map) tells whether MTP weights are present.
    type: raw
  platform:
    description:
      - C(cuda) plans a GB10 node; C(cpu) plans vLLM's CPU build (the lab), where the KV pool is
        O(kv_cache_memory_bytes) (C(VLLM_CPU_KVCACHE_SPACE)).
    type: str
    choices: [cuda, cpu]
    default: cuda
  tensor_parallel_size:
    description: Tensor-parallel size (ranks per pipeline stage).
    type: int
    default: 1
  pipeline_parallel_size:
    description: Pipeline-parallel size; layers split as vLLM's C(get_pp_indices) splits them.
    type: int
    default: 1
  nodes:
    description:
      - Number of nodes. Defaults to O(tensor_parallel_size) x O(pipeline_parallel_size) (one GPU per
        GB10 node). On the CPU platform several ranks may share a node.
    type: int
  max_model_len:
    description: Context length per request. Defaults to the config's C(max_position_embeddings).
    type: int
  max_num_seqs:
    description: vLLM C(--max-num-seqs). Default as vLLM 0.32's OpenAI server (256 on GB10, 128 x ranks on CPU).
    type: int
  max_num_batched_tokens:
    description: vLLM C(--max-num-batched-tokens). Default as vLLM 0.32's OpenAI server (2048 on GB10, 2048 x ranks on CPU).
    type: int
  kv_cache_dtype:
    description: vLLM C(--kv-cache-dtype).
    type: str
    choices: [auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2]
    default: auto
  block_size:
    description: vLLM C(--block-size). Default is vLLM's for the platform and model (16 CUDA, 128 CPU, 16 MLA on CPU, raised for hybrid models).
    type: int
  enable_prefix_caching:
    description: vLLM C(--enable-prefix-caching). Default is vLLM 0.32's (on; mamba cache mode C(align) for hybrid models).
    type: bool
  memory_mode:
    description:
      - How vLLM sizes the KV pool. C(bytes) is C(--kv-cache-memory-bytes), the KV pool to the byte;
        without O(kv_cache_memory_bytes) the planner chooses it (MemAvailable - host floor - weights -
        activations - non-torch - CUDA graphs, the smallest node) and, without
        O(gpu_memory_utilization), a utilization that passes vLLM's start-up admission
        (C(ceil(total x utilization) <= MemAvailable - admission margin)); both are returned in
        C(vllm_memory_args). C(fraction) is C(--gpu-memory-utilization) alone (vLLM sizes the pool
        from a profiling run).
      - Default C(bytes) when O(kv_cache_memory_bytes) is given, otherwise C(fraction) (the flags as
        vLLM gets them). The catalog's CUDA entries ask for C(bytes).
    type: str
    choices: [bytes, fraction]
  gpu_memory_utilization:
    description:
      - vLLM C(--gpu-memory-utilization). Default 0.92 (vLLM 0.32) in fraction mode; chosen by the
        planner in bytes mode, where vLLM uses it for the start-up admission only.
    type: float
  kv_cache_memory_bytes:
    description:
      - vLLM C(--kv-cache-memory-bytes) per rank. When given the KV pool is exactly this. For
        O(platform=cpu) it plays the role of C(VLLM_CPU_KVCACHE_SPACE) (GiB x 2^30).
    type: int
  speculative_config:
    description:
      - vLLM C(--speculative-config) as a dict, for example method C(mtp) with C(num_speculative_tokens=2).
        MTP draft layers add weights and one attention layer of KV each; hybrid models reserve
        speculative blocks per request. C(ngram) adds no weights.
    type: dict
  dtype:
    description: vLLM C(--dtype).
    type: str
    choices: [auto, bfloat16, float16, float32]
    default: auto
  mamba_ssm_cache_dtype:
    description:
      - vLLM C(--mamba-ssm-cache-dtype). C(auto) follows the config's C(mamba_ssm_dtype) (Qwen3.5)
        or the model dtype; the CPU build (AVX-512 BF16 host) resets C(auto) to float32.
    type: str
    choices: [auto, float32, float16, bfloat16]
    default: auto
  node_memory_total_bytes:
    description:
      - Memory CUDA reports as total on a node (the host's C(MemTotal); the largest node's when they
        differ). Default 130663006208 (121.69 GiB, a GB10).
    type: int
  node_mem_available_bytes:
    description:
      - Measured C(MemAvailable) of the nodes (the smallest one), e.g. from M(gb10.cluster.memory_facts).
        Default in bytes mode on CUDA 101 GiB (a headless GB10 after dropping caches), otherwise the total.
    type: int
  host_floor_bytes:
    description: Memory that must stay with the host outside vLLM's budget. Default 8 GiB.
    type: int
  admission_margin_bytes:
    description:
      - What vLLM's own processes take from C(MemAvailable) before its start-up check (API server,
        engine core, CUDA context, NCCL). Default 2 GiB on CUDA, 0 on CPU.
    type: int
  loaded_weights_bytes:
    description:
      - Measured weights per rank (vLLM's C(Model loading took X GiB), MTP draft included), one
        number for every rank or a list with one per rank; replaces the split of the checkpoint.
    type: raw
  enforce_eager:
    description: vLLM C(--enforce-eager); no CUDA graphs are captured.
    type: bool
    default: false
  async_scheduling:
    description: Whether vLLM schedules asynchronously (sizes the sliding-window reservation). Default on for CUDA, off on CPU.
    type: bool
  activation_peak_bytes:
    description: Override the activation-peak estimate per rank (e.g. from a vLLM start-up log).
    type: int
  cudagraph_bytes:
    description: Override the CUDA-graph estimate per rank; negative values (seen from vLLM on GB10 with MTP) count as 0.
    type: int
  non_torch_bytes:
    description: Override the non-torch estimate per rank (CUDA context, NCCL buffers).
    type: int
  fail_on_no_fit:
    description: Fail the task when the deployment does not fit.
    type: bool
    default: true
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Qwen3.5-397B-A17B FP8 on four GB10 nodes with MTP
  gb10.cluster.memory_fit:
    model_config: "{{ playbook_dir }}/models/qwen3.5-397b-a17b-fp8/config.json"
    weights_bytes: "{{ 379 * 1024 ** 3 }}"
    tensor_parallel_size: 4
    kv_cache_dtype: fp8
    max_model_len: 262144
    max_num_seqs: 16
    max_num_batched_tokens: 8192
    gpu_memory_utilization: 0.90
    speculative_config:
      method: mtp
      num_speculative_tokens: 2
    node_mem_available_bytes: "{{ gb10_memory.mem_available_bytes }}"
  delegate_to: localhost
  run_once: true
  register: gb10_plan

- name: The same in bytes mode on the measured nodes; start vLLM with gb10_bytes_plan.vllm_memory_args
  gb10.cluster.memory_fit:
    model_config: "{{ playbook_dir }}/models/qwen3.5-397b-a17b-fp8/config.json"
    weights_bytes: "{{ 379 * 1024 ** 3 }}"
    tensor_parallel_size: 8
    kv_cache_dtype: fp8
    max_model_len: 262144
    memory_mode: bytes
    node_memory_total_bytes: "{{ gb10_memory.mem_total_bytes }}"
    node_mem_available_bytes: "{{ gb10_memory.mem_available_bytes }}"
  delegate_to: localhost
  run_once: true
  register: gb10_bytes_plan

- name: Report without failing
  gb10.cluster.memory_fit:
    model_config: catalog/models/llama-3.3-70b-instruct/config.json
    platform: cpu
    kv_cache_memory_bytes: 1073741824
    max_model_len: 4096
    fail_on_no_fit: false
  register: gb10_cpu_plan

- name: Show the summary
  ansible.builtin.debug:
    msg: "{{ gb10_plan.message }}"
"""

RETURN = r"""
vllm_release:
  description: The vLLM release whose accounting is reproduced.
  returned: always
  type: str
  sample: "0.32.0"
fits:
  description: True when every check passes.
  returned: always
  type: bool
platform:
  description: cuda or cpu.
  returned: always
  type: str
architecture:
  description: The config's first architecture.
  returned: always
  type: str
  sample: Qwen3_5MoeForConditionalGeneration
memory_mode:
  description: C(bytes) (the KV pool given to vLLM in bytes) or C(fraction) (sized by vLLM from the utilization).
  returned: always
  type: str
vllm_memory_args:
  description:
    - The memory settings to start vLLM with, by vLLM's names, C(gpu_memory_utilization) and in bytes
      mode C(kv_cache_memory_bytes) (C(--kv-cache-memory-bytes), the same on every rank).
  returned: always
  type: dict
  sample: {"gpu_memory_utilization": 0.77, "kv_cache_memory_bytes": 37993054208}
kv_cache_memory_bytes_per_rank:
  description: The KV pool per rank in bytes mode (0 when nothing is left); null in fraction mode.
  returned: always
  type: int
kv_cache_memory_source:
  description: C(planner) (chosen from the node figures), C(given), or null in fraction mode.
  returned: always
  type: str
gpu_memory_utilization_source:
  description: C(planner), C(given) or C(vLLM default).
  returned: always
  type: str
admission_margin_bytes:
  description: The margin the admission check keeps below C(MemAvailable).
  returned: always
  type: int
mem_available_needed_bytes:
  description: With the KV pool chosen by the planner, the smallest C(MemAvailable) per node that fits one request at max_model_len above the host floor; null otherwise.
  returned: always
  type: int
kv_tokens_tolerance:
  description: How far vLLM's logged KV tokens may be from C(kv_cache_tokens), as a fraction (0 in bytes mode; report, never assert, in fraction mode).
  returned: always
  type: float
fixes:
  description: The advice with the planner parameters that carry it out (C(advice), C(kind) settings or quantisation, C(set); null = back to the default).
  returned: always
  type: list
  elements: dict
kv_cache_tokens:
  description: What vLLM logs as C(KV cache size, N tokens), int(max_concurrency x max_model_len).
  returned: always
  type: int
max_concurrency:
  description: What vLLM logs as C(Maximum concurrency for L tokens per request), num_blocks / blocks per request.
  returned: always
  type: float
block_size:
  description: Tokens per KV block after vLLM's platform default and hybrid raise.
  returned: always
  type: int
num_blocks:
  description: KV blocks in the pool (the minimum over ranks).
  returned: always
  type: int
blocks_per_request:
  description: Blocks one request at max_model_len takes, summed over KV cache groups.
  returned: always
  type: int
bytes_per_block:
  description: Bytes of one block on a rank (the largest group's pages).
  returned: always
  type: int
kv_cache_groups:
  description: The KV cache groups (kind, layers, block_size, page_bytes).
  returned: always
  type: list
  elements: dict
mamba_page_bytes:
  description: Unpadded mamba / gated-DeltaNet state per sequence and layer on a rank (0 when none).
  returned: always
  type: int
kv_bytes_per_token:
  description: KV bytes per token on one rank (attention layers of the first stage, KV-head replication included).
  returned: always
  type: int
kv_bytes_per_token_model:
  description: KV bytes per token of the whole target model at TP=1.
  returned: always
  type: int
kv_cache_bytes:
  description: KV cache bytes allocated per rank.
  returned: always
  type: int
weights_bytes:
  description: Checkpoint bytes of the whole model (exact when given, else estimated).
  returned: always
  type: int
weights_source:
  description: weights_bytes, safetensors_index or estimate.
  returned: always
  type: str
weights_estimated_bytes:
  description: The planner's own estimate of the checkpoint size from the config.
  returned: always
  type: int
max_model_len:
  description: The planned context length.
  returned: always
  type: int
max_model_len_that_fits:
  description: Largest max_model_len for which one request fits (vLLM's binary search; a block multiple when limited by memory).
  returned: always
  type: int
per_node:
  description:
    - One dict per node with C(node_rank), C(total_bytes), C(host_floor_bytes), C(requested_bytes),
      C(weights_bytes), C(draft_bytes), C(activation_peak_bytes), C(non_torch_bytes),
      C(cudagraph_bytes), C(kv_cache_bytes), C(used_bytes), C(free_bytes), C(host_left_bytes).
  returned: always
  type: list
  elements: dict
per_rank:
  description: The same figures per vLLM rank, with C(tp_rank), C(pp_rank), C(layers), C(kv_budget_bytes).
  returned: always
  type: list
  elements: dict
checks:
  description:
    - Each check as C(name), C(ok), C(detail). Names are C(admission (node N)) (requested <= MemAvailable),
      C(kv_cache_space (node N)) (CPU build with O(kv_cache_memory_bytes)), C(host floor (node N)),
      C(non-KV memory fits) and C(one request at max_model_len).
  returned: always
  type: list
  elements: dict
advice:
  description: The smallest changes found that make it fit (empty when it fits).
  returned: always
  type: list
  elements: str
estimates:
  description: Which figures are estimated and which were given.
  returned: always
  type: dict
message:
  description: A multi-line summary with the numbers, failed checks and advice.
  returned: always
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.memfit import PlanError, plan_memory

PLAN_KEYS = (
    "model_config",
    "weights_bytes",
    "safetensors_index",
    "platform",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "nodes",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_dtype",
    "block_size",
    "enable_prefix_caching",
    "memory_mode",
    "gpu_memory_utilization",
    "kv_cache_memory_bytes",
    "speculative_config",
    "dtype",
    "mamba_ssm_cache_dtype",
    "node_memory_total_bytes",
    "node_mem_available_bytes",
    "host_floor_bytes",
    "admission_margin_bytes",
    "loaded_weights_bytes",
    "enforce_eager",
    "async_scheduling",
    "activation_peak_bytes",
    "cudagraph_bytes",
    "non_torch_bytes",
)


ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "model_config": {"type": "raw", "required": True},
    "weights_bytes": {"type": "int"},
    "safetensors_index": {"type": "raw"},
    "platform": {"type": "str", "choices": ["cuda", "cpu"], "default": "cuda"},
    "tensor_parallel_size": {"type": "int", "default": 1},
    "pipeline_parallel_size": {"type": "int", "default": 1},
    "nodes": {"type": "int"},
    "max_model_len": {"type": "int"},
    "max_num_seqs": {"type": "int"},
    "max_num_batched_tokens": {"type": "int"},
    "kv_cache_dtype": {
        "type": "str",
        "choices": ["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"],
        "default": "auto",
    },
    "block_size": {"type": "int"},
    "enable_prefix_caching": {"type": "bool"},
    "memory_mode": {"type": "str", "choices": ["bytes", "fraction"]},
    "gpu_memory_utilization": {"type": "float"},
    "kv_cache_memory_bytes": {"type": "int"},
    "speculative_config": {"type": "dict"},
    "dtype": {"type": "str", "choices": ["auto", "bfloat16", "float16", "float32"], "default": "auto"},
    "mamba_ssm_cache_dtype": {
        "type": "str",
        "choices": ["auto", "float32", "float16", "bfloat16"],
        "default": "auto",
    },
    "node_memory_total_bytes": {"type": "int"},
    "node_mem_available_bytes": {"type": "int"},
    "host_floor_bytes": {"type": "int"},
    "admission_margin_bytes": {"type": "int"},
    "loaded_weights_bytes": {"type": "raw"},
    "enforce_eager": {"type": "bool", "default": False},
    "async_scheduling": {"type": "bool"},
    "activation_peak_bytes": {"type": "int"},
    "cudagraph_bytes": {"type": "int"},
    "non_torch_bytes": {"type": "int"},
    "fail_on_no_fit": {"type": "bool", "default": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = {key: module.params[key] for key in PLAN_KEYS if module.params.get(key) is not None}
    try:
        result = plan_memory(params)
    except PlanError as exc:
        module.fail_json(msg=str(exc), changed=False)
        return
    if not result["fits"] and module.params["fail_on_no_fit"]:
        module.fail_json(changed=False, **{k: v for k, v in result.items() if k != "msg"}, msg=result["message"])
        return
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
